"""Shifts (METHODS.md §5): corruptions against numpy/matplotlib closed forms, attacks against
torchattacks 3.5.1, determinism, severity resolution, the mix's assignment of parts.

A tiny random conv net stands in for the classifier (a fixed torch seed inside the test)."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attacks.base import ANOMALY_MIX, ATTACK, CORRUPTION, Shift, attack_success
from bench.attacks.brightness import Brightness
from bench.attacks.brightness_contrast import BrightnessContrast
from bench.attacks.contrast import Contrast
from bench.attacks.fgsm import FGSM
from bench.attacks.gaussian_noise import GaussianNoise
from bench.attacks.mix import Mix
from bench.attacks.pgd import PGD
from bench.attacks.pixel_dropout import PixelDropout
from bench.attacks.salt_pepper import SaltPepper
from bench.attacks.seed_mix import SeedMix
from bench.errors import BenchError
from bench.models import Classifier
from bench.registry import SHIFTS

torchattacks = pytest.importorskip("torchattacks")

OURS = ("gaussian_noise", "salt_pepper", "brightness", "contrast", "brightness_contrast",
        "pixel_dropout", "fgsm", "pgd", "mix", "seed_mix")
RANDOM = ("gaussian_noise", "salt_pepper", "pixel_dropout", "pgd", "mix", "seed_mix")
DETERMINISTIC = ("brightness", "contrast", "brightness_contrast", "fgsm")
WITH_SEVERITY = tuple(n for n in OURS if n != "seed_mix")
EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)


# ---------------------------------------------------------------------------------------------
# fixtures: a tiny real classifier and small image batches
# ---------------------------------------------------------------------------------------------
class TinyNet(nn.Module):
    """Two conv layers, global pooling, dropout (so train and eval mode differ), linear head."""

    def __init__(self, c: int = 3, k: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5))
        self.fc = nn.Linear(16, k)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def tiny_model(c: int = 3) -> Classifier:
    with torch.random.fork_rng(devices=[]):  # fixed weights without touching the global RNG
        torch.manual_seed(0)
        net = TinyNet(c)
    return Classifier(net, mean=[0.0] * c, std=[1.0] * c, num_classes=10).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: with 2 busy cores, thread hand-offs cost 20x the arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> Classifier:
    return tiny_model()


def images(n: int = 24, seed: int = 1, c: int = 3, size: int = 12) -> torch.Tensor:
    """Mid-range random images in [0.1, 0.9] (few values at the clipping bounds)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g) * 0.8 + 0.1


def labels(n: int = 24, seed: int = 2) -> torch.Tensor:
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run(shift: Shift, x: torch.Tensor, y: torch.Tensor, model: nn.Module, seed: int = 0):
    return shift(x, y, model=model if shift.needs_model else None, generator=gen(seed))


def make(name: str, **params) -> Shift:
    return SHIFTS.get(name)(**params)


def nchw_to_hsv_reference(x: torch.Tensor, c: float) -> np.ndarray:
    """Brightness by an independent route: matplotlib rgb -> hsv, V += c, clip, hsv -> rgb."""
    rgb = x.double().permute(0, 2, 3, 1).numpy()
    hsv = mcolors.rgb_to_hsv(rgb)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0.0, 1.0)
    return mcolors.hsv_to_rgb(hsv).transpose(0, 3, 1, 2)


def contrast_reference(x: np.ndarray, c: float) -> np.ndarray:
    """CIFAR-10-C contrast on NCHW: mean over the spatial axes of each image and channel."""
    m = x.mean(axis=(2, 3), keepdims=True)
    return np.clip((x - m) * c + m, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# registry, groups, severity resolution
# ---------------------------------------------------------------------------------------------
def test_registered_with_groups_and_model_needs():
    groups = {"gaussian_noise": CORRUPTION, "salt_pepper": CORRUPTION, "brightness": CORRUPTION,
              "contrast": CORRUPTION, "brightness_contrast": CORRUPTION,
              "pixel_dropout": CORRUPTION, "fgsm": ATTACK, "pgd": ATTACK, "mix": ANOMALY_MIX,
              "seed_mix": ANOMALY_MIX}
    for name, group in groups.items():
        cls = SHIFTS.get(name)
        assert issubclass(cls, Shift) and cls.name == name
        assert cls.group == group
        assert cls.needs_model == (name in ("fgsm", "pgd", "mix", "seed_mix"))
    assert [p.name for p in Mix().part_shifts()] == ["gaussian_noise", "salt_pepper", "fgsm",
                                                     "brightness_contrast", "pixel_dropout"]
    assert SeedMix.hidden and not Mix.hidden
    assert FGSM().successful_only is False and PGD(successful_only=True).successful_only is True


TABLE = {
    "gaussian_noise": {"sigma": (0.04, 0.06, 0.08, 0.09, 0.10)},
    "salt_pepper": {"amount": (0.01, 0.02, 0.03, 0.05, 0.07)},
    "brightness": {"c": (0.05, 0.1, 0.15, 0.2, 0.3)},
    "contrast": {"c": (0.75, 0.5, 0.4, 0.3, 0.15)},
    "brightness_contrast": {"contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
                            "brightness": (0.05, 0.1, 0.15, 0.2, 0.3)},
    "pixel_dropout": {"p": (0.05, 0.1, 0.2, 0.3, 0.5)},
    "fgsm": {"eps": EPS},
    "pgd": {"eps": EPS},
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_severity_table_and_default(name):
    for s in range(1, 6):
        got = make(name, severity=s).get_params()
        assert got["severity"] == s
        for param, values in TABLE[name].items():
            assert got[param] == pytest.approx(values[s - 1], abs=1e-15)
    default = make(name).get_params()
    assert default["severity"] == 3
    for param, values in TABLE[name].items():
        assert default[param] == pytest.approx(values[2], abs=1e-15)


def test_pgd_alpha_and_steps_defaults():
    p = PGD(severity=4).get_params()
    assert p["alpha"] == pytest.approx(8 / 255 / 4) and p["steps"] == 10 and p["random_start"]
    assert PGD(eps=0.1).alpha == pytest.approx(0.025)
    assert PGD(eps=0.1, alpha=0.01).alpha == 0.01
    assert Mix().severity == 3 and Mix(severity=5).severity == 5


@pytest.mark.parametrize("name", sorted(TABLE))
def test_explicit_parameter_overrides_and_conflicts(name):
    param = next(iter(TABLE[name]))
    shift = make(name, **{param: 0.123})
    assert getattr(shift, param) == 0.123 and shift.severity is None
    assert shift.get_params()[param] == 0.123
    with pytest.raises(BenchError, match="not both"):
        make(name, severity=2, **{param: 0.123})
    for bad in (0, 6, "x", True, 2.0):
        with pytest.raises(BenchError, match="severity"):
            make(name, severity=bad)


def test_brightness_contrast_partial_override_and_specs():
    bc = BrightnessContrast(contrast=0.5)
    assert (bc.contrast, bc.brightness, bc.severity) == (0.5, 0.15, None)
    with pytest.raises(BenchError, match="not both"):
        BrightnessContrast(severity=1, brightness=0.2)
    with pytest.raises(BenchError):
        SHIFTS.create("gaussian_noise(severity=6)")
    with pytest.raises(BenchError, match="not both"):
        SHIFTS.create("fgsm(severity=2, eps=4/255)")
    assert SHIFTS.create("fgsm(eps=4/255)").eps == pytest.approx(4 / 255)
    with pytest.raises(BenchError, match="severity"):
        SHIFTS.create("seed_mix(severity=2)")


@pytest.mark.parametrize("spec", ["gaussian_noise(sigma=-0.1)", "salt_pepper(amount=1.5)",
                                  "pixel_dropout(p=2)", "fgsm(eps=3)", "pgd(steps=0)",
                                  "pgd(alpha=-1)", "fgsm(batch_size=0)", "contrast(c=-1)",
                                  "brightness(c=2)", "mix(batch_size=0)",
                                  "fgsm(successful_only=maybe)", "gaussian_noise(sigma=x)"])
def test_bad_parameter_values_are_user_errors(spec):
    with pytest.raises(BenchError):
        SHIFTS.create(spec)


@pytest.mark.parametrize("name", OURS)
def test_spec_round_trips(name):
    for params in ({}, {"severity": 1}) if name != "seed_mix" else ({}, {"eps": 0.01}):
        shift = make(name, **params)
        again = SHIFTS.create(shift.spec())
        assert again.get_params() == shift.get_params()
    assert SHIFTS.create("gaussian_noise(sigma=0.2)").spec() == "gaussian_noise(sigma=0.2)"
    assert SHIFTS.create("gaussian_noise(severity=2)").spec() == "gaussian_noise(severity=2)"


# ---------------------------------------------------------------------------------------------
# properties common to every shift
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OURS)
def test_shape_dtype_range_and_determinism(name, model):
    x, y = images(), labels()
    shift = make(name)
    a = run(shift, x, y, model, seed=3)
    b = run(shift, x, y, model, seed=3)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    c = run(shift, x, y, model, seed=4)
    if name in RANDOM:
        assert not torch.equal(a, c)
    else:
        assert torch.equal(a, c)  # no random draws: the generator does not matter
    x64 = x.double()
    d = run(shift, x64, y, model, seed=3)
    assert d.dtype == torch.float64 and d.shape == x.shape
    assert float(d.min()) >= 0.0 and float(d.max()) <= 1.0
    # same draws whatever the dtype (random numbers come in float32 from the CPU generator)
    assert (d - a.double()).abs().max() < 1e-5 or name in ("pgd", "mix", "seed_mix", "fgsm")


@pytest.mark.parametrize("name", WITH_SEVERITY)
def test_distortion_grows_with_severity(name, model):
    x, y = images(), labels()
    dist = [float((run(make(name, severity=s), x, y, model, seed=5) - x).abs().mean())
            for s in range(1, 6)]
    assert all(a < b for a, b in zip(dist, dist[1:])), dist


def test_input_is_not_modified(model):
    x, y = images(), labels()
    keep = x.clone()
    for name in OURS:
        run(make(name), x, y, model)
    assert torch.equal(x, keep)


def test_generator_must_be_a_cpu_generator(model):
    x, y = images(4), labels(4)
    with pytest.raises(TypeError):
        GaussianNoise()(x, y, generator=0)  # type: ignore[arg-type]
    with pytest.raises(BenchError, match="needs the classifier"):
        FGSM()(x, y, generator=gen())


def test_one_channel_images(model):
    x = images(8, c=1)
    y = labels(8)
    m1 = tiny_model(c=1)
    for name in OURS:
        out = make(name)(x, y, model=m1 if SHIFTS.get(name).needs_model else None,
                         generator=gen())
        assert out.shape == x.shape and 0 <= float(out.min()) <= float(out.max()) <= 1
    # a grey pixel's HSV value is the pixel itself: brightness adds c
    torch.testing.assert_close(Brightness(c=0.05)(x, y, generator=gen()),
                               (x + 0.05).clamp(0, 1))


# ---------------------------------------------------------------------------------------------
# corruptions against closed forms
# ---------------------------------------------------------------------------------------------
def test_gaussian_noise_std_on_mid_grey():
    x = torch.full((40, 3, 16, 16), 0.5)
    sigma = 0.1
    out = GaussianNoise(sigma=sigma)(x, labels(40), generator=gen(7))
    d = (out - x).double().flatten().numpy()
    n = d.size  # 30720: the std estimate has a relative standard error of about 0.4 %
    assert abs(d.std() / sigma - 1) < 0.02
    assert abs(d.mean()) < 4 * sigma / np.sqrt(n)
    assert (d != 0).all()  # every value gets its own draw


def test_salt_pepper_fractions():
    x = torch.full((40, 3, 16, 16), 0.5)
    amount = 0.3
    out = SaltPepper(amount=amount)(x, labels(40), generator=gen(8))
    replaced = out != 0.5
    n = replaced.numel()
    frac = replaced.double().mean().item()
    assert abs(frac - amount) < 4 * np.sqrt(amount * (1 - amount) / n)
    vals = out[replaced]
    assert set(vals.unique().tolist()) <= {0.0, 1.0}
    salt = (vals == 1).double().mean().item()
    assert abs(salt - 0.5) < 4 * np.sqrt(0.25 / vals.numel())
    # each channel independently: all three replaced together has probability amount**3
    all3 = replaced.all(dim=1).double().mean().item()
    m = replaced.shape[0] * replaced.shape[2] * replaced.shape[3]
    assert abs(all3 - amount ** 3) < 4 * np.sqrt(amount ** 3 * (1 - amount ** 3) / m)


def test_pixel_dropout_zeroes_whole_pixels():
    x = images(40, size=16)  # all values >= 0.1: a zero can only come from dropout
    p = 0.3
    out = PixelDropout(p=p)(x, labels(40), generator=gen(9))
    zero = out == 0
    assert torch.equal(zero.all(dim=1), zero.any(dim=1))  # all channels together
    dropped = zero[:, 0]
    frac = dropped.double().mean().item()
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / dropped.numel())
    keep = ~dropped.unsqueeze(1).expand_as(x)
    assert torch.equal(out[keep], x[keep])


@pytest.mark.parametrize("c", [0.75, 0.15, 1.5])
def test_contrast_matches_numpy(c):
    x = torch.rand(6, 3, 10, 10, generator=gen(10), dtype=torch.float64)
    out = Contrast(c=c)(x, labels(6), generator=gen())
    np.testing.assert_allclose(out.numpy(), contrast_reference(x.numpy(), c), atol=1e-12)


@pytest.mark.parametrize("c", [0.05, 0.3, -0.2])
def test_brightness_matches_hsv_round_trip(c):
    x = torch.rand(6, 3, 10, 10, generator=gen(11), dtype=torch.float64)
    x[0, :, 0, 0] = 0.0           # black: no hue, becomes grey V'
    x[1, :, 1, 1] = 0.4           # grey
    x[2, 0, 2, 2] = 1.0           # saturated value: V clips at 1
    out = Brightness(c=c)(x, labels(6), generator=gen())
    np.testing.assert_allclose(out.numpy(), nchw_to_hsv_reference(x, c), atol=1e-9)
    out32 = Brightness(c=c)(x.float(), labels(6), generator=gen())
    np.testing.assert_allclose(out32.double().numpy(), nchw_to_hsv_reference(x, c), atol=2e-6)


def test_brightness_contrast_is_contrast_then_brightness():
    x = torch.rand(6, 3, 10, 10, generator=gen(12), dtype=torch.float64)
    for s in (1, 5):
        out = BrightnessContrast(severity=s)(x, labels(6), generator=gen())
        c, b = TABLE["contrast"]["c"][s - 1], TABLE["brightness"]["c"][s - 1]
        ref = nchw_to_hsv_reference(torch.from_numpy(contrast_reference(x.numpy(), c)), b)
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-9)


def test_random_draws_do_not_depend_on_other_images():
    """Draws cover the whole set in one call: image i's noise is fixed by the seed and i."""
    x = images(24)
    a = GaussianNoise(sigma=0.05)(x, labels(), generator=gen(13))
    noise = torch.randn(x.shape, generator=gen(13)) * 0.05
    torch.testing.assert_close(a, (x + noise).clamp(0, 1))


# ---------------------------------------------------------------------------------------------
# attacks
# ---------------------------------------------------------------------------------------------
def summed_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y, reduction="sum"))


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
@pytest.mark.parametrize("severity", [1, 4])
def test_attacks_stay_in_eps_ball_and_raise_the_loss(name, severity, model):
    x, y = images(), labels()
    eps = EPS[severity - 1]
    adv = run(make(name, severity=severity), x, y, model)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert summed_ce(model, adv, y) > summed_ce(model, x, y)


def test_pgd_is_stronger_than_a_small_step(model):
    x, y = images(), labels()
    pgd = run(PGD(eps=8 / 255), x, y, model)
    fgsm_small = run(FGSM(eps=2 / 255), x, y, model)
    assert summed_ce(model, pgd, y) > summed_ce(model, fgsm_small, y)


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255])
def test_fgsm_equals_torchattacks(eps, model):
    x, y = images(), labels()
    ours = run(FGSM(eps=eps), x, y, model)
    ref = torchattacks.FGSM(model, eps=eps)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_pgd_equals_torchattacks_without_random_start(model):
    x, y = images(), labels()
    ours = run(PGD(eps=8 / 255, alpha=2 / 255, steps=5, random_start=False), x, y, model)
    ref = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=5, random_start=False)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_pgd_equals_torchattacks_with_the_same_random_start(model):
    """torchattacks draws its start with ``uniform_(-eps, eps)`` from the global CPU RNG; ours
    draws the same call from the passed generator. Seeding both with 21 gives the same start
    (inside fork_rng, so the global RNG is left as it was)."""
    x, y = images(), labels()
    ours = PGD(eps=4 / 255, steps=4)(x, y, model=model, generator=gen(21))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(21)
        ref = torchattacks.PGD(model, eps=4 / 255, alpha=1 / 255, steps=4)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    other = PGD(eps=4 / 255, steps=4)(x, y, model=model, generator=gen(22))
    assert not torch.equal(ours, other)


def test_cpu_gradients_in_chunks_equal_torchattacks_on_the_whole_batch(model):
    """On the CPU, loss_grad cuts a batch into backward passes of CPU_GRAD_CHUNK images; the
    attack must still be torchattacks' on the whole batch (150 images: chunks 64, 64, 22)."""
    from bench.attacks._common import CPU_GRAD_CHUNK

    n = 150
    assert n > 2 * CPU_GRAD_CHUNK
    x, y = images(n), labels(n)
    ours = run(FGSM(eps=4 / 255, batch_size=n), x, y, model)
    ref = torchattacks.FGSM(model, eps=4 / 255)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    ours = run(PGD(eps=4 / 255, alpha=1 / 255, steps=3, random_start=False, batch_size=n),
               x, y, model)
    ref = torchattacks.PGD(model, eps=4 / 255, alpha=1 / 255, steps=3, random_start=False)(x, y)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_attacks_do_not_depend_on_batch_size(model):
    x, y = images(), labels()
    a = run(FGSM(eps=4 / 255, batch_size=7), x, y, model)
    b = run(FGSM(eps=4 / 255, batch_size=64), x, y, model)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    a = run(PGD(eps=4 / 255, steps=3, batch_size=5), x, y, model, seed=6)
    b = run(PGD(eps=4 / 255, steps=3, batch_size=64), x, y, model, seed=6)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_attacks_run_in_eval_mode_and_restore_the_mode(model):
    x, y = images(), labels()
    ref = run(FGSM(eps=4 / 255), x, y, model)  # model in eval mode
    for name in ("fgsm", "pgd", "mix"):
        model.train()
        try:
            out = run(make(name), x, y, model)
            assert model.training and model.net.body[-1].training
            again = run(make(name), x, y, model.eval())
            assert torch.equal(out, again)  # dropout was off during the attack
            assert not model.training
        finally:
            model.eval()
    model.train()
    try:
        torch.testing.assert_close(run(FGSM(eps=4 / 255), x, y, model), ref)
        bad = torch.full_like(y, 99)  # out of range for 10 classes: cross-entropy raises
        for name in ("fgsm", "pgd"):
            with pytest.raises((IndexError, RuntimeError)):
                run(make(name), x, bad, model)
            assert model.training
    finally:
        model.eval()


def test_attacks_work_inside_no_grad_and_inference_mode(model):
    x, y = images(), labels()
    ref = run(FGSM(), x, y, model)
    with torch.no_grad():
        a = run(FGSM(), x, y, model)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()
        b = run(FGSM(), xi, yi, model)
    torch.testing.assert_close(a, ref)
    torch.testing.assert_close(b, ref)
    assert all(p.grad is None for p in model.parameters())  # no parameter gradients left


def test_attack_success_hand_built():
    y = torch.tensor([0, 1, 2, 3, 4])
    clean = torch.tensor([0, 1, 2, 0, 4])       # 4 correct (indices 0, 1, 2, 4)
    adv = torch.tensor([1, 1, 0, 3, 2])         # flips 0, 2 and 4; index 3 was wrong already
    assert attack_success(y, clean, adv) == pytest.approx(3 / 4)
    assert attack_success(np.array([1, 1]), np.array([0, 0]), np.array([1, 1])) is None
    assert attack_success(y, clean, clean) == 0.0
    with pytest.raises(ValueError):
        attack_success(y, clean, adv[:3])


# ---------------------------------------------------------------------------------------------
# mix and seed_mix
# ---------------------------------------------------------------------------------------------
def assignment(n: int, seed: int) -> torch.Tensor:
    """k recomputed with an independent generator of the same seed (METHODS.md §5)."""
    return torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("severity", [3, 1])
def test_mix_assigns_parts_as_specified(severity, model):
    n = 60
    x, y = images(n, seed=30), labels(n, seed=31)
    seed = 17
    out = Mix(severity=severity)(x, y, model=model, generator=gen(seed))
    k = assignment(n, seed)
    assert set(k.tolist()) == {0, 1, 2, 3, 4}
    changed = out != x
    # 0 gaussian_noise: (almost) every value moves, and not only to 0 or 1
    g = k == 0
    assert changed[g].double().mean() > 0.99
    assert ((out[g] > 0) & (out[g] < 1)).double().mean() > 0.95
    # 1 salt_pepper: changed values are exactly 0 or 1, about `amount` of them
    sp = k == 1
    assert set(out[sp][changed[sp]].unique().tolist()) <= {0.0, 1.0}
    assert changed[sp].any()
    # 2 fgsm at the severity's eps: equal to torchattacks' FGSM on that subset
    f = k == 2
    eps = EPS[severity - 1]
    ref = torchattacks.FGSM(model, eps=eps)(x[f], y[f])
    torch.testing.assert_close(out[f], ref, atol=1e-6, rtol=0)
    # 3 brightness_contrast at the severity: contrast then brightness, closed form
    bc = k == 3
    c, b = TABLE["contrast"]["c"][severity - 1], TABLE["brightness"]["c"][severity - 1]
    ref = nchw_to_hsv_reference(torch.from_numpy(contrast_reference(x[bc].double().numpy(), c)), b)
    np.testing.assert_allclose(out[bc].double().numpy(), ref, atol=2e-6)
    # 4 pixel_dropout: each pixel unchanged or zero in every channel
    d = k == 4
    zero = out[d] == 0
    assert torch.equal(zero.all(1), zero.any(1)) and zero.any()
    assert torch.equal(out[d][~zero], x[d][~zero])


def test_mix_parts_share_one_generator_in_order(model):
    """After k, the parts draw from the same generator in the order of k = 0..4: replaying
    the documented sequence with the part shifts reproduces the mix."""
    n, seed = 40, 23
    x, y = images(n, seed=32), labels(n, seed=33)
    out = Mix(severity=2)(x, y, model=model, generator=gen(seed))
    g = gen(seed)
    k = torch.randint(0, 5, (n,), generator=g)
    expect = x.clone()
    parts = [GaussianNoise(severity=2), SaltPepper(severity=2), FGSM(severity=2),
             BrightnessContrast(severity=2), PixelDropout(severity=2)]
    for i, part in enumerate(parts):
        idx = (k == i).nonzero().squeeze(1)
        expect[idx] = part(x[idx], y[idx], model=model, generator=g)
    torch.testing.assert_close(out, expect, atol=1e-6, rtol=0)


def test_seed_mix_uses_the_seed_parameters(model):
    n, seed = 60, 29
    x, y = images(n, seed=34), labels(n, seed=35)
    out = SeedMix()(x, y, model=model, generator=gen(seed))
    k = assignment(n, seed)
    f = k == 2
    torch.testing.assert_close(out[f], torchattacks.FGSM(model, eps=0.03)(x[f], y[f]),
                               atol=1e-6, rtol=0)
    bc = k == 3
    ref = np.clip(contrast_reference(x[bc].double().numpy(), 1.5) * 1.2, 0, 1)
    np.testing.assert_allclose(out[bc].double().numpy(), ref, atol=2e-6)
    d = k == 4
    zero = out[d] == 0
    assert torch.equal(zero.all(1), zero.any(1))
    frac = zero.all(1).double().mean().item()
    assert abs(frac - 0.1) < 4 * np.sqrt(0.1 * 0.9 / zero[:, 0].numel())
    g = k == 0
    noise = (out[g] - x[g])[(out[g] > 0) & (out[g] < 1)]
    assert abs(noise.std().item() / 0.1 - 1) < 0.1


# ---------------------------------------------------------------------------------------------
# device independence (runs where a CUDA device exists)
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(model):
    x, y = images(), labels()
    dev = torch.device("cuda")
    mgpu = tiny_model().to(dev)
    for name in ("gaussian_noise", "salt_pepper", "pixel_dropout", "brightness", "contrast",
                 "brightness_contrast"):
        a = run(make(name), x, y, model, seed=40)
        b = run(make(name), x.to(dev), y.to(dev), mgpu, seed=40)
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, atol=1e-6, rtol=0)
    conv = getattr(torch.backends.cudnn, "conv", None)
    before = conv.fp32_precision if conv is not None else torch.backends.cudnn.allow_tf32
    for name in ("fgsm", "pgd", "mix"):
        a = run(make(name), x, y, model, seed=41)
        b = run(make(name), x.to(dev), y.to(dev), mgpu, seed=41)
        assert b.device.type == "cuda"
        # a sign(grad) may flip where the gradient is ~0: allow a few values to differ
        diff = (b.cpu() - a).abs()
        assert (diff > 1e-5).double().mean() < 0.01
    after = conv.fp32_precision if conv is not None else torch.backends.cudnn.allow_tf32
    assert after == before  # the TF32 switch of the attacks is put back
    a = run(PGD(eps=8 / 255, batch_size=5), x.to(dev), y.to(dev), mgpu, seed=42)
    b = run(PGD(eps=8 / 255, batch_size=64), x.to(dev), y.to(dev), mgpu, seed=42)
    assert ((a - b).abs() > 1e-5).double().mean() < 0.01


# --------------------------------------------------------------------------------------------
# the runner's one call: shift(x, y, model=model, generator=g, index=positions)
# --------------------------------------------------------------------------------------------
BUILTIN = [n for n in SHIFTS.names() if not SHIFTS.get(n).takes_arg
           and not getattr(SHIFTS.get(n), "needs_detector", False)]


def test_a_shift_aimed_at_a_detector_is_not_a_plain_shift(model):
    """adaptive_pgd needs a detector: called like any shift it says where it runs."""
    x, y = images(8), labels(8)
    with pytest.raises(BenchError, match="aims at a detector"):
        SHIFTS.create("adaptive_pgd")(x, y, model=model, generator=gen())


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_shift_accepts_the_runners_call(name, model):
    """The index is passed to every shift; those without ``needs_index`` ignore it."""
    x, y = images(8), labels(8)
    cls = SHIFTS.get(name)
    assert cls.needs_index is False
    shift = cls(batch_size=4) if "batch_size" in cls.param_names() else cls()
    with_index = shift(x, y, model=model, generator=gen(), index=torch.arange(8) + 100)
    torch.testing.assert_close(with_index, run(shift, x, y, model), rtol=0, atol=0)


class _Lookup(Shift):
    """A toy shift that reads the images' positions (like cifar10c): x + index / 1000."""

    name = "lookup_test"
    needs_index = True

    def apply(self, x, y, *, model, generator, index):
        return x + index.to(x.dtype)[:, None, None, None] / 1000


class _NoIndex(Shift):
    name = "no_index_test"

    def apply(self, x, y, *, model, generator):  # the old signature: no index parameter
        return x * 0.5


def test_needs_index_gets_the_index_and_others_never_see_it():
    x, y = images(4), labels(4)
    out = _Lookup()(x, y, generator=gen(), index=torch.tensor([0, 1, 2, 3]))
    torch.testing.assert_close(out, (x + torch.arange(4.0)[:, None, None, None] / 1000).clamp(0, 1))
    with pytest.raises(BenchError, match="test-split index"):
        _Lookup()(x, y, generator=gen())
    torch.testing.assert_close(_NoIndex()(x, y, generator=gen(), index=torch.arange(4)), x * 0.5)


def test_capability_flags_have_base_defaults():
    """Every flag the runner reads off a component class is declared on its base class."""
    from bench.datasets.base import Dataset
    from bench.detectors.base import Detector
    from bench.registry import Component

    assert (Shift.needs_model, Shift.needs_index, Shift.successful_only, Shift.group,
            Shift.severity, Shift.hidden, Shift.takes_arg) == (False, False, False, CORRUPTION,
                                                               None, False, False)
    assert Shift.severity_keys() == () and Component.severity_keys() == ()
    assert (Detector.needs, Detector.cacheable, Detector.differentiable, Detector.hidden) == (
        frozenset({"logits"}), False, False, False)
    assert (Dataset.is_id, Dataset.proximity, Dataset.hidden, Dataset.takes_arg) == (
        False, None, False, False)


def test_attack_budgets_count_quantisation_steps_of_the_data():
    """eps by severity is 1, 2, 4, 8, 16 steps of the data's pixels: /255 for 8-bit images,
    x16 for the 17-level digits; an explicit eps is kept as given."""
    from bench.attacks.base import SHIFTS

    for sev, steps in zip(range(1, 6), (1, 2, 4, 8, 16)):
        assert SHIFTS.create(f"fgsm(severity={sev})", pixel_step=1 / 255).eps == steps / 255
        assert SHIFTS.create(f"fgsm(severity={sev})", pixel_step=16 / 255).eps == \
            pytest.approx(min(1.0, steps * 16 / 255))  # 16 steps of 16/255 is the whole range
    assert SHIFTS.create("fgsm(eps=0.01)", pixel_step=16 / 255).eps == 0.01
    pgd = SHIFTS.create("pgd", pixel_step=16 / 255)
    assert pgd.eps == pytest.approx(64 / 255) and pgd.alpha == pytest.approx(16 / 255)
    assert pgd.spec() == "pgd(severity=3)"  # the step is context, not part of the label
    mix_fgsm = SHIFTS.create("mix(severity=2)", pixel_step=16 / 255).part_shifts()[2]
    assert mix_fgsm.eps == pytest.approx(2 * 16 / 255)
    # without a step (Python API on 8-bit data) the table is METHODS.md's
    assert SHIFTS.create("fgsm").eps == 4 / 255
    with pytest.raises(BenchError, match="pixel_step"):
        SHIFTS.create("fgsm", pixel_step=0)
