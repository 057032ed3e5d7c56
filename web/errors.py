"""Error pages (HTML, translated) and JSON errors for /api/; no stack traces to clients."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import (
    Conflict,
    HTTPException,
    InternalServerError,
    NotFound,
    ServiceUnavailable,
)

from station.proof.bundle import (
    ALL_DELETED,
    CLIP_MISSING,
    CLOSED_LOG_BROKEN,
    DELETED_UNMANIFESTED,
    DELETED_UNSIGNED,
    NO_CHECKPOINT,
    NOT_SIGNED,
    SEVERAL_KEYS,
)
from web.formatting import fmt_dt, fmt_site_dt

log = logging.getLogger(__name__)

MESSAGES = {
    400: _l("The request could not be understood."),
    401: _l("Please log in."),
    403: _l("Your account may not open this page."),
    404: _l("There is nothing here."),
    405: _l("That method is not allowed here."),
    409: _l("The packing station cannot build an evidence bundle of this order."),
    410: _l("This link has expired or was revoked."),
    413: _l("The request is too large."),
    416: _l("The requested range is not available."),
    429: _l("Too many requests; wait a moment."),
    500: _l("Something went wrong on the server. It has been logged."),
    501: _l("This is done on the station that recorded the clip, not on this site."),
    503: _l("The server is busy; try again shortly."),
    507: _l("Not enough free space for this now; the station keeps its disk for recording."),
}


class InsufficientStorage(HTTPException):
    """507: doing this now would take disk space the station needs for recording."""

    code = 507
    description = "insufficient storage"


class StationUnavailable(ServiceUnavailable):
    """503: the station that builds evidence bundles is not running, or still building."""


class ArchivedCopyAltered(ServiceUnavailable):
    """503: the archived copy of a clip (central site: its object in the bucket) is not the clip
    the station signed, so it is not served; no Retry-After: asking again does not mend it."""

    description = "archived-copy-altered"


class ClipNotUploaded(NotFound):
    """404: the central site holds the clip's record but its station has not uploaded the
    video yet (404, as the player reads it: not here, for now)."""

    description = "clip-not-uploaded"


class ClipDeleted(NotFound):
    """404: the station's retention deleted the clip's video (``deleted_utc``: when, as the
    index keeps it); the page says so and when, and ``X-Clip-Deleted`` tells the order page's
    player, whose page may be older than the deletion, not to call the file missing."""

    description = "clip-deleted"

    def __init__(self, deleted_utc: str) -> None:
        super().__init__()
        self.deleted_utc = deleted_utc


STATION_MESSAGES = {
    "station-down": _l(
        "Evidence bundles are built and signed by the packing station, and it is not running "
        "now. Start it (or wait a minute) and try again."
    ),
    "bundle-pending": _l(
        "The packing station is still building this evidence bundle. Try again in a moment."
    ),
    "bundle-too-large": _l(
        "This order's evidence bundle is too large to build on this site. Download its clips "
        "one by one here, or ask whoever runs the packing station to export the bundle there "
        "(packcam export)."
    ),
    # the order page says the same under the clip's player (templates/order.html)
    ClipNotUploaded.description: _l(
        "The video of this clip has not reached this site yet: its station uploads videos "
        "after recording, and a station that is offline uploads them later."
    ),
    "bundle-not-signed": _l(
        "No evidence bundle signed by the packing station covers every clip of this order yet. "
        "The station uploads one after it archives a clip (and its timestamp); try again in a "
        "few minutes. A station that stopped before then never signed one."
    ),
}

# The same, to the holder of a share link (the platform's reviewer), who has no station to start.
SHARED_STATION_DOWN = _l(
    "The packing station that builds and signs this evidence bundle is not running now. Try "
    "again later, or ask the sender of this link."
)


class BundleConflict(Conflict):
    """409: the station will not build the order's evidence bundle; ``refusal`` (its
    ``ExportRefused.code``, station/proof/bundle.py) says why, ``params`` its times."""

    def __init__(self, refusal: str, params: Mapping[str, object]) -> None:
        super().__init__(description=f"bundle-refused {refusal}")
        self.refusal = refusal
        self.params = dict(params)


# Why the station refused, to its staff: what happened and what they can do instead.
REFUSALS = {
    NOT_SIGNED: _l(
        "This order has no signed clips to put in an evidence bundle: they were recorded "
        "before the packing station signed its clips. Download the clips one by one."
    ),
    SEVERAL_KEYS: _l(
        "This order's clips were recorded before and after the packing station's key was "
        "replaced, and an evidence bundle holds the clips of one key only. Download the clips "
        "one by one."
    ),
    CLOSED_LOG_BROKEN: _l(
        "The packing station's record of the replaced key this order was signed with is not "
        "whole, so it cannot build the order's evidence bundle. Ask whoever runs the station "
        "to check it (packcam audit), or send the central site's evidence bundle of this order."
    ),
    NO_CHECKPOINT: _l(
        "No signed checkpoint of the packing station's log covers this order's newest clip "
        "yet, and the station could not sign one now. It signs one every few clips and when it "
        "stops: try again later."
    ),
    CLIP_MISSING: _l(
        "A video file of this order was not on the packing station's disk when the bundle was "
        "built, and the station has no record of deleting it. If its retention was deleting "
        "the clip at that moment, try again in a minute (the bundle then shows the deletion); "
        "otherwise ask whoever runs the station to check its disk (packcam audit)."
    ),
}
# To a share link's holder, for a refusal that says nothing the order's page does not: the
# rest is about the station's keys, log and disk, which are its staff's business.
SHARED_CANNOT_BUILD = _l(
    "The evidence bundle of this order cannot be built now. Ask the sender of this link."
)


def refusal_message(refusal: str, params: Mapping[str, object], *, shared: bool) -> str:
    """Why the order's evidence bundle cannot be built, in the reader's language; ``shared``:
    to a share link's holder (no advice for the station's staff, nothing of its set-up)."""
    deleted = params.get("deleted_utc")
    when = fmt_site_dt(deleted) if isinstance(deleted, str) else ""
    started = params.get("started")
    start = fmt_dt(started) if isinstance(started, str) else ""
    said: str
    if refusal in (DELETED_UNSIGNED, DELETED_UNMANIFESTED) and when and start:
        if shared:
            said = _(
                "No evidence bundle can be built for this order: its clip recorded %(start)s "
                "was deleted by the station's retention on %(when)s without a record a bundle "
                "can show. The clips left can be watched and downloaded on this link's page.",
                start=start,
                when=when,
            )
        elif refusal == DELETED_UNSIGNED:
            said = _(
                "No evidence bundle can be built for this order: its clip recorded %(start)s "
                "was deleted by the station's retention on %(when)s, and that deletion has no "
                "signed record (the station was not signing then). A bundle may leave a clip "
                "out only by the station's signed record of its deletion. Download the clips "
                "left one by one.",
                start=start,
                when=when,
            )
        else:
            said = _(
                "No evidence bundle can be built for this order: its clip recorded %(start)s "
                "was deleted by the station's retention on %(when)s, and that clip was never "
                "signed (recorded before the station signed its clips), so a bundle could not "
                "show which clip it leaves out. Download the clips left one by one.",
                start=start,
                when=when,
            )
    elif refusal == ALL_DELETED and when:
        said = _(
            "Every clip of this order was deleted by the station's retention (the last on "
            "%(when)s), each by the station's signed record: no video is left to put in an "
            "evidence bundle.",
            when=when,
        )
    elif refusal == NOT_SIGNED and shared:
        said = _(
            "The packing station did not sign this order's clips, so there is no evidence "
            "bundle of it. The clips can be watched and downloaded on this link's page."
        )
    elif shared:
        said = str(SHARED_CANNOT_BUILD)
    else:
        said = str(REFUSALS.get(refusal, MESSAGES[409]))
    return said


CSRF_MESSAGE = _l("The form expired. Go back, reload the page and try again.")
BAD_LINK = "bad-share-link"  # a share link whose token does not check out
BAD_LINK_MESSAGE = _l(
    "This link is incomplete or not valid. Copy the whole link again from the message it "
    "came in, or ask the sender for a new one."
)
ALTERED_MESSAGE = _l(
    "The archived copy of this order's video does not match the record the packing station "
    "signed, so it is not served. This has been logged for the site's administrators."
)


def _render(status: int, description: str | None, said: str | None = None) -> Any:
    if said is not None:
        message = said
    elif description == "csrf":
        message = str(CSRF_MESSAGE)
    elif description == BAD_LINK:
        message = str(BAD_LINK_MESSAGE)
    elif description == ArchivedCopyAltered.description:
        message = str(ALTERED_MESSAGE)
    elif description == "station-down" and request.blueprint == "share":
        message = str(SHARED_STATION_DOWN)
    elif description in STATION_MESSAGES:
        message = str(STATION_MESSAGES[description])
    else:
        message = str(MESSAGES.get(status, ""))
    if request.path.startswith("/api/"):
        resp = jsonify(error=message or f"HTTP {status}")
        resp.status_code = status
        if status == 401:
            resp.headers["WWW-Authenticate"] = 'Basic realm="packcam", charset="UTF-8"'
        return resp
    return render_template("error.html", status=status, message=message), status


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        if status < 400:
            return exc
        said = None
        if isinstance(exc, BundleConflict):
            said = refusal_message(exc.refusal, exc.params, shared=request.blueprint == "share")
        elif isinstance(exc, ClipDeleted):
            said = _(
                "The station deleted this clip's video on %(when)s under its retention policy (to"
                " keep room for recording); the record of the clip and of its deletion stays.",
                when=fmt_site_dt(exc.deleted_utc),
            )
        resp = _render(status, exc.description, said)
        headers = {}
        if isinstance(exc, ClipDeleted):  # the player reads it (static/app.js)
            headers["X-Clip-Deleted"] = exc.deleted_utc.encode("ascii", "replace").decode()
        keep = {405: "Allow", 429: "Retry-After", 503: "Retry-After"}.get(status)
        if keep and exc.get_response().headers.get(keep):
            headers[keep] = exc.get_response().headers[keep]
        if not headers:
            return resp
        if isinstance(resp, tuple):
            return (*resp, headers)
        resp.headers.update(headers)
        return resp

    @app.errorhandler(InternalServerError)
    def server_error(exc: InternalServerError) -> Any:
        original = getattr(exc, "original_exception", None)
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
        return _render(500, None)
