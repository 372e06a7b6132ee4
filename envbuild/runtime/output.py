"""How environments are shown to people (text) and to programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

from envbuild.runtime.engine import Environment


def endpoints_text(env: Environment) -> str:
    """The lines `up` prints: where to connect and how."""
    where = f" on {env.jump}" if env.jump else ""
    if env.serving:
        there = f" on {env.jump}" if env.jump else ""
        lines = [f"Environment {env.name} is {env.status}{where} (a serving image: its own entrypoint, no sshd)."]
        lines += [f"  {ep.name + ':':<9} {ep.address}{there} -> {ep.container_port}" for ep in env.endpoints]
        if env.project_path:
            lines.append(f"  Project:  {env.project_path}")
        return "\n".join(lines)
    lines = [f"Environment {env.name} is {env.status}{where}."]
    through = f", through {env.jump}" if env.jump else ""
    lines.append(f"  SSH:      ssh {env.ssh_target}   (VS Code: Remote-SSH: Connect to Host... -> {env.ssh_target}, "
                 f"open {env.workdir}{through})")
    if env.jupyter_url:
        forwarded = f"   (forwarded to {env.jump})" if env.jump else ""
        lines.append(f"  Jupyter:  {env.jupyter_url}{forwarded}")
    elif env.jump and env.endpoint("jupyter"):
        lines.append(f"  Jupyter:  not forwarded to this machine; `envbuild jupyter {env.name}` does it")
    for ep in env.endpoints:
        if ep.name not in ("ssh", "jupyter"):
            there = f" on {env.jump}" if env.jump else ""
            lines.append(f"  {ep.name + ':':<9} {ep.address}{there} -> {ep.container_port}")
    if env.jump:
        source = env.project_source or "nothing"
        lines.append(f"  Project:  {source} on {env.jump} -> {env.workdir}"
                     + (f"   (`envbuild sync` copies {env.project_path} there)" if source.startswith("volume") else ""))
    else:
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
