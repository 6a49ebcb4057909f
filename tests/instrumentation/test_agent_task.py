"""``Reporter.agent_task``: seed 004's lifecycle from the library, against a real collector."""

from __future__ import annotations

import pytest

from lastactive.instrumentation import Reporter
from tests.helpers import CollectorClient, wait_for


def test_task_span_with_live_status(collector: CollectorClient) -> None:
    reporter = Reporter(endpoint=f"http://{collector.grpc_target}", export_interval=3600)
    try:
        tracker = reporter.session("codey-1", {"gen_ai.agent.name": "codey"})
        with reporter.agent_task(tracker, "Fix Mission Control bugs") as task:
            reporter.flush()
            s = collector.session("codey-1")
            assert s is not None
            assert (s["status"], s["task"], s["agent_id"]) == (
                "active", "Fix Mission Control bugs", "codey",
            )  # fmt: skip
            task.progress("Half of them fixed")
            reporter.flush()
            s = collector.session("codey-1")
            assert s is not None
            assert (s["status"], s["task"], s["last_source"]) == (
                "active", "Half of them fixed", "agent",
            )  # fmt: skip
            task.complete("All bugs fixed!")
        reporter.flush()
        s = collector.session("codey-1")
        assert s is not None
        assert (s["status"], s["result"]) == ("completed", "All bugs fixed!")
        assert "telemetry" in s["sources"]  # the task's span arrived too

        failing = reporter.session("codey-2", {"gen_ai.agent.name": "codey"})
        with pytest.raises(RuntimeError), reporter.agent_task(failing, "Deploy"):
            raise RuntimeError("quota exhausted")
        reporter.flush()
        s = wait_for(lambda: collector.session("codey-2"), what="the failed task")
        assert (s["status"], s["result"]) == ("error", "RuntimeError: quota exhausted")
    finally:
        reporter.shutdown()
