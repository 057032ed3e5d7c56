"""The central site's fleet health page: per station last seen, backlog, archive, clock, alarms."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, current_app, render_template

from web.auth import require
from web.handles import get_index, site_config

log = logging.getLogger(__name__)
bp = Blueprint("fleet_health", __name__)

CLOCK_OFFSET_ALARM_S = 2.0  # a station clock further off than this stamps wrong times on clips


@dataclass(frozen=True)
class FleetRow:
    """One enrolment (a station's key) as the central index and its last health report see it."""

    name: str
    retired: bool
    age_s: float | None  # since the last report (health or hello); None: never heard from
    silent: bool
    state: str  # as reported: idle | recording | suspended | stopped (unknown words: stopped)
    backlog_clips: int | None
    backlog_bytes: int | None
    last_archived_utc: str | None
    archived_bytes: int
    n_archived: int
    n_clips: int
    clock_offset_s: float | None  # station's clock minus the central server's receive time
    disk_free_bytes: int | None
    alarms: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail)


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _parse_utc(v: Any) -> datetime | None:
    if not isinstance(v, str):
        return None
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def sync_problem(health: dict[str, Any]) -> str | None:
    """What the station's last round of central sync could not do (``sync_failed`` in its
    health report: step -> why, e.g. the witness refusing its checkpoints), or None."""
    failed = health.get("sync_failed")
    if not isinstance(failed, dict) or not failed:
        return None
    return " · ".join(f"{step}: {why}" for step, why in failed.items())[:600]


def fleet_rows(
    rows: list[dict[str, Any]],
    now: datetime,
    *,
    stale_after_s: float,
    disk_free_min_bytes: int,
    backlog_max_clips: int,
) -> list[FleetRow]:
    """Pure: the page's rows from ``CentralDB.fleet_health()`` rows (alarms decided here)."""
    out = []
    for r in rows:
        health = r.get("health")
        h: dict[str, Any] = health if isinstance(health, dict) else {}
        seen = r.get("health_utc") or r.get("last_seen_utc")
        age = (now - seen).total_seconds() if seen is not None else None
        retired = r.get("retired_utc") is not None
        silent = age is None or age > stale_after_s
        state = h["state"] if h.get("state") in {"idle", "recording", "suspended"} else "stopped"
        sent = _parse_utc(h.get("sent_utc"))
        received = r.get("health_utc")
        offset = (sent - received).total_seconds() if sent and received else None
        backlog = _int(h.get("archive_backlog"))
        disk = _int(h.get("disk_free_bytes"))
        alarms: list[tuple[str, str]] = []
        if not retired:
            if silent:
                alarms.append(("silent", ""))
            if h.get("last_error"):
                alarms.append(("error", str(h["last_error"])[:300]))
            if problem := sync_problem(h):
                alarms.append(("sync", problem))
            if disk is not None and disk < disk_free_min_bytes:
                alarms.append(("disk-low", ""))
            if backlog is not None and backlog >= backlog_max_clips:
                alarms.append(("backlog", ""))
            if h.get("clock_synced") is False:
                alarms.append(("clock", ""))
            elif offset is not None and abs(offset) > CLOCK_OFFSET_ALARM_S:
                alarms.append(("clock-offset", ""))
        for a in r.get("witness_alarms") or []:  # kept on retired keys too: evidence
            alarms.append((str(a.get("kind")), str(a.get("detail", ""))[:300]))
        out.append(
            FleetRow(
                name=str(r["name"]),
                retired=retired,
                age_s=None if age is None else round(age, 1),
                silent=silent,
                state=state,
                backlog_clips=backlog,
                backlog_bytes=_int(h.get("archive_backlog_bytes")),
                last_archived_utc=r.get("last_archived_utc"),
                archived_bytes=int(r.get("archived_bytes") or 0),
                n_archived=int(r.get("n_archived") or 0),
                n_clips=int(r.get("n_clips") or 0),
                clock_offset_s=None if offset is None else round(offset, 1),
                disk_free_bytes=disk,
                alarms=alarms,
            )
        )
    return out


@bp.get("/fleet")
@require("operator")
def page() -> str:
    if not current_app.config.get("PACKCAM_CENTRAL"):
        abort(404)  # a station's own site has its live page instead
    cfg = site_config()
    rows = fleet_rows(
        get_index().fleet_health(),
        datetime.now(UTC),
        stale_after_s=current_app.config["STALE_AFTER_S"],
        disk_free_min_bytes=cfg.alerts.disk_free_mb * 1024 * 1024,
        backlog_max_clips=cfg.alerts.backlog_clips,
    )
    active = [r for r in rows if not r.retired]
    return render_template(
        "fleet.html",
        active=active,
        retired=[r for r in rows if r.retired],
        archived_bytes=sum(r.archived_bytes for r in rows),
        alarmed=sum(1 for r in active if r.alarms),
    )
