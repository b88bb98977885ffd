//! The kubelet API, as much of it as the API server's `pods/log` subresource (so `kubectl logs`)
//! needs: `GET /containerLogs/{namespace}/{pod}/{container}`, over HTTPS on the node's address
//! and port [`PORT`], which the node reports in `status.daemonEndpoints`.
//!
//! The certificate is made at start and self-signed: the API server has no
//! `--kubelet-certificate-authority` here, so it does not verify it. Its client certificate is
//! not asked for (no authentication, no authorization: only the test run's network namespace
//! reaches the address).
//!
//! As the kubelet answers: `tailLines` (the last lines), then `limitBytes` (the first bytes of
//! those); `previous=true` serves the log of the container's run before its last restart, or 400
//! with the kubelet's message when it had none (what the API server passes on as BadRequest);
//! 404 for a pod the node does not run or a container the pod does not have. `follow=true`
//! returns what is there and ends; `timestamps`, `sinceSeconds` and `sinceTime` are accepted
//! and ignored (the log files keep no times).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

use super::{Shared, key, pod};

/// The kubelet's port (each node has its own address).
pub(super) const PORT: u16 = 10250;

/// How long a client has for its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Listens on the node's address; the returned task serves until it is aborted, and its
/// connections end with it.
pub(super) async fn start(shared: Arc<Shared>) -> anyhow::Result<JoinHandle<()>> {
    let ip = shared.node_ip();
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&ip, &shared.config.node)?));
    let listener =
        TcpListener::bind((ip.as_str(), PORT)).await.with_context(|| format!("the kubelet API on {ip}:{PORT}"))?;
    Ok(tokio::spawn(serve(shared, listener, acceptor)))
}

fn tls_config(ip: &str, node: &str) -> anyhow::Result<rustls::ServerConfig> {
    let cert = rcgen::generate_simple_self_signed(vec![ip.to_string(), node.to_string()])?;
    let key = pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

async fn serve(shared: Arc<Shared>, listener: TcpListener, acceptor: TlsAcceptor) {
    // Dropped with this task (aborted when the kubelet stops): its connections are aborted too.
    let mut connections = JoinSet::new();
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "kubelet API accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let (shared, acceptor) = (shared.clone(), acceptor.clone());
        connections.spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await else { return };
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(&shared, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

async fn respond(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here".into());
    }
    let path: Vec<&str> = request.uri().path().trim_start_matches('/').split('/').collect();
    match path.as_slice() {
        ["containerLogs", namespace, pod, container] => {
            container_logs(shared, namespace, pod, container, request.uri().query().unwrap_or_default()).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found".into()),
    }
}

/// The query parameters of a log request that change what is sent.
#[derive(Debug, Default, PartialEq)]
struct LogQuery {
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
    previous: bool,
}

impl LogQuery {
    /// As the kubelet decodes and validates `PodLogOptions`: 400 for what does not decode, 422
    /// for what is invalid (both with its messages).
    fn parse(query: &str) -> Result<LogQuery, (StatusCode, String)> {
        let undecodable = || (StatusCode::BAD_REQUEST, r#"{"message": "Unable to decode query."}"#.to_string());
        let invalid = || (StatusCode::UNPROCESSABLE_ENTITY, r#"{"message": "Invalid request."}"#.to_string());
        let mut q = LogQuery::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                // `tail` is the kubelet's older name for tailLines; "all" is no limit.
                "tail" if value == "all" => q.tail_lines = None,
                "tailLines" | "tail" => {
                    let n: i64 = value.parse().map_err(|_| undecodable())?;
                    q.tail_lines = Some(usize::try_from(n).map_err(|_| invalid())?);
                }
                "limitBytes" => {
                    let n: i64 = value.parse().map_err(|_| undecodable())?;
                    q.limit_bytes = Some(usize::try_from(n).ok().filter(|n| *n > 0).ok_or_else(invalid)?);
                }
                "previous" => q.previous = parse_bool(value).ok_or_else(undecodable)?,
                "follow" | "timestamps" => {
                    parse_bool(value).ok_or_else(undecodable)?;
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Go's strconv.ParseBool, which the kubelet's query decoding uses.
fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

async fn container_logs(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Full<Bytes>> {
    let q = match LogQuery::parse(query) {
        Ok(q) => q,
        Err((status, message)) => return text(status, message),
    };
    let dir = {
        let pods = shared.pods.lock().await;
        let Some(handle) = pods.get(&key(namespace, pod)) else {
            return text(StatusCode::NOT_FOUND, format!("pod {pod:?} does not exist"));
        };
        let spec = handle.latest.borrow().spec.clone().unwrap_or_default();
        if !spec.containers.iter().any(|c| c.name == container) {
            return text(StatusCode::NOT_FOUND, format!("container {container:?} not found in pod {pod:?}"));
        }
        pod::dir(&shared.config.work_dir, namespace, pod, &handle.uid)
    };
    let path = dir.join(pod::log_file(container, q.previous));
    let log = match tokio::fs::read(&path).await {
        Ok(log) => log,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && q.previous => {
            let message = format!("previous terminated container {container:?} in pod {pod:?} not found");
            return text(StatusCode::BAD_REQUEST, message);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let message = format!("container {container:?} in pod {pod:?} is waiting to start: ContainerCreating");
            return text(StatusCode::BAD_REQUEST, message);
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", path.display())),
    };
    let mut body = q.tail_lines.map_or(log.as_slice(), |n| tail(&log, n));
    if let Some(limit) = q.limit_bytes {
        body = &body[..body.len().min(limit)];
    }
    Response::builder()
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("a valid response")
}

/// The last `n` lines of `log` (a last line without its newline counts).
fn tail(log: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &log[i + 1..];
            }
        }
    }
    log
}

/// A plain-text answer, as the kubelet writes its errors.
fn text(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(message)))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail(b"a\nb\nc\n", 5), b"a\nb\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 3), b"a\nb\nc\n");
        assert_eq!(tail(b"a\nb\nc\n", 0), b"");
        assert_eq!(tail(b"", 1), b"");
    }

    #[test]
    fn the_query_is_read_as_the_kubelet_reads_it() {
        let q = LogQuery::parse("follow=true&limitBytes=10&previous=true&tailLines=5&timestamps=true").unwrap();
        assert_eq!(q, LogQuery { tail_lines: Some(5), limit_bytes: Some(10), previous: true });
        assert_eq!(LogQuery::parse("").unwrap(), LogQuery::default());
        assert_eq!(LogQuery::parse("tail=all").unwrap().tail_lines, None);
        assert_eq!(LogQuery::parse("tail=3").unwrap().tail_lines, Some(3));
        assert_eq!(LogQuery::parse("sinceSeconds=10").unwrap(), LogQuery::default());
        assert_eq!(LogQuery::parse("tailLines=x").unwrap_err().0, StatusCode::BAD_REQUEST);
        assert_eq!(LogQuery::parse("tailLines=-1").unwrap_err().0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(LogQuery::parse("limitBytes=0").unwrap_err().0, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(LogQuery::parse("previous=maybe").unwrap_err().0, StatusCode::BAD_REQUEST);
    }
}
