"""The flow of docs/cluster.md on one machine, with the real commands: `ray start --head`,
then `evonorm search --executor ray --address auto` (issue 12, item 7).

The other Ray tests use `ray.cluster_utils.Cluster`, which neither writes the address
file `--address auto` reads nor turns on token authentication as `ray start` does when
the machine has a token (Ray 2.60; any earlier local `ray.init` creates one). Here the
head has a token, so the search must send it by itself: with RAY_AUTH_MODE unset, as
in the docs.

Isolation: the head runs with its own RAY_TMPDIR (so its address file and sockets are
its own, not /tmp/ray's, which other Ray users of this machine share) and its own HOME
(holding the token). It is stopped through its own process group, never with
`ray stop`, which would stop every Ray instance of this user on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from db.store import SearchStore

BIN = Path(sys.executable).parent
START_TIMEOUT = 90.0  # seconds for `ray start --head` to record its address
STOP_TIMEOUT = 20.0  # seconds for its graceful shutdown before SIGKILL


@dataclass(frozen=True)
class Head:
    env: dict[str, str]  # the environment of a shell on this machine, as the docs set it
    root: Path  # RAY_TMPDIR
    address: str  # what `ray start` recorded


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `ray start --block` (it then ends the processes it started), and
    SIGKILL to its process group for whatever is left after STOP_TIMEOUT."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    # A short path: Ray's Unix sockets live under it (108-byte limit on their paths).
    root = Path(tempfile.mkdtemp(prefix="evr", dir="/tmp"))
    home = root / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                          "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_TMPDIR=str(root), HOME=str(home))
    log = (root / "ray_start.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2",
         "--port", str(_free_port()), "--include-dashboard", "false",
         "--disable-usage-stats"],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        address_file = root / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + START_TIMEOUT
        while not address_file.exists() and process.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"`ray start --head` did not start within {START_TIMEOUT:g} s")
            time.sleep(0.2)
        assert process.poll() is None, (root / "ray_start.log").read_text()
        yield Head(env, root, address_file.read_text().strip())
    finally:
        _stop(process)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_search_joins_a_ray_start_cluster_with_address_auto(head: Head, tmp_path: Path) -> None:
    started = (head.root / "ray_start.log").read_text()
    assert "Token authentication is enabled" in started  # the case of the issue

    # docs/cluster.md: `ray status` needs RAY_AUTH_MODE=token with such a head.
    status = subprocess.run(
        [str(BIN / "ray"), "status"], env={**head.env, "RAY_AUTH_MODE": "token"},
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    # (Right after the start it may print "No cluster status" yet: authenticated all the same.)
    assert status.returncode == 0, status.stderr[-2000:]

    db = tmp_path / "s.db"
    search = subprocess.run(
        [str(BIN / "evonorm"), "search", "--name", "c", "--db", str(db), "--executor", "ray",
         "--address", "auto", "--budget", "2", "--population", "2", "--proxies", "resnet",
         "--steps", "4", "--quality-steps", "0", "--stability-steps", "0", "--width", "4",
         "--batch-size", "16", "--max-train-examples", "64", "--threads", "1"],
        env=head.env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert search.returncode == 0, search.stderr[-3000:]
    assert "starting search 'c'" in search.stderr and "Pareto front" in search.stdout
    with SearchStore.open(db, readonly=True) as store:
        candidates = store.candidates(store.get_search("c").id)
    assert [c.status for c in candidates].count("done") >= 1
    assert not [c for c in candidates if c.status in ("pending", "running", "failed")]
    # The search ran on this cluster (its driver's log is in the head's session), not
    # on a private instance.
    drivers = list((head.root / "ray" / "session_latest" / "logs").glob("python-core-driver-*"))
    assert drivers


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"HOME": "elsewhere"}, "requires token authentication and this machine has no Ray "
                                "token: copy the head node's ~/.ray/auth_token"),
        ({"RAY_AUTH_MODE": "disabled"}, "requires token authentication, but "
                                        "RAY_AUTH_MODE=disabled is set here: set "
                                        "RAY_AUTH_MODE=token"),
    ],
)
def test_a_missing_token_is_named_with_what_to_set(
    head: Head, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    env = {**head.env, **change}
    if env["HOME"] == "elsewhere":
        env["HOME"] = str(tmp_path)  # a machine without the cluster's token
    db = tmp_path / "s.db"
    refused = subprocess.run(
        [str(BIN / "evonorm"), "search", "--db", str(db), "--address", "auto", "--budget", "1",
         "--proxies", "resnet", "--max-train-examples", "64"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"error: the Ray cluster at auto ({head.address}) {message}" in refused.stderr
    assert "Traceback" not in refused.stderr and not db.exists()
