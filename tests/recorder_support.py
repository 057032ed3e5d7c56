"""A real Recorder built as the station builds it (always-running encoder, muxed clips)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from station import config as config_mod
from station.recording.recorder import PacketSink, Recorder
from station.recording.stream import stream_factories
from station.store.ledger import Ledger


def encoded_recorder(
    cfg: config_mod.Config,
    ledger: Ledger,
    width: int,
    height: int,
    fps: float,
    *,
    keyframe_interval_s: float = 1.0,
    wrap_muxer: Callable[[PacketSink], PacketSink] | None = None,
    **kw: Any,
) -> Recorder:
    """``Recorder`` with ``stream_factories`` (what ``service.assemble`` uses) for a
    ``width`` x ``height`` camera at ``fps``; ``keyframe_interval_s`` short, so a pre-roll
    can start close to scan - pre_roll_s. ``wrap_muxer`` wraps each clip's ``ClipMuxer``
    (e.g. a disk that fills up); ``kw`` goes to ``Recorder`` (finalizers, salvage, ...)."""
    cfg = cfg.replace("recorder", keyframe_interval_s=keyframe_interval_s)
    encoder, muxer = stream_factories(cfg.recorder, width, height, fps)
    if wrap_muxer is not None:
        inner = muxer

        def muxer(path: Path, enc: Any) -> PacketSink:  # type: ignore[misc]
            return wrap_muxer(inner(path, enc))

    return Recorder(cfg, ledger, encoder=encoder, muxer=muxer, **kw)
