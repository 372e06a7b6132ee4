"""envd users' build files on the real engine: what the image holds is what envd would put there.

Each test is a small project of its own, built with the ``envbuild`` command as a user runs it
(``HOME`` in a temporary directory), then looked at with ``docker run``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
CA = "/etc/ssl/certs/ca-certificates.crt"
BASE = "local/debian:bookworm"


@dataclass
class Project:
    path: Path
    env: dict[str, str]
    tag: str

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            (self.path / name).write_text(text)

    def envbuild(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-c", "from envbuild.cli import main; main()", *args],
            env=self.env,
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"envbuild {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def build(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.envbuild("build", "--tag", self.tag, "--progress", "plain", *args, check=check)

    def run(self, *command: str) -> str:
        result = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "", self.tag, *command],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture()
def project(tmp_path: Path) -> Iterator[Project]:
    path = tmp_path / f"compat-{uuid.uuid4().hex[:8]}"  # the project's name: its images and environments
    path.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SSH_"))}
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO), ENVBUILD_CA_CERT=CA, NO_COLOR="1")
    p = Project(path, env, f"envbuild-e2e/compat-{uuid.uuid4().hex[:8]}:1")
    try:
        yield p
    finally:
        subprocess.run(["docker", "rmi", "-f", p.tag], capture_output=True)


def test_directory_copies_land_where_envd_puts_them(project: Project) -> None:
    """envd copies a directory itself (BuildKit's copy without dirCopyContents): onto ``/`` or an
    existing folder it lands as ``<folder>/<name>``, onto a new path as that path."""
    project.write(
        {
            "build.envd": (
                "def build():\n"
                f'    base(image="{BASE}")\n'
                '    io.copy(source="src", target="/")\n'
                '    io.copy(source="conf", target="/etc")\n'
                '    io.copy(source="conf", target="/opt/settings")\n'
                '    io.copy(source="src", target="/srv/")\n'
                '    io.copy(source="README.md", target="/usr/share/doc")\n'
            ),
            "src/module.py": "VALUE = 'from src'\n",
            "src/pkg/__init__.py": "",
            "conf/app.ini": "[app]\n",
            "README.md": "read me\n",
        }
    )
    project.build()
    found = project.run("sh", "-c", "find /src /srv/src /etc/conf /opt/settings /usr/share/doc/README.md | sort")
    assert found.split() == [
        "/etc/conf",
        "/etc/conf/app.ini",
        "/opt/settings",
        "/opt/settings/app.ini",
        "/src",
        "/src/module.py",
        "/src/pkg",
        "/src/pkg/__init__.py",
        "/srv/src",
        "/srv/src/module.py",
        "/srv/src/pkg",
        "/srv/src/pkg/__init__.py",
        "/usr/share/doc/README.md",
    ]
    assert project.run("sh", "-c", "test ! -e /module.py && test -s /etc/passwd && echo kept") == "kept\n"


def test_a_failing_python_install_shows_uvs_error_and_images_are_dated_by_their_build(project: Project) -> None:
    project.write(
        {
            "build.envd": (
                "def build():\n"
                f'    base(image="{BASE}")\n'
                "    install.python()\n"
                '    install.python_packages(name=["envbuild-no-such-package-zz==1.0"])\n'
            )
        }
    )
    failed = project.build(check=False)
    assert failed.returncode == 1, failed.stderr
    error = failed.stderr[failed.stderr.index("envbuild: error:") :]
    assert error.startswith("envbuild: error: build.envd:4:5: step 'python packages: envbuild-no-such-package-zz")
    assert "No solution found when resolving dependencies" in error
    assert "envbuild-no-such-package-zz was not found in the package registry" in error

    project.write(
        {"build.envd": f'def build():\n    base(image="{BASE}")\n    run(commands=["echo {uuid.uuid4()}"])\n'}
    )
    before = datetime.now().astimezone()
    project.build()
    created = {
        ref: datetime.fromisoformat(
            subprocess.run(
                ["docker", "image", "inspect", ref, "-f", "{{.Created}}"], capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        for ref in (BASE, project.tag)
    }
    assert created[project.tag] > created[BASE]
    assert abs((created[project.tag] - before).total_seconds()) < 600
    listed = subprocess.run(
        ["docker", "images", "--format", "{{json .}}"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    order = [f"{r['Repository']}:{r['Tag']}" for r in map(json.loads, listed)]
    assert order.index(project.tag) < order.index(BASE)


def _codex_release(root: Path, version: str, marker: str) -> None:
    """A release laid out as GitHub serves openai/codex: ``<tag>/codex-<arch>-unknown-linux-musl.tar.gz``."""
    for arch in ("x86_64", "aarch64"):
        name = f"codex-{arch}-unknown-linux-musl"
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            data = f'#!/bin/sh\necho codex {marker} "$@"\n'.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        (root / version).mkdir(parents=True, exist_ok=True)
        (root / version / f"{name}.tar.gz").write_bytes(buf.getvalue())


def test_codex_is_built_from_the_codex_mirror(project: Project, mirror: tuple[Path, str, ThreadingHTTPServer]) -> None:
    """envd 1.3's ``install.codex`` downloads OpenAI's release to /usr/bin/codex; here from the mirror
    setting, since GitHub is out of reach (the version is unique: the download cache outlives the test)."""
    root, url, _server = mirror
    version = f"rust-v0.{uuid.uuid4().int % 10**6}.0"
    marker = uuid.uuid4().hex[:8]
    _codex_release(root, version, marker)
    project.write({"build.envd": f'def build():\n    base(image="{BASE}")\n    install.codex(version="{version}")\n'})
    project.env["ENVBUILD_MIRROR_CODEX"] = url
    assert project.envbuild("debug", "llb").returncode == 0
    built = project.build()
    assert "publishes no checksum" in built.stderr
    assert project.run("codex", "--version") == f"codex {marker} --version\n"
    assert project.run("sh", "-c", "command -v codex") == "/usr/bin/codex\n"


def _simple_index(root: Path, name: str, version: str, marker: str) -> None:
    """A PEP 503 index holding one pure-Python wheel ``name`` whose module holds ``marker``."""
    module = name.replace("-", "_")
    wheel = f"{module}-{version}-py3-none-any.whl"
    files = {
        f"{module}/__init__.py": f"MARKER = {marker!r}\n",
        f"{module}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{module}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
        f"{len(text.encode())}\n"
        for path, text in files.items()
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, text in {
            **files,
            f"{module}-{version}.dist-info/RECORD": record + f"{module}-{version}.dist-info/RECORD,,\n",
        }.items():
            z.writestr(path, text)
    (root / "files").mkdir(parents=True, exist_ok=True)
    (root / "files" / wheel).write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    page = root / "simple" / name
    page.mkdir(parents=True, exist_ok=True)
    (page / "index.html").write_text(f'<a href="../../files/{wheel}#sha256={digest}">{wheel}</a>\n')


def test_requirements_with_pip_options_on_their_lines(
    project: Project, mirror: tuple[Path, str, ThreadingHTTPServer]
) -> None:
    """pip takes ``name --extra-index-url URL`` and ``--opt A --opt B`` lines in a requirements file (envd
    runs pip); uv refuses the first and misreads the second. The options go on lines of their own, so
    uv finds the package only the per-line index has, and the notes say so."""
    root, url, _server = mirror
    marker = uuid.uuid4().hex[:8]
    _simple_index(root, "envbuild-compat-marker", "1.0", marker)
    project.write(
        {
            "build.envd": (
                "def build():\n"
                f'    base(image="{BASE}")\n'
                "    install.python()\n"
                '    install.python_packages(requirements="reqs/requirements.txt")\n'
            ),
            "reqs/requirements.txt": (
                "# our own packages come from the team index\n"
                f"envbuild-compat-marker==1.0 --extra-index-url {url}/simple\n"
                "-r base.txt\n"
            ),
            "reqs/base.txt": "--index-url https://pypi.org/simple --prefer-binary\nsix==1.16.0\n",
        }
    )
    built = project.build()
    assert f"note: reqs/requirements.txt:2:29: `--extra-index-url {url}/simple` after a requirement" in built.stderr
    check = "import envbuild_compat_marker as m, six; print(m.MARKER, six.__version__)"
    assert project.run("/opt/envbuild/venv/bin/python", "-c", check) == f"{marker} 1.16.0\n"


SERVING_APP = """import http.server, sys

greeting = sys.argv[1] if len(sys.argv) > 1 else "hello"
if greeting == "--crash":
    print("no model to serve", flush=True)
    sys.exit(3)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(greeting.encode())


http.server.HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


def _get(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return response.read().decode()


def test_a_serving_image_runs_its_entrypoint_with_its_ports_on_loopback(project: Project) -> None:
    """``base(dev=False)`` with ``config.entrypoint`` and ``runtime.expose``: tagged ``:latest`` (not
    ``:dev``), started by ``up`` and ``run`` with its own entrypoint, no sshd or Jupyter expected; a
    ``run`` command after ``--`` becomes its arguments; an entrypoint that exits is reported."""
    project.write(
        {
            "build.envd": (
                "def build():\n"
                f'    base(image="{BASE}")\n'
                "    install.python()\n"
                '    io.copy(source="app.py", target="/srv/app.py")\n'
                '    config.entrypoint(["/opt/envbuild/venv/bin/python", "/srv/app.py"])\n'
                '    runtime.expose(envd_port=8080, service="web")\n'
            ),
            "app.py": SERVING_APP,
        }
    )
    name = project.path.name
    names = [name, f"{name}-run", f"{name}-crash"]
    try:
        up = json.loads(project.envbuild("up", "--format", "json").stdout)  # no shell: there is no sshd
        assert up["image"] == f"{name}:latest" and up["serving"] is True and up["ssh"] is None
        (web,) = up["ports"]
        assert (web["name"], web["container_port"], web["host_ip"]) == ("web", 8080, "127.0.0.1")
        assert _get(web["host_port"]) == "hello"
        ran = json.loads(
            project.envbuild(
                "run", "--image", f"{name}:latest", "--name", names[1], "-d", "--format", "json", "--", "hi there"
            ).stdout
        )
        assert _get(ran["ports"][0]["host_port"]) == "hi there"
        crash = project.envbuild(
            "run", "--image", f"{name}:latest", "--name", names[2], "-d", "--", "--crash", check=False
        )
        assert (
            crash.returncode == 1 and "stopped while starting" in crash.stderr and "no model to serve" in crash.stderr
        )
        listed = {e["name"]: e for e in json.loads(project.envbuild("ls", "--format", "json").stdout)}
        assert listed[name]["status"] == "running" and listed[name]["ssh"] is None and names[2] not in listed
        assert subprocess.run(["docker", "image", "inspect", f"{name}:dev"], capture_output=True).returncode != 0
        assert project.envbuild("build").stderr.startswith(f"{name}:latest is up to date")
    finally:
        for n in names:
            subprocess.run(["docker", "rm", "-f", n], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", f"{name}:latest"], capture_output=True)
