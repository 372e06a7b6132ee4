"""The importable build API: evaluate -> (skip check) -> compile -> connect -> plan -> solve(s) -> outputs.

>>> from envbuild.build import BuildOptions, build
>>> result = build(BuildOptions(path="examples/jupyter"))
>>> result.tag, result.up_to_date

The skip check needs no BuildKit connection: when an image with the tag exists and its
``ai.envbuild.digest`` label equals the content digest of this build's inputs, the build is done.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild import __version__, paths
from envbuild.errors import BuildFailed, EnvbuildError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

    import llb
    from envbuild.capabilities import BuilderCaps
    from envbuild.compiler import CompiledBuild
    from envbuild.compiler.mirrors import Mirrors
    from envbuild.compiler.options import Pins
    from envbuild.lock import LockedBuild
    from envbuild.outputs import BuildOutputOptions
    from frontend.spec import Spec

CA_CERT_ENV = "ENVBUILD_CA_CERT"
PYTHON_MIRROR_ENV = "ENVBUILD_PYTHON_MIRROR"


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """``path`` is a directory, a build file or ``file.envd:func`` (as for ``frontend.evaluate``)."""

    path: str = "."
    function: str | None = None
    tag: str | None = None
    no_cache: bool = False
    ca_cert: str | None = None
    owner: tuple[int, int] | None = None
    network: str = "sandbox"
    python_mirror: str | None = None
    builder: str | None = None
    user_config: Any = None
    environ: Mapping[str, str] | None = None
    locked: bool = False
    offline: bool = False
    outputs: BuildOutputOptions | None = None
    linear: bool = False
    """One chain of steps even where the builder has MergeOp/DiffOp (`BuilderCaps.merge_diff`)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """Everything decided before talking to BuildKit."""

    spec: Spec
    context_dir: str
    project: str
    tag: str
    owner: tuple[int, int]
    digest: str
    """The ``ai.envbuild.digest`` label; empty when `prepare` was told the labels are not needed."""
    quick: str | None = None
    """The ``ai.envbuild.inputs`` label (`envbuild.quickcheck`): lets the next no-op build skip evaluation."""
    base_image: Mapping[str, Any] | None = None
    """The engine's ``image inspect`` of the base (None: not in its store); asked once per build."""
    pins: Pins | None = None
    """The versions a fresh ``build.envd.lock`` pins (`envbuild.lock.use_lock`); None: no lock used."""


@dataclass(frozen=True, slots=True)
class BuildResult:
    tag: str
    image_id: str | None
    up_to_date: bool
    duration: float
    spec: Spec
    digest: str
    steps: tuple[Any, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    outcomes: tuple[Any, ...] = ()
    """`envbuild.publish.StepOutcome` per planned solve (platform, export, pushed digests, saved files)."""

    @property
    def sent(self) -> tuple[int, int]:
        """(files, bytes) of the build context sent to the builder (files it already had stay)."""
        results = [o.result for o in self.outcomes]
        return sum(getattr(r, "sent_files", 0) for r in results), sum(getattr(r, "sent_bytes", 0) for r in results)


def evaluate(options: BuildOptions) -> tuple[Spec, str]:
    """The spec and the (absolute, resolved) context directory; build-file mistakes become
    UsageError (exit 2)."""
    import frontend
    from envbuild.compiler.mirrors import Mirrors

    try:
        spec = frontend.evaluate(
            options.path,
            function=options.function,
            user_config=options.user_config,
            offline=options.offline,
            git_mirror=Mirrors.load(options.environ).git or None,
        )
    except frontend.NetworkError as exc:  # the file is fine; the network (or a mirror) is missing: exit 1
        raise EnvbuildError(str(exc)) from None
    except frontend.EnvdError as exc:
        raise UsageError(str(exc)) from None
    for kind, remarks in (("warning", spec.warnings), ("note", spec.notes)):
        for remark in remarks:
            print(
                f"{kind}: {remark.pos}: {remark.message}" if remark.pos else f"{kind}: {remark.message}",
                file=sys.stderr,
            )
    return spec, os.path.realpath(os.path.dirname(_build_file(options)) or ".")


def _build_file(options: BuildOptions) -> str:
    from frontend.target import split_target_text

    return split_target_text(os.fspath(options.path))[0]


def input_digest(spec: Spec, context_dir: str, *, owner: tuple[int, int], base_id: str, extra: str = "") -> str:
    """sha256 over everything that shapes the image: spec JSON, input file contents (not mtimes),
    the base image id, the owner, and envbuild's version.

    The spec is hashed as the label shows it (no index credentials, no Jupyter token): the digest is
    in the image too, and a hash over a known text plus a short secret can be brute-forced offline."""
    from envbuild import quickcheck
    from envbuild.compiler.credentials import public_spec

    h = hashlib.sha256()
    for part in (
        f"envbuild {__version__} code {quickcheck.code_fingerprint()}",
        public_spec(spec).to_json(),
        f"owner {owner[0]}:{owner[1]}",
        f"base {base_id}",
        extra,
    ):
        h.update(part.encode())
        h.update(b"\0")
    quickcheck.hash_inputs(h, str(context_dir), _input_paths(spec))
    return "sha256:" + h.hexdigest()


def _input_paths(spec: Spec) -> tuple[str, ...]:
    vsix = [n for call in spec.vscode_extensions for n in call.names if n.lower().endswith(".vsix")]
    return tuple(sorted({*spec.inputs, *vsix}))


def prepare(options: BuildOptions, *, labels: bool = True) -> Prepared:
    """Evaluate and decide; ``labels=False`` skips the content digest and the skip-check label
    (``debug llb`` prints no image config, so it needs neither)."""
    from envbuild import ignorefile, images
    from envbuild.naming import default_tag, project_name

    if options.tag:
        from envbuild.outputs import validate_image_name

        validate_image_name(options.tag)
    spec, ctx = evaluate(options)
    ignorefile.check_inputs(spec, ignorefile.load(ctx))
    locked = _use_lock(spec, ctx, options)
    spec, pins = locked.spec, locked.pins
    project = project_name(os.path.basename(ctx))
    if options.owner is not None:
        owner = options.owner
    elif spec.owner is not None:
        owner = (spec.owner.uid, spec.owner.gid)
    else:
        owner = (os.getuid(), os.getgid())
    base_name = images.engine_name(spec.image)
    base = images.inspect_image(base_name)
    tag = options.tag or default_tag(project, dev=spec.dev)
    if not labels:
        return Prepared(spec, ctx, project, tag, owner, "", None, base, pins)
    base_id = str(base.get("Id")) if base else "unresolved"
    extra = f"network {options.network}" + (f" lock {pins.digest}" if pins is not None else "")
    digest = input_digest(spec, ctx, owner=owner, base_id=base_id, extra=extra)
    quick = _quick_label(spec, options, project=project, base=base_name, base_id=base_id)
    return Prepared(spec, ctx, project, tag, owner, digest, quick, base, pins)


def _quick_label(spec: Spec, options: BuildOptions, *, project: str, base: str, base_id: str) -> str | None:
    from envbuild import quickcheck

    if any(not h.checksum for h in spec.http):
        return None
    context_dir, build_file = quickcheck.locate(_build_file(options))
    return quickcheck.make_label(
        files=tuple(f.label for f in spec.source_files),
        inputs=_input_paths(spec),
        base=base,
        base_id=base_id,
        context_dir=context_dir,
        build_file=build_file,
        function=spec.target,
        project=project,
        owner=options.owner,
        network=options.network,
    )


def _use_lock(spec: Spec, ctx: str, options: BuildOptions) -> LockedBuild:
    """The locked spec and pins when build.envd.lock is fresh (envbuild.lock); --locked/--offline
    make a stale, missing or unsatisfiable lock an error."""
    from envbuild.lock import use_lock

    build_file = _build_file(options)
    return use_lock(spec, Path(ctx), Path(build_file), locked=options.locked, offline=options.offline)


def is_up_to_date(prep: Prepared) -> bool:
    """True when the tagged image was built from exactly these inputs (``io.http`` without a
    checksum can change behind our back, so it always rebuilds)."""
    from envbuild import images

    if any(not h.checksum for h in prep.spec.http):
        return False
    labels = images.image_labels(prep.tag)
    return labels is not None and labels.get("ai.envbuild.digest") == prep.digest


def compile_for(
    prep: Prepared,
    options: BuildOptions,
    *,
    client: Any = None,
    cache_bust: str = "",
    platform: str | None = None,
    mirrors: Mirrors | None = None,
    extensions: tuple[Any, ...] = (),
    merge_layers: bool = False,
) -> CompiledBuild:
    """Compile the prepared spec; ``extensions`` are those `prepare_extensions` unpacked (without
    them the VS Code extensions are left out, with a note, so ``debug llb`` stays offline);
    ``merge_layers`` only for a builder with MergeOp/DiffOp (`BuilderCaps.merge_diff`)."""
    from envbuild import compiler, ignorefile, images
    from envbuild.compiler.compile import compile as compile_spec
    from envbuild.compiler.mirrors import Mirrors

    environ = os.environ if options.environ is None else options.environ
    plat = None
    if platform and client is not None:
        import llb

        plat = llb.Platform.parse(platform)
    if prep.base_image is not None:
        base = images.base_config(prep.base_image)
    else:
        base = images.resolve(prep.spec.image, client, platform=plat, local=False)
    pins = prep.pins
    if pins is not None and platform and pins.platform and llb_platform(platform) != llb_platform(pins.platform):
        if pins.strict:
            from envbuild.lock import LockError

            raise LockError(
                f"--locked: the lock was made for {pins.platform}; this build is for {platform} "
                "(lock each platform's build separately)"
            )
        pins = None
    opts = compiler.CompileOptions(
        project=prep.project,
        owner=prep.owner,
        base_config=base,
        proxy=compiler.proxy_from_env(environ),
        network=options.network,
        python_mirror=options.python_mirror or environ.get(PYTHON_MIRROR_ENV) or None,
        platform=platform,
        input_digest=prep.digest,
        inputs_label=prep.quick or "",
        cache_bust=cache_bust,
        mirrors=mirrors if mirrors is not None else Mirrors.load(environ),
        vscode_extensions=tuple(extensions),
        vscode_cache=_vscode_cache() if extensions else "",
        context_dir=prep.context_dir,
        context_excludes=ignorefile.load(prep.context_dir).patterns,
        pins=pins,
        merge_layers=merge_layers,
    )
    compiled = compile_spec(prep.spec, opts)
    if pins is None and prep.pins is not None:
        note = f"the lock was made for {prep.pins.platform}: the {platform} build installs unpinned packages"
        compiled = replace(compiled, notes=(*compiled.notes, note))
    return compiled


def llb_platform(text: str) -> str:
    """``os/arch[/variant]`` as BuildKit normalises it (``linux/x86_64`` is ``linux/amd64``)."""
    import llb

    return str(llb.Platform.parse(text))


def _vscode_cache() -> str:
    from envbuild.compiler.vscode import cache_root

    return str(cache_root())


def prepare_extensions(prep: Prepared, mirrors: Mirrors, *, arch: str = "amd64") -> tuple[Any, ...]:
    """Download (Open VSX or its mirror) or take from the context, and unpack, the spec's VS Code
    extensions on the host, cached under ``~/.cache/envbuild/vscode`` (a rebuild downloads nothing)."""
    spec = prep.spec
    ids = tuple(n for call in spec.vscode_extensions for n in call.names)
    if not ids or not spec.dev:
        return ()
    from pathlib import Path

    from envbuild.compiler import vscode

    return vscode.prepare(ids, context_dir=Path(prep.context_dir), mirrors=mirrors, arch=arch)


def check_extensions(pins: Pins) -> None:
    """The .vsix files the build just took from envbuild's cache (or downloaded) are the lock's."""
    from pathlib import Path

    from envbuild.lock import LockError, check_vsix

    bad = check_vsix(pins.vsix, Path(_vscode_cache()), downloaded=True)
    if bad:
        raise LockError("VS Code extension downloads differ from the lock:\n" + "\n".join(f"  - {b}" for b in bad))


def read_ca_cert(options: BuildOptions) -> bytes | None:
    environ = os.environ if options.environ is None else options.environ
    path = options.ca_cert or environ.get(CA_CERT_ENV)
    if not path:
        return None
    try:
        with open(os.path.expanduser(path), "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError(f"--ca-cert {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UsageError(f"--ca-cert {path}: not a PEM certificate bundle")
    return data


def skip_check_names(prep: Prepared, outputs: BuildOutputOptions | None) -> tuple[str, ...]:
    """The image names the up-to-date check must find, or () when it does not apply: only a plain
    export into the engine's store (no push, no file, no cache export, no explicit platform)."""
    return skip_check_names_for(outputs, prep.tag)


def skip_check_names_for(outputs: BuildOutputOptions | None, default: str) -> tuple[str, ...]:
    """`skip_check_names` for a build whose default image name is ``default``."""
    if outputs is None:
        return (default,)
    out = outputs.outputs[0] if outputs.outputs else None
    if outputs.push or outputs.platforms or outputs.cache_exports:
        return ()
    if out is not None and (out.type != "docker" or out.dest):
        return ()
    names = (out.names if out is not None else ()) or outputs.tags or (default,)
    return tuple(names)


def _all_up_to_date(prep: Prepared, names: tuple[str, ...]) -> bool:
    return bool(names) and all(is_up_to_date(replace(prep, tag=n)) for n in names)


def up_to_date(prep: Prepared, options: BuildOptions) -> bool:
    """True when every image the build would deliver exists, built from exactly these inputs."""
    return not options.no_cache and _all_up_to_date(prep, skip_check_names(prep, options.outputs))


def quick_up_to_date(options: BuildOptions) -> tuple[str, str] | None:
    """(tag, content digest) when `envbuild.quickcheck` vouches, without evaluating build.envd, that
    the one image this build delivers is up to date; None means "evaluate and check fully"."""
    from envbuild import quickcheck
    from envbuild.naming import default_tag, project_name
    from frontend.target import split_target_text

    outputs = options.outputs
    if options.no_cache or (outputs is not None and (outputs.outputs or len(outputs.tags) > 1)):
        return None
    build_file, function = split_target_text(os.fspath(options.path))
    context_dir, build_file = quickcheck.locate(build_file)
    project = project_name(os.path.basename(context_dir))
    for tag in [options.tag] if options.tag else [default_tag(project), default_tag(project, dev=False)]:
        if skip_check_names_for(outputs, tag) != (tag,):
            return None
        digest = quickcheck.up_to_date(
            build_file=build_file,
            function=options.function or function or "build",
            tag=tag,
            project=project,
            owner=options.owner,
            network=options.network,
        )
        if digest is not None:
            return tag, digest
    return None


def build(
    options: BuildOptions,
    *,
    on_event: Callable[[Any], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build and deliver the outputs the options ask for (the engine's image store by default)."""
    t0 = time.monotonic()
    prep = prepare(options)
    with one_build_at_a_time(prep.tag):
        if up_to_date(prep, options):
            return BuildResult(prep.tag, None, True, time.monotonic() - t0, prep.spec, prep.digest)
        return build_prepared(prep, options, on_event=on_event, on_note=on_note)


@contextlib.contextmanager
def one_build_at_a_time(tag: str) -> Iterator[None]:
    """Builds of one image name by this user wait for each other (a file lock in the cache dir):
    concurrent builds of one project, e.g. three `up`s, would export one name at once, which the
    containerd image store refuses; waiting, the later ones find the image up to date."""
    directory = paths.cache_dir() / "locks"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / hashlib.sha256(tag.encode()).hexdigest()[:32], "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_prepared(
    prep: Prepared,
    options: BuildOptions,
    *,
    on_event: Callable[[Any], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> BuildResult:
    """Connect to the builder, plan the solves the outputs need, run them and deliver the results
    (no up-to-date check: `build` and the CLI make it first)."""
    import llb
    from envbuild import capabilities, contexts, publish
    from envbuild.compiler.mirrors import Mirrors
    from envbuild.outputs import BuildOutputOptions, check_destinations, plan_build

    t0 = time.monotonic()
    ca = read_ca_cert(options)
    environ = os.environ if options.environ is None else options.environ
    rb = contexts.resolve_builder(options.builder, env=environ)
    try:
        client = rb.connect()
    except llb.LLBError as exc:
        raise rb.unreachable(exc) from None
    out_opts = options.outputs or BuildOutputOptions()
    with client:
        try:
            caps = capabilities.read(rb, client)
        except llb.BuilderUnreachable as exc:
            raise rb.unreachable(exc) from None
        except llb.LLBError as exc:
            raise BuildFailed(f"cannot read what the builder can do: {exc} [{rb.describe()}]") from None
        plan = plan_build(out_opts, caps=caps, default_name=prep.tag, workers=caps.workers)
        check_destinations(plan)
        solver = _Solver(
            prep,
            options,
            client,
            Mirrors.load(environ),
            ca,
            on_event,
            on_note or (lambda _text: None),
            caps=caps,
            explicit_platform=bool(out_opts.platforms),
            several=len(plan.solves) > 1,
        )
        try:
            outcomes = publish.execute_plan(plan, solver.solve, docker_host=rb.docker_host, on_message=solver.note)
        except llb.BuilderUnreachable as exc:
            raise rb.unreachable(exc) from None
        except llb.Cancelled:
            raise KeyboardInterrupt from None
        except llb.LLBError as exc:
            raise BuildFailed(f"build failed: {exc}") from None
    if rb.kind == "docker":  # images in this engine's store: `envbuild prune` may remove these only
        from envbuild.runtime.prune import remember_image

        for outcome in outcomes:
            if outcome.step.image_names and getattr(outcome.result, "image_id", None):
                remember_image(outcome.result.image_id)
    last = outcomes[-1].result if outcomes else None
    steps = tuple(v for o in outcomes for v in o.result.vertices)
    tag = next((o.step.image_names[0] for o in outcomes if o.step.image_names), prep.tag)
    return BuildResult(
        tag,
        getattr(last, "image_id", None),
        False,
        time.monotonic() - t0,
        prep.spec,
        prep.digest,
        steps=steps,
        notes=tuple(solver.notes),
        outcomes=tuple(outcomes),
    )


class _Solver:
    """One build's solves: compile for the planned step's platform, then solve with the build's
    secrets; notes are passed on once each."""

    def __init__(
        self,
        prep: Prepared,
        options: BuildOptions,
        client: llb.Client,
        mirrors: Mirrors,
        ca: bytes | None,
        on_event: Callable[[Any], None] | None,
        note: Callable[[str], None],
        *,
        caps: BuilderCaps,
        explicit_platform: bool,
        several: bool,
    ) -> None:
        self.prep, self.options, self.client, self.mirrors, self.ca = prep, options, client, mirrors, ca
        self.on_event, self._note = on_event, note
        self.caps = caps  # what this builder can do (`envbuild.capabilities`), read once for the build
        self.explicit_platform, self.several = explicit_platform, several
        self.cache_bust = secrets.token_hex(8) if options.no_cache else ""
        self.secrets: dict[str, bytes] = {}
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self._note(text)

    def solve(self, step: Any) -> Any:
        import llb
        from envbuild.compiler.compile import solve_secrets

        platform = str(step.platform) if self.explicit_platform else None
        if self.several:
            self.note(f"building {step.describe}")
        exts = prepare_extensions(self.prep, self.mirrors, arch=step.platform.architecture)
        if exts and self.prep.pins is not None and self.prep.pins.vsix:
            check_extensions(self.prep.pins)
        compiled = compile_for(
            self.prep,
            self.options,
            client=self.client,
            cache_bust=self.cache_bust,
            platform=platform,
            mirrors=self.mirrors,
            extensions=exts,
            merge_layers=self.caps.merge_diff and not self.options.linear,
        )
        for text in compiled.notes:
            if text not in self.notes:
                self.notes.append(text)
                self.note(text)
        self.secrets.update(solve_secrets(compiled, self.ca))
        try:
            result = self.client.solve(
                compiled.definition(),
                export=step.export,
                cache_imports=step.cache_imports,
                cache_exports=step.cache_exports,
                image_config=compiled.image_config() if step.is_image else None,
                local_dirs=dict(compiled.local_dirs),
                secrets=self.secrets,
                entitlements=compiled.entitlements,
                on_event=self.on_event,
            )
        except llb.ExecError as exc:
            raise _step_failed(exc, compiled) from None
        except llb.DefinitionTooLarge as exc:  # the engine's request limit: graph and image config
            raise compiled.too_large(exc) from None
        except llb.SolveError as exc:
            if type(exc) is llb.SolveError and exc.vertex_name:  # the builder named the step that failed
                raise _step_failed(exc, compiled) from None
            raise
        for text in result.warnings:  # what went wrong beside a build that succeeded
            self.note(text)
        return result


STEP_ERROR = "envbuild: error: "
"""A step's own explanation of its failure (the locked apt check's, say) leads the error message."""


def _step_failed(exc: llb.SolveError, compiled: CompiledBuild) -> BuildFailed:
    """The failed step at its build file position (the compiler's, else the one the builder sent), with
    the exit code and log of a `run` step, or the builder's message for any other step."""
    import llb

    step = compiled.step_for(exc.vertex_name)
    pos = step.pos if step and step.pos else (str(exc.sources[0]) if exc.sources else "")
    where = f"{pos}: " if pos else ""
    if not isinstance(exc, llb.ExecError):
        err = BuildFailed(f"{where}step {exc.vertex_name!r} failed: {exc.message}")
        err.step = step  # type: ignore[attr-defined]
        return err
    code = f" (exit code {exc.exit_code})" if exc.exit_code is not None else ""
    tail = "\n".join("  | " + line for line in exc.log_tail[-20:])
    said = [line.split(STEP_ERROR, 1)[1] for line in exc.log_tail if STEP_ERROR in line]
    msg = f"{where}step {exc.vertex_name!r} failed{code}" + (f": {said[-1]}" if said else "")
    if tail:
        msg += "\n" + tail
    err = BuildFailed(msg)
    err.step = step  # type: ignore[attr-defined]
    return err
