//! What the schema cannot check about a spec: the Secrets and nodes it names must exist, and
//! the Secrets must hold what the members read. Pure: the controller fetches what
//! [`CachePairSpec::references`] names and hands the result in.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;

use crate::crd::CachePairSpec;
use crate::render::SECRET_KEY;

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
        let secrets = [self.replication.secret_name.as_ref(), vrrp.and_then(|v| v.auth_secret_name.as_ref())];
        References {
            secrets: secrets.into_iter().flatten().cloned().collect(),
            nodes: vrrp.map(|v| v.nodes.clone()).unwrap_or_default(),
        }
    }

    /// Why the spec cannot be realised, one message per problem, naming the field; empty
    /// when it can.
    pub fn problems(&self, found: &Found) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(name) = &self.replication.secret_name {
            match found.secrets.get(name) {
                None => problems.push(format!("spec.replication.secretName: Secret {name} not found")),
                Some(s) if secret_value(s, SECRET_KEY).is_none_or(|v| v.is_empty()) => {
                    problems.push(format!("spec.replication.secretName: Secret {name} has no key `{SECRET_KEY}`"))
                }
                Some(_) => {}
            }
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
}
