"""RayEvaluator settings and addresses that must fail fast and clearly, without Ray starting."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from evonorm_search.errors import EvonormError
from workers import ray_executor
from workers.ray_executor import RayEvaluator, resolve_address


@pytest.fixture(autouse=True)
def not_connected() -> None:
    # With a live connection the evaluator reuses it and never looks at the address.
    if ray.is_initialized():
        pytest.fail("a previous test left this process connected to Ray")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _never_called(*_: object) -> None:
    raise AssertionError("an unreachable cluster must be refused before any evaluation")


def test_unreachable_address_is_named_in_a_fast_error() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    # "cannot reach" comes from the port probe (CONNECT_TIMEOUT), not from Ray's own
    # connection attempt, which retries for over a minute before failing differently.
    with pytest.raises(EvonormError, match=f"cannot reach the Ray cluster at {address}"):
        RayEvaluator(_never_called, address=address)
    assert not ray.is_initialized()


def test_auto_uses_ray_address_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(EvonormError, match=f"at auto \\({address}\\)"):
        RayEvaluator(_never_called, address="auto")


def test_auto_without_any_cluster_says_how_to_start_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_executor, "_RAY_ADDRESS_FILE", str(tmp_path / "missing"))
    with pytest.raises(EvonormError, match="ray start --head"):
        resolve_address("auto")


@pytest.mark.parametrize(
    ("env", "base"),
    [({"RAY_TMPDIR": "a", "TMPDIR": "b"}, "a"), ({"TMPDIR": "b"}, "b"), ({}, None)],
)
def test_auto_reads_the_address_file_where_ray_start_writes_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], base: str | None
) -> None:
    # `ray start` writes ray/ray_current_cluster under $RAY_TMPDIR, else $TMPDIR, else /tmp.
    for key in ("RAY_ADDRESS", "RAY_TMPDIR", "TMPDIR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, str(tmp_path / value))
    if base is None:
        assert ray_executor._ray_address_file() == "/tmp/ray/ray_current_cluster"
        return
    (tmp_path / base / "ray").mkdir(parents=True)
    (tmp_path / base / "ray" / "ray_current_cluster").write_text("10.0.0.7:6380\n")
    assert resolve_address("auto") == "10.0.0.7:6380"


@pytest.mark.parametrize("address", ["localhost", "10.0.0.1:port", ":6379"])
def test_malformed_addresses_are_refused(address: str) -> None:
    with pytest.raises(EvonormError, match="is not HOST:PORT"):
        RayEvaluator(_never_called, address=address)


def test_ray_client_addresses_are_refused() -> None:
    with pytest.raises(EvonormError, match="Ray Client"):
        RayEvaluator(_never_called, address="ray://10.0.0.1:10001")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"workers": 0}, "--workers must be at least 1"),
        ({"cpus_per_eval": 0.0}, "--cpus-per-eval must be above 0"),
        ({"gpus_per_eval": -1.0}, "--gpus-per-eval must be 0 or more"),
        ({"gpus_per_eval": 1.5}, "must be a whole number"),
        ({"max_retries": -1}, "max_retries must be 0 or more"),
    ],
)
def test_bad_settings_are_refused_before_ray_starts(settings: dict, message: str) -> None:
    with pytest.raises(EvonormError, match=message):
        RayEvaluator(_never_called, **settings)
    assert not ray.is_initialized()


def test_the_cli_reports_an_unreachable_cluster_without_a_traceback(tmp_path: Path) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    evonorm = Path(sys.executable).with_name("evonorm")
    done = subprocess.run(
        [str(evonorm), "search", "--db", str(tmp_path / "s.db"), "--address", address],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert f"error: cannot reach the Ray cluster at {address}" in done.stderr
    assert "Traceback" not in done.stderr
