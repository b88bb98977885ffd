//! A pair's identity: its two members, their pod names, and the labels on everything it owns.

use std::collections::BTreeMap;

use crate::crd::{CachePair, MemberName};

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

impl From<MemberName> for Member {
    fn from(name: MemberName) -> Member {
        match name {
            MemberName::A => Member::A,
            MemberName::B => Member::B,
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
    /// How the member's replication link is secured: `on`, `migrating` or `off` (see
    /// `render::replication_tls::LinkTls`); none on a pod made before the link had TLS.
    pub const REPLICATION_TLS: &str = "cachepair.io/replication-tls";
}

impl CachePair {
    pub fn name(&self) -> String {
        self.metadata.name.clone().unwrap_or_default()
    }

    /// The labels every object of the pair carries; `pair` alone selects its member pods
    /// (not `labels`: that would hide `ResourceExt::labels`).
    pub fn owned_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "cache-node".into()),
            ("app.kubernetes.io/instance".into(), self.name()),
            ("app.kubernetes.io/managed-by".into(), "cachepair-operator".into()),
            (labels::PAIR.into(), self.name()),
        ])
    }

    /// Selects the pair's member pods.
    pub fn members_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(labels::PAIR.into(), self.name())])
    }

    /// The Secret holding the replication secret: the user's, or the generated one.
    pub fn replication_secret_name(&self) -> String {
        self.spec.replication.secret_name.clone().unwrap_or_else(|| format!("{}-replication", self.name()))
    }

    /// The Secret holding the token the admin listeners ask for on /switchover: always the
    /// operator's own, generated once.
    pub fn admin_secret_name(&self) -> String {
        format!("{}-admin", self.name())
    }

    /// The Secret of the replication link's TLS, when it is on: the user's, or the operator's.
    pub fn replication_tls_secret_name(&self) -> Option<String> {
        let tls = &self.spec.replication.tls;
        tls.enabled
            .then(|| tls.secret_name.clone().unwrap_or_else(|| crate::render::replication_tls::secret_name(self)))
    }

    /// The headless Service of the members.
    pub fn members_service_name(&self) -> String {
        format!("{}-members", self.name())
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
}
