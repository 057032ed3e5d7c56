"""A stand-in for picamera2 with the real API shape, for tests on machines without a Pi camera.

It mirrors what ``station.hardware.picamera2_camera`` relies on, as picamera2 itself behaves:
``Picamera2(camera_num)`` raises ``RuntimeError("Camera __init__ sequence did not complete.")``
for a missing or busy camera; ``create_video_configuration`` returns the same dict layout with
the same defaults (XBGR8888 1280x720, FrameDurationLimits 33333 us, buffer_count 6) and rejects
unknown stream keys; ``configure`` refuses while started; ``capture_request(wait=...)`` hands
out a ``CompletedRequest`` holding one reference that must be ``release``d, ``wait`` being
True/None (block), False is not supported here, or seconds (``TimeoutError`` after that);
metadata carries ``SensorTimestamp``: the start of exposure in ns on ``CLOCK_BOOTTIME``
(plus ``sensor_clock_skew_ns``, to play a kernel that stamps some other clock). ``RGB888``
arrays are B, G, R in memory, as in picamera2.

Frames appear every 1/FrameRate seconds from ``start``; as with ``queue=True`` only the newest
completed one waits for the application. Knobs for tests: ``hang`` (no more frames) and
``fail`` (an exception ``capture_request`` raises).
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import numpy as np

_BYTES_PER_PIXEL = {"RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}


class CompletedRequest:
    """One captured frame: buffers and metadata, recycled to the camera on the last release."""

    def __init__(self, picam2: Picamera2, arrays: dict[str, np.ndarray], metadata: dict) -> None:
        self.picam2 = picam2
        self.ref_count = 1
        self.config = dict(picam2.camera_config or {})
        self._arrays = arrays
        self._metadata = metadata
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        with self._lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            if self.ref_count == 0:
                self.picam2.released += 1
                self._arrays = {}

    def make_buffer(self, name: str) -> np.ndarray:
        if self.config.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        if name not in self._arrays:
            raise RuntimeError("CompletedRequest: buffer used after release")
        return self._arrays[name].reshape(-1).copy()

    def make_array(self, name: str) -> np.ndarray:
        if self.config.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        if name not in self._arrays:
            raise RuntimeError("CompletedRequest: buffer used after release")
        return self._arrays[name].copy()

    def get_metadata(self) -> dict[str, Any]:
        return dict(self._metadata)


class Picamera2:
    """The camera. Class attributes describe the attached cameras and who has them open."""

    cameras: ClassVar[list[dict[str, Any]]] = [
        {"Model": "imx708", "Location": 2, "Rotation": 180,
         "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a", "Num": 0},
    ]  # fmt: skip
    in_use: ClassVar[set[int]] = set()
    sensor_clock_skew_ns: ClassVar[int] = 0

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [dict(c) for c in Picamera2.cameras]

    def __init__(
        self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None,
        allocator: Any = None,
    ) -> None:  # fmt: skip
        if not 0 <= camera_num < len(self.cameras) or camera_num in self.in_use:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.in_use.add(camera_num)
        self.camera_idx = camera_num
        self.is_open = True
        self.started = False
        self.camera_config: dict[str, Any] | None = None
        self.camera_properties = {"Model": self.cameras[camera_num]["Model"],
                                  "PixelArraySize": (4608, 2592)}  # fmt: skip
        self.released = 0
        self.frames = 0
        self.hang = False
        self.fail: BaseException | None = None
        self._cond = threading.Condition()
        self._t0 = 0
        self._next_frame = 0

    # ---- configuration --------------------------------------------------------------------

    def create_video_configuration(
        self,
        main: dict | None = None,
        lores: dict | None = None,
        raw: dict | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        stream = {"format": "XBGR8888", "size": (1280, 720)}
        for key, value in (main or {}).items():
            if key not in ("format", "size"):
                raise ValueError(
                    f"Bad key {key!r}: valid stream configuration keys are ('format', 'size')"
                )
            stream[key] = value
        return {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": stream,
            "lores": lores,
            "raw": raw,
            "controls": {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)}
            | (controls or {}),
            "sensor": sensor or {},
            "display": display,
            "encode": encode,
        }

    def configure(self, camera_config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        main = dict(camera_config["main"])
        if main["format"] not in _BYTES_PER_PIXEL:
            raise RuntimeError(f"Bad format {main['format']} in stream main")
        w, h = main["size"]
        if w % 2 or h % 2:
            raise RuntimeError("width and height should be even")
        main["stride"] = w * _BYTES_PER_PIXEL[main["format"]]
        controls = dict(camera_config.get("controls", {}))
        if "FrameRate" in controls:  # picamera2 turns FrameRate into FrameDurationLimits
            us = int(1e6 / controls.pop("FrameRate"))
            controls["FrameDurationLimits"] = (us, us)
        self.camera_config = {**camera_config, "main": main, "controls": controls}

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    # ---- running --------------------------------------------------------------------------

    def start(self, config: dict[str, Any] | None = None, show_preview: bool = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        self._t0 = time.monotonic_ns()
        self._next_frame = 0

    def stop(self) -> None:
        with self._cond:
            self.started = False
            self._cond.notify_all()

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        self.is_open = False
        self.in_use.discard(self.camera_idx)

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _period_ns(self) -> int:
        assert self.camera_config is not None
        return self.camera_config["controls"]["FrameDurationLimits"][0] * 1000

    def _make_frame(self, k: int) -> CompletedRequest:
        assert self.camera_config is not None
        main = self.camera_config["main"]
        w, h = main["size"]
        channels = _BYTES_PER_PIXEL[main["format"]]
        img = np.zeros((h, w, channels), np.uint8)
        img[:, : w // 2, 0] = 255  # left half blue: B first in memory for RGB888
        img[:, w // 2 :, 2] = 255  # right half red
        img[0, 0, 1] = k % 256  # the frame number, for tests
        boot_minus_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
        sensor_ns = self._t0 + k * self._period_ns() + boot_minus_mono + self.sensor_clock_skew_ns
        metadata = {"SensorTimestamp": sensor_ns, "FrameDuration": self._period_ns() // 1000,
                    "ExposureTime": 10000, "AnalogueGain": 1.0}  # fmt: skip
        self.frames += 1
        return CompletedRequest(self, {"main": img}, metadata)

    def capture_request(
        self, wait: bool | float | None = None, signal_function: Any = None, flush: Any = None
    ) -> CompletedRequest:
        if wait is False or signal_function is not None:
            raise NotImplementedError("the fake supports blocking captures only")
        timeout = None if wait in (None, True) else float(wait)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self.fail is not None:
                    raise self.fail
                if self.started and not self.hang:
                    now = time.monotonic_ns()
                    newest = (now - self._t0) // self._period_ns()  # the last frame completed
                    if newest >= self._next_frame:
                        # queue=True: frames completed while nobody asked were recycled unseen.
                        self._next_frame = newest + 1
                        return self._make_frame(newest)
                    wait_s = (self._t0 + (newest + 1) * self._period_ns() - now) / 1e9
                else:
                    if deadline is None:
                        raise RuntimeError("fake Picamera2: would block forever (not started)")
                    wait_s = 0.01
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("timed out waiting for a request")
                    wait_s = min(wait_s, left)
                self._cond.wait(max(wait_s, 0.0005))

    def capture_metadata(self, wait: bool | float | None = None,
                         signal_function: Any = None) -> dict[str, Any]:  # fmt: skip
        request = self.capture_request(wait, signal_function)
        try:
            return request.get_metadata()
        finally:
            request.release()

    def capture_array(self, name: str = "main", wait: bool | float | None = None,
                      signal_function: Any = None) -> np.ndarray:  # fmt: skip
        request = self.capture_request(wait, signal_function)
        try:
            return request.make_array(name)
        finally:
            request.release()
