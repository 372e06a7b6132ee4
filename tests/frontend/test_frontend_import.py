"""The frontend stays light: no LLB, envbuild, gRPC, Docker or rich imports, lazy Starlark."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("llb", "envbuild", "grpc", "docker", "rich", "google.protobuf", "typer")


def imported_modules(code: str) -> list[str]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=True)
    return [line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")][1:]


def test_evaluate_imports_nothing_heavy() -> None:
    mods = imported_modules("import frontend; frontend.evaluate('examples/shared-lib', user_config=False).to_json()")
    assert "starlark" in mods
    bad = [m for m in mods if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN]
    assert bad == []
    assert "typing" not in mods and "hashlib" not in mods  # start-up cost: ~4 ms each


def test_plain_import_is_lazy() -> None:
    mods = imported_modules("import frontend")
    assert "starlark" not in mods and "frontend.spec" not in mods and "typing" not in mods


def test_target_rules_load_without_the_interpreter() -> None:
    """envbuild's skip check resolves `file.envd:func` with these before anything heavy is loaded."""
    mods = imported_modules("from frontend.target import split_target_text; split_target_text('examples/jupyter')")
    assert not {"pathlib", "re", "typing", "starlark", "frontend.spec", "frontend.evaluator"} & set(mods)
