"""Append-only Merkle log of signed manifests in the station's SQLite index, with checkpoints."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from station.errors import LedgerError
from station.proof import ProofError, merkle
from station.proof.canonical import canonical_json
from station.proof.keys import SIG_ALG, StationKey
from station.proof.tables import Checkpoint as Checkpoint
from station.proof.tables import LogEntry as LogEntry
from station.proof.tables import ProofTables
from station.proof.tables import Rotation as Rotation
from station.proof.tables import TimestampRow as TimestampRow
from station.store.index import INDEX_NAME, open_index
from station.store.sqlitedb import Database

log = logging.getLogger(__name__)

CHECKPOINT_TYPE = "packcam-checkpoint"
ZERO_HASH = "0" * 64


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


class MerkleView:
    """The tree hash and proofs of a log, over its ``leaf_hashes`` (the live log, an archived
    one)."""

    def leaf_hashes(self, size: int | None = None) -> list[bytes]:
        raise NotImplementedError

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self.leaf_hashes(size))

    def inclusion_proof(self, seq: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(seq, self.leaf_hashes(size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return merkle.consistency_proof(old_size, self.leaf_hashes(new_size))


class ProofLog(MerkleView):
    """The station's append-only log (tables ``proof_*`` of the index, owned by ProofTables).

    Opened on a path (its own connection beside the Ledger's; WAL lets them share the file), on
    an existing connection, or on an opened index (``open_index``). ``append`` and
    ``checkpoint`` are serialised by one lock and an IMMEDIATE transaction, so a second process
    appending at the same moment cannot fork the log.
    """

    def __init__(self, target: Path | str | sqlite3.Connection | Database) -> None:
        try:
            self.db = target if isinstance(target, Database) else open_index(target)
        except LedgerError as exc:
            raise ProofError(str(exc)) from exc
        self._own = not isinstance(target, Database)
        self.tables = ProofTables(self.db)
        self._lock = self.db.lock
        self._leaves: list[bytes] = []  # cache of leaf hashes, extended as the log grows

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> ProofLog:
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / INDEX_NAME)

    def close(self) -> None:
        if self._own:
            self.db.close()

    # ---- leaves ---------------------------------------------------------------------------

    def size(self) -> int:
        return self.tables.size()

    def last(self) -> LogEntry | None:
        return self.tables.last()

    def entry(self, seq: int) -> LogEntry | None:
        return self.tables.entry(seq)

    def entries_for_clip(self, sha256: str) -> list[LogEntry]:
        return self.tables.entries_for_clip(sha256)

    def entry_for_path(self, clip_path: str) -> LogEntry | None:
        return self.tables.entry_for_path(clip_path)

    def entries(self) -> list[LogEntry]:
        """Every leaf in storage order (by ``seq``) — the raw rows, not trusted to be honest."""
        return self.tables.entries()

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
        self.tables.append(entry)
        return entry

    def leaf_hashes(self, size: int | None = None) -> list[bytes]:
        """Leaf hashes recomputed from the stored manifest bytes (never the stored column)."""
        with self._lock:
            n = self.size() if size is None else size
            if len(self._leaves) > n or not self._prefix_ok():
                self._leaves = []
            if len(self._leaves) < n:
                manifests = self.tables.manifests(len(self._leaves), n)
                self._leaves.extend(merkle.leaf_hash(m) for m in manifests)
            if len(self._leaves) < n:
                raise ProofError(f"log has fewer than {n} leaves")
            return self._leaves[:n]

    def _prefix_ok(self) -> bool:
        # The cache is only a speed-up: if the last cached leaf changed under us, reload.
        if not self._leaves:
            return True
        last = self.tables.manifests(len(self._leaves) - 1, len(self._leaves))
        return bool(last) and merkle.leaf_hash(last[0]) == self._leaves[-1]

    # ---- checkpoints ----------------------------------------------------------------------

    def checkpoint(self, key: StationKey, station: str) -> Checkpoint | None:
        """Sign and store a checkpoint of the current tree (None while the log is empty)."""
        with self._lock:
            size = self.size()
            if size == 0:
                return None
            body = canonical_json(checkpoint_body(station, key, size, self.root(size), utc_now()))
            sig = key.sign(body)
            cp = self.checkpoint_by_id(
                self.tables.add_checkpoint(
                    size, self.root(size).hex(), body, sig, iso_utc(utc_now())
                )
            )
            assert cp is not None
            log.info("checkpoint %d: tree size %d, root %s", cp.id, size, cp.root_hash[:16])
            return cp

    def checkpoint_by_id(self, cp_id: int) -> Checkpoint | None:
        return self.tables.checkpoint_by_id(cp_id)

    def latest_checkpoint(self) -> Checkpoint | None:
        return self.tables.latest_checkpoint()

    def checkpoints(self) -> list[Checkpoint]:
        return self.tables.checkpoints()

    # ---- RFC 3161 timestamp queue ---------------------------------------------------------

    def enqueue_timestamp(self, subject: str, subject_sha256: str, urls: tuple[str, ...]) -> None:
        self.tables.enqueue_timestamps(subject, subject_sha256, urls, iso_utc(utc_now()))

    def due_timestamps(self, now: datetime | None = None, *, limit: int = 50) -> list[TimestampRow]:
        return self.tables.due_timestamps(iso_utc(now or utc_now()), limit)

    def pending_count(self) -> int:
        return self.tables.pending_count()

    def store_token(self, row_id: int, token: bytes, gen_time: datetime) -> None:
        self.tables.store_token(row_id, token, iso_utc(gen_time))

    def retry_later(
        self, row_id: int, error: str, delay_s: float, *, give_up: bool = False
    ) -> None:
        when = iso_utc(utc_now() + timedelta(seconds=delay_s))
        self.tables.retry_later(row_id, error, when, give_up=give_up)

    def timestamps_for(self, subject_sha256: str) -> list[TimestampRow]:
        return self.tables.timestamps_for(subject_sha256)

    # ---- key rotation (station/proof/rotation.py) -----------------------------------------

    def rotations(self) -> list[Rotation]:
        """Every key rotation of this station, oldest first."""
        return self.tables.rotations()

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
            self.tables.close_for_rotation(
                size,
                old.fingerprint,
                new.fingerprint,
                (old.public_pem(), new.public_pem()),
                (root.hex(), body, sig_old, sig_new),
                tsa_urls,
                now,
            )
            self._leaves = []
            return self.rotations()[-1]

    def archived(self, key_fingerprint: str) -> ArchivedLog:
        return ArchivedLog(self, key_fingerprint)

    def archived_entries_for_clip(self, sha256: str) -> list[tuple[str, LogEntry]]:
        """(retired key, leaf) of every archived leaf for these clip bytes."""
        return self.tables.archived_entries_for_clip(sha256)


class ArchivedLog(MerkleView):
    """The closed log of a retired key (tables ``proof_archive_*``; triggers refuse changes):
    the read side of ``ProofLog`` that export and verification need. Its last checkpoint is
    the final one of the rotation; timestamps are looked up in the live table (tokens for
    the old log may still arrive after the rotation)."""

    def __init__(self, live: ProofLog, key_fingerprint: str) -> None:
        self.live = live
        self.key = key_fingerprint
        self._leaves: list[bytes] | None = None

    def entries(self) -> list[LogEntry]:
        return self.live.tables.archived_entries(self.key)

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

    def checkpoints(self) -> list[Checkpoint]:
        return self.live.tables.archived_checkpoints(self.key)

    def latest_checkpoint(self) -> Checkpoint | None:
        cps = self.checkpoints()
        return max(cps, key=lambda c: (c.tree_size, c.id)) if cps else None

    def timestamps_for(self, subject_sha256: str) -> list[TimestampRow]:
        return self.live.timestamps_for(subject_sha256)
