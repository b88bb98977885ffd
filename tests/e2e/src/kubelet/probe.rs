//! HTTP probes, as the kubelet runs them: a GET that succeeds on 200–399.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(super) async fn http_get(ip: &str, port: u16, path: &str, timeout: Duration) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect((ip, port)).await?;
        s.write_all(
            format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.37\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        std::io::Result::Ok(head)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(head)) => {
            let code = std::str::from_utf8(&head[9..12]).ok().and_then(|c| c.parse::<u16>().ok()).unwrap_or(0);
            (200..400).contains(&code)
        }
        _ => false,
    }
}
