use std::process::ExitCode;

use clap::Parser;

use cache_node::admin_client;
use cache_node::config::{Command, Config};

fn main() -> ExitCode {
    let config = Config::parse();
    match &config.command {
        Some(Command::Switchover { admin, token_file }) => admin_client::switchover(*admin, token_file.as_deref()),
        Some(Command::IsMaster { admin }) => admin_client::is_master(*admin),
        Some(Command::Vrrp(args)) => cache_node::vrrp::run(args),
        None => cache_node::node::run(&config),
    }
}
