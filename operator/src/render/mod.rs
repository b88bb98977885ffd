//! The objects a CachePair owns, as pure functions of the resource (and, for a member pod, of
//! its peer's address). Nothing here talks to the API server.

mod network;
mod pod;
mod services;
mod vrrp;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::CachePair;
pub use network::{network_policy, pod_disruption_budget};
pub use pod::{MEMBER_CONTAINER, SECRET_KEY, SERVING_CONDITION, member_pod, revision};
pub use services::{client_service, members_service, replication_secret};
pub use vrrp::{VRRP_CONTAINER, keepalived_conf, vrrp_secret};

/// The two members of a pair. Their roles change; their names do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Member {
    A,
    B,
}

impl Member {
    pub const BOTH: [Member; 2] = [Member::A, Member::B];

    pub fn other(self) -> Member {
        match self {
            Member::A => Member::B,
            Member::B => Member::A,
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Member::A => "a",
            Member::B => "b",
        }
    }

    /// The member's pod name: `<pair>-a` or `<pair>-b`.
    pub fn pod_name(self, pair: &str) -> String {
        format!("{pair}-{}", self.suffix())
    }

    /// Which member a pod name belongs to.
    pub fn of_pod(pair: &str, pod: &str) -> Option<Member> {
        match pod.strip_prefix(pair)?.strip_prefix('-')? {
            "a" => Some(Member::A),
            "b" => Some(Member::B),
            _ => None,
        }
    }
}

/// Label keys the operator sets and selects on.
pub mod labels {
    pub const PAIR: &str = "cachepair.io/pair";
    pub const MEMBER: &str = "cachepair.io/member";
    pub const REVISION: &str = "cachepair.io/revision";
    /// A member's current role, for people and dashboards (routing does not depend on it: see
    /// `render::pod`).
    pub const ROLE: &str = "cachepair.io/role";
}

/// The labels every object of a pair carries; `pair` alone selects its member pods.
pub fn pair_labels(cp: &CachePair) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "cache-node".into()),
        ("app.kubernetes.io/instance".into(), cp.name()),
        ("app.kubernetes.io/managed-by".into(), "cachepair-operator".into()),
        (labels::PAIR.into(), cp.name()),
    ])
}

/// Selects the pair's member pods.
pub fn pair_selector(cp: &CachePair) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::PAIR.into(), cp.name())])
}

/// Metadata of an object the pair owns: its namespace, labels and the controller reference
/// that makes Kubernetes delete it with the pair.
pub fn owned_meta(cp: &CachePair, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cp.metadata.namespace.clone(),
        labels: Some(pair_labels(cp)),
        owner_references: Some(vec![owner_reference(cp)]),
        ..Default::default()
    }
}

pub fn owner_reference(cp: &CachePair) -> OwnerReference {
    cp.controller_owner_ref(&()).unwrap_or_else(|| OwnerReference {
        api_version: CachePair::api_version(&()).into(),
        kind: CachePair::kind(&()).into(),
        name: cp.name(),
        uid: cp.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

impl CachePair {
    pub fn name(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }

    /// The Secret holding the replication secret: the user's, or the generated one.
    pub fn replication_secret_name(&self) -> String {
        self.spec.replication.secret_name.clone().unwrap_or_else(|| format!("{}-replication", self.name()))
    }

    /// The headless Service of the members.
    pub fn members_service_name(&self) -> String {
        format!("{}-members", self.name())
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use kube::api::ObjectMeta;

    use crate::crd::{CachePair, CachePairSpec};

    /// A pair as the API server returns it: every default applied.
    pub fn pair(spec: serde_json::Value) -> CachePair {
        let spec: CachePairSpec = serde_json::from_value(spec).expect("a valid spec");
        let mut cp = CachePair::new("demo", spec);
        cp.metadata = ObjectMeta {
            name: Some("demo".into()),
            namespace: Some("shop".into()),
            uid: Some("0b9f-uid".into()),
            generation: Some(3),
            ..Default::default()
        };
        cp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_named_after_the_pair() {
        assert_eq!(Member::A.pod_name("demo"), "demo-a");
        assert_eq!(Member::of_pod("demo", "demo-b"), Some(Member::B));
        assert_eq!(Member::of_pod("demo", "demo-bb"), None);
        assert_eq!(Member::of_pod("demo", "demox-a"), None);
        assert_eq!(Member::A.other(), Member::B);
    }

    #[test]
    fn owned_objects_point_at_their_pair() {
        let cp = fixtures::pair(serde_json::json!({}));
        let meta = owned_meta(&cp, "demo-x".into());
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("CachePair", "demo", Some(true)));
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
        assert_eq!(meta.labels.unwrap()[labels::PAIR], "demo");
    }
}
