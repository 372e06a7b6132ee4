"""The envd v1 builtins: parameters, argument checks and what each call records.

Each builtin is declared once with envd's parameter names, order and defaults (``@builtin``); the
prelude (``frontend.prelude``) exposes them to Starlark under envd's names. A call checks its
arguments and records into the ``Recorder``; rules spanning several calls wait for
``Recorder.finish``.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from . import pip
from . import spec as S
from .errors import NameError_, TypeError_, ValueError_
from .recorder import CudaRequest, Recorder

DATA_PREFIX = "~/.cache/envbuild/data/"
DATA_PATHS = {"huggingface": "~/.cache/huggingface", "dgl": "~/.dgl"}
SHELLS = ("bash", "zsh", "fish")
UNIVERSE = ("base", "shell", "run", "git_config", "include")
NAMESPACES = ("install", "config", "runtime", "io", "data")


class Kind(enum.Enum):
    """The Starlark value types a parameter accepts; the value is how messages name them."""

    STR = "a string"
    OPTIONAL_STR = "a string or None"
    BOOL = "a bool (True or False)"
    INT = "an int"
    STR_LIST = "a list of strings"
    STR_LIST_LIST = "a list of lists of strings"
    STR_DICT = "a dict of string to string"


class _Required:
    """The default of a parameter that has none."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: Kind
    default: object = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclass(frozen=True, slots=True)
class Builtin:
    qualname: str
    params: tuple[Param, ...]
    impl: Callable[..., object]
    aliases: dict[str, str] = field(default_factory=dict)

    @property
    def ident(self) -> str:
        """The Starlark identifier of the wrapper (``install.python`` -> ``install__python``)."""
        return self.qualname.replace(".", "__")

    def signature(self) -> str:
        parts = [p.name if p.required else f"{p.name}={starlark_repr(p.default)}" for p in self.params]
        return f"{self.qualname}({', '.join(parts)})"


REGISTRY: dict[str, Builtin] = {}


def builtin(
    qualname: str, *params: Param, aliases: dict[str, str] | None = None
) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """Register ``fn(rec, pos, **arguments)`` as the envd builtin ``qualname``."""

    def register(fn: Callable[..., object]) -> Callable[..., object]:
        REGISTRY[qualname] = Builtin(qualname, params, fn, aliases or {})
        return fn

    return register


# ---- values and type checks ----------------------------------------------------------------------


def starlark_repr(v: object) -> str:
    """A value as Starlark source would write it (for messages, signatures and ``print``)."""
    if v is None:
        return "None"
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(starlark_repr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{starlark_repr(k)}: {starlark_repr(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _type_name(v: object) -> str:
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    return type(v).__name__


def _short(v: object) -> str:
    r = starlark_repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _is_str_list(v: object) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _convert(kind: Kind, v: object) -> tuple[bool, object]:
    """(whether ``v`` has the kind, the value as recorded: lists become tuples)."""
    match kind:
        case Kind.STR:
            return isinstance(v, str), v
        case Kind.OPTIONAL_STR:
            return v is None or isinstance(v, str), v
        case Kind.BOOL:
            return isinstance(v, bool), v
        case Kind.INT:
            return isinstance(v, int) and not isinstance(v, bool), v
        case Kind.STR_LIST:
            ok = _is_str_list(v)
            return ok, tuple(v) if ok else v  # type: ignore[arg-type]
        case Kind.STR_LIST_LIST:
            ok = isinstance(v, list) and all(_is_str_list(x) for x in v)
            return ok, tuple(tuple(x) for x in v) if ok else v  # type: ignore[attr-defined]
        case Kind.STR_DICT:
            return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()), v


def _check(b: Builtin, p: Param, v: object) -> object:
    ok, value = _convert(p.kind, v)
    if ok:
        return value
    hint = None
    if p.kind is Kind.STR_LIST and isinstance(v, str):
        hint = f"write {p.name}=[{starlark_repr(v)}]"
    elif p.kind is Kind.STR and isinstance(v, (int, float)) and not isinstance(v, bool):
        hint = f'write {p.name}="{v}"'
    raise TypeError_(
        f"{b.qualname}(): parameter '{p.name}' must be {p.kind.value}, got {_type_name(v)} {_short(v)}",
        hint=hint,
    )


def _has_nul(v: object) -> bool:
    if isinstance(v, str):
        return "\x00" in v
    if isinstance(v, (list, tuple)):
        return any(_has_nul(x) for x in v)
    if isinstance(v, dict):
        return any(_has_nul(k) or _has_nul(x) for k, x in v.items())
    return False


def bind(b: Builtin, args: tuple[object, ...], kwargs: dict[str, object]) -> dict[str, object]:
    """Map a call's arguments onto the parameters, with messages that name the parameter."""
    params = b.params
    if len(args) > len(params):
        n = len(params)
        raise TypeError_(
            f"{b.qualname}() takes {'no' if n == 0 else f'at most {n}'} positional argument{'s' if n != 1 else ''} "
            f"but {len(args)} {'were' if len(args) != 1 else 'was'} given; signature: {b.signature()}"
        )
    values: dict[str, object] = {p.name: a for p, a in zip(params, args, strict=False)}
    names = {p.name for p in params}
    for key, v in kwargs.items():
        name = b.aliases.get(key, key)
        if name not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.6)
            suggestion = f"; did you mean '{close[0]}'?" if close else ""
            raise NameError_(
                f"{b.qualname}() got an unexpected keyword argument '{key}'{suggestion}",
                hint=f"signature: {b.signature()}",
            )
        if name in values:
            raise TypeError_(f"{b.qualname}() got multiple values for argument '{name}'")
        values[name] = v
    out: dict[str, object] = {}
    for p in params:
        if p.name in values:
            if _has_nul(values[p.name]):
                raise ValueError_(
                    f"{b.qualname}(): '{p.name}' contains a NUL character (\\x00); "
                    "no command, path or variable can hold one"
                )
            out[p.name] = _check(b, p, values[p.name])
        elif p.required:
            raise TypeError_(f"{b.qualname}() missing required argument '{p.name}'", hint=f"signature: {b.signature()}")
        else:
            out[p.name] = p.default
    return out


# ---- value rules ---------------------------------------------------------------------------------


def _nonempty(qualname: str, param: str, v: tuple[object, ...] | str) -> None:
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


_PYTHON3_VERSION = re.compile(r"3\.\d+(\.\d+)?")


def _python_version(qualname: str, param: str, v: str) -> str:
    v = v.strip()
    if v in ("", "3"):
        return S.DEFAULT_PYTHON
    if v.startswith("2"):
        raise ValueError_(f"{qualname}(): Python 2 is not supported, got {param}={v!r}")
    if not _PYTHON3_VERSION.fullmatch(v):
        raise ValueError_(f"{qualname}(): '{param}' must be a Python 3 version like \"3.11\", got {v!r}")
    return v


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters other than tab."""


def _one_line(qualname: str, param: str, value: str) -> None:
    """Settings written into a config file or an argv line: a newline or another control
    character can only break the file (or add lines to it)."""
    if _CONTROL.search(value):
        raise ValueError_(f"{qualname}(): '{param}' must be one line without control characters, got {value!r}")


_TOOL_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _tool_version(qualname: str, v: str | None) -> str | None:
    """A release name (``1.22.1``, ``v20.1.0``, ``rust-v0.98.0``); it lands in URLs and shell words."""
    if v is None or not v.strip():
        return None
    v = v.strip()
    if not _TOOL_VERSION.fullmatch(v):
        raise ValueError_(
            f"{qualname}(): 'version' must be a release name (letters, digits, '.', '_', '+', '-'), got {v!r}"
        )
    return v


_HTTP_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f\"'<>\\^`{|}]+")
"""An http(s) URL without whitespace, control characters or quotes (it is written into config files)."""


def _http_url(qualname: str, param: str, url: str) -> None:
    if not _HTTP_URL.fullmatch(url):
        raise ValueError_(f"{qualname}(): '{param}' must be an http(s) URL, got {url!r}")


# Docker's reference grammar (distribution/reference), one expression per part. The first path
# component is a registry host only if it looks like one (a dot, a port or "localhost").
_REF_DOMAIN = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9][A-Za-z0-9-]*)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_REF_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_REF_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_REF_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


def _image_ref(qualname: str, param: str, ref: str) -> None:
    """A bad image name fails at its line, not in the compiler."""
    problem = "" if ref.strip() and not any(c.isspace() for c in ref) else "bad"
    name, _, digest = ref.partition("@")
    if digest and not _REF_DIGEST.fullmatch(digest):
        problem = "bad"
    if name.rfind(":") > name.rfind("/"):
        name, _, tag = name.rpartition(":")
        problem = problem or ("" if _REF_TAG.fullmatch(tag) else "bad")
    first, sep, rest = name.partition("/")
    has_domain = bool(sep) and ("." in first or ":" in first or first == "localhost")
    if has_domain and not _REF_DOMAIN.fullmatch(first):
        problem = "bad"
    for component in (rest if has_domain else name).split("/"):
        if not _REF_COMPONENT.fullmatch(component):
            problem = problem or ("lower" if component.lower() != component else "bad")
    if problem:
        raise ValueError_(
            f"{qualname}(): '{param}' must be an image reference like \"ubuntu:22.04\", got {ref!r}"
            + (" (repository names must be lowercase)" if problem == "lower" else "")
        )


def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ---- universe ------------------------------------------------------------------------------------


@builtin("base", Param("image", Kind.OPTIONAL_STR, None), Param("dev", Kind.BOOL, False))
def _base(rec: Recorder, pos: S.Pos | None, image: str | None, dev: bool) -> None:
    """``image`` None: envd's default, ``ubuntu:22.04`` (``install.cuda`` may pick another Ubuntu)."""
    if image is not None:
        _image_ref("base", "image", image)
    rec.warn_if_repeated("base()", rec.base, pos)
    rec.base = S.Base(image or S.DEFAULT_BASE_IMAGE, dev, pos)
    rec.base_image_named = image is not None


@builtin("shell", Param("name", Kind.STR, S.DEFAULT_SHELL))
def _shell(rec: Recorder, pos: S.Pos | None, name: str) -> None:
    n = name.strip().lower()
    if n not in SHELLS:
        raise ValueError_(f"shell(): unsupported shell {name!r}; choose one of {', '.join(SHELLS)}")
    rec.shell = S.Shell(n, pos)


@builtin("run", Param("commands", Kind.STR_LIST), Param("mount_host", Kind.BOOL, False))
def _run(rec: Recorder, pos: S.Pos | None, commands: tuple[str, ...], mount_host: bool) -> None:
    if not commands:
        rec.warn("run() with no commands does nothing", pos)
        return
    rec.runs.append(S.Run(commands, mount_host, pos))


@builtin(
    "git_config",
    Param("name", Kind.OPTIONAL_STR, ""),
    Param("email", Kind.OPTIONAL_STR, ""),
    Param("editor", Kind.OPTIONAL_STR, ""),
)
def _git_config(rec: Recorder, pos: S.Pos | None, name: str | None, email: str | None, editor: str | None) -> None:
    for param, value in (("name", name), ("email", email), ("editor", editor)):
        _one_line("git_config", param, value or "")
    rec.git_config = S.GitConfig(name or "", email or "", editor or "", pos)


@builtin("include", Param("git", Kind.STR))
def _include(rec: Recorder, pos: S.Pos | None, git: str) -> str:
    """The key of an include resolved before the file ran (``evaluator.Session.prepare_includes``)."""
    from .loader import split_git

    key = split_git(git)
    if key not in rec.includes:
        raise NameError_(
            f"include(): {git!r} was not prepared; include() needs the URL as a string literal, "
            'e.g. lib = include("https://github.com/tensorchord/envdlib")'
        )
    return key


# ---- install.* -----------------------------------------------------------------------------------


@builtin("install.python", Param("version", Kind.STR, S.DEFAULT_PYTHON))
def _python(rec: Recorder, pos: S.Pos | None, version: str) -> None:
    rec.warn_if_repeated("install.python()", rec.python, pos)
    rec.python = S.Python(_python_version("install.python", "version", version), pos)


@builtin("install.conda", Param("use_mamba", Kind.BOOL, False))
def _conda(rec: Recorder, pos: S.Pos | None, use_mamba: bool) -> None:
    rec.conda = S.Conda(use_mamba, pos)


@builtin("install.uv", Param("python_version", Kind.STR, S.DEFAULT_PYTHON))
def _uv(rec: Recorder, pos: S.Pos | None, python_version: str) -> None:
    rec.uv = S.Uv(_python_version("install.uv", "python_version", python_version), pos)


@builtin("install.pixi", Param("use_pixi_mirror", Kind.BOOL, False), Param("pypi_index", Kind.OPTIONAL_STR, None))
def _pixi(rec: Recorder, pos: S.Pos | None, use_pixi_mirror: bool, pypi_index: str | None) -> None:
    if pypi_index:
        _http_url("install.pixi", "pypi_index", pypi_index)
    rec.pixi = S.Pixi(use_pixi_mirror, pypi_index or None, pos)


@builtin("install.r_lang")
def _r_lang(rec: Recorder, pos: S.Pos | None) -> None:
    rec.r_lang = S.RLang(pos)


@builtin("install.julia")
def _julia(rec: Recorder, pos: S.Pos | None) -> None:
    rec.julia = S.Julia(pos)


@builtin("install.rust", Param("version", Kind.OPTIONAL_STR, None))
def _rust(rec: Recorder, pos: S.Pos | None, version: str | None) -> None:
    rec.rust = S.Rust(_tool_version("install.rust", version), pos)


@builtin("install.go", Param("version", Kind.OPTIONAL_STR, None))
def _go(rec: Recorder, pos: S.Pos | None, version: str | None) -> None:
    rec.go = S.Go(_tool_version("install.go", version) or S.DEFAULT_GO, pos)


@builtin("install.nodejs", Param("version", Kind.OPTIONAL_STR, None))
def _nodejs(rec: Recorder, pos: S.Pos | None, version: str | None) -> None:
    v = _tool_version("install.nodejs", version) or S.DEFAULT_NODEJS
    rec.nodejs = S.NodeJS(v.removeprefix("v"), pos)


@builtin("install.codex", Param("version", Kind.OPTIONAL_STR, None))
def _codex(rec: Recorder, pos: S.Pos | None, version: str | None) -> None:
    rec.codex = S.Codex(_tool_version("install.codex", version), pos)


_APT_PACKAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9+.:~_-]*(=[A-Za-z0-9+.:~_-]+)?(/[a-z0-9-]+)?")


@builtin("install.apt_packages", Param("name", Kind.STR_LIST, ()))
def _apt(rec: Recorder, pos: S.Pos | None, name: tuple[str, ...]) -> None:
    for n in name:
        if not _APT_PACKAGE.fullmatch(n):
            raise ValueError_(f"install.apt_packages(): {n!r} is not an apt package name")
    if name:
        rec.apt_packages.append(S.AptPackages(name, pos))


@builtin(
    "install.python_packages",
    Param("name", Kind.STR_LIST, ()),
    Param("requirements", Kind.STR, ""),
    Param("local_wheels", Kind.STR_LIST, ()),
)
def _pypi(
    rec: Recorder, pos: S.Pos | None, name: tuple[str, ...], requirements: str, local_wheels: tuple[str, ...]
) -> None:
    q = "install.python_packages"
    _no_blank_items(q, "name", name)
    names, options = pip.parse(name)
    req = rec.input_path(q, "requirements", requirements) if requirements else None
    wheels = tuple(rec.input_path(q, "local_wheels", w) for w in local_wheels)
    for w in wheels:
        if not w.endswith(".whl"):
            raise ValueError_(f"{q}(): local wheel {w!r} is not a .whl file")
    files, from_files = _requirements_files(rec, q, req) if req else ((), S.PipOptions())
    options = replace(
        options,
        pre=options.pre or from_files.pre,
        trusted_hosts=tuple(dict.fromkeys((*options.trusted_hosts, *from_files.trusted_hosts))),
    )
    if names or req or wheels:
        rec.python_packages.append(S.PythonPackages(names, req, wheels, pos, options, files))


def _requirements_files(rec: Recorder, q: str, path: str) -> tuple[tuple[S.RequirementsFile, ...], S.PipOptions]:
    """The requirements file and those it names with ``-r``/``-c`` (each an input of the build, inside
    the context), with the lines uv reads differently from pip (`pip.requirements_edits`), and the
    options in them that uv takes from its command line only (`pip.command_line_options`)."""
    files: dict[str, S.RequirementsFile] = {}
    pre = False
    hosts: list[str] = []
    todo = [path]
    while todo:
        current = todo.pop(0)
        if current in files:
            continue
        text = rec.input_text(q, current)
        edits: tuple[S.LineEdit, ...] = ()
        if text is not None:
            edits, notes = pip.requirements_edits(text, current)
            rec.notes.extend(notes)
            from_file, notes = pip.command_line_options(text, current)
            rec.notes.extend(notes)
            pre, hosts = pre or from_file.pre, [*hosts, *from_file.trusted_hosts]
            for name in pip.nested_files(text):
                nested = posixpath.normpath(posixpath.join(posixpath.dirname(current), name))
                todo.append(rec.input_path(q, f"-r in {current}", nested))
        files[current] = S.RequirementsFile(current, edits)
    return tuple(files.values()), S.PipOptions(pre=pre, trusted_hosts=tuple(dict.fromkeys(hosts)))


@builtin(
    "install.conda_packages",
    Param("name", Kind.STR_LIST, ()),
    Param("channel", Kind.STR_LIST, ()),
    Param("env_file", Kind.STR, ""),
)
def _conda_packages(
    rec: Recorder, pos: S.Pos | None, name: tuple[str, ...], channel: tuple[str, ...], env_file: str
) -> None:
    q = "install.conda_packages"
    if env_file and (name or channel):
        raise ValueError_(f"{q}(): env_file and name/channel are mutually exclusive")
    for param, items in (("name", name), ("channel", channel)):
        _no_blank_items(q, param, items)
        for item in items:
            _one_line(q, param, item)
            if item.startswith("-"):
                raise ValueError_(
                    f"{q}(): {param} {item!r} begins with '-': conda would read it as an option",
                    hint="conda options cannot be passed here; name packages and channels only",
                )
    env = rec.input_path(q, "env_file", env_file) if env_file else None
    if name or env:
        rec.conda_packages.append(S.CondaPackages(name, channel, env, pos))


_R_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9.]*")


@builtin("install.r_packages", Param("name", Kind.STR_LIST))
def _r_packages(rec: Recorder, pos: S.Pos | None, name: tuple[str, ...]) -> None:
    _nonempty("install.r_packages", "name", name)
    for n in name:
        if not _R_PACKAGE.fullmatch(n):
            raise ValueError_(f"install.r_packages(): {n!r} is not an R package name (letters, digits and '.')")
    rec.r_packages.append(S.RPackages(name, pos))


_JULIA_PACKAGE = re.compile(r"[^\s\x00-\x1f\x7f\"'\\$]+")
"""A package name or URL for ``Pkg.add``: it is written into a Julia string literal."""


@builtin("install.julia_packages", Param("name", Kind.STR_LIST))
def _julia_packages(rec: Recorder, pos: S.Pos | None, name: tuple[str, ...]) -> None:
    _nonempty("install.julia_packages", "name", name)
    for n in name:
        if not _JULIA_PACKAGE.fullmatch(n):
            raise ValueError_(
                f"install.julia_packages(): {n!r} is not a Julia package name or URL "
                "(no spaces, quotes, backslashes or '$')"
            )
    rec.julia_packages.append(S.JuliaPackages(name, pos))


@builtin("install.cuda", Param("version", Kind.STR), Param("cudnn", Kind.OPTIONAL_STR, None))
def _cuda(rec: Recorder, pos: S.Pos | None, version: str, cudnn: str | None) -> None:
    from . import cuda as cuda_table

    try:
        cuda_table.check_pair(version, cudnn)
    except cuda_table.CudaError as e:
        raise ValueError_(f"install.cuda(): {e}") from None
    rec.cuda = CudaRequest(version, cudnn, pos)


_VSCODE_EXTENSION = re.compile(r"[A-Za-z0-9][\w-]*\.[A-Za-z0-9][\w.-]*")


@builtin("install.vscode_extensions", Param("name", Kind.STR_LIST))
def _vscode(rec: Recorder, pos: S.Pos | None, name: tuple[str, ...]) -> None:
    for n in name:
        if not _VSCODE_EXTENSION.fullmatch(n):
            raise ValueError_(f'install.vscode_extensions(): {n!r} is not an extension id like "ms-python.python"')
    if name:
        rec.vscode_extensions.append(S.VSCodeExtensions(name, pos))


# ---- config.* ------------------------------------------------------------------------------------


@builtin("config.jupyter", Param("token", Kind.STR, ""), Param("port", Kind.INT, 0))
def _jupyter(rec: Recorder, pos: S.Pos | None, token: str, port: int) -> None:
    _port("config.jupyter", "port", port, allow_zero=True)
    rec.warn_if_repeated("config.jupyter()", rec.jupyter, pos)
    if token and (_CONTROL.search(token) or any(c.isspace() for c in token)):
        raise ValueError_("config.jupyter(): 'token' must be one word without spaces or control characters")
    rec.jupyter = S.Jupyter(token, port, pos)


@builtin(
    "config.pip_index",
    Param("url", Kind.STR),
    Param("extra_url", Kind.STR, ""),
    Param("trust", Kind.BOOL, False),
)
def _pip_index(rec: Recorder, pos: S.Pos | None, url: str, extra_url: str, trust: bool) -> None:
    _http_url("config.pip_index", "url", url)
    if extra_url:
        _http_url("config.pip_index", "extra_url", extra_url)
    rec.pip_index = S.PipIndex(url, extra_url, trust, pos)


@builtin("config.conda_channel", Param("channel", Kind.STR))
def _conda_channel(rec: Recorder, pos: S.Pos | None, channel: str) -> None:
    rec.conda_channel = S.Text(channel, pos)


@builtin("config.apt_source", Param("source", Kind.STR))
def _apt_source(rec: Recorder, pos: S.Pos | None, source: str) -> None:
    rec.apt_source = S.Text(source, pos)


@builtin("config.cran_mirror", Param("url", Kind.STR))
def _cran(rec: Recorder, pos: S.Pos | None, url: str) -> None:
    _http_url("config.cran_mirror", "url", url)
    rec.cran_mirror = S.Url(url, pos)


@builtin("config.julia_pkg_server", Param("url", Kind.STR))
def _julia_server(rec: Recorder, pos: S.Pos | None, url: str) -> None:
    _http_url("config.julia_pkg_server", "url", url)
    rec.julia_pkg_server = S.Url(url, pos)


@builtin("config.rstudio_server")
def _rstudio(rec: Recorder, pos: S.Pos | None) -> None:
    rec.rstudio_server = S.RStudioServer(pos)


@builtin("config.gpu", Param("count", Kind.INT))
def _gpu(rec: Recorder, pos: S.Pos | None, count: int) -> None:
    if count < -1:
        raise ValueError_(f"config.gpu(): 'count' must be a number of GPUs (or -1 for all), got {count}")
    rec.gpu = S.Gpu(count, pos)


@builtin("config.shm_size", Param("size", Kind.INT))
def _shm(rec: Recorder, pos: S.Pos | None, size: int) -> None:
    if size <= 0:
        raise ValueError_(f"config.shm_size(): 'size' is in MB and must be positive, got {size}")
    rec.shm_size = S.ShmSize(size, pos)


@builtin("config.entrypoint", Param("args", Kind.STR_LIST))
def _entrypoint(rec: Recorder, pos: S.Pos | None, args: tuple[str, ...]) -> None:
    _nonempty("config.entrypoint", "args", args)
    earlier = rec.entrypoint  # envd appends each call's args to the entrypoint
    rec.entrypoint = S.Entrypoint((*earlier.args, *args), earlier.pos) if earlier else S.Entrypoint(args, pos)


@builtin("config.repo", Param("url", Kind.STR), Param("description", Kind.STR, ""))
def _repo(rec: Recorder, pos: S.Pos | None, url: str, description: str) -> None:
    _nonempty("config.repo", "url", url)
    _one_line("config.repo", "url", url)
    _one_line("config.repo", "description", description)
    rec.repo = S.Repo(url, description, pos)


@builtin("config.owner", Param("uid", Kind.INT), Param("gid", Kind.INT))
def _owner(rec: Recorder, pos: S.Pos | None, uid: int, gid: int) -> None:
    for name, v in (("uid", uid), ("gid", gid)):
        if not 0 <= v <= 65535:
            raise ValueError_(f"config.owner(): '{name}' must be between 0 and 65535, got {v}")
    rec.owner = S.Owner(uid, gid, pos)


# ---- runtime.* -----------------------------------------------------------------------------------


@builtin("runtime.command", Param("commands", Kind.STR_DICT, {}))
def _command(rec: Recorder, pos: S.Pos | None, commands: dict[str, str]) -> None:
    """Names are free-form, as in envd (its own tests use "go version"): whatever ``exec --command`` gets."""
    for name, cmd in commands.items():
        if not name.strip():
            raise ValueError_("runtime.command(): a command name must not be empty")
        _one_line("runtime.command", "name", name)
        if not cmd.strip():
            raise ValueError_(f"runtime.command(): command {name!r} is empty")
        rec.commands.append(S.Command(name, cmd, pos))


@builtin("runtime.daemon", Param("commands", Kind.STR_LIST_LIST))
def _daemon(rec: Recorder, pos: S.Pos | None, commands: tuple[tuple[str, ...], ...]) -> None:
    for argv in commands:
        if not argv:
            raise ValueError_("runtime.daemon(): each daemon needs a non-empty argv list")
        for arg in argv:
            _one_line("runtime.daemon", "commands", arg)
        rec.daemons.append(S.Daemon(argv, pos))


@builtin("runtime.init", Param("commands", Kind.STR_LIST))
def _init(rec: Recorder, pos: S.Pos | None, commands: tuple[str, ...]) -> None:
    if commands:
        rec.inits.append(S.Init(commands, pos))


@builtin(
    "runtime.expose",
    Param("envd_port", Kind.INT),
    Param("host_port", Kind.INT, 0),
    Param("service", Kind.STR, ""),
    Param("listen_addr", Kind.STR, "127.0.0.1"),
)
def _expose(rec: Recorder, pos: S.Pos | None, envd_port: int, host_port: int, service: str, listen_addr: str) -> None:
    _port("runtime.expose", "envd_port", envd_port, allow_zero=False)
    _port("runtime.expose", "host_port", host_port, allow_zero=True)
    if not is_ip_address(listen_addr):
        raise ValueError_(f"runtime.expose(): 'listen_addr' must be an IP address, got {listen_addr!r}")
    _one_line("runtime.expose", "service", service)
    if envd_port == S.SSH_CONTAINER_PORT:
        raise ValueError_(f"runtime.expose(): port {envd_port} is reserved for SSH in dev environments")
    rec.exposes.append(S.Expose(envd_port, host_port, service, listen_addr, pos))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@builtin("runtime.environ", Param("env", Kind.STR_DICT, {}), Param("extra_path", Kind.STR_LIST, ()))
def _environ(rec: Recorder, pos: S.Pos | None, env: dict[str, str], extra_path: tuple[str, ...]) -> None:
    for k, v in env.items():
        if not _ENV_NAME.fullmatch(k):
            raise ValueError_(f"runtime.environ(): {k!r} is not a valid environment variable name")
        if k == "PATH":
            raise ValueError_("runtime.environ(): set PATH entries with extra_path=[...]")
        _one_line("runtime.environ", k, v)
        rec.environ.append(S.EnvVar(k, v, pos))
    for p in extra_path:
        if ":" in p or not p:
            raise ValueError_(f"runtime.environ(): extra_path entry {p!r} must be one directory")
        _one_line("runtime.environ", "extra_path", p)
        rec.extra_path.append(p)


@builtin("runtime.mount", Param("host_path", Kind.STR), Param("envd_path", Kind.STR))
def _mount(rec: Recorder, pos: S.Pos | None, host_path: str, envd_path: str) -> None:
    _nonempty("runtime.mount", "host_path", host_path)
    if not (envd_path == "~" or envd_path.startswith(("/", "~/"))):
        raise ValueError_(f"runtime.mount(): 'envd_path' must be absolute or start with ~/, got {envd_path!r}")
    rec.mounts.append(S.Mount(host_path, envd_path, host_path.startswith(DATA_PREFIX), pos))


# ---- io.* and data.* -----------------------------------------------------------------------------


@builtin(
    "io.copy",
    Param("source", Kind.STR),
    Param("target", Kind.STR),
    Param("image", Kind.OPTIONAL_STR, ""),
    aliases={"host_path": "source", "envd_path": "target"},
)
def _copy(rec: Recorder, pos: S.Pos | None, source: str, target: str, image: str | None) -> None:
    _nonempty("io.copy", "target", target)
    if image:
        _nonempty("io.copy", "source", source)
        _image_ref("io.copy", "image", image)
        src = source
    else:
        src = rec.input_path("io.copy", "source", source, directory_ok=True)
    rec.copies.append(S.Copy(src, target, image or "", pos))


_CHECKSUM = re.compile(r"sha(256|384|512):[0-9a-f]+")


@builtin(
    "io.http",
    Param("url", Kind.STR),
    Param("checksum", Kind.OPTIONAL_STR, ""),
    Param("filename", Kind.OPTIONAL_STR, ""),
)
def _http(rec: Recorder, pos: S.Pos | None, url: str, checksum: str | None, filename: str | None) -> None:
    _http_url("io.http", "url", url)
    if checksum and not _CHECKSUM.fullmatch(checksum):
        raise ValueError_(f"io.http(): 'checksum' must be a digest like \"sha256:<hex>\", got {checksum!r}")
    if filename and ("/" in filename or filename in (".", "..") or _CONTROL.search(filename)):
        raise ValueError_(f"io.http(): 'filename' must be a plain file name, got {filename!r}")
    rec.http.append(S.HttpDownload(url, checksum or "", filename or "", pos))


_DATA_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")


@builtin("data.envd", Param("name", Kind.STR))
def _data_envd(rec: Recorder, pos: S.Pos | None, name: str) -> str:
    if not _DATA_NAME.fullmatch(name):
        raise ValueError_(f"data.envd(): {name!r} must be a simple name (letters, digits, '_', '.', '-')")
    return DATA_PREFIX + name
