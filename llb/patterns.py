"""Docker-style path patterns (`.dockerignore`, BuildKit's include/exclude filters) as regular
expressions over `/`-separated relative paths; kept apart from the file-sync protocol so reading
an ignore file does not load grpc."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PatternMatcher", "clean_path", "match_include_prefix", "parse_ignore"]


def _translate(pattern: str) -> str:
    """A docker/.dockerignore pattern as a regular expression over `/`-separated paths.

    `*` and `?` stay inside one path element, `**` crosses elements (a trailing
    `**` matches everything below), `[...]` is a character class (`!`/`^`
    negate), `\\` escapes the next character.
    """
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(?:.*/)?")
            else:
                out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append("\\[")
            else:
                body = pattern[i:j]
                i = j + 1
                neg = body[:1] in ("!", "^")
                if neg:
                    body = body[1:]
                body = body.replace("\\", "\\\\")
                out.append(f"[{'^' if neg else ''}{body}]" if not neg else f"[^/{body}]")
        elif c == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append("\\\\")
        else:
            out.append(re.escape(c))
    out.append("$")
    return "".join(out)


def clean_path(path: str) -> str:
    """`filepath.Clean` for relative `/` paths."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            else:
                parts.append(part)
            continue
        parts.append(part)
    return "/".join(parts) or "."


def parse_ignore(text: str) -> list[str]:
    """The patterns of a ``.dockerignore``-format file, as docker reads one: ``#`` starts a comment
    line, blanks around a pattern go, ``!`` re-includes, a leading ``/`` is the context root."""
    patterns: list[str] = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = clean_path(pattern.lstrip("/"))
        patterns.append(("!" if invert else "") + pattern)
    return patterns


@dataclass(frozen=True, slots=True)
class _Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]
    depth: int


class PatternMatcher:
    """Exclude patterns with `.dockerignore` semantics: the last matching pattern wins,
    `!pattern` re-includes, and a pattern matching a parent directory matches below it."""

    def __init__(self, patterns: Iterable[str]) -> None:
        compiled: list[_Pattern] = []
        for raw in patterns:
            p = raw.strip()
            if not p:
                continue
            exclusion = p.startswith("!")
            if exclusion:
                p = p[1:].strip()
                if not p:
                    raise ValueError('illegal exclusion pattern: "!"')
            p = clean_path(p.lstrip("/"))
            compiled.append(_Pattern(p, exclusion, re.compile(_translate(p)), p.count("/") + 1))
        self.patterns: tuple[_Pattern, ...] = tuple(compiled)
        self.has_exclusions = any(p.exclusion for p in compiled)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        matched = False
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        parent_dirs = parent.split("/")
        for pat in self.patterns:
            hit = pat.regex.match(path) is not None
            if not hit and parent != "." and pat.depth <= len(parent_dirs):
                hit = pat.regex.match("/".join(parent_dirs[: pat.depth])) is not None
            if hit:
                matched = not pat.exclusion
        return matched

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether an exclusion pattern could re-include something inside `directory`."""
        prefix = directory + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def match_include_prefix(pattern: str, path: str) -> tuple[bool, bool]:
    """(matches, partial): whether `path` is the include pattern or a directory above it."""
    depth = path.count("/")
    partial = False
    if pattern.count("/") > depth:
        pattern = "/".join(pattern.split("/")[: depth + 1])
        partial = True
    return _glob_element_match(pattern, path), partial


def _glob_element_match(pattern: str, path: str) -> bool:
    """Go `filepath.Match`: wildcards never cross `/`."""
    regex = _translate(pattern.replace("**", "*"))
    return re.match(regex, path) is not None
