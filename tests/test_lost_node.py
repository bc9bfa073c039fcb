"""A Ray cluster losing a node mid-search (issue 18, item 4), on a real local cluster: a head
started with `ray start --head` and a second node with `ray start --address`, both on
this machine with their own temp dir and home (token), as docs/cluster.md runs them.

- The second node is SIGKILLed (its whole process group) while it evaluates a candidate:
  the search goes on, loses no candidate, finishes its budget, and `status` shows the
  candidate that was submitted again.
- Then the head is SIGKILLed mid-search: the search stops within seconds with
  `error: lost the Ray cluster ...`, exit status 75, naming the candidates left pending;
  none is recorded as failed, no attempt is counted, and the same search resumes (here
  with the inline executor: the cluster is gone) to its budget with no gap or duplicate.
Ray's notices never reach stdout, where the search prints its results.

Only this module's own process groups are ever signalled (never `ray stop`). The cluster
costs about 10 s of CPU to start: both tests share it, the head test runs last (it ends
the cluster). A fast variant of each behaviour runs in tests/test_ray_search.py on the
shared in-process cluster and in tests/test_cli_search.py; this module is `slow`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from db.store import SearchStore
from tests.cli_runner import run_evonorm
from tests.test_ray_start_head import START_TIMEOUT, _free_port, _stop

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# Real evaluations long enough to be caught running (each worker's first one also
# imports torch), on 2 nodes of 1 CPU each: with 2 in flight, one runs on each node.
SEARCH = ["--executor", "ray", "--address", "auto", "--workers", "2", "--proxies", "resnet",
          "--steps", "60", "--quality-steps", "0", "--stability-steps", "0", "--width", "4",
          "--batch-size", "16", "--max-train-examples", "64", "--threads", "1",
          "--population", "2", "--seed", "3", "--reevaluate", "1"]


@dataclass
class Cluster:
    env: dict[str, str]
    root: Path
    head: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]


def _start(args: list[str], env: dict[str, str], root: Path, log: str) -> subprocess.Popen[bytes]:
    with (root / log).open("wb") as output:
        return subprocess.Popen([str(BIN / "ray"), "start", "--block", "--num-cpus", "1",
                                 "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *args],
                                env=env, cwd=root, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for(condition: object, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:g} s")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="evl", dir="/tmp"))  # short: Ray's socket paths
    home = root / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_TMPDIR=str(root), HOME=str(home), PYTHONPATH=str(Path(__file__).parents[1]))
    head = _start(["--head", "--port", str(_free_port()), "--include-dashboard", "false"],
                  env, root, "head.log")
    worker = None
    try:
        address_file = root / "ray" / "ray_current_cluster"
        _wait_for(lambda: address_file.exists() or head.poll() is not None, "the head started")
        assert head.poll() is None, (root / "head.log").read_text()
        address = address_file.read_text().strip()
        worker = _start(["--address", address], {**env, "RAY_AUTH_MODE": "token"}, root,
                        "worker.log")
        _wait_for(lambda: "Ray runtime started" in (root / "worker.log").read_text()
                  or worker.poll() is not None, "the second node joined")
        assert worker.poll() is None, (root / "worker.log").read_text()
        yield Cluster(env, root, head, worker)
    finally:
        for process in (worker, head):
            if process is not None:
                _stop(process)
                _kill_node(process)  # its task workers, in process groups of their own
        shutil.rmtree(root, ignore_errors=True)


def _rows(db: Path) -> list[tuple[int, str, int]]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as connection:
            return connection.execute("SELECT number, status, attempts FROM candidates").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []


def _search(cluster: Cluster, db: Path, budget: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "evonorm"), "search", "--name", "n", "--db", str(db), "--budget", str(budget),
         *SEARCH],
        env=cluster.env, cwd=db.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)


def _session(leader: int) -> list[tuple[int, bytes]]:
    """(pid, title) of the processes of the session `leader` started: a node's processes,
    its task workers included (they have process groups of their own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == leader:
                found.append((int(entry.name), (entry / "cmdline").read_bytes()))
        except (OSError, ProcessLookupError):
            continue
    return found


def _evaluating(node: subprocess.Popen[bytes]) -> bool:
    """Whether the node runs an evaluation (Ray titles a worker `ray::<function>` then)."""
    return any(title.startswith(b"ray::_run_evaluation") for _, title in _session(node.pid))


def _kill_node(node: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process of the node at once, as when its machine is lost."""
    for pid, _ in _session(node.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    node.wait(timeout=30)


def _check_complete(db: Path, budget: int) -> list:
    with SearchStore.open(db, readonly=True) as store:
        assert store.integrity_check() == "ok"
        rows = store.candidates(store.get_search("n").id)
    assert [r.number for r in rows] == list(range(len(rows)))
    assert len({r.structural_hash for r in rows}) == len(rows)
    assert all(r.status in ("done", "rejected", "duplicate", "stopped") for r in rows)
    assert sum(r.status != "duplicate" and r.stage != "fingerprint" for r in rows) == budget
    return rows


def test_losing_the_second_node_loses_nothing_and_status_shows_the_retry(
    cluster: Cluster, tmp_path: Path
) -> None:
    db = tmp_path / "w.db"
    search = _search(cluster, db, budget=4)
    try:
        # An evaluation executing on the second node (its worker titled ray::_run_evaluation).
        _wait_for(lambda: _evaluating(cluster.worker) or search.poll() is not None,
                  "an evaluation running on the second node", timeout=180)
        assert search.poll() is None, search.communicate()
        _kill_node(cluster.worker)
        out, err = search.communicate(timeout=300)
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    assert search.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "(raylet)" not in out
    assert out.startswith(("Pareto front", "no candidate passed")), out
    rows = _check_complete(db, budget=4)
    assert [r.number for r in rows if r.attempts == 2], rows  # the lost one ran again
    code, status, _ = run_evonorm("status", "n", "--db", str(db))
    assert code == 0 and "retried (an evaluation lost" in status, status
    print(f"\nsecond node killed -> exit 0; status: {status.splitlines()[-2].strip()}")


def test_losing_the_head_stops_the_search_with_a_resumable_error(
    cluster: Cluster, tmp_path: Path
) -> None:
    db = tmp_path / "h.db"
    search = _search(cluster, db, budget=5)
    try:
        _wait_for(lambda: "done" in [s for _, s, _ in _rows(db)]
                  and "running" in [s for _, s, _ in _rows(db)] or search.poll() is not None,
                  "a result and an evaluation in flight", timeout=180)
        assert search.poll() is None, search.communicate()
        before = _rows(db)
        _kill_node(cluster.head)
        killed = time.monotonic()
        out, err = search.communicate(timeout=120)
        stopped_in = time.monotonic() - killed
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    assert search.returncode == 75, err[-3000:]
    assert "Traceback" not in err and "(raylet)" not in out and out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: lost the Ray cluster at auto: its GCS at "), err[-3000:]
    assert "nothing was recorded as a candidate's failure" in last
    in_flight = sorted(n for n, s, _ in before if s == "running")
    assert f"candidate number{'s' if len(in_flight) > 1 else ''} " in last
    assert "resume with: evonorm search --name n --db" in last
    assert stopped_in < 30, stopped_in  # Ray alone would wait 60 s for the GCS
    print(f"\nhead killed -> exit {search.returncode} after {stopped_in:.1f} s: {last}")
    after = {n: (s, a) for n, s, a in _rows(db)}
    assert "failed" not in {s for s, _ in after.values()}
    for number, status, attempts in before:
        if status == "running":  # handed back, its attempt not counted
            assert after[number] == ("pending", attempts - 1)
    # The cluster is gone: resume on this machine alone.
    code, _, err = run_evonorm("search", "--name", "n", "--db", str(db), "--executor", "inline")
    assert code == 0, err
    _check_complete(db, budget=5)
