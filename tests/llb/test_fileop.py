"""File actions: chaining conventions, owners, paths and validation."""

from __future__ import annotations

import pytest

import llb
from llb._proto import ops_pb2

AMD64 = llb.Platform("linux", "amd64")
BASE = llb.image("debian")


def file_op(state: llb.State) -> tuple[ops_pb2.Op, ops_pb2.OpMetadata]:
    definition = state.marshal(platform=AMD64)
    digest = definition.op(definition.terminal).inputs[0].digest
    return definition.op(digest), definition.op_metadata(digest)


def test_single_mkdir() -> None:
    op, md = file_op(BASE.file(llb.mkdir("/app", 0o700, parents=True)))
    (action,) = op.file.actions
    assert (action.input, action.secondaryInput, action.output) == (0, -1, 0)
    assert (action.mkdir.path, action.mkdir.mode, action.mkdir.makeParents, action.mkdir.timestamp) == (
        "/app",
        0o700,
        True,
        -1,
    )
    assert not action.mkdir.HasField("owner")
    assert md.caps["file.base"]


def test_chained_actions_follow_buildkit_input_conventions() -> None:
    ctx = llb.local("ctx")
    chain = llb.mkdir("/a").mkfile("/a/f", "data").copy(ctx, "src", "/a/").copy(ctx, "other", "/b").rm("/a/f")
    op, _ = file_op(BASE.file(chain))
    assert next(i.digest for i in op.inputs) != [i.digest for i in op.inputs][1]
    assert len(op.inputs) == 2
    actions = list(op.file.actions)
    assert [a.WhichOneof("action") for a in actions] == ["mkdir", "mkfile", "copy", "copy", "rm"]
    assert [a.input for a in actions] == [0, 2, 3, 4, 5]
    assert [a.secondaryInput for a in actions] == [-1, -1, 1, 1, -1]
    assert [a.output for a in actions] == [-1, -1, -1, -1, 0]
    assert actions[1].mkfile.data == b"data"


def test_file_on_scratch_uses_minus_one() -> None:
    ctx = llb.local("ctx")
    op, _ = file_op(llb.scratch().file(llb.copy(ctx, "/", "/")))
    (action,) = op.file.actions
    assert (action.input, action.secondaryInput) == (-1, 0)
    assert len(op.inputs) == 1


def test_copy_defaults_and_options() -> None:
    ctx = llb.local("ctx")
    op, _ = file_op(BASE.file(llb.copy(ctx, "/x", "/y")))
    cp = op.file.actions[0].copy
    assert (cp.mode, cp.timestamp) == (-1, -1)
    assert cp.followSymlink and cp.dirCopyContents and cp.createDestPath and cp.allowWildcard and cp.allowEmptyWildcard
    assert not cp.attemptUnpackDockerCompatibility
    op, _ = file_op(
        BASE.file(
            llb.copy(
                ctx,
                "/x",
                "/y",
                mode=0o600,
                follow_symlinks=False,
                copy_dir_contents=False,
                create_dest_path=False,
                allow_wildcard=False,
                allow_empty_wildcard=False,
            )
        )
    )
    cp = op.file.actions[0].copy
    assert cp.mode == 0o600
    assert not (
        cp.followSymlink or cp.dirCopyContents or cp.createDestPath or cp.allowWildcard or cp.allowEmptyWildcard
    )


def test_relative_paths_use_working_directories_and_keep_trailing_slash() -> None:
    src_state = llb.local("ctx").with_cwd("/project")
    target = BASE.with_cwd("/srv")
    op, _ = file_op(target.file(llb.copy(src_state, "lib/", "app/").mkdir("data").rm("./tmp/../junk")))
    copy_a, mkdir_a, rm_a = op.file.actions
    assert (copy_a.copy.src, copy_a.copy.dest) == ("/project/lib/", "/srv/app/")
    assert mkdir_a.mkdir.path == "/srv/data"
    assert rm_a.rm.path == "/srv/junk"


@pytest.mark.parametrize(
    ("owner", "user", "group"),
    [
        ("1000:1001", ("byID", 1000), ("byID", 1001)),
        ((0, 0), ("byID", 0), ("byID", 0)),
        (33, ("byID", 33), None),
        ("app", ("byName", "app"), None),
        ("app:staff", ("byName", "app"), ("byName", "staff")),
        ("1000:staff", ("byID", 1000), ("byName", "staff")),
    ],
)
def test_owner_forms(owner: object, user: tuple[str, object], group: tuple[str, object] | None) -> None:
    op, _ = file_op(BASE.file(llb.mkdir("/d").mkfile("/d/f", b"", owner=owner)))  # type: ignore[arg-type]
    action = op.file.actions[1]
    chown = action.mkfile.owner

    def value(u: ops_pb2.UserOpt) -> tuple[str, object]:
        kind = u.WhichOneof("user")
        if kind == "byName":
            assert u.byName.input == action.input == 1
            return kind, u.byName.name
        return kind, u.byID

    assert value(chown.user) == user
    if group is None:
        assert not chown.HasField("group")
    else:
        assert value(chown.group) == group


def test_named_owner_on_scratch_is_rejected_numeric_is_fine() -> None:
    with pytest.raises(llb.InvalidGraph, match="numeric"):
        llb.scratch().file(llb.mkdir("/d", owner="app")).marshal()
    op, _ = file_op(llb.scratch().file(llb.mkdir("/d", owner=(1000, 1000))))
    assert op.file.actions[0].mkdir.owner.user.byID == 1000


@pytest.mark.parametrize("owner", ["", "a:b:c", ":1", (1,), "bad name", -1, True, 2**32])
def test_invalid_owners(owner: object) -> None:
    with pytest.raises(llb.InvalidGraph):
        llb.mkdir("/d", owner=owner)  # type: ignore[arg-type]


def test_mkfile_text_is_utf8_and_size_is_limited() -> None:
    op, _ = file_op(BASE.file(llb.mkfile("/f", "héllo", 0o600)))
    assert op.file.actions[0].mkfile.data == "héllo".encode()
    assert op.file.actions[0].mkfile.mode == 0o600
    with pytest.raises(llb.InvalidGraph, match=r"llb\.local"):
        llb.mkfile("/big", b"x" * (llb.fileop.MAX_INLINE_FILE_BYTES + 1))
    with pytest.raises(llb.InvalidGraph):
        llb.mkfile("/f", 123)  # type: ignore[arg-type]


def test_rm_flags_and_wildcard_cap() -> None:
    op, md = file_op(BASE.file(llb.rm("/x*", allow_not_found=True, allow_wildcard=True)))
    rm = op.file.actions[0].rm
    assert (rm.path, rm.allowNotFound, rm.allowWildcard) == ("/x*", True, True)
    assert md.caps["file.rm.wildcard"]
    _, md = file_op(BASE.file(llb.rm("/x")))
    assert "file.rm.wildcard" not in md.caps


@pytest.mark.parametrize(
    "make",
    [
        lambda: llb.mkdir("/d", 0o10000),
        lambda: llb.mkdir("/d", -1),
        lambda: llb.mkdir(""),
        lambda: llb.mkfile("/f\x00", "x"),
        lambda: llb.copy(llb.scratch(), "/a", "/b"),
        lambda: llb.copy("ctx", "/a", "/b"),  # type: ignore[arg-type]
        lambda: llb.copy(llb.local("c"), "/a", "/b", mode=0o20000),
        lambda: BASE.file(llb.FileAction()),
        lambda: BASE.file("mkdir /x"),  # type: ignore[arg-type]
    ],
)
def test_validation_errors(make: object) -> None:
    with pytest.raises(llb.InvalidGraph):
        make()  # type: ignore[operator]


def test_file_name_and_state_settings_survive() -> None:
    state = BASE.with_env("A", "1").with_cwd("/w").file(llb.mkdir("x"), name="make dirs")
    assert state.env("A") == "1" and state.cwd == "/w"
    _, md = file_op(state)
    assert md.description["llb.customname"] == "make dirs"


def test_actions_are_immutable_and_reusable() -> None:
    first = llb.mkdir("/a")
    second = first.mkdir("/b")
    assert len(first.steps) == 1 and len(second.steps) == 2
    a = BASE.file(first).marshal(platform=AMD64)
    b = BASE.file(llb.mkdir("/a")).marshal(platform=AMD64)
    assert a.to_bytes() == b.to_bytes()
