//! `kubectl-cachepair`: on PATH, `kubectl cachepair …` runs it.

use std::process::ExitCode;

use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use kubectl_cachepair::cli::Cli;
use kubectl_cachepair::ops::Ops;

async fn config(cli: &Cli) -> anyhow::Result<Config> {
    let options = KubeConfigOptions { context: cli.context.clone(), ..Default::default() };
    Ok(match &cli.kubeconfig {
        Some(path) => Config::from_custom_kubeconfig(Kubeconfig::read_from(path)?, &options).await?,
        None if cli.context.is_some() => Config::from_kubeconfig(&options).await?,
        None => Config::infer().await?,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = async {
        let config = config(&cli).await?;
        let namespace = cli.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let ops = Ops { client: Client::try_from(config)?, namespace };
        let mut out = std::io::stdout();
        kubectl_cachepair::run(&ops, cli.command, &mut out).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
