//! What the schema cannot check about a spec: the Secrets and nodes it names must exist, the
//! Secrets must hold what the members read, and the NetworkPolicy's IP blocks must be networks
//! (the CEL `isCIDR` needs Kubernetes 1.31; the chart supports 1.30). Pure: the controller
//! fetches what [`CachePairSpec::references`] names and hands the result in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::Secret;

use crate::crd::{CachePairSpec, ClientCertificates, NetworkPeer};
use crate::render::{SECRET_KEY, USERS_KEY};

/// The objects a spec refers to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    pub secrets: Vec<String>,
    pub nodes: Vec<String>,
}

/// Those of the referenced objects that exist, as fetched.
#[derive(Clone, Debug, Default)]
pub struct Found {
    pub secrets: BTreeMap<String, Secret>,
    pub nodes: BTreeSet<String>,
}

impl CachePairSpec {
    pub fn references(&self) -> References {
        let vrrp = self.exposure.vrrp.as_ref();
        let secrets = [
            self.replication.secret_name.as_ref(),
            vrrp.and_then(|v| v.auth_secret_name.as_ref()),
            self.auth.as_ref().map(|a| &a.secret_name),
            self.tls.as_ref().map(|t| &t.secret_name),
            self.replication.tls.secret_name.as_ref().filter(|_| self.replication.tls.enabled),
        ];
        References {
            secrets: secrets.into_iter().flatten().cloned().collect(),
            nodes: vrrp.map(|v| v.nodes.clone()).unwrap_or_default(),
        }
    }

    /// Why the spec cannot be realised, one message per problem, naming the field; empty
    /// when it can.
    pub fn problems(&self, found: &Found) -> Vec<String> {
        let mut problems = Vec::new();
        let access = &self.network_policy;
        for (field, peers) in
            [("allowedClients", &access.allowed_clients), ("allowedMetricsScrapers", &access.allowed_metrics_scrapers)]
        {
            for (i, peer) in peers.iter().enumerate() {
                problems.extend(ip_block_problems(peer, &format!("spec.networkPolicy.{field}[{i}].ipBlock")));
            }
        }
        if let Some(name) = &self.replication.secret_name {
            match found.secrets.get(name) {
                None => problems.push(format!("spec.replication.secretName: Secret {name} not found")),
                Some(s) if secret_value(s, SECRET_KEY).is_none_or(|v| v.is_empty()) => {
                    problems.push(format!("spec.replication.secretName: Secret {name} has no key `{SECRET_KEY}`"))
                }
                Some(_) => {}
            }
        }
        if let Some(auth) = &self.auth {
            let name = &auth.secret_name;
            match found.secrets.get(name).map(|s| secret_value(s, USERS_KEY)) {
                None => problems.push(format!("spec.auth.secretName: Secret {name} not found")),
                Some(None) => problems.push(format!("spec.auth.secretName: Secret {name} has no key `{USERS_KEY}`")),
                Some(Some(users)) => {
                    if let Err(e) = check_users(&users) {
                        problems.push(format!("spec.auth.secretName: Secret {name}, key `{USERS_KEY}`: {e}"));
                    }
                }
            }
        }
        if let Some(name) = self.replication.tls.secret_name.as_ref().filter(|_| self.replication.tls.enabled) {
            let keys = ["tls.crt", "tls.key", "ca.crt"];
            problems.extend(pem_problems("spec.replication.tls.secretName", name, found, keys));
        }
        if let Some(tls) = &self.tls {
            let ca = (tls.client_certificates != ClientCertificates::None).then_some("ca.crt");
            let keys = ["tls.crt", "tls.key"].into_iter().chain(ca);
            problems.extend(pem_problems("spec.tls.secretName", &tls.secret_name, found, keys));
        }
        let Some(vrrp) = &self.exposure.vrrp else { return problems };
        if let Some(name) = &vrrp.auth_secret_name {
            match found.secrets.get(name).map(|s| secret_value(s, "password")) {
                None => problems.push(format!("spec.exposure.vrrp.authSecretName: Secret {name} not found")),
                Some(None) => {
                    problems.push(format!("spec.exposure.vrrp.authSecretName: Secret {name} has no key `password`"))
                }
                Some(Some(p)) if p.is_empty() || p.len() > 8 => problems.push(format!(
                    "spec.exposure.vrrp.authSecretName: the password in Secret {name} must be 1 to 8 characters (VRRPv2 PASS)"
                )),
                Some(Some(_)) => {}
            }
        }
        for (i, node) in vrrp.nodes.iter().enumerate() {
            if !found.nodes.contains(node) {
                problems.push(format!("spec.exposure.vrrp.nodes[{i}]: node {node} not found"));
            }
        }
        problems
    }
}

/// What a certificate Secret named by `field` lacks: the Secret, or PEM under any of `keys`.
fn pem_problems<'a>(field: &str, name: &str, found: &Found, keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let Some(secret) = found.secrets.get(name) else {
        return vec![format!("{field}: Secret {name} not found")];
    };
    keys.into_iter()
        .filter(|key| secret_value(secret, key).is_none_or(|v| !v.contains("-----BEGIN ")))
        .map(|key| format!("{field}: Secret {name} has no PEM under `{key}`"))
        .collect()
}

/// The rules of cache-node's auth file (`-Y`), checked before a member refuses to start on it:
/// `user:password` lines, blank lines aside, with a user name and no spaces.
fn check_users(users: &str) -> Result<(), String> {
    let mut count = 0;
    for (i, line) in users.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        match line.split_once(':') {
            Some((user, _)) if !user.is_empty() && !line.contains(' ') => count += 1,
            _ => return Err(format!("line {}: expected user:password, without spaces", i + 1)),
        }
    }
    if count == 0 { Err("no users".into()) } else { Ok(()) }
}

/// What the API server would refuse in a peer's IP block: a `cidr` that is no network, an
/// `except` that is not a smaller network within it.
fn ip_block_problems(peer: &NetworkPeer, field: &str) -> Vec<String> {
    let Some(block) = &peer.ip_block else { return Vec::new() };
    let cidr = match Network::parse(&block.cidr) {
        Ok(cidr) => cidr,
        Err(why) => return vec![format!("{field}.cidr: {}: {why}", block.cidr)],
    };
    let mut problems = Vec::new();
    for (i, except) in block.except.iter().enumerate() {
        match Network::parse(except) {
            Err(why) => problems.push(format!("{field}.except[{i}]: {except}: {why}")),
            Ok(e) if !(e.prefix > cidr.prefix && cidr.contains(e.addr)) => {
                problems.push(format!("{field}.except[{i}]: {except} is not a smaller network within {}", block.cidr))
            }
            Ok(_) => {}
        }
    }
    problems
}

/// An IP network in CIDR notation, its host bits zero.
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').ok_or("not in CIDR notation (address/prefix length)")?;
        let addr: IpAddr = addr.parse().map_err(|_| format!("{addr} is not an IP address"))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix =
            prefix.parse::<u8>().ok().filter(|&p| p <= bits).ok_or(format!("the prefix length must be 0 to {bits}"))?;
        let network = Self { addr: mask(addr, prefix), prefix };
        if network.addr != addr {
            return Err(format!("host bits set: the network is {}/{prefix}", network.addr));
        }
        Ok(network)
    }

    fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4() && mask(addr, self.prefix) == self.addr
    }
}

/// `addr` with all but its first `prefix` bits zero.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            Ipv4Addr::from(u32::from(a) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)).into()
        }
        IpAddr::V6(a) => {
            Ipv6Addr::from(u128::from(a) & u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)).into()
        }
    }
}

/// A Secret's value under `key`, from `data` or (as written, before the API server moves it)
/// `stringData`.
pub fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).ok();
    }
    secret.string_data.as_ref().and_then(|d| d.get(key).cloned())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use serde_json::json;

    use super::*;
    use crate::render::fixtures::pair;

    fn secret(key: &str, value: &str) -> Secret {
        Secret { data: Some([(key.into(), ByteString(value.into()))].into()), ..Default::default() }
    }

    fn vrrp_spec() -> CachePairSpec {
        pair(json!({
            "replication": {"secretName": "repl"},
            "exposure": {"vrrp": {"virtualIP": "192.0.2.10", "interface": "eth0", "routerID": 51,
                                  "authSecretName": "auth", "nodes": ["n1", "n2"]}},
        }))
        .spec
    }

    #[test]
    fn the_referenced_secrets_and_nodes_are_named() {
        let refs = vrrp_spec().references();
        assert_eq!(refs.secrets, ["repl", "auth"]);
        assert_eq!(refs.nodes, ["n1", "n2"]);
        assert_eq!(pair(json!({})).spec.references(), References::default());
    }

    #[test]
    fn a_spec_whose_references_hold_is_realisable() {
        let found = Found {
            secrets: [("repl".into(), secret(SECRET_KEY, "s3cret")), ("auth".into(), secret("password", "pw"))].into(),
            nodes: ["n1".into(), "n2".into()].into(),
        };
        assert_eq!(vrrp_spec().problems(&found), Vec::<String>::new());
        assert!(pair(json!({})).spec.problems(&Found::default()).is_empty(), "nothing referenced, nothing missing");
    }

    #[test]
    fn client_users_and_certificates_are_checked_before_a_member_reads_them() {
        let spec = pair(json!({"auth": {"secretName": "users"},
            "tls": {"secretName": "cert", "clientCertificates": "Required"}}))
        .spec;
        assert_eq!(spec.references().secrets, ["users", "cert"]);
        assert_eq!(
            spec.problems(&Found::default()),
            ["spec.auth.secretName: Secret users not found", "spec.tls.secretName: Secret cert not found"]
        );
        let pem = "-----BEGIN CERTIFICATE-----\n...";
        let cert = Secret {
            data: Some([("tls.crt".into(), ByteString(pem.into())), ("tls.key".into(), ByteString(pem.into()))].into()),
            ..Default::default()
        };
        let found = |users: &str| Found {
            secrets: [("users".into(), secret(USERS_KEY, users)), ("cert".into(), cert.clone())].into(),
            ..Found::default()
        };
        assert_eq!(
            spec.problems(&found("alice:pw\n\nbob:pw2\n")),
            ["spec.tls.secretName: Secret cert has no PEM under `ca.crt`"],
            "a required client certificate needs the CA"
        );
        assert_eq!(
            spec.problems(&found("alice:pw\nbob pw\n"))[0],
            "spec.auth.secretName: Secret users, key `users`: line 2: expected user:password, without spaces"
        );
        assert_eq!(spec.problems(&found("\n"))[0], "spec.auth.secretName: Secret users, key `users`: no users");
    }

    #[test]
    fn each_missing_or_unusable_reference_is_named_by_its_field() {
        assert_eq!(
            vrrp_spec().problems(&Found { nodes: ["n2".into()].into(), ..Found::default() }),
            [
                "spec.replication.secretName: Secret repl not found",
                "spec.exposure.vrrp.authSecretName: Secret auth not found",
                "spec.exposure.vrrp.nodes[0]: node n1 not found",
            ]
        );
        let found = Found {
            secrets: [("repl".into(), secret("other", "x")), ("auth".into(), secret("password", "123456789"))].into(),
            nodes: ["n1".into(), "n2".into()].into(),
        };
        assert_eq!(
            vrrp_spec().problems(&found),
            [
                "spec.replication.secretName: Secret repl has no key `secret`",
                "spec.exposure.vrrp.authSecretName: the password in Secret auth must be 1 to 8 characters (VRRPv2 PASS)",
            ]
        );
    }

    #[test]
    fn ip_blocks_must_be_networks_and_their_exceptions_within() {
        let spec = pair(json!({"networkPolicy": {
            "allowedClients": [
                {"ipBlock": {"cidr": "10.8.0.0/16", "except": ["10.8.1.0/24", "10.9.0.0/24", "10.8.0.0/16", "10.8.2.0/33"]}},
                {"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48", "10.8.0.0/24"]}},
                {"podSelector": {}},
                {"ipBlock": {"cidr": "10.0.0.1/8"}},
            ],
            "allowedMetricsScrapers": [{"ipBlock": {"cidr": "300.0.0.0/8"}}, {"ipBlock": {"cidr": "10.0.0.0"}}],
        }}))
        .spec;
        let within = |i: usize, except: &str, cidr: &str| {
            format!(
                "spec.networkPolicy.allowedClients[0].ipBlock.except[{i}]: {except} is not a smaller network within {cidr}"
            )
        };
        assert_eq!(
            spec.problems(&Found::default()),
            [
                within(1, "10.9.0.0/24", "10.8.0.0/16"),
                within(2, "10.8.0.0/16", "10.8.0.0/16"),
                "spec.networkPolicy.allowedClients[0].ipBlock.except[3]: 10.8.2.0/33: the prefix length must be 0 to 32"
                    .into(),
                "spec.networkPolicy.allowedClients[1].ipBlock.except[1]: 10.8.0.0/24 is not a smaller network within 2001:db8::/32"
                    .into(),
                "spec.networkPolicy.allowedClients[3].ipBlock.cidr: 10.0.0.1/8: host bits set: the network is 10.0.0.0/8"
                    .into(),
                "spec.networkPolicy.allowedMetricsScrapers[0].ipBlock.cidr: 300.0.0.0/8: 300.0.0.0 is not an IP address"
                    .into(),
                "spec.networkPolicy.allowedMetricsScrapers[1].ipBlock.cidr: 10.0.0.0: not in CIDR notation (address/prefix length)"
                    .into(),
            ]
        );
        let fine = pair(json!({"networkPolicy": {"allowedClients": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}, {"ipBlock": {"cidr": "::/0"}},
            {"ipBlock": {"cidr": "192.0.2.7/32"}},
        ]}}));
        assert!(fine.spec.problems(&Found::default()).is_empty());
    }
}
