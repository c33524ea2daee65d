"""ImageNet-style data read batch by batch (``imagefolder:``) and ecosystem models
(``torchvision:``, ``timm:``): the adapters against the libraries themselves, shifted images
independent of batch size and loader workers, and the whole run through the ``bench`` executable.

The ImageFolder is built from real CIFAR-10 test and train JPEGs (shared data), upsampled to
224 x 224, with TinyImageNet images as the OOD folder."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

BENCH = str(Path(sys.executable).parent / "bench")
SIZE = 224


def _write_images(out: Path, src: dict, per_class: int) -> None:
    from PIL import Image

    counts: dict[int, int] = {}
    for i, c in enumerate(src["labels"].tolist()):
        if counts.get(c, 0) >= per_class:
            continue
        counts[c] = counts.get(c, 0) + 1
        raw = src["jpeg"][src["offsets"][i]:src["offsets"][i + 1]].tobytes()
        im = Image.open(io.BytesIO(raw)).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC)
        p = out / str(src["class_names"][c]) / f"{i:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        im.save(p, quality=90)
        if len(counts) == 10 and min(counts.values()) >= per_class:
            break


@pytest.fixture(scope="module")
def folders(shared_data, tmp_path_factory) -> SimpleNamespace:
    """ROOT/train (10 per class), ROOT/val (10 per class: 10 val + 90 scored), an OOD folder
    of 40 images, and a torchvision ResNet-18 (10 classes) and timm ResNet-18 saved to files."""
    import torchvision
    from PIL import Image

    base = tmp_path_factory.mktemp("imagefolder")
    train = dict(np.load(shared_data / "cifar10-jpeg" / "train.npz"))
    test = dict(np.load(shared_data / "cifar10-jpeg" / "test.npz"))
    _write_images(base / "root" / "train", train, 10)
    _write_images(base / "root" / "val", test, 10)
    ood = np.load(shared_data / "ood" / "tinyimagenet_test_resize32.npz")["images"][:40]
    (base / "ood").mkdir()
    for i, a in enumerate(ood):
        Image.fromarray(a).resize((SIZE, SIZE), Image.BICUBIC).save(base / "ood" / f"{i:03d}.jpg",
                                                                     quality=90)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        tv = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(tv.state_dict(), base / "r18.pt")
    return SimpleNamespace(base=base, root=base / "root", ood=base / "ood", tv=tv,
                           weights=base / "r18.pt")


def _bench(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_HOME": str(home)}
    return subprocess.run([BENCH, *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


# ------------------------------------------------------------------------------------------
# adapters: the libraries' own models and transforms
# ------------------------------------------------------------------------------------------
def test_torchvision_adapter_gives_the_library_models_logits_and_features(folders):
    from torchvision.models.feature_extraction import create_feature_extractor
    from torchvision.transforms.functional import normalize

    from bench.models import load_classifier

    clf, info = load_classifier(f"torchvision:resnet18(weights={folders.weights})",
                                num_classes=10, in_channels=3, image_size=SIZE, dataset="x")
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    z, f = clf.forward_features(x)
    xn = normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():
        ref = create_feature_extractor(folders.tv, {"flatten": "f", "fc": "z"})(xn)
    assert torch.equal(z, ref["z"]) and torch.equal(f, ref["f"])
    assert info["weights_sha256"] and info["mean"] == [0.485, 0.456, 0.406]
    assert info["library"].startswith("torchvision ")


def test_torchvision_adapter_cuts_any_head_at_its_last_linear():
    import torchvision

    from bench.models._library_net import split_last_linear

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torchvision.models.mobilenet_v3_small(num_classes=7).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = net(x)
        pre = net.classifier[:-1](torch.flatten(net.avgpool(net.features(x)), 1))
        split = split_last_linear(net)
        f = split.features(x)
    assert torch.equal(f, pre) and torch.equal(split.fc(f), ref)


def test_timm_adapter_gives_the_library_models_logits_and_features(tmp_path):
    timm = pytest.importorskip("timm")
    from bench.models import load_classifier

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = timm.create_model("resnet18", pretrained=False, num_classes=5).eval()
    torch.save(net.state_dict(), tmp_path / "t.pt")
    clf, info = load_classifier(f"timm:resnet18(checkpoint={tmp_path / 't.pt'})", num_classes=5,
                                in_channels=3, image_size=SIZE, dataset="x")
    cfg = timm.data.resolve_data_config({}, model=net)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        xn = (x - mean) / std
        ref_z = net(xn)
        ref_f = net.forward_head(net.forward_features(xn), pre_logits=True)
        z, f = clf.forward_features(x)
    assert torch.equal(z, ref_z) and torch.equal(f, ref_f)
    assert info["norm"] == "timm" and tuple(info["mean"]) == tuple(cfg["mean"])


def test_preprocessing_equals_the_libraries_transforms(folders):
    from PIL import Image
    from torchvision.models import ResNet18_Weights

    from bench.registry import MODELS, parse_spec

    path = next((folders.ood).glob("*.jpg"))
    im = Image.open(path).convert("RGB").resize((300, 260))   # not square: resize then crop
    pre = MODELS.create(parse_spec("torchvision:resnet18")).preprocess()
    ours = (pre(im).float() / 255 - torch.tensor(pre.mean).view(3, 1, 1)) \
        / torch.tensor(pre.std).view(3, 1, 1)
    theirs = ResNet18_Weights.DEFAULT.transforms()(im)
    assert pre.crop == 224 and pre.resize == 256 and ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)

    timm = pytest.importorskip("timm")
    pre_t = MODELS.create(parse_spec("timm:resnet18")).preprocess()
    cfg = timm.data.resolve_data_config({}, pretrained_cfg=timm.models.get_pretrained_cfg(
        "resnet18").to_dict())
    theirs_t = timm.data.create_transform(**cfg)(im)
    ours_t = (pre_t(im).float() / 255 - torch.tensor(pre_t.mean).view(3, 1, 1)) \
        / torch.tensor(pre_t.std).view(3, 1, 1)
    assert pre_t.interpolation == "bicubic" and pre_t.resize == 235
    torch.testing.assert_close(ours_t, theirs_t, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------
# streaming: the same images whatever the batch size and loader workers
# ------------------------------------------------------------------------------------------
def _stream_ctx(folders, batch_size: int, workers: int, model) -> SimpleNamespace:
    from bench.datasets.base import LoadContext
    from bench.registry import DATASETS, MODELS, parse_spec

    pre = MODELS.create(parse_spec("torchvision:resnet18")).preprocess()
    ds = DATASETS.create(f"imagefolder:{folders.root}")
    test = ds.load("test", LoadContext(data_root=folders.base, preprocess=pre))
    idx = torch.arange(3, len(test), 2)          # positions, as the scored test subset
    return SimpleNamespace(test_images=test.images[idx], test_labels=test.labels[idx],
                           test_index=idx, batch_size=batch_size, workers=workers,
                           device="cpu", model=model, precision="fp32", streams=True)


@pytest.mark.parametrize("spec", ["gaussian_noise", "salt_pepper(severity=5)", "pixel_dropout",
                                  "mix", "contrast"])
def test_shifted_images_do_not_depend_on_batch_size_or_workers(folders, spec):
    from bench.models import load_classifier
    from bench.registry import SHIFTS
    from bench.units import shifted_batches

    clf, _ = load_classifier(f"torchvision:resnet18(weights={folders.weights})", num_classes=10,
                             in_channels=3, image_size=SIZE, dataset="x")
    shift = SHIFTS.create(spec)
    a = torch.cat([x for _, x in shifted_batches(_stream_ctx(folders, 7, 0, clf), shift, 4)])
    b = torch.cat([x for _, x in shifted_batches(_stream_ctx(folders, 256, 2, clf), shift, 4)])
    assert a.shape == (49, 3, SIZE, SIZE)
    assert torch.equal(a, b)
    # another seed draws other values; the clean images are not returned unchanged
    c = torch.cat([x for _, x in shifted_batches(_stream_ctx(folders, 256, 0, clf), shift, 5)])
    if spec != "contrast":
        assert not torch.equal(a, c)


def test_streamed_images_are_the_decoded_files_and_the_set_names_them(folders):
    from PIL import Image

    from bench.registry import MODELS, parse_spec

    pre = MODELS.create(parse_spec("torchvision:resnet18")).preprocess()
    ctx = _stream_ctx(folders, 5, 2, None)
    imgs = ctx.test_images
    got = torch.cat([b for _, b in imgs.batches(5, workers=2)])
    files = imgs.files
    assert got.shape == (len(files), 3, 224, 224) and got.dtype == torch.uint8
    for k in (0, 17, len(files) - 1):   # a few, decoded independently with Pillow
        with Image.open(files[k]) as im:
            assert torch.equal(got[k], pre(im.convert("RGB")))
    # class folders sorted as ImageFolder: label = position of the folder name
    classes = sorted(p.name for p in (folders.root / "val").iterdir())
    assert [classes[int(y)] for y in ctx.test_labels[:3]] == [Path(f).parent.name
                                                              for f in files[:3]]
    assert imgs.digest() != ctx.test_images[torch.arange(1, len(files))].digest()


# ------------------------------------------------------------------------------------------
# the run, through the installed executable
# ------------------------------------------------------------------------------------------
def _records(folder: Path) -> dict[tuple[str, str], dict]:
    out = {}
    for p in folder.rglob("*.json"):
        r = json.loads(p.read_text())
        if r["shift"]["group"] != "clean":
            out[(r["detector"]["spec"], r["shift"]["group"])] = r
    return out


def test_bench_run_on_an_imagefolder_is_the_same_for_any_batch_size_and_workers(folders):
    common = ["run", "--dataset", f"imagefolder:{folders.root}", "--model",
              f"torchvision:resnet18(weights={folders.weights})", "--detector",
              "msp,energy,mahalanobis", "--attack", "gaussian_noise,fgsm", "--ood",
              f"imagefolder:{folders.ood}", "--device", "cpu"]
    runs = []
    for tag, batch, workers in (("a", "256", "0"), ("b", "7", "2")):
        res = _bench(*common, "--batch-size", batch, "--workers", workers, "--out",
                     str(folders.base / f"res_{tag}"), cwd=folders.base,
                     home=folders.base / f"home_{tag}")
        assert res.returncode == 0, res.stderr[-2000:]
        runs.append(_records(folders.base / f"res_{tag}"))
    a, b = runs
    assert len(a) == 9 and a.keys() == b.keys()
    for key, ra in a.items():
        rb = b[key]
        assert ra["status"] == rb["status"] == "ok", (ra["error"], rb["error"])
        assert ra["n_in"] == 90 and ra["n_out"] == (40 if key[1] == "ood" else 90), key
        if key[1] == "attack":
            # gradients: sign(grad) may flip with float rounding in another batch shape
            for m, v in ra["metrics"].items():
                assert v == pytest.approx(rb["metrics"][m], abs=0.02), (key, m)
        else:
            assert ra["metrics"] == rb["metrics"], key
            # the shifted images are identical; the forward pass of another batch shape may
            # round differently in the last float32 bits, never enough to change a rank here
            np.testing.assert_allclose(ra["plots"]["scores_out"], rb["plots"]["scores_out"],
                                       rtol=1e-5)
        # the recorded AUROC is sklearn's on the recorded scores (all of them kept here)
        s_in, s_out = np.array(ra["plots"]["scores_in"]), np.array(ra["plots"]["scores_out"])
        y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
        assert ra["metrics"]["auroc"] == pytest.approx(roc_auc_score(y, np.r_[s_in, s_out]),
                                                       abs=1e-12)
    rec = a[("msp", "corruption")]
    assert rec["model"]["library"].startswith("torchvision")
    assert rec["dataset"]["n_val"] == 10 and rec["dataset"]["shape"] == [3, 224, 224]
    assert rec["dataset"]["name"] == "root"         # the folder's name, for tables
    # a re-run reads every cell back
    again = _bench(*common, "--out", str(folders.base / "res_a"), cwd=folders.base,
                   home=folders.base / "home_a")
    assert again.returncode == 0 and "0 record(s) written" in again.stderr + again.stdout


@pytest.mark.parametrize("extra,message", [
    (["--model", "resnet20"], "the images need a size"),
    (["--detector", "ae"], "ae needs every image in memory"),
    (["--attack", "adaptive_pgd"], "read from files batch by batch"),
    (["--model", "torchvision:resnet18(weights=IMAGENET1K_V1)"], "resnet18-f37072fd.pth"),
    (["--model", "torchvision:resnet_18"], "did you mean"),
    (["--workers", "-1"], "--workers"),
    (["--precision", "fp8"], "--precision"),
])
def test_bad_streaming_runs_are_one_line_errors(folders, tmp_path, extra, message):
    args = ["run", "--dataset", f"imagefolder:{folders.root}", "--model",
            f"torchvision:resnet18(weights={folders.weights})", "--detector", "msp",
            "--attack", "gaussian_noise", "--out", str(tmp_path / "r"), *extra]
    # later options win in typer: the extra --model / --detector replace the defaults above
    res = _bench(*args, cwd=folders.base, home=tmp_path / "home")
    assert res.returncode == 2, res.stderr[-1500:]
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_precision_is_recorded_and_keys_the_cached_views(tmp_path):
    """bf16 views are other numbers: an fp32 run after a bf16 one must not read them back."""
    out, home = tmp_path / "r", tmp_path / "home"
    args = ["run", "--detector", "msp", "--attack", "gaussian_noise", "--out", str(out),
            "--device", "cpu", "--json"]
    recs = {}
    for p in ("bf16", "fp32"):
        res = _bench(*args, "--precision", p, cwd=tmp_path, home=home)
        assert res.returncode == 0, res.stderr[-1500:]
        rec = next(json.loads(ln) for ln in res.stdout.splitlines()
                   if ln.startswith("{") and '"corruption"' in ln)
        recs[p] = rec
    assert recs["bf16"]["model"]["precision"] == "bf16"
    assert recs["fp32"]["model"]["precision"] == "fp32"
    assert recs["fp32"]["cache"]["shift_views"] is False
    assert recs["bf16"]["cell_id"] != recs["fp32"]["cell_id"]


def test_a_streamed_run_on_ray_writes_the_local_records(folders, tmp_path):
    """FileImages travel to Ray workers as file lists; each worker decodes, shifts and forwards
    its unit's batches (with its own DataLoader workers) and writes the records a local run
    writes."""
    pytest.importorskip("ray")
    common = ["run", "--dataset", f"imagefolder:{folders.root}", "--model",
              f"torchvision:resnet18(weights={folders.weights})", "--detector", "msp,mahalanobis",
              "--attack", "gaussian_noise", "--ood", f"imagefolder:{folders.ood}", "--device",
              "cpu", "--workers", "1"]
    recs = []
    for executor in ("local", "ray"):
        res = _bench(*common, "--executor", executor, "--out", str(tmp_path / executor),
                     cwd=folders.base, home=tmp_path / f"home_{executor}")
        assert res.returncode == 0, res.stderr[-2000:]
        recs.append(_records(tmp_path / executor))
    local, ray = recs
    assert local.keys() == ray.keys() and len(local) == 4
    for key, r in local.items():
        assert r["status"] == ray[key]["status"] == "ok"
        assert r["cell_id"] == ray[key]["cell_id"]
        assert r["metrics"] == ray[key]["metrics"], key


def test_an_unreadable_image_is_a_one_line_error_naming_it(folders, tmp_path):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(folders.root, root)
    bad = next((root / "train").glob("*/*.jpg"))
    bad.write_bytes(b"not a jpeg")
    res = _bench("run", "--dataset", f"imagefolder:{root}", "--model",
                 f"torchvision:resnet18(weights={folders.weights})", "--detector", "msp",
                 "--attack", "gaussian_noise", "--workers", "2", "--out", str(tmp_path / "r"),
                 cwd=tmp_path, home=tmp_path / "home")
    assert res.returncode == 2, res.stderr[-1500:]
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot read image" in lines[0] and bad.name in lines[0], res.stderr


def test_preprocessing_follows_the_weights_named():
    from torchvision.models import ResNet50_Weights

    from bench.registry import MODELS, parse_spec

    for spec, weights, enum in (("torchvision:resnet50", None, ResNet50_Weights.DEFAULT),
                                ("torchvision:resnet50", "IMAGENET1K_V1",
                                 ResNet50_Weights.IMAGENET1K_V1),
                                ("torchvision:resnet50(weights=IMAGENET1K_V1)", None,
                                 ResNet50_Weights.IMAGENET1K_V1)):
        pre = MODELS.create(parse_spec(spec)).preprocess(weights)
        t = enum.transforms()
        assert (pre.resize, pre.crop) == (t.resize_size[0], t.crop_size[0]), (spec, weights)
    assert ResNet50_Weights.DEFAULT.transforms().resize_size != \
        ResNet50_Weights.IMAGENET1K_V1.transforms().resize_size   # the case is not vacuous
