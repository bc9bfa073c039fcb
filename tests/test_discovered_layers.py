"""Discovered layers (`evonorm_search.known.DISCOVERED_LAYERS`): each computes its
documented formula (checked against a hand-written module), is finite where the paper's
layers must be, is usable by name wherever a known layer is, and stays out of
`--init known` (the default start of a search)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

from evonorm_search import load_layer
from evonorm_search.compile import compile_layer
from evonorm_search.config import SearchConfig
from evonorm_search.fingerprint import fingerprint
from evonorm_search.known import DISCOVERED_LAYERS, KNOWN_LAYERS, get_known, known_name, known_names
from tests.cli_runner import run_evonorm
from tests.test_export import assert_same_layer
from tests.test_known_layers import group_std


def _swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


# Each discovered layer written from its formula (before the compiled affine).
REFERENCES: dict[str, Callable[[Tensor], Tensor]] = {
    "swish_group_rmsnorm": lambda x: _swish(x) / group_std(_swish(x), rms=True),
}
FORMULAS = {"swish_group_rmsnorm": "x * sigmoid(x) / rms_group(x * sigmoid(x))"}
# Batch 1 and 1x1 maps (S-space layers must be finite there), and 35 channels, which 32
# groups do not divide (lowered to 7 groups of 5).
SHAPES = [(4, 24, 5, 5), (1, 24, 1, 1), (1, 24, 4, 4), (2, 35, 3, 3), (3, 64, 1, 1)]


def test_every_discovered_layer_is_documented_here_and_apart_from_the_known() -> None:
    assert set(REFERENCES) == set(FORMULAS) == set(DISCOVERED_LAYERS)
    assert not set(DISCOVERED_LAYERS) & set(KNOWN_LAYERS)
    for name, graph in DISCOVERED_LAYERS.items():
        assert graph.formula() == FORMULAS[name]
        assert known_name(graph.structural_hash()) == name and get_known(name) is graph


@pytest.mark.parametrize("name", sorted(DISCOVERED_LAYERS))
@pytest.mark.parametrize("shape", SHAPES)
def test_compiled_layer_equals_its_formula_and_is_finite(name: str, shape: tuple) -> None:
    c = shape[1]
    layer = compile_layer(get_known(name), c)
    gen = torch.Generator().manual_seed(c)
    with torch.no_grad():
        for parameter in layer.parameters():  # v0/v1 unused: they must change nothing
            parameter.copy_(1 + 0.5 * torch.randn(parameter.shape, generator=gen))
    x = torch.randn(shape, generator=gen, requires_grad=True)
    expected = REFERENCES[name](x) * layer.gamma + layer.beta
    for training in (True, False):
        layer.train(training)
        out = layer(x)
        torch.testing.assert_close(out, expected)
        assert torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", sorted(DISCOVERED_LAYERS))
def test_exported_and_loaded_by_name_equal_the_compiled_layer(name: str, tmp_path: Path) -> None:
    assert_same_layer(get_known(name), (4, 24, 3, 3), tmp_path)
    assert_same_layer(get_known(name), (1, 35, 1, 1), tmp_path)
    x = torch.randn(2, 12, 3, 3)
    torch.testing.assert_close(load_layer(name)(12)(x), compile_layer(get_known(name), 12)(x))
    graph_file = tmp_path / "layer.json"
    graph_file.write_text(get_known(name).to_json())
    torch.testing.assert_close(load_layer(graph_file)(12)(x), compile_layer(get_known(name), 12)(x))


def test_functionally_new_and_not_in_the_default_start() -> None:
    known_prints = {fingerprint(graph).digest for graph in KNOWN_LAYERS.values()}
    for graph in DISCOVERED_LAYERS.values():
        found = fingerprint(graph)
        assert found.finite and found.digest not in known_prints
    known_s = [KNOWN_LAYERS[n] for n in known_names("norm_act") if KNOWN_LAYERS[n].space == "S"]
    assert SearchConfig(space="S", init="known").init_layers() == known_s
    assert SearchConfig(space="S", init="known,swish_group_rmsnorm").init_layers() == [
        *known_s, get_known("swish_group_rmsnorm")]


def test_usable_by_name_in_every_command(tmp_path: Path) -> None:
    name = "swish_group_rmsnorm"
    code, out, err = run_evonorm("show", name)
    assert code == 0 and f"({name})" in out and "origin:  discovered" in out, err
    code, out, _ = run_evonorm("show", name, "--json")
    document = json.loads(out)
    assert (document["source"], document["layer"]["known_name"]) == ("discovered", name)
    code, _, err = run_evonorm("export", name, "-o", str(tmp_path / "layer.py"))
    assert code == 0 and "class EvolvedNormAct" in (tmp_path / "layer.py").read_text(), err
    code, out, err = run_evonorm("evaluate", name, "evonorm_s2", "--task", "planted",
                                 "--target", name)
    assert code == 0 and f"{name}: recovered: identical" in out, err
    db = str(tmp_path / "p.db")
    code, out, err = run_evonorm("search", "--db", db, "--task", "planted", "--target", name,
                                 "--space", "S", "--init", f"{name},evonorm_s0",
                                 "--population", "2", "--budget", "2", "--reevaluate", "1",
                                 "--executor", "inline")
    assert code == 0 and "after 1 evaluations (identical)" in out, err
    # rerank takes it as a baseline: the name passes, the missing database is the error.
    code, _, err = run_evonorm("rerank", "t", "--db", str(tmp_path / "none.db"),
                               "--baselines", f"evonorm_s0,{name}")
    assert code == 2 and "no evonorm database" in err
