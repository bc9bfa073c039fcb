// evonorm dashboard: polls the app's JSON endpoints and draws the pages (no other host).
// Every value from the database goes into the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = Number(document.body.dataset.poll) || 3000;
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
const FRONT_COLOR = "#d62728";
const KNOWN_COLOR = "#1f77b4";
const PLOT_CONFIG = { displaylogo: false, responsive: true };
const MAX_ROWS = 300;

// ---- helpers ------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fmt(value, digits = 4) {
  return value === null || value === undefined ? "\u2013" : Number(value).toFixed(digits);
}

// A (mean) score with ` ± standard error` when the candidate has one for the proxy.
function fmtScore(c, proxy, digits = 4) {
  const error = (c.standard_errors || {})[proxy];
  return fmt(c.scores[proxy], digits) + (error === undefined ? "" : ` \u00b1 ${fmt(error, digits)}`);
}

function candidateLink(id) {
  return id === null || id === undefined ? "\u2013" : el("a", { href: `/candidate/${id}` }, String(id));
}

function knownBadge(name) {
  return name ? el("span", { class: "known", title: "a known layer (same structural hash)" }, name) : null;
}

function cell(content, numeric) {
  return el("td", { class: numeric ? "num" : null }, content);
}

function fillTable(table, header, rows, numeric = new Set()) {
  const head = table.tHead || table.createTHead();
  head.replaceChildren(el("tr", {}, ...header.map((h) => el("th", {}, h))));
  const body = table.tBodies[0] || table.createTBody();
  body.replaceChildren(...rows.map((row) => el("tr", {}, ...row.map((c, i) => cell(c, numeric.has(i))))));
}

function setLive(ok, text) {
  const live = document.getElementById("live");
  live.className = "live " + (ok ? "ok" : "down");
  live.textContent = text;
}

// Polls `url` every POLL_MS; `onData` runs only when the document changed (ETag).
function poll(url, onData) {
  let etag = null;
  async function tick() {
    try {
      const response = await fetch(url, { cache: "no-store", headers: etag ? { "If-None-Match": etag } : {} });
      if (response.status === 200) {
        etag = response.headers.get("ETag");
        onData(await response.json());
      } else if (response.status !== 304) {
        const body = await response.json().catch(() => ({}));
        throw new Error(body.error || `HTTP ${response.status}`);
      }
      setLive(true, `live, updated ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      setLive(false, `not updating: ${error.message}`);
    } finally {
      setTimeout(tick, POLL_MS);
    }
  }
  tick();
}

function draw(id, traces, layout) {
  // uirevision keeps the user's zoom and hidden traces across live updates.
  const base = { margin: { l: 60, r: 20, t: 30, b: 50 }, uirevision: "keep", hovermode: "closest",
                 legend: { orientation: "h", y: -0.2 } };
  Plotly.react(id, traces, Object.assign(base, layout), PLOT_CONFIG);
}

// ---- the list of searches -----------------------------------------------------------

function indexPage() {
  poll("/api/searches", ({ searches }) => {
    document.getElementById("empty").hidden = searches.length > 0;
    const body = document.querySelector("#searches tbody");
    body.replaceChildren(...searches.map((s) => {
      const c = s.counts;
      const best = Object.entries(s.best).map(([p, b]) => `${p} ${fmt(b.accuracy)} (id ${b.id}${b.known ? ", " + b.known : ""})`);
      return el("tr", {},
        cell(String(s.id), true),
        cell(el("a", { href: `/search/${s.id}` }, s.name)),
        cell(s.strategy || ""), cell(s.dataset || ""),
        cell(`${s.evaluated} / ${s.budget}`, true),
        cell(String(c.done || 0), true), cell(String(c.stopped || 0), true), cell(String(c.rejected || 0), true),
        cell(String(c.failed || 0), true), cell(String(c.duplicate || 0), true),
        cell(String((c.pending || 0) + (c.running || 0)), true),
        cell(best.join("; ") || "\u2013"), cell(s.last_activity ? s.last_activity.replace("T", " ").slice(0, 19) : "\u2013"));
    }));
    draw("compare", searches.map((s, i) => ({
      x: s.best_mean.map((_, j) => j + 1), y: s.best_mean, name: s.name, mode: "lines",
      line: { color: COLORS[i % COLORS.length], width: 2, shape: "hv" }, connectgaps: false,
    })), { xaxis: { title: { text: "candidates evaluated" } }, yaxis: { title: { text: "best mean accuracy" } } });
  });
}

// ---- one search ---------------------------------------------------------------------

const table = { sortKey: "number", ascending: true, data: null };

function card(label, big, ...extra) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "big" }, big), ...extra);
}

function renderCards(view) {
  const c = view.counts;
  const share = Math.min(1, view.evaluated / Math.max(1, view.budget));
  const bar = el("div", { class: "bar" }, el("div", { style: `width:${(100 * share).toFixed(1)}%` }));
  const cards = [
    card("evaluated / budget", `${view.evaluated} / ${view.budget}`, bar),
    card("stored candidates", String(view.total),
         el("div", { class: "note" }, Object.entries(c).map(([k, v]) => `${k} ${v}`).join(", "))),
  ];
  for (const proxy of view.proxies) {
    const best = view.best[proxy];
    cards.push(best
      ? card(`best ${proxy}`, fmt(best.accuracy), el("div", { class: "note" }, "id ", candidateLink(best.id), knownBadge(best.known)))
      : card(`best ${proxy}`, "\u2013"));
  }
  cards.push(card("last activity (UTC)", view.last_activity ? view.last_activity.slice(11, 19) : "\u2013",
                  el("div", { class: "note" }, view.last_activity ? view.last_activity.slice(0, 10) : "")));
  document.getElementById("cards").replaceChildren(...cards);
}

function renderSettings(view) {
  const groups = { search: [], dataset: [], train: [] };
  for (const [key, value] of Object.entries(view.config)) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      groups[key] = Object.entries(value).map(([k, v]) => [el("code", {}, k), JSON.stringify(v)]);
    } else {
      groups.search.push([el("code", {}, key), JSON.stringify(value)]);
    }
  }
  groups.search.push([el("code", {}, "seed (search)"), String(view.search.seed)]);
  groups.search.push([el("code", {}, "created"), view.search.created_at]);
  groups.versions = Object.entries(view.search.versions).map(([k, v]) => [el("code", {}, k), String(v)]);
  const grid = document.querySelector("#settings .grid");
  grid.replaceChildren(...Object.entries(groups).map(([title, rows]) => {
    const t = el("table", { class: "data" });
    fillTable(t, [title, "value"], rows);
    return el("div", {}, t);
  }));
}

function renderProgress(view) {
  const p = view.progress;
  const traces = [];
  view.proxies.forEach((proxy, i) => {
    const color = COLORS[i % COLORS.length];
    traces.push({ x: p.evaluated, y: p.best[proxy], name: `${proxy} best so far`, mode: "lines+markers",
                  line: { color, width: 2, shape: "hv" }, marker: { color, size: 4 } });
    traces.push({ x: p.evaluated, y: p.median[proxy], name: `${proxy} population median`, mode: "lines",
                  line: { color, width: 1, dash: "dot" } });
  });
  draw("progress", traces, { xaxis: { title: { text: "candidates evaluated" } }, yaxis: { title: { text: view.score } } });
}

// What proxy p's score is (its own metric where the proxies differ, e.g. charlm's bits).
function metricOf(view, p) {
  return (view.metrics && view.metrics[p]) || view.score;
}

function hoverText(c, proxies) {
  const scores = proxies.map((p) => `${p} ${fmtScore(c, p)}`).join("<br>");
  const name = c.known ? ` (${c.known})` : "";
  // Plotly renders hover text as a small HTML subset: escape what comes from the database.
  const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  return `id ${c.id}${escape(name)}<br>${escape(c.formula)}<br>${scores}`;
}

function fillAxes(proxies) {
  for (const [id, index] of [["x-proxy", 0], ["y-proxy", 1]]) {
    const select = document.getElementById(id);
    if (select.options.length) continue;
    proxies.forEach((p) => select.append(el("option", { value: p }, p)));
    select.value = proxies[Math.min(index, proxies.length - 1)];
    select.addEventListener("change", () => table.data && renderPareto(table.data));
  }
  document.getElementById("axes").hidden = proxies.length < 2;
}

function renderPareto(view) {
  const proxies = view.proxies;
  fillAxes(proxies);
  const done = view.candidates.filter((c) => c.mean !== null);
  const single = proxies.length < 2;
  const xp = document.getElementById("x-proxy").value;
  const yp = document.getElementById("y-proxy").value;
  const x = (c) => (single ? c.number : c.scores[xp]);
  const y = (c) => (single ? c.scores[proxies[0]] : c.scores[yp]);
  const trace = (points, name, marker) => ({
    x: points.map(x), y: points.map(y), customdata: points.map((c) => c.id), text: points.map((c) => hoverText(c, proxies)),
    hovertemplate: "%{text}<extra></extra>", mode: "markers", name, marker,
  });
  const front = done.filter((c) => c.front);
  const known = done.filter((c) => c.known);
  const accuracyRange = (values) => {  // plotly widens a range of one value to +-0.5
    if (!values.length) return [0, 1];
    const lo = Math.min(...values), hi = Math.max(...values), pad = Math.max(0.02, 0.08 * (hi - lo));
    return [lo - pad, hi + pad];
  };
  draw("pareto", [
    trace(done.filter((c) => !c.front), "done candidates", { color: "#aaaaaa", size: 7 }),
    trace(front, "Pareto front (all proxies)", { color: "rgba(0,0,0,0)", size: 13, line: { color: FRONT_COLOR, width: 2.5 } }),
    trace(known, "known layers", { color: KNOWN_COLOR, size: 13, symbol: "star" }),
  ], {
    xaxis: { title: { text: single ? "candidate number" : `${xp} ${metricOf(view, xp)}` },
             range: single ? undefined : accuracyRange(done.map(x)) },
    yaxis: { title: { text: `${single ? proxies[0] : yp} ${metricOf(view, single ? proxies[0] : yp)}` }, range: accuracyRange(done.map(y)) },
  });
  const plot = document.getElementById("pareto");
  if (!plot.dataset.clicks) {
    plot.dataset.clicks = "1";
    plot.on("plotly_click", (event) => {
      const id = event.points && event.points[0] && event.points[0].customdata;
      if (id !== undefined) window.location.href = `/candidate/${id}`;
    });
  }
}

function fillFilter(id, values) {
  const select = document.getElementById(id);
  const present = new Set([...select.options].map((o) => o.value));
  [...values].sort().forEach((v) => { if (!present.has(v)) select.append(el("option", { value: v }, v)); });
}

function sortValue(c, key) {
  if (key.startsWith("score:")) return c.scores[key.slice(6)];
  return c[key];
}

function renderCandidates(view) {
  const proxies = view.proxies;
  fillFilter("f-status", new Set(view.candidates.map((c) => c.status)));
  fillFilter("f-stage", new Set(view.candidates.map((c) => c.stage).filter((s) => s)));
  const status = document.getElementById("f-status").value;
  const stage = document.getElementById("f-stage").value;
  const minimum = parseFloat(document.getElementById("f-score").value);
  const text = document.getElementById("f-text").value.trim().toLowerCase();
  const frontOnly = document.getElementById("f-front").checked;
  let rows = view.candidates.filter((c) =>
    (!status || c.status === status) && (!stage || c.stage === stage) &&
    (Number.isNaN(minimum) || (c.mean !== null && c.mean >= minimum)) &&
    (!text || c.formula.toLowerCase().includes(text) || (c.known || "").includes(text)) &&
    (!frontOnly || c.front));
  const direction = table.ascending ? 1 : -1;
  rows.sort((a, b) => {
    const va = sortValue(a, table.sortKey), vb = sortValue(b, table.sortKey);
    if (va === vb) return a.number - b.number;
    if (va === null || va === undefined) return 1;   // missing values last either way
    if (vb === null || vb === undefined) return -1;
    return (va < vb ? -1 : 1) * direction;
  });
  document.getElementById("shown").textContent =
    `${rows.length} of ${view.candidates.length} match` + (rows.length > MAX_ROWS ? `; the first ${MAX_ROWS} shown` : "");
  rows = rows.slice(0, MAX_ROWS);
  const columns = [["id", "id"], ["number", "#"], ["status", "status"], ["stage", "stage"],
                   ...proxies.map((p) => [`score:${p}`, p]), ["mean", "mean"], ["seeds", "seeds"], ["seconds", "compute s"],
                   ["known", "known"], ["formula", "formula"], ["parent_id", "parent"]];
  const t = document.getElementById("candidates");
  t.tHead.replaceChildren(el("tr", {}, ...columns.map(([key, label]) => {
    const th = el("th", { class: key === table.sortKey ? (table.ascending ? "asc" : "desc") : null }, label);
    th.addEventListener("click", () => {
      table.ascending = table.sortKey === key ? !table.ascending : key === "number" || key === "id";
      table.sortKey = key;
      renderCandidates(table.data);
    });
    return th;
  })));
  t.tBodies[0].replaceChildren(...rows.map((c) => el("tr", { class: c.front ? "front" : null, title: c.reason || null },
    cell(candidateLink(c.id), true), cell(String(c.number), true), cell(c.status), cell(c.stage || ""),
    ...proxies.map((p) => cell(fmtScore(c, p), true)), cell(fmt(c.mean), true), cell(String(c.seeds), true),
    cell(fmt(c.seconds, 1), true),
    cell(c.known || ""), cell(el("code", {}, c.formula)), cell(candidateLink(c.parent_id), true))));
}

function renderFunnel(view) {
  fillTable(document.getElementById("funnel"), ["stage", "candidates", "compute seconds", "meaning"],
            view.funnel.map((r) => [r.stage, String(r.removed), r.seconds ? r.seconds.toFixed(1) : "", r.note]), new Set([1, 2]));
  const stages = view.funnel.map((r) => r.stage);
  draw("funnel-plot", [
    { type: "bar", orientation: "h", y: stages, x: view.funnel.map((r) => r.removed), name: "candidates", marker: { color: "#7f7f7f" } },
    { type: "bar", orientation: "h", y: stages, x: view.funnel.map((r) => r.seconds), name: "compute seconds",
      marker: { color: "#9467bd" }, xaxis: "x2", yaxis: "y2" },
  ], {
    showlegend: false, margin: { l: 150, r: 20, t: 30, b: 50 },
    xaxis: { domain: [0, 0.4], title: { text: "candidates" } },
    yaxis: { anchor: "x", autorange: "reversed" },
    xaxis2: { domain: [0.6, 1], anchor: "y2", title: { text: "compute seconds (summed over proxies)" } },
    yaxis2: { anchor: "x2", autorange: "reversed" },
  });
}

function renderRerank(view) {
  const box = document.getElementById("rerank");
  const { run, rows } = view.rerank;
  if (!run) {
    box.replaceChildren(el("p", {}, "No re-ranking yet: run ", el("code", {}, `evonorm rerank ${view.search.name} --db ${view.db}`),
                            " to retrain the best layers on the test split."));
    return;
  }
  const t = el("table", { class: "data" });
  fillTable(t, ["rank", "layer", ...view.proxies, "mean", "seeds", "formula"], rows.map((r) => [
    String(r.rank), r.candidate_id !== null ? el("span", {}, candidateLink(r.candidate_id), knownBadge(r.known)) : el("span", {}, r.label),
    ...view.proxies.map((p) => (p in r.mean && r.mean[p] !== null ? `${fmt(r.mean[p])} \u00b1 ${fmt(r.std[p])}` : "\u2013")),
    fmt(r.overall), `${r.seeds_done}` + (r.seeds_failed ? ` (${r.seeds_failed} failed)` : ""), el("code", {}, r.formula),
  ]), new Set([0, ...view.proxies.map((_, i) => i + 2), view.proxies.length + 2, view.proxies.length + 3]));
  const s = run.settings || {};
  box.replaceChildren(el("p", { class: "note" }, `Run ${run.id} (${run.created_at}): test-split accuracy, mean \u00b1 standard deviation over ${s.seeds} seed(s), ${(s.train || {}).steps} training steps per proxy.`), t);
}

function renderLineage(view) {
  const box = document.getElementById("lineage");
  if (!view.lineage.length) {
    box.replaceChildren(el("p", {}, "No best layer yet."));
    return;
  }
  const byId = new Map(view.candidates.map((c) => [c.id, c]));
  box.replaceChildren(el("p", { class: "note" }, "The front layer with the best mean accuracy, then its parent, grandparent, ... back to an initial member."),
    el("p", {}, ...view.lineage.flatMap((id, i) => {
      const c = byId.get(id);
      return [i ? " \u2190 " : "", candidateLink(id), c && c.known ? knownBadge(c.known) : null];
    })));
}

function searchPage() {
  const id = document.body.dataset.search;
  for (const control of ["f-status", "f-stage", "f-score", "f-text", "f-front"]) {
    document.getElementById(control).addEventListener("input", () => table.data && renderCandidates(table.data));
  }
  poll(`/api/search/${id}`, (view) => {
    table.data = view;
    document.title = `evonorm dashboard: ${view.search.name}`;
    document.getElementById("title").textContent = `search ${view.search.name}`;
    renderCards(view);
    renderSettings(view);
    renderProgress(view);
    renderPareto(view);
    renderCandidates(view);
    renderFunnel(view);
    renderRerank(view);
    renderLineage(view);
  });
}

// ---- one candidate ------------------------------------------------------------------

function candidatePage() {
  const id = document.body.dataset.candidate;
  document.getElementById("copy").addEventListener("click", () =>
    navigator.clipboard && navigator.clipboard.writeText(document.getElementById("export").textContent));
  poll(`/api/candidate/${id}`, (c) => {
    document.getElementById("crumbs").replaceChildren("search ", el("a", { href: `/search/${c.search.id}` }, c.search.name),
                                                       ` \u00b7 number ${c.number}`);
    document.getElementById("title").replaceChildren(el("span", {}, `candidate ${c.id}`, knownBadge(c.known)));
    document.getElementById("formula").textContent = c.formula;
    document.getElementById("simplified").textContent = c.simplified
      ? `simplified (the same up to the per-channel \u00b7 gamma + beta): ${c.simplified}` : "";
    const facts = [
      ["status", c.status + (c.stage ? ` (${c.stage})` : "")], ["on the Pareto front", c.front ? "yes" : "no"],
      ["mean accuracy", fmt(c.mean)], ["seeds", String(c.seeds)],
      ["hurdle", c.hurdle === null ? "\u2013" : fmt(c.hurdle)], ["parent", candidateLink(c.parent_id)],
      ["duplicate of", candidateLink(c.duplicate_of)], ["attempts", String(c.attempts)],
      ["seed", String(c.seed)], ["finished (UTC)", c.finished_at ? c.finished_at.replace("T", " ") : "\u2013"],
    ];
    if (c.reason) facts.splice(1, 0, ["reason", c.reason]);
    document.getElementById("facts").replaceChildren(...facts.map(([label, value]) =>
      el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", {}, value))));
    const stages = Object.keys(c.stage_seconds);
    fillTable(document.getElementById("scores"), ["proxy", "validation accuracy (mean over seeds)", "early (quality check)"],
              c.proxies.map((p) => [p, fmtScore(c, p), fmt(c.early_scores[p])]), new Set([1, 2]));
    fillTable(document.getElementById("trials"), ["trial", "seed", "status", ...c.proxies, "compute s"],
              c.trials.map((t) => [String(t.trial), t.seed, t.status + (t.stage ? ` (${t.stage})` : ""),
                                   ...c.proxies.map((p) => fmt(t.scores[p])), fmt(t.seconds, 1)]),
              new Set([0, 1, ...c.proxies.map((_, i) => i + 3), c.proxies.length + 3]));
    const timing = el("p", { class: "note" }, stages.length
      ? "Compute seconds per stage (summed over proxies): " + stages.map((s) => `${s} ${c.stage_seconds[s].toFixed(1)}`).join(", ")
      : "No compute recorded.");
    const box = document.getElementById("rerank");
    if (c.rerank.length) {
      const t = el("table", { class: "data" });
      fillTable(t, ["run", "seed", "status", ...c.proxies], c.rerank.map((r) => [String(r.run_id), String(r.seed),
                r.status + (r.stage ? ` (${r.stage})` : ""), ...c.proxies.map((p) => fmt(r.scores[p]))]),
                new Set([0, 1, ...c.proxies.map((_, i) => i + 3)]));
      box.replaceChildren(timing, el("h3", {}, "Re-ranking, per seed (test split)"), t);
    } else {
      box.replaceChildren(timing);
    }
    fillTable(document.getElementById("lineage"), ["id", "number", "status", ...c.proxies, "known", "formula"],
              c.lineage.map((a) => [candidateLink(a.id), String(a.number), a.status, ...c.proxies.map((p) => fmtScore(a, p)),
                                    a.known || "", el("code", {}, a.formula)]),
              new Set([0, 1, ...c.proxies.map((_, i) => i + 3)]));
    document.getElementById("export").textContent = c.export;
  });
}

({ index: indexPage, search: searchPage, candidate: candidatePage })[document.body.dataset.page]();
