"""benchmarks/transformer_fidelity.py: the layer panel (known names and graph files) and
the paired differences from LayerNorm it reports (issue 17, items 4 and 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evonorm_search.graph import LayerGraph
from evonorm_search.known import get_known
from tests.benchmark_scripts import load_benchmark

load_benchmark("training_budget")  # what the script imports from its own folder
BENCHMARK = load_benchmark("transformer_fidelity")
# An evolved T layer: max(x - mean_channel(x), v0) * (x - mean_channel(x)) / std_channel(x)^2
EVOLVED = LayerGraph([("mean_channel", (0,)), ("neg", (4,)), ("add", (0, 5)), ("std_channel", (0,)),
                      ("mul", (7, 7)), ("div", (8, 6)), ("max", (6, 2)), ("div", (10, 9))])


def test_the_panel_holds_known_layers_and_graph_files(tmp_path: Path) -> None:
    path = tmp_path / "evolved.json"
    path.write_text(EVOLVED.to_json())
    panel = BENCHMARK.read_panel("layernorm, rmsnorm", [f"evolved={path}"])
    assert list(panel) == ["layernorm", "rmsnorm", "evolved"]
    assert panel["evolved"].structural_hash() == EVOLVED.structural_hash()
    assert panel["layernorm"].structural_hash() == get_known("layernorm").structural_hash()
    # charlm forbids statistics over tokens: repbn leaves its panel, the rest stay.
    both = BENCHMARK.read_panel("layernorm,repbn", [f"evolved={path}"])
    assert BENCHMARK._layers_for("charlm", both) == ["layernorm", "evolved"]
    assert BENCHMARK._layers_for("vit", both) == ["layernorm", "repbn", "evolved"]


@pytest.mark.parametrize("arguments, message", [
    (["--graph", "evolved"], "give NAME=FILE"),
    (["--graph", "a|b=x.json"], "give NAME=FILE"),
    (["--graph", "evolved=MISSING"], "No such file"),
    (["--graph", "evolved=BROKEN"], "not valid JSON"),
    (["--layers", "layernorm,nope"], "unknown layer name 'nope'"),
])
def test_a_bad_panel_exits_2_and_writes_nothing(tmp_path: Path, capsys, arguments: list[str],
                                                message: str) -> None:
    (tmp_path / "BROKEN").write_text("{not json")
    arguments = [a.replace("MISSING", str(tmp_path / "missing.json"))
                 .replace("BROKEN", str(tmp_path / "BROKEN")) for a in arguments]
    out = tmp_path / "tf.json"
    with pytest.raises(SystemExit) as exit_info:
        BENCHMARK.main(["--out", str(out), *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_each_layer_is_compared_with_layernorm_paired_by_seed() -> None:
    panel = BENCHMARK.read_panel("layernorm,rmsnorm", [])
    panel["evolved"] = EVOLVED
    scores = {"layernorm": {0: 0.40, 1: 0.42, 2: 0.41}, "rmsnorm": {0: 0.40, 1: 0.43},
              "evolved": {0: 0.43, 1: 0.45, 2: 0.45}}
    store = {"cells": {BENCHMARK._key("ref", "vit", layer, seed): {"status": "done", "score": score,
                                                                   "cpu": 1.0}
                       for layer, by_seed in scores.items() for seed, score in by_seed.items()}}
    gaps = BENCHMARK.summarize(store, "ref", "vit", "ref", panel)["minus_layernorm"]
    assert set(gaps) == {"rmsnorm", "evolved"}
    mean, low, high, n = gaps["evolved"]
    assert n == 3 and mean == pytest.approx(0.10 / 3) and low < mean < high
    # differences 0.03, 0.03, 0.04: SD 0.00577, t(2) 4.303 -> half-width 0.01434
    assert high - mean == pytest.approx(4.303 * 0.0057735 / 3 ** 0.5, rel=1e-3)
    assert gaps["rmsnorm"][3] == 2  # only the seeds both have


def test_a_store_of_one_split_is_not_mixed_with_the_other(tmp_path: Path, capsys) -> None:
    out = tmp_path / "tf.json"
    cell = {"status": "done", "score": 0.5, "cpu": 1.0}
    out.write_text('{"cells": {"ref|vit|layernorm|0": %s}}' % str(cell).replace("'", '"'))
    before = out.read_text()
    with pytest.raises(SystemExit) as exit_info:
        BENCHMARK.main(["--out", str(out), "--split", "test", "--report-only"])
    assert exit_info.value.code == 2
    assert "holds validation-split cells; give another --out" in capsys.readouterr().err
    assert out.read_text() == before
    # The report names the split it scored.
    out.write_text('{"split": "test", "cells": {"ref|vit|layernorm|0": %s}}'
                   % str(cell).replace("'", '"'))
    BENCHMARK.main(["--out", str(out), "--split", "test", "--report-only"])
    assert "## vit: test accuracy" in capsys.readouterr().out
