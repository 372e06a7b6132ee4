"""`envbuild kube-forward NAME` (hidden): the background port forwarder `up --runner kubernetes` starts."""

from __future__ import annotations

import typer

from envbuild.cli.app import app


@app.command("kube-forward", hidden=True)
def kube_forward(name: str = typer.Argument(..., help="Environment name.")) -> None:
    """Forward the environment's pod ports to 127.0.0.1 until stopped (`envbuild destroy` does)."""
    from envbuild.kube import forward

    forward.serve(name)
