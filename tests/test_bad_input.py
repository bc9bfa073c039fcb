"""Bad input on every command: refused with `error: ...` and exit 2, no traceback, nothing
written (the database absent when it was absent, its bytes unchanged when it existed,
no file appearing in the working directory), and before any training.

One row per bad input: the command line (placeholders name the fixture files below),
the state of the database it points at, and a fragment of the expected message.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from db.store import SearchStore
from evonorm_search.config import SearchConfig
from evonorm_search.known import get_known
from tests.cli_runner import run_evonorm

GRAPH = '{"format": "evonorm-layer-graph", "version": 1, "nodes": %s}'
# A search that would train if it got that far: one small proxy, inline.
SEARCH = ["search", "--db", "{db}", "--executor", "inline", "--proxies", "resnet"]
RAY = ["search", "--db", "{db}", "--executor", "ray", "--proxies", "resnet"]
EVALUATE = ["evaluate", "bn_relu", "--proxies", "resnet"]
TSEARCH = ["search", "--db", "{db}", "--executor", "inline", "--space", "T"]
NPZ = [*SEARCH, "--dataset", "npz", "--data-dir"]
HUGE = str(2**64)


def _graph_files(root: Path) -> None:
    texts = {
        "empty.json": "",
        "not_json.json": "{oops",
        "list.json": "[1, 2]",
        "null.json": "null",
        "wrong_format.json": '{"format": "x", "version": 1, "nodes": []}',
        "version_text.json": '{"format": "evonorm-layer-graph", "version": "1", "nodes": []}',
        "no_nodes.json": GRAPH % "[]",
        "unknown_op.json": GRAPH % '[{"op": "nope", "inputs": [0]}]',
        "float_input.json": GRAPH % '[{"op": "neg", "inputs": [0.0]}]',
        "deep_list.json": "[" * 100_000 + "]" * 100_000,
        "deep_object.json": '{"a": ' * 100_000 + "1" + "}" * 100_000,
        "deep_nodes.json": GRAPH % ("[" * 50_000 + "]" * 50_000),
        "huge.json": " " * 2_000_000,
    }
    for name, text in texts.items():
        (root / name).write_text(text)
    (root / "latin1.json").write_bytes(b"\xff\xfe\x00")
    (root / "folder.json").mkdir()


def _npz_files(root: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    y = np.arange(40) % 4
    arrays = {
        "one_class": {"x": x, "y": np.zeros(40, dtype=np.int64)},
        "no_y": {"x": x},
        "float_x": {"x": x.astype(np.float32), "y": y},
        "flat_x": {"x": x[..., 0], "y": y},
        "no_channels": {"x": x[..., :0], "y": y},
        "no_images": {"x": x[:0], "y": y[:0]},
        "oblong": {"x": x[:, :, :6], "y": y},
        "float_y": {"x": x, "y": y.astype(np.float32)},
        "short_y": {"x": x, "y": y[:39]},
        "column_y": {"x": x, "y": y[:, None]},
        "negative_y": {"x": x, "y": y - 1},
        "id_labels": {"x": x, "y": y + 10**12},
        "three_images": {"x": x[:3], "y": y[:3] % 2},
        # Loading an object array unpickles it, which can run code: refused unread.
        "pickled": {"x": np.array([object()] * 40, dtype=object), "y": y},
    }
    for name, values in arrays.items():
        np.savez(root / f"{name}.npz", **values)
    (root / "text.npz").write_text("not an archive")
    with (root / "single_array.npz").open("wb") as handle:
        np.save(handle, x)


def _settings_files(root: Path) -> None:
    """TOML settings files for `search --config` (and a B-space layer for `--init`)."""
    texts = {
        "bad_toml.toml": 'budget = 3\nspace = "S\npopulation = 4\n',
        "misspelt.toml": "populaton = 3\n",
        "underscore.toml": "quality_steps = 3\n",
        "section.toml": "[train]\nsteps = 3\n",
        "nested_config.toml": 'config = "other.toml"\n',
        "float_population.toml": "population = 1.5\n",
        "bool_population.toml": "population = true\n",
        "text_rate.toml": 'learning-rate = "fast"\n',
        "int_download.toml": "download = 1\n",
        "text_macros.toml": 'scan-macros = "yes"\n',
        "bool_macros.toml": 'scan-macros = true\n',
        "bad_strategy.toml": 'strategy = "annealing"\n',
        "bad_fitness.toml": 'fitness = "log"\n',
        "number_space.toml": "space = 3\n",
        "numbers_mutations.toml": "mutations = [1, 2]\n",
        "empty_mutations.toml": "mutations = []\n",
        "date_name.toml": "name = 2024-01-01\n",
        "negative_budget.toml": "budget = -1\n",
        "bad_mutation.toml": 'mutations = ["node", "grow"]\n',
        "stored_conflict.toml": 'name = "t"\npopulation = 3\n',
        "huge.toml": "#" * 2_000_000,
    }
    for name, text in texts.items():
        (root / name).write_text(text)
    (root / "latin1.toml").write_bytes(b"name = '\xff'\n")
    (root / "b_layer.json").write_text(get_known("bn_relu").to_json())


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad_input")
    _graph_files(root)
    _npz_files(root)
    _settings_files(root)
    # A stored search "t" with one finished candidate, written without training.
    with SearchStore.open(root / "existing.db", create=True) as store:
        config = SearchConfig()
        search = store.create_search("t", config.to_dict(), config.seed)
        graph = get_known("bn_relu")
        candidate = store.add_candidate(search.id, number=0, parent_id=None,
                                        graph_json=graph.to_json(),
                                        structural_hash=graph.structural_hash(),
                                        fingerprint=None, seed=1)
        store.mark_running(candidate.id)
        store.record_result(candidate.id, status="done", accuracies={proxy: 0.5 for proxy in config.proxies})
    return root


def row(args: list[str], message: str, db: str = "absent", *, id: str) -> object:
    """A table row: `db` is "absent" (no file at {db}) or "existing" (a stored search)."""
    return pytest.param(args, message, db, id=id)


TABLE = [
    # The five.
    row([*NPZ, "{files}/one_class.npz"], "a classifier needs images of at least 2 classes",
        id="npz-single-class"),
    row([*SEARCH, "--learning-rate", "nan"], "learning_rate must be a finite number above 0, got nan",
        id="search-lr-nan"),
    row([*SEARCH, "--learning-rate", "-0.1"], "learning_rate must be a finite number above 0",
        id="search-lr-negative"),
    row([*SEARCH, "--quality-threshold", "1.5"], "quality_threshold must be an accuracy in [0, 1]",
        id="search-quality-threshold-above-1"),
    row(["show", "{files}/deep_list.json"], "nested too deeply", id="show-deep-json"),
    # search: every numeric option's range.
    row([*SEARCH, "--learning-rate", "inf"], "learning_rate must be a finite number above 0",
        id="search-lr-inf"),
    row([*SEARCH, "--learning-rate", "0"], "learning_rate must be a finite number above 0",
        id="search-lr-zero"),
    row([*SEARCH, "--quality-threshold", "-0.1"], "quality_threshold must be an accuracy",
        id="search-quality-threshold-negative"),
    row([*SEARCH, "--quality-threshold", "nan"], "quality_threshold must be an accuracy",
        id="search-quality-threshold-nan"),
    row([*SEARCH, "--validation-fraction", "0"], "validation fraction must be in (0, 1)",
        id="search-validation-fraction-0"),
    row([*SEARCH, "--validation-fraction", "1"], "validation fraction must be in (0, 1)",
        id="search-validation-fraction-1"),
    row([*SEARCH, "--validation-fraction", "nan"], "validation fraction must be in (0, 1)",
        id="search-validation-fraction-nan"),
    row([*SEARCH, "--image-size", "0"], "image size must be a positive number",
        id="search-image-size-0"),
    row([*SEARCH, "--image-size", "100000"], "more than this machine's",
        id="search-image-size-beyond-memory"),
    row([*SEARCH, "--max-train-examples", "0"], "max train examples must be positive",
        id="search-max-train-examples-0"),
    row([*SEARCH, "--threads", "0"], "threads must be in 1..1024", id="search-threads-0"),
    row([*SEARCH, "--threads", "100000"], "threads must be in 1..1024", id="search-threads-huge"),
    row([*SEARCH, "--budget", "-3"], "budget must be a positive", id="search-budget-negative"),
    row([*SEARCH, "--population", HUGE], "population must be at least 2 (and at most",
        id="search-population-huge"),
    row([*SEARCH, "--seed", "-1"], "seed must be >= 0", id="search-seed-negative"),
    row([*SEARCH, "--seed", HUGE], "seed must be >= 0 (and at most 9223372036854775807)",
        id="search-seed-huge"),
    row([*SEARCH, "--num-nodes", "11"], "num_nodes must be in 1..10", id="search-num-nodes-11"),
    row([*SEARCH, "--steps", "0"], "steps must be >= 1", id="search-steps-0"),
    row([*SEARCH, "--batch-size", "0"], "batch_size must be >= 1", id="search-batch-size-0"),
    row([*SEARCH, "--width", "0"], "width must be >= 1", id="search-width-0"),
    row([*SEARCH, "--width", HUGE], "width must be at most 1024", id="search-width-huge"),
    row([*SEARCH, "--depth", "1000"], "depth must be at most 100", id="search-depth-huge"),
    row([*SEARCH, "--steps", "5", "--quality-steps", "6"], "quality_steps must be in 0..steps (5)",
        id="search-quality-steps-above-steps"),
    row([*SEARCH, "--stability-steps", "-1"], "stability step counts must be >= 0",
        id="search-stability-steps-negative"),
    row([*SEARCH, "--budget", "abc"], "'abc' is not a valid integer", id="search-budget-not-a-number"),
    row([*RAY, "--cpus-per-eval", "0"], "--cpus-per-eval must be above 0", id="search-cpus-0"),
    row([*RAY, "--cpus-per-eval", "nan"], "--cpus-per-eval must be above 0", id="search-cpus-nan"),
    row([*RAY, "--cpus-per-eval", "inf"], "--cpus-per-eval must be above 0 and finite",
        id="search-cpus-inf"),
    row([*RAY, "--gpus-per-eval", "-1"], "--gpus-per-eval must be 0 or more", id="search-gpus-negative"),
    row([*RAY, "--gpus-per-eval", "inf"], "--gpus-per-eval must be 0 or more and finite",
        id="search-gpus-inf"),
    row([*RAY, "--gpus-per-eval", "1.5"], "--gpus-per-eval above 1 must be a whole number",
        id="search-gpus-fraction-above-1"),
    # search: the .npz data set's malformed forms.
    row([*SEARCH, "--dataset", "npz"], "the npz data set needs --data-dir", id="npz-no-data-dir"),
    row([*NPZ, "{files}/missing.npz"], "no .npz file at", id="npz-missing"),
    row([*NPZ, "{files}"], "(a directory)", id="npz-directory"),
    row([*NPZ, "{files}/text.npz"], "not a zip archive", id="npz-text-file"),
    row([*NPZ, "{files}/single_array.npz"], "not a zip archive", id="npz-single-npy-array"),
    row([*NPZ, "{files}/pickled.npz"], "Object arrays cannot be loaded when allow_pickle=False",
        id="npz-pickled-object-array"),
    row([*NPZ, "{files}/no_y.npz"], "must contain arrays 'x' and 'y'", id="npz-no-y"),
    row([*NPZ, "{files}/float_x.npz"], "'x' must be a non-empty uint8 array", id="npz-float-x"),
    row([*NPZ, "{files}/flat_x.npz"], "'x' must be a non-empty uint8 array", id="npz-3d-x"),
    row([*NPZ, "{files}/no_channels.npz"], "'x' must be a non-empty uint8 array", id="npz-0-channels"),
    row([*NPZ, "{files}/no_images.npz"], "'x' must be a non-empty uint8 array", id="npz-0-images"),
    row([*NPZ, "{files}/oblong.npz"], "images must be square", id="npz-not-square"),
    row([*NPZ, "{files}/float_y.npz"], "'y' must be 40 integer labels", id="npz-float-y"),
    row([*NPZ, "{files}/short_y.npz"], "'y' must be 40 integer labels", id="npz-length-mismatch"),
    row([*NPZ, "{files}/column_y.npz"], "'y' must be 40 integer labels", id="npz-2d-y"),
    row([*NPZ, "{files}/negative_y.npz"], "labels must lie in 0..K-1",
        id="npz-negative-label"),
    row([*NPZ, "{files}/id_labels.npz"], "class indices with K at most 100000",
        id="npz-huge-label"),
    row([*NPZ, "{files}/three_images.npz"], "too few images", id="npz-too-few-images"),
    row([*SEARCH, "--dataset", "cifar10"], "cifar10 needs --data-dir", id="cifar-no-data-dir"),
    row([*SEARCH, "--dataset", "cifar10", "--data-dir", "{files}/missing"], "no CIFAR-10 data in",
        id="cifar-missing-dir"),
    # search: the engine's options (issue 16).
    row([*SEARCH, "--engine", "nope"], "Invalid value for '--engine'", id="search-engine-unknown"),
    row([*SEARCH, "--mutations", "wrap,grow"], "unknown or no mutation operators ['grow']",
        id="search-mutations-unknown"),
    row([*SEARCH, "--islands", "0"], "islands must be in 1..4", id="search-islands-0"),
    row([*SEARCH, "--islands", "5"], "islands must be in 1..4 (each island holds",
        id="search-islands-beyond-population"),
    row([*SEARCH, "--islands", "2", "--migration-rate", "1.5"],
        "migration_rate must be a share in [0, 1]", id="search-migration-rate-above-1"),
    row([*SEARCH, "--migration-rate", "nan"], "migration_rate must be a share in [0, 1]",
        id="search-migration-rate-nan"),
    row([*SEARCH, "--migration-rate", "0.1"], "it needs --islands 2 or more",
        id="search-migration-without-islands"),
    row([*SEARCH, "--island-restart", "-1"], "island_restart must be a whole number >= 0",
        id="search-island-restart-negative"),
    row([*SEARCH, "--elites", "-1"], "elites must be a whole number >= 0", id="search-elites-negative"),
    row([*SEARCH, "--islands", "2", "--elites", "5"], "elites must be at most the island size 4",
        id="search-elites-beyond-island"),
    row([*SEARCH, "--scan-after", "-5"], "scan_after must be a whole number >= 0",
        id="search-scan-after-negative"),
    row([*SEARCH, "--scan-elites", "0"], "scan_elites must be >= 1", id="search-scan-elites-0"),
    row([*SEARCH, "--scan-depth", "-1"], "scan_depth must be a whole number >= 0",
        id="search-scan-depth-negative"),
    row([*SEARCH, "--engine", "memetic-blocks", "--scan-depth", "0"],
        "scan_sweep sweeps the macro edits of the layers the scan reaches down the ranking",
        id="search-scan-sweep-without-depth"),
    row([*SEARCH, "--engine", "memetic-log", "--scan-deferred", "last"],
        "scan_deferred 'last' walks the deferred families after the sweep: it needs "
        "--scan-sweep", id="search-scan-deferred-last-without-sweep"),
    row([*SEARCH, "--scan-deferred", "first"], "Invalid value for '--scan-deferred'",
        id="search-scan-deferred-unknown"),
    row([*SEARCH, "--scan-ties", "first"], "Invalid value for '--scan-ties'",
        id="search-scan-ties-unknown"),
    row([*SEARCH, "--scan-order", "singles-first"], "Invalid value for '--scan-order'",
        id="search-scan-order-unknown"),
    row([*SEARCH, "--scan-macros", "guard,wrap"],
        "unknown scan macro(s) 'wrap': use any of normalize, skip, guard, gate",
        id="search-scan-macros-unknown"),
    row([*SEARCH, "--scan-macros", "gate,gate"], "name one twice", id="search-scan-macros-twice"),
    row([*SEARCH, "--scan-limit", "-1"], "scan_limit must be a whole number >= 0",
        id="search-scan-limit-negative"),
    row([*SEARCH, "--adaptive-moves", "2"], "adaptive_moves must be a strength in [0, 1.0]",
        id="search-adaptive-moves-above-1"),
    row([*SEARCH, "--adaptive-moves", "nan"], "adaptive_moves must be a strength",
        id="search-adaptive-moves-nan"),
    row([*SEARCH, "--size-penalty", "-1e-4"], "size_penalty must be in [0, 1)",
        id="search-size-penalty-negative"),
    row([*SEARCH, "--size-penalty", "inf"], "size_penalty must be in [0, 1)",
        id="search-size-penalty-inf"),
    row([*SEARCH, "--fitness", "log"], "Invalid value for '--fitness'",
        id="search-fitness-unknown"),
    row([*SEARCH, "--config", "{files}/bad_fitness.toml"],
        "must be one of log_error, score, got 'log'",
        id="search-config-fitness-unknown"),
    row([*SEARCH[:5], "--name", "t", "--engine", "memetic"],
        "engine: stored 'paper', requested 'memetic'", "existing", id="resume-other-engine"),
    # search on an existing database: a resume and a new search, refused unwritten.
    row([*SEARCH[:5], "--name", "t", "--threads", "0"], "threads must be in 1..1024", "existing",
        id="resume-threads-0"),
    row([*SEARCH[:5], "--name", "t", "--learning-rate", "nan"],
        "train.learning_rate: stored 0.05, requested nan", "existing", id="resume-lr-nan"),
    row([*SEARCH, "--name", "new", "--learning-rate", "nan"], "learning_rate must be a finite",
        "existing", id="new-search-beside-others-lr-nan"),
    # search --config FILE: the file, its keys, their types; then the values' own checks.
    row([*SEARCH, "--config", "{files}/missing.toml"], "no settings file at", id="config-missing"),
    row([*SEARCH, "--config", "{files}"], "is a directory", id="config-directory"),
    row([*SEARCH, "--config", "{files}/huge.toml"], "too large for a settings file",
        id="config-huge"),
    row([*SEARCH, "--config", "{files}/latin1.toml"], "is not UTF-8 text", id="config-not-utf8"),
    row([*SEARCH, "--config", "{files}/bad_toml.toml"], "not valid TOML: Illegal character "
        "'\\n' (at line 2, column 11)", id="config-bad-toml-line-number"),
    row([*SEARCH, "--config", "{files}/misspelt.toml"],
        "unknown setting 'populaton' in", id="config-unknown-key"),
    row([*SEARCH, "--config", "{files}/misspelt.toml"], "did you mean 'population'?",
        id="config-unknown-key-close-match"),
    row([*SEARCH, "--config", "{files}/underscore.toml"], "did you mean 'quality-steps'?",
        id="config-underscore-key"),
    row([*SEARCH, "--config", "{files}/section.toml"], "without [sections]", id="config-table"),
    row([*SEARCH, "--config", "{files}/nested_config.toml"], "cannot name another one",
        id="config-names-a-config"),
    row([*SEARCH, "--config", "{files}/float_population.toml"],
        "float_population.toml' must be an integer, got 1.5 (a float)",
        id="config-float-for-int"),
    row([*SEARCH, "--config", "{files}/bool_population.toml"], "must be an integer, got True",
        id="config-bool-for-int"),
    row([*SEARCH, "--config", "{files}/text_rate.toml"], "learning-rate in", id="config-text-for-float"),
    row([*SEARCH, "--config", "{files}/text_rate.toml"], "must be a number, got 'fast'",
        id="config-text-for-float-message"),
    row([*SEARCH, "--config", "{files}/int_download.toml"], "must be true or false, got 1",
        id="config-int-for-flag"),
    row([*SEARCH, "--config", "{files}/text_macros.toml"], "unknown scan macro(s) 'yes'",
        id="config-text-for-scan-macros"),
    row([*SEARCH, "--config", "{files}/bool_macros.toml"],
        "must be a string or an array of strings, got True", id="config-bool-for-scan-macros"),
    row([*SEARCH, "--config", "{files}/bad_strategy.toml"],
        "must be one of evolution, random, got 'annealing'", id="config-bad-choice"),
    row([*SEARCH, "--config", "{files}/number_space.toml"], "must be a string, got 3",
        id="config-number-for-choice"),
    row([*SEARCH, "--config", "{files}/numbers_mutations.toml"],
        "must be a non-empty array of strings", id="config-array-of-numbers"),
    row([*SEARCH, "--config", "{files}/empty_mutations.toml"],
        "must be a non-empty array of strings", id="config-empty-array"),
    row([*SEARCH, "--config", "{files}/date_name.toml"], "must be a string, got datetime.date",
        id="config-date-for-string"),
    row([*SEARCH, "--config", "{files}/negative_budget.toml"], "budget must be a positive",
        id="config-value-checked-like-the-flag"),
    row([*SEARCH, "--config", "{files}/bad_mutation.toml"], "grow", id="config-unknown-mutation"),
    row([*SEARCH[:3], "--config", "{files}/stored_conflict.toml"],
        "population: stored 8, requested 3", "existing", id="config-conflicts-with-stored"),
    # search --init: layer names and graph files, checked (and read) before anything is written.
    row([*SEARCH, "--init", "{files}/missing.json"], "--init: layer graph file", id="init-missing-file"),
    row([*SEARCH, "--init", "known,{files}/unknown_op.json"], "unknown op 'nope'",
        id="init-invalid-graph-file"),
    row([*SEARCH, "--init", "known,{files}/deep_nodes.json"], "nested too deeply",
        id="init-deep-graph-file"),
    row([*SEARCH, "--init", "{files}/folder.json"], "is not a file", id="init-directory"),
    row([*SEARCH, "--init", "random,known"], "--init random starts from random layers only",
        id="init-random-with-others"),
    row([*SEARCH, "--init", " , "], "init is empty", id="init-empty"),
    row([*SEARCH, "--space", "S", "--init", "evonorm_s0,{files}/b_layer.json"],
        "S space excludes (no batch statistics): drop them or use --space B",
        id="init-file-outside-the-space"),
    row([*SEARCH[:5], "--name", "t", "--init", "{files}/b_layer.json"],
        "init: stored 'known', requested", "existing", id="init-file-conflicts-with-stored"),
    # evaluate --split.
    row([*EVALUATE, "--split", "train"], "Invalid value for '--split'", id="evaluate-split-unknown"),
    row(["evaluate", "bn_relu", "--split", "test", "--task", "planted", "--target", "evonorm_s0"],
        "--split only applies to proxy training", id="evaluate-split-planted"),
    # evaluate: its numeric options and layer files.
    row([*EVALUATE, "--lr", "nan"], "learning_rate must be a finite number above 0", id="evaluate-lr-nan"),
    row([*EVALUATE, "--lr", "-1"], "learning_rate must be a finite number above 0",
        id="evaluate-lr-negative"),
    row([*EVALUATE, "--lr", "0"], "learning_rate must be a finite number above 0", id="evaluate-lr-0"),
    row([*EVALUATE, "--threads", "0"], "threads must be in 1..1024", id="evaluate-threads-0"),
    row([*EVALUATE, "--eval-batches", "0"], "eval_batches must be >= 1", id="evaluate-eval-batches-0"),
    row([*EVALUATE, "--depth", "0"], "depth must be >= 1", id="evaluate-depth-0"),
    row([*EVALUATE, "--image-size", "-2"], "image size must be a positive number",
        id="evaluate-image-size-negative"),
    row([*EVALUATE, "--max-train-examples", "0"], "max train examples must be positive",
        id="evaluate-max-train-examples-0"),
    row([*EVALUATE, "--dataset", "npz", "--data-dir", "{files}/one_class.npz"],
        "at least 2 classes", id="evaluate-npz-single-class"),
    row(["evaluate", "{files}/deep_nodes.json"], "nested too deeply", id="evaluate-deep-nodes"),
    row(["evaluate", "{files}/unknown_op.json"], "unknown op 'nope'", id="evaluate-unknown-op"),
    # Transformer searches: layers and proxies of the wrong kind, corpora that cannot be read.
    row([*TSEARCH, "--init", "layernorm,bn_relu"], "--init layers bn_relu use ops the T space excludes",
        id="t-search-cnn-layer"),
    row([*TSEARCH, "--init", "repbn"], "use ops the T space excludes", id="t-search-batch-layer"),
    row([*TSEARCH, "--space", "TB", "--proxies", "vit,charlm"], "charlm is a causal character-level Transformer language "
        "model: statistics over batch", id="t-search-token-axis-space-for-charlm"),
    row([*TSEARCH, "--proxies", "resnet"], "space T holds Transformer norm layers", id="t-search-cnn-proxy"),
    row([*SEARCH, "--space", "S", "--proxies", "vit"], "proxy vit (pre-norm Vision Transformer",
        id="s-search-transformer-proxy"),
    row([*TSEARCH, "--proxies", "vitt"], "unknown or no proxies ['vitt']", id="t-search-unknown-proxy"),
    row([*TSEARCH, "--corpus", "{files}/missing.txt"], "missing.txt' is missing", id="t-search-corpus-missing"),
    row([*TSEARCH, "--corpus", "{files}/latin1.json"], "is not UTF-8 text", id="t-search-corpus-not-utf8"),
    row([*TSEARCH, "--corpus", "{files}/empty.json"], "too few for a", id="t-search-corpus-empty"),
    row(["evaluate", "repbn", "--proxies", "charlm"], "which proxy charlm forbids",
        id="evaluate-token-axis-layer-for-charlm"),
    row(["evaluate", "layernorm", "--proxies", "vit,resnet"], "mix CNN norm-activation and Transformer",
        id="evaluate-mixed-proxies"),
    row(["evaluate", "layernorm", "--proxies", "charlm", "--corpus", "{files}/folder.json"],
        "is a directory", id="evaluate-corpus-directory"),
    # show / export: layer graph files and candidate ids.
    row(["show", "{files}/deep_object.json"], "nested too deeply", id="show-deep-object"),
    row(["export", "{files}/deep_list.json"], "nested too deeply", id="export-deep-json"),
    row(["show", "{files}/empty.json"], "not valid JSON", id="show-empty-file"),
    row(["show", "{files}/not_json.json"], "not valid JSON", id="show-not-json"),
    row(["show", "{files}/list.json"], "must be a JSON object, got list", id="show-json-list"),
    row(["show", "{files}/null.json"], "must be a JSON object, got NoneType", id="show-json-null"),
    row(["show", "{files}/wrong_format.json"], "unknown graph format 'x'", id="show-wrong-format"),
    row(["show", "{files}/version_text.json"], "graph version must be an integer",
        id="show-version-text"),
    row(["show", "{files}/no_nodes.json"], "needs at least one intermediate node", id="show-no-nodes"),
    row(["show", "{files}/unknown_op.json"], "unknown op 'nope'", id="show-unknown-op"),
    row(["show", "{files}/float_input.json"], "input 0.0 is not an integer node index",
        id="show-float-input"),
    row(["show", "{files}/huge.json"], "too large for a layer graph", id="show-huge-file"),
    row(["show", "{files}/latin1.json"], "not UTF-8", id="show-not-utf8"),
    row(["show", "{files}/folder.json"], "is not a file", id="show-directory"),
    row(["show", "{files}/missing.json"], "does not exist", id="show-missing-file"),
    row(["show", HUGE, "--db", "{db}"], f"no candidate with id {HUGE}", "existing",
        id="show-id-beyond-sqlite"),
    row(["show", "7", "--db", "{db}"], "no evonorm database at", id="show-id-without-database"),
    # rerank / report.
    row(["rerank", "t", "--db", "{db}", "--top", "0"], "--top must be at least 1", "existing",
        id="rerank-top-0"),
    row(["rerank", "t", "--db", "{db}", "--seeds", "0"], "--seeds must be at least 1", "existing",
        id="rerank-seeds-0"),
    row(["rerank", "t", "--db", "{db}", "--seeds", HUGE], "(and at most 1000)", "existing",
        id="rerank-seeds-huge"),
    row(["rerank", "t", "--db", "{db}", "--steps", "-5"], "--steps must be a positive number",
        "existing", id="rerank-steps-negative"),
    row(["rerank", "t", "--db", "{db}", "--workers", "0"], "--workers must be at least 1",
        "existing", id="rerank-workers-0"),
    row(["rerank", "t", "--db", "{db}", "--baselines", "nope"], "unknown layer name 'nope'",
        "existing", id="rerank-unknown-baseline"),
    row(["rerank", "nope", "--db", "{db}"], "no search named 'nope'", "existing",
        id="rerank-unknown-search"),
    row(["rerank", "t", "--db", "{db}"], "no evonorm database at", id="rerank-no-database"),
    row(["report", "nope", "--db", "{db}", "-o", "out"], "no search named 'nope'", "existing",
        id="report-unknown-search"),
    row(["report", "t", "--db", "{db}", "-o", "out"], "no evonorm database at", id="report-no-database"),
    row(["report", "t", "--db", "{db}", "-o", "{files}/text.npz"], "is a file", "existing",
        id="report-output-is-a-file"),
]


@pytest.mark.parametrize(("args", "message", "db_state"), TABLE)
def test_bad_input_is_refused_before_anything_is_written(
    files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    args: list[str], message: str, db_state: str,
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # a command that wrote its default files would leave them here
    db = tmp_path / "search.db"
    if db_state == "existing":
        shutil.copyfile(files / "existing.db", db)
    before = db.read_bytes() if db.exists() else None

    code, out, err = run_evonorm(*(arg.format(db=db, files=files) for arg in args))

    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    # Ours: `error: ...`; click's own (a value of the wrong type): `Error: Invalid value ...`.
    last = err.strip().splitlines()[-1]
    assert last.lower().startswith("error: "), err
    assert message in err, err
    assert (db.read_bytes() if db.exists() else None) == before
    assert list(workdir.iterdir()) == []

