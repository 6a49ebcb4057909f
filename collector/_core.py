"""What the edges translate for: the pure core's parts, made once by ``serve``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from collector._ingest import Ingest
from collector._state import ActivityState
from collector._stats import IngestStats
from collector._transitions import TransitionEngine
from collector._watch import WatchHub
from collector.policy import Policy


@dataclass(frozen=True, slots=True)
class Core:
    """The ingest (and its state), the idle policy, transitions and their subscribers, and the
    clock (ns since the epoch) every edge reads "now" from."""

    ingest: Ingest
    policy: Policy
    engine: TransitionEngine
    hub: WatchHub
    clock: Callable[[], int]
    stats: IngestStats = field(default_factory=IngestStats)

    @property
    def state(self) -> ActivityState:
        return self.ingest.state
