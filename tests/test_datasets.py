"""Datasets: loaders against independent decodes (numpy, PIL, scipy, sklearn), splits, errors."""

from __future__ import annotations

import gzip
import io
import logging
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.stats
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import bench.datasets._files as files_mod
from bench.datasets.base import (Dataset, ImageSet, LoadContext, load_set, resize_to,
                                 split_val_test)
from bench.errors import BenchError
from bench.registry import DATASETS, _Entry


def ctx_for(root: Path, **kw) -> LoadContext:
    return LoadContext(data_root=Path(root), **kw)


# --------------------------------------------------------------------------------------------
# digits and the METHODS.md §1 splits
# --------------------------------------------------------------------------------------------
def test_digits_splits_match_sklearn_and_pixels_are_scaled():
    d = load_digits()
    y = d.target
    tr, te = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=0)
    ctx = ctx_for(Path("."))
    _, train = load_set("digits", "train", ctx)
    _, test = load_set("digits", "test", ctx)
    assert (len(train), len(test)) == (898, 899)
    assert train.shape == test.shape == (1, 8, 8)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    for part, idx in ((train, np.sort(tr)), (test, np.sort(te))):
        np.testing.assert_array_equal(part.labels.numpy(), y[idx])
        # d.data holds the raw 0..16 values: v * 255 / 16 rounded
        want = np.floor(d.data[idx].reshape(-1, 1, 8, 8) * 255 / 16 + 0.5)
        np.testing.assert_array_equal(part.images.numpy(), want)
    # stratified: every class's count in test is within one of half its total
    total, in_test = np.bincount(y), np.bincount(test.labels.numpy(), minlength=10)
    assert np.all(np.abs(in_test - total / 2) <= 1)
    assert test.images.max() == 255 and train.name == "digits"
    assert test.classes == [str(i) for i in range(10)]


@pytest.mark.parametrize("n,n_val", [(10000, 1000), (457, 46), (25000, 1000)])
def test_split_val_test_follows_methods(n, n_val):
    rng = np.random.default_rng(n)
    y = rng.choice(10, size=n, p=np.linspace(1, 2, 10) / np.linspace(1, 2, 10).sum())
    val, test = split_val_test(torch.from_numpy(y))
    assert len(val) == n_val == min(1000, round(0.1 * n))
    assert len(np.intersect1d(val, test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([val, test])), np.arange(n))
    assert np.all(np.diff(test) > 0)
    _, want_val = train_test_split(np.arange(n), test_size=n_val, stratify=y, random_state=0)
    np.testing.assert_array_equal(np.sort(val), np.sort(want_val))
    share = np.bincount(y, minlength=10) / n
    assert np.all(np.abs(np.bincount(y[val], minlength=10) - share * n_val) <= 1)


# --------------------------------------------------------------------------------------------
# CIFAR
# --------------------------------------------------------------------------------------------
def _jpeg(pack: Path, i: int) -> np.ndarray:
    z = np.load(pack)
    o = z["offsets"]
    blob = z["jpeg"][o[i]:o[i + 1]].tobytes()
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")).transpose(2, 0, 1)


def test_cifar10_from_prepared_root(cifar_root, shared_data, monkeypatch, caplog):
    monkeypatch.setattr(files_mod, "_WARNED", set())
    ctx = ctx_for(cifar_root)
    with caplog.at_level(logging.WARNING, logger="bench.datasets"):
        ds, test = load_set("cifar10", "test", ctx)
        _, train = load_set("cifar10", "train", ctx)
    md5_warnings = [r for r in caplog.records if "md5" in r.getMessage()]
    assert len(md5_warnings) == 1 and "cifar10" in md5_warnings[0].getMessage()
    assert ds.is_id and ds.proximity == "near"
    assert (len(train), len(test)) == (50000, 10000)
    assert train.shape == test.shape == (3, 32, 32)
    assert np.bincount(test.labels.numpy()).tolist() == [1000] * 10
    pack = np.load(shared_data / "cifar10-jpeg" / "test.npz")
    np.testing.assert_array_equal(test.labels.numpy(), pack["labels"])
    assert test.classes == [str(c) for c in pack["class_names"]]
    packs = shared_data / "cifar10-jpeg"
    np.testing.assert_array_equal(test.images[0].numpy(), _jpeg(packs / "test.npz", 0))
    np.testing.assert_array_equal(train.images[0].numpy(), _jpeg(packs / "train.npz", 0))
    assert test.name == "cifar10" and test.source.endswith("cifar-10-batches-py")


def test_cifar10_download_only_when_missing_and_offline_failure_is_one_line(cifar_root, tmp_path,
                                                                            monkeypatch):
    calls = []

    def offline(tv_class, **kw):   # the network edge: torchvision's downloader
        calls.append((tv_class, kw))
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(files_mod, "torchvision_download", offline)
    _, test = load_set("cifar10", "test", ctx_for(cifar_root, download=True))
    assert len(test) == 10000 and calls == []           # files there: no download attempt
    with pytest.raises(BenchError, match=r"cifar10: download into .* failed") as e:
        load_set("cifar10", "test", ctx_for(tmp_path, download=True))
    assert calls == [("CIFAR10", {"root": str(tmp_path), "train": False})]
    assert "\n" not in str(e.value) and "prepare_cifar10.py" in str(e.value)


def test_cifar10_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(BenchError) as e:
        load_set("cifar10", "train", ctx_for(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "--download" in msg
    assert "prepare_cifar10.py --out DIR" in msg and "--data-root DIR" in msg and "\n" not in msg


def _write_cifar100(root: Path, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        with open(folder / split, "wb") as f:
            pickle.dump({"data": data, "fine_labels": fine, "coarse_labels": [0] * n,
                         "filenames": [f"{i}.png" for i in range(n)]}, f, protocol=2)
        out[split], out[split + "_y"] = data, np.array(fine)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)],
                     "coarse_label_names": [f"s{i}" for i in range(20)]}, f, protocol=2)
    return out


def test_cifar100_reads_torchvision_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(files_mod, "_WARNED", set())
    written = _write_cifar100(tmp_path, 7, 5)
    ds, test = load_set("cifar100", "test", ctx_for(tmp_path))
    _, train = load_set("cifar100", "train", ctx_for(tmp_path))
    assert ds.proximity == "near" and (len(train), len(test)) == (7, 5)
    data = written["test"]
    # row = R plane, G plane, B plane, each 32x32 row-major
    want = np.stack([data[:, c * 1024:(c + 1) * 1024].reshape(-1, 32, 32) for c in range(3)], 1)
    np.testing.assert_array_equal(test.images.numpy(), want)
    assert test.images[2, 1, 3, 4].item() == data[2, 1024 + 3 * 32 + 4]
    np.testing.assert_array_equal(test.labels.numpy(), written["test_y"])
    np.testing.assert_array_equal(train.labels.numpy(), written["train_y"])
    assert test.classes == [f"c{i}" for i in range(100)]
    with pytest.raises(BenchError, match=r"cifar-100-python.*--download"):
        load_set("cifar100", "test", ctx_for(tmp_path / "nowhere"))



class _TouchOnUnpickle:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch '{self.marker}'",)


def test_cifar_batch_that_would_run_code_is_refused(tmp_path, monkeypatch):
    """The batches are pickles: only arrays, lists, strings and numbers are built from them."""
    monkeypatch.setattr(files_mod, "_WARNED", set())
    _write_cifar100(tmp_path, 3, 2)
    marker = tmp_path / "MARKER"
    with open(tmp_path / "cifar-100-python" / "test", "wb") as f:
        pickle.dump({"data": _TouchOnUnpickle(marker), "fine_labels": [0, 1]}, f, protocol=2)
    with pytest.raises(BenchError, match=r"cifar-100-python/test is not a CIFAR batch of plain "
                                         r"arrays \(refused global \w+\.system"):
        load_set("cifar100", "test", ctx_for(tmp_path))
    assert not marker.exists()
    _, train = load_set("cifar100", "train", ctx_for(tmp_path))   # the other split still loads
    assert len(train) == 3

# --------------------------------------------------------------------------------------------
# SVHN, MNIST
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sub", ["svhn", "."])
def test_svhn_mat(tmp_path, sub, monkeypatch):
    monkeypatch.setattr(files_mod, "_WARNED", set())
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, 6), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9], [5]], dtype=np.uint8)
    (tmp_path / sub).mkdir(exist_ok=True)
    scipy.io.savemat(tmp_path / sub / "test_32x32.mat", {"X": x, "y": y})
    ds, s = load_set("svhn", "test", ctx_for(tmp_path))
    assert ds.proximity == "far" and s.shape == (3, 32, 32)
    assert s.labels.tolist() == [0, 1, 2, 0, 9, 5]
    for i in range(6):
        for c in range(3):
            np.testing.assert_array_equal(s.images[i, c].numpy(), x[:, :, c, i])


def test_svhn_missing_and_download(tmp_path, monkeypatch):
    with pytest.raises(BenchError, match=r"svhn: test_32x32.mat not found .*--download"):
        load_set("svhn", "test", ctx_for(tmp_path))

    def offline(tv_class, **kw):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(files_mod, "torchvision_download", offline)
    with pytest.raises(BenchError, match=r"download into .* failed \(<urlopen error no network>\)"):
        load_set("svhn", "test", ctx_for(tmp_path, download=True))

    def fake(tv_class, root, split):   # what torchvision.datasets.SVHN leaves behind
        assert (tv_class, split) == ("SVHN", "test")
        Path(root).mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(Path(root) / "test_32x32.mat",
                         {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[10], [3]])})

    monkeypatch.setattr(files_mod, "torchvision_download", fake)
    _, s = load_set("svhn", "test", ctx_for(tmp_path, download=True))
    assert s.labels.tolist() == [0, 3] and s.source == str(tmp_path / "svhn" / "test_32x32.mat")
    with pytest.raises(BenchError, match=r"no split 'train' \(splits: test\)"):
        load_set("svhn", "train", ctx_for(tmp_path))


def test_mnist_test_from_shared_data(shared_data):
    ds, s = load_set("mnist", "test", ctx_for(shared_data))
    raw = shared_data / "MNIST" / "raw"
    x = np.frombuffer(gzip.open(raw / "t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    y = np.frombuffer(gzip.open(raw / "t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    assert ds.proximity == "far" and len(s) == 10000 and s.shape == (1, 28, 28)
    np.testing.assert_array_equal(s.images.numpy(), x.reshape(-1, 1, 28, 28))
    np.testing.assert_array_equal(s.labels.numpy(), y)
    # per-digit counts listed in MANIFEST.md
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    with pytest.raises(BenchError, match=r"train-images-idx3-ubyte\(\.gz\) not found"):
        load_set("mnist", "train", ctx_for(shared_data))


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def test_mnist_uncompressed_train_split(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 256, (4, 5, 6), dtype=np.uint8), np.array([3, 1, 4, 1], np.uint8)
    (raw / "train-images-idx3-ubyte").write_bytes(_idx(x))
    (raw / "train-labels-idx1-ubyte").write_bytes(_idx(y))
    _, s = load_set("mnist", "train", ctx_for(tmp_path))
    np.testing.assert_array_equal(s.images.numpy(), x[:, None])
    assert s.labels.tolist() == [3, 1, 4, 1]
    (raw / "train-images-idx3-ubyte").write_bytes(_idx(x)[:-3])
    with pytest.raises(BenchError, match="truncated"):
        load_set("mnist", "train", ctx_for(tmp_path))


# --------------------------------------------------------------------------------------------
# npz
# --------------------------------------------------------------------------------------------
def test_npz_tinyimagenet_val_with_and_without_exclude(shared_data):
    path = shared_data / "ood" / "tinyimagenet_val_resize32.npz"
    z = np.load(path)
    x, y, overlap = z["images"], z["labels"].astype(np.int64), z["cifar10_overlap"]
    lookalike = z["cifar10_lookalike"]
    ctx = ctx_for(shared_data)

    ds, full = load_set(f"npz:{path}", "test", ctx)
    assert len(full) == 10000 and full.shape == (3, 32, 32) and ds.proximity == "near"
    np.testing.assert_array_equal(full.images.numpy(), x.transpose(0, 3, 1, 2))

    _, clean = load_set(f"npz:{path}(exclude=cifar10_overlap)", "test", ctx)
    keep = np.array([not overlap[label] for label in y])   # per-image loop: independent of the code
    assert len(clean) == keep.sum() == 10000 - 1200
    np.testing.assert_array_equal(clean.images.numpy(), x[keep].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(clean.labels.numpy(), y[keep])
    assert clean.name == "tinyimagenet_val_resize32(exclude=cifar10_overlap)"
    assert clean.extra["n_excluded"] == 1200 and clean.classes == list(z["class_names"])

    # relative to the data root, two keys = union
    _, strict = load_set("npz:ood/tinyimagenet_val_resize32.npz(exclude=(cifar10_overlap, "
                         "cifar10_lookalike))", "test", ctx)
    assert len(strict) == int((~(overlap | lookalike)[y]).sum()) == 8450


@pytest.mark.parametrize("name,n,proximity", [("tinyimagenet_test_resize32", 10000, "near"),
                                              ("tinyimagenet_val_resize32", 10000, "near"),
                                              ("dtd_subset10_resize32", 1200, "far"),
                                              ("mnist_test_resize32", 10000, "far")])
def test_npz_every_shared_file_loads(shared_data, name, n, proximity):
    ds, s = load_set(f"npz:ood/{name}.npz", "test", ctx_for(shared_data))
    assert len(s) == n and s.shape == (3, 32, 32) and s.images.dtype == torch.uint8
    assert ds.proximity == proximity and s.name == name
    first = np.load(shared_data / "ood" / f"{name}.npz")["images"][0]
    np.testing.assert_array_equal(s.images[0].numpy(), first.transpose(2, 0, 1))


def test_npz_small_files_layouts_and_path_resolution(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    rgb = rng.integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    np.savez(tmp_path / "grey.npz", images=grey)
    np.savez(tmp_path / "rgb.npz", images=rgb, labels=np.array([1, 0], np.int16))
    _, g = load_set(f"npz:{tmp_path / 'grey.npz'}", "test", ctx_for(tmp_path))
    assert g.labels is None and g.shape == (1, 4, 5)
    np.testing.assert_array_equal(g.images[:, 0].numpy(), grey)
    ds, c = load_set(f"npz:{tmp_path / 'rgb.npz'}(proximity=far)", "test", ctx_for(tmp_path))
    assert ds.proximity == "far" and c.labels.tolist() == [1, 0] and c.labels.dtype == torch.int64
    assert c.images[1, 2, 3, 4].item() == rgb[1, 3, 4, 2]
    assert c.name == "rgb"   # proximity does not change the data, so it is not in the name
    # a relative path: the current directory wins over the data root
    cwd, root = tmp_path / "cwd", tmp_path / "root"
    for d, n in ((cwd, 1), (root, 2)):
        d.mkdir()
        np.savez(d / "rel.npz", images=np.zeros((n, 2, 2), np.uint8))
    monkeypatch.chdir(cwd)
    assert len(load_set("npz:rel.npz", "test", ctx_for(root))[1]) == 1
    (cwd / "rel.npz").unlink()
    assert len(load_set("npz:rel.npz", "test", ctx_for(root))[1]) == 2


def _bad_npz(tmp_path: Path, **arrays) -> str:
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    return str(p)


@pytest.mark.parametrize("arrays,params,match", [
    ({"pixels": np.zeros((2, 4, 4), np.uint8)}, "", r"has no array 'images' \(arrays: pixels\)"),
    ({"images": np.zeros((2, 4, 4), np.float32)}, "", r"must be uint8 0\.\.255, got float32"),
    ({"images": np.zeros((2, 16), np.uint8)}, "", r"got shape \(2, 16\)$"),
    ({"images": np.zeros((2, 3, 4, 4), np.uint8)}, "", r"looks like NCHW"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(3, np.int64)}, "",
     r"3 labels for 2 images"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.zeros(2, np.int64),
      "ok": np.array([True, False])}, "(exclude=nope)",
     r"no array 'nope' .*boolean arrays there: ok"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 2]),
      "m": np.array([True, False])}, "(exclude=m)",
     r"has length 2, expected more than the largest label 2"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 1]),
      "class_names": np.array(["a", "b", "c"]), "m": np.array([True, False])}, "(exclude=m)",
     r"has length 2, expected 3 \(one per class\)"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 1]),
      "m": np.array([1, 0])}, "(exclude=m)", r"must be 1-D bool"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([1, 1]),
      "m": np.array([False, True])}, "(exclude=m)", r"leaves an empty set"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "m": np.array([False, True])}, "(exclude=m)",
     r"exclude= needs per-image 'labels'"),
    ({"images": np.zeros((0, 4, 4), np.uint8)}, "", r"holds no images \(empty set\)"),
    ({"images": np.zeros((2, 4, 4), np.uint8)}, "(proximity=close)",
     r"proximity must be near or far"),
])
def test_npz_errors(tmp_path, arrays, params, match):
    spec = f"npz:{_bad_npz(tmp_path, **arrays)}{params}"
    with pytest.raises(BenchError, match=match) as e:
        load_set(spec, "test", ctx_for(tmp_path))
    assert "\n" not in str(e.value)


def test_npz_missing_path_and_folder(tmp_path):
    with pytest.raises(BenchError, match=r"npz:nothere\.npz: nothere\.npz not found \(looked for "):
        load_set("npz:nothere.npz", "test", ctx_for(tmp_path))
    with pytest.raises(BenchError, match=r"is a folder; use folder:"):
        load_set(f"npz:{tmp_path}", "test", ctx_for(tmp_path))


# --------------------------------------------------------------------------------------------
# folder
# --------------------------------------------------------------------------------------------
def test_folder_imagefolder_layout(tmp_path):
    rng = np.random.default_rng(5)
    root = tmp_path / "my_pictures"
    arrays = {}
    for cls in ("zebra", "apple"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            a = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / cls / f"{i}.png")
            arrays[(cls, i)] = a
    (root / "notes.txt").write_text("not an image")
    ds, s = load_set(f"folder:{root}", "test", ctx_for(tmp_path))
    assert s.classes == ["apple", "zebra"] and s.labels.tolist() == [0, 0, 1, 1]
    assert s.shape == (3, 4, 6) and s.name == "my_pictures"
    order = [("apple", 0), ("apple", 1), ("zebra", 0), ("zebra", 1)]
    for k, key in enumerate(order):
        np.testing.assert_array_equal(s.images[k].numpy(), arrays[key].transpose(2, 0, 1))
    assert ds.proximity is None


def test_folder_flat_grey_resize_and_errors(tmp_path):
    rng = np.random.default_rng(6)
    flat = tmp_path / "mnist_pngs"
    flat.mkdir()
    a = rng.integers(0, 256, (5, 5), dtype=np.uint8)
    b = rng.integers(0, 256, (8, 6), dtype=np.uint8)
    Image.fromarray(a).save(flat / "a.png")
    Image.fromarray(b).save(flat / "b.png")
    with pytest.raises(BenchError, match=r"a\.png is 5x5, b\.png is 6x8\); add size=32"):
        load_set(f"folder:{flat}", "test", ctx_for(tmp_path))
    ds, s = load_set(f"folder:{flat}(size=4)", "test", ctx_for(tmp_path))
    assert ds.proximity == "far" and s.labels is None and s.shape == (1, 4, 4)
    want = np.asarray(Image.fromarray(b).resize((4, 4), Image.BILINEAR))
    np.testing.assert_array_equal(s.images[1, 0].numpy(), want)
    assert s.name == "mnist_pngs(size=4)"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BenchError, match=r"no images .*\(empty set\)"):
        load_set(f"folder:{empty}", "test", ctx_for(tmp_path))
    with pytest.raises(BenchError, match=r"not found"):
        load_set("folder:does/not/exist", "test", ctx_for(tmp_path))
    with pytest.raises(BenchError, match=r"size must be a positive integer"):
        load_set(f"folder:{flat}(size=0)", "test", ctx_for(tmp_path))


# --------------------------------------------------------------------------------------------
# synthetic
# --------------------------------------------------------------------------------------------
def test_gaussian_and_uniform_are_seeded_and_have_the_right_law():
    ctx = LoadContext(Path("."), seed=7, id_shape=(3, 16, 16), n_id_test=1500)
    g1, g2 = load_set("gaussian", "test", ctx)[1], load_set("gaussian", "test", ctx)[1]
    u1 = load_set("uniform", "test", ctx)[1]
    assert g1.shape == (3, 16, 16) and len(g1) == 1500 and g1.labels is None
    assert torch.equal(g1.images, g2.images)
    other = LoadContext(Path("."), seed=8, id_shape=(3, 16, 16), n_id_test=1500)
    assert not torch.equal(g1.images, load_set("gaussian", "test", other)[1].images)
    n = g1.images.numel()
    # gaussian: value 0 when x*255 < 0.5 after clipping, i.e. N(0.5, 0.25^2) < 0.5/255
    p0 = scipy.stats.norm.cdf((0.5 / 255 - 0.5) / 0.25)
    assert abs((g1.images == 0).sum().item() / n - p0) < 5 * np.sqrt(p0 / n)
    assert abs((g1.images == 255).sum().item() / n - p0) < 5 * np.sqrt(p0 / n)
    assert abs(g1.images.double().mean().item() / 255 - 0.5) < 1e-3
    # uniform: P(0) = P(255) = 0.5/255, every other value 1/255
    counts = np.bincount(u1.images.flatten().numpy(), minlength=256)
    probs = np.full(256, 1 / 255)
    probs[[0, 255]] = 0.5 / 255
    assert scipy.stats.chisquare(counts, probs * n).pvalue > 1e-4
    assert abs(u1.images.double().mean().item() / 255 - 0.5) < 1e-3
    with pytest.raises(BenchError, match="needs the ID set's image shape"):
        load_set("uniform", "test", LoadContext(Path(".")))


# --------------------------------------------------------------------------------------------
# resize_to
# --------------------------------------------------------------------------------------------
def test_resize_to_channels():
    rng = np.random.default_rng(8)
    grey = torch.from_numpy(rng.integers(0, 256, (4, 1, 6, 6), dtype=np.uint8))
    rgb3 = resize_to(grey, (3, 6, 6))
    for c in range(3):
        assert torch.equal(rgb3[:, c], grey[:, 0])
    rgb = rng.integers(0, 256, (50, 3, 6, 6), dtype=np.uint8)
    luma = resize_to(torch.from_numpy(rgb), (1, 6, 6)).numpy()[:, 0]
    f = rgb.astype(np.float64)
    want = np.round(0.299 * f[:, 0] + 0.587 * f[:, 1] + 0.114 * f[:, 2])
    diff = np.abs(luma.astype(np.int64) - want)
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99   # float32 vs float64 at .5 ties


def test_resize_to_bilinear_antialias_matches_interpolate_and_pil():
    rng = np.random.default_rng(9)
    x = torch.from_numpy(rng.integers(0, 256, (2100, 3, 12, 12), dtype=np.uint8))  # > one chunk
    y = resize_to(x, (3, 5, 7))
    want = torch.nn.functional.interpolate(x.float(), size=(5, 7), mode="bilinear",
                                           align_corners=False, antialias=True)
    assert torch.equal(y, want.round().clamp(0, 255).to(torch.uint8))
    pil = np.stack([np.asarray(Image.fromarray(im).resize((7, 5), Image.BILINEAR))
                    for im in x[:20].numpy().transpose(0, 2, 3, 1)]).transpose(0, 3, 1, 2)
    assert np.abs(y[:20].numpy().astype(int) - pil).max() <= 1
    assert resize_to(x, (3, 12, 12)) is x
    with pytest.raises(BenchError, match="cannot map 2-channel"):
        resize_to(torch.zeros(1, 2, 4, 4, dtype=torch.uint8), (3, 4, 4))


# --------------------------------------------------------------------------------------------
# load_set
# --------------------------------------------------------------------------------------------
def test_load_set_errors(monkeypatch):
    class Empty(Dataset):
        def load(self, split, ctx):
            return ImageSet("empty", torch.zeros(0, 1, 2, 2, dtype=torch.uint8), source="/x")

    Empty.name = "empty_for_test"
    monkeypatch.setitem(DATASETS._entries, "empty_for_test", _Entry("empty_for_test", obj=Empty))
    with pytest.raises(BenchError, match=r"'empty_for_test' split 'test' is an empty set"):
        load_set("empty_for_test", "test", ctx_for(Path(".")))
    with pytest.raises(BenchError, match=r"has no split 'val' \(splits: train, test\)"):
        load_set("digits", "val", ctx_for(Path(".")))
    with pytest.raises(BenchError, match=r"unknown dataset 'digit'; did you mean 'digits'"):
        load_set("digit", "test", ctx_for(Path(".")))
    with pytest.raises(BenchError, match=r"has no parameter 'size'"):
        load_set("digits(size=3)", "test", ctx_for(Path(".")))
