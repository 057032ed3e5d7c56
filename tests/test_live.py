"""The live-view publisher: files the web site reads, throttled, never raising."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from fake_clock import FakeClock

import station.recording.live as live_mod
from station.capture.codes import safe_component
from station.recording.live import LiveWriter
from station.recording.runner import Status


def status(frames: int = 10, **kw) -> Status:
    base = dict(station="打包台1", state="recording", order_id="PO-1", waybills=("SF1",),
                elapsed_s=4.24, frames=frames, last_error=None)  # fmt: skip
    base.update(kw)
    return Status(**base)


def test_writes_jpeg_and_status_and_throttles(tmp_path: Path) -> None:
    clock = FakeClock()
    live = LiveWriter(tmp_path, "打包台1", interval=0.2, clock=clock)
    img = np.zeros((720, 1280, 3), np.uint8)
    live(img, status(), 0)
    jpg = next((tmp_path / "live").glob("*.jpg"))
    doc = json.loads(next((tmp_path / "live").glob("*.json")).read_text(encoding="utf-8"))
    assert jpg.read_bytes()[:2] == b"\xff\xd8"
    assert doc["station"] == "打包台1" and doc["order_id"] == "PO-1" and doc["elapsed_s"] == 4.2
    assert doc["waybills"] == ["SF1"] and "disk_free_bytes" in doc and "clock_synced" in doc
    mtime = jpg.stat().st_mtime_ns
    clock.advance(0.19)
    live(img, status(11), 0)  # within the interval: nothing written
    assert jpg.stat().st_mtime_ns == mtime
    doc = json.loads(next((tmp_path / "live").glob("*.json")).read_text(encoding="utf-8"))
    assert doc["frames"] == 10
    clock.advance(0.06)  # 0.25 s after the first write
    live(img, status(40), 3)
    doc = json.loads(next((tmp_path / "live").glob("*.json")).read_text(encoding="utf-8"))
    assert doc["frames"] == 40 and doc["dropped"] == 3
    assert doc["fps"] == pytest.approx(30 / 0.25, abs=0.1)  # 30 frames in 0.25 s


def test_survives_its_folder_vanishing(tmp_path: Path) -> None:
    live = LiveWriter(tmp_path, "s1", interval=0.0)
    img = np.zeros((48, 64, 3), np.uint8)
    live(img, status(), 0)
    shutil.rmtree(tmp_path / "live")
    live(img, status(), 0)  # fails quietly and recreates the folder
    live(img, status(), 0)
    assert (tmp_path / "live" / "s1.json").is_file()


def test_stopped_state(tmp_path: Path) -> None:
    live = LiveWriter(tmp_path, "s1")
    live.write_status(status(), state="stopped")
    doc = json.loads((tmp_path / "live" / "s1.json").read_text(encoding="utf-8"))
    assert doc["state"] == "stopped"


def test_threaded_writer_never_makes_the_capture_thread_wait_for_the_disk(
    tmp_path: Path, monkeypatch
) -> None:
    real = live_mod._replace_bytes
    writes: list[str] = []
    writing = threading.Event()
    disk_free = threading.Event()  # the busy SD card answers only when the test says so

    def slow_disk(path: Path, data: bytes) -> None:
        writing.set()
        assert disk_free.wait(30)
        real(path, data)
        writes.append(path.suffix)

    monkeypatch.setattr(live_mod, "_replace_bytes", slow_disk)
    live = LiveWriter(tmp_path, "s1", interval=0.0, threaded=True)
    img = np.zeros((72, 128, 3), np.uint8)
    live(img, status(10), 0)
    assert writing.wait(30)  # the live-view thread is now inside a write that does not end

    def capture_thread() -> None:  # four frames and a status
        for i in range(1, 5):
            live(img, status(10 + i), 0)
        live.write_status(status(20), state="stopped")

    capture = threading.Thread(target=capture_thread)
    capture.start()
    capture.join(30)
    handed_over = not capture.is_alive()
    disk_free.set()
    capture.join()
    live.close()
    assert handed_over  # while the disk was still stuck: no waiting for it
    # the first frame (status + JPEG), then only the newest item: the frames that waited
    # behind the slow write were replaced, and the last word is written last
    assert writes == [".json", ".jpg", ".json"]
    doc = json.loads((tmp_path / "live" / "s1.json").read_text(encoding="utf-8"))
    assert doc["state"] == "stopped" and doc["frames"] == 20
    live(img, status(99), 0)  # after close: ignored, no thread restarted
    live.close()
    doc = json.loads((tmp_path / "live" / "s1.json").read_text(encoding="utf-8"))
    assert doc["frames"] == 20


def test_threaded_writer_publishes_in_the_background(tmp_path: Path, monkeypatch) -> None:
    real = live_mod._replace_bytes
    writers: list[tuple[str, str]] = []
    both_written = threading.Event()

    def recording(path: Path, data: bytes) -> None:
        real(path, data)
        writers.append((path.suffix, threading.current_thread().name))
        if len(writers) == 2:
            both_written.set()

    monkeypatch.setattr(live_mod, "_replace_bytes", recording)
    live = LiveWriter(tmp_path, "s1", interval=0.0, threaded=True)
    live(np.zeros((48, 64, 3), np.uint8), status(7), 2)
    assert both_written.wait(30)  # without close(): the thread writes on its own
    live.close()
    assert writers == [(".json", "live-view"), (".jpg", "live-view")]
    doc = json.loads((tmp_path / "live" / "s1.json").read_text(encoding="utf-8"))
    assert doc["frames"] == 7 and doc["dropped"] == 2
    assert (tmp_path / "live" / "s1.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_temp_files_of_a_writer_killed_mid_write_are_removed_at_start(
    tmp_path: Path, dead_pid: int
) -> None:
    # A station killed between writing a temp file and renaming it leaves
    # .<station>.jpg.<pid>.tmp; the next run (another pid) never writes over it.
    live_dir = tmp_path / "live"
    live_dir.mkdir()
    stem = safe_component("打包台1", 32)  # the files' name for this station
    stale = [live_dir / f".{stem}.jpg.{dead_pid}.tmp", live_dir / f".{stem}.json.{dead_pid}.tmp"]
    alive = live_dir / f".{stem}.json.{os.getpid()}.tmp"  # a running writer's: not ours to take
    other = live_dir / f".{safe_component('桌2', 32)}.json.{dead_pid}.tmp"  # its own start's
    for p in (*stale, alive, other):
        p.write_bytes(b"half")
    LiveWriter(tmp_path, "打包台1")
    assert sorted(p.name for p in live_dir.iterdir()) == sorted([alive.name, other.name])
