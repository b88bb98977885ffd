//! Running as a system service the way memcached does: refusing root without `-u`, switching
//! to that user, room for `-c` connections in the open-files limit, detaching into the
//! background (`-d`) and the pid file (`-P`).
//!
//! Everything here runs before the tokio runtime starts, while the process has one thread:
//! `fork` in a multi-threaded process would leave the child with locks held by threads that
//! no longer exist.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{self, User};

/// sysexits.h codes, the ones memcached exits with.
pub const EX_USAGE: u8 = 64;
pub const EX_NOUSER: u8 = 67;
pub const EX_OSERR: u8 = 71;
pub const EX_CANTCREAT: u8 = 73;

/// A start-up failure: the message for standard error and the process's exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Fatal {
    pub code: u8,
    pub message: String,
}

impl Fatal {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// The user to become once the ports are bound. As in memcached, `-u` only matters to root,
/// and root without it is refused (here unless `allow_root`). Resolved before binding, so that
/// a misspelt user fails before anything else happens.
pub fn target_user(user: Option<&str>, allow_root: bool) -> Result<Option<User>, Fatal> {
    if !unistd::getuid().is_root() && !unistd::geteuid().is_root() {
        return Ok(None);
    }
    let Some(name) = user.filter(|u| !u.is_empty()) else {
        if allow_root {
            return Ok(None);
        }
        return Err(Fatal::new(EX_USAGE, "can't run as root without the -u switch"));
    };
    match User::from_name(name) {
        Ok(Some(user)) => Ok(Some(user)),
        Ok(None) | Err(_) => Err(Fatal::new(EX_NOUSER, format!("can't find the user {name} to switch to"))),
    }
}

/// Gives up root for `user`: no supplementary groups, then its primary group, then its uid
/// (in that order: once the uid is gone, the groups can no longer be changed).
pub fn switch_to(user: &User) -> Result<(), Fatal> {
    // EPERM means we are already unprivileged as far as groups go; memcached carries on too.
    match unistd::setgroups(&[]) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(e) => return Err(Fatal::new(EX_OSERR, format!("failed to drop supplementary groups: {e}"))),
    }
    unistd::setgid(user.gid)
        .and_then(|()| unistd::setuid(user.uid))
        .map_err(|_| Fatal::new(EX_OSERR, format!("failed to assume identity of user {}", user.name)))
}

/// Raises the open-files limit (`RLIMIT_NOFILE`) to make room for `needed` descriptors, as
/// memcached does for `-c`: the soft limit up to the hard one, and first the hard one up to
/// `needed` when it is lower, which only a privileged process may do (so call this before
/// dropping root). Returns the limit now in force, which may still be below `needed`.
pub fn raise_open_files_limit(needed: u64) -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    // EPERM unprivileged, or above the kernel's fs.nr_open: the hard limit stays as it is.
    if hard < needed && setrlimit(Resource::RLIMIT_NOFILE, needed, needed).is_ok() {
        return Ok(needed);
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// memcached's `-d`: fork, the parent exits 0, the child starts a new session (no controlling
/// terminal) and works from `/`. Standard input, output and error go to /dev/null unless
/// `keep_stdio` — memcached keeps them with `-v`, so that `-d -v >> log 2>&1` logs.
pub fn daemonize(keep_stdio: bool) -> Result<(), Fatal> {
    unistd::daemon(false, keep_stdio)
        .map_err(|e| Fatal::new(EX_OSERR, format!("failed to daemon() in order to daemonize: {e}")))
}

/// The `-P` file. Created before daemonizing, so that a bad path is reported on the terminal
/// with a non-zero exit instead of silently in the background; filled with the daemon's pid
/// once it is known; removed when dropped at exit.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: Option<File>,
}

impl PidFile {
    pub fn create(path: &Path) -> Result<Self, Fatal> {
        let cannot = |e: std::io::Error| {
            Fatal::new(EX_CANTCREAT, format!("Could not open the pid file {} for writing: {e}", path.display()))
        };
        // Daemonizing changes the working directory to `/`.
        let path = std::path::absolute(path).map_err(cannot)?;
        let file = File::create(&path).map_err(cannot)?;
        Ok(Self { path, file: Some(file) })
    }

    /// Writes this process's id; call it after daemonizing.
    pub fn write_pid(&mut self) -> std::io::Result<()> {
        match self.file.take() {
            Some(mut file) => writeln!(file, "{}", std::process::id()),
            None => Ok(()),
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // An unwritten file is ours and empty; a written one may since have been claimed by
        // another instance started with the same -P, whose file must stay.
        let ours = self.file.is_some()
            || fs::read_to_string(&self.path).is_ok_and(|s| s.trim() == std::process::id().to_string());
        if ours && let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the pid file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_holds_our_pid_and_goes_away() {
        let dir = std::env::temp_dir().join(format!("cache-node-pid-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.pid");
        let mut pid = PidFile::create(&path).unwrap();
        pid.write_pid().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", std::process::id()));
        drop(pid);
        assert!(!path.exists());

        // A file another process has since rewritten is left alone.
        let mut pid = PidFile::create(&path).unwrap();
        pid.write_pid().unwrap();
        fs::write(&path, "1\n").unwrap();
        drop(pid);
        assert!(path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pid_file_in_a_missing_directory_is_refused() {
        let err = PidFile::create(Path::new("/nonexistent-dir/x.pid")).unwrap_err();
        assert_eq!(err.code, EX_CANTCREAT);
    }
}
