"""The text of the language-model proxy (charlm): a pinned corpus every Python carries, or
the user's UTF-8 text file, split deterministically and encoded as character ids.

The pinned corpus ("stdlib"), read without importing or running any of it:
1. every topic of `pydoc_data.topics` (the language reference's help topics), in
   sorted topic order;
2. the docstrings (`ast.get_docstring`, in `ast.walk` order: module, then classes and
   functions breadth-first) of each standard-library module named in
   `sys.stdlib_module_names` without a leading underscore whose source is `<stdlib>/NAME.py`
   or `<stdlib>/NAME/__init__.py`, modules in sorted name order;
all joined by blank lines. On CPython 3.11.7 that is 1,392,367 characters, 110 distinct,
sha256 prefix ee96a4a752540695 (`TextData.digest`); other Python versions carry other
text, so compare scores only between runs with the same digest.

Split: the text is cut into blocks of `BLOCK` characters, shuffled by `split_seed`; the
first `TEST_FRACTION` of the blocks are the test split, the next `validation_fraction`
of the rest validation, the remainder training (the image data sets' fractions). The
vocabulary is the training split's characters (at most `MAX_VOCABULARY - 1`, the most
frequent); id 0 stands for any other character.
"""

from __future__ import annotations

import ast
import hashlib
import math
import sys
import sysconfig
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from evonorm_search.errors import DataError
from workers.datasets import TEST_FRACTION

STDLIB_CORPUS = "stdlib"
BLOCK = 2048
MAX_VOCABULARY = 256  # ids fit in uint8
MIN_SPLIT_CHARACTERS = 4 * 65  # a few context windows per split
MAX_CORPUS_BYTES = 200_000_000


@dataclass(frozen=True)
class TextData:
    """A corpus ready for training: uint8 character ids per split (CPU tensors)."""

    name: str
    digest: str  # sha256 hex prefix of the whole text
    vocabulary: str  # character of id k is vocabulary[k - 1]; id 0: any other
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    unigram_bits: float  # entropy of the training split's characters, bits per character

    @property
    def size(self) -> int:
        """Ids per position: the language model's output size."""
        return len(self.vocabulary) + 1

    def to(self, device: torch.device) -> TextData:
        if self.train.device == device:
            return self
        return replace(self, train=self.train.to(device), val=self.val.to(device),
                       test=self.test.to(device))


def _module_source(root: Path, name: str) -> Path | None:
    for path in (root / f"{name}.py", root / name / "__init__.py"):
        if path.is_file():
            return path
    return None


def pydoc_topics() -> list[str]:
    """The help topics of `pydoc_data.topics`, in sorted topic order."""
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return [topics[key] for key in sorted(topics)]


def module_docstrings(names: list[str]) -> list[str]:
    """The docstrings of the standard-library modules `names` (in that order; modules
    without a source file are skipped), each module's in `ast.walk` order. The sources
    are parsed, never imported."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for name in names:
        path = _module_source(root, name)
        if path is None:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue  # a damaged or foreign file changes the digest, which says so
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                docstring = ast.get_docstring(node)
                if docstring:
                    parts.append(docstring)
    return parts


@lru_cache(maxsize=1)
def stdlib_text() -> str:
    """The pinned corpus of this Python (see the module docstring)."""
    names = sorted(n for n in sys.stdlib_module_names if not n.startswith("_"))
    return "\n\n".join(pydoc_topics() + module_docstrings(names))


def read_text_file(path: str) -> str:
    """The UTF-8 text of `path`; DataError saying what to fix when it cannot be read."""
    file = Path(path).expanduser()
    if not file.is_file():
        what = "a directory" if file.is_dir() else "missing"
        raise DataError(f"corpus {path!r} is {what}: --corpus names a UTF-8 text file "
                        "(or leave it off for the pinned stdlib corpus)")
    try:
        if file.stat().st_size > MAX_CORPUS_BYTES:
            raise DataError(f"corpus {path!r} is larger than {MAX_CORPUS_BYTES} bytes; "
                            "use a smaller text file")
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"corpus {path!r} is not UTF-8 text ({error.reason} at byte "
                        f"{error.start}); convert it, e.g. with iconv -t utf-8") from None
    except OSError as error:
        raise DataError(f"cannot read corpus {path!r} ({error.strerror}); check the path "
                        "and its permissions") from None


def _entropy_bits(ids: np.ndarray, size: int) -> float:
    counts = np.bincount(ids, minlength=size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def prepare_text(text: str, name: str, validation_fraction: float = 0.1,
                 split_seed: int = 0) -> TextData:
    """Split and encode `text` (see the module docstring)."""
    blocks = [text[i:i + BLOCK] for i in range(0, len(text), BLOCK)]
    order = np.random.default_rng(split_seed).permutation(len(blocks))
    test_count = int(round(len(blocks) * TEST_FRACTION))
    val_count = int(round((len(blocks) - test_count) * validation_fraction))
    parts = {
        "test": order[:test_count],
        "val": order[test_count:test_count + val_count],
        "train": order[test_count + val_count:],
    }
    texts = {split: "".join(blocks[i] for i in sorted(index)) for split, index in parts.items()}
    short = [split for split, part in texts.items() if len(part) < MIN_SPLIT_CHARACTERS]
    if short:
        raise DataError(f"corpus {name} has {len(text)} characters, too few for a "
                        f"{'/'.join(short)} split of {MIN_SPLIT_CHARACTERS}: give a text of "
                        f"at least {MIN_SPLIT_CHARACTERS * 10 * BLOCK // BLOCK:,} characters")
    common = [char for char, _ in Counter(texts["train"]).most_common(MAX_VOCABULARY - 1)]
    vocabulary = "".join(sorted(common))
    table = {char: k + 1 for k, char in enumerate(vocabulary)}

    def encode(part: str) -> torch.Tensor:
        return torch.tensor([table.get(char, 0) for char in part], dtype=torch.uint8)

    encoded = {split: encode(part) for split, part in texts.items()}
    return TextData(
        name=name,
        digest=hashlib.sha256(text.encode()).hexdigest()[:16],
        vocabulary=vocabulary,
        train=encoded["train"],
        val=encoded["val"],
        test=encoded["test"],
        unigram_bits=_entropy_bits(encoded["train"].numpy(), len(vocabulary) + 1),
    )


@lru_cache(maxsize=4)
def load_text(corpus: str | None = None, validation_fraction: float = 0.1,
              split_seed: int = 0) -> TextData:
    """The corpus `corpus` names (None or "stdlib": the pinned one, else a text file),
    prepared; DataError when it cannot be read or is too short (cached per process)."""
    if corpus is None or corpus == STDLIB_CORPUS:
        return prepare_text(stdlib_text(), STDLIB_CORPUS, validation_fraction, split_seed)
    return prepare_text(read_text_file(corpus), corpus, validation_fraction, split_seed)


def bits_per_character(loss_nats: float) -> float:
    """A mean cross-entropy in nats as bits per character."""
    return loss_nats / math.log(2)
