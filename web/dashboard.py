"""The lead's dashboard: clips today per station and hour, disk and days left, errors, silence."""

from __future__ import annotations

import json
import logging
import shutil
import statistics
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, render_template

from web.auth import require
from web.formatting import day_bounds_utc, site_tz, utc_index
from web.handles import file_warnings, get_index, site_config
from web.stations import FileWarnings, read_stations

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__)

RATE_WINDOW_DAYS = 7
PACKER_DAYS = 7


def packer_stats(
    rows: Iterable[tuple[str, str, float]], tz: tzinfo | None, days: list[date]
) -> dict[str, list[tuple[int, float | None]]]:
    """Per packer, per local day in ``days``: (orders packed, median packing seconds or None).

    Pure: ``rows`` are (packer, started_at with offset, duration_s) of packing clips."""
    durations: dict[str, dict[date, list[float]]] = {}
    for packer, started_at, duration_s in rows:
        day = datetime.fromisoformat(started_at).astimezone(tz).date()
        durations.setdefault(packer, {}).setdefault(day, []).append(duration_s)
    return {
        packer: [
            (len(per_day.get(d, [])), statistics.median(per_day[d]) if per_day.get(d) else None)
            for d in days
        ]
        for packer, per_day in sorted(durations.items())
    }


def packer_table(
    rows: Iterable[tuple[str, str, int, float]], days: list[date]
) -> dict[str, list[tuple[int, float | None]]]:
    """``packer_stats``'s shape from per-day rows computed by the database (the central
    index: (packer, local day "YYYY-MM-DD", orders, median seconds)). Pure."""
    cells: dict[str, dict[str, tuple[int, float | None]]] = {}
    for packer, day, n, median in rows:
        cells.setdefault(packer, {})[day] = (n, median)
    return {
        packer: [per_day.get(d.isoformat(), (0, None)) for d in days]
        for packer, per_day in sorted(cells.items())
    }


def pg_zone(tz: tzinfo, now: datetime) -> str:
    """The site's zone as PostgreSQL reads it: the IANA name, else the fixed UTC offset."""
    key = getattr(tz, "key", None)
    if isinstance(key, str) and key:
        return key
    off = now.astimezone(tz).strftime("%z") or "+0000"
    return f"{off[:3]}:{off[3:]}"


def read_selfchecks(live_dir: Path, warnings: FileWarnings) -> list[dict[str, Any]]:
    """Each station's last start-up self-check (``packcam doctor``), its WARN/FAIL lines only;
    a torn one is skipped, logged through ``warnings`` (the site's)."""
    out = []
    for path in sorted((live_dir / "doctor").glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            checks = [c for c in doc["checks"] if c.get("status") in {"WARN", "FAIL"}]
            out.append({
                "station": str(doc["station"]),
                "time": str(doc["time"]),
                "failed": any(c["status"] == "FAIL" for c in checks),
                "problems": [
                    {k: str(c.get(k, "")) for k in ("status", "name", "message", "fix")}
                    for c in checks
                ],
            })  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(log, path, f"dashboard: unreadable self-check {path.name}: {exc}")
            continue
        warnings.read_again(path)
    return out


def summary() -> dict[str, Any]:
    """Everything the dashboard shows (also served by /api/stations)."""
    cfg = site_config()
    tz = site_tz(cfg)
    index = get_index()
    now = datetime.now(tz)
    start, end = day_bounds_utc(now.date(), tz)
    today = index.started_between(start, end)
    per_station: Counter[str] = Counter()
    per_hour: dict[str, list[int]] = {}
    for station, started_at, _size in today:
        per_station[station] += 1
        hour = datetime.fromisoformat(started_at).astimezone(tz).hour
        per_hour.setdefault(station, [0] * 24)[hour] += 1

    # Days of footage left: free space over the recent recording rate.
    window_start = now - timedelta(days=RATE_WINDOW_DAYS)
    recent = index.started_between(utc_index(window_start), utc_index(now + timedelta(hours=1)))
    recent_bytes = sum(size for _s, _t, size in recent)
    first = index.first_clip_utc()
    span_days: float = RATE_WINDOW_DAYS
    if first:
        first_dt = datetime.fromisoformat(first.replace("Z", "+00:00"))
        span_days = min(RATE_WINDOW_DAYS, max((now - first_dt).total_seconds() / 86400, 1 / 24))
    bytes_per_day = recent_bytes / span_days if recent_bytes else 0.0
    data_dir = current_app.config["DATA_DIR"]
    usage = shutil.disk_usage(data_dir)
    days_left = usage.free / bytes_per_day if bytes_per_day > 0 else None

    if current_app.config.get("PACKCAM_CENTRAL"):  # every station's health, as it reported
        stations = index.station_statuses(current_app.config["STALE_AFTER_S"])
    else:
        stations = read_stations(
            current_app.config["LIVE_DIR"], current_app.config["STALE_AFTER_S"], file_warnings()
        )
    max_hour = max((max(v) for v in per_hour.values()), default=0)

    # Orders and median packing time per packer per day, over the last PACKER_DAYS days.
    days = [now.date() - timedelta(days=n) for n in range(PACKER_DAYS - 1, -1, -1)]
    first_start = day_bounds_utc(days[0], tz)[0]
    if current_app.config.get("PACKCAM_CENTRAL"):  # counted and medians by PostgreSQL
        rows = index.packer_days(first_start, end, pg_zone(tz, now))
        packers = packer_table(rows, days)
    else:
        packers = packer_stats(index.packer_clips(first_start, end), tz, days)
    return {
        "now": now,
        "today": now.date().isoformat(),
        "per_station": dict(sorted(per_station.items())),
        "per_hour": dict(sorted(per_hour.items())),
        "max_hour": max_hour,
        "total_today": sum(per_station.values()),
        "disk_free": usage.free,
        "disk_total": usage.total,
        "bytes_per_day": bytes_per_day,
        "days_left": days_left,
        "stations": stations,
        "silent": [s for s in stations if s.silent],
        "errors": [s for s in stations if s.last_error],
        "unsynced": [s for s in stations if s.clock_synced is False],
        "rejections": index.recent_rejections(10),
        "selfcheck": []
        if current_app.config.get("PACKCAM_CENTRAL")
        else read_selfchecks(current_app.config["LIVE_DIR"], file_warnings()),
        "packer_days": [d.isoformat() for d in days],
        "packers": packers,
        "generated_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@bp.get("/dashboard")
@require("operator")
def index() -> str:
    return render_template("dashboard.html", s=summary())
