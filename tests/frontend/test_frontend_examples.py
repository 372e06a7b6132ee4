"""Every example evaluates, and records what its README promises."""

from __future__ import annotations

from pathlib import Path

import pytest

import frontend

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = sorted(p.parent.name for p in EXAMPLES.glob("*/build.envd"))


def test_at_least_the_documented_examples_exist() -> None:
    assert {
        "jupyter",
        "pytorch-cuda",
        "conda",
        "requirements",
        "vscode",
        "serving",
        "multi-target",
        "shared-lib",
    } <= set(NAMES)
    readme = (EXAMPLES / "README.md").read_text()
    for name in NAMES:
        assert f"`{name}/`" in readme


@pytest.mark.parametrize("name", NAMES)
def test_example_evaluates_cleanly(name: str) -> None:
    spec = frontend.evaluate(EXAMPLES / name, user_config=False)
    assert spec.warnings == ()
    for rel in spec.inputs:
        assert (EXAMPLES / name / rel).exists()


def test_example_contents() -> None:
    def ev(name: str, **kw: object) -> frontend.Spec:
        return frontend.evaluate(EXAMPLES / name, user_config=False, **kw)  # type: ignore[arg-type]

    j = ev("jupyter")
    assert j.base.dev and j.jupyter is not None and j.python.version == "3.11"
    assert j.base.image == "local/debian:bookworm"
    t = ev("pytorch-cuda")
    assert t.cuda.torch_index == "https://download.pytorch.org/whl/cu121" and t.gpu.count == 1
    c = ev("conda")
    assert c.conda_packages[0].env_file == "environment.yml" and c.inputs == ("environment.yml",)
    r = ev("requirements")
    assert r.python_packages[0].requirements == "requirements.txt"
    v = ev("vscode")
    assert v.shell.name == "zsh" and v.vscode_extensions[0].names == ("ms-python.python", "charliermarsh.ruff")
    s = ev("serving")
    assert not s.dev and s.entrypoint.args == ("python3", "/srv/app.py") and s.runtime.exposes[0].envd_port == 8000
    m_cpu, m_gpu = ev("multi-target"), ev("multi-target", function="gpu")
    assert m_cpu.cuda is None and m_gpu.cuda.image.endswith("12.4.1-cudnn-devel-ubuntu22.04")
    lib = ev("shared-lib")
    assert [f.label for f in lib.source_files] == ["build.envd", "lib/common.envd"]
    assert lib.python_packages[0].pos.file == "lib/common.envd"
