//! Logs through `tracing`, at memcached's verbosity levels: none for errors only, `-v` adds
//! warnings and start/stop, `-vv` client connections and commands, `-vvv` everything. The
//! `verbosity` command changes the level of the running process.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Set once logging is initialised; absent in unit tests, where level changes are no-ops.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber, logging to standard error. `RUST_LOG`, when set, takes
/// precedence over `-v`.
pub fn init(verbosity: u8) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| level_filter(verbosity));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // `-d -v >> memcached.log 2>&1` is the usual way to keep the log: no colour codes in files.
        .with_ansi(std::io::stderr().is_terminal());
    if tracing_subscriber::registry().with(filter).with(fmt).try_init().is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// Switches the running process to a `-v` count. Disabled levels stay free on the hot path:
/// reloading rebuilds tracing's per-callsite interest cache.
pub fn set_verbosity(verbosity: u8) {
    if let Some(handle) = FILTER.get()
        && let Err(e) = handle.reload(level_filter(verbosity))
    {
        tracing::warn!(error = %e, "cannot change the log level");
    }
}

fn level_filter(verbosity: u8) -> EnvFilter {
    EnvFilter::new(match verbosity {
        0 => "error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    })
}
