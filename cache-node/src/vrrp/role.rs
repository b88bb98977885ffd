//! Following the local cache's role in-process. A `vrrp_script` whose command is cache-node's
//! own check, `cache-node is-master --admin ADDR`, is not run as a program once per `interval`
//! (whole seconds in keepalived): the speaker asks the admin listener's `/master` itself every
//! [`ROLE_POLL`] over one kept-alive loopback connection. So the same keepalived.conf still
//! works with keepalived, and with cache-node the address follows a failover in milliseconds.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How often the role is asked for: a promotion or a step-down is seen within this.
pub const ROLE_POLL: Duration = Duration::from_millis(20);

/// The admin address if `command` is cache-node's role check, whatever the binary's directory.
pub fn admin_of(command: &str) -> Option<SocketAddr> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let [program, "is-master", "--admin", admin] = words.as_slice() else { return None };
    if Path::new(program).file_name()? != "cache-node" {
        return None;
    }
    admin.parse().ok()
}

/// Asks one node whether it is master, keeping the connection between questions.
pub struct RoleProbe {
    admin: SocketAddr,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

impl RoleProbe {
    pub fn new(admin: SocketAddr) -> RoleProbe {
        RoleProbe { admin, conn: None, buf: Vec::new() }
    }

    /// True only if `/master` answers 200 within `timeout`, as `cache-node is-master` exits 0;
    /// an error drops the connection and the next question opens a new one.
    pub async fn is_master(&mut self, timeout: Duration) -> bool {
        match tokio::time::timeout(timeout, self.ask()).await {
            Ok(Ok(status)) => status == 200,
            _ => {
                self.conn = None;
                false
            }
        }
    }

    async fn ask(&mut self) -> std::io::Result<u16> {
        if self.conn.is_none() {
            let conn = TcpStream::connect(self.admin).await?;
            conn.set_nodelay(true)?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.write_all(b"GET /master HTTP/1.1\r\nHost: cache-node\r\n\r\n").await?;
        self.buf.clear();
        loop {
            if let Some((status, len)) = response(&self.buf)?
                && self.buf.len() >= len
            {
                return Ok(status);
            }
            if conn.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// The status and the full length of an HTTP/1.1 response once its head is in `buf`.
fn response(buf: &[u8]) -> std::io::Result<Option<(u16, usize)>> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response");
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| bad())?;
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let body = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>().map_err(|_| bad()))
        .transpose()?
        .ok_or_else(bad)?;
    Ok(Some((status, end + 4 + body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_check_is_recognised_wherever_the_binary_lives() {
        let admin = Some("127.0.0.1:9150".parse().unwrap());
        assert_eq!(admin_of("/usr/local/bin/cache-node is-master --admin 127.0.0.1:9150"), admin);
        assert_eq!(admin_of("cache-node  is-master --admin 127.0.0.1:9150"), admin);
        assert_eq!(
            admin_of("/usr/local/bin/cache-node is-master --admin [::1]:9150"),
            Some("[::1]:9150".parse().unwrap())
        );
        assert_eq!(admin_of("/etc/keepalived/check_mem.sh"), None);
        assert_eq!(admin_of("/usr/bin/not-cache-node is-master --admin 127.0.0.1:9150"), None);
        assert_eq!(admin_of("/usr/local/bin/cache-node is-master --admin 127.0.0.1:9150 extra"), None);
        assert_eq!(admin_of("/usr/local/bin/cache-node switchover --admin 127.0.0.1:9150"), None);
    }

    #[test]
    fn a_response_is_complete_once_its_body_is_in() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nmaster\n";
        assert_eq!(response(ok).unwrap(), Some((200, ok.len())));
        assert_eq!(response(&ok[..20]).unwrap(), None);
        let slave = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 6\r\n\r\nslave\n";
        assert_eq!(response(slave).unwrap(), Some((503, slave.len())));
        assert!(response(b"garbage\r\n\r\n").is_err());
    }

    /// The connection is kept between questions (the server here accepts only one), and a
    /// node that went away is "not master".
    #[tokio::test]
    async fn a_probe_keeps_its_connection_and_a_closed_one_means_not_master() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut probe = RoleProbe::new(listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            for reply in [
                "200 OK\r\ncontent-length: 7\r\n\r\nmaster\n",
                "503 Service Unavailable\r\nContent-Length: 6\r\n\r\nslave\n",
            ] {
                let mut request = Vec::new();
                while !request.ends_with(b"\r\n\r\n") {
                    let mut byte = [0];
                    conn.read_exact(&mut byte).await.unwrap();
                    request.push(byte[0]);
                }
                assert!(request.starts_with(b"GET /master HTTP/1.1\r\n"));
                conn.write_all(format!("HTTP/1.1 {reply}").as_bytes()).await.unwrap();
            }
        });
        let timeout = Duration::from_secs(2);
        assert!(probe.is_master(timeout).await);
        assert!(!probe.is_master(timeout).await, "the second answer on the same connection");
        server.await.unwrap();
        assert!(!probe.is_master(timeout).await, "closed");
        assert!(!probe.is_master(Duration::from_millis(100)).await, "nobody accepts");
    }
}
