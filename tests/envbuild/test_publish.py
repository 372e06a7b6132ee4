"""Engine-side fallbacks without an engine: push event handling, OCI conversion, plan execution."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

import llb
from envbuild.errors import UsageError
from envbuild.outputs import BuildPlan, PlannedSolve, PushImage, SaveImage
from envbuild.publish import (
    PublishError,
    docker_archive_to_oci,
    execute_plan,
    push_images,
    run_post_actions,
    save_images,
)


class FakeAPI:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.pushes: list[tuple[str, str]] = []

    def push(self, repo: str, tag: str, stream: bool, decode: bool) -> Any:
        assert stream and decode
        self.pushes.append((repo, tag))
        return iter(self.events)


class FakeDocker:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.api = FakeAPI(events)


def test_push_reports_the_registry_digest() -> None:
    client = FakeDocker(
        [
            {"status": "The push refers to repository [r:5000/a]"},
            {"status": "Pushed", "progressDetail": {}, "id": "abc"},
            {"status": "v1: digest: sha256:1 size: 1", "aux": {"Tag": "v1", "Digest": "sha256:" + "1" * 64, "Size": 1}},
        ]
    )
    messages: list[str] = []
    (res,) = push_images(["r:5000/team/a:v1"], client=client, on_message=messages.append)  # type: ignore[arg-type]
    assert res.digest == "sha256:" + "1" * 64
    assert client.api.pushes == [("r:5000/team/a", "v1")]
    assert messages[0] == "pushing r:5000/team/a:v1"
    push_images(["r:5000/a"], client=client)  # type: ignore[arg-type]
    assert client.api.pushes[-1] == ("r:5000/a", "latest")


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("unauthorized: authentication required", "docker login reg.example.com"),
        ("denied: requested access to the resource is denied", "docker login reg.example.com"),
        ("Get https://reg.example.com/v2/: http: server gave HTTP response to HTTPS client", "insecure-registries"),
        ("dial tcp 10.0.0.1:443: connect: connection refused", "not reachable from the Docker engine"),
    ],
)
def test_push_errors_say_what_to_do(error: str, hint: str) -> None:
    client = FakeDocker([{"status": "Preparing"}, {"errorDetail": {"message": error}, "error": error}])
    with pytest.raises(PublishError) as info:
        push_images(["reg.example.com/team/env:v1"], client=client)  # type: ignore[arg-type]
    assert "pushing reg.example.com/team/env:v1 failed" in str(info.value) and hint in str(info.value)


def test_push_digest_from_the_status_line() -> None:
    """Engines with the containerd image store send the digest only in the last status line."""
    digest = "sha256:" + "2" * 64
    events = [{"status": "Pushed", "progressDetail": {}, "id": "abc"}, {"status": f"v1: digest: {digest} size: 694"}]
    client = FakeDocker(events)
    (res,) = push_images(["r:5000/a:v1"], client=client)  # type: ignore[arg-type]
    assert res.digest == digest


def test_push_without_digest_is_an_error() -> None:
    with pytest.raises(PublishError, match="without a digest"):
        push_images(["r/a:1"], client=FakeDocker([{"status": "done"}]))  # type: ignore[arg-type]


def _docker_archive(path: Path, layers: list[bytes], *, tamper: bool = False) -> str:
    diff_ids = ["sha256:" + hashlib.sha256(data).hexdigest() for data in layers]
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    entries = [f"l{i}/layer.tar" for i in range(len(layers))]
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["r:5000/team/a:v1", "b"], "Layers": entries}]).encode()
    with tarfile.open(path, "w") as tf:
        for name, data in [(config_name, config), ("manifest.json", manifest)] + [
            (e, d + (b"!" if tamper and i == 1 else b"")) for i, (e, d) in enumerate(zip(entries, layers, strict=True))
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return "sha256:" + hashlib.sha256(config).hexdigest()


def _layer(content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size = len(content)
        tf.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def test_docker_archive_to_oci(tmp_path: Path) -> None:
    layers = [_layer(b"base"), _layer(b"top"), _layer(b"base")]
    config_digest = _docker_archive(tmp_path / "d.tar", layers)
    out = docker_archive_to_oci(tmp_path / "d.tar", tmp_path / "sub" / "o.tar")
    with tarfile.open(out) as tf:
        names = tf.getnames()
        blobs = {n: tf.extractfile(n).read() for n in names if n.startswith("blobs/")}
        index = json.loads(tf.extractfile("index.json").read())
    assert names[0] == "oci-layout" and names[-1] == "index.json"
    assert len(blobs) == 4  # two distinct layers, config, manifest
    for name, data in blobs.items():
        assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    tags = [m["annotations"] for m in index["manifests"]]
    assert tags == [
        {"io.containerd.image.name": "r:5000/team/a:v1", "org.opencontainers.image.ref.name": "v1"},
        {"io.containerd.image.name": "b", "org.opencontainers.image.ref.name": "latest"},
    ]
    manifest = json.loads(blobs["blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]])
    assert manifest["config"]["digest"] == config_digest
    digests = ["sha256:" + hashlib.sha256(d).hexdigest() for d in layers]
    assert [layer["digest"] for layer in manifest["layers"]] == digests
    assert all(layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar" for layer in manifest["layers"])


def test_docker_archive_to_oci_refuses_a_corrupt_layer(tmp_path: Path) -> None:
    _docker_archive(tmp_path / "d.tar", [_layer(b"a"), _layer(b"b")], tamper=True)
    with pytest.raises(PublishError, match="does not match its digest"):
        docker_archive_to_oci(tmp_path / "d.tar", tmp_path / "o.tar")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tar"]


def test_execute_plan_runs_post_actions_in_order(tmp_path: Path) -> None:
    done: list[Any] = []
    client = FakeDocker([{"aux": {"Digest": "sha256:" + "2" * 64}}])
    plan = BuildPlan(
        solves=(
            PlannedSolve(platform=llb.Platform(), export=llb.DockerImage("r/a:1"), post=(PushImage(("r/a:1",)),)),
            PlannedSolve(platform=llb.Platform("linux", "arm64"), export=llb.TarExport(str(tmp_path / "x.tar"))),
        ),
        warnings=("careful",),
    )
    messages: list[str] = []

    def solve(step: PlannedSolve) -> str:
        done.append(step.platform)
        if isinstance(step.export, llb.TarExport):
            Path(step.export.dest).write_bytes(b"tar")
        return "result"

    outcomes = execute_plan(plan, solve, client=client, on_message=messages.append)  # type: ignore[arg-type]
    assert (tmp_path / "x.tar").read_bytes() == b"tar"
    assert done == [llb.Platform(), llb.Platform("linux", "arm64")]
    assert [o.result for o in outcomes] == ["result", "result"]
    assert outcomes[0].pushed[0].digest == "sha256:" + "2" * 64 and outcomes[1].pushed == ()
    assert messages[0] == "warning: careful"
    assert outcomes[0].step.is_image and not outcomes[1].step.is_image


def test_what_the_builder_pushed_and_saved_itself_is_reported(tmp_path: Path) -> None:
    """A builder with the image/oci exporters (a buildkitd; the engine with the containerd image store)
    pushes and writes tarballs itself: the outcome names them with the digest it reported."""
    digest = "sha256:" + "3" * 64
    dest = tmp_path / "image-oci.tar"
    plan = BuildPlan(
        solves=(
            PlannedSolve(platform=llb.Platform(), export=llb.ImageExport(["r/a:1", "r/a:latest"], push=True)),
            PlannedSolve(platform=llb.Platform(), export=llb.OCIExport(str(dest))),
        )
    )

    def solve(step: PlannedSolve) -> Any:
        if isinstance(step.export, llb.OCIExport):
            Path(step.export.dest).write_bytes(b"oci")
        return type("Result", (), {"exporter_response": {"containerimage.digest": digest}})()

    pushed, saved = execute_plan(plan, solve)
    assert [(p.name, p.digest) for p in pushed.pushed] == [("r/a:1", digest), ("r/a:latest", digest)]
    assert saved.saved == (dest,) and dest.read_bytes() == b"oci" and pushed.saved == ()


def test_run_post_actions_rejects_unknown() -> None:
    with pytest.raises(TypeError):
        run_post_actions([object()], client=FakeDocker([]))  # type: ignore[list-item,arg-type]
    assert run_post_actions([]) == {"pushed": [], "saved": []}
    assert SaveImage(("a",), "x").dest == "x"


# ---------------------------------------------------------------- all or nothing (issue 15, item 4)


def _export_plan(export: Any, *, force: bool = False) -> BuildPlan:
    return BuildPlan(solves=(PlannedSolve(platform=llb.Platform(), export=export),), force=force)


def _writes_then(fail: BaseException | None, data: bytes = b"x" * 1000) -> Any:
    """A solve that writes what a builder sends (half of it when it fails), like the llb session does."""

    def solve(step: PlannedSolve) -> str:
        dest = Path(step.export.dest)  # type: ignore[union-attr]
        if isinstance(step.export, llb.LocalExport):
            (dest / "sub").mkdir(parents=True)
            for i in range(50):
                (dest / "sub" / f".llb-tmp-{i}").write_bytes(data)
            if fail is None:
                for i in range(50):
                    (dest / "sub" / f".llb-tmp-{i}").rename(dest / "sub" / f"f{i}")
                (dest / "top.txt").write_bytes(b"top")
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            Path(f"{dest}.llb-partial").write_bytes(data[: len(data) // 2] if fail else data)
            if fail is None:
                Path(f"{dest}.llb-partial").rename(dest)
        if fail is not None:
            raise fail
        return "result"

    return solve


@pytest.mark.parametrize("fail", [llb.SolveError("the builder went away"), KeyboardInterrupt()])
@pytest.mark.parametrize("kind", ["tar", "local"])
def test_a_failed_or_interrupted_export_leaves_nothing(tmp_path: Path, fail: BaseException, kind: str) -> None:
    dest = tmp_path / "out" / ("r.tar" if kind == "tar" else "tree")
    export = llb.TarExport(str(dest)) if kind == "tar" else llb.LocalExport(str(dest))
    with pytest.raises(type(fail)):
        execute_plan(_export_plan(export), _writes_then(fail))
    assert list(tmp_path.iterdir()) == [], "a partial export (or a directory made for it) was left behind"


def test_an_export_lands_only_after_the_solve_returned(tmp_path: Path) -> None:
    seen: list[bool] = []
    dest = tmp_path / "r.tar"

    def solve(step: PlannedSolve) -> str:
        result = _writes_then(None)(step)
        seen.append(dest.exists())
        return result

    execute_plan(_export_plan(llb.TarExport(str(dest))), solve)
    assert seen == [False] and dest.read_bytes() == b"x" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.tar"]
    tree = tmp_path / "tree"
    execute_plan(_export_plan(llb.LocalExport(str(tree))), _writes_then(None))
    assert sorted(p.name for p in tree.iterdir()) == ["sub", "top.txt"] and len(list((tree / "sub").iterdir())) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.tar", "tree"]


def test_forced_export_into_a_directory_replaces_entries_without_following_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f0").write_text("outside")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "mine.txt").write_text("mine")
    (tree / "sub").symlink_to(outside)
    (tree / "top.txt").mkdir()
    execute_plan(_export_plan(llb.LocalExport(str(tree)), force=True), _writes_then(None))
    assert (tree / "mine.txt").read_text() == "mine"
    assert not (tree / "sub").is_symlink() and (tree / "sub" / "f0").read_bytes() == b"x" * 1000
    assert (outside / "f0").read_text() == "outside" and (tree / "top.txt").read_bytes() == b"top"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "tree"]


def test_a_destination_that_turned_into_a_symlink_is_not_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "r.tar"
    (tmp_path / "elsewhere").write_text("keep")

    def solve(step: PlannedSolve) -> str:
        result = _writes_then(None)(step)
        dest.symlink_to(tmp_path / "elsewhere")  # appeared while the build ran
        return result

    with pytest.raises(UsageError, match="a symlink is there"):
        execute_plan(_export_plan(llb.TarExport(str(dest))), solve)
    assert dest.is_symlink() and (tmp_path / "elsewhere").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "r.tar"]


class SavingAPI:
    def __init__(self, archive: bytes) -> None:
        self.archive = archive
        self.saved: list[str] = []

    def get_image(self, image: str, chunk_size: int) -> Any:
        self.saved.append(image)
        return iter([self.archive[i : i + 7] for i in range(0, len(self.archive), 7)])


def test_save_images_names_one_image_under_every_name(tmp_path: Path) -> None:
    _docker_archive(tmp_path / "d.tar", [_layer(b"base")])
    with tarfile.open(tmp_path / "d.tar", "a") as tf:
        data = json.dumps({"r:5000/team/a": {"v1": "l0"}}).encode()
        info = tarfile.TarInfo("repositories")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    client = FakeDocker([])
    client.api = SavingAPI((tmp_path / "d.tar").read_bytes())  # type: ignore[assignment]
    one = save_images(["r:5000/team/a:v1"], tmp_path / "one.tar", client=client)  # type: ignore[arg-type]
    assert one.read_bytes() == (tmp_path / "d.tar").read_bytes()
    both = save_images(["r:5000/team/a:v1", "c:2"], tmp_path / "both.tar", client=client)  # type: ignore[arg-type]
    assert client.api.saved == ["r:5000/team/a:v1", "r:5000/team/a:v1"]
    with tarfile.open(both) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())  # type: ignore[union-attr]
        repositories = json.loads(tf.extractfile("repositories").read())  # type: ignore[union-attr]
        assert tf.extractfile("l0/layer.tar").read() == _layer(b"base")  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == ["r:5000/team/a:v1", "c:2"]
    assert repositories == {"r:5000/team/a": {"v1": "l0"}, "c": {"2": "l0"}}
