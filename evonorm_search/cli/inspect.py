"""`evonorm status`, `evonorm list`, `evonorm front` and `evonorm migrate`.

Owns presenting what a search database holds, as text or (`--json`) as the JSON documents
of docs/json.md. The inspection commands open the store
read-only, so they never modify it and can run while a search is writing; `migrate` is
the one command here that writes (it upgrades an older schema in place, after a backup).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from db.leases import LeaseRecord, LeaseStore, describe, holder_alive
from db.models import SCHEMA_VERSION, STATUSES, TRIAL_STATUSES
from db.store import DEFAULT_DB_PATH, CandidateRecord, SearchRecord, SearchStore, SearchSummary
from evonorm_search.cli.common import numbers_text
from evonorm_search.proxy_info import score_note
from evonorm_search.cli.layers import (
    accuracy_text,
    candidate_json,
    echo_json,
    iso_time,
    layer_json,
    seeds_text,
    table,
)
from evonorm_search.known import formula_label
from evonorm_search.search.budget import FINGERPRINT_STAGE

DB_OPTION = click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_DB_PATH,
    show_default=True,
    help="The search database file.",
)
JSON_OPTION = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead (docs/json.md)."
)


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _elapsed(summary: SearchSummary, now: datetime) -> str:
    if summary.last_activity is None:
        return "0:00:00 (no candidates yet)"
    span = (summary.last_activity - summary.search.created_at).total_seconds()
    idle = (now - summary.last_activity).total_seconds()
    return f"{_duration(span)} (creation to last activity, which was {_duration(idle)} ago)"


def search_json(search: SearchRecord, counts: dict[str, int]) -> dict[str, Any]:
    """A search's identity, settings and candidate counts (every status, zeros included)."""
    return {
        "id": search.id,
        "name": search.name,
        "seed": search.seed,
        "created_at": iso_time(search.created_at),
        "config": search.config,
        "versions": search.versions,
        "candidates": sum(counts.values()),
        "counts": {status: counts.get(status, 0) for status in STATUSES},
    }


@dataclass(frozen=True)
class StatusView:
    """What `status` shows of one search: the store's summary, the records of the best
    candidates (for their standard errors and seed counts) and the re-evaluations by status."""

    summary: SearchSummary
    best_records: dict[int, CandidateRecord]
    reevaluations: dict[str, int]  # every trial status, zeros included
    lease: LeaseRecord | None  # the process running the search, or one that died running it


def status_view(store: SearchStore, search: SearchRecord) -> StatusView:
    summary = store.summary(search.id)
    records = {cid: store.get_candidate(cid) for cid, _ in summary.best.values()}
    reevaluations = dict.fromkeys(TRIAL_STATUSES, 0)
    reevaluations.update(store.trial_outcomes(search.id))
    return StatusView(summary, records, reevaluations, LeaseStore(store).lease(search.name))


def _lease_json(lease: LeaseRecord | None, now: datetime) -> dict[str, Any] | None:
    if lease is None:
        return None
    return {"pid": lease.pid, "host": lease.host, "started_at": iso_time(lease.started_at),
            "heartbeat_at": iso_time(lease.heartbeat_at), "alive": holder_alive(lease, now)}


def _lease_text(lease: LeaseRecord | None, now: datetime) -> str | None:
    if lease is None:
        return None
    if holder_alive(lease, now):
        beat = (now - lease.heartbeat_at).total_seconds()
        return f"  running: {describe(lease)} (last heartbeat {beat:.0f} s ago)"
    return (f"  not running: its last run ({describe(lease)}) ended without stopping cleanly "
            "(killed?); `evonorm search` resumes it")


def _retried_text(numbers: tuple[int, ...]) -> str:
    plural = "s" if len(numbers) > 1 else ""
    return (f"  retried (an evaluation lost to a dead worker, node or run, submitted again): "
            f"{len(numbers)} candidate{plural}, number{plural} {numbers_text(numbers)}")


def proposals_summary(summary: SearchSummary) -> dict[str, int]:
    """What the search's proposals became: evaluated (what the budget counts: trained,
    stopped, rejected by a protocol, failed, or in flight) and what cost no evaluation:
    fingerprint cache hits (duplicates), probe rejections, hash skips, neutral skips."""
    counts = summary.counts
    probe = summary.rejected_by_stage.get(FINGERPRINT_STAGE, 0)
    return {
        "evaluated": sum(counts.values()) - counts["duplicate"] - probe,
        "cache_hits": counts["duplicate"],
        "probe_rejections": probe,
        "hash_skips": summary.skips.get("hash", 0),
        "neutral_skips": summary.skips.get("neutral", 0),
    }


def status_json(view: StatusView, now: datetime) -> dict[str, Any]:
    """What `describe_status` prints, as one JSON object."""
    summary = view.summary
    counts = summary.counts
    last = summary.last_activity
    return {
        **search_json(summary.search, counts),
        "finished": sum(counts.values()) - counts.get("pending", 0) - counts.get("running", 0),
        "rejected_by_stage": dict(summary.rejected_by_stage),
        "best": {
            proxy: {
                "id": candidate_id,
                "accuracy": accuracy,
                "standard_error": view.best_records[candidate_id].standard_errors.get(proxy),
                "seed_count": view.best_records[candidate_id].seed_count,
            }
            for proxy, (candidate_id, accuracy) in summary.best.items()
        },
        "reevaluations": dict(view.reevaluations),
        "proposals": proposals_summary(summary),
        "retried": list(summary.retried),
        "running": _lease_json(view.lease, now),
        "last_activity": iso_time(last),
        "elapsed_seconds": None if last is None else (last - summary.search.created_at).total_seconds(),
        "idle_seconds": None if last is None else (now - last).total_seconds(),
    }


def _best_text(proxy: str, record: CandidateRecord) -> str:
    """`resnet 0.9000 ± 0.0100 (id 3, 3 seeds)`; without re-evaluations `resnet 0.9000 (id 3)`."""
    seeds = f", {seeds_text(record.seed_count)}" if record.seed_count > 1 else ""
    return f"{proxy} {accuracy_text(record, proxy)} (id {record.id}{seeds})"


def describe_status(view: StatusView, now: datetime) -> str:
    """The `status` block of one search, as of `now`."""
    summary = view.summary
    search, counts = summary.search, summary.counts
    total = sum(counts.values())
    settled = total - counts["pending"] - counts["running"]
    lines = [
        f"search {search.name!r} (id {search.id}, seed {search.seed}), created {_time(search.created_at)}",
        f"  candidates: {total}  " + "  ".join(f"{status} {count}" for status, count in counts.items()),
    ]
    if summary.rejected_by_stage:
        rates = "  ".join(
            f"{stage} {count} ({100 * count / settled:.1f}%)"
            for stage, count in summary.rejected_by_stage.items()
        )
        lines.append(f"  rejected by stage (share of {settled} finished): {rates}")
    else:
        lines.append("  rejected by stage: none")
    if summary.best:
        best = "  ".join(
            _best_text(proxy, view.best_records[candidate_id])
            for proxy, (candidate_id, _) in summary.best.items()
        )
        lines.append(f"  best per proxy: {best}")
        note = score_note(summary.best)
        if note:
            lines.append(f"  {note}")
    else:
        lines.append("  best per proxy: none yet (no done candidates)")
    work = proposals_summary(summary)
    lines.append(f"  proposals: evaluated {work['evaluated']}, not evaluated: fingerprint cache "
                 f"hits {work['cache_hits']}, probe rejections {work['probe_rejections']}, "
                 f"hash skips {work['hash_skips']}, neutral skips {work['neutral_skips']}")
    if any(view.reevaluations.values()):
        lines.append(
            f"  re-evaluations (further seeds): {sum(view.reevaluations.values())}  "
            + "  ".join(f"{status} {count}" for status, count in view.reevaluations.items())
        )
    if summary.retried:
        lines.append(_retried_text(summary.retried))
    running = _lease_text(view.lease, now)
    if running is not None:
        lines.append(running)
    lines.append(f"  elapsed: {_elapsed(summary, now)}")
    return "\n".join(lines)


@click.command("status")
@click.argument("name", required=False)
@DB_OPTION
@JSON_OPTION
def status(name: str | None, db_path: Path, as_json: bool) -> None:
    """Show progress of search NAME (all searches without NAME).

    Counts by status, rejections by stage, the best accuracy per proxy (± standard error
    over its seeds once re-evaluated), re-evaluations by status, the candidates whose
    evaluation was lost and submitted again, the process running the search (if any)
    and the elapsed time. Reads the database only, so it is safe while a search is running.
    """
    with SearchStore.open(db_path, readonly=True) as store:
        searches = [store.get_search(name)] if name is not None else store.list_searches()
        if as_json:
            now = datetime.now(UTC)
            summaries = [status_json(status_view(store, search), now) for search in searches]
            echo_json("status", {"db": str(store.path), "now": iso_time(now), "searches": summaries})
            return
        if not searches:
            click.echo(f"no searches in {store.path}; start one with `evonorm search --db {db_path}`")
            return
        now = datetime.now(UTC)
        click.echo("\n\n".join(describe_status(status_view(store, search), now) for search in searches))


@click.command("list")
@DB_OPTION
@JSON_OPTION
def list_searches(db_path: Path, as_json: bool) -> None:
    """List the searches in the database with their candidate counts."""
    with SearchStore.open(db_path, readonly=True) as store:
        searches = store.list_searches()
        if as_json:
            records = []
            for search in searches:
                record = search_json(search, store.counts(search.id))
                counts = record["counts"]
                record["done"] = counts["done"]
                record["in_flight"] = counts["pending"] + counts["running"]
                records.append(record)
            echo_json("list", {"db": str(store.path), "searches": records})
            return
        if not searches:
            click.echo(f"no searches in {store.path}; start one with `evonorm search --db {db_path}`")
            return
        rows = []
        for search in searches:
            counts = store.counts(search.id)
            rows.append(
                [
                    search.name,
                    str(search.id),
                    str(sum(counts.values())),
                    str(counts.get("done", 0)),
                    str(counts.get("pending", 0) + counts.get("running", 0)),
                    _time(search.created_at),
                ]
            )
    click.echo(
        table(
            ["NAME", "ID", "CANDIDATES", "DONE", "IN FLIGHT", "CREATED"],
            rows,
            [False, True, True, True, True, False],
        )
    )


@click.command("front")
@click.argument("name")
@DB_OPTION
@JSON_OPTION
def front(name: str, db_path: Path, as_json: bool) -> None:
    """Show the Pareto front of search NAME over its proxies.

    Lists the done candidates that no other done candidate beats on every proxy: id,
    formula (with the known layer's name, if it is one), accuracy per proxy (the mean over
    the candidate's seeds, ± its standard error once re-evaluated), the number of seeds and
    the simplified formula (the shortest computing the same up to the final per-channel
    * gamma + beta, evonorm_search/simplify.py; "=" when it is the stored one), best mean
    accuracy first.

    Pass an ID to `evonorm show ID` or `evonorm export ID -o layer.py`.
    """
    from evonorm_search.api import candidate_graph
    from evonorm_search.search.selection import pareto_front

    with SearchStore.open(db_path, readonly=True) as store:
        search = store.get_search(name)
        done = store.candidates(search.id, ["done"])
        # The search's own proxy order (as `evonorm search` prints it), then any others.
        stored_order = [str(p) for p in search.config.get("proxies", [])]
        seen = {proxy for record in done for proxy in record.accuracies}
        proxies = [p for p in stored_order if p in seen] + sorted(seen - set(stored_order))
        # Done candidates have every proxy; one without all (a damaged row) cannot be ranked.
        scored = [record for record in done if proxies and set(record.accuracies) == set(proxies)]
        if not scored:
            members, graphs = [], {}
        else:
            points = [[record.accuracies[proxy] for proxy in proxies] for record in scored]
            members = [scored[index] for index in pareto_front(points)]
            members.sort(key=lambda r: (-sum(r.accuracies.values()) / len(proxies), r.number))
            graphs = {record.id: candidate_graph(store, record.id)[1] for record in members}
        db_name = str(store.path)
    if as_json:
        echo_json("front", {
            "db": db_name,
            "search": {"id": search.id, "name": search.name},
            "proxies": proxies if scored else [],
            "done_candidates": len(scored),
            "members": [
                {"candidate": candidate_json(r, search.name), "layer": layer_json(graphs[r.id])}
                for r in members
            ],
        })
        return
    if not members:
        click.echo(f"search {name!r} has no done candidates yet; see `evonorm status {name}`")
        return
    from evonorm_search.simplify import simplified_label

    rows = []
    for r in members:
        rows.append([str(r.id), formula_label(graphs[r.id]),
                     *(accuracy_text(r, proxy) for proxy in proxies), str(r.seed_count),
                     simplified_label(graphs[r.id]) or "="])
    click.echo(
        f"Pareto front of {name!r}: {len(members)} of {len(scored)} done candidates "
        f"(proxies: {', '.join(proxies)})"
    )
    header = ["ID", "FORMULA", *proxies, "seeds", "SIMPLIFIED"]
    click.echo(table(header, rows, [True, False, *([True] * len(proxies)), True, False]))
    if any(r.standard_errors for r in members):
        click.echo("accuracy: mean over the candidate's seeds ± its standard error (2 or more seeds)")
    note = score_note(proxies)
    if note:
        click.echo(note)


@click.command("migrate")
@DB_OPTION
def migrate(db_path: Path) -> None:
    """Upgrade a database written by an older evonorm_search to the current schema.

    A copy of the old file is kept next to it as <file>.v<old version>.bak.
    """
    with SearchStore.open(db_path) as store:
        if store.migrated_from is None:
            click.echo(f"{store.path} is already at the current database schema v{SCHEMA_VERSION}")
        else:
            click.echo(
                f"migrated {store.path} from schema v{store.migrated_from} to v{SCHEMA_VERSION}; "
                f"the old file is kept as {store.backup}"
            )


COMMANDS: list[click.Command] = [status, list_searches, front, migrate]
