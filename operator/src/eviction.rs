//! The admission webhook on `pods/eviction`. An eviction of a pair's master is refused with
//! 429 (Too Many Requests, which `kubectl drain`, autoscalers and the descheduler retry) and
//! the master's pod is marked, so that the operator switches the role over to the slave; the
//! retried eviction then finds a slave, which the PodDisruptionBudget lets go. This is how an
//! eviction that comes without a cordon or a drain taint is seen. Strimzi's drain cleaner
//! works the same way.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tracing::{info, warn};

use crate::observe::{EVICTION_ANNOTATION, Role};
use crate::pair::labels;

/// What to answer an eviction of a pod.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not a pair's serving master: the budget decides, as without the webhook.
    Allow,
    /// A pair's master: refuse, and mark it for a switchover.
    SwitchOverFirst,
}

/// The verdict on evicting `pod`: only a running member labelled master is held back.
pub fn verdict(pod: &Pod) -> Verdict {
    let labels = pod.metadata.labels.as_ref();
    let member = labels.is_some_and(|l| l.contains_key(labels::PAIR));
    let master = labels.and_then(|l| l.get(labels::ROLE)).is_some_and(|r| r == Role::Master.as_str());
    if member && master && pod.metadata.deletion_timestamp.is_none() {
        Verdict::SwitchOverFirst
    } else {
        Verdict::Allow
    }
}

/// The webhook's routes: `POST /validate-eviction`.
pub fn router(client: kube::Client) -> Router {
    Router::new().route("/validate-eviction", post(review)).with_state(Arc::new(client))
}

async fn review(
    State(client): State<Arc<kube::Client>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(e) => return Json(AdmissionResponse::invalid(e.to_string()).into_review()),
    };
    let response = AdmissionResponse::from(&request);
    let (Some(namespace), "eviction") = (request.namespace.as_deref(), request.sub_resource.as_deref().unwrap_or(""))
    else {
        return Json(response.into_review());
    };
    let pods = Api::<Pod>::namespaced((*client).clone(), namespace);
    // Whatever goes wrong here, the budget still protects the master: allow, and say why.
    let pod = match pods.get_opt(&request.name).await {
        Ok(Some(pod)) => pod,
        Ok(None) => return Json(response.into_review()),
        Err(e) => {
            warn!(pod = %request.name, %namespace, error = %e, "eviction webhook: cannot read the pod");
            return Json(response.into_review());
        }
    };
    if verdict(&pod) == Verdict::Allow || request.dry_run {
        return Json(response.into_review());
    }
    let mark = json!({"metadata": {"annotations": {EVICTION_ANNOTATION: Timestamp::now().to_string()}}});
    if let Err(e) = pods.patch(&request.name, &PatchParams::default(), &Patch::Merge(&mark)).await {
        warn!(pod = %request.name, %namespace, error = %e, "eviction webhook: cannot mark the master");
        return Json(response.into_review());
    }
    info!(pod = %request.name, %namespace, "eviction of a master: switching over first");
    let mut response = response.deny(format!(
        "{} is its CachePair's master: the operator is switching the role over to the slave first; retry the eviction",
        request.name
    ));
    response.result.code = 429;
    response.result.reason = "TooManyRequests".into();
    Json(response.into_review())
}

/// A TLS acceptor with the certificate chain and key in these PEM files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context as _;
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("key {}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the webhook's certificate and key")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS until the listener fails.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    acceptor: tokio_rustls::TlsAcceptor,
) -> anyhow::Result<()> {
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => return warn!(%peer, error = %e, "webhook: TLS handshake failed"),
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let io = hyper_util::rt::TokioIo::new(tls);
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await {
                warn!(%peer, error = %e, "webhook: connection failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn pod(labels: &[(&str, &str)]) -> Pod {
        let labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Pod { metadata: ObjectMeta { labels: Some(labels), ..Default::default() }, ..Default::default() }
    }

    #[test]
    fn only_a_members_master_is_held_back() {
        let master = pod(&[(labels::PAIR, "demo"), (labels::ROLE, "master")]);
        assert_eq!(verdict(&master), Verdict::SwitchOverFirst);
        assert_eq!(verdict(&pod(&[(labels::PAIR, "demo"), (labels::ROLE, "slave")])), Verdict::Allow);
        assert_eq!(verdict(&pod(&[(labels::ROLE, "master")])), Verdict::Allow, "not a member");
        assert_eq!(verdict(&pod(&[])), Verdict::Allow);
        let mut leaving = master.clone();
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
        assert_eq!(verdict(&leaving), Verdict::Allow, "already going");
    }
}
