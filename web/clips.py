"""Search, the order page, and clip streaming / download / key frames for logged-in staff."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from typing import Any

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
from werkzeug.wrappers import Response

from station.proof.bundle import CLOSED_LOG, WITNESS_BEHIND
from station.store.ledger import ClipRecord, Ledger
from web.auth import require
from web.frames import FRAME_WIDTH, THUMB_WIDTH
from web.handles import current_scope, get_db, get_index, media_store
from web.index import SearchTimeout
from web.scope import visible_access, visible_shares
from web.serving import (
    PAGE_SIZE,
    bundle_cache,
    clip_views,
    log_fetch,
    order_url,
    search_args,
    send_bundle,
    serve_frame,
    serve_video,
    station_bundle,
)

log = logging.getLogger(__name__)

bp = Blueprint("clips", __name__)


def _central() -> bool:
    return bool(current_app.config.get("PACKCAM_CENTRAL"))


# ---- search ----------------------------------------------------------------------------------


@bp.get("/")
def home() -> Response:
    return redirect(url_for("clips.search"))


@bp.get("/search")
@require("viewer")
def search() -> str:
    args = search_args()
    if args["bad_dates"]:
        flash(_("Dates must look like 2026-11-30; that filter was ignored."), "error")
    index = get_index()
    try:
        results = index.search(
            replace(args["query"], limit=PAGE_SIZE + 1, offset=(args["page"] - 1) * PAGE_SIZE)
        )
    except SearchTimeout:
        flash(_("The search took too long. Add more characters or a date range."), "error")
        results = []
    more = len(results) > PAGE_SIZE
    return render_template(
        "search.html",
        args=args,
        results=results[:PAGE_SIZE],
        more=more,
        stations=index.stations(),
        no_stations=index.scope is not None and not index.scope,
        searched=bool(
            args["q"]
            or args["from"]
            or args["to"]
            or args["station"]
            or args["packer"]
            or args["kind"]
        ),
    )


# ---- order page ----------------------------------------------------------------------------


def _clip_url(endpoint: str, **kw: Any) -> str:
    return url_for(f"clips.{endpoint}", **kw)


@bp.get("/order")
@require("viewer")
def order_by_query() -> Any:
    return order(request.args.get("id", ""))


@bp.get("/orders/<path:order_id>")
@require("viewer")
def order(order_id: str) -> Any:
    clips = get_index().order(order_id)
    if not clips:
        return render_template("not_found.html", order_id=order_id), 404
    db = get_db()
    db.log_access(order_id, "view", user=g.user.name, remote_addr=request.remote_addr)
    scope = current_scope()
    max_days = current_app.config["SHARE_MAX_AGE"] / timedelta(days=1)
    choices = [d for d in (1, 3, 7, 14, 30, 90) if d <= max_days] or [max_days]
    return render_template(
        "order.html",
        order_id=order_id,
        hold_enabled=not _central(),
        hold=None if _central() else get_index().legal_hold(order_id),
        bundle_page=not _central(),
        views=clip_views(clips, _clip_url, scope=scope),
        access=visible_access(db.access_log(order_id), scope, db),
        shares=visible_shares(db.shares(order_id), scope),
        share_days=choices,
        shared=None,
    )


@bp.post("/holds")
@require("operator")
def hold() -> Response:
    """Put an order on legal hold (retention never deletes its clips) or release it."""

    order_id = request.form.get("order_id", "")
    if _central():
        abort(501)  # holds live in the station's index: set them on the station
    if not get_index().order(order_id):
        abort(404)
    on = request.form.get("action") == "hold"
    note = request.form.get("note", "").strip()[:200]
    ledger = Ledger(current_app.config["INDEX_PATH"])
    try:
        ledger.set_legal_hold(order_id, on, g.user.name, note)
    finally:
        ledger.close()
    get_db().log_access(
        order_id,
        "hold" if on else "release",
        user=g.user.name,
        remote_addr=request.remote_addr,
        detail=note,
    )
    log.info("user %r %s legal hold on order %r", g.user.name, "set" if on else "released",
             order_id)  # fmt: skip
    flash(_("Legal hold set.") if on else _("Legal hold released."), "ok")
    return redirect(order_url(order_id) + "#hold")


def _clip_or_404(clip_id: int) -> ClipRecord:
    clip = get_index().clip(clip_id)
    if clip is None:
        abort(404)
    return clip


@bp.route("/clips/<int:clip_id>/video", methods=["GET", "HEAD"])
@require("viewer")
def video(clip_id: int) -> Response:
    return serve_video(_clip_or_404(clip_id), attachment=False, scope=current_scope())


@bp.route("/clips/<int:clip_id>/download", methods=["GET", "HEAD"])
@require("viewer")
def download(clip_id: int) -> Response:
    clip = _clip_or_404(clip_id)
    resp = serve_video(clip, attachment=True, scope=current_scope())
    return log_fetch(resp, clip.order_id, "download", user=g.user.name, clip_id=clip.id)


@bp.route("/clips/<int:clip_id>/bundle.zip", methods=["GET", "HEAD"])
@require("viewer")
def bundle(clip_id: int) -> Response:
    """The evidence bundle of the clip's order (every clip of it), from the bundle cache."""

    clip = _clip_or_404(clip_id)
    resp = send_bundle(clip.order_id, clip_id=clip.id)
    return log_fetch(resp, clip.order_id, "export", user=g.user.name, clip_id=clip.id)


@bp.get("/clips/<int:clip_id>/bundle")
@require("viewer")
def bundle_page(clip_id: int) -> Any:
    """The order page's "Evidence bundle": the station builds it, then the download, or, when
    its export warned, a page that says what beside the download. Not for a share link's
    holder: the warnings tell the seller which bundle to send (web/share.py)."""

    clip = _clip_or_404(clip_id)
    zip_url = url_for("clips.bundle", clip_id=clip.id)
    clips = get_index().order(clip.order_id)
    if media_store() is not None or not clips:  # central: its bundles are not the station's
        return redirect(zip_url, 303)
    said = bundle_cache().warnings(station_bundle(clip.order_id, clips))
    notes = [seller_note(n["code"], n["params"]) or n["text"] for n in said["notes"]]
    if not notes and not said["warnings"]:
        return redirect(zip_url, 303)
    return render_template(
        "bundle.html",
        order_id=clip.order_id,
        order_link=order_url(clip.order_id),
        zip_url=zip_url,
        notes=notes,
        others=said["warnings"],
    )


def seller_note(code: str, params: dict[str, Any]) -> str | None:
    """An export note (station/proof/bundle.py ``ExportNote``) in the reader's language; None
    for a code this site does not know (its English text is shown then)."""
    if code == WITNESS_BEHIND:
        n = params.get("accepted")
        upto = (
            _(
                "The central site (the witness of this station's log) has accepted the log only"
                " up to %(n)d entries, not up to this order's newest clip.",
                n=n,
            )
            if isinstance(n, int)
            else _(
                "The central site (the witness of this station's log) has not accepted any "
                "checkpoint of this station's log yet."
            )
        )
        then = _(
            "Until the station's next sync, “packcam verify --witness” calls this bundle not "
            "cosigned: download it again after that sync. If the witness refused this station's "
            "log (a station restored from a backup), the check fails with “log-fork”, and the "
            "clips recorded since the restore are never cosigned."
        )
        return f"{upto} {then}"
    if code == CLOSED_LOG and isinstance(params.get("entries"), int):
        return str(
            _(
                "This order was recorded under a station key that has since been replaced "
                "(%(key)s, whose log ends at %(n)d entries). “packcam verify --witness” holds this"
                " bundle to that log's last checkpoint, cosigned only if the central site saw the "
                "key change; a station restored from a backup made before the key was replaced "
                "fails that check with “log-fork”. Send the central site's evidence bundle of this"
                " order instead.",
                key=str(params.get("key", "")),
                n=params["entries"],
            )
        )
    return None


@bp.get("/clips/<int:clip_id>/thumb.jpg")
@require("viewer")
def thumb(clip_id: int) -> Response:
    return serve_frame(_clip_or_404(clip_id), None, THUMB_WIDTH, scope=current_scope())


@bp.get("/clips/<int:clip_id>/keyframes/<int:n>.jpg")
@require("viewer")
def keyframe(clip_id: int, n: int) -> Response:
    return serve_frame(_clip_or_404(clip_id), n, FRAME_WIDTH, scope=current_scope())
