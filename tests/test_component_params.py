"""Every built-in detector, shift and dataset rejects bad parameters in its constructor.

A bad spec must fail with one BenchError line naming the parameter before any data is loaded
(the runner creates every component up front), the way ``msp(t=0)`` always has.
"""

from __future__ import annotations

import pytest

from bench.errors import BenchError
from bench.registry import DATASETS, DETECTORS, MODELS, SHIFTS

#: (registry, spec, the parameter the message must name)
BAD = [
    (DETECTORS, "msp(t=0)", "t"), (DETECTORS, "msp(t=-2)", "t"), (DETECTORS, "msp(t=abc)", "t"),
    (DETECTORS, "msp(log=2)", "log"), (DETECTORS, "energy(t=-1)", "t"),
    (DETECTORS, "energy(t=1e999)", "t"),
    (DETECTORS, "zhou(lam=-1)", "lam"), (DETECTORS, "zhou(lam=abc)", "lam"),
    (DETECTORS, "zhou(epochs=0)", "epochs"), (DETECTORS, "zhou(epochs=-3)", "epochs"),
    (DETECTORS, "zhou(epochs=2.5)", "epochs"), (DETECTORS, "zhou(batch_size=0)", "batch_size"),
    (DETECTORS, "zhou(batch_size=-8)", "batch_size"), (DETECTORS, "zhou(lr=0)", "lr"),
    (DETECTORS, "zhou(T=0)", "T"), (DETECTORS, "zhou(T=1e999)", "T"),
    (DETECTORS, "zhou(eps=-1)", "eps"), (DETECTORS, "zhou(lr_min=-1)", "lr_min"),
    (DETECTORS, "zhou(lr_min=1)", "lr_min"), (DETECTORS, "zhou(device=tpu)", "device"),
    (DETECTORS, "ae(epochs=0)", "epochs"), (DETECTORS, "ae(batch_size=0)", "batch_size"),
    (DETECTORS, "ae(lr=-1)", "lr"), (DETECTORS, "ae(lr=abc)", "lr"),
    (DETECTORS, "ae(bottleneck=0)", "bottleneck"), (DETECTORS, "ae(device=tpu)", "device"),
    (DETECTORS, "combined(ent=-1)", "ent"), (DETECTORS, "combined(beta=-0.1)", "beta"),
    (DETECTORS, "combined(epochs=0)", "epochs"), (DETECTORS, "combined(lam=-1)", "lam"),
    (SHIFTS, "gaussian_noise(sigma=-1)", "sigma"), (SHIFTS, "gaussian_noise(sigma=abc)", "sigma"),
    (SHIFTS, "gaussian_noise(severity=0)", "severity"),
    (SHIFTS, "gaussian_noise(severity=True)", "severity"),
    (SHIFTS, "salt_pepper(amount=1.5)", "amount"), (SHIFTS, "salt_pepper(amount=-0.1)", "amount"),
    (SHIFTS, "pixel_dropout(p=-0.1)", "p"), (SHIFTS, "pixel_dropout(p=2)", "p"),
    (SHIFTS, "brightness(c=5)", "c"), (SHIFTS, "contrast(c=-1)", "c"),
    (SHIFTS, "brightness_contrast(contrast=-1)", "contrast"),
    (SHIFTS, "brightness_contrast(brightness=2)", "brightness"),
    (SHIFTS, "fgsm(eps=-0.1)", "eps"), (SHIFTS, "fgsm(eps=abc)", "eps"),
    (SHIFTS, "fgsm(batch_size=0)", "batch_size"), (SHIFTS, "fgsm(successful_only=3)",
                                                   "successful_only"),
    (SHIFTS, "pgd(steps=0)", "steps"), (SHIFTS, "pgd(steps=2.5)", "steps"),
    (SHIFTS, "pgd(eps=-1)", "eps"), (SHIFTS, "pgd(alpha=-1)", "alpha"),
    (SHIFTS, "pgd(alpha=abc)", "alpha"), (SHIFTS, "pgd(batch_size=-1)", "batch_size"),
    (SHIFTS, "pgd(random_start=maybe)", "random_start"),
    (SHIFTS, "adaptive_pgd(steps=0)", "steps"), (SHIFTS, "adaptive_pgd(restarts=0)", "restarts"),
    (SHIFTS, "adaptive_pgd(eps=2)", "eps"), (SHIFTS, "adaptive_pgd(alpha=abc)", "alpha"),
    (SHIFTS, "adaptive_pgd(n=0)", "n"), (SHIFTS, "adaptive_pgd(n=2.5)", "n"),
    (SHIFTS, "adaptive_pgd(check=1)", "check"), (SHIFTS, "adaptive_pgd(objective=cw)", "objective"),
    (SHIFTS, "adaptive_pgd(side=id)", "side"), (SHIFTS, "adaptive_pgd(batch_size=0)", "batch_size"),
    (SHIFTS, "adaptive_pgd(restarts=2, random_start=False)", "restarts"),
    (SHIFTS, "mix(batch_size=0)", "batch_size"), (SHIFTS, "mix(severity=6)", "severity"),
    (SHIFTS, "seed_mix(sigma=-1)", "sigma"), (SHIFTS, "seed_mix(p=2)", "p"),
    (SHIFTS, "seed_mix(eps=abc)", "eps"), (SHIFTS, "seed_mix(batch_size=0)", "batch_size"),
    (SHIFTS, "cifar10c:gaussian_noise(severity=9)", "severity"),
    (DATASETS, "folder:x(size=0)", "size"), (DATASETS, "folder:x(size=abc)", "size"),
    (DATASETS, "npz:x(exclude=3)", "exclude"), (DATASETS, "npz:x(proximity=mid)", "proximity"),
    (DATASETS, "folder:x(proximity=3)", "proximity"),
    (DATASETS, "imagefolder:x(crop=0)", "crop"), (DATASETS, "imagefolder:x(resize=-1)", "resize"),
    (DATASETS, "imagefolder:x(resize=256)", "crop"),
    (DATASETS, "imagefolder:x(crop=224, interpolation=lanczos)", "interpolation"),
    (DATASETS, "imagefolder:x(proximity=mid)", "proximity"),
    (MODELS, "torchvision:resnet18(weights=3)", "weights"),
    (MODELS, "timm:resnet18(checkpoint=3)", "checkpoint"),
]


@pytest.mark.parametrize("reg, spec, param", BAD, ids=[s for _, s, _ in BAD])
def test_bad_parameter_is_one_line_bench_error(reg, spec, param):
    with pytest.raises(BenchError) as exc:
        reg.create(spec)
    msg = str(exc.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    assert param in msg
    # the message says what was wrong, not a Python comparison error
    assert "not supported between" not in msg and "Traceback" not in msg


#: edge values that are valid: the checks must not reject them
GOOD = [
    (DETECTORS, "msp(t=0.5, log=False)"), (DETECTORS, "zhou(lam=0, lr_min=0)"),
    (DETECTORS, "zhou(epochs=1, batch_size=1)"), (DETECTORS, "combined(ent=0, beta=0)"),
    (DETECTORS, "ae(epochs=1, bottleneck=1, device=cpu)"), (DETECTORS, "energy(t=3)"),
    (SHIFTS, "gaussian_noise(sigma=0)"), (SHIFTS, "pixel_dropout(p=1)"),
    (SHIFTS, "salt_pepper(amount=0)"), (SHIFTS, "fgsm(eps=0, batch_size=1)"),
    (SHIFTS, "pgd(steps=1, alpha=0)"), (SHIFTS, "mix(severity=5)"),
    (SHIFTS, "brightness(c=-1)"), (DATASETS, "folder:x(size=1)"),
    (DATASETS, "imagefolder:x(crop=1)"), (MODELS, "torchvision:vit_b_16(weights=w.pt)"),
]


@pytest.mark.parametrize("reg, spec", GOOD, ids=[s for _, s in GOOD])
def test_valid_edge_values_are_accepted(reg, spec):
    reg.create(spec)
    assert reg.create(spec) is not None


def test_every_builtin_with_parameters_is_covered():
    # a new built-in component with parameters should get a bad-value row above
    from bench.registry import signature_params

    covered = {spec.split("(")[0].split(":")[0] for _, spec, _ in BAD}
    for reg in (DETECTORS, SHIFTS, DATASETS):
        for name, cls in reg.items():
            if reg.dist_of(name) is not None:
                continue                      # plugins are not ours to check
            params = set(signature_params(cls)) - {"device", "data_root", "arg"}
            if name in ("albu", "torchattacks", "pood"):
                continue                      # adapters hand parameters to the wrapped library
            if params:
                assert name in covered, f"no bad-parameter case for {name} ({sorted(params)})"
