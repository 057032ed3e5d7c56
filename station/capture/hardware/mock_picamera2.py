"""The mock camera backend: picamera2's API shape, for machines (and tests) without a Pi camera."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any, ClassVar

import numpy as np

_log = logging.getLogger("picamera2.picamera2")
_BYTES_PER_PIXEL = {"RGB888": 3, "BGR888": 3, "XBGR8888": 4, "XRGB8888": 4}
_YUV = ("YUV420", "YVU420")
# BT.601 limited range (Y, U, V) of pure blue and pure red: the fake's two halves.
_YUV_BLUE = (41, 240, 110)
_YUV_RED = (81, 90, 240)
_PADDING = 0xEE


class ColorSpace:
    """Stand-in for ``libcamera.ColorSpace``: the named presets picamera2 uses."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColorSpace) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<ColorSpace {self.name}>"

    @staticmethod
    def Sycc() -> ColorSpace:  # libcamera's names
        return ColorSpace("sYCC")

    @staticmethod
    def Smpte170m() -> ColorSpace:
        return ColorSpace("SMPTE170M")

    @staticmethod
    def Rec709() -> ColorSpace:
        return ColorSpace("Rec709")


class Job:
    """A list of functions the event loop runs in order; each returns (done, result)."""

    def __init__(self, functions: list[Callable[[], tuple[bool, Any]]]) -> None:
        self._functions = list(functions)
        self._future: Future[Any] = Future()
        self._future.set_running_or_notify_cancel()
        self._result: Any = None

    def execute(self) -> bool:
        while self._functions:
            done, result = self._functions[0]()
            if not done:
                return False
            self._functions.pop(0)
            self._result = result
        return True

    def signal(self) -> None:
        if not self._future.done():
            self._future.set_result(self._result)

    def get_result(self, timeout: float | None = None) -> Any:
        return self._future.result(timeout=timeout)

    def cancel(self) -> None:
        if not self._future.done():
            self._future.set_exception(CancelledError())


class CompletedRequest:
    """One captured frame: buffers and metadata, recycled to the camera on the last release."""

    def __init__(
        self, picam2: Picamera2, arrays: dict[str, np.ndarray], metadata: dict[str, Any]
    ) -> None:
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
    """The camera. Class attributes describe the attached cameras and who has them open.

    It mirrors what ``station.capture.hardware.picamera2_camera`` relies on, as picamera2 (v0.3.x)
    itself behaves:

    - ``Picamera2(camera_num)`` looks the number up in ``global_camera_info()`` first, so a camera
      that is not attached raises ``IndexError``; a busy one raises ``RuntimeError("Camera
      __init__ sequence did not complete.")``.
    - ``create_video_configuration`` returns the same dict layout with the same defaults
      (XBGR8888 1280x720, FrameDurationLimits 33333 us, buffer_count 6) and rejects unknown stream
      keys; ``configure`` refuses while started and, like libcamera's ``validate()``, may adjust
      the main size (even sizes, at most the sensor's, widths rounded down to ``width_align``),
      logging "Camera configuration has been adjusted!" and writing the size it chose back into
      the configuration.
    - The queue: ``start`` runs an event loop thread (picamera2's NullPreview). Each call of
      ``capture_request(wait=...)`` becomes a ``Job`` appended to ``_job_list``; the loop runs the
      jobs in order whenever a frame completes (or it is prodded). ``wait`` True/None blocks,
      False returns the job, seconds raise ``TimeoutError`` after that -- and the timed-out job
      stays queued, as in picamera2. ``stop()`` is itself a job queued behind it, so with no
      frames coming it waits for ever unless ``cancel_all_and_flush()`` clears the queue first.
      ``close()`` stops the event loop first and then the camera directly (picamera2's order).
    - ``CompletedRequest`` holds one reference that must be ``release``d. Metadata carries
      ``SensorTimestamp`` as picamera2 reads it: the end of the exposure in ns on
      ``CLOCK_MONOTONIC`` (picamera2's ``wait_for_timestamp_`` takes ``SensorTimestamp -
      1000 * ExposureTime`` as the start of exposure and compares it with ``time.monotonic_ns()``),
      plus ``sensor_clock_skew_ns`` to play a kernel that stamps some other clock. ``RGB888``
      arrays are B, G, R in memory, as in picamera2.
    - ``YUV420`` / ``YVU420`` (planar 4:2:0, what the ISP gives without a conversion): the Y
      stride is the width rounded up to ``yuv_stride_align`` bytes (64 on a Pi 4's ISP,
      raspberrypi/linux#4419; a Pi 5 may pad more), each chroma plane follows with half that
      stride, and ``make_array`` returns picamera2's shape, ``(height * 3 // 2, stride)``, padding
      included (filled with 0xEE here, garbage on a real Pi). ``colour_space`` defaults as in
      ``create_video_configuration``: ``Smpte170m`` below 1280x720, else ``Rec709`` (names from
      ``ColorSpace`` below, a stand-in for ``libcamera.ColorSpace``).

    Frame k is exposed from ``_t0 + k * period`` for ``exposure_us`` (at most a period) and
    delivered ``readout_us`` later; as with ``queue=True`` only the newest completed request waits
    for the application. Knobs for tests: ``hang`` (no more frames, like a dislodged cable),
    ``fail`` (an exception ``capture_request`` raises), ``configure_error``.
    """

    cameras: ClassVar[list[dict[str, Any]]] = [
        {"Model": "imx708", "Location": 2, "Rotation": 180,
         "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a", "Num": 0},
    ]  # fmt: skip
    in_use: ClassVar[set[int]] = set()
    sensor_clock_skew_ns: ClassVar[int] = 0
    sensor_size: ClassVar[tuple[int, int]] = (4608, 2592)
    width_align: ClassVar[int] = 2
    yuv_stride_align: ClassVar[int] = 64
    exposure_us: ClassVar[int] = 10000
    readout_us: ClassVar[int] = 3000
    configure_error: ClassVar[BaseException | None] = None

    @staticmethod
    def global_camera_info() -> list[dict[str, Any]]:
        return [dict(c) for c in Picamera2.cameras]

    def __init__(
        self, camera_num: int = 0, verbose_console: Any = None, tuning: Any = None,
        allocator: Any = None,
    ) -> None:  # fmt: skip
        # Outside picamera2's try block: a camera number nobody has is an IndexError.
        camera_num = self.global_camera_info()[camera_num]["Num"]
        self.is_open = False
        if camera_num in self.in_use:
            _log.error("Camera __init__ sequence did not complete.")
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.in_use.add(camera_num)
        self.camera_idx = camera_num
        self.is_open = True
        self.started = False
        self.camera_config: dict[str, Any] | None = None
        self.camera_properties = {"Model": self.cameras[camera_num]["Model"],
                                  "PixelArraySize": self.sensor_size}  # fmt: skip
        self.released = 0
        self.frames = 0
        self.recycled = 0  # completed while nobody asked: back to the camera unseen
        self.hang = False
        self.fail: BaseException | None = None
        self.lock = threading.Lock()  # guards _job_list and completed_requests, as in picamera2
        self._job_list: list[Job] = []
        self.completed_requests: list[CompletedRequest] = []
        self._max_queue_len = 1
        self._cond = threading.Condition()  # the event loop's wake-up (picamera2's notify pipe)
        self._prodded = False
        self._loop: threading.Thread | None = None
        self._loop_stop = False
        self._t0 = 0
        self._next_frame = 0
        self.exposure_starts: dict[int, int] = {}  # frame number -> monotonic ns

    # ---- configuration --------------------------------------------------------------------

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        raw: dict[str, Any] | None = None,
        transform: Any = None,
        colour_space: Any = None,
        buffer_count: int = 6,
        controls: dict[str, Any] | None = None,
        display: str | None = "main",
        encode: str | None = "main",
        queue: bool = True,
        sensor: dict[str, Any] | None = None,
        use_case: str = "video",
    ) -> dict[str, Any]:
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        stream: dict[str, Any] = {"format": "XBGR8888", "size": (1280, 720)}
        for key, value in (main or {}).items():
            if key not in ("format", "size", "stride", "preserve_ar"):
                raise ValueError(
                    f"Bad key {key!r}: valid stream configuration keys are "
                    "('format', 'size', 'stride', 'preserve_ar')"
                )
            stream[key] = value
        if colour_space is None:  # picamera2: by the video size
            small = stream["size"][0] < 1280 or stream["size"][1] < 720
            colour_space = ColorSpace.Smpte170m() if small else ColorSpace.Rec709()
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
        if self.configure_error is not None:
            raise self.configure_error
        camera_config = dict(camera_config)  # picamera2 copies the dict, not the streams in it
        main = camera_config["main"]
        if main["format"] not in _BYTES_PER_PIXEL and main["format"] not in _YUV:
            raise RuntimeError(f"Invalid camera configuration: {camera_config}")
        w, h = main["size"]
        # libcamera's validate(): the nearest size the pipeline can produce, written back.
        max_w, max_h = self.sensor_size
        aw = min(w, max_w)
        aw -= aw % max(2, self.width_align)
        ah = min(h, max_h)
        ah -= ah % 2
        if (aw, ah) != (w, h):
            _log.info("Camera configuration has been adjusted!")
        main["size"] = (aw, ah)
        if main["format"] in _YUV:
            align = self.yuv_stride_align
            main["stride"] = -(-aw // align) * align
            main["framesize"] = main["stride"] * ah * 3 // 2
        else:
            main["stride"] = aw * _BYTES_PER_PIXEL[main["format"]]
            main["framesize"] = main["stride"] * ah
        controls = dict(camera_config.get("controls", {}))
        if "FrameRate" in controls:  # picamera2 turns FrameRate into FrameDurationLimits
            us = int(1e6 / controls.pop("FrameRate"))
            controls["FrameDurationLimits"] = (us, us)
        self.camera_config = {**camera_config, "controls": controls}

    def camera_configuration(self) -> dict[str, Any] | None:
        return self.camera_config

    # ---- the event loop (picamera2's NullPreview thread + process_requests) ---------------

    def _prod(self) -> None:
        with self._cond:
            self._prodded = True
            self._cond.notify_all()

    def _run_loop(self) -> None:
        while True:
            with self._cond:
                if self._loop_stop:
                    return
                wait_s = 0.05
                if self.started and not self.hang:
                    due = self._delivery_ns(self._next_frame) - time.monotonic_ns()
                    wait_s = min(wait_s, max(due, 0) / 1e9)
                if not self._prodded and wait_s > 0:
                    self._cond.wait(wait_s)
                self._prodded = False
                if self._loop_stop:
                    return
            self._process_requests()

    def _period_ns(self) -> int:
        assert self.camera_config is not None
        return int(self.camera_config["controls"]["FrameDurationLimits"][0]) * 1000

    def _exposure_ns(self) -> int:
        return min(self.exposure_us * 1000, self._period_ns())

    def _delivery_ns(self, k: int) -> int:
        return self._t0 + k * self._period_ns() + self._exposure_ns() + self.readout_us * 1000

    def _process_requests(self) -> None:
        new: list[CompletedRequest] = []
        if self.started and not self.hang:
            now = time.monotonic_ns()
            first = now - self._exposure_ns() - self.readout_us * 1000 - self._t0
            newest = first // self._period_ns()
            if newest >= self._next_frame:
                self.recycled += newest - self._next_frame
                self._next_frame = newest + 1
                new.append(self._make_frame(newest))
        finished = []
        with self.lock:
            self.completed_requests += new
            while self._job_list:
                if self._job_list[0].execute():
                    finished.append(self._job_list.pop(0))
                else:
                    break
            while len(self.completed_requests) > self._max_queue_len:
                self.completed_requests.pop(0).release()
        for job in finished:
            job.signal()

    def _make_frame(self, k: int) -> CompletedRequest:
        assert self.camera_config is not None
        main = self.camera_config["main"]
        w, h = main["size"]
        if main["format"] in _YUV:
            img = self._yuv_frame(main["format"], w, h, main["stride"], k)
        else:
            channels = _BYTES_PER_PIXEL[main["format"]]
            img = np.zeros((h, w, channels), np.uint8)
            img[:, : w // 2, 0] = 255  # left half blue: B first in memory for RGB888
            img[:, w // 2 :, 2] = 255  # right half red
            img[0, 0, 1] = k % 256  # the frame number, for tests
        start = self._t0 + k * self._period_ns()
        self.exposure_starts[k] = start
        sensor_ns = start + self._exposure_ns() + self.sensor_clock_skew_ns
        metadata = {"SensorTimestamp": sensor_ns, "FrameDuration": self._period_ns() // 1000,
                    "ExposureTime": self._exposure_ns() // 1000, "AnalogueGain": 1.0,
                    "FrameNumber": k}  # fmt: skip
        self.frames += 1
        return CompletedRequest(self, {"main": img}, metadata)

    @staticmethod
    def _yuv_frame(fmt: str, w: int, h: int, stride: int, k: int) -> np.ndarray:
        """One planar 4:2:0 buffer as picamera2's ``make_array`` shapes it: (h*3/2, stride)."""
        buf = np.full(stride * h * 3 // 2, _PADDING, np.uint8)
        y = buf[: stride * h].reshape(h, stride)
        cs = stride // 2
        first = buf[stride * h : stride * h + cs * h // 2].reshape(h // 2, cs)
        second = buf[stride * h + cs * h // 2 :].reshape(h // 2, cs)
        u, v = (first, second) if fmt == "YUV420" else (second, first)
        for plane, index, width in ((y, 0, w), (u, 1, w // 2), (v, 2, w // 2)):
            plane[:, : width // 2] = _YUV_BLUE[index]  # left half blue
            plane[:, width // 2 : width] = _YUV_RED[index]  # right half red
        y[0, 0] = k % 256  # the frame number, for tests
        return buf.reshape(h * 3 // 2, stride)

    # ---- jobs -----------------------------------------------------------------------------

    def dispatch_functions(
        self, functions: list[Callable[[], tuple[bool, Any]]], wait: bool | float | None,
        signal_function: Any = None, immediate: bool = False,
    ) -> Any:  # fmt: skip
        if signal_function is not None or wait is False:
            raise NotImplementedError("the fake supports blocking jobs only")
        timeout = None if wait in (None, True) else float(wait)
        with self.lock:
            only_job = not self._job_list
            job = Job(functions)
            self._job_list.append(job)
            # As picamera2: prod the loop only when this job may run at once.
            if only_job and (self.completed_requests or immediate):
                self._prod()
        return job.get_result(timeout=timeout)

    def cancel_all_and_flush(self) -> None:
        with self.lock:
            for job in self._job_list:
                job.cancel()
            self._job_list = []

    def _capture_request_(self) -> tuple[bool, CompletedRequest | None]:
        if not self.completed_requests:
            return (False, None)
        return (True, self.completed_requests.pop(0))

    def capture_request(
        self, wait: bool | float | None = None, signal_function: Any = None, flush: Any = None
    ) -> CompletedRequest:
        if self.fail is not None:
            raise self.fail
        if not self.started and self._loop is None and wait in (None, True):
            raise RuntimeError("fake Picamera2: would block forever (not started)")
        request: CompletedRequest = self.dispatch_functions(
            [self._capture_request_], wait, signal_function
        )
        return request

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

    # ---- running --------------------------------------------------------------------------

    def start(self, config: dict[str, Any] | None = None, show_preview: bool = False) -> None:
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self._loop is None:  # start_preview(False): the NullPreview event loop
            self._loop_stop = False
            self._loop = threading.Thread(target=self._run_loop, name="fake-picamera2", daemon=True)
            self._loop.start()
        with self._cond:
            self._t0 = time.monotonic_ns()
            self._next_frame = 0
            self.started = True
            self._cond.notify_all()

    def _stop_(self) -> tuple[bool, None]:
        if self.started:
            self.started = False
            while self.completed_requests:
                self.completed_requests.pop(0).release()
        return (True, None)

    def stop(self) -> None:
        if not self.started:
            return
        if self._loop is not None:
            # Queued behind any job still waiting for a frame, as in picamera2.
            self.dispatch_functions([self._stop_], wait=True, immediate=True)
        else:
            self._stop_()

    def stop_preview(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with self._cond:
            self._loop_stop = True
            self._cond.notify_all()
        loop.join()

    def close(self) -> None:
        self.stop_preview()  # picamera2's close() stops the event loop first
        if not self.is_open:
            return
        with self.lock:
            self._stop_()
        self.is_open = False
        self.in_use.discard(self.camera_idx)

    def __enter__(self) -> Picamera2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
