from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ("host_id", "session_id", "after_event_id")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    session_id: str
    after_event_id: str
    def __init__(self, host_id: _Optional[str] = ..., session_id: _Optional[str] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class EntityState(_message.Message):
    __slots__ = ("kind", "id", "host_id", "state", "runaway", "stuck", "hibernate", "hibernate_at_unix_nano", "idle_since_unix_nano", "reason", "runaway_reason", "stuck_reason", "held_by")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUNAWAY_FIELD_NUMBER: _ClassVar[int]
    STUCK_FIELD_NUMBER: _ClassVar[int]
    HIBERNATE_FIELD_NUMBER: _ClassVar[int]
    HIBERNATE_AT_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    IDLE_SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RUNAWAY_REASON_FIELD_NUMBER: _ClassVar[int]
    STUCK_REASON_FIELD_NUMBER: _ClassVar[int]
    HELD_BY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    host_id: str
    state: str
    runaway: bool
    stuck: bool
    hibernate: bool
    hibernate_at_unix_nano: int
    idle_since_unix_nano: int
    reason: str
    runaway_reason: str
    stuck_reason: str
    held_by: _containers.RepeatedCompositeFieldContainer[Hold]
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., host_id: _Optional[str] = ..., state: _Optional[str] = ..., runaway: _Optional[bool] = ..., stuck: _Optional[bool] = ..., hibernate: _Optional[bool] = ..., hibernate_at_unix_nano: _Optional[int] = ..., idle_since_unix_nano: _Optional[int] = ..., reason: _Optional[str] = ..., runaway_reason: _Optional[str] = ..., stuck_reason: _Optional[str] = ..., held_by: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("at_unix_nano", "kind", "id", "host_id", "field", "previous", "current", "reason", "hibernate_at_unix_nano")
    AT_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    HIBERNATE_AT_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    at_unix_nano: int
    kind: str
    id: str
    host_id: str
    field: str
    previous: str
    current: str
    reason: str
    hibernate_at_unix_nano: int
    def __init__(self, at_unix_nano: _Optional[int] = ..., kind: _Optional[str] = ..., id: _Optional[str] = ..., host_id: _Optional[str] = ..., field: _Optional[str] = ..., previous: _Optional[str] = ..., current: _Optional[str] = ..., reason: _Optional[str] = ..., hibernate_at_unix_nano: _Optional[int] = ...) -> None: ...

class Snapshot(_message.Message):
    __slots__ = ("states", "more")
    STATES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedCompositeFieldContainer[EntityState]
    more: bool
    def __init__(self, states: _Optional[_Iterable[_Union[EntityState, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class Resync(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("snapshot", "transition", "resync", "event_id")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    RESYNC_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    snapshot: Snapshot
    transition: Transition
    resync: Resync
    event_id: str
    def __init__(self, snapshot: _Optional[_Union[Snapshot, _Mapping]] = ..., transition: _Optional[_Union[Transition, _Mapping]] = ..., resync: _Optional[_Union[Resync, _Mapping]] = ..., event_id: _Optional[str] = ...) -> None: ...

class DecisionsRequest(_message.Message):
    __slots__ = ("within_seconds", "limit")
    WITHIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    within_seconds: float
    limit: int
    def __init__(self, within_seconds: _Optional[float] = ..., limit: _Optional[int] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("kind", "id", "host_id", "state", "idle_since_unix_nano", "hibernate_at_unix_nano", "hibernate", "runaway", "stuck", "reason", "runaway_reason", "stuck_reason", "held_by")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IDLE_SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    HIBERNATE_AT_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    HIBERNATE_FIELD_NUMBER: _ClassVar[int]
    RUNAWAY_FIELD_NUMBER: _ClassVar[int]
    STUCK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RUNAWAY_REASON_FIELD_NUMBER: _ClassVar[int]
    STUCK_REASON_FIELD_NUMBER: _ClassVar[int]
    HELD_BY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    host_id: str
    state: str
    idle_since_unix_nano: int
    hibernate_at_unix_nano: int
    hibernate: bool
    runaway: bool
    stuck: bool
    reason: str
    runaway_reason: str
    stuck_reason: str
    held_by: _containers.RepeatedCompositeFieldContainer[Hold]
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., host_id: _Optional[str] = ..., state: _Optional[str] = ..., idle_since_unix_nano: _Optional[int] = ..., hibernate_at_unix_nano: _Optional[int] = ..., hibernate: _Optional[bool] = ..., runaway: _Optional[bool] = ..., stuck: _Optional[bool] = ..., reason: _Optional[str] = ..., runaway_reason: _Optional[str] = ..., stuck_reason: _Optional[str] = ..., held_by: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ...) -> None: ...

class DecisionsResponse(_message.Message):
    __slots__ = ("hibernate", "due_soon", "held", "truncated")
    HIBERNATE_FIELD_NUMBER: _ClassVar[int]
    DUE_SOON_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    hibernate: _containers.RepeatedCompositeFieldContainer[Decision]
    due_soon: _containers.RepeatedCompositeFieldContainer[Decision]
    held: _containers.RepeatedCompositeFieldContainer[Decision]
    truncated: bool
    def __init__(self, hibernate: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., due_soon: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., held: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("host_id", "limit", "trusted_only", "page_token")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    limit: int
    trusted_only: bool
    page_token: str
    def __init__(self, host_id: _Optional[str] = ..., limit: _Optional[int] = ..., trusted_only: _Optional[bool] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions", "next_page_token")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[Entity]
    next_page_token: str
    def __init__(self, sessions: _Optional[_Iterable[_Union[Entity, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id", "trusted_only")
    ID_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_ONLY_FIELD_NUMBER: _ClassVar[int]
    id: str
    trusted_only: bool
    def __init__(self, id: _Optional[str] = ..., trusted_only: _Optional[bool] = ...) -> None: ...

class Hold(_message.Message):
    __slots__ = ("kind", "id", "until_unix_nano", "since_unix_nano", "counts", "reason")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    UNTIL_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    until_unix_nano: int
    since_unix_nano: int
    counts: bool
    reason: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., until_unix_nano: _Optional[int] = ..., since_unix_nano: _Optional[int] = ..., counts: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class Entity(_message.Message):
    __slots__ = ("kind", "id", "host_id", "agent_id", "service_name", "first_seen_unix_nano", "last_seen_unix_nano", "last_active_unix_nano", "last_activity_unix_nano", "last_source", "idle_seconds", "sources_unix_nano", "input_bytes", "output_bytes", "input_bytes_per_second", "output_bytes_per_second", "process_status", "pid", "exited", "exit_code", "status", "task", "result", "held_by", "attributes", "state", "idle_since_unix_nano", "hibernate_at_unix_nano", "hibernate", "runaway", "stuck", "reason", "runaway_reason", "stuck_reason", "turn", "clock_offset_seconds")
    class SourcesUnixNanoEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    LAST_SOURCE_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    INPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    INPUT_BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    PROCESS_STATUS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    HELD_BY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IDLE_SINCE_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    HIBERNATE_AT_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    HIBERNATE_FIELD_NUMBER: _ClassVar[int]
    RUNAWAY_FIELD_NUMBER: _ClassVar[int]
    STUCK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RUNAWAY_REASON_FIELD_NUMBER: _ClassVar[int]
    STUCK_REASON_FIELD_NUMBER: _ClassVar[int]
    TURN_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_SECONDS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    host_id: str
    agent_id: str
    service_name: str
    first_seen_unix_nano: int
    last_seen_unix_nano: int
    last_active_unix_nano: int
    last_activity_unix_nano: int
    last_source: str
    idle_seconds: float
    sources_unix_nano: _containers.ScalarMap[str, int]
    input_bytes: int
    output_bytes: int
    input_bytes_per_second: float
    output_bytes_per_second: float
    process_status: str
    pid: int
    exited: bool
    exit_code: int
    status: str
    task: str
    result: str
    held_by: _containers.RepeatedCompositeFieldContainer[Hold]
    attributes: _containers.ScalarMap[str, str]
    state: str
    idle_since_unix_nano: int
    hibernate_at_unix_nano: int
    hibernate: bool
    runaway: bool
    stuck: bool
    reason: str
    runaway_reason: str
    stuck_reason: str
    turn: str
    clock_offset_seconds: float
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., host_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., service_name: _Optional[str] = ..., first_seen_unix_nano: _Optional[int] = ..., last_seen_unix_nano: _Optional[int] = ..., last_active_unix_nano: _Optional[int] = ..., last_activity_unix_nano: _Optional[int] = ..., last_source: _Optional[str] = ..., idle_seconds: _Optional[float] = ..., sources_unix_nano: _Optional[_Mapping[str, int]] = ..., input_bytes: _Optional[int] = ..., output_bytes: _Optional[int] = ..., input_bytes_per_second: _Optional[float] = ..., output_bytes_per_second: _Optional[float] = ..., process_status: _Optional[str] = ..., pid: _Optional[int] = ..., exited: _Optional[bool] = ..., exit_code: _Optional[int] = ..., status: _Optional[str] = ..., task: _Optional[str] = ..., result: _Optional[str] = ..., held_by: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ..., attributes: _Optional[_Mapping[str, str]] = ..., state: _Optional[str] = ..., idle_since_unix_nano: _Optional[int] = ..., hibernate_at_unix_nano: _Optional[int] = ..., hibernate: _Optional[bool] = ..., runaway: _Optional[bool] = ..., stuck: _Optional[bool] = ..., reason: _Optional[str] = ..., runaway_reason: _Optional[str] = ..., stuck_reason: _Optional[str] = ..., turn: _Optional[str] = ..., clock_offset_seconds: _Optional[float] = ...) -> None: ...
