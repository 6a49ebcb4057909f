"""Write-behind cost: one flush of N changed entities into SQLite, next to a plain insert.

    python benchmarks/flush.py

A flush writes each changed entity once (not once per event), merging with max()/min() and
per-source max, in one transaction. The baseline is a plain ``executemany`` INSERT of the same
rows into a bare table in the same database, in the same run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lastactive.collector import EntityRecord, SqliteStore

T0 = 1_800_000_000 * 1_000_000_000


def records(n: int, step: int) -> list[EntityRecord]:
    t = T0 + step * 5_000_000_000
    return [
        EntityRecord(
            kind="session",
            id=f"s{i}",
            host_id="host",
            service_name="bench",
            first_seen=T0,
            last_seen=t,
            sources=(("input", t - 7), ("output", t - 3), ("process", t)),
            input_bytes=step * 10,
            output_bytes=step * 1000,
            pid=1000 + i,
        )
        for i in range(n)
    ]


def main() -> None:
    print(
        f"{'changed entities':>16} {'flush ms':>9} {'rows/s':>10} {'plain insert ms':>16} "
        f"{'x plain':>8}"
    )
    for n in (1_000, 10_000, 100_000):
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(Path(tmp) / "bench.db")
            store.save(records(n, 0))  # the rows exist: later flushes are updates
            batch = records(n, 1)
            began = time.perf_counter()
            store.save(batch)
            flush = time.perf_counter() - began
            db = store._db
            db.execute("CREATE TABLE plain (kind, id, t, sources)")
            rows = [(r.kind, r.id, r.last_seen, "{}") for r in batch]
            began = time.perf_counter()
            db.execute("BEGIN")
            db.executemany("INSERT INTO plain VALUES (?,?,?,?)", rows)
            db.execute("COMMIT")
            plain = time.perf_counter() - began
            store.close()
        print(
            f"{n:16d} {flush * 1e3:9.1f} {n / flush:10.0f} {plain * 1e3:16.1f} {flush / plain:8.1f}"
        )


if __name__ == "__main__":
    main()
