"""The user-level default file, syntax header, target selection and CUDA table."""

from __future__ import annotations

from pathlib import Path

import pytest

import frontend
from frontend import cuda
from frontend.evaluator import split_target


def body(*lines: str) -> str:
    return "def build():\n" + "".join(f"    {ln}\n" for ln in lines)


def write_user_config(text: str) -> Path:
    import os

    cfg = Path(os.environ["XDG_CONFIG_HOME"]) / "envbuild" / "config.envd"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(text)
    return cfg


def test_user_config_runs_first_and_can_be_disabled(ev) -> None:
    cfg = write_user_config(
        'config.pip_index(url = "https://mirror.example/simple")\nruntime.environ(env = {"A": "user"})\n'
    )
    src = body('runtime.environ(env = {"A": "project"})')
    s = ev(src, user_config=None)
    assert s.pip_index.url == "https://mirror.example/simple"
    assert s.runtime.environ_dict == {"A": "project"}
    assert s.pip_index.pos.file == str(cfg)  # outside $HOME in tests, so an absolute label
    assert [f.label for f in s.source_files] == [str(cfg), "build.envd"]
    assert ev(src, user_config=False).pip_index is None
    assert ev(src).pip_index is None  # the fixture's default is False


def test_explicit_user_config_path(ev, tmp_path: Path) -> None:
    other = tmp_path / "team.envd"
    other.write_text('config.apt_source(source = "deb http://mirror/debian bookworm main")\n')
    assert ev(body("pass"), user_config=other).apt_source.text.startswith("deb http://mirror")
    with pytest.raises(frontend.LoadError, match="does not exist"):
        ev(body("pass"), user_config=tmp_path / "nope.envd")


def test_user_config_errors_are_positioned(ev) -> None:
    cfg = write_user_config('\nconfig.gpu(count = "2")\n')
    with pytest.raises(frontend.TypeError_) as info:
        ev(body("pass"), user_config=None)
    assert (info.value.file, info.value.line, info.value.col) == (str(cfg), 2, 1)


@pytest.mark.parametrize("header", ["# syntax=v1\n", "#syntax = v1\n", "# comment\n# syntax=v1\n", "\n"])
def test_syntax_v1_header_optional(ev, header: str) -> None:
    assert ev(header + body("install.python()")).python is not None


def test_v0_message_explains_migration(ev) -> None:
    with pytest.raises(frontend.V0Syntax) as info:
        ev("# syntax=v0\n" + body('base(os="ubuntu20.04", language="python3")'))
    assert "install.conda()" in info.value.hint and "envd.tensorchord.ai" in info.value.hint


def test_split_target(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text("")
    assert split_target(tmp_path) == (tmp_path / "build.envd", None)
    assert split_target(f"{tmp_path}/build.envd:gpu") == (tmp_path / "build.envd", "gpu")
    assert split_target(f"{tmp_path}:gpu") == (tmp_path / "build.envd", "gpu")
    assert split_target(":gpu") == (Path("build.envd"), "gpu")


def test_cuda_table_is_consistent() -> None:
    t = cuda.table()
    assert t["date"] and t["versions"]
    for version, entry in t["versions"].items():
        assert entry["default_cudnn"] in entry["cudnn"], version
        img = cuda.resolve(version, None, dev=True, base_image=f"ubuntu:{entry['ubuntu'][-1]}")
        assert img.image.startswith(f"docker.io/nvidia/cuda:{version}-cudnn")
        assert img.image.endswith(f"-devel-ubuntu{entry['ubuntu'][-1]}")
        assert img.torch_index is None or img.torch_index.startswith("https://download.pytorch.org/whl/cu")
    # NVIDIA's spelling change (envd issue #1998): no digit after -cudnn- from CUDA 12.4 on.
    assert cuda.resolve("12.8.1", "9", dev=True, base_image="ubuntu:22.04").image.endswith(
        ":12.8.1-cudnn-devel-ubuntu22.04"
    )
    assert cuda.resolve("11.8.0", "cudnn8", dev=False, base_image="ubuntu:20.04").image.endswith(
        ":11.8.0-cudnn8-runtime-ubuntu20.04"
    )
    assert cuda.resolve("12.3.2", "9.1", dev=False, base_image="ubuntu:22.04").image.endswith(
        ":12.3.2-cudnn9-runtime-ubuntu22.04"
    )
    assert cuda.torch_index("12.1.1") == "https://download.pytorch.org/whl/cu121"
    assert cuda.torch_index("9.0.0") is None
    with pytest.raises(cuda.CudaError, match="not a version number"):
        cuda.resolve("latest", None, dev=True, base_image="ubuntu:22.04")


def test_refresh_script_parses_hub_tags() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "refresh-cuda-table.py"
    spec = importlib.util.spec_from_file_location("refresh_cuda_table", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tags = [
        "12.8.1-cudnn-devel-ubuntu22.04",
        "12.8.1-cudnn-runtime-ubuntu22.04",
        "12.8.1-cudnn-devel-ubuntu24.04",
        "12.8.1-devel-ubuntu22.04",
        "11.8.0-cudnn8-devel-ubuntu20.04",
        "11.8.0-cudnn8-runtime-ubuntu20.04",
        "12.1.1-cudnn8-devel-ubuntu22.04",
        "latest",
        "10.2-devel-ubuntu18.04",
        "11.2.2-cudnn8-devel-ubuntu20.04",
    ]
    assert mod.build_versions(tags, "11.3.0", {}) == {
        "11.8.0": {"cudnn": {"8": "cudnn8"}, "ubuntu": ["20.04"], "default_cudnn": "8"},
        "12.8.1": {"cudnn": {"9": "cudnn"}, "ubuntu": ["22.04"], "default_cudnn": "9"},
    }
