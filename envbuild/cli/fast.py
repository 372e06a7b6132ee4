"""The hot commands without typer: `debug llb`, `debug spec`, `version` and `build`'s skip check.

Importing typer costs ~35 ms, as much as the work of `debug llb` itself. `dispatch` parses the
simple, unambiguous argument lists of those commands by the same rules as click (``--opt VALUE``,
``--opt=VALUE``, ``-o VALUE``, flags, the last of a repeated option wins) and runs the same functions
the typer commands call. Anything else -- help, completion, an unknown or misspelt option, a value
that looks like an option, a missing value, positional arguments, a build that is not up to date --
returns None and the typer application handles the whole command line, so help texts, usage
errors and exit codes stay typer's.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any

    _Options = dict[str, Any]


def debug_spec(path: str | Path, file: str | None) -> None:
    """`envbuild debug spec`: the evaluated spec as JSON."""
    from envbuild.build import BuildOptions, evaluate
    from envbuild.cli.args import build_target, echo

    target, function = build_target(path, file)
    spec, _ = evaluate(BuildOptions(path=target, function=function))
    echo(spec.to_json(indent=2))


def debug_llb(path: str | Path, file: str | None, fmt: str, owner: str | None, image_config: bool) -> None:
    """`envbuild debug llb`: the LLB (or the image config) the build file compiles to."""
    import json

    from envbuild.build import BuildOptions, compile_for, prepare
    from envbuild.cli.args import build_target, echo, parse_owner
    from envbuild.errors import UsageError

    if fmt not in ("json", "dot"):
        raise UsageError(f"invalid --format {fmt!r}: use json or dot")
    target, function = build_target(path, file)
    options = BuildOptions(path=target, function=function, owner=parse_owner(owner))
    compiled = compile_for(prepare(options, labels=image_config), options)  # the LLB carries no labels
    for note in compiled.notes:
        print(f"note: {note}", file=sys.stderr)
    if image_config:
        echo(json.dumps(dict(compiled.image), indent=2, sort_keys=True, default=list))
        return
    definition = compiled.definition()
    if fmt == "dot":
        echo(definition.to_dot())
    else:
        lines = [json.dumps(op, sort_keys=True, separators=(",", ":")) for op in definition.to_json()]
        if lines:
            echo("\n".join(lines))


def version(short: bool) -> None:
    """`envbuild version`."""
    from envbuild import __version__
    from envbuild.cli.args import echo

    if short:
        echo(__version__)
        return
    import platform

    echo(f"envbuild {__version__} (Python {platform.python_version()})")


def _build(o: _Options) -> bool:
    from envbuild.cli.args import build_options, quick_up_to_date, report_if_up_to_date

    if o["output"] is not None:
        return False  # outputs other than the engine's store are planned per builder: typer's path
    return quick_up_to_date(**o) or report_if_up_to_date(build_options(**o))


def _debug_llb(o: _Options) -> bool:
    debug_llb(o["path"], o["file"], o["fmt"], o["owner"], o["image_config"])
    return True


def _debug_spec(o: _Options) -> bool:
    debug_spec(o["path"], o["file"])
    return True


def _version(o: _Options) -> bool:
    version(o["short"])
    return True


_REPEATABLE = {"tag"}
"""Options typer collects into a list (``build -t a -t b``): given twice, typer handles the line."""
_PATH = ("path", str, ".")
_FILE = ("file", str, None)
_OWNER = ("owner", str, None)

# command words -> (runner, {option: (keyword, type or None for a flag, default)})
_COMMANDS: dict[tuple[str, ...], tuple[Callable[[_Options], bool], dict[str, tuple[str, Any, Any]]]] = {
    ("debug", "llb"): (_debug_llb, {
        "--path": _PATH, "-p": _PATH, "--file": _FILE, "-f": _FILE, "--owner": _OWNER,
        "--format": ("fmt", str, "json"), "--image-config": ("image_config", None, False),
    }),
    ("debug", "spec"): (_debug_spec, {"--path": _PATH, "-p": _PATH, "--file": _FILE, "-f": _FILE}),
    ("version",): (_version, {"--short": ("short", None, False)}),
    ("build",): (_build, {
        "--path": _PATH, "-p": _PATH, "--file": _FILE, "-f": _FILE, "--owner": _OWNER,
        "--tag": ("tag", str, None), "-t": ("tag", str, None),
        "--progress": ("progress", str, "auto"), "--no-cache": ("no_cache", None, False),
        "--ca-cert": ("ca_cert", str, None), "--output": ("output", str, None), "-o": ("output", str, None),
        "--network": ("network", str, "sandbox"), "--python-mirror": ("python_mirror", str, None),
    }),
}


def parse(argv: Sequence[str]) -> tuple[Callable[[_Options], bool], _Options] | None:
    """(runner, keyword arguments) for an argument list the fast path is sure about, else None."""
    for words, (runner, spec) in _COMMANDS.items():
        if tuple(argv[: len(words)]) == words:
            break
    else:
        return None
    options: _Options = {kw: default for kw, _, default in spec.values()}
    rest = list(argv[len(words) :])
    given: set[str] = set()
    i = 0
    while i < len(rest):
        token = rest[i]
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name not in spec:
            return None
        kw, kind, _ = spec[name]
        if kind is None:
            if eq:
                return None
            options[kw] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(rest):
                return None
            value = rest[i + 1]
            i += 1
        if not value or value.startswith("-"):
            return None
        if kw in _REPEATABLE and kw in given:
            return None
        given.add(kw)
        options[kw] = kind(value)
        i += 1
    return runner, options


def dispatch(argv: Sequence[str]) -> bool:
    """Run the command if the fast path can; False means "let typer handle the command line"."""
    parsed = parse(argv)
    if parsed is None:
        return False
    runner, options = parsed
    try:
        return runner(options)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
