//! The client side of the admin listener, for `cache-node switchover` and `cache-node is-master`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Longer than the node's own hand-over timeout, so its answer arrives.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Asks the master at `admin` to hand its role over, with the token in `token_file` when the
/// node asks for one; prints its answer.
pub fn switchover(admin: SocketAddr, token_file: Option<&Path>) -> ExitCode {
    let token = match token_file.map(std::fs::read_to_string).transpose() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("cannot read the token file: {e}");
            return ExitCode::FAILURE;
        }
    };
    let authorization = token.map(|t| format!("Authorization: Bearer {}\r\n", t.trim()));
    match request(admin, "POST", "/switchover", authorization.as_deref().unwrap_or(""), TIMEOUT) {
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

/// Whether the node at `admin` is master (`/master` answers 200): exit 0 if so, 1 if not, 2
/// if it cannot be asked. Quick, since keepalived runs it every interval.
pub fn is_master(admin: SocketAddr) -> ExitCode {
    match request(admin, "GET", "/master", "", CHECK_TIMEOUT) {
        Ok((200, _)) => ExitCode::SUCCESS,
        Ok((_, body)) => {
            eprint!("not master: {body}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("cannot reach the admin listener at {admin}: {e}");
            ExitCode::from(2)
        }
    }
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// A bodyless HTTP/1.0 request, `headers` being whole lines: (status code, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\n\r\n");
    s.write_all(head.as_bytes())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let code = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((code, body))
}
