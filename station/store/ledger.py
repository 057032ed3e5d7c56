"""The station index as the recorder, retention and the CLI use it: clips, holds and alarms."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from station.errors import LedgerError
from station.store import sqlitedb
from station.store.alarms import Alarm, AlarmTable
from station.store.clips import (
    ClipRecord,
    ClipTable,
    ScanEventRecord,
    StoredClip,
    WaybillLink,
    clip_from_rows,
    event_from_row,
)
from station.store.files import BackgroundSync
from station.store.holds import HoldTable, LegalHold
from station.store.index import INDEX_NAME, MIGRATIONS, open_index
from station.store.sqlitedb import utc_text

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


class Ledger(ClipTable, HoldTable, AlarmTable):
    """The station's SQLite index: the clips, legal holds and alarms tables on one connection.

    Open it with a path (a file in the data dir) or pass an existing connection, as sqlite-utils
    does, so every layer can be tested on a real database. Each table's SQL lives with its owner
    (station/store/); this class only joins what spans two owners in one transaction. Its
    writes go through one lock (the capture thread's through another, below), so the capture
    thread and the clip finisher thread may share an instance.

    Opened on a file, it opens a second connection for the capture thread (``capture_db``:
    synchronous=NORMAL, no automatic checkpoint, a lock of its own): the scans indexed with
    no clip open (``log_events``), the alarms the capture loop raises and clears
    (``raise_alarm``/``clear_alarm`` with ``capture=True``) and the duplicate check at an
    order scan go through it, so the capture thread never waits for an fsync, its own or one
    the clip finisher's commits (synchronous=FULL) make under the other lock. Each such write
    wakes the thread "index-sync" (a ``BackgroundSync``), which fsyncs the WAL at once: a kill -9
    loses none once its call returned, a power cut only those of the last fsync or so
    (docs/reliability.md).
    """

    def __init__(self, target: Path | str | sqlite3.Connection) -> None:
        super().__init__(open_index(target))
        self._wal: BackgroundSync | None = None
        self._wal_path = Path(f"{target}-wal")
        if isinstance(target, sqlite3.Connection) or str(target) in {"", ":memory:"}:
            return  # no file to open another connection to: the one above serves all
        try:
            self.capture_db = open_index(target, capture=True)
        except BaseException:
            self.db.close()
            raise
        # the WAL file is never renamed: no folder sync. Gone when the last connection
        # closed (checkpointed into the database, with syncs): nothing left to sync.
        self._wal = BackgroundSync("index-sync", folder=False)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Ledger:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / INDEX_NAME)

    def log_events(self, station: str, events: Sequence[ScanEventRecord]) -> None:
        super().log_events(station, events)
        self._sync_soon()

    def raise_alarm(self, kind: str, subject: str, message: str, *, capture: bool = False) -> bool:
        new = super().raise_alarm(kind, subject, message, capture=capture)
        if capture:
            self._sync_soon()
        return new

    def clear_alarm(self, kind: str, subject: str, *, capture: bool = False) -> bool:
        cleared = super().clear_alarm(kind, subject, capture=capture)
        if capture and cleared:  # nothing active: nothing was written
            self._sync_soon()
        return cleared

    def _sync_soon(self) -> None:
        """What ``capture_db`` committed is durable within an fsync, on "index-sync"."""
        if self._wal is not None:
            self._wal.request(self._wal_path)

    def close(self) -> None:
        if self._wal is not None:
            self._wal.close()  # the last scans synced
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
