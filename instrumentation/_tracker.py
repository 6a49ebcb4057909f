"""The hot-path half of the instrumentation: plain fields, no OTel calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from lastactive.conventions import ATTR_SESSION_ID, Source

Clock = Callable[[], float]
"""Returns seconds since the Unix epoch (UTC), like :func:`time.time`."""


class SessionTracker:
    """Last-activity state of one session, written on the hot path, read at export.

    ``record``, ``add_input`` and ``add_output`` only write plain fields (about the cost of an
    attribute write plus one clock read); the :class:`~.Reporter` that made the
    tracker reads them through observable instruments at each export. Times are seconds since
    the Unix epoch (UTC) from the clock passed in.

    The first activity after a quiet spell (no activity for ``quiet_after`` seconds, the export
    interval) calls ``on_wake`` so the reporter exports at once instead of at the next interval.
    Safe to call from one writer thread while the exporter thread reads.
    """

    __slots__ = (
        "_clock",
        "_last",
        "_on_wake",
        "_quiet_after",
        "attributes",
        "input_bytes",
        "io_source",
        "output_bytes",
        "session_id",
        "times",
    )

    def __init__(
        self,
        session_id: str | None,
        attributes: Mapping[str, str | int] | None = None,
        *,
        clock: Clock = time.time,
        quiet_after: float = 5.0,
        on_wake: Callable[[], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.attributes: dict[str, str | int] = dict(attributes or {})
        self.times: dict[str, float] = {}
        """Source name -> seconds since the epoch of its last activity."""
        self.input_bytes = 0
        """Bytes into the session (``network.io.direction=receive``), total."""
        self.output_bytes = 0
        """Bytes out of the session (``network.io.direction=transmit``), total."""
        self.io_source: Source | None = None
        """What a rise of the byte counters is, when the reporter classified the bytes itself
        (the RFB proxy: ``connection``, a viewer's protocol, not keystrokes); ``None``: by
        direction, ``input`` in and ``output`` out."""
        self._clock = clock
        self._quiet_after = quiet_after
        self._on_wake = on_wake
        self._last = float("-inf")

    def labels(self) -> dict[str, str | int | float]:
        """The attributes every data point and event of this tracker carries: ``session.id``
        (absent for a host-level tracker) and the session's attributes."""
        if self.session_id is None:
            return dict(self.attributes)
        return {ATTR_SESSION_ID: self.session_id, **self.attributes}

    def record(self, source: Source | str) -> None:
        """Record one activity of ``source`` now. Hot path: plain writes only."""
        now = self._clock()
        self.times[source] = now
        if now - self._last >= self._quiet_after and self._on_wake is not None:
            self._on_wake()
        self._last = now

    def alive(self, source: Source | str = Source.HEARTBEAT) -> None:
        """Record a liveness signal (heartbeat, process alive) of ``source`` now.

        Unlike :meth:`record` it never triggers an early export: liveness is not activity, and a
        periodic liveness signal would otherwise double the export rate of a quiet session.
        """
        self.times[source] = self._clock()

    def add_input(self, nbytes: int) -> None:
        """Count ``nbytes`` into the session (user input: engagement). Hot path."""
        self.input_bytes += nbytes
        self.record(Source.INPUT)

    def add_output(self, nbytes: int) -> None:
        """Count ``nbytes`` out of the session (program output: work). Hot path."""
        self.output_bytes += nbytes
        self.record(Source.OUTPUT)
