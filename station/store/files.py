"""Durable-file helpers shared by the writer, recorder, recovery and proof code."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import queue
import shutil
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def sha256_and_size(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and byte count of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with Path(path).open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def sha256_file(path: Path) -> str:
    """SHA-256 (hex) of a file."""
    return sha256_and_size(path)[0]


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX needs the directory itself fsynced)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another user's process: alive
    return False


def remove_stale_temps(path: Path, suffix: str) -> list[Path]:
    """Remove the ``.<name>.<pid>.<suffix>`` files beside ``path`` whose process is gone.

    A writer that names its temp file after its pid (so two processes never share one) and is
    killed between writing and renaming leaves it behind, and the next run, another pid,
    never writes over it. A live process's temp file is left alone. Returns what was removed.
    """
    removed = []
    head, tail = f".{path.name}.", f".{suffix}"
    for p in path.parent.glob(f".*{tail}"):
        pid = p.name[len(head) : -len(tail)] if p.name.startswith(head) else ""
        if pid.isdigit() and _gone(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextmanager
def atomic_file(
    path: Path, mode: str = "wb", *, suffix: str = ".tmp", perm: int | None = None, **kw: Any
) -> Iterator[IO[Any]]:
    """A file to write ``path`` through: opened beside it (``<name><suffix>``), and on a clean
    exit fsynced, renamed over ``path`` and the folder fsynced; on any error removed. After a
    crash or a power cut ``path`` is whole or as it was; a failed write (a full disk) leaves no
    temp file behind. ``perm``: the file's mode bits, whatever the umask, set before it has
    its name (a reader never sees it under ``path`` with another mode)."""
    tmp = path.with_name(path.name + suffix)
    try:
        with tmp.open(mode, **kw) as f:
            if perm is not None:
                os.fchmod(f.fileno(), perm)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON over ``path`` through ``atomic_file``."""
    with atomic_file(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2, sort_keys=True)
        f.write("\n")


class BackgroundSync:
    """Makes files durable on a thread of its own, for a caller that must not wait for the
    disk (the capture thread: one fsync on a Pi's SD card busy with video can take hundreds of
    ms, and frames pushed meanwhile are dropped).

    The caller writes the file and renames it into place itself (kill -9 safe the moment
    that returns: it is in the page cache), or commits to it (an SQLite WAL), then passes it
    to ``request``: the daemon thread ``name``, started at the first request, fsyncs the file
    (and its folder, unless ``folder`` is False: a file never renamed needs no folder sync).
    A file rewritten before its turn is synced once, as it is then (the newest); one gone by
    then (done with and removed) is skipped. Until its turn a power cut may lose the file or
    its last rewrite. A failed sync is logged; the thread goes on. ``close`` syncs what was
    requested and stops the thread.
    """

    def __init__(self, name: str, *, folder: bool = True) -> None:
        self.name = name
        self.folder = folder
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self, path: Path) -> None:
        """Have ``path`` (already written and in place) fsynced soon."""
        with self._lock:
            if self._closed:
                raise RuntimeError("request() after close()")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._queue.put(path)

    def flush(self) -> None:
        """Block until every file requested so far is synced (or was found gone)."""
        self._queue.join()

    def close(self) -> None:
        """Sync what was requested, then stop the thread."""
        with self._lock:
            thread = self._thread
            if not self._closed and thread is not None:
                self._queue.put(None)
            self._closed = True
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                for path in dict.fromkeys(p for p in batch if p is not None):
                    self._sync(path)
            finally:
                for _ in batch:
                    self._queue.task_done()
            if None in batch:
                return

    def _sync(self, path: Path) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # done with and removed before its turn: nothing left to keep
        except OSError as exc:
            log.error("cannot sync %s (a power cut may lose it): %s", path, exc)
            return
        try:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if self.folder:
                fsync_dir(path.parent)
        except OSError as exc:
            log.error("cannot sync %s (a power cut may lose it): %s", path, exc)


__all__ = [
    "BackgroundSync",
    "atomic_file",
    "fsync_dir",
    "remove_stale_temps",
    "sha256_and_size",
    "sha256_file",
    "write_json_atomic",
]


class SpoolFileError(ValueError):
    """A request file in a spool folder that another user writes to could not be taken."""


def take_spool_file(path: Path, max_bytes: int) -> bytes:
    """Read and remove one request file of at most ``max_bytes`` from a folder another user
    (the web site) writes to: never following a link or blocking on a FIFO; whatever it was,
    it is gone afterwards. SpoolFileError says why a file was refused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        remove_path(path)
        if exc.errno == errno.ELOOP:
            raise SpoolFileError("request is a symbolic link") from exc
        raise SpoolFileError(f"request unreadable: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SpoolFileError("request is not a regular file")
        if st.st_size > max_bytes:
            raise SpoolFileError(f"request of {st.st_size} bytes (max {max_bytes})")
        return os.read(fd, max_bytes + 1)
    finally:
        os.close(fd)
        remove_path(path)


def spool_json(
    raw: bytes, max_bytes: int, keys: tuple[str, ...], error: type[Exception]
) -> dict[str, Any]:
    """A request file's JSON object with exactly ``keys``, or ``error`` saying why not (pure):
    the part every spool reader (export requests, screen sign-ins) checks the same way."""
    if len(raw) > max_bytes:
        raise error(f"request larger than {max_bytes} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(f"not JSON: {type(exc).__name__}") from exc
    if not isinstance(doc, dict) or set(doc) != set(keys):
        raise error(f"not {{{', '.join(json.dumps(k) for k in keys)}}}")
    return doc


def remove_path(path: Path) -> None:
    """Remove a file, or a directory someone put in its place; already gone is fine."""
    try:
        path.unlink()
    except IsADirectoryError:
        shutil.rmtree(path, ignore_errors=True)
    except FileNotFoundError:
        pass
