"""``torchattacks:<Attack>(k=v, ...)``: any torchattacks 3.5 attack as a shift."""

from __future__ import annotations

import contextlib
import inspect
import random
from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import numpy as np

from bench._lazy import nn, torch
from bench.attacks._common import KeyedRng
from bench.attacks.base import ATTACK, SHIFTS, Shift
from bench.errors import BenchError, did_you_mean
from bench.models.base import model_device

if TYPE_CHECKING:
    from torch import Tensor

_INSTALL = "install it with: pip install 'shiftbench[attacks-extra]'"


def _torchattacks() -> Any:
    try:
        import torchattacks
    except ImportError:
        raise BenchError(f"torchattacks:... needs the torchattacks package; {_INSTALL}") from None
    return torchattacks


def attack_names() -> list[str]:
    """The attack classes torchattacks exports (``torchattacks.__all__``)."""
    ta = _torchattacks()
    base = ta.attack.Attack
    return sorted(n for n in getattr(ta, "__all__", dir(ta))
                  if inspect.isclass(getattr(ta, n, None)) and issubclass(getattr(ta, n), base)
                  and getattr(ta, n) is not base)


@contextlib.contextmanager
def seeded_global_rngs(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's (CPU and ``device``), numpy's and Python's global RNGs; restore them after.

    torchattacks draws its random starts from the global RNGs (``torch.rand_like``,
    ``uniform_`` and, for OnePixel/Pixle, numpy's singleton). Inside this block they are seeded
    from the run's generator and put back afterwards, so the attack is reproducible and
    nothing outside it sees a changed RNG state.
    """
    devices = [device] if device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


@SHIFTS.register("torchattacks")
class TorchAttack(Shift):
    """Any torchattacks attack as a shift: ``torchattacks:PGD(eps=8/255, alpha=2/255, steps=10)``.

    Kim, "Torchattacks: A PyTorch Repository for Adversarial Attacks", arXiv:2010.01950.
    The attack class named after ``torchattacks:`` is built on the deployed classifier with
    the given keyword parameters (torchattacks' own defaults otherwise), untargeted, against
    the true labels. Our classifier takes [0, 1] images and normalises inside, which is what
    torchattacks expects (METHODS.md §0), so no ``set_normalization_used`` is needed.

    Randomness: torchattacks draws from the global RNGs, so the adapter draws one seed from
    the passed generator and runs the attack inside :func:`seeded_global_rngs`
    (``torch.random.fork_rng`` + ``manual_seed``, numpy and Python states saved and
    restored): reproducible for a ``--seed``, and the caller's global RNG state is unchanged.
    Images go through in chunks of ``batch_size = 256`` (fixed, so the random draws do not
    depend on ``--batch-size``); torchattacks averages its loss over a chunk, which changes
    no sign-gradient attack (FGSM, PGD, ...) but can matter for CW-like optimisers.
    There is no severity table: ``severity=`` is an error; set ``eps`` etc. directly.
    Shapes: x (N, C, H, W) float in [0, 1] -> same shape, dtype and range.
    """

    takes_arg: ClassVar[bool] = True
    needs_model: ClassVar[bool] = True
    group: ClassVar[str] = ATTACK
    batch_size: ClassVar[int] = 256

    def __init__(self, arg: str, *, successful_only: bool = False, data_root: Any = None,
                 **params: Any):
        # data_root is runner context (SHIFTS.create(spec, data_root=...)), not an attack parameter
        ta = _torchattacks()
        self.arg = arg
        self.params = dict(params)
        self.successful_only = bool(successful_only)
        self.severity = None
        names = attack_names()
        if arg not in names:
            hint = did_you_mean(arg, names, n=3)
            raise BenchError(f"torchattacks has no attack {arg!r}{hint} "
                             f"(choose from: {', '.join(names)})")
        if "severity" in params:
            raise BenchError(f"torchattacks:{arg} has no severity table; set its parameters "
                             f"instead, e.g. torchattacks:{arg}(eps=8/255)")
        self._cls = getattr(ta, arg)
        sig = inspect.signature(self._cls.__init__)
        accepted = [n for n, q in sig.parameters.items() if n not in ("self", "model")
                    and q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)]
        bad = [k for k in params if k not in accepted]
        if bad:
            raise BenchError(f"torchattacks:{arg} has no parameter {bad[0]!r} "
                             f"(parameters: {', '.join(accepted) or 'none'})")
        missing = [n for n in accepted if sig.parameters[n].default is inspect.Parameter.empty
                   and n not in params]
        if missing:
            raise BenchError(f"torchattacks:{arg} needs {missing[0]!r}, which a spec cannot "
                             f"always supply; give it as torchattacks:{arg}({missing[0]}=...) "
                             f"or wrap the attack in a plugin file (docs/plugins.md)")

    def get_params(self) -> dict[str, Any]:
        return {"arg": self.arg, **self.params, "successful_only": self.successful_only}

    def apply(self, x: Tensor, y: Tensor, *, model: nn.Module | None,
              generator: torch.Generator) -> Tensor:
        assert model is not None  # Shift.__call__ checked needs_model
        try:
            attack = self._cls(model, **self.params)
        except (TypeError, ValueError) as exc:
            raise BenchError(f"torchattacks:{self.arg}: bad parameters: {exc}") from None
        device = model_device(model)
        seed = (generator.batch_seed() if isinstance(generator, KeyedRng)
                else int(torch.randint(0, 2**62, (1,), generator=generator)))
        out = []
        with seeded_global_rngs(seed, device):
            for start in range(0, x.shape[0], self.batch_size):
                xb = x[start:start + self.batch_size].to(device)
                yb = y[start:start + self.batch_size].to(device)
                out.append(attack(xb, yb).detach().to(x.device, x.dtype))
        return torch.cat(out) if out else x.clone()


__all__ = ["TorchAttack", "attack_names", "seeded_global_rngs"]
