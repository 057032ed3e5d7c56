"""The OpenCV frame source: a device, V4L2 path, RTSP/HTTP stream or video file."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from station.capture.frames import Frame
from station.errors import CameraError

log = logging.getLogger(__name__)

# cv2.VideoCapture(source, api_preference, params) or anything with the same shape.
CaptureFactory = Callable[[int | str, int, Sequence[int]], Any]


def _default_factory(source: int | str, api: int, params: Sequence[int]) -> Any:
    return cv2.VideoCapture(source, api, list(params))


def classify_source(source: str) -> tuple[str, int | str]:
    """``("device", index)``, ``("v4l2", path)``, ``("stream", url)`` or ``("file", path)``."""
    s = source.strip()
    if s.isdigit():
        return "device", int(s)
    if s.startswith("/dev/"):
        return "v4l2", s
    if "://" in s:
        return "stream", s
    return "file", s


def fit_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A 3-channel BGR uint8 image of exactly ``width`` x ``height``."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    h, w = image.shape[:2]
    if (w, h) != (width, height):
        shrink = w * h > width * height
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = cv2.resize(image, (width, height), interpolation=interp)
    return image


def _now(tz: tzinfo | None) -> datetime:
    return datetime.now(tz).astimezone(tz)


class OpenCVCamera:
    """A camera or video read through OpenCV's VideoCapture.

    ``source`` is a device index ("0"), a V4L2 path ("/dev/video0",
    "/dev/v4l/by-id/..."), an RTSP/HTTP URL or a video file. Frames are BGR at the configured
    size (resized when the device delivers another).

    A file is not live: frames come in order as fast as they are read, ``t`` is the frame's
    presentation time (``index / fps`` when the container has none), ``wall`` is
    ``start_wall + t`` (default: the file's mtime minus its duration) and ``read`` returns
    None at the end.

    A device or stream is live: a grab thread reads continuously and keeps only the newest
    frame (frames replaced before anyone read them count in ``dropped``), ``t`` is
    ``time.monotonic()`` at the grab and ``wall`` the aware local time. When the device stops
    delivering for ``read_timeout_s``, the grab thread releases it and ends, and ``read``
    raises ``CameraError``; ``read`` also raises when no new frame arrives within
    ``timeout``. Reopening is the station's job (``stop`` then ``start``, with its back-off):
    one reconnect loop per camera, not one here and one there.

    ``clock`` (default ``time.monotonic``) stamps live frames and times the device's silence;
    tests pass a fake one. ``read``'s own timeout is real waiting.
    """

    def __init__(
        self,
        source: str,
        width: int,
        height: int,
        fps: float,
        read_timeout_s: float = 5.0,
        *,
        start_wall: datetime | None = None,
        tz: tzinfo | None = None,
        capture_factory: CaptureFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.kind, self._target = classify_source(source)
        self.width, self.height = width, height
        self.fps = float(fps)
        self.read_timeout_s = read_timeout_s
        self.live = self.kind != "file"
        self.dropped = 0
        self._start_wall_arg = start_wall
        self._tz = tz
        self._factory = capture_factory or _default_factory
        self._clock = clock
        self._cap: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, float, datetime, int] | None = None
        self._seq = 0
        self._index = 0
        self._last_t = -1.0
        self._warned_size = False
        self._started = False
        self._failed: str | None = None  # why the grab thread gave up on the device

    # ---- opening --------------------------------------------------------------------------

    def _open(self) -> Any:
        """Open the source; raises CameraError with what to check."""
        kind, target = self.kind, self._target
        if kind == "file":
            path = Path(str(target))
            if not path.is_file():
                raise CameraError(f"video file not found: {path}")
            cap = self._factory(str(path), cv2.CAP_ANY, ())
            if not cap.isOpened():
                cap.release()
                raise CameraError(f"cannot open video file {path}: not a video OpenCV can decode")
            return cap
        timeout_ms = int(self.read_timeout_s * 1000)
        if kind == "stream":
            params = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms)  # fmt: skip
            cap = self._factory(str(target), cv2.CAP_FFMPEG, params)
            hint = "check the URL, the network and the camera's credentials"
        else:
            api = cv2.CAP_V4L2 if kind == "v4l2" else cv2.CAP_ANY
            cap = self._factory(target, api, ())
            hint = "is it plugged in (`v4l2-ctl --list-devices`) and is the user in group 'video'?"
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open camera {self.source!r}: {hint}")
        if kind != "stream":
            # MJPG lets USB2 webcams reach 720p/1080p at full rate; a one-frame driver queue
            # keeps latency low. Devices ignore what they cannot do: fit_image copes.
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def start(self) -> None:
        if self._started:
            raise RuntimeError("OpenCVCamera.start() called twice without stop()")
        self._cap = self._open()
        self._stop.clear()
        self._failed = None
        self._started = True
        self._index = 0
        self._last_t = -1.0
        self._latest = None
        if not self.live:
            file_fps = self._cap.get(cv2.CAP_PROP_FPS)
            if file_fps and file_fps > 0:
                self.fps = float(file_fps)
            count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
            duration = count / self.fps if count and count > 0 else 0.0
            if self._start_wall_arg is not None:
                self._start_wall = self._start_wall_arg
            else:
                mtime = Path(str(self._target)).stat().st_mtime
                self._start_wall = datetime.fromtimestamp(mtime - duration).astimezone(self._tz)
            log.info("video file %s: %.1f fps, %.1f s, starts %s", self._target, self.fps,
                     duration, self._start_wall.isoformat())  # fmt: skip
            return
        log.info("camera %r opened (%s)", self.source, self.kind)
        self._thread = threading.Thread(target=self._grab_loop, name="camera-grab", daemon=True)
        self._thread.start()

    # ---- reading --------------------------------------------------------------------------

    def _fit(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if (w, h) != (self.width, self.height) and not self._warned_size:
            self._warned_size = True
            log.warning("camera %r delivers %dx%d; resizing to %dx%d", self.source, w, h,
                        self.width, self.height)  # fmt: skip
        return fit_image(image, self.width, self.height)

    def read(self, timeout: float = 2.0) -> Frame | None:
        if not self._started:
            if self._stop.is_set():
                return None
            raise RuntimeError("OpenCVCamera.read() before start()")
        if not self.live:
            return self._read_file()
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None:
                if self._stop.is_set():
                    return None
                if self._failed is not None:
                    raise CameraError(self._failed)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CameraError(f"camera {self.source!r}: no frame for {timeout:.1f} s")
                self._cond.wait(remaining)
            image, t, wall, seq = self._latest
            self._latest = None
        return Frame(image=image, t=t, wall=wall, index=seq)

    def _read_file(self) -> Frame | None:
        cap = self._cap
        ok, image = cap.read()
        if not ok or image is None:
            return None
        idx = self._index
        self._index += 1
        pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        t = pos_ms / 1000.0
        if t < 0 or (idx > 0 and t <= self._last_t):
            # No usable presentation time in this container: fall back to the frame rate.
            t = max(idx / self.fps, self._last_t + 1.0 / self.fps)
        self._last_t = t
        return Frame(
            image=self._fit(image),
            t=t,
            wall=self._start_wall + timedelta(seconds=t),
            index=idx,
        )

    def _grab_loop(self) -> None:
        cap = self._cap
        last_ok = self._clock()
        while not self._stop.is_set():
            try:
                ok, image = cap.read() if cap is not None else (False, None)
            except cv2.error as exc:
                log.warning("camera %r: read failed: %s", self.source, exc)
                ok, image = False, None
            if ok and image is not None:
                t = self._clock()
                wall = _now(self._tz)
                last_ok = t
                frame = (self._fit(image), t, wall, self._seq)
                with self._cond:
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = frame
                    self._seq += 1
                    self._cond.notify_all()
                continue
            silent = self._clock() - last_ok
            if silent < self.read_timeout_s:
                self._stop.wait(0.02)
                continue
            # The device went away (unplugged, stream dropped): give it back to the station,
            # which reopens it with its back-off.
            with self._cond:
                self._failed = f"camera {self.source!r}: no frames for {silent:.1f} s"
                self._cond.notify_all()
            log.warning("%s; released", self._failed)
            break
        if cap is not None:
            cap.release()
        self._cap = None

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=max(2.0, self.read_timeout_s))
            if self._thread.is_alive():
                log.warning("camera %r: grab thread did not stop in time", self.source)
            self._thread = None
        elif self._cap is not None:
            self._cap.release()
            self._cap = None
        self._started = False


__all__ = ["OpenCVCamera", "classify_source", "fit_image"]
