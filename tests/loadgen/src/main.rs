//! `loadgen`: a memcached text-protocol load generator for CachePair's
//! side-by-side benchmarks (cache-node vs memcached).
//!
//! Two modes:
//! - `loadgen [run] ...`: a mixed get/set workload over a fixed key space for a
//!   fixed time, closed loop (each connection keeps `--pipeline` requests in
//!   flight) or open loop at a fixed `--rate`; reports throughput and latency
//!   percentiles (HdrHistogram).
//! - `loadgen fill ...`: stores N distinct items as fast as possible
//!   (pipelined) and reads a random sample back.
//!
//! Every reply is checked (key, flags, length and content of values); any
//! unexpected reply counts as an error and makes the exit status non-zero
//! unless `--allow-errors` is given.

mod conn;
mod proto;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use tokio::task::JoinSet;

use conn::{Conn, Endpoint};
use proto::{Codec, Op, Outcome};
use stats::{Rng, Stats};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "memcached text-protocol load generator (throughput, latency percentiles, fill)",
    long_about = "memcached text-protocol load generator for CachePair's benchmarks.\n\n\
        Without a subcommand (or with `run`) it drives a get/set mix against one server and \
        reports ops/s and latency percentiles. `fill` stores N distinct items and verifies \
        a sample. Keys are `key:%08d`; the value of a key starts with its digits followed by a \
        fixed pattern, and every reply is checked against it.\n\n\
        Only loopback servers are accepted unless --allow-remote is given.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the get/set benchmark (the default when no subcommand is given).
    Run(RunArgs),
    /// Store N distinct items as fast as possible (pipelined), then verify a sample reads back.
    Fill(FillArgs),
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:11211")]
    server: String,
    /// Tokio worker threads. 1 uses a single-threaded runtime. The default of 2 matches a
    /// 2-core box: it can just about keep two server threads (`-t 2`) busy at pipeline 1,
    /// which a single load thread cannot; use 1 to leave more CPU to the server.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print one JSON object on stdout instead of the human-readable report.
    #[arg(long)]
    json: bool,
    /// Exit 0 even if unexpected replies or connection errors occurred.
    #[arg(long)]
    allow_errors: bool,
    /// Allow a server address that is not loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Connect over TLS, trusting the server certificates this CA (PEM) signed; the server's
    /// certificate must name its IP address.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<std::path::PathBuf>,
    /// Seed of the key/operation random generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// Requests in flight per connection: write N requests, then read N replies.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Fraction of requests that are gets (the rest are sets).
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,
    /// Size of the key space (keys key:00000000 .. key:<keys-1>, chosen uniformly).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Value size in bytes for sets.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Measured duration (e.g. 10s, 500ms, 2m; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up time before measuring (load runs, nothing is recorded).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Set every key once before the warm-up so that gets hit.
    #[arg(long)]
    prefill: bool,
    /// Open loop: total target rate in ops/s spread evenly over the connections (batches of
    /// --pipeline). Latency is measured from each batch's scheduled send time when the
    /// generator is behind schedule, so server stalls are not hidden (no coordinated omission).
    /// Pacing uses tokio's 1 ms timer: batches due within the same millisecond go out together.
    #[arg(long)]
    rate: Option<f64>,
    /// Gets as the meta command `mg <key> k v` (the read path meta and binary clients take)
    /// instead of `get <key>`.
    #[arg(long)]
    meta_gets: bool,
}

#[derive(Args, Debug, Clone)]
struct FillArgs {
    #[command(flatten)]
    common: Common,
    /// Number of distinct items to store (keys key:00000000 .. key:<items-1>).
    #[arg(long, default_value_t = 1_000_000)]
    items: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Sets in flight per connection.
    #[arg(long, default_value_t = 64)]
    pipeline: usize,
    /// Number of random items read back and checked after the fill (0 disables). A miss counts
    /// as an error.
    #[arg(long, default_value_t = 1000)]
    verify: u64,
    /// Give up after this long (e.g. 300s).
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("invalid duration {s:?} (use e.g. 10s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 || v * mul > 86_400.0 {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

async fn resolve(c: &Common) -> Result<Endpoint> {
    let addr = tokio::net::lookup_host(&c.server)
        .await
        .with_context(|| format!("resolve {}", c.server))?
        .next()
        .with_context(|| format!("{} resolves to no address", c.server))?;
    if !addr.ip().is_loopback() && !c.allow_remote {
        bail!("{addr} is not a loopback address (pass --allow-remote to allow it)");
    }
    Endpoint::new(addr, c.tls_ca.as_deref())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cmd = cli.cmd.unwrap_or(Cmd::Run(cli.run));
    let common = match &cmd {
        Cmd::Run(a) => a.common.clone(),
        Cmd::Fill(a) => a.common.clone(),
    };
    let rt = if common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(common.threads).enable_all().build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let res = rt.block_on(async {
        match cmd {
            Cmd::Run(a) => run(a).await,
            Cmd::Fill(a) => fill(a).await,
        }
    });
    match res {
        Ok(errors) if errors > 0 && !common.allow_errors => {
            eprintln!("loadgen: {errors} errors");
            ExitCode::from(1)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Extra time connections get after the end of a phase before they are abandoned.
const GRACE: Duration = Duration::from_secs(10);

/// Joins all tasks, abandoning those still running at `deadline` (each counts as an error).
async fn join_all(mut set: JoinSet<Stats>, deadline: Instant, total: &mut Stats) {
    let deadline = tokio::time::Instant::from_std(deadline);
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok(s))) => total.merge(&s),
            Ok(Some(Err(e))) => total.error(format!("connection task failed: {e}")),
            Err(_) => {
                let n = set.len();
                set.abort_all();
                for _ in 0..n {
                    total.error("connection did not finish in time (server stuck?)".into());
                }
                break;
            }
        }
    }
}

// ---------------------------------------------------------------- fill

/// Stores ids `lo..hi` with pipelined sets on one connection.
async fn store_range(addr: Endpoint, codec: Arc<Codec>, lo: u64, hi: u64, pipeline: usize) -> Stats {
    let mut st = Stats::new(false);
    let mut conn = match Conn::connect(&addr, pipeline * (codec.value_size() + 64)).await {
        Ok(c) => c,
        Err(e) => {
            st.error(format!("{e:#}"));
            return st;
        }
    };
    let mut id = lo;
    while id < hi {
        let end = (id + pipeline as u64).min(hi);
        for k in id..end {
            codec.push_set(&mut conn.wbuf, k);
        }
        if let Err(e) = conn.flush().await {
            st.error(format!("{e:#}"));
            return st;
        }
        for k in id..end {
            match conn.recv(&codec, Op::Set(k)).await {
                Ok(a) => match a.unexpected {
                    None => st.sets += 1,
                    Some(msg) => st.error(msg),
                },
                Err(e) => {
                    st.error(format!("{e:#}"));
                    return st;
                }
            }
        }
        id = end;
    }
    st
}

/// Reads back `n` random ids out of `0..items`; every answer must be a correct hit.
async fn verify_sample(addr: Endpoint, codec: Arc<Codec>, items: u64, n: u64, seed: u64, pipeline: usize) -> Stats {
    let mut st = Stats::new(false);
    let mut conn = match Conn::connect(&addr, pipeline * 64).await {
        Ok(c) => c,
        Err(e) => {
            st.error(format!("{e:#}"));
            return st;
        }
    };
    let mut rng = Rng::new(seed);
    let mut ids = Vec::with_capacity(pipeline);
    let mut done = 0;
    while done < n {
        ids.clear();
        for _ in 0..(n - done).min(pipeline as u64) {
            let id = rng.below(items);
            ids.push(id);
            codec.push_get(&mut conn.wbuf, id);
        }
        if let Err(e) = conn.flush().await {
            st.error(format!("{e:#}"));
            return st;
        }
        for &id in &ids {
            match conn.recv(&codec, Op::Get(id)).await {
                Ok(a) => {
                    st.gets += 1;
                    match a.outcome {
                        Outcome::Hit => st.hits += 1,
                        Outcome::Miss => {
                            st.misses += 1;
                            st.error(format!("verify: key id {id} missing"));
                        }
                        _ => st.error(a.unexpected.unwrap_or_default()),
                    }
                }
                Err(e) => {
                    st.error(format!("{e:#}"));
                    return st;
                }
            }
        }
        done += ids.len() as u64;
    }
    st
}

/// Stores `0..items` over `connections` connections. Returns the merged stats.
async fn store_all(
    addr: Endpoint,
    codec: Arc<Codec>,
    items: u64,
    connections: usize,
    pipeline: usize,
    deadline: Instant,
) -> Stats {
    let conns = (connections.max(1) as u64).min(items.max(1));
    let mut set = JoinSet::new();
    for c in 0..conns {
        let lo = items * c / conns;
        let hi = items * (c + 1) / conns;
        set.spawn(store_range(addr.clone(), codec.clone(), lo, hi, pipeline.max(1)));
    }
    let mut total = Stats::new(false);
    join_all(set, deadline, &mut total).await;
    total
}

async fn fill(a: FillArgs) -> Result<u64> {
    let addr = resolve(&a.common).await?;
    let codec = Arc::new(Codec::new(a.items, a.value_size));
    let t0 = Instant::now();
    let deadline = t0 + a.timeout;
    let stored = store_all(addr.clone(), codec.clone(), a.items, a.connections, a.pipeline, deadline).await;
    let secs = t0.elapsed().as_secs_f64();
    let mut check = Stats::new(false);
    if a.verify > 0 && a.items > 0 {
        let mut set = JoinSet::new();
        set.spawn(verify_sample(addr.clone(), codec.clone(), a.items, a.verify, a.common.seed, a.pipeline.max(1)));
        join_all(set, Instant::now().max(deadline) + GRACE, &mut check).await;
    }
    let errors = stored.errors + check.errors;
    let rate = stored.sets as f64 / secs.max(1e-9);
    if a.common.json {
        println!(
            "{{\"mode\":\"fill\",\"items\":{},\"stored\":{},\"value_size\":{},\"seconds\":{:.3},\
             \"items_per_sec\":{:.1},\"verified\":{},\"verify_hits\":{},\"verify_misses\":{},\
             \"errors\":{}}}",
            a.items, stored.sets, a.value_size, secs, rate, check.gets, check.hits, check.misses, errors
        );
    } else {
        println!(
            "fill {}: stored {} of {} items of {} B in {:.2}s ({:.0} items/s)",
            addr, stored.sets, a.items, a.value_size, secs, rate
        );
        println!("verify: {} read back, {} hits, {} misses", check.gets, check.hits, check.misses);
        println!("errors: {errors}");
    }
    stored.print_error_samples();
    check.print_error_samples();
    Ok(errors)
}

// ---------------------------------------------------------------- run

struct RunPlan {
    addr: Endpoint,
    codec: Codec,
    keys: u64,
    pipeline: usize,
    get_threshold: u64,
    measure_start: Instant,
    measure_end: Instant,
    /// Open loop: time between two batches of one connection.
    interval: Option<Duration>,
    connections: usize,
    seed: u64,
}

async fn run_conn(plan: Arc<RunPlan>, idx: usize, start: Instant) -> Stats {
    let mut st = Stats::new(true);
    let codec = &plan.codec;
    let mut conn = match Conn::connect(&plan.addr, plan.pipeline * (codec.value_size() + 64)).await {
        Ok(c) => c,
        Err(e) => {
            st.error(format!("{e:#}"));
            return st;
        }
    };
    let mut rng = Rng::new(plan.seed ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut ops: Vec<Op> = Vec::with_capacity(plan.pipeline);
    // Open loop: stagger the connections over one interval.
    let mut next = plan.interval.map(|iv| start + iv.mul_f64(idx as f64 / plan.connections as f64));
    loop {
        let mut now = Instant::now();
        if now >= plan.measure_end {
            break;
        }
        let t_send = match (&mut next, plan.interval) {
            (Some(n), Some(iv)) => {
                let scheduled = *n;
                *n += iv;
                if now < scheduled {
                    tokio::time::sleep_until(scheduled.into()).await;
                    now = Instant::now();
                    if now >= plan.measure_end {
                        break;
                    }
                    // On time: the timer's own lateness is ours, not the server's.
                    now
                } else {
                    // Behind schedule: charge the wait to the server.
                    scheduled
                }
            }
            _ => now,
        };
        ops.clear();
        for _ in 0..plan.pipeline {
            let id = rng.below(plan.keys);
            if rng.next() >> 11 < plan.get_threshold {
                codec.push_get(&mut conn.wbuf, id);
                ops.push(Op::Get(id));
            } else {
                codec.push_set(&mut conn.wbuf, id);
                ops.push(Op::Set(id));
            }
        }
        if let Err(e) = conn.flush().await {
            st.error(format!("{e:#}"));
            return st;
        }
        for &op in &ops {
            let ans = match conn.recv(codec, op).await {
                Ok(a) => a,
                Err(e) => {
                    st.error(format!("{e:#}"));
                    return st;
                }
            };
            let done = Instant::now();
            if let Some(msg) = ans.unexpected {
                st.error(msg);
                continue;
            }
            if done < plan.measure_start || done > plan.measure_end {
                continue;
            }
            match ans.outcome {
                Outcome::Hit => {
                    st.gets += 1;
                    st.hits += 1;
                }
                Outcome::Miss => {
                    st.gets += 1;
                    st.misses += 1;
                }
                Outcome::Stored => st.sets += 1,
                Outcome::Unexpected => unreachable!("reported above"),
            }
            st.record(done.saturating_duration_since(t_send));
        }
    }
    st
}

async fn run(a: RunArgs) -> Result<u64> {
    if a.connections == 0 || a.pipeline == 0 || a.keys == 0 {
        bail!("--connections, --pipeline and --keys must be at least 1");
    }
    if !(0.0..=1.0).contains(&a.get_ratio) {
        bail!("--get-ratio must be within 0..1");
    }
    if a.duration.is_zero() {
        bail!("--duration must be positive");
    }
    let interval = match a.rate {
        Some(r) if !(r > 0.0 && r.is_finite()) => bail!("--rate must be positive"),
        Some(r) => Some(Duration::from_secs_f64(a.pipeline as f64 * a.connections as f64 / r)),
        None => None,
    };
    let addr = resolve(&a.common).await?;
    let codec = Codec::new(a.keys, a.value_size).with_meta_gets(a.meta_gets);
    let mut total = Stats::new(true);

    let mut prefill_secs = 0.0;
    if a.prefill {
        let t0 = Instant::now();
        let st = store_all(
            addr.clone(),
            Arc::new(Codec::new(a.keys, a.value_size)),
            a.keys,
            a.connections.min(4),
            64,
            t0 + Duration::from_secs(600),
        )
        .await;
        prefill_secs = t0.elapsed().as_secs_f64();
        st.print_error_samples();
        total.errors += st.errors;
    }

    let start = Instant::now();
    let plan = Arc::new(RunPlan {
        addr: addr.clone(),
        codec,
        keys: a.keys,
        pipeline: a.pipeline,
        get_threshold: (a.get_ratio * (1u64 << 53) as f64) as u64,
        measure_start: start + a.warmup,
        measure_end: start + a.warmup + a.duration,
        interval,
        connections: a.connections,
        seed: a.common.seed,
    });
    let mut set = JoinSet::new();
    for i in 0..a.connections {
        set.spawn(run_conn(plan.clone(), i, start));
    }
    join_all(set, plan.measure_end + GRACE, &mut total).await;

    let secs = a.duration.as_secs_f64();
    let ops = total.gets + total.sets;
    let ops_per_sec = ops as f64 / secs;
    let h = total.hist();
    let pct = |q: f64| {
        if h.is_empty() { 0.0 } else { h.value_at_quantile(q) as f64 / 1000.0 }
    };
    let (p50, p90, p99, p999) = (pct(0.5), pct(0.9), pct(0.99), pct(0.999));
    let max = h.max() as f64 / 1000.0;
    let mean = h.mean() / 1000.0;
    if a.common.json {
        let rate = a.rate.map_or("null".to_string(), |r| format!("{r:.1}"));
        println!(
            "{{\"mode\":\"run\",\"server\":\"{}\",\"ops_per_sec\":{:.1},\"p50_us\":{:.1},\
             \"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\"mean_us\":{:.1},\
             \"gets\":{},\"sets\":{},\"hits\":{},\"misses\":{},\"errors\":{},\
             \"connections\":{},\"pipeline\":{},\"get_ratio\":{},\"keys\":{},\"value_size\":{},\
             \"duration_s\":{:.3},\"warmup_s\":{:.3},\"threads\":{},\"target_rate\":{},\
             \"prefill_s\":{:.3}}}",
            addr,
            ops_per_sec,
            p50,
            p90,
            p99,
            p999,
            max,
            mean,
            total.gets,
            total.sets,
            total.hits,
            total.misses,
            total.errors,
            a.connections,
            a.pipeline,
            a.get_ratio,
            a.keys,
            a.value_size,
            secs,
            a.warmup.as_secs_f64(),
            a.common.threads,
            rate,
            prefill_secs
        );
    } else {
        println!(
            "loadgen {addr}: {} conns x pipeline {}, get ratio {}, {} keys, {} B values, \
             {} threads, {:.1}s (+{:.1}s warm-up){}",
            a.connections,
            a.pipeline,
            a.get_ratio,
            a.keys,
            a.value_size,
            a.common.threads,
            secs,
            a.warmup.as_secs_f64(),
            a.rate.map_or(String::new(), |r| format!(", open loop at {r:.0} ops/s"))
        );
        if a.prefill {
            println!("prefill:   {} keys in {:.2}s", a.keys, prefill_secs);
        }
        println!(
            "ops/s:     {:.0}  (gets {}, sets {}; hits {}, misses {})",
            ops_per_sec, total.gets, total.sets, total.hits, total.misses
        );
        println!(
            "latency:   p50 {p50:.1}us  p90 {p90:.1}us  p99 {p99:.1}us  p99.9 {p999:.1}us  \
             max {max:.1}us  mean {mean:.1}us"
        );
        println!("errors:    {}", total.errors);
    }
    total.print_error_samples();
    Ok(total.errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["loadgen", "--pipeline", "16", "--json"]).unwrap();
        assert!(c.cmd.is_none());
        assert_eq!(c.run.pipeline, 16);
        let c = Cli::try_parse_from(["loadgen", "fill", "--items", "10", "--server", "[::1]:1"]).unwrap();
        match c.cmd {
            Some(Cmd::Fill(f)) => {
                assert_eq!(f.items, 10);
                assert_eq!(f.common.server, "[::1]:1");
            }
            other => panic!("{other:?}"),
        }
    }
}
