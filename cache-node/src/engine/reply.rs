//! The replies to one batch of requests, as the connection will write them: rendered bytes,
//! with large values held by reference between them rather than copied. A multi-get that names
//! a 1 MB value a thousand times costs a thousand references, not a gigabyte.
//!
//! It derefs to the rendered bytes, so replies are written with `Vec<u8>`'s methods; `len`,
//! `truncate`, `is_empty` and `clear` are its own and count the referenced values too.
//!
//! It also holds the items its replies named until they are sent, as memcached does: an
//! increment rewrites a number in place only when nothing holds its item, and otherwise stores a
//! new item (see [`crate::store::Store::arith`]), so which one happens depends on what the batch
//! still holds.

use std::ops::{Deref, DerefMut};

use crate::store::item::{Item, SharedValue};

/// Values shorter than this are copied: cheaper than a reference count and a separate write.
const SHARE_FROM: usize = 16 * 1024;
/// Once the rendered bytes reach this, every value is referenced: a multi-get naming a small
/// value a hundred thousand times costs references, not copies.
const COPY_BUDGET: usize = super::BATCH_REPLY_BYTES;

#[derive(Debug, Default)]
pub struct Reply {
    bytes: Vec<u8>,
    /// Values sent by reference, each after the first `at` rendered bytes, in order.
    shared: Vec<(usize, SharedValue)>,
    shared_len: usize,
    /// Items named by replies memcached would not have sent yet ([`Reply::hold`]).
    held: Vec<SharedValue>,
}

impl Reply {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { bytes: Vec::with_capacity(capacity), ..Self::default() }
    }

    /// Appends an item's value.
    pub fn push_value(&mut self, item: &Item) {
        let len = item.value().len();
        if len < SHARE_FROM && self.bytes.len() + len <= COPY_BUDGET {
            self.bytes.extend_from_slice(item.value());
        } else {
            let value = item.shared_value();
            self.shared_len += value.len();
            self.shared.push((self.bytes.len(), value));
        }
    }

    /// Holds `item` until the reply is sent or [`Reply::release`]d, as memcached holds the items
    /// of meta and binary reads until their replies go out.
    pub fn hold(&mut self, item: &Item) {
        self.held.push(item.shared_value());
    }

    /// Lets go of the held items: memcached has sent the replies so far (after a text `get`,
    /// `mn`, a binary no-op, or a full event of requests).
    pub fn release(&mut self) {
        self.held.clear();
    }

    /// Bytes of the whole reply.
    pub fn len(&self) -> usize {
        self.bytes.len() + self.shared_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cuts the reply back to `len` bytes, a length it had before (see [`Reply::len`]).
    pub fn truncate(&mut self, len: usize) {
        while self.len() > len {
            match self.shared.last() {
                // The cut lies within the rendered bytes after the last value.
                Some(&(at, _)) if at + self.shared_len <= len => break,
                Some(_) => {
                    if let Some((at, value)) = self.shared.pop() {
                        self.shared_len -= value.len();
                        self.bytes.truncate(at);
                    }
                }
                None => break,
            }
        }
        self.bytes.truncate(len.saturating_sub(self.shared_len));
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.shared.clear();
        self.shared_len = 0;
        self.held.clear();
    }

    /// Capacity of the rendered bytes, to drop a buffer a large reply left behind.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// The whole reply as one slice, when it holds no value by reference (most replies).
    pub fn contiguous(&self) -> Option<&[u8]> {
        self.shared.is_empty().then_some(&self.bytes[..])
    }

    /// The reply in order, as slices: rendered bytes and values.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.shared.iter().map(|&(at, _)| at));
        let ends = self.shared.iter().map(|&(at, _)| at).chain([self.bytes.len()]);
        let values = self.shared.iter().map(|(_, value)| &value[..]).chain([&[][..]]);
        starts
            .zip(ends)
            .zip(values)
            .flat_map(|((from, to), value)| [&self.bytes[from..to], value])
            .filter(|s| !s.is_empty())
    }

    /// The whole reply in one buffer (UDP frames it; tests compare it).
    pub fn to_vec(&self) -> Vec<u8> {
        self.segments().flatten().copied().collect()
    }
}

impl Deref for Reply {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl DerefMut for Reply {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: &[u8]) -> Item {
        Item::new(b"k", value, 0, 0, 0)
    }

    #[test]
    fn small_values_are_copied_and_large_ones_referenced_in_order() {
        let big = item(&vec![b'x'; SHARE_FROM]);
        let mut r = Reply::default();
        r.extend_from_slice(b"A");
        r.push_value(&item(b"small"));
        r.extend_from_slice(b"B");
        r.push_value(&big);
        r.push_value(&big);
        r.extend_from_slice(b"C");
        assert_eq!(r.shared.len(), 2);
        let mut expected = b"AsmallB".to_vec();
        expected.extend_from_slice(&vec![b'x'; 2 * SHARE_FROM]);
        expected.push(b'C');
        assert_eq!((r.len(), r.to_vec()), (expected.len(), expected.clone()));
        let segments: Vec<usize> = r.segments().map(<[u8]>::len).collect();
        assert_eq!(segments, [7, SHARE_FROM, SHARE_FROM, 1]);
        assert!(r.contiguous().is_none());
        r.clear();
        r.extend_from_slice(b"END\r\n");
        assert_eq!(r.contiguous(), Some(&b"END\r\n"[..]));
    }

    #[test]
    fn past_the_copy_budget_small_values_are_referenced() {
        let small = item(b"0123456789");
        let mut r = Reply::default();
        let copies = COPY_BUDGET / 10;
        for _ in 0..copies + 5 {
            r.push_value(&small);
        }
        assert_eq!((r.bytes.len(), r.shared.len()), (copies * 10, 5));
        assert_eq!(r.to_vec(), b"0123456789".repeat(copies + 5));
    }

    #[test]
    fn truncate_drops_values_after_the_cut() {
        let big = item(&vec![b'x'; SHARE_FROM]);
        let mut r = Reply::default();
        r.extend_from_slice(b"head ");
        let mark = r.len();
        r.push_value(&big);
        r.extend_from_slice(b" tail");
        r.truncate(mark);
        assert_eq!(r.to_vec(), b"head ");
        r.extend_from_slice(b"ERROR");
        assert_eq!(r.to_vec(), b"head ERROR");

        r.push_value(&big);
        r.extend_from_slice(b"abc");
        let len = r.len();
        r.truncate(len - 1);
        assert_eq!(r.len(), len - 1);
        assert!(r.to_vec().ends_with(b"xab"));
        r.clear();
        assert!(r.is_empty() && r.to_vec().is_empty());
    }

    #[test]
    fn held_items_stay_held_until_released_or_sent() {
        let it = item(b"10");
        let mut r = Reply::default();
        r.hold(&it);
        assert!(it.is_held() && r.is_empty(), "holding adds nothing to the reply");
        r.release();
        assert!(!it.is_held());
        r.hold(&it);
        r.clear();
        assert!(!it.is_held());
    }
}
