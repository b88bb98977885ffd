//! Item counters, kept per shard under its lock and summed for `stats`.

/// Counters updated under a shard's lock, so they cost no atomic operations.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    pub cmd_get: u64,
    pub cmd_set: u64,
    pub cmd_touch: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    pub cas_misses: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    pub total_items: u64,
    pub evictions: u64,
    pub reclaimed: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    /// Dead (expired or flushed) items freed by the background sweep, memcached's crawler.
    pub crawler_reclaimed: u64,
    /// Items the background sweep looked at.
    pub crawler_items_checked: u64,
    /// Items an eviction passed over because the writer that is replacing them holds them.
    pub lrutail_reflocked: u64,
}

impl std::ops::AddAssign for ShardStats {
    fn add_assign(&mut self, o: Self) {
        self.cmd_get += o.cmd_get;
        self.cmd_set += o.cmd_set;
        self.cmd_touch += o.cmd_touch;
        self.get_hits += o.get_hits;
        self.get_misses += o.get_misses;
        self.get_expired += o.get_expired;
        self.get_flushed += o.get_flushed;
        self.delete_hits += o.delete_hits;
        self.delete_misses += o.delete_misses;
        self.incr_hits += o.incr_hits;
        self.incr_misses += o.incr_misses;
        self.decr_hits += o.decr_hits;
        self.decr_misses += o.decr_misses;
        self.cas_hits += o.cas_hits;
        self.cas_misses += o.cas_misses;
        self.cas_badval += o.cas_badval;
        self.touch_hits += o.touch_hits;
        self.touch_misses += o.touch_misses;
        self.total_items += o.total_items;
        self.evictions += o.evictions;
        self.reclaimed += o.reclaimed;
        self.expired_unfetched += o.expired_unfetched;
        self.evicted_unfetched += o.evicted_unfetched;
        self.crawler_reclaimed += o.crawler_reclaimed;
        self.crawler_items_checked += o.crawler_items_checked;
        self.lrutail_reflocked += o.lrutail_reflocked;
    }
}

/// A point-in-time view of the whole store.
#[derive(Debug, Default, Clone, Copy)]
pub struct StoreStats {
    pub counters: ShardStats,
    pub curr_items: u64,
    pub bytes: u64,
    pub limit_maxbytes: u64,
}
