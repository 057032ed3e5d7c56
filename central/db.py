"""The central index in PostgreSQL: station registry, clip registration, and the site's queries."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import secrets
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from central.errors import CentralError, Unavailable
from central.schema import build_search_indexes, migrate
from central.witness import ACCEPT, FORK, NEWEST, ROLLBACK, Judgement, cosign, judge
from station.proof import ProofError
from station.proof.keys import fingerprint, load_public_pem
from station.proof.verify import check_rotation_link
from station.store.clips import (
    ClipSearch,
    event_card,
    in_recording_order,
    recording_order,
    search_filters,
    search_sql,
)
from station.store.ledger import ClipRecord, LegalHold, ScanEventRecord, WaybillLink
from web.fleet import sync_problem
from web.index import SEARCH_TIMEOUT_S, SearchTimeout
from web.stations import StationStatus

log = logging.getLogger(__name__)

# Search (CentralDB._newest_ids). SEARCH_BLOCK_BITS must equal the shift in the indexes of
# central.schema.SEARCH_GRAMS_INDEXES.
SEARCH_BLOCK_BITS = 14  # a block holds 16,384 clip ids
NEWEST_SCAN = 2_000  # newest rows tested one by one before any index
FIRST_BLOCKS = 8  # blocks walked before a piece is tried as a rare one
RARE_ROWS = 5_000  # estimated matches up to which a piece is tried as a rare one first
KEY_CHARS = 7  # the index lookup of a longer piece uses its last 7 characters (4 keys)
RARE_MIN_CHARS = 5  # shorter pieces are rarely rare at scale (and their estimates are noise)
RARE_TRY_S = 0.15  # time a rare piece's lookup in all older rows may take (its own is ~30 ms)

# One recording (one SHA-256) is one row of its station; two are a recording logged twice
# (`clip-logged-twice`, which /verify must see). Past this many the batch is refused: each row
# is a manifest the public /verify page reads from the bucket for an upload of those bytes.
MAX_ROWS_PER_SHA256 = 4


def search_keys(q: str) -> list[str]:
    """The index keys (SEARCH_GRAMS: a text's lower-case pieces of 2-4 characters) that every
    text containing ``q`` (2+ characters, any case) has: ``q`` itself up to 4 characters (one
    exact key), else the pieces of 4 of its last KEY_CHARS characters (an ID's tail varies
    most; its head, ``SF700000…``, is in millions of rows and costs the index most)."""
    # ASCII letters only: ILIKE and lower() on COLLATE "C" fold nothing else
    folded = "".join(chr(ord(ch) + 32) if "A" <= ch <= "Z" else ch for ch in q)
    if len(folded) <= 4:
        return [folded]
    tail = folded[-max(4, KEY_CHARS) :]
    return sorted({tail[i : i + 4] for i in range(len(tail) - 3)})


DSN_ENV = "PACKCAM_CENTRAL_DSN"
_NAME_MAX = 64


def _last_witnessed(cur: Any, station_id: int, log_key: str | None) -> tuple[int, str] | None:
    """(tree size, root) of the newest checkpoint witnessed for a station's log (its key)."""
    cur.execute(
        "SELECT tree_size, root_hash FROM witnessed WHERE station_id = %s"
        " AND log_key IS NOT DISTINCT FROM %s ORDER BY id DESC LIMIT 1",
        (station_id, log_key),
    )
    row = cur.fetchone()
    return (int(row[0]), str(row[1])) if row else None


def resolve_dsn(dsn: str) -> str:
    value = dsn or os.environ.get(DSN_ENV, "")
    if not value:
        raise CentralError(f"no PostgreSQL DSN: set [central] dsn or ${DSN_ENV}")
    return value


def connect(dsn: str, *, autocommit: bool = True, timeout_s: float = 5.0) -> Any:
    """A psycopg 3 connection (autocommit: every read is its own snapshot, no idle-in-tx)."""
    import psycopg

    try:
        return psycopg.connect(
            resolve_dsn(dsn),
            autocommit=autocommit,
            connect_timeout=max(1, round(timeout_s)),
            application_name="packcam",
        )
    except psycopg.OperationalError as exc:
        raise Unavailable(f"cannot connect to the central index: {exc}".strip()) from exc


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _clip_record(
    r: dict[str, Any], waybills: Sequence[tuple[str, str, float, str | None]] = ()
) -> ClipRecord:
    """A ``clips`` row and its waybills (waybill, carrier, t_clip_s, linked_utc) as the pages
    read it; waybills linked after signing are named in ``extra["late_waybills"]``."""
    events = r.get("events") or []
    late = [w for w, _c, _t, linked_utc in waybills if linked_utc]
    return ClipRecord(
        id=int(r["id"]),
        order_id=r["order_id"],
        station=r["station"],
        started_at=datetime.fromisoformat(r["started_at"]),
        ended_at=datetime.fromisoformat(r["ended_at"]),
        duration_s=float(r["duration_s"]),
        frame_count=int(r["frame_count"]),
        finish_reason=r["finish_reason"],
        pre_roll_s=float(r["pre_roll_s"]),
        path=r["path"],
        manifest_path=r["manifest_path"],
        size=int(r["size"]),
        sha256=r["sha256"],
        waybills=tuple(WaybillLink(w, c, t) for w, c, t, _late in waybills)
        or ((WaybillLink(r["waybill"], "", 0.0),) if r.get("waybill") else ()),
        events=tuple(
            ScanEventRecord(
                str(e.get("kind", "")),
                str(e.get("text", "")),
                str(e.get("source", "")),
                datetime.fromisoformat(e["wall"]),
                e.get("t_clip_s"),
                str(e.get("note", "")),
                event_card(e),
            )
            for e in events
            if isinstance(e, dict) and isinstance(e.get("wall"), str)
        ),
        extra={
            "started_utc": r["started_utc"],
            "ended_utc": r["ended_utc"],
            "tz": r["tz"],
            "local_id": int(r["local_id"]),
            "station_id": int(r["station_id"]),  # the enrolment (key) that registered the clip
            "archived_utc": r.get("archived_utc"),
            "archive_key": r.get("archive_key"),
            "archive_meta": r.get("archive_meta"),
            # the packing floor, under the manifest's names (ClipRecord reads them from extra)
            "kind": r.get("kind") or "order",
            **({"packer": r["packer"]} if r.get("packer") else {}),
            **({"repack_of": r["repack_of"]} if r.get("repack_of") else {}),
            **({"repack_of_fleet": r["repack_of_fleet"]} if r.get("repack_of_fleet") else {}),
            **({"late_waybills": late} if late else {}),
        },
    )


def _recorder(r: dict[str, Any]) -> tuple[str, int]:
    return str(r["station"]), int(r["station_id"])


def _local_id(r: dict[str, Any]) -> int:
    return int(r["local_id"])


def _started(r: dict[str, Any]) -> str:
    return str(r["started_utc"])


def floor_fields(c: dict[str, Any]) -> tuple[str | None, str, str | None, str | None]:
    """A registered clip's packing-floor fields as column values: packer, kind, and the
    earlier clips a repack follows (JSON), at its own station and at others. Raises
    CentralError for values no station sends."""
    packer = c.get("packer")
    if packer is not None and (not isinstance(packer, str) or len(packer) > 200):
        raise CentralError(f"clip {c.get('id')}: packer must be a short string")
    kind = c.get("kind") or "order"
    if kind not in ("order", "return"):
        raise CentralError(f"clip {c.get('id')}: kind must be order or return, not {kind!r}")
    local = c.get("repack_of") or []
    fleet = c.get("repack_of_fleet") or []
    if not isinstance(local, list) or not all(type(i) is int for i in local):
        raise CentralError(f"clip {c.get('id')}: repack_of must be a list of clip ids")
    if not isinstance(fleet, list) or not all(
        isinstance(e, dict) and isinstance(e.get("station"), str) and type(e.get("clip_id")) is int
        for e in fleet
    ):
        raise CentralError(f"clip {c.get('id')}: repack_of_fleet must list station and clip_id")
    fleet = [
        {"station": e["station"][:64], "clip_id": e["clip_id"],
         "started": str(e.get("started") or "")[:40]}
        for e in fleet[:50]
    ]  # fmt: skip
    return (
        packer or None,
        kind,
        json.dumps(local[:50]) if local else None,
        json.dumps(fleet, ensure_ascii=False) if fleet else None,
    )


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _iso_time(value: Any) -> bool:
    """An ISO 8601 time, as the pages parse it (a station writes a UTC offset too; a row of
    an older index without one is still taken: refusing it would stall the station's sync)."""
    try:
        return isinstance(value, str) and isinstance(datetime.fromisoformat(value), datetime)
    except ValueError:
        return False


def check_clip(c: dict[str, Any]) -> None:
    """Refuse (CentralError) a clip record no station writes and the site's pages could not
    show: every page listing a row parses its times (one bad row would break the search
    and order pages of everyone who sees its station), and the SHA-256 names the clip's
    objects in the bucket."""
    name = f"clip {c.get('id')}"
    for k in ("started_at", "ended_at", "started_utc", "ended_utc"):
        if not _iso_time(c.get(k)):
            raise CentralError(f"{name}: {k} must be an ISO 8601 time")
    if not isinstance(c.get("sha256"), str) or not _SHA256.fullmatch(c["sha256"]):
        raise CentralError(f"{name}: sha256 must be 64 lower-case hex digits")
    for k in ("size", "frame_count"):
        if type(c.get(k)) is not int or c[k] < 0:
            raise CentralError(f"{name}: {k} must be a whole number, not negative")
    for k in ("duration_s", "pre_roll_s"):
        if type(c.get(k)) not in (int, float) or not math.isfinite(c[k]) or c[k] < 0:
            raise CentralError(f"{name}: {k} must be a finite number of seconds, not negative")
    events = c.get("events") or []
    if not isinstance(events, list) or not all(
        isinstance(e, dict) and (not isinstance(e.get("wall"), str) or _iso_time(e["wall"]))
        for e in events
    ):
        raise CentralError(f"{name}: events must be objects whose wall is an ISO 8601 time")
    waybills = c.get("waybills") or []
    if not isinstance(waybills, list) or not all(
        isinstance(w, dict) and isinstance(w.get("waybill"), str) for w in waybills
    ):
        raise CentralError(f"{name}: waybills must be objects naming a waybill")


HEALTH_MAX = 64_000


def trim_health(v: Any, text: int = 2000, depth: int = 0) -> Any:
    """Pure: a health report with every text cut to ``text`` characters and lists and objects
    to 100 entries, 6 levels deep (what the pages and alerts show of it is shorter still)."""
    if isinstance(v, str):
        return v if len(v) <= text else v[:text] + "…"
    if depth >= 6:
        return None if isinstance(v, dict | list) else v
    if isinstance(v, dict):
        return {str(k)[:200]: trim_health(x, text, depth + 1) for k, x in list(v.items())[:100]}
    if isinstance(v, list):
        return [trim_health(x, text, depth + 1) for x in v[:100]]
    return v


ROTATION_UNSIGNED = "rotation-unsigned"
NO_KEY = "no-key"  # a rotation sent to an enrolment that has no key yet (replace-station)


def _body_key(body: bytes) -> str | None:
    """The station key a checkpoint names (its log), or None."""
    try:
        key = json.loads(body).get("key")
    except (ValueError, AttributeError):
        return None
    return str(key) if key else None


class CentralDB:
    """One PostgreSQL connection with the central index's writes and reads.

    The site keeps one per server thread (like the SQLite handles); the fleet API and the
    CLI open their own. A connection that broke (the server restarted) is replaced on the
    next call; the failing call raises ``Unavailable`` so HTTP callers answer 503 and the
    stations retry later. ``ClipIndex``'s read methods are mirrored so the site's blueprints
    work unchanged in central mode.
    """

    def __init__(self, dsn: str, *, conn: Any | None = None, timeout_s: float = 5.0) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self._conn = conn

    # ---- connection ---------------------------------------------------------------------

    @property
    def conn(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.dsn, timeout_s=self.timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __del__(self) -> None:
        # The site's per-thread handles go away with their server thread: close, don't leak.
        with contextlib.suppress(Exception):
            self.close()

    def _run(self, fn: Any) -> Any:
        """Run ``fn(conn)``; a lost connection becomes Unavailable and is dropped.

        A kept connection that turns out to be dead (PostgreSQL restarted since the last
        call) is replaced and ``fn`` tried once more: its transaction was rolled back, and
        every write here is an idempotent upsert anyway.
        """
        import psycopg

        reused = self._conn is not None and not self._conn.closed
        try:
            return fn(self.conn)
        except psycopg.errors.QueryCanceled as exc:
            # a statement timeout on a live connection (an OperationalError to psycopg):
            # trying again would only double the wait
            raise CentralError(f"central index error: {exc}") from exc
        except psycopg.OperationalError as exc:
            self.close()
            if reused:
                log.info("central index connection lost (%s); reconnecting", exc)
                try:
                    return fn(self.conn)
                except psycopg.OperationalError as again:
                    self.close()
                    raise Unavailable(f"central index unavailable: {again}".strip()) from again
            raise Unavailable(f"central index unavailable: {exc}".strip()) from exc
        except psycopg.Error as exc:
            if self._conn is not None and self._conn.broken:
                self.close()
                raise Unavailable(f"central index unavailable: {exc}".strip()) from exc
            raise CentralError(f"central index error: {exc}") from exc

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        def q(conn: Any) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())

        return list(self._run(q))

    def _one(self, sql: str, args: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self._all(sql, args)
        return rows[0] if rows else None

    def migrate(self) -> int:

        return int(self._run(migrate))

    def build_search_indexes(self) -> list[str]:
        """``central.schema.build_search_indexes``: the next migration's search indexes,
        built without blocking writes (minutes at millions of clips)."""
        return list(self._run(build_search_indexes))

    # ---- station registry ---------------------------------------------------------------

    def add_station(self, name: str) -> str:
        """Create a station and return its enrolment token (shown once, stored hashed)."""
        name = name.strip()
        if not name or len(name) > _NAME_MAX or any(ord(c) < 32 for c in name):
            raise CentralError("station names are 1-64 printable characters")
        token = "pcs_" + secrets.token_urlsafe(32)

        def q(conn: Any) -> None:
            import psycopg

            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO stations(name, token_sha256) VALUES (%s, %s)",
                        (name, hash_token(token)),
                    )
            except psycopg.errors.UniqueViolation as exc:
                raise CentralError(f"station {name!r} already exists") from exc

        self._run(q)
        log.info("station %r added to the central index", name)
        return token

    def rotate_token(self, name: str) -> str:
        token = "pcs_" + secrets.token_urlsafe(32)

        def q(conn: Any) -> int:
            with conn.cursor() as cur:
                cur.execute(
                    "UPDATE stations SET token_sha256 = %s WHERE name = %s AND retired_utc IS NULL",
                    (hash_token(token), name),
                )
                return int(cur.rowcount)

        if not self._run(q):
            raise CentralError(f"no station named {name!r}")
        return token

    def replace_station(self, name: str) -> str:
        """Retire the station ``name`` and enrol a new one under that name; return its token.

        For a replaced Pi (new data dir, new key): the old row keeps its clips, checkpoints,
        public key and witness history, read-only (its token stops working), so its clips stay
        searchable, playable and verifiable against the old key; the new row starts a new log.
        """
        token = "pcs_" + secrets.token_urlsafe(32)

        def q(conn: Any) -> tuple[int, int]:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "UPDATE stations SET retired_utc = now(),"
                    " token_sha256 = 'retired:' || id::text"
                    " WHERE name = %s AND retired_utc IS NULL RETURNING id",
                    (name,),
                )
                old = cur.fetchone()
                if old is None:
                    raise CentralError(f"no station named {name!r}")
                cur.execute(
                    "INSERT INTO stations(name, token_sha256) VALUES (%s, %s) RETURNING id",
                    (name, hash_token(token)),
                )
                new = cur.fetchone()
                cur.execute("UPDATE stations SET replaced_by = %s WHERE id = %s", (new[0], old[0]))
                return int(old[0]), int(new[0])

        old_id, new_id = self._run(q)
        log.warning("station %r replaced: row %d retired, row %d enrolled", name, old_id, new_id)
        return token

    def station_for_token(self, token: str) -> dict[str, Any] | None:
        if not token or len(token) > 200:
            return None
        return self._one(
            "SELECT id, name, key_fingerprint, enrolled_utc IS NOT NULL AS enrolled FROM stations"
            " WHERE token_sha256 = %s AND retired_utc IS NULL",
            (hash_token(token),),
        )

    def hello(
        self, station_id: int, *, key_fingerprint: str, public_key: str, software: str
    ) -> dict[str, int]:
        """Record an enrolment / restart; return what the index already holds of the station
        (for an enrolment made by ``replace-station``, also what the one it replaced holds:
        a station restored from a backup must not send its old clips again)."""
        fp = key_fingerprint[:100]
        if public_key:
            # the key is what every checkpoint and manifest of the station is held to: it must
            # be the key the fingerprint (compared below with the enrolled one) names
            try:
                actual = fingerprint(load_public_pem(public_key.encode()))
            except (ProofError, UnicodeError) as exc:
                raise CentralError(f"public_key: {exc}") from exc
            if actual != fp:
                raise CentralError(
                    f"the public key sent has the fingerprint {actual}, not {fp or 'none'}"
                    " (the key_fingerprint sent with it)"
                )
        if fp:
            self._refuse_a_key_of_another_enrolment(station_id, fp)
        row = self._one(
            "UPDATE stations SET enrolled_utc = COALESCE(enrolled_utc, now()),"
            " last_seen_utc = now(), software = %s,"
            " key_fingerprint = COALESCE(NULLIF(%s, ''), key_fingerprint),"
            " public_key = COALESCE(public_key, NULLIF(%s, ''))"
            " WHERE id = %s AND (key_fingerprint IS NULL OR %s = '' OR key_fingerprint = %s)"
            " RETURNING name",
            (software[:100], fp, public_key[:2000], station_id, fp, fp),
        )
        if row is None:
            known = self._one("SELECT name, key_fingerprint FROM stations WHERE id = %s",
                              (station_id,))  # fmt: skip
            if known is None:
                raise CentralError("unknown station")
            # Never swap the key under a station's name: its clips were signed by the old one.
            self.witness_alarm(
                station_id,
                "key-unrotated",
                f"presented key {fp} without a rotation signed by {known['key_fingerprint']}",
                fp.encode(),
            )
            log.error("station %r presents key %s, enrolled with %s: refused",
                      known["name"], fp, known["key_fingerprint"])  # fmt: skip
            raise CentralError(
                f"station {known['name']!r} is enrolled with key {known['key_fingerprint']};"
                f" this one presents {fp}. A new key is a new station: run `packcam central"
                f" replace-station {known['name']}` and give it the new token"
            )
        return self.held(station_id)

    def held(self, station_id: int) -> dict[str, int]:
        """The high-water marks a station syncs after (``high_water``), with those of the
        enrolment it replaced (``replace-station``), whose clips it does not send again."""
        high = self.high_water(station_id)
        for r in self._all("SELECT id FROM stations WHERE replaced_by = %s", (station_id,)):
            old = self.high_water(int(r["id"]))
            high = {k: max(v, old[k]) for k, v in high.items()}
        return high

    def _refuse_a_key_of_another_enrolment(self, station_id: int, fp: str) -> None:
        """A new enrolment (no key yet) must not take a key another enrolment holds or held:
        the witness keeps one log per key, and a station restored from a backup (or a cloned
        SD card) signs a fork of that log, which the witness would then cosign."""
        other = self._one(
            "SELECT o.id, o.name FROM stations o WHERE o.id <> %s AND (o.key_fingerprint = %s"
            " OR EXISTS (SELECT 1 FROM witness_rotations r WHERE r.station_id = o.id"
            " AND r.old_key = %s)) AND EXISTS (SELECT 1 FROM stations s WHERE s.id = %s"
            " AND s.key_fingerprint IS NULL) ORDER BY o.id DESC LIMIT 1",
            (station_id, fp, fp, station_id),
        )
        if other is not None:
            log.error("a new enrolment (row %d) presents key %s of station %r (row %d): refused",
                      station_id, fp, other["name"], other["id"])  # fmt: skip
            raise CentralError(
                f"key {fp} already signs the log of station {other['name']!r} (enrolment"
                f" {other['id']}); one log per key. A station restored from a backup needs a"
                " key of its own: stop it, run `packcam keys rotate`, start it"
            )

    def high_water(self, station_id: int) -> dict[str, int]:
        """The largest local ids the index holds for the station (the sync restarts there)."""
        r = self._one(
            "SELECT high_clip AS clips, high_archived AS archived, high_checkpoint AS checkpoints"
            " FROM stations WHERE id = %s",
            (station_id,),
        )
        if r is None:
            raise CentralError("unknown station")
        return {k: int(v) for k, v in r.items()}

    def set_health(self, station_id: int, health: dict[str, Any]) -> None:
        """Store the station's health report, long texts cut (``trim_health``): a report is
        never refused for its length (the station would look silent while it runs)."""
        try:
            doc = json.dumps(trim_health(health), allow_nan=False)
            if len(doc) > HEALTH_MAX:  # many long texts: shorter still
                doc = json.dumps(trim_health(health, 100), allow_nan=False)
        except ValueError as exc:
            raise CentralError(f"health report: {exc}") from exc
        if len(doc) > HEALTH_MAX:
            raise CentralError(f"health report: more than {HEALTH_MAX} characters of JSON")

        def q(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.execute(
                    "UPDATE stations SET health = %s::jsonb, health_utc = now(),"
                    " last_seen_utc = now() WHERE id = %s",
                    (doc, station_id),
                )

        self._run(q)

    def stations_table(self, *, retired: bool = False) -> list[dict[str, Any]]:
        """One row per station (with ``retired``, also the replaced ones, after their name)."""
        return self._all(
            "SELECT s.id, s.name, s.created_utc, s.enrolled_utc, s.key_fingerprint, s.software,"
            " s.last_seen_utc, s.health, s.health_utc, s.retired_utc, s.replaced_by,"
            " s.last_clip_utc, s.n_clips AS clips"
            " FROM stations s"
            + ("" if retired else " WHERE s.retired_utc IS NULL")
            + " ORDER BY s.name, s.id"
        )

    def station_statuses(self, stale_after_s: float) -> list[StationStatus]:
        """The registry as the dashboard's StationStatus list (from each station's health)."""
        now = datetime.now(UTC)
        out = []
        for r in self.stations_table():
            h = r["health"] if isinstance(r["health"], dict) else {}
            seen = r["health_utc"] or r["last_seen_utc"]
            age = (now - seen).total_seconds() if seen is not None else None
            state = (
                h["state"] if h.get("state") in {"idle", "recording", "suspended"} else ("stopped")
            )
            backlog = h.get("archive_backlog")
            disk = h.get("disk_free_bytes")
            out.append(
                StationStatus(
                    key=r["name"],
                    station=r["name"],
                    state=state,
                    order_id=h.get("order_id") if isinstance(h.get("order_id"), str) else None,
                    last_error=str(h["last_error"])[:300] if h.get("last_error") else None,
                    updated_utc=seen.strftime("%Y-%m-%dT%H:%M:%SZ") if seen else None,
                    age_s=None if age is None else round(age, 1),
                    silent=age is None or age > stale_after_s,
                    disk_free_bytes=disk if isinstance(disk, int) else None,
                    clock_synced=h.get("clock_synced")
                    if isinstance(h.get("clock_synced"), bool)
                    else None,
                    last_clip_utc=r["last_clip_utc"],
                    archive_backlog=backlog if isinstance(backlog, int) else None,
                    sync_problem=sync_problem(h),
                )
            )
        return out

    def fleet_health(self) -> list[dict[str, Any]]:
        """Every enrolment (retired ones too) with its counters and health report, and its
        witness alarms (fork / rollback), read from maintained columns: no clip is counted."""
        rows = self._all(
            "SELECT s.id, s.name, s.enrolled_utc, s.last_seen_utc, s.health, s.health_utc,"
            " s.retired_utc, s.replaced_by, s.software, s.n_clips, s.last_clip_utc,"
            " s.n_archived, s.archived_bytes, s.last_archived_utc,"
            " COALESCE((SELECT json_agg(json_build_object('kind', a.kind, 'detail', a.detail,"
            "   'tree_size', a.tree_size, 'at_utc', a.at_utc) ORDER BY a.id)"
            "   FROM witness_alarms a WHERE a.station_id = s.id), '[]'::json) AS witness_alarms,"
            " now() AS now_utc"
            " FROM stations s ORDER BY s.retired_utc IS NOT NULL, s.name, s.id"
        )
        return rows

    # ---- registration ---------------------------------------------------------------------

    def register_clips(
        self,
        station_id: int,
        station: str,
        clips: Iterable[dict[str, Any]],
        *,
        conflicts: list[int] | None = None,
    ) -> int:
        """Insert or update clips by (station, local id); idempotent. Returns rows written.

        A clip already registered keeps its data; only its archive fields are filled in
        (and never cleared), and waybills it lacks are added (one linked after the clip was
        signed; none is changed or removed). A different SHA-256 for the same local id is
        refused: the whole batch, or, given a ``conflicts`` list, that clip alone (its local id
        is appended; a station restored from a backup renumbers it and sends it again).
        """
        items = list(clips)

        def q(conn: Any) -> int:
            n = 0
            high: dict[str, Any] = {"n": 0, "clip": 0, "archived": 0, "last": None,
                                    "n_archived": 0, "bytes": 0, "archived_utc": None}  # fmt: skip
            with conn.transaction(), conn.cursor() as cur:
                # One batch of a station at a time (a retry may arrive while the request that
                # timed out is still running): each statement below then sees the other's rows
                # committed, so the "old" archive time is true and no clip is counted twice.
                cur.execute("SELECT id FROM stations WHERE id = %s FOR UPDATE", (station_id,))
                for c in items:
                    if c.get("station") != station:
                        raise CentralError(
                            f"clip {c.get('id')} names station {c.get('station')!r}, "
                            f"but the token is station {station!r}"
                        )
                    check_clip(c)
                    archive_meta = c.get("archive_meta")
                    if archive_meta is not None and c.get("archive_seq") is not None:
                        archive_meta = {**archive_meta, "archive_seq": int(c["archive_seq"])}
                    # "old": the row's archive time before this statement (all parts of one
                    # statement see the same snapshot), so a clip's bytes count once, when it
                    # first becomes archived, however often its batch is sent again.
                    cur.execute(
                        "WITH old AS (SELECT archived_utc FROM clips"
                        " WHERE station_id = %s AND local_id = %s)"
                        " INSERT INTO clips(station_id, local_id, order_id, waybill, station,"
                        " started_at, ended_at, started_utc, ended_utc, tz, duration_s,"
                        " frame_count, finish_reason, pre_roll_s, path, manifest_path, size,"
                        " sha256, events, archived_utc, archive_key, archive_meta,"
                        " packer, kind, repack_of, repack_of_fleet)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                        " %s, %s, %s, %s::jsonb, %s, %s, %s::jsonb, %s, %s, %s::jsonb, %s::jsonb)"
                        " ON CONFLICT (station_id, local_id) DO UPDATE SET"
                        " archived_utc = COALESCE(excluded.archived_utc, clips.archived_utc),"
                        " archive_key = COALESCE(excluded.archive_key, clips.archive_key),"
                        " archive_meta = COALESCE(excluded.archive_meta, clips.archive_meta),"
                        # a late answer of the fleet duplicate check reaches the station's
                        # index after the clip (station/fleet/duplicates.py): filled in, never
                        # cleared
                        " repack_of_fleet = COALESCE(excluded.repack_of_fleet,"
                        " clips.repack_of_fleet)"
                        " WHERE clips.sha256 = excluded.sha256"
                        " RETURNING id, (xmax = 0) AS inserted, clips.size, clips.archived_utc,"
                        " (SELECT archived_utc FROM old) AS was_archived",
                        (
                            station_id,
                            int(c["id"]),
                            station_id,
                            int(c["id"]),
                            str(c["order_id"]),
                            c.get("waybill"),
                            station,
                            c["started_at"],
                            c["ended_at"],
                            c["started_utc"],
                            c["ended_utc"],
                            c["tz"],
                            float(c["duration_s"]),
                            int(c["frame_count"]),
                            str(c["finish_reason"]),
                            float(c["pre_roll_s"]),
                            str(c["path"]),
                            str(c["manifest_path"]),
                            int(c["size"]),
                            str(c["sha256"]),
                            json.dumps(c.get("events") or []),
                            c.get("archived_utc"),
                            c.get("archive_key"),
                            json.dumps(archive_meta) if archive_meta is not None else None,
                            *floor_fields(c),
                        ),
                    )
                    row = cur.fetchone()
                    if row is None and conflicts is not None:
                        conflicts.append(int(c["id"]))
                        continue
                    if row is None:
                        raise CentralError(
                            f"clip {c['id']} of {station!r} is registered with another SHA-256"
                        )
                    clip_id, inserted, size, archived_utc, was_archived = row
                    if archived_utc is not None and (inserted or was_archived is None):
                        high["n_archived"] += 1
                        high["bytes"] += int(size)
                        high["archived_utc"] = max(high["archived_utc"] or "", str(archived_utc))
                    high["clip"] = max(high["clip"], int(c["id"]))
                    if archive_meta is not None and "archive_seq" in archive_meta:
                        high["archived"] = max(high["archived"], int(archive_meta["archive_seq"]))
                    if inserted:
                        high["n"] += 1
                        high["last"] = max(high["last"] or "", str(c["started_utc"]))
                    # Also for a clip held already (a row came back: the same SHA-256): a
                    # waybill the station linked after signing comes with the clip sent again.
                    # Added only: a waybill the clip has keeps its row.
                    # ``linked_utc``: linked after signing, so the pages say it is not proven.
                    for w in c.get("waybills") or []:
                        cur.execute(
                            "INSERT INTO clip_waybills(clip_id, waybill, carrier, t_clip_s,"
                            " linked_utc) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                            (clip_id, w["waybill"], w.get("carrier", ""), w.get("t_clip_s", 0),
                             w.get("linked_utc")),
                        )  # fmt: skip
                    n += 1
                shas = sorted({str(c["sha256"]) for c in items})
                cur.execute(
                    "SELECT sha256, COUNT(*) AS n FROM clips WHERE station_id = %s"
                    " AND sha256 = ANY(%s) GROUP BY sha256 HAVING COUNT(*) > %s",
                    (station_id, shas, MAX_ROWS_PER_SHA256),
                )
                if (over := cur.fetchone()) is not None:  # the whole batch is rolled back
                    ids = [str(c["id"]) for c in items if c["sha256"] == over[0]]
                    raise CentralError(
                        f"clip{'s' if len(ids) > 1 else ''} {', '.join(ids)} of {station!r}:"
                        f" SHA-256 {over[0]} would be registered under {over[1]} clip ids of"
                        f" this station, more than {MAX_ROWS_PER_SHA256}: one recording is one"
                        " clip (two: logged twice)"
                    )
                cur.execute(
                    "UPDATE stations SET n_clips = n_clips + %s,"
                    " high_clip = GREATEST(high_clip, %s),"
                    " high_archived = GREATEST(high_archived, %s),"
                    " last_clip_utc = GREATEST(last_clip_utc, %s),"
                    " n_archived = n_archived + %s, archived_bytes = archived_bytes + %s,"
                    " last_archived_utc = GREATEST(last_archived_utc, %s) WHERE id = %s",
                    (high["n"], high["clip"], high["archived"], high["last"],
                     high["n_archived"], high["bytes"], high["archived_utc"], station_id),
                )  # fmt: skip
            return n

        return int(self._run(q))

    def register_checkpoints(self, station_id: int, checkpoints: Iterable[dict[str, Any]]) -> int:
        items = list(checkpoints)

        def q(conn: Any) -> int:
            with conn.transaction(), conn.cursor() as cur:
                for cp in items:
                    cur.execute(
                        "INSERT INTO checkpoints(station_id, local_id, tree_size, root_hash, body,"
                        " signature, created_utc) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        (station_id, cp["local_id"], cp["tree_size"], cp["root_hash"],
                         cp["body"], cp["signature"], cp["created_utc"]),
                    )  # fmt: skip
                if items:
                    cur.execute(
                        "UPDATE stations SET high_checkpoint = GREATEST(high_checkpoint, %s)"
                        " WHERE id = %s",
                        (max(int(cp["local_id"]) for cp in items), station_id),
                    )
            return len(items)

        return int(self._run(q))

    # ---- the witness (central/witness.py) -------------------------------------------------

    def witness_checkpoint(
        self,
        station_id: int,
        station: str,
        cp: dict[str, Any],
        old_size: int | None,
        proof: list[bytes],
        key: Any,
    ) -> Any:
        """Judge a station's signed checkpoint against the last one witnessed, under a row lock
        on the station (two pushes cannot both extend the same tree): cosign and keep it, or
        record the alarm. Returns the Judgement."""

        def q(conn: Any) -> Any:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT id FROM stations WHERE id = %s FOR UPDATE", (station_id,))
                log_key = _body_key(cp["body"])
                last = _last_witnessed(cur, station_id, log_key)
                size, root = int(cp["tree_size"]), str(cp["root_hash"])
                j = judge(last, size, root, old_size, proof)
                if j.verdict == ACCEPT and last != (size, root):
                    cosigned, cosig = cosign(key, station, cp["body"], size, root)
                    cur.execute(
                        "INSERT INTO witnessed(station_id, tree_size, root_hash, body, signature,"
                        " cosigned, cosignature, log_key)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (station_id, size, root, cp["body"], cp["signature"], cosigned, cosig,
                         log_key),
                    )  # fmt: skip
                elif j.verdict in (ROLLBACK, FORK):
                    cur.execute(
                        "INSERT INTO witness_alarms(station_id, kind, tree_size, root_hash,"
                        " detail, body) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (station_id, j.verdict, size, root, j.reason, cp["body"]),
                    )
                    if cur.rowcount:
                        log.error("WITNESS ALARM %s: station %r: %s", j.verdict, station, j.reason)
                return j

        return self._run(q)

    def witness_latest(self, station_id: int) -> dict[str, Any] | None:
        """The newest cosigned checkpoint of the station's current key's log."""
        return self._one(
            "SELECT w.tree_size, w.root_hash AS root_sha256 FROM witnessed w"
            " JOIN stations s ON s.id = w.station_id WHERE w.station_id = %s"
            " AND w.log_key IS NOT DISTINCT FROM s.key_fingerprint ORDER BY w.id DESC LIMIT 1",
            (station_id,),
        )

    def witness_alarm(self, station_id: int, kind: str, detail: str, body: bytes,
                      size: int = 0, root: str = "") -> None:  # fmt: skip
        def q(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO witness_alarms(station_id, kind, tree_size, root_hash, detail,"
                    " body) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (station_id, kind, size, root, detail[:1000], body),
                )
                if cur.rowcount:
                    log.error("WITNESS ALARM %s: station %d: %s", kind, station_id, detail)

        self._run(q)

    def witness_rotation(
        self,
        station_id: int,
        station: str,
        body: bytes,
        sig_old: bytes,
        sig_new: bytes,
        new_public_key: str,
        old_size: int | None,
        proof: list[bytes],
        key: Any,
    ) -> Any:
        """A station retires its key: the old log's final checkpoint, signed by the enrolled
        key and its successor, must extend the last one witnessed for the old key. Then it is
        cosigned, the station moves to the successor key (its log starts at 0) and the old
        key is refused from then on. Returns the Judgement (a refusal is an alarm)."""

        def q(conn: Any) -> Any:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    "SELECT key_fingerprint, public_key FROM stations WHERE id = %s FOR UPDATE",
                    (station_id,),
                )
                cur_fp, cur_pem = cur.fetchone()
                if cur_pem is None:  # nothing to retire: the station's hello enrols its key
                    return Judgement(NO_KEY, "this enrolment has no key yet: nothing to rotate")
                new_pub = load_public_pem(new_public_key.encode())
                new_fp = fingerprint(new_pub)
                cur.execute(
                    "SELECT body FROM witness_rotations WHERE station_id = %s AND new_key = %s",
                    (station_id, new_fp),
                )
                done = cur.fetchone()
                if done is not None and bytes(done[0]) == body and cur_fp == new_fp:
                    return Judgement(ACCEPT, "rotation already witnessed")
                old_pub = load_public_pem(str(cur_pem).encode()) if cur_pem else None
                rc = (
                    check_rotation_link(body, sig_old, sig_new, old_pub, new_pub)
                    if old_pub is not None
                    else None
                )
                if rc is None:
                    why = f"not a final checkpoint of key {cur_fp} signed by it and {new_fp}"
                    j = Judgement(ROTATION_UNSIGNED, "the rotation statement is " + why)
                else:
                    last = _last_witnessed(cur, station_id, cur_fp)
                    size, root = int(rc["tree_size"]), str(rc["root_sha256"])
                    j = judge(last, size, root, old_size, proof)
                if j.verdict == ACCEPT and rc is not None:
                    cosigned, cosig = cosign(key, station, body, size, root)
                    cur.execute(
                        "INSERT INTO witnessed(station_id, tree_size, root_hash, body, signature,"
                        " cosigned, cosignature, log_key)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (station_id, size, root, body, sig_old, cosigned, cosig, cur_fp),
                    )
                    cur.execute(
                        "INSERT INTO witness_rotations(station_id, old_key, new_key,"
                        " old_public_key, tree_size, root_hash, body, signature_old,"
                        " signature_new) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (station_id, cur_fp, new_fp, cur_pem, size, root, body, sig_old,
                         sig_new),
                    )  # fmt: skip
                    cur.execute(
                        "UPDATE stations SET key_fingerprint = %s, public_key = %s WHERE id = %s",
                        (new_fp, new_public_key, station_id),
                    )
                    log.warning("station %r rotated its key %s -> %s (log closed at %d)",
                                station, cur_fp, new_fp, size)  # fmt: skip
                elif j.verdict in (ROLLBACK, FORK, ROTATION_UNSIGNED):
                    cur.execute(
                        "INSERT INTO witness_alarms(station_id, kind, tree_size, root_hash,"
                        " detail, body) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (station_id, j.verdict, int((rc or {}).get("tree_size") or 0),
                         str((rc or {}).get("root_sha256") or ""), j.reason, body),
                    )  # fmt: skip
                    if cur.rowcount:
                        log.error("WITNESS ALARM %s: station %r: %s", j.verdict, station, j.reason)
                return j

        return self._run(q)

    def retired_keys(self, station_id: int) -> list[dict[str, Any]]:
        return self._all(
            "SELECT old_key, new_key, old_public_key, tree_size, root_hash, body, signature_old,"
            " signature_new, witnessed_utc FROM witness_rotations WHERE station_id = %s"
            " ORDER BY id",
            (station_id,),
        )

    def witness_rotations(self, station: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT r.* FROM witness_rotations r JOIN stations s ON s.id = r.station_id"
            " WHERE s.name = %s ORDER BY r.id",
            (station,),
        )

    def witness_latest_all(self) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT DISTINCT ON (s.name) s.name AS station, w.tree_size,"
            " w.root_hash AS root_sha256, w.witnessed_utc FROM witnessed w"
            " JOIN stations s ON s.id = w.station_id ORDER BY s.name, w.id DESC"
        )
        return [{**r, "witnessed_utc": r["witnessed_utc"].isoformat()} for r in rows]

    def witnessed(
        self, station: str, limit: int = NEWEST, tree_sizes: Sequence[int] = ()
    ) -> list[dict[str, Any]]:
        """The station's newest ``limit`` cosigned checkpoints and, however old, those of
        ``tree_sizes`` (index witnessed_size; all of the station's keys' logs): newest first."""
        newest = self._all(
            "SELECT w.* FROM witnessed w JOIN stations s ON s.id = w.station_id"
            " WHERE s.name = %s ORDER BY w.id DESC LIMIT %s",
            (station, limit),
        )
        if not tree_sizes:
            return newest
        exact = self._all(
            "SELECT w.* FROM witnessed w JOIN stations s ON s.id = w.station_id"
            " WHERE s.name = %s AND w.tree_size = ANY(%s) ORDER BY w.id DESC",
            (station, sorted(set(tree_sizes))),
        )
        rows = {int(r["id"]): r for r in (*newest, *exact)}
        return [rows[i] for i in sorted(rows, reverse=True)]

    def witness_alarms(self, station: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT a.kind, a.detail, a.tree_size, a.at_utc FROM witness_alarms a"
            " JOIN stations s ON s.id = a.station_id WHERE s.name = %s ORDER BY a.id",
            (station,),
        )

    def public_key(self, station_id: int) -> str | None:
        r = self._one("SELECT public_key FROM stations WHERE id = %s", (station_id,))
        return r["public_key"] if r else None

    # ---- the site's reads (ClipIndex's interface) ---------------------------------------

    def _with_waybills(self, rows: list[dict[str, Any]]) -> list[ClipRecord]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        wb: dict[int, list[tuple[str, str, float, str | None]]] = {}
        for w in self._all(
            "SELECT clip_id, waybill, carrier, t_clip_s, linked_utc FROM clip_waybills"
            " WHERE clip_id = ANY(%s) ORDER BY t_clip_s",
            (ids,),
        ):
            wb.setdefault(w["clip_id"], []).append(
                (w["waybill"], w["carrier"], w["t_clip_s"], w["linked_utc"])
            )
        return [_clip_record(r, wb.get(r["id"], ())) for r in rows]

    def order(self, order_id: str) -> list[ClipRecord]:
        """The order's clips in the order they were recorded (``recording_order``: each
        station's by its own sequence, the stations' merged by start), not by start alone."""
        rows = self._all(
            "SELECT * FROM clips WHERE order_id = %s ORDER BY station_id, local_id", (order_id,)
        )
        return recording_order(self._with_waybills(rows))

    def order_info(self, order_id: str) -> dict[str, Any] | None:
        """The starts of the order's first and last clip in the order recorded (as ``order``
        lists them; the station's own ``orders`` row says the same)."""
        rows = self._all(
            "SELECT station, station_id, local_id, started_utc FROM clips WHERE order_id = %s",
            (order_id,),
        )
        if not rows:
            return None
        ordered = in_recording_order(rows, recorder=_recorder, seq=_local_id, start=_started)
        return {
            "order_id": order_id,
            "first_seen_utc": ordered[0]["started_utc"],
            "last_clip_utc": ordered[-1]["started_utc"],
        }

    def legal_hold(self, order_id: str) -> LegalHold | None:
        """None: legal holds are set and kept on the stations (their ledger), not centrally."""
        return None

    def clip(self, clip_id: int) -> ClipRecord | None:
        if not -(2**63) <= clip_id < 2**63:
            return None
        rows = self._all("SELECT * FROM clips WHERE id = %s", (clip_id,))
        found = self._with_waybills(rows)
        return found[0] if found else None

    def archived_clip_keys(self) -> dict[str, int]:
        """The bucket key of every clip a station reported archived, and its registered size
        (for the bucket audit)."""
        return {k: size for k, (size, _sha) in self.archived_clip_digests().items()}

    def archived_clip_digests(self) -> dict[str, tuple[int, str]]:
        """The bucket key of every clip a station reported archived, and its registered size
        and SHA-256 (for the deep bucket audit)."""
        rows = self._all(
            "SELECT archive_key, size, sha256 FROM clips WHERE archive_key IS NOT NULL"
        )
        return {str(r["archive_key"]): (int(r["size"]), str(r["sha256"])) for r in rows}

    def clips_by_sha256(self, sha256: str, limit: int | None = None) -> list[ClipRecord]:
        """The rows of these bytes, oldest first; the first ``limit`` of them when given."""
        return self._with_waybills(
            self._all("SELECT * FROM clips WHERE sha256 = %s ORDER BY id LIMIT %s", (sha256, limit))
        )

    def search(self, s: ClipSearch) -> list[ClipRecord]:
        """Newest first (by clip id); order ID or a waybill containing ``s.q`` in any case (2+
        characters; 1 character: starts with it), and its filters (ClipSearch). SearchTimeout
        after SEARCH_TIMEOUT_S.

        See ``_newest_ids`` for how a piece is looked up at millions of rows.
        """
        q, limit, offset = s.q, s.limit, s.offset
        if len(q) < 2:
            sql, args = search_sql(s, mark="%s", waybill_table="clip_waybills")
            return self._with_waybills(self._timed(q, [(sql, args)])[0])
        conds, fargs = search_filters(s, "%s")
        filters = "".join(" AND " + c for c in conds)
        want = offset + limit
        ids = self._newest_ids(q, filters, fargs, want)
        if not ids:
            return []
        rows = self._all(
            "SELECT * FROM clips WHERE id = ANY(%s) ORDER BY id DESC LIMIT %s OFFSET %s",
            (ids, limit, offset),
        )
        return self._with_waybills(rows)

    def _run_search(self, q: str, fn: Any) -> Any:
        """``self._run(fn)`` for the search of ``q``: a statement cancelled by the search
        timeout becomes SearchTimeout."""
        import psycopg

        try:
            return self._run(fn)
        except CentralError as exc:
            if isinstance(exc.__cause__, psycopg.errors.QueryCanceled):
                log.warning("central search for %r stopped after %.0f s", q, SEARCH_TIMEOUT_S)
                raise SearchTimeout(f"the search for {q!r} took too long") from exc
            raise

    def _newest_ids(self, q: str, filters: str, fargs: list[Any], want: int) -> list[int]:
        """The newest ``want`` clip ids whose order ID or a waybill contains ``q``.

        Two branches (order IDs, waybills), each looked up newest first in steps that go only
        as far as they must: (1) the newest NEWEST_SCAN rows by the primary key, tested with
        ILIKE (a common piece fills its page here); (2) a piece of RARE_MIN_CHARS or more
        that PostgreSQL estimates rare (RARE_ROWS): its few matches in all older rows through
        the (block, [station,] pieces of 2-4 characters) GIN index and a sort, given
        RARE_TRY_S (3x for 8+ characters); (3) otherwise, or if that ran out of time (a piece
        common only in older rows), the next FIRST_BLOCKS blocks of 2**SEARCH_BLOCK_BITS clip
        ids, one block at a time through the same index; (4) the remaining blocks. Ids older
        than the ``want``-th newest found so far (in either branch) are never looked at. A
        piece that matches nothing costs one index probe per block at most.
        """
        import psycopg

        def like(piece: str) -> str:
            return "%" + piece.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"

        pattern = like(q)
        keys = search_keys(q)  # every row is tested with the whole piece too

        class Branch:
            def __init__(self, table: str, col: str, text: str) -> None:
                self.table, self.col = table, col
                self.src = table
                if table != "clips c" and filters:
                    self.src += " JOIN clips c ON c.id = w.clip_id"
                # one clip can have several waybills
                self.distinct = "DISTINCT " if table != "clips c" else ""
                self.indexed, self.iarg = f"packcam_grams({text}) @> %s::text[]", keys
                # text || '': a condition no index serves, so the planner tests rows with it
                self.test = f"({text} || '') ILIKE %s"
                self.found: list[int] = []
                self.edge = 0  # ids above it are done

            def blocks(self, cur: Any, hi: int, lo: int, floor: int) -> None:
                """Blocks hi down to lo (ids from edge down to above floor), newest first."""
                cur.execute(
                    "SELECT m.id FROM generate_series(%s::bigint, %s::bigint, -1)"
                    " WITH ORDINALITY AS g(b, n) CROSS JOIN LATERAL ("
                    f"SELECT {self.distinct}{self.col} AS id FROM {self.src}"
                    f" WHERE ({self.col} >> {SEARCH_BLOCK_BITS}) = g.b"
                    f" AND {self.col} <= %s AND {self.col} > %s"
                    f" AND {self.indexed} AND {self.test}{filters} OFFSET 0) m"
                    " ORDER BY g.n, m.id DESC LIMIT %s",
                    (hi, lo, self.edge, floor, self.iarg, pattern, *fargs, self.missing),
                    prepare=False,
                )
                self.found += [int(r[0]) for r in cur.fetchall()]
                self.edge = max(floor, (lo << SEARCH_BLOCK_BITS) - 1)

            @property
            def missing(self) -> int:
                return want - len(self.found)

        def floor_of(branches: list[Branch]) -> int:
            ids = sorted({i for b in branches for i in b.found}, reverse=True)
            return ids[want - 1] if len(ids) >= want else 0

        # prepare=False everywhere: a prepared (generic) plan knows neither the piece nor the
        # planner settings it runs under
        def settings(cur: Any, timeout_s: float, scans: str) -> None:
            # parallel workers cost more to start than these small lookups take
            cur.execute(
                "SELECT set_config('statement_timeout', %s, true),"
                " set_config('enable_indexscan', %s, true),"
                " set_config('enable_seqscan', %s, true),"
                " set_config('max_parallel_workers_per_gather', '0', true)",
                (f"{int(timeout_s * 1000)}ms", scans, scans),
                prepare=False,
            )

        def run(conn: Any) -> list[int]:
            branches = [
                Branch("clips c", "c.id", "c.order_id"),
                Branch("clip_waybills w", "w.clip_id", "w.waybill"),
            ]
            with conn.transaction(), conn.cursor() as cur:
                settings(cur, SEARCH_TIMEOUT_S, "on")
                # (1), both branches in one statement (each round trip costs on a busy host)
                cur.execute(
                    "SELECT (SELECT max(id) FROM clips), (SELECT max(clip_id) FROM clip_waybills)",
                    prepare=False,
                )
                tops = cur.fetchone()
                for b, top in zip(branches, tops, strict=True):
                    b.edge = max(0, int(top or 0) - NEWEST_SCAN)
                cur.execute(
                    " UNION ALL ".join(
                        f"(SELECT {n}, x.id FROM (SELECT {b.distinct}{b.col} AS id FROM"
                        f" {b.src} WHERE {b.col} > %s AND {b.test}{filters}"
                        f" ORDER BY 1 DESC LIMIT %s) AS x)"
                        for n, b in enumerate(branches)
                    ),
                    [a for b in branches for a in (b.edge, pattern, *fargs, want)],
                    prepare=False,
                )
                for n, i in cur.fetchall():
                    branches[n].found.append(int(i))
                for b in branches:  # (2)
                    floor = floor_of(branches)
                    if b.edge <= floor or b.missing <= 0 or len(q) < RARE_MIN_CHARS:
                        continue
                    # PostgreSQL's estimate (for an unanchored pattern: its length) only
                    # chooses the order of tries; a wrong guess costs RARE_TRY_S or a walk
                    cur.execute(
                        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {b.table} WHERE {b.indexed}",
                        (b.iarg,),
                        prepare=False,
                    )
                    if float(cur.fetchone()[0][0]["Plan"]["Plan Rows"]) > RARE_ROWS:
                        continue
                    try:
                        with conn.transaction():
                            # a long piece's lookup costs more (more keys to intersect)
                            settings(cur, RARE_TRY_S * (3 if len(q) >= 8 else 1), "off")
                            cur.execute(
                                f"SELECT {b.distinct}{b.col} FROM {b.src} WHERE {b.col} <= %s"
                                f" AND {b.col} > %s AND {b.indexed} AND {b.test}{filters}"
                                " ORDER BY 1 DESC LIMIT %s",
                                (b.edge, floor, b.iarg, pattern, *fargs, b.missing),
                                prepare=False,
                            )
                            b.found += [int(r[0]) for r in cur.fetchall()]
                            b.edge = floor
                    except psycopg.errors.QueryCanceled:
                        pass  # many matches in older rows: (3), (4)
                    settings(cur, SEARCH_TIMEOUT_S, "on")
                for b in branches:  # (3)
                    floor = floor_of(branches)
                    if b.edge > floor and b.missing > 0:
                        hi = b.edge >> SEARCH_BLOCK_BITS
                        b.blocks(cur, hi, max(floor >> SEARCH_BLOCK_BITS, hi - FIRST_BLOCKS + 1),
                                 floor)  # fmt: skip
                for b in branches:  # (4)
                    floor = floor_of(branches)
                    if b.edge > floor and b.missing > 0:
                        b.blocks(cur, b.edge >> SEARCH_BLOCK_BITS, floor >> SEARCH_BLOCK_BITS,
                                 floor)  # fmt: skip
            return sorted({i for b in branches for i in b.found}, reverse=True)[:want]

        return list(self._run_search(q, run))

    def _timed(self, q: str, queries: list[tuple[str, list[Any]]]) -> list[list[dict[str, Any]]]:
        """Run read queries in one transaction under a statement timeout."""
        from psycopg.rows import dict_row

        def run(conn: Any) -> list[list[dict[str, Any]]]:
            out = []
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (f"{int(SEARCH_TIMEOUT_S * 1000)}ms",),
                )
                for sql, args in queries:
                    cur.execute(sql, args)
                    out.append(list(cur.fetchall()))
            return out

        return list(self._run_search(q, run))

    def stations(self) -> list[str]:
        return [r["name"] for r in self._all("SELECT DISTINCT name FROM stations ORDER BY name")]

    def order_clips(
        self, order_id: str, limit: int = 20, *, stations: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """The first ``limit`` clips of an order recorded, every station (or those of
        ``stations``), in the order recorded (``order``; the stations' duplicate check,
        station/fleet/duplicates.py): station, its local clip id, start, kind, SHA-256. The
        first ``limit`` of each station's are all the merge can take."""
        only = "" if stations is None else " AND station = ANY(%s)"
        rows = self._all(
            "SELECT station, station_id, local_id, started_utc, started_at, kind, sha256 FROM"
            " (SELECT *, row_number() OVER (PARTITION BY station_id ORDER BY local_id) AS n"
            f"  FROM clips WHERE order_id = %s{only}) c WHERE n <= %s",
            (order_id, *([] if stations is None else [sorted(stations)]), limit),
        )
        ordered = in_recording_order(rows, recorder=_recorder, seq=_local_id, start=_started)
        return [
            {"station": r["station"], "clip_id": r["local_id"], "started": r["started_at"],
             "kind": r["kind"], "sha256": r["sha256"]}
            for r in ordered[:limit]
        ]  # fmt: skip

    def packer_clips(self, start_utc: str, end_utc: str) -> list[tuple[str, str, float]]:
        """(packer, started_at with offset, duration_s) of packing clips (not returns) with a
        packer, started in [start, end): every row (the dashboard asks ``packer_days``)."""
        rows = self._all(
            "SELECT packer, started_at, duration_s FROM clips WHERE started_utc >= %s"
            " AND started_utc < %s AND packer IS NOT NULL AND kind = 'order'"
            " ORDER BY started_utc, id",
            (start_utc, end_utc),
        )
        return [(r["packer"], r["started_at"], float(r["duration_s"])) for r in rows]

    def packer_days(
        self, start_utc: str, end_utc: str, zone: str, *, stations: Sequence[str] | None = None
    ) -> list[tuple[str, str, int, float]]:
        """(packer, local day, orders, median packing seconds) of packing clips (not returns)
        with a packer started in [start, end), days in ``zone`` (an IANA name, or a fixed
        offset such as "+08:00"): computed by PostgreSQL, so the dashboard reads a few rows,
        not every clip. ``stations``: only theirs (an account's scope, web/scope.py)."""
        fixed = zone[:1] in "+-" and zone[1:3].isdigit()
        at = "%s::interval" if fixed else "%s"
        rows = self._all(
            f"SELECT packer, to_char((started_utc::timestamptz AT TIME ZONE {at})::date,"
            " 'YYYY-MM-DD') AS day, COUNT(*) AS n,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_s) AS median"
            " FROM clips WHERE started_utc >= %s AND started_utc < %s"
            " AND packer IS NOT NULL AND kind = 'order'"
            + ("" if stations is None else " AND station = ANY(%s)")
            + " GROUP BY 1, 2 ORDER BY 1, 2",
            (zone, start_utc, end_utc, *([] if stations is None else [list(stations)])),
        )
        return [(r["packer"], r["day"], int(r["n"]), float(r["median"])) for r in rows]

    def started_between(self, start_utc: str, end_utc: str) -> list[tuple[str, str, int]]:
        rows = self._all(
            "SELECT station, started_at, size FROM clips WHERE started_utc >= %s"
            " AND started_utc < %s",
            (start_utc, end_utc),
        )
        return [(r["station"], r["started_at"], int(r["size"])) for r in rows]

    def first_clip_utc(self) -> str | None:
        r = self._one("SELECT MIN(started_utc) AS m FROM clips")
        return r["m"] if r else None

    def last_clip_utc(self, station: str) -> str | None:
        r = self._one("SELECT MAX(started_utc) AS m FROM clips WHERE station = %s", (station,))
        return r["m"] if r else None

    def recent_rejections(self, limit: int = 10) -> list[Any]:
        """Rejected scans stay on the stations (their dashboards show them)."""
        return []

    def now_utc(self) -> datetime:
        return datetime.now(UTC)
