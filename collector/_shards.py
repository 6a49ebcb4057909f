"""Shards: how replicas on one PostgreSQL store divide the transition work (issue 13).

Every entity belongs to one of :data:`SHARDS` shards by a hash of its key (:func:`shard_of`;
the store computes the same in SQL for its ``shard`` column). A replica evaluates transitions
only for the entities of the shards it holds a lease on (:mod:`lastactive.collector.
_pg_cluster`), and each live replica holds about :func:`fair_share` of them, so the work and
the memory of the engine spread over the replicas, and a dead replica's shards are taken over
by the others once its leases expire (Temporal's shards with a fenced owner; SCALEOUT, "How
others share activity state and fire timers").
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["SHARDS", "fair_share", "shard_of"]

SHARDS: Final = 64
"""How many shards the entities are split into (a power of two: the hash's low bits)."""


def shard_of(kind: str, id_: str) -> int:
    """The shard of entity ``(kind, id_)``: the low 6 bits of the first 4 bytes of the MD5 of
    ``"kind:id"`` (UTF-8), in ``[0, SHARDS)``. The store's SQL is
    ``('x' || substr(md5(kind || ':' || id), 1, 8))::bit(32)::int & 63``."""
    digest = hashlib.md5(f"{kind}:{id_}".encode(errors="surrogatepass"), usedforsecurity=False)
    return digest.digest()[3] & (SHARDS - 1)


def fair_share(live: int) -> int:
    """How many shards one of ``live`` replicas holds at most: ``ceil(SHARDS / live)``."""
    return -(-SHARDS // max(live, 1))
