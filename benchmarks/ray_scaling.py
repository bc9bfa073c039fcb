"""How well the search scales through Ray (issue 5). Prints three figures:

(a) dispatch overhead per candidate through `RayEvaluator` with a trivial evaluation
    (returns at once): the round trip of one evaluation at a time (submit -> result,
    median), and the amortized time per candidate with `capacity` in flight;
    goal: under 20 ms;
(b) worker utilization during a real digits search (the `evonorm search` defaults, the
    real evaluation) with 2 workers on a local Ray instance: time spent inside the
    evaluation summed over workers / (wall time of the search x 2); goal: >= 95%;
(c) throughput of whole searches (controller, store and fingerprints included) with 1,
    2, 4 and 8 workers on a local 4-node Ray cluster (2 logical CPUs per node), with an
    evaluation that sleeps instead of training, so the machine's 2 real cores are not
    the limit; goal: 8 workers >= 7x one worker.

    /work/venv/bin/python benchmarks/ray_scaling.py [--parts abc] [--budget 24]
        [--sleep 1.0] [--rounds 8] [--trivial 300]

Progress goes to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

from db.store import SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.search.controller import SearchController
from evonorm_search.task import EvalResult, EvalTask
from workers.ray_executor import RayEvaluator

WORKER_COUNTS = (1, 2, 4, 8)
NODES = 4
CPUS_PER_NODE = 2


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def trivial(task: EvalTask, data: Any) -> EvalResult:
    return EvalResult("done", accuracies={proxy: 0.5 for proxy in task.proxies})


def sleeper(seconds: float) -> Any:
    def evaluate(task: EvalTask, data: Any) -> EvalResult:
        time.sleep(seconds)
        # Distinct scores keep the Pareto tournaments (and so the mutations) varied.
        return EvalResult("done", accuracies={p: (task.seed % 997) / 997 for p in task.proxies})

    return evaluate


def _task(number: int) -> EvalTask:
    return EvalTask(graph_json="{}", proxies=("resnet",), seed=number, candidate_id=number)


def _steady(evaluator: RayEvaluator, count: int) -> float:
    """Seconds to evaluate `count` tasks keeping `capacity` in flight, like the controller."""
    in_flight: set[Future[EvalResult]] = set()
    submitted = 0
    started = time.perf_counter()
    while submitted < count or in_flight:
        while submitted < count and len(in_flight) < evaluator.capacity:
            in_flight.add(evaluator.submit(_task(submitted)))
            submitted += 1
        done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()
    return time.perf_counter() - started


def part_a(count: int) -> None:
    say(f"(a) {count} trivial evaluations on the cluster")
    evaluator = RayEvaluator(trivial, dataset_loader=lambda spec: None)
    try:
        _steady(evaluator, 2 * evaluator.capacity)  # start the worker processes
        round_trips = []
        for number in range(count):
            started = time.perf_counter()
            evaluator.submit(_task(number)).result()
            round_trips.append(time.perf_counter() - started)
        amortized = _steady(evaluator, count) / count
    finally:
        evaluator.shutdown()
    median = statistics.median(round_trips)
    print(f"(a) dispatch, one in flight: median {1000 * median:.1f} ms, "
          f"p90 {1000 * statistics.quantiles(round_trips, n=10)[-1]:.1f} ms per candidate")
    print(f"(a) dispatch, {evaluator.capacity} in flight: {1000 * amortized:.1f} ms per candidate "
          f"(goal < 20 ms: {'met' if median < 0.020 and amortized < 0.020 else 'NOT met'})")


def _search(evaluator: RayEvaluator, config: SearchConfig, directory: Path) -> tuple[float, float]:
    """Run a search; its (start, end) on the wall clock the workers' spans use."""
    with SearchStore.open(directory / f"s{time.monotonic_ns()}.db", create=True) as store:
        record = store.create_search("bench", config.to_dict(), config.seed)
        started = time.time()
        final = SearchController(store, record, config, evaluator).run()
        ended = time.time()
    assert final.complete, final.line()
    return started, ended


def part_c(sleep: float, rounds: int, directory: Path) -> None:
    say(f"(c) searches with a {sleep:g} s sleeping evaluation, {rounds} rounds per worker count")
    evaluate = sleeper(sleep)
    throughput: dict[int, float] = {}
    for workers in WORKER_COUNTS:
        evaluator = RayEvaluator(evaluate, workers=workers, dataset_loader=lambda spec: None)
        try:
            _steady(evaluator, workers)  # worker processes up before timing
            budget = rounds * workers
            config = SearchConfig(proxies=("resnet",), budget=budget, population=4, seed=workers)
            started, ended = _search(evaluator, config, directory)
        finally:
            evaluator.shutdown()
        wall = ended - started
        throughput[workers] = budget / wall
        ideal = workers / sleep
        say(f"    {workers} workers: {budget} candidates in {wall:.2f} s")
        print(f"(c) {workers} workers: {throughput[workers]:.2f} candidates/s "
              f"({throughput[workers] / throughput[1]:.2f}x one worker; "
              f"{100 * throughput[workers] / ideal:.0f}% of the sleep-bound ideal)")
    speedup = throughput[8] / throughput[1]
    verdict = "met" if speedup >= 7 else "NOT met"
    print(f"(c) 8 workers / 1 worker: {speedup:.2f}x (goal >= 7x: {verdict})")


def part_b(budget: int, directory: Path) -> None:
    from workers.datasets import load_dataset
    from workers.evaluate import evaluate

    config = SearchConfig(budget=budget)
    data = load_dataset(config.dataset)
    say(f"(b) real digits search, budget {budget}, 2 workers, local Ray instance")
    evaluator = RayEvaluator(evaluate, workers=2, dataset_loader=lambda spec: data)
    try:
        started, ended = _search(evaluator, config, directory)
        stats = evaluator.stats()
    finally:
        evaluator.shutdown()
    wall = ended - started
    utilization = stats.busy_seconds / (wall * 2)
    # Where the idle worker-seconds went: before each worker's first evaluation (worker
    # process start, imports, data fetch), after each one's last (the search's tail, when
    # nothing is left to submit), and between evaluations (dispatch and controller).
    starts = sorted(start for start, _ in stats.spans)[:2]
    ends = sorted(end for _, end in stats.spans)[-2:]
    startup = sum(start - started for start in starts)
    tail = sum(ended - end for end in ends)
    between = wall * 2 - stats.busy_seconds - startup - tail
    steady = stats.busy_seconds / (stats.busy_seconds + between)
    print(f"(b) real digits search, {stats.completed} evaluations in {wall:.1f} s: "
          f"{stats.busy_seconds:.1f} busy worker-seconds, mean evaluation "
          f"{stats.busy_seconds / max(1, stats.completed):.2f} s")
    print(f"(b) idle worker-seconds: {startup:.1f} before the first evaluations, "
          f"{between:.1f} between evaluations, {tail:.1f} in the tail")
    print(f"(b) worker utilization with 2 workers: {100 * utilization:.1f}% of the search's "
          f"wall time (goal >= 95%: {'met' if utilization >= 0.95 else 'NOT met'}); "
          f"{100 * steady:.1f}% between each worker's first and last evaluation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="abc", help="which figures: any of a, b, c")
    parser.add_argument("--budget", type=int, default=24, help="(b) candidates of the real search")
    parser.add_argument("--sleep", type=float, default=1.0, help="(c) seconds per evaluation")
    parser.add_argument("--rounds", type=int, default=8, help="(c) candidates per worker")
    parser.add_argument("--trivial", type=int, default=300, help="(a) trivial evaluations")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ray_scaling_") as temp:
        directory = Path(temp)
        if "a" in args.parts or "c" in args.parts:
            say(f"starting a local Ray cluster: {NODES} nodes x {CPUS_PER_NODE} CPUs")
            cluster = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": CPUS_PER_NODE, "include_dashboard": False},
            )
            for _ in range(NODES - 1):
                cluster.add_node(num_cpus=CPUS_PER_NODE)
            owner = RayEvaluator(trivial, address=cluster.address, dataset_loader=lambda spec: None)
            try:
                if "a" in args.parts:
                    part_a(args.trivial)
                if "c" in args.parts:
                    part_c(args.sleep, args.rounds, directory)
            finally:
                owner.shutdown()
                cluster.shutdown()
        if "b" in args.parts:
            part_b(args.budget, directory)
    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    main()
