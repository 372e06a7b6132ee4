"""The envd v1 builtins: argument checking and recording into a ``Recorder``.

Each builtin is declared once with envd's parameter names, order and defaults. Starlark reaches it
through a generated prelude wrapper that passes ``call_stack()`` first, which is how the Python side
learns the call site (starlark-pyo3 gives callbacks no position). Calls only record; cross-call rules
(entrypoint vs dev, conda packages without conda, CUDA tags) are checked in ``Recorder.finish`` so
call order never matters.
"""

from __future__ import annotations

import os
import re
from _thread import _local

from . import spec as S
from ._record import field, record
from .errors import EnvdError, NameError_, TypeError_, ValueError_

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~4 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

PRELUDE_LABEL = "<envbuild>"
DATA_PREFIX = "~/.cache/envbuild/data/"
DATA_PATHS = {"huggingface": "~/.cache/huggingface", "dgl": "~/.dgl"}
SHELLS = ("bash", "zsh", "fish")

_REQUIRED: Any = object()
_UNSET: Any = object()


class _Current:
    """The recorder of the evaluation running on this thread (``ContextVar``'s get/set/reset, minus the import).

    Callbacks from Starlark get no context argument, so they find their recorder here.
    """

    __slots__ = ("_local",)

    def __init__(self) -> None:
        self._local = _local()

    def get(self, default: Any = _UNSET) -> Recorder:
        rec = getattr(self._local, "rec", None)
        if rec is None:
            if default is _UNSET:
                raise LookupError("no evaluation is running on this thread")
            return default  # type: ignore[no-any-return]
        return rec  # type: ignore[no-any-return]

    def set(self, rec: Recorder) -> Recorder | None:
        """Returns the token for ``reset``: the recorder this one replaces."""
        previous = getattr(self._local, "rec", None)
        self._local.rec = rec
        return previous

    def reset(self, token: Recorder | None) -> None:
        self._local.rec = token


current = _Current()


@record
class Param:
    name: str
    kind: str
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@record
class Builtin:
    qualname: str
    params: tuple[Param, ...]
    impl: Callable[..., Any]
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def ident(self) -> str:
        return self.qualname.replace(".", "__")

    def signature(self) -> str:
        parts = []
        for p in self.params:
            parts.append(p.name if p.required else f"{p.name}={_starlark_repr(p.default)}")
        return f"{self.qualname}({', '.join(parts)})"


REGISTRY: dict[str, Builtin] = {}


def builtin(qualname: str, *params: Param, aliases: dict[str, str] | None = None) -> Callable[..., Any]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY[qualname] = Builtin(qualname, params, fn, aliases or {})
        return fn

    return register


# ---- values and type checks ----------------------------------------------------------------------

def _starlark_repr(v: Any) -> str:
    if v is None:
        return "None"
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_starlark_repr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_starlark_repr(k)}: {_starlark_repr(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _type_name(v: Any) -> str:
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    return type(v).__name__


def _short(v: Any) -> str:
    r = _starlark_repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


_KIND_WORDS = {
    "str": "a string",
    "str?": "a string or None",
    "bool": "a bool (True or False)",
    "int": "an int",
    "list[str]": "a list of strings",
    "list[list[str]]": "a list of lists of strings",
    "dict[str,str]": "a dict of string to string",
}


def _check(b: Builtin, p: Param, v: Any) -> Any:
    kind = p.kind
    ok: bool
    if kind == "str":
        ok = isinstance(v, str)
    elif kind == "str?":
        ok = v is None or isinstance(v, str)
    elif kind == "bool":
        ok = isinstance(v, bool)
    elif kind == "int":
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind == "list[str]":
        ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
        if ok:
            return tuple(v)
    elif kind == "list[list[str]]":
        ok = isinstance(v, list) and all(isinstance(x, list) and all(isinstance(y, str) for y in x) for x in v)
        if ok:
            return tuple(tuple(x) for x in v)
    elif kind == "dict[str,str]":
        ok = isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())
    else:  # pragma: no cover
        raise AssertionError(kind)
    if not ok:
        hint = None
        if kind == "list[str]" and isinstance(v, str):
            hint = f"write {p.name}=[{_starlark_repr(v)}]"
        elif kind == "str" and isinstance(v, (int, float)) and not isinstance(v, bool):
            hint = f"write {p.name}=\"{v}\""
        raise TypeError_(
            f"{b.qualname}(): parameter '{p.name}' must be {_KIND_WORDS[kind]}, got {_type_name(v)} {_short(v)}",
            hint=hint,
        )
    return v


def _has_nul(v: Any) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, (list, tuple)):
        return any(_has_nul(x) for x in v)
    if isinstance(v, dict):
        return any(_has_nul(k) or _has_nul(x) for k, x in v.items())
    return False


def bind(b: Builtin, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Map a call's arguments onto the parameters, with messages that name the parameter."""
    params = b.params
    if len(args) > len(params):
        n = len(params)
        raise TypeError_(
            f"{b.qualname}() takes {'no' if n == 0 else f'at most {n}'} positional argument{'s' if n != 1 else ''} "
            f"but {len(args)} {'were' if len(args) != 1 else 'was'} given; signature: {b.signature()}"
        )
    values: dict[str, Any] = {p.name: a for p, a in zip(params, args)}
    names = {p.name for p in params}
    for key, v in kwargs.items():
        name = b.aliases.get(key, key)
        if name not in names:
            import difflib

            close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
            suggestion = f"; did you mean '{close[0]}'?" if close else ""
            raise NameError_(
                f"{b.qualname}() got an unexpected keyword argument '{key}'{suggestion}",
                hint=f"signature: {b.signature()}",
            )
        if name in values:
            raise TypeError_(f"{b.qualname}() got multiple values for argument '{name}'")
        values[name] = v
    out: dict[str, Any] = {}
    for p in params:
        if p.name in values:
            if _has_nul(values[p.name]):
                raise ValueError_(
                    f"{b.qualname}(): '{p.name}' contains a NUL character (\\x00); no command, path or variable can hold one"
                )
            out[p.name] = _check(b, p, values[p.name])
        elif p.required:
            raise TypeError_(
                f"{b.qualname}() missing required argument '{p.name}'", hint=f"signature: {b.signature()}"
            )
        else:
            out[p.name] = p.default
    return out


# ---- recording ---------------------------------------------------------------------------------------

class Recorder:
    """Mutable state of one evaluation; ``finish`` turns it into an immutable ``Spec``."""

    __slots__ = (
        "context_dir",
        "error",
        "extra_path",
        "includes",
        "inputs",
        "many",
        "printer",
        "single",
        "source_files",
        "sources",
        "target",
        "warnings",
    )

    def __init__(
        self, context_dir: str, target: str = "build", *, printer: Callable[[str], None] | None = None
    ) -> None:
        self.context_dir = context_dir
        self.target = target
        self.sources: dict[str, list[str]] = {}
        self.source_files: list[S.SourceFile] = []
        self.printer = printer
        self.error: EnvdError | None = None
        self.single: dict[str, Any] = {}
        self.many: dict[str, list[Any]] = {}
        self.inputs: list[str] = []
        self.warnings: list[S.Warning_] = []
        self.extra_path: list[str] = []
        self.includes: dict[str, str] = {}

    def add(self, key: str, value: Any) -> None:
        self.many.setdefault(key, []).append(value)

    def warn(self, message: str, pos: S.Pos | None) -> None:
        self.warnings.append(S.Warning_(message, pos))

    def input_path(self, qualname: str, param: str, value: str, *, must_exist: bool = True) -> str:
        """A context-relative path the build reads; refuses anything outside the context."""
        if not value:
            raise ValueError_(f"{qualname}(): '{param}' must not be empty")
        if os.path.isabs(value) or value.startswith("~"):
            raise ValueError_(
                f"{qualname}(): '{param}' must be a path relative to the build context, got {value!r}",
                hint="files outside the build context cannot be sent to the build",
            )
        norm = os.path.normpath(value).replace(os.sep, "/")
        if norm == ".." or norm.startswith("../"):
            raise ValueError_(f"{qualname}(): '{param}' {value!r} points outside the build context")
        full = os.path.join(self.context_dir, norm)
        if must_exist:
            if not os.path.lexists(full):
                raise ValueError_(
                    f"{qualname}(): {param} {value!r} not found in the build context {self.context_dir}"
                )
            real = os.path.realpath(full)
            root = os.path.realpath(self.context_dir)
            if real != root and not real.startswith(root + os.sep):
                raise ValueError_(f"{qualname}(): '{param}' {value!r} is a symlink that leaves the build context")
        if norm not in self.inputs:
            self.inputs.append(norm)
        return norm

    def finish(self) -> S.Spec:
        single, many = self.single, self.many
        base: S.Base = single.get("base", S.Base())
        cuda: S.Cuda | None = None
        if "cuda" in single:
            from . import cuda as cuda_table

            version, cudnn, pos = single["cuda"]
            try:
                img = cuda_table.resolve(version, cudnn, dev=base.dev, base_image=base.image)
            except cuda_table.CudaError as e:
                raise ValueError_(f"install.cuda(): {e}").at(pos) from None
            cuda = S.Cuda(img.version, img.cudnn, img.image, img.torch_index, pos)
            for w in img.warnings:
                self.warn(w, pos)
        entry: S.Entrypoint | None = single.get("entrypoint")
        if entry is not None and base.dev:
            raise ValueError_(
                "`config.entrypoint` is only for custom image, maybe you need `runtime.init`",
                hint="base(dev=True) images start the envbuild supervisor; use runtime.init or runtime.daemon",
            ).at(entry.pos)
        conda: S.Conda | None = single.get("conda")
        if conda is None and many.get("conda_packages"):
            raise ValueError_(
                "cannot install conda packages when conda is not installed",
                hint="add install.conda() (anywhere in the same function)",
            ).at(many["conda_packages"][0].pos)
        if conda is None and "conda_channel" in single:
            self.warn("config.conda_channel has no effect without install.conda()", single["conda_channel"].pos)
        if not base.dev:
            for key, what in (("vscode_extensions", "install.vscode_extensions"), ("git_config", "git_config")):
                item = many.get(key, [None])[0] if key in many else single.get(key)
                if item is not None:
                    self.warn(f"{what} only applies to dev images (base(dev=True)); ignored", item.pos)
        exposes: list[S.Expose] = many.get("exposes", [])
        seen: dict[int, S.Expose] = {}
        host_seen: dict[tuple[str, int], S.Expose] = {}
        for e in exposes:
            if e.envd_port in seen:
                raise ValueError_(
                    f"runtime.expose(): port {e.envd_port} is already exposed at {seen[e.envd_port].pos}"
                ).at(e.pos)
            seen[e.envd_port] = e
            if e.host_port:
                k = (e.listen_addr, e.host_port)
                if k in host_seen:
                    raise ValueError_(
                        f"runtime.expose(): host port {e.host_port} on {e.listen_addr} is already used at "
                        f"{host_seen[k].pos}"
                    ).at(e.pos)
                host_seen[k] = e
        jup: S.Jupyter | None = single.get("jupyter")
        if jup is not None and jup.port and ("127.0.0.1", jup.port) in host_seen:
            raise ValueError_(
                f"config.jupyter(): host port {jup.port} is also used by runtime.expose at "
                f"{host_seen[('127.0.0.1', jup.port)].pos}"
            ).at(jup.pos)
        runtime = S.Runtime(
            commands=tuple(many.get("commands", ())),
            daemons=tuple(many.get("daemons", ())),
            inits=tuple(many.get("inits", ())),
            exposes=tuple(exposes),
            environ=tuple(many.get("environ", ())),
            extra_path=tuple(self.extra_path),
            mounts=tuple(many.get("mounts", ())),
        )
        return S.Spec(
            target=self.target,
            base=base,
            shell=single.get("shell", S.Shell()),
            python=single.get("python"),
            conda=conda,
            uv=single.get("uv"),
            pixi=single.get("pixi"),
            cuda=cuda,
            r_lang=single.get("r_lang"),
            julia=single.get("julia"),
            rust=single.get("rust"),
            go=single.get("go"),
            nodejs=single.get("nodejs"),
            codex=single.get("codex"),
            apt_packages=tuple(many.get("apt_packages", ())),
            python_packages=tuple(many.get("python_packages", ())),
            conda_packages=tuple(many.get("conda_packages", ())),
            r_packages=tuple(many.get("r_packages", ())),
            julia_packages=tuple(many.get("julia_packages", ())),
            vscode_extensions=tuple(many.get("vscode_extensions", ())),
            pip_index=single.get("pip_index"),
            conda_channel=single.get("conda_channel"),
            apt_source=single.get("apt_source"),
            cran_mirror=single.get("cran_mirror"),
            julia_pkg_server=single.get("julia_pkg_server"),
            jupyter=jup,
            rstudio_server=single.get("rstudio_server"),
            gpu=single.get("gpu"),
            shm_size=single.get("shm_size"),
            entrypoint=entry,
            repo=single.get("repo"),
            owner=single.get("owner"),
            git_config=single.get("git_config"),
            runs=tuple(many.get("runs", ())),
            copies=tuple(many.get("copies", ())),
            http=tuple(many.get("http", ())),
            runtime=runtime,
            inputs=tuple(self.inputs),
            source_files=tuple(self.source_files),
            warnings=tuple(self.warnings),
        )


# ---- position of the call ------------------------------------------------------------------------

# The scans below run on every builtin call. They are written out by hand because compiling the
# equivalent regular expressions (``^\s*\* (.+?):(\d+), in `` and ``(?<![\w.])NAME\s*\(``) cost more
# than the scans; tests/frontend/test_frontend_matchers.py checks them against those expressions.

def stack_frames(stack: str) -> list[tuple[str, str]]:
    """``(file, line)`` of every ``  * file:line, in function`` entry of a ``call_stack()`` text."""
    frames: list[tuple[str, str]] = []
    for raw in stack.split("\n"):
        entry = raw.lstrip()
        if not entry.startswith("* "):
            continue
        body = entry[2:]
        colon = body.find(":", 1)
        while colon > 0:
            end = colon + 1
            while end < len(body) and body[end].isdecimal():
                end += 1
            if end > colon + 1 and body.startswith(", in ", end):
                frames.append((body[:colon], body[colon + 1 : end]))
                break
            colon = body.find(":", colon + 1)
    return frames


def find_call(text: str, callee: str, *, standalone: bool) -> int:
    """Index of the first ``callee(`` in ``text`` (spaces allowed before the bracket), or -1.

    ``standalone``: not preceded by a word character or a dot (``base(`` but not ``my_base(``).
    """
    i = text.find(callee)
    while i >= 0:
        if not (standalone and i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_.")):
            j = i + len(callee)
            while j < len(text) and text[j].isspace():
                j += 1
            if j < len(text) and text[j] == "(":
                return i
        i = text.find(callee, i + 1)
    return -1


def call_pos(rec: Recorder, stack: str, qualname: str) -> S.Pos | None:
    frames = stack_frames(stack)
    for file, line_s in reversed(frames):
        if file != PRELUDE_LABEL:
            break
    else:
        return None
    line = int(line_s)
    lines = rec.sources.get(file)
    col = 1
    if lines is not None and 0 < line <= len(lines):
        text = lines[line - 1]
        at = find_call(text, qualname, standalone=True)
        if at < 0 and "." in qualname:
            at = find_call(text, "." + qualname.rsplit(".", 1)[1], standalone=False)
            col = at + 2 if at >= 0 else len(text) - len(text.lstrip()) + 1
        else:
            col = at + 1 if at >= 0 else len(text) - len(text.lstrip()) + 1
    return S.Pos(file, line, col)


def make_callback(b: Builtin) -> Callable[..., Any]:
    """The Python callable behind one prelude wrapper; it records the error for exact positions."""

    def callback(__stack: str, /, *args: Any, **kwargs: Any) -> Any:
        rec = current.get()
        pos = call_pos(rec, __stack, b.qualname)
        try:
            values = bind(b, args, kwargs)
            return b.impl(rec, pos, **values)
        except EnvdError as e:
            if e.file is None:
                e.at(pos)
            rec.error = e
            raise
        except Exception as e:  # a bug in a builtin must still name the call that hit it
            err = EnvdError(f"{b.qualname}(): internal error: {type(e).__name__}: {e}").at(pos)
            rec.error = err
            raise err from e

    callback.__name__ = b.ident
    return callback


def prelude_source() -> str:
    """Starlark that groups the callbacks into envd's namespaces (``install.python`` ...)."""
    lines: list[str] = []
    namespaces: dict[str, list[str]] = {}
    for b in REGISTRY.values():
        lines.append(f"def {b.ident}(*args, **kwargs):")
        lines.append(f"    return __cb_{b.ident}(call_stack(), *args, **kwargs)")
        if "." in b.qualname:
            ns, attr = b.qualname.split(".", 1)
            namespaces.setdefault(ns, []).append(f"{attr} = {b.ident}")
    lines.append(
        "data = struct(envd = data__envd, path = struct("
        + ", ".join(f"{k} = {_starlark_repr(v)}" for k, v in DATA_PATHS.items())
        + "))"
    )
    for ns, attrs in namespaces.items():
        if ns != "data":
            lines.append(f"{ns} = struct({', '.join(attrs)})")
    return "\n".join(lines) + "\n"


UNIVERSE = ("base", "shell", "run", "git_config", "include")
NAMESPACES = ("install", "config", "runtime", "io", "data")


# ---- helpers for the builtins --------------------------------------------------------------------

def _nonempty(qualname: str, param: str, v: tuple[Any, ...] | str) -> None:
    if not v:
        raise ValueError_(f"{qualname}(): '{param}' must not be empty")


def _no_blank_items(qualname: str, param: str, items: tuple[str, ...]) -> None:
    for x in items:
        if not x.strip():
            raise ValueError_(f"{qualname}(): '{param}' contains an empty string")


def _port(qualname: str, param: str, v: int, *, allow_zero: bool) -> None:
    lo = 0 if allow_zero else 1
    if not lo <= v <= 65535:
        raise ValueError_(f"{qualname}(): '{param}' must be between {lo} and 65535, got {v}")


def _python_version(qualname: str, param: str, v: str) -> str:
    v = v.strip()
    if v in ("", "3"):
        return S.DEFAULT_PYTHON
    if v.startswith("2"):
        raise ValueError_(f"{qualname}(): Python 2 is not supported, got {param}={v!r}")
    if not is_python3_version(v):
        raise ValueError_(f"{qualname}(): '{param}' must be a Python 3 version like \"3.11\", got {v!r}")
    return v


# ---- universe ------------------------------------------------------------------------------------

def is_python3_version(v: str) -> bool:
    """``3\\.\\d+(\\.\\d+)?`` (by hand: install.python runs in almost every file)."""
    parts = v.split(".")
    return parts[0] == "3" and len(parts) in (2, 3) and all(p.isdecimal() for p in parts[1:])


_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def is_ref_component(s: str) -> bool:
    """``[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*``: one path component of an image name."""
    if not s or s[0] not in _LOWER_ALNUM or s[-1] not in _LOWER_ALNUM:
        return False
    sep = ""
    for c in s:
        if c in _LOWER_ALNUM:
            if sep and sep not in (".", "_", "__") and sep.strip("-"):
                return False
            sep = ""
        elif c in "._-":
            sep += c
        else:
            return False
    return True


def is_ref_tag(s: str) -> bool:
    """``\\w[\\w.-]{0,127}``: an image tag."""
    return 0 < len(s) <= 128 and (s[0].isalnum() or s[0] == "_") and all(c.isalnum() or c in "_.-" for c in s)


_REF_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}\Z"  # rare: compiled on first use
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_LABEL_CHARS = _ALNUM | {"-"}
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:")


def _is_port(s: str) -> bool:
    return bool(s) and all(c in "0123456789" for c in s)


def is_ref_domain(s: str) -> bool:
    """``(?:[A-Za-z0-9][A-Za-z0-9-]*(?:\\.[A-Za-z0-9][A-Za-z0-9-]*)*|\\[[0-9A-Fa-f:]+\\])(?::[0-9]+)?``:
    a registry host (by hand: every file with a registry in its base image checks one)."""
    if s.startswith("["):
        end = s.find("]")
        inner, rest = s[1:end], s[end + 1 :]
        if end < 0 or not inner or not all(c in _IPV6_CHARS for c in inner):
            return False
        return not rest or (rest[0] == ":" and _is_port(rest[1:]))
    host, colon, port = s.partition(":")
    if colon and not _is_port(port):
        return False
    return all(label and label[0] in _ALNUM and all(c in _LABEL_CHARS for c in label) for label in host.split("."))


def _image_ref(qualname: str, param: str, ref: str) -> None:
    """Docker's reference grammar, checked here so a bad name fails at its line, not in the compiler."""
    problem = "" if ref.strip() and not any(c.isspace() for c in ref) else "bad"
    name, _, digest = ref.partition("@")
    if digest and not re.match(_REF_DIGEST, digest):
        problem = "bad"
    if name.rfind(":") > name.rfind("/"):
        name, _, tag = name.rpartition(":")
        problem = problem or ("" if is_ref_tag(tag) else "bad")
    first, sep, rest = name.partition("/")
    path = rest if sep and ("." in first or ":" in first or first == "localhost") else name
    if path is rest and not is_ref_domain(first):
        problem = "bad"
    for component in path.split("/"):
        if not is_ref_component(component):
            problem = problem or ("lower" if component.lower() != component else "bad")
    if problem:
        raise ValueError_(
            f"{qualname}(): '{param}' must be an image reference like \"ubuntu:22.04\", got {ref!r}"
            + (" (repository names must be lowercase)" if problem == "lower" else "")
        )


@builtin("base", Param("image", "str", S.DEFAULT_BASE_IMAGE), Param("dev", "bool", False))
def _base(rec: Recorder, pos: S.Pos | None, image: str, dev: bool) -> None:
    _image_ref("base", "image", image)
    rec.single["base"] = S.Base(image, dev, pos)


@builtin("shell", Param("name", "str", S.DEFAULT_SHELL))
def _shell(rec: Recorder, pos: S.Pos | None, name: str) -> None:
    n = name.strip().lower()
    if n not in SHELLS:
        raise ValueError_(f"shell(): unsupported shell {name!r}; choose one of {', '.join(SHELLS)}")
    rec.single["shell"] = S.Shell(n, pos)


@builtin("run", Param("commands", "list[str]"), Param("mount_host", "bool", False))
def _run(rec: Recorder, pos: S.Pos | None, commands: tuple[str, ...], mount_host: bool) -> None:
    if not commands:
        rec.warn("run() with no commands does nothing", pos)
        return
    rec.add("runs", S.Run(commands, mount_host, pos))


@builtin("git_config", Param("name", "str?", ""), Param("email", "str?", ""), Param("editor", "str?", ""))
def _git_config(rec: Recorder, pos: S.Pos | None, name: str | None, email: str | None, editor: str | None) -> None:
    rec.single["git_config"] = S.GitConfig(name or "", email or "", editor or "", pos)


@builtin("include", Param("git", "str"))
def _include(rec: Recorder, pos: S.Pos | None, git: str) -> str:
    """Returns the key of an include resolved before the file ran (see evaluator._Session._prepare_includes)."""
    from .loader import split_git

    key = split_git(git)
    if key not in rec.includes:
        raise NameError_(
            f"include(): {git!r} was not prepared; include() needs the URL as a string literal, "
            'e.g. lib = include("https://github.com/tensorchord/envdlib")'
        )
    return key


# ---- install.* -----------------------------------------------------------------------------------

@builtin("install.python", Param("version", "str", S.DEFAULT_PYTHON))
def _python(rec: Recorder, pos: S.Pos | None, version: str) -> None:
    rec.single["python"] = S.Python(_python_version("install.python", "version", version), pos)


@builtin("install.conda", Param("use_mamba", "bool", False))
def _conda(rec: Recorder, pos: S.Pos | None, use_mamba: bool) -> None:
    rec.single["conda"] = S.Conda(use_mamba, pos)


@builtin("install.uv", Param("python_version", "str", S.DEFAULT_PYTHON))
def _uv(rec: Recorder, pos: S.Pos | None, python_version: str) -> None:
    rec.single["uv"] = S.Uv(_python_version("install.uv", "python_version", python_version), pos)


@builtin("install.pixi", Param("use_pixi_mirror", "bool", False), Param("pypi_index", "str?", None))
def _pixi(rec: Recorder, pos: S.Pos | None, use_pixi_mirror: bool, pypi_index: str | None) -> None:
    rec.single["pixi"] = S.Pixi(use_pixi_mirror, pypi_index or None, pos)


@builtin("install.r_lang")
def _r_lang(rec: Recorder, pos: S.Pos | None) -> None:
    rec.single["r_lang"] = S.RLang(pos)


@builtin("install.julia")
def _julia(rec: Recorder, pos: S.Pos | None) -> None:
    rec.single["julia"] = S.Julia(pos)


def _tool_version(qualname: str, v: str | None) -> str | None:
    if v is None or not v.strip():
        return None
    v = v.strip()
    if any(c.isspace() for c in v):
        raise ValueError_(f"{qualname}(): 'version' must not contain spaces, got {v!r}")
    return v


@builtin("install.rust", Param("version", "str?", None))
def _rust(rec: Recorder, pos: S.Pos | None, version: str | None) -> None:
    rec.single["rust"] = S.Rust(_tool_version("install.rust", version), pos)


@builtin("install.go", Param("version", "str?", None))
def _go(rec: Recorder, pos: S.Pos | None, version: str | None) -> None:
    rec.single["go"] = S.Go(_tool_version("install.go", version) or S.DEFAULT_GO, pos)


@builtin("install.nodejs", Param("version", "str?", None))
def _nodejs(rec: Recorder, pos: S.Pos | None, version: str | None) -> None:
    v = _tool_version("install.nodejs", version) or S.DEFAULT_NODEJS
    rec.single["nodejs"] = S.NodeJS(v.removeprefix("v"), pos)


@builtin("install.codex", Param("version", "str?", None))
def _codex(rec: Recorder, pos: S.Pos | None, version: str | None) -> None:
    rec.single["codex"] = S.Codex(_tool_version("install.codex", version), pos)


@builtin("install.apt_packages", Param("name", "list[str]", ()))
def _apt(rec: Recorder, pos: S.Pos | None, name: tuple[str, ...]) -> None:
    for n in name:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9+.:~_-]*(=[A-Za-z0-9+.:~_-]+)?(/[a-z0-9-]+)?", n):
            raise ValueError_(f"install.apt_packages(): {n!r} is not an apt package name")
    if name:
        rec.add("apt_packages", S.AptPackages(name, pos))


@builtin(
    "install.python_packages",
    Param("name", "list[str]", ()),
    Param("requirements", "str", ""),
    Param("local_wheels", "list[str]", ()),
)
def _pypi(
    rec: Recorder, pos: S.Pos | None, name: tuple[str, ...], requirements: str, local_wheels: tuple[str, ...]
) -> None:
    q = "install.python_packages"
    _no_blank_items(q, "name", name)
    req = rec.input_path(q, "requirements", requirements) if requirements else None
    wheels = tuple(rec.input_path(q, "local_wheels", w) for w in local_wheels)
    for w in wheels:
        if not w.endswith(".whl"):
            raise ValueError_(f"{q}(): local wheel {w!r} is not a .whl file")
    if name or req or wheels:
        rec.add("python_packages", S.PythonPackages(name, req, wheels, pos))


@builtin(
    "install.conda_packages",
    Param("name", "list[str]", ()),
    Param("channel", "list[str]", ()),
    Param("env_file", "str", ""),
)
def _conda_packages(
    rec: Recorder, pos: S.Pos | None, name: tuple[str, ...], channel: tuple[str, ...], env_file: str
) -> None:
    q = "install.conda_packages"
    if env_file and (name or channel):
        raise ValueError_(f"{q}(): env_file and name/channel are mutually exclusive")
    _no_blank_items(q, "name", name)
    _no_blank_items(q, "channel", channel)
    env = rec.input_path(q, "env_file", env_file) if env_file else None
    if name or env:
        rec.add("conda_packages", S.CondaPackages(name, channel, env, pos))


@builtin("install.r_packages", Param("name", "list[str]"))
def _r_packages(rec: Recorder, pos: S.Pos | None, name: tuple[str, ...]) -> None:
    _nonempty("install.r_packages", "name", name)
    _no_blank_items("install.r_packages", "name", name)
    rec.add("r_packages", S.RPackages(name, pos))


@builtin("install.julia_packages", Param("name", "list[str]"))
def _julia_packages(rec: Recorder, pos: S.Pos | None, name: tuple[str, ...]) -> None:
    _nonempty("install.julia_packages", "name", name)
    _no_blank_items("install.julia_packages", "name", name)
    rec.add("julia_packages", S.JuliaPackages(name, pos))


@builtin("install.cuda", Param("version", "str"), Param("cudnn", "str?", None))
def _cuda(rec: Recorder, pos: S.Pos | None, version: str, cudnn: str | None) -> None:
    from . import cuda as cuda_table

    try:
        cuda_table.resolve(version, cudnn, dev=False, base_image="ubuntu:" + cuda_table.DEFAULT_UBUNTU)
    except cuda_table.CudaError as e:
        if "Ubuntu" not in str(e):
            raise ValueError_(f"install.cuda(): {e}") from None
    rec.single["cuda"] = (version, cudnn, pos)


@builtin("install.vscode_extensions", Param("name", "list[str]"))
def _vscode(rec: Recorder, pos: S.Pos | None, name: tuple[str, ...]) -> None:
    for n in name:
        if not re.fullmatch(r"[A-Za-z0-9][\w-]*\.[A-Za-z0-9][\w.-]*", n):
            raise ValueError_(
                f"install.vscode_extensions(): {n!r} is not an extension id like \"ms-python.python\""
            )
    if name:
        rec.add("vscode_extensions", S.VSCodeExtensions(name, pos))


# ---- config.* ------------------------------------------------------------------------------------

@builtin("config.jupyter", Param("token", "str", ""), Param("port", "int", 0))
def _jupyter(rec: Recorder, pos: S.Pos | None, token: str, port: int) -> None:
    _port("config.jupyter", "port", port, allow_zero=True)
    rec.single["jupyter"] = S.Jupyter(token, port, pos)


@builtin("config.pip_index", Param("url", "str"), Param("extra_url", "str", ""), Param("trust", "bool", False))
def _pip_index(rec: Recorder, pos: S.Pos | None, url: str, extra_url: str, trust: bool) -> None:
    for name, u in (("url", url), ("extra_url", extra_url)):
        if (u or name == "url") and not re.match(r"https?://\S+$", u):
            raise ValueError_(f"config.pip_index(): '{name}' must be an http(s) URL, got {u!r}")
    rec.single["pip_index"] = S.PipIndex(url, extra_url, trust, pos)


@builtin("config.conda_channel", Param("channel", "str"))
def _conda_channel(rec: Recorder, pos: S.Pos | None, channel: str) -> None:
    rec.single["conda_channel"] = S.Text(channel, pos)


@builtin("config.apt_source", Param("source", "str"))
def _apt_source(rec: Recorder, pos: S.Pos | None, source: str) -> None:
    rec.single["apt_source"] = S.Text(source, pos)


@builtin("config.cran_mirror", Param("url", "str"))
def _cran(rec: Recorder, pos: S.Pos | None, url: str) -> None:
    if not re.match(r"https?://\S+$", url):
        raise ValueError_(f"config.cran_mirror(): 'url' must be an http(s) URL, got {url!r}")
    rec.single["cran_mirror"] = S.Url(url, pos)


@builtin("config.julia_pkg_server", Param("url", "str"))
def _julia_server(rec: Recorder, pos: S.Pos | None, url: str) -> None:
    if not re.match(r"https?://\S+$", url):
        raise ValueError_(f"config.julia_pkg_server(): 'url' must be an http(s) URL, got {url!r}")
    rec.single["julia_pkg_server"] = S.Url(url, pos)


@builtin("config.rstudio_server")
def _rstudio(rec: Recorder, pos: S.Pos | None) -> None:
    rec.single["rstudio_server"] = S.RStudioServer(pos)


@builtin("config.gpu", Param("count", "int"))
def _gpu(rec: Recorder, pos: S.Pos | None, count: int) -> None:
    if count < -1:
        raise ValueError_(f"config.gpu(): 'count' must be a number of GPUs (or -1 for all), got {count}")
    rec.single["gpu"] = S.Gpu(count, pos)


@builtin("config.shm_size", Param("size", "int"))
def _shm(rec: Recorder, pos: S.Pos | None, size: int) -> None:
    if size <= 0:
        raise ValueError_(f"config.shm_size(): 'size' is in MB and must be positive, got {size}")
    rec.single["shm_size"] = S.ShmSize(size, pos)


@builtin("config.entrypoint", Param("args", "list[str]"))
def _entrypoint(rec: Recorder, pos: S.Pos | None, args: tuple[str, ...]) -> None:
    _nonempty("config.entrypoint", "args", args)
    rec.single["entrypoint"] = S.Entrypoint(args, pos)


@builtin("config.repo", Param("url", "str"), Param("description", "str", ""))
def _repo(rec: Recorder, pos: S.Pos | None, url: str, description: str) -> None:
    _nonempty("config.repo", "url", url)
    rec.single["repo"] = S.Repo(url, description, pos)


@builtin("config.owner", Param("uid", "int"), Param("gid", "int"))
def _owner(rec: Recorder, pos: S.Pos | None, uid: int, gid: int) -> None:
    for name, v in (("uid", uid), ("gid", gid)):
        if not 0 <= v <= 65535:
            raise ValueError_(f"config.owner(): '{name}' must be between 0 and 65535, got {v}")
    rec.single["owner"] = S.Owner(uid, gid, pos)


# ---- runtime.* -----------------------------------------------------------------------------------

@builtin("runtime.command", Param("commands", "dict[str,str]", {}))
def _command(rec: Recorder, pos: S.Pos | None, commands: dict[str, str]) -> None:
    for name, cmd in commands.items():
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
            raise ValueError_(f"runtime.command(): command name {name!r} must be a simple word")
        if not cmd.strip():
            raise ValueError_(f"runtime.command(): command {name!r} is empty")
        rec.add("commands", S.Command(name, cmd, pos))


@builtin("runtime.daemon", Param("commands", "list[list[str]]"))
def _daemon(rec: Recorder, pos: S.Pos | None, commands: tuple[tuple[str, ...], ...]) -> None:
    for argv in commands:
        if not argv:
            raise ValueError_("runtime.daemon(): each daemon needs a non-empty argv list")
        rec.add("daemons", S.Daemon(argv, pos))


@builtin("runtime.init", Param("commands", "list[str]"))
def _init(rec: Recorder, pos: S.Pos | None, commands: tuple[str, ...]) -> None:
    if commands:
        rec.add("inits", S.Init(commands, pos))


@builtin(
    "runtime.expose",
    Param("envd_port", "int"),
    Param("host_port", "int", 0),
    Param("service", "str", ""),
    Param("listen_addr", "str", "127.0.0.1"),
)
def _expose(rec: Recorder, pos: S.Pos | None, envd_port: int, host_port: int, service: str, listen_addr: str) -> None:
    _port("runtime.expose", "envd_port", envd_port, allow_zero=False)
    _port("runtime.expose", "host_port", host_port, allow_zero=True)
    if not is_ip_address(listen_addr):
        raise ValueError_(f"runtime.expose(): 'listen_addr' must be an IP address, got {listen_addr!r}")
    if envd_port in (S.SSH_CONTAINER_PORT,):
        raise ValueError_(f"runtime.expose(): port {envd_port} is reserved for SSH in dev environments")
    rec.add("exposes", S.Expose(envd_port, host_port, service, listen_addr, pos))


def is_ip_address(text: str) -> bool:
    """What ``ipaddress.ip_address`` accepts; plain dotted IPv4 is checked without importing it (~2 ms)."""
    parts = text.split(".")
    if len(parts) == 4 and all(
        0 < len(p) <= 3 and all(c in "0123456789" for c in p) and (p == "0" or p[0] != "0") and int(p) <= 255
        for p in parts
    ):
        return True
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@builtin("runtime.environ", Param("env", "dict[str,str]", {}), Param("extra_path", "list[str]", ()))
def _environ(rec: Recorder, pos: S.Pos | None, env: dict[str, str], extra_path: tuple[str, ...]) -> None:
    for k, v in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ValueError_(f"runtime.environ(): {k!r} is not a valid environment variable name")
        if k == "PATH":
            raise ValueError_("runtime.environ(): set PATH entries with extra_path=[...]")
        rec.add("environ", S.EnvVar(k, v, pos))
    for p in extra_path:
        if ":" in p or not p:
            raise ValueError_(f"runtime.environ(): extra_path entry {p!r} must be one directory")
        rec.extra_path.append(p)


@builtin("runtime.mount", Param("host_path", "str"), Param("envd_path", "str"))
def _mount(rec: Recorder, pos: S.Pos | None, host_path: str, envd_path: str) -> None:
    _nonempty("runtime.mount", "host_path", host_path)
    if not (envd_path.startswith("/") or envd_path == "~" or envd_path.startswith("~/")):
        raise ValueError_(f"runtime.mount(): 'envd_path' must be absolute or start with ~/, got {envd_path!r}")
    rec.add("mounts", S.Mount(host_path, envd_path, host_path.startswith(DATA_PREFIX), pos))


# ---- io.* and data.* -----------------------------------------------------------------------------

@builtin(
    "io.copy",
    Param("source", "str"),
    Param("target", "str"),
    Param("image", "str?", ""),
    aliases={"host_path": "source", "envd_path": "target"},
)
def _copy(rec: Recorder, pos: S.Pos | None, source: str, target: str, image: str | None) -> None:
    _nonempty("io.copy", "target", target)
    if image:
        _nonempty("io.copy", "source", source)
        _image_ref("io.copy", "image", image)
        src = source
    else:
        src = rec.input_path("io.copy", "source", source)
    rec.add("copies", S.Copy(src, target, image or "", pos))


@builtin("io.http", Param("url", "str"), Param("checksum", "str?", ""), Param("filename", "str?", ""))
def _http(rec: Recorder, pos: S.Pos | None, url: str, checksum: str | None, filename: str | None) -> None:
    if not re.match(r"https?://\S+$", url):
        raise ValueError_(f"io.http(): 'url' must be an http(s) URL, got {url!r}")
    if checksum and not re.fullmatch(r"sha(256|384|512):[0-9a-f]+", checksum):
        raise ValueError_(f"io.http(): 'checksum' must be a digest like \"sha256:<hex>\", got {checksum!r}")
    if filename and ("/" in filename or filename in (".", "..")):
        raise ValueError_(f"io.http(): 'filename' must be a plain file name, got {filename!r}")
    rec.add("http", S.HttpDownload(url, checksum or "", filename or "", pos))


@builtin("data.envd", Param("name", "str"))
def _data_envd(rec: Recorder, pos: S.Pos | None, name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        raise ValueError_(f"data.envd(): {name!r} must be a simple name (letters, digits, '_', '.', '-')")
    return DATA_PREFIX + name
