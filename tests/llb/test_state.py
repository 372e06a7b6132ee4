"""State, sources and platforms: pure builder behaviour, no daemon."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest

import llb
from llb._proto import ops_pb2

AMD64 = llb.Platform("linux", "amd64")


def ops_of(state: llb.State) -> list[ops_pb2.Op]:
    return [op for _, op, _ in state.marshal(platform=AMD64).iter_ops()]


def source_op(state: llb.State) -> ops_pb2.Op:
    (first, _terminal) = ops_of(state)
    return first


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("debian", "docker.io/library/debian:latest"),
        ("debian:bookworm", "docker.io/library/debian:bookworm"),
        ("local/debian:bookworm", "docker.io/local/debian:bookworm"),
        ("docker.io/library/debian:latest", "docker.io/library/debian:latest"),
        ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
        ("ghcr.io/org/img", "ghcr.io/org/img:latest"),
        ("localhost/img:1", "localhost/img:1"),
        ("127.0.0.1:5000/x/y:v1.2", "127.0.0.1:5000/x/y:v1.2"),
        ("debian@sha256:" + "a" * 64, "docker.io/library/debian@sha256:" + "a" * 64),
        ("debian:12@sha256:" + "b" * 64, "docker.io/library/debian:12@sha256:" + "b" * 64),
        ("my-registry.example:443/a__b/c---d:" + "t" * 128, "my-registry.example:443/a__b/c---d:" + "t" * 128),
        ("x/a.b_c-d", "docker.io/x/a.b_c-d:latest"),
    ],
)
def test_image_reference_normalisation(ref: str, expected: str) -> None:
    assert llb.normalize_image_ref(ref) == expected
    assert source_op(llb.image(ref)).source.identifier == "docker-image://" + expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "Debian",
        "debian:",
        "debian:bad tag",
        " debian",
        "a//b",
        "debian@sha256:xyz",
        "-x",
        "a___b",
        "a_",
        "debian:" + "t" * 129,
        "debian:.x",
        "debian:t\u00e9",
        "host:/img",
        "host:\uff15/img",
        "-host.io/img",
        "debian@sha256:" + "g" * 31,
    ],
)
def test_invalid_image_references_are_rejected(ref: str) -> None:
    with pytest.raises(llb.InvalidGraph):
        llb.image(ref)


def test_uppercase_repository_gets_a_hint() -> None:
    with pytest.raises(llb.InvalidGraph, match="lowercase"):
        llb.image("Local/Debian")


def test_image_starts_with_default_path_and_resolve_mode_attr() -> None:
    state = llb.image("debian", resolve_mode="local")
    assert state.env("PATH") == llb.DEFAULT_PATH
    assert dict(source_op(state).source.attrs) == {"image.resolvemode": "local"}
    assert dict(source_op(llb.image("debian")).source.attrs) == {}
    with pytest.raises(llb.InvalidGraph, match="resolve_mode"):
        llb.image("debian", resolve_mode="always")


def test_states_are_immutable_values() -> None:
    base = llb.image("debian")
    changed = base.with_env("A", "1").with_cwd("/work").with_user("nobody")
    assert base.env("A") is None and base.cwd == "/" and base.user == ""
    assert changed.env("A") == "1" and changed.cwd == "/work" and changed.user == "nobody"
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.cwd = "/x"  # type: ignore[misc]
    assert base.with_env("A", "1") == base.with_env("A", "1")


def test_env_keeps_insertion_order_and_replaces_in_place() -> None:
    state = llb.scratch().with_envs({"B": "1", "A": "2"}).with_env("C", "3").with_env("B", "9")
    assert state.env_vars == (("B", "9"), ("A", "2"), ("C", "3"))
    assert state.envs == {"B": "9", "A": "2", "C": "3"}
    assert state.without_env("A").env_vars == (("B", "9"), ("C", "3"))


@pytest.mark.parametrize(("key", "value"), [("", "x"), ("A=B", "x"), ("A", 1), ("A\x00", "x"), ("A", "x\x00")])
def test_invalid_env_is_rejected(key: object, value: object) -> None:
    with pytest.raises(llb.InvalidGraph):
        llb.scratch().with_env(key, value)  # type: ignore[arg-type]


def test_cwd_relative_paths_follow_the_current_directory() -> None:
    state = llb.scratch().with_cwd("/srv").with_cwd("app/../data")
    assert state.cwd == "/srv/data"
    with pytest.raises(llb.InvalidGraph):
        state.with_cwd("")


def test_platform_of_state_reaches_its_ops() -> None:
    state = llb.image("debian").with_platform("linux/arm64").run("true").root()
    src, run, _ = ops_of(state)
    assert (src.platform.OS, src.platform.Architecture) == ("linux", "amd64")
    assert (run.platform.OS, run.platform.Architecture) == ("linux", "arm64")
    pinned = llb.image("debian", platform=llb.Platform.parse("linux/arm/v7"))
    op = source_op(pinned)
    assert (op.platform.Architecture, op.platform.Variant) == ("arm", "v7")


def test_marshal_platform_is_the_default_for_unpinned_ops() -> None:
    (src, _) = [op for _, op, _ in llb.image("debian").marshal(platform="linux/s390x").iter_ops()]
    assert src.platform.Architecture == "s390x"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm", "linux/arm/v7"),
        ("arm64", "linux/arm64"),
        ("windows/amd64", "windows/amd64"),
    ],
)
def test_platform_parse(spec: str, expected: str) -> None:
    assert str(llb.Platform.parse(spec)) == expected


@pytest.mark.parametrize("spec", ["", "linux/", "/amd64", "linux/amd64/v8/x", "plan10/amd64", "linux/AMD 64", 3])
def test_invalid_platforms_are_rejected(spec: object) -> None:
    with pytest.raises(llb.InvalidGraph):
        llb.Platform.parse(spec)  # type: ignore[arg-type]


def test_host_platform_is_linux() -> None:
    host = llb.Platform.host()
    assert host.os == "linux" and host.architecture
    assert llb.Platform.parse("linux") == host


def test_local_source_attrs() -> None:
    op = source_op(
        llb.local("context", include=["src/", "*.py"], exclude=["**/*.pyc"], follow_paths=["link"], session_id="s1")
    )
    assert op.source.identifier == "local://context"
    attrs = dict(op.source.attrs)
    assert json.loads(attrs.pop("local.includepattern")) == ["src/", "*.py"]
    assert json.loads(attrs.pop("local.excludepatterns")) == ["**/*.pyc"]
    assert json.loads(attrs.pop("local.followpaths")) == ["link"]
    assert attrs == {"local.session": "s1", "local.sharedkeyhint": "context"}
    assert dict(source_op(llb.local("ctx", shared_key_hint="")).source.attrs) == {}
    with pytest.raises(llb.InvalidGraph):
        llb.local("../up")
    with pytest.raises(llb.InvalidGraph, match="sequence"):
        llb.local("ctx", include="*.py")


def test_git_source() -> None:
    op = source_op(llb.git("https://github.com/moby/buildkit.git", "v0.8.3", keep_git_dir=True))
    assert op.source.identifier == "git://github.com/moby/buildkit.git#v0.8.3"
    assert dict(op.source.attrs) == {
        "git.fullurl": "https://github.com/moby/buildkit.git",
        "git.keepgitdir": "true",
    }
    assert source_op(llb.git("github.com/a/b")).source.identifier == "git://github.com/a/b"
    with pytest.raises(llb.InvalidGraph):
        llb.git("github.com/a/b", "has space")


def test_http_source() -> None:
    digest = "sha256:" + "c" * 64
    op = source_op(llb.http("https://example.com/f.tgz", checksum=digest, filename="f.tgz", chmod=0o755))
    assert op.source.identifier == "https://example.com/f.tgz"
    assert dict(op.source.attrs) == {"http.checksum": digest, "http.filename": "f.tgz", "http.perm": "0755"}
    with pytest.raises(llb.InvalidGraph):
        llb.http("ftp://example.com/x")
    with pytest.raises(llb.InvalidGraph):
        llb.http("https://example.com/x", checksum="md5")


def test_source_names_become_custom_names() -> None:
    definition = llb.image("debian", name="base image").marshal(platform=AMD64)
    assert definition.op_metadata(definition.digests[0]).description["llb.customname"] == "base image"


def test_network_coercion() -> None:
    assert (
        llb.Network("host") is llb.Network.HOST and llb.Network.HOST.name == "HOST" and llb.Network.NONE.value == "none"
    )
    assert (
        pickle.loads(pickle.dumps(llb.Network.NONE)) is llb.Network.NONE
        and copy.deepcopy(llb.Network.HOST) is llb.Network.HOST
    )
    assert repr(llb.Network.SANDBOX) == "<Network.SANDBOX: 'sandbox'>"
    with pytest.raises(ValueError):
        llb.Network("bridge")
    with pytest.raises(AttributeError):
        llb.Network.HOST.value = "x"  # type: ignore[misc]
    assert llb.Network.coerce("HOST") is llb.Network.HOST
    assert llb.scratch().with_network("none").network is llb.Network.NONE
    with pytest.raises(llb.InvalidGraph, match="sandbox, host, none"):
        llb.Network.coerce("bridge")


def test_scratch_marshals_to_an_empty_definition() -> None:
    definition = llb.scratch().marshal()
    assert len(definition) == 0 and definition.terminal == "" and definition.to_bytes() == b""


def test_invalid_graph_is_both_llb_error_and_value_error() -> None:
    with pytest.raises(llb.LLBError):
        llb.image("")
    with pytest.raises(ValueError):
        llb.image("")
