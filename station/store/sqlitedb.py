"""SQLite helpers shared by the station index, the proof log and the web database."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)


def open_connection(target: Path | str | sqlite3.Connection) -> sqlite3.Connection:
    """``target`` itself, or a new connection to that file: shared between threads (callers
    hold a lock), in autocommit mode (transactions are explicit, see ``transaction``), with a
    30 s busy timeout. Raises ``sqlite3.Error`` when the file cannot be opened."""
    if isinstance(target, sqlite3.Connection):
        return target
    return sqlite3.connect(str(target), check_same_thread=False, isolation_level=None, timeout=30)


@contextmanager
def closed_on_error(conn: sqlite3.Connection, *, own: bool = True) -> Iterator[sqlite3.Connection]:
    """``conn`` while its opener sets it up; closed if that raises (unless the caller passed
    it in, ``own=False``): a file that is not a database fails at the first statement, and
    its connection must not stay open until the garbage collector finds it."""
    try:
        yield conn
    except BaseException:
        if own:
            conn.close()
        raise


def create_shared(path: Path) -> None:
    """Create ``path`` empty (a valid new database) with mode 0666 less the umask, unless it
    exists. SQLite itself creates files 0644, and its -wal and -shm with the file's mode:
    under the units' UMask=0007 a file the other service must write (a reader writes the
    -shm) would be read-only to the group, and a reader that opened it while its writer was
    down would leave -wal/-shm the writer cannot open: "attempt to write a readonly
    database"."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
    except FileExistsError:
        _open_to_folder_group(path)


def _open_to_folder_group(path: Path) -> None:
    """Make group-writable a file of ours that an older packcam left 0640 in a folder its group
    may write (the units' shared data dir, 2770); elsewhere the mode is the owner's choice."""
    st, folder = path.stat(), path.parent.stat()
    if (
        st.st_uid == os.geteuid()
        and st.st_gid == folder.st_gid
        and folder.st_mode & stat.S_IWGRP
        and not st.st_mode & stat.S_IWGRP
    ):
        path.chmod(stat.S_IMODE(st.st_mode) | stat.S_IRGRP | stat.S_IWGRP)
        log.info("%s: made group-writable, as the web site needs it", path)


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


def use_wal(conn: sqlite3.Connection, attempts: int = 20) -> None:
    """Put the file in WAL mode. Two processes opening a new file at once both switch it, and
    SQLite answers the loser "database is locked" at once instead of waiting (the switch
    upgrades a read lock, where waiting could deadlock): retry, a new attempt finds WAL set."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or attempt == attempts - 1:
                raise
            time.sleep(0.05)


def _statements(script: str) -> Iterator[str]:
    """A script's statements one by one (a trigger's body is one with it). executescript
    would do, but it first commits the transaction it is called in (Python 3.11)."""
    stmt = ""
    for piece in script.split(";"):
        stmt += piece + ";"
        if sqlite3.complete_statement(stmt):  # not a ; inside a string, comment or trigger
            yield stmt
            stmt = ""


def migrate(
    conn: sqlite3.Connection,
    lock: threading.RLock,
    migrations: Sequence[str],
    error: type[Exception],
    name: str,
) -> None:
    """Bring the schema to ``len(migrations)`` (PRAGMA user_version), one script per version.

    Shipped scripts are never edited, only appended to, so every copy in the field migrates the
    same way; a database newer than this code is refused rather than guessed at. Each version
    runs in one transaction that holds the write lock from its start and reads the version
    again under it: a second process migrating the same file (the station service and the
    web site started together) waits, then finds that version done.
    """
    with lock:
        while (current := schema_version(conn)) != len(migrations):
            if current > len(migrations):
                raise error(
                    f"{name} schema version {current} is newer than this packcam "
                    f"({len(migrations)}); upgrade packcam"
                )
            conn.execute("BEGIN IMMEDIATE")
            try:
                if schema_version(conn) == current:  # else another process just ran it
                    log.info("migrating %s to schema version %d", name, current + 1)
                    for stmt in _statements(migrations[current]):
                        conn.execute(stmt)
                    conn.execute(f"PRAGMA user_version={current + 1}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


class Database:
    """One connection to a SQLite file and the lock its users share (sqlite-utils' model:
    the table classes get one of these passed in and hold no connection of their own).

    ``tx`` is one write transaction, ``rows`` one read under the lock; a sqlite3 error becomes
    ``error`` (each owner passes its own, e.g. LedgerError or ProofError).
    """

    def __init__(self, conn: sqlite3.Connection, *, own: bool = True) -> None:
        self.conn = conn
        self.lock = threading.RLock()
        self._own = own  # False: the caller passed the connection in and closes it

    def close(self) -> None:
        if self._own:
            self.conn.close()

    def tx(
        self, error: type[Exception], what: str
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return transaction(self.conn, self.lock, error, what)

    def rows(
        self, sql: str, args: Sequence[object] = (), *, error: type[Exception], what: str
    ) -> list[sqlite3.Row]:
        with self.lock:
            try:
                return self.conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise error(f"{what} failed: {exc}") from exc

    def row(
        self, sql: str, args: Sequence[object] = (), *, error: type[Exception], what: str
    ) -> sqlite3.Row | None:
        rows = self.rows(sql, args, error=error, what=what)
        return rows[0] if rows else None


class Table:
    """Base of the classes that own a set of tables (their schema steps and all their SQL):
    they get a ``Database`` passed in; writes go through ``_tx``, one transaction under the
    shared lock, and a sqlite3 error becomes ``error``. ``capture_db`` is the connection the
    capture thread reads on (the duplicate check), which no other thread's statement holds:
    the same one unless the opener gives another (``Ledger``). The capture thread writes
    nothing here: ``Ledger``'s "index-writer" does, for it."""

    error: type[Exception] = RuntimeError
    TABLES: ClassVar[tuple[str, ...]] = ()
    # index schema version -> the script this owner adds at that version (append only)
    MIGRATIONS: ClassVar[dict[int, str]] = {}

    def __init__(self, db: Database) -> None:
        self.db = db
        self.capture_db = db

    @property
    def conn(self) -> sqlite3.Connection:
        return self.db.conn

    @property
    def _lock(self) -> threading.RLock:
        return self.db.lock

    def _tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self.db.tx(self.error, f"{type(self).__name__} write")

    def _all(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        """The rows of one read under the lock (sqlite3 errors pass: a search's interrupt)."""
        with self.db.lock:
            return self.db.conn.execute(sql, args).fetchall()

    def _one(self, sql: str, args: Sequence[object] = ()) -> sqlite3.Row | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None


def utc_text(dt: datetime) -> str:
    """A time as the index stores it: UTC, microseconds, ``Z``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


R = TypeVar("R", bound="DataclassInstance")


def from_row(cls: type[R], row: sqlite3.Row, **extra: Any) -> R:
    """A dataclass from the row's columns of the same names as its fields (``extra``: fields
    the row has not, or values that replace a column's)."""
    # positional, in field order: about half the overhead of building a keyword dict per row
    return cls(*[extra[n] if n in extra else row[n] for n in _field_names(cls)])


@functools.cache
def _field_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))
