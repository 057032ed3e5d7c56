"""The station index as the recorder, retention and the CLI use it: clips, holds and alarms."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from station.errors import LedgerError
from station.store import sqlitedb
from station.store.alarms import Alarm, AlarmTable
from station.store.capturewrites import CaptureWrites
from station.store.clips import (
    ClipRecord,
    ClipTable,
    ScanEventRecord,
    StoredClip,
    WaybillLink,
    clip_from_rows,
    event_from_row,
)
from station.store.cursors import SyncCursors
from station.store.files import BackgroundSync
from station.store.holds import HoldTable, LegalHold
from station.store.index import INDEX_NAME, MIGRATIONS, open_index
from station.store.sqlitedb import utc_text

log = logging.getLogger(__name__)

__all__ = [
    "INDEX_NAME",
    "MIGRATIONS",
    "Alarm",
    "ClipRecord",
    "Ledger",
    "LegalHold",
    "ScanEventRecord",
    "StoredClip",
    "WaybillLink",
    "clip_from_rows",
    "event_from_row",
]


# The capture loop's index writes, journaled beside the index (``CaptureWrites``), and the
# cursor (table sync_cursors) of the last one committed.
CAPTURE_JOURNAL_SUFFIX = "-capture.jsonl"
CAPTURE_CURSOR = "capture:journal"
# how long another thread's write waits for them (SQLite's busy timeout: sqlitedb.open_connection)
CAPTURE_WRITES_WAIT_S = 30.0


def event_to_journal(e: ScanEventRecord) -> dict[str, Any]:
    """A scan event as the capture journal keeps it: every field, the wall time in full."""
    return {**dataclasses.asdict(e), "wall": e.wall.isoformat()}


def event_from_journal(d: dict[str, Any]) -> ScanEventRecord:
    return ScanEventRecord(**{**d, "wall": datetime.fromisoformat(d["wall"])})


class Ledger(ClipTable, HoldTable, AlarmTable):
    """The station's SQLite index: the clips, legal holds and alarms tables on one connection.

    Open it with a path (a file in the data dir) or pass an existing connection, as sqlite-utils
    does, so every layer can be tested on a real database. Each table's SQL lives with its owner
    (station/store/); this class only joins what spans two owners in one transaction. Its
    writes go through one lock, so the capture thread and the clip finisher thread may share
    an instance; its commits return once synced (synchronous=FULL).

    The capture thread must never wait in SQLite: behind another connection's write
    transaction (the finisher's commit and its fsync, a retention pass, the web site's legal
    hold, another process's checkpoint) or for the WAL's restart after a checkpoint, frames
    are dropped (docs/performance.md). Opened with ``capture_writes`` (the station service:
    ``service.assemble``) on a file, its writes (``log_events``, and ``raise_alarm`` /
    ``clear_alarm`` with ``capture=True``) are journaled beside the index
    (``index.sqlite3-capture.jsonl``: one line, no fsync, kill -9 safe once the call returned;
    fsynced at once on the thread "index-sync") and committed in order by the thread
    "index-writer" (``store.capturewrites.CaptureWrites``) on a connection of its own
    (``writer_db``, synchronous=FULL), which retries what the index refuses; those a crash
    left uncommitted are committed when it is opened so again (the station's start). Without
    it (the CLI, the web site, tests on a connection) they commit on the calling thread. The
    duplicate check at an order scan reads on a connection of its own (``capture_db``, read
    only), which no other thread's statement holds.
    """

    def __init__(
        self, target: Path | str | sqlite3.Connection, *, capture_writes: bool = False
    ) -> None:
        super().__init__(open_index(target))
        self._sync: BackgroundSync | None = None
        self._writes: CaptureWrites | None = None
        self.writer_db: sqlitedb.Database | None = None  # "index-writer"'s, with capture_writes
        if isinstance(target, sqlite3.Connection) or str(target) in {"", ":memory:"}:
            return  # no file to open another connection to: the one above serves all
        try:
            self.capture_db = open_index(target, capture=True)
            # the capture journal is never renamed: no folder sync (its creation syncs it)
            self._sync = BackgroundSync("index-sync", folder=False)
            if capture_writes:
                # its own connection and lock: while it waits for another writer, the other
                # threads' reads on ``db`` (the finisher's, retention's) do not wait with it
                self.writer_db = open_index(target)
                with self.writer_db.lock:
                    done = SyncCursors.cursor_in(self.writer_db.conn, CAPTURE_CURSOR)
                journal = Path(f"{target}{CAPTURE_JOURNAL_SUFFIX}")
                self._writes = CaptureWrites(journal, self._commit_capture_write, done, self._sync)
        except BaseException:
            for db in {id(d): d for d in (self.writer_db, self.capture_db)}.values():
                if db is not None and db is not self.db:
                    db.close()
            self.db.close()
            raise

    @classmethod
    def in_data_dir(cls, data_dir: Path, *, capture_writes: bool = False) -> Ledger:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / INDEX_NAME, capture_writes=capture_writes)

    def log_events(self, station: str, events: Sequence[ScanEventRecord]) -> None:
        """Record scans that belong to no clip, in order: with ``capture_writes`` journaled
        (kill -9 safe) and committed on "index-writer", else committed here. Raises
        LedgerError when neither could take them (a full disk)."""
        if self._writes is None:
            super().log_events(station, events)
            return
        self._submit({"write": "events", "station": station,
                      "events": [event_to_journal(e) for e in events]})  # fmt: skip

    def raise_alarm(self, kind: str, subject: str, message: str, *, capture: bool = False) -> bool:
        """Record an alarm; True when it is new or was cleared before. ``capture``: the capture
        loop's, journaled and committed on "index-writer" (True: not known yet); else
        committed here, after the capture loop's writes made before it."""
        if capture and self._writes is not None:
            now = utc_text(datetime.now(UTC))
            self._submit({"write": "raise", "kind": kind, "subject": subject,
                          "message": message, "at": now})  # fmt: skip
            return True
        self._after_capture_writes()
        return super().raise_alarm(kind, subject, message)

    def clear_alarm(self, kind: str, subject: str, *, capture: bool = False) -> bool:
        """Mark an active alarm cleared; True when one was active. ``capture``: as for
        ``raise_alarm`` (True: not known yet)."""
        if capture and self._writes is not None:
            now = utc_text(datetime.now(UTC))
            self._submit({"write": "clear", "kind": kind, "subject": subject, "at": now})
            return True
        self._after_capture_writes()
        return super().clear_alarm(kind, subject)

    def add_clip(self, clip: ClipRecord) -> int:
        """Index a finished clip (``ClipTable.add_clip``), after the capture loop's writes
        made before it: the index's sequence stays the order things happened in
        (``logged_since``)."""
        self._after_capture_writes()
        return super().add_clip(clip)

    def _after_capture_writes(self) -> None:
        """Another thread's write waits for the capture loop's writes made before it (an
        alarm the loop raised, then the finisher's clear of it, must not commit the other way
        round), as long as it would wait for another connection's lock (SQLite's busy timeout,
        30 s); then it goes ahead (and likely fails the same way)."""
        if self._writes is not None and not self._writes.flush(
            through_failures=True, timeout=CAPTURE_WRITES_WAIT_S
        ):
            log.warning("the capture loop's earlier index writes are not committed yet: "
                        "writing after them anyway")  # fmt: skip

    def flush_capture_writes(self) -> bool:
        """Wait until the capture loop's writes submitted so far are committed (True), or
        the index refused one (False: kept and retried). True at once without a writer."""
        return self._writes.flush() if self._writes is not None else True

    @property
    def capture_writes_pending(self) -> int:
        """The capture loop's writes journaled and not committed yet."""
        return self._writes.pending if self._writes is not None else 0

    def _submit(self, op: dict[str, Any]) -> None:
        assert self._writes is not None
        try:
            self._writes.submit(op)
        except OSError as exc:
            raise LedgerError(f"cannot journal the capture loop's index write: {exc}") from exc

    def _commit_capture_write(self, seq: int, op: dict[str, Any]) -> None:
        """One write of the capture journal and its number, in one transaction (the writer)."""
        assert self.writer_db is not None
        with self.writer_db.tx(self.error, "capture loop's index write") as db:
            match op["write"]:
                case "events":
                    events = [event_from_journal(e) for e in op["events"]]
                    self._insert_events(db, None, op["station"], events)
                case "raise":
                    self.raise_alarm_in(db, op["kind"], op["subject"], op["message"], op["at"])
                case "clear":
                    self.clear_alarm_in(db, op["kind"], op["subject"], op["at"])
                case other:
                    raise ValueError(f"unknown capture write {other!r}")
            SyncCursors.set_cursor_in(db, CAPTURE_CURSOR, seq)

    def close(self) -> None:
        if self._writes is not None:
            self._writes.close()  # the capture loop's last writes committed
        if self.writer_db is not None:
            self.writer_db.close()
        if self._sync is not None:
            self._sync.close()  # the capture journal synced
        if self.capture_db is not self.db:
            self.capture_db.close()
        self.db.close()

    @property
    def schema_version(self) -> int:
        return sqlitedb.schema_version(self.conn)

    def stored_clips(self, *, include_deleted: bool = False) -> list[StoredClip]:
        """Indexed clips, oldest first; only those whose file is kept unless ``include_deleted``."""
        return self.stored(self.held_orders(), include_deleted=include_deleted)

    def mark_deleted(
        self,
        clip_id: int,
        *,
        reason: str,
        record: bytes,
        signature: bytes | None,
        key_fingerprint: str,
        deleted_at: datetime,
    ) -> None:
        """Record a retention deletion before the file goes: the row and its hash stay.

        Refused (LedgerError) when the clip is unknown, already deleted, or its order is on
        legal hold now: the check and the mark are one transaction, so a hold set a moment
        before (from the web page) always wins.
        """
        with self._tx() as db:
            clip = self.stored_in(db, clip_id, self.held_orders(db))
            if clip is None:
                raise LedgerError(f"no clip {clip_id} in the index")
            if clip.deleted_utc is not None:
                raise LedgerError(f"clip {clip_id} was already deleted ({clip.deleted_utc})")
            if clip.legal_hold:
                raise LedgerError(f"clip {clip_id}: order {clip.order_id!r} is on legal hold")
            when = utc_text(deleted_at)
            self.set_deleted_in(db, clip_id, when, reason)
            self.record_deletion_in(
                db, clip_id, clip.path, clip.sha256, record, signature, key_fingerprint, when
            )

    def unarchived_deletions_after(self, deletion_id: int) -> list[tuple[int, str]]:
        """(deletion id, order_id) of the retention deletions after ``deletion_id`` of clips
        the archiver never sent, in the order they happened, whose order has an archived clip
        (it has signed parts in the bucket, which may still list the deleted clip)."""
        # each owner reads its own table: the deletions (HoldTable), then their clips (ClipTable)
        deletions = self.deletions_after(deletion_id)
        found = [(d, self.unarchived_with_archived_order(c)) for d, c in deletions]
        return [(d, order) for d, order in found if order is not None]
