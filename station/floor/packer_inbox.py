"""Packer sign-in on the station screen: requests the web site leaves in the data dir."""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Sequence
from pathlib import Path

from station.capture.codes import safe_component
from station.capture.frames import InputEvent, PackerPick
from station.store.files import SpoolFileError, spool_json, take_spool_file

log = logging.getLogger(__name__)

INBOX_DIR = "packer-requests"  # the web (group packcam) writes here; the station reads
SUFFIX = ".json"
MAX_BYTES = 1024
MAX_PENDING = 16  # requests the web may leave waiting
MAX_AGE_S = 60.0  # a pick older than this (the station was down) is dropped, not applied
POLL_S = 0.1  # how often the capture loop looks at the folder: well inside the screen's 300 ms


class PackerRequestError(ValueError):
    """A request file the station refuses (not a small regular file of the expected JSON)."""


def inbox_dir(data_dir: Path) -> Path:
    return data_dir / INBOX_DIR


def request_body(station: str, packer: str | None, at: float) -> bytes:
    """A sign-in (``packer``) or sign-out (None) request for ``station``."""
    doc = {"station": station, "packer": packer, "at": at}
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def parse_request(raw: bytes, station: str, packers: Sequence[str], now: float) -> str | None:
    """The packer a request signs in (None: sign-out); PackerRequestError saying why not.
    Pure. Only a name in ``[screen] packers`` is accepted: the station trusts its own config,
    not whoever could write into the folder."""
    doc = spool_json(raw, MAX_BYTES, ("station", "packer", "at"), PackerRequestError)
    if doc["station"] != station:
        raise PackerRequestError(f"for station {str(doc['station'])[:40]!r}, not this one")
    at = doc["at"]
    if not isinstance(at, int | float) or abs(now - at) > MAX_AGE_S:
        raise PackerRequestError("stale: made more than a minute ago (or in the future)")
    packer: str | None = doc["packer"]
    if packer is not None and packer not in packers:
        raise PackerRequestError(f"{str(packer)[:64]!r} is not in [screen] packers")
    return packer


def write_request(data_dir: Path, station: str, packer: str | None) -> Path:
    """Leave a request for the station (the web site's side): written aside, then renamed
    in, so the station never reads half a file. OSError when the folder is missing or full
    (the station is not running, or not reading)."""
    d = inbox_dir(data_dir)
    pending = [p for p in d.iterdir() if p.suffix == SUFFIX]
    if len(pending) >= MAX_PENDING:
        raise OSError(errno.EBUSY, f"{len(pending)} sign-in requests already wait")
    name = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
    tmp = d / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o660)
    final = d / f"{name}{SUFFIX}"
    try:
        try:
            body = request_body(station, packer, time.time())
            if os.write(fd, body) != len(body):  # a full disk may take only part of it
                raise OSError(errno.ENOSPC, "the request was written only in part")
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-made request behind
        raise
    return final


class ScreenSignIn:
    """A scan source: the packers picked (or signed out) on the station screen.

    The web site runs as another user, so it never talks to this process: it leaves a
    request file in ``<data>/packer-requests/`` (group-writable, like the evidence bundles'
    requests) and ``poll`` — on the capture thread, at most every ``POLL_S`` — reads and
    removes them, oldest first, as ``PackerPick`` events the runner hands to the session
    exactly like a badge. A bad, stale or foreign request is logged and dropped.
    """

    def __init__(self, data_dir: Path, station: str, packers: Sequence[str]) -> None:
        self.dir = inbox_dir(data_dir)
        self.station = safe_component(station, 32)
        self.packers = tuple(packers)
        self._next = 0.0

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        st = self.dir.stat()
        want = 0o770 | (st.st_mode & stat.S_ISGID)  # the web writes; keep the setgid group
        if stat.S_IMODE(st.st_mode) != want:
            self.dir.chmod(want)
        for old in self.dir.iterdir():  # picks made while the station was down are void
            if old.is_file() or old.is_symlink():
                old.unlink(missing_ok=True)

    def poll(self, now: float) -> list[InputEvent]:
        mono = time.monotonic()
        if mono < self._next:
            return []
        self._next = mono + POLL_S
        try:
            names = sorted(p for p in os.listdir(self.dir) if p.endswith(SUFFIX))
        except OSError as exc:
            log.warning("screen sign-in: cannot list %s: %s", self.dir, exc)
            return []
        out: list[InputEvent] = []
        for name in names[:MAX_PENDING]:
            try:
                raw = take_spool_file(self.dir / name, MAX_BYTES)  # and removed
                packer = parse_request(raw, self.station, self.packers, time.time())
            except (SpoolFileError, PackerRequestError) as exc:
                log.warning("screen sign-in: request %s refused: %s", name[:40], exc)
                continue
            out.append(PackerPick(packer, now))
        return out

    def stop(self) -> None:
        pass


__all__ = [
    "INBOX_DIR",
    "PackerRequestError",
    "ScreenSignIn",
    "inbox_dir",
    "parse_request",
    "request_body",
    "write_request",
]
