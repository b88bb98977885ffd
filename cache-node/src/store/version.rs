//! Item versions: a hybrid logical clock, so that replicated writes can be ordered.
//!
//! A version is `unix_millis << 20 | counter << 8 | node_tag`: the wall clock in milliseconds
//! (44 bits, good until the year 2527), a 12-bit counter for writes within one millisecond (or
//! while the wall clock lags a version already seen), and the writing node's tag, which makes
//! versions from the two nodes of a pair distinct. Comparing two versions as integers orders
//! writes by time, and concurrent writes deterministically, the same way on both nodes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

const TAG_BITS: u32 = 8;
const TIME_SHIFT: u32 = 20;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

#[derive(Debug)]
pub struct Hlc {
    /// The last version handed out or observed, with this node's tag in the low bits.
    last: AtomicU64,
}

impl Hlc {
    pub fn new(tag: u8) -> Self {
        Self { last: AtomicU64::new(u64::from(tag)) }
    }

    pub fn tag(&self) -> u8 {
        (self.last.load(Relaxed) & TAG_MASK) as u8
    }

    /// Changes this node's tag (the two nodes of a pair must differ).
    pub fn set_tag(&self, tag: u8) {
        let _ = self.last.fetch_update(Relaxed, Relaxed, |last| Some(last & !TAG_MASK | u64::from(tag)));
    }

    /// A version greater than every version handed out or observed so far.
    pub fn next(&self) -> u64 {
        self.next_at(unix_millis())
    }

    fn next_at(&self, millis: u64) -> u64 {
        let physical = millis << TIME_SHIFT;
        let mut last = self.last.load(Relaxed);
        loop {
            let tag = last & TAG_MASK;
            let logical_next = (last & !TAG_MASK) + (1 << TAG_BITS);
            let next = physical.max(logical_next) | tag;
            match self.last.compare_exchange_weak(last, next, Relaxed, Relaxed) {
                Ok(_) => return next,
                Err(current) => last = current,
            }
        }
    }

    /// Records a version seen from the peer, so that later local writes order after it.
    pub fn observe(&self, version: u64) {
        let _ = self.last.fetch_update(Relaxed, Relaxed, |last| {
            let seen = version & !TAG_MASK;
            (seen > last & !TAG_MASK).then_some(seen | last & TAG_MASK)
        });
    }
}

/// The smallest version of unix millisecond `millis`: every write made from then on is at least
/// this new.
pub fn at_millis(millis: u64) -> u64 {
    millis << TIME_SHIFT
}

/// The unix millisecond a version was made in.
pub fn millis_of(version: u64) -> u64 {
    version >> TIME_SHIFT
}

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_and_carry_the_tag() {
        let hlc = Hlc::new(7);
        let a = hlc.next_at(1000);
        let b = hlc.next_at(1000);
        let c = hlc.next_at(999); // the wall clock stepped back
        assert!(a < b && b < c);
        assert_eq!([a & TAG_MASK, b & TAG_MASK, c & TAG_MASK], [7, 7, 7]);
        assert_eq!(a >> TIME_SHIFT, 1000);
    }

    #[test]
    fn observed_versions_are_overtaken() {
        let hlc = Hlc::new(1);
        let remote = (5000 << TIME_SHIFT) | 2;
        hlc.observe(remote);
        let next = hlc.next_at(10);
        assert!(next > remote);
        assert_eq!(next & TAG_MASK, 1);
        hlc.set_tag(3);
        assert_eq!(hlc.next_at(10) & TAG_MASK, 3);
    }
}
