"""Noise-aware, multi-fidelity search (issue 11): the hurdle, re-evaluation with further
seeds, means and standard errors from stored trials, and resume equivalence with both."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from db.store import SearchStore
from evonorm_search.config import ConfigError, SearchConfig
from evonorm_search.search.controller import SearchController, derive_seed
from evonorm_search.search.fidelity import front_members, hurdle_for, to_reevaluate
from evonorm_search.graph import LayerGraph
from evonorm_search.task import EvalResult, EvalTask
from workers.executors import InlineEvaluator

PROXIES = ("resnet", "mobilenetv2")


def fake_evaluate(task: EvalTask) -> EvalResult:
    """Early and final scores from the layer's structure and the seed; the hurdle of the
    task is honoured as the real evaluation does (mean early accuracy over the proxies)."""
    graph = LayerGraph.from_json(task.graph_json)
    digest = hashlib.sha256(f"{graph.structural_hash()}:{task.seed}".encode()).digest()
    if digest[0] % 5 == 0:
        return EvalResult("rejected", stage="quality", reason="fake: below threshold")
    early = {p: digest[1 + i] / 255 for i, p in enumerate(task.proxies)}
    if task.hurdle is not None and statistics.mean(early.values()) < task.hurdle:
        return EvalResult("stopped", stage="hurdle", reason="fake: below the hurdle",
                          early_accuracies=early)
    final = {p: (early[p] + digest[5 + i] / 255) / 2 for i, p in enumerate(task.proxies)}
    return EvalResult("done", accuracies=final, early_accuracies=early)


def make_config(**changes: object) -> SearchConfig:
    return SearchConfig(proxies=PROXIES, budget=30, population=6, seed=7, hurdle=0.5,
                        reevaluate=3).with_overrides(changes)


def run_search(path: Path, config: SearchConfig, evaluator: object) -> tuple:
    with SearchStore.open(path, create=True) as store:
        record = store.find_search("s") or store.create_search("s", config.to_dict(), config.seed)
        final = SearchController(store, record, config, evaluator).run()  # type: ignore[arg-type]
        candidates = store.candidates(record.id)
        trials = {c.id: store.trials(c.id) for c in candidates}
        return final, candidates, trials, store.integrity_check()


class Recorder:
    """The evaluation order (candidate id, seed): a resumed search must train the same
    trials in the same order as an uninterrupted one."""

    def __init__(self, die_at: int | None = None) -> None:
        self.calls: list[tuple[int | None, int]] = []
        self.die_at = die_at

    def __call__(self, task: EvalTask) -> EvalResult:
        if len(self.calls) + 1 == self.die_at:
            self.die_at = None
            raise KeyboardInterrupt
        self.calls.append((task.candidate_id, task.seed))
        return fake_evaluate(task)


def essentials(candidates: list, trials: dict) -> list[tuple]:
    return [
        (c.number, c.graph_json, c.status, c.stage, c.seed, c.parent_id, c.hurdle,
         sorted(c.accuracies.items()), sorted(c.standard_errors.items()), c.seed_count,
         [(t.trial, t.seed, t.status, sorted(t.accuracies.items())) for t in trials[c.id]])
        for c in candidates
    ]


@dataclass
class _Member:
    id: int
    number: int
    accuracies: dict[str, float]
    early_accuracies: dict[str, float] = field(default_factory=dict)


# ---- the rules -------------------------------------------------------------------------------


def test_hurdle_is_the_lower_quantile_of_full_populations_only() -> None:
    members = [_Member(i, i, {}, {"a": v, "b": v}) for i, v in enumerate([0.4, 0.1, 0.3, 0.2])]
    assert hurdle_for(members, 0.5, ("a", "b"), size=4) == 0.2
    assert hurdle_for(members, 0.75, ("a", "b"), size=4) == 0.3
    assert hurdle_for(members, 0.01, ("a", "b"), size=4) == 0.1
    assert hurdle_for(members, 0.5, ("a", "b"), size=5) is None  # not full: everyone trains
    assert hurdle_for(members, None, ("a", "b"), size=4) is None
    assert hurdle_for(members, 0.5, ("a", "c"), size=4) is None  # no member has proxy c


def test_reevaluation_asks_front_members_one_seed_at_a_time() -> None:
    members = [_Member(1, 0, {"a": 0.9, "b": 0.1}), _Member(2, 1, {"a": 0.1, "b": 0.9}),
               _Member(3, 2, {"a": 0.5, "b": 0.05}), _Member(4, 3, {"a": 0.2, "b": 0.2})]
    assert [m.id for m in front_members(members, ("a", "b"))] == [1, 2, 4]
    assert [m.id for m in to_reevaluate(members, ("a", "b"), 3, {1: 3, 2: 2}, {2})] == [4]
    assert to_reevaluate(members, ("a", "b"), 1, {}, set()) == []


def test_settings_are_checked() -> None:
    for bad in (0.0, 1.0, -0.5, 2.0, float("nan")):
        with pytest.raises(ConfigError, match="hurdle must be a quantile"):
            make_config(hurdle=bad)
    with pytest.raises(ConfigError, match="reevaluate must be"):
        make_config(reevaluate=0)
    with pytest.raises(ConfigError, match="quality-steps"):
        make_config(**{"train.quality_steps": 0})
    old = SearchConfig.from_dict({k: v for k, v in make_config().to_dict().items()
                                  if k not in ("hurdle", "reevaluate")})
    assert old.hurdle is None and old.reevaluate == 1  # a search stored before issue 11


# ---- the store -------------------------------------------------------------------------------


def test_mean_and_standard_error_come_from_every_stored_trial(tmp_path: Path) -> None:
    with SearchStore.open(tmp_path / "s.db", create=True) as store:
        search = store.create_search("s", {}, 0)
        record = store.add_candidate(search.id, number=0, parent_id=None, graph_json="{}",
                                     structural_hash="h", fingerprint=None, seed=1)
        first = store.record_result(record.id, status="done", accuracies={"a": 0.5, "b": 0.4},
                                    early_accuracies={"a": 0.3, "b": 0.2})
        assert first.seed_count == 1 and first.standard_errors == {}
        assert first.early_accuracies == {"a": 0.3, "b": 0.2}
        values = {"a": [0.5, 0.7, 0.0], "b": [0.4, 0.2, 0.0]}
        trial = store.add_trial(record.id, trial=1, seed=11)
        store.record_trial(trial.id, status="done", accuracies={"a": 0.7, "b": 0.2})
        failed = store.add_trial(record.id, trial=2, seed=12)
        store.mark_trial_failed(failed.id, "infrastructure", "lost")  # says nothing: left out
        rejected = store.add_trial(record.id, trial=3, seed=13)
        final = store.record_trial(rejected.id, status="rejected", stage="stability")  # scores 0
        for proxy, samples in values.items():
            assert final.accuracies[proxy] == pytest.approx(statistics.mean(samples))
            assert final.standard_errors[proxy] == pytest.approx(
                statistics.stdev(samples) / math.sqrt(len(samples)))
        assert final.seed_count == 3
        assert [t.status for t in store.trials(record.id)] == ["done", "done", "failed", "rejected"]
        assert store.trial_outcomes(search.id) == {"done": 1, "failed": 1, "rejected": 1}
        with pytest.raises(Exception, match="already"):
            store.record_trial(trial.id, status="done", accuracies={"a": 1.0})


def test_v3_database_migrates_with_a_backup(tmp_path: Path) -> None:
    from tests.test_store import make_v1_database, schema_of

    old = tmp_path / "old.db"
    make_v1_database(old)
    with SearchStore.open(old) as store:  # v1 -> v4 (v3 is v1 plus two steps)
        (candidate,) = store.candidates(store.get_search("old").id)
        assert candidate.accuracies == {"resnet": 0.75} and candidate.seed_count == 1
        (trial,) = store.trials(candidate.id)
        assert (trial.trial, trial.seed, trial.status, trial.accuracies) == (0, 11, "done",
                                                                            {"resnet": 0.75})
        assert store.integrity_check() == "ok"
    fresh = tmp_path / "fresh.db"
    SearchStore.open(fresh, create=True).close()
    assert schema_of(old) == schema_of(fresh)
    assert (tmp_path / "old.db.v1.bak").exists()
    connection = sqlite3.connect(old)
    # The rebuilt table takes the new status and still cascades into its children.
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("UPDATE candidates SET status = 'stopped' WHERE id = 1")
    connection.execute("DELETE FROM candidates WHERE id = 1")
    assert connection.execute("SELECT count(*) FROM trials").fetchone() == (0,)
    assert connection.execute("SELECT count(*) FROM evaluations").fetchone() == (0,)
    connection.close()


# ---- the controller --------------------------------------------------------------------------


def test_hurdle_stops_weak_candidates_and_front_members_get_more_seeds(tmp_path: Path) -> None:
    config = make_config()
    final, candidates, trials, integrity = run_search(tmp_path / "s.db", config,
                                                      InlineEvaluator(fake_evaluate))
    assert integrity == "ok" and final.complete
    stopped = [c for c in candidates if c.status == "stopped"]
    done = [c for c in candidates if c.status == "done"]
    assert stopped and all(c.stage == "hurdle" and c.early_accuracies for c in stopped)
    assert all(statistics.mean(c.early_accuracies.values()) < c.hurdle for c in stopped)
    assert all(c.hurdle is None for c in candidates[: config.population])
    # The budget counts stopped candidates (they were submitted), not re-evaluations.
    assert final.submitted == config.budget
    assert final.counts["stopped"] == len(stopped)
    # Each candidate's hurdle is the quantile of the population it was proposed from.
    for c in candidates[config.population:]:
        assert c.hurdle is None or 0.0 < c.hurdle < 1.0
    # Every member of the final population's front has all its seeds, with their own seeds.
    with SearchStore.open(tmp_path / "s.db", readonly=True) as store:
        population = store.population(candidates[0].search_id, config.population)
    for member in front_members(population, PROXIES):
        assert member.seed_count == config.reevaluate
        assert [t.seed for t in trials[member.id]] == [
            member.seed, *(derive_seed(config.seed, member.number, f"trial:{k}")
                           for k in range(1, config.reevaluate))]
    assert any(len(trials[c.id]) > 1 for c in done)
    assert final.reevaluations == sum(max(0, len(trials[c.id]) - 1) for c in candidates)


def test_a_front_member_whose_new_seeds_are_worse_leaves_the_front(tmp_path: Path) -> None:
    # Layer "lucky" scores best on its own seed and worst on every other seed.
    lucky: set[str] = set()

    def evaluate(task: EvalTask) -> EvalResult:
        result = fake_evaluate(task)
        if result.status != "done":
            return result
        if not lucky:
            lucky.add(task.graph_json)
        if task.graph_json in lucky:
            first = task.seed == derive_seed(7, 0)
            value = 0.99 if first else 0.01
            return EvalResult("done", accuracies=dict.fromkeys(task.proxies, value),
                              early_accuracies=result.early_accuracies)
        return result

    config = make_config(hurdle=None, budget=12, population=20)  # nobody ages out
    _, candidates, trials, _ = run_search(tmp_path / "s.db", config, InlineEvaluator(evaluate))
    (member,) = [c for c in candidates if c.graph_json in lucky]
    assert [t.accuracies["resnet"] for t in trials[member.id]] == [0.99, 0.01, 0.01]
    assert member.accuracies["resnet"] == pytest.approx(statistics.mean([0.99, 0.01, 0.01]))
    with SearchStore.open(tmp_path / "s.db", readonly=True) as store:
        population = store.population(member.search_id, config.population)
    assert member.id in {m.id for m in population}
    assert member.id not in {m.id for m in front_members(population, PROXIES)}


def test_resume_equals_uninterrupted_with_hurdles_and_reevaluations(tmp_path: Path) -> None:
    config = make_config()
    reference_order = Recorder()
    _, reference, reference_trials, _ = run_search(tmp_path / "a.db", config,
                                                    InlineEvaluator(reference_order))
    first_seed = {c.id: c.seed for c in reference}
    reevaluations = [k + 1 for k, (cid, seed) in enumerate(reference_order.calls)
                     if cid is not None and seed != first_seed[cid]]
    assert reevaluations
    # Kill inside a re-evaluation, inside a first evaluation, and in the last one.
    stops = sorted({reevaluations[0], reevaluations[len(reevaluations) // 2],
                    reevaluations[0] - 1, len(reference_order.calls)})
    for stop_at in stops:
        path = tmp_path / f"b{stop_at}.db"
        order = Recorder(die_at=stop_at)
        first, *_ = run_search(path, config, InlineEvaluator(order))
        assert first.interrupted and not first.complete
        final, resumed, resumed_trials, integrity = run_search(path, config, InlineEvaluator(order))
        assert final.complete and integrity == "ok"
        assert essentials(resumed, resumed_trials) == essentials(reference, reference_trials)
        assert order.calls == reference_order.calls


def test_a_kill_between_a_result_and_its_reevaluations_is_made_good_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config()
    reference_order = Recorder()
    _, reference, reference_trials, _ = run_search(tmp_path / "a.db", config,
                                                    InlineEvaluator(reference_order))
    original = SearchStore.add_trial
    killed = []

    def dies_once(self: SearchStore, *args: object, **kwargs: object) -> object:
        if not killed and kwargs.get("trial") == 2:
            killed.append(True)
            raise KeyboardInterrupt  # as if the controller died after recording the result
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SearchStore, "add_trial", dies_once)
    order = Recorder()
    first, *_ = run_search(tmp_path / "b.db", config, InlineEvaluator(order))
    assert killed and first.interrupted
    monkeypatch.setattr(SearchStore, "add_trial", original)
    final, resumed, resumed_trials, _ = run_search(tmp_path / "b.db", config,
                                                   InlineEvaluator(order))
    assert final.complete
    assert essentials(resumed, resumed_trials) == essentials(reference, reference_trials)
    assert order.calls == reference_order.calls
