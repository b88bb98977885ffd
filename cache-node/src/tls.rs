//! TLS on the client port (`-Z`): the rustls configuration built from memcached's `-o ssl_*`
//! files, handshakes with a deadline, and certificates reloaded without a restart — on
//! SIGHUP, on the `refresh_certs` command, and when the files change (a Kubernetes Secret
//! volume is updated by swapping a symlink, with no signal to anyone).
//!
//! A reload builds a whole new configuration from the files (certificate chain, key and the
//! client CAs, as memcached's `refresh_certs` rereads all three) and swaps it in for new
//! connections only; open connections keep theirs. A reload that fails keeps the old one.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{info, warn};

use crate::config::{TlsOptions, TlsVersion, VerifyMode};
pub use crate::pem::LoadError;
use crate::pem::{self, read};

/// A client must finish its handshake within this: one that sends half a ClientHello and
/// waits (slowloris) holds a connection slot no longer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the files are reread to notice a new certificate nobody signalled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The contents of the files, as last read.
#[derive(Debug, PartialEq, Eq)]
struct Files {
    chain: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
}

impl Files {
    fn read(options: &TlsOptions) -> Result<Self, LoadError> {
        Ok(Self {
            chain: read(&options.chain_cert, |path, reason| LoadError::Chain { path, reason })?,
            key: read(&options.key, |path, reason| LoadError::Key { path, reason })?,
            ca: options
                .ca_cert
                .as_deref()
                .map(|p| read(p, |path, reason| LoadError::Ca { path, reason }))
                .transpose()?,
        })
    }
}

/// The TLS side of the client port, shared by the accept loops, the engine (`refresh_certs`,
/// `stats`) and the reload triggers.
pub struct Tls {
    pub options: TlsOptions,
    /// What new connections are served with.
    config: RwLock<Arc<ServerConfig>>,
    /// What the files held at the last load or poll, or why they could not be read: the poll
    /// reloads, or warns, only when this changes.
    seen: Mutex<Result<Files, LoadError>>,
    refreshed: Mutex<Instant>,
}

impl Tls {
    /// Reads and checks the files; any error is fatal at start-up (memcached exits too).
    pub fn load(options: TlsOptions) -> Result<Arc<Self>, LoadError> {
        let files = Files::read(&options)?;
        let config = build(&options, &files)?;
        Ok(Arc::new(Self {
            options,
            config: RwLock::new(Arc::new(config)),
            seen: Mutex::new(Ok(files)),
            refreshed: Mutex::new(Instant::now()),
        }))
    }

    /// Runs the handshake, within [`HANDSHAKE_TIMEOUT`].
    pub async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let acceptor = TlsAcceptor::from(self.config.read().clone());
        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")))
    }

    /// Rereads the files and serves new connections with them (`refresh_certs`, SIGHUP); on
    /// error the current configuration stays.
    pub fn refresh(&self) -> Result<(), LoadError> {
        let result = self.install(Files::read(&self.options));
        log(&result, "refresh");
        result
    }

    /// Reloads when the files differ from what was last seen in them.
    fn reload_if_changed(&self) {
        let files = Files::read(&self.options);
        if *self.seen.lock() != files {
            log(&self.install(files), "the files changed");
        }
    }

    fn install(&self, files: Result<Files, LoadError>) -> Result<(), LoadError> {
        let built = files.as_ref().map_err(Clone::clone).and_then(|files| build(&self.options, files));
        *self.seen.lock() = files;
        *self.config.write() = Arc::new(built?);
        *self.refreshed.lock() = Instant::now();
        Ok(())
    }

    /// Since the configuration in use was loaded (memcached's `time_since_server_cert_refresh`).
    pub fn since_refresh(&self) -> Duration {
        self.refreshed.lock().elapsed()
    }

    /// Polls the files every [`POLL_INTERVAL`], until the task is dropped.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            // Small files, but still file I/O: off the runtime's thread.
            let tls = self.clone();
            if tokio::task::spawn_blocking(move || tls.reload_if_changed()).await.is_err() {
                return;
            }
        }
    }
}

fn log(result: &Result<(), LoadError>, why: &str) {
    match result {
        Ok(()) => info!(why, "TLS certificate reloaded"),
        Err(e) => warn!(why, error = %e, "TLS certificate not reloaded: serving the previous one"),
    }
}

/// The rustls configuration the options and files describe.
fn build(options: &TlsOptions, files: &Files) -> Result<ServerConfig, LoadError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = certified_key(options, files, &provider)?;
    let verifier = client_verifier(options, files, &provider)?;
    let versions: &[&rustls::SupportedProtocolVersion] = match options.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("ring has TLS 1.2 and 1.3")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    // No session resumption, as memcached without -o ssl_session_cache.
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

fn certified_key(options: &TlsOptions, files: &Files, provider: &CryptoProvider) -> Result<CertifiedKey, LoadError> {
    pem::certified_key((&options.chain_cert, &files.chain), (&options.key, &files.key), provider)
}

/// Client certificates per `ssl_verify_mode`, checked against `ssl_ca_cert`.
fn client_verifier(
    options: &TlsOptions,
    files: &Files,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, LoadError> {
    let (Some(path), Some(pem)) = (&options.ca_cert, &files.ca) else {
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    let roots = pem::roots(path, pem)?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = match options.verify_mode {
        // The CAs are loaded (and checked) but no certificate is asked for, as in memcached.
        VerifyMode::None => return Ok(WebPkiClientVerifier::no_client_auth()),
        VerifyMode::Request => builder.allow_unauthenticated(),
        // No renegotiation, so "once" is "on the handshake", as required.
        VerifyMode::Require | VerifyMode::Once => builder,
    };
    builder.build().map_err(|e| LoadError::Ca { path: path.clone(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// PEM text of a DER item.
    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out.into_bytes()
    }

    /// A self-signed certificate and its key, as PEM.
    fn self_signed(name: &str) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        (pem("CERTIFICATE", cert.der()), pem("PRIVATE KEY", &key.serialize_der()))
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("cache-node-tls-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn options(&self) -> TlsOptions {
            TlsOptions {
                chain_cert: self.0.join("cert.pem"),
                key: self.0.join("key.pem"),
                ca_cert: None,
                verify_mode: VerifyMode::None,
                min_version: TlsVersion::Tls12,
            }
        }

        fn write(&self, (cert, key): &(Vec<u8>, Vec<u8>)) {
            std::fs::write(self.0.join("cert.pem"), cert).unwrap();
            std::fs::write(self.0.join("key.pem"), key).unwrap();
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn loads_and_names_the_file_that_is_wrong() {
        let dir = Dir::new("load");
        let (cert, key) = self_signed("one");
        dir.write(&(cert.clone(), key.clone()));
        assert!(Tls::load(dir.options()).is_ok());

        std::fs::write(dir.0.join("cert.pem"), b"not a certificate").unwrap();
        let err = Tls::load(dir.options()).err().unwrap().to_string();
        assert!(err.starts_with("Error loading the certificate chain: ") && err.contains("cert.pem"), "{err}");

        std::fs::write(dir.0.join("cert.pem"), &cert).unwrap();
        std::fs::write(dir.0.join("key.pem"), b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
            .unwrap();
        let err = Tls::load(dir.options()).err().unwrap().to_string();
        assert!(err.starts_with("Error loading the key: ") && err.contains("key.pem"), "{err}");

        let (_, other_key) = self_signed("two");
        std::fs::write(dir.0.join("key.pem"), other_key).unwrap();
        let err = Tls::load(dir.options()).err().unwrap().to_string();
        assert!(err.starts_with("Error loading the key: ") && err.contains("key values mismatch"), "{err}");

        let missing = TlsOptions { ca_cert: Some(dir.0.join("nope.pem")), ..dir.options() };
        std::fs::write(dir.0.join("key.pem"), key).unwrap();
        let err = Tls::load(missing).err().unwrap().to_string();
        assert!(err.starts_with("Error loading the CA certificate: ") && err.contains("nope.pem"), "{err}");
    }

    #[test]
    fn a_failed_reload_keeps_the_old_certificate() {
        let dir = Dir::new("reload");
        dir.write(&self_signed("one"));
        let tls = Tls::load(dir.options()).unwrap();
        let first = tls.config.read().clone();

        std::fs::write(dir.0.join("cert.pem"), b"garbage").unwrap();
        assert!(matches!(tls.refresh(), Err(LoadError::Chain { .. })));
        assert!(Arc::ptr_eq(&first, &tls.config.read()), "kept");

        dir.write(&self_signed("two"));
        tls.reload_if_changed();
        let second = tls.config.read().clone();
        assert!(!Arc::ptr_eq(&first, &second), "the poll saw new files");
        tls.reload_if_changed();
        assert!(Arc::ptr_eq(&second, &tls.config.read()), "unchanged files are not reloaded");
    }
}
