"""Alarms raised or cleared by the capture loop: no fsync nor write on its thread, nothing lost to
kill -9."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from sync_support import fsyncs, run_killed, statements

from station import config as config_mod
from station.capture.synthetic import Scenario, SyntheticCamera
from station.floor.alarms import AlarmBoard
from station.runtime.faults import FlakyCamera, Outage
from station.service import assemble
from station.store.ledger import Ledger


def alarm_writes(ran: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(thread, connection) of each write to the alarms table."""
    return [(th, conn) for th, conn, sql in ran
            if sql.lstrip().startswith(("INSERT INTO alarms", "UPDATE alarms"))]  # fmt: skip


def test_a_camera_lost_and_back_is_recorded_without_an_fsync_on_the_capture_thread(
    cfg: config_mod.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture loop raises "camera-lost" and clears it right before the resumed frames:
    both are journaled on the capture thread (no statement, no fsync there) and committed by
    the thread "index-writer"; the journal is synced on the thread "index-sync"."""
    cfg = cfg.replace("camera", width=160, height=96, fps=10.0, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    scenario = Scenario.from_dict({"seed": 2, "event": [
        {"at": 0.5, "kind": "key", "text": "PO-CAM"},
        {"at": 6.0, "kind": "key", "text": "SEAL"},
        {"at": 7.0, "kind": "end"},
    ]})  # fmt: skip
    cam = FlakyCamera(SyntheticCamera(160, 96, 10.0, scenario, realtime=False), [Outage(30, 2)])
    asm = assemble(cfg, camera=cam, live_view=False)
    synced_paths = fsyncs(monkeypatch)
    try:
        with statements(asm.ledger) as ran:
            capture = threading.Thread(target=asm.station.run, args=(threading.Event(),),
                                       name="capture")  # fmt: skip
            capture.start()
            capture.join()
        assert asm.station.stats.camera_losses == 1
        # the first frame's clear (of an alarm a run before may have left), the raise and the
        # clear, on the writer; the clip finisher's writes (it clears "recording-failed" after
        # each clip) on its own thread
        mine = [w for w in alarm_writes(ran) if w[0] == "index-writer"]
        assert mine == [("index-writer", "writer")] * 3
        assert not [sql for th, conn, sql in ran if th == "capture"
                    and not sql.lstrip().startswith("SELECT")]  # fmt: skip
        (alarm,) = asm.ledger.alarms(active_only=False)
        assert (alarm.kind, alarm.count) == ("camera-lost", 1) and alarm.cleared_utc is not None
    finally:
        asm.close()  # waits for "index-sync"
    synced = [(thread, Path(path).name) for thread, path in synced_paths]
    assert ("index-sync", "index.sqlite3-capture.jsonl") in synced
    assert not [f for th, f in synced if th == "capture"]


def test_a_camera_lost_alarm_a_run_before_left_ends_at_the_first_frame(
    cfg: config_mod.Config,
) -> None:
    """The station stopped (or the power went) while the camera was away: its "camera-lost"
    stayed active in the index, and the dashboard showed it after the restart for as long as
    the camera then worked. The next run clears it at its first frame; a station whose camera
    is away at start keeps it (raised anew) until the camera is back."""
    cfg = cfg.replace("camera", width=160, height=96, fps=10.0, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    before = Ledger.in_data_dir(cfg.station.data_dir)
    before.raise_alarm("camera-lost", cfg.station.name, "no frame for 2 s")
    before.close()
    scenario = Scenario.from_dict({"seed": 3, "event": [{"at": 1.0, "kind": "end"}]})
    cam = SyntheticCamera(160, 96, 10.0, scenario, realtime=False)
    asm = assemble(cfg, camera=cam, live_view=False)
    try:
        assert [a.kind for a in asm.ledger.alarms()] == ["camera-lost"]
        asm.station.run(threading.Event())
        assert asm.ledger.alarms() == []
        (alarm,) = asm.ledger.alarms(active_only=False)
        assert alarm.kind == "camera-lost" and alarm.cleared_utc is not None
    finally:
        asm.close()


def test_only_the_capture_loop_s_alarms_go_through_the_writer_thread(tmp_path: Path) -> None:
    """Alarms of the other threads (retention, clip finisher, recovery) commit on the calling
    thread and return once synced; the capture loop says which are its own, committed by
    "index-writer"."""
    ledger = Ledger(tmp_path / "index.sqlite3", capture_writes=True)
    board = AlarmBoard(ledger)
    try:
        with statements(ledger) as ran:
            board.raise_("camera-lost", "st", "no frame for 2 s", capture=True)
            board.raise_("disk-full", "/data", "not starting new clips")
            board.clear("camera-lost", "st", capture=True)
            board.clear("disk-full", "/data")
            assert ledger.flush_capture_writes()
        me = threading.current_thread().name
        assert sorted(alarm_writes(ran)) == sorted(
            [("index-writer", "writer"), (me, "main"), ("index-writer", "writer"), (me, "main")]
        )
        assert [th for th, _ in alarm_writes(ran) if th != me] == ["index-writer"] * 2
        assert ledger.alarms() == []
    finally:
        ledger.close()


# A capture loop raises and clears alarms, another thread raises one, then the process dies by
# kill -9 the moment the last call returned (nothing flushed, no thread finished).
KILLED_CHILD = """
import os, signal
from pathlib import Path

from station.floor.alarms import AlarmBoard
from station.store.ledger import Ledger

ledger = Ledger.in_data_dir(Path(sys.argv[1]), capture_writes=True)
board = AlarmBoard(ledger)
board.raise_("disk-full", "/data", "not starting new clips")
board.raise_("recording-failed", "st", "encoder died", capture=True)
board.raise_("camera-lost", "st", "no frame for 2 s", capture=True)
board.clear("recording-failed", "st", capture=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_alarms_raised_and_cleared_by_the_capture_loop_survive_a_kill_9_right_after(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    run_killed(KILLED_CHILD, str(data))
    ledger = Ledger.in_data_dir(data, capture_writes=True)  # commits what the journal holds
    try:
        assert ledger.flush_capture_writes()
        got = {(a.kind, a.cleared_utc is None) for a in ledger.alarms(active_only=False)}
    finally:
        ledger.close()
    assert got == {("disk-full", True), ("recording-failed", False), ("camera-lost", True)}


def test_the_alarm_command_starts_off_the_thread_that_raised_the_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The capture loop raises alarms: starting the command (fork and exec, reading the program
    off a slow SD card) happens on the hook's own thread, and the command runs with the alarm."""
    import station.floor.alarms as alarms_mod

    started: list[str] = []
    real = alarms_mod.subprocess.Popen

    def popen(*a: object, **kw: object) -> object:
        started.append(threading.current_thread().name)
        return real(*a, **kw)

    monkeypatch.setattr(alarms_mod.subprocess, "Popen", popen)
    out = tmp_path / "hook.out"
    hook = tmp_path / "hook.py"
    hook.write_text(f"import sys\nopen({str(out)!r}, 'a').write(sys.argv[-1] + '\\n')\n")
    board = AlarmBoard(None, f"{sys.executable} {hook}")
    raiser = threading.Thread(
        target=board.raise_, args=("camera-lost", "", "no frame"), name="capture"
    )
    raiser.start()
    raiser.join()
    for th in threading.enumerate():
        if th.name == "alarm-hook":
            th.join(30)
    assert started == ["alarm-hook"]
    assert out.read_text() == "camera-lost: no frame\n"
