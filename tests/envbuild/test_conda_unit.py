"""Conda stage LLB facts and the conda command's channel logic (no engine, no rattler needed)."""

from __future__ import annotations

import json

import llb
from envbuild.compiler import conda, conda_cli
from envbuild.compiler.compile import _Compiler
from envbuild.compiler.mirrors import Mirrors
from envbuild.compiler.options import CompileOptions
from frontend import spec as S

BASE = "docker.io/library/debian:bookworm"


def test_channel_urls_follow_condarc_mirrors_and_env(monkeypatch: object) -> None:
    rc = {"channel_alias": "https://mirror.example/conda/", "custom_channels": {"pytorch": "https://pt.example"}}
    assert conda_cli.channel_url("conda-forge", rc) == "https://mirror.example/conda/conda-forge"
    assert conda_cli.channel_url("pytorch", rc) == "https://pt.example/pytorch"
    assert conda_cli.channel_url("/srv/chan/", rc) == "file:///srv/chan"
    assert conda_cli.channel_url("https://x.example/c/", {}) == "https://x.example/c"
    assert conda_cli.channel_url("bioconda", {}) == "https://conda.anaconda.org/bioconda"
    monkeypatch.setenv("ENVBUILD_CONDA_CHANNEL_ALIAS", "https://env.example")  # type: ignore[attr-defined]
    assert conda_cli.channel_url("bioconda", rc) == "https://env.example/bioconda"


def test_channel_list_order_override_and_empty_condarc() -> None:
    rc = {"channels": ["defaults", "bioconda"], "default_channels": ["https://d.example/main"]}
    assert conda_cli.channels(["file:///c"], ["extra"], False, rc) == [
        "file:///c",
        "https://conda.anaconda.org/extra",
        "https://conda.anaconda.org/bioconda",
        "https://d.example/main",
    ]
    assert conda_cli.channels(["file:///c"], [], True, rc) == ["file:///c"]
    assert conda_cli.channels([], [], False, {"channels": []}) == []
    assert conda_cli.channels([], [], False, {}) == ["https://conda.anaconda.org/conda-forge"]


def _stage(spec: S.Spec) -> tuple[list[dict[str, object]], list[str]]:
    c = _Compiler(spec, CompileOptions(project="p", owner=(1000, 1000)))
    base = llb.image(BASE)
    state, add = conda.stage(c, base, conda.tool_stage(c, base), Mirrors(conda_channel_alias="https://m.example/c"))
    assert add.path == ("/opt/conda/envs/envd/bin",)
    return state.marshal().to_json(), [s.name for s in c.steps]


def test_conda_stage_order_cache_and_local_channel() -> None:
    spec = S.Spec(
        base=S.Base(BASE, dev=True),
        conda=S.Conda(),
        python=S.Python("3.10"),
        conda_channel=S.Text("channels:\n  - conda-forge\n"),
        conda_packages=(S.CondaPackages(("numpy",), ("./chan", "pytorch")), S.CondaPackages(env_file="env.yml")),
    )
    ops, names = _stage(spec)
    assert names == [
        "tools: python3-venv (for py-rattler)",
        "tools: py-rattler 0.28.0 from the Python index",
        "conda: python3 to run the conda command",
        "conda: the conda command (py-rattler) and .condarc",
        "conda: environment envd (python 3.10)",
        "conda packages: numpy",
        "conda packages: --file env.yml",
    ]
    execs = [o["Op"]["exec"] for o in ops if "exec" in o["Op"]]  # type: ignore[index,operator]
    by_script = {e["meta"]["args"][-1].splitlines()[-2 if "chown" in e["meta"]["args"][-1] else -1]: e for e in execs}
    create = next(e for s, e in by_script.items() if "conda create" in s)
    assert "python=3.10" in create["meta"]["args"][-1]
    assert "ENVBUILD_CONDA_CHANNEL_ALIAS=https://m.example/c" in create["meta"]["env"]
    caches = [(m["dest"], m["cacheOpt"]["ID"]) for m in create["mounts"] if m.get("mountType") == "CACHE"]
    assert caches == [(conda.RATTLER_CACHE, conda.RATTLER_CACHE_ID)]
    install = next(e for e in execs if "conda install" in e["meta"]["args"][-1] and "numpy" in e["meta"]["args"][-1])
    script = install["meta"]["args"][-1]
    assert "-c file:///run/envbuild-conda-channels/chan -c pytorch numpy" in script
    assert "chown -R 1000:1000 /opt/conda/envs/envd" in script
    assert any(
        m["dest"] == "/run/envbuild-conda-channels/chan" and m.get("selector") == "/chan" for m in install["mounts"]
    )
    text = json.dumps(ops)
    assert "--require-hashes" in text and conda.WHEEL_SHA256["py-rattler==0.28.0"][0] in text
    assert "--file /run/envbuild-context/env.yml" in text


def test_use_mamba_adds_micromamba_and_mamba_commands() -> None:
    ops, _ = _stage(S.Spec(base=S.Base(BASE), conda=S.Conda(use_mamba=True)))
    files = [a["mkfile"]["path"] for o in ops if "file" in o["Op"] for a in o["Op"]["file"]["actions"] if "mkfile" in a]  # type: ignore[index,operator,union-attr]
    assert {"/usr/local/bin/conda", "/usr/local/bin/micromamba", "/usr/local/bin/mamba", conda.CONDARC} <= set(files)
