"""Atomic, permission-keeping file writes, and a lock between processes, for the lockfile and the cassettes."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no lock between processes (two runs at once may lose one's recordings there)
    fcntl = None  # type: ignore[assignment]

__all__ = ["append_durably", "locked_directory", "read_json", "set_aside", "write_atomically"]


def write_atomically(path: Path, text: str) -> None:
    """Write a temp file beside `path` and rename it over: a reader never sees half a file.

    The file keeps its mode, or gets the umask's default when new (mkstemp alone would make it 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def append_durably(path: Path, line: str) -> None:
    """Append one line and fsync it: on disk before the caller goes on, so a `kill -9` right after loses nothing
    (a torn last line, from a kill during the write, is skipped by its reader)."""
    new = not path.exists()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    if new:  # the new file's name must survive a crash too
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def locked_directory(directory: Path, *, create: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (flock) while reading and writing the files in it, so that two
    pytest processes recording into the same project (two tunes, a tune and `--llm-record`) merge, never
    overwrite each other. A lock on the directory itself leaves no lock file behind. `create=False`: a reader;
    a directory that does not exist holds nothing to read, and is not made."""
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None or not directory.is_dir():
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def set_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.corrupt-<time>` beside it, so that what the user asked to write (a tune,
    a recording) replaces nothing: the damaged file stays for them to inspect or restore."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    return aside


def read_json(path: Path) -> Any:
    """A JSON file's data; FileNotFoundError, or ValueError in words: not UTF-8, empty, not JSON."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    if not text.strip():
        raise ValueError("empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
