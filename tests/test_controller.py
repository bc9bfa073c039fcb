"""The controller with a fake, deterministic evaluation: budget, population, filters,
infrastructure retries, Ctrl-C, and resume equivalence."""

from __future__ import annotations

import hashlib
import json
import random
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from db.store import SearchStore
from evonorm_search.search import controller
from evonorm_search.config import SearchConfig
from evonorm_search.search.controller import SearchController, SearchExhausted, derive_seed
from evonorm_search.fingerprint import Fingerprint
from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_LAYERS
from evonorm_search.task import EvalResult, EvalTask
from workers.executors import InlineEvaluator

PROXIES = ("resnet", "mobilenetv2")


def fake_evaluate(task: EvalTask) -> EvalResult:
    """Scores from the layer's structure and the seed; about a quarter rejected."""
    graph = LayerGraph.from_json(task.graph_json)
    digest = hashlib.sha256(f"{graph.structural_hash()}:{task.seed}".encode()).digest()
    if digest[0] % 4 == 0:
        return EvalResult("rejected", stage="quality", reason="fake: below threshold")
    return EvalResult(
        "done", accuracies={p: digest[1 + i] / 255 for i, p in enumerate(task.proxies)}
    )


def make_config(**changes: object) -> SearchConfig:
    # One seed per candidate (the paper's protocol); re-evaluation is tested in test_fidelity.py.
    return SearchConfig(proxies=PROXIES, budget=30, population=6, seed=7,
                        reevaluate=1).with_overrides(changes)


def run_search(path: Path, config: SearchConfig, evaluator: object, name: str = "s") -> tuple:
    with SearchStore.open(path, create=True) as store:
        record = store.find_search(name) or store.create_search(name, config.to_dict(), config.seed)
        final = SearchController(store, record, config, evaluator).run()  # type: ignore[arg-type]
        return final, store.candidates(record.id), store.integrity_check()


def essentials(candidates: list) -> list[tuple]:
    return [
        (c.number, c.graph_json, c.status, c.stage, c.seed, c.duplicate_of, c.parent_id,
         c.fingerprint, sorted(c.accuracies.items()), c.move, c.island, c.hash_skips,
         c.neutral_skips)
        for c in candidates
    ]


def check_budget_and_population(config: SearchConfig, final: object, candidates: list) -> None:
    assert final.complete  # type: ignore[attr-defined]
    evaluated = [c for c in candidates if c.status in ("done", "rejected", "failed")
                 and c.stage != "fingerprint"]
    assert len(evaluated) == config.budget == final.submitted  # type: ignore[attr-defined]
    assert [c.number for c in candidates] == list(range(len(candidates)))
    assert len({c.structural_hash for c in candidates}) == len(candidates)
    # Parents only once P members are done; then always a done member of the last P.
    for index, child in enumerate(candidates):
        earlier_done = [c for c in candidates[:index] if c.status == "done"]
        if len(earlier_done) < config.population:
            assert child.parent_id is None
        else:
            assert child.parent_id in {c.id for c in earlier_done[-config.population:]}


def test_real_evaluation_on_tiny_digits(tmp_path: Path) -> None:
    from workers.datasets import load_dataset
    from workers.evaluate import evaluate

    config = make_config(
        budget=6, population=2, proxies=("resnet",), init="evonorm_s0,gn_relu",
        **{"dataset.max_train_examples": 64, "train.steps": 4, "train.quality_steps": 2,
           "train.quality_threshold": 0.0, "train.stability_steps": 1, "train.width": 4,
           "train.batch_size": 16, "train.threads": 1},
    )
    data = load_dataset(config.dataset)
    final, candidates, integrity = run_search(tmp_path / "s.db", config, InlineEvaluator(evaluate, data))
    assert integrity == "ok"
    check_budget_and_population(config, final, candidates)
    assert any(c.parent_id is not None for c in candidates)  # evolution started
    assert all(0.0 <= a <= 1.0 for c in candidates for a in c.accuracies.values())


def test_search_respects_budget_and_population(tmp_path: Path) -> None:
    config = make_config()
    final, candidates, integrity = run_search(tmp_path / "s.db", config, InlineEvaluator(fake_evaluate))
    assert integrity == "ok"
    check_budget_and_population(config, final, candidates)
    evaluated = [c for c in candidates if c.status != "duplicate" and c.stage != "fingerprint"]
    done = [c for c in candidates if c.status == "done"]
    assert len(done) > config.population
    assert all(c.seed == derive_seed(config.seed, c.number) for c in candidates)
    assert all(c.attempts == 1 for c in evaluated)


def test_known_init_comes_first(tmp_path: Path) -> None:
    config = make_config(init="evonorm_s0,bn_relu", budget=8)
    _, candidates, _ = run_search(tmp_path / "s.db", config, InlineEvaluator(fake_evaluate))
    first = [LayerGraph.from_json(c.graph_json) for c in candidates[:2]]
    assert first == [KNOWN_LAYERS["evonorm_s0"], KNOWN_LAYERS["bn_relu"]]


def test_fingerprint_duplicates_and_rejections_are_recorded_untrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fingerprint with 6 values makes many children duplicates; one value is NaN.
    def coarse(graph: LayerGraph) -> Fingerprint:
        bucket = int(graph.structural_hash(), 16) % 6
        return Fingerprint(f"fp{bucket}", bucket != 5, None if bucket != 5 else "NaN on probe")

    trained: list[str] = []

    def counting(task: EvalTask) -> EvalResult:
        trained.append(task.graph_json)
        return EvalResult("done", accuracies={p: 0.5 for p in task.proxies})

    config = make_config(budget=5, population=2)
    with SearchStore.open(tmp_path / "s.db", create=True) as store:
        record = store.create_search("s", config.to_dict(), config.seed)
        final = SearchController(store, record, config, InlineEvaluator(counting),
                                 fingerprint_fn=coarse).run()
        candidates = store.candidates(record.id)
        # Every function has been seen now: the next candidate cannot be found.
        more = replace(config, budget=6)
        monkeypatch.setattr(controller, "MAX_UNTRAINED_IN_A_ROW", 30)
        monkeypatch.setattr(controller, "MAX_PROPOSALS", 30)
        with pytest.raises(SearchExhausted, match="exhausted"):
            SearchController(store, record, more, InlineEvaluator(counting),
                             fingerprint_fn=coarse).run()
    assert final.complete and len(trained) == 5
    duplicates = [c for c in candidates if c.status == "duplicate"]
    rejected = [c for c in candidates if c.status == "rejected"]
    assert duplicates and rejected
    assert all(c.stage == "fingerprint" for c in rejected)
    originals = {c.id: c for c in candidates if c.status == "done"}
    for duplicate in duplicates:
        assert duplicate.duplicate_of in originals
        first = min((c for c in originals.values() if c.fingerprint == duplicate.fingerprint),
                    key=lambda c: c.number)
        assert duplicate.duplicate_of == first.id
        assert duplicate.accuracies == originals[duplicate.duplicate_of].accuracies
    assert all(c.graph_json in trained for c in originals.values())
    assert not any(c.graph_json in trained for c in duplicates + rejected)


def assert_resumes_identically(tmp_path: Path, config: SearchConfig,
                               stops: tuple[int, ...]) -> list:
    """Interrupted (Ctrl-C) at each of `stops` evaluations and resumed, the search records
    what an uninterrupted one does, candidate for candidate; returns the reference rows."""
    _, reference, _ = run_search(tmp_path / "a.db", config, InlineEvaluator(fake_evaluate))
    for stop_at in stops:
        calls = 0

        def interrupted(task: EvalTask) -> EvalResult:
            nonlocal calls
            calls += 1
            if calls == stop_at:
                raise KeyboardInterrupt
            return fake_evaluate(task)

        path = tmp_path / f"b{stop_at}.db"
        first, partial, _ = run_search(path, config, InlineEvaluator(interrupted))
        assert first.interrupted and not first.complete
        if config.reevaluate == 1:  # (else Ctrl-C may cut a re-evaluation short)
            assert partial[-1].status == "running"  # the evaluation Ctrl-C cut short
        final, resumed, integrity = run_search(path, config, InlineEvaluator(fake_evaluate))
        assert final.complete and integrity == "ok"
        assert essentials(resumed) == essentials(reference)
    return reference


def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path: Path) -> None:
    assert_resumes_identically(tmp_path, make_config(), (3, 11, 20))


def test_infrastructure_failures_are_retried_then_failed(tmp_path: Path) -> None:
    flaky_calls: dict[str, int] = {}

    def flaky(task: EvalTask) -> EvalResult:
        key = task.graph_json
        flaky_calls[key] = flaky_calls.get(key, 0) + 1
        digest = hashlib.sha256(key.encode()).digest()[0]
        if digest % 3 == 0:
            raise RuntimeError("worker died")  # always: fails after max_attempts
        if digest % 3 == 1 and flaky_calls[key] == 1:
            raise RuntimeError("worker died once")  # succeeds on the retry
        return fake_evaluate(task)

    config = make_config(budget=12, max_attempts=2)
    final, candidates, _ = run_search(tmp_path / "s.db", config, InlineEvaluator(flaky))
    assert final.complete and final.submitted == 12
    assert {"failed", "done"} <= {c.status for c in candidates}
    for c in candidates:
        digest = hashlib.sha256(c.graph_json.encode()).digest()[0]
        if digest % 3 == 0:
            assert (c.status, c.stage, c.attempts) == ("failed", "infrastructure", 2)
            assert "worker died" in (c.reason or "")
        elif digest % 3 == 1:
            assert c.status in ("done", "rejected") and c.attempts == 2


class ThreadEvaluator:
    """A truly asynchronous evaluator: results arrive out of submission order."""

    retries_lost_work = False

    def __init__(self, workers: int) -> None:
        self.capacity = workers
        self._pool = ThreadPoolExecutor(workers)
        self.max_in_flight = 0
        self._in_flight = 0

    def submit(self, task: EvalTask) -> Future[EvalResult]:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        delay = 0.05 + random.Random(task.seed).random() * 0.05

        def work() -> EvalResult:
            import time

            time.sleep(delay)
            return fake_evaluate(task)

        future = self._pool.submit(work)
        future.add_done_callback(lambda _: self._release())
        return future

    def _release(self) -> None:
        self._in_flight -= 1

    def shutdown(self) -> None:
        self._pool.shutdown()


def test_parallel_workers_keep_capacity_busy_without_loss(tmp_path: Path) -> None:
    config = make_config(budget=24)
    evaluator = ThreadEvaluator(3)
    with SearchStore.open(tmp_path / "s.db", create=True) as store:
        record = store.create_search("s", config.to_dict(), config.seed)
        controller = SearchController(store, record, config, evaluator)  # type: ignore[arg-type]
        final = controller.run()
        candidates, integrity = store.candidates(record.id), store.integrity_check()
        # Results arrived out of order; the in-memory aging population still mirrors the store.
        assert controller.population == store.population(record.id, config.population)
    evaluator.shutdown()
    assert final.complete and integrity == "ok"
    assert evaluator.max_in_flight == 3
    assert sum(c.stage != "fingerprint" and c.status != "duplicate" for c in candidates) == 24
    assert all(c.status in ("done", "rejected", "duplicate", "failed") for c in candidates)


def test_resume_requeues_pending_and_fails_crash_loops(tmp_path: Path) -> None:
    config = make_config(budget=5, max_attempts=2)
    path = tmp_path / "s.db"
    with SearchStore.open(path, create=True) as store:
        search = store.create_search("s", config.to_dict(), config.seed)
        graphs = [KNOWN_LAYERS["bn_relu"], KNOWN_LAYERS["gn_relu"]]
        rows = [
            store.add_candidate(search.id, number=i, parent_id=None, graph_json=g.to_json(),
                                structural_hash=g.structural_hash(), fingerprint=None,
                                seed=derive_seed(config.seed, i))
            for i, g in enumerate(graphs)
        ]
        for _ in range(2):  # candidate 0 was submitted twice and crashed the controller
            store.mark_running(rows[0].id)
        store.mark_running(rows[1].id)
    seen: list[int | None] = []

    def recording(task: EvalTask) -> EvalResult:
        seen.append(task.candidate_id)
        return fake_evaluate(task)

    final, candidates, _ = run_search(path, config, InlineEvaluator(recording))
    assert final.complete and final.submitted == 5
    assert candidates[0].status == "failed" and candidates[0].attempts == 2
    assert seen[0] == rows[1].id and rows[0].id not in seen
    assert candidates[1].attempts == 2 and candidates[1].status in ("done", "rejected")


def test_budget_already_reached_does_nothing(tmp_path: Path) -> None:
    config = make_config(budget=4)
    path = tmp_path / "s.db"
    _, before, _ = run_search(path, config, InlineEvaluator(fake_evaluate))
    final, after, _ = run_search(path, config, InlineEvaluator(fake_evaluate))
    assert final.complete and final.evaluated_this_run == 0 and after == before


def test_derive_seed_is_stable_and_spread() -> None:
    assert derive_seed(7, 0) == derive_seed(7, 0)
    seeds = {derive_seed(s, n) for s in range(5) for n in range(200)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(7, 3, "propose") != derive_seed(7, 3)


def test_progress_line_reports_counts_and_best(tmp_path: Path) -> None:
    lines: list[str] = []
    config = make_config(budget=10)
    with SearchStore.open(tmp_path / "s.db", create=True) as store:
        record = store.create_search("s", config.to_dict(), config.seed)
        final = SearchController(store, record, config, InlineEvaluator(fake_evaluate),
                                 progress=lambda p: lines.append(p.line())).run()
        best = {p: max(c.accuracies[p] for c in store.candidates(record.id, ["done"])) for p in PROXIES}
    assert lines and "10/10 evaluated" in lines[-1]
    assert all(f"{p} {best[p]:.3f}" in lines[-1] for p in PROXIES)
    assert final.best == best
    rejected = final.counts.get("rejected", 0) - final.rejected_by_stage.get("fingerprint", 0)
    finished = rejected + final.counts.get("done", 0) + final.counts.get("failed", 0)
    assert f"rejection rate {100 * rejected / finished:.0f}%" in lines[-1]


def test_random_strategy_never_selects_a_parent(tmp_path: Path) -> None:
    config = make_config(strategy="random", init="random", budget=20, population=3)
    final, candidates, integrity = run_search(tmp_path / "r.db", config, InlineEvaluator(fake_evaluate))
    assert final.complete and integrity == "ok"
    assert sum(c.status == "done" for c in candidates) > config.population
    assert all(c.parent_id is None for c in candidates)


def test_unknown_strategy_is_refused_with_the_choices() -> None:
    from evonorm_search.config import ConfigError

    with pytest.raises(ConfigError, match="evolution, random"):
        make_config(strategy="annealing")


def test_a_new_search_takes_the_training_budget_of_its_data_set() -> None:
    from evonorm_search.config import new_search_config
    from evonorm_search.task import TrainSettings

    digits = new_search_config({})
    assert (digits.train.batch_size, digits.train.steps, digits.train.quality_steps) == (8, 100, 50)
    assert digits.train == TrainSettings() == SearchConfig().train
    cifar = new_search_config({"dataset.name": "cifar10", "dataset.data_dir": "/data"})
    assert (cifar.train.batch_size, cifar.train.steps) == (64, 300)
    assert cifar.train.quality_steps == 100  # the paper's quality check
    given = new_search_config({"dataset.name": "npz", "train.batch_size": 16})
    assert (given.train.batch_size, given.train.steps) == (16, 300)


def test_stop_when_sees_every_recorded_evaluation_and_ends_the_run(tmp_path: Path) -> None:
    seen: list[str] = []

    def stop_after_four(record: object) -> bool:
        seen.append(record.status)  # type: ignore[attr-defined]
        return len(seen) == 4

    config = make_config()
    with SearchStore.open(tmp_path / "s.db", create=True) as store:
        record = store.create_search("s", config.to_dict(), config.seed)
        final = SearchController(store, record, config, InlineEvaluator(fake_evaluate),
                                 stop_when=stop_after_four).run()
    assert len(seen) == 4 and final.submitted == 4 and not final.complete
    assert "rejected" in seen or len(set(seen)) == 1  # not only done candidates are shown


def sequence_digest(path: Path, config: SearchConfig) -> str:
    """A digest of everything a search proposed and recorded, candidate by candidate:
    number, structure, parent, status, duplicate, fingerprint and re-evaluation trials."""
    _, candidates, _ = run_search(path, config, InlineEvaluator(fake_evaluate))
    number = {c.id: c.number for c in candidates}
    with SearchStore.open(path) as store:
        trials = [[(t.trial, t.seed, t.status) for t in store.trials(c.id)] for c in candidates]
    rows = [(c.number, c.structural_hash, number.get(c.parent_id), c.status,
             number.get(c.duplicate_of), c.fingerprint, trial)
            for c, trial in zip(candidates, trials, strict=True)]
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


# Pinned before the controller was split into a loop and strategies (issue 16): with the
# settings of that time a search must keep proposing exactly these candidates.
PINNED_SEQUENCES = [
    ({}, "859b4ad0f0f62f51"),
    ({"reevaluate": 3}, "97fed545411b8770"),
    ({"mutations": ("node", "op", "input", "insert", "delete"), "tournament_fraction": 0.25,
      "num_nodes": 4, "init": "random", "budget": 40}, "37c9ebafc0eec77e"),
    ({"strategy": "random", "init": "random", "budget": 20, "population": 3}, "3eba0c50757178cb"),
]


@pytest.mark.parametrize("changes, digest", PINNED_SEQUENCES)
def test_search_proposes_the_pinned_candidate_sequence(tmp_path: Path, changes: dict,
                                                       digest: str) -> None:
    assert sequence_digest(tmp_path / "s.db", make_config(**changes)) == digest


class ScriptedStrategy:
    """Proposes from a script: a fresh layer, then for each later candidate first a child
    of the newest member that differs from it only in a dead node (neutral), then the
    first layer again (a hash skip), then the newest member under a new root."""

    def __init__(self, config: SearchConfig) -> None:
        from evonorm_search.search.strategies import AgingPopulation

        self._population = AgingPopulation(config.population)
        self._members: list = []
        self._step = 0

    def tell(self, candidate: object) -> None:
        self._population.tell(candidate)  # type: ignore[arg-type]
        if candidate.status == "done" and candidate not in self._members:  # type: ignore[attr-defined]
            self._members.append(candidate)

    @property
    def population(self) -> list:
        return list(self._population.members)

    def ask(self, rng: random.Random, seen: object) -> object:
        from evonorm_search.graph import Node
        from evonorm_search.search.strategies import Proposal

        base = LayerGraph([Node("tanh", (2,)), Node("add", (0, 2)), Node("sigmoid", (5,))])
        if not self._members:
            return Proposal(base, move="known")
        parent = self._members[-1]
        graph = LayerGraph.from_json(parent.graph_json)
        self._step += 1
        if self._step % 3 == 1:  # node 4 is dead: change only it
            return Proposal(graph.replace_node(4, Node("exp", (2,))), parent, "op")
        if self._step % 3 == 2:
            return Proposal(base, move="known")
        output = graph.output
        return Proposal(LayerGraph([*graph.nodes, Node("tanh", (output,))]), parent, "wrap")


def test_neutral_children_and_seen_structures_are_skipped_and_counted(tmp_path: Path) -> None:
    config = make_config(budget=4, population=2)
    trained: list[str] = []

    def counting(task: EvalTask) -> EvalResult:
        trained.append(task.graph_json)
        return EvalResult("done", accuracies={p: 0.5 for p in task.proxies})

    with SearchStore.open(tmp_path / "s.db", create=True) as store:
        record = store.create_search("s", config.to_dict(), config.seed)
        final = SearchController(store, record, config, InlineEvaluator(counting),
                                 strategy=ScriptedStrategy).run()
        candidates = store.candidates(record.id)
        summary = store.summary(record.id)
    assert final.complete and len(trained) == 4
    assert [(c.move, c.hash_skips, c.neutral_skips) for c in candidates] == [
        ("known", 0, 0), ("wrap", 1, 1), ("wrap", 1, 1), ("wrap", 1, 1)]
    assert (final.hash_skips, final.neutral_skips) == (3, 3)
    assert summary.skips == {"hash": 3, "neutral": 3}
    assert "hash skips 3, neutral skips 3" in final.line()


MEMETIC = {"engine": "memetic", "population": 8, "islands": 2, "migration_rate": 0.2,
           "island_restart": 8, "elites": 2, "neutral_drift": True, "scan_after": 6,
           "scan_elites": 2, "adaptive_moves": 0.5, "size_penalty": 1e-4,
           "mutations": ("node", "op", "input", "insert", "delete", "wrap", "swap",
                         "subgraph", "graft"),
           "tournament_fraction": 0.5, "num_nodes": 4, "init": "random", "budget": 40,
           "reevaluate": 2}


@pytest.mark.parametrize("changes", [
    {}, {"fitness": "log_error", "size_penalty": 0.1, "scan_limit": 3, "scan_sizes": True,
         "scan_depth": 4,
         "scan_macros": ("normalize", "skip", "guard", "gate"),
         "mutations": (*MEMETIC["mutations"], "normalize")}],
    ids=["score", "log-error-scan-limit"])
def test_resume_with_islands_scan_and_every_move_equals_uninterrupted(
        tmp_path: Path, changes: dict[str, object]) -> None:
    """Interrupted anywhere and resumed, a search with islands, elites, migration,
    restarts, the local scan (limited or not), adaptive moves and re-evaluation, on
    either fitness scale, records exactly what an uninterrupted one does, candidate for
    candidate."""
    reference = assert_resumes_identically(tmp_path, make_config(**{**MEMETIC, **changes}), (9, 37))
    moves = {c.move for c in reference}
    assert {"scan", "random"} <= moves and len(moves & set(MEMETIC["mutations"])) >= 3
    assert {c.island for c in reference} == {0, 1}
