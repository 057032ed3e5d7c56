"""Each server thread's handles (web database, clip index) and the session's CSRF token."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from flask import Flask, current_app, g, session

from station.config import Config
from station.store.sqlitedb import Database
from web.backends import IndexReader, MediaStore
from web.db import ShareLink, WebDB
from web.index import ClipIndex
from web.scope import ScopedIndex, Stations, stations_for
from web.search import SearchIndex
from web.stations import FileWarnings

log = logging.getLogger(__name__)


class _Closable(Protocol):
    def close(self) -> None: ...


_H = TypeVar("_H", bound=_Closable)


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


class SiteHandles:
    """The site's database handles: its search index and every thread's ``_Handles`` (and, on
    the central site, each thread's PostgreSQL connection: central/api.py).

    They live as long as the app: ``close`` closes them all, once its server has stopped
    (``web.cli.run_server``) or when an app nobody closed (a test's) is collected
    (``create_app``), not one by one whenever the garbage collector finds them (each holds
    a file descriptor and its file's locks). Any thread may add; closing runs once.
    """

    def __init__(self, search: SearchIndex | None) -> None:
        self.search = search
        self.local = _Handles()
        self._lock = threading.Lock()
        self._opened: list[_Closable] = [] if search is None else [search]

    def keep(self, handle: _H) -> _H:
        """``handle``, to be closed with the site (a server thread's, kept between requests)."""
        with self._lock:
            self._opened.append(handle)
        return handle

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for handle in opened:
            try:
                handle.close()
            except Exception:  # one that fails to close must not keep the others open
                log.exception("closing %r", handle)


def site_config(app: Flask | None = None) -> Config:
    """The packcam config the site was built from (``create_app``'s), typed: the site reads it
    only through this. ``app``: before a request (a blueprint's set-up), else the current one."""
    cfg = (current_app if app is None else app).config["PACKCAM"]
    if not isinstance(cfg, Config):  # a wiring mistake: fail where it is, not at an attribute
        raise TypeError(f"the site's PACKCAM config is a {type(cfg).__name__}, not a Config")
    return cfg


def file_warnings() -> FileWarnings:
    """What this site has warned of the files every page reads (web/stations.py)."""
    warnings: FileWarnings = current_app.extensions["packcam"]["file_warnings"]
    return warnings


def get_db() -> WebDB:
    """This thread's web.sqlite3 handle."""
    site: SiteHandles = current_app.extensions["packcam"]["handles"]
    handles = site.local
    if handles.webdb is None:
        handles.webdb = site.keep(
            WebDB(
                current_app.config["WEB_DB_PATH"],
                pw_method=current_app.config["PASSWORD_METHOD"],
                setup=False,
            )
        )
    return handles.webdb


def get_index() -> ScopedIndex:
    """The clip index as the request's account may see it (web/scope.py): every view reads
    clips through this, so a station outside the account's groups does not exist for it."""
    return scoped_index(current_scope())


def share_index(share: ShareLink) -> ScopedIndex:
    """The clip index as a share link shows it: its order, at the stations its creator saw."""
    return scoped_index(share.stations)


def scoped_index(stations: Stations) -> ScopedIndex:
    """The clip index as one who sees ``stations`` sees it (None: every station), for a
    helper that serves both an account's pages and a share link's."""
    return ScopedIndex(raw_index(), stations)


def raw_index() -> IndexReader:
    """This thread's read-only clip index handle (central mode: the PostgreSQL index), unscoped:
    views use ``get_index()`` or ``share_index()``."""
    ext = current_app.extensions["packcam"]
    given: Callable[[], IndexReader] | None = ext.get("index")
    if given is not None:
        # Given by the site backend (central mode: the PostgreSQL index): this thread's handle.
        return given()
    site: SiteHandles = ext["handles"]
    handles = site.local
    if handles.index is None:
        handles.index = site.keep(ClipIndex(current_app.config["INDEX_PATH"], search=site.search))
    return handles.index


def station_index_db() -> Database | None:
    """The station's own index database behind this site (read-only), for what is not a clip
    read (the proof log, the sync cursors); None on the central site."""
    index = raw_index()
    return index.db if isinstance(index, ClipIndex) else None


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
    "site_config",
]
