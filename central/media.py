"""Central mode: stream archived clips and key frames from object storage (Range passed through)."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import urlsplit

from flask import Response, abort, current_app, redirect, request
from werkzeug.http import http_date, parse_date

from station.config import Config
from station.fleet.objstore import (
    ObjectStore,
    build_client,
    clip_key,
    is_not_found,
    station_prefix,
)
from station.store.ledger import ClipRecord
from web.errors import ArchivedCopyAltered, ClipNotUploaded
from web.frames import KeyFrame
from web.handles import site_config
from web.streaming import content_disposition

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
# Request headers a conditional / ranged GET may carry; passed to the store as they are.
_PASS = {
    "Range": "Range",
    "If-Range": "IfRange",
    "If-None-Match": "IfNoneMatch",
    "If-Match": "IfMatch",
    "If-Modified-Since": "IfModifiedSince",
    "If-Unmodified-Since": "IfUnmodifiedSince",
}
# Kinds of the web's key-frame strip, from the labels the archiver gives its frames (a "control"
# or "seal" card is the seal only when it sealed the clip: _frame_kind).
_FRAME_KINDS = {
    "order": "order",
    "waybill": "waybill",
    "seal": "seal",
    "pedal": "seal",
    "end": "end",
}


# A viewer's request holds one of the server's threads while it waits on the store: against a
# frozen store each call gives up after READ_ATTEMPTS x READ_TIMEOUT_S (8 s), not after the
# archiver's 4 x [archive] timeout_s (2 minutes); a stalled body read ends the response after
# READ_TIMEOUT_S.
READ_TIMEOUT_S = 4.0
READ_ATTEMPTS = 2


def init_app(app: Any, cfg: Config) -> None:
    """One ObjectStore (boto3 clients are thread-safe) for the site's reads."""
    store = None
    if cfg.archive.bucket:
        timeout = min(cfg.archive.timeout_s, READ_TIMEOUT_S)
        client = build_client(cfg.archive, attempts=READ_ATTEMPTS, timeout_s=timeout)
        store = ObjectStore(cfg.archive, client=client)
    app.extensions["packcam_media"] = {"store": store, "lock": threading.Lock()}
    if store is not None and cfg.archive.stream == "redirect" and cfg.archive.endpoint_url:
        # The browser fetches the video from the store itself: CSP media-src must allow it.
        parts = urlsplit(cfg.archive.endpoint_url)
        app.config["PACKCAM_MEDIA_ORIGIN"] = f"{parts.scheme}://{parts.netloc}"


def media_store() -> ObjectStore | None:
    """The site's object store, or None when [archive] names no bucket."""
    store: ObjectStore | None = current_app.extensions["packcam_media"]["store"]
    return store


def _store() -> ObjectStore:
    store: ObjectStore | None = current_app.extensions["packcam_media"]["store"]
    if store is None:
        log.error("central mode without [archive] bucket: clips cannot be streamed")
        abort(503)
    return store


def archive_meta(clip: ClipRecord) -> dict[str, Any]:
    meta = clip.extra.get("archive_meta")
    return meta if isinstance(meta, dict) else {}


def is_archived(clip: ClipRecord) -> bool:
    return bool(clip.extra.get("archive_key"))


def keyframes(clip: ClipRecord) -> list[KeyFrame]:
    """The archived key frames that fit the order page's strip (order, waybill, seal, end)."""
    frames = archive_meta(clip).get("frames") or []
    out = []
    for f in frames:
        kind = _frame_kind(clip, f)
        if kind is not None:
            text = clip.order_id if kind == "order" else (clip.waybill or "")
            out.append(KeyFrame(kind, float(f.get("t", 0.0)), text))
    return out


def _frame_kind(clip: ClipRecord, frame: dict[str, Any]) -> str | None:
    """The strip's kind of an archived frame; a "control" or "seal" frame (labelled by the
    scan's kind) is the seal only when the card at that moment sealed the clip: the seal card,
    not a return, sign-out or test card, nor a seal card lying where it lay (ignored)."""
    label = str(frame.get("label"))
    if label not in ("control", "seal"):
        return _FRAME_KINDS.get(label)
    t = float(frame.get("t", 0.0))
    seal = any(
        e.is_seal and e.t_clip_s is not None and abs(e.t_clip_s - t) < 0.01 for e in clip.events
    )
    return "seal" if seal else None


def _frame_key(clip: ClipRecord, n: int | None) -> str | None:
    frames = archive_meta(clip).get("frames") or []
    wanted = [f for f in frames if _frame_kind(clip, f)]
    if n is None:
        pick = wanted[0] if wanted else (frames[0] if frames else None)
    else:
        pick = wanted[n] if 0 <= n < len(wanted) else None
    key = pick.get("key") if isinstance(pick, dict) else None
    return key if isinstance(key, str) else None


class NotAsSigned(Exception):
    """An object's bytes are not the clip the station signed: more or fewer, or other ones."""


def checked_chunks(body: Any, size: int, sha256: str) -> Iterator[bytes]:
    """The chunks of ``body`` (a botocore StreamingBody), counted and hashed as they pass:
    NotAsSigned as soon as they run past ``size``, or at the end when their length or SHA-256
    is not the signed one. The store is not trusted to hand back what was archived. The last
    chunk is held back until the end is checked: a response that announced ``size`` bytes
    then never gets all of them (the server drops the connection short of its length)."""
    digest = hashlib.sha256()
    got = 0
    held: bytes | None = None
    for chunk in body.iter_chunks(CHUNK):
        got += len(chunk)
        if got > size:
            raise NotAsSigned(f"more than the signed {size} bytes")
        digest.update(chunk)
        if held is not None:
            yield held
        held = chunk
    if got != size or digest.hexdigest() != sha256:
        raise NotAsSigned(
            f"{got} bytes with SHA-256 {digest.hexdigest()}, signed {size} bytes with {sha256}"
        )
    if held is not None:
        yield held


class _Body:
    """WSGI body over a botocore StreamingBody; ``close`` releases the connection. With
    ``signed``, the whole object is checked against that clip as it streams (``checked_chunks``):
    an object that is not it raises (logged) before its last chunk, so the server cuts the
    response."""

    def __init__(self, body: Any, key: str, signed: ClipRecord | None = None) -> None:
        self.body = body
        self.key = key
        self.signed = signed

    def __iter__(self) -> Iterator[bytes]:
        clip = self.signed
        if clip is None:
            yield from self.body.iter_chunks(CHUNK)
            return
        try:
            yield from checked_chunks(self.body, clip.size, clip.sha256)
        except NotAsSigned as exc:
            log.error("clip %s of %s: the bucket's %s is not the signed clip (%s); the "
                      "download is cut", clip.id, clip.station, self.key, exc)  # fmt: skip
            raise

    def close(self) -> None:
        self.body.close()


def _total(got: dict[str, Any]) -> int | None:
    """The whole object's size from the store's answer: the total of its Content-Range
    (``bytes a-b/TOTAL``) for a part, else its length; None when the store does not say."""
    if got.get("ContentRange"):
        total = str(got["ContentRange"]).rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = got.get("ContentLength")
    return int(length) if length is not None else None


def serve_object(
    key: str,
    *,
    mimetype: str,
    download_name: str | None = None,
    attachment: bool = False,
    cache_control: str = "private, no-cache",
    signed: ClipRecord | None = None,
) -> Response:
    """GET/HEAD of one object: proxied with Range/conditionals passed through, or a 302.

    ``signed``: the clip the object must be. Every proxied answer's object size is checked
    against the clip's (``ArchivedCopyAltered`` when it differs, nothing sent); a whole-object
    answer (or a range of all of it) is also hashed as it streams and cut when it is not the
    signed clip. Any other range cannot be hashed without the whole object: its size is all
    that is checked. A redirect is not checked at all: the browser reads the store itself."""
    store = _store()
    cfg = site_config().archive
    disposition = content_disposition(download_name, attachment) if download_name else None
    if cfg.stream == "redirect":
        params: dict[str, Any] = {"ResponseContentType": mimetype}
        if disposition:
            params["ResponseContentDisposition"] = disposition
        # flask.redirect makes the app's response class; typed as werkzeug's
        resp = cast(Response, redirect(store.presign(key, cfg.presign_s, **params), code=302))
        resp.headers["Cache-Control"] = "no-store"
        return resp
    args: dict[str, Any] = {"Bucket": store.bucket, "Key": key}
    for header, param in _PASS.items():
        value = request.headers.get(header)
        if value:
            if param in {"IfModifiedSince", "IfUnmodifiedSince"}:
                when = parse_date(value)
                if when is None:
                    continue
                args[param] = when
            else:
                args[param] = value
    try:
        if request.method == "HEAD":
            args.pop("IfRange", None)
            args.pop("Range", None)  # a HEAD answers for the whole object
            got = dict(store.client.head_object(**args))
        else:
            got = store.client.get_object(**args)
    except Exception as exc:
        if _timed_out(exc):
            log.error("object store did not answer for %s in time: %s", key, exc)
            abort(504)
        if not hasattr(exc, "response"):
            log.error("object store unreachable for %s: %s", key, exc)
            abort(503)
        return _error_response(exc, key)
    if signed is not None:
        _check_size(got, signed, key)
    meta = got.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode", 200))
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": cache_control,
        "Content-Length": str(got.get("ContentLength", 0)),
    }
    if got.get("ETag"):
        headers["ETag"] = got["ETag"]
    if got.get("LastModified"):
        headers["Last-Modified"] = http_date(got["LastModified"])
    if got.get("ContentRange"):
        headers["Content-Range"] = got["ContentRange"]
    if disposition:
        headers["Content-Disposition"] = disposition
    if request.method == "HEAD":
        return Response(status=status, headers=headers, mimetype=mimetype)
    # A range that is the whole object (a download manager's or a player's "bytes=0-") is
    # hashed as a whole answer is; any other range cannot be.
    span = got.get("ContentRange")
    whole = signed if signed and (not span or span == _all_of(signed.size)) else None
    return Response(
        _Body(got["Body"], key, whole), status=status, headers=headers, mimetype=mimetype,
        direct_passthrough=True,
    )  # fmt: skip


def _all_of(size: int) -> str:
    return f"bytes 0-{size - 1}/{size}"


def _check_size(got: dict[str, Any], clip: ClipRecord, key: str) -> None:
    """Refuse (logged) an answer whose object is not the size the index registered for the
    clip: a replaced or truncated object must not be served as the order's video. 503 as for an
    evidence bundle with such an object (central/bundles.py): the site cannot serve the clip;
    not 404 (it is indexed and archived) nor 502 (the store answered; asking again gets the
    same object), and without Retry-After."""
    total = _total(got)
    if total == clip.size:
        return
    if "Body" in got:
        got["Body"].close()
    log.error("clip %s of %s not served: the bucket's %s has %s bytes, the signed clip %d",
              clip.id, clip.station, key, total if total is not None else "an unknown number of",
              clip.size)  # fmt: skip
    raise ArchivedCopyAltered()


def _timed_out(exc: Exception) -> bool:
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    return isinstance(exc, ConnectTimeoutError | ReadTimeoutError)


def _error_response(exc: Exception, key: str) -> Response:
    resp = getattr(exc, "response", {}) or {}
    status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    headers = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    if status in (304, 412):
        out = Response(status=status)
        if headers.get("etag"):
            out.headers["ETag"] = headers["etag"]
        return out
    if status == 416:
        out = Response(status=416)
        if headers.get("content-range"):
            out.headers["Content-Range"] = headers["content-range"]
        return out
    if is_not_found(exc):
        log.error("archived object %s is missing from the bucket", key)
        abort(404)
    log.error("object store refused %s: %s", key, exc)
    abort(502)


def _own(clip: ClipRecord, key: str, expected: str, what: str) -> str:
    """``key`` if it is where the clip's own station archives ``what`` (``expected``, or
    under it for a directory), else 404. The keys are what a station registered; the site
    reads the whole bucket, so a station's token must not make it serve another station's
    objects (another buyer's video) under this station's order."""
    inside = expected.endswith("/") and key.startswith(expected)
    if (key == expected or inside) and not {".", ".."} & set(key.split("/")):
        return key
    log.error("clip %s of %s names %s %r, not its station's %r: not served",
              clip.id, clip.station, what, key, expected)  # fmt: skip
    abort(404)


def serve_clip(clip: ClipRecord, *, download_name: str, attachment: bool) -> Response:
    key = clip.extra.get("archive_key")
    if not key:
        log.info("clip %s of %s is not archived yet", clip.id, clip.station)
        raise ClipNotUploaded()
    prefix = site_config().archive.prefix
    key = _own(clip, str(key), clip_key(prefix, clip.station, clip.sha256), "archive key")
    return serve_object(key, mimetype="video/mp4", download_name=download_name,
                        attachment=attachment, signed=clip)  # fmt: skip


def serve_frame(clip: ClipRecord, n: int | None) -> Response:
    key = _frame_key(clip, n)
    if key is None:
        abort(404)
    prefix = site_config().archive.prefix
    frames = f"{station_prefix(prefix, clip.station)}frames/{clip.sha256}/"
    key = _own(clip, key, frames, "key frame")
    return serve_object(key, mimetype="image/jpeg", cache_control="private, max-age=86400")
