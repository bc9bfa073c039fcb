"""The Transformer proxies: corpus, models, protocols and evaluation of vit and charlm, on
tiny settings (the embedded digits and a generated text)."""

from __future__ import annotations

import math
import pickle
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from evonorm_search.errors import DataError
from evonorm_search.known import get_known
from evonorm_search.search.moves import random_graph
from evonorm_search.proxy_info import bits_from_score, default_proxies, score_from_bits
from evonorm_search.task import DatasetSpec, EvalTask, TrainSettings
from evonorm_search.tokens import TokenLayer, token_layer_factory
from workers.corpus import (
    module_docstrings, prepare_text, pydoc_topics, read_text_file, stdlib_text,
)
from workers.datasets import load_proxy_data
from workers.evaluate import check_settings, evaluate
from workers.proxy_runs import text_sampler, validation_bits, windows_per_batch
from workers.rejection import StressProbe, bits_threshold, check_bits
from workers.transformer_proxies import CONTEXT, CharTransformer, VisionTransformer

WORDS = ("the layer norm of a token divides by its spread while the batch norm mixes every "
         "sequence and position of the batch so that a causal model would see the future ")


def corpus_text(repeats: int = 120) -> str:
    """A deterministic made-up text (~20k characters) with some structure to learn."""
    rng = random.Random(0)
    words = WORDS.split()
    return " ".join(rng.choice(words) for _ in range(repeats * 30)) + "."


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text(corpus_text(), encoding="utf-8")
    return str(path)


TINY = TrainSettings.for_dataset("digits", slot="norm", steps=8, quality_steps=4,
                                 quality_threshold=0.0, stability_steps=4, width=16, depth=1,
                                 batch_size=8, stability_batch_size=8, threads=1)


def test_text_split_is_deterministic_disjoint_and_complete() -> None:
    text = corpus_text()
    data = prepare_text(text, "made-up", validation_fraction=0.1, split_seed=3)
    again = prepare_text(text, "made-up", validation_fraction=0.1, split_seed=3)
    assert all(torch.equal(getattr(data, s), getattr(again, s)) for s in ("train", "val", "test"))
    assert data.digest == again.digest and data.name == "made-up"
    sizes = [len(data.train), len(data.val), len(data.test)]
    assert sum(sizes) == len(text) and min(sizes) > 0
    decoded = "".join(data.vocabulary[i - 1] for i in data.train.tolist() if i)
    assert set(decoded) <= set(text) and data.size == len(set(decoded)) + 1
    assert 0 < data.unigram_bits < math.log2(data.size)
    other = prepare_text(text, "made-up", validation_fraction=0.1, split_seed=4)
    assert not (torch.equal(other.val, data.val) and torch.equal(other.test, data.test))


def test_stdlib_corpus_parts_are_read_without_importing() -> None:
    topics = pydoc_topics()
    assert len(topics) > 50 and any("lambda" in topic for topic in topics)
    docs = module_docstrings(["bisect", "colorsys", "no_such_module"])
    assert docs and docs[0].startswith("Bisection algorithms")
    assert any("hsv" in doc.lower() for doc in docs)


@pytest.mark.slow
def test_pinned_stdlib_corpus() -> None:
    import sys

    text = stdlib_text()
    data = prepare_text(text, "stdlib")
    assert len(text) > 1_000_000 and data.size > 90
    if sys.version_info[:3] == (3, 11, 7):  # the pinned figures of docs/method.md
        assert (len(text), data.digest) == (1_392_367, "ee96a4a752540695")


def test_unreadable_corpus_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is missing"):
        read_text_file(str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match="is a directory"):
        read_text_file(str(tmp_path))
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 " * 100)
    with pytest.raises(DataError, match="not UTF-8"):
        read_text_file(str(tmp_path / "latin1.txt"))
    with pytest.raises(DataError, match="too few"):
        prepare_text("short text", "short")


def test_scores_bits_and_bars() -> None:
    assert score_from_bits(3.0) == pytest.approx(0.625) and bits_from_score(0.625) == pytest.approx(3.0)
    assert bits_threshold(0.2, 110) == pytest.approx(math.log2(110) * 8 / 9)
    assert bits_threshold(0.1, 110) == pytest.approx(math.log2(110))  # chance: anything learning
    assert check_bits(5.9, 100, 0.2, 110).passed and not check_bits(6.1, 100, 0.2, 110).passed
    assert default_proxies("T") == ("vit", "charlm") and default_proxies("TB") == ("vit",)
    assert default_proxies("B") == ("resnet", "mobilenetv2", "efficientnet")


def _norms(model: nn.Module) -> list[TokenLayer]:
    return [m for m in model.modules() if isinstance(m, TokenLayer)]


def test_models_put_the_candidate_in_every_norm_slot() -> None:
    norm = token_layer_factory(get_known("rmsnorm"))
    vit = VisionTransformer(norm, 10, 3, 16, 32, 2)
    assert vit(torch.randn(3, 3, 16, 16)).shape == (3, 10)
    assert len(_norms(vit)) == 2 * 2 + 1
    lm = CharTransformer(norm, 50, 32, 3)
    assert lm(torch.randint(0, 50, (2, CONTEXT))).shape == (2, 50, CONTEXT)
    assert len(_norms(lm)) == 2 * 3 + 1
    with pytest.raises(ValueError, match="multiple of 4"):
        VisionTransformer(norm, 10, 3, 10, 32, 2)
    with pytest.raises(ValueError, match="divisible by 4 heads"):
        CharTransformer(norm, 50, 30, 1)


@pytest.mark.parametrize("seed", range(6))
def test_the_language_model_never_sees_later_characters(seed: int) -> None:
    """The whole model (attention mask and the candidate in every slot) with layers of
    space T: logits up to position t do not change when later characters do."""
    rng = random.Random(seed)
    graph = get_known("layernorm") if seed == 0 else random_graph(rng, "T", rng.randint(2, 8))
    torch.manual_seed(seed)
    model = CharTransformer(token_layer_factory(graph, groups=4), 40, 16, 2).double().train()
    chars = torch.randint(0, 40, (3, 20))
    changed = chars.clone()
    changed[:, 11:] = torch.randint(0, 40, (3, 9))
    with torch.no_grad():
        before, after = model(chars)[..., :11], model(changed)[..., :11]
    assert torch.equal(before.nan_to_num(), after.nan_to_num()), graph.formula()


def test_text_windows_and_validation_bits() -> None:
    text = torch.arange(500, dtype=torch.uint8) % 7
    x, y = text_sampler(text, 5)(torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, CONTEXT) and torch.equal(x[:, 1:], y[:, :-1])
    assert windows_per_batch(64) == 17 and windows_per_batch(1) == 1

    class Uniform(nn.Module):
        def forward(self, chars: torch.Tensor) -> torch.Tensor:
            return torch.zeros(chars.shape[0], 8, chars.shape[1])

    assert validation_bits(Uniform(), text) == pytest.approx(3.0)  # log2(8)


def test_stress_probe_is_resumable_and_catches_divergence() -> None:
    images = torch.randn(64, 3, 16, 16)
    labels = torch.randint(0, 10, (64,))

    def sampler(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, 64, (16,), generator=generator)
        return images[index], labels[index]

    def probe(layer: str, lr: float) -> StressProbe:
        torch.manual_seed(0)
        model = VisionTransformer(token_layer_factory(get_known(layer)), 10, 3, 16, 16, 1)
        return StressProbe(model, sampler, 0, "adamw", TINY, lr, 12)

    whole = probe("layernorm", 0.03).run(12)
    split = probe("layernorm", 0.03)
    split.run(4)
    assert split.run(12) == whole and whole.passed and whole.steps == 12
    broken = probe("no_norm", 30.0).run(12)
    assert not broken.passed and "stress run" in (broken.reason or "")


def test_evaluate_on_both_proxies(corpus_file: str) -> None:
    spec = DatasetSpec(corpus=corpus_file)
    data = load_proxy_data(spec, ("vit", "charlm"))
    assert data.text is not None and pickle.loads(pickle.dumps(data)).text.digest == data.text.digest
    task = EvalTask(get_known("layernorm").to_json(), ("vit", "charlm"), spec, TINY, seed=2)
    result = evaluate(task, data)
    assert result.status == "done", result
    assert set(result.accuracies) == {"vit", "charlm"} == set(result.early_accuracies)
    assert 0 <= result.accuracies["vit"] <= 1 and 0 < result.accuracies["charlm"] < 1
    again = evaluate(task, data)  # deterministic per seed on the CPU
    assert (again.accuracies, again.early_accuracies) == (result.accuracies, result.early_accuracies)
    # Without data, the worker loads images and text itself.
    assert evaluate(task).accuracies == result.accuracies


def test_token_axis_layers_are_rejected_before_training_for_charlm(corpus_file: str) -> None:
    spec = DatasetSpec(corpus=corpus_file)
    task = EvalTask(get_known("repbn").to_json(), ("vit", "charlm"), spec, TINY, seed=2)
    result = evaluate(task)
    assert (result.status, result.stage) == ("rejected", "axes") and not result.steps
    assert "mean_batch" in (result.reason or "")
    vit_only = evaluate(EvalTask(get_known("repbn").to_json(), ("vit",), spec, TINY, seed=2))
    assert vit_only.stage != "axes"


def test_proxies_of_both_kinds_are_not_mixed() -> None:
    with pytest.raises(ValueError, match="mix CNN norm-activation and Transformer"):
        check_settings(TINY, ("vit", "resnet"))
    with pytest.raises(ValueError, match="unknown or no proxies"):
        check_settings(TINY, ("vit", "gpt"))
