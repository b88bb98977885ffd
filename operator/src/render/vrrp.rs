//! VRRP mode: each member runs a `cache-node vrrp` sidecar in the host's network namespace,
//! configured by a keepalived.conf the operator renders into the Secret `<name>-vrrp`
//! (`a.conf`, `b.conf`). Both instances start as BACKUP with the same priority and `nopreempt`,
//! and track a check of the local cache-node's role, so the virtual IP sits on the node whose
//! cache is master and never moves back on its own, as in the seed's keepalived setup.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, KeyToPath, Secret, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};

use super::{Settings, owned_meta};
use crate::crd::{CachePair, Vrrp};
use crate::pair::Member;

pub const VRRP_CONTAINER: &str = "vrrp";
const CONFIG_DIR: &str = "/etc/keepalived";

pub fn secret_name(cp: &CachePair) -> String {
    format!("{}-vrrp", cp.name())
}

/// keepalived.conf for `member`; `password` is the VRRPv2 PASS authentication, if any.
pub fn keepalived_conf(cp: &CachePair, vrrp: &Vrrp, member: Member, password: Option<&str>) -> String {
    let name = cp.name();
    let mut c = String::new();
    let _ = writeln!(c, "# Rendered by cachepair-operator for {}/{name}, member {}.", ns(cp), member.suffix());
    let _ = writeln!(c, "global_defs {{");
    let _ = writeln!(c, "    router_id {}", member.pod_name(&name));
    let _ = writeln!(c, "    vrrp_version {}", vrrp.version);
    // keepalived drops a script under enable_script_security when no user is named and it
    // has no keepalived_script user; the sidecar runs as root anyway.
    let _ = writeln!(c, "    script_user root");
    let _ = writeln!(c, "    enable_script_security");
    let _ = writeln!(c, "}}\n");
    let _ = writeln!(c, "vrrp_script cache_is_master {{");
    let _ = writeln!(c, "    script \"/usr/local/bin/cache-node is-master --admin 127.0.0.1:{}\"", cp.spec.admin_port);
    // keepalived runs scripts every whole second at best; cache-node vrrp recognises this
    // check and asks the cache's role itself every 20 ms.
    let _ = writeln!(c, "    interval 1\n    timeout 1\n    fall 1\n    rise 1");
    let _ = writeln!(c, "}}\n");
    let _ = writeln!(c, "vrrp_instance {name} {{");
    let _ = writeln!(c, "    state BACKUP");
    let _ = writeln!(c, "    nopreempt");
    let _ = writeln!(c, "    interface {}", vrrp.interface);
    let _ = writeln!(c, "    virtual_router_id {}", vrrp.router_id);
    let _ = writeln!(c, "    priority {}", vrrp.priority);
    let _ = writeln!(c, "    advert_int {}", seconds(advert_interval_millis(vrrp)));
    if let Some(password) = password {
        let _ = writeln!(c, "    authentication {{\n        auth_type PASS\n        auth_pass {password}\n    }}");
    }
    let prefix = if vrrp.virtual_ip.contains(':') { 128 } else { 32 };
    let _ =
        writeln!(c, "    virtual_ipaddress {{\n        {}/{prefix} dev {}\n    }}", vrrp.virtual_ip, vrrp.interface);
    let _ = writeln!(c, "    track_script {{\n        cache_is_master\n    }}");
    let _ = writeln!(c, "}}");
    c
}

/// The spec's interval, else 100 ms for VRRPv3 (a silent master is declared down after three
/// intervals and the skew, 0.36 s) and 1 s for VRRPv2, which has whole seconds only.
pub fn advert_interval_millis(vrrp: &Vrrp) -> u32 {
    vrrp.advert_interval_millis.unwrap_or(if vrrp.version == 2 { 1000 } else { 100 })
}

/// `1000` → `1`, `250` → `0.25`.
fn seconds(millis: u32) -> String {
    let (s, ms) = (millis / 1000, millis % 1000);
    if ms == 0 { s.to_string() } else { format!("{s}.{ms:03}").trim_end_matches('0').to_string() }
}

fn ns(cp: &CachePair) -> &str {
    cp.metadata.namespace.as_deref().unwrap_or("default")
}

/// The Secret with both members' keepalived.conf.
pub fn vrrp_secret(cp: &CachePair, vrrp: &Vrrp, password: Option<&str>) -> Secret {
    let data = Member::BOTH
        .iter()
        .map(|&m| (format!("{}.conf", m.suffix()), ByteString(keepalived_conf(cp, vrrp, m, password).into_bytes())))
        .collect::<BTreeMap<_, _>>();
    Secret {
        metadata: owned_meta(cp, secret_name(cp)),
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// The sidecar: raw sockets (NET_RAW) for VRRP and netlink (NET_ADMIN) for the address; no
/// other privilege. Root on the host network: its image is the operator's to choose, never the
/// CachePair author's `spec.image`.
pub(super) fn sidecar(settings: &Settings) -> Container {
    Container {
        name: VRRP_CONTAINER.into(),
        image: Some(settings.vrrp_image.clone()),
        args: Some(vec!["vrrp".into(), "--config".into(), format!("{CONFIG_DIR}/keepalived.conf")]),
        volume_mounts: Some(vec![VolumeMount {
            name: "vrrp-config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The member's own keepalived.conf out of the Secret.
pub(super) fn config_volume(cp: &CachePair, member: Member) -> Volume {
    Volume {
        name: "vrrp-config".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret_name(cp)),
            items: Some(vec![KeyToPath {
                key: format!("{}.conf", member.suffix()),
                path: "keepalived.conf".into(),
                mode: Some(0o400),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::render::fixtures::pair;
    use crate::render::replication_tls::LinkTls;
    use crate::render::{MEMBER_CONTAINER, member_pod, revision};

    fn vrrp_pair(vrrp: serde_json::Value) -> CachePair {
        pair(json!({"exposure": {"vrrp": vrrp}}))
    }

    fn base() -> serde_json::Value {
        json!({"virtualIP": "192.0.2.10", "interface": "eth0", "routerID": 51, "nodes": ["n1", "n2"]})
    }

    #[test]
    fn keepalived_conf_follows_the_seed_setup() {
        let mut spec = base();
        spec["version"] = json!(2);
        let cp = vrrp_pair(spec);
        let vrrp = cp.spec.exposure.vrrp.clone().unwrap();
        let conf = keepalived_conf(&cp, &vrrp, Member::B, Some("s3cret"));
        for line in [
            "router_id demo-b",
            "vrrp_version 2",
            "state BACKUP",
            "nopreempt",
            "interface eth0",
            "virtual_router_id 51",
            "priority 100",
            "advert_int 1",
            "auth_type PASS",
            "auth_pass s3cret",
            "192.0.2.10/32 dev eth0",
            "script \"/usr/local/bin/cache-node is-master --admin 127.0.0.1:9150\"",
            "cache_is_master",
        ] {
            assert!(conf.contains(line), "{line:?} missing from\n{conf}");
        }
    }

    /// The lab tests of cache-node vrrp (cache-node/tests/vrrp) run these files, with the
    /// test's binary in place of /usr/local/bin/cache-node.
    #[test]
    fn the_lab_tests_run_what_the_operator_renders_by_default() {
        let mut spec = base();
        spec["virtualIP"] = json!("192.0.2.100");
        let cp = vrrp_pair(spec);
        let vrrp = cp.spec.exposure.vrrp.clone().unwrap();
        assert_eq!(
            keepalived_conf(&cp, &vrrp, Member::A, None),
            include_str!("../../../cache-node/tests/vrrp/operator-a.conf")
        );
        assert_eq!(
            keepalived_conf(&cp, &vrrp, Member::B, None),
            include_str!("../../../cache-node/tests/vrrp/operator-b.conf")
        );
    }

    #[test]
    fn the_default_interval_is_100_ms_for_version_3_and_1_s_for_version_2() {
        let mut v2 = base();
        v2["version"] = json!(2);
        for (spec, advert_int) in [(base(), "advert_int 0.1\n"), (v2, "advert_int 1\n")] {
            let cp = vrrp_pair(spec);
            let conf = keepalived_conf(&cp, cp.spec.exposure.vrrp.as_ref().unwrap(), Member::A, None);
            assert!(conf.contains(advert_int), "{advert_int:?} missing from\n{conf}");
        }
    }

    #[test]
    fn version_3_takes_fractions_of_a_second_and_ipv6() {
        let mut spec = base();
        spec["advertIntervalMillis"] = json!(250);
        spec["virtualIP"] = json!("2001:db8::10");
        let cp = vrrp_pair(spec);
        let conf = keepalived_conf(&cp, cp.spec.exposure.vrrp.as_ref().unwrap(), Member::A, None);
        assert!(conf.contains("advert_int 0.25"), "{conf}");
        assert!(conf.contains("2001:db8::10/128 dev eth0"), "{conf}");
        assert!(!conf.contains("authentication"));
        assert_eq!(seconds(1500), "1.5");
        assert_eq!(seconds(10), "0.01");
    }

    /// The sidecar is `cache-node vrrp`: what the operator renders, its parser must take as
    /// meant, without a warning.
    #[test]
    fn cache_node_vrrp_reads_the_rendered_configuration() {
        use cache_node::vrrp::config::{InitialState, parse};
        let mut v2 = base();
        v2["version"] = json!(2);
        let mut v3 = base();
        v3["virtualIP"] = json!("2001:db8::10");
        v3["advertIntervalMillis"] = json!(250);
        for (spec, password, version) in [(v2, Some("s3cret"), 2), (v3, None, 3)] {
            let cp = vrrp_pair(spec);
            let vrrp = cp.spec.exposure.vrrp.clone().unwrap();
            let conf = keepalived_conf(&cp, &vrrp, Member::A, password);
            let parsed = parse(&conf).unwrap_or_else(|e| panic!("{e}\n{conf}"));
            assert!(parsed.warnings.is_empty(), "{:?}\n{conf}", parsed.warnings);
            let [instance] = parsed.instances.as_slice() else { panic!("one instance expected\n{conf}") };
            assert_eq!(instance.state, InitialState::Backup);
            assert!(instance.nopreempt);
            assert_eq!(instance.vrrp_version, version);
            assert_eq!(instance.virtual_router_id, 51);
            assert_eq!(instance.advert_int.as_millis(), u128::from(advert_interval_millis(&vrrp)));
            assert_eq!(instance.password.as_deref(), password.map(str::as_bytes));
            assert_eq!(instance.virtual_ipaddress[0].addr.to_string(), vrrp.virtual_ip);
            assert_eq!(instance.track_script[0].name, "cache_is_master");
            assert!(parsed.scripts[0].command.ends_with("is-master --admin 127.0.0.1:9150"));
        }
    }

    #[test]
    fn members_run_on_the_host_network_pinned_to_their_nodes_with_the_sidecar() {
        let cp = vrrp_pair(base());
        for (member, node) in [(Member::A, "n1"), (Member::B, "n2")] {
            let spec = member_pod(&cp, member, None, &Settings::default(), LinkTls::On).spec.unwrap();
            assert_eq!(spec.host_network, Some(true));
            assert_eq!(spec.node_selector.unwrap()["kubernetes.io/hostname"], node);
            let sidecar = spec.containers.iter().find(|c| c.name == VRRP_CONTAINER).unwrap();
            let caps = sidecar.security_context.as_ref().unwrap().capabilities.as_ref().unwrap();
            assert_eq!(caps.add.as_deref().unwrap(), ["NET_ADMIN", "NET_RAW"]);
            assert_eq!(caps.drop.as_deref().unwrap(), ["ALL"]);
            let volume = spec.volumes.unwrap().into_iter().find(|v| v.name == "vrrp-config").unwrap();
            let items = volume.secret.unwrap().items.unwrap();
            assert_eq!(items[0].key, format!("{}.conf", member.suffix()));
            // The node's address and the virtual IP, bound ahead of its arrival; the admin
            // listener on the node's address and on loopback for the sidecar. Nothing on 0.0.0.0.
            let args = spec.containers[0].args.clone().unwrap().join(" ");
            let vip = &cp.spec.exposure.vrrp.as_ref().unwrap().virtual_ip;
            assert!(
                args.contains(&format!("-l $(POD_IP) --admin-listen $(POD_IP):9150 -l {vip} --freebind")),
                "{args}"
            );
            assert!(args.contains("--admin-listen 127.0.0.1:9150"), "{args}");
            assert!(!args.contains("0.0.0.0"), "{args}");
        }
        let secret = vrrp_secret(&cp, cp.spec.exposure.vrrp.as_ref().unwrap(), None);
        assert_eq!(secret.data.unwrap().len(), 2);
    }

    #[test]
    fn the_sidecar_runs_the_operators_image_not_the_pairs() {
        let cp = pair(json!({"image": "someone.example/cache-node:1", "exposure": {"vrrp": base()}}));
        let settings = Settings { vrrp_image: "registry.example/cache-node:9".into(), ..Settings::default() };
        let spec = member_pod(&cp, Member::A, None, &settings, LinkTls::On).spec.unwrap();
        let image = |name: &str| spec.containers.iter().find(|c| c.name == name).unwrap().image.clone().unwrap();
        assert_eq!(image(VRRP_CONTAINER), "registry.example/cache-node:9");
        assert_eq!(image(MEMBER_CONTAINER), "someone.example/cache-node:1");
        let default = member_pod(&cp, Member::A, None, &Settings::default(), LinkTls::On).spec.unwrap();
        assert_eq!(
            default.containers.iter().find(|c| c.name == VRRP_CONTAINER).unwrap().image.as_deref(),
            Some(crate::crd::DEFAULT_IMAGE)
        );
        // A new sidecar image rolls the pairs in VRRP mode, and only them.
        assert_ne!(revision(&cp, &settings, LinkTls::On), revision(&cp, &Settings::default(), LinkTls::On));
        let plain = pair(json!({}));
        assert_eq!(revision(&plain, &settings, LinkTls::On), revision(&plain, &Settings::default(), LinkTls::On));
    }
}
