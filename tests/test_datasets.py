"""Data set loaders: digits split, CIFAR-10 layout with a restricted unpickler, npz,
download against a local HTTP server, and the errors users see."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from evonorm_search.errors import DataError
from evonorm_search.task import DatasetSpec
from workers import datasets
from workers.datasets import augment_batch, load_dataset

PER_BATCH = 6


def _write_batch(path: Path, images: int, label_max: int = 9, seed: int = 0,
                 data_shape: tuple[int, ...] | None = None) -> None:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=data_shape or (images, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, label_max + 1, size=images)]
    labels[0] = label_max
    batch = {b"batch_label": b"fake", b"labels": labels, b"data": data,
             b"filenames": [b"x.png"] * images}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def make_fake_cifar(root: Path) -> Path:
    """A tiny directory in the official CIFAR-10 python layout (6 images per batch)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        _write_batch(root / f"data_batch_{i}", PER_BATCH, seed=i)
    _write_batch(root / "test_batch", PER_BATCH, seed=9)
    meta = {b"label_names": [b"c%d" % i for i in range(10)], b"num_cases_per_batch": PER_BATCH}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def cifar_spec(path: Path, **extra: object) -> DatasetSpec:
    return DatasetSpec(name="cifar10", data_dir=str(path), validation_fraction=0.2, **extra)


@pytest.fixture(scope="module")
def digits() -> datasets.PreparedData:
    return load_dataset(DatasetSpec())


def test_digits_splits_are_disjoint_normalized_and_fixed(digits) -> None:
    assert digits.train_x.shape[1:] == (1, 8, 8) and digits.num_classes == 10
    total = len(digits.train_y) + len(digits.val_y) + len(digits.test_y)
    assert total == 1797
    assert abs(len(digits.test_y) - 0.2 * 1797) < 1
    assert digits.train_x.dtype == torch.float32 and digits.train_y.dtype == torch.int64
    assert abs(float(digits.train_x.mean())) < 1e-4
    assert abs(float(digits.train_x.std()) - 1.0) < 1e-2
    rows = {tuple(row.tolist()) for row in digits.train_x.flatten(1)}
    held = [tuple(row.tolist()) for row in digits.val_x.flatten(1)]
    # Digits has a few exact duplicate images; almost all held-out rows must be unseen.
    assert sum(row in rows for row in held) <= 3
    again = load_dataset(DatasetSpec())
    assert torch.equal(again.val_x, digits.val_x) and torch.equal(again.train_y, digits.train_y)
    other = load_dataset(DatasetSpec(split_seed=1))
    assert not torch.equal(other.val_y, digits.val_y)


def test_prepared_data_pickles_for_shipping(digits) -> None:
    copy = pickle.loads(pickle.dumps(digits))
    assert torch.equal(copy.train_x, digits.train_x) and copy.num_classes == 10


def test_options_resize_unnormalized_and_limit() -> None:
    data = load_dataset(DatasetSpec(image_size=4, normalize=False, max_train_examples=50))
    assert data.train_x.shape == (50, 1, 4, 4)
    assert float(data.train_x.min()) >= 0.0 and float(data.train_x.max()) <= 1.0


def test_fake_cifar_loads_in_official_layout(tmp_path: Path) -> None:
    data = load_dataset(cifar_spec(make_fake_cifar(tmp_path / "c")))
    assert data.train_x.shape[1:] == (3, 32, 32)
    assert len(data.train_y) + len(data.val_y) == 5 * PER_BATCH
    assert len(data.test_y) == PER_BATCH and len(data.val_y) == 6
    # Pixel layout: the first 1024 bytes of a row are the red plane, row-major.
    raw = load_dataset(cifar_spec(tmp_path / "c", normalize=False))
    batch = pickle.loads((tmp_path / "c" / "test_batch").read_bytes(), encoding="bytes")
    expected = torch.from_numpy(batch[b"data"][0, :1024].reshape(32, 32) / 255.0).float()
    assert torch.allclose(raw.test_x[0, 0], expected)
    small = load_dataset(cifar_spec(tmp_path / "c", image_size=16))
    assert small.train_x.shape[1:] == (3, 16, 16)


def test_cifar_parent_folder_is_accepted(tmp_path: Path) -> None:
    make_fake_cifar(tmp_path / "cifar-10-batches-py")
    assert load_dataset(cifar_spec(tmp_path)).train_x.shape[1:] == (3, 32, 32)


class _Boom:
    def __reduce__(self):  # a pickle that would run a shell command when loaded
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("problem, pattern", [
    ("missing", "--download"),
    ("foreign", "refusing to unpickle"),
    ("truncated", "truncated or foreign"),
    ("shape", r"shape \(N, 3072\)"),
    ("labels", "labels must lie in 0..9"),
    ("not_a_dict", "does not hold a CIFAR-10 batch"),
])
def test_cifar_errors_are_clear(tmp_path: Path, monkeypatch, problem: str, pattern: str) -> None:
    root = make_fake_cifar(tmp_path / "c")
    monkeypatch.chdir(tmp_path)
    target = root / "data_batch_2"
    if problem == "missing":
        root = tmp_path / "nowhere"
    elif problem == "foreign":
        target.write_bytes(pickle.dumps({b"data": _Boom(), b"labels": []}, protocol=2))
    elif problem == "truncated":
        target.write_bytes(target.read_bytes()[:5000])
    elif problem == "shape":
        _write_batch(target, PER_BATCH, data_shape=(PER_BATCH, 100))
    elif problem == "labels":
        _write_batch(target, PER_BATCH, label_max=10)
    else:
        target.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match=pattern):
        load_dataset(cifar_spec(root))
    assert not (tmp_path / "pwned").exists()


def _write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_loads_and_validates(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 6, 6, 2), dtype=np.uint8)
    y = np.arange(40) % 4
    data = load_dataset(DatasetSpec(name="npz", data_dir=str(_write_npz(tmp_path / "ok.npz",
                                                                        x=x, y=y))))
    assert data.num_classes == 4 and data.train_x.shape[1:] == (2, 6, 6)
    assert len(data.train_y) + len(data.val_y) + len(data.test_y) == 40
    bad = {
        "float": (dict(x=x.astype(np.float32), y=y), "uint8"),
        "labels": (dict(x=x, y=y - 1), "labels must lie in"),
        "count": (dict(x=x, y=y[:10]), "integer labels"),
        "keys": (dict(images=x, y=y), "must contain arrays 'x' and 'y'"),
        "object": (dict(x=x, y=np.array([None] * 40, dtype=object)), "cannot read"),
    }
    for name, (arrays, pattern) in bad.items():
        path = _write_npz(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(DataError, match=pattern):
            load_dataset(DatasetSpec(name="npz", data_dir=str(path)))
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset(DatasetSpec(name="npz"))


def test_unknown_dataset_and_bad_fraction() -> None:
    with pytest.raises(DataError, match="choose one of digits, cifar10, npz"):
        load_dataset(DatasetSpec(name="mnist"))
    with pytest.raises(DataError, match="validation fraction"):
        load_dataset(DatasetSpec(validation_fraction=1.5))


def _fake_archive(tmp_path: Path) -> bytes:
    source = make_fake_cifar(tmp_path / "src" / "cifar-10-batches-py")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-py")
    return buffer.getvalue()


@pytest.fixture()
def archive_server(tmp_path: Path):
    """A local HTTP server on 127.0.0.1 serving a tiny fake CIFAR-10 archive."""
    served = tmp_path / "served"
    served.mkdir()
    payload = _fake_archive(tmp_path)
    (served / "cifar-10-python.tar.gz").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
    yield url, hashlib.md5(payload).hexdigest()
    server.shutdown()
    server.server_close()


def test_download_fetches_verifies_and_extracts(tmp_path: Path, monkeypatch,
                                                archive_server) -> None:
    url, md5 = archive_server
    monkeypatch.setattr(datasets, "CIFAR10_URL", url)
    monkeypatch.setattr(datasets, "CIFAR10_MD5", md5)
    target = tmp_path / "data"
    data = load_dataset(cifar_spec(target, download=True))
    assert (target / "cifar-10-batches-py" / "test_batch").is_file()
    assert len(data.test_y) == PER_BATCH
    assert [p.name for p in target.iterdir()] == ["cifar-10-batches-py"]


def test_download_rejects_wrong_md5_and_reports_offline(tmp_path: Path, monkeypatch,
                                                        archive_server) -> None:
    url, _ = archive_server
    monkeypatch.setattr(datasets, "CIFAR10_URL", url)
    monkeypatch.setattr(datasets, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(DataError, match="md5"):
        load_dataset(cifar_spec(tmp_path / "data", download=True))
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()
    monkeypatch.setattr(datasets, "CIFAR10_URL", url.rsplit("/", 1)[0] + "/missing.tar.gz")
    with pytest.raises(DataError, match="offline"):
        load_dataset(cifar_spec(tmp_path / "data", download=True))


def test_augment_keeps_shape_is_seeded_and_moves_pixels() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    outputs = [augment_batch(x, torch.Generator().manual_seed(s)) for s in range(8)]
    assert any(not torch.equal(o, x) for o in outputs)
    # Every output pixel is a zero pad or a pixel of the same image and channel.
    for out in outputs:
        for n in range(2):
            for c in range(3):
                allowed = set(x[n, c].flatten().tolist()) | {0.0}
                assert set(out[n, c].flatten().tolist()) <= allowed


def test_prepared_data_moves_to_a_device_whole() -> None:
    """The GPU path moves every split at once; `meta` stands in for a device here."""
    from workers.datasets import PreparedData

    data = PreparedData("t", 2, *(torch.zeros(2, 1, 4, 4) if i % 2 == 0 else torch.zeros(2)
                                  for i in range(6)))
    assert data.to(torch.device("cpu")) is data
    moved = data.to(torch.device("meta"))
    tensors = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
    assert all(getattr(moved, name).device.type == "meta" for name in tensors)
    assert moved.num_classes == 2 and moved.in_channels == 1
