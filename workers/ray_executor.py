"""The Ray executor: evaluates candidates on a local Ray instance or on a Ray cluster.

Owns everything Ray-specific in the search: attaching to a cluster (or starting a local
instance), sizing the number of evaluations in flight from the cluster's resources,
shipping each data set once through the object store, and telling apart the faults of
a run on a cluster:
- a worker process or a worker node that dies mid-evaluation: Ray reruns the task up to
  `max_retries` times, then (and at once with `max_retries=0`, as the CLI runs it, leaving
  the resubmission to its caller, who records each attempt) the future raises
  `EvaluationLost`;
- the cluster itself lost (its head's GCS stops accepting connections, or this machine's
  raylet dies): every future in flight, and every later `submit` or `capacity`, raises
  `evonorm_search.errors.ExecutorLost`, so the caller stops instead of recording failures.
  A watchdog thread probes the GCS port every `WATCH_INTERVAL` seconds, well before Ray's
  own client gives up (it ends the process after 60 s without the GCS).
Ray's `(raylet)` notices (a worker or node died, ...) are printed on stderr, not on stdout
where the commands print their results.

Only plain values cross the Ray boundary: tasks and results travel as their JSON-able
dicts (`EvalTask.to_dict`, `EvalResult.to_dict`); the data set is a `ray.put` object the
workers fetch once per node and keep in memory per worker process. Workers never touch
the database: the controller that owns this evaluator is its only writer.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import ray
import ray.exceptions

from evonorm_search.errors import EvonormError, ExecutorLost
from evonorm_search.task import DatasetSpec, EvalResult, EvalTask

EvaluateFn = Callable[[EvalTask, Any], EvalResult]
DatasetLoader = Callable[[DatasetSpec], Any]

# Seconds to wait for the cluster's GCS port before declaring it unreachable. Ray's own
# connection attempt retries for over a minute and logs each try, so probe first.
CONNECT_TIMEOUT = 5.0
# Seconds between re-reads of the cluster's resources for `capacity` (nodes may join).
CAPACITY_REFRESH = 5.0
# The cluster watchdog probes the GCS port every WATCH_INTERVAL seconds. The cluster is
# lost after WATCH_REFUSALS refusals in a row (its host is up and nothing listens: the
# head process died), or after WATCH_SILENCE seconds without an answer (the head machine
# or the network is gone; Ray's own client ends the process after 60 s of that).
WATCH_INTERVAL = 0.5
WATCH_REFUSALS = 3
WATCH_SILENCE = 20.0
PROBE_TIMEOUT = 2.0
# File where `ray start --head` records the address of the cluster it started; None:
# where Ray puts it (`_ray_address_file`). Tests point it elsewhere.
_RAY_ADDRESS_FILE: str | None = None


class EvaluationLost(RuntimeError):
    """Ray gave up on an evaluation: its worker or node died more often than the retry cap,
    or the evaluation function itself raised (a bug: `evaluate` returns failures as values)."""


class ClusterLost(ExecutorLost):
    """The Ray cluster this evaluator uses is gone: nothing more can be evaluated."""


@dataclass(frozen=True)
class RayStats:
    """What the evaluator has observed so far (for progress reports and benchmarks).

    `busy_seconds` is the time spent inside the evaluation function, summed over the
    evaluations that returned; `tasks_per_node` counts them by Ray node id; `spans` are
    their (start, end) times on the workers' clocks (`time.time()`), in arrival order.
    """

    completed: int
    lost: int
    busy_seconds: float
    tasks_per_node: dict[str, int]
    spans: tuple[tuple[float, float], ...]


def _default_evaluate() -> EvaluateFn:
    from workers.evaluate import evaluate

    return evaluate


def _default_loader() -> DatasetLoader:
    from workers.datasets import load_dataset

    return load_dataset


# ---------------------------------------------------------------------------- worker side

# Per worker process: the last data set fetched, keyed by its object id, so a worker that
# evaluates many candidates deserializes the data set once rather than once per task.
_worker_data: dict[str, Any] = {}


def _fetch_data(data_box: list[ray.ObjectRef]) -> Any:
    """The data set behind the (boxed, so Ray does not resolve it per task) object ref;
    None for an empty box (a task that needs no data set)."""
    if not data_box:
        return None
    ref = data_box[0]
    key = ref.hex()
    if key not in _worker_data:
        _worker_data.clear()
        _worker_data[key] = ray.get(ref)
    return _worker_data[key]


def _run_evaluation(
    evaluate_fn: EvaluateFn, task_dict: dict[str, Any], data_box: list[ray.ObjectRef]
) -> dict[str, Any]:
    """Body of the Ray task: evaluate one candidate, report the result and where it ran."""
    data = _fetch_data(data_box)
    started_at, started = time.time(), time.monotonic()
    result = evaluate_fn(EvalTask.from_dict(task_dict), data)
    return {
        "result": result.to_dict(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "busy_seconds": time.monotonic() - started,
        "started_at": started_at,
    }


_remote_evaluation = ray.remote(_run_evaluation)


# ---------------------------------------------------------------------------- driver side


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise EvonormError(
            f"Ray address {address!r} is not HOST:PORT: pass --address auto, or the head "
            "node's address as printed by `ray start --head` (e.g. 10.0.0.5:6379)"
        )
    return host.strip("[]"), int(port)


def resolve_address(address: str) -> str:
    """HOST:PORT of the cluster to join: `address` itself, or for "auto" the RAY_ADDRESS
    environment variable, else the cluster last started on this machine by `ray start`."""
    if address.startswith("ray://"):
        raise EvonormError(
            f"Ray Client addresses ({address}) are not supported: run the search on a node "
            "of the cluster and pass the head's HOST:PORT (or auto) to --address"
        )
    if address != "auto":
        return address
    from_env = os.environ.get("RAY_ADDRESS", "").strip()
    if from_env:
        return from_env
    address_file = _ray_address_file()
    try:
        with open(address_file, encoding="utf-8") as handle:
            recorded = handle.read().strip()
    except FileNotFoundError:
        recorded = ""
    if not recorded:
        raise EvonormError(
            "--address auto found no Ray cluster on this machine (RAY_ADDRESS is unset and "
            f"{address_file} is missing): start one with `ray start --head`, or pass "
            "--address HOST:PORT, or drop --address to use a local Ray instance"
        )
    return recorded


def _ray_address_file() -> str:
    """Where `ray start` on this machine records its cluster's address, as Ray itself
    finds it: `ray/ray_current_cluster` under $RAY_TMPDIR, else $TMPDIR, else /tmp."""
    if _RAY_ADDRESS_FILE is not None:
        return _RAY_ADDRESS_FILE
    if "RAY_TMPDIR" in os.environ:
        base = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        base = os.environ["TMPDIR"]
    else:
        base = "/tmp"
    return os.path.join(base, "ray", "ray_current_cluster")


def _check_reachable(address: str, resolved: str) -> None:
    host, port = _split_host_port(resolved)
    shown = address if address == resolved else f"{address} ({resolved})"
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as error:
        raise EvonormError(
            f"cannot reach the Ray cluster at {shown}: {error.strerror or error}; check that "
            "`ray start --head` is running there and that the port is open, or fix --address"
        ) from None


class RayEvaluator:
    """Runs `evaluate_fn(task, data)` as Ray tasks; see the module docstring.

    `address`: None starts a private local Ray instance using this machine's cores;
    "auto" or HOST:PORT attaches to a running cluster (an unreachable one raises
    `EvonormError` naming the address within CONNECT_TIMEOUT seconds). If this process
    is already connected to Ray (e.g. a test cluster), that connection is used and left
    open on `shutdown`.
    `workers`: evaluations in flight; None follows the cluster's size (its CPUs divided
    by `cpus_per_eval`, and its GPUs by `gpus_per_eval` when that is set).
    `max_retries`: re-runs of an evaluation whose worker process or node died.
    `dataset_loader`: DatasetSpec -> prepared data, called once per distinct spec in
    this process (default `workers.datasets.load_dataset`).
    """

    def __init__(
        self,
        evaluate_fn: EvaluateFn | None = None,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_eval: float = 1.0,
        gpus_per_eval: float = 0.0,
        max_retries: int = 2,
        dataset_loader: DatasetLoader | None = None,
    ) -> None:
        _check_settings(workers, cpus_per_eval, gpus_per_eval, max_retries)
        self._evaluate = evaluate_fn if evaluate_fn is not None else _default_evaluate()
        self._load = dataset_loader if dataset_loader is not None else _default_loader()
        self._workers = workers
        self._cpus = float(cpus_per_eval)
        self._gpus = float(gpus_per_eval)
        self.max_retries = max_retries
        self._owns_connection = _connect(address)
        try:
            self._check_feasible()
        except EvonormError:
            self._disconnect()
            raise
        self._remote = _remote_evaluation.options(
            num_cpus=self._cpus,
            num_gpus=self._gpus,
            max_retries=max_retries,
            retry_exceptions=False,
        )
        self._data_refs: dict[DatasetSpec, ray.ObjectRef] = {}
        self._lock = threading.Lock()
        self._pending: dict[Future[EvalResult], ray.ObjectRef] = {}
        self._completed = 0
        self._lost = 0
        self._busy = 0.0
        self._per_node: Counter[str] = Counter()
        self._spans: list[tuple[float, float]] = []
        self._capacity = 1
        self._capacity_read_at = -math.inf
        self._closed = False
        self._address = address
        self._cluster_loss: str | None = None  # why the cluster is lost, once it is
        self._gcs = ray.get_runtime_context().gcs_address
        self._stop_watch = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="evonorm-ray-watchdog",
                                          daemon=True)
        self._watchdog.start()

    # ---- the Evaluator protocol -------------------------------------------------------

    @property
    def retries_lost_work(self) -> bool:
        """Whether Ray re-runs an evaluation whose worker died (`max_retries` > 0) before
        failing it; with 0 the caller resubmits (and records each attempt)."""
        return self.max_retries > 0

    @property
    def capacity(self) -> int:
        """Evaluations to keep in flight: `workers`, else what the cluster fits right now."""
        self._raise_if_lost()
        if self._workers is not None:
            return self._workers
        now = time.monotonic()
        if now - self._capacity_read_at >= CAPACITY_REFRESH:
            self._capacity = max(1, self._slots(ray.cluster_resources()))
            self._capacity_read_at = now
        return self._capacity

    def submit(self, task: EvalTask) -> Future[EvalResult]:
        """Start evaluating `task` on the cluster; the future gets its `EvalResult`, or
        `EvaluationLost` when Ray gave up on it."""
        if self._closed:
            raise RuntimeError("RayEvaluator.submit after shutdown")
        self._raise_if_lost()
        # A planted task builds its own inputs: no data set to ship.
        data_box = [] if task.kind == "planted" else [self._data_ref(task.dataset)]
        ref = self._remote.remote(self._evaluate, task.to_dict(), data_box)
        outer: Future[EvalResult] = Future()
        outer.set_running_or_notify_cancel()
        with self._lock:
            self._pending[outer] = ref
        ref.future().add_done_callback(lambda inner: self._finish(outer, inner))
        return outer

    def shutdown(self) -> None:
        """Cancel what is still running, fail its futures, and leave Ray if we joined it."""
        self._stop_watch.set()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending.items())
            self._pending.clear()
        for outer, ref in pending:
            if self._cluster_loss is None:  # a lost cluster cannot cancel anything
                ray.cancel(ref, force=True)
            if not outer.done():
                outer.set_exception(EvaluationLost("the evaluator was shut down"))
        self._data_refs.clear()
        if self._cluster_loss is None:
            self._disconnect()
        # else: leaving a lost cluster takes Ray ~5 s; its exit handler does that once the
        # command has said what happened (call ray.shutdown() to leave it sooner).

    # ---- observations ------------------------------------------------------------------

    def stats(self) -> RayStats:
        with self._lock:
            return RayStats(
                completed=self._completed,
                lost=self._lost,
                busy_seconds=self._busy,
                tasks_per_node=dict(self._per_node),
                spans=tuple(self._spans),
            )

    # ---- internals ---------------------------------------------------------------------

    def _slots(self, resources: dict[str, float]) -> int:
        slots = math.floor(resources.get("CPU", 0.0) / self._cpus + 1e-9)
        if self._gpus > 0:
            slots = min(slots, math.floor(resources.get("GPU", 0.0) / self._gpus + 1e-9))
        return slots

    def _check_feasible(self) -> None:
        """Refuse resources no node can provide: Ray would queue such tasks forever."""
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        if any(self._slots(resources) >= 1 for resources in nodes):
            return
        have = ", ".join(
            f"{r.get('CPU', 0):g} CPU/{r.get('GPU', 0):g} GPU" for r in nodes
        ) or "no live nodes"
        raise EvonormError(
            f"no Ray node can run an evaluation needing {self._cpus:g} CPU and "
            f"{self._gpus:g} GPU (nodes: {have}): lower --cpus-per-eval/--gpus-per-eval "
            "or add bigger nodes to the cluster"
        )

    def _data_ref(self, spec: DatasetSpec) -> ray.ObjectRef:
        ref = self._data_refs.get(spec)
        if ref is None:
            ref = ray.put(self._load(spec))
            self._data_refs[spec] = ref
        return ref

    def _finish(self, outer: Future[EvalResult], inner: Future[Any]) -> None:
        """Runs on Ray's callback thread when the task's object is ready (or lost)."""
        error = inner.exception()
        loss = None if error is None else self._cluster_loss_behind(error)
        if loss is not None:
            self._declare_lost(loss)
            return
        with self._lock:
            if self._pending.pop(outer, None) is None:
                return  # shut down or cluster lost meanwhile: the future already failed
            if error is None:
                reply = inner.result()
                self._completed += 1
                self._busy += float(reply["busy_seconds"])
                self._per_node[reply["node_id"]] += 1
                start = float(reply["started_at"])
                self._spans.append((start, start + float(reply["busy_seconds"])))
            else:
                self._lost += 1
        if error is None:
            outer.set_result(EvalResult.from_dict(reply["result"]))
        else:
            outer.set_exception(self._lost_error(error))

    def _lost_error(self, error: BaseException) -> EvaluationLost:
        # The caller stores this as the candidate's reason, which names it already (a row
        # id here would be no help: users know candidates by their number).
        if isinstance(error, ray.exceptions.RayTaskError):
            last = str(error).strip().splitlines()[-1] if str(error).strip() else ""
            return EvaluationLost(f"the evaluation function raised: {last}")
        tries = f" on all {self.max_retries + 1} attempts" if self.max_retries else ""
        return EvaluationLost(
            f"its worker process or node died{tries} ({type(error).__name__}: {_first_line(error)})"
        )

    # ---- the cluster itself ---------------------------------------------------------------

    def _watch(self) -> None:
        """Declare the cluster lost when its GCS refuses WATCH_REFUSALS probes in a row or
        answers none for WATCH_SILENCE seconds."""
        refusals, silent_since = 0, None
        while not self._stop_watch.wait(WATCH_INTERVAL):
            answer = _probe(self._gcs)
            if answer == "accepted":
                refusals, silent_since = 0, None
                continue
            refusals = refusals + 1 if answer == "refused" else 0
            silent_since = silent_since if silent_since is not None else time.monotonic()
            if refusals >= WATCH_REFUSALS:
                self._declare_lost(self._gcs_refuses())
                return
            if time.monotonic() - silent_since >= WATCH_SILENCE:
                self._declare_lost(f"its GCS at {self._gcs} has not answered for "
                                   f"{WATCH_SILENCE:.0f} s (the head machine or the network is down)")
                return

    def _gcs_refuses(self) -> str:
        return (f"its GCS at {self._gcs} refuses connections (the Ray processes of the head "
                "node are gone)")

    def _cluster_loss_behind(self, error: BaseException) -> str | None:
        """Why a failed evaluation means the cluster is lost: this machine's raylet died, or
        a node died and the GCS went with it (the head); None for a lost worker or node."""
        if isinstance(error, ray.exceptions.LocalRayletDiedError):
            return "the Ray processes of this machine (its raylet) died"
        if (isinstance(error, ray.exceptions.NodeDiedError | ray.exceptions.RaySystemError)
                and _probe(self._gcs) == "refused"):
            return self._gcs_refuses()
        return None

    def _declare_lost(self, reason: str) -> None:
        """Fail every future in flight with ClusterLost; later calls raise it too."""
        with self._lock:
            if self._cluster_loss is not None:
                return
            self._cluster_loss = reason
            pending = list(self._pending)
            self._pending.clear()
        for outer in pending:
            if not outer.done():
                outer.set_exception(self._cluster_lost())

    def _cluster_lost(self) -> ClusterLost:
        where = ("the local Ray instance" if self._address is None
                 else f"the Ray cluster at {self._address}")
        return ClusterLost(f"lost {where}: {self._cluster_loss}")

    def _raise_if_lost(self) -> None:
        if self._cluster_loss is not None:
            raise self._cluster_lost()

    def _disconnect(self) -> None:
        if self._owns_connection and ray.is_initialized():
            ray.shutdown()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _probe(address: str) -> str:
    """Whether HOST:PORT "accepted" a TCP connection, "refused" it, or stayed "silent"."""
    host, port = _split_host_port(address)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return "accepted"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "silent"


def _check_settings(
    workers: int | None, cpus_per_eval: float, gpus_per_eval: float, max_retries: int
) -> None:
    if workers is not None and workers < 1:
        raise EvonormError(f"--workers must be at least 1, got {workers}")
    if not 0 < cpus_per_eval < math.inf:  # NaN fails too
        raise EvonormError(f"--cpus-per-eval must be above 0 and finite, got {cpus_per_eval:g}")
    if not 0 <= gpus_per_eval < math.inf:
        raise EvonormError(f"--gpus-per-eval must be 0 or more and finite, got {gpus_per_eval:g}")
    if gpus_per_eval > 1 and gpus_per_eval != int(gpus_per_eval):
        raise EvonormError(
            f"--gpus-per-eval above 1 must be a whole number, got {gpus_per_eval:g}: "
            "use a fraction below 1 to share a GPU, or whole GPUs"
        )
    if max_retries < 0:
        raise EvonormError(f"max_retries must be 0 or more, got {max_retries}")


def _connect(address: str | None) -> bool:
    """Join or start Ray; True when this call did (so `shutdown` should leave it)."""
    _notices_to_stderr()
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {
        "logging_level": logging.ERROR,
        "log_to_driver": False,
        "include_dashboard": False,
    }
    if address is None:
        # "local" rather than None: None would silently join a cluster recorded by
        # `ray start` (or RAY_ADDRESS) instead of starting the private instance we want.
        ray.init(address="local", num_cpus=_machine_cores(), **quiet)
        return True
    resolved = resolve_address(address)
    _check_reachable(address, resolved)
    _authenticate(address, resolved)
    try:
        ray.init(address=resolved, **quiet)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as error:
        # e.g. a Ray version mismatch: Ray's message says which.
        raise EvonormError(
            f"could not join the Ray cluster at {address}: {error}; check that "
            f"`ray status --address {resolved}` works on this machine (with RAY_AUTH_MODE=token "
            "if the cluster uses token authentication), or fix --address"
        ) from None
    return True


def _notices_to_stderr() -> None:
    """Ray prints the cluster's error notices (`(raylet) A worker died ...`) on stdout from a
    thread of its own (ray._private.worker.listen_error_messages, Ray 2.60), where they
    would interleave with a command's results: send them to stderr with the progress."""
    worker_module = ray._private.worker
    printer = getattr(worker_module, "print_to_stdstream", None)
    if printer is None or getattr(printer, "to_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        printer({**data, "is_err": True}, ignore_prefix)

    to_stderr.to_stderr = True  # type: ignore[attr-defined]
    worker_module.print_to_stdstream = to_stderr


def _authenticate(address: str, resolved: str) -> None:
    """Put this process in the cluster's authentication mode, or refuse, saying what to
    set, a cluster that rejects it (`ray.init` would retry for many seconds, then say
    only "Failed to connect").

    Ray 2.60's `ray start --head` turns token authentication on whenever the head has a
    token (~/.ray/auth_token, which any local `ray.init` creates, a local search
    included) and RAY_AUTH_MODE is unset; but a client with RAY_AUTH_MODE unset stays
    in mode "disabled", sends no token, and such a cluster refuses it (InvalidAuthToken),
    whatever its address. So: when the cluster refuses this process and RAY_AUTH_MODE is
    unset, switch to token mode if this machine has a token (~/.ray/auth_token,
    RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH), as `ray.init(address="auto")` would, and try
    again. Only then: on a cluster without authentication, a token-mode driver's objects
    (the shipped data set) cannot be fetched from other nodes ("Owner worker ID ...").
    An explicit RAY_AUTH_MODE is left as it is.
    """
    if _gcs_accepts(resolved):
        return
    if "RAY_AUTH_MODE" not in os.environ and _enable_local_token() and _gcs_accepts(resolved):
        return
    shown = address if address == resolved else f"{address} ({resolved})"
    mode = os.environ.get("RAY_AUTH_MODE", "").strip().lower()
    get_token = ("copy the head node's ~/.ray/auth_token to this machine, or set "
                 "RAY_AUTH_TOKEN to its contents")
    if mode == "token":
        problem = ("refused this machine's Ray token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
                   "~/.ray/auth_token): it is not the cluster's")
        fix = f"use the cluster's token: {get_token}"
    elif mode:
        problem = f"requires token authentication, but RAY_AUTH_MODE={mode} is set here"
        fix = f"set RAY_AUTH_MODE=token (or unset it) and, if this machine has no token, {get_token}"
    else:
        problem = "requires token authentication and this machine has no Ray token"
        fix = get_token
    raise EvonormError(f"the Ray cluster at {shown} {problem}: {fix}; see docs/cluster.md")


def _gcs_accepts(resolved: str) -> bool:
    """False when the cluster's GCS refuses this process's credentials; probed with the
    GCS client `ray status` uses (a refusal takes milliseconds). Other failures are
    left to `ray.init` to report."""
    try:
        with _stderr_silenced():  # Ray's C++ client logs each refusal there
            ray._raylet.GcsClient(address=resolved)
    except ray.exceptions.AuthenticationError:
        return False
    except Exception:  # noqa: BLE001 - not an authentication problem
        return True
    return True


def _enable_local_token() -> bool:
    """Token mode for this process (and its children) if this machine has a Ray token."""
    try:
        from ray._private.authentication import authentication_token_setup as setup
    except ImportError:  # a Ray without token authentication
        return False
    log = logging.getLogger(setup.__name__)  # it warns that it enabled token mode
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return bool(setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False))
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block (C++ logging bypasses sys.stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
