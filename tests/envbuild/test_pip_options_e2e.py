"""pip options written in ``install.python_packages(name=[...])`` reach uv in a real build (envd
passes the names through a shell split to pip; envbuild turns the options into uv's)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from envbuild.build import BuildOptions, build

pytestmark = pytest.mark.engine

CA = "/etc/ssl/certs/ca-certificates.crt"
TAG = f"envbuild-e2e/pip-options:{os.getpid()}"


def test_options_in_package_names_install_as_envd_would(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(
        "def build():\n"
        '    base(image="local/debian:bookworm")\n'
        "    install.python()\n"
        "    install.python_packages(name=[\"'six==1.16.0' --index-url https://pypi.org/simple --no-deps\"])\n"
        '    install.python_packages(name=["--extra-index-url", "https://pypi.org/simple", "idna<3.8", "-U"])\n'
    )
    try:
        build(BuildOptions(path=str(tmp_path), tag=TAG, ca_cert=CA))
        check = "import six, idna; print(six.__version__, idna.__version__)"
        r = subprocess.run(
            ["docker", "run", "--rm", TAG, "python3", "-c", check],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        six_version, idna_version = r.stdout.split()
        assert six_version == "1.16.0" and idna_version < "3.8"
    finally:
        subprocess.run(["docker", "rmi", "-f", TAG], capture_output=True, check=False)
