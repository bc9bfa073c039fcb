"""`evonorm search --config FILE` (TOML settings) and `--init` with layer graph files.

Bad settings files and bad `--init` entries are rows of tests/test_bad_input.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

from db.store import SearchStore
from evonorm_search.cli.config_file import read_settings_file, settable_options
from evonorm_search.cli.search import _overrides, _resolve, search
from evonorm_search.config import SearchConfig
from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_LAYERS, get_known
from tests.cli_runner import run_evonorm

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "search.toml"
EXECUTION = ("executor", "workers", "address", "cpus_per_eval", "gpus_per_eval")


def test_the_documented_example_resolves_to_its_values(tmp_path: Path) -> None:
    document = tomllib.loads(EXAMPLE.read_text())
    values = read_settings_file(EXAMPLE, search)
    assert set(document) <= set(settable_options(search))
    name, db = values.pop("name"), values.pop("db_path")
    assert (name, db) == (document["name"], document["db"])
    assert (values.pop("executor"), values.pop("workers")) == ("ray", 2)
    config, resuming = _resolve(tmp_path / "absent.db", name, _overrides(values))
    assert not resuming
    assert (config.space, config.population, config.budget, config.init) == (
        "S", document["population"], document["budget"], "known")
    assert config.proxies == tuple(document["proxies"])
    assert config.mutations == tuple(document["mutations"])
    assert (config.dataset.name, config.dataset.image_size) == ("cifar10", 16)
    assert config.dataset.data_dir == str(Path(document["data-dir"]).resolve())
    assert (config.train.steps, config.train.batch_size, config.train.learning_rate) == (
        600, 8, 0.04)
    assert (config.train.quality_threshold, config.hurdle, config.reevaluate) == (0.13, 0.5, 3)


def _planted_settings(path: Path, db: Path, init: str, **extra: object) -> Path:
    lines = [f'name = "p"', f'db = "{db}"', 'task = "planted"', 'target = "evonorm_s1"',
             'space = "S"', f"init = {init}", "population = 3", "budget = 4",
             'mutations = ["node", "op"]', 'executor = "inline"', "reevaluate = 1",
             *(f"{key} = {value}" for key, value in extra.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def _stored(db: Path) -> tuple[dict, list]:
    with SearchStore.open(db) as store:
        record = store.get_search("p")
        return record.config, store.candidates(record.id)


def test_search_from_a_settings_file_flags_override_and_resume_checks_it(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    mine = tmp_path / "mine.json"
    mine.write_text(get_known("evonorm_s2").to_json())
    settings = _planted_settings(tmp_path / "p.toml", db, f'["{mine}", "known"]')
    code, _, err = run_evonorm("search", "--config", str(settings), "--budget", "5")
    assert code == 0, err
    config, candidates = _stored(db)
    assert (config["budget"], config["population"], config["mutations"]) == (5, 3, ["node", "op"])
    assert config["init"] == f"{mine},known"
    # The file's layer first, then the known S layers it does not repeat.
    known_s = [g for n, g in KNOWN_LAYERS.items() if g.space == "S" and n != "evonorm_s2"]
    first = [LayerGraph.from_json(c.graph_json) for c in candidates[:3]]
    assert first == [get_known("evonorm_s2"), *known_s[:2]]
    # The same file again resumes (the budget may grow); a conflicting one is refused
    # exactly like the flag, the database untouched.
    code, _, err = run_evonorm("search", "--config", str(settings), "--budget", "6")
    assert code == 0 and "resuming search 'p'" in err, err
    before = db.read_bytes()
    changed = _planted_settings(tmp_path / "q.toml", db, '["known"]', **{"num-nodes": 6})
    code, _, err = run_evonorm("search", "--config", str(changed))
    assert code == 2 and err.startswith("error: search 'p' exists with different settings")
    assert "init: stored" in err and "num_nodes: stored 4, requested 6" in err
    assert "in a --config file" in err
    code, _, err = run_evonorm("search", "--name", "p", "--db", str(db), "--num-nodes", "6")
    assert code == 2 and "num_nodes: stored 4, requested 6" in err
    assert db.read_bytes() == before


def test_init_files_are_stored_so_a_resume_needs_none(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    mine = tmp_path / "mine.json"
    mine.write_text(get_known("evonorm_s2").to_json())
    args = ["search", "--name", "p", "--db", str(db), "--task", "planted", "--target",
            "evonorm_s1", "--space", "S", "--population", "2", "--reevaluate", "1",
            "--executor", "inline"]
    code, _, err = run_evonorm(*args, "--init", f"evonorm_s0,{mine}", "--budget", "2")
    assert code == 0, err
    config, _ = _stored(db)
    assert config["init_graphs"] == {str(mine): get_known("evonorm_s2").to_json()}
    stored = SearchConfig.from_dict(config)
    assert stored.init_layers() == [get_known("evonorm_s0"), get_known("evonorm_s2")]
    mine.write_text(get_known("evonorm_s1").to_json())  # another layer under that name
    before = db.read_bytes()
    code, _, err = run_evonorm(*args, "--init", f"evonorm_s0,{mine}", "--budget", "3")
    assert code == 2 and f"init_graphs.{mine}: stored 'layer x * sigmoid(x) / rms_group(x)'" in err
    assert db.read_bytes() == before
    mine.unlink()
    code, _, err = run_evonorm("search", "--name", "p", "--db", str(db), "--budget", "3",
                               "--executor", "inline")
    assert code == 0 and "resuming search 'p'" in err, err


def test_scan_macros_stored_as_a_switch_resume_as_the_families_it_meant(tmp_path: Path) -> None:
    """Searches stored when `scan_macros` was true/false resume with what it meant then
    (normalize and skip), and a settings file names families or none."""
    stored = SearchConfig(scan_macros=("normalize", "skip")).to_dict()
    assert SearchConfig.from_dict({**stored, "scan_macros": True}) == SearchConfig.from_dict(stored)
    assert SearchConfig.from_dict({**stored, "scan_macros": False}).scan_macros == ()
    path = tmp_path / "macros.toml"
    for value, expected in (('["guard", "gate"]', ("guard", "gate")), ('"none"', ())):
        path.write_text(f"scan-macros = {value}\n")
        config, _ = _resolve(tmp_path / "absent.db", "m",
                             _overrides(read_settings_file(path, search)))
        assert config.scan_macros == expected
