"""The public /verify upload path: admission, a bounded spool on the data disk, zip limits."""

from __future__ import annotations

import ctypes
import ctypes.util
import hmac
import json
import logging
import math
import os
import secrets
import shutil
import stat
import tempfile
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flask import request
from waitress.buffers import FileBasedBuffer, OverflowableBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import WSGITask
from waitress.utilities import Error
from waitress.utilities import RequestEntityTooLarge as WaitressTooLarge
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_list_header, parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from station.config import Config
from station.proof.verify import ZIP_ERRORS
from station.store.retention import Policy
from web.throttle import address_key

log = logging.getLogger(__name__)

MB = 1 << 20
SPOOL_DIR = Path("spool") / "verify"
UPLOAD_PATH = "/verify"
CHUNK = 256 * 1024
FIELD_MAX = 4096  # a non-file form field (the CSRF token)
FRAMING = 1 << 20  # multipart headers and boundaries around the file
SLOW_GRACE_S = 30.0  # an upload's first seconds, before verify_min_kbps is held to it
MAX_PARTS = 8
# A clip barely compresses (H.264); a member unpacking to more than this many times its
# compressed size is a zip bomb, not evidence.
MAX_RATIO = 20
RATIO_FROM = 1 * MB
WINDOW_S = 3600.0

DISK_FULL = (
    "工位磁盘空间不足 · The station needs its disk space for recording; "
    "this file cannot be checked here now"
)

DiskProbe = Callable[[Path], tuple[int, int]]  # (bytes free for this user, bytes in total)


class UploadRefused(Exception):
    """An upload turned away: an HTTP status, a short code for the log, a message to show."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def statvfs_probe(path: Path) -> tuple[int, int]:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


@dataclass(frozen=True)
class Limits:
    """The /verify limits, from ``[web] verify_*`` and the station's ``[retention]`` floor."""

    max_bytes: int
    spool_bytes: int
    floor_bytes: int  # the station's retention floor (absolute part)
    floor_percent: float  # ... and its percentage part
    headroom_bytes: int
    unzipped_bytes: int
    max_members: int
    parallel: int
    per_hour: int
    min_bytes_per_s: int = 4 * 1024  # verify_min_kbps

    @classmethod
    def from_config(cls, cfg: Config, *, max_bytes: int | None = None) -> Limits:
        w, r = cfg.web, cfg.retention
        return cls(
            max_bytes=max_bytes if max_bytes is not None else w.verify_max_mb * MB,
            spool_bytes=w.verify_spool_mb * MB,
            floor_bytes=r.free_floor_mb * MB,
            floor_percent=r.free_floor_percent,
            headroom_bytes=w.verify_headroom_mb * MB,
            unzipped_bytes=w.verify_unzipped_mb * MB,
            max_members=w.verify_max_members,
            parallel=w.verify_parallel,
            per_hour=w.verify_per_hour,
            min_bytes_per_s=w.verify_min_kbps * 1024,
        )

    def floor(self, total_bytes: int) -> int:
        """Free bytes /verify always leaves on the data disk: retention's floor + headroom."""
        station = Policy(free_floor_bytes=self.floor_bytes, free_floor_percent=self.floor_percent)
        return station.floor(total_bytes) + self.headroom_bytes


class Spool:
    """Admission and space accounting for /verify uploads under ``<data_dir>/spool/verify``.

    ``admit`` checks the per-address rate, the number of uploads in flight and that the bytes
    asked for fit both the spool's quota and the room above the free-space floor, and reserves
    them; a ``Ticket`` gives them back. Reservations are counted against the free space seen
    now even after they have been written (so a full spool is counted twice): conservative,
    never below the floor. Called from any server thread and from waitress's I/O thread (which
    admits an upload as soon as its headers arrive); one lock guards the counters.
    """

    def __init__(
        self,
        data_dir: Path,
        limits: Limits,
        *,
        probe: DiskProbe = statvfs_probe,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = data_dir
        self.root = data_dir / SPOOL_DIR
        self.limits = limits
        self.probe = probe
        self.clock = clock
        self._lock = threading.Lock()
        self._reserved = 0
        self._active = 0
        self._recent: dict[str, deque[float]] = {}
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep()

    def sweep(self) -> None:
        """Remove what a crashed process left in the spool (nothing is in flight yet)."""
        for p in self.root.iterdir():
            log.warning("removing a leftover upload from the verify spool: %s", p.name)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    @property
    def reserved(self) -> int:
        return self._reserved

    @property
    def active(self) -> int:
        return self._active

    def admit(self, addr: str | None, nbytes: int) -> Ticket:
        """Reserve ``nbytes`` for one upload from ``addr``, or raise UploadRefused."""
        key = address_key(addr)
        with self._lock:
            now = self.clock()
            recent = self._recent.setdefault(key, deque())
            while recent and now - recent[0] >= WINDOW_S:
                recent.popleft()
            for k in [k for k, q in self._recent.items() if not q]:
                del self._recent[k]
            if len(recent) >= self.limits.per_hour:
                wait = math.ceil(WINDOW_S - (now - recent[0]))
                log.warning("verify upload refused: %s sent %d this hour", key, len(recent))
                raise UploadRefused(
                    429,
                    "rate",
                    f"上传次数过多 · Too many uploads from your address; try again in "
                    f"{max(1, wait // 60)} minutes",
                    retry_after=wait,
                )
            if self._active >= self.limits.parallel:
                log.warning("verify upload refused: %d uploads in flight", self._active)
                raise UploadRefused(
                    503,
                    "busy",
                    "正在验证其他文件 · Verification is busy; try again in a minute",
                    retry_after=30,
                )
            self._check_room(nbytes)
            self._recent[key] = recent
            recent.append(now)
            self._active += 1
            self._reserved += nbytes
        return Ticket(self, nbytes)

    def _check_room(self, nbytes: int) -> None:
        lim = self.limits
        if self._reserved + nbytes > lim.spool_bytes:
            log.warning(
                "verify upload refused: %d MB asked, %d MB of %d MB spool in use",
                nbytes // MB, self._reserved // MB, lim.spool_bytes // MB,
            )  # fmt: skip
            raise UploadRefused(
                507, "spool-full", "验证空间已满 · No room to check this file now; try later"
            )
        free, total = self.probe(self.data_dir)
        floor = lim.floor(total)
        if free - self._reserved - nbytes < floor:
            log.warning(
                "verify upload refused: %d MB asked, %d MB free, %d MB reserved, floor %d MB",
                nbytes // MB, free // MB, self._reserved // MB, floor // MB,
            )  # fmt: skip
            raise UploadRefused(507, "disk-floor", DISK_FULL)

    def room(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more on the data disk would keep /verify's floor (nothing kept)."""
        with self._lock:
            try:
                self._check_room(nbytes)
            except UploadRefused:
                return False
            return True

    def _grow(self, nbytes: int) -> None:
        with self._lock:
            self._check_room(nbytes)
            self._reserved += nbytes

    def _release(self, nbytes: int) -> None:
        with self._lock:
            self._reserved -= nbytes
            self._active -= 1


class Ticket:
    """One admitted upload: its reserved bytes and its files under the spool.

    ``release`` (idempotent) removes its files and gives the reservation back. Used by one
    request at a time (waitress's I/O thread while the body arrives, then one worker).
    """

    def __init__(self, spool: Spool, reserved: int) -> None:
        self.spool = spool
        self.reserved = reserved
        self.dir: Path | None = None
        self._released = False
        self._lock = threading.Lock()

    def workdir(self) -> Path:
        if self.dir is None:
            self.dir = self.spool.root / f"u-{secrets.token_hex(8)}"
            self.dir.mkdir(mode=0o700)
        return self.dir

    def open_buffer(self) -> IO[bytes]:
        """An unnamed file on the data disk (gone when closed, even after a crash)."""
        return tempfile.TemporaryFile("w+b", dir=self.spool.root)

    def grow(self, nbytes: int) -> None:
        """Reserve more (a bundle's unpacked clips) or raise UploadRefused."""
        if nbytes <= 0:
            return
        self.spool._grow(nbytes)
        self.reserved += nbytes

    def remove_files(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self.remove_files()
        self.spool._release(self.reserved)


# ---- the multipart body, streamed to the spool ---------------------------------------------


_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
_libc: Any = None


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free ``length`` bytes of a file's blocks at ``offset`` (Linux); False if unsupported."""
    global _libc  # a lazily loaded handle to the C library, not configuration
    if length <= 0:
        return True
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name, use_errno=True) if name else False
        if _libc:
            _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if not _libc:
        return False
    mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
    return bool(_libc.fallocate(fd, mode, offset, length) == 0)  # ctypes: untyped


@dataclass
class Upload:
    """A received file in the spool: ``path`` holds exactly the uploaded bytes."""

    path: Path
    name: str
    size: int
    is_zip: bool
    ticket: Ticket
    fields: dict[str, str]

    def scratch(self) -> Path:
        """A directory in the spool for unpacking (removed with the ticket)."""
        d = self.ticket.workdir() / "unpacked"
        d.mkdir(exist_ok=True)
        return d


def receive(
    stream: IO[bytes],
    content_type: str,
    ticket: Ticket,
    limits: Limits,
    *,
    check_fields: Callable[[dict[str, str]], None] | None = None,
) -> Upload:
    """Stream a multipart/form-data body's ``file`` part into the ticket's spool directory.

    Never holds more than a chunk in memory. ``check_fields`` sees the fields sent before the
    file (the CSRF token) before a byte of the file is written. When the body itself sits in
    a file on the data disk (waitress's spool), the parts already copied are freed as they are
    read (hole punching), so the upload never takes more than its size; where that is not
    possible the ticket reserves a second copy first.
    """
    mimetype, opts = parse_options_header(content_type)
    boundary = opts.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary:
        raise UploadRefused(400, "bad-request", "请选择文件 · Choose a file to upload")
    decoder = MultipartDecoder(boundary.encode("latin-1"), max_parts=MAX_PARTS)
    fields: dict[str, str] = {}
    field_name: str | None = None
    field_buf = bytearray()
    out: IO[bytes] | None = None
    upload: Upload | None = None
    src_fd = _spooled_fd(stream)
    punch = src_fd is not None
    read_pos = 0
    freed = 0
    try:
        while True:
            block = stream.read(CHUNK)
            decoder.receive_data(block or None)
            read_pos += len(block)
            while True:
                try:
                    event = decoder.next_event()
                except ValueError as exc:
                    raise UploadRefused(
                        400, "bad-request", f"上传不完整 · The upload is malformed: {exc}"
                    ) from exc
                if isinstance(event, NeedData):
                    break
                if isinstance(event, Field):
                    field_name, field_buf = event.name, bytearray()
                elif isinstance(event, File):
                    field_name = None
                    if event.name != "file" or upload is not None:
                        continue
                    if check_fields is not None:
                        check_fields(fields)
                    path = ticket.workdir() / "upload"
                    out = path.open("wb")
                    upload = Upload(path, event.filename or "", 0, False, ticket, fields)
                elif isinstance(event, Data):
                    if field_name is not None:
                        field_buf += event.data
                        if len(field_buf) > FIELD_MAX:
                            raise UploadRefused(400, "bad-request", "form field too large")
                        if not event.more_data:
                            fields[field_name] = field_buf.decode("utf-8", "replace")
                            field_name = None
                    elif out is not None and upload is not None:
                        upload.size += len(event.data)
                        if upload.size > limits.max_bytes:
                            raise too_large(limits)
                        out.write(event.data)
                        if not event.more_data:
                            out.close()
                            out = None
                elif isinstance(event, Epilogue):
                    break
            if punch and src_fd is not None:
                # what the decoder has consumed is in our copy: free it in the body's file
                done = read_pos - len(decoder.buffer)
                if done - freed >= CHUNK and out is not None:
                    if _punch_hole(src_fd, freed, done - freed):
                        freed = done
                    else:
                        punch = False
                        ticket.grow(ticket.reserved)  # a second copy after all
            if not block:
                break
        if upload is None or out is not None:
            raise UploadRefused(400, "bad-request", "请选择文件 · Choose a file to upload")
        with upload.path.open("rb") as f:
            upload.is_zip = f.read(4) == b"PK\x03\x04"
        return upload
    finally:
        if out is not None:
            out.close()


def _spooled_fd(stream: IO[bytes]) -> int | None:
    """The file descriptor of a request body that is a regular file (waitress's spool)."""
    try:
        fd = stream.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, AttributeError, ValueError):
        return None


@contextmanager
def spooled_upload(spool: Spool, *, expected_csrf: str | None) -> Iterator[Upload]:
    """The request's uploaded file in the spool, admitted and cleaned up whatever happens.

    Under waitress the request was admitted when its headers arrived (``waitress_channel``)
    and its ticket is released when waitress closes the request; elsewhere (the test client,
    another server) it is admitted and released here. ``expected_csrf``: the session's token,
    which the form's ``csrf_token`` field (or an ``X-CSRF-Token`` header) must match before
    any of the file is stored.
    """

    ticket: Ticket | None = request.environ.get("packcam.upload_ticket")
    owned = ticket is None
    limits = spool.limits
    if ticket is None:
        length = request.content_length
        if length is not None and length > limits.max_bytes + FRAMING:
            raise too_large(limits)
        # chunked (no length): room for the largest upload it may turn out to be
        need = length if length is not None else limits.max_bytes
        ticket = spool.admit(request.remote_addr, need + FRAMING)
        stream: IO[bytes] = request.stream
    else:
        stream = request.environ["wsgi.input"]

    def check(fields: dict[str, str]) -> None:
        if expected_csrf is None:
            return
        sent = fields.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        if not hmac.compare_digest(expected_csrf, sent):
            log.warning("CSRF check failed for a verify upload from %s", request.remote_addr)
            raise UploadRefused(400, "csrf", "页面已过期，请刷新 · The page expired; reload it")

    try:
        try:
            up = receive(stream, request.content_type or "", ticket, limits, check_fields=check)
        except RequestEntityTooLarge as exc:
            raise too_large(limits) from exc
        yield up
    finally:
        if owned:
            ticket.release()
        else:
            ticket.remove_files()


def too_large(limits: Limits) -> UploadRefused:
    mb = limits.max_bytes // MB
    return UploadRefused(413, "too-large", f"文件太大 · The file is larger than the {mb} MB limit")


def too_slow(received: int, elapsed_s: float, limits: Limits) -> UploadRefused | None:
    """An upload whose body has come in slower than ``verify_min_kbps`` on average once its
    first ``SLOW_GRACE_S`` are over: a client sending a byte a minute (waitress closes only
    a silent connection) would hold one of the ``verify_parallel`` places for ever, and two
    would close /verify to everyone."""
    if elapsed_s <= SLOW_GRACE_S or received >= limits.min_bytes_per_s * elapsed_s:
        return None
    kbps = limits.min_bytes_per_s // 1024
    return UploadRefused(
        408,
        "too-slow",
        f"上传太慢（平均低于 {kbps} KB/s），请换用更快的网络再试 · The upload was too slow (under "
        f"{kbps} KB/s on average): try again on a faster connection",
    )


# ---- zip limits ------------------------------------------------------------------------------


def unzip_need(path: Path, limits: Limits) -> int:
    """Bytes checking this bundle will unpack to disk; UploadRefused beyond the zip limits.

    A bundle's clips are unpacked once per listing in ``bundle.json`` (other members are read
    into memory, capped by the verifier): refused are too many members, a member that
    unpacks to many times its compressed size, a clip listed twice, and a total over
    ``verify_unzipped_mb``.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise UploadRefused(
                    413,
                    "zip-members",
                    f"证据包文件过多 · The bundle holds {len(infos)} files "
                    f"(at most {limits.max_members})",
                )
            by_name = {i.filename: i for i in infos}
            for i in infos:
                if i.file_size > RATIO_FROM and i.file_size > MAX_RATIO * max(1, i.compress_size):
                    raise UploadRefused(
                        413,
                        "zip-bomb",
                        f"证据包异常 · {i.filename} would unpack to {i.file_size // MB} MB "
                        f"from {i.compress_size // 1024} KB: not a recorded clip",
                    )
            listed = _listed_clips(zf, by_name)
    except ZIP_ERRORS:  # encrypted, unknown compression, corrupt, JSON nested too deep
        return 0  # the verifier reports an unreadable bundle (it reads bundle.json first)
    if listed is None:
        need = sum(i.file_size for i in by_name.values())
    else:
        dupes = {n for n in listed if listed.count(n) > 1}
        if dupes:
            raise UploadRefused(
                413,
                "zip-duplicate",
                f"证据包异常 · The bundle lists {sorted(dupes)[0]} more than once",
            )
        need = sum(by_name[n].file_size for n in listed if n in by_name)
    if need > limits.unzipped_bytes:
        raise UploadRefused(
            413,
            "zip-too-large",
            f"证据包太大 · Its clips unpack to {need // MB} MB "
            f"(at most {limits.unzipped_bytes // MB} MB)",
        )
    return need


def _listed_clips(zf: zipfile.ZipFile, by_name: dict[str, zipfile.ZipInfo]) -> list[str] | None:
    info = by_name.get("bundle.json")
    if info is None or info.file_size > 16 * MB:
        return []  # nothing is unpacked: the verifier stops at the missing index
    try:
        index = json.loads(zf.read(info))
        return [str(e["clip"]) for e in index["clips"]]
    except (ValueError, KeyError, TypeError):
        return None  # unknown shape: count every member


# ---- waitress: admit at the headers, spool the body on the data disk -----------------------


def client_address(peer: str | None, forwarded_for: str | None, trust_proxy: bool) -> str | None:
    """The uploader's address as the app reads it: behind the one trusted reverse proxy
    (``web.trust_proxy``, werkzeug's ProxyFix with ``x_for=1``) the last X-Forwarded-For
    entry, the one that proxy appended; else the connection's own address."""
    entries = parse_list_header(forwarded_for) if trust_proxy and forwarded_for else []
    return entries[-1] if entries and entries[-1] else peer


def waitress_channel(
    spool: Spool,
    site_cap: int,
    larger: tuple[tuple[str, int], ...] = (),
    *,
    trust_proxy: bool = False,
) -> type:
    """A waitress channel class that decides on each request as soon as its headers arrive.

    waitress reads a whole body before the app runs (spooling it to a temp file), so limits
    checked in the app come too late: a POST to /verify is admitted here (rate, in flight,
    room above the floor) and its body is spooled on the data disk under the ticket; any
    other body is capped at ``site_cap`` (``larger``: (path prefix, cap) pairs, e.g. the fleet
    API's batches). Refusals are answered at once and the connection
    closed, without reading the body. ``trust_proxy``: uploads are counted per address as
    X-Forwarded-For names it (``client_address``), not per connection, which is the proxy's.
    """

    class Refused(Error):  # type: ignore[misc]  # waitress is untyped
        def __init__(self, exc: UploadRefused) -> None:
            super().__init__(exc.message)
            self.code = exc.status
            self.reason = {
                408: "Request Timeout",
                413: "Content Too Large",
                429: "Too Many Requests",
                503: "Service Unavailable",
                507: "Insufficient Storage",
            }.get(exc.status, "Bad Request")
            self.retry_after = exc.retry_after

        def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
            status, headers, body = super().to_response(ident)
            if self.retry_after:
                headers.append(("Retry-After", str(self.retry_after)))
            return status, headers, body

    class SpoolBuffer(OverflowableBuffer):  # type: ignore[misc]
        buf: Any  # waitress's (untyped) current buffer

        def __init__(self, ticket: Ticket, overflow: int) -> None:
            super().__init__(overflow)
            self.ticket = ticket

        def _set_large_buffer(self) -> None:
            oldbuf: Any = self.buf
            self.buf = FileBasedBuffer(self.ticket.open_buffer(), oldbuf)
            if hasattr(oldbuf, "close"):
                oldbuf.close()
            self.overflowed = True

    class Parser(HTTPRequestParser):  # type: ignore[misc]
        ticket: Ticket | None = None
        admitted = 0.0  # time.monotonic() when its ticket was given
        cap = site_cap

        def __init__(self, adj: Any, remote_addr: str | None = None) -> None:
            super().__init__(adj)
            self.remote_addr = remote_addr

        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            if self.body_rcv is None:
                return
            if self.command != "POST" or self.path != UPLOAD_PATH:
                self.cap = next((c for p, c in larger if self.path.startswith(p)), site_cap)
                if self.content_length > self.cap:
                    self._refuse(WaitressTooLarge(f"exceeds {self.cap} bytes"))
                return
            if not self.chunked and self.content_length >= self.adj.max_request_body_size:
                # waitress would answer by itself, in English and in bytes; say it as the page
                self._refuse(Refused(too_large(spool.limits)))
                return
            need = (spool.limits.max_bytes if self.chunked else self.content_length) + FRAMING
            addr = client_address(
                self.remote_addr, self.headers.get("X_FORWARDED_FOR"), trust_proxy
            )
            try:
                self.ticket = spool.admit(addr, need)
            except UploadRefused as exc:
                self._refuse(Refused(exc))
                return
            self.admitted = time.monotonic()
            self.body_rcv.buf = SpoolBuffer(self.ticket, self.adj.inbuf_overflow)

        def _refuse(self, error: Any) -> None:
            self.error = error
            self.expect_continue = False  # no "100 Continue": the client keeps its body
            self.body_rcv = None
            self.content_length = 0
            self.completed = True

        def received(self, data: bytes) -> int:
            n: int = super().received(data)
            if self.ticket is not None and isinstance(self.error, WaitressTooLarge):
                # a chunked upload crossed waitress's cap: the page's words, not waitress's
                self.error = Refused(too_large(spool.limits))
            if self.ticket is not None and not self.completed:
                elapsed = time.monotonic() - self.admitted
                if slow := too_slow(self.body_bytes_received, elapsed, spool.limits):
                    self._refuse(Refused(slow))
            if (
                self.chunked
                and self.ticket is None
                and self.body_rcv is not None
                and self.body_bytes_received > self.cap
            ):
                self._refuse(WaitressTooLarge(f"exceeds {self.cap} bytes"))
            return n

        def close(self) -> None:
            try:
                super().close()
            finally:
                if self.ticket is not None:
                    self.ticket.release()

    class Task(WSGITask):  # type: ignore[misc]
        def get_environment(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().get_environment()
            environ["packcam.upload_ticket"] = getattr(self.request, "ticket", None)
            return environ

    class Channel(HTTPChannel):  # type: ignore[misc]
        task_class = Task

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            addr = self.addr[0] if isinstance(self.addr, tuple) else None
            self.parser_class = lambda adj: Parser(adj, addr)

        def handle_close(self) -> None:
            # a body cut off mid-way: its spool goes now, not at garbage collection
            partial = self.request
            try:
                super().handle_close()
            finally:
                if partial is not None:
                    partial.close()

    return Channel
