//! Running keepalived's scripts: `vrrp_script` checks and the notify hooks. A script line is
//! split on whitespace into a program and its arguments (no shell), as keepalived does, and
//! runs as the configured user. With `enable_script_security`, a script that someone other
//! than root could change is refused rather than run as root.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::unistd::{Group, User, getuid};
use tokio::process::Command;
use tracing::{debug, warn};

/// Who scripts run as: keepalived's `script_user` / a `vrrp_script`'s `user`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunAs {
    uid: Option<u32>,
    gid: Option<u32>,
}

impl RunAs {
    pub fn resolve(user: &Option<(String, Option<String>)>) -> Result<RunAs, String> {
        let Some((name, group)) = user else { return Ok(RunAs::default()) };
        let user = User::from_name(name)
            .map_err(|e| format!("looking up user {name}: {e}"))?
            .ok_or_else(|| format!("no user named {name}"))?;
        let gid = match group {
            Some(g) => {
                Group::from_name(g)
                    .map_err(|e| format!("looking up group {g}: {e}"))?
                    .ok_or_else(|| format!("no group named {g}"))?
                    .gid
            }
            None => user.gid,
        };
        Ok(RunAs { uid: Some(user.uid.as_raw()), gid: Some(gid.as_raw()) })
    }

    fn is_root(&self) -> bool {
        self.uid.map_or(getuid().is_root(), |uid| uid == 0)
    }
}

/// A script line ready to run.
#[derive(Debug, Clone)]
pub struct Script {
    argv: Vec<String>,
    run_as: RunAs,
}

impl Script {
    /// Checks the line; `secure` is keepalived's `enable_script_security`.
    pub fn new(line: &str, run_as: RunAs, secure: bool) -> Result<Script, String> {
        let argv: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let Some(program) = argv.first() else { return Err("empty script line".into()) };
        if secure
            && run_as.is_root()
            && let Some(why) = writable_by_others(Path::new(program))
        {
            return Err(format!("refusing to run {program} as root: {why} (enable_script_security)"));
        }
        Ok(Script { argv, run_as })
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]).args(extra).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(gid) = self.run_as.gid {
            cmd.gid(gid);
        }
        if let Some(uid) = self.run_as.uid {
            cmd.uid(uid);
        }
        cmd
    }

    /// Runs the check once: it passes when it exits 0 within `timeout`; a script that overruns
    /// is killed and fails.
    pub async fn check(&self, timeout: Duration) -> bool {
        let mut child = match self.command(&[]).kill_on_drop(true).spawn() {
            Ok(child) => child,
            Err(e) => {
                warn!(script = %self.argv[0], error = %e, "cannot run check script");
                return false;
            }
        };
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => status.success(),
            Ok(Err(e)) => {
                warn!(script = %self.argv[0], error = %e, "waiting for check script");
                false
            }
            Err(_) => {
                debug!(script = %self.argv[0], ?timeout, "check script timed out");
                false
            }
        }
    }

    /// Starts a notify hook with `args` and does not wait for it (keepalived doesn't either);
    /// a background task reaps it.
    pub fn notify(&self, args: &[&str]) {
        match self.command(args).spawn() {
            Ok(mut child) => {
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
            }
            Err(e) => warn!(script = %self.argv[0], error = %e, "cannot run notify script"),
        }
    }
}

/// Why a script run as root could be replaced by another user: the file or a directory above
/// it is writable by group or others, or owned by someone other than root.
fn writable_by_others(program: &Path) -> Option<String> {
    let mut path = Some(program);
    while let Some(p) = path {
        if let Ok(meta) = std::fs::metadata(p) {
            if meta.uid() != 0 {
                return Some(format!("{} is owned by uid {}", p.display(), meta.uid()));
            }
            if meta.mode() & 0o022 != 0 {
                return Some(format!("{} is writable by group or others", p.display()));
            }
        }
        path = p.parent().filter(|parent| !parent.as_os_str().is_empty());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_passes_on_exit_zero_and_fails_otherwise_or_on_timeout() {
        let secure = false;
        let ok = Script::new("/bin/true", RunAs::default(), secure).unwrap();
        let fail = Script::new("/bin/false", RunAs::default(), secure).unwrap();
        let slow = Script::new("/bin/sleep 5", RunAs::default(), secure).unwrap();
        let missing = Script::new("/nonexistent/check", RunAs::default(), secure).unwrap();
        let t = Duration::from_secs(2);
        assert!(ok.check(t).await);
        assert!(!fail.check(t).await);
        assert!(!slow.check(Duration::from_millis(100)).await);
        assert!(!missing.check(t).await);
    }

    #[test]
    fn an_empty_line_is_refused() {
        assert!(Script::new("  ", RunAs::default(), false).is_err());
    }

    #[test]
    fn script_security_refuses_a_file_others_can_write() {
        let dir = std::env::temp_dir().join(format!("cachepair-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("check.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let root = RunAs { uid: Some(0), gid: Some(0) };
        let refused = Script::new(script.to_str().unwrap(), root, true);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(refused.unwrap_err().contains("enable_script_security"));
        assert!(Script::new("/bin/true", root, true).is_ok());
    }

    #[test]
    fn unknown_users_are_named() {
        let err = RunAs::resolve(&Some(("no-such-user-cachepair".into(), None))).unwrap_err();
        assert!(err.contains("no-such-user-cachepair"));
    }
}
