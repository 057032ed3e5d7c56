"""Frame and input-event types plus the Protocols every camera and scan source implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured picture.

    ``image`` is an HxWx3 uint8 BGR array (OpenCV order), or with ``pixel_format`` "i420" a
    planar YUV420 array of shape (H*3/2, W) whose first H rows are the Y (grey) plane, as a
    camera that delivers YUV420 gives it (picamera2). ``t`` is seconds on the source's own
    timeline: ``time.monotonic()`` for live sources, the presentation time for files and the
    frame index / fps for non-real-time synthetic sources. Every decision (pre-roll, timeouts,
    scan times) uses ``t``; ``wall`` is the aware local wall-clock time of the same instant and
    is only shown and stored.
    """

    image: np.ndarray
    t: float
    wall: datetime
    index: int
    pixel_format: str = "bgr"  # "bgr" | "i420"

    @property
    def luma(self) -> np.ndarray:
        """The grey picture: the Y plane of an I420 frame (a view), or the BGR image."""
        if self.pixel_format == "i420":
            return self.image[: self.image.shape[0] * 2 // 3]
        return self.image


def i420_planes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y (H x W), U and V (H/2 x W/2) planes of a planar I420 (H*3/2, W) array."""
    height, width = image.shape[0] * 2 // 3, image.shape[1]
    quarter = height // 4
    u = image[height : height + quarter].reshape(height // 2, width // 2)
    v = image[height + quarter : height + 2 * quarter].reshape(height // 2, width // 2)
    return image[:height], u, v


def resize_i420(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """An I420 frame scaled to ``width`` x ``height`` (even) plane by plane: no BGR made."""
    y, u, v = i420_planes(image)
    out = np.empty((height * 3 // 2, width), np.uint8)
    oy, ou, ov = i420_planes(out)
    shrink = width * height < y.shape[0] * y.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    cv2.resize(y, (width, height), dst=oy, interpolation=interp)
    cv2.resize(u, (width // 2, height // 2), dst=ou, interpolation=interp)
    cv2.resize(v, (width // 2, height // 2), dst=ov, interpolation=interp)
    return out


@runtime_checkable
class FrameSource(Protocol):
    """A camera. ``start`` once, ``read`` until it returns None (end of input), ``stop`` once.

    ``read`` blocks for at most ``timeout`` seconds and raises ``CameraError`` when the device is
    gone or no frame arrived in time. Live sources that fall behind drop frames rather than
    queue them, and count them in ``dropped``. Not thread-safe: one capture thread owns it.
    """

    width: int
    height: int
    fps: float
    dropped: int
    live: bool

    def start(self) -> None: ...

    def read(self, timeout: float = 2.0) -> Frame | None: ...

    def stop(self) -> None: ...


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels


@dataclass(frozen=True, slots=True)
class RawScan:
    """Text read by a scanner or decoded from a frame, before classification.

    ``t`` is on the camera's timeline (see ``Frame.t``); ``source`` names where it came from:
    "camera", "keyboard", "stdin", "script". ``symbology`` ("ean13", "code128", ...; see
    station/capture/barcodes.py) is known for camera reads only; a keyboard-wedge scanner types
    text. ``box``: where the camera read it, (x0, y0, x1, y1) in frame pixels (None for a hand
    scan); where a scan was read, not what was read, so two scans compare equal without it.
    ``first_t``: for a camera read confirmed at ``t`` (the frame that gave it enough looks),
    the frame time of the camera's first look at it in that sighting (None: unknown, or
    ``t``); like ``box``, not part of what was read.
    """

    text: str
    source: str
    t: float
    symbology: str = ""
    box: Box | None = field(default=None, compare=False)
    first_t: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class PedalPress:
    """The foot pedal / button was pressed at ``t`` (camera timeline)."""

    t: float
    source: str = "pedal"


@dataclass(frozen=True, slots=True)
class PackerPick:
    """A packer picked their name on the station screen at ``t`` (camera timeline), or
    signed out (``packer`` None): handled exactly like their badge or the sign-out card."""

    packer: str | None
    t: float
    source: str = "screen"


InputEvent = RawScan | PedalPress | PackerPick


@runtime_checkable
class ScanSource(Protocol):
    """Anything that produces scans or pedal presses.

    ``poll(now)`` returns the events that happened up to camera time ``now`` and never blocks;
    threaded sources (evdev, stdin, GPIO) queue internally and drain here. A source that fails
    logs and keeps trying to reconnect; ``poll`` never raises for a device problem.
    """

    def start(self) -> None: ...

    def poll(self, now: float) -> list[InputEvent]: ...

    def stop(self) -> None: ...


class FrameScanner(ScanSource, Protocol):
    """A scan source fed with camera frames: the barcode reader (barcodes.ScanWorker).

    ``submit`` hands it a frame to read; its scans come out of ``poll`` like any scanner's.
    ``sync`` says it reads inline in ``submit`` (file replay) instead of in its own thread, so
    the frame may be drawn on as soon as ``submit`` returns.
    """

    @property
    def sync(self) -> bool: ...

    def submit(self, frame: Frame) -> None: ...


@dataclass(frozen=True, slots=True)
class Caption:
    """What is burned into one frame's band (overlay.Overlay).

    ``wall`` is the aware wall-clock time shown (to the second); ``order_id`` and ``waybill``
    (waybills joined by spaces) the order the frame shows, None when none; ``elapsed_s`` the
    time since the clip started (``REC mm:ss`` while ``recording``, bare ``REC`` when None);
    ``packer`` who packs; ``kind`` "order" or "return" (a return clip is marked).
    """

    wall: datetime
    order_id: str | None = None
    waybill: str | None = None
    elapsed_s: float | None = None
    recording: bool = False
    packer: str | None = None
    kind: str = "order"


class FrameOverlay(Protocol):
    """Draws the burned-in band (time, order, waybills, packer) on an I420 frame in place
    (overlay.Overlay)."""

    def apply_i420(self, image: np.ndarray, caption: Caption) -> None: ...
