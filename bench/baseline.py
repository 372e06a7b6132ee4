"""The baseline of every build row: the same Jupyter environment as a hand-written BuildKit Dockerfile.

It is written the way a good engineer writes one today, not as a strawman: BuildKit (the builder
``docker build`` uses by default), apt's lists and archives on cache mounts, the proxy's CA bundle as
a build secret (never in a layer), uv installing into a venv as the image user through a uv cache
mount, bytecode compiled at build time (as uv's Docker guide advises, and as envbuild does for
JupyterLab). JupyterLab and the project's packages come from one ``requirements.txt``, the usual
layout and the one issue 18's figures were measured with: a line added to it re-runs that layer,
which reinstalls JupyterLab from the uv cache too. It runs on the same engine as envbuild (whatever
``DOCKER_HOST`` names), so both sides share the engine's disk, CPU and network.

The one line it has for the benchmark is ``ARG CACHE_BUST`` (unused unless a build passes it, see
`Projects.docker_cold`): the cold row re-runs every step with the cache mounts kept, as envbuild's
``--no-cache`` does, and ``docker build --no-cache`` empties the cache mounts as well.

The environment matches the build file the rows give envbuild (``BUILD_ENVD``): Debian's python3
(3.11 on bookworm) in a venv, sshd, supervisor, sudo, git, curl, a non-root user, JupyterLab and the
packages. Its ``docker build`` runs with ``DOCKER_BUILDKIT=1`` through a CLI whose ``build`` has
BuildKit built in (Debian's docker.io; a newer CLI needs the buildx plugin, used when present).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

LOCAL_BASE = "local/debian:bookworm"
CA = "/etc/ssl/certs/ca-certificates.crt"
UV_VERSION = "0.13.9"  # the uv envbuild pins (envbuild/compiler/scripts.py)

BUILD_ENVD = """# syntax=v1
def build():
    base(image="{base}", dev=True)
    install.python(version="3.11")
    install.python_packages(name={packages})
    config.jupyter()
"""

DOCKERFILE = f"""FROM {{base}}
ARG CACHE_BUST
ENV DEBIAN_FRONTEND=noninteractive
RUN rm -f /etc/apt/apt.conf.d/docker-clean
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \\
    apt-get update -qq && apt-get install -y -q --no-install-recommends ca-certificates curl git less \\
      openssh-client openssh-server procps sudo supervisor python3 python3-venv \\
    && rm -f /etc/ssh/ssh_host_*
RUN useradd -m -u 1000 -s /bin/bash envd && echo 'envd ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/envd \\
    && install -d -o envd -g envd /opt/venv
RUN --mount=type=secret,id=ca --mount=type=cache,target=/root/.cache/pip \\
    python3 -m venv /tmp/uv && PIP_CERT=/run/secrets/ca /tmp/uv/bin/pip install -q uv=={UV_VERSION} \\
    && install -m 0755 /tmp/uv/bin/uv /usr/local/bin/uv && rm -rf /tmp/uv
USER envd
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_CACHE_DIR=/home/envd/.cache/uv \\
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN uv venv --python /usr/bin/python3 /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=ca,uid=1000 --mount=type=cache,target=/home/envd/.cache/uv,uid=1000,gid=1000 \\
    SSL_CERT_FILE=/run/secrets/ca uv pip install -r /tmp/requirements.txt
WORKDIR /home/envd
"""


def docker_cli() -> list[str]:
    """A ``docker build`` with BuildKit: ``docker buildx build`` when the plugin is there, else Debian's
    docker.io CLI, which has BuildKit built in (a newer CLI without buildx falls back to the legacy
    builder or refuses)."""
    docker = shutil.which("docker") or "docker"
    if subprocess.run([docker, "buildx", "version"], capture_output=True).returncode == 0:
        return [docker, "buildx", "build", "--load"]
    return ["/usr/bin/docker" if Path("/usr/bin/docker").exists() else docker, "build"]


class Projects:
    """One envbuild project and its Dockerfile twin, written side by side with the same packages."""

    def __init__(self, work: Path, run_id: str, *, base: str = LOCAL_BASE, ca: str = CA) -> None:
        self.ours, self.theirs = work / f"jupyter{run_id}", work / f"dockerfile{run_id}"
        self.ours.mkdir()
        self.theirs.mkdir()
        self.run_id, self.base, self.ca = run_id, base, ca
        self.tag_ours, self.tag_theirs = f"envbuild-bench/ours:{run_id}", f"envbuild-bench/dockerfile:{run_id}"
        self.docker = [*docker_cli(), "--secret", f"id=ca,src={ca}", "-t", self.tag_theirs]
        self.images: set[str] = set()
        """Every image the tags have pointed at (`note_images`): a rebuild moves a tag and leaves the
        image it pointed at dangling, ~0.6 GB each on a graph driver."""

    def write(self, packages: Sequence[str]) -> None:
        """Both projects with these Python packages (besides JupyterLab), each with a lower bound every
        release meets but only this run uses, so a row never hits a cache entry an earlier run left
        (no spaces: a build file's package names are split like a shell, as envd does)."""
        bounded = [f"{p}>=0.0.{self.run_id}" for p in packages]
        (self.ours / "build.envd").write_text(BUILD_ENVD.format(base=self.base, packages=json.dumps(bounded)))
        (self.theirs / "Dockerfile").write_text(DOCKERFILE.format(base=self.base))
        (self.theirs / "requirements.txt").write_text("\n".join(["jupyterlab", *bounded]) + "\n")

    def note_images(self) -> None:
        """Remember the images both tags point at now, for `remove`."""
        for tag in (self.tag_ours, self.tag_theirs):
            out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                self.images.add(out.stdout.strip())

    def remove(self) -> None:
        """The tags and every image they pointed at during the run."""
        self.note_images()
        remove_images(self.tag_ours, self.tag_theirs, *sorted(self.images))

    def docker_cold(self, *extra: str) -> list[str]:
        """The Dockerfile's cold build: every step re-run, its cache mounts kept (what ``envbuild build
        --no-cache`` does). ``docker build --no-cache`` would start its cache mounts empty too: the
        frontend's "settings cache mount permissions" step under each mount re-runs, and the mount's key
        follows it. A new ``CACHE_BUST`` value, which every ``RUN`` sees, re-runs the steps alone."""
        return self.docker_build("--build-arg", f"CACHE_BUST={secrets.token_hex(8)}", *extra)

    def docker_build(self, *extra: str) -> list[str]:
        """The ``docker build`` of the Dockerfile twin: quiet, unless ``extra`` asks for a ``--progress``."""
        quiet = [] if "--progress" in extra else ["-q"]
        return [*self.docker, *quiet, *extra, str(self.theirs)]

    @staticmethod
    def docker_env(environ: dict[str, str] | None = None) -> dict[str, str]:
        return {**(environ if environ is not None else os.environ), "DOCKER_BUILDKIT": "1"}


def image_size(tag: str) -> int:
    """The engine's size of an image (what ``docker image ls`` shows; both sides on one engine)."""
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def remove_images(*tags: str) -> None:
    subprocess.run(["docker", "image", "rm", "-f", *tags], capture_output=True)
