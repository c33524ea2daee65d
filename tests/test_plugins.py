"""Plugins: ``--plugin`` files, entry-point plugins (mocked at the edge), the example package."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.errors import BenchError
from bench.plugins import load_plugin_file, load_plugins
from bench.registry import DATASETS, DETECTORS, MODELS, SHIFTS
from bench.views import Views

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "shiftbench-plugin-example"


@pytest.fixture
def registries(monkeypatch):
    """The four registries with built-ins loaded, restored after the test (so test plugins
    never leak into other tests that list every component)."""
    for reg in (SHIFTS, DETECTORS, DATASETS, MODELS):
        reg.names()
        monkeypatch.setattr(reg, "_entries", dict(reg._entries))
        monkeypatch.setattr(reg, "problems", list(reg.problems))
        monkeypatch.setattr(reg, "_plugins_listed", reg._plugins_listed)
    return SHIFTS, DETECTORS


def _write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code))
    return path


GOOD = """
    import torch
    from bench.attacks.base import SHIFTS, Shift
    from bench.detectors.base import DETECTORS, Detector

    @DETECTORS.register("tp_maxlogit")
    class MaxLogit(Detector):
        '''max_j z_j / t'''
        needs = frozenset({"logits"})
        def __init__(self, *, t: float = 1.0):
            self.t = t
        def score(self, views):
            return self.logits64(views).max(1).values / self.t

    @SHIFTS.register("tp_invert")
    class Invert(Shift):
        '''1 - x'''
        def apply(self, x, y, *, model, generator):
            return 1.0 - x
"""


def test_plugin_file_registers_a_detector_and_a_shift(tmp_path, registries):
    path = _write(tmp_path / "myplugin.py", GOOD)
    added = load_plugin_file(path)
    assert added == ["detector:tp_maxlogit", "shift:tp_invert"]
    assert "tp_maxlogit" in DETECTORS and "tp_invert" in SHIFTS

    z = np.array([[1.0, 3.0, -2.0], [0.5, 0.25, 0.75]])
    det = DETECTORS.create("tp_maxlogit(t=2)").fit(Views("fit"), Views("val"))
    np.testing.assert_array_equal(det.score(Views("t", logits=torch.from_numpy(z))).numpy(),
                                  z.max(1) / 2)
    x = torch.rand(2, 1, 3, 3)
    out = SHIFTS.create("tp_invert")(x, torch.zeros(2), generator=torch.Generator())
    torch.testing.assert_close(out, 1.0 - x)
    # the same file again (e.g. --plugin and $BENCH_PLUGINS): nothing re-runs, same answer
    assert load_plugin_file(str(path)) == added


def test_bench_plugins_environment_variable(tmp_path, registries, monkeypatch):
    a = _write(tmp_path / "a.py", GOOD)
    b = _write(tmp_path / "b.py", """
        from bench.detectors.base import DETECTORS, Detector

        @DETECTORS.register("tp_zero")
        class Zero(Detector):
            def score(self, views):
                raise NotImplementedError
    """)
    monkeypatch.setenv("BENCH_PLUGINS", os.pathsep.join([str(a), "", str(b)]))
    assert load_plugins(None) == ["detector:tp_maxlogit", "shift:tp_invert", "detector:tp_zero"]
    # --plugin paths come first; a file named twice is loaded once
    assert load_plugins([str(b)]) == ["detector:tp_zero", "detector:tp_maxlogit",
                                      "shift:tp_invert"]


def test_clash_with_a_builtin_names_the_file_and_registers_nothing(tmp_path, registries):
    builtin = DETECTORS.get("pood")
    path = _write(tmp_path / "clash.py", """
        from bench.detectors.base import DETECTORS, Detector

        @DETECTORS.register("tp_fine")
        class Fine(Detector):
            pass

        @DETECTORS.register("pood")
        class Mine(Detector):
            pass
    """)
    with pytest.raises(BenchError) as info:
        load_plugin_file(path)
    msg = str(info.value)
    assert str(path) in msg and "detector 'pood'" in msg and "built-in" in msg
    assert "rename" in msg and "\n" not in msg
    assert DETECTORS.get("pood") is builtin
    assert "tp_fine" not in DETECTORS  # all or nothing


def test_shift_clash_via_add(tmp_path, registries):
    path = _write(tmp_path / "clash2.py", """
        from bench.attacks.base import SHIFTS, Shift

        class Mine(Shift):
            pass

        SHIFTS.add("albu", Mine)
    """)
    with pytest.raises(BenchError, match=r"registers shift 'albu', which is a built-in"):
        load_plugin_file(path)


@pytest.mark.parametrize("code, expected", [
    ("def broken(:\n    pass\n", r"syntax error at line {line}"),
    ("import no_such_module_for_shiftbench_tests\n", r"failed to import: ModuleNotFoundError"),
    ("raise RuntimeError('boom')\n", r"failed to import: RuntimeError: boom"),
])
def test_broken_file(tmp_path, registries, code, expected):
    path = tmp_path / "broken.py"
    path.write_text(textwrap.dedent(GOOD) + code)
    expected = expected.format(line=len(textwrap.dedent(GOOD).splitlines()) + 1)
    with pytest.raises(BenchError, match=expected) as info:
        load_plugin_file(path)
    assert str(path) in str(info.value)
    assert "tp_maxlogit" not in DETECTORS and "tp_invert" not in SHIFTS
    # after fixing the file it loads (a failed import leaves nothing behind in sys.modules)
    path.write_text(textwrap.dedent(GOOD))
    assert load_plugin_file(path) == ["detector:tp_maxlogit", "shift:tp_invert"]


def test_missing_or_wrong_file(tmp_path, registries):
    with pytest.raises(BenchError, match="not found"):
        load_plugin_file(tmp_path / "nope.py")
    txt = tmp_path / "plugin.txt"
    txt.write_text("x = 1\n")
    with pytest.raises(BenchError, match=r"not a \.py file"):
        load_plugin_file(txt)


# ---------------------------------------------------------------------------------------------
# entry points, mocked at the edge: importlib.metadata.entry_points
# ---------------------------------------------------------------------------------------------
class _Dist:
    def __init__(self, name: str):
        self.name = name


class _EntryPoint:
    """What the registry reads of an importlib.metadata.EntryPoint."""

    def __init__(self, name: str, value: str, group: str, dist: str, load):
        self.name, self.value, self.group, self.dist = name, value, group, _Dist(dist)
        self._load = load

    def load(self):
        return self._load()


def _fail():
    raise ImportError("No module named 'broken_plugin_dep'")


def test_entry_point_clash_and_import_failure_are_reported_and_the_rest_works(
        tmp_path, registries, monkeypatch):
    from bench.detectors.base import Detector

    class Good(Detector):
        """min_j z_j"""
        needs = frozenset({"logits"})

        def score(self, views):
            return self.logits64(views).min(1).values

    builtin = DETECTORS.get("pood")
    eps = [
        _EntryPoint("pood", "evil_pkg:Pood", "bench.detectors", "evil-dist", lambda: Good),
        _EntryPoint("tp_broken", "broken_pkg:X", "bench.detectors", "broken-dist", _fail),
        _EntryPoint("tp_good", "good_pkg:Good", "bench.detectors", "good-dist", lambda: Good),
    ]
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: eps if kw.get("group") == "bench.detectors" else real(**kw))
    monkeypatch.setattr(DETECTORS, "_plugins_listed", False)

    names = DETECTORS.names()
    assert "tp_good" in names and "tp_broken" in names
    clash = [p for p in DETECTORS.problems if "'pood'" in p]
    assert len(clash) == 1 and "evil-dist" in clash[0] and "built-in" in clash[0]
    assert DETECTORS.get("pood") is builtin  # never replaced

    with pytest.raises(BenchError) as info:
        DETECTORS.get("tp_broken")
    assert "tp_broken" in str(info.value) and "broken-dist" in str(info.value)
    assert "broken_plugin_dep" in str(info.value)
    assert "tp_broken" not in DETECTORS.names()

    assert DETECTORS.get("tp_good") is Good and DETECTORS.dist_of("tp_good") == "good-dist"
    z = torch.tensor([[1.0, -2.0], [3.0, 4.0]], dtype=torch.float64)
    det = DETECTORS.create("tp_good").fit(Views("fit"), Views("val"))
    assert det.score(Views("t", logits=z)).tolist() == [-2.0, 3.0]
    assert DETECTORS.create("pood:MaxLogit") is not None  # the built-in still works

    # a plugin file cannot shadow an installed plugin either
    path = _write(tmp_path / "shadow.py", """
        from bench.detectors.base import DETECTORS, Detector

        @DETECTORS.register("tp_good")
        class Shadow(Detector):
            pass
    """)
    with pytest.raises(BenchError, match=r"provided by the installed plugin good-dist"):
        load_plugin_file(path)


# ---------------------------------------------------------------------------------------------
# the example package, installed for real, through the CLI
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The example package built and installed into a private folder (put on PYTHONPATH).

    ``pip install --target`` builds the wheel and writes its dist-info with the entry points
    exactly as an install into the venv would, without changing the venv other tests share.
    """
    root = tmp_path_factory.mktemp("example")
    src = root / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                "__pycache__", ".pytest_cache"))
    site = root / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                           "--no-build-isolation", "--no-index", "--quiet", "--target", str(site),
                           str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (site / "shiftbench_plugin_example").is_dir()
    return site


def _env(site: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["BENCH_HOME"] = str(home)
    env.pop("BENCH_PLUGINS", None)
    # two cores shared by several processes: one thread each avoids oversubscription
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    return env


def _bench(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("bench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "bench.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=600)


def test_example_package_entry_points(example_site):
    found = {(ep.group, ep.name, ep.value) for d in importlib.metadata.distributions(
        path=[str(example_site)]) for ep in d.entry_points}
    assert ("bench.attacks", "jpeg", "shiftbench_plugin_example.jpeg:JPEGCompression") in found
    assert ("bench.detectors", "knn", "shiftbench_plugin_example.knn:KNN") in found


def test_example_package_runs_through_bench_run(example_site, tmp_path):
    """`bench run --detector knn --attack jpeg` on digits with the installed example package,
    plus a --plugin file detector in the same run; records name where each came from."""
    plugin = _write(tmp_path / "local_plugin.py", GOOD)
    env = _env(example_site, tmp_path / "home")
    out = tmp_path / "out"
    proc = _bench("run", "--detector", "knn,tp_maxlogit", "--attack", "jpeg", "--out", str(out),
                  "--plugin", str(plugin), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in out.rglob("*.json")]
    by_det = {r["detector"]["name"]: r for r in records if r["shift"]["group"] != "clean"}
    assert set(by_det) == {"knn", "tp_maxlogit"}
    clean = {r["detector"]["name"]: r for r in records if r["shift"]["group"] == "clean"}
    assert set(clean) == {"knn", "tp_maxlogit"} and clean["knn"]["failure"]["n"] == 809
    knn = by_det["knn"]
    assert knn["status"] == "ok"
    assert knn["detector"]["dist"] == "shiftbench-plugin-example"
    assert knn["detector"]["params"] == {"k": 50}
    assert knn["shift"]["name"] == "jpeg" and knn["shift"]["dist"] == "shiftbench-plugin-example"
    assert knn["shift"]["params"]["quality"] == 58 and knn["shift"]["group"] == "corruption"
    assert 0.0 <= knn["metrics"]["auroc"] <= 1.0
    assert by_det["tp_maxlogit"]["status"] == "ok"
    assert by_det["tp_maxlogit"]["detector"]["dist"].startswith("file ")  # a local file

    # a broken --plugin file: exit 2, one line naming the file
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import no_such_module_for_shiftbench_tests\n")
    proc = _bench("list", "detectors", "--plugin", str(broken), env=env, cwd=tmp_path)
    assert proc.returncode == 2
    assert str(broken) in proc.stderr and "Traceback" not in proc.stderr


def test_example_package_own_tests_pass(example_site, tmp_path):
    tests = tmp_path / "example_tests"
    shutil.copytree(EXAMPLE / "tests", tests)
    env = _env(example_site, tmp_path / "home")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tests)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_the_plugin_file_in_the_docs_loads_and_works(tmp_path, registries):
    """docs/plugins.md's complete example file, as printed there (guards against doc drift)."""
    import re

    text = (REPO / "docs" / "plugins.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    path = tmp_path / "my_plugin.py"
    path.write_text(code)
    assert load_plugin_file(path) == ["shift:speckle_noise", "shift:fgsm_ll",
                                      "detector:max_logit", "dataset:my_ood", "model:mlp"]
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(4) % 3
    speckle = SHIFTS.create("speckle_noise(severity=5)")
    assert speckle.sigma == 0.2
    out = speckle(x, y, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and not torch.equal(out, x)

    from bench.models import Classifier

    net = MODELS.create("mlp(hidden=5)").build(3, 3, 8)
    model = Classifier(net, mean=[0.0] * 3, std=[1.0] * 3, num_classes=3).eval()
    adv = SHIFTS.create("fgsm_ll(eps=0.03)")(x, y, model=model,
                                              generator=torch.Generator().manual_seed(0))
    assert float((adv - x).abs().max()) <= 0.03 + 1e-6
    z = torch.tensor([[1.0, 5.0, 2.0]], dtype=torch.float64)
    det = DETECTORS.create("max_logit(t=2)").fit(Views("fit"), Views("val"))
    assert det.score(Views("t", logits=z)).tolist() == [2.5]


NUMPY_STATE = """
    import numpy as np
    import torch
    from bench.detectors.base import DETECTORS, Detector

    @DETECTORS.register("np_means")
    class NpMeans(Detector):
        needs = frozenset({"features"})
        cacheable = True

        def fit(self, fit, val):
            self.mean_ = fit.features.mean(0).numpy()      # kept as numpy: not cache data
            self.fitted_ = True
            return self

        def score(self, views):
            return -(views.features - torch.from_numpy(self.mean_)).norm(dim=1)

        def state(self):
            return {"mean": self.mean_}

        def load_state(self, state):
            self.mean_ = np.asarray(state["mean"])
            self.fitted_ = True
            return self
"""


def test_cacheable_plugin_with_numpy_state_fails_its_cells_naming_detector_and_key(
        tmp_path, registries, monkeypatch):
    """State is stored with weights_only in mind: a numpy array is refused when stored, with a
    message naming the detector and the key, and nothing is written to the cache."""
    from bench.runner import RunConfig, run

    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "home"))
    load_plugin_file(_write(tmp_path / "np_plugin.py", NUMPY_STATE))
    summary = run(RunConfig(detectors=["np_means", "msp"], shifts=["gaussian_noise"],
                            out=tmp_path / "r", device="cpu"))
    by_det = {rec["detector"]["name"]: rec for rec in summary.records}
    bad = by_det["np_means"]
    assert bad["status"] == "failed"
    assert bad["error"].startswith("detector 'np_means': state()['mean'] is of type "
                                   "numpy.ndarray: cache entries hold only tensors")
    assert by_det["msp"]["status"] == "ok"
    assert not list((tmp_path / "home" / "detectors").glob("np_means*"))
