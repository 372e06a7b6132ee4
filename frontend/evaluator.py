"""Evaluate ``build.envd`` files with starlark-pyo3 into a ``Spec``.

Shape of one evaluation: the user default file (``~/.config/envbuild/config.envd``) runs first, then
the project file; top-level calls record as they run, then the chosen function (``build``) is called.
Every module starts by loading the frozen prelude (the namespaces and universe functions, built once
per process). Work is bounded by a wall-clock deadline (checked by starlark's ``check_cancelled``;
time spent cloning git repositories does not count) and a call-depth limit; the evaluation runs in a
child process (``frontend.isolation``) whose memory and time are bounded from outside, because one
native operation can take more of either than any check between operations can stop.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal, TypeVar

import starlark as sl

from . import diagnostics, isolation
from . import spec as S
from .builtins import NAMESPACES, REGISTRY, UNIVERSE, starlark_repr
from .errors import (
    EnvdError,
    LimitExceeded,
    LoadError,
    NameError_,
    SyntaxError_,
    TypeError_,
    V0Syntax,
)
from .guard import check_source, unclosed_error
from .loader import GitCache, Loader, Source, cache_home, read_source, split_git
from .locate import MARK_FUNCTION, Instrumented, constant_too_big, instrument
from .prelude import PRELUDE_LABEL, make_callback, prelude_source
from .recorder import Recorder, current
from .target import DEFAULT_FILE, is_function_name, split_target_text, user_config_path

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_MEMORY = 512 << 20
DEFAULT_MAX_CALL_DEPTH = 200
MAX_PRINT = 1 << 20
"""Characters one print() shows; a file that prints more is cut short, not the terminal flooded."""
MAX_LOAD_DEPTH = 64
MIGRATION_URL = "https://envd.tensorchord.ai/guide/v1.html"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Runtime:
    """What every evaluation in this process shares: the globals and the frozen prelude."""

    globals: sl.Globals
    dialect: sl.Dialect
    prelude: sl.FrozenModule
    prelude_ast: sl.AstModule
    prelude_loader: sl.FileLoader


def _print(*args: object, sep: str = " ") -> None:
    rec = current.get(None)
    text = sep.join(a if isinstance(a, str) else starlark_repr(a) for a in args)
    if len(text) > MAX_PRINT:
        text = text[:MAX_PRINT] + f"... ({len(text) - MAX_PRINT} more characters)"
    (rec.printer if rec is not None and rec.printer is not None else _to_stderr)(text)


def _to_stderr(text: str) -> None:
    sys.stderr.write(text + "\n")


@functools.cache
def _runtime() -> _Runtime:
    """Build the Starlark globals and the frozen prelude once per process."""
    g = sl.Globals.extended_by([sl.LibraryExtension.StructType, sl.LibraryExtension.CallStack])
    dialect = sl.Dialect.standard()
    pm = sl.Module()
    for b in REGISTRY.values():
        pm.add_callable(f"__cb_{b.ident}", make_callback(b))
    pm.add_callable("print", _print)
    sl.eval(pm, sl.parse(PRELUDE_LABEL, prelude_source(), dialect), g)
    frozen = pm.freeze()
    check_source(PRELUDE_LABEL, "x = 1\n")  # the tokenizer compiles its expressions once, here
    names = (*UNIVERSE, *NAMESPACES, "print")
    load_src = 'load("@envbuild", ' + ", ".join(f'"{n}"' for n in names) + ")\n"
    return _Runtime(
        globals=g,
        dialect=dialect,
        prelude=frozen,
        prelude_ast=sl.parse(PRELUDE_LABEL, load_src, dialect),
        prelude_loader=sl.FileLoader(lambda _label: frozen),
    )


@functools.lru_cache(maxsize=128)
def _parse(label: str, text: str) -> sl.AstModule:
    return sl.parse(label, text, _runtime().dialect)


# ---- syntax header -------------------------------------------------------------------------------

_SYNTAX_COMMENT = re.compile(r"#\s*syntax\s*=\s*(\S*)\s*")


def _check_syntax_header(src: Source) -> None:
    """``# syntax=v1`` (or nothing) among the leading comments; v0 gets the migration hint."""
    for lineno, line in enumerate(src.text.split("\n"), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            return
        m = _SYNTAX_COMMENT.fullmatch(stripped)
        if m is None:
            continue
        version = m[1].lower()
        col = line.index("#") + 1
        if version == "v1":
            return
        if version == "v0":
            raise V0Syntax(
                "`# syntax=v0` is not supported: envd removed v0 in 1.0 and envbuild reads v1 only",
                src.label,
                lineno,
                col,
                line,
                hint=(
                    "migrate to v1 (" + MIGRATION_URL + "): "
                    'base(os="ubuntu22.04", language="python3") becomes base(image="ubuntu:22.04", dev=True) '
                    "plus install.conda() and install.python(); io.copy(host_path, envd_path) keeps working; "
                    "then write `# syntax=v1` or drop the line"
                ),
            )
        raise SyntaxError_(
            f"unknown syntax version {m[1]!r}; envbuild understands `# syntax=v1` (the default)",
            src.label,
            lineno,
            col,
            line,
        )


# ---- one evaluation ------------------------------------------------------------------------------

_INCLUDE = re.compile(r"""\binclude\s*\(\s*(?:git\s*=\s*)?(["'])([^"'\n]+)\1\s*\)""")
_TOP_NAME = re.compile(r"^(?:def\s+([A-Za-z]\w*)\s*\(|([A-Za-z]\w*)\s*=(?!=))", re.MULTILINE)


@dataclass(slots=True)
class _Session:
    """One evaluation: the recorder, the loader, the deadline and the modules loaded so far."""

    rec: Recorder
    loader: Loader
    timeout: float
    max_depth: int
    channel: isolation.Channel | None = None
    deadline: float = 0.0
    timed_out: bool = False
    frozen: dict[str, sl.FrozenModule] = field(default_factory=dict)
    exports: dict[str, list[str]] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    instrumented: dict[str, Instrumented] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout

    @property
    def options(self) -> sl.EvalOptions:
        return sl.EvalOptions(check_cancelled=self._cancelled, max_callstack_size=self.max_depth)

    def _cancelled(self) -> bool:
        if time.monotonic() > self.deadline:
            self.timed_out = True
        return self.timed_out

    def paused(self, work: Callable[[], _T]) -> _T:
        """Run host work (a git clone) without counting it against the deadline (here or the parent's)."""
        t0 = time.monotonic()
        try:
            if self.channel is None:
                return work()
            with self.channel.paused():
                return work()
        finally:
            self.deadline += time.monotonic() - t0

    def run(self, fn: Callable[[], _T]) -> _T:
        """Run Starlark, converting its errors into ``EnvdError`` (with positions)."""
        self.rec.error = None
        try:
            return fn()
        except EnvdError as e:
            if e.source_line is None:
                e.source_line = diagnostics.source_line(self.rec, e.file, e.line)
            raise
        except sl.StarlarkError as e:
            err = diagnostics.eval_error(str(e), self.rec, timed_out=self.timed_out, timeout=self.timeout)
            self.rec.error = None
            marked = self.instrumented.get(err.file or "")
            if marked is not None and err.line is not None and err.col is not None:
                err.col = marked.column(err.line, err.col)
            raise err from None
        except BaseException as e:  # starlark-rust panics (e.g. a list too large) arrive as PanicException
            if type(e).__name__ != "PanicException":
                raise
            if "out of memory" in str(e):
                raise MemoryError from None  # where it happened is found by a locating run
            raise LimitExceeded(f"evaluation aborted: {str(e) or 'internal limit reached'}") from None

    def exec_source(self, src: Source) -> sl.Module:
        rt, rec = _runtime(), self.rec
        _check_syntax_header(src)
        rec.sources[src.label] = src.text.split("\n")
        rec.source_files.append(S.SourceFile(src.label, src.sha256))
        m = sl.Module()
        m["_build_context_dir"] = str(self.loader.context_dir)
        sl.eval(m, rt.prelude_ast, rt.globals, rt.prelude_loader)
        unclosed = check_source(src.label, src.text)
        text = self._marked_text(m, src)
        try:
            ast = _parse(src.label, text)
        except sl.StarlarkError as e:
            err = diagnostics.parse_error(str(e), rec)
            if unclosed is not None and (err.line is None or (err.line, err.col) == (1, 1)):
                raise unclosed_error(src.label, src.text, unclosed) from None
            raise err from None
        if "include" in src.text:
            self.prepare_includes(m, src)
        loader = sl.FileLoader(lambda label: self.load(label, src))
        sl.eval_with(self.options, m, ast, rt.globals, loader)
        if src.label in self.exports:
            self.exports[src.label] = [n for n in self.exports[src.label] if not _missing(m, n)]
        return m

    def _marked_text(self, m: sl.Module, src: Source) -> str:
        """The text to run: with statement marks when this run locates a limit (``frontend.locate``)."""
        channel = self.channel
        marked = instrument(src.text) if channel is not None and channel.locating else None
        if channel is None or marked is None:
            return src.text
        first = channel.positions(src.label, marked.positions, constant_too_big(src.text))
        m.add_callable(MARK_FUNCTION, lambda n: channel.mark(first + n))
        self.instrumented[src.label] = marked
        return marked.text

    def load(self, label: str, importer: Source, *, pos: S.Pos | None = None) -> sl.FrozenModule:
        """The frozen module of a ``load()`` label (each file runs once per evaluation)."""
        try:
            return self._load_source(self.paused(lambda: self.loader.resolve(label, importer)))
        except EnvdError as e:
            if e.file is None:
                e.at(pos or _load_pos(importer, label))
                e.source_line = diagnostics.source_line(self.rec, e.file, e.line)
            self.rec.error = e
            raise

    def _load_source(self, source: Source) -> sl.FrozenModule:
        key = source.label
        if key in self.frozen:
            return self.frozen[key]
        if key in self.stack:
            cycle = " -> ".join([*self.stack[self.stack.index(key) :], key])
            raise LoadError(f"load cycle: {cycle}")
        if len(self.stack) >= MAX_LOAD_DEPTH:
            raise LoadError(f"loads nested deeper than {MAX_LOAD_DEPTH} files")
        self.stack.append(key)
        try:
            module = self.run(lambda: self.exec_source(source))
        finally:
            self.stack.pop()
        frozen = module.freeze()
        self.frozen[key] = frozen
        return frozen

    def prepare_includes(self, m: sl.Module, src: Source) -> None:
        """Resolve ``include("URL")`` literals before the file runs, binding them as structs."""
        found: dict[str, S.Pos] = {}
        for i, line in enumerate(src.text.split("\n"), 1):
            for im in _INCLUDE.finditer(line):
                pos = S.Pos(src.label, i, im.start() + 1)
                try:
                    key = split_git(im[2])
                except EnvdError as e:
                    raise e.at(pos) from None
                found.setdefault(key, pos)
        if not found:
            return
        lines = ['load("@envbuild", __include_key = "include")']
        entries = []
        for n, (key, pos) in enumerate(found.items()):
            fields = self._include_fields(key, pos, src, lines, n)
            self.rec.includes[key] = key
            entries.append(f'"{key}": struct({", ".join(f"{k} = {v}" for k, v in fields.items())})')
        lines.append("__included = {" + ", ".join(entries) + "}")
        lines.append("def include(*args, **kwargs):")
        lines.append("    return __included[__include_key(*args, **kwargs)]")
        rt = _runtime()
        ast = sl.parse(PRELUDE_LABEL, "\n".join(lines) + "\n", rt.dialect)
        sl.eval(m, ast, rt.globals, sl.FileLoader(self._include_module))

    def _include_fields(self, key: str, pos: S.Pos, src: Source, lines: list[str], n: int) -> dict[str, str]:
        """Load every file of one included repository; add its load lines; name -> local alias."""
        try:
            sources = self.paused(lambda: self.loader.include(key))
        except EnvdError as e:
            e.at(pos)
            e.source_line = diagnostics.source_line(self.rec, pos.file, pos.line)
            raise
        fields: dict[str, str] = {}
        defined_in: dict[str, str] = {}
        for s in sources:
            self.exports[s.label] = [a or b for a, b in _TOP_NAME.findall(s.text) if not (a or b).startswith("_")]
            self.load(s.label, src, pos=pos)
            names = list(dict.fromkeys(self.exports[s.label]))
            for k in names:
                if k in defined_in:  # envd merges the files into one module and refuses the same name twice
                    raise LoadError(f"include(): `{k}` is defined in both {defined_in[k]} and {s.label}").at(pos)
                defined_in[k] = s.label
            if names:
                alias = ", ".join(f'__inc{n}_{k} = "{k}"' for k in names)
                lines.append(f'load("{s.label}", {alias})')
                for k in names:
                    fields[k] = f"__inc{n}_{k}"
        return fields

    def _include_module(self, label: str) -> sl.FrozenModule:
        return _runtime().prelude if label == "@envbuild" else self.frozen[label]


def _missing(m: sl.Module, name: str) -> bool:
    """Not a global of the module (reading an unknown name gives None; a function cannot be read)."""
    try:
        return m[name] is None
    except sl.StarlarkError:
        return False


def _load_pos(importer: Source, label: str) -> S.Pos:
    call = re.compile(r"\bload\s*\(\s*([\"'])" + re.escape(label) + r"\1")
    for i, line in enumerate(importer.text.split("\n"), 1):
        m = call.search(line)
        if m and not line.lstrip().startswith("#"):
            return S.Pos(importer.label, i, m.start() + 1)
    return S.Pos(importer.label, 1, 1)


# ---- public entry point --------------------------------------------------------------------------


def default_user_config() -> Path:
    """``$XDG_CONFIG_HOME/envbuild/config.envd`` (``~/.config/envbuild/config.envd``)."""
    return Path(user_config_path())


def split_target(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``dir``, ``dir/build.envd``, ``file.envd:func`` or ``:func`` -> (build file, function or None)."""
    file, func = split_target_text(os.fspath(path))
    return Path(file), func


def _home_label(path: str) -> str:
    """A user config's label: ``~/...`` when it is under the home directory."""
    real, home = Path(os.path.realpath(path)), Path(os.path.realpath(os.path.expanduser("~")))
    return "~/" + str(real.relative_to(home)) if real.is_relative_to(home) and real != home else path


def evaluate(
    path: str | os.PathLike[str] = ".",
    *,
    function: str | None = None,
    user_config: str | os.PathLike[str] | Literal[False] | None = None,
    context_dir: str | os.PathLike[str] | None = None,
    git_cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    git_update_after: float = 3600.0,
    git_mirror: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    max_memory: int = DEFAULT_MAX_MEMORY,
    max_call_depth: int = DEFAULT_MAX_CALL_DEPTH,
    on_print: Callable[[str], None] | None = None,
) -> S.Spec:
    """Evaluate a build file and return its ``Spec``.

    ``path`` is a directory (its ``build.envd``), a file, or ``file.envd:func``; ``function`` picks
    the function to call (default ``build``). ``user_config`` None reads
    ``~/.config/envbuild/config.envd`` if it exists, a path reads that file, False skips it.
    ``context_dir`` (default: the build file's directory) is the root for ``//`` labels and for
    every file the spec reads. ``print()`` output goes to ``on_print`` (default: stderr).
    ``git_mirror`` (a user setting) is where ``include()``/``load()`` fetch repositories from:
    ``<git_mirror>/<host>/<path>``. A repository that cannot be fetched raises ``NetworkError``.
    The evaluation may take ``timeout`` seconds (git work not counted) and ``max_memory`` bytes.
    Raises ``EnvdError`` subclasses for every mistake in the files; never a Python traceback.

    Example: ``python -c "import frontend; print(frontend.evaluate('examples/jupyter').to_json())"``
    """
    file_text, func_from_path = split_target_text(os.fspath(path))
    file = PurePosixPath(file_text)
    func = function or func_from_path or "build"
    if not is_function_name(func):
        raise NameError_(f"{func!r} is not a function name")
    if not os.path.isfile(file):
        raise LoadError(
            f"no build file at {file}"
            + (" (expected build.envd in that directory)" if file.name == DEFAULT_FILE else "")
        )
    ctx = Path(os.path.realpath(PurePosixPath(context_dir) if context_dir is not None else file.parent))
    if not ctx.is_dir():
        raise LoadError(f"build context {ctx} is not a directory")
    real_file = Path(os.path.realpath(file))
    if not real_file.is_relative_to(ctx):
        raise LoadError(f"build file {file} is outside the build context {ctx}")
    plan = _Plan(
        file=real_file,
        context=ctx,
        function=func,
        user_config=user_config,
        git=GitCache(
            root=Path(git_cache_dir) if git_cache_dir else Path(cache_home(), "envbuild", "git"),
            offline=offline,
            update_after=git_update_after,
            mirror=git_mirror,
        ),
        timeout=timeout,
        max_call_depth=max_call_depth,
    )
    printer = on_print or _to_stderr
    if not isolation.available():
        try:
            return plan.run(printer, None)
        except MemoryError:
            raise LimitExceeded(_limit_message(isolation.End.MEMORY, None, plan)) from None
    _runtime()  # built once here, shared with every child
    job = functools.partial(_run_in_child, plan)
    outcome = isolation.run(job, timeout=timeout, memory=max_memory, on_print=printer)
    if outcome.end in (isolation.End.SPEC, isolation.End.ERROR):
        return _result(outcome)
    # A limit or a crash: run again with statement marks to learn where (the first run had none).
    located = isolation.run(job, timeout=timeout, memory=max_memory, on_print=lambda _text: None, locate=True)
    if located.end is isolation.End.SPEC or (
        located.end is isolation.End.ERROR and not isinstance(located.value, LimitExceeded)
    ):
        return _result(located)  # the first run's failure did not happen again
    if isinstance(located.value, LimitExceeded):  # stopped by its own deadline: starlark knows where
        err = located.value
        label, line, col, text = err.file or plan.file.name, err.line, err.col, err.source_line
    else:
        label, line, col, text = located.mark or (plan.file.name, None, None, None)
    raise LimitExceeded(
        _limit_message(outcome.end, outcome.value, plan, max_memory),
        label,
        line,
        col,
        text,
        hint="look for a value that grows without bound, or a loop that never ends",
    )


def _result(outcome: isolation.Outcome) -> S.Spec:
    if isinstance(outcome.value, EnvdError):
        raise outcome.value
    assert isinstance(outcome.value, S.Spec)
    return outcome.value


def _limit_message(end: isolation.End, detail: object, plan: _Plan, max_memory: int | None = None) -> str:
    if end is isolation.End.MEMORY:
        return "evaluation used too much memory" + (f" (more than {max_memory >> 20} MiB)" if max_memory else "")
    if end is isolation.End.TIME:
        return f"evaluation took longer than {plan.timeout:g}s (time limit reached)"
    return f"evaluation crashed ({detail}): the file may nest too deeply for the Starlark interpreter"


def _run_in_child(plan: _Plan, channel: isolation.Channel) -> S.Spec:
    return plan.run(lambda text: channel.send("print", text), channel)


@dataclass(slots=True)
class _Plan:
    """One evaluation, decided: what ``evaluate`` runs (in a child, or here without fork)."""

    file: Path
    context: Path
    function: str
    user_config: str | os.PathLike[str] | Literal[False] | None
    git: GitCache
    timeout: float
    max_call_depth: int

    def run(self, printer: Callable[[str], None], channel: isolation.Channel | None) -> S.Spec:
        rec = Recorder(context_dir=str(self.context), target=self.function, printer=printer)
        self.git.warn = lambda msg: rec.warn(msg, None)
        session = _Session(rec, Loader(str(self.context), self.git), self.timeout, self.max_call_depth, channel)
        token = current.set(rec)
        try:
            _run_user_config(session, self.user_config)
            main = read_source(self.file, str(self.file.relative_to(self.context)), self.context, "")
            session.stack.append(main.label)
            module = session.run(lambda: session.exec_source(main))
            call = _parse(diagnostics.TOP_FRAME_LABEL, f"{self.function}()")
            try:
                session.run(lambda: sl.eval_with(session.options, module, call, _runtime().globals))
            except EnvdError as e:
                if e.file is None or e.file == diagnostics.TOP_FRAME_LABEL:
                    raise _target_error(e, self.function, main) from None
                raise
            try:
                return rec.finish()
            except EnvdError as e:
                if e.source_line is None:
                    e.source_line = diagnostics.source_line(rec, e.file, e.line)
                raise
        finally:
            current.reset(token)


def _run_user_config(session: _Session, user_config: str | os.PathLike[str] | Literal[False] | None) -> None:
    """The user's default file (settings every environment gets) runs before the project file."""
    if user_config is False:
        return
    cfg = PurePosixPath(os.fspath(user_config) if user_config is not None else user_config_path())
    if os.path.isfile(cfg):
        label = _home_label(str(cfg))
        prefix = label.rsplit("/", 1)[0] + "/" if "/" in label else ""
        src = read_source(cfg, label, cfg.parent, prefix)
        session.run(lambda: session.exec_source(src))
    elif user_config is not None:
        raise LoadError(f"user config {cfg} does not exist")


def _binding_line(main: Source, name: str) -> int:
    """The line of the last top-level ``def name(`` or ``name =`` (what the call actually reached)."""
    pattern = rf"^(?:def\s+{re.escape(name)}\s*\(|{re.escape(name)}\s*=(?!=))"
    found = [m.start() for m in re.finditer(pattern, main.text, re.MULTILINE)]
    return main.text.count("\n", 0, found[-1]) + 1 if found else 1


def _target_error(e: EnvdError, func: str, main: Source) -> EnvdError:
    defs = re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", main.text, re.MULTILINE)
    if isinstance(e, NameError_) and f"`{func}` is not defined" in e.message:
        close = difflib.get_close_matches(func, defs, n=1, cutoff=0.6)
        msg = f"no function {func}() defined in {main.label}"
        if close:
            msg += f"; did you mean {close[0]}()?"
        hint = f"functions in {main.label}: {', '.join(defs)}" if defs else f"add `def {func}():` to {main.label}"
        return NameError_(msg, main.label, 1, 1, hint=hint)
    line = _binding_line(main, func)
    if isinstance(e, TypeError_) and "call()" in e.message:
        return TypeError_(f"{func} in {main.label} is not a function", main.label, line, 1)
    if isinstance(e, TypeError_):
        return TypeError_(f"{func}() in {main.label} must take no arguments ({e.message})", main.label, line, 1)
    return e
