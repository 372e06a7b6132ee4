"""The no-op build's check without evaluation: sound (any change that could change the spec or its
inputs voids the key) and in step with the full build path that writes the label."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from envbuild import images, quickcheck
from envbuild.build import BuildOptions, prepare, quick_up_to_date
from envbuild.cli.args import build_target, parse_owner

ROOT = Path(__file__).resolve().parents[2]
BASE_ID = "sha256:" + "b" * 64


@pytest.fixture()
def engine(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """A fake image store behind images.inspect_image: name -> inspect JSON."""
    store: dict[str, dict[str, Any]] = {"local/debian:bookworm": {"Id": BASE_ID, "Config": {}}}
    monkeypatch.setattr(images, "inspect_image", lambda ref, **_: store.get(ref))
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent-envbuild-config")
    return store


def project(tmp_path: Path) -> Path:
    d = tmp_path / "proj"
    (d / "lib").mkdir(parents=True)
    (d / "data").mkdir()
    (d / "data" / "a.txt").write_text("a")
    (d / "lib" / "common.envd").write_text('def py():\n    install.python_packages(name=["six"])\n')
    (d / "build.envd").write_text(
        'load("//lib/common.envd", "py")\n'
        "def build():\n"
        '    base(image="local/debian:bookworm", dev=True)\n'
        "    py()\n"
        '    io.copy(source="data", target="/data")\n'
        "def other():\n"
        '    base(image="local/debian:bookworm")\n'
    )
    return d


def built(engine: dict[str, dict[str, Any]], options: BuildOptions) -> str:
    """Do what a build does to the engine: store the image with the full path's labels."""
    prep = prepare(options)
    assert prep.quick is not None
    engine[prep.tag] = {
        "Id": "sha256:img",
        "Config": {"Labels": {quickcheck.LABEL: prep.quick, quickcheck.DIGEST_LABEL: prep.digest}},
    }
    return prep.digest


def quick(
    path: Path, *, file: str | None = None, tag: str | None = None, owner: str | None = None, network: str = "sandbox"
) -> tuple[str, str] | None:
    """What `envbuild build -p PATH [-f FILE] [-t TAG] [--owner] [--network]` checks first."""
    target, function = build_target(path, file)
    return quick_up_to_date(
        BuildOptions(path=target, function=function, tag=tag, owner=parse_owner(owner), network=network)
    )


def test_label_lists_what_evaluation_read(engine: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    d = project(tmp_path)
    prep = prepare(BuildOptions(path=str(d)))
    label = json.loads(prep.quick or "")
    assert label["files"] == ["build.envd", "lib/common.envd"]
    assert label["inputs"] == ["data"] and label["base"] == "local/debian:bookworm"


def test_unchanged_project_is_up_to_date_without_evaluation(engine: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    d = project(tmp_path)
    digest = built(engine, BuildOptions(path=str(d)))
    assert quick(d) == ("proj:dev", digest)
    assert quick(d / "build.envd")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "build.envd").write_text((d / "build.envd").read_text() + "# a comment\n"),
        lambda d: (d / "lib" / "common.envd").write_text('def py():\n    install.python_packages(name=["seven"])\n'),
        lambda d: (d / "data" / "a.txt").write_text("b"),
        lambda d: (d / "data" / "new.txt").write_text("new"),
        lambda d: (d / "build.envd.lock").write_text("{}"),
    ],
    ids=["build file", "loaded file", "input file", "new input file", "lock file appears"],
)
def test_any_change_to_what_shapes_the_spec_voids_it(
    engine: dict[str, dict[str, Any]], tmp_path: Path, change: Any
) -> None:
    d = project(tmp_path)
    built(engine, BuildOptions(path=str(d)))
    change(d)
    assert not quick(d)


def test_user_config_appearing_voids_it(
    engine: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    d = project(tmp_path)
    built(engine, BuildOptions(path=str(d)))
    assert quick(d)
    (tmp_path / "cfg" / "envbuild").mkdir(parents=True)
    (tmp_path / "cfg" / "envbuild" / "config.envd").write_text("# nothing\n")
    assert not quick(d)


def test_options_and_base_are_part_of_the_key(engine: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    d = project(tmp_path)
    built(engine, BuildOptions(path=str(d), owner=(1000, 1000), network="host"))
    assert quick(d, owner="1000:1000", network="host")
    assert not quick(d, owner="1001:1001", network="host")
    assert not quick(d, owner="1000:1000")
    assert not quick(d, file="build.envd:other", owner="1000:1000", network="host")
    engine["local/debian:bookworm"] = {"Id": "sha256:" + "c" * 64}
    assert not quick(d, owner="1000:1000", network="host")


def test_function_and_tag_from_the_command_line(engine: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    d = project(tmp_path)
    built(engine, BuildOptions(path=f"{d}/build.envd:other", tag="team/env:v1"))
    assert quick(d, file="build.envd:other", tag="team/env:v1")
    assert not quick(d, file="build.envd:other")
    assert not quick(d, tag="team/env:v1")


@pytest.mark.parametrize(
    "label",
    [
        "",
        "not json",
        json.dumps({"v": 99, "key": "k", "files": [], "inputs": [], "base": "b"}),
        json.dumps({"v": 1}),
        json.dumps({"v": 1, "key": "k", "files": [1], "inputs": [], "base": "b"}),
    ],
)
def test_odd_labels_mean_run_the_full_check(engine: dict[str, dict[str, Any]], tmp_path: Path, label: str) -> None:
    d = project(tmp_path)
    built(engine, BuildOptions(path=str(d)))
    engine["proj:dev"]["Config"]["Labels"][quickcheck.LABEL] = label
    assert not quick(d)


def test_files_from_git_cannot_be_vouched_for(tmp_path: Path) -> None:
    common = dict(
        inputs=(),
        base="b",
        base_id="x",
        context_dir=str(tmp_path),
        build_file=str(tmp_path / "build.envd"),
        function="build",
        project="p",
        owner=None,
        network="sandbox",
    )
    assert quickcheck.make_label(files=("https://example.com/repo@v1//lib.envd",), **common) is None
    assert quickcheck.make_label(files=("missing.envd",), **common) is not None


def test_input_digest_shares_the_input_hashing(engine: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    d = project(tmp_path)
    before = prepare(BuildOptions(path=str(d))).digest
    (d / "data" / "a.txt").write_text("changed")
    assert prepare(BuildOptions(path=str(d))).digest != before


@pytest.mark.engine
def test_noop_build_skips_evaluation_end_to_end(tmp_path: Path) -> None:
    """A user session: build, build again (answered before the frontend loads), edit the file
    (evaluated and built again), build again (answered before the frontend loads)."""
    if images.inspect_image("local/debian:bookworm") is None:
        pytest.skip("no engine answering with local/debian:bookworm (scripts/setup-engine.sh)")
    d = tmp_path / "quick"
    d.mkdir()
    (d / "build.envd").write_text(
        'def build():\n    base(image="local/debian:bookworm")\n    runtime.environ(env={"A": "1"})\n'
    )
    tag = f"envbuild-quick-{uuid.uuid4().hex[:8]}:dev"
    code = (
        "import sys\nfrom envbuild.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
        "    print('frontend.evaluator' in sys.modules, file=sys.stderr)\n"
    )

    def envbuild(*args: str) -> tuple[int, str]:
        r = subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ},
        )
        return r.returncode, r.stderr

    try:
        rc, err = envbuild("build", "-p", str(d), "-t", tag, "--progress", "plain")
        assert rc == 0, err
        rc, err = envbuild("build", "-p", str(d), "-t", tag)
        assert rc == 0 and f"{tag} is up to date" in err and err.strip().endswith("False"), err
        (d / "build.envd").write_text((d / "build.envd").read_text().replace('"1"', '"2"'))
        rc, err = envbuild("build", "-p", str(d), "-t", tag, "--progress", "plain")
        assert rc == 0 and f"image {tag} in the Docker engine" in err and err.strip().endswith("True"), err
        rc, err = envbuild("build", "-p", str(d), "-t", tag)
        assert rc == 0 and f"{tag} is up to date" in err and err.strip().endswith("False"), err
        env = subprocess.run(
            ["docker", "image", "inspect", tag, "--format", "{{json .Config.Env}}"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert "A=2" in env
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=60)
