import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from waka.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BuildStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUILD_STATUS_UNSPECIFIED: _ClassVar[BuildStatus]
    BUILD_STATUS_PENDING: _ClassVar[BuildStatus]
    BUILD_STATUS_BUILDING: _ClassVar[BuildStatus]
    BUILD_STATUS_SUCCEEDED: _ClassVar[BuildStatus]
    BUILD_STATUS_FAILED: _ClassVar[BuildStatus]
BUILD_STATUS_UNSPECIFIED: BuildStatus
BUILD_STATUS_PENDING: BuildStatus
BUILD_STATUS_BUILDING: BuildStatus
BUILD_STATUS_SUCCEEDED: BuildStatus
BUILD_STATUS_FAILED: BuildStatus

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AppRef(_message.Message):
    __slots__ = ("app",)
    APP_FIELD_NUMBER: _ClassVar[int]
    app: str
    def __init__(self, app: _Optional[str] = ...) -> None: ...

class AppUpdate(_message.Message):
    __slots__ = ("app", "set_maintenance", "maintenance", "set_preboot", "preboot", "set_private_network", "private_network")
    APP_FIELD_NUMBER: _ClassVar[int]
    SET_MAINTENANCE_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_FIELD_NUMBER: _ClassVar[int]
    SET_PREBOOT_FIELD_NUMBER: _ClassVar[int]
    PREBOOT_FIELD_NUMBER: _ClassVar[int]
    SET_PRIVATE_NETWORK_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_NETWORK_FIELD_NUMBER: _ClassVar[int]
    app: str
    set_maintenance: bool
    maintenance: bool
    set_preboot: bool
    preboot: bool
    set_private_network: bool
    private_network: bool
    def __init__(self, app: _Optional[str] = ..., set_maintenance: _Optional[bool] = ..., maintenance: _Optional[bool] = ..., set_preboot: _Optional[bool] = ..., preboot: _Optional[bool] = ..., set_private_network: _Optional[bool] = ..., private_network: _Optional[bool] = ...) -> None: ...

class CreateAppRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RenameAppRequest(_message.Message):
    __slots__ = ("app", "new_name")
    APP_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    app: str
    new_name: str
    def __init__(self, app: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class DestroyAppRequest(_message.Message):
    __slots__ = ("app", "confirm")
    APP_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    app: str
    confirm: str
    def __init__(self, app: _Optional[str] = ..., confirm: _Optional[str] = ...) -> None: ...

class App(_message.Message):
    __slots__ = ("name", "id", "created_at", "git_url", "current_release", "stack", "uid", "web_url", "maintenance", "preboot", "private_network")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    GIT_URL_FIELD_NUMBER: _ClassVar[int]
    CURRENT_RELEASE_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    WEB_URL_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_FIELD_NUMBER: _ClassVar[int]
    PREBOOT_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_NETWORK_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    created_at: _timestamp_pb2.Timestamp
    git_url: str
    current_release: int
    stack: str
    uid: int
    web_url: str
    maintenance: bool
    preboot: bool
    private_network: bool
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., git_url: _Optional[str] = ..., current_release: _Optional[int] = ..., stack: _Optional[str] = ..., uid: _Optional[int] = ..., web_url: _Optional[str] = ..., maintenance: _Optional[bool] = ..., preboot: _Optional[bool] = ..., private_network: _Optional[bool] = ...) -> None: ...

class AppList(_message.Message):
    __slots__ = ("apps",)
    APPS_FIELD_NUMBER: _ClassVar[int]
    apps: _containers.RepeatedCompositeFieldContainer[App]
    def __init__(self, apps: _Optional[_Iterable[_Union[App, _Mapping]]] = ...) -> None: ...

class GarbageRequest(_message.Message):
    __slots__ = ("immediate",)
    IMMEDIATE_FIELD_NUMBER: _ClassVar[int]
    immediate: bool
    def __init__(self, immediate: _Optional[bool] = ...) -> None: ...

class GarbageReport(_message.Message):
    __slots__ = ("slugs_removed", "slug_bytes", "sources_removed", "source_bytes", "releases_kept")
    SLUGS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SLUG_BYTES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SOURCE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RELEASES_KEPT_FIELD_NUMBER: _ClassVar[int]
    slugs_removed: int
    slug_bytes: int
    sources_removed: int
    source_bytes: int
    releases_kept: int
    def __init__(self, slugs_removed: _Optional[int] = ..., slug_bytes: _Optional[int] = ..., sources_removed: _Optional[int] = ..., source_bytes: _Optional[int] = ..., releases_kept: _Optional[int] = ...) -> None: ...

class BuildpackList(_message.Message):
    __slots__ = ("app", "buildpacks")
    APP_FIELD_NUMBER: _ClassVar[int]
    BUILDPACKS_FIELD_NUMBER: _ClassVar[int]
    app: str
    buildpacks: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, app: _Optional[str] = ..., buildpacks: _Optional[_Iterable[str]] = ...) -> None: ...

class BuildUpload(_message.Message):
    __slots__ = ("header", "data")
    class Header(_message.Message):
        __slots__ = ("app", "source_version", "no_wait")
        APP_FIELD_NUMBER: _ClassVar[int]
        SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
        NO_WAIT_FIELD_NUMBER: _ClassVar[int]
        app: str
        source_version: str
        no_wait: bool
        def __init__(self, app: _Optional[str] = ..., source_version: _Optional[str] = ..., no_wait: _Optional[bool] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: BuildUpload.Header
    data: bytes
    def __init__(self, header: _Optional[_Union[BuildUpload.Header, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class BuildRef(_message.Message):
    __slots__ = ("app", "id")
    APP_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    app: str
    id: str
    def __init__(self, app: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class Build(_message.Message):
    __slots__ = ("id", "app", "status", "source_version", "node", "created_at", "finished_at", "slug_sha256", "slug_size", "buildpacks", "error", "release")
    ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    SLUG_SHA256_FIELD_NUMBER: _ClassVar[int]
    SLUG_SIZE_FIELD_NUMBER: _ClassVar[int]
    BUILDPACKS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    id: str
    app: str
    status: BuildStatus
    source_version: str
    node: str
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    slug_sha256: str
    slug_size: int
    buildpacks: _containers.RepeatedScalarFieldContainer[str]
    error: str
    release: int
    def __init__(self, id: _Optional[str] = ..., app: _Optional[str] = ..., status: _Optional[_Union[BuildStatus, str]] = ..., source_version: _Optional[str] = ..., node: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., slug_sha256: _Optional[str] = ..., slug_size: _Optional[int] = ..., buildpacks: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ..., release: _Optional[int] = ...) -> None: ...

class BuildList(_message.Message):
    __slots__ = ("builds",)
    BUILDS_FIELD_NUMBER: _ClassVar[int]
    builds: _containers.RepeatedCompositeFieldContainer[Build]
    def __init__(self, builds: _Optional[_Iterable[_Union[Build, _Mapping]]] = ...) -> None: ...

class BuildEvent(_message.Message):
    __slots__ = ("started", "output", "finished")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    started: Build
    output: OutputLines
    finished: Build
    def __init__(self, started: _Optional[_Union[Build, _Mapping]] = ..., output: _Optional[_Union[OutputLines, _Mapping]] = ..., finished: _Optional[_Union[Build, _Mapping]] = ...) -> None: ...

class OutputLines(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...

class ListReleasesRequest(_message.Message):
    __slots__ = ("app", "limit")
    APP_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    app: str
    limit: int
    def __init__(self, app: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ReleaseRef(_message.Message):
    __slots__ = ("app", "version")
    APP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    app: str
    version: int
    def __init__(self, app: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("version", "app", "description", "user", "created_at", "slug_sha256", "slug_size", "process_types", "config_names", "buildpacks", "current", "status", "stack")
    class ProcessTypesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SLUG_SHA256_FIELD_NUMBER: _ClassVar[int]
    SLUG_SIZE_FIELD_NUMBER: _ClassVar[int]
    PROCESS_TYPES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NAMES_FIELD_NUMBER: _ClassVar[int]
    BUILDPACKS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    version: int
    app: str
    description: str
    user: str
    created_at: _timestamp_pb2.Timestamp
    slug_sha256: str
    slug_size: int
    process_types: _containers.ScalarMap[str, str]
    config_names: _containers.RepeatedScalarFieldContainer[str]
    buildpacks: _containers.RepeatedScalarFieldContainer[str]
    current: bool
    status: str
    stack: str
    def __init__(self, version: _Optional[int] = ..., app: _Optional[str] = ..., description: _Optional[str] = ..., user: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., slug_sha256: _Optional[str] = ..., slug_size: _Optional[int] = ..., process_types: _Optional[_Mapping[str, str]] = ..., config_names: _Optional[_Iterable[str]] = ..., buildpacks: _Optional[_Iterable[str]] = ..., current: _Optional[bool] = ..., status: _Optional[str] = ..., stack: _Optional[str] = ...) -> None: ...

class ReleaseList(_message.Message):
    __slots__ = ("releases",)
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    releases: _containers.RepeatedCompositeFieldContainer[Release]
    def __init__(self, releases: _Optional[_Iterable[_Union[Release, _Mapping]]] = ...) -> None: ...

class FormationEntry(_message.Message):
    __slots__ = ("type", "quantity", "size", "command")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    type: str
    quantity: int
    size: str
    command: str
    def __init__(self, type: _Optional[str] = ..., quantity: _Optional[int] = ..., size: _Optional[str] = ..., command: _Optional[str] = ...) -> None: ...

class FormationList(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[FormationEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[FormationEntry, _Mapping]]] = ...) -> None: ...

class ScaleChange(_message.Message):
    __slots__ = ("type", "quantity", "relative", "has_quantity", "size")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_FIELD_NUMBER: _ClassVar[int]
    HAS_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    type: str
    quantity: int
    relative: bool
    has_quantity: bool
    size: str
    def __init__(self, type: _Optional[str] = ..., quantity: _Optional[int] = ..., relative: _Optional[bool] = ..., has_quantity: _Optional[bool] = ..., size: _Optional[str] = ...) -> None: ...

class ScaleRequest(_message.Message):
    __slots__ = ("app", "changes")
    APP_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    app: str
    changes: _containers.RepeatedCompositeFieldContainer[ScaleChange]
    def __init__(self, app: _Optional[str] = ..., changes: _Optional[_Iterable[_Union[ScaleChange, _Mapping]]] = ...) -> None: ...

class RunSpec(_message.Message):
    __slots__ = ("app", "command", "size", "env", "tty", "cols", "rows", "dyno")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    APP_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DYNO_FIELD_NUMBER: _ClassVar[int]
    app: str
    command: str
    size: str
    env: _containers.ScalarMap[str, str]
    tty: bool
    cols: int
    rows: int
    dyno: str
    def __init__(self, app: _Optional[str] = ..., command: _Optional[str] = ..., size: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., tty: _Optional[bool] = ..., cols: _Optional[int] = ..., rows: _Optional[int] = ..., dyno: _Optional[str] = ...) -> None: ...

class RunInput(_message.Message):
    __slots__ = ("spec", "stdin", "stdin_eof", "resize", "signal")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDIN_EOF_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    spec: RunSpec
    stdin: bytes
    stdin_eof: bool
    resize: _common_pb2.WindowSize
    signal: int
    def __init__(self, spec: _Optional[_Union[RunSpec, _Mapping]] = ..., stdin: _Optional[bytes] = ..., stdin_eof: _Optional[bool] = ..., resize: _Optional[_Union[_common_pb2.WindowSize, _Mapping]] = ..., signal: _Optional[int] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("started", "stdout", "stderr", "exit_code", "error")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    started: Dyno
    stdout: bytes
    stderr: bytes
    exit_code: int
    error: str
    def __init__(self, started: _Optional[_Union[Dyno, _Mapping]] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class DynoTarget(_message.Message):
    __slots__ = ("app", "target")
    APP_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    app: str
    target: str
    def __init__(self, app: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class Dyno(_message.Message):
    __slots__ = ("id", "app", "name", "type", "state", "release", "node", "address", "command", "size", "state_changed_at", "message", "restarts")
    ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    app: str
    name: str
    type: str
    state: _common_pb2.DynoState
    release: int
    node: str
    address: str
    command: str
    size: str
    state_changed_at: _timestamp_pb2.Timestamp
    message: str
    restarts: int
    def __init__(self, id: _Optional[str] = ..., app: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.DynoState, str]] = ..., release: _Optional[int] = ..., node: _Optional[str] = ..., address: _Optional[str] = ..., command: _Optional[str] = ..., size: _Optional[str] = ..., state_changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., restarts: _Optional[int] = ...) -> None: ...

class DynoList(_message.Message):
    __slots__ = ("dynos",)
    DYNOS_FIELD_NUMBER: _ClassVar[int]
    dynos: _containers.RepeatedCompositeFieldContainer[Dyno]
    def __init__(self, dynos: _Optional[_Iterable[_Union[Dyno, _Mapping]]] = ...) -> None: ...

class ConfigVars(_message.Message):
    __slots__ = ("vars",)
    class VarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VARS_FIELD_NUMBER: _ClassVar[int]
    vars: _containers.ScalarMap[str, str]
    def __init__(self, vars: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ConfigUpdate(_message.Message):
    __slots__ = ("app", "set", "unset")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    APP_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    UNSET_FIELD_NUMBER: _ClassVar[int]
    app: str
    set: _containers.ScalarMap[str, str]
    unset: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, app: _Optional[str] = ..., set: _Optional[_Mapping[str, str]] = ..., unset: _Optional[_Iterable[str]] = ...) -> None: ...

class ConfigChange(_message.Message):
    __slots__ = ("vars", "release")
    class VarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VARS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    vars: _containers.ScalarMap[str, str]
    release: int
    def __init__(self, vars: _Optional[_Mapping[str, str]] = ..., release: _Optional[int] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("app", "url")
    APP_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    app: str
    url: str
    def __init__(self, app: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class LogDrain(_message.Message):
    __slots__ = ("id", "url", "token", "buffered", "delivered", "dropped", "last_error")
    ID_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    url: str
    token: str
    buffered: int
    delivered: int
    dropped: int
    last_error: str
    def __init__(self, id: _Optional[str] = ..., url: _Optional[str] = ..., token: _Optional[str] = ..., buffered: _Optional[int] = ..., delivered: _Optional[int] = ..., dropped: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class LogDrainList(_message.Message):
    __slots__ = ("drains",)
    DRAINS_FIELD_NUMBER: _ClassVar[int]
    drains: _containers.RepeatedCompositeFieldContainer[LogDrain]
    def __init__(self, drains: _Optional[_Iterable[_Union[LogDrain, _Mapping]]] = ...) -> None: ...

class TailRequest(_message.Message):
    __slots__ = ("app", "num", "follow", "source", "dyno", "since_us", "until_us")
    APP_FIELD_NUMBER: _ClassVar[int]
    NUM_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DYNO_FIELD_NUMBER: _ClassVar[int]
    SINCE_US_FIELD_NUMBER: _ClassVar[int]
    UNTIL_US_FIELD_NUMBER: _ClassVar[int]
    app: str
    num: int
    follow: bool
    source: str
    dyno: str
    since_us: int
    until_us: int
    def __init__(self, app: _Optional[str] = ..., num: _Optional[int] = ..., follow: _Optional[bool] = ..., source: _Optional[str] = ..., dyno: _Optional[str] = ..., since_us: _Optional[int] = ..., until_us: _Optional[int] = ...) -> None: ...

class NodeRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "id", "address", "state", "dynos", "memory_committed_mb", "memory_total_mb", "memory_free_mb", "last_seen", "cpus", "load1", "unknown_dynos", "version", "isolated", "disk_free_mb")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DYNOS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_COMMITTED_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_DYNOS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ISOLATED_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    address: str
    state: str
    dynos: int
    memory_committed_mb: int
    memory_total_mb: int
    memory_free_mb: int
    last_seen: _timestamp_pb2.Timestamp
    cpus: int
    load1: float
    unknown_dynos: int
    version: str
    isolated: bool
    disk_free_mb: int
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[str] = ..., dynos: _Optional[int] = ..., memory_committed_mb: _Optional[int] = ..., memory_total_mb: _Optional[int] = ..., memory_free_mb: _Optional[int] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cpus: _Optional[int] = ..., load1: _Optional[float] = ..., unknown_dynos: _Optional[int] = ..., version: _Optional[str] = ..., isolated: _Optional[bool] = ..., disk_free_mb: _Optional[int] = ...) -> None: ...

class NodeList(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class JoinTokenRequest(_message.Message):
    __slots__ = ("ttl_seconds", "uses")
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    ttl_seconds: int
    uses: int
    def __init__(self, ttl_seconds: _Optional[int] = ..., uses: _Optional[int] = ...) -> None: ...

class JoinToken(_message.Message):
    __slots__ = ("token", "expires_at", "uses")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at: _timestamp_pb2.Timestamp
    uses: int
    def __init__(self, token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uses: _Optional[int] = ...) -> None: ...

class DomainRef(_message.Message):
    __slots__ = ("app", "hostname")
    APP_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    app: str
    hostname: str
    def __init__(self, app: _Optional[str] = ..., hostname: _Optional[str] = ...) -> None: ...

class Domain(_message.Message):
    __slots__ = ("hostname", "app", "kind", "created_at")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    app: str
    kind: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, hostname: _Optional[str] = ..., app: _Optional[str] = ..., kind: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DomainList(_message.Message):
    __slots__ = ("domains",)
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    domains: _containers.RepeatedCompositeFieldContainer[Domain]
    def __init__(self, domains: _Optional[_Iterable[_Union[Domain, _Mapping]]] = ...) -> None: ...

class CreateAddonRequest(_message.Message):
    __slots__ = ("app", "service", "plan", "as_name", "node")
    APP_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    AS_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    app: str
    service: str
    plan: str
    as_name: str
    node: str
    def __init__(self, app: _Optional[str] = ..., service: _Optional[str] = ..., plan: _Optional[str] = ..., as_name: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class AddonListRequest(_message.Message):
    __slots__ = ("app",)
    APP_FIELD_NUMBER: _ClassVar[int]
    app: str
    def __init__(self, app: _Optional[str] = ...) -> None: ...

class AddonRef(_message.Message):
    __slots__ = ("name", "app")
    NAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    name: str
    app: str
    def __init__(self, name: _Optional[str] = ..., app: _Optional[str] = ...) -> None: ...

class AttachAddonRequest(_message.Message):
    __slots__ = ("name", "app", "as_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    AS_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    app: str
    as_name: str
    def __init__(self, name: _Optional[str] = ..., app: _Optional[str] = ..., as_name: _Optional[str] = ...) -> None: ...

class DestroyAddonRequest(_message.Message):
    __slots__ = ("name", "confirm")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    name: str
    confirm: str
    def __init__(self, name: _Optional[str] = ..., confirm: _Optional[str] = ...) -> None: ...

class AddonAttachment(_message.Message):
    __slots__ = ("app", "name", "config_var")
    APP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VAR_FIELD_NUMBER: _ClassVar[int]
    app: str
    name: str
    config_var: str
    def __init__(self, app: _Optional[str] = ..., name: _Optional[str] = ..., config_var: _Optional[str] = ...) -> None: ...

class Addon(_message.Message):
    __slots__ = ("name", "id", "service", "plan", "state", "message", "mode", "node", "server", "app", "attachments", "created_at", "port")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: str
    service: str
    plan: str
    state: str
    message: str
    mode: str
    node: str
    server: str
    app: str
    attachments: _containers.RepeatedCompositeFieldContainer[AddonAttachment]
    created_at: _timestamp_pb2.Timestamp
    port: int
    def __init__(self, name: _Optional[str] = ..., id: _Optional[str] = ..., service: _Optional[str] = ..., plan: _Optional[str] = ..., state: _Optional[str] = ..., message: _Optional[str] = ..., mode: _Optional[str] = ..., node: _Optional[str] = ..., server: _Optional[str] = ..., app: _Optional[str] = ..., attachments: _Optional[_Iterable[_Union[AddonAttachment, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., port: _Optional[int] = ...) -> None: ...

class AddonList(_message.Message):
    __slots__ = ("addons",)
    ADDONS_FIELD_NUMBER: _ClassVar[int]
    addons: _containers.RepeatedCompositeFieldContainer[Addon]
    def __init__(self, addons: _Optional[_Iterable[_Union[Addon, _Mapping]]] = ...) -> None: ...

class AttachmentRelease(_message.Message):
    __slots__ = ("app", "config_var", "version", "action")
    APP_FIELD_NUMBER: _ClassVar[int]
    CONFIG_VAR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    app: str
    config_var: str
    version: int
    action: str
    def __init__(self, app: _Optional[str] = ..., config_var: _Optional[str] = ..., version: _Optional[int] = ..., action: _Optional[str] = ...) -> None: ...

class AddonChange(_message.Message):
    __slots__ = ("addon", "releases", "message")
    ADDON_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    addon: Addon
    releases: _containers.RepeatedCompositeFieldContainer[AttachmentRelease]
    message: str
    def __init__(self, addon: _Optional[_Union[Addon, _Mapping]] = ..., releases: _Optional[_Iterable[_Union[AttachmentRelease, _Mapping]]] = ..., message: _Optional[str] = ...) -> None: ...

class AddonPlan(_message.Message):
    __slots__ = ("name", "summary", "default")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    summary: str
    default: bool
    def __init__(self, name: _Optional[str] = ..., summary: _Optional[str] = ..., default: _Optional[bool] = ...) -> None: ...

class AddonService(_message.Message):
    __slots__ = ("name", "attachment", "plans", "external", "backups")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENT_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    BACKUPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    attachment: str
    plans: _containers.RepeatedCompositeFieldContainer[AddonPlan]
    external: bool
    backups: bool
    def __init__(self, name: _Optional[str] = ..., attachment: _Optional[str] = ..., plans: _Optional[_Iterable[_Union[AddonPlan, _Mapping]]] = ..., external: _Optional[bool] = ..., backups: _Optional[bool] = ...) -> None: ...

class AddonServiceList(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[AddonService]
    def __init__(self, services: _Optional[_Iterable[_Union[AddonService, _Mapping]]] = ...) -> None: ...

class AddAddonServerRequest(_message.Message):
    __slots__ = ("service", "url", "name")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    service: str
    url: str
    name: str
    def __init__(self, service: _Optional[str] = ..., url: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class AddonServerRef(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AddonServer(_message.Message):
    __slots__ = ("name", "service", "address", "addons", "created_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ADDONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    service: str
    address: str
    addons: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., service: _Optional[str] = ..., address: _Optional[str] = ..., addons: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AddonServerList(_message.Message):
    __slots__ = ("servers",)
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    servers: _containers.RepeatedCompositeFieldContainer[AddonServer]
    def __init__(self, servers: _Optional[_Iterable[_Union[AddonServer, _Mapping]]] = ...) -> None: ...

class Backup(_message.Message):
    __slots__ = ("id", "addon", "app", "status", "size", "created_at", "finished_at", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDON_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    addon: str
    app: str
    status: str
    size: int
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, id: _Optional[str] = ..., addon: _Optional[str] = ..., app: _Optional[str] = ..., status: _Optional[str] = ..., size: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class BackupList(_message.Message):
    __slots__ = ("backups",)
    BACKUPS_FIELD_NUMBER: _ClassVar[int]
    backups: _containers.RepeatedCompositeFieldContainer[Backup]
    def __init__(self, backups: _Optional[_Iterable[_Union[Backup, _Mapping]]] = ...) -> None: ...

class BackupEvent(_message.Message):
    __slots__ = ("output", "finished")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    output: str
    finished: Backup
    def __init__(self, output: _Optional[str] = ..., finished: _Optional[_Union[Backup, _Mapping]] = ...) -> None: ...

class RestoreBackupRequest(_message.Message):
    __slots__ = ("id", "name", "app", "confirm")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    app: str
    confirm: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., app: _Optional[str] = ..., confirm: _Optional[str] = ...) -> None: ...

class BackupRef(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...
