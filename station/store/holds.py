"""Legal holds and retention deletions (tables legal_holds, legal_hold_log, retention_deletions)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from station.errors import LedgerError
from station.store.sqlitedb import Table, utc_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LegalHold:
    """An order on legal hold now (a ``legal_holds`` row): retention deletes none of its clips."""

    order_id: str
    held_by: str
    held_utc: str
    note: str = ""


def was_held_at(history: Sequence[Mapping[str, Any]], at_utc: str) -> bool:
    """Pure: on hold at ``at_utc`` by a hold history (``legal_hold_history``, in log order):
    the last change at or before that moment decides; none: not held. Compared as instants,
    not as text: a signed deletion record may state its time with another offset
    (``10:00-10:00`` is after ``15:00Z``) or without microseconds. ValueError for a time
    without a UTC offset (no instant)."""
    at = _instant(at_utc)
    held = False
    for change in history:
        if _instant(change["at_utc"]) <= at:
            held = change["action"] == "hold"
    return held


def _instant(text: str) -> datetime:
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return when


class HoldTable(Table):
    """Owner of ``legal_holds`` (the orders held now), ``legal_hold_log`` (every hold and
    release, kept) and ``retention_deletions`` (the signed record of each file retention
    deleted). A clip's own deletion mark is a column of ``clips`` (ClipTable)."""

    error = LedgerError
    TABLES: ClassVar[tuple[str, ...]] = ("legal_holds", "legal_hold_log", "retention_deletions")
    MIGRATIONS: ClassVar[dict[int, str]] = {
        # legal holds per order with their history, and retention deletions (a signed
        # deletion record, so an audit tells retention from tampering).
        4: """
    CREATE TABLE legal_holds (
        order_id        TEXT PRIMARY KEY,
        held_by         TEXT NOT NULL,
        held_utc        TEXT NOT NULL,
        note            TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE legal_hold_log (
        id              INTEGER PRIMARY KEY,
        order_id        TEXT NOT NULL,
        action          TEXT NOT NULL,  -- hold | release
        by_whom         TEXT NOT NULL,
        at_utc          TEXT NOT NULL,
        note            TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX legal_hold_log_order ON legal_hold_log(order_id, id);
    CREATE TABLE retention_deletions (
        id              INTEGER PRIMARY KEY,
        clip_id         INTEGER NOT NULL UNIQUE REFERENCES clips(id),
        path            TEXT NOT NULL,
        sha256          TEXT NOT NULL,
        record          BLOB NOT NULL,  -- canonical JSON of the deletion, exactly as signed
        signature       BLOB,  -- Ed25519 by the station key; NULL when proofs are off
        key_fingerprint TEXT NOT NULL DEFAULT '',
        deleted_utc     TEXT NOT NULL
    );
    CREATE INDEX retention_deletions_path ON retention_deletions(path);
    """,
    }

    def set_legal_hold(self, order_id: str, on: bool, by: str, note: str = "") -> bool:
        """Hold (``on``) or release every clip of ``order_id``, present and future.

        A held clip is never deleted by retention. Every change is kept in ``legal_hold_log``.
        Returns False when nothing changed (already held / not held).
        """
        if not order_id or not by:
            raise ValueError("order_id and by are required")
        now = utc_text(datetime.now(UTC))
        with self._tx() as db:
            held = db.execute(
                "SELECT 1 FROM legal_holds WHERE order_id = ?", (order_id,)
            ).fetchone()
            if on == (held is not None):
                return False
            if on:
                db.execute(
                    "INSERT INTO legal_holds(order_id, held_by, held_utc, note)"
                    " VALUES (?, ?, ?, ?)",
                    (order_id, by, now, note),
                )
            else:
                db.execute("DELETE FROM legal_holds WHERE order_id = ?", (order_id,))
            db.execute(
                "INSERT INTO legal_hold_log(order_id, action, by_whom, at_utc, note)"
                " VALUES (?, ?, ?, ?, ?)",
                (order_id, "hold" if on else "release", by, now, note),
            )
        log.info("legal hold %s for order %r by %s", "set" if on else "released", order_id, by)
        return True

    def legal_hold(self, order_id: str) -> LegalHold | None:
        r = self._one("SELECT * FROM legal_holds WHERE order_id = ?", (order_id,))
        return LegalHold(r["order_id"], r["held_by"], r["held_utc"], r["note"]) if r else None

    def legal_holds(self) -> list[LegalHold]:
        rows = self._all("SELECT * FROM legal_holds ORDER BY order_id")
        return [LegalHold(r["order_id"], r["held_by"], r["held_utc"], r["note"]) for r in rows]

    def legal_hold_history(self, order_id: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT action, by_whom, at_utc, note FROM legal_hold_log WHERE order_id = ?"
            " ORDER BY id",
            (order_id,),
        )
        return [dict(r) for r in rows]

    def held_orders(self, db: sqlite3.Connection | None = None) -> frozenset[str]:
        """The orders on hold now (read inside the caller's transaction ``db`` when given)."""
        with self._lock:
            rows = (db or self.conn).execute("SELECT order_id FROM legal_holds").fetchall()
        return frozenset(str(r[0]) for r in rows)

    def held_at(self, order_id: str, at_utc: str) -> bool:
        """Was ``order_id`` on hold at ``at_utc`` (UTC text as stored)? From its hold history."""
        return was_held_at(self.legal_hold_history(order_id), at_utc)

    @staticmethod
    def record_deletion_in(
        db: sqlite3.Connection,
        clip_id: int,
        path: str,
        sha256: str,
        record: bytes,
        signature: bytes | None,
        key_fingerprint: str,
        when_utc: str,
    ) -> None:
        """Store a retention deletion record, inside the caller's transaction ``db``."""
        db.execute(
            "INSERT INTO retention_deletions(clip_id, path, sha256, record, signature,"
            " key_fingerprint, deleted_utc) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (clip_id, path, sha256, record, signature, key_fingerprint, when_utc),
        )

    def deletion_record(self, path: str) -> dict[str, Any] | None:
        """The stored retention deletion of the clip at ``path``, if any."""
        r = self._one(
            "SELECT * FROM retention_deletions WHERE path = ? ORDER BY id DESC LIMIT 1",
            (path,),
        )
        return dict(r) if r else None

    def deletions_after(self, deletion_id: int) -> list[tuple[int, int]]:
        """(deletion id, clip id) of the retention deletions after ``deletion_id``, in the
        order they happened."""
        rows = self._all(
            "SELECT id, clip_id FROM retention_deletions WHERE id > ? ORDER BY id",
            (deletion_id,),
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    def deletion_of_clip(self, clip_id: int) -> sqlite3.Row | None:
        """The retention deletion record of clip ``clip_id`` (record, signature), if any."""
        row = self._one(
            "SELECT record, signature FROM retention_deletions WHERE clip_id = ?", (clip_id,)
        )
        return row
