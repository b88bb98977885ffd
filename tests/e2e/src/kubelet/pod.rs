//! One pod as local processes: its containers' images (each container `chroot`ed into its own
//! copy of its image's root filesystem, as the image's user or the security context's), its
//! volumes (written at their mount paths in that root), environment and command line, its
//! probes, readiness gates and status, its restart policy and its deletion.
//!
//! As the kubelet does: Ready is the containers' readiness and every readiness gate's
//! condition True; conditions are merged into the status by type, so that a gate's condition
//! (someone else's) is never overwritten; SIGTERM on deletion, SIGKILL after the grace period
//! the deletion asked for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use anyhow::{Context as _, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Probe, Secret, SecretVolumeSource, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Api, ResourceExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::image::{self, Image};
use super::{Shared, probe};

/// How often exits are noticed and probes considered.
const TICK: Duration = Duration::from_millis(100);
/// How often a running pod's Secret volumes are brought up to date with their Secrets. The
/// real kubelet does it on its sync period and Secret cache, about a minute; seconds here, so
/// that a test of a rotation waits seconds.
const SECRET_RESYNC: Duration = Duration::from_secs(5);
/// At most this long for one Secret's fetch: the resync runs in the pod's supervision loop.
const SECRET_FETCH_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn run(
    shared: Arc<Shared>,
    ip: String,
    pids: Arc<std::sync::Mutex<Vec<u32>>>,
    stop: watch::Receiver<bool>,
    latest: watch::Receiver<Pod>,
) {
    let pod = latest.borrow().clone();
    let runner = match Runner::start(&shared, &pod, ip, pids, latest).await {
        Ok(runner) => runner,
        Err(e) => {
            let name = pod.name_any();
            tracing::warn!(pod = %name, error = %format!("{e:#}"), "pod cannot run");
            let api: Api<Pod> = Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
            let status =
                json!({"status": {"phase": "Failed", "reason": "ProcessKubelet", "message": format!("{e:#}")}});
            let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await;
            return;
        }
    };
    runner.supervise(stop).await;
}

/// The directory of pod `namespace/name` (its volumes, its containers' roots and logs).
pub(super) fn dir(work_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    work_dir.join("pods").join(format!("{namespace}_{name}_{}", &uid[..uid.len().min(8)]))
}

/// A container's log in its pod's directory: its stdout and stderr, of the current run or
/// (`previous`) of the run before its last restart.
pub(super) fn log_file(container: &str, previous: bool) -> String {
    if previous { format!("{container}.previous.log") } else { format!("{container}.log") }
}

/// A running container.
struct Process {
    container: Container,
    child: Option<Child>,
    started: Timestamp,
    restarts: i32,
    exit: Option<i32>,
    ready: bool,
    readiness: ProbeState,
    liveness: ProbeState,
}

/// A Secret volume, kept up to date while the pod runs.
struct SecretVolume {
    volume: String,
    source: SecretVolumeSource,
    /// Where its files are: the volume's directory and its copy in each container's root.
    dirs: Vec<PathBuf>,
}

#[derive(Default)]
struct ProbeState {
    next: Option<Instant>,
    failures: i32,
    successes: i32,
}

struct Runner {
    api: Api<Pod>,
    name: String,
    uid: String,
    ip: String,
    host_ip: String,
    dir: PathBuf,
    restart_policy: String,
    started: Timestamp,
    /// The pod as the API server has it now: its gates' conditions, its deletion grace period.
    latest: watch::Receiver<Pod>,
    /// The Ready and ContainersReady last reported, with their transition times.
    reported: Option<(Condition, Condition)>,
    /// Each container's root filesystem (its image's, with its volumes).
    roots: Vec<PathBuf>,
    /// Each container's working directory inside its root.
    workdirs: Vec<String>,
    env: Vec<BTreeMap<String, String>>,
    /// Each container's command line: the image's ENTRYPOINT and CMD, or the container's
    /// command and args, `$(VAR)` expanded.
    argv: Vec<Vec<String>>,
    /// The uid, gid and supplementary groups each container runs as.
    users: Vec<(u32, u32, Vec<u32>)>,
    procs: Vec<Process>,
    pids: Arc<std::sync::Mutex<Vec<u32>>>,
    secrets: Api<Secret>,
    secret_volumes: Vec<SecretVolume>,
    /// The group of volume files (the pod's fsGroup).
    fs_group: Option<u32>,
    next_secret_resync: Instant,
}

impl Runner {
    async fn start(
        shared: &Shared,
        pod: &Pod,
        ip: String,
        pids: Arc<std::sync::Mutex<Vec<u32>>>,
        latest: watch::Receiver<Pod>,
    ) -> anyhow::Result<Runner> {
        let spec = pod.spec.clone().context("a pod without a spec")?;
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let uid = pod.uid().unwrap_or_default();
        let dir = dir(&shared.config.work_dir, &ns, &name, &uid);
        std::fs::create_dir_all(&dir)?;
        for d in [dir.as_path(), dir.parent().unwrap_or(&dir)] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
        anyhow::ensure!(
            nix::unistd::geteuid().is_root(),
            "the process kubelet runs containers with chroot: run the tests as root"
        );
        let volumes = write_volumes(shared, &ns, pod, &dir).await?;
        let mut env_all = Vec::new();
        let mut argv_all = Vec::new();
        let mut roots = Vec::new();
        let mut workdirs = Vec::new();
        let mut users = Vec::new();
        let pod_sc = spec.security_context.clone().unwrap_or_default();
        for c in &spec.containers {
            let reference = c.image.as_deref().unwrap_or_default();
            let image = image_for(&shared.config.images, reference).with_context(|| {
                format!(
                    "container {}: image {reference} ({}) is none of the archives scripts/images.sh built",
                    c.name,
                    image::normalize(reference)
                )
            })?;
            let root = dir.join("rootfs").join(&c.name);
            if !root.exists() {
                image::container_root(image, &root)?;
                mount_volumes(c, &volumes, &root)?;
            }
            // As the kubelet: the image's user unless the security context names one.
            let sc = c.security_context.clone().unwrap_or_default();
            let (image_uid, image_gid) = image::user_ids(image)?;
            let uid = sc.run_as_user.or(pod_sc.run_as_user).map_or(image_uid, |u| u as u32);
            let gid = sc.run_as_group.or(pod_sc.run_as_group).map(|g| g as u32).or(image_gid).unwrap_or(0);
            if sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true) && uid == 0 {
                bail!("container {}: runAsNonRoot and the image runs as root (user {:?})", c.name, image.user);
            }
            let mut groups = vec![gid];
            groups.extend(pod_sc.fs_group.map(|g| g as u32));
            groups.extend(pod_sc.supplemental_groups.iter().flatten().map(|g| *g as u32));
            users.push((uid, gid, groups));
            let mut env = image::environment(image, &shared.service_env());
            env.extend(environment(shared, &ns, pod, c, &ip).await?);
            let expanded =
                |list: Option<&Vec<String>>| list.map(|l| l.iter().map(|a| expand(a, &env)).collect::<Vec<_>>());
            let (command, args) = (expanded(c.command.as_ref()), expanded(c.args.as_ref()));
            let mut argv = image::command_line(image, command.as_deref(), args.as_deref());
            anyhow::ensure!(!argv.is_empty(), "container {}: no command (the image has no ENTRYPOINT or CMD)", c.name);
            argv[0] = image::resolve(&root, &argv[0], env.get("PATH").map_or("", String::as_str));
            roots.push(root);
            workdirs.push(c.working_dir.clone().unwrap_or_else(|| image.working_dir.clone()));
            env_all.push(env);
            argv_all.push(argv);
        }
        let secret_volumes = spec
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| {
                let mounted = spec.containers.iter().zip(&roots).flat_map(|(c, root)| {
                    c.volume_mounts
                        .iter()
                        .flatten()
                        .filter(|m| m.name == v.name)
                        .map(|m| root.join(m.mount_path.trim_start_matches('/')))
                });
                Some(SecretVolume {
                    volume: v.name.clone(),
                    source: v.secret.clone()?,
                    dirs: std::iter::once(volumes.get(&v.name)?.clone()).chain(mounted).collect(),
                })
            })
            .collect();
        let mut runner = Runner {
            api: Api::namespaced(shared.client.clone(), &ns),
            name,
            uid,
            ip,
            host_ip: shared.node_ip(),
            dir,
            restart_policy: spec.restart_policy.clone().unwrap_or_else(|| "Always".into()),
            started: Timestamp::now(),
            latest,
            reported: None,
            roots,
            workdirs,
            env: env_all,
            argv: argv_all,
            users,
            procs: Vec::new(),
            pids,
            secrets: Api::namespaced(shared.client.clone(), &ns),
            secret_volumes,
            fs_group: pod_sc.fs_group.map(|g| g as u32),
            next_secret_resync: Instant::now() + SECRET_RESYNC,
        };
        for (i, c) in spec.containers.iter().enumerate() {
            let child = runner.spawn(i, c)?;
            runner.procs.push(Process {
                container: c.clone(),
                child: Some(child),
                started: Timestamp::now(),
                restarts: 0,
                exit: None,
                ready: false,
                readiness: ProbeState::default(),
                liveness: ProbeState::default(),
            });
        }
        runner.record_pids();
        runner.report(true).await?;
        Ok(runner)
    }

    /// Starts container `i`: in its root (chroot, in a mount namespace of its own with /proc and
    /// a few devices), in its working directory, as its user, with only its environment. A
    /// program missing from the image fails here; a library missing from it fails the process
    /// (exit 127), as in a container runtime.
    fn spawn(&self, i: usize, c: &Container) -> anyhow::Result<Child> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;

        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(log_file(&c.name, false)))?;
        let argv = &self.argv[i];
        let root = CString::new(self.roots[i].as_os_str().as_bytes())?;
        let at = |p: &str| CString::new(self.roots[i].join(p.trim_start_matches('/')).as_os_str().as_bytes());
        let proc = at("/proc")?;
        let devices = image::DEVICES
            .iter()
            .map(|d| Ok((CString::new(*d)?, at(d)?)))
            .collect::<anyhow::Result<Vec<(CString, CString)>>>()?;
        let workdir = CString::new(self.workdirs[i].as_bytes())?;
        let (uid, gid, groups) = self.users[i].clone();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(&self.env[i])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        // SAFETY: between fork and exec only async-signal-safe calls, on memory prepared before.
        unsafe {
            cmd.pre_exec(move || {
                use nix::libc;
                let check = |r: libc::c_int| if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
                // A mount namespace of its own, gone with the process: /proc and the devices
                // mounted in its root, as a runtime does.
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let none = std::ptr::null();
                check(libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, none as _))?;
                let proc_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                check(libc::mount(c"proc".as_ptr(), proc.as_ptr(), c"proc".as_ptr(), proc_flags, none as _))?;
                for (dev, target) in &devices {
                    check(libc::mount(dev.as_ptr(), target.as_ptr(), none, libc::MS_BIND, none as _))?;
                }
                check(libc::chroot(root.as_ptr()))?;
                check(libc::chdir(workdir.as_ptr()))?;
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))
            });
        }
        cmd.spawn().with_context(|| format!("container {}: cannot start {:?} in its image", c.name, argv[0]))
    }

    fn record_pids(&self) {
        let pids = self.procs.iter().filter_map(|p| p.child.as_ref().and_then(Child::id)).collect();
        *self.pids.lock().unwrap() = pids;
    }

    /// Runs until the pod ends (restart policy) or is deleted.
    async fn supervise(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                self.terminate().await;
                return;
            }
            if Instant::now() >= self.next_secret_resync {
                self.resync_secrets().await;
                self.next_secret_resync = Instant::now() + SECRET_RESYNC;
            }
            let changed = self.step().await;
            if changed {
                self.record_pids();
            }
            // A gate's condition may have changed too: report when anything the kubelet owns did.
            if let Err(e) = self.report(changed).await {
                tracing::warn!(pod = %self.name, error = %e, "pod status");
            }
            if self.finished() {
                // The pod stays, Failed or Succeeded, until someone deletes it.
                let _ = stop.wait_for(|s| *s).await;
                self.terminate().await;
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = stop.changed() => {}
                _ = self.latest.changed() => {}
            }
        }
    }

    /// Brings the Secret volumes up to date, as the kubelet does while a pod runs: each file
    /// whose content differs from its Secret's is replaced atomically (the real kubelet swaps a
    /// `..data` symlink over all of a volume's files; a rename per file is enough for readers
    /// that re-read content). A Secret that cannot be fetched leaves its files as they are, as
    /// do keys removed from it (the real kubelet removes their files).
    async fn resync_secrets(&self) {
        for v in &self.secret_volumes {
            let name = v.source.secret_name.clone().unwrap_or_default();
            let files = match tokio::time::timeout(SECRET_FETCH_TIMEOUT, self.secrets.get(&name)).await {
                Ok(Ok(secret)) => secret_files(&secret, &v.source),
                Ok(Err(e)) => Err(e.into()),
                Err(_) => Err(anyhow::anyhow!("no answer within {SECRET_FETCH_TIMEOUT:?}")),
            };
            let files = match files {
                Ok(files) => files,
                Err(e) => {
                    let (pod, volume, error) = (&self.name, &v.volume, format!("{e:#}"));
                    tracing::warn!(%pod, %volume, secret = %name, %error, "Secret volume not resynced");
                    continue;
                }
            };
            let mode = v.source.default_mode.unwrap_or(0o644);
            let mut updated = BTreeSet::new();
            for dir in &v.dirs {
                for (path, data) in &files {
                    if std::fs::read(dir.join(path)).is_ok_and(|old| old == *data) {
                        continue;
                    }
                    match write_file(dir, path, data, mode, self.fs_group) {
                        Ok(()) => _ = updated.insert(path.as_str()),
                        Err(e) => {
                            let (pod, volume, error) = (&self.name, &v.volume, format!("{e:#}"));
                            tracing::warn!(%pod, %volume, file = %path, %error, "Secret file not updated");
                        }
                    }
                }
            }
            if !updated.is_empty() {
                let (pod, volume) = (&self.name, &v.volume);
                tracing::info!(%pod, %volume, secret = %name, files = ?updated, "Secret volume updated");
            }
        }
    }

    /// Notices exits, restarts per policy, runs due probes. Returns whether the status changed.
    async fn step(&mut self) -> bool {
        let mut changed = false;
        let now = Instant::now();
        for i in 0..self.procs.len() {
            let exited = match self.procs[i].child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.code().unwrap_or(137)),
                _ => None,
            };
            if let Some(code) = exited {
                let p = &mut self.procs[i];
                p.child = None;
                p.exit = Some(code);
                p.ready = false;
                changed = true;
                let restart = match self.restart_policy.as_str() {
                    "Always" => true,
                    "OnFailure" => code != 0,
                    _ => false,
                };
                if restart {
                    let c = p.container.clone();
                    // The run that ended is the container's previous log, as on a real node.
                    let _ = std::fs::rename(
                        self.dir.join(log_file(&c.name, false)),
                        self.dir.join(log_file(&c.name, true)),
                    );
                    if let Ok(child) = self.spawn(i, &c) {
                        let p = &mut self.procs[i];
                        p.child = Some(child);
                        p.exit = None;
                        p.restarts += 1;
                        p.started = Timestamp::now();
                        p.readiness = ProbeState::default();
                        p.liveness = ProbeState::default();
                    }
                }
                continue;
            }
            if self.procs[i].child.is_none() {
                continue;
            }
            let container = self.procs[i].container.clone();
            if let Some(probe) = &container.readiness_probe
                && let Some(ok) = self.due(i, probe, now, true).await
            {
                let p = &mut self.procs[i];
                let ready = update(&mut p.readiness, probe, ok, p.ready);
                changed |= ready != p.ready;
                p.ready = ready;
            } else if container.readiness_probe.is_none() && !self.procs[i].ready {
                self.procs[i].ready = true;
                changed = true;
            }
            if let Some(probe) = &container.liveness_probe
                && let Some(ok) = self.due(i, probe, now, false).await
            {
                let p = &mut self.procs[i];
                let alive = update(&mut p.liveness, probe, ok, true);
                if !alive && let Some(child) = p.child.as_mut() {
                    let _ = child.start_kill();
                }
            }
        }
        changed
    }

    /// Runs the probe if it is due; `None` if not yet.
    async fn due(&mut self, i: usize, probe: &Probe, now: Instant, readiness: bool) -> Option<bool> {
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        let p = &mut self.procs[i];
        let state = if readiness { &mut p.readiness } else { &mut p.liveness };
        let next = *state
            .next
            .get_or_insert(now + Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64));
        if now < next {
            return None;
        }
        state.next = Some(now + period);
        let get = probe.http_get.as_ref()?;
        let port = match &get.port {
            IntOrString::Int(n) => *n as u16,
            IntOrString::String(name) => p
                .container
                .ports
                .iter()
                .flatten()
                .find(|cp| cp.name.as_deref() == Some(name))
                .map(|cp| cp.container_port as u16)?,
        };
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        Some(probe::http_get(&self.ip, port, get.path.as_deref().unwrap_or("/"), timeout).await)
    }

    fn finished(&self) -> bool {
        self.procs.iter().all(|p| p.child.is_none())
    }

    fn phase(&self) -> &'static str {
        if !self.finished() {
            "Running"
        } else if self.procs.iter().all(|p| p.exit == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        }
    }

    /// The readiness gates that are not True, with why (the kubelet's messages).
    fn gates_not_ready(&self) -> Vec<String> {
        let pod = self.latest.borrow();
        let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.clone()).unwrap_or_default();
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
        gates
            .iter()
            .filter_map(|g| match conditions.iter().find(|c| c.type_ == g.condition_type) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate \"{}\" does not exist.",
                    g.condition_type
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                    g.condition_type, c.status
                )),
                Some(_) => None,
            })
            .collect()
    }

    /// Writes the status when `changed` (the containers) or when Ready or ContainersReady
    /// would read differently from what was last reported.
    async fn report(&mut self, changed: bool) -> anyhow::Result<()> {
        let now = Time(Timestamp::now());
        let containers_ready = !self.finished() && self.procs.iter().all(|p| p.ready);
        let gates = self.gates_not_ready();
        let ready = containers_ready && gates.is_empty();
        let why = if !containers_ready {
            Some(("ContainersNotReady".to_string(), "containers with unready status".to_string()))
        } else if !gates.is_empty() {
            Some(("ReadinessGatesNotReady".to_string(), gates.join("; ")))
        } else {
            None
        };
        let next = |type_: &str, ok: bool, last: Option<&Condition>, why: Option<(String, String)>| {
            let status = if ok { "True" } else { "False" };
            let since = last.filter(|c| c.status == status).map_or(now.clone(), |c| c.since.clone());
            Condition { type_: type_.into(), status, since, why }
        };
        let last = self.reported.clone();
        let ready_c = next("Ready", ready, last.as_ref().map(|l| &l.0), why.clone());
        let containers_c =
            next("ContainersReady", containers_ready, last.as_ref().map(|l| &l.1), why.filter(|_| !containers_ready));
        if !changed && last.as_ref().is_some_and(|(r, c)| r.status == ready_c.status && c.status == containers_c.status)
        {
            return Ok(());
        }
        let cond = |type_: &str| json!({"type": type_, "status": "True", "lastTransitionTime": Time(self.started)});
        let containers: Vec<Value> = self
            .procs
            .iter()
            .map(|p| {
                let state = match (p.child.is_some(), p.exit) {
                    (true, _) => json!({"running": {"startedAt": Time(p.started)}}),
                    (false, code) => json!({"terminated": {
                        "exitCode": code.unwrap_or(137),
                        "reason": if code == Some(0) { "Completed" } else { "Error" },
                        "startedAt": Time(p.started),
                        "finishedAt": now,
                    }}),
                };
                json!({
                    "name": p.container.name,
                    "image": p.container.image,
                    "imageID": "",
                    "ready": p.ready,
                    "started": p.child.is_some(),
                    "restartCount": p.restarts,
                    "state": state,
                })
            })
            .collect();
        let status = json!({"status": {
            "phase": self.phase(),
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "startTime": Time(self.started),
            "conditions": [
                cond("PodScheduled"),
                cond("Initialized"),
                containers_c.json(),
                ready_c.json(),
            ],
            "containerStatuses": containers,
        }});
        // Merged by type: the conditions of readiness gates belong to someone else.
        self.api.patch_status(&self.name, &PatchParams::default(), &Patch::Strategic(status)).await?;
        self.reported = Some((ready_c, containers_c));
        Ok(())
    }

    /// SIGTERM, the grace period the deletion asked for (else the pod's), SIGKILL; then the
    /// pod object goes.
    async fn terminate(mut self) {
        let grace = {
            let pod = self.latest.borrow();
            let spec_grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds);
            pod.metadata.deletion_grace_period_seconds.or(spec_grace).unwrap_or(30).max(0) as u64
        };
        for p in &self.procs {
            if let Some(pid) = p.child.as_ref().and_then(Child::id) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(grace);
        for p in &mut self.procs {
            if let Some(child) = p.child.as_mut() {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
            }
        }
        self.pids.lock().unwrap().clear();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        let _ = self.api.delete(&self.name, &params).await;
    }
}

/// A pod condition the kubelet owns, as last reported.
#[derive(Clone)]
struct Condition {
    type_: String,
    status: &'static str,
    since: Time,
    /// Reason and message while False.
    why: Option<(String, String)>,
}

impl Condition {
    fn json(&self) -> Value {
        let mut c = json!({"type": self.type_, "status": self.status, "lastTransitionTime": self.since});
        if let Some((reason, message)) = &self.why {
            c["reason"] = reason.clone().into();
            c["message"] = message.clone().into();
        }
        c
    }
}

/// Probe bookkeeping: returns the new state after one result.
fn update(state: &mut ProbeState, probe: &Probe, ok: bool, current: bool) -> bool {
    if ok {
        state.failures = 0;
        state.successes += 1;
        if state.successes >= probe.success_threshold.unwrap_or(1) { true } else { current }
    } else {
        state.successes = 0;
        state.failures += 1;
        if state.failures >= probe.failure_threshold.unwrap_or(3) { false } else { current }
    }
}

/// The unpacked image a pod's reference names (`imagePullPolicy: Never` in effect: nothing is
/// pulled).
fn image_for<'a>(images: &'a [Image], reference: &str) -> Option<&'a Image> {
    let wanted = image::normalize(reference);
    images.iter().find(|i| i.name == wanted)
}

/// Copies each volume the container mounts into its root, at the mount path.
fn mount_volumes(c: &Container, volumes: &HashMap<String, PathBuf>, root: &Path) -> anyhow::Result<()> {
    for m in c.volume_mounts.iter().flatten() {
        let Some(src) = volumes.get(&m.name) else { continue };
        let dst = root.join(m.mount_path.trim_start_matches('/'));
        copy_tree(src, &dst).with_context(|| format!("volume {} at {}", m.name, m.mount_path))?;
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(dst)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&from, &to)?;
        } else {
            std::fs::copy(&from, &to)?;
            let m = std::fs::metadata(&from)?;
            std::os::unix::fs::chown(&to, Some(m.uid()), Some(m.gid()))?;
        }
    }
    Ok(())
}

/// Writes each volume's files (Secret, projected service account token, root CA and
/// namespace, emptyDir); returns volume name → directory.
async fn write_volumes(shared: &Shared, ns: &str, pod: &Pod, dir: &Path) -> anyhow::Result<HashMap<String, PathBuf>> {
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), ns);
    let mut out = HashMap::new();
    let fs_group = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|c| c.fs_group);
    let write = |vdir: &Path, path: &str, data: &[u8], mode: i32| {
        write_file(vdir, path, data, mode, fs_group.map(|g| g as u32))
    };
    for v in pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default() {
        let vdir = dir.join("volumes").join(&v.name);
        std::fs::create_dir_all(&vdir)?;
        if let Some(source) = &v.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let secret = secrets.get(&name).await.with_context(|| format!("volume {}: Secret {name}", v.name))?;
            for (path, data) in secret_files(&secret, source).with_context(|| format!("volume {}", v.name))? {
                write(&vdir, &path, &data, source.default_mode.unwrap_or(0o644))?;
            }
        } else if let Some(projected) = &v.projected {
            // What the ServiceAccount admission plugin adds (kube-api-access-*): a bound token,
            // the cluster's CA (the kube-root-ca.crt ConfigMap), the namespace.
            let mode = projected.default_mode.unwrap_or(0o644);
            for source in projected.sources.iter().flatten() {
                if let Some(t) = &source.service_account_token {
                    write(
                        &vdir,
                        &t.path,
                        service_account_token(shared, ns, pod, t.expiration_seconds).await?.as_bytes(),
                        mode,
                    )?;
                }
                if let Some(cm) = &source.config_map {
                    let data = config_map(shared, ns, &cm.name).await.with_context(|| format!("volume {}", v.name))?;
                    for item in cm.items.iter().flatten() {
                        let value = data
                            .get(&item.key)
                            .with_context(|| format!("ConfigMap {} has no {}", cm.name, item.key))?;
                        write(&vdir, &item.path, value.as_bytes(), item.mode.unwrap_or(mode))?;
                    }
                }
                if let Some(d) = &source.downward_api {
                    for item in d.items.iter().flatten() {
                        let value = match item.field_ref.as_ref().map(|f| f.field_path.as_str()) {
                            Some("metadata.namespace") => ns.to_string(),
                            Some("metadata.name") => pod.name_any(),
                            other => bail!("volume {}: downward API field {other:?} is not supported", v.name),
                        };
                        write(&vdir, &item.path, value.as_bytes(), item.mode.unwrap_or(mode))?;
                    }
                }
            }
        } else if v.empty_dir.is_some() {
            std::fs::set_permissions(&vdir, std::fs::Permissions::from_mode(0o777))?;
        } else {
            tracing::warn!(volume = %v.name, "only Secret, projected and emptyDir volumes are supported: left empty");
        }
        out.insert(v.name.clone(), vdir);
    }
    Ok(out)
}

/// The files of a Secret volume: path → content.
fn secret_files(secret: &Secret, source: &SecretVolumeSource) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let name = secret.name_any();
    let data = secret.data.clone().unwrap_or_default();
    let files: Vec<(String, String)> = match &source.items {
        Some(items) => items.iter().map(|i| (i.key.clone(), i.path.clone())).collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    files
        .into_iter()
        .map(|(key, path)| match data.get(&key) {
            Some(value) => Ok((path, value.0.clone())),
            None => bail!("Secret {name} has no key {key}"),
        })
        .collect()
}

/// Writes a volume's file as the kubelet does: the volume's mode, the pod's fsGroup as the
/// group, and atomically (a temporary file in the same directory, renamed over the file), so
/// that a reader never sees half a file.
fn write_file(vdir: &Path, path: &str, data: &[u8], mode: i32, fs_group: Option<u32>) -> anyhow::Result<()> {
    let file = vdir.join(path);
    let parent = file.parent().context("a volume file without a directory")?;
    std::fs::create_dir_all(parent)?;
    let name = file.file_name().context("a volume file without a name")?.to_string_lossy();
    let tmp = parent.join(format!(".{name}.tmp"));
    // Created with the volume's mode (less the umask, hence set again): never readable by others.
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode as u32).open(&tmp)?;
    std::io::Write::write_all(&mut f, data)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode as u32))?;
    if let Some(gid) = fs_group {
        std::os::unix::fs::chown(&tmp, None, Some(gid))?;
    }
    std::fs::rename(&tmp, &file).with_context(|| format!("{}", file.display()))?;
    Ok(())
}

/// A token for the pod's service account, bound to the pod (TokenRequest), as the kubelet
/// mounts it.
async fn service_account_token(
    shared: &Shared,
    ns: &str,
    pod: &Pod,
    expiration: Option<i64>,
) -> anyhow::Result<String> {
    let sa = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(expiration.unwrap_or(3607)),
            bound_object_ref: Some(k8s_openapi::api::authentication::v1::BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(shared.client.clone(), ns);
    let made = api
        .create_token_request(&sa, &Default::default(), &request)
        .await
        .with_context(|| format!("a token for service account {ns}/{sa}"))?;
    made.status.and_then(|s| s.token).context("a TokenRequest without a token")
}

/// A ConfigMap's data; waits a little for it (kube-root-ca.crt appears in a new namespace
/// shortly after the namespace).
async fn config_map(shared: &Shared, ns: &str, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match api.get_opt(name).await? {
            Some(cm) => return Ok(cm.data.unwrap_or_default()),
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            None => bail!("ConfigMap {ns}/{name} not found"),
        }
    }
}

/// The container's environment: values, downward-API fields and Secret keys.
async fn environment(
    shared: &Shared,
    ns: &str,
    pod: &Pod,
    c: &Container,
    ip: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            v.clone()
        } else if let Some(from) = &e.value_from {
            if let Some(field) = &from.field_ref {
                match field.field_path.as_str() {
                    "status.podIP" => ip.to_string(),
                    "status.hostIP" => shared.node_ip(),
                    "metadata.name" => pod.name_any(),
                    "metadata.namespace" => ns.to_string(),
                    "metadata.uid" => pod.uid().unwrap_or_default(),
                    "spec.nodeName" => shared.config.node.clone(),
                    other => bail!("env {}: field {other} is not supported by the process kubelet", e.name),
                }
            } else if let Some(key) = &from.secret_key_ref {
                let secret: Secret = Api::namespaced(shared.client.clone(), ns).get(&key.name).await?;
                let bytes = secret.data.unwrap_or_default().remove(&key.key).map(|b| b.0).unwrap_or_default();
                String::from_utf8(bytes)?
            } else {
                bail!("env {}: this source is not supported by the process kubelet", e.name)
            }
        } else {
            String::new()
        };
        env.insert(e.name.clone(), value);
    }
    Ok(env)
}

/// `$(VAR)` expanded from the container's environment, as the kubelet does for command and args.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut a = arg.to_string();
    for (k, v) in env {
        a = a.replace(&format!("$({k})"), v);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::KeyToPath;

    #[test]
    fn a_secret_volumes_files_are_its_keys_or_its_items() {
        let secret = Secret {
            metadata: kube::api::ObjectMeta { name: Some("cert".into()), ..Default::default() },
            data: Some(
                [("tls.crt".into(), ByteString(b"c".to_vec())), ("tls.key".into(), ByteString(b"k".to_vec()))].into(),
            ),
            ..Default::default()
        };
        let whole = SecretVolumeSource::default();
        assert_eq!(
            secret_files(&secret, &whole).unwrap(),
            [("tls.crt".to_string(), b"c".to_vec()), ("tls.key".to_string(), b"k".to_vec())]
        );
        let item = |key: &str, path: &str| KeyToPath { key: key.into(), path: path.into(), ..Default::default() };
        let items = SecretVolumeSource { items: Some(vec![item("tls.key", "private/key.pem")]), ..Default::default() };
        assert_eq!(secret_files(&secret, &items).unwrap(), [("private/key.pem".to_string(), b"k".to_vec())]);
        let missing = SecretVolumeSource { items: Some(vec![item("ca.crt", "ca.crt")]), ..Default::default() };
        assert_eq!(secret_files(&secret, &missing).unwrap_err().to_string(), "Secret cert has no key ca.crt");
    }

    #[test]
    fn a_volume_file_is_replaced_whole_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        write_file(dir.path(), "users", b"app:first\n", 0o440, None).unwrap();
        let before = std::fs::metadata(dir.path().join("users")).unwrap();
        write_file(dir.path(), "users", b"app:second\n", 0o440, None).unwrap();
        let file = dir.path().join("users");
        assert_eq!(std::fs::read(&file).unwrap(), b"app:second\n");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o440);
        // A new inode renamed over the old one: a reader of the old one never sees half a file.
        use std::os::unix::fs::MetadataExt;
        assert_ne!(std::fs::metadata(&file).unwrap().ino(), before.ino());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["users"], "no temporary file left");
    }
}
