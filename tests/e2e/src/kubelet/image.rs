//! Images: the OCI archives `scripts/images.sh` writes (an OCI image layout in a tar), unpacked
//! once per test run into a root filesystem; each container then gets its own copy of that
//! tree (hard links) to be `chroot`ed into, with its volumes written at their mount paths.
//!
//! As a container runtime does: the manifest's layers are applied in order (whiteouts
//! included), and the image's configuration gives the entrypoint, command, environment, user
//! and working directory.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;

/// An unpacked image.
#[derive(Clone, Debug)]
pub struct Image {
    /// The full reference the archive names, e.g. `docker.io/cachepair/cache-node:0.1.0`.
    pub name: String,
    pub rootfs: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `uid[:gid]` or a name from the image's /etc/passwd; empty: root.
    pub user: String,
    pub working_dir: String,
}

/// A reference as container runtimes read it: `cachepair/cache-node:0.1.0` is
/// `docker.io/cachepair/cache-node:0.1.0`, `busybox` is `docker.io/library/busybox:latest`.
pub fn normalize(reference: &str) -> String {
    let (name, tag) = match reference.split_once('@') {
        Some((n, d)) => (n.to_string(), format!("@{d}")),
        None => match reference.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((n, t)) => (n.to_string(), format!(":{t}")),
            None => (reference.to_string(), ":latest".to_string()),
        },
    };
    let first = name.split('/').next().unwrap_or_default();
    let name = if name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost") {
        name
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    format!("{name}{tag}")
}

/// Unpacks the archive into `dir` (its blobs under `dir/layout`, the root filesystem under
/// `dir/rootfs`). Needs root (file owners are kept).
pub fn unpack(archive: &Path, dir: &Path) -> anyhow::Result<Image> {
    let layout = dir.join("layout");
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&layout)?;
    std::fs::create_dir_all(&rootfs)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    tar(&["-xf".as_ref(), archive.as_os_str(), "-C".as_ref(), layout.as_os_str()])
        .with_context(|| format!("{}: not a tar archive", archive.display()))?;
    let read = |path: &Path| -> anyhow::Result<Value> {
        Ok(serde_json::from_slice(&std::fs::read(path).with_context(|| path.display().to_string())?)?)
    };
    let blob = |digest: &str| -> anyhow::Result<PathBuf> {
        let (alg, hex) = digest.split_once(':').context("a digest without its algorithm")?;
        Ok(layout.join("blobs").join(alg).join(hex))
    };
    let index = read(&layout.join("index.json")).context("not an OCI image layout")?;
    let manifests = index["manifests"].as_array().context("index.json: no manifests")?;
    ensure!(manifests.len() == 1, "{}: {} images; one is expected", archive.display(), manifests.len());
    let desc = &manifests[0];
    let annotations = &desc["annotations"];
    let name = annotations["io.containerd.image.name"]
        .as_str()
        .or(annotations["org.opencontainers.image.ref.name"].as_str())
        .map(normalize)
        .context("index.json names no image (io.containerd.image.name)")?;
    let manifest = read(&blob(desc["digest"].as_str().context("no manifest digest")?)?)?;
    let config = read(&blob(manifest["config"]["digest"].as_str().context("no config digest")?)?)?;
    for layer in manifest["layers"].as_array().context("no layers")? {
        let media = layer["mediaType"].as_str().unwrap_or_default();
        let path = blob(layer["digest"].as_str().context("a layer without a digest")?)?;
        let z = match media {
            m if m.ends_with(".tar") => None,
            m if m.ends_with("+gzip") || m.ends_with(".gzip") => Some("-z"),
            m if m.ends_with("+zstd") => Some("--zstd"),
            m => bail!("layer media type {m} is not supported"),
        };
        apply_layer(&path, z, &rootfs)?;
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let c = &config["config"];
    let env = strings(&c["Env"])
        .into_iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    Ok(Image {
        name,
        rootfs,
        entrypoint: strings(&c["Entrypoint"]),
        cmd: strings(&c["Cmd"]),
        env,
        user: c["User"].as_str().unwrap_or_default().to_string(),
        working_dir: c["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/").to_string(),
    })
}

/// One layer onto the root filesystem: whiteouts first (`.wh.NAME` removes NAME,
/// `.wh..wh..opq` empties its directory of what lower layers put there), then the files.
fn apply_layer(layer: &Path, z: Option<&str>, rootfs: &Path) -> anyhow::Result<()> {
    let mut list: Vec<&std::ffi::OsStr> = vec!["-tf".as_ref(), layer.as_os_str()];
    list.extend(z.map(std::ffi::OsStr::new));
    let names = tar(&list)?;
    for name in names.lines() {
        let name = name.trim_start_matches("./");
        let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
        let Some(hidden) = base.strip_prefix(".wh.") else { continue };
        ensure!(!dir.split('/').any(|p| p == ".."), "a whiteout outside the root: {name}");
        let target = rootfs.join(dir);
        if hidden == ".wh..opq" {
            for entry in std::fs::read_dir(&target).into_iter().flatten().flatten() {
                remove(&entry.path())?;
            }
        } else {
            remove(&target.join(hidden))?;
        }
    }
    let mut extract: Vec<&std::ffi::OsStr> = vec![
        "-xf".as_ref(),
        layer.as_os_str(),
        "-C".as_ref(),
        rootfs.as_os_str(),
        "--same-owner".as_ref(),
        "--numeric-owner".as_ref(),
        "--same-permissions".as_ref(),
        "--exclude=.wh.*".as_ref(),
        "--exclude=*/.wh.*".as_ref(),
    ];
    extract.extend(z.map(std::ffi::OsStr::new));
    tar(&extract).map(drop)
}

fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path)?,
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    Ok(())
}

fn tar(args: &[&std::ffi::OsStr]) -> anyhow::Result<String> {
    let out = Command::new("tar").args(args).output().context("tar")?;
    ensure!(out.status.success(), "tar: {}", String::from_utf8_lossy(&out.stderr).trim());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A container's own root: `image`'s tree with every file hard-linked (the image's files are
/// root's and read-only to the container's user), directories and symlinks made anew.
/// Also the mount points of what a runtime gives every container (see [`DEVICES`]).
pub fn container_root(image: &Image, dst: &Path) -> anyhow::Result<()> {
    link_tree(&image.rootfs, dst)?;
    let proc = dst.join("proc");
    std::fs::create_dir_all(&proc)?;
    std::fs::set_permissions(&proc, std::fs::Permissions::from_mode(0o555))?;
    std::fs::create_dir_all(dst.join("dev"))?;
    for dev in DEVICES {
        let file = dst.join(dev.trim_start_matches('/'));
        if !file.exists() {
            std::fs::write(&file, b"")?;
        }
    }
    Ok(())
}

/// The devices a container runtime binds into every container (those programs use).
pub const DEVICES: [&str; 4] = ["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];

fn link_tree(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    std::fs::create_dir_all(dst)?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&from, &to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
            let m = std::fs::symlink_metadata(&from)?;
            std::os::unix::fs::lchown(&to, Some(m.uid()), Some(m.gid()))?;
        } else {
            std::fs::hard_link(&from, &to)?;
        }
    }
    Ok(())
}

/// `uid[:gid]` of the image's user: numbers, or names looked up in its /etc/passwd and
/// /etc/group. An empty user is root.
pub fn user_ids(image: &Image) -> anyhow::Result<(u32, Option<u32>)> {
    let (user, group) = match image.user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image.user.as_str(), None),
    };
    let lookup = |file: &str, name: &str, field: usize| -> anyhow::Result<u32> {
        if let Ok(n) = name.parse() {
            return Ok(n);
        }
        let text = std::fs::read_to_string(image.rootfs.join(file)).unwrap_or_default();
        let line = text.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f[0] == name);
        line.and_then(|f| f.get(field)?.parse().ok()).with_context(|| format!("image user {name}: not in /{file}"))
    };
    if user.is_empty() {
        return Ok((0, Some(0)));
    }
    let uid = lookup("etc/passwd", user, 2)?;
    let gid = match group {
        Some(g) => Some(lookup("etc/group", g, 2)?),
        None => lookup("etc/passwd", user, 3).ok(),
    };
    Ok((uid, gid))
}

/// The image's environment under the container's (the container's wins).
pub fn environment(image: &Image, container: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = image.env.iter().cloned().collect();
    env.extend(container.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// As Kubernetes: the container's command replaces the ENTRYPOINT (and drops CMD); its args
/// replace CMD.
pub fn command_line(image: &Image, command: Option<&[String]>, args: Option<&[String]>) -> Vec<String> {
    match (command, args) {
        (Some(c), a) if !c.is_empty() => c.iter().chain(a.into_iter().flatten()).cloned().collect(),
        (_, Some(a)) if !a.is_empty() => image.entrypoint.iter().chain(a).cloned().collect(),
        _ => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    }
}

/// The program as `execve` inside the root will find it: a name without a slash is looked up
/// in the container's PATH under `rootfs`, as runc does.
pub fn resolve(rootfs: &Path, program: &str, path: &str) -> String {
    if program.contains('/') {
        return program.to_string();
    }
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let candidate = format!("{}/{program}", dir.trim_end_matches('/'));
        let on_disk = rootfs.join(candidate.trim_start_matches('/'));
        if std::fs::metadata(&on_disk).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0) {
            return candidate;
        }
    }
    program.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_as_runtimes_do() {
        assert_eq!(normalize("cachepair/cache-node:0.1.0"), "docker.io/cachepair/cache-node:0.1.0");
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("ghcr.io/cachepair/operator:0.1.0"), "ghcr.io/cachepair/operator:0.1.0");
        assert_eq!(normalize("localhost:5000/x/y"), "localhost:5000/x/y:latest");
        assert_eq!(normalize("docker.io/cachepair/operator:0.1.0"), "docker.io/cachepair/operator:0.1.0");
    }

    #[test]
    fn command_and_args_override_as_in_kubernetes() {
        let image = Image {
            name: String::new(),
            rootfs: PathBuf::new(),
            entrypoint: vec!["/e".into()],
            cmd: vec!["c".into()],
            env: vec![],
            user: String::new(),
            working_dir: "/".into(),
        };
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(command_line(&image, None, None), s(&["/e", "c"]));
        assert_eq!(command_line(&image, None, Some(&s(&["a"]))), s(&["/e", "a"]));
        assert_eq!(command_line(&image, Some(&s(&["x"])), None), s(&["x"]));
        assert_eq!(command_line(&image, Some(&s(&["x"])), Some(&s(&["a"]))), s(&["x", "a"]));
    }
}
