"""Live view: each station's latest frame as an MJPEG stream, bounded in time and rate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template
from werkzeug.wrappers import Response

from web.auth import require
from web.handles import file_warnings
from web.stations import live_files, read_stations

log = logging.getLogger(__name__)

bp = Blueprint("live", __name__)

BOUNDARY = "packcamframe"
MAX_JPEG = 8 * 1024 * 1024
KEEPALIVE_S = 5.0


def _frame_path(key: str) -> Path:
    """The station's JPEG, found through the directory listing (the key is never a path)."""
    status = live_files(current_app.config["LIVE_DIR"]).get(key)
    if status is None:
        abort(404)
    return status.with_suffix(".jpg")


def _read_jpeg(path: Path) -> tuple[bytes, tuple[int, int]] | None:
    try:
        st = path.stat()
        if st.st_size == 0 or st.st_size > MAX_JPEG:
            return None
        data = path.read_bytes()  # a preview frame (tens of KB), replaced atomically
    except OSError:
        return None
    if not data.startswith(b"\xff\xd8"):
        return None
    return data, (st.st_ino, st.st_mtime_ns)


class MjpegStream:
    """multipart/x-mixed-replace body: a part whenever the JPEG changes, else a keepalive.

    Sleeps ``interval`` between looks at the file (so a stream costs a stat per tick, not a
    busy loop), ends after ``max_s`` or when the site stops, and gives back its slot in
    ``close`` (called by the server when the client goes away, too).
    """

    def __init__(
        self,
        path: Path,
        *,
        interval: float,
        max_s: float,
        stop: threading.Event,
        slot: threading.BoundedSemaphore,
    ) -> None:
        self.path = path
        self.interval = interval
        self.max_s = max_s
        self.stop = stop
        self._slot: threading.BoundedSemaphore | None = slot

    def _part(self, data: bytes) -> bytes:
        head = (
            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode("ascii")
        return head + data + b"\r\n"

    def __iter__(self) -> Iterator[bytes]:
        deadline = time.monotonic() + self.max_s
        last_key: tuple[int, int] | None = None
        last_sent = 0.0
        while not self.stop.is_set() and time.monotonic() < deadline:
            got = _read_jpeg(self.path)
            now = time.monotonic()
            if got is not None and (got[1] != last_key or now - last_sent >= KEEPALIVE_S):
                last_key, last_sent = got[1], now
                yield self._part(got[0])
            if self.stop.wait(self.interval):
                break
        yield f"--{BOUNDARY}--\r\n".encode("ascii")

    def close(self) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None


@bp.get("/live")
@require("operator")
def page() -> str:
    cfg = current_app.config
    if cfg.get("PACKCAM_CENTRAL"):
        # The central site has no cameras: each station's own site shows its live picture.
        return render_template("live.html", stations=[], max_s=0, central=True)
    stations = read_stations(cfg["LIVE_DIR"], cfg["STALE_AFTER_S"], file_warnings())
    return render_template("live.html", stations=stations, max_s=int(cfg["LIVE_MAX_S"]))


@bp.get("/live/<key>/stream.mjpg")
@require("operator")
def stream(key: str) -> Response:
    path = _frame_path(key)
    ext = current_app.extensions["packcam"]
    slot: threading.BoundedSemaphore = ext["live_slots"]
    if not slot.acquire(blocking=False):
        log.warning("too many live streams open; refusing another")
        abort(503)
    body = MjpegStream(
        path,
        interval=current_app.config["LIVE_INTERVAL_S"],
        max_s=current_app.config["LIVE_MAX_S"],
        stop=ext["stop"],
        slot=slot,
    )
    resp = Response(
        body,
        mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        direct_passthrough=True,
    )
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"  # tell a proxy in front not to buffer the stream
    return resp


@bp.get("/live/<key>/frame.jpg")
@require("operator")
def frame(key: str) -> Response:
    got = _read_jpeg(_frame_path(key))
    if got is None:
        abort(404)
    resp = Response(got[0], mimetype="image/jpeg")
    resp.headers["Cache-Control"] = "no-store"
    return resp
