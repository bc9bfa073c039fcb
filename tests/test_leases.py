"""One controller per search (db/leases.py, evonorm_search/cli/lease.py): who may take a
search's lease, when a dead holder's lease is taken over, the heartbeat, and what
`evonorm status` says about the process running a search."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

import evonorm_search.cli.lease as cli_lease
from db.engine import utc_now
from db.leases import EXPIRY_SECONDS, LEASES, LeaseStore, process_identity
from db.store import SearchStore
from evonorm_search.errors import SearchRunning
from tests.cli_runner import run_evonorm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SearchStore]:
    with SearchStore.open(tmp_path / "s.db", create=True) as opened:
        yield opened


@pytest.fixture()
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of this host that is not this one."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _hand_to(store: SearchStore, name: str, **values: object) -> None:
    """Rewrite the lease as if another process held it."""
    with store.transaction() as connection:
        connection.execute(update(LEASES).where(LEASES.c.search_name == name).values(**values))


def test_a_live_holder_refuses_others_and_a_dead_one_is_taken_over_at_once(
    store: SearchStore, other_process: subprocess.Popen[bytes]
) -> None:
    leases = LeaseStore(store)
    mine, previous = leases.acquire("s")
    assert previous is None and leases.lease("s") == mine
    _hand_to(store, "s", pid=other_process.pid, process=process_identity(other_process.pid),
             token="theirs")
    started = leases.lease("s").started_at  # type: ignore[union-attr]
    with pytest.raises(SearchRunning) as refused:
        leases.acquire("s")
    assert str(refused.value).startswith(
        f"search s is running (pid {other_process.pid} on {socket.gethostname()} since "
        f"{started:%Y-%m-%d %H:%M:%S} UTC)")
    with pytest.raises(SearchRunning):
        leases.check_free("s")
    assert leases.lease("s").token == "theirs"  # type: ignore[union-attr]  # refused: unchanged
    # Another search of the same file is free.
    leases.acquire("other")

    other_process.kill()
    other_process.wait()
    ours, gone = leases.acquire("s")  # no waiting for a heartbeat to expire
    assert gone is not None and gone.pid == other_process.pid and ours.token != "theirs"
    assert not leases.renew(mine) and leases.renew(ours)


def test_a_reused_pid_is_not_the_holder(store: SearchStore) -> None:
    """Same host, a live pid, but another process (its start time differs): taken over."""
    if process_identity(1) is None:
        pytest.skip("no /proc here to tell processes apart")
    leases = LeaseStore(store)
    leases.acquire("s")
    _hand_to(store, "s", pid=1, process="another-boot:1", token="theirs")
    _, gone = leases.acquire("s")
    assert gone is not None and gone.pid == 1


def test_a_lease_from_another_host_lives_by_its_heartbeat(store: SearchStore) -> None:
    leases = LeaseStore(store)
    leases.acquire("s")
    _hand_to(store, "s", host="elsewhere", pid=4242, process=None, token="theirs",
             heartbeat_at=utc_now() - timedelta(seconds=5))
    with pytest.raises(SearchRunning, match="last heartbeat was 5 s ago: if elsewhere is down, "
                                            f"the lease expires {EXPIRY_SECONDS:.0f} s after"):
        leases.acquire("s")
    _hand_to(store, "s", heartbeat_at=utc_now() - timedelta(seconds=EXPIRY_SECONDS + 1))
    _, gone = leases.acquire("s")
    assert gone is not None and gone.host == "elsewhere"


def test_a_release_leaves_a_lease_taken_over_in_between(store: SearchStore) -> None:
    leases = LeaseStore(store)
    mine, _ = leases.acquire("s")
    _hand_to(store, "s", token="theirs")
    leases.release(mine)
    assert leases.lease("s").token == "theirs"  # type: ignore[union-attr]


RACE = textwrap.dedent("""
    import sys, time
    from db.errors import SearchRunning
    from db.leases import LeaseStore
    from db.store import SearchStore

    with SearchStore.open(sys.argv[1]) as store:
        start = float(sys.argv[2])
        time.sleep(max(0.0, start - time.time() - 0.02))
        while time.time() < start:  # the last few milliseconds: spin, for a close start
            pass
        try:
            LeaseStore(store).acquire("s")
            print("acquired", flush=True)
            time.sleep(1.5)  # a live holder while the other one tries
        except SearchRunning:
            print("refused", flush=True)
""")


def test_two_processes_starting_together_get_one_lease(tmp_path: Path) -> None:
    SearchStore.open(tmp_path / "s.db", create=True).close()
    start = str(time.time() + 1.0)  # both wait until then, then acquire
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path / "s.db"), start],
                               cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)
    assert outcomes == ["acquired", "refused"]


def test_the_heartbeat_renews_and_a_takeover_fences_off_the_old_holder(
    store: SearchStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_lease, "HEARTBEAT_SECONDS", 0.05)
    leases = LeaseStore(store)
    with cli_lease.hold_lease(store, "s") as held:
        search = store.create_search("s", {}, seed=0)  # writes pass the fence while held
        first = leases.lease("s").heartbeat_at  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while leases.lease("s").heartbeat_at == first:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        _hand_to(store, "s", token="theirs", host="elsewhere")  # taken over from elsewhere
        with pytest.raises(SearchRunning, match="search s was taken over by pid .* on elsewhere "
                                                "since .* this run stopped without writing more"):
            store.create_search("t", {}, seed=0)
        while not held.lost:  # the heartbeat notices too, and stops renewing
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert [s.name for s in store.list_searches()] == [search.name]
    assert leases.lease("s").token == "theirs"  # type: ignore[union-attr]  # not released
    store.create_search("t", {}, seed=0)  # the fence ends with the block


def test_the_heartbeat_outlives_a_database_locked_for_a_while(
    store: SearchStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A renewal that waits out the busy timeout is skipped (the next one goes through), never
    # a traceback from the heartbeat's thread.
    monkeypatch.setattr(cli_lease, "HEARTBEAT_SECONDS", 0.02)
    monkeypatch.setattr("db.engine.BUSY_TIMEOUT_MS", 20)
    errors: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    with SearchStore.open(store.path) as opened:  # connections made under the short timeout
        leases = LeaseStore(opened)
        with cli_lease.hold_lease(opened, "s"):
            other = sqlite3.connect(opened.path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            locked_at = leases.lease("s").heartbeat_at  # type: ignore[union-attr]
            time.sleep(0.3)  # several renewals fail with SQLITE_BUSY
            assert leases.lease("s").heartbeat_at == locked_at  # type: ignore[union-attr]
            other.execute("ROLLBACK")
            other.close()
            deadline = time.monotonic() + 30
            while leases.lease("s").heartbeat_at == locked_at:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the heartbeat stopped"
                time.sleep(0.01)
        assert leases.lease("s") is None  # released at the end
    assert errors == []


def test_status_names_the_process_running_a_search(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with SearchStore.open(db, create=True) as store:
        store.create_search("s", {}, seed=0)
        LeaseStore(store).acquire("s")
        code, out, _ = run_evonorm("status", "s", "--db", str(db))
        assert code == 0 and f"  running: pid {__import__('os').getpid()} on " in out
        document = run_evonorm("status", "s", "--db", str(db), "--json")[1]
        assert '"alive": true' in document
        _hand_to(store, "s", pid=2**22 + 7, process="another-boot:1")  # a dead process
        code, out, _ = run_evonorm("status", "s", "--db", str(db))
    assert code == 0 and "  not running: its last run (pid 4194311 on" in out


def test_a_search_whose_lease_is_taken_over_stops_without_writing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another host took the lease over (this run's heartbeat looked dead to it): the run's
    next write fails, it stops with exit status 3 and hands nothing back (the work is the
    new holder's)."""
    db = tmp_path / "s.db"
    record_result = SearchStore.record_result

    def taken_over_after_the_first_result(store: SearchStore, *args: object, **kwargs: object):
        record = record_result(store, *args, **kwargs)
        _hand_to(store, "p", token="theirs", host="elsewhere")
        return record

    monkeypatch.setattr(SearchStore, "record_result", taken_over_after_the_first_result)
    code, out, err = run_evonorm("search", "--name", "p", "--db", str(db), "--task", "planted",
                                 "--target", "evonorm_s0", "--space", "S", "--executor", "inline",
                                 "--init", "random", "--population", "4", "--budget", "6")
    assert code == 3, err
    assert "Traceback" not in err + out
    assert err.strip().splitlines()[-1].startswith(
        "error: search p was taken over by pid ")
    with SearchStore.open(db, readonly=True) as store:
        assert LeaseStore(store).lease("p").token == "theirs"  # type: ignore[union-attr]
        assert [c.status for c in store.candidates(store.get_search("p").id)] == ["done"]
