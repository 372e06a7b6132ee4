"""`envbuild prune` on a shared engine: only this user's dangling images, only envbuild's cache records."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from envbuild.runtime import prune as P

ENVBUILD = Path(sys.executable).with_name("envbuild")
BASE_IMAGE = "local/debian:bookworm"


class _Image:
    def __init__(self, image_id: str) -> None:
        self.id = image_id
        self.attrs = {"Size": 1_000_000}


class _Engine:
    """The three calls prune makes, on a store holding other users' images and cache too."""

    def __init__(self, images: list[str], records: list[dict[str, Any]]) -> None:
        self.images = self
        self.api = self
        self.dangling = images
        self.records = records
        self.removed: list[str] = []
        self.pruned_filter: dict[str, str] | None = None

    def list(self, filters: dict[str, Any]) -> list[_Image]:
        assert filters == {"dangling": True, "label": "ai.envbuild.vendor=envbuild"}
        return [_Image(i) for i in self.dangling]

    def remove(self, image_id: str) -> None:
        self.removed.append(image_id)

    def df(self) -> dict[str, Any]:
        return {"BuildCache": self.records}

    def prune_builds(self, filters: dict[str, str]) -> dict[str, Any]:
        self.pruned_filter = filters
        pattern = re.compile(filters["id"])
        gone = [r["ID"] for r in self.records if pattern.fullmatch(r["ID"])]
        return {"CachesDeleted": gone, "SpaceReclaimed": 10 * len(gone)}


RECORDS = [  # descriptions as Docker 20.10 reports them
    {"ID": "a1", "InUse": False, "Description": "mount / from exec /bin/sh -c set -eu\nif [ -s "
                                               "/run/secrets/envbuild-ca.crt ]; then\n  b=/run/envbuild-tls/ca.pem"},
    {"ID": "a2", "InUse": False, "Description": 'cached mount /var/lib/apt/lists from exec /bin/sh -c set -eu '
                                               'with id "envbuild-apt-lists"'},
    {"ID": "a3", "InUse": True, "Description": "cached mount /var/cache/envbuild/uv from exec /bin/sh -c ..."},
    {"ID": "b1", "InUse": False, "Description": "mount / from exec /bin/sh -c apt-get install -y nginx"},
    {"ID": "b2", "InUse": False, "Description": "cached mount /root/.cache/pip from exec /bin/sh -c pip install x"},
    {"ID": "b3", "InUse": False, "Description": "local source for context"},
]


def test_prune_removes_only_this_users_images_and_envbuilds_unused_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    P.remember_image("sha256:mine1")
    P.remember_image("sha256:mine2")
    engine = _Engine(["sha256:mine1", "sha256:theirs", "sha256:mine2"], RECORDS)
    done = P.prune(engine, build_cache=False)  # type: ignore[arg-type]
    assert engine.removed == ["sha256:mine1", "sha256:mine2"] and done.images == ("sha256:mine1", "sha256:mine2")
    assert engine.pruned_filter is None and done.cache_records == 0
    engine = _Engine([], RECORDS)
    done = P.prune(engine, build_cache=True)  # type: ignore[arg-type]
    assert done.cache_records == 2 and engine.pruned_filter == {"id": "^(a1|a2)$"}


def exists(engine: Any, image_id: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        engine.images.get(image_id)
    except ImageNotFound:
        return False
    return True


@pytest.mark.engine
def test_prune_on_a_shared_engine(tmp_path: Path) -> None:
    """Two users of one engine each leave a dangling envbuild image; a third tool leaves build cache.
    One user's prune removes their own image only; the cache records prune would take are envbuild's."""
    import docker

    import llb

    def user(name: str) -> dict[str, str]:
        home = tmp_path / name
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("BUILDKIT_HOST", "ENVBUILD_CONTEXT")}
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"))
        return env

    def dangling_image(env: dict[str, str], project: Path) -> str:
        """Build twice with a change: the first image loses its tag."""
        ids = []
        for i in range(2):
            (project / "build.envd").write_text(f'def build():\n    base(image="{BASE_IMAGE}", dev=False)\n'
                                                f'    run(commands=["echo {uuid.uuid4().hex} {i} > /x"])\n')
            r = subprocess.run([str(ENVBUILD), "build", "-p", str(project), "--progress", "quiet"], env=env,
                               capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, r.stderr[-2000:]
            ids.append(r.stdout.strip().splitlines()[-1])
        return ids[0]

    alice, bob = user("alice"), user("bob")
    projects = [tmp_path / f"prune-{who}-{uuid.uuid4().hex[:6]}" for who in ("a", "b")]
    for p in projects:
        p.mkdir()
    engine = docker.from_env()
    try:
        hers, his = dangling_image(alice, projects[0]), dangling_image(bob, projects[1])
        token = uuid.uuid4().hex  # another tool's build on the same engine (llb: a plain BuildKit client)
        with llb.connect() as other:
            other.solve(llb.image(BASE_IMAGE).run(["sh", "-c", f"echo {token} > /t"]).root())
        kept_before = {i: exists(engine, i) for i in (hers, his)}
        r = subprocess.run([str(ENVBUILD), "prune"], env=alice, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert exists(engine, his) == kept_before[his], "another user's image was removed"
        assert not exists(engine, hers), r.stdout
        selected = P.envbuild_cache_records(engine)
        assert selected and all(P.ENVBUILD_RECORD.search(s["Description"]) for s in selected)
        assert not any(token in (s.get("Description") or "") for s in selected), "another tool's cache selected"
        assert any(token in (rec.get("Description") or "") for rec in engine.df()["BuildCache"])
        if not kept_before[his]:
            pytest.skip("this engine's image store keeps no untagged images (containerd): nothing for prune to keep")
    finally:
        for p in projects:
            subprocess.run(["docker", "rmi", "-f", f"{p.name}:latest"], capture_output=True, check=False)  # dev=False
        subprocess.run(["docker", "image", "prune", "-f", "--filter", "label=ai.envbuild.project=" + projects[1].name],
                       capture_output=True, check=False)
