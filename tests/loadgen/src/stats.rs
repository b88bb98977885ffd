//! Per-connection counters, latency histogram and a small PRNG.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency tracked (ns); larger values are clamped to it.
const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Error messages kept for the report.
const MAX_SAMPLES: usize = 10;

pub struct Stats {
    pub gets: u64,
    pub sets: u64,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    /// Latency in nanoseconds.
    hist: Option<Histogram<u64>>,
    samples: Vec<String>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

impl Stats {
    pub fn new(with_hist: bool) -> Self {
        Stats { gets: 0, sets: 0, hits: 0, misses: 0, errors: 0, hist: with_hist.then(new_hist), samples: Vec::new() }
    }

    #[inline]
    pub fn record(&mut self, d: Duration) {
        if let Some(h) = &mut self.hist {
            let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            h.saturating_record(ns.clamp(1, MAX_LATENCY_NS));
        }
    }

    pub fn error(&mut self, msg: String) {
        self.errors += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(msg);
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        self.gets += o.gets;
        self.sets += o.sets;
        self.hits += o.hits;
        self.misses += o.misses;
        self.errors += o.errors;
        if let (Some(h), Some(oh)) = (&mut self.hist, &o.hist) {
            h.add(oh).expect("histograms have equal bounds");
        }
        for s in &o.samples {
            if self.samples.len() >= MAX_SAMPLES {
                break;
            }
            self.samples.push(s.clone());
        }
    }

    /// The latency histogram (ns); empty if this `Stats` keeps none.
    pub fn hist(&self) -> Histogram<u64> {
        self.hist.clone().unwrap_or_else(new_hist)
    }

    pub fn print_error_samples(&self) {
        for s in &self.samples {
            eprintln!("error: {s}");
        }
        if self.errors > self.samples.len() as u64 {
            eprintln!("error: ... {} more", self.errors - self.samples.len() as u64);
        }
    }
}

/// splitmix64: fast, good enough for choosing keys and operations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_below_is_in_range_and_spread() {
        let mut r = Rng::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let v = r.below(10);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn stats_merge() {
        let mut a = Stats::new(true);
        a.record(Duration::from_micros(10));
        a.gets = 1;
        let mut b = Stats::new(true);
        b.record(Duration::from_micros(30));
        b.sets = 2;
        b.error("x".into());
        a.merge(&b);
        assert_eq!((a.gets, a.sets, a.errors), (1, 2, 1));
        let h = a.hist();
        assert_eq!(h.len(), 2);
        assert!(h.max() >= 29_000 && h.max() <= 31_000);
    }
}
