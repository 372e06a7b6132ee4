"""Properties of `marshal` over random graphs of every op and option kind.

Whatever the graph, its Definition is deterministic, in dependency order, canonical (the bytes are
protobuf's deterministic encoding of themselves) and survives a round trip through bytes.
"""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import llb
from llb._proto import ops_pb2

_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n"), min_size=1, max_size=12)
_path = st.lists(st.sampled_from(["a", "b", "étc", "x.y", "..", "."]), min_size=1, max_size=3).map(
    lambda p: "/" + "/".join(p)
)
_mount_dest = st.lists(st.sampled_from(["a", "b", "étc", "x.y"]), min_size=1, max_size=3).map(
    lambda p: "/m/" + "/".join(p)
)
_uid = st.integers(0, 2**32 - 1)
_mode = st.integers(0, 0o7777)
_name = st.one_of(st.none(), _text)


@st.composite
def _mount(draw: st.DrawFn, sources: list[llb.State]) -> llb.Mount:
    dest = draw(_mount_dest)
    kind = draw(st.sampled_from(["bind", "cache", "secret", "ssh", "tmpfs"]))
    if kind == "bind":
        source = draw(st.sampled_from(sources))
        return llb.bind(
            dest, source, source_path=draw(st.sampled_from(["/", "sub", "/a/b"])), readonly=draw(st.booleans())
        )
    if kind == "cache":
        return llb.cache(dest, draw(_text), sharing=draw(st.sampled_from(["shared", "private", "locked"])))
    if kind in ("secret", "ssh"):
        make = llb.secret if kind == "secret" else llb.ssh
        return make(dest, draw(_text), uid=draw(_uid), gid=draw(_uid), mode=draw(_mode), optional=draw(st.booleans()))
    return llb.tmpfs(dest)


_owner = st.one_of(
    st.none(),
    _uid,
    st.tuples(_uid, _uid),
    st.sampled_from(["root", "user:staff", "1000:1000", "0", "www-data:0"]),
)


@st.composite
def _actions(draw: st.DrawFn, sources: list[llb.State], named_owners: bool) -> llb.FileAction:
    action = llb.fileop.FileAction()
    owner = _owner if named_owners else st.one_of(st.none(), _uid, st.tuples(_uid, _uid))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["mkdir", "mkfile", "rm", "copy"]))
        path = draw(_path)
        if kind == "mkdir":
            action = action.mkdir(path, draw(_mode), parents=draw(st.booleans()), owner=draw(owner))
        elif kind == "mkfile":
            action = action.mkfile(path, draw(st.binary(max_size=40)), draw(_mode), owner=draw(owner))
        elif kind == "rm":
            action = action.rm(path, allow_not_found=draw(st.booleans()), allow_wildcard=draw(st.booleans()))
        else:
            source = draw(st.sampled_from(sources))
            flags = draw(st.lists(st.booleans(), min_size=5, max_size=5))
            action = action.copy(
                source,
                draw(_path),
                draw(st.sampled_from(["/dst", "dst/", "./"])),
                owner=draw(owner),
                mode=draw(st.one_of(st.none(), _mode)),
                follow_symlinks=flags[0],
                copy_dir_contents=flags[1],
                create_dest_path=flags[2],
                allow_wildcard=flags[3],
                allow_empty_wildcard=flags[4],
            )
    return action


_proxy = st.one_of(
    st.none(),
    st.builds(
        llb.ProxyEnv,
        http_proxy=st.sampled_from(["", "http://p:3128"]),
        https_proxy=st.sampled_from(["", "http://p"]),
        no_proxy=st.sampled_from(["", "localhost,.x"]),
        all_proxy=st.sampled_from(["", "socks5://s"]),
    ),
)


@st.composite
def graphs(draw: st.DrawFn) -> llb.State:
    sources: list[llb.State] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["image", "local", "git", "http"]))
        if kind == "image":
            state = llb.image(
                draw(
                    st.sampled_from(
                        ["debian", "local/debian:bookworm", "127.0.0.1:5000/x/y:1", "busybox@sha256:" + "a" * 64]
                    )
                ),
                resolve_mode=draw(st.sampled_from(["default", "pull", "local"])),
                platform=draw(st.sampled_from([None, "linux/arm64", "linux/arm/v7"])),
                name=draw(_name),
            )
        elif kind == "local":
            state = llb.local(
                "ctx", exclude=draw(st.lists(_text, max_size=2)), include=draw(st.lists(_text, max_size=2))
            )
        elif kind == "git":
            state = llb.git(
                "https://example.com/r.git", draw(st.sampled_from(["", "main", "v1"])), keep_git_dir=draw(st.booleans())
            )
        else:
            state = llb.http(
                "https://example.com/f",
                checksum=draw(st.sampled_from([None, "sha256:" + "b" * 64])),
                chmod=draw(st.one_of(st.none(), _mode)),
            )
        sources.append(state)
    state = draw(st.sampled_from(sources))
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            mounts = draw(st.lists(_mount(sources), max_size=4, unique_by=lambda m: m.dest))
            ran = state.with_cwd(draw(_path)).run(
                draw(st.lists(_text, min_size=1, max_size=3)),
                env=draw(st.dictionaries(st.sampled_from(["A", "PATH", "LANG", "É"]), _text, max_size=3)),
                cwd=draw(st.one_of(st.none(), _path)),
                user=draw(st.one_of(st.none(), st.sampled_from(["root", "1000:1000", ""]))),
                network=draw(st.sampled_from(["sandbox", "host", "none"])),
                mounts=mounts,
                name=draw(_name),
                ignore_cache=draw(st.booleans()),
                proxy_env=draw(_proxy),
            )
            writable = [m.dest for m in mounts if m.writable_bind]
            state = ran.mount_state(draw(st.sampled_from(writable))) if writable and draw(st.booleans()) else ran.root()
        else:
            target = state if draw(st.booleans()) else llb.scratch()
            action = draw(_actions(sources, named_owners=not target.is_scratch))
            state = target.file(action, name=draw(_name), ignore_cache=draw(st.booleans()))
        sources.append(state)
    return state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(graphs(), st.sampled_from([None, "linux/amd64", "linux/arm64/v8"]))
def test_marshal_properties(state: llb.State, platform: str | None) -> None:
    definition = state.marshal(platform=platform)
    assert state.marshal(platform=platform) == definition
    assert llb.Definition.from_bytes(definition.to_bytes()) == definition
    assert [d for d, _ in definition.metadata] == definition.digests
    earlier: set[str] = set()
    for (digest, data), (_, md_data) in zip(definition.ops, definition.metadata, strict=True):
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
        op, md = ops_pb2.Op.FromString(data), ops_pb2.OpMetadata.FromString(md_data)
        assert op.SerializeToString(deterministic=True) == data
        assert md.SerializeToString(deterministic=True) == md_data
        assert {inp.digest for inp in op.inputs} <= earlier, "an op comes after the ops it reads"
        earlier.add(digest)
    terminal = definition.op(definition.terminal)
    assert terminal.WhichOneof("op") is None and len(terminal.inputs) == 1
    assert definition.op_metadata(definition.terminal) == ops_pb2.OpMetadata()
