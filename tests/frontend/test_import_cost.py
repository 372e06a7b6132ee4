"""Evaluating an ordinary build file loads none of the stdlib modules that cost milliseconds to import.

``envbuild debug llb`` runs in a fresh process, so every module on the evaluation path is paid on
every command: ``dataclasses`` (with ``inspect``, ``ast``, ``dis``...) ~10 ms, ``pathlib`` (with
``urllib.parse``, ``ipaddress``...) ~5 ms, ``typing`` ~4 ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPENSIVE = ("dataclasses", "pathlib", "typing", "inspect", "contextvars", "encodings.utf_8_sig", "ipaddress")


def loaded_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(p.stdout.splitlines()[-1]))


def test_evaluate_loads_no_expensive_module() -> None:
    mods = loaded_after("import frontend; frontend.evaluate('examples/jupyter').to_json()")
    assert "starlark" in mods and "frontend.spec" in mods
    assert sorted(set(EXPENSIVE) & mods) == []


def test_evaluate_with_user_config_loads_no_expensive_module(tmp_path: object) -> None:
    """The user default file takes the same path (labels relative to the home directory)."""
    cfg = os.path.join(str(tmp_path), "envbuild", "config.envd")
    os.makedirs(os.path.dirname(cfg))
    with open(cfg, "w", encoding="utf-8") as f:
        f.write('\ufeffdef _unused():\n    pass\n')
    code = (
        "import os; os.environ['XDG_CONFIG_HOME'] = " + repr(str(tmp_path)) + "\n"
        "import frontend; s = frontend.evaluate('examples/jupyter')\n"
        "assert len(s.source_files) == 2, s.source_files"
    )
    mods = loaded_after(code)
    assert sorted(set(EXPENSIVE) & mods) == []


def test_cuda_table_loads_only_for_install_cuda() -> None:
    assert "frontend.cuda" not in loaded_after("import frontend; frontend.evaluate('examples/jupyter')")
    assert "frontend.cuda" in loaded_after("import frontend; frontend.evaluate('examples/pytorch-cuda')")
