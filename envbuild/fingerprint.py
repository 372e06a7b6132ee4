"""A fingerprint of the code that turns a spec into LLB.

The skip check compares a content digest stored on the image with the digest of this build's
inputs. The compiler's own code is one of those inputs: an envbuild whose compiler changed (an
upgrade, or a development checkout) must rebuild even when the version number did not change.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from envbuild.quickcheck import sha256

_PACKAGES = ("envbuild/compiler", "llb")


@cache
def compiler_fingerprint() -> str:
    """sha256 (first 16 hex digits) over the source of the compiler and the LLB builder."""
    root = Path(__file__).resolve().parent.parent
    h = sha256()
    for package in _PACKAGES:
        for path in sorted((root / package).glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
