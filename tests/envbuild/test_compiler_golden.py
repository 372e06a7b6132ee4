"""Golden LLB per example: the compiled graph (as JSON), its digests and the image config are stable.

``golden/<example>.json`` is the one chain every builder runs; ``golden/merged/<example>.json`` the
layout for builders with MergeOp/DiffOp, for the examples where it differs (a venv to build beside).
Regenerate after an intended change with ``ENVBUILD_UPDATE_GOLDEN=1 pytest tests/envbuild/test_compiler_golden.py``
and review the diff: every changed digest is a cache miss for users.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import frontend
from envbuild.compiler import BaseConfig, CompileOptions, project_name
from envbuild.compiler.compile import compile
from envbuild.compiler.vscode import Extension

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/build.envd"))
MERGED = ("jupyter", "multi-target", "pytorch-cuda", "requirements", "shared-lib", "vscode")
DEBIAN = BaseConfig(env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("bash",))
UPDATE = os.environ.get("ENVBUILD_UPDATE_GOLDEN") == "1"


def render(example: str, *, merge_layers: bool = False) -> dict:
    spec = frontend.evaluate(ROOT / "examples" / example, user_config=False)
    # Extensions are prepared on the host at build time; fixed stand-ins keep the IDE stage in the golden.
    exts = tuple(
        Extension(n.lower(), "1.0.0", f"{n.lower()}-1.0.0", f"{n}-1.0.0.vsix")
        for c in spec.vscode_extensions
        for n in c.names
    )
    compiled = compile(
        spec,
        CompileOptions(
            project=project_name(example),
            owner=(1000, 1000),
            base_config=DEBIAN,
            vscode_extensions=exts,
            vscode_cache="/cache/vscode",
            context_dir="/ctx",
            merge_layers=merge_layers,
        ),
    )
    definition = compiled.definition()
    image = dict(compiled.image)
    labels = dict(image.pop("labels"))
    labels.pop("ai.envbuild.spec")
    return {
        "local_dirs": dict(compiled.local_dirs),
        "terminal": definition.terminal,
        "steps": [s.name for s in compiled.steps],
        "image": {**{k: list(v) if isinstance(v, tuple) else v for k, v in image.items()}, "labels": labels},
        "llb": definition.to_json(),
    }


@pytest.mark.parametrize(("example", "merged"), [(e, False) for e in EXAMPLES] + [(e, True) for e in MERGED])
def test_golden_llb(example: str, merged: bool) -> None:
    path = GOLDEN / ("merged" if merged else "") / f"{example}.json"
    got = render(example, merge_layers=merged)
    text = json.dumps(got, indent=1, sort_keys=True) + "\n"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no golden file {path.name}; run with ENVBUILD_UPDATE_GOLDEN=1 to create it")
        path.write_text(text)
    assert json.loads(text) == json.loads(path.read_text()), f"{example}: LLB changed (see module docstring)"


@pytest.mark.parametrize("example", sorted(set(EXAMPLES) - set(MERGED)))
def test_merging_changes_nothing_without_a_venv(example: str) -> None:
    assert render(example, merge_layers=True) == render(example)


@pytest.mark.parametrize("example", ["jupyter", "requirements"])
def test_digests_stable_between_runs(example: str) -> None:
    a, b = render(example), render(example)
    assert a["terminal"] == b["terminal"]
    assert [o["Digest"] for o in a["llb"]] == [o["Digest"] for o in b["llb"]]
