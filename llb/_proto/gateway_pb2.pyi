from . import ops_pb2 as _ops_pb2
from . import worker_pb2 as _worker_pb2
from . import apicaps_pb2 as _apicaps_pb2
from . import status_pb2 as _status_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Result(_message.Message):
    __slots__ = ("refDeprecated", "refsDeprecated", "ref", "refs", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    REFDEPRECATED_FIELD_NUMBER: _ClassVar[int]
    REFSDEPRECATED_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    refDeprecated: str
    refsDeprecated: RefMapDeprecated
    ref: Ref
    refs: RefMap
    metadata: _containers.ScalarMap[str, bytes]
    def __init__(self, refDeprecated: _Optional[str] = ..., refsDeprecated: _Optional[_Union[RefMapDeprecated, _Mapping]] = ..., ref: _Optional[_Union[Ref, _Mapping]] = ..., refs: _Optional[_Union[RefMap, _Mapping]] = ..., metadata: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class RefMapDeprecated(_message.Message):
    __slots__ = ("refs",)
    class RefsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.ScalarMap[str, str]
    def __init__(self, refs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Ref(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    DEF_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ..., **kwargs) -> None: ...

class RefMap(_message.Message):
    __slots__ = ("refs",)
    class RefsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Ref
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Ref, _Mapping]] = ...) -> None: ...
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.MessageMap[str, Ref]
    def __init__(self, refs: _Optional[_Mapping[str, Ref]] = ...) -> None: ...

class ReturnRequest(_message.Message):
    __slots__ = ("result", "error")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    result: Result
    error: _status_pb2.Status
    def __init__(self, result: _Optional[_Union[Result, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class ReturnResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResolveImageConfigRequest(_message.Message):
    __slots__ = ("Ref", "Platform", "ResolveMode", "LogName")
    REF_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    RESOLVEMODE_FIELD_NUMBER: _ClassVar[int]
    LOGNAME_FIELD_NUMBER: _ClassVar[int]
    Ref: str
    Platform: _ops_pb2.Platform
    ResolveMode: str
    LogName: str
    def __init__(self, Ref: _Optional[str] = ..., Platform: _Optional[_Union[_ops_pb2.Platform, _Mapping]] = ..., ResolveMode: _Optional[str] = ..., LogName: _Optional[str] = ...) -> None: ...

class ResolveImageConfigResponse(_message.Message):
    __slots__ = ("Digest", "Config")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    Digest: str
    Config: bytes
    def __init__(self, Digest: _Optional[str] = ..., Config: _Optional[bytes] = ...) -> None: ...

class SolveRequest(_message.Message):
    __slots__ = ("Definition", "Frontend", "FrontendOpt", "ImportCacheRefsDeprecated", "allowResultReturn", "allowResultArrayRef", "Final", "ExporterAttr", "CacheImports", "FrontendInputs", "Evaluate")
    class FrontendOptEntry(_message.Message):
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
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_FIELD_NUMBER: _ClassVar[int]
    FRONTENDOPT_FIELD_NUMBER: _ClassVar[int]
    IMPORTCACHEREFSDEPRECATED_FIELD_NUMBER: _ClassVar[int]
    ALLOWRESULTRETURN_FIELD_NUMBER: _ClassVar[int]
    ALLOWRESULTARRAYREF_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    EXPORTERATTR_FIELD_NUMBER: _ClassVar[int]
    CACHEIMPORTS_FIELD_NUMBER: _ClassVar[int]
    FRONTENDINPUTS_FIELD_NUMBER: _ClassVar[int]
    EVALUATE_FIELD_NUMBER: _ClassVar[int]
    Definition: _ops_pb2.Definition
    Frontend: str
    FrontendOpt: _containers.ScalarMap[str, str]
    ImportCacheRefsDeprecated: _containers.RepeatedScalarFieldContainer[str]
    allowResultReturn: bool
    allowResultArrayRef: bool
    Final: bool
    ExporterAttr: bytes
    CacheImports: _containers.RepeatedCompositeFieldContainer[CacheOptionsEntry]
    FrontendInputs: _containers.MessageMap[str, _ops_pb2.Definition]
    Evaluate: bool
    def __init__(self, Definition: _Optional[_Union[_ops_pb2.Definition, _Mapping]] = ..., Frontend: _Optional[str] = ..., FrontendOpt: _Optional[_Mapping[str, str]] = ..., ImportCacheRefsDeprecated: _Optional[_Iterable[str]] = ..., allowResultReturn: _Optional[bool] = ..., allowResultArrayRef: _Optional[bool] = ..., Final: _Optional[bool] = ..., ExporterAttr: _Optional[bytes] = ..., CacheImports: _Optional[_Iterable[_Union[CacheOptionsEntry, _Mapping]]] = ..., FrontendInputs: _Optional[_Mapping[str, _ops_pb2.Definition]] = ..., Evaluate: _Optional[bool] = ...) -> None: ...

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
    __slots__ = ("ref", "result")
    REF_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ref: str
    result: Result
    def __init__(self, ref: _Optional[str] = ..., result: _Optional[_Union[Result, _Mapping]] = ...) -> None: ...

class ReadFileRequest(_message.Message):
    __slots__ = ("Ref", "FilePath", "Range")
    REF_FIELD_NUMBER: _ClassVar[int]
    FILEPATH_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    Ref: str
    FilePath: str
    Range: FileRange
    def __init__(self, Ref: _Optional[str] = ..., FilePath: _Optional[str] = ..., Range: _Optional[_Union[FileRange, _Mapping]] = ...) -> None: ...

class FileRange(_message.Message):
    __slots__ = ("Offset", "Length")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    Offset: int
    Length: int
    def __init__(self, Offset: _Optional[int] = ..., Length: _Optional[int] = ...) -> None: ...

class ReadFileResponse(_message.Message):
    __slots__ = ("Data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    Data: bytes
    def __init__(self, Data: _Optional[bytes] = ...) -> None: ...

class ExitMessage(_message.Message):
    __slots__ = ("Code", "Error")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    Code: int
    Error: _status_pb2.Status
    def __init__(self, Code: _Optional[int] = ..., Error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PongResponse(_message.Message):
    __slots__ = ("FrontendAPICaps", "LLBCaps", "Workers")
    FRONTENDAPICAPS_FIELD_NUMBER: _ClassVar[int]
    LLBCAPS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    FrontendAPICaps: _containers.RepeatedCompositeFieldContainer[_apicaps_pb2.APICap]
    LLBCaps: _containers.RepeatedCompositeFieldContainer[_apicaps_pb2.APICap]
    Workers: _containers.RepeatedCompositeFieldContainer[_worker_pb2.WorkerRecord]
    def __init__(self, FrontendAPICaps: _Optional[_Iterable[_Union[_apicaps_pb2.APICap, _Mapping]]] = ..., LLBCaps: _Optional[_Iterable[_Union[_apicaps_pb2.APICap, _Mapping]]] = ..., Workers: _Optional[_Iterable[_Union[_worker_pb2.WorkerRecord, _Mapping]]] = ...) -> None: ...
