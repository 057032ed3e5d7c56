"""The Raspberry Pi camera through picamera2 (libcamera); imported only when chosen."""

from __future__ import annotations

import logging
import time
from concurrent.futures import CancelledError
from datetime import datetime, timedelta, tzinfo
from typing import Any

import cv2
import numpy as np

from station.capture.frames import Frame, resize_i420
from station.errors import CameraError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 is not installed: on Raspberry Pi OS `sudo apt install python3-picamera2`, and "
    "make the venv with `python3 -m venv --system-site-packages` so it can see it "
    "(pip cannot build libcamera's bindings)"
)
NUMPY_HINT = (
    "picamera2 is installed but cannot load: {error}. apt's simplejpeg is built for Bookworm's "
    "numpy 1.24 and the venv has a newer numpy; install the PyPI build into the venv: "
    "`.venv/bin/pip install --force-reinstall --no-deps 'simplejpeg>=1.8.1'` (or `make venv`; "
    "docs/raspberry-pi.md)"
)


def import_hint(exc: BaseException) -> str:
    """What to tell the user when ``import picamera2`` raised ``exc``."""
    if isinstance(exc, ImportError):
        return INSTALL_HINT
    if "dtype size changed" in str(exc) or "binary incompatibility" in str(exc):
        return NUMPY_HINT.format(error=str(exc).split(",")[0])
    return f"picamera2 is installed but cannot load: {type(exc).__name__}: {exc}"


try:
    from picamera2 import Picamera2 as _Picamera2

    _IMPORT_HINT = ""
    # After picamera2 (whose import error is the one to explain); it imports libcamera itself.
    from libcamera import ColorSpace as _ColorSpace
except (ImportError, ValueError) as exc:
    # ImportError: not a Pi, or a venv made without --system-site-packages. ValueError:
    # "numpy.dtype size changed", apt's simplejpeg loaded against the venv's numpy 2.
    _Picamera2 = None
    _ColorSpace = None
    _IMPORT_HINT = import_hint(exc)


def tight_i420(buffer: np.ndarray, width: int, height: int, stride: int) -> np.ndarray:
    """A (height*3/2, width) I420 array from picamera2's YUV420 ``make_array`` output.

    picamera2 returns the buffer as it is, (height*3/2, stride): a Y plane of ``stride``-byte
    rows, then U and V with ``stride/2``-byte rows, padding on the right of every row (the
    ISP aligns rows to 64 bytes). With no padding that is already I420 and is returned as it
    is (no copy); otherwise the planes are copied out without their padding.
    """
    if stride == width:
        if buffer.shape != (height * 3 // 2, width):
            raise ValueError(f"expected {width}x{height} YUV420, got an array {buffer.shape}")
        return buffer
    flat = buffer.reshape(-1)
    cs, ch = stride // 2, height // 2
    u_at, v_at = stride * height, stride * height + cs * ch
    out = np.empty((height * 3 // 2, width), np.uint8)
    out[:height] = flat[:u_at].reshape(height, stride)[:, :width]
    quarter, half = height // 4, width // 2
    u = flat[u_at:v_at].reshape(ch, cs)
    v = flat[v_at : v_at + cs * ch].reshape(ch, cs)
    out[height : height + quarter].reshape(ch, half)[:] = u[:, :half]
    out[height + quarter :].reshape(ch, half)[:] = v[:, :half]
    return out


class Picamera2Camera:
    """A Raspberry Pi camera module (CSI ribbon) read with picamera2.

    The main stream is configured as ``RGB888`` at the configured size and ``FrameRate``;
    picamera2's ``RGB888`` is B, G, R in memory, i.e. exactly OpenCV's BGR, so frames need no
    conversion. With ``pixel_format="i420"`` it is ``YUV420`` instead, what the ISP makes
    without a conversion, in the SMPTE 170M colour space (BT.601 limited range: what the
    encoder tags the stream with; picamera2 would pick Rec.709 for HD sizes), and frames are
    I420 (``Frame.pixel_format``) with the row padding removed (``tight_i420``). libcamera
    may adjust the size it was asked for (``actual_size`` says what it chose, logged at
    start); frames are scaled back to the configured size (an I420 frame plane by plane).
    ``read`` takes the newest completed request (picamera2 keeps only the latest one queued,
    so a slow consumer sees fresh frames) and releases it at once.

    Time, as picamera2 itself reads ``SensorTimestamp``: the end of the exposure, in ns on
    ``CLOCK_MONOTONIC`` (its ``wait_for_timestamp_`` compares ``SensorTimestamp - 1000 *
    ExposureTime`` with ``time.monotonic_ns()``). ``t`` is the start of the exposure on that
    clock: ``SensorTimestamp - ExposureTime``, so frame spacing is the sensor's own. If a stamp
    lies in the future or more than a second in the past (a kernel that stamps another clock)
    we anchor on delivery instead: ``offset = receipt - start``, lowered whenever a frame
    arrives faster, so ``t`` never lies after a keystroke stamped at the same moment. Gaps of
    whole frame periods between sensor stamps count in ``dropped``.

    Stalls: picamera2 queues each ``capture_request`` as a job; one that timed out stays at the
    head of the queue and ``stop()`` (itself a job) would wait behind it for ever. A timeout
    therefore cancels and flushes the queue before raising, and ``stop`` flushes again first,
    so the runner's stop/start reconnect works on a camera that stopped delivering.

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
        pixel_format: str = "bgr",
        colour_space_cls: Any = None,
    ) -> None:
        cls = picamera2_cls if picamera2_cls is not None else _Picamera2
        if cls is None:
            raise CameraError(_IMPORT_HINT or INSTALL_HINT)
        if pixel_format not in ("bgr", "i420"):
            raise ValueError(f"pixel_format must be bgr or i420, not {pixel_format!r}")
        self._cls = cls
        self._colour_spaces = colour_space_cls if colour_space_cls is not None else _ColorSpace
        self.pixel_format = pixel_format
        self.camera_num = camera_num
        self.width, self.height = width, height
        self.fps = float(fps)
        self.read_timeout_s = read_timeout_s
        self.dropped = 0
        self.actual_size: tuple[int, int] | None = None
        self._tz = tz
        self._stride = 0
        self._cam: Any = None
        self._stopped = False
        self._offset_ns: int | None = None
        self._last_ts: int | None = None
        self._last_t = float("-inf")
        self._index = 0

    def _cameras_seen(self) -> str:
        try:
            cams = self._cls.global_camera_info()
        except Exception:  # a fake or an old picamera2 without it: say nothing more
            return ""
        names = ", ".join(f"{i}: {c.get('Model', '?')}" for i, c in enumerate(cams)) or "none"
        return f"; libcamera sees {len(cams)} camera(s) ({names})"

    def start(self) -> None:
        if self._cam is not None:
            raise RuntimeError("Picamera2Camera.start() called twice without stop()")
        try:
            cam = self._cls(self.camera_num)
        except IndexError as exc:  # picamera2 looks the number up in global_camera_info()
            raise CameraError(
                f"no Pi camera {self.camera_num}{self._cameras_seen()} (is the ribbon cable "
                "seated? `rpicam-hello --list-cameras` lists what libcamera sees)"
            ) from exc
        except Exception as exc:  # RuntimeError: busy, or libcamera failed to open it
            raise CameraError(
                f"cannot open Pi camera {self.camera_num}: {exc} (is the ribbon cable seated and "
                "the camera free? `rpicam-hello --list-cameras` lists what libcamera sees)"
            ) from exc
        try:
            extra: dict[str, Any] = {}
            fmt = "RGB888"
            if self.pixel_format == "i420":
                fmt = "YUV420"
                if self._colour_spaces is not None:
                    extra["colour_space"] = self._colour_spaces.Smpte170m()
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": fmt},
                controls={"FrameRate": self.fps},
                **extra,
            )
            cam.configure(config)
            # libcamera's validate() writes the size it chose back into the configuration.
            chosen = getattr(cam, "camera_configuration", lambda: None)() or config
            actual = tuple(chosen["main"]["size"])
            self._stride = int(chosen["main"].get("stride") or 0)
            space = chosen.get("colour_space")
            if fmt == "YUV420" and "colour_space" in extra and space != extra["colour_space"]:
                log.warning("Pi camera %d: libcamera chose colour space %s, not SMPTE 170M; "
                            "colours will be slightly off in clips", self.camera_num,
                            space)  # fmt: skip
            cam.start()
        except Exception as exc:
            self._close(cam)
            raise CameraError(
                f"cannot start Pi camera {self.camera_num} at {self.width}x{self.height}"
                f"@{self.fps:g}: {exc}"
            ) from exc
        self._cam = cam
        self._stopped = False
        self._offset_ns = None
        self._last_ts = None
        self.actual_size = (int(actual[0]), int(actual[1]))
        if self.actual_size != (self.width, self.height):
            log.warning("Pi camera %d: libcamera adjusted %dx%d to %dx%d; frames are scaled "
                        "to %dx%d", self.camera_num, self.width, self.height, *self.actual_size,
                        self.width, self.height)  # fmt: skip
        log.info("Pi camera %d started: %dx%d@%g", self.camera_num, self.width, self.height,
                 self.fps)  # fmt: skip

    def _timeline(self, start_ns: int | None, receipt_ns: int) -> float:
        """Seconds on the monotonic timeline for an exposure that started at ``start_ns``."""
        if start_ns is None:
            return receipt_ns / 1e9
        if self._offset_ns is None:
            self._offset_ns = 0  # picamera2: SensorTimestamp is on CLOCK_MONOTONIC
        lag = receipt_ns - (start_ns + self._offset_ns)
        if not 0 <= lag < 1_000_000_000:
            # Not the monotonic clock after all (or a clock jumped): anchor on this delivery.
            # A later, faster delivery moves the anchor again, so it settles on the least lag.
            if abs(lag) > 1_000_000_000:
                log.warning("Pi camera %d: SensorTimestamp is %.3f s off the monotonic clock; "
                            "anchoring on frame delivery", self.camera_num, -lag / 1e9)  # fmt: skip
            self._offset_ns = receipt_ns - start_ns
        if self._last_ts is not None:
            missed = round((start_ns - self._last_ts) * self.fps / 1e9) - 1
            if missed > 0:
                self.dropped += missed
        self._last_ts = start_ns
        return (start_ns + self._offset_ns) / 1e9

    def _flush(self, cam: Any) -> None:
        """Cancel every queued picamera2 job (a timed-out capture would block ``stop``)."""
        flush = getattr(cam, "cancel_all_and_flush", None)
        if flush is None:
            return
        try:
            flush()
        except Exception:
            log.warning("Pi camera %d: cancel_all_and_flush failed", self.camera_num,
                        exc_info=True)  # fmt: skip

    def read(self, timeout: float = 2.0) -> Frame | None:
        cam = self._cam
        if cam is None:
            if self._stopped:
                return None
            raise RuntimeError("Picamera2Camera.read() before start()")
        try:
            request = cam.capture_request(wait=timeout)
        except (TimeoutError, CancelledError) as exc:
            # The timed-out job stays queued in picamera2: clear it now, or stop() hangs.
            self._flush(cam)
            raise CameraError(f"Pi camera {self.camera_num}: no frame for {timeout:.1f} s") from exc
        except Exception as exc:  # anything from libcamera means the camera is unusable
            self._flush(cam)
            raise CameraError(f"Pi camera {self.camera_num} failed: {exc}") from exc
        try:
            image = request.make_array("main")
            metadata = request.get_metadata()
        except Exception as exc:
            raise CameraError(f"Pi camera {self.camera_num}: bad frame: {exc}") from exc
        finally:
            request.release()
        receipt_ns = time.monotonic_ns()
        t = self._timeline(exposure_start_ns(metadata), receipt_ns)
        if t <= self._last_t:
            t = self._last_t + 1e-6
        self._last_t = t
        wall = datetime.now(self._tz).astimezone(self._tz) - timedelta(
            seconds=max(0.0, receipt_ns / 1e9 - t)
        )
        image = np.asarray(image)
        idx = self._index
        self._index += 1
        if self.pixel_format == "i420":
            aw, ah = self.actual_size or (self.width, self.height)
            try:
                image = tight_i420(image, aw, ah, self._stride or image.shape[1])
            except ValueError as exc:  # a buffer of another size than configured
                raise CameraError(f"Pi camera {self.camera_num}: bad YUV420 frame: {exc}") from exc
            if (aw, ah) != (self.width, self.height):
                image = resize_i420(image, self.width, self.height)
            return Frame(image=image, t=t, wall=wall, index=idx, pixel_format="i420")
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]
        if image.shape[:2] != (self.height, self.width):
            # libcamera adjusted the size: scale to what was asked for.
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return Frame(image=np.ascontiguousarray(image), t=t, wall=wall, index=idx)

    def _close(self, cam: Any) -> None:
        self._flush(cam)
        try:
            cam.stop()
        except Exception:
            log.warning("stopping Pi camera %d failed", self.camera_num, exc_info=True)
        try:
            cam.close()
        except Exception:
            log.warning("closing Pi camera %d failed", self.camera_num, exc_info=True)

    def stop(self) -> None:
        cam, self._cam = self._cam, None
        self._stopped = True
        if cam is not None:
            self._close(cam)


def exposure_start_ns(metadata: dict[str, Any]) -> int | None:
    """Start of the exposure in ns, from picamera2 metadata: ``SensorTimestamp`` (its end)
    minus ``ExposureTime`` (us); None without a stamp."""
    sensor = metadata.get("SensorTimestamp")
    if sensor is None:
        return None
    return int(sensor) - int(metadata.get("ExposureTime") or 0) * 1000


__all__ = [
    "INSTALL_HINT",
    "NUMPY_HINT",
    "Picamera2Camera",
    "exposure_start_ns",
    "import_hint",
    "tight_i420",
]
