"""The runtime, CUDA and VS Code stages wired into `compile`: conda-owned Python, the PyTorch index per
CUDA version with mirrors, VS Code extensions, additions to the image config, local sources at their host paths, and
proxy settings kept out of every step's cache key (ExecOp proxy env)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import frontend
from envbuild.compiler import BaseConfig, CompileOptions
from envbuild.compiler import scripts as S
from envbuild.compiler.compile import CompiledBuild, compile
from envbuild.compiler.mirrors import Mirrors
from envbuild.compiler.vscode import LOCAL_NAME, Extension
from frontend.spec import Spec

DEBIAN = BaseConfig(env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("bash",))
OPTS = CompileOptions(project="proj", owner=(1000, 1000), base_config=DEBIAN, context_dir="/host/proj")


def spec_of(tmp_path: Path, body: str, files: dict[str, str] | None = None) -> Spec:
    (tmp_path / "build.envd").write_text("def build():\n" + "".join(f"    {line}\n" for line in body.splitlines()))
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    return frontend.evaluate(tmp_path, user_config=False)


def execs(compiled: CompiledBuild) -> dict[str, dict]:
    out = {}
    for entry in compiled.definition().to_json():
        name = entry.get("OpMetadata", {}).get("description", {}).get("llb.customname", "")
        if "exec" in entry["Op"]:
            out[name] = entry["Op"]["exec"]
    return out


def image_env(compiled: CompiledBuild) -> dict[str, str]:
    return dict(e.split("=", 1) for e in compiled.image["env"])  # type: ignore[union-attr]


CONDA = """base(image="local/debian:bookworm", dev=True)
install.conda()
install.python(version="3.11")
install.python_packages(name=["rich"])
config.jupyter()"""


def test_conda_owns_python_no_venv_and_uv_from_the_tool_stage(tmp_path: Path) -> None:
    compiled = compile(spec_of(tmp_path, CONDA), OPTS)
    names = [s.name for s in compiled.steps]
    assert not any(n.startswith("python 3.11 and uv") for n in names), "no venv step when conda owns Python"
    assert names.index("conda: environment envd (python 3.11)") < names.index("uv 0.13.9 for the conda env's Python")
    assert (
        names.index("uv 0.13.9 for the conda env's Python")
        < names.index("jupyterlab")
        < names.index("python packages: rich")
    )
    ex = execs(compiled)
    for step in ("jupyterlab", "python packages: rich"):
        assert "UV_PYTHON=/opt/conda/envs/envd/bin/python" in ex[step]["meta"]["args"][-1]
    assert "uv pip install rich" in ex["python packages: rich"]["meta"]["args"][-1]
    assert S.VENV not in json.dumps(compiled.definition().to_json()).replace(f"{S.VENV}/bin/python", "")
    env = image_env(compiled)
    assert "VIRTUAL_ENV" not in env and env["CONDA_PREFIX"] == "/opt/conda/envs/envd"
    assert env["PATH"].split(":")[:2] == ["/opt/conda/envs/envd/bin", "/home/envd/.local/bin"]
    assert "--require-hashes" in ex["tools: uv 0.13.9 from the Python index"]["meta"]["args"][-1]


def test_conda_without_pip_packages_builds_no_uv(tmp_path: Path) -> None:
    compiled = compile(
        spec_of(tmp_path, 'base(image="x", dev=False)\ninstall.conda()\ninstall.python(version="3.11")'), OPTS
    )
    assert not any("uv" in s.name for s in compiled.steps)


def test_torch_index_follows_the_cuda_version_and_the_pytorch_mirror(tmp_path: Path) -> None:
    body = """base(image="ubuntu:22.04", dev=True)
install.cuda(version="12.1.1", cudnn="8")
install.python(version="3.11")
install.python_packages(name=["torch"])
install.python_packages(name=["numpy"])"""
    spec = spec_of(tmp_path, body)
    opts = replace(OPTS, mirrors=Mirrors(pytorch="https://mirror.example/torch"))
    compiled = compile(spec, opts)
    ex = execs(compiled)
    assert "UV_INDEX=pytorch=https://mirror.example/torch/cu121" in ex["python packages: torch"]["meta"]["env"]
    assert not any(e.startswith("UV_INDEX") for e in ex["python packages: numpy"]["meta"]["env"])
    assert compiled.labels["ai.envbuild.cuda"] == "12.1.1" and compiled.labels["ai.envbuild.gpu"] == "true"
    with_index = spec_of(
        tmp_path / "i" if (tmp_path / "i").mkdir() is None else tmp_path,
        body + '\nconfig.pip_index(url="https://pypi.example/simple")',
    )
    ex = execs(compile(with_index, opts))
    assert "UV_DEFAULT_INDEX=https://pypi.example/simple" in ex["python packages: torch"]["meta"]["env"]
    assert not any("pytorch=" in e for e in ex["python packages: torch"]["meta"]["env"])


def test_vscode_extensions_need_host_preparation(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 'base(image="x", dev=True)\ninstall.vscode_extensions(name=["ms-python.python"])')
    plain = compile(spec, OPTS)
    assert not any(s.kind == "vscode" for s in plain.steps)
    assert any("install.vscode_extensions" in n for n in plain.notes)
    ext = Extension("ms-python.python", "2024.1.0", "ms-python.python-2024.1.0", "ms-python.python-2024.1.0.vsix")
    compiled = compile(spec, replace(OPTS, vscode_extensions=(ext,), vscode_cache="/host/cache"))
    assert [s.name for s in compiled.steps if s.kind == "vscode"] == ["vscode extensions: ms-python.python@2024.1.0"]
    assert dict(compiled.local_dirs) == {LOCAL_NAME: "/host/cache/extensions"}
    assert not compiled.notes or not any("vscode" in n for n in compiled.notes)


def test_local_sources_map_to_their_host_paths(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path, 'base(image="x", dev=False)\ninstall.python_packages(requirements="r.txt")', {"r.txt": "six\n"}
    )
    assert dict(compile(spec, OPTS).local_dirs) == {"context": "/host/proj"}


@pytest.mark.parametrize(
    "line",
    [
        "install.julia()",
        "install.rust()",
        'install.go(version="1.25.3")',
        'install.nodejs(version="25.1.0")',
        "install.uv()",
        "install.pixi()",
        'install.r_lang()\ninstall.r_packages(name=["x"])',
    ],
)
def test_runtime_features_compile(tmp_path: Path, line: str) -> None:
    compiled = compile(spec_of(tmp_path, 'base(image="x", dev=True)\n' + line), OPTS)
    assert compiled.definition().terminal


def test_uv_comes_from_the_tool_stage(tmp_path: Path) -> None:
    compiled = compile(spec_of(tmp_path, 'base(image="x", dev=True)\ninstall.uv(python_version="3.12")'), OPTS)
    names = [s.name for s in compiled.steps]
    assert "tools: uv 0.13.9 from the Python index" in names and "uv: copy uv and uvx from the tool stage" in names
    assert image_env(compiled)["UV_PYTHON_PREFERENCE"] == "only-managed"


def test_proxy_goes_to_exec_proxy_env_and_leaves_the_cache_keys_alone(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, CONDA + '\nrun(commands=["echo hi"])')
    plain = compile(spec, OPTS)
    proxied = compile(spec, replace(OPTS, proxy={"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "localhost"}))
    assert not proxied.notes or not any("proxy" in n for n in proxied.notes)
    network_steps = 0
    for name, ex in execs(proxied).items():
        assert not any("proxy" in e.lower() for e in ex["meta"]["env"]), name
        if ex.get("network", "UNSET") != "NONE" and "proxy_env" in ex["meta"]:
            network_steps += 1
            assert ex["meta"]["proxy_env"] == {"https_proxy": "http://proxy.example:3128", "no_proxy": "localhost"}
    assert network_steps >= 5

    def stripped(c: CompiledBuild) -> list[bytes]:
        out = []
        for _, op, _md in c.definition().iter_ops():
            if op.HasField("exec"):
                op.exec.meta.ClearField("proxy_env")
            op.ClearField("inputs")
            out.append(op.SerializeToString(deterministic=True))
        return sorted(out)

    assert stripped(proxied) == stripped(plain), "only Meta.proxy_env differs, which BuildKit keeps out of cache keys"


def test_pip_options_in_package_names_become_uv_options(tmp_path: Path) -> None:
    """envd passes `install.python_packages(name=[...])` through a shell split to pip; the options
    users write there reach uv, and an explicit index keeps the CUDA torch index out."""
    body = """base(image="ubuntu:22.04")
install.cuda(version="12.1.1")
install.python_packages(name=["torch --index-url https://download.pytorch.org/whl/cpu"])
install.python_packages(name=["flash-attn --no-build-isolation", "--pre"])"""
    ex = execs(compile(spec_of(tmp_path, body), OPTS))
    torch = ex["python packages: torch --index-url https://download.pytorch.org/whl/cpu"]["meta"]
    assert "uv pip install --index-url https://download.pytorch.org/whl/cpu torch" in torch["args"][-1]
    assert not any(e.startswith("UV_INDEX=") for e in torch["env"])
    flash = ex["python packages: flash-attn --prerelease=allow --no-build-isolation"]["meta"]
    assert "uv pip install --prerelease=allow --no-build-isolation flash-attn" in flash["args"][-1]
