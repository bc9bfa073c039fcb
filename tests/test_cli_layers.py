"""`evonorm show` / `evonorm export`: output, files, and clean errors (exit 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evonorm_search.known import get_known
from evonorm_search.layer_spec import load_graph_spec
from tests.cli_runner import run_evonorm


def test_show_known_layer() -> None:
    code, out, _ = run_evonorm("show", "evonorm_s0")
    assert code == 0
    assert "formula: x * sigmoid(v1 * x) / std_group(x)" in out
    assert "space:   S" in out and "8  div(6, 7)  (output)" in out
    assert get_known("evonorm_s0").structural_hash() in out


def test_show_json_file_with_dead_node_and_json_output(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"format": "evonorm-layer-graph", "version": 1, "nodes": [
        {"op": "mean_batch", "inputs": [0]}, {"op": "tanh", "inputs": [0]}]}))
    code, out, _ = run_evonorm("show", str(path))
    assert code == 0 and "space:   S" in out and "4  mean_batch(0)  (dead)" in out
    code, out, _ = run_evonorm("show", str(path), "--graph")
    assert code == 0 and load_graph_spec(str(path)).to_json() == out.strip()


def test_export_writes_a_module(tmp_path: Path) -> None:
    target = tmp_path / "layer.py"
    code, _, err = run_evonorm("export", "evonorm_b0", "-o", str(target), "--class-name", "B0")
    assert code == 0 and "wrote B0" in err
    text = target.read_text()
    assert "class B0(nn.Module):" in text and "x / max(std_batch(x), v1 * x + std_instance(x))" in text
    code, out, _ = run_evonorm("export", "evonorm_s1")
    assert code == 0 and "class EvolvedNormAct(nn.Module):" in out


def test_show_and_export_simplify_without_replacing_the_stored_graph(tmp_path: Path) -> None:
    # x / std_group(x) * sigmoid(x * v1) * v1 with two dead nodes.
    path = tmp_path / "bloated.json"
    path.write_text(json.dumps({"format": "evonorm-layer-graph", "version": 1, "nodes": [
        {"op": "std_group", "inputs": [0]}, {"op": "tanh", "inputs": [2]},
        {"op": "std_group", "inputs": [0]}, {"op": "div", "inputs": [0, 6]},
        {"op": "mul", "inputs": [0, 3]}, {"op": "sigmoid", "inputs": [8]},
        {"op": "mul", "inputs": [7, 9]}, {"op": "mul", "inputs": [10, 3]}]}))
    stored = "x / std_group(x) * sigmoid(x * v1) * v1"
    code, out, _ = run_evonorm("show", str(path))
    assert code == 0 and f"formula: {stored}\n" in out
    assert "up to the affine: x * sigmoid(v1 * x) / std_group(x)  (evonorm_s0)" in out
    code, out, _ = run_evonorm("show", str(path), "--json")
    layer = json.loads(out)["layer"]
    assert layer["formula"] == stored and len(layer["simplified"]["graph"]["nodes"]) == 6
    assert layer["simplified_up_to_affine"]["known_name"] == "evonorm_s0"
    exported = {}
    for mode in ("exact", "affine", "off"):
        code, out, _ = run_evonorm("export", str(path), "--simplify", mode)
        assert code == 0
        exported[mode] = out

    def nodes(source: str) -> int:
        graph = next(line for line in source.splitlines() if line.strip().startswith("Graph: "))
        return len(json.loads(graph.strip()[len("Graph: "):])["nodes"])

    assert (nodes(exported["off"]), nodes(exported["exact"]), nodes(exported["affine"])) == (8, 6, 5)
    assert f"y = ({stored}) * gamma + beta" in exported["exact"]
    assert "y = (x * sigmoid(v1 * x) / std_group(x)) * gamma + beta" in exported["affine"]
    code, _, err = run_evonorm("export", str(path), "--simplify", "maybe")
    assert code == 2 and "'maybe' is not one of 'exact', 'affine', 'off'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "evonorm_z9"], "unknown layer name 'evonorm_z9'; use one of: bn_relu"),
        (["show", "missing/graph.json"], "'missing/graph.json' does not exist"),
        (["export", "missing.json", "-o", "x.py"], "does not exist"),
        (["export", "evonorm_s0", "--class-name", "1abc"], "not a Python identifier"),
    ],
)
def test_user_errors_exit_2_with_message(args: list[str], message: str) -> None:
    code, _, err = run_evonorm(*args)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "not valid JSON"),
        ('{"format": "evonorm-layer-graph", "version": 1, "nodes": [{"op": "nope", "inputs": [0]}]}', "unknown op 'nope'"),
        ('{"format": "evonorm-layer-graph", "version": 1, "nodes": [{"op": "add", "inputs": [0, 5]}, {"op": "neg", "inputs": [4]}]}', "cycle"),
        ('{"format": "evonorm-layer-graph", "version": 1, "nodes": [{"op": "add", "inputs": [0]}]}', "takes exactly 2"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
def test_bad_graph_files_exit_2(tmp_path: Path, content: str | bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, _, err = run_evonorm("show", str(path))
    assert code == 2 and message in err and str(path) in err


def test_directory_and_unwritable_output(tmp_path: Path) -> None:
    code, _, err = run_evonorm("show", str(tmp_path))
    assert code == 2 and "is not a file" in err
    code, _, err = run_evonorm("export", "evonorm_s0", "-o", str(tmp_path / "no" / "dir.py"))
    assert code == 2 and "cannot write" in err


def test_help_texts() -> None:
    for command in ("show", "export"):
        code, out, _ = run_evonorm(command, "--help")
        assert code == 0 and "NAME_OR_JSON_FILE" in out
