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
