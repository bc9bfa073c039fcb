"""The evaluation contract between the search and the workers.

An `EvalTask` is everything a worker needs to score one candidate layer; an `EvalResult`
is everything it reports back. Both are plain frozen values that convert to and from
JSON-able dicts, so they cross process and Ray boundaries and are stored in the database
without pickling. The search builds tasks, `workers.evaluate` consumes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

ResultStatus = Literal["done", "stopped", "rejected", "failed"]


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass `cls` from `data`, ignoring no key silently."""
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown settings {sorted(unknown)}")
    return cls(**data)


@dataclass(frozen=True)
class DatasetSpec:
    """Which data set to use and how to prepare it (see `workers.datasets`)."""

    name: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None  # None: the data set's native size
    normalize: bool = True
    augment: bool = False
    validation_fraction: float = 0.1
    max_train_examples: int | None = None  # None: all of the training split
    split_seed: int = 0  # fixes the train / validation (/ test) split
    download: bool = False  # cifar10: fetch the official archive into data_dir if missing
    # The text of language-model proxies (charlm): None for the pinned corpus every Python
    # carries (workers.corpus), else the path of a UTF-8 text file.
    corpus: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSpec:
        return _from_dict(cls, data)


# Training budgets of the data sets whose images are larger than the embedded 8x8 digits
# the `TrainSettings` defaults are tuned for: such images learn more slowly per step, and
# a batch of 32 left GN-ReLU at 24.5% after the 100 quality-check steps on CIFAR-10
# (16x16), too close to the 20% bar, where a batch of 64 gives it 27-30%.
LARGER_IMAGE_TRAINING: dict[str, Any] = {"batch_size": 64, "steps": 300, "quality_steps": 100}
DATASET_TRAINING: dict[str, dict[str, Any]] = {
    "cifar10": LARGER_IMAGE_TRAINING,
    "npz": LARGER_IMAGE_TRAINING,
}
# The Transformer proxies' budget (vit, charlm; any data set): AdamW with warm-up at
# width 64, depth 4, chosen by benchmarks/transformer_fidelity.py (docs/RESULTS.md).
TRANSFORMER_TRAINING: dict[str, Any] = {
    "batch_size": 64, "steps": 600, "quality_steps": 150, "learning_rate": 2e-3,
    "weight_decay": 0.05, "width": 64, "depth": 4, "stability_steps": 50,
    "stability_batch_size": 32,
}


@dataclass(frozen=True)
class TrainSettings:
    """Proxy training and rejection settings. The defaults suit the embedded digits data
    set on a 2-core laptop (a full evaluation in a few seconds); `for_dataset` gives the
    defaults of another data set.

    Digits at batch 32 for 200 steps scores every known layer 0.98-0.99, so a search on it
    cannot rank layers; a batch of 8 for 100 steps spreads the known layers over
    0.90-0.95, the widest range of the protocols measured by benchmarks/proxy_fidelity.py
    (docs/RESULTS.md), at a third of the cost. Its quality check comes at 50 steps."""

    batch_size: int = 8
    steps: int = 100  # total training steps per proxy, quality steps included
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    width: int = 16  # proxy base width (channels)
    depth: int = 1  # proxy blocks per stage
    # Rejection protocols (PAPER.md section 4); 0 steps disables a protocol.
    stability_steps: int = 100
    stability_threshold: float = 1e8
    stability_batch_size: int = 8
    stability_step_size: float = 0.05  # gradient-ascent step on the weights
    # Ascent steps run before the quality check; the rest only for candidates passing it.
    stability_screen_steps: int = 10
    quality_steps: int = 50
    quality_threshold: float = 0.2  # on 10 classes; scaled for other class counts
    eval_batches: int | None = None  # None: the whole validation split
    threads: int | None = None  # torch intra-op threads during evaluate; None: leave as is

    @classmethod
    def for_dataset(cls, name: str, slot: str = "norm_act", **settings: Any) -> TrainSettings:
        """The defaults for data set `name` and proxies of `slot` ("norm": the Transformer
        proxies, whatever the data set), with `settings` given explicitly on top."""
        defaults = TRANSFORMER_TRAINING if slot == "norm" else DATASET_TRAINING.get(name, {})
        return cls(**{**defaults, **settings})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainSettings:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class EvalTask:
    """One candidate to score: its graph, where to train it, and with which seed.

    `kind` "classification" trains the proxies named in `proxies`; "planted" compares the
    layer with the planted layer `target_json` on the regimes named in `proxies` (see
    `evonorm_search.planted`), ignoring `dataset` and `train`.
    """

    graph_json: str
    proxies: tuple[str, ...] = ("resnet", "mobilenetv2", "efficientnet")
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    train: TrainSettings = field(default_factory=TrainSettings)
    seed: int = 0
    candidate_id: int | None = None
    kind: str = "classification"
    target_json: str | None = None
    # Multi-fidelity: after the quality check the candidate trains on only when its mean
    # validation accuracy over the proxies reaches `hurdle`; None trains every candidate
    # that passes the protocols (the paper's behaviour).
    hurdle: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph_json": self.graph_json,
            "proxies": list(self.proxies),
            "dataset": self.dataset.to_dict(),
            "train": self.train.to_dict(),
            "seed": self.seed,
            "candidate_id": self.candidate_id,
            "kind": self.kind,
            "target_json": self.target_json,
            "hurdle": self.hurdle,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalTask:
        return cls(
            graph_json=data["graph_json"],
            proxies=tuple(data["proxies"]),
            dataset=DatasetSpec.from_dict(data["dataset"]),
            train=TrainSettings.from_dict(data["train"]),
            seed=int(data["seed"]),
            candidate_id=data.get("candidate_id"),
            kind=data.get("kind", "classification"),
            target_json=data.get("target_json"),
            hurdle=data.get("hurdle"),
        )


@dataclass(frozen=True)
class EvalResult:
    """What a worker reports for one task. Rejections and candidate failures are values.

    `accuracies` maps proxy name -> validation accuracy for proxies that finished
    training (all of them when status is "done"). `early_accuracies` maps proxy name ->
    validation accuracy at the quality check, for every proxy that reached it. Status
    "stopped" means the candidate passed every protocol but its early accuracy missed the
    task's hurdle, so it was not trained further (stage "hurdle"). `stage` names where a
    rejected or failed candidate stopped ("build", "stability", "quality", "training").
    `seconds` maps stage name -> seconds spent in it, summed over proxies.
    """

    status: ResultStatus
    accuracies: dict[str, float] = field(default_factory=dict)
    stage: str | None = None
    reason: str | None = None
    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    early_accuracies: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        return _from_dict(cls, data)
