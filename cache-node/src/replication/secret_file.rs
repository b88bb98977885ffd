//! `--repl-secret-file`, read again at each new connection on the replication port, so that
//! the shared secret rotates without a restart: write `new\nold` to both nodes, wait until both
//! have it, then write `new` (see [`Secrets`] for what each line does). A file that becomes
//! unreadable or invalid keeps the secrets last read, with a warning when it becomes so (and
//! for each other error after that): a half-written file must not cut the pair apart, and one
//! that the `-u` user cannot read (it was read as root at start) must not fill the log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::{info, warn};

use super::auth::{SecretError, Secrets};

/// Where the secrets come from, and the last good ones.
pub struct SecretFile {
    /// `None`: the built-in secret, which never changes.
    path: Option<PathBuf>,
    /// The file's contents as last parsed, and their secrets.
    last_good: Mutex<(Vec<u8>, Arc<Secrets>)>,
    /// The error last warned about, until the file reads well again.
    warned: Mutex<Option<String>>,
}

impl SecretFile {
    /// Reads the file; at start-up an error is fatal.
    pub fn load(path: PathBuf) -> Result<Self, SecretError> {
        let contents = read(&path)?;
        let secrets = Secrets::parse(&contents, &path)?;
        Ok(Self::new(Some(path), contents, secrets))
    }

    /// Secrets that are not in a file (the built-in one).
    pub fn fixed(secrets: Secrets) -> Self {
        Self::new(None, Vec::new(), secrets)
    }

    fn new(path: Option<PathBuf>, contents: Vec<u8>, secrets: Secrets) -> Self {
        Self { path, last_good: Mutex::new((contents, Arc::new(secrets))), warned: Mutex::new(None) }
    }

    /// The secrets for a new connection: the file's as it is now, else the last good ones.
    /// A small file, read on the runtime's thread: connections to the peer are rare, and
    /// strangers' handshakes are bounded.
    pub fn current(&self) -> Arc<Secrets> {
        let Some(path) = &self.path else {
            return self.last_good.lock().1.clone();
        };
        let contents = read(path);
        let mut last = self.last_good.lock();
        let parsed = match contents {
            Ok(contents) if contents == last.0 => {
                *self.warned.lock() = None;
                return last.1.clone();
            }
            Ok(contents) => Secrets::parse(&contents, path).map(|secrets| (contents, secrets)),
            Err(e) => Err(e),
        };
        match parsed {
            Ok((contents, secrets)) => {
                info!(secrets = secrets.all().len(), "replication secret file changed: new links use it");
                *last = (contents, Arc::new(secrets));
                *self.warned.lock() = None;
            }
            Err(e) => {
                let error = e.to_string();
                let mut warned = self.warned.lock();
                if warned.as_deref() != Some(error.as_str()) {
                    warn!(error, "replication secret file not reloaded: keeping the secrets last read");
                    *warned = Some(error);
                }
            }
        }
        last.1.clone()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SecretError> {
    std::fs::read(path).map_err(|source| SecretError::Read { path: path.to_owned(), source })
}

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFile").field("path", &self.path).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::auth::{ClientHandshake, ServerHandshake};

    /// Whether a client holding `secrets` gets past a server holding `file`'s current ones.
    fn accepted(client: &Secrets, file: &SecretFile) -> bool {
        let server = ServerHandshake::new(1).unwrap();
        let hs = ClientHandshake::new(client.signing(), 2, &server.nonce()).unwrap();
        server.verify_client(file.current().all(), 2, &hs.nonce(), &hs.proof()).is_ok()
    }

    #[test]
    fn a_rotated_file_takes_effect_and_a_broken_one_keeps_the_last_good_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let (old, new) = ("the-old-shared-secret", "the-new-shared-secret");
        let secrets = |s: &str| Secrets::from_bytes(s.as_bytes()).unwrap();
        std::fs::write(&path, format!("{old}\n")).unwrap();
        let file = SecretFile::load(path.clone()).unwrap();
        assert!(accepted(&secrets(old), &file) && !accepted(&secrets(new), &file));

        std::fs::write(&path, format!("{new}\n{old}\n")).unwrap();
        assert!(accepted(&secrets(old), &file) && accepted(&secrets(new), &file));
        assert!(Arc::ptr_eq(&file.current(), &file.current()), "unchanged contents are not parsed again");

        std::fs::write(&path, "short\n").unwrap();
        assert!(accepted(&secrets(old), &file) && accepted(&secrets(new), &file), "kept");
        std::fs::remove_file(&path).unwrap();
        assert!(accepted(&secrets(new), &file), "kept");

        std::fs::write(&path, format!("{new}\n")).unwrap();
        assert!(!accepted(&secrets(old), &file) && accepted(&secrets(new), &file));
        assert!(SecretFile::load(dir.path().join("missing")).is_err(), "fatal at start");
    }
}
