"""Backends are registered once (station/backends.py) and chosen by config; "mock" runs the Pi
camera and scanner adapters on the mock libraries shipped in station/capture/hardware/."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from station import backends
from station import config as config_mod
from station.capture.frames import PedalPress, RawScan
from station.capture.hardware.mock_picamera2 import Picamera2 as MockPicamera2
from station.capture.hardware.picamera2_camera import Picamera2Camera
from station.capture.scanner import ScriptedScanner
from station.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_each_config_choice_has_exactly_one_registered_backend() -> None:
    assert list(backends.CAMERAS) == list(config_mod.CAMERA_BACKENDS)
    assert list(backends.KEYBOARD_SCANNERS) == list(config_mod.KEYBOARD_SCANNERS)


def test_every_sound_sink_is_an_output_the_config_accepts(cfg: config_mod.Config) -> None:
    for output in backends.SOUND_SINKS:
        sink = backends.SOUND_SINKS[output](cfg.replace("feedback", output=output))
        sink.close()
    with pytest.raises(ConfigError, match=r"feedback\.output"):
        cfg.replace("feedback", output="mock-speaker")


def test_mock_camera_from_a_config_file_runs_the_picamera2_adapter(tmp_path: Path) -> None:
    path = tmp_path / "packcam.toml"
    path.write_text(
        f'[station]\ndata_dir = "{tmp_path / "data"}"\n'
        '[camera]\nbackend = "mock"\nsource = "0"\nwidth = 64\nheight = 48\nfps = 50\n'
        'pixel_format = "i420"\n',
        encoding="utf-8",
    )
    cam = backends.build_camera(config_mod.load(path))
    assert isinstance(cam, Picamera2Camera) and cam.live
    cam.start()
    try:
        frames = [cam.read(2.0) for _ in range(3)]
    finally:
        cam.stop()
    assert all(f is not None for f in frames)
    assert frames[0] is not None and frames[0].luma.shape == (48, 64)
    assert frames[0].t < frames[1].t < frames[2].t  # type: ignore[union-attr]
    assert not MockPicamera2.in_use  # stop closed the mock camera


def test_mock_camera_needs_a_camera_number_like_picamera2(cfg: config_mod.Config) -> None:
    with pytest.raises(ConfigError, match="camera number"):
        backends.build_camera(cfg.replace("camera", backend="mock", source="/dev/video0"))


def test_mock_keyboard_reads_what_is_typed_on_its_scanner(cfg: config_mod.Config) -> None:
    live = cfg.replace("camera", backend="opencv", source="0")
    (scanner,) = backends.build_scan_sources(live.replace("scanner", keyboard="mock"))
    assert isinstance(scanner, backends.MockScanner)
    scanner.start()
    try:
        assert scanner.connected.wait(5.0)
        assert scanner.device_name == backends.MOCK_SCANNER_NAME
        scanner.bus.type(backends.MOCK_SCANNER_PATH, "PO-77\n")
        got: list[object] = []
        deadline = time.monotonic() + 5.0
        while not got and time.monotonic() < deadline:
            got = list(scanner.poll(time.monotonic()))
            time.sleep(0.01)
    finally:
        scanner.stop()
    assert [e.text for e in got if isinstance(e, RawScan)] == ["PO-77"]


def test_the_synthetic_camera_brings_its_scripted_keyboard(cfg: config_mod.Config) -> None:
    sources = backends.build_scan_sources(cfg.replace("scanner", keyboard="mock"))
    assert [type(s) for s in sources] == [backends.MockScanner, ScriptedScanner]
    script = sources[1]
    script.start()
    script.poll(0.0)  # scene time 0
    events = script.poll(600.0)
    assert any(isinstance(e, RawScan) for e in events)
    assert any(isinstance(e, PedalPress) for e in events)


HARDWARE_LIBRARIES = ("picamera2", "libcamera", "evdev", "gpiozero")


def test_each_hardware_library_is_imported_by_one_adapter_module() -> None:
    importers: dict[str, set[str]] = {lib: set() for lib in HARDWARE_LIBRARIES}
    for pkg in ("packcam", "station", "web", "central"):
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                for name in names:
                    if name.split(".")[0] in importers:
                        importers[name.split(".")[0]].add(str(path.relative_to(ROOT)))
    assert importers == {
        "picamera2": {"station/capture/hardware/picamera2_camera.py"},
        "libcamera": {"station/capture/hardware/picamera2_camera.py"},
        "evdev": {"station/capture/hardware/evdev_scanner.py"},
        "gpiozero": {"station/capture/hardware/gpio_pedal.py"},
    }
