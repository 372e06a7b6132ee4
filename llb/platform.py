"""Target platforms (OCI `os/arch[/variant]`) for LLB vertices."""

from __future__ import annotations

import platform as _stdlib_platform
import re
from dataclasses import dataclass
from functools import cache

from .errors import InvalidGraph

__all__ = ["Platform"]

_KNOWN_OS = frozenset(
    {
        "linux",
        "windows",
        "darwin",
        "freebsd",
        "netbsd",
        "openbsd",
        "solaris",
        "illumos",
        "aix",
        "android",
        "ios",
        "plan9",
        "js",
        "wasip1",
    }
)
_COMPONENT = re.compile(r"[a-z0-9_]+")

# (arch, variant) spellings found in the wild -> canonical OCI names, as containerd normalises them.
_ARCH_ALIASES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armv6": ("arm", "v6"),
    "arm": ("arm", "v7"),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
    "386": ("386", ""),
}


def _normalise(os_: str, arch: str, variant: str) -> tuple[str, str, str]:
    os_ = os_.lower()
    arch = arch.lower()
    variant = variant.lower()
    if arch in _ARCH_ALIASES:
        canon, default_variant = _ARCH_ALIASES[arch]
        if canon == "arm64" and variant in ("8", "v8"):
            variant = ""
        elif variant.isdigit():
            variant = "v" + variant
        elif not variant:
            variant = default_variant
        arch = canon
    return os_, arch, variant


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform; the builder picks image variants and emulation by it."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __post_init__(self) -> None:
        os_, arch, variant = _normalise(self.os, self.architecture, self.variant)
        for label, value in (("os", os_), ("architecture", arch)):
            if not _COMPONENT.fullmatch(value):
                raise InvalidGraph(f"invalid platform {label} {value!r}: expected lowercase letters, digits or '_'")
        if variant and not _COMPONENT.fullmatch(variant):
            raise InvalidGraph(f"invalid platform variant {variant!r}")
        object.__setattr__(self, "os", os_)
        object.__setattr__(self, "architecture", arch)
        object.__setattr__(self, "variant", variant)

    @classmethod
    def parse(cls, spec: str) -> Platform:
        """Parses `os/arch[/variant]`, `os` or `arch` (like containerd's platforms.Parse)."""
        if not isinstance(spec, str) or not spec.strip():
            raise InvalidGraph(f"invalid platform {spec!r}: expected 'os/arch[/variant]', e.g. 'linux/arm64'")
        parts = spec.strip().lower().split("/")
        if len(parts) > 3 or any(not p for p in parts):
            raise InvalidGraph(f"invalid platform {spec!r}: expected 'os/arch[/variant]', e.g. 'linux/arm64'")
        if len(parts) == 1:
            (only,) = parts
            if only in _KNOWN_OS:
                host = cls.host()
                if only == host.os:
                    return host
                return cls(only, host.architecture, host.variant)
            return cls("linux", only)
        if parts[0] not in _KNOWN_OS:
            raise InvalidGraph(f"invalid platform {spec!r}: unknown operating system {parts[0]!r}")
        return cls(*parts)

    @classmethod
    def host(cls) -> Platform:
        """The Linux platform matching this machine's CPU (BuildKit workers run Linux)."""
        return _host_platform()

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


@cache
def _host_platform() -> Platform:
    machine = _stdlib_platform.machine().lower() or "amd64"
    arch, variant = _ARCH_ALIASES.get(machine, (machine, ""))
    return Platform("linux", arch, variant)
