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
from station.store.clips import ClipSearch, ClipTable, FtsMatch, recording_order
from station.store.holds import HoldTable
from station.store.index import open_in_data_dir
from station.store.ledger import (
    INDEX_NAME,
    ClipRecord,
    LegalHold,
    WaybillLink,
    clip_from_rows,
)
from station.store.sqlitedb import Database, closed_on_error
from web.search import LATE_TABLE, SearchIndex, contains_folded, match_expr
from web.stations import StationStatus

log = logging.getLogger(__name__)

SQLITE_MAX_INT = 2**63 - 1
SEARCH_TIMEOUT_S = 3.0  # a search running longer is stopped (SearchTimeout), not left to run


class SearchTimeout(LedgerError):
    """A search ran past SEARCH_TIMEOUT_S and was interrupted."""


def ensure_index(data_dir: Path) -> Path:
    """Create the clip index if the station has not run yet.

    Creation goes through the station's own opener so the schema is exactly the station's;
    an index the site needs is added there too (a migration of the table's owner).
    """
    path = data_dir / INDEX_NAME
    if not path.exists():
        open_in_data_dir(data_dir).close()
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
            own = not isinstance(target, sqlite3.Connection)
            if isinstance(target, sqlite3.Connection):
                self.conn = target
            else:
                self.conn = sqlite3.connect(str(target), check_same_thread=False, timeout=10)
            with closed_on_error(self.conn, own=own):
                self.conn.row_factory = sqlite3.Row
                if search is not None:
                    uri = "file:" + str(search.path.resolve()) + "?mode=ro"
                    self.conn.execute("ATTACH DATABASE ? AS s", (uri,))
                    self.conn.create_function("contains_ci", 2, contains_folded, deterministic=True)
                self.conn.execute("PRAGMA query_only=ON")
            # the station's table owners, read only here (query_only)
            self.db = Database(self.conn, own=own)
            self.clips = ClipTable(self.db)
            self.holds = HoldTable(self.db)
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
        keys = r.keys()  # a Row's "in" looks at its values
        if "deleted_utc" in keys and r["deleted_utc"]:
            # retention deleted the file and recorded it: not the same as a file gone missing
            clip.extra["deleted_utc"] = r["deleted_utc"]
        late = [w["waybill"] for w in waybills if w["linked_utc"]]
        if late:
            # linked after the clip was signed (a late camera read): the index alone holds
            # them, the signed manifest does not prove them (the pages say so)
            clip.extra["late_waybills"] = late
        if not clip.waybills and r["waybill"]:
            # A row indexed before its waybill links existed: show the clip's own waybill.
            clip = dataclasses.replace(clip, waybills=(WaybillLink(r["waybill"], "", 0.0),))
        return clip

    def _full(self, rows: Sequence[sqlite3.Row]) -> list[ClipRecord]:
        return [
            self._clip(r, self.clips.waybill_rows(r["id"]), self.clips.event_rows(r["id"]))
            for r in rows
        ]

    def legal_hold(self, order_id: str) -> LegalHold | None:
        """The order's legal hold, or None (also on an index older than the holds table)."""
        try:
            return self.holds.legal_hold(order_id)
        except sqlite3.OperationalError:
            return None

    def order(self, order_id: str) -> list[ClipRecord]:
        """Every clip of one order in the order recorded (``recording_order``) with waybills
        and scan events; [] if unknown."""
        return recording_order(self._full(self.clips.raw_rows_of_order(order_id)))

    def order_info(self, order_id: str) -> dict[str, Any] | None:
        return self.clips.order_row(order_id)

    def clip(self, clip_id: int) -> ClipRecord | None:
        if not 0 < clip_id <= SQLITE_MAX_INT:  # URLs may carry any integer; SQLite stops here
            return None
        r = self.clips.raw_row(clip_id)
        return self._full([r])[0] if r else None

    # ---- search ---------------------------------------------------------------------------

    def search(self, s: ClipSearch) -> list[ClipRecord]:
        """Clips, newest first, whose order ID or a waybill contains ``s.q`` (2+ characters,
        any case; 1 character: starts with it) and that pass its filters (ClipSearch);
        SearchTimeout after SEARCH_TIMEOUT_S."""
        q = s.q
        m = match_expr(q) if self.search_index is not None and q else None
        fts = None
        if m is not None:
            assert self.search_index is not None
            upto = self.search_index.catch_up()
            fts = FtsMatch("s", m[0], m[1], upto, m[2], LATE_TABLE)
        deadline = time.monotonic() + SEARCH_TIMEOUT_S
        self.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            rows = self.clips.search_rows(s, fts)
        except sqlite3.OperationalError as exc:
            if "interrupt" in str(exc):
                log.warning("search for %r stopped after %.0f s", q, SEARCH_TIMEOUT_S)
                raise SearchTimeout(f"the search for {q!r} took too long") from exc
            raise
        finally:
            self.conn.set_progress_handler(None, 0)
        wb = self.clips.waybill_rows_of([r["id"] for r in rows])
        return [self._clip(r, wb.get(r["id"], ())) for r in rows]

    def stations(self) -> list[str]:
        """Distinct station names, by a loose index scan (fast at millions of rows)."""
        return self.clips.station_names()

    # ---- dashboard ------------------------------------------------------------------------

    def started_between(self, start_utc: str, end_utc: str) -> list[tuple[str, str, int]]:
        """(station, started_at with offset, size) of clips started in [start, end)."""
        return self.clips.started_between(start_utc, end_utc)

    def packer_clips(
        self, start_utc: str, end_utc: str, *, stations: Sequence[str] | None = None
    ) -> list[tuple[str, str, float]]:
        """(packer, started_at with offset, duration_s) of packing clips (not returns) with a
        packer, started in [start, end) (``stations``: only theirs)."""
        return self.clips.packer_clips(start_utc, end_utc, stations)

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
        return self.clips.first_started_utc()

    def last_clip_utc(self, station: str) -> str | None:
        return self.clips.last_started_utc_at(station)

    def recent_rejections(self, limit: int = 10) -> list[Rejection]:
        return [Rejection(*r) for r in self.clips.recent_rejections(limit)]
