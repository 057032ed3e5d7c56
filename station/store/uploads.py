"""Multipart uploads in progress (table archive_uploads), so a restart resumes them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from station.errors import StationError
from station.store.sqlitedb import Table


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str
    sha256_b64: str
    md5_hex: str


@dataclass
class UploadState:
    key: str
    local_path: str
    size: int
    sha256: str
    upload_id: str
    part_size: int
    parts: dict[int, Part] = field(default_factory=dict)


class UploadJournal(Table):
    """Owner of ``archive_uploads``: every finished part is committed before the next one
    starts, so a restart resumes after the last one. The object store (station/fleet/objstore.py)
    and the archiver use it on their own connection to the index (``open_index``)."""

    error = StationError
    TABLES: ClassVar[tuple[str, ...]] = ("archive_uploads",)
    MIGRATIONS: ClassVar[dict[int, str]] = {
        # resumable multipart uploads (station/fleet/objstore.py).
        3: """
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
    """,
    }

    @staticmethod
    def _now() -> str:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def get(self, key: str) -> UploadState | None:
        r = self._one("SELECT * FROM archive_uploads WHERE key = ?", (key,))
        if r is None:
            return None
        parts = {p[0]: Part(*p) for p in json.loads(r["parts"])}
        return UploadState(
            r["key"], r["local_path"], r["size"], r["sha256"], r["upload_id"], r["part_size"], parts
        )

    def begin(self, st: UploadState) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO archive_uploads(key, local_path, size, sha256, upload_id,"
                " part_size, parts, created_utc, updated_utc)"
                " VALUES (?, ?, ?, ?, ?, ?, '[]', ?, ?)",
                (st.key, st.local_path, st.size, st.sha256, st.upload_id, st.part_size,
                 self._now(), self._now()),
            )  # fmt: skip

    def add_part(self, st: UploadState, part: Part) -> None:
        st.parts[part.number] = part
        ordered = sorted(st.parts.values(), key=lambda p: p.number)
        data = json.dumps([[p.number, p.size, p.etag, p.sha256_b64, p.md5_hex] for p in ordered])
        with self._tx() as db:
            db.execute(
                "UPDATE archive_uploads SET parts = ?, updated_utc = ? WHERE key = ?",
                (data, self._now(), st.key),
            )

    def delete(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM archive_uploads WHERE key = ?", (key,))

    def pending(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.conn.execute("SELECT key FROM archive_uploads")]
