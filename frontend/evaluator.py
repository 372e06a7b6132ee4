"""Evaluate ``build.envd`` files with starlark-pyo3 into a ``Spec``.

Shape of one evaluation: the user default file (``~/.config/envbuild/config.envd``) runs first, then
the project file; top-level calls record as they run, then the chosen function (``build``) is called.
Every module starts by loading the frozen prelude (the namespaces and universe functions, built once
per process), which costs microseconds instead of re-evaluating it per file. Work is bounded by a
wall-clock deadline (checked by starlark's ``check_cancelled``; time spent cloning git repositories
does not count) and a call-depth limit.
"""

from __future__ import annotations

import os
import re
import sys
import time

from . import _builtins as B
from . import spec as S
from ._record import record
from .errors import (
    EnvdError,
    EvalError,
    LimitExceeded,
    LoadError,
    NameError_,
    SyntaxError_,
    TypeError_,
    V0Syntax,
)
from .guard import check_source, unclosed_error
from .loader import GitCache, Loader, Source, cache_home, read_source
from .target import DEFAULT_FILE, is_function_name, split_target_text, user_config_path

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~4 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any, Literal

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CALL_DEPTH = 200
MAX_LOAD_DEPTH = 64
MIGRATION_URL = "https://envd.tensorchord.ai/guide/v1.html"


@record
class _Runtime:
    sl: Any
    globals: Any
    dialect: Any
    prelude: Any
    prelude_ast: Any
    prelude_loader: Any


_RT: _Runtime | None = None
_AST_CACHE: dict[tuple[str, str], Any] = {}
_AST_CACHE_MAX = 128


def _print(*args: Any, sep: str = " ") -> None:
    rec = B.current.get(None)
    text = sep.join(a if isinstance(a, str) else B._starlark_repr(a) for a in args)
    if rec is not None and rec.printer is not None:
        rec.printer(text)
    else:
        sys.stderr.write(text + "\n")


def _runtime() -> _Runtime:
    """Build the Starlark globals and the frozen prelude once per process."""
    global _RT
    if _RT is None:
        import starlark as sl

        g = sl.Globals.extended_by([sl.LibraryExtension.StructType, sl.LibraryExtension.CallStack])
        dialect = sl.Dialect.standard()
        pm = sl.Module()
        for b in B.REGISTRY.values():
            pm.add_callable(f"__cb_{b.ident}", B.make_callback(b))
        pm.add_callable("print", _print)
        sl.eval(pm, sl.parse(B.PRELUDE_LABEL, B.prelude_source(), dialect), g)
        frozen = pm.freeze()
        names = (*B.UNIVERSE, *B.NAMESPACES, "print")
        load_src = 'load("@envbuild", ' + ", ".join(f'"{n}"' for n in names) + ")\n"
        _RT = _Runtime(
            sl=sl,
            globals=g,
            dialect=dialect,
            prelude=frozen,
            prelude_ast=sl.parse(B.PRELUDE_LABEL, load_src, dialect),
            prelude_loader=sl.FileLoader(lambda _label: frozen),
        )
    return _RT


def _parse(rt: _Runtime, label: str, text: str) -> Any:
    key = (label, text)
    ast = _AST_CACHE.get(key)
    if ast is None:
        ast = rt.sl.parse(label, text, rt.dialect)
        if len(_AST_CACHE) >= _AST_CACHE_MAX:
            _AST_CACHE.pop(next(iter(_AST_CACHE)))
        _AST_CACHE[key] = ast
    return ast


# ---- syntax header -------------------------------------------------------------------------------

def syntax_version(comment: str) -> str | None:
    """The ``v1`` of a stripped ``# syntax = v1`` line (``#\\s*syntax\\s*=\\s*(\\S*)\\s*``), else None.

    By hand: every file's header is checked, and compiling the expression cost more than this.
    """
    rest = comment[1:].lstrip() if comment.startswith("#") else ""
    if not rest.startswith("syntax"):
        return None
    rest = rest[6:].lstrip()
    if not rest.startswith("="):
        return None
    rest = rest[1:].lstrip().rstrip()
    return None if any(c.isspace() for c in rest) else rest


def _check_syntax_header(src: Source) -> None:
    for lineno, line in enumerate(src.text.split("\n"), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            return
        found = syntax_version(stripped)
        if found is None:
            continue
        version = found.lower()
        col = line.index("#") + 1
        if version == "v1":
            return
        if version == "v0":
            raise V0Syntax(
                "`# syntax=v0` is not supported: envd removed v0 in 1.0 and envbuild reads v1 only",
                src.label, lineno, col, line,
                hint=(
                    "migrate to v1 (" + MIGRATION_URL + "): "
                    'base(os="ubuntu22.04", language="python3") becomes base(image="ubuntu:22.04", dev=True) '
                    "plus install.conda() and install.python(); io.copy(host_path, envd_path) keeps working; "
                    "then write `# syntax=v1` or drop the line"
                ),
            )
        raise SyntaxError_(
            f"unknown syntax version {found!r}; envbuild understands `# syntax=v1` (the default)",
            src.label, lineno, col, line,
        )


# ---- Starlark error text -> EnvdError ------------------------------------------------------------

# Only errors need these: re compiles them on first use (and caches them), not at import.
_LOC = r"(?m)^\s*--> (.+?):(\d+):(\d+)"
_FRAME_FULL = r"(?m)^\s*\* (.+?):(\d+), in (\S+)"
_MSG = r"(?ms)^error: (.*?)(?=^\s*--> |\Z)"
_PY_PREFIX = r"^(?:[A-Za-z_]\w*(?:Error|Exception|Error_|Exceeded)): "

_SYNTAX_MARKERS = (
    "Parse error",
    "cannot be used outside `def`",
    "not allowed in this dialect",
    "must enable",
    "reserved keyword",
    "tabs are not allowed",
    "cannot be reassigned",
)
_TYPE_MARKERS = (
    "Missing parameter",
    "Found ",
    "Wrong number of",
    "not supported on type",
    "not supported for type",
    "not supported for types",
    "Type of parameter",
    "Expected type",
    "expected type",
    "Value of type",
    "Unexpected parameter",
)


def _source_line(rec: B.Recorder, file: str | None, line: int | None) -> str | None:
    if file is None or line is None:
        return None
    lines = rec.sources.get(file)
    if lines is None or not 0 < line <= len(lines):
        return None
    return lines[line - 1]


def _known_names(rec: B.Recorder, file: str | None) -> list[str]:
    names = [*B.UNIVERSE, *B.NAMESPACES, "print", "fail", "len", "range", "str", "int", "list", "dict",
             "struct", "sorted", "enumerate", "zip", "True", "False", "None", "type", "bool", "hasattr",
             "getattr", "any", "all", "min", "max", "reversed", "repr", "tuple", "abs", "hash", "dir"]
    lines = rec.sources.get(file or "", [])
    for ln in lines:
        m = re.match(r"(?:def\s+([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*=[^=])", ln)
        if m:
            names.append(m[1] or m[2])
        for lm in re.finditer(r"""load\([^)]*""", ln):
            names += re.findall(r"""["']([A-Za-z_]\w*)["']""", lm[0])
    return names


def _namespace_attrs(ns: str) -> list[str]:
    if ns == "data":
        return ["envd", "path"]
    return [q.split(".", 1)[1] for q in B.REGISTRY if q.startswith(ns + ".")]


def _rewrite(message: str, rec: B.Recorder, file: str | None, line: int | None, col: int | None) -> tuple[type[EnvdError], str, str | None]:
    """Classify a Starlark message and make it actionable (did-you-mean, shorter parse errors)."""
    hint: str | None = None
    m = re.match(r"Variable `([^`]+)` not found(?:, did you mean `([^`]+)`\?)?", message)
    if m:
        name, sugg = m[1], m[2]
        import difflib

        close = difflib.get_close_matches(name, sorted(set(_known_names(rec, file)) - {name}), n=1, cutoff=0.6)
        if close:
            sugg = close[0]
        if name in ("open", "exec", "eval", "import", "os", "input", "getenv", "environ", "time", "sys"):
            sugg = None
            hint = "build files are hermetic: they can only use envd's functions, not files or the environment"
        msg = f"`{name}` is not defined" + (f"; did you mean `{sugg}`?" if sugg else "")
        return NameError_, msg, hint
    m = re.match(r"Object of type `([^`]+)` has no attribute `([^`]+)`(?:, did you mean `([^`]+)`\?)?", message)
    if m:
        tname, attr, sugg = m[1], m[2], m[3]
        text = _source_line(rec, file, line)
        ns = None
        if text is not None and col is not None:
            nm = re.match(r"([A-Za-z_]\w*)(?:\.[A-Za-z_]\w*)*\.\s*" + re.escape(attr), text[col - 1 :])
            if nm:
                ns = nm[1]
        if ns in B.NAMESPACES and tname == "struct":
            import difflib

            close = difflib.get_close_matches(attr, _namespace_attrs(ns), n=1, cutoff=0.5)
            msg = f"`{ns}.{attr}` is not an envd function" + (f"; did you mean `{ns}.{close[0]}`?" if close else "")
            hint = f"{ns}.* has: {', '.join(sorted(_namespace_attrs(ns)))}"
            return NameError_, msg, hint
        msg = f"a value of type `{tname}` has no attribute `{attr}`" + (f"; did you mean `{sugg}`?" if sugg else "")
        return NameError_, msg, None
    if "serde::serialize" in message:
        tm = re.search(r"on type `([^`]+)`", message)
        what = tm[1] if tm else "this value"
        return (
            TypeError_,
            f"arguments of envd functions must be plain values (string, int, bool, list, dict, None), got a {what}",
            None,
        )
    if message.startswith("Starlark call stack overflow"):
        return LimitExceeded, "recursion too deep (the call stack limit was reached)", "look for a function that calls itself without end"
    if message.startswith("Evaluation cancelled"):
        return LimitExceeded, "evaluation took too long (time limit reached)", "look for a loop that never ends"
    if message.startswith("fail:"):
        return EvalError, message[len("fail:") :].strip(), None
    if any(k in message for k in _SYNTAX_MARKERS):
        msg = message
        pm = re.match(r"Parse error: (.*?), expected one of (.*)$", message, re.S)
        if pm and pm[2].count(",") > 4:
            msg = f"syntax error: {pm[1]}"
        elif message.startswith("Parse error: "):
            msg = "syntax error: " + message[len("Parse error: ") :]
        if "outside `def`" in message:
            hint = "envd files allow `if` and `for` only inside functions (def build(): ...)"
        elif "reserved keyword `while`" in message:
            hint = "`while` is not part of Starlark; use `for x in range(n):`"
        elif "f-strings" in message:
            msg = "f-strings are not supported in build files"
            hint = 'use "...{}".format(x) or "..." + str(x)'
        elif "tabs are not allowed" in message:
            hint = "indent with spaces"
        return SyntaxError_, msg, hint
    if any(k in message for k in _TYPE_MARKERS):
        return TypeError_, message, None
    return EvalError, message, None


def _compress_trace(entries: list[str], keep: int = 12) -> tuple[str, ...]:
    """Fold runs of the same frame (deep recursion) and keep the outermost and innermost frames."""
    out: list[str] = []
    i = 0
    while i < len(entries):
        j = i
        while j + 1 < len(entries) and entries[j + 1] == entries[i]:
            j += 1
        out.append(entries[i] + (f" (repeated {j - i + 1} times)" if j > i else ""))
        i = j + 1
    if len(out) > keep:
        out = [*out[: keep // 2], f"... {len(out) - keep} more ...", *out[-keep // 2 :]]
    return tuple(out)


def translate(text: str, rec: B.Recorder) -> EnvdError:
    """Turn a ``StarlarkError`` text into the right ``EnvdError`` with the user's position."""
    frames = [(f, int(ln), fn) for f, ln, fn in re.findall(_FRAME_FULL, text)]
    user_frames = [fr for fr in frames if fr[0] not in (B.PRELUDE_LABEL, "<envd>")]
    trace = _compress_trace([f"{f}:{ln}, in {fn}" for f, ln, fn in user_frames[:-1]])
    pending = rec.error
    if pending is not None:
        pending.trace = pending.trace or trace
        if pending.source_line is None:
            pending.source_line = _source_line(rec, pending.file, pending.line)
        return pending
    mm = re.search(_MSG, text)
    message = (mm[1] if mm else text).strip()
    message = re.sub(_PY_PREFIX, "", message, count=1)
    loc = re.search(_LOC, text)
    file, line, col = (loc[1], int(loc[2]), int(loc[3])) if loc else (None, None, None)
    if file == B.PRELUDE_LABEL:
        wrapper = next((fn for f, _, fn in reversed(frames) if f == B.PRELUDE_LABEL), "")
        qual = wrapper.replace("__", ".")
        if user_frames:
            uf, ul, _ = user_frames[-1]
            stack = f"  * {uf}:{ul}, in x\n"
            pos = B.call_pos(rec, stack, qual)
            file, line, col = (pos.file, pos.line, pos.col) if pos else (uf, ul, None)
        else:
            file, line, col = None, None, None
    cls, msg, hint = _rewrite(message, rec, file, line, col)
    return cls(msg, file, line, col, _source_line(rec, file, line), hint=hint, trace=trace)


# ---- one evaluation ------------------------------------------------------------------------------

_INCLUDE = r"""\binclude\s*\(\s*(?:git\s*=\s*)?(["'])([^"'\n]+)\1\s*\)"""  # compiled on first include
_TOP_NAME = r"(?m)^(?:def\s+([A-Za-z]\w*)\s*\(|([A-Za-z]\w*)\s*=(?!=))"


class _Session:
    def __init__(self, rt: _Runtime, rec: B.Recorder, loader: Loader, timeout: float, max_depth: int) -> None:
        self.rt = rt
        self.rec = rec
        self.loader = loader
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.options = rt.sl.EvalOptions(check_cancelled=self._cancelled, max_callstack_size=max_depth)
        self.frozen: dict[str, Any] = {}
        self.exports: dict[str, list[str]] = {}
        self.stack: list[str] = []

    def _cancelled(self) -> bool:
        return time.monotonic() > self.deadline

    def run(self, fn: Callable[[], Any]) -> Any:
        """Run Starlark, converting its errors into ``EnvdError`` (with positions)."""
        self.rec.error = None
        try:
            return fn()
        except EnvdError as e:
            if e.source_line is None:
                e.source_line = _source_line(self.rec, e.file, e.line)
            raise
        except self.rt.sl.StarlarkError as e:
            err = translate(str(e), self.rec)
            self.rec.error = None
            if isinstance(err, LimitExceeded) and "time" in err.message:
                err.message = f"evaluation took longer than {self.timeout:g}s (time limit reached)"
            raise err from None
        except BaseException as e:  # starlark-rust panics (e.g. a list too large) arrive as PanicException
            if type(e).__name__ != "PanicException":
                raise
            raise LimitExceeded(f"evaluation aborted: {str(e) or 'internal limit reached'}") from None

    def exec_source(self, src: Source) -> Any:
        sl, rt, rec = self.rt.sl, self.rt, self.rec
        _check_syntax_header(src)
        rec.sources[src.label] = src.text.split("\n")
        rec.source_files.append(S.SourceFile(src.label, src.sha256))
        m = sl.Module()
        m["_build_context_dir"] = str(self.loader.context_dir)
        sl.eval(m, rt.prelude_ast, rt.globals, rt.prelude_loader)
        unclosed = check_source(src.label, src.text)
        try:
            ast = _parse(rt, src.label, src.text)
        except sl.StarlarkError as e:
            err = translate(str(e), self.rec)
            if unclosed is not None and (err.line is None or (err.line, err.col) == (1, 1)):
                raise unclosed_error(src.label, src.text, unclosed) from None
            raise err from None
        if "include" in src.text:
            self._prepare_includes(m, src)
        sl.eval_with(self.options, m, ast, rt.globals, sl.FileLoader(lambda label: self._load(label, src)))
        if src.label in self.exports:
            self.exports[src.label] = [n for n in self.exports[src.label] if not _missing(m, n)]
        return m

    def _load(self, label: str, importer: Source, *, pos: S.Pos | None = None) -> Any:
        rec = self.rec
        try:
            t0 = time.monotonic()
            try:
                source = self.loader.resolve(label, importer)
            finally:
                self.deadline += time.monotonic() - t0
            key = source.label
            if key in self.frozen:
                return self.frozen[key]
            if key in self.stack:
                cycle = " -> ".join([*self.stack[self.stack.index(key):], key])
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
        except EnvdError as e:
            if e.file is None:
                e.at(pos or _load_pos(importer, label))
                e.source_line = _source_line(rec, e.file, e.line)
            rec.error = e
            raise

    def _prepare_includes(self, m: Any, src: Source) -> None:
        """Resolve ``include("URL")`` literals before the file runs, binding them as structs."""
        found: dict[str, S.Pos] = {}
        for i, line in enumerate(src.text.split("\n"), 1):
            for im in re.finditer(_INCLUDE, line):
                from .loader import split_git

                try:
                    key = split_git(im[2])
                except EnvdError as e:
                    raise e.at(S.Pos(src.label, i, im.start() + 1)) from None
                found.setdefault(key, S.Pos(src.label, i, im.start() + 1))
        if not found:
            return
        lines = [f'load("@envbuild", __include_key = "include")']
        entries = []
        for n, (key, pos) in enumerate(found.items()):
            try:
                t0 = time.monotonic()
                try:
                    sources = self.loader.include(key)
                finally:
                    self.deadline += time.monotonic() - t0
            except EnvdError as e:
                e.at(pos)
                e.source_line = _source_line(self.rec, pos.file, pos.line)
                raise
            fields = {}
            for s in sources:
                self.exports[s.label] = [a or b for a, b in re.findall(_TOP_NAME, s.text) if not (a or b).startswith("_")]
                self._load(s.label, src, pos=pos)
                names = self.exports[s.label]
                if names:
                    alias = ", ".join(f'__inc{n}_{k} = "{k}"' for k in names)
                    lines.append(f'load("{s.label}", {alias})')
                    for k in names:
                        fields[k] = f"__inc{n}_{k}"
            self.rec.includes[key] = key
            entries.append(f'"{key}": struct({", ".join(f"{k} = {v}" for k, v in fields.items())})')
        lines.append("__included = {" + ", ".join(entries) + "}")
        lines.append("def include(*args, **kwargs):")
        lines.append("    return __included[__include_key(*args, **kwargs)]")
        sl, rt = self.rt.sl, self.rt
        ast = sl.parse(B.PRELUDE_LABEL, "\n".join(lines) + "\n", rt.dialect)
        sl.eval(m, ast, rt.globals, sl.FileLoader(self._include_module))

    def _include_module(self, label: str) -> Any:
        return self.rt.prelude if label == "@envbuild" else self.frozen[label]


def _missing(m: Any, name: str) -> bool:
    try:
        return m[name] is None
    except Exception:
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
    from pathlib import Path

    return Path(user_config_path())


def split_target(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``dir``, ``dir/build.envd``, ``file.envd:func`` or ``:func`` -> (build file, function or None)."""
    from pathlib import Path

    file, func = split_target_text(os.fspath(path))
    return Path(file), func


def _clean(path: str) -> str:
    """``str(pathlib.PurePosixPath(path))`` without importing pathlib: what messages have always shown."""
    if not path:
        return "."
    root = "//" if path.startswith("//") and not path.startswith("///") else "/" if path.startswith("/") else ""
    return root + "/".join(p for p in path.split("/") if p and p != ".") or "."


def _parent(path: str) -> str:
    """``PurePosixPath(path).parent`` of a ``_clean`` path."""
    head = os.path.dirname(path)
    return head or "."


def _relative_to(path: str, root: str) -> str | None:
    """``path`` below ``root`` (both absolute and clean), like ``PurePosixPath.relative_to``; None if outside."""
    if path == root:
        return "."
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix):] if path.startswith(prefix) else None


def _home_label(path: str) -> str:
    rel = _relative_to(os.path.realpath(path), os.path.realpath(os.path.expanduser("~")))
    return path if rel is None else "~/" + rel


def evaluate(
    path: str | os.PathLike[str] = ".",
    *,
    function: str | None = None,
    user_config: str | os.PathLike[str] | None | Literal[False] = None,
    context_dir: str | os.PathLike[str] | None = None,
    git_cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    git_update_after: float = 3600.0,
    timeout: float = DEFAULT_TIMEOUT,
    max_call_depth: int = DEFAULT_MAX_CALL_DEPTH,
    on_print: Callable[[str], None] | None = None,
) -> S.Spec:
    """Evaluate a build file and return its ``Spec``.

    ``path`` is a directory (its ``build.envd``), a file, or ``file.envd:func``; ``function`` picks
    the function to call (default ``build``). ``user_config`` None reads
    ``~/.config/envbuild/config.envd`` if it exists, a path reads that file, False skips it.
    ``context_dir`` (default: the build file's directory) is the root for ``//`` labels and for
    every file the spec reads. ``print()`` output goes to ``on_print`` (default: stderr).
    Raises ``EnvdError`` subclasses for every mistake in the files; never a Python traceback.

    Example: ``python -c "import frontend; print(frontend.evaluate('examples/jupyter').to_json())"``
    """
    file_text, func_from_path = split_target_text(os.fspath(path))
    file = _clean(file_text)
    func = function or func_from_path or "build"
    if not is_function_name(func):
        raise NameError_(f"{func!r} is not a function name")
    if not os.path.isfile(file):
        raise LoadError(
            f"no build file at {file}"
            + (" (expected build.envd in that directory)" if os.path.basename(file) == DEFAULT_FILE else "")
        )
    ctx = os.path.realpath(_clean(os.fspath(context_dir)) if context_dir is not None else _parent(file))
    if not os.path.isdir(ctx):
        raise LoadError(f"build context {ctx} is not a directory")
    label = _relative_to(os.path.realpath(file), ctx)
    if label is None:
        raise LoadError(f"build file {file} is outside the build context {ctx}")
    rt = _runtime()
    rec = B.Recorder(context_dir=ctx, target=func, printer=on_print)
    git = GitCache(
        root=os.fspath(git_cache_dir) if git_cache_dir else os.path.join(cache_home(), "envbuild", "git"),
        offline=offline,
        update_after=git_update_after,
        warn=lambda msg: rec.warn(msg, None),
    )
    loader = Loader(ctx, git)
    session = _Session(rt, rec, loader, timeout, max_call_depth)
    token = B.current.set(rec)
    try:
        if user_config is not False:
            cfg = _clean(os.fspath(user_config) if user_config is not None else user_config_path())
            if os.path.isfile(cfg):
                cfg_label = _home_label(cfg)
                prefix = cfg_label.rsplit("/", 1)[0] + "/" if "/" in cfg_label else ""
                src = read_source(cfg, cfg_label, _parent(cfg), prefix)
                session.run(lambda: session.exec_source(src))
            elif user_config is not None:
                raise LoadError(f"user config {cfg} does not exist")
        main = read_source(os.path.realpath(file), label, ctx, "")
        session.stack.append(main.label)
        module = session.run(lambda: session.exec_source(main))
        call = _parse(rt, "<envd>", f"{func}()")
        try:
            session.run(lambda: rt.sl.eval_with(session.options, module, call, rt.globals))
        except EnvdError as e:
            if e.file is None or e.file == "<envd>":
                raise _target_error(e, func, main) from None
            raise
        try:
            return rec.finish()
        except EnvdError as e:
            if e.source_line is None:
                e.source_line = _source_line(rec, e.file, e.line)
            raise
    finally:
        B.current.reset(token)


def _binding_line(main: Source, name: str) -> int:
    """The line of the last top-level ``def name(`` or ``name =`` (what the call actually reached)."""
    found = [m.start() for m in re.finditer(rf"^(?:def\s+{re.escape(name)}\s*\(|{re.escape(name)}\s*=(?!=))", main.text, re.M)]
    return main.text.count("\n", 0, found[-1]) + 1 if found else 1


def _target_error(e: EnvdError, func: str, main: Source) -> EnvdError:
    defs = re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", main.text, re.M)
    if isinstance(e, NameError_) and f"`{func}` is not defined" in e.message:
        import difflib

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
