//! The client side of the admin listener, for `cache-node switchover`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Longer than the node's own hand-over timeout, so its answer arrives.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Asks the master at `admin` to hand its role over; prints its answer.
pub fn switchover(admin: SocketAddr) -> ExitCode {
    match post(admin, "/switchover") {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((code, body)) => {
            eprint!("switchover refused ({code}): {body}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot reach the admin listener at {admin}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A bodyless HTTP/1.0 POST: (status code, body).
fn post(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(format!("POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").as_bytes())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let code = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((code, body))
}
