"""The zone times are shown in: ``station.timezone``, else the machine's own IANA zone."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from station.config import Config

log = logging.getLogger(__name__)

LOCALTIME = Path("/etc/localtime")  # Debian: a symlink into /usr/share/zoneinfo


def station_tz(cfg: Config) -> ZoneInfo | None:
    """The configured zone, or None for the machine's: ``datetime.astimezone(None)`` asks the
    C library, which applies the offset of the instant converted (the station's times)."""
    return ZoneInfo(cfg.station.timezone) if cfg.station.timezone else None


def machine_zone(environ: Mapping[str, str] = os.environ, localtime: Path = LOCALTIME) -> tzinfo:
    """The machine's zone as the C library reads it: $TZ if set, else /etc/localtime. Only
    when neither names a zone (a POSIX rule in $TZ) the current fixed offset, which is an hour
    off for instants across a daylight-saving change (logged once)."""
    tz = environ.get("TZ")
    try:
        link = None if tz is not None else os.readlink(localtime)
    except OSError:  # not a symlink, or no file (then the C library says UTC)
        link = None
    zone = _named_zone(tz, str(localtime), link)
    if zone is not None:
        return zone
    now = datetime.now().astimezone().tzinfo
    return now if now is not None else UTC


@functools.cache  # per $TZ and link: a zone is looked up and a fallback logged once
def _named_zone(tz: str | None, localtime: str, link: str | None) -> tzinfo | None:
    try:
        if tz is None:
            if link is None and not os.path.exists(localtime):
                return UTC  # as glibc reads a machine with no zone set
            return _zone_file(link or localtime, localtime)
        key = tz.removeprefix(":")  # glibc reads ":Europe/Berlin" and ":/path/to/zonefile"
        if not key:
            return UTC  # as glibc reads TZ=""
        return _zone_file(key, key) if key.startswith("/") else ZoneInfo(key)
    except (OSError, ValueError, ZoneInfoNotFoundError) as exc:
        log.warning(
            "no IANA time zone found (TZ=%r, %s -> %r: %s); the sites show times with the "
            "current UTC offset, an hour off across a daylight-saving change: set "
            "station.timezone",
            tz, localtime, link, exc,
        )  # fmt: skip
        return None


def _zone_file(name: str, path: str) -> ZoneInfo:
    """The zone in file ``path``: by its IANA name when ``name`` is in a zoneinfo/ folder
    (PostgreSQL reads the name: web/dashboard.py pg_zone), else by the file's rules."""
    _, found, key = name.partition("zoneinfo/")
    if found:
        try:
            return ZoneInfo(key)
        except (ValueError, ZoneInfoNotFoundError):
            pass  # a zone Python's zone path does not have: read the file itself
    with open(path, "rb") as f:
        return ZoneInfo.from_file(f)
