"""Atomic file output, hashing and small JSON helpers shared by every stage.

Every output is written under a temporary name in its final directory and
renamed into place, so a job killed half-way never leaves a file that looks
complete (rename is atomic within a file system).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

CHUNK_BYTES = 1 << 20
NEARLY_FULL_BYTES = 1 << 20  # less free space than this after a failed write: the disk was full


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it to ``path`` on success.

    Works for files and directories. On any error (or KeyboardInterrupt) the
    temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as error:
        _remove(tmp)
        # Some writers hide a full disk in their own words (polars: "Invalid thrift: transport error",
        # torch: "unexpected pos"): a failed write on a file system with no room left is named as such.
        if isinstance(error, Exception) and not disk_full(error) and _nearly_full(path.parent):
            detail = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            raise OSError(errno.ENOSPC, f"No space left on device ({detail})", str(path)) from error
        raise


def _nearly_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


class DamagedOutput(ValueError):
    """An earlier job's output that cannot be read; it was moved aside so that a rerun remakes it."""


def read_output_json(path: str | os.PathLike, keys: tuple[str, ...] = ()) -> dict:
    """An earlier job's JSON output (an object with ``keys``). A damaged one (truncated, not JSON, or
    without those keys: another version of the pipeline wrote it) is moved to ``PATH.damaged``, so that
    the next ``snakemake`` reruns the job that makes it, and DamagedOutput says so in one sentence."""
    path = Path(path)
    try:
        value = read_json(path)
        why = None if isinstance(value, dict) else f"a JSON {type(value).__name__}, not an object"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        why = f"not valid JSON: {str(e).splitlines()[0]}"
    if why is None and (missing := [key for key in keys if key not in value]):
        why = f"no {', '.join(map(repr, missing))} in it: written by another version of the pipeline?"
    if why is None:
        return value
    raise damaged(path, why)


def damaged(path: Path, why: str) -> DamagedOutput:
    """Move a run's damaged output to PATH.damaged (so that the next snakemake remakes it) and the
    one-sentence error that says so."""
    aside = move_aside(path, "damaged")
    return DamagedOutput(
        f"run {path.parent.name}: its {path.name} is damaged ({why}); moved aside to {aside}: run snakemake "
        f"again to remake it (the job that wrote it reruns)"
    )


def move_aside(path: str | os.PathLike, suffix: str) -> Path:
    """Rename a file or directory to PATH.SUFFIX, replacing an older one of that name; the new path.
    Nothing happens when PATH does not exist."""
    path = Path(path)
    aside = path.with_name(f"{path.name}.{suffix}")
    if path.exists():
        _remove(aside)
        os.replace(path, aside)
    return aside


def read_json(path: str | os.PathLike):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# How "no space left on device" reaches Python: OSError from the standard library and numpy, and
# the OS message inside the errors of libraries that wrap it (polars: "os error 28").
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_TEXTS = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


def disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return any(text in str(error) for text in DISK_FULL_TEXTS)


def run_stage(main: Callable[[], int], stage: str) -> int:
    """A stage's CLI: ``main()``, with a full disk answered in one line instead of a traceback.

    Every output is written under a temporary name that the failure removed, so nothing that looks
    complete is left, and a rerun after freeing space starts the stage again."""
    try:
        return main()
    except Exception as e:
        if not disk_full(e):
            raise
        where = f" writing {e.filename}" if isinstance(e, OSError) and e.filename else ""
        print(
            f"error: {stage}: no space left on device{where}; no partial output was kept. Free space "
            f"(or point work_dir at a larger file system) and rerun",
            file=sys.stderr,
        )
        return 1
