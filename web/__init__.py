"""The packcam web site: create_app(config) builds the Flask app and registers the blueprints."""

from __future__ import annotations

import hmac
import logging
import secrets
import stat
import threading
import weakref
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request, current_app, has_request_context, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel
from werkzeug.exceptions import BadRequest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from station.config import Config
from station.errors import ConfigError, StationError
from station.proof.keys import write_private
from web import (
    admin,
    api,
    auth,
    clips,
    dashboard,
    errors,
    export,
    fleet,
    formatting,
    i18n,
    live,
    screen,
    serving,
    share,
    verify,
    webhook_log,
)
from web.backends import SiteBackend
from web.bundles import BundleCache
from web.db import DEFAULT_PW_METHOD, WEB_DB_NAME, WebDB
from web.handles import SiteHandles, csrf_token, get_db, get_index, raw_index, share_index
from web.index import ensure_index
from web.search import SEARCH_DB_NAME, SearchIndex
from web.stations import FileWarnings

log = logging.getLogger(__name__)

SECRET_NAME = "web-secret"
FIRST_RUN_HINT = "packcam user add NAME --role admin"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def secret_path(config: Config) -> Path:
    if config.web.secret_key_file:
        return Path(config.web.secret_key_file).expanduser()
    return config.station.data_dir / SECRET_NAME


def load_or_create_secret(path: Path) -> str:
    """Read the site secret, creating it (random, mode 0600) the first time.

    It signs sessions, CSRF tokens and share links: replacing it logs everyone out and
    invalidates every share link already sent. Made whole or not at all (write_private): a
    power cut or a full disk meanwhile leaves no empty file that would stop the site at every
    start. An empty one (older versions could leave it) is made anew: it never signed anything.
    """
    try:
        if path.stat().st_size == 0:
            log.warning("web secret %s is empty (a power cut while it was made?): a new one", path)
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read the web secret {path}: {exc}") from exc
    try:
        write_private(path, (secrets.token_hex(32) + "\n").encode("ascii"))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot create the web secret {path}: {exc}") from exc
    else:
        log.info("generated a new web secret in %s", path)
    try:
        mode = path.stat().st_mode
        secret = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the web secret {path}: {exc}") from exc
    if len(secret) < 32:
        raise ConfigError(f"the web secret in {path} is too short (need 32+ characters)")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("web secret %s is readable by other users; chmod 600 it", path)
    return secret


class _AsciiInt(IntegerConverter):
    """``<int:…>`` of ASCII digits only: werkzeug's ``\\d+`` matches any Unicode digit and
    ``int()`` reads "١" (Arabic-Indic) or "１" (fullwidth) as 1, so every clip had other URLs."""

    regex = r"[0-9]+"


class _Request(Request):
    """Closes every upload spool it opened, also one cut off mid-part at the size limit.

    werkzeug leaves the spool of a multipart file whose body exceeded ``max_content_length``
    unclosed (its temp file lingers until garbage collection); here it goes with the request.
    """

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        stream = super()._get_file_stream(
            total_content_length, content_type, filename, content_length
        )
        self.__dict__.setdefault("_packcam_spools", []).append(stream)
        return stream

    def close(self) -> None:
        super().close()
        for stream in self.__dict__.pop("_packcam_spools", ()):
            stream.close()


class _SessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions whose Secure flag can follow the request's scheme."""

    def get_cookie_secure(self, app: Flask) -> bool:
        mode = app.config["PACKCAM_SECURE_COOKIES"]
        if mode == "auto":
            return has_request_context() and request.is_secure
        return bool(mode == "always")


def create_app(
    config: Config,
    *,
    test_config: dict[str, Any] | None = None,
    central: SiteBackend | None = None,
) -> Flask:
    """Build the site for one data dir. ``test_config`` overrides Flask config keys.

    ``central``: the backends of a site over many stations (the fleet's central site, built by
    central/site.py): its clip index and media store, kept in ``app.extensions["packcam"]``;
    accounts, share links and the access log stay in this data dir's web.sqlite3. Without it
    the site serves this data dir's index and clip files.
    """
    data_dir = config.station.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StationError(
            f"cannot make the data dir {data_dir}: {exc.strerror or exc}; the packcam-web unit "
            "may write only /var/lib/packcam: keep data_dir there, or add the folder to "
            "ReadWritePaths= in a drop-in (docs/raspberry-pi.md)"
        ) from exc
    app = Flask(__name__)
    app.request_class = _Request
    # Order IDs are matched with the path converter: "A//B" is an order of its own, not a
    # typo of "A/B" to be redirected to (werkzeug merges slashes by default).
    app.url_map.merge_slashes = False
    app.url_map.converters["int"] = _AsciiInt
    app.config.update(
        PACKCAM=config,
        DATA_DIR=data_dir,
        CLIPS_DIR=data_dir / "clips",
        CACHE_DIR=data_dir / "cache",
        LIVE_DIR=data_dir / "live",
        WEB_DB_PATH=data_dir / WEB_DB_NAME,
        PASSWORD_METHOD=DEFAULT_PW_METHOD,
        PACKCAM_SECURE_COOKIES=config.web.secure_cookies,
        SESSION_COOKIE_NAME="packcam_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=config.web.session_hours),
        # The cookie is sent only when the session changed: a slow response (a poster still
        # loading) re-sending the cookie it came with would undo a newer one (a flash, a
        # login). Expiry needs no refresh: a session lasts session_hours from its login.
        SESSION_REFRESH_EACH_REQUEST=False,
        PACKCAM_IDLE_SECONDS=config.web.idle_minutes * 60.0,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        MAX_CONTENT_LENGTH=64 * 1024,
        MAX_FORM_MEMORY_SIZE=64 * 1024,
        JSON_SORT_KEYS=False,
        BABEL_DEFAULT_LOCALE=config.web.default_language,
        BABEL_TRANSLATION_DIRECTORIES=str(Path(__file__).parent / "translations"),
        SHARE_MAX_AGE=timedelta(days=config.web.share_max_days),
        LIVE_MAX_S=config.web.live_max_s,
        LIVE_INTERVAL_S=0.2,
        STALE_AFTER_S=config.web.stale_after_s,
    )
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_or_create_secret(secret_path(config))
    app.config["PACKCAM_CENTRAL"] = central is not None
    search: SearchIndex | None = None
    if central is not None:
        central.init_app(app)
    else:
        app.config["INDEX_PATH"] = ensure_index(data_dir)
        search = SearchIndex(data_dir / SEARCH_DB_NAME, app.config["INDEX_PATH"])
    # substring search over order IDs and waybills (web/search.py), None on central, and each
    # server thread's handles: closed by the server as it stops, or as the app is collected
    handles = SiteHandles(search)
    weakref.finalize(app, handles.close)  # not a method of the app: that would keep it alive
    app.session_interface = _SessionInterface()
    if config.web.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.extensions["packcam"] = {
        "stop": threading.Event(),
        "live_slots": threading.BoundedSemaphore(max(1, config.web.threads // 2)),
        "frame_slots": threading.BoundedSemaphore(2),
        # the search index and each server thread's handles, closed with the app (SiteHandles)
        "handles": handles,
        # this thread's clip index and the media store when they are not the data dir's
        "index": central.index if central is not None else None,
        "media": central.media if central is not None else None,
        # evidence bundles for download, asked of the station, which signs them (web/bundles.py)
        "bundles": BundleCache(data_dir, config.web.bundle_cache_mb << 20),
        # what this site has warned of the status and self-check files its pages read
        "file_warnings": FileWarnings(),
    }

    Babel(app, locale_selector=i18n.select_locale)
    i18n.init_app(app)

    formatting.register(app)
    app.jinja_env.globals["share_url"] = share.share_url
    app.jinja_env.globals["order_url"] = serving.order_url
    for bp in (auth.bp, clips.bp, share.bp, api.bp, dashboard.bp, live.bp, admin.bp, verify.bp):
        app.register_blueprint(bp)

    for bp in (export.bp, screen.bp, webhook_log.bp):
        app.register_blueprint(bp)

    app.register_blueprint(fleet.bp)

    app.before_request(auth.load_user)
    app.before_request(_check_csrf)
    app.after_request(_security_headers)
    app.jinja_env.globals.update(
        csrf_token=csrf_token,
        has_endpoint=lambda name: name in app.view_functions,
        central_mode=central is not None,
        first_run_hint=FIRST_RUN_HINT,
    )

    errors.register(app)

    setup_db = WebDB(app.config["WEB_DB_PATH"])  # WAL mode and migrations, once
    try:
        no_accounts = setup_db.user_count() == 0
    finally:
        setup_db.close()
    if no_accounts:
        log.warning("no web accounts yet: create the first administrator with `%s`", FIRST_RUN_HINT)
    return app


def _check_csrf() -> None:
    if request.method not in _UNSAFE_METHODS:
        return
    if request.blueprint == "fleet":
        return  # stations' API: bearer tokens, no cookies, so no cross-site request forgery
    if request.endpoint == "verify.upload":
        return  # checked by the view as the upload streams in, without parsing the whole form
    expected = session.get("csrf")
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    if not expected or not hmac.compare_digest(str(expected), sent):
        log.warning("CSRF check failed for %s %s", request.method, request.path)
        raise BadRequest(description="csrf")


def _security_headers(resp: Any) -> Any:
    h = resp.headers
    media = current_app.config.get("PACKCAM_MEDIA_ORIGIN")
    if media:  # central mode with presigned-URL redirects: the store serves clips and frames
        csp = CSP.replace("media-src 'self'", f"media-src 'self' {media}")
        h.setdefault(
            "Content-Security-Policy", csp.replace("img-src 'self'", f"img-src 'self' {media}")
        )
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    # Share links carry their token in the URL: never leak it to another site.
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    h.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if request.is_secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    if "Cache-Control" not in h:
        # Pages show who watched which order: no shared or disk caches.
        h["Cache-Control"] = "no-store"
    if resp.mimetype == "text/html":
        resp.vary.add("Cookie")
        resp.vary.add("Accept-Language")
    return resp


__all__ = ["create_app", "csrf_token", "get_db", "get_index", "raw_index", "share_index"]
