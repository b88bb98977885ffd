//! A few memcached text-protocol calls for the tests, with timeouts.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

fn call(addr: &str, request: &str, end: &[&str]) -> std::io::Result<String> {
    let s = TcpStream::connect_timeout(&addr.parse().map_err(std::io::Error::other)?, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    (&s).write_all(request.as_bytes())?;
    let mut r = BufReader::new(&s);
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other(format!("closed after {reply:?}")));
        }
        reply.push_str(&line);
        if end.iter().any(|e| line.starts_with(e)) {
            return Ok(reply);
        }
    }
}

/// `set`: true when STORED.
pub fn set(addr: &str, key: &str, value: &str) -> bool {
    call(
        addr,
        &format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()),
        &["STORED", "NOT_STORED", "ERROR", "SERVER_ERROR", "CLIENT_ERROR"],
    )
    .is_ok_and(|r| r.starts_with("STORED"))
}

/// `get`: the value, if any.
pub fn get(addr: &str, key: &str) -> Option<String> {
    let reply = call(addr, &format!("get {key}\r\n"), &["END", "ERROR", "SERVER_ERROR"]).ok()?;
    let mut lines = reply.lines();
    lines.next()?.starts_with("VALUE").then(|| lines.next().unwrap_or_default().to_string())
}
