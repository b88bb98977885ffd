//! Server-wide counters and the `stats` command's groups.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use super::Context;
use super::conns::Transport;
use crate::store::{Mode, SWEEP_INTERVAL, StoreStatus, classes};

/// The listen backlog of the client ports (`tcp_backlog`), memcached's default: the server
/// listens with it, `stats settings` reports it.
pub const TCP_BACKLOG: u32 = 1024;

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
    /// `me` commands: what memcached 1.6.18 counts as `cmd_meta` (its other meta commands
    /// count under cmd_get, cmd_set and the rest, not here).
    pub cmd_meta: AtomicU64,
    /// Storage commands refused because the value alone exceeds `-I`.
    pub store_too_large: AtomicU64,
    /// Storage commands (not append or prepend, as memcached) refused for want of memory.
    pub store_no_memory: AtomicU64,
    /// Times an accept loop stopped accepting after a failed accept (out of descriptors and
    /// the like) and backed off: memcached's listener disabling.
    pub listen_disabled_num: AtomicU64,
    /// Microseconds spent in those back-offs.
    pub time_in_listen_disabled_us: AtomicU64,
    /// Times a connection's batch filled up (see `engine::BATCH_REQUESTS`) and it wrote its
    /// replies before going on with requests already read: memcached's `-R` yield.
    pub conn_yields: AtomicU64,
    /// Passes of the background expiry sweep over the whole store begun.
    pub lru_crawler_starts: AtomicU64,
    /// The background expiry sweep runs (the server started it).
    pub lru_crawler_running: AtomicBool,
    /// Logins checked (text tokens, SASL AUTH and STEP), and those that failed.
    pub auth_cmds: AtomicU64,
    pub auth_errors: AtomicU64,
    /// Admin requests refused for want of the token (not in `stats`: memcached has no admin).
    pub admin_auth_errors: AtomicU64,
    /// `-Z`: TLS handshakes that failed or timed out.
    pub ssl_handshake_errors: AtomicU64,
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
        self.cmd_meta.store(0, Relaxed);
        self.store_too_large.store(0, Relaxed);
        self.store_no_memory.store(0, Relaxed);
        self.listen_disabled_num.store(0, Relaxed);
        self.time_in_listen_disabled_us.store(0, Relaxed);
        self.conn_yields.store(0, Relaxed);
        self.lru_crawler_starts.store(0, Relaxed);
        self.auth_cmds.store(0, Relaxed);
        self.auth_errors.store(0, Relaxed);
        self.ssl_handshake_errors.store(0, Relaxed);
    }

    /// Counts a storage command the store refused as memcached does: `store_too_large` for a
    /// value over `-I`, `store_no_memory` when no room could be made (append and prepend,
    /// which memcached refuses later in the process, count as neither).
    pub fn store_refused(&self, status: StoreStatus, mode: Mode) {
        match status {
            StoreStatus::TooLarge => self.store_too_large.fetch_add(1, Relaxed),
            StoreStatus::NoMemory if !matches!(mode, Mode::Append | Mode::Prepend) => {
                self.store_no_memory.fetch_add(1, Relaxed)
            }
            _ => return,
        };
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

/// `stats` with no arguments: memcached 1.6.18's general statistics, in its order and with
/// its names. Fields about something cache-node does not have are reported as memcached
/// reports them with that feature off: omitted where memcached omits them (the segmented-LRU
/// and LRU-maintainer fields, as with `-o no_lru_maintainer`), zero where memcached prints a
/// zero (slab rebalancing, log watchers). Omitted besides, with no true value to give:
/// memcached's pooled connection buffers (`response_obj_*`, `read_buf_*`) and its single hash
/// table (`hash_power_level`, `hash_bytes`, `hash_is_expanding`); see [`GENERAL_OMITTED`].
pub fn general(ctx: &Context) -> StatList {
    let mut out = StatList::default();
    let now = ctx.clock.now();
    let s = ctx.store.stats();
    let c = s.counters;
    let t = s.totals();
    let st = &ctx.stats;
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
    out.add("curr_connections", st.curr_connections.load(Relaxed));
    out.add("total_connections", st.total_connections.load(Relaxed));
    out.add("rejected_connections", st.rejected_connections.load(Relaxed));
    out.add("connection_structures", st.curr_connections.load(Relaxed));
    // The connection limit counts client connections only: no descriptors are set aside
    // from it for the server's own use, as memcached's are.
    out.add("reserved_fds", 0);
    out.add("cmd_get", c.cmd_get);
    out.add("cmd_set", t.cmd_set);
    out.add("cmd_flush", st.cmd_flush.load(Relaxed));
    out.add("cmd_touch", c.cmd_touch);
    out.add("cmd_meta", st.cmd_meta.load(Relaxed));
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
    out.add("store_too_large", st.store_too_large.load(Relaxed));
    out.add("store_no_memory", st.store_no_memory.load(Relaxed));
    out.add("auth_cmds", st.auth_cmds.load(Relaxed));
    out.add("auth_errors", st.auth_errors.load(Relaxed));
    // As memcached: only with idle_timeout on.
    if ctx.settings.idle_timeout.is_some() {
        out.add("idle_kicks", st.idle_kicks.load(Relaxed));
    }
    out.add("bytes_read", st.bytes_read.load(Relaxed));
    out.add("bytes_written", st.bytes_written.load(Relaxed));
    out.add("limit_maxbytes", s.limit_maxbytes);
    out.add("accepting_conns", u8::from(st.accepting_conns.load(Relaxed)));
    out.add("listen_disabled_num", st.listen_disabled_num.load(Relaxed));
    out.add("time_in_listen_disabled_us", st.time_in_listen_disabled_us.load(Relaxed));
    out.add("threads", ctx.settings.threads);
    out.add("conn_yields", st.conn_yields.load(Relaxed));
    // No slab pages, so none rebalanced (`slab_reassign no` in `stats settings`).
    for name in [
        "slab_reassign_rescues",
        "slab_reassign_chunk_rescues",
        "slab_reassign_evictions_nomem",
        "slab_reassign_inline_reclaim",
        "slab_reassign_busy_items",
        "slab_reassign_busy_deletes",
        "slab_reassign_running",
        "slabs_moved",
    ] {
        out.add(name, 0);
    }
    // The background expiry sweep is cache-node's LRU crawler: always on, one pass after
    // another over every item.
    out.add("lru_crawler_running", u8::from(st.lru_crawler_running.load(Relaxed)));
    out.add("lru_crawler_starts", st.lru_crawler_starts.load(Relaxed));
    // A failed allocation aborts a Rust process: none is ever survived to be counted.
    out.add("malloc_fails", 0);
    // No `watch` command: no log watchers, nothing logged for them.
    for name in ["log_worker_dropped", "log_worker_written", "log_watcher_skipped", "log_watcher_sent", "log_watchers"]
    {
        out.add(name, 0);
    }
    // As memcached: only with -Z (and no ssl_new_sessions: no session cache).
    if let Some(tls) = &ctx.tls {
        out.add("ssl_handshake_errors", st.ssl_handshake_errors.load(Relaxed));
        out.add("time_since_server_cert_refresh", tls.since_refresh().as_secs());
    }
    // No NAPI-id thread steering (memcached's -N): never an unexpected id, never a fallback.
    out.add("unexpected_napi_ids", 0);
    out.add("round_robin_fallback", 0);
    out.add("bytes", s.bytes);
    out.add("curr_items", s.curr_items);
    out.add("total_items", c.total_items);
    // Items are allocated to size: no free slab pages held in a global pool.
    out.add("slab_global_page_pool", 0);
    out.add("expired_unfetched", t.expired_unfetched);
    out.add("evicted_unfetched", t.evicted_unfetched);
    out.add("evictions", t.evicted);
    out.add("reclaimed", t.reclaimed);
    out.add("crawler_reclaimed", t.crawler_reclaimed);
    out.add("crawler_items_checked", t.crawler_items_checked);
    out.add("lrutail_reflocked", t.lrutail_reflocked);
    out
}

/// `stats settings`: memcached 1.6.18's, in its order and with its names, from cache-node's
/// actual configuration. A feature cache-node does not have is reported by its off switch or
/// memcached's "none" value (`no`, `0`, `NULL`); the tuning parameters of such features, and
/// the extstore parameters a memcached built without it leaves out, are omitted (see
/// [`SETTINGS_OMITTED`]). TLS parameters are reported with `-Z` only, but `ssl_wbuf_size`
/// (rustls has no such buffer).
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
    // No unix socket (memcached's -s); memcached's default umask for one, which applies to
    // nothing, as in memcached without -s.
    out.add("domain_socket", "NULL");
    out.add("umask", 700);
    out.add("shutdown_command", "no");
    // The slab class table cache-node reports items in (`stats items`, `stats slabs`).
    out.add("growth_factor", "1.25");
    // memcached's -n: the smallest class holds a 48-byte header and 48 bytes of data.
    out.add("chunk_size", 48);
    out.add("num_threads", s.threads);
    // UDP is served by the listener runtime's one thread, not by the workers.
    out.add("num_threads_per_udp", 1);
    out.add("stat_key_prefix", ":");
    // `stats detail on` is accepted but keeps no prefix statistics.
    out.add("detail_enabled", "no");
    out.add("reqs_per_event", super::BATCH_REQUESTS);
    out.add("cas_enabled", "yes");
    out.add("tcp_backlog", TCP_BACKLOG);
    // The first byte of a connection picks text or binary.
    out.add("binding_protocol", "auto-negotiate");
    // memcached names the auth file for the text protocol's login.
    let auth = ctx.auth.as_ref();
    out.add("auth_enabled_sasl", if auth.is_some_and(|a| a.sasl) { "yes" } else { "no" });
    let ascii = auth.filter(|a| a.ascii).map(|a| a.file.display().to_string());
    out.add("auth_enabled_ascii", ascii.as_deref().unwrap_or("no"));
    out.add("item_size_max", s.item_size_max);
    // Over -c, a connection is told so and closed at once.
    out.add("maxconns_fast", "yes");
    // No -o hashpower: the tables start small and grow.
    out.add("hashpower_init", 0);
    // Nothing to rebalance: items are allocated to size (`slabs automove` is accepted and
    // does nothing).
    out.add("slab_reassign", "no");
    out.add("slab_automove", 0);
    out.add("slab_chunk_max", classes::CHUNK_MAX);
    // As memcached: `lru_crawler enable|disable`, which gates `crawl` and `metadump`. The
    // background expiry sweep (every 100 ms, no cap per pass) runs either way: it is expiry.
    out.add("lru_crawler", if ctx.lru_crawler.load(Relaxed) { "yes" } else { "no" });
    out.add("lru_crawler_sleep", SWEEP_INTERVAL.as_micros());
    out.add("lru_crawler_tocrawl", 0);
    // Off, as memcached's default.
    out.add("tail_repair_time", 0);
    out.add("flush_enabled", "yes");
    // `stats cachedump` and `lru_crawler metadump` are served (memcached's -X turns them off).
    out.add("dump_enabled", "yes");
    out.add("hash_algorithm", "foldhash");
    // Eviction is a CLOCK sweep done inline by the writer: no maintainer thread, no segments.
    out.add("lru_maintainer_thread", "no");
    out.add("lru_segmented", "no");
    out.add("temp_lru", "no");
    out.add("idle_timeout", s.idle_timeout.map_or(0, |t| t.as_secs()));
    // Read buffers have no limit of their own.
    out.add("read_buf_mem_limit", 0);
    out.add("track_sizes", "no");
    out.add("inline_ascii_response", "no");
    match &ctx.tls {
        // memcached's values for the OpenSSL tuning cache-node does not have: a PEM key (1),
        // the default ciphers, no session cache, no kernel TLS.
        Some(tls) => {
            let o = &tls.options;
            out.add("ssl_enabled", "yes");
            out.add("ssl_chain_cert", o.chain_cert.display());
            out.add("ssl_key", o.key.display());
            out.add("ssl_verify_mode", o.verify_mode.openssl_flags());
            out.add("ssl_keyformat", 1);
            out.add("ssl_ciphers", "NULL");
            out.add("ssl_ca_cert", o.ca_cert.as_ref().map_or("NULL".into(), |p| p.display().to_string()));
            out.add("ssl_session_cache", "no");
            out.add("ssl_kernel_tls", "no");
            out.add("ssl_min_version", o.min_version.name());
        }
        None => out.add("ssl_enabled", "no"),
    }
    out.add("num_napi_ids", "(null)");
    // No -e memory file: memory is not restartable.
    out.add("memory_file", "(null)");
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
        // No tail item is ever repaired: there are no item reference counts to leak.
        add("tailrepairs", 0);
        add("reclaimed", c.reclaimed);
        add("expired_unfetched", c.expired_unfetched);
        add("evicted_unfetched", c.evicted_unfetched);
        add("crawler_reclaimed", c.crawler_reclaimed);
        add("crawler_items_checked", c.crawler_items_checked);
        add("lrutail_reflocked", c.lrutail_reflocked);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// memcached 1.6.18's general statistics that cache-node leaves out, with why.
    const GENERAL_OMITTED: &[(&str, &str)] = &[
        ("response_obj_oom", "memcached's pooled response objects; replies are built per connection"),
        ("response_obj_count", "memcached's pooled response objects; replies are built per connection"),
        ("response_obj_bytes", "memcached's pooled response objects; replies are built per connection"),
        ("read_buf_count", "memcached's pooled read buffers; each connection owns its buffer"),
        ("read_buf_bytes", "memcached's pooled read buffers; each connection owns its buffer"),
        ("read_buf_bytes_free", "memcached's pooled read buffers; each connection owns its buffer"),
        ("read_buf_oom", "memcached's pooled read buffers; each connection owns its buffer"),
        ("hash_power_level", "no single hash table: one per shard, each grown in place"),
        ("hash_bytes", "no single hash table: one per shard, each grown in place"),
        ("hash_is_expanding", "no single hash table: one per shard, each grown in place"),
        ("lru_maintainer_juggles", "no LRU maintainer thread (memcached omits it without one)"),
        ("evicted_active", "no segmented LRU (memcached omits it with lru_segmented no)"),
        ("moves_to_cold", "no segmented LRU (memcached omits it with lru_segmented no)"),
        ("moves_to_warm", "no segmented LRU (memcached omits it with lru_segmented no)"),
        ("moves_within_lru", "no segmented LRU (memcached omits it with lru_segmented no)"),
        ("direct_reclaims", "no segmented LRU (memcached omits it with lru_segmented no)"),
        ("lru_bumps_dropped", "no segmented LRU (memcached omits it with lru_segmented no)"),
    ];

    /// memcached 1.6.18's `stats settings` fields that cache-node leaves out, with why.
    const SETTINGS_OMITTED: &[(&str, &str)] = &[
        ("oldest", "no single oldest_live: flush_all cuts are versions shared with the peer"),
        ("slab_automove_ratio", "parameter of slab automove, which cache-node does not have"),
        ("slab_automove_window", "parameter of slab automove, which cache-node does not have"),
        ("hot_lru_pct", "parameter of the segmented LRU, which cache-node does not have"),
        ("warm_lru_pct", "parameter of the segmented LRU, which cache-node does not have"),
        ("hot_max_factor", "parameter of the segmented LRU, which cache-node does not have"),
        ("warm_max_factor", "parameter of the segmented LRU, which cache-node does not have"),
        ("temporary_ttl", "parameter of the temporary LRU, which cache-node does not have"),
        ("watcher_logbuf_size", "no log watchers"),
        ("worker_logbuf_size", "no log watchers"),
        ("ext_item_size", "no extstore (a memcached built without it omits every ext_ field)"),
        ("ext_item_age", "no extstore (a memcached built without it omits every ext_ field)"),
        ("ext_low_ttl", "no extstore (a memcached built without it omits every ext_ field)"),
        ("ext_recache_rate", "no extstore (a memcached built without it omits every ext_ field)"),
        ("ext_wbuf_size", "no extstore (a memcached built without it omits every ext_ field)"),
        ("ext_compact_under", "no extstore (a memcached built without it omits every ext_ field)"),
        ("ext_drop_under", "no extstore (a memcached built without it omits every ext_ field)"),
        ("ext_max_sleep", "no extstore (a memcached built without it omits every ext_ field)"),
        ("ext_max_frag", "no extstore (a memcached built without it omits every ext_ field)"),
        ("slab_automove_freeratio", "no extstore (memcached prints it only when built with it)"),
        ("ext_drop_unread", "no extstore (a memcached built without it omits every ext_ field)"),
        ("ssl_chain_cert", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
        ("ssl_key", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
        ("ssl_verify_mode", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
        ("ssl_keyformat", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
        ("ssl_ciphers", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
        ("ssl_ca_cert", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
        ("ssl_wbuf_size", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
        ("ssl_session_cache", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
        ("ssl_kernel_tls", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
        ("ssl_min_version", "without -Z: ssl_enabled no is reported, the TLS parameters are not"),
    ];

    /// `stats` of memcached 1.6.18 (Debian's build, run with `-o idle_timeout=5`), in order.
    const MEMCACHED_GENERAL: &[&str] = &[
        "pid",
        "uptime",
        "time",
        "version",
        "libevent",
        "pointer_size",
        "rusage_user",
        "rusage_system",
        "max_connections",
        "curr_connections",
        "total_connections",
        "rejected_connections",
        "connection_structures",
        "response_obj_oom",
        "response_obj_count",
        "response_obj_bytes",
        "read_buf_count",
        "read_buf_bytes",
        "read_buf_bytes_free",
        "read_buf_oom",
        "reserved_fds",
        "cmd_get",
        "cmd_set",
        "cmd_flush",
        "cmd_touch",
        "cmd_meta",
        "get_hits",
        "get_misses",
        "get_expired",
        "get_flushed",
        "delete_misses",
        "delete_hits",
        "incr_misses",
        "incr_hits",
        "decr_misses",
        "decr_hits",
        "cas_misses",
        "cas_hits",
        "cas_badval",
        "touch_hits",
        "touch_misses",
        "store_too_large",
        "store_no_memory",
        "auth_cmds",
        "auth_errors",
        "idle_kicks",
        "bytes_read",
        "bytes_written",
        "limit_maxbytes",
        "accepting_conns",
        "listen_disabled_num",
        "time_in_listen_disabled_us",
        "threads",
        "conn_yields",
        "hash_power_level",
        "hash_bytes",
        "hash_is_expanding",
        "slab_reassign_rescues",
        "slab_reassign_chunk_rescues",
        "slab_reassign_evictions_nomem",
        "slab_reassign_inline_reclaim",
        "slab_reassign_busy_items",
        "slab_reassign_busy_deletes",
        "slab_reassign_running",
        "slabs_moved",
        "lru_crawler_running",
        "lru_crawler_starts",
        "lru_maintainer_juggles",
        "malloc_fails",
        "log_worker_dropped",
        "log_worker_written",
        "log_watcher_skipped",
        "log_watcher_sent",
        "log_watchers",
        "unexpected_napi_ids",
        "round_robin_fallback",
        "bytes",
        "curr_items",
        "total_items",
        "slab_global_page_pool",
        "expired_unfetched",
        "evicted_unfetched",
        "evicted_active",
        "evictions",
        "reclaimed",
        "crawler_reclaimed",
        "crawler_items_checked",
        "lrutail_reflocked",
        "moves_to_cold",
        "moves_to_warm",
        "moves_within_lru",
        "direct_reclaims",
        "lru_bumps_dropped",
    ];

    /// `stats settings` of memcached 1.6.18 (Debian's build, with extstore and TLS), in order.
    const MEMCACHED_SETTINGS: &[&str] = &[
        "maxbytes",
        "maxconns",
        "tcpport",
        "udpport",
        "inter",
        "verbosity",
        "oldest",
        "evictions",
        "domain_socket",
        "umask",
        "shutdown_command",
        "growth_factor",
        "chunk_size",
        "num_threads",
        "num_threads_per_udp",
        "stat_key_prefix",
        "detail_enabled",
        "reqs_per_event",
        "cas_enabled",
        "tcp_backlog",
        "binding_protocol",
        "auth_enabled_sasl",
        "auth_enabled_ascii",
        "item_size_max",
        "maxconns_fast",
        "hashpower_init",
        "slab_reassign",
        "slab_automove",
        "slab_automove_ratio",
        "slab_automove_window",
        "slab_chunk_max",
        "lru_crawler",
        "lru_crawler_sleep",
        "lru_crawler_tocrawl",
        "tail_repair_time",
        "flush_enabled",
        "dump_enabled",
        "hash_algorithm",
        "lru_maintainer_thread",
        "lru_segmented",
        "hot_lru_pct",
        "warm_lru_pct",
        "hot_max_factor",
        "warm_max_factor",
        "temp_lru",
        "temporary_ttl",
        "idle_timeout",
        "watcher_logbuf_size",
        "worker_logbuf_size",
        "read_buf_mem_limit",
        "track_sizes",
        "inline_ascii_response",
        "ext_item_size",
        "ext_item_age",
        "ext_low_ttl",
        "ext_recache_rate",
        "ext_wbuf_size",
        "ext_compact_under",
        "ext_drop_under",
        "ext_max_sleep",
        "ext_max_frag",
        "slab_automove_freeratio",
        "ext_drop_unread",
        "ssl_enabled",
        "ssl_chain_cert",
        "ssl_key",
        "ssl_verify_mode",
        "ssl_keyformat",
        "ssl_ciphers",
        "ssl_ca_cert",
        "ssl_wbuf_size",
        "ssl_session_cache",
        "ssl_kernel_tls",
        "ssl_min_version",
        "num_napi_ids",
        "memory_file",
    ];

    fn names(list: &StatList) -> Vec<&str> {
        list.0.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// memcached's names, in its order, less the ones cache-node leaves out (and `omitted`
    /// names only memcached's).
    fn expected<'a>(memcached: &[&'a str], omitted: &[(&str, &str)]) -> Vec<&'a str> {
        for (name, _) in omitted {
            assert!(memcached.contains(name), "{name} is not memcached's");
        }
        memcached.iter().copied().filter(|name| !omitted.iter().any(|(o, _)| o == name)).collect()
    }

    fn ctx(idle_timeout: Option<u64>) -> std::sync::Arc<Context> {
        let mut ctx = Context::detached(crate::store::Config::default());
        std::sync::Arc::get_mut(&mut ctx).unwrap().settings.idle_timeout =
            idle_timeout.map(std::time::Duration::from_secs);
        ctx
    }

    #[test]
    fn general_has_memcacheds_names_in_its_order() {
        assert_eq!(MEMCACHED_GENERAL.len(), 93, "92 and idle_kicks");
        let want = expected(MEMCACHED_GENERAL, GENERAL_OMITTED);
        assert_eq!(names(&general(&ctx(Some(5)))), want);
        // Without idle_timeout, idle_kicks goes, as in memcached.
        let want: Vec<_> = want.into_iter().filter(|&n| n != "idle_kicks").collect();
        assert_eq!(names(&general(&ctx(None))), want);
    }

    #[test]
    fn settings_have_memcacheds_names_in_its_order() {
        assert_eq!(MEMCACHED_SETTINGS.len(), 76);
        assert_eq!(names(&settings(&ctx(None))), expected(MEMCACHED_SETTINGS, SETTINGS_OMITTED));
    }

    fn value(list: &StatList, name: &str) -> String {
        list.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn settings_follow_the_configuration() {
        let ctx = ctx(Some(5));
        let s = settings(&ctx);
        assert_eq!(value(&s, "idle_timeout"), "5");
        assert_eq!(value(&s, "maxconns"), "16");
        assert_eq!(value(&s, "num_threads"), "1");
        assert_eq!(value(&s, "item_size_max"), ctx.settings.item_size_max.to_string());
        assert_eq!(value(&s, "slab_chunk_max"), "524288");
        assert_eq!(value(&s, "chunk_size"), (classes::CHUNK_SIZES[0] - 48).to_string());
        assert_eq!(value(&s, "reqs_per_event"), super::super::BATCH_REQUESTS.to_string());
        assert_eq!(value(&s, "lru_crawler_sleep"), "100000");
    }

    #[test]
    fn store_refusals_count_as_memcacheds_do() {
        let ctx = ctx(None);
        let mut out = super::super::Reply::default();
        let big = "x".repeat(ctx.settings.item_size_max + 1);
        let input = format!("set a 0 0 {n}\r\n{big}\r\nms a {n}\r\n{big}\r\nmn\r\nmg a\r\nme a\r\n", n = big.len());
        let progress = super::super::text::process(&ctx, input.as_bytes(), &mut out);
        assert_eq!(progress.consumed, input.len());
        let g = general(&ctx);
        assert_eq!(value(&g, "store_too_large"), "2");
        assert_eq!(value(&g, "store_no_memory"), "0");
        // memcached 1.6.18 counts `me` alone as cmd_meta.
        assert_eq!(value(&g, "cmd_meta"), "1");
        ctx.reset_stats();
        assert_eq!(value(&general(&ctx), "store_too_large"), "0");
    }
}
