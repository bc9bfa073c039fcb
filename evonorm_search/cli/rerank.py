"""`evonorm rerank`: the paper's final step, retraining the best layers longer, on TEST.

Composes `evonorm_search.rerank` with the store, the data set and an executor. Settings
are checked before the database is written. Progress goes to stderr, the final ranking
to stdout.
"""

from __future__ import annotations

from pathlib import Path

import click

from evonorm_search.rerank import (
    RERANK_BASELINES, TRANSFORMER_BASELINES, RerankError, format_ranking, ranking,
)

DEFAULT_DB = "evonorm.db"


def _baselines(text: str) -> tuple[str, ...]:
    from evonorm_search.known import get_known

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        get_known(name)
    return names


@click.command("rerank")
@click.argument("name")
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, help="Search database file.")
@click.option("--top", type=int, default=10, show_default=True,
              help="How many layers of the search's Pareto front to re-rank (best mean accuracy first).")
@click.option("--seeds", type=int, default=3, show_default=True,
              help="Training seeds per layer (the same seeds for every layer).")
@click.option("--steps", type=int, default=None,
              help="Training steps per proxy. [default: 3x the search's steps]")
@click.option("--baselines", default=None,
              help="Comma-separated known layers re-ranked for reference ('' for none). "
                   f"[default: {','.join(RERANK_BASELINES)}; "
                   f"{','.join(TRANSFORMER_BASELINES)} for a T/TB search]")
@click.option("--executor", type=click.Choice(["ray", "inline"]), default="ray", show_default=True,
              help="Where evaluations run: a local Ray instance, or in this process.")
@click.option("--workers", type=int, default=None,
              help="Evaluations in flight with --executor ray. [default: the machine's CPUs]")
def rerank(name: str, db_path: str, top: int, seeds: int, steps: int | None,
           baselines: str | None, executor: str, workers: int | None) -> None:
    """Re-rank the best layers of search NAME on the held-out TEST split.

    Retrains the top layers of the Pareto front, plus known baselines for reference, with
    a longer schedule (no rejection protocols), on every proxy of the search, with several
    seeds, and stores each result in the database. Running the same command again resumes
    an interrupted re-ranking. Prints the ranking: mean ± standard deviation over seeds of
    the test accuracy per proxy.
    """
    from db.rerank import RerankStore
    from db.store import SearchStore
    from evonorm_search.config import stored_config
    from evonorm_search.rerank import evaluate_on_test, rerank_seeds, rerank_train_settings, run_rerank
    from primitives import SPACES
    from workers.datasets import load_proxy_data
    from workers.executors import make_evaluator

    if workers is not None and workers < 1:
        raise RerankError(f"--workers must be at least 1, got {workers}")
    baseline_names = None if baselines is None else _baselines(baselines)
    path = Path(db_path).expanduser()
    with SearchStore.open(path) as store:
        search = store.get_search(name)
        config = stored_config(search.config)
        if baseline_names is None:  # the references of the search's slot
            transformer = SPACES[config.space].slot == "norm"
            baseline_names = TRANSFORMER_BASELINES if transformer else RERANK_BASELINES
        rerank_train_settings(config.train, steps)
        rerank_seeds(search.seed, seeds)
        if top < 1:
            raise RerankError(f"--top must be at least 1, got {top}")
        data = load_proxy_data(config.dataset, config.proxies)
        evaluator = make_evaluator(executor, evaluate_fn=evaluate_on_test, data=data, workers=workers)
        try:
            run = run_rerank(
                store, name, evaluator, top=top, seeds=seeds, steps=steps,
                baselines=baseline_names, progress=lambda line: click.echo(line, err=True),
            )
        finally:
            evaluator.shutdown()
        rows = ranking(RerankStore(store).evaluations(run.id), config.proxies)
    click.echo(f"re-ranking of {name!r} (run {run.id}): test accuracy, mean ± std over {seeds} seed(s)")
    click.echo(format_ranking(rows, config.proxies))


COMMANDS: list[click.Command] = [rerank]
