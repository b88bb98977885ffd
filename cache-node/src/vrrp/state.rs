//! One VRRP instance as a pure state machine: RFC 5798 §6.4 (and RFC 3768 for VRRPv2), with
//! keepalived's additions — `nopreempt`, `preempt_delay`, an initial `state MASTER`, and a
//! FAULT state while a tracked check or interface is down. Inputs go in with the time they
//! happened at; the actions come out in the order the driver must carry them out. No sockets,
//! no clocks, no addresses are touched here.
//!
//! One speed-up keeps to the RFC's timers: an instance keeps listening in FAULT, so when it
//! leaves FAULT its master-down timer runs from the last advert it heard rather than from
//! that moment. A master that said goodbye (priority 0) is replaced after the skew time, and
//! one that went silent longer than the master-down interval ago is replaced at once.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::packet::Version;

/// Priority 0 in an advertisement: the master is leaving (RFC 5798 §5.2.4).
pub const PRIORITY_STOP: u8 = 0;
/// Priority 255: the router owns the virtual addresses and takes over at once.
pub const PRIORITY_OWNER: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl State {
    /// The name keepalived passes to notify scripts.
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "STOP",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// What an instance is configured with.
#[derive(Debug, Clone)]
pub struct Params {
    pub version: Version,
    /// The priority to run with at start (tracking may change it later, see [`Input::Priority`]).
    pub priority: u8,
    pub advert_interval_cs: u16,
    /// keepalived's `state MASTER`: take the master role at start-up and let the election
    /// sort it out, instead of waiting for the master-down timer.
    pub start_as_master: bool,
    /// RFC 5798's Preempt_Mode; false with keepalived's `nopreempt`.
    pub preempt: bool,
    /// How long after start-up, and after first seeing a lower-priority master, a backup
    /// waits before it preempts.
    pub preempt_delay: Duration,
    /// The address this router advertises from: breaks ties between equal priorities.
    pub primary: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Startup,
    /// A valid advertisement for this instance (the driver has checked TTL, version, VRID,
    /// authentication and, for VRRPv2, the interval).
    Advert {
        src: IpAddr,
        priority: u8,
        interval_cs: u16,
    },
    /// The deadline given by [`Instance::deadline`] has passed.
    Timer,
    /// The priority after tracking weights changed.
    Priority(u8),
    /// A tracked check or interface without a weight failed (`true`) or recovered.
    Fault(bool),
    /// An interface the instance listens on went down: adverts may have been missed, so what
    /// was heard before counts for nothing when it leaves FAULT.
    Deaf,
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement carrying this priority.
    Send { priority: u8 },
    /// The state changed. Entering MASTER, the driver adds the virtual addresses and
    /// announces them; leaving it, removes them; and runs the notify hooks either way.
    Transition { from: State, to: State },
}

#[derive(Debug)]
pub struct Instance {
    params: Params,
    state: State,
    priority: u8,
    fault: bool,
    /// The master's advertisement interval as learnt from its adverts (VRRPv3).
    master_interval_cs: u16,
    deadline: Option<Instant>,
    started: Option<Instant>,
    /// Since when a lower-priority master has been heard without interruption.
    lower_master_since: Option<Instant>,
    /// When the master's advert was last heard in BACKUP or FAULT, and its priority; cleared
    /// on becoming master (the last advert is then our own) and when adverts may have been
    /// missed.
    last_advert: Option<(Instant, u8)>,
}

impl Instance {
    pub fn new(params: Params) -> Instance {
        Instance {
            priority: params.priority,
            master_interval_cs: params.advert_interval_cs,
            params,
            state: State::Initialize,
            fault: false,
            deadline: None,
            started: None,
            lower_master_since: None,
            last_advert: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// When the driver must feed [`Input::Timer`]: the advert timer in MASTER, the
    /// master-down timer in BACKUP, none otherwise.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        let mut actions = Vec::new();
        match input {
            Input::Startup => self.startup(now, &mut actions),
            Input::Advert { src, priority, interval_cs } => self.advert(now, src, priority, interval_cs, &mut actions),
            Input::Timer => self.timer(now, &mut actions),
            Input::Priority(priority) => self.priority = priority,
            Input::Fault(fault) => self.set_fault(now, fault, &mut actions),
            Input::Deaf => self.last_advert = None,
            Input::Shutdown => {
                if self.state == State::Master {
                    actions.push(Action::Send { priority: PRIORITY_STOP });
                }
                self.enter(State::Initialize, &mut actions);
                self.deadline = None;
            }
        }
        actions
    }

    fn startup(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        self.started = Some(now);
        if self.fault {
            self.enter(State::Fault, actions);
        } else if self.priority == PRIORITY_OWNER || self.params.start_as_master {
            self.become_master(now, actions);
        } else {
            self.become_backup(now, actions);
        }
    }

    fn advert(&mut self, now: Instant, src: IpAddr, priority: u8, interval_cs: u16, actions: &mut Vec<Action>) {
        match self.state {
            State::Master => {
                if priority == PRIORITY_STOP {
                    // Another master is leaving: reassert at once so backups do not take over.
                    actions.push(Action::Send { priority: self.priority });
                    self.deadline = Some(now + self.advert_interval());
                } else if priority > self.priority || (priority == self.priority && src > self.params.primary) {
                    self.learn_interval(interval_cs);
                    self.become_backup(now, actions);
                }
            }
            State::Backup => {
                self.last_advert = Some((now, priority));
                if priority == PRIORITY_STOP {
                    self.lower_master_since = None;
                    self.deadline = Some(now + self.skew());
                } else if !self.params.preempt || priority >= self.priority || !self.may_preempt(now) {
                    if priority >= self.priority {
                        self.lower_master_since = None;
                    }
                    self.learn_interval(interval_cs);
                    self.deadline = Some(now + self.master_down_interval());
                }
                // Otherwise a lower-priority master is ignored and the master-down timer runs out.
            }
            // Still listening: leaving FAULT, the master-down timer runs from this advert.
            State::Fault => {
                self.last_advert = Some((now, priority));
                self.learn_interval(interval_cs);
            }
            State::Initialize => {}
        }
    }

    fn timer(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.state {
            State::Master => {
                actions.push(Action::Send { priority: self.priority });
                self.deadline = Some(now + self.advert_interval());
            }
            State::Backup => self.become_master(now, actions),
            State::Initialize | State::Fault => self.deadline = None,
        }
    }

    fn set_fault(&mut self, now: Instant, fault: bool, actions: &mut Vec<Action>) {
        self.fault = fault;
        match (self.state, fault) {
            (State::Master, true) => {
                // Let the backup take over now rather than after its master-down interval.
                actions.push(Action::Send { priority: PRIORITY_STOP });
                self.enter(State::Fault, actions);
                self.deadline = None;
            }
            (State::Backup, true) => {
                self.enter(State::Fault, actions);
                self.deadline = None;
            }
            (State::Fault, false) => self.become_backup(now, actions),
            _ => {}
        }
    }

    /// keepalived's preempt_delay: counted from start-up and from the first advert of the
    /// lower-priority master.
    fn may_preempt(&mut self, now: Instant) -> bool {
        let since = *self.lower_master_since.get_or_insert(now);
        let started = self.started.unwrap_or(now);
        now >= started + self.params.preempt_delay && now >= since + self.params.preempt_delay
    }

    fn become_master(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.enter(State::Master, actions);
        actions.push(Action::Send { priority: self.priority });
        self.deadline = Some(now + self.advert_interval());
        self.lower_master_since = None;
        self.last_advert = None;
    }

    /// The master-down timer runs from the last advert heard (RFC 5798 §6.4.2: Skew_Time after
    /// a priority 0, Master_Down_Interval after any other), or from now if none was; a deadline
    /// already past makes the driver fire the timer at once.
    fn become_backup(&mut self, now: Instant, actions: &mut Vec<Action>) {
        self.enter(State::Backup, actions);
        self.deadline = Some(match self.last_advert {
            Some((at, PRIORITY_STOP)) => at + self.skew(),
            Some((at, _)) => at + self.master_down_interval(),
            None => now + self.master_down_interval(),
        });
    }

    fn enter(&mut self, to: State, actions: &mut Vec<Action>) {
        if self.state != to {
            actions.push(Action::Transition { from: self.state, to });
            self.state = to;
        }
    }

    /// VRRPv3 backups adopt the master's interval; VRRPv2 intervals must match (the driver
    /// drops adverts whose interval differs).
    fn learn_interval(&mut self, interval_cs: u16) {
        if self.params.version == Version::V3 && interval_cs > 0 {
            self.master_interval_cs = interval_cs;
        }
    }

    fn advert_interval(&self) -> Duration {
        centiseconds(u32::from(self.params.advert_interval_cs))
    }

    /// RFC 3768: (256 − priority) / 256 s; RFC 5798: ((256 − priority) × interval) / 256.
    fn skew(&self) -> Duration {
        let weight = 256 - u32::from(self.priority);
        match self.params.version {
            Version::V2 => Duration::from_micros(u64::from(weight) * 1_000_000 / 256),
            Version::V3 => Duration::from_micros(u64::from(weight) * u64::from(self.master_interval_cs) * 10_000 / 256),
        }
    }

    fn master_down_interval(&self) -> Duration {
        3 * centiseconds(u32::from(self.master_interval_cs)) + self.skew()
    }
}

fn centiseconds(cs: u32) -> Duration {
    Duration::from_millis(u64::from(cs) * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "192.0.2.2";

    fn params(priority: u8) -> Params {
        Params {
            version: Version::V3,
            priority,
            advert_interval_cs: 100,
            start_as_master: false,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary: ME.parse().unwrap(),
        }
    }

    fn advert(src: &str, priority: u8) -> Input {
        Input::Advert { src: src.parse().unwrap(), priority, interval_cs: 100 }
    }

    fn transition(from: State, to: State) -> Action {
        Action::Transition { from, to }
    }

    /// Starts a backup and lets its master-down timer run out.
    fn master(p: Params, t0: Instant) -> Instance {
        let mut i = Instance::new(p);
        i.handle(t0, Input::Startup);
        let at = i.deadline().unwrap();
        i.handle(at, Input::Timer);
        assert_eq!(i.state(), State::Master);
        i
    }

    #[test]
    fn a_backup_takes_over_after_the_master_down_interval() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100));
        assert_eq!(i.handle(t0, Input::Startup), vec![transition(State::Initialize, State::Backup)]);
        // 3 × 1 s + (256 − 100) × 1 s / 256 = 3.609375 s.
        assert_eq!(i.deadline(), Some(t0 + Duration::from_micros(3_609_375)));
        let at = i.deadline().unwrap();
        assert_eq!(
            i.handle(at, Input::Timer),
            vec![transition(State::Backup, State::Master), Action::Send { priority: 100 }]
        );
        assert_eq!(i.deadline(), Some(at + Duration::from_secs(1)));
        assert_eq!(i.handle(at + Duration::from_secs(1), Input::Timer), vec![Action::Send { priority: 100 }]);
    }

    #[test]
    fn vrrp_v2_skew_does_not_scale_with_the_interval() {
        let t0 = Instant::now();
        let mut i = Instance::new(Params { version: Version::V2, advert_interval_cs: 200, ..params(100) });
        i.handle(t0, Input::Startup);
        assert_eq!(i.deadline(), Some(t0 + Duration::from_secs(6) + Duration::from_micros(609_375)));
    }

    #[test]
    fn adverts_from_an_equal_or_higher_master_hold_a_backup_back() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100));
        i.handle(t0, Input::Startup);
        let t1 = t0 + Duration::from_secs(3);
        assert_eq!(i.handle(t1, advert("192.0.2.1", 100)), vec![]);
        assert_eq!(i.deadline(), Some(t1 + Duration::from_micros(3_609_375)));
        assert_eq!(i.state(), State::Backup);
    }

    #[test]
    fn a_backup_adopts_a_v3_masters_interval() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100));
        i.handle(t0, Input::Startup);
        i.handle(t0, Input::Advert { src: "192.0.2.1".parse().unwrap(), priority: 200, interval_cs: 25 });
        // 3 × 0.25 s + (256 − 100) × 0.25 s / 256.
        assert_eq!(i.deadline(), Some(t0 + Duration::from_micros(750_000 + 152_343)));
    }

    #[test]
    fn priority_zero_makes_a_backup_take_over_after_the_skew_only() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100));
        i.handle(t0, Input::Startup);
        i.handle(t0, advert("192.0.2.1", PRIORITY_STOP));
        assert_eq!(i.deadline(), Some(t0 + Duration::from_micros(609_375)));
    }

    #[test]
    fn with_preempt_a_lower_master_is_ignored_and_without_it_is_followed() {
        let t0 = Instant::now();
        let mut preempting = Instance::new(params(150));
        preempting.handle(t0, Input::Startup);
        let first = preempting.deadline();
        preempting.handle(t0 + Duration::from_secs(1), advert("192.0.2.1", 100));
        assert_eq!(preempting.deadline(), first, "the timer runs on, so it takes over");

        let mut nopreempt = Instance::new(Params { preempt: false, ..params(150) });
        nopreempt.handle(t0, Input::Startup);
        let t1 = t0 + Duration::from_secs(1);
        nopreempt.handle(t1, advert("192.0.2.1", 100));
        assert!(nopreempt.deadline() > first, "it keeps following the lower master");
    }

    #[test]
    fn preempt_delay_counts_from_the_first_lower_advert() {
        let t0 = Instant::now();
        let delay = Duration::from_secs(10);
        let mut i = Instance::new(Params { preempt_delay: delay, ..params(150) });
        i.handle(t0, Input::Startup);
        let t1 = t0 + Duration::from_secs(20);
        i.handle(t1, advert("192.0.2.1", 100));
        assert!(i.deadline() > Some(t1), "held back: the lower master was first heard just now");
        let t2 = t1 + delay;
        let held = i.deadline();
        i.handle(t2, advert("192.0.2.1", 100));
        assert_eq!(i.deadline(), held, "the delay has passed: the advert is ignored");
    }

    #[test]
    fn a_master_yields_to_a_higher_priority_or_an_equal_one_with_a_higher_address() {
        let t0 = Instant::now();
        let mut i = master(params(100), t0);
        assert_eq!(i.handle(t0, advert("192.0.2.1", 100)), vec![], "equal priority, lower address");
        assert_eq!(i.handle(t0, advert("192.0.2.1", 99)), vec![]);
        assert_eq!(i.handle(t0, advert("192.0.2.3", 100)), vec![transition(State::Master, State::Backup)]);

        let mut i = master(params(100), t0);
        assert_eq!(i.handle(t0, advert("192.0.2.1", 101)), vec![transition(State::Master, State::Backup)]);
    }

    #[test]
    fn a_master_reasserts_itself_when_another_master_leaves() {
        let t0 = Instant::now();
        let mut i = master(params(100), t0);
        assert_eq!(i.handle(t0, advert("192.0.2.9", PRIORITY_STOP)), vec![Action::Send { priority: 100 }]);
        assert_eq!(i.state(), State::Master);
    }

    #[test]
    fn an_owner_or_state_master_takes_the_role_at_start_up() {
        let t0 = Instant::now();
        for p in [params(PRIORITY_OWNER), Params { start_as_master: true, ..params(100) }] {
            let priority = p.priority;
            let mut i = Instance::new(p);
            assert_eq!(
                i.handle(t0, Input::Startup),
                vec![transition(State::Initialize, State::Master), Action::Send { priority }]
            );
        }
    }

    #[test]
    fn a_fault_drops_the_master_role_with_priority_zero_and_recovers_as_backup() {
        let t0 = Instant::now();
        let mut i = master(params(100), t0);
        assert_eq!(
            i.handle(t0, Input::Fault(true)),
            vec![Action::Send { priority: PRIORITY_STOP }, transition(State::Master, State::Fault)]
        );
        assert_eq!(i.deadline(), None);
        assert_eq!(i.handle(t0, advert("192.0.2.1", 50)), vec![], "FAULT ignores adverts");
        assert_eq!(i.handle(t0, Input::Fault(false)), vec![transition(State::Fault, State::Backup)]);
        assert!(i.deadline().is_some());
    }

    /// A backup in FAULT whose check recovers (its cache was promoted).
    fn faulted_backup(t0: Instant) -> Instance {
        let mut i = Instance::new(params(100));
        i.handle(t0, Input::Fault(true));
        i.handle(t0, Input::Startup);
        assert_eq!(i.state(), State::Fault);
        i
    }

    #[test]
    fn leaving_fault_the_master_down_timer_runs_from_the_last_advert() {
        let t0 = Instant::now();
        let mut i = faulted_backup(t0);
        let heard = t0 + Duration::from_secs(5);
        assert_eq!(i.handle(heard, advert("192.0.2.1", 100)), vec![], "FAULT listens but does not act");
        let t1 = heard + Duration::from_secs(1);
        assert_eq!(i.handle(t1, Input::Fault(false)), vec![transition(State::Fault, State::Backup)]);
        assert_eq!(i.deadline(), Some(heard + Duration::from_micros(3_609_375)));
    }

    #[test]
    fn leaving_fault_long_after_the_last_advert_takes_over_at_once() {
        let t0 = Instant::now();
        let mut i = faulted_backup(t0);
        i.handle(t0, advert("192.0.2.1", 100));
        let t1 = t0 + Duration::from_secs(10);
        i.handle(t1, Input::Fault(false));
        assert!(i.deadline().unwrap() <= t1, "the master has been silent for longer than master-down");
        assert_eq!(
            i.handle(t1, Input::Timer),
            vec![transition(State::Backup, State::Master), Action::Send { priority: 100 }]
        );
    }

    #[test]
    fn leaving_fault_after_a_goodbye_takes_over_after_the_skew_from_it() {
        let t0 = Instant::now();
        let mut i = faulted_backup(t0);
        i.handle(t0, advert("192.0.2.1", 100));
        let bye = t0 + Duration::from_millis(500);
        i.handle(bye, advert("192.0.2.1", PRIORITY_STOP));
        i.handle(bye + Duration::from_millis(20), Input::Fault(false));
        assert_eq!(i.deadline(), Some(bye + Duration::from_micros(609_375)));
    }

    #[test]
    fn a_v3_interval_heard_in_fault_is_adopted() {
        let t0 = Instant::now();
        let mut i = faulted_backup(t0);
        i.handle(t0, Input::Advert { src: "192.0.2.1".parse().unwrap(), priority: 100, interval_cs: 10 });
        i.handle(t0, Input::Fault(false));
        // 3 × 0.1 s + (256 − 100) × 0.1 s / 256.
        assert_eq!(i.deadline(), Some(t0 + Duration::from_micros(300_000 + 60_937)));
    }

    #[test]
    fn after_going_deaf_or_being_master_nothing_heard_counts() {
        let t0 = Instant::now();
        let mut i = faulted_backup(t0);
        i.handle(t0, advert("192.0.2.1", 100));
        i.handle(t0, Input::Deaf);
        let t1 = t0 + Duration::from_secs(10);
        i.handle(t1, Input::Fault(false));
        assert_eq!(i.deadline(), Some(t1 + Duration::from_micros(3_609_375)), "a full master-down interval");

        let mut m = master(params(100), t0);
        m.handle(t0, advert("192.0.2.9", PRIORITY_STOP));
        m.handle(t0, Input::Fault(true));
        m.handle(t1, Input::Fault(false));
        assert_eq!(m.deadline(), Some(t1 + Duration::from_micros(3_609_375)), "its own adverts were the last");
    }

    #[test]
    fn a_fault_before_start_up_starts_in_fault() {
        let t0 = Instant::now();
        let mut i = Instance::new(params(100));
        i.handle(t0, Input::Fault(true));
        assert_eq!(i.handle(t0, Input::Startup), vec![transition(State::Initialize, State::Fault)]);
    }

    #[test]
    fn shutdown_sends_priority_zero_only_from_master() {
        let t0 = Instant::now();
        let mut i = master(params(100), t0);
        assert_eq!(
            i.handle(t0, Input::Shutdown),
            vec![Action::Send { priority: PRIORITY_STOP }, transition(State::Master, State::Initialize)]
        );
        let mut b = Instance::new(params(100));
        b.handle(t0, Input::Startup);
        assert_eq!(b.handle(t0, Input::Shutdown), vec![transition(State::Backup, State::Initialize)]);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn a_new_priority_is_advertised() {
        let t0 = Instant::now();
        let mut i = master(params(100), t0);
        i.handle(t0, Input::Priority(80));
        assert_eq!(i.handle(t0 + Duration::from_secs(1), Input::Timer), vec![Action::Send { priority: 80 }]);
    }
}
