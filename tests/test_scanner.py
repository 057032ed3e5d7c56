"""Scan sources without hardware: stdin (text, bytes, garbage), scripted, and the chooser."""

from __future__ import annotations

import io
import logging
import os
import time

import pytest

from station.backends import build_scan_sources
from station.capture.frames import PedalPress, RawScan, ScanSource
from station.capture.hardware.evdev_scanner import EvdevScanner
from station.capture.hardware.gpio_pedal import GpioPedal
from station.capture.scanner import (
    MAX_LINE,
    EventQueue,
    ScriptedScanner,
    StdinScanner,
    read_capped,
)
from station.capture.synthetic import Scenario


def run_to_eof(scanner: StdinScanner) -> list:
    scanner.start()
    assert scanner.eof.wait(5.0)
    events = scanner.poll(time.monotonic())
    scanner.stop()
    return events


def test_stdin_lines_become_stripped_scans() -> None:
    before = time.monotonic()
    scanner = StdinScanner(io.StringIO("PO20261130-0001\r\n\n   \n  SF1234567890123  \nSEAL"))
    assert isinstance(scanner, ScanSource)
    events = run_to_eof(scanner)
    assert [e.text for e in events] == ["PO20261130-0001", "SF1234567890123", "SEAL"]
    assert all(isinstance(e, RawScan) and e.source == "stdin" for e in events)
    assert all(before <= e.t <= time.monotonic() for e in events)
    assert [e.t for e in events] == sorted(e.t for e in events)


def test_stdin_survives_binary_garbage_and_huge_lines(caplog: pytest.LogCaptureFixture) -> None:
    r, w = os.pipe()
    payload = b"\xff\xfe\x00bin\n" + b"9" * 10_000 + b"\n" + "封箱\n".encode() + b"after\n"
    with os.fdopen(w, "wb") as fw:
        fw.write(payload)
    with os.fdopen(r, "r", encoding="utf-8") as stream, caplog.at_level(logging.WARNING):
        events = run_to_eof(StdinScanner(stream))
    texts = [e.text for e in events]
    assert texts[0] == "\ufffd\ufffd\x00bin"  # passed on; sanitising happens elsewhere
    assert texts[1] == "9" * MAX_LINE
    assert texts[2:] == ["封箱", "after"]
    assert "discarded 5904 more" in caplog.text


def test_a_reader_still_blocked_after_stop_keeps_the_scanner_from_starting_twice() -> None:
    """stop() cannot interrupt a blocked read; a second start would add a second reader."""
    r, w = os.pipe()
    with os.fdopen(r, "rb") as stream, os.fdopen(w, "wb", buffering=0) as writer:
        scanner = StdinScanner(stream)
        scanner.start()
        try:
            scanner.stop()  # the reader is still blocked in read(): nothing was written
            with pytest.raises(RuntimeError, match="already started"):
                scanner.start()
        finally:
            writer.write(b"PO1\n")
            writer.close()  # end of input: every reader ends
        assert scanner.eof.wait(5.0)
        scanner.stop()
        scanner.start()  # the old reader has ended: a restart is allowed
        scanner.stop()
    assert scanner.poll(time.monotonic()) == []  # read after the stop: not reported


def test_read_capped_never_holds_more_than_the_limit() -> None:
    text = io.StringIO("abc\n" + "x" * 25 + "\nlast")
    chunks = list(read_capped(text.readline, limit=10))
    assert chunks == [("abc\n", 0), ("x" * 10, 15), ("last", 0)]
    exact = io.BytesIO(b"0123456789\nnext\n")
    assert list(read_capped(exact.readline, limit=10)) == [(b"0123456789", 0), (b"next\n", 0)]


def test_event_queue_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    q = EventQueue("test", maxlen=3)
    for i in range(5):
        q.put(PedalPress(float(i)))
    assert [e.t for e in q.drain()] == [2.0, 3.0, 4.0]
    assert q.overflowed == 2 and "dropping the oldest" in caplog.text
    assert q.drain() == []


def script() -> Scenario:
    return Scenario.from_dict(
        {
            "event": [
                {"at": 1.0, "kind": "key", "text": "PO1"},
                {"at": 1.0, "kind": "show", "code": "PO2"},
                {"at": 2.5, "kind": "pedal"},
                {"at": 3.0, "kind": "key", "text": "SF1234567890123"},
                {"at": 4.0, "kind": "end"},
            ]
        }
    )


def test_scripted_scanner_delivers_each_event_once_at_its_time() -> None:
    s = ScriptedScanner(script(), origin=0.0)
    s.start()
    assert s.poll(0.99) == []
    assert s.poll(1.0) == [RawScan("PO1", "script", 1.0)]
    assert s.poll(1.5) == []
    assert s.poll(10.0) == [PedalPress(2.5), RawScan("SF1234567890123", "script", 3.0)]
    assert s.poll(20.0) == []
    s.stop()


def test_scripted_scanner_takes_its_origin_from_the_first_poll() -> None:
    s = ScriptedScanner(script())
    s.start()
    assert s.poll(1000.0) == []  # a realtime camera's first frame: scene time 0
    assert s.poll(1002.0) == [RawScan("PO1", "script", 1001.0)]
    s.start()  # a restart walks the script again from the same origin
    assert s.poll(1001.0) == [RawScan("PO1", "script", 1001.0)]


def test_scripted_scanner_walks_the_endless_demo_lazily() -> None:
    s = ScriptedScanner(Scenario.demo(seed=0), origin=0.0)
    s.start()
    got = s.poll(600.0)
    assert any(isinstance(e, PedalPress) for e in got)
    assert any(isinstance(e, RawScan) for e in got)
    assert all(e.t <= 600.0 for e in got)
    assert s.poll(1200.0)  # and it keeps going


def test_scripted_scanner_poll_before_start_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        ScriptedScanner(script()).poll(0.0)


def test_build_scan_sources_chooses_from_config(cfg) -> None:
    (only,) = build_scan_sources(cfg)  # synthetic camera: its scripted keyboard
    assert isinstance(only, ScriptedScanner)
    sc = Scenario.demo(seed=9)
    (only,) = build_scan_sources(cfg, scenario=sc)
    assert only.scenario is sc
    live = cfg.replace("camera", backend="opencv", source="0")
    assert build_scan_sources(live) == []
    stdin = build_scan_sources(live.replace("scanner", keyboard="stdin"))
    assert [type(s) for s in stdin] == [StdinScanner]
    hw = live.replace("scanner", keyboard="evdev", evdev_device="/dev/input/event3",
                      evdev_grab=False, pedal_gpio=17)  # fmt: skip
    ev, pedal = build_scan_sources(hw)
    assert isinstance(ev, EvdevScanner) and ev.device == "/dev/input/event3" and not ev.grab
    assert isinstance(pedal, GpioPedal) and pedal.pin == 17
