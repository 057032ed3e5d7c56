"""Which connection and thread ran each index statement or fsync, and a child killed by -9."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from station.store.ledger import Ledger

TESTS = Path(__file__).resolve().parent


@contextlib.contextmanager
def statements(ledger: Ledger) -> Iterator[list[tuple[str, str, str]]]:
    """(thread name, "capture", "main" or "writer", SQL) of each statement run on the ledger's
    connections meanwhile: "main" is the synchronous=FULL one, whose commits fsync; "capture"
    the capture thread's (read only); "writer" the one "index-writer" commits the capture
    loop's writes on (synchronous=FULL; with ``capture_writes``)."""
    ran: list[tuple[str, str, str]] = []
    conns = {"main": ledger.db.conn, "capture": ledger.capture_db.conn}
    if ledger.writer_db is not None:
        conns["writer"] = ledger.writer_db.conn
    for label, conn in conns.items():

        def note(sql: str, label: str = label) -> None:
            ran.append((threading.current_thread().name, label, sql))

        conn.set_trace_callback(note)
    try:
        yield ran
    finally:
        for conn in conns.values():
            conn.set_trace_callback(None)


def fsyncs(monkeypatch: Any) -> list[tuple[str, str]]:
    """(thread name, path of what it syncs) of each ``os.fsync`` from now on (``monkeypatch``:
    pytest's, which puts os.fsync back)."""
    synced: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def run_killed(child: str, *args: str) -> None:
    """Run ``child`` (Python source; sys.argv[1:] = ``args``, this folder importable) in a
    fresh interpreter that must end by kill -9; its stderr in the failure otherwise."""
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n{child}",
         *args],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        timeout=120,
    )  # fmt: skip
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
