"""Station events (order started, waybill linked, clip sealed, ...) and the listener hook."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger(__name__)


class EventKind(StrEnum):
    ORDER_STARTED = "order-started"
    WAYBILL_LINKED = "waybill-linked"
    WAYBILL_UNLINKED = "waybill-unlinked"  # a late read's link to its signed clip landed nowhere
    ORDER_ITEMS = "order-items"  # the order lookup's answer (items, or an error)
    CLIP_SEALED = "clip-sealed"  # the clip is finished, hashed and indexed
    CLIP_FAILED = "clip-failed"  # the clip ended with an error (salvaged or left to recovery)
    CLIP_ARCHIVED = "clip-archived"
    SCAN_REFUSED = "scan-refused"  # a readable code the station will not act on (disk full ...)
    SCAN_UNREADABLE = "scan-unreadable"  # a garbled read that cannot be a code
    DUPLICATE_ORDER = "duplicate-order"
    PACKER_CHANGED = "packer-changed"  # a badge signed a packer in, or a card signed out (None)
    ALARM_RAISED = "alarm-raised"
    ALARM_CLEARED = "alarm-cleared"


@dataclass(frozen=True)
class StationEvent:
    """One thing that happened at the station. ``t`` is the camera timeline (monotonic for a
    live station; the scan's own time where there is one), ``at`` the wall clock (UTC)."""

    kind: EventKind
    station: str
    t: float
    order_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "station": self.station,
            "order_id": self.order_id,
            "at": self.at.isoformat(timespec="milliseconds"),
            "data": dict(self.data),
        }


class EventListener(Protocol):
    """Hears every station event. Called on the thread that emits (often the capture thread):
    it must return at once (hand the work to its own thread) and should not raise."""

    def on_event(self, event: StationEvent) -> None: ...


class StationEvents:
    """The one hook the station calls: fans each event out to its listeners.

    ``emit`` is thread-safe and never raises: a listener that fails is logged and the others
    still hear the event (a broken speaker must not stop a recording). ``close`` closes the
    listeners that have a ``close`` (drains their threads).
    """

    def __init__(self, station: str, listeners: Iterable[EventListener] = ()) -> None:
        self.station = station
        self._listeners = list(listeners)
        self._lock = threading.Lock()

    def add(self, listener: EventListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    @property
    def listeners(self) -> tuple[EventListener, ...]:
        with self._lock:
            return tuple(self._listeners)

    def emit(
        self, kind: EventKind, t: float, order_id: str | None = None, **data: Any
    ) -> StationEvent:
        event = StationEvent(EventKind(kind), self.station, t, order_id, data)
        for listener in self.listeners:
            try:
                listener.on_event(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, event.kind)
        return event

    def close(self) -> None:
        for listener in self.listeners:
            close = getattr(listener, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing event listener %r failed", listener)


class EventRecorder:
    """A listener that keeps every event in memory (tests, the demo's summary)."""

    def __init__(self) -> None:
        self.events: list[StationEvent] = []
        self._lock = threading.Lock()

    def on_event(self, event: StationEvent) -> None:
        with self._lock:
            self.events.append(event)

    def kinds(self) -> list[EventKind]:
        with self._lock:
            return [e.kind for e in self.events]


__all__ = ["EventKind", "EventListener", "EventRecorder", "StationEvent", "StationEvents"]
