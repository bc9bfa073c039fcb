"""Which planted recoveries are the target's own formula once cut down to what the fit uses?

A recovery passes the strict criterion when it reproduces the target on every regime,
but it may carry nodes the fitted parameters switch off: `max(v0, -u)` with v0 fitted
below every `-u` the regimes reach is `-u` there (EvoNorm-B1's recoveries, docs/RESULTS.md
"Readable answers"). `simplify` keeps such a node (it is not the same function for every
parameter value); `evonorm_search.planted.reduce_recovery` removes nodes as long as the
re-fitted layer still recovers the target by the strict criterion.

For each stored planted search given (a benchmarks/planted_recovery.py database), this
prints its first strict recovery, that recovery simplified (as the benchmark reports it)
and reduced, and whether each is the target's formula; then the counts. Nothing is
written to the databases.

    python benchmarks/reduce_recoveries.py planted12-dbs/evonorm_b1-*.db
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from db.store import SearchStore  # noqa: E402
from evonorm_search.config import SearchConfig  # noqa: E402
from evonorm_search.graph import LayerGraph  # noqa: E402
from evonorm_search.planted import first_recovery, reduce_recovery  # noqa: E402
from evonorm_search.search.budget import counts_toward_budget  # noqa: E402
from workers.planted import check_scores, strictly_recovers  # noqa: E402


def reduce_stored(path: Path) -> dict[str, object] | None:
    """The first strict recovery of the planted search in `path`, simplified and reduced;
    None when the database holds no planted search."""
    with SearchStore.open(path, readonly=True) as store:
        searches = store.list_searches()
        if not searches:
            return None
        config = SearchConfig.from_dict(searches[0].config)
        if config.task != "planted" or config.target is None:
            return None
        target_json = config.target
        target = LayerGraph.from_json(target_json)
        candidates = store.candidates(searches[0].id)
        found = first_recovery(candidates, config.proxies, target, counts_toward_budget,
                               check=lambda graph: check_scores(graph, target_json))
        by_id = {c.id: c for c in candidates}
    row: dict[str, object] = {"database": path.name, "recovered": found is not None}
    if found is None:
        return row
    graph = LayerGraph.from_json(by_id[found.candidate_id].graph_json)
    started = time.process_time()
    reduced = reduce_recovery(graph, target,
                              lambda g: strictly_recovers(g, target_json, config.proxies))
    row.update(formula=found.formula, kind=found.kind, simplified=found.simplified,
               simplified_identical=found.simplified_identical, reduced=reduced.formula,
               reduced_identical=reduced.identical,
               reduced_constant_learned=reduced.constant_learned,
               reduced_nodes=reduced.nodes, target_nodes=reduced.target_nodes,
               cpu_seconds=round(time.process_time() - started, 1))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("databases", nargs="+", type=Path)
    parser.add_argument("--results", type=Path, help="append one JSON line per database here")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.databases if not p.is_file()]
    if missing:
        parser.error(f"no such database: {', '.join(missing)}")
    rows = []
    for path in args.databases:
        row = reduce_stored(path)
        if row is None:
            print(f"{path.name}: no planted search, skipped")
            continue
        rows.append(row)
        if not row["recovered"]:
            print(f"{path.name}: not recovered")
        else:
            print(f"{path.name}: {row['formula']}\n  simplified: {row['simplified']}"
                  f"{'  (the target formula)' if row['simplified_identical'] else ''}\n"
                  f"  reduced:    {row['reduced']}"
                  f"{'  (the target formula)' if row['reduced_identical'] else ''}"
                  f"{'  (the target, a constant learned)' if row['reduced_constant_learned'] else ''}"
                  f"  [{row['reduced_nodes']} nodes, the target {row['target_nodes']}; "
                  f"{row['cpu_seconds']} CPU s]", flush=True)
        if args.results:
            with args.results.open("a", encoding="utf-8") as out:
                out.write(json.dumps(row) + "\n")
    hits = [r for r in rows if r["recovered"]]
    print(f"{len(hits)} recoveries of {len(rows)} searches: the target's formula "
          f"{sum(bool(r['simplified_identical']) for r in hits)} simplified, "
          f"{sum(bool(r['reduced_identical']) for r in hits)} reduced, and "
          f"{sum(bool(r['reduced_constant_learned']) for r in hits)} more reduced with one of "
          "its constants learned as a parameter; "
          f"{sum(r['reduced_nodes'] <= r['target_nodes'] for r in hits)} reduced to no more "
          "nodes than the target's formula")
    return 0


if __name__ == "__main__":
    sys.exit(main())
