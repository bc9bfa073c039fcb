"""Executors: how the controller gets candidates evaluated, behind one small protocol.

The controller only sees `Evaluator`: `submit(task)` returns a standard
`concurrent.futures.Future`, `capacity` says how many evaluations to keep in flight.
`InlineEvaluator` evaluates inside `submit` (deterministic, for tests and debugging);
`make_evaluator("ray", ...)` returns the Ray one from `workers.ray_executor`.
A future that raises means an infrastructure failure; a candidate's own failure is an
`EvalResult` value. A future (or `submit`, or `capacity`) that raises
`evonorm_search.errors.ExecutorLost` means the executor can evaluate nothing more (the
Ray cluster is gone): the caller stops and leaves that work for a resume.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Literal, Protocol

from evonorm_search.errors import EvonormError
from evonorm_search.task import EvalResult, EvalTask

EvaluateFn = Callable[..., EvalResult]
ExecutorKind = Literal["inline", "ray"]
EXECUTOR_KINDS: tuple[str, ...] = ("inline", "ray")


class Evaluator(Protocol):
    """What the controller needs from an executor."""

    @property
    def capacity(self) -> int:
        """Evaluations to keep in flight."""

    @property
    def retries_lost_work(self) -> bool:
        """Whether a failed future already includes the executor's own retries (then the
        controller records the failure instead of resubmitting)."""

    def submit(self, task: EvalTask) -> Future[EvalResult]: ...

    def shutdown(self) -> None: ...


def _default_evaluate() -> EvaluateFn:
    from workers.evaluate import evaluate

    return evaluate


class InlineEvaluator:
    """Evaluates each task synchronously in `submit`: one in flight, fully deterministic.

    With `data` (a prepared data set) it calls `evaluate_fn(task, data)`, so the data set
    is loaded once per search instead of once per candidate; without, `evaluate_fn(task)`.
    An exception from `evaluate_fn` is put in the future (an infrastructure failure, as
    with a dead remote worker); KeyboardInterrupt propagates so Ctrl-C stops the search.
    """

    capacity = 1
    retries_lost_work = False

    def __init__(self, evaluate_fn: EvaluateFn | None = None, data: Any = None) -> None:
        self._evaluate = evaluate_fn if evaluate_fn is not None else _default_evaluate()
        self._data = data

    def submit(self, task: EvalTask) -> Future[EvalResult]:
        future: Future[EvalResult] = Future()
        try:
            result = self._evaluate(task) if self._data is None else self._evaluate(task, self._data)
        except Exception as error:  # an evaluator bug must not kill the search: retried, then failed
            future.set_exception(error)
        else:
            future.set_result(result)
        return future

    def shutdown(self) -> None:
        """Nothing runs in the background."""


def make_evaluator(
    kind: str,
    *,
    evaluate_fn: EvaluateFn | None = None,
    data: Any = None,
    workers: int | None = None,
    address: str | None = None,
    cpus_per_eval: float | None = None,
    gpus_per_eval: float | None = None,
) -> Evaluator:
    """The evaluator for `kind` ("inline" or "ray").

    For "ray", `workers` is the number of evaluations in flight (default: the cluster's
    CPUs) and `address` a Ray cluster to join (default: start a local instance);
    `cpus_per_eval`/`gpus_per_eval` are the Ray resources of one evaluation (default 1/0).
    """
    if kind == "inline":
        if address is not None:
            raise EvonormError("--address only applies to --executor ray: drop it or use ray")
        if cpus_per_eval is not None or gpus_per_eval is not None:
            raise EvonormError(
                "--cpus-per-eval/--gpus-per-eval only apply to --executor ray: drop them or use ray"
            )
        return InlineEvaluator(evaluate_fn, data)
    if kind == "ray":
        from workers.ray_executor import RayEvaluator

        return RayEvaluator(
            evaluate_fn=evaluate_fn if evaluate_fn is not None else _default_evaluate(),
            address=address,
            workers=workers,
            cpus_per_eval=1.0 if cpus_per_eval is None else cpus_per_eval,
            gpus_per_eval=0.0 if gpus_per_eval is None else gpus_per_eval,
            # The caller's data set was loaded and checked already: ship that one.
            dataset_loader=None if data is None else (lambda _spec: data),
            # The callers (the search controller, the re-ranking) resubmit a lost evaluation
            # themselves, recording each attempt (`evonorm status` shows the retries).
            max_retries=0,
        )
    raise EvonormError(f"unknown executor {kind!r}: use one of {', '.join(EXECUTOR_KINDS)}")
