//! The operator as a process against the test control plane, as a user runs it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::cluster::{Cluster, target_bin};

pub struct OperatorProcess {
    child: Child,
    pub metrics: String,
}

impl OperatorProcess {
    /// Starts `cachepair-operator --kubeconfig …`; `lease` turns leader election on.
    pub fn start(cluster: &Cluster, name: &str, lease: bool) -> anyhow::Result<Self> {
        Self::spawn(cluster, name, lease, &[])
    }

    /// Starts an operator that watches `namespace` only: its timings are not shared with
    /// the pairs other tests left behind.
    pub fn start_in(cluster: &Cluster, name: &str, namespace: &str) -> anyhow::Result<Self> {
        Self::spawn(cluster, name, false, &["--namespace", namespace])
    }

    /// As [`OperatorProcess::start_in`], serving the eviction webhook over TLS with a
    /// self-signed certificate for 127.0.0.1. Returns the webhook's URL and the certificate
    /// (PEM), which is its own CA.
    pub fn start_with_webhook(
        cluster: &Cluster,
        name: &str,
        namespace: &str,
    ) -> anyhow::Result<(Self, String, Vec<u8>)> {
        let (cert, key) =
            (cluster.state.join(format!("{name}-webhook.crt")), cluster.state.join(format!("{name}-webhook.key")));
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=cachepair-operator-webhook", "-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let (cert_arg, key_arg) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
        let extra = [
            "--namespace",
            namespace,
            "--webhook-listen",
            &listen,
            "--webhook-cert",
            &cert_arg,
            "--webhook-key",
            &key_arg,
        ];
        let op = Self::spawn(cluster, name, false, &extra)?;
        Ok((op, format!("https://{listen}/validate-eviction"), std::fs::read(&cert)?))
    }

    fn spawn(cluster: &Cluster, name: &str, lease: bool, extra: &[&str]) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let listen = format!("127.0.0.1:{port}");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(cluster.state.join(format!("{name}.log")))?;
        let child = Command::new(target_bin("cachepair-operator"))
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args([
                "--listen",
                &listen,
                "--log-format",
                "text",
                "--leader-election",
                if lease { "true" } else { "false" },
            ])
            .args(["--lease-namespace", "default"])
            .args(extra)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Self { child, metrics: format!("http://{listen}/metrics") })
    }

    /// SIGKILL: the operator dies mid-whatever.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_path(cluster: &Cluster, name: &str) -> std::path::PathBuf {
        Path::new(&cluster.state).join(format!("{name}.log"))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
