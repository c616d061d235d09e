import numpy as np
import pytest

from workflow.shards import HEADER, RandomWindows, ShardError, ShardWriter, read_shard, sequential_windows


def write(path, tokens, dtype=np.uint16):
    writer = ShardWriter(path, dtype)
    writer.write(np.asarray(tokens))
    writer.close()
    return path


def test_round_trip_and_header(tmp_path):
    path = write(tmp_path / "s.bin", np.arange(1000) % 700)
    assert path.stat().st_size == HEADER.size + 2 * 1000
    assert path.read_bytes()[:8] == b"SLAWTOKS"
    tokens = read_shard(path)
    assert tokens.dtype == np.uint16 and np.array_equal(tokens, np.arange(1000) % 700)


def test_uint32_for_large_vocabularies(tmp_path):
    path = write(tmp_path / "s.bin", [70_000, 5], dtype=np.uint32)
    assert read_shard(path).tolist() == [70_000, 5]


def test_truncated_file(tmp_path):
    path = write(tmp_path / "s.bin", np.arange(100))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ShardError, match="header says 100 tokens .* truncated"):
        read_shard(path)


def test_foreign_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ShardError, match="not a token shard"):
        read_shard(path)


def test_random_windows_are_seeded_and_shifted(tmp_path):
    shards = [read_shard(write(tmp_path / f"{i}.bin", np.arange(500) + i)) for i in range(2)]
    a, b = RandomWindows(shards, 16, seed=3), RandomWindows(shards, 16, seed=3)
    x1, y1 = a.batch(8)
    x2, y2 = b.batch(8)
    assert np.array_equal(x1, x2) and x1.shape == (8, 16)
    assert np.array_equal(x1[:, 1:], y1[:, :-1])  # targets are inputs shifted by one


def test_sequential_windows_cover_the_split(tmp_path):
    shard = read_shard(write(tmp_path / "v.bin", np.arange(100)))
    windows = list(sequential_windows([shard], 10))
    assert len(windows) == 9
    assert windows[0][0].tolist() == list(range(10)) and windows[0][1].tolist() == list(range(1, 11))
