//! One client connection: a reusable write buffer, a receive buffer and a socket (or a TLS
//! session over it, with `--tls-ca`).

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::proto::{Codec, Op, Outcome, RecvBuf, check, describe, parse_reply};

/// A TCP socket or a TLS session.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin> Stream for S {}

/// Where to connect, and how.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    tls: Option<TlsConnector>,
}

impl Endpoint {
    /// Plain TCP, or TLS trusting the server certificates `ca` (PEM) signed; the server's
    /// certificate must name its IP address.
    pub fn new(addr: SocketAddr, ca: Option<&Path>) -> Result<Self> {
        let Some(ca) = ca else {
            return Ok(Self { addr, tls: None });
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("read {}", ca.display()))? {
            roots.add(cert.with_context(|| format!("parse {}", ca.display()))?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { addr, tls: Some(TlsConnector::from(Arc::new(config))) })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.tls.is_some() { "tls://" } else { "" }, self.addr)
    }
}

pub struct Conn {
    stream: Box<dyn Stream>,
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
    pub async fn connect(to: &Endpoint, wcap: usize) -> Result<Conn> {
        let addr = to.addr;
        let connect = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok::<Box<dyn Stream>, std::io::Error>(match &to.tls {
                Some(tls) => Box::new(tls.connect(ServerName::IpAddress(addr.ip().into()), tcp).await?),
                None => Box::new(tcp),
            })
        };
        let stream = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| anyhow!("connect to {to}: timed out"))?
            .with_context(|| format!("connect to {to}"))?;
        Ok(Conn { stream, rbuf: RecvBuf::with_capacity(64 * 1024), wbuf: Vec::with_capacity(wcap) })
    }

    /// Writes the batch in `wbuf` and clears it.
    pub async fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.wbuf).await.context("write request")?;
        // TLS holds what it could not send yet until flushed (TCP: a no-op).
        self.stream.flush().await.context("write request")?;
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
