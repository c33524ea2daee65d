"""``pood:<Detector>(k=v, ...)``: any pytorch-ood 0.4 detector on shiftbench's cached views."""

from __future__ import annotations

import contextlib
import copy
import inspect
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator

from bench._lazy import nn, torch
from bench.detectors.base import DETECTORS, Detector
from bench.errors import BenchError, did_you_mean
from bench.models.base import model_device
from bench.views import Views, to_float01

if TYPE_CHECKING:
    from torch import Tensor

_INSTALL = "install it with: pip install 'shiftbench[ood-extra]'"

#: pytorch-ood detectors the adapter refuses, and why (everything else is classified by its
#: pytorch-ood base class: LogitsDetector, FeaturesDetector, FeatureMapsDetector, GradientDetector)
_UNSUPPORTED = {
    "RankFeat": "it needs spatial feature maps; shiftbench caches pooled penultimate features",
    "MCD": "it samples dropout masks from the global RNG and needs a model with dropout",
    "MCM": "it needs CLIP text embeddings",
    "Gram": "it needs hooks on several layers of the network",
    "MultiMahalanobis": "it needs hooks on several layers of the network",
    "NACUE": "it needs hooks on several layers of the network",
}

#: detectors that cast features to float32 themselves (``z.float()``) and then mix them with the
#: head's weights: they run in float32 throughout (head copy, inputs, default dtype)
_FLOAT32 = frozenset({"DICE", "NCI", "NNGuide", "PNML", "fDBD"})

#: logit detectors whose pytorch-ood score is a plain differentiable torch expression (no
#: ``torch.no_grad``, no numpy): adaptive attacks can aim at them. Others (KNN, Mahalanobis,
#: ViM, ...) compute under ``no_grad`` or outside torch and are declared not differentiable.
_DIFFERENTIABLE = frozenset({"MaxSoftmax", "EnergyBased", "MaxLogit", "Entropy"})

#: constructor parameters the adapter fills in (the user cannot set them in a spec)
_INJECTED = frozenset({"model", "encoder", "backbone", "head", "w", "b"})


def _pood() -> tuple[Any, Any]:
    try:
        import pytorch_ood.api as api
        import pytorch_ood.detector as detectors
    except ImportError:
        raise BenchError(f"pood:... needs the pytorch-ood package; {_INSTALL}") from None
    return api, detectors


def detector_names() -> list[str]:
    """The detector classes pytorch-ood exports."""
    api, mod = _pood()
    return sorted(n for n in getattr(mod, "__all__", dir(mod))
                  if inspect.isclass(getattr(mod, n, None)) and issubclass(getattr(mod, n),
                                                                          api.Detector))


def _kind(cls: type, api: Any) -> str:
    for base, kind in ((api.LogitsDetector, "logits"), (api.FeaturesDetector, "features"),
                       (api.FeatureMapsDetector, "feature_maps"),
                       (api.GradientDetector, "gradient")):
        if issubclass(cls, base):
            return kind
    return "unsupported"


@contextlib.contextmanager
def _float64_default() -> Iterator[None]:
    """pytorch-ood allocates state with the default dtype (``torch.zeros(...)``) and then mixes
    it with our float64 inputs; float64 as the default inside its calls keeps every statistic
    in float64 (METHODS.md §0). Restored on exit."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@DETECTORS.register("pood")
class Pood(Detector):
    """Any pytorch-ood detector on the cached views: ``pood:KNN(k=50)``, ``pood:ViM(d=32)``.

    Kirchheim et al., "PyTorch-OOD: A Library for Out-of-Distribution Detection based on
    PyTorch", CVPR Workshops 2022. Each paper is cited by the wrapped class (its ``info``).

    Sign: pytorch-ood scores are higher = more OOD; ours are higher = more ID, so
    ``score = -theirs`` (METHODS.md §0), cast to float64.

    How a detector is driven follows its pytorch-ood base class, and ``needs`` (set per
    instance) says what it reads:

    ================  ==============================================  ==========================
    base class        calls                                           needs
    ================  ==============================================  ==========================
    LogitsDetector    ``fit_logits(z, y)`` / ``predict_logits(z)``    logits (+ labels to fit)
    FeaturesDetector  ``fit_features(f, y)`` / ``predict_features``   features (+ labels to fit;
                                                                      + model for ``head``/``w``)
    FeatureMaps...    ``*_feature_maps`` on f as (N, H, 1, 1)         features, model
    GradientDetector  ``predict(x)`` on the images, in batches        images, model
    ================  ==============================================  ==========================

    Fitting uses the ID fit views (training split) with their labels; val is not used.
    Logits and features are passed as float64 (METHODS.md §0), with float64 as the default
    dtype inside pytorch-ood's calls so that the state it allocates (Mahalanobis' means, ...)
    is float64 too. DICE, NCI, NNGuide, PNML and fDBD cast features to float32 themselves and
    then mix them with the head, so they run in float32 throughout (``_FLOAT32``); ViM casts
    to float32 internally. ``head``, ``w`` and ``b`` (ViM, DICE, NCI, fDBD, SHE, LTS, NNGuide,
    PNML, ReAct, ASH, SCALE, VRA) come from a CPU copy of the classifier's final Linear layer
    (``model.head``) in that dtype. FeatureMaps detectors see the pooled
    penultimate features as 1x1 maps: that is ReAct's and VRA's layer in their papers, but
    ASH and SCALE shape the last convolutional maps before pooling in theirs, so ``pood:ASH``
    and ``pood:SCALE`` differ from the papers. Gradient detectors (ODIN, GradNorm,
    GradUncertainty, MahalanobisODIN) differentiate the deployed classifier, which takes
    [0, 1] images and normalises inside: ODIN's ``eps`` is in [0, 1] pixel units and
    ``norm_std`` must stay unset. Tensor parameters (WeightedEBO's ``weights``) may be given as
    tuples. Refused: RankFeat, MCD, MCM, Gram, MultiMahalanobis, NACUE (see ``_UNSUPPORTED``).
    Shapes: score(views) -> (N,) float64.
    """

    takes_arg: ClassVar[bool] = True
    #: the union over wrapped detectors, for callers that look at the class; each instance
    #: sets its own, narrower ``needs`` in ``__init__``
    needs: ClassVar[frozenset[str]] = frozenset({"logits", "features", "labels", "images", "model"})
    batch_size: ClassVar[int] = 256

    def __init__(self, arg: str, *, device: Any = None, **params: Any):
        # device is runner context (DETECTORS.create(spec, device=...)), not a pytorch-ood param
        api, mod = _pood()
        self.arg = arg
        self.params = dict(params)
        names = detector_names()
        if arg not in names:
            hint = did_you_mean(arg, names, n=3)
            raise BenchError(f"pytorch-ood has no detector {arg!r}{hint} "
                             f"(choose from: {', '.join(names)})")
        cls = getattr(mod, arg)
        kind = _kind(cls, api)
        if arg in _UNSUPPORTED or kind == "unsupported":
            why = _UNSUPPORTED.get(arg, "it has no logits, features or gradient interface")
            raise BenchError(f"pood:{arg} is not supported: {why}; wrap it in a plugin file "
                             f"instead (docs/plugins.md)")
        self._cls, self._kind = cls, kind
        self._float32 = kind == "gradient" or arg in _FLOAT32
        sig = inspect.signature(cls.__init__)
        accepted = [n for n, q in sig.parameters.items() if n != "self"
                    and q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)]
        var_kw = any(q.kind is q.VAR_KEYWORD for q in sig.parameters.values())
        for k in params:
            if k in _INJECTED and k in accepted:
                raise BenchError(f"pood:{arg}: {k} is filled in from the classifier; drop {k}=")
            if k not in accepted and not var_kw:
                settable = [n for n in accepted if n not in _INJECTED]
                raise BenchError(f"pood:{arg} has no parameter {k!r} "
                                 f"(parameters: {', '.join(settable) or 'none'})")
            if k in sig.parameters and "Callable" in str(sig.parameters[k].annotation):
                raise BenchError(f"pood:{arg}: {k} takes a Python function, which a spec cannot "
                                 f"give; drop {k}= (or wrap the detector in a plugin file)")
        self._inject = [n for n in accepted if n in _INJECTED]
        missing = [n for n in accepted if n not in _INJECTED and n not in params
                   and sig.parameters[n].default is inspect.Parameter.empty]
        if missing:
            raise BenchError(f"pood:{arg} needs {missing[0]!r}: write pood:{arg}({missing[0]}=...)")
        self._tensor_params = {n for n in params if n in sig.parameters
                               and "Tensor" in str(sig.parameters[n].annotation)}

        uses_head = bool({"head", "w", "b"} & set(self._inject))
        fit_labels = {"labels"} if cls.requires_fit else set()
        if kind == "logits":
            needs = {"logits"} | fit_labels
        elif kind == "features":
            needs = {"features"} | fit_labels | ({"model"} if uses_head else set())
        elif kind == "feature_maps":
            needs = {"features", "model"} | fit_labels
        else:  # gradient: scores images through the model; a fit reads cached features
            needs = {"images", "model"} | ({"features", "labels"} if cls.requires_fit else set())
        self.needs = frozenset(needs)  # type: ignore[misc]
        self.differentiable = kind == "logits" and arg in _DIFFERENTIABLE  # type: ignore[misc]

    def get_params(self) -> dict[str, Any]:
        return {"arg": self.arg, **self.params}

    # building ---------------------------------------------------------------------------------
    def _build(self, model: nn.Module | None) -> Any:
        kwargs: dict[str, Any] = {}
        for k, v in self.params.items():
            kwargs[k] = torch.tensor(v, dtype=torch.float64) if k in self._tensor_params \
                and isinstance(v, (tuple, list, int, float)) else v
        needs_model = self._kind == "gradient" or bool({"head", "w", "b"} & set(self._inject))
        if needs_model and model is None:
            raise BenchError(f"pood:{self.arg} needs the classifier, and the views carry none")
        head_: nn.Linear | None = None
        if {"head", "w", "b"} & set(self._inject):
            head = getattr(model, "head", None)
            if not isinstance(head, nn.Linear):
                raise BenchError(f"pood:{self.arg} needs the classifier's final Linear layer "
                                 f"(model.head); this model has none")
            # a CPU copy in the dtype the detector computes in (float64: METHODS.md §0)
            head_ = copy.deepcopy(head).to("cpu", self._float()).eval().requires_grad_(False)
        for name in self._inject:
            if name == "model":
                kwargs[name] = model if self._kind == "gradient" else None
            elif name == "encoder":
                kwargs[name] = self._encoder(model) if self._kind == "gradient" else None
            elif name == "backbone":
                kwargs[name] = None
            elif name == "head":
                kwargs[name] = _flat(head_) if self._kind == "feature_maps" else head_
            elif name == "w":
                kwargs[name] = head_.weight.detach()  # type: ignore[union-attr]
            elif name == "b":
                kwargs[name] = head_.bias.detach()  # type: ignore[union-attr]
        try:
            with self._dtype():
                return self._cls(**kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            raise BenchError(f"pood:{self.arg}: bad parameters: {type(exc).__name__}: "
                             f"{exc}") from None

    @staticmethod
    def _encoder(model: nn.Module | None) -> Callable[[Tensor], Tensor]:
        if model is None or not hasattr(model, "forward_features"):
            raise BenchError("pood: this detector needs a shiftbench Classifier (forward_features)")
        return lambda x: model.forward_features(x)[1]

    # fit / score ------------------------------------------------------------------------------
    def _float(self) -> torch.dtype:
        return torch.float32 if self._float32 else torch.float64

    def _dtype(self) -> contextlib.AbstractContextManager[None]:
        # gradient detectors run the float32 classifier, _FLOAT32 ones cast to float32 themselves
        return contextlib.nullcontext() if self._float32 else _float64_default()

    def _logits(self, views: Views) -> Tensor:
        return self.logits64(views).to(self._float())

    def _features(self, views: Views) -> Tensor:
        return self.features64(views).to(self._float())

    def fit(self, fit: Views, val: Views) -> "Pood":
        """Build the wrapped detector (with the classifier's head where needed) and fit it on
        the ID fit views when pytorch-ood says it requires fitting."""
        det = self._build(fit.model)
        if self._cls.requires_fit and not getattr(det, "_is_fitted", False):
            if fit.labels is None:
                raise BenchError(f"pood:{self.arg} fits on labelled ID data; the fit views "
                                 f"carry no labels")
            try:
                with self._dtype():
                    self._fit(det, fit, fit.labels.to(torch.int64))
            except ValueError as exc:  # e.g. KNN: k larger than the fit set
                raise BenchError(f"pood:{self.arg}: {exc}") from None
        self.detector_ = det
        self.fitted_ = True
        return self

    def _fit(self, det: Any, fit: Views, y: Tensor) -> None:
        if self._kind == "logits":
            det.fit_logits(self._logits(fit), y)
        elif self._kind == "features":
            det.fit_features(self._features(fit), y)
        elif self._kind == "feature_maps":
            det.fit_feature_maps(_maps(self._features(fit)), y)
        else:  # MahalanobisODIN: class means from cached features, float32 on the model's device
            dev = model_device(fit.model)  # type: ignore[arg-type]
            det.fit_features(self._features(fit).to(dev), y.to(dev))

    def score(self, views: Views) -> Tensor:
        """``-theirs``: (N,) float64, higher = more in-distribution."""
        self.check_fitted()
        det = self.detector_
        with self._dtype():
            if self._kind == "logits":
                theirs = det.predict_logits(self._logits(views))
            elif self._kind == "features":
                theirs = det.predict_features(self._features(views))
            elif self._kind == "feature_maps":
                theirs = det.predict_feature_maps(_maps(self._features(views)))
            else:
                theirs = self._predict_images(det, views)
        theirs = theirs if self.differentiable else theirs.detach()
        return -theirs.to("cpu", torch.float64).reshape(-1)

    def _predict_images(self, det: Any, views: Views) -> Tensor:
        model = views.model or getattr(det, "model", None)
        if views.images is None or model is None:
            raise RuntimeError(f"pood:{self.arg} scores images through the model; views "
                               f"{views.name!r} carry {'no images' if views.images is None else 'no model'}")
        dev = model_device(model)
        was_training = model.training
        model.eval()
        try:
            out = []
            for start in range(0, views.images.shape[0], self.batch_size):
                x = to_float01(views.images[start:start + self.batch_size]).to(dev)
                out.append(det.predict(x).detach().cpu())
        finally:
            model.train(was_training)
            # MahalanobisODIN calls loss.backward(): drop what it left in the frozen classifier
            model.zero_grad(set_to_none=True)
        return torch.cat(out) if out else torch.empty(0)


def _maps(features: Tensor) -> Tensor:
    """Pooled (N, H) features as (N, H, 1, 1) feature maps (pytorch-ood's ASH note allows it)."""
    return features.reshape(features.shape[0], features.shape[1], 1, 1)


def _flat(head: nn.Linear | None) -> Callable[[Tensor], Tensor]:
    assert head is not None
    return lambda maps: head(maps.flatten(1))


__all__ = ["Pood", "detector_names"]
