"""How environments are shown to people (text) and to programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

from envbuild.runtime.engine import Environment


def endpoints_text(env: Environment) -> str:
    """The lines `up` prints: where to connect and how."""
    lines = [f"Environment {env.name} is {env.status}."]
    lines.append(f"  SSH:      ssh {env.ssh_target}   (VS Code: Remote-SSH: Connect to Host... -> {env.ssh_target}, "
                 f"open {env.workdir})")
    if env.jupyter_url:
        lines.append(f"  Jupyter:  {env.jupyter_url}")
    for ep in env.endpoints:
        if ep.name not in ("ssh", "jupyter"):
            lines.append(f"  {ep.name + ':':<9} {ep.address} -> {ep.container_port}")
    lines.append(f"  Project:  {env.project_path or '(none)'} -> {env.workdir}")
    return "\n".join(lines)


def up_json(env: Environment, *, action: str, built: bool | None, image: str) -> str:
    data: dict[str, Any] = {"action": action, "built": built, "image": image, **env.to_dict()}
    data["image"] = image
    return json.dumps(data, indent=2)


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain aligned table (no rich import for a listing)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [headers, *rows])
