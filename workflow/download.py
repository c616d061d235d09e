"""Download stage: fetch one file of a url corpus source, verified by sha256.

Runs on the submit host (``localrules``): cluster compute nodes often have no
internet. The file is streamed to ``OUT.part`` beside the output; an
interrupted transfer resumes with an HTTP Range request (a server without
Range support answers 200 with the whole file, which then starts over from
byte 0); network errors, timeouts and HTTP 408, 429 and 5xx are retried with
exponential backoff (at most ``MAX_BACKOFF_S`` between tries, longer when the
server's Retry-After asks), other HTTP errors fail at once ("HTTP 404 Not
Found for URL"). Only a complete, verified file is renamed to ``OUT``; a
checksum mismatch shows both hashes and deletes the download; a full disk
says so and keeps the ``.part`` to resume.

A file whose sha256 the config does not give is pinned by the lock file
(``corpus.lock_file``, default ``config/corpus.lock.json``): the first download
records the hash and size it saw, and every later download (a reviewer's
rerun) must match them.

``download_plan`` names every file of the configured sources; the Snakefile
imports it to build the DAG, so this module imports only the standard library
at the top.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import http.client
import json
import os
import re
import shlex
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from workflow import __version__
from workflow.files import CHUNK_BYTES, read_json, run_stage, write_json_atomic


class DownloadError(RuntimeError):
    """A file that cannot be fetched or verified; the message names the URL."""


DEFAULT_LOCK_FILE = "config/corpus.lock.json"
DEFAULT_ATTEMPTS = 5
DEFAULT_BACKOFF_S = 2.0
DEFAULT_TIMEOUT_S = 60.0
MAX_BACKOFF_S = 120.0


# --------------------------------------------------------------------------- lock file


def read_lock(path: str | os.PathLike) -> dict[str, dict]:
    """The lock file's entries, URL -> {"sha256", "size"}; empty if there is none yet."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        entries = read_json(path)
    except json.JSONDecodeError as e:
        raise DownloadError(f"lock file {path} is not valid JSON: {e}") from None
    if not isinstance(entries, dict):
        raise DownloadError(f"lock file {path} must map each URL to its sha256 and size")
    return entries


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Serialise writers of ``path`` (parallel download jobs) with a lock on a hidden sibling."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.flock"), "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


def record_lock(path: str | os.PathLike, url: str, sha256: str, size: int, *, replace: bool = False) -> None:
    """Add ``url`` to the lock file (sorted JSON, written atomically), or check it against its entry
    (``replace``: overwrite the entry instead)."""
    path = Path(path)
    with _exclusive(path):
        entries = read_lock(path)
        known = entries.get(url)
        if known and known.get("sha256") != sha256 and not replace:
            raise DownloadError(
                f"checksum mismatch for {url}: expected sha256 {known.get('sha256')} "
                f"(from the lock file {path}), got {sha256}"
            )
        entries[url] = {"sha256": sha256, "size": size}
        write_json_atomic(path, entries)


# --------------------------------------------------------------------------- download


class _Retryable(Exception):
    """A failed try worth repeating (network error, timeout, 408, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(headers) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After")))
    except (AttributeError, TypeError, ValueError):
        return None


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def _hash_of(path: Path) -> hashlib._Hash:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest


def _transfer(url: str, part: Path, timeout_s: float, open_file: Callable) -> tuple[str, int]:
    """One try: fetch ``url`` into ``part`` (resuming it over http/https); its sha256 and size."""
    resumable = urllib.parse.urlsplit(url).scheme in ("http", "https")
    offset = part.stat().st_size if resumable and part.exists() else 0
    headers = {"User-Agent": f"scaling-laws-pipeline/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:  # the kept part is not a prefix of the file: start over
            part.unlink()
            return _transfer(url, part, timeout_s, open_file)
        message = f"HTTP {e.code} {e.reason} for {url}"
        if e.code in (408, 429) or e.code >= 500:
            raise _Retryable(message, _retry_after(e.headers)) from None
        raise DownloadError(message) from None
    except urllib.error.URLError as e:
        if not resumable:
            raise DownloadError(f"cannot read {url}: {e.reason}") from None
        raise _Retryable(f"cannot reach {url}: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:
        raise _Retryable(f"request for {url} failed: {e!r}") from None

    with response:
        if response.status == 206:
            content_range = response.headers.get("Content-Range")
            if not offset or _content_range_start(content_range) != offset:
                part.unlink(missing_ok=True)
                raise _Retryable(f"{url}: asked for bytes {offset}- and got {content_range!r}: starting over")
            mode, digest = "ab", _hash_of(part)
        else:
            if offset:
                print(
                    f"{url}: the server sent the whole file, not the rest from byte {offset}: starting over",
                    file=sys.stderr,
                )
            offset, mode, digest = 0, "wb", hashlib.sha256()
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        received = 0
        name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
        from tqdm import tqdm  # here, not at the top: the Snakefile imports this module

        try:
            with (
                open_file(part, mode) as f,
                tqdm(
                    total=offset + length if length is not None else None,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=f"download {name}",
                    file=sys.stderr,
                    disable=False,
                    mininterval=0.5 if sys.stderr.isatty() else 30,  # in a job's log: a line every 30 s
                ) as bar,
            ):
                while True:
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except (OSError, http.client.HTTPException) as e:
                        raise _Retryable(f"connection to {url} lost after {offset + received} bytes: {e!r}") from None
                    if not chunk:
                        break
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                written = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"disk full while writing {part}: {written} bytes written of "
                    f"{offset + length if length is not None else 'an unknown number of'} for {url}; "
                    f"free space and rerun: the download resumes from there"
                ) from None
            raise
    if length is not None and received < length:
        raise _Retryable(f"connection to {url} closed after {offset + received} of {offset + length} bytes")
    return digest.hexdigest(), offset + received


def download(
    url: str,
    out: str | Path,
    sha256: str | None = None,
    *,
    lock_file: str | Path | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff_s: float = DEFAULT_BACKOFF_S,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    open_file: Callable = open,
    sleep: Callable[[float], None] = time.sleep,
    repin: bool = False,
) -> Path:
    """Fetch ``url`` to ``out``, verified against ``sha256`` or the lock file's entry for it.

    Without either, the hash seen is recorded in ``lock_file``. ``repin`` records the hash seen in
    place of the lock file's entry (a file changed on purpose). ``out`` appears only complete and
    verified; ``out.part`` holds a transfer in progress.
    """
    out = Path(out)
    part = out.with_name(out.name + ".part")
    out.parent.mkdir(parents=True, exist_ok=True)
    expected, origin = (sha256.lower(), "the config") if sha256 else (None, None)
    if expected is None:
        if lock_file is None:
            raise DownloadError(f"no sha256 for {url}: give one in the config, or a lock file to record it in")
        entry = None if repin else read_lock(lock_file).get(url)
        if entry:
            expected, origin = entry["sha256"], f"the lock file {lock_file}"
    for attempt in range(1, attempts + 1):
        try:
            seen, size = _transfer(url, part, timeout_s, open_file)
            break
        except _Retryable as e:
            kept = part.stat().st_size if part.exists() else 0
            if attempt == attempts:
                resume = f"; the {kept} bytes received are kept in {part}: a rerun resumes from there" if kept else ""
                raise DownloadError(f"download of {url} failed after {attempts} attempts: {e}{resume}") from None
            delay = min(MAX_BACKOFF_S, backoff_s * 2 ** (attempt - 1))
            if e.retry_after is not None:
                delay = max(delay, min(e.retry_after, MAX_BACKOFF_S))
            print(f"{e}; attempt {attempt + 1} of {attempts} in {delay:g} s", file=sys.stderr)
            sleep(delay)
    if expected is not None and seen != expected:
        part.unlink(missing_ok=True)
        if sha256:
            fix = "if the file changed on purpose, give its new sha256 in the config"
        else:
            fix = (
                f"if the file changed on purpose, record its new hash: python -m workflow.download --repin "
                f"--url {shlex.quote(url)} --lock-file {shlex.quote(str(lock_file))} --out {shlex.quote(str(out))}"
            )
        raise DownloadError(
            f"checksum mismatch for {url}: expected sha256 {expected} (from {origin}), got {seen}; "
            f"the download was discarded; {fix}"
        )
    if expected is None:
        try:
            record_lock(lock_file, url, seen, size, replace=repin)
        except DownloadError:
            part.unlink(missing_ok=True)
            raise
        print(f"{url}: recorded sha256 {seen} ({size} bytes) in {lock_file}", file=sys.stderr)
    os.replace(part, out)
    return out


# --------------------------------------------------------------------------- plan


def url_entries(source: dict) -> list[dict]:
    """The files of a url source, in order: [{"url", "sha256" (None: from the lock file)}]."""
    if "url" in source:
        return [{"url": source["url"], "sha256": source.get("sha256")}]
    return [
        {"url": item, "sha256": None} if isinstance(item, str) else {"url": item["url"], "sha256": item.get("sha256")}
        for item in source.get("urls", [])
    ]


def download_name(index: int, url: str) -> str:
    """File name of a download: its position, a hash of the URL (two studies sharing a work directory
    may name different files alike) and the URL's last path segment, made safe."""
    base = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[:100] or "download"
    return f"{index:04d}-{hashlib.sha256(url.encode()).hexdigest()[:8]}-{base}"


def download_plan(sources: list[dict]) -> list[dict]:
    """Every file to download: [{"source", "file" (name under downloads/SOURCE/), "url", "sha256"}]."""
    return [
        {"source": source["name"], "file": download_name(i, entry["url"]), **entry}
        for source in sources
        for i, entry in enumerate(url_entries(source))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.download", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--sha256", help="expected hash; without it the lock file's entry (recorded on first download)")
    parser.add_argument("--lock-file", type=Path, default=Path(DEFAULT_LOCK_FILE))
    parser.add_argument("--attempts", type=int, default=DEFAULT_ATTEMPTS)
    parser.add_argument("--backoff-s", type=float, default=DEFAULT_BACKOFF_S)
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--repin", action="store_true", help="record the hash seen in the lock file, replacing its entry"
    )
    args = parser.parse_args(argv)
    try:
        download(
            args.url,
            args.out,
            args.sha256,
            lock_file=args.lock_file,
            attempts=args.attempts,
            backoff_s=args.backoff_s,
            timeout_s=args.timeout_s,
            repin=args.repin,
        )
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, "download"))
