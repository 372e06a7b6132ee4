"""Source vertices: the leaves of every graph (images, local dirs, git, http, scratch)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._proto import ops_pb2
from .errors import InvalidGraph
from .platform import Platform
from .state import MarshalContext, OpOptions, Output, State, Vertex, _check_name

__all__ = ["image", "local", "scratch", "git", "http", "normalize_image_ref", "DEFAULT_PATH"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_RESOLVE_MODES = ("default", "pull", "local")

# The grammar of image references, from docker/distribution's reference package.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = re.compile(rf"{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*(?::[0-9]+)?")
_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")

# Names of local sources: they travel as session metadata and in `local://NAME`.
_LOCAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True, slots=True, eq=False)
class SourceVertex(Vertex):
    identifier: str
    attrs: tuple[tuple[str, str], ...]
    caps: tuple[str, ...]
    options: OpOptions

    def dependencies(self) -> tuple[Output, ...]:
        return ()

    def label(self) -> str:
        return self.options.name or self.identifier

    def to_op(self, ctx: MarshalContext) -> tuple[ops_pb2.Op, ops_pb2.OpMetadata]:
        op = ops_pb2.Op(source=ops_pb2.SourceOp(identifier=self.identifier, attrs=dict(self.attrs)))
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
    vertex = SourceVertex(
        identifier, tuple(sorted(attrs.items())), tuple(caps), OpOptions(name=_check_name(name), platform=platform)
    )
    return State(output=Output(vertex, 0), env_vars=env, platform=platform)


def normalize_image_ref(ref: str) -> str:
    """Fully qualifies an image reference the way Docker does.

    `debian` -> `docker.io/library/debian:latest`,
    `local/debian:bookworm` -> `docker.io/local/debian:bookworm`.
    """
    if not isinstance(ref, str) or not ref or ref != ref.strip():
        raise InvalidGraph(f"invalid image reference {ref!r}")
    name, _, digest = ref.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise InvalidGraph(f"invalid image reference {ref!r}: bad digest {digest!r}")
    slash, colon = name.rfind("/"), name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidGraph(f"invalid image reference {ref!r}: bad tag {tag!r}")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "index.docker.io":
        domain = "docker.io"
    if not _DOMAIN.fullmatch(domain):
        raise InvalidGraph(f"invalid image reference {ref!r}: bad registry {domain!r}")
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    for component in path.split("/"):
        if not _PATH_COMPONENT.fullmatch(component):
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
    if not isinstance(name, str) or not _LOCAL_NAME.fullmatch(name):
        raise InvalidGraph(f"invalid local source name {name!r}: use letters, digits, '.', '_' or '-'")
    attrs: dict[str, str] = {}
    caps = ["source.local"]
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
        if not _DIGEST.fullmatch(checksum):
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
