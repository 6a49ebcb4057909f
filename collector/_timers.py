"""When each entity's next evaluation is due: the transition engine's timer (issue 15).

A calendar rather than a heap of ``(due, tie, entity)`` entries: entities in slots of
:data:`SLOT_NS` by their due time (ns since the epoch), the slot numbers in a heap. A scheduled
check costs a list entry (8 bytes) instead of a heap entry and its tuple (72 bytes; about two
sessions in three have a check scheduled), and checks still run at their exact due time: a slot
that has begun gives up only the entities already due.

An entity's ``check_at`` is its earliest scheduled check. An entry whose entity's ``check_at``
is no longer in the entry's slot is stale (an earlier check was scheduled and ran, or the entity
was forgotten) and is dropped when met; the live entry is in ``check_at``'s slot.

The running slot (begun, not over) may hold many checks not due yet: a fleet's sessions go idle
in the same second, so a slot can hold 10k checks due at its end. :meth:`Timers.pop_due` looks
at them in a *pass* spread over its calls (at most :data:`LOOKS_PER_CHECK` entries per check it
may return), and once a pass has looked at every entry, the slot is *held* until the earliest
check left in it (or an earlier one scheduled there): until then asking what is due costs O(1).
Issue 15: at 1M sessions the tick looked at all of a slot's 16k entries every 0.05 s until
they came due, 8-11 ms on the event loop each time.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from lastactive.collector._state import Entity

__all__ = ["LOOKS_PER_CHECK", "SLOT_NS", "Timers"]

SLOT_NS: Final = 250_000_000
"""A slot's width (ns). A collector's tick (:data:`~lastactive.collector._transitions.TICK_S`,
0.05 s) meets the running slot up to five times, with a pass over its entries not due yet
when the earliest of them came due; slots as narrow as the tick would be up to five times as
many (a dict entry and a list each)."""
LOOKS_PER_CHECK: Final = 32
"""Entries :meth:`Timers.pop_due` looks at per check it may return (~0.5 us each): a tick's
slice of 32 checks looks at no more than 1024."""


class Timers:
    """Scheduled checks of entities (times in ns since the epoch)."""

    __slots__ = ("_held", "_held_until", "_looked", "_order", "_passing", "_slots", "_soonest")

    def __init__(self) -> None:
        self._slots: dict[int, list[Entity]] = {}
        """Slot number (``due // SLOT_NS``) -> entities with an entry there (during a pass of
        that slot: those not looked at yet)."""
        self._order: list[int] = []
        """The slot numbers, a heap."""
        self._passing: int | None = None
        """The slot a pass is under way in."""
        self._looked: list[Entity] = []
        """The entries of the pass's slot it looked at and found not due."""
        self._soonest = 0
        """The earliest of those checks (ns)."""
        self._held: int | None = None
        """The held slot (its last pass looked at every entry)."""
        self._held_until = 0
        """No check in the held slot is due before this (ns)."""

    def schedule(self, e: Entity, due: int) -> None:
        """Check ``e`` at ``due`` unless a check no later is scheduled (a later change is found
        when the earlier check runs and reschedules)."""
        pending = e.check_at
        if pending is not None and pending <= due:
            return
        e.check_at = due
        slot = due // SLOT_NS
        if slot == self._held and due < self._held_until:
            self._held_until = due
        entries = self._slots.get(slot)
        if entries is None:
            self._slots[slot] = [e]
            heapq.heappush(self._order, slot)
        else:
            entries.append(e)

    def pop_due(self, now: int, limit: int) -> list[Entity]:
        """Up to ``limit`` entities whose check is due at ``now``, each once, earliest slots
        first; their checks are taken (``check_at`` ``None``), so whoever evaluates them
        schedules what comes next. Looks at no more than ``limit`` x :data:`LOOKS_PER_CHECK`
        entries: when it returns fewer than ``limit`` while :meth:`any_due` is true, a pass
        goes on at the next call."""
        out: list[Entity] = []
        order, slots = self._order, self._slots
        current = now // SLOT_NS
        looks = limit * LOOKS_PER_CHECK if limit < sys.maxsize // LOOKS_PER_CHECK else limit
        while order and order[0] <= current and len(out) < limit and looks > 0:
            slot = order[0]
            if slot == self._held and now < self._held_until:
                break  # the running slot, nothing due in it yet
            if self._passing != slot:
                self._passing, self._looked, self._soonest = slot, [], sys.maxsize
            entries, looked, soonest = slots[slot], self._looked, self._soonest
            while entries and len(out) < limit and looks > 0:
                looks -= 1
                e = entries.pop()
                at = e.check_at
                if at is None or at // SLOT_NS != slot:
                    continue  # stale
                if at > now:  # the running slot's, not due yet
                    looked.append(e)
                    soonest = min(soonest, at)
                    continue
                e.check_at = None
                out.append(e)
            self._soonest = soonest
            if entries:
                break  # out of budget: the pass goes on at the next call
            self._passing = None
            if looked:  # the pass is over: no check left in the slot is due before the soonest
                slots[slot] = looked
                self._held, self._held_until = slot, soonest
                continue
            del slots[slot]
            heapq.heappop(order)
        return out

    def due(self, now: int) -> Iterator[Entity]:
        """The entities whose check is due at ``now``, in no order (maybe twice), without
        taking them: a walk of the slot heap's tree that stops below slots not begun and
        skips the held slot (costs what is due, and a pass's slot)."""
        order, slots = self._order, self._slots
        current = now // SLOT_NS
        held = self._held if now < self._held_until else None
        passing = self._passing
        if passing is not None and passing <= current:
            for e in self._looked:
                at = e.check_at
                if at is not None and at <= now and at // SLOT_NS == passing:
                    yield e
        stack = [0] if order else []
        while stack:
            i = stack.pop()
            slot = order[i]
            if slot <= current:
                if slot != held:
                    for e in slots[slot]:
                        at = e.check_at
                        if at is not None and at <= now and at // SLOT_NS == slot:
                            yield e
                stack.extend(j for j in (2 * i + 1, 2 * i + 2) if j < len(order))

    def any_due(self, now: int) -> bool:
        """Whether a check may be due at ``now``: true when one is, and also for a stale entry
        left in a slot before the running one, or a running slot not held (a pass has not
        looked at all of it): the next :meth:`pop_due` calls drop them, or hold the slot."""
        order = self._order
        if not order:
            return False
        first = order[0]
        current = now // SLOT_NS
        if first < current:
            return True
        return first == current and (first != self._held or now >= self._held_until)
