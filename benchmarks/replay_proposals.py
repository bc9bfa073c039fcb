"""Would a stored search have run differently under other settings, or under today's code?

For each search database given, the strategy is rebuilt and asked, candidate by
candidate, what the controller would have proposed then: the same generator (search
seed, candidate number), the same structures already stored, the earlier candidates
told as stored. It is asked twice:
- with the search's stored settings: every stored proposal must come back, else the code
  has changed what that search proposes (the first difference is printed);
- with the settings changed by --set (JSON values), e.g. what a preset holds today:
  a search whose every proposal comes back would have run identically, so its stored
  result stands for the new settings, and only the searches that differ need a rerun.

No layer is evaluated, so a 10,000-candidate search replays in about a minute. The
replay assumes each child was proposed after every earlier candidate had finished (the
inline executor with one worker, as benchmarks/planted_recovery.py runs its searches); a
search run with parallel workers will differ early even with its own settings.

    python benchmarks/replay_proposals.py --set scan_sweep=true planted12-dbs/*.db
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from db.errors import StoreError
from db.records import CandidateRecord
from db.store import SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.search.controller import MAX_PROPOSALS, derive_seed
from evonorm_search.search.strategies import make_strategy


@dataclass(frozen=True)
class Difference:
    """The first candidate whose proposal differs from the stored one."""

    number: int
    proposed_move: str | None
    stored_move: str | None

    def __str__(self) -> str:
        return f"differs at candidate {self.number} ({self.proposed_move} for {self.stored_move})"


def first_difference(records: Sequence[CandidateRecord], config: SearchConfig) -> Difference | None:
    """Replay `records` (by number) with `config`; None when every proposal comes back."""
    strategy = make_strategy(config)
    seen: set[str] = set()
    for record in records:
        rng = random.Random(derive_seed(config.seed, record.number, "propose"))
        for _ in range(MAX_PROPOSALS):  # as the controller asks: until an unseen structure
            proposal = strategy.ask(rng, seen)
            if proposal.graph.structural_hash() not in seen:
                break
        if proposal.graph.structural_hash() != record.structural_hash or \
                proposal.move != record.move:
            return Difference(record.number, proposal.move, record.move)
        strategy.tell(record)
        seen.add(record.structural_hash)
    return None


def parse_settings(items: Sequence[str]) -> dict[str, object]:
    """KEY=VALUE pairs, values in JSON (a bare word is a string)."""
    settings: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: use KEY=VALUE, e.g. scan_sweep=true")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def replay(path: Path, settings: dict[str, object]) -> dict[str, object]:
    """One database: its search, how many candidates, and both replays' outcomes."""
    with SearchStore.open(path, readonly=True) as store:
        searches = store.list_searches()
        if len(searches) != 1:
            raise ValueError(f"{path}: holds {len(searches)} searches; give a database "
                             "with one search")
        search = searches[0]
        records = sorted(store.candidates(search.id), key=lambda r: r.number)
    stored = SearchConfig.from_dict(search.config)
    changed = stored.with_overrides(settings)
    own, new = first_difference(records, stored), first_difference(records, changed)
    return {"database": str(path), "search": search.name, "candidates": len(records),
            "stored_settings": None if own is None else own.number,
            "new_settings": None if new is None else new.number,
            "line": f"{search.name}: {len(records)} candidates; stored settings: "
                    f"{own or 'every proposal comes back'}; with --set: "
                    f"{new or 'identical'}"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("databases", nargs="+", type=Path)
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="KEY=VALUE", help="a changed search setting (repeatable)")
    parser.add_argument("--results", type=Path, default=None,
                        help="append one JSON line per database here")
    args = parser.parse_args(argv)
    try:
        settings = parse_settings(args.settings)
        missing = [str(p) for p in args.databases if not p.is_file()]
        if missing:
            raise ValueError(f"no such database: {', '.join(missing)}")
        counts = {"identical": 0, "differs": 0, "code changed": 0}
        for path in args.databases:
            row = replay(path, settings)
            print(row.pop("line"), flush=True)
            if row["stored_settings"] is not None:
                counts["code changed"] += 1
            else:
                counts["identical" if row["new_settings"] is None else "differs"] += 1
            if args.results:
                with args.results.open("a") as out:
                    out.write(json.dumps(row) + "\n")
    except (ValueError, StoreError) as error:  # ConfigError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(args.databases)} searches: {counts['identical']} identical with --set, "
          f"{counts['differs']} differ, {counts['code changed']} differ already with "
          "their stored settings (today's code proposes otherwise: rerun them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
