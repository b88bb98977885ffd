//! Server-wide counters and the `stats` command's groups.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Context, push_num};

/// Connection-level counters; item counters live in the store's shards.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub cmd_flush: AtomicU64,
}

impl ServerStats {
    pub fn reset(&self) {
        self.total_connections.store(0, Relaxed);
        self.rejected_connections.store(0, Relaxed);
        self.bytes_read.store(0, Relaxed);
        self.bytes_written.store(0, Relaxed);
        self.cmd_flush.store(0, Relaxed);
    }
}

/// Version reported by `version` and `stats`: the memcached release whose behaviour we follow
/// first, since clients (libmemcached among them) enable features by parsing it, then ours.
pub const VERSION: &str = concat!("1.6.18-cache-node-", env!("CARGO_PKG_VERSION"));

fn stat(out: &mut Vec<u8>, name: &str, value: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "STAT {name} {value}\r\n");
}

/// Resource usage of this process: (user, system) CPU seconds.
fn rusage() -> (f64, f64) {
    // SAFETY: getrusage only writes into the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// `stats` with no arguments: memcached's general statistics.
pub fn general(ctx: &Context, out: &mut Vec<u8>) {
    let now = ctx.clock.now();
    let s = ctx.store.stats();
    let c = s.counters;
    let (user, system) = rusage();
    stat(out, "pid", std::process::id());
    stat(out, "uptime", now - crate::store::clock::START_OFFSET as u32);
    stat(out, "time", ctx.clock.to_unix(now));
    stat(out, "version", VERSION);
    stat(out, "libevent", "tokio");
    stat(out, "pointer_size", usize::BITS);
    stat(out, "rusage_user", format_args!("{user:.6}"));
    stat(out, "rusage_system", format_args!("{system:.6}"));
    stat(out, "max_connections", ctx.settings.max_connections);
    stat(out, "curr_connections", ctx.stats.curr_connections.load(Relaxed));
    stat(out, "total_connections", ctx.stats.total_connections.load(Relaxed));
    stat(out, "rejected_connections", ctx.stats.rejected_connections.load(Relaxed));
    stat(out, "connection_structures", ctx.stats.curr_connections.load(Relaxed));
    stat(out, "cmd_get", c.cmd_get);
    stat(out, "cmd_set", c.cmd_set);
    stat(out, "cmd_flush", ctx.stats.cmd_flush.load(Relaxed));
    stat(out, "cmd_touch", c.cmd_touch);
    stat(out, "get_hits", c.get_hits);
    stat(out, "get_misses", c.get_misses);
    stat(out, "get_expired", c.get_expired);
    stat(out, "get_flushed", c.get_flushed);
    stat(out, "delete_misses", c.delete_misses);
    stat(out, "delete_hits", c.delete_hits);
    stat(out, "incr_misses", c.incr_misses);
    stat(out, "incr_hits", c.incr_hits);
    stat(out, "decr_misses", c.decr_misses);
    stat(out, "decr_hits", c.decr_hits);
    stat(out, "cas_misses", c.cas_misses);
    stat(out, "cas_hits", c.cas_hits);
    stat(out, "cas_badval", c.cas_badval);
    stat(out, "touch_hits", c.touch_hits);
    stat(out, "touch_misses", c.touch_misses);
    stat(out, "bytes_read", ctx.stats.bytes_read.load(Relaxed));
    stat(out, "bytes_written", ctx.stats.bytes_written.load(Relaxed));
    stat(out, "limit_maxbytes", s.limit_maxbytes);
    stat(out, "threads", ctx.settings.threads);
    stat(out, "bytes", s.bytes);
    stat(out, "curr_items", s.curr_items);
    stat(out, "total_items", c.total_items);
    stat(out, "expired_unfetched", c.expired_unfetched);
    stat(out, "evicted_unfetched", c.evicted_unfetched);
    stat(out, "evictions", c.evictions);
    stat(out, "reclaimed", c.reclaimed);
    out.extend_from_slice(b"END\r\n");
}

/// `stats settings`.
pub fn settings(ctx: &Context, out: &mut Vec<u8>) {
    let s = &ctx.settings;
    stat(out, "maxbytes", s.limit_bytes);
    stat(out, "maxconns", s.max_connections);
    stat(out, "tcpport", s.tcp_port);
    stat(out, "udpport", s.udp_port);
    stat(out, "inter", if s.interfaces.is_empty() { "NULL" } else { &s.interfaces });
    stat(out, "verbosity", ctx.verbosity());
    stat(out, "evictions", "on");
    stat(out, "num_threads", s.threads);
    stat(out, "cas_enabled", "yes");
    stat(out, "item_size_max", s.item_size_max);
    stat(out, "flush_enabled", "yes");
    out.extend_from_slice(b"END\r\n");
}

/// `stats items`: one pseudo slab class holds everything (the store has no slab classes).
pub fn items(ctx: &Context, out: &mut Vec<u8>) {
    let s = ctx.store.stats();
    if s.curr_items > 0 {
        let c = s.counters;
        stat(out, "items:1:number", s.curr_items);
        stat(out, "items:1:evicted", c.evictions);
        stat(out, "items:1:evicted_unfetched", c.evicted_unfetched);
        stat(out, "items:1:expired_unfetched", c.expired_unfetched);
        stat(out, "items:1:reclaimed", c.reclaimed);
    }
    out.extend_from_slice(b"END\r\n");
}

/// `stats slabs`: memory totals, in the shape memcached uses.
pub fn slabs(ctx: &Context, out: &mut Vec<u8>) {
    let s = ctx.store.stats();
    if s.curr_items > 0 {
        stat(out, "1:used_chunks", s.curr_items);
        stat(out, "1:mem_requested", s.bytes);
    }
    stat(out, "active_slabs", u8::from(s.curr_items > 0));
    stat(out, "total_malloced", s.bytes);
    out.extend_from_slice(b"END\r\n");
}

/// Renders a counter for the benefit of callers that build their own lines.
pub fn push_stat_line(out: &mut Vec<u8>, name: &str, value: u64) {
    out.extend_from_slice(b"STAT ");
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    push_num(out, value);
    out.extend_from_slice(b"\r\n");
}
