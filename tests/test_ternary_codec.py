"""Tests for the ternary connectome codec: exact round trips, cost near the entropy, refusal of bad input."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from genprune_nb.connectome.wiring import ternary_codec as tc
from genprune_nb.connectome.ternary_codec import CodecError


def ternary(shape, density: float, seed: int = 0, pos: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = rng.random(shape) < density
    sign = np.where(rng.random(shape) < pos, 1, -1)
    return np.where(keep, sign, 0).astype(np.int8)


def assert_same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert b[k].dtype == np.int8 and b[k].shape == a[k].shape
        np.testing.assert_array_equal(a[k], b[k])


@pytest.fixture
def tensors() -> dict[str, np.ndarray]:
    return {
        "wte": ternary((300, 64), 0.26, 1),
        "attn": ternary((64, 3, 64), 0.5, 2),  # 3-D
        "bias": ternary((257,), 0.9, 3, pos=0.8),  # 1-D, unbalanced signs
    }


def test_round_trip_shapes_and_densities(tensors):
    for density in (0.0, 0.01, 0.26, 0.7, 1.0):
        for i, shape in enumerate([(1,), (5,), (33, 17), (4, 5, 6), (2, 3, 4, 5)]):
            t = {f"t{i}": ternary(shape, density, seed=i)}
            assert_same(t, tc.decode(tc.encode(t))[0])
    assert_same(tensors, tc.decode(tc.encode(tensors))[0])


def test_edge_cases():
    t = {
        "zeros": np.zeros((40, 7), np.int8),
        "ones": np.ones((13,), np.int8),
        "minus": -np.ones((2, 3, 4), np.int8),
        "empty": np.zeros((0, 768), np.int8),
        "scalar": np.array(-1, np.int8),
        "two": np.array([[1, -1]], np.int8),
        "fortran": np.asfortranarray(ternary((31, 9), 0.4, 5)),
        "strided": ternary((20, 20), 0.4, 6)[::2, 1::3],
    }
    blob = tc.encode(t)
    assert_same(t, tc.decode(blob)[0])
    assert tc.decode(tc.encode({})) == ({}, {})
    assert tc.entropy_bits_per_weight({"zeros": t["zeros"], "empty": t["empty"]}) == 0.0
    assert tc.entropy_bits_per_weight({}) == 0.0


def test_cost_close_to_entropy():
    t = {f"layer{i}": ternary((512, 1024), 0.262, seed=i) for i in range(4)}  # ~2.1M weights
    n = sum(a.size for a in t.values())
    entropy = tc.entropy_bits_per_weight(t)
    blob = tc.encode(t)
    header = json.loads(blob[18:18 + struct.unpack_from("<I", blob, 10)[0]])
    payload_bits = 8 * sum(e["nbytes"] for e in header["tensors"]) / n
    achieved = 8 * len(blob) / n  # with the ~150-byte-per-tensor header
    assert 1.08 < entropy < 1.10
    assert entropy <= payload_bits <= entropy + 1e-4
    assert achieved <= entropy + 0.005 and achieved <= 1.10


def test_entropy_matches_formula():
    a = np.array([0, 0, 1, -1], np.int8)  # p = (1/2, 1/4, 1/4): 1.5 bits
    b = np.zeros(4, np.int8)  # 0 bits
    assert tc.entropy_bits_per_weight({"a": a, "b": b}) == pytest.approx(0.75)


def test_metadata_round_trip(tensors):
    meta = {"c": 0.02, "generation": 6, "source": "gpt2-124m", "density": [0.262, 0.3], "note": None}
    out, got = tc.decode(tc.encode(tensors, meta))
    assert got == meta
    assert tc.decode(tc.encode(tensors))[1] == {}
    with pytest.raises(CodecError, match="JSON"):
        tc.encode(tensors, {"c": object()})


def test_bad_values_name_the_tensor(tensors):
    bad = dict(tensors, **{"transformer.h.3.mlp.c_fc.weight": np.array([[0, 1], [2, -1]], np.int8)})
    with pytest.raises(CodecError, match=r"transformer\.h\.3\.mlp\.c_fc\.weight.*value 2"):
        tc.encode(bad)
    with pytest.raises(CodecError, match=r"'w'.*value -7"):
        tc.entropy_bits_per_weight({"w": np.array([-7], np.int8)})


@pytest.mark.parametrize("value", [np.zeros(3, np.float32), np.zeros(3, np.int64), [0, 1, -1]])
def test_wrong_dtype_refused(value):
    with pytest.raises(CodecError, match="'w'"):
        tc.encode({"w": value})


def test_payload_corruption_detected(tensors):
    blob = bytearray(tc.encode(tensors))
    for pos in (len(blob) - 1, len(blob) - 100, len(blob) // 2 + 200):
        corrupt = bytearray(blob)
        corrupt[pos] ^= 0x10
        with pytest.raises(CodecError, match="corrupt|checksum"):
            tc.decode(bytes(corrupt))


def test_header_corruption_detected(tensors):
    blob = bytearray(tc.encode(tensors))
    blob[30] ^= 0x01  # inside the JSON header
    with pytest.raises(CodecError, match="corrupt header"):
        tc.decode(bytes(blob))


def test_truncated_and_foreign_blobs(tensors):
    blob = tc.encode(tensors)
    for cut in (0, 5, 25, len(blob) - 1):
        with pytest.raises(CodecError, match="truncated"):
            tc.decode(blob[:cut])
    with pytest.raises(CodecError, match="trailing"):
        tc.decode(blob + b"\0")
    with pytest.raises(CodecError, match="magic"):
        tc.decode(b"PK\x03\x04" + blob[4:])
    with pytest.raises(CodecError, match="version 99"):
        tc.decode(blob[:8] + struct.pack("<H", 99) + blob[10:])
    with pytest.raises(CodecError, match="bytes"):
        tc.decode("not bytes")


def test_header_is_self_describing(tensors):
    blob = tc.encode(tensors, {"c": 0.02})
    n = struct.unpack_from("<I", blob, 10)[0]
    header = json.loads(blob[18:18 + n])
    assert [t["name"] for t in header["tensors"]] == list(tensors)
    assert header["tensors"][1]["shape"] == [64, 3, 64]
    assert sum(header["tensors"][0]["counts"]) == tensors["wte"].size


def test_save_load(tmp_path, tensors):
    path = tmp_path / "sub" / "connectome.tern"
    tc.save(path, tensors, {"c": 0.02})
    got, meta = tc.load(path)
    assert_same(tensors, got)
    assert meta == {"c": 0.02}
    assert [p.name for p in path.parent.iterdir()] == ["connectome.tern"]  # no temp file left behind
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CodecError, match=f"{path.name}.*truncated"):
        tc.load(path)


def test_failed_save_keeps_old_file(tmp_path, tensors):
    path = tmp_path / "c.tern"
    tc.save(path, tensors)
    with pytest.raises(CodecError):
        tc.save(path, {"w": np.array([5], np.int8)})
    assert_same(tensors, tc.load(path)[0])
