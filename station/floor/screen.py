"""The station screen's state (<data>/screen/<station>.json), rewritten on every station event."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from station.capture.codes import safe_component
from station.floor.events import EventKind, StationEvent
from station.store.files import remove_stale_temps

log = logging.getLogger(__name__)

RECENT = 5
HASH_PREFIX = 12


class ScreenState:
    """What the station screen shows, folded from events; pure apart from the clock.

    ``state``: idle | recording | sealed | error | stopped. A clip sealed after the next order
    has started (the finisher runs behind the capture loop) updates "last clip" and the recent
    list but leaves the new order on screen.
    """

    def __init__(self, station: str) -> None:
        self.station = station
        self.state = "idle"
        self.order_id: str | None = None
        self.started_at: str | None = None
        self.started_mono: float | None = None
        self.waybills: list[str] = []
        self.items: list[dict[str, str]] | None = None
        self.items_error: str | None = None
        self.last_clip: dict[str, Any] | None = None
        self.notice: dict[str, Any] | None = None
        self.packer: str | None = None  # the open clip's packer (issue 13)
        self.kind = "order"  # the open clip's kind: order | return
        self.alarms: dict[str, str] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.seq = 0

    def apply(self, ev: StationEvent) -> bool:
        """Fold one event in; True when the screen changes."""
        k, d = ev.kind, ev.data
        if k is EventKind.ORDER_STARTED:
            self.state, self.order_id = "recording", ev.order_id
            self.started_at = ev.at.isoformat(timespec="milliseconds")
            self.started_mono = time.monotonic()
            # A clip started when the camera came back names the waybills scanned in the dark.
            self.waybills = [str(w) for w in d.get("waybills", ())]
            self.items, self.items_error, self.notice = None, None, None
            self.packer, self.kind = d.get("packer"), d.get("clip_kind") or "order"
        elif (
            k is EventKind.WAYBILL_LINKED
            and ev.order_id == self.order_id
            and d.get("linked_to") != "order"  # kept for a clip to come: in none yet
        ):
            self.waybills.append(str(d.get("waybill", "")))
        elif k is EventKind.ORDER_ITEMS and ev.order_id == self.order_id:
            self.items = list(d.get("items", [])) if "items" in d else None
            self.items_error = d.get("error")
        elif k in (EventKind.CLIP_SEALED, EventKind.CLIP_FAILED):
            ok = k is EventKind.CLIP_SEALED
            sha = str(d.get("sha256") or "")
            clip = {
                "order_id": ev.order_id,
                "ok": ok,
                "sha256_prefix": sha[:HASH_PREFIX],
                "duration_s": d.get("duration_s"),
                "reason": d.get("finish_reason"),
                "error": d.get("error"),
                "at": ev.at.isoformat(timespec="seconds"),
            }
            self.last_clip = clip
            self.recent.appendleft(clip)
            if ev.order_id == self.order_id or self.state != "recording":
                self.state = "sealed" if ok else "error"
                self.order_id, self.started_at, self.started_mono = None, None, None
                self.waybills = []
        elif k in (
            EventKind.SCAN_REFUSED,
            EventKind.SCAN_UNREADABLE,
            EventKind.DUPLICATE_ORDER,
            EventKind.WAYBILL_UNLINKED,
        ):
            self.notice = {
                "kind": k.value,
                "order_id": ev.order_id,
                "why": d.get("why"),
                "at": ev.at.isoformat(timespec="seconds"),
            }
            if k is EventKind.SCAN_REFUSED and self.state != "recording":
                self.state = "error"
        elif k is EventKind.PACKER_CHANGED:
            self.packer = d.get("packer")  # who is signed in now (the open clip keeps its own)
        elif k is EventKind.ALARM_RAISED:
            self.alarms[str(d.get("alarm"))] = str(d.get("message", ""))
        elif k is EventKind.ALARM_CLEARED:
            if self.alarms.pop(str(d.get("alarm")), None) is None:
                return False
        else:
            return False
        self.seq += 1
        return True

    def to_json(self) -> dict[str, Any]:
        elapsed = None
        if self.started_mono is not None:
            elapsed = round(time.monotonic() - self.started_mono, 2)
        return {
            "station": self.station,
            "seq": self.seq,
            "state": self.state,
            "order_id": self.order_id,
            "started_at": self.started_at,
            "elapsed_s": elapsed,
            "waybills": self.waybills,
            "packer": self.packer,
            "kind": self.kind,
            "items": self.items,
            "items_error": self.items_error,
            "last_clip": self.last_clip,
            "notice": self.notice,
            "alarms": [{"kind": k, "message": m} for k, m in self.alarms.items()],
            "recent": list(self.recent),
            "updated_utc": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }


def screen_path(data_dir: Path, station: str) -> Path:
    return data_dir / "screen" / f"{safe_component(station, 32)}.json"


class ScreenFeed:
    """An event listener keeping ``<data>/screen/<station>.json`` up to date for the web site.

    ``on_event`` folds the event in under a lock and wakes the writer thread ("screen"), which
    replaces the file atomically (no fsync: it is a display, rewritten on the next event).
    ``close`` writes the state "stopped". Write errors are logged once a minute, never raised.
    """

    def __init__(self, data_dir: Path, station: str) -> None:
        self.path = screen_path(data_dir, station)
        if self.path.parent.is_dir():
            remove_stale_temps(self.path, "tmp")  # a station killed mid-write
        self.state = ScreenState(station)
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = False
        self._next_error_log = 0.0
        self._dirty.set()  # the idle screen at once
        self._thread = threading.Thread(target=self._loop, name="screen", daemon=True)
        self._thread.start()

    def on_event(self, event: StationEvent) -> None:
        with self._lock:
            changed = self.state.apply(event)
        if changed:
            self._dirty.set()

    def _loop(self) -> None:
        while True:
            self._dirty.wait()
            self._dirty.clear()
            self.write()
            if self._stop:
                return

    def write(self) -> None:
        with self._lock:
            doc = self.state.to_json()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            try:
                tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError:
                tmp.unlink(missing_ok=True)  # a full disk: no half-written temp file stays
                raise
        except OSError as exc:
            now = time.monotonic()
            if now >= self._next_error_log:
                self._next_error_log = now + 60
                log.warning("station screen update failed: %s", exc)

    def close(self) -> None:
        with self._lock:
            self.state.state = "stopped"
            self.state.seq += 1
        self._stop = True
        self._dirty.set()
        self._thread.join(timeout=5)
        self.write()  # the last state, whatever the thread had written when it saw _stop


__all__ = ["ScreenFeed", "ScreenState", "screen_path"]
