//! The replication link's mutual TLS, when the spec names no Secret of its own: a CA per pair
//! and one certificate, for the name [`TLS_NAME`], that both members present and check the
//! other's against. The operator keeps them in the Secret `<name>-replication-tls`, the CA's
//! key included (the members' volume leaves it out), so that it can renew the certificate
//! before it expires without a new CA: members read the files at each new link, so a renewed
//! certificate needs no restart.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

use super::owned_meta;
use crate::crd::CachePair;

/// The name both members' certificate carries, and that each checks in the other's.
pub const TLS_NAME: &str = "cachepair-replication";
/// The Secret's annotation with the certificate's expiry, in seconds since the epoch.
pub const NOT_AFTER_ANNOTATION: &str = "cachepair.io/certificate-not-after";
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// A certificate this close to its expiry is renewed.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Tolerance for the members' clocks being behind the operator's.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot make the replication certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("the Secret {0} has no {1}")]
    Missing(String, &'static str),
}

/// The CA's distinguished name, the same at every renewal, so that certificates it signs
/// later chain to the CA certificate the members already hold.
fn ca_params(cp: &CachePair, now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let namespace = cp.metadata.namespace.as_deref().unwrap_or_default();
    dn.push(DnType::CommonName, format!("cachepair {namespace}/{} replication CA", cp.name()));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + CA_VALIDITY).into();
    params
}

/// A certificate for [`TLS_NAME`], for both ends of the link, signed by `ca`.
fn certificate(ca: &Issuer<'_, KeyPair>, now: SystemTime) -> Result<(String, String, SystemTime), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![TLS_NAME.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, TLS_NAME);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let not_after = now + CERT_VALIDITY;
    params.not_before = (now - BACKDATE).into();
    params.not_after = OffsetDateTime::from(not_after);
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem(), not_after))
}

/// A new CA and certificate for the pair.
pub fn issue(cp: &CachePair, now: SystemTime) -> Result<Secret, IssueError> {
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params(cp, now).self_signed(&ca_key)?;
    let ca = Issuer::new(ca_params(cp, now), ca_key);
    let (cert, key, not_after) = certificate(&ca, now)?;
    Ok(secret(cp, ca_cert.pem(), ca.key().serialize_pem(), cert, key, not_after))
}

/// The Secret with a new certificate from the same CA, when the one it holds expires within
/// [`RENEW_BEFORE`] (or its expiry is unknown); `None` while it is good.
pub fn renewed(cp: &CachePair, current: &Secret, now: SystemTime) -> Result<Option<Secret>, IssueError> {
    let not_after = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NOT_AFTER_ANNOTATION))
        .and_then(|s| s.parse::<u64>().ok())
        .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
    if not_after.is_some_and(|t| t > now + RENEW_BEFORE) {
        return Ok(None);
    }
    let name = secret_name(cp);
    let value = |key: &'static str| {
        current
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .ok_or_else(|| IssueError::Missing(name.clone(), key))
    };
    let (ca_cert, ca_key) = (value("ca.crt")?, value("ca.key")?);
    let ca = Issuer::new(ca_params(cp, now), KeyPair::from_pem(&ca_key)?);
    let (cert, key, not_after) = certificate(&ca, now)?;
    Ok(Some(secret(cp, ca_cert, ca_key, cert, key, not_after)))
}

/// How a member's replication link is secured. Members are replaced one at a time, and a
/// member with TLS and one without cannot link: while the pair has a member of the other kind,
/// new members are made `Migrating` (`--repl-tls-allow-plaintext`), which links with either;
/// once no member is left that needs it, the next roll makes them what the spec asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTls {
    Off,
    Migrating,
    On,
}

impl LinkTls {
    pub fn label(self) -> &'static str {
        match self {
            LinkTls::Off => "off",
            LinkTls::Migrating => "migrating",
            LinkTls::On => "on",
        }
    }

    /// A pod's label; a pod without one predates TLS on the link.
    pub fn of_label(label: Option<&str>) -> Self {
        match label {
            Some("on") => LinkTls::On,
            Some("migrating") => LinkTls::Migrating,
            _ => LinkTls::Off,
        }
    }

    /// What new members of `cp` are made with, given its current members'.
    pub fn for_new_members(cp: &CachePair, current: impl IntoIterator<Item = LinkTls>) -> Self {
        let wanted = if cp.spec.replication.tls.enabled { LinkTls::On } else { LinkTls::Off };
        let opposite = match wanted {
            LinkTls::On => LinkTls::Off,
            _ => LinkTls::On,
        };
        if current.into_iter().any(|m| m == opposite) { LinkTls::Migrating } else { wanted }
    }
}

pub fn secret_name(cp: &CachePair) -> String {
    format!("{}-replication-tls", cp.name())
}

fn secret(cp: &CachePair, ca_cert: String, ca_key: String, cert: String, key: String, not_after: SystemTime) -> Secret {
    let mut metadata = owned_meta(cp, secret_name(cp));
    let expiry = not_after.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    metadata.annotations = Some(BTreeMap::from([(NOT_AFTER_ANNOTATION.into(), expiry.to_string())]));
    let data = [("ca.crt", ca_cert), ("ca.key", ca_key), ("tls.crt", cert), ("tls.key", key)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
        .collect();
    Secret { metadata, data: Some(data), type_: Some("Opaque".into()), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use serde_json::json;

    use super::*;
    use crate::render::fixtures::pair;

    fn pem(secret: &Secret, key: &str) -> Vec<u8> {
        secret.data.as_ref().unwrap()[key].0.clone()
    }

    /// Checks `cert` as a member does: chained to `ca`, for TLS_NAME, valid `at`.
    fn verify(ca: &[u8], cert: &[u8], at: SystemTime) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca).unwrap()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider).build().unwrap();
        let end = CertificateDer::from_pem_slice(cert).unwrap();
        let now = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap());
        let name = ServerName::try_from(TLS_NAME).unwrap();
        verifier.verify_server_cert(&end, &[], &name, &[], now).map(|_| ())
    }

    #[test]
    fn a_pair_crosses_to_tls_through_members_that_link_either_way() {
        use LinkTls::*;
        let on = pair(json!({}));
        assert_eq!(LinkTls::for_new_members(&on, []), On, "a new pair");
        assert_eq!(LinkTls::for_new_members(&on, [Off, Off]), Migrating, "made before the link had TLS");
        assert_eq!(LinkTls::for_new_members(&on, [Migrating, Off]), Migrating);
        assert_eq!(LinkTls::for_new_members(&on, [Migrating, Migrating]), On, "then rolled once more");
        assert_eq!(LinkTls::for_new_members(&on, [On, Migrating]), On);
        let off = pair(json!({"replication": {"tls": {"enabled": false}}}));
        assert_eq!(LinkTls::for_new_members(&off, [On, On]), Migrating);
        assert_eq!(LinkTls::for_new_members(&off, [Migrating, Off]), Off);
        assert_eq!(LinkTls::of_label(None), Off);
    }

    #[test]
    fn the_certificate_chains_to_the_pairs_ca_for_the_replication_name() {
        let cp = pair(json!({}));
        let now = SystemTime::now();
        let secret = issue(&cp, now).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("demo-replication-tls"));
        verify(&pem(&secret, "ca.crt"), &pem(&secret, "tls.crt"), now).unwrap();
        let other = issue(&cp, now).unwrap();
        assert!(verify(&pem(&other, "ca.crt"), &pem(&secret, "tls.crt"), now).is_err(), "another pair's CA");
        assert!(verify(&pem(&secret, "ca.crt"), &pem(&secret, "tls.crt"), now + CERT_VALIDITY * 2).is_err());
    }

    #[test]
    fn a_certificate_near_its_expiry_is_renewed_by_the_same_ca() {
        let cp = pair(json!({}));
        let start = SystemTime::now();
        let secret = issue(&cp, start).unwrap();
        assert!(renewed(&cp, &secret, start + Duration::from_secs(24 * 3600)).unwrap().is_none(), "still good");
        let later = start + CERT_VALIDITY - RENEW_BEFORE + Duration::from_secs(60);
        let renewed = renewed(&cp, &secret, later).unwrap().expect("renewed");
        assert_eq!(pem(&renewed, "ca.crt"), pem(&secret, "ca.crt"), "the same CA");
        assert_ne!(pem(&renewed, "tls.crt"), pem(&secret, "tls.crt"));
        verify(&pem(&secret, "ca.crt"), &pem(&renewed, "tls.crt"), later + CERT_VALIDITY / 2).unwrap();
    }
}
