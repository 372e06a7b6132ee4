"""One module per command group; each registers its commands on `envbuild.cli.app.app`."""

from envbuild.cli.commands import build, context, debug, doctor, envs, init, kube_forward, lock, sync, up, version

__all__ = ["build", "context", "debug", "doctor", "envs", "init", "kube_forward", "lock", "sync", "up", "version"]
