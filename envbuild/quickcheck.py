"""`envbuild build`'s "nothing changed" answer without evaluating build.envd.

The full skip check evaluates the build files and compares the content digest of the spec and its
inputs with the image's ``ai.envbuild.digest`` label; loading the frontend for that is most of a
no-op build's time. Evaluation is hermetic: the spec depends only on the bytes of the files the
evaluation read, the function, the user config, the lock file and envbuild's own code. So a build
also stores which files those were and a key over them (label ``ai.envbuild.inputs``); when the key
computed now from the same files matches, evaluating again would give the same spec and digest.
Anything this module cannot vouch for (a file from a git repository, a moved base image, another
envbuild) makes it answer "don't know", and the full check runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

LABEL = "ai.envbuild.inputs"
DIGEST_LABEL = "ai.envbuild.digest"
_FORMAT = 1
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CODE = ("envbuild", "envbuild/compiler", "frontend", "frontend/data", "llb")
"""Directories whose files shape a spec or its image; a change in any of them voids every key and
every ``ai.envbuild.digest`` (a development checkout rebuilds although the version did not change)."""


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def hash_inputs(h: Any, context_dir: str, rels: Iterable[str]) -> None:
    """Feed the contents of the spec's input files and directories (relative to the context) into
    ``h``; a directory is every regular file below it, in path order, without following links,
    leaving out what the context's ignore file excludes (`envbuild.ignorefile`), whose digest goes in."""
    from envbuild import ignorefile

    ignore = ignorefile.load(context_dir)
    matcher = ignore.matcher()
    update = h.update
    if ignore.file is not None:
        update(f"ignore {ignore.file} {ignore.digest}".encode() + b"\0")
    for rel in sorted(set(rels)):
        p = os.path.join(context_dir, rel)
        update(rel.encode() + b"\0")
        if os.path.isdir(p):
            found: list[str] = []
            for top, dirs, files in os.walk(p):
                if matcher:
                    below = os.path.relpath(top, context_dir).replace(os.sep, "/")
                    dirs[:] = [d for d in dirs if not matcher.matches(f"{below}/{d}")
                               or matcher.may_reinclude_below(f"{below}/{d}")]
                    files = [f for f in files if not matcher.matches(f"{below}/{f}")]
                dirs.sort()
                found.extend(os.path.join(top, f) for f in files if os.path.isfile(os.path.join(top, f)))
            for f in sorted(found):
                update(os.path.relpath(f, context_dir).encode() + b"\0" + bytes.fromhex(file_digest(f)) + b"\0")
        elif os.path.isfile(p):
            update(bytes.fromhex(file_digest(p)) + b"\0")
        else:
            update(b"missing\0")


@functools.cache
def code_fingerprint() -> str:
    """sha256 (16 hex digits) over envbuild's, the frontend's and llb's source and data files
    (~700 KB: read once per process)."""
    h = hashlib.sha256()
    for rel in _CODE:
        d = os.path.join(_ROOT, rel)
        try:
            names = sorted(n for n in os.listdir(d) if n.endswith((".py", ".json")))
        except OSError:
            continue
        for name in names:
            with open(os.path.join(d, name), "rb") as f:
                h.update(f"{rel}/{name}".encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()[:16]


def locate(build_file: str) -> tuple[str, str]:
    """(context directory, build file inside it) as the full build path resolves them."""
    context_dir = os.path.realpath(os.path.dirname(build_file) or ".")
    return context_dir, os.path.join(context_dir, os.path.basename(build_file))


def label_path(label: str, context_dir: str) -> str | None:
    """The local file a ``SourceFile`` label names, or None for one fetched from a git repository."""
    if "//" in label or label.startswith("git+"):
        return None
    if label.startswith("~/"):
        return os.path.join(os.path.expanduser("~"), label[2:])
    if os.path.isabs(label):
        return label
    return os.path.join(context_dir, label)


def _key(
    *,
    files: Sequence[str],
    inputs: Sequence[str],
    base: str,
    base_id: str,
    context_dir: str,
    build_file: str,
    function: str,
    project: str,
    owner: tuple[int, int] | None,
    network: str,
) -> str | None:
    from envbuild import __version__
    from frontend.target import user_config_path

    h = hashlib.sha256()
    lock = build_file + ".lock"
    cfg = user_config_path()
    who = f"{owner[0]}:{owner[1]}" if owner is not None else f"process {os.getuid()}:{os.getgid()}"
    head = [
        f"envbuild {__version__} code {code_fingerprint()}",
        f"target {os.path.relpath(build_file, context_dir)} {function}",
        f"project {project}",
        f"owner {who}",
        f"network {network}",
        f"base {base} {base_id}",
        f"lock {file_digest(lock) if os.path.isfile(lock) else 'absent'}",
        f"user config {file_digest(cfg) if os.path.isfile(cfg) else 'absent'}",
    ]
    for label in files:
        path = label_path(label, context_dir)
        if path is None:
            return None
        head.append(f"file {label} {file_digest(path) if os.path.isfile(path) else 'missing'}")
    for part in head:
        h.update(part.encode() + b"\0")
    hash_inputs(h, context_dir, inputs)
    return "sha256:" + h.hexdigest()


def make_label(*, files: Sequence[str], inputs: Sequence[str], base: str, base_id: str, **target: Any) -> str | None:
    """The ``ai.envbuild.inputs`` label for a build, or None when its inputs cannot be vouched for
    without evaluating (files from git repositories). ``target``: `_key`'s context_dir, build_file,
    function, project, owner and network, as `up_to_date` will see them."""
    key = _key(files=files, inputs=inputs, base=base, base_id=base_id, **target)
    if key is None:
        return None
    return json.dumps(
        {"v": _FORMAT, "key": key, "files": list(files), "inputs": list(inputs), "base": base}, separators=(",", ":")
    )


def up_to_date(
    *,
    build_file: str,
    function: str,
    tag: str,
    project: str,
    owner: tuple[int, int] | None,
    network: str,
) -> str | None:
    """The image's content digest when ``tag`` was built from exactly these inputs, else None
    (also None for "cannot tell": the caller then runs the full check)."""
    from envbuild import images

    labels = images.image_labels(tag)
    if not labels or LABEL not in labels or DIGEST_LABEL not in labels:
        return None
    try:
        stored = json.loads(labels[LABEL])
        if stored.get("v") != _FORMAT:
            return None
        files, inputs, base, key = stored["files"], stored["inputs"], stored["base"], stored["key"]
        if not (isinstance(base, str) and all(isinstance(x, str) for x in (*files, *inputs))):
            return None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    info = images.inspect_image(base)
    base_id = str(info.get("Id")) if info else "unresolved"
    context_dir, build_file = locate(build_file)
    try:
        now = _key(
            files=files,
            inputs=inputs,
            base=base,
            base_id=base_id,
            context_dir=context_dir,
            build_file=build_file,
            function=function,
            project=project,
            owner=owner,
            network=network,
        )
    except OSError:
        return None
    return labels[DIGEST_LABEL] if now == key else None
