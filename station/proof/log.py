"""Append-only Merkle log of signed manifests in the station's SQLite index, with checkpoints."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from station import sqlitedb
from station.ledger import INDEX_NAME, Ledger
from station.proof import ProofError, merkle
from station.proof.canonical import canonical_json
from station.proof.keys import SIG_ALG, StationKey

log = logging.getLogger(__name__)

CHECKPOINT_TYPE = "packcam-checkpoint"
ZERO_HASH = "0" * 64


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def checkpoint_body(
    station: str, key: StationKey, tree_size: int, root_hash: bytes, when: datetime
) -> dict[str, Any]:
    return {
        "type": CHECKPOINT_TYPE,
        "version": 1,
        "station": station,
        "key": key.fingerprint,
        "alg": SIG_ALG,
        "tree_size": tree_size,
        "root_sha256": root_hash.hex(),
        "time": iso_utc(when),
    }


def connect(target: Path | str | sqlite3.Connection) -> sqlite3.Connection:
    """A connection to the station index with the schema migrated (ours included)."""
    try:
        conn = sqlitedb.open_connection(target)
    except sqlite3.Error as exc:
        raise ProofError(f"cannot open index {target}: {exc}") from exc
    Ledger(conn)  # sets WAL + synchronous=FULL and runs every migration, the proof one included
    return conn


class ProofLog:
    """The station's append-only log (tables ``proof_*`` of the index).

    Opened on a path (its own connection beside the Ledger's; WAL lets them share the file) or
    on an existing connection. ``append`` and ``checkpoint`` are serialised by one lock and an
    IMMEDIATE transaction, so a second process appending at the same moment cannot fork the log.
    """

    def __init__(self, target: Path | str | sqlite3.Connection) -> None:
        self._own = not isinstance(target, sqlite3.Connection)
        self.conn = connect(target)
        self._lock = threading.RLock()
        self._leaves: list[bytes] = []  # cache of leaf hashes, extended as the log grows

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> ProofLog:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / INDEX_NAME)

    def close(self) -> None:
        if self._own:
            self.conn.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlitedb.transaction(self.conn, self._lock, ProofError, "proof log write")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self.conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise ProofError(f"proof log read failed: {exc}") from exc

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
        """Every leaf in storage order (by ``seq``) — the raw rows, not trusted to be honest."""
        return [_entry(r) for r in self._query("SELECT * FROM proof_log ORDER BY seq")]

    def append(
        self,
        seq: int,
        *,
        station: str,
        clip_path: str,
        clip_sha256: str,
        manifest: bytes,
        signature: bytes,
        key_fingerprint: str,
    ) -> LogEntry:
        """Add leaf ``seq``; any seq but the next one is refused (it is signed into the body)."""
        entry = LogEntry(
            seq=seq,
            station=station,
            clip_path=clip_path,
            clip_sha256=clip_sha256,
            manifest_sha256=hashlib.sha256(manifest).hexdigest(),
            leaf_hash=merkle.leaf_hash(manifest).hex(),
            manifest=manifest,
            signature=signature,
            key_fingerprint=key_fingerprint,
            created_utc=iso_utc(utc_now()),
        )
        with self._tx() as db:
            size = int(db.execute("SELECT COUNT(*) FROM proof_log").fetchone()[0])
            if seq != size:
                raise ProofError(f"log append out of order: seq {seq}, log size {size}")
            db.execute(
                "INSERT INTO proof_log(seq, station, clip_path, clip_sha256, manifest_sha256,"
                " leaf_hash, manifest, signature, key_fingerprint, created_utc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.seq,
                    entry.station,
                    entry.clip_path,
                    entry.clip_sha256,
                    entry.manifest_sha256,
                    entry.leaf_hash,
                    entry.manifest,
                    entry.signature,
                    entry.key_fingerprint,
                    entry.created_utc,
                ),
            )
        return entry

    def leaf_hashes(self, size: int | None = None) -> list[bytes]:
        """Leaf hashes recomputed from the stored manifest bytes (never the stored column)."""
        with self._lock:
            n = self.size() if size is None else size
            if len(self._leaves) > n or not self._prefix_ok():
                self._leaves = []
            if len(self._leaves) < n:
                rows = self._query(
                    "SELECT manifest FROM proof_log WHERE seq >= ? AND seq < ? ORDER BY seq",
                    (len(self._leaves), n),
                )
                self._leaves.extend(merkle.leaf_hash(bytes(r[0])) for r in rows)
            if len(self._leaves) < n:
                raise ProofError(f"log has fewer than {n} leaves")
            return self._leaves[:n]

    def _prefix_ok(self) -> bool:
        # The cache is only a speed-up: if the last cached leaf changed under us, reload.
        if not self._leaves:
            return True
        rows = self._query("SELECT manifest FROM proof_log WHERE seq = ?", (len(self._leaves) - 1,))
        return bool(rows) and merkle.leaf_hash(bytes(rows[0][0])) == self._leaves[-1]

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self.leaf_hashes(size))

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(seq, self.leaf_hashes(size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return merkle.consistency_proof(old_size, self.leaf_hashes(new_size))

    # ---- checkpoints ----------------------------------------------------------------------

    def checkpoint(self, key: StationKey, station: str) -> Checkpoint | None:
        """Sign and store a checkpoint of the current tree (None while the log is empty)."""
        with self._lock:
            size = self.size()
            if size == 0:
                return None
            body = canonical_json(checkpoint_body(station, key, size, self.root(size), utc_now()))
            sig = key.sign(body)
            with self._tx() as db:
                # ids go on past the archived checkpoints of retired keys: central sync's
                # cursor is a checkpoint id and must never see one twice
                cur = db.execute(
                    "INSERT INTO proof_checkpoints(id, tree_size, root_hash, body, signature,"
                    " created_utc) VALUES (?, ?, ?, ?, ?, ?)",
                    (next_checkpoint_id(db), size, self.root(size).hex(), body, sig,
                     iso_utc(utc_now())),
                )  # fmt: skip
            cp = self.checkpoint_by_id(int(cur.lastrowid or 0))
            assert cp is not None
            log.info("checkpoint %d: tree size %d, root %s", cp.id, size, cp.root_hash[:16])
            return cp

    def checkpoint_by_id(self, cp_id: int) -> Checkpoint | None:
        rows = self._query("SELECT * FROM proof_checkpoints WHERE id = ?", (cp_id,))
        return _checkpoint(rows[0]) if rows else None

    def latest_checkpoint(self) -> Checkpoint | None:
        rows = self._query(
            "SELECT * FROM proof_checkpoints ORDER BY tree_size DESC, id DESC LIMIT 1"
        )
        return _checkpoint(rows[0]) if rows else None

    def checkpoints(self) -> list[Checkpoint]:
        return [_checkpoint(r) for r in self._query("SELECT * FROM proof_checkpoints ORDER BY id")]

    # ---- RFC 3161 timestamp queue ---------------------------------------------------------

    def enqueue_timestamp(self, subject: str, subject_sha256: str, urls: tuple[str, ...]) -> None:
        now = iso_utc(utc_now())
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO proof_timestamps(subject, subject_sha256, tsa_url, status,"
                " next_try_utc, created_utc) VALUES (?, ?, ?, 'pending', ?, ?)",
                [(subject, subject_sha256, url, now, now) for url in urls],
            )

    def due_timestamps(self, now: datetime | None = None, *, limit: int = 50) -> list[TimestampRow]:
        rows = self._query(
            "SELECT * FROM proof_timestamps WHERE status = 'pending' AND next_try_utc <= ?"
            " ORDER BY next_try_utc, id LIMIT ?",
            (iso_utc(now or utc_now()), limit),
        )
        return [_ts(r) for r in rows]

    def pending_count(self) -> int:
        return int(
            self._query("SELECT COUNT(*) FROM proof_timestamps WHERE status = 'pending'")[0][0]
        )

    def store_token(self, row_id: int, token: bytes, gen_time: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE proof_timestamps SET status = 'granted', token = ?, gen_time_utc = ?,"
                " attempts = attempts + 1, last_error = '' WHERE id = ?",
                (token, iso_utc(gen_time), row_id),
            )

    def retry_later(
        self, row_id: int, error: str, delay_s: float, *, give_up: bool = False
    ) -> None:
        when = iso_utc(utc_now() + timedelta(seconds=delay_s))
        with self._tx() as db:
            db.execute(
                "UPDATE proof_timestamps SET status = ?, attempts = attempts + 1,"
                " last_error = ?, next_try_utc = ? WHERE id = ?",
                ("failed" if give_up else "pending", error[:500], when, row_id),
            )

    def timestamps_for(self, subject_sha256: str) -> list[TimestampRow]:
        rows = self._query(
            "SELECT * FROM proof_timestamps WHERE subject_sha256 = ? ORDER BY id",
            (subject_sha256,),
        )
        return [_ts(r) for r in rows]

    # ---- key rotation (station/proof/rotation.py) -----------------------------------------

    def rotations(self) -> list[Rotation]:
        """Every key rotation of this station, oldest first."""
        return [_rotation(r) for r in self._query("SELECT * FROM proof_rotations ORDER BY id")]

    def close_for_rotation(
        self,
        old: StationKey,
        new: StationKey,
        final_body: Callable[[int, bytes], bytes],
        tsa_urls: tuple[str, ...],
    ) -> Rotation:
        """Close the log (`packcam keys rotate`), in one transaction: the final checkpoint
        ``final_body(size, root)`` signed by ``old`` and ``new``, every leaf and checkpoint moved
        to the read-only archive under ``old``'s fingerprint, the rotation statement stored and
        queued for timestamps, the live log emptied for ``new``."""
        with self._lock:
            size = self.size()
            root = self.root(size)
            body = final_body(size, root)
            sig_old, sig_new = old.sign(body), new.sign(body)
            now = iso_utc(utc_now())
            with self._tx() as db:
                if int(db.execute("SELECT COUNT(*) FROM proof_log").fetchone()[0]) != size:
                    raise ProofError("the log grew during the rotation: is the station running?")
                cp_id = next_checkpoint_id(db)
                db.execute(
                    "INSERT INTO proof_archive_log SELECT ?, seq, station, clip_path,"
                    " clip_sha256, manifest_sha256, leaf_hash, manifest, signature,"
                    " key_fingerprint, created_utc FROM proof_log ORDER BY seq",
                    (old.fingerprint,),
                )
                db.execute(
                    "INSERT INTO proof_archive_checkpoints SELECT id, ?, tree_size, root_hash,"
                    " body, signature, created_utc FROM proof_checkpoints ORDER BY id",
                    (old.fingerprint,),
                )
                db.execute(
                    "INSERT INTO proof_archive_checkpoints(id, log_key, tree_size, root_hash,"
                    " body, signature, created_utc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (cp_id, old.fingerprint, size, root.hex(), body, sig_old, now),
                )
                db.execute(
                    "INSERT INTO proof_rotations(old_key, new_key, old_public_pem,"
                    " new_public_pem, checkpoint_id, body, signature_old, signature_new,"
                    " created_utc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (old.fingerprint, new.fingerprint, old.public_pem(), new.public_pem(),
                     cp_id, body, sig_old, sig_new, now),
                )  # fmt: skip
                db.execute("DELETE FROM proof_log")
                db.execute("DELETE FROM proof_checkpoints")
                sha = hashlib.sha256(body).hexdigest()
                db.executemany(
                    "INSERT OR IGNORE INTO proof_timestamps(subject, subject_sha256, tsa_url,"
                    " status, next_try_utc, created_utc)"
                    " VALUES ('checkpoint', ?, ?, 'pending', ?, ?)",
                    [(sha, url, now, now) for url in tsa_urls],
                )
            self._leaves = []
            return self.rotations()[-1]

    def archived(self, key_fingerprint: str) -> ArchivedLog:
        return ArchivedLog(self, key_fingerprint)

    def archived_entries_for_clip(self, sha256: str) -> list[tuple[str, LogEntry]]:
        """(retired key, leaf) of every archived leaf for these clip bytes."""
        rows = self._query(
            "SELECT * FROM proof_archive_log WHERE clip_sha256 = ? ORDER BY rowid", (sha256,)
        )
        return [(r["log_key"], _entry(r)) for r in rows]


def next_checkpoint_id(db: sqlite3.Connection) -> int:
    row = db.execute(
        "SELECT MAX(m) FROM (SELECT MAX(id) AS m FROM proof_checkpoints"
        " UNION ALL SELECT MAX(id) FROM proof_archive_checkpoints)"
    ).fetchone()
    return int(row[0] or 0) + 1


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


class ArchivedLog:
    """The closed log of a retired key (tables ``proof_archive_*``; triggers refuse changes):
    the read side of ``ProofLog`` that export and verification need. Its last checkpoint is
    the final one of the rotation; timestamps are looked up in the live table (tokens for
    the old log may still arrive after the rotation)."""

    def __init__(self, live: ProofLog, key_fingerprint: str) -> None:
        self.live = live
        self.key = key_fingerprint
        self._leaves: list[bytes] | None = None

    def entries(self) -> list[LogEntry]:
        rows = self.live._query(
            "SELECT * FROM proof_archive_log WHERE log_key = ? ORDER BY seq", (self.key,)
        )
        return [_entry(r) for r in rows]

    def size(self) -> int:
        return len(self.leaf_hashes())

    def entries_for_clip(self, sha256: str) -> list[LogEntry]:
        return [e for e in self.entries() if e.clip_sha256 == sha256]

    def leaf_hashes(self, size: int | None = None) -> list[bytes]:
        if self._leaves is None:
            self._leaves = [merkle.leaf_hash(e.manifest) for e in self.entries()]
        n = len(self._leaves) if size is None else size
        if n > len(self._leaves):
            raise ProofError(f"archived log has fewer than {n} leaves")
        return self._leaves[:n]

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self.leaf_hashes(size))

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(seq, self.leaf_hashes(size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return merkle.consistency_proof(old_size, self.leaf_hashes(new_size))

    def checkpoints(self) -> list[Checkpoint]:
        rows = self.live._query(
            "SELECT * FROM proof_archive_checkpoints WHERE log_key = ? ORDER BY id", (self.key,)
        )
        return [_checkpoint(r) for r in rows]

    def latest_checkpoint(self) -> Checkpoint | None:
        cps = self.checkpoints()
        return max(cps, key=lambda c: (c.tree_size, c.id)) if cps else None

    def timestamps_for(self, subject_sha256: str) -> list[TimestampRow]:
        return self.live.timestamps_for(subject_sha256)


def _rotation(r: sqlite3.Row) -> Rotation:
    return Rotation(
        id=r["id"],
        old_key=r["old_key"],
        new_key=r["new_key"],
        old_public_pem=bytes(r["old_public_pem"]),
        new_public_pem=bytes(r["new_public_pem"]),
        checkpoint_id=r["checkpoint_id"],
        body=bytes(r["body"]),
        signature_old=bytes(r["signature_old"]),
        signature_new=bytes(r["signature_new"]),
        created_utc=r["created_utc"],
    )


def _entry(r: sqlite3.Row) -> LogEntry:
    return LogEntry(
        seq=r["seq"],
        station=r["station"],
        clip_path=r["clip_path"],
        clip_sha256=r["clip_sha256"],
        manifest_sha256=r["manifest_sha256"],
        leaf_hash=r["leaf_hash"],
        manifest=bytes(r["manifest"]),
        signature=bytes(r["signature"]),
        key_fingerprint=r["key_fingerprint"],
        created_utc=r["created_utc"],
    )


def _checkpoint(r: sqlite3.Row) -> Checkpoint:
    return Checkpoint(
        id=r["id"],
        tree_size=r["tree_size"],
        root_hash=r["root_hash"],
        body=bytes(r["body"]),
        signature=bytes(r["signature"]),
        created_utc=r["created_utc"],
    )


def _ts(r: sqlite3.Row) -> TimestampRow:
    return TimestampRow(
        id=r["id"],
        subject=r["subject"],
        subject_sha256=r["subject_sha256"],
        tsa_url=r["tsa_url"],
        status=r["status"],
        attempts=r["attempts"],
        next_try_utc=r["next_try_utc"],
        last_error=r["last_error"],
        token=bytes(r["token"]) if r["token"] is not None else None,
        gen_time_utc=r["gen_time_utc"],
    )
