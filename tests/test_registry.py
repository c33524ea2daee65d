"""bench.registry: the spec grammar (parse, split, expand, format) and the generic Registry.

Expected values are written out by hand from the grammar in the module docstring; round trips
check ``parse_spec(str(spec)) == spec``.
"""

from __future__ import annotations

import pytest

from bench.errors import BenchError, did_you_mean
from bench.registry import (Component, Registry, Spec, Sweep, expand, format_value, parse_spec,
                            split_specs)


# --------------------------------------------------------------------------------------------
# parse_spec
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ("msp", Spec("msp")),
    ("  msp  ", Spec("msp")),
    ("fgsm(eps=4/255)", Spec("fgsm", None, {"eps": 4 / 255})),
    ("gaussian_noise(severity=5)", Spec("gaussian_noise", None, {"severity": 5})),
    ("zhou(lam=0.5, T=100, eps=-1e-3)", Spec("zhou", None, {"lam": 0.5, "T": 100, "eps": -0.001})),
    ("npz:/data/ood/tin.npz(exclude=cifar10_overlap)",
     Spec("npz", "/data/ood/tin.npz", {"exclude": "cifar10_overlap"})),
    ("albu:Blur(blur_limit=7)", Spec("albu", "Blur", {"blur_limit": 7})),
    ("cifar10c:fog", Spec("cifar10c", "fog")),
    ("x(flag=true, other=False, none=None)", Spec("x", None, {"flag": True, "other": False,
                                                               "none": None})),
    ("x(s='a b', t=(1, 2), u=[3, 4])", Spec("x", None, {"s": "a b", "t": (1, 2), "u": (3, 4)})),
    ("x(a=2*3+1, b=2**3, c=1-0.5)", Spec("x", None, {"a": 7, "b": 8, "c": 0.5})),
    ("gaussian_noise(severity=1..5)", Spec("gaussian_noise", None,
                                           {"severity": Sweep((1, 2, 3, 4, 5))})),
    ("x(k=-2..1)", Spec("x", None, {"k": Sweep((-2, -1, 0, 1))})),
])
def test_parse_spec_by_hand(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize("text,message", [
    ("", "empty component spec"),
    ("fgsm(eps=8/255", "unbalanced parentheses"),
    ("fgsm eps=8/255)", "unbalanced parentheses"),
    ("fgsm(8/255)", "parameters need names"),
    ("fgsm(**kw)", r"\*\* is not allowed"),
    ("fgsm(eps=)", "write name\\(key=value"),
    ("fgsm(eps=1/0)", "division by zero"),
    ("x(a=2**100)", "exponent too large"),
    ("x(a=5..1)", "bad range"),
    ("x(a=open('f'))", "cannot read a value"),
    ("x(a=y.z + 1)", "cannot read a value"),
    ("1abc", "is not a component name"),
    ("npz:", "nothing after 'npz:'"),
])
def test_parse_spec_errors_are_bench_errors(text, message):
    with pytest.raises(BenchError, match=message):
        parse_spec(text)


@pytest.mark.parametrize("text,params", [
    ("m(weights=r18.pt)", {"weights": "r18.pt"}),
    ("m(weights=/abs/dir/r18.pt, k=1)", {"weights": "/abs/dir/r18.pt", "k": 1}),
    ("m(weights=../w/x.pth)", {"weights": "../w/x.pth"}),
    ("m(w=~/x.pt)", {"w": "~/x.pt"}),
    ("m(eps=8/255, lr=1e-3, s=1.5)", {"eps": 8 / 255, "lr": 1e-3, "s": 1.5}),
    ("m(w='a=b/c.pt')", {"w": "a=b/c.pt"}),
])
def test_unquoted_file_paths_are_strings_and_numbers_stay_numbers(text, params):
    assert parse_spec(text).params == params


def test_parse_spec_evaluates_nothing():
    """A value that would run code is refused, not evaluated."""
    with pytest.raises(BenchError):
        parse_spec("x(a=__import__('os').system('true'))")


# --------------------------------------------------------------------------------------------
# format_value and round trips
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,text", [
    (1, "1"), (0.5, "0.5"), (4 / 255, repr(4 / 255)), (True, "True"), (None, "None"),
    ("cifar10_overlap", "cifar10_overlap"), ("a/b.npz", "a/b.npz"), ("a b", "'a b'"),
    ("1abc", "'1abc'"), ((1, 2), "(1, 2)"), (Sweep((1, 2, 3)), "1..3"),
])
def test_format_value_by_hand(value, text):
    assert format_value(value) == text


@pytest.mark.parametrize("spec", [
    Spec("msp"),
    Spec("fgsm", None, {"eps": 4 / 255}),
    Spec("fgsm", None, {"eps": 0.1 + 0.2}),       # a float with no short decimal form
    Spec("zhou", None, {"lam": 0.5, "T": 100}),
    Spec("npz", "/data/x.npz", {"exclude": "cifar10_overlap"}),
    Spec("albu", "GaussNoise", {"std_range": (0.1, 0.1)}),
    Spec("x", None, {"s": "a b", "flag": False, "none": None}),
    Spec("gaussian_noise", None, {"severity": Sweep((1, 2, 3))}),
])
def test_str_and_parse_round_trip(spec):
    assert parse_spec(str(spec)) == spec


def test_str_by_hand():
    spec = Spec("npz", "/d/x.npz", {"exclude": "k", "eps": 0.5})
    assert str(spec) == "npz:/d/x.npz(exclude=k, eps=0.5)"
    assert str(Spec("msp")) == "msp"


# --------------------------------------------------------------------------------------------
# split_specs and expand
# --------------------------------------------------------------------------------------------
def test_split_specs_at_top_level_commas_only():
    assert split_specs("msp,energy") == ["msp", "energy"]
    assert split_specs("msp, zhou(lam=0.5, T=10), albu:Blur(blur_limit=(3, 7))") == [
        "msp", "zhou(lam=0.5, T=10)", "albu:Blur(blur_limit=(3, 7))"]
    # every piece parses, and the pieces joined again split the same way
    parts = split_specs("a(x=1,y=(2,3)),b:c(z='p,q'),d")
    assert [parse_spec(p).name for p in parts] == ["a", "b", "d"]
    assert split_specs(",".join(parts)) == parts


@pytest.mark.parametrize("text,message", [("a,,b", "empty entry"), ("a,", "empty entry"),
                                          ("a(x=1,b", "unbalanced")])
def test_split_specs_errors(text, message):
    with pytest.raises(BenchError, match=message):
        split_specs(text)


def test_expand_is_the_product_of_sweeps_in_order():
    spec = parse_spec("x(a=1..2, b=0.5, c=3..5)")
    got = expand(spec)
    want = [Spec("x", None, {"a": a, "b": 0.5, "c": c}) for a in (1, 2) for c in (3, 4, 5)]
    assert got == want
    assert expand(parse_spec("msp(t=2)")) == [Spec("msp", None, {"t": 2})]
    # each expanded spec prints and parses back to itself
    assert all(parse_spec(str(s)) == s for s in got)


# --------------------------------------------------------------------------------------------
# did_you_mean
# --------------------------------------------------------------------------------------------
def test_did_you_mean_by_hand():
    assert did_you_mean("mps", ["msp", "energy"]) == "; did you mean 'msp'?"
    assert did_you_mean("qqqq", ["msp", "energy"]) == ""
    assert did_you_mean("fgo", ["fog", "frost"], show=lambda c: f"cifar10c:{c}") == (
        "; did you mean cifar10c:fog?")
    assert did_you_mean("Gaus", ["Gauss", "GaussNoise", "Blur"], n=3) == (
        "; did you mean 'Gauss', 'GaussNoise'?")
    # the cutoff is difflib's ratio: 'ab' vs 'abcd' scores 2*2/6 = 0.67
    assert did_you_mean("ab", ["abcd"], cutoff=0.6) == "; did you mean 'abcd'?"
    assert did_you_mean("ab", ["abcd"], cutoff=0.7) == ""


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
@pytest.fixture
def reg() -> Registry:
    """A private registry: no built-in package, an entry-point group nobody provides."""
    return Registry("widget", "shiftbench.tests.no_such_group")


def _widget(reg: Registry, name: str = "blue") -> type:
    @reg.register(name)
    class Widget(Component):
        """A test widget."""

        def __init__(self, *, size: int = 3, device: str = "cpu"):
            self.size = size
            self.device = device

    return Widget


def test_register_and_create(reg):
    cls = _widget(reg)
    assert cls.name == "blue" and reg.names() == ["blue"] and "blue" in reg
    w = reg.create("blue(size=5)", device="cuda", data_root="ignored")  # context it does not name
    assert (w.size, w.device) == (5, "cuda")
    assert reg.create(Spec("blue")).size == 3
    # the device is context the run supplies: recorded in the params, not part of the label
    assert w.spec() == "blue(size=5)" and w.get_params()["device"] == "cuda"
    assert reg.dist_of("blue") is None


def test_register_clash_is_an_error(reg):
    _widget(reg)
    with pytest.raises(BenchError, match="widget 'blue' is registered twice"):
        _widget(reg)


def test_unknown_name_lists_choices_and_the_closest(reg):
    _widget(reg, "blue")
    _widget(reg, "green")
    with pytest.raises(BenchError, match=r"unknown widget 'bleu'; did you mean 'blue'\? "
                                         r"\(choose from: blue, green\)"):
        reg.get("bleu")
    with pytest.raises(BenchError, match=r"^unknown widget 'zzzz' \(choose from: blue, green\)$"):
        reg.create("zzzz")


def test_create_validates_parameters(reg):
    _widget(reg)
    with pytest.raises(BenchError, match=r"widget 'blue' has no parameter 'colour' "
                                         r"\(parameters: size, device\)"):
        reg.create("blue(colour=1)")
    with pytest.raises(BenchError, match="takes no ':' argument"):
        reg.create("blue:x")
    with pytest.raises(BenchError, match="holds a range"):
        reg.create("blue(size=1..3)")


def test_create_turns_constructor_value_errors_into_bench_errors(reg):
    @reg.register("strict")
    class Strict(Component):
        def __init__(self, *, k: int = 1):
            if k < 1:
                raise ValueError("k must be >= 1")
            self.k = k

    with pytest.raises(BenchError, match=r"^strict\(k=0\): k must be >= 1$"):
        reg.create("strict(k=0)")


def test_takes_arg_components(reg):
    @reg.register("file")
    class File(Component):
        takes_arg = True

        def __init__(self, arg: str, *, mode: str = "r"):
            self.arg = arg
            self.mode = mode

    f = reg.create("file:/tmp/x.npz(mode=w)")
    assert (f.arg, f.mode) == ("/tmp/x.npz", "w")
    assert f.spec() == "file:/tmp/x.npz(mode=w)"
    with pytest.raises(BenchError, match=r"needs an argument: file:VALUE"):
        reg.create("file")
