"""Golden LLB for the stages whose upstreams are unreachable here (CUDA, R, Julia, Rust, Go, Node,
pixi, uv): URLs, checksums, mirrors, cache mounts and order. ``ENVBUILD_UPDATE_GOLDEN=1`` rewrites
the files after a deliberate change; the facts asserted next to each snapshot say what matters."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

import llb
from envbuild.compiler import compile as C
from envbuild.compiler import cuda, languages
from envbuild.compiler.compile import _Compiler
from envbuild.compiler.mirrors import MirrorConfigError, Mirrors
from envbuild.compiler.options import CompileOptions
from envbuild.compiler.stagekit import Additions
from frontend import cuda as cuda_table
from frontend import spec as S

GOLDEN = Path(__file__).with_name("golden") / "runtimes"
BASE = "docker.io/library/ubuntu:22.04"
MIRRORS = Mirrors.from_mapping(
    {
        "go": "https://mirror.example/golang",
        "nodejs": "https://mirror.example/node/",
        "julia": "https://mirror.example/julia",
        "rustup_dist_server": "https://mirror.example/rust",
        "rustup_update_root": "https://mirror.example/rust/rustup",
        "pixi": "https://mirror.example/pixi",
        "cran": "https://mirror.example/cran",
        "pytorch": "https://mirror.example/pytorch",
        "codex": "https://mirror.example/codex",
    }
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _ops(state: llb.State) -> list[dict[str, object]]:
    return state.marshal().to_json()


def _golden(name: str, data: object) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if os.environ.get("ENVBUILD_UPDATE_GOLDEN") or not path.exists():
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"LLB for {name} changed; rerun with ENVBUILD_UPDATE_GOLDEN=1 if deliberate"


def _execs(ops: list[dict[str, object]]) -> list[dict[str, object]]:
    return [o["Op"]["exec"] for o in ops if "exec" in o["Op"]]  # type: ignore[index,operator]


def _compose(spec: S.Spec, fn_name: str) -> tuple[list[dict[str, object]], Additions]:
    c = _Compiler(spec, CompileOptions(project="golden", owner=(1000, 1000)))
    base = llb.image(BASE)
    tools = languages.fetch_tools(c, base)
    fn = getattr(languages, fn_name)
    state, add = fn(c, base, tools, MIRRORS)
    return _ops(state), add


@pytest.mark.parametrize(
    ("lang", "spec", "urls", "path"),
    [
        (
            "go",
            S.Spec(base=S.Base(BASE, dev=True), go=S.Go("1.25.3")),
            [
                "https://mirror.example/golang/go1.25.3.linux-amd64.tar.gz",
                "https://mirror.example/golang/go1.25.3.linux-arm64.tar.gz.sha256",
                "0335f314b6e7bfe08c3d0cfaa7c19db961b7b99fb20be62b0a826c992ad14e0f",
            ],
            "/usr/local/go/bin",
        ),
        (
            "nodejs",
            S.Spec(base=S.Base(BASE, dev=True), nodejs=S.NodeJS("25.1.0")),
            [
                "https://mirror.example/node/v25.1.0/node-v25.1.0-linux-x64.tar.xz",
                "https://mirror.example/node/v25.1.0/SHASUMS256.txt",
                "dbfed2a1ec191af657f727c9bdc87e88ec9b10fd1a095ed68996090648b0a03f",
            ],
            "/opt/nodejs/bin",
        ),
        (
            "julia",
            S.Spec(
                base=S.Base(BASE, dev=True),
                julia=S.Julia(),
                julia_packages=(S.JuliaPackages(("Example", "JSON")),),
                julia_pkg_server=S.Url("https://pkg.mirror.example"),
            ),
            [
                "https://mirror.example/julia/linux/x64/1.10/julia-1.10.10-linux-x86_64.tar.gz",
                "https://mirror.example/julia/checksums/julia-1.10.10.sha256",
                "a4b157ed68da10471ea86acc05a0ab61c1a6931ee592a9b236be227d72da50ff",
                'Pkg.add([\\"Example\\", \\"JSON\\"])',
                "JULIA_PKG_SERVER=https://pkg.mirror.example",
            ],
            "/opt/julia/bin",
        ),
        (
            "rust",
            S.Spec(base=S.Base(BASE, dev=True), rust=S.Rust("1.80.0")),
            [
                "https://mirror.example/rust/rustup/dist/x86_64-unknown-linux-gnu/rustup-init",
                "https://mirror.example/rust/rustup/dist/aarch64-unknown-linux-gnu/rustup-init.sha256",
                "RUSTUP_DIST_SERVER=https://mirror.example/rust",
                "--default-toolchain 1.80.0",
            ],
            "/opt/rust/bin",
        ),
        (
            "pixi",
            S.Spec(base=S.Base(BASE, dev=True), pixi=S.Pixi(pypi_index="https://pypi.mirror.example/simple")),
            [
                "https://mirror.example/pixi/v0.62.2/pixi-x86_64-unknown-linux-musl.tar.gz.sha256",
                _b64('[pypi-config]\nindex-url = "https://pypi.mirror.example/simple"\n'),
            ],
            None,
        ),
        (
            "codex",
            S.Spec(base=S.Base(BASE, dev=True), codex=S.Codex("rust-v0.99.0")),
            [
                "https://mirror.example/codex/rust-v0.99.0/codex-x86_64-unknown-linux-musl.tar.gz",
                "https://mirror.example/codex/rust-v0.99.0/codex-aarch64-unknown-linux-musl.tar.gz",
                "publishes no checksum",
            ],
            None,
        ),
    ],
)
def test_download_languages(lang: str, spec: S.Spec, urls: list[str], path: str | None) -> None:
    ops, add = _compose(spec, lang)
    text = json.dumps(ops)
    for fact in urls:
        assert fact in text, fact
    execs = _execs(ops)
    fetch = [e for e in execs if "envbuild-downloads" in json.dumps(e)]
    assert len(fetch) == 1, "one download step, on the persistent download cache"
    cache = [m for m in fetch[0]["mounts"] if m.get("mountType") == "CACHE"]
    assert [(m["dest"], m["cacheOpt"]["ID"]) for m in cache] == [(languages.DL_CACHE, languages.DL_CACHE_ID)]
    assert "sha256sum -c" in json.dumps(fetch[0])
    if path:
        assert add.path == (path,)
    _golden(lang, ops)


def test_rust_image_env_keeps_mirrors_for_later_rustup() -> None:
    _, add = _compose(S.Spec(base=S.Base(BASE, dev=True), rust=S.Rust()), "rust")
    assert dict(add.env) == {
        "RUSTUP_HOME": "/opt/rust",
        "CARGO_HOME": "/opt/rust",
        "RUSTUP_DIST_SERVER": "https://mirror.example/rust",
        "RUSTUP_UPDATE_ROOT": "https://mirror.example/rust/rustup",
    }


def test_r_lang_and_packages_use_the_cran_mirror_in_order() -> None:
    spec = S.Spec(
        base=S.Base(BASE, dev=True),
        r_lang=S.RLang(),
        r_packages=(S.RPackages(("data.table",)), S.RPackages(("ggplot2", "dplyr"))),
    )
    c = _Compiler(spec, CompileOptions(project="golden"))
    state, _ = languages.r_lang(c, llb.image(BASE), MIRRORS)
    ops = _ops(state)
    execs = [json.dumps(e) for e in _execs(ops)]
    assert len(execs) == 3
    assert "r-base" in execs[0] and "envbuild-apt-cache" in execs[0]
    assert 'repos = \\\\\\"https://mirror.example/cran\\\\\\"' in execs[1] or "https://mirror.example/cran" in execs[1]
    assert "data.table" in execs[1] and "ggplot2" in execs[2]
    assert "quit(status = 1)" in execs[2]
    spec_mirror = S.Spec(base=S.Base(BASE), r_lang=S.RLang(), cran_mirror=S.Url("https://cran.spec.example"))
    assert languages.cran_mirror(_Compiler(spec_mirror, CompileOptions()), MIRRORS) == "https://cran.spec.example"
    assert (
        languages.cran_mirror(_Compiler(spec_mirror.__class__(), CompileOptions()), Mirrors()) == languages.DEFAULT_CRAN
    )
    _golden("r", ops)


def _cuda_spec(version: str, cudnn: str | None, *, dev: bool = True) -> S.Spec:
    img = cuda_table.resolve(version, cudnn, dev=dev, base_image="ubuntu:22.04")
    return S.Spec(
        base=S.Base("ubuntu:22.04", dev=dev),
        cuda=S.Cuda(img.version, img.cudnn, img.image, img.torch_index),
        python=S.Python("3.11"),
        python_packages=(S.PythonPackages(("torch", "numpy")),),
    )


def test_cuda_base_labels_and_torch_index() -> None:
    spec = _cuda_spec("12.1.1", "8")
    assert cuda.check(spec) == "docker.io/nvidia/cuda:12.1.1-cudnn8-devel-ubuntu22.04"
    assert cuda.check(_cuda_spec("12.1.1", "8", dev=False)).endswith("-cudnn8-runtime-ubuntu22.04")
    assert cuda.labels(spec) == {"ai.envbuild.gpu": "true", "ai.envbuild.cuda": "12.1.1", "ai.envbuild.cudnn": "8"}
    assert cuda.pip_env(spec, ["torch==2.3.0", "numpy"], Mirrors()) == {
        "UV_INDEX": "pytorch=https://download.pytorch.org/whl/cu121"
    }
    assert cuda.pip_env(spec, ["Torch-Vision"], MIRRORS) == {}
    assert cuda.pip_env(spec, ["torchvision>=0.18"], MIRRORS) == {
        "UV_INDEX": "pytorch=https://mirror.example/pytorch/cu121"
    }
    assert cuda.pip_env(spec, ["numpy"], MIRRORS) == {}
    with_index = S.Spec(
        **{
            **{f: getattr(spec, f) for f in spec.__dataclass_fields__},
            "pip_index": S.PipIndex("https://pypi.example/simple"),
        }
    )
    assert cuda.pip_env(with_index, ["torch"], MIRRORS) == {}
    compiled = C.compile(spec, CompileOptions(project="golden", owner=(1000, 1000)))
    ops = compiled.definition().to_json()
    sources = [o["Op"]["source"]["identifier"] for o in ops if "source" in o["Op"]]
    assert "docker-image://docker.io/nvidia/cuda:12.1.1-cudnn8-devel-ubuntu22.04" in sources
    assert compiled.labels["ai.envbuild.gpu"] == "true"
    _golden("cuda", ops)


def test_wrong_cuda_cudnn_pair_is_rejected() -> None:
    with pytest.raises(cuda_table.CudaError, match="valid cudnn values"):
        cuda_table.resolve("11.8.0", "9", dev=True, base_image="ubuntu:22.04")
    with pytest.raises(cuda_table.CudaError, match="valid versions"):
        cuda_table.resolve("10.0.0", None, dev=True, base_image="ubuntu:22.04")
    forged = S.Spec(
        base=S.Base("ubuntu:22.04", dev=True),
        cuda=S.Cuda("11.8.0", "9", "docker.io/nvidia/cuda:11.8.0-cudnn9-devel-ubuntu22.04"),
    )
    with pytest.raises(cuda.CudaSpecError, match="cuDNN 9"):
        cuda.check(forged)
    stale = S.Spec(
        base=S.Base("ubuntu:22.04", dev=True),
        cuda=S.Cuda("11.8.0", "8", "docker.io/nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04"),
    )
    with pytest.raises(cuda.CudaSpecError, match="re-evaluate"):
        cuda.check(stale)


def test_uv_stage_copies_uv_and_installs_python_with_mirror() -> None:
    spec = S.Spec(base=S.Base(BASE, dev=True), uv=S.Uv("3.12"))
    c = _Compiler(spec, CompileOptions(project="golden", python_mirror="https://py.mirror.example"))
    tools = llb.image(BASE)
    state, add = languages.uv(c, llb.image(BASE), tools)
    text = json.dumps(_ops(state))
    assert "UV_PYTHON_INSTALL_MIRROR=https://py.mirror.example" in text
    assert "python install 3.12" in text and "setpriv --reuid=1000" in text
    assert dict(add.env) == {"UV_LINK_MODE": "copy", "UV_PYTHON_PREFERENCE": "only-managed"}


def test_mirror_settings_from_env_and_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[mirrors]\ngo = "https://cfg.example/go/"\nopenvsx = "https://cfg.example/vsx"\n')
    m = Mirrors.load({"ENVBUILD_MIRROR_GO": "https://env.example/go"}, cfg)
    assert (m.go, m.openvsx, m.nodejs) == (
        "https://env.example/go",
        "https://cfg.example/vsx",
        "https://nodejs.org/dist",
    )
    cfg.write_text('[mirrors]\nnpm = "https://x"\n')
    with pytest.raises(MirrorConfigError, match="unknown mirror setting"):
        Mirrors.load({}, cfg)
    with pytest.raises(MirrorConfigError, match="must be a URL"):
        Mirrors.load({"ENVBUILD_MIRROR_GO": "not a url"}, tmp_path / "none.toml")
