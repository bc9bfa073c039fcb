"""The Python examples of docs/using_a_layer.md run, in order, as a reader would paste them.

The page's blocks share one namespace and run in a scratch folder holding a search
database whose candidate 1 is EvoNorm-S0 (what the page loads). Two substitutions keep
this fast without changing what the examples do: torch.compile uses the aot_eager backend
(dynamo and AOT autograd, no C++ build; inductor is checked by benchmarks/compat_matrix.py),
and DDP gets a free port. The ONNX example needs the onnx extra.
"""

from __future__ import annotations

import functools
import re
import socket
import sys
from pathlib import Path

import pytest
import torch

from evonorm_search.compat import onnx_missing
from tests.test_api import store_layers

PAGE = Path(__file__).resolve().parents[1] / "docs" / "using_a_layer.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_page_has_examples_for_every_topic() -> None:
    text = PAGE.read_text()
    code = "\n".join(python_blocks(text))
    for needle in ("to_source", "load_layer", "swap_norm_act", "DistributedDataParallel",
                   "torch.compile", "torch.export.export", "torch.onnx.export", "autocast",
                   "load_state_dict", "weights_only=True", "compat.run_matrix"):
        assert needle in code, needle


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside torch.onnx
def test_the_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = onnx_missing()
    if reason:
        pytest.skip(f"the page's ONNX example needs the onnx extra: {reason}")
    assert store_layers(tmp_path / "evonorm.db", ["evonorm_s0"]) == {"evonorm_s0": 1}
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    monkeypatch.delitem(sys.modules, "my_layer", raising=False)
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for number, block in enumerate(python_blocks(PAGE.read_text()), 1):
        try:
            exec(compile(block, f"{PAGE.name} block {number}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"block {number} failed:\n{block}") from error
    assert (tmp_path / "my_model.onnx").is_file() and (tmp_path / "layer.pt").is_file()
