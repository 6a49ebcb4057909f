"""When each entity's next evaluation is due: the transition engine's timer (issue 15).

A calendar rather than a heap of ``(due, tie, entity)`` entries: entities in slots of
:data:`SLOT_NS` by their due time (ns since the epoch), the slot numbers in a heap. A scheduled
check costs a list entry (8 bytes) instead of a heap entry and its tuple (72 bytes; about two
sessions in three have a check scheduled), and checks still run at their exact due time: a slot
that has begun gives up only the entities already due.

An entity's ``check_at`` is its earliest scheduled check. An entry whose entity's ``check_at``
is no longer in the entry's slot is stale (an earlier check was scheduled and ran, or the entity
was forgotten) and is dropped when met; the live entry is in ``check_at``'s slot.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from lastactive.collector._state import Entity

__all__ = ["SLOT_NS", "Timers"]

SLOT_NS: Final = 250_000_000
"""A slot's width (ns). A collector's tick (:data:`~lastactive.collector._transitions.TICK_S`,
0.05 s) meets the running slot up to five times, each time passing over its entries not yet
due (:meth:`Timers.pop_due` puts them back, :meth:`Timers.any_due` scans them); slots as
narrow as the tick would be up to five times as many (a dict entry and a list each)."""


class Timers:
    """Scheduled checks of entities (times in ns since the epoch)."""

    __slots__ = ("_order", "_slots")

    def __init__(self) -> None:
        self._slots: dict[int, list[Entity]] = {}
        """Slot number (``due // SLOT_NS``) -> entities with an entry there."""
        self._order: list[int] = []
        """The slot numbers, a heap."""

    def schedule(self, e: Entity, due: int) -> None:
        """Check ``e`` at ``due`` unless a check no later is scheduled (a later change is found
        when the earlier check runs and reschedules)."""
        pending = e.check_at
        if pending is not None and pending <= due:
            return
        e.check_at = due
        slot = due // SLOT_NS
        entries = self._slots.get(slot)
        if entries is None:
            self._slots[slot] = [e]
            heapq.heappush(self._order, slot)
        else:
            entries.append(e)

    def pop_due(self, now: int, limit: int) -> list[Entity]:
        """Up to ``limit`` entities whose check is due at ``now``, each once, earliest slots
        first; their checks are taken (``check_at`` ``None``), so whoever evaluates them
        schedules what comes next."""
        out: list[Entity] = []
        order, slots = self._order, self._slots
        current = now // SLOT_NS
        while order and order[0] <= current and len(out) < limit:
            slot = order[0]
            entries = slots[slot]
            waiting = []
            while entries and len(out) < limit:
                e = entries.pop()
                at = e.check_at
                if at is None or at // SLOT_NS != slot:
                    continue  # stale
                if at > now:
                    waiting.append(e)  # the running slot's, not due yet
                    continue
                e.check_at = None
                out.append(e)
            entries.extend(waiting)
            if entries:
                break  # out of budget, or what is left of the running slot waits
            del slots[slot]
            heapq.heappop(order)
        return out

    def due(self, now: int) -> Iterator[Entity]:
        """The entities whose check is due at ``now``, in no order, without taking them: a walk
        of the slot heap's tree that stops below slots not begun (costs what is due)."""
        order, slots = self._order, self._slots
        current = now // SLOT_NS
        stack = [0] if order else []
        while stack:
            i = stack.pop()
            slot = order[i]
            if slot <= current:
                for e in slots[slot]:
                    at = e.check_at
                    if at is not None and at <= now and at // SLOT_NS == slot:
                        yield e
                stack.extend(j for j in (2 * i + 1, 2 * i + 2) if j < len(order))

    def any_due(self, now: int) -> bool:
        """Whether a check is due at ``now`` (a slot before the running one has one, stale
        entries aside, or the running slot has one)."""
        order = self._order
        if not order:
            return False
        first = order[0]
        current = now // SLOT_NS
        if first < current:
            return True  # what is left there is due, or stale: the next pop drops it either way
        return first == current and any(True for _ in self.due(now))
