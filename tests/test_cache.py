"""bench.cache: keys (config_hash, file_sha256) against hashlib, store/load and broken files."""

from __future__ import annotations

import hashlib
import logging
import math

import pytest
import torch

from bench import cache


def test_config_hash_is_sha256_of_canonical_json():
    # sorted keys, no spaces, floats by repr: written out by hand
    want = hashlib.sha256(b'{"a":[1,2.5,"x"],"b":{"c":null,"d":true}}').hexdigest()
    assert cache.config_hash({"b": {"d": True, "c": None}, "a": [1, 2.5, "x"]}) == want


def test_config_hash_is_stable_and_key_order_independent():
    a = {"model": "cnn", "seed": 0, "params": {"eps": 4 / 255, "steps": 10}}
    b = {"params": {"steps": 10, "eps": 4 / 255}, "seed": 0, "model": "cnn"}
    assert cache.config_hash(a) == cache.config_hash(b) == cache.config_hash(dict(a))
    assert len(cache.config_hash(a)) == 64
    # any change of a value changes the key, including the last bits of a float
    assert cache.config_hash({**a, "seed": 1}) != cache.config_hash(a)
    nudged = {**a, "params": {"eps": math.nextafter(4 / 255, 1.0), "steps": 10}}
    assert cache.config_hash(nudged) != cache.config_hash(a)


def test_file_sha256_against_hashlib(tmp_path):
    # larger than the 1 MiB read block, and not a multiple of it
    data = bytes(range(256)) * 5000 + b"tail"
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    assert cache.file_sha256(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert cache.file_sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_store_load_round_trip(tmp_path):
    value = {"W": torch.arange(6.0).reshape(2, 3), "mu": 0.25, "names": ["a", "b"]}
    path = tmp_path / "det" / "x.pt"
    cache.store(path, "key-1", value)
    got = cache.load(path, "key-1")
    assert torch.equal(got["W"], value["W"]) and got["mu"] == 0.25 and got["names"] == ["a", "b"]
    assert [p.name for p in path.parent.iterdir()] == ["x.pt"]  # no temp file left


def test_wrong_key_or_missing_file_is_a_miss(tmp_path):
    path = tmp_path / "x.pt"
    assert cache.load(path, "key-1") is None
    cache.store(path, "key-1", [1, 2, 3])
    assert cache.load(path, "key-2") is None
    torch.save([1, 2, 3], path)  # a file that is not a cache entry at all
    assert cache.load(path, "key-1") is None


def test_truncated_file_is_a_miss_with_a_warning(tmp_path, caplog):
    path = tmp_path / "x.pt"
    cache.store(path, "key-1", {"W": torch.randn(100, 100)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="bench.cache"):
        assert cache.load(path, "key-1") is None
    assert any("ignoring unreadable cache file" in r.getMessage() and str(path) in r.getMessage()
               for r in caplog.records)


def test_source_hash_is_sha256_of_the_defining_files_in_mro_order():
    import bench.detectors.base
    import bench.detectors.combined
    import bench.detectors.zhou
    import bench.registry

    h = hashlib.sha256()
    for mod in (bench.detectors.combined, bench.detectors.zhou, bench.detectors.base,
                bench.registry):  # Combined -> Zhou -> Detector -> Component
        h.update(open(mod.__file__, "rb").read())
    assert cache.source_hash(bench.detectors.combined.Combined) == h.hexdigest()


@pytest.mark.parametrize("value", [0.1, 1e-300, float("inf")])
def test_config_hash_floats_by_repr(value):
    text = repr(value) if math.isfinite(value) else "Infinity"  # json's spelling of inf
    want = hashlib.sha256(f'{{"x":{text}}}'.encode()).hexdigest()
    assert cache.config_hash({"x": value}) == want
