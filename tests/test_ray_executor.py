"""RayEvaluator on a real local two-node Ray cluster: results, data shipping, capacity,
and the faults of issue 5 (a worker killed once, a worker killed every time, a node that
dies mid-evaluation, an evaluation function that raises, shutdown with work in flight).

One cluster serves the whole module (Ray starts take seconds). The evaluation functions
are fakes that sleep or kill their own process; they leave files in a temporary
directory to report how often and where they ran.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from evonorm_search.errors import EvonormError, ExecutorLost
from evonorm_search.task import DatasetSpec, EvalResult, EvalTask
from workers.ray_executor import ClusterLost, EvaluationLost, RayEvaluator
from tests.ray_cluster import two_node_cluster

FakeEvaluate = Callable[[EvalTask, Any], EvalResult]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with two_node_cluster() as cluster:
        # The first evaluator joins the cluster by address and owns the connection; the
        # others in this module reuse it.
        owner = RayEvaluator(_scored, address=cluster.address, dataset_loader=_load)
        try:
            yield cluster
        finally:
            owner.shutdown()
            assert not ray.is_initialized()


def _load(spec: DatasetSpec) -> dict[str, Any]:
    return {"name": spec.name, "scale": spec.validation_fraction}


def _scored(task: EvalTask, data: dict[str, Any]) -> EvalResult:
    """Accuracy derived from the seed and the shipped data, so both are checked."""
    time.sleep(0.2)
    return EvalResult(status="done", accuracies={"resnet": task.seed * data["scale"]})


def _task(number: int, **dataset: Any) -> EvalTask:
    return EvalTask(
        graph_json="{}", proxies=("resnet",), dataset=DatasetSpec(**dataset),
        seed=number, candidate_id=number,
    )


RELEASE = "release"


def _logging(log_dir: Path, kill_attempts: int, seconds: float = 0.0) -> FakeEvaluate:
    """An evaluation that records each attempt (pid, node) and kills its own worker
    process on its first `kill_attempts` attempts of a candidate; it then holds for up to
    `seconds`, or until the test creates the file `RELEASE` in `log_dir` (so that a slow,
    loaded machine cannot finish an evaluation before the test acts on it)."""

    def evaluate(task: EvalTask, data: Any) -> EvalResult:
        node = ray.get_runtime_context().get_node_id()
        attempt = len(list(log_dir.glob(f"{task.candidate_id}-*")))
        (log_dir / f"{task.candidate_id}-{attempt}-{os.getpid()}-{node}").touch()
        if attempt < kill_attempts:
            os._exit(1)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not (log_dir / RELEASE).exists():
            time.sleep(0.05)
        return EvalResult(status="done", accuracies={"resnet": 0.5})

    return evaluate


def _attempts(log_dir: Path, candidate: int) -> list[list[str]]:
    return sorted(path.name.split("-")[1:] for path in log_dir.glob(f"{candidate}-*"))


def test_results_come_back_from_both_nodes_and_data_is_loaded_once(cluster: Cluster) -> None:
    loaded: list[DatasetSpec] = []

    def load(spec: DatasetSpec) -> dict[str, Any]:
        loaded.append(spec)
        return _load(spec)

    evaluator = RayEvaluator(_scored, dataset_loader=load)
    try:
        tasks = [_task(n, validation_fraction=0.1) for n in range(6)]
        tasks.append(_task(6, validation_fraction=0.5))
        futures = [evaluator.submit(task) for task in tasks]
        results = [future.result(timeout=60) for future in futures]
        stats = evaluator.stats()
    finally:
        evaluator.shutdown()
    assert [r.accuracies["resnet"] for r in results] == pytest.approx(
        [n * 0.1 for n in range(6)] + [3.0]
    )
    assert all(r.status == "done" for r in results)
    assert [spec.validation_fraction for spec in loaded] == [0.1, 0.5]
    assert stats.completed == 7 and stats.lost == 0
    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    assert set(stats.tasks_per_node) == alive and len(alive) == 2
    assert stats.busy_seconds >= 7 * 0.2


def test_capacity_follows_the_cluster_unless_workers_is_set(cluster: Cluster) -> None:
    assert RayEvaluator(_scored, dataset_loader=_load).capacity == 2
    assert RayEvaluator(_scored, cpus_per_eval=0.5, dataset_loader=_load).capacity == 4
    assert RayEvaluator(_scored, cpus_per_eval=0.75, dataset_loader=_load).capacity == 2
    assert RayEvaluator(_scored, workers=5, dataset_loader=_load).capacity == 5


def test_resources_no_node_has_are_refused(cluster: Cluster) -> None:
    with pytest.raises(EvonormError, match="no Ray node can run .* 1 GPU"):
        RayEvaluator(_scored, gpus_per_eval=1.0, dataset_loader=_load)
    with pytest.raises(EvonormError, match="needing 2 CPU"):
        RayEvaluator(_scored, cpus_per_eval=2.0, dataset_loader=_load)
    assert ray.is_initialized()  # a refused evaluator leaves a connection it did not make


def test_worker_killed_on_first_attempt_is_retried(cluster: Cluster, tmp_path: Path) -> None:
    evaluator = RayEvaluator(_logging(tmp_path, kill_attempts=1), dataset_loader=_load)
    try:
        futures = [evaluator.submit(_task(n)) for n in range(3)]
        results = [future.result(timeout=60) for future in futures]
    finally:
        evaluator.shutdown()
    assert [r.status for r in results] == ["done"] * 3
    for candidate in range(3):
        attempts = _attempts(tmp_path, candidate)
        assert [a[0] for a in attempts] == ["0", "1"]
        assert attempts[0][1] != attempts[1][1], "the retry ran in a fresh worker process"


def test_candidate_killing_every_worker_fails_after_the_cap(
    cluster: Cluster, tmp_path: Path
) -> None:
    killer = RayEvaluator(_logging(tmp_path, kill_attempts=99), max_retries=1, dataset_loader=_load)
    healthy = RayEvaluator(_scored, dataset_loader=_load)
    try:
        doomed = killer.submit(_task(7))
        others = [healthy.submit(_task(n)) for n in range(3)]
        with pytest.raises(EvaluationLost, match="^its worker process or node died on all 2 attempts"):
            doomed.result(timeout=60)
        assert [f.result(timeout=60).status for f in others] == ["done"] * 3
    finally:
        killer.shutdown()
        healthy.shutdown()
    assert len(_attempts(tmp_path, 7)) == 2
    assert killer.stats().lost == 1


def test_an_evaluation_that_raises_is_not_retried(cluster: Cluster) -> None:
    evaluator = RayEvaluator(_raises, dataset_loader=_load)
    try:
        with pytest.raises(EvaluationLost, match="^the evaluation function raised"):
            evaluator.submit(_task(3)).result(timeout=60)
    finally:
        evaluator.shutdown()


def _raises(task: EvalTask, data: Any) -> EvalResult:
    raise ValueError(f"bug while evaluating {task.candidate_id}")


def test_shutdown_fails_the_futures_still_in_flight(cluster: Cluster, tmp_path: Path) -> None:
    evaluator = RayEvaluator(_logging(tmp_path, kill_attempts=0, seconds=30), dataset_loader=_load)
    future = evaluator.submit(_task(1))
    _wait_for(lambda: _attempts(tmp_path, 1))
    evaluator.shutdown()
    with pytest.raises(EvaluationLost, match="shut down"):
        future.result(timeout=5)
    with pytest.raises(RuntimeError, match="after shutdown"):
        evaluator.submit(_task(2))


def test_evaluation_on_a_dying_node_is_retried_on_another(cluster: Cluster, tmp_path: Path) -> None:
    doomed = cluster.add_node(num_cpus=1)
    evaluator = RayEvaluator(_logging(tmp_path, kill_attempts=0, seconds=120), dataset_loader=_load)
    try:
        # Three one-CPU nodes and three evaluations: one of them must start on `doomed`.
        futures = [evaluator.submit(_task(n)) for n in range(3)]
        _wait_for(lambda: all(_attempts(tmp_path, n) for n in range(3)))
        [doomed_pid] = [int(pid) for n in range(3) for _, pid, node in _attempts(tmp_path, n)
                        if node == doomed.node_id]
        cluster.remove_node(doomed, allow_graceful=False)
        # Release the evaluations only once the doomed worker is gone, or it could still
        # finish and report before its node's death is noticed.
        _wait_for(lambda: not _process_alive(doomed_pid))
        (tmp_path / RELEASE).touch()
        results = [future.result(timeout=90) for future in futures]
    finally:
        evaluator.shutdown()
    assert [r.status for r in results] == ["done"] * 3
    runs = [_attempts(tmp_path, n) for n in range(3)]
    retried = [attempts for attempts in runs if len(attempts) == 2]
    assert len(retried) == 1, runs
    assert retried[0][0][2] == doomed.node_id and retried[0][1][2] != doomed.node_id


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the evaluations to start")
        time.sleep(0.05)


def test_a_lost_cluster_fails_what_is_in_flight_with_cluster_lost(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The watchdog: once the GCS refuses connections (the head is gone), the futures in
    flight, `submit` and `capacity` raise ClusterLost (an ExecutorLost: the caller stops
    and records nothing), within a few probe intervals. The head is simulated by pointing
    the watchdog at a closed port; test_lost_node.py kills a real one."""
    evaluator = RayEvaluator(_logging(tmp_path, kill_attempts=0, seconds=60),
                             dataset_loader=_load, max_retries=0)
    try:
        future = evaluator.submit(_task(1))
        _wait_for(lambda: _attempts(tmp_path, 1))
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        evaluator._gcs = f"127.0.0.1:{closed}"
        with pytest.raises(ClusterLost, match=f"its GCS at 127.0.0.1:{closed} refuses connections"):
            future.result(timeout=30)
        assert isinstance(future.exception(), ExecutorLost)
        with pytest.raises(ClusterLost):
            evaluator.submit(_task(2))
        with pytest.raises(ClusterLost):
            evaluator.capacity  # noqa: B018 - the property raises
    finally:
        (tmp_path / RELEASE).touch()
        evaluator.shutdown()
    assert ray.is_initialized()  # the module's connection is not this evaluator's to close


def test_rays_notices_go_to_stderr(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    """Ray prints `(raylet) ...` notices from a thread of its own; the commands print their
    results on stdout, so the notices must go to stderr."""
    ray._private.worker.print_to_stdstream(
        {"lines": ["a worker died (test notice)"], "pid": "raylet", "is_err": False},
        ignore_prefix=False)
    captured = capsys.readouterr()
    assert "a worker died (test notice)" in captured.err and captured.out == ""
