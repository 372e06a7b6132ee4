"""A user builds one environment on an engine whose builder merges layers (Docker 26 with the containerd
image store), then again with ``--linear``: both images hold the same files. Where the builder lacks
MergeOp/DiffOp (Docker 20.10, or Docker without the containerd store), ``build`` makes the one chain.

    DOCKER_HOST=unix:///run/envbuild-engines/docker26.sock pytest tests/envbuild/test_build_layers_e2e.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MERGE_STEP = "image: package layers merged"
BUILD_ENVD = """def build():
    base(image="local/debian:bookworm", dev=True)
    install.apt_packages(name=["less"])
    install.python(version="3.11")
    install.python_packages(name=["six"])
    install.python_packages(requirements="requirements.txt")
    io.copy(source="notes.txt", target="/srv/notes.txt")
    run(commands=["echo {marker} > ~/made-by-run"])
"""

Entry = tuple[str, int, int, int, int, str]  # type and mode, uid, gid, size (files), link target


def _merging_engine() -> bool:
    """The engine keeps images in containerd, whose snapshotter gives its BuildKit MergeOp/DiffOp."""
    info = subprocess.run(["docker", "info", "--format", "{{json .DriverStatus}}"], capture_output=True, text=True)
    return "io.containerd.snapshotter" in info.stdout


def envbuild(project: Path, *args: str) -> list[dict]:
    """``envbuild build`` with JSON progress: the events it printed (on stderr; stdout has the image id)."""
    ca = ["--ca-cert", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", "from envbuild.cli import main; main()", "build", "--progress", "json", *ca, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-4000:]
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def steps(events: list[dict]) -> set[str]:
    return {str(e.get("name")) for e in events if e.get("type") == "step"}


def files(image: str) -> dict[str, Entry]:
    """Every path of the image's filesystem (``docker export`` of a created container) with its
    type, permission bits, owner, size and link target; not mtimes, which differ between any two builds."""
    cid = subprocess.run(["docker", "create", image], capture_output=True, text=True, check=True).stdout.strip()
    try:
        export = subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE)
        assert export.stdout is not None
        out: dict[str, Entry] = {}
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            for m in tar:
                size = m.size if m.isfile() else 0
                out[m.name.rstrip("/")] = (m.type.decode(), m.mode, m.uid, m.gid, size, m.linkname)
        assert export.wait() == 0
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    return out


@pytest.fixture(params=["steps after the packages", "packages last"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """The build file, and the same without its io.copy and run(): then the development files go under
    the merged package layers (nothing else comes after them)."""
    d = tmp_path / "layers"
    d.mkdir()
    text = BUILD_ENVD.format(marker=uuid.uuid4().hex)
    if request.param == "packages last":
        text = "".join(line for line in text.splitlines(keepends=True) if "io.copy" not in line and "run(" not in line)
    (d / "build.envd").write_text(text)
    (d / "requirements.txt").write_text("tabulate\n")
    (d / "notes.txt").write_text("notes\n")
    yield d


def test_merged_and_linear_builds_hold_the_same_files(project: Path) -> None:
    tag = f"envbuild-e2e/layers:{uuid.uuid4().hex[:12]}"
    tags = [f"{tag}-merged", f"{tag}-linear"]
    try:
        default = steps(envbuild(project, "-t", tags[0]))
        if not _merging_engine():
            assert MERGE_STEP not in default  # the one chain: the only graph this builder runs
            return
        assert MERGE_STEP in default
        assert "python packages: build environment (apt: less git)" in default
        linear = steps(envbuild(project, "-t", tags[1], "--linear"))
        assert MERGE_STEP not in linear and "python packages: six" in linear
        merged_files, linear_files = files(tags[0]), files(tags[1])
        differ = sorted(
            p for p in merged_files.keys() | linear_files.keys() if merged_files.get(p) != linear_files.get(p)
        )
        assert not differ, [(p, merged_files.get(p), linear_files.get(p)) for p in differ[:20]]
        assert ("srv/notes.txt" in merged_files) == ("io.copy" in (project / "build.envd").read_text())
        assert merged_files["etc/envbuild/sshd_config"] == linear_files["etc/envbuild/sshd_config"]
        assert any(p.endswith("site-packages/tabulate.py") or "/tabulate/" in p for p in merged_files)
    finally:
        subprocess.run(["docker", "image", "rm", "-f", *tags], capture_output=True)
