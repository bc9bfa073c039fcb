"""to_source: the stand-alone module equals the compiled one and imports only torch."""

from __future__ import annotations

import ast
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from evonorm_search.compile import compile_layer
from evonorm_search.errors import EvonormError
from evonorm_search.export import to_source
from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_LAYERS, get_known
from tests.test_graph import graphs


def load_source(source: str, directory: Path, name: str = "exported_layer") -> ModuleType:
    """Import generated source the way a user would: from a .py file."""
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def assert_same_layer(graph: LayerGraph, shape: tuple[int, ...], directory: Path) -> None:
    source = to_source(graph, class_name="Layer")
    exported = load_source(source, directory).Layer(shape[1])
    compiled = compile_layer(graph, shape[1])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in compiled.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    exported.load_state_dict(compiled.state_dict())  # strict: same keys
    for _ in range(2):
        x = torch.randn(shape, generator=gen)
        torch.testing.assert_close(exported(x), compiled(x), equal_nan=True)
    for key, value in compiled.state_dict().items():
        torch.testing.assert_close(exported.state_dict()[key], value)
    exported.eval()
    compiled.eval()
    x = torch.randn(shape, generator=gen)
    torch.testing.assert_close(exported(x), compiled(x), equal_nan=True)


@pytest.mark.parametrize("name", sorted(KNOWN_LAYERS))
def test_exported_known_layers_equal_compiled(name: str, tmp_path: Path) -> None:
    source = to_source(get_known(name))
    assert imported_modules(source) <= {"torch", "__future__"}
    module = load_source(source, tmp_path)
    doc = module.EvolvedNormAct.__doc__
    assert doc is not None and get_known(name).formula() in doc
    assert_same_layer(get_known(name), (4, 24, 3, 3), tmp_path)
    assert_same_layer(get_known(name), (2, 64, 1, 1), tmp_path)


@settings(max_examples=40, deadline=None)
@given(graphs(), st.sampled_from([(3, 24, 2, 2), (2, 64, 1, 1), (1, 6, 3, 3)]))
def test_exported_random_graphs_equal_compiled(graph: LayerGraph, shape: tuple) -> None:
    with tempfile.TemporaryDirectory() as directory:
        source = to_source(graph, class_name="Layer")
        assert imported_modules(source) <= {"torch", "__future__"}
        assert_same_layer(graph, shape, Path(directory))


def test_exported_module_runs_in_a_clean_interpreter(tmp_path: Path) -> None:
    """Nothing from evonorm_search or primitives is needed to use the exported file."""
    import subprocess

    (tmp_path / "layer.py").write_text(to_source(get_known("evonorm_b1")))
    script = (
        "import sys\n"
        "sys.path.insert(0, '.')\n"
        "import torch, layer\n"
        "m = layer.EvolvedNormAct(12)\n"
        "y = m(torch.randn(2, 12, 3, 3))\n"
        "assert y.shape == (2, 12, 3, 3)\n"
        "assert not [k for k in sys.modules if k.startswith(('evonorm_search', 'primitives'))]\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_bad_class_name() -> None:
    with pytest.raises(EvonormError, match="not a Python identifier"):
        to_source(get_known("evonorm_s0"), class_name="my layer")
    with pytest.raises(EvonormError, match="not a Python identifier"):
        to_source(get_known("evonorm_s0"), class_name="class")
