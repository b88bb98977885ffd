//! The objects a CachePair owns, as pure functions of the resource, of the operator's
//! [`Settings`] (and, for a member pod, of its peer's address). Nothing here talks to the API
//! server.

mod network;
mod pod;
pub mod replication_tls;
mod services;
mod vrrp;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::{CachePair, DEFAULT_IMAGE};
pub use network::{network_policy, pod_disruption_budget};
pub use pod::{ADMIN_TOKEN_KEY, MEMBER_CONTAINER, SECRET_KEY, SERVING_CONDITION, USERS_KEY, member_pod, revision};
pub use services::{
    admin_secret, client_service, members_service, replication_secret, service_monitor, service_monitor_resource,
};
pub use vrrp::{VRRP_CONTAINER, keepalived_conf, vrrp_secret};

/// What the operator's own configuration, not a CachePair's author, decides in a pair's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The operator's namespace (`POD_NAMESPACE`), the one namespace whose pods reach the
    /// members' admin port; `None` when the operator runs outside the cluster.
    pub namespace: Option<String>,
    /// The image of the VRRP sidecar, which runs as root with NET_ADMIN and NET_RAW on the host
    /// network (`--vrrp-image`).
    pub vrrp_image: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self { namespace: None, vrrp_image: DEFAULT_IMAGE.into() }
    }
}

/// Metadata of an object the pair owns: its namespace, labels and the controller reference
/// that makes Kubernetes delete it with the pair.
pub fn owned_meta(cp: &CachePair, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cp.metadata.namespace.clone(),
        labels: Some(cp.owned_labels()),
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
    fn owned_objects_point_at_their_pair() {
        let cp = fixtures::pair(serde_json::json!({}));
        let meta = owned_meta(&cp, "demo-x".into());
        let owner = &meta.owner_references.unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("CachePair", "demo", Some(true)));
        assert_eq!(meta.namespace.as_deref(), Some("shop"));
        assert_eq!(meta.labels.unwrap()[crate::pair::labels::PAIR], "demo");
    }
}
