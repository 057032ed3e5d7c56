"""Each server thread's handles (web database, clip index) and the session's CSRF token."""

from __future__ import annotations

import secrets
import threading
from typing import cast

from flask import current_app, session

from web.backends import MediaStore
from web.db import WebDB
from web.index import ClipIndex


def csrf_token() -> str:
    """The session's CSRF token (made on first use); every form posts it back."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


class _Handles(threading.local):
    """Each server thread's own open handles, kept between requests.

    Closing the last connection to a WAL database checkpoints it (and re-creates the WAL on
    the next write), which cost ~10 ms per request; a connection per thread avoids that and
    re-reading the schema. SQLite notices the station's commits and migrations by itself.
    """

    webdb: WebDB | None = None
    index: ClipIndex | None = None


def get_db() -> WebDB:
    """This thread's web.sqlite3 handle."""
    handles: _Handles = current_app.extensions["packcam"]["handles"]
    if handles.webdb is None:
        handles.webdb = WebDB(
            current_app.config["WEB_DB_PATH"],
            pw_method=current_app.config["PASSWORD_METHOD"],
            setup=False,
        )
    return handles.webdb


def get_index() -> ClipIndex:
    """This thread's read-only clip index handle (central mode: the PostgreSQL index)."""
    ext = current_app.extensions["packcam"]
    if ext.get("index") is not None:
        # Given from outside (central mode: the PostgreSQL index, which has ClipIndex's read
        # methods: order, clip, search, stations, ...): a callable for this thread's handle.
        return cast(ClipIndex, ext["index"]())
    handles: _Handles = ext["handles"]
    if handles.index is None:
        handles.index = ClipIndex(
            current_app.config["INDEX_PATH"], search=current_app.extensions["packcam"]["search"]
        )
    return handles.index


def media_store() -> MediaStore | None:
    """The store the site's clips come from when they are not this data dir's files (an app
    with only some blueprints, e.g. the verify page on its own, has none)."""
    store: MediaStore | None = current_app.extensions.get("packcam", {}).get("media")
    return store


__all__ = ["csrf_token", "get_db", "get_index", "media_store"]
