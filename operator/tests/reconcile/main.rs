//! `reconcile` against a scripted API server and members' admin listeners on loopback: each
//! scenario lists the API requests one round must make, in order, and checks what they carry.

mod apiserver;
mod member;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use operator::controller::{self, Context, FINALIZER};
use operator::crd::CachePair;
use operator::metrics::Metrics;
use operator::pair::Member;
use operator::render;
use operator::render::replication_tls::LinkTls;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::time::timeout;

use apiserver::{ApiServer, NS, PAIR};
use member::Answers;

/// A round well within this, or it hangs.
const ROUND: Duration = Duration::from_secs(20);
/// The requeue while something is in motion.
const BUSY: Duration = Duration::from_secs(1);

const MASTER: Answers = Answers { role: "master", term: 1, synced: true };
const SLAVE: Answers = Answers { role: "slave", term: 1, synced: true };

/// The pair as the API server holds it: defaults applied, the finalizer in place.
fn pair(admin_port: u16, spec: Value, status: Value) -> Value {
    let mut spec = spec;
    spec["adminPort"] = admin_port.into();
    let meta = json!({"name": PAIR, "namespace": NS, "uid": "0b9f-uid", "generation": 3, "finalizers": [FINALIZER]});
    let cp: CachePair =
        serde_json::from_value(json!({"apiVersion": "cachepair.io/v1alpha1", "kind": "CachePair", "metadata": meta,
                                      "spec": spec, "status": status}))
        .expect("a valid CachePair");
    serde_json::to_value(cp).expect("a CachePair serializes")
}

fn cache_pair(pair: &Value) -> CachePair {
    serde_json::from_value(pair.clone()).expect("a valid CachePair")
}

/// A member's pod as the operator made it, scheduled on `node-<member>` with the IP
/// `127.0.0.<1|2>`: Ready when it runs labelled master, its readiness gate open, its last term
/// recorded.
fn pod(pair: &Value, member: Member, phase: &str, role: &str, term: u64) -> Value {
    let mut pod = serde_json::to_value(render::member_pod(
        &cache_pair(pair),
        member,
        None,
        &render::Settings::default(),
        LinkTls::On,
    ))
    .expect("a pod");
    let ip = match member {
        Member::A => "127.0.0.1",
        Member::B => "127.0.0.2",
    };
    pod["metadata"]["labels"]["cachepair.io/role"] = role.into();
    pod["metadata"]["annotations"] = json!({"cachepair.io/term": term.to_string()});
    pod["spec"]["nodeName"] = format!("node-{}", member.suffix()).into();
    let ready = if phase == "Running" && role == "master" { "True" } else { "False" };
    pod["status"] = json!({"phase": phase, "podIP": ip, "conditions": [
        {"type": "Ready", "status": ready},
        {"type": render::SERVING_CONDITION, "status": "True"},
    ]});
    pod
}

/// Runs one round of `reconcile` while `script` answers its API requests (the API server holds
/// `pair`, which the script is given too); returns the
/// round's requeue once both are done. A failed assertion in the script fails the test.
async fn round<S, F>(pair: &Value, script: S) -> Action
where
    S: FnOnce(ApiServer, Value) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let (client, server) = ApiServer::new();
    let metrics = Arc::new(Metrics::register(&mut Registry::default()));
    let ctx = Arc::new(Context::new(client, metrics, "test", render::Settings::default()));
    let script = tokio::spawn(script(server, pair.clone()));
    let result = timeout(ROUND, controller::reconcile(Arc::new(cache_pair(pair)), ctx)).await.expect("a round ends");
    if let Err(e) = timeout(ROUND, script).await.expect("the script ends") {
        std::panic::resume_unwind(e.into_panic());
    }
    result.expect("the round succeeds")
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    let conditions = status["conditions"].as_array().expect("conditions");
    conditions.iter().find(|c| c["type"] == type_).unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn a_failed_master_is_replaced_by_the_promoted_slave_in_the_status() {
    let (port, _members) = member::start(&[("127.0.0.2", Answers { term: 2, ..MASTER })]).await;
    let pair = pair(port, json!({}), json!({"phase": "Ready", "master": "demo-a", "slave": "demo-b"}));
    // a's process died; b took over at term 2.
    let a = pod(&pair, Member::A, "Failed", "master", 1);
    let b = pod(&pair, Member::B, "Running", "slave", 2);
    let action = round(&pair, |mut api, pair| async move {
        api.observe(&[a.clone(), b.clone()]).await;
        api.read_status(&pair).await;
        api.apply_owned().await;
        // The ended ex-master is cleared, to be re-seeded as a slave next round.
        api.expect("DELETE", &format!("/api/v1/namespaces/{NS}/pods/demo-a")).await.reply(&a);
        let deleted = api.event().await;
        assert_eq!((&deleted["reason"], &deleted["note"]), (&json!("MemberDeleted"), &json!("demo-a: ended")));
        let failover = api.event().await;
        assert_eq!((&failover["type"], &failover["reason"]), (&json!("Warning"), &json!("Failover")));
        assert_eq!(failover["note"], "demo-b took over as master from demo-a");
        assert_eq!(api.label("demo-b", &b).await, json!({"cachepair.io/role": "master"}));

        let status = api.write_status(&pair).await;
        assert_eq!((&status["master"], &status["phase"]), (&json!("demo-b"), &json!("Degraded")));
        assert!(status.get("slave").is_none(), "no slave until a is re-seeded: {status}");
        assert_eq!(status["failoverCount"], 1);
        assert!(status["lastFailoverTime"].is_string(), "{status}");
        assert_eq!(condition(&status, "Ready")["status"], "True");
        assert_eq!(condition(&status, "Degraded")["status"], "True");
    })
    .await;
    assert_eq!(action, Action::requeue(BUSY));
}

#[tokio::test]
async fn the_failed_ex_master_is_re_seeded_as_a_slave_of_the_new_master() {
    let (port, _members) = member::start(&[("127.0.0.2", Answers { term: 2, ..MASTER })]).await;
    let pair = pair(port, json!({}), json!({"phase": "Degraded", "master": "demo-b", "failoverCount": 1}));
    let b = pod(&pair, Member::B, "Running", "master", 2);
    let action = round(&pair, |mut api, pair| async move {
        api.observe(&[b]).await;
        api.read_status(&pair).await;
        api.apply_owned().await;
        let created = api.expect("POST", &format!("/api/v1/namespaces/{NS}/pods")).await.echo();
        assert_eq!(created["metadata"]["name"], "demo-a");
        let args = created["spec"]["containers"][0]["args"].as_array().expect("args").clone();
        let joins = args.windows(2).any(|w| w[0] == "-x" && w[1] == "127.0.0.2:11212");
        assert!(joins, "a joins b as its slave: {args:?}");
        // Its readiness gate is opened at once: routing does not wait on the operator later.
        let gate = api.expect("PATCH", &format!("/api/v1/namespaces/{NS}/pods/demo-a/status")).await;
        let gate = gate.reply(&created);
        assert_eq!(gate["status"]["conditions"][0]["type"], render::SERVING_CONDITION);
        assert_eq!(gate["status"]["conditions"][0]["status"], "True");
        let reseeded = api.event().await;
        assert_eq!(reseeded["reason"], "Reseeded");
        assert_eq!(reseeded["note"], "demo-a re-created as a slave of the master at 127.0.0.2:11212");

        let status = api.write_status(&pair).await;
        assert_eq!((&status["master"], &status["phase"]), (&json!("demo-b"), &json!("Degraded")));
        assert_eq!(status["failoverCount"], 1, "a re-seed is no failover");
    })
    .await;
    assert_eq!(action, Action::requeue(BUSY));
}

#[tokio::test]
async fn a_requested_switchover_hands_the_master_role_over_and_is_recorded() {
    let (port, members) = member::start(&[("127.0.0.1", MASTER), ("127.0.0.2", SLAVE)]).await;
    let pair =
        pair(port, json!({"switchover": "t1"}), json!({"phase": "Ready", "master": "demo-a", "slave": "demo-b"}));
    let a = pod(&pair, Member::A, "Running", "master", 1);
    let b = pod(&pair, Member::B, "Running", "slave", 1);
    let action = round(&pair, |mut api, pair| async move {
        api.observe(&[a.clone(), b.clone()]).await;
        api.read_status(&pair).await;
        api.apply_owned().await;
        api.admin_token().await;
        let switched = api.event().await;
        assert_eq!(switched["reason"], "Switchover");
        assert_eq!(switched["note"], "demo-b is master now (requested); demo-a: handed over");
        assert_eq!(api.label("demo-a", &a).await, json!({"cachepair.io/role": "slave"}));
        assert_eq!(api.label("demo-b", &b).await, json!({"cachepair.io/role": "master"}));

        let status = api.write_status(&pair).await;
        assert_eq!((&status["master"], &status["slave"]), (&json!("demo-b"), &json!("demo-a")));
        assert_eq!(status["switchover"], "t1", "the request is carried out once");
        assert_eq!(status["failoverCount"], 0, "a switchover is no failover");
    })
    .await;
    assert_eq!(action, Action::requeue(BUSY));
    assert_eq!((members[0].switchovers(), members[1].switchovers()), (1, 0), "asked of the master only");
}

#[tokio::test]
async fn a_spec_change_rolls_the_slave_first() {
    let (port, members) = member::start(&[("127.0.0.1", MASTER), ("127.0.0.2", SLAVE)]).await;
    let pair = pair(port, json!({"memoryMB": 128}), json!({"phase": "Ready", "master": "demo-a", "slave": "demo-b"}));
    // Both members run the spec from before memoryMB changed.
    let [a, b] = [(Member::A, "master"), (Member::B, "slave")].map(|(m, role)| {
        let mut pod = pod(&pair, m, "Running", role, 1);
        pod["metadata"]["labels"]["cachepair.io/revision"] = "old".into();
        pod
    });
    let revision = render::revision(&cache_pair(&pair), &render::Settings::default(), LinkTls::On);
    let action = round(&pair, |mut api, pair| async move {
        api.observe(&[a, b.clone()]).await;
        api.read_status(&pair).await;
        api.apply_owned().await;
        api.expect("DELETE", &format!("/api/v1/namespaces/{NS}/pods/demo-b")).await.reply(&b);
        let deleted = api.event().await;
        assert_eq!(deleted["note"], "demo-b: rolling the slave to the new spec");

        let status = api.write_status(&pair).await;
        assert_eq!((&status["master"], &status["slave"]), (&json!("demo-a"), &json!("demo-b")));
        assert_eq!(status["revision"], revision.as_str());
        assert_ne!(revision, "old");
    })
    .await;
    assert_eq!(action, Action::requeue(BUSY));
    assert_eq!(members[0].switchovers(), 0, "the master is switched over only once the slave runs the new spec");
}

#[tokio::test]
async fn a_requested_reseed_deletes_the_slave_once_and_is_recorded() {
    let (port, members) = member::start(&[("127.0.0.1", MASTER), ("127.0.0.2", SLAVE)]).await;
    let pair = pair(
        port,
        json!({"reseed": {"member": "b", "token": "r1"}}),
        json!({"phase": "Ready", "master": "demo-a", "slave": "demo-b"}),
    );
    let a = pod(&pair, Member::A, "Running", "master", 1);
    let b = pod(&pair, Member::B, "Running", "slave", 1);
    let action = round(&pair, |mut api, pair| async move {
        api.observe(&[a, b.clone()]).await;
        api.read_status(&pair).await;
        api.apply_owned().await;
        api.expect("DELETE", &format!("/api/v1/namespaces/{NS}/pods/demo-b")).await.reply(&b);
        let event = api.event().await;
        assert_eq!(event["reason"], "Reseeding");
        assert_eq!(
            event["note"],
            "demo-b deleted at spec.reseed's request (r1): it is re-created as a slave of demo-a with a full sync"
        );
        let status = api.write_status(&pair).await;
        assert_eq!(status["reseed"], "r1", "the request is carried out once");
        assert_eq!((&status["master"], &status["slave"]), (&json!("demo-a"), &json!("demo-b")));
    })
    .await;
    assert_eq!(action, Action::requeue(BUSY));
    assert_eq!(members[0].switchovers(), 0, "re-seeding the slave moves no role");

    // A request already carried out is not carried out again.
    let (port, _members) = member::start(&[("127.0.0.1", MASTER), ("127.0.0.2", SLAVE)]).await;
    let pair = self::pair(
        port,
        json!({"reseed": {"member": "b", "token": "r1"}}),
        json!({"phase": "Ready", "master": "demo-a", "slave": "demo-b", "reseed": "r1"}),
    );
    let (a, b) = (pod(&pair, Member::A, "Running", "master", 1), pod(&pair, Member::B, "Running", "slave", 1));
    round(&pair, |mut api, pair| async move {
        api.observe(&[a, b]).await;
        api.read_status(&pair).await;
        api.apply_owned().await;
        let status = api.write_status(&pair).await;
        assert_eq!(status["reseed"], "r1");
    })
    .await;
}

#[tokio::test]
async fn a_requested_fence_closes_the_slaves_gate() {
    let (port, _members) = member::start(&[("127.0.0.1", MASTER), ("127.0.0.2", SLAVE)]).await;
    let pair = pair(port, json!({"fenced": ["b"]}), json!({"phase": "Ready", "master": "demo-a", "slave": "demo-b"}));
    let a = pod(&pair, Member::A, "Running", "master", 1);
    let b = pod(&pair, Member::B, "Running", "slave", 1);
    let action = round(&pair, |mut api, pair| async move {
        api.observe(&[a, b.clone()]).await;
        api.read_status(&pair).await;
        // Routing first, before anything else is applied.
        let fenced = api.event().await;
        assert_eq!((&fenced["type"], &fenced["reason"]), (&json!("Warning"), &json!("Fenced")));
        assert_eq!(fenced["note"], "demo-b taken out of the client Service: spec.fenced names it");
        let gate = api.expect("PATCH", &format!("/api/v1/namespaces/{NS}/pods/demo-b/status")).await;
        let conditions = gate.reply(&b)["status"]["conditions"].clone();
        let by_type = |t: &str| conditions.as_array().unwrap().iter().find(|c| c["type"] == t).cloned().unwrap();
        assert_eq!(by_type(render::SERVING_CONDITION)["status"], "False");
        assert_eq!(by_type(render::SERVING_CONDITION)["reason"], "FencedBySpec");
        assert_eq!(by_type("Ready")["status"], "False");
        api.apply_owned().await;
        let status = api.write_status(&pair).await;
        assert_eq!(status["members"][1]["name"], "demo-b");
        assert_eq!(status["members"][1]["fenced"], true, "{status}");
        assert!(status["members"][0].get("fenced").is_none(), "the master serves: {status}");
    })
    .await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_requested_fence_of_the_master_switches_over_first() {
    let (port, members) = member::start(&[("127.0.0.1", MASTER), ("127.0.0.2", SLAVE)]).await;
    let pair = pair(port, json!({"fenced": ["a"]}), json!({"phase": "Ready", "master": "demo-a", "slave": "demo-b"}));
    let a = pod(&pair, Member::A, "Running", "master", 1);
    let b = pod(&pair, Member::B, "Running", "slave", 1);
    round(&pair, |mut api, pair| async move {
        api.observe(&[a.clone(), b.clone()]).await;
        api.read_status(&pair).await;
        api.apply_owned().await;
        api.admin_token().await;
        let switched = api.event().await;
        assert_eq!(switched["reason"], "Switchover");
        assert_eq!(
            switched["note"],
            "demo-b is master now (spec.fenced names it: switching over before fencing it); demo-a: handed over"
        );
        assert_eq!(api.label("demo-a", &a).await, json!({"cachepair.io/role": "slave"}));
        assert_eq!(api.label("demo-b", &b).await, json!({"cachepair.io/role": "master"}));
        let status = api.write_status(&pair).await;
        assert_eq!((&status["master"], &status["slave"]), (&json!("demo-b"), &json!("demo-a")));
    })
    .await;
    assert_eq!(members[0].switchovers(), 1, "zero loss: the master hands over before it is fenced");
}
