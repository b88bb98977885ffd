//! Certificates and keys from PEM files, for both TLS endpoints: the client port (`-Z`) and
//! the replication link (`--repl-tls-*`). The error texts are memcached's `refresh_certs`
//! errors, which it also prints at start-up; the reason after ` : ` is rustls's.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why the files do not make a TLS configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("Error loading the certificate chain: {} : {reason}", path.display())]
    Chain { path: PathBuf, reason: String },
    #[error("Error loading the key: {} : {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("Error loading the CA certificate: {} : {reason}", path.display())]
    Ca { path: PathBuf, reason: String },
}

/// Reads a whole file, naming it in the error `error` makes.
pub fn read(path: &Path, error: fn(PathBuf, String) -> LoadError) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| error(path.to_owned(), e.to_string()))
}

/// A certificate chain and its private key, checked to belong together.
pub fn certified_key(
    (chain_path, chain_pem): (&Path, &[u8]),
    (key_path, key_pem): (&Path, &[u8]),
    provider: &CryptoProvider,
) -> Result<CertifiedKey, LoadError> {
    let chain_error = |reason: String| LoadError::Chain { path: chain_path.to_owned(), reason };
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| chain_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(chain_error("no PEM certificate in the file".into()));
    }
    let key_error = |reason: String| LoadError::Key { path: key_path.to_owned(), reason };
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| key_error(e.to_string()))?;
    let key = provider.key_provider.load_private_key(key).map_err(|e| key_error(e.to_string()))?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        // Reported against the key, as OpenSSL (and so memcached) reports it.
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err(key_error(format!("key values mismatch: not the key of {}", chain_path.display())))
        }
        Err(e) => Err(chain_error(e.to_string())),
    }
}

/// The CA certificates of a PEM file: at least one.
pub fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, LoadError> {
    let ca_error = |reason: String| LoadError::Ca { path: path.to_owned(), reason };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.map_err(|e| ca_error(e.to_string()))?).map_err(|e| ca_error(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no PEM certificate in the file".into()));
    }
    Ok(roots)
}
