from . import ops_pb2 as _ops_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Vertex(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    def __init__(self, digest: _Optional[str] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("info", "ranges")
    INFO_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    info: _ops_pb2.SourceInfo
    ranges: _containers.RepeatedCompositeFieldContainer[_ops_pb2.Range]
    def __init__(self, info: _Optional[_Union[_ops_pb2.SourceInfo, _Mapping]] = ..., ranges: _Optional[_Iterable[_Union[_ops_pb2.Range, _Mapping]]] = ...) -> None: ...

class FrontendCap(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Subrequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Stack(_message.Message):
    __slots__ = ("frames", "cmdline", "pid", "version", "revision")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    CMDLINE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    cmdline: _containers.RepeatedScalarFieldContainer[str]
    pid: int
    version: str
    revision: str
    def __init__(self, frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ..., cmdline: _Optional[_Iterable[str]] = ..., pid: _Optional[int] = ..., version: _Optional[str] = ..., revision: _Optional[str] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("Name", "File", "Line")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    Name: str
    File: str
    Line: int
    def __init__(self, Name: _Optional[str] = ..., File: _Optional[str] = ..., Line: _Optional[int] = ...) -> None: ...
