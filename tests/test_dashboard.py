"""`evonorm dashboard`: numbers against the store, live updates beside a running search,
the database left byte-for-byte unchanged, no remote URL, CLI errors, and the pages drawn
in a real headless Chromium."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape, unescape
from pathlib import Path

import pytest
from PIL import Image

from db.rerank import RerankStore
from db.store import SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.search.controller import SearchController
from evonorm_search.dashboard import create_app, make_server
from evonorm_search.dashboard.app import PLOTLY_JS
from evonorm_search.graph import LayerGraph
from evonorm_search.known import KNOWN_LAYERS, known_name
from evonorm_search.rerank import front_candidates, ranking, run_rerank
from evonorm_search.task import EvalResult, EvalTask
from tests.cli_runner import run_evonorm
from tests.test_cli_inspect import GAMMA_EARLY, GAMMA_HURDLE, GAMMA_TRIALS, mean_and_error, populate_gamma
from workers.executors import InlineEvaluator

PROXIES = ("resnet", "mobilenetv2")
STAGE_SECONDS = {"stability": 0.25, "quality": 0.5, "training": 2.0}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
URL = re.compile(r"(?:https?:)?//[^\s\"'<>`)]+", re.I)


def fake_evaluate(task: EvalTask) -> EvalResult:
    """Scores from the layer's structure and the seed; about a quarter rejected."""
    graph = LayerGraph.from_json(task.graph_json)
    digest = hashlib.sha256(f"{graph.structural_hash()}:{task.seed}".encode()).digest()
    if digest[0] % 4 == 0:
        return EvalResult("rejected", stage="quality", reason="fake: below threshold",
                          seconds={"stability": 0.25, "quality": 0.5})
    return EvalResult("done", accuracies={p: digest[1 + i] / 255 for i, p in enumerate(task.proxies)},
                      seconds=STAGE_SECONDS)


def slow_evaluate(task: EvalTask) -> EvalResult:
    time.sleep(0.03)
    return fake_evaluate(task)


def config(**changes: object) -> SearchConfig:
    return SearchConfig(proxies=PROXIES, budget=30, population=6, seed=7).with_overrides(changes)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search (known layers first, then evolution) and a re-ranking of it."""
    path = tmp_path_factory.mktemp("dashboard") / "search.db"
    settings = config()
    with SearchStore.open(path, create=True) as store:
        record = store.create_search("s <1>", settings.to_dict(), settings.seed)
        SearchController(store, record, settings, InlineEvaluator(fake_evaluate)).run()
        run_rerank(store, "s <1>", InlineEvaluator(fake_evaluate), top=2, seeds=2, steps=5)
    return path


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_json(url: str) -> dict:
    status, _, body = get(url)
    assert status == 200, body[:500]
    return json.loads(body)


@contextmanager
def serving(db: Path, poll_seconds: float = 3.0) -> Iterator[str]:
    """The dashboard on `db`, served from a thread on 127.0.0.1 and an ephemeral port."""
    app = create_app(db, poll_seconds=poll_seconds)
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        app.extensions["evonorm_dashboard"].store.close()


@pytest.fixture(scope="module")
def server(database: Path) -> Iterator[str]:
    with serving(database) as base:
        yield base


def stored(database: Path) -> tuple:
    with SearchStore.open(database, readonly=True) as store:
        search = store.get_search("s <1>")
        candidates = store.candidates(search.id)
        rerank = RerankStore(store)
        run = rerank.latest_run(search.id)
        return search, candidates, store.counts(search.id), rerank.evaluations(run.id)


def test_search_numbers_match_the_store(database: Path, server: str) -> None:
    search, candidates, counts, evaluations = stored(database)
    listed = get_json(f"{server}/api/searches")["searches"]
    assert [s["name"] for s in listed] == ["s <1>"] and listed[0]["id"] == search.id
    view = get_json(f"{server}/api/search/{search.id}")
    assert view["total"] == len(candidates) and view["counts"] == counts
    assert listed[0]["counts"] == counts and listed[0]["evaluated"] == view["evaluated"] == 30
    assert [c["id"] for c in view["candidates"]] == [c.id for c in candidates]
    done = [c for c in candidates if c.status == "done"]
    for proxy in PROXIES:
        best = max(done, key=lambda c: (c.accuracies[proxy], -c.id))
        assert view["best"][proxy]["id"] == best.id
        assert view["best"][proxy]["accuracy"] == pytest.approx(best.accuracies[proxy])
        assert max(v for v in view["progress"]["best"][proxy] if v is not None) == pytest.approx(
            best.accuracies[proxy])
    assert view["front"] == [c.id for c in front_candidates(candidates, PROXIES)]
    assert {c["id"] for c in view["candidates"] if c["front"]} == set(view["front"])
    assert len(view["progress"]["evaluated"]) == 30
    rows = {c["id"]: c for c in view["candidates"]}
    for candidate in candidates:  # known names by structural hash, formulas, scores
        row = rows[candidate.id]
        assert row["known"] == known_name(candidate.structural_hash)
        assert row["formula"] == LayerGraph.from_json(candidate.graph_json).formula()
        assert row["scores"] == {p: pytest.approx(a) for p, a in candidate.accuracies.items()}
    named = {c.id: name for c in candidates for name, graph in KNOWN_LAYERS.items()
             if c.graph_json == graph.to_json()}  # the known layers the search started from
    assert len(named) >= 5 and all(rows[i]["known"] == name for i, name in named.items())
    funnel = {row["stage"]: row for row in view["funnel"]}
    assert funnel["proposed"]["removed"] == len(candidates)
    assert funnel["trained in full"]["removed"] == counts["done"]
    assert funnel["quality"]["removed"] == sum(1 for c in candidates if c.stage == "quality")
    assert funnel["training"]["seconds"] == pytest.approx(2.0 * counts["done"])
    assert funnel["quality"]["seconds"] == pytest.approx(0.5 * (counts["done"] + funnel["quality"]["removed"]))
    expected = ranking(evaluations, PROXIES)
    assert [r["label"] for r in view["rerank"]["rows"]] == [r.label for r in expected]
    for got, want in zip(view["rerank"]["rows"], expected, strict=True):
        assert got["mean"] == {p: pytest.approx(v) for p, v in want.mean.items()}
        assert got["seeds_done"] == want.seeds_done == 2
    assert view["lineage"][0] == view["front"][0]


def test_candidate_view_and_graph(database: Path, server: str) -> None:
    _, candidates, _, evaluations = stored(database)
    by_id = {c.id: c for c in candidates}
    child = next(c for c in reversed(candidates) if c.parent_id is not None and c.status == "done")
    view = get_json(f"{server}/api/candidate/{child.id}")
    assert view["formula"] == LayerGraph.from_json(child.graph_json).formula()
    assert view["scores"] == {p: pytest.approx(a) for p, a in child.accuracies.items()}
    chain, current = [], child
    while current is not None:
        chain.append(current.id)
        current = by_id.get(current.parent_id) if current.parent_id is not None else None
    assert [c["id"] for c in view["lineage"]] == chain
    assert view["export"] == f"evonorm export {child.id} --db {database} -o layer.py"
    assert view["stage_seconds"] == STAGE_SECONDS
    reranked = next(e.candidate_id for e in evaluations if e.candidate_id is not None)
    seeds = get_json(f"{server}/api/candidate/{reranked}")["rerank"]
    assert len(seeds) == 2 and {s["seed"] for s in seeds} == {str(e.seed) for e in evaluations
                                                             if e.candidate_id == reranked}
    assert view["seed"] == str(child.seed)  # as text: 64-bit seeds do not fit a JS number
    known = get_json(f"{server}/api/candidate/{candidates[0].id}")
    assert known["known"] == list(KNOWN_LAYERS)[0]
    status, headers, body = get(f"{server}/candidate/{child.id}/graph.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(PNG_SIGNATURE)
    for missing in ("/api/candidate/999999", "/api/search/999", "/candidate/999999", "/search/999"):
        status, _, body = get(server + missing)
        assert status == 404, missing


def test_reevaluations_stopped_candidates_and_standard_errors(tmp_path: Path) -> None:
    """Counts include "stopped", the funnel has its step, candidate rows carry the seeds and
    standard errors, the candidate view its trials; a re-evaluation finishing (which changes
    no status) still gives the search view a new version."""
    path = tmp_path / "gamma.db"
    ids = populate_gamma(path)
    app = create_app(path)
    client = app.test_client()
    try:
        assert "<th>stopped</th>" in client.get("/").get_data(as_text=True)
        search_id = client.get("/api/searches").get_json()["searches"][0]["id"]
        first = client.get(f"/api/search/{search_id}")
        view = first.get_json()
        assert view["counts"] == {"done": 2, "stopped": 1, "rejected": 1}
        funnel = {row["stage"]: row["removed"] for row in view["funnel"]}
        assert funnel["stopped at the hurdle"] == 1 and funnel["trained in full"] == 2
        rows = {row["id"]: row for row in view["candidates"]}
        reevaluated = rows[ids["reevaluated"]]
        for column, proxy in enumerate(PROXIES, start=1):
            mean, error = mean_and_error([trial[column] for trial in GAMMA_TRIALS])
            assert reevaluated["scores"][proxy] == pytest.approx(mean)
            assert reevaluated["standard_errors"][proxy] == pytest.approx(error)
        assert reevaluated["seeds"] == 3
        assert rows[ids["single"]]["seeds"] == 1 and rows[ids["single"]]["standard_errors"] == {}
        candidate = client.get(f"/api/candidate/{ids['reevaluated']}").get_json()
        assert [(t["trial"], t["seed"], t["status"]) for t in candidate["trials"]] == [
            (trial, str(seed), "done") for trial, (seed, _, _) in enumerate(GAMMA_TRIALS)]
        assert candidate["early_scores"] == GAMMA_EARLY and candidate["hurdle"] == GAMMA_HURDLE
        stopped = client.get(f"/api/candidate/{ids['stopped']}").get_json()
        assert stopped["status"] == "stopped" and stopped["trials"][0]["stage"] == "hurdle"
        with SearchStore.open(path) as store:  # a second seed for "single" finishes
            trial = store.add_trial(ids["single"], trial=2, seed=11)
            store.record_trial(trial.id, status="done", accuracies={"resnet": 0.72, "mobilenetv2": 0.44})
        second = client.get(f"/api/search/{search_id}", headers={"If-None-Match": first.headers["ETag"]})
        assert second.status_code == 200 and second.headers["ETag"] != first.headers["ETag"]
        single = {row["id"]: row for row in second.get_json()["candidates"]}[ids["single"]]
        assert single["seeds"] == 2
        assert single["standard_errors"]["resnet"] == pytest.approx(mean_and_error([0.70, 0.72])[1])
    finally:
        app.extensions["evonorm_dashboard"].store.close()


def test_unchanged_search_answers_304(database: Path, server: str) -> None:
    search, *_ = stored(database)
    status, headers, _ = get(f"{server}/api/search/{search.id}")
    assert status == 200 and headers["ETag"]
    status, _, body = get(f"{server}/api/search/{search.id}", {"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""


def page_urls(database: Path) -> list[str]:
    search, candidates, *_ = stored(database)
    return ["/", f"/search/{search.id}", f"/candidate/{candidates[-1].id}",
            "/static/dashboard.js", "/static/dashboard.css"]


def test_pages_load_nothing_from_another_host(database: Path, server: str) -> None:
    for path in page_urls(database):
        status, headers, body = get(server + path)
        assert status == 200, path
        text = body.decode()
        remote = [u for u in URL.findall(text) if not u.split("//", 1)[1].startswith(server.split("//")[1])]
        assert remote == [], (path, remote)
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        if not path.startswith("/static/"):
            scripts = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", text)
            assert scripts == ["/assets/plotly.min.js", "/static/dashboard.js"]
    # plotly.js is the installed package's own bundle, served by the app.
    status, headers, body = get(f"{server}/assets/plotly.min.js")
    assert status == 200 and body == PLOTLY_JS.read_bytes()
    assert headers["Content-Type"].startswith("text/javascript")


def test_every_endpoint_leaves_the_database_bytes_unchanged(database: Path) -> None:
    def fingerprint() -> tuple:
        # A WAL reader may create an empty -wal (and the -shm index) beside the file: SQLite's
        # read protocol. Committed data lives in the file and the -wal; neither may change.
        files = [database, Path(f"{database}-wal")]
        return tuple(hashlib.sha256(f.read_bytes() if f.exists() else b"").hexdigest() for f in files)

    before = fingerprint()
    search, candidates, *_ = stored(database)
    with serving(database) as base:
        for path in [*page_urls(database), "/api/searches", f"/api/search/{search.id}",
                     "/assets/plotly.min.js", "/api/search/999", "/api/candidate/999999"]:
            get(base + path)
        for candidate in candidates:
            assert get(f"{base}/api/candidate/{candidate.id}")[0] == 200
        for candidate in candidates[:3]:
            assert get(f"{base}/candidate/{candidate.id}/graph.png")[0] == 200
        # Writing methods are refused: only GET routes exist.
        request = urllib.request.Request(f"{base}/api/search/{search.id}", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 405
    assert fingerprint() == before


def test_live_update_while_a_search_writes(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    settings = config(budget=60)
    writer = SearchStore.open(path, create=True)
    record = writer.create_search("live", settings.to_dict(), settings.seed)
    errors: list[BaseException] = []

    def search() -> None:
        try:
            SearchController(writer, record, settings, InlineEvaluator(slow_evaluate)).run()
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    with serving(path) as base:
        thread = threading.Thread(target=search)
        thread.start()
        try:
            first = get_json(f"{base}/api/search/{record.id}")["total"]
            deadline = time.monotonic() + 20
            second = first
            while second <= first and time.monotonic() < deadline:
                time.sleep(0.2)
                second = get_json(f"{base}/api/search/{record.id}")["total"]
            listed = get_json(f"{base}/api/searches")["searches"][0]["total"]
        finally:
            thread.join(60)
    writer.close()
    assert not errors and not thread.is_alive()  # the dashboard never blocked the writer
    assert second > first and listed >= second
    with SearchStore.open(path, readonly=True) as store:
        assert store.summary(record.id).counts["done"] > 0


def test_cli_refuses_bad_input_with_exit_2(tmp_path: Path, database: Path) -> None:
    code, _, err = run_evonorm("dashboard", "--db", str(tmp_path / "missing.db"))
    assert code == 2 and err.startswith("error: no evonorm database") and "Traceback" not in err
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"not a database at all")
    code, _, err = run_evonorm("dashboard", "--db", str(foreign))
    assert code == 2 and "is not an evonorm database" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_evonorm("dashboard", "--db", str(database), "--port", str(port))
    assert code == 2 and err.startswith("error: ") and f"port {port}" in err and "in use" in err
    code, _, err = run_evonorm("dashboard", "--db", str(database), "--host", "no.such.host.invalid")
    assert code == 2 and err.startswith("error: cannot listen on host")


def test_cli_serves_until_interrupted(database: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "from evonorm_search.cli import main; main()", "dashboard",
         "--db", str(database), "--port", "0"],
        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
        # Ctrl-C's default action even when this test runs as a background job (which
        # inherits SIGINT ignored): then Python turns SIGINT into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = process.stderr.readline()  # type: ignore[union-attr]
        match = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        assert [s["name"] for s in get_json(match.group(1) + "api/searches")["searches"]] == ["s <1>"]
    finally:
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=30)[1]
    assert process.returncode == 0, rest
    assert "dashboard stopped" in rest


# ---- a real browser -----------------------------------------------------------------

def _chromium() -> str | None:
    from tests.test_report import _chromium as find

    return find()


class RecordingProxy:
    """An HTTP proxy that answers nothing and records every request sent to it: the
    browser uses it for every host but loopback, so anything recorded left the machine."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    self.requests.append(connection.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace"))
                except OSError:
                    self.requests.append("(unreadable request)")

    def close(self) -> None:
        self._socket.close()


# Chromium's own background services (component updates, sign-in, network time, ...) go
# through the proxy too, whatever the page does; they are not requests of the page.
BROWSER_SERVICES = ("update.googleapis.com", "content-autofill.googleapis.com",
                    "clientservices.googleapis.com", "safebrowsing.googleapis.com",
                    "optimizationguide-pa.googleapis.com", "android.clients.google.com")
BROWSER_SERVICE_DOMAINS = (".google.com", ".gvt1.com")


def browser_service(request_line: str) -> bool:
    parts = request_line.split()
    target = parts[1] if len(parts) > 1 else ""
    host = (target.split("//", 1)[1] if "//" in target else target).split("/", 1)[0].rsplit(":", 1)[0]
    return host in BROWSER_SERVICES or host.endswith(BROWSER_SERVICE_DOMAINS)


def screenshot(browser: str, url: str, shot: Path, profile: Path, proxy: RecordingProxy,
               size: tuple[int, int]) -> Image.Image:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--no-pings", "--disable-domain-reliability",
        "--disable-client-side-phishing-detection", "--disable-field-trial-config",
        "--disable-features=NetworkTimeServiceQuerying,AutofillServerCommunication,OptimizationHints,"
        "MediaRouter,Translate,InterestFeedContentSuggestions,CertificateTransparencyComponentUpdater",
        f"--proxy-server=http://127.0.0.1:{proxy.port}",
        f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={size[0]},{size[1]}",
        "--virtual-time-budget=5000", "--enable-logging=stderr", f"--screenshot={shot}", url,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.exists(), completed.stderr[-2000:]
    # The page's console: no script error, nothing refused by the Content-Security-Policy.
    console = [line for line in completed.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if re.search(r"Uncaught|Refused to|Error", line)], console
    with Image.open(shot) as image:
        return image.convert("RGB")


def chromium_dom(browser: str, url: str, profile: Path, proxy: RecordingProxy) -> str:
    """The page's DOM after its scripts ran (headless Chromium's --dump-dom)."""
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--proxy-server=http://127.0.0.1:{proxy.port}", f"--user-data-dir={profile}",
               "--virtual-time-budget=3000", "--dump-dom", url]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert "<main>" in completed.stdout, completed.stderr[-2000:]
    return completed.stdout


def share_near(image: Image.Image, color: tuple[int, int, int], tolerance: int = 30) -> float:
    """Share of the image's pixels within `tolerance` of `color` on every channel."""
    matches = sum(
        count for count, pixel in image.getcolors(maxcolors=1 << 24) or []
        if all(abs(a - b) <= tolerance for a, b in zip(pixel, color))
    )
    return matches / (image.width * image.height)


def test_pages_render_with_plots_in_headless_chromium(database: Path, server: str, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        reason = "chromium is not installed (apt-get install -y chromium); browser check skipped"
        print(reason)
        pytest.skip(reason)
    search, candidates, *_ = stored(database)
    child = next(c for c in reversed(candidates) if c.parent_id is not None and c.status == "done")
    proxy = RecordingProxy()
    try:
        dom = chromium_dom(browser, f"{server}/candidate/{child.id}", tmp_path / "p0", proxy)
        main = screenshot(browser, f"{server}/", tmp_path / "main.png", tmp_path / "p1", proxy, (1300, 1000))
        page = screenshot(browser, f"{server}/search/{search.id}", tmp_path / "search.png", tmp_path / "p2",
                          proxy, (1300, 2600))
    finally:
        proxy.close()
    # The candidate page as the script filled it in.
    title = re.search(r'<h1 id="title">(.*?)</h1>', dom, re.S)
    assert title and re.sub(r"<[^>]+>", "", title.group(1)).strip() == f"candidate {child.id}"
    formula = LayerGraph.from_json(child.graph_json).formula()
    assert f'<code id="formula" class="formula">{escape(formula)}</code>' in dom
    assert f"evonorm export {child.id} --db {database} -o layer.py" in dom
    assert f'href="/candidate/{child.parent_id}"' in dom and "null" not in unescape(dom).split("<main>")[1]
    left = [r for r in proxy.requests if not browser_service(r)]
    assert left == [], left  # the pages requested nothing but the app's own host
    # Plotly's first two trace colors; with this tolerance none of the page's other colors
    # (links, badges, the header's red) match, so these pixels are the plots' (measured on
    # a page without a plot: 0).
    blue, orange = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)
    # Main page: the comparison plot's line.
    assert share_near(main, blue, 12) > 0.0005, share_near(main, blue, 12)
    # Search page: the progress lines of both proxies and the Pareto plot's known-layer stars.
    assert share_near(page, orange, 12) > 0.0001, share_near(page, orange, 12)
    assert share_near(page, blue, 12) > 0.0002, share_near(page, blue, 12)


def test_a_store_error_during_a_request_is_a_json_error(database: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """E.g. the database replaced by a newer schema while the dashboard runs."""
    from db.errors import StoreError
    from evonorm_search.dashboard.app import create_app

    app = create_app(database)
    try:
        data = app.extensions["evonorm_dashboard"]

        def broken() -> list:
            raise StoreError("the database was replaced")

        monkeypatch.setattr(data, "searches", broken)
        reply = app.test_client().get("/api/searches")
        assert reply.status_code == 500
        assert reply.get_json() == {"error": "the database was replaced"}
    finally:
        app.extensions["evonorm_dashboard"].store.close()
