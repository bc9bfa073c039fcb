"""Tests of `evonorm_search.load_layer(db, candidate_id)`."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from db.store import SearchStore
from evonorm_search import load_layer
from evonorm_search.compile import compile_layer
from evonorm_search.errors import StoreError
from evonorm_search.known import KNOWN_LAYERS

REPO = Path(__file__).resolve().parents[1]


def store_layers(path: Path, names: list[str]) -> dict[str, int]:
    """A database with one done candidate per known layer name; name -> candidate id."""
    ids = {}
    with SearchStore.open(path, create=True) as store:
        search = store.create_search("api", {}, seed=0)
        for number, name in enumerate(names):
            graph = KNOWN_LAYERS[name]
            record = store.add_candidate(
                search.id, number=number, parent_id=None, graph_json=graph.to_json(),
                structural_hash=graph.structural_hash(), fingerprint=None, seed=number,
            )
            store.record_result(record.id, status="done", accuracies={"resnet": 0.5})
            ids[name] = record.id
    return ids


@pytest.mark.parametrize("name", sorted(KNOWN_LAYERS))
def test_loaded_layer_computes_what_the_stored_graph_compiles_to(tmp_path: Path, name: str) -> None:
    path = tmp_path / "s.db"
    candidate = store_layers(path, [name])[name]
    factory = load_layer(path, candidate)
    x = torch.randn(3, 12, 5, 5, generator=torch.Generator().manual_seed(0))
    loaded, reference = factory(12), compile_layer(KNOWN_LAYERS[name], 12)
    # Non-trivial parameters so that v0/v1/gamma/beta all matter in the comparison.
    for module in (loaded, reference):
        with torch.no_grad():
            for index, parameter in enumerate(module.parameters()):
                parameter.copy_(torch.linspace(0.5, 1.5, parameter.numel()).reshape(parameter.shape) + index)
    for mode in ("train", "eval"):
        loaded.train(mode == "train")
        reference.train(mode == "train")
        assert torch.equal(loaded(x), reference(x))


def test_factory_works_in_a_model_with_tiny_shapes_and_groups_not_dividing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    candidate = store_layers(path, ["evonorm_s0"])["evonorm_s0"]
    factory = load_layer(str(path), candidate, groups=4)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), factory(6), nn.Conv2d(6, 2, 1))
    x = torch.randn(1, 3, 1, 1, requires_grad=True)  # batch 1, 1x1 feature map; C=6, g=4 -> 3
    out = model(x)
    assert out.shape == (1, 2, 1, 1) and torch.isfinite(out).all()
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_open_store_is_accepted_and_file_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    ids = store_layers(path, ["bn_relu", "evonorm_b0"])
    before = path.read_bytes(), path.stat().st_mtime_ns
    assert isinstance(load_layer(path, ids["bn_relu"])(4), nn.Module)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    with SearchStore.open(path, readonly=True) as store:
        assert isinstance(load_layer(store, ids["evonorm_b0"])(4), nn.Module)
        assert store.list_searches()  # still open: load_layer does not close a store it was given


@pytest.mark.parametrize(
    "stored",
    [
        "not json at all",
        '{"format": "evonorm-layer-graph", "version": 1, "nodes": [{"op": "system", "inputs": [0]}]}',
        '{"format": "evonorm-layer-graph", "version": 1, "nodes": [{"op": "add", "inputs": [0, 9]}]}',
        '{"format": "pickle", "version": 1, "nodes": []}',
    ],
)
def test_tampered_graph_in_the_database_is_refused(tmp_path: Path, stored: str) -> None:
    path = tmp_path / "s.db"
    candidate = store_layers(path, ["gn_relu"])["gn_relu"]
    connection = sqlite3.connect(path)
    connection.execute("UPDATE candidates SET graph_json = ? WHERE id = ?", (stored, candidate))
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match=rf"candidate {candidate} .* invalid layer graph"):
        load_layer(path, candidate)


def test_unknown_candidate_and_missing_database(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store_layers(path, ["gn_relu"])
    with pytest.raises(StoreError, match="no candidate with id 77"):
        load_layer(path, 77)
    with pytest.raises(StoreError, match="no evonorm database"):
        load_layer(tmp_path / "absent.db", 1)
    assert not (tmp_path / "absent.db").exists()


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, evonorm_search; assert 'torch' not in sys.modules; print(evonorm_search.__all__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "load_layer" in done.stdout
