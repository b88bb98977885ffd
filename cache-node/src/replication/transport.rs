//! What a link runs over: plain TCP, or mutual TLS (`--repl-tls-*`) with the shared-secret
//! handshake inside it unchanged. Both nodes hold certificates of the pair's own CA: the
//! connecting side checks that the accepting side's chains to it and names `--repl-tls-name`;
//! the accepting side requires a client certificate that chains to it. TLS 1.3 only (both
//! ends are cache-node), without session resumption, so every link checks the certificates
//! afresh.
//!
//! The files are read at each new connection and the configuration is rebuilt when they
//! changed: a renewed certificate takes effect on the next link, without a restart. Files
//! that fail to load fail that connection, with a warning at most once a second.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::SingleCertAndKey;
use rustls::{AlertDescription, ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{info, warn};

use super::codec::Message;
use crate::config::ReplTlsOptions;
use crate::pem::{self, LoadError};
use crate::rate_limited_log::RateLimitedLog;

/// The halves a link reads and writes, whatever runs beneath: one virtual call per read or
/// write of a whole buffer, nothing per message.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// How long the accepting side waits for a TLS client's first bytes. A TLS client sends its
/// hello at once; a node without TLS waits for a greeting instead, and is told in its own
/// protocol that this port speaks TLS, well within its handshake timeout (and this node's
/// `ACCEPT_TIMEOUT`): it then takes this node for alive, not for a dead master.
const PLAINTEXT_WAIT: Duration = Duration::from_millis(500);
/// With `--repl-tls-allow-plaintext`, how long the connecting side listens before it starts
/// TLS: a node without TLS greets at once, a TLS node says nothing until it hears a hello.
/// Well under [`PLAINTEXT_WAIT`], so a TLS peer still gets the hello in time.
const GREETING_WAIT: Duration = Duration::from_millis(200);

/// A connection's halves, and whether they run over TLS.
pub struct Halves {
    pub rd: Reader,
    pub wr: Writer,
    pub tls: bool,
}

/// A plain TCP connection's halves.
pub fn plain(stream: TcpStream) -> Halves {
    let (rd, wr) = stream.into_split();
    Halves { rd: Box::new(rd), wr: Box::new(wr), tls: false }
}

fn encrypted<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> Halves {
    let (rd, wr) = tokio::io::split(stream);
    Halves { rd: Box::new(rd), wr: Box::new(wr), tls: true }
}

/// Why a connection did not become a TLS link.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// This node's own files: nothing was learnt about the peer.
    #[error("this node's replication TLS files: {0}")]
    Files(#[from] LoadError),
    #[error("TLS handshake: {0}")]
    Tls(#[from] io::Error),
    #[error("the peer sent nothing: a node without --repl-tls-*, told that this port speaks TLS")]
    Plaintext,
}

/// Whether an error comes from a certificate that one side refused (unknown CA, wrong name,
/// none presented, expired): an authentication failure.
pub fn refused_certificate(error: &anyhow::Error) -> bool {
    use AlertDescription as A;
    error.chain().filter_map(|e| e.downcast_ref::<io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>()).any(|e| {
        matches!(
            e,
            rustls::Error::InvalidCertificate(_)
                | rustls::Error::NoCertificatesPresented
                | rustls::Error::AlertReceived(
                    A::BadCertificate
                        | A::UnknownCA
                        | A::CertificateRequired
                        | A::CertificateUnknown
                        | A::CertificateExpired
                        | A::CertificateRevoked
                        | A::UnsupportedCertificate
                )
        )
    })
}

/// Both ends' configurations, built from one reading of the files.
#[derive(Clone)]
struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

/// The contents of the files, as last read.
#[derive(PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

/// Mutual TLS on the replication link.
pub struct LinkTls {
    options: ReplTlsOptions,
    name: ServerName<'static>,
    /// The files as last read, and what was built from them.
    built: Mutex<Option<(Files, Configs)>>,
    warnings: Mutex<RateLimitedLog>,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTls").field("options", &self.options).finish_non_exhaustive()
    }
}

impl LinkTls {
    /// Reads and checks the files; at start-up an error is fatal.
    pub fn load(options: ReplTlsOptions) -> Result<Self, String> {
        let name = ServerName::try_from(options.name.clone())
            .map_err(|_| format!("--repl-tls-name {:?} is not a DNS name or an IP address", options.name))?;
        let tls = Self {
            options,
            name,
            built: Mutex::new(None),
            warnings: Mutex::new(RateLimitedLog::new(Duration::from_secs(1))),
        };
        tls.read_and_build().map_err(|e| format!("replication TLS: {e}"))?;
        Ok(tls)
    }

    /// The configurations for a new connection: the files are read again (small files, on
    /// the runtime's thread: connections to the peer are rare, and strangers' handshakes are
    /// bounded), and built anew only when they changed.
    fn configs(&self) -> Result<Configs, LoadError> {
        let configs = self.read_and_build();
        if let Err(e) = &configs
            && let Some(suppressed) = self.warnings.lock().event(Instant::now())
        {
            warn!(error = %e, suppressed, "replication TLS files failed to load: the connection fails");
        }
        configs
    }

    fn read_and_build(&self) -> Result<Configs, LoadError> {
        let options = &self.options;
        let files = Files {
            cert: pem::read(&options.cert, |path, reason| LoadError::Chain { path, reason })?,
            key: pem::read(&options.key, |path, reason| LoadError::Key { path, reason })?,
            ca: pem::read(&options.ca, |path, reason| LoadError::Ca { path, reason })?,
        };
        let mut built = self.built.lock();
        if let Some((seen, configs)) = &*built
            && *seen == files
        {
            return Ok(configs.clone());
        }
        let configs = build(options, &files)?;
        if built.is_some() {
            info!("replication TLS files changed: new links use them");
        }
        *built = Some((files, configs.clone()));
        Ok(configs)
    }

    /// The accepting side's handshake; the caller bounds its time.
    pub async fn accept(&self, mut stream: TcpStream) -> Result<Halves, HandshakeError> {
        let configs = match self.configs() {
            Ok(configs) => configs,
            Err(e) => {
                // Said in the clear: a peer that hears anything takes this node for alive.
                refuse_in_clear(&mut stream, "refused: the replication certificate does not load").await;
                return Err(e.into());
            }
        };
        if tokio::time::timeout(PLAINTEXT_WAIT, stream.peek(&mut [0; 1])).await.is_err() {
            if self.options.allow_plaintext {
                return Ok(plain(stream));
            }
            refuse_in_clear(&mut stream, "refused: this replication port speaks TLS (--repl-tls-*)").await;
            return Err(HandshakeError::Plaintext);
        }
        Ok(encrypted(TlsAcceptor::from(configs.server).accept(stream).await?))
    }

    /// The connecting side's handshake; the caller bounds its time. `answered` turns true as
    /// soon as the peer sends anything: a live node, even if it refuses the link.
    pub async fn connect(&self, stream: TcpStream, answered: Arc<AtomicBool>) -> Result<Halves, HandshakeError> {
        let configs = self.configs()?;
        if self.options.allow_plaintext
            && let Ok(Ok(1..)) = tokio::time::timeout(GREETING_WAIT, stream.peek(&mut [0; 1])).await
        {
            // A greeting before any hello: the peer has no TLS.
            answered.store(true, Relaxed);
            return Ok(plain(stream));
        }
        let stream = Noting { stream, answered };
        Ok(encrypted(TlsConnector::from(configs.client).connect(self.name.clone(), stream).await?))
    }
}

/// A refusal in the link's own plaintext protocol, as a node without TLS expects it.
async fn refuse_in_clear(stream: &mut TcpStream, why: &str) {
    let mut out = Vec::new();
    if Message::error(why).encode(&mut out).is_ok() {
        let _ = stream.write_all(&out).await;
    }
}

/// Both ends' rustls configurations from the files.
fn build(options: &ReplTlsOptions, files: &Files) -> Result<Configs, LoadError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = Arc::new(pem::certified_key((&options.cert, &files.cert), (&options.key, &files.key), &provider)?);
    let roots = Arc::new(pem::roots(&options.ca, &files.ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| LoadError::Ca { path: options.ca.clone(), reason: e.to_string() })?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring has TLS 1.3")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key.clone())));
    // Every link verifies the certificates in full: no tickets to resume with.
    server.session_storage = Arc::new(NoServerSessionStorage {});
    server.send_tls13_tickets = 0;
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring has TLS 1.3")
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    client.resumption = Resumption::disabled();
    Ok(Configs { server: Arc::new(server), client: Arc::new(client) })
}

/// The TCP connection under a TLS client, noting whether the peer sent anything.
struct Noting {
    stream: TcpStream,
    answered: Arc<AtomicBool>,
}

impl AsyncRead for Noting {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.answered.store(true, Relaxed);
        }
        poll
    }
}

impl AsyncWrite for Noting {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
