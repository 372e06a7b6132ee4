"""`envbuild sync`: the project directory into a volume on another machine's engine, which has no
copy of this machine's files; `up` mounts that volume at the project directory (``/home/envd/NAME``).

Every file of the project that the ignore file does not exclude (`envbuild.ignorefile`) is sent, as
one tar stream through the engine's API, owned by the environment's user. Nothing there is deleted:
a file removed here stays there, and what was made in the environment is kept. The copy goes
through a container that is created (never started) from the environment's image and removed
afterwards; the volume is labelled with the environment and the project it belongs to.
"""

from __future__ import annotations

import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild import ignorefile
from envbuild.errors import RuntimeFailure, UsageError
from envbuild.runtime import engine
from envbuild.runtime.options import (
    HOME,
    LABEL_NAME,
    LABEL_PROJECT,
    LABEL_PROJECT_PATH,
    LABEL_VENDOR,
    project_name,
    project_volume,
    validate_name,
)

if TYPE_CHECKING:
    import docker

_SPOOL = 64 << 20
"""Bytes of tar stream kept in memory before it goes to a temporary file."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    volume: str
    files: int
    size: int
    """Bytes of file contents sent."""
    created: bool


def sync(
    client: docker.DockerClient, *, name: str, project: Path, image: str, owner: tuple[int, int]
) -> SyncResult:
    """Copy ``project`` into environment ``name``'s project volume, through a container of ``image``."""
    from docker.errors import APIError, NotFound
    from docker.types import Mount

    validate_name(name)
    labels = engine.image_labels(engine.get_image(client, image))
    workdir = f"{HOME}/{labels.get(LABEL_PROJECT) or project_name(project)}"
    volume = project_volume(name)
    mine = {LABEL_VENDOR: "envbuild", LABEL_NAME: name, LABEL_PROJECT_PATH: str(project)}
    created = False
    with engine.answering():
        try:
            found = client.volumes.get(volume)
            theirs = found.attrs.get("Labels") or {}
            if theirs.get(LABEL_NAME) != name or theirs.get(LABEL_PROJECT_PATH) != str(project):
                raise UsageError(
                    f"the volume {volume} belongs to {theirs.get(LABEL_PROJECT_PATH) or 'something else'}, "
                    f"not {project}; choose another --name"
                )
        except NotFound:
            client.volumes.create(volume, labels=mine)
            created = True
        with tempfile.SpooledTemporaryFile(_SPOOL) as stream:
            files, size = _tar(project, stream, owner)
            stream.seek(0)
            helper = client.containers.create(
                image, command=["true"], entrypoint=["true"], user="root", network_disabled=True,
                labels={LABEL_VENDOR: "envbuild", f"{LABEL_NAME}.sync": name},
                mounts=[Mount(workdir, volume, type="volume")],
            )
            try:
                helper.put_archive(workdir, stream)
            except APIError as exc:
                raise RuntimeFailure(f"copying the project into {volume} failed: {exc.explanation or exc}") from None
            finally:
                helper.remove(force=True)
    return SyncResult(volume, files, size, created)


def _tar(project: Path, out: tempfile.SpooledTemporaryFile[bytes], owner: tuple[int, int]) -> tuple[int, int]:
    """Write the project's files (not the excluded ones) as a tar stream owned by ``owner``; return
    (files, bytes of their contents). Sockets, FIFOs and devices are left out."""
    from llb.filesync import WalkOptions, walk

    uid, gid = owner

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    files = size = 0
    excludes = ignorefile.load(project).patterns
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        root = tar.gettarinfo(str(project), arcname=".")
        tar.addfile(owned(root))
        for entry in walk(project, WalkOptions(exclude=excludes)):
            mode = Path(entry.abspath).lstat().st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                continue
            tar.add(entry.abspath, arcname=entry.path, recursive=False, filter=owned)
            if stat.S_ISREG(mode):
                files += 1
                size += entry.size
    return files, size
