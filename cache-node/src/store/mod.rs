//! The item store: memory-bounded, sharded, with CLOCK eviction, lazy and background expiry,
//! per-item CAS and memcached's flush semantics. It knows nothing of any wire protocol: the
//! protocol layers call these operations and render their results.

pub mod classes;
pub mod clock;
mod flush;
pub mod item;
mod replica;
mod shard;
pub mod stats;
pub mod version;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::number::parse_counter;

pub use classes::memcached_item_size;
pub use clock::{Clock, RelTime};
pub use flush::Flush;
use flush::Flushes;
pub use item::Item;
use item::{BINARY_KEY, FETCHED, REFERENCED, STALE, WON, charge};
pub use replica::{Change, ChangeSink, RemoteItem, TOMBSTONE_TTL};
use shard::{Dead, KeyHasher, Shard, hash_key};
pub use stats::{ClassStats, ShardStats, StoreStats};
use version::Hlc;

/// Longest key memcached accepts.
pub const MAX_KEY_LEN: usize = 250;

/// The pace of background expiry: a [`Store::sweep`] step every `SWEEP_INTERVAL`, each visiting
/// up to `SWEEP_BUDGET` slots. Here rather than with the server, which runs the steps, because
/// `stats settings` reports the interval too (`lru_crawler_sleep`).
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
pub const SWEEP_BUDGET: usize = 4096;

/// memcached's `item_size_ok`: the item as memcached would lay it out must fit in `-I`.
pub fn item_too_large(item_size_max: usize, key_len: usize, value_len: usize, flags: u32) -> bool {
    memcached_item_size(key_len, value_len, flags) > item_size_max
}

/// Store sizing.
#[derive(Debug, Clone)]
pub struct Config {
    /// `-m`: bytes that items (keys, values and metadata) may occupy.
    pub limit_bytes: usize,
    /// `-I`: largest item, computed as memcached does (header + key + value).
    pub item_size_max: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self { limit_bytes: 64 << 20, item_size_max: 1 << 20 }
    }
}

/// How a write treats an existing item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    /// Store only if the item's CAS equals `StoreRequest::cas`.
    Cas,
}

/// A write of one item.
#[derive(Debug, Clone, Copy)]
pub struct StoreRequest<'a> {
    pub mode: Mode,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    /// Relative expiry (see [`Clock::rel_exptime`]).
    pub exptime: RelTime,
    /// Compare-and-swap value; 0 means none (also honoured by append/prepend).
    pub cas: u64,
    /// Meta `I`: a CAS older than the item's marks the item stale instead of failing.
    pub invalidate: bool,
    /// The key arrived base64-encoded (meta `b`); see [`ReadState::binary_key`].
    pub binary_key: bool,
}

impl<'a> StoreRequest<'a> {
    pub fn new(mode: Mode, key: &'a [u8], value: &'a [u8]) -> Self {
        Self { mode, key, value, flags: 0, exptime: 0, cas: 0, invalidate: false, binary_key: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    Stored,
    NotStored,
    Exists,
    NotFound,
    /// Nothing could be evicted to make room.
    NoMemory,
    /// The item would exceed `-I`.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOutcome {
    pub status: StoreStatus,
    /// CAS of the stored item (0 unless stored).
    pub cas: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteStatus {
    Deleted,
    NotFound,
    Exists,
}

/// A delete, with meta's options.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteRequest {
    /// Delete only if the item's CAS matches (0: no check).
    pub cas: u64,
    /// Meta `I`: mark stale instead of removing.
    pub invalidate: bool,
    /// Meta `T` with `I`: new relative expiry for the stale item.
    pub exptime: Option<RelTime>,
    /// Meta `x`: drop the value but keep the item.
    pub clear_value: bool,
}

/// incr/decr, with the options of the binary and meta protocols.
#[derive(Debug, Clone, Copy)]
pub struct ArithRequest {
    pub incr: bool,
    pub delta: u64,
    /// Apply only if the item's CAS matches (0: no check).
    pub cas: u64,
    /// Create the item with this value and relative expiry when it is missing.
    pub vivify: Option<(u64, RelTime)>,
    /// Meta `T`: update the expiry of a hit, when its number is rewritten in place (see
    /// [`Store::arith`]).
    pub touch: Option<RelTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOutcome {
    /// New value and CAS, and the item's relative expiry after and before this request.
    Done {
        value: u64,
        cas: u64,
        exptime: RelTime,
        prev_exptime: RelTime,
    },
    /// Created by `vivify`.
    Created {
        value: u64,
        cas: u64,
        exptime: RelTime,
    },
    NotFound,
    NonNumeric,
    Exists,
    NoMemory,
}

/// What a read should do besides returning the item (gat, meta mg).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// New relative expiry (gat, mg T).
    pub touch: Option<RelTime>,
    /// mg N: on a miss, create an empty item with this expiry (the caller wins it when
    /// `claim_win` is set).
    pub vivify: Option<RelTime>,
    /// mg R: the win token goes out when the item expires before this relative time.
    pub recache_before: Option<RelTime>,
    /// Whether the `recache_before` check sees the expiry set by `touch` rather than the old
    /// one (memcached applies mg flags left to right: `T` before `R`).
    pub recache_after_touch: bool,
    /// Hand out the win token (meta mg) for a created, stale or soon-expiring item. Without it
    /// the win state is left as it is: a plain get must not take the token from a meta client.
    pub claim_win: bool,
    /// Leave the item as it was: no LRU bump, not marked fetched, access time kept (mg u).
    pub no_bump: bool,
}

/// How a hit looked before this read changed it, plus the meta win/stale state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadState {
    /// Read before (mg h).
    pub fetched: bool,
    /// Seconds since the previous access (mg l).
    pub idle: RelTime,
    /// Relative expiry before this read's touch (mg t placed before T).
    pub exptime: RelTime,
    /// The item was created by this read (`vivify`).
    pub created: bool,
    /// The caller won the right to recache (mg W).
    pub win: bool,
    /// Someone else already holds the win token (mg Z).
    pub won_elsewhere: bool,
    /// The item is stale (mg X).
    pub stale: bool,
    /// The key was stored base64-encoded (meta b); replies show it encoded.
    pub binary_key: bool,
}

/// Where a [`Store::walk`] stands: a shard and a slot in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkPos {
    shard: usize,
    slot: usize,
}

pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    shard_mask: u64,
    hasher: KeyHasher,
    used: AtomicUsize,
    /// See [`Store::hold_back`].
    held_back: AtomicUsize,
    config: Config,
    next_cas: AtomicU64,
    /// Every flush_all seen; each change is copied into the shards under this lock.
    flushes: Mutex<Flushes>,
    /// Where the background sweep resumes: shard index and position.
    sweep_at: Mutex<(usize, usize)>,
    /// Versions for every write.
    hlc: Hlc,
    /// Set once replication starts: every local change is reported to it.
    sink: OnceLock<Arc<dyn ChangeSink>>,
}

impl Store {
    pub fn new(config: Config) -> Self {
        // Enough shards that two threads rarely meet on one lock, few enough to stay cheap.
        let n = 64;
        Self {
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            shard_mask: n as u64 - 1,
            hasher: KeyHasher::default(),
            used: AtomicUsize::new(0),
            held_back: AtomicUsize::new(0),
            config,
            next_cas: AtomicU64::new(0),
            flushes: Mutex::new(Flushes::default()),
            sweep_at: Mutex::new((0, 0)),
            hlc: Hlc::new(0),
            sink: OnceLock::new(),
        }
    }

    /// The version clock (replication sets the node's tag and reads versions).
    pub fn hlc(&self) -> &Hlc {
        &self.hlc
    }

    /// Starts reporting every local change to `sink`; from then on deletes leave tombstones.
    /// Can be set once.
    pub fn set_change_sink(&self, sink: Arc<dyn ChangeSink>) -> Result<(), Arc<dyn ChangeSink>> {
        self.sink.set(sink)
    }

    /// Stamps the item in slot `idx` with a new version and reports it.
    fn changed(&self, shard: &mut Shard, idx: u32) {
        let it = shard.item_mut(idx);
        it.version = self.hlc.next();
        if let Some(sink) = self.sink.get() {
            sink.record(Change::Set(it));
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn locate(&self, key: &[u8]) -> (u64, MutexGuard<'_, Shard>) {
        let hash = hash_key(&self.hasher, key);
        // hashbrown uses the low bits and the top seven; pick shards from the middle.
        let idx = ((hash >> 32) & self.shard_mask) as usize;
        (hash, self.shards[idx].lock())
    }

    fn cas_id(&self) -> u64 {
        self.next_cas.fetch_add(1, Relaxed) + 1
    }

    /// Whether an item would exceed `-I` ([`item_too_large`]).
    pub fn too_large(&self, key_len: usize, value_len: usize, flags: u32) -> bool {
        item_too_large(self.config.item_size_max, key_len, value_len, flags)
    }

    /// What items may take now: `-m`, less what the memory guard holds back.
    fn budget(&self) -> usize {
        self.config.limit_bytes.saturating_sub(self.held_back.load(Relaxed))
    }

    /// Bytes of `-m` the memory guard holds back from items (see `server::memory`).
    pub fn held_back(&self) -> usize {
        self.held_back.load(Relaxed)
    }

    /// Holds `bytes` of `-m` back from items, evicting (oldest first, shard by shard) until the
    /// items fit what is left.
    pub fn hold_back(&self, bytes: usize, now: RelTime) {
        self.held_back.store(bytes.min(self.config.limit_bytes), Relaxed);
        for (i, shard) in self.shards.iter().enumerate() {
            let Some(excess) = self.used.load(Relaxed).checked_sub(self.budget()).filter(|&e| e > 0) else {
                return;
            };
            let mut shard = shard.lock();
            // This shard's share of what is left to free, so that all shards give alike.
            let share = excess.div_ceil(self.shards.len() - i);
            let mut freed = 0;
            while freed < share {
                match shard.evict_one(&self.hasher, now, None) {
                    Some(n) => freed += n,
                    None => break,
                }
            }
            self.used.fetch_sub(freed, Relaxed);
        }
    }

    /// Evicts until `needed` more bytes fit under the budget. Returns false when they cannot.
    fn make_room(&self, shard: &mut Shard, pin: Option<u32>, needed: usize, now: RelTime) -> bool {
        if needed > self.config.limit_bytes {
            return false;
        }
        let limit = self.budget().max(needed);
        while self.used.load(Relaxed) + needed > limit {
            match shard.evict_one(&self.hasher, now, pin) {
                Some(freed) => {
                    self.used.fetch_sub(freed, Relaxed);
                }
                None => break,
            }
        }
        // This shard ran dry: take from the others, never blocking on a lock (no lock order).
        for other in self.shards.iter() {
            if self.used.load(Relaxed) + needed <= limit {
                break;
            }
            let Some(mut other) = other.try_lock() else {
                continue;
            };
            while self.used.load(Relaxed) + needed > limit {
                match other.evict_one(&self.hasher, now, None) {
                    Some(freed) => {
                        self.used.fetch_sub(freed, Relaxed);
                    }
                    None => break,
                }
            }
        }
        self.used.load(Relaxed) + needed <= limit
    }

    fn charge(&self, delta: isize) {
        if delta >= 0 {
            self.used.fetch_add(delta as usize, Relaxed);
        } else {
            self.used.fetch_sub(delta.unsigned_abs(), Relaxed);
        }
    }

    /// Looks up the live item, counting and freeing what lazy expiry removes.
    fn live(&self, shard: &mut Shard, hash: u64, key: &[u8], now: RelTime) -> Result<u32, Dead> {
        let (found, freed) = shard.live(hash, key, now);
        if freed > 0 {
            self.used.fetch_sub(freed, Relaxed);
        }
        found
    }

    /// Reads an item: `f` sees it as it was before this read touched it.
    pub fn get<R>(&self, key: &[u8], now: RelTime, f: impl FnOnce(&Item) -> R) -> Option<R> {
        self.read(key, now, ReadOptions::default(), |it, _| f(it))
    }

    /// Reads an item with gat / meta options. `f` gets the item (after any touch) and the
    /// state it was in before the read.
    pub fn read<R>(
        &self,
        key: &[u8],
        now: RelTime,
        opts: ReadOptions,
        f: impl FnOnce(&Item, ReadState) -> R,
    ) -> Option<R> {
        let (hash, mut shard) = self.locate(key);
        let shard = &mut *shard;
        shard.stats.cmd_get += 1;
        if opts.touch.is_some() {
            shard.stats.cmd_touch += 1;
        }
        let idx = match self.live(shard, hash, key, now) {
            Ok(idx) => idx,
            Err(dead) => {
                match dead {
                    Dead::Expired => shard.stats.get_expired += 1,
                    Dead::Flushed => shard.stats.get_flushed += 1,
                    Dead::Missing => {}
                }
                if opts.touch.is_some() {
                    shard.stats.touch_misses += 1;
                } else {
                    shard.stats.get_misses += 1;
                }
                let exptime = opts.vivify?;
                if !self.make_room(shard, None, charge(key.len()), now) {
                    shard.classes[classes::class_of(memcached_item_size(key.len(), 0, 0))].outofmemory += 1;
                    return None;
                }
                let mut item = Item::new(key, b"", 0, exptime, now);
                item.cas = self.cas_id();
                if opts.claim_win {
                    item.bits |= WON;
                }
                let idx = self.link(shard, hash, None, item);
                self.changed(shard, idx);
                let state = ReadState { created: true, win: opts.claim_win, ..ReadState::default() };
                let it = shard.item_mut(idx);
                let r = f(it, state);
                if !opts.no_bump {
                    it.bits |= REFERENCED | FETCHED;
                }
                return Some(r);
            }
        };
        let class = shard.class_of(idx);
        if opts.touch.is_some() {
            class.touch_hits += 1;
        } else {
            class.get_hits += 1;
        }
        let it = shard.item_mut(idx);
        let mut state = ReadState {
            fetched: it.has(FETCHED),
            idle: now.saturating_sub(it.time),
            exptime: it.exptime,
            won_elsewhere: it.has(WON),
            stale: it.has(STALE),
            binary_key: it.has(BINARY_KEY),
            ..ReadState::default()
        };
        if let Some(exptime) = opts.touch {
            it.exptime = exptime;
        }
        // The win token goes to exactly one reader of a stale or soon-expiring item.
        let seen_exptime = if opts.recache_after_touch { it.exptime } else { state.exptime };
        let expiring = opts.recache_before.is_some_and(|before| seen_exptime != 0 && seen_exptime < before);
        if opts.claim_win && !state.won_elsewhere && (state.stale || expiring) {
            it.bits |= WON;
            state.win = true;
        }
        let r = f(it, state);
        if !opts.no_bump {
            it.bits |= REFERENCED | FETCHED;
            it.time = now;
        }
        if opts.touch.is_some() {
            self.changed(shard, idx);
        }
        Some(r)
    }

    /// Looks at an item without counting or bumping it (meta `me`).
    pub fn peek<R>(&self, key: &[u8], now: RelTime, f: impl FnOnce(&Item) -> R) -> Option<R> {
        let (hash, mut shard) = self.locate(key);
        let idx = self.live(&mut shard, hash, key, now).ok()?;
        Some(f(shard.item(idx)))
    }

    /// Sets an item's expiry. Returns whether it existed.
    pub fn touch(&self, key: &[u8], now: RelTime, exptime: RelTime) -> bool {
        let (hash, mut shard) = self.locate(key);
        let shard = &mut *shard;
        shard.stats.cmd_touch += 1;
        match self.live(shard, hash, key, now) {
            Ok(idx) => {
                shard.class_of(idx).touch_hits += 1;
                let it = shard.item_mut(idx);
                it.exptime = exptime;
                it.time = now;
                // memcached's touch fetches the item: it counts as read.
                it.bits |= REFERENCED | FETCHED;
                self.changed(shard, idx);
                true
            }
            Err(_) => {
                shard.stats.touch_misses += 1;
                false
            }
        }
    }

    /// set / add / replace / append / prepend / cas.
    pub fn store(&self, req: &StoreRequest<'_>, now: RelTime) -> StoreOutcome {
        let fail = |status| StoreOutcome { status, cas: 0 };
        if self.too_large(req.key.len(), req.value.len(), req.flags) {
            return fail(StoreStatus::TooLarge);
        }
        let (hash, mut shard) = self.locate(req.key);
        let shard = &mut *shard;
        shard.classes[classes::class_of(memcached_item_size(req.key.len(), req.value.len(), req.flags))].cmd_set += 1;
        let existing = self.live(shard, hash, req.key, now).ok();
        let new_item = || {
            let mut it = Item::new(req.key, req.value, req.flags, req.exptime, now);
            if req.binary_key {
                it.bits |= BINARY_KEY;
            }
            it
        };

        let item = match (req.mode, existing) {
            (Mode::Add, Some(idx)) => {
                // memcached bumps the item an add collided with.
                let it = shard.item_mut(idx);
                it.time = now;
                it.bits |= REFERENCED;
                return fail(StoreStatus::NotStored);
            }
            (Mode::Replace | Mode::Append | Mode::Prepend, None) => {
                return fail(StoreStatus::NotStored);
            }
            (Mode::Cas, None) => {
                shard.stats.cas_misses += 1;
                return fail(StoreStatus::NotFound);
            }
            (Mode::Cas, Some(idx)) => {
                let old = shard.item(idx);
                let class = old.class();
                if old.cas == req.cas {
                    shard.classes[class].cas_hits += 1;
                    new_item()
                } else if req.invalidate && req.cas != 0 && req.cas < old.cas {
                    // Meta I: an outdated writer still stores, but the result is stale and
                    // keeps the old expiry and win token, as memcached does.
                    let (exptime, won) = (old.exptime, old.bits & WON);
                    shard.classes[class].cas_hits += 1;
                    let mut it = new_item();
                    it.exptime = exptime;
                    it.bits |= STALE | won;
                    it
                } else {
                    shard.classes[class].cas_badval += 1;
                    return fail(StoreStatus::Exists);
                }
            }
            (Mode::Append | Mode::Prepend, Some(idx)) => {
                let old = shard.item(idx);
                if req.cas != 0 && req.cas != old.cas {
                    return fail(StoreStatus::Exists);
                }
                if self.too_large(req.key.len(), old.value().len() + req.value.len(), old.flags) {
                    return fail(StoreStatus::NotStored);
                }
                let parts: [&[u8]; 2] =
                    if req.mode == Mode::Append { [old.value(), req.value] } else { [req.value, old.value()] };
                // A fresh item, as in memcached: not fetched, not stale, no win token.
                Item::from_parts(req.key, &parts, old.flags, old.exptime, now)
            }
            (Mode::Set | Mode::Add | Mode::Replace, _) => new_item(),
        };
        self.put(shard, hash, existing, item, now)
    }

    /// Links `item` in place of `existing` (or as new), making room first.
    fn put(&self, shard: &mut Shard, hash: u64, existing: Option<u32>, mut item: Item, now: RelTime) -> StoreOutcome {
        if !self.make_room(shard, existing, item.size(), now) {
            shard.classes[item.class()].outofmemory += 1;
            return StoreOutcome { status: StoreStatus::NoMemory, cas: 0 };
        }
        let cas = self.cas_id();
        item.cas = cas;
        let idx = self.link(shard, hash, existing, item);
        self.changed(shard, idx);
        StoreOutcome { status: StoreStatus::Stored, cas }
    }

    /// Puts `item` into slot `existing` or a new one (room already made). Returns the slot.
    fn link(&self, shard: &mut Shard, hash: u64, existing: Option<u32>, item: Item) -> u32 {
        let (idx, delta) = match existing {
            Some(idx) => (idx, shard.replace(idx, item)),
            None => {
                let size = item.size() as isize;
                (shard.insert(&self.hasher, hash, item), size)
            }
        };
        self.charge(delta);
        idx
    }

    /// delete, and meta's invalidating and value-clearing forms.
    pub fn delete(&self, key: &[u8], now: RelTime, req: DeleteRequest) -> DeleteStatus {
        let (hash, mut shard) = self.locate(key);
        let shard = &mut *shard;
        let Ok(idx) = self.live(shard, hash, key, now) else {
            shard.stats.delete_misses += 1;
            return DeleteStatus::NotFound;
        };
        let it = shard.item(idx);
        if req.cas != 0 && req.cas != it.cas {
            return DeleteStatus::Exists;
        }
        let (flags, exptime) = (it.flags, it.exptime);
        shard.class_of(idx).delete_hits += 1;
        if req.invalidate {
            // Stale items stay readable; the next reader wins the right to recache.
            let cas = self.cas_id();
            let it = shard.item_mut(idx);
            it.bits = (it.bits | STALE) & !WON;
            it.cas = cas;
            if let Some(exptime) = req.exptime {
                it.exptime = exptime;
            }
            self.changed(shard, idx);
        } else if req.clear_value {
            let mut empty = Item::new(key, b"", flags, exptime, now);
            empty.cas = self.cas_id();
            let delta = shard.replace(idx, empty);
            self.charge(delta);
            self.changed(shard, idx);
        } else {
            let freed = shard.remove(hash, idx);
            self.used.fetch_sub(freed, Relaxed);
            if let Some(sink) = self.sink.get() {
                let version = self.hlc.next();
                shard.tombstones.insert(key, version, now);
                sink.record(Change::Delete { key, version });
            }
        }
        DeleteStatus::Deleted
    }

    /// incr / decr: 64-bit, incr wraps, decr floors at 0, the value is rewritten in place
    /// (space padded) when the new number is not longer, as memcached does.
    pub fn arith(&self, key: &[u8], now: RelTime, req: ArithRequest) -> ArithOutcome {
        let (hash, mut shard) = self.locate(key);
        let shard = &mut *shard;
        let idx = match self.live(shard, hash, key, now) {
            Ok(idx) => idx,
            Err(_) => {
                if req.incr {
                    shard.stats.incr_misses += 1;
                } else {
                    shard.stats.decr_misses += 1;
                }
                let Some((initial, exptime)) = req.vivify else {
                    return ArithOutcome::NotFound;
                };
                let text = initial.to_string();
                let item = Item::new(key, text.as_bytes(), 0, exptime, now);
                return match self.put(shard, hash, None, item, now) {
                    StoreOutcome { status: StoreStatus::Stored, cas } => {
                        ArithOutcome::Created { value: initial, cas, exptime }
                    }
                    _ => ArithOutcome::NoMemory,
                };
            }
        };
        let it = shard.item(idx);
        // memcached's order: an empty value (or one it stores in chunks, over 512 KiB) is
        // refused before the CAS check, text that is no number only after it.
        let chunked = memcached_item_size(key.len(), it.value().len(), it.flags) > classes::CHUNK_MAX;
        if it.value().is_empty() || chunked {
            return ArithOutcome::NonNumeric;
        }
        if req.cas != 0 && req.cas != it.cas {
            return ArithOutcome::Exists;
        }
        let Some(current) = parse_counter(it.value()) else {
            return ArithOutcome::NonNumeric;
        };
        let (old_len, old_exptime, old_flags) = (it.value().len(), it.exptime, it.flags);
        let class = shard.class_of(idx);
        let value = if req.incr {
            class.incr_hits += 1;
            current.wrapping_add(req.delta)
        } else {
            class.decr_hits += 1;
            current.saturating_sub(req.delta)
        };
        let text = value.to_string();
        let exptime = req.touch.unwrap_or(old_exptime);
        // memcached rewrites a number that fits in place, padded with spaces, but only when
        // nothing else holds the item: a reply not yet sent ([`crate::engine::Reply::hold`]).
        let it = shard.item_mut(idx);
        if text.len() <= old_len
            && let Some(buf) = it.value_mut()
        {
            buf[..text.len()].copy_from_slice(text.as_bytes());
            buf[text.len()..].fill(b' ');
            let cas = self.cas_id();
            it.cas = cas;
            it.exptime = exptime;
            it.time = now;
            self.changed(shard, idx);
            return ArithOutcome::Done { value, cas, exptime, prev_exptime: old_exptime };
        }
        // Otherwise a new item of the number's exact length, which starts with fresh bits as in
        // memcached. It also keeps the old expiry: memcached 1.6.18 applies meta's T to the item
        // it replaced.
        let item = Item::new(key, text.as_bytes(), old_flags, old_exptime, now);
        match self.put(shard, hash, Some(idx), item, now) {
            StoreOutcome { status: StoreStatus::Stored, cas } => {
                ArithOutcome::Done { value, cas, exptime: old_exptime, prev_exptime: old_exptime }
            }
            _ => ArithOutcome::NoMemory,
        }
    }

    /// flush_all: flushes every item older than `when` (a relative time; `now` for
    /// immediately), as memcached does: a delayed flush takes effect the second before `when`
    /// and flushes every write made until `when`; an immediate one spares every later write,
    /// even within the same second. Items are flushed by version (see [`Flush`]), so that the
    /// peer flushes the same items.
    pub fn flush_all(&self, clock: &Clock, now: RelTime, when: RelTime) {
        let issued = self.hlc.next();
        let (flush, from) = if when <= 1 {
            // A time before this process started: memcached sets `oldest_live` to 0, which
            // cancels any pending flush and flushes nothing. No item is from the first millisecond.
            (Flush::delayed(issued, 1), 1)
        } else if when <= now {
            (Flush::immediate(issued), now)
        } else {
            (Flush::delayed(issued, clock.millis_at(when)), when - 1)
        };
        let mut flushes = self.flushes.lock();
        self.merge_flush(&mut flushes, flush, from);
        if let Some(sink) = self.sink.get() {
            sink.record(Change::Flush(flush));
        }
    }

    /// A `flush_all` made on the peer (taking effect here at relative time `from` if delayed):
    /// applied here without being reported back. Later local writes order after it.
    pub fn apply_flush(&self, flush: Flush, from: RelTime) {
        self.hlc.observe(flush.issued);
        self.merge_flush(&mut self.flushes.lock(), flush, from);
    }

    fn merge_flush(&self, flushes: &mut Flushes, flush: Flush, from: RelTime) {
        if flushes.merge(flush, from) {
            let mark = flushes.mark();
            for shard in self.shards.iter() {
                shard.lock().flush = mark;
            }
        }
    }

    /// Reports every flush this store knows again, so that a peer taking a full sync learns
    /// them: its own items may be older than them.
    pub fn announce_flushes(&self) {
        if let Some(sink) = self.sink.get() {
            for flush in self.flushes.lock().known() {
                sink.record(Change::Flush(flush));
            }
        }
    }

    /// Applies an item or delete from the peer if it is newer than what this node has (item or
    /// tombstone). Keeps the peer's CAS, so CAS values survive replication and failover.
    /// Returns whether it was applied.
    pub fn apply(&self, remote: &RemoteItem<'_>, now: RelTime) -> bool {
        if remote.key.is_empty() || remote.key.len() > MAX_KEY_LEN {
            return false;
        }
        let (hash, mut shard) = self.locate(remote.key);
        let shard = &mut *shard;
        let existing = self.live(shard, hash, remote.key, now).ok();
        let local =
            existing.map_or(0, |idx| shard.item(idx).version).max(shard.tombstones.version(remote.key).unwrap_or(0));
        if remote.version <= local {
            return false;
        }
        self.hlc.observe(remote.version);
        self.next_cas.fetch_max(remote.cas, Relaxed);
        if remote.deleted {
            if let Some(idx) = existing {
                let freed = shard.remove(hash, idx);
                self.used.fetch_sub(freed, Relaxed);
            }
            shard.tombstones.insert(remote.key, remote.version, now);
            return true;
        }
        let mut item = Item::new(remote.key, remote.value, remote.flags, remote.exptime, now);
        item.cas = remote.cas;
        item.version = remote.version;
        // The peer may run with a larger -I or -m: what does not fit here is a cache miss.
        if self.too_large(remote.key.len(), remote.value.len(), remote.flags)
            || !self.make_room(shard, existing, item.size(), now)
        {
            return false;
        }
        shard.tombstones.remove(remote.key);
        self.link(shard, hash, existing, item);
        true
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Reports every live item and tombstone of one shard, holding only that shard's lock:
    /// a full sync walks the shards one by one and never stops the whole store.
    pub fn snapshot(&self, shard: usize, now: RelTime, mut f: impl FnMut(Change<'_>)) {
        let shard = self.shards[shard].lock();
        for it in shard.live_items(now) {
            f(Change::Set(it));
        }
        for (key, version) in shard.tombstones.iter() {
            f(Change::Delete { key, version });
        }
    }

    /// One step of a walk over every live item, for dumps: from `pos` on, within one shard and
    /// its lock and at most `budget` slots, shows `f` the live items until it returns false, then
    /// advances `pos`. Returns false once the walk has passed the last shard.
    ///
    /// Items come in slot order, in no LRU order. An item written while a walk runs may be
    /// missed, or seen twice if it is deleted and set again into a later slot.
    pub fn walk(&self, pos: &mut WalkPos, now: RelTime, budget: usize, f: impl FnMut(&Item) -> bool) -> bool {
        let Some(shard) = self.shards.get(pos.shard) else {
            return false;
        };
        match shard.lock().walk(pos.slot, budget, now, f) {
            Some(slot) => pos.slot = slot,
            None => *pos = WalkPos { shard: pos.shard + 1, slot: 0 },
        }
        pos.shard < self.shards.len()
    }

    /// One step of background expiry: visits up to `budget` slots, shard after shard, and
    /// frees dead items. Each shard visited costs at least one slot of the budget, so a small
    /// store is swept whole in one step and a large one a slice at a time. Returns whether
    /// this step began a pass over the whole store (`lru_crawler_starts`).
    pub fn sweep(&self, now: RelTime, budget: usize) -> bool {
        let mut at = self.sweep_at.lock();
        let started = *at == (0, 0);
        let mut left = budget;
        for _ in 0..self.shards.len() {
            if left == 0 {
                break;
            }
            let (shard_idx, pos) = *at;
            let (freed, visited, next) = self.shards[shard_idx].lock().sweep(&self.hasher, pos, left, now);
            if freed > 0 {
                self.used.fetch_sub(freed, Relaxed);
            }
            left = left.saturating_sub(visited.max(1));
            *at = if next == 0 { ((shard_idx + 1) % self.shards.len(), 0) } else { (shard_idx, next) };
        }
        started
    }

    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats { limit_maxbytes: self.config.limit_bytes as u64, ..StoreStats::default() };
        for shard in self.shards.iter() {
            let shard = shard.lock();
            s.counters += shard.stats;
            for (total, class) in s.classes.0.iter_mut().zip(&shard.classes.0) {
                total.merge(class);
            }
            s.curr_items += shard.items as u64;
            s.bytes += shard.bytes as u64;
        }
        s
    }

    /// Zeroes the counters (`stats reset`); item counts and bytes are state, not counters.
    pub fn reset_stats(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.stats = ShardStats::default();
            shard.classes.0.iter_mut().for_each(ClassStats::reset);
        }
    }

    /// Bytes charged by all items.
    pub fn used_bytes(&self) -> usize {
        self.used.load(Relaxed)
    }
}

#[cfg(test)]
mod tests;
