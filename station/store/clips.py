"""The clips index (tables orders, clips, waybills, scan_events): its records and all its SQL."""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from station.errors import LedgerError
from station.store.sqlitedb import Table, from_row, utc_text

# What a seal or control card (or a return label) did when the camera saw it again where it
# lay (a scan event's ``card``): nothing. Its own kind stays; this says it sealed nothing.
LYING_CARD = "lying"

T = TypeVar("T")


@dataclass(frozen=True)
class ScanEventRecord:
    """One scan or pedal press. ``t_clip_s`` is seconds from the clip's first frame; ``card``:
    what a control card is set to do (seal, test, signout, return, repack), ``LYING_CARD`` for
    a card or return label the session ignored as lying where it lay, empty for other kinds."""

    kind: str
    text: str
    source: str
    wall: datetime
    t_clip_s: float | None = None
    note: str = ""
    card: str = ""

    @property
    def is_seal(self) -> bool:
        """Is this a seal (in a clip's timeline: what sealed it)? A seal card, the pedal, or a
        control card set to "seal", not one set to return, sign out or test, nor a card the
        camera saw again where it lay (``LYING_CARD``), which sealed nothing."""
        if self.card == LYING_CARD:
            return False
        return self.kind in ("seal", "pedal") or (self.kind == "control" and self.card == "seal")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["wall"] = self.wall.isoformat(timespec="milliseconds")
        if not self.card:  # as before cards were recorded: event_card reads it back the same
            del d["card"]
        return d


def legacy_card(kind: str, note: str) -> str:
    """The card of a scan event recorded before events named it (index version 10): the
    session logged a control card set to seal with no note, every other card with one."""
    return "seal" if kind == "control" and not note else ""


def event_card(e: dict[str, Any]) -> str:
    """The card of a scan event as JSON (a manifest, a journal, the central index)."""
    if "card" in e:
        return str(e["card"])
    return legacy_card(str(e.get("kind", "")), str(e.get("note", "")))


@dataclass(frozen=True)
class WaybillLink:
    waybill: str
    carrier: str
    t_clip_s: float


# The manifest fields (in ``ClipRecord.extra``) that the index also keeps in columns of their
# own: who packed the clip, its kind and the clips it repacks.
FLOOR_FIELDS = ("kind", "packer", "repack_of", "repack_of_fleet")


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


def recording_order(clips: Iterable[ClipRecord]) -> list[ClipRecord]:
    """``clips`` (an order's, say) in the order they were recorded: each station's in its own
    sequence, the stations' merged by start time (``in_recording_order``). Not by start alone:
    a Pi without a clock can boot on an earlier time (fake-hwclock), so a later clip (a repack,
    the packing a restart resumed) may start before the one it follows. A station's sequence
    is its index's id; on the central index (``extra`` names ``station_id`` and ``local_id``),
    per enrolment (a Pi set up again under the same name counts from 1 again), the station's
    own id."""
    return in_recording_order(
        clips,
        recorder=lambda c: (c.station, int(c.extra.get("station_id") or 0)),
        seq=lambda c: int(c.extra.get("local_id") or c.id or 0),
        start=lambda c: utc_text(c.started_at),
    )


def in_recording_order(
    items: Iterable[T],
    *,
    recorder: Callable[[T], tuple[str, int]],
    seq: Callable[[T], int],
    start: Callable[[T], str],
) -> list[T]:
    """``items`` each station's in its sequence (``recorder``: who recorded it, ``seq``: its
    place there), merged by start (``start``: UTC text as the index stores it): next comes
    the one whose station's next item started first (ties by station). One station's clock
    says nothing about another's order, nor a clock set back about its own."""
    runs: dict[tuple[str, int], list[T]] = {}
    for item in items:
        runs.setdefault(recorder(item), []).append(item)
    heads: list[tuple[str, tuple[str, int], int, list[T]]] = []
    for key, run in runs.items():
        run.sort(key=seq)
        heads.append((start(run[0]), key, 0, run))
    heapq.heapify(heads)
    out: list[T] = []
    while heads:
        _t, key, i, run = heapq.heappop(heads)
        out.append(run[i])
        if i + 1 < len(run):
            heapq.heappush(heads, (start(run[i + 1]), key, i + 1, run))
    return out


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


def _utc(dt: datetime) -> str:
    return utc_text(dt)


def _tzname(dt: datetime) -> str:
    return dt.strftime("%z") or "+0000"


def event_from_row(e: sqlite3.Row) -> ScanEventRecord:
    wall = datetime.fromisoformat(e["wall"])
    keys = e.keys()  # a Row's "in" looks at its values
    if "card" in keys:
        return from_row(ScanEventRecord, e, wall=wall)
    # an index the station has not migrated yet, read by the web site (query_only)
    return from_row(ScanEventRecord, e, wall=wall, card=legacy_card(e["kind"], e["note"]))


def clip_from_rows(
    r: sqlite3.Row,
    waybills: Sequence[sqlite3.Row] = (),
    events: Sequence[sqlite3.Row] = (),
    extra: dict[str, Any] | None = None,
) -> ClipRecord:
    """A ClipRecord from a ``clips`` row, its ``waybills`` rows and its ``scan_events`` rows."""
    return from_row(
        ClipRecord,
        r,
        started_at=datetime.fromisoformat(r["started_at"]),
        ended_at=datetime.fromisoformat(r["ended_at"]),
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


# Upper bound for a prefix range scan: every string starting with q sorts below q + this.
_TOP = "\U0010ffff"


@dataclass(frozen=True)
class ClipSearch:
    """One search of the clip index (every IndexReader's ``search``, web/backends.py): clips
    whose order ID or a waybill contains ``q`` (how: the index's), started in [``start_utc``,
    ``end_utc``), at ``station``, packed by ``packer``, of ``kind`` (order or return), of one
    of ``stations`` (the account's scope, web/scope.py; None: all, empty: none); the page
    ``limit`` clips long after ``offset`` ones, newest first. An empty or None filter is none.
    ``after``: the (started_utc, id) of a clip (``("", 0)``: before the first), for a listing
    without ``q``: the page is the ``limit`` clips after it, oldest first (keyset paging: the
    last page of a year costs what the first does; ``offset`` reads every row before it again)."""

    q: str = ""
    start_utc: str | None = None
    end_utc: str | None = None
    station: str | None = None
    limit: int = 50
    offset: int = 0
    packer: str | None = None
    kind: str | None = None
    stations: Sequence[str] | None = None
    after: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        if self.after is not None and self.q:
            raise ValueError("ClipSearch: after pages a listing, not a search for q")


def search_filters(s: ClipSearch, mark: str = "?") -> tuple[list[str], list[Any]]:
    """The conditions on ``clips c`` of the search's filters (all but ``q``) and their
    arguments, for SQLite (``mark`` ``?``) and PostgreSQL (``%s``, which takes ``stations`` as
    one array)."""
    where: list[str] = []
    args: list[Any] = []
    for cond, value in (
        (f"c.started_utc >= {mark}", s.start_utc),
        (f"c.started_utc < {mark}", s.end_utc),
        (f"c.station = {mark}", s.station),
        (f"c.packer = {mark}", s.packer),
        (f"c.kind = {mark}", s.kind),
    ):
        if value:
            where.append(cond)
            args.append(value)
    if s.stations is not None:
        if mark == "%s":
            where.append("c.station = ANY(%s)")
            args.append(list(s.stations))
        else:
            where.append(station_in(s.stations, mark))
            args += list(s.stations)
    return where, args


def search_sql(
    s: ClipSearch, *, mark: str = "?", waybill_table: str = "waybills"
) -> tuple[str, list[Any]]:
    """The clip search query and its arguments, for SQLite (``?``) and PostgreSQL (``%s``).

    Prefix matches are index range scans (``x >= q AND x < q || U+10FFFF``), never LIKE,
    so they stay fast at millions of rows and treat %, _ and quotes as plain characters. The
    prefix is tried as typed, in upper and in lower case (scanners send either).
    """
    where: list[str] = []
    args: list[Any] = []
    if s.after is not None:
        where.append(f"(c.started_utc, c.id) > ({mark}, {mark})")
        args += list(s.after)
        if s.start_utc and s.after[0] >= s.start_utc:
            # The key bounds the scan from below; with a second lower bound on started_utc,
            # SQLite would scan from the range's start, every earlier page again.
            s = replace(s, start_utc=None)
    if s.q:
        parts = []
        for variant in dict.fromkeys((s.q, s.q.upper(), s.q.lower())):
            parts.append(
                f"SELECT id FROM clips WHERE order_id >= {mark} AND order_id < {mark}"
                f" UNION SELECT clip_id FROM {waybill_table} WHERE waybill >= {mark}"
                f" AND waybill < {mark}"
            )
            args += [variant, variant + _TOP, variant, variant + _TOP]
        where.append(f"c.id IN ({' UNION '.join(parts)})")
    conds, cargs = search_filters(s, mark)
    where += conds
    args += cargs
    sql = "SELECT c.* FROM clips c"
    if where:
        sql += " WHERE " + " AND ".join(where)
    if s.after is not None:
        return sql + f" ORDER BY c.started_utc, c.id LIMIT {mark}", [*args, s.limit]
    sql += f" ORDER BY c.started_utc DESC, c.id DESC LIMIT {mark} OFFSET {mark}"
    return sql, [*args, s.limit, s.offset]


def station_in(stations: Sequence[str], mark: str = "?") -> str:
    """``c.station IN (…)`` with one mark per station (``FALSE`` for none)."""
    if not stations:
        return "FALSE"
    return f"c.station IN ({', '.join([mark] * len(stations))})"


@dataclass(frozen=True)
class FtsMatch:
    """A full-text match against a table of an attached database whose rowids are clip ids
    (the site's search index, web/search.py): ``schema.table MATCH expr`` over rowids up to
    ``upto`` (the search tables are complete to there); ``check``: the match is a candidate
    only, ``contains_ci(column, q)`` (a function the connection defines) decides. ``late``:
    a table of that database whose ``wid`` are rowids of ``waybills`` rows linked after their
    clip was signed (``linked_utc``), perhaps after its text went into ``table``: those
    waybills are matched directly (``contains_ci``)."""

    schema: str
    table: str
    expr: str
    upto: int
    check: bool
    late: str


class ClipTable(Table):
    """Owner of ``orders``, ``clips``, ``waybills`` and ``scan_events``: nobody else writes SQL
    against them (tests/test_index_owners.py). Every finished clip, its archiving and its
    retention deletion are columns of its ``clips`` row.
    """

    error = LedgerError
    TABLES: ClassVar[tuple[str, ...]] = (
        "orders",
        "clips",
        "waybills",
        "scan_events",
        "clip_id_floor",
    )
    MIGRATIONS: ClassVar[dict[int, str]] = {
        1: """
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
        # fleet (station/fleet/archiver.py): when the clip and its proofs were verified in object
        # storage, and the order of archiving (the central sync follows it).
        3: """
    ALTER TABLE clips ADD COLUMN archived_utc TEXT;  -- NULL until verified in the archive
    ALTER TABLE clips ADD COLUMN archive_key TEXT;  -- the clip's object key
    ALTER TABLE clips ADD COLUMN archive_meta TEXT;  -- JSON: manifest, frames, proof keys
    ALTER TABLE clips ADD COLUMN archive_seq INTEGER;  -- order of archiving (central cursor)
    CREATE INDEX clips_unarchived ON clips(id) WHERE archived_utc IS NULL;
    CREATE UNIQUE INDEX clips_archive_seq ON clips(archive_seq) WHERE archive_seq IS NOT NULL;
    """,
        # retention (station/store/retention.py): the row and its hash stay when the file goes.
        4: """
    ALTER TABLE clips ADD COLUMN deleted_utc TEXT;  -- NULL while the file is kept
    ALTER TABLE clips ADD COLUMN deleted_reason TEXT;
    CREATE INDEX clips_kept ON clips(started_utc, id) WHERE deleted_utc IS NULL;
    """,
        # the packing floor (issue 13): who packed a clip, its kind (order | return), and the
        # earlier clips of the same order a repack follows (JSON list of clip ids).
        5: """
    ALTER TABLE clips ADD COLUMN packer TEXT;  -- NULL when no packer was signed in
    ALTER TABLE clips ADD COLUMN kind TEXT NOT NULL DEFAULT 'order';
    ALTER TABLE clips ADD COLUMN repack_of TEXT;  -- NULL, or a JSON list of earlier clip ids
    CREATE INDEX clips_packer ON clips(packer, started_utc);
        """,
        # a repack of an order first recorded at other stations (the central index said so,
        # station/fleet/duplicates.py): JSON list of {"station", "clip_id", "started"}.
        7: """
    ALTER TABLE clips ADD COLUMN repack_of_fleet TEXT;
        """,
        # a waybill read while its clip was open but decoded after the clip was signed (the
        # next order's clip had begun): linked in the index only, not in the signed manifest.
        8: """
    ALTER TABLE waybills ADD COLUMN linked_utc TEXT;  -- NULL: in the clip's signed manifest
        """,
        # A station restored from a backup would give new clips ids the central site already
        # holds (``id`` has no AUTOINCREMENT): the central sync puts the floor above them.
        9: """
    CREATE TABLE clip_id_floor (
        one             INTEGER PRIMARY KEY CHECK (one = 1),
        floor           INTEGER NOT NULL  -- new clips get ids above it
    );
        """,
        # what a control card was set to do (ScanEventRecord.card), recorded, no longer read
        # off an empty note; the rows before are given it by that rule (legacy_card).
        10: """
    ALTER TABLE scan_events ADD COLUMN card TEXT NOT NULL DEFAULT '';
    UPDATE scan_events SET card = 'seal' WHERE kind = 'control' AND note = '';
        """,
    }

    # ---- writes ---------------------------------------------------------------------------

    # the next clip's id: above every row and above the floor (never an id used before)
    _NEXT_ID_SQL = (
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM clips), 0),"
        " COALESCE((SELECT floor FROM clip_id_floor), 0)) + 1"
    )
    _RAISE_FLOOR_SQL = (
        "INSERT INTO clip_id_floor(one, floor) VALUES (1, ?)"
        " ON CONFLICT(one) DO UPDATE SET floor = MAX(floor, excluded.floor)"
    )

    def add_clip(self, clip: ClipRecord) -> int:
        """Index a finished clip with its waybills and events in one transaction; return its id."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO orders(order_id, first_seen_utc, last_clip_utc) VALUES (?, ?, ?)"
                " ON CONFLICT(order_id) DO UPDATE SET last_clip_utc=excluded.last_clip_utc",
                (clip.order_id, _utc(clip.started_at), _utc(clip.started_at)),
            )
            cur = db.execute(
                "INSERT INTO clips(id, order_id, waybill, station, started_at, ended_at,"
                " started_utc, ended_utc, tz, duration_s, frame_count, finish_reason, pre_roll_s,"
                " path, manifest_path, size, sha256, created_utc, packer, kind, repack_of,"
                " repack_of_fleet)"
                f" VALUES (({self._NEXT_ID_SQL}),"
                " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def link_waybill_after_signing(self, clip_id: int, order_id: str, link: WaybillLink) -> None:
        """Link a waybill to an indexed clip whose signed manifest does not name it (a read
        decoded after the clip was signed), marked with the time it was linked."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO waybills(clip_id, order_id, waybill, carrier, t_clip_s,"
                " linked_utc) VALUES (?, ?, ?, ?, ?, ?)",
                (clip_id, order_id, link.waybill, link.carrier, link.t_clip_s,
                 _utc(datetime.now(UTC))),
            )  # fmt: skip

    def log_events(self, station: str, events: Sequence[ScanEventRecord]) -> None:
        """Record scans that belong to no clip (e.g. a seal card shown with no order open),
        in one transaction that returns once synced. The capture thread's go through
        ``Ledger``'s writer thread instead (``Ledger.log_events``): it never waits in SQLite."""
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
            "INSERT INTO scan_events(clip_id, station, kind, text, source, t_clip_s, wall, note,"
            " card) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    e.card,
                )
                for e in events
            ],
        )

    def next_clip_id(self) -> int:
        """The id the next clip will get."""
        row = self._one(self._NEXT_ID_SQL)
        return int(row[0]) if row else 1

    def raise_id_floor(self, floor: int) -> None:
        """New clips get ids above ``floor`` from now on (it never goes down)."""
        with self._tx() as db:
            db.execute(self._RAISE_FLOOR_SQL, (floor,))

    def renumber_clips(self, clip_ids: Iterable[int], *, above: int) -> dict[int, int]:
        """Give these clips new ids above ``above`` and every id used before, in one
        transaction; the floor goes up with them. Returns {old id: new id}.

        For clips the central site refused because it holds their id with another SHA-256
        (this index was restored from a backup): they were never registered, so nothing there
        names them yet. Their waybills, events and the repack lists of other rows follow; a
        row elsewhere that still names an old id (a signed retention deletion) refuses it all.
        """
        moved: dict[int, int] = {}
        with self._tx() as db:
            db.execute("PRAGMA defer_foreign_keys = ON")  # the clip and its rows move together
            db.execute(self._RAISE_FLOOR_SQL, (above,))
            for old in sorted(set(clip_ids)):
                new = int(db.execute(self._NEXT_ID_SQL).fetchone()[0])
                if db.execute("UPDATE clips SET id = ? WHERE id = ?", (new, old)).rowcount:
                    db.execute("UPDATE waybills SET clip_id = ? WHERE clip_id = ?", (new, old))
                    db.execute("UPDATE scan_events SET clip_id = ? WHERE clip_id = ?", (new, old))
                    moved[old] = new
            for cid, text in db.execute(
                "SELECT id, repack_of FROM clips WHERE repack_of IS NOT NULL"
            ).fetchall():
                refs = json.loads(text)
                if any(r in moved for r in refs):
                    db.execute(
                        "UPDATE clips SET repack_of = ? WHERE id = ?",
                        (json.dumps([moved.get(r, r) for r in refs]), cid),
                    )
            bad = db.execute("PRAGMA foreign_key_check").fetchall()
            if bad:  # checked here: a COMMIT refused for a deferred key leaves the tx open
                raise LedgerError(f"cannot renumber clips {sorted(moved)}: still named in {bad}")
        return moved

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

    def unmark_archived(self, clip_id: int) -> bool:
        """Forget that a clip still on disk is archived (its bucket copy is gone or not ours),
        so the archiver sends it again and retention keeps it until then.

        Clears the key, meta and ``archive_seq`` too: archiving it again numbers it anew, so
        the central sync and the bundle parts follow it again. False when it was not marked.
        """
        with self._tx() as db:
            cur = db.execute(
                "UPDATE clips SET archived_utc = NULL, archive_key = NULL, archive_meta = NULL,"
                " archive_seq = NULL"
                " WHERE id = ? AND archived_utc IS NOT NULL AND deleted_utc IS NULL",
                (clip_id,),
            )
        return cur.rowcount > 0

    def unarchived_clips(self, *, after_id: int = 0, limit: int = 100) -> list[ClipRecord]:
        """Clips not yet archived and still on disk, oldest first (by id), after ``after_id``."""
        with self._lock:  # the rows and their waybills and events read as one snapshot
            rows = self._all(
                "SELECT * FROM clips WHERE archived_utc IS NULL AND deleted_utc IS NULL"
                " AND id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            )
            return [self._record(r) for r in rows]

    def archive_backlog(self) -> int:
        """How many indexed clips are not yet archived."""
        return int(
            self._all(
                "SELECT COUNT(*) FROM clips WHERE archived_utc IS NULL AND deleted_utc IS NULL"
            )[0][0]
        )

    def archive_backlog_bytes(self) -> int:
        """The bytes of the indexed clips not yet archived."""
        return int(
            self._all(
                "SELECT COALESCE(SUM(size), 0) FROM clips"
                " WHERE archived_utc IS NULL AND deleted_utc IS NULL"
            )[0][0]
        )

    def archive_state(self, clip_id: int) -> dict[str, Any] | None:
        """``archived_utc``, ``archive_key``, ``archive_meta`` (parsed) and ``archive_seq``."""
        row = self._one(
            "SELECT archived_utc, archive_key, archive_meta, archive_seq FROM clips WHERE id = ?",
            (clip_id,),
        )
        if row is None:
            return None
        d = dict(row)
        d["archive_meta"] = json.loads(d["archive_meta"]) if d["archive_meta"] else None
        return d

    # ---- retention (the holds come from HoldTable: station/store/ledger.py joins the two) -----

    _STORED_SQL = (
        "SELECT id, order_id, path, manifest_path, started_utc, size, sha256, archived_utc,"
        " deleted_utc, kind FROM clips"
    )

    @staticmethod
    def _stored(r: sqlite3.Row, held: Container[str]) -> StoredClip:
        # spelled out, not from_row: retention reads every clip through here, and the generic
        # helper made that sweep 7-17 % slower at 1 M clips
        return StoredClip(
            id=r["id"],
            order_id=r["order_id"],
            path=r["path"],
            manifest_path=r["manifest_path"],
            started_at=datetime.fromisoformat(r["started_utc"]),
            size=r["size"],
            sha256=r["sha256"],
            legal_hold=r["order_id"] in held,
            archived=r["archived_utc"] is not None,
            deleted_utc=r["deleted_utc"],
            kind=r["kind"],
        )

    def stored(self, held: Container[str], *, include_deleted: bool = False) -> list[StoredClip]:
        """Indexed clips, oldest first; only those whose file is kept unless ``include_deleted``;
        ``legal_hold`` set for the orders in ``held``."""
        sql = self._STORED_SQL
        if not include_deleted:
            sql += " WHERE deleted_utc IS NULL"
        rows = self._all(sql + " ORDER BY started_utc, id")
        return [self._stored(r, held) for r in rows]

    def stored_in(
        self, db: sqlite3.Connection, clip_id: int, held: Container[str]
    ) -> StoredClip | None:
        """One clip as retention sees it, read inside the caller's transaction ``db``."""
        r = db.execute(self._STORED_SQL + " WHERE id = ?", (clip_id,)).fetchone()
        return self._stored(r, held) if r else None

    def latest_deleted(self, not_after: datetime) -> tuple[int, datetime] | None:
        """The id and start of the deleted clip dated latest, not after ``not_after``: the
        anchor retention's age starts keep once the clips recorded before them are gone."""
        r = self._one(
            "SELECT id, started_utc FROM clips WHERE deleted_utc IS NOT NULL"
            " AND started_utc <= ? ORDER BY started_utc DESC, id DESC LIMIT 1",
            (utc_text(not_after),),
        )
        return (r["id"], datetime.fromisoformat(r["started_utc"])) if r else None

    @staticmethod
    def set_deleted_in(db: sqlite3.Connection, clip_id: int, when_utc: str, reason: str) -> None:
        """Mark the clip's file deleted by retention, inside the caller's transaction ``db``."""
        db.execute(
            "UPDATE clips SET deleted_utc = ?, deleted_reason = ? WHERE id = ?",
            (when_utc, reason, clip_id),
        )

    def kept_hashes(self, clip_ids: Iterable[int]) -> dict[int, str]:
        """The SHA-256 of each of ``clip_ids`` whose file is kept (indexed, not deleted by
        retention): what the cache sweep asks of the frames it finds, a few hundred at a time."""
        ids = sorted(set(clip_ids))
        out: dict[int, str] = {}
        for i in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            sql = f"SELECT id, sha256 FROM clips WHERE deleted_utc IS NULL AND id IN ({marks})"
            out.update((r["id"], r["sha256"]) for r in self._all(sql, tuple(part)))
        return out

    def clip_paths(self) -> list[str]:
        """The path of every indexed clip, deleted ones included (cheap: no records built)."""
        with self._lock:  # the cursor, not _all: no row objects for a million clips at start-up
            return [r[0] for r in self.conn.execute("SELECT path FROM clips")]

    # ---- reads ----------------------------------------------------------------------------

    def clips(self, order_id: str | None = None, *, limit: int | None = None) -> list[ClipRecord]:
        """Clips in the order they were recorded (``recording_order``: the index's sequence,
        not their starts, which a clock set back puts out of order); only those of
        ``order_id`` when given."""
        sql = "SELECT * FROM clips"
        args: list[Any] = []
        if order_id is not None:
            sql += " WHERE order_id = ?"
            args.append(order_id)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:  # the rows and their waybills and events read as one snapshot
            return recording_order([self._record(r) for r in self._all(sql, args)])

    def order_clip_refs(self, order_id: str) -> list[tuple[int, str]]:
        """(id, sha256) of the clips of ``order_id`` in the order they were recorded (the
        index's sequence): cheap (the order index), for the capture thread's duplicate check
        at each order scan."""
        # on the capture thread's connection: a reader in WAL waits for no writer, and the
        # lock of the other connection is held by the finisher through its commits' fsyncs
        with self.capture_db.lock:
            rows = self.capture_db.conn.execute(
                "SELECT id, sha256 FROM clips WHERE order_id = ? ORDER BY id",
                (order_id,),
            ).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def newest_clip_of(self, order_id: str, since_utc: str) -> int | None:
        """The id of the clip of ``order_id`` recorded last (the index's sequence) of those
        started at or after ``since_utc``."""
        row = self._one(
            "SELECT id FROM clips WHERE order_id = ? AND started_utc >= ? ORDER BY id DESC LIMIT 1",
            (order_id, since_utc),
        )
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
            row = self._one("SELECT * FROM clips WHERE id = ?", (clip_id,))
            return self._record(row) if row else None

    def clip_by_path(self, rel_path: str) -> ClipRecord | None:
        with self._lock:
            row = self._one("SELECT * FROM clips WHERE path = ?", (rel_path,))
            return self._record(row) if row else None

    def recent_orders(self, station: str, limit: int) -> list[tuple[str, tuple[str, ...]]]:
        """The last ``limit`` orders recorded at ``station``, newest first, each with the
        waybills linked to its clips there (the last indexed clips walked back until ``limit``
        orders: cheap however many the index holds): what the packing table may still have
        lying in view when the station starts (session.remembered). Last indexed, not last
        started: a Pi booted on fake-hwclock's saved time records clips that start before
        older ones until NTP steps its clock."""
        with self._lock:
            # NOT INDEXED: walked back by rowid, stopping at ``limit`` orders; by clips_station
            # (station, started_utc) SQLite would sort every row of the station first
            newest = self._first_distinct(
                "SELECT order_id FROM clips NOT INDEXED WHERE station = ? ORDER BY id DESC",
                (station,),
                limit,
            )
            orders: dict[str, list[str]] = {order_id: [] for order_id in newest}
            marks = ",".join("?" * len(orders))
            for order_id, waybill in self.conn.execute(
                "SELECT c.order_id, w.waybill FROM clips c JOIN waybills w ON w.clip_id = c.id"
                f" WHERE c.station = ? AND c.order_id IN ({marks})"
                " ORDER BY c.id DESC, w.t_clip_s",
                (station, *orders),
            ):
                orders[order_id].append(waybill)
        return [(order_id, tuple(dict.fromkeys(w))) for order_id, w in orders.items()]

    def unlinked_waybills(self, station: str, limit: int) -> list[str]:
        """The last ``limit`` waybills read at ``station`` with no clip open (its scan events
        of no clip) and linked to no clip, newest read first: labels the packing table may
        still have lying in view when the station starts, no clip's (session.remembered)."""
        with self._lock:
            return self._first_distinct(
                "SELECT e.text FROM scan_events e WHERE e.clip_id IS NULL AND e.station = ?"
                " AND e.kind = 'waybill'"
                " AND NOT EXISTS (SELECT 1 FROM waybills w WHERE w.waybill = e.text)"
                " ORDER BY e.id DESC",
                (station,),
                limit,
            )

    def _first_distinct(self, sql: str, params: tuple[Any, ...], limit: int) -> list[str]:
        """The first ``limit`` distinct values of the first column of ``sql``'s rows, in
        their order, the rows walked only until then. The caller holds the lock."""
        found: dict[str, None] = {}
        rows = self.conn.execute(sql, params)
        try:
            for (value,) in rows:
                if value not in found and len(found) >= limit:
                    break
                found.setdefault(value)
        finally:
            rows.close()
        return list(found)

    def unarchived_with_archived_order(self, clip_id: int) -> str | None:
        """The order of clip ``clip_id`` if the archiver never sent the clip and the order has
        an archived clip (signed parts in the bucket, which may still list this one); else
        None."""
        row = self._one(
            "SELECT c.order_id FROM clips c WHERE c.id = ? AND c.archived_utc IS NULL AND EXISTS"
            " (SELECT 1 FROM clips o WHERE o.order_id = c.order_id AND o.archived_utc IS NOT NULL)",
            (clip_id,),
        )
        return str(row[0]) if row is not None else None

    def newest_clip_at(self, station: str) -> ClipRecord | None:
        """The clip indexed last at ``station`` (None: none): how the station last stopped
        (a clip ended "interrupted": while it recorded). Not the last started, by a clock
        that may have stepped back since (recent_orders)."""
        with self._lock:
            row = self._one(
                # the last row by rowid, not a sort of the station's rows (recent_orders)
                "SELECT * FROM clips NOT INDEXED WHERE station = ? ORDER BY id DESC LIMIT 1",
                (station,),
            )
            return self._record(row) if row else None

    def newest_unattached_event(self, station: str) -> ScanEventRecord | None:
        """The scan or press logged last at ``station`` with no clip open (None: none)."""
        row = self._one(
            "SELECT * FROM scan_events WHERE station = ? AND clip_id IS NULL"
            " ORDER BY id DESC LIMIT 1",
            (station,),
        )
        return event_from_row(row) if row else None

    def logged_since(self, station: str, clip_id: int) -> bool | None:
        """Was a scan or press logged at ``station`` with no clip open after clip ``clip_id``
        was indexed? In the index's own sequence (a clip's events are written with it), not
        by their stamps: a clock set back stamps them before it. None: the clip has no
        events to place it by."""
        with self._lock:
            row = self._one("SELECT MAX(id) AS last FROM scan_events WHERE clip_id = ?", (clip_id,))
            if row is None or row["last"] is None:
                return None
            return (
                self._one(
                    "SELECT 1 FROM scan_events WHERE station = ? AND clip_id IS NULL AND id > ?"
                    " LIMIT 1",
                    (station, row["last"]),
                )
                is not None
            )

    def unattached_events(self) -> list[ScanEventRecord]:
        rows = self._all("SELECT * FROM scan_events WHERE clip_id IS NULL ORDER BY id")
        return [event_from_row(r) for r in rows]

    def _record(self, r: sqlite3.Row) -> ClipRecord:
        return clip_from_rows(r, self.waybill_rows(r["id"]), self.event_rows(r["id"]))

    # ---- followers of the index (central sync, archiver) ----------------------------------

    def sync_rows(self, after: int, limit: int, *, archived: bool) -> list[dict[str, Any]]:
        """Up to ``limit`` clips past a follower's cursor: by ``id`` (every clip) or, with
        ``archived``, by ``archive_seq`` (the archived ones, in the order they were archived).
        Each: id, archived_utc, archive_key, archive_meta (parsed JSON or None), archive_seq."""
        where, order = (
            ("archive_seq IS NOT NULL AND archive_seq", "archive_seq") if archived else ("id", "id")
        )
        rows = self._all(
            "SELECT id, archived_utc, archive_key, archive_meta, archive_seq FROM clips"
            f" WHERE {where} > ? ORDER BY {order} LIMIT ?",
            (after, limit),
        )
        out = []
        for r in rows:
            d = dict(r)
            d["archive_meta"] = json.loads(d["archive_meta"]) if d["archive_meta"] else None
            out.append(d)
        return out

    def archived_after(self, archive_seq: int) -> list[tuple[int, str, str]]:
        """(archive_seq, order_id, sha256) of the clips archived after ``archive_seq``, in
        archiving order."""
        rows = self._all(
            "SELECT archive_seq, order_id, sha256 FROM clips WHERE archive_seq > ?"
            " ORDER BY archive_seq",
            (archive_seq,),
        )
        return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def last_started_utc(self) -> str | None:
        """The newest clip's start (UTC text), None on an empty index."""
        row = self._one("SELECT MAX(started_utc) FROM clips")
        return row[0] if row else None

    def recent_size_and_duration(self, count: int) -> tuple[int | None, float | None]:
        """Total bytes and seconds of the newest ``count`` clips (None, None when empty)."""
        row = self._one(
            "SELECT SUM(size), SUM(duration_s) FROM (SELECT size, duration_s FROM clips"
            " ORDER BY id DESC LIMIT ?)",
            (count,),
        )
        return (row[0], row[1]) if row else (None, None)

    # ---- audit (station/proof/verify.py): raw rows, compared column by column with the
    # signed manifests, so nothing is normalised on the way ---------------------------------

    def raw_rows(self) -> list[sqlite3.Row]:
        return self._all("SELECT * FROM clips ORDER BY id")

    def raw_row_by_sha256(self, digest: str) -> sqlite3.Row | None:
        """The newest row of the clip with these bytes."""
        row = self._one("SELECT * FROM clips WHERE sha256 = ? ORDER BY id DESC LIMIT 1", (digest,))
        return row

    def rows_overlapping(self, start: datetime, end: datetime) -> list[sqlite3.Row]:
        """The rows of clips that share any time with ``start``-``end`` (aware), by start."""
        return self._all(
            "SELECT * FROM clips WHERE started_utc < ? AND ended_utc > ? ORDER BY started_utc, id",
            (_utc(end), _utc(start)),
        )

    def waybill_rows(self, clip_id: int) -> list[sqlite3.Row]:
        """The clip's waybills; ``linked_utc`` is not NULL for those linked after it was signed."""
        return self._all(
            "SELECT waybill, carrier, t_clip_s, linked_utc FROM waybills WHERE clip_id = ?"
            " ORDER BY t_clip_s",
            (clip_id,),
        )

    def event_rows(self, clip_id: int) -> list[sqlite3.Row]:
        return self._all("SELECT * FROM scan_events WHERE clip_id = ? ORDER BY id", (clip_id,))

    # ---- the web site's reads (web/index.py, on a read-only connection) ---------------------

    def raw_row(self, clip_id: int) -> sqlite3.Row | None:
        row = self._one("SELECT * FROM clips WHERE id = ?", (clip_id,))
        return row

    def raw_rows_of_order(self, order_id: str) -> list[sqlite3.Row]:
        """The rows of one order's clips in the index's sequence (the order recorded)."""
        return self._all("SELECT * FROM clips WHERE order_id = ? ORDER BY id", (order_id,))

    def order_row(self, order_id: str) -> dict[str, Any] | None:
        """The order's row in ``orders`` (first seen, last clip), None if unknown."""
        r = self._one("SELECT * FROM orders WHERE order_id = ?", (order_id,))
        return dict(r) if r else None

    def waybill_rows_of(self, clip_ids: Sequence[int]) -> dict[int, list[sqlite3.Row]]:
        """clip id -> its waybill rows (waybill, carrier, t_clip_s, linked_utc), for many
        clips at once."""
        out: dict[int, list[sqlite3.Row]] = {}
        if not clip_ids:
            return out
        marks = ",".join("?" * len(clip_ids))
        with self._lock:
            for w in self.conn.execute(
                f"SELECT clip_id, waybill, carrier, t_clip_s, linked_utc FROM waybills"
                f" WHERE clip_id IN ({marks}) ORDER BY t_clip_s",
                list(clip_ids),
            ):
                out.setdefault(w["clip_id"], []).append(w)
        return out

    def search_rows(self, s: ClipSearch, fts: FtsMatch | None = None) -> list[sqlite3.Row]:
        """Clip rows, newest first: see ``search_sql`` (prefix matches); with ``fts``, ``q``
        is matched anywhere through the attached full-text tables, and the clips newer than
        those tables (``id > fts.upto``) are scanned directly."""
        if fts is None:
            sql, args = search_sql(s)
            return self._all(sql, args)
        conds, fargs = search_filters(s)
        filters = "".join(" AND " + c for c in conds)
        q, limit, offset = s.q, s.limit, s.offset
        with self._lock:
            # Clips newer than the search tables (a first fill still running): scanned directly.
            tail = self.conn.execute(
                "SELECT c.* FROM clips c WHERE c.id > ? AND (instr(lower(c.order_id), ?)"
                " OR EXISTS (SELECT 1 FROM waybills w WHERE w.clip_id = c.id"
                " AND instr(lower(w.waybill), ?)))" + filters + " ORDER BY c.id DESC LIMIT ?",
                (fts.upto, q.lower(), q.lower(), *fargs, offset + limit),
            ).fetchall()
            rows: list[sqlite3.Row] = tail[offset:]
            if len(rows) < limit:
                whole, wargs = "", []
                if fts.check:
                    whole = (
                        " AND (contains_ci(c.order_id, ?) OR EXISTS (SELECT 1 FROM waybills w"
                        " WHERE w.clip_id = c.id AND contains_ci(w.waybill, ?)))"
                    )
                    wargs = [q, q]
                # Waybills linked after their clip's text was indexed: matched directly (few).
                # Driven from that small table (CROSS JOIN fixes SQLite's join order): left to
                # the planner, it ran contains_ci over every waybill of the index.
                late = self.conn.execute(
                    f"SELECT DISTINCT c.* FROM {fts.schema}.{fts.late} l"
                    " CROSS JOIN waybills w ON w.rowid = l.wid CROSS JOIN clips c"
                    " ON c.id = w.clip_id"
                    f" WHERE c.id <= ? AND contains_ci(w.waybill, ?){filters} ORDER BY c.id DESC",
                    (fts.upto, q, *fargs),
                ).fetchall()
                need, skip = limit - len(rows), max(0, offset - len(tail))
                f = f"{fts.schema}.{fts.table}"
                found = self.conn.execute(
                    f"SELECT c.* FROM {f} f JOIN clips c ON c.id = f.rowid"
                    f" WHERE f.{fts.table} MATCH ? AND f.rowid <= ?{whole}{filters}"
                    " ORDER BY f.rowid DESC LIMIT ? OFFSET ?",
                    (fts.expr, fts.upto, *wargs, *fargs,
                     need + skip if late else need, 0 if late else skip),
                ).fetchall()  # fmt: skip
                if late:  # the page is cut from both, merged newest first, each clip once
                    merged = {r["id"]: r for r in [*late, *found]}
                    found = [merged[i] for i in sorted(merged, reverse=True)][skip : skip + need]
                rows += found
        return rows

    def station_names(self) -> list[str]:
        """Distinct station names, by a loose index scan (fast at millions of rows)."""
        rows = self._all(
            "WITH RECURSIVE s(x) AS (SELECT min(station) FROM clips UNION ALL"
            " SELECT (SELECT min(station) FROM clips WHERE station > s.x) FROM s"
            " WHERE s.x IS NOT NULL) SELECT x FROM s WHERE x IS NOT NULL"
        )
        return [r[0] for r in rows]

    def started_between(self, start_utc: str, end_utc: str) -> list[tuple[str, str, int]]:
        """(station, started_at with offset, size) of clips started in [start, end)."""
        rows = self._all(
            "SELECT station, started_at, size FROM clips WHERE started_utc >= ?"
            " AND started_utc < ?",
            (start_utc, end_utc),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def packer_clips(
        self, start_utc: str, end_utc: str, stations: Sequence[str] | None = None
    ) -> list[tuple[str, str, float]]:
        """(packer, started_at with offset, duration_s) of packing clips (not returns) with a
        packer, started in [start, end) (``stations``: only theirs)."""
        only = "" if stations is None else f" AND station IN ({','.join('?' * len(stations))})"
        rows = self._all(
            "SELECT packer, started_at, duration_s FROM clips WHERE started_utc >= ?"
            " AND started_utc < ? AND packer IS NOT NULL AND kind = 'order'" + only,
            (start_utc, end_utc, *(stations or ())),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def first_started_utc(self) -> str | None:
        r = self._one("SELECT min(started_utc) FROM clips")
        return r[0] if r else None

    def last_started_utc_at(self, station: str) -> str | None:
        r = self._one("SELECT max(started_utc) FROM clips WHERE station = ?", (station,))
        return r[0] if r else None

    def recent_rejections(self, limit: int) -> list[tuple[str, str, str, str]]:
        """(station, text, wall, note) of the newest rejected scans."""
        rows = self._all(
            "SELECT station, text, wall, note FROM scan_events WHERE kind = 'rejected'"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # ---- the site's search index fill (web/search.py) ---------------------------------------
    # Used on the search database's connection with this index attached: the unqualified
    # names resolve to the attached index, the search database having no such tables.

    def max_id(self) -> int:
        return int(self._all("SELECT max(id) FROM clips")[0][0] or 0)

    def count_after(self, clip_id: int) -> int:
        return int(self._all("SELECT count(*) FROM clips WHERE id > ?", (clip_id,))[0][0])

    def waybills_linked_late(
        self, after: int, limit: int = -1
    ) -> tuple[int, list[tuple[int, int]]]:
        """(the ``waybills`` rowid read up to, (rowid, clip id) of the rows after ``after``
        linked after their clip was signed, at most ``limit``): for the followers that took
        the clip before its waybill was linked (the site's search index, the central sync).
        Rows are only ever added, so rowids grow: a rowid range scan finds every new one."""
        top = int(self._all("SELECT max(rowid) FROM waybills")[0][0] or 0)
        rows = self._all(
            "SELECT rowid, clip_id FROM waybills WHERE rowid > ? AND rowid <= ?"
            " AND linked_utc IS NOT NULL ORDER BY rowid LIMIT ?",
            (after, top, limit),
        )
        if 0 <= limit == len(rows) and rows:
            top = int(rows[-1][0])  # the rest next time
        return top, [(int(r[0]), int(r[1])) for r in rows]

    def search_texts(self, after: int, upto: int, limit: int) -> list[tuple[int, str]]:
        """(id, order ID and each waybill on its own line) of the clips after ``after`` up to
        ``upto``, by id, at most ``limit``: the text the site's search index holds."""
        rows = self._all(
            "SELECT c.id, c.order_id || coalesce((SELECT group_concat(char(10) ||"
            " w.waybill, '') FROM waybills w WHERE w.clip_id = c.id), '')"
            " FROM clips c WHERE c.id > ? AND c.id <= ? ORDER BY c.id LIMIT ?",
            (after, upto, limit),
        )
        return [(int(r[0]), str(r[1])) for r in rows]
