"""Read-only queries against the station's clip index (index.sqlite3) for the site."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from station.errors import LedgerError
from station.ledger import (
    INDEX_NAME,
    ClipRecord,
    Ledger,
    LegalHold,
    WaybillLink,
    clip_from_rows,
)
from web.search import SearchIndex, contains_folded, match_expr
from web.stations import StationStatus

log = logging.getLogger(__name__)

SQLITE_MAX_INT = 2**63 - 1
SEARCH_TIMEOUT_S = 3.0  # a search running longer is stopped (SearchTimeout), not left to run


class SearchTimeout(LedgerError):
    """A search ran past SEARCH_TIMEOUT_S and was interrupted."""


# Upper bound for a prefix range scan: every string starting with q sorts below q + this.
_TOP = "\U0010ffff"


def search_sql(
    q: str,
    start_utc: str | None,
    end_utc: str | None,
    station: str | None,
    limit: int,
    offset: int,
    *,
    mark: str = "?",
    waybill_table: str = "waybills",
    packer: str | None = None,
    kind: str | None = None,
    stations: Sequence[str] | None = None,
) -> tuple[str, list[Any]]:
    """The clip search query and its arguments, for SQLite (``?``) and PostgreSQL (``%s``).

    Prefix matches are index range scans (``x >= q AND x < q || U+10FFFF``), never LIKE,
    so they stay fast at millions of rows and treat %, _ and quotes as plain characters. The
    prefix is tried as typed, in upper and in lower case (scanners send either). ``stations``:
    only clips of these stations (the account's scope, web/scope.py); empty: none.
    """
    where: list[str] = []
    args: list[Any] = []
    if q:
        parts = []
        for variant in dict.fromkeys((q, q.upper(), q.lower())):
            parts.append(
                f"SELECT id FROM clips WHERE order_id >= {mark} AND order_id < {mark}"
                f" UNION SELECT clip_id FROM {waybill_table} WHERE waybill >= {mark}"
                f" AND waybill < {mark}"
            )
            args += [variant, variant + _TOP, variant, variant + _TOP]
        where.append(f"c.id IN ({' UNION '.join(parts)})")
    for cond, value in (
        (f"c.started_utc >= {mark}", start_utc),
        (f"c.started_utc < {mark}", end_utc),
        (f"c.station = {mark}", station),
        (f"c.packer = {mark}", packer),
        (f"c.kind = {mark}", kind),
    ):
        if value:
            where.append(cond)
            args.append(value)
    if stations is not None:
        where.append(station_in(stations, mark))
        args += list(stations)
    sql = "SELECT c.* FROM clips c"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY c.started_utc DESC, c.id DESC LIMIT {mark} OFFSET {mark}"
    return sql, [*args, limit, offset]


def station_in(stations: Sequence[str], mark: str = "?") -> str:
    """``c.station IN (…)`` with one mark per station (``FALSE`` for none)."""
    if not stations:
        return "FALSE"
    return f"c.station IN ({', '.join([mark] * len(stations))})"


# Indexes the site relies on beyond the station's own migration (none needed so far: order,
# waybill, station and start-time lookups are covered by clips_order, waybills_waybill,
# clips_station and clips_started). Kept as the one place to add them, idempotently.
EXTRA_INDEXES: tuple[str, ...] = ()


def ensure_index(data_dir: Path) -> Path:
    """Create the clip index if the station has not run yet, and add the site's extra indexes.

    Creation goes through the station's own Ledger so the schema is exactly the station's.
    """
    path = data_dir / INDEX_NAME
    if not path.exists():
        Ledger.in_data_dir(data_dir).close()
    if EXTRA_INDEXES:
        conn = sqlite3.connect(str(path), timeout=30)
        try:
            for sql in EXTRA_INDEXES:
                conn.execute(sql)
            conn.commit()
        finally:
            conn.close()
    return path


@dataclass(frozen=True)
class Rejection:
    station: str
    text: str
    wall: str
    note: str


def zone_of(zone: str) -> tzinfo:
    """A zone given as PostgreSQL reads it (web/dashboard.py pg_zone): IANA name or "+08:00"."""
    if zone[:1] in "+-" and zone[1:3].isdigit():
        sign = -1 if zone[0] == "-" else 1
        hours, _, minutes = zone[1:].partition(":")
        return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes or 0)))
    return ZoneInfo(zone)


class ClipIndex:
    """Read-only view of index.sqlite3 (``PRAGMA query_only``); one per request or thread.

    ``search``: the site's SearchIndex (web/search.py); its file is attached read-only and
    text searches match anywhere in order IDs and waybills, case-insensitively. Without it
    they are prefix searches.
    """

    def __init__(
        self, target: Path | str | sqlite3.Connection, *, search: SearchIndex | None = None
    ) -> None:
        self.search_index = search
        try:
            if isinstance(target, sqlite3.Connection):
                self.conn = target
            else:
                self.conn = sqlite3.connect(str(target), check_same_thread=False, timeout=10)
            self.conn.row_factory = sqlite3.Row
            if search is not None:
                uri = "file:" + str(search.path.resolve()) + "?mode=ro"
                self.conn.execute("ATTACH DATABASE ? AS s", (uri,))
                self.conn.create_function("contains_ci", 2, contains_folded, deterministic=True)
            self.conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open index {target}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    # ---- records --------------------------------------------------------------------------

    @staticmethod
    def _clip(
        r: sqlite3.Row,
        waybills: Sequence[sqlite3.Row] = (),
        events: Sequence[sqlite3.Row] = (),
    ) -> ClipRecord:
        clip = clip_from_rows(
            r,
            waybills,
            events,
            extra={"started_utc": r["started_utc"], "ended_utc": r["ended_utc"], "tz": r["tz"]},
        )
        if not clip.waybills and r["waybill"]:
            # A row indexed before its waybill links existed: show the clip's own waybill.
            clip = dataclasses.replace(clip, waybills=(WaybillLink(r["waybill"], "", 0.0),))
        return clip

    def _full(self, rows: Sequence[sqlite3.Row]) -> list[ClipRecord]:
        out = []
        for r in rows:
            wb = self.conn.execute(
                "SELECT waybill, carrier, t_clip_s FROM waybills WHERE clip_id = ?"
                " ORDER BY t_clip_s",
                (r["id"],),
            ).fetchall()
            ev = self.conn.execute(
                "SELECT * FROM scan_events WHERE clip_id = ? ORDER BY id", (r["id"],)
            ).fetchall()
            out.append(self._clip(r, wb, ev))
        return out

    def legal_hold(self, order_id: str) -> LegalHold | None:
        """The order's legal hold, or None (also on an index older than the holds table)."""
        try:
            r = self.conn.execute(
                "SELECT * FROM legal_holds WHERE order_id = ?", (order_id,)
            ).fetchone()
        except sqlite3.OperationalError:
            return None
        return LegalHold(r["order_id"], r["held_by"], r["held_utc"], r["note"]) if r else None

    def order(self, order_id: str) -> list[ClipRecord]:
        """Every clip of one order (oldest first) with waybills and scan events; [] if unknown."""
        rows = self.conn.execute(
            "SELECT * FROM clips WHERE order_id = ? ORDER BY started_utc, id", (order_id,)
        ).fetchall()
        return self._full(rows)

    def order_info(self, order_id: str) -> dict[str, Any] | None:
        r = self.conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return dict(r) if r else None

    def clip(self, clip_id: int) -> ClipRecord | None:
        if not 0 < clip_id <= SQLITE_MAX_INT:  # URLs may carry any integer; SQLite stops here
            return None
        r = self.conn.execute("SELECT * FROM clips WHERE id = ?", (clip_id,)).fetchone()
        return self._full([r])[0] if r else None

    # ---- search ---------------------------------------------------------------------------

    def search(
        self,
        q: str = "",
        *,
        start_utc: str | None = None,
        end_utc: str | None = None,
        station: str | None = None,
        limit: int = 50,
        offset: int = 0,
        packer: str | None = None,
        kind: str | None = None,
        stations: Sequence[str] | None = None,
    ) -> list[ClipRecord]:
        """Clips, newest first, whose order ID or a waybill contains ``q`` (2+ characters, any
        case; 1 character: starts with it), packed by ``packer``, of ``kind`` (order or
        return), of one of ``stations`` (when given); SearchTimeout after SEARCH_TIMEOUT_S."""
        deadline = time.monotonic() + SEARCH_TIMEOUT_S
        self.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            rows = self._search_rows(
                q, start_utc, end_utc, station, limit, offset, packer=packer, kind=kind,
                stations=stations,
            )  # fmt: skip
        except sqlite3.OperationalError as exc:
            if "interrupt" in str(exc):
                log.warning("search for %r stopped after %.0f s", q, SEARCH_TIMEOUT_S)
                raise SearchTimeout(f"the search for {q!r} took too long") from exc
            raise
        finally:
            self.conn.set_progress_handler(None, 0)
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        marks = ",".join("?" * len(ids))
        wb: dict[int, list[sqlite3.Row]] = {}
        for w in self.conn.execute(
            f"SELECT clip_id, waybill, carrier, t_clip_s FROM waybills WHERE clip_id IN ({marks})"
            " ORDER BY t_clip_s",
            ids,
        ):
            wb.setdefault(w["clip_id"], []).append(w)
        return [self._clip(r, wb.get(r["id"], ())) for r in rows]

    def _search_rows(
        self,
        q: str,
        start_utc: str | None,
        end_utc: str | None,
        station: str | None,
        limit: int,
        offset: int,
        *,
        packer: str | None = None,
        kind: str | None = None,
        stations: Sequence[str] | None = None,
    ) -> list[sqlite3.Row]:
        m = match_expr(q) if self.search_index is not None and q else None
        if m is None:
            sql, args = search_sql(
                q, start_utc, end_utc, station, limit, offset, packer=packer, kind=kind,
                stations=stations,
            )  # fmt: skip
            return self.conn.execute(sql, args).fetchall()
        assert self.search_index is not None
        table, expr, check = m
        upto = self.search_index.catch_up()
        filters, fargs = "", []
        for cond, value in (
            ("c.started_utc >= ?", start_utc),
            ("c.started_utc < ?", end_utc),
            ("c.station = ?", station),
            ("c.packer = ?", packer),
            ("c.kind = ?", kind),
        ):
            if value:
                filters += " AND " + cond
                fargs.append(value)
        if stations is not None:
            filters += " AND " + station_in(stations)
            fargs += list(stations)
        rows: list[sqlite3.Row] = []
        # Clips newer than the search tables (a first fill still running): scanned directly.
        tail = self.conn.execute(
            "SELECT c.* FROM clips c WHERE c.id > ? AND (instr(lower(c.order_id), ?)"
            " OR EXISTS (SELECT 1 FROM waybills w WHERE w.clip_id = c.id"
            " AND instr(lower(w.waybill), ?)))" + filters + " ORDER BY c.id DESC LIMIT ?",
            (upto, q.lower(), q.lower(), *fargs, offset + limit),
        ).fetchall()
        rows = tail[offset:]
        if len(rows) < limit:
            whole, wargs = "", []
            if check:
                whole = (
                    " AND (contains_ci(c.order_id, ?) OR EXISTS (SELECT 1 FROM waybills w"
                    " WHERE w.clip_id = c.id AND contains_ci(w.waybill, ?)))"
                )
                wargs = [q, q]
            rows += self.conn.execute(
                f"SELECT c.* FROM s.{table} f JOIN clips c ON c.id = f.rowid"
                f" WHERE f.{table} MATCH ? AND f.rowid <= ?{whole}{filters}"
                " ORDER BY f.rowid DESC LIMIT ? OFFSET ?",
                (expr, upto, *wargs, *fargs, limit - len(rows), max(0, offset - len(tail))),
            ).fetchall()
        return rows

    def stations(self) -> list[str]:
        """Distinct station names, by a loose index scan (fast at millions of rows)."""
        rows = self.conn.execute(
            "WITH RECURSIVE s(x) AS (SELECT min(station) FROM clips UNION ALL"
            " SELECT (SELECT min(station) FROM clips WHERE station > s.x) FROM s"
            " WHERE s.x IS NOT NULL) SELECT x FROM s WHERE x IS NOT NULL"
        ).fetchall()
        return [r[0] for r in rows]

    # ---- dashboard ------------------------------------------------------------------------

    def started_between(self, start_utc: str, end_utc: str) -> list[tuple[str, str, int]]:
        """(station, started_at with offset, size) of clips started in [start, end)."""
        rows = self.conn.execute(
            "SELECT station, started_at, size FROM clips WHERE started_utc >= ?"
            " AND started_utc < ?",
            (start_utc, end_utc),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def packer_clips(
        self, start_utc: str, end_utc: str, *, stations: Sequence[str] | None = None
    ) -> list[tuple[str, str, float]]:
        """(packer, started_at with offset, duration_s) of packing clips (not returns) with a
        packer, started in [start, end) (``stations``: only theirs)."""
        only = "" if stations is None else f" AND station IN ({','.join('?' * len(stations))})"
        rows = self.conn.execute(
            "SELECT packer, started_at, duration_s FROM clips WHERE started_utc >= ?"
            " AND started_utc < ? AND packer IS NOT NULL AND kind = 'order'" + only,
            (start_utc, end_utc, *(stations or ())),
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def packer_days(
        self, start_utc: str, end_utc: str, zone: str, *, stations: Sequence[str] | None = None
    ) -> list[tuple[str, str, int, float]]:
        """(packer, local day in ``zone``, orders, median packing seconds) of ``packer_clips``,
        as CentralDB.packer_days answers it (``zone``: an IANA name or a "+08:00" offset)."""
        tz = zone_of(zone)
        per_day: dict[tuple[str, str], list[float]] = {}
        for packer, started_at, duration_s in self.packer_clips(
            start_utc, end_utc, stations=stations
        ):
            day = datetime.fromisoformat(started_at).astimezone(tz).date().isoformat()
            per_day.setdefault((packer, day), []).append(duration_s)
        return [
            (p, d, len(v), float(statistics.median(v))) for (p, d), v in sorted(per_day.items())
        ]

    def station_statuses(self, stale_after_s: float) -> list[StationStatus]:
        """[]: this index has no station registry (a station's site reads its live files)."""
        return []

    def fleet_health(self) -> list[dict[str, Any]]:
        """[]: there is no fleet behind one station's index."""
        return []

    def first_clip_utc(self) -> str | None:
        r = self.conn.execute("SELECT min(started_utc) FROM clips").fetchone()
        return r[0] if r else None

    def last_clip_utc(self, station: str) -> str | None:
        r = self.conn.execute(
            "SELECT max(started_utc) FROM clips WHERE station = ?", (station,)
        ).fetchone()
        return r[0] if r else None

    def recent_rejections(self, limit: int = 10) -> list[Rejection]:
        rows = self.conn.execute(
            "SELECT station, text, wall, note FROM scan_events WHERE kind = 'rejected'"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [Rejection(*r) for r in rows]
