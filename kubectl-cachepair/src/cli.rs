//! The command line: `kubectl cachepair <command> <pair> …`, with kubectl's `-n/--namespace`,
//! `--kubeconfig` and `--context`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use operator::crd::MemberName;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-cachepair",
    bin_name = "kubectl cachepair",
    version,
    about = "Inspect and operate CachePairs: status, switchover, reseed, fence, logs, bug reports"
)]
pub struct Cli {
    /// The pair's namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug, PartialEq)]
pub enum Command {
    /// Phase, roles, replication offset and lag, failovers, conditions and recent Events.
    Status {
        pair: String,
        /// Output format: the text summary by default.
        #[arg(short, long, value_enum)]
        output: Option<Format>,
    },
    /// Hands the master role to the slave with no write lost (`spec.switchover`).
    Switchover {
        pair: String,
        #[command(flatten)]
        request: Request,
    },
    /// Re-creates a member from scratch as a slave with a full sync (`spec.reseed`); a master
    /// switches over first.
    Reseed {
        pair: String,
        member: MemberArg,
        #[command(flatten)]
        request: Request,
    },
    /// Takes a member out of client routing (`spec.fenced`); a master switches over first.
    Fence {
        pair: String,
        member: MemberArg,
        #[command(flatten)]
        wait: Wait,
    },
    /// Brings a fenced member back into client routing.
    Unfence {
        pair: String,
        member: MemberArg,
        #[command(flatten)]
        wait: Wait,
    },
    /// The members' cache-node logs (both unless one is named).
    Logs {
        pair: String,
        member: Option<MemberArg>,
        /// The previous container's logs.
        #[arg(short, long)]
        previous: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<i64>,
    },
    /// Writes a bug-report bundle (.tar.gz): the pair, its pods, Services, EndpointSlices,
    /// Events, logs and the members' metrics. Never any Secret.
    Report {
        pair: String,
        /// Where to write it (default: cachepair-report-<pair>-<time>.tar.gz).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args, Debug, PartialEq)]
pub struct Request {
    /// The request's token (default: a new one from the clock).
    #[arg(long)]
    pub token: Option<String>,
    #[command(flatten)]
    pub wait: Wait,
}

#[derive(Args, Debug, PartialEq)]
pub struct Wait {
    /// Wait until the operator has carried the request out.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits: `90`, `90s`, `2m`.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// A member by its suffix.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberArg {
    A,
    B,
}

impl From<MemberArg> for MemberName {
    fn from(m: MemberArg) -> MemberName {
        match m {
            MemberArg::A => MemberName::A,
            MemberArg::B => MemberName::B,
        }
    }
}

impl MemberArg {
    /// The member's pod in `pair` (the operator's naming).
    pub fn pod_name(self, pair: &str) -> String {
        operator::pair::Member::from(MemberName::from(self)).pod_name(pair)
    }
}

/// `90`, `90s`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = digits.parse().map_err(|_| format!("not a duration: {s:?} (e.g. 90s, 2m)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("unknown unit in {s:?}: s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("kubectl-cachepair").chain(args.iter().copied())).expect("valid arguments")
    }

    #[test]
    fn commands_parse_with_kubectls_namespace_flag_anywhere() {
        let cli = parse(&["-n", "shop", "status", "demo", "-o", "yaml"]);
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.command, Command::Status { pair: "demo".into(), output: Some(Format::Yaml) });
        let cli = parse(&["switchover", "demo", "--wait", "--timeout", "2m", "--namespace", "shop"]);
        assert_eq!(cli.namespace.as_deref(), Some("shop"));
        let Command::Switchover { pair, request } = cli.command else { panic!("a switchover") };
        assert_eq!((pair.as_str(), request.wait.wait, request.wait.timeout), ("demo", true, Duration::from_secs(120)));
        let cli = parse(&["reseed", "demo", "b", "--token", "t7"]);
        let Command::Reseed { member, request, .. } = cli.command else { panic!("a reseed") };
        assert_eq!((member, request.token.as_deref(), request.wait.wait), (MemberArg::B, Some("t7"), false));
        assert!(matches!(parse(&["fence", "demo", "a"]).command, Command::Fence { member: MemberArg::A, .. }));
        assert_eq!(
            parse(&["logs", "demo", "--previous", "--tail", "50"]).command,
            Command::Logs { pair: "demo".into(), member: None, previous: true, tail: Some(50) }
        );
        let Command::Report { output, .. } = parse(&["report", "demo", "-o", "x.tar.gz"]).command else {
            panic!("a report")
        };
        assert_eq!(output, Some(PathBuf::from("x.tar.gz")));
    }

    #[test]
    fn bad_arguments_are_refused() {
        for args in [&["fence", "demo", "c"][..], &["status"], &["status", "demo", "-o", "xml"], &["frobnicate"]] {
            let argv = std::iter::once("kubectl-cachepair").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?}");
        }
    }

    #[test]
    fn durations_take_kubectls_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("s").is_err());
    }
}
