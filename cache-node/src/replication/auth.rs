//! Mutual challenge/response on the replication port: both nodes prove that they hold the
//! shared secret, which never crosses the wire.
//!
//! The exchange, in the link's messages:
//! 1. the accepting side (server) sends `Hello` with a fresh nonce ([`ServerHandshake::new`]),
//!    and nothing else: whoever connects learns neither its id nor its role;
//! 2. the connecting side (client) answers `Auth` with its id, its own fresh nonce and a proof
//!    ([`ClientHandshake::new`]);
//! 3. the server checks that proof and answers `AuthOk` with its id and its own proof
//!    ([`ServerHandshake::verify_client`]), which the client checks
//!    ([`ClientHandshake::verify_server`]); a client that fails gets an `Error` instead.
//!
//! A proof is HMAC-SHA256 under the secret of a label naming its direction, the node ids known
//! at that point (the client's for the client's proof, both for the server's) and both nonces.
//! So a recorded proof is useless on a new connection (the verifier's fresh nonce is in it),
//! the client's proof cannot be reflected back as the server's (different labels and fields),
//! and the server's proof vouches for the id it sends. Each handshake value is consumed by its
//! verification, so one nonce can never accept two proofs.
//!
//! Rotation: a node may hold several secrets ([`Secrets`]). The client proves with its first;
//! the server accepts a proof under any of its own and answers under that same one, which the
//! client checks with the secret it used.
//!
//! What this does not give: secrecy or integrity of the stream after the handshake; mutual TLS
//! (`--repl-tls-*`, see `transport`) adds those, or the replication port belongs on a network
//! only the pair can reach.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Shorter secrets are refused: guessable, and the operator's generated ones are longer.
pub const MIN_SECRET_LEN: usize = 16;
pub const NONCE_LEN: usize = 32;
pub const PROOF_LEN: usize = 32;

/// A side's fresh random challenge to its peer.
pub type Nonce = [u8; NONCE_LEN];
/// An HMAC-SHA256 proof of holding the secret, bound to one exchange.
pub type Proof = [u8; PROOF_LEN];

type HmacSha256 = Hmac<Sha256>;

/// Domain separation between the two proofs of an exchange. Version 2: the client's proof
/// does not name the server, which reveals its id only to a proven client.
const CLIENT_LABEL: &[u8] = b"cachepair repl v2 client proof";
const SERVER_LABEL: &[u8] = b"cachepair repl v2 server proof";

/// The shared secret, kept only as a keyed HMAC state: cheap to use per connection, and
/// `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Secret {
    key: HmacSha256,
}

/// The secrets a node holds while one is rotated: the first proves this node, and a peer's
/// proof under any of them is accepted, so that the two nodes need not switch at one moment.
#[derive(Debug, Clone)]
pub struct Secrets(Vec<Secret>);

impl Secrets {
    /// A single secret, exactly as given.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        Ok(Self(vec![Secret::from_bytes(bytes)?]))
    }

    /// One secret per line of a file's contents (`\n` or `\r\n`), blank lines ignored: files
    /// written by `echo` or an editor, and Kubernetes Secrets made from them, end with a
    /// newline. The rest of a line is the secret, spaces included.
    pub fn parse(contents: &[u8], path: &Path) -> Result<Self, SecretError> {
        let mut secrets = Vec::new();
        for (i, line) in contents.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.iter().all(u8::is_ascii_whitespace) {
                secrets.push(Secret::checked(line, Some((path, i + 1)))?);
            }
        }
        if secrets.is_empty() {
            return Err(SecretError::Empty { path: Some(path.to_owned()) });
        }
        Ok(Self(secrets))
    }

    /// Reads and parses a file (see [`Secrets::parse`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SecretError> {
        let path = path.as_ref();
        let contents = std::fs::read(path).map_err(|source| SecretError::Read { path: path.to_owned(), source })?;
        Self::parse(&contents, path)
    }

    /// The secret this node proves itself with.
    pub fn signing(&self) -> &Secret {
        &self.0[0]
    }

    /// Every secret a peer may prove itself with.
    pub fn all(&self) -> &[Secret] {
        &self.0
    }
}

/// Why a secret was refused. The texts name the file and line, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the replication secret from {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("the replication secret{} is empty", from_path(path))]
    Empty { path: Option<PathBuf> },
    #[error(
        "the replication secret{} is {len} bytes long; at least {MIN_SECRET_LEN} are required",
        at_line(path, line)
    )]
    TooShort { path: Option<PathBuf>, line: Option<usize>, len: usize },
}

fn from_path(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default()
}

fn at_line(path: &Option<PathBuf>, line: &Option<usize>) -> String {
    let line = line.map(|n| format!(" (line {n})")).unwrap_or_default();
    format!("{}{line}", from_path(path))
}

impl Secret {
    /// The secret exactly as given.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        Self::checked(bytes, None)
    }

    /// `at`: the file and line it comes from, for the error.
    fn checked(bytes: &[u8], at: Option<(&Path, usize)>) -> Result<Self, SecretError> {
        let path = || at.map(|(path, _)| path.to_owned());
        if bytes.is_empty() {
            return Err(SecretError::Empty { path: path() });
        }
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort { path: path(), line: at.map(|(_, line)| line), len: bytes.len() });
        }
        let key = HmacSha256::new_from_slice(bytes).expect("HMAC takes keys of any length");
        Ok(Self { key })
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the connecting peer's proof is wrong: it holds another replication secret, or replays an old exchange")]
    BadClientProof,
    #[error("the accepting peer's proof is wrong: it holds another replication secret, or replays an old exchange")]
    BadServerProof,
    #[error("no random bytes from the operating system for a nonce: {0}")]
    Random(getrandom::Error),
}

fn fresh_nonce() -> Result<Nonce, AuthError> {
    let mut nonce = [0; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(AuthError::Random)?;
    Ok(nonce)
}

/// What both proofs of an exchange are bound to.
#[derive(Debug, Clone, Copy)]
struct Transcript {
    client_id: u64,
    server_nonce: Nonce,
    client_nonce: Nonce,
}

impl Transcript {
    fn client_mac(&self, secret: &Secret) -> HmacSha256 {
        let mut mac = secret.key.clone();
        mac.update(CLIENT_LABEL);
        mac.update(&self.client_id.to_be_bytes());
        mac.update(&self.server_nonce);
        mac.update(&self.client_nonce);
        mac
    }

    fn server_mac(&self, secret: &Secret, server_id: u64) -> HmacSha256 {
        let mut mac = secret.key.clone();
        mac.update(SERVER_LABEL);
        mac.update(&server_id.to_be_bytes());
        mac.update(&self.client_id.to_be_bytes());
        mac.update(&self.server_nonce);
        mac.update(&self.client_nonce);
        mac
    }
}

/// Constant-time comparison, so that timing does not reveal how much of a guess matched.
fn verify(mac: HmacSha256, proof: &Proof) -> bool {
    mac.verify_slice(proof).is_ok()
}

/// The accepting side of one connection's handshake.
#[derive(Debug)]
pub struct ServerHandshake {
    server_id: u64,
    nonce: Nonce,
}

impl ServerHandshake {
    /// Starts a handshake with a fresh nonce, for this connection only.
    pub fn new(server_id: u64) -> Result<Self, AuthError> {
        Ok(Self::with_nonce(server_id, fresh_nonce()?))
    }

    fn with_nonce(server_id: u64, nonce: Nonce) -> Self {
        Self { server_id, nonce }
    }

    /// The nonce for `Hello`.
    pub fn nonce(&self) -> Nonce {
        self.nonce
    }

    /// Checks the fields of the client's `Auth` against each of `secrets`. On success, returns
    /// this side's proof for `AuthOk`, under the secret the client used; the link must send
    /// nothing but a refusal to a peer that fails.
    pub fn verify_client(
        self,
        secrets: &[Secret],
        client_id: u64,
        client_nonce: &Nonce,
        proof: &Proof,
    ) -> Result<Proof, AuthError> {
        let transcript = Transcript { client_id, server_nonce: self.nonce, client_nonce: *client_nonce };
        let secret = secrets
            .iter()
            .find(|secret| verify(transcript.client_mac(secret), proof))
            .ok_or(AuthError::BadClientProof)?;
        Ok(transcript.server_mac(secret, self.server_id).finalize().into_bytes().into())
    }
}

/// The connecting side of one connection's handshake, made in answer to the server's `Hello`.
#[derive(Debug)]
pub struct ClientHandshake {
    transcript: Transcript,
    proof: Proof,
}

impl ClientHandshake {
    /// Answers `Hello { nonce: server_nonce }` as node `client_id`, with a fresh nonce of its
    /// own.
    pub fn new(secret: &Secret, client_id: u64, server_nonce: &Nonce) -> Result<Self, AuthError> {
        Ok(Self::with_nonce(secret, client_id, server_nonce, fresh_nonce()?))
    }

    fn with_nonce(secret: &Secret, client_id: u64, server_nonce: &Nonce, nonce: Nonce) -> Self {
        let transcript = Transcript { client_id, server_nonce: *server_nonce, client_nonce: nonce };
        Self { proof: transcript.client_mac(secret).finalize().into_bytes().into(), transcript }
    }

    /// The nonce for `Auth`.
    pub fn nonce(&self) -> Nonce {
        self.transcript.client_nonce
    }

    /// The proof for `Auth`.
    pub fn proof(&self) -> Proof {
        self.proof
    }

    /// Checks the server's `AuthOk`: its id and its proof. Until it passes, the peer is not
    /// known to hold the secret: the link must neither send nor apply anything else.
    pub fn verify_server(self, secret: &Secret, server_id: u64, proof: &Proof) -> Result<(), AuthError> {
        if verify(self.transcript.server_mac(secret, server_id), proof) {
            Ok(())
        } else {
            Err(AuthError::BadServerProof)
        }
    }
}

#[cfg(test)]
mod tests;
