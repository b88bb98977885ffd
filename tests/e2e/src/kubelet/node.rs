//! The Node object and its heartbeats: a Lease renewed every 2 s and the Ready condition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use super::Shared;

const LEASE_SECONDS: i32 = 40;

pub(super) async fn register(shared: &Shared) -> anyhow::Result<()> {
    let name = &shared.config.node;
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_string(), name.clone()),
                ("kubernetes.io/os".to_string(), "linux".to_string()),
                ("kubernetes.io/arch".to_string(), "amd64".to_string()),
            ])),
            ..Default::default()
        },
        ..Default::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    report_status(shared).await?;
    renew_lease(shared).await
}

/// Keeps the node alive for the control plane until the task is aborted.
pub(super) async fn heartbeat(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut n = 0u32;
    loop {
        tick.tick().await;
        if let Err(e) = renew_lease(&shared).await {
            tracing::warn!(error = %e, "node lease");
        }
        n += 1;
        if n.is_multiple_of(5)
            && let Err(e) = report_status(&shared).await
        {
            tracing::warn!(error = %e, "node status");
        }
    }
}

async fn report_status(shared: &Shared) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let now = Time(Timestamp::now());
    let quantity = |q: &str| Quantity(q.to_string());
    let resources = BTreeMap::from([
        ("cpu".to_string(), quantity("16")),
        ("memory".to_string(), quantity("64Gi")),
        ("pods".to_string(), quantity("110")),
    ]);
    let status = NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        // No Hostname address: the API server reaches a kubelet at the first address of the
        // types it prefers, Hostname first, and `node-<n>` resolves nowhere here.
        addresses: Some(vec![NodeAddress { type_: "InternalIP".into(), address: shared.node_ip() }]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: super::server::PORT.into() }),
        }),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("process kubelet is posting ready status".into()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        node_info: Some(NodeSystemInfo {
            architecture: "amd64".into(),
            boot_id: String::new(),
            container_runtime_version: "process://0".into(),
            kernel_version: String::new(),
            kube_proxy_version: String::new(),
            kubelet_version: "v1.37.2".into(),
            machine_id: String::new(),
            operating_system: "linux".into(),
            os_image: "process kubelet".into(),
            system_uuid: String::new(),
            ..Default::default()
        }),
        ..Default::default()
    };
    nodes
        .patch_status(&shared.config.node, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await?;
    Ok(())
}

async fn renew_lease(shared: &Shared) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let name = &shared.config.node;
    let lease = Lease {
        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.clone()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    let mut value = serde_json::to_value(&lease)?;
    value["apiVersion"] = "coordination.k8s.io/v1".into();
    value["kind"] = "Lease".into();
    leases.patch(name, &PatchParams::apply("process-kubelet").force(), &Patch::Apply(value)).await?;
    Ok(())
}
