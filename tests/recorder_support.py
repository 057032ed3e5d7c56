"""A real Recorder built as the station builds it (always-running encoder, muxed clips)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from station import config as config_mod
from station.proof.finalizer import start_stamp_of
from station.recording.recorder import PacketSink, Recorder
from station.recording.stream import EncodedPacket, StreamEncoder, stream_factories
from station.recording.writer import EncoderSettings
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

    kw.setdefault("start_stamp", start_stamp_of(kw.get("finalizers", ())))  # as assemble does
    return Recorder(cfg, ledger, encoder=encoder, muxer=muxer, **kw)


class HeldBack:
    """The station's real encoder, its packets handed on ``lag`` packets late (a V4L2
    encoder keeps a few frames). ``seen``: every packet handed on, in order."""

    def __init__(self, inner: Any, lag: int = 3) -> None:
        self.inner, self.lag, self.held = inner, lag, []
        self.seen: list[EncodedPacket] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def in_flight(self) -> int:
        return int(self.inner.in_flight) + len(self.held)

    def drain(self) -> list[EncodedPacket]:
        self.held += self.inner.drain()
        cut = max(0, len(self.held) - self.lag)
        out, self.held = self.held[:cut], self.held[cut:]
        self.seen += out
        return out

    def flush(self) -> list[EncodedPacket]:
        out, self.held = [*self.held, *self.inner.flush()], []
        self.seen += out
        return out


class PromptEncoder(StreamEncoder):
    """The station's encoder whose ``submit`` returns once the frame's packet is out (libx264
    with ``tune=zerolatency`` holds no frame back): wrapped in ``HeldBack``, the lag is exactly
    what the test says, whatever the machine's load."""

    def __init__(self, settings: EncoderSettings) -> None:
        self._emitted = threading.Condition()
        super().__init__(settings)

    def _emit(self, packets: list[Any]) -> None:
        super()._emit(packets)
        with self._emitted:
            self._emitted.notify_all()

    def submit(self, image_i420: np.ndarray, t: float, wall: datetime, label: str | None) -> None:
        super().submit(image_i420, t, wall, label)
        with self._emitted:  # the timeout only keeps a broken encoder from hanging the run
            self._emitted.wait_for(self._caught_up, timeout=60.0)

    def _caught_up(self) -> bool:
        return self._error is not None or self._drained + len(self._out) >= self._submitted
