//! What replication needs from the store: every local change reported in order, writes from
//! the peer applied only when newer, deleted keys remembered for a while, and snapshots.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::clock::RelTime;
use super::flush::Flush;
use super::item::Item;

/// A local change, reported under the lock of the item's shard, so that changes to one key
/// reach the sink in the order they were made.
#[derive(Debug)]
pub enum Change<'a> {
    /// The item's whole new state (sets, appends, counters, touches: all state-based).
    Set(&'a Item),
    Delete {
        key: &'a [u8],
        version: u64,
    },
    Flush(Flush),
}

/// Where local changes go (the replication backlog).
pub trait ChangeSink: Send + Sync {
    fn record(&self, change: Change<'_>);
}

/// An item (or a delete) from the peer.
#[derive(Debug, Clone, Copy)]
pub struct RemoteItem<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub flags: u32,
    /// Relative expiry (0: never).
    pub exptime: RelTime,
    pub cas: u64,
    pub version: u64,
    pub deleted: bool,
}

/// Deleted keys per shard, with the delete's version, until they expire or the shard holds
/// too many (oldest dropped first). Past that, an older write from the peer could bring a
/// deleted key back: the window the pair tolerates for healing a partition.
#[derive(Default)]
pub struct Tombstones {
    by_key: HashMap<Box<[u8]>, (u64, RelTime)>,
    order: VecDeque<(Box<[u8]>, RelTime)>,
}

/// How long a delete is remembered, and how many per shard.
pub const TOMBSTONE_TTL: RelTime = 300;
const TOMBSTONES_PER_SHARD: usize = 4096;

impl Tombstones {
    pub fn version(&self, key: &[u8]) -> Option<u64> {
        self.by_key.get(key).map(|&(v, _)| v)
    }

    pub fn insert(&mut self, key: &[u8], version: u64, now: RelTime) {
        let expires = now + TOMBSTONE_TTL;
        while self.order.len() >= TOMBSTONES_PER_SHARD {
            self.pop_oldest();
        }
        self.by_key.insert(key.into(), (version, expires));
        self.order.push_back((key.into(), expires));
    }

    pub fn remove(&mut self, key: &[u8]) {
        // The entry in `order` goes when it comes up; `pop_oldest` skips it then.
        self.by_key.remove(key);
    }

    /// Drops tombstones that expired by `now`.
    pub fn expire(&mut self, now: RelTime) {
        while self.order.front().is_some_and(|(_, expires)| *expires <= now) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((key, expires)) = self.order.pop_front() {
            // Only if this entry is the key's latest (a key deleted twice appears twice).
            if self.by_key.get(&key).is_some_and(|&(_, e)| e == expires) {
                self.by_key.remove(&key);
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> {
        self.by_key.iter().map(|(k, &(v, _))| (&**k, v))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_expire_and_stay_bounded() {
        let mut t = Tombstones::default();
        t.insert(b"a", 5, 100);
        t.insert(b"a", 6, 101);
        assert_eq!(t.version(b"a"), Some(6));
        t.expire(100 + TOMBSTONE_TTL);
        assert_eq!(t.version(b"a"), Some(6), "the newer delete outlives the older one");
        t.expire(101 + TOMBSTONE_TTL);
        assert_eq!(t.version(b"a"), None);
        for i in 0..TOMBSTONES_PER_SHARD + 10 {
            t.insert(format!("k{i}").as_bytes(), 1, 200);
        }
        assert_eq!(t.len(), TOMBSTONES_PER_SHARD);
        assert_eq!(t.version(b"k0"), None);
    }
}
