"""Dependencies point one way: evaluating a build file loads nothing of envbuild, LLB or the engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("llb", "envbuild", "grpc", "docker", "rich", "google", "typer")


def test_evaluate_imports_nothing_of_the_other_layers() -> None:
    code = (
        "import json, sys, frontend\n"
        "frontend.evaluate('examples/shared-lib', user_config=False).to_json()\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    mods = json.loads(p.stdout.splitlines()[-1])
    assert "starlark" in mods
    assert [m for m in mods if m.split(".")[0] in FORBIDDEN] == []
