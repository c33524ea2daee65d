"""Classifiers from the ecosystem: ``torchvision:NAME(weights=...)`` and ``timm:NAME(checkpoint=...)``.

Each is built with the library's own constructor, takes its weights from a local file (or, with
``--download``, from the library's own download), keeps the library's preprocessing (resize,
centre crop, interpolation, mean/std) and gives penultimate features through the library's API.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench.errors import BenchError, did_you_mean
from bench.models.base import Architecture, load_state_dict_checked, read_checkpoint
from bench.registry import MODELS

if TYPE_CHECKING:
    from torch import nn

    from bench.datasets._stream import Preprocess

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


class LibraryModel(Architecture):
    """Base of the adapters: ``load_external`` replaces ``build`` and ``--weights`` handling."""

    takes_arg = True
    external: ClassVar[bool] = True
    library: ClassVar[str] = ""

    def _check_name_text(self, arg: str) -> None:
        if not _NAME.fullmatch(arg or ""):
            raise BenchError(f"{self.name}:{arg}: not a model name (e.g. {self.name}:resnet18)")

    def _check_file_param(self, key: str, value: object) -> None:
        if value is not None and (not isinstance(value, str) or not value):
            raise BenchError(f"{self.name}:{self.arg}: {key} must be a file path or a weights "
                             f"name, e.g. {key}=model.pt; got {key}={value!r}")

    def build(self, num_classes: int, in_channels: int, image_size: int) -> "nn.Module":
        raise BenchError(f"{self.name}: models are loaded with their weights, not built empty")

    def preprocess(self, weights: str | None = None) -> "Preprocess":  # pragma: no cover
        """The library's geometric preprocessing for these weights (``--weights`` when the spec
        names none)."""
        raise NotImplementedError

    def load_external(self, *, weights: str | None, download: bool,
                      home: Path | None) -> tuple["nn.Module", dict[str, Any]]:
        raise NotImplementedError  # pragma: no cover - abstract


def _weights_file(text: str, where: str) -> Path:
    p = Path(text).expanduser()
    if not p.is_file():
        raise BenchError(f"{where}: weights file {text!r} does not exist; pass an existing "
                         f"file saved with torch.save(model.state_dict(), FILE)")
    return p.resolve()


@MODELS.register("torchvision")
class TorchvisionModel(LibraryModel):
    """Any classifier of ``torchvision.models`` (``torchvision:resnet18``, ``torchvision:vit_b_16``).

    ``weights=FILE``: a state_dict of that model saved with ``torch.save`` (the number of classes
    is read from its head). ``weights=IMAGENET1K_V1`` (or ``DEFAULT``): torchvision's own weights,
    read from torch hub's cache; with ``--download`` fetched (hash-checked) when missing;
    offline, the error names the file to pass. ``--weights FILE`` works too.
    Preprocessing is the weights' ``transforms()`` (ResNet-18: shorter side 256 bilinear,
    centre crop 224, ImageNet mean/std); with a file, the model's DEFAULT weights' transforms.
    Features: the input of the last Linear layer (ResNet ``fc``, ViT ``heads.head``), through
    the model's own ``forward``.
    """

    library = "torchvision"

    def __init__(self, arg: str, *, weights: str | None = None) -> None:
        self._check_name_text(arg)
        self.arg = arg
        self._check_file_param("weights", weights)
        self.weights = weights

    def _check_name(self) -> None:
        import torchvision.models as tvm

        names = tvm.list_models(module=tvm)
        if self.arg not in names:
            raise BenchError(f"torchvision has no classification model {self.arg!r}"
                             f"{did_you_mean(self.arg, names, show=lambda c: f'torchvision:{c}')}")

    def _enum(self, name: str) -> Any:
        from torchvision.models import get_model_weights

        enum = get_model_weights(self.arg)
        try:
            return enum[name] if name != "DEFAULT" else enum.DEFAULT
        except KeyError:
            have = ", ".join(["DEFAULT"] + [w.name for w in enum])
            raise BenchError(f"torchvision:{self.arg} has no weights {name!r} (choose from: "
                             f"{have}, or a file)") from None

    def _is_enum(self, text: str | None) -> bool:
        return bool(text) and re.fullmatch(r"[A-Z0-9_]+", text) is not None and not Path(
            text).exists()

    def preprocess(self, weights: str | None = None) -> "Preprocess":
        from bench.datasets._stream import Preprocess

        self._check_name()
        text = self.weights or weights
        # resnet50's DEFAULT (IMAGENET1K_V2) resizes to 232, IMAGENET1K_V1 to 256
        w = self._enum(text if self._is_enum(text) else "DEFAULT")
        t = w.transforms()
        return Preprocess(int(t.resize_size[0]), int(t.crop_size[0]), t.interpolation.value,
                          tuple(t.mean), tuple(t.std), source=f"torchvision {w}")

    def load_external(self, *, weights: str | None, download: bool,
                      home: Path | None) -> tuple["nn.Module", dict[str, Any]]:
        import torch
        import torchvision
        from torchvision.models import get_model

        from bench.cache import file_sha256
        from bench.models._library_net import last_linear_name, split_last_linear

        where = f"torchvision:{self.arg}"
        self._check_name()
        if weights is not None and self.weights is not None:
            raise BenchError(f"{where}: weights given twice (in the spec and with --weights)")
        text = self.weights or weights
        if text is None:
            raise BenchError(f"{where} needs weights: weights=FILE (a saved state_dict) or "
                             f"weights=IMAGENET1K_V1 (torchvision's, with --download)")
        if self._is_enum(text):
            w = self._enum(text)
            cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
            if not cached.is_file():
                if not download:
                    raise BenchError(f"{where}: weights {w} are not downloaded ({cached} is "
                                     f"missing): pass --download, or weights=FILE with a copy "
                                     f"of {w.url}")
                try:
                    w.get_state_dict(progress=False, check_hash=True)
                except Exception as exc:  # URLError, HTTPError, hash mismatch ...
                    raise BenchError(f"{where}: could not download {w.url} ({type(exc).__name__}"
                                     f": {exc}); offline? pass weights=FILE with a copy of "
                                     f"it") from None
            path, source = cached, "torchvision"
        else:
            path, source = _weights_file(text, where), "file"
        state_dict, _ = read_checkpoint(path)
        # the file's head says how many classes the network was trained for
        head_w = state_dict.get(f"{last_linear_name(get_model(self.arg))}.weight")
        n_out = int(head_w.shape[0]) if head_w is not None and head_w.ndim == 2 else 1000
        net = get_model(self.arg, num_classes=n_out)
        load_state_dict_checked(net, state_dict, label=f"weights {str(path)!r}", arch=where)
        pre = self.preprocess(text)   # the named weights' transforms, DEFAULT's for a file
        info = {"weights": str(path), "weights_sha256": file_sha256(path), "source": source,
                "norm": "torchvision", "mean": list(pre.mean), "std": list(pre.std),
                "num_classes": n_out, "library": f"torchvision {torchvision.__version__}"}
        return split_last_linear(net), info


@MODELS.register("timm")
class TimmModel(LibraryModel):
    """Any timm model (``timm:resnet18``, ``timm:vit_small_patch16_224.augreg_in21k_ft_in1k``).

    ``checkpoint=FILE``: a state_dict of that model (number of classes from its head). Without
    it, ``--download`` fetches the pretrained weights through timm (the Hugging Face hub);
    offline, the error says to pass ``checkpoint=FILE``. Preprocessing is timm's
    ``resolve_data_config``: shorter side ``floor(img_size / crop_pct)`` with its
    interpolation, centre crop ``img_size``, its mean/std. Features:
    ``forward_head(forward_features(x), pre_logits=True)``; logits: ``get_classifier()``.
    Needs ``pip install 'shiftbench[timm]'``.
    """

    library = "timm"

    def __init__(self, arg: str, *, checkpoint: str | None = None) -> None:
        self._check_name_text(arg)
        self.arg = arg
        self._check_file_param("checkpoint", checkpoint)
        self.checkpoint = checkpoint

    def _timm(self) -> Any:
        try:
            import timm
        except ImportError:
            raise BenchError("timm: models need the timm library: pip install "
                             "'shiftbench[timm]'") from None
        if not timm.models.is_model(self.arg):
            names = timm.list_models()
            raise BenchError(f"timm has no model {self.arg!r}"
                             f"{did_you_mean(self.arg, names, show=lambda c: f'timm:{c}')}")
        return timm

    def _data_config(self, net: Any = None) -> dict[str, Any]:
        timm = self._timm()
        if net is not None:
            return timm.data.resolve_data_config({}, model=net)
        cfg = timm.models.get_pretrained_cfg(self.arg)
        return timm.data.resolve_data_config({}, pretrained_cfg=cfg.to_dict() if cfg else {})

    def preprocess(self, weights: str | None = None) -> "Preprocess":
        import math

        from bench.datasets._stream import Preprocess

        cfg = self._data_config()
        if cfg.get("crop_mode", "center") != "center":
            raise BenchError(f"timm:{self.arg}: crop_mode {cfg['crop_mode']!r} is not supported "
                             f"(centre crops only)")
        size = int(cfg["input_size"][-1])
        resize = math.floor(size / cfg.get("crop_pct", 1.0))
        interp = cfg.get("interpolation", "bilinear")
        return Preprocess(resize, size, interp if interp in ("bilinear", "bicubic", "nearest")
                          else "bilinear", tuple(cfg["mean"]), tuple(cfg["std"]),
                          source=f"timm {self.arg}")

    def load_external(self, *, weights: str | None, download: bool,
                      home: Path | None) -> tuple["nn.Module", dict[str, Any]]:
        from bench.cache import file_sha256
        from bench.models._library_net import HeadSplit, TimmBody

        timm = self._timm()
        where = f"timm:{self.arg}"
        if weights is not None and self.checkpoint is not None:
            raise BenchError(f"{where}: weights given twice (checkpoint= and --weights)")
        text = self.checkpoint or weights
        if text is None:
            if not download:
                raise BenchError(f"{where} needs weights: checkpoint=FILE (a saved state_dict), "
                                 f"or --download to fetch timm's pretrained weights")
            try:
                net = timm.create_model(self.arg, pretrained=True)
            except Exception as exc:
                raise BenchError(f"{where}: could not download pretrained weights "
                                 f"({type(exc).__name__}: {exc}); offline? pass "
                                 f"checkpoint=FILE") from None
            path, digest, source = None, None, "timm"
        else:
            path = _weights_file(text, where)
            state_dict, _ = read_checkpoint(path)
            probe = timm.create_model(self.arg, pretrained=False)
            head_name = probe.pretrained_cfg.get("classifier", "fc")
            head_w = state_dict.get(f"{head_name}.weight")
            n_out = int(head_w.shape[0]) if head_w is not None else probe.num_classes
            net = timm.create_model(self.arg, pretrained=False, num_classes=n_out)
            load_state_dict_checked(net, state_dict, label=f"weights {str(path)!r}", arch=where)
            digest, source = file_sha256(path), "file"
        fc = net.get_classifier()
        import torch.nn as nn

        if not isinstance(fc, nn.Linear):
            raise BenchError(f"{where}: its classifier is {type(fc).__name__}, not one Linear "
                             f"layer; penultimate features are not defined")
        cfg = self._data_config(net)
        info = {"weights": None if path is None else str(path), "weights_sha256": digest,
                "source": source, "norm": "timm", "mean": list(cfg["mean"]),
                "std": list(cfg["std"]), "num_classes": int(fc.out_features),
                "library": f"timm {timm.__version__}"}
        return HeadSplit(TimmBody(net), fc), info


__all__ = ["LibraryModel", "TorchvisionModel", "TimmModel"]
