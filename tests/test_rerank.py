"""Re-ranking: front selection, seeds, stored results, resume, failures, ranking, the CLI."""

from __future__ import annotations

import hashlib
import statistics
from pathlib import Path

import pytest

from db.rerank import RerankStore
from db.store import SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.known import get_known
from evonorm_search.rerank import (
    RerankError,
    format_ranking,
    front_candidates,
    ranking,
    rerank_seeds,
    run_rerank,
    select_entries,
)
from evonorm_search.task import EvalResult, EvalTask
from workers.executors import InlineEvaluator
from tests.cli_runner import run_evonorm

PROXIES = ("resnet", "mobilenetv2", "efficientnet")
# name -> validation accuracies stored by the "search": gn_relu and bn_swish are dominated.
SEARCH_SCORES = {
    "evonorm_s1": (0.80, 0.60, 0.70),
    "evonorm_b1": (0.60, 0.80, 0.70),
    "evonorm_s2": (0.70, 0.70, 0.90),
    "gn_relu": (0.50, 0.50, 0.50),
    "bn_swish": (0.60, 0.60, 0.69),
}


def fake_accuracy(graph_json: str, seed: int, proxy: str) -> float:
    digest = hashlib.sha256(f"{graph_json}|{seed}|{proxy}".encode()).digest()
    return 0.3 + 0.6 * digest[0] / 255


class FakeEvaluate:
    """Deterministic scores from (graph, seed, proxy); records every task it sees."""

    def __init__(self, fail_label_graph: str | None = None, stop_after: int | None = None) -> None:
        self.tasks: list[EvalTask] = []
        self.fail_graph = fail_label_graph
        self.stop_after = stop_after

    def __call__(self, task: EvalTask) -> EvalResult:
        if self.stop_after is not None and len(self.tasks) == self.stop_after:
            raise KeyboardInterrupt
        self.tasks.append(task)
        if task.graph_json == self.fail_graph:
            raise RuntimeError("worker died")
        return EvalResult(
            "done", {p: fake_accuracy(task.graph_json, task.seed, p) for p in task.proxies}
        )


def make_search(path: Path, name: str = "s") -> tuple[SearchStore, dict[str, int]]:
    store = SearchStore.open(path, create=True)
    config = SearchConfig(budget=10)
    search = store.create_search(name, config.to_dict(), seed=7)
    ids = {}
    for number, (layer, scores) in enumerate(SEARCH_SCORES.items()):
        graph = get_known(layer)
        record = store.add_candidate(
            search.id, number=number, parent_id=None, graph_json=graph.to_json(),
            structural_hash=graph.structural_hash(), fingerprint=None, seed=number,
        )
        store.mark_running(record.id)
        store.record_result(record.id, status="done", accuracies=dict(zip(PROXIES, scores)))
        ids[layer] = record.id
    rejected = store.add_candidate(
        search.id, number=len(SEARCH_SCORES), parent_id=None, graph_json=get_known("bn_relu").to_json(),
        structural_hash="x", fingerprint=None, seed=99,
    )
    store.record_result(rejected.id, status="rejected", stage="quality", reason="low accuracy")
    return store, ids


def test_front_and_entries(tmp_path: Path) -> None:
    store, ids = make_search(tmp_path / "db.sqlite")
    with store:
        candidates = store.candidates(store.get_search("s").id)
        front = front_candidates(candidates, PROXIES)
        # Front: the three non-dominated layers, best mean first (s2: 0.767, then a 0.70 tie by id).
        assert [c.id for c in front] == [ids["evonorm_s2"], ids["evonorm_s1"], ids["evonorm_b1"]]
        entries = select_entries(candidates, PROXIES, top=2, baselines=("bn_relu",))
        assert [e.label for e in entries] == [
            f"#{ids['evonorm_s2']} (evonorm_s2)", f"#{ids['evonorm_s1']} (evonorm_s1)", "bn_relu"]
        assert entries[-1].candidate_id is None
        # A baseline that is already a front candidate is not trained a second time.
        again = select_entries(candidates, PROXIES, top=2, baselines=("evonorm_s2", "bn_relu"))
        assert [e.label for e in again][2:] == ["bn_relu"]
        with pytest.raises(RerankError, match="--top"):
            select_entries(candidates, PROXIES, top=0)


def test_seeds_are_distinct_deterministic_and_shared() -> None:
    assert rerank_seeds(7, 3) == rerank_seeds(7, 3)
    assert len(set(rerank_seeds(7, 5))) == 5
    assert rerank_seeds(7, 2) != rerank_seeds(8, 2)
    with pytest.raises(RerankError, match="--seeds"):
        rerank_seeds(7, 0)


def test_run_stores_results_and_ranks_them(tmp_path: Path) -> None:
    store, ids = make_search(tmp_path / "db.sqlite")
    fake = FakeEvaluate()
    with store:
        run = run_rerank(store, "s", InlineEvaluator(fake), top=10, seeds=2, steps=123,
                         baselines=("bn_relu", "evonorm_s0"))
        # 3 front layers + 2 baselines, 2 seeds each, every proxy in one task.
        assert len(fake.tasks) == 10
        assert all(t.train.steps == 123 and t.train.quality_steps == 0 for t in fake.tasks)
        assert all(t.train.stability_steps == 0 and t.proxies == PROXIES for t in fake.tasks)
        seeds = rerank_seeds(7, 2)
        assert {t.seed for t in fake.tasks} == set(seeds)
        evaluations = RerankStore(store).evaluations(run.id)
        assert len(evaluations) == 10
        rows = ranking(evaluations, PROXIES)
        front_labels = {f"#{ids[n]} ({n})" for n in ("evonorm_s1", "evonorm_b1", "evonorm_s2")}
        assert {r.label for r in rows} == front_labels | {"bn_relu", "evonorm_s0"}
        for row in rows:
            graph = next(e.graph_json for e in evaluations if e.label == row.label)
            for proxy in PROXIES:
                values = [fake_accuracy(graph, s, proxy) for s in seeds]
                assert row.mean[proxy] == pytest.approx(statistics.fmean(values))
                assert row.std[proxy] == pytest.approx(statistics.stdev(values))
        overall = [r.overall for r in rows]
        assert overall == sorted(overall, reverse=True)
        table = format_ranking(rows, PROXIES)
        assert "bn_relu" in table and "±" in table and len(table.splitlines()) == 6

        # Same settings again: nothing is redone; other settings start a new run.
        again = FakeEvaluate()
        assert run_rerank(store, "s", InlineEvaluator(again), top=10, seeds=2, steps=123,
                          baselines=("bn_relu", "evonorm_s0")).id == run.id
        assert again.tasks == []
        other = run_rerank(store, "s", InlineEvaluator(again), top=1, seeds=1, steps=123, baselines=())
        assert other.id != run.id and len(again.tasks) == 1
        assert RerankStore(store).latest_run(store.get_search("s").id).id == other.id


def test_interrupted_run_resumes_without_redoing(tmp_path: Path) -> None:
    store, _ = make_search(tmp_path / "db.sqlite")
    with store:
        first = FakeEvaluate(stop_after=4)
        with pytest.raises(KeyboardInterrupt):
            run_rerank(store, "s", InlineEvaluator(first), seeds=2, steps=50)
        second = FakeEvaluate()
        run = run_rerank(store, "s", InlineEvaluator(second), seeds=2, steps=50)
        # 3 front + 3 default baselines, 2 seeds: 12 in all, 4 done before the interrupt.
        assert len(second.tasks) == 8
        done_first = {(t.graph_json, t.seed) for t in first.tasks}
        assert not done_first & {(t.graph_json, t.seed) for t in second.tasks}
        assert len(RerankStore(store).evaluations(run.id)) == 12


def test_infrastructure_failure_is_retried_then_stored_as_failed(tmp_path: Path) -> None:
    store, _ = make_search(tmp_path / "db.sqlite")
    failing = get_known("evonorm_s0").to_json()
    fake = FakeEvaluate(fail_label_graph=failing)
    with store:
        run = run_rerank(store, "s", InlineEvaluator(fake), top=1, seeds=1, steps=5,
                         baselines=("evonorm_s0",))
        assert sum(t.graph_json == failing for t in fake.tasks) == 3  # first try + 2 retries
        evaluations = RerankStore(store).evaluations(run.id)
        failed = [e for e in evaluations if e.label == "evonorm_s0"]
        assert failed[0].status == "failed" and "worker died" in (failed[0].reason or "")
        rows = ranking(evaluations, PROXIES)
        assert rows[-1].label == "evonorm_s0" and rows[-1].seeds_failed == 1 and not rows[-1].mean


def test_search_without_finished_candidates_is_a_clear_error(tmp_path: Path) -> None:
    with SearchStore.open(tmp_path / "db.sqlite", create=True) as store:
        store.create_search("empty", SearchConfig().to_dict(), seed=0)
        with pytest.raises(RerankError, match="no finished candidate"):
            run_rerank(store, "empty", InlineEvaluator(FakeEvaluate()))


def test_cli_user_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    store, _ = make_search(path)
    store.close()
    for args, expected in [
        (["rerank", "nope", "--db", str(path)], "nope"),
        (["rerank", "s", "--db", str(path), "--seeds", "0"], "--seeds"),
        (["rerank", "s", "--db", str(path), "--steps", "0"], "--steps"),
        (["rerank", "s", "--db", str(path), "--top", "0"], "--top"),
        (["rerank", "s", "--db", str(path), "--baselines", "bogus"], "bogus"),
        (["rerank", "s", "--db", str(tmp_path / "missing.db")], "no evonorm database"),
    ]:
        code, out, err = run_evonorm(*args)
        output = out + err
        assert code == 2, (args, output)
        assert output.startswith("error: ") and expected in output and "Traceback" not in output
    code, out, _ = run_evonorm("rerank", "--help")
    assert code == 0 and "TEST" in out


def test_evaluate_on_test_scores_the_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import torch

    import workers.evaluate
    from evonorm_search.rerank import evaluate_on_test
    from evonorm_search.task import DatasetSpec, TrainSettings
    from workers.datasets import load_dataset

    spec = DatasetSpec(name="digits")
    data = load_dataset(spec)
    assert len(data.val_y) != len(data.test_y)
    seen = []

    def spy(task: EvalTask, prepared: object = None, progress: object = None) -> EvalResult:
        seen.append(prepared)
        return EvalResult("done", {"resnet": 0.5})

    monkeypatch.setattr(workers.evaluate, "evaluate", spy)
    task = EvalTask(get_known("bn_relu").to_json(), ("resnet",), spec, TrainSettings(steps=1))
    evaluate_on_test(task, data)
    evaluate_on_test(task)  # loads the data set itself
    for prepared in seen:
        assert isinstance(prepared, type(data))
        assert torch.equal(prepared.val_x, data.test_x) and torch.equal(prepared.val_y, data.test_y)
        assert torch.equal(prepared.train_x, data.train_x)
    # The real evaluation, tiny: it runs and reports an accuracy on the test split's size.
    monkeypatch.undo()
    train = TrainSettings(steps=3, width=4, quality_steps=0, stability_steps=0, batch_size=16, threads=1)
    result = evaluate_on_test(dataclasses.replace(task, train=train), data)
    assert result.status == "done", result.reason
    assert round(result.accuracies["resnet"] * len(data.test_y)) == pytest.approx(
        result.accuracies["resnet"] * len(data.test_y), abs=1e-6)


def test_known_layer_of_reads_baseline_and_candidate_labels() -> None:
    from evonorm_search.rerank import known_layer_of

    assert known_layer_of("bn_relu") == "bn_relu"
    assert known_layer_of("#5 (evonorm_b1)") == "evonorm_b1"
    assert known_layer_of("#7") is None
    assert known_layer_of("#8 (not_a_layer)") is None
