"""benchmarks/gpu_throughput.py: the smoke run works on a machine without a GPU (CPU
processes stand in for the sharing levels), and its checks catch bad results."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmark_scripts import load_benchmark

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_throughput.py"


def _script():
    return load_benchmark("gpu_throughput")


def test_smoke_run_prints_the_table_and_exits_zero() -> None:
    # Sharing 2 and the forced-CPU figure: two levels of spawned processes, one proxy.
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--sharing", "2", "--proxies", "resnet"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "NO GPU" in out
    assert re.search(r"^sharing +evals +wall s +evals/hour", out, re.M), out
    row = re.search(r"^ +2 +2 +([\d.]+) +([\d.]+) ", out, re.M)
    assert row and float(row.group(1)) > 0 and float(row.group(2)) > 0, out
    assert re.search(r"^ +CPU +1 .*evals/core-hour [\d.]+ by wall", out, re.M), out
    assert out.count(": done resnet ") == 3, out  # seeds 0 and 1, and the CPU run's seed 0
    assert "status: 3 done" in out and "OK:" in out, out


def test_checks_fail_on_rejections_bad_accuracies_and_cpu_nondeterminism() -> None:
    gt = _script()
    good = {"status": "done", "accuracies": {"resnet": 0.5}, "stage": None, "reason": None}
    level = gt.Level("cpu-procs 2", 2, device="cpu", results=[
        {**good, "seed": 0},
        {**good, "seed": 1, "accuracies": {"resnet": math.nan}},
        {**good, "seed": 2, "status": "rejected", "stage": "quality", "reason": "too low"},
    ], errors=["slot 1: process exited with code 1 before finishing"])
    problems = gt._check(level, ("resnet",))
    assert len(problems) == 3
    assert problems[0] == "cpu-procs 2 slot 1: process exited with code 1 before finishing"
    assert "seed 1" in problems[1] and "nan" in problems[1]
    assert "rejected at quality: too low" in problems[2]

    cpu = gt.Level("cpu", 1, device="cpu", results=[{**good, "seed": 0}])
    assert gt._same_seeds([level], cpu) == ([], None)
    drifted = gt.Level("cpu-procs 1", 1, device="cpu",
                       results=[{**good, "seed": 0, "accuracies": {"resnet": 0.4}}])
    problems, _ = gt._same_seeds([drifted], cpu)
    assert len(problems) == 1 and "not deterministic" in problems[0]
    # On a GPU a difference is expected: reported as the largest gap, not a failure.
    gpu = gt.Level("share 1", 1, device="cuda",
                   results=[{**good, "seed": 0, "accuracies": {"resnet": 0.45}}])
    problems, gap = gt._same_seeds([gpu], cpu)
    assert problems == [] and math.isclose(gap, 0.05)


def test_transformer_proxies_get_their_layer_and_training_settings() -> None:
    gt = _script()
    plan, _ = gt.build_plan(gt.parse_args(["--smoke", "--proxies", "vit,charlm"]))
    assert plan.layer == "layernorm" and plan.task.proxies == ("vit", "charlm")
    assert (plan.task.train.width, plan.task.train.depth, plan.task.train.learning_rate) == (64, 4, 2e-3)
    cnn, _ = gt.build_plan(gt.parse_args(["--smoke"]))
    assert cnn.layer == "bn_relu" and cnn.task.train.width == 16


@pytest.mark.slow
def test_smoke_run_of_the_transformer_proxies(tmp_path: Path) -> None:
    corpus = tmp_path / "text.txt"
    corpus.write_text("a small text for the language model to learn from. " * 500)
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--sharing", "1", "--proxies", "vit,charlm",
         "--corpus", str(corpus)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": done vit ") == 2 and "OK:" in done.stdout, done.stdout
