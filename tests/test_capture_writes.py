"""The capture loop's index writes wait for no other writer: journaled, committed in order on
"index-writer", retried when refused, redone after a kill -9 exactly once."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from recorder_support import encoded_recorder
from sync_support import run_killed, statements

from station import config as config_mod
from station.capture.synthetic import Scenario, SyntheticCamera
from station.errors import LedgerError
from station.floor.alarms import AlarmBoard
from station.runtime.faults import FlakyCamera, Outage
from station.service import assemble
from station.store.capturewrites import read_journal, transient
from station.store.cursors import SyncCursors
from station.store.ledger import CAPTURE_CURSOR, CAPTURE_JOURNAL_SUFFIX, Ledger, ScanEventRecord

WALL0 = datetime(2026, 12, 8, 9, 0, 0).astimezone()
EAN = "6901234567892"  # a product scanned by hand between two orders
# Only a guard against a hang: the steps under test take milliseconds; before the writer
# thread they waited for SQLite's 30 s busy timeout, then failed.
GUARD_S = 20.0


def item(n: int) -> ScanEventRecord:
    return ScanEventRecord("item", f"{EAN}-{n}", "keyboard", WALL0 + timedelta(seconds=n), None,
                           "no open order; ignored")  # fmt: skip


@contextlib.contextmanager
def write_lock(index: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (a retention pass, the web site's legal hold) holding the index's
    write lock: BEGIN IMMEDIATE and a row written, committed on leaving."""
    conn = sqlite3.connect(str(index), isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO alarms(kind, subject, message, first_utc, last_utc)"
            " VALUES ('test-writer', 'x', 'held', '2026', '2026')"
        )
        yield conn
        conn.execute("COMMIT")
    finally:
        conn.close()


def writes(ran: list[tuple[str, str, str]], thread: str) -> list[str]:
    """The statements ``thread`` ran that are no plain read."""
    return [sql for th, _conn, sql in ran if th == thread and not sql.lstrip().startswith("SELECT")]


@pytest.fixture
def rec_cfg(cfg: config_mod.Config) -> config_mod.Config:
    return cfg.replace("proof", enabled=False)


def test_the_capture_loop_s_scans_and_alarms_complete_while_another_connection_holds_the_lock(
    rec_cfg: config_mod.Config, tmp_path: Path
) -> None:
    """A scan with no clip open and an alarm raised and cleared by the capture loop return
    while another connection holds the index's write lock (before, each waited for it, up to
    the 30 s busy timeout, and the camera's frames were dropped meanwhile); the capture thread
    runs no write statement; once the lock is free they are in the index, in order."""
    index = tmp_path / "index.sqlite3"
    ledger = Ledger(index, capture_writes=True)
    rec = encoded_recorder(rec_cfg, ledger, 64, 48, 10.0)
    board = AlarmBoard(ledger)
    done = threading.Event()

    def capture_steps() -> None:
        rec.log_event(item(1), 0.0)
        board.raise_("camera-lost", "st", "no frame for 2 s", capture=True)
        board.clear("camera-lost", "st", capture=True)
        rec.log_event(item(2), 1.0)
        done.set()

    try:
        with statements(ledger) as ran:
            with write_lock(index):
                capture = threading.Thread(target=capture_steps, name="capture")
                capture.start()
                assert done.wait(GUARD_S), "the capture loop waited for the other writer"
                # still held: nothing of the four is committed yet, all of it journaled
                assert ledger.capture_writes_pending == 4
                assert len(read_journal(Path(f"{index}{CAPTURE_JOURNAL_SUFFIX}"))) == 4
                capture.join()
            assert ledger.flush_capture_writes()
        assert writes(ran, "capture") == []
        assert [e.text for e in ledger.unattached_events()] == [f"{EAN}-1", f"{EAN}-2"]
        (lost,) = [a for a in ledger.alarms(active_only=False) if a.kind == "camera-lost"]
        assert lost.cleared_utc is not None
        # committed on the writer thread, on the connection whose commits are synced
        assert {th for th, conn, sql in ran if "INSERT INTO scan_events" in sql} == {"index-writer"}
        assert ledger.capture_writes_pending == 0
        assert Path(f"{index}{CAPTURE_JOURNAL_SUFFIX}").stat().st_size == 0  # all committed
    finally:
        rec.close()
        ledger.close()


def test_the_capture_loop_runs_on_while_another_connection_holds_the_index_s_write_lock(
    cfg: config_mod.Config,
) -> None:
    """The station's capture loop, with a product scanned by hand between two orders, the
    camera lost and back (its alarm raised and cleared), and an order scanned (the duplicate
    check reads the index), processes its frames while another connection holds the write
    lock: its thread runs no write statement; all of it is indexed once the lock is free."""
    cfg = cfg.replace("camera", width=160, height=96, fps=10.0, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    scenario = Scenario.from_dict({"seed": 4, "event": [
        {"at": 0.5, "kind": "key", "text": EAN},
        {"at": 4.0, "kind": "key", "text": "PO-HELD"},
        {"at": 6.0, "kind": "key", "text": "SEAL"},
        {"at": 7.0, "kind": "end"},
    ]})  # fmt: skip
    cam = FlakyCamera(SyntheticCamera(160, 96, 10.0, scenario, realtime=False), [Outage(15, 2)])
    asm = assemble(cfg, camera=cam, live_view=False)
    st = asm.station
    index = cfg.station.data_dir / "index.sqlite3"
    past = threading.Event()  # the capture loop is past the scans and the camera loss
    resume = threading.Event()  # the other writer let go

    def on_frame(_image: object, status: object, dropped: int = 0) -> None:
        if getattr(st.state, "order_id", None) == "PO-HELD" and not past.is_set():
            past.set()
            resume.wait(GUARD_S)  # go on once the test has looked, lock still held

    st.on_frame = on_frame
    try:
        with statements(asm.ledger) as ran:
            with write_lock(index):
                capture = threading.Thread(target=st.run, args=(threading.Event(),),
                                           name="capture")  # fmt: skip
                capture.start()
                assert past.wait(GUARD_S), "the capture loop waited for the other writer"
                assert st.stats.camera_losses == 1 and st.state.order_id == "PO-HELD"
                assert asm.ledger.unattached_events() == []  # nothing committed yet
            resume.set()
            capture.join()
        assert writes(ran, "capture") == []
        scans = [e.text for e in asm.ledger.unattached_events()]
        assert scans == [EAN]
        alarms = {a.kind: a for a in asm.ledger.alarms(active_only=False)}
        assert alarms["camera-lost"].cleared_utc is not None
        (clip,) = asm.ledger.clips()
        assert clip.order_id == "PO-HELD"
    finally:
        resume.set()
        asm.close()


def test_a_write_the_index_refuses_is_retried_in_order(tmp_path: Path) -> None:
    """The writer thread survives a refused commit (the lock held past its busy timeout) and
    commits that write and the ones after it, in order, once the index takes them."""
    index = tmp_path / "index.sqlite3"
    ledger = Ledger(index, capture_writes=True)
    assert ledger.writer_db is not None
    ledger.writer_db.conn.execute("PRAGMA busy_timeout=20")  # give up on the lock at once
    try:
        with write_lock(index):
            ledger.log_events("st", [item(1)])
            assert not ledger.flush_capture_writes()  # refused: kept, retried
            ledger.log_events("st", [item(2), item(3)])
            assert ledger.capture_writes_pending == 2
        assert ledger.flush_capture_writes()
        assert [e.text for e in ledger.unattached_events()] == [f"{EAN}-{n}" for n in (1, 2, 3)]
    finally:
        ledger.close()


def test_a_journal_left_by_a_crash_is_committed_once(tmp_path: Path) -> None:
    """At the next start, the ops numbered after the index's cursor are committed, in order;
    those the index already has (committed, then the crash before the journal was emptied)
    are not again; a line cut short by a power cut and a write of an unknown kind are left
    out, and the next line written does not continue the cut one; the numbering goes on;
    the journal is emptied once all is committed."""
    index = tmp_path / "index.sqlite3"
    ledger = Ledger(index)
    ledger.log_events("st", [item(1)])
    with ledger.db.tx(RuntimeError, "cursor") as db:
        SyncCursors.set_cursor_in(db, CAPTURE_CURSOR, 1)
    ledger.close()

    def line(seq: int, op: dict[str, object]) -> str:
        return json.dumps({"seq": seq, "op": op}) + "\n"

    def events(n: int) -> dict[str, object]:
        e = item(n)
        return {"write": "events", "station": "st",
                "events": [{**e.__dict__, "wall": e.wall.isoformat()}]}  # fmt: skip

    journal = Path(f"{index}{CAPTURE_JOURNAL_SUFFIX}")
    journal.write_text(
        line(1, events(1))  # committed before the crash
        + line(2, events(2))
        + line(3, {"write": "no-such-write"})
        + line(
            4,
            {
                "write": "raise",
                "kind": "camera-lost",
                "subject": "st",
                "message": "no frame",
                "at": "2026-12-08T09:00:05.000000Z",
            },
        )
        + line(5, events(5))
        + '{"seq": 6, "op": {"write": "ev'  # cut short
    )
    with write_lock(index):  # the scans made while those wait are journaled whole
        ledger = Ledger(index, capture_writes=True)
        ledger.log_events("st", [item(7)])
        assert [n for n, _op in read_journal(journal)] == [1, 2, 3, 4, 5, 6]
    try:
        assert ledger.flush_capture_writes()
        assert [e.text for e in ledger.unattached_events()] == [f"{EAN}-{n}" for n in (1, 2, 5, 7)]
        assert [a.kind for a in ledger.alarms() if a.kind != "test-writer"] == ["camera-lost"]
        assert journal.stat().st_size == 0
        with ledger.db.lock:
            assert SyncCursors.cursor_in(ledger.conn, CAPTURE_CURSOR) == 6
    finally:
        ledger.close()


# The capture loop indexes scans and raises an alarm while another connection holds the
# index's write lock, then the process dies by kill -9 the moment the last call returned:
# nothing of it was committed, all of it journaled.
KILLED_CHILD = """
import os, signal, sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from recorder_support import encoded_recorder

from station import config as config_mod
from station.floor.alarms import AlarmBoard
from station.store.ledger import Ledger, ScanEventRecord

data = Path(sys.argv[1])
cfg = config_mod.load(None).with_data_dir(data).replace("proof", enabled=False)
ledger = Ledger.in_data_dir(data, capture_writes=True)
rec = encoded_recorder(cfg, ledger, 64, 48, 10.0)
other = sqlite3.connect(str(data / "index.sqlite3"), isolation_level=None)
other.execute("BEGIN IMMEDIATE")
wall = datetime(2026, 12, 8, 9, 0, 0).astimezone()
for n, kind in enumerate(("item", "refused")):
    rec.log_event(ScanEventRecord(kind, f"{kind}-{n}", "keyboard", wall + timedelta(seconds=n)),
                  float(n))
AlarmBoard(ledger).raise_("camera-lost", "st", "no frame for 2 s", capture=True)
rec.log_event(ScanEventRecord("pedal", "pedal-2", "pedal", wall + timedelta(seconds=2)), 2.0)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_capture_loop_s_writes_held_up_by_another_writer_survive_a_kill_9(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    run_killed(KILLED_CHILD, str(data))
    plain = Ledger.in_data_dir(data)  # the web site or a command: it leaves the journal be
    try:
        assert plain.unattached_events() == [] and plain.alarms() == []
    finally:
        plain.close()
    ledger = Ledger.in_data_dir(data, capture_writes=True)
    try:
        assert ledger.flush_capture_writes()
        got = [(e.kind, e.text) for e in ledger.unattached_events()]
        alarms = [a.kind for a in ledger.alarms()]
    finally:
        ledger.close()
    assert got == [("item", "item-0"), ("refused", "refused-1"), ("pedal", "pedal-2")]
    assert alarms == ["camera-lost"]


def test_another_thread_s_write_waits_for_the_capture_loop_s_earlier_ones(tmp_path: Path) -> None:
    """The capture loop raises an alarm while another connection holds the lock, then another
    thread (the clip finisher) clears it: the clear commits after the raise, so the alarm ends
    cleared, as it happened; without the wait it committed first, cleared nothing, and the
    raise left the alarm active for good."""
    index = tmp_path / "index.sqlite3"
    ledger = Ledger(index, capture_writes=True)
    assert ledger.writer_db is not None and ledger._writes is not None
    writes = ledger._writes
    ledger.writer_db.conn.execute("PRAGMA busy_timeout=20")  # retries while the lock is held
    finisher = threading.Thread(
        target=ledger.clear_alarm, args=("recording-failed", "st"), name="clip-finisher"
    )
    guard = threading.Event()
    timer = threading.Timer(GUARD_S, guard.set)
    try:
        with write_lock(index):
            AlarmBoard(ledger).raise_("recording-failed", "st", "encoder died", capture=True)
            assert not ledger.flush_capture_writes()  # refused for now
            finisher.start()
            timer.start()
            while writes.waiting == 0 and not guard.is_set():  # it waits for the raise
                guard.wait(0.005)
            assert writes.waiting == 1, "the clear did not wait for the capture loop's raise"
        finisher.join()
        (alarm,) = [a for a in ledger.alarms(active_only=False) if a.kind == "recording-failed"]
        assert alarm.cleared_utc is not None
    finally:
        timer.cancel()
        if finisher.is_alive():
            finisher.join()  # the lock is free: it ends
        ledger.close()


def caused(exc: Exception, cause: BaseException) -> Exception:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "kept"),
    [
        (sqlite3.OperationalError("database is locked"), True),
        (
            caused(
                LedgerError("capture loop's index write failed"),
                sqlite3.OperationalError("database or disk is full"),
            ),
            True,
        ),
        (
            caused(LedgerError("write failed"), sqlite3.DatabaseError("disk image is malformed")),
            True,
        ),
        (OSError(28, "No space left on device"), True),
        (ValueError("unknown capture write 'x'"), False),
        (KeyError("events"), False),
    ],
)
def test_what_the_writer_keeps_and_retries(exc: Exception, kept: bool) -> None:
    """A refusal of the index or the disk keeps the write (retried); a write wrong in itself
    is passed over (it would fail the same way for ever, holding up those after it)."""
    assert transient(exc) is kept
