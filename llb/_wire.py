"""Protobuf wire encoding of LLB ops without the protobuf package.

Importing protobuf and the generated `ops_pb2` costs ~20 ms, more than building a typical graph.
The builder describes ops as plain dicts keyed by the field names of `_proto/ops.proto` (sub-messages
as dicts, repeated fields as lists, maps as dicts, enums as ints) and this module turns them into
exactly the bytes of ``SerializeToString(deterministic=True)``: fields in field-number order, proto3
scalars at their default left out (oneof members and present sub-messages kept), map entries in
upb's key order (`map_order`) with both key and value written, negative int32/int64 as 10-byte
varints. It also reads those bytes back and renders them as ``json_format.MessageToDict(...,
preserving_proto_field_name=True)`` does, for `Definition.to_json()` and `to_dot()`.

Only the message kinds of ops.proto are known; `tests/llb/test_wire.py` checks the schema below
against the generated descriptors and the output against protobuf itself.
"""

from __future__ import annotations


TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~4 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    Message = dict[str, Any]

__all__ = ["WireError", "encode", "encode_definition", "decode", "to_dict", "map_order", "SCHEMA", "ENUMS"]


class WireError(ValueError):
    """Bytes that are not a valid encoding of the expected message."""


class Field:
    """One message field: ``kind`` is string, bytes, bool, int32, int64, uint32, enum, message or map;
    ``ref`` names the message or enum (for maps "<key kind>:<value kind or message>").
    (A plain class: ``namedtuple`` compiles its methods from source, ~0.2 ms of every start-up.)"""

    __slots__ = ("number", "name", "kind", "repeated", "oneof", "ref")

    def __init__(
        self, number: int, name: str, kind: str, repeated: bool = False, oneof: str = "", ref: str = ""
    ) -> None:
        self.number, self.name, self.kind, self.repeated, self.oneof, self.ref = (
            number,
            name,
            kind,
            repeated,
            oneof,
            ref,
        )

    def _key(self) -> tuple[Any, ...]:
        return (self.number, self.name, self.kind, self.repeated, self.oneof, self.ref)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Field) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Field({self.number}, {self.name!r}, {self.kind!r}, repeated={self.repeated}, oneof={self.oneof!r}, ref={self.ref!r})"


def _f(number: int, name: str, kind: str, ref: str = "", *, repeated: bool = False, oneof: str = "") -> Field:
    return Field(number, name, kind, repeated, oneof, ref)


ENUMS: dict[str, dict[int, str]] = {
    "NetMode": {0: "UNSET", 1: "HOST", 2: "NONE"},
    "SecurityMode": {0: "SANDBOX", 1: "INSECURE"},
    "MountType": {0: "BIND", 1: "SECRET", 2: "SSH", 3: "CACHE", 4: "TMPFS"},
    "CacheSharingOpt": {0: "SHARED", 1: "PRIVATE", 2: "LOCKED"},
}

SCHEMA: dict[str, tuple[Field, ...]] = {
    "Op": (
        _f(1, "inputs", "message", "Input", repeated=True),
        _f(2, "exec", "message", "ExecOp", oneof="op"),
        _f(3, "source", "message", "SourceOp", oneof="op"),
        _f(4, "file", "message", "FileOp", oneof="op"),
        _f(5, "build", "message", "BuildOp", oneof="op"),
        _f(10, "platform", "message", "Platform"),
        _f(11, "constraints", "message", "WorkerConstraints"),
    ),
    "Platform": (
        _f(1, "Architecture", "string"),
        _f(2, "OS", "string"),
        _f(3, "Variant", "string"),
        _f(4, "OSVersion", "string"),
        _f(5, "OSFeatures", "string", repeated=True),
    ),
    "Input": (_f(1, "digest", "string"), _f(2, "index", "int64")),
    "ExecOp": (
        _f(1, "meta", "message", "Meta"),
        _f(2, "mounts", "message", "Mount", repeated=True),
        _f(3, "network", "enum", "NetMode"),
        _f(4, "security", "enum", "SecurityMode"),
    ),
    "Meta": (
        _f(1, "args", "string", repeated=True),
        _f(2, "env", "string", repeated=True),
        _f(3, "cwd", "string"),
        _f(4, "user", "string"),
        _f(5, "proxy_env", "message", "ProxyEnv"),
        _f(6, "extraHosts", "message", "HostIP", repeated=True),
        _f(7, "hostname", "string"),
    ),
    "HostIP": (_f(1, "Host", "string"), _f(2, "IP", "string")),
    "Mount": (
        _f(1, "input", "int64"),
        _f(2, "selector", "string"),
        _f(3, "dest", "string"),
        _f(4, "output", "int64"),
        _f(5, "readonly", "bool"),
        _f(6, "mountType", "enum", "MountType"),
        _f(19, "TmpfsOpt", "message", "TmpfsOpt"),
        _f(20, "cacheOpt", "message", "CacheOpt"),
        _f(21, "secretOpt", "message", "SecretOpt"),
        _f(22, "SSHOpt", "message", "SSHOpt"),
    ),
    "TmpfsOpt": (_f(1, "size", "int64"),),
    "CacheOpt": (_f(1, "ID", "string"), _f(2, "sharing", "enum", "CacheSharingOpt")),
    "SecretOpt": (
        _f(1, "ID", "string"),
        _f(2, "uid", "uint32"),
        _f(3, "gid", "uint32"),
        _f(4, "mode", "uint32"),
        _f(5, "optional", "bool"),
    ),
    "SSHOpt": (
        _f(1, "ID", "string"),
        _f(2, "uid", "uint32"),
        _f(3, "gid", "uint32"),
        _f(4, "mode", "uint32"),
        _f(5, "optional", "bool"),
    ),
    "SourceOp": (_f(1, "identifier", "string"), _f(2, "attrs", "map", "string:string")),
    "BuildOp": (
        _f(1, "builder", "int64"),
        _f(2, "inputs", "map", "string:BuildInput"),
        _f(3, "def", "message", "Definition"),
        _f(4, "attrs", "map", "string:string"),
    ),
    "BuildInput": (_f(1, "input", "int64"),),
    "OpMetadata": (
        _f(1, "ignore_cache", "bool"),
        _f(2, "description", "map", "string:string"),
        _f(4, "export_cache", "message", "ExportCache"),
        _f(5, "caps", "map", "string:bool"),
    ),
    "Source": (
        _f(1, "locations", "map", "string:Locations"),
        _f(2, "infos", "message", "SourceInfo", repeated=True),
    ),
    "Locations": (_f(1, "locations", "message", "Location", repeated=True),),
    "SourceInfo": (
        _f(1, "filename", "string"),
        _f(2, "data", "bytes"),
        _f(3, "definition", "message", "Definition"),
    ),
    "Location": (_f(1, "sourceIndex", "int32"), _f(2, "ranges", "message", "Range", repeated=True)),
    "Range": (_f(1, "start", "message", "Position"), _f(2, "end", "message", "Position")),
    "Position": (_f(1, "line", "int32"), _f(2, "character", "int32")),
    "ExportCache": (_f(1, "Value", "bool"),),
    "ProxyEnv": (
        _f(1, "http_proxy", "string"),
        _f(2, "https_proxy", "string"),
        _f(3, "ftp_proxy", "string"),
        _f(4, "no_proxy", "string"),
        _f(5, "all_proxy", "string"),
    ),
    "WorkerConstraints": (_f(1, "filter", "string", repeated=True),),
    "Definition": (
        _f(1, "def", "bytes", repeated=True),
        _f(2, "metadata", "map", "string:OpMetadata"),
        _f(3, "Source", "message", "Source"),
    ),
    "FileOp": (_f(2, "actions", "message", "FileAction", repeated=True),),
    "FileAction": (
        _f(1, "input", "int64"),
        _f(2, "secondaryInput", "int64"),
        _f(3, "output", "int64"),
        _f(4, "copy", "message", "FileActionCopy", oneof="action"),
        _f(5, "mkfile", "message", "FileActionMkFile", oneof="action"),
        _f(6, "mkdir", "message", "FileActionMkDir", oneof="action"),
        _f(7, "rm", "message", "FileActionRm", oneof="action"),
    ),
    "FileActionCopy": (
        _f(1, "src", "string"),
        _f(2, "dest", "string"),
        _f(3, "owner", "message", "ChownOpt"),
        _f(4, "mode", "int32"),
        _f(5, "followSymlink", "bool"),
        _f(6, "dirCopyContents", "bool"),
        _f(7, "attemptUnpackDockerCompatibility", "bool"),
        _f(8, "createDestPath", "bool"),
        _f(9, "allowWildcard", "bool"),
        _f(10, "allowEmptyWildcard", "bool"),
        _f(11, "timestamp", "int64"),
    ),
    "FileActionMkFile": (
        _f(1, "path", "string"),
        _f(2, "mode", "int32"),
        _f(3, "data", "bytes"),
        _f(4, "owner", "message", "ChownOpt"),
        _f(5, "timestamp", "int64"),
    ),
    "FileActionMkDir": (
        _f(1, "path", "string"),
        _f(2, "mode", "int32"),
        _f(3, "makeParents", "bool"),
        _f(4, "owner", "message", "ChownOpt"),
        _f(5, "timestamp", "int64"),
    ),
    "FileActionRm": (_f(1, "path", "string"), _f(2, "allowNotFound", "bool"), _f(3, "allowWildcard", "bool")),
    "ChownOpt": (_f(1, "user", "message", "UserOpt"), _f(2, "group", "message", "UserOpt")),
    "UserOpt": (
        _f(1, "byName", "message", "NamedUserOpt", oneof="user"),
        _f(2, "byID", "uint32", oneof="user"),
    ),
    "NamedUserOpt": (_f(1, "name", "string"), _f(2, "input", "int64")),
}

_VARINT_KINDS = frozenset({"bool", "int32", "int64", "uint32", "enum"})
_DEFAULTS: dict[str, object] = {
    "string": "",
    "bytes": b"",
    "bool": False,
    "int32": 0,
    "int64": 0,
    "uint32": 0,
    "enum": 0,
}
_BY_NUMBER: dict[str, dict[int, Field]] = {name: {f.number: f for f in fields} for name, fields in SCHEMA.items()}


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def map_order(key: str) -> bytes:
    """Sort key of upb's deterministic map order: bytewise, but a key sorts before its own prefixes.

    ("source.image.resolvemode" before "source.image"; protobuf's pure-Python backend would sort
    plainly.) 0xff never occurs in UTF-8, so it ends a key above any byte that could continue it.
    """
    return key.encode("utf-8") + b"\xff"


def _scalar(kind: str, value: Any) -> bytes:
    """The payload of one scalar value (without its tag)."""
    if kind == "string":
        data = value.encode("utf-8")
        return _varint(len(data)) + data
    if kind == "bytes":
        return _varint(len(value)) + bytes(value)
    if kind == "bool":
        return b"\x01" if value else b"\x00"
    if kind == "uint32":
        if not 0 <= value < 1 << 32:
            raise WireError(f"uint32 value {value} out of range")
        return _varint(value)
    if kind == "int32":
        if not -(1 << 31) <= value < 1 << 31:
            raise WireError(f"int32 value {value} out of range")
        return _varint(value)
    if not -(1 << 63) <= value < 1 << 63:
        raise WireError(f"{kind} value {value} out of range")
    return _varint(value)


def _tag(number: int, kind: str) -> bytes:
    return _varint(number << 3 | (0 if kind in _VARINT_KINDS else 2))


def _value(kind: str, ref: str, value: Any) -> bytes:
    if kind == "message":
        data = encode(ref, value)
        return _varint(len(data)) + data
    return _scalar(kind, value)


def encode(name: str, message: Mapping[str, Any]) -> bytes:
    """The deterministic protobuf encoding of `message`, a dict shaped like message type `name`."""
    fields = SCHEMA[name]
    unknown = message.keys() - {f.name for f in fields}
    if unknown:
        raise WireError(f"{name} has no field(s) {', '.join(sorted(unknown))}")
    out = bytearray()
    for f in fields:
        value = message.get(f.name)
        if value is None:
            continue
        if f.kind == "map":
            key_kind, value_ref = f.ref.split(":")
            value_kind = value_ref if value_ref in _DEFAULTS else "message"
            tag = _tag(f.number, "map")
            for key in sorted(value, key=map_order if key_kind == "string" else None):
                entry = (
                    b"\x0a" + _scalar(key_kind, key) + _tag(2, value_kind) + _value(value_kind, value_ref, value[key])
                )
                out += tag + _varint(len(entry)) + entry
        elif f.repeated:
            tag = _tag(f.number, f.kind)
            for item in value:
                out += tag + _value(f.kind, f.ref, item)
        elif f.kind == "message" or f.oneof or value != _DEFAULTS[f.kind]:
            out += _tag(f.number, f.kind) + _value(f.kind, f.ref, value)
    return bytes(out)


def encode_definition(ops: list[bytes], metadata: Mapping[str, bytes]) -> bytes:
    """A pb.Definition from already encoded ops and OpMetadata, without decoding them again."""
    out = bytearray()
    for data in ops:
        out += b"\x0a" + _varint(len(data)) + data
    for digest in sorted(metadata, key=map_order):
        key, value = digest.encode("utf-8"), metadata[digest]
        entry = b"\x0a" + _varint(len(key)) + key + b"\x12" + _varint(len(value)) + value
        out += b"\x12" + _varint(len(entry)) + entry
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & ((1 << 64) - 1), pos
        shift += 7


def _convert(kind: str, raw: int) -> int | bool:
    if kind == "bool":
        return raw != 0
    if kind == "uint32":
        return raw & 0xFFFFFFFF
    if kind in ("int32", "enum"):
        raw &= 0xFFFFFFFF
        return raw - (1 << 32) if raw >= 1 << 31 else raw
    return raw - (1 << 64) if raw >= 1 << 63 else raw


def _read_field(data: bytes, pos: int, wire: int) -> tuple[int | bytes, int]:
    if wire == 0:
        return _read_varint(data, pos)
    if wire == 2:
        length, pos = _read_varint(data, pos)
        end = pos + length
        if end > len(data):
            raise WireError("truncated length-delimited field")
        return data[pos:end], end
    if wire == 1:
        if pos + 8 > len(data):
            raise WireError("truncated fixed64 field")
        return int.from_bytes(data[pos : pos + 8], "little"), pos + 8
    if wire == 5:
        if pos + 4 > len(data):
            raise WireError("truncated fixed32 field")
        return int.from_bytes(data[pos : pos + 4], "little"), pos + 4
    raise WireError(f"unsupported wire type {wire}")


def _decode_scalar(kind: str, ref: str, wire: int, raw: int | bytes) -> Any:
    if kind == "message":
        if wire != 2:
            raise WireError(f"message field of {ref} has wire type {wire}")
        return _decode(ref, bytes(raw))  # type: ignore[arg-type]
    if kind in ("string", "bytes"):
        if wire != 2:
            raise WireError(f"{kind} field has wire type {wire}")
        if kind == "bytes":
            return bytes(raw)  # type: ignore[arg-type]
        try:
            return bytes(raw).decode("utf-8")  # type: ignore[arg-type]
        except UnicodeDecodeError:
            raise WireError("string field is not valid UTF-8") from None
    if wire != 0:
        raise WireError(f"{kind} field has wire type {wire}")
    return _convert(kind, raw)  # type: ignore[arg-type]


def _decode_entry(key_kind: str, value_ref: str, data: bytes) -> tuple[Any, Any]:
    value_kind = value_ref if value_ref in _DEFAULTS else "message"
    key: Any = _DEFAULTS[key_kind]
    value: Any = {} if value_kind == "message" else _DEFAULTS[value_kind]
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        raw, pos = _read_field(data, pos, tag & 7)
        if tag >> 3 == 1:
            key = _decode_scalar(key_kind, "", tag & 7, raw)
        elif tag >> 3 == 2:
            value = _decode_scalar(value_kind, value_ref, tag & 7, raw)
    return key, value


def _merge(name: str, into: Message, other: Message) -> None:
    """Protobuf's merge of a repeated occurrence of a message field: lists extend, maps update, oneofs switch."""
    fields = {f.name: f for f in SCHEMA[name]}
    for key, value in other.items():
        f = fields[key]
        if f.oneof:
            for sibling in SCHEMA[name]:
                if sibling.oneof == f.oneof and sibling.name != key:
                    into.pop(sibling.name, None)
        if f.kind == "map":
            into.setdefault(key, {}).update(value)
        elif f.repeated:
            into.setdefault(key, []).extend(value)
        elif f.kind == "message" and key in into:
            _merge(f.ref, into[key], value)
        else:
            into[key] = value


def decode(name: str, data: bytes) -> Message:
    """Parses `data` as message `name` into the dict shape `encode` takes; unknown fields are skipped."""
    message = _decode(name, bytes(data))
    _drop_defaults(name, message)
    return message


def _decode(name: str, data: bytes) -> Message:
    """`decode` keeping scalars read at their default, so that a later merge can still reset a field."""
    by_number = _BY_NUMBER[name]
    message: Message = {}
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError(f"{name}: field number 0")
        raw, pos = _read_field(data, pos, wire)
        f = by_number.get(number)
        if f is None:
            continue
        if f.kind == "map":
            if wire != 2:
                raise WireError(f"{name}.{f.name}: map entry has wire type {wire}")
            key_kind, value_ref = f.ref.split(":")
            key, value = _decode_entry(key_kind, value_ref, raw)  # type: ignore[arg-type]
            message.setdefault(f.name, {})[key] = value
            continue
        if f.repeated and f.kind in _VARINT_KINDS and wire == 2:
            items, inner = message.setdefault(f.name, []), 0
            while inner < len(raw):  # type: ignore[arg-type]
                item, inner = _read_varint(raw, inner)  # type: ignore[arg-type]
                items.append(_convert(f.kind, item))
            continue
        value = _decode_scalar(f.kind, f.ref, wire, raw)
        if f.repeated:
            message.setdefault(f.name, []).append(value)
        else:
            _merge(name, message, {f.name: value})
    return message


def _drop_defaults(name: str, message: Message) -> None:
    """Proto3 has no presence for plain scalars: one read at its default is as good as absent."""
    for f in SCHEMA[name]:
        value = message.get(f.name)
        if value is None:
            continue
        if f.kind == "message":
            for item in value if f.repeated else (value,):
                _drop_defaults(f.ref, item)
        elif f.kind == "map":
            value_ref = f.ref.split(":")[1]
            if value_ref in SCHEMA:
                for item in value.values():
                    _drop_defaults(value_ref, item)
        elif not (f.oneof or f.repeated) and value == _DEFAULTS[f.kind]:
            del message[f.name]


def _json_value(kind: str, ref: str, value: Any) -> Any:
    if kind == "message":
        return to_dict(ref, value)
    if kind == "int64":
        return str(value)
    if kind == "bytes":
        from binascii import b2a_base64  # what base64.b64encode calls, without base64's ~1.5 ms import

        return b2a_base64(value, newline=False).decode("ascii")
    if kind == "enum":
        return ENUMS[ref].get(value, value)
    return value


def to_dict(name: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """What ``json_format.MessageToDict(msg, preserving_proto_field_name=True)`` returns for the message."""
    out: dict[str, Any] = {}
    for f in SCHEMA[name]:
        value = message.get(f.name)
        if value is None:
            continue
        if f.kind == "map":
            if value:
                key_kind, value_ref = f.ref.split(":")
                value_kind = value_ref if value_ref in _DEFAULTS else "message"
                out[f.name] = {str(k): _json_value(value_kind, value_ref, v) for k, v in value.items()}
        elif f.repeated:
            if value:
                out[f.name] = [_json_value(f.kind, f.ref, v) for v in value]
        elif f.kind == "message" or f.oneof or value != _DEFAULTS[f.kind]:
            out[f.name] = _json_value(f.kind, f.ref, value)
    return out
