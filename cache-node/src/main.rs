use std::process::ExitCode;

use clap::Parser;

use cache_node::config::Config;

fn main() -> ExitCode {
    cache_node::node::run(&Config::parse())
}
