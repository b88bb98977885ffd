//! One control plane for a whole test run: `tests/controlplane/up.sh` into a temporary state
//! directory, the CRD applied, the images of `scripts/images.sh` unpacked, a few process
//! kubelets; `down.sh` at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::kubelet::image::{self, Image};
use crate::kubelet::{self, ProcessKubelet};

pub struct Cluster {
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
    pub bin: PathBuf,
    pub client: Client,
    /// The images pods run (from target/images).
    pub images: Vec<Image>,
    api_server: (String, u16),
    kubelets: tokio::sync::Mutex<Vec<ProcessKubelet>>,
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository")
}

/// Where cargo put the workspace's binaries (cache-node, cachepair-operator).
pub fn target_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    dir.join("debug").join(name)
}

/// The OCI archives `scripts/images.sh` wrote (target/images/*.oci.tar).
pub fn image_archives() -> anyhow::Result<Vec<PathBuf>> {
    let dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from).join("images");
    let mut archives: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".oci.tar"))
        .collect();
    archives.sort();
    if archives.is_empty() {
        bail!("no images in {}: build them with scripts/images.sh", dir.display());
    }
    Ok(archives)
}

impl Cluster {
    /// Starts the control plane in `state` and `nodes` process kubelets.
    pub async fn start(state: &Path, nodes: u8) -> anyhow::Result<Cluster> {
        // Pods run as their own users and must reach their directories under the state.
        std::fs::set_permissions(state, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let scripts = repo().join("tests/controlplane");
        let out = Command::new(scripts.join("up.sh")).arg(state).output().context("up.sh")?;
        if !out.status.success() {
            bail!("up.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        let kubeconfig = state.join("admin.kubeconfig");
        let bin = PathBuf::from(read_env(state, "CACHEPAIR_K8S_BIN")?);
        let config =
            Config::from_custom_kubeconfig(Kubeconfig::read_from(&kubeconfig)?, &KubeConfigOptions::default()).await?;
        let api_server = (
            config.cluster_url.host().context("the API server's host")?.to_string(),
            config.cluster_url.port_u16().unwrap_or(443),
        );
        let client = Client::try_from(config)?;
        let mut images = Vec::new();
        for (i, archive) in image_archives()?.iter().enumerate() {
            let image = image::unpack(archive, &state.join("images").join(i.to_string()))
                .with_context(|| format!("image {}", archive.display()))?;
            images.push(image);
        }
        let cluster = Cluster {
            state: state.to_path_buf(),
            kubeconfig,
            bin,
            client,
            images,
            api_server,
            kubelets: Default::default(),
        };
        cluster.kubectl(&["apply", "--server-side", "-f", repo().join("crds/cachepair.yaml").to_str().unwrap()])?;
        cluster.crd_established(Duration::from_secs(30)).await?;
        for n in 1..=nodes {
            cluster.node_up(n).await?;
        }
        Ok(cluster)
    }

    /// Waits until the API server serves the CachePair CRD. Polled rather than `kubectl wait`:
    /// just after the create the CRD may have no conditions yet, and kubectl then fails at once.
    async fn crd_established(&self, limit: Duration) -> anyhow::Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        wait_for("the CachePair CRD to be Established", limit, || async {
            let crd = crds.get_opt("cachepairs.cachepair.io").await.ok().flatten()?;
            let conditions = crd.status?.conditions?;
            conditions.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
        })
        .await
    }

    /// Starts (or restarts) the kubelet of node `node-<n>`.
    pub async fn node_up(&self, n: u8) -> anyhow::Result<()> {
        let config = kubelet::Config {
            node: format!("node-{n}"),
            index: n,
            images: self.images.clone(),
            api_server: self.api_server.clone(),
            work_dir: self.state.join(format!("node-{n}")),
        };
        let kubelet = ProcessKubelet::start(self.client.clone(), config).await?;
        self.kubelets.lock().await.push(kubelet);
        Ok(())
    }

    /// Node `name` dies: its processes are SIGKILLed, it stops reporting, and its pods'
    /// addresses go silent.
    pub async fn node_down(&self, name: &str) -> anyhow::Result<()> {
        let mut kubelets = self.kubelets.lock().await;
        let i = kubelets.iter().position(|k| k.node() == name).with_context(|| format!("no kubelet for {name}"))?;
        kubelets.remove(i).node_down().await
    }

    /// SIGKILLs the processes of pod `namespace/name`, wherever it runs.
    pub async fn kill_pod(&self, namespace: &str, name: &str) -> bool {
        let kubelets = self.kubelets.lock().await;
        let mut killed = false;
        for k in kubelets.iter() {
            killed |= k.kill_pod(namespace, name).await;
        }
        killed
    }

    /// Runs kubectl against the cluster; its stdout on success.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let out =
            Command::new(self.bin.join("kubectl")).arg("--kubeconfig").arg(&self.kubeconfig).args(args).output()?;
        if !out.status.success() {
            bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the kubelets' processes and the control plane.
    pub async fn stop(self) {
        for k in self.kubelets.lock().await.drain(..) {
            k.stop().await;
        }
        let _ = Command::new(repo().join("tests/controlplane/down.sh")).arg(&self.state).status();
    }
}

fn read_env(state: &Path, name: &str) -> anyhow::Result<String> {
    let env = std::fs::read_to_string(state.join("env.sh")).context("env.sh")?;
    env.lines()
        .filter_map(|l| l.trim_start_matches("export ").split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches(|c| c == '"' || c == '\'').to_string())
        .with_context(|| format!("{name} not in env.sh"))
}

/// Polls `f` every 100 ms until it yields, or fails after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
