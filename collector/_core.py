"""What the edges translate for: the pure core's parts, made once by ``serve``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lastactive.collector._ingest import Ingest
from lastactive.collector._state import ActivityState
from lastactive.collector._stats import IngestStats
from lastactive.collector._transitions import TransitionEngine
from lastactive.collector._watch import WatchHub
from lastactive.collector.policy import Policy


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
