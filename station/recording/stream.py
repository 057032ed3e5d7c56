"""Encoded pre-roll: one always-running H.264 encoder, a ring of packets, and clip muxers."""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import av
import numpy as np

from station.config import RecorderSection
from station.errors import RecordingError
from station.recording.writer import (
    MUX_OPTIONS,
    TIME_BASE,
    ClipFileThread,
    EncoderSettings,
    _describe,
    _set_picture_params,
    encoder_context,
    encoder_failed,
    has_picture,
    nal_units,
    parameter_sets,
)
from station.runtime.priority import lower_thread_priority

if TYPE_CHECKING:
    from av.video.stream import VideoStream

log = logging.getLogger(__name__)

_TICKS = 90_000
_NAL_IDR = 5
_FINISH = object()
# Frames the encoder may be behind before the capture thread waits for it: each is a whole
# picture (3.1 MB at 1080p), so a queue of 0.5 s (15 frames, 47 MB) was most of the station's
# memory above the libraries; four absorb a hiccup of ~130 ms at 30 fps. Read at construction
# (bench/loop.py sets it for its "before" row).
ENCODER_QUEUE_FRAMES = 4


def yuv420p_frame(image: np.ndarray) -> av.VideoFrame:
    """A PyAV frame over an I420 (H*3/2, W) array's own memory: no copy.

    ``from_ndarray`` copies the planes (3.1 MB and ~1-3 ms per 1080p frame here); the encoders
    copy the picture into their own buffers during ``encode`` anyway (libx264 into its frame
    pool, h264_v4l2m2m into the V4L2 buffers), and the frame keeps the array alive until then.
    The array must not change while it is queued: the station never writes to a frame it
    has submitted.
    """
    if not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    return av.VideoFrame.from_numpy_buffer(image, format="yuv420p")


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One encoded frame: Annex B bytes, the frame's camera/wall time and burned-in label."""

    data: bytes
    t: float
    wall: datetime
    label: str | None
    key: bool  # an IDR picture: a clip may start here


class StreamEncoder:
    """Encodes every frame of the station, all the time (picamera2's encoder + CircularOutput).

    ``submit`` queues an I420 frame (the array is kept by reference: do not modify it) on a
    queue of ``max_queue_frames`` frames (``ENCODER_QUEUE_FRAMES``) and returns, or waits
    while the queue is full; the thread "stream-encoder" (background priority, the only user
    of the codec) encodes it; ``drain`` hands the finished packets to the caller in order. A
    clip then costs no second encode and no burst at its start: its pre-roll is packets
    already made. ``request_keyframe`` makes the next submitted frame an IDR picture (a clip
    starts there). The encoder is ``settings`` (a ``writer.EncoderSettings``) opened by
    ``writer.encoder_context``, the one place encoder options are set. An encoder without
    global headers (h264_v4l2m2m) has its SPS/PPS taken from its first picture
    (``extradata``); a packet of parameter sets alone is joined to the picture after it.

    Errors in the thread are raised as ``RecordingError`` by the next ``submit``/``drain``.
    ``submit``, ``drain``, ``request_keyframe`` and ``flush`` are called from one thread.
    """

    def __init__(self, settings: EncoderSettings, *, max_queue_frames: int | None = None) -> None:
        encoder = settings.encoder
        self.settings = settings
        self.width, self.height, self.fps = settings.width, settings.height, float(settings.fps)
        self.encoder = encoder
        self.keyframe_interval_s = settings.keyframe_interval_s
        frames = ENCODER_QUEUE_FRAMES if max_queue_frames is None else max_queue_frames
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max(1, frames))
        self._out: deque[EncodedPacket] = deque()
        self._submitted = 0
        self._drained = 0
        self._force = False
        self._first_t: float | None = None
        self._last_pts = -1
        self._error: RecordingError | None = None
        self._done = False
        self.extradata: bytes | None = None
        try:
            ctx = encoder_context(settings)
        except Exception as exc:
            raise encoder_failed(settings, exc) from exc
        self._ctx = ctx
        if ctx.extradata:
            self.extradata = bytes(ctx.extradata)
        self._meta: dict[int, tuple[float, datetime, str | None]] = {}
        self._held = b""
        self._thread = threading.Thread(target=self._run, name="stream-encoder", daemon=True)
        self._thread.start()
        log.info("stream encoder %s started at %dx%d@%g (keyframe every %.1f s)",
                 encoder, self.width, self.height, self.fps, self.keyframe_interval_s)  # fmt: skip

    # ---- caller's thread ------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Frames submitted whose packet has not been drained yet."""
        return self._submitted - self._drained

    def request_keyframe(self) -> None:
        self._force = True

    def submit(self, image_i420: np.ndarray, t: float, wall: datetime, label: str | None) -> None:
        self._raise_if_failed()
        if self._first_t is None:
            self._first_t = t
        pts = max(round((t - self._first_t) * _TICKS), self._last_pts + 1)
        self._last_pts = pts
        force, self._force = self._force, False
        item = (image_i420, pts, t, wall, label, force)
        while True:
            try:
                self._queue.put(item, timeout=0.2)
                break
            except queue.Full:
                self._raise_if_failed()
                if not self._thread.is_alive():
                    raise RecordingError("the stream encoder stopped unexpectedly") from None
        self._submitted += 1

    def drain(self) -> list[EncodedPacket]:
        """The packets finished since the last call, in order (never blocks)."""
        out = []
        while self._out:
            out.append(self._out.popleft())
        self._drained += len(out)
        if not out:
            self._raise_if_failed()
        return out

    def flush(self) -> list[EncodedPacket]:
        """End the stream: encode what is queued, drain the encoder, stop the thread."""
        if not self._done:
            self._done = True
            if self._thread.is_alive():
                self._queue.put(_FINISH)
            self._thread.join()
        return self.drain()

    # ---- the thread -----------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        lower_thread_priority()
        try:
            while True:
                item = self._queue.get()
                if item is _FINISH:
                    break
                image, pts, t, wall, label, force = cast(
                    "tuple[np.ndarray, int, float, datetime, str | None, bool]", item
                )
                frame = yuv420p_frame(image)
                frame.pts = pts
                frame.time_base = TIME_BASE
                if force:
                    frame.pict_type = av.video.frame.PictureType.I
                self._meta[pts] = (t, wall, label)
                self._emit(self._ctx.encode(frame))
            self._emit(self._ctx.encode(None))
        except Exception as exc:
            self._error = RecordingError(f"the H.264 stream encoder failed: {_describe(exc)}")
            self._error.__cause__ = exc
            log.error("%s", self._error)

    def _emit(self, packets: list[av.Packet[Any]]) -> None:
        for packet in packets:
            data = self._held + bytes(packet)
            if not has_picture(data):
                self._held = data  # parameter sets only: they go in front of the picture
                continue
            self._held = b""
            units = nal_units(data)
            key = bool(packet.is_keyframe) or any(u[0] & 0x1F == _NAL_IDR for u in units)
            if self.extradata is None:
                self.extradata = parameter_sets(data)
            if packet.pts is None:
                raise RecordingError("the encoder gave a packet without a timestamp")
            t, wall, label = self._meta.pop(packet.pts)
            self._out.append(EncodedPacket(data, t, wall, label, key))


class PacketRing:
    """The last ``keep_s`` seconds of packets, from a keyframe on (CircularOutput's buffer).

    Trimmed so that its first packet is the newest keyframe at or before ``newest - keep_s``:
    a clip can always start ``keep_s`` before now on a keyframe. Capture thread only.
    """

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._packets: deque[EncodedPacket] = deque()

    def __len__(self) -> int:
        return len(self._packets)

    @property
    def nbytes(self) -> int:
        return sum(len(p.data) for p in self._packets)

    def append(self, packet: EncodedPacket) -> None:
        self._packets.append(packet)
        horizon = packet.t - self.keep_s - 1e-6
        # Drop the oldest GOP while the next keyframe is still at or before the horizon.
        while True:
            nxt = next((i for i, p in enumerate(self._packets) if i > 0 and p.key), None)
            if nxt is None or self._packets[nxt].t > horizon:
                break
            for _ in range(nxt):
                self._packets.popleft()
        while self._packets and not self._packets[0].key:  # never start mid-GOP
            self._packets.popleft()

    def start_for(
        self,
        scan_t: float,
        pre_roll_s: float,
        after_t: float | None,
        coming: Sequence[float] = (),
    ) -> float | None:
        """Camera time of the keyframe a clip scanned at ``scan_t`` starts at, or None (start
        at the next keyframe): the newest keyframe at or before ``scan_t - pre_roll_s``, or
        failing that the oldest one at or before ``scan_t``; never one at or before
        ``after_t`` (those frames are another clip's). ``coming``: camera times of frames
        newer than the ring that will be keyframes, their packets still in the encoder."""
        keys = [p.t for p in self._packets if p.key] + sorted(coming)
        keys = [k for k in keys if k <= scan_t + 1e-6]
        if after_t is not None:
            keys = [k for k in keys if k > after_t]
        if not keys:
            return None
        early = [k for k in keys if k <= scan_t - pre_roll_s + 1e-6]
        return early[-1] if early else keys[0]

    def since(self, t: float) -> list[EncodedPacket]:
        return [p for p in self._packets if p.t >= t - 1e-9]


class ClipMuxer(ClipFileThread):
    """Muxes already-encoded packets of one clip into fragmented MP4, hashing while written.

    The same file as ``ClipWriter`` makes, by the same ``writer.ClipFileThread`` (moov first,
    one fragment per frame, flushed after each; hashed as written; fsync every
    ``fsync_interval_s`` and at the end; cut back to the last whole fragment after a write
    error), without encoding: the packets come from the ``StreamEncoder`` with the same
    ``settings`` (their codec, size and rate are the stream's). ``write`` queues a
    packet (the first must be a keyframe) and returns; the thread "clip-muxer" writes.
    ``finish`` once, from the caller's thread. Errors are ``RecordingError`` from the next
    ``write`` or ``finish``.
    """

    _kind = "clip muxer"

    def __init__(
        self,
        path: Path,
        settings: EncoderSettings,
        extradata: Callable[[], bytes | None],
        *,
        fsync_interval_s: float = 1.0,
        max_queue: int = 256,
    ) -> None:
        super().__init__(path, settings, fsync_interval_s, max_queue)
        self._extradata = extradata
        self._stream: av.video.stream.VideoStream | None = None
        self._start("clip-muxer")

    def write(self, packet: EncodedPacket) -> None:
        if self._closed:
            raise RuntimeError(f"write() after finish() on {self.path}")
        self._raise_if_failed()
        if self._first_t is None:
            if not packet.key:
                raise ValueError("a clip must start on a keyframe")
            self._first_t = packet.t
        pts = max(round((packet.t - self._first_t) * _TICKS), self._last_pts + 1)
        self._last_pts, self._last_t = pts, packet.t
        self._put((packet, pts))

    # ---- the thread -----------------------------------------------------------------------

    def _open_container(self) -> None:
        extradata = self._extradata()
        if not extradata:
            raise RecordingError("the encoder gave no SPS/PPS: the MP4 could not be played")
        container = av.open(
            self._file, "w", format="mp4", options=dict(MUX_OPTIONS), buffer_size=1 << 18
        )
        # A stream that only muxes: its codec context comes from a template and is never
        # opened (no second encoder); the parameters are set here, copied at the header.
        scratch = av.open(io.BytesIO(), "w", format="mp4")
        try:
            # add_stream is typed for any codec name; an H.264 stream is a video stream.
            template = scratch.add_stream(self.settings.encoder)
            stream = cast("VideoStream", container.add_stream_from_template(template))
        finally:
            scratch.close()
        stream.time_base = TIME_BASE
        ctx = stream.codec_context
        _set_picture_params(ctx, self.width, self.height)
        ctx.extradata = extradata
        self._container, self._stream = container, stream

    def _consume(self, item: object) -> None:
        packet, pts = cast("tuple[EncodedPacket, int]", item)
        if self._container is None:
            self._open_container()
        container, stream = self._container, self._stream
        assert container is not None and stream is not None  # opened just above
        out = av.Packet(packet.data)
        out.pts = out.dts = pts
        out.time_base = TIME_BASE
        out.stream = stream
        out.is_keyframe = packet.key
        container.mux(out)
        self._packets += 1
        self._good_size = self._file.size


def stream_factories(
    r: RecorderSection, width: int, height: int, fps: float
) -> tuple[Callable[[], StreamEncoder], Callable[[Path, Any], ClipMuxer]]:
    """The ``encoder`` and ``muxer`` factories of a ``Recorder`` as ``[recorder]`` sets them:
    one always-running ``StreamEncoder`` and a ``ClipMuxer`` per clip that takes its SPS/PPS
    from that encoder. The one place they are wired (the station and the tests use it)."""

    settings = EncoderSettings.from_recorder(r, width, height, fps)

    def encoder() -> StreamEncoder:
        # Runs all the time: the pre-roll is encoded packets, not raw frames.
        return StreamEncoder(settings)

    def muxer(path: Path, enc: Any) -> ClipMuxer:
        return ClipMuxer(path, settings, lambda: enc.extradata, fsync_interval_s=r.fsync_interval_s)

    return encoder, muxer


__all__ = [
    "ClipMuxer",
    "EncodedPacket",
    "PacketRing",
    "StreamEncoder",
    "stream_factories",
    "yuv420p_frame",
]
