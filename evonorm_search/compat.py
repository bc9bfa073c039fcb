"""Where a discovered layer works: the compatibility matrix (docs/using_a_layer.md).

Each cell checks one setting in which models are trained and shipped, for a layer in both
of the forms we ship (`compiled`: `compile_layer`, what `load_layer` returns; `exported`:
the stand-alone source of `to_source`), against the eager compiled module in float32 and
a float64 copy of it:

- `ddp`: DistributedDataParallel, 2 processes, gloo on loopback, the default
  find_unused_parameters=False; a few SGD steps equal a one-process simulation of them;
- `compile`: torch.compile(fullgraph=True); train-mode outputs, gradients and running
  statistics, then eval-mode outputs;
- `export`: torch.export.export with dynamic batch and spatial sizes, train and eval
  mode, the program then run at other sizes;
- `onnx`: torch.onnx.export (eval mode, dynamic sizes) run by ONNX Runtime;
- `autocast`: CPU autocast to bfloat16 and float16 on inputs with and without a large
  offset: output in the input's dtype, finite, within the dtype's epsilon of float64;
- `formats`: channels_last input, 1x1 maps, batch size 1 (S-space layers: a sample's
  output equals its row in a larger batch), a channel count the group count does not
  divide;
- `eval`: in eval mode no output depends on the rest of its batch and running statistics
  stay untouched; eval() then train() gives back the training behaviour.

Agreement (`mismatch`): a value agrees with the eager float32 one within tol * (1 + |eager|)
or, where it does not, is no further from the float64 value than twice the eager error
(plus the same tolerance), so an ill-conditioned random layer is judged by accuracy, not
by float32 rounding order; values whose float64 reference is not finite within the
dtype's range are not compared. The tracing cells (compile, export, onnx) check many
layers at once as one module (tracing costs seconds per call) and retry layer by layer
when that fails, to name the layers that fail.
"""

from __future__ import annotations

import copy
import datetime
import importlib.util
import itertools
import json
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Literal, Sequence

import torch
from torch import Tensor, nn

from evonorm_search.compile import compile_layer
from evonorm_search.export import to_source
from evonorm_search.fingerprint import fingerprint
from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_HOMES, NAMED_LAYERS
from evonorm_search.search.moves import random_graph

CELLS = ("ddp", "compile", "export", "onnx", "autocast", "formats", "eval")
FORMS = ("compiled", "exported")
CHANNELS, GROUPS = 24, 8  # 3 channels per group: group, instance and layer statistics differ
ODD_CHANNELS = 20  # with GROUPS = 8: the group count is lowered to 5
SHAPE = (4, CHANNELS, 6, 6)
TOLERANCE = 1e-4  # float32 parity (compile, export, onnx, ddp)
DDP_STEPS, DDP_LR = 3, 0.01
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
_MODULE_NUMBERS = itertools.count()

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Subject:
    """A layer to check: a known layer or a random valid one."""

    name: str
    graph: LayerGraph


@dataclass(frozen=True)
class Result:
    cell: str
    subject: str
    form: str  # "compiled", "exported" or "-" (the cell as a whole)
    status: Status
    detail: str = ""


# Search spaces of layers for (N, C, H, W) inputs, the shapes every cell feeds.
IMAGE_SPACES = ("B", "S")


def known_subjects() -> list[Subject]:
    """Every named layer (the paper's and the discovered ones) made for (N, C, H, W)
    inputs (home "norm_act"; the Transformer norms take (B, T, C) tokens), from the
    registry, so a layer added there is checked too."""
    return [Subject(name, graph) for name, graph in NAMED_LAYERS.items()
            if KNOWN_HOMES[name] == "norm_act" and graph.space in IMAGE_SPACES]


def random_subjects(count: int, seed: int = 0) -> list[Subject]:
    """`count` distinct random valid layers, B and S space alternately, as the search
    draws them (10 nodes) and keeps them (finite on the fingerprint probe); a B layer
    reads batch statistics in its live part."""
    rng = random.Random(seed)
    found: list[Subject] = []
    seen: set[str] = set()
    while len(found) < count:
        space = IMAGE_SPACES[len(found) % 2]
        graph = random_graph(rng, space)
        digest = graph.structural_hash()
        if graph.space != space or digest in seen or not fingerprint(graph).finite:
            continue
        seen.add(digest)
        found.append(Subject(f"random_{space}{len(found)}", graph))
    return found


# --- building the layers -------------------------------------------------------------


def load_exported_class(graph: LayerGraph, directory: Path, module_name: str) -> type[nn.Module]:
    """The exported source of `graph` written to a .py file and imported, as a user would."""
    path = directory / f"{module_name}.py"
    path.write_text(to_source(graph, class_name="Layer"))
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module.Layer


def sample(shape: Sequence[int], seed: int, offset: float = 0.5, scale: float = 2.0) -> Tensor:
    """A deterministic input with an offset (so centring matters)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=gen) * scale + offset


def prepared_layer(graph: LayerGraph, channels: int, seed: int) -> nn.Module:
    """The compiled layer with non-trivial parameters (init + 0.3 N(0, 1), fixed by `seed`)
    and running statistics after two training batches, in training mode."""
    layer = compile_layer(graph, channels, groups=GROUPS).train()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(layer.named_parameters()):
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=gen))
        for k in range(2):
            layer(sample((4, channels, 5, 5), seed * 7 + k))
    return layer


@dataclass
class Entry:
    """One subject in one form, with its float32 eager twin and float64 reference (all
    three at the same state)."""

    subject: Subject
    form: str
    module: nn.Module
    eager: nn.Module
    exact: nn.Module


def build_entries(subjects: Sequence[Subject], directory: Path, channels: int = CHANNELS,
                  forms: Sequence[str] = FORMS) -> list[Entry]:
    entries = []
    for index, subject in enumerate(subjects):
        eager = prepared_layer(subject.graph, channels, seed=index)
        for form in forms:
            if form == "compiled":
                module = copy.deepcopy(eager)
            else:
                cls = load_exported_class(subject.graph, directory,
                                          f"evonorm_compat_{os.getpid()}_{next(_MODULE_NUMBERS)}")
                module = cls(channels, groups=GROUPS)
                module.load_state_dict(eager.state_dict())
            entries.append(Entry(subject, form, module, copy.deepcopy(eager),
                                 copy.deepcopy(eager).double()))
    return entries


# --- agreement ------------------------------------------------------------------------


def mismatch(got: Tensor, eager: Tensor, exact: Tensor, tol: float = TOLERANCE,
             floor: float = 1.0, limit: float | None = None) -> str | None:
    """None when `got` agrees (module doc); else the worst element, described. `floor`
    is the magnitude below which `tol` is absolute; `limit` the dtype's largest value."""
    if got.shape != exact.shape:
        return f"shape {tuple(got.shape)} != {tuple(exact.shape)}"
    got, eager, exact = got.detach().double(), eager.detach().double(), exact.detach().double()
    limit = float(torch.finfo(torch.float32).max) if limit is None else limit
    compared = torch.isfinite(exact) & (exact.abs() <= limit)
    got, eager, exact = got[compared], eager[compared], exact[compared]
    if not torch.isfinite(got).all():
        bad = int((~torch.isfinite(got)).sum())
        return f"{bad} non-finite values where the float64 reference is finite"
    close = (got - eager).abs() <= tol * (floor + eager.abs())
    accurate = (got - exact).abs() <= 2 * (eager - exact).abs() + tol * (floor + exact.abs())
    bad = ~(close | accurate)
    if not bad.any():
        return None
    worst = int(((got - eager).abs() * bad).argmax())
    return (f"{int(bad.sum())} values differ, worst {float(got[worst]):.6g} vs eager "
            f"{float(eager[worst]):.6g} (float64 {float(exact[worst]):.6g})")


def state_mismatch(module: nn.Module, eager: nn.Module, exact: nn.Module,
                   tol: float = TOLERANCE) -> str | None:
    """Parameters and buffers compared by name (`mismatch`, floor = the tensor's scale)."""
    mine, theirs, reference = module.state_dict(), eager.state_dict(), exact.state_dict()
    if set(mine) != set(theirs):
        return f"state keys {sorted(mine)} != {sorted(theirs)}"
    for key in mine:
        floor = max(1.0, float(reference[key].abs().max()))
        problem = mismatch(mine[key], theirs[key], reference[key], tol, floor)
        if problem:
            return f"{key}: {problem}"
    return None


def gradient_mismatch(module: nn.Module, eager: nn.Module, exact: nn.Module) -> str | None:
    mine, theirs = dict(module.named_parameters()), dict(eager.named_parameters())
    reference = dict(exact.named_parameters())
    for name, parameter in theirs.items():
        got = mine[name].grad
        if got is None or parameter.grad is None:
            return f"no gradient for {name}"
        floor = max(1.0, float(reference[name].grad.abs().max()))
        problem = mismatch(got, parameter.grad, reference[name].grad, TOLERANCE, floor)
        if problem:
            return f"gradient of {name}: {problem}"
    return None


def _first(*problems: str | None) -> str | None:
    return next((p for p in problems if p), None)


def _result(cell: str, entry: Entry, problem: str | None) -> Result:
    return Result(cell, entry.subject.name, entry.form, "fail" if problem else "pass",
                  problem or "")


def _failed(cell: str, entry: Entry, error: BaseException) -> Result:
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return Result(cell, entry.subject.name, entry.form, "fail", text[:300])


# --- eager cells ----------------------------------------------------------------------


def _twins(entry: Entry) -> tuple[nn.Module, nn.Module, nn.Module]:
    return copy.deepcopy(entry.module), copy.deepcopy(entry.eager), copy.deepcopy(entry.exact)


def _run(module: nn.Module, x: Tensor) -> Tensor:
    """`module(x)` without autograd, x cast to the module's dtype."""
    with torch.no_grad():
        return module(x.to(module.gamma.dtype))


def check_formats(entry: Entry) -> Result:
    """channels_last, 1x1 maps, batch size 1 (S layers), a group count that does not
    divide the channel count."""
    problems: list[str | None] = []
    x = sample(SHAPE, 11)
    for training in (True, False):
        module, eager, exact = (m.train(training) for m in _twins(entry))
        y = _run(module, x.contiguous(memory_format=torch.channels_last))
        problems.append(_prefixed(f"channels_last ({'train' if training else 'eval'})",
                                  mismatch(y, _run(eager, x), _run(exact, x), 1e-5)))
        problems.append(_prefixed("channels_last state",
                                  state_mismatch(module, eager, exact, 1e-5)))
    module, eager, exact = _twins(entry)
    x1 = sample((4, CHANNELS, 1, 1), 12)
    problems.append(_prefixed("1x1 maps", mismatch(
        _run(module, x1), _run(eager, x1), _run(exact, x1), 1e-5)))
    if entry.subject.graph.space == "S":  # per-sample in training mode too
        problems.append(_prefixed("batch size 1",
                                  _batch_dependence(copy.deepcopy(entry.module), x)))
    with tempfile.TemporaryDirectory() as directory:
        odd = build_entries([entry.subject], Path(directory), ODD_CHANNELS, (entry.form,))[0]
    xo = sample((4, ODD_CHANNELS, 5, 5), 13)
    problems.append(_prefixed(f"{ODD_CHANNELS} channels, {GROUPS} groups", mismatch(
        _run(odd.module, xo), _run(odd.eager, xo), _run(odd.exact, xo), 1e-5)))
    return _result("formats", entry, _first(*problems))


def _prefixed(what: str, problem: str | None) -> str | None:
    return f"{what}: {problem}" if problem else None


def _batch_dependence(module: nn.Module, x: Tensor) -> str | None:
    """Whether a sample's output alone differs from its row in the batch `x` (the
    float64 copy of `module` on `x` judges rounding, see `mismatch`)."""
    whole, whole_exact = _run(module, x), _run(copy.deepcopy(module).double(), x)
    return _first(*(
        _prefixed(f"sample {k} alone", mismatch(_run(module, x[k:k + 1]), whole[k:k + 1],
                                                whole_exact[k:k + 1], 1e-5))
        for k in range(x.shape[0])))


def check_eval(entry: Entry) -> Result:
    """Eval mode: per-sample outputs, running statistics untouched; eval() then train()
    behaves as if eval mode never happened."""
    module = copy.deepcopy(entry.module).eval()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    x = sample(SHAPE, 21)
    problems = [_batch_dependence(module, x)]
    changed = [k for k, v in module.state_dict().items() if not torch.equal(v, before[k])]
    if changed:
        problems.append(f"eval mode changed {changed}")
    trained, round_trip = copy.deepcopy(entry.module).train(), copy.deepcopy(entry.module)
    round_trip.eval()
    _run(round_trip, x)
    round_trip.train()
    x2 = sample(SHAPE, 22)
    states = zip(trained.state_dict().values(), round_trip.state_dict().values())
    if not torch.equal(_run(trained, x2), _run(round_trip, x2)) or any(
        not torch.equal(a, b) for a, b in states
    ):
        problems.append("after eval() then train() the layer differs from one never in eval mode")
    return _result("eval", entry, _first(*problems))


def check_autocast(entry: Entry) -> Result:
    """CPU autocast to bfloat16 and float16; inputs with offset 0 and 1000."""
    problems: list[str | None] = []
    for dtype in (torch.bfloat16, torch.float16):
        info = torch.finfo(dtype)
        for offset, scale in ((0.5, 2.0), (1000.0, 1.0)):
            module, eager, exact = _twins(entry)
            x = sample(SHAPE, 31, offset, scale).to(dtype)  # as a conv under autocast hands it on
            with torch.autocast("cpu", dtype=dtype):
                y = module(x)
                loss = (y.float() * sample(SHAPE, 32, 0.0, 1.0)).mean()
            what = f"{str(dtype).removeprefix('torch.')} offset {offset:g}"
            if y.dtype != dtype:
                problems.append(f"{what}: output dtype {y.dtype}, expected {dtype}")
                continue
            loss.backward()
            if any(p.grad is None for p in module.parameters()):
                problems.append(f"{what}: a parameter got no gradient")
            problems.append(_prefixed(what, mismatch(
                y, _run(eager, x.float()), _run(exact, x.double()), float(info.eps),
                limit=float(info.max))))
    return _result("autocast", entry, _first(*problems))


# --- tracing cells: many layers as one module -----------------------------------------


class LayerBank(nn.Module):
    """Several layers applied to the same input: one trace for all of them."""

    def __init__(self, layers: Iterable[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(layer(x) for layer in self.layers)


def _bank_checked(cell: str, entries: Sequence[Entry],
                  check: Callable[[Sequence[Entry]], list[str | None]]) -> list[Result]:
    """`check` on all entries at once; if it raises, on each entry alone."""
    try:
        problems = check(entries)
        return [_result(cell, e, p) for e, p in zip(entries, problems)]
    except Exception as error:
        if len(entries) == 1:
            return [_failed(cell, entries[0], error)]
    results = []
    for entry in entries:
        try:
            results.append(_result(cell, entry, check([entry])[0]))
        except Exception as error:  # a layer's own failure is the cell's value
            results.append(_failed(cell, entry, error))
    return results


def _chunks(entries: Sequence[Entry], size: int) -> list[Sequence[Entry]]:
    return [entries[i:i + size] for i in range(0, len(entries), size)]


def check_compile(entries: Sequence[Entry], backend: str = "inductor",
                  chunk: int = 24) -> list[Result]:
    """torch.compile(fullgraph=True) of the layers: train-mode forward and backward
    (outputs, gradients, running statistics), then eval-mode forward."""

    def check(group: Sequence[Entry]) -> list[str | None]:
        torch._dynamo.reset()
        copies = [_twins(e) for e in group]
        bank = LayerBank(m for m, _, _ in copies)
        compiled = torch.compile(bank, backend=backend, fullgraph=True)
        x, weight = sample(SHAPE, 41), sample(SHAPE, 42, 0.0, 1.0)
        outputs = compiled(x)
        sum((y * weight).mean() for y in outputs).backward()
        problems = []
        for y, (module, eager, exact) in zip(outputs, copies):
            y_eager, y_exact = eager(x), exact(x.double())
            (y_eager * weight).mean().backward()
            (y_exact * weight.double()).mean().backward()
            problems.append(_first(
                _prefixed("train", mismatch(y, y_eager, y_exact)),
                gradient_mismatch(module, eager, exact),
                state_mismatch(module, eager, exact)))
        compiled.eval()
        x2 = sample((3, CHANNELS, 4, 7), 43)
        with torch.no_grad():
            outputs = compiled(x2)
        for k, (y, (_, eager, exact)) in enumerate(zip(outputs, copies)):
            problems[k] = problems[k] or _prefixed("eval", mismatch(
                y, _run(eager.eval(), x2), _run(exact.eval(), x2)))
        return problems

    return [r for group in _chunks(entries, chunk) for r in _bank_checked("compile", group, check)]


def _dynamic_sizes() -> tuple[dict[int, object], ...]:
    dynamic = torch.export.Dim.DYNAMIC
    return ({0: dynamic, 2: dynamic, 3: dynamic},)


EXPORT_SHAPES = {
    True: [(2, CHANNELS, 3, 5), (5, CHANNELS, 1, 1), (1, CHANNELS, 4, 4)],
    False: [(2, CHANNELS, 3, 5), (5, CHANNELS, 1, 1), (1, CHANNELS, 1, 1)],
}


def check_export(entries: Sequence[Entry], chunk: int = 24) -> list[Result]:
    """torch.export.export with dynamic batch, height and width, in train mode (running
    statistics updated by the program as by the module) and eval mode, then the program
    run at other sizes than the example's."""

    def check(group: Sequence[Entry]) -> list[str | None]:
        problems: list[str | None] = [None] * len(group)
        for training in (True, False):
            copies = [tuple(m.train(training) for m in _twins(e)) for e in group]
            bank = LayerBank(m for m, _, _ in copies).train(training)
            program = torch.export.export(bank, (sample(SHAPE, 51),),
                                          dynamic_shapes=_dynamic_sizes())
            run = program.module()
            for s, shape in enumerate(EXPORT_SHAPES[training]):
                x = sample(shape, 52 + s)
                with torch.no_grad():
                    outputs = run(x)
                for k, (y, (_, eager, exact)) in enumerate(zip(outputs, copies)):
                    problems[k] = problems[k] or _prefixed(
                        f"{'train' if training else 'eval'} {shape}",
                        mismatch(y, _run(eager, x), _run(exact, x)))
            if training:
                for k, (_, eager, exact) in enumerate(copies):
                    expected, reference = dict(eager.named_buffers()), dict(exact.named_buffers())
                    for name, buffer in run.named_buffers():
                        key = name.removeprefix(f"layers.{k}.")
                        if name.startswith(f"layers.{k}."):
                            problems[k] = problems[k] or _prefixed(key, mismatch(
                                buffer, expected[key], reference[key]))
        return problems

    return [r for group in _chunks(entries, chunk) for r in _bank_checked("export", group, check)]


def onnx_missing() -> str | None:
    """Why the onnx cell cannot run here, or None."""
    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return (f"{', '.join(missing)} not installed: install the optional extra, "
                "pip install -e '.[onnx]'")
    return None


def check_onnx(entries: Sequence[Entry], chunk: int = 24) -> list[Result]:
    """torch.onnx.export (dynamo) of the layers in eval mode with dynamic batch and
    spatial sizes, run by ONNX Runtime at two sizes; parity within TOLERANCE."""
    reason = onnx_missing()
    if reason:
        return [Result("onnx", e.subject.name, e.form, "skip", reason) for e in entries]
    import onnxruntime

    def check(group: Sequence[Entry]) -> list[str | None]:
        copies = [tuple(m.eval() for m in _twins(e)) for e in group]
        bank = LayerBank(m for m, _, _ in copies).eval()
        program = torch.onnx.export(bank, (sample(SHAPE, 61),), dynamic_shapes=_dynamic_sizes(),
                                    dynamo=True, verbose=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        problems: list[str | None] = [None] * len(group)
        for s, shape in enumerate([(3, CHANNELS, 5, 7), (1, CHANNELS, 1, 1)]):
            x = sample(shape, 62 + s)
            outputs = session.run(None, {name: x.numpy()})
            for k, (y, (_, eager, exact)) in enumerate(zip(outputs, copies)):
                problems[k] = problems[k] or _prefixed(str(shape), mismatch(
                    torch.from_numpy(y), _run(eager, x), _run(exact, x)))
        return problems

    return [r for group in _chunks(entries, chunk) for r in _bank_checked("onnx", group, check)]


# --- DDP: two processes ---------------------------------------------------------------


def _ddp_batch(rank: int, step: int, channels: int) -> tuple[Tensor, Tensor]:
    return (sample((4, channels, 5, 5), 1000 * step + rank),
            sample((4, channels, 5, 5), 1000 * step + rank + 500, 0.0, 1.0))


def _simulated(entry: Entry, world: int, steps: int, exact: bool) -> nn.Module:
    """What DDP computes, in one process: each rank's replica runs its own batch with the
    buffers of rank 0 (broadcast before every forward), the gradients are averaged."""
    replicas = [copy.deepcopy(entry.exact if exact else entry.eager).train() for _ in range(world)]
    dtype = torch.float64 if exact else torch.float32
    for step in range(steps):
        for replica in replicas[1:]:
            for (_, mine), (_, first) in zip(replica.named_buffers(), replicas[0].named_buffers()):
                mine.copy_(first)
        grads = []
        for rank, replica in enumerate(replicas):
            x, target = (t.to(dtype) for t in _ddp_batch(rank, step, CHANNELS))
            loss = ((replica(x) - target) ** 2).mean()
            grads.append(torch.autograd.grad(loss, list(replica.parameters())))
        with torch.no_grad():
            for replica in replicas:
                for k, parameter in enumerate(replica.parameters()):
                    parameter.sub_(DDP_LR * sum(g[k] for g in grads) / world)
    return replicas[0]


def _ddp_worker(rank: int, world: int, directory: str, steps: int) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{directory}/rendezvous", rank=rank, world_size=world,
        timeout=datetime.timedelta(seconds=60))
    spec = json.loads(Path(directory, "subjects.json").read_text())
    subjects = [Subject(name, LayerGraph.from_json(graph)) for name, graph in spec["subjects"]]
    results = []
    work = Path(directory) / f"rank{rank}"
    work.mkdir()
    # Every rank builds the same layers (deterministic); rank 0 also checks them.
    entries = build_entries(subjects, work, forms=spec["forms"])
    for entry in entries:
        try:
            module = entry.module.train()
            ddp = nn.parallel.DistributedDataParallel(module)  # find_unused_parameters=False
            optimizer = torch.optim.SGD(ddp.parameters(), lr=DDP_LR)
            for step in range(steps):
                x, target = _ddp_batch(rank, step, CHANNELS)
                loss = ((ddp(x) - target) ** 2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            # Parameters agree across ranks; running statistics are each rank's own
            # until DDP broadcasts rank 0's before the next forward (as with BatchNorm).
            flat = torch.cat([p.detach().flatten() for p in module.parameters()])
            gathered = [torch.empty_like(flat) for _ in range(world)]
            torch.distributed.all_gather(gathered, flat)
            problem = None
            if not all(torch.equal(gathered[0], g) for g in gathered[1:]):
                problem = "the ranks' parameters differ"
            elif rank == 0:
                problem = state_mismatch(module, _simulated(entry, world, steps, False),
                                         _simulated(entry, world, steps, True))
            results.append(_result("ddp", entry, problem))
        except Exception as error:  # the same error on every rank: they stay in step
            results.append(_failed("ddp", entry, error))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    if rank == 0:
        Path(directory, "results.json").write_text(json.dumps([r.__dict__ for r in results]))


def check_ddp(subjects: Sequence[Subject], forms: Sequence[str] = FORMS, world: int = 2,
              steps: int = DDP_STEPS) -> list[Result]:
    """All subjects in one pair of processes (starting them costs seconds)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "subjects.json").write_text(json.dumps({
            "subjects": [(s.name, s.graph.to_json()) for s in subjects], "forms": list(forms)}))
        mp.spawn(_ddp_worker, args=(world, directory, steps), nprocs=world, join=True)
        return [Result(**r) for r in json.loads(Path(directory, "results.json").read_text())]


# --- the matrix -----------------------------------------------------------------------


def run_matrix(subjects: Sequence[Subject], cells: Sequence[str] = CELLS, *,
               backend: str = "inductor", forms: Sequence[str] = FORMS,
               chunk: int = 24, progress: Callable[[str], None] | None = None) -> list[Result]:
    """Every cell in `cells` for every subject in each form."""
    unknown = sorted(set(cells) - set(CELLS))
    if unknown:
        raise ValueError(f"unknown cells {unknown}; use some of {', '.join(CELLS)}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as directory:
        entries = build_entries(subjects, Path(directory), forms=forms)
        eager_cells = {"autocast": check_autocast, "formats": check_formats, "eval": check_eval}
        for cell in cells:
            if progress:
                progress(cell)
            if cell in eager_cells:
                for entry in entries:
                    try:
                        results.append(eager_cells[cell](entry))
                    except Exception as error:
                        results.append(_failed(cell, entry, error))
            elif cell == "ddp":
                results += check_ddp(subjects, forms)
            elif cell == "compile":
                results += check_compile(entries, backend, chunk)
            elif cell == "export":
                results += check_export(entries, chunk)
            else:
                results += check_onnx(entries, chunk)
    return results


def format_table(results: Sequence[Result]) -> str:
    """Subjects by cells: "ok" (both forms pass), "FAIL(form)", "skip"; then the failures."""
    cells = [c for c in CELLS if any(r.cell == c for r in results)]
    subjects = list(dict.fromkeys(r.subject for r in results))
    width = max(len(s) for s in subjects) + 2

    def mark(subject: str, cell: str) -> str:
        mine = [r for r in results if r.subject == subject and r.cell == cell]
        failed = [r.form for r in mine if r.status == "fail"]
        if failed:
            return "FAIL(" + ",".join(f[0] for f in failed) + ")"
        if mine and all(r.status == "skip" for r in mine):
            return "skip"
        return "ok" if mine else "-"

    lines = ["layer".ljust(width) + "".join(c.ljust(11) for c in cells)]
    for subject in subjects:
        lines.append(subject.ljust(width) + "".join(mark(subject, c).ljust(11) for c in cells))
    totals = []
    for cell in cells:
        mine = [r for r in results if r.cell == cell]
        skipped = sum(r.status == "skip" for r in mine)
        totals.append(f"{cell} {sum(r.status == 'pass' for r in mine)}/{len(mine)} pass"
                      + (f", {skipped} skipped" if skipped else ""))
    lines.append("")
    lines.append("per (layer, form): " + "; ".join(totals))
    failures = [r for r in results if r.status == "fail"]
    if failures:
        lines.append("")
        lines.append(f"failures ({len(failures)}):")
        lines += [f"  {r.cell} {r.subject} [{r.form}]: {r.detail}" for r in failures]
    skipped = {r.detail for r in results if r.status == "skip"}
    lines += [f"skipped: {reason}" for reason in sorted(skipped)]
    return "\n".join(lines)
