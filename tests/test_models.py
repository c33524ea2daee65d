"""Classifiers: architectures against independent forwards, public checkpoints against the
accuracies MANIFEST.md states, checkpoint errors, the zoo, first-use training and its cache."""

from __future__ import annotations

import hashlib
import io
import math
import shutil
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from bench.datasets.base import ImageSet
from bench.errors import BenchError
from bench.models import load_classifier, resolve_norm
from bench.models import train as train_mod
from bench.models import zoo
from bench.models.resnet_cifar import ShortcutA
from bench.models.train import augment_batch, save_checkpoint, train_classifier

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
N_TEST = 1000          # first JPEG test images used for accuracy checks
CIFAR = dict(num_classes=10, in_channels=3, image_size=32, dataset="cifar10")
DIGITS = dict(num_classes=10, in_channels=1, image_size=8, dataset="digits")


# --------------------------------------------------------------------------------------------
# fixtures: data decoded here, independently of bench.datasets
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These small CPU models run many times slower with 2 OpenMP threads on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def jpeg_test(shared_data) -> tuple[torch.Tensor, torch.Tensor]:
    """First N_TEST images of cifar10-jpeg/test.npz decoded with PIL: float [0,1] (N,3,32,32)."""
    z = np.load(shared_data / "cifar10-jpeg" / "test.npz")
    o, blob = z["offsets"], z["jpeg"]
    imgs = np.stack([np.asarray(Image.open(io.BytesIO(blob[o[i]:o[i + 1]].tobytes()))
                                .convert("RGB")) for i in range(N_TEST)])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.from_numpy(z["labels"][:N_TEST].astype(np.int64))


@pytest.fixture(scope="module")
def digits() -> tuple[ImageSet, ImageSet]:
    """METHODS §1 digits: uint8 round(v*255/16), stratified 50/50 split with random_state=0."""
    d = load_digits()
    x = np.round(d.images * 255 / 16).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.5, stratify=y, random_state=0)
    mk = lambda name, i: ImageSet(name, torch.from_numpy(x[i]), torch.from_numpy(y[i]),
                                  classes=[str(k) for k in range(10)])
    return mk("digits-train", tr), mk("digits-test", te)


def weights(shared_data: Path, name: str) -> Path:
    sub = "shiftbench" if name.endswith(".pt") else "akamaster"
    return shared_data / "weights" / sub / name


def acc_of(model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((model(x).argmax(1) == y).double().mean())


def tolerance(p: float, n: int = N_TEST, total: int = 10_000) -> float:
    """4 standard deviations of the accuracy of n images drawn without replacement from total."""
    return 4 * math.sqrt(p * (1 - p) / n * (1 - n / total))


# --------------------------------------------------------------------------------------------
# an independent functional ResNet forward from the raw akamaster state_dict
# --------------------------------------------------------------------------------------------
def reference_forward(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """akamaster resnet.py written out with F.conv2d/F.batch_norm (eval), on normalised x."""
    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], training=False, eps=1e-5)

    out = F.relu(bn(F.conv2d(x, sd["conv1.weight"], padding=1), "bn1"))
    for stage in (1, 2, 3):
        i = 0
        while f"layer{stage}.{i}.conv1.weight" in sd:
            p = f"layer{stage}.{i}"
            stride = 2 if stage > 1 and i == 0 else 1
            h = F.relu(bn(F.conv2d(out, sd[p + ".conv1.weight"], stride=stride, padding=1),
                          p + ".bn1"))
            h = bn(F.conv2d(h, sd[p + ".conv2.weight"], padding=1), p + ".bn2")
            if stride == 2:
                sub = out[:, :, ::2, ::2]
                z = torch.zeros(sub.shape[0], sub.shape[1] // 2, *sub.shape[2:])
                short = torch.cat([z, sub, z], 1)
            else:
                short = out
            out = F.relu(h + short)
            i += 1
    f = F.avg_pool2d(out, out.shape[3]).flatten(1)
    return f @ sd["linear.weight"].T + sd["linear.bias"], f


def raw_state_dict(path: Path) -> dict:
    sd = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len("module."):]: v for k, v in sd.items()}


# --------------------------------------------------------------------------------------------
# public checkpoints
# --------------------------------------------------------------------------------------------
def test_resnet20_akamaster_matches_reference_and_manifest_accuracy(shared_data, jpeg_test):
    x, y = jpeg_test
    path = weights(shared_data, "resnet20-12fca82f.th")
    model, info = load_classifier("resnet20", weights=path, **CIFAR)
    assert not model.training
    assert info["source"] == "file" and info["norm"] == "imagenet"
    assert info["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["weights_sha256"].startswith("12fca82f")

    # logits and features equal an independent functional forward (MANIFEST: within 4e-6)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    ref_logits, ref_f = reference_forward(raw_state_dict(path), (x[:32] - mean) / std)
    with torch.inference_mode():
        logits, f = model.forward_features(x[:32])
        head = model.net.fc(f)
    assert f.shape == (32, 64)
    torch.testing.assert_close(f, ref_f, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(logits, ref_logits, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(head, logits)

    # MANIFEST §2: 81.03 % on the 10,000 JPEG test images with ImageNet normalisation
    acc = acc_of(model, x, y)
    assert abs(acc - 0.8103) < tolerance(0.8103), acc


def test_resnet20_without_normalisation_collapses(shared_data, jpeg_test):
    """MANIFEST §2: 27.79 % with no normalisation, so the norm choice really reaches the net."""
    x, y = jpeg_test
    model, info = load_classifier("resnet20", weights=weights(shared_data, "resnet20-12fca82f.th"),
                                  norm="none", **CIFAR)
    assert info["mean"] == [0.0] * 3 and info["std"] == [1.0] * 3
    acc = acc_of(model, x[:500], y[:500])
    assert abs(acc - 0.2779) < tolerance(0.2779, 500), acc


def test_shiftbench_finetuned_resnet20(shared_data, jpeg_test):
    x, y = jpeg_test
    path = weights(shared_data, "resnet20-cifar10jpeg-a926624b.pt")
    model, info = load_classifier("resnet20", weights=path, **CIFAR)
    assert info["weights_sha256"].startswith("a926624b")
    assert info["norm"] == "imagenet" and info["zoo"] == "resnet20-cifar10jpeg"
    sd = raw_state_dict(path)
    assert int(model.net.layer3[2].bn2.num_batches_tracked) == int(sd["layer3.2.bn2.num_batches_tracked"])
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    with torch.inference_mode():
        torch.testing.assert_close(model(x[:16]), reference_forward(sd, (x[:16] - mean) / std)[0],
                                   atol=2e-5, rtol=1e-5)
    # MANIFEST §2b: 88.06 % on the full JPEG test set
    acc = acc_of(model, x, y)
    assert abs(acc - 0.8806) < tolerance(0.8806), acc


@pytest.mark.parametrize("arch,file", [("resnet32", "resnet32-d509ac18.th"),
                                       ("resnet56", "resnet56-4bfd9763.th")])
def test_deeper_akamaster_checkpoints_load_strict(shared_data, jpeg_test, arch, file):
    x, _ = jpeg_test
    path = weights(shared_data, file)
    model, _ = load_classifier(arch, weights=path, **CIFAR)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    with torch.inference_mode():
        torch.testing.assert_close(model(x[:8]), reference_forward(raw_state_dict(path),
                                                                   (x[:8] - mean) / std)[0],
                                   atol=5e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# architectures
# --------------------------------------------------------------------------------------------
def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.arange(2 * 16 * 8 * 8, dtype=torch.float32).view(2, 16, 8, 8)
    out = ShortcutA(8)(x)
    assert out.shape == (2, 32, 4, 4)
    expect = np.zeros((2, 32, 4, 4), np.float32)
    expect[:, 8:24] = x.numpy()[:, :, 0::2, 0::2]
    np.testing.assert_array_equal(out.numpy(), expect)


@pytest.mark.parametrize("arch,n_params", [("resnet20", 269_722), ("resnet32", 464_154),
                                           ("resnet44", 658_586), ("resnet56", 853_018)])
def test_cifar_resnet_shapes_and_parameter_counts(arch, n_params):
    from bench.registry import MODELS

    net = MODELS.create(arch).build(10, 3, 32).eval()
    assert sum(p.numel() for p in net.parameters()) == n_params   # MANIFEST §2
    blocks = [b for layer in (net.layer1, net.layer2, net.layer3) for b in layer]
    assert len(blocks) == (int(arch[6:]) - 2) // 2
    # option A: parameter-free shortcuts exactly at the two stage transitions
    a = [b for b in blocks if isinstance(b.shortcut, ShortcutA)]
    assert [b.shortcut.pad for b in a] == [8, 16]
    assert not any(p.numel() for b in blocks for p in b.shortcut.parameters())
    with torch.no_grad():
        f = net.features(torch.rand(2, 3, 32, 32))
    assert f.shape == (2, 64) and net.fc.out_features == 10


def test_resnet18_cifar_stem_and_shapes():
    from bench.registry import MODELS

    net = MODELS.create("resnet18").build(7, 3, 32).eval()
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        f = net.features(x)
        assert f.shape == (2, 512)
        assert net(x).shape == (2, 7)
        torch.testing.assert_close(net.fc(f), net(x))
        # the stem keeps 32x32: layer4 sees 4x4
        h = net.layer3(net.layer2(net.layer1(net.relu(net.bn1(net.conv1(x))))))
        assert net.layer4(h).shape == (2, 512, 4, 4)


# --------------------------------------------------------------------------------------------
# checkpoint errors
# --------------------------------------------------------------------------------------------
def test_wrong_checkpoint_names_the_keys(shared_data):
    with pytest.raises(BenchError, match=r"do not fit resnet20: unexpected keys layer1\.3\.\*.*"
                                         r"looks like a resnet32"):
        load_classifier("resnet20", weights=weights(shared_data, "resnet32-d509ac18.th"), **CIFAR)
    with pytest.raises(BenchError, match=r"do not fit resnet32: missing keys .*layer3\.4\.\*"):
        load_classifier("resnet32", weights=weights(shared_data, "resnet20-12fca82f.th"), **CIFAR)
    with pytest.raises(BenchError, match=r"shape mismatch .*linear\.weight \(10, 64\) vs \(100, 64\)"):
        load_classifier("resnet20", weights=weights(shared_data, "resnet20-12fca82f.th"),
                        **{**CIFAR, "num_classes": 100})


def test_unreadable_weights_are_bench_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BenchError, match="cannot read weights .*garbage.pt.*not a torch checkpoint"):
        load_classifier("resnet20", weights=garbage, **CIFAR)
    with pytest.raises(BenchError, match="does not exist"):
        load_classifier("resnet20", weights=tmp_path / "nope.th", **CIFAR)
    odd = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "acc": 0.5}, odd)
    with pytest.raises(BenchError, match="hold no state_dict"):
        load_classifier("resnet20", weights=odd, **CIFAR)


def test_resnet_without_weights_is_an_error_not_a_random_model(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    with pytest.raises(BenchError, match=r"resnet20 needs weights: pass --weights PATH or a zoo "
                                         r"name \(zoo:resnet20"):
        load_classifier("resnet20", **CIFAR)
    with pytest.raises(BenchError, match="resnet18 needs weights"):
        load_classifier("resnet18", **CIFAR)


# --------------------------------------------------------------------------------------------
# zoo
# --------------------------------------------------------------------------------------------
def _fake_download(src: Path, calls: list):
    def download(url: str, dst: str, progress: bool = True) -> None:
        calls.append(url)
        shutil.copyfile(src, dst)
    return download


def test_zoo_download_checks_the_hash(monkeypatch, tmp_path, shared_data):
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    calls: list[str] = []
    monkeypatch.setattr(zoo, "download_url_to_file",
                        _fake_download(weights(shared_data, "resnet20-12fca82f.th"), calls))
    model, info = load_classifier("resnet20", weights="zoo:resnet20", **CIFAR)
    cached = tmp_path / "weights" / "resnet20-12fca82f.th"
    assert calls == ["https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/"
                     "pretrained_models/resnet20-12fca82f.th"]
    assert cached.read_bytes() == weights(shared_data, "resnet20-12fca82f.th").read_bytes()
    assert info["source"] == "zoo" and info["weights"] == str(cached) and info["norm"] == "imagenet"
    assert sorted(p.name for p in cached.parent.iterdir()) == [cached.name]

    # cached now: no second download; `akamaster` and no weights at all resolve to it too
    for w in ("akamaster", "zoo:akamaster", None):
        _, info = load_classifier("resnet20", weights=w, **CIFAR)
        assert info["weights"] == str(cached) and info["source"] == "zoo"
    assert len(calls) == 1

    # a download with the wrong content is discarded and leaves nothing behind
    monkeypatch.setattr(zoo, "download_url_to_file",
                        _fake_download(weights(shared_data, "resnet20-12fca82f.th"), calls))
    with pytest.raises(BenchError, match=r"zoo:resnet32 .*sha256 12fca82f0beb\.\.\., expected "
                                         r"d509ac1820d7"):
        load_classifier("resnet32", weights="zoo:resnet32", **CIFAR)
    assert sorted(p.name for p in cached.parent.iterdir()) == [cached.name]

    # a corrupted cache file is reported, not used
    cached.write_bytes(b"x" + cached.read_bytes()[1:])
    with pytest.raises(BenchError, match="delete it"):
        load_classifier("resnet20", weights="zoo:resnet20", **CIFAR)


def test_zoo_offline_and_name_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))

    def offline(url, dst, progress=True):
        raise URLError("Name or service not known")

    monkeypatch.setattr(zoo, "download_url_to_file", offline)
    with pytest.raises(BenchError, match=r"offline\? pass --weights PATH .* --weights "
                                         r"\.\./shared/data/weights/akamaster/resnet44-014dd654\.th"):
        load_classifier("resnet44", weights="zoo:resnet44", **CIFAR)
    assert not list((tmp_path / "weights").iterdir())
    with pytest.raises(BenchError, match="no public download.*shiftbench/resnet20-cifar10jpeg"):
        load_classifier("resnet20", weights="zoo:resnet20-cifar10jpeg", **CIFAR)
    with pytest.raises(BenchError, match="did you mean zoo:resnet20"):
        load_classifier("resnet20", weights="zoo:resnt20", **CIFAR)
    with pytest.raises(BenchError, match="zoo:resnet20 is a resnet20 checkpoint, the model is resnet56"):
        load_classifier("resnet56", weights="zoo:resnet20", **CIFAR)
    with pytest.raises(BenchError, match="akamaster has no resnet18"):
        load_classifier("resnet18", weights="akamaster", **CIFAR)


def test_zoo_hashes_match_the_shared_copies(shared_data):
    for e in zoo.ZOO:
        path = shared_data / e.shared_path
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e.sha256, e.name
        assert e.file == path.name


# --------------------------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------------------------
def test_normalisation_choices():
    assert resolve_norm("imagenet", 3) == ("imagenet", *IMAGENET)
    assert resolve_norm("CIFAR10", 3) == ("cifar10", *CIFAR10)
    assert resolve_norm("none", 1) == ("none", (0.0,), (1.0,))
    name, mean, std = resolve_norm("mean:0.5,0.25,0/std:0.5,0.5,2", 3)
    assert (mean, std) == ((0.5, 0.25, 0.0), (0.5, 0.5, 2.0))
    assert resolve_norm(name, 3) == (name, mean, std)        # the recorded name reads back
    assert resolve_norm("mean:0.3/std:0.2", 3)[1:] == ((0.3,) * 3, (0.2,) * 3)
    for bad, msg in [("imagenet1k", "unknown norm"), ("mean:a/std:1", "cannot read numbers"),
                     ("mean:0,0/std:1", "needs 1 or 3"), ("mean:0/std:0", "must be positive")]:
        with pytest.raises(BenchError, match=msg):
            resolve_norm(bad, 3)
    with pytest.raises(BenchError, match="3 channels but the images have 1"):
        resolve_norm("imagenet", 1)


def test_norm_reaches_the_classifier(shared_data):
    path = weights(shared_data, "resnet20-12fca82f.th")
    for norm, (mean, std) in [("cifar10", CIFAR10), (None, IMAGENET)]:
        model, info = load_classifier("resnet20", weights=path, norm=norm, **CIFAR)
        assert info["mean"] == list(mean) and info["std"] == list(std)
        torch.testing.assert_close(model.mean.flatten(), torch.tensor(mean))
        torch.testing.assert_close(model.std.flatten(), torch.tensor(std))
        x = torch.rand(1, 3, 2, 2)
        expect = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        torch.testing.assert_close(model.normalize(x), expect)


# --------------------------------------------------------------------------------------------
# cnn: first-use training and its cache
# --------------------------------------------------------------------------------------------
def test_cnn_trains_on_first_use_then_loads_from_cache(digits, monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    train, test = digits
    with pytest.raises(BenchError, match="needs the ID train split"):
        load_classifier("cnn", **DIGITS)
    model, info = load_classifier("cnn", train_set=train, **DIGITS)
    assert info["source"] == "trained" and info["norm"] == "none"
    cached = Path(info["weights"])
    assert cached.parent == tmp_path / "models" and cached.name.startswith("cnn-")
    assert info["weights_sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    x_te = test.images.float() / 255
    assert acc_of(model, x_te, test.labels) > 0.9
    with torch.inference_mode():
        logits, f = model.forward_features(x_te)
        head = model.net.fc(f)
    assert f.shape == (len(test), 64)
    torch.testing.assert_close(head, logits)

    def no_training(*a, **k):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(train_mod, "fit", no_training)
    again, info2 = load_classifier("cnn", train_set=train, **DIGITS)
    assert info2["source"] == "cache"
    assert info2["weights_sha256"] == info["weights_sha256"]
    with torch.inference_mode():
        torch.testing.assert_close(again(x_te), logits)
    assert len(list((tmp_path / "models").iterdir())) == 1   # atomic write left no temp file

    # other data or another seed mean another cache entry (and so a training)
    with pytest.raises(AssertionError, match="trained again"):
        load_classifier("cnn", train_set=train, seed=1, **DIGITS)
    sub = ImageSet("digits-sub", train.images[:-1], train.labels[:-1])
    with pytest.raises(AssertionError, match="trained again"):
        load_classifier("cnn", train_set=sub, **DIGITS)
    with pytest.raises(AssertionError, match="trained again"):
        load_classifier("cnn(width=16)", train_set=train, **DIGITS)


# --------------------------------------------------------------------------------------------
# train_classifier
# --------------------------------------------------------------------------------------------
def test_train_classifier_holdout_and_determinism(digits, tmp_path):
    train, _ = digits
    seen: list[tuple[int, int, float]] = []
    kw = dict(epochs=12, batch_size=64, lr=0.05, device="cpu", seed=3, holdout=0.2, crop_pad=0,
              flip=False)
    model, info = train_classifier("cnn", train, progress=lambda *a: seen.append(a), **kw)
    assert [s[:2] for s in seen] == [(e, 12) for e in range(1, 13)]
    assert [s[2] for s in seen] == info["losses"] and info["losses"][-1] < info["losses"][0]

    # the hold-out is sklearn's stratified split with random_state=seed
    y = train.labels.numpy()
    _, ho = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=3)
    ho = np.sort(ho)
    assert info["n_holdout"] == len(ho) == 180 and info["n_train"] == len(y) - 180
    assert info["holdout_indices_sha256"] == hashlib.sha256(ho.astype("<i8").tobytes()).hexdigest()
    assert np.abs(np.bincount(y[ho]) - 18).max() <= 1
    x_ho = train.images[torch.from_numpy(ho)].float() / 255
    assert info["holdout_acc"] == pytest.approx(acc_of(model, x_ho, train.labels[torch.from_numpy(ho)]))
    assert info["holdout_acc"] > 0.85
    assert info["source"] == "trained" and info["config"]["nesterov"] is True

    # same seed -> same weights; checkpoint round trip keeps weights and normalisation
    again, _ = train_classifier("cnn", train, **kw)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    path = tmp_path / "cnn.pt"
    digest = save_checkpoint(model, path, info={"holdout_acc": info["holdout_acc"]})
    loaded, linfo = load_classifier("cnn", weights=path, **DIGITS)
    assert linfo["weights_sha256"] == digest and linfo["source"] == "file"
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x_ho), model(x_ho))


def test_train_classifier_resnet_smoke_with_augmentation():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(24) % 3
    data = ImageSet("noise", x, y, classes=["a", "b", "c"])
    model, info = train_classifier("resnet20", data, epochs=1, batch_size=8, lr=0.01, device="cpu",
                                   norm="cifar10")
    assert info["config"]["crop_pad"] == 4 and info["config"]["flip"] is True
    assert info["norm"] == "cifar10" and model.num_classes == 3 and not model.training
    assert info["holdout_acc"] is None and info["n_holdout"] == 0
    with pytest.raises(BenchError, match="holdout must be a fraction"):
        train_classifier("resnet20", data, epochs=1, holdout=1.0)


def test_augment_batch_is_a_padded_crop_and_flip_per_image():
    pad = 2
    x = torch.rand(64, 3, 6, 5)
    out = augment_batch(x, pad=pad, flip=True, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    found = set()
    for i in range(64):
        matches = [(dy, dx, fl) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   for fl in (False, True)
                   if np.array_equal(out[i].numpy(), (lambda c: c[..., ::-1] if fl else c)(
                       xp[i, :, dy:dy + 6, dx:dx + 5]))]
        assert matches, f"image {i} is no crop/flip of its padded input"
        found.update(matches)
    # offsets and flips differ between images (one draw per image, not per batch)
    assert len({m[:2] for m in found}) > 10 and {m[2] for m in found} == {False, True}
    same = augment_batch(x, pad=pad, flip=True, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, same, rtol=0, atol=0)


def test_models_base_train_views_form_no_import_cycle():
    """bench.models imports train and zoo; none of those (nor views) may import bench.models back."""
    import ast
    import importlib.util

    def bench_imports(module: str) -> set[str]:
        tree = ast.parse(open(importlib.util.find_spec(module).origin).read())
        out = set()
        for node in ast.walk(tree):  # function-level and TYPE_CHECKING imports count too
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench"):
                out |= {f"{node.module}.{a.name}" if node.module == "bench.models"
                        and a.name in ("train", "zoo", "base") else node.module
                        for a in node.names}
        return out

    for module in ("bench.models.base", "bench.models.train", "bench.models.zoo", "bench.views"):
        deps = bench_imports(module)
        assert "bench.models" not in deps, (module, deps)
        assert not {"bench.models.train", "bench.models.zoo"} & deps - {module}, (module, deps)
    assert bench_imports("bench.models") >= {"bench.models.base", "bench.models.train"}


def test_model_device_and_file_sha256_have_one_home(tmp_path):
    from bench.cache import file_sha256
    from bench.models import sha256_file
    from bench.models.base import model_device

    assert sha256_file is file_sha256
    p = tmp_path / "w.bin"
    p.write_bytes(b"x" * 3000)
    assert file_sha256(p) == hashlib.sha256(b"x" * 3000).hexdigest()
    assert model_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters: CPU
    bn = torch.nn.BatchNorm1d(2, affine=False).to("meta")          # buffers only
    assert model_device(bn) == torch.device("meta")
