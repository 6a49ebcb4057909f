"""Proxy instrumentation hooks: presence per connection, engagement only from real user input.

Use from any relay loop (asyncio streams, websockify, ...) without the CLI::

    instrument = ProxyInstrument(reporter, "desktop-42", protocol="rfb")
    conn = instrument.connect("203.0.113.7", 51234)  # presence starts; a span opens
    conn.client_data(chunk)                           # hot path: counts, classifies
    conn.server_data(chunk)                           # hot path: counts
    instrument.heartbeat()                            # every heartbeat_interval seconds
    conn.close("client closed")                       # span ends with bytes and reason

Bytes are counted both ways (``network.io.direction``); engagement (``input``) comes only from
what the protocol says is user input: for ``rfb`` the :class:`~._rfb.RfbClassifier`
(KeyEvent, pointer moves, cut text), for ``raw`` every client chunk; ``auto`` (the WebSocket
front) is ``rfb`` when the server greets with ``RFB ``, else ``raw``. Presence is a ``client``
hold per connection plus ``connection`` activity at connect and at most once per
:meth:`ProxyInstrument.heartbeat` (seed 001: a heartbeat while connected, never a write per
message). Each heartbeat renews the holds, which otherwise lapse by themselves
(:func:`~._reporter.hold_ttl`): a proxy that dies does not hold its sessions up
for ever.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from typing import Final

from opentelemetry.trace import Span

from lastactive.conventions import (
    ATTR_CLIENT_ADDRESS,
    ATTR_CLIENT_PORT,
    ATTR_CONNECTION_CLASSIFICATION,
    ATTR_CONNECTION_CLOSE_REASON,
    ATTR_CONNECTION_RECEIVED_BYTES,
    ATTR_CONNECTION_TRANSMITTED_BYTES,
    ATTR_NETWORK_PROTOCOL_NAME,
    HoldKind,
    Source,
)
from lastactive.instrumentation._reporter import Reporter, hold_ttl
from lastactive.instrumentation._rfb import RfbClassifier

_log = logging.getLogger(__name__)

PROTOCOLS: Final = ("raw", "rfb", "websocket")


class ProxyInstrument:
    """The hooks of one proxied session (its tracker, its open connections).

    Call :meth:`heartbeat` every ``heartbeat_interval`` seconds (default: the reporter's export
    interval); it reports presence and renews the connections' ``client`` holds.

    Raises:
        ValueError: an unknown ``protocol``, or a ``heartbeat_interval`` that is not > 0.
    """

    def __init__(
        self,
        reporter: Reporter,
        session_id: str,
        protocol: str = "raw",
        attributes: Mapping[str, str | int] | None = None,
        heartbeat_interval: float | None = None,
    ) -> None:
        if protocol not in ("raw", "rfb", "auto"):
            raise ValueError(f"protocol must be raw, rfb or auto, got {protocol!r}")
        interval = reporter.export_interval if heartbeat_interval is None else heartbeat_interval
        if not interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0 seconds, got {interval!r}")
        self.heartbeat_interval = interval
        self._hold_ttl = hold_ttl(interval)
        self.reporter = reporter
        self.protocol = protocol
        self.tracker = reporter.session(session_id, attributes)
        self.connections: set[Connection] = set()
        self._ids = itertools.count(1)

    def connect(self, address: str, port: int | None = None) -> Connection:
        """A client connected from ``address`` (an IP address or name) and ``port``: presence,
        a hold, a span with ``client.address`` and ``client.port`` (semconv: the address only,
        the port apart)."""
        peer = address if port is None else f"{address}:{port}"
        conn_id = f"{peer}#{next(self._ids)}"
        client: dict[str, str | int] = {ATTR_CLIENT_ADDRESS: address}
        if port is not None:
            client[ATTR_CLIENT_PORT] = port
        span = self.reporter.start_span(
            "proxy connection",
            {
                **client,
                ATTR_NETWORK_PROTOCOL_NAME: self.protocol,
                **self.tracker.labels(),
            },
        )
        conn = Connection(self, conn_id, span)
        self.connections.add(conn)
        reporter = self.reporter
        reporter.hold(self.tracker, HoldKind.CLIENT, conn_id, reporter.clock() + self._hold_ttl)
        reporter.activity(self.tracker, Source.CONNECTION)
        return conn

    def heartbeat(self) -> None:
        """Presence while anyone is connected, and the connections' holds renewed; call it
        every ``heartbeat_interval`` seconds (never per message)."""
        if not self.connections:
            return
        self.tracker.record(Source.CONNECTION)
        reporter = self.reporter
        until = reporter.clock() + self._hold_ttl
        for conn in self.connections:
            reporter.hold(self.tracker, HoldKind.CLIENT, conn.id, until)


class Connection:
    """One client connection; :meth:`client_data` and :meth:`server_data` are the hot path."""

    __slots__ = (
        "_auto",
        "_classifier",
        "_instrument",
        "_span",
        "_tracker",
        "id",
        "received",
        "transmitted",
    )

    def __init__(self, instrument: ProxyInstrument, conn_id: str, span: Span) -> None:
        self._instrument = instrument
        self._tracker = instrument.tracker
        self._span = span
        self._classifier = RfbClassifier() if instrument.protocol == "rfb" else None
        if self._classifier is not None:  # its bytes are a viewer's protocol, not keystrokes
            self._tracker.io_source = Source.CONNECTION
        self._auto = instrument.protocol == "auto"  # decided by who speaks first, and how
        self.id = conn_id
        self.received = 0
        """Bytes from the client (``receive``)."""
        self.transmitted = 0
        """Bytes to the client (``transmit``)."""

    def client_data(self, data: bytes | memoryview) -> None:
        """Client -> server bytes: counted; user input (per the protocol) is engagement."""
        if self._auto:  # the client spoke first: not RFB (whose server speaks first)
            self._auto = False
        n = len(data)
        self.received += n
        tracker = self._tracker
        tracker.input_bytes += n
        classifier = self._classifier
        if classifier is None:
            tracker.record(Source.INPUT)
        elif classifier.stopped is None:
            if classifier.feed(data):
                tracker.record(Source.INPUT)
            elif classifier.stopped is not None:
                _log.warning(
                    "connection %s: stopped classifying RFB: %s; relaying on",
                    self.id,
                    classifier.stopped,
                )

    def server_data(self, data: bytes | memoryview) -> None:
        """Server -> client bytes: counted (output for ``raw``, framebuffer for ``rfb``)."""
        if self._auto:
            self._auto = False
            if bytes(data[:4]) == b"RFB ":
                self._classifier = RfbClassifier()
                self._tracker.io_source = Source.CONNECTION
        n = len(data)
        self.transmitted += n
        self._tracker.output_bytes += n
        if self._classifier is None:
            self._tracker.record(Source.OUTPUT)

    def close(self, reason: str) -> None:
        """The connection ended: the span gets bytes, reason and classification; the hold goes.
        Idempotent."""
        instrument = self._instrument
        if self not in instrument.connections:
            return
        instrument.connections.discard(self)
        classification = "raw"
        if self._classifier is not None:
            c = self._classifier
            classification = "ok" if c.stopped is None else f"stopped: {c.stopped}"
        span = self._span
        span.set_attributes(
            {
                ATTR_CONNECTION_RECEIVED_BYTES: self.received,
                ATTR_CONNECTION_TRANSMITTED_BYTES: self.transmitted,
                ATTR_CONNECTION_CLOSE_REASON: reason,
                ATTR_CONNECTION_CLASSIFICATION: classification,
            }
        )
        span.end()
        reporter = instrument.reporter
        reporter.hold(self._tracker, HoldKind.CLIENT, self.id, reporter.clock())
