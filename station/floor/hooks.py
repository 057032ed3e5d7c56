"""Builds the station's event listeners (sounds, webhooks, screen feed) from its config."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from station.backends import build_feedback
from station.config import Config
from station.fleet.duplicates import build_duplicates
from station.floor.events import EventKind, EventListener, StationEvents
from station.floor.lookup import build_lookup
from station.floor.screen import ScreenFeed
from station.floor.webhooks import build_webhooks
from station.recording.recorder import FinishedClip, Recorder
from station.store.ledger import ClipRecord

log = logging.getLogger(__name__)


def build_events(
    cfg: Config, listeners: Iterable[EventListener] = (), *, live: bool = True
) -> StationEvents:
    """The one ``StationEvents`` a station emits into, with every listener its config asks for
    (plus ``listeners``, e.g. a test's recorder); no sounds unless the camera is ``live`` (a
    replayed video would beep in a flurry). Raises ConfigError for a feedback or webhook setup
    that cannot work (no aplay, no espeak-ng for a voice), at start-up."""

    events = StationEvents(cfg.station.name, listeners)
    feedback = build_feedback(cfg) if live else None
    if feedback is not None:
        events.add(feedback)
    events.add(ScreenFeed(cfg.station.data_dir, cfg.station.name))
    webhooks = build_webhooks(cfg)
    if webhooks is not None:
        events.add(webhooks)
    return events


def attach_recorder(events: StationEvents, cfg: Config, recorder: Recorder) -> None:
    """Listeners that write into the open clip's manifest: the order lookup ([lookup]) and
    the fleet duplicate check ([central] duplicate_check)."""

    lookup = build_lookup(cfg, events, recorder.annotate)
    if lookup is not None:
        events.add(lookup)
    duplicates = build_duplicates(cfg, events, recorder.annotate, recorder.ledger)
    if duplicates is not None:
        events.add(duplicates)


def clip_finished(events: StationEvents, result: FinishedClip, t: float) -> None:
    """CLIP_SEALED for a clip finished, hashed and indexed; CLIP_FAILED when it is not."""
    if result.empty:
        return
    rec = result.record
    if result.error is None and rec is not None:
        events.emit(EventKind.CLIP_SEALED, t, result.order_id, **clip_data(rec))
    else:
        data = clip_data(rec) if rec is not None else {}
        events.emit(EventKind.CLIP_FAILED, t, result.order_id, error=result.error, **data)


def clip_archived(events: StationEvents, rec: ClipRecord, t: float) -> None:
    events.emit(EventKind.CLIP_ARCHIVED, t, rec.order_id, **clip_data(rec))


def clip_data(rec: ClipRecord) -> dict[str, object]:
    """What a webhook receiver and the station screen are told about a clip."""
    return {
        "clip_id": rec.id,
        "waybills": [w.waybill for w in rec.waybills],
        "started_at": rec.started_at.isoformat(timespec="milliseconds"),
        "duration_s": round(rec.duration_s, 3),
        "finish_reason": rec.finish_reason,
        "sha256": rec.sha256,
        "size": rec.size,
        "path": rec.path,
    }


__all__ = ["attach_recorder", "build_events", "clip_archived", "clip_data", "clip_finished"]
