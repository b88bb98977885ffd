use clap::Parser;

use cache_node::config::Config;
use cache_node::engine::{Context, Settings};
use cache_node::server;
use cache_node::store::{self, Store};

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    init_logging(config.verbose);
    let addrs = if config.port == 0 { Vec::new() } else { config.tcp_addrs()? };
    let listeners = server::bind_all(&addrs)?;

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
    };
    let ctx = Context::new(store, settings, config.verbose);

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(config.threads.max(1)).enable_all().build()?;
    runtime.block_on(server::run(ctx, listeners))
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
