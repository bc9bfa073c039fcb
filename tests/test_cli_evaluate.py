"""`evonorm evaluate`: the table on stdout, progress on stderr, user errors exit 2."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest
import torch

from evonorm_search.cli import main
from evonorm_search.task import TrainSettings
from tests.cli_runner import run_evonorm

TINY = ["--steps", "6", "--quality-steps", "0", "--stability-steps", "2", "--width", "4",
        "--batch-size", "16", "--threads", "1"]


@pytest.fixture(autouse=True)
def _restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_table_and_progress(monkeypatch, capsys, tmp_path: Path) -> None:
    graph = tmp_path / "layer.json"
    monkeypatch.setattr(sys, "argv", ["evonorm", "show", "evonorm_s0", "--graph"])
    main()
    graph.write_text(capsys.readouterr().out)
    code, out, err = run_evonorm("evaluate", "bn_relu", str(graph), "--proxies",
                         "resnet,efficientnet", *TINY)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == "accuracy on the validation split (144 images), seed 0:"
    assert lines[1].split() == ["layer", "resnet", "efficientnet", "status", "seconds", "note"]
    assert lines[2].startswith("bn_relu") and "done" in lines[2]
    assert lines[3].startswith(str(graph)) and "done" in lines[3]
    assert "[bn_relu] resnet: trained" in err and "loading digits" in err
    assert "scoring on the validation split" in err


def test_json_output() -> None:
    code, out, _ = run_evonorm("evaluate", "gn_relu", "--proxies", "mobilenetv2", "--json",
                       *TINY)
    assert code == 0 and '"layer": "gn_relu"' in out and '"status": "done"' in out
    assert '"split": "validation"' in out


def test_split_test_scores_the_test_split_as_rerank_does() -> None:
    """--split test gives exactly what the re-ranking's test evaluation gives for the same
    task, and another score than the validation split; the output names the split."""
    from evonorm_search.known import get_known
    from evonorm_search.rerank import evaluate_on_test
    from evonorm_search.task import DatasetSpec, EvalTask

    no_check = [*TINY, "--quality-steps", "0", "--stability-steps", "0", "--seed", "4"]
    scores = {}
    for split in ("validation", "test"):
        code, out, err = run_evonorm("evaluate", "swish_group_rmsnorm", "--proxies", "resnet",
                                     "--split", split, "--json", *no_check)
        assert code == 0, err
        document = json.loads(out)
        assert document["split"] == split and document["status"] == "done"
        scores[split] = document["accuracies"]["resnet"]
    settings = TrainSettings(steps=6, quality_steps=0, stability_steps=0, width=4,
                             batch_size=16, threads=1)
    task = EvalTask(get_known("swish_group_rmsnorm").to_json(), ("resnet",), DatasetSpec(),
                    settings, seed=4)
    assert scores["test"] == evaluate_on_test(task).accuracies["resnet"]
    assert scores["test"] != scores["validation"]
    code, out, err = run_evonorm("evaluate", "bn_relu", "--proxies", "resnet", "--split",
                                 "test", *no_check)
    assert code == 0 and out.startswith("accuracy on the test split (359 images)"), err


def test_training_budget_defaults_to_the_data_sets(tmp_path: Path) -> None:
    """digits trains at its own budget; an npz data set at the larger-image one, unless
    the options are given."""
    import numpy as np

    images = tmp_path / "images.npz"
    rng = np.random.default_rng(0)
    np.savez(images, x=rng.integers(0, 256, (40, 4, 4, 3), dtype=np.uint8),
             y=np.arange(40) % 4)
    tiny = ["--quality-steps", "0", "--stability-steps", "0", "--width", "2",
            "--proxies", "resnet", "--json"]
    runs = {}
    for name, extra in (("digits", ["--max-train-examples", "64"]),
                        ("npz", ["--data-dir", str(images)])):
        code, out, err = run_evonorm("evaluate", "bn_relu", "--dataset", name, *tiny, *extra)
        assert code == 0, err
        runs[name] = out
    assert f'"steps": {{"resnet": {TrainSettings().steps}}}' in runs["digits"]
    assert '"steps": {"resnet": 300}' in runs["npz"]
    code, out, err = run_evonorm("evaluate", "bn_relu", "--dataset", "npz", "--data-dir",
                                 str(images), "--steps", "7", *tiny)
    assert code == 0 and '"steps": {"resnet": 7}' in out, err


def _foreign_cifar(root: Path) -> Path:
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(pickle.dumps({b"data": Path("x"), b"labels": []}))
    return root


@pytest.mark.parametrize("args, message", [
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "--download"),
    (["--dataset", "cifar10"], "needs --data-dir"),
    (["--proxies", "resnet,vgg"], "choose from"),
    (["--steps", "5", "--quality-steps", "10"], "quality_steps"),
    (["no_such_layer"], "unknown layer name"),
])
def test_user_errors_exit_2_without_traceback(args, message) -> None:
    layers = [] if args == ["no_such_layer"] else ["bn_relu"]
    code, _, err = run_evonorm("evaluate", *layers, *args)
    assert code == 2 and err.splitlines()[-1].startswith("error: ")
    assert message in err and "Traceback" not in err


def test_foreign_pickle_exits_2(tmp_path: Path) -> None:
    root = _foreign_cifar(tmp_path / "c")
    code, _, err = run_evonorm("evaluate", "bn_relu", "--dataset", "cifar10", "--data-dir",
                       str(root))
    assert code == 2 and "refusing to unpickle pathlib" in err


def test_help() -> None:
    code, out, _ = run_evonorm("evaluate", "--help")
    assert code == 0 and "--batch-size" in out and "stderr" in out
