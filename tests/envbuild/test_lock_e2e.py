"""Locked builds on the real engine: lock -> build --locked -> the image holds exactly what the lock says.

One development project with JupyterLab, an apt package and Python packages (one from a requirements
file). The lock pins every apt transaction and one resolution of every Python package; the locked
build's `uv pip freeze` and `dpkg-query -W` must equal the lock to the version, and a second build
with every download cache empty (cache mounts of its own, every step re-run) must give the same lists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest

from envbuild import lock as L

pytestmark = pytest.mark.engine

HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ENVBUILD = str(Path(sys.executable).with_name("envbuild"))
ROOT = Path(__file__).resolve().parents[2]
TAG = f"envbuild-e2e/lock:p{os.getpid()}"

BUILD_ENVD = """\
def build():
    base(image="local/debian:bookworm", dev=True)
    install.apt_packages(name=["jq"])
    install.python()
    install.python_packages(name=["six", "attrs"], requirements="requirements.txt")
    config.jupyter()
"""

if not os.path.exists(HOST_BUNDLE):
    pytestmark = [
        pytest.mark.engine,
        pytest.mark.skip(reason=f"{HOST_BUNDLE} missing (PyPI is reached through a TLS-inspecting proxy)"),
    ]


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENVBUILD_CA_CERT": HOST_BUNDLE, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([ENVBUILD, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=1200)


EMPTY_CACHES = r"""
import sys
from envbuild.compiler import conda, languages, scripts
ns = sys.argv[1]
for module, names in {
    scripts: (
        "APT_CACHE_ID", "APT_LISTS_ID", "TOOLS_APT_CACHE_ID", "TOOLS_APT_LISTS_ID", "UV_CACHE_ID", "PIP_CACHE_ID"
    ),
    languages: ("DL_CACHE_ID",),
    conda: ("RATTLER_CACHE_ID",),
}.items():
    for name in names:
        setattr(module, name, getattr(module, name) + "-" + ns)
from envbuild.cli import main
main(sys.argv[2:])
"""
"""`envbuild` with every download cache mount renamed: a build that starts from empty caches, on the
same engine, without emptying the caches other builds use (as bench/run_all.py row d does)."""


def cli_with_empty_caches(namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ENVBUILD_CA_CERT": HOST_BUNDLE, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", EMPTY_CACHES, namespace, *args], capture_output=True, text=True, env=env, timeout=1800
    )


def prune_cache_mounts(since: float) -> None:
    """Remove the (namespaced) cache mounts envbuild's steps created since ``since``."""
    import docker

    client = docker.from_env()
    try:
        caches = client.api.df().get("BuildCache") or []
    finally:
        client.close()
    for c in caches:
        stamp = c.get("CreatedAt", "")[:19]  # UTC, e.g. 2026-11-22T07:53:36
        created = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
        if (
            c.get("Type") == "exec.cachemount"
            and not c.get("InUse")
            and "/run/envbuild-tls" in (c.get("Description") or "")
            and created >= since
        ):
            subprocess.run(["docker", "builder", "prune", "-f", "--filter", f"id={c['ID']}"], capture_output=True)


def installed(image: str) -> tuple[dict[str, str], dict[str, str]]:
    """(``uv pip freeze`` of the environment, ``dpkg-query -W``) inside ``image``: name -> version."""
    out = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            image,
            "-c",
            "[ ! -x /usr/local/bin/uv ] || uv pip freeze --python /opt/envbuild/venv/bin/python 2>/dev/null; "
            "echo '#'; dpkg-query -W -f '${Package} ${Version}\\n'",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    freeze, _, dpkg = out.partition("#\n")
    pip = {L.normalise(n): v for n, v in (line.split("==", 1) for line in freeze.split())}
    return pip, dict(line.split(" ", 1) for line in dpkg.splitlines())


def expected(lk: L.Lock) -> tuple[dict[str, str], dict[str, str]]:
    """What the lock says the image holds: its Python packages; the base image's dpkg list with every
    apt transaction of the image (not the tool stages') laid over it."""
    _, deb = installed(lk.base.id)
    for step in lk.apt:
        if not step.key.startswith("tools-"):
            deb.update({p.name.split(":", 1)[0]: p.version for p in step.packages})
    return {p.name: p.version for p in lk.python_packages or ()}, deb


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("lockproj")
    (d / "build.envd").write_text(BUILD_ENVD)
    (d / "requirements.txt").write_text("idna\n")
    r = cli("lock", "-p", str(d), "--progress", "plain")
    assert r.returncode == 0, r.stderr[-3000:]
    print("\n" + r.stderr.strip().splitlines()[-1])
    yield d
    for suffix in ("", "-e", "-t", "-g", "-m", "-o"):
        subprocess.run(["docker", "image", "rm", "-f", TAG + suffix], capture_output=True)


@pytest.fixture(scope="module")
def built(project: Path) -> Iterator[str]:
    r = cli("build", "-p", str(project), "-t", TAG, "--locked", "--progress", "plain")
    assert r.returncode == 0, r.stderr[-3000:]
    yield TAG


def read(project: Path) -> L.Lock:
    lk = L.read_lock(project / "build.envd.lock")
    assert lk is not None
    return lk


def test_the_lock_pins_every_install(project: Path) -> None:
    lk = read(project)
    assert lk.base.id.startswith("sha256:") and lk.platform == "linux/amd64" and lk.python.startswith("3.11.")
    assert [s.key for s in lk.apt] == ["dev", "apt-1", "tools-python", "python3"]
    dev = {p.name for p in lk.apt[0].packages}
    assert {"openssh-server", "supervisor", "sudo", "git"} <= dev
    python = {p.name for p in lk.python_packages or ()}
    assert {"jupyterlab", "jupyter-server", "tornado", "six", "attrs", "idna", "pip"} <= python
    assert all(p.hashes for p in lk.python_packages or ())
    assert lk.unlocked == ()
    r = cli("lock", "-p", str(project), "--check")
    assert r.returncode == 0 and "up to date" in r.stderr


def test_relocking_without_upgrade_is_byte_identical(project: Path) -> None:
    before = (project / "build.envd.lock").read_bytes()
    r = cli("lock", "-p", str(project), "--progress", "quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "unchanged build.envd.lock" in r.stderr
    assert (project / "build.envd.lock").read_bytes() == before


def test_a_locked_build_installs_exactly_the_lock(project: Path, built: str) -> None:
    lk = read(project)
    pip, deb = installed(built)
    want_pip, want_deb = expected(lk)
    assert pip == want_pip
    assert deb == want_deb
    n_apt = sum(len(s.packages) for s in lk.apt if not s.key.startswith("tools-"))
    print(
        f"\nlocked: {len(want_pip)} Python packages, {n_apt} apt packages over the base's {len(want_deb) - n_apt}; "
        f"installed: {len(pip)} Python packages, {len(deb)} dpkg packages"
    )


def test_a_second_build_with_empty_caches_gives_the_same_lists(project: Path, built: str) -> None:
    started = time.time()
    try:
        r = cli_with_empty_caches(
            f"lock{os.getpid()}", "build", "-p", str(project), "-t", TAG + "-e", "--locked", "--no-cache"
        )
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        prune_cache_mounts(started - 5)
    pip, deb = installed(TAG + "-e")
    assert (pip, deb) == installed(built)
    print(f"\nempty caches, every step re-run: {time.time() - started:.0f} s; {len(pip)} Python, {len(deb)} dpkg")


def test_a_tampered_hash_fails_the_build(project: Path, built: str) -> None:
    path = project / "build.envd.lock"
    good = path.read_text()
    lk = L.Lock.loads(good)
    six = next(p for p in lk.python_packages or () if p.name == "six")
    bad = good
    for h in six.hashes:
        bad = bad.replace(h, "sha256:" + "0" * 64)
    try:
        path.write_text(bad)
        r = cli("build", "-p", str(project), "-t", TAG + "-t", "--locked", "--progress", "quiet")
        assert r.returncode == 1 and "python packages" in r.stderr and "hash" in r.stderr.lower(), r.stderr[-2000:]
    finally:
        path.write_text(good)


def test_a_version_the_mirror_no_longer_has_is_named_with_the_way_out(
    project: Path, built: str, builder_merges_layers: bool
) -> None:
    path = project / "build.envd.lock"
    good = path.read_text()
    lk = L.Lock.loads(good)
    jq = next(p for p in lk.apt[1].packages if p.name == "jq")
    gone = replace(
        lk,
        apt=(
            lk.apt[0],
            replace(
                lk.apt[1],
                packages=tuple(replace(p, version="1.5-0") if p.name == "jq" else p for p in lk.apt[1].packages),
            ),
            *lk.apt[2:],
        ),
    )
    try:
        path.write_text(gone.dumps())
        r = cli("build", "-p", str(project), "-t", TAG + "-g", "--locked", "--progress", "quiet")
        assert r.returncode == 1, r.stderr[-2000:]
        first = next(line for line in r.stderr.splitlines() if line.startswith("envbuild: error:"))
        failed = ["build.envd:3:5: step 'apt: jq' failed"]
        if builder_merges_layers:  # the packages' build environment installs jq too, at the same time
            failed.append("build.envd:4:5: step 'python packages: build environment (apt: jq git)' failed")
        assert any(step in first for step in failed), first
        assert "the apt source no longer has the locked jq=1.5-0" in first and jq.version not in first
        assert "envbuild lock --upgrade" in first and "ENVBUILD_MIRROR_APT" in first
    finally:
        path.write_text(good)


def test_the_apt_mirror_setting_serves_the_locked_versions(project: Path, built: str) -> None:
    """Every apt step downloads through the ``apt`` mirror setting (here Debian's mirror over https,
    spelled with ``{archive}`` as a snapshot URL would be; an unreachable one fails the build): the
    lock stays fresh, the versions are the lock's, and the image keeps its own sources."""
    r = cli(
        "build",
        "-p",
        str(project),
        "-t",
        TAG + "-m",
        "--locked",
        "--progress",
        "quiet",
        env={"ENVBUILD_MIRROR_APT": "http://127.0.0.1:9/{archive}"},
    )
    assert r.returncode == 1 and "127.0.0.1:9/debian" in r.stderr, r.stderr[-2000:]
    r = cli(
        "build",
        "-p",
        str(project),
        "-t",
        TAG + "-m",
        "--locked",
        "--progress",
        "quiet",
        env={"ENVBUILD_MIRROR_APT": "https://deb.debian.org/{archive}"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert installed(TAG + "-m") == installed(built)

    def sources(image: str) -> str:
        return subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "cat", image, "/etc/apt/sources.list"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert sources(TAG + "-m") == sources("local/debian:bookworm")


def test_a_conflict_with_jupyterlab_is_named_at_lock_time(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(BUILD_ENVD)
    (tmp_path / "requirements.txt").write_text("idna\ntornado==5.0\n")
    r = cli("lock", "-p", str(tmp_path), "--progress", "quiet")
    assert r.returncode == 2, r.stderr[-3000:]
    first = next(line for line in r.stderr.splitlines() if line.startswith("envbuild: error:"))
    assert "config.jupyter() at build.envd:6:5 (jupyterlab>=4) conflicts with" in first
    assert "install.python_packages at build.envd:5:5 (tornado==5.0)" in first
    assert not (tmp_path / "build.envd.lock").exists()
    print("\n" + "\n".join(r.stderr.strip().splitlines()[-8:]))


def test_a_changed_file_stales_the_lock_and_locked_fails(project: Path) -> None:
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
        (project / "build.envd").write_text(BUILD_ENVD.replace('["six", "attrs"]', '["six", "attrs", "packaging"]'))
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


def test_a_newer_lock_format_is_refused_in_one_line(project: Path) -> None:
    path = project / "build.envd.lock"
    good = path.read_text()
    try:
        path.write_text(good.replace(f'"envbuild_lock": {L.LOCK_VERSION}', '"envbuild_lock": 99'))
        r = cli("build", "-p", str(project), "--locked", "--progress", "quiet")
        assert r.returncode == 2
        assert r.stderr.strip().splitlines() == [
            f"envbuild: error: {path}: lock format 99 was written by a newer envbuild (this one reads format "
            f"{L.LOCK_VERSION}); upgrade envbuild or run `envbuild lock` again"
        ]
    finally:
        path.write_text(good)


def test_a_lock_another_envbuild_made_is_not_fresh_for_check_nor_locked(project: Path) -> None:
    """A lock whose inputs are fresh but whose development packages another envbuild chose (here:
    one name fewer) covers neither `lock --check` nor `build --locked`: both exit 2 and name the step."""
    path = project / "build.envd.lock"
    good = path.read_text()
    lk = L.Lock.loads(good)
    dev = lk.apt[0]
    assert dev.key == "dev" and "less" in dev.names
    older = replace(lk, apt=(replace(dev, names=tuple(n for n in dev.names if n != "less")), *lk.apt[1:]))
    try:
        path.write_text(older.dumps())
        r = cli("lock", "-p", str(project), "--check")
        assert r.returncode == 2, r.stderr
        assert "build.envd.lock does not cover what this envbuild installs:" in r.stderr
        assert "the apt packages of step 'dev: system packages (sshd, supervisor, sudo, git)'" in r.stderr
        r = cli("build", "-p", str(project), "-t", TAG + "-o", "--locked", "--progress", "quiet")
        assert r.returncode == 2, r.stderr[-2000:]
        assert "--locked: the lock does not cover the apt packages of step 'dev: system packages" in r.stderr
    finally:
        path.write_text(good)


def test_upgrade_one_package_keeps_the_others(project: Path) -> None:
    """An old pin stays without --upgrade and moves with --upgrade PKG."""
    path = project / "build.envd.lock"
    good = path.read_text()
    lk = L.Lock.loads(good)
    now = {p.name: p for p in lk.python_packages or ()}
    old = {"six": replace(now["six"], version="1.16.0"), "idna": replace(now["idna"], version="3.6")}
    path.write_text(replace(lk, python_packages=tuple(old.get(p.name, p) for p in lk.python_packages or ())).dumps())
    try:
        r = cli("lock", "-p", str(project), "--progress", "quiet")
        assert r.returncode == 0, r.stderr[-2000:]
        got = {p.name: p.version for p in read(project).python_packages or ()}
        assert (got["six"], got["idna"]) == ("1.16.0", "3.6")
        r = cli("lock", "-p", str(project), "--upgrade", "six", "--progress", "quiet")
        assert r.returncode == 0, r.stderr[-2000:]
        got = {p.name: p.version for p in read(project).python_packages or ()}
        assert (got["six"], got["idna"]) == (now["six"].version, "3.6")
    finally:
        path.write_text(good)
    assert now["idna"].version != "3.6"


def test_offline_build_installs_from_the_downloaded_wheels(project: Path) -> None:
    r = cli("lock", "-p", str(project), "--download-wheels", "--progress", "quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    lk = read(project)
    wheels = project / L.WHEELS_DIR
    assert {L.normalise(w.name.split("-")[0]) for w in wheels.iterdir()} == {p.name for p in lk.python_packages or ()}
    try:
        r = cli("build", "-p", str(project), "-t", TAG + "-o", "--offline", "--progress", "quiet")
        assert r.returncode == 0, r.stderr[-3000:]
        assert installed(TAG + "-o")[0] == expected(lk)[0]
        six = next(p for p in lk.python_packages or () if p.name == "six")
        next(iter(wheels.glob("six-*"))).unlink()
        r = cli("build", "-p", str(project), "--offline", "--progress", "quiet")
        assert r.returncode == 2 and f"six=={six.version}" in r.stderr
    finally:
        shutil.rmtree(wheels)


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
        r = cli("build", "-p", str(tmp_path), "-t", tag, "--locked", "--progress", "quiet")
        assert r.returncode == 0, r.stderr
        label = subprocess.run(
            ["docker", "image", "inspect", "--format", '{{index .Config.Labels "ai.envbuild.spec"}}', tag],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(label)["base"]["image"] == pinned
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


CONDA_ENVD = """\
def build():
    base(image="local/debian:bookworm", dev=False)
    install.conda()
    config.conda_channel(channel="channels: []\\n")
    install.conda_packages(name=["greet"], channel=["./channel"])
"""


def conda_list(image: str) -> dict[str, tuple[str, str, str]]:
    out = subprocess.run(
        ["docker", "run", "--rm", image, "conda", "list", "--json", "-p", "/opt/conda/envs/envd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {p["name"]: (p["version"], p["url"], p["sha256"]) for p in json.loads(out)}


def test_a_locked_conda_environment_is_the_lock(tmp_path: Path) -> None:
    from tests.envbuild.conda_channel import Package, demo_packages, write_channel

    (tmp_path / "build.envd").write_text(CONDA_ENVD)
    write_channel(tmp_path / "channel", demo_packages())
    r = cli("lock", "-p", str(tmp_path), "--progress", "quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    lk = read(tmp_path)
    assert lk.conda is not None and [p.name for p in lk.conda] == ["greet", "greeting-data"]
    assert lk.conda[1].url == "file:///run/envbuild-conda-channels/channel/noarch/greeting-data-1.0-0.tar.bz2"
    tag = TAG + "-c"
    try:
        r = cli("build", "-p", str(tmp_path), "-t", tag, "--locked", "--progress", "quiet")
        assert r.returncode == 0, r.stderr[-3000:]
        assert conda_list(tag) == {p.name: (p.version, p.url, p.sha256) for p in lk.conda}
        # a newer dependency in the channel: the lock keeps its version until --upgrade
        newer = Package("greeting-data", "1.1", {"share/greeting/text.txt": "newer\n"})
        write_channel(tmp_path / "channel", [*demo_packages(), newer])
        assert cli("lock", "-p", str(tmp_path), "--progress", "quiet").returncode == 0
        assert read(tmp_path).conda == lk.conda
        assert cli("lock", "-p", str(tmp_path), "--upgrade", "--progress", "quiet").returncode == 0
        assert {p.name: p.version for p in read(tmp_path).conda or ()}["greeting-data"] == "1.1"
        # a package file that is not what the lock says fails the locked build
        data = tmp_path / "channel" / "noarch" / "greeting-data-1.1-0.tar.bz2"
        data.write_bytes((tmp_path / "channel" / "noarch" / "greeting-data-1.0-0.tar.bz2").read_bytes())
        r = cli("build", "-p", str(tmp_path), "-t", tag, "--locked", "--progress", "quiet")
        assert r.returncode == 1 and "the file's sha256 is not" in r.stderr, r.stderr[-2000:]
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
