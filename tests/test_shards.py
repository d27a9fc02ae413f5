import os

import numpy as np
import pytest

from genprune_nb.data.shards import HEADER_BYTES, MAGIC, ShardError, list_shards, read_header, read_shard, write_shard


def _valid(path, n=100):
    tokens = np.arange(n, dtype=np.int64) * 661 % 65536
    write_shard(path, tokens)
    return tokens


def _patch_int(path, index, value):
    data = bytearray(path.read_bytes())
    data[4 * index : 4 * index + 4] = np.int32(value).tobytes()
    path.write_bytes(bytes(data))


def test_round_trip(tmp_path):
    path = tmp_path / "x_train_000000.bin"
    tokens = np.array([0, 1, 50256, 65535, 7], dtype=np.int64)
    write_shard(path, tokens)
    assert os.listdir(tmp_path) == [path.name]  # no temporary left behind
    assert path.stat().st_size == HEADER_BYTES + 2 * len(tokens)
    assert read_header(path) == (MAGIC, 1, 5, "gpt2")  # slot 3 left 0, as llm.c leaves it: GPT-2
    got = read_shard(path)
    assert got.dtype == np.uint16 and not got.flags.writeable
    np.testing.assert_array_equal(got, tokens)
    raw = np.fromfile(path, dtype="<i4", count=256)
    assert list(raw[:3]) == [20240520, 1, 5] and not raw[3:].any()


def test_empty_shard(tmp_path):
    write_shard(tmp_path / "e.bin", [])
    assert read_shard(tmp_path / "e.bin").size == 0


@pytest.mark.parametrize(
    "corrupt, pattern",
    [
        (lambda p: _patch_int(p, 0, 12345), r"bad magic number 12345, expected 20240520"),
        (lambda p: _patch_int(p, 1, 2), r"unsupported shard version 2, expected 1"),
        (lambda p: p.write_bytes(p.read_bytes()[:-2]), r"truncated body: header declares 100 tokens, file holds 99"),
        (lambda p: p.write_bytes(p.read_bytes() + b"\0\0\0\0"), r"body too long: header declares 100 tokens, file holds 102"),
        (lambda p: p.write_bytes(p.read_bytes()[:-1]), r"truncated body: .* holds 99 and a stray byte"),
        (lambda p: p.write_bytes(p.read_bytes()[:100]), r"shorter than the shard header \(100 bytes < 1024\)"),
    ],
    ids=["magic", "version", "truncated", "too_long", "odd_bytes", "short_header"],
)
def test_faults_name_file_and_fault(tmp_path, corrupt, pattern):
    path = tmp_path / "bad.bin"
    _valid(path)
    corrupt(path)
    for read in (read_header, read_shard):
        with pytest.raises(ShardError, match=pattern) as err:
            read(path)
        assert str(path) in str(err.value)


@pytest.mark.parametrize("bad", [-1, 65536, 70000])
def test_write_refuses_out_of_range(tmp_path, bad):
    path = tmp_path / "o.bin"
    with pytest.raises(ShardError, match=f"token id {bad} at index 2 is outside uint16") as err:
        write_shard(path, [1, 2, bad, 3])
    assert str(path) in str(err.value)
    assert not os.listdir(tmp_path)


def test_write_refuses_non_integer(tmp_path):
    with pytest.raises(ShardError, match="1-D integer"):
        write_shard(tmp_path / "f.bin", np.array([1.0, 2.0]))
    with pytest.raises(ShardError, match="1-D integer"):
        write_shard(tmp_path / "f.bin", np.zeros((2, 2), dtype=np.int64))


def test_list_shards(tmp_path):
    for name in ["d_train_000002.bin", "d_train_000001.bin", "d_val_000000.bin", "other_train_000001.bin"]:
        write_shard(tmp_path / name, [1])
    assert [p.name for p in list_shards(tmp_path, "d", "train")] == ["d_train_000001.bin", "d_train_000002.bin"]
    assert [p.name for p in list_shards(tmp_path, "d", "val")] == ["d_val_000000.bin"]
    with pytest.raises(FileNotFoundError) as err:
        list_shards(tmp_path, "fineweb", "train")
    assert str(tmp_path) in str(err.value) and "fineweb_train_*.bin" in str(err.value)
