"""benchmarks/replay_proposals.py: replaying a stored search's proposals tells which
searches a change of settings (or of code) would have changed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.benchmark_scripts import load_benchmark
from tests.cli_runner import run_evonorm

REPLAY = load_benchmark("replay_proposals")
SEARCH = ["--task", "planted", "--executor", "inline", "--seed", "1", "--space", "S",
          "--target", "evonorm_s0", "--init", "random", "--population", "6", "--budget", "40",
          "--engine", "memetic", "--scan-after", "8"]


def test_a_stored_search_replays_exactly_and_a_changed_setting_shows_where(
        tmp_path: Path, capsys) -> None:
    db = tmp_path / "p.db"
    code, _, err = run_evonorm("search", "--name", "p", "--db", str(db), *SEARCH)
    assert code == 0, err
    results = tmp_path / "replay.jsonl"
    # Its own settings bring every proposal back; a scan that starts later differs once
    # the stored search first scanned; a scan depth changes nothing where the scan
    # never ran out.
    for settings in (["scan_after=8"], ["scan_after=30"], ["scan_depth=5"]):
        argv = [str(db), "--results", str(results)]
        for item in settings:
            argv += ["--set", item]
        assert REPLAY.main(argv) == 0
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["stored_settings"] for row in rows] == [None, None, None]
    assert rows[0]["new_settings"] is None and rows[2]["new_settings"] is None
    from db.store import SearchStore

    with SearchStore.open(db) as store:
        records = store.candidates(store.get_search("p").id)
    first_scan = min(r.number for r in records if r.move == "scan")
    assert rows[1]["new_settings"] == first_scan
    out = capsys.readouterr().out
    assert "1 searches: 1 identical with --set, 0 differ" in out  # the last one
    assert f"differs at candidate {first_scan} (" in out


def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys) -> None:
    assert REPLAY.main([str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err
    assert REPLAY.main([str(tmp_path / "none.db"), "--set", "scan_sweep"]) == 2
    assert "use KEY=VALUE" in capsys.readouterr().err
