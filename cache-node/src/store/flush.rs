//! `flush_all` as a versioned command. A flush removes the items whose version is older than
//! its cut, so both nodes of a pair flush the same items whichever node wrote them and however
//! late the flush arrived; flushes themselves are ordered by the version they were issued at,
//! so both nodes agree on which of two flushes replaced the other.

use super::clock::RelTime;
use super::shard::FlushMark;
use super::version;

/// One `flush_all`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flush {
    /// The version it was issued at. A later flush_all cancels a delayed one still pending,
    /// as in memcached.
    pub issued: u64,
    /// Items with an older version are flushed: `issued` for an immediate flush; for a delayed
    /// one, the first version of the second from which writes survive it.
    pub cut: u64,
    /// Takes effect a second before `cut`'s time instead of at once (memcached's delayed flush
    /// sets `oldest_live` to the second before its time, and flushes every write of that second).
    pub delayed: bool,
}

impl Flush {
    pub fn immediate(issued: u64) -> Self {
        Self { issued, cut: issued, delayed: false }
    }

    /// A delayed flush whose writes survive from unix millisecond `millis` on.
    pub fn delayed(issued: u64, millis: u64) -> Self {
        Self { issued, cut: version::at_millis(millis), delayed: true }
    }

    /// Unix milliseconds at which it takes effect (immediate: when issued).
    pub fn effective_millis(&self) -> u64 {
        match self.delayed {
            true => version::millis_of(self.cut).saturating_sub(1000),
            false => version::millis_of(self.issued),
        }
    }
}

/// How many flushes are remembered for ordering those that arrive late (see [`Flushes`]).
const HISTORY: usize = 64;

/// The flushes a store has seen. A delayed flush took effect if its time came before the next
/// flush_all (by `issued`) was issued, so the state is a function of the set of flushes seen,
/// whatever the order they arrived in (a flush made on the peer at the same time as one here,
/// or sent again by a full sync). The last [`HISTORY`] are kept to decide that; older ones
/// are reduced to the newest cut among them that took effect.
#[derive(Debug, Default)]
pub struct Flushes {
    /// In effect, of those dropped from `history`, the one with the newest cut.
    base: Flush,
    /// The latest flushes, by `issued`.
    history: Vec<Flush>,
    /// When the last of `history`, if delayed, takes effect here (relative time; 0: none).
    pending_from: RelTime,
}

impl Flushes {
    /// Adds a flush that takes effect here at relative time `from` if it is delayed and the
    /// latest. Returns whether it was new.
    pub fn merge(&mut self, flush: Flush, from: RelTime) -> bool {
        let Err(at) = self.history.binary_search_by_key(&flush.issued, |f| f.issued) else {
            return false;
        };
        self.history.insert(at, flush);
        if at == self.history.len() - 1 {
            self.pending_from = if flush.delayed { from.max(1) } else { 0 };
        }
        if self.history.len() > HISTORY {
            let dropped = self.history.remove(0);
            if self.took_effect(dropped, self.history.first()) && dropped.cut > self.base.cut {
                self.base = dropped;
            }
        }
        true
    }

    /// Whether `flush` took effect, given the flush issued next.
    fn took_effect(&self, flush: Flush, next: Option<&Flush>) -> bool {
        !flush.delayed || next.is_some_and(|next| flush.effective_millis() <= version::millis_of(next.issued))
    }

    /// What the shards check items against.
    pub fn mark(&self) -> FlushMark {
        let done = self
            .history
            .iter()
            .enumerate()
            .filter(|&(i, f)| self.took_effect(*f, self.history.get(i + 1)))
            .map(|(_, f)| f.cut)
            .fold(self.base.cut, u64::max);
        let pending = match self.history.last() {
            Some(last) if self.pending_from != 0 => last.cut,
            _ => 0,
        };
        FlushMark { done, pending, pending_from: self.pending_from }
    }

    /// The flushes a peer needs to reach the same state.
    pub fn known(&self) -> impl Iterator<Item = Flush> + '_ {
        let base = (self.base.issued != 0).then_some(self.base);
        base.into_iter().chain(self.history.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::item::Item;

    const MS: u64 = 1_700_000_000_000;

    fn v(millis: u64, tag: u64) -> u64 {
        version::at_millis(millis) | tag
    }

    fn item(version: u64) -> Item {
        let mut it = Item::new(b"k", b"v", 0, 0, 100);
        it.version = version;
        it
    }

    #[test]
    fn an_immediate_flush_removes_older_versions_only() {
        let mut f = Flushes::default();
        assert!(f.merge(Flush::immediate(v(MS, 1)), 100));
        let mark = f.mark();
        assert!(mark.flushes(&item(v(MS - 1, 2)), 100));
        // Written after it on the other node, in the same millisecond: the tag orders them.
        assert!(!mark.flushes(&item(v(MS, 2)), 100));
        assert!(!mark.flushes(&item(v(MS + 1, 1)), 100));
    }

    #[test]
    fn a_delayed_flush_takes_effect_a_second_before_its_cut() {
        let mut f = Flushes::default();
        f.merge(Flush::delayed(v(MS, 1), MS + 2000), 102);
        let mark = f.mark();
        let before = item(v(MS + 1500, 2));
        assert!(!mark.flushes(&before, 101));
        assert!(mark.flushes(&before, 102));
        assert!(!mark.flushes(&item(v(MS + 2000, 2)), 102));
    }

    #[test]
    fn a_later_flush_cancels_a_pending_one_and_keeps_one_in_effect() {
        let mut f = Flushes::default();
        f.merge(Flush::delayed(v(MS, 1), MS + 10_000), 109);
        f.merge(Flush::immediate(v(MS + 100, 1)), 100);
        let mark = f.mark();
        assert!(!mark.flushes(&item(v(MS + 5000, 2)), 200), "the delayed flush was cancelled");
        assert!(mark.flushes(&item(v(MS + 50, 2)), 100));

        let mut f = Flushes::default();
        f.merge(Flush::delayed(v(MS, 1), MS + 2000), 101);
        f.merge(Flush::delayed(v(MS + 1500, 1), MS + 60_000), 159);
        // The first took effect (at MS + 1000) before the second was issued.
        assert!(f.mark().flushes(&item(v(MS + 1999, 2)), 102));
        assert!(!f.mark().flushes(&item(v(MS + 2000, 2)), 102));
    }

    #[test]
    fn the_order_of_arrival_does_not_matter() {
        let flushes = [
            Flush::delayed(v(MS, 1), MS + 3000),
            Flush::immediate(v(MS + 10, 2)),
            Flush::delayed(v(MS + 2500, 2), MS + 5000),
            Flush::immediate(v(MS + 2400, 1)),
        ];
        let marks: Vec<_> = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]]
            .iter()
            .map(|order| {
                let mut f = Flushes::default();
                for &i in order {
                    f.merge(flushes[i], 104);
                }
                let m = f.mark();
                (m.done, m.pending, m.pending_from)
            })
            .collect();
        assert!(marks.windows(2).all(|w| w[0] == w[1]), "{marks:?}");
        // The first delayed flush was cancelled by the immediate one issued after it.
        assert_eq!(marks[0], (v(MS + 2400, 1), version::at_millis(MS + 5000), 104));
    }

    #[test]
    fn old_flushes_are_reduced_to_their_effect() {
        let mut f = Flushes::default();
        for i in 0..HISTORY as u64 + 10 {
            f.merge(Flush::immediate(v(MS + i, 1)), 100);
        }
        assert_eq!(f.history.len(), HISTORY);
        assert_eq!(f.base.cut, v(MS + 9, 1));
        assert_eq!(f.mark().done, v(MS + HISTORY as u64 + 9, 1));
    }

    #[test]
    fn known_flushes_rebuild_the_state_elsewhere() {
        let mut f = Flushes::default();
        assert_eq!(f.known().count(), 0);
        f.merge(Flush::immediate(v(MS, 1)), 100);
        f.merge(Flush::delayed(v(MS + 10, 1), MS + 5000), 104);
        assert!(!f.merge(Flush::immediate(v(MS, 1)), 100), "seen already");
        let mut copy = Flushes::default();
        let known: Vec<_> = f.known().collect();
        for flush in known.into_iter().rev() {
            copy.merge(flush, 104);
        }
        let (a, b) = (f.mark(), copy.mark());
        assert_eq!((a.done, a.pending, a.pending_from), (b.done, b.pending, b.pending_from));
    }
}
