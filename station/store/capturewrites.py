"""The capture thread's index writes: journaled at once, committed in order on their own thread."""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from station.runtime.backoff import Backoff
from station.store.files import BackgroundSync, fsync_dir

log = logging.getLogger(__name__)

# op -> None: commits one write (a dict as ``submit`` got it) and its number in one transaction
Apply = Callable[[int, dict[str, Any]], None]


def transient(exc: BaseException) -> bool:
    """Is the write to be kept and tried again? Any refusal of the index (a lock held past the
    busy timeout, a full disk, an I/O error, a damaged file someone may repair: a sqlite3
    error, also as the cause of a StationError) or of the disk (OSError). Anything else is a
    write that is wrong in itself (an unknown kind, a missing field) and fails the same way
    every time."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return isinstance(cause, sqlite3.Error | OSError)


def read_journal(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(number, op) of each whole line of the journal, in order; a line cut short (a power cut
    in the middle of an append) or unreadable is left out, with a warning."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for n, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            out.append((int(item["seq"]), dict(item["op"])))
        except (ValueError, KeyError, TypeError):
            log.warning("%s line %d is cut short or unreadable: left out", path.name, n)
    return out


class CaptureWrites:
    """Index writes made for the capture thread (its scans with no clip open, its alarms) with
    no wait in SQLite on that thread: another connection's write transaction (the clip
    finisher's, a retention pass, the web site's legal hold) or a checkpoint's WAL restart
    stalled it for as long as they lasted, and the camera dropped the frames meanwhile
    (docs/performance.md, "Another writer on the index").

    ``submit(op)`` (any thread; the capture thread's call) appends ``op`` (a dict of JSON
    values) as one line with the next number to the journal ``path`` (a plain write, no fsync:
    kill -9 safe once it returns; ``sync`` fsyncs it soon on its own thread) and queues it.
    The thread "index-writer" commits the ops in the order they were submitted, each with
    ``apply(number, op)``: one transaction that also records the number as done (the cursor
    ``done`` started from), so a restart redoes exactly those not committed. A write the index
    refuses for now (``transient``) is retried, in order, with back-off, the later ones waiting
    behind it; one that can never succeed is logged with its content and passed over. The
    journal is emptied once every op in it is committed.

    Made before the capture thread starts: the journal's ops numbered after ``done`` (left by
    a crash) are queued first. ``flush`` waits until what was submitted is committed (or the
    writer fails on it); ``close`` commits what it can and stops the thread: what could not be
    committed stays in the journal for the next start.
    """

    def __init__(self, path: Path, apply: Apply, done: int, sync: BackgroundSync) -> None:
        self.path = path
        self._apply = apply
        self._sync = sync
        self._lock = threading.Lock()  # the journal's end: appends and the emptying
        self._cond = threading.Condition()
        self._queue: queue.Queue[tuple[int, dict[str, Any]] | None] = queue.Queue()
        self._closing = threading.Event()
        left = [(n, op) for n, op in read_journal(path) if n > done]
        self._seq = max([done, *(n for n, _ in left)])  # the last number given
        self._done = done if not left else left[0][0] - 1  # the last number committed
        self._failures = 0
        self._stopped = False  # the thread ended (closed)
        self._waiting = 0
        existed = path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        if not existed:
            fsync_dir(path.parent)
        raw = path.read_bytes()
        # Lines after the last whole one (cut short by a power cut) go, or the next line
        # written would continue them and be unreadable too; all committed: every line goes.
        self._size = raw.rfind(b"\n") + 1 if left else 0
        if self._size < len(raw):
            os.ftruncate(self._fd, self._size)
        if left:
            log.warning("%d index writes of the capture loop were not committed when it "
                        "stopped: committing them now", len(left))  # fmt: skip
        for item in left:
            self._queue.put(item)
        self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
        self._thread.start()

    def submit(self, op: dict[str, Any]) -> None:
        """Journal ``op`` and queue it for the writer. Raises OSError when the journal cannot
        take it (a full disk): then nothing of it is written, nor queued."""
        with self._lock:
            if self._closing.is_set():
                raise RuntimeError("submit() after close()")
            seq = self._seq + 1
            line = json.dumps({"seq": seq, "op": op}, ensure_ascii=False, sort_keys=True)
            data = (line + "\n").encode()
            try:
                written = os.write(self._fd, data)
                if written != len(data):
                    raise OSError(f"{self.path.name}: {written} of {len(data)} bytes written")
            except OSError:
                os.ftruncate(self._fd, self._size)  # no half line for the next to follow
                raise
            self._size += len(data)
            self._seq = seq
            self._queue.put((seq, op))
        self._sync.request(self.path)

    @property
    def pending(self) -> int:
        """Ops submitted and not committed yet."""
        with self._cond:
            return self._seq - self._done

    def flush(self, *, through_failures: bool = False, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed: True. False as soon as the
        writer fails on one of them (it goes on retrying), or, ``through_failures``, once
        ``timeout`` seconds passed without it; either way False once the writer stopped."""
        with self._cond:
            target, failures = self._seq, self._failures
            self._waiting += 1
            try:
                self._cond.wait_for(
                    lambda: (
                        self._done >= target
                        or (not through_failures and self._failures > failures)
                        or self._stopped
                    ),
                    timeout,
                )
            finally:
                self._waiting -= 1
            return self._done >= target

    @property
    def waiting(self) -> int:
        """Threads waiting in ``flush`` now."""
        with self._cond:
            return self._waiting

    def close(self) -> None:
        """Commit what is queued (a write the index refuses is left in the journal, with those
        after it) and stop the thread."""
        with self._lock:
            if self._closing.is_set():
                return
            self._closing.set()
            self._queue.put(None)
        self._thread.join()
        os.close(self._fd)
        with self._cond:
            left = self._seq - self._done
        if left:
            log.error("%d index writes of the capture loop left in %s: committed at the next "
                      "start", left, self.path.name)  # fmt: skip

    # ---- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if not self._commit(*item):  # closing and the index refuses: the rest stay
                    while self._queue.get() is not None:
                        pass
                    return
        finally:
            with self._cond:
                self._stopped = True
                self._cond.notify_all()

    def _commit(self, seq: int, op: dict[str, Any]) -> bool:
        backoff = Backoff(0.1, 10.0)
        while True:
            try:
                self._apply(seq, op)
            except Exception as exc:
                if not transient(exc):
                    log.exception("index write of the capture loop lost (it cannot succeed): %s",
                                  json.dumps(op, ensure_ascii=False))  # fmt: skip
                    break
                with self._cond:
                    self._failures += 1
                    self._cond.notify_all()
                if self._closing.is_set():
                    return False
                delay = backoff.next()
                if backoff.failures == 1:
                    log.error("the index refuses the capture loop's writes (kept in %s, retried):"
                              " %s", self.path.name, exc)  # fmt: skip
                self._closing.wait(delay)
                continue
            if backoff.failures:
                log.warning("the index takes the capture loop's writes again")
            break
        with self._lock, self._cond:
            self._done = seq
            if self._done == self._seq and self._size:
                try:
                    os.ftruncate(self._fd, 0)  # all committed (durably: synchronous=FULL)
                    self._size = 0
                except OSError as exc:
                    log.error("cannot empty %s: %s", self.path.name, exc)
            self._cond.notify_all()
        return True


__all__ = ["CaptureWrites", "read_journal", "transient"]
