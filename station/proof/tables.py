"""The proof tables of the station index (proof_log, proof_checkpoints, proof_timestamps and
the retired keys' proof_archive_*, proof_rotations): their records and all their SQL."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from station.proof import ProofError
from station.proof.standalone_verify import start_statement_digest
from station.store.sqlitedb import Table, from_row


@dataclass(frozen=True)
class LogEntry:
    """One leaf: a canonical manifest and its detached Ed25519 signature."""

    seq: int
    station: str
    clip_path: str
    clip_sha256: str
    manifest_sha256: str
    leaf_hash: str
    manifest: bytes
    signature: bytes
    key_fingerprint: str
    created_utc: str


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement "the log had ``tree_size`` leaves with this root at this time"."""

    id: int
    tree_size: int
    root_hash: str
    body: bytes  # canonical JSON, exactly as signed
    signature: bytes
    created_utc: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class TimestampRow:
    id: int
    subject: str
    subject_sha256: str
    tsa_url: str
    status: str
    attempts: int
    next_try_utc: str
    last_error: str
    token: bytes | None
    gen_time_utc: str | None


@dataclass(frozen=True)
class Rotation:
    """The link from a retired key's closed log to its successor's new one."""

    id: int
    old_key: str
    new_key: str
    old_public_pem: bytes
    new_public_pem: bytes
    checkpoint_id: int
    body: bytes  # the old log's final checkpoint, exactly as both keys signed it
    signature_old: bytes
    signature_new: bytes
    created_utc: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def _read_only(*tables: tuple[str, str, str]) -> str:
    """SQL for the triggers that make each table append-only: for ``(trigger, table,
    message)``, ``{trigger}_no_update`` and ``{trigger}_no_delete`` abort with ``message``.

    The text is what the database keeps in sqlite_master; the schema tests compare it with old
    indexes (tests/fixtures), so it must not change.
    """
    return "".join(
        f"""
    CREATE TRIGGER {trigger}_no_{verb.lower()} BEFORE {verb} ON {table}
        BEGIN SELECT RAISE(ABORT, '{message}'); END;"""
        for trigger, table, message in tables
        for verb in ("UPDATE", "DELETE")
    )


class ProofTables(Table):
    """Owner of the ``proof_*`` tables. The Merkle logic lives in ProofLog (proof/log.py), the
    followers (archiver, central sync) read through the methods here. Appends, checkpoints and
    the rotation are IMMEDIATE transactions, so a second process cannot fork the log."""

    error = ProofError
    TABLES: ClassVar[tuple[str, ...]] = (
        "proof_log", "proof_checkpoints", "proof_timestamps", "proof_archive_log",
        "proof_archive_checkpoints", "proof_rotations",
    )  # fmt: skip
    MIGRATIONS: ClassVar[dict[int, str]] = {
        # the signed-manifest Merkle log, its checkpoints and RFC 3161 tokens.
        2: """
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
        # key rotation (station/proof/rotation.py): the closed logs of retired keys, read-only,
        # and the rotation statements (the final checkpoint of each, signed by both keys).
        6: """
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
    );"""
        + _read_only(
            ("proof_archive_log", "proof_archive_log", "an archived log is read-only"),
            ("proof_archive_cp", "proof_archive_checkpoints", "an archived log is read-only"),
            ("proof_rotations", "proof_rotations", "a rotation statement is read-only"),
        ),
    }

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        return self.db.rows(sql, args, error=ProofError, what="proof log read")

    # ---- leaves ---------------------------------------------------------------------------

    def size(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM proof_log")[0][0])

    def last(self) -> LogEntry | None:
        rows = self._query("SELECT * FROM proof_log ORDER BY seq DESC LIMIT 1")
        return _entry(rows[0]) if rows else None

    def entry(self, seq: int) -> LogEntry | None:
        rows = self._query("SELECT * FROM proof_log WHERE seq = ?", (seq,))
        return _entry(rows[0]) if rows else None

    def entries_for_clip(self, sha256: str) -> list[LogEntry]:
        rows = self._query("SELECT * FROM proof_log WHERE clip_sha256 = ? ORDER BY seq", (sha256,))
        return [_entry(r) for r in rows]

    def entry_for_path(self, clip_path: str) -> LogEntry | None:
        rows = self._query(
            "SELECT * FROM proof_log WHERE clip_path = ? ORDER BY seq DESC LIMIT 1", (clip_path,)
        )
        return _entry(rows[0]) if rows else None

    def entries(self) -> list[LogEntry]:
        return [_entry(r) for r in self._query("SELECT * FROM proof_log ORDER BY seq")]

    def manifests(self, start: int, stop: int) -> list[bytes]:
        """The stored manifest bytes of leaves ``start`` <= seq < ``stop``, in order."""
        rows = self._query(
            "SELECT manifest FROM proof_log WHERE seq >= ? AND seq < ? ORDER BY seq", (start, stop)
        )
        return [bytes(r[0]) for r in rows]

    def append(self, entry: LogEntry) -> None:
        """Store leaf ``entry.seq``; any seq but the next one is refused."""
        with self._tx() as db:
            size = int(db.execute("SELECT COUNT(*) FROM proof_log").fetchone()[0])
            if entry.seq != size:
                raise ProofError(f"log append out of order: seq {entry.seq}, log size {size}")
            db.execute(
                "INSERT INTO proof_log(seq, station, clip_path, clip_sha256, manifest_sha256,"
                " leaf_hash, manifest, signature, key_fingerprint, created_utc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.seq, entry.station, entry.clip_path, entry.clip_sha256,
                 entry.manifest_sha256, entry.leaf_hash, entry.manifest, entry.signature,
                 entry.key_fingerprint, entry.created_utc),
            )  # fmt: skip

    # ---- checkpoints ----------------------------------------------------------------------

    def add_checkpoint(
        self, tree_size: int, root_hash: str, body: bytes, signature: bytes, created_utc: str
    ) -> int:
        """Store a signed checkpoint; return its id. Ids go on past the archived checkpoints
        of retired keys: central sync's cursor is a checkpoint id and must never see one twice."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO proof_checkpoints(id, tree_size, root_hash, body, signature,"
                " created_utc) VALUES (?, ?, ?, ?, ?, ?)",
                (_next_checkpoint_id(db), tree_size, root_hash, body, signature, created_utc),
            )
        return int(cur.lastrowid or 0)

    def checkpoint_by_id(self, cp_id: int) -> Checkpoint | None:
        rows = self._query("SELECT * FROM proof_checkpoints WHERE id = ?", (cp_id,))
        return _checkpoint(rows[0]) if rows else None

    def latest_checkpoint(self) -> Checkpoint | None:
        rows = self._query(
            "SELECT * FROM proof_checkpoints ORDER BY tree_size DESC, id DESC LIMIT 1"
        )
        return _checkpoint(rows[0]) if rows else None

    def checkpoints(self, *, after_id: int = 0, limit: int = -1) -> list[Checkpoint]:
        """Checkpoints by id, those after ``after_id``, at most ``limit`` (-1: all)."""
        rows = self._query(
            "SELECT * FROM proof_checkpoints WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [_checkpoint(r) for r in rows]

    # ---- RFC 3161 timestamp queue ---------------------------------------------------------

    def enqueue_timestamps(
        self, subject: str, subject_sha256: str, urls: Sequence[str], now_utc: str
    ) -> None:
        with self._tx() as db:
            _enqueue(db, subject, subject_sha256, urls, now_utc)

    def due_timestamps(self, now_utc: str, limit: int) -> list[TimestampRow]:
        rows = self._query(
            "SELECT * FROM proof_timestamps WHERE status = 'pending' AND next_try_utc <= ?"
            " ORDER BY next_try_utc, id LIMIT ?",
            (now_utc, limit),
        )
        return [_ts(r) for r in rows]

    def pending_count(self) -> int:
        return int(
            self._query("SELECT COUNT(*) FROM proof_timestamps WHERE status = 'pending'")[0][0]
        )

    def pending_for_clip(self, clip_sha256: str) -> int:
        """How many timestamp requests for the manifests of these clip bytes, and for the
        start statements they carry, are pending."""
        subjects: set[str] = set()
        for r in self._query(
            "SELECT manifest_sha256, manifest FROM proof_log WHERE clip_sha256 = ?",
            (clip_sha256,),
        ):
            subjects.add(r["manifest_sha256"])
            try:
                body = json.loads(bytes(r["manifest"]))
            except ValueError:
                continue
            if isinstance(body, dict) and (start := start_statement_digest(body)) is not None:
                subjects.add(start)
        if not subjects:
            return 0
        marks = ",".join("?" * len(subjects))
        return int(
            self._query(
                "SELECT COUNT(*) FROM proof_timestamps WHERE status = 'pending'"
                f" AND subject_sha256 IN ({marks})",
                sorted(subjects),
            )[0][0]
        )

    def store_token(self, row_id: int, token: bytes, gen_time_utc: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE proof_timestamps SET status = 'granted', token = ?, gen_time_utc = ?,"
                " attempts = attempts + 1, last_error = '' WHERE id = ?",
                (token, gen_time_utc, row_id),
            )

    def retry_later(self, row_id: int, error: str, next_try_utc: str, *, give_up: bool) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE proof_timestamps SET status = ?, attempts = attempts + 1,"
                " last_error = ?, next_try_utc = ? WHERE id = ?",
                ("failed" if give_up else "pending", error[:500], next_try_utc, row_id),
            )

    def timestamps_for(self, subject_sha256: str) -> list[TimestampRow]:
        rows = self._query(
            "SELECT * FROM proof_timestamps WHERE subject_sha256 = ? ORDER BY id",
            (subject_sha256,),
        )
        return [_ts(r) for r in rows]

    def timestamps_after(self, row_id: int) -> list[TimestampRow]:
        """Every timestamp request after ``row_id``, by id (the archiver's token uploads)."""
        rows = self._query("SELECT * FROM proof_timestamps WHERE id > ? ORDER BY id", (row_id,))
        return [_ts(r) for r in rows]

    # ---- key rotation (station/proof/rotation.py) -----------------------------------------

    def rotations(self, *, after_id: int = 0) -> list[Rotation]:
        """Key rotations after ``after_id``, oldest first."""
        rows = self._query("SELECT * FROM proof_rotations WHERE id > ? ORDER BY id", (after_id,))
        return [_rotation(r) for r in rows]

    def close_for_rotation(
        self,
        size: int,
        old_key: str,
        new_key: str,
        pems: tuple[bytes, bytes],
        final: tuple[str, bytes, bytes, bytes],
        tsa_urls: Sequence[str],
        now_utc: str,
    ) -> None:
        """In one transaction: every leaf and checkpoint moved to the read-only archive under
        ``old_key``, the final checkpoint (root hex, body, signature by the old key, by the new)
        and the rotation statement stored, the statement queued for timestamps, the live log
        emptied. Refused when the log no longer has ``size`` leaves."""
        root_hex, body, sig_old, sig_new = final
        with self._tx() as db:
            if int(db.execute("SELECT COUNT(*) FROM proof_log").fetchone()[0]) != size:
                raise ProofError("the log grew during the rotation: is the station running?")
            cp_id = _next_checkpoint_id(db)
            db.execute(
                "INSERT INTO proof_archive_log SELECT ?, seq, station, clip_path,"
                " clip_sha256, manifest_sha256, leaf_hash, manifest, signature,"
                " key_fingerprint, created_utc FROM proof_log ORDER BY seq",
                (old_key,),
            )
            db.execute(
                "INSERT INTO proof_archive_checkpoints SELECT id, ?, tree_size, root_hash,"
                " body, signature, created_utc FROM proof_checkpoints ORDER BY id",
                (old_key,),
            )
            db.execute(
                "INSERT INTO proof_archive_checkpoints(id, log_key, tree_size, root_hash,"
                " body, signature, created_utc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (cp_id, old_key, size, root_hex, body, sig_old, now_utc),
            )
            db.execute(
                "INSERT INTO proof_rotations(old_key, new_key, old_public_pem,"
                " new_public_pem, checkpoint_id, body, signature_old, signature_new,"
                " created_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (old_key, new_key, pems[0], pems[1], cp_id, body, sig_old, sig_new, now_utc),
            )
            db.execute("DELETE FROM proof_log")
            db.execute("DELETE FROM proof_checkpoints")
            _enqueue(db, "checkpoint", hashlib.sha256(body).hexdigest(), tsa_urls, now_utc)

    # ---- the closed logs of retired keys ----------------------------------------------------

    def archived_entries(self, log_key: str, *, below: int | None = None) -> list[LogEntry]:
        """The retired key's leaves by seq (only seq < ``below`` when given)."""
        upto, args = ("", (log_key,)) if below is None else (" AND seq < ?", (log_key, below))
        rows = self._query(
            f"SELECT * FROM proof_archive_log WHERE log_key = ?{upto} ORDER BY seq", args
        )
        return [_entry(r) for r in rows]

    def archived_entries_for_clip(self, sha256: str) -> list[tuple[str, LogEntry]]:
        """(retired key, leaf) of every archived leaf for these clip bytes."""
        rows = self._query(
            "SELECT * FROM proof_archive_log WHERE clip_sha256 = ? ORDER BY rowid", (sha256,)
        )
        return [(r["log_key"], _entry(r)) for r in rows]

    def archived_checkpoints(self, log_key: str) -> list[Checkpoint]:
        rows = self._query(
            "SELECT * FROM proof_archive_checkpoints WHERE log_key = ? ORDER BY id", (log_key,)
        )
        return [_checkpoint(r) for r in rows]


def _next_checkpoint_id(db: sqlite3.Connection) -> int:
    row = db.execute(
        "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM proof_checkpoints"
        " UNION ALL SELECT MAX(id) FROM proof_archive_checkpoints)"
    ).fetchone()
    return int(row[0] or 0) + 1


def _enqueue(
    db: sqlite3.Connection, subject: str, subject_sha256: str, urls: Sequence[str], now_utc: str
) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO proof_timestamps(subject, subject_sha256, tsa_url, status,"
        " next_try_utc, created_utc) VALUES (?, ?, ?, 'pending', ?, ?)",
        [(subject, subject_sha256, url, now_utc, now_utc) for url in urls],
    )


def _rotation(r: sqlite3.Row) -> Rotation:
    return from_row(Rotation, r)


def _entry(r: sqlite3.Row) -> LogEntry:
    return from_row(LogEntry, r)


def _checkpoint(r: sqlite3.Row) -> Checkpoint:
    return from_row(Checkpoint, r)


def _ts(r: sqlite3.Row) -> TimestampRow:
    return from_row(TimestampRow, r)
