//! A member pod: cache-node with the spec's settings, probes on the admin listener, and (in
//! VRRP mode) the `cache-node vrrp` sidecar.
//!
//! Routing to the master does not depend on the operator: the readiness probe is the admin
//! listener's `/master`, which answers 200 only on the master, so only the master's pod is
//! Ready and only it is an endpoint of the client Service. When the slave takes over, its probe
//! passes within a second and the endpoints follow.
//!
//! The operator can fence a member that the probe would wrongly call Ready (an ex-master on a
//! dead node, the minority master of a partition): each pod carries the readiness gate
//! [`SERVING_CONDITION`], True from creation, so Ready needs both the probe and the operator's
//! consent, and routing keeps following the probe when the operator is down.
//!
//! Members run with `restartPolicy: Never`: a member whose process dies stays down until the
//! operator re-seeds it as a slave of the survivor. Restarting it in place would bring it back
//! with the command line it was created with, which may not name the current master.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodReadinessGate, PodSecurityContext, PodSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume,
    VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::replication_tls::{self, LinkTls};
use super::{Settings, owned_meta};
use crate::crd::{AntiAffinity, CachePair, CachePairSpec, ClientCertificates, PullPolicy, ReplicationMode};
use crate::pair::{Member, labels};

pub const MEMBER_CONTAINER: &str = "cache-node";
/// The readiness gate of every member: False while the operator fences the member.
pub const SERVING_CONDITION: &str = "cachepair.io/serving";
/// The key of the replication Secret that holds the shared secret.
pub const SECRET_KEY: &str = "secret";
const SECRET_DIR: &str = "/etc/cachepair/replication";
/// The key of the admin Secret that holds the token for /switchover.
pub const ADMIN_TOKEN_KEY: &str = "token";
const ADMIN_DIR: &str = "/etc/cachepair/admin";
/// The key of `spec.auth`'s Secret that holds the users.
pub const USERS_KEY: &str = "users";
const AUTH_DIR: &str = "/etc/cachepair/auth";
const TLS_DIR: &str = "/etc/cachepair/tls";
const REPL_TLS_DIR: &str = "/etc/cachepair/replication-tls";
/// Non-root uid of the distroless images.
const RUN_AS: i64 = 65532;
/// How long a master stopped by SIGTERM may take to hand its role to the slave (cache-node's
/// `--shutdown-timeout`, seconds); the pod's grace period leaves it room before SIGKILL.
const SHUTDOWN_TIMEOUT: i64 = 10;

/// The pod of `member`. `peer` is the current master's replication address (`host:port`) when
/// this member joins one as a slave; without it the member starts as master.
pub fn member_pod(cp: &CachePair, member: Member, peer: Option<&str>, settings: &Settings, link: LinkTls) -> Pod {
    let template = &cp.spec.pod_template;
    let mut meta = owned_meta(cp, member.pod_name(&cp.name()));
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(labels::MEMBER.into(), member.suffix().into());
    labels.insert(labels::REVISION.into(), revision(cp, settings, link));
    labels.insert(labels::REPLICATION_TLS.into(), link.label().into());
    // The operator's labels win over the template's.
    for (key, value) in &template.labels {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
    if !template.annotations.is_empty() {
        meta.annotations = Some(template.annotations.clone());
    }
    Pod { metadata: meta, spec: Some(pod_spec(cp, member, peer, settings, link)), status: None }
}

/// A short hash of everything the members' pods are made of: a member whose pod carries
/// another revision runs an older spec and is rolled (a new `--vrrp-image` too).
pub fn revision(cp: &CachePair, settings: &Settings, link: LinkTls) -> String {
    let template = &cp.spec.pod_template;
    let specs = [pod_spec(cp, Member::A, None, settings, link), pod_spec(cp, Member::B, None, settings, link)];
    let json = serde_json::to_vec(&(specs, &template.labels, &template.annotations)).expect("a pod spec serializes");
    let digest = Sha256::digest(&json);
    digest[..5].iter().map(|b| format!("{b:02x}")).collect()
}

fn pod_spec(cp: &CachePair, member: Member, peer: Option<&str>, settings: &Settings, link: LinkTls) -> PodSpec {
    let spec = &cp.spec;
    let template = &spec.pod_template;
    let security = template.security_context.clone().unwrap_or_default();
    let vrrp = spec.exposure.vrrp.as_ref();
    let mut containers = vec![cache_node_container(cp, peer, link)];
    containers.extend(template.sidecars.iter().cloned());
    let secret_volume = |name: &str, secret_name: String| Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Whole Secrets, never subPath mounts: the kubelet updates these in place when the Secret
    // changes, and the members re-read them (users, certificates) without a restart.
    let mut volumes = vec![
        secret_volume("replication-secret", cp.replication_secret_name()),
        secret_volume("admin-token", cp.admin_secret_name()),
    ];
    if let Some(auth) = &spec.auth {
        volumes.push(secret_volume("client-users", auth.secret_name.clone()));
    }
    if let Some(tls) = &spec.tls {
        volumes.push(secret_volume("client-tls", tls.secret_name.clone()));
    }
    if let Some(name) = cp.replication_tls_secret_name().filter(|_| link != LinkTls::Off) {
        // The certificate, its key and the CA's certificate: never the CA's key.
        let mut volume = secret_volume("replication-tls", name);
        let item = |key: &str| KeyToPath { key: key.into(), path: key.into(), ..Default::default() };
        volume.secret.as_mut().expect("a secret volume").items =
            Some(vec![item("ca.crt"), item("tls.crt"), item("tls.key")]);
        volumes.push(volume);
    }
    let mut node_selector = spec.node_selector.clone();
    if let Some(vrrp) = vrrp {
        containers.push(super::vrrp::sidecar(settings));
        volumes.push(super::vrrp::config_volume(cp, member));
        if let Some(node) = vrrp.nodes.get(member as usize) {
            node_selector.insert("kubernetes.io/hostname".into(), node.clone());
        }
    }
    PodSpec {
        containers,
        volumes: Some(volumes),
        restart_policy: Some("Never".into()),
        readiness_gates: Some(vec![PodReadinessGate { condition_type: SERVING_CONDITION.into() }]),
        hostname: Some(member.pod_name(&cp.name())),
        subdomain: Some(cp.members_service_name()),
        host_network: vrrp.map(|_| true),
        dns_policy: vrrp.map(|_| "ClusterFirstWithHostNet".into()),
        node_selector: (!node_selector.is_empty()).then_some(node_selector),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: affinity(cp),
        topology_spread_constraints: (!template.topology_spread_constraints.is_empty()).then(|| topology_spread(cp)),
        priority_class_name: template.priority_class_name.clone(),
        service_account_name: template.service_account_name.clone(),
        automount_service_account_token: Some(template.automount_service_account_token),
        image_pull_secrets: (!template.image_pull_secrets.is_empty()).then(|| template.image_pull_secrets.clone()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: vrrp.is_none().then_some(true),
            fs_group: Some(security.fs_group.unwrap_or(RUN_AS)),
            supplemental_groups: (!security.supplemental_groups.is_empty()).then_some(security.supplemental_groups),
            se_linux_options: security.se_linux_options,
            seccomp_profile: Some(
                security
                    .seccomp_profile
                    .unwrap_or_else(|| SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ),
            ..Default::default()
        }),
        termination_grace_period_seconds: Some(SHUTDOWN_TIMEOUT + 5),
        enable_service_links: Some(false),
        ..Default::default()
    }
}

/// The spec's resources, with a memory limit (and request) from the spec's sizes when it
/// gives none: a member without one could grow until the node runs out of memory.
fn member_resources(spec: &CachePairSpec) -> ResourceRequirements {
    let mut resources = spec.resources.clone().unwrap_or_default();
    let limits = resources.limits.get_or_insert_with(Default::default);
    if !limits.contains_key("memory") {
        let needed = Quantity(format!("{}Mi", spec.member_memory_mib()));
        limits.insert("memory".into(), needed.clone());
        resources.requests.get_or_insert_with(Default::default).entry("memory".into()).or_insert(needed);
    }
    resources
}

fn cache_node_container(cp: &CachePair, peer: Option<&str>, link: LinkTls) -> Container {
    let spec = &cp.spec;
    let repl = &spec.replication;
    let security = spec.pod_template.security_context.as_ref();
    let mut args: Vec<String> = vec![
        "-p".into(),
        spec.port.to_string(),
        "-m".into(),
        spec.memory_mb.to_string(),
        "-c".into(),
        spec.max_connections.to_string(),
        "-t".into(),
        spec.threads.to_string(),
        "-X".into(),
        repl.port.to_string(),
        "-q".into(),
        repl.backlog_kib.to_string(),
        "--repl-mode".into(),
        match repl.mode {
            ReplicationMode::Async => "async",
            ReplicationMode::Sync => "sync",
        }
        .into(),
        "--repl-heartbeat-ms".into(),
        repl.heartbeat_millis.to_string(),
        "--repl-misses".into(),
        repl.misses.to_string(),
        "--repl-sync-timeout-ms".into(),
        repl.sync_timeout_millis.to_string(),
        "--repl-secret-file".into(),
        format!("{SECRET_DIR}/{SECRET_KEY}"),
        "--admin-token-file".into(),
        format!("{ADMIN_DIR}/{ADMIN_TOKEN_KEY}"),
        "--shutdown-timeout".into(),
        SHUTDOWN_TIMEOUT.to_string(),
    ];
    // Each member binds its pod's address. In VRRP mode (host network, where the pod's address
    // is the node's) also the virtual IP, bound before the VIP arrives on this node
    // (--freebind), and nothing else of the host; the admin listener also on loopback, where
    // the sidecar asks it the role.
    args.extend(["-l".into(), "$(POD_IP)".into(), "--admin-listen".into(), format!("$(POD_IP):{}", spec.admin_port)]);
    if let Some(vrrp) = &spec.exposure.vrrp {
        args.extend([
            "-l".into(),
            vrrp.virtual_ip.clone(),
            "--freebind".into(),
            "--admin-listen".into(),
            format!("127.0.0.1:{}", spec.admin_port),
        ]);
    }
    if spec.auth.is_some() {
        // Both logins, against the same users: SASL for binary clients, the token for text ones.
        args.extend(["-S".into(), "-Y".into(), format!("{AUTH_DIR}/{USERS_KEY}")]);
    }
    if let Some(tls) = &spec.tls {
        let mut options = format!("ssl_chain_cert={TLS_DIR}/tls.crt,ssl_key={TLS_DIR}/tls.key");
        let verify = match tls.client_certificates {
            ClientCertificates::None => None,
            ClientCertificates::Optional => Some(1),
            ClientCertificates::Required => Some(2),
        };
        if let Some(mode) = verify {
            options.push_str(&format!(",ssl_ca_cert={TLS_DIR}/ca.crt,ssl_verify_mode={mode}"));
        }
        args.extend(["-Z".into(), "-o".into(), options]);
    }
    if link != LinkTls::Off {
        args.extend([
            "--repl-tls-cert".into(),
            format!("{REPL_TLS_DIR}/tls.crt"),
            "--repl-tls-key".into(),
            format!("{REPL_TLS_DIR}/tls.key"),
            "--repl-tls-ca".into(),
            format!("{REPL_TLS_DIR}/ca.crt"),
            "--repl-tls-name".into(),
            replication_tls::TLS_NAME.into(),
        ]);
    }
    if link == LinkTls::Migrating {
        args.push("--repl-tls-allow-plaintext".into());
    }
    if let Some(peer) = peer {
        args.extend(["-x".into(), peer.into()]);
    }
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        failure_threshold: Some(failures),
        success_threshold: Some(1),
        ..Default::default()
    };
    let port = |name: &str, port: u16| ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    Container {
        name: MEMBER_CONTAINER.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| {
            match p {
                PullPolicy::Always => "Always",
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Never => "Never",
            }
            .into()
        }),
        args: Some(args),
        env: Some(
            std::iter::once(EnvVar {
                name: "POD_IP".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector { field_path: "status.podIP".into(), ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .chain(spec.pod_template.env.iter().cloned())
            .collect(),
        ),
        ports: Some(vec![port("memcache", spec.port), port("replication", repl.port), port("admin", spec.admin_port)]),
        readiness_probe: Some(probe("/master", 1, 1)),
        liveness_probe: Some(probe("/healthz", 5, 3)),
        resources: Some(member_resources(spec)),
        volume_mounts: Some(
            [
                Some(("replication-secret", SECRET_DIR)),
                Some(("admin-token", ADMIN_DIR)),
                spec.auth.as_ref().map(|_| ("client-users", AUTH_DIR)),
                spec.tls.as_ref().map(|_| ("client-tls", TLS_DIR)),
                (link != LinkTls::Off).then_some(("replication-tls", REPL_TLS_DIR)),
            ]
            .into_iter()
            .flatten()
            .map(|(name, path)| VolumeMount {
                name: name.into(),
                mount_path: path.into(),
                read_only: Some(true),
                ..Default::default()
            })
            .collect(),
        ),
        security_context: Some(SecurityContext {
            run_as_user: Some(security.and_then(|s| s.run_as_user).unwrap_or(RUN_AS)),
            run_as_group: Some(security.and_then(|s| s.run_as_group).unwrap_or(RUN_AS)),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The template's spread constraints; one without a selector spreads the pair's members.
fn topology_spread(cp: &CachePair) -> Vec<TopologySpreadConstraint> {
    let members = LabelSelector { match_labels: Some(cp.members_selector()), ..Default::default() };
    let mut constraints = cp.spec.pod_template.topology_spread_constraints.clone();
    for c in &mut constraints {
        c.label_selector.get_or_insert_with(|| members.clone());
    }
    constraints
}

/// The user's affinity plus the members' anti-affinity on `kubernetes.io/hostname`.
fn affinity(cp: &CachePair) -> Option<Affinity> {
    let mut affinity = cp.spec.affinity.clone().unwrap_or_default();
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector { match_labels: Some(cp.members_selector()), ..Default::default() }),
        topology_key: "kubernetes.io/hostname".into(),
        ..Default::default()
    };
    let anti = affinity.pod_anti_affinity.get_or_insert_with(PodAntiAffinity::default);
    match cp.spec.anti_affinity {
        AntiAffinity::Required => {
            anti.required_during_scheduling_ignored_during_execution.get_or_insert_with(Vec::new).push(term)
        }
        AntiAffinity::Preferred => anti
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm { weight: 100, pod_affinity_term: term }),
        AntiAffinity::None => {}
    }
    if affinity.pod_anti_affinity.as_ref().is_some_and(|a| {
        a.required_during_scheduling_ignored_during_execution.is_none()
            && a.preferred_during_scheduling_ignored_during_execution.is_none()
    }) {
        affinity.pod_anti_affinity = None;
    }
    (affinity != Affinity::default()).then_some(affinity)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::render::fixtures::pair;

    fn args(pod: &Pod) -> Vec<String> {
        pod.spec.as_ref().unwrap().containers[0].args.clone().unwrap()
    }

    fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        args.iter().position(|a| a == name).map(|i| args[i + 1].as_str())
    }

    #[test]
    fn the_replication_link_is_mutual_tls_unless_turned_off() {
        let pod = member_pod(&pair(json!({})), Member::A, None, &Settings::default(), LinkTls::On);
        let a = args(&pod);
        assert_eq!(flag(&a, "--repl-tls-cert"), Some("/etc/cachepair/replication-tls/tls.crt"));
        assert_eq!(flag(&a, "--repl-tls-ca"), Some("/etc/cachepair/replication-tls/ca.crt"));
        assert_eq!(flag(&a, "--repl-tls-name"), Some("cachepair-replication"));
        let volume = pod.spec.unwrap().volumes.unwrap().into_iter().find(|v| v.name == "replication-tls").unwrap();
        let secret = volume.secret.unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("demo-replication-tls"));
        let keys: Vec<_> = secret.items.unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["ca.crt", "tls.crt", "tls.key"], "never the CA's key");

        let own = pair(json!({"replication": {"tls": {"secretName": "repl-cert"}}}));
        let spec = member_pod(&own, Member::A, None, &Settings::default(), LinkTls::On).spec.unwrap();
        assert!(
            spec.volumes
                .unwrap()
                .iter()
                .any(|v| v.secret.as_ref().unwrap().secret_name.as_deref() == Some("repl-cert"))
        );
        let off = member_pod(&pair(json!({})), Member::A, None, &Settings::default(), LinkTls::Off);
        assert_eq!(flag(&args(&off), "--repl-tls-cert"), None);
        assert_eq!(off.metadata.labels.unwrap()[labels::REPLICATION_TLS], "off");
        let migrating = args(&member_pod(&pair(json!({})), Member::A, None, &Settings::default(), LinkTls::Migrating));
        assert!(
            migrating.contains(&"--repl-tls-allow-plaintext".to_string())
                && flag(&migrating, "--repl-tls-ca").is_some()
        );
    }

    #[test]
    fn logins_and_tls_come_from_whole_secret_volumes() {
        let cp = pair(json!({"auth": {"secretName": "users"},
            "tls": {"secretName": "cert", "clientCertificates": "Optional"}}));
        let pod = member_pod(&cp, Member::A, None, &Settings::default(), LinkTls::On);
        let a = args(&pod);
        assert!(a.contains(&"-S".to_string()));
        assert_eq!(flag(&a, "-Y"), Some("/etc/cachepair/auth/users"));
        assert!(a.contains(&"-Z".to_string()));
        assert_eq!(
            flag(&a, "-o"),
            Some(
                "ssl_chain_cert=/etc/cachepair/tls/tls.crt,ssl_key=/etc/cachepair/tls/tls.key,\
                 ssl_ca_cert=/etc/cachepair/tls/ca.crt,ssl_verify_mode=1"
            )
        );
        let spec = pod.spec.unwrap();
        let volumes: Vec<_> =
            spec.volumes.unwrap().into_iter().map(|v| (v.name, v.secret.unwrap().secret_name.unwrap())).collect();
        let named = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            volumes[2..],
            [
                named("client-users", "users"),
                named("client-tls", "cert"),
                named("replication-tls", "demo-replication-tls")
            ]
        );
        let mounts = spec.containers[0].volume_mounts.clone().unwrap();
        assert!(mounts.iter().all(|m| m.sub_path.is_none()), "a subPath mount is never updated");
        assert_eq!(mounts.len(), 5);

        let plain = args(&member_pod(&pair(json!({})), Member::A, None, &Settings::default(), LinkTls::On));
        assert!(!plain.iter().any(|a| a == "-S" || a == "-Y" || a == "-Z"));
    }

    #[test]
    fn the_command_line_carries_the_spec() {
        let cp = pair(json!({
            "memoryMB": 512, "maxConnections": 4096, "threads": 8, "port": 11311, "adminPort": 9200,
            "replication": {"port": 11400, "mode": "sync", "heartbeatMillis": 50, "misses": 4,
                            "syncTimeoutMillis": 250, "backlogKiB": 1024},
        }));
        let pod = member_pod(&cp, Member::B, Some("10.0.0.7:11400"), &Settings::default(), LinkTls::On);
        let a = args(&pod);
        for (name, value) in [
            ("-p", "11311"),
            ("-m", "512"),
            ("-c", "4096"),
            ("-t", "8"),
            ("-X", "11400"),
            ("-q", "1024"),
            ("--repl-mode", "sync"),
            ("--repl-heartbeat-ms", "50"),
            ("--repl-misses", "4"),
            ("--repl-sync-timeout-ms", "250"),
            ("--repl-secret-file", "/etc/cachepair/replication/secret"),
            ("--shutdown-timeout", "10"),
            ("-l", "$(POD_IP)"),
            ("--admin-listen", "$(POD_IP):9200"),
            ("-x", "10.0.0.7:11400"),
        ] {
            assert_eq!(flag(&a, name), Some(value), "{name} in {a:?}");
        }
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("demo-b"));
        assert_eq!(meta.labels.as_ref().unwrap()[labels::MEMBER], "b");
        assert_eq!(meta.labels.as_ref().unwrap()[labels::REVISION], revision(&cp, &Settings::default(), LinkTls::On));
    }

    #[test]
    fn the_command_line_is_one_cache_node_accepts() {
        let cp = pair(json!({"replication": {"mode": "sync"}}));
        let mut argv = vec!["cache-node".to_string()];
        argv.extend(args(&member_pod(&cp, Member::A, Some("10.0.0.7:11212"), &Settings::default(), LinkTls::On)));
        // The kubelet expands $(POD_IP) from the pod's address.
        for a in &mut argv {
            *a = a.replace("$(POD_IP)", "fd00::8");
        }
        let parsed = <cache_node::config::Config as clap::Parser>::try_parse_from(&argv);
        assert!(parsed.is_ok(), "cache-node rejects {argv:?}: {}", parsed.err().unwrap());
    }

    #[test]
    fn a_member_without_a_peer_starts_as_master() {
        let cp = pair(json!({}));
        let a = args(&member_pod(&cp, Member::A, None, &Settings::default(), LinkTls::On));
        assert_eq!(flag(&a, "-x"), None);
        assert_eq!(flag(&a, "--repl-mode"), Some("async"));
    }

    #[test]
    fn only_the_master_is_ready_and_a_dead_member_stays_dead() {
        let spec = member_pod(&pair(json!({})), Member::A, None, &Settings::default(), LinkTls::On).spec.unwrap();
        let c = &spec.containers[0];
        let ready = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(ready.path.as_deref(), Some("/master"));
        assert_eq!(c.readiness_probe.as_ref().unwrap().period_seconds, Some(1));
        assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.readiness_gates.as_ref().unwrap()[0].condition_type, SERVING_CONDITION);
        // A deleted master hands over within its shutdown timeout, before SIGKILL.
        assert_eq!(spec.termination_grace_period_seconds, Some(15));
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!((sc.run_as_non_root, sc.read_only_root_filesystem), (Some(true), Some(true)));
        assert_eq!(spec.volumes.unwrap()[0].secret.as_ref().unwrap().secret_name.as_deref(), Some("demo-replication"));
    }

    #[test]
    fn members_keep_apart_as_the_spec_says() {
        let required = member_pod(&pair(json!({})), Member::A, None, &Settings::default(), LinkTls::On)
            .spec
            .unwrap()
            .affinity
            .unwrap();
        let anti = required.pod_anti_affinity.unwrap();
        let term = &anti.required_during_scheduling_ignored_during_execution.unwrap()[0];
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        assert_eq!(term.label_selector.as_ref().unwrap().match_labels.as_ref().unwrap()[labels::PAIR], "demo");

        let preferred =
            member_pod(&pair(json!({"antiAffinity": "Preferred"})), Member::A, None, &Settings::default(), LinkTls::On);
        let anti = preferred.spec.unwrap().affinity.unwrap().pod_anti_affinity.unwrap();
        assert!(anti.required_during_scheduling_ignored_during_execution.is_none());
        assert_eq!(anti.preferred_during_scheduling_ignored_during_execution.unwrap()[0].weight, 100);

        let none =
            member_pod(&pair(json!({"antiAffinity": "None"})), Member::A, None, &Settings::default(), LinkTls::On);
        assert!(none.spec.unwrap().affinity.is_none());
    }

    #[test]
    fn scheduling_and_resources_pass_through() {
        let cp = pair(json!({
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "cache", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "500m"}},
            "imagePullPolicy": "Always",
            "image": "registry.example/cache-node:9",
        }));
        let spec = member_pod(&cp, Member::A, None, &Settings::default(), LinkTls::On).spec.unwrap();
        assert_eq!(spec.node_selector.unwrap()["disk"], "ssd");
        assert_eq!(spec.tolerations.unwrap()[0].key.as_deref(), Some("cache"));
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.example/cache-node:9"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        let resources = c.resources.as_ref().unwrap();
        assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "1Gi");
        assert!(!resources.requests.as_ref().unwrap().contains_key("memory"), "a given limit is left alone");
    }

    #[test]
    fn without_a_memory_limit_a_member_gets_one_from_its_sizes() {
        let cp = pair(json!({"memoryMB": 1024, "maxConnections": 4096, "replication": {"backlogKiB": 131072}}));
        let c = &member_pod(&cp, Member::A, None, &Settings::default(), LinkTls::On).spec.unwrap().containers[0];
        let resources = c.resources.as_ref().unwrap();
        // 1.15 × (1024 + 128 + 16) MiB, plus 32 KiB for each of 4096 connections.
        let expected = format!("{}Mi", (1168 * 115_u64).div_ceil(100) + 128);
        assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, expected);
        assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, expected);
    }

    #[test]
    fn the_pod_template_passes_through_and_the_operator_keeps_its_own() {
        let cp = pair(json!({"podTemplate": {
            "labels": {"team": "shop", "app.kubernetes.io/name": "mine"},
            "annotations": {"example.com/owner": "cart"},
            "imagePullSecrets": [{"name": "regcred"}],
            "serviceAccountName": "cache",
            "priorityClassName": "critical-cache",
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"},
                {"maxSkew": 1, "topologyKey": "rack", "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": {"matchLabels": {"team": "shop"}}},
            ],
            "env": [{"name": "RUST_LOG", "value": "debug"}],
            "sidecars": [{"name": "log-shipper", "image": "shipper:1"}],
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1001, "fsGroup": 2000,
                                "supplementalGroups": [3000],
                                "seccompProfile": {"type": "Localhost", "localhostProfile": "cache.json"}},
        }}));
        let pod = member_pod(&cp, Member::A, None, &Settings::default(), LinkTls::On);
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "shop");
        assert_eq!(labels["app.kubernetes.io/name"], cp.owned_labels()["app.kubernetes.io/name"], "the operator's own");
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()["example.com/owner"], "cart");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "regcred");
        assert_eq!(spec.service_account_name.as_deref(), Some("cache"));
        assert_eq!(spec.automount_service_account_token, Some(false), "no API token unless asked for");
        assert_eq!(spec.priority_class_name.as_deref(), Some("critical-cache"));
        let spread = spec.topology_spread_constraints.unwrap();
        assert_eq!(spread[0].label_selector.as_ref().unwrap().match_labels, Some(cp.members_selector()));
        assert_eq!(spread[1].label_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["team"], "shop");
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, [MEMBER_CONTAINER, "log-shipper"]);
        let c = &spec.containers[0];
        let env: Vec<&str> = c.env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(env, ["POD_IP", "RUST_LOG"]);
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!((sc.run_as_user, sc.run_as_group), (Some(1000), Some(1001)));
        assert_eq!(
            (sc.run_as_non_root, sc.read_only_root_filesystem, sc.allow_privilege_escalation),
            (Some(true), Some(true), Some(false)),
            "the safe bounds stay"
        );
        let psc = spec.security_context.unwrap();
        assert_eq!((psc.fs_group, psc.supplemental_groups), (Some(2000), Some(vec![3000])));
        assert_eq!(psc.seccomp_profile.unwrap().localhost_profile.as_deref(), Some("cache.json"));

        let plain = member_pod(&pair(json!({})), Member::A, None, &Settings::default(), LinkTls::On).spec.unwrap();
        assert_eq!(plain.automount_service_account_token, Some(false));
        assert!(plain.topology_spread_constraints.is_none() && plain.service_account_name.is_none());
        assert_eq!(plain.security_context.unwrap().seccomp_profile.unwrap().type_, "RuntimeDefault");
    }

    #[test]
    fn the_revision_follows_the_pod_not_the_bookkeeping() {
        let base = pair(json!({}));
        let same = pair(json!({"switchover": "now", "nodeLostTimeoutSeconds": 5, "podDisruptionBudget": false}));
        assert_eq!(
            revision(&base, &Settings::default(), LinkTls::On),
            revision(&same, &Settings::default(), LinkTls::On)
        );
        assert_ne!(
            revision(&base, &Settings::default(), LinkTls::On),
            revision(&pair(json!({"memoryMB": 65})), &Settings::default(), LinkTls::On)
        );
        assert_ne!(
            revision(&base, &Settings::default(), LinkTls::On),
            revision(&pair(json!({"image": "other"})), &Settings::default(), LinkTls::On)
        );
        // A pod template change rolls the members too, metadata included.
        for template in [
            json!({"labels": {"team": "shop"}}),
            json!({"annotations": {"a": "b"}}),
            json!({"env": [{"name": "X", "value": "1"}]}),
            json!({"priorityClassName": "high"}),
        ] {
            assert_ne!(
                revision(&base, &Settings::default(), LinkTls::On),
                revision(&pair(json!({"podTemplate": template})), &Settings::default(), LinkTls::On),
                "{template}"
            );
        }
        assert_eq!(revision(&base, &Settings::default(), LinkTls::On).len(), 10);
    }
}
