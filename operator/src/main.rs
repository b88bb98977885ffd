//! `cachepair-operator`: reconciles CachePairs against the cluster in the kubeconfig (or the
//! one it runs in), serving `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Parser;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use operator::controller::{self, Context};
use operator::crd::DEFAULT_IMAGE;
use operator::metrics::Metrics;
use operator::telemetry::{self, LogFormat};
use operator::{eviction, leader, render};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "cachepair-operator",
    version,
    about = "Kubernetes operator for CachePair (replicated memcached pairs)"
)]
struct Args {
    /// kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account)
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Watch only these namespaces, comma-separated or repeated (default: all)
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::NonEmptyStringValueParser::new())]
    namespace: Vec<String>,
    /// Where /metrics, /healthz and /readyz are served
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Elect a leader through a Lease, so that several replicas can run
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    #[arg(long, default_value = "cachepair-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: $POD_NAMESPACE, else `default`)
    #[arg(long)]
    lease_namespace: Option<String>,
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Serve the eviction webhook (HTTPS, `POST /validate-eviction`) here; needs
    /// --webhook-cert and --webhook-key. Off when not given.
    #[arg(long, requires_all = ["webhook_cert", "webhook_key"])]
    webhook_listen: Option<SocketAddr>,
    /// The webhook's certificate chain (PEM)
    #[arg(long, requires = "webhook_listen")]
    webhook_cert: Option<PathBuf>,
    /// The webhook's private key (PEM)
    #[arg(long, requires = "webhook_listen")]
    webhook_key: Option<PathBuf>,
    /// The image of the VRRP sidecar of pairs in VRRP mode, which runs as root with NET_ADMIN
    /// and NET_RAW on the host network: the operator's choice, not the pair's `spec.image`
    #[arg(long, default_value = DEFAULT_IMAGE)]
    vrrp_image: String,
}

struct Health {
    registry: Registry,
    /// True once this replica reconciles (as leader, or without election).
    ready: watch::Receiver<bool>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let client = client(args.kubeconfig.as_deref()).await?;
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("cachepair-operator-{}", std::process::id()));

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let (ready_tx, ready) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Arc::new(Health { registry, ready }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "the metrics listener failed");
        }
    });
    if let (Some(addr), Some(cert), Some(key)) = (args.webhook_listen, args.webhook_cert, args.webhook_key) {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        // Read now, so that a bad certificate stops the operator with a clear error.
        let acceptor = eviction::tls_acceptor(&cert, &key)?;
        let server = eviction::serve_tls(listener, eviction::router(client.clone()), acceptor);
        info!(listen = %addr, "eviction webhook listening");
        tokio::spawn(async move {
            if let Err(e) = server.await {
                error!(error = %e, "the eviction webhook failed");
            }
        });
    }
    info!(listen = %args.listen, identity, "cachepair-operator starting");

    // In the cluster, the Deployment sets POD_NAMESPACE from the downward API.
    let own_namespace = std::env::var("POD_NAMESPACE").ok();
    if own_namespace.is_none() {
        warn!("POD_NAMESPACE is not set: the pairs' NetworkPolicies leave the admin port open to every source");
    }
    let settings = render::Settings { namespace: own_namespace.clone(), vrrp_image: args.vrrp_image.clone() };
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), &identity, settings));
    if !args.leader_election {
        ready_tx.send_replace(true);
        controller::run(ctx, args.namespace, shutdown_signal()).await;
        return Ok(());
    }
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    let lease_ns = args.lease_namespace.or(own_namespace).unwrap_or_else(|| "default".into());
    let mut election = leader::start(client, &lease_ns, &args.lease_name, &identity).await?;
    info!(lease = %args.lease_name, namespace = %lease_ns, "waiting to lead");
    tokio::select! {
        leading = leader::until_leader(&mut election.is_leader) => if !leading {
            anyhow::bail!("leader election ended");
        },
        () = &mut shutdown => return Ok(()),
    }
    info!("leading: reconciling");
    metrics.leader.set(1);
    ready_tx.send_replace(true);
    let mut deposed = election.is_leader.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(controller::run(ctx, args.namespace, async move {
        let _ = stop_rx.await;
    }));
    let lost = tokio::select! {
        () = leader::until_deposed(&mut deposed) => true,
        () = &mut shutdown => false,
    };
    // Stop reconciling before the Lease is given up, so that two leaders never overlap.
    let _ = stop_tx.send(());
    let _ = run.await;
    metrics.leader.set(0);
    drop(election.is_leader);
    drop(deposed);
    let _ = election.task.await;
    if lost {
        anyhow::bail!("lost the leader Lease; exiting so that a fresh start campaigns again");
    }
    info!("stopped");
    Ok(())
}

async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let Some(path) = kubeconfig else {
        return Client::try_default().await.context("no Kubernetes configuration (use --kubeconfig)");
    };
    let config = Kubeconfig::read_from(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

async fn serve_metrics(State(health): State<Arc<Health>>) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &health.registry) {
        Ok(()) => {
            (StatusCode::OK, [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/plain")], e.to_string()),
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if *health.ready.borrow() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "standby\n") }
}

/// SIGTERM (from the kubelet) or Ctrl-C.
async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => info!("interrupted: shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_comma_separated_or_repeated() {
        let args =
            Args::try_parse_from(["cachepair-operator", "--namespace=apps,shop", "--namespace", "cart"]).unwrap();
        assert_eq!(args.namespace, ["apps", "shop", "cart"]);
        assert!(Args::try_parse_from(["cachepair-operator"]).unwrap().namespace.is_empty(), "all namespaces");
        assert!(Args::try_parse_from(["cachepair-operator", "--namespace="]).is_err());
    }
}
