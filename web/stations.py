"""Reads the stations' live status files (<data_dir>/live/<station>.json and .jpg)."""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_~-]{1,80}$")
MAX_STATUS_BYTES = 64 * 1024
UNREADABLE = "status file unreadable"  # last_error in /api/stations (pages translate it)


class FileWarnings:
    """What a site last warned of each file it reads on every page (stations' status files,
    their start-up self-checks), so a file that stays unreadable is one WARNING, then DEBUG.

    Pages poll every 2 s (each open dashboard): without it, a file that stays unreadable would
    log the same warning 1800 times an hour per page, filling a Pi's log. One per site
    (``create_app`` makes it, ``web.handles.file_warnings`` finds it): two sites in one
    process each warn. Any server thread may call it.
    """

    MAX_FILES = 1024  # a flood of ever-new names is forgotten, not kept

    def __init__(self) -> None:
        self._said: dict[str, str] = {}
        self._lock = threading.Lock()

    def warn(self, logger: logging.Logger, path: Path, message: str) -> None:
        """Log ``message`` about ``path`` as a WARNING the first time, at DEBUG while it stays
        the same; ``read_again`` forgets it, so a file that breaks again is warned of again."""
        key = str(path)
        with self._lock:
            again = self._said.get(key) == message
            if not again:
                if len(self._said) >= self.MAX_FILES:
                    self._said.clear()
                self._said[key] = message
        if again:
            logger.debug("%s", message)
        else:
            logger.warning("%s", message)

    def read_again(self, path: Path) -> None:
        """``path`` was read fine: its next failure is warned of."""
        with self._lock:
            self._said.pop(str(path), None)


@dataclass(frozen=True)
class StationStatus:
    """One station as its last status file describes it. ``silent``: it stopped reporting."""

    key: str
    station: str
    state: str
    order_id: str | None = None
    waybills: list[str] = field(default_factory=list)
    elapsed_s: float | None = None
    frames: int = 0
    fps: float = 0.0
    dropped: int = 0
    last_error: str | None = None
    alarm: str | None = None  # the station's most important active alarm (e.g. disk full)
    updated_utc: str | None = None
    age_s: float | None = None
    silent: bool = True
    disk_free_bytes: int | None = None
    clock_synced: bool | None = None
    has_frame: bool = False
    # central mode (the fleet's registry): last clip and clips not yet archived
    last_clip_utc: str | None = None
    archive_backlog: int | None = None
    sync_problem: str | None = None  # what its last central sync round could not do, and why
    packer: str | None = None  # the packer signed in at the station now (issue 13)
    # its status file could not be read: pages say so in the reader's language, the reason
    # (an OS error naming the server's path) goes to the site's log only
    unreadable: bool = False

    @property
    def shown_state(self) -> str:
        return "silent" if self.silent else self.state

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["shown_state"] = self.shown_state
        return d


def live_files(live_dir: Path) -> dict[str, Path]:
    """Station key -> status file. Keys come from the directory listing, never from a request."""
    found: dict[str, Path] = {}
    try:
        entries = sorted(live_dir.glob("*.json"))
    except OSError:
        return found
    for p in entries:
        if p.stem.startswith(".") or not _KEY.match(p.stem) or not p.is_file():
            continue
        found[p.stem] = p
    return found


def _num(v: Any, tp: type, default: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return default
    return tp(v)


def _str(v: Any, limit: int = 200) -> str | None:
    return v[:limit] if isinstance(v, str) else None


def parse_status(
    key: str,
    path: Path,
    stale_after_s: float,
    warnings: FileWarnings,
    now: datetime | None = None,
) -> StationStatus:
    """Parse one status file defensively: wrong types become defaults, never exceptions; an
    unreadable one is logged through ``warnings`` (the site's)."""
    now = now or datetime.now(UTC)
    has_frame = path.with_suffix(".jpg").is_file()
    try:
        if path.stat().st_size > MAX_STATUS_BYTES:
            raise ValueError("status file too large")
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError("status is not an object")
    except (OSError, ValueError) as exc:
        warnings.warn(log, path, f"station {key}: its status file {path} is unreadable: {exc}")
        return StationStatus(key, key, "stopped", last_error=UNREADABLE, unreadable=True)
    warnings.read_again(path)
    updated = _str(doc.get("updated_utc"), 40)
    age = None
    if updated:
        try:
            when = datetime.fromisoformat(updated.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            age = (now - when).total_seconds()
        except ValueError:
            age = None
    state = _str(doc.get("state"), 20) or "stopped"
    if state not in {"idle", "recording", "suspended", "stopped"}:
        state = "stopped"
    wbs = doc.get("waybills")
    return StationStatus(
        key=key,
        station=_str(doc.get("station"), 64) or key,
        state=state,
        order_id=_str(doc.get("order_id"), 128),
        waybills=[w[:64] for w in wbs if isinstance(w, str)][:10] if isinstance(wbs, list) else [],
        elapsed_s=_num(doc.get("elapsed_s"), float, None),
        frames=_num(doc.get("frames"), int, 0),
        fps=_num(doc.get("fps"), float, 0.0),
        dropped=_num(doc.get("dropped"), int, 0),
        last_error=_str(doc.get("last_error"), 300),
        alarm=_str(doc.get("alarm"), 300),
        updated_utc=updated,
        age_s=None if age is None else round(age, 1),
        silent=age is None or age > stale_after_s,
        disk_free_bytes=_num(doc.get("disk_free_bytes"), int, None),
        clock_synced=doc.get("clock_synced") if isinstance(doc.get("clock_synced"), bool) else None,
        has_frame=has_frame,
        packer=_str(doc.get("packer"), 64),
    )


def read_stations(
    live_dir: Path, stale_after_s: float, warnings: FileWarnings
) -> list[StationStatus]:
    """Every station's status file in ``live_dir``, parsed (``parse_status``)."""
    now = datetime.now(UTC)
    return [
        parse_status(k, p, stale_after_s, warnings, now) for k, p in live_files(live_dir).items()
    ]
