//! One cached item: key and value in a single allocation plus fixed-size metadata.

use super::clock::RelTime;

/// Set while the item was read since the clock hand last passed (the LRU approximation).
pub const REFERENCED: u8 = 1;
/// Set once the item has been read by a client at all (`h` in meta, `*_unfetched` stats).
pub const FETCHED: u8 = 1 << 1;
/// Marked stale by a meta invalidation (`md … I`, `ms … I`).
pub const STALE: u8 = 1 << 2;
/// A client was handed the win token for recaching this item.
pub const WON: u8 = 1 << 3;
/// The key was sent base64-encoded (meta `b`): replies that show it encode it again.
pub const BINARY_KEY: u8 = 1 << 4;

/// Bookkeeping bytes charged per item on top of key and value: the slot itself, the hash table
/// entry (index and control byte) and the allocator's header for the data block.
pub const ITEM_OVERHEAD: usize = std::mem::size_of::<Item>() + std::mem::size_of::<u32>() + 1 + 16;

/// A stored item. A slot whose `key_len` is 0 is free (keys are never empty).
#[derive(Debug, Default)]
pub struct Item {
    /// Key bytes followed by value bytes.
    data: Box<[u8]>,
    pub cas: u64,
    /// When and where the item was last written ([`super::version`]): replication keeps the
    /// newer of two versions.
    pub version: u64,
    /// Relative expiry time, 0 for never.
    pub exptime: RelTime,
    /// Relative time of the last access (memcached's `it->time`).
    pub time: RelTime,
    pub flags: u32,
    key_len: u8,
    pub bits: u8,
}

impl Item {
    pub fn new(key: &[u8], value: &[u8], flags: u32, exptime: RelTime, now: RelTime) -> Self {
        Self::from_parts(key, &[value], flags, exptime, now)
    }

    /// Builds an item whose value is the concatenation of `parts` (append, prepend).
    pub fn from_parts(key: &[u8], parts: &[&[u8]], flags: u32, exptime: RelTime, now: RelTime) -> Self {
        debug_assert!(!key.is_empty() && key.len() <= u8::MAX as usize);
        let len = key.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut data = Vec::with_capacity(len);
        data.extend_from_slice(key);
        for p in parts {
            data.extend_from_slice(p);
        }
        Self {
            data: data.into_boxed_slice(),
            cas: 0,
            version: 0,
            exptime,
            time: now,
            flags,
            key_len: key.len() as u8,
            bits: 0,
        }
    }

    pub fn is_free(&self) -> bool {
        self.key_len == 0
    }

    pub fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    pub fn value(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    pub fn value_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.key_len as usize..]
    }

    /// Bytes charged against the memory limit.
    pub fn size(&self) -> usize {
        charge(self.data.len())
    }

    pub fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    /// Empties the slot, returning the bytes it was charged.
    pub fn clear(&mut self) -> usize {
        let size = self.size();
        *self = Item::default();
        size
    }
}

/// Bytes charged for an item whose key and value together are `data_len` bytes.
pub fn charge(data_len: usize) -> usize {
    data_len + ITEM_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_share_one_block() {
        let it = Item::from_parts(b"k1", &[b"ab", b"cd"], 7, 0, 100);
        assert_eq!(it.key(), b"k1");
        assert_eq!(it.value(), b"abcd");
        assert_eq!(it.size(), 6 + ITEM_OVERHEAD);
        assert!(!it.is_free());
        assert!(Item::default().is_free());
    }

    // memcached spends ~56 bytes of metadata per item; stay at or below that.
    const _: () = assert!(std::mem::size_of::<Item>() <= 48 && ITEM_OVERHEAD <= 72);
}
