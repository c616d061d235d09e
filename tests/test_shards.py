import numpy as np
import pytest

from workflow.shards import HEADER, ShardError, ShardWriter, StepBatches, read_shard, sequential_windows


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


def test_random_batches_are_addressed_by_step(tmp_path):
    shards = [read_shard(write(tmp_path / f"{i}.bin", np.arange(500) + i)) for i in range(2)]
    batches = StepBatches(shards, 16, rows=8, seed=3)
    x1, y1 = batches.batch(5)
    x2, _ = StepBatches(shards, 16, rows=8, seed=3).batch(5)
    assert np.array_equal(x1, x2) and x1.shape == (8, 16)
    assert not np.array_equal(x1, batches.batch(6)[0])
    assert not np.array_equal(x1, StepBatches(shards, 16, rows=8, seed=4).batch(5)[0])
    assert np.array_equal(x1[:, 1:], y1[:, :-1])  # targets are inputs shifted by one


def test_sequential_batches_walk_the_shards_and_wrap(tmp_path):
    shards = [
        read_shard(write(tmp_path / "a.bin", np.arange(41))),
        read_shard(write(tmp_path / "b.bin", np.arange(100, 121))),
    ]
    batches = StepBatches(shards, 10, rows=3, seed=0, order="sequential")
    x0, y0 = batches.batch(0)  # windows: a[0:10], a[10:20], a[20:30]; a[30:40]; b[0:10], b[10:20]
    assert x0[:, 0].tolist() == [0, 10, 20] and y0[0].tolist() == list(range(1, 11))
    x1, _ = batches.batch(1)
    assert x1[:, 0].tolist() == [30, 100, 110]
    assert np.array_equal(batches.batch(2)[0], x0)  # a second epoch


def test_sequential_windows_cover_the_split(tmp_path):
    shard = read_shard(write(tmp_path / "v.bin", np.arange(100)))
    windows = list(sequential_windows([shard], 10))
    assert len(windows) == 9
    assert windows[0][0].tolist() == list(range(10)) and windows[0][1].tolist() == list(range(1, 11))
