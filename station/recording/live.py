"""Publishes the station's latest frame and state to <data>/live/ for the web live view."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from station.capture.codes import safe_component
from station.capture.frames import resize_i420
from station.runtime.clock import clock_synced
from station.runtime.priority import lower_thread_priority
from station.store.files import remove_stale_temps

log = logging.getLogger(__name__)


def _replace_bytes(path: Path, data: bytes) -> None:
    # No fsync: this is a preview, replaced five times a second; a torn write is just skipped.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def _overwrite_in_place(path: Path, data: bytes) -> None:
    """Rewrite an existing small file in its own blocks: works on a full disk.

    A reader may catch it half-written (the web view then shows "unreadable status" until
    the next refresh); that is better than a status frozen at "recording" on a full disk.
    """
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class _Update:
    """One mailbox item: a frame to publish with its status, or (image None) a status only."""

    image: np.ndarray | None
    status: Any
    dropped: int
    state: str | None
    at: float  # the writer's clock when it was handed over


class LiveWriter:
    """Writes ``live/<station>.jpg`` and ``live/<station>.json`` at most every ``interval`` s.

    Called from the capture thread for every frame (see ``Station.on_frame``); it does real work
    only once per interval (a downscale, a JPEG encode, two small atomic writes). Errors are
    logged, never raised.

    ``threaded=True`` (the station): that work happens on a background thread ("live-view",
    at background priority), so the capture loop never waits for the file system; a rename
    on a busy SD card can take longer than a frame. The capture thread only drops the frame
    and status into a one-slot mailbox (a newer one replaces one not yet written); the image
    is kept by reference, so the caller must not modify it afterwards. ``write_status`` goes
    through the same mailbox, in order. ``close`` writes what is pending and stops the thread.
    Without ``threaded`` every call writes at once (tests, tools). ``clock`` (seconds,
    monotonic) paces the writes and the fps figure; tests pass a fake one.
    """

    def __init__(
        self,
        data_dir: Path,
        station_name: str,
        *,
        interval: float = 0.2,
        width: int = 640,
        threaded: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dir = data_dir / "live"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stem = safe_component(station_name, 32)
        for name in (f"{self.stem}.jpg", f"{self.stem}.json"):  # a station killed mid-write
            remove_stale_temps(self.dir / name, "tmp")
        self.station = station_name
        self.data_dir = data_dir
        self.interval = interval
        self.width = width
        self.threaded = threaded
        self._clock = clock
        self._next = 0.0
        self._next_slow = 0.0
        self._slow: dict[str, Any] = {}
        self._fps_mark: tuple[float, int] | None = None
        self._next_error_log = 0.0
        self.fps = 0.0
        self._wake = threading.Condition()
        self._pending: _Update | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def __call__(self, image: np.ndarray, status: Any, dropped: int = 0) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self.interval
        self._submit(_Update(image, status, dropped, None, now))

    def write_status(self, status: Any, dropped: int = 0, state: str | None = None) -> None:
        """Write the status file now (threaded: next), e.g. ``state="stopped"`` at the end."""
        self._submit(_Update(None, status, dropped, state, self._clock()))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is pending, then stop the thread (threaded mode); idempotent."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _submit(self, update: _Update) -> None:
        if not self.threaded:
            self._do(update)
            return
        with self._wake:
            if self._closing:
                return
            self._pending = update
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="live-view", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _loop(self) -> None:
        lower_thread_priority()
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                update, self._pending = self._pending, None
                if update is None:  # closing and nothing left to write
                    return
            self._do(update)

    def _do(self, u: _Update) -> None:
        try:
            if u.image is None:
                self._write_status(u.status, u.dropped, u.state)
            else:
                self._publish(u.image, u.status, u.dropped, u.at)
        except Exception as exc:
            # A preview must never hurt recording: retry next time, say so once a minute.
            if u.at >= self._next_error_log:
                self._next_error_log = u.at + 60.0
                log.warning("live view update failed (retrying): %s", exc)
            with contextlib.suppress(OSError):  # recreate a vanished folder for next time
                self.dir.mkdir(parents=True, exist_ok=True)

    def _publish(self, image: np.ndarray, status: Any, dropped: int, now: float) -> None:
        if self._fps_mark is not None and now > self._fps_mark[0]:
            self.fps = (status.frames - self._fps_mark[1]) / (now - self._fps_mark[0])
        self._fps_mark = (now, status.frames)
        if now >= self._next_slow:  # disk and clock change slowly; ask once every 5 s
            self._next_slow = now + 5.0
            self._slow = {
                "disk_free_bytes": shutil.disk_usage(self.data_dir).free,
                "clock_synced": clock_synced(),
            }
        if image.ndim == 2:
            # A planar I420 frame: scale its planes down first, then make the only BGR picture
            # of the station from the small one (a full-size conversion costs 10x more).
            h, w = image.shape[0] * 2 // 3, image.shape[1]
            if w > self.width:
                image = resize_i420(image, self.width, max(2, h * self.width // w // 2 * 2))
            image = cv2.cvtColor(image, cv2.COLOR_YUV2BGR_I420)
        h, w = image.shape[:2]
        if w > self.width:
            image = cv2.resize(
                image, (self.width, h * self.width // w), interpolation=cv2.INTER_AREA
            )
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])
        # The status first: on a full disk the picture cannot be written, the state can.
        self._write_status(status, dropped, None)
        if ok:
            _replace_bytes(self.dir / f"{self.stem}.jpg", jpeg.tobytes())

    def _write_status(self, status: Any, dropped: int, state: str | None) -> None:
        doc = {
            "station": self.station,
            "state": state or status.state,
            "order_id": status.order_id,
            "waybills": list(status.waybills),
            "elapsed_s": None if status.elapsed_s is None else round(status.elapsed_s, 1),
            "frames": status.frames,
            "fps": round(self.fps, 1),
            "dropped": dropped,
            "last_error": status.last_error,
            # the most important active alarm, e.g. "disk-full: ... not starting new clips"
            "alarm": getattr(status, "alarm", None),
            "packer": getattr(status, "packer", None),  # signed in now (issue 13)
            "updated_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "pid": os.getpid(),
            **self._slow,
        }
        data = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        path = self.dir / f"{self.stem}.json"
        try:
            _replace_bytes(path, data)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or not path.exists():
                raise
            _overwrite_in_place(path, data)
