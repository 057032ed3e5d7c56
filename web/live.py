"""Live view: each station's latest frame as an MJPEG stream, bounded in time and rate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, request
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


def streamable(path: Path) -> Path:
    """``path`` if it holds a readable JPEG now, else a 404: a station that has its status file
    but no picture yet (or an unreadable one) gets no stream that would hold a slot and send
    nothing until its time limit; the page's retry asks again and gets the picture once the
    station writes one."""
    if _read_jpeg(path) is None:
        abort(404)
    return path


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


def _never() -> bool:
    return False


def client_gone() -> Callable[[], bool]:
    """Whether this request's client has gone away: waitress's check (the server reads each
    connection while its response streams, ``channel_request_lookahead``, so it sees the
    client close); never, outside waitress (the test client)."""
    check: Callable[[], bool] | None = request.environ.get("waitress.client_disconnected")
    return check if check is not None else _never


_HEAD = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode("ascii")


class SlotStream:
    """A streamed response body that holds one of the site's stream slots (live pictures,
    kiosk screens) from when it is made until ``close``, which the server calls when the
    stream ends or its client goes away. It runs while the site is up (``stop``), for at most
    ``max_s``, and while ``gone()`` does not say its client left."""

    def __init__(
        self,
        path: Path,
        *,
        max_s: float,
        stop: threading.Event,
        slot: threading.BoundedSemaphore,
        gone: Callable[[], bool] = _never,
    ) -> None:
        self.path = path
        self.max_s = max_s
        self.stop = stop
        self.gone = gone
        self._slot: threading.BoundedSemaphore | None = slot

    def close(self) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None


class MjpegStream(SlotStream):
    """multipart/x-mixed-replace body: a part whenever the JPEG changes, else a keepalive.

    Each part is sent with the next part's headers: Chromium shows a part only once the next
    one begins (its closing boundary alone is not enough), so a frame that does not change
    would show only at the next keepalive. The stream ends with that begun part left empty,
    which keeps the last frame on screen.

    Sleeps ``interval`` between looks at the file (so a stream costs a stat per tick, not a
    busy loop), ends after ``max_s``, when the site stops or once ``gone()`` says the client
    left (at the next tick: an unchanged frame writes nothing, so no failed write would tell
    for up to two keepalives), and gives back its slot in ``close`` (called by the server when
    the stream ends or the client goes away).
    """

    def __init__(
        self,
        path: Path,
        *,
        interval: float,
        max_s: float,
        stop: threading.Event,
        slot: threading.BoundedSemaphore,
        gone: Callable[[], bool] = _never,
    ) -> None:
        super().__init__(path, max_s=max_s, stop=stop, slot=slot, gone=gone)
        self.interval = interval

    def __iter__(self) -> Iterator[bytes]:
        deadline = time.monotonic() + self.max_s
        last_key: tuple[int, int] | None = None
        last_sent = 0.0
        begun = False  # a part's headers are out, its JPEG not yet
        while not self.stop.is_set() and time.monotonic() < deadline:
            got = _read_jpeg(self.path)
            now = time.monotonic()
            if got is not None and (got[1] != last_key or now - last_sent >= KEEPALIVE_S):
                last_key, last_sent = got[1], now
                yield (b"" if begun else _HEAD) + got[0] + b"\r\n" + _HEAD
                begun = True
            if self.stop.wait(self.interval) or self.gone():
                break
        if not self.gone():  # else there is no one to tell
            yield (b"\r\n" if begun else b"") + f"--{BOUNDARY}--\r\n".encode("ascii")


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
    path = streamable(_frame_path(key))
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
        gone=client_gone(),
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
