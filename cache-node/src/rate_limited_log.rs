//! Logging a condition that repeats in a loop at most once per interval: an accept loop out of
//! file descriptors fails on every try until a connection closes, and a warning for each
//! would flood the log with identical lines.

use std::time::{Duration, Instant};

/// Lets one event per interval through to the log and counts the others: on each failure,
/// `if let Some(suppressed) = errors.event(Instant::now()) { warn!(suppressed, ...) }`.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    pub const fn new(interval: Duration) -> Self {
        Self { interval, last_logged: None, suppressed: 0 }
    }

    /// Records an event that happened at `now`. `Some(n)` means log it, `n` being how many
    /// events were left out since the last one logged; `None` means leave it out.
    pub fn event(&mut self, now: Instant) -> Option<u64> {
        let due = self.last_logged.is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_interval_with_the_count_left_out() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut log = RateLimitedLog::new(Duration::from_secs(1));

        assert_eq!(log.event(at(0)), Some(0), "the first event is logged");
        assert_eq!(log.event(at(1)), None);
        assert_eq!(log.event(at(500)), None);
        assert_eq!(log.event(at(999)), None);
        assert_eq!(log.event(at(1000)), Some(3), "one interval later, with the three left out");
        assert_eq!(log.event(at(1001)), None);
        // After a quiet spell the next event is logged at once and carries the earlier count.
        assert_eq!(log.event(at(60_000)), Some(1));
        assert_eq!(log.event(at(61_000)), Some(0));
    }

    #[test]
    fn an_earlier_instant_than_the_last_logged_is_left_out() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut log = RateLimitedLog::new(Duration::from_secs(1));
        assert_eq!(log.event(start), Some(0));
        assert_eq!(log.event(start - Duration::from_secs(5)), None);
        assert_eq!(log.event(start + Duration::from_secs(1)), Some(1));
    }
}
