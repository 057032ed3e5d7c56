"""How far each follower of the index has got (table sync_cursors): central sync, archiver."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import ClassVar

from station.errors import StationError
from station.store.sqlitedb import Table, utc_text

# The last checkpoint id of the live log the central site's witness accepted: the sync moves it
# only when /checkpoints answers that the witness cosigned every checkpoint of the batch (a
# refused one, a forked log, stops it there). The export proves clips with one of those.
WITNESSED_CURSOR = "central:checkpoints"


class SyncCursors(Table):
    """Owner of ``sync_cursors``: one integer per follower stream (e.g. ``central:clips``, the
    last clip id the central index has), kept across restarts."""

    error = StationError
    TABLES: ClassVar[tuple[str, ...]] = ("sync_cursors",)
    MIGRATIONS: ClassVar[dict[int, str]] = {
        # how far each follower of the index has got (central sync, archiver).
        3: """
    CREATE TABLE sync_cursors (
        name            TEXT PRIMARY KEY,  -- e.g. central:clips, central:archived
        value           INTEGER NOT NULL,
        updated_utc     TEXT NOT NULL
    );
    """,
    }

    def cursor(self, name: str) -> int:
        with self._lock:
            return self.cursor_in(self.conn, name)

    def set_cursor(self, name: str, value: int) -> None:
        with self._tx() as db:
            self.set_cursor_in(db, name, value)

    @staticmethod
    def cursor_in(db: sqlite3.Connection, name: str) -> int:
        """``cursor`` on ``db`` (the caller holds its lock)."""
        row = db.execute("SELECT value FROM sync_cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def set_cursor_in(db: sqlite3.Connection, name: str, value: int) -> None:
        """``set_cursor`` in the caller's transaction."""
        db.execute(
            "INSERT INTO sync_cursors(name, value, updated_utc) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET value = excluded.value,"
            " updated_utc = excluded.updated_utc",
            (name, value, utc_text(datetime.now(UTC))),
        )
