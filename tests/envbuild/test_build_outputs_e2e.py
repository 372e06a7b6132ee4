"""`envbuild build` end to end, through the CLI: outputs (tar, local, --push to the loopback registry
then pulled back under another name), proxy values kept out of cache keys, and the runtime and IDE stages
wired into the compiler (a conda env from a test-made channel, a .vsix from the build context)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tarfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.envbuild.conda_channel import demo_packages, write_channel
from tests.envbuild.test_vscode_e2e import make_vsix

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
ENVBUILD = str(Path(sys.executable).with_name("envbuild"))  # the installed script of the running Python
BASE = "local/debian:bookworm"
REGISTRY = os.environ.get("ENVBUILD_TEST_REGISTRY", "127.0.0.1:5000")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "FTP_PROXY")


@pytest.fixture()
def uid() -> str:
    return uuid.uuid4().hex[:10]


def envbuild(
    args: list[str], *, env: dict[str, str] | None = None, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k.upper() not in _PROXY_VARS and k != "BUILDKIT_HOST"}
    return subprocess.run(
        [ENVBUILD, *args, "--progress", "plain"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base, **(env or {})},
    )


def _ran(stderr: str) -> list[str]:
    """Steps of `--progress plain` output that ran (not cached), besides exporting and image pulls."""
    names: dict[str, str] = {}
    ran: list[str] = []
    for line in stderr.splitlines():
        num, _, rest = line.partition(" ")
        if not num.startswith("#") or not rest:
            continue
        if num not in names:
            names[num] = rest
        elif rest.startswith("DONE") and not names[num].startswith(
            ("exporting", "[internal]", "docker-image://", "base ", "resolve ")
        ):
            ran.append(names[num])
    return ran


def _project(root: Path, body: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "build.envd").write_text("def build():\n" + "".join(f"    {line}\n" for line in body.strip().splitlines()))
    return root


def _rmi(*names: str) -> None:
    subprocess.run(["docker", "rmi", "-f", *names], capture_output=True)


def _docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_tar_and_local_outputs(tmp_path: Path, uid: str) -> None:
    proj = _project(tmp_path / "p", f'base(image="{BASE}", dev=False)\nrun(commands=["echo {uid} > /hello"])')
    tar_dest = tmp_path / "out" / "rootfs.tar"
    r = envbuild(["build", "-p", str(proj), "--output", f"type=tar,dest={tar_dest}"])
    assert r.returncode == 0, r.stderr
    assert f"filesystem tarball {tar_dest}" in r.stderr
    with tarfile.open(tar_dest) as tf:
        member = tf.extractfile("hello")
        assert member is not None and member.read().decode().strip() == uid
        assert "etc/debian_version" in tf.getnames()
    local_dest = tmp_path / "out" / "rootfs"
    r = envbuild(["build", "-p", str(proj), "-o", f"type=local,dest={local_dest}"])
    assert r.returncode == 0, r.stderr
    assert _ran(r.stderr) == [], "the same graph: every step cached"
    assert (local_dest / "hello").read_text().strip() == uid
    assert (local_dest / "etc" / "debian_version").is_file()


def _registry_reason() -> str | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{REGISTRY}/v2/", timeout=2) as resp:
            return None if resp.status == 200 else f"registry at {REGISTRY} answered {resp.status}"
    except OSError as exc:
        return f"no registry at {REGISTRY} ({exc}); run scripts/setup-engine.sh --registry"


@pytest.mark.registry
def test_push_then_pull_under_another_name_and_run(tmp_path: Path, uid: str) -> None:
    reason = _registry_reason()
    if reason:
        pytest.skip(reason)
    proj = _project(
        tmp_path / "pushme", f'base(image="{BASE}", dev=False)\nrun(commands=["echo pushed-{uid} > /hello"])'
    )
    ref = f"{REGISTRY}/envbuild-e2e/push-{uid}"
    pulled = f"envbuild-e2e/pulled:{uid}"
    try:
        r = envbuild(["build", "-p", str(proj), "-t", f"{ref}:1", "-t", f"{ref}:latest", "--push"])
        assert r.returncode == 0, r.stderr
        assert f"pushed {ref}:1@sha256:" in r.stderr and f"pushed {ref}:latest@sha256:" in r.stderr
        _rmi(f"{ref}:1", f"{ref}:latest")
        _docker("pull", f"{ref}:1")
        _docker("tag", f"{ref}:1", pulled)
        _rmi(f"{ref}:1")
        assert _docker("run", "--rm", pulled, "cat", "/hello").strip() == f"pushed-{uid}"
        labels = json.loads(_docker("image", "inspect", "--format", "{{json .Config.Labels}}", pulled))
        assert labels["ai.envbuild.vendor"] == "envbuild" and labels["ai.envbuild.project"] == "pushme"
    finally:
        _rmi(f"{ref}:1", f"{ref}:latest", pulled)


def _cache_records() -> list[dict[str, str]]:
    import docker

    engine = docker.from_env()
    try:
        return list(engine.df().get("BuildCache") or [])
    finally:
        engine.close()


def _prune_cache_records(ids: set[str], *, marker: str) -> None:
    """Remove the build cache records among `ids` of the steps named with `marker` through the engine's
    API, and nothing else of its cache: the engine may be shared, and records that other builds made
    meanwhile are theirs."""
    import docker

    engine = docker.from_env(timeout=300)
    try:
        for _ in range(5):  # a record goes once the records made from it went
            left = {r["ID"] for r in _cache_records() if r["ID"] in ids and marker in r.get("Description", "")}
            if left:
                engine.api.prune_builds(filters={"id": "^(" + "|".join(sorted(left)) + ")$"})  # type: ignore[dict-item]
        kept = [r["Description"] for r in _cache_records() if r["ID"] in ids and marker in r.get("Description", "")]
        assert not kept, f"the step's cache records could not be pruned: {kept}"
    finally:
        engine.close()


@pytest.mark.registry
def test_import_cache_brings_back_the_steps_of_a_pushed_image(tmp_path: Path, uid: str) -> None:
    """A CI run on a fresh machine: last run pushed the image with inline cache; the image and the build
    cache are gone here. With --import-cache the step comes back as a cache hit instead of running."""
    reason = _registry_reason()
    if reason:
        pytest.skip(reason)
    proj = _project(tmp_path / "ci", f'base(image="{BASE}", dev=False)\nrun(commands=["echo ran-{uid} > /hello"])')
    ref = f"{REGISTRY}/envbuild-e2e/import-{uid}:ci"
    try:
        before = {r["ID"] for r in _cache_records()}
        r = envbuild(["build", "-p", str(proj), "-t", ref, "--push", "--export-cache", "type=inline"])
        assert r.returncode == 0, r.stderr
        _rmi(ref)
        _prune_cache_records({r["ID"] for r in _cache_records()} - before, marker=f"ran-{uid}")
        r = envbuild(["build", "-p", str(proj), "-t", ref, "--import-cache", ref])
        assert r.returncode == 0, r.stderr
        assert not [step for step in _ran(r.stderr) if f"ran-{uid}" in step], r.stderr
        assert _docker("run", "--rm", ref, "cat", "/hello").strip() == f"ran-{uid}"
    finally:
        _rmi(ref)


def test_proxy_values_do_not_change_cache_keys(tmp_path: Path, uid: str) -> None:
    """Proxies reach run steps as ExecOp proxy env, which BuildKit leaves out of cache keys: a build
    with other proxy values is fully cached (the step did not run again, so it still shows the first)."""
    proj = _project(
        tmp_path / "proxy",
        f'base(image="{BASE}", dev=False)\nrun(commands=["echo {uid}", "env | grep -i _proxy= | sort > /proxies"])',
    )
    a, b = f"envbuild-e2e/proxy-a:{uid}", f"envbuild-e2e/proxy-b:{uid}"
    try:
        r = envbuild(
            ["build", "-p", str(proj), "-t", a], env={"HTTP_PROXY": "http://proxy-a.invalid:3128", "NO_PROXY": "x"}
        )
        assert r.returncode == 0, r.stderr
        assert "proxy variables are passed as step env" not in r.stderr
        first = _docker("run", "--rm", a, "cat", "/proxies")
        assert "http://proxy-a.invalid:3128" in first
        r = envbuild(["build", "-p", str(proj), "-t", b], env={"https_proxy": "http://proxy-b.invalid:8080"})
        assert r.returncode == 0, r.stderr
        assert f"run: echo {uid}" in r.stderr and _ran(r.stderr) == [], r.stderr
        assert _docker("run", "--rm", b, "cat", "/proxies") == first
        env_b = json.loads(_docker("image", "inspect", "--format", "{{json .Config.Env}}", b))
        assert not any("proxy" in e.lower() for e in env_b), "proxies never reach the image config"
    finally:
        _rmi(a, b)


@pytest.fixture()
def conda_vsix_project(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, str]]]:
    proj = tmp_path / "condavsix"
    write_channel(proj / "channel", demo_packages())
    (proj / "local-ext.vsix").write_bytes(make_vsix("Local-Pub", "local-ext", "0.0.1"))
    _project(
        proj,
        f'''
base(image="{BASE}", dev=True)
install.conda(use_mamba=True)
config.conda_channel(channel="channels: []\\n")
install.conda_packages(name=["greet"], channel=["./channel"])
install.vscode_extensions(name=["local-ext.vsix"])
''',
    )
    tag = f"envbuild-e2e/conda-vsix:{uuid.uuid4().hex[:10]}"
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    if CA_BUNDLE.is_file():
        env["ENVBUILD_CA_CERT"] = str(CA_BUNDLE)
    try:
        yield proj, tag, env
    finally:
        _rmi(tag)


def test_conda_and_vsix_through_envbuild_build(conda_vsix_project: tuple[Path, str, dict[str, str]]) -> None:
    proj, tag, env = conda_vsix_project
    r = envbuild(["build", "-p", str(proj), "-t", tag, "--owner", "1000:1000"], env=env)
    assert r.returncode == 0, r.stderr
    assert _docker("run", "--rm", tag, "greet") == "hello from a stdlib conda package\n"
    assert _docker("run", "--rm", tag, "sh", "-c", "command -v greet").strip() == "/opt/conda/envs/envd/bin/greet"
    listing = _docker("run", "--rm", tag, "conda", "list", "-n", "envd")
    rows = {line.split()[0]: line.split()[1] for line in listing.splitlines() if line and not line.startswith("#")}
    assert rows == {"greet": "2.1", "greeting-data": "1.0"}
    ext = "/home/envd/.vscode-server/extensions"
    out = _docker(
        "run",
        "--rm",
        tag,
        "sh",
        "-c",
        f"cd {ext} && stat -c '%u:%g %n' local-pub.local-ext-0.0.1/package.json extensions.json",
    )
    assert out.splitlines() == ["1000:1000 local-pub.local-ext-0.0.1/package.json", "1000:1000 extensions.json"]
    manifest = json.loads(_docker("run", "--rm", tag, "cat", f"{ext}/extensions.json"))
    assert [m["identifier"]["id"] for m in manifest] == ["local-pub.local-ext"]
    config = json.loads(_docker("image", "inspect", "--format", "{{json .Config.Env}}", tag))
    assert "CONDA_PREFIX=/opt/conda/envs/envd" in config
    assert next(e for e in config if e.startswith("PATH=")).startswith("PATH=/opt/conda/envs/envd/bin:")
    assert (Path(env["HOME"]) / ".cache/envbuild/vscode/extensions/local-pub.local-ext-0.0.1/package.json").is_file()
    again = envbuild(["build", "-p", str(proj), "-t", tag, "--owner", "1000:1000"], env=env)
    assert again.returncode == 0 and "is up to date" in again.stderr, again.stderr


# ---- where outputs may go, and all or nothing (issue 15, items 3 and 4) -----------------------------


def test_output_destinations_are_never_replaced_by_accident(tmp_path: Path, uid: str) -> None:
    proj = _project(tmp_path / "dest", f'base(image="{BASE}", dev=False)\nrun(commands=["echo {uid} > /hello"])')
    (tmp_path / "precious").write_text("precious\n")
    link = tmp_path / "link.tar"
    link.symlink_to(tmp_path / "precious")
    r = envbuild(["build", "-p", str(proj), "-o", f"type=tar,dest={link}"])
    assert r.returncode == 2, r.stderr
    assert f"--output dest={link}: a symlink is there; refusing to replace" in r.stderr
    assert link.is_symlink() and (tmp_path / "precious").read_text() == "precious\n"

    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("mine\n")
    r = envbuild(["build", "-p", str(proj), "-o", str(full)])
    assert r.returncode == 2 and "the directory is not empty; pass --force" in r.stderr, r.stderr
    assert sorted(p.name for p in full.iterdir()) == ["mine.txt"]
    r = envbuild(["build", "-p", str(proj), "-o", str(full), "--force"])
    assert r.returncode == 0, r.stderr
    assert (full / "mine.txt").read_text() == "mine\n" and (full / "hello").read_text().strip() == uid

    r = envbuild(["build", "-p", str(proj), "-o", str(tmp_path / "a"), "-o", f"type=tar,dest={tmp_path / 'b.tar'}"])
    assert r.returncode == 2 and "only one --output" in r.stderr, r.stderr
    r = envbuild(["build", "-p", str(proj), "--push"], env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert r.returncode == 2 and "--push needs -t" in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "full", "link.tar", "precious"]


def _big_project(root: Path) -> Path:
    """A result large enough that its export takes a while: 2000 files of 100 kB (cached after one build)."""
    return _project(
        root,
        f'base(image="{BASE}", dev=False)\n'
        'run(commands=["mkdir /many && for i in $(seq 2000); do head -c 100000 /dev/urandom > /many/f$i; done"])',
    )


def _bytes_under(path: Path) -> int:
    """Bytes of the regular files below ``path`` while an export writes there: a file or directory
    renamed or removed meanwhile counts nothing (os.walk skips what it cannot list)."""
    total = 0
    for parent, _dirs, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(parent, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


@pytest.mark.parametrize("how", ["ctrl-c", "engine-gone"])
@pytest.mark.parametrize("kind", ["tar", "local"])
def test_an_export_cut_short_leaves_nothing(tmp_path: Path, how: str, kind: str) -> None:
    import signal
    import time

    from tests.envbuild.test_faults_e2e import DOCKER_SOCK, Relay

    proj = _big_project(tmp_path / "big")
    assert envbuild(["build", "-p", str(proj), "-t", "envbuild-e2e/big:dev"]).returncode == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep\n")
    dest = out / ("rootfs.tar" if kind == "tar" else "tree")
    output = f"type=tar,dest={dest}" if kind == "tar" else f"type=local,dest={dest}"
    relay = Relay(tmp_path / "relay.sock", DOCKER_SOCK)
    env = {k: v for k, v in os.environ.items() if k.upper() not in _PROXY_VARS and k != "BUILDKIT_HOST"}
    env["DOCKER_HOST"] = f"unix://{relay.path}"
    proc = subprocess.Popen(
        [ENVBUILD, "build", "-p", str(proj), "-o", output, "--progress", "plain"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while _bytes_under(out) < 20_000_000 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the export ended before it could be cut short:\n{proc.communicate()[1]}"
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        else:
            relay.stop()
        _, err = proc.communicate(timeout=120)
    finally:
        relay.stop()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == (130 if how == "ctrl-c" else proc.returncode) and proc.returncode in (1, 3, 130), err
    assert "Traceback" not in err, err
    time.sleep(1)  # anything still writing after the exit would show now
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert left == ["keep.txt"], f"left behind after {how}: {left[:10]} ({len(left)} entries)"
    subprocess.run(["docker", "rmi", "-f", "envbuild-e2e/big:dev"], capture_output=True, check=False)
