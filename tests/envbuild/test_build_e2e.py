"""`envbuild build` end to end on the real engine: the Jupyter example from the local Debian base.

One module-scoped build is shared by the checks; rebuilds reuse the engine's cache, so the whole
module takes about a minute on a warm machine.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbuild.build import BuildOptions, build
from frontend.spec import Spec

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_UID = 20000 + os.getpid() % 20000
OWNER = (_UID, _UID)
"""A fresh owner per run: the user step and everything after it really run (BuildKit would otherwise
serve them from an earlier run's cache), while the apt step and the download caches stay warm."""
TAG = f"envbuild-e2e/jupyter:u{_UID}"


class Events:
    """Collects vertex states and logs by name."""

    def __init__(self) -> None:
        self.vertices: dict[str, dict] = {}
        self.names: dict[str, str] = {}
        self.logs: dict[str, list[str]] = {}

    def __call__(self, ev: object) -> None:
        from llb.progress import LogEvent, VertexEvent

        if isinstance(ev, VertexEvent):
            self.names[ev.digest] = ev.name
            v = self.vertices.setdefault(ev.name, {"cached": False, "done": False})
            v["cached"] = v["cached"] or ev.cached
            v["done"] = v["done"] or ev.completed is not None
        elif isinstance(ev, LogEvent):
            self.logs.setdefault(self.names.get(ev.vertex, ev.vertex), []).append(ev.data.decode("utf-8", "replace"))

    def ran(self) -> set[str]:
        return {n for n, v in self.vertices.items() if v["done"] and not v["cached"]}


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The host bundle plus a freshly made certificate whose body must never reach the image."""
    d = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=envbuild-e2e-secret",
            "-keyout",
            str(d / "k.pem"),
            "-out",
            str(d / "c.pem"),
        ],
        check=True,
        capture_output=True,
    )
    cert = (d / "c.pem").read_text()
    marker = cert.splitlines()[5]
    bundle = d / "bundle.pem"
    bundle.write_text(HOST_BUNDLE.read_text() + cert)
    return bundle, marker


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("e2e") / "envbuild-e2e-jupyter"
    shutil.copytree(ROOT / "examples" / "jupyter", p)
    return p


@pytest.fixture(scope="module")
def first(project: Path, ca_file: tuple[Path, str]) -> Iterator[tuple[BuildOptions, Events]]:
    opts = BuildOptions(path=str(project), tag=TAG, ca_cert=str(ca_file[0]), owner=OWNER)
    events = Events()
    build(opts, on_event=events)
    yield opts, events
    subprocess.run(["docker", "rmi", "-f", TAG, TAG + "-again"], capture_output=True)


def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


def test_image_works_as_envd(first: tuple[BuildOptions, Events]) -> None:
    r = run(
        "docker",
        "run",
        "--rm",
        TAG,
        "sh",
        "-c",
        'id -un; sudo -n true; python -c "import numpy, jupyterlab; print(numpy.__version__)"',
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "envd"


def test_label_holds_the_spec(first: tuple[BuildOptions, Events], project: Path) -> None:
    import frontend

    cfg = json.loads(run("docker", "image", "inspect", TAG, "--format", "{{json .Config}}").stdout)
    assert Spec.from_json(cfg["Labels"]["ai.envbuild.spec"]) == frontend.evaluate(project, user_config=False)
    assert cfg["Labels"]["ai.envbuild.owner"] == f"{_UID}:{_UID}"
    assert cfg["Entrypoint"] == ["/usr/local/bin/envbuild-entrypoint"] and cfg["User"] == "envd"


def test_services_start_and_sshd_config_is_valid(first: tuple[BuildOptions, Events]) -> None:
    name = f"envbuild-e2e-{os.getpid()}"
    r = run(
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--user",
        "root",
        "-e",
        "ENVBUILD_JUPYTER_TOKEN=t0k",
        "-e",
        "ENVBUILD_AUTHORIZED_KEYS=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDummyKeyForTest test",
        TAG,
    )
    assert r.returncode == 0, r.stderr
    try:
        deadline = time.monotonic() + 60
        status = ""
        while time.monotonic() < deadline:
            status = run(
                "docker", "exec", name, "supervisorctl", "-c", "/etc/envbuild/supervisord.conf", "status"
            ).stdout
            if status.count("RUNNING") >= 2:
                break
            time.sleep(0.5)
        assert "sshd" in status and "jupyter" in status and status.count("RUNNING") >= 2, status
        assert run("docker", "exec", name, "/usr/sbin/sshd", "-t", "-f", "/etc/envbuild/sshd_config").returncode == 0
        code = 0
        while time.monotonic() < deadline:
            probe = (
                "import urllib.request as u\ntry:\n print(u.urlopen('http://127.0.0.1:8888/api/status?token=t0k').status)\n"
                "except Exception as e:\n print(getattr(e,'code',0))"
            )
            out = run("docker", "exec", name, "python", "-c", probe).stdout.strip()
            code = int(out or 0)
            if code == 200:
                break
            time.sleep(0.5)
        assert code == 200
    finally:
        run("docker", "rm", "-f", name)


def test_no_change_is_up_to_date_and_fully_cached(first: tuple[BuildOptions, Events]) -> None:
    opts, _ = first
    t = time.monotonic()
    assert build(opts).up_to_date
    assert time.monotonic() - t < 1.0
    events = Events()
    result = build(dataclasses.replace(opts, tag=TAG + "-again"), on_event=events)
    assert not result.up_to_date
    execs = {
        n
        for n in events.vertices
        if not n.startswith(("exporting", "base ", "resolve ", "dev: entrypoint", "dev: sshd"))
    }
    assert execs and not (events.ran() & execs), events.ran()


def test_one_more_package_reruns_only_that_step(
    first: tuple[BuildOptions, Events], project: Path, builder_merges_layers: bool
) -> None:
    opts, _ = first
    f = project / "build.envd"
    f.write_text(f.read_text().replace('name=["numpy"]', 'name=["numpy", "tabulate"]'))
    events = Events()
    build(opts, on_event=events)
    ran = {n for n in events.ran() if not n.startswith(("exporting", "resolve ", "base "))}
    assert "python packages: numpy tabulate" in ran
    expected = {"python packages: numpy tabulate", "dev: sshd, services, login environment, work dir"}
    if builder_merges_layers:  # the step's diff and the merge of the package layers follow it
        expected |= {"layer: python packages: numpy tabulate", "image: package layers merged"}
    assert ran <= expected, ran
    log = "".join(events.logs.get("python packages: numpy tabulate", []))
    assert "tabulate" in log and "Downloading numpy" not in log


def test_ca_and_secret_absent_from_layers_and_config(
    first: tuple[BuildOptions, Events], ca_file: tuple[Path, str]
) -> None:
    _, marker = ca_file
    proxy_ca = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    markers = [marker.encode()] + [p.read_text().splitlines()[3].encode() for p in proxy_ca]
    saved = subprocess.run(["docker", "save", TAG], capture_output=True, check=True, timeout=300).stdout
    found: list[str] = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()  # type: ignore[union-attr]
            blobs = [data]
            if member.name.endswith(".tar") or member.name.endswith("/layer.tar"):
                blobs = []
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    for f in layer.getmembers():
                        if f.isfile():
                            blobs.append(layer.extractfile(f).read())  # type: ignore[union-attr]
                            if f.name.startswith(("run/secrets", "run/envbuild-tls")):
                                found.append(f.name)
            for blob in blobs:
                for m in markers:
                    if m in blob:
                        found.append(member.name)
    assert not found, found
    assert markers[0] not in saved
