//! A scripted Kubernetes API server: each test says which requests `reconcile` must make, in
//! order, and what each one gets back (kube-rs controller-rs's `ApiServerVerifier`, over
//! `tower-test`'s mock service).

use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::time::timeout;
use tower_test::mock::{self, Handle, SendResponse};

/// How long the operator may take to make its next request.
const NEXT_REQUEST: Duration = Duration::from_secs(5);

pub const NS: &str = "shop";
pub const PAIR: &str = "demo";

pub struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// One request the operator made, waiting for its answer.
pub struct Call {
    pub query: String,
    /// The request body as JSON (`Null` when it has none).
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

impl Call {
    /// Answers 200 with `object`; returns the request body.
    pub fn reply(self, object: impl Serialize) -> Value {
        self.answer(StatusCode::OK, serde_json::to_value(object).expect("a response serializes"))
    }

    /// Answers 200 with the request body (as the API server does for applied objects).
    pub fn echo(self) -> Value {
        let body = self.body.clone();
        self.answer(StatusCode::OK, body)
    }

    pub fn not_found(self) -> Value {
        let status = json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                            "reason": "NotFound", "message": "not found", "code": 404});
        self.answer(StatusCode::NOT_FOUND, status)
    }

    fn answer(self, status: StatusCode, object: Value) -> Value {
        let bytes = serde_json::to_vec(&object).expect("JSON serializes");
        self.send.send_response(Response::builder().status(status).body(Body::from(bytes)).expect("a response"));
        self.body
    }
}

impl ApiServer {
    /// A client whose every request this server answers.
    pub fn new() -> (Client, ApiServer) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(service, NS), ApiServer(handle))
    }

    /// The operator's next request, which must be `method path`.
    pub async fn expect(&mut self, method: &str, path: &str) -> Call {
        let (request, send) = timeout(NEXT_REQUEST, self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request within {NEXT_REQUEST:?}; expected {method} {path}"))
            .unwrap_or_else(|| panic!("the operator stopped; expected {method} {path}"));
        let (parts, body) = request.into_parts();
        assert_eq!((parts.method.as_str(), parts.uri.path()), (method, path), "the operator's next request");
        let body = body.collect_bytes().await.expect("a request body");
        let body = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).expect("a JSON body") };
        Call { query: parts.uri.query().unwrap_or_default().to_string(), body, send }
    }

    /// The pair's pods are listed by their label, and each one's node is read.
    pub async fn observe(&mut self, pods: &[Value]) {
        let list = self.expect("GET", &format!("/api/v1/namespaces/{NS}/pods")).await;
        assert!(list.query.contains("labelSelector=cachepair.io%2Fpair%3Ddemo"), "{}", list.query);
        list.reply(json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods}));
        for pod in pods {
            let node = pod["spec"]["nodeName"].as_str().expect("a scheduled pod");
            self.expect("GET", &format!("/api/v1/nodes/{node}")).await.reply(ready_node(node));
        }
    }

    /// The pair's status is read afresh; the API server has `pair`'s.
    pub async fn read_status(&mut self, pair: &Value) {
        self.expect("GET", &format!("/apis/cachepair.io/v1alpha1/namespaces/{NS}/cachepairs/{PAIR}/status"))
            .await
            .reply(pair);
    }

    /// The Services, policy and budget are applied; the generated Secrets exist already; no
    /// ServiceMonitor is wanted.
    pub async fn apply_owned(&mut self) {
        for path in [
            format!("/api/v1/namespaces/{NS}/services/{PAIR}"),
            format!("/api/v1/namespaces/{NS}/services/{PAIR}-members"),
            format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{PAIR}"),
        ] {
            self.expect_apply(&path).await;
        }
        // The policy of earlier operators, replaced by `<name>`, is gone.
        self.expect(
            "DELETE",
            &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{PAIR}-replication"),
        )
        .await
        .not_found();
        self.expect_apply(&format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{PAIR}")).await;
        for name in ["replication", "admin"] {
            let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{PAIR}-{name}")}});
            self.expect("GET", &format!("/api/v1/namespaces/{NS}/secrets/{PAIR}-{name}")).await.reply(secret);
        }
        // The replication certificate, far from its expiry.
        let certificate = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{PAIR}-replication-tls"),
            "annotations": {"cachepair.io/certificate-not-after": "99999999999"}}});
        self.expect("GET", &format!("/api/v1/namespaces/{NS}/secrets/{PAIR}-replication-tls")).await.reply(certificate);
        self.expect("DELETE", &format!("/apis/monitoring.coreos.com/v1/namespaces/{NS}/servicemonitors/{PAIR}"))
            .await
            .not_found();
    }

    /// The admin Secret, read for a switchover: its token is [`crate::member::ADMIN_TOKEN`].
    pub async fn admin_token(&mut self) {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(crate::member::ADMIN_TOKEN);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{PAIR}-admin")},
            "data": {"token": token}});
        self.expect("GET", &format!("/api/v1/namespaces/{NS}/secrets/{PAIR}-admin")).await.reply(secret);
    }

    /// A server-side apply by the operator, echoed back.
    async fn expect_apply(&mut self, path: &str) {
        let call = self.expect("PATCH", path).await;
        assert!(call.query.contains("fieldManager=cachepair-operator") && call.query.contains("force=true"));
        call.echo();
    }

    /// An Event about the pair; returns it.
    pub async fn event(&mut self) -> Value {
        let event = self.expect("POST", &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")).await.echo();
        assert_eq!(event["regarding"]["name"], PAIR, "{event}");
        event
    }

    /// A merge patch of a member's labels; returns the labels patched.
    pub async fn label(&mut self, pod: &str, current: &Value) -> Value {
        let call = self.expect("PATCH", &format!("/api/v1/namespaces/{NS}/pods/{pod}")).await;
        let labels = call.body["metadata"]["labels"].clone();
        call.reply(current);
        labels
    }

    /// The status is written by server-side apply; returns it.
    pub async fn write_status(&mut self, pair: &Value) -> Value {
        let call = self
            .expect("PATCH", &format!("/apis/cachepair.io/v1alpha1/namespaces/{NS}/cachepairs/{PAIR}/status"))
            .await;
        assert!(call.query.contains("fieldManager=cachepair-operator"), "{}", call.query);
        let mut written = pair.clone();
        written["status"] = call.body["status"].clone();
        call.reply(written)["status"].clone()
    }
}

fn ready_node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}
