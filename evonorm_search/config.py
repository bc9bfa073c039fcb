"""Search settings: one frozen, JSON-able `SearchConfig`, stored with the search in the DB.

Owns the defaults of a search, validation of user-supplied settings (with messages that
say how to fix them), applying command-line overrides (`"train.steps"` style keys), and
detecting conflicts between a stored search and the settings of a resume request.
Only the settings in `RESUMABLE` (budget, torch threads, CIFAR download) may change on
resume: they are not part of what is searched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from evonorm_search.errors import EvonormError, GraphError, StoreError
from evonorm_search.graph import MAX_INTERMEDIATE, LayerGraph
from evonorm_search.search.engines import DEFAULT_ENGINE, ENGINES
from evonorm_search.search.moves import check_mutations, in_space
from evonorm_search.search.scan import check_macros
from evonorm_search.search.selection import FITNESS_QUANTA
from evonorm_search.task import DatasetSpec, TrainSettings
from primitives import SPACES

# Settings a resume may change without conflicting with the stored search: the budget is
# a target; thread counts and downloading change speed or data access, not what is searched.
RESUMABLE = frozenset({"budget", "train.threads", "dataset.download"})


class ConfigError(EvonormError, ValueError):
    """A search setting is out of range or unknown."""


STRATEGIES: tuple[str, ...] = ("evolution", "random")
INIT_RANDOM, INIT_KNOWN = "random", "known"  # the `init` entries that are not layers
# The seed and the population size reach SQLite, whose INTEGER is a signed 64-bit number.
MAX_INTEGER = 2**63 - 1
MAX_REEVALUATE = 100  # seeds per front member: far above any useful count
# What a setting meant before it existed: a search stored without it resumes as it ran,
# whatever today's default is.
LEGACY_SETTINGS: dict[str, Any] = {"hurdle": None, "reevaluate": 1, "engine": "paper",
                                    **ENGINES["paper"]}
# What `scan_macros = true` meant when it was a switch (searches stored before the families).
LEGACY_MACROS: tuple[str, ...] = ("normalize", "skip")
MAX_ADAPTIVE_MOVES = 1.0  # 1: a move's weight follows its credit fully
SCAN_DEFERRED: tuple[str, ...] = ("each", "last")  # `SearchConfig.scan_deferred`
SCAN_TIES: tuple[str, ...] = ("newest", "oldest")  # `SearchConfig.scan_ties`
SCAN_ORDERS: tuple[str, ...] = ("mixed", "macros-first")  # `SearchConfig.scan_order`


@dataclass(frozen=True)
class SearchConfig:
    """Every setting that defines a search. Defaults: a small real search on digits.

    `budget` counts candidates submitted for evaluation (trained or rejected by the
    stability/quality protocols, or failed); structural-hash skips, fingerprint
    duplicates and fingerprint (NaN/inf) rejections cost no training and do not count.
    `init`: "random", or comma-separated entries tried in order before random layers:
    "known" (every known layer of the space), layer names (known or discovered) and layer
    graph files; `init_graphs` holds each file entry's graph JSON (see `read_init_files`),
    so that a resume needs no files.
    """

    space: str = "B"
    budget: int = 24
    population: int = 8
    seed: int = 0
    # Our default, not the paper's (random): on small budgets random layers almost never
    # pass rejection (0 of 30 on digits), so a random start never reaches evolution.
    init: str = "known"
    init_graphs: dict[str, str] = field(default_factory=dict)
    # "random": every child is a fresh random layer (the baseline evolution must beat).
    strategy: str = "evolution"
    proxies: tuple[str, ...] = ("resnet", "mobilenetv2", "efficientnet")
    num_nodes: int = MAX_INTERMEDIATE
    tournament_fraction: float = 0.05
    # Mutation operators, one drawn per child (evonorm_search.search.moves.MUTATIONS);
    # ("node",) is the paper's.
    mutations: tuple[str, ...] = ("node",)
    tournament_min_size: int = 2
    # The engine (evonorm_search.search.engines: the preset the engine settings started
    # from; the defaults below are "paper", the paper's engine; docs/method.md):
    engine: str = DEFAULT_ENGINE
    islands: int = 1  # populations sharing `population` (sizes differ by at most one)
    migration_rate: float = 0.0  # share of an island's children bred from another's best
    island_restart: int = 0  # restart an island after this many evaluations without progress
    elites: int = 0  # each island's best members, kept as parents whatever their age
    neutral_drift: bool = False  # among equal scores, the newest member is the elite
    scan_after: int = 0  # local scan after this many evaluations without progress (0: off)
    scan_elites: int = 3  # how many of the best distinct layers the scan edits
    scan_limit: int = 0  # scan proposals per stall, then evolution again (0: no limit)
    scan_sizes: bool = False  # the scan edits the best layer and the best smaller ones
    # When every neighbour of those is stored, the scan goes on down the hall of fame to
    # its `scan_depth` best distinct layers instead of going idle (0: it goes idle).
    scan_depth: int = 0
    # Down the ranking (`scan_depth`) the scan takes the best of each larger size that
    # scores above the best, then one layer per score, and tries all their macro edits
    # before any single edit, the best of a layer's winning.
    scan_sweep: bool = False
    # When a scanned layer's deferred families (hoist, free: `scan_macros`) are walked:
    # "each", right after its own neighbours; "last" (with `scan_sweep`), after every
    # scanned layer's own neighbours and the sweep, best score (without the size
    # penalty) first.
    scan_deferred: str = "each"
    # Among layers of equal score and size, the one the scan edits as the best or as the
    # best of a size: "newest" (the hall's order, which follows `neutral_drift`) or
    # "oldest" (a layer's walk is finished before the scan moves to an equal-scoring
    # variant of it that the walk itself proposed: `t / 0`, `t + v0`, `t * v1`).
    scan_ties: str = "newest"
    # The order of a scanned layer's own neighbours: "mixed" (single and macro edits in
    # one shuffled order) or "macros-first" (the macro families' edits, shuffled, then
    # the single edits, shuffled); deferred families' layers come after either.
    scan_order: str = "mixed"
    # Multi-node edit families the scan also makes (evonorm_search.search.scan.MACROS).
    scan_macros: tuple[str, ...] = ()
    adaptive_moves: float = 0.0  # strength of move-weight adaptation (0: fixed, uniform)
    size_penalty: float = 0.0  # fitness units per live node in selection
    # The scale selection compares scores on (evonorm_search.search.selection.Fitness):
    # "score" (the paper's) or "log_error" (decades of 1 - score).
    fitness: str = "score"
    max_attempts: int = 3  # submissions of one candidate before infrastructure failure
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    train: TrainSettings = field(default_factory=TrainSettings)
    # "classification": train the proxies; "planted": reproduce the planted layer `target`
    # (its graph JSON; `target_name` is the known name or file it came from) on the
    # regimes named in `proxies` (see evonorm_search.planted).
    task: str = "classification"
    target: str | None = None
    target_name: str | None = None
    # Noise-aware, multi-fidelity fitness (evonorm_search.search.fidelity): `hurdle` is the
    # quantile of the population's mean quality-check accuracies a new candidate must reach
    # to train on (None: every candidate that passes the protocols trains in full);
    # `reevaluate` is the number of seeds each member of the population's Pareto front is
    # trained with in the end (1: one seed per candidate, as in the paper).
    hurdle: float | None = None
    reevaluate: int = 3

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the bad setting and its allowed values."""
        if self.space not in SPACES:
            raise ConfigError(f"space {self.space!r} is unknown: use --space "
                              f"{' or --space '.join(SPACES)}")
        if self.task == "classification":
            from evonorm_search.proxy_info import check_space_for_proxies

            try:
                check_space_for_proxies(SPACES[self.space], self.proxies)
            except GraphError as error:
                raise ConfigError(str(error)) from None
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy {self.strategy!r} is unknown: use one of {', '.join(STRATEGIES)}"
            )
        if self.budget <= 0:
            raise ConfigError(f"budget must be a positive number of candidates, got {self.budget}")
        if not 2 <= self.population <= MAX_INTEGER:
            raise ConfigError(f"population must be at least 2 (and at most {MAX_INTEGER}), "
                              f"got {self.population}")
        if not 1 <= self.num_nodes <= MAX_INTERMEDIATE:
            raise ConfigError(f"num_nodes must be in 1..{MAX_INTERMEDIATE}, got {self.num_nodes}")
        if not 0.0 < self.tournament_fraction <= 1.0:
            raise ConfigError(
                f"tournament_fraction must be in (0, 1], got {self.tournament_fraction}"
            )
        if self.tournament_min_size < 1:
            raise ConfigError(f"tournament_min_size must be >= 1, got {self.tournament_min_size}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        try:
            check_mutations(self.mutations)
        except ValueError as error:
            raise ConfigError(f"{error} (--mutations)") from None
        if not self.proxies:
            raise ConfigError("no proxies given: name at least one, e.g. --proxies resnet")
        if not 0 <= self.seed <= MAX_INTEGER:
            raise ConfigError(f"seed must be >= 0 (and at most {MAX_INTEGER}), got {self.seed}")
        self._validate_task()
        self._validate_fidelity()
        self._validate_engine()
        self.init_layers()

    def _validate_engine(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine {self.engine!r} is unknown: use --engine "
                              f"{' or --engine '.join(ENGINES)}")
        if not 1 <= self.islands <= self.population // 2:
            raise ConfigError(f"islands must be in 1..{self.population // 2} (each island "
                              f"holds population // islands >= 2 members), got {self.islands}: "
                              "lower --islands or raise --population")
        if not 0.0 <= self.migration_rate <= 1.0:
            raise ConfigError(f"migration_rate must be a share in [0, 1], got {self.migration_rate}")
        if self.migration_rate > 0 and self.islands == 1:
            raise ConfigError("--migration-rate moves parents between islands: it needs "
                              "--islands 2 or more (or --migration-rate 0)")
        for name in ("island_restart", "scan_after", "scan_limit", "scan_depth", "elites"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a whole number >= 0 (0: off), got {value!r} "
                                  f"(--{name.replace('_', '-')})")
        if self.elites > self.population // self.islands:
            raise ConfigError(f"elites must be at most the island size "
                              f"{self.population // self.islands}, got {self.elites}")
        if self.scan_elites < 1:
            raise ConfigError(f"scan_elites must be >= 1, got {self.scan_elites}")
        try:
            check_macros(self.scan_macros)
        except ValueError as error:
            raise ConfigError(f"{error} (--scan-macros; none: no macro edits)") from None
        for name in ("neutral_drift", "scan_sizes", "scan_sweep"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.scan_sweep and not (self.scan_after and self.scan_depth and self.scan_macros):
            raise ConfigError("scan_sweep sweeps the macro edits of the layers the scan reaches "
                              "down the ranking: it needs --scan-after, --scan-depth and "
                              "--scan-macros (or --no-scan-sweep)")
        if self.scan_deferred not in SCAN_DEFERRED:
            raise ConfigError(f"scan_deferred {self.scan_deferred!r} is unknown: use "
                              f"{' or '.join(SCAN_DEFERRED)} (--scan-deferred)")
        if self.scan_ties not in SCAN_TIES:
            raise ConfigError(f"scan_ties {self.scan_ties!r} is unknown: use "
                              f"{' or '.join(SCAN_TIES)} (--scan-ties)")
        if self.scan_order not in SCAN_ORDERS:
            raise ConfigError(f"scan_order {self.scan_order!r} is unknown: use "
                              f"{' or '.join(SCAN_ORDERS)} (--scan-order)")
        if self.scan_deferred == "last" and not self.scan_sweep:
            raise ConfigError("scan_deferred 'last' walks the deferred families after the "
                              "sweep: it needs --scan-sweep (or --scan-deferred each)")
        if not 0.0 <= self.adaptive_moves <= MAX_ADAPTIVE_MOVES:
            raise ConfigError(f"adaptive_moves must be a strength in [0, {MAX_ADAPTIVE_MOVES}] "
                              f"(0: fixed uniform move weights), got {self.adaptive_moves}")
        if not 0.0 <= self.size_penalty < 1.0:
            raise ConfigError(f"size_penalty must be in [0, 1) (fitness units per node; e.g. "
                              f"1e-4 breaks near-ties toward fewer nodes), got {self.size_penalty}")
        if self.fitness not in FITNESS_QUANTA:
            raise ConfigError(f"fitness {self.fitness!r} is unknown: use --fitness "
                              f"{' or --fitness '.join(FITNESS_QUANTA)}")

    def _validate_fidelity(self) -> None:
        from evonorm_search.planted import SEED_NOISE

        if not 1 <= self.reevaluate <= MAX_REEVALUATE:
            raise ConfigError(f"reevaluate must be a number of seeds in 1..{MAX_REEVALUATE} "
                              f"(1: no re-evaluation), got {self.reevaluate}")
        if self.reevaluate > 1 and not SEED_NOISE.get(self.task, True):
            raise ConfigError(f"--reevaluate {self.reevaluate} re-scores front members with "
                              f"further seeds, but {self.task} scores do not depend on the "
                              "seed (a second evaluation repeats the first): drop --reevaluate")
        if self.hurdle is None:
            return
        if not 0.0 < self.hurdle < 1.0:
            raise ConfigError(f"hurdle must be a quantile strictly between 0 and 1 (e.g. "
                              f"--hurdle 0.5), or leave it off; got {self.hurdle}")
        if self.task != "classification":
            raise ConfigError("--hurdle applies to classification searches only: the planted "
                              "task has no quality check")
        if self.train.quality_steps == 0:
            raise ConfigError("--hurdle compares quality-check accuracies, but --quality-steps "
                              "is 0: set --quality-steps above 0 or leave --hurdle off")

    def _validate_task(self) -> None:
        from evonorm_search.planted import TASKS, regime_names

        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r} is unknown: use --task {' or --task '.join(TASKS)}")
        if self.task != "planted":
            if self.target is not None:
                raise ConfigError("--target only applies to a planted search: add --task planted")
            return
        if self.target is None:
            raise ConfigError("a planted search needs its target: add --target NAME_OR_JSON_FILE "
                              "(e.g. --target evonorm_s0)")
        regimes = regime_names(SPACES[self.space].slot)
        unknown = [name for name in self.proxies if name not in regimes]
        if unknown:
            raise ConfigError(f"unknown planted regime(s) {', '.join(unknown)} in --proxies: "
                              f"a planted search in space {self.space} compares layers on "
                              f"{', '.join(regimes)}")
        try:
            target = LayerGraph.from_json(self.target)
        except GraphError as error:
            raise ConfigError(f"invalid planted target: {error}") from None
        if not in_space(target, self.space):
            raise ConfigError(f"the target {self.target_name or target.formula()} uses ops the "
                              f"{self.space} space excludes ({SPACES[self.space].doc}): use "
                              f"{_spaces_holding(target, self.space)}")

    def init_layers(self) -> list[LayerGraph]:
        """The layers to start from, in order, each once (by structural hash); [] for a
        random start. ConfigError for an entry that names no layer, an invalid stored
        graph, or a layer outside the space (the `known` entry keeps those in it)."""
        from evonorm_search.known import KNOWN_LAYERS, NAMED_LAYERS, known_names

        entries = init_entries(self.init)
        if not entries:
            raise ConfigError("init is empty: use --init random, --init known, layer names "
                              "or layer graph JSON files")
        files = self.init_graphs
        if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in files.items()):
            raise ConfigError("init_graphs must map --init file names to layer graph JSON")
        stray = sorted(set(files) - set(entries))
        if stray:
            raise ConfigError(f"init_graphs holds {', '.join(stray)}, which init does not name")
        if entries == [INIT_RANDOM]:
            return []
        if INIT_RANDOM in entries:
            raise ConfigError("--init random starts from random layers only and takes no "
                              "other entries (random layers follow the listed ones anyway)")
        chosen: list[tuple[str, LayerGraph]] = []
        for entry in entries:
            if entry == INIT_KNOWN:
                # the known layers of the space's slot (a B/S search: the paper's nine)
                chosen += [(n, KNOWN_LAYERS[n]) for n in known_names(SPACES[self.space].slot)
                           if in_space(KNOWN_LAYERS[n], self.space)]
            elif entry in NAMED_LAYERS:
                chosen.append((entry, NAMED_LAYERS[entry]))
            elif entry in files:
                try:
                    chosen.append((entry, LayerGraph.from_json(files[entry])))
                except GraphError as error:
                    raise ConfigError(f"invalid --init layer {entry!r}: {error}") from None
            else:
                raise ConfigError(
                    f"unknown layer {entry!r} in --init: use random, known, names from "
                    f"{', '.join(NAMED_LAYERS)}, or layer graph JSON files"
                )
        outside = [name for name, graph in chosen if not in_space(graph, self.space)]
        if outside:
            first = next(g for n, g in chosen if n == outside[0])
            raise ConfigError(
                f"--init layers {', '.join(outside)} use ops the {self.space} space excludes "
                f"({SPACES[self.space].doc}): drop them or use {_spaces_holding(first, self.space)}"
            )
        unique: dict[str, LayerGraph] = {}
        for _, graph in chosen:
            unique.setdefault(graph.structural_hash(), graph)
        return list(unique.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["proxies"] = list(self.proxies)
        data["mutations"] = list(self.mutations)
        data["scan_macros"] = list(self.scan_macros)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """Inverse of `to_dict`; ConfigError for unknown keys or bad values."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown search settings {sorted(unknown)}")
        values = {**LEGACY_SETTINGS, **data}
        try:
            if "proxies" in values:
                values["proxies"] = tuple(values["proxies"])
            if "mutations" in values:
                values["mutations"] = tuple(values["mutations"])
            if isinstance(values.get("scan_macros"), bool):  # stored before the families
                values["scan_macros"] = LEGACY_MACROS if values["scan_macros"] else ()
            if "scan_macros" in values:
                values["scan_macros"] = tuple(values["scan_macros"])
            if "dataset" in values:
                values["dataset"] = DatasetSpec.from_dict(values["dataset"])
            if "train" in values:
                values["train"] = TrainSettings.from_dict(values["train"])
            return cls(**values)
        except (TypeError, ValueError) as error:
            if isinstance(error, ConfigError):
                raise
            raise ConfigError(f"invalid search settings: {error}") from error

    def with_overrides(self, overrides: dict[str, Any]) -> SearchConfig:
        """A copy with `overrides` applied; keys are field names, or "dataset.X"/"train.X"."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {"dataset": {}, "train": {}}
        for key, value in overrides.items():
            head, _, sub = key.partition(".")
            if sub and head in nested:
                nested[head][sub] = value
            else:
                top[key] = value
        data = self.to_dict()
        data.update(top)
        for head, values in nested.items():
            data[head] = {**data[head], **values}
        return SearchConfig.from_dict(data)

    def conflicts(self, requested: SearchConfig) -> list[str]:
        """Human-readable differences that forbid resuming this search with `requested`."""
        mine, theirs = _flatten(self.to_dict()), _flatten(requested.to_dict())
        return [
            f"{key}: stored {_brief(mine.get(key))}, requested {_brief(theirs.get(key))}"
            for key in sorted(set(mine) | set(theirs))
            if key not in RESUMABLE and mine.get(key) != theirs.get(key)
        ]

    def check_resume(self, requested: SearchConfig, name: str) -> None:
        """StoreError listing every conflicting setting, and how to proceed."""
        problems = self.conflicts(requested)
        if problems:
            raise StoreError(
                f"search {name!r} exists with different settings ({'; '.join(problems)}): "
                "resume it without those options (on the command line or in a --config file; "
                "only --budget and --threads may change), or start a new search with another "
                "--name"
            )


def init_entries(init: str) -> list[str]:
    """The comma-separated entries of an `init` setting, stripped, empty ones dropped."""
    return [entry.strip() for entry in init.split(",") if entry.strip()]


def read_init_files(init: str) -> dict[str, str]:
    """Entry -> validated graph JSON for each entry of `init` that is neither `random`,
    `known` nor a layer name: a layer graph file, read now (what `init_graphs` stores)."""
    from evonorm_search.known import NAMED_LAYERS
    from evonorm_search.layer_spec import load_graph_spec

    graphs = {}
    for entry in init_entries(init):
        if entry in (INIT_RANDOM, INIT_KNOWN) or entry in NAMED_LAYERS:
            continue
        try:
            graphs[entry] = load_graph_spec(entry).to_json()
        except EvonormError as error:
            raise ConfigError(f"--init: {error}") from None
    return graphs


def engine_preset(overrides: dict[str, Any]) -> dict[str, Any]:
    """The engine settings a new search with `overrides` starts from: the preset that
    `engine` names (default per task: `DEFAULT_ENGINES`) with `engine` itself, its islands
    and elites shrunk to fit a small `population` (values given in `overrides` are kept
    as given: the caller lays `overrides` over the result)."""
    engine = overrides.get("engine", DEFAULT_ENGINES.get(overrides.get("task", ""), DEFAULT_ENGINE))
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is unknown: use --engine "
                          f"{' or --engine '.join(ENGINES)}")
    preset = dict(ENGINES[engine])
    population = overrides.get("population", SearchConfig.population)
    if isinstance(population, int) and "islands" not in overrides:
        preset["islands"] = max(1, min(preset["islands"], population // 2))
        if preset["islands"] == 1:
            preset["migration_rate"] = 0.0
    islands = overrides.get("islands", preset["islands"])
    if isinstance(population, int) and isinstance(islands, int) and islands >= 1 \
            and "elites" not in overrides:
        preset["elites"] = min(preset["elites"], max(0, population // islands))
    return {**preset, "engine": engine}


def new_search_config(overrides: dict[str, Any]) -> SearchConfig:
    """A new search's settings: the defaults, with the training budget of the data set
    and the space's slot named in `overrides` (see `TrainSettings.for_dataset`) and the
    engine preset it names (`engine`, default per task: `DEFAULT_ENGINES`), then
    `overrides`. Without `proxies`, a planted search compares layers on every planted
    regime of the space's slot, a classification search trains the space's default
    proxies (the paper's three CNNs; vit and charlm for space T)."""
    from evonorm_search.planted import regime_names
    from evonorm_search.proxy_info import default_proxies

    overrides = {**engine_preset(overrides), **overrides}
    dataset = overrides.get("dataset.name", DatasetSpec().name)
    space = overrides.get("space", SearchConfig.space)
    slot = SPACES[space].slot if space in SPACES else "norm_act"
    planted = overrides.get("task") == "planted"
    if planted:
        # One evaluation per candidate: planted scores have no seed noise.
        overrides = {"reevaluate": 1, **overrides}
    if "proxies" not in overrides and space in SPACES:
        overrides = {**overrides,
                     "proxies": regime_names(slot) if planted else default_proxies(space)}
    train = TrainSettings.for_dataset(dataset, slot=slot)
    return SearchConfig(train=train).with_overrides(overrides)


def _spaces_holding(graph: LayerGraph, space: str) -> str:
    """`--space X` for the spaces holding `graph`, those of `space`'s slot first."""
    slot = SPACES[space].slot
    holding = sorted(graph.spaces, key=lambda name: SPACES[name].slot != slot)
    if not holding:
        return "a layer that no single space holds (mixing token and per-token statistics)"
    return "--space " + " or --space ".join(holding)


# The engine a new search starts from when none is named, per task (the rest: "paper"):
# planted searches recover their targets far more often with memetic-blocks (docs/RESULTS.md,
# "Guards and gates"); classification keeps the paper's engine.
DEFAULT_ENGINES: dict[str, str] = {"planted": "memetic-blocks"}


def _brief(value: Any, limit: int = 80) -> str:
    """`repr(value)`, shortened when long; a layer graph's JSON as its formula."""
    if isinstance(value, str) and value.startswith('{"format": "evonorm-layer-graph"'):
        try:
            value = f"layer {LayerGraph.from_json(value).formula()}"
        except GraphError:
            pass
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def stored_config(config: dict[str, Any]) -> SearchConfig:
    """The config of a stored search; StoreError when the stored JSON is not a valid one.

    A search of a task without seed noise stored with re-evaluation (planted searches
    before issue 16) resumes without it: its re-evaluations only repeated the same scores.
    """
    from evonorm_search.planted import SEED_NOISE

    if not SEED_NOISE.get(config.get("task", "classification"), True):
        config = {**config, "reevaluate": 1}
    try:
        return SearchConfig.from_dict(config)
    except ConfigError as error:
        raise StoreError(
            f"the stored search settings are invalid ({error}): the database may come from "
            "another version of evonorm; start a new search with another --name or --db"
        ) from error



assert all(getattr(SearchConfig, name) == value
           for name, value in ENGINES[DEFAULT_ENGINE].items()), "defaults are the default engine"
