//! Server-wide counters and the `stats` command's groups.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use super::Context;
use crate::server::conns::Transport;
use crate::store::classes;

/// Connection-level counters; item counters live in the store's shards.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub cmd_flush: AtomicU64,
    /// Connections closed by `-o idle_timeout`.
    pub idle_kicks: AtomicU64,
    /// UDP replies not sent: more datagrams than the frame header can number.
    pub udp_replies_too_large: AtomicU64,
    /// The client listeners are open (readiness).
    pub accepting_conns: AtomicBool,
}

impl ServerStats {
    pub fn reset(&self) {
        self.total_connections.store(0, Relaxed);
        self.rejected_connections.store(0, Relaxed);
        self.bytes_read.store(0, Relaxed);
        self.bytes_written.store(0, Relaxed);
        self.cmd_flush.store(0, Relaxed);
        self.idle_kicks.store(0, Relaxed);
        self.udp_replies_too_large.store(0, Relaxed);
    }
}

/// Version reported by `version` and `stats`: the memcached release whose behaviour we follow
/// first, since clients (libmemcached among them) enable features by parsing it, then ours.
pub const VERSION: &str = concat!("1.6.18-cache-node-", env!("CARGO_PKG_VERSION"));

/// Statistics as name/value pairs: the text protocol renders them as `STAT` lines, the
/// binary protocol as one response each.
#[derive(Debug, Default)]
pub struct StatList(pub Vec<(String, String)>);

impl StatList {
    fn add(&mut self, name: impl Into<String>, value: impl std::fmt::Display) {
        self.0.push((name.into(), value.to_string()));
    }

    /// `STAT name value` lines and the closing `END`.
    pub fn render_text(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.0 {
            out.extend_from_slice(b"STAT ");
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"END\r\n");
    }
}

/// Resource usage of this process: (user, system) CPU seconds.
pub fn rusage() -> (f64, f64) {
    // SAFETY: getrusage only writes into the struct we hand it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// Seconds since the server started.
pub fn uptime(ctx: &Context) -> u32 {
    ctx.clock.now() - crate::store::clock::START_OFFSET as u32
}

/// `stats` with no arguments: memcached's general statistics.
pub fn general(ctx: &Context) -> StatList {
    let mut out = StatList::default();
    let now = ctx.clock.now();
    let s = ctx.store.stats();
    let c = s.counters;
    let t = s.totals();
    let (user, system) = rusage();
    out.add("pid", std::process::id());
    out.add("uptime", uptime(ctx));
    out.add("time", ctx.clock.to_unix(now));
    out.add("version", VERSION);
    out.add("libevent", "tokio");
    out.add("pointer_size", usize::BITS);
    out.add("rusage_user", format_args!("{user:.6}"));
    out.add("rusage_system", format_args!("{system:.6}"));
    out.add("max_connections", ctx.settings.max_connections);
    out.add("curr_connections", ctx.stats.curr_connections.load(Relaxed));
    out.add("total_connections", ctx.stats.total_connections.load(Relaxed));
    out.add("rejected_connections", ctx.stats.rejected_connections.load(Relaxed));
    out.add("connection_structures", ctx.stats.curr_connections.load(Relaxed));
    out.add("cmd_get", c.cmd_get);
    out.add("cmd_set", t.cmd_set);
    out.add("cmd_flush", ctx.stats.cmd_flush.load(Relaxed));
    out.add("cmd_touch", c.cmd_touch);
    out.add("get_hits", t.get_hits);
    out.add("get_misses", c.get_misses);
    out.add("get_expired", c.get_expired);
    out.add("get_flushed", c.get_flushed);
    out.add("delete_misses", c.delete_misses);
    out.add("delete_hits", t.delete_hits);
    out.add("incr_misses", c.incr_misses);
    out.add("incr_hits", t.incr_hits);
    out.add("decr_misses", c.decr_misses);
    out.add("decr_hits", t.decr_hits);
    out.add("cas_misses", c.cas_misses);
    out.add("cas_hits", t.cas_hits);
    out.add("cas_badval", t.cas_badval);
    out.add("touch_hits", t.touch_hits);
    out.add("touch_misses", c.touch_misses);
    // As memcached: only with idle_timeout on.
    if ctx.settings.idle_timeout.is_some() {
        out.add("idle_kicks", ctx.stats.idle_kicks.load(Relaxed));
    }
    out.add("bytes_read", ctx.stats.bytes_read.load(Relaxed));
    out.add("bytes_written", ctx.stats.bytes_written.load(Relaxed));
    out.add("limit_maxbytes", s.limit_maxbytes);
    out.add("accepting_conns", u8::from(ctx.stats.accepting_conns.load(Relaxed)));
    out.add("threads", ctx.settings.threads);
    out.add("bytes", s.bytes);
    out.add("curr_items", s.curr_items);
    out.add("total_items", c.total_items);
    out.add("expired_unfetched", t.expired_unfetched);
    out.add("evicted_unfetched", t.evicted_unfetched);
    out.add("evictions", t.evicted);
    out.add("reclaimed", t.reclaimed);
    out
}

/// `stats settings`.
pub fn settings(ctx: &Context) -> StatList {
    let mut out = StatList::default();
    let s = &ctx.settings;
    out.add("maxbytes", s.limit_bytes);
    out.add("maxconns", s.max_connections);
    out.add("tcpport", s.tcp_port);
    out.add("udpport", s.udp_port);
    out.add("inter", if s.interfaces.is_empty() { "NULL" } else { &s.interfaces });
    out.add("verbosity", ctx.verbosity());
    out.add("evictions", "on");
    out.add("num_threads", s.threads);
    out.add("cas_enabled", "yes");
    out.add("item_size_max", s.item_size_max);
    out.add("flush_enabled", "yes");
    out.add("idle_timeout", s.idle_timeout.map_or(0, |t| t.as_secs()));
    out
}

/// `stats items`: per slab class that holds items, memcached's fields for an LRU that is not
/// segmented (`-o no_lru_maintainer`): cache-node has one CLOCK list per shard. Classes are
/// those memcached would use for the same items ([`crate::store::classes`]). `age` is as of
/// the background sweep's last pass over the items.
pub fn items(ctx: &Context) -> StatList {
    let mut out = StatList::default();
    let now = ctx.clock.now();
    for (n, c) in ctx.store.stats().classes.iter().filter(|(_, c)| c.number > 0) {
        let mut add = |name: &str, value: u64| out.add(format!("items:{n}:{name}"), value);
        add("number", c.number);
        add("age", u64::from(now.saturating_sub(c.oldest)));
        add("mem_requested", c.mem_requested);
        add("evicted", c.evicted);
        add("evicted_nonzero", c.evicted_nonzero);
        add("evicted_time", u64::from(c.evicted_time));
        add("outofmemory", c.outofmemory);
        // No tail item is ever repaired or found locked: there are no item reference counts.
        add("tailrepairs", 0);
        add("reclaimed", c.reclaimed);
        add("expired_unfetched", c.expired_unfetched);
        add("evicted_unfetched", c.evicted_unfetched);
        add("crawler_reclaimed", c.crawler_reclaimed);
        add("crawler_items_checked", c.crawler_items_checked);
        add("lrutail_reflocked", 0);
    }
    out
}

/// `stats slabs`: per slab class, the chunks and pages memcached would use for the items held
/// now, and the class's hit counters; `total_malloced` is the memory the items really take.
pub fn slabs(ctx: &Context) -> StatList {
    let mut out = StatList::default();
    let s = ctx.store.stats();
    let mut active = 0;
    for (n, c) in s.classes.iter().filter(|(_, c)| c.chunks > 0) {
        active += 1;
        let per_page = classes::chunks_per_page(n) as u64;
        let pages = c.chunks.div_ceil(per_page);
        let mut add = |name: &str, value: u64| out.add(format!("{n}:{name}"), value);
        add("chunk_size", classes::chunk_size(n) as u64);
        add("chunks_per_page", per_page);
        add("total_pages", pages);
        add("total_chunks", pages * per_page);
        add("used_chunks", c.chunks);
        add("free_chunks", pages * per_page - c.chunks);
        add("free_chunks_end", 0);
        add("get_hits", c.get_hits);
        add("cmd_set", c.cmd_set);
        add("delete_hits", c.delete_hits);
        add("incr_hits", c.incr_hits);
        add("decr_hits", c.decr_hits);
        add("cas_hits", c.cas_hits);
        add("cas_badval", c.cas_badval);
        add("touch_hits", c.touch_hits);
    }
    out.add("active_slabs", active);
    out.add("total_malloced", s.bytes);
    out
}

/// `stats sizes`: memcached's item size histogram, which is off unless enabled.
pub fn sizes() -> StatList {
    let mut out = StatList::default();
    out.add("sizes_status", "disabled");
    out
}

/// `stats conns`: every listener, UDP socket and client connection, by file descriptor.
pub fn conns(ctx: &Context) -> StatList {
    let mut out = StatList::default();
    let now = ctx.clock.now();
    for (fd, c) in ctx.conns.snapshot() {
        if c.transport == Transport::Udp {
            out.add(format!("{fd}:UDP"), "UDP");
        }
        out.add(format!("{fd}:addr"), c.addr_text());
        if let Some(local) = c.listen_addr_text() {
            out.add(format!("{fd}:listen_addr"), local);
        }
        out.add(format!("{fd}:state"), c.state().name());
        out.add(format!("{fd}:secs_since_last_cmd"), now.saturating_sub(c.last_cmd()));
    }
    out
}
