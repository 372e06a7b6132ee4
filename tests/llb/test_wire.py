"""`llb._wire` produces protobuf's own deterministic bytes and `MessageToDict` JSON, without protobuf.

Every check builds the same message a second way, through the generated `ops_pb2` classes, and
compares: the schema with the descriptors, bytes with ``SerializeToString(deterministic=True)`` and
JSON with ``json_format.MessageToDict(..., preserving_proto_field_name=True)``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor as D
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import frontend
import llb
from envbuild.compiler import BaseConfig, CompileOptions, UnsupportedFeature, project_name
from envbuild.compiler.compile import compile
from envbuild.compiler.vscode import Extension
from llb import _wire
from llb._proto import ops_pb2

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.parent.name for p in (REPO / "examples").glob("*/build.envd"))
AMD64 = llb.Platform("linux", "amd64")

_KINDS = {
    D.FieldDescriptor.TYPE_STRING: "string",
    D.FieldDescriptor.TYPE_BYTES: "bytes",
    D.FieldDescriptor.TYPE_BOOL: "bool",
    D.FieldDescriptor.TYPE_INT32: "int32",
    D.FieldDescriptor.TYPE_INT64: "int64",
    D.FieldDescriptor.TYPE_UINT32: "uint32",
    D.FieldDescriptor.TYPE_ENUM: "enum",
    D.FieldDescriptor.TYPE_MESSAGE: "message",
}


def _kind_ref(fd: D.FieldDescriptor) -> tuple[str, str]:
    kind = _KINDS[fd.type]
    if kind == "message" and fd.message_type.GetOptions().map_entry:
        key, value = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
        value_ref = value.message_type.name if _KINDS[value.type] == "message" else _KINDS[value.type]
        return "map", f"{_KINDS[key.type]}:{value_ref}"
    if kind == "message":
        return kind, fd.message_type.name
    if kind == "enum":
        return kind, fd.enum_type.name
    return kind, ""


def test_schema_matches_the_generated_descriptors() -> None:
    messages = ops_pb2.DESCRIPTOR.message_types_by_name
    assert set(_wire.SCHEMA) == set(messages)
    for name, desc in messages.items():
        expected = []
        for fd in sorted(desc.fields, key=lambda f: f.number):
            kind, ref = _kind_ref(fd)
            oneof = fd.containing_oneof.name if fd.containing_oneof else ""
            repeated = kind != "map" and fd.is_repeated
            expected.append(_wire.Field(fd.number, fd.name, kind, repeated, oneof, ref))
        assert list(_wire.SCHEMA[name]) == expected, name
    enums = {name: {v.number: v.name for v in e.values} for name, e in ops_pb2.DESCRIPTOR.enum_types_by_name.items()}
    assert enums == _wire.ENUMS


def _fill(pb: Any, name: str, message: dict[str, Any]) -> Any:
    """Sets `message` (an `_wire` dict) on a generated message field by field, as a protobuf user would."""
    for f in _wire.SCHEMA[name]:
        value = message.get(f.name)
        if value is None:
            continue
        if f.kind == "map":
            target = getattr(pb, f.name)
            for k, v in value.items():
                if f.ref.split(":")[1] in _wire.SCHEMA:
                    _fill(target[k], f.ref.split(":")[1], v)
                else:
                    target[k] = v
        elif f.repeated and f.kind == "message":
            for item in value:
                _fill(getattr(pb, f.name).add(), f.ref, item)
        elif f.repeated:
            getattr(pb, f.name).extend(value)
        elif f.kind == "message":
            sub = getattr(pb, f.name)
            sub.SetInParent()
            _fill(sub, f.ref, value)
        else:
            setattr(pb, f.name, value)
    return pb


def _protobuf(name: str, message: dict[str, Any]) -> Any:
    return _fill(getattr(ops_pb2, name)(), name, message)


def _assert_same(name: str, message: dict[str, Any]) -> None:
    pb = _protobuf(name, message)
    data = _wire.encode(name, message)
    assert data == pb.SerializeToString(deterministic=True)
    assert _wire.to_dict(name, message) == json_format.MessageToDict(pb, preserving_proto_field_name=True)
    decoded = _wire.decode(name, data)
    assert _wire.encode(name, decoded) == data
    assert _wire.to_dict(name, decoded) == _wire.to_dict(name, message)


def _assert_definition(definition: llb.Definition) -> None:
    """Every op and its metadata, the whole Definition and its JSON agree with protobuf."""
    md = dict(definition.metadata)
    for d, data in definition.ops:
        op = ops_pb2.Op.FromString(data)
        assert op.SerializeToString(deterministic=True) == data, d
        meta = ops_pb2.OpMetadata.FromString(md[d])
        assert meta.SerializeToString(deterministic=True) == md[d], d
        _assert_same("Op", _wire.decode("Op", data))
        _assert_same("OpMetadata", _wire.decode("OpMetadata", md[d]))
    pb = ops_pb2.Definition()
    getattr(pb, "def").extend(data for _, data in definition.ops)
    for d, data in definition.metadata:
        pb.metadata[d].MergeFromString(data)
    assert definition.to_bytes() == pb.SerializeToString(deterministic=True)
    assert definition.to_pb() == pb
    expected = [
        {
            "Op": json_format.MessageToDict(op, preserving_proto_field_name=True),
            "Digest": d,
            "OpMetadata": json_format.MessageToDict(meta, preserving_proto_field_name=True),
        }
        for d, op, meta in definition.iter_ops()
    ]
    assert definition.to_json() == expected  # from the messages marshal kept
    assert llb.Definition(definition.ops, definition.metadata).to_json() == expected  # decoded from the bytes


def test_golden_small_graph() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_definition import small_graph
    finally:
        sys.path.pop(0)
    _assert_definition(small_graph().marshal(platform=AMD64))


@pytest.mark.parametrize("example", EXAMPLES)
def test_compiled_examples(example: str) -> None:
    spec = frontend.evaluate(REPO / "examples" / example, user_config=False)
    exts = tuple(
        Extension(n.lower(), "1.0.0", f"{n.lower()}-1.0.0", f"{n}-1.0.0.vsix")
        for c in spec.vscode_extensions
        for n in c.names
    )
    base = BaseConfig(env=("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",), cmd=("bash",))
    options = CompileOptions(
        project=project_name(example),
        owner=(1000, 1000),
        base_config=base,
        vscode_extensions=exts,
        vscode_cache="/cache/vscode",
        context_dir="/ctx",
    )
    try:
        compiled = compile(spec, options)
    except UnsupportedFeature as exc:
        pytest.skip(f"{example}: {exc}")
    _assert_definition(compiled.definition())


# -- random graphs --------------------------------------------------------------------------------

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
def test_random_graphs(state: llb.State, platform: str | None) -> None:
    _assert_definition(state.marshal(platform=platform))


# -- random messages of every kind ----------------------------------------------------------------

_SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=8),
    "bytes": st.binary(max_size=8),
    "bool": st.booleans(),
    "int32": st.one_of(st.sampled_from([0, -1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)),
    "int64": st.one_of(st.sampled_from([0, -1, 2**63 - 1, -(2**63)]), st.integers(-(2**63), 2**63 - 1)),
    "uint32": st.one_of(st.sampled_from([0, 2**32 - 1]), st.integers(0, 2**32 - 1)),
}


def _value(kind: str, ref: str, depth: int) -> st.SearchStrategy[Any]:
    if kind == "message":
        return messages(ref, depth + 1)
    if kind == "enum":
        return st.sampled_from(sorted(_wire.ENUMS[ref]))
    return _SCALARS[kind]


@st.composite
def messages(draw: st.DrawFn, name: str, depth: int = 0) -> dict[str, Any]:
    message: dict[str, Any] = {}
    chosen_oneofs: set[str] = set()
    for f in _wire.SCHEMA[name]:
        if depth > 2 and (f.kind in ("message", "map") or f.repeated):
            continue
        if (f.oneof and f.oneof in chosen_oneofs) or not draw(st.booleans()):
            continue
        if f.oneof:
            chosen_oneofs.add(f.oneof)
        if f.kind == "map":
            key_kind, value_ref = f.ref.split(":")
            value_kind = value_ref if value_ref in _SCALARS else "message"
            message[f.name] = draw(
                st.dictionaries(_SCALARS[key_kind], _value(value_kind, value_ref, depth), max_size=3)
            )
        elif f.repeated:
            message[f.name] = draw(st.lists(_value(f.kind, f.ref, depth), max_size=3))
        else:
            message[f.name] = draw(_value(f.kind, f.ref, depth))
    return message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_random_messages_of_every_kind(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(_wire.SCHEMA)))
    _assert_same(name, data.draw(messages(name)))


def test_oneof_members_and_present_messages_keep_their_defaults() -> None:
    root = llb.image("debian").file(llb.mkdir("/a", owner=(0, 0)).mkfile("/b", b"", owner="root:0"))
    _assert_definition(root.marshal(platform=AMD64))
    _assert_same("ChownOpt", {"user": {"byID": 0}, "group": {"byName": {"name": "", "input": 0}}})
    _assert_same("Op", {"exec": {}, "platform": {}, "inputs": [{}]})
    assert _wire.encode("UserOpt", {"byID": 0}) == b"\x10\x00"


def test_map_order_puts_longer_keys_before_their_prefixes() -> None:
    attrs = {"source.image": "a", "source.image.resolvemode": "b", "source.imagex": "c", "é": "d", "z": "e"}
    _assert_same("SourceOp", {"attrs": attrs})
    assert sorted(attrs, key=_wire.map_order) == ["source.image.resolvemode", "source.imagex", "source.image", "z", "é"]


def test_decode_rejects_broken_bytes_and_skips_unknown_fields() -> None:
    for bad in (b"\x0a\x05ab", b"\x80", b"\x0b", b"\x00\x00", b"\x0a\x02\xff\xfe"):
        with pytest.raises(_wire.WireError):
            _wire.decode("Input", bad)
    unknown = b"\x18\x07" + b"\x22\x01x" + b"\x2d\x01\x02\x03\x04" + b"\x31" + bytes(8)
    assert _wire.decode("Input", b"\x0a\x01d" + unknown + b"\x10\x03") == {"digest": "d", "index": 3}
    with pytest.raises(_wire.WireError, match="no field"):
        _wire.encode("Input", {"digets": "x"})
    with pytest.raises(_wire.WireError, match="out of range"):
        _wire.encode("SecretOpt", {"uid": -1})


def test_repeated_submessages_merge_like_protobuf() -> None:
    first = _wire.encode("Op", {"exec": {"meta": {"args": ["a"], "cwd": "/x"}}, "platform": {"OS": "linux"}})
    second = _wire.encode(
        "Op", {"exec": {"meta": {"args": ["b"]}, "network": 2}, "platform": {"Architecture": "arm64"}}
    )
    switch = _wire.encode("Op", {"source": {"identifier": "i", "attrs": {"k": "v"}}})
    reset_cwd = b"\x12\x04\x0a\x02\x1a\x00"  # exec.meta.cwd = "" written out, as no canonical encoder would
    for data in (first + second, first + second + switch, switch + first, first + reset_cwd):
        expected = ops_pb2.Op.FromString(data)
        assert _wire.to_dict("Op", _wire.decode("Op", data)) == json_format.MessageToDict(
            expected, preserving_proto_field_name=True
        )


def test_marshal_and_json_do_not_import_protobuf() -> None:
    code = (
        "import sys, llb; d = llb.image('x').run('true').root().marshal(); d.to_json(); d.to_dot(); d.to_bytes(); "
        "print(sorted(m for m in sys.modules if m.startswith('google') or m.endswith('_pb2')))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
