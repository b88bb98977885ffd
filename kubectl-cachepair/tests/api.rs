//! The commands against a scripted API server (tower-test's mock service, as the operator's
//! reconcile tests do): the requests each one makes, in order, and what it prints.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kubectl_cachepair::cli::{Command, MemberArg, Request as Req, Wait};
use kubectl_cachepair::ops::Ops;
use serde_json::{Value, json};
use tokio::time::timeout;
use tower_test::mock::{self, Handle};

const PAIRS: &str = "/apis/cachepair.io/v1alpha1/namespaces/shop/cachepairs";

struct Api(Handle<Request<Body>, Response<Body>>);

impl Api {
    /// The next request must be `method path`; it is answered 200 with `reply`. Returns its
    /// query and body.
    async fn expect(&mut self, method: &str, path: &str, reply: Value) -> (String, Value) {
        let (request, send) = timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request; expected {method} {path}"))
            .expect("the plugin stopped");
        let (parts, body) = request.into_parts();
        assert_eq!((parts.method.as_str(), parts.uri.path()), (method, path));
        let body = body.collect_bytes().await.unwrap();
        let body = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
        let bytes = serde_json::to_vec(&reply).unwrap();
        send.send_response(Response::builder().status(StatusCode::OK).body(Body::from(bytes)).unwrap());
        (parts.uri.query().unwrap_or_default().to_string(), body)
    }

    async fn events(&mut self, names: [&str; 3], events: Value) {
        for (i, name) in names.iter().enumerate() {
            let items = if i == 0 { events.clone() } else { json!([]) };
            let (query, _) = self
                .expect(
                    "GET",
                    "/api/v1/namespaces/shop/events",
                    json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items}),
                )
                .await;
            assert!(query.contains(&format!("fieldSelector=involvedObject.name%3D{name}")), "{query}");
        }
    }
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/pair.json")).unwrap()
}

/// Runs `command` while `script` answers; returns what it printed.
async fn run<F: Future<Output = ()> + Send + 'static>(command: Command, script: impl FnOnce(Api) -> F) -> String {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ops = Ops { client: Client::new(service, "shop"), namespace: "shop".into() };
    let script = tokio::spawn(script(Api(handle)));
    let mut out = Vec::new();
    let result = timeout(Duration::from_secs(20), kubectl_cachepair::run(&ops, command, &mut out)).await.unwrap();
    if let Err(e) = script.await {
        std::panic::resume_unwind(e.into_panic());
    }
    result.expect("the command succeeds");
    String::from_utf8(out).unwrap()
}

fn no_wait() -> Wait {
    Wait { wait: false, timeout: Duration::from_secs(5) }
}

#[tokio::test]
async fn status_reads_the_pair_and_its_events_and_shows_roles_and_conditions() {
    let events = serde_json::from_str::<Value>(include_str!("fixtures/events.json")).unwrap();
    let out = run(Command::Status { pair: "demo".into(), output: None }, |mut api| async move {
        api.expect("GET", &format!("{PAIRS}/demo"), fixture()).await;
        api.events(["demo", "demo-a", "demo-b"], events).await;
    })
    .await;
    assert!(out.starts_with("CachePair shop/demo: Ready\nMaster:     demo-b\nSlave:      demo-a\n"), "{out}");
    assert!(out.contains("demo-b  master  node-2  4096    96   no"), "{out}");
    assert!(out.contains("Ready        True    MasterServing"), "{out}");
    assert!(out.contains("Warning  Failover    demo    demo-b took over as master from demo-a"), "{out}");

    let out = run(
        Command::Status { pair: "demo".into(), output: Some(kubectl_cachepair::cli::Format::Json) },
        |mut api| async move {
            api.expect("GET", &format!("{PAIRS}/demo"), fixture()).await;
            api.events(["demo", "demo-a", "demo-b"], json!([])).await;
        },
    )
    .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((&v["master"], &v["members"][1]["role"]), (&json!("demo-b"), &json!("master")));
}

#[tokio::test]
async fn switchover_patches_the_token_and_waits_until_the_status_records_it() {
    let request = Req { token: Some("t2".into()), wait: Wait { wait: true, timeout: Duration::from_secs(5) } };
    let out = run(Command::Switchover { pair: "demo".into(), request }, |mut api| async move {
        let (query, body) = api.expect("PATCH", &format!("{PAIRS}/demo"), fixture()).await;
        assert!(query.contains("fieldManager=kubectl-cachepair"), "{query}");
        assert_eq!(body, json!({"spec": {"switchover": "t2"}}));
        // Not yet carried out, then carried out: b handed over to a.
        api.expect("GET", &format!("{PAIRS}/demo"), fixture()).await;
        let mut done = fixture();
        done["status"]["switchover"] = "t2".into();
        done["status"]["master"] = "demo-a".into();
        api.expect("GET", &format!("{PAIRS}/demo"), done).await;
    })
    .await;
    assert_eq!(
        out,
        "cachepair/demo: switchover requested (token t2)\ncachepair/demo: switched over; master is demo-a\n"
    );
}

#[tokio::test]
async fn reseed_patches_the_member_and_token() {
    let request = Req { token: Some("r9".into()), wait: no_wait() };
    let out = run(Command::Reseed { pair: "demo".into(), member: MemberArg::A, request }, |mut api| async move {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo-a", "uid": "u1"}});
        api.expect("GET", "/api/v1/namespaces/shop/pods/demo-a", pod).await;
        let (_, body) = api.expect("PATCH", &format!("{PAIRS}/demo"), fixture()).await;
        assert_eq!(body, json!({"spec": {"reseed": {"member": "a", "token": "r9"}}}));
    })
    .await;
    assert_eq!(out, "cachepair/demo: re-seed of demo-a requested (token r9)\n");
}

#[tokio::test]
async fn fence_adds_the_member_to_spec_fenced_guarded_by_the_resource_version() {
    let out =
        run(Command::Fence { pair: "demo".into(), member: MemberArg::B, wait: no_wait() }, |mut api| async move {
            api.expect("GET", &format!("{PAIRS}/demo"), fixture()).await;
            let (_, body) = api.expect("PATCH", &format!("{PAIRS}/demo"), fixture()).await;
            assert_eq!(body, json!({"metadata": {"resourceVersion": "1234"}, "spec": {"fenced": ["a", "b"]}}));
        })
        .await;
    assert_eq!(out, "cachepair/demo: fence of demo-b requested\n");

    // Unfencing a removes it; fencing a again changes nothing and writes nothing.
    let out =
        run(Command::Unfence { pair: "demo".into(), member: MemberArg::A, wait: no_wait() }, |mut api| async move {
            api.expect("GET", &format!("{PAIRS}/demo"), fixture()).await;
            let (_, body) = api.expect("PATCH", &format!("{PAIRS}/demo"), fixture()).await;
            assert_eq!(body["spec"], json!({"fenced": []}));
        })
        .await;
    assert_eq!(out, "cachepair/demo: unfence of demo-a requested\n");
    let out =
        run(Command::Fence { pair: "demo".into(), member: MemberArg::A, wait: no_wait() }, |mut api| async move {
            api.expect("GET", &format!("{PAIRS}/demo"), fixture()).await;
        })
        .await;
    assert_eq!(out, "cachepair/demo: spec.fenced names demo-a already\n");
}

#[tokio::test]
async fn fence_waits_for_the_members_readiness_gate() {
    let wait = Wait { wait: true, timeout: Duration::from_secs(5) };
    let out = run(Command::Fence { pair: "demo".into(), member: MemberArg::B, wait }, |mut api| async move {
        api.expect("GET", &format!("{PAIRS}/demo"), fixture()).await;
        api.expect("PATCH", &format!("{PAIRS}/demo"), fixture()).await;
        api.expect("GET", &format!("{PAIRS}/demo"), fixture()).await;
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo-b"},
                         "status": {"conditions": [{"type": "cachepair.io/serving", "status": "False"}]}});
        api.expect("GET", "/api/v1/namespaces/shop/pods/demo-b", pod).await;
    })
    .await;
    assert!(out.ends_with("cachepair/demo: demo-b is out of client routing\n"), "{out}");
}

#[tokio::test]
async fn logs_read_the_cache_node_container_of_each_member() {
    let command = Command::Logs { pair: "demo".into(), member: None, previous: true, tail: Some(20) };
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let ops = Ops { client: Client::new(service, "shop"), namespace: "shop".into() };
    let script = tokio::spawn(async move {
        for pod in ["demo-a", "demo-b"] {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.uri().path(), format!("/api/v1/namespaces/shop/pods/{pod}/log"));
            let query = request.uri().query().unwrap().to_string();
            assert!(query.contains("container=cache-node") && query.contains("previous=true"), "{query}");
            assert!(query.contains("tailLines=20"), "{query}");
            send.send_response(Response::builder().body(Body::from(format!("{pod} says hi\n").into_bytes())).unwrap());
        }
    });
    let mut out = Vec::new();
    kubectl_cachepair::run(&ops, command, &mut out).await.unwrap();
    script.await.unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "==> demo-a <==\ndemo-a says hi\n==> demo-b <==\ndemo-b says hi\n");
}
