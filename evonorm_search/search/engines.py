"""Engine presets: named sets of the settings that decide how a search proposes children.

`--engine NAME` starts a new search from one of these (options given beside it override
single values); the resolved values are stored with the search, so a resumed search
runs with what it started with whatever the presets become. The settings themselves are
`SearchConfig` fields, documented there and in docs/method.md.

- `paper`: the paper's engine exactly (PAPER.md section 3): one aging population,
  tournament over 5% of it, the Pareto front's member drawn uniformly, one node redrawn
  per child, 10-node random layers. The default of classification searches.
- `memetic`: ours (issue 16): islands with migration and restarts, elites (hall of
  fame) with neutral drift, all moves with adaptive weights, a size penalty, and a local
  scan of the elites' single edits when the best stalls (evolution + local search: a
  memetic algorithm). Built after the symbolic-regression anchors; on planted EvoNorm-S0
  it has not beaten the simpler planted settings of docs/method.md (docs/RESULTS.md,
  "Planted recovery, strict").
- `memetic-log`: the memetic engine on the log-error fitness scale with a size penalty
  of 0.1 decades per node (a node must remove 21% of the error), scanning the best layer
  and the best smaller ones (docs/RESULTS.md, "Size pressure on the log-error scale").
  For targets scored near 1 (planted R^2); on accuracies far from 1 the penalty is
  large (0.1 decades of a 40% error is 4 points).
- `memetic-norm`: memetic-log that also normalizes a node in one move (centre,
  standardize, divide by a std or rms: `moves.NORMALIZATIONS`) and whose scan also makes
  these multi-node edits and wraps with a learned skip (`--scan-macros normalize,skip`;
  docs/RESULTS.md, "Normalizations as one edit").
- `memetic-blocks`: memetic-norm whose scan also guards a scale statistic, `max(d, e)`
  with a second estimate `e` of x (the paper's B-layer denominators), and self-gates a
  node, `g * sigmoid(g)` (`--scan-macros normalize,skip,guard,gate`; docs/RESULTS.md,
  "Guards and gates"); when every edit of the layers it scans has been tried, the scan
  goes on to the next of the 10 best instead of going idle (`--scan-depth 10`;
  docs/RESULTS.md, "A scan that does not go idle"), taking there the best of each
  larger size that scores above the best, then one layer per score, and trying all
  their macro edits first, the best of each layer's winning (`--scan-sweep`;
  docs/RESULTS.md, "A sweep where the scan goes deep"); once a layer's own edits are
  all tried, its hoisted ones: the layer cut back to one of its nodes, and that edited
  by the other macro families (`--scan-macros ...,hoist`; docs/RESULTS.md, "Hoisted
  edits"); a layer's macro edits are walked before its single edits (`--scan-order
  macros-first`; docs/RESULTS.md, "Macro edits first"); its scan also rectifies a
  node, `max(a, v1 * a)` (`--scan-macros ...,rectify`; docs/RESULTS.md, "Rectifier
  edits"). The `free` family (a layer
  with its reads of v0, v1 or both taken out, then edited) is not in it: it recovered
  the stall it was built on and lost another search (docs/RESULTS.md, "Freed
  parameters"); nor is `scan_deferred` "last" (every scanned
  layer's free/hoisted layers after the sweep, best score first): measured on BN-Swish
  only (docs/RESULTS.md, "Deferred edits last"); nor the `compact` family (a layer
  rewritten shorter where it computes the same up to eps, then edited): 4 of 4 design
  misses recovered, no change in recovery on fresh seeds (docs/RESULTS.md, "Compacted
  layers"); nor `scan_ties` "oldest" (the scan stays on the oldest of equal-scoring
  layers): recovery unchanged on 15 fresh seeds (docs/RESULTS.md, "Neutral variants in
  the scan"), and with macros first 38 of 38 against 37 of 38 on fresh S0/B0 seeds,
  slower in 10 of the 14 searches it changed, p = 0.18 (docs/RESULTS.md, "Macro edits first with
  oldest ties").
"""

from __future__ import annotations

from typing import Any

ENGINE_SETTINGS: tuple[str, ...] = (
    "mutations", "num_nodes", "tournament_fraction", "islands", "migration_rate",
    "island_restart", "elites", "neutral_drift", "scan_after", "scan_elites",
    "scan_limit", "scan_sizes", "scan_depth", "scan_sweep", "scan_deferred", "scan_ties",
    "scan_order", "scan_macros", "adaptive_moves", "size_penalty", "fitness",
)

_MEMETIC: dict[str, Any] = {
    "mutations": ("node", "op", "input", "insert", "delete", "wrap", "swap", "subgraph",
                  "graft"),
    "num_nodes": 4, "tournament_fraction": 0.25, "islands": 4, "migration_rate": 0.05,
    "island_restart": 2000, "elites": 2, "neutral_drift": True, "scan_after": 300,
    "scan_elites": 3, "scan_limit": 0, "scan_sizes": False, "scan_depth": 0,
    "scan_sweep": False, "scan_deferred": "each", "scan_ties": "newest", "scan_order": "mixed",
    "scan_macros": (),
    "adaptive_moves": 0.5,
    "size_penalty": 1e-4, "fitness": "score",
}
ENGINES: dict[str, dict[str, Any]] = {
    "paper": {
        "mutations": ("node",), "num_nodes": 10, "tournament_fraction": 0.05, "islands": 1,
        "migration_rate": 0.0, "island_restart": 0, "elites": 0, "neutral_drift": False,
        "scan_after": 0, "scan_elites": 3, "scan_limit": 0, "scan_sizes": False,
        "scan_depth": 0, "scan_sweep": False, "scan_deferred": "each", "scan_ties": "newest",
        "scan_order": "mixed", "scan_macros": (), "adaptive_moves": 0.0, "size_penalty": 0.0,
        "fitness": "score",
    },
    "memetic": _MEMETIC,
    "memetic-log": {**_MEMETIC, "fitness": "log_error", "size_penalty": 0.1,
                    "scan_sizes": True},
}
# memetic-log with the normalization move and the scan's multi-node edits.
ENGINES["memetic-norm"] = {**ENGINES["memetic-log"], "scan_macros": ("normalize", "skip"),
                           "mutations": (*_MEMETIC["mutations"], "normalize")}
# memetic-norm whose scan also guards a scale statistic, gates a node and rectifies one
# (a leaky ReLU: docs/RESULTS.md, "Rectifier edits"), and goes on down the hall of fame
# when the layers it edits are exhausted, sweeping the macro edits of each layer it
# reaches there; a layer's macro edits come before its single edits and
# its hoisted edits after all its others (the `free` family is not in it:
# docs/RESULTS.md, "Freed parameters").
ENGINES["memetic-blocks"] = {**ENGINES["memetic-norm"],
                             "scan_macros": ("normalize", "skip", "guard", "gate", "rectify",
                                             "hoist"),
                             "scan_depth": 10, "scan_sweep": True,
                             "scan_order": "macros-first"}
DEFAULT_ENGINE = "paper"

assert all(set(values) == set(ENGINE_SETTINGS) for values in ENGINES.values())
