"""`--json` on `evonorm list/status/front/show` (docs/json.md): each output is one JSON
document holding the same records as the text output; and known layers named by structural
hash wherever a layer is printed (`front`, `show`, the summary of `evonorm search`)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from db.store import SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.graph import LayerGraph
from evonorm_search.known import get_known
from tests.cli_runner import run_evonorm
from tests.test_cli_inspect import (
    GAMMA_EARLY,
    GAMMA_HURDLE,
    GAMMA_PROXIES,
    GAMMA_TRIALS,
    mean_and_error,
    populate,
    populate_gamma,
)

# evonorm_s0 renumbered, with commuted arguments and a dead node: still evonorm_s0.
S0_COPY = LayerGraph([("std_group", (0,)), ("tanh", (0,)), ("mul", (0, 3)), ("sigmoid", (6,)),
                      ("mul", (7, 0)), ("div", (8, 4))])
UNKNOWN = LayerGraph([("tanh", (0,)), ("mul", (0, 4)), ("std_group", (0,)), ("div", (5, 6))])
# Search "k": (layer, (resnet, mobilenetv2)); all three are on the front.
KNOWN_SEARCH = [(S0_COPY, (0.9, 0.1)), (UNKNOWN, (0.5, 0.5)), (get_known("bn_relu"), (0.1, 0.9))]
NAMED = re.compile(r"\s{2}\((\w+)\)$")  # the known-layer suffix of a printed formula


def document(*args: str) -> dict[str, Any]:
    """The parsed `--json` output of `evonorm ARGS... --json` (which must succeed)."""
    code, out, err = run_evonorm(*args, "--json")
    assert code == 0 and err == "", err
    parsed = json.loads(out)
    assert isinstance(parsed, dict) and parsed["version"] == 1
    return parsed


def utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0
    return moment


def text_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@pytest.fixture()
def db(tmp_path: Path) -> tuple[Path, dict[str, dict[int, int]]]:
    path = tmp_path / "evonorm.db"
    return path, populate(path)


@pytest.fixture()
def known_db(tmp_path: Path) -> tuple[Path, list[int]]:
    """Search "k": a complete search (budget 3 spent) over known and unknown layers."""
    path = tmp_path / "known.db"
    config = SearchConfig(budget=3, proxies=("resnet", "mobilenetv2"), reevaluate=1)  # one seed each
    ids = []
    with SearchStore.open(path, create=True) as store:
        search = store.create_search("k", config.to_dict(), seed=0)
        for number, (graph, (resnet, mobile)) in enumerate(KNOWN_SEARCH):
            record = store.add_candidate(
                search.id, number=number, parent_id=None, graph_json=graph.to_json(),
                structural_hash=graph.pruned().structural_hash(), fingerprint=None, seed=number,
            )
            store.mark_running(record.id)
            store.record_result(record.id, status="done", accuracies={"resnet": resnet, "mobilenetv2": mobile})
            ids.append(record.id)
    return path, ids


def split_row(line: str, scores: int) -> tuple[int, str, str | None, list[str], int]:
    """A front table row: id, formula, known name or None, score cells, seeds (the
    simplified formula, last, is left out)."""
    cells = re.split(r"\s{2,}", line.strip())
    simplified = 2 if cells[-1].startswith("(") else 1  # a known name follows it
    *cells, seeds = cells[:-simplified]
    middle = cells[1:-scores]
    name = middle[1].strip("()") if len(middle) > 1 else None
    return int(cells[0]), middle[0], name, cells[-scores:], int(seeds)


def score_text(candidate: dict[str, Any], proxy: str) -> str:
    """A JSON candidate's score as the text prints it: `mean ± standard error` when it has one."""
    text = f"{candidate['accuracies'][proxy]:.4f}"
    error = candidate["standard_errors"].get(proxy)
    return text if error is None else f"{text} ± {error:.4f}"


@pytest.fixture()
def gamma(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    path = tmp_path / "gamma.db"
    return path, populate_gamma(path)


# ---- round trips: the JSON holds what the text shows ---------------------------------------


def test_list_json_matches_the_table(db) -> None:
    path, _ = db
    doc = document("list", "--db", str(path))
    assert doc["format"] == "evonorm-list" and Path(doc["db"]) == path
    _, out, _ = run_evonorm("list", "--db", str(path))
    rows = [line.split() for line in out.splitlines()[1:]]
    assert len(rows) == len(doc["searches"]) == 2
    for row, search in zip(rows, doc["searches"], strict=True):
        assert row[:5] == [search["name"], str(search["id"]), str(search["candidates"]),
                           str(search["done"]), str(search["in_flight"])]
        assert " ".join(row[5:]) == text_time(utc(search["created_at"]))
        assert sum(search["counts"].values()) == search["candidates"]
        assert set(search["counts"]) == {"pending", "running", "done", "stopped", "rejected", "duplicate",
                                         "failed"}
        assert set(search["versions"]) == {"evonorm_search", "torch", "python"}
    assert doc["searches"][0]["config"] == {"budget": 10} and doc["searches"][0]["seed"] == 1


def parse_status_text(block: str) -> dict[str, Any]:
    head = re.match(r"search '(\w+)' \(id (\d+), seed (\d+)\), created (.+ UTC)", block)
    assert head is not None
    line = re.search(r"candidates: \d+ (.+)", block).group(1)  # type: ignore[union-attr]
    counts = dict(re.findall(r"(pending|running|done|stopped|rejected|duplicate|failed) (\d+)", line))
    again = re.search(r"re-evaluations \(further seeds\): (\d+) (.+)", block)
    stages = re.search(r"rejected by stage \(share of (\d+) finished\): (.+)", block)
    best = re.search(r"best per proxy: (.+)", block).group(1)  # type: ignore[union-attr]
    return {
        "name": head.group(1), "id": int(head.group(2)), "seed": int(head.group(3)),
        "created": head.group(4),
        "candidates": int(re.search(r"candidates: (\d+)", block).group(1)),  # type: ignore[union-attr]
        "counts": {status: int(count) for status, count in counts.items()},
        "finished": int(stages.group(1)) if stages else None,
        "rejected": {s: (int(c), p) for s, c, p in re.findall(r"(\w+) (\d+) \(([\d.]+)%\)",
                                                               stages.group(2))} if stages else {},
        "best": {p: (int(i), a, e or None, int(n) if n else None) for p, a, e, i, n in re.findall(
            r"(\w+) ([\d.]+)(?: ± ([\d.]+))? \(id (\d+)(?:, (\d+) seeds)?\)", best)},
        "reevaluations": {status: int(count) for status, count in re.findall(r"(\w+) (\d+)", again.group(2))}
        if again else None,
    }


@pytest.mark.parametrize("name", [None, "alpha", "beta"])
def test_status_json_matches_the_text(db, name: str | None) -> None:
    path, _ = db
    args = ["status", *([name] if name else []), "--db", str(path)]
    doc = document(*args)
    assert doc["format"] == "evonorm-status"
    now = utc(doc["now"])
    _, out, _ = run_evonorm(*args)
    blocks = out.strip().split("\n\n")
    assert len(blocks) == len(doc["searches"]) == (2 if name is None else 1)
    for block, search in zip(blocks, doc["searches"], strict=True):
        text = parse_status_text(block)
        assert (text["name"], text["id"], text["seed"]) == (search["name"], search["id"], search["seed"])
        assert text["created"] == text_time(utc(search["created_at"]))
        assert text["candidates"] == search["candidates"] and text["counts"] == search["counts"]
        assert {s: c for s, (c, _) in text["rejected"].items()} == search["rejected_by_stage"]
        for stage, (_, share) in text["rejected"].items():
            assert share == f"{100 * search['rejected_by_stage'][stage] / search['finished']:.1f}"
        if text["finished"] is not None:
            assert text["finished"] == search["finished"]
        assert text["best"] == {
            p: (b["id"], f"{b['accuracy']:.4f}",
                None if b["standard_error"] is None else f"{b['standard_error']:.4f}",
                b["seed_count"] if b["seed_count"] > 1 else None)
            for p, b in search["best"].items()
        }
        assert set(search["reevaluations"]) == {"pending", "running", "done", "stopped", "rejected", "failed"}
        if any(search["reevaluations"].values()):
            assert text["reevaluations"] == search["reevaluations"]
        else:
            assert text["reevaluations"] is None
        if search["last_activity"] is None:
            assert search["elapsed_seconds"] is None and search["idle_seconds"] is None
        else:
            last = utc(search["last_activity"])
            assert last <= now
            assert search["elapsed_seconds"] == pytest.approx(
                (last - utc(search["created_at"])).total_seconds())
    alpha = next(s for s in doc["searches"] if s["name"] == "alpha") if name != "beta" else None
    if alpha is not None:
        assert alpha["rejected_by_stage"] == {"fingerprint": 1, "quality": 1}
        assert alpha["finished"] == 8 and alpha["config"] == {"budget": 10}


def test_front_json_matches_the_table(db) -> None:
    path, ids = db
    doc = document("front", "alpha", "--db", str(path))
    assert doc["format"] == "evonorm-front" and doc["search"]["name"] == "alpha"
    _, out, _ = run_evonorm("front", "alpha", "--db", str(path))
    lines = out.splitlines()
    assert f"{len(doc['members'])} of {doc['done_candidates']} done candidates" in lines[0]
    assert f"(proxies: {', '.join(doc['proxies'])})" in lines[0]
    assert lines[1].split() == ["ID", "FORMULA", *doc["proxies"], "seeds", "SIMPLIFIED"]
    assert len(lines) - 2 == len(doc["members"]) == 4
    for line, member in zip(lines[2:], doc["members"], strict=True):
        candidate, layer = member["candidate"], member["layer"]
        number, formula, name, scores, seeds = split_row(line, len(doc["proxies"]))
        assert number == candidate["id"] and candidate["status"] == "done"
        assert (formula, name) == (layer["formula"], layer["known_name"])
        assert scores == [score_text(candidate, p) for p in doc["proxies"]]
        assert seeds == candidate["seed_count"] == 1 and candidate["standard_errors"] == {}
        assert LayerGraph.from_dict(layer["graph"]).formula() == formula
        assert candidate["search"] == "alpha" and candidate["attempts"] == 1
    assert [m["candidate"]["id"] for m in doc["members"]] == [ids["alpha"][n] for n in (2, 5, 0, 1)]


def test_show_json_of_a_candidate_matches_the_text(db) -> None:
    path, ids = db
    candidate_id = ids["alpha"][6]  # the rejected one: stage and scores
    doc = document("show", str(candidate_id), "--db", str(path))
    assert doc["format"] == "evonorm-show" and doc["source"] == "candidate"
    candidate, layer = doc["candidate"], doc["layer"]
    _, out, _ = run_evonorm("show", str(candidate_id), "--db", str(path))
    about, formula_line, space_line, hash_line = out.splitlines()[:4]
    scores = ", ".join(f"{p} {a:.4f}" for p, a in candidate["accuracies"].items())
    assert about == (f"candidate {candidate['id']}: search {candidate['search']!r} number "
                     f"{candidate['number']}, {candidate['status']}; {scores}")
    assert (candidate["status"], candidate["stage"], candidate["seed"]) == ("rejected", "quality", 6)
    assert formula_line == f"formula: {layer['formula']}  ({layer['known_name']})"
    assert space_line.startswith(f"space:   {layer['space']} ({'uses' if layer['uses_batch_stats'] else 'no'}")
    assert hash_line == f"hash:    {layer['structural_hash']}"
    assert utc(candidate["created_at"]) <= utc(candidate["finished_at"])
    # The node list: the initial nodes, then one line per node with its role; then the seeds.
    node_lines = out.splitlines()[5:out.splitlines().index("seeds:   0 counted in the mean accuracy")]
    assert [line.split()[1] for line in node_lines[:4]] == layer["initial_nodes"]
    for line, node in zip(node_lines[4:], layer["nodes"], strict=True):
        mark = {"output": "  (output)", "live": "", "dead": "  (dead)"}[node["role"]]
        assert line == f"  {node['index']:>2}  {node['op']}({', '.join(map(str, node['inputs']))}){mark}"
    _, graph_out, _ = run_evonorm("show", str(candidate_id), "--db", str(path), "--graph")
    assert json.loads(graph_out) == layer["graph"]


def test_reevaluated_search_json_matches_the_text(gamma) -> None:
    """Front, status and show of a search with re-evaluations and a stopped candidate: the
    JSON carries the seed counts, standard errors and trials that the text prints."""
    path, ids = gamma
    front = document("front", "gamma", "--db", str(path))
    members = {m["candidate"]["id"]: m["candidate"] for m in front["members"]}
    assert set(members) == {ids["reevaluated"], ids["single"]}
    reevaluated, single = members[ids["reevaluated"]], members[ids["single"]]
    for column, proxy in enumerate(GAMMA_PROXIES, start=1):
        mean, error = mean_and_error([trial[column] for trial in GAMMA_TRIALS])
        assert reevaluated["accuracies"][proxy] == pytest.approx(mean)
        assert reevaluated["standard_errors"][proxy] == pytest.approx(error)
    assert reevaluated["seed_count"] == 3 and single["seed_count"] == 1 and single["standard_errors"] == {}
    assert reevaluated["early_accuracies"] == GAMMA_EARLY and reevaluated["hurdle"] == GAMMA_HURDLE
    _, out, _ = run_evonorm("front", "gamma", "--db", str(path))
    assert len(out.splitlines()) == 2 + len(members) + 1  # the footnote on ±
    for line in out.splitlines()[2:-1]:
        number, _, _, scores, seeds = split_row(line, len(GAMMA_PROXIES))
        assert scores == [score_text(members[number], p) for p in front["proxies"]]
        assert seeds == members[number]["seed_count"]

    status = document("status", "gamma", "--db", str(path))["searches"][0]
    assert status["counts"]["stopped"] == 1 and status["finished"] == 4
    assert status["rejected_by_stage"] == {"quality": 1}
    assert status["reevaluations"] == {"pending": 0, "running": 0, "done": 2, "stopped": 0,
                                       "rejected": 0, "failed": 1}
    best = status["best"]
    assert best["mobilenetv2"]["id"] == ids["reevaluated"] and best["mobilenetv2"]["seed_count"] == 3
    assert best["mobilenetv2"]["standard_error"] == pytest.approx(reevaluated["standard_errors"]["mobilenetv2"])
    assert best["resnet"] == {"id": ids["single"], "accuracy": pytest.approx(0.70), "standard_error": None,
                              "seed_count": 1}
    _, out, _ = run_evonorm("status", "gamma", "--db", str(path))
    text = parse_status_text(out)
    assert text["counts"] == status["counts"] and text["reevaluations"] == status["reevaluations"]

    shown = document("show", str(ids["reevaluated"]), "--db", str(path))
    assert shown["candidate"] == reevaluated
    trials = shown["trials"]
    assert [(t["trial"], t["seed"], t["status"]) for t in trials] == [
        (trial, seed, "done") for trial, (seed, _, _) in enumerate(GAMMA_TRIALS)]
    assert [t["accuracies"] for t in trials] == [{"mobilenetv2": m, "resnet": r} for _, r, m in GAMMA_TRIALS]
    assert trials[0]["early_accuracies"] == GAMMA_EARLY
    stopped = document("show", str(ids["stopped"]), "--db", str(path))
    assert stopped["candidate"]["status"] == "stopped" and stopped["candidate"]["stage"] == "hurdle"
    assert [(t["status"], t["stage"]) for t in stopped["trials"]] == [("stopped", "hurdle")]
    assert document("show", "evonorm_s0")["trials"] is None


def test_show_json_of_a_name_and_a_file(tmp_path: Path) -> None:
    doc = document("show", "evonorm_b0")
    assert doc["source"] == "known" and doc["candidate"] is None
    assert doc["layer"]["known_name"] == "evonorm_b0"
    assert LayerGraph.from_dict(doc["layer"]["graph"]) == get_known("evonorm_b0")
    # The graph field is a layer graph file: show reads it back as the same layer.
    path = tmp_path / "copy.json"
    path.write_text(json.dumps(doc["layer"]["graph"]))
    again = document("show", str(path))
    assert again["source"] == "file" and again["argument"] == str(path)
    assert again["layer"] == doc["layer"]
    dead = tmp_path / "dead.json"
    dead.write_text(LayerGraph([("mean_batch", (0,)), ("tanh", (0,)), ("mul", (0, 5)),
                                ("std_group", (0,)), ("div", (6, 7))]).to_json())
    unknown = document("show", str(dead))["layer"]
    assert unknown["known_name"] is None and unknown["space"] == "S"
    assert [n["role"] for n in unknown["nodes"]] == ["dead", "live", "live", "live", "output"]


def test_json_of_an_empty_database_and_a_search_without_done_candidates(tmp_path: Path, db) -> None:
    path = tmp_path / "empty.db"
    SearchStore.open(path, create=True).close()
    assert document("list", "--db", str(path))["searches"] == []
    assert document("status", "--db", str(path))["searches"] == []
    beta = document("front", "beta", "--db", str(db[0]))
    assert beta["members"] == [] and beta["done_candidates"] == 0 and beta["proxies"] == []


def test_errors_stay_text_with_json(db) -> None:
    path, _ = db
    for args in (["front", "gamma"], ["status", "gamma"], ["show", "4242"], ["show", "nope_layer"]):
        code, out, err = run_evonorm(*args, "--db", str(path), "--json")
        assert code == 2 and out == "" and err.startswith("error: "), (args, err)
    code, out, err = run_evonorm("list", "--db", str(path.parent / "absent.db"), "--json")
    assert code == 2 and out == "" and "no evonorm database at" in err
    code, out, err = run_evonorm("show", "evonorm_s0", "--json", "--graph")
    assert code == 2 and out == "" and "give one of them" in err


def test_json_does_not_modify_the_database(db) -> None:
    path, ids = db
    before = path.read_bytes(), path.stat().st_mtime_ns
    for args in (["list"], ["status"], ["front", "alpha"], ["show", str(ids["alpha"][0])]):
        document(*args, "--db", str(path))
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


# ---- known layers named by structural hash -------------------------------------------------


def test_front_and_show_name_known_layers_only(known_db) -> None:
    path, ids = known_db
    _, out, _ = run_evonorm("front", "k", "--db", str(path))
    rows = {split_row(line, 2)[0]: split_row(line, 2) for line in out.splitlines()[2:]}
    assert set(rows) == set(ids)
    assert rows[ids[0]][2] == "evonorm_s0" and rows[ids[2]][2] == "bn_relu"
    assert rows[ids[1]][2] is None and rows[ids[1]][1] == UNKNOWN.formula()
    names = {m["candidate"]["id"]: m["layer"]["known_name"]
             for m in document("front", "k", "--db", str(path))["members"]}
    assert names == {ids[0]: "evonorm_s0", ids[1]: None, ids[2]: "bn_relu"}
    for candidate_id, name in names.items():
        _, out, _ = run_evonorm("show", str(candidate_id), "--db", str(path))
        formula_line = out.splitlines()[1]
        match = NAMED.search(formula_line)
        assert (match.group(1) if match else None) == name, formula_line
    _, out, _ = run_evonorm("show", "evonorm_s0")
    assert out.splitlines()[0].endswith("  (evonorm_s0)")


def test_search_summary_names_known_layers(known_db) -> None:
    path, ids = known_db
    # The budget is spent: `evonorm search` prints the summary without evaluating anything.
    code, out, err = run_evonorm("search", "--name", "k", "--db", str(path))
    assert code == 0 and "is complete" in err, err
    lines = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\s+id\s+(\d+)\s+(.*)$", out, re.M)}
    assert set(lines) == set(ids)
    assert lines[ids[0]].endswith(f"{S0_COPY.formula()}  (evonorm_s0)")
    assert lines[ids[2]].endswith("  (bn_relu)")
    assert lines[ids[1]].endswith(UNKNOWN.formula()) and NAMED.search(lines[ids[1]]) is None
