"""`envbuild lock`: pin what the build resolves into ``build.envd.lock`` (or check that it is fresh)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from envbuild.cli.app import app
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.lock import Lock


@app.command()
def lock(
    packages: list[str] | None = typer.Argument(None, help="With --upgrade: only these Python packages."),
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory (the build context)."),
    file: str | None = typer.Option(None, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
    upgrade: bool = typer.Option(False, "--upgrade", "-U", help="Re-resolve to the newest versions (all, or PKG...)."),
    check: bool = typer.Option(
        False, "--check", help="Only say whether the lock is fresh (exit 2 if stale or missing)."
    ),
    download_wheels: bool = typer.Option(
        False, "--download-wheels", help="Also save the locked wheels in .envbuild/wheels (for build --offline)."
    ),
    owner: str | None = typer.Option(None, "--owner", help="UID[:GID] of the envd user (default: yours)."),
    ca_cert: Path | None = typer.Option(
        None, "--ca-cert", help="PEM CA bundle resolution steps trust (also $ENVBUILD_CA_CERT)."
    ),
    network: str = typer.Option("sandbox", "--network", help="Network of resolution steps: sandbox or host."),
    progress: str = typer.Option("auto", "--progress", help="auto, tty, plain, json or quiet."),
) -> None:
    """Write build.envd.lock: everything the build installs, pinned (apt, Python with hashes, conda, base)."""
    from envbuild import lock as L
    from envbuild.build import BuildOptions, evaluate
    from envbuild.cli.args import PROGRESS_MODES, build_target, parse_owner
    from frontend.evaluator import split_target

    if packages and not upgrade:
        raise UsageError("package names are only accepted with --upgrade (envbuild lock --upgrade PKG...)")
    if progress not in PROGRESS_MODES:
        raise UsageError(f"invalid --progress {progress!r}: use one of {', '.join(PROGRESS_MODES)}")
    if network not in ("sandbox", "host"):
        raise UsageError(f"invalid --network {network!r}: use sandbox or host")
    target, function = build_target(path, file)
    options = BuildOptions(path=target, function=function, ca_cert=str(ca_cert) if ca_cert else None)
    spec, context_dir = evaluate(options)
    ctx = Path(context_dir)
    build_file = split_target(target)[0]
    lock_file = L.lock_path(build_file)
    if check:
        from envbuild.lockresolve import not_covered

        st = L.status(spec, ctx, build_file, base_id=L.engine_base_id(spec.image))
        if not st.fresh:
            raise L.LockError(st.describe())
        assert st.lock is not None
        missing = not_covered(spec, ctx, st.lock)
        if missing:
            raise L.LockError(
                f"{lock_file.name} does not cover what this envbuild installs:\n"
                + "\n".join(f"  - {m}" for m in missing)
                + "\nrun `envbuild lock` to update it"
            )
        print(st.describe(), file=sys.stderr)
        return

    from envbuild import lockresolve
    from envbuild.build import read_ca_cert
    from envbuild.compiler import project_name, proxy_from_env
    from envbuild.compiler.mirrors import Mirrors
    from envbuild.progress import make_progress

    own = parse_owner(owner)
    if own is None:
        own = (spec.owner.uid, spec.owner.gid) if spec.owner is not None else (os.getuid(), os.getgid())
    previous = None if upgrade and not packages else _previous(lock_file)
    opts = lockresolve.ResolveOptions(
        owner=own,
        project=project_name(ctx.name),
        ca=read_ca_cert(options),
        network=network,
        python_mirror=os.environ.get("ENVBUILD_PYTHON_MIRROR") or None,
        proxy=proxy_from_env(os.environ),
        upgrade=upgrade and not packages,
        upgrade_packages=tuple(packages or ()),
        download_wheels=download_wheels,
        mirrors=Mirrors.load(),
    )
    with make_progress(progress, sys.stderr) as view:
        new = lockresolve.resolve(spec, ctx, opts, previous=previous, on_event=view)
    text = new.dumps()
    L.Lock.loads(text, where=f"{lock_file.name} (as resolved)")  # what the build will read back
    old = lock_file.read_text(encoding="utf-8") if lock_file.is_file() else None
    if old != text:
        _write(lock_file, text)
    n_apt = sum(len(s.packages) for s in new.apt)
    n_py = len(new.python_packages or ())
    n_conda = len(new.conda or ())
    verb = "unchanged" if old == text else ("updated" if old is not None else "wrote")
    base_id = new.base.id or new.base.pinned_ref().partition("@")[2]
    print(
        f"{verb} {lock_file.name}: base {new.base.ref} ({base_id[:19]}), {n_apt} apt packages in "
        f"{len(new.apt)} transactions, {n_py} Python packages (Python {new.python or '-'}), "
        f"{n_conda} conda packages, {len(new.http)} downloads",
        file=sys.stderr,
    )
    for item in new.unlocked:
        print(f"note: not locked: {item}", file=sys.stderr)
    if spec.runs:
        print("note: run() commands run as written: what they download is not locked", file=sys.stderr)


def _write(path: Path, text: str) -> None:
    """Replace ``path`` in one step: an interrupted write never leaves a partial lock."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _previous(path: Path) -> Lock | None:
    from envbuild import lock as L

    try:
        return L.read_lock(path)
    except L.LockError as exc:  # an older/newer format or a broken file: resolved afresh, and said so
        print(f"note: the earlier pins are not kept: {exc}", file=sys.stderr)
        return None
