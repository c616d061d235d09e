"""Download stage: a real HTTP server on 127.0.0.1 (normal, interrupted and resumed, corrupted,
404, no Range support, retries, lock file, full disk), file URLs, the CLI and the download plan."""

import errno
import hashlib
import io
import json
import random
import re

import pytest
from http_server import Server

from workflow.download import DownloadError, download, download_plan, main, read_lock

TEXT = "first document\nwith two lines\n\n\nsecond document\n"
BODY = random.Random(0).randbytes(3 * (1 << 20) + 12345)  # several 1 MiB read chunks


@pytest.fixture
def server():
    with Server() as srv:
        yield srv


@pytest.fixture
def delays():
    """The backoff waits a download asked for, without waiting."""
    return []


def fetch(url, out, sha256=None, delays=None, **kwargs):
    kwargs.setdefault("timeout_s", 10)
    return download(url, out, sha256, sleep=(delays.append if delays is not None else lambda s: None), **kwargs)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- download


def test_download_streams_to_disk(server, tmp_path):
    server.files["/big.bin"] = BODY
    out = fetch(f"{server.base}/big.bin", tmp_path / "dl" / "big", sha(BODY))
    assert out.read_bytes() == BODY
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["big"]  # no .part left
    assert server.ranges("/big.bin") == [None]


def test_interrupted_download_resumes_with_range(server, tmp_path, delays):
    server.files["/big.bin"] = BODY
    server.drop_first.add("/big.bin")
    out = fetch(f"{server.base}/big.bin", tmp_path / "big", sha(BODY), delays, backoff_s=0.5)
    assert out.read_bytes() == BODY
    first, second = server.ranges("/big.bin")
    assert first is None and second == f"bytes={len(BODY) // 2}-"
    assert delays == [0.5]
    assert not (tmp_path / "big.part").exists()


def test_resume_continues_a_part_left_by_an_earlier_run(server, tmp_path):
    server.files["/big.bin"] = BODY
    (tmp_path / "big.part").write_bytes(BODY[:1000])
    assert fetch(f"{server.base}/big.bin", tmp_path / "big", sha(BODY)).read_bytes() == BODY
    assert server.ranges("/big.bin") == ["bytes=1000-"]


def test_server_without_range_support_starts_over(server, tmp_path):
    server.files["/big.bin"] = BODY
    server.drop_first.add("/big.bin")
    server.range_support = False
    out = fetch(f"{server.base}/big.bin", tmp_path / "big", sha(BODY))
    assert out.read_bytes() == BODY
    assert server.ranges("/big.bin") == [None, f"bytes={len(BODY) // 2}-"]  # asked, got the whole file


def test_checksum_mismatch_shows_both_hashes_and_leaves_nothing(server, tmp_path):
    server.files["/corpus.txt"] = TEXT.encode()
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        fetch(f"{server.base}/corpus.txt", tmp_path / "dl" / "web", wrong)
    assert wrong in str(info.value) and sha(TEXT.encode()) in str(info.value)
    assert list((tmp_path / "dl").iterdir()) == []


def test_http_404_names_status_and_url_without_retrying(server, tmp_path, delays):
    url = f"{server.base}/missing.txt"
    with pytest.raises(DownloadError, match=re.escape(f"HTTP 404 Not Found for {url}")):
        fetch(url, tmp_path / "out", "0" * 64, delays)
    assert len(server.requests) == 1 and delays == []
    assert not (tmp_path / "out").exists()


def test_server_errors_are_retried_with_exponential_backoff(server, tmp_path, delays):
    server.files["/flaky.txt"] = TEXT.encode()
    server.statuses["/flaky.txt"] = [503, 429, 500]
    out = fetch(f"{server.base}/flaky.txt", tmp_path / "out", sha(TEXT.encode()), delays, backoff_s=1, attempts=5)
    assert out.read_text() == TEXT
    assert delays == [1, 2, 4] and len(server.requests) == 4


def test_retries_are_bounded(server, tmp_path, delays):
    server.statuses["/down.txt"] = [503] * 10
    with pytest.raises(DownloadError, match=r"failed after 3 attempts: HTTP 503 Service Unavailable"):
        fetch(f"{server.base}/down.txt", tmp_path / "out", "0" * 64, delays, attempts=3, backoff_s=1)
    assert len(server.requests) == 3 and delays == [1, 2]


def test_lock_file_records_first_hash_and_checks_later_downloads(server, tmp_path):
    url = f"{server.base}/corpus.txt"
    lock = tmp_path / "config" / "corpus.lock.json"
    server.files["/corpus.txt"] = TEXT.encode()
    fetch(url, tmp_path / "a", lock_file=lock)
    assert read_lock(lock) == {url: {"sha256": sha(TEXT.encode()), "size": len(TEXT.encode())}}
    assert lock.read_text().startswith('{\n  "http')  # sorted, indented: reviewable in a diff
    fetch(url, tmp_path / "b", lock_file=lock)  # same bytes: fine
    server.files["/corpus.txt"] = b"changed upstream\n"
    with pytest.raises(DownloadError) as info:
        fetch(url, tmp_path / "c", lock_file=lock)
    assert sha(TEXT.encode()) in str(info.value) and sha(b"changed upstream\n") in str(info.value)
    assert "lock file" in str(info.value)
    assert not (tmp_path / "c").exists() and not (tmp_path / "c.part").exists()
    assert read_lock(lock)[url]["sha256"] == sha(TEXT.encode())


def test_lock_file_keeps_entries_sorted(tmp_path):
    lock = tmp_path / "corpus.lock.json"
    for name in ("b", "a", "c"):
        (tmp_path / name).write_text(name)
        fetch((tmp_path / name).as_uri(), tmp_path / "dl" / name, lock_file=lock)
    assert list(json.loads(lock.read_text())) == sorted((tmp_path / n).as_uri() for n in "abc")


def test_part_longer_than_the_file_starts_over(server, tmp_path):
    server.files["/big.bin"] = BODY
    (tmp_path / "big.part").write_bytes(BODY + b"stale tail")
    assert fetch(f"{server.base}/big.bin", tmp_path / "big", sha(BODY)).read_bytes() == BODY
    assert server.ranges("/big.bin") == [f"bytes={len(BODY) + 10}-", None]  # 416, then from byte 0


def test_disk_full_is_reported_with_bytes_written(server, tmp_path):
    server.files["/big.bin"] = BODY

    class FullDisk(io.FileIO):
        def write(self, data):
            if self.tell() + len(data) > 1 << 20:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    with pytest.raises(DownloadError, match=r"disk full while writing .*big\.part: 1048576 bytes written"):
        fetch(f"{server.base}/big.bin", tmp_path / "big", sha(BODY), open_file=FullDisk)
    assert not (tmp_path / "big").exists()
    assert (tmp_path / "big.part").stat().st_size == 1 << 20  # kept: a rerun resumes
    assert fetch(f"{server.base}/big.bin", tmp_path / "big", sha(BODY)).read_bytes() == BODY
    assert server.ranges("/big.bin")[-1] == f"bytes={1 << 20}-"


def test_file_url(tmp_path):
    src = tmp_path / "local.txt"
    src.write_text(TEXT)
    out = fetch(src.as_uri(), tmp_path / "copy", sha(TEXT.encode()))
    assert out.read_text() == TEXT


def test_missing_file_url_is_not_retried(tmp_path, delays):
    with pytest.raises(DownloadError, match="cannot read file://"):
        fetch((tmp_path / "nope.txt").as_uri(), tmp_path / "out", "0" * 64, delays)
    assert delays == []


def test_download_cli_reports_errors(server, tmp_path, capsys):
    url = f"{server.base}/missing.txt"
    assert (
        main(
            [
                "--url",
                url,
                "--out",
                str(tmp_path / "x"),
                "--lock-file",
                str(tmp_path / "l.json"),
                "--attempts",
                "2",
                "--backoff-s",
                "0",
            ]
        )
        == 1
    )
    assert f"error: HTTP 404 Not Found for {url}" in capsys.readouterr().err
    assert not (tmp_path / "l.json").exists()
    assert not list(tmp_path.glob("x*"))  # neither the file nor a .part


def test_download_plan_names_each_file():
    sources = [
        {"name": "stdlib", "builtin": "stdlib"},
        {"name": "one", "url": "https://example.org/a/corpus.txt", "sha256": "a" * 64},
        {
            "name": "shards",
            "urls": [
                "https://example.org/x/refs%2Fconvert/train/0000.parquet?download=true",
                {"url": "https://example.org/x/refs%2Fconvert/train/0000.parquet", "sha256": "b" * 64},
            ],
        },
    ]
    plan = download_plan(sources)
    assert [(p["source"], re.sub("-[0-9a-f]{8}-", "-", p["file"]), p["sha256"]) for p in plan] == [
        ("one", "0000-corpus.txt", "a" * 64),
        ("shards", "0000-0000.parquet", None),
        ("shards", "0001-0000.parquet", "b" * 64),
    ]
    # The URL's hash is in the name: the same name under another URL (another study) is another file.
    assert plan[1]["file"] != plan[2]["file"].replace("0001-", "0000-")


def test_a_pinned_local_file_that_changed_is_refused_until_repinned(tmp_path):
    """A file:// source pinned by the lock file, then edited: the download fails with both hashes and the
    command that records the new one; with --repin it is accepted and the lock file says so."""
    src, lock = tmp_path / "local.txt", tmp_path / "lock.json"
    src.write_text(TEXT)
    fetch(src.as_uri(), tmp_path / "dl" / "a", lock_file=lock)
    src.write_text(TEXT + "edited\n")
    with pytest.raises(DownloadError) as info:
        fetch(src.as_uri(), tmp_path / "dl" / "b", lock_file=lock)
    message = str(info.value)
    assert sha(TEXT.encode()) in message and sha((TEXT + "edited\n").encode()) in message
    assert f"python -m workflow.download --repin --url {src.as_uri()} --lock-file {lock}" in message
    assert not (tmp_path / "dl" / "b").exists()
    assert main(["--repin", "--url", src.as_uri(), "--lock-file", str(lock), "--out", str(tmp_path / "dl" / "b")]) == 0
    assert json.loads(lock.read_text())[src.as_uri()]["sha256"] == sha((TEXT + "edited\n").encode())
