"""Error pages (HTML, translated) and JSON errors for /api/; no stack traces to clients."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import HTTPException, InternalServerError, NotFound, ServiceUnavailable

log = logging.getLogger(__name__)

MESSAGES = {
    400: _l("The request could not be understood."),
    401: _l("Please log in."),
    403: _l("Your account may not open this page."),
    404: _l("There is nothing here."),
    405: _l("That method is not allowed here."),
    409: _l("This order has no signed clips to put in an evidence bundle."),
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


def _render(status: int, description: str | None) -> Any:
    if description == "csrf":
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
        resp = _render(status, exc.description)
        keep = {405: "Allow", 429: "Retry-After", 503: "Retry-After"}.get(status)
        if keep and exc.get_response().headers.get(keep):
            headers = {keep: exc.get_response().headers[keep]}
            if isinstance(resp, tuple):
                return (*resp, headers)
            resp.headers.update(headers)
        return resp

    @app.errorhandler(InternalServerError)
    def server_error(exc: InternalServerError) -> Any:
        original = getattr(exc, "original_exception", None)
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
        return _render(500, None)
