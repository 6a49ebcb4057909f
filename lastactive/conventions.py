"""Names and activity semantics shared by the instrumentation and the collector.

Every attribute, metric and event name lastactive defines lives here, once, and is mirrored by
``docs/conventions.md``. Names come from the OpenTelemetry semantic conventions where one exists
(``session.id``, ``host.id``, ``network.io.direction`` ...); the rest are in the ``lastactive.``
namespace.

The heart of it is :data:`SOURCES`: every activity source of the seeds, with the level it is
recorded at, the class of activity it is, and whether it is trusted (seed 000's table: a source
is trusted when lastactive or the host observes it, untrusted when the workload reports it about
itself).
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

__all__ = [
    "AGENT_EVENTS",
    "ATTR_AGENT_TURN",
    "ATTR_CLIENT_ADDRESS",
    "ATTR_CLIENT_PORT",
    "ATTR_CONNECTION_CLASSIFICATION",
    "ATTR_CONNECTION_CLOSE_REASON",
    "ATTR_CONNECTION_RECEIVED_BYTES",
    "ATTR_CONNECTION_TRANSMITTED_BYTES",
    "ATTR_GEN_AI_AGENT_ID",
    "ATTR_GEN_AI_AGENT_NAME",
    "ATTR_GEN_AI_OPERATION_NAME",
    "ATTR_HOLD",
    "ATTR_HOLD_ID",
    "ATTR_HOLD_REASON",
    "ATTR_HOLD_UNTIL",
    "ATTR_HOST_ID",
    "ATTR_HOST_NAME",
    "ATTR_NETWORK_IO_DIRECTION",
    "ATTR_NETWORK_PROTOCOL_NAME",
    "ATTR_PROCESS_COMMAND",
    "ATTR_PROCESS_COMMAND_ARGS",
    "ATTR_PROCESS_EXIT_CODE",
    "ATTR_PROCESS_PID",
    "ATTR_RESULT",
    "ATTR_SERVICE_INSTANCE_ID",
    "ATTR_SERVICE_NAME",
    "ATTR_SESSION_ID",
    "ATTR_SOURCE",
    "ATTR_TASK",
    "CLAUDE_CODE_ACTIVE_TIME",
    "CLAUDE_CODE_ACTIVE_TIME_TYPE",
    "CLAUDE_CODE_ACTIVE_TIME_USER",
    "CLAUDE_CODE_EVENTS",
    "CLAUDE_CODE_INTERACTION_SPAN",
    "CLAUDE_CODE_METRICS",
    "CLAUDE_CODE_PREFIX",
    "DIRECTION_RECEIVE",
    "DIRECTION_TRANSMIT",
    "ENV_AUTH_FILE",
    "ENV_GRPC_PORT",
    "ENV_HOOK_TIMEOUT",
    "ENV_HOST",
    "ENV_HTTP_PORT",
    "ENV_SESSION_ID",
    "ENV_TOKEN",
    "ENV_URL",
    "EVENT_ACTIVITY",
    "EVENT_AGENT_COMPLETE",
    "EVENT_AGENT_ERROR",
    "EVENT_AGENT_PROGRESS",
    "EVENT_AGENT_SPAWN",
    "EVENT_HOLD",
    "EVENT_PROCESS_EXIT",
    "HEADER_HOST_ID",
    "IDLE_CLASSES",
    "METRIC_IO",
    "METRIC_SOURCE_LAST_TIME",
    "PROM_ACTIVITY_UPDATES",
    "PROM_AUTH_FAILURES",
    "PROM_CREDENTIALS",
    "PROM_ENTITIES_REFUSED",
    "PROM_FLUSHES",
    "PROM_FLUSH_DURATION",
    "PROM_FLUSH_ROWS",
    "PROM_GC_PAUSE",
    "PROM_GC_PAUSE_MAX",
    "PROM_HOST_SESSIONS",
    "PROM_INGEST_INFLIGHT",
    "PROM_INSECURE",
    "PROM_LOOP_LAG",
    "PROM_LOOP_LAG_MAX",
    "PROM_OTLP_ACCEPTED",
    "PROM_OTLP_DURATION",
    "PROM_OTLP_FAILED",
    "PROM_OTLP_FORBIDDEN",
    "PROM_OTLP_REJECTED",
    "PROM_OTLP_REQUESTS",
    "PROM_REPLICAS_LIVE",
    "PROM_REPLICA_ENTITIES",
    "PROM_REPLICA_SHARDS",
    "PROM_REPORTERS",
    "PROM_REPORTER_CLOCK_OFFSET",
    "PROM_RUNAWAY_SECONDS",
    "PROM_SESSIONS",
    "PROM_SESSIONS_IDLE",
    "PROM_SESSIONS_RECENT",
    "PROM_SESSION_IDLE",
    "PROM_SESSION_INPUT_RATE",
    "PROM_SESSION_OUTPUT_RATE",
    "PROM_SESSION_RUNAWAY",
    "PROM_SESSION_RUNAWAY_SECONDS",
    "PROM_SESSION_STATE",
    "PROM_SESSION_STUCK",
    "PROM_SHARD_TAKEOVERS",
    "PROM_STORE_SKIPPED",
    "PROM_TRANSITIONS",
    "PROM_WATCH_QUEUED",
    "PROM_WATCH_RESYNCS",
    "PROM_WATCH_SUBSCRIBERS",
    "SCOPE_NAME",
    "SOURCES",
    "ActivityClass",
    "AgentStatus",
    "AgentTurn",
    "HoldKind",
    "Level",
    "Source",
    "SourceInfo",
]

# --- Attributes from the OpenTelemetry semantic conventions --------------------------------

ATTR_SESSION_ID: Final = "session.id"
"""string. The session the telemetry belongs to (semconv ``session.id``). Resource or point."""

ATTR_HOST_ID: Final = "host.id"
"""string. The host (semconv ``host.id``); ``host.name`` is the fallback identity."""

ATTR_HOST_NAME: Final = "host.name"
"""string. The host's name (semconv ``host.name``)."""

ATTR_SERVICE_NAME: Final = "service.name"
"""string. The emitting service (semconv ``service.name``), e.g. ``lastactive-run``."""

ATTR_SERVICE_INSTANCE_ID: Final = "service.instance.id"
"""string. The emitting process instance (semconv ``service.instance.id``)."""

ATTR_GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
"""string. The agent (semconv ``gen_ai.agent.id``); the agent's identity when present."""

ATTR_GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
"""string. The GenAI operation (semconv); ``invoke_agent`` on an agent task's span."""

ATTR_GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
"""string. The agent's name (semconv ``gen_ai.agent.name``); identity when no agent id."""

ATTR_NETWORK_IO_DIRECTION: Final = "network.io.direction"
"""string, ``receive`` or ``transmit`` (semconv). Seen from the session: ``receive`` is what
flows into the session (a user's keystrokes, a client's bytes), ``transmit`` what comes out of it
(program output)."""

DIRECTION_RECEIVE: Final = "receive"
"""Value of ``network.io.direction`` for bytes into the session (input, engagement)."""

DIRECTION_TRANSMIT: Final = "transmit"
"""Value of ``network.io.direction`` for bytes out of the session (output, work)."""

ATTR_PROCESS_PID: Final = "process.pid"
"""int. The wrapped process's id (semconv ``process.pid``)."""

ATTR_PROCESS_COMMAND: Final = "process.command"
"""string. The wrapped program as it was named, ``argv[0]`` (semconv ``process.command``: the
command name, never its arguments)."""
ATTR_PROCESS_COMMAND_ARGS: Final = "process.command_args"
"""string[]. The wrapped program's arguments, ``argv`` (semconv ``process.command_args``);
opt-in (``lastactive run --command-args``): arguments may hold secrets."""

ATTR_PROCESS_EXIT_CODE: Final = "process.exit.code"
"""int. The exit code (semconv ``process.exit.code``); 128 + N when killed by signal N."""

ATTR_CLIENT_ADDRESS: Final = "client.address"
"""string. A proxied connection's client address, without the port (semconv
``client.address``)."""
ATTR_CLIENT_PORT: Final = "client.port"
"""int. A proxied connection's client port (semconv ``client.port``)."""

ATTR_NETWORK_PROTOCOL_NAME: Final = "network.protocol.name"
"""string. What a proxy relays: ``raw``, ``rfb`` (semconv ``network.protocol.name``)."""

ATTR_CONNECTION_RECEIVED_BYTES: Final = "lastactive.connection.received_bytes"
"""int. Bytes a proxied client sent (on its connection span, at close)."""

ATTR_CONNECTION_TRANSMITTED_BYTES: Final = "lastactive.connection.transmitted_bytes"
"""int. Bytes sent to a proxied client (on its connection span, at close)."""

ATTR_CONNECTION_CLOSE_REASON: Final = "lastactive.connection.close_reason"
"""string. Why a proxied connection ended: ``client closed``, ``server closed``, an error."""

ATTR_CONNECTION_CLASSIFICATION: Final = "lastactive.connection.classification"
"""string. ``ok``, ``raw``, or ``stopped: <why>`` when the proxy stopped classifying input."""

ENV_SESSION_ID: Final = "LASTACTIVE_SESSION_ID"
"""Environment variable: the session id. ``lastactive run`` sets it for the program it wraps
(and reads it as its default), so tools run inside (``lastactive lease``, hooks, a tmux session
started there) report into the same session."""

ENV_URL: Final = "LASTACTIVE_URL"
"""Environment variable: the collector's HTTP base URL (``hook``, ``tmux``, ``cull``, ``ls``);
see :mod:`lastactive.client` for the whole rule."""

ENV_HOST: Final = "LASTACTIVE_HOST"
"""Environment variable: the address ``lastactive serve`` binds; clients connect there (on
loopback for a wildcard address)."""

ENV_HTTP_PORT: Final = "LASTACTIVE_HTTP_PORT"
"""Environment variable: ``lastactive serve``'s OTLP/HTTP and query HTTP port (4318)."""

ENV_GRPC_PORT: Final = "LASTACTIVE_GRPC_PORT"
"""Environment variable: ``lastactive serve``'s OTLP/gRPC and query gRPC port (4317)."""

ENV_HOOK_TIMEOUT: Final = "LASTACTIVE_HOOK_TIMEOUT"
"""Environment variable: seconds a one-shot reporter (``hook``, ``tmux-event``) waits for the
collector (0.25); what it could not deliver waits in its spool for the next call."""

ENV_TOKEN: Final = "LASTACTIVE_TOKEN"
"""Environment variable: the bearer token ``ls`` and ``cull`` send (the query API and
hibernation records); exporters send ``OTEL_EXPORTER_OTLP_HEADERS``."""

ENV_AUTH_FILE: Final = "LASTACTIVE_AUTH_FILE"
"""Environment variable: the collector's credentials file (``serve --auth-file``, ``token``)."""

HEADER_HOST_ID: Final = "lastactive-host-id"
"""Request header (HTTP) and metadata key (gRPC) every lastactive reporter sends with its
exports: its ``host.id``, the key a balancer in front of replicas hashes on, so a host's
sessions and the host's aggregate land on one replica (``packaging/haproxy/haproxy.cfg``;
issue 13). Set by hand for other SDKs: ``OTEL_EXPORTER_OTLP_HEADERS=lastactive-host-id=web-1``."""

# --- lastactive's own names ----------------------------------------------------------------

ATTR_SOURCE: Final = "lastactive.source"
"""string, one of :class:`Source`. Which activity source a data point, event or span reports."""

SCOPE_NAME: Final = "lastactive"
"""Instrumentation scope name of everything lastactive's own instrumentation emits."""

METRIC_SOURCE_LAST_TIME: Final = "lastactive.source.last_time"
"""Gauge, unit ``s`` (double, seconds since the Unix epoch, UTC), attribute ``lastactive.source``.
The time the source last saw activity. Absolute, so a lost export or a collector restart heals at
the next export; the collector merges it with max()."""

METRIC_IO: Final = "lastactive.session.io"
"""Counter (monotonic cumulative Sum), unit ``By``, attribute ``network.io.direction``. Bytes
into (``receive``) and out of (``transmit``) the session. Feeds byte totals and bytes/second; a
point only counts when its value rose (a reset or a replay never does)."""

EVENT_ACTIVITY: Final = "lastactive.activity"
"""Event (log record ``event_name``; or a span event), attribute ``lastactive.source``: one
discrete activity at the record's timestamp (start, prompt, client attached ...)."""

EVENT_PROCESS_EXIT: Final = "lastactive.process.exit"
"""Event, attributes ``process.exit.code`` and ``process.pid``: the session's process exited."""


ATTR_HOLD: Final = "lastactive.hold"
"""string, one of :class:`HoldKind`. What kind of thing holds a session up (see ``EVENT_HOLD``)."""

ATTR_HOLD_ID: Final = "lastactive.hold.id"
"""string. Which one of that kind (a lease id, a client's tty), unique within the session."""

ATTR_HOLD_REASON: Final = "lastactive.hold.reason"
"""string, optional. What the holder is doing, in words, shown with the hold: ``make (CPU 94 %)``,
``sleep (not reading the terminal: hrtimer_nanosleep)``; on a release, why it let go: ``vim
waiting for the terminal``."""

ATTR_HOLD_UNTIL: Final = "lastactive.hold.until"
"""double, seconds since the Unix epoch (UTC). The hold stands until then; 0 = until released
(or until the session exits); a time not after the event's own time releases it."""

ATTR_AGENT_TURN: Final = "lastactive.agent.turn"
"""string, ``working`` or ``waiting`` (:class:`AgentTurn`). Whose turn it is in an agent
session as of the event's time: the agent's (working on a prompt or task) or the user's (the
agent answered and waits). On any event; agent ``spawn`` and ``progress`` events without it mean
``working``. Only a working agent can be stuck (seed 004)."""

ATTR_TASK: Final = "lastactive.task"
"""string. What an agent session is working on (seed 004's ``task_description``)."""

ATTR_RESULT: Final = "lastactive.result"
"""string. How an agent session ended: its result, or its error message (seed 004)."""

EVENT_HOLD: Final = "lastactive.hold"
"""Event, attributes ``lastactive.hold``, ``lastactive.hold.id``, ``lastactive.hold.until``:
something holds the session up (a busy lease, an attached client, a running foreground command)
or stops holding it. Renewed by re-sending; the latest event of a hold wins."""

EVENT_AGENT_SPAWN: Final = "lastactive.agent.spawn"
"""Event, optional ``lastactive.task``: an agent session started working (seed 004 ``spawn``).
Status ``active``; counts as ``start``."""

EVENT_AGENT_PROGRESS: Final = "lastactive.agent.progress"
"""Event, optional ``lastactive.task``: the agent reported progress (seed 004 ``progress``). Keeps
it ``active``; counts as ``agent`` (work)."""

EVENT_AGENT_COMPLETE: Final = "lastactive.agent.complete"
"""Event, optional ``lastactive.result``: the agent finished (seed 004 ``complete``). Status
``completed``; counts as ``exit``."""

EVENT_AGENT_ERROR: Final = "lastactive.agent.error"
"""Event, optional ``lastactive.result`` (the error): the agent failed (seed 004 ``error``).
Status ``error``; counts as ``exit``."""


# --- The collector's own Prometheus metrics (GET /metrics; collector/_metrics.py) ------------
# Watched sessions = runaway, stuck and the busiest LASTACTIVE_METRICS_TOP_SESSIONS by output.

PROM_OTLP_REQUESTS: Final = "lastactive_otlp_requests"
"""counter (_total), labels signal, transport: OTLP export requests received."""

PROM_OTLP_ACCEPTED: Final = "lastactive_otlp_data_points_accepted"
"""counter (_total), labels signal, transport: data points, log records and spans applied."""

PROM_OTLP_REJECTED: Final = "lastactive_otlp_data_points_rejected"
"""counter (_total), labels signal, transport: items rejected through partial success."""

PROM_OTLP_FAILED: Final = "lastactive_otlp_requests_failed"
"""counter (_total), labels signal, transport, status: requests refused whole."""

PROM_OTLP_DURATION: Final = "lastactive_otlp_ingest_duration_seconds"
"""histogram, seconds, labels signal, transport: decode and apply one request."""

PROM_REPORTERS: Final = "lastactive_reporters"
"""gauge, label clock (ok, skewed): reporters heard from in the last hour, by whether their
clock offset is beyond LASTACTIVE_MAX_CLOCK_SKEW."""

PROM_REPORTER_CLOCK_OFFSET: Final = "lastactive_reporter_clock_offset_seconds"
"""gauge, seconds (positive: behind), labels service_name, service_instance_id, host_id,
session_id: the estimated clock offset of each skewed reporter (only those: bounded)."""

PROM_ACTIVITY_UPDATES: Final = "lastactive_activity_updates"
"""counter (_total), label source: activity updates applied (seed 001)."""

PROM_TRANSITIONS: Final = "lastactive_transitions"
"""counter (_total), labels field, to: transitions pushed."""

PROM_WATCH_SUBSCRIBERS: Final = "lastactive_watch_subscribers"
"""gauge: open Watch and SSE streams."""

PROM_WATCH_QUEUED: Final = "lastactive_watch_queued_transitions"
"""gauge: transitions waiting for slow subscribers."""

PROM_WATCH_RESYNCS: Final = "lastactive_watch_resyncs"
"""counter (_total): queue overflows turned into resync markers."""

PROM_FLUSHES: Final = "lastactive_flushes"
"""counter (_total): commits of changed entities (group commits and interval flushes)."""

PROM_STORE_SKIPPED: Final = "lastactive_store_skipped_records"
"""counter (_total): records a commit skipped because the store could not hold a value."""

PROM_INGEST_INFLIGHT: Final = "lastactive_ingest_inflight_requests"
"""gauge: exports being applied or waiting for their commit (admission control)."""

PROM_ENTITIES_REFUSED: Final = "lastactive_entities_refused"
"""counter (_total): new sessions, agents or hosts refused at LASTACTIVE_MAX_ENTITIES."""

PROM_OTLP_FORBIDDEN: Final = "lastactive_otlp_forbidden"
"""counter (_total), labels signal, transport: of the rejected items, those about what the
sender's credential may not report about (another host, another agent; hibernation without act)."""

PROM_AUTH_FAILURES: Final = "lastactive_auth_failures"
"""counter (_total), labels transport, reason (unauthenticated, forbidden): calls refused 401 /
UNAUTHENTICATED or 403 / PERMISSION_DENIED."""

PROM_CREDENTIALS: Final = "lastactive_credentials"
"""gauge: credentials loaded from the auth file (absent without one)."""

PROM_INSECURE: Final = "lastactive_insecure"
"""gauge: 1 when serving beyond loopback without credentials or TLS (``--insecure``), else 0."""

PROM_REPLICA_SHARDS: Final = "lastactive_replica_shards"
"""gauge, label replica: the shards whose transitions this replica evaluates (its leases);
only on a shared PostgreSQL store. Summed over replicas: 64 when every shard is held."""

PROM_REPLICA_ENTITIES: Final = "lastactive_replica_entities"
"""gauge, label replica: sessions, agents and hosts this replica holds in memory: those of its
shards, and others while it is sent or asked about them (evicted a minute after)."""

PROM_REPLICAS_LIVE: Final = "lastactive_replicas_live"
"""gauge: replicas with a fresh heartbeat at this replica's last lease renewal."""

PROM_SHARD_TAKEOVERS: Final = "lastactive_shard_takeovers"
"""counter, label replica: shards this replica took a lease on since it started."""

PROM_FLUSH_ROWS: Final = "lastactive_flush_rows"
"""gauge: rows written by the last flush."""

PROM_FLUSH_DURATION: Final = "lastactive_flush_duration_seconds"
"""gauge, seconds: duration of the last flush."""

PROM_LOOP_LAG: Final = "lastactive_event_loop_lag_seconds"
"""histogram, seconds: how late a probe of the event loop woke (how long the loop was
blocked)."""

PROM_LOOP_LAG_MAX: Final = "lastactive_event_loop_lag_max_seconds"
"""gauge, seconds: the longest event-loop lag probed in the last 60 s."""

PROM_GC_PAUSE: Final = "lastactive_gc_pause_seconds"
"""histogram, seconds, label generation (0, 1, 2: 2 is a full collection): how long each
cyclic garbage collection held the process."""

PROM_GC_PAUSE_MAX: Final = "lastactive_gc_pause_max_seconds"
"""gauge, seconds, label generation: the longest collection of the last 60 s."""

PROM_SESSIONS: Final = "lastactive_sessions"
"""gauge, label state (active, idle, hibernated, ended, runaway, stuck,
hibernate_due): sessions."""

PROM_HOST_SESSIONS: Final = "lastactive_host_sessions"
"""gauge, labels host_id, state: sessions per host."""

PROM_SESSIONS_RECENT: Final = "lastactive_sessions_recent"
"""gauge, label class: sessions with activity of that class in the last 5 min."""

PROM_SESSIONS_IDLE: Final = "lastactive_sessions_idle_seconds"
"""histogram, seconds: sessions by time since their last counted activity."""

PROM_SESSION_OUTPUT_RATE: Final = "lastactive_session_output_bytes_per_second"
"""gauge, labels session_id, host_id, agent: output over 30 s (watched sessions only)."""

PROM_SESSION_INPUT_RATE: Final = "lastactive_session_input_bytes_per_second"
"""gauge, labels session_id, host_id, agent: input over 30 s (watched sessions only)."""

PROM_SESSION_IDLE: Final = "lastactive_session_idle_seconds"
"""gauge, seconds, labels session_id, host_id, agent (watched sessions only)."""

PROM_SESSION_RUNAWAY: Final = "lastactive_session_runaway"
"""gauge 0/1, labels session_id, host_id, agent (watched sessions only)."""

PROM_SESSION_RUNAWAY_SECONDS: Final = "lastactive_session_runaway_seconds"
"""counter (_total), seconds, labels session_id, host_id, agent: time the session has been
runaway since the collector started (watched sessions only; ``increase()`` over a window is
the time runaway in it)."""

PROM_RUNAWAY_SECONDS: Final = "lastactive_runaway_seconds"
"""counter (_total), seconds: time sessions have spent runaway, summed over the fleet."""

PROM_SESSION_STATE: Final = "lastactive_session_state"
"""gauge 1, labels session_id, host_id, agent, state (active, idle, hibernated; watched
sessions only)."""

PROM_SESSION_STUCK: Final = "lastactive_session_stuck_seconds"
"""gauge, seconds, labels session_id, host_id, agent, task: stuck agents."""


class Level(enum.StrEnum):
    """Where a source is recorded (seed 000's "level")."""

    HOST = "host"
    AGENT = "agent"
    SESSION = "session"


class ActivityClass(enum.StrEnum):
    """What a source says about use (ANCHORS: count these separately, let policy choose).

    * ``lifecycle``: something was created, started, booted or stopped.
    * ``liveness``: the thing is alive (heartbeats, a process that exists). Never activity.
    * ``presence``: someone is connected or attached, not necessarily doing anything.
    * ``engagement``: a person did something (keystrokes, a prompt). Moves ``last_active``.
    * ``work``: the workload did something (output, agent progress).
    """

    LIFECYCLE = "lifecycle"
    LIVENESS = "liveness"
    PRESENCE = "presence"
    ENGAGEMENT = "engagement"
    WORK = "work"


class Source(enum.StrEnum):
    """Activity sources, the values of ``lastactive.source``. See :data:`SOURCES`."""

    BOOT = "boot"
    CREATE = "create"
    START = "start"
    EXIT = "exit"
    PROCESS = "process"
    SSH = "ssh"
    AGENT = "agent"
    USER = "user"
    PROMPT = "prompt"
    INPUT = "input"
    OUTPUT = "output"
    CONNECTION = "connection"
    HEARTBEAT = "heartbeat"
    LEASE = "lease"
    FOREGROUND = "foreground"
    HIBERNATE = "hibernate"
    TELEMETRY = "telemetry"


class SourceInfo(NamedTuple):
    """One row of the source table: level, class, trust and the seed it comes from. (A named
    tuple, not a dataclass: ``hook claude`` imports this module per event, and ``dataclasses``
    costs it ~3 ms of start-up.)"""

    source: Source
    level: Level
    activity_class: ActivityClass
    trusted: bool
    origin: str


SOURCES: Final[dict[Source, SourceInfo]] = {
    info.source: info
    for info in (
        SourceInfo(Source.BOOT, Level.HOST, ActivityClass.LIFECYCLE, True, "seed 000 BOOT"),
        SourceInfo(Source.CREATE, Level.AGENT, ActivityClass.LIFECYCLE, True, "seed 000 CREATE"),
        SourceInfo(Source.START, Level.SESSION, ActivityClass.LIFECYCLE, False, "seed 000 START"),
        SourceInfo(Source.EXIT, Level.SESSION, ActivityClass.LIFECYCLE, True, "seed 000/004"),
        SourceInfo(Source.PROCESS, Level.SESSION, ActivityClass.LIVENESS, False, "seed 000"),
        SourceInfo(Source.SSH, Level.HOST, ActivityClass.PRESENCE, False, "seed 000 SSH"),
        SourceInfo(Source.AGENT, Level.AGENT, ActivityClass.WORK, False, "seed 000 AGENT"),
        SourceInfo(Source.USER, Level.HOST, ActivityClass.ENGAGEMENT, False, "seed 000 USER"),
        SourceInfo(Source.PROMPT, Level.SESSION, ActivityClass.ENGAGEMENT, False, "seed 002"),
        SourceInfo(Source.INPUT, Level.SESSION, ActivityClass.ENGAGEMENT, True, "seeds 001, 003"),
        SourceInfo(Source.OUTPUT, Level.SESSION, ActivityClass.WORK, True, "seeds 001, 003"),
        SourceInfo(Source.CONNECTION, Level.SESSION, ActivityClass.PRESENCE, True, "seed 001"),
        SourceInfo(Source.HEARTBEAT, Level.SESSION, ActivityClass.LIVENESS, False, "seed 001/002"),
        SourceInfo(Source.LEASE, Level.SESSION, ActivityClass.WORK, False, "busy leases"),
        SourceInfo(Source.FOREGROUND, Level.SESSION, ActivityClass.WORK, True, "lastactive run"),
        SourceInfo(Source.HIBERNATE, Level.SESSION, ActivityClass.LIFECYCLE, True, "cull"),
        SourceInfo(Source.TELEMETRY, Level.SESSION, ActivityClass.LIVENESS, False, "any OTel"),
    )
}
"""The source table. ``telemetry`` is what any other OTel-instrumented service counts as when it
carries a session or host identity but none of our names: liveness only."""

IDLE_CLASSES: Final = frozenset(
    {ActivityClass.ENGAGEMENT, ActivityClass.WORK, ActivityClass.LIFECYCLE}
)
"""Classes that end idleness by default: a session is idle since the latest activity of these
classes. Liveness never counts (a heartbeat is not use); presence does not count by default (a
forgotten connection is not use, ANCHORS/Coder #12012) and the policy issue makes it a choice."""


class HoldKind(enum.StrEnum):
    """What can hold a session up (the values of ``lastactive.hold``)."""

    LEASE = "lease"
    """A busy lease: a job working silently (``lastactive lease``)."""
    CLIENT = "client"
    """An attached client (a tmux client, an SSH login)."""
    FOREGROUND = "foreground"
    """A command running in the foreground of ``lastactive run``'s terminal."""
    TOOL = "tool"
    """An agent's tool call in flight (Claude Code ``PreToolUse`` until ``PostToolUse``), at most
    the policy's ``tool_call_max`` after it was reported: a lost end cannot hold forever."""


class AgentStatus(enum.StrEnum):
    """A session's status (seed 004): active until it completes or fails."""

    ACTIVE = "active"
    COMPLETED = "completed"
    ERROR = "error"


class AgentTurn(enum.StrEnum):
    """Whose turn it is in an agent session (the values of ``lastactive.agent.turn``; ``ended``
    is shown once the session completed or failed)."""

    WORKING = "working"
    """The agent works on a prompt or task: it makes progress, or it is stuck."""
    WAITING = "waiting"
    """The agent answered (Claude Code ``Stop``) or asks something and waits for the user:
    idle once ``idle_after`` passes, never stuck."""
    ENDED = "ended"
    """The session completed or failed."""


AGENT_EVENTS: Final[dict[str, tuple[AgentStatus, Source]]] = {
    EVENT_AGENT_SPAWN: (AgentStatus.ACTIVE, Source.START),
    EVENT_AGENT_PROGRESS: (AgentStatus.ACTIVE, Source.AGENT),
    EVENT_AGENT_COMPLETE: (AgentStatus.COMPLETED, Source.EXIT),
    EVENT_AGENT_ERROR: (AgentStatus.ERROR, Source.EXIT),
}
"""Agent lifecycle event name -> the status it sets and the source it counts as (seed 004)."""


# --- Claude Code's own telemetry ----------------------------------------------------------
# Claude Code exports OpenTelemetry itself (CLAUDE_CODE_ENABLE_TELEMETRY=1; Claude Code docs,
# "Monitoring"): metrics and events carry ``session.id``; the resource has
# ``service.name=claude-code``. These are its names, mapped to our sources, so pointing it at
# lastactive gives prompt engagement and agent work with no hook process per event.

CLAUDE_CODE_PREFIX: Final = "claude_code."
"""What Claude Code's event, metric and span names begin with. An event's log record has the
body ``claude_code.<name>`` and the ``event.name`` attribute ``<name>``."""

CLAUDE_CODE_ACTIVE_TIME: Final = "claude_code.active_time.total"
"""Claude Code's counter of active seconds, by ``type``: the user's or the agent's (``cli``)."""

CLAUDE_CODE_EVENTS: Final[dict[str, tuple[Source, AgentTurn | None]]] = {
    "claude_code.user_prompt": (Source.PROMPT, AgentTurn.WORKING),  # the user engaged
    "claude_code.tool_result": (Source.AGENT, None),  # a tool call finished
    "claude_code.tool_decision": (Source.AGENT, None),  # a tool call was allowed or refused
    "claude_code.api_request": (Source.AGENT, None),  # the model answered a request
    "claude_code.api_error": (Source.AGENT, None),  # a request failed (it retries)
}
"""Claude Code event -> the source it counts as and the agent's turn after it. A prompt is
engagement (``last_active``, seed 002) and starts the agent's turn; the rest is the agent's
work. A permission decision is not the user's engagement (seed 002, design option 2)."""

CLAUDE_CODE_METRICS: Final[dict[str, Source]] = {
    "claude_code.session.count": Source.START,  # +1 when a session starts
    "claude_code.token.usage": Source.AGENT,  # tokens in and out of the model
    "claude_code.cost.usage": Source.AGENT,
    "claude_code.lines_of_code.count": Source.AGENT,
    "claude_code.commit.count": Source.AGENT,
    "claude_code.pull_request.count": Source.AGENT,
    "claude_code.code_edit_tool.decision": Source.AGENT,
    CLAUDE_CODE_ACTIVE_TIME: Source.AGENT,  # type=user: CLAUDE_CODE_ACTIVE_TIME_USER
}
"""Claude Code counter -> the source a rise of it counts as (delta or cumulative, as sent)."""

CLAUDE_CODE_ACTIVE_TIME_TYPE: Final = "type"
"""The attribute of ``claude_code.active_time.total`` that says whose time it is."""
CLAUDE_CODE_ACTIVE_TIME_USER: Final = "user"
"""``type=user``: seconds of the user's keyboard interaction, engagement (``prompt``); ``cli``
is the agent's (``agent``)."""

CLAUDE_CODE_INTERACTION_SPAN: Final = "claude_code.interaction"
"""Claude Code's span of one turn, from a prompt to the answer (traces, beta:
``CLAUDE_CODE_ENHANCED_TELEMETRY_BETA=1``): its end hands the turn to the user (``waiting``).
Its other ``claude_code.*`` spans (model requests, tool calls) are the agent's work."""
