"""Template filters and time helpers: times with their UTC offset, durations, sizes."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from flask import Flask

from station.config import Config
from station.proof.standalone_verify import as_characters
from station.runtime.localzone import machine_zone, station_tz
from web.handles import site_config


def site_tz(config: Config) -> tzinfo:
    """The station's configured zone, else the machine's IANA zone (station/runtime/localzone.py):
    every instant, either side of a daylight-saving change, with the offset it had."""
    configured = station_tz(config)
    return configured if configured is not None else machine_zone()


def utc_index(dt: datetime) -> str:
    """A datetime in the index's ``started_utc`` format (sortable text)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Days a search or an export may be bounded by: a date field accepts 0001-01-01 and
# 9999-12-31, whose bounds in a zone east (west) of UTC, and the day after 9999-12-31, are
# outside Python's calendar, and a year below 1000 would not compare with the index's times.
# No clip is older or newer, so a day outside is the nearest of these.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9998, 12, 31)


def day_bounds_utc(day: date, tz: tzinfo) -> tuple[str, str]:
    """The start of ``day`` and of the next, in ``tz``, as the index writes UTC times (a day
    before FIRST_DAY or after LAST_DAY is taken as that one)."""
    day = min(max(day, FIRST_DAY), LAST_DAY)
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return utc_index(start), utc_index(end)


def parse_day(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None


def fmt_dt(value: datetime | str | None, tz: tzinfo | None = None) -> str:
    """``2026-11-30 09:00:03 +08:00``: local time as recorded, with its offset; with ``tz``,
    the same moment in that zone (a time the site keeps in UTC, shown in the site's zone)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        value = parsed
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if tz is not None:
        value = value.astimezone(tz)
    off = value.strftime("%z")
    return value.strftime("%Y-%m-%d %H:%M:%S ") + (f"{off[:3]}:{off[3:]}" if off else "UTC")


def fmt_duration(seconds: float | None, precise: bool = False) -> str:
    """``0:42`` or ``1:02:03``, cut, not rounded, as video players show it: a 15.6 s clip
    reads 0:15 on the page and in the player alike. ``precise``: one decimal under ten
    seconds (a moment in a clip, e.g. a key frame at 0:03.5)."""
    if seconds is None:
        return ""
    s = max(0.0, float(seconds))
    if precise and s < 10:
        return f"0:{math.floor(s * 10) / 10:04.1f}"
    whole = math.floor(s)
    h, rem = divmod(whole, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def fmt_size(n: int | float | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def fmt_site_dt(value: datetime | str | None) -> str:
    """A time the site keeps in UTC (a link's expiry, a deletion, a log entry) in the site's
    zone with its offset, like the recorded times beside it: never a bare UTC time."""
    return fmt_dt(value, site_tz(site_config()))


def visible(value: object) -> str:
    """Text as its characters, not as a browser draws them: a control, format (bidi override,
    zero width) or unassigned character is shown as its escape (``\\u202e``), so a signed
    "\\u202e1A-RO" is not read as "OR-A1". Other Unicode (Chinese order IDs) is kept."""
    return as_characters("" if value is None else str(value))


def register(app: Flask) -> None:
    # dt: a clip's times as recorded (the offset burned into its frames); site_dt: the rest
    app.add_template_filter(fmt_dt, "dt")
    app.add_template_filter(fmt_site_dt, "site_dt")
    app.add_template_filter(fmt_duration, "dur")
    app.add_template_filter(fmt_size, "size")
    app.add_template_filter(visible, "visible")
