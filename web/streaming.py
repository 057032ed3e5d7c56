"""Serving a stored clip: HTTP Range, If-Range, ETag/Last-Modified, 304/412/416, chunked reads."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote

from flask import Response, request
from werkzeug.datastructures import Range
from werkzeug.http import http_date, parse_date, parse_etags, parse_range_header, quote_etag

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
T = TypeVar("T")
# Runs of characters an old-style quoted filename cannot carry.
_NOT_ASCII = re.compile(r'[^\x20-\x7e]+|["\\;%]')


class FileChunks:
    """WSGI body: ``length`` bytes of an open file from ``start``, read ``chunk`` at a time.

    Uses ``os.pread`` so the file position is never shared; the server calls ``close`` when
    the response is done or the client went away, which closes the file.
    """

    def __init__(self, f: BinaryIO, start: int, length: int, chunk: int = CHUNK) -> None:
        self.f = f
        self.start = start
        self.length = length
        self.chunk = chunk

    def __iter__(self) -> Iterator[bytes]:
        fd = self.f.fileno()
        pos, remaining = self.start, self.length
        while remaining > 0:
            data = os.pread(fd, min(self.chunk, remaining), pos)
            if not data:  # the file shrank under us: stop; the client sees a short body
                log.warning("file %s ended early at byte %d", self.f.name, pos)
                return
            pos += len(data)
            remaining -= len(data)
            yield data

    def close(self) -> None:
        self.f.close()


def unless_gone(read: Callable[[], T], what: str) -> T | None:
    """``read()``, or None when the file it opens went first: the station deletes clips
    (retention) and bundles (its export cache) while the site runs, so a file found a moment
    ago may be gone when opened. The caller answers as for a file that is not there (a 404,
    "deleted", "try again"), never with a server error."""
    try:
        return read()
    except FileNotFoundError:
        log.warning("%s: its file went as it was opened", what)
        return None


def resolve_in(root: Path, rel: str) -> Path | None:
    """``root/rel`` as a real path if it is a regular file inside ``root``; else None.

    ``rel`` comes from the index, never from the client; this is the second line of defence
    against an index row (or a symlink on disk) pointing outside the clip store.
    """
    if not rel or "\x00" in rel or Path(rel).is_absolute():
        return None
    try:
        real_root = root.resolve(strict=True)
        path = (real_root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(real_root) or not path.is_file():
        return None
    return path


def make_etag(sha256: str, st: os.stat_result) -> str:
    # Content hash from the index plus size and mtime: changes if the file on disk does.
    digest = "".join(c for c in sha256[:16] if c in "0123456789abcdef") or "0"
    return f"{digest}-{st.st_size:x}-{st.st_mtime_ns:x}"


def _etag_in(header: str | None, etag: str, *, weak: bool) -> bool:
    etags = parse_etags(header)
    if etags.star_tag:
        return True
    return etags.contains_weak(etag) if weak else etags.is_strong(etag)


def send_stored_file(
    path: Path,
    *,
    sha256: str,
    mimetype: str = "video/mp4",
    download_name: str | None = None,
    attachment: bool = False,
    cache_control: str = "private, no-cache",
) -> Response:
    """Answer GET/HEAD for a file of the store with full HTTP caching and Range semantics.

    Preconditions follow RFC 9110 section 13.2.2: If-Match / If-Unmodified-Since fail with 412,
    If-None-Match / If-Modified-Since give 304. A single byte range gives 206 (If-Range must
    match the strong ETag or the exact Last-Modified, else the whole file is sent; a suffix
    longer than the file is the whole file); a range that starts past the end gives 416; a
    malformed Range header or a request for several ranges is ignored and the whole file is
    sent with 200 (allowed by RFC 9110 section 14.2).
    """
    f = path.open("rb")
    try:
        st = os.fstat(f.fileno())
        size = st.st_size
        etag = make_etag(sha256, st)
        mtime = datetime.fromtimestamp(int(st.st_mtime), UTC)
        headers = {
            "ETag": quote_etag(etag),
            "Last-Modified": http_date(mtime),
            "Accept-Ranges": "bytes",
            "Cache-Control": cache_control,
        }
        if download_name is not None:
            headers["Content-Disposition"] = content_disposition(download_name, attachment)

        status = _preconditions(etag, mtime)
        if status is not None:
            f.close()
            resp = Response(status=status, headers=headers)
            if status == 412:
                resp.headers.pop("Accept-Ranges")
            return resp

        start, length, status = 0, size, 200
        range_header = request.headers.get("Range")
        if range_header is not None and size > 0 and _if_range_ok(etag, mtime):
            parsed = parse_range_header(range_header)
            if parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1:
                span = _span(parsed, size)
                if span is None:
                    f.close()
                    headers["Content-Range"] = f"bytes */{size}"
                    return Response(status=416, headers=headers)
                start, end = span
                length, status = end - start, 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(length)
        if request.method == "HEAD" or length == 0:
            f.close()
            return Response(status=status, headers=headers, mimetype=mimetype)
        body = _body(f, start, length)
    except BaseException:
        f.close()
        raise
    return Response(
        body, status=status, headers=headers, mimetype=mimetype, direct_passthrough=True
    )


def _span(parsed: Range, size: int) -> tuple[int, int] | None:
    """[start, end) of one byte range of a ``size``-byte file; None if it cannot be met.

    A suffix range longer than the file is the whole file (RFC 9110 section 14.1.2), which
    werkzeug's ``range_for_length`` turns into None (a 416).
    """
    start, end = parsed.ranges[0]
    if start < 0 and end is None:
        return max(0, size + start), size
    return parsed.range_for_length(size)


def _body(f: BinaryIO, start: int, length: int) -> Any:
    """The response body for ``length`` bytes of ``f`` from ``start``.

    Under waitress, its ``wsgi.file_wrapper`` positioned at ``start``: waitress then sends
    exactly Content-Length bytes straight from the file in its I/O thread (documented for
    Range support in waitress.buffers), with no per-chunk trip through the worker thread and
    no spill of the response into a temporary file. Elsewhere, FileChunks.
    """
    wrapper = request.environ.get("wsgi.file_wrapper")
    if wrapper is not None and getattr(wrapper, "__module__", "").startswith("waitress."):
        f.seek(start)
        return wrapper(f, CHUNK)
    return FileChunks(f, start, length)


def _preconditions(etag: str, mtime: datetime) -> int | None:
    h = request.headers
    if "If-Match" in h:
        if not _etag_in(h["If-Match"], etag, weak=False):
            return 412
    elif "If-Unmodified-Since" in h:
        since = parse_date(h["If-Unmodified-Since"])
        if since is not None and mtime > since:
            return 412
    if "If-None-Match" in h:
        if _etag_in(h["If-None-Match"], etag, weak=True):
            return 304
    elif "If-Modified-Since" in h:
        since = parse_date(h["If-Modified-Since"])
        if since is not None and mtime <= since:
            return 304
    return None


def _if_range_ok(etag: str, mtime: datetime) -> bool:
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == quote_etag(etag)  # strong comparison; a weak tag never matches
    when = parse_date(value)
    return when is not None and when == mtime


def content_disposition(filename: str, attachment: bool) -> str:
    """Content-Disposition with an ASCII fallback and RFC 5987 ``filename*`` for Unicode."""

    kind = "attachment" if attachment else "inline"
    ascii_name = _NOT_ASCII.sub("_", filename).strip() or "clip.mp4"
    value = f'{kind}; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
