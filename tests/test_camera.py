"""OpenCV frame sources on real video files and a scripted capture device; the backend chooser."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_clock import FakeClock

from station.backends import build_camera
from station.capture.camera import OpenCVCamera, classify_source, fit_image
from station.capture.frames import FrameSource
from station.capture.synthetic import SyntheticCamera
from station.config import CAMERA_BACKENDS
from station.errors import CameraError, ConfigError


def write_video(path: Path, fourcc: str, n: int = 12, fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (160, 120))
    assert writer.isOpened()
    for i in range(n):
        img = np.full((120, 160, 3), 20 * i % 256, np.uint8)
        cv2.putText(img, str(i), (50, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        writer.write(img)
    writer.release()


@pytest.mark.parametrize(("fourcc", "ext"), [("mp4v", "mp4"), ("MJPG", "avi")])
def test_file_frames_in_order_with_presentation_times(tmp_path: Path, fourcc: str, ext: str):
    video = tmp_path / f"clip.{ext}"
    write_video(video, fourcc)
    start = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    cam = OpenCVCamera(str(video), 160, 120, 30.0, start_wall=start)
    assert isinstance(cam, FrameSource)
    cam.start()
    assert not cam.live and cam.fps == pytest.approx(10.0)  # the file's rate wins
    frames = list(iter(cam.read, None))
    assert len(frames) == 12
    assert [f.index for f in frames] == list(range(12))
    for f in frames:
        assert f.t == pytest.approx(f.index / 10.0, abs=0.011)
        assert f.wall == start + timedelta(seconds=f.t)
        assert f.image.shape == (120, 160, 3)
    assert cam.read() is None  # still the end
    cam.stop()
    assert cam.dropped == 0


def test_file_frames_are_resized_and_wall_time_defaults_to_mtime_minus_duration(tmp_path: Path):
    video = tmp_path / "clip.avi"
    write_video(video, "MJPG", n=20, fps=10.0)
    mtime = datetime(2026, 11, 30, 12, 0, 2).timestamp()
    os.utime(video, (mtime, mtime))
    cam = OpenCVCamera(str(video), 320, 240, 10.0)
    cam.start()
    first = cam.read()
    assert first is not None
    assert first.image.shape == (240, 320, 3)
    assert first.wall.tzinfo is not None
    assert first.wall == datetime.fromtimestamp(mtime - 2.0).astimezone()
    cam.stop()
    assert cam.read() is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.mp4", "video file not found"),
        ("notavideo.mp4", "cannot open video file"),
        ("/dev/video99", "cannot open camera '/dev/video99'"),
        ("rtsp://127.0.0.1:9/stream", "cannot open camera 'rtsp://127.0.0.1:9/stream'"),
    ],
)
def test_open_failures_are_camera_errors(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "notavideo.mp4").write_text("not a video", encoding="utf-8")
    if not source.startswith(("/", "rtsp")):
        source = str(tmp_path / source)
    cam = OpenCVCamera(source, 160, 120, 10.0, read_timeout_s=1.0)
    with pytest.raises(CameraError, match=message):
        cam.start()


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("0", ("device", 0)),
        (" 2 ", ("device", 2)),
        ("/dev/video0", ("v4l2", "/dev/video0")),
        ("/dev/v4l/by-id/usb-cam-video-index0", ("v4l2", "/dev/v4l/by-id/usb-cam-video-index0")),
        ("rtsp://cam.local/stream1", ("stream", "rtsp://cam.local/stream1")),
        ("http://cam.local/video.mjpg", ("stream", "http://cam.local/video.mjpg")),
        ("clips/table.mp4", ("file", "clips/table.mp4")),
    ],
)
def test_classify_source(source: str, kind: tuple) -> None:
    assert classify_source(source) == kind


def test_fit_image_makes_bgr_of_the_asked_size() -> None:
    assert fit_image(np.zeros((10, 20), np.uint8), 8, 4).shape == (4, 8, 3)
    assert fit_image(np.zeros((10, 20, 4), np.uint8), 20, 10).shape == (10, 20, 3)
    img = np.zeros((10, 20, 3), np.uint8)
    assert fit_image(img, 20, 10) is img  # no copy when nothing to do


class ScriptedCapture:
    """A cv2.VideoCapture stand-in for a live device whose frames the test hands out
    (``deliver``); each one moves ``clock`` on by a frame period as it is grabbed. With none
    to hand out, ``read`` fails after a moment, like a device read that timed out;
    ``unplug`` makes every read fail."""

    def __init__(self, size: tuple[int, int], clock: FakeClock, fps: float = 100.0) -> None:
        self.size, self.clock, self.period = size, clock, 1.0 / fps
        self.props: dict[int, float] = {}
        self.reads = 0  # frames handed out
        self.released = threading.Event()
        self._cond = threading.Condition()
        self._queued = 0
        self._unplugged = False
        self._entered_after = -1  # ``reads`` when ``read`` was last entered

    def isOpened(self) -> bool:  # OpenCV's spelling
        return True

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        with self._cond:
            self._entered_after = self.reads
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._queued or self._unplugged, timeout=0.02):
                return False, None
            if self._unplugged:
                return False, None
            self._queued -= 1
            self.reads += 1
            self.clock.advance(self.period)
            n = self.reads
        w, h = self.size
        return True, np.full((h, w, 3), n % 256, np.uint8)

    def deliver(self, n: int) -> None:
        """Hand out ``n`` frames and return once the grab thread has taken all of them and
        is back for the next (so the newest is the camera's latest)."""
        with self._cond:
            target = self.reads + self._queued + n
            self._queued += n
            self._cond.notify_all()
            assert self._cond.wait_for(lambda: self._entered_after == target, timeout=30)

    def unplug(self) -> None:
        with self._cond:
            self._unplugged = True
            self._cond.notify_all()

    def release(self) -> None:
        self.released.set()


class Factory:
    def __init__(self, *caps: ScriptedCapture) -> None:
        self.caps = list(caps)
        self.calls: list[tuple] = []

    def __call__(self, source, api, params):
        self.calls.append((source, api, tuple(params)))
        return self.caps.pop(0) if len(self.caps) > 1 else self.caps[0]


def test_live_device_keeps_the_newest_frame_and_counts_drops() -> None:
    clock = FakeClock()
    cap = ScriptedCapture((320, 240), clock, fps=100)
    factory = Factory(cap)
    cam = OpenCVCamera("0", 160, 120, 30.0, read_timeout_s=1.0, capture_factory=factory,
                       clock=clock)  # fmt: skip
    cam.start()
    try:
        assert cam.live
        assert factory.calls[0][:2] == (0, cv2.CAP_ANY)
        assert cap.props[cv2.CAP_PROP_FRAME_WIDTH] == 160
        assert cap.props[cv2.CAP_PROP_BUFFERSIZE] == 1
        cap.deliver(1)
        f1 = cam.read(30)
        assert f1 is not None and f1.image.shape == (120, 160, 3)  # resized
        assert f1.t == clock() and f1.wall.tzinfo is not None  # stamped at the grab
        assert int(f1.image[0, 0, 0]) == 1
        cap.deliver(15)  # 15 frames arrive before the next read; only the newest is kept
        f2 = cam.read(30)
        assert f2 is not None and f2.index == f1.index + 15 and int(f2.image[0, 0, 0]) == 16
        assert f2.t == clock() == pytest.approx(f1.t + 15 * cap.period)
        assert cam.dropped == 14
    finally:
        cam.stop()
    assert cap.released.is_set()
    assert cam.read() is None


def test_live_device_that_stops_delivering_is_released_and_reopened_by_start() -> None:
    clock = FakeClock()
    dead = ScriptedCapture((160, 120), clock)
    fresh = ScriptedCapture((160, 120), clock)
    factory = Factory(dead, fresh)
    cam = OpenCVCamera("/dev/video0", 160, 120, 30.0, read_timeout_s=0.3,
                       capture_factory=factory, clock=clock)  # fmt: skip
    cam.start()
    try:
        assert factory.calls[0][1] == cv2.CAP_V4L2
        dead.deliver(1)
        assert cam.read(30) is not None
        dead.unplug()
        with pytest.raises(CameraError, match="no frame for"):
            cam.read(0.1)  # nothing new yet, but the device is not given up: its clock stands
        assert not dead.released.is_set()
        clock.advance(0.31)  # read_timeout_s without frames: the grab thread lets the device go
        with pytest.raises(CameraError, match=r"no frames for 0\.3 s"):
            cam.read(30)  # as soon as the grab thread gives up, not when the 30 s are up
        assert dead.released.wait(30) and len(factory.calls) == 1  # no reconnect loop in here
        cam.stop()
        cam.start()  # the station's reconnect
        fresh.deliver(1)
        frame = cam.read(30)
        assert frame is not None
        assert len(factory.calls) == 2
    finally:
        cam.stop()


def test_stream_gets_ffmpeg_timeouts() -> None:
    factory = Factory(ScriptedCapture((160, 120), FakeClock()))
    cam = OpenCVCamera("rtsp://cam/s", 160, 120, 30.0, read_timeout_s=2.0, capture_factory=factory)
    cam.start()
    cam.stop()
    source, api, params = factory.calls[0]
    assert source == "rtsp://cam/s"
    assert api == cv2.CAP_FFMPEG
    assert params == (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 2000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 2000)


def test_build_camera_chooses_the_backend(cfg) -> None:
    cam = build_camera(cfg, realtime=False)
    assert isinstance(cam, SyntheticCamera) and not cam.live
    assert isinstance(build_camera(cfg), SyntheticCamera)
    cv = build_camera(cfg.replace("camera", backend="opencv", source="/tmp/x.mp4"))
    assert isinstance(cv, OpenCVCamera) and cv.kind == "file"
    with pytest.raises(ConfigError, match="camera number"):
        build_camera(cfg.replace("camera", backend="picamera2", source="/dev/video0"))
    # Every backend the config accepts is one build_camera knows (the list is defined once).
    for backend in CAMERA_BACKENDS:
        source = {"opencv": "/tmp/x.mp4", "picamera2": "0", "mock": "0"}.get(backend, "")
        try:
            build_camera(cfg.replace("camera", backend=backend, source=source)).stop()
        except ConfigError as exc:
            pytest.fail(f"{backend}: {exc}")
        except Exception:  # picamera2 is not installed here: chosen, but not built
            assert backend == "picamera2"


def test_build_camera_loads_the_configured_scenario(cfg, tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[event]]\nat = 0.5\nkind = "end"\n', encoding="utf-8")
    cam = build_camera(cfg.replace("camera", scenario=str(path), fps=10.0), realtime=False)
    cam.start()
    assert len(list(iter(cam.read, None))) == 5
