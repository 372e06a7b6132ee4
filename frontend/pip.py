"""``install.python_packages(name=[...])`` strings as envd reads them: split like a shell.

envd joins the names into ``python -m pip install <names>`` and splits that like a shell, so a name
may carry quotes (``"'transformers>=4.40'"``) or pip options (``"torch --index-url URL"``). Here
each string is split the same way; the options users write become ``PipOptions`` (which the
compiler turns into the equivalent uv options), and anything pip would not take as a requirement or
an option is refused at evaluation, with the call's position, instead of failing the build.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

from .errors import ValueError_
from .spec import PipOptions

QUALNAME = "install.python_packages"

_URL_VALUED = {
    "--index-url": "index_url",
    "-i": "index_url",
    "--extra-index-url": "extra_index_urls",
    "--find-links": "find_links",
    "-f": "find_links",
}
_HOST_VALUED = {"--trusted-host": "trusted_hosts"}
_FLAGS = {
    "--pre": "pre",
    "--no-deps": "no_deps",
    "--upgrade": "upgrade",
    "-U": "upgrade",
    "--no-build-isolation": "no_build_isolation",
}
_NO_EFFECT = frozenset({"--no-cache-dir"})
"""Accepted and dropped: every build starts from a fresh environment with its own cache."""
_ELSEWHERE = {
    "-r": 'use requirements="FILE"',
    "--requirement": 'use requirements="FILE"',
    "-e": "editable installs need the project's files: use local_wheels=[...] or run()",
    "--editable": "editable installs need the project's files: use local_wheels=[...] or run()",
    "-c": "constraint files are not supported; pin the versions in the names",
    "--constraint": "constraint files are not supported; pin the versions in the names",
}

_OPERATOR = r"(?:===|~=|==|!=|<=|>=|<|>)"
REQUIREMENT = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"  # project name
    r"(?:[ \t]*\[[ \t]*[A-Za-z0-9._-]+(?:[ \t]*,[ \t]*[A-Za-z0-9._-]+)*[ \t]*\])?"  # extras
    rf"(?:[ \t]*{_OPERATOR}[ \t]*[A-Za-z0-9.*+!_-]+(?:[ \t]*,[ \t]*{_OPERATOR}[ \t]*[A-Za-z0-9.*+!_-]+)*)?"  # versions
    r"(?:[ \t]*@[ \t]*[A-Za-z][A-Za-z0-9+.-]*://\S+)?"  # direct reference
    r"(?:[ \t]*;[^\x00-\x1f\x7f]*)?",  # environment marker
)
"""One PEP 508 requirement (after shell splitting, so spaces only where the user quoted them)."""
DIRECT_URL = re.compile(r"(?:git\+)?https?://[^\s'\"]+")
_HTTP_URL = re.compile(r"https?://[^\s'\"@]+")
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9A-Fa-f:]+\](?::[0-9]+)?")


def _tokens(name: str) -> list[str]:
    try:
        return shlex.split(name)
    except ValueError as e:
        raise ValueError_(f"{QUALNAME}(): cannot split {name!r} like a shell: {e}") from None


def _option_value(option: str, token: str, rest: Iterator[str]) -> str:
    """The value of ``--opt VALUE``, ``--opt=VALUE`` or ``-iVALUE``."""
    if token.startswith(option + "=") and option.startswith("--"):
        return token[len(option) + 1 :]
    if token != option:
        return token[len(option) :]
    value = next(rest, None)
    if value is None or value.startswith("-"):
        raise ValueError_(f"{QUALNAME}(): pip option {option} needs a value")
    return value


def _match_option(token: str, table: dict[str, str]) -> str | None:
    """The option of ``table`` that ``token`` spells (``--opt``, ``--opt=V``, ``-oV``), if any."""
    for option in table:
        if token == option or (option.startswith("--") and token.startswith(option + "=")):
            return option
        if len(option) == 2 and token.startswith(option) and len(token) > 2:
            return option
    return None


def _check_url(option: str, url: str) -> str:
    if "@" in url.split("://", 1)[-1].split("/", 1)[0]:
        raise ValueError_(
            f"{QUALNAME}(): {option} {url!r} holds credentials, which would be stored in the image",
            hint="set the index with config.pip_index(url=...): its credentials reach the build as a secret",
        )
    if not _HTTP_URL.fullmatch(url):
        raise ValueError_(f"{QUALNAME}(): {option} needs an http(s) URL, got {url!r}")
    return url


def parse(names: tuple[str, ...]) -> tuple[tuple[str, ...], PipOptions]:
    """The requirements and pip options in one call's ``name`` list, split like a shell."""
    requirements: list[str] = []
    index_url = ""
    lists: dict[str, list[str]] = {"extra_index_urls": [], "find_links": [], "trusted_hosts": []}
    flags: set[str] = set()
    rest = iter([token for name in names for token in _tokens(name)])  # envd splits the joined names
    for token in rest:
        if not token.startswith("-"):
            requirements.append(_requirement(token))
        elif option := _match_option(token, _URL_VALUED):
            url = _check_url(option, _option_value(option, token, rest))
            if _URL_VALUED[option] == "index_url":
                index_url = url  # pip: the last one wins
            else:
                lists[_URL_VALUED[option]].append(url)
        elif option := _match_option(token, _HOST_VALUED):
            host = _option_value(option, token, rest)
            if not _HOST.fullmatch(host):
                raise ValueError_(f"{QUALNAME}(): {option} needs a host name, got {host!r}")
            lists["trusted_hosts"].append(host)
        elif token in _FLAGS:
            flags.add(_FLAGS[token])
        elif token not in _NO_EFFECT:
            raise _unsupported(token)
    options = PipOptions(
        index_url=index_url,
        extra_index_urls=tuple(lists["extra_index_urls"]),
        find_links=tuple(lists["find_links"]),
        trusted_hosts=tuple(lists["trusted_hosts"]),
        pre="pre" in flags,
        no_deps="no_deps" in flags,
        upgrade="upgrade" in flags,
        no_build_isolation="no_build_isolation" in flags,
    )
    return tuple(requirements), options


def _requirement(token: str) -> str:
    if REQUIREMENT.fullmatch(token) or DIRECT_URL.fullmatch(token):
        return token
    hint = None
    if token[:1] in (".", "/", "~"):
        hint = 'local files reach the build through local_wheels=[...] or requirements="FILE"'
    elif re.fullmatch(rf"{_OPERATOR}.*|@|;.*", token):
        hint = 'write the requirement without spaces ("numpy>=2.0") or quote it ("\'numpy >= 2.0\'")'
    raise ValueError_(f"{QUALNAME}(): {token!r} is not a Python requirement", hint=hint)


def _unsupported(token: str) -> ValueError_:
    option = token.split("=", 1)[0]
    hint = _ELSEWHERE.get(option) or _ELSEWHERE.get(option[:2])
    supported = ", ".join([*_URL_VALUED, *_HOST_VALUED, *_FLAGS, *sorted(_NO_EFFECT)])
    return ValueError_(
        f"{QUALNAME}(): pip option {option!r} is not supported in package names",
        hint=hint or f"supported: {supported}",
    )
