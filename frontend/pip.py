"""pip's reading of what ``install.python_packages`` names: its strings, and its requirements file.

envd joins the names into ``python -m pip install <names>`` and splits that like a shell, so a name
may carry quotes (``"'transformers>=4.40'"``) or pip options (``"torch --index-url URL"``). Here
each string is split the same way; the options users write become ``PipOptions`` (which the
compiler turns into the equivalent uv options), and anything pip would not take as a requirement or
an option is refused at evaluation, with the call's position, instead of failing the build.

A requirements file is read as pip reads it (``requirements_edits``): pip accepts options after a
requirement (``torch --extra-index-url URL``) and several options on one line, where uv refuses the
first and misreads the second; those lines are rewritten, each option on a line of its own (where
pip and uv both apply it to the whole file) and the requirement with its hashes, and the rest of the
file is left as it is. ``--pre`` and ``--trusted-host``, which uv ignores in a file, become options of
the call (``command_line_options``), which uv takes on its command line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Mapping

from .errors import ValueError_
from .spec import LineEdit, Note, PipOptions, Pos

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


def _match_option(token: str, table: Mapping[str, object]) -> str | None:
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


# ---- requirements files ------------------------------------------------------------------------

_FILE_OPTIONS = {
    **{option: True for option in (*_URL_VALUED, *_HOST_VALUED)},
    "--pre": False,
    "--no-index": False,
    "--prefer-binary": False,
    "--require-hashes": False,
    "--no-binary": True,
    "--only-binary": True,
    "--use-feature": True,
}
"""Options of pip's requirements-file format that uv also reads on a line of their own (True: they
take a value). pip applies them to the whole file wherever they are, but ignores them after a
requirement, where uv refuses them."""
_HASH = "--hash"
_COMMENT = re.compile(r"(^|\s+)#.*$")
_CREDENTIALS = re.compile(r"://[^/\s@]*@")


def _logical_lines(text: str) -> Iterator[tuple[int, int, str]]:
    """(first, last physical line, text) of each line pip reads: a line ending in ``\\`` continues
    on the next (not a comment line), comments and surrounding blanks removed, empty lines skipped."""
    physical = text.splitlines()
    first, parts = 0, []
    for n, line in enumerate(physical, 1):
        comment = bool(_COMMENT.match(line))
        if line.endswith("\\") and not comment:
            first = first or n
            parts.append(line.strip("\\"))
            continue
        joined = "".join([*parts, " " + line if comment else line])
        start = first or n
        first, parts = 0, []
        joined = _COMMENT.sub("", joined).strip()
        if joined:
            yield start, n, joined
    if parts:
        joined = _COMMENT.sub("", "".join(parts)).strip()
        if joined:
            yield first, len(physical), joined


def _options(tokens: list[str]) -> list[list[str]]:
    """Group option tokens with their values: ``[["--extra-index-url", URL], ["--pre"], ...]``; a
    token that is no option pip's file format has ends the grouping (returned alone)."""
    groups: list[list[str]] = []
    rest = iter(tokens)
    for token in rest:
        option = _match_option(token, _FILE_OPTIONS) or (_HASH if token.split("=", 1)[0] == _HASH else None)
        if option is None:
            groups.append([token])
            continue
        takes_value = option == _HASH or _FILE_OPTIONS[option]
        inline = token != option
        value = None if inline or not takes_value else next(rest, None)
        groups.append([token] if value is None else [token, value])
    return groups


def _known(group: list[str]) -> bool:
    option = group[0].split("=", 1)[0]
    return option in _FILE_OPTIONS or option == _HASH or _match_option(group[0], _FILE_OPTIONS) is not None


_COMMAND_LINE_ONLY = dict.fromkeys(("--pre", "--trusted-host"))
"""Options of pip's file format that uv ignores in a file (it warns and goes on) but takes on its
command line: pip applies them to the whole install, so the call's step gets them there."""


def command_line_options(text: str, label: str) -> tuple[PipOptions, tuple[Note, ...]]:
    """``--pre`` and ``--trusted-host`` anywhere in a requirements file, as the options of the call
    that reads it (pip applies them to the whole install; uv reads them from its command line only),
    with a note for each."""
    pre = False
    hosts: list[str] = []
    notes: list[Note] = []
    physical = text.splitlines()
    for first, last, line in _logical_lines(text):
        try:
            groups = _options(shlex.split(line))
        except ValueError:
            continue  # requirements_edits reports a line it cannot split
        for group in groups:
            option = _match_option(group[0], _COMMAND_LINE_ONLY)
            if option is None:
                continue
            where = _position(physical, label, first, last, group[0])
            if option == "--pre":
                pre = True
            else:
                try:
                    host = _option_value(option, group[0], iter(group[1:]))
                except ValueError_ as e:
                    raise e.at(where) from None
                if not _HOST.fullmatch(host):
                    raise ValueError_(f"--trusted-host needs a host name, got {host!r}").at(where)
                hosts.append(host)
            notes.append(
                Note(
                    f"`{option}` applies to the whole install: envbuild passes it on uv's command line "
                    "(uv ignores it in a file, pip applies it to the whole install)",
                    where,
                )
            )
    return PipOptions(pre=pre, trusted_hosts=tuple(dict.fromkeys(hosts))), tuple(notes)


_NESTED = {"-r": "--requirement", "-c": "--constraint"}


def nested_files(text: str) -> tuple[str, ...]:
    """The files a requirements file names with ``-r``/``-c`` (relative to its own directory), URLs left out."""
    out: list[str] = []
    for _first, _last, line in _logical_lines(text):
        try:
            tokens = shlex.split(line)
        except ValueError:
            continue
        for short, long in _NESTED.items():
            for option in (short, long):
                if tokens and _match_option(tokens[0], {option: ""}):
                    value = tokens[0][len(option) :].lstrip("=") if tokens[0] != option else (tokens[1:2] or [""])[0]
                    if value and "://" not in value:
                        out.append(value)
    return tuple(dict.fromkeys(out))


def _position(physical: list[str], label: str, first: int, last: int, word: str) -> Pos:
    """Where ``word`` is on physical lines ``first``..``last`` (their first column when it is not found)."""
    for n in range(first, last + 1):
        col = physical[n - 1].find(word)
        if col >= 0:
            return Pos(label, n, col + 1)
    return Pos(label, first, 1)


def requirements_edits(text: str, label: str) -> tuple[tuple[LineEdit, ...], tuple[Note, ...]]:
    """The lines of a requirements file uv must read differently from pip's reading, and a note per
    option moved. An option moved the first time is kept on a line of its own; a later copy of it
    goes (pip applies it once to the whole file anyway). An option uv cannot apply to one requirement
    (``--config-settings``) is refused with its position in the file, and so is an index URL with
    credentials that would have to be copied (on its own line it stays in the file)."""
    edits: list[LineEdit] = []
    moved: dict[str, tuple[Pos, bool]] = {}
    physical = text.splitlines()
    for first, last, line in _logical_lines(text):
        tokens = line.split(" ")
        cut = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
        requirement, options_text = " ".join(tokens[:cut]).strip(), " ".join(tokens[cut:])
        if not options_text:
            continue
        try:
            groups = _options(shlex.split(options_text))
        except ValueError as e:
            raise ValueError_(f"cannot split {options_text!r} like pip does: {e}").at(
                _position(physical, label, first, last, options_text[:20])
            ) from None
        kept = [g for g in groups if g[0].split("=", 1)[0] == _HASH] if requirement else []
        others = [g for g in groups if g not in kept]
        if requirement:
            for g in others:
                if not _known(g):
                    raise ValueError_(
                        f"pip option {g[0].split('=', 1)[0]!r} after a requirement cannot be applied by uv",
                        hint="uv installs the file's requirements together: set the option for the whole call "
                        "(a line of its own in the file) or drop it",
                    ).at(_position(physical, label, first, last, g[0]))
        if not others or (not requirement and (len(groups) < 2 or not all(_known(g) for g in groups))):
            continue
        new: list[str] = []
        for g in others:
            if _match_option(g[0], _COMMAND_LINE_ONLY):
                continue  # the call's uv command line gets it (`command_line_options`)
            option_line = shlex.join(g)
            where = _position(physical, label, first, last, g[0])
            if _CREDENTIALS.search(option_line):
                raise ValueError_(
                    f"{g[0].split('=', 1)[0]} with credentials in its URL must be on a line of its own",
                    hint="there the file keeps it as written; envbuild would otherwise copy the credentials",
                ).at(where)
            if option_line not in moved:
                moved[option_line] = (where, bool(requirement))
                new.append(option_line)
        if requirement:
            new.append(" ".join([requirement, *(" ".join(g) for g in kept)]))
        if "\\" in "".join(new):
            raise ValueError_("a backslash inside a line whose pip options must be moved").at(Pos(label, first, 1))
        edits.append(LineEdit(first, last, "\n".join(new)))
    notes = tuple(
        Note(
            f"`{option}` after a requirement goes on a line of its own, where pip and uv apply it to the "
            "whole file (uv refuses it after a requirement; pip ignores it there)"
            if after_requirement
            else f"`{option}` goes on a line of its own: uv reads one option per line",
            pos,
        )
        for option, (pos, after_requirement) in moved.items()
    )
    return tuple(edits), notes
