"""The HTML report: self-contained, valid pictures, every section, renders in a real browser."""

from __future__ import annotations

import base64
import io
import re
import shutil
import statistics
import subprocess
from html import unescape
from pathlib import Path

import pytest
from PIL import Image

from db.rerank import RerankStore
from db.store import SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.known import get_known
from evonorm_search.search.moves import mutate
from evonorm_search.report import build_report
from evonorm_search.report.data import funnel, progress_series
from evonorm_search.task import EvalResult
from tests.cli_runner import run_evonorm
from tests.test_cli_inspect import (
    GAMMA_PROXIES,
    GAMMA_TRIALS,
    gamma_cell,
    mean_and_error,
    populate_gamma,
)

PROXIES = ("resnet", "mobilenetv2", "efficientnet")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def populate(path: Path) -> dict[str, int]:
    """A search with a lineage, every kind of rejection, a duplicate, and a re-ranking."""
    import random

    store = SearchStore.open(path, create=True)
    config = SearchConfig(population=3, budget=20, init="known")
    search = store.create_search("demo <&>", config.to_dict(), seed=3)
    rng = random.Random(0)
    ids: dict[str, int] = {}
    number = 0

    def add(graph_json: str, graph_hash: str, parent: int | None, result: EvalResult | None,
            *, status: str = "pending", stage: str | None = None, duplicate_of: int | None = None) -> int:
        nonlocal number
        record = store.add_candidate(
            search.id, number=number, parent_id=parent, graph_json=graph_json,
            structural_hash=graph_hash, fingerprint=f"f{number}", seed=number, status=status,
            stage=stage, duplicate_of=duplicate_of,
        )
        number += 1
        if result is not None:
            store.mark_running(record.id)
            store.record_result(record.id, **result.to_dict())
        return record.id

    timings = {"stability": 1.5, "quality": 2.0, "training": 10.0}
    for name, scores in [("bn_relu", (0.70, 0.72, 0.69)), ("evonorm_s0", (0.75, 0.70, 0.74)),
                         ("gn_relu", (0.60, 0.61, 0.59))]:
        graph = get_known(name)
        ids[name] = add(graph.to_json(), graph.structural_hash(), None,
                        EvalResult("done", dict(zip(PROXIES, scores)), seconds=timings))
    parent = get_known("evonorm_s0")
    parent_id = ids["evonorm_s0"]
    for step in range(3):  # a chain of improving children: the lineage
        child = mutate(parent, rng, "B")
        scores = (0.76 + 0.02 * step, 0.71 + 0.02 * step, 0.75 + 0.01 * step)
        parent_id = add(child.to_json(), child.structural_hash(), parent_id,
                        EvalResult("done", dict(zip(PROXIES, scores)), seconds=timings))
        parent = child
    ids["best"] = parent_id
    for stage in ("stability", "quality"):
        child = mutate(parent, rng, "B")
        add(child.to_json(), child.structural_hash(), parent_id,
            EvalResult("rejected", stage=stage, reason=f"{stage} failed", seconds={stage: 0.5}))
    child = mutate(parent, rng, "B")
    add(child.to_json(), child.structural_hash(), parent_id, None, status="rejected", stage="fingerprint")
    add(child.to_json(), "dup", parent_id, None, status="duplicate", duplicate_of=ids["gn_relu"])
    rerank = RerankStore(store)
    run = rerank.create_run(search.id, {"seeds": 2, "train": {"steps": 900}, "split": "test"})
    for label, candidate_id, graph_json, base in [
        (f"#{ids['best']}", ids["best"], parent.to_json(), 0.8),
        ("bn_relu", None, get_known("bn_relu").to_json(), 0.7),
    ]:
        for seed, delta in ((1, 0.0), (2, 0.02)):
            rerank.record(run.id, label=label, candidate_id=candidate_id, graph_json=graph_json,
                          seed=seed, status="done", accuracies={p: base + delta for p in PROXIES})
    store.close()
    return ids


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, int]]:
    root = tmp_path_factory.mktemp("report")
    ids = populate(root / "db.sqlite")
    with SearchStore.open(root / "db.sqlite", readonly=True) as store:
        page = build_report(store, "demo <&>", root / "out")
    return page, page.read_text(encoding="utf-8"), ids


def test_every_image_is_a_valid_embedded_png(built: tuple[Path, str, dict[str, int]]) -> None:
    _, html, _ = built
    sources = re.findall(r'<img[^>]*\bsrc="([^"]*)"', html)
    # progress + 3 proxy pairs + funnel + a graph per front layer (at least one).
    assert len(sources) >= 6
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        raw = base64.b64decode(source.split(",", 1)[1], validate=True)
        assert raw.startswith(PNG_SIGNATURE)
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
        with Image.open(io.BytesIO(raw)) as image:
            image.load()
            assert image.width > 50 and image.height > 50
            assert len(image.getcolors(maxcolors=1 << 20) or range(2)) > 1  # not one flat color


def test_html_references_no_remote_resource(built: tuple[Path, str, dict[str, int]]) -> None:
    _, html, _ = built
    assert not re.search(r"""\b(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"@import", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", html, re.I)
    assert not re.search(r"<(?:script|link|iframe|object|embed)\b", html, re.I)
    assert not re.search(r"""\b(?:src|href)\s*=\s*["'](?!data:)""", html, re.I)


def test_every_section_and_value_is_present_and_escaped(built: tuple[Path, str, dict[str, int]]) -> None:
    _, html, ids = built
    assert "demo &lt;&amp;&gt;" in html and "demo <&>" not in html
    text = unescape(re.sub(r"<[^>]+>", " ", html))
    for title in ("Settings", "Progress", "Pareto front", "Rejection funnel", "Re-ranking",
                  "Lineage of the best layer"):
        assert title in text
    assert "re-ranking means (TEST split" in text  # known layers marked from the re-ranking
    assert "± 0.0141" in text  # std of (0.80, 0.82)
    # Lineage: best, its parent chain back to evonorm_s0, an initial member.
    lineage = text[text.index("Lineage of the best layer"):]
    assert f"mutated from {ids['evonorm_s0']}" in lineage and "initial member" in lineage
    assert get_known("evonorm_s0").formula() in lineage


def test_funnel_and_progress_numbers() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        populate(Path(directory) / "db.sqlite")
        with SearchStore.open(Path(directory) / "db.sqlite", readonly=True) as store:
            candidates = store.candidates(store.get_search("demo <&>").id)
    rows = {row.stage: row for row in funnel(candidates)}
    assert rows["proposed"].removed == 10
    assert rows["fingerprint duplicate"].removed == 1
    assert rows["fingerprint NaN/inf"].removed == 1
    assert rows["stability"].removed == 1 and rows["quality"].removed == 1
    assert rows["trained in full"].removed == 6
    assert rows["training"].seconds == pytest.approx(60.0)
    assert rows["stability"].seconds == pytest.approx(6 * 1.5 + 0.5)
    series = progress_series(candidates, PROXIES, population=3)
    # Duplicates and fingerprint rejections do not count as evaluated.
    assert series.evaluated == list(range(1, 9))
    assert series.best["resnet"][-1] == pytest.approx(0.80)
    assert series.best["resnet"] == sorted(series.best["resnet"])
    assert series.median["resnet"][2] == pytest.approx(0.70)  # of 0.70, 0.75, 0.60


def test_reevaluated_and_stopped_candidates(tmp_path: Path) -> None:
    """Front and lineage show mean ± standard error and the seeds; the funnel counts the
    candidate stopped at the hurdle as its own step; progress keeps the means."""
    ids = populate_gamma(tmp_path / "db.sqlite")
    with SearchStore.open(tmp_path / "db.sqlite", readonly=True) as store:
        candidates = store.candidates(store.get_search("gamma").id)
        html = build_report(store, "gamma", tmp_path / "out").read_text(encoding="utf-8")
    rows = {row.stage: row for row in funnel(candidates)}
    assert rows["stopped at the hurdle"].removed == 1 and rows["quality"].removed == 1
    assert rows["trained in full"].removed == 2 and rows["proposed"].removed == 4
    stages = [row.stage for row in funnel(candidates)]
    assert stages.index("quality") < stages.index("stopped at the hurdle") < stages.index("training")
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    # The front table's row of the re-evaluated candidate: id, number, scores, mean, seeds.
    front = text[text.index("Pareto front"):text.index("Rejection funnel")]
    means = [statistics.mean(trial[1 + i] for trial in GAMMA_TRIALS) for i in range(len(GAMMA_PROXIES))]
    row = (f"{ids['reevaluated']} 0 " + " ".join(gamma_cell(p) for p in GAMMA_PROXIES)
           + f" {statistics.mean(means):.4f} 3 ")
    assert row in front, front
    assert f"{ids['single']} 1 0.7000 0.4000 0.5500 1 " in front
    funnel_text = text[text.index("Rejection funnel"):text.index("Re-ranking")]
    assert "stopped at the hurdle 1 " in funnel_text
    assert "Re-evaluations of front members with further seeds: 3 (done 2, failed 1)" in funnel_text
    lineage_text = text[text.index("Lineage of the best layer"):]
    mean, error = mean_and_error([trial[1] for trial in GAMMA_TRIALS])
    assert f"resnet {mean:.3f} ± {error:.3f}" in lineage_text
    series = progress_series(candidates, GAMMA_PROXIES, population=3)
    assert series.best["mobilenetv2"][-1] == pytest.approx(means[1])  # the mean, not trial 0
    assert series.evaluated == [1, 2, 3, 4]


def test_report_of_an_empty_search_and_bad_output(tmp_path: Path) -> None:
    with SearchStore.open(tmp_path / "db.sqlite", create=True) as store:
        store.create_search("empty", SearchConfig().to_dict(), seed=0)
        page = build_report(store, "empty", tmp_path / "out")
        html = page.read_text(encoding="utf-8")
        assert "No candidate has finished" in html and "No re-ranking yet" in html
        assert "no known layer was evaluated" in html
        (tmp_path / "file").write_text("x")
        from evonorm_search.errors import EvonormError

        with pytest.raises(EvonormError, match="is a file"):
            build_report(store, "empty", tmp_path / "file")


def test_cli_report(tmp_path: Path) -> None:
    with SearchStore.open(tmp_path / "db.sqlite", create=True) as store:
        store.create_search("empty", SearchConfig().to_dict(), seed=0)

    code, out, _ = run_evonorm("report", "empty", "--db", str(tmp_path / "db.sqlite"), "-o", str(tmp_path / "r"))
    assert code == 0 and out.strip() == str(tmp_path / "r" / "index.html")
    code, _, err = run_evonorm("report", "nope", "--db", str(tmp_path / "db.sqlite"), "-o", str(tmp_path / "r"))
    assert code == 2 and err.startswith("error: ") and "nope" in err and "Traceback" not in err


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def test_renders_in_headless_chromium(built: tuple[Path, str, dict[str, int]], tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        reason = "chromium is not installed (apt-get install -y chromium); browser check skipped"
        print(reason)
        pytest.skip(reason)
    page, _, _ = built
    shot = tmp_path / "shot.png"
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,2400",
        f"--screenshot={shot}", page.resolve().as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.exists(), completed.stderr[-2000:]
    with Image.open(shot) as image:
        image = image.convert("L")
        assert image.size == (1200, 2400)
        histogram = image.histogram()
        non_white = sum(histogram[:240]) / sum(histogram)
        # Text, tables and plots cover a good part of the page; a blank page is all white.
        assert non_white > 0.02, non_white
        dark = sum(histogram[:100]) / sum(histogram)
        assert dark > 0.002, dark
