"""Index databases made by earlier packcam versions open and migrate forward, losing nothing."""

from __future__ import annotations

import multiprocessing
import sqlite3
from contextlib import closing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from helpers_crash_child import assert_every_step, crash_at_every_step

from station.errors import LedgerError
from station.proof.log import ProofLog
from station.store.cursors import SyncCursors
from station.store.index import INDEX_NAME, MIGRATIONS, open_index
from station.store.ledger import Ledger
from station.store.uploads import UploadJournal
from web.index import ClipIndex

# A dump (sqlite3 iterdump) of an index made by packcam before the tables had owners
# (main at 4552218: one migration list in station/store/ledger.py, schema version 7), with a row
# in every table: three clips (one archived, one deleted by retention, one repack), holds
# set and released, alarms, a proof log with a checkpoint, a timestamp, a retired key's log
# and its rotation, a multipart upload in progress and two central-sync cursors.
FIXTURE = Path(__file__).parent / "fixtures" / "index-v7.sql"


def _old_index(path: Path) -> int:
    text = FIXTURE.read_text(encoding="utf-8")
    version = int(text.splitlines()[0].removeprefix("-- user_version "))
    conn = sqlite3.connect(str(path))
    try:
        conn.executescript(text)
        conn.execute(f"PRAGMA user_version={version}")
    finally:
        conn.close()
    return version


def _schema(conn: sqlite3.Connection) -> set[tuple[str, str, str]]:
    return {
        (r[0], r[1], r[2])
        for r in conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")
    }


def _rows(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, by the columns the table has in ``conn``."""
    out = {}
    for (table,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall():
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        out[table] = conn.execute(
            f"SELECT {', '.join(cols)} FROM {table} ORDER BY rowid"
        ).fetchall()
    return out


def test_an_old_index_migrates_forward_and_keeps_every_row(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite3"
    version = _old_index(old)
    with closing(sqlite3.connect(str(old))) as conn:
        before = _rows(conn)
        old_cols = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in before}
    assert all(before.values()), "the fixture has a row in every table"

    db = open_index(old)
    try:
        assert int(db.conn.execute("PRAGMA user_version").fetchone()[0]) == len(MIGRATIONS)
        assert len(MIGRATIONS) >= version
        for table, rows in before.items():
            cols = ", ".join(old_cols[table])
            after = db.conn.execute(f"SELECT {cols} FROM {table} ORDER BY rowid").fetchall()
            assert [tuple(r) for r in after] == rows, table
        upgraded = _schema(db.conn)
    finally:
        db.close()

    fresh = open_index(tmp_path / "fresh.sqlite3")
    try:
        assert upgraded == _schema(fresh.conn)
    finally:
        fresh.close()


def test_the_owners_schema_up_to_the_fixture_version_is_the_old_schema(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite3"
    version = _old_index(old)
    conn = sqlite3.connect(str(tmp_path / "new.sqlite3"))
    try:
        for script in MIGRATIONS[:version]:
            conn.executescript(script)
        with closing(sqlite3.connect(str(old))) as o:
            assert _schema(conn) == _schema(o)
    finally:
        conn.close()


def test_the_owners_read_what_the_old_index_holds(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    _old_index(path)
    led = Ledger(path)
    try:
        po1 = led.clips("PO-1")
        assert [c.path for c in po1] == ["clips/2026/12/01/c0.mp4", "clips/2026/12/01/c2.mp4"]
        assert po1[0].waybill == "SF0000000000000" and po1[0].events[0].text == "PO-1"
        assert po1[1].repack_of == [po1[0].id] and po1[1].packer == "alice"
        assert led.clips("PO-2")[0].repack_of_fleet[0]["station"] == "st2"
        assert led.archive_state(po1[0].id)["archive_key"] == "st1/clips/c0.mp4"  # type: ignore[index]
        assert [h.order_id for h in led.legal_holds()] == ["PO-2"]
        assert [h["action"] for h in led.legal_hold_history("PO-1")] == ["hold", "release"]
        kept = {c.path: c for c in led.stored_clips(include_deleted=True)}
        assert kept["clips/2026/12/01/c0.mp4"].deleted_utc is not None
        assert kept["clips/2026/12/01/c1.mp4"].legal_hold
        assert led.deletion_record("clips/2026/12/01/c0.mp4")["record"] == b'{"deleted":"c0"}'  # type: ignore[index]
        alarms = {a.kind: a for a in led.alarms(active_only=False)}
        assert alarms["disk-low"].count == 2 and alarms["clip-missing"].cleared_utc
        assert [e.text for e in led.unattached_events()] == ["bad\x01"]
    finally:
        led.close()

    plog = ProofLog(path)
    try:
        assert plog.size() == 1 and plog.entries()[0].clip_path == "clips/2026/12/01/c1.mp4"
        assert [c.tree_size for c in plog.checkpoints()] == [1]
        assert plog.timestamps_for("m1")[0].token == b"\x30\x00"
        assert [r.old_key for r in plog.rotations()] == ["fpOld"]
        assert [e.seq for e in plog.archived("fpOld").entries()] == [0]
    finally:
        plog.close()

    db = open_index(path)
    try:
        upload = UploadJournal(db).get("st1/clips/c2.mp4")
        assert upload is not None and upload.upload_id == "up-1" and 1 in upload.parts
        cursors = SyncCursors(db)
        assert (cursors.cursor("central:clips"), cursors.cursor("central:archived")) == (2, 1)
    finally:
        db.close()


def _index_at_9_with_cards(path: Path) -> None:
    """An index at version 9 whose clip 1 logged a control card set to seal (no note), a test
    card (its note) and a seal card, and a control card with no clip (its note)."""
    conn = sqlite3.connect(str(path))
    try:
        for script in MIGRATIONS[:9]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version=9")
        conn.execute(
            "INSERT INTO orders VALUES ('PO-1', '2026-12-01T09:00:00Z', '2026-12-01T09:00:00Z')"
        )
        conn.execute(
            "INSERT INTO clips(id, order_id, station, started_at, ended_at, started_utc,"
            " ended_utc, tz, duration_s, frame_count, finish_reason, pre_roll_s, path,"
            " manifest_path, size, sha256, created_utc) VALUES (1, 'PO-1', 'st1',"
            " '2026-12-01T09:00:00.000+00:00', '2026-12-01T09:00:10.000+00:00',"
            " '2026-12-01T09:00:00Z', '2026-12-01T09:00:10Z', '+0000', 10, 100, 'sealed', 0,"
            " 'clips/c1.mp4', 'clips/c1.json', 1, 'ab', '2026-12-01T09:00:10Z')"
        )
        wall = "2026-12-01T09:00:05.000+00:00"
        conn.executemany(
            "INSERT INTO scan_events(clip_id, station, kind, text, source, t_clip_s, wall, note)"
            " VALUES (?, 'st1', ?, ?, 'hid', ?, ?, ?)",
            [
                (1, "control", "PING", 4.0, wall, "test scan"),
                (1, "seal", "SEAL", 4.5, wall, ""),
                (1, "control", "STOP", 5.0, wall, ""),
                (None, "control", "PING", None, wall, "test scan"),
            ],
        )
        conn.commit()
    finally:
        conn.close()


def test_version_10_gives_the_scan_events_of_an_old_index_their_card(tmp_path: Path) -> None:
    """Before version 10 a control card set to seal was told by its empty note: the migration
    records that as its card, and the web site reading an index the station has not migrated
    yet reads it the same."""
    path = tmp_path / "index.sqlite3"
    _index_at_9_with_cards(path)
    want = [("PING", "", False), ("SEAL", "", True), ("STOP", "seal", True)]
    web = ClipIndex(path)  # query_only: the index stays at version 9
    try:
        clip = web.clip(1)
        assert clip is not None and [(e.text, e.card, e.is_seal) for e in clip.events] == want
    finally:
        web.close()
    led = Ledger(path)  # migrates
    try:
        clip = led.clip(1)
        assert clip is not None and [(e.text, e.card, e.is_seal) for e in clip.events] == want
        assert [(e.text, e.card) for e in led.unattached_events()] == [("PING", "")]
    finally:
        led.close()


@pytest.mark.parametrize("start", range(len(MIGRATIONS)))
def test_each_intermediate_version_migrates_to_the_fresh_schema(tmp_path: Path, start: int) -> None:
    path = tmp_path / "index.sqlite3"
    conn = sqlite3.connect(str(path))
    try:
        for script in MIGRATIONS[:start]:
            conn.executescript(script)
        conn.execute(f"PRAGMA user_version={start}")
    finally:
        conn.close()
    db = open_index(path)
    fresh = open_index(tmp_path / "fresh.sqlite3")
    try:
        assert _schema(db.conn) == _schema(fresh.conn)
    finally:
        db.close()
        fresh.close()


def test_a_crash_inside_a_migration_leaves_a_whole_version_and_the_next_start_migrates(
    tmp_path: Path,
) -> None:
    """A station's first start (every schema version from an empty index) killed every few
    thousand SQLite instructions, inside a script or between two: the index is at a version
    with exactly that version's schema, and the next ``open_index`` migrates to the fresh one."""
    work = tmp_path / "crash"
    (work / "template" / "data").mkdir(parents=True)
    steps = crash_at_every_step("migrate", work)
    assert len(steps) >= 10
    schemas = []
    for version in range(len(MIGRATIONS) + 1):
        conn = sqlite3.connect(str(tmp_path / f"v{version}.sqlite3"))
        try:
            for script in MIGRATIONS[:version]:
                conn.executescript(script)
            schemas.append(_schema(conn))
        finally:
            conn.close()
    seen = set()

    def check(n: int, where: str) -> None:
        path = work / str(n) / "data" / INDEX_NAME
        conn = sqlite3.connect(str(path))
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            assert _schema(conn) == schemas[version], where
        finally:
            conn.close()
        seen.add(version)
        db = open_index(path)
        try:
            assert _schema(db.conn) == schemas[-1], where
        finally:
            db.close()

    assert_every_step(steps, check)
    assert len(seen) > 2  # the kills fell inside more than the first and last versions


ROUNDS = 6


def _open_at_barrier(paths: list[Path], barrier: Barrier, results: Queue) -> None:
    """A child process: for each fresh index, wait for the other child, then open it."""
    for path in paths:
        barrier.wait(timeout=60)  # a guard against a hung child, not a synchronisation
        try:
            open_index(path).close()
            results.put((path.name, "ok"))
        except LedgerError as exc:
            results.put((path.name, str(exc)))


def test_two_processes_opening_a_fresh_index_at_once_both_migrate_it(tmp_path: Path) -> None:
    """The station service and `packcam web` (or two CLI commands) started together on a new
    data dir: both open the index at the same moment, both succeed, and its schema is whole
    (the second waits for the first's migration and then finds nothing to do)."""
    paths = [tmp_path / f"{n}.sqlite3" for n in range(ROUNDS)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    children = [ctx.Process(target=_open_at_barrier, args=(paths, barrier, results)) for _ in "ab"]
    for child in children:
        child.start()
    got = sorted(results.get(timeout=60) for _ in range(2 * ROUNDS))
    for child in children:
        child.join()
    assert [c.exitcode for c in children] == [0, 0]
    assert got == sorted((p.name, "ok") for p in paths * 2)
    fresh = open_index(tmp_path / "fresh.sqlite3")
    try:
        for path in paths:
            conn = sqlite3.connect(str(path))
            try:
                assert int(conn.execute("PRAGMA user_version").fetchone()[0]) == len(MIGRATIONS)
                assert _schema(conn) == _schema(fresh.conn), path.name
            finally:
                conn.close()
    finally:
        fresh.close()
