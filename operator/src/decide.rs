//! What to do about a pair, as a pure function of what was observed. The data plane fails
//! over by itself; these decisions only bring the pair back to two members, roll spec changes,
//! carry out requested switchovers and drains, and they never move the master role back.
//!
//! Fencing: a member's readiness probe says only what the member believes. A master whose
//! node died stays Ready (no kubelet recomputes it), and in a partition both members believe
//! they are master. So a member superseded by a higher term is fenced through its readiness
//! gate (and its Ready condition, for a dead kubelet's sake), and un-fenced once it follows the
//! current master, so that a later failover routes without the operator again.
//!
//! Requests in the spec: `spec.fenced` holds members out of client routing through the same
//! gate (a master hands its role to an in-sync slave first, and is never fenced while it is the
//! only one that can serve); `spec.reseed` deletes a member's pod so that it is re-created as a
//! slave with a full sync (a master switches over first).
//!
//! One step at a time: each reconcile takes at most one disruptive action (delete, switch
//! over) and only while the pair is fully replicating, so the members are never both down.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::crd::Phase;
use crate::observe::{MemberView, PodState, Role};
use crate::pair::Member;

/// Everything a decision reads.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub a: Option<&'a MemberView>,
    pub b: Option<&'a MemberView>,
    /// The revision the members should run.
    pub revision: &'a str,
    /// The member the status last named master.
    pub last_master: Option<Member>,
    /// Each member's self-promotions as the status last recorded them.
    pub last_promotions: BTreeMap<Member, u64>,
    /// `spec.switchover`, when it differs from the value last acted on.
    pub switchover_requested: Option<&'a str>,
    /// `spec.reseed`, when its token differs from the one last acted on.
    pub reseed_requested: Option<(Member, &'a str)>,
    /// `spec.fenced`: the members to keep out of client routing.
    pub fenced: &'a [Member],
    pub replication_port: u16,
    pub node_lost_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the member's pod.
    Create { member: Member, start: Start },
    /// Delete the member's pod (it ended, or it runs an old spec); it is re-created next.
    Delete { member: Member, reason: &'static str },
    /// Delete a pod stuck on a lost node at once (grace period 0).
    ForceDelete { member: Member },
    /// Hand the master role from `from` to its slave.
    Switchover { from: Member, reason: SwitchoverReason },
    /// Take the member out of the client Service: its readiness gate and Ready go False.
    Fence { member: Member, reason: &'static str },
    /// Let the member's readiness probe decide again: its readiness gate goes True.
    Unfence { member: Member },
    /// Delete the member's pod at `spec.reseed`'s request, to be re-created next as a slave of
    /// the master with a full sync; `token` goes to `status.reseed`.
    Reseed { member: Member, token: String },
}

/// Why a member named by `spec.fenced` is fenced.
pub const FENCE_REQUESTED: &str = "spec.fenced names it";

impl Action {
    /// Fencing and un-fencing: taken before anything slower, since clients may be reaching a
    /// dead master meanwhile.
    pub fn is_routing(&self) -> bool {
        matches!(self, Action::Fence { .. } | Action::Unfence { .. })
    }
}

/// How a created member starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Alone: it becomes master.
    Master,
    /// As a slave of the master at `peer` (its replication address). `reseed`: the pair had a
    /// master before, so this member comes back after it failed or was rolled.
    Slave { peer: String, reseed: bool },
}

impl Start {
    pub fn peer(&self) -> Option<&str> {
        match self {
            Start::Master => None,
            Start::Slave { peer, .. } => Some(peer),
        }
    }
}

/// Why the master role is handed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwitchoverReason {
    /// `spec.switchover` asked for it with `token`; `status.switchover` records the token once
    /// the switchover is done, so that it is carried out once.
    Requested { token: String },
    /// The master's VRRP sidecar ended: the virtual IP may have gone with it.
    SidecarEnded,
    /// The master's node is being drained.
    NodeDraining,
    /// The eviction webhook refused to evict the master.
    EvictionRequested,
    /// The master runs an old spec and is rolled next, as a slave.
    Rolling,
    /// `spec.fenced` names the master: it hands its role over, then it is fenced.
    Fencing,
    /// `spec.reseed` names the master: it hands its role over, then it is re-seeded.
    Reseeding,
}

impl fmt::Display for SwitchoverReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwitchoverReason::Requested { .. } => "requested",
            SwitchoverReason::SidecarEnded => "its VRRP sidecar ended",
            SwitchoverReason::NodeDraining => "its node is being drained",
            SwitchoverReason::EvictionRequested => "its eviction was requested",
            SwitchoverReason::Rolling => "rolling the master: switching over first",
            SwitchoverReason::Fencing => "spec.fenced names it: switching over before fencing it",
            SwitchoverReason::Reseeding => "spec.reseed names it: switching over before re-seeding it",
        })
    }
}

/// The values of the `cachepair.io/role` label (and of the `role` metric).
pub const ROLE_LABELS: [&str; 4] = ["master", "slave", "starting", "down"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub actions: Vec<Action>,
    pub phase: Phase,
    pub master: Option<Member>,
    pub slave: Option<Member>,
    /// The slave holds a complete copy and follows the master.
    pub replicating: bool,
    /// The master changed since the last status without a switchover, and the new master
    /// promoted itself: a failover.
    pub failover: bool,
    /// The master changed since the last status because the old master handed its role over
    /// on its own (its pod was deleted or stopped): planned, not a failover.
    pub handover: bool,
    /// Why the pair is not fully replicating, for the conditions.
    pub message: String,
    /// When to look again.
    pub requeue: Duration,
}

impl Decision {
    /// A switchover was carried out: the roles swapped, and the status follows at once, so
    /// that the next round does not read it as a failover.
    pub fn switched_over(&mut self) {
        self.master = self.master.map(Member::other);
        self.slave = self.slave.map(Member::other);
    }

    /// The `cachepair.io/role` label of each observed member.
    pub fn role_labels(&self, views: &BTreeMap<Member, MemberView>) -> BTreeMap<Member, &'static str> {
        let label = |member: Member, view: &MemberView| {
            if self.master == Some(member) {
                "master"
            } else if self.slave == Some(member) {
                // An ex-master that just switched over still reads as master this round.
                match view.role {
                    None | Some(Role::Starting) => "starting",
                    Some(Role::Slave | Role::Master) => "slave",
                }
            } else {
                "down"
            }
        };
        views.iter().map(|(&member, view)| (member, label(member, view))).collect()
    }
}

/// Whether a member's pod is to be labelled `role`: it does not say so yet, and it is not on
/// its way out.
pub fn relabel(view: &MemberView, role: &str) -> bool {
    !matches!(view.state, PodState::Exited | PodState::Terminating) && view.role_label.as_deref() != Some(role)
}

/// Soon, while something is in motion; otherwise the watches bring changes.
const BUSY: Duration = Duration::from_secs(1);
const IDLE: Duration = Duration::from_secs(30);

pub fn decide(input: &Input<'_>) -> Decision {
    let view = |m: Member| match m {
        Member::A => input.a,
        Member::B => input.b,
    };
    let mut d = Decision {
        actions: Vec::new(),
        phase: Phase::Pending,
        master: None,
        slave: None,
        replicating: false,
        failover: false,
        handover: false,
        message: String::new(),
        requeue: BUSY,
    };

    // A superseded member's belief that it is master does not count.
    let masters: Vec<Member> = Member::BOTH
        .into_iter()
        .filter(|&m| view(m).is_some_and(|v| v.is(Role::Master) && !superseded(v, view(m.other()))))
        .collect();
    // Routing first: a client may be reaching a dead or superseded master meanwhile. A member
    // `spec.fenced` names is fenced unless it is the one master: that one hands its role over
    // first (see `with_master`), and keeps serving while it cannot.
    for m in Member::BOTH {
        let requested = input.fenced.contains(&m) && masters[..] != [m];
        if let Some(action) = fencing(m, view(m), view(m.other()), requested) {
            d.actions.push(action);
        }
    }
    // Pods on lost nodes next: nothing else can happen to them.
    for m in Member::BOTH {
        if let Some(v) = view(m)
            && v.state != PodState::Exited
            && v.node_lost_for.is_some_and(|t| t >= input.node_lost_timeout)
        {
            d.actions.push(Action::ForceDelete { member: m });
        }
    }

    match masters[..] {
        [master] => with_master(input, master, view(master.other()), &mut d),
        [_, _] => {
            // Both answer as master (a healed partition): the members merge on their own and
            // one steps down; nothing to do but wait.
            d.phase = Phase::Degraded;
            d.message = "both members report master; they are merging".into();
        }
        _ => without_master(input, &view, &mut d),
    }
    d
}

/// `member` is superseded when the other member answers as master with a higher term than
/// `member` reports (as master; a slave follows it anyway), or last reported when it does not
/// answer; or when it does not answer from a lost node while the other is master. A higher
/// term took over more recently, and keeps the role when the two meet again.
pub fn superseded(member: &MemberView, other: Option<&MemberView>) -> bool {
    let Some(term) = other.filter(|o| o.answered && o.is(Role::Master)).and_then(|o| o.term) else {
        return false;
    };
    if member.state == PodState::Exited {
        return false;
    }
    let older = member.term.is_some_and(|t| t < term);
    if member.answered { member.role == Some(Role::Master) && older } else { older || member.node_lost_for.is_some() }
}

/// Whether `member`'s readiness gate must change. Unanswered members keep their gate, except
/// that a missing one is set True (a new pod): only evidence fences, only an answer unfences.
/// A pod being deleted is no endpoint anyway (EndpointSlices mark it terminating).
/// `requested`: `spec.fenced` names it and it is not the one master, so its gate stays closed.
fn fencing(member: Member, view: Option<&MemberView>, other: Option<&MemberView>, requested: bool) -> Option<Action> {
    let v = view.filter(|v| matches!(v.state, PodState::Pending | PodState::Running))?;
    if superseded(v, other) {
        // Ready too: on a dead node no kubelet recomputes it from the gate.
        let reason = if v.answered { "a higher term is master" } else { "it does not answer; a higher term is master" };
        return (v.serving != Some(false) || v.ready).then_some(Action::Fence { member, reason });
    }
    if requested {
        return (v.serving != Some(false) || v.ready).then_some(Action::Fence { member, reason: FENCE_REQUESTED });
    }
    let unfence = match v.serving {
        None => true,
        Some(false) => v.answered,
        Some(true) => false,
    };
    unfence.then_some(Action::Unfence { member })
}

fn with_master(input: &Input<'_>, master: Member, other: Option<&MemberView>, d: &mut Decision) {
    let master_view = match master {
        Member::A => input.a,
        Member::B => input.b,
    }
    .expect("a master has a view");
    d.master = Some(master);
    if input.last_master.is_some_and(|last| last != master) {
        // The new master counts only the promotions it made itself: unchanged since it was
        // recorded as slave, it was handed the role.
        let handed = input.last_promotions.get(&master).is_some_and(|&before| master_view.promotions == Some(before));
        (d.failover, d.handover) = (!handed, handed);
    }
    let lost = |v: &MemberView| v.node_lost_for.is_some();
    match other {
        None => {
            // A new pair creates its second member; an established one re-seeds it.
            d.phase = if input.last_master.is_none() { Phase::Pending } else { Phase::Degraded };
            d.message = format!("creating {} as a slave", name(master.other()));
            if let Some(peer) = master_view.ip.as_deref().map(|ip| repl_address(ip, input.replication_port)) {
                let start = Start::Slave { peer, reseed: input.last_master.is_some() };
                d.actions.push(Action::Create { member: master.other(), start });
            }
        }
        Some(v) if v.state == PodState::Exited => {
            d.phase = Phase::Degraded;
            d.message = format!("{} ended; re-seeding it as a slave", name(master.other()));
            d.actions.push(Action::Delete { member: master.other(), reason: "ended" });
        }
        Some(v) if superseded(v, Some(master_view)) => {
            d.phase = Phase::Degraded;
            d.message = format!(
                "{} is superseded by the master's higher term and fenced; it rejoins as slave once reachable",
                name(master.other())
            );
        }
        Some(v) if v.state == PodState::Terminating || lost(v) => {
            d.phase = Phase::Degraded;
            d.message = format!("{} is going away; it will be re-seeded", name(master.other()));
        }
        Some(v) if v.sidecar_ended && v.state == PodState::Running => {
            // The slave could never take the virtual IP over: re-seed it like an ended member.
            d.phase = Phase::Degraded;
            d.message = format!("the VRRP sidecar of {} ended; re-seeding it", name(master.other()));
            d.actions.push(Action::Delete { member: master.other(), reason: "its VRRP sidecar ended" });
        }
        Some(v) if v.is(Role::Slave) && v.synced => {
            d.slave = Some(master.other());
            d.replicating = true;
            d.phase = Phase::Ready;
            d.requeue = IDLE;
            // Disruptive steps happen only from here: the pair is whole.
            if master_view.sidecar_ended {
                // The virtual IP may have gone with it: hand the master role to the member
                // whose sidecar runs; the ex-master is re-seeded next.
                d.phase = Phase::Degraded;
                d.message = format!("the VRRP sidecar of {} ended; switching over", name(master));
                d.actions.push(Action::Switchover { from: master, reason: SwitchoverReason::SidecarEnded });
                d.requeue = BUSY;
            } else if let Some(reason) = leaving(master_view)
                && !v.draining
            {
                // The budget keeps the master until it is the slave; the evictor retries then.
                d.actions.push(Action::Switchover { from: master, reason });
                d.requeue = BUSY;
            } else if v.revision.as_deref() != Some(input.revision) {
                d.actions.push(Action::Delete { member: master.other(), reason: "rolling the slave to the new spec" });
                d.requeue = BUSY;
            } else if master_view.revision.as_deref() != Some(input.revision) {
                d.actions.push(Action::Switchover { from: master, reason: SwitchoverReason::Rolling });
                d.requeue = BUSY;
            } else if input.fenced.contains(&master) && !input.fenced.contains(&master.other()) {
                d.actions.push(Action::Switchover { from: master, reason: SwitchoverReason::Fencing });
                d.requeue = BUSY;
            } else if input.reseed_requested.is_some_and(|(m, _)| m == master)
                && !input.fenced.contains(&master.other())
            {
                d.actions.push(Action::Switchover { from: master, reason: SwitchoverReason::Reseeding });
                d.requeue = BUSY;
            } else if let Some(token) = input.switchover_requested {
                let reason = SwitchoverReason::Requested { token: token.into() };
                d.actions.push(Action::Switchover { from: master, reason });
                d.requeue = BUSY;
            }
        }
        Some(_) => {
            d.slave = Some(master.other());
            d.phase = Phase::Syncing;
            d.message = format!("{} is starting or taking its full copy", name(master.other()));
        }
    }
    if !d.replicating && input.switchover_requested.is_some() {
        d.message.push_str("; the switchover waits until the slave is in sync");
    }
    requests(input, master, master_view, other, d);
}

/// `spec.reseed` of the member that is not master, and what waits of the requests naming the
/// master: it is fenced or re-seeded only after it handed its role to an in-sync slave that
/// `spec.fenced` does not name, so that the pair keeps serving without loss.
fn requests(input: &Input<'_>, master: Member, master_view: &MemberView, other: Option<&MemberView>, d: &mut Decision) {
    let switching =
        |r: SwitchoverReason| d.actions.iter().any(|a| matches!(a, Action::Switchover { reason, .. } if *reason == r));
    let (fence_switch, reseed_switch) = (switching(SwitchoverReason::Fencing), switching(SwitchoverReason::Reseeding));
    if input.fenced.contains(&master) && !fence_switch {
        note(
            d,
            format!(
                "spec.fenced names {}, the master: it keeps serving until it can hand its role to an in-sync \
                 slave that spec.fenced does not name",
                name(master)
            ),
        );
    }
    let Some((member, token)) = input.reseed_requested else { return };
    if member == master {
        if !reseed_switch {
            note(
                d,
                format!(
                    "spec.reseed names {}, the master: it is re-seeded once it has handed its role to an in-sync \
                     slave that spec.fenced does not name",
                    name(master)
                ),
            );
        }
        return;
    }
    // One disruptive step at a time; a member already on its way out is re-created anyway, and
    // one that is starting is re-seeded once its pod exists.
    let busy = d.actions.iter().any(|a| !a.is_routing());
    match other {
        Some(v)
            if !busy
                && matches!(v.state, PodState::Pending | PodState::Running)
                && v.node_lost_for.is_none()
                && !superseded(v, Some(master_view)) =>
        {
            d.actions.push(Action::Reseed { member, token: token.into() });
            d.requeue = BUSY;
        }
        _ => note(d, format!("re-seeding {} waits until its pod runs", name(member))),
    }
}

/// Adds `text` to the decision's message.
fn note(d: &mut Decision, text: String) {
    if !d.message.is_empty() {
        d.message.push_str("; ");
    }
    d.message.push_str(&text);
}

fn without_master<'a>(input: &Input<'a>, view: &dyn Fn(Member) -> Option<&'a MemberView>, d: &mut Decision) {
    d.phase = if input.last_master.is_some() { Phase::Down } else { Phase::Pending };
    let alive = |v: &MemberView| matches!(v.state, PodState::Pending | PodState::Running);
    if Member::BOTH.into_iter().any(|m| view(m).is_some_and(alive)) {
        // A slave takes over within a second, a new member is starting: wait for it.
        d.message = "waiting for a member to serve as master".into();
        return;
    }
    d.message = "no member runs: starting a new master".into();
    // Nothing runs: clear what ended, then start one member alone; it becomes master, and the
    // other joins it on a later round. The member that was master last goes first.
    let first = input.last_master.unwrap_or(Member::A);
    for m in [first, first.other()] {
        match view(m) {
            Some(v) if v.state == PodState::Exited => {
                d.actions.push(Action::Delete { member: m, reason: "ended" });
            }
            Some(_) => {}
            None => {
                if !d.actions.iter().any(|a| matches!(a, Action::Create { .. })) && view(m.other()).is_none() {
                    d.actions.push(Action::Create { member: m, start: Start::Master });
                }
            }
        }
    }
}

/// Why this member is to be evicted, if it is: a master then hands its role over first.
fn leaving(v: &MemberView) -> Option<SwitchoverReason> {
    if v.draining {
        Some(SwitchoverReason::NodeDraining)
    } else if v.eviction_requested {
        Some(SwitchoverReason::EvictionRequested)
    } else {
        None
    }
}

/// `host:port` for `-x`, with IPv6 hosts in brackets.
pub fn repl_address(ip: &str, port: u16) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

fn name(m: Member) -> String {
    format!("member {}", m.suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REV: &str = "r2";

    fn member(state: PodState, role: Option<Role>, ip: &str) -> MemberView {
        MemberView {
            state,
            ip: Some(ip.into()),
            node: Some("n".into()),
            revision: Some(REV.into()),
            link_tls: crate::render::replication_tls::LinkTls::On,
            role,
            answered: role.is_some(),
            term: Some(1),
            synced: true,
            node_lost_for: None,
            draining: false,
            eviction_requested: false,
            serving: Some(true),
            ready: role == Some(Role::Master),
            role_label: None,
            sidecar_ended: false,
            offset: None,
            lag_bytes: None,
            promotions: None,
        }
    }

    /// A member whose admin listener does not answer, last heard of at `term`.
    fn silent(mut v: MemberView, term: Option<u64>) -> MemberView {
        v.answered = false;
        v.term = term;
        v
    }

    fn master() -> MemberView {
        member(PodState::Running, Some(Role::Master), "10.0.0.1")
    }

    fn slave() -> MemberView {
        member(PodState::Running, Some(Role::Slave), "10.0.0.2")
    }

    fn input<'a>(a: Option<&'a MemberView>, b: Option<&'a MemberView>) -> Input<'a> {
        Input {
            a,
            b,
            revision: REV,
            last_master: Some(Member::A),
            last_promotions: BTreeMap::new(),
            switchover_requested: None,
            reseed_requested: None,
            fenced: &[],
            replication_port: 11212,
            node_lost_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_new_pair_starts_one_master_then_its_slave() {
        let mut i = input(None, None);
        i.last_master = None;
        let d = decide(&i);
        assert_eq!(d.actions, [Action::Create { member: Member::A, start: Start::Master }]);
        assert_eq!(d.phase, Phase::Pending);

        let starting = member(PodState::Pending, None, "");
        let d = decide(&Input { a: Some(&starting), ..i.clone() });
        assert!(d.actions.is_empty(), "the second member waits for a master: {:?}", d.actions);

        let m = master();
        let d = decide(&Input { a: Some(&m), ..i });
        let start = Start::Slave { peer: "10.0.0.1:11212".into(), reseed: false };
        assert_eq!(d.actions, [Action::Create { member: Member::B, start }]);
        assert_eq!((d.master, d.phase, d.failover), (Some(Member::A), Phase::Pending, false));
    }

    #[test]
    fn a_whole_pair_in_sync_is_ready_and_left_alone() {
        let (m, s) = (master(), slave());
        let d = decide(&input(Some(&m), Some(&s)));
        assert!(d.actions.is_empty());
        assert_eq!((d.phase, d.master, d.slave, d.replicating), (Phase::Ready, Some(Member::A), Some(Member::B), true));
        assert_eq!(d.requeue, IDLE);
    }

    #[test]
    fn an_ended_vrrp_sidecar_re_seeds_the_slave_and_switches_the_master_over() {
        let m = master();
        let mut s = slave();
        s.sidecar_ended = true;
        let d = decide(&input(Some(&m), Some(&s)));
        assert_eq!(d.actions, [Action::Delete { member: Member::B, reason: "its VRRP sidecar ended" }]);
        assert_eq!(d.phase, Phase::Degraded);

        let mut m = master();
        m.sidecar_ended = true;
        let s = slave();
        let d = decide(&input(Some(&m), Some(&s)));
        assert_eq!(d.actions, [Action::Switchover { from: Member::A, reason: SwitchoverReason::SidecarEnded }]);
        assert_eq!(d.phase, Phase::Degraded);

        // Not before the slave is in sync: no switchover to a member without the data.
        let mut syncing = slave();
        syncing.synced = false;
        assert!(decide(&input(Some(&m), Some(&syncing))).actions.is_empty());
    }

    #[test]
    fn a_slave_taking_its_copy_is_syncing() {
        let m = master();
        let mut s = slave();
        s.synced = false;
        let d = decide(&input(Some(&m), Some(&s)));
        assert_eq!((d.phase, d.replicating), (Phase::Syncing, false));
        assert!(d.actions.is_empty());
    }

    #[test]
    fn a_master_role_handed_over_is_no_failover() {
        // b is master now; the status recorded both as having promoted themselves 0 times.
        let leaving = member(PodState::Terminating, Some(Role::Slave), "10.0.0.1");
        let promoted =
            |n| MemberView { promotions: Some(n), ..member(PodState::Running, Some(Role::Master), "10.0.0.2") };
        let recorded = BTreeMap::from([(Member::A, 0), (Member::B, 0)]);
        let (handed, took_over) = (promoted(0), promoted(1));
        let i = Input { last_promotions: recorded, ..input(Some(&leaving), Some(&handed)) };
        let d = decide(&i);
        assert_eq!((d.master, d.failover, d.handover), (Some(Member::B), false, true));

        // b promoted itself (it lost a): a failover, whatever became of a's pod.
        let d = decide(&Input { b: Some(&took_over), ..i.clone() });
        assert_eq!((d.failover, d.handover), (true, false));

        // Nothing recorded (an older operator's status): counted as a failover, as before.
        let d = decide(&Input { last_promotions: BTreeMap::new(), ..i });
        assert_eq!((d.failover, d.handover), (true, false));
    }

    #[test]
    fn after_a_failover_the_ex_master_is_re_seeded_as_slave_of_the_new_master() {
        // b took over; a's process died (its pod ended).
        let dead = member(PodState::Exited, None, "10.0.0.1");
        let new_master = member(PodState::Running, Some(Role::Master), "10.0.0.2");
        let d = decide(&input(Some(&dead), Some(&new_master)));
        assert!(d.failover, "the status named a as master");
        assert_eq!(d.master, Some(Member::B));
        assert_eq!(d.actions, [Action::Delete { member: Member::A, reason: "ended" }]);

        // Next round: a's pod is gone; it comes back joined to b. No pre-emption: b stays master.
        let mut i = input(None, Some(&new_master));
        i.last_master = Some(Member::B);
        let d = decide(&i);
        assert!(!d.failover);
        assert_eq!(d.phase, Phase::Degraded, "the master serves alone meanwhile");
        let start = Start::Slave { peer: "10.0.0.2:11212".into(), reseed: true };
        assert_eq!(d.actions, [Action::Create { member: Member::A, start }]);
    }

    #[test]
    fn while_the_slave_has_not_taken_over_yet_nothing_is_done() {
        let dead = member(PodState::Exited, None, "10.0.0.1");
        let s = slave();
        let d = decide(&input(Some(&dead), Some(&s)));
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert_eq!((d.phase, d.requeue), (Phase::Down, BUSY));
    }

    #[test]
    fn a_pod_on_a_lost_node_is_force_deleted_after_the_timeout_only() {
        let m = member(PodState::Running, Some(Role::Master), "10.0.0.2");
        let mut stuck = silent(slave(), Some(1));
        stuck.role = None;
        stuck.serving = Some(false);
        stuck.node_lost_for = Some(Duration::from_secs(30));
        let d = decide(&input(Some(&stuck), Some(&m)));
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert_eq!(d.phase, Phase::Degraded);
        stuck.node_lost_for = Some(Duration::from_secs(61));
        let d = decide(&input(Some(&stuck), Some(&m)));
        assert_eq!(d.actions, [Action::ForceDelete { member: Member::A }]);
    }

    #[test]
    fn a_spec_change_rolls_the_slave_then_switches_over_then_rolls_the_old_master() {
        let (mut m, mut s) = (master(), slave());
        m.revision = Some("r1".into());
        s.revision = Some("r1".into());
        let d = decide(&input(Some(&m), Some(&s)));
        assert_eq!(d.actions, [Action::Delete { member: Member::B, reason: "rolling the slave to the new spec" }]);

        // b came back on the new spec, but is still copying: wait.
        s.revision = Some(REV.into());
        s.synced = false;
        assert!(decide(&input(Some(&m), Some(&s))).actions.is_empty());

        s.synced = true;
        let d = decide(&input(Some(&m), Some(&s)));
        assert_eq!(d.actions, [Action::Switchover { from: Member::A, reason: SwitchoverReason::Rolling }]);

        // Roles swapped: a is now an outdated slave.
        let (mut old, mut new) = (slave(), master());
        old.revision = Some("r1".into());
        new.ip = Some("10.0.0.2".into());
        let mut i = input(Some(&old), Some(&new));
        i.last_master = Some(Member::B);
        let d = decide(&i);
        assert_eq!(d.actions, [Action::Delete { member: Member::A, reason: "rolling the slave to the new spec" }]);
        assert!(!d.failover);
    }

    #[test]
    fn a_requested_switchover_waits_for_a_synced_slave() {
        let (m, synced) = (master(), slave());
        let mut copying = slave();
        copying.synced = false;
        let mut i = input(Some(&m), Some(&copying));
        i.switchover_requested = Some("t1");
        let d = decide(&i);
        assert!(d.actions.is_empty());
        assert!(d.message.contains("switchover waits"), "{}", d.message);
        let d = decide(&Input { b: Some(&synced), ..i });
        let reason = SwitchoverReason::Requested { token: "t1".into() };
        assert_eq!(d.actions, [Action::Switchover { from: Member::A, reason }]);
    }

    #[test]
    fn two_masters_are_left_to_merge() {
        let (a, mut b) = (master(), master());
        b.ip = Some("10.0.0.2".into());
        let d = decide(&input(Some(&a), Some(&b)));
        assert!(d.actions.is_empty());
        assert_eq!(d.phase, Phase::Degraded);
    }

    #[test]
    fn when_both_members_ended_the_last_master_restarts_alone() {
        let (a, b) = (member(PodState::Exited, None, "x"), member(PodState::Exited, None, "y"));
        let mut i = input(Some(&a), Some(&b));
        i.last_master = Some(Member::B);
        let d = decide(&i);
        assert_eq!(
            d.actions,
            [
                Action::Delete { member: Member::B, reason: "ended" },
                Action::Delete { member: Member::A, reason: "ended" }
            ]
        );
        let d = decide(&Input { a: None, b: None, ..i });
        assert_eq!(d.actions, [Action::Create { member: Member::B, start: Start::Master }]);
    }

    #[test]
    fn a_dead_master_is_fenced_as_soon_as_the_slave_promotes() {
        // a was master at term 1; its node died, so it no longer answers, yet its pod is still
        // Ready: no kubelet recomputes it, and the node is not NotReady for another minute.
        let mut dead = silent(master(), Some(1));
        dead.ready = true;
        let s = member(PodState::Running, Some(Role::Slave), "10.0.0.2");
        // Before the slave takes over there is nothing better to route to.
        let d = decide(&input(Some(&dead), Some(&s)));
        assert!(d.actions.is_empty(), "{:?}", d.actions);

        let mut promoted = member(PodState::Running, Some(Role::Master), "10.0.0.2");
        promoted.term = Some(2);
        let d = decide(&input(Some(&dead), Some(&promoted)));
        assert_eq!(
            d.actions,
            [Action::Fence { member: Member::A, reason: "it does not answer; a higher term is master" }]
        );
        assert_eq!((d.master, d.failover, d.phase), (Some(Member::B), true, Phase::Degraded));

        // Fenced and no longer Ready: nothing more to do until the node is lost for good.
        dead.serving = Some(false);
        dead.ready = false;
        assert!(decide(&input(Some(&dead), Some(&promoted))).actions.is_empty());
        // Fenced but Ready again (a stale status written back): Ready is put right.
        dead.ready = true;
        assert_eq!(decide(&input(Some(&dead), Some(&promoted))).actions.len(), 1);
    }

    #[test]
    fn without_its_term_a_silent_master_is_fenced_once_its_node_is_lost() {
        // The operator restarted: it never heard a's term.
        let mut dead = silent(master(), None);
        dead.ready = true;
        let mut promoted = member(PodState::Running, Some(Role::Master), "10.0.0.2");
        promoted.term = Some(2);
        assert!(decide(&input(Some(&dead), Some(&promoted))).actions.is_empty(), "silence alone is no evidence");
        dead.node_lost_for = Some(Duration::from_secs(1));
        let d = decide(&input(Some(&dead), Some(&promoted)));
        assert_eq!(
            d.actions,
            [Action::Fence { member: Member::A, reason: "it does not answer; a higher term is master" }]
        );
    }

    #[test]
    fn in_a_partition_the_lower_term_is_fenced_then_unfenced_once_it_follows() {
        // The slave lost the master's heartbeats and promoted; the master still serves.
        let old = master();
        let mut new = member(PodState::Running, Some(Role::Master), "10.0.0.2");
        new.term = Some(2);
        let d = decide(&input(Some(&old), Some(&new)));
        assert_eq!(d.actions, [Action::Fence { member: Member::A, reason: "a higher term is master" }]);
        assert_eq!((d.master, d.phase), (Some(Member::B), Phase::Degraded));
        assert!(d.message.contains("superseded"), "{}", d.message);

        // Healed: a stepped down and follows b at b's term; the gate opens for a later failover.
        let mut follower = slave();
        follower.ip = Some("10.0.0.1".into());
        (follower.term, follower.serving) = (Some(2), Some(false));
        let mut i = input(Some(&follower), Some(&new));
        i.last_master = Some(Member::B);
        let d = decide(&i);
        assert_eq!(d.actions, [Action::Unfence { member: Member::A }]);
        assert_eq!((d.phase, d.master, d.slave), (Phase::Ready, Some(Member::B), Some(Member::A)));
    }

    #[test]
    fn masters_of_the_same_term_are_left_to_merge_unfenced() {
        let (a, mut b) = (master(), master());
        b.ip = Some("10.0.0.2".into());
        let d = decide(&input(Some(&a), Some(&b)));
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert_eq!(d.master, None);
    }

    #[test]
    fn a_fenced_master_serves_again_when_the_higher_term_is_gone() {
        // a was fenced in a partition; then b died.
        let mut a = master();
        a.serving = Some(false);
        let b = silent(member(PodState::Running, None, "10.0.0.2"), Some(2));
        let d = decide(&input(Some(&a), Some(&b)));
        assert_eq!(d.actions, [Action::Unfence { member: Member::A }]);
        assert_eq!(d.master, Some(Member::A));
    }

    #[test]
    fn a_new_member_gets_its_gate_and_a_silent_fenced_one_keeps_it_closed() {
        let m = master();
        let mut new = member(PodState::Pending, None, "");
        new.serving = None;
        let d = decide(&input(Some(&m), Some(&new)));
        assert_eq!(d.actions, [Action::Unfence { member: Member::B }]);
        new.state = PodState::Terminating;
        assert!(decide(&input(Some(&m), Some(&new))).actions.is_empty(), "a pod going away is left alone");
        let mut deleted_master = silent(master(), Some(1));
        deleted_master.state = PodState::Terminating;
        let mut promoted = slave();
        (promoted.role, promoted.term) = (Some(Role::Master), Some(2));
        let d = decide(&input(Some(&deleted_master), Some(&promoted)));
        assert!(d.actions.is_empty(), "terminating pods are no endpoints: {:?}", d.actions);

        let mut fenced = silent(slave(), Some(1));
        fenced.serving = Some(false);
        assert!(decide(&input(Some(&m), Some(&fenced))).actions.is_empty(), "only an answer unfences");
    }

    #[test]
    fn a_master_on_a_draining_node_switches_over_first() {
        let (mut m, s) = (master(), slave());
        m.draining = true;
        let d = decide(&input(Some(&m), Some(&s)));
        assert_eq!(d.actions, [Action::Switchover { from: Member::A, reason: SwitchoverReason::NodeDraining }]);

        // Not to a slave without the data, nor onto a node that is being drained too.
        let mut copying = slave();
        copying.synced = false;
        assert!(decide(&input(Some(&m), Some(&copying))).actions.is_empty());
        let mut draining = slave();
        draining.draining = true;
        assert!(decide(&input(Some(&m), Some(&draining))).actions.is_empty());

        // A draining slave is the drain's to evict; the operator re-seeds it elsewhere.
        let (m, mut s) = (master(), slave());
        s.draining = true;
        assert!(decide(&input(Some(&m), Some(&s))).actions.is_empty());
    }

    #[test]
    fn a_master_whose_eviction_was_refused_switches_over() {
        let (mut m, s) = (master(), slave());
        m.eviction_requested = true;
        let d = decide(&input(Some(&m), Some(&s)));
        assert_eq!(d.actions, [Action::Switchover { from: Member::A, reason: SwitchoverReason::EvictionRequested }]);
        // Not to a slave without the data: the budget keeps refusing until it has it.
        let mut copying = slave();
        copying.synced = false;
        assert!(decide(&input(Some(&m), Some(&copying))).actions.is_empty());
    }

    #[test]
    fn role_labels_follow_the_decision_and_only_changes_are_written() {
        let (m, mut s) = (master(), slave());
        s.synced = false;
        let d = decide(&input(Some(&m), Some(&s)));
        let views = BTreeMap::from([(Member::A, m.clone()), (Member::B, s.clone())]);
        assert_eq!(d.role_labels(&views), BTreeMap::from([(Member::A, "master"), (Member::B, "slave")]));
        s.role = Some(Role::Starting);
        let views = BTreeMap::from([(Member::A, m.clone()), (Member::B, s.clone())]);
        assert_eq!(d.role_labels(&views)[&Member::B], "starting");

        let mut labelled = m;
        labelled.role_label = Some("master".into());
        assert!(!relabel(&labelled, "master"));
        assert!(relabel(&labelled, "slave"));
        labelled.state = PodState::Terminating;
        assert!(!relabel(&labelled, "slave"), "a pod on its way out keeps its label");
        let dead = member(PodState::Exited, None, "10.0.0.2");
        let d = decide(&input(Some(&master()), Some(&dead)));
        assert_eq!(d.role_labels(&BTreeMap::from([(Member::B, dead)]))[&Member::B], "down");
    }

    #[test]
    fn a_requested_reseed_of_the_slave_deletes_it_once_and_it_comes_back_as_slave() {
        let (m, s) = (master(), slave());
        let mut i = input(Some(&m), Some(&s));
        i.reseed_requested = Some((Member::B, "r1"));
        let d = decide(&i);
        assert_eq!(d.actions, [Action::Reseed { member: Member::B, token: "r1".into() }]);
        assert_eq!(d.requeue, BUSY);

        // A slave still taking its copy (a stuck sync, say) is re-seeded too.
        let mut copying = slave();
        copying.synced = false;
        assert_eq!(decide(&Input { b: Some(&copying), ..i.clone() }).actions.len(), 1);

        // Next round: the pod is gone; it is re-created as a slave of a (a re-seed, so the
        // `Reseeded` Event), and the request, recorded, is not carried out again.
        let d = decide(&Input { b: None, reseed_requested: None, ..i.clone() });
        let start = Start::Slave { peer: "10.0.0.1:11212".into(), reseed: true };
        assert_eq!(d.actions, [Action::Create { member: Member::B, start }]);

        // One disruptive step at a time: a slave being rolled is not re-seeded in the same round.
        let mut old = slave();
        old.revision = Some("r1".into());
        let d = decide(&Input { b: Some(&old), ..i });
        assert_eq!(d.actions, [Action::Delete { member: Member::B, reason: "rolling the slave to the new spec" }]);
        assert!(d.message.contains("re-seeding member b waits"), "{}", d.message);
    }

    #[test]
    fn a_requested_reseed_of_the_master_switches_over_first_or_waits_for_a_synced_slave() {
        let (m, s) = (master(), slave());
        let mut i = input(Some(&m), Some(&s));
        i.reseed_requested = Some((Member::A, "r1"));
        let d = decide(&i);
        assert_eq!(d.actions, [Action::Switchover { from: Member::A, reason: SwitchoverReason::Reseeding }]);

        // Roles swapped: a is the slave now, and the same request re-seeds it.
        let (mut old, mut new) = (slave(), master());
        (old.ip, new.ip) = (Some("10.0.0.1".into()), Some("10.0.0.2".into()));
        let mut after = input(Some(&old), Some(&new));
        (after.last_master, after.reseed_requested) = (Some(Member::B), Some((Member::A, "r1")));
        assert_eq!(decide(&after).actions, [Action::Reseed { member: Member::A, token: "r1".into() }]);

        // Without a slave in sync nothing is done, and the conditions say why.
        let mut copying = slave();
        copying.synced = false;
        let d = decide(&Input { b: Some(&copying), ..i.clone() });
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert!(d.message.contains("spec.reseed names member a, the master"), "{}", d.message);
        let d = decide(&Input { b: None, ..i.clone() });
        assert!(!d.actions.iter().any(|a| matches!(a, Action::Reseed { .. } | Action::Switchover { .. })));
        assert!(d.message.contains("spec.reseed names member a"), "{}", d.message);

        // Nor onto a slave that spec.fenced keeps out of routing.
        let d = decide(&Input { fenced: &[Member::B], ..i });
        assert!(!d.actions.iter().any(|a| matches!(a, Action::Switchover { .. })), "{:?}", d.actions);
    }

    #[test]
    fn a_requested_fence_closes_the_slaves_gate_and_removing_it_opens_it_again() {
        let (m, s) = (master(), slave());
        let mut i = input(Some(&m), Some(&s));
        i.fenced = &[Member::B];
        let d = decide(&i);
        assert_eq!(d.actions, [Action::Fence { member: Member::B, reason: FENCE_REQUESTED }]);
        assert_eq!((d.phase, d.master, d.slave), (Phase::Ready, Some(Member::A), Some(Member::B)));

        // Fenced: nothing more; the answering member is not un-fenced while the spec names it.
        let mut fenced = slave();
        fenced.serving = Some(false);
        assert!(decide(&Input { b: Some(&fenced), ..i.clone() }).actions.is_empty());
        // Removed from spec.fenced: the gate opens.
        let d = decide(&Input { b: Some(&fenced), fenced: &[], ..i });
        assert_eq!(d.actions, [Action::Unfence { member: Member::B }]);
    }

    #[test]
    fn a_requested_fence_of_the_master_switches_over_first_or_is_refused() {
        let (m, s) = (master(), slave());
        let mut i = input(Some(&m), Some(&s));
        i.fenced = &[Member::A];
        let d = decide(&i);
        assert_eq!(d.actions, [Action::Switchover { from: Member::A, reason: SwitchoverReason::Fencing }]);

        // After the switchover a is the slave and is fenced.
        let (mut old, mut new) = (slave(), master());
        (old.ip, new.ip) = (Some("10.0.0.1".into()), Some("10.0.0.2".into()));
        let mut after = input(Some(&old), Some(&new));
        (after.last_master, after.fenced) = (Some(Member::B), &[Member::A]);
        assert_eq!(decide(&after).actions, [Action::Fence { member: Member::A, reason: FENCE_REQUESTED }]);

        // The slave not in sync: the master keeps serving, unfenced, and the message says why.
        let mut copying = slave();
        copying.synced = false;
        let d = decide(&Input { b: Some(&copying), ..i.clone() });
        assert!(d.actions.is_empty(), "{:?}", d.actions);
        assert!(d.message.contains("spec.fenced names member a, the master: it keeps serving"), "{}", d.message);
        // Both named: the master keeps serving, the slave is fenced.
        let d = decide(&Input { fenced: &[Member::A, Member::B], ..i.clone() });
        assert_eq!(d.actions, [Action::Fence { member: Member::B, reason: FENCE_REQUESTED }]);
        assert!(d.message.contains("it keeps serving"), "{}", d.message);

        // A fenced slave that took over after the master died serves: its gate opens.
        let dead = member(PodState::Exited, None, "10.0.0.1");
        let mut promoted = member(PodState::Running, Some(Role::Master), "10.0.0.2");
        promoted.serving = Some(false);
        let mut lone = input(Some(&dead), Some(&promoted));
        lone.fenced = &[Member::B];
        let d = decide(&lone);
        assert_eq!(d.actions[0], Action::Unfence { member: Member::B });
    }

    #[test]
    fn ipv6_peers_are_bracketed() {
        assert_eq!(repl_address("fd00::2", 11212), "[fd00::2]:11212");
        assert_eq!(repl_address("10.0.0.2", 11212), "10.0.0.2:11212");
    }
}
