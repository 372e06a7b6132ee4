"""The project name and default image tag, from the context directory alone (no evaluation)."""

from __future__ import annotations

import re


def project_name(basename: str) -> str:
    """The context directory's basename, sanitised like envd: ``[A-Za-z0-9][A-Za-z0-9_.-]*``."""
    out = re.sub(r"[^A-Za-z0-9_.-]", "", basename).lstrip("_.-")
    return out[:63] or "project"


def default_tag(project: str, *, dev: bool = True) -> str:
    """``<project>:dev`` for a development image, ``<project>:latest`` for a serving one (envd tags
    both ``:dev``, which makes the app image look like a development one)."""
    return f"{project.lower()}:{'dev' if dev else 'latest'}"
