//! `report`: a bug-report bundle. What goes in is listed by [`planned`] (pure); [`collect`]
//! fetches it through the API server, noting in `errors.txt` what could not be had; [`write`]
//! packs it as a .tar.gz under one directory. Secrets are never read.

use std::io::Write as _;
use std::path::Path;

use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use operator::crd::CachePair;
use serde::Serialize;

use crate::ops::Ops;

/// The label of the operator's pods (the chart's and deploy/'s).
pub const OPERATOR_LABEL: &str = "app.kubernetes.io/name=cachepair-operator";
/// At most this many lines of each log.
const LOG_LINES: i64 = 5000;

pub const README: &str = "\
CachePair bug report, written by `kubectl cachepair report`.

cachepair.yaml         the CachePair: spec and status
pods.yaml              the member pods (spec, status, conditions, readiness gate)
services.yaml          the client Service and the headless members Service
endpointslices.yaml    their EndpointSlices: where clients were routed
events.yaml            Events about the pair and its member pods
members/<pod>.log      each member's cache-node log (and <pod>.previous.log when it restarted)
members/<pod>.metrics  each member's /metrics, through the API server's pod proxy
members/<pod>.role     each member's /role, likewise
operator/<ns>_<pod>.log  the operator's log (pods labelled app.kubernetes.io/name=cachepair-operator)
errors.txt             what could not be fetched, and why

No Secret is read or included: not the replication secret, not the VRRP password, nothing
from any Secret. Pod specs name Secrets they mount, never their contents. managedFields are
left out. Logs are cut to their last 5000 lines. Look the files over before you share them:
logs and Events may still name hosts, addresses and keys of your cache.
";

/// The files a bundle for `pair` holds when everything can be fetched: `members` are its
/// member pods, `operators` the operator's pods as `<namespace>_<name>`.
pub fn planned(members: &[String], operators: &[String]) -> Vec<String> {
    let mut files: Vec<String> =
        ["README.txt", "cachepair.yaml", "pods.yaml", "services.yaml", "endpointslices.yaml", "events.yaml"]
            .map(String::from)
            .to_vec();
    for pod in members {
        files.extend(["log", "metrics", "role"].map(|ext| format!("members/{pod}.{ext}")));
    }
    files.extend(operators.iter().map(|pod| format!("operator/{pod}.log")));
    files.push("errors.txt".into());
    files
}

/// The bundle's files, in order.
#[derive(Default)]
pub struct Bundle {
    pub files: Vec<(String, Vec<u8>)>,
    pub errors: Vec<String>,
}

impl Bundle {
    fn add(&mut self, name: impl Into<String>, content: impl Into<Vec<u8>>) {
        self.files.push((name.into(), content.into()));
    }

    /// `value` as YAML, without managedFields.
    fn yaml(&mut self, name: &str, value: impl Serialize) {
        match serde_json::to_value(value) {
            Ok(mut v) => {
                strip_managed_fields(&mut v);
                match serde_yaml::to_string(&v) {
                    Ok(text) => self.add(name, text),
                    Err(e) => self.errors.push(format!("{name}: {e}")),
                }
            }
            Err(e) => self.errors.push(format!("{name}: {e}")),
        }
    }

    fn failed(&mut self, what: &str, e: impl std::fmt::Display) {
        self.errors.push(format!("{what}: {e}"));
    }

    pub fn names(&self) -> Vec<&str> {
        self.files.iter().map(|(n, _)| n.as_str()).collect()
    }
}

fn strip_managed_fields(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(meta)) = map.get_mut("metadata") {
                meta.remove("managedFields");
            }
            map.values_mut().for_each(strip_managed_fields);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_managed_fields),
        _ => {}
    }
}

/// A list as kubectl prints one.
fn list<T: Serialize>(items: &[T]) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// Fetches everything [`planned`] names that can be had.
pub async fn collect(ops: &Ops, pair: &str) -> anyhow::Result<Bundle> {
    let mut b = Bundle::default();
    b.add("README.txt", README);
    let cp = ops.pair(pair).await?;
    let mut typed = serde_json::to_value(&cp)?;
    typed["apiVersion"] = CachePair::api_version(&()).into();
    typed["kind"] = CachePair::kind(&()).into();
    b.yaml("cachepair.yaml", typed);

    let selector = ListParams::default().labels(&format!("{}={pair}", operator::pair::labels::PAIR));
    let pods = match ops.pods().list(&selector).await {
        Ok(l) => l.items,
        Err(e) => {
            b.failed("pods", e);
            Vec::new()
        }
    };
    b.yaml("pods.yaml", list(&pods));
    let services: Api<Service> = Api::namespaced(ops.client.clone(), &ops.namespace);
    match services.list(&selector).await {
        Ok(l) => b.yaml("services.yaml", list(&l.items)),
        Err(e) => b.failed("services", e),
    }
    let slices: Api<EndpointSlice> = Api::namespaced(ops.client.clone(), &ops.namespace);
    let by_service = format!("kubernetes.io/service-name in ({pair},{pair}-members)");
    match slices.list(&ListParams::default().labels(&by_service)).await {
        Ok(l) => b.yaml("endpointslices.yaml", list(&l.items)),
        Err(e) => b.failed("endpointslices", e),
    }
    match ops.events(pair).await {
        Ok(mut events) => {
            events.sort_by_key(|e: &Event| e.metadata.creation_timestamp.clone());
            b.yaml("events.yaml", list(&events));
        }
        Err(e) => b.failed("events", e),
    }

    let port = cp.spec.admin_port;
    for pod in &pods {
        let name = pod.name_any();
        match ops.logs(&name, false, Some(LOG_LINES)).await {
            Ok(log) => b.add(format!("members/{name}.log"), log),
            Err(e) => b.failed(&format!("members/{name}.log"), e),
        }
        if restarted(pod)
            && let Ok(log) = ops.logs(&name, true, Some(LOG_LINES)).await
        {
            b.add(format!("members/{name}.previous.log"), log);
        }
        for path in ["metrics", "role"] {
            let uri = format!("/api/v1/namespaces/{}/pods/{name}:{port}/proxy/{path}", ops.namespace);
            let request = http::Request::get(uri).body(Vec::new())?;
            match ops.client.request_text(request).await {
                Ok(text) => b.add(format!("members/{name}.{path}"), text),
                Err(e) => b.failed(&format!("members/{name}.{path} (pod proxy)"), e),
            }
        }
    }

    let operators: Api<Pod> = Api::all(ops.client.clone());
    match operators.list(&ListParams::default().labels(OPERATOR_LABEL)).await {
        Ok(l) if l.items.is_empty() => b.errors.push(format!("operator: no pod labelled {OPERATOR_LABEL}")),
        Ok(l) => {
            for pod in l.items {
                let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
                let api: Api<Pod> = Api::namespaced(ops.client.clone(), &ns);
                let params = kube::api::LogParams { tail_lines: Some(LOG_LINES), ..Default::default() };
                match api.logs(&name, &params).await {
                    Ok(log) => b.add(format!("operator/{ns}_{name}.log"), log),
                    Err(e) => b.failed(&format!("operator/{ns}_{name}.log"), e),
                }
            }
        }
        Err(e) => b.failed("operator pods", e),
    }
    let errors = if b.errors.is_empty() { "none\n".to_string() } else { b.errors.join("\n") + "\n" };
    b.add("errors.txt", errors);
    Ok(b)
}

fn restarted(pod: &Pod) -> bool {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.is_some_and(|s| s.iter().any(|c| c.restart_count > 0))
}

/// Packs the bundle as a .tar.gz at `path`, every file under the directory `root`.
pub fn write(bundle: &Bundle, root: &str, path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
    let mtime = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for (name, content) in &bundle.files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(&mut header, format!("{root}/{name}"), content.as_slice())?;
    }
    tar.into_inner()?.finish()?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_planned_bundle_lists_the_pair_its_objects_logs_and_metrics() {
        let files = planned(&["demo-a".into(), "demo-b".into()], &["cachepair-system_op-1".into()]);
        assert_eq!(
            files,
            [
                "README.txt",
                "cachepair.yaml",
                "pods.yaml",
                "services.yaml",
                "endpointslices.yaml",
                "events.yaml",
                "members/demo-a.log",
                "members/demo-a.metrics",
                "members/demo-a.role",
                "members/demo-b.log",
                "members/demo-b.metrics",
                "members/demo-b.role",
                "operator/cachepair-system_op-1.log",
                "errors.txt",
            ]
        );
        assert!(!files.iter().any(|f| f.contains("secret")), "never a Secret");
    }

    #[test]
    fn the_readme_says_no_secret_is_included() {
        assert!(README.contains("No Secret is read or included"));
    }

    #[test]
    fn a_bundle_packs_as_a_tar_gz_under_one_directory_without_managed_fields() {
        let mut b = Bundle::default();
        b.add("README.txt", README);
        b.yaml("pods.yaml", list(&[serde_json::json!({"metadata": {"name": "demo-a", "managedFields": [{}]}})]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.tar.gz");
        write(&b, "cachepair-report-demo", &path).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            seen.push((name, text));
        }
        assert_eq!(seen[0].0, "cachepair-report-demo/README.txt");
        assert_eq!(seen[1].0, "cachepair-report-demo/pods.yaml");
        assert!(seen[1].1.contains("name: demo-a") && !seen[1].1.contains("managedFields"), "{}", seen[1].1);
    }
}
