"""The station screen: a full-screen kiosk page (live picture, order, state, sign-in), by SSE."""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from station.floor.packer_inbox import write_request
from web.handles import site_config
from web.live import BOUNDARY, MjpegStream, SlotStream, client_gone, streamable
from web.stations import live_files

log = logging.getLogger(__name__)

bp = Blueprint("screen", __name__)

F = TypeVar("F", bound=Callable[..., Any])
_KEY = re.compile(r"^[A-Za-z0-9_~-]{1,80}$")
LOOPBACK = frozenset({"127.0.0.1", "::1"})
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host")
POLL_S = 0.05  # how often a stream looks at the screen file: well inside the 300 ms bound
KEEPALIVE_S = 15.0
STREAM_MAX_S = 3600.0  # the browser's EventSource reconnects by itself
MAX_DOC = 256 * 1024


def kiosk_allowed() -> bool:
    """A logged-in operator, the station's own browser (loopback, not through a proxy) when
    ``[screen] allow_localhost``, or the ``[screen] token``."""
    cfg = site_config().screen
    user = g.get("user")
    if user is not None and user.can("operator"):
        return True
    token = request.args.get("token", "")
    if cfg.token and token and hmac.compare_digest(token.encode(), cfg.token.encode()):
        return True
    if cfg.allow_localhost and request.remote_addr in LOOPBACK:
        # A reverse proxy on this machine makes every visitor look local: not a kiosk then.
        return not any(h in request.headers for h in PROXY_HEADERS)
    return False


def kiosk(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not kiosk_allowed():
            if g.get("user") is None and "token" not in request.args:
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            abort(403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def _screen_dir() -> Path:
    return Path(current_app.config["DATA_DIR"]) / "screen"


def screen_keys() -> list[str]:
    """Station keys with a screen file (from the listing: a key is never a path)."""
    try:
        return sorted(p.stem for p in _screen_dir().glob("*.json") if _KEY.match(p.stem))
    except OSError:
        return []


def _screen_file(key: str) -> Path:
    if key not in screen_keys():
        abort(404)
    return _screen_dir() / f"{key}.json"


def _read(path: Path) -> tuple[bytes, tuple[int, int, int]] | None:
    try:
        st = path.stat()
        if st.st_size == 0 or st.st_size > MAX_DOC:
            return None
        data = path.read_bytes()
        json.loads(data)  # a torn or foreign file is skipped, not sent
    except (OSError, ValueError):
        return None
    return data, (st.st_ino, st.st_mtime_ns, st.st_size)


def _token_arg() -> dict[str, Any]:
    token = request.args.get("token")
    return {"token": token} if token else {}


@bp.get("/screen")
@kiosk
def choose() -> Any:
    keys = screen_keys()
    if len(keys) == 1:
        return redirect(url_for("screen.page", key=keys[0], **_token_arg()))
    return render_template("screen_list.html", keys=keys, token=_token_arg())


@bp.get("/screen/<key>")
@kiosk
def page(key: str) -> str:
    _screen_file(key)
    has_live = key in live_files(current_app.config["LIVE_DIR"])
    packers = site_config().screen.packers
    return render_template(
        "screen.html", key=key, has_live=has_live, token=_token_arg(), packers=packers
    )


@bp.post("/screen/<key>/packer")
@kiosk
def packer(key: str) -> Any:
    """Sign a packer in (``packer``: a name of ``[screen] packers``) or out
    (``action=signout``), as their badge would: the request goes to the station process
    through its inbox (station/floor/packer_inbox.py); the screen shows the packer once the
    station has taken it (the stream). No PIN: see docs/integration.md."""

    _screen_file(key)
    names = site_config().screen.packers
    if request.form.get("action") == "signout":
        who = None
    else:
        who = request.form.get("packer", "")
        if who not in names:
            abort(400, description="not a packer of this station ([screen] packers)")
    try:
        write_request(Path(current_app.config["DATA_DIR"]), key, who)
    except OSError as exc:  # the station has not made its inbox yet, or does not read it
        log.warning("screen sign-in for %s not delivered: %s", key, exc)
        abort(503, description="the station is not taking sign-ins right now")
    log.info("screen sign-in at %s: %s", key, f"{who!r} picked" if who else "sign-out")
    if request.accept_mimetypes.best == "application/json":
        return {"ok": True, "packer": who}
    return redirect(url_for("screen.page", key=key, **_token_arg()), code=303)


class ScreenEvents(SlotStream):
    """The SSE body: the screen document whenever its file changes, a comment as keepalive;
    ends as a SlotStream does, and gives back its slot in ``close``."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"retry: 1000\n\n"
        deadline = time.monotonic() + self.max_s
        last: tuple[int, int, int] | None = None
        last_sent = time.monotonic()
        while not self.stop.is_set() and time.monotonic() < deadline:
            got = _read(self.path)
            now = time.monotonic()
            if got is not None and got[1] != last:
                last, last_sent = got[1], now
                yield b"event: screen\ndata: " + got[0].replace(b"\n", b" ") + b"\n\n"
            elif now - last_sent >= KEEPALIVE_S:
                last_sent = now
                yield b": keepalive\n\n"
            if self.stop.wait(POLL_S) or self.gone():
                break


def _slots() -> threading.BoundedSemaphore:
    ext = current_app.extensions["packcam"]
    with _SLOTS_LOCK:
        if "screen_slots" not in ext:
            # A kiosk holds two (events and picture); the other half of the threads serve pages.
            threads = site_config().web.threads
            ext["screen_slots"] = threading.BoundedSemaphore(max(2, threads // 2))
        slots: threading.BoundedSemaphore = ext["screen_slots"]
        return slots


_SLOTS_LOCK = threading.Lock()


@bp.get("/screen/<key>/events")
@kiosk
def events(key: str) -> Response:
    path = _screen_file(key)
    slot = _slots()
    head = request.method == "HEAD"  # screen.js asking why its events were refused
    if not slot.acquire(blocking=False):
        if not head:  # its refused GET has just been logged
            log.warning("too many station screens open; refusing another")
        abort(503)
    if head:  # no stream, no slot kept
        slot.release()
        return Response(mimetype="text/event-stream", headers={"Cache-Control": "no-store"})
    body = ScreenEvents(
        path,
        stop=current_app.extensions["packcam"]["stop"],
        slot=slot,
        max_s=float(current_app.config.get("SCREEN_STREAM_MAX_S", STREAM_MAX_S)),
        gone=client_gone(),
    )
    resp = Response(body, mimetype="text/event-stream", direct_passthrough=True)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp


@bp.get("/screen/<key>/stream.mjpg")
@kiosk
def stream(key: str) -> Response:
    status = live_files(current_app.config["LIVE_DIR"]).get(key)
    if status is None:
        abort(404)
    path = streamable(status.with_suffix(".jpg"))
    slot = _slots()
    if not slot.acquire(blocking=False):
        abort(503)
    body = MjpegStream(
        path,
        interval=current_app.config["LIVE_INTERVAL_S"],
        max_s=float(current_app.config.get("SCREEN_STREAM_MAX_S", STREAM_MAX_S)),
        stop=current_app.extensions["packcam"]["stop"],
        slot=slot,
        gone=client_gone(),
    )
    resp = Response(
        body, mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}", direct_passthrough=True
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp
