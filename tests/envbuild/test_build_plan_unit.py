"""`envbuild.build.build` with a recording builder: the plan drives the solves (one compile per
platform, image config only for image exports, local sources at their host paths, cache options)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

import llb
from envbuild import build as B
from envbuild import contexts, engine_api, images
from envbuild.compiler import UNRESOLVED
from envbuild.outputs import parse_build_options
from tests.envbuild.test_capabilities import engine, reported


@dataclass
class _Result:
    image_id: str | None
    vertices: list[Any] = field(default_factory=list)
    warnings: tuple[str, ...] = ()


class _Client:
    def __init__(self, platforms: tuple[llb.Platform, ...]) -> None:
        self.platforms = platforms
        self.solves: list[dict[str, Any]] = []
        self.merge: bool | str | None = None  # mergeop/diffop as `reported` takes them (None: unknown to it)

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def capabilities(self) -> llb.Capabilities:
        return reported(merge=self.merge, platforms=self.platforms)  # by default what Docker 20.10's reports

    def solve(self, definition: llb.Definition, **kwargs: Any) -> _Result:
        self.solves.append({"definition": definition, **kwargs})
        export = kwargs["export"]
        if isinstance(export, llb.LocalExport):
            Path(export.dest).mkdir(parents=True, exist_ok=True)
        elif isinstance(export, (llb.TarExport, llb.OCIExport, llb.DockerTarExport)):
            Path(export.dest).write_bytes(b"received")  # what a builder sends back
        return _Result(f"sha256:{len(self.solves)}" if kwargs["image_config"] is not None else None)


@dataclass
class _Builder:
    client: _Client
    kind: str = "docker"
    docker_host: str | None = None
    is_docker_engine: bool = True

    def connect(self) -> _Client:
        return self.client

    def describe(self) -> str:
        return "test builder"


@pytest.fixture()
def recorder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> _Client:
    client = _Client((llb.Platform("linux", "amd64"), llb.Platform("linux", "386")))
    monkeypatch.setattr(contexts, "resolve_builder", lambda *a, **k: _Builder(client))
    monkeypatch.setattr(engine_api, "engine_info", lambda *a, **k: engine("20.10.24", containerd=False))
    monkeypatch.setattr(images, "resolve", lambda *a, **k: UNRESOLVED)
    monkeypatch.setattr(images, "inspect_image", lambda *a, **k: None)
    monkeypatch.setattr(images, "image_labels", lambda *a, **k: None)
    return client


def _project(tmp_path: Path) -> Path:
    (tmp_path / "r.txt").write_text("six\n")
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(image="local/debian:bookworm", dev=False)\n'
        '    install.python_packages(requirements="r.txt")\n'
    )
    return tmp_path


def _options(tmp_path: Path, **outputs: Any) -> B.BuildOptions:
    return B.BuildOptions(
        path=str(_project(tmp_path)),
        owner=(1000, 1000),
        environ={"HOME": str(tmp_path)},
        outputs=parse_build_options(**outputs),
    )


def test_two_platforms_two_compiles_with_suffixed_tags(recorder: _Client, tmp_path: Path) -> None:
    result = B.build(_options(tmp_path, tags=["env:v1"], platforms=["linux/amd64,linux/386"]))
    assert len(recorder.solves) == 2
    plats = []
    for solve in recorder.solves:
        ops = solve["definition"].to_json()
        plats.append({(o["Op"].get("platform") or {}).get("Architecture") for o in ops if "platform" in o["Op"]})
        assert solve["local_dirs"] == {"context": str(tmp_path.resolve())}
        assert solve["image_config"] is not None
    assert plats == [{"amd64"}, {"386"}]
    assert [s["export"].name for s in recorder.solves] == [("env:v1-linux-amd64",), ("env:v1-linux-386",)]
    assert [o.step.image_names for o in result.outcomes] == [("env:v1-linux-amd64",), ("env:v1-linux-386",)]
    assert not result.up_to_date


def test_tar_output_gets_no_image_config_and_cache_options_pass_through(recorder: _Client, tmp_path: Path) -> None:
    B.build(
        _options(tmp_path, outputs=[f"type=tar,dest={tmp_path / 'fs.tar'}"], import_cache=["reg.example/env:cache"])
    )
    (solve,) = recorder.solves
    assert solve["image_config"] is None
    assert type(solve["export"]).__name__ == "TarExport"
    assert (tmp_path / "fs.tar").read_bytes() == b"received"
    assert [(c.type, dict(c.attrs)) for c in solve["cache_imports"]] == [("registry", {"ref": "reg.example/env:cache"})]


def test_default_export_is_the_engine_store_under_the_default_tag(recorder: _Client, tmp_path: Path) -> None:
    """The project's serving image is ``<project>:latest``; a development image would be ``<project>:dev``."""
    result = B.build(_options(tmp_path))
    (solve,) = recorder.solves
    assert solve["export"].name == (f"{tmp_path.name.lower()}:latest",)
    assert result.tag == f"{tmp_path.name.lower()}:latest" and result.image_id == "sha256:1"


def test_registry_cache_export_on_the_engine_fails_before_solving(recorder: _Client, tmp_path: Path) -> None:
    from envbuild.errors import UsageError

    with pytest.raises(UsageError, match="cannot export cache"):
        B.build(_options(tmp_path, tags=["r.example/e:1"], push=True, export_cache=["type=registry,ref=r.example/e:c"]))
    assert recorder.solves == []


def _op_kinds(solve: dict[str, Any]) -> set[str]:
    return {k for o in solve["definition"].to_json() for k in ("merge", "diff", "exec") if k in o["Op"]}


def test_a_builder_with_mergeop_and_diffop_gets_the_merged_layout_unless_linear(
    recorder: _Client, tmp_path: Path
) -> None:
    recorder.merge = True
    options = _options(tmp_path)
    B.build(options)
    B.build(replace(options, linear=True))
    merged, linear = recorder.solves
    assert _op_kinds(merged) == {"merge", "diff", "exec"}
    assert _op_kinds(linear) == {"exec"}


@pytest.mark.parametrize("merge", [None, "only enabled with containerd image store backend"])
def test_a_builder_without_mergeop_gets_the_chain(recorder: _Client, tmp_path: Path, merge: str | None) -> None:
    recorder.merge = merge
    B.build(_options(tmp_path))
    (solve,) = recorder.solves
    assert _op_kinds(solve) == {"exec"}


def test_a_failed_step_is_named_at_its_build_file_position(recorder: _Client, tmp_path: Path) -> None:
    """A step the builder names as failed (not only a `run` exiting non-zero: a copy, a download) is
    reported at the build.envd call it came from, with the builder's message."""
    from envbuild.errors import BuildFailed

    def fail(definition: llb.Definition, **kwargs: Any) -> _Result:
        names = [
            md.get("description", {}).get("llb.customname", "")
            for md in (o["OpMetadata"] for o in definition.to_json())
        ]
        step = next(n for n in names if "python packages" in n)
        raise llb.SolveError("lstat /r.txt: no such file or directory", vertex="sha256:ab", vertex_name=step)

    recorder.solve = fail  # type: ignore[method-assign]
    with pytest.raises(BuildFailed) as info:
        B.build(_options(tmp_path))
    text = str(info.value)
    assert text.startswith("build.envd:3:5: step 'python packages"), text
    assert text.endswith("failed: lstat /r.txt: no such file or directory")
