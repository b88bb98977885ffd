//! Item counters, kept per shard under its lock and summed for `stats`.

use super::classes;
use super::clock::RelTime;

/// Counters updated under a shard's lock, so they cost no atomic operations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    pub cmd_get: u64,
    pub cmd_touch: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub delete_misses: u64,
    pub incr_misses: u64,
    pub decr_misses: u64,
    pub cas_misses: u64,
    pub touch_misses: u64,
    pub total_items: u64,
}

impl std::ops::AddAssign for ShardStats {
    fn add_assign(&mut self, o: Self) {
        self.cmd_get += o.cmd_get;
        self.cmd_touch += o.cmd_touch;
        self.get_misses += o.get_misses;
        self.get_expired += o.get_expired;
        self.get_flushed += o.get_flushed;
        self.delete_misses += o.delete_misses;
        self.incr_misses += o.incr_misses;
        self.decr_misses += o.decr_misses;
        self.cas_misses += o.cas_misses;
        self.touch_misses += o.touch_misses;
        self.total_items += o.total_items;
    }
}

/// A point-in-time view of the whole store.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    pub counters: ShardStats,
    pub classes: PerClass,
    pub curr_items: u64,
    pub bytes: u64,
    pub limit_maxbytes: u64,
}

impl StoreStats {
    /// The per-class counters summed over all classes (memcached's global `evictions`,
    /// `get_hits`, … are such sums too).
    pub fn totals(&self) -> ClassStats {
        let mut total = ClassStats::default();
        for class in &self.classes.0 {
            total.merge(class);
        }
        total
    }
}

/// Counters and state of the items in one of memcached's slab classes ([`super::classes`]),
/// per shard: what `stats items` and `stats slabs` report per class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClassStats {
    /// Items in the class.
    pub number: u64,
    /// Their sizes as memcached counts them ([`super::memcached_item_size`]).
    pub mem_requested: u64,
    /// Chunks memcached would use for them in this class (a chained item's chunks may lie in
    /// other classes: [`super::classes::chunks`]).
    pub chunks: u64,
    /// Last access time of the oldest item, as of the last sweep pass (0: not known yet).
    pub oldest: RelTime,
    pub evicted: u64,
    /// Evicted items that had an expiry.
    pub evicted_nonzero: u64,
    /// Seconds since the last access of the last evicted item, and when it was evicted.
    pub evicted_time: RelTime,
    pub evicted_at: RelTime,
    pub evicted_unfetched: u64,
    /// Writes refused because nothing could be evicted.
    pub outofmemory: u64,
    /// Dead (expired or flushed) items whose memory a write took over.
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    /// Dead items freed by the background sweep, and the items it looked at.
    pub crawler_reclaimed: u64,
    pub crawler_items_checked: u64,
    /// Items an eviction passed over because the writer replacing them holds them.
    pub lrutail_reflocked: u64,
    pub get_hits: u64,
    pub cmd_set: u64,
    pub delete_hits: u64,
    pub incr_hits: u64,
    pub decr_hits: u64,
    pub cas_hits: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
}

impl ClassStats {
    /// Adds another shard's view of the same class.
    pub fn merge(&mut self, o: &Self) {
        if o.number > 0 && (self.oldest == 0 || (o.oldest != 0 && o.oldest < self.oldest)) {
            self.oldest = o.oldest;
        }
        if o.evicted_at > self.evicted_at {
            (self.evicted_at, self.evicted_time) = (o.evicted_at, o.evicted_time);
        }
        self.number += o.number;
        self.mem_requested += o.mem_requested;
        self.chunks += o.chunks;
        self.evicted += o.evicted;
        self.evicted_nonzero += o.evicted_nonzero;
        self.evicted_unfetched += o.evicted_unfetched;
        self.outofmemory += o.outofmemory;
        self.reclaimed += o.reclaimed;
        self.expired_unfetched += o.expired_unfetched;
        self.crawler_reclaimed += o.crawler_reclaimed;
        self.crawler_items_checked += o.crawler_items_checked;
        self.lrutail_reflocked += o.lrutail_reflocked;
        self.get_hits += o.get_hits;
        self.cmd_set += o.cmd_set;
        self.delete_hits += o.delete_hits;
        self.incr_hits += o.incr_hits;
        self.decr_hits += o.decr_hits;
        self.cas_hits += o.cas_hits;
        self.cas_badval += o.cas_badval;
        self.touch_hits += o.touch_hits;
    }

    /// Zeroes the counters (`stats reset`), keeping what describes the items held.
    pub fn reset(&mut self) {
        *self = Self {
            number: self.number,
            mem_requested: self.mem_requested,
            chunks: self.chunks,
            oldest: self.oldest,
            ..Self::default()
        };
    }
}

/// One [`ClassStats`] per slab class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerClass(pub [ClassStats; classes::COUNT]);

impl Default for PerClass {
    fn default() -> Self {
        Self([ClassStats::default(); classes::COUNT])
    }
}

impl PerClass {
    /// Every class with its number (from 1).
    pub fn iter(&self) -> impl Iterator<Item = (u8, &ClassStats)> {
        (1..).zip(&self.0)
    }
}

impl std::ops::Index<u8> for PerClass {
    type Output = ClassStats;

    fn index(&self, class: u8) -> &ClassStats {
        &self.0[class as usize - 1]
    }
}

impl std::ops::IndexMut<u8> for PerClass {
    fn index_mut(&mut self, class: u8) -> &mut ClassStats {
        &mut self.0[class as usize - 1]
    }
}
