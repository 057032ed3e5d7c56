"""Languages (zh_CN, en): locale choice, the switch, and labels for the index's code words."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, redirect, request
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import LanguageAccept
from werkzeug.wrappers import Response

from station.config import WEB_LANGUAGES
from station.recording.session import FinishReason

LANGUAGES = WEB_LANGUAGES  # the site's languages, defined with [web] default_language
LANG_COOKIE = "packcam_lang"

bp = Blueprint("i18n", __name__)

# The index stores these as plain English words; the pages show them translated.
FINISH_REASONS: dict[str, object] = {
    FinishReason.SEALED: _l("sealed"),
    FinishReason.WAYBILL: _l("waybill scanned"),
    FinishReason.NEXT_ORDER: _l("next order"),
    FinishReason.RESCAN: _l("order rescanned"),
    FinishReason.TIMEOUT: _l("time limit"),
    FinishReason.STILL: _l("no movement"),
    FinishReason.END_OF_INPUT: _l("end of input"),
    FinishReason.INTERRUPTED: _l("interrupted"),
    FinishReason.CAMERA_LOST: _l("camera lost"),
    FinishReason.DISK_FULL: _l("disk full"),
}
ROLES = {"viewer": _l("viewer"), "operator": _l("operator"), "admin": _l("administrator")}
ACTIONS = {
    "view": _l("viewed"),
    "download": _l("downloaded"),
    "export": _l("exported the evidence bundle"),
    "hold": _l("put the order on legal hold"),
    "release": _l("released the legal hold"),
    "share": _l("created a share link"),
    "share-revoke": _l("revoked a share link"),
    "share-use": _l("opened a share link"),
    "share-download": _l("downloaded via a share link"),
}
STATES = {
    "idle": _l("idle"),
    "recording": _l("recording"),
    "suspended": _l("suspended"),
    "stopped": _l("stopped"),
    "silent": _l("stopped reporting"),
}
KEYFRAMES = {
    "order": _l("order scanned"),
    "waybill": _l("waybill seen"),
    "seal": _l("sealed"),
    "end": _l("end of clip"),
}
FLEET_ALARMS = {
    "silent": _l("stopped reporting"),
    "error": _l("last error"),
    "sync": _l("central sync failing"),
    "disk-low": _l("low disk space"),
    "backlog": _l("archive backlog"),
    "clock": _l("clock not synchronised"),
    "clock-offset": _l("clock offset"),
    "log-fork": _l("log fork (witness)"),
    "log-rollback": _l("log rollback (witness)"),
}
SHARE_STATES = {"active": _l("active"), "expired": _l("expired"), "revoked": _l("revoked")}


def label(table: dict[str, object], word: str | None) -> str:
    """The translated label for an index word; unknown words are shown as they are."""
    if word is None:
        return ""
    return str(table.get(word, word))


def select_locale() -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    # The browser's languages by preference (q=0: not acceptable): the first the site has.
    # Any Chinese (zh, zh-TW, zh-HK ...) is Simplified Chinese: Traditional readers are better
    # served by it than by an English they listed after their Chinese.
    for lang, quality in sorted(request.accept_languages, key=lambda v: -v[1]):
        if quality <= 0:
            continue
        if lang.lower().replace("_", "-").split("-")[0] == "zh":
            return "zh_CN"
        best = LanguageAccept([(lang, quality)]).best_match(LANGUAGES)
        if best is not None:
            return best
    return str(current_app.config["BABEL_DEFAULT_LOCALE"])


def html_lang() -> str:
    # Babel spells the locale zh_Hans_CN (hence the translations directory's name); pages
    # say zh-CN, as browsers do.
    loc = get_locale()
    if loc is None:
        return "en"
    return f"{loc.language}-{loc.territory}" if loc.territory else loc.language


def safe_next(target: str | None, fallback: str = "/") -> str:
    """A local path to go back to, never another site (no scheme, host or '//' prefix)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return fallback
    return target


@bp.get("/lang/<code>")
def switch(code: str) -> Response:
    """The language switch: remembers the choice in a cookie and goes back to the page."""
    resp = redirect(safe_next(request.args.get("next")))
    if code in LANGUAGES:
        secure = current_app.session_interface.get_cookie_secure(current_app)
        resp.set_cookie(
            LANG_COOKIE,
            code,
            max_age=365 * 86400,
            httponly=True,
            samesite="Lax",
            secure=secure,
        )
    return resp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.jinja_env.globals.update(
        LANGUAGES=LANGUAGES,
        html_lang=html_lang,
        label=label,
        FINISH_REASONS=FINISH_REASONS,
        ROLES=ROLES,
        ACTIONS=ACTIONS,
        STATES=STATES,
        FLEET_ALARMS=FLEET_ALARMS,
        KEYFRAMES=KEYFRAMES,
        SHARE_STATES=SHARE_STATES,
    )
