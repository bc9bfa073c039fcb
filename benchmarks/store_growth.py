"""Store cost per candidate as the database grows from 0 to 10,000 candidates.

At each size the script times the store calls the controller makes for one candidate
(has_hash, find_by_fingerprint, next_number, add_candidate, mark_running, record_result,
population, counts) over `--ops` fresh candidates, plus the read-only queries behind
`evonorm status` and `front`. Between sizes the database is filled in bulk with realistic
rows (done with three proxy accuracies, rejected, duplicates). Flat means the figures at
10,000 stay close to those at 0: the last column is the ratio to the first size.

    /work/venv/bin/python benchmarks/store_growth.py [--sizes 0,1000,5000,10000] [--ops 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, insert

from db.models import Candidate, Evaluation
from db.store import SearchStore

PROXIES = ("resnet", "mobilenetv2", "efficientnet")
POPULATION = 20
TOTAL = "= all calls, median"
TOTAL_MEAN = "= all calls, mean"
# CPU time of this process: what the store costs when the machine is shared and busy.
TOTAL_CPU = "= all calls, mean CPU"


PLACEHOLDER_GRAPH = '{"format": "evonorm-layer-graph", "version": 1, "nodes": []}'


def bulk_fill(path: Path, search_id: int, start: int, stop: int, rng: random.Random,
              graph_json: Callable[[random.Random], str] | None = None) -> None:
    """Insert candidates number start..stop-1 in one transaction (done 70%, rejected 20%, dup
    10%); `graph_json(rng)` gives each its layer (default: a short placeholder)."""
    engine = create_engine(f"sqlite:///{path}")
    now = datetime.now(UTC)
    with engine.begin() as connection:
        rows = []
        for number in range(start, stop):
            draw = rng.random()
            status = "done" if draw < 0.7 else "rejected" if draw < 0.9 else "duplicate"
            rows.append(
                {
                    "search_id": search_id, "number": number, "parent_id": None,
                    "graph_json": PLACEHOLDER_GRAPH if graph_json is None else graph_json(rng),
                    "structural_hash": f"{rng.getrandbits(128):032x}",
                    "fingerprint": f"{rng.getrandbits(128):032x}", "status": status,
                    "stage": "stability" if status == "rejected" else None, "reason": None,
                    "seed": rng.getrandbits(62), "attempts": 1,
                    "duplicate_of": None, "created_at": now, "started_at": now, "finished_at": now,
                    "seconds_json": '{"training": 1.0}', "steps_json": "{}",
                }
            )
        connection.execute(insert(Candidate), rows)
        done_ids = [
            row.id
            for row in connection.execute(
                Candidate.__table__.select().where(
                    Candidate.search_id == search_id,
                    Candidate.number >= start,
                    Candidate.status.in_(["done", "duplicate"]),
                )
            )
        ]
        evaluations = [
            {"candidate_id": cid, "proxy": proxy, "accuracy": rng.random()}
            for cid in done_ids
            for proxy in PROXIES
        ]
        if evaluations:
            connection.execute(insert(Evaluation), evaluations)
    engine.dispose()


def timed(samples: dict[str, list[float]], name: str, call: Callable[[], object]) -> object:
    start = time.perf_counter()
    value = call()
    samples.setdefault(name, []).append((time.perf_counter() - start) * 1e3)
    return value


def one_candidate_cycle(store: SearchStore, search_id: int, rng: random.Random, samples: dict[str, list[float]]) -> None:
    """The store calls the controller makes for one trained candidate."""
    structural_hash = f"{rng.getrandbits(128):032x}"
    fingerprint = f"{rng.getrandbits(128):032x}"
    timed(samples, "has_hash", lambda: store.has_hash(search_id, structural_hash))
    timed(samples, "find_by_fingerprint", lambda: store.find_by_fingerprint(search_id, fingerprint))
    number = timed(samples, "next_number", lambda: store.next_number(search_id))
    record = timed(
        samples,
        "add_candidate",
        lambda: store.add_candidate(
            search_id, number=number, parent_id=None, graph_json="{}",  # type: ignore[arg-type]
            structural_hash=structural_hash, fingerprint=fingerprint, seed=rng.getrandbits(62),
        ),
    )
    timed(samples, "mark_running", lambda: store.mark_running(record.id))  # type: ignore[attr-defined]
    accuracies = {proxy: rng.random() for proxy in PROXIES}
    timed(samples, "record_result", lambda: store.record_result(  # type: ignore[attr-defined]
        record.id, status="done", accuracies=accuracies, seconds={"training": 1.0}))
    timed(samples, "population", lambda: store.population(search_id, POPULATION))
    timed(samples, "counts", lambda: store.counts(search_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="0,1000,2500,5000,10000", help="store sizes to measure at")
    parser.add_argument("--ops", type=int, default=200, help="candidate cycles timed per size")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "growth.db"
        with SearchStore.open(path, create=True) as store:
            search_id = store.create_search("growth", {}, seed=0).id
        results: dict[int, dict[str, float]] = {}
        filled = 0
        for size in sizes:
            if size > filled:
                bulk_fill(path, search_id, filled, size, rng)
                filled = size
            samples: dict[str, list[float]] = {}
            with SearchStore.open(path) as store:
                cpu_start = time.process_time()
                for _ in range(args.ops):
                    timed(samples, TOTAL, lambda: one_candidate_cycle(store, search_id, rng, samples))
                cpu = (time.process_time() - cpu_start) * 1e3 / args.ops
                filled += args.ops
                with SearchStore.open(path, readonly=True) as reader:
                    for _ in range(5):
                        timed(samples, "summary (status)", lambda: reader.summary(search_id))
                        timed(samples, "candidates(done) (front)", lambda: reader.candidates(search_id, ["done"]))
                assert store.integrity_check() == "ok"
            results[size] = {name: statistics.median(values) for name, values in samples.items()}
            results[size][TOTAL_MEAN] = statistics.mean(samples[TOTAL])
            results[size][TOTAL_CPU] = cpu

    names = list(results[sizes[0]])
    header = ["ms (median unless said)"] + [f"{size:>7}" for size in sizes] + ["ratio last/first"]
    print("  ".join(f"{h:>26}" if i == 0 else h for i, h in enumerate(header)))
    for name in names:
        cells = [f"{results[size][name]:7.3f}" for size in sizes]
        ratio = results[sizes[-1]][name] / results[sizes[0]][name]
        print(f"{name:>26}  " + "  ".join(cells) + f"  {ratio:16.2f}")
    print("(wall-clock figures include waiting for the CPU on a loaded machine; the CPU row does not)")
    print(f"(sizes: candidates already stored; {args.ops} candidate cycles timed per size; "
          "the status and front rows read the whole search and are expected to grow)")


if __name__ == "__main__":
    main()
