//! `kubectl cachepair`: a kubectl plugin for CachePairs.
//!
//! - [`cli`]: the command line (clap);
//! - [`show`]: `status` as a pure function of the CachePair and its Events;
//! - [`ops`]: the API calls: read, request (merge patches of `spec.switchover`, `spec.reseed`,
//!   `spec.fenced`), wait, logs;
//! - [`report`]: the bug-report bundle;
//! - [`run`]: each command, written to a `Write`.

pub mod cli;
pub mod ops;
pub mod report;
pub mod show;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use k8s_openapi::jiff::Timestamp;
use operator::crd::{CachePair, MemberName};

use cli::{Command, Format, MemberArg, Request, Wait};
use ops::{Ops, new_token};

/// Runs one command against the API server `ops` talks to.
pub async fn run(ops: &Ops, command: Command, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match command {
        Command::Status { pair, output } => {
            let cp = ops.pair(&pair).await?;
            let events = ops.events(&pair).await?;
            let summary = show::summary(&cp, &events);
            match output {
                None => write!(out, "{}", show::render(&summary, Timestamp::now()))?,
                Some(Format::Json) => writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?,
                Some(Format::Yaml) => write!(out, "{}", serde_yaml::to_string(&summary)?)?,
            }
        }
        Command::Switchover { pair, request: Request { token, wait } } => {
            let token = token.unwrap_or_else(new_token);
            ops.request_switchover(&pair, &token).await?;
            writeln!(out, "cachepair/{pair}: switchover requested (token {token})")?;
            if wait.wait {
                let master = ops
                    .wait_for(&pair, "the switchover", wait.timeout, async |cp: &CachePair| {
                        let s = cp.status.as_ref()?;
                        (s.switchover.as_deref() == Some(&token)).then(|| s.master.clone().unwrap_or_default())
                    })
                    .await?;
                writeln!(out, "cachepair/{pair}: switched over; master is {master}")?;
            }
        }
        Command::Reseed { pair, member, request: Request { token, wait } } => {
            let token = token.unwrap_or_else(new_token);
            let pod = member.pod_name(&pair);
            let before = ops.pod_uid(&pod).await?;
            ops.request_reseed(&pair, member.into(), &token).await?;
            writeln!(out, "cachepair/{pair}: re-seed of {pod} requested (token {token})")?;
            if wait.wait {
                reseeded(ops, &pair, &pod, &token, before, &wait).await?;
                writeln!(out, "cachepair/{pair}: {pod} re-created and in sync as slave")?;
            }
        }
        Command::Fence { pair, member, wait } => fence(ops, &pair, member, true, &wait, out).await?,
        Command::Unfence { pair, member, wait } => fence(ops, &pair, member, false, &wait, out).await?,
        Command::Logs { pair, member, previous, tail } => {
            let members: Vec<MemberArg> = member.map_or_else(|| vec![MemberArg::A, MemberArg::B], |m| vec![m]);
            let several = members.len() > 1;
            for m in members {
                let pod = m.pod_name(&pair);
                if several {
                    writeln!(out, "==> {pod} <==")?;
                }
                match ops.logs(&pod, previous, tail).await {
                    Ok(log) => write!(out, "{log}")?,
                    Err(e) if several => writeln!(out, "({e})")?,
                    Err(e) => return Err(e).with_context(|| format!("logs of {pod}")),
                }
            }
        }
        Command::Report { pair, output } => {
            let stamp = Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
            let root = format!("cachepair-report-{pair}-{stamp}");
            let path = output.unwrap_or_else(|| PathBuf::from(format!("{root}.tar.gz")));
            let bundle = report::collect(ops, &pair).await?;
            report::write(&bundle, &root, &path)?;
            writeln!(out, "wrote {} ({} files)", path.display(), bundle.files.len())?;
            for e in &bundle.errors {
                writeln!(out, "  not included: {e}")?;
            }
        }
    }
    Ok(())
}

async fn fence(
    ops: &Ops,
    pair: &str,
    member: MemberArg,
    fence: bool,
    wait: &Wait,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let name: MemberName = member.into();
    let pod = member.pod_name(pair);
    let verb = if fence { "fence" } else { "unfence" };
    if ops.set_fenced(pair, name, fence).await? {
        writeln!(out, "cachepair/{pair}: {verb} of {pod} requested")?;
    } else {
        writeln!(out, "cachepair/{pair}: spec.fenced {} {pod} already", if fence { "names" } else { "does not name" })?;
    }
    if wait.wait {
        let what = format!("{pod}'s readiness gate to be {}", if fence { "False" } else { "True" });
        ops.wait_for(pair, &what, wait.timeout, async |_: &CachePair| {
            let serving = ops.serving(&pod).await.ok().flatten()?;
            (serving != fence).then(String::new)
        })
        .await?;
        let state = if fence { "out of client routing" } else { "back in client routing" };
        writeln!(out, "cachepair/{pair}: {pod} is {state}")?;
    }
    Ok(())
}

/// Waits until the operator acted on the re-seed (`status.reseed`), the member's pod is a new
/// one, and the pair is Ready with it as slave.
async fn reseeded(
    ops: &Ops,
    pair: &str,
    pod: &str,
    token: &str,
    before: Option<String>,
    wait: &Wait,
) -> anyhow::Result<()> {
    let limit = wait.timeout;
    ops.wait_for(pair, "the operator to act on the re-seed", limit, async |cp: &CachePair| {
        (cp.status.as_ref()?.reseed.as_deref() == Some(token)).then(String::new)
    })
    .await?;
    ops.wait_for(pair, &format!("{pod} to be re-created and in sync"), limit, async |cp: &CachePair| {
        let s = cp.status.as_ref()?;
        let ready = s.phase == Some(operator::crd::Phase::Ready) && s.slave.as_deref() == Some(pod);
        if !ready {
            return None;
        }
        let uid = ops.pod_uid(pod).await.ok()??;
        (Some(&uid) != before.as_ref()).then(String::new)
    })
    .await?;
    Ok(())
}
