//! The PodDisruptionBudget and the NetworkPolicy of a pair.

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Settings, owned_meta};
use crate::crd::{CachePair, NetworkPeer};

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

/// The label the API server puts on every namespace, with its name.
const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// `<name>`: who may connect to which port of the members. Policies add up (a connection any
/// policy admits is admitted), so this is the pair's only one. The kubelet's probes need no
/// rule: a pod's own node always reaches it.
pub fn network_policy(cp: &CachePair, settings: &Settings) -> NetworkPolicy {
    let spec = &cp.spec;
    let access = &spec.network_policy;
    let rule = |ports: &[u16], from: Option<Vec<NetworkPolicyPeer>>| NetworkPolicyIngressRule {
        from,
        ports: Some(
            ports
                .iter()
                .map(|&p| NetworkPolicyPort {
                    port: Some(IntOrString::Int(p.into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect(),
        ),
    };
    let members = NetworkPolicyPeer { pod_selector: Some(selector(cp)), ..Default::default() };
    // No allowedClients means every source, as before the field existed: closing the port on an
    // operator upgrade would cut off the clients of other namespaces without a word.
    let clients = (!access.allowed_clients.is_empty()).then(|| access.allowed_clients.iter().map(peer).collect());
    // The operator probes the members and switches them over on the admin port. Run outside the
    // cluster it has no namespace to name, and the port stays open so that it still works.
    let admins = settings.namespace.as_ref().map(|ns| {
        let operator = NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some([(NAMESPACE_NAME.into(), ns.clone())].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        std::iter::once(operator).chain(access.allowed_metrics_scrapers.iter().map(peer)).collect()
    });
    NetworkPolicy {
        metadata: owned_meta(cp, cp.name()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(cp)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                rule(&[spec.replication.port, spec.port, spec.admin_port], Some(vec![members])),
                rule(&[spec.port], clients),
                rule(&[spec.admin_port], admins),
            ]),
            ..Default::default()
        }),
    }
}

fn peer(p: &NetworkPeer) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: p.pod_selector.clone(),
        namespace_selector: p.namespace_selector.clone(),
        ip_block: p
            .ip_block
            .as_ref()
            .map(|b| IPBlock { cidr: b.cidr.clone(), except: (!b.except.is_empty()).then(|| b.except.clone()) }),
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

    /// Who reaches `port`: the union of the rules' sources, `None` when a rule admits everyone.
    fn sources(policy: &NetworkPolicy, port: u16) -> Option<Vec<NetworkPolicyPeer>> {
        let rules = policy.spec.as_ref().unwrap().ingress.as_ref().unwrap();
        let mut sources = Vec::new();
        for rule in rules {
            if rule.ports.as_ref().unwrap().iter().any(|p| p.port == Some(IntOrString::Int(port.into()))) {
                sources.extend(rule.from.clone()?);
            }
        }
        Some(sources)
    }

    fn operator_ns() -> Settings {
        Settings { namespace: Some("cachepair-system".into()), ..Settings::default() }
    }

    fn members() -> NetworkPolicyPeer {
        NetworkPolicyPeer { pod_selector: Some(selector(&pair(json!({})))), ..Default::default() }
    }

    fn namespace(name: &str) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some([(NAMESPACE_NAME.into(), name.into())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_members_reach_the_replication_port() {
        let cp = pair(json!({"replication": {"port": 12000}, "port": 11000, "adminPort": 9000}));
        let policy = network_policy(&cp, &operator_ns());
        assert_eq!(policy.metadata.name.as_deref(), Some("demo"));
        assert_eq!(sources(&policy, 12000), Some(vec![members()]), "members of this namespace only");
        assert_eq!(members().pod_selector.unwrap().match_labels.unwrap()[labels::PAIR], "demo");
        let spec = policy.spec.unwrap();
        assert_eq!(spec.pod_selector, members().pod_selector);
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    }

    #[test]
    fn the_admin_port_admits_the_operators_namespace_and_the_scrapers_only() {
        let cp = pair(json!({"networkPolicy": {
            "allowedClients": [{"podSelector": {}}],
            "allowedMetricsScrapers": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        }}));
        let prometheus = NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some([("name".into(), "monitoring".into())].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let policy = network_policy(&cp, &operator_ns());
        assert_eq!(sources(&policy, 9150), Some(vec![members(), namespace("cachepair-system"), prometheus]));
        let plain = network_policy(&pair(json!({})), &operator_ns());
        assert_eq!(sources(&plain, 9150), Some(vec![members(), namespace("cachepair-system")]));
        // An operator outside the cluster has no namespace to name: it must still reach them.
        assert_eq!(sources(&network_policy(&pair(json!({})), &Settings::default()), 9150), None);
    }

    #[test]
    fn the_client_port_admits_the_allowed_clients_and_by_default_everyone() {
        let cp = pair(json!({"networkPolicy": {"allowedClients": [
            {"podSelector": {"matchLabels": {"app": "shop"}}},
            {"namespaceSelector": {"matchLabels": {"team": "web"}}, "podSelector": {}},
            {"ipBlock": {"cidr": "10.8.0.0/16", "except": ["10.8.1.0/24"]}},
        ]}}));
        let from = sources(&network_policy(&cp, &operator_ns()), 11211).unwrap();
        assert_eq!(from.len(), 4);
        assert_eq!(from[0], members());
        assert_eq!(from[1].pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["app"], "shop");
        assert!(from[1].namespace_selector.is_none(), "the pair's namespace");
        assert_eq!(from[2].namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["team"], "web");
        assert_eq!(from[2].pod_selector, Some(LabelSelector::default()));
        let block = from[3].ip_block.as_ref().unwrap();
        assert_eq!((block.cidr.as_str(), block.except.as_deref()), ("10.8.0.0/16", Some(&["10.8.1.0/24".into()][..])));
        assert_eq!(sources(&network_policy(&pair(json!({})), &operator_ns()), 11211), None);
    }
}
