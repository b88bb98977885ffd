//! The `CachePair` resource: a replicated pair of cache-node pods (group `cachepair.io`,
//! version `v1alpha1`). Defaults and validation live in the schema, so the API server rejects
//! a bad spec with the field's name before the operator ever sees it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, LocalObjectReference, ResourceRequirements, SELinuxOptions, SeccompProfile,
    Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The image the operator runs when the spec names none.
pub const DEFAULT_IMAGE: &str = "cachepair/cache-node:0.1.0";

/// A highly available memcached: two cache-node members with pair replication. Writes to either
/// reach the other; when the master dies the slave takes over within a second, and the failed
/// member comes back as a slave (no pre-emption).
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cachepair.io",
    version = "v1alpha1",
    kind = "CachePair",
    plural = "cachepairs",
    shortname = "cp",
    doc = "A CachePair: two cache-node members with pair replication, the client Service that follows the master, and their bookkeeping.",
    namespaced,
    status = "CachePairStatus",
    printcolumn = r#"{"name":"Master","type":"string","jsonPath":".status.master"}"#,
    printcolumn = r#"{"name":"Slave","type":"string","jsonPath":".status.slave"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Failovers","type":"integer","jsonPath":".status.failoverCount","priority":1}"#,
    printcolumn = r#"{"name":"Last Failover","type":"date","jsonPath":".status.lastFailoverTime","priority":1}"#,
    printcolumn = r#"{"name":"Lag Bytes","type":"integer","jsonPath":".status.lagBytes","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CachePairSpec {
    /// The members' cache-node image. The VRRP sidecar (root, with NET_ADMIN and NET_RAW on the
    /// host network) does not run it: its image is the operator's (`--vrrp-image`).
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,
    /// Image pull policy of the members (Kubernetes' default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Item memory per member, in megabytes (`-m`).
    #[serde(default = "default_memory_mb", rename = "memoryMB")]
    #[schemars(range(min = 1, max = 1048576))]
    pub memory_mb: u32,
    /// Client connections per member (`-c`).
    #[serde(default = "default_max_connections")]
    #[schemars(range(min = 1, max = 1048576))]
    pub max_connections: u32,
    /// Worker threads per member (`-t`).
    #[serde(default = "default_threads")]
    #[schemars(range(min = 1, max = 256))]
    pub threads: u32,
    /// The client port (`-p`).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// The admin listener's port: metrics, health and role (`--admin-listen`).
    #[serde(default = "default_admin_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin_port: u16,
    #[serde(default)]
    pub replication: Replication,
    #[serde(default)]
    pub exposure: Exposure,
    /// Client logins: when set, a client serves nothing until it has logged in as one of the
    /// Secret's users (SASL PLAIN on the binary protocol, memcached's login token on the text
    /// protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ClientAuth>,
    /// TLS on the client port: when set, the members take TLS connections only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// Requests and limits of the cache-node container. Without a memory limit, the member
    /// gets one (and the same request) from `memoryMB`, `replication.backlogKiB` and
    /// `maxConnections` (see `CachePairSpec::member_memory_mib`); a limit given here should
    /// leave as much room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Extra scheduling constraints; the members' anti-affinity is added per `antiAffinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How strictly the two members are kept on different nodes.
    #[serde(default)]
    pub anti_affinity: AntiAffinity,
    /// Whether a PodDisruptionBudget keeps voluntary disruptions from taking the master.
    #[serde(default = "default_true")]
    pub pod_disruption_budget: bool,
    #[serde(default)]
    pub monitoring: Monitoring,
    #[serde(default)]
    pub network_policy: NetworkPolicySettings,
    #[serde(default)]
    pub pod_template: PodTemplate,
    /// Seconds a member's pod may sit on an unreachable node before the operator force-deletes
    /// it and re-seeds the member elsewhere.
    #[serde(default = "default_node_lost_timeout")]
    #[schemars(range(min = 0, max = 86400))]
    pub node_lost_timeout_seconds: u32,
    /// Set to a new value to request a planned switchover: the slave takes the master role with
    /// no write lost. The operator records the value it acted on in `status.switchover`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub switchover: Option<String>,
    /// Set to re-create a member from scratch as a slave of the master (a full sync), once per
    /// token. A member that is master hands its role to an in-sync slave first; without one, the
    /// request waits (the conditions say why). The operator records the token it acted on in
    /// `status.reseed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseed: Option<ReseedRequest>,
    /// Members kept out of client routing: their readiness gate `cachepair.io/serving` is held
    /// False. A master named here hands its role to the slave first, when the slave is in sync
    /// and not named here too; until then it keeps serving (the conditions say why). Removing a
    /// member from the list un-fences it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2), extend("x-kubernetes-list-type" = "set"))]
    pub fenced: Vec<MemberName>,
}

/// One member of a pair by its suffix: `a` (pod `<name>-a`) or `b`.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberName {
    A,
    B,
}

/// A request to re-seed a member (`spec.reseed`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReseedRequest {
    /// The member to re-create.
    pub member: MemberName,
    /// A new value for each re-seed wanted.
    #[schemars(length(min = 1, max = 63))]
    pub token: String,
}

/// What the members' pods carry besides the cache: metadata, identity, scheduling and extra
/// containers. A change rolls the members like any other spec change: the slave first, then a
/// switchover to it (no write lost), then the ex-master.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Added to each member pod; the operator's own `cachepair.io/` labels cannot be set here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(k, !k.startsWith('cachepair.io/'))",
        "message": "labels under cachepair.io/ are the operator's",
    }]))]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// For a cache-node image (or sidecar image) in a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The members' service account (the namespace's `default` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,
    /// Mount the service account's API token in the members. cache-node never calls the API
    /// server, so it is off unless a sidecar needs it.
    #[serde(default)]
    pub automount_service_account_token: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Spread constraints of the members, besides `antiAffinity`; one without a
    /// `labelSelector` selects the pair's two members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Extra environment of the cache-node container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(e, e.name != 'POD_IP')",
        "message": "POD_IP is set by the operator",
    }]))]
    pub env: Vec<EnvVar>,
    /// Extra containers beside cache-node (a log shipper, a proxy); they share the pod's network
    /// and are restarted with the pod, never alone (the pod's restartPolicy is Never).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(c, c.name != 'cache-node' && c.name != 'vrrp')",
        "message": "the containers cache-node and vrrp are the operator's",
    }]))]
    pub sidecars: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityOverrides>,
}

/// The members' security settings that may change. The rest stays as the operator sets it:
/// cache-node runs as non-root, without privilege escalation or capabilities, on a read-only
/// root filesystem.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.seccompProfile) || self.seccompProfile.type != 'Unconfined'",
    "message": "seccompProfile.type Unconfined is not allowed",
    "fieldPath": ".seccompProfile.type",
}]))]
pub struct SecurityOverrides {
    /// The cache-node container's uid (default 65532, the image's); never root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub run_as_group: Option<i64>,
    /// The group that owns the mounted Secret files (default 65532).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub fs_group: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub se_linux_options: Option<SELinuxOptions>,
    /// RuntimeDefault (the default) or a Localhost profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Pair replication between the members.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replication {
    /// The replication port (`-X`).
    #[serde(default = "default_repl_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// `async` acknowledges a write at once; `sync` waits for the slave (up to
    /// `syncTimeoutMillis`), so that a failover loses no acknowledged write.
    #[serde(default)]
    pub mode: ReplicationMode,
    /// Heartbeat period on the link (`--repl-heartbeat-ms`).
    #[serde(default = "default_heartbeat")]
    #[schemars(range(min = 10, max = 10000))]
    pub heartbeat_millis: u32,
    /// Heartbeats missed before the peer is declared dead (`--repl-misses`).
    #[serde(default = "default_misses")]
    #[schemars(range(min = 1, max = 100))]
    pub misses: u32,
    /// How long a write waits for the slave in sync mode (`--repl-sync-timeout-ms`).
    #[serde(default = "default_sync_timeout")]
    #[schemars(range(min = 1, max = 60000))]
    pub sync_timeout_millis: u32,
    /// Replication backlog, in KiB (`-q`): how far the slave may fall behind and still resume.
    #[serde(default = "default_backlog", rename = "backlogKiB")]
    #[schemars(range(min = 64, max = 16777216))]
    pub backlog_kib: u32,
    /// A Secret whose key `secret` holds the shared replication secret. When unset, the
    /// operator generates `<name>-replication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
    /// Mutual TLS between the members (on unless turned off).
    #[serde(default)]
    pub tls: ReplicationTls,
}

/// Mutual TLS on the replication link (`spec.replication.tls`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationTls {
    /// Encrypt the link and have each member prove the pair's CA to the other, besides the
    /// shared secret.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A Secret with `tls.crt`, `tls.key` and `ca.crt` (a cert-manager Certificate's shape)
    /// whose certificate names `cachepair-replication` (a DNS SAN), presented by both
    /// members. When unset, the operator keeps a CA of the pair's own and its certificate in
    /// `<name>-replication-tls`, renewed a month before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

impl Default for ReplicationTls {
    fn default() -> Self {
        Self { enabled: true, secret_name: None }
    }
}

/// Client logins (`spec.auth`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientAuth {
    /// A Secret in the pair's namespace whose key `users` holds the users, one `user:password`
    /// per line (memcached's auth file; no spaces). Edit it to add, remove or rotate users: the
    /// members re-read it when the kubelet updates their copy, with no restart or failover.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// TLS on the client port (`spec.tls`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientTls {
    /// A Secret with `tls.crt` (the certificate chain) and `tls.key`, and `ca.crt` when client
    /// certificates are asked for: the shape of a cert-manager Certificate's Secret. A renewed
    /// certificate is picked up without a restart.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Whether clients must present a certificate signed by the Secret's `ca.crt`.
    #[serde(default)]
    pub client_certificates: ClientCertificates,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClientCertificates {
    /// Not asked for.
    #[default]
    None,
    /// Asked for and checked when given (memcached's `ssl_verify_mode=1`).
    Optional,
    /// Required (`ssl_verify_mode=2`).
    Required,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationMode {
    #[default]
    Async,
    Sync,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AntiAffinity {
    /// Never on the same node (the default: a node failure must not take both).
    #[default]
    Required,
    /// On different nodes when the scheduler can.
    Preferred,
    /// No constraint.
    None,
}

/// How clients reach the master: a Service (the default), or a VRRP virtual IP on bare metal.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.vrrp) || !has(self.service) || self.service.type == 'ClusterIP'",
    "message": "exposure.service.type must be ClusterIP when exposure.vrrp is set",
    "fieldPath": ".service.type",
}]))]
pub struct Exposure {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceExposure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vrrp: Option<Vrrp>,
}

/// The client Service `<name>`, which routes to the current master only.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceExposure {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// keepalived-style VRRP on bare metal: the members run with `hostNetwork` on two named nodes
/// and a `cache-node vrrp` sidecar holds the virtual IP on the master's node.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.nodes[0] != self.nodes[1]",
        "message": "exposure.vrrp.nodes must name two different nodes",
        "fieldPath": ".nodes",
    },
    {
        "rule": "self.version == 3 || !has(self.advertIntervalMillis) || self.advertIntervalMillis % 1000 == 0",
        "message": "VRRPv2 advertises in whole seconds: advertIntervalMillis must be a multiple of 1000",
        "fieldPath": ".advertIntervalMillis",
    },
    {
        "rule": "self.version == 3 || !self.virtualIP.contains(':')",
        "message": "VRRPv2 is IPv4 only: an IPv6 virtualIP needs version 3",
        "fieldPath": ".virtualIP",
    },
    {
        "rule": "!has(self.advertIntervalMillis) || self.advertIntervalMillis % 10 == 0",
        "message": "VRRP advertises in centiseconds: advertIntervalMillis must be a multiple of 10",
        "fieldPath": ".advertIntervalMillis",
    },
    {
        "rule": "self.version == 2 || !has(self.authSecretName)",
        "message": "authentication exists in VRRPv2 only: authSecretName needs version 2",
        "fieldPath": ".authSecretName",
    },
]))]
pub struct Vrrp {
    /// The virtual IP (IPv4 or IPv6) that follows the master.
    #[serde(rename = "virtualIP")]
    #[schemars(length(min = 2, max = 45), regex(pattern = r"^[0-9a-fA-F.:]+$"))]
    pub virtual_ip: String,
    /// The host interface the VIP is added to.
    #[schemars(length(min = 1, max = 15))]
    pub interface: String,
    /// VRRP virtual router id, unique on the network segment.
    #[serde(rename = "routerID")]
    #[schemars(range(min = 1, max = 255))]
    pub router_id: u8,
    /// VRRP version: 2 (keepalived's default, with optional PASS auth) or 3.
    #[serde(default = "default_vrrp_version")]
    #[schemars(range(min = 2, max = 3))]
    pub version: u8,
    /// Advertisement interval; by default 100 ms with VRRPv3 (a failover in well under a
    /// second) and 1 s with VRRPv2, which advertises in whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 40950))]
    pub advert_interval_millis: Option<u32>,
    /// A Secret whose key `password` holds the VRRPv2 PASS authentication (8 characters at most).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub auth_secret_name: Option<String>,
    /// The two nodes the members are pinned to: member `a` on the first, `b` on the second.
    #[schemars(length(min = 2, max = 2))]
    pub nodes: Vec<String>,
    /// VRRP priority of both members; the cache's role, not the priority, decides who holds
    /// the VIP (keepalived's `nopreempt` setup).
    #[serde(default = "default_vrrp_priority")]
    #[schemars(range(min = 1, max = 254))]
    pub priority: u8,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Create a prometheus-operator ServiceMonitor for the members' `/metrics`.
    #[serde(default)]
    pub service_monitor: bool,
}

/// What the operator observed and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CachePairStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The member serving as master (`<name>-a` or `<name>-b`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The member replicating from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slave: Option<String>,
    /// Ready, Replicating, Degraded and SpecValid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub failover_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover_time: Option<Time>,
    /// The last `spec.switchover` value acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<String>,
    /// The last `spec.reseed.token` acted on (the member's pod was deleted to be re-created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reseed: Option<String>,
    /// Each member as last observed: role, node, replication offset and lag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Bytes of the master's replication stream the slave has not acknowledged yet (the
    /// master's `members[].lagBytes`): what a failover now would lose in asynchronous mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// Hash of the pod template the members should run (for rolling spec changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One member of the pair in `status.members`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The pod: `<name>-a` or `<name>-b`.
    pub name: String,
    /// master, slave, starting or down (the pod label `cachepair.io/role`).
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// End of the member's replication stream, in bytes (when its admin listener answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_bytes: Option<u64>,
    /// Bytes of its stream its peer has not acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<u64>,
    /// Times the member took over as master by itself since it started, having lost its master
    /// (a role handed over to it does not count): the operator tells a failover from a
    /// hand-over by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotions: Option<u64>,
    /// Out of client routing: its readiness gate `cachepair.io/serving` is False (by
    /// `spec.fenced`, or because a higher term superseded it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced: bool,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Members are being created.
    Pending,
    /// A master serves; the slave is taking its full copy.
    Syncing,
    /// Master and slave linked.
    Ready,
    /// The master serves alone (the other member is down or being re-seeded).
    Degraded,
    /// No member serves.
    Down,
    /// The spec cannot be realised (see the SpecValid condition).
    Invalid,
}

impl Phase {
    pub const ALL: [Phase; 6] =
        [Phase::Pending, Phase::Syncing, Phase::Ready, Phase::Degraded, Phase::Down, Phase::Invalid];
}

impl Default for Replication {
    fn default() -> Self {
        Self {
            port: default_repl_port(),
            mode: ReplicationMode::default(),
            heartbeat_millis: default_heartbeat(),
            misses: default_misses(),
            sync_timeout_millis: default_sync_timeout(),
            backlog_kib: default_backlog(),
            secret_name: None,
            tls: ReplicationTls::default(),
        }
    }
}

fn default_image() -> String {
    DEFAULT_IMAGE.into()
}
fn default_memory_mb() -> u32 {
    64
}
fn default_max_connections() -> u32 {
    1024
}
fn default_threads() -> u32 {
    4
}
fn default_port() -> u16 {
    11211
}
fn default_admin_port() -> u16 {
    9150
}
fn default_repl_port() -> u16 {
    11212
}
fn default_heartbeat() -> u32 {
    100
}
fn default_misses() -> u32 {
    3
}
fn default_sync_timeout() -> u32 {
    500
}
impl CachePairSpec {
    /// The memory a member uses at most, in MiB: items (`memoryMB`) and the replication
    /// backlog, cache-node's fixed overhead (runtime, threads, the hash table's growth), 15% for
    /// the allocator's fragmentation, and the buffers of every connection `maxConnections`
    /// allows. cache-node's memory benchmark checks the 15% (README, Memory).
    pub fn member_memory_mib(&self) -> u64 {
        const FIXED_MIB: u64 = 16;
        const PER_CONNECTION_KIB: u64 = 32;
        let steady = u64::from(self.memory_mb) + u64::from(self.replication.backlog_kib).div_ceil(1024) + FIXED_MIB;
        (steady * 115).div_ceil(100) + (u64::from(self.max_connections) * PER_CONNECTION_KIB).div_ceil(1024)
    }
}

fn default_backlog() -> u32 {
    65536
}
fn default_true() -> bool {
    true
}
fn default_node_lost_timeout() -> u32 {
    60
}
fn default_vrrp_version() -> u8 {
    3
}
fn default_vrrp_priority() -> u8 {
    100
}

// ---- spec.networkPolicy -------------------------------------------------------------------

/// Who may connect to the members, as the NetworkPolicy `<name>` says: the replication port
/// admits the two members only; the admin port (metrics, role, and `/switchover`, which takes
/// no credentials) the members, the operator's namespace and `allowedMetricsScrapers`; the
/// client port the members and `allowedClients`. It takes a network plugin that enforces
/// NetworkPolicies, and restricts nothing in VRRP mode: pods on the host network are not
/// subject to NetworkPolicies.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySettings {
    /// Sources admitted to the client port besides the members. Empty (the default): every
    /// source, as before this field existed (Kubernetes reads an empty `from` so too). List
    /// `{podSelector: {}}` to admit the pair's own namespace only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_clients: Vec<NetworkPeer>,
    /// Sources admitted to the admin port besides the members and the operator's namespace:
    /// Prometheus, when it scrapes the members (`monitoring.serviceMonitor`) from elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allowed_metrics_scrapers: Vec<NetworkPeer>,
}

/// A source of connections, as a NetworkPolicy's `from` names one: pods by label (in the
/// pair's namespace, or in the namespaces `namespaceSelector` picks), or an IP block.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.podSelector) || has(self.namespaceSelector) || has(self.ipBlock)",
        "message": "a peer needs podSelector, namespaceSelector or ipBlock",
    },
    {
        "rule": "!has(self.ipBlock) || !(has(self.podSelector) || has(self.namespaceSelector))",
        "message": "ipBlock excludes podSelector and namespaceSelector",
        "fieldPath": ".ipBlock",
    },
]))]
pub struct NetworkPeer {
    /// Pods by label (`{}`: every pod), in the pair's namespace unless `namespaceSelector` is
    /// given too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces by label (`{}`: every namespace; each has `kubernetes.io/metadata.name`): all
    /// their pods, or those `podSelector` picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// Addresses outside the cluster's pods, e.g. a load balancer's or another network's.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    /// A network, e.g. `10.0.0.0/8` or `2001:db8::/32`.
    #[schemars(length(min = 3, max = 49), regex(pattern = r"^[0-9a-fA-F.:]+/[0-9]{1,3}$"))]
    pub cidr: String,
    /// Networks within `cidr` that are not admitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub except: Vec<String>,
}

/// The CustomResourceDefinition as YAML, as `crdgen` prints it and `crds/cachepair.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    let header = "# Generated by `cargo run -p operator --bin crdgen`; do not edit.\n";
    let mut crd = serde_json::to_value(CachePair::crd()).expect("a CRD serializes");
    drop_unsigned_formats(&mut crd);
    Ok(format!("{header}{}", serde_yaml::to_string(&crd)?))
}

/// schemars marks unsigned integers `format: uint16` and the like, which the API server does
/// not know and warns about on every apply; the ranges already say it.
fn drop_unsigned_formats(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map.get("format").and_then(|f| f.as_str()).is_some_and(|f| f.starts_with("uint")) {
                map.remove("format");
            }
            map.values_mut().for_each(drop_unsigned_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_unsigned_formats),
        _ => {}
    }
}
