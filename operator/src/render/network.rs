//! The PodDisruptionBudget and the NetworkPolicy of a pair.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::owned_meta;
use crate::crd::CachePair;

fn selector(cp: &CachePair) -> LabelSelector {
    LabelSelector { match_labels: Some(cp.members_selector()), ..Default::default() }
}

/// Voluntary disruptions (drains) may not take the master: only the master is Ready, so one
/// Ready pod must stay. The slave, never Ready, may always be evicted (`AlwaysAllow`); when
/// the master's node is being drained (cordoned, or tainted for removal by an autoscaler) the
/// operator switches over, and the drain can then evict it.
pub fn pod_disruption_budget(cp: &CachePair) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(cp, cp.name()),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(selector(cp)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The replication port takes connections from the two members only; the client and admin
/// ports stay open to the namespace's usual policy (clients, Prometheus, the operator).
pub fn network_policy(cp: &CachePair) -> NetworkPolicy {
    let port = |p: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(p.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    NetworkPolicy {
        metadata: owned_meta(cp, format!("{}-replication", cp.name())),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(cp)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer { pod_selector: Some(selector(cp)), ..Default::default() }]),
                    ports: Some(vec![port(cp.spec.replication.port)]),
                },
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![port(cp.spec.port), port(cp.spec.admin_port)]),
                },
            ]),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pair::labels;
    use crate::render::fixtures::pair;

    #[test]
    fn the_budget_keeps_the_master_and_lets_the_slave_go() {
        let spec = pod_disruption_budget(&pair(json!({}))).spec.unwrap();
        assert_eq!(spec.min_available, Some(IntOrString::Int(1)));
        assert_eq!(spec.unhealthy_pod_eviction_policy.as_deref(), Some("AlwaysAllow"));
        assert_eq!(spec.selector.unwrap().match_labels.unwrap()[labels::PAIR], "demo");
    }

    #[test]
    fn only_the_members_reach_the_replication_port() {
        let cp = pair(json!({"replication": {"port": 12000}, "port": 11000, "adminPort": 9000}));
        let spec = network_policy(&cp).spec.unwrap();
        let rules = spec.ingress.unwrap();
        let ports = |r: &NetworkPolicyIngressRule| -> Vec<IntOrString> {
            r.ports.as_ref().unwrap().iter().map(|p| p.port.clone().unwrap()).collect()
        };
        assert_eq!(ports(&rules[0]), [IntOrString::Int(12000)]);
        let from = rules[0].from.as_ref().unwrap();
        assert_eq!(from[0].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()[labels::PAIR], "demo");
        assert!(from[0].namespace_selector.is_none(), "members of this namespace only");
        assert_eq!(ports(&rules[1]), [IntOrString::Int(11000), IntOrString::Int(9000)]);
        assert!(rules[1].from.is_none());
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    }
}
