"""`evonorm search`: start a search, or resume one from its database.

Composes the parts: settings (`SearchConfig`), the store, the data set, the executor and
the controller. Every check that can fail on user input (settings, conflicts with a
stored search, the data set, the database path, another process running the search)
runs before the database is created or written, so a refused command leaves it untouched.
The run holds the search's lease (`cli/lease.py`); when it stops before its budget (Ctrl-C,
a lost Ray cluster, a full disk) the evaluations in flight go back to pending, their
attempt not counted, for the resume (docs/faults.md).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from evonorm_search.cli.common import INTERRUPTED_EXIT_CODE, numbers_text, training_default_help
from evonorm_search.cli.config_file import config_file_option
from evonorm_search.cli.lease import hold_lease
from evonorm_search.cli.options import GroupedCommand, option
from evonorm_search.config import (
    SCAN_DEFERRED, SCAN_ORDERS, SCAN_TIES, STRATEGIES, ConfigError, SearchConfig,
    new_search_config, read_init_files, stored_config,
)
from evonorm_search.errors import DatabaseWriteError, ExecutorLost, StoreError
from evonorm_search.proxy_info import score_note
from evonorm_search.search.controller import Progress, SearchController
from evonorm_search.search.engines import ENGINES
from evonorm_search.search.selection import FITNESS_QUANTA
from primitives import SPACES

_DEFAULTS = SearchConfig()
_TRAIN = _DEFAULTS.train
_DATA = _DEFAULTS.dataset
DEFAULT_NAME = "default"
DEFAULT_DB = "evonorm.db"
# Seconds between progress lines on stderr (the final line is always printed).
PROGRESS_INTERVAL = 2.0
HEARTBEAT_INTERVAL = 30.0

# CLI option -> SearchConfig key (None values mean "not given": stored/default value).
_SETTINGS = {
    "dataset": "dataset.name",
    "data_dir": "dataset.data_dir",
    "download": "dataset.download",
    "image_size": "dataset.image_size",
    "max_train_examples": "dataset.max_train_examples",
    "validation_fraction": "dataset.validation_fraction",
    "space": "space",
    "budget": "budget",
    "population": "population",
    "seed": "seed",
    "init": "init",
    "strategy": "strategy",
    "num_nodes": "num_nodes",
    "mutations": "mutations",
    "tournament_fraction": "tournament_fraction",
    "engine": "engine",
    "islands": "islands",
    "migration_rate": "migration_rate",
    "island_restart": "island_restart",
    "elites": "elites",
    "neutral_drift": "neutral_drift",
    "scan_after": "scan_after",
    "scan_elites": "scan_elites",
    "scan_limit": "scan_limit",
    "scan_sizes": "scan_sizes",
    "scan_depth": "scan_depth",
    "scan_sweep": "scan_sweep",
    "scan_deferred": "scan_deferred",
    "scan_ties": "scan_ties",
    "scan_order": "scan_order",
    "scan_macros": "scan_macros",
    "adaptive_moves": "adaptive_moves",
    "size_penalty": "size_penalty",
    "fitness": "fitness",
    "proxies": "proxies",
    "steps": "train.steps",
    "batch_size": "train.batch_size",
    "learning_rate": "train.learning_rate",
    "width": "train.width",
    "depth": "train.depth",
    "quality_steps": "train.quality_steps",
    "quality_threshold": "train.quality_threshold",
    "stability_steps": "train.stability_steps",
    "threads": "train.threads",
    "corpus": "dataset.corpus",
    "task": "task",
    "hurdle": "hurdle",
    "reevaluate": "reevaluate",
}
# Settings of proxy training and its data, which a planted search does not use.
_CLASSIFICATION_ONLY = tuple(
    key for key, setting in _SETTINGS.items()
    if setting.startswith(("dataset.", "train.")) and setting != "train.threads"
)


def _planted_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """`--target` resolved to the target's graph JSON and label; ConfigError for options
    that a planted search would silently ignore."""
    from evonorm_search.planted import resolve_target

    target = options.pop("target", None)
    if target is None:
        return {}
    if options.get("task") not in (None, "planted"):
        raise ConfigError("--target only applies to a planted search: use --task planted")
    graph, label = resolve_target(target)
    return {"target": graph.to_json(), "target_name": label}


def _check_planted_options(config: SearchConfig, options: dict[str, Any]) -> None:
    if config.task != "planted":
        return
    given = [f"--{key.replace('_', '-')}" for key in _CLASSIFICATION_ONLY
             if options.get(key) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)} only apply to proxy training, which a planted "
                          "search does not do: drop them from the command line or the "
                          "--config file (see docs/method.md, planted task)")


def _overrides(options: dict[str, Any]) -> dict[str, Any]:
    planted = _planted_overrides(options)
    overrides = {_SETTINGS[key]: value for key, value in options.items() if value is not None}
    overrides.update(planted)
    for key in ("proxies", "mutations", "scan_macros"):
        if key in overrides:
            overrides[key] = tuple(p.strip() for p in overrides[key].split(",") if p.strip())
    if overrides.get("scan_macros") == ("none",):
        overrides["scan_macros"] = ()
    if "init" in overrides:  # layer graph files are read now and stored with the search
        overrides["init_graphs"] = read_init_files(overrides["init"])
    for key in ("dataset.data_dir", "dataset.corpus"):
        if key in overrides:
            overrides[key] = str(Path(overrides[key]).expanduser().resolve())
    return overrides


def _check_settings(config: SearchConfig) -> None:
    """The evaluation's own checks (proxy names, step counts), before anything is written."""
    from workers.evaluate import check_settings
    from workers.proxies import ProxyError

    if config.task == "planted":  # regimes and target were checked by SearchConfig
        return
    try:
        check_settings(config.train, config.proxies)
    except ProxyError:
        raise  # a MODULE:FUNCTION proxy: its message says what to fix
    except ValueError as error:
        raise ConfigError(f"invalid training settings: {error}; fix that option") from error


def _check_own_proxies(config: SearchConfig, data: Any) -> None:
    """Each MODULE:FUNCTION proxy builds a model that uses the layer and fits the data
    (`workers.proxies.check_proxy`), before anything is written."""
    from workers.proxies import check_proxy, is_own_proxy

    for proxy in config.proxies:
        if is_own_proxy(proxy):
            check_proxy(proxy, data.train_x, data.num_classes, config.train.width,
                        config.train.depth)


class _ProgressPrinter:
    """The status line on stderr, at most every PROGRESS_INTERVAL seconds: rewritten in
    place on a terminal; in a log, a new line only when the counts change or every
    HEARTBEAT_INTERVAL seconds (the throughput alone changes all the time)."""

    def __init__(self) -> None:
        self._last = 0.0
        self._last_logged = 0.0
        self._last_counts = ""
        self._terminal = sys.stderr.isatty()
        self.last_line = ""

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        self.last_line = progress.line()
        if self._terminal:
            click.echo(f"\r\x1b[K{self.last_line}", err=True, nl=False)
            return
        counts = self.last_line.rsplit(" | ", 1)[0]
        if counts != self._last_counts or now - self._last_logged >= HEARTBEAT_INTERVAL:
            self._last_counts, self._last_logged = counts, now
            click.echo(self.last_line, err=True)

    def finish(self) -> None:
        """End the in-place line so that what follows starts on a line of its own."""
        if self._terminal and self.last_line:
            click.echo("", err=True)


def _resolve(store_path: Path, name: str, overrides: dict[str, Any]) -> tuple[SearchConfig, bool]:
    """The settings to run with, and whether the search exists already (a resume).

    SearchRunning when a live process runs the search already: refused at once, before
    the data set is loaded or an executor started (the lease itself is taken later)."""
    from db.leases import LeaseStore
    from db.store import SearchStore

    if store_path.exists():
        with SearchStore.open(store_path) as store:
            LeaseStore(store).check_free(name)
            existing = store.find_search(name)
        if existing is not None:
            stored = stored_config(existing.config)
            requested = stored.with_overrides(overrides)
            stored.check_resume(requested, name)
            return requested, True
    return new_search_config(overrides), False


# The sections of `evonorm search --help`, in order (cli/options.py); each option names its own.
SEARCH_GROUPS = {
    "search": "Search (what is searched, where it is stored)",
    "engine": "Engine (how candidates are proposed)",
    "data": "Data (classification task)",
    "training": "Training of each proxy (classification task)",
    "protocols": "Protocols (rejection and fidelity)",
    "execution": "Execution (where evaluations run; may change on resume)",
}


@click.command("search", cls=GroupedCommand, groups=SEARCH_GROUPS)
@config_file_option(group="search")
@option("--name", group="search", default=DEFAULT_NAME, show_default=True,
        help="Search name; an existing search of that name is resumed.")
@option("--db", "db_path", group="search", default=DEFAULT_DB, show_default=True,
        type=click.Path(dir_okay=False), help="SQLite database file (created if missing).")
@option("--task", group="search", type=click.Choice(["classification", "planted"]),
        help="classification: train the proxies on the data set; planted: reproduce "
             "the --target layer (a ground truth for the search engine; see "
             "docs/method.md). [default: classification]")
@option("--target", group="search", metavar="NAME_OR_JSON_FILE",
        help="The planted layer of --task planted: a layer name (known or discovered) "
             "or a layer graph JSON file.")
@option("--space", group="search", type=click.Choice(list(SPACES)),
        help="; ".join(f"{s.name}: {s.doc}" for s in SPACES.values())
             + f". [default: {_DEFAULTS.space}; T and TB search Transformer norms]")
@option("--proxies", group="search", comma_list=True,
        help="Comma-separated proxy architectures: registry names, or your own builder as "
             "MODULE:FUNCTION (see docs/own_proxy.md); planted: regimes. "
             f"[default: {','.join(_DEFAULTS.proxies)}; vit,charlm for space T, vit for TB]")
@option("--budget", group="search", type=int,
        help="Candidates to evaluate (submitted for training; duplicates and hash or "
             f"NaN rejects do not count). May grow on resume. [default: {_DEFAULTS.budget}]")
@option("--seed", group="search", type=int, help=f"Search seed. [default: {_DEFAULTS.seed}]")
@option("--strategy", group="engine", type=click.Choice(list(STRATEGIES)),
        help="evolution: mutate parents from Pareto tournaments; random: every child a "
             f"fresh random layer (the baseline). [default: {_DEFAULTS.strategy}]")
@option("--init", group="engine", comma_list=True,
        help="First members, in order, then random layers: random, or a comma-separated "
             "list of known (every known layer of the space), layer names (known or "
             "discovered, see `evonorm show`) and layer graph JSON files (stored with the "
             f"search). [default: {_DEFAULTS.init}]")
@option("--population", group="engine", type=int,
        help=f"Aging population size P. [default: {_DEFAULTS.population}]")
@option("--num-nodes", group="engine", type=int,
        help=f"Intermediate nodes of random layers (1-10). [default: {_DEFAULTS.num_nodes}]")
@option("--engine", group="engine", type=click.Choice(list(ENGINES)),
        help="How children are proposed: paper (the paper's engine exactly), memetic "
             "(islands, elites, all moves with adaptive weights, a local scan when the "
             "best stalls), memetic-log (memetic with size pressure on the log-error "
             "scale; for planted targets), memetic-norm (memetic-log that also "
             "centres, standardizes or scales a node by a statistic in one edit) or "
             "memetic-blocks (memetic-norm whose scan also guards a statistic, max(d, "
             "e), self-gates a node, g * sigmoid(g), and rectifies one, max(a, v1 * a)); see "
             "docs/method.md. Sets the engine options "
             "below; those given beside it override its values. [default: paper; "
             "memetic-blocks for --task planted]")
@option("--mutations", group="engine", comma_list=True,
        help="Comma-separated moves, one drawn per child: node (the paper's: new op and "
             "inputs), op, input, insert, delete, wrap (a new op on the output), swap (the "
             "operands of a non-commutative op, e.g. a / b), subgraph (a node replaced by "
             "a random chain), graft (a donor's subexpression; kept only if not worse), "
             "normalize (a node centred, standardized or divided by its std or rms) "
             f"(see docs/method.md). [default: {','.join(_DEFAULTS.mutations)}]")
@option("--tournament-fraction", group="engine", type=float,
        help="Share of the population sampled per parent tournament. "
             f"[default: {_DEFAULTS.tournament_fraction}]")
@option("--islands", group="engine", type=int,
        help="Populations sharing --population, each with its own aging and elites; "
             "with Ray each island keeps an equal share of the workers busy. "
             f"[default: {_DEFAULTS.islands}]")
@option("--migration-rate", group="engine", type=float,
        help="Share of an island's children bred from the search's best layers "
             f"(0-1; needs --islands 2+). [default: {_DEFAULTS.migration_rate}]")
@option("--island-restart", group="engine", type=int, metavar="EVALUATIONS",
        help="Restart an island from fresh layers after this many of its evaluations "
             "without progress, unless it holds the search's best (0: never). "
             f"[default: {_DEFAULTS.island_restart}]")
@option("--elites", group="engine", type=int,
        help="Best members of each island kept as parents whatever their age (a hall "
             f"of fame; 0: pure aging). [default: {_DEFAULTS.elites}]")
@option("--neutral-drift/--no-neutral-drift", group="engine", default=None,
        help="Among elites with equal fitness (within 1e-6; on --fitness log_error "
             "within 0.004 decades) the newest wins, so a lineage drifts over equal "
             f"layers. [default: {_DEFAULTS.neutral_drift}]")
@option("--scan-after", group="engine", type=int, metavar="EVALUATIONS",
        help="When the best score has not improved for this many evaluations, try "
             "every single edit of the best layers, first improvement wins (0: off). "
             f"[default: {_DEFAULTS.scan_after}]")
@option("--scan-elites", group="engine", type=int,
        help="How many of the best distinct layers the scan edits. "
             f"[default: {_DEFAULTS.scan_elites}]")
@option("--scan-limit", group="engine", type=int, metavar="PROPOSALS",
        help="At most this many scan proposals per stall; then evolution breeds again "
             "until the best improves (0: the scan runs until it does or runs out). "
             f"[default: {_DEFAULTS.scan_limit}]")
@option("--scan-sizes/--no-scan-sizes", group="engine", default=None,
        help="The scan edits the best layer and then the best layer of each smaller "
             "size (PySR keeps its hall of fame per complexity) instead of the "
             f"--scan-elites best. [default: {_DEFAULTS.scan_sizes}]")
@option("--scan-depth", group="engine", type=int, metavar="LAYERS",
        help="When every single edit of the layers the scan edits has been tried, the "
             "scan goes on down the ranking to the best LAYERS distinct layers instead "
             "of leaving the stall to evolution (0: it leaves it). "
             f"[default: {_DEFAULTS.scan_depth}]")
@option("--scan-sweep/--no-scan-sweep", group="engine", default=None,
        help="Down the ranking (--scan-depth) the scan takes the best layer of each "
             "larger size that scores above the best (the size penalty hides them), then "
             "one layer per score, and tries every --scan-macros edit of each before "
             "their single edits; a layer's edits all go out whatever improves meanwhile, "
             "so the best of them wins instead of the first improving one. "
             f"[default: {_DEFAULTS.scan_sweep}]")
@option("--scan-deferred", group="engine", type=click.Choice(SCAN_DEFERRED),
        help="When the scan walks a layer's free and hoist edits (--scan-macros): each "
             "(right after that layer's other edits) or last (with --scan-sweep: after "
             "every scanned layer's other edits and the sweep, the best-scoring layer's "
             "first, scores without the size penalty). "
             f"[default: {_DEFAULTS.scan_deferred}]")
@option("--scan-ties", group="engine", type=click.Choice(SCAN_TIES),
        help="Among layers of equal score and size, the one the scan edits as the best "
             "or the best of a size: newest (follows --neutral-drift) or oldest (the "
             "scan finishes a layer's edits before an equal-scoring variant of it, "
             "such as t / 0 or t + v0, that they made). "
             f"[default: {_DEFAULTS.scan_ties}]")
@option("--scan-order", group="engine", type=click.Choice(SCAN_ORDERS),
        help="The order in which the scan tries a layer's edits: mixed (single and "
             "--scan-macros edits in one shuffled order) or macros-first (the macro "
             "edits, then the single edits); free and hoist edits come after either. "
             f"[default: {_DEFAULTS.scan_order}]")
@option("--scan-macros", group="engine", comma_list=True,
        help="Comma-separated multi-node edits the scan also makes, or none: normalize "
             "(centre, standardize or divide a node by a statistic, for one of its reads, "
             "all, or the output), skip (wrap the output with a learned skip, + v0 * a), "
             "guard (a std/rms node d becomes max(d, e), or a max operand e, with e a "
             "second scale estimate of x such as std_instance(x) + v1 * x), gate (a node "
             "a becomes g * sigmoid(g) or g * tanh(g), g = a, v1 * a or v1 * a + v0), rectify "
             "(a node a becomes max(a, v0 * a) or max(a, v1 * a), a leaky ReLU), compact "
             "(the layer rewritten shorter where its function stays the same up to eps "
             "and the affine, and the other families' edits of that), free "
             "(the layer with every read of v0, of v1 or of both taken out, and the other "
             "families' edits of that), hoist (the layer cut back to one of its nodes, and "
             "the other families' edits of that); free and hoist are tried, in this order, "
             "after all of a layer's other edits. "
             f"[default: {','.join(_DEFAULTS.scan_macros) or 'none'}]")
@option("--adaptive-moves", group="engine", type=float,
        help="Strength (0-1) of adapting move weights to the moves whose children "
             f"improve on their parents (0: uniform). [default: {_DEFAULTS.adaptive_moves}]")
@option("--size-penalty", group="engine", type=float,
        help="Fitness units each live node costs in selection (--fitness): 1e-4 on the "
             "score scale breaks near-ties toward the smaller layer; 0.1 on log_error "
             f"trades a node for a 21% smaller error. [default: {_DEFAULTS.size_penalty}]")
@option("--fitness", group="engine", type=click.Choice(sorted(FITNESS_QUANTA)),
        help="The scale selection compares scores on: score (as they are, the paper's) "
             "or log_error (decades of 1 - score: equal relative gains count alike, "
             "progress is a ~1% drop of the error). [default: "
             f"{_DEFAULTS.fitness}]")
@option("--dataset", group="data",
        help=f"Data set: digits (embedded), cifar10 or npz. [default: {_DATA.name}]")
@option("--data-dir", group="data", type=click.Path(file_okay=True),
        help="Where the data set's files are.")
@option("--download/--no-download", group="data", default=None,
        help="Download CIFAR-10 into --data-dir when missing (needs internet).")
@option("--image-size", group="data", type=int,
        help="Resize images to this side (default: native).")
@option("--max-train-examples", group="data", type=int,
        help="Use at most this many training images.")
@option("--validation-fraction", group="data", type=float,
        help="Share of training images held out for fitness. "
             f"[default: {_DATA.validation_fraction}]")
@option("--corpus", group="data", type=click.Path(dir_okay=False),
        help="charlm's text: a UTF-8 text file. [default: the pinned corpus every Python "
             "carries, pydoc topics and stdlib docstrings; see docs/transformers.md]")
@option("--steps", group="training", type=int,
        help=f"Training steps per proxy. {training_default_help('steps')}")
@option("--batch-size", group="training", type=int,
        help=f"Training batch size. {training_default_help('batch_size')}")
@option("--learning-rate", group="training", type=float,
        help="Learning rate (SGD; AdamW for the Transformer proxies). "
             f"{training_default_help('learning_rate')}")
@option("--width", group="training", type=int,
        help=f"Proxy base width. {training_default_help('width')}")
@option("--depth", group="training", type=int,
        help=f"Proxy blocks per stage (Transformers: blocks). {training_default_help('depth')}")
@option("--quality-steps", group="protocols", type=int,
        help=f"Steps before the quality check (0: off). {training_default_help('quality_steps')}")
@option("--quality-threshold", group="protocols", type=float,
        help="Minimum accuracy (0 to 1, on 10 classes; scaled for others) after the quality "
             f"steps. [default: {_TRAIN.quality_threshold}]")
@option("--stability-steps", group="protocols", type=int,
        help="Steps of the stability check (0: off): gradient ascent, or a stress run for "
             f"the Transformer proxies. {training_default_help('stability_steps')}")
@option("--hurdle", group="protocols", type=float,
        help="Multi-fidelity: after the quality check a new candidate trains on only if "
             "its mean accuracy over the proxies reaches this quantile (0-1) of the "
             "population's; the others are recorded as stopped. [default: off]")
@option("--reevaluate", group="protocols", type=int,
        help="Train each member of the population's Pareto front with up to this many "
             "seeds; fitness is the mean over seeds (shown +- standard error); 1: one "
             f"seed per candidate. [default: {_DEFAULTS.reevaluate}]")
@option("--executor", group="execution", type=click.Choice(["ray", "inline"]), default="ray",
        show_default=True,
        help="ray: parallel local (or --address) Ray workers; inline: in-process, "
             "deterministic.")
@option("--workers", group="execution", type=int,
        help="Evaluations in flight with --executor ray. [default: all CPU cores]")
@option("--address", group="execution",
        help="Ray cluster to join: auto (the one `ray start` made on this machine, or "
             "RAY_ADDRESS) or HOST:PORT of its head (default: start a local Ray). See "
             "docs/cluster.md.")
@option("--cpus-per-eval", group="execution", type=float,
        help="CPUs one evaluation reserves on Ray (fractions allowed). [default: 1]")
@option("--gpus-per-eval", group="execution", type=float,
        help="GPUs one evaluation reserves on Ray, e.g. 0.25 to share a GPU by four. "
             "[default: 0]")
@option("--threads", group="execution", type=int,
        help="Torch threads per evaluation. [default: torch's choice]")
def search(name: str, db_path: str, workers: int | None, executor: str,
           address: str | None, cpus_per_eval: float | None, gpus_per_eval: float | None,
           **settings: Any) -> None:
    """Run an evolutionary search, or resume the search called NAME.

    With no options: a small real search on the embedded digits data, stored in
    ./evonorm.db as "default". --config FILE reads the options from a TOML file; options
    given here override it. Resuming needs only --name (and --db): the stored settings
    are used; a different value for any setting but --budget or --threads (given here or
    in the file) is refused (a larger --budget extends the search for that run). Progress
    goes to stderr; Ctrl-C stops cleanly (exit 130) and the search can be resumed later.
    One process runs a search at a time: a second one is refused (exit 3). A full disk
    (exit 74) or a lost Ray cluster (exit 75) stops the run; run the same command to
    resume (docs/faults.md).

    With --task planted --target LAYER the search trains nothing: each candidate is
    scored by R^2 against the planted LAYER on three input regimes (the "proxies"), and
    the summary says whether and when LAYER was recovered (a ground truth for the
    engine; see docs/method.md).
    """
    from db.store import SearchStore
    from workers.datasets import load_proxy_data
    from workers.executors import make_evaluator

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    path = Path(db_path).expanduser()
    config, resuming = _resolve(path, name, _overrides(dict(settings)))
    _check_planted_options(config, settings)
    _check_settings(config)
    if resuming and _budget_done(path, name, config):
        return
    # A planted search builds its own inputs (workers.planted): no data set to load.
    data = None if config.task == "planted" else load_proxy_data(config.dataset, config.proxies)
    if data is not None:
        _check_own_proxies(config, data)
    # The executor is built (and --address reached) before the database is written.
    evaluator = make_evaluator(executor, data=data, workers=workers, address=address,
                               cpus_per_eval=cpus_per_eval, gpus_per_eval=gpus_per_eval)
    try:
        store = SearchStore.open(path, create=True)
    except BaseException:
        evaluator.shutdown()
        raise
    resume = f"evonorm search --name {name} --db {path}" + (f" --address {address}" if address else "")
    with store:
        try:
            with hold_lease(store, name):
                record = store.find_search(name) if resuming else None
                if record is None:
                    record = store.create_search(name, config.to_dict(), config.seed)
                click.echo(f"{'resuming' if resuming else 'starting'} search {name!r} in {path} "
                           f"({executor} executor)", err=True)
                final = _run_controller(store, record, config, evaluator, resume)
        finally:
            evaluator.shutdown()
        if final.interrupted:
            click.echo(f"interrupted: {final.in_flight} in-flight evaluation(s) will be redone; "
                       f"resume with: {resume}", err=True)
            # SystemExit, not ctx.exit: the group runs with standalone_mode=False, where
            # click turns ctx.exit(code) into a return value that main() drops.
            sys.exit(INTERRUPTED_EXIT_CODE)
        _print_summary(store, record.id, config)
        _print_recovery(store, record.id, config)


def _run_controller(store: Any, record: Any, config: SearchConfig, evaluator: Any,
                    resume: str) -> Progress:
    """Run the search to its budget, printing progress; on a stop before it (Ctrl-C, the
    executor lost, a failed write) hand the evaluations in flight back to pending, their
    attempt not counted, and explain how to resume. (A lease taken over by another process
    stops it with SearchRunning from its next write, handing nothing back.)"""
    printer = _ProgressPrinter()
    try:
        try:
            final = SearchController(store, record, config, evaluator, progress=printer).run()
        finally:
            printer.finish()
    except ExecutorLost as error:
        numbers = _release(store, record.id)
        raise ExecutorLost(
            f"{error}. The search stopped; nothing was recorded as a candidate's failure: "
            f"{_in_flight_text(numbers)}. Restart the cluster (or drop --address to run on a "
            f"local Ray instance), then resume with: {resume}"
        ) from None
    except DatabaseWriteError:
        _release(store, record.id)  # best effort: the disk may refuse this write too
        raise
    except KeyboardInterrupt:  # outside the controller's loop (it handles its own)
        _release(store, record.id)
        raise
    if final.line() != printer.last_line:
        click.echo(final.line(), err=True)
    if final.interrupted:
        _release(store, record.id)
    return final


def _release(store: Any, search_id: int) -> list[int]:
    """Numbers of the candidates whose evaluation in flight went back to pending ([] when
    the database refuses the write: a resume then counts that attempt)."""
    try:
        return store.release_inflight(search_id)
    except StoreError:
        return []


def _in_flight_text(numbers: list[int]) -> str:
    if not numbers:
        return "no evaluation was in flight"
    return (f"the evaluations in flight (candidate number{'s' if len(numbers) > 1 else ''} "
            f"{numbers_text(numbers)}) are pending again")


def _budget_done(path: Path, name: str, config: SearchConfig) -> bool:
    """For a finished search, say so and print its front without starting any executor."""
    from db.store import SearchStore
    from evonorm_search.search.budget import counts_toward_budget

    with SearchStore.open(path, readonly=True) as store:
        record = store.get_search(name)
        candidates = store.candidates(record.id)
        if any(c.status in ("pending", "running") for c in candidates):
            return False
        if _reevaluations_left(store, record.id, config):
            return False
        submitted = sum(counts_toward_budget(c) for c in candidates)
        if submitted < config.budget:
            return False
        click.echo(f"search {name!r} in {path} is complete: {submitted} of its budget of "
                   f"{config.budget} evaluated; pass a larger --budget to extend it", err=True)
        _print_summary(store, record.id, config)
        _print_recovery(store, record.id, config)
        return True


def _reevaluations_left(store: Any, search_id: int, config: SearchConfig) -> bool:
    """Whether re-evaluations are unfinished or still due (a run killed before them)."""
    from evonorm_search.search.fidelity import to_reevaluate

    if config.reevaluate <= 1:
        return False
    outcomes = store.trial_outcomes(search_id)
    if outcomes.get("pending") or outcomes.get("running"):
        return True
    population = store.population(search_id, config.population)
    return bool(to_reevaluate(population, config.proxies, config.reevaluate,
                              store.trial_counts(search_id), set()))


def _print_summary(store: Any, search_id: int, config: SearchConfig) -> None:
    """The search's best layers (Pareto front of the done candidates) on stdout, each
    known layer named after its formula."""
    from evonorm_search.known import formula_label
    from evonorm_search.graph import LayerGraph
    from evonorm_search.search.selection import pareto_front
    from evonorm_search.simplify import simplified_label

    done = store.candidates(search_id, ["done"])
    if not done:
        click.echo("no candidate passed the rejection protocols yet")
        return
    points = [[c.accuracies.get(p, 0.0) for p in config.proxies] for c in done]
    seeds = " (mean +- standard error over seeds)" if config.reevaluate > 1 else ""
    click.echo(f"Pareto front ({', '.join(config.proxies)}){seeds}:")
    for index in pareto_front(points):
        candidate = done[index]
        scores = " ".join(_mean_with_error(candidate, p) for p in config.proxies)
        count = f"  {candidate.seed_count} seeds" if config.reevaluate > 1 else ""
        graph = LayerGraph.from_json(candidate.graph_json)
        simplified = simplified_label(graph)
        shorter = f"  [simplified: {simplified}]" if simplified else ""
        click.echo(f"  id {candidate.id:>5}  {scores}{count}  {formula_label(graph)}{shorter}")
    note = score_note(config.proxies) if config.task == "classification" else None
    if note:
        click.echo(note)


def _mean_with_error(candidate: Any, proxy: str) -> str:
    mean = f"{candidate.accuracies.get(proxy, 0.0):.3f}"
    error = candidate.standard_errors.get(proxy)
    return mean if error is None else f"{mean}+-{error:.3f}"


def _print_recovery(store: Any, search_id: int, config: SearchConfig) -> None:
    """For a planted search: whether, when and how its target was recovered (the strict
    criterion: also on the regime the search never scored, or the identical formula)."""
    from evonorm_search.search.budget import counts_toward_budget
    from evonorm_search.graph import LayerGraph
    from evonorm_search.known import formula_label
    from evonorm_search.planted import (
        CHECK_R2, RECOVERY_R2, check_regime_names, first_recovery, target_slot,
    )
    from workers.planted import check_scores

    if config.task != "planted" or config.target is None:
        return
    target = LayerGraph.from_json(config.target)
    found = first_recovery(store.candidates(search_id), config.proxies, target,
                           counts_toward_budget,
                           check=lambda graph: check_scores(graph, config.target or ""))
    click.echo(f"planted target: {formula_label(target)}")
    if found is None:
        click.echo(f"not recovered (no layer reached R^2 >= {RECOVERY_R2} on every regime and "
                   f"{CHECK_R2} on the unscored "
                   f"{', '.join(check_regime_names(target_slot(target)))}, nor is the "
                   "target's formula)")
    else:
        click.echo(f"recovered by id {found.candidate_id} after {found.evaluations} "
                   f"evaluations ({found.kind}): {found.formula}")
        if found.kind != "identical":
            click.echo(f"  simplified: {found.simplified}"
                       f"{'  (the target formula)' if found.simplified_identical else ''}")


COMMANDS: list[click.Command] = [search]
