"""Classifier building blocks: the wrapper, the architecture base, normalisation, checkpoints.

:class:`Classifier` owns input normalisation and returns logits and features;
:class:`Architecture` is the base registered in ``MODELS``; :data:`NORMS` and
:func:`resolve_norm` name input normalisations; :func:`read_checkpoint` and
:func:`load_state_dict_checked` read weights with clear errors. Everything here depends only on
torch and the registry, so :mod:`bench.models.train` and :mod:`bench.views` can import it without
importing :func:`bench.models.load_classifier` (which uses them).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from bench._lazy import nn, torch
from bench.errors import BenchError
from bench.registry import MODELS, Component

if TYPE_CHECKING:
    from torch import Tensor


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without either)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------------------------
class Architecture(Component):
    """A network family registered in ``MODELS``; ``__init__`` stores its hyper-parameters only.

    ``build`` returns an ``nn.Module`` with ``.features(x) -> (N, H)`` (penultimate layer, after
    global pooling) and ``.fc`` (``nn.Linear(H, num_classes)``).
    """

    #: normalisation used when neither ``norm=`` nor the checkpoint says otherwise
    default_norm: ClassVar[str] = "none"
    #: training config for nets that are trained on first use (seconds on CPU); None = needs weights
    first_use_training: ClassVar[dict[str, Any] | None] = None
    #: True for networks a library builds and loads (``torchvision:``, ``timm:``): they
    #: implement ``load_external`` instead of :meth:`build` and ``--weights`` handling
    external: ClassVar[bool] = False

    def preprocess(self, weights: str | None = None) -> Any:
        """The library's geometric preprocessing (``datasets._stream.Preprocess``) for these
        weights, which file-based sets apply; None for networks that take the data as they are."""
        return None

    def build(self, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        raise NotImplementedError  # pragma: no cover - abstract

    def init_weights(self, net: nn.Module, generator: torch.Generator) -> None:
        """Fresh initial weights from ``generator`` (module constructors use the global RNG).

        Conv: Kaiming-normal (fan_out, ReLU) as torchvision's ResNet; Linear: PyTorch's default
        Kaiming-uniform(a=sqrt(5)) with bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)); norms: 1 and 0.
        """
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu",
                                        generator=generator)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
                if m.bias is not None:
                    bound = 1.0 / math.sqrt(m.weight.shape[1])
                    nn.init.uniform_(m.bias, -bound, bound, generator=generator)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @classmethod
    def identify(cls, state_dict: Mapping[str, Tensor]) -> str | None:
        """The architecture a foreign state_dict looks like (for error messages), or None."""
        return None


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------
#: name -> (mean, std) on [0, 1] pixels
NORMS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # akamaster/pytorch_resnet_cifar10 trainer.py trained every public CIFAR ResNet with these
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

_CUSTOM_NORM = re.compile(r"mean:(?P<mean>[^/]+)/std:(?P<std>.+)")


def resolve_norm(norm: str, in_channels: int) -> tuple[str, tuple[float, ...], tuple[float, ...]]:
    """``"imagenet" | "cifar10" | "none" | "mean:a,b,c/std:d,e,f"`` -> (name, mean, std).

    ``none`` is mean 0, std 1. A custom mean/std with one value is repeated over the channels.
    """
    text = norm.strip().lower().replace(" ", "")
    if text == "none":
        return "none", (0.0,) * in_channels, (1.0,) * in_channels
    if text in NORMS:
        mean, std = NORMS[text]
        if len(mean) != in_channels:
            raise BenchError(f"norm {text!r} has {len(mean)} channels but the images have "
                             f"{in_channels}: use --norm none or --norm mean:a/std:b")
        return text, mean, std
    m = _CUSTOM_NORM.fullmatch(text)
    if m is None:
        raise BenchError(f"unknown norm {norm!r}: use imagenet, cifar10, none or "
                         f"mean:a,b,c/std:d,e,f")
    try:
        mean = tuple(float(v) for v in m["mean"].split(","))
        std = tuple(float(v) for v in m["std"].split(","))
    except ValueError:
        raise BenchError(f"cannot read numbers in norm {norm!r}: write e.g. "
                         f"mean:0.5,0.5,0.5/std:0.25,0.25,0.25") from None
    mean = mean * in_channels if len(mean) == 1 else mean
    std = std * in_channels if len(std) == 1 else std
    if len(mean) != in_channels or len(std) != in_channels:
        raise BenchError(f"norm {norm!r} needs 1 or {in_channels} values for mean and for std")
    if not all(math.isfinite(s) and s > 0 for s in std) or not all(map(math.isfinite, mean)):
        raise BenchError(f"norm {norm!r}: std values must be positive and all values finite")
    name = f"mean:{','.join(map(repr, mean))}/std:{','.join(map(repr, std))}"
    return name, mean, std


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
CHECKPOINT_FORMAT = "shiftbench.model"


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a torch checkpoint -> (state_dict with ``module.`` prefixes stripped, metadata).

    Accepts a bare state_dict, ``{'state_dict': ...}`` (akamaster, shiftbench) and our own
    format (:func:`bench.models.train.save_checkpoint`, which adds arch/norm/mean/std). Loads
    with ``weights_only=True``: a checkpoint never runs code.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise BenchError(f"weights file {str(path)!r} does not exist: pass --weights PATH to a "
                         f"checkpoint or a zoo name such as zoo:resnet20")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file (pickle, zip, EOF, ...)
        from bench.cache import load_error_text

        raise BenchError(f"cannot read weights {str(path)!r}: not a torch checkpoint "
                         f"({load_error_text(exc)})") from None
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        meta = {k: v for k, v in obj.items() if k != "state_dict"}
        sd = obj["state_dict"]
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    else:
        keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise BenchError(f"weights {str(path)!r} hold no state_dict (found {keys}): save "
                         f"model.state_dict() or {{'state_dict': ...}}")
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise BenchError(f"weights {str(path)!r}: entry {k!r} of the state_dict is not a tensor")
        # nn.DataParallel saves with "module.", torch.compile with "_orig_mod."
        out[k.removeprefix("module.").removeprefix("_orig_mod.")] = v
    return out, meta


def _short_keys(keys: Sequence[str], limit: int = 6) -> str:
    """Collapse keys to their module (``layer3.4.*``) and list a few: error messages stay short."""
    groups: list[str] = []
    for k in keys:
        parts = k.split(".")
        g = ".".join(parts[:2]) + ".*" if len(parts) > 2 else k
        if g not in groups:
            groups.append(g)
    shown = ", ".join(groups[:limit]) + (", ..." if len(groups) > limit else "")
    return f"{shown} ({len(keys)} keys)"


def load_state_dict_checked(net: nn.Module, state_dict: Mapping[str, Tensor], *, label: str,
                            arch: str) -> None:
    """``net.load_state_dict(state_dict, strict=True)`` with a BenchError naming what differs.

    BatchNorm's ``num_batches_tracked`` may be absent (akamaster's files predate it; PyTorch
    fills it in on load), everything else must match in name and shape.
    """
    want = net.state_dict()
    missing = [k for k in want if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in want]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(want[k].shape)}"
              for k in want if k in state_dict and state_dict[k].shape != want[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_short_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short_keys(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch (file vs model) {'; '.join(shapes[:3])}"
                         + ("; ..." if len(shapes) > 3 else ""))
        guess = next((g for _, cls in MODELS.items()
                      if (g := getattr(cls, "identify", lambda sd: None)(state_dict))), None)
        hint = f"; the file looks like a {guess} checkpoint" if guess and guess != arch else ""
        raise BenchError(f"{label} do not fit {arch}: {', '.join(parts)}{hint}")
    net.load_state_dict(state_dict, strict=True)


def __getattr__(name: str):
    """``Classifier`` stays importable from here (PEP 562), loaded on first use."""
    if name == "Classifier":
        from bench.models._classifier import Classifier

        return Classifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
