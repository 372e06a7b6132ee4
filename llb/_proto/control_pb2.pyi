import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import ops_pb2 as _ops_pb2
from . import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PruneRequest(_message.Message):
    __slots__ = ("filter", "all", "keepDuration", "keepBytes")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    KEEPDURATION_FIELD_NUMBER: _ClassVar[int]
    KEEPBYTES_FIELD_NUMBER: _ClassVar[int]
    filter: _containers.RepeatedScalarFieldContainer[str]
    all: bool
    keepDuration: int
    keepBytes: int
    def __init__(self, filter: _Optional[_Iterable[str]] = ..., all: _Optional[bool] = ..., keepDuration: _Optional[int] = ..., keepBytes: _Optional[int] = ...) -> None: ...

class DiskUsageRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, filter: _Optional[_Iterable[str]] = ...) -> None: ...

class DiskUsageResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: _containers.RepeatedCompositeFieldContainer[UsageRecord]
    def __init__(self, record: _Optional[_Iterable[_Union[UsageRecord, _Mapping]]] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("ID", "Mutable", "InUse", "Size", "Parent", "CreatedAt", "LastUsedAt", "UsageCount", "Description", "RecordType", "Shared")
    ID_FIELD_NUMBER: _ClassVar[int]
    MUTABLE_FIELD_NUMBER: _ClassVar[int]
    INUSE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    CREATEDAT_FIELD_NUMBER: _ClassVar[int]
    LASTUSEDAT_FIELD_NUMBER: _ClassVar[int]
    USAGECOUNT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RECORDTYPE_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    ID: str
    Mutable: bool
    InUse: bool
    Size: int
    Parent: str
    CreatedAt: _timestamp_pb2.Timestamp
    LastUsedAt: _timestamp_pb2.Timestamp
    UsageCount: int
    Description: str
    RecordType: str
    Shared: bool
    def __init__(self, ID: _Optional[str] = ..., Mutable: _Optional[bool] = ..., InUse: _Optional[bool] = ..., Size: _Optional[int] = ..., Parent: _Optional[str] = ..., CreatedAt: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., LastUsedAt: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., UsageCount: _Optional[int] = ..., Description: _Optional[str] = ..., RecordType: _Optional[str] = ..., Shared: _Optional[bool] = ...) -> None: ...

class SolveRequest(_message.Message):
    __slots__ = ("Ref", "Definition", "Exporter", "ExporterAttrs", "Session", "Frontend", "FrontendAttrs", "Cache", "Entitlements", "FrontendInputs", "Internal")
    class ExporterAttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FrontendAttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class FrontendInputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _ops_pb2.Definition
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_ops_pb2.Definition, _Mapping]] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    EXPORTER_FIELD_NUMBER: _ClassVar[int]
    EXPORTERATTRS_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_FIELD_NUMBER: _ClassVar[int]
    FRONTENDATTRS_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    ENTITLEMENTS_FIELD_NUMBER: _ClassVar[int]
    FRONTENDINPUTS_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    Ref: str
    Definition: _ops_pb2.Definition
    Exporter: str
    ExporterAttrs: _containers.ScalarMap[str, str]
    Session: str
    Frontend: str
    FrontendAttrs: _containers.ScalarMap[str, str]
    Cache: CacheOptions
    Entitlements: _containers.RepeatedScalarFieldContainer[str]
    FrontendInputs: _containers.MessageMap[str, _ops_pb2.Definition]
    Internal: bool
    def __init__(self, Ref: _Optional[str] = ..., Definition: _Optional[_Union[_ops_pb2.Definition, _Mapping]] = ..., Exporter: _Optional[str] = ..., ExporterAttrs: _Optional[_Mapping[str, str]] = ..., Session: _Optional[str] = ..., Frontend: _Optional[str] = ..., FrontendAttrs: _Optional[_Mapping[str, str]] = ..., Cache: _Optional[_Union[CacheOptions, _Mapping]] = ..., Entitlements: _Optional[_Iterable[str]] = ..., FrontendInputs: _Optional[_Mapping[str, _ops_pb2.Definition]] = ..., Internal: _Optional[bool] = ...) -> None: ...

class CacheOptions(_message.Message):
    __slots__ = ("ExportRefDeprecated", "ImportRefsDeprecated", "ExportAttrsDeprecated", "Exports", "Imports")
    class ExportAttrsDeprecatedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXPORTREFDEPRECATED_FIELD_NUMBER: _ClassVar[int]
    IMPORTREFSDEPRECATED_FIELD_NUMBER: _ClassVar[int]
    EXPORTATTRSDEPRECATED_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    IMPORTS_FIELD_NUMBER: _ClassVar[int]
    ExportRefDeprecated: str
    ImportRefsDeprecated: _containers.RepeatedScalarFieldContainer[str]
    ExportAttrsDeprecated: _containers.ScalarMap[str, str]
    Exports: _containers.RepeatedCompositeFieldContainer[CacheOptionsEntry]
    Imports: _containers.RepeatedCompositeFieldContainer[CacheOptionsEntry]
    def __init__(self, ExportRefDeprecated: _Optional[str] = ..., ImportRefsDeprecated: _Optional[_Iterable[str]] = ..., ExportAttrsDeprecated: _Optional[_Mapping[str, str]] = ..., Exports: _Optional[_Iterable[_Union[CacheOptionsEntry, _Mapping]]] = ..., Imports: _Optional[_Iterable[_Union[CacheOptionsEntry, _Mapping]]] = ...) -> None: ...

class CacheOptionsEntry(_message.Message):
    __slots__ = ("Type", "Attrs")
    class AttrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTRS_FIELD_NUMBER: _ClassVar[int]
    Type: str
    Attrs: _containers.ScalarMap[str, str]
    def __init__(self, Type: _Optional[str] = ..., Attrs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SolveResponse(_message.Message):
    __slots__ = ("ExporterResponse",)
    class ExporterResponseEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXPORTERRESPONSE_FIELD_NUMBER: _ClassVar[int]
    ExporterResponse: _containers.ScalarMap[str, str]
    def __init__(self, ExporterResponse: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("Ref",)
    REF_FIELD_NUMBER: _ClassVar[int]
    Ref: str
    def __init__(self, Ref: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("vertexes", "statuses", "logs")
    VERTEXES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    vertexes: _containers.RepeatedCompositeFieldContainer[Vertex]
    statuses: _containers.RepeatedCompositeFieldContainer[VertexStatus]
    logs: _containers.RepeatedCompositeFieldContainer[VertexLog]
    def __init__(self, vertexes: _Optional[_Iterable[_Union[Vertex, _Mapping]]] = ..., statuses: _Optional[_Iterable[_Union[VertexStatus, _Mapping]]] = ..., logs: _Optional[_Iterable[_Union[VertexLog, _Mapping]]] = ...) -> None: ...

class Vertex(_message.Message):
    __slots__ = ("digest", "inputs", "name", "cached", "started", "completed", "error")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    digest: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    name: str
    cached: bool
    started: _timestamp_pb2.Timestamp
    completed: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, digest: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., cached: _Optional[bool] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class VertexStatus(_message.Message):
    __slots__ = ("ID", "vertex", "name", "current", "total", "timestamp", "started", "completed")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERTEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ID: str
    vertex: str
    name: str
    current: int
    total: int
    timestamp: _timestamp_pb2.Timestamp
    started: _timestamp_pb2.Timestamp
    completed: _timestamp_pb2.Timestamp
    def __init__(self, ID: _Optional[str] = ..., vertex: _Optional[str] = ..., name: _Optional[str] = ..., current: _Optional[int] = ..., total: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VertexLog(_message.Message):
    __slots__ = ("vertex", "timestamp", "stream", "msg")
    VERTEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    vertex: str
    timestamp: _timestamp_pb2.Timestamp
    stream: int
    msg: bytes
    def __init__(self, vertex: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stream: _Optional[int] = ..., msg: _Optional[bytes] = ...) -> None: ...

class BytesMessage(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("filter",)
    FILTER_FIELD_NUMBER: _ClassVar[int]
    filter: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, filter: _Optional[_Iterable[str]] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: _containers.RepeatedCompositeFieldContainer[_worker_pb2.WorkerRecord]
    def __init__(self, record: _Optional[_Iterable[_Union[_worker_pb2.WorkerRecord, _Mapping]]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("buildkitVersion",)
    BUILDKITVERSION_FIELD_NUMBER: _ClassVar[int]
    buildkitVersion: _worker_pb2.BuildkitVersion
    def __init__(self, buildkitVersion: _Optional[_Union[_worker_pb2.BuildkitVersion, _Mapping]] = ...) -> None: ...
