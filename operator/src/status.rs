//! The status a round leaves behind: phase, members, conditions and the failover and
//! switchover bookkeeping, as pure functions of the last status and the round's decision.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{CachePair, CachePairStatus, MemberStatus, Phase};
use crate::decide::{Action, Decision, SwitchoverReason};
use crate::observe::MemberView;
use crate::pair::Member;

/// What a round did that the status records, beyond its decision.
#[derive(Clone, Debug, Default)]
pub struct Round {
    /// The revision the members should run.
    pub revision: String,
    /// The switchover carried out this round, if any.
    pub switched: Option<SwitchoverReason>,
    /// The `spec.reseed` token carried out this round, if any.
    pub reseeded: Option<String>,
    /// Why a ServiceMonitor that was asked for could not be made.
    pub monitoring_note: Option<String>,
    /// The members as observed this round.
    pub members: BTreeMap<Member, MemberView>,
}

impl CachePairStatus {
    /// Each member's self-promotions as last recorded (`members[].promotions`).
    pub fn promotions(&self, pair: &str) -> BTreeMap<Member, u64> {
        self.members.iter().filter_map(|m| Some((Member::of_pod(pair, &m.name)?, m.promotions?))).collect()
    }

    /// The spec names objects that do not exist or do not hold what the members need: the
    /// pair is left as it is, and `message` says why.
    pub fn invalid(mut self, cp: &CachePair, message: &str, now: &Time) -> Self {
        self.phase = Some(Phase::Invalid);
        set_condition(&mut self.conditions, cp, now, "SpecValid", false, "InvalidReference", message);
        self
    }

    /// After a round that carried out `d`.
    pub fn next(mut self, cp: &CachePair, d: &Decision, round: Round, now: &Time) -> Self {
        let pair = cp.name();
        if d.failover {
            self.failover_count += 1;
            self.last_failover_time = Some(now.clone());
        }
        if let Some(SwitchoverReason::Requested { token }) = round.switched {
            self.switchover = Some(token);
        }
        if let Some(token) = round.reseeded {
            self.reseed = Some(token);
        }
        self.phase = Some(d.phase);
        self.master = d.master.map(|m| m.pod_name(&pair));
        self.slave = d.slave.map(|m| m.pod_name(&pair));
        self.revision = Some(round.revision);
        self.observed_generation = cp.metadata.generation;
        let roles = d.role_labels(&round.members);
        // The gates as this round left them.
        let fenced = |member: &Member, view: &MemberView| {
            d.actions.iter().fold(view.serving == Some(false), |fenced, a| match a {
                Action::Fence { member: m, .. } if m == member => true,
                Action::Unfence { member: m } if m == member => false,
                _ => fenced,
            })
        };
        self.members = round
            .members
            .iter()
            .map(|(member, view)| MemberStatus {
                name: member.pod_name(&pair),
                role: roles[member].into(),
                node: view.node.clone(),
                offset_bytes: view.offset,
                lag_bytes: view.lag_bytes,
                promotions: view.promotions,
                fenced: fenced(member, view),
            })
            .collect();
        self.lag_bytes = d.master.and_then(|m| round.members.get(&m)).and_then(|v| v.lag_bytes);
        let serving = d.master.is_some();
        let c = &mut self.conditions;
        let why = if d.message.is_empty() { "the slave follows the master" } else { &d.message };
        let r = d.replicating;
        set_condition(c, cp, now, "Ready", serving, if serving { "MasterServing" } else { "NoMaster" }, why);
        set_condition(c, cp, now, "Replicating", r, if r { "InSync" } else { "NotInSync" }, why);
        set_condition(c, cp, now, "Degraded", !r, if r { "PairWhole" } else { "PairNotWhole" }, why);
        match round.monitoring_note {
            Some(note) => set_condition(c, cp, now, "SpecValid", false, "ServiceMonitorUnavailable", &note),
            None => set_condition(c, cp, now, "SpecValid", true, "Valid", "the spec is realised"),
        }
        self
    }
}

/// Sets a condition, keeping its transition time while its status holds.
fn set_condition(
    conditions: &mut Vec<Condition>,
    cp: &CachePair,
    now: &Time,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) {
    let status = if ok { "True" } else { "False" };
    let since = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: since,
        observed_generation: cp.metadata.generation,
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use serde_json::json;

    use super::*;
    use crate::pair::Member;
    use crate::render::fixtures::pair;

    fn ready() -> Decision {
        Decision {
            actions: Vec::new(),
            phase: Phase::Ready,
            master: Some(Member::A),
            slave: Some(Member::B),
            replicating: true,
            failover: false,
            handover: false,
            message: String::new(),
            requeue: Duration::from_secs(30),
        }
    }

    fn condition<'a>(s: &'a CachePairStatus, type_: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition"))
    }

    #[test]
    fn a_whole_pair_is_ready_and_its_conditions_keep_their_transition_times() {
        let cp = pair(json!({}));
        let then = Time(Timestamp::now() - SignedDuration::from_secs(60));
        let first = CachePairStatus::default().next(&cp, &ready(), Round::default(), &then);
        assert_eq!(
            (first.phase, first.master.as_deref(), first.slave.as_deref()),
            (Some(Phase::Ready), Some("demo-a"), Some("demo-b"))
        );
        assert_eq!(first.observed_generation, Some(3));
        for (type_, status) in
            [("Ready", "True"), ("Replicating", "True"), ("Degraded", "False"), ("SpecValid", "True")]
        {
            assert_eq!(condition(&first, type_).status, status, "{type_}");
        }

        let now = Time(Timestamp::now());
        let mut degraded = ready();
        (degraded.phase, degraded.slave, degraded.replicating) = (Phase::Degraded, None, false);
        degraded.message = "member b ended; re-seeding it as a slave".into();
        let second = first.next(&cp, &degraded, Round::default(), &now);
        assert_eq!(condition(&second, "Ready").last_transition_time, then, "still serving: no transition");
        assert_eq!(condition(&second, "Degraded").last_transition_time, now);
        assert_eq!(condition(&second, "Degraded").message, "member b ended; re-seeding it as a slave");
        assert_eq!(second.failover_count, 0);
    }

    #[test]
    fn a_failover_is_counted_and_a_requested_switchover_recorded() {
        let cp = pair(json!({}));
        let now = Time(Timestamp::now());
        let mut failover = ready();
        failover.failover = true;
        let s = CachePairStatus::default().next(&cp, &failover, Round::default(), &now);
        assert_eq!((s.failover_count, s.last_failover_time.as_ref()), (1, Some(&now)));

        let drained = Round { switched: Some(SwitchoverReason::NodeDraining), ..Round::default() };
        assert_eq!(s.clone().next(&cp, &ready(), drained, &now).switchover, None, "only a request is recorded");
        let requested =
            Round { switched: Some(SwitchoverReason::Requested { token: "t1".into() }), ..Round::default() };
        assert_eq!(s.next(&cp, &ready(), requested, &now).switchover.as_deref(), Some("t1"));
    }

    #[test]
    fn members_show_their_role_node_offset_and_lag() {
        use crate::observe::{Report, Role, member_view};
        let now = Time(Timestamp::now());
        let view = |name: &str, report: Option<Report>| {
            let pod = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"nodeName": format!("node-{name}"), "containers": []},
                "status": {"phase": "Running", "podIP": "10.0.0.1"},
            }))
            .expect("a pod");
            let mut v = member_view(&pod, None, &now);
            v.heard(report);
            v
        };
        let master = Report {
            role: Role::Master,
            term: 1,
            synced: true,
            offset: Some(4096),
            lag_bytes: Some(96),
            promotions: Some(1),
        };
        let slave = Report {
            role: Role::Slave,
            term: 1,
            synced: true,
            offset: Some(4000),
            lag_bytes: Some(0),
            promotions: Some(0),
        };
        let members =
            BTreeMap::from([(Member::A, view("demo-a", Some(master))), (Member::B, view("demo-b", Some(slave)))]);
        let s =
            CachePairStatus::default().next(&pair(json!({})), &ready(), Round { members, ..Round::default() }, &now);
        let shown: Vec<_> = s
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.role.as_str(), m.node.as_deref(), m.offset_bytes, m.lag_bytes))
            .collect();
        assert_eq!(
            shown,
            [
                ("demo-a", "master", Some("node-demo-a"), Some(4096), Some(96)),
                ("demo-b", "slave", Some("node-demo-b"), Some(4000), Some(0))
            ]
        );
        assert_eq!(s.lag_bytes, Some(96), "the master's unacknowledged bytes");
        assert_eq!(s.promotions("demo"), BTreeMap::from([(Member::A, 1), (Member::B, 0)]));

        let silent = BTreeMap::from([(Member::A, view("demo-a", None))]);
        let mut down = ready();
        (down.phase, down.master, down.slave) = (Phase::Down, None, None);
        let s = s.next(&pair(json!({})), &down, Round { members: silent, ..Round::default() }, &now);
        assert_eq!((s.members[0].role.as_str(), s.members[0].offset_bytes, s.lag_bytes), ("down", None, None));
    }

    #[test]
    fn a_requested_reseed_is_recorded_and_fences_show_on_the_members() {
        use crate::observe::member_view;
        let cp = pair(json!({}));
        let now = Time(Timestamp::now());
        let s = CachePairStatus::default().next(&cp, &ready(), Round::default(), &now);
        assert_eq!(s.reseed, None);
        let reseeded = Round { reseeded: Some("r1".into()), ..Round::default() };
        let s = s.next(&cp, &ready(), reseeded, &now);
        assert_eq!(s.reseed.as_deref(), Some("r1"));
        assert_eq!(s.clone().next(&cp, &ready(), Round::default(), &now).reseed.as_deref(), Some("r1"), "kept");

        let pod = serde_json::from_value(json!({"metadata": {"name": "demo-b"}, "spec": {"containers": []},
                                                "status": {"phase": "Running"}}))
        .expect("a pod");
        let members = BTreeMap::from([(Member::B, member_view(&pod, None, &now))]);
        let mut fencing = ready();
        fencing.actions = vec![Action::Fence { member: Member::B, reason: crate::decide::FENCE_REQUESTED }];
        let s = s.next(&cp, &fencing, Round { members, ..Round::default() }, &now);
        assert!(s.members[0].fenced, "the gate this round closed");
    }

    #[test]
    fn an_invalid_spec_says_why() {
        let cp = pair(json!({}));
        let s = CachePairStatus::default().invalid(
            &cp,
            "spec.replication.secretName: Secret x not found",
            &Time(Timestamp::now()),
        );
        assert_eq!(s.phase, Some(Phase::Invalid));
        let c = condition(&s, "SpecValid");
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "InvalidReference"));
    }
}
