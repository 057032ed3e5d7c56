"""The hardware adapters against fakes with the real libraries' shape, and gpiozero's MockFactory.

picamera2 and python-evdev cannot work here (no libcamera, no input devices), so
``tests/fakes`` stands in for them; the pedal runs on gpiozero itself with its mock pins. A
test at the end uses a real Pi camera and is skipped anywhere else.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fakes.evdev import MOUSE_CAPS, FakeEvdev, ecodes
from fakes.picamera2 import Picamera2 as FakePicamera2

from station.errors import CameraError, ScannerError
from station.frames import FrameSource, PedalPress, RawScan, ScanSource
from station.hardware import picamera2_camera
from station.hardware.evdev_scanner import EvdevScanner, KeyDecoder, find_scanner
from station.hardware.gpio_pedal import GpioPedal
from station.hardware.picamera2_camera import Picamera2Camera


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
    assert "off the boot-time clock" in caplog.text
    assert all(0 <= r - t < 0.1 for t, r in zip(ts, received, strict=True))
    assert ts == sorted(ts)
    periods = [d / 0.02 for d in np.diff(ts)]
    assert all(p == pytest.approx(round(p), abs=0.25) for p in periods)  # delivery jitter


def test_picamera2_restarts_after_stop(picams) -> None:
    cam = Picamera2Camera(0, 32, 24, 100.0, 1.0, picamera2_cls=fake_cls(picams))
    cam.start()
    assert cam.read(1.0) is not None
    cam.stop()
    cam.start()
    assert cam.read(1.0) is not None
    cam.stop()
    assert len(picams) == 2


def test_picamera2_failures_are_camera_errors(picams) -> None:
    with pytest.raises(CameraError, match="cannot open Pi camera 3"):
        Picamera2Camera(3, 32, 24, 30.0, 1.0, picamera2_cls=fake_cls(picams)).start()
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
    with pytest.raises(CameraError, match="cannot start Pi camera 0 at 33x24"):
        Picamera2Camera(0, 33, 24, 30.0, 1.0, picamera2_cls=fake_cls(picams)).start()
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
