//! A node's life, in memcached's order: check who we are, raise the open-files limit, bind
//! the ports, read the TLS certificate and key (`-Z`), become the `-u` user, daemonize, write
//! the pid file, then start the runtime and serve until SIGTERM or SIGINT (SIGHUP reloads the
//! TLS certificate), when the node stops serving clients, hands the master role over if it has
//! it, removes its pid file and exits 0.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info, warn};

use crate::admin;
use crate::config::{Config, ReplMode};
use crate::daemon::{self, EX_CANTCREAT, EX_OSERR, EX_USAGE, Fatal, PidFile};
use crate::engine::auth::{self, Auth};
use crate::engine::{Context, Settings};
use crate::logging;
use crate::replication::{self, Replicator, auth::Secret, codec};
use crate::server::{self, Listeners, http};
use crate::store::{self, Store};
use crate::tls::Tls;

/// Runs the node with a parsed command line; the exit code follows memcached's.
pub fn run(config: &Config) -> ExitCode {
    crate::allocator::configure();
    logging::init(config.verbose);
    match start(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            // Plain lines, as memcached prints them: init scripts grep for these.
            eprintln!("{fatal}");
            ExitCode::from(fatal.code)
        }
    }
}

fn start(config: &Config) -> Result<(), Fatal> {
    let user = daemon::target_user(config.user.as_deref(), config.allow_root)?;
    // While still root, which alone may raise the hard limit.
    raise_open_files_limit(config);
    // Bound while still root, so that -u works with ports below 1024.
    let listeners = bind(config)?;
    let admin = admin_listeners(config)?;
    // Read before dropping privileges: the secret file may be readable by root only.
    let replication = replication_config(config)?;
    let auth = auth(config)?;
    // So may the TLS key (later reloads read it as the -u user, as memcached's do).
    let tls = tls_config(config)?;
    if let Some(user) = &user {
        daemon::switch_to(user)?;
    }
    // Created as the -u user, so that it can remove the file at exit.
    let mut pidfile = config.pidfile.as_deref().map(PidFile::create).transpose()?;
    if config.daemon {
        daemon::daemonize(config.verbose > 0)?;
    }
    if let Some(pidfile) = &mut pidfile {
        pidfile.write_pid().map_err(|e| Fatal::new(EX_CANTCREAT, format!("Could not write the pid file: {e}")))?;
    }

    let ctx = context(config, auth, tls);
    // Connections run on their own -t worker threads (server::workers); this runtime only
    // accepts, sweeps and serves UDP and the admin listener.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| {
            crate::sched::prefer_short_slices();
        })
        .enable_all()
        .build()
        .map_err(|e| Fatal::new(EX_OSERR, format!("cannot start the runtime: {e}")))?;
    let shutdown_timeout = Duration::from_secs(config.shutdown_timeout);
    runtime
        .block_on(serve(ctx, listeners, admin, replication, shutdown_timeout))
        .map_err(|e| Fatal::new(1, format!("{e:#}")))?;
    // Connections still open end with the runtime, before the pid file goes.
    drop(runtime);
    info!("stopped");
    Ok(())
}

/// Descriptors for the replication link: the connection to the peer and handshakes in progress.
const REPLICATION_FILES: u64 = 16;
/// Descriptors each `-t` worker thread holds: its runtime's epoll and wake-up descriptors.
const FILES_PER_WORKER: u64 = 4;
/// Descriptors for everything else: listening sockets, the main runtime, standard streams,
/// the pid file, the secret file while it is read.
const OTHER_FILES: u64 = 32;

/// Makes room in the open-files limit for `-c` clients and the other connections, which do not
/// count against `-c`; when the system will not allow that many, says so and carries on, since
/// the limit may still be enough for the connections the node will actually see.
fn raise_open_files_limit(config: &Config) {
    let clients = config.max_connections as u64;
    let needed = [
        FILES_PER_WORKER.saturating_mul(config.threads as u64),
        http::MAX_CONNECTIONS as u64,
        REPLICATION_FILES,
        OTHER_FILES,
    ]
    .into_iter()
    .fold(clients, u64::saturating_add);
    match daemon::raise_open_files_limit(needed) {
        Ok(limit) if limit >= needed => info!(limit, needed, "open files limit"),
        Ok(limit) => warn!(
            "the open files limit is {limit}, below the {needed} that -c {clients} needs with the admin and \
             replication connections: past it, new connections fail (EMFILE); raise the hard limit \
             (ulimit -Hn, LimitNOFILE= for systemd, --ulimit nofile= for docker) or lower -c"
        ),
        Err(e) => warn!(error = %e, needed, "cannot raise the open files limit"),
    }
}

fn bind(config: &Config) -> Result<Listeners, Fatal> {
    let os_err = |e: anyhow::Error| Fatal::new(EX_OSERR, format!("{e:#}"));
    Listeners::bind(&config.tcp_addrs().map_err(os_err)?, &config.udp_addrs().map_err(os_err)?, config.freebind)
        .map_err(os_err)
}

/// The shared secret a pair uses when none is configured: it keeps repcached's command lines
/// working, and the log says that the replication port is then open to anyone who knows it.
const DEFAULT_REPL_SECRET: &[u8] = b"cachepair-default-replication-secret";

fn replication_config(config: &Config) -> Result<Option<replication::Config>, Fatal> {
    let usage = |e: String| Fatal::new(EX_USAGE, e);
    let Some(listen) = config.repl_listen().map_err(|e| usage(format!("{e:#}")))? else {
        return Ok(None);
    };
    let secret = match &config.repl_secret_file {
        Some(path) => Secret::from_file(path).map_err(|e| usage(e.to_string()))?,
        None => {
            warn!("no --repl-secret-file: the pair authenticates with the built-in secret");
            Secret::from_bytes(DEFAULT_REPL_SECRET).map_err(|e| usage(e.to_string()))?
        }
    };
    Ok(Some(replication::Config {
        peer: config.repl_peer(),
        listen,
        secret,
        heartbeat: Duration::from_millis(config.repl_heartbeat_ms),
        misses: config.repl_misses,
        backlog_bytes: config.repl_queue.saturating_mul(1024),
        max_frame: codec::max_frame(config.item_size_max),
        sync_timeout: (config.repl_mode == ReplMode::Sync).then(|| Duration::from_millis(config.repl_sync_timeout_ms)),
        serve_while_syncing: config.serve_while_syncing,
    }))
}

/// The admin listeners (`--admin-listen`, `--admin-read-listen`), with the token /switchover
/// asks for, checked now so that a missing or empty token file fails the start, not the first
/// switchover.
struct AdminListeners {
    listeners: Vec<(std::net::TcpListener, admin::Endpoints)>,
    token_file: Option<std::path::PathBuf>,
}

fn admin_listeners(config: &Config) -> Result<AdminListeners, Fatal> {
    if let Some(file) = &config.admin_token_file {
        let token = std::fs::read_to_string(file)
            .map_err(|e| Fatal::new(EX_USAGE, format!("cannot read the admin token file {}: {e}", file.display())))?;
        if token.trim().is_empty() {
            return Err(Fatal::new(EX_USAGE, format!("the admin token file {} is empty", file.display())));
        }
    }
    let all = config.admin_listen.iter().map(|&a| (a, admin::Endpoints::All));
    let read_only = config.admin_read_listen.iter().map(|&a| (a, admin::Endpoints::ReadOnly));
    let listeners = all
        .chain(read_only)
        .map(|(addr, endpoints)| Ok((bind_admin(addr)?, endpoints)))
        .collect::<Result<_, Fatal>>()?;
    Ok(AdminListeners { listeners, token_file: config.admin_token_file.clone() })
}

/// `-Z`: the TLS configuration from the `-o ssl_*` files; a bad option or file stops the start.
fn tls_config(config: &Config) -> Result<Option<Arc<Tls>>, Fatal> {
    let usage = |e: String| Fatal::new(EX_USAGE, e);
    let Some(options) = config.tls().map_err(usage)? else {
        return Ok(None);
    };
    let tls = Tls::load(options).map_err(|e| usage(e.to_string()))?;
    info!(cert = %tls.options.chain_cert.display(), "TLS on the client port");
    Ok(Some(tls))
}

fn bind_admin(addr: SocketAddr) -> Result<std::net::TcpListener, Fatal> {
    let cannot = |e: std::io::Error| Fatal::new(EX_OSERR, format!("failed to listen on admin address {addr}: {e}"));
    let listener = std::net::TcpListener::bind(addr).map_err(cannot)?;
    listener.set_nonblocking(true).map_err(cannot)?;
    Ok(listener)
}

/// The users clients log in as (`-S`, `-Y`).
fn auth(config: &Config) -> Result<Option<Auth>, Fatal> {
    let usage = |e: String| Fatal::new(EX_USAGE, e);
    let Some(login) = config.login().map_err(|e| usage(format!("{e:#}")))? else {
        return Ok(None);
    };
    if config.udp_port != 0 {
        return Err(usage("-U cannot be used with -S or -Y: UDP has no connection to log in on".into()));
    }
    Auth::load(&login.file, login.sasl, login.ascii).map(Some).map_err(|e| usage(e.to_string()))
}

fn context(config: &Config, auth: Option<Auth>, tls: Option<Arc<Tls>>) -> Arc<Context> {
    let limit_bytes = (config.memory_mb as usize).saturating_mul(1 << 20);
    let store = Store::new(store::Config { limit_bytes, item_size_max: config.item_size_max });
    let settings = Settings {
        tcp_port: config.port,
        udp_port: config.udp_port,
        interfaces: config.listen.join(","),
        max_connections: config.max_connections,
        threads: config.threads,
        item_size_max: config.item_size_max,
        limit_bytes,
        idle_timeout: config.idle_timeout(),
    };
    Context::new(store, settings, config.verbose, auth, tls)
}

/// Re-reads the auth file whenever it changes: Kubernetes updates a mounted Secret by swapping
/// a symlink, without a signal.
async fn watch_auth_file(ctx: Arc<Context>) {
    let Some(auth) = &ctx.auth else {
        return;
    };
    let mut tick = tokio::time::interval(auth::RELOAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        auth.reload_and_log();
    }
}

/// SIGHUP re-reads the auth file and the TLS files, as memcached's does (and its
/// `refresh_certs`); each reload logs its outcome.
async fn reload_on_hangup(ctx: Arc<Context>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        info!("SIGHUP: reloading the auth file and TLS certificates");
        if let Some(auth) = &ctx.auth {
            auth.reload_and_log();
        }
        if let Some(tls) = ctx.tls.clone() {
            let _ = tokio::task::spawn_blocking(move || tls.refresh()).await;
        }
    }
}

/// Serves until SIGTERM or SIGINT; then a master hands its role over before returning.
async fn serve(
    ctx: Arc<Context>,
    listeners: Listeners,
    admin: AdminListeners,
    replication: Option<replication::Config>,
    shutdown_timeout: Duration,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let shutdown = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = name, "shutting down");
    };
    if let Some(tls) = &ctx.tls {
        tokio::spawn(tls.clone().watch());
    }
    if ctx.auth.is_some() {
        tokio::spawn(watch_auth_file(ctx.clone()));
    }
    tokio::spawn(reload_on_hangup(ctx.clone(), signal(SignalKind::hangup())?));
    // A joining slave opens its client ports only once it holds a complete copy.
    let (repl, ready) = match replication {
        Some(config) => {
            // Replication shares the engine's store and clock, and reports its state where
            // `stats replication` and the admin listener read it.
            let status = ctx.replication.get_or_init(Default::default).clone();
            let (repl, ready) = Replicator::new(config, ctx.store.clone(), ctx.clock.clone(), status)?;
            tokio::spawn(repl.clone().run());
            (Some(repl), Some(ready))
        }
        None => (None, None),
    };
    // Only now: before the replicator exists, `/role` would read "standalone" on a pair member.
    for (listener, endpoints) in admin.listeners {
        info!(addr = %listener.local_addr()?, ?endpoints, "admin listening");
        let (ctx, token_file) = (ctx.clone(), admin.token_file.clone());
        tokio::spawn(async move {
            if let Err(e) = admin::serve(ctx, listener, endpoints, token_file).await {
                error!(error = %e, "admin listener failed");
            }
        });
    }
    // Returns once no client is served any more: nothing written after this was acknowledged.
    server::run(ctx, listeners, ready, shutdown).await?;
    if let Some(repl) = repl {
        repl.hand_over_for_shutdown(shutdown_timeout).await;
    }
    Ok(())
}
