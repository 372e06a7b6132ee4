"""Build outputs, tags, platforms and remote cache: option parsing and per-builder planning.

The option syntax is buildx's (``--output type=image,"name=a:1,b:2",push=true``): CSV fields of
``key=value`` with Go-style quoting. Parsing gives typed values; `plan_build` then turns them into
the `llb` exports and cache options one builder can honour (`envbuild.capabilities`: what this
builder reported), plus the steps envbuild does itself where the builder lacks an exporter (the Docker
engine's builder when the engine keeps images in a graph driver): a push goes through the engine API
after a ``moby`` export, ``type=docker,dest=`` becomes ``docker save``. Requests no fallback can
satisfy fail before the build, saying why this builder cannot and which can.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.capabilities import BuilderCaps
    from llb import Platform
    from llb.export import CacheOption, Export

__all__ = [
    "OUTPUT_TYPES",
    "OutputSpec",
    "CacheSpec",
    "BuildOutputOptions",
    "PushImage",
    "SaveImage",
    "SaveOCI",
    "PostAction",
    "PlannedSolve",
    "BuildPlan",
    "split_csv",
    "parse_output",
    "parse_cache",
    "parse_platforms",
    "validate_image_name",
    "parse_build_options",
    "default_platforms",
    "check_platforms",
    "platform_suffix",
    "plan_build",
    "check_destination",
    "check_destinations",
    "destinations",
]

OUTPUT_TYPES: tuple[str, ...] = ("docker", "image", "registry", "oci", "tar", "local")
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})

_OUTPUT_KEYS: Mapping[str, frozenset[str]] = MappingProxyType({
    "docker": frozenset({"type", "name", "dest"}),
    "image": frozenset({"type", "name", "push", "registry.insecure", "insecure"}),
    "registry": frozenset({"type", "name", "registry.insecure", "insecure"}),
    "oci": frozenset({"type", "name", "dest"}),
    "tar": frozenset({"type", "dest"}),
    "local": frozenset({"type", "dest"}),
})
_CACHE_EXPORT_KEYS: Mapping[str, frozenset[str]] = MappingProxyType({
    "registry": frozenset({"type", "ref", "mode"}),
    "local": frozenset({"type", "dest", "mode"}),
    "inline": frozenset({"type"}),
})
_CACHE_IMPORT_KEYS: Mapping[str, frozenset[str]] = MappingProxyType({
    "registry": frozenset({"type", "ref"}),
    "local": frozenset({"type", "src", "digest"}),
})

# Docker reference grammar (distribution/reference), enough to reject what a registry would.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"  # -+ not [-]*: same language, no exponential backtracking
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)


# ------------------------------------------------------------------ parsing


def split_csv(text: str, *, option: str) -> list[str]:
    """Split one CSV record like Go's encoding/csv (what buildx uses): ``"…"`` quotes a field,
    ``""`` inside quotes is a quote, a bare quote inside an unquoted field is an error."""
    if "\n" in text or "\r" in text:
        raise UsageError(f"{option} {text!r}: line breaks are not allowed")
    fields: list[str] = []
    i, n = 0, len(text)
    while True:
        if i < n and text[i] == '"':
            i += 1
            buf: list[str] = []
            while True:
                j = text.find('"', i)
                if j < 0:
                    raise UsageError(f"{option} {text!r}: unterminated quote")
                buf.append(text[i:j])
                if j + 1 < n and text[j + 1] == '"':
                    buf.append('"')
                    i = j + 2
                    continue
                i = j + 1
                break
            if i < n and text[i] != ",":
                raise UsageError(f"{option} {text!r}: unexpected {text[i]!r} after a quoted field")
            fields.append("".join(buf))
        else:
            j = text.find(",", i)
            end = n if j < 0 else j
            part = text[i:end]
            if '"' in part:
                raise UsageError(f"{option} {text!r}: a quote inside {part!r}; quote the whole field instead")
            fields.append(part)
            i = end
        if i >= n:
            return fields
        i += 1


def _pairs(text: str, *, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in split_csv(text, option=option):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise UsageError(f"{option} {text!r}: expected key=value, got {item!r}")
        if key in out:
            raise UsageError(f"{option} {text!r}: {key}= is given twice")
        out[key] = value.strip()
    return out


def _bool(value: str, *, option: str, key: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"{option}: {key}={value!r} is not a boolean (true or false)")


def validate_image_name(name: str, *, option: str = "--tag", allow_digest: bool = False) -> str:
    """A docker image reference as a registry accepts it (lowercase repository, valid tag)."""
    m = _REFERENCE.match(name) if name and len(name) <= 255 else None
    domain = m.group("domain") if m is not None else None
    if domain and not ("." in domain or ":" in domain or domain == "localhost") and not re.fullmatch(
        _PATH_COMPONENT, domain
    ):
        m = None  # Docker reads a first component without '.', ':' or "localhost" as part of the repository
    if m is not None and m.group("digest") and not allow_digest:
        raise UsageError(f"{option} {name!r}: a digest (@sha256:…) cannot name a new image; use a tag")
    if m is None:
        hint = " (repository names must be lowercase)" if name and name.lower() != name and _REFERENCE.match(
            name.lower()
        ) else ""
        raise UsageError(
            f"{option} {name!r} is not a valid image reference{hint}: expected "
            "[REGISTRY[:PORT]/]REPOSITORY[:TAG], e.g. registry.example.com:5000/team/env:v1"
        )
    return name


def _names(value: str, *, option: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    for n in names:
        validate_image_name(n, option=f"{option} name=")
    return names


def _dest(value: str | None, *, option: str, kind: str) -> str:
    if value is None or not value:
        raise UsageError(f"{option}: type={kind} needs dest=PATH")
    if value == "-":
        raise UsageError(f"{option}: dest=- (standard output) is not supported; give a file path")
    if "\x00" in value:
        raise UsageError(f"{option}: dest= contains a NUL byte")
    return value


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One ``--output``. ``type=registry`` is parsed as ``image`` with ``push=True``."""

    type: str
    names: tuple[str, ...] = ()
    push: bool = False
    dest: str | None = None
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class CacheSpec:
    """One ``--export-cache``/``--import-cache`` entry: the BuildKit cache type and its attributes."""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))

    def to_llb(self) -> CacheOption:
        from llb.export import CacheOption

        return CacheOption(self.type, dict(self.attrs))


def parse_output(text: str, *, option: str = "--output") -> OutputSpec:
    """Parse one ``--output`` value; a value with no ``=`` is a directory (``type=local,dest=…``)."""
    text = text.strip()
    if not text:
        raise UsageError(f"{option}: empty value; e.g. type=image,name=registry.example.com/env:v1,push=true")
    if "=" not in text and "," not in text and '"' not in text:
        return OutputSpec("local", dest=_dest(text, option=option, kind="local"))
    attrs = _pairs(text, option=option)
    kind = attrs.get("type", "")
    if not kind:
        raise UsageError(f"{option} {text!r}: type= is missing (one of {', '.join(OUTPUT_TYPES)})")
    kind = kind.lower()
    if kind not in OUTPUT_TYPES:
        raise UsageError(f"{option}: unknown type={kind!r} (one of {', '.join(OUTPUT_TYPES)})")
    unknown = sorted(set(attrs) - _OUTPUT_KEYS[kind])
    if unknown:
        allowed = ", ".join(sorted(_OUTPUT_KEYS[kind] - {"type"}))
        given = ", ".join(k + "=" for k in unknown)
        raise UsageError(f"{option}: type={kind} does not take {given} (it takes {allowed})")
    names = _names(attrs["name"], option=option) if "name" in attrs else ()
    insecure = False
    for key in ("insecure", "registry.insecure"):
        if key in attrs:
            insecure = insecure or _bool(attrs[key], option=option, key=key)
    if kind == "registry":
        return OutputSpec("image", names=names, push=True, insecure=insecure)
    if kind == "image":
        push = _bool(attrs["push"], option=option, key="push") if "push" in attrs else False
        return OutputSpec("image", names=names, push=push, insecure=insecure)
    if kind == "docker":
        dest = _dest(attrs["dest"], option=option, kind=kind) if "dest" in attrs else None
        return OutputSpec("docker", names=names, dest=dest)
    return OutputSpec(kind, names=names, dest=_dest(attrs.get("dest"), option=option, kind=kind))


def parse_cache(text: str, *, export: bool) -> CacheSpec:
    """Parse ``--export-cache``/``--import-cache``; a bare reference means ``type=registry,ref=…``."""
    option = "--export-cache" if export else "--import-cache"
    text = text.strip()
    if not text:
        raise UsageError(f"{option}: empty value; e.g. type=registry,ref=registry.example.com/env:cache")
    if "=" not in text and "," not in text and '"' not in text:
        return CacheSpec("registry", {"ref": validate_image_name(text, option=option, allow_digest=not export)})
    attrs = _pairs(text, option=option)
    table = _CACHE_EXPORT_KEYS if export else _CACHE_IMPORT_KEYS
    kind = attrs.pop("type", "").lower()
    if not kind:
        raise UsageError(f"{option} {text!r}: type= is missing (one of {', '.join(table)})")
    if kind not in table:
        extra = " (inline cache is imported with type=registry,ref=IMAGE)" if kind == "inline" else ""
        raise UsageError(f"{option}: unknown type={kind!r} (one of {', '.join(table)}){extra}")
    unknown = sorted(set(attrs) - table[kind])
    if unknown:
        allowed = ", ".join(sorted(table[kind] - {"type"})) or "nothing else"
        given = ", ".join(k + "=" for k in unknown)
        raise UsageError(f"{option}: type={kind} does not take {given} (it takes {allowed})")
    if "mode" in attrs and attrs["mode"] not in ("min", "max"):
        raise UsageError(f"{option}: mode={attrs['mode']!r} must be min or max")
    if kind == "registry":
        if not attrs.get("ref"):
            raise UsageError(f"{option}: type=registry needs ref=IMAGE, e.g. ref=registry.example.com/env:cache")
        validate_image_name(attrs["ref"], option=f"{option} ref=", allow_digest=not export)
    elif kind == "local":
        key = "dest" if export else "src"
        if not attrs.get(key):
            raise UsageError(f"{option}: type=local needs {key}=DIRECTORY")
        if "\x00" in attrs[key]:
            raise UsageError(f"{option}: {key}= contains a NUL byte")
        if "digest" in attrs and not re.fullmatch(_DIGEST, attrs["digest"]):
            raise UsageError(f"{option}: digest={attrs['digest']!r} is not a digest (sha256:…)")
    return CacheSpec(kind, attrs)


def parse_platforms(values: Iterable[str]) -> tuple[Platform, ...]:
    """``--platform`` values (repeatable, each comma-separated) as distinct llb Platforms, in order."""
    from llb import InvalidGraph, Platform

    out: list[Platform] = []
    for value in values:
        for part in split_csv(value, option="--platform"):
            part = part.strip()
            if not part:
                raise UsageError(f"--platform {value!r}: empty entry; e.g. linux/amd64,linux/arm64")
            try:
                plat = Platform.parse(part)
            except InvalidGraph as exc:
                raise UsageError(f"--platform: {exc}") from None
            if plat not in out:
                out.append(plat)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class BuildOutputOptions:
    """Everything about where a build's result goes, as parsed from the command line."""

    outputs: tuple[OutputSpec, ...] = ()
    tags: tuple[str, ...] = ()
    push: bool = False
    platforms: tuple[Platform, ...] = ()
    cache_exports: tuple[CacheSpec, ...] = ()
    cache_imports: tuple[CacheSpec, ...] = ()
    force: bool = False
    """``--force``: ``-o DIR`` may write into a directory that is not empty."""


def parse_build_options(
    *,
    outputs: Sequence[str] = (),
    tags: Sequence[str] = (),
    push: bool = False,
    platforms: Sequence[str] = (),
    export_cache: Sequence[str] = (),
    import_cache: Sequence[str] = (),
    force: bool = False,
) -> BuildOutputOptions:
    """Parse and cross-check the CLI options of `envbuild build` (``-o``, ``-t``, ``--push``, ...)."""
    parsed = tuple(parse_output(o) for o in outputs)
    if len(parsed) > 1:
        raise UsageError("only one --output per build (BuildKit exports one result per solve)")
    seen: list[str] = []
    for t in tags:
        validate_image_name(t.strip(), option="--tag")
        if t.strip() not in seen:
            seen.append(t.strip())
    if push and parsed and parsed[0].type != "image":
        raise UsageError(f"--push needs an image output; it cannot be combined with --output type={parsed[0].type}")
    if push and not seen and not (parsed and parsed[0].names):
        raise UsageError("--push needs -t REGISTRY/NAME:TAG (or --output name=...): the name says where the image goes")
    return BuildOutputOptions(
        outputs=parsed,
        tags=tuple(seen),
        push=push,
        platforms=parse_platforms(platforms) if platforms else (),
        cache_exports=tuple(parse_cache(c, export=True) for c in export_cache),
        cache_imports=tuple(parse_cache(c, export=False) for c in import_cache),
        force=force,
    )


# ------------------------------------------------------------------ builders


LOCAL_CACHE_NOTE = (
    "type=local cache needs the client to serve a content store over the build session, which "
    "envbuild's client does not do yet; use type=registry (a local registry works: "
    "ref=127.0.0.1:5000/env:cache)"
)


def default_platforms(workers: Sequence[object]) -> tuple[Platform, ...]:
    """The builder's native platform: the first platform of the first worker (not amd64 by fiat)."""
    from llb import Platform

    for w in workers:
        plats = getattr(w, "platforms", ())
        if plats:
            return (plats[0],)
    return (Platform.host(),)


def check_platforms(requested: Sequence[Platform], workers: Sequence[object], *, builder: str) -> None:
    """Refuse platforms no worker lists (the builder would fail late, after pulling bases)."""
    available = [p for w in workers for p in getattr(w, "platforms", ())]
    if not available:
        return
    missing = [p for p in requested if p not in available]
    if missing:
        have = ", ".join(dict.fromkeys(str(p) for p in available))
        raise UsageError(
            f"--platform {','.join(str(p) for p in missing)}: {builder} builds only for {have}; "
            "register QEMU emulators on the builder host (`docker run --privileged --rm "
            "tonistiigi/binfmt --install all`, then restart the builder) or use a builder of that architecture"
        )


def platform_suffix(platform: Platform) -> str:
    """``linux/arm64/v8`` -> ``-linux-arm64-v8``: how per-platform tags and files are told apart."""
    return "-" + str(platform).replace("/", "-")


def _suffixed_name(name: str, suffix: str) -> str:
    m = _REFERENCE.match(name)
    if m is None:
        return name
    base = name[: m.start("tag") - 1] if m.group("tag") else name.split("@", 1)[0]
    tag = (m.group("tag") or "latest") + suffix
    return f"{base}:{tag[:128]}"


def _suffixed_path(path: str, suffix: str) -> str:
    p = Path(path)
    if p.suffix in (".tar", ".tgz", ".oci"):
        return str(p.with_name(p.stem + suffix + p.suffix))
    return str(p.with_name(p.name + suffix))


# ------------------------------------------------------------------ planning


@dataclass(frozen=True, slots=True)
class PushImage:
    """Push engine-store images through the engine API (`envbuild.publish.push_images`)."""

    names: tuple[str, ...]
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class SaveImage:
    """Write engine-store images as a `docker load` tarball (`envbuild.publish.save_images`)."""

    names: tuple[str, ...]
    dest: str


@dataclass(frozen=True, slots=True)
class SaveOCI:
    """Write engine-store images as an OCI image layout tarball (`envbuild.publish.save_oci`)."""

    names: tuple[str, ...]
    dest: str


PostAction = PushImage | SaveImage | SaveOCI


@dataclass(frozen=True, slots=True)
class PlannedSolve:
    """One solve: for `platform`, with this export and cache, then these post actions."""

    platform: Platform
    export: Export | None
    cache_imports: tuple[CacheOption, ...] = ()
    cache_exports: tuple[CacheOption, ...] = ()
    post: tuple[PostAction, ...] = ()
    image_names: tuple[str, ...] = ()
    describe: str = ""

    @property
    def is_image(self) -> bool:
        """Whether the export is an image (pass ``image_config`` to the solve only then)."""
        from llb.export import DockerImage, DockerTarExport, ImageExport, OCIExport

        return isinstance(self.export, (DockerImage, ImageExport, OCIExport, DockerTarExport))


@dataclass(frozen=True, slots=True)
class BuildPlan:
    solves: tuple[PlannedSolve, ...]
    warnings: tuple[str, ...] = ()
    force: bool = False
    """A directory output may go into a directory that is not empty (``--force``)."""


def _plan_cache(options: BuildOutputOptions, caps: BuilderCaps, *, image_output: bool) -> tuple[tuple, tuple]:
    for spec in options.cache_exports:
        if spec.type == "local":
            raise UsageError(f"--export-cache {LOCAL_CACHE_NOTE}")
        if spec.type not in caps.cache_exports:
            raise caps.refusal(
                f"export cache (type={spec.type})",
                f"cache-export:{spec.type}",
                alternative="On this builder use --export-cache type=inline with a pushed image, "
                "and --import-cache type=registry,ref=THAT_IMAGE on the next build",
            )
        if spec.type == "inline" and not image_output:
            raise UsageError("--export-cache type=inline stores the cache in the image: it needs an image output")
    for spec in options.cache_imports:
        if spec.type == "local":
            raise UsageError(f"--import-cache {LOCAL_CACHE_NOTE}")
        if spec.type not in caps.cache_imports:
            raise caps.refusal(f"import cache (type={spec.type})", f"cache-import:{spec.type}")
    return (
        tuple(s.to_llb() for s in options.cache_imports),
        tuple(s.to_llb() for s in options.cache_exports),
    )


def plan_build(
    options: BuildOutputOptions,
    *,
    caps: BuilderCaps,
    default_name: str | None,
    workers: Sequence[object] = (),
) -> BuildPlan:
    """Map parsed options onto solves for one builder.

    ``default_name`` names the image when neither ``-t`` nor ``name=`` does (e.g. ``<project>:dev``).
    ``workers`` is ``client.list_workers()``: the default platform is the builder's native one.
    Several platforms become one solve each; image names get a ``-os-arch`` tag suffix and file
    destinations a ``-os-arch`` suffix, since one moby/docker export holds one platform.
    """
    from llb.export import (
        DockerImage,
        DockerTarExport,
        ImageExport,
        LocalExport,
        OCIExport,
        TarExport,
    )

    platforms = options.platforms or default_platforms(workers)
    if options.platforms:
        check_platforms(platforms, workers, builder=caps.label)
    multi = len(platforms) > 1
    out = options.outputs[0] if options.outputs else None
    if out is None:
        out = OutputSpec("image", push=True) if options.push else OutputSpec("docker")
    elif options.push and out.type == "image":
        out = OutputSpec("image", names=out.names, push=True, insecure=out.insecure)
    image_output = out.type in ("docker", "image", "oci")
    names = out.names or options.tags
    if image_output and not names and default_name:
        names = (validate_image_name(default_name, option="image name"),)
    if out.type == "image" and not names:
        raise UsageError("--output type=image needs name= or --tag")
    if out.type in ("docker", "oci") and out.dest and not names:
        raise UsageError(f"--output type={out.type},dest=… needs name= or --tag (the tarball's image name)")
    imports, exports = _plan_cache(options, caps, image_output=image_output)
    warnings: list[str] = []
    if out.type in ("local", "tar") and options.tags:
        warnings.append(f"--tag is ignored with --output type={out.type}")

    solves: list[PlannedSolve] = []
    for plat in platforms:
        suffix = platform_suffix(plat) if multi else ""
        pnames = tuple(_suffixed_name(n, suffix) for n in names) if suffix else tuple(names)
        dest = _suffixed_path(out.dest, suffix) if (out.dest and suffix) else out.dest
        post: tuple[PostAction, ...] = ()
        export: Export
        stored: tuple[str, ...] = ()
        if out.type == "docker":
            if dest is None:
                export, stored = DockerImage(pnames), pnames
                what = f"image {', '.join(pnames)} in the Docker engine"
            elif "docker" in caps.exporters:
                export = DockerTarExport(dest, name=",".join(pnames))
                what = f"docker tarball {dest}"
            else:  # the builder writes only into the engine's store: envbuild saves from there
                export, stored = DockerImage(pnames), pnames
                post = (SaveImage(pnames, dest),)
                what = f"image {', '.join(pnames)} in the engine, saved to {dest}"
        elif out.type == "image":
            if caps.is_docker_engine and not (out.push and caps.push):
                export, stored = DockerImage(pnames), pnames
                post = (PushImage(pnames, out.insecure),) if out.push else ()
                what = f"image {', '.join(pnames)}" + (" pushed through the engine" if out.push else " in the engine")
            else:
                export = ImageExport(pnames, push=out.push, insecure=out.insecure)
                stored = pnames if caps.engine_store else ()
                what = f"image {', '.join(pnames)}" + (" pushed by the builder" if out.push else "")
        elif out.type == "oci":
            assert dest is not None
            if "oci" in caps.exporters:
                export = OCIExport(dest, name=",".join(pnames))
                what = f"OCI tarball {dest}"
            else:  # the builder writes only into the engine's store: envbuild converts `docker save`
                export, stored = DockerImage(pnames), pnames
                post = (SaveOCI(pnames, dest),)
                what = f"image {', '.join(pnames)} in the engine, converted to the OCI tarball {dest}"
        elif out.type == "tar":
            assert dest is not None
            export = TarExport(dest)
            what = f"filesystem tarball {dest}"
        else:
            assert dest is not None
            export = LocalExport(dest)
            what = f"filesystem in {dest}"
        solves.append(
            PlannedSolve(
                platform=plat,
                export=export,
                cache_imports=imports,
                cache_exports=exports,
                post=post,
                image_names=stored,
                describe=f"{plat}: {what}",
            )
        )
    return BuildPlan(solves=tuple(solves), warnings=tuple(warnings), force=options.force)


def destinations(plan: BuildPlan) -> list[tuple[str, bool]]:
    """Every host path the plan writes, with whether it is a directory (``type=local``)."""
    from llb.export import DockerTarExport, LocalExport, OCIExport, TarExport

    found: list[tuple[str, bool]] = []
    for step in plan.solves:
        if isinstance(step.export, (LocalExport, TarExport, OCIExport, DockerTarExport)):
            found.append((str(step.export.dest), isinstance(step.export, LocalExport)))
        found.extend((a.dest, False) for a in step.post if isinstance(a, (SaveImage, SaveOCI)))
    return found


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device"


def check_destination(dest: str, *, directory: bool, force: bool) -> None:
    """Refuse to put an output where something else is: a file output replaces only a regular file,
    a directory output goes only into a directory (an empty one, or any with ``force``)."""
    path = os.path.expanduser(dest)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    kind = _kind(mode)
    if directory:
        if kind != "a directory":
            raise UsageError(f"--output dest={dest}: {kind} is there; refusing to write a directory over it")
        if not force and any(os.scandir(path)):
            raise UsageError(f"--output dest={dest}: the directory is not empty; pass --force to write into it "
                             "(files of the same name are replaced)")
    elif kind != "a regular file":
        raise UsageError(f"--output dest={dest}: {kind} is there; refusing to replace anything but a regular file "
                         "(remove it or choose another path)")


def check_destinations(plan: BuildPlan) -> None:
    """`check_destination` for every path the plan writes; run before the build starts."""
    for dest, directory in destinations(plan):
        check_destination(dest, directory=directory, force=plan.force)
