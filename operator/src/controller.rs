//! The reconcile loop, a thin executor: it reads the cluster, lets `validate`, `decide` and
//! `status` say what to do, and does it. Every object is written by server-side apply under
//! one field manager; a finalizer lets a deleted pair say goodbye; Events tell people what
//! happened.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::admin::AdminClient;
use crate::crd::{CachePair, CachePairStatus, Phase};
use crate::decide::{self, Decision, Input, ROLE_LABELS, Start, SwitchoverReason};
use crate::metrics::{ErrorLabels, Metrics, PairLabels, RoleLabels};
use crate::observe::{self, MemberView, PodState, Role};
use crate::pair::{Member, labels};
use crate::render;
use crate::render::replication_tls::{self, LinkTls};
use crate::status::Round;
use crate::validate::{Found, secret_value};
use crate::{Error, Result};

pub const FINALIZER: &str = "cachepair.io/cleanup";
/// The one field manager of everything the operator writes.
pub const MANAGER: &str = "cachepair-operator";
/// How long a superseded master that answers gets to step down before it is fenced.
const CONFIRM_FENCE: Duration = Duration::from_millis(200);

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub admin: AdminClient,
    pub settings: render::Settings,
    /// Consecutive failures per pair, for the error backoff.
    failures: Mutex<HashMap<ObjectRef<CachePair>, u32>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, identity: &str, settings: render::Settings) -> Self {
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(identity.into()) };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            admin: AdminClient::default(),
            settings,
            failures: Mutex::default(),
        }
    }
}

/// Runs the controllers until `shutdown` resolves: one per namespace in `namespaces` (each once),
/// or one for all namespaces when it is empty. A kube-runtime Controller watches one namespace
/// or all; one store fed by several namespaces' watches would drop a namespace's pairs whenever
/// another's watch relists.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = shutdown.shared();
    let scopes: BTreeSet<Option<String>> =
        if namespaces.is_empty() { [None].into() } else { namespaces.into_iter().map(Some).collect() };
    futures::future::join_all(scopes.into_iter().map(|ns| run_in(ctx.clone(), ns, shutdown.clone()))).await;
}

/// One controller: in `namespace`, or in all of them.
async fn run_in(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (pairs, pods, services) = match &namespace {
        Some(ns) => (
            Api::<CachePair>::namespaced(client.clone(), ns),
            Api::<Pod>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone()), Api::all(client)),
    };
    let owned = watcher::Config::default().labels(labels::PAIR);
    let controller = Controller::new(pairs, watcher::Config::default().any_semantic());
    // A draining node (cordoned, or tainted for removal) needs its masters switched over; a NotReady one may hold a
    // master to fence. Rare events: every pair looks, and finds out whether it is concerned.
    let store = controller.store();
    let concerning = move |node: Node| {
        let drained_or_lost = observe::node_draining(&node) || !observe::node_ready(&node);
        let pairs = if drained_or_lost { store.state() } else { Vec::new() };
        pairs.into_iter().map(|cp| ObjectRef::from_obj(&*cp)).collect::<Vec<_>>()
    };
    controller
        .owns(pods, owned.clone())
        .owns(services, owned)
        .watches(Api::<Node>::all(ctx.client.clone()), watcher::Config::default(), concerning)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// One round for one pair: its finalizer, then [`CachePair::reconcile`] or its cleanup.
pub async fn reconcile(cp: Arc<CachePair>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let ns = cp.namespace().ok_or_else(|| Error::Other("a CachePair without a namespace".into()))?;
    let api: Api<CachePair> = Api::namespaced(ctx.client.clone(), &ns);
    let key = ObjectRef::from_obj(&*cp);
    let result = finalizer(&api, FINALIZER, cp, |event| async {
        match event {
            Finalizer::Apply(cp) => cp.reconcile(&ctx).await,
            Finalizer::Cleanup(cp) => cp.cleanup(&ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures.lock().remove(&key);
    }
    result
}

/// Retries with exponential backoff per pair: 1 s, 2 s, 4 s … up to 5 minutes.
fn error_policy(cp: Arc<CachePair>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.errors.get_or_create(&ErrorLabels { error: error.metric_label().into() }).inc();
    let failures = {
        let mut failures = ctx.failures.lock();
        let n = failures.entry(ObjectRef::from_obj(&*cp)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = Duration::from_secs(1 << failures.min(9).saturating_sub(1)).min(Duration::from_secs(300));
    warn!(pair = %cp.name_any(), namespace = cp.namespace().unwrap_or_default(), error = %error, ?delay, "will retry");
    Action::requeue(delay)
}

impl CachePair {
    fn api<K>(&self, ctx: &Context) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(ctx.client.clone(), self.metadata.namespace.as_deref().unwrap_or("default"))
    }

    fn labels_for_metrics(&self) -> PairLabels {
        PairLabels { namespace: self.namespace().unwrap_or_default(), pair: self.name() }
    }

    async fn reconcile(&self, ctx: &Context) -> Result<Action> {
        let found = self.find_references(ctx).await?;
        let problems = self.spec.problems(&found);
        if !problems.is_empty() {
            let message = problems.join("; ");
            warn!(pair = %self.name(), %message, "the spec cannot be realised");
            self.event(ctx, EventType::Warning, "InvalidSpec", "Validate", &message).await;
            ctx.metrics.set_phase(&self.namespace().unwrap_or_default(), &self.name(), Phase::Invalid);
            let status = self.status.clone().unwrap_or_default().invalid(self, &message, &Time(Timestamp::now()));
            self.write_status(ctx, status).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        let views = self.observe(ctx).await?;
        // The status as the API server has it now: the cached object may predate the status
        // this operator wrote last round, and a stale `master` would read as a failover.
        let status = self.api::<CachePair>(ctx).get_status(&self.name()).await?.status.unwrap_or_default();
        let last_master = status.master.as_deref().and_then(|m| Member::of_pod(&self.name(), m));
        let last_promotions = status.promotions(&self.name());
        let link = LinkTls::for_new_members(self, views.values().map(|v| v.link_tls));
        let revision = render::revision(self, &ctx.settings, link);
        let fenced: Vec<Member> = self.spec.fenced.iter().map(|&m| m.into()).collect();
        let input = Input {
            a: views.get(&Member::A),
            b: views.get(&Member::B),
            revision: &revision,
            last_master,
            last_promotions,
            switchover_requested: self.spec.switchover.as_deref().filter(|s| status.switchover.as_deref() != Some(*s)),
            reseed_requested: self
                .spec
                .reseed
                .as_ref()
                .filter(|r| status.reseed.as_deref() != Some(r.token.as_str()))
                .map(|r| (r.member.into(), r.token.as_str())),
            fenced: &fenced,
            replication_port: self.spec.replication.port,
            node_lost_timeout: Duration::from_secs(self.spec.node_lost_timeout_seconds.into()),
        };
        let mut decision = decide::decide(&input);
        let (routing, actions): (Vec<_>, Vec<_>) =
            decision.actions.clone().into_iter().partition(decide::Action::is_routing);
        for action in &routing {
            self.route(ctx, action, &views).await?;
        }
        let monitoring_note = self.apply_owned(ctx, &found).await?;
        let (mut switched, mut reseeded) = (None, None);
        for action in actions {
            match self.act(ctx, &action, &views).await? {
                Done::Switched(reason) => {
                    switched = Some(reason);
                    decision.switched_over();
                }
                Done::Reseeded(token) => reseeded = Some(token),
                Done::Other => {}
            }
        }
        if decision.failover
            && let (Some(new), Some(old)) = (decision.master, last_master)
        {
            ctx.metrics.failovers.get_or_create(&self.labels_for_metrics()).inc();
            let note =
                format!("{} took over as master from {}", new.pod_name(&self.name()), old.pod_name(&self.name()));
            info!(pair = %self.name(), %note, "failover");
            self.event(ctx, EventType::Warning, "Failover", "Failover", &note).await;
        }
        if decision.handover
            && let (Some(new), Some(old)) = (decision.master, last_master)
        {
            let note = format!(
                "{} handed the master role over to {} (its pod was deleted or stopped)",
                old.pod_name(&self.name()),
                new.pod_name(&self.name())
            );
            info!(pair = %self.name(), %note, "hand-over");
            self.event(ctx, EventType::Normal, "HandedOver", "HandOver", &note).await;
        }
        self.label_roles(ctx, &views, &decision).await?;
        ctx.metrics.set_phase(&self.namespace().unwrap_or_default(), &self.name(), decision.phase);
        let round = Round { revision, switched, reseeded, monitoring_note, members: views };
        let status = status.next(self, &decision, round, &Time(Timestamp::now()));
        self.write_status(ctx, status).await?;
        Ok(Action::requeue(decision.requeue))
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        info!(pair = %self.name(), "deleted: its objects go with it (owner references)");
        self.event(ctx, EventType::Normal, "Deleting", "Delete", "deleting the pair's members and services").await;
        ctx.metrics.forget_pair(&self.namespace().unwrap_or_default(), &self.name());
        Ok(Action::await_change())
    }

    /// The operator's CA and certificate for the replication link: made once, the certificate
    /// renewed a month before it expires (the members read it at each new link).
    async fn keep_replication_certificate(&self, secrets: &Api<Secret>) -> Result<()> {
        let name = replication_tls::secret_name(self);
        let now = std::time::SystemTime::now();
        let failed = |e: replication_tls::IssueError| Error::Other(e.to_string());
        match secrets.get_opt(&name).await? {
            None => {
                let secret = replication_tls::issue(self, now).map_err(failed)?;
                let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
                match secrets.create(&params, &secret).await {
                    Ok(_) => info!(pair = %self.name(), secret = name, "made the replication CA and certificate"),
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Some(current) => {
                if let Some(renewed) = replication_tls::renewed(self, &current, now).map_err(failed)? {
                    let params = PatchParams::apply(MANAGER).force();
                    secrets.patch(&name, &params, &Patch::Apply(typed(renewed))).await?;
                    info!(pair = %self.name(), secret = name, "renewed the replication certificate");
                }
            }
        }
        Ok(())
    }

    /// The token the members' /switchover asks for (the generated `<name>-admin` Secret).
    async fn admin_token(&self, ctx: &Context) -> Result<String> {
        let secrets: Api<Secret> = self.api(ctx);
        let name = self.admin_secret_name();
        let secret = secrets.get(&name).await?;
        secret_value(&secret, render::ADMIN_TOKEN_KEY)
            .ok_or_else(|| Error::Other(format!("Secret {name} has no key `{}`", render::ADMIN_TOKEN_KEY)))
    }

    /// Those of the Secrets and nodes the spec names that exist.
    async fn find_references(&self, ctx: &Context) -> Result<Found> {
        let references = self.spec.references();
        let secrets: Api<Secret> = self.api(ctx);
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let mut found = Found::default();
        for name in references.secrets {
            if let Some(secret) = secrets.get_opt(&name).await? {
                found.secrets.insert(name, secret);
            }
        }
        for name in references.nodes {
            if nodes.get_opt(&name).await?.is_some() {
                found.nodes.insert(name);
            }
        }
        Ok(found)
    }

    /// Applies the Services, budget, policy and Secrets. Returns a note when a ServiceMonitor
    /// was asked for but the cluster has no such API.
    async fn apply_owned(&self, ctx: &Context, found: &Found) -> Result<Option<String>> {
        let params = PatchParams::apply(MANAGER).force();
        let name = self.name();
        let services: Api<Service> = self.api(ctx);
        services.patch(&name, &params, &Patch::Apply(typed(render::client_service(self)))).await?;
        services
            .patch(&self.members_service_name(), &params, &Patch::Apply(typed(render::members_service(self))))
            .await?;
        let policies: Api<NetworkPolicy> = self.api(ctx);
        let policy = render::network_policy(self, &ctx.settings);
        policies.patch(&name, &params, &Patch::Apply(typed(policy))).await?;
        // Earlier operators kept `<name>-replication`, which admits every source to the client and
        // admin ports: policies add up, so it goes once `<name>` is in place.
        delete_if_present(&policies, &format!("{name}-replication")).await?;
        let budgets: Api<PodDisruptionBudget> = self.api(ctx);
        if self.spec.pod_disruption_budget {
            budgets.patch(&name, &params, &Patch::Apply(typed(render::pod_disruption_budget(self)))).await?;
        } else {
            delete_if_present(&budgets, &name).await?;
        }

        let secrets: Api<Secret> = self.api(ctx);
        if self.spec.replication.secret_name.is_none() {
            generate_secret(&secrets, &self.replication_secret_name(), render::replication_secret, self).await?;
        }
        generate_secret(&secrets, &self.admin_secret_name(), render::admin_secret, self).await?;
        let tls = &self.spec.replication.tls;
        if tls.enabled && tls.secret_name.is_none() {
            self.keep_replication_certificate(&secrets).await?;
        }
        if let Some(vrrp) = &self.spec.exposure.vrrp {
            let password = vrrp
                .auth_secret_name
                .as_ref()
                .and_then(|name| found.secrets.get(name))
                .and_then(|s| secret_value(s, "password"));
            let secret = render::vrrp_secret(self, vrrp, password.as_deref());
            secrets.patch(&format!("{name}-vrrp"), &params, &Patch::Apply(typed(secret))).await?;
        }

        let monitors: Api<DynamicObject> = Api::namespaced_with(
            ctx.client.clone(),
            self.metadata.namespace.as_deref().unwrap_or("default"),
            &render::service_monitor_resource(),
        );
        if self.spec.monitoring.service_monitor {
            match monitors.patch(&name, &params, &Patch::Apply(render::service_monitor(self))).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    return Ok(Some(
                        "spec.monitoring.serviceMonitor: this cluster has no ServiceMonitor API (prometheus-operator); not created"
                            .into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            // Without the API (404) or without the chart's permission for it (403) there is
            // nothing this operator could have created.
            match monitors.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 403 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Each member's pod, node and admin listener; both members are asked at once, so that a
    /// dead one costs one probe timeout.
    async fn observe(&self, ctx: &Context) -> Result<BTreeMap<Member, MemberView>> {
        let pods: Api<Pod> = self.api(ctx);
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let list = pods.list(&ListParams::default().labels(&format!("{}={}", labels::PAIR, self.name()))).await?;
        let now = Time(Timestamp::now());
        let mut members = Vec::new();
        for pod in &list.items {
            let Some(member) = Member::of_pod(&self.name(), &pod.name_any()) else { continue };
            let node = match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                Some(n) => nodes.get_opt(n).await?,
                None => None,
            };
            members.push((member, pod, observe::member_view(pod, node.as_ref(), &now)));
        }
        let reports = futures::future::join_all(members.iter().map(|(_, _, view)| async {
            match (&view.ip, view.state) {
                (Some(ip), PodState::Running | PodState::Terminating) => {
                    ctx.admin.probe(ip, self.spec.admin_port).await
                }
                _ => None,
            }
        }))
        .await;
        let mut views = BTreeMap::new();
        for ((member, pod, mut view), report) in members.into_iter().zip(reports) {
            if let Some(r) = report
                && view.term != Some(r.term)
            {
                // Kept on the pod, for when it stops answering: its last term says whether a
                // master that took over since supersedes it, whichever operator replica looks.
                let patch = json!({"metadata": {"annotations": {observe::TERM_ANNOTATION: r.term.to_string()}}});
                let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
                match pods.patch(&pod.name_any(), &params, &Patch::Merge(&patch)).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            view.heard(report);
            views.insert(member, view);
        }
        Ok(views)
    }

    /// Fences or un-fences a member: its readiness gate, and when fencing its Ready condition
    /// too, which a dead node's kubelet would never recompute (as the node lifecycle
    /// controller's MarkPodsNotReady does, but at once).
    async fn route(&self, ctx: &Context, action: &decide::Action, views: &BTreeMap<Member, MemberView>) -> Result<()> {
        let pair = self.name();
        let now = Time(Timestamp::now());
        let condition = |type_: &str, ok: bool, reason: &str, message: &str| {
            let status = if ok { "True" } else { "False" };
            json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": now})
        };
        let (member, conditions) = match action {
            decide::Action::Fence { member, reason } => {
                let requested = *reason == decide::FENCE_REQUESTED;
                if !requested && let Some(ip) = views.get(member).filter(|v| v.answered).and_then(|v| v.ip.as_deref()) {
                    // A master handing over (a switchover, a deleted pod) reports master with
                    // the old term for a moment: only one that still does is fenced.
                    tokio::time::sleep(CONFIRM_FENCE).await;
                    if ctx.admin.probe(ip, self.spec.admin_port).await.is_none_or(|r| r.role != Role::Master) {
                        return Ok(());
                    }
                }
                let message = format!("fenced by the operator: {reason}");
                let why = if requested { "FencedBySpec" } else { "Superseded" };
                let conditions = vec![
                    condition(render::SERVING_CONDITION, false, why, &message),
                    condition("Ready", false, why, &message),
                ];
                let note = format!("{} taken out of the client Service: {reason}", member.pod_name(&pair));
                warn!(pair = %pair, namespace = self.namespace().unwrap_or_default(), %note, "fenced");
                self.event(ctx, EventType::Warning, "Fenced", "Fence", &note).await;
                (*member, conditions)
            }
            decide::Action::Unfence { member } => {
                if views.get(member).is_some_and(|v| v.serving == Some(false)) {
                    let note = format!(
                        "{} is back in client routing (it is not superseded, and spec.fenced does not name it): \
                         its readiness probe decides again",
                        member.pod_name(&pair)
                    );
                    info!(pair = %pair, namespace = self.namespace().unwrap_or_default(), %note, "unfenced");
                    self.event(ctx, EventType::Normal, "Unfenced", "Unfence", &note).await;
                }
                (*member, vec![condition(render::SERVING_CONDITION, true, "Serving", "not superseded")])
            }
            _ => unreachable!("only routing actions are routed"),
        };
        set_pod_conditions(&self.api(ctx), &member.pod_name(&pair), conditions).await
    }

    /// Carries out one action; says what the status must record of it.
    async fn act(&self, ctx: &Context, action: &decide::Action, views: &BTreeMap<Member, MemberView>) -> Result<Done> {
        let pods: Api<Pod> = self.api(ctx);
        let pair = self.name();
        match action {
            decide::Action::Create { member, start } => {
                let link = LinkTls::for_new_members(self, views.values().map(|v| v.link_tls));
                let pod = render::member_pod(self, *member, start.peer(), &ctx.settings, link);
                let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
                match pods.create(&params, &pod).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Done::Other),
                    Err(e) => return Err(e.into()),
                }
                let name = member.pod_name(&pair);
                // Its readiness gate, at once: routing must not wait on the operator later.
                // Should this fail, the next round sets it. Closed when spec.fenced names it.
                let open = !self.spec.fenced.iter().any(|&m| Member::from(m) == *member);
                let (status, why) = if open { ("True", "Created") } else { ("False", "FencedBySpec") };
                let serving = json!({"type": render::SERVING_CONDITION, "status": status, "reason": why,
                                     "lastTransitionTime": Time(Timestamp::now())});
                set_pod_conditions(&pods, &name, vec![serving]).await?;
                let (reason, note) = match start {
                    Start::Slave { peer, reseed: true } => {
                        ctx.metrics.reseeds.get_or_create(&self.labels_for_metrics()).inc();
                        ("Reseeded", format!("{name} re-created as a slave of the master at {peer}"))
                    }
                    Start::Slave { peer, reseed: false } => {
                        ("Created", format!("{name} created as a slave of the master at {peer}"))
                    }
                    Start::Master => ("Created", format!("{name} created; it starts as master")),
                };
                info!(pair = %pair, %note, "member created");
                self.event(ctx, EventType::Normal, reason, "CreateMember", &note).await;
            }
            decide::Action::Delete { member, reason } => {
                let name = member.pod_name(&pair);
                delete_if_present(&pods, &name).await?;
                info!(pair = %pair, member = %name, reason, "member deleted");
                self.event(ctx, EventType::Normal, "MemberDeleted", "DeleteMember", &format!("{name}: {reason}")).await;
            }
            decide::Action::ForceDelete { member } => {
                let name = member.pod_name(&pair);
                let node = views.get(member).and_then(|v| v.node.clone()).unwrap_or_default();
                let params = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
                match pods.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                let note = format!(
                    "{name} force-deleted: node {node} unreachable for over {}s",
                    self.spec.node_lost_timeout_seconds
                );
                warn!(pair = %pair, %note, "node lost");
                self.event(ctx, EventType::Warning, "NodeLost", "ForceDeleteMember", &note).await;
            }
            decide::Action::Fence { .. } | decide::Action::Unfence { .. } => {
                unreachable!("routing actions are taken first")
            }
            decide::Action::Reseed { member, token } => {
                let name = member.pod_name(&pair);
                delete_if_present(&pods, &name).await?;
                let note = format!(
                    "{name} deleted at spec.reseed's request ({token}): it is re-created as a slave of {} with a full sync",
                    member.other().pod_name(&pair)
                );
                info!(pair = %pair, %note, "re-seed requested");
                self.event(ctx, EventType::Normal, "Reseeding", "ReseedMember", &note).await;
                return Ok(Done::Reseeded(token.clone()));
            }
            decide::Action::Switchover { from, reason } => {
                let name = from.pod_name(&pair);
                let ip = views
                    .get(from)
                    .and_then(|v| v.ip.clone())
                    .ok_or_else(|| Error::Member { member: name.clone(), message: "no pod IP".into() })?;
                let token = self.admin_token(ctx).await?;
                let answer = ctx.admin.switchover(&name, &ip, self.spec.admin_port, &token).await?;
                ctx.metrics.switchovers.get_or_create(&self.labels_for_metrics()).inc();
                let note = format!("{} is master now ({reason}); {name}: {answer}", from.other().pod_name(&pair));
                info!(pair = %pair, %note, "switchover");
                self.event(ctx, EventType::Normal, "Switchover", "Switchover", &note).await;
                return Ok(Done::Switched(reason.clone()));
            }
        }
        Ok(Done::Other)
    }

    /// `cachepair.io/role` on each member's pod, and the `role` metric.
    async fn label_roles(&self, ctx: &Context, views: &BTreeMap<Member, MemberView>, d: &Decision) -> Result<()> {
        let pods: Api<Pod> = self.api(ctx);
        for (member, role) in d.role_labels(views) {
            for r in ROLE_LABELS {
                let labels = RoleLabels {
                    namespace: self.namespace().unwrap_or_default(),
                    pair: self.name(),
                    member: member.suffix().into(),
                    role: r.into(),
                };
                ctx.metrics.roles.get_or_create(&labels).set(i64::from(r == role));
            }
            if !decide::relabel(&views[&member], role) {
                continue;
            }
            let patch = json!({"metadata": {"labels": {labels::ROLE: role}}});
            let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
            match pods.patch(&member.pod_name(&self.name()), &params, &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn write_status(&self, ctx: &Context, status: CachePairStatus) -> Result<()> {
        let api: Api<CachePair> = self.api(ctx);
        let patch = json!({
            "apiVersion": CachePair::api_version(&()),
            "kind": CachePair::kind(&()),
            "status": status,
        });
        api.patch_status(&self.name(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
        Ok(())
    }

    async fn event(&self, ctx: &Context, type_: EventType, reason: &str, action: &str, note: &str) {
        let event =
            Event { type_, reason: reason.into(), note: Some(note.into()), action: action.into(), secondary: None };
        if let Err(e) = ctx.recorder.publish(&event, &self.object_ref(&())).await {
            warn!(error = %e, reason, "could not record an event");
        }
    }
}

/// What an action did that the status records.
enum Done {
    /// A switchover: the roles swapped.
    Switched(SwitchoverReason),
    /// A requested re-seed, by its token.
    Reseeded(String),
    Other,
}

/// An object as server-side apply wants it: with its apiVersion and kind.
fn typed<K: Resource<DynamicType = ()> + Serialize>(obj: K) -> serde_json::Value {
    let mut value = serde_json::to_value(&obj).expect("a Kubernetes object serializes");
    value["apiVersion"] = K::api_version(&()).into();
    value["kind"] = K::kind(&()).into();
    value
}

/// Creates the Secret `name` from 32 random bytes unless it exists: generated once, and never
/// rewritten, since the members hold it.
async fn generate_secret(
    secrets: &Api<Secret>,
    name: &str,
    render: fn(&CachePair, &[u8; 32]) -> Secret,
    cp: &CachePair,
) -> Result<()> {
    if secrets.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| Error::Other(format!("no randomness for the secret: {e}")))?;
    let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    match secrets.create(&params, &render(cp, &random)).await {
        Ok(_) => info!(pair = %cp.name(), secret = name, "generated a secret"),
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Merges conditions into a pod's status by type (a strategic merge patch: the kubelet's own
/// conditions stay as they are).
async fn set_pod_conditions(pods: &Api<Pod>, name: &str, conditions: Vec<serde_json::Value>) -> Result<()> {
    let patch = json!({"status": {"conditions": conditions}});
    let params = PatchParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    match pods.patch_status(name, &params, &Patch::Strategic(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
