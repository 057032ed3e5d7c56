"""SQLite helpers shared by the station index, the proof log and the web database."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def open_connection(target: Path | str | sqlite3.Connection) -> sqlite3.Connection:
    """``target`` itself, or a new connection to that file: shared between threads (callers
    hold a lock), in autocommit mode (transactions are explicit, see ``transaction``), with a
    30 s busy timeout. Raises ``sqlite3.Error`` when the file cannot be opened."""
    if isinstance(target, sqlite3.Connection):
        return target
    return sqlite3.connect(str(target), check_same_thread=False, isolation_level=None, timeout=30)


@contextmanager
def transaction(
    conn: sqlite3.Connection, lock: threading.RLock, error: type[Exception], what: str
) -> Iterator[sqlite3.Connection]:
    """One write transaction under ``lock``; any sqlite3 error becomes ``error(what ...)``.

    BEGIN IMMEDIATE takes the write lock at once, so two writers (the capture thread, the clip
    finisher, another process) queue on SQLite's busy timeout instead of failing half-way.
    """
    with lock:
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise error(f"{what} failed: {exc}") from exc


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection,
    lock: threading.RLock,
    migrations: Sequence[str],
    error: type[Exception],
    name: str,
) -> None:
    """Bring the schema to ``len(migrations)`` (PRAGMA user_version), one script per version.

    Shipped scripts are never edited, only appended to, so every copy in the field migrates the
    same way; a database newer than this code is refused rather than guessed at.
    """
    current = schema_version(conn)
    if current > len(migrations):
        raise error(
            f"{name} schema version {current} is newer than this packcam "
            f"({len(migrations)}); upgrade packcam"
        )
    for version, script in enumerate(migrations[current:], start=current + 1):
        with lock:
            log.info("migrating %s to schema version %d", name, version)
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={version};\nCOMMIT;"
            )
