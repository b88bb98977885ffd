//! What tracking does to an instance, as keepalived defines it: a check passes or fails after
//! `rise`/`fall` results in a row; a tracked check or interface with a positive weight adds it
//! to the priority while up, a negative one adds it while down, and one without a weight puts
//! the instance in FAULT while down. Pure: the results come from [`super::script`] and netlink.

use super::state::PRIORITY_OWNER;

/// A check's verdict over its recent results: `fall` failures in a row make it fail, `rise`
/// successes in a row make it pass again.
#[derive(Debug, Clone)]
pub struct Check {
    fall: u32,
    rise: u32,
    up: bool,
    streak: u32,
}

impl Check {
    /// A check starts up, as keepalived's do unless told `init_fail`.
    pub fn new(fall: u32, rise: u32) -> Check {
        Check { fall: fall.max(1), rise: rise.max(1), up: true, streak: 0 }
    }

    pub fn up(&self) -> bool {
        self.up
    }

    /// Records one result; true when the verdict changed.
    pub fn record(&mut self, success: bool) -> bool {
        if success == self.up {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        if self.streak >= if self.up { self.fall } else { self.rise } {
            self.up = success;
            self.streak = 0;
            return true;
        }
        false
    }
}

/// One tracked thing (a check or an interface) as it bears on the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    pub weight: i32,
    pub up: bool,
}

/// The instance's priority and fault given its tracked things. The address owner (255) keeps
/// its priority, as in keepalived; any other priority stays within 1..=254.
pub fn effective(base: u8, tracked: &[Tracked]) -> (u8, bool) {
    let fault = tracked.iter().any(|t| t.weight == 0 && !t.up);
    if base == PRIORITY_OWNER {
        return (base, fault);
    }
    let delta: i64 =
        tracked.iter().filter(|t| (t.weight > 0 && t.up) || (t.weight < 0 && !t.up)).map(|t| i64::from(t.weight)).sum();
    let priority = (i64::from(base) + delta).clamp(1, i64::from(PRIORITY_OWNER) - 1);
    (u8::try_from(priority).unwrap_or(1), fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_changes_verdict_after_fall_failures_and_rise_successes_in_a_row() {
        let mut c = Check::new(3, 2);
        assert!(c.up());
        assert!(!c.record(false));
        assert!(!c.record(false));
        assert!(!c.record(true), "a success breaks the run of failures");
        assert!(!c.record(false));
        assert!(!c.record(false));
        assert!(c.record(false));
        assert!(!c.up());
        assert!(!c.record(true));
        assert!(c.record(true));
        assert!(c.up());
    }

    #[test]
    fn fall_and_rise_of_zero_mean_one() {
        let mut c = Check::new(0, 0);
        assert!(c.record(false));
        assert!(c.record(true));
    }

    #[test]
    fn weights_move_the_priority_and_unweighted_failures_fault() {
        let up = |weight| Tracked { weight, up: true };
        let down = |weight| Tracked { weight, up: false };
        assert_eq!(effective(150, &[down(-20)]), (130, false), "the seed's chk_memcached");
        assert_eq!(effective(150, &[up(-20)]), (150, false));
        assert_eq!(effective(100, &[up(10), down(10)]), (110, false));
        assert_eq!(effective(100, &[down(0)]), (100, true));
        assert_eq!(effective(250, &[up(50)]), (254, false));
        assert_eq!(effective(10, &[down(-50)]), (1, false));
        assert_eq!(effective(255, &[down(-50), down(0)]), (255, true));
    }
}
