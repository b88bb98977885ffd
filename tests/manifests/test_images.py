"""The images of scripts/images.sh: what they declare agrees with the Dockerfiles, the names are
the ones the chart, deploy/ and the CRD default to, and the archives are what image tools read.

The archive tests need the images built (`scripts/images.sh`, which tests/run.sh runs before
these tests); they skip, saying so, when target/images has none. skopeo (tests/setup.sh
installs it) reads the archives as registries and runtimes do.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from chartkit import images

REPO = Path(__file__).resolve().parent.parent.parent
IMAGES_DIR = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "images"


VERSION = "0.1.0"
# name → (binary, ports, CMD)
EXPECTED = {
    "cache-node": ("cache-node", ["11211/tcp", "11212/tcp", "9150/tcp"],
                   ["--admin-listen", "0.0.0.0:9150"]),
    "operator": ("cachepair-operator", ["8080/tcp"], None),
}


def archive(name: str) -> Path:
    path = IMAGES_DIR / f"{name}-{VERSION}.oci.tar"
    if not path.is_file():
        pytest.skip(f"{path} is not built: run scripts/images.sh")
    return path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_script_reads_the_dockerfiles_runtime_stage(name):
    binary, ports, cmd = EXPECTED[name]
    dockerfile, script_binary = images.IMAGES[name]
    assert script_binary == binary
    stage = images.runtime_stage(REPO / dockerfile)
    assert stage["copies"] == [(binary, f"/usr/local/bin/{binary}")]
    assert stage["entrypoint"] == [f"/usr/local/bin/{binary}"]
    assert stage["cmd"] == cmd
    assert stage["user"] == "65532:65532"
    assert stage["exposed"] == ports
    assert stage["labels"]["org.opencontainers.image.version"] == VERSION
    assert stage["labels"]["org.opencontainers.image.title"] in (name, f"cachepair-{name}")


def test_the_defaults_name_the_scripts_images():
    values = yaml.safe_load((REPO / "charts/cachepair-operator/values.yaml").read_text())
    chart = yaml.safe_load((REPO / "charts/cachepair-operator/Chart.yaml").read_text())
    assert f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}" \
        == f"cachepair/operator:{VERSION}"
    assert values["image"]["pullPolicy"] == "IfNotPresent"
    assert f'image: "cachepair/operator:{VERSION}"' in (REPO / "deploy/operator.yaml").read_text()
    assert f"{values['vrrp']['image']['repository']}:{values['vrrp']['image']['tag'] or chart['appVersion']}" \
        == f"cachepair/cache-node:{VERSION}"
    assert f"--vrrp-image=cachepair/cache-node:{VERSION}" in (REPO / "deploy/operator.yaml").read_text()
    crd = (REPO / "crds/cachepair.yaml").read_text()
    assert f"default: cachepair/cache-node:{VERSION}" in crd
    sample = yaml.safe_load((REPO / "deploy/samples/cachepair-service.yaml").read_text())
    assert sample["spec"]["image"] == f"cachepair/cache-node:{VERSION}"
    # No file of the repository names an image that no command here produces.
    for path in [*REPO.glob("charts/**/*"), *REPO.glob("deploy/**/*"), *REPO.glob("crds/*"),
                 REPO / "README.md", *REPO.glob("docs/*.md")]:
        if path.is_file():
            assert "ghcr.io/cachepair" not in path.read_text(), path


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_archive_is_an_oci_layout_and_a_docker_archive(name):
    files = members(archive(name))
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    [desc] = index["manifests"]
    assert desc["annotations"]["io.containerd.image.name"] == f"docker.io/cachepair/{name}:{VERSION}"
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == VERSION
    for path, data in files.items():
        if path.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == path.rsplit("/", 1)[1], path
    manifest = json.loads(files["blobs/sha256/" + desc["digest"].split(":")[1]])
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    [docker] = json.loads(files["manifest.json"])
    assert docker["RepoTags"] == [f"cachepair/{name}:{VERSION}"]
    assert docker["Config"] == "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]
    assert docker["Layers"] == ["blobs/sha256/" + d.split(":")[1] for d in config["rootfs"]["diff_ids"]]

    binary, ports, cmd = EXPECTED[name]
    c = config["config"]
    assert c["User"] == "65532:65532"
    assert c["Entrypoint"] == [f"/usr/local/bin/{binary}"]
    assert c.get("Cmd") == cmd
    assert sorted(c["ExposedPorts"]) == sorted(ports)
    stage = images.runtime_stage(REPO / images.IMAGES[name][0])
    assert {k: v for k, v in c["Labels"].items() if k != "org.opencontainers.image.revision"} == \
        {k: v for k, v in stage["labels"].items() if k != "org.opencontainers.image.revision"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_image_runs_its_binary_on_its_own_libraries(name, tmp_path):
    """The rootfs, unpacked: no shell, the user nonroot, and the binary starts with the image's
    own loader and libraries (none of the host's)."""
    files = members(archive(name))
    index = json.loads(files["index.json"])
    manifest = json.loads(files["blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]])
    root = tmp_path / "rootfs"
    for layer in manifest["layers"]:
        data = files["blobs/sha256/" + layer["digest"].split(":")[1]]
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(root, filter="tar")
    assert not (root / "bin/sh").exists() and not (root / "usr/bin/sh").exists()
    assert "nonroot:x:65532:65532:" in (root / "etc/passwd").read_text()
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_text().count("BEGIN CERTIFICATE") > 100
    binary = EXPECTED[name][0]
    if images.architecture() != "amd64":
        pytest.skip("the loader's path below is x86-64's")
    # /lib64/ld-linux-x86-64.so.2 links (absolutely) to this one, inside the image.
    assert os.readlink(root / "lib64/ld-linux-x86-64.so.2") == "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    loader = root / "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    libs = [root / "lib/x86_64-linux-gnu", root / "usr/lib/x86_64-linux-gnu"]
    out = subprocess.run([str(loader), "--inhibit-cache", "--library-path", ":".join(map(str, libs)),
                          str(root / "usr/local/bin" / binary), "--version"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert VERSION in out.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_skopeo_reads_both_formats_by_name(name, tmp_path):
    """As a registry copy (oci-archive) and docker/podman load (docker-archive) select it."""
    if not shutil.which("skopeo"):
        pytest.skip("skopeo is not installed (tests/setup.sh installs it)")
    path = archive(name)
    binary = EXPECTED[name][0]
    for source in (f"oci-archive:{path}", f"oci-archive:{path}:{VERSION}",
                   f"docker-archive:{path}", f"docker-archive:{path}:cachepair/{name}:{VERSION}"):
        out = subprocess.run(["skopeo", "inspect", "--config", source], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, f"{source}: {out.stderr}"
        assert json.loads(out.stdout)["config"]["Entrypoint"] == [f"/usr/local/bin/{binary}"]
    out = subprocess.run(["skopeo", "copy", "-q", f"oci-archive:{path}", f"oci:{tmp_path / 'copy'}:{VERSION}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_archives_are_reproducible(tmp_path):
    """Two builds from the same binaries and packages are byte for byte the same."""
    archive("cache-node")
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "REVISION": "test"}
    digests = []
    for out in (tmp_path / "a", tmp_path / "b"):
        r = subprocess.run(["python3", str(REPO / "scripts/images.py"), "--out", str(out), "cache-node"],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        digests.append(hashlib.sha256((out / f"cache-node-{VERSION}.oci.tar").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
