//! End-to-end tests of the CachePair life cycle against a real control plane, with the
//! operator as a process (or, in the quick start, as a pod) and pods as processes run from the
//! images of `scripts/images.sh` (see the `e2e` crate). One control plane serves every test;
//! each test has its own namespace and its own time limit.
//!
//! `cargo test -p e2e --test e2e [-- <name filter>]`; needs the control plane binaries
//! (`tests/controlplane/build.sh`), the images (`scripts/images.sh`, in target/images) and a
//! debug build of the operator.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use e2e::client::{Endpoints, Report, Writer as ServiceWriter};
use e2e::cluster::{Cluster, wait_for};
use e2e::memcache;
use e2e::operator_process::OperatorProcess;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, EvictParams, ListParams, LogParams, ObjectMeta, PostParams};
use operator::crd::{CachePair, Phase};

type TestFn = for<'a> fn(&'a Cluster) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

const TESTS: &[(&str, TestFn, u64)] = &[
    // First: its operator watches every namespace, as the README installs it; it is gone
    // before the other tests start their pairs.
    ("quick_start_from_the_readme_with_the_images", |c| Box::pin(quick_start_from_the_readme_with_the_images(c)), 330),
    ("images_run_in_their_own_root", |c| Box::pin(images_run_in_their_own_root(c)), 90),
    ("a_sample_pair_runs_a_master_and_a_slave", |c| Box::pin(a_sample_pair_runs_a_master_and_a_slave(c)), 180),
    ("b_failover_without_the_operator_then_reseed", |c| Box::pin(b_failover_without_the_operator_then_reseed(c)), 240),
    (
        "c_a_deleted_master_and_a_lost_node_are_reseeded_elsewhere",
        |c| Box::pin(c_a_deleted_master_and_a_lost_node_are_reseeded_elsewhere(c)),
        300,
    ),
    (
        "d_a_spec_change_rolls_slave_then_master_under_load",
        |c| Box::pin(d_a_spec_change_rolls_slave_then_master_under_load(c)),
        300,
    ),
    (
        "e_a_requested_switchover_swaps_roles_with_zero_loss",
        |c| Box::pin(e_a_requested_switchover_swaps_roles_with_zero_loss(c)),
        180,
    ),
    (
        "f_operator_killed_mid_reconcile_with_two_replicas_converges",
        |c| Box::pin(f_operator_killed_mid_reconcile_with_two_replicas_converges(c)),
        240,
    ),
    (
        "g_invalid_pairs_are_rejected_naming_the_field",
        |c| Box::pin(g_invalid_pairs_are_rejected_naming_the_field(c)),
        60,
    ),
    (
        "h_the_chart_and_deploy_manifests_install_on_the_api_server",
        |c| Box::pin(h_the_chart_and_deploy_manifests_install_on_the_api_server(c)),
        180,
    ),
    ("i_deleting_a_pair_removes_what_it_owned", |c| Box::pin(i_deleting_a_pair_removes_what_it_owned(c)), 180),
    (
        "j_member_logs_are_served_through_the_api_server",
        |c| Box::pin(j_member_logs_are_served_through_the_api_server(c)),
        180,
    ),
    (
        "k_a_lost_node_without_the_operator_stays_an_endpoint_until_not_ready",
        |c| Box::pin(k_a_lost_node_without_the_operator_stays_an_endpoint_until_not_ready(c)),
        240,
    ),
    (
        "l_a_partition_between_the_members_routes_to_one_master",
        |c| Box::pin(l_a_partition_between_the_members_routes_to_one_master(c)),
        240,
    ),
    (
        "m_a_drain_of_the_masters_node_completes_with_zero_loss",
        |c| Box::pin(m_a_drain_of_the_masters_node_completes_with_zero_loss(c)),
        240,
    ),
    (
        "n_an_autoscalers_scale_down_evicts_the_master_after_a_switchover",
        |c| Box::pin(n_an_autoscalers_scale_down_evicts_the_master_after_a_switchover(c)),
        240,
    ),
    (
        "o_an_eviction_of_the_master_is_a_switchover_through_the_webhook",
        |c| Box::pin(o_an_eviction_of_the_master_is_a_switchover_through_the_webhook(c)),
        240,
    ),
    ("p_the_kubectl_plugin_drives_a_pair", |c| Box::pin(p_the_kubectl_plugin_drives_a_pair(c)), 420),
    ("q_auth_and_tls_through_the_service", |c| Box::pin(q_auth_and_tls_through_the_service(c)), 300),
];

fn main() -> std::process::ExitCode {
    match e2e::netns::enter() {
        Ok(Some(code)) => return std::process::ExitCode::from(code as u8),
        Ok(None) => {}
        Err(e) => {
            eprintln!("{e:#}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let state = tempfile::Builder::new().prefix("cachepair-e2e-").tempdir().unwrap();
        let keep = std::env::var_os("E2E_KEEP").is_some();
        let started = Instant::now();
        let cluster = match Cluster::start(state.path(), 3).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cannot start the control plane: {e:#}");
                let _ = std::process::Command::new(e2e::cluster::repo().join("tests/controlplane/down.sh"))
                    .arg(state.path())
                    .status();
                return std::process::ExitCode::FAILURE;
            }
        };
        eprintln!("control plane and 3 process kubelets up in {:?} ({})", started.elapsed(), state.path().display());
        let mut failed = Vec::new();
        for (name, test, limit) in TESTS {
            if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
                continue;
            }
            let t = Instant::now();
            let result = match tokio::time::timeout(Duration::from_secs(*limit), test(&cluster)).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!("timed out after {limit} s")),
            };
            match result {
                Ok(()) => eprintln!("test {name} ... ok ({:.1} s)", t.elapsed().as_secs_f64()),
                Err(e) => {
                    eprintln!("test {name} ... FAILED ({:.1} s): {e:#}", t.elapsed().as_secs_f64());
                    failed.push(*name);
                }
            }
        }
        cluster.stop().await;
        if keep || !failed.is_empty() {
            let kept = state.keep();
            eprintln!("logs kept in {}", kept.display());
        }
        if failed.is_empty() {
            std::process::ExitCode::SUCCESS
        } else {
            eprintln!("failed: {failed:?}");
            std::process::ExitCode::FAILURE
        }
    })
}

// ----------------------------------------------------------------------------- helpers

async fn namespace(c: &Cluster, name: &str) -> anyhow::Result<()> {
    let ns = Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
    match Api::<Namespace>::all(c.client.clone()).create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn create_pair(c: &Cluster, ns: &str, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    let pair: CachePair = serde_json::from_value(serde_json::json!({
        "apiVersion": "cachepair.io/v1alpha1",
        "kind": "CachePair",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))?;
    Api::<CachePair>::namespaced(c.client.clone(), ns).create(&PostParams::default(), &pair).await?;
    Ok(())
}

/// Creates a CachePair from raw JSON, so that the API server (not serde) judges the spec.
async fn create_raw(c: &Cluster, ns: &str, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    let resource = kube::api::ApiResource::erase::<CachePair>(&());
    let obj: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "cachepair.io/v1alpha1",
        "kind": "CachePair",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))?;
    Api::<kube::api::DynamicObject>::namespaced_with(c.client.clone(), ns, &resource)
        .create(&PostParams::default(), &obj)
        .await?;
    Ok(())
}

async fn pair(c: &Cluster, ns: &str, name: &str) -> anyhow::Result<CachePair> {
    Ok(Api::<CachePair>::namespaced(c.client.clone(), ns).get(name).await?)
}

/// Waits until the pair is Ready with both members named.
async fn wait_ready(c: &Cluster, ns: &str, name: &str, limit: u64) -> anyhow::Result<CachePair> {
    wait_for(&format!("{ns}/{name} Ready"), Duration::from_secs(limit), || async {
        let p = pair(c, ns, name).await.ok()?;
        let s = p.status.as_ref()?;
        (s.phase == Some(Phase::Ready) && s.master.is_some() && s.slave.is_some()).then_some(p)
    })
    .await
}

async fn pod_ip(c: &Cluster, ns: &str, pod: &str) -> anyhow::Result<String> {
    let p = Api::<Pod>::namespaced(c.client.clone(), ns).get(pod).await?;
    p.status.and_then(|s| s.pod_ip).context("no pod IP")
}

/// The ready endpoint addresses of a Service.
async fn endpoints(c: &Cluster, ns: &str, service: &str) -> BTreeSet<String> {
    let slices = Api::<EndpointSlice>::namespaced(c.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .flat_map(|e| e.addresses.clone())
        .collect()
}

async fn role(ip: &str) -> Option<String> {
    admin_get(ip, "/role").await
}

/// A sample's value from a member's `/metrics` (a counter's is `<name>_total`).
async fn metric(ip: &str, name: &str) -> Option<f64> {
    let metrics = admin_get(ip, "/metrics").await?;
    metrics.lines().find_map(|l| {
        let (sample, value) = l.split_once(' ')?;
        (sample == name || sample == format!("{name}_total")).then(|| value.parse().ok())?
    })
}

/// The body of a GET on a member's admin listener.
async fn admin_get(ip: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect((ip, 9150))).await.ok()?.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await.ok()?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(1), s.read_to_string(&mut reply)).await.ok()?.ok()?;
    reply.split("\r\n\r\n").nth(1).map(|b| b.trim().to_string())
}

fn addr(ip: &str) -> String {
    format!("{ip}:11211")
}

/// Writes keys `<prefix><n>` without pause to whatever address `target` holds (the client
/// Service's endpoint, kept current by `follow_endpoint`), and remembers the acknowledged ones.
struct Writer {
    target: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Writer {
    fn start(prefix: &str, target: String) -> Self {
        let target = Arc::new(Mutex::new(target));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st, prefix) = (target.clone(), stop.clone(), prefix.to_string());
        let thread = std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut n = 0u64;
            while !st.load(Ordering::Relaxed) {
                let key = format!("{prefix}{n}");
                n += 1;
                let to = t.lock().unwrap().clone();
                if memcache::set(&to, &key, "v") {
                    acked.push(key);
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            acked
        });
        Self { target, stop, thread: Some(thread) }
    }

    /// Points the writer at the client Service's endpoint whenever it changes.
    async fn follow_endpoint(&self, c: &Cluster, ns: &str, service: &str) {
        if let Some(ip) = endpoints(c, ns, service).await.into_iter().next() {
            *self.target.lock().unwrap() = addr(&ip);
        }
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The acknowledged keys missing on the node at `ip`.
fn missing_on(ip: &str, keys: &[String]) -> Vec<String> {
    keys.iter().filter(|k| memcache::get(&addr(ip), k).is_none()).cloned().collect()
}

/// Starts a client writing through the Service's endpoints once they are exactly `master`.
/// A sync-mode pair `demo` in `ns`, Ready, with a client writing through its Service.
struct Writing {
    master: String,
    slave: String,
    /// The watch the client follows: kept for as long as the client runs.
    eps: Endpoints,
    client: ServiceWriter,
}

async fn sync_pair_under_writes(c: &Cluster, ns: &str, prefix: &str) -> anyhow::Result<Writing> {
    create_pair(c, ns, "demo", serde_json::json!({"replication": {"mode": "sync"}})).await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.unwrap();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    let eps = Endpoints::watch(c.client.clone(), ns, "demo");
    let client = measure_from(&eps, &pod_ip(c, ns, &master).await?, prefix).await?;
    Ok(Writing { master, slave, eps, client })
}

async fn measure_from(eps: &Endpoints, master: &str, prefix: &str) -> anyhow::Result<ServiceWriter> {
    wait_for("the client Service's endpoints to be the master", Duration::from_secs(30), || async {
        (eps.current() == BTreeSet::from([master.to_string()])).then_some(())
    })
    .await?;
    let writer = ServiceWriter::start(eps, 11211, prefix);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(writer)
}

/// When the member at `ip` answered as master first (polled every 20 ms), and when the
/// Service's endpoints became that member alone.
async fn promotion_then_only(eps: &Endpoints, ip: &str, limit: Duration) -> anyhow::Result<(Instant, Instant)> {
    let start = Instant::now();
    let promoted = loop {
        if role(ip).await.as_deref() == Some("master") {
            break Instant::now();
        }
        ensure!(start.elapsed() < Duration::from_secs(10), "{ip} did not take over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let only = BTreeSet::from([ip.to_string()]);
    wait_for("the endpoints to hold only the new master", limit, || async { eps.since(&only) }).await?;
    Ok((promoted, eps.since(&only).context("the endpoints changed again")?))
}

/// Prints one line of the failover benchmark (docs/bench/failover-kubernetes.md) and returns
/// how many acknowledged writes the master at `ip` lacks.
fn bench(scenario: &str, report: Report, ip: &str, test: &str) -> anyhow::Result<usize> {
    let lost = report.lost_on(&addr(ip))?;
    let (gap, _) = report.longest_gap();
    eprintln!(
        "  bench | {scenario} | longest gap {} ms | {} acknowledged writes, {} lost | {} failed requests | \
         cargo test -p e2e --test e2e -- {test}",
        gap.as_millis(),
        report.acked.len(),
        lost.len(),
        report.failures
    );
    if !lost.is_empty() {
        eprintln!("  lost, e.g.: {:?}", &lost[..lost.len().min(5)]);
    }
    Ok(lost.len())
}

async fn member_pod(c: &Cluster, ns: &str, name: &str) -> Option<Pod> {
    Api::<Pod>::namespaced(c.client.clone(), ns).get_opt(name).await.ok().flatten()
}

// ----------------------------------------------------------------------------- tests

/// The README's Kubernetes quick start, command for command, on images: the chart installed with
/// its default values runs the operator as a pod from `cachepair/operator:0.1.0` (the archive
/// scripts/images.sh built, run by the process kubelet: in-cluster configuration from its
/// service account, leader election); the sample CachePair runs `cachepair/cache-node:0.1.0`
/// (the CRD's default image is what the sample names), becomes Ready, and a memcached client
/// reaches the master through the Service `demo`. Then the README's uninstall, which the test
/// runs whatever happened before.
async fn quick_start_from_the_readme_with_the_images(c: &Cluster) -> anyhow::Result<()> {
    let result = tokio::time::timeout(Duration::from_secs(220), quick_start(c)).await;
    let cleanup = tokio::time::timeout(Duration::from_secs(100), quick_start_uninstall(c)).await;
    result.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after 220 s")))?;
    cleanup.unwrap_or_else(|_| Err(anyhow::anyhow!("the uninstall timed out after 100 s")))
}

async fn quick_start(c: &Cluster) -> anyhow::Result<()> {
    let repo = e2e::cluster::repo();
    let path = |p: &str| repo.join(p).to_string_lossy().into_owned();
    let (sys, operator) = ("cachepair-system", "cachepair-operator");
    // helm install cachepair-operator charts/cachepair-operator -n cachepair-system --create-namespace
    helm(c, &["install", operator, &path("charts/cachepair-operator"), "-n", sys, "--create-namespace"])?;
    let deployment = c.kubectl(&[
        "-n",
        sys,
        "get",
        "deployment",
        operator,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])?;
    ensure!(deployment == "cachepair/operator:0.1.0", "the chart's default image: {deployment}");
    // kubectl -n cachepair-system rollout status deployment/cachepair-operator: Ready means
    // the operator in its pod answers /readyz, which it does once it leads (the Lease).
    c.kubectl(&["-n", sys, "rollout", "status", &format!("deployment/{operator}"), "--timeout=90s"])
        .context("the operator's pod (from its image) did not become ready")?;
    let pods = Api::<Pod>::namespaced(c.client.clone(), sys)
        .list(&ListParams::default().labels("app.kubernetes.io/name=cachepair-operator"))
        .await?;
    let pod = pods.items.first().context("no operator pod")?;
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).context("the operator's pod is not scheduled")?;
    eprintln!("  the operator runs as pod {} on {node}", pod.metadata.name.as_deref().unwrap_or_default());

    // kubectl apply -f deploy/samples/cachepair-service.yaml, then kubectl get cp
    c.kubectl(&["apply", "-f", &path("deploy/samples/cachepair-service.yaml")])?;
    let s = wait_ready(c, "default", "demo", 150).await.context("the sample (the operator logs to its pod's log)")?;
    let s = s.status.context("no status")?;
    let (master, slave) = (s.master.context("no master")?, s.slave.context("no slave")?);
    let listed = c.kubectl(&["get", "cp", "-n", "default"])?;
    let row: Vec<&str> = listed.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    ensure!(row[..row.len().min(4)] == ["demo", master.as_str(), slave.as_str(), "Ready"], "kubectl get cp:\n{listed}");
    for member in [&master, &slave] {
        let p = member_pod(c, "default", member).await.context("a member's pod")?;
        let image = p.spec.as_ref().and_then(|s| s.containers[0].image.clone()).unwrap_or_default();
        ensure!(image == "cachepair/cache-node:0.1.0", "{member} runs {image}");
    }

    // Applications connect to demo.<namespace>.svc:11211: here, the address the Service routes
    // to (its one ready endpoint, the master), as kube-proxy would.
    let mip = pod_ip(c, "default", &master).await?;
    let only_master = BTreeSet::from([mip.clone()]);
    wait_for("the Service's only endpoint to be the master", Duration::from_secs(15), || async {
        (endpoints(c, "default", "demo").await == only_master).then_some(())
    })
    .await?;
    let (via_service, sip) = (addr(&mip), addr(&pod_ip(c, "default", &slave).await?));
    tokio::task::spawn_blocking(move || {
        ensure!(memcache::set(&via_service, "greeting", "hello"), "set through the Service failed");
        ensure!(memcache::get(&via_service, "greeting").as_deref() == Some("hello"), "get through the Service");
        // Replicated: the slave has it too (soon).
        let deadline = Instant::now() + Duration::from_secs(5);
        while memcache::get(&sip, "greeting").as_deref() != Some("hello") {
            ensure!(Instant::now() < deadline, "the slave did not get the value");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })
    .await??;
    Ok(())
}

/// Pods run inside their images, not on the host: the image's ENTRYPOINT with the pod's args
/// (`--version`) succeeds; a command the host has but the image does not (`/bin/sh`: the image
/// has no shell) fails the pod, as does an image no archive provides.
async fn images_run_in_their_own_root(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-images";
    namespace(c, ns).await?;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    let shell = serde_json::json!({"command": ["/bin/sh", "-c", "exit 0"]});
    let cases = [
        ("entrypoint", "cachepair/cache-node:0.1.0", serde_json::json!({"args": ["--version"]}), "Succeeded"),
        ("host-shell", "cachepair/cache-node:0.1.0", shell, "Failed"),
        ("no-such-image", "cachepair/cache-node:9.9.9", serde_json::json!({}), "Failed"),
    ];
    for (name, image, extra, _) in &cases {
        let mut container = serde_json::json!({"name": "main", "image": image});
        container.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"restartPolicy": "Never", "containers": [container]},
        }))?;
        // The namespace's default service account may not exist yet.
        wait_for(&format!("pod {name} created"), Duration::from_secs(20), || async {
            match pods.create(&PostParams::default(), &pod).await {
                Ok(_) => Some(()),
                Err(kube::Error::Api(e)) if e.code == 409 => Some(()),
                Err(_) => None,
            }
        })
        .await?;
    }
    let mut result = Ok(());
    for (name, _, _, phase) in &cases {
        let reached = wait_for(&format!("pod {name} {phase}"), Duration::from_secs(40), || async {
            let s = pods.get(name).await.ok()?.status?;
            (s.phase.as_deref() == Some(*phase)).then_some(s)
        })
        .await;
        match reached {
            Ok(s) => eprintln!("  {name}: {phase} {}", s.message.unwrap_or_default()),
            Err(e) => result = result.and(Err(e)),
        }
    }
    for (name, ..) in &cases {
        let params = kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        let _ = pods.delete(name, &params).await;
    }
    result
}

/// The README's uninstall: the CachePair while the operator runs (its finalizer), then the
/// chart (the CRD stays: the other tests use it). Waits until their pods are gone.
async fn quick_start_uninstall(c: &Cluster) -> anyhow::Result<()> {
    let deleted = c.kubectl(&["delete", "cachepair", "demo", "-n", "default", "--ignore-not-found", "--timeout=40s"]);
    if deleted.is_err() {
        // The operator never came up (or hung): nothing else will remove its finalizer.
        let unfinalized = r#"{"metadata":{"finalizers":null}}"#;
        let _ = c.kubectl(&["patch", "cachepair", "demo", "-n", "default", "--type=merge", "-p", unfinalized]);
    }
    let _ = helm(c, &["uninstall", "cachepair-operator", "-n", "cachepair-system", "--wait", "--timeout", "30s"]);
    // The members go with the pair through the garbage collector, which watches a new kind (the
    // CRD the chart just installed) only from its next monitor resync, every 30 s: a quick
    // start done within seconds of the install waits for that.
    wait_for("the quick start's pods to go", Duration::from_secs(60), || async {
        let default = Api::<Pod>::namespaced(c.client.clone(), "default").list(&ListParams::default()).await.ok()?;
        let sys =
            Api::<Pod>::namespaced(c.client.clone(), "cachepair-system").list(&ListParams::default()).await.ok()?;
        (default.items.is_empty() && sys.items.is_empty()).then_some(())
    })
    .await
}

/// a. A sample pair: one master, one slave, Ready; the client Service's endpoint is the master;
/// a value written through it is on both members.
async fn a_sample_pair_runs_a_master_and_a_slave(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-a";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start(c, "operator-a", false)?;
    create_pair(c, ns, "demo", serde_json::json!({})).await?;
    let p = wait_ready(c, ns, "demo", 120).await?;
    let s = p.status.unwrap();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    ensure!(master != slave);
    let (mip, sip) = (pod_ip(c, ns, &master).await?, pod_ip(c, ns, &slave).await?);
    ensure!(role(&mip).await.as_deref() == Some("master"), "{master} is not master");
    ensure!(role(&sip).await.as_deref() == Some("slave"), "{slave} is not slave");
    // The status shows each member's role, node and replication position.
    let members = wait_for("status.members with both offsets", Duration::from_secs(30), || async {
        let s = pair(c, ns, "demo").await.ok()?.status?;
        (s.members.len() == 2 && s.members.iter().all(|m| m.offset_bytes.is_some()) && s.lag_bytes.is_some())
            .then_some(s.members)
    })
    .await?;
    let roles: Vec<(&str, &str)> = members.iter().map(|m| (m.name.as_str(), m.role.as_str())).collect();
    let mut expected = vec![(master.as_str(), "master"), (slave.as_str(), "slave")];
    expected.sort();
    ensure!(roles == expected, "status.members says {roles:?}");
    ensure!(members.iter().all(|m| m.node.is_some()), "every member's node is shown: {members:?}");
    let eps = wait_for("the client Service's endpoints to be the master", Duration::from_secs(30), || async {
        let e = endpoints(c, ns, "demo").await;
        (e == BTreeSet::from([mip.clone()])).then_some(e)
    })
    .await?;
    let via = eps.into_iter().next().unwrap();
    ensure!(memcache::set(&addr(&via), "greeting", "hello"), "set through the Service's endpoint");
    ensure!(memcache::get(&addr(&mip), "greeting").as_deref() == Some("hello"));
    wait_for("the value on the slave", Duration::from_secs(5), || async {
        (memcache::get(&addr(&sip), "greeting").as_deref() == Some("hello")).then_some(())
    })
    .await?;
    Ok(())
}

/// b. SIGKILL the master with the operator stopped: the slave serves as master within a second
/// and the endpoints follow; the operator, started, re-seeds the ex-master as a slave, counts
/// the failover and records an Event. Synchronous mode: no acknowledged write is lost.
async fn b_failover_without_the_operator_then_reseed(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-b";
    namespace(c, ns).await?;
    let op = OperatorProcess::start(c, "operator-b1", false)?;
    create_pair(c, ns, "demo", serde_json::json!({"replication": {"mode": "sync"}})).await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.unwrap();
    op.kill();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    let (mip, sip) = (pod_ip(c, ns, &master).await?, pod_ip(c, ns, &slave).await?);

    // Acknowledged writes before the kill.
    let mut acked = Vec::new();
    for i in 0..200 {
        let key = format!("k{i}");
        if memcache::set(&addr(&mip), &key, &format!("v{i}")) {
            acked.push(key);
        }
    }
    ensure!(acked.len() == 200, "only {} of 200 writes acknowledged before the kill", acked.len());

    let eps = Endpoints::watch(c.client.clone(), ns, "demo");
    let client = measure_from(&eps, &mip, "b").await?;
    ensure!(c.kill_pod(ns, &master).await, "no kubelet runs {master}");
    let t0 = Instant::now();
    wait_for("the slave to serve as master", Duration::from_secs(5), || async {
        (role(&sip).await.as_deref() == Some("master") && memcache::set(&addr(&sip), "after", "1")).then_some(())
    })
    .await?;
    let took = t0.elapsed();
    eprintln!("  failover: the slave served as master {took:?} after the SIGKILL");
    ensure!(took < Duration::from_secs(1), "failover took {took:?}");
    wait_for("the endpoints to follow", Duration::from_secs(15), || async {
        (endpoints(c, ns, "demo").await == BTreeSet::from([sip.clone()])).then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    bench("master process SIGKILL (operator stopped)", client.finish(), &sip, "b_failover")?;
    let missing: Vec<&String> = acked.iter().filter(|k| memcache::get(&addr(&sip), k).is_none()).collect();
    ensure!(missing.is_empty(), "sync mode lost acknowledged writes: {missing:?}");

    let _op = OperatorProcess::start(c, "operator-b2", false)?;
    let p = wait_for("the ex-master re-seeded as slave", Duration::from_secs(120), || async {
        let p = pair(c, ns, "demo").await.ok()?;
        let s = p.status.as_ref()?;
        (s.phase == Some(Phase::Ready) && s.master.as_deref() == Some(&slave) && s.slave.as_deref() == Some(&master))
            .then_some(p)
    })
    .await?;
    let s = p.status.unwrap();
    ensure!(s.failover_count == 1, "failoverCount {}", s.failover_count);
    ensure!(s.last_failover_time.is_some());
    let new_slave_ip = pod_ip(c, ns, &master).await?;
    ensure!(
        role(&new_slave_ip).await.as_deref() == Some("slave"),
        "the ex-master came back as {:?}",
        role(&new_slave_ip).await
    );
    ensure!(memcache::get(&addr(&new_slave_ip), "k0").as_deref() == Some("v0"), "the re-seeded slave has the data");
    let events = Api::<Event>::namespaced(c.client.clone(), ns).list(&ListParams::default()).await?;
    let reasons: BTreeSet<String> = events.items.iter().filter_map(|e| e.reason.clone()).collect();
    if !reasons.contains("Failover") || !reasons.contains("Reseeded") {
        bail!("events {reasons:?} lack Failover or Reseeded");
    }
    Ok(())
}

/// g. The API server rejects invalid CachePairs with errors that name the field.
async fn g_invalid_pairs_are_rejected_naming_the_field(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-g";
    namespace(c, ns).await?;
    let vrrp = |extra: serde_json::Value| {
        let mut v =
            serde_json::json!({"virtualIP": "192.0.2.10", "interface": "eth0", "routerID": 51, "nodes": ["n1", "n2"]});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::json!({"exposure": {"vrrp": v}})
    };
    let cases = [
        (serde_json::json!({"memoryMB": 0}), "spec.memoryMB"),
        (serde_json::json!({"threads": 1000}), "spec.threads"),
        (serde_json::json!({"port": 70000}), "spec.port"),
        (serde_json::json!({"replication": {"mode": "fast"}}), "spec.replication.mode"),
        (serde_json::json!({"replication": {"heartbeatMillis": 1}}), "spec.replication.heartbeatMillis"),
        (serde_json::json!({"antiAffinity": "Sometimes"}), "spec.antiAffinity"),
        (vrrp(serde_json::json!({"nodes": ["n1", "n1"]})), "spec.exposure.vrrp.nodes"),
        (
            vrrp(serde_json::json!({"version": 2, "advertIntervalMillis": 1500})),
            "spec.exposure.vrrp.advertIntervalMillis",
        ),
        (vrrp(serde_json::json!({"authSecretName": "s"})), "spec.exposure.vrrp.authSecretName"),
        (vrrp(serde_json::json!({"version": 2, "virtualIP": "2001:db8::10"})), "spec.exposure.vrrp.virtualIP"),
        (vrrp(serde_json::json!({"advertIntervalMillis": 255})), "spec.exposure.vrrp.advertIntervalMillis"),
        (vrrp(serde_json::json!({"routerID": 0})), "spec.exposure.vrrp.routerID"),
        (serde_json::json!({"exposure": {"vrrp": {"interface": "eth0"}}}), "spec.exposure.vrrp.virtualIP"),
    ];
    for (i, (spec, field)) in cases.iter().enumerate() {
        let name = format!("bad-{i}");
        match create_raw(c, ns, &name, spec.clone()).await {
            Ok(()) => bail!("{spec} was accepted"),
            Err(e) => {
                let message = format!("{e:#}");
                ensure!(message.contains(field), "{spec}: the error does not name {field}: {message}");
                eprintln!("  rejected {spec}: {}", message.split(" (Status").next().unwrap_or_default());
            }
        }
    }
    // A valid one is accepted and defaulted.
    create_pair(c, ns, "good", serde_json::json!({})).await?;
    let p = pair(c, ns, "good").await?;
    ensure!(p.spec.memory_mb == 64 && p.spec.replication.port == 11212, "defaults not applied: {:?}", p.spec);
    // What the schema cannot know (a Secret that does not exist) is the operator's to report,
    // naming the field, without creating members.
    let _op = OperatorProcess::start(c, "operator-g", false)?;
    create_pair(c, ns, "nosecret", serde_json::json!({"replication": {"secretName": "absent"}})).await?;
    let condition = wait_for("SpecValid=False", Duration::from_secs(60), || async {
        let s = pair(c, ns, "nosecret").await.ok()?.status?;
        let cond = s.conditions.iter().find(|c| c.type_ == "SpecValid" && c.status == "False")?.clone();
        (s.phase == Some(Phase::Invalid)).then_some(cond)
    })
    .await?;
    ensure!(condition.message.contains("spec.replication.secretName"), "{}", condition.message);
    let pods = Api::<Pod>::namespaced(c.client.clone(), ns)
        .list(&ListParams::default().labels("cachepair.io/pair=nosecret"))
        .await?;
    ensure!(pods.items.is_empty(), "members created for an invalid spec");
    eprintln!("  SpecValid=False: {}", condition.message);
    Ok(())
}

/// i. Deleting a CachePair removes its pods, Services, budget, policy and Secret.
async fn i_deleting_a_pair_removes_what_it_owned(c: &Cluster) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{Secret, Service};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let ns = "e2e-i";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start(c, "operator-i", false)?;
    create_pair(c, ns, "gone", serde_json::json!({})).await?;
    wait_ready(c, ns, "gone", 120).await?;
    let selector = ListParams::default().labels("cachepair.io/pair=gone");
    let count = |c: &Cluster| {
        let (client, selector) = (c.client.clone(), selector.clone());
        async move {
            let pods =
                Api::<Pod>::namespaced(client.clone(), ns).list(&selector).await.map(|l| l.items.len()).unwrap_or(99);
            let svcs = Api::<Service>::namespaced(client.clone(), ns)
                .list(&selector)
                .await
                .map(|l| l.items.len())
                .unwrap_or(99);
            let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), ns)
                .list(&selector)
                .await
                .map(|l| l.items.len())
                .unwrap_or(99);
            let nps = Api::<NetworkPolicy>::namespaced(client.clone(), ns)
                .list(&selector)
                .await
                .map(|l| l.items.len())
                .unwrap_or(99);
            let secrets =
                Api::<Secret>::namespaced(client, ns).list(&selector).await.map(|l| l.items.len()).unwrap_or(99);
            (pods, svcs, pdbs, nps, secrets)
        }
    };
    let before = count(c).await;
    // Secrets: the replication secret, the replication link's CA and certificate, the admin token.
    ensure!(before == (2, 2, 1, 1, 3), "owned objects before: {before:?}");
    Api::<CachePair>::namespaced(c.client.clone(), ns).delete("gone", &Default::default()).await?;
    wait_for("everything the pair owned to go", Duration::from_secs(90), || async {
        let gone = Api::<CachePair>::namespaced(c.client.clone(), ns).get_opt("gone").await.ok()?.is_none();
        (gone && count(c).await == (0, 0, 0, 0, 0)).then_some(())
    })
    .await?;
    Ok(())
}

/// j. A member's log through the API server's `pods/log`, which reaches the process kubelet's
/// kubelet API on its node's address: the cache-node container's log as it started, its last
/// lines (`tailLines`) and first bytes (`limitBytes`), no previous container (400 with the
/// kubelet's message: the pod has never restarted), and `kubectl logs` for the same pod.
/// cache-node logs errors only by default (memcached's verbosity): the pair asks for `info`.
async fn j_member_logs_are_served_through_the_api_server(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-j";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start_in(c, "operator-j", ns)?;
    create_pair(c, ns, "demo", serde_json::json!({"podTemplate": {"env": [{"name": "RUST_LOG", "value": "info"}]}}))
        .await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.context("no status")?;
    let master = s.master.context("no master")?;
    let pods = Api::<Pod>::namespaced(c.client.clone(), ns);
    let params = LogParams { container: Some("cache-node".into()), ..Default::default() };

    // The whole log: what cache-node says as it starts.
    let log = pods.logs(&master, &params).await.context("the master's log through the API server")?;
    eprintln!("  {master}'s log:\n{log}");
    for said in [STARTED_LISTENING, STARTED_ADMIN] {
        ensure!(log.lines().any(|l| l.contains(said)), "no {said:?} in {master}'s log:\n{log}");
    }
    let lines: Vec<&str> = log.lines().collect();

    // tailLines: the last lines only.
    let tail = pods.logs(&master, &LogParams { tail_lines: Some(2), ..params.clone() }).await?;
    let tail: Vec<&str> = tail.lines().collect();
    ensure!(lines.len() > 2, "too short a log to tail:\n{log}");
    // The log may have grown since: the tail is the two lines that end some prefix of it.
    ensure!(tail.len() == 2 && (2..=lines.len()).any(|n| lines[n - 2..n] == tail[..]), "tailLines=2 gave {tail:?}");
    // limitBytes: the first bytes only.
    let head = pods.logs(&master, &LogParams { limit_bytes: Some(10), ..params.clone() }).await?;
    ensure!(head.len() == 10 && log.starts_with(&head), "limitBytes=10 gave {head:?}");

    // No previous container: the kubelet's 400, passed on by the API server.
    match pods.logs(&master, &LogParams { previous: true, ..params.clone() }).await {
        Err(kube::Error::Api(e)) if e.code == 400 && e.message.contains("previous terminated container") => {}
        other => bail!("previous=true: {other:?}"),
    }

    // kubectl logs, as a user runs it.
    let out = c.kubectl(&["-n", ns, "logs", &master, "-c", "cache-node", "--tail", "5"])?;
    ensure!((1..=5).contains(&out.lines().count()), "kubectl logs --tail 5:\n{out}");
    ensure!(out.lines().all(|l| log.contains(l) || l.contains(" INFO ")), "kubectl logs --tail 5:\n{out}");
    let out = c.kubectl(&["-n", ns, "logs", &master, "-c", "cache-node"])?;
    ensure!(out.contains(STARTED_LISTENING), "kubectl logs:\n{out}");
    let refused = c.kubectl(&["-n", ns, "logs", &master, "-c", "cache-node", "--previous"]);
    let refused = refused.err().map(|e| e.to_string()).unwrap_or_default();
    ensure!(refused.contains("previous terminated container"), "kubectl logs --previous: {refused}");
    Ok(())
}

/// What cache-node logs (at `info`) as it starts: its memcached listener, its admin listener.
const STARTED_LISTENING: &str = "cache_node::server: listening addr=";
const STARTED_ADMIN: &str = "admin listening addr=";

/// c. Deleting the master's pod hands the role to the slave (cache-node hands over on SIGTERM)
/// with no acknowledged write lost, and the deleted member comes back as slave; then the
/// master's whole node goes down: the client Service drops the dead master within 2 s of the
/// slave's promotion (the operator fences it; the node is not NotReady for another 50 s), and
/// after `nodeLostTimeoutSeconds` its pod is force-deleted and the member re-seeded on another
/// node.
async fn c_a_deleted_master_and_a_lost_node_are_reseeded_elsewhere(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-c";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start_in(c, "operator-c", ns)?;
    create_pair(c, ns, "demo", serde_json::json!({"nodeLostTimeoutSeconds": 3, "replication": {"mode": "sync"}}))
        .await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.unwrap();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    let eps = Endpoints::watch(c.client.clone(), ns, "demo");
    let client = measure_from(&eps, &pod_ip(c, ns, &master).await?, "c1-").await?;
    let old_uid = member_pod(c, ns, &master).await.and_then(|p| p.metadata.uid);
    Api::<Pod>::namespaced(c.client.clone(), ns).delete(&master, &Default::default()).await?;
    wait_for("the deleted master back as slave", Duration::from_secs(60), || async {
        let p = pair(c, ns, "demo").await.ok()?;
        let s = p.status.as_ref()?;
        let back = member_pod(c, ns, &master).await?;
        (s.phase == Some(Phase::Ready) && s.master.as_deref() == Some(&slave) && back.metadata.uid != old_uid)
            .then_some(())
    })
    .await?;
    let sip = pod_ip(c, ns, &slave).await?;
    let lost = bench("master pod delete (operator running)", client.finish(), &sip, "c_a_deleted")?;
    // A hand-over, not a failure the slave had to detect: it never promoted itself.
    let promotions = metric(&sip, "cachepair_replication_failovers").await;
    ensure!(
        promotions == Some(0.0),
        "the deleted master did not hand over: the slave promoted itself ({promotions:?})"
    );
    ensure!(lost == 0, "{lost} acknowledged writes lost across the pod's deletion");
    // The operator tells it apart too: no failover counted, a HandedOver Event instead.
    ensure!(pair(c, ns, "demo").await?.status.unwrap().failover_count == 0, "a hand-over counted as a failover");
    let events: Api<Event> = Api::namespaced(c.client.clone(), ns);
    let reasons: BTreeSet<String> =
        events.list(&ListParams::default()).await?.items.into_iter().filter_map(|e| e.reason).collect();
    ensure!(reasons.contains("HandedOver") && !reasons.contains("Failover"), "Events: {reasons:?}");

    // Now the master (the old slave) loses its whole node.
    let node = member_pod(c, ns, &slave).await.and_then(|p| p.spec?.node_name).context("the master's node")?;
    let other = member_pod(c, ns, &master).await.and_then(|p| p.spec?.node_name).context("the slave's node")?;
    let new_sip = pod_ip(c, ns, &master).await?;
    let client = measure_from(&eps, &sip, "c2-").await?;
    c.node_down(&node).await?;
    let t0 = Instant::now();
    let (promoted, only) = promotion_then_only(&eps, &new_sip, Duration::from_secs(10)).await?;
    let routed = only.saturating_duration_since(promoted);
    eprintln!(
        "  node loss: promoted {:?} after the node went down; the Service held only the live master {routed:?} later",
        promoted - t0
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lost = bench("node loss of the master (operator running)", client.finish(), &new_sip, "c_a_deleted")?;
    let result = wait_for("re-seeding on another node", Duration::from_secs(150), || async {
        let p = pair(c, ns, "demo").await.ok()?;
        let s = p.status.as_ref()?;
        let moved = member_pod(c, ns, &slave).await?;
        let on = moved.spec.as_ref()?.node_name.clone()?;
        (s.phase == Some(Phase::Ready) && s.master.as_deref() == Some(&master) && on != node && on != other)
            .then_some(on)
    })
    .await;
    let n: u8 = node.trim_start_matches("node-").parse()?;
    c.node_up(n).await?;
    ensure!(routed <= Duration::from_secs(2), "the dead master stayed an endpoint {routed:?} after the promotion");
    ensure!(lost == 0, "{lost} acknowledged writes lost to the node's loss");
    let on = result?;
    eprintln!("  {slave} re-seeded on {on} {:?} after {node} went down", t0.elapsed());
    let events = Api::<Event>::namespaced(c.client.clone(), ns).list(&ListParams::default()).await?;
    let reasons: BTreeSet<String> = events.items.iter().filter_map(|e| e.reason.clone()).collect();
    ensure!(reasons.contains("NodeLost") && reasons.contains("Fenced"), "events {reasons:?} lack NodeLost or Fenced");
    Ok(())
}

/// d. A spec change (memory) under continuous writes: the slave is rolled first, then a
/// switchover, then the old master; a master serves throughout and no acknowledged write is lost.
async fn d_a_spec_change_rolls_slave_then_master_under_load(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-d";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start(c, "operator-d", false)?;
    create_pair(c, ns, "demo", serde_json::json!({"replication": {"mode": "sync"}})).await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.unwrap();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    let uid = |name: String| async move { member_pod(c, ns, &name).await.and_then(|p| p.metadata.uid) };
    let (master_uid, slave_uid) = (uid(master.clone()).await, uid(slave.clone()).await);
    let writer = Writer::start("d", addr(&pod_ip(c, ns, &master).await?));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A cache setting and the pod template together: both roll through the same path.
    let patch = serde_json::json!({"spec": {"memoryMB": 80, "podTemplate": {
        "labels": {"team": "shop"}, "env": [{"name": "CACHEPAIR_E2E", "value": "d"}]}}});
    Api::<CachePair>::namespaced(c.client.clone(), ns)
        .patch("demo", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await?;
    // Watch the order (the slave's pod replaced, the master role moved, the old master's pod
    // replaced) and that a master answers all along.
    let (mut slave_rolled, mut switched, mut master_rolled) = (None, None, None);
    let (start, mut last_master, mut longest_gap) = (Instant::now(), Instant::now(), Duration::ZERO);
    loop {
        ensure!(start.elapsed() < Duration::from_secs(180), "the rollout did not finish");
        writer.follow_endpoint(c, ns, "demo").await;
        let now = start.elapsed();
        if slave_rolled.is_none() && uid(slave.clone()).await != slave_uid {
            slave_rolled = Some(now);
        }
        let status = pair(c, ns, "demo").await?.status.unwrap_or_default();
        if switched.is_none() && status.master.as_deref() == Some(slave.as_str()) {
            switched = Some(now);
        }
        if master_rolled.is_none() && uid(master.clone()).await != master_uid {
            master_rolled = Some(now);
        }
        let mut any_master = false;
        for m in [&master, &slave] {
            if let Ok(ip) = pod_ip(c, ns, m).await {
                any_master |= role(&ip).await.as_deref() == Some("master");
            }
        }
        if any_master {
            longest_gap = longest_gap.max(last_master.elapsed());
            last_master = Instant::now();
        }
        if master_rolled.is_some() && status.phase == Some(Phase::Ready) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    longest_gap = longest_gap.max(last_master.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = writer.finish();
    eprintln!(
        "  slave rolled at {slave_rolled:?}, switched over at {switched:?}, old master rolled at {master_rolled:?}; \
         longest time without a master answering {longest_gap:?}; {} writes acknowledged",
        acked.len()
    );
    let (sr, sw, mr) =
        (slave_rolled.context("slave not rolled")?, switched.context("no switchover")?, master_rolled.unwrap());
    ensure!(sr <= sw && sw <= mr, "wrong order: slave {sr:?}, switchover {sw:?}, master {mr:?}");
    ensure!(longest_gap < Duration::from_secs(2), "no master for {longest_gap:?}");
    let status = pair(c, ns, "demo").await?.status.unwrap();
    ensure!(status.failover_count == 0, "a rollout is no failover");
    for m in [&master, &slave] {
        let pod = member_pod(c, ns, m).await.context("member")?;
        ensure!(
            pod.metadata.labels.unwrap_or_default().get("team").map(String::as_str) == Some("shop"),
            "{m}'s labels"
        );
        let spec = pod.spec.unwrap();
        let args = spec.containers[0].args.clone().unwrap_or_default();
        ensure!(args.windows(2).any(|w| w[0] == "-m" && w[1] == "80"), "{m} runs {args:?}");
        let env = spec.containers[0].env.clone().unwrap_or_default();
        ensure!(env.iter().any(|e| e.name == "CACHEPAIR_E2E"), "{m}'s environment: {env:?}");
        ensure!(spec.automount_service_account_token == Some(false), "{m} mounts an API token");
    }
    let missing = missing_on(&pod_ip(c, ns, &status.master.unwrap()).await?, &acked);
    ensure!(
        missing.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    Ok(())
}

/// e. A requested switchover swaps the roles with no acknowledged write lost.
async fn e_a_requested_switchover_swaps_roles_with_zero_loss(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-e";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start(c, "operator-e", false)?;
    create_pair(c, ns, "demo", serde_json::json!({})).await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.unwrap();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    let writer = Writer::start("e", addr(&pod_ip(c, ns, &master).await?));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let patch = serde_json::json!({"spec": {"switchover": "e2e-1"}});
    Api::<CachePair>::namespaced(c.client.clone(), ns)
        .patch("demo", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await?;
    wait_for("the roles to swap", Duration::from_secs(60), || async {
        writer.follow_endpoint(c, ns, "demo").await;
        let s = pair(c, ns, "demo").await.ok()?.status?;
        let swapped = s.master.as_deref() == Some(&slave) && s.slave.as_deref() == Some(&master);
        (swapped && s.switchover.as_deref() == Some("e2e-1")).then_some(())
    })
    .await?;
    let (new_master, old_master) = (pod_ip(c, ns, &slave).await?, pod_ip(c, ns, &master).await?);
    ensure!(role(&new_master).await.as_deref() == Some("master"));
    ensure!(role(&old_master).await.as_deref() == Some("slave"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = writer.finish();
    ensure!(!acked.is_empty());
    // Writes the old master acknowledged after the hand-over reach the new one over the link.
    let done = wait_for("every acknowledged write on the new master", Duration::from_secs(10), || async {
        missing_on(&new_master, &acked).is_empty().then_some(())
    })
    .await;
    ensure!(done.is_ok(), "acknowledged writes missing on the new master: {:?}", missing_on(&new_master, &acked));
    ensure!(pair(c, ns, "demo").await?.status.unwrap().failover_count == 0, "a switchover is no failover");
    eprintln!("  {} writes acknowledged across the switchover, none lost", acked.len());
    Ok(())
}

/// f. Two operator replicas with leader election; the leader is killed as soon as the first
/// member exists: the other takes over, no duplicate pods, the pair converges.
async fn f_operator_killed_mid_reconcile_with_two_replicas_converges(c: &Cluster) -> anyhow::Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    let ns = "e2e-f";
    namespace(c, ns).await?;
    let first = OperatorProcess::start(c, "operator-f1", true)?;
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "default");
    let holder = || async {
        let l = leases.get_opt("cachepair-operator").await.ok()??;
        l.spec?.holder_identity
    };
    wait_for("operator-f1 to lead", Duration::from_secs(30), || async {
        (holder().await.as_deref() == Some("operator-f1")).then_some(())
    })
    .await?;
    let second = OperatorProcess::start(c, "operator-f2", true)?;
    create_pair(c, ns, "demo", serde_json::json!({})).await?;
    wait_for("the first member", Duration::from_secs(30), || async {
        let pods = Api::<Pod>::namespaced(c.client.clone(), ns).list(&ListParams::default()).await.ok()?;
        (!pods.items.is_empty()).then_some(())
    })
    .await?;
    first.kill();
    let t0 = Instant::now();
    let p = wait_ready(c, ns, "demo", 120).await?;
    eprintln!("  converged {:?} after the leader was killed", t0.elapsed());
    let pods = Api::<Pod>::namespaced(c.client.clone(), ns).list(&ListParams::default()).await?;
    ensure!(pods.items.len() == 2, "{} pods", pods.items.len());
    ensure!(holder().await.as_deref() == Some("operator-f2"), "operator-f2 does not lead");
    ensure!(p.status.unwrap().failover_count == 0);
    drop(second);
    Ok(())
}

/// h. The chart installs, upgrades and uninstalls against the API server; every manifest in
/// `deploy/` passes a server-side dry run; the chart's CRD is `crds/cachepair.yaml`.
/// helm (as tests/manifests finds it: $HELM, else the build tests/setup.sh caches) against the
/// cluster; its stdout.
fn helm(c: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    let repo = e2e::cluster::repo();
    let helm = match std::env::var_os("HELM") {
        Some(h) => std::path::PathBuf::from(h),
        None => {
            let version = std::fs::read_to_string(repo.join("tests/manifests/helm-version"))?;
            let cache = std::env::var_os("XDG_CACHE_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
            });
            cache.join("cachepair/tools").join(format!("helm-{}", version.trim())).join("helm")
        }
    };
    let out = std::process::Command::new(&helm).args(args).arg("--kubeconfig").arg(&c.kubeconfig).output()?;
    ensure!(out.status.success(), "helm {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn h_the_chart_and_deploy_manifests_install_on_the_api_server(c: &Cluster) -> anyhow::Result<()> {
    let repo = e2e::cluster::repo();
    let helm_run = |args: &[&str]| helm(c, args);
    let chart = repo.join("charts/cachepair-operator");
    let chart = chart.to_str().unwrap();
    // The operator's own pod cannot run on the process kubelet: keep it unscheduled.
    let ns = "cachepair-system";
    helm_run(&["install", "cp-op", chart, "-n", ns, "--create-namespace", "--set", "nodeSelector.e2e=none"])?;
    let deploy = c.kubectl(&["-n", ns, "get", "deployment", "-o", "name"])?;
    ensure!(deploy.contains("deployment.apps/cp-op-cachepair-operator"), "{deploy}");
    let upgrade = ["upgrade", "cp-op", chart, "-n", ns, "--set", "nodeSelector.e2e=none", "--set", "logFormat=text"];
    let webhook = ["--set", "evictionWebhook.enabled=true"];
    helm_run(&[&upgrade[..], &webhook[..]].concat())?;
    let jsonpath = "jsonpath={.spec.template.spec.containers[0].args}";
    let args = c.kubectl(&["-n", ns, "get", "deployment", "cp-op-cachepair-operator", "-o", jsonpath])?;
    ensure!(args.contains("--log-format=text"), "the upgrade did not reach the Deployment: {args}");
    ensure!(args.contains("--webhook-listen=0.0.0.0:9443"), "the webhook is not served: {args}");
    // The API server took the webhook's configuration, and an upgrade keeps its certificate.
    let ca = |c: &Cluster| {
        c.kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            &format!("cp-op-cachepair-operator-webhook-{ns}"),
            "-o",
            "jsonpath={.webhooks[0].clientConfig.caBundle}",
        ])
    };
    let first = ca(c)?;
    helm_run(&[&upgrade[..], &webhook[..]].concat())?;
    ensure!(!first.is_empty() && ca(c)? == first, "the webhook's CA changed across an upgrade");
    helm_run(&["uninstall", "cp-op", "-n", ns, "--wait"])?;
    let kinds = "deployment,serviceaccount,role,rolebinding,service,secret,validatingwebhookconfiguration";
    let left = c.kubectl(&["-n", ns, "get", kinds, "-l", "app.kubernetes.io/instance=cp-op", "-o", "name"])?;
    ensure!(left.trim().is_empty(), "left after uninstall: {left}");
    let chart_crd = std::fs::read_to_string(repo.join("charts/cachepair-operator/crds/cachepair.yaml"))?;
    ensure!(chart_crd == std::fs::read_to_string(repo.join("crds/cachepair.yaml"))?, "the chart's CRD is stale");

    for entry in [
        "namespace.yaml",
        "crd.yaml",
        "rbac.yaml",
        "operator.yaml",
        "samples/cachepair-service.yaml",
        "samples/cachepair-vrrp.yaml",
    ] {
        let path = repo.join("deploy").join(entry);
        let path = path.to_str().unwrap();
        c.kubectl(&["apply", "--dry-run=server", "-f", path]).with_context(|| format!("deploy/{entry}"))?;
    }
    Ok(())
}

/// k. The fallback: the master's node is lost while the operator is stopped. The slave takes
/// over and becomes an endpoint, but nothing fences the dead master: its pod stays Ready (no
/// kubelet recomputes it) until the node lifecycle controller marks the node NotReady, 50 s
/// after its last heartbeat with Kubernetes' defaults, and sets its pods not Ready.
async fn k_a_lost_node_without_the_operator_stays_an_endpoint_until_not_ready(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-k";
    namespace(c, ns).await?;
    let op = OperatorProcess::start_in(c, "operator-k", ns)?;
    create_pair(c, ns, "demo", serde_json::json!({"replication": {"mode": "sync"}})).await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.unwrap();
    op.kill();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    let (mip, sip) = (pod_ip(c, ns, &master).await?, pod_ip(c, ns, &slave).await?);
    let node = member_pod(c, ns, &master).await.and_then(|p| p.spec?.node_name).context("the master's node")?;
    let eps = Endpoints::watch(c.client.clone(), ns, "demo");
    let client = measure_from(&eps, &mip, "k").await?;
    c.node_down(&node).await?;
    let t0 = Instant::now();
    let result = async {
        let (promoted, only) = promotion_then_only(&eps, &sip, Duration::from_secs(90)).await?;
        let both = eps.history().iter().any(|(_, set)| set.contains(&mip) && set.contains(&sip));
        anyhow::Ok((promoted, only, both))
    }
    .await;
    let report = client.finish();
    // The dead pod stays bound to the node: gone before the node comes back.
    let force = kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
    Api::<Pod>::namespaced(c.client.clone(), ns).delete(&master, &force).await?;
    c.node_up(node.trim_start_matches("node-").parse()?).await?;
    let (promoted, only, both) = result?;
    let held = only.saturating_duration_since(promoted);
    eprintln!(
        "  node loss without the operator: promoted {:?} after the node went down; the dead master stayed an \
         endpoint {held:?} longer (until the node was NotReady)",
        promoted - t0
    );
    let lost = bench("node loss of the master (operator stopped)", report, &sip, "k_a_lost")?;
    ensure!(both, "the promoted slave never shared the endpoints with the dead master");
    ensure!(
        (Duration::from_secs(30)..Duration::from_secs(80)).contains(&held),
        "the dead master stayed an endpoint {held:?} after the promotion: not the node lifecycle controller's 50 s"
    );
    ensure!(lost == 0, "{lost} acknowledged writes lost");
    Ok(())
}

/// Cuts two members off from each other on the replication port, both ways, until dropped;
/// the tests, kubelets and operator still reach both.
struct Partition([String; 2]);

impl Partition {
    /// The members run as this user; nothing else in the run does.
    const MEMBER_UID: u32 = 65532;
    const REPLICATION_PORT: u16 = 11212;

    fn cut(a: &str, b: &str) -> anyhow::Result<Partition> {
        e2e::netns::cut_port(Self::MEMBER_UID, Self::REPLICATION_PORT, &[a, b])?;
        Ok(Partition([a.to_string(), b.to_string()]))
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let [a, b] = &self.0;
        if let Err(e) = e2e::netns::heal_port(Self::MEMBER_UID, Self::REPLICATION_PORT, &[a, b]) {
            eprintln!("cannot heal the partition: {e:#}");
        }
    }
}

/// l. A partition between the members (the operator and clients reach both): the slave
/// promotes, and the operator fences the old master (lower term) so that the client Service
/// never has two masters for more than 2 s; after the heal, one master, the other its slave,
/// no acknowledged write lost (sync mode).
async fn l_a_partition_between_the_members_routes_to_one_master(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-l";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start_in(c, "operator-l", ns)?;
    create_pair(c, ns, "demo", serde_json::json!({"replication": {"mode": "sync"}})).await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.unwrap();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    let (mip, sip) = (pod_ip(c, ns, &master).await?, pod_ip(c, ns, &slave).await?);
    let eps = Endpoints::watch(c.client.clone(), ns, "demo");
    let client = measure_from(&eps, &mip, "l").await?;
    let partition = Partition::cut(&mip, &sip)?;
    let t0 = Instant::now();
    let (promoted, only) = promotion_then_only(&eps, &sip, Duration::from_secs(15)).await?;
    eprintln!(
        "  partition: the slave promoted {:?} after the cut; the old master was out of the Service {:?} later",
        promoted - t0,
        only.saturating_duration_since(promoted)
    );
    // Both believe they are master for a while; then the heal.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(t0.elapsed())).await;
    ensure!(role(&mip).await.as_deref() == Some("master"), "the cut-off master stepped down by itself");
    drop(partition);
    let healed = Instant::now();
    wait_for("one master again, the other its slave", Duration::from_secs(60), || async {
        let s = pair(c, ns, "demo").await.ok()?.status?;
        let fenced = member_pod(c, ns, &master)
            .await?
            .status?
            .conditions?
            .into_iter()
            .any(|c| c.type_ == operator::render::SERVING_CONDITION && c.status != "True");
        let roles = (role(&mip).await?, role(&sip).await?);
        (s.phase == Some(Phase::Ready) && roles == ("slave".into(), "master".into()) && !fenced).then_some(())
    })
    .await?;
    eprintln!("  healed: one master, the other its slave and unfenced, {:?} after the heal", healed.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let two = eps.longest_with_two();
    let lost =
        bench("partition between the members, healed (operator running)", client.finish(), &sip, "l_a_partition")?;
    eprintln!("  the Service's longest time with two endpoints: {two:?}");
    ensure!(two <= Duration::from_secs(2), "two endpoints for {two:?}");
    ensure!(eps.current() == BTreeSet::from([sip.clone()]), "endpoints {:?}", eps.current());
    ensure!(lost == 0, "{lost} acknowledged writes lost in the partition");
    Ok(())
}

/// m. `kubectl drain` of the master's node: the operator sees the cordon and switches over, the
/// budget then lets the drain evict the ex-master, which is re-seeded on another node; the drain
/// completes with no acknowledged write lost.
async fn m_a_drain_of_the_masters_node_completes_with_zero_loss(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-m";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start_in(c, "operator-m", ns)?;
    let Writing { master, slave, eps: _eps, client } = sync_pair_under_writes(c, ns, "m").await?;
    let node = member_pod(c, ns, &master).await.and_then(|p| p.spec?.node_name).context("the master's node")?;
    let t0 = Instant::now();
    let drain = {
        let args = ["drain", node.as_str(), "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s"];
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (bin, kubeconfig) = (c.bin.join("kubectl"), c.kubeconfig.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin).arg("--kubeconfig").arg(kubeconfig).args(args).output()
        })
        .await?
    };
    let drained = t0.elapsed();
    let settled = async {
        let out = drain?;
        ensure!(out.status.success(), "kubectl drain failed: {}", String::from_utf8_lossy(&out.stderr));
        wait_for("the pair whole again, off the drained node", Duration::from_secs(90), || async {
            let s = pair(c, ns, "demo").await.ok()?.status?;
            let on = member_pod(c, ns, &master).await?.spec?.node_name?;
            (s.phase == Some(Phase::Ready) && s.master.as_deref() == Some(&slave) && on != node).then_some(())
        })
        .await
    }
    .await;
    let _ = c.kubectl(&["uncordon", &node]);
    settled?;
    eprintln!("  kubectl drain completed in {drained:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sip = pod_ip(c, ns, &slave).await?;
    let lost = bench("kubectl drain of the master's node (operator running)", client.finish(), &sip, "m_a_drain")?;
    ensure!(lost == 0, "{lost} acknowledged writes lost in the drain");
    let status = pair(c, ns, "demo").await?.status.unwrap();
    ensure!(status.failover_count == 0, "a drain is no failover");
    Ok(())
}

/// n. An autoscaler's scale-down, which does not cordon: cluster-autoscaler taints the master's
/// node `ToBeDeletedByClusterAutoscaler` and calls the Eviction API, retrying while the budget
/// refuses. The operator sees the taint and switches over; the eviction then goes through, with
/// no acknowledged write lost and no failover.
async fn n_an_autoscalers_scale_down_evicts_the_master_after_a_switchover(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-n";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start_in(c, "operator-n", ns)?;
    let Writing { master, slave, eps: _eps, client } = sync_pair_under_writes(c, ns, "n").await?;
    let node = member_pod(c, ns, &master).await.and_then(|p| p.spec?.node_name).context("the master's node")?;
    let taint = "ToBeDeletedByClusterAutoscaler=1733450000:NoSchedule";
    c.kubectl(&["taint", "nodes", &node, taint])?;
    let t0 = Instant::now();
    let pods = Api::<Pod>::namespaced(c.client.clone(), ns);
    let evicted = wait_for("the master's eviction to be let through", Duration::from_secs(60), || async {
        // As the autoscaler does: try, and try again while the budget says no.
        pods.evict(&master, &EvictParams::default()).await.ok().map(|_| t0.elapsed())
    })
    .await;
    let settled = async {
        let evicted = evicted?;
        wait_for("the pair whole again, off the tainted node", Duration::from_secs(90), || async {
            let s = pair(c, ns, "demo").await.ok()?.status?;
            let on = member_pod(c, ns, &master).await?.spec?.node_name?;
            (s.phase == Some(Phase::Ready) && s.master.as_deref() == Some(&slave) && on != node).then_some(())
        })
        .await?;
        anyhow::Ok(evicted)
    }
    .await;
    let _ = c.kubectl(&["taint", "nodes", &node, "ToBeDeletedByClusterAutoscaler-"]);
    let evicted = settled?;
    eprintln!("  the master's eviction went through {evicted:?} after the taint");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sip = pod_ip(c, ns, &slave).await?;
    let lost = bench(
        "autoscaler scale-down: taint, then evict the master (operator running)",
        client.finish(),
        &sip,
        "n_an_autoscaler",
    )?;
    ensure!(lost == 0, "{lost} acknowledged writes lost in the scale-down");
    let status = pair(c, ns, "demo").await?.status.unwrap();
    ensure!(status.failover_count == 0, "a scale-down is no failover");
    Ok(())
}

/// o. An eviction of the master with no cordon and no taint (a direct call to the Eviction
/// API, as the descheduler makes): the operator's admission webhook refuses it with 429 and
/// marks the master, the operator switches over, and the evictor's retry goes through, with no
/// acknowledged write lost and no failover.
async fn o_an_eviction_of_the_master_is_a_switchover_through_the_webhook(c: &Cluster) -> anyhow::Result<()> {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::admissionregistration::v1::{
        RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    let ns = "e2e-o";
    namespace(c, ns).await?;
    let (_op, url, ca) = OperatorProcess::start_with_webhook(c, "operator-o", ns)?;
    // As the chart renders it, but for this test's namespace only.
    let webhook = ValidatingWebhookConfiguration {
        metadata: ObjectMeta { name: Some("e2e-o-cachepair-eviction".into()), ..Default::default() },
        webhooks: Some(vec![ValidatingWebhook {
            name: "eviction.cachepair.io".into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "NoneOnDryRun".into(),
            failure_policy: Some("Ignore".into()),
            timeout_seconds: Some(5),
            client_config: WebhookClientConfig {
                url: Some(url),
                ca_bundle: Some(ByteString(ca)),
                ..Default::default()
            },
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["".into()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into()]),
                resources: Some(vec!["pods/eviction".into()]),
                scope: Some("Namespaced".into()),
            }]),
            namespace_selector: Some(LabelSelector {
                match_labels: Some([("kubernetes.io/metadata.name".to_string(), ns.to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }]),
    };
    let webhooks = Api::<ValidatingWebhookConfiguration>::all(c.client.clone());
    webhooks.create(&PostParams::default(), &webhook).await?;
    let result = async {
        let Writing { master, slave, eps: _eps, client } = sync_pair_under_writes(c, ns, "o").await?;
        let t0 = Instant::now();
        let pods = Api::<Pod>::namespaced(c.client.clone(), ns);
        // kube's client retries a 429 by itself, as an evictor does.
        let evicted = wait_for("the master's eviction to be let through", Duration::from_secs(60), || async {
            pods.evict(&master, &EvictParams::default()).await.ok().map(|_| t0.elapsed())
        })
        .await?;
        let events = Api::<Event>::namespaced(c.client.clone(), ns).list(&ListParams::default()).await?;
        ensure!(
            events.items.iter().any(|e| {
                e.reason.as_deref() == Some("Switchover")
                    && e.message.as_deref().is_some_and(|m| m.contains("its eviction was requested"))
            }),
            "no switchover for the eviction: {:?}",
            events.items.iter().map(|e| (&e.reason, &e.message)).collect::<Vec<_>>()
        );
        wait_for("the pair whole again, the slave master", Duration::from_secs(90), || async {
            let s = pair(c, ns, "demo").await.ok()?.status?;
            (s.phase == Some(Phase::Ready) && s.master.as_deref() == Some(&slave)).then_some(())
        })
        .await?;
        eprintln!("  the master's eviction went through {evicted:?} after the first attempt");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sip = pod_ip(c, ns, &slave).await?;
        let lost =
            bench("eviction of the master, no cordon (operator's webhook)", client.finish(), &sip, "o_an_eviction")?;
        ensure!(lost == 0, "{lost} acknowledged writes lost in the eviction");
        let status = pair(c, ns, "demo").await?.status.unwrap();
        ensure!(status.failover_count == 0, "an eviction is no failover");
        anyhow::Ok(())
    }
    .await;
    webhooks.delete("e2e-o-cachepair-eviction", &Default::default()).await?;
    result
}

/// p. `kubectl cachepair` (the built plugin, with the cluster's kubeconfig) drives a pair:
/// `status` shows the roles, `switchover --wait` swaps them, `fence` of the master hands its
/// role over and closes its readiness gate (the Service's endpoint moves to the other member),
/// `unfence` opens it again, `reseed` of the slave re-creates it and it syncs again, `logs`
/// prints each member's cache-node log (through the API server and the kubelet API) and
/// `report` bundles them.
async fn p_the_kubectl_plugin_drives_a_pair(c: &Cluster) -> anyhow::Result<()> {
    let ns = "e2e-p";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start_in(c, "operator-p", ns)?;
    // cache-node logs errors only by default: `info` gives the members' logs something to show.
    create_pair(c, ns, "demo", serde_json::json!({"podTemplate": {"env": [{"name": "RUST_LOG", "value": "info"}]}}))
        .await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.unwrap();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    let plugin = |args: &[&str]| -> anyhow::Result<String> {
        let out = std::process::Command::new(e2e::cluster::target_bin("kubectl-cachepair"))
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(["-n", ns])
            .args(args)
            .output()
            .context("kubectl-cachepair (cargo build -p kubectl-cachepair)")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "kubectl-cachepair {}: {}{stdout}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    };
    let suffix = |pod: &str| pod.rsplit('-').next().unwrap_or_default().to_string();

    let out = plugin(&["status", "demo"])?;
    ensure!(out.contains(&format!("Master:     {master}")) && out.contains(&format!("Slave:      {slave}")), "{out}");
    ensure!(out.lines().any(|l| l.starts_with(&master) && l.contains(" master ")), "no member row for {master}: {out}");
    let json: serde_json::Value = serde_json::from_str(&plugin(&["status", "demo", "-o", "json"])?)?;
    ensure!(json["master"] == master.as_str() && json["phase"] == "Ready", "{json}");

    // A switchover, waited for: the roles swap.
    let out = plugin(&["switchover", "demo", "--wait", "--timeout", "60s"])?;
    ensure!(out.contains(&format!("master is {slave}")), "{out}");
    let s = pair(c, ns, "demo").await?.status.unwrap();
    ensure!(s.master.as_deref() == Some(&slave) && s.switchover.is_some(), "{s:?}");
    let (master, slave) = (slave, master);
    let (master_ip, slave_ip) = (pod_ip(c, ns, &master).await?, pod_ip(c, ns, &slave).await?);
    wait_for("the Service's endpoint to be the new master", Duration::from_secs(30), || async {
        (endpoints(c, ns, "demo").await == BTreeSet::from([master_ip.clone()])).then_some(())
    })
    .await?;

    // Fencing the master: it hands its role over first, then its gate closes.
    let gate = |pod: String| async move {
        let p = Api::<Pod>::namespaced(c.client.clone(), ns).get(&pod).await.ok()?;
        let conditions = p.status?.conditions?;
        conditions.iter().find(|c| c.type_ == "cachepair.io/serving").map(|c| c.status == "True")
    };
    let out = plugin(&["fence", "demo", &suffix(&master), "--wait", "--timeout", "90s"])?;
    ensure!(out.contains("is out of client routing"), "{out}");
    ensure!(gate(master.clone()).await == Some(false), "{master}'s gate is not closed");
    wait_for("the Service's endpoint to move to the other member", Duration::from_secs(30), || async {
        (endpoints(c, ns, "demo").await == BTreeSet::from([slave_ip.clone()])).then_some(())
    })
    .await?;
    ensure!(pair(c, ns, "demo").await?.status.unwrap().master.as_deref() == Some(&slave), "no switchover first");
    ensure!(role(&master_ip).await.as_deref() == Some("slave"), "the fenced member is not a slave");
    let (master, slave, master_ip) = (slave, master, slave_ip);
    let out = plugin(&["status", "demo"])?;
    ensure!(out.lines().any(|l| l.starts_with(&slave) && l.trim_end().ends_with("yes")), "not shown fenced: {out}");

    // Unfencing opens the gate again; no pre-emption: it stays a slave, the endpoint stays.
    let out = plugin(&["unfence", "demo", &suffix(&slave), "--wait", "--timeout", "60s"])?;
    ensure!(out.contains("is back in client routing"), "{out}");
    ensure!(gate(slave.clone()).await == Some(true));
    ensure!(endpoints(c, ns, "demo").await == BTreeSet::from([master_ip.clone()]), "the endpoint moved back");
    ensure!(pair(c, ns, "demo").await?.spec.fenced.is_empty());

    // Re-seeding the slave: a new pod, a full sync, Ready again with it as slave.
    let pods = Api::<Pod>::namespaced(c.client.clone(), ns);
    let before = pods.get(&slave).await?.metadata.uid;
    let out = plugin(&["reseed", "demo", &suffix(&slave), "--wait", "--timeout", "150s"])?;
    ensure!(out.contains("re-created and in sync as slave"), "{out}");
    ensure!(pods.get(&slave).await?.metadata.uid != before, "{slave} was not re-created");
    let s = wait_ready(c, ns, "demo", 60).await?.status.unwrap();
    ensure!(s.master.as_deref() == Some(&master) && s.slave.as_deref() == Some(&slave), "{s:?}");
    ensure!(s.reseed.is_some() && s.failover_count == 0, "{s:?}");
    let new_ip = pod_ip(c, ns, &slave).await?;
    ensure!(role(&new_ip).await.as_deref() == Some("slave"), "the re-seeded member is no slave");
    let events = Api::<Event>::namespaced(c.client.clone(), ns).list(&ListParams::default()).await?;
    let reasons: BTreeSet<String> = events.items.iter().filter_map(|e| e.reason.clone()).collect();
    for reason in ["Switchover", "Fenced", "Unfenced", "Reseeding", "Reseeded"] {
        ensure!(reasons.contains(reason), "no {reason} Event: {reasons:?}");
    }

    // Logs: each member's cache-node log under its header; the last 5 lines with --tail 5.
    let member_logs = |out: &str| -> anyhow::Result<Vec<Vec<String>>> {
        let mut logs = Vec::new();
        for pod in ["demo-a", "demo-b"] {
            let header = format!("==> {pod} <==");
            let start = out.find(&header).with_context(|| format!("no {header} in:\n{out}"))? + header.len();
            let section = out[start..].split("==> ").next().unwrap_or_default();
            let lines: Vec<String> = section.lines().filter(|l| !l.is_empty()).map(String::from).collect();
            ensure!(
                !lines.is_empty() && lines.iter().all(|l| l.contains(" cache_node")),
                "{pod}'s section is no cache-node log:\n{out}"
            );
            logs.push(lines);
        }
        Ok(logs)
    };
    let out = plugin(&["logs", "demo", "--tail", "5"])?;
    ensure!(member_logs(&out)?.iter().all(|l| l.len() <= 5), "more than 5 lines with --tail 5:\n{out}");
    let out = plugin(&["logs", "demo"])?;
    for (pod, lines) in ["demo-a", "demo-b"].iter().zip(member_logs(&out)?) {
        ensure!(lines.iter().any(|l| l.contains(STARTED_LISTENING)), "{pod}'s log has no start:\n{out}");
    }

    // The report bundle.
    let bundle = c.state.join("p-report.tar.gz");
    let out = plugin(&["report", "demo", "-o", bundle.to_str().unwrap()])?;
    ensure!(out.starts_with("wrote "), "{out}");
    let listing = std::process::Command::new("tar").arg("-tzf").arg(&bundle).output()?;
    ensure!(listing.status.success(), "tar -tzf: {}", String::from_utf8_lossy(&listing.stderr));
    let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|l| l.split_once('/').map(|(_, f)| f.to_string()))
        .collect();
    for file in [
        "README.txt",
        "cachepair.yaml",
        "pods.yaml",
        "services.yaml",
        "endpointslices.yaml",
        "events.yaml",
        "errors.txt",
    ] {
        ensure!(files.iter().any(|f| f == file), "{file} not in the bundle: {files:?}");
    }
    // Each member's log is in it; its metrics are, or errors.txt says why not.
    let extract = |file: &str| -> anyhow::Result<String> {
        let out = std::process::Command::new("tar")
            .arg("-xzOf")
            .arg(&bundle)
            .arg("--wildcards")
            .arg(format!("*/{file}"))
            .output()?;
        ensure!(out.status.success(), "tar -xzOf {file}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let errors = extract("errors.txt")?;
    for pod in ["demo-a", "demo-b"] {
        let file = format!("members/{pod}.log");
        ensure!(files.contains(&file), "{file} not in the bundle: {files:?}; errors.txt:\n{errors}");
        let log = extract(&file)?;
        ensure!(log.lines().any(|l| l.contains(STARTED_LISTENING)), "{file} is no cache-node log:\n{log}");
        let file = format!("members/{pod}.metrics");
        ensure!(files.contains(&file) || errors.contains(&file), "{file} neither in the bundle nor in errors.txt");
    }
    ensure!(!files.iter().any(|f| f.to_lowercase().contains("secret")), "a Secret in the bundle: {files:?}");
    eprintln!("  report: {} files; not included: {}", files.len(), errors.lines().count());
    Ok(())
}

/// The name q's server certificates carry (and its clients check): the client Service's.
const Q_SERVER_NAME: &str = "demo.e2e-q.svc";

/// q. Client logins (`spec.auth`) and TLS (`spec.tls`) through the client Service: a TLS client
/// that trusts the pair's CA logs in and is served, on the master and on the slave; one that
/// does not log in, a plaintext one and one with a wrong password are served nothing. Then the
/// Secrets rotate as an administrator (or cert-manager) rotates them: a new password, a new
/// server certificate from the same CA. Once the kubelet has updated the mounted copies, new
/// connections see both, with the same pods, not restarted, and no failover; a connection
/// logged in before keeps being served.
async fn q_auth_and_tls_through_the_service(c: &Cluster) -> anyhow::Result<()> {
    use e2e::memcache::Connection;
    use k8s_openapi::api::core::v1::Secret;

    let ns = "e2e-q";
    namespace(c, ns).await?;
    let _op = OperatorProcess::start(c, "operator-q", false)?;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), ns);
    let ca = TestCa::new()?;
    let first = ca.server(1)?;
    apply_secret(&secrets, "users", &[("users", b"app:first-password\n")]).await?;
    apply_secret(&secrets, "cert", &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem), ("ca.crt", &ca.pem)])
        .await?;
    create_pair(c, ns, "demo", serde_json::json!({"auth": {"secretName": "users"}, "tls": {"secretName": "cert"}}))
        .await?;
    let s = wait_ready(c, ns, "demo", 120).await?.status.unwrap();
    let (master, slave) = (s.master.unwrap(), s.slave.unwrap());
    let (mip, sip) = (pod_ip(c, ns, &master).await?, pod_ip(c, ns, &slave).await?);
    let via = wait_for("the client Service's endpoints to be the master", Duration::from_secs(30), || async {
        let e = endpoints(c, ns, "demo").await;
        (e == BTreeSet::from([mip.clone()])).then_some(addr(&mip))
    })
    .await?;
    // A new TLS connection to `to` that trusts the test's CA only and checks the Service's name.
    let tls = {
        let ca_pem = Arc::new(ca.pem.clone());
        move |to: &str| Connection::tls(to, &ca_pem, Q_SERVER_NAME)
    };
    // A login's reply on a new TLS connection to `to`, or why there is none.
    let login = {
        let tls = tls.clone();
        move |to: &str, password: &str| -> String {
            match tls(to).and_then(|mut c| c.login("app", password)) {
                Ok(reply) => reply,
                Err(e) => format!("no reply: {e}"),
            }
        }
    };

    let (t, to) = (tls.clone(), via.clone());
    let kept = blocking(move || -> anyhow::Result<Connection> {
        let mut app = t(&to)?;
        ensure!(app.peer_certificate().is_some(), "no server certificate");
        let reply = app.login("app", "first-password")?;
        ensure!(reply == "STORED", "the login through the Service: {reply}");
        ensure!(app.set("greeting", "hello")? == "STORED", "set through the Service");
        ensure!(app.get("greeting")?.as_deref() == Some("hello"), "get through the Service");
        // TLS, no login: refused, and nothing served.
        let mut anonymous = t(&to)?;
        let reply = anonymous.call("get greeting\r\n", &["END", "ERROR", "CLIENT_ERROR", "SERVER_ERROR"])?;
        ensure!(reply == "CLIENT_ERROR unauthenticated\r\n", "a get before any login: {reply:?}");
        // A wrong password: refused, and still nothing served.
        let mut wrong = t(&to)?;
        let reply = wrong.login("app", "not-the-password")?;
        ensure!(reply == "CLIENT_ERROR authentication failure", "a wrong password: {reply}");
        ensure!(wrong.get("greeting").is_err(), "served after a failed login");
        // Plaintext on the TLS port: no reply a memcached client can read.
        let plain = Connection::plain(&to).and_then(|mut c| c.get("greeting"));
        ensure!(plain.is_err(), "a plaintext client was answered: {plain:?}");
        ensure!(!memcache::set(&to, "plaintext", "x"), "a plaintext set was stored");
        Ok(app)
    })
    .await??;
    // Replicated: the slave has it, for a client logged in there too.
    let (t, to) = (tls.clone(), addr(&sip));
    wait_for("the value on the slave", Duration::from_secs(5), || {
        let (t, to) = (t.clone(), to.clone());
        async move {
            blocking(move || {
                let mut conn = t(&to).ok()?;
                (conn.login("app", "first-password").ok()? == "STORED").then_some(())?;
                (conn.get("greeting").ok()??.as_str() == "hello").then_some(())
            })
            .await
            .ok()?
        }
    })
    .await?;

    // Rotation of the users. First what must not change: the pods' runs, the pair's master
    // and failover count.
    let members = [master.as_str(), slave.as_str()];
    let pods_before = member_runs(c, ns, &members).await?;
    let before = pair(c, ns, "demo").await?.status.context("no status")?;
    apply_secret(&secrets, "users", &[("users", b"app:second-password\n")]).await?;
    let rotated = Instant::now();
    // The master through the Service's endpoint, then the slave directly.
    for (member, to) in [(&master, via.clone()), (&slave, addr(&sip))] {
        wait_for(
            &format!("the new password to log in on {member} and the old one to fail"),
            Duration::from_secs(60),
            || {
                let (login, to) = (login.clone(), to.clone());
                async move {
                    blocking(move || {
                        let (new, old) = (login(&to, "second-password"), login(&to, "first-password"));
                        (new == "STORED" && old == "CLIENT_ERROR authentication failure").then_some(())
                    })
                    .await
                    .ok()?
                }
            },
        )
        .await?;
        eprintln!(
            "  {member}: the new password logs in, the old one fails, {:.1} s after the update",
            rotated.elapsed().as_secs_f64()
        );
    }

    // Rotation of the server certificate: a new key and serial, the same CA.
    let second = ca.server(2)?;
    ensure!(second.der != first.der);
    apply_secret(&secrets, "cert", &[("tls.crt", &second.cert_pem), ("tls.key", &second.key_pem), ("ca.crt", &ca.pem)])
        .await?;
    let renewed = Instant::now();
    for (member, to) in [(&master, via.clone()), (&slave, addr(&sip))] {
        wait_for(&format!("{member} to present the new certificate"), Duration::from_secs(60), || {
            let (t, to, der) = (tls.clone(), to.clone(), second.der.clone());
            async move { blocking(move || (t(&to).ok()?.peer_certificate()? == der).then_some(())).await.ok()? }
        })
        .await?;
        eprintln!(
            "  {member}: a new connection gets the new certificate {:.1} s after the update",
            renewed.elapsed().as_secs_f64()
        );
    }
    let reply = blocking({
        let (login, to) = (login.clone(), via.clone());
        move || login(&to, "second-password")
    })
    .await?;
    ensure!(reply == "STORED", "the new password on the new certificate: {reply}");

    // The same processes throughout: the connection logged in before the rotations is still
    // served, the pods are the same, not restarted, and no failover happened.
    blocking(move || -> anyhow::Result<()> {
        let mut kept = kept;
        ensure!(kept.get("greeting")?.as_deref() == Some("hello"), "the connection opened before the rotations");
        Ok(())
    })
    .await??;
    let pods_after = member_runs(c, ns, &members).await?;
    ensure!(pods_after == pods_before, "the members changed: {pods_before:?} before, {pods_after:?} after");
    let after = pair(c, ns, "demo").await?.status.context("no status")?;
    ensure!(
        (after.master.as_deref(), after.failover_count) == (before.master.as_deref(), before.failover_count),
        "a failover: master {:?} → {:?}, failoverCount {} → {}",
        before.master,
        after.master,
        before.failover_count,
        after.failover_count
    );
    ensure!(endpoints(c, ns, "demo").await == BTreeSet::from([mip.clone()]), "the Service's endpoint moved");
    Ok(())
}

/// Runs blocking client calls off the runtime's threads, which the process kubelets share.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// Creates or replaces Secret `name` with `data` (server-side apply).
async fn apply_secret(
    secrets: &Api<k8s_openapi::api::core::v1::Secret>,
    name: &str,
    data: &[(&str, &[u8])],
) -> anyhow::Result<()> {
    let data: std::collections::BTreeMap<_, _> =
        data.iter().map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec()))).collect();
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data});
    let params = kube::api::PatchParams::apply("e2e").force();
    secrets.patch(name, &params, &kube::api::Patch::Apply(&secret)).await?;
    Ok(())
}

/// What tells one run of a member from another: its pod's UID, and its cache-node container's
/// restart count and start time.
async fn member_runs(c: &Cluster, ns: &str, members: &[&str]) -> anyhow::Result<Vec<(String, i32, String)>> {
    let mut runs = Vec::new();
    for member in members {
        let pod = member_pod(c, ns, member).await.with_context(|| format!("no pod {member}"))?;
        let status = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
        let container = status
            .and_then(|s| s.iter().find(|c| c.name == "cache-node"))
            .with_context(|| format!("{member}: no status of its cache-node container"))?;
        let started = container.state.as_ref().and_then(|s| s.running.as_ref()).and_then(|r| r.started_at.clone());
        let started = started.with_context(|| format!("{member}: cache-node is not running"))?;
        runs.push((pod.metadata.uid.clone().unwrap_or_default(), container.restart_count, started.0.to_string()));
    }
    Ok(runs)
}

/// A certificate authority of the test's own.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// Its certificate (ca.crt).
    pem: Vec<u8>,
}

/// A server certificate for [`Q_SERVER_NAME`] and its key.
struct ServerCert {
    der: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl TestCa {
    fn new() -> anyhow::Result<Self> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "CachePair e2e CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate()?)?;
        let pem = pem("CERTIFICATE", issuer.der());
        Ok(Self { issuer, pem })
    }

    /// A server certificate for the client Service's names, with serial number `serial`.
    fn server(&self, serial: u64) -> anyhow::Result<ServerCert> {
        let names = vec![Q_SERVER_NAME.to_string(), format!("{Q_SERVER_NAME}.cluster.local")];
        let mut params = rcgen::CertificateParams::new(names)?;
        params.serial_number = Some(serial.into());
        params.distinguished_name.push(rcgen::DnType::CommonName, Q_SERVER_NAME);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCert {
            der: cert.der().to_vec(),
            cert_pem: pem("CERTIFICATE", cert.der()),
            key_pem: pem("PRIVATE KEY", &key.serialize_der()),
        })
    }
}

/// PEM text of a DER item.
fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out.into_bytes()
}
