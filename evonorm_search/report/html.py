"""The report page: one self-contained HTML document (inline CSS, PNGs as data URIs).

Owns the page's layout and text. Every value from the database is HTML-escaped; nothing
is loaded from the network, so the page opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import json
import statistics
from collections.abc import Set
from html import escape
from typing import TYPE_CHECKING

from evonorm_search.graph import LayerGraph
from evonorm_search.proxy_info import score_label
from evonorm_search.report.data import ReportData
from evonorm_search.report.plots import funnel_png, graph_png, pareto_pngs, progress_png
from evonorm_search.simplify import simplified_label

if TYPE_CHECKING:
    from db.records import CandidateRecord

MAX_FRONT_PICTURES = 24

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; background: #fff; line-height: 1.45; }
h1 { border-bottom: 3px solid #d62728; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .85rem; }
img { max-width: 100%; height: auto; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6rem; flex: 1 1 340px; }
.note { color: #666; font-size: .88rem; }
.grid { display: flex; flex-wrap: wrap; gap: .6rem; }
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _table(header: list[str], rows: list[list[str]], numeric: Set[int] = frozenset()) -> str:
    """A table; `header` is escaped here, cells are HTML already; `numeric` columns align right."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _formula(graph_json: str) -> str:
    return LayerGraph.from_json(graph_json).formula()


def _simplified(graph_json: str) -> str:
    """The simplified form up to the affine, or "=" when it is the stored formula."""
    return simplified_label(LayerGraph.from_json(graph_json)) or "="


def _settings(data: ReportData) -> str:
    """Search-level, data set and training settings as three side-by-side tables."""
    settings = data.config.to_dict()
    groups: dict[str, list[list[str]]] = {"search": [], "dataset": [], "train": []}
    for key, value in settings.items():
        if isinstance(value, dict):
            groups[key] = [[f"<code>{escape(k)}</code>", escape(json.dumps(v))] for k, v in value.items()]
        else:
            groups["search"].append([f"<code>{escape(key)}</code>", escape(json.dumps(value))])
    versions = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in sorted(data.search.versions.items()))
    tables = "".join(f"<div>{_table([title, 'value'], rows)}</div>" for title, rows in groups.items())
    return (
        f"<p>Search <b>{escape(data.search.name)}</b>, seed {data.search.seed}, created "
        f"{escape(data.search.created_at.isoformat(timespec='seconds'))}. Versions: {versions}.</p>"
        f'<div class="grid">{tables}</div>'
    )


def _accuracy(candidate: CandidateRecord, proxy: str, digits: int = 4) -> str:
    """The candidate's (mean) accuracy, `± standard error` over its seeds when it has one."""
    text = f"{candidate.accuracies[proxy]:.{digits}f}"
    error = candidate.standard_errors.get(proxy)
    return text if error is None else f"{text} ± {error:.{digits}f}"


def _front(data: ReportData) -> str:
    proxies = data.config.proxies
    if not data.front:
        return "<p>No candidate has finished on every proxy yet: no front to show.</p>"
    rows = [
        [f"{c.id}", f"{c.number}", *[_accuracy(c, p) for p in proxies],
         f"{statistics.fmean(c.accuracies[p] for p in proxies):.4f}", f"{c.seed_count}",
         f"<code>{escape(_formula(c.graph_json))}</code>",
         f"<code>{escape(_simplified(c.graph_json))}</code>"]
        for c in data.front
    ]
    note = ('<p class="note">Per proxy: the mean over the candidate\'s seeds (its first '
            "evaluation and any re-evaluations), ± its standard error when it has two or more. "
            "Simplified: the shortest formula computing the same up to the per-channel "
            "* gamma + beta (= when it is the stored one).</p>")
    table = note + _table(["id", "number", *proxies, "mean", "seeds", "formula", "simplified"],
                          rows, set(range(len(proxies) + 4)))
    shown = data.front[:MAX_FRONT_PICTURES]
    cards = "".join(
        f'<div class="card"><b>id {c.id}</b> '
        f"({', '.join(f'{p} {c.accuracies[p]:.3f}' for p in proxies)})<br>"
        f"<code>{escape(_formula(c.graph_json))}</code><br>"
        f"{_img(graph_png(LayerGraph.from_json(c.graph_json)), f'graph of candidate {c.id}')}</div>"
        for c in shown
    )
    more = (
        f'<p class="note">Pictures of the first {len(shown)} of {len(data.front)} front layers.</p>'
        if len(shown) < len(data.front) else ""
    )
    return table + more + f'<div class="cards">{cards}</div>'


def _pareto(data: ReportData) -> str:
    proxies = data.config.proxies
    if len(proxies) < 2:
        return "<p>One proxy only: no pairs to plot.</p>"
    points = [
        c.accuracies for c in data.candidates
        if c.status == "done" and all(p in c.accuracies for p in proxies)
    ]
    front = [c.accuracies for c in data.front]
    score = score_label(data.config.task, data.config.proxies)
    pictures = pareto_pngs(points, front, data.known, proxies, score)
    images = "".join(_img(png, f"Pareto front, {x} vs {y}") for x, y, png in pictures)
    return (
        f'<p class="note">Grey: done candidates ({score}). Red: the Pareto front over '
        f'all proxies. Stars: {escape(data.known.source)}.</p><div class="grid">{images}</div>'
    )


def _funnel(data: ReportData) -> str:
    rows = [
        [escape(r.stage), f"{r.removed}", f"{r.seconds:.1f}" if r.seconds else "", escape(r.note)]
        for r in data.funnel
    ]
    trials = data.reevaluations
    again = (
        f'<p class="note">Re-evaluations of front members with further seeds: {sum(trials.values())} ('
        + ", ".join(f"{escape(status)} {count}" for status, count in sorted(trials.items()))
        + ").</p>" if trials else ""
    )
    return (
        _table(["stage", "candidates", "compute seconds", "meaning"], rows, {1, 2})
        + again + _img(funnel_png(data.funnel), "rejection funnel")
    )


def _rerank(data: ReportData) -> str:
    if data.rerank_run is None:
        return ("<p>No re-ranking yet: run <code>evonorm rerank "
                f"{escape(data.search.name)}</code> to retrain the best layers on the test split.</p>")
    proxies = data.config.proxies
    settings = data.rerank_run.settings
    rows = [
        [f"{rank}", escape(r.label),
         *[f"{r.mean[p]:.4f} ± {r.std[p]:.4f}" if p in r.mean else "–" for p in proxies],
         f"{r.overall:.4f}" if r.mean else "–",
         f"{r.seeds_done}" + (f" ({r.seeds_failed} failed)" if r.seeds_failed else ""),
         f"<code>{escape(r.formula)}</code>"]
        for rank, r in enumerate(data.rerank_rows, start=1)
    ]
    return (
        f'<p class="note">Run {data.rerank_run.id}: test-split accuracy, mean ± standard '
        f"deviation over {escape(str(settings.get('seeds')))} seed(s), "
        f"{escape(str(settings.get('train', {}).get('steps')))} training steps per proxy.</p>"
        + _table(["rank", "layer", *proxies, "mean", "seeds", "formula"], rows,
                 set(range(2, len(proxies) + 4)))
    )


def _lineage(data: ReportData) -> str:
    if not data.lineage:
        return "<p>No best layer yet.</p>"
    proxies = data.config.proxies
    rows = []
    for c in data.lineage:
        scores = ", ".join(f"{p} {_accuracy(c, p, 3)}" for p in proxies if p in c.accuracies)
        origin = f"mutated from {c.parent_id}" if c.parent_id is not None else "initial member"
        rows.append([f"{c.id}", f"{c.number}", escape(c.status), escape(scores) or "–",
                     escape(origin), f"<code>{escape(_formula(c.graph_json))}</code>"])
    return (
        '<p class="note">The front layer with the best mean accuracy, then its parent, '
        "grandparent, ... back to an initial member.</p>"
        + _table(["id", "number", "status", "accuracy", "origin", "formula"], rows, {0, 1})
    )


def render(data: ReportData) -> str:
    """The whole page for `data`."""
    proxies = data.config.proxies
    sections = [
        ("Settings", _settings(data)),
        ("Progress", '<p class="note">Per proxy, after each candidate evaluated (counted as the '
                     f"budget counts them): best {score_label(data.config.task, data.config.proxies)} so far, and "
                     f"the median of the population (the {data.config.population} most recent "
                     "done members).</p>"
                     + _img(progress_png(data.progress, proxies, score_label(data.config.task, data.config.proxies)),
                            "progress curves")),
        ("Pareto front", _pareto(data) + _front(data)),
        ("Rejection funnel", _funnel(data)),
        ("Re-ranking", _rerank(data)),
        ("Lineage of the best layer", _lineage(data)),
    ]
    body = "".join(f"<h2>{escape(title)}</h2>{content}" for title, content in sections)
    title = f"evonorm search report: {data.search.name}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )
