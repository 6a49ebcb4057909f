"""An agent's task as a span, spawn to complete or error, with progress as span events (seed 004).

A span reaches the collector only when it ends, so every step is also sent at once as a
lifecycle event (``lastactive.agent.spawn|progress|complete|error``): the session shows
``active`` with its task while the agent works, not only after.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from opentelemetry.trace import Span, Status, StatusCode

from lastactive.conventions import (
    ATTR_RESULT,
    ATTR_TASK,
    EVENT_AGENT_COMPLETE,
    EVENT_AGENT_ERROR,
    EVENT_AGENT_PROGRESS,
    Source,
)
from lastactive.instrumentation._tracker import SessionTracker

if TYPE_CHECKING:
    from lastactive.instrumentation._reporter import Reporter


class AgentTask:
    """One task of an agent session; made by :meth:`Reporter.agent_task`.

    Use as a context manager: leaving the block completes the task, an exception fails it (with
    the exception as the error) and propagates. ``complete`` and ``error`` end it explicitly;
    after the end, further calls do nothing.
    """

    def __init__(self, reporter: Reporter, tracker: SessionTracker, span: Span) -> None:
        self._reporter = reporter
        self._tracker = tracker
        self._span = span
        self.ended = False

    def progress(self, task: str | None = None) -> None:
        """The agent made progress; ``task`` replaces the task description when given."""
        if self.ended:
            return
        attrs = {ATTR_TASK: task} if task else {}
        self._span.add_event(EVENT_AGENT_PROGRESS, attrs)
        self._reporter.event(self._tracker, EVENT_AGENT_PROGRESS, attrs, source=Source.AGENT)

    def complete(self, result: str | None = None) -> None:
        """The task is done; status ``completed`` with ``result``."""
        self._end(EVENT_AGENT_COMPLETE, result, Status(StatusCode.OK))

    def error(self, message: str) -> None:
        """The task failed; status ``error`` with ``message`` as its result."""
        self._end(EVENT_AGENT_ERROR, message, Status(StatusCode.ERROR, message))

    def _end(self, event: str, result: str | None, status: Status) -> None:
        if self.ended:
            return
        self.ended = True
        attrs = {ATTR_RESULT: result} if result is not None else {}
        self._span.set_attributes(attrs)
        self._span.set_status(status)
        self._span.end()
        self._reporter.event(self._tracker, event, attrs, source=Source.EXIT)

    def __enter__(self) -> AgentTask:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._span.record_exception(exc)
            self.error(f"{type(exc).__name__}: {exc}")
        else:
            self.complete()
