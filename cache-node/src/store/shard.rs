//! One lock's worth of the store: a hash index over a slot array, with CLOCK eviction.
//!
//! The index holds `u32` slot numbers, so an entry costs five bytes; the slot array doubles as
//! the CLOCK ring. CLOCK is the usual LRU approximation: a read sets the item's REFERENCED bit,
//! the hand clears it on its way round and evicts the first item found without it.

use hashbrown::HashTable;

use super::classes;
use super::clock::RelTime;
use super::item::{FETCHED, Item, REFERENCED};
use super::replica::Tombstones;
use super::stats::{ClassStats, PerClass, ShardStats};

/// Hashes keys; one instance per store so every shard agrees.
pub type KeyHasher = foldhash::fast::FixedState;

pub fn hash_key(hasher: &KeyHasher, key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    hasher.hash_one(key)
}

/// Which items `flush_all` removed: by version, so that both nodes of a pair agree on every
/// item, whichever node wrote it and whenever the flush reached it.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlushMark {
    /// Items older than this are flushed for good.
    pub done: u64,
    /// A delayed flush: items older than `pending` are flushed from relative time
    /// `pending_from` on (0: none).
    pub pending: u64,
    pub pending_from: RelTime,
}

impl FlushMark {
    pub fn flushes(&self, it: &Item, now: RelTime) -> bool {
        it.version < self.done || (self.pending_from != 0 && self.pending_from <= now && it.version < self.pending)
    }
}

/// Why a slot did not hold a live item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dead {
    Missing,
    Expired,
    Flushed,
}

/// Oldest access time per class seen so far by a sweep pass (0: none).
#[derive(Debug, Clone, Copy)]
struct PassOldest([RelTime; classes::COUNT]);

impl Default for PassOldest {
    fn default() -> Self {
        Self([0; classes::COUNT])
    }
}

#[derive(Default)]
pub struct Shard {
    table: HashTable<u32>,
    slots: Vec<Item>,
    free: Vec<u32>,
    hand: usize,
    /// Bytes charged by the items in this shard.
    pub bytes: usize,
    pub items: usize,
    pub stats: ShardStats,
    pub classes: PerClass,
    pass_oldest: PassOldest,
    /// Recently deleted keys (only while replicating).
    pub tombstones: Tombstones,
    /// The store's flushes, copied into every shard so that they are read under its lock.
    pub flush: FlushMark,
}

impl Shard {
    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.table.find(hash, |&i| slots[i as usize].key() == key).copied()
    }

    /// The live item under `key`, removing it first if it expired or was flushed.
    /// Returns the bytes freed by such a removal alongside.
    pub fn live(&mut self, hash: u64, key: &[u8], now: RelTime) -> (Result<u32, Dead>, usize) {
        let Some(idx) = self.find(hash, key) else {
            return (Err(Dead::Missing), 0);
        };
        let it = &self.slots[idx as usize];
        let dead = if self.flush.flushes(it, now) {
            Dead::Flushed
        } else if it.exptime != 0 && it.exptime <= now {
            Dead::Expired
        } else {
            return (Ok(idx), 0);
        };
        if dead == Dead::Expired && !it.has(FETCHED) {
            self.classes[it.class()].expired_unfetched += 1;
        }
        let freed = self.remove(hash, idx);
        (Err(dead), freed)
    }

    pub fn item(&self, idx: u32) -> &Item {
        &self.slots[idx as usize]
    }

    pub fn item_mut(&mut self, idx: u32) -> &mut Item {
        &mut self.slots[idx as usize]
    }

    /// The statistics of the class of the item in slot `idx`.
    pub fn class_of(&mut self, idx: u32) -> &mut ClassStats {
        let class = self.slots[idx as usize].class();
        &mut self.classes[class]
    }

    /// Replaces the item in slot `idx` (same key), returning the change in charged bytes.
    pub fn replace(&mut self, idx: u32, item: Item) -> isize {
        self.uncount(idx);
        let slot = &mut self.slots[idx as usize];
        let delta = item.size() as isize - slot.size() as isize;
        *slot = item;
        self.count(idx);
        self.bytes = (self.bytes as isize + delta) as usize;
        delta
    }

    /// Inserts an item whose key is not present. Returns its slot.
    pub fn insert(&mut self, hasher: &KeyHasher, hash: u64, item: Item) -> u32 {
        self.bytes += item.size();
        self.items += 1;
        self.stats.total_items += 1;
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = item;
                i
            }
            None => {
                self.slots.push(item);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.table.insert_unique(hash, idx, |&i| hash_key(hasher, slots[i as usize].key()));
        self.count(idx);
        idx
    }

    /// Adds the item in slot `idx` to its class's statistics.
    fn count(&mut self, idx: u32) {
        let it = &self.slots[idx as usize];
        let class = &mut self.classes[it.class()];
        if class.number == 0 {
            class.oldest = it.time;
        }
        class.number += 1;
        class.mem_requested += it.memcached_size() as u64;
        it.chunks(|c| self.classes[c].chunks += 1);
    }

    /// Takes the item in slot `idx` out of its class's statistics.
    fn uncount(&mut self, idx: u32) {
        let it = &self.slots[idx as usize];
        let class = &mut self.classes[it.class()];
        class.number -= 1;
        class.mem_requested -= it.memcached_size() as u64;
        it.chunks(|c| self.classes[c].chunks -= 1);
    }

    /// Removes the item in slot `idx`, returning the bytes it was charged.
    pub fn remove(&mut self, hash: u64, idx: u32) -> usize {
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.uncount(idx);
        let freed = self.slots[idx as usize].clear();
        self.free.push(idx);
        self.bytes -= freed;
        self.items -= 1;
        freed
    }

    /// Moves the CLOCK hand until one item is evicted (or reclaimed because it is dead).
    /// Returns the bytes freed, or `None` when the shard holds nothing.
    /// The slot `pin` is never chosen: it holds an item the caller is about to rewrite.
    pub fn evict_one(&mut self, hasher: &KeyHasher, now: RelTime, pin: Option<u32>) -> Option<usize> {
        if self.items == 0 {
            return None;
        }
        // Two full turns always find a victim: the first clears every REFERENCED bit.
        for _ in 0..2 * self.slots.len() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let idx = self.hand;
            self.hand += 1;
            let it = &mut self.slots[idx];
            if it.is_free() {
                continue;
            }
            if pin == Some(idx as u32) {
                self.classes[it.class()].lrutail_reflocked += 1;
                continue;
            }
            let dead = self.flush.flushes(it, now) || (it.exptime != 0 && it.exptime <= now);
            if !dead && it.has(REFERENCED) {
                it.bits &= !REFERENCED;
                continue;
            }
            let class = &mut self.classes[it.class()];
            if dead {
                class.reclaimed += 1;
            } else {
                class.evicted += 1;
                class.evicted_nonzero += u64::from(it.exptime != 0);
                class.evicted_time = now.saturating_sub(it.time);
                class.evicted_at = now;
                class.evicted_unfetched += u64::from(!it.has(FETCHED));
            }
            let hash = hash_key(hasher, it.key());
            return Some(self.remove(hash, idx as u32));
        }
        None
    }

    /// Visits up to `budget` slots from `from`, freeing expired and flushed items and noting
    /// the oldest access time per class. Returns (bytes freed, slots visited, next position);
    /// position 0 means the pass went all the way round.
    pub fn sweep(&mut self, hasher: &KeyHasher, from: usize, budget: usize, now: RelTime) -> (usize, usize, usize) {
        if from == 0 {
            self.pass_oldest = PassOldest::default();
        }
        let mut freed = 0;
        let end = (from + budget).min(self.slots.len());
        for idx in from..end {
            let it = &self.slots[idx];
            if it.is_free() {
                continue;
            }
            let class = &mut self.classes[it.class()];
            class.crawler_items_checked += 1;
            let expired = it.exptime != 0 && it.exptime <= now;
            if expired || self.flush.flushes(it, now) {
                class.crawler_reclaimed += 1;
                class.expired_unfetched += u64::from(expired && !it.has(FETCHED));
                let hash = hash_key(hasher, it.key());
                freed += self.remove(hash, idx as u32);
            } else {
                let oldest = &mut self.pass_oldest.0[it.class() as usize - 1];
                if *oldest == 0 || it.time < *oldest {
                    *oldest = it.time;
                }
            }
        }
        if end < self.slots.len() {
            return (freed, end - from, end);
        }
        // A whole pass: what it saw is the oldest item of each class (items written since are
        // younger).
        for (class, oldest) in self.classes.0.iter_mut().zip(self.pass_oldest.0) {
            if oldest != 0 {
                class.oldest = oldest;
            }
        }
        self.tombstones.expire(now);
        (freed, end - from, 0)
    }

    /// The items that are neither expired nor flushed (for snapshots).
    pub fn live_items(&self, now: RelTime) -> impl Iterator<Item = &Item> {
        self.slots.iter().filter(move |it| self.is_live(it, now))
    }

    fn is_live(&self, it: &Item, now: RelTime) -> bool {
        !(it.is_free() || self.flush.flushes(it, now) || it.exptime != 0 && it.exptime <= now)
    }

    /// Shows `f` the live items in at most `budget` slots from `from` on, until it returns
    /// false. Returns the slot to resume at, or None once past the last slot.
    pub fn walk(&self, from: usize, budget: usize, now: RelTime, mut f: impl FnMut(&Item) -> bool) -> Option<usize> {
        let end = from.saturating_add(budget).min(self.slots.len());
        for idx in from..end {
            let it = &self.slots[idx];
            if self.is_live(it, now) && !f(it) {
                return (idx + 1 < self.slots.len()).then_some(idx + 1);
            }
        }
        (end < self.slots.len()).then_some(end)
    }
}
