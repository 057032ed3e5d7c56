"""What the site's views share (staff pages, share links, the API): a clip's file, video, key
frames and evidence bundle as answers, the order page's clip views, the search's arguments."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from flask import abort, current_app, request, send_file, url_for
from werkzeug.wrappers import Response

from station.proof.exports import order_witness
from station.store.clips import ClipSearch
from station.store.ledger import ClipRecord
from web.bundles import (
    RETRY_AFTER_S,
    BundleCache,
    BundleRefused,
    BundleTooLarge,
    BundleUnavailable,
)
from web.errors import BundleConflict, ClipDeleted, InsufficientStorage, StationUnavailable
from web.formatting import day_bounds_utc, parse_day, site_tz
from web.frames import FrameCache, KeyFrame, keyframes
from web.handles import (
    get_db,
    get_index,
    media_store,
    scoped_index,
    site_config,
    station_index_db,
)
from web.index import SearchTimeout
from web.scope import ScopedIndex, Stations
from web.search import half_width
from web.streaming import resolve_in, send_stored_file, unless_gone

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_QUERY = 128
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def clip_file(clip: ClipRecord) -> Path | None:
    """The clip's file on disk, only if its indexed path resolves inside <data_dir>/clips."""
    return resolve_in(current_app.config["CLIPS_DIR"], _strip_clips_prefix(clip.path))


def _strip_clips_prefix(rel: str) -> str:
    # The index stores paths relative to the data dir ("clips/2026/..."); the store root is
    # <data_dir>/clips, so anything not under clips/ is refused by resolve_in.
    return rel[len("clips/") :] if rel.startswith("clips/") else "../" + rel


def download_name(clip: ClipRecord) -> str:
    """``<order>_<station>_<YYYYmmdd-HHMMSS>.mp4``, Unicode kept, path characters replaced."""
    stamp = clip.started_at.strftime("%Y%m%d-%H%M%S")
    name = f"{clip.order_id}_{clip.station}_{stamp}"
    return _UNSAFE_NAME.sub("_", name).strip(" .")[:150] + ".mp4"


def frame_cache() -> FrameCache:
    ext = current_app.extensions["packcam"]
    return FrameCache(current_app.config["CACHE_DIR"], ext["frame_slots"])


def serve_frame(clip: ClipRecord, n: int | None, width: int, *, scope: Stations) -> Response:
    """A key frame (``n``) or the thumbnail (``None``) of a clip as a cached JPEG; ``scope``:
    as ``serve_video``'s. A clip retention deleted answers as its video does (``ClipDeleted``),
    its cached frames included: the page says deleted, not missing."""
    store = media_store()
    if store is not None:  # central: the archiver's JPEGs from object storage
        return store.serve_frame(clip, n)
    frames = keyframes(clip)
    if n is not None and not 0 <= n < len(frames):
        abort(404)
    kf = frames[n or 0]
    video = clip_file(clip)
    if video is None:
        _not_there(clip, scope)
    cache = frame_cache()
    # bytes in hand (tens of KB), not a path: the station's cache sweep may remove the file
    data = cache.read(clip, video, kf.t, width)
    if data is None:
        if clip_file(clip) is None:  # retention deleted it as the frame was being cut
            _not_there(clip, scope)
        abort(404)
    resp = send_file(
        io.BytesIO(data),
        mimetype="image/jpeg",
        conditional=True,
        max_age=86400,
        etag=cache.path_for(clip, kf.t, width).stem,  # names what it shows: clip hash, time, width
    )
    resp.cache_control.public = False
    resp.cache_control.private = True
    return resp


def serve_video(clip: ClipRecord, *, attachment: bool, scope: Stations) -> Response:
    """The clip's video; ``scope``: the stations its viewer sees (the account's, or the share
    link's), to read its row again if its file went."""
    store = media_store()
    if store is not None:  # from object storage, Range passed through (or a presigned redirect)
        return store.serve_clip(clip, download_name=download_name(clip), attachment=attachment)
    video = clip_file(clip)
    resp = None
    if video is not None:
        resp = unless_gone(
            lambda: send_stored_file(
                video, sha256=clip.sha256, download_name=download_name(clip), attachment=attachment
            ),
            clip_named(clip),
        )
    if resp is None:
        _not_there(clip, scope)
    return resp


def _not_there(clip: ClipRecord, scope: Stations) -> NoReturn:
    """The answer for a clip whose file is not in the store: deleted by retention (now or
    before: not evidence gone missing), or a 404 logged as missing."""
    deleted = _deleted_utc(clip, scope)
    if deleted is not None:
        raise ClipDeleted(deleted)
    log.error("clip %s (%s) is indexed but its file is missing or outside the store",
              clip.id, clip.path)  # fmt: skip
    abort(404)


def clip_named(clip: ClipRecord) -> str:
    """The clip as a log line names it."""
    return f"clip {clip.id} ({clip.path})"


def counts_as_download() -> bool:
    """Log one download per fetch, not per resumed range or revalidation."""
    rng = request.headers.get("Range", "").replace(" ", "")
    return request.method == "GET" and (not rng or rng.startswith("bytes=0-"))


def clip_views(
    clips: list[ClipRecord],
    url: Callable[..., str],
    *,
    check_files: bool = True,
    scope: Stations = None,
) -> list[dict[str, Any]]:
    """What the order template needs per clip: the record, its key frames and their URLs,
    and its repack links both ways (``repack_links``); a link to a clip at a station outside
    ``scope`` (the viewer's, web/scope.py) is left out: that station does not exist for it."""
    out = []
    store = media_store()
    links = repack_links(clips)
    if scope is not None:
        for both in links.values():
            for way in both.values():
                way[:] = [x for x in way if x["station"] in scope]
    for c in clips:
        if store is not None:
            frames: list[tuple[int, KeyFrame]] = list(enumerate(store.keyframes(c)))
            out.append(_view(c, url, frames, missing=False, size_mismatch=False))
            # the station synced the clip's row but has not uploaded its video (yet)
            out[-1]["pending"] = not store.is_archived(c)
            out[-1]["links"] = links[c.id]
            continue
        path = clip_file(c) if check_files else None
        st = unless_gone(path.stat, clip_named(c)) if path is not None else None
        path = path if st is not None else None  # retention may have deleted it just now
        size_on_disk = st.st_size if st is not None else None
        frames = list(enumerate(keyframes(c)))
        view = _view(
            c,
            url,
            frames,
            missing=check_files and path is None,
            size_mismatch=size_on_disk is not None and size_on_disk != c.size,
        )
        if view["missing"]:
            view["deleted_utc"] = _deleted_utc(c, scope)
        else:  # files not looked at (the summary): the row says whether retention deleted it
            view["deleted_utc"] = None if check_files else c.extra.get("deleted_utc")
        view["gap"] = camera_gap(c)
        view["links"] = links[c.id]
        out.append(view)
    return out


def _deleted_utc(c: ClipRecord, scope: Stations) -> str | None:
    """When retention deleted the clip whose file is not there, or None (it is missing).
    Retention marks the row before it removes the file, so a row read before a deletion that
    found no file is read again (as the viewer, who saw it, sees it): else the clip reads as
    missing (lost evidence) until a reload."""
    when = c.extra.get("deleted_utc")
    if when is None and c.id is not None:
        again = scoped_index(scope).clip(c.id)
        when = again.extra.get("deleted_utc") if again is not None else None
    return str(when) if when else None


def repack_links(clips: list[ClipRecord]) -> dict[int | None, dict[str, list[dict[str, Any]]]]:
    """Per clip on an order page: "of", the earlier clips it repacks (at its own station,
    ``repack_of``, and at others, ``repack_of_fleet``), and "as", the later clips on the
    page that repack it. Each link: {"anchor": the clip's id on this page or None,
    "clip_id": its id at its station, "station"}. A clip is named by (station, its id
    there): ``local_id`` on the central site, ``id`` on a station. Pure."""

    def local(c: ClipRecord) -> int | None:
        lid = c.extra.get("local_id", c.id)
        return lid if isinstance(lid, int) else None

    here = {(c.station, local(c)): c.id for c in clips}
    out: dict[int | None, dict[str, list[dict[str, Any]]]] = {
        c.id: {"of": [], "as": []} for c in clips
    }
    for c in clips:
        refs = [(c.station, i) for i in c.repack_of]
        refs += [(r["station"], r["clip_id"]) for r in c.repack_of_fleet]
        for station, lid in dict.fromkeys(refs):
            anchor = here.get((station, lid))
            out[c.id]["of"].append({"anchor": anchor, "clip_id": lid, "station": station})
            if anchor is not None and anchor != c.id:
                later = {"anchor": c.id, "clip_id": local(c), "station": c.station}
                out[anchor]["as"].append(later)
    return out


def camera_gap(clip: ClipRecord) -> dict[str, Any] | None:
    """What came before this clip began, as its signed manifest says: {"s": seconds,
    "restart": True when the station itself had stopped (the clip resumes the packing the
    stop cut, ``gap.station_stopped_at``), False when only the camera was lost}; or None."""

    if not clip.manifest_path:
        return None
    path = resolve_in(current_app.config["CLIPS_DIR"], _strip_clips_prefix(clip.manifest_path))
    try:
        if path is None or path.stat().st_size > 1 << 20:
            return None
        body = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    gap = body.get("resumed_after_s")
    if not isinstance(gap, int | float) or isinstance(gap, bool) or gap <= 0:
        return None
    detail = body.get("gap")
    restart = isinstance(detail, dict) and "station_stopped_at" in detail
    return {"s": float(gap), "restart": restart}


def _view(
    c: ClipRecord,
    url: Callable[..., str],
    frames: list[tuple[int, KeyFrame]],
    *,
    missing: bool,
    size_mismatch: bool,
) -> dict[str, Any]:
    return {
        "clip": c,
        "missing": missing,
        "size_mismatch": size_mismatch,
        "video_url": url("video", clip_id=c.id),
        "download_url": url("download", clip_id=c.id),
        "frames": [(kf, url("keyframe", clip_id=c.id, n=i)) for i, kf in frames],
    }


def search_args() -> dict[str, Any]:
    """Validated search parameters (shared with the JSON API)."""
    cfg = site_config()
    tz = site_tz(cfg)
    q = half_width(request.args.get("q", "")).strip()[:MAX_QUERY]
    day_from = parse_day(request.args.get("from"))
    day_to = parse_day(request.args.get("to"))
    bad_dates = bool(request.args.get("from") and day_from is None) or bool(
        request.args.get("to") and day_to is None
    )
    if day_from and day_to and day_to < day_from:
        day_from, day_to = day_to, day_from
    start_utc = day_bounds_utc(day_from, tz)[0] if day_from else None
    end_utc = day_bounds_utc(day_to, tz)[1] if day_to else None
    station = request.args.get("station", "").strip()[:64] or None
    packer = request.args.get("packer", "").strip()[:64] or None
    kind_arg = request.args.get("kind", "").strip()
    kind = kind_arg if kind_arg in ("order", "return") else None
    try:
        page = max(1, min(10_000, int(request.args.get("page", "1"))))
    except ValueError:
        page = 1
    query = ClipSearch(
        q, start_utc=start_utc, end_utc=end_utc, station=station, packer=packer, kind=kind
    )
    return {
        "q": q,
        "from": day_from.isoformat() if day_from else "",
        "to": day_to.isoformat() if day_to else "",
        "station": station or "",
        "packer": packer or "",
        "kind": kind or "",
        "page": page,
        "bad_dates": bad_dates,
        # the first page's search; the packing floor's filters (issue 13) in both indexes
        "query": _without_spaces_if_nothing(query),
    }


def _without_spaces_if_nothing(query: ClipSearch) -> ClipSearch:
    """``query``, or without its spaces if it finds nothing as typed: carriers' apps print a
    waybill in groups of digits ("SF 1234 5678 90121") that its label does not hold. Every
    page of one search uses the same text, decided by the whole result, not by its page."""
    squeezed = "".join(query.q.split())
    if squeezed == query.q or len(squeezed) < 2:
        return query
    try:
        if get_index().search(replace(query, limit=1, offset=0)):
            return query
    except SearchTimeout:
        return query  # the search itself will say it took too long
    return replace(query, q=squeezed)


def order_url(order_id: str, **values: Any) -> str:
    """The order page's URL. An ID a browser would rewrite before sending it (a "." or ".."
    segment, even percent-encoded, or a leading "/") goes in the query string instead."""
    if (
        not order_id
        or order_id.startswith("/")
        or any(p in (".", "..") for p in order_id.split("/"))
    ):
        return url_for("clips.order_by_query", id=order_id, **values)
    return url_for("clips.order", order_id=order_id, **values)


def log_fetch(resp: Response, order_id: str, action: str, **fields: Any) -> Response:
    """Log ``action`` on ``order_id`` once per fetch (not per resumed range or revalidation),
    then pass the response on. ``fields``: ``WebDB.log_access``'s (user, clip_id, share_id,
    detail); the client's address is added."""
    if resp.status_code in (200, 206) and counts_as_download():
        get_db().log_access(order_id, action, remote_addr=request.remote_addr, **fields)
    return resp


def send_bundle(
    order_id: str, *, clip_id: int | None = None, index: ScopedIndex | None = None
) -> Response:
    """The order's evidence bundle, built and signed by the station, with Range (see share.py).

    Central site: the station's signed parts and the clips, streamed from the bucket
    (central/bundles.py), for the station of ``clip_id`` (else of the order's newest clip).
    ``index``: the clips as the caller may see them (default: the logged-in account's).
    """

    clips = (index or get_index()).order(order_id)
    if not clips:
        abort(404)
    name = _UNSAFE_NAME.sub("_", f"{order_id}_evidence").strip(" .")[:150] + ".zip"
    store = media_store()
    if store is not None:
        return store.bundle(order_id, clips, clip_id, name)
    path = station_bundle(order_id, clips)
    resp = unless_gone(
        lambda: send_stored_file(
            path, sha256=path.stem, mimetype="application/zip", download_name=name,
            attachment=True,
        ),
        f"evidence bundle of order {order_id!r}",
    )  # fmt: skip
    if resp is None:  # the station removed it to make room: asking again builds it anew
        raise StationUnavailable(description="bundle-pending", retry_after=RETRY_AFTER_S)
    return resp


def station_bundle(order_id: str, clips: list[ClipRecord]) -> Path:
    """The order's bundle from the station (``BundleCache.get``); its refusals as HTTP errors."""
    db = station_index_db()
    # the station's own index (this site is not the central one): what its witness accepted
    witness = order_witness(db, clips) if db is not None else ""
    try:
        return bundle_cache().get(order_id, clips, witness)
    except BundleRefused as exc:
        log.warning("evidence bundle for order %r refused by the station: %s", order_id, exc)
        if exc.status == 507:
            raise InsufficientStorage(description=str(exc)) from exc
        if exc.status == 503:  # busy, or the order changed while it was asked for
            raise StationUnavailable(retry_after=15) from exc
        if exc.status == 409:  # the page says why, in its reader's words, not the station's
            raise BundleConflict(exc.code, exc.params) from exc
        abort(exc.status if exc.status == 404 else 500, description=str(exc))
    except BundleTooLarge as exc:
        log.warning("evidence bundle for order %r refused: %s", order_id, exc)
        # not the "no free space now" of a full disk: waiting does not mend this one
        raise InsufficientStorage(description="bundle-too-large") from exc
    except BundleUnavailable as exc:
        log.warning("evidence bundle for order %r not available: %s", order_id, exc)
        raise StationUnavailable(
            description="station-down" if exc.station_down else "bundle-pending",
            retry_after=exc.retry_after,
        ) from exc


def bundle_cache() -> BundleCache:
    return current_app.extensions["packcam"]["bundles"]  # type: ignore[no-any-return]
