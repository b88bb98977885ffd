//! Command line: memcached's and repcached's flags, so their command lines work unchanged.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// repcached's replication port, used when replication is asked for without -X.
const DEFAULT_REPL_PORT: u16 = 11212;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "cache-node",
    version,
    about = "memcached-compatible cache server with built-in pair replication",
    long_about = "memcached-compatible cache server with built-in pair replication.\n\n\
        Accepts memcached's command line (-p -U -l -m -c -t -v -P -d -u -I), so existing\n\
        memcached and repcached command lines work with the binary renamed.\n\n\
        As memcached, it refuses to run as root unless -u names a user to switch to (or\n\
        --allow-root is given); unlike memcached, it switches only after binding its ports,\n\
        so ports below 1024 work with -u."
)]
pub struct Config {
    /// TCP port to listen on (0 to turn TCP off)
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    pub port: u16,

    /// UDP port to listen on (0, the default, turns UDP off)
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    pub udp_port: u16,

    /// Interface(s) to listen on: comma-separated or repeated; default all
    #[arg(short = 'l', long = "listen", value_delimiter = ',', action = ArgAction::Append)]
    pub listen: Vec<String>,

    /// Bind -l addresses that are not on this host yet (IP_FREEBIND): a virtual IP that VRRP
    /// moves here when this node becomes master, so the node listens on the node address and
    /// the VIP only, instead of every address of the host
    #[arg(long = "freebind")]
    pub freebind: bool,

    /// Item memory in megabytes
    #[arg(short = 'm', long = "memory-limit", default_value_t = 64)]
    pub memory_mb: u64,

    /// Maximum simultaneous connections
    #[arg(short = 'c', long = "conn-limit", default_value_t = 1024)]
    pub max_connections: usize,

    /// Worker threads
    #[arg(short = 't', long = "threads", default_value_t = 4)]
    pub threads: usize,

    /// Verbose logging: -v for errors, warnings and start/stop, -vv also for client
    /// connections and commands (RUST_LOG, if set, overrides)
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count)]
    pub verbose: u8,

    /// Run as a daemon: fork into the background and detach from the terminal (standard
    /// output and error are kept when -v is given, as memcached does)
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// Write the process id to this file (after daemonizing, as the -u user); removed on exit
    #[arg(short = 'P', long = "pidfile", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// When started as root, switch to this user (and its group) once the ports are bound;
    /// ignored when not root
    #[arg(short = 'u', long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// Allow running as root without -u (memcached has no such switch and always refuses)
    #[arg(long = "allow-root")]
    pub allow_root: bool,

    /// Require SASL PLAIN logins on the binary protocol (memcached's -S), against the users of
    /// -Y FILE, or of $MEMCACHED_SASL_PWDB (memcached's password database: user:password lines)
    #[arg(short = 'S', long = "enable-sasl")]
    pub sasl: bool,

    /// Require a login on the text protocol (memcached's -Y): FILE holds user:password lines,
    /// and a client logs in by sending `set <any key> 0 0 <n>` with `<user> <password>` as the
    /// data. With -S too, binary clients log in with SASL against the same users. The file is
    /// re-read when it changes and on SIGHUP
    #[arg(short = 'Y', long = "auth-file", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,

    /// Serve /metrics (Prometheus), /healthz, /readyz, /role, /master and POST /switchover over
    /// HTTP on this address (an IPv6 address may come without brackets: the port follows the
    /// last colon); repeat for several addresses; off by default
    #[arg(long = "admin-listen", value_name = "ADDR:PORT", value_parser = parse_socket_addr, action = ArgAction::Append)]
    pub admin_listen: Vec<SocketAddr>,

    /// Serve only the read-only admin endpoints (/metrics, /healthz, /readyz, /role, /master)
    /// on this address: for probes and scrapers kept apart from /switchover; repeatable
    #[arg(long = "admin-read-listen", value_name = "ADDR:PORT", value_parser = parse_socket_addr, action = ArgAction::Append)]
    pub admin_read_listen: Vec<SocketAddr>,

    /// File holding the bearer token that POST /switchover must present
    /// (`Authorization: Bearer <token>`), read at each request so that a rotated file takes
    /// effect at once. Without it, /switchover is taken from loopback addresses only
    #[arg(long = "admin-token-file", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Largest item, in bytes with an optional k/m suffix (default 1m)
    #[arg(short = 'I', long = "max-item-size", default_value = "1m", value_parser = parse_size)]
    pub item_size_max: usize,

    /// Replication peer (repcached's -x): join it as slave if it answers as master, otherwise
    /// become master; HOST or HOST:PORT (default port: -X)
    #[arg(short = 'x', long = "peer", value_name = "HOST[:PORT]")]
    pub peer: Option<String>,

    /// Replication port (repcached's -X; default 11212), on the first -l address. Replication
    /// is on only when asked for, with -x, -X, --repl-secret-file or --repl-tls-cert: a plain
    /// memcached command line opens no second port. 0 turns it off
    #[arg(short = 'X', long = "repl-port", value_name = "PORT")]
    pub repl_port: Option<u16>,

    /// Replication backlog (repcached's -q): changes kept for a peer that reconnects, in
    /// items of about 1 KiB; a peer further behind takes a full sync
    #[arg(short = 'q', long = "repl-queue", default_value_t = 65536)]
    pub repl_queue: usize,

    /// File holding the replication secret (16 bytes or more) that both nodes share;
    /// without it the pair uses a built-in secret and says so in the log. For rotation it may
    /// hold several, one per line: the first proves this node, any of them is accepted from the
    /// peer. Read again at each new connection to the peer
    #[arg(long = "repl-secret-file", value_name = "FILE")]
    pub repl_secret_file: Option<std::path::PathBuf>,

    /// Mutual TLS on the replication link: this node's certificate chain (PEM), which must
    /// carry --repl-tls-name; with --repl-tls-key and --repl-tls-ca (all three or none). The
    /// files are read again at each new connection to the peer, so a renewed certificate needs
    /// no restart
    #[arg(long = "repl-tls-cert", value_name = "FILE")]
    pub repl_tls_cert: Option<PathBuf>,

    /// The private key of --repl-tls-cert (PEM)
    #[arg(long = "repl-tls-key", value_name = "FILE")]
    pub repl_tls_key: Option<PathBuf>,

    /// The CA (PEM) the peer's certificate must chain to, whichever side connects: the
    /// pair's own CA
    #[arg(long = "repl-tls-ca", value_name = "FILE")]
    pub repl_tls_ca: Option<PathBuf>,

    /// The DNS name the certificate of the node accepting the link must carry (as a
    /// subjectAltName) [default: cachepair-replication]
    #[arg(long = "repl-tls-name", value_name = "NAME")]
    pub repl_tls_name: Option<String>,

    /// With --repl-tls-*, also link in plaintext with a peer that has no TLS: for moving a
    /// running pair to TLS (or off it) one member at a time. TLS whenever the peer speaks it;
    /// the shared secret still authenticates a plaintext link
    #[arg(long = "repl-tls-allow-plaintext", requires = "repl_tls_cert")]
    pub repl_tls_allow_plaintext: bool,

    /// Heartbeat interval on the replication link, in milliseconds
    #[arg(long = "repl-heartbeat-ms", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub repl_heartbeat_ms: u64,

    /// Replication mode: `async` acknowledges writes at once; `sync` only once the peer
    /// applied them (see --repl-sync-timeout-ms for what happens when it does not)
    #[arg(long = "repl-mode", value_enum, default_value_t = ReplMode::Async)]
    pub repl_mode: ReplMode,

    /// In sync mode, how long a write waits for the peer before it is acknowledged anyway
    /// (counted as sync_degraded in `stats replication`, and logged)
    #[arg(long = "repl-sync-timeout-ms", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub repl_sync_timeout_ms: u64,

    /// Open the client ports at once, even while joining a master (by default a joining
    /// slave serves clients only once it holds the master's full copy)
    #[arg(long = "serve-while-syncing")]
    pub serve_while_syncing: bool,

    /// On SIGTERM or SIGINT, how long a master may take to hand everything it acknowledged and
    /// its role over to its slave before it exits anyway, in seconds (0: exit at once). Client
    /// ports close first; a slave, or a node without a peer, exits at once.
    #[arg(long = "shutdown-timeout", value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_timeout: u64,

    /// Instead of serving: a command for a running node, or the VRRP sidecar
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Missed heartbeats after which the peer counts as dead (the slave then promotes itself)
    #[arg(long = "repl-misses", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repl_misses: u32,

    /// Serve clients over TLS only (memcached's -Z): needs -o ssl_chain_cert and ssl_key.
    /// The certificate is reloaded on SIGHUP, on the `refresh_certs` command, and when its
    /// files change. Not with -U: UDP cannot be encrypted
    #[arg(short = 'Z', long = "enable-ssl")]
    pub enable_ssl: bool,

    /// memcached's extended options, comma-separated or repeated. Supported:
    /// idle_timeout=SECONDS closes a client connection that sent no command for that long
    /// (0, the default: never); with -Z, ssl_chain_cert=FILE and ssl_key=FILE (PEM, both
    /// required), ssl_ca_cert=FILE (PEM, the CAs of client certificates), ssl_verify_mode=N
    /// (0 none, the default; 1 request a client certificate; 2 require one; 3 once, as 2)
    /// and ssl_min_version=N (2 TLS 1.2, the default; 3 TLS 1.3)
    #[arg(short = 'o', long = "extended", value_name = "OPTION", value_delimiter = ',', action = ArgAction::Append, value_parser = parse_extended)]
    pub extended: Vec<Extended>,
}

/// One `-o` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extended {
    IdleTimeout(u64),
    SslChainCert(PathBuf),
    SslKey(PathBuf),
    SslCaCert(PathBuf),
    SslVerifyMode(VerifyMode),
    SslMinVersion(TlsVersion),
}

/// memcached's `ssl_verify_mode`: whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    None,
    /// Asked for; a client without one is served, one with a bad one is refused.
    Request,
    Require,
    /// OpenSSL's "verify on the first handshake only": the same as Require here, since
    /// renegotiation (the only later handshake) is off.
    Once,
}

impl VerifyMode {
    /// The OpenSSL flags memcached reports in `stats settings` for this mode.
    pub fn openssl_flags(self) -> u8 {
        match self {
            VerifyMode::None => 0,
            VerifyMode::Request => 1,
            VerifyMode::Require => 3,
            VerifyMode::Once => 5,
        }
    }
}

/// memcached's `ssl_min_version`, of the versions rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// memcached's name for it in `stats settings`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "tlsv1.2",
            TlsVersion::Tls13 => "tlsv1.3",
        }
    }
}

/// memcached's TLS options that tune OpenSSL itself, which cache-node (rustls) has no use for.
const OPENSSL_OPTIONS: &[&str] =
    &["ssl_keyformat", "ssl_ciphers", "ssl_wbuf_size", "ssl_session_cache", "ssl_kernel_tls"];

fn parse_extended(s: &str) -> Result<Extended, String> {
    let (key, value) = s.split_once('=').unwrap_or((s, ""));
    let value = value.trim();
    let path = || {
        if value.is_empty() { Err(format!("{key} takes a file name")) } else { Ok(PathBuf::from(value)) }
    };
    match key.trim() {
        "idle_timeout" => {
            let secs = value.parse().map_err(|_| format!("idle_timeout takes a number of seconds, not {value:?}"))?;
            Ok(Extended::IdleTimeout(secs))
        }
        "ssl_chain_cert" => Ok(Extended::SslChainCert(path()?)),
        "ssl_key" => Ok(Extended::SslKey(path()?)),
        "ssl_ca_cert" => Ok(Extended::SslCaCert(path()?)),
        "ssl_verify_mode" => match value {
            "0" => Ok(Extended::SslVerifyMode(VerifyMode::None)),
            "1" => Ok(Extended::SslVerifyMode(VerifyMode::Request)),
            "2" => Ok(Extended::SslVerifyMode(VerifyMode::Require)),
            "3" => Ok(Extended::SslVerifyMode(VerifyMode::Once)),
            _ => Err(format!("ssl_verify_mode takes 0 (none), 1 (request), 2 (require) or 3 (once), not {value:?}")),
        },
        "ssl_min_version" => match value {
            "2" => Ok(Extended::SslMinVersion(TlsVersion::Tls12)),
            "3" => Ok(Extended::SslMinVersion(TlsVersion::Tls13)),
            "0" | "1" => Err(format!("ssl_min_version={value}: cache-node speaks TLS 1.2 and 1.3 only (2 or 3)")),
            _ => Err(format!("ssl_min_version takes 2 (tlsv1.2) or 3 (tlsv1.3), not {value:?}")),
        },
        other if OPENSSL_OPTIONS.contains(&other) => {
            Err(format!("{other} tunes OpenSSL, which cache-node does not use (its TLS is rustls)"))
        }
        other => Err(format!(
            "unknown option {other:?} (cache-node supports idle_timeout=SECONDS, ssl_chain_cert, ssl_key, \
             ssl_ca_cert, ssl_verify_mode and ssl_min_version)"
        )),
    }
}

/// `-Z` with its `-o ssl_*` options, checked for consistency (the files are read later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub chain_cert: PathBuf,
    pub key: PathBuf,
    pub ca_cert: Option<PathBuf>,
    pub verify_mode: VerifyMode,
    pub min_version: TlsVersion,
}

/// `--repl-tls-*`, checked for consistency (the files are read later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplTlsOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// What the accepting node's certificate must name.
    pub name: String,
    /// Link in plaintext with a peer without TLS (`--repl-tls-allow-plaintext`).
    pub allow_plaintext: bool,
}

/// The name both members' replication certificates carry unless `--repl-tls-name` says otherwise.
pub const DEFAULT_REPL_TLS_NAME: &str = "cachepair-replication";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplMode {
    Async,
    Sync,
}

/// What cache-node can do instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Planned switchover: the master hands its role to the slave with no write lost
    Switchover {
        /// The master's admin listener (its --admin-listen)
        #[arg(long = "admin", value_name = "ADDR:PORT")]
        admin: SocketAddr,
        /// The node's --admin-token-file, when it has one
        #[arg(long = "token-file", value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Exits 0 if the node at this admin listener is master, 1 if not, 2 if it cannot be
    /// reached: a check for keepalived's vrrp_script, so the virtual IP follows the master
    IsMaster {
        /// The node's admin listener (its --admin-listen)
        #[arg(long = "admin", value_name = "ADDR:PORT")]
        admin: SocketAddr,
    },
    /// VRRP sidecar for bare-metal hostNetwork: holds a virtual IP where the cache is master,
    /// configured by a keepalived.conf, and speaks VRRP with keepalived on the wire
    Vrrp(crate::vrrp::Args),
}

/// Who logs in how: see [`Config::login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub file: PathBuf,
    /// SASL PLAIN on the binary protocol.
    pub sasl: bool,
    /// The login token on the text protocol.
    pub ascii: bool,
}

/// memcached's environment variable for its SASL password database.
pub const SASL_PWDB_ENV: &str = "MEMCACHED_SASL_PWDB";

impl Config {
    /// The users file and the protocols that log in against it: `-Y` turns on the text
    /// protocol's login, `-S` SASL, whose users come from `-Y` or else `$MEMCACHED_SASL_PWDB`.
    /// `None` when neither is given; an error for `-S` with no users file.
    pub fn login(&self) -> anyhow::Result<Option<Login>> {
        let pwdb = || std::env::var_os(SASL_PWDB_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        match (&self.auth_file, self.sasl) {
            (None, false) => Ok(None),
            (Some(file), sasl) => Ok(Some(Login { file: file.clone(), sasl, ascii: true })),
            (None, true) => match pwdb() {
                Some(file) => Ok(Some(Login { file, sasl: true, ascii: false })),
                None => anyhow::bail!(
                    "-S needs its users in a file: -Y FILE or {SASL_PWDB_ENV}=FILE (user:password lines; \
                     cache-node has no Cyrus SASL database)"
                ),
            },
        }
    }

    /// `-o idle_timeout`, when on.
    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        let secs = self.last(|o| match o {
            Extended::IdleTimeout(secs) => Some(*secs),
            _ => None,
        })?;
        (secs > 0).then(|| std::time::Duration::from_secs(secs))
    }

    /// `-Z` and its options; `None` without `-Z` (the `ssl_*` options alone are ignored, as
    /// memcached ignores them).
    pub fn tls(&self) -> Result<Option<TlsOptions>, String> {
        if !self.enable_ssl {
            return Ok(None);
        }
        // memcached would serve UDP in the clear next to a TLS port: refused instead.
        if self.udp_port != 0 {
            return Err("-Z cannot be used with -U: UDP cannot be encrypted with TLS (use -U 0)".into());
        }
        let chain_cert = self
            .last(|o| if let Extended::SslChainCert(p) = o { Some(p.clone()) } else { None })
            .ok_or("-Z needs -o ssl_chain_cert=FILE (the server's certificate chain, PEM)")?;
        let key = self
            .last(|o| if let Extended::SslKey(p) = o { Some(p.clone()) } else { None })
            .ok_or("-Z needs -o ssl_key=FILE (the server's private key, PEM)")?;
        let ca_cert = self.last(|o| if let Extended::SslCaCert(p) = o { Some(p.clone()) } else { None });
        let verify_mode =
            self.last(|o| if let Extended::SslVerifyMode(m) = o { Some(*m) } else { None }).unwrap_or(VerifyMode::None);
        if verify_mode != VerifyMode::None && ca_cert.is_none() {
            return Err(format!(
                "ssl_verify_mode={} checks client certificates: it needs -o ssl_ca_cert=FILE (the CAs that sign them, PEM)",
                verify_mode as u8
            ));
        }
        let min_version = self
            .last(|o| if let Extended::SslMinVersion(v) = o { Some(*v) } else { None })
            .unwrap_or(TlsVersion::Tls12);
        Ok(Some(TlsOptions { chain_cert, key, ca_cert, verify_mode, min_version }))
    }

    /// `--repl-tls-*`: `None` without them; an error unless the three files come together.
    pub fn repl_tls(&self) -> Result<Option<ReplTlsOptions>, String> {
        let name = self.repl_tls_name.clone().unwrap_or_else(|| DEFAULT_REPL_TLS_NAME.into());
        rustls::pki_types::ServerName::try_from(name.as_str())
            .map_err(|_| format!("--repl-tls-name {name:?} is not a DNS name or an IP address"))?;
        match (&self.repl_tls_cert, &self.repl_tls_key, &self.repl_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                let allow_plaintext = self.repl_tls_allow_plaintext;
                Ok(Some(ReplTlsOptions { cert: cert.clone(), key: key.clone(), ca: ca.clone(), name, allow_plaintext }))
            }
            (None, None, None) if self.repl_tls_name.is_none() => Ok(None),
            _ => Err("mutual TLS on the replication link needs all of --repl-tls-cert, --repl-tls-key and \
                      --repl-tls-ca (--repl-tls-name is optional)"
                .into()),
        }
    }

    /// The last `-o` option `pick` takes: a later one overrides an earlier one.
    fn last<T>(&self, pick: impl Fn(&Extended) -> Option<T>) -> Option<T> {
        self.extended.iter().rev().find_map(pick)
    }

    /// The TCP addresses to bind: each `-l` interface (default: all) on `-p`; none for `-p 0`.
    pub fn tcp_addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        self.addrs(self.port)
    }

    /// Where this node listens for its peer when master: `-X` on the first `-l` address;
    /// `None` when replication was not asked for (no `-x`, `-X`, secret file or replication
    /// certificate) or is off.
    pub fn repl_listen(&self) -> anyhow::Result<Option<SocketAddr>> {
        let asked = self.peer.is_some()
            || self.repl_port.is_some()
            || self.repl_secret_file.is_some()
            || self.repl_tls_cert.is_some();
        if !asked {
            return Ok(None);
        }
        Ok(self.addrs(self.repl_port())?.into_iter().next())
    }

    fn repl_port(&self) -> u16 {
        self.repl_port.unwrap_or(DEFAULT_REPL_PORT)
    }

    /// The peer's replication address: `-x` with `-X` as the default port.
    pub fn repl_peer(&self) -> Option<String> {
        let peer = self.peer.as_deref()?.trim();
        let has_port = peer.parse::<SocketAddr>().is_ok() || (peer.matches(':').count() == 1);
        Some(if has_port {
            peer.to_string()
        } else if peer.contains(':') {
            format!("[{}]:{}", peer.trim_start_matches('[').trim_end_matches(']'), self.repl_port())
        } else {
            format!("{peer}:{}", self.repl_port())
        })
    }

    /// The UDP addresses to bind: each `-l` interface on `-U`; none for `-U 0`.
    pub fn udp_addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        self.addrs(self.udp_port)
    }

    fn addrs(&self, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
        if port == 0 {
            return Ok(Vec::new());
        }
        if self.listen.is_empty() {
            return Ok(vec![SocketAddr::from(([0, 0, 0, 0], port))]);
        }
        let mut addrs = Vec::new();
        for spec in &self.listen {
            addrs.extend(resolve(spec, port)?);
        }
        Ok(addrs)
    }
}

/// One `-l` value: an IP, `[v6]`, a host name, optionally with `:port`.
fn resolve(spec: &str, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
    let spec = spec.trim();
    if let Ok(ip) = spec.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let with_port = if spec.contains(':') { spec.to_string() } else { format!("{spec}:{port}") };
    let addrs: Vec<_> =
        with_port.to_socket_addrs().map_err(|e| anyhow::anyhow!("cannot resolve -l {spec}: {e}"))?.collect();
    anyhow::ensure!(!addrs.is_empty(), "-l {spec} resolves to no address");
    Ok(addrs)
}

/// `ADDR:PORT`, also with an unbracketed IPv6 address (as `$(POD_IP):9150` expands to).
fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let bad = || format!("{s:?} is not ADDR:PORT");
    let (ip, port) = s.rsplit_once(':').ok_or_else(bad)?;
    Ok(SocketAddr::new(ip.parse().map_err(|_| bad())?, port.parse().map_err(|_| bad())?))
}

/// Sizes as memcached's -I takes them: bytes, or a number with k or m.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    let n: usize = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let size = n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))?;
    // memcached's bounds: at least 1 KiB, at most 1 GiB.
    if !(1024..=1 << 30).contains(&size) {
        return Err(format!("item size {s:?} must be between 1k and 1024m"));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_command_line_parses() {
        let c = Config::try_parse_from(["cache-node", "-p", "11211", "-m", "1024", "-c", "4096", "-t", "4", "-vv"])
            .unwrap();
        assert_eq!((c.port, c.memory_mb, c.max_connections, c.threads, c.verbose), (11211, 1024, 4096, 4, 2));
    }

    #[test]
    fn seed_daemon_command_line_parses() {
        let c = Config::try_parse_from(
            "cache-node -d -p 11211 -u memcached -m 1024 -c 4096 -t 4 -P /var/run/memcached/memcached.pid -v"
                .split(' '),
        )
        .unwrap();
        assert!(c.daemon && !c.allow_root);
        assert_eq!(c.user.as_deref(), Some("memcached"));
        assert_eq!(c.pidfile, Some(PathBuf::from("/var/run/memcached/memcached.pid")));
        assert_eq!((c.verbose, c.udp_port), (1, 0));
        assert!(c.udp_addrs().unwrap().is_empty());
    }

    #[test]
    fn replication_listens_only_when_asked_for() {
        let listen = |args: &str| {
            let c = Config::try_parse_from(format!("cache-node -l 127.0.0.1 {args}").split_whitespace()).unwrap();
            c.repl_listen().unwrap().map(|a| a.to_string())
        };
        assert_eq!(listen("-p 11211"), None, "a plain memcached command line");
        assert_eq!(listen("-x 10.0.0.2").as_deref(), Some("127.0.0.1:11212"));
        assert_eq!(listen("-X 11300").as_deref(), Some("127.0.0.1:11300"));
        assert_eq!(listen("--repl-secret-file /s").as_deref(), Some("127.0.0.1:11212"));
        assert_eq!(listen("-x 10.0.0.2 -X 0"), None, "-X 0 turns it off");
        let c = Config::try_parse_from(["cache-node", "-x", "10.0.0.2"]).unwrap();
        assert_eq!(c.repl_peer().as_deref(), Some("10.0.0.2:11212"));
    }

    #[test]
    fn udp_uses_the_same_interfaces() {
        let c = Config::try_parse_from(["cache-node", "-p", "1", "-U", "2", "-l", "127.0.0.1,127.0.0.2"]).unwrap();
        let addrs: Vec<String> = c.udp_addrs().unwrap().iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:2", "127.0.0.2:2"]);
    }

    #[test]
    fn the_admin_address_may_be_an_unbracketed_ipv6_address() {
        let parse = |a: &str| Config::try_parse_from(["cache-node", "--admin-listen", a]).map(|c| c.admin_listen);
        assert_eq!(parse("10.1.2.3:9150").unwrap(), ["10.1.2.3:9150".parse().unwrap()]);
        assert_eq!(parse("[fd00::5]:9150").unwrap(), ["[fd00::5]:9150".parse().unwrap()]);
        assert_eq!(parse("fd00::5:9150").unwrap(), ["[fd00::5]:9150".parse().unwrap()]);
        assert!(parse("fd00::5").is_err());
        assert!(parse("host:x").is_err());
    }

    #[test]
    fn listen_takes_several_addresses() {
        let c = Config::try_parse_from(["cache-node", "-p", "1", "-l", "127.0.0.1,::1", "-l", "127.0.0.2"]).unwrap();
        let addrs: Vec<String> = c.tcp_addrs().unwrap().iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.1:1", "[::1]:1", "127.0.0.2:1"]);
    }

    #[test]
    fn extended_options_follow_memcached() {
        let idle = |args: &str| {
            Config::try_parse_from(format!("cache-node {args}").split_whitespace()).map(|c| c.idle_timeout())
        };
        assert_eq!(idle("").unwrap(), None);
        assert_eq!(idle("-o idle_timeout=30").unwrap(), Some(std::time::Duration::from_secs(30)));
        assert_eq!(idle("-o idle_timeout=0").unwrap(), None);
        assert_eq!(idle("-o idle_timeout=5 -o idle_timeout=7").unwrap(), Some(std::time::Duration::from_secs(7)));
        let err = idle("-o modern").unwrap_err().to_string();
        assert!(err.contains("unknown option \"modern\""), "{err}");
        assert!(idle("-o idle_timeout=x").is_err());
    }

    #[test]
    fn logins_follow_memcached_flags() {
        let login = |args: &str| {
            Config::try_parse_from(format!("cache-node {args}").split_whitespace()).unwrap().login().unwrap()
        };
        assert_eq!(login(""), None);
        let users = PathBuf::from("/etc/users");
        assert_eq!(login("-Y /etc/users"), Some(Login { file: users.clone(), sasl: false, ascii: true }));
        assert_eq!(login("-S -Y /etc/users"), Some(Login { file: users, sasl: true, ascii: true }));
    }

    #[test]
    fn tls_options_follow_memcached() {
        let tls = |args: &str| {
            Config::try_parse_from(format!("cache-node {args}").split_whitespace())
                .map_err(|e| e.to_string())
                .and_then(|c| c.tls())
        };
        let files = "-o ssl_chain_cert=/c.pem,ssl_key=/k.pem";
        assert_eq!(tls(files).unwrap(), None, "the options alone do nothing, as in memcached");
        let t = tls(&format!("-Z {files}")).unwrap().unwrap();
        assert_eq!((t.chain_cert.to_str(), t.key.to_str(), t.ca_cert), (Some("/c.pem"), Some("/k.pem"), None));
        assert_eq!((t.verify_mode, t.min_version), (VerifyMode::None, TlsVersion::Tls12));
        let t = tls(&format!("--enable-ssl {files} -o ssl_ca_cert=/ca.pem,ssl_verify_mode=2,ssl_min_version=3"))
            .unwrap()
            .unwrap();
        assert_eq!(t.ca_cert.as_deref(), Some(std::path::Path::new("/ca.pem")));
        assert_eq!((t.verify_mode, t.min_version), (VerifyMode::Require, TlsVersion::Tls13));
        assert_eq!(t.verify_mode.openssl_flags(), 3, "as memcached reports it");
        // A later option overrides an earlier one, and idle_timeout mixes in.
        let t = tls(&format!("-Z {files} -o ssl_key=/k2.pem,idle_timeout=5")).unwrap().unwrap();
        assert_eq!(t.key.to_str(), Some("/k2.pem"));
    }

    #[test]
    fn tls_refuses_what_it_cannot_do() {
        let err = |args: &str| match Config::try_parse_from(format!("cache-node {args}").split_whitespace())
            .map(|c| c.tls())
        {
            Ok(Ok(t)) => panic!("{args}: accepted as {t:?}"),
            Ok(Err(e)) => e,
            Err(e) => e.to_string(),
        };
        assert!(err("-Z").contains("ssl_chain_cert"));
        assert!(err("-Z -o ssl_chain_cert=/c").contains("ssl_key"));
        assert!(err("-Z -o ssl_chain_cert=,ssl_key=/k").contains("takes a file name"));
        let files = "-o ssl_chain_cert=/c,ssl_key=/k";
        assert!(err(&format!("-Z {files} -o ssl_verify_mode=1")).contains("needs -o ssl_ca_cert"));
        assert!(err(&format!("-Z {files} -o ssl_verify_mode=3")).contains("needs -o ssl_ca_cert"));
        assert!(err(&format!("-Z {files} -o ssl_verify_mode=4")).contains("takes 0 (none)"));
        assert!(err(&format!("-Z {files} -o ssl_min_version=1")).contains("TLS 1.2 and 1.3 only"));
        assert!(err(&format!("-Z {files} -o ssl_min_version=tls")).contains("not \"tls\""));
        assert!(err(&format!("-Z {files} -o ssl_ciphers=HIGH")).contains("rustls"));
        assert!(err(&format!("-Z {files} -U 11211")).contains("UDP"));
        assert!(err("-Z -o ssl_bogus=1").contains("unknown option \"ssl_bogus\""));
    }

    #[test]
    fn replication_tls_takes_all_three_files_or_none() {
        let tls = |args: &str| {
            Config::try_parse_from(format!("cache-node -x 10.0.0.2 {args}").split_whitespace()).unwrap().repl_tls()
        };
        assert_eq!(tls(""), Ok(None));
        let files = "--repl-tls-cert /c.pem --repl-tls-key /k.pem --repl-tls-ca /ca.pem";
        let t = tls(files).unwrap().unwrap();
        assert_eq!((t.cert.to_str(), t.key.to_str(), t.ca.to_str()), (Some("/c.pem"), Some("/k.pem"), Some("/ca.pem")));
        assert_eq!(t.name, "cachepair-replication");
        assert_eq!(tls(&format!("{files} --repl-tls-name pair-7.example")).unwrap().unwrap().name, "pair-7.example");
        for partial in [
            "--repl-tls-cert /c.pem",
            "--repl-tls-cert /c.pem --repl-tls-key /k.pem",
            "--repl-tls-ca /ca.pem",
            "--repl-tls-name x",
        ] {
            let err = tls(partial).unwrap_err();
            assert!(err.contains("all of --repl-tls-cert, --repl-tls-key and --repl-tls-ca"), "{partial}: {err}");
        }
        assert!(tls(&format!("{files} --repl-tls-name bad/name")).unwrap_err().contains("not a DNS name"));
        // The certificate alone asks for replication, as the secret file does.
        let c = Config::try_parse_from(format!("cache-node -l 127.0.0.1 {files}").split_whitespace()).unwrap();
        assert_eq!(c.repl_listen().unwrap().map(|a| a.to_string()).as_deref(), Some("127.0.0.1:11212"));
    }

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("2048"), Ok(2048));
        assert!(parse_size("1").is_err());
        assert!(parse_size("2g").is_err());
    }
}
