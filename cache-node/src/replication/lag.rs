//! Replication lag as this node measures it: from a change entering the backlog to the peer's
//! acknowledgement that it applied it. That is an upper bound of the time the change takes to
//! become visible on the peer (it includes the acknowledgement's trip back), measured with one
//! clock, so it needs no synchronised clocks and no client probe.

use std::collections::VecDeque;
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Sent batches awaiting an acknowledgement; past this, batches go unmeasured (the peer is far
/// behind, which `lag_bytes` shows).
const MAX_INFLIGHT: usize = 4096;
/// Largest lag recorded exactly (microseconds); longer ones count as this.
const MAX_US: u64 = 3_600_000_000;

/// Upper bounds (seconds) of the `/metrics` histogram's buckets.
pub const BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Debug)]
pub struct Lag {
    /// End offsets of sent batches and when the oldest change in each was recorded.
    inflight: Mutex<VecDeque<(u64, Instant)>>,
    recorded: Mutex<Recorded>,
}

#[derive(Debug)]
struct Recorded {
    /// Microseconds.
    histogram: Histogram<u64>,
    sum_us: u64,
}

/// A copy of the distribution for `stats replication` and `/metrics`.
pub struct Summary {
    pub samples: u64,
    pub sum_seconds: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// Cumulative counts at [`BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
}

impl Default for Lag {
    fn default() -> Self {
        let histogram = Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds");
        Self { inflight: Mutex::default(), recorded: Mutex::new(Recorded { histogram, sum_us: 0 }) }
    }
}

impl Lag {
    /// The stream up to `end` is sent; its oldest unsent change was recorded at `since`.
    pub fn sent(&self, end: u64, since: Instant) {
        let mut inflight = self.inflight.lock();
        if inflight.len() < MAX_INFLIGHT {
            inflight.push_back((end, since));
        }
    }

    /// The peer applied the stream up to `offset`: every batch that ends there or before is done.
    pub fn acked(&self, offset: u64) {
        let now = Instant::now();
        let mut done = Vec::new();
        {
            let mut inflight = self.inflight.lock();
            while let Some(&(end, since)) = inflight.front()
                && end <= offset
            {
                inflight.pop_front();
                done.push(now.saturating_duration_since(since).as_micros() as u64);
            }
        }
        if done.is_empty() {
            return;
        }
        let mut recorded = self.recorded.lock();
        for us in done {
            let us = us.clamp(1, MAX_US);
            recorded.histogram.saturating_record(us);
            recorded.sum_us += us;
        }
    }

    /// A new link: acknowledgements of the old one's batches will not come.
    pub fn link_reset(&self) {
        self.inflight.lock().clear();
    }

    /// Forgets the distribution (`stats reset`).
    pub fn reset(&self) {
        let mut recorded = self.recorded.lock();
        recorded.histogram.reset();
        recorded.sum_us = 0;
    }

    pub fn summary(&self) -> Summary {
        let recorded = self.recorded.lock();
        let h = &recorded.histogram;
        let at = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        Summary {
            samples: h.len(),
            sum_seconds: recorded.sum_us as f64 / 1e6,
            p50_us: at(0.5),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: if h.is_empty() { 0 } else { h.max() },
            buckets: BUCKETS.iter().map(|&le| (le, h.count_between(0, (le * 1e6) as u64))).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn an_ack_measures_every_batch_it_covers_and_no_other() {
        let lag = Lag::default();
        let t0 = Instant::now();
        for end in [100, 200, 300] {
            lag.sent(end, t0);
        }
        lag.acked(250);
        assert_eq!(lag.summary().samples, 2);
        lag.acked(250);
        assert_eq!(lag.summary().samples, 2, "an ack twice measures nothing twice");
        lag.acked(300);
        let s = lag.summary();
        assert_eq!(s.samples, 3);
        assert_eq!(s.buckets.last().unwrap().1, 3, "the buckets are cumulative");
    }

    #[test]
    fn a_new_link_drops_the_old_batches_and_reset_forgets_the_distribution() {
        let lag = Lag::default();
        lag.sent(100, Instant::now());
        lag.link_reset();
        lag.acked(100);
        assert_eq!(lag.summary().samples, 0);
        lag.sent(100, Instant::now() - Duration::from_millis(5));
        lag.acked(100);
        let s = lag.summary();
        assert_eq!(s.samples, 1);
        assert!((5_000..1_000_000).contains(&s.p50_us), "{}", s.p50_us);
        assert!(s.sum_seconds >= 0.005);
        lag.reset();
        assert_eq!(lag.summary().samples, 0);
    }

    #[test]
    fn inflight_batches_are_bounded() {
        let lag = Lag::default();
        let t = Instant::now();
        for end in 0..(MAX_INFLIGHT as u64 + 10) {
            lag.sent(end, t);
        }
        lag.acked(u64::MAX);
        assert_eq!(lag.summary().samples, MAX_INFLIGHT as u64);
    }
}
