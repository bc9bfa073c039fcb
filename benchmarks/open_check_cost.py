"""What checking a database for damage on open costs: `PRAGMA quick_check` on a search of
N candidates, against opening it without the check and against `PRAGMA integrity_check`.

Every command opens its database through `db.engine.read_meta`, which runs
`PRAGMA quick_check(3)` (b-tree structure, record formats, NOT NULL/CHECK constraints;
not the index contents that integrity_check also compares). The database is filled with
realistic rows: random 10-node layers as graphs, three proxy accuracies per done
candidate and a trial row per evaluated one (as a v4+ search stores them).

    python benchmarks/open_check_cost.py [--candidates 20000] [--repeats 7]

Prints the file size and, per operation, the median wall and CPU milliseconds over the
repeats (the page cache is warm: the file was just written), and the ratio of a checked
open to an unchecked one, both measured in this run.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.store_growth import bulk_fill  # noqa: E402
import db.engine  # noqa: E402
from db.engine import readonly_uri  # noqa: E402
from db.store import SearchStore  # noqa: E402
from evonorm_search.mutation import random_graph  # noqa: E402

TRIALS_FROM_CANDIDATES = """
    INSERT INTO trials (search_id, candidate_id, trial, seed, status, attempts, accuracies_json,
                        seconds_json, steps_json, created_at, finished_at)
    SELECT search_id, id, 0, seed, status, attempts, '{"resnet": 0.5, "mobilenetv2": 0.5}',
           seconds_json, steps_json, created_at, finished_at
    FROM candidates WHERE status IN ('done', 'rejected')
"""


def measure(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append((time.perf_counter() - wall) * 1e3)
        cpus.append((time.process_time() - cpu) * 1e3)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "big.db"
        with SearchStore.open(path, create=True) as store:
            search_id = store.create_search("big", {}, seed=0).id
        bulk_fill(path, search_id, 0, args.candidates, rng,
                  graph_json=lambda r: random_graph(r, "B", 10).to_json())
        with sqlite3.connect(path) as connection:
            connection.execute(TRIALS_FROM_CANDIDATES)
        connection.close()
        uri = readonly_uri(path, probe=True)

        def pragma(name: str) -> Callable[[], object]:
            def run() -> object:
                connection = sqlite3.connect(uri, uri=True)
                try:
                    return connection.execute(f"PRAGMA {name}").fetchall()
                finally:
                    connection.close()
            return run

        def open_store() -> None:
            SearchStore.open(path, readonly=True).close()

        def unchecked_open() -> None:  # the same open with the check left out
            checked = db.engine.damage_found
            db.engine.damage_found = lambda _connection: ["ok"]
            try:
                open_store()
            finally:
                db.engine.damage_found = checked

        assert pragma("quick_check")() == [("ok",)]
        rows = {
            "open without the check": measure(unchecked_open, args.repeats),
            "PRAGMA quick_check": measure(pragma("quick_check"), args.repeats),
            "open with the check (SearchStore.open)": measure(open_store, args.repeats),
            "PRAGMA integrity_check": measure(pragma("integrity_check"), args.repeats),
        }
        size = path.stat().st_size / 1e6
    print(f"{args.candidates} candidates, {size:.1f} MB; median of {args.repeats}, warm page cache")
    print(f"{'':40} {'wall ms':>9} {'CPU ms':>9}")
    for name, (wall, cpu) in rows.items():
        print(f"{name:40} {wall:9.1f} {cpu:9.1f}")
    before, after = rows["open without the check"], rows["open with the check (SearchStore.open)"]
    print(f"checked / unchecked open: {after[1] / before[1]:.1f}x CPU; the check adds "
          f"{after[1] - before[1]:.1f} ms CPU ({(after[1] - before[1]) / size:.1f} ms per MB)")


if __name__ == "__main__":
    main()
