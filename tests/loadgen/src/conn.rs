//! One client connection: a reusable write buffer, a receive buffer and a socket.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::proto::{Codec, Op, Outcome, RecvBuf, check, describe, parse_reply};

pub struct Conn {
    stream: TcpStream,
    rbuf: RecvBuf,
    /// Requests of the current batch, sent by [`Conn::flush`].
    pub wbuf: Vec<u8>,
}

/// The answer to one request: its outcome and, if unexpected, what came back.
pub struct Answer {
    pub outcome: Outcome,
    pub unexpected: Option<String>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr, wcap: usize) -> Result<Conn> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connect to {addr}: timed out"))?
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, rbuf: RecvBuf::with_capacity(64 * 1024), wbuf: Vec::with_capacity(wcap) })
    }

    /// Writes the batch in `wbuf` and clears it.
    pub async fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.wbuf).await.context("write request")?;
        self.wbuf.clear();
        Ok(())
    }

    /// Reads the next reply and checks it against `op`.
    ///
    /// An error means the stream is unusable (I/O error, EOF or broken framing).
    pub async fn recv(&mut self, codec: &Codec, op: Op) -> Result<Answer> {
        loop {
            let parsed = parse_reply(self.rbuf.data()).context("parse reply")?;
            match parsed {
                Some((reply, used)) => {
                    let outcome = check(codec, op, &reply);
                    let unexpected =
                        (outcome == Outcome::Unexpected).then(|| format!("{op:?} got {}", describe(&reply)));
                    self.rbuf.consume(used);
                    return Ok(Answer { outcome, unexpected });
                }
                None => {
                    self.rbuf.fill(&mut self.stream).await.context("read reply")?;
                }
            }
        }
    }
}
