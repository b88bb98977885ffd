//! VRRP speaker for bare-metal hostNetwork (`cache-node vrrp`): keepalived-compatible VRRPv2
//! and VRRPv3, configured by a keepalived.conf, so the virtual IP sits where the cache is master.
//!
//! - [`config`]: the keepalived.conf subset, parsed and checked;
//! - [`packet`]: the advertisement codec; [`accept`]: which adverts an instance acts on;
//! - [`state`]: one instance's state machine, pure; [`track`]: what checks do to it;
//! - [`socket`], [`addr`], [`announce`]: raw sockets, netlink, gratuitous ARP / unsolicited
//!   NA — the only code that touches the network;
//! - [`script`]: check scripts and notify hooks; [`role`]: cache-node's own role check,
//!   followed in-process; [`speaker`]: an instance at work;
//! - [`metrics`]: state and advert counters for Prometheus.

pub mod accept;
pub mod addr;
pub mod announce;
pub mod config;
pub mod metrics;
pub mod packet;
pub mod role;
pub mod script;
pub mod socket;
pub mod speaker;
pub mod state;
pub mod track;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use anyhow::Context as _;

use self::addr::Netlink;
use self::metrics::Metrics;
use self::speaker::Speaker;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The keepalived.conf to run (its vrrp_script and vrrp_instance blocks)
    #[arg(long = "config", short = 'f', default_value = "/etc/keepalived/keepalived.conf")]
    pub config: PathBuf,
    /// Check the configuration and exit, like `keepalived --config-test`
    #[arg(long = "config-test", short = 't')]
    pub config_test: bool,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` on this address
    #[arg(long = "metrics-listen", value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// More logging: -v start/stop and state changes, -vv debug
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
}

pub fn run(args: &Args) -> ExitCode {
    crate::logging::init(args.verbose.max(1));
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for w in &config.warnings {
        warn!("{}: {w}", args.config.display());
    }
    if args.config_test {
        println!("{}: configuration OK ({} instance(s))", args.config.display(), config.instances.len());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cache-node vrrp: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, args.metrics_listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every instance until SIGTERM or SIGINT, then stops them all (a master hands over
/// with priority 0 and drops its addresses before the process exits). An instance that cannot
/// start stops the others and the process, with its error.
async fn serve(config: config::Config, metrics_listen: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let netlink = Arc::new(Netlink::new()?);
    let metrics = Arc::new(Metrics::default());
    let metrics_server = match metrics_listen {
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr).with_context(|| format!("--metrics-listen {addr}"))?;
            info!(%addr, "serving metrics");
            Some(tokio::spawn(metrics::serve(metrics.clone(), listener)))
        }
        None => None,
    };
    let config = Arc::new(config);
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for i in 0..config.instances.len() {
        let (config, netlink, metrics, mut stopped) =
            (config.clone(), netlink.clone(), metrics.clone(), stopped.clone());
        tasks.spawn(async move {
            let instance = &config.instances[i];
            if let Some(speaker) = Speaker::start(&config, instance, netlink, metrics, &mut stopped).await? {
                speaker.run(stopped).await;
            }
            anyhow::Ok(())
        });
    }
    let failed = tokio::select! {
        _ = term.recv() => { info!(signal = "SIGTERM", "shutting down"); None }
        _ = int.recv() => { info!(signal = "SIGINT", "shutting down"); None }
        Some(done) = tasks.join_next() => Some(match done {
            Ok(Err(e)) => e,
            Ok(Ok(())) => anyhow::anyhow!("an instance stopped on its own"),
            Err(e) => anyhow::anyhow!("an instance failed: {e}"),
        }),
    };
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            error!("{e:#}");
        }
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    failed.map_or(Ok(()), Err)
}
