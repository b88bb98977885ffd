//! One cached item: key and value in a single reference-counted allocation plus fixed-size
//! metadata. Replies hold a reference to a large value instead of a copy (as memcached holds
//! a reference to the item), so a reply costs the same memory however often it names a value.

use std::ops::Deref;
use std::sync::Arc;

use super::classes;
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
/// entry (index and control byte), the reference counts in front of the data block and the
/// allocator's header for it.
pub const ITEM_OVERHEAD: usize = std::mem::size_of::<Item>() + std::mem::size_of::<u32>() + 1 + 16 + 16;

/// A stored item. A slot whose `key_len` is 0 is free (keys are never empty).
#[derive(Debug, Default)]
pub struct Item {
    /// Key bytes followed by value bytes.
    data: Arc<[u8]>,
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
    /// memcached's slab class for this item ([`classes::class_of`]), for the statistics.
    class: u8,
}

impl Item {
    pub fn new(key: &[u8], value: &[u8], flags: u32, exptime: RelTime, now: RelTime) -> Self {
        Self::from_parts(key, &[value], flags, exptime, now)
    }

    /// Builds an item whose value is the concatenation of `parts` (append, prepend).
    pub fn from_parts(key: &[u8], parts: &[&[u8]], flags: u32, exptime: RelTime, now: RelTime) -> Self {
        debug_assert!(!key.is_empty() && key.len() <= u8::MAX as usize);
        let len = key.len() + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut data = Arc::<[u8]>::new_uninit_slice(len);
        let buf = Arc::get_mut(&mut data).expect("a new Arc has no other reference");
        let mut at = 0;
        for part in std::iter::once(key).chain(parts.iter().copied()) {
            buf[at..at + part.len()].write_copy_of_slice(part);
            at += part.len();
        }
        let class = classes::class_of(classes::memcached_item_size(key.len(), len - key.len(), flags));
        Self {
            // SAFETY: the parts add up to `len`, so every byte was written above.
            data: unsafe { data.assume_init() },
            cas: 0,
            version: 0,
            exptime,
            time: now,
            flags,
            key_len: key.len() as u8,
            bits: 0,
            class,
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

    /// The value, to change in place; `None` while a reply holds the item ([`Item::is_held`]).
    pub fn value_mut(&mut self) -> Option<&mut [u8]> {
        let start = self.key_len as usize;
        Arc::get_mut(&mut self.data).map(|data| &mut data[start..])
    }

    /// Whether a reply holds the item (memcached: a reference count above the hash table's).
    pub fn is_held(&self) -> bool {
        Arc::strong_count(&self.data) > 1
    }

    /// The value as a reference that outlives the store's lock, for a reply to send.
    pub fn shared_value(&self) -> SharedValue {
        SharedValue { data: self.data.clone(), start: self.key_len as usize }
    }

    /// Bytes charged against the memory limit.
    pub fn size(&self) -> usize {
        charge(self.data.len())
    }

    /// The slab class memcached would keep this item in (1-based).
    pub fn class(&self) -> u8 {
        self.class
    }

    /// The item's size as memcached counts it ([`classes::memcached_item_size`]).
    pub fn memcached_size(&self) -> usize {
        classes::memcached_item_size(self.key_len as usize, self.value().len(), self.flags)
    }

    /// Calls `f` with the class of each chunk memcached would use for this item.
    pub fn chunks(&self, f: impl FnMut(u8)) {
        classes::chunks(self.key_len as usize, self.value().len(), self.flags, f);
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

/// An item's value held by a reply (see [`Item::shared_value`]).
#[derive(Debug, Clone)]
pub struct SharedValue {
    data: Arc<[u8]>,
    start: usize,
}

impl Deref for SharedValue {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.data[self.start..]
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

    #[test]
    fn a_held_value_is_not_changed_in_place() {
        let mut it = Item::new(b"k", b"10", 0, 0, 0);
        let sent = it.shared_value();
        assert!(it.is_held() && it.value_mut().is_none());
        drop(sent);
        assert!(!it.is_held());
        it.value_mut().expect("no one holds it")[0] = b'2';
        assert_eq!((it.value(), it.key()), (&b"20"[..], &b"k"[..]));
    }

    // memcached spends 59 bytes of metadata per item (header, CAS, NUL, CRLF), before its slab
    // classes round the item up by as much as 25%; stay close to that.
    const _: () = assert!(std::mem::size_of::<Item>() <= 48 && ITEM_OVERHEAD <= 88);
}
