//! End-to-end tests of the CachePair life cycle against a real control plane, with the
//! operator as a process and pods as processes (see the `e2e` crate). One control plane serves
//! every test; each test has its own namespace and its own time limit.
//!
//! `cargo test -p e2e --test e2e [-- <name filter>]`; needs the control plane binaries
//! (`tests/controlplane/build.sh`) and a debug build of cache-node and the operator.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use e2e::cluster::{Cluster, wait_for};
use e2e::memcache;
use e2e::operator_process::OperatorProcess;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use operator::crd::{CachePair, Phase};

type TestFn = for<'a> fn(&'a Cluster) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + 'a>>;

const TESTS: &[(&str, TestFn, u64)] = &[
    ("a_sample_pair_runs_a_master_and_a_slave", |c| Box::pin(a_sample_pair_runs_a_master_and_a_slave(c)), 180),
    ("b_failover_without_the_operator_then_reseed", |c| Box::pin(b_failover_without_the_operator_then_reseed(c)), 240),
    (
        "g_invalid_pairs_are_rejected_naming_the_field",
        |c| Box::pin(g_invalid_pairs_are_rejected_naming_the_field(c)),
        60,
    ),
    ("i_deleting_a_pair_removes_what_it_owned", |c| Box::pin(i_deleting_a_pair_removes_what_it_owned(c)), 180),
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect((ip, 9150))).await.ok()?.ok()?;
    s.write_all(b"GET /role HTTP/1.0\r\n\r\n").await.ok()?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(1), s.read_to_string(&mut reply)).await.ok()?.ok()?;
    reply.split("\r\n\r\n").nth(1).map(|b| b.trim().to_string())
}

fn addr(ip: &str) -> String {
    format!("{ip}:11211")
}

// ----------------------------------------------------------------------------- tests

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

    let mut done = false;
    for k in &c.kubelets {
        if k.kill_pod(ns, &master).await {
            done = true;
        }
    }
    ensure!(done, "no kubelet runs {master}");
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
    // And a valid one with every default is accepted and defaulted.
    create_pair(c, ns, "good", serde_json::json!({})).await?;
    let p = pair(c, ns, "good").await?;
    ensure!(p.spec.memory_mb == 64 && p.spec.replication.port == 11212, "defaults not applied: {:?}", p.spec);
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
    ensure!(before == (2, 2, 1, 1, 1), "owned objects before: {before:?}");
    Api::<CachePair>::namespaced(c.client.clone(), ns).delete("gone", &Default::default()).await?;
    wait_for("everything the pair owned to go", Duration::from_secs(90), || async {
        let gone = Api::<CachePair>::namespaced(c.client.clone(), ns).get_opt("gone").await.ok()?.is_none();
        (gone && count(c).await == (0, 0, 0, 0, 0)).then_some(())
    })
    .await?;
    Ok(())
}
