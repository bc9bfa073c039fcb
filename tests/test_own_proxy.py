"""Searching with the user's own proxy network, `--proxies MODULE:FUNCTION` (issue 12,
item 4): a search with a builder from a test module runs inline, resumes, and runs on a
local Ray instance; `evonorm evaluate` takes it too; the worked example of
docs/own_proxy.md works as written; each bad form is refused with its message before
anything is written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from db.store import SearchStore
from tests.cli_runner import run_evonorm

ROOT = Path(__file__).resolve().parents[1]
VGG = "tests.own_proxy_models:build_vgg"
# Tiny real training; the stability and quality protocols off, so every layer trains.
TINY = ["--steps", "4", "--quality-steps", "0", "--stability-steps", "0", "--width", "4",
        "--batch-size", "16", "--max-train-examples", "64", "--population", "2",
        "--seed", "3", "--threads", "1"]


def _candidates(db: Path, name: str) -> list:
    with SearchStore.open(db, readonly=True) as store:
        search = store.get_search(name)
        return [search, store.candidates(search.id)]


def test_inline_search_with_an_own_proxy_then_resume(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    code, out, err = run_evonorm("search", "--name", "v", "--db", str(db), "--executor",
                                 "inline", "--proxies", f"resnet,{VGG}", "--budget", "2", *TINY)
    assert code == 0, err
    assert f"Pareto front (resnet, {VGG})" in out
    search, candidates = _candidates(db, "v")
    assert search.config["proxies"] == ["resnet", VGG]  # stored as given
    done = [c for c in candidates if c.status == "done"]
    assert done and all(set(c.accuracies) == {"resnet", VGG} for c in done)

    # The resume names neither the proxies nor the module: the stored name is used.
    code, _, err = run_evonorm("search", "--name", "v", "--db", str(db), "--executor",
                               "inline", "--budget", "3")
    assert code == 0 and "resuming search 'v'" in err, err
    _, resumed = _candidates(db, "v")
    assert len([c for c in resumed if c.status == "done"]) > len(done)
    assert all(set(c.accuracies) == {"resnet", VGG} for c in resumed if c.status == "done")


def test_ray_search_with_an_own_proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As docs/own_proxy.md says: the module on PYTHONPATH, which the Ray workers inherit.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT),
                                                                    os.environ.get("PYTHONPATH")])))
    db = tmp_path / "r.db"
    code, _, err = run_evonorm("search", "--name", "r", "--db", str(db), "--executor", "ray",
                               "--workers", "2", "--proxies", VGG, "--budget", "2", *TINY)
    assert code == 0, err
    assert not ray.is_initialized()
    _, candidates = _candidates(db, "r")
    evaluated = [c for c in candidates if c.status != "duplicate"]
    assert len(evaluated) == 2 and all(c.status == "done" for c in evaluated), [
        (c.status, c.reason) for c in evaluated]
    assert all(set(c.accuracies) == {VGG} for c in evaluated)


def test_evaluate_takes_an_own_proxy() -> None:
    code, out, err = run_evonorm("evaluate", "bn_relu", "--proxies", VGG, "--steps", "4",
                                 "--quality-steps", "0", "--stability-steps", "0", "--width",
                                 "4", "--max-train-examples", "64", "--json")
    assert code == 0, err
    assert '"status": "done"' in out and VGG in out


def _documented_module() -> str:
    text = (ROOT / "docs" / "own_proxy.md").read_text()
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", text, re.S)
               if "def build_vgg" in block]
    return code


def test_the_documented_example_works_as_written(tmp_path: Path) -> None:
    """my_vgg.py from the docs, in its own directory, found from there by the installed
    `evonorm` command (whose sys.path does not hold the current directory); a resume
    from a directory where it cannot be imported is refused and changes nothing."""
    project = tmp_path / "my_project"
    project.mkdir()
    (project / "my_vgg.py").write_text(_documented_module())
    evonorm = str(Path(sys.executable).with_name("evonorm"))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    db = tmp_path / "vgg.db"
    done = subprocess.run(
        [evonorm, "search", "--name", "vgg", "--db", str(db), "--executor", "inline",
         "--proxies", "resnet,my_vgg:build_vgg", "--budget", "2", *TINY],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Pareto front (resnet, my_vgg:build_vgg)" in done.stdout

    before = db.read_bytes()
    refused = subprocess.run(
        [evonorm, "search", "--name", "vgg", "--db", str(db), "--executor", "inline",
         "--budget", "3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert ("error: proxy 'my_vgg:build_vgg': no module named 'my_vgg' can be imported here"
            in refused.stderr)
    assert db.read_bytes() == before


M = "tests.own_proxy_models"


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("tests.no_such_module:build",
         "no module named 'tests.no_such_module' can be imported here (looked in sys.path "
         "and the current directory"),
        ("tests.own_proxy_broken:build",
         "importing module 'tests.own_proxy_broken' raised ModuleNotFoundError: No module "
         "named 'evonorm_missing_dependency'"),
        (f"{M}:nope", f"module '{M}' ("),
        (f"{M}:nope", "has no attribute 'nope': fix the name after the colon"),
        (f"{M}:NOT_CALLABLE", "is not callable (it is of type int)"),
        (f"{M}:two_arguments", "has the signature (norm_act, num_classes), which cannot take "
                               "the builder's five positional arguments"),
        (f"{M}:no_layer", "never calls norm_act: its model has no candidate layer"),
        (f"{M}:layer_never_run", "creates 1 layer(s) with norm_act but its forward never "
                                 "runs any of them"),
        (f"{M}:layers_in_a_list", "keeps 1 of its 1 norm_act layers outside the model's "
                                  "modules"),
        (f"{M}:raises_on_build", "raised RuntimeError: this net needs 3 input channels when "
                                 "building the model"),
        (f"{M}:wrong_output", "returns shape (4, 4) for a batch of shape (4, 1, 8, 8): it "
                              "must return logits of shape (4, 10), (batch, num_classes)"),
        ("tests.own_proxy_models", "unknown or no proxies"),
        (":build_vgg", "is not MODULE:FUNCTION"),
        ("tests/own_proxy_models.py:build_vgg", "'tests/own_proxy_models.py' is not a "
                                                "module's import path"),
    ],
)
def test_bad_own_proxies_are_refused_before_any_write(
    tmp_path: Path, proxy: str, message: str
) -> None:
    db = tmp_path / "s.db"
    with SearchStore.open(db, create=True) as store:
        store.create_search("other", {"note": "an existing search"}, 0)
    before = db.read_bytes()
    code, _, err = run_evonorm("search", "--name", "new", "--db", str(db), "--executor",
                               "inline", "--proxies", f"resnet,{proxy}", "--budget", "1", *TINY)
    assert code == 2, err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    if ":" in proxy:
        assert err.startswith(f"error: proxy '{proxy}'")
    assert db.read_bytes() == before
    missing = tmp_path / "missing.db"
    code, _, _ = run_evonorm("search", "--db", str(missing), "--executor", "inline",
                             "--proxies", proxy, *TINY)
    assert code == 2 and not missing.exists()


def test_evaluate_refuses_a_bad_own_proxy() -> None:
    code, out, err = run_evonorm("evaluate", "bn_relu", "--proxies", f"{M}:no_layer",
                                 "--steps", "4", "--quality-steps", "0")
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"error: proxy '{M}:no_layer' never calls norm_act" in err
