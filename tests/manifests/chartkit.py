"""Helpers for the packaging tests: the helm binary, chart rendering, YAML loading.

helm is ``$HELM``, else the one tests/setup.sh builds into
``${XDG_CACHE_HOME:-~/.cache}/cachepair/tools/helm-<tests/manifests/helm-version>/helm``. A
missing helm is a test failure, never a silent skip. Every helm call is bounded.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "cachepair-operator"
DEPLOY = REPO / "deploy"
CRD_SOURCE = REPO / "crds" / "cachepair.yaml"  # `cargo run -p operator --bin crdgen` output

def _load_images_script():
    """scripts/images.py as a module: the image builder, whose Dockerfile reader the tests share."""
    spec = importlib.util.spec_from_file_location("images", REPO / "scripts" / "images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


images = _load_images_script()

RELEASE = "cachepair-operator"
RELEASE_NAMESPACE = "cachepair-system"
MIN_KUBE_VERSION = "1.30.0"  # Chart.yaml's kubeVersion floor
HELM_TIMEOUT = 60.0  # seconds; a render takes well under one


class HelmError(Exception):
    def __init__(self, argv: list[str], proc: subprocess.CompletedProcess):
        self.argv = argv
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr}")


@functools.cache
def helm_binary() -> Path:
    version = (Path(__file__).parent / "helm-version").read_text().strip()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    default = cache / "cachepair" / "tools" / f"helm-{version}" / "helm"
    path = Path(os.environ.get("HELM") or default)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"helm not found or not executable: {path}\n"
                    f"(tests/setup.sh builds helm {version} there; or set $HELM)", pytrace=False)
    return path


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    argv = [str(helm_binary()), *args]
    # Keep helm away from the user's repositories, plugins and kubeconfig.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
           "HELM_CACHE_HOME": "/nonexistent/helm-cache", "HELM_CONFIG_HOME": "/nonexistent/helm",
           "HELM_DATA_HOME": "/nonexistent/helm-data", "KUBECONFIG": "/nonexistent/kubeconfig"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=HELM_TIMEOUT, env=env,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise HelmError(argv, proc)
    return proc


def template_args(sets: tuple[str, ...], kube_version: str | None, chart: Path) -> list[str]:
    args = ["template", RELEASE, str(chart), "--namespace", RELEASE_NAMESPACE]
    if kube_version:
        args += ["--kube-version", kube_version]
    for s in sets:
        args += ["--set", s]
    return args


@functools.cache
def _render(sets: tuple[str, ...], kube_version: str | None) -> str:
    return helm(*template_args(sets, kube_version, CHART)).stdout


def render(*sets: str, kube_version: str | None = MIN_KUBE_VERSION) -> list[dict]:
    """The chart's objects for `--set` values `sets` (cached; a fresh copy each call)."""
    return copy.deepcopy(parse_yaml_stream(_render(tuple(sets), kube_version), "helm template"))


def render_notes(tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as `helm install` would print it (helm template does not render it): a copy of
    the chart that renders it into a ConfigMap through `tpl`."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.txt")
    (chart / "templates" / "notes-preview.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | toJson }}\n')
    out = helm(*template_args(tuple(sets), MIN_KUBE_VERSION, chart),
               "--show-only", "templates/notes-preview.yaml").stdout
    return yaml.safe_load(out)["data"]["notes"]


def parse_yaml_stream(text: str, where: str) -> list[dict]:
    docs = []
    for i, doc in enumerate(yaml.safe_load_all(text)):
        if doc is None:  # an empty document (a template that rendered nothing)
            continue
        assert isinstance(doc, dict), f"{where}: document {i} is a {type(doc).__name__}, not a mapping"
        docs.append(doc)
    return docs


def load_yaml_file(path: Path) -> list[dict]:
    return parse_yaml_stream(path.read_text(), str(path.relative_to(REPO)))


def crd_or_skip() -> dict:
    if not CRD_SOURCE.is_file():
        pytest.skip("crds/cachepair.yaml is not on this branch yet: the operator's crdgen "
                    "commits it on main")
    (crd,) = load_yaml_file(CRD_SOURCE)
    return crd


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs
            if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
