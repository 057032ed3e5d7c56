"""The one place the station's backends are registered and chosen by config (gpiozero's model)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from station.capture.camera import OpenCVCamera
from station.capture.frames import FrameSource, ScanSource
from station.capture.hardware import mock_evdev, mock_picamera2
from station.capture.hardware.evdev_scanner import EvdevScanner
from station.capture.hardware.gpio_pedal import GpioPedal
from station.capture.hardware.picamera2_camera import Picamera2Camera
from station.capture.scanner import ScriptedScanner, StdinScanner
from station.capture.synthetic import Scenario, SyntheticCamera, load_scenario
from station.config import CAMERA_BACKENDS, Config
from station.config import KEYBOARD_SCANNERS as KEYBOARDS
from station.errors import ConfigError
from station.floor.feedback import AplaySink, Feedback, LogSink, SoundSink, prepare_sounds
from station.floor.packer_inbox import ScreenSignIn
from station.runtime.localzone import station_tz

log = logging.getLogger(__name__)

# ``[camera] backend`` -> its frame source; ``realtime`` only matters to the synthetic camera
# (False: as fast as it is read, ``t = index / fps``, for tests and replays).
CameraFactory = Callable[[Config, bool], FrameSource]
# ``[scanner] keyboard`` -> the keyboard-wedge scanner source (None: no keyboard).
KeyboardFactory = Callable[[Config], ScanSource | None]
# ``[feedback] output`` -> where the sounds go ("none" builds no feedback at all).
SinkFactory = Callable[[Config], SoundSink]

# The mock scanner's one device: a keyboard named like a scanner, so auto-detection finds it.
MOCK_SCANNER_PATH = "/dev/input/event0"
MOCK_SCANNER_NAME = "Mock barcode scanner"


def _synthetic(cfg: Config, realtime: bool) -> FrameSource:
    c = cfg.camera
    return SyntheticCamera(
        c.width, c.height, c.fps, load_scenario(c), realtime, tz=station_tz(cfg),
        pixel_format=c.pixel_format,
    )  # fmt: skip


def _opencv(cfg: Config, realtime: bool) -> FrameSource:
    c = cfg.camera
    return OpenCVCamera(c.source, c.width, c.height, c.fps, c.read_timeout_s, tz=station_tz(cfg))


def _picamera2(cfg: Config, realtime: bool, *, mock: bool = False) -> FrameSource:
    c = cfg.camera
    if not c.source.strip().isdigit():
        raise ConfigError(f"camera.source must be a camera number for picamera2, not {c.source!r}")
    return Picamera2Camera(
        int(c.source), c.width, c.height, c.fps, c.read_timeout_s,
        mock_picamera2.Picamera2 if mock else None, tz=station_tz(cfg), pixel_format=c.pixel_format,
        colour_space_cls=mock_picamera2.ColorSpace if mock else None,
    )  # fmt: skip


def _mock_camera(cfg: Config, realtime: bool) -> FrameSource:
    """The picamera2 adapter on the mock picamera2 (station/capture/hardware/mock_picamera2.py): the
    Pi camera's whole code path, on a machine without one."""
    return _picamera2(cfg, realtime, mock=True)


CAMERAS: dict[str, CameraFactory] = {
    "synthetic": _synthetic,
    "opencv": _opencv,
    "picamera2": _picamera2,
    "mock": _mock_camera,
}


def _evdev(cfg: Config) -> ScanSource:
    return EvdevScanner(cfg.scanner.evdev_device, grab=cfg.scanner.evdev_grab)


class MockScanner(EvdevScanner):
    """The evdev adapter on a mock input bus (station/capture/hardware/mock_evdev.py) with one
    scanner plugged in: type on it with ``bus.type(MOCK_SCANNER_PATH, "PO-1\\n")``."""

    def __init__(self, device: str = "", grab: bool = True) -> None:
        self.bus = mock_evdev.FakeEvdev()
        self.bus.add(MOCK_SCANNER_PATH, MOCK_SCANNER_NAME)
        super().__init__(device, grab, self.bus, list_unreadable=self.bus.unreadable)


def _mock_keyboard(cfg: Config) -> ScanSource:
    return MockScanner(cfg.scanner.evdev_device, grab=cfg.scanner.evdev_grab)


KEYBOARD_SCANNERS: dict[str, KeyboardFactory] = {
    "none": lambda cfg: None,
    "stdin": lambda cfg: StdinScanner(),
    "evdev": _evdev,
    "mock": _mock_keyboard,
}

SOUND_SINKS: dict[str, SinkFactory] = {
    "alsa": lambda cfg: AplaySink(cfg.feedback.device, cfg.feedback.player),
    "log": lambda cfg: LogSink(cfg.station.data_dir / "sounds.log"),
}


F = TypeVar("F")


def _choose(registry: dict[str, F], key: str, value: str) -> F:
    try:
        return registry[value]
    except KeyError:
        raise ConfigError(f"unknown {key} {value!r}: one of {', '.join(registry)}") from None


def build_camera(cfg: Config, *, realtime: bool = True) -> FrameSource:
    """The frame source ``[camera] backend`` names."""
    return _choose(CAMERAS, "camera backend", cfg.camera.backend)(cfg, realtime)


def build_scan_sources(
    cfg: Config, scenario: Scenario | None = None, *, scripted: bool = True
) -> list[ScanSource]:
    """The keyboard, pedal, scripted and station-screen sign-in sources ``cfg`` asks for (not
    camera decoding).

    A synthetic camera brings its scenario's scripted keyboard and pedal; pass the camera's
    ``scenario`` so both walk the same script (it is loaded from ``cfg`` otherwise); with
    ``scripted`` False there is none (the frames come from a source that walks no script). The
    pedal runs on gpiozero's pin factory: ``GPIOZERO_PIN_FACTORY=mock`` gives gpiozero's own
    mock pins.
    """
    sc = cfg.scanner
    sources: list[ScanSource] = []
    keyboard = _choose(KEYBOARD_SCANNERS, "scanner keyboard", sc.keyboard)(cfg)
    if keyboard is not None:
        sources.append(keyboard)
    if sc.pedal_gpio >= 0:
        sources.append(GpioPedal(sc.pedal_gpio))
    if scripted and cfg.camera.backend == "synthetic":
        sources.append(ScriptedScanner(scenario or load_scenario(cfg.camera)))
    if cfg.screen.packers:
        sources.append(ScreenSignIn(cfg.station.data_dir, cfg.station.name, cfg.screen.packers))
    return sources


def build_feedback(cfg: Config, *, sink: SoundSink | None = None) -> Feedback | None:
    """The station's feedback listener from ``[feedback]``, or None when output is "none"."""
    fb = cfg.feedback
    if fb.output == "none" and sink is None:
        return None
    directory = Path(fb.sounds_dir) if fb.sounds_dir else cfg.station.data_dir / "sounds"
    sounds = prepare_sounds(directory, volume=fb.volume, voice=fb.voice)
    if sink is None:
        sink = _choose(SOUND_SINKS, "feedback output", fb.output)(cfg)
    log.info("feedback sounds: %s to %s (voice %s)", fb.output, fb.device, fb.voice)
    return Feedback(sink, sounds)


__all__ = [
    "CAMERAS",
    "CAMERA_BACKENDS",
    "KEYBOARDS",
    "KEYBOARD_SCANNERS",
    "MOCK_SCANNER_NAME",
    "MOCK_SCANNER_PATH",
    "SOUND_SINKS",
    "MockScanner",
    "build_camera",
    "build_feedback",
    "build_scan_sources",
]
