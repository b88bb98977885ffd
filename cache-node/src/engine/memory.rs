//! The memory guard: keeps the process within its bound when the allocator cannot reuse what
//! evicted items freed.
//!
//! Items are allocated one by one. When item sizes change (small values, then large ones), the
//! holes evicted items leave may not fit the new sizes, and the heap grows although the items
//! stay within `-m`: up to 1.7 × `-m` was measured. memcached's fixed slab pages cannot grow
//! that way; here the guard watches the resident memory instead and, while it is over its
//! bound, holds part of `-m` back from items, so that more of the oldest are evicted and the
//! holes they leave join up, and returns whole free pages to the system. It gives the bytes
//! back slowly once memory is below the bound again. The bound is 1.12 × `-m` plus what the
//! process used before any item (F), the replication backlog and the connections' buffers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tracing::info;

use super::Context;

/// How often the watch looks besides the connections' checks: to give bytes back once memory is
/// within its bound, and to see writes that come from the peer (a full sync).
const INTERVAL: Duration = Duration::from_millis(50);
/// Connections check memory themselves after this many bytes read from clients, so that a
/// burst of writes cannot outrun the watch on a busy machine.
const CHECK_EVERY: usize = 1 << 20;
/// A connection reports what it read in steps of this much: the shared count is touched
/// rarely, not on every read of every connection.
pub const REPORT_EVERY: usize = 64 << 10;
/// Items may take 12% more than `-m` before the guard acts: the allocator's rounding and the
/// index's growth, which small items (100 B) reach in a steady state.
const SLACK_PERCENT: usize = 12;
/// Buffers a busy connection holds (read buffer and reply), counted in the bound.
const PER_CONNECTION: usize = 32 * 1024;
/// The guard never holds back more than this share of `-m`.
const MAX_HELD_PERCENT: usize = 50;

/// How much of `limit` to hold back next, given resident memory `rss` and the `bound`: while
/// over, the excess more plus a margin of 5% of `limit` (room for the next burst of writes
/// before the guard looks again); while under, a quarter of the room beyond that margin back.
pub fn next_held_back(rss: usize, bound: usize, held: usize, limit: usize) -> usize {
    let max = percent(limit, MAX_HELD_PERCENT);
    let margin = limit / 20;
    if rss > bound {
        return held.saturating_add(rss - bound).saturating_add(margin).min(max);
    }
    let room = (bound - rss).saturating_sub(margin);
    held.saturating_sub(room / 4).min(max)
}

/// `pct` percent of `bytes`, without overflow for any `-m`.
fn percent(bytes: usize, pct: usize) -> usize {
    usize::try_from(bytes as u128 * pct as u128 / 100).unwrap_or(usize::MAX)
}

/// The guard's state, shared by the connections and the watch.
#[derive(Debug)]
pub struct Guard {
    /// Resident memory before any item: the runtime, threads, listeners (F), measured again
    /// when the server starts.
    before_items: AtomicUsize,
    /// Client bytes read since memory was last checked.
    unchecked: AtomicUsize,
}

impl Guard {
    /// None where resident memory cannot be read: no guard.
    pub fn new() -> Option<Self> {
        Some(Self { before_items: AtomicUsize::new(resident_bytes()?), unchecked: AtomicUsize::new(0) })
    }

    /// Counts bytes connections read (reported in steps of [`REPORT_EVERY`]); every
    /// [`CHECK_EVERY`] bytes, the connection that reports checks.
    pub fn read(&self, ctx: &Context, bytes: usize) {
        if self.unchecked.fetch_add(bytes, Relaxed) + bytes >= CHECK_EVERY {
            self.unchecked.store(0, Relaxed);
            self.check(ctx);
        }
    }

    /// Compares resident memory with the bound and moves what is held back from items.
    pub fn check(&self, ctx: &Context) {
        let Some(rss) = resident_bytes() else {
            return;
        };
        let limit = ctx.settings.limit_bytes;
        let backlog = ctx.replication.get().map_or(0, |r| r.backlog_bytes.load(Relaxed) as usize);
        let connections = ctx.stats.curr_connections.load(Relaxed) as usize * PER_CONNECTION;
        let bound = percent(limit, 100 + SLACK_PERCENT)
            .saturating_add(self.before_items.load(Relaxed))
            .saturating_add(backlog)
            .saturating_add(connections);
        let held = ctx.store.held_back();
        let next = next_held_back(rss, bound, held, limit);
        if next == held {
            return;
        }
        if held == 0 {
            info!(rss, bound, "memory over its bound: evicting more, until the allocator reuses what is freed");
        } else if next == 0 {
            info!(rss, bound, "memory back within its bound: items may take all of -m again");
        }
        ctx.store.hold_back(next, ctx.clock.now());
        if rss > bound {
            crate::allocator::release_free_memory();
        }
    }
}

/// Checks memory every [`INTERVAL`] until the task is aborted: gives back what is held once
/// memory is within its bound, and catches writes that did not come from clients (a full sync).
pub async fn watch(ctx: Arc<Context>) {
    let Some(guard) = &ctx.memory else {
        return;
    };
    if let Some(rss) = resident_bytes() {
        guard.before_items.store(rss, Relaxed);
    }
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        guard.check(&ctx);
    }
}

/// The process's resident memory, from /proc/self/statm.
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system setting.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * usize::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn over_the_bound_the_excess_and_a_margin_are_held_back_up_to_half_of_the_limit() {
        let margin = 64 * MIB / 20;
        assert_eq!(next_held_back(90 * MIB, 80 * MIB, 0, 64 * MIB), 10 * MIB + margin);
        assert_eq!(next_held_back(90 * MIB, 80 * MIB, 10 * MIB, 64 * MIB), 20 * MIB + margin);
        assert_eq!(next_held_back(200 * MIB, 80 * MIB, 0, 64 * MIB), 32 * MIB);
    }

    #[test]
    fn under_the_bound_it_is_given_back_slowly_and_only_with_room_to_spare() {
        // Within 5% of the limit below the bound: keep holding.
        assert_eq!(next_held_back(78 * MIB, 80 * MIB, 10 * MIB, 64 * MIB), 10 * MIB);
        let room = 20 * MIB - 64 * MIB / 20;
        assert_eq!(next_held_back(60 * MIB, 80 * MIB, 10 * MIB, 64 * MIB), 10 * MIB - room / 4);
        assert_eq!(next_held_back(10 * MIB, 80 * MIB, 10 * MIB, 64 * MIB), 0);
        assert_eq!(next_held_back(10 * MIB, 80 * MIB, 0, 64 * MIB), 0);
    }

    #[test]
    fn resident_memory_is_read() {
        let rss = resident_bytes().expect("Linux has /proc/self/statm");
        assert!(rss > MIB, "{rss}");
    }
}
