//! Executes parsed requests against the store and renders the replies, one module per
//! protocol. Shared here: the server-wide context and the result of processing a buffer.

pub mod binary;
pub mod meta;
pub mod stats;
pub mod text;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use crate::store::{Clock, Store};
pub use stats::ServerStats;

/// Settings that replies and `stats settings` report.
#[derive(Debug, Clone)]
pub struct Settings {
    pub tcp_port: u16,
    pub udp_port: u16,
    pub interfaces: String,
    pub max_connections: usize,
    pub threads: usize,
    pub item_size_max: usize,
    pub limit_bytes: usize,
}

/// Everything a connection needs, shared by all of them.
pub struct Context {
    pub store: Store,
    pub clock: Clock,
    pub stats: ServerStats,
    pub settings: Settings,
    /// `-v` level, changeable with the `verbosity` command.
    pub verbosity: AtomicU8,
    /// Open sockets, for `stats conns`.
    pub conns: crate::server::Registry,
    /// Replication's state, once it runs (`stats replication`, `/metrics`).
    pub replication: std::sync::OnceLock<Arc<crate::replication::Status>>,
}

impl Context {
    pub fn new(store: Store, settings: Settings, verbosity: u8) -> Arc<Self> {
        Arc::new(Self {
            store,
            clock: Clock::new(),
            stats: ServerStats::default(),
            settings,
            verbosity: AtomicU8::new(verbosity),
            conns: Default::default(),
            replication: Default::default(),
        })
    }

    /// An engine without listeners, one worker and a store of `config`'s size: for driving the
    /// engine directly, as the engine tests and the fuzz targets do.
    pub fn detached(config: crate::store::Config) -> Arc<Self> {
        let settings = Settings {
            tcp_port: 0,
            udp_port: 0,
            interfaces: String::new(),
            max_connections: 16,
            threads: 1,
            item_size_max: config.item_size_max,
            limit_bytes: config.limit_bytes,
        };
        Self::new(Store::new(config), settings, 0)
    }

    /// `stats reset`: zeroes the counters (and the replication lag distribution); state such as
    /// item counts stays.
    pub fn reset_stats(&self) {
        self.store.reset_stats();
        self.stats.reset();
        if let Some(replication) = self.replication.get() {
            replication.lag.reset();
        }
    }

    pub fn verbosity(&self) -> u8 {
        self.verbosity.load(Relaxed)
    }

    /// The `verbosity` command: memcached caps the level at 2 (`-vv`).
    pub fn set_verbosity(&self, level: u32) {
        let level = level.min(2) as u8;
        self.verbosity.store(level, Relaxed);
        crate::logging::set_verbosity(level);
    }
}

/// What processing the front of a connection's read buffer achieved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the buffer fully handled.
    pub consumed: usize,
    /// Bytes still to discard as they arrive (the rest of a refused value).
    pub swallow: usize,
    /// Close the connection once the replies are written.
    pub close: bool,
}

/// Appends a decimal number.
pub fn push_num(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}
