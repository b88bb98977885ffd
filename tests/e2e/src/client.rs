//! A memcached client as an application behind a Service sees failover: it follows the
//! Service's ready endpoints (as kube-proxy would, from the EndpointSlices), writes without
//! pause, takes a fresh connection to a currently-listed endpoint on any error and every
//! `RECONNECT` (so that new connections follow routing changes, as a client pool's do), and
//! records the time of every acknowledged write.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};

/// A client's patience with one request, connect included: a dead address costs this much.
const TIMEOUT: Duration = Duration::from_millis(500);
/// How long one connection is used before a fresh one is taken.
const RECONNECT: Duration = Duration::from_millis(50);

/// From when on a Service had these ready endpoint addresses.
pub type Change = (Instant, BTreeSet<String>);

/// The ready endpoints of a Service over time, from a watch of its EndpointSlices.
pub struct Endpoints {
    current: Arc<Mutex<BTreeSet<String>>>,
    history: Arc<Mutex<Vec<Change>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoints {
    pub fn watch(client: Client, namespace: &str, service: &str) -> Endpoints {
        let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
        let config = watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
        let current = Arc::new(Mutex::new(BTreeSet::new()));
        let history = Arc::new(Mutex::new(vec![(Instant::now(), BTreeSet::new())]));
        let (c, h) = (current.clone(), history.clone());
        let task = tokio::spawn(async move {
            let mut slices: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            let mut events = watcher::watcher(api, config).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::Apply(s) | Event::InitApply(s)) => {
                        slices.insert(s.name_any(), ready(&s));
                    }
                    Ok(Event::Delete(s)) => {
                        slices.remove(&s.name_any());
                    }
                    Ok(Event::Init) => slices.clear(),
                    Ok(Event::InitDone) => {}
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
                let now: BTreeSet<String> = slices.values().flatten().cloned().collect();
                let mut cur = c.lock().unwrap();
                if *cur != now {
                    *cur = now.clone();
                    h.lock().unwrap().push((Instant::now(), now));
                }
            }
        });
        Endpoints { current, history, task }
    }

    pub fn current(&self) -> BTreeSet<String> {
        self.current.lock().unwrap().clone()
    }

    /// Every change since the watch began: when, and the ready addresses from then on.
    pub fn history(&self) -> Vec<Change> {
        self.history.lock().unwrap().clone()
    }

    /// The longest time the Service had more than one ready endpoint, up to now.
    pub fn longest_with_two(&self) -> Duration {
        let history = self.history();
        let mut longest = Duration::ZERO;
        for (i, (at, set)) in history.iter().enumerate() {
            if set.len() > 1 {
                let until = history.get(i + 1).map_or_else(Instant::now, |(t, _)| *t);
                longest = longest.max(until - *at);
            }
        }
        longest
    }

    /// When the endpoints became exactly `set` for the last time (and still are), if they are.
    pub fn since(&self, set: &BTreeSet<String>) -> Option<Instant> {
        self.history().last().filter(|(_, s)| s == set).map(|(t, _)| *t)
    }
}

impl Drop for Endpoints {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn ready(slice: &EndpointSlice) -> BTreeSet<String> {
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
        .flat_map(|e| e.addresses.clone())
        .collect()
}

/// What the client saw.
pub struct Report {
    /// Acknowledged keys, with when they were acknowledged.
    pub acked: Vec<(String, Instant)>,
    /// Connections and requests that failed (refused, timed out, closed, not stored).
    pub failures: u64,
    pub started: Instant,
    pub stopped: Instant,
}

impl Report {
    /// The longest time without an acknowledged write, and when it ended.
    pub fn longest_gap(&self) -> (Duration, Instant) {
        let mut last = self.started;
        let mut longest = (Duration::ZERO, self.started);
        for (_, at) in &self.acked {
            if *at - last > longest.0 {
                longest = (*at - last, *at);
            }
            last = *at;
        }
        if self.stopped - last > longest.0 {
            longest = (self.stopped - last, self.stopped);
        }
        longest
    }

    /// The acknowledged keys that the node at `addr` does not have.
    pub fn lost_on(&self, addr: &str) -> anyhow::Result<Vec<String>> {
        let mut lost = Vec::new();
        let keys: Vec<&str> = self.acked.iter().map(|(k, _)| k.as_str()).collect();
        for batch in keys.chunks(100) {
            let found = get_many(addr, batch)?;
            lost.extend(batch.iter().filter(|k| !found.contains(**k)).map(|k| k.to_string()));
        }
        Ok(lost)
    }
}

/// The writer: a thread writing `<prefix><n>` through the Service's endpoints.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Report>>,
}

impl Writer {
    /// Starts writing to the endpoints `endpoints` lists, on `port`.
    pub fn start(endpoints: &Endpoints, port: u16, prefix: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (current, st, prefix) = (endpoints.current.clone(), stop.clone(), prefix.to_string());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut acked = Vec::new();
            let mut conn: Option<(BufReader<TcpStream>, Instant)> = None;
            let (mut n, mut failures) = (0u64, 0u64);
            // Spreads new connections over the listed endpoints, as kube-proxy does.
            let mut pick = 0usize;
            while !st.load(Ordering::Relaxed) {
                if conn.as_ref().is_none_or(|(_, since)| since.elapsed() > RECONNECT) {
                    let listed: Vec<String> = current.lock().unwrap().iter().cloned().collect();
                    if listed.is_empty() {
                        conn = None;
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                    pick = pick.wrapping_add(1);
                    let addr = format!("{}:{port}", listed[pick % listed.len()]);
                    conn = connect(&addr).ok().map(|c| (c, Instant::now()));
                    if conn.is_none() {
                        // A refusal comes back at once: pause as a client pool would.
                        failures += 1;
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                }
                let (c, _) = conn.as_mut().expect("connected");
                let key = format!("{prefix}{n}");
                match set(c, &key, &format!("v{n}")) {
                    Ok(true) => {
                        acked.push((key, Instant::now()));
                        n += 1;
                    }
                    // Not stored, or no answer: another connection, the same key again.
                    _ => {
                        failures += 1;
                        conn = None;
                    }
                }
            }
            Report { acked, failures, started, stopped: Instant::now() }
        });
        Writer { stop, thread: Some(thread) }
    }

    pub fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().expect("running").join().expect("the writer thread")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn connect(addr: &str) -> std::io::Result<BufReader<TcpStream>> {
    let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(BufReader::new(s))
}

fn set(c: &mut BufReader<TcpStream>, key: &str, value: &str) -> std::io::Result<bool> {
    c.get_mut().write_all(format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes())?;
    let mut line = String::new();
    if c.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line == "STORED\r\n")
}

/// The keys among `keys` that the node at `addr` has.
fn get_many(addr: &str, keys: &[&str]) -> anyhow::Result<BTreeSet<String>> {
    let mut c = connect(addr)?;
    c.get_ref().set_read_timeout(Some(Duration::from_secs(5)))?;
    c.get_mut().write_all(format!("get {}\r\n", keys.join(" ")).as_bytes())?;
    let mut found = BTreeSet::new();
    loop {
        let mut line = String::new();
        anyhow::ensure!(c.read_line(&mut line)? > 0, "{addr} closed the connection");
        if line == "END\r\n" {
            return Ok(found);
        }
        let mut words = line.split_whitespace();
        anyhow::ensure!(words.next() == Some("VALUE"), "{addr} answered {line:?}");
        found.insert(words.next().unwrap_or_default().to_string());
        let mut value = String::new();
        c.read_line(&mut value)?;
    }
}
