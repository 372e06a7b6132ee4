"""What envbuild does itself after a build when the builder cannot: push and save engine images.

The builder of an engine that keeps images in a graph driver (Docker 20.10, and later engines by
default) only writes into the engine's image store, so ``--output type=image,push=true`` is a ``moby``
export followed by a push through the engine API (credentials from ``~/.docker/config.json`` and its
credential helpers, via the docker SDK), and ``--output type=docker,dest=FILE`` is a ``moby`` export
followed by the engine's ``docker save``. Where the builder pushes or writes the tarball itself,
`execute_plan` reports what it pushed and saved the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from envbuild import engine_api
from envbuild._files import atomic_write
from envbuild.errors import EnvbuildError
from envbuild.outputs import (
    BuildPlan,
    PlannedSolve,
    PostAction,
    PushImage,
    SaveImage,
    SaveOCI,
    check_destination,
)
from llb.export import DockerTarExport, ImageExport, LocalExport, OCIExport, TarExport

if TYPE_CHECKING:
    import docker

__all__ = [
    "PublishError",
    "PushResult",
    "push_images",
    "save_images",
    "save_oci",
    "docker_archive_to_oci",
    "run_post_actions",
    "StepOutcome",
    "execute_plan",
    "staged",
]

MessageFn = Callable[[str], None]
_PUSHED_DIGEST = re.compile(r"\bdigest: (sha256:[0-9a-f]{64})\b")
TRANSFER_TIMEOUT = 300
"""Seconds one push or save call may wait on the engine (large images)."""


class PublishError(EnvbuildError):
    """Pushing or saving a built image failed after a successful build."""


@dataclass(frozen=True, slots=True)
class PushResult:
    name: str
    digest: str


def _registry_of(name: str) -> str:
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _push_hint(name: str, message: str) -> str:
    low = message.lower()
    registry = _registry_of(name)
    if any(s in low for s in ("unauthorized", "authentication required", "denied", "401", "403")):
        return f"log in first: `docker login {registry}` (envbuild uses the credentials in ~/.docker/config.json)"
    if "server gave http response to https client" in low:
        return (
            f'{registry} speaks plain HTTP: add it to "insecure-registries" in /etc/docker/daemon.json '
            "and restart the engine"
        )
    if any(s in low for s in ("connection refused", "no such host", "i/o timeout", "dial tcp")):
        return f"the registry {registry} is not reachable from the Docker engine"
    return ""


def _split_tag(name: str) -> tuple[str, str]:
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def push_images(
    names: Sequence[str],
    *,
    client: docker.DockerClient | None = None,
    on_message: MessageFn | None = None,
) -> list[PushResult]:
    """Push engine-store images by name; returns the manifest digest the registry reported."""
    from docker.errors import APIError

    client = client or engine_api.connect(timeout=TRANSFER_TIMEOUT)
    results: list[PushResult] = []
    for name in names:
        repo, tag = _split_tag(name)
        if on_message:
            on_message(f"pushing {name}")
        digest = ""
        try:
            for event in client.api.push(repo, tag=tag, stream=True, decode=True):
                error = event.get("error") or (event.get("errorDetail") or {}).get("message")
                if error:
                    hint = _push_hint(name, error)
                    raise PublishError(f"pushing {name} failed: {error}" + (f"; {hint}" if hint else ""))
                aux = event.get("aux") or {}
                status = event.get("status")
                if aux.get("Digest"):
                    digest = aux["Digest"]
                elif status and (line := _PUSHED_DIGEST.search(str(status))):
                    digest = line.group(1)  # engines with the containerd image store report it only here
                if on_message and status and not event.get("progressDetail"):
                    on_message(f"{event.get('id', '')}: {status}".lstrip(": "))
        except APIError as exc:
            detail = exc.explanation or str(exc)
            if exc.status_code == 404:
                raise PublishError(f"pushing {name} failed: no such image in the engine ({detail})") from None
            hint = _push_hint(name, str(detail))
            raise PublishError(f"pushing {name} failed: {detail}" + (f"; {hint}" if hint else "")) from None
        if not digest:
            raise PublishError(f"pushing {name} ended without a digest from the registry")
        results.append(PushResult(name, digest))
    return results


def save_images(
    names: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    client: docker.DockerClient | None = None,
) -> Path:
    """Write one engine image, under all of ``names``, as a `docker load` tarball, atomically."""
    from docker.errors import APIError

    if not names:
        raise ValueError("save_images needs at least one image name")
    client = client or engine_api.connect(timeout=TRANSFER_TIMEOUT)
    target = Path(dest).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target) as fh:
        try:
            if len(names) == 1:
                for chunk in client.api.get_image(names[0], chunk_size=1 << 20):
                    fh.write(chunk)
            else:
                with tempfile.TemporaryFile(dir=target.parent) as saved:
                    for chunk in client.api.get_image(names[0], chunk_size=1 << 20):
                        saved.write(chunk)
                    saved.seek(0)
                    _name_archive(saved, fh, names)
        except APIError as exc:
            raise PublishError(f"saving {', '.join(names)} to {target} failed: {exc.explanation or exc}") from None
    return target


def _name_archive(src: IO[bytes], dest: IO[bytes], names: Sequence[str]) -> None:
    """Copy a one-image `docker save` archive, naming its image ``names`` (the engine's API saves one
    name per image; ``docker save a b`` of two tags of one image writes both)."""
    with (
        tarfile.open(fileobj=src, mode="r:") as archive,
        tarfile.open(fileobj=dest, mode="w", format=tarfile.PAX_FORMAT) as out,
    ):
        for member in archive:
            data = archive.extractfile(member) if member.isfile() else None
            if data is not None and member.name in ("manifest.json", "repositories", "index.json"):
                _add_bytes(out, member.name, _renamed(member.name, json.loads(data.read()), names))
            else:
                out.addfile(member, data)


def _renamed(member: str, doc: Any, names: Sequence[str]) -> bytes:
    if member == "manifest.json":  # [{"Config": ..., "RepoTags": [...], "Layers": [...]}]
        doc = [{**entry, "RepoTags": list(names)} for entry in doc]
    elif member == "repositories":  # {"repo": {"tag": "<top layer id>"}}
        top = next((layer for tags in doc.values() for layer in tags.values()), None)
        doc = {}
        for name in names:
            repo, tag = _split_tag(name)
            doc.setdefault(repo, {})[tag] = top
    else:  # index.json (engines with the containerd image store): one descriptor per name
        from llb import normalize_image_ref

        first = doc["manifests"][0]
        doc["manifests"] = [
            {
                **first,
                "annotations": {
                    **first.get("annotations", {}),
                    "io.containerd.image.name": normalize_image_ref(name),
                    "org.opencontainers.image.ref.name": _split_tag(name)[1],
                },
            }
            for name in names
        ]
    return json.dumps(doc, separators=(",", ":")).encode()


_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


class _Hashing(io.RawIOBase):
    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        return data


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tf.addfile(info, io.BytesIO(data))


def docker_archive_to_oci(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Convert a `docker save` archive into an OCI image layout tarball (uncompressed layers).

    Docker's ``layer.tar`` files are the uncompressed layers, so their digests are the config's
    ``rootfs.diff_ids``; each is verified while it is copied.
    """
    target = Path(dest).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        atomic_write(target) as fh,
        tarfile.open(src, "r:") as archive,
        tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as out,
    ):

        def member_bytes(name: str) -> bytes:
            f = archive.extractfile(name)
            if f is None:
                raise PublishError(f"{src}: {name} is not a file in the docker archive")
            return f.read()

        entries = json.loads(member_bytes("manifest.json"))
        _add_bytes(out, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        written: set[str] = set()
        index: list[dict[str, Any]] = []
        for entry in entries:
            config = member_bytes(entry["Config"])
            config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
            diff_ids = json.loads(config)["rootfs"]["diff_ids"]
            if len(diff_ids) != len(entry["Layers"]):
                raise PublishError(f"{src}: layer count does not match the image config")
            layers = []
            for path, diff_id in zip(entry["Layers"], diff_ids, strict=True):
                member = archive.getmember(path)
                if diff_id not in written:
                    info = tarfile.TarInfo("blobs/sha256/" + diff_id.split(":", 1)[1])
                    info.size = member.size
                    info.mode = 0o644
                    reader = _Hashing(archive.extractfile(member))
                    out.addfile(info, reader)
                    if "sha256:" + reader.sha.hexdigest() != diff_id:
                        raise PublishError(f"{src}: layer {path} does not match its digest {diff_id}")
                    written.add(diff_id)
                layers.append({"mediaType": _OCI_LAYER, "digest": diff_id, "size": member.size})
            if config_digest not in written:
                _add_bytes(out, "blobs/sha256/" + config_digest.split(":", 1)[1], config)
                written.add(config_digest)
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": _OCI_MANIFEST,
                    "config": {"mediaType": _OCI_CONFIG, "digest": config_digest, "size": len(config)},
                    "layers": layers,
                },
                separators=(",", ":"),
            ).encode()
            manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            if manifest_digest not in written:
                _add_bytes(out, "blobs/sha256/" + manifest_digest.split(":", 1)[1], manifest)
                written.add(manifest_digest)
            for tag in entry.get("RepoTags") or [None]:
                desc: dict[str, Any] = {"mediaType": _OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest)}
                if tag:
                    desc["annotations"] = {
                        "io.containerd.image.name": tag,
                        "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[-1]
                        if ":" in tag.rsplit("/", 1)[-1]
                        else "latest",
                    }
                index.append(desc)
        _add_bytes(
            out,
            "index.json",
            json.dumps(
                {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index},
                separators=(",", ":"),
            ).encode(),
        )
    return target


def save_oci(
    names: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    client: docker.DockerClient | None = None,
) -> Path:
    """Engine images as an OCI image layout tarball: `docker save`, then converted."""
    target = Path(dest).expanduser().absolute()
    with tempfile.TemporaryDirectory(
        prefix="envbuild-oci-", dir=target.parent if target.parent.exists() else None
    ) as tmpdir:
        archive = save_images(names, Path(tmpdir) / "docker.tar", client=client)
        return docker_archive_to_oci(archive, target)


def run_post_actions(
    actions: Sequence[PostAction],
    *,
    client: docker.DockerClient | None = None,
    docker_host: str | None = None,
    on_message: MessageFn | None = None,
) -> dict[str, Any]:
    """Carry out a PlannedSolve's ``post`` steps; returns ``{"pushed": [...], "saved": [...]}``."""
    summary: dict[str, Any] = {"pushed": [], "saved": []}
    if not actions:
        return summary
    client = client or engine_api.connect(docker_host, timeout=TRANSFER_TIMEOUT)
    for action in actions:
        if isinstance(action, PushImage):
            summary["pushed"].extend(push_images(action.names, client=client, on_message=on_message))
        elif isinstance(action, SaveOCI):
            if on_message:
                on_message(f"saving {', '.join(action.names)} as an OCI layout to {action.dest}")
            summary["saved"].append(save_oci(action.names, action.dest, client=client))
        elif isinstance(action, SaveImage):
            if on_message:
                on_message(f"saving {', '.join(action.names)} to {action.dest}")
            summary["saved"].append(save_images(action.names, action.dest, client=client))
        else:
            raise TypeError(f"unknown post action {action!r}")
    return summary


@dataclass(frozen=True, slots=True)
class StepOutcome:
    step: PlannedSolve
    result: Any
    pushed: tuple[PushResult, ...]
    saved: tuple[Path, ...]


@contextlib.contextmanager
def staged(step: PlannedSolve, *, force: bool = False) -> Iterator[PlannedSolve]:
    """``step`` with its file or directory export sent to a hidden directory beside the destination;
    the result is moved into place only once the solve returned, and the hidden directory (partial
    files and all) is removed on every way out, Ctrl-C included."""
    export = step.export
    if not isinstance(export, (LocalExport, TarExport, OCIExport, DockerTarExport)):
        yield step
        return
    dest = Path(export.dest).expanduser().absolute()
    made = [p for p in reversed(dest.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".envbuild-partial", dir=dest.parent))
    placed = False
    try:
        received = staging / "result"
        yield replace(step, export=replace(export, dest=str(received)))
        if isinstance(export, LocalExport):
            _place_tree(received, dest, force=force)
        else:
            _place_file(received, dest)
        placed = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in reversed(made if not placed else ()):
            try:
                directory.rmdir()  # only the directories made for this output, and only when empty
            except OSError:
                break


def _place_file(received: Path, dest: Path) -> None:
    if not received.is_file():
        raise PublishError(f"the builder finished without sending {dest.name}; nothing was written")
    check_destination(str(dest), directory=False, force=False)
    os.replace(received, dest)


def _place_tree(received: Path, dest: Path, *, force: bool) -> None:
    received.mkdir(exist_ok=True)  # an empty result is an empty directory
    check_destination(str(dest), directory=True, force=force)
    if not dest.exists():
        os.rename(received, dest)
    elif not any(dest.iterdir()):
        os.replace(received, dest)  # onto an empty directory, atomically
    else:
        _merge_tree(received, dest)


def _merge_tree(src: Path, dst: Path) -> None:
    """Move ``src``'s entries into ``dst``: directories merge, anything else replaces what has its
    name; a symlink in ``dst`` is replaced, never followed."""
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
            _merge_tree(Path(entry.path), target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif os.path.lexists(target):
            target.unlink()
        os.rename(entry.path, target)


def _pushed_by_builder(step: PlannedSolve, result: Any) -> list[PushResult]:
    """The names an image export pushed, with the manifest digest the builder reported."""
    export = step.export
    if not (isinstance(export, ImageExport) and export.push):
        return []
    digest = (getattr(result, "exporter_response", None) or {}).get("containerimage.digest", "")
    if not digest:
        raise PublishError(f"the builder pushed {', '.join(export.name)} but reported no digest")
    return [PushResult(name, digest) for name in export.name]


def _saved_by_builder(step: PlannedSolve) -> list[Path]:
    """Image tarballs the builder's own exporter wrote (`oci`, `docker`)."""
    export = step.export
    if isinstance(export, (OCIExport, DockerTarExport)):
        return [Path(export.dest).expanduser().absolute()]
    return []


def execute_plan(
    plan: BuildPlan,
    solve: Callable[[PlannedSolve], Any],
    *,
    client: docker.DockerClient | None = None,
    docker_host: str | None = None,
    on_message: MessageFn | None = None,
) -> list[StepOutcome]:
    """Run every planned solve through `solve(step)` (the caller's ``llb.Client.solve`` call with
    ``export=step.export``, ``cache_imports``/``cache_exports`` and, when ``step.is_image``, the image
    config), then the step's push/save actions on the engine."""
    if on_message:
        for warning in plan.warnings:
            on_message(f"warning: {warning}")
    outcomes: list[StepOutcome] = []
    for step in plan.solves:
        with staged(step, force=plan.force) as staged_step:
            result = solve(staged_step)
        if step.post and client is None:
            client = engine_api.connect(docker_host, timeout=TRANSFER_TIMEOUT)
        summary = run_post_actions(step.post, client=client, on_message=on_message)
        outcomes.append(
            StepOutcome(
                step,
                result,
                (*_pushed_by_builder(step, result), *summary["pushed"]),
                (*_saved_by_builder(step), *summary["saved"]),
            )
        )
    return outcomes
