//! The client Service (the master only), the members' headless Service and the
//! ServiceMonitor that scrapes it, and the generated replication Secret.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ApiResource;
use serde_json::json;

use super::owned_meta;
use super::pod::{ADMIN_TOKEN_KEY, SECRET_KEY};
use crate::crd::CachePair;
use crate::pair::labels;

fn port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: port.into(),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// `<name>`: selects both members, but only the master's pod is Ready (its readiness probe is
/// `/master`), so only the master is an endpoint, with or without the operator running.
pub fn client_service(cp: &CachePair) -> Service {
    let exposure = cp.spec.exposure.service.clone().unwrap_or_default();
    let mut meta = owned_meta(cp, cp.name());
    meta.annotations = (!exposure.annotations.is_empty()).then(|| exposure.annotations.clone());
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(exposure.type_.as_str().into()),
            selector: Some(cp.members_selector()),
            ports: Some(vec![port("memcache", cp.spec.port)]),
            ..Default::default()
        }),
        status: None,
    }
}

/// `<name>-members`: headless, with every member listed whether Ready or not: the members'
/// DNS names, and the scrape target for both members' `/metrics`.
pub fn members_service(cp: &CachePair) -> Service {
    Service {
        metadata: owned_meta(cp, cp.members_service_name()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(cp.members_selector()),
            ports: Some(vec![
                port("memcache", cp.spec.port),
                port("replication", cp.spec.replication.port),
                port("admin", cp.spec.admin_port),
            ]),
            ..Default::default()
        }),
        status: None,
    }
}

/// prometheus-operator's ServiceMonitor, which this crate has no types for.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    }
}

/// `<name>`: scrapes both members' `/metrics` through the headless Service.
pub fn service_monitor(cp: &CachePair) -> serde_json::Value {
    json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": owned_meta(cp, cp.name()),
        "spec": {
            "selector": {"matchLabels": cp.owned_labels()},
            "endpoints": [{"port": "admin", "path": "/metrics", "interval": "15s"}],
            // The chart's alerts and dashboard group the members' series by pair.
            "podTargetLabels": [labels::PAIR, labels::MEMBER],
        },
    })
}

/// The generated replication secret (`<name>-replication`), from 32 random bytes. Created once
/// and never rewritten: the members hold it.
pub fn replication_secret(cp: &CachePair, random: &[u8; 32]) -> Secret {
    use base64::Engine as _;
    let secret = base64::engine::general_purpose::STANDARD.encode(random);
    opaque_secret(cp, cp.replication_secret_name(), SECRET_KEY, secret)
}

/// The admin token (`<name>-admin`), 32 random bytes in hex: the members ask for it on
/// /switchover, and the operator sends it. Created once, like the replication secret.
pub fn admin_secret(cp: &CachePair, random: &[u8; 32]) -> Secret {
    let token = random.iter().map(|b| format!("{b:02x}")).collect();
    opaque_secret(cp, cp.admin_secret_name(), ADMIN_TOKEN_KEY, token)
}

fn opaque_secret(cp: &CachePair, name: String, key: &str, value: String) -> Secret {
    Secret {
        metadata: owned_meta(cp, name),
        data: Some(BTreeMap::from([(key.into(), ByteString(value.into_bytes()))])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::render::fixtures::pair;

    #[test]
    fn the_client_service_selects_the_pair_on_the_client_port() {
        let cp = pair(json!({"port": 11311, "exposure": {"service": {"type": "LoadBalancer",
            "annotations": {"lb.example/internal": "true"}}}}));
        let svc = client_service(&cp);
        assert_eq!(svc.metadata.name.as_deref(), Some("demo"));
        assert_eq!(svc.metadata.annotations.as_ref().unwrap()["lb.example/internal"], "true");
        let spec = svc.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.selector.unwrap(), BTreeMap::from([(labels::PAIR.to_string(), "demo".to_string())]));
        let ports = spec.ports.unwrap();
        assert_eq!((ports.len(), ports[0].port), (1, 11311));
        assert!(spec.publish_not_ready_addresses.is_none(), "only Ready pods (the master) are endpoints");
    }

    #[test]
    fn the_members_service_is_headless_and_lists_every_member() {
        let spec = members_service(&pair(json!({}))).spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let ports: Vec<i32> = spec.ports.unwrap().iter().map(|p| p.port).collect();
        assert_eq!(ports, [11211, 11212, 9150]);
    }

    #[test]
    fn the_service_monitor_scrapes_the_admin_port_and_keeps_the_pair_label() {
        let sm = service_monitor(&pair(json!({})));
        assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
        assert_eq!(sm["spec"]["podTargetLabels"], json!(["cachepair.io/pair", "cachepair.io/member"]));
    }

    #[test]
    fn the_generated_secret_holds_the_random_bytes() {
        let secret = replication_secret(&pair(json!({})), &[7; 32]);
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-replication"));
        let value = &secret.data.unwrap()[SECRET_KEY];
        assert_eq!(value.0.len(), 44, "32 bytes in base64");
        let user = pair(json!({"replication": {"secretName": "mine"}}));
        assert_eq!(user.replication_secret_name(), "mine");
    }
}
