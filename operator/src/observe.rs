//! What a pair's members are doing, read from their pods, their nodes and their admin
//! listeners. `member_view` is pure; the controller does the reading.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::pair::labels;
use crate::render::replication_tls::LinkTls;
use crate::render::{SERVING_CONDITION, VRRP_CONTAINER};

/// The pod annotation with the last term the member reported to the operator.
pub const TERM_ANNOTATION: &str = "cachepair.io/term";
/// The pod annotation the eviction webhook sets, with the time, when it refused to evict a
/// master (see [`crate::eviction`]).
pub const EVICTION_ANNOTATION: &str = "cachepair.io/eviction-requested";
/// How long a refused eviction asks for a switchover: an evictor retries within seconds, and
/// an old mark must not move the role again after the member is master once more.
const EVICTION_REQUEST_TTL: Duration = Duration::from_secs(120);

/// A member's replication role as its admin listener reports it (`/role`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Slave,
    Starting,
}

impl Role {
    pub fn parse(body: &str) -> Option<Role> {
        match body.trim() {
            "master" => Some(Role::Master),
            "slave" => Some(Role::Slave),
            "starting" => Some(Role::Starting),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Slave => "slave",
            Role::Starting => "starting",
        }
    }
}

/// What a member's admin listener reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Report {
    pub role: Role,
    /// Failovers of the pair as the member knows them (`cachepair_replication_term`).
    pub term: u64,
    /// `/readyz`: the client port is open (a slave's copy is complete).
    pub synced: bool,
    /// End of its replication stream (`cachepair_replication_offset_bytes`).
    pub offset: Option<u64>,
    /// Bytes of its stream the peer has not acknowledged (`cachepair_replication_lag_bytes`).
    pub lag_bytes: Option<u64>,
    /// Times it took over as master by itself, having lost its master
    /// (`cachepair_replication_failovers_total`; a hand-over it was given does not count).
    pub promotions: Option<u64>,
}

/// Where a member's pod is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// Not scheduled or not started yet.
    Pending,
    Running,
    /// The process ended (the pod's phase is Succeeded or Failed): it will not come back.
    Exited,
    /// Being deleted.
    Terminating,
}

/// One member's pod, as the decisions need it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberView {
    pub state: PodState,
    pub ip: Option<String>,
    pub node: Option<String>,
    /// The spec revision the pod was made from.
    pub revision: Option<String>,
    /// The role it reports; when its admin listener did not answer, `Master` if its pod is
    /// Ready (the kubelet's probe still says so), else `None`.
    pub role: Option<Role>,
    /// Its admin listener answered this round.
    pub answered: bool,
    /// Its term (failovers of the pair as it knows them): this round's answer or, when it did
    /// not answer, the last one recorded on its pod (`cachepair.io/term`).
    pub term: Option<u64>,
    /// Its client port is open (`/readyz`): for a slave, its full copy is complete.
    pub synced: bool,
    /// How long its node has been unreachable (NotReady, Unknown or gone); `None` if healthy.
    pub node_lost_for: Option<Duration>,
    /// Its node is being drained: cordoned, or tainted for removal by an autoscaler (see
    /// [`node_draining`]).
    pub draining: bool,
    /// An eviction of it was refused by the webhook lately: it should stop being master.
    pub eviction_requested: bool,
    /// Its readiness gate (`cachepair.io/serving`); `None` while the condition is missing.
    pub serving: Option<bool>,
    /// Its pod is Ready: an endpoint of the client Service.
    pub ready: bool,
    /// The role label the operator last put on the pod.
    pub role_label: Option<String>,
    /// How its replication link is secured (its pod's label).
    pub link_tls: LinkTls,
    /// Its VRRP sidecar has ended: under `restartPolicy: Never` it will not come back, so this
    /// member can no longer hold the virtual IP.
    pub sidecar_ended: bool,
    /// Its replication offset, lag and self-promotions, as it reported them this round.
    pub offset: Option<u64>,
    pub lag_bytes: Option<u64>,
    pub promotions: Option<u64>,
}

impl MemberView {
    /// Running and answering as `role`.
    pub fn is(&self, role: Role) -> bool {
        self.state == PodState::Running && self.role == Some(role)
    }

    /// Takes in what the member's admin listener said this round, if it answered.
    pub fn heard(&mut self, report: Option<Report>) {
        match report {
            Some(r) => {
                (self.role, self.term, self.synced, self.answered) = (Some(r.role), Some(r.term), r.synced, true);
                (self.offset, self.lag_bytes, self.promotions) = (r.offset, r.lag_bytes, r.promotions);
            }
            // Unreachable from here: the kubelet's probe still says who is master.
            None if self.state == PodState::Running && self.ready => {
                (self.role, self.synced) = (Some(Role::Master), true)
            }
            None => {}
        }
    }
}

/// A member's view from its pod and its node (`None`: the node object is gone). The role and
/// sync state come from the admin listener and are filled in by the caller.
pub fn member_view(pod: &Pod, node: Option<&Node>, now: &Time) -> MemberView {
    let status = pod.status.as_ref();
    let state = if pod.metadata.deletion_timestamp.is_some() {
        PodState::Terminating
    } else {
        match status.and_then(|s| s.phase.as_deref()) {
            Some("Running") => PodState::Running,
            Some("Succeeded" | "Failed") => PodState::Exited,
            _ => PodState::Pending,
        }
    };
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    MemberView {
        state,
        ip: status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()),
        revision: pod.metadata.labels.as_ref().and_then(|l| l.get(labels::REVISION).cloned()),
        role_label: pod.metadata.labels.as_ref().and_then(|l| l.get(labels::ROLE).cloned()),
        link_tls: LinkTls::of_label(
            pod.metadata.labels.as_ref().and_then(|l| l.get(labels::REPLICATION_TLS)).map(String::as_str),
        ),
        node_lost_for: node_name.as_ref().and_then(|_| node_lost_for(node, now)),
        node: node_name,
        draining: node.is_some_and(node_draining),
        eviction_requested: annotation(pod, EVICTION_ANNOTATION)
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_some_and(|at| now.0.duration_since(at).unsigned_abs() < EVICTION_REQUEST_TTL),
        serving: condition(pod, SERVING_CONDITION).map(|status| status == "True"),
        ready: condition(pod, "Ready") == Some("True"),
        role: None,
        answered: false,
        term: annotation(pod, TERM_ANNOTATION).and_then(|t| t.parse().ok()),
        synced: false,
        sidecar_ended: status.and_then(|s| s.container_statuses.as_ref()).is_some_and(|statuses| {
            statuses
                .iter()
                .any(|c| c.name == VRRP_CONTAINER && c.state.as_ref().is_some_and(|state| state.terminated.is_some()))
        }),
        offset: None,
        lag_bytes: None,
        promotions: None,
    }
}

/// Taints that announce a node's removal by an autoscaler, whose evictions come without a
/// cordon: cluster-autoscaler's scale-down and Karpenter's disruption (v1, and v0.3x's
/// `karpenter.sh/disruption=disrupting`).
const DRAIN_TAINTS: [(&str, Option<&str>); 3] = [
    ("ToBeDeletedByClusterAutoscaler", None),
    ("karpenter.sh/disrupted", None),
    ("karpenter.sh/disruption", Some("disrupting")),
];

/// The node is being emptied: cordoned (`kubectl drain` cordons first) or tainted for removal.
pub fn node_draining(node: &Node) -> bool {
    let Some(spec) = node.spec.as_ref() else { return false };
    let tainted = spec.taints.iter().flatten().any(|t| {
        DRAIN_TAINTS.iter().any(|(key, value)| t.key == *key && value.is_none_or(|v| t.value.as_deref() == Some(v)))
    });
    spec.unschedulable == Some(true) || tainted
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The status of the pod's condition `type_`.
fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a str> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.as_str())
}

/// The node's Ready condition is True.
pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// How long a node has not been Ready: since its Ready condition last changed, or "long" when
/// the node object is gone.
fn node_lost_for(node: Option<&Node>, now: &Time) -> Option<Duration> {
    let Some(node) = node else {
        return Some(Duration::MAX);
    };
    let ready = node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    if ready.status == "True" {
        return None;
    }
    let since = ready.last_transition_time.as_ref().map_or(now.0, |t| t.0);
    Some(now.0.duration_since(since).try_into().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus, PodSpec, PodStatus};
    use k8s_openapi::jiff::{SignedDuration, Timestamp};

    use super::*;

    fn pod(phase: &str, ip: &str) -> Pod {
        Pod {
            spec: Some(PodSpec { node_name: Some("n1".into()), ..Default::default() }),
            status: Some(PodStatus { phase: Some(phase.into()), pod_ip: Some(ip.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    fn node(ready: &str, since: Timestamp) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_transition_time: Some(Time(since)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn an_ended_vrrp_sidecar_is_seen() {
        use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus};
        let mut p = pod("Running", "10.0.0.1");
        let now = Time(Timestamp::now());
        assert!(!member_view(&p, None, &now).sidecar_ended);
        let status = |name: &str| ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated { exit_code: 1, ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        };
        p.status.as_mut().unwrap().container_statuses = Some(vec![status("cache-node")]);
        assert!(!member_view(&p, None, &now).sidecar_ended, "only the sidecar counts");
        p.status.as_mut().unwrap().container_statuses = Some(vec![status(VRRP_CONTAINER)]);
        assert!(member_view(&p, None, &now).sidecar_ended);
    }

    #[test]
    fn pod_phases_map_to_member_states() {
        let now = Time(Timestamp::now());
        let healthy = node("True", now.0);
        assert_eq!(member_view(&pod("Running", "10.0.0.1"), Some(&healthy), &now).state, PodState::Running);
        assert_eq!(member_view(&pod("Failed", ""), Some(&healthy), &now).state, PodState::Exited);
        assert_eq!(member_view(&pod("Succeeded", ""), Some(&healthy), &now).state, PodState::Exited);
        let pending = member_view(&pod("Pending", ""), Some(&healthy), &now);
        assert_eq!((pending.state, pending.ip), (PodState::Pending, None));
        let mut deleting = pod("Running", "10.0.0.1");
        deleting.metadata.deletion_timestamp = Some(now.clone());
        assert_eq!(member_view(&deleting, Some(&healthy), &now).state, PodState::Terminating);
    }

    #[test]
    fn a_node_is_lost_from_when_it_stopped_being_ready() {
        let now = Time(Timestamp::now());
        let p = pod("Running", "10.0.0.1");
        assert_eq!(member_view(&p, Some(&node("True", now.0)), &now).node_lost_for, None);
        let since = now.0 - SignedDuration::from_secs(90);
        let lost = member_view(&p, Some(&node("Unknown", since)), &now).node_lost_for.unwrap();
        assert_eq!(lost.as_secs(), 90);
        assert_eq!(member_view(&p, None, &now).node_lost_for, Some(Duration::MAX));
    }

    #[test]
    fn the_gate_readiness_drain_and_last_term_are_seen() {
        use k8s_openapi::api::core::v1::{NodeSpec, PodCondition};
        let now = Time(Timestamp::now());
        let mut p = pod("Running", "10.0.0.1");
        let mut n = node("True", now.0);
        let v = member_view(&p, Some(&n), &now);
        assert_eq!((v.serving, v.ready, v.draining), (None, false, false));
        let cond = |type_: &str, status: &str| PodCondition {
            type_: type_.into(),
            status: status.into(),
            ..Default::default()
        };
        p.status.as_mut().unwrap().conditions = Some(vec![cond("Ready", "True"), cond(SERVING_CONDITION, "False")]);
        p.metadata.annotations = Some([(TERM_ANNOTATION.to_string(), "3".to_string())].into());
        n.spec = Some(NodeSpec { unschedulable: Some(true), ..Default::default() });
        let v = member_view(&p, Some(&n), &now);
        assert_eq!((v.serving, v.ready, v.draining, v.term), (Some(false), true, true, Some(3)));
    }

    #[test]
    fn a_refused_eviction_asks_for_a_switchover_for_two_minutes() {
        let now = Time(Timestamp::now());
        let mut p = pod("Running", "10.0.0.1");
        assert!(!member_view(&p, None, &now).eviction_requested);
        for (ago, requested) in [(0, true), (119, true), (121, false)] {
            let at = now.0 - SignedDuration::from_secs(ago);
            p.metadata.annotations = Some([(EVICTION_ANNOTATION.to_string(), at.to_string())].into());
            assert_eq!(member_view(&p, None, &now).eviction_requested, requested, "{ago} s ago");
        }
        p.metadata.annotations = Some([(EVICTION_ANNOTATION.to_string(), "garbage".to_string())].into());
        assert!(!member_view(&p, None, &now).eviction_requested);
    }

    #[test]
    fn a_node_drains_when_cordoned_or_tainted_for_removal() {
        use k8s_openapi::api::core::v1::{NodeSpec, Taint};
        let tainted = |key: &str, value: Option<&str>| {
            let taint = Taint {
                key: key.into(),
                value: value.map(Into::into),
                effect: "NoSchedule".into(),
                ..Default::default()
            };
            Node { spec: Some(NodeSpec { taints: Some(vec![taint]), ..Default::default() }), ..Default::default() }
        };
        assert!(!node_draining(&Node::default()));
        assert!(!node_draining(&tainted("dedicated", Some("cache"))));
        assert!(node_draining(&tainted("ToBeDeletedByClusterAutoscaler", Some("1733450000"))));
        assert!(node_draining(&tainted("karpenter.sh/disrupted", None)));
        assert!(node_draining(&tainted("karpenter.sh/disruption", Some("disrupting"))));
        assert!(!node_draining(&tainted("karpenter.sh/disruption", Some("candidate"))));
        let cordoned =
            Node { spec: Some(NodeSpec { unschedulable: Some(true), ..Default::default() }), ..Default::default() };
        assert!(node_draining(&cordoned));
    }

    #[test]
    fn roles_parse_from_the_admin_listener() {
        assert_eq!(Role::parse("master\n"), Some(Role::Master));
        assert_eq!(Role::parse("slave\n"), Some(Role::Slave));
        assert_eq!(Role::parse("standalone\n"), None);
    }
}
