//! What the commands do through the API server: read a pair and its Events, write requests
//! into its spec (merge patches under the field manager `kubectl-cachepair`), wait for the
//! operator to carry them out, read the members' logs.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use operator::crd::{CachePair, MemberName};
use operator::render::{MEMBER_CONTAINER, SERVING_CONDITION};
use serde_json::json;

/// The field manager of every write.
pub const MANAGER: &str = "kubectl-cachepair";
/// How often --wait looks.
const POLL: Duration = Duration::from_millis(500);

pub struct Ops {
    pub client: Client,
    pub namespace: String,
}

/// A fresh token for a request, from the clock: `kubectl-<milliseconds since the epoch>`.
pub fn new_token() -> String {
    format!("kubectl-{}", k8s_openapi::jiff::Timestamp::now().as_millisecond())
}

/// `spec.fenced` with `member` added (`fence`) or removed; `None` when that changes nothing.
pub fn fenced_list(current: &[MemberName], member: MemberName, fence: bool) -> Option<Vec<MemberName>> {
    if current.contains(&member) == fence {
        return None;
    }
    let mut list: Vec<MemberName> = current.iter().copied().filter(|&m| m != member).collect();
    if fence {
        list.push(member);
    }
    list.sort();
    Some(list)
}

impl Ops {
    pub fn pairs(&self) -> Api<CachePair> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub async fn pair(&self, name: &str) -> anyhow::Result<CachePair> {
        self.pairs().get(name).await.with_context(|| format!("CachePair {}/{name}", self.namespace))
    }

    /// The Events about the pair and its members' pods.
    pub async fn events(&self, pair: &str) -> anyhow::Result<Vec<Event>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let mut all = Vec::new();
        for name in [pair.to_string(), format!("{pair}-a"), format!("{pair}-b")] {
            let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await?;
            all.extend(list.items);
        }
        Ok(all)
    }

    async fn patch_spec(&self, pair: &str, patch: serde_json::Value) -> anyhow::Result<CachePair> {
        let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        self.pairs()
            .patch(pair, &params, &Patch::Merge(&patch))
            .await
            .with_context(|| format!("patching CachePair {}/{pair}", self.namespace))
    }

    pub async fn request_switchover(&self, pair: &str, token: &str) -> anyhow::Result<()> {
        self.patch_spec(pair, json!({"spec": {"switchover": token}})).await?;
        Ok(())
    }

    pub async fn request_reseed(&self, pair: &str, member: MemberName, token: &str) -> anyhow::Result<()> {
        self.patch_spec(pair, json!({"spec": {"reseed": {"member": member, "token": token}}})).await?;
        Ok(())
    }

    /// Adds `member` to `spec.fenced` (or removes it); false when it was so already. The patch
    /// carries the resourceVersion read, so that a concurrent change of the list is not lost.
    pub async fn set_fenced(&self, pair: &str, member: MemberName, fence: bool) -> anyhow::Result<bool> {
        let cp = self.pair(pair).await?;
        let Some(list) = fenced_list(&cp.spec.fenced, member, fence) else { return Ok(false) };
        let patch = json!({"metadata": {"resourceVersion": cp.resource_version()}, "spec": {"fenced": list}});
        self.patch_spec(pair, patch).await?;
        Ok(true)
    }

    /// Polls the pair until `done` says what to print, or fails after `limit` with the pair's
    /// conditions (they say why a request waits).
    pub async fn wait_for(
        &self,
        pair: &str,
        what: &str,
        limit: Duration,
        mut done: impl AsyncFnMut(&CachePair) -> Option<String>,
    ) -> anyhow::Result<String> {
        let start = Instant::now();
        loop {
            let cp = self.pair(pair).await?;
            if let Some(out) = done(&cp).await {
                return Ok(out);
            }
            if start.elapsed() >= limit {
                let why: Vec<String> = cp
                    .status
                    .iter()
                    .flat_map(|s| &s.conditions)
                    .filter(|c| c.type_ == "Ready" || c.type_ == "Degraded")
                    .map(|c| format!("{} {}: {}", c.type_, c.status, c.message))
                    .collect();
                bail!("timed out after {limit:?} waiting for {what}; {}", why.join("; "));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The member's readiness gate `cachepair.io/serving` (`None`: no pod or no condition).
    pub async fn serving(&self, pod: &str) -> anyhow::Result<Option<bool>> {
        let Some(pod) = self.pods().get_opt(pod).await? else { return Ok(None) };
        let conditions = pod.status.and_then(|s| s.conditions).unwrap_or_default();
        Ok(conditions.iter().find(|c| c.type_ == SERVING_CONDITION).map(|c| c.status == "True"))
    }

    /// The pod's uid, if it exists.
    pub async fn pod_uid(&self, pod: &str) -> anyhow::Result<Option<String>> {
        Ok(self.pods().get_opt(pod).await?.and_then(|p| p.metadata.uid))
    }

    /// The cache-node container's log of `pod`.
    pub async fn logs(&self, pod: &str, previous: bool, tail: Option<i64>) -> kube::Result<String> {
        let params =
            LogParams { container: Some(MEMBER_CONTAINER.into()), previous, tail_lines: tail, ..Default::default() };
        self.pods().logs(pod, &params).await
    }
}
