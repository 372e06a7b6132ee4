"""What `envbuild prune` may remove on an engine other people use too.

Images: only those this user built. Labels cannot say so (anyone can write any label), so `build`
remembers the id of every image it puts in the engine's store, in ``$XDG_CACHE_HOME/envbuild/images``
(one id per line, appended), and `prune` removes the dangling envbuild images among them.

Build cache: only envbuild's records. BuildKit keeps no owner per record; a record is envbuild's when
its description (the step that made it) names one of envbuild's own paths or cache ids, which every
networked step and cache mount of an envbuild build does. Records that say nothing of envbuild
(another tool's build, envbuild's file copies) are left alone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from envbuild import paths

if TYPE_CHECKING:
    import docker

VENDOR_LABEL = "ai.envbuild.vendor=envbuild"
ENVBUILD_RECORD = re.compile(r"/run/secrets/envbuild-|/run/envbuild-|/var/cache/envbuild/|\bid \"envbuild-")
"""What only envbuild's steps have in their description: the CA secret and TLS dir of every networked
step, and its cache mounts' paths and ids."""


def images_file() -> str:
    return str(paths.cache_dir() / "images")


def remember_image(image_id: str) -> None:
    """Note an image this user built (an append of one short line: safe with concurrent builds)."""
    if not image_id:
        return
    path = images_file()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(image_id + "\n")


def remembered_images() -> set[str]:
    try:
        with open(images_file(), encoding="utf-8", errors="replace") as fh:
            return {line.strip() for line in fh if line.startswith("sha256:")}
    except FileNotFoundError:
        return set()


@dataclass(frozen=True, slots=True)
class Pruned:
    images: tuple[str, ...]
    cache_records: int
    reclaimed: int


def prune(client: docker.DockerClient, *, build_cache: bool) -> Pruned:
    """Remove this user's dangling envbuild images and, with ``build_cache``, envbuild's unused
    build cache records; nothing else."""
    from docker.errors import APIError, ImageNotFound

    mine = remembered_images()
    removed: list[str] = []
    reclaimed = 0
    for image in client.images.list(filters={"dangling": True, "label": VENDOR_LABEL}):
        if image.id not in mine:
            continue
        try:
            client.images.remove(image.id)
        except ImageNotFound:
            continue
        except APIError:  # still used by a container, or by another image: kept
            continue
        removed.append(image.id)
        reclaimed += int(image.attrs.get("Size") or 0)
    records = 0
    if build_cache:
        ids = [r["ID"] for r in envbuild_cache_records(client)]
        if ids:
            # The engine filters by record id; types-docker's filter type names only dangling and until.
            answer = client.api.prune_builds(filters={"id": "^(" + "|".join(map(re.escape, ids)) + ")$"})  # type: ignore[arg-type]
            records = len(answer.get("CachesDeleted") or [])
            reclaimed += int(answer.get("SpaceReclaimed") or 0)
    return Pruned(tuple(removed), records, reclaimed)


def envbuild_cache_records(client: docker.DockerClient) -> list[dict[str, Any]]:
    """The build cache records envbuild made and no build uses now."""
    records = client.df().get("BuildCache") or []
    return [r for r in records if not r.get("InUse") and ENVBUILD_RECORD.search(r.get("Description") or "")]
