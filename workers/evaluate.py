"""`evaluate(task) -> EvalResult`: score one candidate layer on the proxy networks.

What differs between proxies (model, data, optimizer, stability protocol, score and
quality bar) is `workers.proxy_runs`; the stages below are the same for all. A layer
using statistics a proxy forbids (token-axis statistics in a causal language model,
`evonorm_search.proxy_info`) is rejected before anything is built (stage "axes").

A pure function of the task (and the prepared data, when the caller already loaded
it): no database, no global state left changed, deterministic for a seed on CPU.
It never raises: a rejection is a result with status "rejected", a candidate that
crashes (shape error, unsupported op, ...) is a result with status "failed".

Order of work, cheapest decisions first, nothing computed twice:
  1. build every proxy with the compiled layer;
  2. per proxy: stability screen (the first `stability_screen_steps` ascent steps,
     where most unstable layers already blow up), then the quality check
     (`quality_steps` of training, validation accuracy against the scaled bar);
     a quality rejection on the first proxy thus costs one short training run;
  2b. with a hurdle (multi-fidelity, `EvalTask.hurdle`): a candidate whose mean quality-
     check accuracy over the proxies is below the hurdle stops here, status "stopped";
  3. per proxy: the rest of the stability ascent (same probe, so the verdict equals
     one uninterrupted `stability_steps` run);
  4. per proxy: full training continues from the quality-check model up to `steps`,
     then validation accuracy is the fitness.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from evonorm_search.graph import LayerGraph
from evonorm_search.proxy_info import PROXY_INFO, forbidden_ops, needs_text, proxy_info
from evonorm_search.task import EvalResult, EvalTask, TrainSettings
from evonorm_search.threads import torch_threads
from workers.datasets import PreparedData, load_proxy_data, with_text
from workers.planted import evaluate_planted
from workers.proxies import is_own_proxy, resolve_proxy
from workers.proxy_runs import ProxyRun, start_run
from workers.rejection import Verdict
from workers.training import NonFiniteError

Progress = Callable[[str], None]
# Upper bounds of the training settings: far above any useful proxy, low enough that a
# typo is refused instead of exhausting memory or threads in every candidate.
MAX_WIDTH = 1024
MAX_DEPTH = 100
MAX_THREADS = 1024


class _Stopped(Exception):
    """The candidate passed the protocols so far but missed the hurdle."""


class _Rejected(Exception):
    """A protocol decided against the candidate (carries the stage and reason)."""

    def __init__(self, stage: str, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


def proxy_seed(seed: int, proxy: str) -> int:
    """The seed of one proxy run: stable across processes (unlike `hash`)."""
    return zlib.crc32(f"{seed}:{proxy}".encode()) & 0x7FFFFFFF


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def check_settings(settings: TrainSettings, proxies: tuple[str, ...]) -> None:
    """`ValueError` naming the first inconsistent setting (the caller's mistake)."""
    unknown = [name for name in proxies if name not in PROXY_INFO and not is_own_proxy(name)]
    if unknown or not proxies:
        raise ValueError(f"unknown or no proxies {unknown}; choose from {', '.join(PROXY_INFO)}, "
                         "or name your own builder as MODULE:FUNCTION (docs/own_proxy.md)")
    slots = {proxy_info(name).slot for name in proxies}
    if len(slots) > 1:
        raise ValueError(f"proxies {', '.join(proxies)} mix CNN norm-activation and Transformer "
                         "norm slots, which train with different recipes: name proxies of one "
                         "kind (e.g. resnet,mobilenetv2 or vit,charlm)")
    for name in proxies:
        if name not in PROXY_INFO:
            resolve_proxy(name)  # ProxyError (a ValueError) saying what to fix
    positive = {"batch_size": settings.batch_size, "steps": settings.steps,
                "width": settings.width, "depth": settings.depth,
                "stability_batch_size": settings.stability_batch_size}
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0 <= settings.quality_steps <= settings.steps:
        raise ValueError(f"quality_steps must be in 0..steps ({settings.steps}), "
                         f"got {settings.quality_steps}")
    if settings.stability_steps < 0 or settings.stability_screen_steps < 0:
        raise ValueError("stability step counts must be >= 0")
    if settings.eval_batches is not None and settings.eval_batches < 1:
        raise ValueError(f"eval_batches must be >= 1 or None, got {settings.eval_batches}")
    # Each test is written so that NaN fails it (every comparison with NaN is false).
    ranges = (
        ("learning_rate", settings.learning_rate, 0 < settings.learning_rate < math.inf,
         "a finite number above 0"),
        ("momentum", settings.momentum, 0 <= settings.momentum < 1, "in [0, 1)"),
        ("weight_decay", settings.weight_decay, 0 <= settings.weight_decay < math.inf,
         "a finite number >= 0"),
        ("quality_threshold", settings.quality_threshold, 0 <= settings.quality_threshold <= 1,
         "an accuracy in [0, 1]"),
        ("stability_threshold", settings.stability_threshold,
         settings.stability_threshold > 0, "above 0"),
        ("stability_step_size", settings.stability_step_size,
         0 < settings.stability_step_size < math.inf, "a finite number above 0"),
        ("width", settings.width, settings.width <= MAX_WIDTH, f"at most {MAX_WIDTH}"),
        ("depth", settings.depth, settings.depth <= MAX_DEPTH, f"at most {MAX_DEPTH}"),
        ("threads", settings.threads,
         settings.threads is None or 1 <= settings.threads <= MAX_THREADS,
         f"in 1..{MAX_THREADS} (torch threads)"),
    )
    for name, value, within, allowed in ranges:
        if not within:
            raise ValueError(f"{name} must be {allowed}, got {value}")


@dataclass
class _Clock:
    """Seconds per stage, summed over proxies."""

    seconds: dict[str, float] = field(default_factory=dict)
    current: str = "build"  # the stage running now, or the last one run

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.current = name
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class _Evaluation:
    """The state of one `evaluate` call; methods are the stages, in order."""

    def __init__(self, task: EvalTask, data: PreparedData, graph: LayerGraph,
                 progress: Progress) -> None:
        self.task = task
        self.settings = task.train
        self.data = data
        self.graph = graph
        self.progress = progress
        self.clock = _Clock()
        self.runs: list[ProxyRun] = []
        self.accuracies: dict[str, float] = {}
        self.early_accuracies: dict[str, float] = {}

    def build(self) -> None:
        for name in self.task.proxies:
            seed = proxy_seed(self.task.seed, name)
            _seed_everything(seed)
            self.runs.append(start_run(name, self.graph, self.data, self.settings, seed))

    def stability(self, run: ProxyRun, steps: int) -> None:
        if self.settings.stability_steps == 0:
            return
        verdict: Verdict = run.probe.run(min(steps, self.settings.stability_steps))
        if not verdict.passed:
            raise _Rejected("stability", f"{run.name}: {verdict.reason}")

    def quality(self, run: ProxyRun) -> None:
        s = self.settings
        if s.quality_steps == 0:
            return
        run.trainer.train_until(s.quality_steps)
        score = run.score("val", s.eval_batches)
        self.early_accuracies[run.name] = score
        verdict = run.quality(score, s.quality_steps)
        self.progress(f"{run.name}: {run.describe(score)} after {s.quality_steps} steps")
        if not verdict.passed:
            raise _Rejected("quality", f"{run.name}: {verdict.reason}")

    def hurdle(self) -> None:
        hurdle = self.task.hurdle
        if hurdle is None or not self.early_accuracies:
            return
        mean = sum(self.early_accuracies.values()) / len(self.early_accuracies)
        if mean < hurdle:
            self.progress(f"mean early accuracy {mean:.3f} below the hurdle {hurdle:.3f}")
            raise _Stopped(f"mean early accuracy {mean:.4f} < hurdle {hurdle:.4f}")

    def train(self, run: ProxyRun) -> None:
        total, chunk = self.settings.steps, max(1, self.settings.steps // 4)
        while run.trainer.steps_done < total:
            run.trainer.train_until(min(total, run.trainer.steps_done + chunk))
            self.progress(f"{run.name}: trained {run.trainer.steps_done}/{total} steps")
        self.accuracies[run.name] = run.score("val", self.settings.eval_batches)

    def run_all(self) -> None:
        """Stages in the order of the module docstring; raises on the first rejection."""
        with self.clock.stage("build"):
            self.build()
        for run in self.runs:
            self.progress(f"{run.name}: stability screen and quality check")
            with self.clock.stage("stability"):
                self.stability(run, self.settings.stability_screen_steps)
            with self.clock.stage("quality"):
                self.quality(run)
        self.hurdle()
        for run in self.runs:
            with self.clock.stage("stability"):
                self.stability(run, self.settings.stability_steps)
        for run in self.runs:
            with self.clock.stage("training"):
                self.train(run)

    def result(self, status: str, stage: str | None = None,
               reason: str | None = None) -> EvalResult:
        return EvalResult(
            status=status,  # type: ignore[arg-type]
            accuracies=dict(self.accuracies),
            stage=stage,
            reason=reason,
            steps={run.name: run.trainer.steps_done for run in self.runs},
            seconds={k: round(v, 4) for k, v in self.clock.seconds.items()},
            early_accuracies=dict(self.early_accuracies),
        )


def training_device() -> torch.device:
    """A GPU when this process sees one (a Ray task given --gpus-per-eval does), else
    the CPU. Results are deterministic per seed on the CPU only."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def evaluate(task: EvalTask, data: PreparedData | None = None,
             progress: Progress | None = None) -> EvalResult:
    """Score `task`'s layer on its proxies. Never raises; see the module docstring.

    `data` is the prepared data set when the caller loaded it once for many tasks;
    otherwise it is loaded from `task.dataset`. `progress` receives one-line messages.
    A planted task (`task.kind == "planted"`) is scored by `workers.planted` instead.
    """
    if task.kind == "planted":
        # Tensors of a few thousand values: intra-op threads only add synchronization
        # (measured 10x slower with 2 threads on a busy 2-core machine).
        with torch_threads(task.train.threads or 1):
            return evaluate_planted(task)
    say = progress or (lambda message: None)
    try:
        check_settings(task.train, task.proxies)
        graph = LayerGraph.from_json(task.graph_json)
        forbidden = forbidden_ops(graph, task.proxies)
        if forbidden:
            proxy = forbidden[0][0]
            return EvalResult("rejected", stage="axes", reason=(
                f"{proxy} forbids {', '.join(op for name, op in forbidden if name == proxy)}: "
                f"statistics over the token axis let position t see later tokens"))
        if data is None:
            data = load_proxy_data(task.dataset, task.proxies)
        elif needs_text(task.proxies):
            data = with_text(data, task.dataset)
        data = data.to(training_device())
    except Exception as error:  # invalid graph, settings or data: nothing was trained
        return EvalResult("failed", stage="build", reason=f"{type(error).__name__}: {error}")
    evaluation = _Evaluation(task, data, graph, say)
    with torch_threads(task.train.threads):
        try:
            evaluation.run_all()
        except _Stopped as stop:
            return evaluation.result("stopped", "hurdle", str(stop))
        except _Rejected as rejection:
            return evaluation.result("rejected", rejection.stage, rejection.reason)
        except NonFiniteError as error:
            return evaluation.result("rejected", evaluation.clock.current, str(error))
        except Exception as error:  # the candidate crashed: a value, not an exception
            return evaluation.result("failed", evaluation.clock.current,
                                     f"{type(error).__name__}: {error}")
    return evaluation.result("done")
