"""The op registry: metadata, and per-op checks looped over every registered op."""

from __future__ import annotations

import pytest
import torch

from primitives import OPS, SPACES, UnknownOpError, get_op, op_names

EPS = 1e-5
STAT_NAMES = [f"{s}_{a}" for s in ("mean", "rms", "std") for a in ("batch", "layer", "instance", "group")]
CHANNEL_STATS = [f"{s}_{a}" for s in ("mean", "rms", "std") for a in ("channel", "channel_group")]
ELEMENTWISE = ["add", "mul", "div", "max", "neg", "sigmoid", "tanh", "exp", "log", "abs", "square", "sqrt"]
SHAPES = [(4, 24, 5, 5), (4, 24, 1, 1), (1, 24, 3, 3), (1, 64, 1, 1), (2, 6, 2, 2)]


def groups_for(c: int) -> int:
    g = min(32, c)
    while c % g:
        g -= 1
    return g


def apply(name: str, *args: torch.Tensor, running: torch.Tensor | None = None,
          training: bool = True) -> torch.Tensor:
    """Call an op the way the compiler does."""
    op = OPS[name]
    t = args[0]
    if op.reads_batch_stats:
        if running is None:
            running = torch.full((1, t.shape[1], 1, 1), float(op.running_init), dtype=t.dtype)
        return op.fn(t, running, training, 0.1, EPS)
    if op.kind == "statistic":
        return op.fn(t, EPS, groups_for(t.shape[1]))
    return op.fn(*args, EPS)


def test_registry_has_the_24_primitives_of_the_paper_and_the_channel_statistics() -> None:
    assert sorted(OPS) == sorted(ELEMENTWISE + STAT_NAMES + CHANNEL_STATS)
    assert {n for n, op in OPS.items() if op.kind == "elementwise"} == set(ELEMENTWISE)
    assert all(OPS[n].kind == "statistic" and OPS[n].arity == 1 for n in STAT_NAMES + CHANNEL_STATS)
    assert {n for n, op in OPS.items() if op.arity == 2} == {"add", "mul", "div", "max"}
    assert {n for n, op in OPS.items() if op.commutative} == {"add", "mul", "max"}
    assert {n for n, op in OPS.items() if op.reads_batch_stats} == {
        "mean_batch", "rms_batch", "std_batch"
    }
    for op in OPS.values():
        assert op.doc and op.name
        assert op.axes == (None if op.kind == "elementwise" else op.name.split("_", 1)[1])


def test_op_names_by_space() -> None:
    """B and S are exactly the paper's spaces; T adds per-token statistics only."""
    assert set(op_names("B")) == set(ELEMENTWISE + STAT_NAMES)
    assert set(op_names("S")) == set(ELEMENTWISE + STAT_NAMES) - {"mean_batch", "rms_batch", "std_batch"}
    assert set(op_names("T")) == set(ELEMENTWISE + CHANNEL_STATS)
    assert set(op_names("TB")) == set(ELEMENTWISE + CHANNEL_STATS) | {"mean_batch", "rms_batch", "std_batch"}
    assert [SPACES[name].slot for name in ("B", "S", "T", "TB")] == ["norm_act", "norm_act", "norm", "norm"]
    with pytest.raises(ValueError, match="unknown search space 'X'; use one of: B, S, T, TB"):
        op_names("X")  # type: ignore[arg-type]


def test_get_op_unknown_names_the_known_ops() -> None:
    assert get_op("mul").name == "mul"
    with pytest.raises(UnknownOpError, match="unknown op 'mull'.*mul"):
        get_op("mull")


def test_the_vocabulary_does_not_depend_on_the_rest_of_the_package() -> None:
    """primitives <- evonorm_search <- workers: the registry imports nothing of ours."""
    import ast
    from pathlib import Path

    import primitives

    for source in Path(primitives.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                    alias.name for alias in node.names]
                for name in names:
                    assert not name.startswith(("evonorm_search", "workers", "db")), (source, name)


def _inputs(name: str, shape: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).requires_grad_()
        for _ in range(OPS[name].arity)
    ]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(OPS))
def test_op_keeps_shape_is_finite_and_twice_differentiable(name: str, shape: tuple[int, ...]) -> None:
    inputs = _inputs(name, shape, seed=hash(name) % 1000)
    out = apply(name, *inputs)
    assert torch.broadcast_shapes(out.shape, shape) == shape  # broadcasts back to the input
    full = out.expand(shape)
    assert torch.isfinite(full).all()
    weights = torch.randn(shape, dtype=torch.float64)
    grads = torch.autograd.grad((full * weights).sum(), inputs, create_graph=True)
    for g in grads:
        assert g.shape == shape and torch.isfinite(g).all()
    curved = [g for g in grads if g.requires_grad]  # linear ops have constant gradients
    if curved:
        second = torch.autograd.grad(sum((g * g).sum() for g in curved), inputs, allow_unused=True)
        for g in second:
            assert g is None or torch.isfinite(g).all()


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_finite_with_derivatives_at_zero(name: str) -> None:
    """Zero input is where unguarded div/log/sqrt/std break."""
    inputs = [torch.zeros(2, 8, 3, 3, dtype=torch.float64, requires_grad=True)
              for _ in range(OPS[name].arity)]
    out = apply(name, *inputs)
    assert torch.isfinite(out).all()
    (g,) = torch.autograd.grad(out.sum(), inputs[-1], create_graph=True)
    assert torch.isfinite(g).all()
    if g.requires_grad:
        (gg,) = torch.autograd.grad(g.sum(), inputs[-1], allow_unused=True)
        assert gg is None or torch.isfinite(gg).all()


def test_guarded_div_log_sqrt_values() -> None:
    a = torch.tensor([1.0, -2.0, 3.0])
    b = torch.tensor([0.0, -0.5, 2.0])
    torch.testing.assert_close(apply("div", a, b), torch.tensor([1 / EPS, -2 / (-0.5 - EPS), 3 / (2 + EPS)]))
    t = torch.tensor([-4.0, 0.0, 4.0])
    torch.testing.assert_close(apply("log", t), torch.tensor([-torch.log(torch.tensor(4 + EPS)), 0.0, torch.log(torch.tensor(4 + EPS))]))
    torch.testing.assert_close(apply("sqrt", t), torch.tensor([-(4 + EPS) ** 0.5, 0.0, (4 + EPS) ** 0.5]))


def test_statistics_match_definitions_over_their_axes() -> None:
    x = torch.randn(3, 64, 4, 5, dtype=torch.float64)
    dims = {"batch": (0, 2, 3), "layer": (1, 2, 3), "instance": (2, 3)}
    for axes, d in dims.items():
        torch.testing.assert_close(apply(f"mean_{axes}", x), x.mean(d, keepdim=True))
        torch.testing.assert_close(apply(f"rms_{axes}", x), (x.pow(2).mean(d, keepdim=True) + EPS).sqrt())
        torch.testing.assert_close(apply(f"std_{axes}", x), (x.var(d, unbiased=False, keepdim=True) + EPS).sqrt())
    # 64 channels in 32 groups of 2: each group's statistic, repeated over its 2 channels.
    xg = x.reshape(3, 32, 2 * 4 * 5)
    expected = (xg.var(2, unbiased=False) + EPS).sqrt().repeat_interleave(2, dim=1)
    torch.testing.assert_close(apply("std_group", x).squeeze(), expected)
    expected_mean = xg.mean(2).repeat_interleave(2, dim=1)
    torch.testing.assert_close(apply("mean_group", x).squeeze(), expected_mean)


def test_channel_statistics_are_per_position() -> None:
    """channel: over C at each (n, h, w); channel_group: over each group's C/g channels,
    repeated over them (64 channels in 32 groups of 2 here)."""
    x = torch.randn(3, 64, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(apply("mean_channel", x), x.mean(1, keepdim=True))
    torch.testing.assert_close(apply("rms_channel", x), (x.pow(2).mean(1, keepdim=True) + EPS).sqrt())
    torch.testing.assert_close(apply("std_channel", x), (x.var(1, unbiased=False, keepdim=True) + EPS).sqrt())
    xg = x.reshape(3, 32, 2, 4, 5)
    torch.testing.assert_close(apply("std_channel_group", x),
                               (xg.var(2, unbiased=False) + EPS).sqrt().repeat_interleave(2, dim=1))
    torch.testing.assert_close(apply("rms_channel_group", x),
                               (xg.pow(2).mean(2) + EPS).sqrt().repeat_interleave(2, dim=1))
    torch.testing.assert_close(apply("mean_channel_group", x), xg.mean(2).repeat_interleave(2, dim=1))
    # On a permuted (channel-last) view, as a Transformer's (B, T, C) is seen: same values.
    tokens = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    for name in CHANNEL_STATS:
        torch.testing.assert_close(apply(name, tokens), apply(name, x))
    # A tensor constant over channels (a per-position statistic itself): its own value.
    one = x[:, :1]
    torch.testing.assert_close(apply("mean_channel_group", one), one)
    torch.testing.assert_close(apply("std_channel_group", one), torch.full_like(one, EPS ** 0.5))


def test_group_statistic_of_channel_constant_tensor_uses_whole_sample() -> None:
    t = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    out = OPS["std_group"].fn(t, EPS, 8)
    torch.testing.assert_close(out, (t.var((1, 2, 3), unbiased=False, keepdim=True) + EPS).sqrt())


def test_batch_statistic_running_average_and_eval_mode() -> None:
    x = torch.randn(4, 6, 3, 3, dtype=torch.float64)
    running = torch.ones(1, 6, 1, 1, dtype=torch.float64)
    out = OPS["std_batch"].fn(x, running, True, 0.1, EPS)
    unbiased = x.var((0, 2, 3), unbiased=True, keepdim=True)
    torch.testing.assert_close(running, 0.9 + 0.1 * unbiased)
    torch.testing.assert_close(out, (x.var((0, 2, 3), unbiased=False, keepdim=True) + EPS).sqrt())
    frozen = running.clone()
    torch.testing.assert_close(OPS["std_batch"].fn(x * 5, running, False, 0.1, EPS), (frozen + EPS).sqrt())
    assert torch.equal(running, frozen)
    mean_running = torch.zeros(1, 6, 1, 1, dtype=torch.float64)
    OPS["mean_batch"].fn(x, mean_running, True, 0.1, EPS)
    torch.testing.assert_close(mean_running, 0.1 * x.mean((0, 2, 3), keepdim=True))
    rms_running = torch.ones(1, 6, 1, 1, dtype=torch.float64)
    OPS["rms_batch"].fn(x, rms_running, True, 0.1, EPS)
    torch.testing.assert_close(rms_running, 0.9 + 0.1 * x.pow(2).mean((0, 2, 3), keepdim=True))


def test_max_is_exact_when_the_magnitudes_differ_widely() -> None:
    """No cancellation: max(1, -1e8) is 1 exactly (b + relu(a - b) gives 0 in float32)."""
    a, b = torch.tensor([1.0, -1e8, 3.0]), torch.tensor([-1e8, 1.0, 3.0])
    assert torch.equal(OPS["max"].fn(a, b, 1e-5), torch.maximum(a, b))
