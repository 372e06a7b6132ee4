"""The examples CI builds for real (examples/README.md says which), each through `envbuild build`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVBUILD = Path(sys.executable).with_name("envbuild")
HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


pytestmark = [pytest.mark.engine]

# example -> a command run inside the built image and what its output must contain
CHECKS = {
    "serving": (
        ["python3", "-c", "import sys; sys.path.insert(0, '/srv'); import app; print(app.Handler.__name__)"],
        "Handler",
    ),
    "requirements": (["python", "-c", "import six; print(six.__version__)"], "1.16.0"),
    "shared-lib": (
        ["sh", "-c", "cat /tmp/team-tools.txt; echo $TEAM; python -c 'import six'"],
        "team tools ready\nml-platform",
    ),
}


@pytest.mark.parametrize("example", sorted(CHECKS))
def test_example_builds_and_runs(example: str, tmp_path: Path) -> None:
    project = tmp_path / example
    shutil.copytree(ROOT / "examples" / example, project, symlinks=True)
    tag = f"envbuild-e2e/example-{example}:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(
        [str(ENVBUILD), "build", "-p", str(project), "-t", tag, "--progress", "plain", "--ca-cert", HOST_BUNDLE],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        command, expected = CHECKS[example]
        run = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", command[0], tag, *command[1:]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert expected in run.stdout.strip(), run.stdout
        if example == "serving":
            entrypoint = subprocess.run(
                ["docker", "image", "inspect", "-f", "{{json .Config.Entrypoint}}", tag], capture_output=True, text=True
            ).stdout.strip()
            assert entrypoint == '["python3","/srv/app.py"]'
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
