use std::process::ExitCode;

use clap::Parser;

use cache_node::admin_client;
use cache_node::config::{AdminCommand, Config};

fn main() -> ExitCode {
    let config = Config::parse();
    match &config.command {
        Some(AdminCommand::Switchover { admin }) => admin_client::switchover(*admin),
        Some(AdminCommand::IsMaster { admin }) => admin_client::is_master(*admin),
        None => cache_node::node::run(&config),
    }
}
