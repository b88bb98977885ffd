#!/usr/bin/env python3
"""Assembles the cache-node and operator OCI images without a container daemon.

Each image is the final stage of its Dockerfile (docker/<name>.Dockerfile) rebuilt from parts:

- the base: what gcr.io/distroless/cc-debian12:nonroot holds that the binaries need, from
  Debian's own packages (`apt-get download libc6 libgcc-s1 ca-certificates`, unpacked, without
  docs, locales, gconv modules or maintainer scripts), plus /etc/passwd and /etc/group with
  `nonroot` (65532), /home/nonroot, /tmp, and the CA bundle update-ca-certificates would make;
  no shell;
- the binary: `COPY --from=builder /out/X /usr/local/bin/X` takes target/release/X (built by
  scripts/images.sh with `cargo build --release --locked`), with its debug info stripped
  (`objcopy --strip-debug`: symbols stay, for backtraces);
- the configuration: the Dockerfile's LABEL, USER, EXPOSE, ENTRYPOINT and CMD, read from the
  Dockerfile itself (ARG defaults and --build-arg style overrides from the environment: VERSION,
  REVISION), so that the two cannot drift; an instruction this script does not know fails.

Output, per image, one tar that is both an OCI image layout (oci-layout, index.json, blobs/)
and a `docker save` archive (manifest.json with RepoTags), as `docker save` writes since Docker
25: `kind load image-archive`, `k3s ctr images import`, `podman load`, `docker load` and
`skopeo copy oci-archive:…` / `docker-archive:…` take it. The image's name is in index.json
(`io.containerd.image.name`, which containerd and podman use) and in manifest.json's RepoTags.

Layers are uncompressed tars with sorted entries, uid/gid 0 (the home 65532), and every mtime
set to SOURCE_DATE_EPOCH (default: the last commit's time): the same binaries and packages give
the same digests.

Usage: scripts/images.py [--out DIR] [--prefix cachepair] [NAME...]   (NAME: cache-node, operator)
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# name → (Dockerfile, binary)
IMAGES = {
    "cache-node": ("docker/cache-node.Dockerfile", "cache-node"),
    "operator": ("docker/operator.Dockerfile", "cachepair-operator"),
}
# The runtime base every Dockerfile must name: what this script reproduces from packages.
BASE = "gcr.io/distroless/cc-debian12:nonroot"
PACKAGES = ["libc6", "libgcc-s1", "ca-certificates"]
# Left out of the base: documentation, translations, charset converters, maintainer tools.
DROP = re.compile(r"^(usr/share/(doc|man|info|locale|lintian|bug)|usr/lib/[^/]+/gconv|usr/sbin|etc/ca-certificates)(/|$)")
# As distroless: PATH, the CA bundle, the home of nonroot.
ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]
WORKDIR = "/home/nonroot"
PASSWD = ("root:x:0:0:root:/root:/sbin/nologin\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
          "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
GROUP = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def fail(msg: str) -> None:
    print(f"images: {msg}", file=sys.stderr)
    sys.exit(1)


# -- the Dockerfile --------------------------------------------------------------------------

def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out, current = [], ""
    for raw in path.read_text().splitlines():
        if not current and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    return out


def runtime_stage(path: Path) -> dict:
    """The final stage of a Dockerfile as an image configuration plus its COPY --from=builder."""
    ins = instructions(path)
    last = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    if ins[last][1] != BASE:
        fail(f"{path}: the runtime stage is FROM {ins[last][1]}, this script builds {BASE}")
    args: dict[str, str] = {}
    stage = {"labels": {}, "copies": [], "user": None, "exposed": [], "entrypoint": None, "cmd": None}

    def expand(s: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), s)

    for word, rest in ins[last + 1:]:
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = os.environ.get(name) or default
        elif word == "LABEL":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                stage["labels"][key] = expand(value)
        elif word == "COPY":
            parts = rest.split()
            if len(parts) != 3 or parts[0] != "--from=builder" or not parts[1].startswith("/out/"):
                fail(f"{path}: COPY {rest}: only `COPY --from=builder /out/BINARY DEST` is understood")
            stage["copies"].append((parts[1][len("/out/"):], parts[2]))
        elif word == "USER":
            stage["user"] = expand(rest)
        elif word == "EXPOSE":
            stage["exposed"] += [p if "/" in p else f"{p}/tcp" for p in expand(rest).split()]
        elif word in ("ENTRYPOINT", "CMD"):
            value = json.loads(rest)
            if not isinstance(value, list):
                fail(f"{path}: {word} must be in exec (JSON) form")
            stage[word.lower()] = value
        else:
            fail(f"{path}: {word} in the runtime stage is not understood by scripts/images.py")
    return stage


# -- layers ----------------------------------------------------------------------------------

class Layer:
    """A layer's entries by path; written sorted, with fixed owners and times."""

    def __init__(self, mtime: int):
        self.mtime = mtime
        self.entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, path: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.uid, info.gid = kind, mode, uid, gid
        info.uname = info.gname = ""
        info.mtime = self.mtime
        return info

    def parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = (self._info(d, tarfile.DIRTYPE, 0o755), None)

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self.parents(path)
        self.entries[path] = (self._info(path, tarfile.DIRTYPE, mode, uid, gid), None)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.parents(path)
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.entries[path] = (info, data)

    def symlink(self, path: str, target: str) -> None:
        self.parents(path)
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.entries[path] = (info, None)

    def tar(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(self.entries):
                info, data = self.entries[path]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def debs(cache: Path) -> list[Path]:
    """The base's packages, downloaded once into `cache` (apt-get download: no root needed)."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for pkg in PACKAGES:
        query = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True)
        m = re.search(r"Candidate: (\S+)", query.stdout)
        if not m or m.group(1) == "(none)":
            fail(f"apt knows no candidate for {pkg}: run `apt-get update` (Debian 12 is expected)")
        version = m.group(1)
        found = [p for p in cache.glob(f"{pkg}_*.deb")
                 if p.name.split("_")[1].replace("%3a", ":") == version]
        if not found:
            r = subprocess.run(["apt-get", "download", "-q", f"{pkg}={version}"], cwd=cache,
                               capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"apt-get download {pkg}={version}: {r.stderr.strip()}")
            found = [p for p in cache.glob(f"{pkg}_*.deb")
                     if p.name.split("_")[1].replace("%3a", ":") == version]
        out.append(found[0])
    return out


def base_layer(packages: list[Path], mtime: int) -> tuple[Layer, dict[str, str]]:
    layer = Layer(mtime)
    versions = {}
    certs = []
    for deb in packages:
        name, version = deb.name.split("_")[:2]
        versions[name] = version.replace("%3a", ":")
        fsys = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(fsys)) as tar:
            for m in tar.getmembers():
                path = m.name.removeprefix("./").rstrip("/")
                if path in ("", ".") or DROP.match(path):
                    continue
                if m.isdir():
                    layer.dir(path, m.mode & 0o7777)
                elif m.issym():
                    layer.symlink(path, m.linkname)
                elif m.islnk():
                    target = m.linkname.removeprefix("./")
                    layer.file(path, layer.entries[target][1], m.mode & 0o7777)
                elif m.isfile():
                    data = tar.extractfile(m).read()
                    layer.file(path, data, m.mode & 0o7777)
                    if path.startswith("usr/share/ca-certificates/") and path.endswith(".crt"):
                        certs.append((path, data))
                else:
                    fail(f"{deb.name}: {m.name}: unexpected entry type")
    # What update-ca-certificates (ca-certificates' postinst) would write.
    bundle = b"".join(d if d.endswith(b"\n") else d + b"\n" for _, d in sorted(certs))
    layer.file("etc/ssl/certs/ca-certificates.crt", bundle)
    layer.file("etc/passwd", PASSWD.encode())
    layer.file("etc/group", GROUP.encode())
    layer.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    layer.dir("tmp", 0o1777)
    layer.dir("root", 0o700)
    layer.dir("home/nonroot", 0o700, 65532, 65532)
    return layer, versions


def binary_layer(copies: list[tuple[str, str]], release: Path, mtime: int) -> Layer:
    layer = Layer(mtime)
    for binary, dest in copies:
        src = release / binary
        if not src.is_file():
            fail(f"{src} is missing: build it first (cargo build --release --locked)")
        with tempfile.TemporaryDirectory() as tmp:
            stripped = Path(tmp) / binary
            r = subprocess.run(["objcopy", "--strip-debug", str(src), str(stripped)], capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"objcopy --strip-debug {src}: {r.stderr.strip()}")
            data = stripped.read_bytes()
        layer.file(dest.lstrip("/"), data, 0o755)
    return layer


def needed_libraries(path: Path) -> list[str]:
    """DT_NEEDED of an ELF binary (readelf), to check that the base has them."""
    r = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


# -- the archive -----------------------------------------------------------------------------

def blob(blobs: dict[str, bytes], data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def architecture() -> str:
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    return {"amd64": "amd64", "arm64": "arm64", "armhf": "arm", "ppc64el": "ppc64le",
            "s390x": "s390x", "i386": "386"}.get(arch, arch)


def build(name: str, prefix: str, out: Path, base: Layer, versions: dict[str, str], mtime: int) -> Path:
    dockerfile, _ = IMAGES[name]
    stage = runtime_stage(REPO / dockerfile)
    version = stage["labels"].get("org.opencontainers.image.version") or "latest"
    ref = f"{prefix}/{name}:{version}"
    full = ref if "." in ref.split("/")[0] or ":" in ref.split("/")[0] else f"docker.io/{ref}"
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    top = binary_layer(stage["copies"], REPO / "target" / "release", mtime)

    # The base must hold every library the binaries ask for.
    libs = {p.rsplit("/", 1)[-1] for p in base.entries}
    for binary, dest in stage["copies"]:
        missing = [lib for lib in needed_libraries(REPO / "target" / "release" / binary) if lib not in libs]
        if missing:
            fail(f"{name}: {dest} needs {missing}, which the base does not have")

    blobs: dict[str, bytes] = {}
    layers, diff_ids = [], []
    for layer in (base, top):
        data = layer.tar()
        desc = blob(blobs, data)
        layers.append({"mediaType": OCI_LAYER, **desc})
        diff_ids.append(desc["digest"])
    packages = " ".join(f"{p}={v}" for p, v in sorted(versions.items()))
    config = {
        "created": created,
        "architecture": architecture(),
        "os": "linux",
        "config": {
            "User": stage["user"],
            "ExposedPorts": {p: {} for p in stage["exposed"]},
            "Env": ENV,
            "Entrypoint": stage["entrypoint"],
            "Cmd": stage["cmd"],
            "WorkingDir": WORKDIR,
            "Labels": stage["labels"],
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": created, "created_by": f"scripts/images.py: {BASE} from Debian packages: {packages}"},
            {"created": created, "created_by": "scripts/images.py: " + ", ".join(
                f"COPY target/release/{b} {d}" for b, d in stage["copies"])},
        ],
    }
    if config["config"]["Cmd"] is None:
        del config["config"]["Cmd"]
    config_desc = blob(blobs, canonical(config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **config_desc},
        "layers": layers,
        "annotations": {"org.opencontainers.image.created": created,
                        "org.opencontainers.image.base.name": BASE},
    }
    manifest_desc = blob(blobs, canonical(manifest))
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            **manifest_desc,
            "platform": {"architecture": config["architecture"], "os": "linux"},
            "annotations": {"io.containerd.image.name": full,
                            "org.opencontainers.image.ref.name": version},
        }],
    }
    docker_manifest = [{
        "Config": "blobs/sha256/" + config_desc["digest"].split(":")[1],
        "RepoTags": [ref],
        "Layers": ["blobs/sha256/" + d.split(":")[1] for d in diff_ids],
    }]

    archive = Layer(mtime)
    archive.file("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
    archive.file("index.json", canonical(index))
    archive.file("manifest.json", canonical(docker_manifest))
    for digest, data in blobs.items():
        archive.file("blobs/sha256/" + digest.split(":")[1], data)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{version}.oci.tar"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(archive.tar())
    tmp.replace(path)
    print(f"{ref}\t{path.relative_to(REPO) if path.is_relative_to(REPO) else path}\t"
          f"{manifest_desc['digest']}\t{sum(len(b) for b in blobs.values()) // (1 << 20)} MiB")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "target" / "images"))
    parser.add_argument("--prefix", default=os.environ.get("IMAGE_PREFIX", "cachepair"),
                        help="repository prefix of the image names (default cachepair)")
    parser.add_argument("names", nargs="*", default=list(IMAGES))
    a = parser.parse_args()
    for n in a.names:
        if n not in IMAGES:
            fail(f"unknown image {n}: one of {', '.join(IMAGES)}")
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        r = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True)
        epoch = r.stdout.strip() or "0"
    os.environ.setdefault("REVISION", subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cachepair" / "debs"
    base, versions = base_layer(debs(cache), int(epoch))
    for n in a.names:
        build(n, a.prefix, Path(a.out), base, versions, int(epoch))


if __name__ == "__main__":
    main()
