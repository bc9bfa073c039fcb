"""Whole searches on a real local two-node Ray cluster (issue 5): the budget is completed
using both nodes, a worker killed mid-evaluation is retried, a candidate that kills every
worker ends failed while the search completes, and a controller SIGKILLed with
evaluations in flight resumes without losing or duplicating a candidate.

One cluster serves the module. In-process searches use a fake evaluation (fast, and it
can kill its own worker); the SIGKILL test runs the real `evonorm search` command with
the real evaluation on tiny digits settings, joining the cluster with `--address auto`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from db.store import CandidateRecord, SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.controller import SearchController, counts_toward_budget
from evonorm_search.graph import LayerGraph
from evonorm_search.task import EvalResult, EvalTask
from workers.ray_executor import RayEvaluator
from tests.ray_cluster import two_node_cluster

PROXIES = ("resnet", "mobilenetv2")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_node_cluster() as cluster:
        yield cluster


@pytest.fixture
def evaluator_factory(cluster: Cluster) -> Iterator[Callable[..., RayEvaluator]]:
    made: list[RayEvaluator] = []

    def make(evaluate_fn: Callable[[EvalTask, Any], EvalResult], **options: Any) -> RayEvaluator:
        evaluator = RayEvaluator(
            evaluate_fn, address=cluster.address, dataset_loader=lambda spec: None, **options
        )
        made.append(evaluator)
        return evaluator

    yield make
    for evaluator in made:
        evaluator.shutdown()
    assert not ray.is_initialized()


def _scores(task: EvalTask) -> dict[str, float]:
    graph = LayerGraph.from_json(task.graph_json)
    digest = hashlib.sha256(f"{graph.structural_hash()}:{task.seed}".encode()).digest()
    return {proxy: digest[i] / 255 for i, proxy in enumerate(task.proxies)}


def _fake(log_dir: Path, kill: str = "never", seconds: float = 0.1) -> Callable[..., EvalResult]:
    """A fast fake evaluation that logs each attempt. `kill`: "never"; "first" (kill the
    worker on a candidate's first attempt); "one" (the first candidate evaluated kills
    its worker on every attempt, the others never)."""

    def evaluate(task: EvalTask, data: Any) -> EvalResult:
        attempt = len(list(log_dir.glob(f"{task.candidate_id}-*")))
        (log_dir / f"{task.candidate_id}-{attempt}").touch()
        if kill == "first" and attempt == 0:
            os._exit(1)
        if kill == "one":
            try:
                os.close(os.open(log_dir / "doomed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                (log_dir / f"doomed-{task.candidate_id}").touch()
            except FileExistsError:
                pass
            if (log_dir / f"doomed-{task.candidate_id}").exists():
                os._exit(1)
        time.sleep(seconds)
        return EvalResult("done", accuracies=_scores(task))

    return evaluate


def _run(
    path: Path, config: SearchConfig, evaluator: RayEvaluator
) -> tuple[Any, list[CandidateRecord], str]:
    with SearchStore.open(path, create=True) as store:
        record = store.create_search("s", config.to_dict(), config.seed)
        final = SearchController(store, record, config, evaluator).run()
        return final, store.candidates(record.id), store.integrity_check()


def _evaluated(candidates: list[CandidateRecord]) -> list[CandidateRecord]:
    return [c for c in candidates if counts_toward_budget(c)]


def _config(**changes: Any) -> SearchConfig:
    # max_attempts=1: the controller does not resubmit, so only Ray's own retries act;
    # one seed per candidate, so that each stored accuracy is one task's score.
    config = SearchConfig(proxies=PROXIES, budget=8, population=4, seed=3, max_attempts=1,
                          reevaluate=1)
    return config.with_overrides(changes)


def test_search_completes_its_budget_on_both_nodes(
    evaluator_factory: Callable[..., RayEvaluator], tmp_path: Path
) -> None:
    evaluator = evaluator_factory(_fake(tmp_path, seconds=0.3))
    assert evaluator.capacity == 2
    final, candidates, integrity = _run(tmp_path / "s.db", _config(), evaluator)
    assert final.complete and integrity == "ok"
    evaluated = _evaluated(candidates)
    assert len(evaluated) == 8 and all(c.status == "done" for c in evaluated)
    assert all(c.accuracies == _scores(_task_of(c)) for c in evaluated)
    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert set(evaluator.stats().tasks_per_node) == alive and len(alive) == 2


def _task_of(candidate: CandidateRecord) -> EvalTask:
    return EvalTask(graph_json=candidate.graph_json, proxies=PROXIES, seed=candidate.seed)


def test_workers_killed_mid_evaluation_are_retried(
    evaluator_factory: Callable[..., RayEvaluator], tmp_path: Path
) -> None:
    evaluator = evaluator_factory(_fake(tmp_path, kill="first"))
    final, candidates, integrity = _run(tmp_path / "s.db", _config(budget=2), evaluator)
    assert final.complete and integrity == "ok"
    evaluated = _evaluated(candidates)
    assert [c.status for c in evaluated] == ["done"] * 2
    for candidate in evaluated:
        assert sorted(p.name for p in tmp_path.glob(f"{candidate.id}-*")) == [
            f"{candidate.id}-0", f"{candidate.id}-1"
        ]


def test_a_candidate_killing_every_worker_fails_and_the_search_completes(
    evaluator_factory: Callable[..., RayEvaluator], tmp_path: Path
) -> None:
    evaluator = evaluator_factory(_fake(tmp_path, kill="one"), max_retries=1)
    final, candidates, integrity = _run(tmp_path / "s.db", _config(budget=4), evaluator)
    assert final.complete and integrity == "ok"
    evaluated = _evaluated(candidates)
    failed = [c for c in evaluated if c.status == "failed"]
    assert len(evaluated) == 4 and len(failed) == 1
    assert [c for c in evaluated if c.status != "failed"] == [
        c for c in evaluated if c.status == "done"
    ]
    (doomed,) = [p.name.split("-")[1] for p in tmp_path.glob("doomed-*")]
    assert failed[0].id == int(doomed)
    assert failed[0].stage == "infrastructure"
    assert "died on all 2 attempts" in (failed[0].reason or "")
    assert len(list(tmp_path.glob(f"{doomed}-*"))) == 2


def _search_command(db: Path, budget: int) -> list[str]:
    return [
        str(Path(sys.executable).with_name("evonorm")), "search", "--name", "k", "--db", str(db),
        "--executor", "ray", "--address", "auto", "--budget", str(budget), "--population", "3",
        "--proxies", "resnet", "--steps", "20", "--quality-steps", "0", "--stability-steps", "0",
        "--width", "8", "--max-train-examples", "300", "--seed", "5",
    ]


def _rows(db: Path) -> list[tuple[int, str]]:
    if not db.exists():
        return []
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute("SELECT number, status FROM candidates").fetchall()
    except sqlite3.OperationalError:  # the schema is not created yet
        return []
    finally:
        connection.close()


def test_controller_sigkilled_with_evaluations_in_flight_resumes(
    cluster: Cluster, tmp_path: Path
) -> None:
    db = tmp_path / "k.db"
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    first = subprocess.Popen(
        _search_command(db, budget=4), env=env, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        # Kill once a result is stored and evaluations are running on the cluster.
        while time.monotonic() < deadline and first.poll() is None:
            statuses = [status for _, status in _rows(db)]
            if "done" in statuses and statuses.count("running") >= 1:
                break
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        before = _rows(db)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert "running" in [status for _, status in before]

    resumed = subprocess.run(
        _search_command(db, budget=4), env=env, cwd=tmp_path, capture_output=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert b"resuming search 'k'" in resumed.stderr
    with SearchStore.open(db) as store:
        search = store.get_search("k")
        candidates = store.candidates(search.id)
        integrity = store.integrity_check()
    assert integrity == "ok"
    assert [c.number for c in candidates] == list(range(len(candidates)))
    assert len({c.structural_hash for c in candidates}) == len(candidates)
    assert not [c for c in candidates if c.status in ("pending", "running")]
    assert len(_evaluated(candidates)) == 4
    # What the killed controller had finished is kept as it was, not redone; what it
    # had in flight was submitted again.
    by_number = {c.number: c for c in candidates}
    for number, status in before:
        if status == "running":
            assert by_number[number].attempts == 2
        else:
            assert by_number[number].status == status and by_number[number].attempts <= 1


def _held(log_dir: Path) -> Callable[..., EvalResult]:
    """A fake evaluation that records (candidate id, attempt, node) and then holds until
    the test creates `log_dir/release` (a loaded machine cannot finish it too early)."""

    def evaluate(task: EvalTask, data: Any) -> EvalResult:
        node = ray.get_runtime_context().get_node_id()
        attempt = len(list(log_dir.glob(f"{task.candidate_id}-*")))
        (log_dir / f"{task.candidate_id}-{attempt}-{os.getpid()}-{node}").touch()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (log_dir / "release").exists():
            time.sleep(0.05)
        return EvalResult("done", accuracies=_scores(task))

    return evaluate


def test_a_lost_node_costs_an_attempt_that_the_controller_redoes_and_status_shows(
    evaluator_factory: Callable[..., RayEvaluator], cluster: Cluster, tmp_path: Path
) -> None:
    """As `evonorm search` runs it (Ray retries off, the controller resubmits): a node lost
    mid-evaluation loses no candidate; the one it ran is submitted again (attempts 2), which
    `SearchStore.summary` (`evonorm status`) reports. Runs last: it takes a node away."""
    doomed = cluster.add_node(num_cpus=1)
    evaluator = evaluator_factory(_held(tmp_path), max_retries=0, workers=3)
    config = _config(budget=3, max_attempts=3)

    def kill_the_node_once_it_evaluates() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            on_doomed = [p for p in tmp_path.glob("*-*-*-*") if p.name.endswith(doomed.node_id)]
            if on_doomed:
                pid = int(on_doomed[0].name.split("-")[2])
                cluster.remove_node(doomed, allow_graceful=False)
                while time.monotonic() < deadline and _alive(pid):
                    time.sleep(0.05)
                break
            time.sleep(0.05)
        (tmp_path / "release").touch()

    killer = threading.Thread(target=kill_the_node_once_it_evaluates)
    killer.start()
    try:
        with SearchStore.open(tmp_path / "s.db", create=True) as store:
            record = store.create_search("s", config.to_dict(), config.seed)
            final = SearchController(store, record, config, evaluator).run()
            candidates = store.candidates(record.id)
            summary = store.summary(record.id)
    finally:
        killer.join()
    assert final.complete
    evaluated = _evaluated(candidates)
    assert [c.status for c in evaluated] == ["done"] * 3
    assert [c.number for c in candidates] == list(range(len(candidates)))
    retried = [c for c in evaluated if c.attempts == 2]
    assert len(retried) == 1 and summary.retried == (retried[0].number,)
    attempts = sorted(p.name.split("-")[1:] for p in tmp_path.glob(f"{retried[0].id}-*"))
    assert attempts[0][2] == doomed.node_id and attempts[1][2] != doomed.node_id


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
