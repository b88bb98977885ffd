//! A test-only kubelet: registers a Node, keeps its Lease, and runs the pods bound to it as
//! local processes, each on its own address, with their probes, readiness gates, status and
//! deletion grace periods (SIGTERM, then SIGKILL). An image maps to a local binary.
//!
//! Addresses: the API server refuses loopback addresses in EndpointSlices, so pods get
//! documentation addresses (198.51.100.0/24, then 192.0.2.10–254), added to `lo` of the network
//! namespace the test run creates for itself (see `netns`); nodes are 192.0.2.<n>.
//!
//! Images: each container runs from its image, an OCI archive built by `scripts/images.sh` and
//! unpacked once per run (see `image`): `chroot` into a copy of the image's root filesystem,
//! the image's ENTRYPOINT and CMD (or the container's command and args), its environment, its
//! user unless the security context names one. So a broken image (a missing binary or
//! library, a wrong entrypoint) fails the pod as it would on a real node. The API server is
//! reached as from a real pod: `KUBERNETES_SERVICE_HOST`/`_PORT` (here the API server's own
//! address, there being no Service proxy) and the service account's projected token, CA and
//! namespace under /var/run/secrets/kubernetes.io/serviceaccount.
//!
//! Logs: each container's stdout and stderr go to `<container>.log` in its pod's directory
//! (the run before a restart's to `<container>.previous.log`), which the node's kubelet API
//! serves to the API server's `pods/log` (so `kubectl logs` works; see `server`).
//!
//! Secret volumes follow their Secrets while the pod runs, as on a real node: every few
//! seconds (a real kubelet: about a minute) each changed file is replaced atomically, in the
//! volume and in each container's copy of it.
//!
//! What it does not do: cgroups, mount or PID namespaces (volumes are copied into the
//! container's root at their mount paths when it starts), image pulls (every image is
//! `imagePullPolicy: Never` in effect), init containers.

pub mod image;
mod node;
mod pod;
mod probe;
mod server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

pub struct Config {
    pub node: String,
    /// The node's address: 192.0.2.<index> (1–9).
    pub index: u8,
    /// The images pods may run, unpacked ([`image::unpack`]); a pod's image matches on its
    /// full normalized reference (`cachepair/cache-node:0.1.0` is
    /// `docker.io/cachepair/cache-node:0.1.0`).
    pub images: Vec<image::Image>,
    /// The API server's address as pods reach it (`KUBERNETES_SERVICE_HOST` and `_PORT`).
    pub api_server: (String, u16),
    /// Where pods keep their volumes and logs.
    pub work_dir: PathBuf,
}

/// What the test can do to a running pod.
struct PodHandle {
    uid: String,
    ip: String,
    /// The pod's processes (for SIGKILL on command).
    pids: Arc<std::sync::Mutex<Vec<u32>>>,
    /// Set when the pod is being deleted.
    stop: watch::Sender<bool>,
    /// The pod as the API server has it now (its readiness gates' conditions, its grace period).
    latest: watch::Sender<Pod>,
    task: JoinHandle<()>,
}

pub(crate) struct Shared {
    client: Client,
    config: Config,
    pods: Mutex<HashMap<String, PodHandle>>,
}

/// Pod addresses handed out so far, across every kubelet of the run.
static NEXT_IP: AtomicU32 = AtomicU32::new(0);

impl Shared {
    /// A fresh pod address, added to `lo`.
    fn allocate_ip(&self) -> anyhow::Result<String> {
        let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
        let ip = match n {
            0..254 => format!("198.51.100.{}", n + 1),
            254..499 => format!("192.0.2.{}", n - 254 + 10),
            _ => anyhow::bail!("out of pod addresses"),
        };
        crate::netns::add_address(&ip)?;
        Ok(ip)
    }

    fn node_ip(&self) -> String {
        format!("192.0.2.{}", self.config.index)
    }

    /// The variables every container gets for the `kubernetes` Service (container env wins).
    fn service_env(&self) -> std::collections::BTreeMap<String, String> {
        let (host, port) = &self.config.api_server;
        [
            ("KUBERNETES_SERVICE_HOST", host.clone()),
            ("KUBERNETES_SERVICE_PORT", port.to_string()),
            ("KUBERNETES_SERVICE_PORT_HTTPS", port.to_string()),
            ("KUBERNETES_PORT", format!("tcp://{host}:{port}")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

pub struct ProcessKubelet {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl ProcessKubelet {
    /// Registers the node and starts running its pods.
    pub async fn start(client: Client, config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.work_dir)?;
        // Pods may run as another user: they need to reach their volumes.
        std::fs::set_permissions(&config.work_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        anyhow::ensure!((1..10).contains(&config.index), "node index {} is not 1–9", config.index);
        let shared = Arc::new(Shared { client, config, pods: Mutex::default() });
        crate::netns::add_address(&shared.node_ip())?;
        // A node that comes back after `node_down` is reachable again.
        crate::netns::undrop_to(&shared.node_ip())?;
        let server = server::start(shared.clone()).await?;
        node::register(&shared).await?;
        let heartbeat = tokio::spawn(node::heartbeat(shared.clone()));
        let pods = tokio::spawn(sync_pods(shared.clone()));
        Ok(Self { shared, tasks: vec![server, heartbeat, pods] })
    }

    pub fn node(&self) -> &str {
        &self.shared.config.node
    }

    /// SIGKILLs every process of the pod `namespace/name` (its restart policy decides what follows).
    pub async fn kill_pod(&self, namespace: &str, name: &str) -> bool {
        let pods = self.shared.pods.lock().await;
        let Some(handle) = pods.get(&key(namespace, name)) else { return false };
        let pids = handle.pids.lock().unwrap().clone();
        for pid in &pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
        !pids.is_empty()
    }

    /// The node dies: its processes are SIGKILLed and it stops reporting; its pods stay on the
    /// API server as they were, and packets to their addresses and to its own (its kubelet API)
    /// vanish, as with a real node that lost power (connections hang until their timeouts rather
    /// than being refused).
    pub async fn node_down(mut self) -> anyhow::Result<()> {
        // Silence first: a killed process's sockets would otherwise tell its peers (FIN, RST),
        // which a node that lost power does not.
        let mut ips: Vec<String> = self.shared.pods.lock().await.values().map(|h| h.ip.clone()).collect();
        ips.push(self.shared.node_ip());
        for ip in &ips {
            crate::netns::drop_to(ip)?;
        }
        self.stop_all().await;
        Ok(())
    }

    /// Stops the kubelet and its processes (the end of a test).
    pub async fn stop(mut self) {
        self.stop_all().await;
    }

    async fn stop_all(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // Gone once they return: the kubelet API's listener and connections with them, so that
        // the node's address and port are free for a kubelet that comes back.
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.kill_all().await;
    }

    async fn kill_all(&self) {
        let mut pods = self.shared.pods.lock().await;
        for (_, handle) in pods.drain() {
            handle.task.abort();
            for pid in handle.pids.lock().unwrap().iter() {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessKubelet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Ok(pods) = self.shared.pods.try_lock() {
            for handle in pods.values() {
                handle.task.abort();
                for pid in handle.pids.lock().unwrap().iter() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Starts a runner for each pod bound to this node; tells it when the pod is being deleted.
async fn sync_pods(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", shared.config.node));
    let mut events = watcher::watcher(api, config).boxed();
    while let Some(event) = events.next().await {
        let pods = match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => vec![pod],
            Ok(Event::Delete(pod)) => {
                let k = key(&pod.namespace().unwrap_or_default(), &pod.name_any());
                if let Some(handle) = shared.pods.lock().await.remove(&k) {
                    let _ = handle.stop.send(true);
                }
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "pod watch");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        for pod in pods {
            let k = key(&pod.namespace().unwrap_or_default(), &pod.name_any());
            let mut running = shared.pods.lock().await;
            if let Some(handle) = running.get(&k) {
                // The same name may come back as a new pod after the old one is gone.
                if handle.uid != pod.uid().unwrap_or_default() {
                    let _ = handle.stop.send(true);
                    running.remove(&k);
                } else {
                    let deleting = pod.metadata.deletion_timestamp.is_some();
                    handle.latest.send_replace(pod);
                    if deleting {
                        let _ = handle.stop.send(true);
                    }
                    continue;
                }
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let ip = match shared.allocate_ip() {
                Ok(ip) => ip,
                Err(e) => {
                    tracing::warn!(pod = %k, error = %format!("{e:#}"), "no address for the pod");
                    continue;
                }
            };
            let (stop, stop_rx) = watch::channel(pod.metadata.deletion_timestamp.is_some());
            let (latest, latest_rx) = watch::channel(pod.clone());
            let pids = Arc::new(std::sync::Mutex::new(Vec::new()));
            let uid = pod.uid().unwrap_or_default();
            let task = tokio::spawn(pod::run(shared.clone(), ip.clone(), pids.clone(), stop_rx, latest_rx));
            running.insert(k, PodHandle { uid, ip, pids, stop, latest, task });
        }
    }
}
