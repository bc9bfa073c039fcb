"""The single-edit neighbourhood and the local scan that walks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_LAYERS, get_known
from evonorm_search.search.moves import is_valid
from evonorm_search.search.scan import (
    FAMILIES, MACROS, LocalScan, check_macros, deferred_neighbourhood, macro_neighbourhood,
    neighbourhood,
)
from primitives import SPACES
from tests.cli_runner import run_evonorm

X, ZERO, V0, V1 = 0, 1, 2, 3


def test_neighbours_are_valid_distinct_and_one_edit_away_in_every_space() -> None:
    for space in SPACES:
        layer = next(g for g in KNOWN_LAYERS.values() if is_valid(g, space))
        found = neighbourhood(layer, space)
        hashes = [g.structural_hash() for g in found]
        assert len(set(hashes)) == len(hashes) > 100
        assert layer.structural_hash() not in hashes
        assert all(is_valid(g, space) for g in found)
        # One edit: the node count changes by at most two (a root-wrap with a new operand).
        size = len(layer.pruned().nodes)
        assert all(abs(len(g.nodes) - size) <= 2 for g in found)


def test_each_kind_of_edit_is_in_the_neighbourhood() -> None:
    relu = LayerGraph([("max", (X, ZERO)), ("std_group", (X,)), ("div", (4, 5))])
    found = {g.structural_hash() for g in neighbourhood(relu, "S")}

    def has(*nodes: tuple) -> bool:
        return LayerGraph(nodes).structural_hash() in found

    assert has(("max", (X, V0)), ("std_group", (X,)), ("div", (4, 5)))  # input
    assert has(("abs", (X,)), ("std_group", (X,)), ("div", (4, 5)))  # op (arity change)
    assert has(("max", (X, ZERO)), ("rms_group", (X,)), ("div", (4, 5)))  # op
    assert has(("max", (X, ZERO)), ("std_group", (X,)), ("div", (5, 4)))  # swap
    assert has(("std_group", (X,)), ("div", (X, 4)))  # delete: div reads max's input x
    assert has(("max", (X, ZERO)), ("sigmoid", (4,)), ("std_group", (X,)),
               ("div", (5, 6)))  # insert
    assert has(("max", (X, ZERO)), ("std_group", (X,)), ("div", (4, 5)),
               ("tanh", (6,)))  # root-wrap
    assert has(("max", (X, ZERO)), ("std_group", (X,)), ("div", (4, 5)), ("abs", (V1,)),
               ("mul", (6, 7)))  # root-wrap with a new unary operand
    # Dead nodes are dropped first (edits there would change nothing).
    padded = LayerGraph([("tanh", (V0,)), ("max", (X, ZERO)), ("std_group", (X,)), ("div", (5, 6))])
    assert {g.structural_hash() for g in neighbourhood(padded, "S")} == found


def test_the_scan_walks_each_layer_once_in_a_fixed_order() -> None:
    s1, s0 = get_known("evonorm_s1"), get_known("evonorm_s0")
    seen: set[str] = set()
    first_pass = []
    scan = LocalScan("S")
    while (found := scan.next([s1, s0], seen)) is not None:
        rank, child = found
        first_pass.append((rank, child.structural_hash()))
        seen.add(child.structural_hash())
    assert [rank for rank, _ in first_pass] == sorted(rank for rank, _ in first_pass)
    assert len(first_pass) == len(seen)  # nothing proposed twice
    # A fresh scan (a resumed search) proposes the same order from what is stored.
    again = LocalScan("S")
    stored = {h for _, h in first_pass[:300]}
    assert again.next([s1, s0], stored) == (first_pass[300][0],
                                             next(g for g in neighbourhood(s1, "S") + neighbourhood(s0, "S")
                                                  if g.structural_hash() == first_pass[300][1]))


def test_a_sweep_walks_the_macro_edits_of_a_layer_once() -> None:
    s0, macros = get_known("evonorm_s0"), tuple(MACROS)
    swept = {g.structural_hash() for g in macro_neighbourhood(s0, "S", macros)}
    every = {g.structural_hash() for g in neighbourhood(s0, "S", macros)}
    singles = {g.structural_hash() for g in neighbourhood(s0, "S")}
    # The macro edits: what the families add to the single edits, and the few single
    # edits a family also makes (a gate of the output is a root-wrap's too).
    assert every - singles <= swept <= every and len(swept) > 100
    scan, seen = LocalScan("S", macros), set()
    while (child := scan.sweep(s0, seen)) is not None:
        assert child.structural_hash() not in seen
        seen.add(child.structural_hash())
    assert seen == swept
    assert LocalScan("S", macros).sweep(s0, seen) is None  # a function of what is stored


def test_macro_edits_normalize_a_node_and_wrap_with_a_learned_skip() -> None:
    relu = LayerGraph([("max", (X, V0))])
    single = {g.structural_hash() for g in neighbourhood(relu, "B")}
    found = {g.structural_hash() for g in neighbourhood(relu, "B", ("normalize", "skip"))}
    assert single < found

    def has(*nodes: tuple) -> bool:
        return LayerGraph(nodes).structural_hash() in found - single

    # BN-ReLU with its shift (max(z, v0) = max(z - v0, 0) + v0) from max(x, v0): one edit.
    assert has(("mean_batch", (X,)), ("neg", (4,)), ("add", (X, 5)), ("std_batch", (X,)),
               ("div", (6, 7)), ("max", (8, V0)))
    assert has(("max", (X, V0)), ("mean_group", (4,)), ("neg", (5,)),
               ("add", (4, 6)))  # the output centred
    assert has(("max", (X, V0)), ("mul", (V1, X)), ("add", (4, 5)))  # max(x, v0) + v1 * x
    # tanh_skip's `+ v0 * z` from tanh(z), z = x / std_group(x).
    squash = LayerGraph([("std_group", (X,)), ("div", (X, 4)), ("tanh", (5,))])
    assert LayerGraph([("std_group", (X,)), ("div", (X, 4)), ("tanh", (5,)), ("mul", (V0, 5)),
                       ("add", (6, 7))]).structural_hash() in {
        g.structural_hash() for g in neighbourhood(squash, "S", ("normalize", "skip"))}
    # Every macro neighbour is valid and in the space; none exceeds the node limit.
    for space in SPACES:
        layer = next(g for g in KNOWN_LAYERS.values() if is_valid(g, space) and g.size <= 5)
        assert all(is_valid(g, space) for g in neighbourhood(layer, space, FAMILIES))


def test_guard_edits_take_the_max_of_a_scale_statistic_and_a_second_estimate() -> None:
    # From the stall of the EvoNorm-B0 searches, max(-(x / std_batch(x)), v0), B0's own
    # denominator max(std_batch(x), std_instance(x) + v1 * x) is one guard edit.
    stall = LayerGraph([("std_batch", (X,)), ("div", (X, 4)), ("neg", (5,)), ("max", (6, V0))])
    single = {g.formula() for g in neighbourhood(stall, "B", ("normalize", "skip"))}
    guarded = {g.formula() for g in neighbourhood(stall, "B", ("guard",))}
    for formula in ("max(-(x / max(std_batch(x), std_instance(x) + v1 * x)), v0)",
                    "max(-(x / max(std_batch(x), rms_instance(x) * (x + v0))), v0)",
                    "max(-(x / max(std_batch(x), rms_instance(x) - x)), v0)",
                    "max(-(x / max(std_batch(x), std_layer(x))), v0)"):
        assert formula in guarded and formula not in single
    # ... and a max's operand replaced: EvoNorm-B1 (up to v0 for its constant 1) from
    # x / max(std_batch(x), x).
    b1_stall = LayerGraph([("std_batch", (X,)), ("max", (4, X)), ("div", (X, 5))])
    assert "x / max(std_batch(x), rms_instance(x) * (x + v0))" in {
        g.formula() for g in neighbourhood(b1_stall, "B", ("guard",))}
    # In the S space (no batch axis) the second estimates are over its own axes only.
    s_guarded = {g.formula() for g in neighbourhood(LayerGraph(
        [("std_group", (X,)), ("div", (X, 4))]), "S", ("guard",))}
    assert "x / max(std_group(x), rms_layer(x))" in s_guarded
    assert not any("batch" in f for f in s_guarded)


def test_gate_edits_self_gate_a_node_for_its_reads_or_as_the_output() -> None:
    # BN-Swish from the centred ReLU stand-in max(v0, z), z standardized over the batch:
    # z's gated affine as the new output is one edit.
    z = [("mean_batch", (X,)), ("neg", (4,)), ("add", (X, 5)), ("std_batch", (X,)),
         ("div", (6, 7))]
    stall = LayerGraph([*z, ("max", (V0, 8))])
    gated = {g.structural_hash(): g for g in neighbourhood(stall, "B", ("gate",))}
    bn_swish = LayerGraph([*z, ("mul", (V1, 8)), ("add", (9, V0)), ("sigmoid", (10,)),
                           ("mul", (10, 11))])
    assert bn_swish.structural_hash() in gated
    formulas = {g.formula() for g in gated.values()}
    assert "x * sigmoid(x)" in {g.formula() for g in neighbourhood(
        LayerGraph([("max", (X, V0))]), "B", ("gate",))}  # x gated, as the output
    # A read rewired: max(v0, z) with z's read gated by tanh.
    tanh_gated = "max(v0, (x - mean_batch(x)) / std_batch(x) * tanh((x - mean_batch(x)) / std_batch(x)))"
    assert tanh_gated in formulas
    assert stall.structural_hash() not in gated
    # The stall the BN-Swish searches then sat on has 8 nodes, too many for 4 more: as the
    # new output, the gate is put on z alone (the nodes only the old output read go).
    relu_z = [*z, ("max", (8, V0))]  # max(z, v0), 6 nodes
    big_stall = LayerGraph([*relu_z, ("max", (9, V1)), ("add", (9, 10))])
    assert len(big_stall.pruned().nodes) == 8
    assert bn_swish.structural_hash() in {
        g.structural_hash() for g in neighbourhood(big_stall, "B", ("gate",))}


# The stall of a BN-Swish search (seed 146): max(v0, z') with z' the batch-standardized
# x / rms_batch(x), equal to the standardized x up to eps but 2 nodes larger, so that the
# gate which would make BN-Swish needs 11 nodes (at most 10 are allowed).
RMS_STANDARDIZED_STALL = LayerGraph([
    ("rms_batch", (X,)), ("div", (X, 4)), ("mean_batch", (5,)), ("neg", (6,)), ("add", (5, 7)),
    ("std_batch", (5,)), ("div", (8, 9)), ("max", (10, V0))])


def test_compact_shortens_a_layer_equal_up_to_eps_and_edits_what_is_left() -> None:
    stall = RMS_STANDARDIZED_STALL
    assert stall.formula() == (
        "max((x / rms_batch(x) - mean_batch(x / rms_batch(x))) / std_batch(x / rms_batch(x)), v0)")
    target = get_known("bn_swish").structural_hash()
    plain = macro_neighbourhood(stall, "B", ("normalize", "skip", "guard", "gate"))
    with_compact = macro_neighbourhood(stall, "B",
                                       ("normalize", "skip", "guard", "gate", "compact"))
    assert target not in {g.structural_hash() for g in plain}
    found = {g.structural_hash(): g for g in with_compact}
    assert target in found
    # The compacted layer itself: the standardized x (x / rms_batch(x) read as x).
    assert "max((x - mean_batch(x)) / std_batch(x), v0)" in {g.formula() for g in with_compact}
    # The other families' edits of the stall are still there, all valid, none twice.
    assert {g.structural_hash() for g in plain} <= set(found)
    assert len(found) == len(with_compact)
    assert all(is_valid(g, "B") for g in with_compact)
    # Compact alone: the compacted layer and no other edit of it.
    assert [g.formula() for g in macro_neighbourhood(stall, "B", ("compact",))] == [
        "max((x - mean_batch(x)) / std_batch(x), v0)"]
    # In the full neighbourhood too (the scan's walk), before any deferred family's.
    assert target in {g.structural_hash() for g in neighbourhood(stall, "B", ("gate", "compact"))}


def test_compact_adds_nothing_where_no_shorter_layer_computes_the_same() -> None:
    # EvoNorm-S0 and a ReLU of the batch-centred x are as short as their functions get.
    centred_relu = LayerGraph([("mean_batch", (X,)), ("neg", (4,)), ("add", (X, 5)),
                               ("max", (6, ZERO))])
    for layer, space in ((get_known("evonorm_s0"), "S"), (centred_relu, "B")):
        for families in (("gate",), ("normalize", "skip", "guard", "gate")):
            assert neighbourhood(layer, space, (*families, "compact")) == neighbourhood(
                layer, space, families)
    # x / std_batch(x / v1) is |v1| * x / std_batch(x): the same up to the affine, shorter.
    scaled = LayerGraph([("div", (X, V1)), ("std_batch", (4,)), ("div", (X, 5))])
    assert [g.formula() for g in macro_neighbourhood(scaled, "B", ("compact",))] == [
        "x / std_batch(x)"]


def test_rectify_edits_make_a_leaky_rectifier_of_a_node() -> None:
    # The stall of the nested_max searches (seed 193): the floored max(v0, x) / rms_group(x)
    # fits the target's channels whose floor is above the data, R^2 0.9993; the target,
    # max(max(x, v1 * x), v0) / rms_group(x), is x rectified for the max's read: one edit
    # of two nodes (a single edit cannot make v1 * x and read it from the max at once).
    stall = LayerGraph([("max", (V0, X)), ("rms_group", (X,)), ("div", (4, 5))])
    target = LayerGraph.from_json(
        (Path(__file__).resolve().parents[1] / "benchmarks" / "planted_targets"
         / "nested_max.json").read_text())
    rectified = {g.structural_hash(): g for g in neighbourhood(stall, "S", ("rectify",))}
    singles = {g.structural_hash() for g in neighbourhood(stall, "S")}
    assert target.structural_hash() in set(rectified) - singles
    formulas = {g.formula() for g in rectified.values()}
    assert "max(max(v0, x), v1 * max(v0, x)) / rms_group(x)" in formulas  # the max's output
    assert "max(v0, x) / rms_group(max(x, v0 * x))" in formulas  # another read of x alone
    assert "max(max(v0, x) / rms_group(x), v1 * max(v0, x) / rms_group(x))" in {
        g.formula() for g in macro_neighbourhood(stall, "S", ("rectify",))}  # on top
    # Every rectified layer is valid and one structure; none without room for two nodes.
    assert all(is_valid(g, "S") for g in rectified.values())
    full = LayerGraph([("max", (V0, X)), *[("abs", (4 + i,)) for i in range(6)],
                       ("rms_group", (X,)), ("div", (10, 11))])
    assert len(full.nodes) == 9 and macro_neighbourhood(full, "S", ("rectify",)) == []


def test_a_planted_search_with_rectify_edits_recovers_nested_max_from_its_stall(
        tmp_path: Path) -> None:
    """End to end through the CLI: from the floored stall, `--scan-macros rectify` makes
    the target within a few scan children; the other families do not in the same budget."""
    stall = tmp_path / "stall.json"
    stall.write_text(LayerGraph([("max", (V0, X)), ("rms_group", (X,)), ("div", (4, 5))]).to_json())
    target = str(Path(__file__).resolve().parents[1] / "benchmarks" / "planted_targets"
                 / "nested_max.json")
    outcomes = {}
    for macros in ("rectify", "normalize,skip,guard,gate,hoist"):
        code, out, err = run_evonorm(
            "search", "--db", str(tmp_path / f"{macros[:4]}.db"), "--task", "planted",
            "--target", target, "--space", "S", "--init", str(stall), "--population", "2",
            "--budget", "12", "--scan-after", "1", "--scan-macros", macros,
            "--executor", "inline", "--seed", "1")
        assert code == 0, err
        outcomes[macros] = out
    assert "recovered by id" in outcomes["rectify"]
    assert "max(max(v0, x), v1 * max(v0, x)) / rms_group(x)" in outcomes["rectify"]
    assert "not recovered" in outcomes["normalize,skip,guard,gate,hoist"]


def test_macro_families_are_checked_by_name() -> None:
    check_macros(("normalize", "gate", "compact", "hoist"))
    with pytest.raises(ValueError, match="unknown scan macro.*'wrap'.*normalize, skip, guard, "
                                         "gate, rectify, compact.*hoist"):
        check_macros(("wrap",))
    with pytest.raises(ValueError, match="name one twice"):
        check_macros(("gate", "gate"))


# The stall of an EvoNorm-B0 search (seed 110): its core x / std_batch(x) / v0 is buried
# under a log-sum-exp that the fit bends into B0's shape.
B0_STALL = LayerGraph([("std_batch", (X,)), ("div", (X, 4)), ("div", (5, V0)), ("exp", (6,)),
                       ("exp", (V1,)), ("add", (7, 8)), ("log", (9,)), ("div", (6, 10))])


def test_hoist_cuts_a_layer_back_to_a_node_and_edits_what_is_left() -> None:
    assert B0_STALL.formula() == "x / std_batch(x) / v0 / log(exp(x / std_batch(x) / v0) + exp(v1))"
    b0_like = "x / max(std_batch(x), std_instance(x) + v1 * x) / v0"
    own = {g.formula() for g in neighbourhood(B0_STALL, "B", ("guard",))}
    assert b0_like not in own
    hoisted = {g.formula()
               for g in deferred_neighbourhood(B0_STALL, "B", ("guard", "hoist"), "hoist")}
    assert b0_like in hoisted
    # The cut-back layers themselves: each live node (not x, not the output) as the output.
    assert {"x / std_batch(x)", "x / std_batch(x) / v0",
            "log(exp(x / std_batch(x) / v0) + exp(v1))"} <= hoisted
    # Only the families named beside hoist edit the cut-back layers; without hoist, none.
    assert b0_like not in {
        g.formula() for g in deferred_neighbourhood(B0_STALL, "B", ("hoist",), "hoist")}
    assert deferred_neighbourhood(B0_STALL, "B", ("guard",), "hoist") == []
    # Hoisted layers are not the layer's other neighbours, and come after them.
    every = neighbourhood(B0_STALL, "B", ("guard", "hoist"))
    first = neighbourhood(B0_STALL, "B", ("guard",))
    assert every[: len(first)] == first
    assert every[len(first):] == deferred_neighbourhood(
        B0_STALL, "B", ("guard", "hoist"), "hoist", [g.structural_hash() for g in first])
    assert {g.formula() for g in every} >= hoisted
    assert all(is_valid(g, "B") for g in every)
    assert {g.formula() for g in macro_neighbourhood(B0_STALL, "B", ("guard", "hoist"))} >= hoisted


def test_the_scan_walks_hoisted_layers_after_all_of_a_layers_own_neighbours() -> None:
    def walk(macros: tuple[str, ...], macros_only: bool) -> list[str]:
        scan, seen, order = LocalScan("B", macros), set(), []
        while True:
            child = (scan.sweep(B0_STALL, seen) if macros_only
                     else (scan.next([B0_STALL], seen) or (None, None))[1])
            if child is None:
                return order
            seen.add(child.structural_hash())
            order.append(child.structural_hash())

    without = walk(("guard",), False)
    with_hoist = walk(("guard", "hoist"), False)
    # The same walk as without the family (searches that never finish a layer's own
    # neighbours propose what they did before), then every hoisted layer once.
    assert with_hoist[: len(without)] == without
    own = neighbourhood(B0_STALL, "B", ("guard",))
    hoisted = {g.structural_hash()
               for g in deferred_neighbourhood(B0_STALL, "B", ("guard", "hoist"), "hoist",
                                               [g.structural_hash() for g in own])}
    assert len(with_hoist) == len(set(with_hoist)) == len(without) + len(hoisted)
    assert set(with_hoist[len(without):]) == hoisted
    # A scan rebuilt midway through the hoisted layers (a resumed search) proposes the
    # same next one: the walk is a function of the layer and what is stored.
    middle = len(without) + len(hoisted) // 2
    resumed = LocalScan("B", ("guard", "hoist"))
    assert resumed.next([B0_STALL], set(with_hoist[:middle]))[1].structural_hash() == \
        with_hoist[middle]
    # A sweep walks the layer's macro edits only, none hoisted.
    assert walk(("guard", "hoist"), True) == walk(("guard",), True)


def test_apart_the_own_and_the_deferred_walks_split_the_walk_together() -> None:
    """With `deferred_apart` (`--scan-deferred last`), `next` walks a layer's own
    neighbours only and `deferred` its hoisted layers only: the same layers as one walk
    together, each once, in the same order within each part."""
    macros = ("guard", "hoist")

    def drain(propose) -> list[str]:
        seen, order = set(), []
        while (child := propose(seen)) is not None:
            seen.add(child.structural_hash())
            order.append(child.structural_hash())
        return order

    one_walk = LocalScan("B", macros)
    together = drain(lambda seen: (one_walk.next([B0_STALL], seen) or (None, None))[1])
    apart = LocalScan("B", macros, deferred_apart=True)
    own = drain(lambda seen: (apart.next([B0_STALL], seen) or (None, None))[1])
    deferred = drain(lambda seen: apart.deferred(B0_STALL, seen))
    assert own == [g.structural_hash() for g in _walked(neighbourhood(B0_STALL, "B", ("guard",)),
                                                       together)]
    assert own + deferred == together
    assert len(deferred) > 100
    # A scan rebuilt midway through the deferred part proposes the same next one.
    middle = len(deferred) // 2
    resumed = LocalScan("B", macros, deferred_apart=True)
    assert resumed.deferred(B0_STALL, set(own) | set(deferred[:middle])).structural_hash() == \
        deferred[middle]
    # Without deferred families there is nothing deferred to walk.
    assert LocalScan("B", ("guard",), deferred_apart=True).deferred(B0_STALL, set()) is None


def test_macros_first_walks_every_macro_edit_before_the_single_edits() -> None:
    """With `macros_first` (`--scan-order macros-first`) a layer's walk is the same set of
    layers as the mixed walk, the direct macro edits first, then the single edits that
    are not also macro edits, then the hoisted layers; and, as the mixed walk, a
    function of the layer and what is stored."""
    macros = ("normalize", "guard", "gate", "hoist")

    def drain(scan: LocalScan) -> list[str]:
        seen, order = set(), []
        while (found := scan.next([B0_STALL], seen)) is not None:
            seen.add(found[1].structural_hash())
            order.append(found[1].structural_hash())
        return order

    mixed = drain(LocalScan("B", macros))
    first = drain(LocalScan("B", macros, macros_first=True))
    direct = {g.structural_hash() for g in macro_neighbourhood(B0_STALL, "B", macros[:-1])}
    own = {g.structural_hash() for g in neighbourhood(B0_STALL, "B", macros[:-1])}
    assert len(first) == len(set(first)) and set(first) == set(mixed)
    assert set(first[: len(direct)]) == direct
    assert set(first[len(direct): len(own)]) == own - direct
    assert len(own - direct) > len(direct) > 100
    assert first[len(own):] == mixed[len(own):]  # the hoisted layers, as before
    # The mixed walk interleaves them: a single edit comes before the last macro edit.
    assert max(mixed.index(h) for h in direct) > min(mixed.index(h) for h in own - direct)
    # Rebuilt midway through the single edits (a resumed search), the same next one.
    middle = len(direct) + (len(own) - len(direct)) // 2
    resumed = LocalScan("B", macros, macros_first=True)
    assert resumed.next([B0_STALL], set(first[:middle]))[1].structural_hash() == first[middle]


def _walked(layers: list[LayerGraph], order: list[str]) -> list[LayerGraph]:
    """`layers` in the order their hashes appear in `order`."""
    position = {h: i for i, h in enumerate(order)}
    return sorted(layers, key=lambda g: position[g.structural_hash()])


# The stall of a BN-Swish search (seed 128): v0 spent inside the statistics (`x + v0`),
# so the gate `g * sigmoid(g)` with g = v1 * a + v0 has no parameter left for its shift.
SWISH_STALL = LayerGraph([("add", (X, V0)), ("mean_batch", (4,)), ("neg", (5,)), ("add", (X, 6)),
                          ("std_batch", (4,)), ("div", (7, 8)), ("mul", (V1, 9)),
                          ("sigmoid", (10,)), ("tanh", (11,)), ("mul", (10, 12))])


def test_free_takes_a_parameter_out_of_a_layer_and_edits_what_is_left() -> None:
    assert SWISH_STALL.formula() == ("v1 * (x - mean_batch(x + v0)) / std_batch(x + v0) * "
                                     "tanh(sigmoid(v1 * (x - mean_batch(x + v0)) / std_batch(x + v0)))")
    target = get_known("bn_swish").structural_hash()
    macros = ("gate", "free", "hoist")
    own = neighbourhood(SWISH_STALL, "B", ("gate",))
    freed = deferred_neighbourhood(SWISH_STALL, "B", macros, "free")
    assert target not in {g.structural_hash() for g in own}
    assert target not in {g.structural_hash() for g in deferred_neighbourhood(
        SWISH_STALL, "B", macros, "hoist")}
    assert target in {g.structural_hash() for g in freed}
    # The freed layers themselves: v0's reads gone (`x + v0` read as `x`), v1's (`v1 * a`
    # read as `a`), both's.
    formulas = {g.formula() for g in freed}
    assert {"v1 * (x - mean_batch(x)) / std_batch(x) * tanh(sigmoid(v1 * (x - mean_batch(x)) / "
            "std_batch(x)))",
            "(x - mean_batch(x + v0)) / std_batch(x + v0) * tanh(sigmoid((x - mean_batch(x + v0)) / "
            "std_batch(x + v0)))",
            "(x - mean_batch(x)) / std_batch(x) * tanh(sigmoid((x - mean_batch(x)) / std_batch(x)))",
            } <= formulas
    assert all(is_valid(g, "B") for g in freed)
    # Only the families named beside free edit the freed layers; without free, none.
    assert target not in {g.structural_hash() for g in deferred_neighbourhood(
        SWISH_STALL, "B", ("free",), "free")}
    assert deferred_neighbourhood(SWISH_STALL, "B", ("gate",), "free") == []


def test_free_leaves_out_what_cannot_lose_a_parameter() -> None:
    # `x + v0` freed of v0 is x itself (no layer).
    shift = LayerGraph([("add", (X, V0))])
    assert deferred_neighbourhood(shift, "B", ("free",), "free") == []
    # `v1 * v0` freed of one parameter reads the other; freed of both, it reads nothing.
    constant = LayerGraph([("mul", (V1, V0)), ("mul", (X, 4))])
    freed = {g.formula() for g in deferred_neighbourhood(constant, "B", ("free",), "free")}
    assert freed == {"x * v0", "x * v1"}
    # A layer that reads no parameter has nothing to free.
    assert deferred_neighbourhood(LayerGraph([("std_batch", (X,)), ("div", (X, 4))]), "B",
                                  ("free", "gate"), "free") == []


def test_the_scan_walks_freed_layers_then_hoisted_ones_after_a_layers_own_neighbours() -> None:
    macros = ("gate", "free", "hoist")
    scan, seen, order = LocalScan("B", macros), set(), []
    while (step := scan.next([SWISH_STALL], seen)) is not None:
        seen.add(step[1].structural_hash())
        order.append(step[1].structural_hash())
    own = [g.structural_hash() for g in neighbourhood(SWISH_STALL, "B", ("gate",))]
    freed = [g.structural_hash()
             for g in deferred_neighbourhood(SWISH_STALL, "B", macros, "free", own)]
    hoisted = [g.structural_hash()
               for g in deferred_neighbourhood(SWISH_STALL, "B", macros, "hoist", own + freed)]
    assert len(order) == len(set(order)) == len(own) + len(freed) + len(hoisted)
    assert set(order[: len(own)]) == set(own)
    assert set(order[len(own): len(own) + len(freed)]) == set(freed)
    assert set(order[len(own) + len(freed):]) == set(hoisted)
    assert neighbourhood(SWISH_STALL, "B", macros) == [
        *neighbourhood(SWISH_STALL, "B", ("gate",)),
        *deferred_neighbourhood(SWISH_STALL, "B", macros, "free", own),
        *deferred_neighbourhood(SWISH_STALL, "B", macros, "hoist", own + freed)]
