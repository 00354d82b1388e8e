from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DynoState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DYNO_STATE_UNSPECIFIED: _ClassVar[DynoState]
    DYNO_STATE_STARTING: _ClassVar[DynoState]
    DYNO_STATE_UP: _ClassVar[DynoState]
    DYNO_STATE_CRASHED: _ClassVar[DynoState]
    DYNO_STATE_DOWN: _ClassVar[DynoState]
    DYNO_STATE_PENDING: _ClassVar[DynoState]
DYNO_STATE_UNSPECIFIED: DynoState
DYNO_STATE_STARTING: DynoState
DYNO_STATE_UP: DynoState
DYNO_STATE_CRASHED: DynoState
DYNO_STATE_DOWN: DynoState
DYNO_STATE_PENDING: DynoState

class LogLine(_message.Message):
    __slots__ = ("time_us", "app", "source", "dyno", "text", "seq", "stream", "offset")
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DYNO_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    time_us: int
    app: str
    source: str
    dyno: str
    text: str
    seq: int
    stream: str
    offset: int
    def __init__(self, time_us: _Optional[int] = ..., app: _Optional[str] = ..., source: _Optional[str] = ..., dyno: _Optional[str] = ..., text: _Optional[str] = ..., seq: _Optional[int] = ..., stream: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class LogBatch(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class DynoSize(_message.Message):
    __slots__ = ("name", "memory_mb", "pids", "cpu_shares")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    CPU_SHARES_FIELD_NUMBER: _ClassVar[int]
    name: str
    memory_mb: int
    pids: int
    cpu_shares: int
    def __init__(self, name: _Optional[str] = ..., memory_mb: _Optional[int] = ..., pids: _Optional[int] = ..., cpu_shares: _Optional[int] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class WindowSize(_message.Message):
    __slots__ = ("cols", "rows")
    COLS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    cols: int
    rows: int
    def __init__(self, cols: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...
