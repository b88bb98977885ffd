//! Server time, kept the way memcached keeps it.
//!
//! memcached measures time in seconds relative to the process start (`rel_time_t`) and converts
//! client exptimes with `realtime()`: 0 means never, negative means already expired, values up to
//! 30 days are relative to now and larger ones are unix timestamps. Reproducing that exactly keeps
//! replies identical to memcached's at every boundary.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Exptimes above this many seconds are absolute unix timestamps.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// memcached starts its relative clock this far in the past so that `current_time` never is 0.
pub const START_OFFSET: u64 = 62;

/// Relative seconds since the (offset) process start.
pub type RelTime = u32;

#[derive(Debug, Clone)]
pub struct Clock {
    /// Unix time at which relative time 0 lies.
    process_started: u64,
    /// Unix milliseconds at `start`, where relative second [`START_OFFSET`] begins.
    started_millis: u64,
    start: Instant,
}

impl Clock {
    pub fn new() -> Self {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self {
            process_started: (millis / 1000).saturating_sub(START_OFFSET),
            started_millis: millis,
            start: Instant::now(),
        }
    }

    /// A clock whose relative time starts at `START_OFFSET` at the given unix time (tests).
    pub fn at_unix(unix: u64) -> Self {
        Self { process_started: unix.saturating_sub(START_OFFSET), started_millis: unix * 1000, start: Instant::now() }
    }

    /// Seconds since the offset process start, as memcached's `current_time`.
    pub fn now(&self) -> RelTime {
        (START_OFFSET + self.start.elapsed().as_secs()) as RelTime
    }

    pub fn process_started(&self) -> u64 {
        self.process_started
    }

    /// Unix time corresponding to a relative time.
    pub fn to_unix(&self, rel: RelTime) -> u64 {
        self.process_started + u64::from(rel)
    }

    /// Unix milliseconds at which relative second `rel` begins.
    pub fn millis_at(&self, rel: RelTime) -> u64 {
        (self.started_millis + u64::from(rel) * 1000).saturating_sub(START_OFFSET * 1000)
    }

    /// The relative second holding unix millisecond `millis` (1 for any time before the start).
    pub fn rel_at_millis(&self, millis: u64) -> RelTime {
        let since = (millis + START_OFFSET * 1000).saturating_sub(self.started_millis) / 1000;
        since.clamp(1, u64::from(RelTime::MAX)) as RelTime
    }

    /// memcached's `realtime()`: converts a client exptime into relative time (0 = never).
    pub fn rel_exptime(&self, exptime: i64, now: RelTime) -> RelTime {
        rel_exptime(exptime, now, self.process_started)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// See [`Clock::rel_exptime`]; pure so it can be tested at the boundaries.
pub fn rel_exptime(exptime: i64, now: RelTime, process_started: u64) -> RelTime {
    if exptime == 0 {
        return 0;
    }
    if exptime < 0 {
        // Already expired: 1 is in the past for every `now`.
        return 1;
    }
    if exptime > REALTIME_MAXDELTA {
        let exptime = exptime as u64;
        if exptime <= process_started {
            return 1;
        }
        return (exptime - process_started).min(u64::from(u32::MAX)) as RelTime;
    }
    (exptime as u64 + u64::from(now)).min(u64::from(u32::MAX)) as RelTime
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_conversion_matches_memcached() {
        let started = 1_700_000_000;
        assert_eq!(rel_exptime(0, 100, started), 0);
        assert_eq!(rel_exptime(-1, 100, started), 1);
        assert_eq!(rel_exptime(10, 100, started), 110);
        assert_eq!(rel_exptime(REALTIME_MAXDELTA, 100, started), REALTIME_MAXDELTA as u32 + 100);
        // One second past 30 days is an absolute time, long in the past.
        assert_eq!(rel_exptime(REALTIME_MAXDELTA + 1, 100, started), 1);
        assert_eq!(rel_exptime(started as i64 + 500, 100, started), 500);
    }

    #[test]
    fn relative_seconds_map_to_unix_milliseconds() {
        let c = Clock::at_unix(1_700_000_000);
        assert_eq!(c.millis_at(START_OFFSET as RelTime + 3), 1_700_000_003_000);
        assert_eq!(c.rel_at_millis(1_700_000_003_000), START_OFFSET as RelTime + 3);
        assert_eq!(c.rel_at_millis(1_700_000_003_999), START_OFFSET as RelTime + 3);
        assert_eq!(c.rel_at_millis(1_000), 1);
    }

    #[test]
    fn clock_starts_past_zero() {
        let c = Clock::new();
        assert!(c.now() >= START_OFFSET as u32);
    }
}
