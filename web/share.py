"""Share links: signed, expiring, revocable, one order each, usable without an account."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import segno
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from station.store.ledger import ClipRecord
from web.auth import require
from web.db import ShareLink
from web.errors import BAD_LINK
from web.frames import FRAME_WIDTH, THUMB_WIDTH
from web.handles import current_scope, get_db, get_index, media_store, share_index, site_config
from web.i18n import KEYFRAMES, label
from web.scope import covers
from web.serving import (
    clip_views,
    log_fetch,
    order_url,
    send_bundle,
    serve_frame,
    serve_video,
)
from web.summary import in_both_languages, order_claims
from web.verify import site_anchors

log = logging.getLogger(__name__)

bp = Blueprint("share", __name__)
_SALT = "packcam-share-link"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def share_token(share: ShareLink) -> str:
    return _serializer().dumps(share.id)


def share_url(share: ShareLink) -> str:
    return url_for("share.page", token=share_token(share), _external=True)


def _share_from_token(token: str) -> ShareLink:
    """The stored, active share the token names; 404 if forged, 410 if expired or revoked."""
    # The signature's own age limit is a second lock (e.g. on a database restored from backup);
    # the stored expiry is the one that normally applies.
    max_age = current_app.config["SHARE_MAX_AGE"] + timedelta(days=1)
    try:
        share_id = _serializer().loads(token[:200], max_age=int(max_age.total_seconds()))
    except BadSignature:
        # most often a link cut short on its way (a chat app, a partial copy): say so, not
        # "nothing here", which the platform's reviewer would read as "no evidence"
        abort(404, description=BAD_LINK)
    share = get_db().share(str(share_id)) if isinstance(share_id, str) else None
    if share is None:
        abort(404)
    if share.state() != "active":
        abort(410)
    return share


def _note_use(share: ShareLink, detail: str) -> None:
    """Count a use of the link and log it on the order (``detail``: what was opened)."""
    db = get_db()
    db.note_share_use(share.id)
    db.log_access(
        share.order_id, "share-use", share_id=share.id, remote_addr=request.remote_addr,
        detail=detail,
    )  # fmt: skip


def _order_clips(share: ShareLink) -> list[ClipRecord]:
    """The shared order's clips the link shows; 404 when there are none."""
    clips = share_index(share).order(share.order_id)
    if not clips:
        abort(404)
    return clips


def _link_url(token: str) -> Callable[..., str]:
    """``url(endpoint, **values)``: the URL of this blueprint's ``endpoint`` for the link."""

    def url(endpoint: str, **kw: Any) -> str:
        return url_for(f"share.{endpoint}", token=token, **kw)

    return url


def _clip_in_share(share: ShareLink, clip_id: int) -> ClipRecord:
    clip = share_index(share).clip(clip_id)
    if clip is None or clip.order_id != share.order_id:
        abort(404)  # the link is scoped to one order: other clips do not exist for it
    return clip


# ---- managing links (logged in) --------------------------------------------------------------


def _managed_share(share_id: str) -> ShareLink:
    """A share the account may see and manage: one that shows nothing outside its scope;
    any other is the same 404 as an unknown one."""
    share = get_db().share(share_id[:64])
    if share is None or not covers(current_scope(), share.stations):
        abort(404)
    return share


@bp.post("/shares")
@require("viewer")
def create() -> Response:
    order_id = request.form.get("order_id", "")
    if not get_index().order(order_id):
        abort(404)  # also an order only other warehouses' stations recorded (web/scope.py)
    max_age: timedelta = current_app.config["SHARE_MAX_AGE"]
    try:
        days = float(request.form.get("days", "7"))
    except ValueError:
        days = 7.0
    if not math.isfinite(days) or days <= 0:
        days = 7.0
    lifetime = min(max_age, timedelta(days=min(days, 366.0)))
    note = request.form.get("note", "").strip()[:200]
    db = get_db()
    # The link shows what its creator may see, for as long as it lives (also after the
    # creator changes groups or leaves): the stranger holding it has no account to scope.
    share = db.create_share(order_id, g.user.name, lifetime, note, stations=current_scope())
    db.log_access(
        order_id,
        "share",
        user=g.user.name,
        share_id=share.id,
        remote_addr=request.remote_addr,
        detail=f"until {share.expires_utc}" + (f"; {note}" if note else ""),
    )
    log.info("user %r shared order %r until %s", g.user.name, order_id, share.expires_utc)
    flash(_("Share link created. Copy it from the list below."), "ok")
    return redirect(order_url(order_id) + "#shares")


@bp.post("/shares/<share_id>/revoke")
@require("viewer")
def revoke(share_id: str) -> Response:
    db = get_db()
    share = _managed_share(share_id)
    if share.created_by != g.user.name and not g.user.can("operator"):
        abort(403)
    if db.revoke_share(share.id, g.user.name):
        db.log_access(
            share.order_id,
            "share-revoke",
            user=g.user.name,
            share_id=share.id,
            remote_addr=request.remote_addr,
        )
        flash(_("Share link revoked."), "ok")
    back = request.form.get("back")
    if back == "admin" and g.user.can("admin"):
        return redirect(url_for("admin.index"))
    return redirect(order_url(share.order_id) + "#shares")


@bp.get("/shares/<share_id>/qr.svg")
@require("viewer")
def qr(share_id: str) -> Response:
    """The share link as a QR code (SVG), for a phone at the packing table or a printout."""

    share = _managed_share(share_id)
    if share.state() != "active":
        abort(404)
    out = io.BytesIO()
    segno.make(share_url(share), error="m").save(out, kind="svg", scale=4, border=2,
                                                 xmldecl=False)  # fmt: skip
    resp = Response(out.getvalue(), mimetype="image/svg+xml")
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


# ---- using links (anyone with the link) ----------------------------------------------------


@bp.get("/s/<token>")
def page(token: str) -> Any:
    share = _share_from_token(token)
    clips = _order_clips(share)
    _note_use(share, request.user_agent.string[:120])
    url = _link_url(token)
    return render_template(
        "order.html",
        order_id=share.order_id,
        views=clip_views(clips, url, scope=share.stations),
        access=[],
        shares=[],
        share_days=[],
        shared=share,
        bundle_url=url("bundle"),
        summary_url=url("summary"),
    )


@bp.get("/s/<token>/summary")
def summary(token: str) -> Any:
    """One printable page in Chinese and English that states what the verifier proved for
    each clip of the shared order (time source, hash, signer, log) and nothing more."""

    share = _share_from_token(token)
    clips = _order_clips(share)
    cfg = site_config()
    verify = None
    store = media_store()
    if store is not None:  # central: the bundle it hands out, from the bucket
        verify = store.bundle_verifier(share.order_id)

    claims = order_claims(share.order_id, clips, site_anchors(cfg), verify=verify)
    _note_use(share, "summary")
    url = _link_url(token)
    views = clip_views(clips, url, check_files=False, scope=share.stations)
    generated = datetime.now(UTC)
    body = in_both_languages(
        lambda: render_template(
            "share_summary_body.html",
            claims=claims,
            share=share,
            generated=generated,
            site=request.host_url.rstrip("/"),
            max_delay_min=15,
        )
    )
    both = in_both_languages
    return render_template(
        "share_summary.html",
        order_id=share.order_id,
        claims=claims,
        views=views,
        body=body,
        heading=both(lambda: _("Evidence summary")),
        captions={k: both(partial(label, KEYFRAMES, k)) for k in KEYFRAMES},
        back_url=url("page"),
        bundle_url=url("bundle"),
    )


@bp.route("/s/<token>/bundle.zip", methods=["GET", "HEAD"])
def bundle(token: str) -> Response:
    """The order's evidence bundle for the buyer or the platform: anyone can verify it."""
    share = _share_from_token(token)
    resp = send_bundle(share.order_id, index=share_index(share))
    return log_fetch(
        resp, share.order_id, "share-download", share_id=share.id, detail="evidence bundle"
    )


@bp.route("/s/<token>/clips/<int:clip_id>/video", methods=["GET", "HEAD"])
def video(token: str, clip_id: int) -> Response:
    share = _share_from_token(token)
    return serve_video(_clip_in_share(share, clip_id), attachment=False, scope=share.stations)


@bp.route("/s/<token>/clips/<int:clip_id>/download", methods=["GET", "HEAD"])
def download(token: str, clip_id: int) -> Response:
    share = _share_from_token(token)
    clip = _clip_in_share(share, clip_id)
    resp = serve_video(clip, attachment=True, scope=share.stations)
    return log_fetch(resp, clip.order_id, "share-download", clip_id=clip.id, share_id=share.id)


@bp.get("/s/<token>/clips/<int:clip_id>/thumb.jpg")
def thumb(token: str, clip_id: int) -> Response:
    share = _share_from_token(token)
    return serve_frame(_clip_in_share(share, clip_id), None, THUMB_WIDTH, scope=share.stations)


@bp.get("/s/<token>/clips/<int:clip_id>/keyframes/<int:n>.jpg")
def keyframe(token: str, clip_id: int, n: int) -> Response:
    share = _share_from_token(token)
    return serve_frame(_clip_in_share(share, clip_id), n, FRAME_WIDTH, scope=share.stations)
