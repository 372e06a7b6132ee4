"""`envbuild init`: write a build.envd for a project from the files it already has."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from envbuild.cli.app import app


@app.command()
def init(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory."),
    python: str | None = typer.Option(None, "--python", help="Python version (default from pyproject or 3.11)."),
    jupyter: bool | None = typer.Option(
        None, "--jupyter/--no-jupyter", help="Add JupyterLab (default: if notebooks exist)."
    ),
    cuda: str | None = typer.Option(None, "--cuda", help="CUDA version for GPU work, e.g. 12.6.3."),
    base: str | None = typer.Option(None, "--base", help="Base image (default ubuntu:22.04)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask; use detected values and flags."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing build.envd."),
) -> None:
    """Write build.envd from requirements.txt, environment.yml, pyproject.toml and notebooks."""
    import dataclasses

    from envbuild import init as gen
    from envbuild.runtime.options import project_dir

    directory = project_dir(path)
    if (directory / gen.BUILD_FILE).exists() and not force:
        gen.write(directory, "", force=False)
    found = gen.detect(directory)
    choices = gen.default_choices(found)
    overrides: dict[str, Any] = {
        k: v for k, v in {"python": python, "jupyter": jupyter, "cuda": cuda, "base": base}.items() if v is not None
    }
    choices = dataclasses.replace(choices, **overrides)
    interactive = not yes and sys.stdin.isatty() and sys.stdout.isatty()
    if interactive:
        for what, value in (
            ("requirements", found.requirements),
            ("conda environment", found.env_file),
            ("pyproject dependencies", ", ".join(found.pyproject_dependencies) or None),
            ("notebooks", ", ".join(found.notebooks[:3]) or None),
        ):
            if value:
                typer.echo(f"Found {what}: {value}")
        if python is None:
            choices = dataclasses.replace(choices, python=typer.prompt("Python version", default=choices.python))
        if jupyter is None:
            choices = dataclasses.replace(choices, jupyter=typer.confirm("Add JupyterLab?", default=choices.jupyter))
        if cuda is None and typer.confirm("Use an NVIDIA GPU (CUDA)?", default=False):
            choices = dataclasses.replace(choices, cuda=typer.prompt("CUDA version", default="12.6.3"))
    target = gen.write(directory, gen.render(gen.validate(choices)), force=force)
    typer.echo(f"Wrote {target}. Next: envbuild up -p {path}")
