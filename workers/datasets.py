"""Data sets for proxy evaluation: a registry of loaders returning `PreparedData`.

Owns reading images from disk (or scikit-learn's bundled digits), the fixed
train / validation / test split, resizing, per-channel normalization and the batch-time
crop/flip augmentation. `PreparedData` holds only CPU tensors and plain values, so the
controller loads a data set once and ships it to workers (Ray object store, processes).

Loading never executes code from the data: CIFAR-10 pickles go through an unpickler
that only resolves the numpy names needed to rebuild arrays, `.npz` files are read with
`allow_pickle=False`.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from evonorm_search.errors import DataError
from evonorm_search.task import DatasetSpec

if TYPE_CHECKING:
    from workers.corpus import TextData

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"

# Fraction of a data set without an official test split that is kept as the test set.
TEST_FRACTION = 0.2
# Labels of an .npz data set are class indices 0..K-1; K above this is a labelling
# mistake (ids instead of indices) that would give every proxy a huge output layer.
MAX_NPZ_CLASSES = 100_000


@dataclass(frozen=True)
class PreparedData:
    """A data set ready for training: float32 NCHW tensors and int64 labels, on CPU; with
    `text`, also the corpus of the language-model proxies (`workers.corpus`)."""

    name: str
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    augment: bool = False
    text: TextData | None = None

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def to(self, device: torch.device) -> PreparedData:
        """The same data on `device` (itself when already there)."""
        if self.train_x.device == device:
            return self
        tensors = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        moved = {name: getattr(self, name).to(device) for name in tensors}
        return replace(self, **moved, text=None if self.text is None else self.text.to(device))

    def test_as_validation(self) -> PreparedData:
        """The same data with the test split in place of the validation split (images and
        text): what re-ranking scores on."""
        text = None if self.text is None else replace(self.text, val=self.text.test)
        return replace(self, val_x=self.test_x, val_y=self.test_y, text=text)


# --------------------------------------------------------------------------- raw arrays


@dataclass(frozen=True)
class _RawSplits:
    """uint8 NHWC images (or float in [0, 1]) and labels before preparation."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None  # None: carve the test set out of train_x
    test_y: np.ndarray | None
    num_classes: int
    max_value: float  # pixel value that maps to 1.0


def _load_digits_raw(spec: DatasetSpec) -> _RawSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[..., None]  # N, 8, 8, 1
    return _RawSplits(images, np.asarray(bunch.target), None, None, 10, 16.0)


class _CifarUnpickler(pickle.Unpickler):
    """Resolves only the globals that numpy array pickles need; anything else is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Python 3 writes bytes in protocol 2 as _codecs.encode(str, "latin1").
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise DataError(
                f"refusing to unpickle {module}.{name}: CIFAR-10 files contain only numpy "
                "arrays, lists and numbers; the file is not an official CIFAR-10 batch. "
                "Re-download the data set (--download) or check --data-dir"
            )
        if module == "_codecs":
            import codecs

            return codecs.encode
        if name in ("ndarray", "dtype"):
            return getattr(np, name)
        # numpy 2 keeps the numpy.core aliases only with a deprecation warning.
        core = np._core if hasattr(np, "_core") else np.core  # type: ignore[attr-defined]
        return getattr(core.multiarray if name == "_reconstruct" else core.numeric, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read CIFAR-10 file {path}: {error}; check --data-dir") from None
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except DataError:
        raise
    except Exception as error:  # truncated or garbage files raise many pickle error types
        raise DataError(
            f"{path} is not a readable CIFAR-10 batch ({type(error).__name__}: {error}); "
            "the file is truncated or foreign: re-download the data set (--download)"
        ) from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(
            f"{path} does not hold a CIFAR-10 batch (a dict with 'data' and 'labels'); "
            "check that --data-dir points at the 'python version' of CIFAR-10"
        )
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", None)
        raise DataError(
            f"{path}: 'data' must be a uint8 array of shape (N, 3072), got "
            f"{type(data).__name__} {getattr(data, 'dtype', '')} {shape}; the file is not an "
            "official CIFAR-10 batch: re-download it"
        )
    if labels.shape != (data.shape[0],):
        raise DataError(
            f"{path}: {labels.shape} labels for {data.shape[0]} images; re-download the data set"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _cifar_dir(spec: DatasetSpec) -> Path:
    if spec.data_dir is None:
        raise DataError(
            "cifar10 needs --data-dir: point it at the 'cifar-10-batches-py' folder of the "
            f"official python version ({CIFAR10_URL}), or add --download to fetch it there"
        )
    root = Path(spec.data_dir).expanduser()
    for candidate in (root, root / CIFAR10_FOLDER):
        if (candidate / CIFAR10_TRAIN_FILES[0]).is_file():
            return candidate
    if spec.download:
        download_cifar10(root)
        return root / CIFAR10_FOLDER
    raise DataError(
        f"no CIFAR-10 data in {root} (expected data_batch_1..5 and test_batch there or in "
        f"{root / CIFAR10_FOLDER}); download and extract {CIFAR10_URL} into it, or add "
        "--download"
    )


def _load_cifar10_raw(spec: DatasetSpec) -> _RawSplits:
    folder = _cifar_dir(spec)
    parts = [_read_cifar_batch(folder / name) for name in CIFAR10_TRAIN_FILES]
    test_x, test_y = _read_cifar_batch(folder / CIFAR10_TEST_FILE)
    train_x = np.concatenate([x for x, _ in parts])
    train_y = np.concatenate([y for _, y in parts])
    return _RawSplits(train_x, train_y, test_x, test_y, 10, 255.0)


def download_cifar10(root: Path, timeout: float = 60.0) -> None:
    """Fetch the official CIFAR-10 archive into `root`, verify its md5 and extract it."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        digest = hashlib.md5()
        try:
            with urllib.request.urlopen(CIFAR10_URL, timeout=timeout) as response, \
                    archive.open("wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as error:
            raise DataError(
                f"cannot download {CIFAR10_URL} ({error}); this machine may be offline: "
                f"download the archive elsewhere and extract it into {root}"
            ) from None
        if digest.hexdigest() != CIFAR10_MD5:
            raise DataError(
                f"downloaded {CIFAR10_URL} has md5 {digest.hexdigest()}, expected "
                f"{CIFAR10_MD5}: the download is corrupt or was tampered with; retry"
            )
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = [m for m in tar.getmembers()
                           if m.isfile() and Path(m.name).parent.name == CIFAR10_FOLDER]
                # The "data" filter refuses absolute paths, links out of root and devices.
                tar.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, OSError) as error:
            raise DataError(f"cannot extract the CIFAR-10 archive ({error}); retry") from None
        extracted = Path(tmp) / CIFAR10_FOLDER
        if not (extracted / CIFAR10_TRAIN_FILES[0]).is_file():
            raise DataError(f"the archive from {CIFAR10_URL} has no {CIFAR10_FOLDER}/ folder")
        target = root / CIFAR10_FOLDER
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(extracted), target)


def _load_npz_raw(spec: DatasetSpec) -> _RawSplits:
    if spec.data_dir is None:
        raise DataError("the npz data set needs --data-dir pointing at a .npz file with "
                        "arrays 'x' (uint8, N x H x W x C) and 'y' (integer labels)")
    path = Path(spec.data_dir).expanduser()
    if not path.is_file():
        raise DataError(f"no .npz file at {path}{' (a directory)' if path.is_dir() else ''}: "
                        "with --dataset npz, --data-dir names the .npz file itself")
    try:
        with path.open("rb") as handle:
            # An .npz is a zip archive; anything else would reach numpy's .npy and pickle
            # readers, whose errors do not say what is wrong.
            if handle.read(2) != b"PK":
                raise ValueError("it is not a zip archive of arrays")
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"cannot read {path} as a .npz file ({error}); save it with "
                        "numpy.savez(path, x=images, y=labels)") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{path} must contain arrays 'x' and 'y', found {sorted(arrays)}")
    x, y = arrays["x"], arrays["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or 0 in x.shape:
        raise DataError(f"{path}: 'x' must be a non-empty uint8 array N x H x W x C, got "
                        f"{x.dtype} {x.shape}; convert images with x.astype(numpy.uint8)")
    if x.shape[1] != x.shape[2]:
        raise DataError(f"{path}: images must be square, got {x.shape[1]}x{x.shape[2]}; "
                        "crop or pad them first")
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
        raise DataError(f"{path}: 'y' must be {x.shape[0]} integer labels, got {y.dtype} "
                        f"{y.shape}")
    classes = np.unique(y)
    if classes.size < 2:
        raise DataError(f"{path}: every label is {int(classes[0])}, but a classifier needs "
                        "images of at least 2 classes; add images of other classes")
    if int(classes[0]) < 0 or int(classes[-1]) >= MAX_NPZ_CLASSES:
        raise DataError(f"{path}: labels must lie in 0..K-1, class indices with K at most "
                        f"{MAX_NPZ_CLASSES}, found {int(classes[0])}..{int(classes[-1])}; "
                        "renumber them with numpy.unique(y, return_inverse=True)[1]")
    return _RawSplits(x, y, None, None, int(classes[-1]) + 1, 255.0)


LOADERS: dict[str, Callable[[DatasetSpec], _RawSplits]] = {
    "digits": _load_digits_raw,
    "cifar10": _load_cifar10_raw,
    "npz": _load_npz_raw,
}
DATASETS: tuple[str, ...] = tuple(LOADERS)


# ----------------------------------------------------------------------------- prepare


def _check_labels(y: np.ndarray, num_classes: int, where: str) -> None:
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"{where}: labels must lie in 0..{num_classes - 1}, found {int(y.min())}.."
            f"{int(y.max())}; the file is corrupt or not from this data set"
        )


def _to_tensor(images: np.ndarray, max_value: float, size: int | None) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) / max_value)
    x = x.permute(0, 3, 1, 2).contiguous()
    if size is not None and size != x.shape[-1]:
        # Area averaging keeps downsampled images faithful; upsampling interpolates.
        mode = "area" if size < x.shape[-1] else "bilinear"
        x = F.interpolate(x, size=(size, size), mode=mode)
    return x


def _split(count: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    order = rng.permutation(count)
    held = int(round(count * fraction))
    return order[held:], order[:held]


def _validate_spec(spec: DatasetSpec) -> None:
    if spec.name not in LOADERS:
        raise DataError(f"unknown data set {spec.name!r}; choose one of {', '.join(DATASETS)}")
    if not 0.0 < spec.validation_fraction < 1.0:
        raise DataError(f"validation fraction must be in (0, 1), got {spec.validation_fraction}")
    if spec.image_size is not None and spec.image_size < 1:
        raise DataError(f"image size must be a positive number of pixels, got {spec.image_size}")
    if spec.max_train_examples is not None and spec.max_train_examples < 1:
        raise DataError(f"max train examples must be positive, got {spec.max_train_examples}")
    if spec.split_seed < 0:
        raise DataError(f"split seed must be >= 0, got {spec.split_seed}")


def _check_memory(name: str, images: int, channels: int, size: int) -> None:
    """DataError when the prepared float32 images cannot fit in this machine's memory
    (e.g. a mistyped --image-size), before any of them is resized."""
    needed = images * channels * size * size * 4
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # not a POSIX system: no estimate
        return
    if needed > total:
        raise DataError(
            f"{name}: {images} images of {channels}x{size}x{size} pixels need "
            f"{needed / 2**30:.0f} GiB as float32, more than this machine's "
            f"{total / 2**30:.0f} GiB of memory; use a smaller --image-size or "
            "--max-train-examples"
        )


def load_dataset(spec: DatasetSpec) -> PreparedData:
    """Load and prepare the data set `spec` names; raises `DataError` with the fix."""
    _validate_spec(spec)
    raw = LOADERS[spec.name](spec)
    _check_labels(raw.train_y, raw.num_classes, spec.name)
    rng = np.random.default_rng(spec.split_seed)
    train_x, train_y = raw.train_x, raw.train_y.astype(np.int64)
    if raw.test_x is None or raw.test_y is None:
        keep, test = _split(len(train_x), TEST_FRACTION, rng)
        test_x, test_y = train_x[test], train_y[test]
        train_x, train_y = train_x[keep], train_y[keep]
    else:
        _check_labels(raw.test_y, raw.num_classes, f"{spec.name} test split")
        test_x, test_y = raw.test_x, raw.test_y.astype(np.int64)
    keep, val = _split(len(train_x), spec.validation_fraction, rng)
    if spec.max_train_examples is not None:
        keep = keep[: spec.max_train_examples]
    if len(keep) == 0 or len(val) == 0:
        raise DataError(f"{spec.name}: too few images ({len(train_x)}) for a training and a "
                        "validation split; provide more images or change the fraction")
    _check_memory(spec.name, len(keep) + len(val) + len(test_x), int(train_x.shape[-1]),
                  spec.image_size or int(train_x.shape[1]))
    tensors = {
        "train": _to_tensor(train_x[keep], raw.max_value, spec.image_size),
        "val": _to_tensor(train_x[val], raw.max_value, spec.image_size),
        "test": _to_tensor(test_x, raw.max_value, spec.image_size),
    }
    if spec.normalize:
        # Statistics from the training split only, so nothing leaks from held-out data.
        mean = tensors["train"].mean(dim=(0, 2, 3), keepdim=True)
        std = tensors["train"].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        tensors = {key: (value - mean) / std for key, value in tensors.items()}
    return PreparedData(
        name=spec.name,
        num_classes=raw.num_classes,
        train_x=tensors["train"],
        train_y=torch.from_numpy(train_y[keep]),
        val_x=tensors["val"],
        val_y=torch.from_numpy(train_y[val]),
        test_x=tensors["test"],
        test_y=torch.from_numpy(test_y),
        augment=spec.augment,
    )


def load_proxy_data(spec: DatasetSpec, proxies: tuple[str, ...]) -> PreparedData:
    """The data set `spec` names, with the text corpus `spec.corpus` attached when one
    of `proxies` is a language model (`evonorm_search.proxy_info.needs_text`)."""
    from evonorm_search.proxy_info import needs_text

    data = load_dataset(spec)
    return with_text(data, spec) if needs_text(proxies) else data


def with_text(data: PreparedData, spec: DatasetSpec) -> PreparedData:
    """`data` with the corpus of `spec` attached (loaded once per process)."""
    from workers.corpus import load_text

    if data.text is not None:
        return data
    return replace(data, text=load_text(spec.corpus, spec.validation_fraction, spec.split_seed))


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (zero padding of 1/8 of the side) and horizontal flip, per image."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    # Random draws on the CPU generator (the same on every device), then moved to x's.
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    c, wide = x.shape[1], w + 2 * pad
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, c, h, wide)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
    cropped = padded.gather(2, rows).gather(3, cols)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped)
