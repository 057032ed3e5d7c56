"""The persistent record of station alarms (table alarms); the live board is
station/floor/alarms.py."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from station.errors import LedgerError
from station.store.sqlitedb import Table, utc_text


@dataclass(frozen=True)
class Alarm:
    """A persistent alarm: raised again and again it stays one row with a count."""

    kind: str
    subject: str
    message: str
    first_utc: str
    last_utc: str
    count: int
    cleared_utc: str | None = None


class AlarmTable(Table):
    """Owner of ``alarms``: raised again and again an alarm stays one row with a count."""

    error = LedgerError
    TABLES: ClassVar[tuple[str, ...]] = ("alarms",)
    MIGRATIONS: ClassVar[dict[int, str]] = {
        # persistent alarms (station/floor/alarms.py).
        4: """
    CREATE TABLE alarms (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL,  -- clip-missing | disk-full | recording-failed | ...
        subject         TEXT NOT NULL,  -- what it is about: a clip path, the data dir, ...
        message         TEXT NOT NULL,
        first_utc       TEXT NOT NULL,
        last_utc        TEXT NOT NULL,
        count           INTEGER NOT NULL DEFAULT 1,
        cleared_utc     TEXT,  -- NULL while active
        UNIQUE (kind, subject)
    );
    """,
    }

    def raise_alarm(self, kind: str, subject: str, message: str) -> bool:
        """Record an alarm (or bump its count); True when it is new or was cleared before.
        Returns once synced (the capture loop's alarms go through ``Ledger``'s writer)."""
        with self._tx() as db:
            return self.raise_alarm_in(db, kind, subject, message, utc_text(datetime.now(UTC)))

    @staticmethod
    def raise_alarm_in(
        db: sqlite3.Connection, kind: str, subject: str, message: str, now: str
    ) -> bool:
        """``raise_alarm`` in the caller's transaction, at ``now`` (``utc_text``)."""
        r = db.execute(
            "SELECT cleared_utc FROM alarms WHERE kind = ? AND subject = ?", (kind, subject)
        ).fetchone()
        if r is None:
            db.execute(
                "INSERT INTO alarms(kind, subject, message, first_utc, last_utc)"
                " VALUES (?, ?, ?, ?, ?)",
                (kind, subject, message, now, now),
            )
            return True
        db.execute(
            "UPDATE alarms SET message = ?, last_utc = ?, count = count + 1,"
            " first_utc = CASE WHEN cleared_utc IS NULL THEN first_utc ELSE ? END,"
            " cleared_utc = NULL WHERE kind = ? AND subject = ?",
            (message, now, now, kind, subject),
        )
        return r["cleared_utc"] is not None

    def clear_alarm(self, kind: str, subject: str) -> bool:
        """Mark an active alarm cleared (the row stays); True when one was active."""
        with self._tx() as db:
            return self.clear_alarm_in(db, kind, subject, utc_text(datetime.now(UTC)))

    @staticmethod
    def clear_alarm_in(db: sqlite3.Connection, kind: str, subject: str, now: str) -> bool:
        """``clear_alarm`` in the caller's transaction, at ``now`` (``utc_text``)."""
        cur = db.execute(
            "UPDATE alarms SET cleared_utc = ? WHERE kind = ? AND subject = ?"
            " AND cleared_utc IS NULL",
            (now, kind, subject),
        )
        return cur.rowcount > 0

    def alarms(self, *, active_only: bool = True) -> list[Alarm]:
        sql = "SELECT * FROM alarms"
        if active_only:
            sql += " WHERE cleared_utc IS NULL"
        rows = self._all(sql + " ORDER BY last_utc DESC, id")
        return [
            Alarm(
                r["kind"],
                r["subject"],
                r["message"],
                r["first_utc"],
                r["last_utc"],
                r["count"],
                r["cleared_utc"],
            )
            for r in rows
        ]
