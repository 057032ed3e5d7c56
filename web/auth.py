"""Logging in and out, the current user on ``g``, and the role check for views."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response

from web.db import User
from web.handles import csrf_token, get_db
from web.i18n import safe_next
from web.throttle import LoginThrottle, Policy

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)
F = TypeVar("F", bound=Callable[..., Any])


_SEEN_RESOLUTION_S = 60.0  # how often a busy session's last-seen time is written


def load_user() -> None:
    """Put the logged-in user (or None) on ``g.user``.

    A session is valid only while its server-side row exists (logging out deletes it, so a
    saved copy of the cookie is worthless) and the account exists with the same epoch (a
    password or role change, or removal, ends every session of that account), for
    ``web.session_hours`` after the login however active it was, and while it is not idle
    for longer than ``web.idle_minutes`` (0 = no idle limit): a packing-station PC left
    logged in ends its session by itself.
    """
    g.user = None
    uid = session.get("uid")
    if uid is None:
        return
    lifetime = current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds()
    idle_limit = current_app.config["PACKCAM_IDLE_SECONDS"]
    now = time.time()
    user = get_db().user_by_id(int(uid))
    login_at = float(session.get("login_at", 0))
    seen_at = float(session.get("seen_at", login_at))
    sid = session.get("sid")
    if (
        user is None
        or not isinstance(sid, str)
        or not get_db().session_alive(sid, user.id, now)
        or user.epoch != session.get("epoch")
        or now - login_at > lifetime
        or (idle_limit > 0 and now - seen_at > idle_limit)
    ):
        for key in ("uid", "epoch", "login_at", "seen_at", "sid"):
            session.pop(key, None)
        return
    if now - seen_at >= _SEEN_RESOLUTION_S:
        # Rewriting the cookie on every request (each video range) would be wasted work.
        session["seen_at"] = now
    g.user = user


def current_user() -> User | None:
    user: User | None = g.get("user")
    return user


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def require(role: str = "viewer") -> Callable[[F], F]:
    """Decorator: the view needs a logged-in user with ``role`` or higher.

    Pages redirect anonymous visitors to /login; the JSON API answers 401 instead.
    """

    def deco(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = g.get("user")
            if user is None:
                if _wants_json():
                    resp = jsonify(error="authentication required")
                    resp.status_code = 401
                    resp.headers["WWW-Authenticate"] = 'Basic realm="packcam", charset="UTF-8"'
                    return resp
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if not user.can(role):
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return deco


def throttle() -> LoginThrottle:
    """Login lockouts; the policy may be replaced through the app config LOGIN_THROTTLE."""
    policy = current_app.config.get("LOGIN_THROTTLE")
    return LoginThrottle(get_db(), policy if isinstance(policy, Policy) else None)


def basic_auth_user() -> None:
    """For scripts: HTTP Basic credentials on /api/ requests log in for that request only.

    They count against the same lockouts as the login form (429 with Retry-After while locked).
    """
    auth = request.authorization
    if g.get("user") is not None or auth is None or auth.type != "basic":
        return
    name = (auth.username or "")[:64]
    th = throttle()
    wait, counts = th.attempt(name, request.remote_addr)
    if wait:
        log.warning("API basic auth for %r from %s refused: locked for %d s more",
                    name, request.remote_addr, wait)  # fmt: skip
        raise TooManyRequests(retry_after=wait)
    user = get_db().authenticate(name, (auth.password or "")[:1024])
    if user is None:
        log.warning("API basic auth failed for %r from %s", name, request.remote_addr)
        wait = th.after_failure(name, request.remote_addr, counts)
        if wait:
            raise TooManyRequests(retry_after=wait)
        abort(401)
    th.succeeded(name, request.remote_addr)
    g.user = user


def _locked_out(next_url: str, name: str, wait: int) -> Any:
    minutes = max(1, math.ceil(wait / 60))
    flash(
        ngettext(
            "Too many failed logins. Try again in %(num)d minute.",
            "Too many failed logins. Try again in %(num)d minutes.",
            minutes,
        ),
        "error",
    )
    html = render_template("login.html", next=next_url, username=name, no_accounts=False)
    return html, 429, {"Retry-After": str(wait)}


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    db = get_db()
    next_url = safe_next(request.values.get("next"), url_for("clips.search"))
    if request.method == "POST":
        name = request.form.get("username", "")[:64]
        password = request.form.get("password", "")[:1024]
        th = throttle()
        # Counted before the password is looked at (atomically), so parallel guesses cannot
        # all pass the check; refused unchecked while locked: a locked name cannot be guessed.
        wait, counts = th.attempt(name, request.remote_addr)
        if wait:
            log.warning("login for %r from %s refused: locked for %d s more",
                        name, request.remote_addr, wait)  # fmt: skip
            return _locked_out(next_url, name, wait)
        user = db.authenticate(name, password)
        if user is None:
            log.warning("failed login for %r from %s", name, request.remote_addr)
            wait = th.after_failure(name, request.remote_addr, counts)
            if wait:
                return _locked_out(next_url, name, wait)
            flash(_("Wrong name or password."), "error")
            return render_template(
                "login.html", next=next_url, username=name, no_accounts=db.user_count() == 0
            ), 401
        th.succeeded(name, request.remote_addr)
        session.clear()  # a fresh session (and CSRF token) for the logged-in user
        session.permanent = True
        now = time.time()
        sid = db.start_session(
            user.id, now, current_app.config["PERMANENT_SESSION_LIFETIME"].total_seconds()
        )
        session.update(uid=user.id, epoch=user.epoch, login_at=now, seen_at=now, sid=sid)
        csrf_token()
        log.info("user %r logged in from %s", user.name, request.remote_addr)
        return redirect(next_url)
    if g.get("user") is not None:
        return redirect(next_url)
    return render_template("login.html", next=next_url, no_accounts=db.user_count() == 0)


@bp.post("/logout")
def logout() -> Response:
    user = g.get("user")
    sid = session.get("sid")
    if isinstance(sid, str):
        get_db().end_session(sid)  # a copy of the cookie replayed later finds no session
    session.clear()
    if user is not None:
        log.info("user %r logged out", user.name)
    return redirect(url_for("auth.login"))
