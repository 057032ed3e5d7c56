"""The Raspberry Pi camera through picamera2 (libcamera); imported only when chosen."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, tzinfo
from typing import Any

import cv2
import numpy as np

from station.errors import CameraError
from station.frames import Frame

try:
    from picamera2 import Picamera2 as _Picamera2
except ImportError:  # not a Pi, or a venv made without --system-site-packages
    _Picamera2 = None

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 is not installed: on Raspberry Pi OS `sudo apt install python3-picamera2`, and "
    "make the venv with `python3 -m venv --system-site-packages` so it can see it "
    "(pip cannot build libcamera's bindings)"
)


def boottime_to_monotonic_ns() -> int:
    """``CLOCK_MONOTONIC - CLOCK_BOOTTIME`` now, in ns (0 where there is no boot-time clock)."""
    try:
        return time.monotonic_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return 0


class Picamera2Camera:
    """A Raspberry Pi camera module (CSI ribbon) read with picamera2.

    The main stream is configured as ``RGB888`` at the configured size and ``FrameRate``;
    picamera2's ``RGB888`` is B, G, R in memory, i.e. exactly OpenCV's BGR, so frames need no
    conversion. ``read`` takes the newest completed request (picamera2 keeps only the latest
    one queued, so a slow consumer sees fresh frames) and releases it at once.

    Time: libcamera stamps each frame with ``SensorTimestamp``, the start of exposure in ns
    on ``CLOCK_BOOTTIME``; ``time.monotonic()`` is ``CLOCK_MONOTONIC``, which differs by the
    time spent suspended (zero on a Pi, but we do not rely on it). ``t`` is the sensor stamp
    plus ``monotonic - boottime`` read once at start, so frame spacing is the sensor's own and
    ``t`` is the true exposure time on the station's timeline. If a stamp then lies in the
    future or more than a second in the past (a kernel that stamps another clock), we anchor on
    delivery instead: ``offset = receipt - sensor``, lowered whenever a frame arrives faster,
    so ``t`` never lies after a keystroke stamped at the same moment. Gaps of whole frame
    periods between sensor stamps count in ``dropped``.

    No thread of its own: picamera2 runs its event loop in a thread it owns. ``stop`` closes the
    camera; ``start`` opens it again.
    """

    live = True

    def __init__(
        self,
        camera_num: int = 0,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        read_timeout_s: float = 5.0,
        picamera2_cls: Any = None,
        *,
        tz: tzinfo | None = None,
    ) -> None:
        cls = picamera2_cls if picamera2_cls is not None else _Picamera2
        if cls is None:
            raise CameraError(INSTALL_HINT)
        self._cls = cls
        self.camera_num = camera_num
        self.width, self.height = width, height
        self.fps = float(fps)
        self.read_timeout_s = read_timeout_s
        self.dropped = 0
        self._tz = tz
        self._cam: Any = None
        self._stopped = False
        self._offset_ns: int | None = None
        self._last_ts: int | None = None
        self._last_t = float("-inf")
        self._index = 0

    def start(self) -> None:
        if self._cam is not None:
            raise RuntimeError("Picamera2Camera.start() called twice without stop()")
        try:
            cam = self._cls(self.camera_num)
        except Exception as exc:  # picamera2 raises RuntimeError / IndexError for a missing camera
            raise CameraError(
                f"cannot open Pi camera {self.camera_num}: {exc} (is the ribbon cable seated and "
                "the camera free? `rpicam-hello --list-cameras` lists what libcamera sees)"
            ) from exc
        try:
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"},
                controls={"FrameRate": self.fps},
            )
            cam.configure(config)
            cam.start()
        except Exception as exc:
            try:
                cam.close()
            except Exception:
                log.debug("closing the Pi camera after a failed start failed", exc_info=True)
            raise CameraError(
                f"cannot start Pi camera {self.camera_num} at {self.width}x{self.height}"
                f"@{self.fps:g}: {exc}"
            ) from exc
        self._cam = cam
        self._stopped = False
        self._offset_ns = None
        self._last_ts = None
        log.info("Pi camera %d started: %dx%d@%g", self.camera_num, self.width, self.height,
                 self.fps)  # fmt: skip

    def _timeline(self, sensor_ns: int | None, receipt_ns: int) -> float:
        if sensor_ns is None:
            return receipt_ns / 1e9
        if self._offset_ns is None:
            self._offset_ns = boottime_to_monotonic_ns()
        lag = receipt_ns - (sensor_ns + self._offset_ns)
        if not 0 <= lag < 1_000_000_000:
            # Not boot time after all (or a clock jumped): anchor on this delivery. A later,
            # faster delivery moves the anchor again, so it settles on the least latency.
            if abs(lag) > 1_000_000_000:
                log.warning("Pi camera %d: SensorTimestamp is %.3f s off the boot-time clock; "
                            "anchoring on frame delivery", self.camera_num, -lag / 1e9)  # fmt: skip
            self._offset_ns = receipt_ns - sensor_ns
        if self._last_ts is not None:
            missed = round((sensor_ns - self._last_ts) * self.fps / 1e9) - 1
            if missed > 0:
                self.dropped += missed
        self._last_ts = sensor_ns
        return (sensor_ns + self._offset_ns) / 1e9

    def read(self, timeout: float = 2.0) -> Frame | None:
        cam = self._cam
        if cam is None:
            if self._stopped:
                return None
            raise RuntimeError("Picamera2Camera.read() before start()")
        try:
            request = cam.capture_request(wait=timeout)
        except TimeoutError as exc:
            raise CameraError(f"Pi camera {self.camera_num}: no frame for {timeout:.1f} s") from exc
        except Exception as exc:  # anything from libcamera means the camera is unusable
            raise CameraError(f"Pi camera {self.camera_num} failed: {exc}") from exc
        try:
            image = request.make_array("main")
            metadata = request.get_metadata()
        except Exception as exc:
            raise CameraError(f"Pi camera {self.camera_num}: bad frame: {exc}") from exc
        finally:
            request.release()
        receipt_ns = time.monotonic_ns()
        sensor_ns = metadata.get("SensorTimestamp")
        t = self._timeline(int(sensor_ns) if sensor_ns is not None else None, receipt_ns)
        if t <= self._last_t:
            t = self._last_t + 1e-6
        self._last_t = t
        wall = datetime.now(self._tz).astimezone(self._tz) - timedelta(
            seconds=max(0.0, receipt_ns / 1e9 - t)
        )
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        if image.shape[:2] != (self.height, self.width):
            # libcamera may align the width; crop the padding or scale to what was asked for.
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        idx = self._index
        self._index += 1
        return Frame(image=np.ascontiguousarray(image), t=t, wall=wall, index=idx)

    def stop(self) -> None:
        cam, self._cam = self._cam, None
        self._stopped = True
        if cam is None:
            return
        try:
            cam.stop()
            cam.close()
        except Exception:
            log.warning("stopping Pi camera %d failed", self.camera_num, exc_info=True)


__all__ = ["INSTALL_HINT", "Picamera2Camera", "boottime_to_monotonic_ns"]
