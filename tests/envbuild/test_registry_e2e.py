"""End to end against the Docker engine and the loopback registry (127.0.0.1:5000, started by
`scripts/setup-engine.sh --registry`): push, pull back under another name and run; a base image
resolved from the registry; inline cache in a pushed image; tar/local/docker-tarball outputs; a
wrong builder address failing fast."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from envbuild import engine_api
from envbuild.capabilities import BuilderCaps, derive
from envbuild.outputs import parse_build_options, plan_build
from envbuild.publish import execute_plan

pytestmark = [pytest.mark.engine, pytest.mark.registry]

REGISTRY = os.environ.get("ENVBUILD_TEST_REGISTRY", "127.0.0.1:5000")
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
BASE_IMAGE = "local/debian:bookworm"


def _registry_reason() -> str | None:
    try:
        with _HTTP.open(f"http://{REGISTRY}/v2/", timeout=2) as resp:
            if resp.status == 200:
                return None
            return f"registry at {REGISTRY} answered {resp.status}"
    except OSError as exc:
        return f"no registry at {REGISTRY} ({exc}); run scripts/setup-engine.sh --registry"


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Any, Any]]:
    """(llb client on the engine, docker SDK client), or a clean skip saying what is missing."""
    reason = _registry_reason()
    if reason:
        pytest.skip(reason)
    import docker

    import llb

    try:
        bk = llb.connect(timeout=5)
    except llb.BuilderUnreachable as exc:
        pytest.skip(str(exc))
    dc = docker.from_env(timeout=300)
    try:
        dc.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        bk.close()
        pytest.skip(f"base image {BASE_IMAGE} missing; run scripts/setup-engine.sh")
    yield bk, dc
    bk.close()
    dc.close()


@pytest.fixture()
def uid() -> str:
    return uuid.uuid4().hex[:10]


def _hello_state(text: str) -> Any:
    import llb

    return llb.image(BASE_IMAGE).run(["sh", "-c", f"echo {text} > /hello"], network=llb.Network.NONE).root()


def _caps(env: tuple[Any, Any]) -> BuilderCaps:
    """What this engine and its builder report they can do."""
    return derive("docker", env[0].capabilities(), engine_api.engine_info())


def _build(env: tuple[Any, Any], state: Any, *, default_name: str | None = None, **options: Any) -> list[Any]:
    """What `envbuild build` does with the options: plan for the engine, solve, run post actions."""
    import llb

    bk, dc = env
    caps = _caps(env)
    plan = plan_build(parse_build_options(**options), caps=caps, default_name=default_name, workers=caps.workers)

    def solve(step: Any) -> Any:
        return bk.solve(
            state,
            export=step.export,
            image_config=llb.ImageConfig(cmd=["cat", "/hello"]) if step.is_image else None,
            cache_imports=step.cache_imports,
            cache_exports=step.cache_exports,
        )

    return [{"pushed": list(o.pushed), "saved": list(o.saved)} for o in execute_plan(plan, solve, client=dc)]


def _remove(dc: Any, *names: str) -> None:
    import docker

    for n in names:
        with contextlib.suppress(docker.errors.ImageNotFound):
            dc.images.remove(n, force=True)


def _manifest(repo: str, tag: str) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://{REGISTRY}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with _HTTP.open(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_push_pull_back_under_another_name_and_run(env: tuple[Any, Any], uid: str) -> None:
    _, dc = env
    ref = f"{REGISTRY}/envbuild-e2e/hello:{uid}"
    pulled = f"envbuild-e2e/pulled:{uid}"
    try:
        (summary,) = _build(env, _hello_state(f"pushed-{uid}"), tags=[ref], push=True)
        (pushed,) = summary["pushed"]
        assert pushed.name == ref and pushed.digest.startswith("sha256:")
        manifest = _manifest("envbuild-e2e/hello", uid)
        assert manifest["schemaVersion"] == 2 and manifest["layers"]
        _remove(dc, ref)
        image = dc.images.pull(f"{REGISTRY}/envbuild-e2e/hello", tag=uid)
        assert pushed.digest in " ".join(image.attrs.get("RepoDigests", []))
        image.tag(pulled)
        _remove(dc, ref)
        out = dc.containers.run(pulled, remove=True, network_mode="none")
        assert out.decode().strip() == f"pushed-{uid}"
    finally:
        _remove(dc, ref, pulled)


def test_base_image_resolved_through_the_registry(env: tuple[Any, Any], uid: str) -> None:
    import docker

    import llb

    bk, dc = env
    ref = f"{REGISTRY}/envbuild-e2e/base:{uid}"
    derived = f"envbuild-e2e/derived:{uid}"
    try:
        _build(env, _hello_state(f"base-{uid}"), tags=[ref], push=True)
        _remove(dc, ref)
        with pytest.raises(docker.errors.ImageNotFound):
            dc.images.get(ref)
        state = llb.image(ref).run(["sh", "-c", "cp /hello /copy"], network=llb.Network.NONE).root()
        bk.solve(state, export=llb.DockerImage(derived), image_config=llb.ImageConfig(cmd=["cat", "/copy"]))
        out = dc.containers.run(derived, remove=True, network_mode="none")
        assert out.decode().strip() == f"base-{uid}"
    finally:
        _remove(dc, ref, derived)


def test_inline_cache_travels_with_the_pushed_image(env: tuple[Any, Any], uid: str) -> None:
    _, dc = env
    ref = f"{REGISTRY}/envbuild-e2e/cached:{uid}"
    try:
        _build(env, _hello_state(f"cache-{uid}"), tags=[ref], push=True, export_cache=["type=inline"])
        manifest = _manifest("envbuild-e2e/cached", uid)
        with _HTTP.open(
            f"http://{REGISTRY}/v2/envbuild-e2e/cached/blobs/{manifest['config']['digest']}", timeout=10
        ) as resp:
            config = json.loads(resp.read())
        assert "moby.buildkit.cache.v0" in config
        _remove(dc, ref)
        _build(env, _hello_state(f"cache-{uid}"), tags=[ref], import_cache=[ref])
        assert dc.images.get(ref)
    finally:
        _remove(dc, ref)


def test_registry_cache_export_where_the_engine_has_it(env: tuple[Any, Any], uid: str) -> None:
    """A graph-driver engine's builder exports only inline cache: refused before building, saying why
    and who can. With the containerd image store the engine's builder writes it to the registry."""
    from envbuild.errors import UsageError

    cache = f"type=registry,ref={REGISTRY}/envbuild-e2e/cache:{uid}"
    if "registry" not in _caps(env).cache_exports:
        with pytest.raises(UsageError, match=r"graph driver.*containerd-snapshotter.*docker-container://buildkitd"):
            _build(env, _hello_state("x"), tags=["x:1"], export_cache=[cache])
        return
    name = f"envbuild-e2e/cache-src:{uid}"
    try:
        _build(env, _hello_state(f"cache-{uid}"), tags=[name], export_cache=[cache])
        with _HTTP.open(f"http://{REGISTRY}/v2/envbuild-e2e/cache/tags/list", timeout=10) as resp:
            assert uid in json.loads(resp.read())["tags"]
    finally:
        _remove(env[1], name)


def test_docker_tarball_output_is_docker_loadable(env: tuple[Any, Any], uid: str, tmp_path: Path) -> None:
    _, dc = env
    name = f"envbuild-e2e/saved:{uid}"
    dest = tmp_path / "out" / "image.tar"
    try:
        (summary,) = _build(env, _hello_state(f"saved-{uid}"), outputs=[f"type=docker,dest={dest}"], tags=[name])
        assert summary["saved"] == [dest]
        assert oct(dest.stat().st_mode & 0o777) != oct(0o600)
        _remove(dc, name)
        with dest.open("rb") as fh:
            loaded = dc.images.load(fh.read())
        assert any(name in img.tags for img in loaded)
        out = dc.containers.run(name, remove=True, network_mode="none")
        assert out.decode().strip() == f"saved-{uid}"
    finally:
        _remove(dc, name)


def test_tar_and_local_outputs(env: tuple[Any, Any], uid: str, tmp_path: Path) -> None:
    _, dc = env
    tar_dest = tmp_path / "rootfs.tar"
    _build(env, _hello_state(f"tar-{uid}"), outputs=[f"type=tar,dest={tar_dest}"])
    with tarfile.open(tar_dest) as tf:
        member = tf.extractfile("hello")
        assert member is not None and member.read().decode().strip() == f"tar-{uid}"
        assert "bin" in tf.getnames() or "usr/bin" in tf.getnames()
    imported = f"envbuild-e2e/imported:{uid}"
    try:
        with tar_dest.open("rb") as fh:
            dc.api.import_image_from_data(fh.read(), repository="envbuild-e2e/imported", tag=uid)
        out = dc.containers.run(imported, ["cat", "/hello"], remove=True, network_mode="none")
        assert out.decode().strip() == f"tar-{uid}"
    finally:
        _remove(dc, imported)
    local_dest = tmp_path / "rootfs"
    _build(env, _hello_state(f"local-{uid}"), outputs=[str(local_dest)])
    assert (local_dest / "hello").read_text().strip() == f"local-{uid}"
    assert (local_dest / "etc" / "debian_version").is_file()


def test_doctor_on_the_engine(env: tuple[Any, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from envbuild.cli.app import main

    try:
        main(["doctor", "--builder", "default", "--format", "json"])
    except SystemExit as exc:
        assert not exc.code
    report = json.loads(capsys.readouterr().out)
    assert report["reachable"] and report["builder_kind"] == "docker"
    assert report["native_platform"] == report["workers"][0]["platforms"][0]
    assert report["merge_diff"] is report["engine"]["containerd_image_store"] and "moby" in report["exporters"]
    assert ("oci" in report["exporters"]) is report["engine"]["containerd_image_store"]
    assert report["engine"]["reachable"] and isinstance(report["engine"]["nvidia_runtime"], bool)


def test_build_file_base_image_from_the_registry(env: tuple[Any, Any], uid: str, tmp_path: Path) -> None:
    """`base(image="127.0.0.1:5000/…")` in a build.envd goes through the registry end to end."""
    from envbuild.build import BuildOptions, build

    _, dc = env
    ref = f"{REGISTRY}/envbuild-e2e/envd-base:{uid}"
    tag = f"envbuild-e2e/from-registry:{uid}"
    try:
        _build(env, _hello_state(f"envd-base-{uid}"), tags=[ref], push=True)
        _remove(dc, ref)
        (tmp_path / "build.envd").write_text(
            f'# syntax=v1\ndef build():\n    base(image="{ref}", dev=False)\n    run(commands=["cp /hello /marker"])\n'
        )
        result = build(BuildOptions(path=str(tmp_path), tag=tag))
        assert not result.up_to_date and result.tag == tag
        out = dc.containers.run(tag, ["cat", "/marker"], remove=True, network_mode="none")
        assert out.decode().strip() == f"envd-base-{uid}"
    finally:
        _remove(dc, ref, tag)


def _check_oci_layout(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Every blob's name is its sha256, the index points at a manifest whose config and layers exist.
    Returns the index's descriptor and the blobs."""
    with tarfile.open(path) as tf:
        assert json.loads(tf.extractfile("oci-layout").read()) == {"imageLayoutVersion": "1.0.0"}
        blobs = {}
        for m in tf.getmembers():
            if m.name.startswith("blobs/sha256/") and m.isfile():
                data = tf.extractfile(m).read()
                assert hashlib.sha256(data).hexdigest() == m.name.rsplit("/", 1)[1]
                blobs["sha256:" + m.name.rsplit("/", 1)[1]] = data
        index = json.loads(tf.extractfile("index.json").read())
    (desc,) = index["manifests"]
    manifest = json.loads(blobs[desc["digest"]])
    assert len(blobs[desc["digest"]]) == desc["size"]
    assert manifest["config"]["digest"] in blobs
    for layer in manifest["layers"]:
        assert len(blobs[layer["digest"]]) == layer["size"]
    return desc, blobs


def _upload_layout(desc: dict[str, Any], blobs: dict[str, bytes], repo: str, tag: str) -> None:
    """Put an OCI layout's image into the registry with the distribution HTTP API (monolithic blob
    uploads, then the manifest), as any OCI client would; the engine then pulls it like any image."""
    manifest = json.loads(blobs[desc["digest"]])
    for blob in (manifest["config"], *manifest["layers"]):
        start = urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/blobs/uploads/", method="POST")
        with _HTTP.open(start, timeout=30) as resp:
            location = resp.headers["Location"]
        if location.startswith("/"):
            location = f"http://{REGISTRY}{location}"
        sep = "&" if "?" in location else "?"
        put = urllib.request.Request(
            f"{location}{sep}digest={blob['digest']}",
            data=blobs[blob["digest"]],
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        _HTTP.open(put, timeout=60).close()
    put = urllib.request.Request(
        f"http://{REGISTRY}/v2/{repo}/manifests/{tag}",
        data=blobs[desc["digest"]],
        method="PUT",
        headers={"Content-Type": desc["mediaType"]},
    )
    _HTTP.open(put, timeout=30).close()


def test_oci_output_on_the_engine(env: tuple[Any, Any], uid: str, tmp_path: Path) -> None:
    """The OCI layout is a valid image: sent to the registry blob by blob, the engine pulls and runs it.
    (The engine writes it itself where it has the `oci` exporter, else envbuild converts `docker save`.)"""
    import llb

    _, dc = env
    name = f"envbuild-e2e/oci:{uid}"
    dest = tmp_path / "image-oci.tar"
    pulled = f"{REGISTRY}/envbuild-e2e/oci-pulled:{uid}"
    try:
        (summary,) = _build(env, _hello_state(f"oci-{uid}"), outputs=[f"type=oci,dest={dest}"], tags=[name])
        assert summary["saved"] == [dest]
        desc, blobs = _check_oci_layout(dest)
        annotations = desc["annotations"]
        assert annotations["io.containerd.image.name"] in (name, llb.normalize_image_ref(name))
        assert annotations["org.opencontainers.image.ref.name"] == uid
        _upload_layout(desc, blobs, "envbuild-e2e/oci-pulled", uid)
        dc.images.pull(f"{REGISTRY}/envbuild-e2e/oci-pulled", tag=uid)
        out = dc.containers.run(pulled, ["cat", "/hello"], remove=True, network_mode="none")
        assert out.decode().strip() == f"oci-{uid}"
    finally:
        _remove(dc, name, pulled)
