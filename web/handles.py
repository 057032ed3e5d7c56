"""Each server thread's handles (web database, clip index) and the session's CSRF token."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

from flask import current_app, g, session

from web.backends import IndexReader, MediaStore
from web.db import ShareLink, WebDB
from web.index import ClipIndex
from web.scope import ScopedIndex, Stations, stations_for


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


def get_index() -> ScopedIndex:
    """The clip index as the request's account may see it (web/scope.py): every view reads
    clips through this, so a station outside the account's groups does not exist for it."""
    return ScopedIndex(raw_index(), current_scope())


def share_index(share: ShareLink) -> ScopedIndex:
    """The clip index as a share link shows it: its order, at the stations its creator saw."""
    return ScopedIndex(raw_index(), share.stations)


def raw_index() -> IndexReader:
    """This thread's read-only clip index handle (central mode: the PostgreSQL index), unscoped:
    views use ``get_index()`` or ``share_index()``."""
    ext = current_app.extensions["packcam"]
    given: Callable[[], IndexReader] | None = ext.get("index")
    if given is not None:
        # Given by the site backend (central mode: the PostgreSQL index): this thread's handle.
        return given()
    handles: _Handles = ext["handles"]
    if handles.index is None:
        handles.index = ClipIndex(
            current_app.config["INDEX_PATH"], search=current_app.extensions["packcam"]["search"]
        )
    return handles.index


def current_scope() -> Stations:
    """The stations the request's account may see (``g.user``; nobody: nothing, on central)."""
    central = bool(current_app.config.get("PACKCAM_CENTRAL"))
    user = g.get("user")
    if not central:
        return None
    if user is None:
        return frozenset()
    cached = g.get("_packcam_scope")
    if cached is not None and cached[0] == user.id:
        return cached[1]  # type: ignore[no-any-return]
    scope = stations_for(
        user.role, () if user.can("admin") else get_db().user_stations(user.id), central=True
    )
    g._packcam_scope = (user.id, scope)
    return scope


def media_store() -> MediaStore | None:
    """The store the site's clips come from when they are not this data dir's files (an app
    with only some blueprints, e.g. the verify page on its own, has none)."""
    store: MediaStore | None = current_app.extensions.get("packcam", {}).get("media")
    return store


__all__ = [
    "csrf_token",
    "current_scope",
    "get_db",
    "get_index",
    "media_store",
    "raw_index",
    "share_index",
]
