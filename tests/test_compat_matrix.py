"""The compatibility matrix (evonorm_search.compat) in the default run.

Every cell for every named layer and two random valid layers (one from space B, one from
S), both shipped forms. The tracing cells (torch.compile, torch.export, ONNX) cost seconds
per traced layer, so here they take the known layers in their exported form and the
random ones in both forms (the compiled form of the known layers is traced by
tests/test_compile.py), and torch.compile uses the aot_eager backend (dynamo and AOT
autograd without inductor's C++ build). The whole matrix, every named layer and 200
random ones with inductor, is `benchmarks/compat_matrix.py` and the slow test below.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from evonorm_search import compat
from evonorm_search import compile as compile_module
from evonorm_search.compat import (
    Entry, build_entries, check_autocast, check_compile, check_ddp, check_eval, check_export,
    check_formats, check_onnx, known_subjects, mismatch, onnx_missing, random_subjects,
)
from evonorm_search.compile import CompiledLayer, compile_layer
from evonorm_search.known import KNOWN_HOMES, NAMED_LAYERS, get_known

SUBJECTS = known_subjects() + random_subjects(2)


@pytest.fixture(scope="module")
def entries(tmp_path_factory: pytest.TempPathFactory) -> list[Entry]:
    return build_entries(SUBJECTS, tmp_path_factory.mktemp("layers"))


def traced(entries: list[Entry]) -> list[Entry]:
    return [e for e in entries if e.form == "exported" or e.subject.name.startswith("random_")]


def assert_all_pass(results: list[compat.Result], count: int) -> None:
    failures = [f"{r.cell} {r.subject} [{r.form}]: {r.status} {r.detail}"
                for r in results if r.status != "pass"]
    assert not failures, "\n".join(failures)
    assert len(results) == count


def test_subjects_cover_the_registry_and_both_spaces() -> None:
    image_layers = [n for n in NAMED_LAYERS if KNOWN_HOMES[n] == "norm_act"]
    assert [s.name for s in SUBJECTS[:len(image_layers)]] == image_layers
    assert [s.graph.space for s in SUBJECTS[len(image_layers):]] == ["B", "S"]


def test_ddp_two_processes_default_find_unused_parameters() -> None:
    """Regression (issue 19): an exported EvoNorm-S0 under DDP failed on its second step
    because it created a v0 its graph does not use. Here every layer, both forms, runs
    3 SGD steps in 2 gloo processes and equals a one-process simulation."""
    results = check_ddp(SUBJECTS)
    assert_all_pass(results, 2 * len(SUBJECTS))
    assert ("evonorm_s0", "exported") in {(r.subject, r.form) for r in results}


@pytest.mark.parametrize("check", [check_autocast, check_formats, check_eval],
                         ids=["autocast", "formats", "eval"])
def test_eager_cells(entries: list[Entry], check) -> None:  # type: ignore[no-untyped-def]
    assert_all_pass([check(e) for e in entries], len(entries))


def test_torch_compile_fullgraph(entries: list[Entry]) -> None:
    assert_all_pass(check_compile(traced(entries), backend="aot_eager"), len(traced(entries)))


def test_torch_export_dynamic_batch_and_spatial_sizes(entries: list[Entry]) -> None:
    assert_all_pass(check_export(traced(entries)), len(traced(entries)))


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside torch.onnx
def test_onnx_runtime_parity(entries: list[Entry]) -> None:
    reason = onnx_missing()
    if reason:
        pytest.skip(reason)
    assert_all_pass(check_onnx(traced(entries)), len(traced(entries)))


# --- the checks can fail --------------------------------------------------------------


def test_mismatch_tolerates_rounding_not_errors() -> None:
    exact = torch.tensor([1.0, -2.0, 1e6, float("inf")], dtype=torch.float64)
    eager = exact.float()
    assert mismatch(eager * (1 + 5e-5), eager, exact) is None
    assert "1 values differ" in mismatch(eager + torch.tensor([0, 0, 1e3, 0]), eager, exact)
    assert "non-finite" in mismatch(torch.tensor([1.0, float("nan"), 1e6, 0]), eager, exact)
    # Where eager float32 is itself inaccurate, a result as accurate as it passes.
    rough = torch.tensor([1.01, -2.0, 1e6, 0.0])
    assert mismatch(torch.tensor([0.995, -2.0, 1e6, 5.0]), rough, exact) is None


class _EvalIgnored(CompiledLayer):
    """Batch statistics in eval mode too: each output depends on its batch."""

    def train(self, mode: bool = True) -> "_EvalIgnored":
        return super().train(True)


def _entry(module: nn.Module, name: str) -> Entry:
    """`module` checked against a plain compiled twin at its state."""
    eager = compile_layer(get_known(name), compat.CHANNELS, groups=compat.GROUPS)
    eager.load_state_dict(module.state_dict())
    return Entry(compat.Subject(name, get_known(name)), "compiled", module, eager,
                 copy.deepcopy(eager).double())


def test_eval_cell_catches_batch_statistics_in_eval_mode() -> None:
    module = _EvalIgnored(get_known("bn_relu"), compat.CHANNELS, groups=compat.GROUPS)
    result = check_eval(_entry(module, "bn_relu"))
    assert result.status == "fail" and "sample 0 alone" in result.detail, result


def test_autocast_cell_catches_half_precision_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer computing in bfloat16 (no float32 upcast) fails on the offset inputs."""
    module = compile_layer(get_known("gn_relu"), compat.CHANNELS, groups=compat.GROUPS)
    entry = _entry(module.to(torch.bfloat16), "gn_relu")
    monkeypatch.setattr(compile_module, "HALF_PRECISION", ())
    result = check_autocast(entry)
    assert result.status == "fail" and "values differ" in result.detail, result


class _GraphBreak(nn.Module):
    """A data-dependent branch: no full graph for torch.compile."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, compat.CHANNELS, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma if bool(x.sum() > 0) else -x * self.gamma


def test_a_failing_layer_is_named_and_the_others_still_pass(entries: list[Entry]) -> None:
    good = entries[0]
    bad = Entry(compat.Subject("graph_break", good.subject.graph), "compiled", _GraphBreak(),
                _GraphBreak(), _GraphBreak().double())
    results = check_compile([good, bad], backend="eager")
    assert [(r.subject, r.status) for r in results] == [(good.subject.name, "pass"),
                                                        ("graph_break", "fail")]


@pytest.mark.slow
def test_full_matrix_every_known_layer_and_200_random_layers() -> None:
    results = compat.run_matrix(known_subjects() + random_subjects(200), backend="inductor")
    assert_all_pass([r for r in results if r.status != "skip"],
                    len([r for r in results if r.status != "skip"]))
