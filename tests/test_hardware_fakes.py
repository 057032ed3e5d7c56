"""The hardware adapters against fakes with the real libraries' shape, and gpiozero's MockFactory.

picamera2 and python-evdev cannot work here (no libcamera, no input devices), so the mock
backends in ``station/capture/hardware/`` stand in for them; the pedal runs on gpiozero itself with
its mock pins. A test at the end uses a real Pi camera and is skipped anywhere else.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pytest

from station.capture.frames import FrameSource, PedalPress, RawScan, ScanSource
from station.capture.hardware import picamera2_camera
from station.capture.hardware.evdev_scanner import (
    EvdevScanner,
    KeyDecoder,
    find_scanner,
    permission_hint,
    unreadable_input_devices,
)
from station.capture.hardware.gpio_pedal import GpioPedal
from station.capture.hardware.mock_evdev import MOUSE_CAPS, FakeEvdev, ecodes
from station.capture.hardware.mock_picamera2 import Picamera2 as FakePicamera2
from station.capture.hardware.picamera2_camera import (
    INSTALL_HINT,
    Picamera2Camera,
    exposure_start_ns,
    import_hint,
)
from station.errors import CameraError, ScannerError

REPO = Path(__file__).resolve().parents[1]


def wait_for(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# ---- picamera2 ----------------------------------------------------------------------------


@pytest.fixture
def picams() -> Iterator[list[FakePicamera2]]:
    """Records every fake camera opened; frees them all afterwards."""
    made: list[FakePicamera2] = []
    yield made
    for cam in made:
        cam.close()
    FakePicamera2.in_use.clear()


def fake_cls(made: list[FakePicamera2]) -> Callable[[int], FakePicamera2]:
    def open_camera(num: int) -> FakePicamera2:
        cam = FakePicamera2(num)
        made.append(cam)
        return cam

    return open_camera


def test_picamera2_configures_rgb888_and_reads_bgr_frames(picams) -> None:
    cam = Picamera2Camera(0, 64, 48, 50.0, 1.0, picamera2_cls=fake_cls(picams))
    assert isinstance(cam, FrameSource) and cam.live
    cam.start()
    pc = picams[0]
    config = pc.camera_configuration()
    assert config["main"]["format"] == "RGB888" and config["main"]["size"] == (64, 48)
    assert config["controls"]["FrameDurationLimits"] == (20000, 20000)  # FrameRate 50
    frames = [cam.read(1.0) for _ in range(5)]
    cam.stop()
    assert all(f is not None for f in frames)
    img = frames[0].image
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert img[10, 5].tolist() == [255, 0, 0]  # blue stays blue: RGB888 is BGR in memory
    assert img[10, 60].tolist() == [0, 0, 255]
    assert pc.released == pc.frames == 5  # every request went back to the camera
    assert not pc.is_open and not FakePicamera2.in_use
    assert cam.read() is None


def test_picamera2_sensor_time_lands_on_the_monotonic_timeline(picams) -> None:
    cam = Picamera2Camera(0, 32, 24, 50.0, 1.0, picamera2_cls=fake_cls(picams))
    cam.start()
    ts, received = [], []
    for _ in range(6):
        f = cam.read(1.0)
        received.append(time.monotonic())
        ts.append(f.t)
    # Exposure time on the monotonic clock: a little before each frame was received.
    assert all(0 <= r - t < 0.1 for t, r in zip(ts, received, strict=True))
    # Frame spacing is the sensor's own: whole periods, the skipped ones counted as dropped.
    periods = [d / 0.02 for d in np.diff(ts)]
    assert all(round(p) >= 1 and p == pytest.approx(round(p), abs=0.01) for p in periods)
    assert cam.dropped == sum(round(p) - 1 for p in periods)
    before = cam.dropped
    time.sleep(0.1)  # about five frames complete while nobody reads
    f = cam.read(1.0)
    missed = cam.dropped - before
    assert missed >= 3
    assert f.t - ts[-1] == pytest.approx((missed + 1) * 0.02, abs=0.0002)
    assert abs(f.wall.timestamp() - time.time()) < 0.2
    cam.stop()


def test_picamera2_sensor_stamps_on_another_clock_are_anchored_on_delivery(
    picams, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(FakePicamera2, "sensor_clock_skew_ns", 7_250_000_000)
    cam = Picamera2Camera(0, 32, 24, 50.0, 1.0, picamera2_cls=fake_cls(picams))
    cam.start()
    ts, received = [], []
    for _ in range(8):
        f = cam.read(1.0)
        received.append(time.monotonic())
        ts.append(f.t)
    cam.stop()
    assert "off the monotonic clock" in caplog.text
    # On the monotonic clock, never in the future, never the 7.25 s skew (bounds loose enough
    # for a loaded 2-core CI machine: what is checked is the clock, not the scheduler).
    assert all(0 <= r - t < 1.0 for t, r in zip(ts, received, strict=True))
    assert ts == sorted(ts)
    periods = [d / 0.02 for d in np.diff(ts)]
    assert all(p == pytest.approx(round(p), abs=0.45) for p in periods)  # delivery jitter


def test_picamera2_restarts_after_stop(picams) -> None:
    cam = Picamera2Camera(0, 32, 24, 100.0, 1.0, picamera2_cls=fake_cls(picams))
    cam.start()
    assert cam.read(1.0) is not None
    cam.stop()
    cam.start()
    assert cam.read(1.0) is not None
    cam.stop()
    assert len(picams) == 2


def test_picamera2_failures_are_camera_errors(picams, monkeypatch) -> None:
    with pytest.raises(CameraError, match=r"no Pi camera 3; libcamera sees 1 camera\(s\) \(0: imx"):
        Picamera2Camera(3, 32, 24, 30.0, 1.0, picamera2_cls=FakePicamera2).start()
    cam = Picamera2Camera(0, 32, 24, 30.0, 1.0, picamera2_cls=fake_cls(picams))
    cam.start()
    with pytest.raises(CameraError, match="cannot open Pi camera 0"):  # busy
        Picamera2Camera(0, 32, 24, 30.0, 1.0, picamera2_cls=fake_cls(picams)).start()
    picams[0].hang = True
    with pytest.raises(CameraError, match=r"no frame for 0\.1 s"):
        cam.read(0.1)
    picams[0].hang = False
    picams[0].fail = RuntimeError("Camera frontend has timed out!")
    with pytest.raises(CameraError, match="frontend has timed out"):
        cam.read(0.1)
    cam.stop()
    monkeypatch.setattr(FakePicamera2, "configure_error", RuntimeError("Configuration failed"))
    with pytest.raises(CameraError, match="cannot start Pi camera 0 at 32x24"):
        Picamera2Camera(0, 32, 24, 30.0, 1.0, picamera2_cls=fake_cls(picams)).start()
    assert not FakePicamera2.in_use  # a failed start closed what it opened


def test_picamera2_missing_library_names_the_apt_package(monkeypatch) -> None:
    monkeypatch.setattr(picamera2_camera, "_Picamera2", None)
    with pytest.raises(CameraError, match=r"sudo apt install python3-picamera2"):
        Picamera2Camera(0, 640, 480, 30.0, 5.0)


def test_fake_picamera2_keeps_the_real_request_contract(picams) -> None:
    pc = fake_cls(picams)(0)
    cfg = pc.create_video_configuration(main={"size": (32, 24)})
    assert cfg["main"]["format"] == "XBGR8888" and cfg["buffer_count"] == 6
    with pytest.raises(ValueError, match="Bad key"):
        pc.create_video_configuration(main={"fps": 30})
    pc.start(cfg)
    with pytest.raises(RuntimeError, match="stopped before configuring"):
        pc.configure(cfg)
    request = pc.capture_request(wait=1.0)
    assert request.make_array("main").shape == (24, 32, 4)
    with pytest.raises(RuntimeError, match="not defined"):
        request.make_array("lores")
    request.release()
    with pytest.raises(RuntimeError, match="negative ref_count"):
        request.release()
    assert "SensorTimestamp" in pc.capture_metadata(wait=1.0)
    assert pc.capture_array("main", wait=1.0).shape == (24, 32, 4)


def test_fake_picamera2_raises_the_real_exception_types(picams) -> None:
    with pytest.raises(IndexError):  # picamera2 indexes global_camera_info() first
        FakePicamera2(1)
    fake_cls(picams)(0)
    with pytest.raises(RuntimeError, match="Camera __init__ sequence did not complete"):
        FakePicamera2(0)


def test_fake_picamera2_keeps_a_timed_out_request_queued_and_stop_waits_behind_it(picams):
    """picamera2's queue, which the adapter must work around: without cancel_all_and_flush a
    stop() after a capture timeout never returns."""
    pc = fake_cls(picams)(0)
    pc.start(pc.create_video_configuration(main={"size": (32, 24)}, controls={"FrameRate": 50}))
    pc.capture_request(wait=1.0).release()
    pc.hang = True
    with pytest.raises(TimeoutError):
        pc.capture_request(wait=0.1)
    assert len(pc._job_list) == 1  # still queued
    outcome: list[BaseException | None] = []

    def stop() -> None:
        try:
            pc.stop()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    stopper = threading.Thread(target=stop, daemon=True)
    stopper.start()
    stopper.join(0.5)
    assert stopper.is_alive() and pc.started  # stuck behind the capture job
    pc.cancel_all_and_flush()  # cancels the stop job too, as in picamera2
    stopper.join(2.0)
    assert not stopper.is_alive() and isinstance(outcome[0], CancelledError)
    assert pc._job_list == [] and pc.started
    pc.stop()  # the queue is empty now: it runs at once
    assert not pc.started


def test_picamera2_stall_flushes_the_queue_so_stop_returns(picams) -> None:
    cam = Picamera2Camera(0, 32, 24, 50.0, 1.0, picamera2_cls=fake_cls(picams))
    cam.start()
    assert cam.read(1.0) is not None
    picams[0].hang = True  # the cable came loose
    with pytest.raises(CameraError, match=r"no frame for 0\.2 s"):
        cam.read(0.2)
    assert picams[0]._job_list == []  # cancelled and flushed before raising
    t0 = time.monotonic()
    cam.stop()
    assert time.monotonic() - t0 < 2.0
    assert not picams[0].is_open and not FakePicamera2.in_use


class StallingPicamera2(FakePicamera2):
    """Delivers ``stall_after`` frames, then none (the first camera of the reconnect test)."""

    stall_after = 8

    def _make_frame(self, k: int):
        request = super()._make_frame(k)
        if self.frames >= self.stall_after:
            self.hang = True
        return request


def test_station_reconnects_after_a_picamera2_stall(picams, cfg, caplog) -> None:
    from station.service import assemble

    caplog.set_level(logging.INFO)

    def open_camera(num: int) -> FakePicamera2:
        cam = (StallingPicamera2 if not picams else FakePicamera2)(num)
        picams.append(cam)
        return cam

    cfg = cfg.replace("camera", width=64, height=48, fps=30.0, read_timeout_s=0.3)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    camera = Picamera2Camera(0, 64, 48, 30.0, 0.3, picamera2_cls=open_camera)
    asm = assemble(cfg, camera=camera, live_view=False)
    stop = threading.Event()
    runner = threading.Thread(target=asm.station.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: len(picams) == 2 and picams[1].frames >= 10, timeout=8.0)
    finally:
        stop.set()
        runner.join(5.0)
    assert not runner.is_alive(), "the station hung stopping a stalled camera"
    asm.close()
    assert asm.station.stats.camera_losses == 1
    assert "camera is back" in caplog.text
    first = picams[0]
    assert first.hang and not first.is_open and first._job_list == []


def test_picamera2_takes_the_size_libcamera_adjusted_and_scales_back(
    picams, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(FakePicamera2, "width_align", 64)  # e.g. a 64-byte-aligned ISP output
    cam = Picamera2Camera(0, 100, 48, 50.0, 1.0, picamera2_cls=fake_cls(picams))
    cam.start()
    frame = cam.read(1.0)
    cam.stop()
    assert picams[0].camera_configuration()["main"]["size"] == (64, 48)
    assert cam.actual_size == (64, 48)
    assert "libcamera adjusted 100x48 to 64x48" in caplog.text
    assert frame.image.shape == (48, 100, 3)
    assert frame.image[10, 5].tolist() == [255, 0, 0] and frame.image[10, 95].tolist() == [
        0,
        0,
        255,
    ]


def test_picamera2_t_is_the_start_of_exposure_as_picamera2_defines_sensor_timestamp(picams):
    assert exposure_start_ns({"SensorTimestamp": 5_000_000_000, "ExposureTime": 12_000}) == (
        4_988_000_000
    )
    assert exposure_start_ns({"ExposureTime": 12_000}) is None
    cam = Picamera2Camera(0, 32, 24, 50.0, 1.0, picamera2_cls=fake_cls(picams))
    cam.start()
    pc = picams[0]
    for _ in range(5):
        f = cam.read(1.0)
        received = time.monotonic_ns()
        k = int(f.image[0, 0, 1])  # the fake writes the frame number into the picture
        start = pc.exposure_starts[k]
        assert f.t == pytest.approx(start / 1e9, abs=1e-6)  # not the end of exposure
        # Delivered after exposure (10 ms) + readout (3 ms): t is well before receipt.
        assert received - start >= (pc.exposure_us + pc.readout_us) * 1000
    cam.stop()


def test_picamera2_numpy_mismatch_gives_the_simplejpeg_hint(tmp_path) -> None:
    assert import_hint(ModuleNotFoundError("No module named 'picamera2'")) == INSTALL_HINT
    hint = import_hint(ValueError("numpy.dtype size changed, may indicate binary incompatibility"))
    assert "numpy.dtype size changed" in hint and "--force-reinstall --no-deps" in hint
    # The real import path: a picamera2 whose import raises as apt's does with numpy 2.
    (tmp_path / "picamera2.py").write_text(
        'raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. '
        'Expected 96 from C header, got 88 from PyObject")\n'
    )
    code = (
        "from station.errors import CameraError\n"
        "from station.capture.hardware.picamera2_camera import Picamera2Camera\n"
        "try:\n    Picamera2Camera()\nexcept CameraError as exc:\n    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stdout  # fmt: skip
    assert "picamera2 is installed but cannot load: numpy.dtype size changed" in out
    assert "pip install --force-reinstall --no-deps 'simplejpeg>=1.8.1'" in out


def _real_pi_camera() -> bool:
    if importlib.util.find_spec("picamera2") is None or not glob.glob("/dev/video*"):
        return False
    from picamera2 import Picamera2

    return bool(Picamera2.global_camera_info())


@pytest.mark.hardware
@pytest.mark.skipif(not _real_pi_camera(), reason="needs picamera2 and a Raspberry Pi camera")
def test_real_pi_camera_delivers_frames() -> None:
    cam = Picamera2Camera(0, 640, 480, 30.0, 5.0)
    cam.start()
    try:
        frames = [cam.read(5.0) for _ in range(10)]
    finally:
        cam.stop()
    assert all(f is not None and f.image.shape == (480, 640, 3) for f in frames)
    ts = [f.t for f in frames]
    assert ts == sorted(ts) and abs(ts[-1] - time.monotonic()) < 1.0


# ---- evdev --------------------------------------------------------------------------------


def feed_text(dec: KeyDecoder, evdev: FakeEvdev, text: str) -> list[str]:
    out = []
    for etype, code, value in evdev.key_events(text):
        if etype == ecodes.EV_KEY and (got := dec.feed(code, value)) is not None:
            out.append(got)
    return out


@pytest.mark.parametrize(
    "code",
    [
        "PO20261130-0001",
        "SF1234567890123",
        'Ab#1!@{}|~:"<>?_+',
        "a b/c.d,e;f'g[h]i\\j`k=l-m",
        "3388085504187641652",
    ],
)
def test_key_decoder_types_like_a_us_keyboard(code: str) -> None:
    evdev = FakeEvdev()
    assert feed_text(KeyDecoder(ecodes), evdev, code + "\n") == [code]


def test_key_decoder_caps_lock_ctrl_repeat_keypad_and_overflow() -> None:
    dec = KeyDecoder(ecodes, limit=5)
    k = ecodes
    seq = [(k.KEY_CAPSLOCK, 1), (k.KEY_CAPSLOCK, 0), (k.KEY_A, 1), (k.KEY_A, 2), (k.KEY_A, 0),
           (k.KEY_LEFTSHIFT, 1), (k.KEY_B, 1), (k.KEY_B, 0), (k.KEY_LEFTSHIFT, 0),
           (k.KEY_LEFTCTRL, 1), (k.KEY_RIGHTBRACE, 1), (k.KEY_LEFTCTRL, 0),
           (k.KEY_KP7, 1), (k.KEY_UP, 1), (k.KEY_KPENTER, 1)]  # fmt: skip
    assert [dec.feed(c, v) for c, v in seq][-1] == "Ab\x1d7"
    assert dec.feed(k.KEY_ENTER, 1) is None  # nothing typed: no empty scan
    for c in "123456789":
        dec.feed(getattr(k, f"KEY_{c}"), 1)
    assert dec.feed(k.KEY_TAB, 1) == "12345" and dec.overflow == 4


def caps_lock_scan(letters: str, digits: str) -> list[tuple[int, int]]:
    """How a scanner set to type capitals with Caps Lock types "LETTERS" + digits: Caps Lock
    on, the letters unshifted, Caps Lock off, the digits, Enter (down and up)."""
    k = ecodes
    keys = [k.KEY_CAPSLOCK, *(getattr(k, f"KEY_{c}") for c in letters), k.KEY_CAPSLOCK]
    keys += [*(getattr(k, f"KEY_{d}") for d in digits), k.KEY_ENTER]
    return [(key, v) for key in keys for v in (1, 0)]


@pytest.mark.parametrize("gap", [(0, 2), (6, 8)])  # the Caps Lock press going on, or off
def test_key_decoder_caps_lock_lost_with_a_damaged_scan_does_not_stick(
    gap: tuple[int, int],
) -> None:
    """Key events lost in a scan of a scanner that types capitals with Caps Lock took one of
    its Caps Lock presses with them: the damaged scan is discarded, and every later scan came
    out in the wrong case (the waybill SF1234567890123 as "sf1234567890123": no waybill but a
    new order, which ended the open clip as next-order). Caps Lock is off again when a
    damaged scan has ended, as the scanner left it."""
    dec = KeyDecoder(ecodes)
    damaged = caps_lock_scan("SF", "1234567890123")
    for code, value in damaged[: gap[0]]:
        dec.feed(code, value)
    dec.lost()
    got = [dec.feed(code, value) for code, value in damaged[gap[1] :]]
    assert got.count(None) == len(got)  # discarded
    again = [dec.feed(code, value) for code, value in caps_lock_scan("SF", "1234567890123")]
    assert [g for g in again if g is not None] == ["SF1234567890123"]
    evdev = FakeEvdev()
    assert feed_text(dec, evdev, "PO-1\n") == ["PO-1"]  # a scanner typing capitals with Shift


def alt_code_events(text: str) -> list[tuple[int, int, int]]:
    """How a scanner types characters its keyboard layout lacks (e.g. a Chinese seal card):
    Alt held while the code point's decimal digits are typed on the keypad, per character."""
    k = ecodes
    out: list[tuple[int, int, int]] = []
    for ch in text:
        out.append((k.EV_KEY, k.KEY_LEFTALT, 1))
        for d in str(ord(ch)):
            key = getattr(k, f"KEY_KP{d}")
            out += [(k.EV_KEY, key, 1), (k.EV_KEY, key, 0)]
        out.append((k.EV_KEY, k.KEY_LEFTALT, 0))
    return out


def test_key_decoder_discards_a_scan_typed_with_alt_codes() -> None:
    """The seal card 封箱 typed as Alt+keypad codes must not become the number 2355331665:
    with the default config that is an order, which ends the open clip as next-order and
    starts a clip of its own. Keystrokes under Alt cannot be read as a US keyboard: the
    scan is discarded (up to its Enter), and the next one is read as usual."""
    dec = KeyDecoder(ecodes)
    got = [dec.feed(c, v) for t, c, v in alt_code_events("封箱") if t == ecodes.EV_KEY]
    assert [g for g in got if g is not None] == []
    assert dec.feed(ecodes.KEY_ENTER, 1) is None
    assert dec.refused == "typed with Alt key codes"
    evdev = FakeEvdev()
    assert feed_text(dec, evdev, "PO-1\n") == ["PO-1"]
    assert dec.refused == ""


@pytest.fixture
def bus() -> FakeEvdev:
    evdev = FakeEvdev()
    evdev.add("/dev/input/event0", "AT Translated Set 2 keyboard")
    evdev.add("/dev/input/event1", "Logitech USB Optical Mouse", MOUSE_CAPS)
    evdev.add("/dev/input/event4", "Honeywell Imaging & Mobility 1900")
    return evdev


def test_find_scanner_prefers_a_scanner_name_then_the_only_keyboard(bus: FakeEvdev) -> None:
    assert find_scanner(bus) == ("/dev/input/event4", "Honeywell Imaging & Mobility 1900")
    assert bus.opened == bus.closed == 3
    bus.unplug("/dev/input/event4")
    assert find_scanner(bus) == ("/dev/input/event0", "AT Translated Set 2 keyboard")


def test_find_scanner_refuses_to_guess_between_keyboards(bus, caplog) -> None:
    bus.unplug("/dev/input/event4")
    bus.add("/dev/input/event5", "Dell KB216 Wired Keyboard")
    assert find_scanner(bus) is None
    assert "set scanner.evdev_device" in caplog.text


@pytest.fixture
def scanner(bus: FakeEvdev) -> Iterator[EvdevScanner]:
    s = EvdevScanner("", grab=True, evdev_module=bus, retry_max_s=0.05)
    yield s
    s.stop()


def test_evdev_scanner_grabs_the_scanner_and_decodes_scans(bus, scanner) -> None:
    assert isinstance(scanner, ScanSource)
    desktop = bus.InputDevice("/dev/input/event4")  # e.g. the window system
    scanner.start()
    wait_for(scanner.connected.is_set)
    assert scanner.device_path == "/dev/input/event4"
    before = time.monotonic()
    bus.type("/dev/input/event4", "PO20261130-0001\nSF1234567890123\n")
    bus.type("/dev/input/event0", "typed on the real keyboard\n")
    wait_for(lambda: scanner.scans == 2)
    events = scanner.poll(time.monotonic())
    assert [e.text for e in events] == ["PO20261130-0001", "SF1234567890123"]
    assert all(isinstance(e, RawScan) and e.source == "keyboard" for e in events)
    assert all(before <= e.t <= time.monotonic() for e in events)
    with pytest.raises(BlockingIOError):
        list(desktop.read())  # grabbed: nothing leaked to the desktop
    desktop.close()


def test_evdev_scanner_survives_unplug_and_replug(bus, scanner, caplog) -> None:
    caplog.set_level(logging.INFO)
    scanner.start()
    wait_for(scanner.connected.is_set)
    bus.send("/dev/input/event4", bus.key_events("HALF")[:-3])  # unplugged mid-scan
    bus.unplug("/dev/input/event4")
    wait_for(lambda: not scanner.connected.is_set())
    assert "went away" in caplog.text
    assert scanner.poll(time.monotonic()) == []
    bus.replug("/dev/input/event4", "/dev/input/event9")
    wait_for(scanner.connected.is_set)
    assert scanner.device_path == "/dev/input/event9" and scanner.reconnects == 1
    bus.type("/dev/input/event9", "YT1234567890123\n")
    wait_for(lambda: scanner.scans == 1)
    assert [e.text for e in scanner.poll(time.monotonic())] == ["YT1234567890123"]
    scanner.stop()
    assert bus.opened == bus.closed  # every handle closed (auto-detect probes included)


def test_evdev_scanner_discards_a_scan_whose_key_events_were_lost(bus, scanner, caplog) -> None:
    # The reader fell behind and the kernel's buffer overflowed in the middle of a scan: it
    # dropped the unread events and says so with SYN_DROPPED. What arrives around the gap
    # ("PO2026" and "0001") is not the scanned code PO20261130-0001: it must not become a
    # scan (an order that was never scanned would start a clip). The next scan is whole.
    scanner.start()
    wait_for(scanner.connected.is_set)
    typed = bus.key_events("PO20261130-0001\n")
    head, tail = typed[: 2 * 12 + 4 * 6], typed[-5 * 6 :]  # "PO2026" and "0001\n"
    dropped = (ecodes.EV_SYN, ecodes.SYN_DROPPED, 0)
    bus.send("/dev/input/event4", [*head, dropped, *tail])
    bus.type("/dev/input/event4", "PO20261130-0002\n")
    got: list[str] = []

    def arrived() -> bool:
        got.extend(e.text for e in scanner.poll(time.monotonic()) if isinstance(e, RawScan))
        return "PO20261130-0002" in got

    wait_for(arrived)
    assert got == ["PO20261130-0002"]
    assert "key events were lost" in caplog.text


def test_evdev_scanner_discards_a_scan_typed_with_alt_codes(bus, scanner, caplog) -> None:
    scanner.start()
    wait_for(scanner.connected.is_set)
    enter = bus.key_events("\n")
    bus.send("/dev/input/event4", [*alt_code_events("封箱"), *enter])
    bus.type("/dev/input/event4", "PO20261130-0003\n")
    got: list[str] = []

    def arrived() -> bool:
        got.extend(e.text for e in scanner.poll(time.monotonic()) if isinstance(e, RawScan))
        return "PO20261130-0003" in got

    wait_for(arrived)
    assert got == ["PO20261130-0003"]
    assert "typed with Alt key codes" in caplog.text


def test_evdev_scanner_waits_for_a_named_device(bus, caplog) -> None:
    s = EvdevScanner("/dev/input/event7", grab=False, evdev_module=bus, retry_max_s=0.05)
    s.start()
    try:
        wait_for(lambda: "no barcode scanner at /dev/input/event7" in caplog.text)
        bus.add("/dev/input/event7", "WIT 122-UFS V2.03")
        wait_for(s.connected.is_set)
        bus.type("/dev/input/event7", "SEAL\n")
        wait_for(lambda: s.scans == 1)
        assert s.poll(0.0)[0].text == "SEAL"
    finally:
        s.stop()


def test_evdev_scanner_reads_without_grab_when_someone_else_holds_it(bus, caplog) -> None:
    other = bus.InputDevice("/dev/input/event4")
    other.grab()
    s = EvdevScanner("/dev/input/event4", grab=True, evdev_module=bus)
    s.start()
    try:
        wait_for(s.connected.is_set)
        assert "cannot grab" in caplog.text
    finally:
        s.stop()
        other.close()


def test_evdev_scanner_explains_missing_permission(bus, caplog) -> None:
    bus.denied.add("/dev/input/event4")
    s = EvdevScanner("/dev/input/event4", evdev_module=bus, retry_max_s=0.05)
    s.start()
    try:
        wait_for(lambda: "group 'input'" in caplog.text)
    finally:
        s.stop()


def test_evdev_auto_detect_names_devices_the_user_may_not_open(bus, caplog) -> None:
    """python-evdev's list_devices() hides what the user may not open: the hint must not."""
    bus.unplug("/dev/input/event0")  # a Pi has no keyboard of its own
    bus.denied.add("/dev/input/event4")
    assert "/dev/input/event4" not in bus.list_devices()
    s = EvdevScanner(evdev_module=bus, retry_max_s=0.05, list_unreadable=bus.unreadable)
    s.start()
    try:
        wait_for(lambda: "add the service user to the input group" in caplog.text)
    finally:
        s.stop()
    assert "no barcode scanner at any input device" in caplog.text
    assert "1 input device(s) exist that user" in caplog.text and "/dev/input/event4" in caplog.text


def test_evdev_without_unreadable_devices_gives_no_group_hint(bus, caplog) -> None:
    bus.unplug("/dev/input/event0")
    bus.unplug("/dev/input/event4")
    s = EvdevScanner(evdev_module=bus, retry_max_s=0.05, list_unreadable=bus.unreadable)
    s.start()
    try:
        wait_for(lambda: "no barcode scanner" in caplog.text)
    finally:
        s.stop()
    assert "input group" not in caplog.text


def test_unreadable_input_devices_checks_event_nodes_with_access(tmp_path) -> None:
    for name in ("event0", "event1", "event2", "mice", "js0"):
        (tmp_path / name).write_text("")
    denied = {str(tmp_path / "event1"), str(tmp_path / "mice")}
    found = unreadable_input_devices(
        str(tmp_path),
        access=lambda p, mode: mode == os.R_OK | os.W_OK and p not in denied,
        is_char_device=lambda p: not p.endswith("event2"),
    )
    assert found == [str(tmp_path / "event1")]  # mice is not an event node; event2 no device
    assert unreadable_input_devices(str(tmp_path)) == []  # regular files: not devices
    assert permission_hint([]) == ""
    hint = permission_hint([f"/dev/input/event{i}" for i in range(6)], user="packcam-station")
    assert hint.startswith("6 input device(s) exist that user 'packcam-station' may not open")
    assert "/dev/input/event3, ..." in hint and "sudo usermod -aG input packcam-station" in hint


@pytest.mark.skipif(importlib.util.find_spec("evdev") is not None, reason="evdev is installed")
def test_evdev_missing_library_is_a_scanner_error() -> None:
    with pytest.raises(ScannerError, match="pip install evdev"):
        EvdevScanner().start()


# ---- the pedal, on gpiozero's own mock pins -----------------------------------------------


@pytest.fixture
def mock_factory():
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    yield factory
    factory.close()


def test_pedal_press_becomes_a_pedal_event(mock_factory) -> None:
    pedal = GpioPedal(17, pin_factory=mock_factory)
    assert isinstance(pedal, ScanSource)
    pedal.start()
    pin = mock_factory.pin(17)
    assert pin.state == 1  # pulled up: released reads high
    before = time.monotonic()
    pin.drive_low()
    pin.drive_high()
    wait_for(lambda: pedal.presses == 1)
    time.sleep(0.08)  # past the 50 ms bounce window
    pin.drive_low()
    pin.drive_high()
    wait_for(lambda: pedal.presses == 2)
    events = pedal.poll(time.monotonic())
    assert len(events) == 2 and all(isinstance(e, PedalPress) for e in events)
    assert all(before <= e.t <= time.monotonic() and e.source == "pedal" for e in events)
    pedal.stop()
    again = GpioPedal(17, pin_factory=mock_factory)  # the pin was released
    again.start()
    again.stop()


def test_pedal_bounce_is_swallowed(mock_factory) -> None:
    pedal = GpioPedal(27, pin_factory=mock_factory)
    pedal.start()
    pin = mock_factory.pin(27)
    for _ in range(5):  # contact chatter within a few milliseconds
        pin.drive_low()
        pin.drive_high()
    time.sleep(0.1)
    assert pedal.presses == 1
    pedal.stop()


def test_pedal_errors_are_scanner_errors(mock_factory, monkeypatch) -> None:
    with pytest.raises(ScannerError, match="cannot use GPIO99"):
        GpioPedal(99, pin_factory=mock_factory).start()
    monkeypatch.setitem(sys.modules, "gpiozero", None)
    with pytest.raises(ScannerError, match="gpiozero is not installed"):
        GpioPedal(17).start()
