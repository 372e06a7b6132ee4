"""Locked builds on the real engine: lock -> build -> the image holds exactly the locked versions.

One small project (local Debian base, one apt package, two pip packages, one of them from a
requirements file); the base/apt/Python steps are shared with the other e2e modules' cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from envbuild import lock as L
from envbuild.build import BuildOptions, build

pytestmark = pytest.mark.engine

HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ENVBUILD = str(Path(sys.executable).with_name("envbuild"))
TAG = f"envbuild-e2e/lock:p{os.getpid()}"

BUILD_ENVD = """\
def build():
    base(image="local/debian:bookworm", dev=False)
    install.apt_packages(name=["jq"])
    install.python()
    install.python_packages(name=["six"], requirements="requirements.txt")
"""


if not os.path.exists(HOST_BUNDLE):
    pytestmark = [
        pytest.mark.engine,
        pytest.mark.skip(reason=f"{HOST_BUNDLE} missing (PyPI is reached through a TLS-inspecting proxy)"),
    ]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENVBUILD_CA_CERT": HOST_BUNDLE}
    return subprocess.run([ENVBUILD, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def installed(tag: str) -> tuple[dict[str, str], dict[str, str]]:
    """(pip name -> version, dpkg name -> version) inside the image."""
    out = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            tag,
            "-c",
            "/opt/envbuild/venv/bin/python -m pip list --format json 2>/dev/null; echo '#'; "
            "dpkg-query -W -f '${Package} ${Version}\\n'",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pip_json, _, dpkg = out.partition("#")
    pip = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(pip_json)}
    deb = dict(line.split(" ", 1) for line in dpkg.strip().splitlines())
    return pip, deb


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("lockproj")
    (d / "build.envd").write_text(BUILD_ENVD)
    (d / "requirements.txt").write_text("idna\n")
    r = cli("lock", "-p", str(d), "--progress", "plain")
    assert r.returncode == 0, r.stderr[-3000:]
    yield d
    for tag in (TAG, TAG + "-a", TAG + "-b", TAG + "-t"):
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


def options(project: Path, tag: str, **kw: object) -> BuildOptions:
    return BuildOptions(path=str(project), tag=tag, ca_cert=HOST_BUNDLE, **kw)  # type: ignore[arg-type]


def test_lock_file_contents(project: Path) -> None:
    lk = L.read_lock(project / "build.envd.lock")
    assert lk is not None
    assert lk.base.id.startswith("sha256:") and lk.platform == "linux/amd64"
    assert lk.python.startswith("3.11.")
    assert [p.name for p in lk.pip[0].packages] == ["idna", "six"]
    assert all(p.hashes and all(h.startswith("sha256:") for h in p.hashes) for p in lk.pip[0].packages)
    assert "jq" in {p.name for p in lk.apt[0].packages}
    r = cli("lock", "-p", str(project), "--check")
    assert r.returncode == 0 and "up to date" in r.stderr


def test_relocking_without_upgrade_is_byte_identical(project: Path) -> None:
    before = (project / "build.envd.lock").read_bytes()
    r = cli("lock", "-p", str(project), "--progress", "quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "unchanged build.envd.lock" in r.stderr
    assert (project / "build.envd.lock").read_bytes() == before


def test_locked_build_installs_exactly_the_locked_versions(project: Path) -> None:
    lk = L.read_lock(project / "build.envd.lock")
    assert lk is not None
    result = build(options(project, TAG, locked=True))
    assert result.spec.python_packages[0].requirements == ".envbuild/lock/python-packages-1.txt"
    pip, deb = installed(TAG)
    for p in lk.pip[0].packages:
        assert pip[p.name] == p.version
    for p in lk.apt[0].packages:
        assert deb[p.name] == p.version


def test_tampered_hash_is_refused(project: Path) -> None:
    """The hashes are enforced: a lock whose six hash is wrong fails the pip step."""
    good = (project / "build.envd.lock").read_text()
    lk = L.Lock.loads(good)
    six = next(p for p in lk.pip[0].packages if p.name == "six")
    bad = good.replace(six.hashes[0][7:], "0" * 64)
    for h in six.hashes[1:]:
        bad = bad.replace(h[7:], "0" * 63 + "1")
    try:
        (project / "build.envd.lock").write_text(bad)
        with pytest.raises(Exception, match=r"(?i)hash"):
            build(options(project, TAG + "-t", locked=True))
    finally:
        (project / "build.envd.lock").write_text(good)
        L.materialise(lk, project)


def test_two_locked_builds_give_identical_package_sets(project: Path) -> None:
    a = build(options(project, TAG + "-a", locked=True, no_cache=True))
    b = build(options(project, TAG + "-b", locked=True, no_cache=True))
    assert installed(TAG + "-a") == installed(TAG + "-b")
    ids = (a.image_id, b.image_id)
    print(f"\nlocked --no-cache builds: image ids {ids[0]} / {ids[1]} identical={ids[0] == ids[1]}")


def test_changed_file_stales_the_lock_and_locked_fails(project: Path) -> None:
    req = project / "requirements.txt"
    old = req.read_text()
    try:
        req.write_text("idna\nattrs\n")
        r = cli("build", "-p", str(project), "-t", TAG, "--locked", "--progress", "quiet")
        assert r.returncode == 2, r.stderr
        assert "content of requirements.txt changed" in r.stderr
        r = cli("lock", "-p", str(project), "--check")
        assert r.returncode == 2 and "stale" in r.stderr
        r = cli("up", "-p", str(project), "--locked", "--detach")
        assert r.returncode == 2 and "content of requirements.txt changed" in r.stderr, r.stderr
        (project / "build.envd").write_text(BUILD_ENVD.replace('["six"]', '["six", "packaging"]'))
        r = cli("build", "-p", str(project), "-t", TAG, "--locked", "--progress", "quiet")
        assert r.returncode == 2 and "added packaging" in r.stderr, r.stderr
    finally:
        req.write_text(old)
        (project / "build.envd").write_text(BUILD_ENVD)
    assert cli("lock", "-p", str(project), "--check").returncode == 0


def test_locked_without_a_lock_fails(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(BUILD_ENVD)
    (tmp_path / "requirements.txt").write_text("idna\n")
    r = cli("build", "-p", str(tmp_path), "--locked", "--progress", "quiet")
    assert r.returncode == 2 and "no lock file build.envd.lock" in r.stderr


def test_offline_names_the_missing_base_image(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(BUILD_ENVD.replace("local/debian:bookworm", "envbuild-e2e/not-here:1"))
    (tmp_path / "requirements.txt").write_text("idna\n")
    r = cli("build", "-p", str(tmp_path), "--offline", "--progress", "quiet")
    assert r.returncode == 2
    assert "base image envbuild-e2e/not-here:1 is not in the engine's image store" in r.stderr
    assert "no lock file" in r.stderr


def test_upgrade_one_package_keeps_the_others(project: Path) -> None:
    """An old pin stays without --upgrade and moves with --upgrade PKG."""
    path = project / "build.envd.lock"
    good = path.read_text()
    lk = L.Lock.loads(good)
    six = next(p for p in lk.pip[0].packages if p.name == "six")
    idna = next(p for p in lk.pip[0].packages if p.name == "idna")
    old_six = L.PipPackage("six", "1.16.0", ())
    old_idna = L.PipPackage("idna", "3.6", ())
    path.write_text(replace(lk, pip=(L.PipGroup((old_idna, old_six)),)).dumps())
    try:
        r = cli("lock", "-p", str(project), "--progress", "quiet")
        assert r.returncode == 0, r.stderr[-2000:]
        got = {p.name: p.version for p in L.read_lock(path).pip[0].packages}  # type: ignore[union-attr]
        assert got == {"six": "1.16.0", "idna": "3.6"}
        r = cli("lock", "-p", str(project), "--upgrade", "six", "--progress", "quiet")
        assert r.returncode == 0, r.stderr[-2000:]
        got = {p.name: p.version for p in L.read_lock(path).pip[0].packages}  # type: ignore[union-attr]
        assert got == {"six": six.version, "idna": "3.6"}
    finally:
        path.write_text(good)
    assert idna.version != "3.6"


def test_offline_build_installs_from_the_downloaded_wheels(project: Path) -> None:
    r = cli("lock", "-p", str(project), "--download-wheels", "--progress", "quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    lk = L.read_lock(project / "build.envd.lock")
    assert lk is not None
    wheels = sorted(p.name for p in (project / L.WHEELS_DIR).iterdir())
    assert [w.split("-")[0] for w in wheels] == ["idna", "six"]
    result = build(options(project, TAG + "-o", offline=True))
    assert all(w.startswith(L.WHEELS_DIR) for w in result.spec.python_packages[0].local_wheels)
    pip, _ = installed(TAG + "-o")
    assert {p.name: pip[p.name] for p in lk.pip[0].packages} == {p.name: p.version for p in lk.pip[0].packages}
    # the wheelhouse alone is enough: no network, an empty uv cache
    r2 = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{project / L.WHEELS_DIR}:/w:ro",
            "--entrypoint",
            "/bin/sh",
            TAG + "-o",
            "-c",
            "uv venv -q /tmp/v --python /usr/bin/python3 && UV_CACHE_DIR=/tmp/c uv pip install -q "
            "--python /tmp/v/bin/python /w/*.whl && /tmp/v/bin/python -c 'import six, idna'",
        ],
        capture_output=True,
        text=True,
    )
    subprocess.run(["docker", "image", "rm", "-f", TAG + "-o"], capture_output=True)
    assert r2.returncode == 0, r2.stderr
    next(iter((project / L.WHEELS_DIR).glob("six-*"))).unlink()
    r = cli("build", "-p", str(project), "--offline", "--progress", "quiet")
    assert r.returncode == 2 and f"six=={next(p.version for p in lk.pip[0].packages if p.name == 'six')}" in r.stderr
    shutil.rmtree(project / L.WHEELS_DIR)


def _registry_up() -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen("http://127.0.0.1:5000/v2/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.registry
@pytest.mark.skipif(not _registry_up(), reason="no registry on 127.0.0.1:5000")
def test_registry_base_is_pinned_by_digest(tmp_path: Path) -> None:
    """A base the engine does not have is resolved through the builder and built by digest."""
    ref = f"127.0.0.1:5000/envbuild-lock/debian:p{os.getpid()}"
    subprocess.run(["docker", "tag", "local/debian:bookworm", ref], check=True)
    subprocess.run(["docker", "push", "-q", ref], check=True, capture_output=True)
    subprocess.run(["docker", "image", "rm", ref], check=True, capture_output=True)
    (tmp_path / "build.envd").write_text(
        f'def build():\n    base(image="{ref}", dev=False)\n    run(commands=["true"])\n'
    )
    r = cli("lock", "-p", str(tmp_path), "--progress", "quiet")
    assert r.returncode == 0, r.stderr
    lk = L.read_lock(tmp_path / "build.envd.lock")
    assert lk is not None and lk.base.id == ""
    (pinned,) = lk.base.repo_digests
    assert pinned.startswith(ref.rsplit(":", 1)[0] + "@sha256:")
    tag = TAG + "-r"
    try:
        result = build(options(tmp_path, tag, locked=True))
        assert result.spec.image == pinned
        label = subprocess.run(
            ["docker", "image", "inspect", "--format", '{{index .Config.Labels "ai.envbuild.spec"}}', tag],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(label)["base"]["image"] == pinned
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
