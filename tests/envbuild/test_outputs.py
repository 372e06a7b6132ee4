"""Parsing of --output/--export-cache/--import-cache/--platform/--tag and per-builder plans."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llb
from envbuild.errors import UsageError
from envbuild.outputs import (
    BuildOutputOptions,
    BuildPlan,
    CacheSpec,
    OutputSpec,
    PushImage,
    SaveImage,
    SaveOCI,
    check_destinations,
    check_platforms,
    default_platforms,
    parse_build_options,
    parse_cache,
    parse_output,
    parse_platforms,
    plan_build,
    split_csv,
    validate_image_name,
)
from llb.client import WorkerInfo
from tests.envbuild.test_capabilities import docker20, docker26, standalone

AMD64 = llb.Platform("linux", "amd64")
ARM64 = llb.Platform("linux", "arm64")
ENGINE_WORKERS = [WorkerInfo("moby", (AMD64, llb.Platform("linux", "386")), {})]
ARM_WORKERS = [WorkerInfo("w0", (ARM64, AMD64), {})]


def builder_caps(kind: str) -> Any:
    """What the builder reported, as measured: ``docker`` is Docker 20.10 (overlay2), ``containerd``
    Docker 26 with the containerd image store, the rest a standalone buildkitd."""
    if kind == "docker":
        return docker20()
    if kind == "containerd":
        return docker26(containerd=True)
    return standalone(kind)


# ---------------------------------------------------------------- CSV


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("a=1,b=2", ["a=1", "b=2"]),
        ('type=image,"name=a:1,b:2",push=true', ["type=image", "name=a:1,b:2", "push=true"]),
        ('"dest=with ""quotes"""', ['dest=with "quotes"']),
        ("a,,b", ["a", "", "b"]),
        ("", [""]),
        ('"x",y', ["x", "y"]),
    ],
)
def test_split_csv(text: str, fields: list[str]) -> None:
    assert split_csv(text, option="-o") == fields


@pytest.mark.parametrize(
    ("text", "fragment"),
    [('"abc', "unterminated"), ('a"b', "quote inside"), ('"a"b', "after a quoted field"), ("a\nb", "line breaks")],
)
def test_split_csv_errors(text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment):
        split_csv(text, option="-o")


# ---------------------------------------------------------------- --output


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("type=docker", OutputSpec("docker")),
        ("type=docker,name=a:1,dest=out.tar", OutputSpec("docker", names=("a:1",), dest="out.tar")),
        (
            'type=image,"name=reg:5000/a:1,reg:5000/b",push=true',
            OutputSpec("image", names=("reg:5000/a:1", "reg:5000/b"), push=True),
        ),
        ("type=image,name=a,push=false", OutputSpec("image", names=("a",))),
        (
            "type=image,name=a,push=1,registry.insecure=true",
            OutputSpec("image", names=("a",), push=True, insecure=True),
        ),
        (
            "type=registry,name=reg.example.com/team/env:v1",
            OutputSpec("image", names=("reg.example.com/team/env:v1",), push=True),
        ),
        ("TYPE=OCI,dest=/tmp/o.tar", OutputSpec("oci", dest="/tmp/o.tar")),
        ("type=tar,dest=rootfs.tar", OutputSpec("tar", dest="rootfs.tar")),
        ("type=local,dest=./out", OutputSpec("local", dest="./out")),
        ("./out", OutputSpec("local", dest="./out")),
        (" type=local , dest = out ", OutputSpec("local", dest="out")),
    ],
)
def test_parse_output(text: str, spec: OutputSpec) -> None:
    assert parse_output(text) == spec


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty value"),
        ("name=a", "type= is missing"),
        ("type=s3", "unknown type='s3'"),
        ("type=tar", "type=tar needs dest=PATH"),
        ("type=local,dest=", "type=local needs dest=PATH"),
        ("type=tar,dest=-", "standard output"),
        ("type=tar,dest=x,name=a", "type=tar does not take name="),
        ("type=image,name=a,push=yes", "push='yes' is not a boolean"),
        ("type=image,name=Upper/Case", "must be lowercase"),
        ("type=image,name=a@sha256:" + "a" * 64, "digest"),
        ("type=image,name=a,name=b", "name= is given twice"),
        ("type=image,name", "expected key=value"),
        ("type=docker,compression=zstd", "does not take compression="),
    ],
)
def test_parse_output_errors(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_output(text)
    assert fragment in str(info.value)
    assert str(info.value).startswith("--output")


# ---------------------------------------------------------------- cache


@pytest.mark.parametrize(
    ("text", "export", "spec"),
    [
        (
            "type=registry,ref=reg:5000/env:cache,mode=max",
            True,
            CacheSpec("registry", {"ref": "reg:5000/env:cache", "mode": "max"}),
        ),
        ("type=inline", True, CacheSpec("inline")),
        ("type=local,dest=/tmp/c,mode=min", True, CacheSpec("local", {"dest": "/tmp/c", "mode": "min"})),
        ("type=registry,ref=reg:5000/env:cache", False, CacheSpec("registry", {"ref": "reg:5000/env:cache"})),
        ("reg:5000/env:cache", False, CacheSpec("registry", {"ref": "reg:5000/env:cache"})),
        ("type=local,src=/tmp/c", False, CacheSpec("local", {"src": "/tmp/c"})),
    ],
)
def test_parse_cache(text: str, export: bool, spec: CacheSpec) -> None:
    assert parse_cache(text, export=export) == spec


@pytest.mark.parametrize(
    ("text", "export", "fragment"),
    [
        ("type=registry", True, "needs ref=IMAGE"),
        ("type=registry,ref=r/x,mode=all", True, "mode='all' must be min or max"),
        ("type=local", True, "needs dest=DIRECTORY"),
        ("type=local,dest=/c", False, "does not take dest="),
        ("type=local", False, "needs src=DIRECTORY"),
        ("type=inline", False, "inline cache is imported with type=registry"),
        ("type=inline,mode=max", True, "does not take mode="),
        ("type=gha", True, "unknown type='gha'"),
        ("type=registry,ref=r/x,mode=max", False, "does not take mode="),
        ("type=local,src=/c,digest=md5:x", False, "is not a digest"),
    ],
)
def test_parse_cache_errors(text: str, export: bool, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_cache(text, export=export)
    assert fragment in str(info.value)
    assert str(info.value).startswith("--export-cache" if export else "--import-cache")


def test_cache_spec_to_llb() -> None:
    opt = parse_cache("type=registry,ref=r:5000/x:c,mode=max", export=True).to_llb()
    assert opt == llb.CacheOption("registry", {"ref": "r:5000/x:c", "mode": "max"})


# ---------------------------------------------------------------- platforms, tags


def test_parse_platforms() -> None:
    assert parse_platforms(["linux/amd64,linux/arm64", "linux/arm64", "aarch64"]) == (AMD64, ARM64)
    assert parse_platforms(["linux/arm/v7"]) == (llb.Platform("linux", "arm", "v7"),)
    assert parse_platforms([]) == ()
    with pytest.raises(UsageError, match=r"--platform.*unknown operating system"):
        parse_platforms(["plan10/amd64"])
    with pytest.raises(UsageError, match="empty entry"):
        parse_platforms(["linux/amd64,"])


def test_default_platform_is_the_builders_native_one() -> None:
    assert default_platforms(ARM_WORKERS) == (ARM64,)
    assert default_platforms(ENGINE_WORKERS) == (AMD64,)
    assert default_platforms([]) == (llb.Platform.host(),)


def test_check_platforms() -> None:
    check_platforms([AMD64], ENGINE_WORKERS, builder="engine")
    check_platforms([ARM64], [], builder="engine")
    with pytest.raises(UsageError, match="--platform linux/arm64: engine builds only for linux/amd64, linux/386"):
        check_platforms([ARM64], ENGINE_WORKERS, builder="engine")


@pytest.mark.parametrize(
    "name",
    ["a", "a:1", "reg.example.com/team/env:v1.2-rc_3", "127.0.0.1:5000/x/y:z", "localhost/x", "a__b/c-d.e"],
)
def test_valid_names(name: str) -> None:
    assert validate_image_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a:", ":t", "a/-b", "a:" + "t" * 129, "a b", "-a", "a//b"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(UsageError, match="--tag"):
        validate_image_name(name)


def test_parse_build_options() -> None:
    opts = parse_build_options(
        outputs=["type=image,name=r:5000/a:1"],
        tags=["x:1", "x:1", "y"],
        push=True,
        platforms=["linux/amd64"],
        export_cache=["type=inline"],
        import_cache=["r:5000/a:1"],
    )
    assert opts.tags == ("x:1", "y") and opts.push and opts.platforms == (AMD64,)
    with pytest.raises(UsageError, match="only one --output"):
        parse_build_options(outputs=["type=docker", "type=tar,dest=x"])
    with pytest.raises(UsageError, match="--push needs an image output"):
        parse_build_options(outputs=["type=local,dest=x"], push=True)


# ---------------------------------------------------------------- plans


def _plan(kind: str, workers=ENGINE_WORKERS, default: str | None = "proj:dev", **kw) -> tuple:
    opts = parse_build_options(**kw)
    return plan_build(opts, caps=builder_caps(kind), default_name=default, workers=workers).solves


def test_default_output_is_the_engine_store() -> None:
    (s,) = _plan("docker")
    assert s.export == llb.DockerImage("proj:dev") and s.post == () and s.platform == AMD64
    (s,) = _plan("docker", tags=["a:1", "b:2"])
    assert s.export == llb.DockerImage(["a:1", "b:2"]) and s.image_names == ("a:1", "b:2")
    (s,) = _plan("tcp", workers=ARM_WORKERS)
    assert s.export == llb.DockerImage("proj:dev") and s.platform == ARM64


def test_push_on_the_engine_is_moby_export_then_push() -> None:
    (s,) = _plan("docker", tags=["127.0.0.1:5000/e:1"], push=True)
    assert s.export == llb.DockerImage("127.0.0.1:5000/e:1")
    assert s.post == (PushImage(("127.0.0.1:5000/e:1",)),)
    (s,) = _plan("docker", outputs=["type=registry,name=r/e:1"])
    assert s.post == (PushImage(("r/e:1",)),)


def test_push_on_buildkitd_is_the_image_exporter() -> None:
    (s,) = _plan("docker-container", outputs=["type=image,name=r/e:1,push=true,registry.insecure=true"])
    assert s.export == llb.ImageExport("r/e:1", push=True, insecure=True) and s.post == ()


def test_docker_tarball() -> None:
    (s,) = _plan("docker", outputs=["type=docker,dest=/tmp/e.tar"], tags=["e:1"])
    assert s.export == llb.DockerImage("e:1") and s.post == (SaveImage(("e:1",), "/tmp/e.tar"),)
    (s,) = _plan("unix", outputs=["type=docker,dest=/tmp/e.tar"], tags=["e:1"])
    assert s.export == llb.DockerTarExport("/tmp/e.tar", name="e:1") and s.post == ()
    with pytest.raises(UsageError, match="needs name= or --tag"):
        _plan("docker", default=None, outputs=["type=docker,dest=/tmp/e.tar"])


def test_oci_on_the_engine_is_moby_export_then_conversion() -> None:
    (s,) = _plan("docker", outputs=["type=oci,dest=/tmp/o.tar"], tags=["e:1"])
    assert s.export == llb.DockerImage("e:1") and s.post == (SaveOCI(("e:1",), "/tmp/o.tar"),)
    with pytest.raises(UsageError, match="type=oci,dest=… needs name= or --tag"):
        _plan("docker", default=None, outputs=["type=oci,dest=/tmp/o.tar"])
    (s,) = _plan("kube-pod", outputs=["type=oci,dest=/tmp/o.tar"])
    assert s.export == llb.OCIExport("/tmp/o.tar", name="proj:dev")


def test_tar_and_local() -> None:
    (s,) = _plan("docker", outputs=["type=tar,dest=/tmp/r.tar"])
    assert s.export == llb.TarExport("/tmp/r.tar")
    plan = plan_build(
        parse_build_options(outputs=["/tmp/d"], tags=["x"]),
        caps=builder_caps("docker"),
        default_name=None,
        workers=ENGINE_WORKERS,
    )
    assert plan.solves[0].export == llb.LocalExport("/tmp/d")
    assert plan.warnings == ("--tag is ignored with --output type=local",)


def test_multi_platform_suffixes() -> None:
    solves = _plan("tcp", workers=ARM_WORKERS, platforms=["linux/amd64,linux/arm64"], tags=["r/e:1", "r/f"], push=True)
    assert [s.platform for s in solves] == [AMD64, ARM64]
    assert solves[0].export == llb.ImageExport(["r/e:1-linux-amd64", "r/f:latest-linux-amd64"], push=True)
    solves = _plan("tcp", workers=ARM_WORKERS, platforms=["linux/amd64,linux/arm64"], outputs=["type=tar,dest=o/r.tar"])
    assert [s.export for s in solves] == [llb.TarExport("o/r-linux-amd64.tar"), llb.TarExport("o/r-linux-arm64.tar")]
    solves = _plan("tcp", workers=ARM_WORKERS, platforms=["linux/amd64,linux/arm64"], outputs=["type=local,dest=out"])
    assert [s.export for s in solves] == [llb.LocalExport("out-linux-amd64"), llb.LocalExport("out-linux-arm64")]
    with pytest.raises(UsageError, match="builds only for"):
        _plan("docker", platforms=["linux/arm64"])


def test_cache_per_builder() -> None:
    (s,) = _plan("docker", push=True, tags=["r/e:1"], export_cache=["type=inline"], import_cache=["r/e:1"])
    assert s.cache_exports == (llb.CacheOption("inline"),)
    assert s.cache_imports == (llb.CacheOption("registry", {"ref": "r/e:1"}),)
    with pytest.raises(UsageError) as info:
        _plan("docker", export_cache=["type=registry,ref=r/e:cache,mode=max"])
    assert "cannot export cache (type=registry): the engine keeps images in the overlay2 graph" in str(info.value)
    assert "type=inline" in str(info.value) and "docker-container://buildkitd" in str(info.value)
    assert "containerd-snapshotter" in str(info.value)
    (s,) = _plan("tcp", export_cache=["type=registry,ref=r/e:cache,mode=max"])
    assert s.cache_exports == (llb.CacheOption("registry", {"ref": "r/e:cache", "mode": "max"}),)
    with pytest.raises(UsageError, match="content store"):
        _plan("tcp", export_cache=["type=local,dest=/tmp/c"])
    with pytest.raises(UsageError, match="content store"):
        _plan("tcp", import_cache=["type=local,src=/tmp/c"])
    with pytest.raises(UsageError, match="needs an image output"):
        _plan("tcp", outputs=["type=tar,dest=x"], export_cache=["type=inline"])


def test_the_containerd_store_engine_uses_its_own_exporters() -> None:
    """Where the engine's builder has the image, oci and docker exporters, envbuild asks it for them;
    the same requests on a graph-driver engine are exported into the store and pushed or saved from
    there."""
    (s,) = _plan("containerd", push=True, tags=["r/e:1", "r/e:latest"])
    assert s.export == llb.ImageExport(["r/e:1", "r/e:latest"], push=True) and s.post == ()
    assert s.image_names == ("r/e:1", "r/e:latest")  # the image lands in the engine's store as well
    (s,) = _plan("containerd", outputs=["type=oci,dest=o.tar"], tags=["r/e:1"])
    assert s.export == llb.OCIExport("o.tar", name="r/e:1") and s.post == () and s.image_names == ()
    (s,) = _plan("containerd", outputs=["type=docker,dest=d.tar"], tags=["r/e:1"])
    assert s.export == llb.DockerTarExport("d.tar", name="r/e:1") and s.post == ()
    (s,) = _plan("containerd", tags=["r/e:1"])
    assert s.export == llb.DockerImage("r/e:1")  # a plain build goes into the store as everywhere
    (s,) = _plan("containerd", export_cache=["type=registry,ref=r/e:cache,mode=max"], tags=["r/e:1"])
    assert s.cache_exports == (llb.CacheOption("registry", {"ref": "r/e:cache", "mode": "max"}),)
    (s,) = _plan("docker", push=True, tags=["r/e:1"])
    assert s.export == llb.DockerImage("r/e:1") and s.post == (PushImage(("r/e:1",)),)
    (s,) = _plan("docker", outputs=["type=oci,dest=o.tar"], tags=["r/e:1"])
    assert s.export == llb.DockerImage("r/e:1") and s.post == (SaveOCI(("r/e:1",), "o.tar"),)


# ---------------------------------------------------------------- fuzzing

_ALPHABET = st.sampled_from(list('type=imagedockerocitarlocalregistry,"=/:.@-_ pushdestnameTRUE01\\x'))
_TEXT = st.text(_ALPHABET, max_size=60) | st.text(max_size=30)


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_fuzz_output(text: str) -> None:
    try:
        spec = parse_output(text)
    except UsageError as exc:
        assert str(exc)
        return
    assert spec.type in ("docker", "image", "oci", "tar", "local")
    if spec.type in ("oci", "tar", "local"):
        assert spec.dest
    for n in spec.names:
        assert validate_image_name(n) == n


@settings(max_examples=400, deadline=None)
@given(_TEXT, st.booleans())
def test_fuzz_cache(text: str, export: bool) -> None:
    try:
        spec = parse_cache(text, export=export)
    except UsageError as exc:
        assert str(exc)
        return
    assert spec.type in (("registry", "local", "inline") if export else ("registry", "local"))
    if spec.type == "registry":
        validate_image_name(spec.attrs["ref"], allow_digest=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.sampled_from(list("linux/amd64arm64v78,windows386 x")), max_size=30), max_size=3))
def test_fuzz_platforms(values: list[str]) -> None:
    try:
        plats = parse_platforms(values)
    except UsageError:
        return
    assert len(set(plats)) == len(plats)
    assert all(isinstance(p, llb.Platform) for p in plats)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_TEXT, max_size=2),
    st.lists(st.text(st.sampled_from(list("abc:/.-_1")), max_size=12), max_size=2),
    st.booleans(),
    st.sampled_from(["docker", "tcp"]),
)
def test_fuzz_plan(outputs: list[str], tags: list[str], push: bool, kind: str) -> None:
    try:
        opts = parse_build_options(outputs=outputs, tags=tags, push=push)
        plan = plan_build(opts, caps=builder_caps(kind), default_name="p:dev", workers=ENGINE_WORKERS)
    except UsageError:
        return
    assert isinstance(opts, BuildOutputOptions)
    assert len(plan.solves) == 1 and plan.solves[0].export is not None


# ---------------------------------------------------------------- destinations (issue 15, item 3)


def _planned(tmp_path: Path, output: str, *, force: bool = False, tags: tuple[str, ...] = ("e:1",)) -> BuildPlan:
    opts = parse_build_options(outputs=[output], tags=list(tags), force=force)
    return plan_build(opts, caps=builder_caps("docker"), default_name="p:dev", workers=ENGINE_WORKERS)


@pytest.mark.parametrize("kind", ["tar", "docker", "oci"])
def test_a_file_destination_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    (tmp_path / "target").write_text("keep")
    (tmp_path / "link.tar").symlink_to(tmp_path / "target")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    cases = [(tmp_path / "link.tar", "a symlink"), (tmp_path / "fifo", "a FIFO"), (tmp_path / "dir", "a directory")]
    if os.geteuid() == 0:  # a private device node: the machine's /dev/null is not something to test on
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        cases.append((tmp_path / "null", "a device"))
    for dest, what in cases:
        with pytest.raises(UsageError) as info:
            check_destinations(_planned(tmp_path, f"type={kind},dest={dest}"))
        assert str(info.value) == (
            f"--output dest={dest}: {what} is there; refusing to replace anything but "
            "a regular file (remove it or choose another path)"
        )
    check_destinations(_planned(tmp_path, f"type={kind},dest={tmp_path / 'target'}"))  # a file is overwritten
    check_destinations(_planned(tmp_path, f"type={kind},dest={tmp_path / 'new' / 'x.tar'}"))
    assert (tmp_path / "target").read_text() == "keep"


def test_a_directory_destination_must_be_a_directory_and_empty_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("mine")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    with pytest.raises(UsageError, match="a regular file is there; refusing to write a directory over it"):
        check_destinations(_planned(tmp_path, str(tmp_path / "file")))
    with pytest.raises(UsageError, match="a symlink is there"):
        check_destinations(_planned(tmp_path, str(tmp_path / "link")))
    with pytest.raises(UsageError) as info:
        check_destinations(_planned(tmp_path, str(tmp_path / "full")))
    assert str(info.value) == (
        f"--output dest={tmp_path / 'full'}: the directory is not empty; pass --force to write "
        "into it (files of the same name are replaced)"
    )
    check_destinations(_planned(tmp_path, str(tmp_path / "full"), force=True))
    check_destinations(_planned(tmp_path, f"type=local,dest={tmp_path / 'empty'}"))
    check_destinations(_planned(tmp_path, str(tmp_path / "new")))


def test_push_needs_a_name_and_two_outputs_are_refused() -> None:
    with pytest.raises(UsageError, match="--push needs -t"):
        parse_build_options(push=True)
    with pytest.raises(UsageError, match="--push needs -t"):
        parse_build_options(push=True, outputs=["type=image"])
    assert parse_build_options(push=True, outputs=["type=image,name=r/e:1"]).push
    with pytest.raises(UsageError, match="only one --output"):
        parse_build_options(outputs=["out", "type=tar,dest=x.tar"])
