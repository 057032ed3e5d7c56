"""SQLite index of orders, clips and scan events: WAL, migrations, one writer lock."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from station import sqlitedb
from station.errors import LedgerError

log = logging.getLogger(__name__)

INDEX_NAME = "index.sqlite3"

# Each entry upgrades the schema by one version (PRAGMA user_version). Never edit a shipped
# entry: append a new one, so every station in the field migrates the same way.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE orders (
        order_id        TEXT PRIMARY KEY,
        first_seen_utc  TEXT NOT NULL,
        last_clip_utc   TEXT
    );
    CREATE TABLE clips (
        id              INTEGER PRIMARY KEY,
        order_id        TEXT NOT NULL REFERENCES orders(order_id),
        waybill         TEXT,
        station         TEXT NOT NULL,
        started_at      TEXT NOT NULL,
        ended_at        TEXT NOT NULL,
        started_utc     TEXT NOT NULL,
        ended_utc       TEXT NOT NULL,
        tz              TEXT NOT NULL,
        duration_s      REAL NOT NULL,
        frame_count     INTEGER NOT NULL,
        finish_reason   TEXT NOT NULL,
        pre_roll_s      REAL NOT NULL,
        path            TEXT NOT NULL UNIQUE,
        manifest_path   TEXT NOT NULL,
        size            INTEGER NOT NULL,
        sha256          TEXT NOT NULL,
        created_utc     TEXT NOT NULL
    );
    CREATE INDEX clips_order ON clips(order_id, started_utc);
    CREATE INDEX clips_started ON clips(started_utc);
    CREATE INDEX clips_station ON clips(station, started_utc);
    CREATE TABLE waybills (
        clip_id         INTEGER NOT NULL REFERENCES clips(id),
        order_id        TEXT NOT NULL,
        waybill         TEXT NOT NULL,
        carrier         TEXT NOT NULL,
        t_clip_s        REAL NOT NULL,
        PRIMARY KEY (clip_id, waybill)
    );
    CREATE INDEX waybills_waybill ON waybills(waybill);
    CREATE TABLE scan_events (
        id              INTEGER PRIMARY KEY,
        clip_id         INTEGER REFERENCES clips(id),
        station         TEXT NOT NULL,
        kind            TEXT NOT NULL,
        text            TEXT NOT NULL,
        source          TEXT NOT NULL,
        t_clip_s        REAL,
        wall            TEXT NOT NULL,
        note            TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX scan_events_clip ON scan_events(clip_id);
    """,
    # 2: station/proof: the signed-manifest Merkle log, its checkpoints and RFC 3161 tokens.
    """
    CREATE TABLE proof_log (
        seq             INTEGER PRIMARY KEY,  -- leaf index in the station's Merkle log, from 0
        station         TEXT NOT NULL,
        clip_path       TEXT NOT NULL,
        clip_sha256     TEXT NOT NULL,
        manifest_sha256 TEXT NOT NULL UNIQUE,  -- SHA-256 of the canonical manifest bytes
        leaf_hash       TEXT NOT NULL,  -- RFC 6962 leaf hash of those bytes
        manifest        BLOB NOT NULL,  -- the canonical manifest bytes, exactly as signed
        signature       BLOB NOT NULL,  -- Ed25519 over manifest
        key_fingerprint TEXT NOT NULL,
        created_utc     TEXT NOT NULL
    );
    CREATE INDEX proof_log_clip ON proof_log(clip_sha256);
    CREATE INDEX proof_log_path ON proof_log(clip_path);
    CREATE TABLE proof_checkpoints (
        id              INTEGER PRIMARY KEY,
        tree_size       INTEGER NOT NULL,
        root_hash       TEXT NOT NULL,
        body            BLOB NOT NULL,  -- canonical checkpoint bytes, exactly as signed
        signature       BLOB NOT NULL,
        created_utc     TEXT NOT NULL
    );
    CREATE INDEX proof_checkpoints_size ON proof_checkpoints(tree_size);
    CREATE TABLE proof_timestamps (
        id              INTEGER PRIMARY KEY,
        subject         TEXT NOT NULL,  -- manifest | checkpoint
        subject_sha256  TEXT NOT NULL,  -- the message imprint: SHA-256 of the signed bytes
        tsa_url         TEXT NOT NULL,
        status          TEXT NOT NULL,  -- pending | granted | failed
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_try_utc    TEXT NOT NULL,
        last_error      TEXT NOT NULL DEFAULT '',
        token           BLOB,  -- DER TimeStampToken (CMS ContentInfo)
        gen_time_utc    TEXT,
        created_utc     TEXT NOT NULL,
        UNIQUE (subject_sha256, tsa_url)
    );
    CREATE INDEX proof_timestamps_due ON proof_timestamps(status, next_try_utc);
    """,
    # 3: fleet (station/archiver.py, station/central_sync.py): when a clip and its proofs were
    # verified in object storage, resumable multipart uploads, and the central-sync cursors.
    """
    ALTER TABLE clips ADD COLUMN archived_utc TEXT;  -- NULL until verified in the archive
    ALTER TABLE clips ADD COLUMN archive_key TEXT;  -- the clip's object key
    ALTER TABLE clips ADD COLUMN archive_meta TEXT;  -- JSON: manifest, frames, proof keys
    ALTER TABLE clips ADD COLUMN archive_seq INTEGER;  -- order of archiving (central cursor)
    CREATE INDEX clips_unarchived ON clips(id) WHERE archived_utc IS NULL;
    CREATE UNIQUE INDEX clips_archive_seq ON clips(archive_seq) WHERE archive_seq IS NOT NULL;
    CREATE TABLE archive_uploads (
        key             TEXT PRIMARY KEY,  -- object key being uploaded in parts
        local_path      TEXT NOT NULL,
        size            INTEGER NOT NULL,
        sha256          TEXT NOT NULL,
        upload_id       TEXT NOT NULL,
        part_size       INTEGER NOT NULL,
        parts           TEXT NOT NULL DEFAULT '[]',  -- JSON list of finished parts
        created_utc     TEXT NOT NULL,
        updated_utc     TEXT NOT NULL
    );
    CREATE TABLE sync_cursors (
        name            TEXT PRIMARY KEY,  -- e.g. central:clips, central:archived
        value           INTEGER NOT NULL,
        updated_utc     TEXT NOT NULL
    );
    """,
    # 4: reliability (station/retention.py, station/recovery.py): legal holds per order with
    # their history, retention deletions (the row and its hash stay, with a signed deletion
    # record, so an audit tells retention from tampering) and persistent alarms.
    """
    ALTER TABLE clips ADD COLUMN deleted_utc TEXT;  -- NULL while the file is kept
    ALTER TABLE clips ADD COLUMN deleted_reason TEXT;
    CREATE INDEX clips_kept ON clips(started_utc, id) WHERE deleted_utc IS NULL;
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
    # 5: the packing floor (issue 13): who packed a clip, its kind (order | return), and the
    # earlier clips of the same order a repack follows (JSON list of clip ids).
    """
    ALTER TABLE clips ADD COLUMN packer TEXT;  -- NULL when no packer was signed in
    ALTER TABLE clips ADD COLUMN kind TEXT NOT NULL DEFAULT 'order';
    ALTER TABLE clips ADD COLUMN repack_of TEXT;  -- NULL, or a JSON list of earlier clip ids
    CREATE INDEX clips_packer ON clips(packer, started_utc);
    """,
    # 6: key rotation (station/proof/rotation.py): the closed logs of retired keys, read-only,
    # and the rotation statements (the final checkpoint of each, signed by both keys).
    """
    CREATE TABLE proof_archive_log (
        log_key         TEXT NOT NULL,  -- fingerprint of the retired key whose log this was
        seq             INTEGER NOT NULL,
        station         TEXT NOT NULL,
        clip_path       TEXT NOT NULL,
        clip_sha256     TEXT NOT NULL,
        manifest_sha256 TEXT NOT NULL UNIQUE,
        leaf_hash       TEXT NOT NULL,
        manifest        BLOB NOT NULL,
        signature       BLOB NOT NULL,
        key_fingerprint TEXT NOT NULL,
        created_utc     TEXT NOT NULL,
        PRIMARY KEY (log_key, seq)
    );
    CREATE INDEX proof_archive_log_clip ON proof_archive_log(clip_sha256);
    CREATE TABLE proof_archive_checkpoints (
        id              INTEGER PRIMARY KEY,  -- ids go on where the live table's left off
        log_key         TEXT NOT NULL,
        tree_size       INTEGER NOT NULL,
        root_hash       TEXT NOT NULL,
        body            BLOB NOT NULL,
        signature       BLOB NOT NULL,  -- by the retired key
        created_utc     TEXT NOT NULL
    );
    CREATE INDEX proof_archive_checkpoints_key ON proof_archive_checkpoints(log_key, tree_size);
    CREATE TABLE proof_rotations (
        id              INTEGER PRIMARY KEY,
        old_key         TEXT NOT NULL UNIQUE,
        new_key         TEXT NOT NULL UNIQUE,
        old_public_pem  BLOB NOT NULL,
        new_public_pem  BLOB NOT NULL,
        checkpoint_id   INTEGER NOT NULL,  -- the final checkpoint in proof_archive_checkpoints
        body            BLOB NOT NULL,  -- that checkpoint's bytes ("final", "successor_key")
        signature_old   BLOB NOT NULL,
        signature_new   BLOB NOT NULL,
        created_utc     TEXT NOT NULL
    );
    CREATE TRIGGER proof_archive_log_no_update BEFORE UPDATE ON proof_archive_log
        BEGIN SELECT RAISE(ABORT, 'an archived log is read-only'); END;
    CREATE TRIGGER proof_archive_log_no_delete BEFORE DELETE ON proof_archive_log
        BEGIN SELECT RAISE(ABORT, 'an archived log is read-only'); END;
    CREATE TRIGGER proof_archive_cp_no_update BEFORE UPDATE ON proof_archive_checkpoints
        BEGIN SELECT RAISE(ABORT, 'an archived log is read-only'); END;
    CREATE TRIGGER proof_archive_cp_no_delete BEFORE DELETE ON proof_archive_checkpoints
        BEGIN SELECT RAISE(ABORT, 'an archived log is read-only'); END;
    CREATE TRIGGER proof_rotations_no_update BEFORE UPDATE ON proof_rotations
        BEGIN SELECT RAISE(ABORT, 'a rotation statement is read-only'); END;
    CREATE TRIGGER proof_rotations_no_delete BEFORE DELETE ON proof_rotations
        BEGIN SELECT RAISE(ABORT, 'a rotation statement is read-only'); END;
    """,
    # 7: a repack of an order first recorded at other stations (the central index said so,
    # station/duplicates.py): JSON list of {"station", "clip_id", "started"}.
    """
    ALTER TABLE clips ADD COLUMN repack_of_fleet TEXT;
    """,
)


@dataclass(frozen=True)
class ScanEventRecord:
    """One scan or pedal press. ``t_clip_s`` is seconds from the clip's first frame."""

    kind: str
    text: str
    source: str
    wall: datetime
    t_clip_s: float | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["wall"] = self.wall.isoformat(timespec="milliseconds")
        return d


@dataclass(frozen=True)
class WaybillLink:
    waybill: str
    carrier: str
    t_clip_s: float


@dataclass(frozen=True)
class ClipRecord:
    """Everything the index holds about one finished clip (also the manifest's content)."""

    order_id: str
    station: str
    started_at: datetime
    ended_at: datetime
    duration_s: float
    frame_count: int
    finish_reason: str
    pre_roll_s: float
    path: str  # relative to the data dir, POSIX separators
    manifest_path: str
    size: int
    sha256: str
    waybills: tuple[WaybillLink, ...] = ()
    events: tuple[ScanEventRecord, ...] = ()
    id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def waybill(self) -> str | None:
        return self.waybills[0].waybill if self.waybills else None

    # The packing floor's fields live in ``extra``, so the manifest and the index agree.
    @property
    def packer(self) -> str | None:
        p = self.extra.get("packer")
        return p if isinstance(p, str) and p else None

    @property
    def kind(self) -> str:
        k = self.extra.get("kind")
        return k if isinstance(k, str) and k else "order"

    @property
    def repack_of(self) -> list[int]:
        ids = self.extra.get("repack_of")
        return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []

    @property
    def repack_of_fleet(self) -> list[dict[str, Any]]:
        """The earlier clips of this order at other stations: {"station", "clip_id", "started"}."""
        refs = self.extra.get("repack_of_fleet")
        if not isinstance(refs, list):
            return []
        return [
            r for r in refs
            if isinstance(r, dict) and isinstance(r.get("station"), str)
            and isinstance(r.get("clip_id"), int)
        ]  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "order_id": self.order_id,
            "waybill": self.waybill,
            "waybills": [asdict(w) for w in self.waybills],
            "station": self.station,
            "started_at": self.started_at.isoformat(timespec="milliseconds"),
            "ended_at": self.ended_at.isoformat(timespec="milliseconds"),
            "duration_s": round(self.duration_s, 3),
            "frame_count": self.frame_count,
            "finish_reason": self.finish_reason,
            "pre_roll_s": round(self.pre_roll_s, 3),
            "path": self.path,
            "manifest_path": self.manifest_path,
            "size": self.size,
            "sha256": self.sha256,
            "events": [e.to_json() for e in self.events],
            **self.extra,
        }


@dataclass(frozen=True)
class StoredClip:
    """An indexed clip as retention and reconciliation see it (no events, no waybills)."""

    id: int
    order_id: str
    path: str
    manifest_path: str
    started_at: datetime  # aware, UTC
    size: int
    sha256: str
    legal_hold: bool = False
    archived: bool = False
    deleted_utc: str | None = None
    kind: str = "order"


@dataclass(frozen=True)
class LegalHold:
    order_id: str
    held_by: str
    held_utc: str
    note: str = ""


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


def _utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tzname(dt: datetime) -> str:
    return dt.strftime("%z") or "+0000"


def event_from_row(e: sqlite3.Row) -> ScanEventRecord:
    return ScanEventRecord(
        kind=e["kind"],
        text=e["text"],
        source=e["source"],
        wall=datetime.fromisoformat(e["wall"]),
        t_clip_s=e["t_clip_s"],
        note=e["note"],
    )


def clip_from_rows(
    r: sqlite3.Row,
    waybills: Sequence[sqlite3.Row] = (),
    events: Sequence[sqlite3.Row] = (),
    extra: dict[str, Any] | None = None,
) -> ClipRecord:
    """A ClipRecord from a ``clips`` row, its ``waybills`` rows and its ``scan_events`` rows."""
    return ClipRecord(
        id=r["id"],
        order_id=r["order_id"],
        station=r["station"],
        started_at=datetime.fromisoformat(r["started_at"]),
        ended_at=datetime.fromisoformat(r["ended_at"]),
        duration_s=r["duration_s"],
        frame_count=r["frame_count"],
        finish_reason=r["finish_reason"],
        pre_roll_s=r["pre_roll_s"],
        path=r["path"],
        manifest_path=r["manifest_path"],
        size=r["size"],
        sha256=r["sha256"],
        waybills=tuple(WaybillLink(w["waybill"], w["carrier"], w["t_clip_s"]) for w in waybills),
        events=tuple(event_from_row(e) for e in events),
        extra={**_floor_extra(r), **(extra or {})},
    )


def _floor_extra(r: sqlite3.Row) -> dict[str, Any]:
    """The packing-floor columns of a ``clips`` row as manifest fields (none on old rows)."""
    keys = r.keys()
    out: dict[str, Any] = {}
    if "kind" in keys:
        out["kind"] = r["kind"]
    if "packer" in keys and r["packer"]:
        out["packer"] = r["packer"]
    if "repack_of" in keys and r["repack_of"]:
        out["repack_of"] = json.loads(r["repack_of"])
    if "repack_of_fleet" in keys and r["repack_of_fleet"]:
        out["repack_of_fleet"] = json.loads(r["repack_of_fleet"])
    return out


class Ledger:
    """The station's SQLite index.

    Open it with a path (a file in the data dir) or pass an existing connection, as sqlite-utils
    does, so every layer can be tested on a real database. All writes go through one lock, so
    the capture thread and the clip finisher thread may share an instance.
    """

    def __init__(self, target: Path | str | sqlite3.Connection) -> None:
        try:
            self.conn = sqlitedb.open_connection(target)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a finished clip's row must survive a power cut once add_clip returned.
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._lock = threading.RLock()
            self.migrate()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open index {target}: {exc}") from exc

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Ledger:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / INDEX_NAME)

    def close(self) -> None:
        self.conn.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlitedb.transaction(self.conn, self._lock, LedgerError, "index write")

    @property
    def schema_version(self) -> int:
        return sqlitedb.schema_version(self.conn)

    def migrate(self) -> None:
        sqlitedb.migrate(self.conn, self._lock, MIGRATIONS, LedgerError, "index")

    # ---- writes ---------------------------------------------------------------------------

    def add_clip(self, clip: ClipRecord) -> int:
        """Index a finished clip with its waybills and events in one transaction; return its id."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO orders(order_id, first_seen_utc, last_clip_utc) VALUES (?, ?, ?)"
                " ON CONFLICT(order_id) DO UPDATE SET last_clip_utc=excluded.last_clip_utc",
                (clip.order_id, _utc(clip.started_at), _utc(clip.started_at)),
            )
            cur = db.execute(
                "INSERT INTO clips(order_id, waybill, station, started_at, ended_at, started_utc,"
                " ended_utc, tz, duration_s, frame_count, finish_reason, pre_roll_s, path,"
                " manifest_path, size, sha256, created_utc, packer, kind, repack_of,"
                " repack_of_fleet)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    clip.order_id,
                    clip.waybill,
                    clip.station,
                    clip.started_at.isoformat(timespec="milliseconds"),
                    clip.ended_at.isoformat(timespec="milliseconds"),
                    _utc(clip.started_at),
                    _utc(clip.ended_at),
                    _tzname(clip.started_at),
                    clip.duration_s,
                    clip.frame_count,
                    clip.finish_reason,
                    clip.pre_roll_s,
                    clip.path,
                    clip.manifest_path,
                    clip.size,
                    clip.sha256,
                    _utc(datetime.now(UTC)),
                    clip.packer,
                    clip.kind,
                    json.dumps(clip.repack_of) if clip.repack_of else None,
                    json.dumps(clip.repack_of_fleet, ensure_ascii=False)
                    if clip.repack_of_fleet
                    else None,
                ),
            )
            assert cur.lastrowid is not None  # set by every INSERT
            clip_id = cur.lastrowid
            db.executemany(
                "INSERT OR IGNORE INTO waybills(clip_id, order_id, waybill, carrier, t_clip_s)"
                " VALUES (?, ?, ?, ?, ?)",
                [(clip_id, clip.order_id, w.waybill, w.carrier, w.t_clip_s) for w in clip.waybills],
            )
            self._insert_events(db, clip_id, clip.station, clip.events)
        return clip_id

    def log_events(self, station: str, events: Sequence[ScanEventRecord]) -> None:
        """Record scans that belong to no clip (e.g. a seal card shown with no order open)."""
        with self._tx() as db:
            self._insert_events(db, None, station, events)

    @staticmethod
    def _insert_events(
        db: sqlite3.Connection,
        clip_id: int | None,
        station: str,
        events: Sequence[ScanEventRecord],
    ) -> None:
        db.executemany(
            "INSERT INTO scan_events(clip_id, station, kind, text, source, t_clip_s, wall, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    clip_id,
                    station,
                    e.kind,
                    e.text,
                    e.source,
                    e.t_clip_s,
                    e.wall.isoformat(timespec="milliseconds"),
                    e.note,
                )
                for e in events
            ],
        )

    def mark_archived(self, clip_id: int, key: str, meta: dict[str, Any]) -> bool:
        """Record that the clip and its proofs are verified in object storage (once).

        Returns False when it was already marked. ``archive_seq`` numbers archivings in order,
        so the central sync can follow them with a cursor.
        """

        with self._tx() as db:
            cur = db.execute(
                "UPDATE clips SET archived_utc = ?, archive_key = ?, archive_meta = ?,"
                " archive_seq = (SELECT COALESCE(MAX(archive_seq), 0) + 1 FROM clips)"
                " WHERE id = ? AND archived_utc IS NULL",
                (_utc(datetime.now(UTC)), key, json.dumps(meta, sort_keys=True), clip_id),
            )
        return cur.rowcount > 0

    def unarchived_clips(self, *, after_id: int = 0, limit: int = 100) -> list[ClipRecord]:
        """Clips not yet archived and still on disk, oldest first (by id), after ``after_id``."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT * FROM clips WHERE archived_utc IS NULL AND deleted_utc IS NULL"
                " AND id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
            return [self._record(r) for r in rows]

    def archive_backlog(self) -> int:
        """How many indexed clips are not yet archived."""
        with self._lock:
            row = self.conn.execute(
                "SELECT COUNT(*) FROM clips WHERE archived_utc IS NULL AND deleted_utc IS NULL"
            ).fetchone()
        return int(row[0])

    def archive_backlog_bytes(self) -> int:
        """The bytes of the indexed clips not yet archived."""
        with self._lock:
            row = self.conn.execute(
                "SELECT COALESCE(SUM(size), 0) FROM clips"
                " WHERE archived_utc IS NULL AND deleted_utc IS NULL"
            ).fetchone()
        return int(row[0])

    def archive_state(self, clip_id: int) -> dict[str, Any] | None:
        """``archived_utc``, ``archive_key``, ``archive_meta`` (parsed) and ``archive_seq``."""

        with self._lock:
            row = self.conn.execute(
                "SELECT archived_utc, archive_key, archive_meta, archive_seq FROM clips"
                " WHERE id = ?",
                (clip_id,),
            ).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["archive_meta"] = json.loads(d["archive_meta"]) if d["archive_meta"] else None
        return d

    # ---- legal holds, retention deletions, alarms -----------------------------------------

    def set_legal_hold(self, order_id: str, on: bool, by: str, note: str = "") -> bool:
        """Hold (``on``) or release every clip of ``order_id``, present and future.

        A held clip is never deleted by retention. Every change is kept in ``legal_hold_log``.
        Returns False when nothing changed (already held / not held).
        """
        if not order_id or not by:
            raise ValueError("order_id and by are required")
        now = _utc(datetime.now(UTC))
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
        with self._lock:
            r = self.conn.execute(
                "SELECT * FROM legal_holds WHERE order_id = ?", (order_id,)
            ).fetchone()
        return LegalHold(r["order_id"], r["held_by"], r["held_utc"], r["note"]) if r else None

    def legal_holds(self) -> list[LegalHold]:
        with self._lock:
            rows = self.conn.execute("SELECT * FROM legal_holds ORDER BY order_id").fetchall()
        return [LegalHold(r["order_id"], r["held_by"], r["held_utc"], r["note"]) for r in rows]

    def legal_hold_history(self, order_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT action, by_whom, at_utc, note FROM legal_hold_log WHERE order_id = ?"
                " ORDER BY id",
                (order_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    _STORED_SQL = (
        "SELECT c.id, c.order_id, c.path, c.manifest_path, c.started_utc, c.size, c.sha256,"
        " c.archived_utc, c.deleted_utc, c.kind, h.order_id IS NOT NULL AS held"
        " FROM clips c LEFT JOIN legal_holds h ON h.order_id = c.order_id"
    )

    @staticmethod
    def _stored(r: sqlite3.Row) -> StoredClip:
        return StoredClip(
            id=r["id"],
            order_id=r["order_id"],
            path=r["path"],
            manifest_path=r["manifest_path"],
            started_at=datetime.fromisoformat(r["started_utc"]),
            size=r["size"],
            sha256=r["sha256"],
            legal_hold=bool(r["held"]),
            archived=r["archived_utc"] is not None,
            deleted_utc=r["deleted_utc"],
            kind=r["kind"],
        )

    def stored_clips(self, *, include_deleted: bool = False) -> list[StoredClip]:
        """Indexed clips, oldest first; only those whose file is kept unless ``include_deleted``."""
        sql = self._STORED_SQL
        if not include_deleted:
            sql += " WHERE c.deleted_utc IS NULL"
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY c.started_utc, c.id").fetchall()
        return [self._stored(r) for r in rows]

    def clip_paths(self) -> list[str]:
        """The path of every indexed clip, deleted ones included (cheap: no records built)."""
        with self._lock:
            return [r[0] for r in self.conn.execute("SELECT path FROM clips")]

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
            r = db.execute(self._STORED_SQL + " WHERE c.id = ?", (clip_id,)).fetchone()
            if r is None:
                raise LedgerError(f"no clip {clip_id} in the index")
            if r["deleted_utc"] is not None:
                raise LedgerError(f"clip {clip_id} was already deleted ({r['deleted_utc']})")
            if r["held"]:
                raise LedgerError(f"clip {clip_id}: order {r['order_id']!r} is on legal hold")
            when = _utc(deleted_at)
            db.execute(
                "UPDATE clips SET deleted_utc = ?, deleted_reason = ? WHERE id = ?",
                (when, reason, clip_id),
            )
            db.execute(
                "INSERT INTO retention_deletions(clip_id, path, sha256, record, signature,"
                " key_fingerprint, deleted_utc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (clip_id, r["path"], r["sha256"], record, signature, key_fingerprint, when),
            )

    def deletion_record(self, path: str) -> dict[str, Any] | None:
        """The stored retention deletion of the clip at ``path``, if any."""
        with self._lock:
            r = self.conn.execute(
                "SELECT * FROM retention_deletions WHERE path = ? ORDER BY id DESC LIMIT 1",
                (path,),
            ).fetchone()
        return dict(r) if r else None

    def raise_alarm(self, kind: str, subject: str, message: str) -> bool:
        """Record an alarm (or bump its count); True when it is new or was cleared before."""
        now = _utc(datetime.now(UTC))
        with self._tx() as db:
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
            cur = db.execute(
                "UPDATE alarms SET cleared_utc = ? WHERE kind = ? AND subject = ?"
                " AND cleared_utc IS NULL",
                (_utc(datetime.now(UTC)), kind, subject),
            )
        return cur.rowcount > 0

    def alarms(self, *, active_only: bool = True) -> list[Alarm]:
        sql = "SELECT * FROM alarms"
        if active_only:
            sql += " WHERE cleared_utc IS NULL"
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY last_utc DESC, id").fetchall()
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

    # ---- reads ----------------------------------------------------------------------------

    def clips(self, order_id: str | None = None, *, limit: int | None = None) -> list[ClipRecord]:
        """Clips, oldest first; only those of ``order_id`` when given."""
        sql = "SELECT * FROM clips"
        args: list[Any] = []
        if order_id is not None:
            sql += " WHERE order_id = ?"
            args.append(order_id)
        sql += " ORDER BY started_utc, id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self.conn.execute(sql, args).fetchall()
            return [self._record(r) for r in rows]

    def order_clip_refs(self, order_id: str) -> list[tuple[int, str]]:
        """(id, sha256) of the clips of ``order_id``, oldest first: cheap (the order index),
        for the capture thread's duplicate check at each order scan."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, sha256 FROM clips WHERE order_id = ? ORDER BY started_utc, id",
                (order_id,),
            ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def newest_clip_of(self, order_id: str, since_utc: str) -> int | None:
        """The id of the newest clip of ``order_id`` started at or after ``since_utc``."""
        with self._lock:
            row = self.conn.execute(
                "SELECT id FROM clips WHERE order_id = ? AND started_utc >= ?"
                " ORDER BY started_utc DESC, id DESC LIMIT 1",
                (order_id, since_utc),
            ).fetchone()
        return int(row[0]) if row else None

    def set_repack_of_fleet(self, clip_id: int, refs: list[dict[str, Any]]) -> bool:
        """Link an indexed clip to its order's earlier clips at other stations (an answer of
        the central index that came after the clip's manifest was built); only once: a link
        already there is kept. True when the row changed."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE clips SET repack_of_fleet = ? WHERE id = ? AND repack_of_fleet IS NULL",
                (json.dumps(refs, ensure_ascii=False), clip_id),
            )
            return cur.rowcount > 0

    def clip(self, clip_id: int) -> ClipRecord | None:
        with self._lock:
            row = self.conn.execute("SELECT * FROM clips WHERE id = ?", (clip_id,)).fetchone()
            return self._record(row) if row else None

    def clip_by_path(self, rel_path: str) -> ClipRecord | None:
        with self._lock:
            row = self.conn.execute("SELECT * FROM clips WHERE path = ?", (rel_path,)).fetchone()
            return self._record(row) if row else None

    def unattached_events(self) -> list[ScanEventRecord]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT * FROM scan_events WHERE clip_id IS NULL ORDER BY id"
            ).fetchall()
        return [event_from_row(r) for r in rows]

    def _record(self, r: sqlite3.Row) -> ClipRecord:
        wb = self.conn.execute(
            "SELECT waybill, carrier, t_clip_s FROM waybills WHERE clip_id = ? ORDER BY t_clip_s",
            (r["id"],),
        ).fetchall()
        ev = self.conn.execute(
            "SELECT * FROM scan_events WHERE clip_id = ? ORDER BY id", (r["id"],)
        ).fetchall()
        return clip_from_rows(r, wb, ev)
