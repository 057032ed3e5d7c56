"""Encoded pre-roll and clip lifecycle: temp file, finish, hash, atomic rename, manifest, index."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import station
from station.capture.codes import safe_component
from station.config import Config
from station.errors import RecordingError, StationError
from station.recording.session import FinishReason
from station.recording.stream import EncodedPacket, PacketRing
from station.store.files import BackgroundSync, fsync_dir, sha256_file, write_json_atomic
from station.store.ledger import ClipRecord, Ledger, ScanEventRecord, WaybillLink

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


class FrameEncoder(Protocol):
    """What the recorder needs of the always-running encoder (stream.StreamEncoder)."""

    width: int
    height: int
    fps: float
    encoder: str
    extradata: bytes | None

    @property
    def in_flight(self) -> int: ...

    def submit(
        self, image_i420: np.ndarray, t: float, wall: datetime, label: str | None
    ) -> None: ...

    def request_keyframe(self) -> None: ...

    def drain(self) -> list[EncodedPacket]: ...

    def flush(self) -> list[EncodedPacket]: ...


class PacketSink(Protocol):
    """One clip's muxer (stream.ClipMuxer)."""

    def write(self, packet: EncodedPacket) -> None: ...

    def finish(self) -> Any: ...


EncoderFactory = Callable[[], FrameEncoder]
MuxerFactory = Callable[[Path, FrameEncoder], PacketSink]

# Called after the clip is in its final place and before its manifest is written and indexed:
# (final mp4 path, manifest dict) -> manifest dict. It may rewrite the file (e.g. embed a C2PA
# manifest); the recorder then hashes the file again, so the index always holds the hash of the
# bytes on disk. It may add keys to the manifest (signature, log index, ...).
Finalizer = Callable[[Path, dict[str, Any]], dict[str, Any]]

# Called on the finisher thread when a clip's writer failed (disk full, encoder error): (temp
# mp4 path, its journal dict) -> the indexed record, or None when nothing could be kept (e.g.
# no decodable frame: the file is quarantined). Also, after the next clean clip, for a clip that
# is in place in clips/ but could not be indexed (its path and journal dict, with
# ``final_path``): it is indexed as it is, from its signed manifest. Implemented by
# station.store.recovery.Recovery.salvage.
Salvage = Callable[[Path, dict[str, Any]], ClipRecord | None]

# Called on the capture thread at a clip's first frame: (order ID, clip name as started, the
# first frame's wall time) -> the start statement its manifest carries (``start_statement``),
# timestamped by a TSA meanwhile. It must not block the capture loop: no network, no fsync,
# no lock a slow thread holds (proof.finalizer.ProofFinalizer.start_statement queues its TSA
# request in memory for the TSA worker).
StartStamp = Callable[[str, str, datetime], dict[str, Any]]


def manifest_body(record: ClipRecord, **more: Any) -> dict[str, Any]:
    """The manifest of ``record`` before any finalizer: its index fields (without the row id),
    the manifest version, the software that wrote it, and ``more``."""
    data = record.to_json()
    data.pop("id")
    data.update(manifest_version=MANIFEST_VERSION, software=f"packcam {station.__version__}")
    data.update(more)
    return data


def write_manifest(
    final: Path, rel: str, record: ClipRecord, finalizers: Sequence[Finalizer]
) -> dict[str, Any]:
    """Build the manifest of the clip at ``final`` (``rel`` under the data dir), run the
    finalizers, check the file still has the size and hash the manifest states, and write the
    sidecar (``final`` with ``.json``) atomically. Returns the manifest as written.

    The one builder of a new clip's manifest: the recorder and crash recovery both use it, so
    the same clip gets the same bytes from either."""
    data = manifest_body(record)
    for finalize in finalizers:
        data = finalize(final, data)
    if finalizers:
        # A finalizer may rewrite the file (C2PA): the manifest must then state the new bytes.
        size, digest = final.stat().st_size, sha256_file(final)
        if size != data["size"] or digest != data["sha256"]:
            raise RecordingError(
                f"a finalizer changed {rel} but the manifest does not match the file"
            )
    write_json_atomic(final.with_suffix(".json"), data)
    return data


# Wall time against camera time over a clip differs by jitter and NTP's slewing (at most
# 0.5 ms/s: 0.3 s over 10 minutes); a step of this much or more is stated in the manifest.
CLOCK_STEP_MIN_S = 1.0


def clock_step_s(
    first_wall: datetime | None,
    first_t: float | None,
    last_wall: datetime | None,
    last_t: float | None,
) -> float | None:
    """How far the wall clock stepped between a clip's first and last frame (``wall`` and
    camera time ``t`` of each): the wall time elapsed minus the camera time elapsed, rounded
    to the millisecond; None when it did not (less than ``CLOCK_STEP_MIN_S``)."""
    if first_wall is None or last_wall is None or first_t is None or last_t is None:
        return None
    step = round((last_wall - first_wall).total_seconds() - (last_t - first_t), 3)
    return step if abs(step) >= CLOCK_STEP_MIN_S else None


def clip_times(
    first_wall: datetime,
    first_t: float | None,
    last_wall: datetime | None,
    last_t: float | None,
    span_s: float,
) -> tuple[datetime, datetime, float | None]:
    """A clip's start and end, and the wall clock's step while it recorded (``clock_step_s``
    of its first and last frame known; None: none). The camera's own time is the truth within
    a clip: its end is its start plus ``span_s`` (first to last frame by camera time). A step
    (NTP setting the clock right) puts both times on the clock after it: the one a TSA's time
    is held to, so a stated step can never widen what the token vouches for (a key holder
    backdating a clip by "a step"). The one rule for the recorder and crash recovery alike."""
    step = clock_step_s(first_wall, first_t, last_wall, last_t)
    started = first_wall + timedelta(seconds=step or 0.0)
    return started, started + timedelta(seconds=span_s), step


JOURNAL_SUFFIX = ".open.json"
FINISHED_KEPT = 256
# The clips stopped last that a late read may still be linked to (``link_ended``): an order
# cut by several camera losses has a clip for each; a read is decoded seconds late at most.
STOPPED_KEPT = 16


@dataclass
class _OpenClip:
    order_id: str
    scan_t: float
    tmp_path: Path
    writer: PacketSink
    first_t: float | None = None
    last_t: float | None = None
    first_wall: datetime | None = None
    last_wall: datetime | None = None
    waybills: list[WaybillLink] = field(default_factory=list)
    events: list[tuple[float, ScanEventRecord]] = field(default_factory=list)
    finish_reason: str = ""
    stopped_wall: datetime | None = None  # wall time of the last frame pushed at stop()
    scan_wall: datetime | None = None
    journal_first_wall: datetime | None = None  # first frame's wall time, known at start()
    journal_pre_roll_s: float = 0.0
    journal_step_s: float = 0.0  # the wall clock's step as last journaled (0: none)
    extra: dict[str, Any] = field(default_factory=dict)  # extra manifest fields (camera gap)
    error: str | None = None
    # The order label burned into each written frame, run-length coded: [[label, frames], ...]
    labels: list[list[Any]] = field(default_factory=list)
    # The keyframe to start at (None: the first keyframe after ``after_t``), and, once
    # stopped, the camera time of the last frame that belongs to the clip.
    start_key_t: float | None = None
    after_t: float | None = None
    end_t: float | None = None
    clip_id: int | None = None  # its index row, once finished (finisher thread)


@dataclass(frozen=True)
class LateLink:
    """What became of a waybill ``link_ended`` put in the index only (``Linked.how`` "index"),
    told by the finisher once it tried: ``error`` None when the index row is written, else
    why the waybill is in no clip (the clip was not indexed, or the index refused the row)."""

    order_id: str
    clip: str
    link: WaybillLink
    error: str | None


@dataclass(frozen=True)
class _LinkAfterSigning:
    """A waybill of a clip already handed to the finisher: linked in the index once the clip
    is indexed (the finisher takes this after the clip); its signed manifest cannot change.
    ``done`` hears what became of it (on the finisher thread)."""

    clip: _OpenClip
    link: WaybillLink
    done: Callable[[LateLink], None] | None = None


@dataclass(frozen=True)
class Linked:
    """Where ``Recorder.link_waybill`` or ``link_ended`` put a waybill. ``clip``: the clip's
    name (its file name as started, without ``.mp4``; the final file adds ``-n`` only when
    that name is taken). ``how``: "open" (the clip recording: in its signed manifest),
    "manifest" (an ended clip still waiting for its last frames: in its signed manifest too),
    "index" (an ended clip already being finished: in the index only, marked as linked after
    signing)."""

    clip: str
    how: str


@dataclass(frozen=True)
class FinishedClip:
    """What the finisher produced: the indexed record, or the error that stopped it.

    ``empty``: the clip was stopped before its first frame (no error, nothing to keep).
    ``frame_labels``: the order label each frame of the clip had burned in when it was
    captured (None: no order open then), run-length coded as ``((label, frames), ...)``:
    what a test or an audit reads instead of OCR to prove no frame shows another order.
    ``span``: camera times of the clip's first and last frame.
    """

    order_id: str
    record: ClipRecord | None
    error: str | None = None
    empty: bool = False
    frame_labels: tuple[tuple[str | None, int], ...] = ()
    span: tuple[float, float] | None = None


def journal_path(tmp_mp4: Path) -> Path:
    """``tmp/<name>.open.json`` beside ``tmp/<name>.mp4``: what crash recovery reads."""
    return tmp_mp4.with_suffix(JOURNAL_SUFFIX)


def write_json_quick(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically without fsync (kill -9 safe; a power cut may lose it). A
    write that fails (a full disk) leaves ``path`` as it was and no ``.tmp`` file behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, ensure_ascii=False, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Recorder:
    """Keeps the last ``pre_roll_s`` seconds of video, encoded, and writes at most one clip
    at a time.

    Every frame is encoded once by an always-running ``FrameEncoder`` (``encoder``, made at
    the first frame); the ring keeps the last ``pre_roll_s`` of encoded packets from a
    keyframe on (a few MB, not hundreds of raw frames); a clip starts on the newest keyframe
    at or before scan - ``pre_roll_s`` that no earlier clip holds (or, when there is none,
    on an IDR picture requested at the scan) and its packets go to its ``PacketSink``
    (``muxer``) as they come: no second encode, no burst at its start.
    ``stream.stream_factories`` makes both from ``[recorder]``.

    Thread contract: ``push``, ``start``, ``stop``, ``link_waybill`` and ``log_event`` are called
    from the capture thread only. Finishing a clip (encoder flush, fsync, hashing, rename,
    manifest, index) runs on the recorder's own finisher thread so the capture loop never waits
    for the disk (nor for the fsyncs of the clip journals it writes: the journal-sync
    thread's); ``close`` drains both. A clip that fails to finish stays in
    ``tmp/`` untouched for crash recovery: evidence is never deleted here. At a clip's first
    frame ``start_stamp`` (``proof.finalizer.start_stamp_of``: the proof signer's) fixes its
    start statement on the capture thread; it must not block, and the
    statement goes into the clip's manifest fields, so its journal keeps it.
    """

    def __init__(
        self,
        cfg: Config,
        ledger: Ledger,
        *,
        encoder: EncoderFactory,
        muxer: MuxerFactory,
        on_finished: Callable[[FinishedClip], None] | None = None,
        finalizers: tuple[Finalizer, ...] = (),
        salvage: Salvage | None = None,
        start_stamp: StartStamp | None = None,
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self._encoder_factory = encoder
        self._muxer_factory = muxer
        self._enc: FrameEncoder | None = None
        self._packets = PacketRing(cfg.session.pre_roll_s)
        self._closing: list[_OpenClip] = []  # stopped, waiting for their last packets
        self._last_pushed_t: float | None = None
        self._last_pushed_wall: datetime | None = None
        self._routed_t: float | None = None  # camera time of the last packet out of the encoder
        self.on_finished = on_finished
        self.finalizers = finalizers
        self.salvage = salvage
        self.start_stamp = start_stamp
        self.data_dir = cfg.station.data_dir
        self.tmp_dir = self.data_dir / "tmp"
        self.clips_dir = self.data_dir / "clips"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.clips_dir.mkdir(parents=True, exist_ok=True)
        self._open: _OpenClip | None = None
        # Camera time of the last frame written to any clip (or pushed while a clip that
        # failed was open): a later clip's pre-roll starts after it, so no second of video
        # belongs to two orders.
        self._owned_t: float | None = None
        # Camera time the parcel before was last seen being finished with no clip open
        # (``disown``): no pre-roll reaches back to it either; the first frame after it is
        # made a keyframe (``_key_after``), so the next clip can start right there.
        self._disowned_t: float | None = None
        self._key_after: float | None = None
        # Frames pushed that will be IDR pictures (a stream's first, or one asked for) whose
        # packets are still in the encoder (it lags under load): (camera time, wall time). A
        # clip scanned meanwhile may start on one, and is named and journaled by it.
        self._keys_coming: deque[tuple[float, datetime]] = deque()
        self._key_next = False  # the next frame pushed is one of them
        self._pending: queue.Queue[_OpenClip | _LinkAfterSigning | None] = queue.Queue()
        self._last_stopped: _OpenClip | None = None  # capture thread only
        self._stopped: deque[_OpenClip] = deque(maxlen=STOPPED_KEPT)  # capture thread only
        self._finisher = threading.Thread(target=self._finish_loop, name="clip-finisher")
        self._finisher.start()
        # fsyncs the journals the capture thread writes: it must not wait for them (an SD
        # card's fsync at a clip's start and stop dropped the next buyer's frames:
        # docs/performance.md)
        self._journal_sync = BackgroundSync("clip-journal-sync")
        # The latest results (tests, diagnostics); bounded, or a station running for months
        # would keep every clip it ever finished in memory.
        self.finished: deque[FinishedClip] = deque(maxlen=FINISHED_KEPT)
        self._closed = False
        self._unsalvaged: list[tuple[Path, dict[str, Any]]] = []  # retried after the next clip
        self._unsaved_events: list[ScanEventRecord] = []  # capture thread only
        self._events_tried = 0.0
        self._events_failing = False
        self._annotate_lock = threading.Lock()  # annotate (any thread) vs stop

    # ---- capture-thread API ---------------------------------------------------------------

    @property
    def recording(self) -> bool:
        return self._open is not None

    def push(
        self, image_i420: np.ndarray, t: float, wall: datetime, label: str | None = None
    ) -> None:
        """Encode one frame (already overlaid); its packet goes to the pre-roll ring and to
        the clips it belongs to (the array is kept by reference until encoded: do not change it).

        ``label``: the order burned into this frame (None when no order was open).
        """
        if self._unsaved_events and time.monotonic() - self._events_tried >= 1.0:
            self._save_events()
        try:
            enc = self._encoder()
            if self._key_after is not None and t > self._key_after:
                self._ask_keyframe(enc)
                self._key_after = None
            enc.submit(image_i420, t, wall, label)
            self._last_pushed_t, self._last_pushed_wall = t, wall
            if self._key_next:
                self._keys_coming.append((t, wall))
                self._key_next = False
            packets = enc.drain()
        except RecordingError as exc:
            # The encoder is gone: every clip it fed ends here; a new one starts next frame.
            self._enc = None
            self._packets = PacketRing(self.cfg.session.pre_roll_s)
            for clip in self._closing:
                clip.error = clip.error or str(exc)
            self._complete_closing(force=True)
            if self._open is not None:
                self._abandon(self._open, exc)
            raise
        self._route(packets)

    def start(
        self,
        order_id: str,
        t: float,
        *,
        pre_roll: bool = True,
        waybills: tuple[str, ...] = (),
        extra: dict[str, Any] | None = None,
        wall: datetime | None = None,
    ) -> None:
        """Open a clip of ``order_id`` scanned at camera time ``t`` (wall time ``wall``).

        ``extra`` goes into its manifest (e.g. a camera gap). The clip starts on the newest
        keyframe at or before ``t - pre_roll_s`` that no earlier clip holds
        (``PacketRing.start_for``): one in the ring, or one pushed whose packet is still in
        the encoder (the first of a stream, or one asked for); without one (or with
        ``pre_roll`` False) the encoder is asked for an IDR picture and the clip starts at the
        next frame pushed. The file is named with the wall time of its first frame (the
        keyframe's, or ``wall``), and its journal states the pre-roll it has, whatever the
        encoder's lag.
        """
        if self._closed:
            raise RuntimeError("recorder is closed")
        if self._open is not None:
            raise RuntimeError("start() while a clip is open: stop() it first")
        enc = self._encoder()
        # The clip stopped last holds the frames up to its stop even when none reached it (it
        # stopped before its first frame, and was finished at once as no packet was due).
        stopped = self._last_stopped.end_t if self._last_stopped is not None else None
        ends = (self._owned_t, self._disowned_t, stopped, *(c.end_t for c in self._closing))
        bounds = [b for b in ends if b is not None]
        after_t = max(bounds) if bounds else None
        key_t = None
        if pre_roll:
            coming = [k for k, _wall in self._keys_coming]
            key_t = self._packets.start_for(t, self.cfg.session.pre_roll_s, after_t, coming)
        if key_t is None:
            self._ask_keyframe(enc)  # an IDR picture at the next frame: the clip starts there
            pushed = self._last_pushed_t
            if pushed is not None:
                # Not on a keyframe nobody asked for still in the encoder (a periodic one): its
                # time, and so the clip's name and pre-roll, are not known here.
                after_t = pushed if after_t is None else max(after_t, pushed)
        ring = self._packets.since(key_t) if key_t is not None else []
        if wall is None:
            wall = datetime.now().astimezone()
        first_t, first_wall = t, wall
        if ring:
            first_t, first_wall = ring[0].t, ring[0].wall
        elif key_t is not None:  # a keyframe still in the encoder
            first_t = key_t
            first_wall = next(w for k, w in self._keys_coming if k == key_t)
        name = self._base_name(order_id, first_wall)
        tmp_path = self.tmp_dir / f"{name}.mp4"
        try:
            sink = self._muxer_factory(tmp_path, enc)
        except StationError:
            raise
        except Exception as exc:  # a broken muxer or full disk must surface as one error type
            raise RecordingError(f"cannot open clip file {tmp_path}: {exc}") from exc
        clip = _OpenClip(order_id=order_id, scan_t=t, tmp_path=tmp_path, writer=sink)
        clip.start_key_t, clip.after_t = key_t, after_t
        clip.waybills.extend(WaybillLink(w, "", 0.0) for w in waybills)
        clip.scan_wall = wall
        clip.journal_first_wall = first_wall
        clip.journal_pre_roll_s = round(max(0.0, t - first_t), 3)
        clip.extra = dict(extra or {})
        self._open = clip
        # Record what this temp file is before any frame is written, so a crash leaves enough
        # for recovery to index it under the right order (a power cut too, once synced).
        self._journal(clip)
        try:
            for packet in ring:
                self._offer(clip, packet)
        except RecordingError as exc:
            self._abandon(clip, exc)
            raise
        start = f"keyframe at t={key_t:.3f}" if key_t is not None else "the next frame"
        log.info("recording order %r -> %s (starts at %s)", order_id, tmp_path.name, start)

    def disown(self, t: float) -> None:
        """Frames up to camera time ``t`` show the parcel before (seen being finished with no
        clip open): the next clip's pre-roll starts after them, on a keyframe made at the first
        frame after ``t`` so that it keeps what pre-roll is left."""
        if self._closed:
            raise RuntimeError("recorder is closed")
        if self._open is not None:
            raise RuntimeError("disown() while a clip is open: its frames are its own")
        if self._disowned_t is None or t > self._disowned_t:
            self._disowned_t = self._key_after = t

    def stop(self, reason: str, t: float) -> None:
        clip = self._open
        if clip is None:
            raise RuntimeError("stop() with no open clip")
        with self._annotate_lock:
            self._open = None
        clip.finish_reason = reason
        self._last_stopped = clip
        self._stopped.append(clip)
        log.info("order %r finished (%s); finishing clip", clip.order_id, reason)
        # Every frame pushed so far is the clip's; packets of those still in the encoder
        # follow (a V4L2 encoder keeps a few): the clip is finished once they are muxed.
        clip.end_t, clip.stopped_wall = self._last_pushed_t, self._last_pushed_wall
        # Why and when it ended, now (synced soon): the clip may wait for its last packets,
        # and behind others for the finisher, for seconds; a crash or power cut meanwhile must
        # not leave recovery to call it "interrupted" (its manifest, and the next start's
        # resume rule, would take a sealed packing for one the stop cut).
        self._journal(clip)
        if self._enc is not None:
            # The first frame after a clip is an IDR picture: the next clip's pre-roll can
            # start right where this one ended, not only at the next periodic keyframe.
            self._ask_keyframe(self._enc)
        self._closing.append(clip)
        self._complete_closing()

    def end_stream(self) -> None:
        """The frames stopped for an unknown time (the camera is lost): end the encoder's
        stream now, so the clips stopped and waiting for their last packets are finished at
        once, not when frames come back (hours later, perhaps); and empty the pre-roll ring,
        so no clip started after the gap begins before it (its pre-roll would hide the gap,
        and the clip would be named and dated by the frames from before it). The next frame
        starts a new encoder. Capture thread only; no clip may be open (stop() it first)."""
        if self._open is not None:
            raise RuntimeError("end_stream() with an open clip: stop() it first")
        self._end_encoder()
        self._packets = PacketRing(self.cfg.session.pre_roll_s)

    def _end_encoder(self) -> None:
        """Flush the encoder into the clips still closing, finish them, and drop it."""
        enc, self._enc = self._enc, None
        if enc is not None:
            try:
                self._route(enc.flush())  # the encoder's last packets, for clips still closing
            except RecordingError as exc:
                log.error("flushing the encoder failed: %s", exc)
            self._complete_closing(force=True)

    # ---- the encoder and the ring (capture thread) ---------------------------------------

    def _encoder(self) -> FrameEncoder:
        if self._enc is None:
            try:
                self._enc = self._encoder_factory()
            except StationError:
                raise
            except Exception as exc:
                raise RecordingError(f"cannot start the encoder: {exc}") from exc
            self._keys_coming.clear()  # the old stream's are out, or lost with it
            self._key_next = True  # a stream starts with an IDR picture
        return self._enc

    def _ask_keyframe(self, enc: FrameEncoder) -> None:
        enc.request_keyframe()
        self._key_next = True

    def _route(self, packets: list[EncodedPacket]) -> None:
        """Packets into the ring, into the clips stopped and waiting, into the open clip."""
        failed: RecordingError | None = None
        for packet in packets:
            self._packets.append(packet)
            self._routed_t = packet.t
            while self._keys_coming and self._keys_coming[0][0] <= packet.t + 1e-9:
                self._keys_coming.popleft()
            for clip in [*self._closing, self._open]:
                if clip is None or clip.error is not None:
                    continue
                try:
                    self._offer(clip, packet)
                except RecordingError as exc:
                    if clip is self._open:
                        self._abandon(clip, exc)
                        failed = exc
                    else:
                        clip.error = str(exc)
        self._complete_closing()
        if failed is not None:
            raise failed

    def _offer(self, clip: _OpenClip, packet: EncodedPacket) -> None:
        if clip.end_t is not None and packet.t > clip.end_t + 1e-9:
            return
        if clip.first_t is None:
            if not packet.key:
                return
            if clip.start_key_t is not None and packet.t < clip.start_key_t - 1e-9:
                return
            if clip.after_t is not None and packet.t <= clip.after_t + 1e-9:
                return
        elif clip.last_t is not None and packet.t <= clip.last_t:
            return
        self._account(clip, packet.t, packet.wall, packet.label)
        clip.writer.write(packet)

    def _complete_closing(self, *, force: bool = False) -> None:
        """Hand stopped clips to the finisher once their last packet can have come."""
        if not self._closing:
            return
        enc = self._enc
        idle = force or enc is None or enc.in_flight == 0
        routed = self._routed_t
        keep = []
        for clip in self._closing:
            # Packets come out in camera-time order: once the one of the clip's last frame is
            # out, nothing more is the clip's (even when nothing was: it stopped before its
            # first keyframe, e.g. two scans in one poll).
            if (
                idle
                or clip.error is not None
                or (clip.end_t is not None and routed is not None and routed >= clip.end_t)
            ):
                self._pending.put(clip)
            else:
                keep.append(clip)
        self._closing = keep

    def annotate(self, order_id: str, key: str, value: Any) -> bool:
        """Add ``key`` to the manifest of ``order_id``'s clip if it is still open (any thread,
        e.g. the order lookup); False when it has ended. Copy-on-write: readers never see a
        dict change under them."""
        with self._annotate_lock:
            clip = self._open
            if clip is None or clip.order_id != order_id:
                return False
            clip.extra = {**clip.extra, key: value}
            return True

    def link_waybill(self, waybill: str, carrier: str, t: float) -> Linked | None:
        """Link a waybill read at camera time ``t`` to the open clip; None when no clip is
        open (nothing linked: the caller must not say it was)."""
        clip = self._open
        if clip is None:
            return None
        linked = Linked(clip.tmp_path.stem, "open")
        if any(w.waybill == waybill for w in clip.waybills):
            return linked
        clip.waybills.append(WaybillLink(waybill, carrier, self._rel(clip, t)))
        self._journal(clip)
        return linked

    def link_ended(
        self,
        order_id: str,
        waybill: str,
        carrier: str,
        t: float,
        *,
        done: Callable[[LateLink], None] | None = None,
    ) -> Linked | None:
        """Link a waybill read at camera time ``t`` to the ended clip of ``order_id`` it was
        read in (a read decoded after the next clip began, or after a camera loss cut it): the
        last of the order's clips stopped lately that began at or before ``t`` (an order cut
        by several losses has several; a read in the dark goes to the clip the loss cut).
        ``Linked.how`` "manifest": the clip was still waiting for its last frames, so the
        link is in its signed manifest; "index": it was already being finished, so the link
        goes in the index once it is indexed, marked as made after signing, and ``done``
        hears, on the finisher thread, whether it was (a clip never indexed takes no link);
        None: no such clip with frames."""
        clip = self._ended_clip(order_id, t)
        if clip is None:
            return None
        name = clip.tmp_path.stem
        if any(w.waybill == waybill for w in clip.waybills):
            return Linked(name, "manifest")
        link = WaybillLink(waybill, carrier, self._rel(clip, t))
        if any(c is clip for c in self._closing):  # still the capture thread's: not signed
            clip.waybills.append(link)
            self._journal(clip)
            return Linked(name, "manifest")
        self._pending.put(_LinkAfterSigning(clip, link, done))
        return Linked(name, "index")

    def _ended_clip(self, order_id: str, t: float) -> _OpenClip | None:
        """The clip of ``order_id`` stopped lately that a read stamped ``t`` was made in (or
        after, in the dark): the last that began (its scan or its first frame) by ``t``."""
        for clip in reversed(self._stopped):
            if clip.order_id != order_id or clip.first_t is None:
                continue
            if min(clip.scan_t, clip.first_t) <= t + 1e-9:
                return clip
        return None

    def log_event(self, event: ScanEventRecord, t: float, *, in_clip: bool = True) -> None:
        """Attach a scan to the open clip, or index it on its own when no clip is open or
        ``in_clip`` is False (a scan made before the open clip began: not its order's).

        Indexed through the ledger's capture journal (``Ledger.log_events``): the call
        writes one line to a file and returns, never waiting in SQLite; the event survives a
        kill -9 at once and a power cut once that file is synced (an fsync later, on
        "index-sync"), and the thread "index-writer" commits it, in order. When even the
        journal cannot take it (a full disk: exactly when scans are refused), the event is
        kept in memory and written, in order, once it can (tried at most once a second from
        ``push``, and at ``close``).
        """
        clip = self._open if in_clip else None
        if clip is None:
            self._unsaved_events.append(event)
            self._save_events()
        else:
            clip.events.append((t, event))
            self._journal(clip)

    @property
    def unsaved_events(self) -> int:
        """Scans kept in memory because the index could not take them yet."""
        return len(self._unsaved_events)

    def _save_events(self) -> bool:
        if not self._unsaved_events:
            return True
        self._events_tried = time.monotonic()
        try:
            self.ledger.log_events(self.cfg.station.name, list(self._unsaved_events))
        except (StationError, OSError, sqlite3.Error) as exc:
            if not self._events_failing:
                log.error("cannot index scan events (kept in memory, retried): %s", exc)
            self._events_failing = True
            return False
        if self._events_failing:
            log.warning("indexed %d scan events kept while the index failed",
                        len(self._unsaved_events))  # fmt: skip
        self._events_failing = False
        self._unsaved_events.clear()
        return True

    def close(self, timeout: float | None = None) -> None:
        """Wait for every stopped clip to be finished and indexed. An open clip is an error."""
        if self._open is not None:
            raise RuntimeError("close() with an open clip: stop() it first")
        self._end_encoder()
        if not self._save_events():
            for event in self._unsaved_events:  # the log is the last place they can go
                log.error("scan event lost (index unavailable): %s", event.to_json())
            self._unsaved_events.clear()
        if not self._closed:
            self._closed = True
            self._pending.put(None)
        self._finisher.join(timeout)
        self._journal_sync.close()
        # the station stops: its last scans and alarms in the index before it reports done
        if not self.ledger.flush_capture_writes():
            log.error("the index refuses the capture loop's last writes: they are kept in its "
                      "journal and committed at the next start")  # fmt: skip

    def flush_journals(self) -> None:
        """Block until the journals the capture thread wrote so far are fsynced."""
        self._journal_sync.flush()

    def wait_idle(self) -> None:
        """Block until stopped clips are finished (tests and replay)."""
        deadline = time.monotonic() + 10.0
        while self._closing and time.monotonic() < deadline:  # their packets are on the way
            if self._enc is not None:
                self._route(self._enc.drain())
            time.sleep(0.005)
        self._complete_closing(force=True)
        self._pending.join()
        self.ledger.flush_capture_writes()

    # ---- internals ------------------------------------------------------------------------

    def _abandon(self, clip: _OpenClip, exc: RecordingError) -> None:
        """The writer failed mid-clip: close the clip now; the finisher salvages what is on disk."""
        if self._open is clip:
            self._open = None
        # Every frame pushed so far was the clip's (it shows its order, as after stop()), even
        # those still in the encoder that will never reach its file: no later clip's pre-roll
        # may take them.
        pushed = self._last_pushed_t
        if pushed is not None and (self._owned_t is None or pushed > self._owned_t):
            self._owned_t = pushed
        clip.finish_reason = FinishReason.INTERRUPTED.value
        clip.error = str(exc)
        log.error("recording of order %r failed; the clip so far is kept: %s", clip.order_id, exc)
        self._pending.put(clip)

    def journal_data(self, clip: _OpenClip) -> dict[str, Any]:
        """What crash recovery needs to index this clip as recorded so far."""
        first = clip.first_wall or clip.journal_first_wall
        data: dict[str, Any] = {
            "order_id": clip.order_id,
            "station": self.cfg.station.name,
            "software": f"packcam {station.__version__}",
            "pre_roll_s": self._pre_roll(clip),
            "waybills": [dataclasses.asdict(w) for w in clip.waybills],
            "events": [
                dataclasses.replace(e, t_clip_s=self._rel(clip, t)).to_json()
                for t, e in clip.events
            ],
            "extra": clip.extra,
        }
        if clip.scan_wall is not None:
            data["scan_wall"] = clip.scan_wall.isoformat(timespec="milliseconds")
        if first is not None:
            data["first_wall"] = first.isoformat(timespec="milliseconds")
        if clip.first_wall is not None and clip.first_t is not None and clip.last_wall is not None:
            # The first and the last frame so far by camera and wall time (to the microsecond,
            # as _finish has them): recovery dates the clip by them with _finish's own rule
            # (clip_times), a clock step stated as the recorder states it.
            data["frames"] = {
                "first_t": clip.first_t,
                "first_wall": clip.first_wall.isoformat(timespec="microseconds"),
                "last_t": clip.last_t,
                "last_wall": clip.last_wall.isoformat(timespec="microseconds"),
            }
        if clip.error:
            data["error"] = clip.error
        if clip.finish_reason:  # it was stopped (or its writer failed)
            data["finish_reason"] = clip.finish_reason
        if clip.stopped_wall is not None:
            data["stopped_wall"] = clip.stopped_wall.isoformat(timespec="milliseconds")
        return data

    def _journal(self, clip: _OpenClip, *, durable: bool = False, **more: Any) -> None:
        """Rewrite ``clip``'s journal, kill -9 safe once this returns. ``durable`` (the
        finisher): power-cut safe too, fsynced here. Else (the capture thread: a clip's start
        and stop, scans, waybills, a clock step) fsynced soon by the journal-sync thread, the
        capture thread never waiting for it."""
        path = journal_path(clip.tmp_path)
        try:
            data = {**self.journal_data(clip), **more}
            if durable:
                write_json_atomic(path, data)
            else:
                write_json_quick(path, data)
        except OSError as exc:
            log.error("cannot write %s (recovery after a crash will know less): %s", path.name, exc)
            return
        if not durable:
            self._journal_sync.request(path)

    def _account(self, clip: _OpenClip, t: float, wall: datetime, label: str | None) -> None:
        """Note one frame going into ``clip``: its time, its owner, the label it shows."""
        if self._owned_t is not None and t <= self._owned_t:
            # A programming error upstream: this frame is already in a clip.
            raise RuntimeError(f"frame at t={t} is already in a clip (up to t={self._owned_t})")
        first = clip.first_t is None
        stamped = False
        if first:
            clip.first_t, clip.first_wall = t, wall
            stamped = self._stamp_start(clip, wall)
        clip.last_wall = wall
        self._owned_t = t  # even if the write fails: the frame may be in the file
        clip.last_t = t
        step = clock_step_s(clip.first_wall, clip.first_t, wall, t) or 0.0
        if abs(step - clip.journal_step_s) >= CLOCK_STEP_MIN_S:
            # The clock stepped (NTP): a power cut from now on must leave recovery the step,
            # or it dates the clip by the clock before it (an hour off the TSA's time).
            clip.journal_step_s = step
            self._journal(clip)
        elif first and (stamped or wall != clip.journal_first_wall):
            # the start statement (kept by recovery), or no pre-roll: the first frame came later
            clip.journal_first_wall = wall
            self._journal(clip)
        if clip.labels and clip.labels[-1][0] == label:
            clip.labels[-1][1] += 1
        else:
            clip.labels.append([label, 1])

    def _stamp_start(self, clip: _OpenClip, wall: datetime) -> bool:
        """Fix ``clip``'s start statement at its first frame (``wall``) into its manifest
        fields; True when it has one now. A failing ``start_stamp`` costs the clip its start
        anchor, never a frame."""
        if self.start_stamp is None:
            return False
        try:
            st = self.start_stamp(clip.order_id, clip.tmp_path.stem, wall)
        except Exception:
            log.exception("no start statement for clip of order %r", clip.order_id)
            return False
        with self._annotate_lock:  # annotate() copies extra on another thread
            clip.extra = {**clip.extra, "start_statement": st}
        return True

    @staticmethod
    def _pre_roll(clip: _OpenClip) -> float:
        """Seconds of ``clip`` before its scan: from its first frame once it has one, else as
        foreseen by ``start``."""
        if clip.first_t is None:
            return clip.journal_pre_roll_s
        return max(0.0, round(clip.scan_t - clip.first_t, 3))

    @staticmethod
    def _rel(clip: _OpenClip, t: float) -> float:
        return round(t - clip.first_t, 3) if clip.first_t is not None else 0.0

    def _base_name(self, order_id: str, wall: datetime) -> str:
        stamp = wall.strftime("%Y%m%dT%H%M%S") + f"_{wall.microsecond // 1000:03d}"
        return f"{safe_component(self.cfg.station.name, 32)}_{safe_component(order_id)}_{stamp}"

    def _finish_loop(self) -> None:
        while True:
            clip = self._pending.get()
            try:
                if clip is None:
                    return
                if isinstance(clip, _LinkAfterSigning):
                    self._link_after_signing(clip)
                    continue
                result = self._finish(clip)
                result = dataclasses.replace(
                    result,
                    frame_labels=tuple((label, n) for label, n in clip.labels),
                    span=(clip.first_t, clip.last_t)
                    if clip.first_t is not None and clip.last_t is not None
                    else None,
                )
                if result.record is not None:
                    clip.clip_id = result.record.id
                self.finished.append(result)
                if self.on_finished is not None:
                    self.on_finished(result)
                if result.error is None and self._unsalvaged:
                    self._retry_salvage()  # a clip went through: there is room again
            except Exception:  # the loop must survive one bad clip
                log.exception("finisher failed")
            finally:
                self._pending.task_done()

    def _link_after_signing(self, job: _LinkAfterSigning) -> None:
        error = self._write_late_link(job.clip, job.link)
        if job.done is not None:
            job.done(LateLink(job.clip.order_id, job.clip.tmp_path.stem, job.link, error))

    def _write_late_link(self, clip: _OpenClip, link: WaybillLink) -> str | None:
        """Link ``link`` to the indexed ``clip``: None once the row is written, else why not."""
        if clip.clip_id is None:
            log.warning("waybill %r of order %r linked to no clip: its clip was not indexed",
                        link.waybill, clip.order_id)  # fmt: skip
            return "its clip was not indexed" + (f": {clip.error}" if clip.error else "")
        try:
            self.ledger.link_waybill_after_signing(clip.clip_id, clip.order_id, link)
        except (StationError, OSError, sqlite3.Error) as exc:
            log.error("cannot link waybill %r to clip %d of order %r: %s",
                      link.waybill, clip.clip_id, clip.order_id, exc)  # fmt: skip
            return f"the index refused it: {exc}"
        log.warning("waybill %r linked to clip %d of order %r after it was signed: in the "
                    "index, not in its signed manifest", link.waybill, clip.clip_id,
                    clip.order_id)  # fmt: skip
        return None

    def _salvage(self, clip: _OpenClip, error: str) -> FinishedClip:
        """Keep and index what the failed writer left (as "interrupted"), or leave it in tmp/."""
        if self.salvage is None:
            return FinishedClip(clip.order_id, None, error)
        clip.error = clip.error or error
        meta = {**self.journal_data(clip), "finish_reason": FinishReason.INTERRUPTED.value}
        # Its journal says so too (it said how the clip was stopped): should the salvage fail,
        # the next start indexes it as salvaged now, with the error (unless the disk is too
        # full for even this: then as stopped, its note saying it was not finished).
        self._journal(clip, durable=True, finish_reason=FinishReason.INTERRUPTED.value)
        try:
            record = self.salvage(clip.tmp_path, meta)
        except Exception as exc:
            self._unsalvaged.append((clip.tmp_path, meta))
            log.error(
                "salvaging %s failed (%s); kept in tmp/, tried again after the next clip "
                "and at the next start",
                clip.tmp_path.name,
                exc,
                exc_info=not isinstance(exc, OSError),  # a full disk needs no traceback
            )
            return FinishedClip(clip.order_id, None, error)
        return FinishedClip(clip.order_id, record, error)

    def _retry_salvage(self) -> None:
        assert self.salvage is not None
        pending, self._unsalvaged = self._unsalvaged, []
        for tmp_path, meta in pending:
            if not tmp_path.exists():
                continue
            try:
                record = self.salvage(tmp_path, meta)
            except Exception as exc:
                log.error("salvaging %s failed again: %s", tmp_path.name, exc)
                self._unsalvaged.append((tmp_path, meta))
                continue
            log.warning("salvaged %s on a later try", tmp_path.name)
            result = FinishedClip(str(meta.get("order_id")), record, meta.get("error"))
            self.finished.append(result)
            if self.on_finished is not None:
                self.on_finished(result)

    def _finish(self, clip: _OpenClip) -> FinishedClip:
        if clip.first_t is None:
            # Stopped before its first frame (e.g. two scans in one poll): nothing to keep.
            # The writer refuses to finish an empty file; salvage sets it aside (quarantine/).
            with contextlib.suppress(RecordingError):
                clip.writer.finish()
            log.info("clip of order %r was stopped before its first frame", clip.order_id)
            if self.salvage is not None:
                self._salvage(clip, "no frames")
            return FinishedClip(clip.order_id, None, None, empty=True)
        try:
            done = clip.writer.finish()
        except Exception as exc:
            log.error("clip of order %r could not be finished, kept at %s: %s",
                      clip.order_id, clip.tmp_path, exc)  # fmt: skip
            return self._salvage(clip, str(exc))
        if clip.error is not None:  # abandoned after a write error, yet the file closed
            return self._salvage(clip, clip.error)
        if done.frame_count == 0 or clip.first_wall is None or clip.first_t is None:
            # Nothing was captured (e.g. the camera died at once). Keep the empty file for the
            # audit trail in tmp/ but do not index a clip that has no pictures.
            log.warning("clip of order %r has no frames; not indexed", clip.order_id)
            return FinishedClip(clip.order_id, None, "no frames")
        final = self._final_path(clip)
        # Journal where the clip goes before it moves (why it ended is in it since stop()):
        # a crash between the rename and the index leaves recovery everything it needs to
        # index it as recorded.
        self._journal(clip, durable=True, final_path=final.relative_to(self.data_dir).as_posix())
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(clip.tmp_path, final)
            fsync_dir(final.parent)
            fsync_dir(clip.tmp_path.parent)
        except OSError as exc:
            log.error("cannot move clip %s into place: %s", clip.tmp_path, exc)
            return FinishedClip(clip.order_id, None, str(exc))
        rel = final.relative_to(self.data_dir).as_posix()
        manifest = final.with_suffix(".json")
        started_wall, ended_wall, step = clip_times(
            clip.first_wall, clip.first_t, clip.last_wall, clip.last_t, done.last_t - done.first_t
        )
        if step is not None:
            log.warning("the wall clock stepped by %+.3f s while clip of order %r recorded: its "
                        "times are by the clock after the step", step, clip.order_id)  # fmt: skip
        record = ClipRecord(
            order_id=clip.order_id,
            station=self.cfg.station.name,
            started_at=started_wall,
            ended_at=ended_wall,
            duration_s=done.duration_s,
            frame_count=done.frame_count,
            finish_reason=clip.finish_reason,
            pre_roll_s=self._pre_roll(clip),
            path=rel,
            manifest_path=manifest.relative_to(self.data_dir).as_posix(),
            size=done.size,
            sha256=done.sha256,
            waybills=tuple(clip.waybills),
            events=tuple(
                dataclasses.replace(e, t_clip_s=self._rel(clip, t)) for t, e in clip.events
            ),
            extra={**clip.extra, **({"clock_step_s": step} if step is not None else {})},
        )
        try:
            data = write_manifest(final, rel, record, self.finalizers)
            record = dataclasses.replace(record, size=data["size"], sha256=data["sha256"])
            clip_id = self.ledger.add_clip(record)
        except (OSError, StationError) as exc:
            # The clip is safe in clips/ (e.g. signed, then the index found the disk full): the
            # salvage indexes it in place after the next clean clip, else the next start does.
            log.error("clip %s is on disk but could not be indexed: %s", rel, exc)
            if self.salvage is not None:
                meta = self.journal_data(clip)
                self._unsalvaged.append((final, {**meta, "final_path": rel}))
            return FinishedClip(clip.order_id, None, str(exc))
        journal_path(clip.tmp_path).unlink(missing_ok=True)
        log.info("clip %s indexed (id %d, %d frames, %.1fs, sha256 %s...)",
                 rel, clip_id, done.frame_count, done.duration_s, done.sha256[:12])  # fmt: skip
        return FinishedClip(clip.order_id, dataclasses.replace(record, id=clip_id))

    def _final_path(self, clip: _OpenClip) -> Path:
        assert clip.first_wall is not None
        day = clip.first_wall.strftime("%Y/%m/%d")
        base = clip.tmp_path.stem
        path = self.clips_dir / day / f"{base}.mp4"
        n = 1
        # Never overwrite evidence, nor take the path of a clip retention deleted (its row
        # keeps the path: this clip could not be indexed, and recovery would remove it).
        while path.exists() or self._indexed(path):
            path = self.clips_dir / day / f"{base}-{n}.mp4"
            n += 1
        return path

    def _indexed(self, path: Path) -> bool:
        return self.ledger.clip_by_path(path.relative_to(self.data_dir).as_posix()) is not None
