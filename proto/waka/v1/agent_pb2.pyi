from waka.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttachFrame(_message.Message):
    __slots__ = ("dyno_id", "stdin", "stdin_eof", "resize", "signal", "stdout", "stderr", "exit_code", "error")
    DYNO_ID_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STDIN_EOF_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    dyno_id: str
    stdin: bytes
    stdin_eof: bool
    resize: _common_pb2.WindowSize
    signal: int
    stdout: bytes
    stderr: bytes
    exit_code: int
    error: str
    def __init__(self, dyno_id: _Optional[str] = ..., stdin: _Optional[bytes] = ..., stdin_eof: _Optional[bool] = ..., resize: _Optional[_Union[_common_pb2.WindowSize, _Mapping]] = ..., signal: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("name", "inventory", "csr")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    CSR_FIELD_NUMBER: _ClassVar[int]
    name: str
    inventory: Inventory
    csr: bytes
    def __init__(self, name: _Optional[str] = ..., inventory: _Optional[_Union[Inventory, _Mapping]] = ..., csr: _Optional[bytes] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("node_id", "name", "certificate", "ca_certificate", "agent_endpoint")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CA_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    name: str
    certificate: bytes
    ca_certificate: bytes
    agent_endpoint: str
    def __init__(self, node_id: _Optional[str] = ..., name: _Optional[str] = ..., certificate: _Optional[bytes] = ..., ca_certificate: _Optional[bytes] = ..., agent_endpoint: _Optional[str] = ...) -> None: ...

class LocateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LocateResponse(_message.Message):
    __slots__ = ("agent_endpoint",)
    AGENT_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    agent_endpoint: str
    def __init__(self, agent_endpoint: _Optional[str] = ...) -> None: ...

class Inventory(_message.Message):
    __slots__ = ("cpus", "memory_total_mb", "memory_free_mb", "disk_free_mb", "load1", "address", "version", "isolated")
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_MB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_MB_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ISOLATED_FIELD_NUMBER: _ClassVar[int]
    cpus: int
    memory_total_mb: int
    memory_free_mb: int
    disk_free_mb: int
    load1: float
    address: str
    version: str
    isolated: bool
    def __init__(self, cpus: _Optional[int] = ..., memory_total_mb: _Optional[int] = ..., memory_free_mb: _Optional[int] = ..., disk_free_mb: _Optional[int] = ..., load1: _Optional[float] = ..., address: _Optional[str] = ..., version: _Optional[str] = ..., isolated: _Optional[bool] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "status", "build_output", "build_result", "leaving")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    BUILD_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    BUILD_RESULT_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    status: NodeStatus
    build_output: BuildOutput
    build_result: BuildResult
    leaving: Leaving
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., status: _Optional[_Union[NodeStatus, _Mapping]] = ..., build_output: _Optional[_Union[BuildOutput, _Mapping]] = ..., build_result: _Optional[_Union[BuildResult, _Mapping]] = ..., leaving: _Optional[_Union[Leaving, _Mapping]] = ...) -> None: ...

class Leaving(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaveReply(_message.Message):
    __slots__ = ("moving",)
    MOVING_FIELD_NUMBER: _ClassVar[int]
    moving: bool
    def __init__(self, moving: _Optional[bool] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("inventory", "slugs", "status", "log_seq")
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    SLUGS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOG_SEQ_FIELD_NUMBER: _ClassVar[int]
    inventory: Inventory
    slugs: _containers.RepeatedScalarFieldContainer[str]
    status: NodeStatus
    log_seq: int
    def __init__(self, inventory: _Optional[_Union[Inventory, _Mapping]] = ..., slugs: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[NodeStatus, _Mapping]] = ..., log_seq: _Optional[int] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("dynos", "inventory", "builds")
    DYNOS_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    BUILDS_FIELD_NUMBER: _ClassVar[int]
    dynos: _containers.RepeatedCompositeFieldContainer[DynoStatus]
    inventory: Inventory
    builds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dynos: _Optional[_Iterable[_Union[DynoStatus, _Mapping]]] = ..., inventory: _Optional[_Union[Inventory, _Mapping]] = ..., builds: _Optional[_Iterable[str]] = ...) -> None: ...

class DynoStatus(_message.Message):
    __slots__ = ("id", "app", "name", "state", "release", "pid", "port", "exit_code", "restarts", "state_changed_us", "message", "memory_bytes", "address")
    ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_US_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    app: str
    name: str
    state: _common_pb2.DynoState
    release: int
    pid: int
    port: int
    exit_code: int
    restarts: int
    state_changed_us: int
    message: str
    memory_bytes: int
    address: str
    def __init__(self, id: _Optional[str] = ..., app: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.DynoState, str]] = ..., release: _Optional[int] = ..., pid: _Optional[int] = ..., port: _Optional[int] = ..., exit_code: _Optional[int] = ..., restarts: _Optional[int] = ..., state_changed_us: _Optional[int] = ..., message: _Optional[str] = ..., memory_bytes: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class ControllerMessage(_message.Message):
    __slots__ = ("assignment", "build_job", "cancel_build", "purge_cache", "collect_garbage", "delete_volume", "leave_reply", "exec")
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    BUILD_JOB_FIELD_NUMBER: _ClassVar[int]
    CANCEL_BUILD_FIELD_NUMBER: _ClassVar[int]
    PURGE_CACHE_FIELD_NUMBER: _ClassVar[int]
    COLLECT_GARBAGE_FIELD_NUMBER: _ClassVar[int]
    DELETE_VOLUME_FIELD_NUMBER: _ClassVar[int]
    LEAVE_REPLY_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    assignment: Assignment
    build_job: BuildJob
    cancel_build: CancelBuild
    purge_cache: PurgeCache
    collect_garbage: CollectGarbage
    delete_volume: DeleteVolume
    leave_reply: LeaveReply
    exec: ExecJob
    def __init__(self, assignment: _Optional[_Union[Assignment, _Mapping]] = ..., build_job: _Optional[_Union[BuildJob, _Mapping]] = ..., cancel_build: _Optional[_Union[CancelBuild, _Mapping]] = ..., purge_cache: _Optional[_Union[PurgeCache, _Mapping]] = ..., collect_garbage: _Optional[_Union[CollectGarbage, _Mapping]] = ..., delete_volume: _Optional[_Union[DeleteVolume, _Mapping]] = ..., leave_reply: _Optional[_Union[LeaveReply, _Mapping]] = ..., exec: _Optional[_Union[ExecJob, _Mapping]] = ...) -> None: ...

class ExecJob(_message.Message):
    __slots__ = ("exec_id", "dyno_id", "command", "tty", "window", "env")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXEC_ID_FIELD_NUMBER: _ClassVar[int]
    DYNO_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    exec_id: str
    dyno_id: str
    command: str
    tty: bool
    window: _common_pb2.WindowSize
    env: _containers.ScalarMap[str, str]
    def __init__(self, exec_id: _Optional[str] = ..., dyno_id: _Optional[str] = ..., command: _Optional[str] = ..., tty: _Optional[bool] = ..., window: _Optional[_Union[_common_pb2.WindowSize, _Mapping]] = ..., env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteVolume(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class PurgeCache(_message.Message):
    __slots__ = ("app",)
    APP_FIELD_NUMBER: _ClassVar[int]
    app: str
    def __init__(self, app: _Optional[str] = ...) -> None: ...

class CollectGarbage(_message.Message):
    __slots__ = ("keep_slugs", "apps")
    KEEP_SLUGS_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    keep_slugs: _containers.RepeatedScalarFieldContainer[str]
    apps: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keep_slugs: _Optional[_Iterable[str]] = ..., apps: _Optional[_Iterable[str]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("dynos", "keep")
    DYNOS_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    dynos: _containers.RepeatedCompositeFieldContainer[DynoSpec]
    keep: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dynos: _Optional[_Iterable[_Union[DynoSpec, _Mapping]]] = ..., keep: _Optional[_Iterable[str]] = ...) -> None: ...

class DynoSpec(_message.Message):
    __slots__ = ("id", "app", "name", "type", "release", "slug", "command", "env", "size", "uid", "oneoff", "stack", "stop_grace_seconds", "boot_timeout_seconds", "attach", "tty", "window", "timeout_seconds", "volume", "fixed_port", "health_check_path", "private_network", "app_id")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    ONEOFF_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    STOP_GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BOOT_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ATTACH_FIELD_NUMBER: _ClassVar[int]
    TTY_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    FIXED_PORT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_PATH_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_NETWORK_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    app: str
    name: str
    type: str
    release: int
    slug: SlugRef
    command: str
    env: _containers.ScalarMap[str, str]
    size: _common_pb2.DynoSize
    uid: int
    oneoff: bool
    stack: str
    stop_grace_seconds: int
    boot_timeout_seconds: int
    attach: bool
    tty: bool
    window: _common_pb2.WindowSize
    timeout_seconds: int
    volume: str
    fixed_port: int
    health_check_path: str
    private_network: bool
    app_id: str
    def __init__(self, id: _Optional[str] = ..., app: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., release: _Optional[int] = ..., slug: _Optional[_Union[SlugRef, _Mapping]] = ..., command: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., size: _Optional[_Union[_common_pb2.DynoSize, _Mapping]] = ..., uid: _Optional[int] = ..., oneoff: _Optional[bool] = ..., stack: _Optional[str] = ..., stop_grace_seconds: _Optional[int] = ..., boot_timeout_seconds: _Optional[int] = ..., attach: _Optional[bool] = ..., tty: _Optional[bool] = ..., window: _Optional[_Union[_common_pb2.WindowSize, _Mapping]] = ..., timeout_seconds: _Optional[int] = ..., volume: _Optional[str] = ..., fixed_port: _Optional[int] = ..., health_check_path: _Optional[str] = ..., private_network: _Optional[bool] = ..., app_id: _Optional[str] = ...) -> None: ...

class SlugRef(_message.Message):
    __slots__ = ("sha256", "size")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class BuildJob(_message.Message):
    __slots__ = ("build_id", "app", "uid", "source_sha256", "source_version", "buildpacks", "env", "stack", "timeout_seconds", "slug_warn_bytes", "slug_max_bytes", "memory_mb", "cpu_shares")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    SOURCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILDPACKS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SLUG_WARN_BYTES_FIELD_NUMBER: _ClassVar[int]
    SLUG_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MB_FIELD_NUMBER: _ClassVar[int]
    CPU_SHARES_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    app: str
    uid: int
    source_sha256: str
    source_version: str
    buildpacks: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    stack: str
    timeout_seconds: int
    slug_warn_bytes: int
    slug_max_bytes: int
    memory_mb: int
    cpu_shares: int
    def __init__(self, build_id: _Optional[str] = ..., app: _Optional[str] = ..., uid: _Optional[int] = ..., source_sha256: _Optional[str] = ..., source_version: _Optional[str] = ..., buildpacks: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., stack: _Optional[str] = ..., timeout_seconds: _Optional[int] = ..., slug_warn_bytes: _Optional[int] = ..., slug_max_bytes: _Optional[int] = ..., memory_mb: _Optional[int] = ..., cpu_shares: _Optional[int] = ...) -> None: ...

class CancelBuild(_message.Message):
    __slots__ = ("build_id",)
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    def __init__(self, build_id: _Optional[str] = ...) -> None: ...

class BuildOutput(_message.Message):
    __slots__ = ("build_id", "lines")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, build_id: _Optional[str] = ..., lines: _Optional[_Iterable[str]] = ...) -> None: ...

class BuildResult(_message.Message):
    __slots__ = ("build_id", "ok", "error", "slug", "process_types", "buildpacks", "stack", "health_check_path")
    class ProcessTypesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    PROCESS_TYPES_FIELD_NUMBER: _ClassVar[int]
    BUILDPACKS_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_PATH_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    ok: bool
    error: str
    slug: SlugRef
    process_types: _containers.ScalarMap[str, str]
    buildpacks: _containers.RepeatedScalarFieldContainer[str]
    stack: str
    health_check_path: str
    def __init__(self, build_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., slug: _Optional[_Union[SlugRef, _Mapping]] = ..., process_types: _Optional[_Mapping[str, str]] = ..., buildpacks: _Optional[_Iterable[str]] = ..., stack: _Optional[str] = ..., health_check_path: _Optional[str] = ...) -> None: ...

class LogAck(_message.Message):
    __slots__ = ("seq", "received")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    received: int
    def __init__(self, seq: _Optional[int] = ..., received: _Optional[int] = ...) -> None: ...

class SlugUpload(_message.Message):
    __slots__ = ("header", "data")
    class Header(_message.Message):
        __slots__ = ("sha256", "size", "build_id")
        SHA256_FIELD_NUMBER: _ClassVar[int]
        SIZE_FIELD_NUMBER: _ClassVar[int]
        BUILD_ID_FIELD_NUMBER: _ClassVar[int]
        sha256: str
        size: int
        build_id: str
        def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ..., build_id: _Optional[str] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: SlugUpload.Header
    data: bytes
    def __init__(self, header: _Optional[_Union[SlugUpload.Header, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class SlugStored(_message.Message):
    __slots__ = ("sha256", "size")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size: int
    def __init__(self, sha256: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class SourceRef(_message.Message):
    __slots__ = ("build_id",)
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    def __init__(self, build_id: _Optional[str] = ...) -> None: ...
