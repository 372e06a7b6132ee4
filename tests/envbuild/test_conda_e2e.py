"""Conda end to end on the real engine: a stdlib-made channel in the build context, py-rattler from
PyPI in the tool stage, the package runs inside, a rebuild is fully cached, and a changed
environment installs from the package cache with the channel's package files gone."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import llb
from envbuild.compiler import conda
from envbuild.compiler.compile import _Compiler
from envbuild.compiler.mirrors import Mirrors
from envbuild.compiler.options import CompileOptions
from frontend import spec as S
from tests.envbuild.conda_channel import demo_packages, write_channel

pytestmark = pytest.mark.engine

BASE = "local/debian:bookworm"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _spec(condarc: str) -> S.Spec:
    return S.Spec(
        base=S.Base(BASE, dev=False),
        conda=S.Conda(use_mamba=True),
        conda_channel=S.Text(condarc),
        conda_packages=(S.CondaPackages(("greet",), ("./channel",)),),
    )


def _build(spec: S.Spec, context: Path, tag: str) -> list[llb.VertexInfo]:
    c = _Compiler(spec, CompileOptions(project="conda-e2e"))
    base = llb.image(BASE)
    tools = conda.tool_stage(c, base)
    state, add = conda.stage(c, base, tools, Mirrors())
    path = ":".join([*add.path, "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    with llb.connect() as client:
        result = client.solve(
            state,
            export=llb.DockerImage(tag),
            local_dirs={"context": str(context)},
            secrets={"envbuild-ca": CA_BUNDLE.read_bytes()} if CA_BUNDLE.is_file() else {},
            image_config=llb.ImageConfig(env=[f"PATH={path}", *(f"{k}={v}" for k, v in add.env.items())]),
        )
    return result.vertices


def _run(tag: str, *cmd: str) -> str:
    out = subprocess.run(["docker", "run", "--rm", tag, *cmd], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    context = tmp_path_factory.mktemp("conda-ctx")
    write_channel(context / "channel", demo_packages())
    tag = f"envbuild-test/conda-{uuid.uuid4().hex[:8]}:1"
    _build(_spec("channels: []\n"), context, tag)
    try:
        yield context, tag
    finally:
        subprocess.run(["docker", "rmi", "-f", tag, tag.replace(":1", ":2")], capture_output=True)


def test_package_and_its_dependency_run_inside(built: tuple[Path, str]) -> None:
    _, tag = built
    assert _run(tag, "greet") == "hello from a stdlib conda package\n"
    assert _run(tag, "sh", "-c", "command -v greet") == "/opt/conda/envs/envd/bin/greet\n"


def test_users_conda_command_lists_the_environment(built: tuple[Path, str]) -> None:
    _, tag = built
    listing = _run(tag, "conda", "list", "-n", "envd")
    rows = {line.split()[0]: line.split()[1] for line in listing.splitlines() if not line.startswith("#")}
    assert rows == {"greet": "2.1", "greeting-data": "1.0"}
    assert "/opt/conda/envs/envd" in _run(tag, "micromamba", "env", "list")
    out = _run(tag, "sh", "-c", "conda create -y -n two --override-channels -c file:///nowhere && conda env list")
    assert "/opt/conda/envs/two" in out


def test_rebuild_is_cached_and_a_changed_env_installs_from_the_package_cache(built: tuple[Path, str]) -> None:
    context, tag = built
    again = _build(_spec("channels: []\n"), context, tag)
    ran = [v.name for v in again if not v.cached and v.name and not v.name.startswith(("[internal]", "exporting"))]
    assert [n for n in ran if n.startswith("/bin/sh") or "conda" in n] == []
    for pkg in (context / "channel" / "noarch").glob("*.tar.bz2"):
        pkg.unlink()
    tag2 = tag.replace(":1", ":2")
    vertices = _build(_spec(f"# changed {uuid.uuid4().hex}\nchannels: []\n"), context, tag2)
    assert any(not v.cached and "conda packages: greet" in (v.name or "") for v in vertices)
    assert _run(tag2, "greet") == "hello from a stdlib conda package\n"


def test_unsafe_channel_path_is_refused() -> None:
    spec = S.Spec(base=S.Base(BASE), conda=S.Conda(), conda_packages=(S.CondaPackages(("x",), ("./../up",)),))
    c = _Compiler(spec, CompileOptions())
    base = llb.image(BASE)
    with pytest.raises(Exception, match="outside the build context"):
        conda.stage(c, base, base, Mirrors())
