//! Client authentication, as memcached 1.6 does it: SASL PLAIN on the binary protocol (`-S`)
//! and a login token on the text protocol (`-Y`), both against the users of an auth file.
//! A connection serves nothing until it has logged in; the users are re-read when the file
//! changes (a Kubernetes Secret update) or on SIGHUP, without a restart.

pub mod users;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};

use super::stats::ServerStats;
use super::{Context, Progress, Reply};
use crate::protocol::auth::{Token, parse_token};
use crate::rate_limited_log::RateLimitedLog;
pub use users::{Users, UsersError};

/// How often the auth file is checked for changes (see `node`).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// At most one log line per interval about failed logins, with the number left out.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the auth file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("auth file {path}: {source}")]
    Users { path: PathBuf, source: UsersError },
}

/// Which protocols log in, and the users they log in as.
#[derive(Debug)]
pub struct Auth {
    /// SASL PLAIN on the binary protocol.
    pub sasl: bool,
    /// The login token on the text protocol.
    pub ascii: bool,
    pub file: PathBuf,
    users: RwLock<Arc<Users>>,
    /// The file's bytes as last loaded, to tell a change.
    loaded: Mutex<Vec<u8>>,
    /// Why the last reload failed, so that a file that stays broken is reported once.
    last_error: Mutex<Option<String>>,
    failures: Mutex<RateLimitedLog>,
}

impl Auth {
    /// Reads the users from `file`; an unreadable or malformed file is an error.
    pub fn load(file: &Path, sasl: bool, ascii: bool) -> Result<Self, AuthError> {
        let (bytes, users) = read(file)?;
        info!(file = %file.display(), users = users.len(), sasl, ascii, "client authentication on");
        Ok(Self {
            sasl,
            ascii,
            file: file.to_path_buf(),
            users: RwLock::new(Arc::new(users)),
            loaded: Mutex::new(bytes),
            last_error: Mutex::new(None),
            failures: Mutex::new(RateLimitedLog::new(FAILURE_LOG_INTERVAL)),
        })
    }

    /// Re-reads the auth file; a file that cannot be read or parsed keeps the users loaded
    /// before, so a bad edit locks nobody out. Returns whether the users changed.
    pub fn reload(&self) -> Result<bool, AuthError> {
        let (bytes, users) = read(&self.file)?;
        let mut loaded = self.loaded.lock();
        if *loaded == bytes {
            return Ok(false);
        }
        *loaded = bytes;
        *self.users.write() = Arc::new(users);
        Ok(true)
    }

    /// Reloads and logs the outcome, a failure once until it changes: for SIGHUP and the file
    /// watch.
    pub fn reload_and_log(&self) {
        let result = self.reload();
        let error = result.as_ref().err().map(ToString::to_string);
        let repeated = error.is_some() && *self.last_error.lock() == error;
        match result {
            Ok(true) => info!(file = %self.file.display(), users = self.users.read().len(), "auth file reloaded"),
            Ok(false) => {}
            Err(_) if repeated => {}
            Err(e) => warn!(error = %e, "auth file not reloaded; the users loaded before stay"),
        }
        *self.last_error.lock() = error;
    }

    /// Checks a login, counting it as memcached does (`auth_cmds`, and `auth_errors` when it
    /// fails) and logging failures, rate-limited (never the password).
    pub fn check(&self, stats: &ServerStats, user: &[u8], password: &[u8]) -> bool {
        stats.auth_cmds.fetch_add(1, Relaxed);
        let users = self.users.read().clone();
        if users.check(user, password) {
            return true;
        }
        self.failed(stats, user);
        false
    }

    /// Counts and logs a login that failed before any password could be checked (a SASL
    /// mechanism other than PLAIN, a malformed PLAIN message).
    pub fn failed(&self, stats: &ServerStats, user: &[u8]) {
        stats.auth_errors.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.failures.lock().event(Instant::now()) {
            warn!(user = %String::from_utf8_lossy(user), suppressed, "authentication failed");
        }
    }
}

fn read(file: &Path) -> Result<(Vec<u8>, Users), AuthError> {
    let bytes = std::fs::read(file).map_err(|source| AuthError::Read { path: file.to_path_buf(), source })?;
    let users = Users::parse(&bytes).map_err(|source| AuthError::Users { path: file.to_path_buf(), source })?;
    Ok((bytes, users))
}

/// The text protocol before login: only a login token is taken, as memcached's
/// `try_read_command_asciiauth`; everything else is answered `CLIENT_ERROR unauthenticated`.
/// Stops after a successful login with the rest of the buffer left for the commands.
pub fn text_login(ctx: &Context, auth: &Auth, buf: &[u8], out: &mut Reply, authenticated: &mut bool) -> Progress {
    let mut progress = Progress::default();
    let mut requests = 0;
    while !*authenticated {
        if progress.consumed == buf.len() || progress.full(requests, out) {
            return progress;
        }
        requests += 1;
        let reply: &[u8] = match parse_token(&buf[progress.consumed..]) {
            Token::Incomplete => return progress,
            Token::Close => {
                progress.close = true;
                return progress;
            }
            Token::NotToken { len } => {
                progress.consumed += len;
                b"CLIENT_ERROR unauthenticated\r\n"
            }
            Token::TooLong { len } => {
                progress.consumed += len;
                progress.close = true;
                out.extend_from_slice(b"CLIENT_ERROR authentication token too long\r\n");
                return progress;
            }
            Token::BadTermination { len } => {
                progress.consumed += len;
                b"CLIENT_ERROR bad command line termination\r\n"
            }
            Token::BadFormat { len } => {
                progress.consumed += len;
                b"CLIENT_ERROR bad authentication token format\r\n"
            }
            // Without -Y, the text protocol cannot log in.
            Token::Credentials { len, .. } if !auth.ascii => {
                progress.consumed += len;
                b"CLIENT_ERROR unauthenticated\r\n"
            }
            Token::Credentials { user, password, len } => {
                progress.consumed += len;
                *authenticated = auth.check(&ctx.stats, user, password);
                if *authenticated { b"STORED\r\n" } else { b"CLIENT_ERROR authentication failure\r\n" }
            }
        };
        out.extend_from_slice(reply);
    }
    // Logged in: the requests after the token are the engine's.
    progress.more = progress.consumed < buf.len();
    progress
}

#[cfg(test)]
mod tests;
