"""What an entity's activity means: the one home of the rules every part of the collector uses.

Pure functions over an entity's sources: its ``(source, last time)`` pairs (ns since the Unix
epoch), as a view's ``sources.items()`` or an entity's ``source_pairs()`` give them.
:class:`~lastactive.collector._state.ActivityState`'s views, the idle policy, the transition
engine and ``/metrics`` all derive class, trust, last counted activity, idle-since, progress and
stuck-since here, so they cannot drift apart.

Rules and where they come from:

* **class and trust** of a source: the source table, :data:`lastactive.conventions.SOURCES`
  (seed 000's table; trusted = observed by lastactive or the host, not self-reported);
* **last counted activity**: the latest time among the sources of the counted classes (by
  default :data:`~lastactive.conventions.IDLE_CLASSES`: engagement, work, lifecycle; a policy
  may choose), optionally trusted sources only;
* **idle since**: the last counted activity, or ``first_seen`` when there was none (Coder's
  deadline model starts from the last activity bump);
* **progress** of an agent session: its latest ``agent`` (work) or ``start`` (spawn) time
  (seed 004);
* **stuck since**: an agent session without progress for ``stuck_after`` is stuck from
  ``progress + stuck_after`` on (seed 004, "stuck detection").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from typing import Final

from lastactive.conventions import IDLE_CLASSES, SOURCES, ActivityClass, Source

__all__ = [
    "CLASS_OF",
    "PROGRESS_SOURCES",
    "TRUSTED",
    "idle_since",
    "last_counted",
    "latest",
    "latest_by_class",
    "progress",
    "sources_of",
    "stuck_since",
]

CLASS_OF: Final[Mapping[str, ActivityClass]] = {
    str(s): info.activity_class for s, info in SOURCES.items()
}
"""Source -> its activity class (unknown sources have none and never count)."""

TRUSTED: Final = frozenset(str(s) for s, info in SOURCES.items() if info.trusted)
"""The sources lastactive or the host observes (seed 000: trusted)."""

PROGRESS_SOURCES: Final = (str(Source.AGENT), str(Source.START))
"""The sources that are an agent's progress (seed 004: any event resets the stuck timer)."""


def sources_of(classes: Set[ActivityClass]) -> frozenset[str]:
    """Every source whose class is one of ``classes``."""
    return frozenset(src for src, cls in CLASS_OF.items() if cls in classes)


def latest(
    sources: Iterable[tuple[str, int]],
    classes: Set[ActivityClass] = IDLE_CLASSES,
    *,
    trusted_only: bool = False,
    skip: str | None = None,
) -> tuple[str | None, int | None]:
    """The latest of ``sources`` (``(source, time)`` pairs) of ``classes`` and its time (ns),
    or ``(None, None)``.

    Args:
        trusted_only: only :data:`TRUSTED` sources count.
        skip: a source that does not count (the policy skips ``hibernate``: a hibernated
            session is idle until it is used again).
    """
    best_src, best_t = None, None
    for src, t in sources:
        if (
            CLASS_OF.get(src) in classes
            and (best_t is None or t > best_t)
            and src != skip
            and (not trusted_only or src in TRUSTED)
        ):
            best_src, best_t = src, t
    return best_src, best_t


def last_counted(
    sources: Iterable[tuple[str, int]], count: Set[ActivityClass], count_untrusted: bool
) -> int | None:
    """The last counted activity (ns) under a policy's ``count`` and ``count_untrusted``; the
    ``hibernate`` record never counts."""
    return latest(sources, count, trusted_only=not count_untrusted, skip=Source.HIBERNATE)[1]


def idle_since(first_seen: int, last: int | None) -> int:
    """When idleness started (ns): the last counted activity, else ``first_seen``."""
    return first_seen if last is None else last


def latest_by_class(sources: Iterable[tuple[str, int]]) -> dict[ActivityClass, int]:
    """The latest time (ns) of each class that has any of ``sources`` (``(source, time)``
    pairs), in one pass (for fleet aggregates, where every session is looked at)."""
    out: dict[ActivityClass, int] = {}
    for src, t in sources:
        cls = CLASS_OF.get(src)
        if cls is not None and t > out.get(cls, 0):
            out[cls] = t
    return out


def progress(sources: Mapping[str, int]) -> int:
    """An agent session's latest progress (ns; 0 when it never made any)."""
    return max(sources.get(PROGRESS_SOURCES[0], 0), sources.get(PROGRESS_SOURCES[1], 0))


def stuck_since(
    sources: Mapping[str, int], agent_id: str | None, stuck_after_ns: int, working_since: int = 0
) -> int | None:
    """When an agent session is stuck without new progress (ns), or ``None`` when it is not an
    agent's or never made progress. ``working_since``: when the agent last got the turn (a
    prompt starts its work, so the stuck timer starts there too). Whether it is stuck now also
    needs it to be active and working."""
    if agent_id is None:
        return None
    last = max(progress(sources), working_since)
    return last + stuck_after_ns if last else None
