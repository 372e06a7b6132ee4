"""Source vertices: the leaves of every graph (images, local dirs, git, http, scratch)."""

from __future__ import annotations


from ._record import record
from .errors import InvalidGraph
from .platform import Platform
from .state import MarshalContext, OpOptions, Output, State, Vertex, _check_name

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~4 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from ._wire import Message

__all__ = ["image", "local", "scratch", "git", "http", "normalize_image_ref", "DEFAULT_PATH"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_RESOLVE_MODES = ("default", "pull", "local")
# The grammar of image references (docker/distribution's reference package), matched by hand:
# compiling it as regular expressions cost ~0.8 ms of every start-up.
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = _LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGEST_HEX = _ALNUM | frozenset("=_-")
_LOCAL_CHARS = _ALNUM | frozenset("_.-")


def _runs_ok(s: str, word: frozenset[str], separator_ok: Callable[[str], bool]) -> bool:
    """``s`` is words of ``word`` characters joined by separators that ``separator_ok`` accepts."""
    if not s or s[0] not in word or s[-1] not in word:
        return False
    sep = ""
    for c in s:
        if c in word:
            if sep:
                if not separator_ok(sep):
                    return False
                sep = ""
        else:
            sep += c
    return True


def _is_path_component(s: str) -> bool:
    """``[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*``"""
    return _runs_ok(s, _LOWER, lambda sep: sep in (".", "_", "__") or not sep.strip("-"))


def _is_domain(s: str) -> bool:
    """``label(.label)*(:port)?`` with labels ``[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?``"""
    host, colon, port = s.partition(":")
    if colon and not (port.isascii() and port.isdigit()):
        return False
    return all(_runs_ok(label, _ALNUM, lambda sep: not sep.strip("-")) for label in host.split("."))


def _is_tag(s: str) -> bool:
    """``[\\w][\\w.-]{0,127}``"""
    return 0 < len(s) <= 128 and (s[0].isalnum() or s[0] == "_") and all(c.isalnum() or c in "_.-" for c in s)


def _is_digest(s: str) -> bool:
    """``[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}``"""
    algorithm, colon, encoded = s.partition(":")
    return (
        bool(colon)
        and _runs_ok(algorithm, _LOWER, lambda sep: sep in (".", "+", "_", "-"))
        and len(encoded) >= 32
        and all(c in _DIGEST_HEX for c in encoded)
    )


def _is_local_name(s: str) -> bool:
    """``[A-Za-z0-9][A-Za-z0-9_.-]*``"""
    return bool(s) and s[0] in _ALNUM and all(c in _LOCAL_CHARS for c in s)


@record(eq=False)
class SourceVertex(Vertex):
    identifier: str
    attrs: tuple[tuple[str, str], ...]
    caps: tuple[str, ...]
    options: OpOptions

    def dependencies(self) -> tuple[Output, ...]:
        return ()

    def label(self) -> str:
        return self.options.name or self.identifier

    def to_op(self, ctx: MarshalContext) -> tuple[Message, Message]:
        op: Message = {"source": {"identifier": self.identifier, "attrs": dict(self.attrs)}}
        return op, self.options.apply(ctx, op, self.caps)


def _source(
    identifier: str,
    attrs: Mapping[str, str],
    caps: Sequence[str],
    *,
    name: str | None,
    platform: Platform | None = None,
    env: tuple[tuple[str, str], ...] = (),
) -> State:
    vertex = SourceVertex(identifier, tuple(sorted(attrs.items())), tuple(caps), OpOptions(name=_check_name(name), platform=platform))
    return State(output=Output(vertex, 0), env_vars=env, platform=platform)


def normalize_image_ref(ref: str) -> str:
    """Fully qualifies an image reference the way Docker does.

    `debian` -> `docker.io/library/debian:latest`,
    `local/debian:bookworm` -> `docker.io/local/debian:bookworm`.
    """
    if not isinstance(ref, str) or not ref or ref != ref.strip():
        raise InvalidGraph(f"invalid image reference {ref!r}")
    name, _, digest = ref.partition("@")
    if digest and not _is_digest(digest):
        raise InvalidGraph(f"invalid image reference {ref!r}: bad digest {digest!r}")
    slash, colon = name.rfind("/"), name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _is_tag(tag):
            raise InvalidGraph(f"invalid image reference {ref!r}: bad tag {tag!r}")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if not _is_domain(domain):
        raise InvalidGraph(f"invalid image reference {ref!r}: bad registry {domain!r}")
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    for component in path.split("/"):
        if not _is_path_component(component):
            hint = " (repository names must be lowercase)" if component.lower() != component else ""
            raise InvalidGraph(f"invalid image reference {ref!r}: bad name component {component!r}{hint}")
    if not tag and not digest:
        tag = "latest"
    result = f"{domain}/{path}"
    if tag:
        result += f":{tag}"
    if digest:
        result += f"@{digest}"
    return result


def image(
    ref: str,
    *,
    platform: Platform | str | None = None,
    resolve_mode: str = "default",
    name: str | None = None,
) -> State:
    """A container image as the root filesystem.

    `resolve_mode`: "default" uses a local copy when the builder has one,
    "pull" always asks the registry, "local" prefers the builder's store.
    The state's environment starts with the conventional default PATH.
    """
    if resolve_mode not in _RESOLVE_MODES:
        raise InvalidGraph(f"image resolve_mode must be one of {', '.join(_RESOLVE_MODES)}; got {resolve_mode!r}")
    if isinstance(platform, str):
        platform = Platform.parse(platform)
    attrs: dict[str, str] = {}
    caps = ["source.image"]
    if resolve_mode != "default":
        attrs["image.resolvemode"] = resolve_mode
        caps.append("source.image.resolvemode")
    return _source(
        "docker-image://" + normalize_image_ref(ref),
        attrs,
        caps,
        name=name,
        platform=platform,
        env=(("PATH", DEFAULT_PATH),),
    )


def _patterns(values: Sequence[str], what: str) -> list[str]:
    if isinstance(values, str):
        raise InvalidGraph(f"local {what} must be a sequence of patterns, not a single string")
    out = list(values)
    for v in out:
        if not isinstance(v, str) or not v:
            raise InvalidGraph(f"local {what} entries must be non-empty strings, got {v!r}")
    return out




def local(
    name: str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    follow_paths: Sequence[str] = (),
    shared_key_hint: str | None = None,
    session_id: str | None = None,
    vertex_name: str | None = None,
) -> State:
    """A directory the client sends through its session under `name` (see `solve(local_dirs=...)`).

    `shared_key_hint` (default: `name`) lets the builder reuse the previous
    transfer's snapshot so only changed files travel.
    """
    if not isinstance(name, str) or not _is_local_name(name):
        raise InvalidGraph(f"invalid local source name {name!r}: use letters, digits, '.', '_' or '-'")
    attrs: dict[str, str] = {}
    caps = ["source.local"]
    if include or exclude or follow_paths:
        import json  # only here: json and the re it imports cost ~8 ms of start-up
    if session_id:
        attrs["local.session"] = session_id
        caps.append("source.local.sessionid")
    if include:
        attrs["local.includepattern"] = json.dumps(_patterns(include, "include"), separators=(",", ":"))
        caps.append("source.local.includepatterns")
    if exclude:
        attrs["local.excludepatterns"] = json.dumps(_patterns(exclude, "exclude"), separators=(",", ":"))
        caps.append("source.local.excludepatterns")
    if follow_paths:
        attrs["local.followpaths"] = json.dumps(_patterns(follow_paths, "follow_paths"), separators=(",", ":"))
        caps.append("source.local.followpaths")
    hint = name if shared_key_hint is None else shared_key_hint
    if hint:
        attrs["local.sharedkeyhint"] = hint
        caps.append("source.local.sharedkeyhint")
    return _source("local://" + name, attrs, caps, name=vertex_name)


def scratch() -> State:
    """The empty filesystem."""
    return State()


_GIT_PREFIXES = ("http://", "https://", "git://", "ssh://", "git@")


def git(remote: str, ref: str = "", *, keep_git_dir: bool = False, name: str | None = None) -> State:
    """A git checkout of `ref` (branch, tag or commit) from `remote`."""
    if not isinstance(remote, str) or not remote.strip() or any(c.isspace() for c in remote):
        raise InvalidGraph(f"invalid git remote {remote!r}")
    if not isinstance(ref, str) or any(c.isspace() for c in ref) or "#" in ref:
        raise InvalidGraph(f"invalid git ref {ref!r}")
    url = ""
    short = remote
    for prefix in _GIT_PREFIXES:
        if remote.startswith(prefix):
            url = remote.split("#", 1)[0]
            short = remote[len(prefix) :]
            break
    identifier = "git://" + short + (f"#{ref}" if ref else "")
    attrs: dict[str, str] = {}
    caps = ["source.git"]
    if keep_git_dir:
        attrs["git.keepgitdir"] = "true"
        caps.append("source.git.keepgitdir")
    if url:
        attrs["git.fullurl"] = url
        caps.append("source.git.fullurl")
    return _source(identifier, attrs, caps, name=name)


def http(
    url: str,
    *,
    checksum: str | None = None,
    filename: str | None = None,
    chmod: int | None = None,
    name: str | None = None,
) -> State:
    """A single file downloaded from `url` (verified against `checksum`, a `sha256:...` digest)."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidGraph(f"http source needs an http:// or https:// URL, got {url!r}")
    attrs: dict[str, str] = {}
    caps = ["source.http"]
    if checksum:
        if not _is_digest(checksum):
            raise InvalidGraph(f"http checksum must look like 'sha256:<hex>', got {checksum!r}")
        attrs["http.checksum"] = checksum
        caps.append("source.http.checksum")
    if filename:
        if "/" in filename or filename in (".", ".."):
            raise InvalidGraph(f"http filename must be a plain file name, got {filename!r}")
        attrs["http.filename"] = filename
    if chmod is not None:
        if not isinstance(chmod, int) or isinstance(chmod, bool) or not 0 <= chmod <= 0o7777:
            raise InvalidGraph(f"http chmod must be within 0o0..0o7777, got {chmod!r}")
        attrs["http.perm"] = "0" + format(chmod, "o")
        caps.append("source.http.perm")
    return _source(url, attrs, caps, name=name)
