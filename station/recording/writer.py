"""H.264-in-fragmented-MP4 clip writer (libx264 or a Pi 4's V4L2 encoder) that hashes and fsyncs."""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import av
import cv2
import numpy as np

from station.config import ENCODERS, HARDWARE_ENCODERS, RecorderSection
from station.errors import RecordingError
from station.recording.h264_limits import hw_controls, hw_settings
from station.runtime.priority import lower_thread_priority, thread_ids
from station.store.files import fsync_dir, sha256_file

if TYPE_CHECKING:
    from av.video.codeccontext import VideoCodecContext
    from av.video.stream import VideoStream

log = logging.getLogger(__name__)

# 90 kHz is the MPEG clock: fine enough for any camera timing, and what players expect.
TIME_BASE = Fraction(1, 90_000)
_TICKS = 90_000

# One moof+mdat per frame, the moov written up front and the buffer flushed after every packet:
# a file cut off at any byte (kill -9, power cut) still decodes up to the last whole fragment.
MUX_OPTIONS = {
    "movflags": "frag_every_frame+empty_moov+default_base_moof",
    "flush_packets": "1",
}

# FFmpeg AVColor* values (libavutil/pixfmt.h). cv2's BGR2YUV_I420 is BT.601 limited ("tv")
# range; tag the stream so players do not guess BT.709 for HD sizes and shift the colours.
_AVCOL_PRI_SMPTE170M = 6
_AVCOL_TRC_SMPTE170M = 6
_AVCOL_SPC_SMPTE170M = 6
_AVCOL_RANGE_MPEG = 1

PI4_ENCODER_DEVICE = "/dev/video11"

# H.264 NAL unit types (ITU-T H.264 table 7-1): 1-5 carry a picture, 7 is an SPS, 8 a PPS.
_NAL_SPS = 7
_NAL_PPS = 8
_HELD_HEADER_LIMIT = 1 << 20  # parameter sets are bytes; more than this is not a header

_FINISH = object()  # queue sentinel: flush the encoder and close the file
# A live camera at 30 fps loses frames when write() blocks longer than this.
_SLOW_BLOCK_S = 0.1
# ClipWriter queues this many seconds of raw frames (1080p I420: 187 MB) before write() waits.
_CLIP_QUEUE_S = 2.0


def to_i420(bgr: np.ndarray) -> np.ndarray:
    """Convert an HxWx3 uint8 BGR image to a planar I420 array of shape (H*3/2, W).

    OpenCV produces BT.601 limited-range ("tv", Y 16-235) YUV, which is exactly what the
    writer declares to the encoder (yuv420p, smpte170m, tv range). Width and height must be
    even (4:2:0 chroma subsampling).
    """
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got {bgr.shape} {bgr.dtype}")
    h, w = bgr.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"I420 needs an even width and height, got {w}x{h}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B H.264 byte stream (start codes removed), in order."""
    units = []
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        nxt = data.find(b"\x00\x00\x01", begin)
        end = len(data) if nxt == -1 else nxt
        # Zeros before the next start code (its 4-byte form, trailing_zero_8bits) are not
        # part of the unit: a NAL unit ends with its rbsp stop bit, never with a zero byte.
        unit = data[begin:end].rstrip(b"\x00")
        if unit:
            units.append(unit)
        start = nxt
    return units


def parameter_sets(data: bytes) -> bytes | None:
    """SPS and PPS of an Annex B access unit as Annex B extradata; None unless both are there.

    This is what an encoder that makes no global header (h264_v4l2m2m) puts in front of its
    first picture; FFmpeg's MP4 muxer builds the ``avcC`` box from it.
    """
    units = nal_units(data)
    sets = [u for u in units if u[0] & 0x1F in (_NAL_SPS, _NAL_PPS)]
    kinds = {u[0] & 0x1F for u in sets}
    if kinds != {_NAL_SPS, _NAL_PPS}:
        return None
    return b"".join(b"\x00\x00\x00\x01" + u for u in sets)


def has_picture(data: bytes) -> bool:
    """Whether an Annex B packet holds a coded picture (a slice), not only parameter sets/SEI."""
    return any(1 <= u[0] & 0x1F <= 5 for u in nal_units(data))


@dataclass(frozen=True)
class EncoderSettings:
    """The H.264 encoder's settings: the picture it encodes, the encoder, and its options.

    ``encoder="libx264"`` takes ``preset``, ``crf`` and ``threads`` (libx264's thread count;
    0 = its automatic choice, sliced threads because of ``tune=zerolatency``, so no added
    latency); ``"h264_v4l2m2m"``, a Pi 4's hardware encoder, takes ``bitrate_kbps`` (it has
    no CRF). ``global_header`` asks for the SPS/PPS as extradata at open time. The defaults
    are the station's; ``from_recorder`` takes the options from ``[recorder]``. What
    ``ClipWriter``, ``stream.StreamEncoder``, ``stream.ClipMuxer``, ``probe_encoder`` and the
    doctor are given, so they all open (or mux) the same encoder. Settings no encoder could
    take (an unknown encoder, an odd or empty size, a rate, key-frame interval or bitrate that
    is not positive) are a ``ValueError`` here, so none of their users checks them again.
    """

    width: int
    height: int
    fps: float
    encoder: str = "libx264"
    preset: str = "ultrafast"
    crf: int = 23
    keyframe_interval_s: float = 4.0
    bitrate_kbps: int = 4000
    threads: int = 0
    global_header: bool = True

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {self.encoder!r}")
        w, h = self.width, self.height
        if w <= 0 or h <= 0 or w % 2 or h % 2:
            raise ValueError(f"width and height must be positive and even, got {w}x{h}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.keyframe_interval_s <= 0:
            raise ValueError(
                f"keyframe_interval_s must be positive, got {self.keyframe_interval_s}"
            )
        if self.bitrate_kbps <= 0:
            raise ValueError(f"bitrate_kbps must be positive, got {self.bitrate_kbps}")

    @classmethod
    def from_recorder(
        cls, r: RecorderSection, width: int, height: int, fps: float
    ) -> EncoderSettings:
        """The station's encoder: ``[recorder]``'s options at the camera's size and rate."""
        return cls(
            width,
            height,
            fps,
            encoder=r.encoder,
            preset=r.preset,
            crf=r.crf,
            keyframe_interval_s=r.keyframe_interval_s,
            bitrate_kbps=r.bitrate_kbps,
        )

    def for_probe(self) -> EncoderSettings:
        """These settings as the start-up probe and the doctor open them: one libx264 thread
        (the doctor reports one thread's speed) and no global header."""
        return replace(self, threads=1, global_header=False)


def _configure_encoder(ctx: VideoCodecContext, settings: EncoderSettings) -> None:
    """Settings every encoder gets: size, yuv420p, GOP, no B-frames, 90 kHz, BT.601 tags.

    The one place encoder options are set (with ``_x264_options``): the per-clip
    ``ClipWriter``, ``probe_encoder`` and the station's ``stream.StreamEncoder`` use it.
    """
    _set_picture_params(ctx, settings.width, settings.height)
    ctx.gop_size = max(1, round(settings.keyframe_interval_s * settings.fps))
    ctx.max_b_frames = 0  # decode order = presentation order, so dts = pts
    if settings.encoder in HARDWARE_ENCODERS:
        ctx.bit_rate = settings.bitrate_kbps * 1000  # the V4L2 encoder is bitrate-controlled


def _set_picture_params(ctx: VideoCodecContext, width: int, height: int) -> None:
    """Size, yuv420p, 90 kHz and the BT.601 tags: for an encoder and for a muxing stream."""
    ctx.width = width
    ctx.height = height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = TIME_BASE
    ctx.color_primaries = _AVCOL_PRI_SMPTE170M
    ctx.color_trc = _AVCOL_TRC_SMPTE170M
    ctx.colorspace = _AVCOL_SPC_SMPTE170M
    ctx.color_range = _AVCOL_RANGE_MPEG


def _x264_options(preset: str, crf: int, threads: int) -> dict[str, str]:
    return {"preset": preset, "tune": "zerolatency", "crf": str(crf), "threads": str(threads)}


def _video_devices() -> list[str]:
    try:
        return sorted(str(p) for p in Path("/dev").glob("video*"))
    except OSError:
        return []


def encoder_unusable_hint(encoder: str) -> str:
    """Why ``encoder`` probably cannot be opened on this machine, naming the device."""
    if encoder not in HARDWARE_ENCODERS:
        return ""
    devices = _video_devices()
    pi4 = Path(PI4_ENCODER_DEVICE)
    if not devices:
        found = "there is no /dev/video* device at all"
    elif not pi4.exists():
        found = f"{PI4_ENCODER_DEVICE} does not exist (found {', '.join(devices)})"
    elif not os.access(pi4, os.R_OK | os.W_OK):
        found = (
            f"{PI4_ENCODER_DEVICE} exists but this user may not open it "
            "(add the service user to the 'video' group)"
        )
    else:
        found = f"{PI4_ENCODER_DEVICE} exists but is not a usable H.264 encoder"
    return (
        f"FFmpeg's {encoder} needs a V4L2 memory-to-memory H.264 encoder device (a Raspberry "
        f"Pi 4's bcm2835-codec, normally {PI4_ENCODER_DEVICE}); {found}. A Pi 5 or a PC has "
        'no such encoder: set [recorder] encoder = "libx264"'
    )


def open_encoder(ctx: VideoCodecContext, settings: EncoderSettings) -> None:
    """Open ``ctx`` as the station does: the Pi 4's I-period and level for ``settings`` set
    around the open (``hw_controls``), and the worker threads the encoder starts given
    background priority. The one place an encoder is opened (clip writer, stream encoder,
    start-up probe, doctor), so a probe tests the encoder as it will really run."""
    s = settings
    hw = hw_settings(s.width, s.height, s.fps, s.bitrate_kbps, s.keyframe_interval_s)
    before = thread_ids()
    with hw_controls(s.encoder, hw):  # h264_v4l2m2m: I-period + level as the driver takes
        ctx.open()  # ~5 ms; bad encoder settings (or no device) fail here, not later
    # libx264 starts its worker threads here, in the caller's thread: give them background
    # priority, as the writer threads take for themselves, so encoding cannot starve the
    # caller's loop. (A thread another part of the program starts at this very moment may be
    # lowered too; all of those are background threads.)
    for tid in thread_ids() - before:
        lower_thread_priority(tid)


def encoder_context(settings: EncoderSettings) -> VideoCodecContext:
    """An opened codec context set up as a clip's encoder is (``open_encoder``): one place for
    the always-running stream encoder, the start-up probe and the doctor. Raises what
    ``ctx.open()`` raises."""
    # create() is typed for any codec; an H.264 encoder's context is a video one.
    ctx = cast("VideoCodecContext", av.CodecContext.create(settings.encoder, "w"))
    _configure_encoder(ctx, settings)
    ctx.framerate = Fraction(settings.fps).limit_denominator(1001)
    if settings.encoder == "libx264":
        ctx.options = _x264_options(settings.preset, settings.crf, settings.threads)
    if settings.global_header:
        ctx.flags = int(ctx.flags) | int(av.codec.context.Flags.global_header)
    open_encoder(ctx, settings)
    return ctx


def encoder_failed(settings: EncoderSettings, exc: BaseException) -> RecordingError:
    """The error for an encoder that cannot be opened or cannot encode (``exc`` says which),
    with what to do: the one message of the stream encoder, the probe and the doctor."""
    hint = encoder_unusable_hint(settings.encoder)
    return RecordingError(
        f"H.264 encoder {settings.encoder} failed at {settings.width}x{settings.height}: "
        f"{_describe(exc)}" + (f". {hint}" if hint else "")
    )


def encode_test_frames(
    settings: EncoderSettings, pictures: Sequence[np.ndarray], count: int
) -> tuple[list[av.Packet[Any]], float]:
    """Encode ``count`` I420 frames in memory, cycling through ``pictures``, with the probe
    set-up of ``settings`` (``for_probe``), and flush: (the packets, the seconds spent
    encoding). Raises ``RecordingError`` when the encoder cannot be opened or fails."""
    try:
        ctx = encoder_context(settings.for_probe())
        step = max(1, round(_TICKS / settings.fps))
        packets: list[av.Packet[Any]] = []
        t0 = time.perf_counter()
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(pictures[i % len(pictures)], format="yuv420p")
            frame.pts = i * step
            frame.time_base = TIME_BASE
            packets += ctx.encode(frame)
        packets += ctx.encode(None)
        elapsed = time.perf_counter() - t0
    except Exception as exc:
        raise encoder_failed(settings, exc) from exc
    return packets, elapsed


def probe_encoder(settings: EncoderSettings, *, frames: int = 3) -> None:
    """Open the encoder of ``settings`` and encode a few grey frames in memory, or raise
    ``RecordingError``.

    For start-up: a station configured for the Pi 4's hardware encoder learns that it is
    missing (or busy, or refuses the size) before the first order, not in the middle of one.
    Nothing is written to disk.
    """
    encoder, width, height = settings.encoder, settings.width, settings.height
    grey = np.full((height * 3 // 2, width), 128, np.uint8)
    packets, _ = encode_test_frames(settings, [grey], frames)
    pictures = sum(1 for packet in packets if has_picture(bytes(packet)))
    if pictures != frames:
        raise RecordingError(
            f"H.264 encoder {encoder} returned {pictures} pictures for {frames} test frames"
        )
    log.info("encoder %s works at %dx%d (%d test frames)", encoder, width, height, frames)


@dataclass(frozen=True)
class FinishedFile:
    """A closed, fsynced clip. ``sha256`` is the hex digest of exactly the bytes on disk.

    ``duration_s`` is the presentation span (last pts - first pts) plus one nominal frame
    interval, which is what players report; ``first_t``/``last_t`` are the camera-timeline
    times of the first and last frames written.
    """

    path: Path
    sha256: str
    size: int
    frame_count: int
    duration_s: float
    first_t: float
    last_t: float


class _HashingFile:
    """Write-only binary file for ``av.open`` that hashes bytes as they are written.

    The hash stays valid while every write lands at the end of the file. If the muxer ever
    seeks back and overwrites, ``hash_valid`` turns False and the caller re-reads the file.
    The file is created with O_EXCL: a clip never overwrites an existing file.
    """

    def __init__(self, path: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self.fd: int | None = os.open(path, flags, 0o644)
        self._sha = hashlib.sha256()
        self.pos = 0
        self.size = 0
        self.hash_valid = True
        self.dirty = False

    # --- the file-object protocol PyAV's PyIOFile uses -------------------------------------
    def write(self, data: bytes) -> int:
        fd = self._fd()
        view = memoryview(data)
        if self.pos != self.size:
            self.hash_valid = False
        done = 0
        while done < len(view):  # os.write may write less than asked; FFmpeg wants all of it
            done += os.write(fd, view[done:])
        if self.hash_valid:
            self._sha.update(view)
        self.pos += done
        self.size = max(self.size, self.pos)
        self.dirty = True
        return done

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.pos = os.lseek(self._fd(), offset, whence)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self.fd is None

    # --- ours ------------------------------------------------------------------------------
    def fsync(self) -> None:
        os.fsync(self._fd())
        self.dirty = False

    def hexdigest(self) -> str:
        return self._sha.hexdigest()

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def _fd(self) -> int:
        if self.fd is None:
            raise ValueError("I/O operation on closed file")
        return self.fd


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"disk full: {exc}"
    return f"{type(exc).__name__}: {exc}"


class ClipFileThread:
    """What ``ClipWriter`` and ``stream.ClipMuxer`` share: one fragmented MP4 at ``path``
    (``MUX_OPTIONS``, created O_EXCL) written by one daemon thread from a bounded queue,
    hashed as written, fsynced every ``fsync_interval_s`` and at the end (the directory too),
    cut back to its last whole fragment after a failure. Its one H.264 stream is what an
    encoder with ``settings`` makes (``width``, ``height`` and ``fps`` are theirs).

    A subclass sets ``_container`` (before the first fragment), queues its items with
    ``_put`` and says in ``_consume`` how one item becomes fragments (counting ``_packets``
    and moving ``_good_size`` after each); ``_drain`` runs once after the last item.
    ``finish`` is called once from the caller's thread; an error in the thread is stored and
    raised as ``RecordingError`` by the next ``_put``/``finish``.
    """

    _kind = "clip writer"  # for the log lines of a blocked caller

    def __init__(
        self, path: Path, settings: EncoderSettings, fsync_interval_s: float, max_queue: int
    ) -> None:
        if fsync_interval_s <= 0:  # before the file exists: a wrong call leaves nothing behind
            raise ValueError(f"fsync_interval_s must be positive, got {fsync_interval_s}")
        self.path = Path(path)
        self.settings = settings
        self.width, self.height, self.fps = settings.width, settings.height, float(settings.fps)
        self._fsync_interval = fsync_interval_s
        self._nominal_ticks = max(1, round(_TICKS / self.fps))
        self._max_queue = max_queue
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        # Written by the caller's thread only.
        self._first_t: float | None = None
        self._last_t = 0.0
        self._last_pts = -1
        self._finished: FinishedFile | None = None
        self._closed = False
        # Written by the file's thread only (ints and references: atomic under the GIL).
        self._packets = 0
        self._good_size = 0  # file size at the end of the last completely written fragment
        self._completed = False  # the thread flushed, closed and fsynced the file
        self._error: RecordingError | None = None
        self._container: av.container.OutputContainer | None = None
        try:
            self._file = _HashingFile(self.path)
        except FileExistsError as exc:
            raise RecordingError(f"refusing to overwrite existing clip file {self.path}") from exc
        except OSError as exc:
            raise RecordingError(f"cannot create clip file {self.path}: {_describe(exc)}") from exc

    def _start(self, name: str) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"{name}:{self.path.name}", daemon=True
        )
        self._thread.start()

    # --- caller's thread -------------------------------------------------------------------
    def finish(self) -> FinishedFile:
        """Flush, close and fsync the file; return its hash and facts.

        Idempotent after success. After a failure it cleans up and raises RecordingError
        (again on every call). A clip with no frames is an error, the empty file is left.
        """
        if self._finished is not None:
            return self._finished
        if not self._closed:
            self._closed = True
            try:
                if self._thread.is_alive():
                    self._put(_FINISH)
            except RecordingError:
                pass  # the thread failed meanwhile; it is exiting, and the error is raised below
            self._thread.join()
        self._raise_if_failed()
        if not self._completed:
            self._error = RecordingError(f"{self._kind} thread for {self.path} ended unexpectedly")
            raise self._error
        if self._packets == 0 or self._first_t is None:
            self._error = RecordingError(f"clip {self.path} has no frames")
            raise self._error
        self._check_complete()
        try:
            size = self.path.stat().st_size
            digest = self._file.hexdigest()
            if not self._file.hash_valid or size != self._file.size:
                log.info("muxer rewrote %s in place; hashing the finished file", self.path)
                digest = sha256_file(self.path)
        except OSError as exc:
            self._error = RecordingError(f"cannot hash finished clip {self.path}: {exc}")
            raise self._error from exc
        finished = FinishedFile(
            path=self.path,
            sha256=digest,
            size=size,
            frame_count=self._packets,
            duration_s=(self._last_pts + self._nominal_ticks) / _TICKS,
            first_t=self._first_t,
            last_t=self._last_t,
        )
        self._finished = finished
        log.info(
            "clip finished path=%s frames=%d duration=%.2fs size=%d sha256=%s",
            self.path,
            finished.frame_count,
            finished.duration_s,
            size,
            digest,
        )
        return finished

    def _check_complete(self) -> None:
        """After the thread completed, before hashing: a subclass's consistency check."""

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _put(self, item: object) -> None:
        try:
            self._queue.put_nowait(item)
            return
        except queue.Full:
            pass
        # Back-pressure: a faster-than-real-time source (file, synthetic) blocks here all the
        # time, which is fine; a live camera blocking for long drops frames at the source.
        start = last_report = time.monotonic()
        while True:
            self._raise_if_failed()
            if not self._thread.is_alive():
                raise RecordingError(f"{self._kind} thread for {self.path} stopped unexpectedly")
            try:
                self._queue.put(item, timeout=0.2)
                break
            except queue.Full:
                now = time.monotonic()
                if now - last_report >= 5.0:
                    last_report = now
                    log.warning(
                        "%s stuck on %s: caller blocked for %.1f s with %d frames queued",
                        self._kind,
                        self.path.name,
                        now - start,
                        self._max_queue,
                    )
        blocked = time.monotonic() - start
        if blocked >= _SLOW_BLOCK_S:
            log.warning(
                "%s behind on %s: queue of %d frames full, caller blocked %.2f s",
                self._kind,
                self.path.name,
                self._max_queue,
                blocked,
            )

    # --- the file's thread -----------------------------------------------------------------
    def _consume(self, item: object) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        """After the last item, before the container is closed."""

    def _run(self) -> None:
        """The file's thread: the only code touching the container, stream and file."""
        lower_thread_priority()
        last_sync = time.monotonic()
        dir_synced = False
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._fsync_interval)
                except queue.Empty:
                    item = None
                if item is _FINISH:
                    break
                if item is not None:
                    self._consume(item)
                now = time.monotonic()
                if self._file.dirty and now - last_sync >= self._fsync_interval:
                    self._file.fsync()
                    if not dir_synced:  # make the new directory entry survive a power cut
                        fsync_dir(self.path.parent)
                        dir_synced = True
                    last_sync = now
            self._drain()
            if self._container is not None:
                self._container.close()
            self._good_size = self._file.size  # the last fragment and the index are complete
            self._file.fsync()
            fsync_dir(self.path.parent)
            self._completed = True
        except Exception as exc:
            self._error = RecordingError(f"writing clip {self.path} failed: {_describe(exc)}")
            self._error.__cause__ = exc
            log.error("%s", self._error)
            self._abandon()
        finally:
            self._file.close()

    def _abandon(self) -> None:
        """After a failure: release FFmpeg, cut a half-written fragment off, keep the rest.

        The trailer is not attempted (the file is no longer trusted), and the file is cut
        back to the end of the last fragment that was written completely, so what is left
        decodes cleanly to its end.
        """
        try:
            if self._file.fd is not None:
                os.ftruncate(self._file.fd, self._good_size)
                self._file.fsync()
        except OSError as exc:
            log.error("cannot cut %s back to %d bytes: %s", self.path, self._good_size, exc)
        self._file.close()  # closed first: PyAV skips the trailer for a closed file
        if self._container is not None:
            try:
                self._container.close()
            except Exception as exc:  # already failed once; the first error is what matters
                log.debug("closing the failed container for %s: %s", self.path, exc)
        # Unblock a caller waiting in _put so it sees the error promptly.
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass


class ClipWriter(ClipFileThread):
    """Encode one clip to ``path`` as H.264 (yuv420p) in fragmented MP4.

    Not the station's path (that is ``stream.StreamEncoder`` + ``stream.ClipMuxer``, which
    make the same file from an always-running encoder): for test fixtures, tools and the
    hardware-encoder check, where a clip is encoded on its own from raw frames.

    Contract: construct (opens the file, O_EXCL, parent must exist), call ``write`` once per
    frame with I420 data from ``to_i420`` and a strictly increasing camera time ``t``, then
    ``finish`` exactly once for the ``FinishedFile``. Every failure is a ``RecordingError``;
    ``finish`` after a failure is safe (it cleans up and raises the error again). Wrong
    shapes or calls after ``finish`` are programming errors and raise ``ValueError`` /
    ``RuntimeError`` at once.

    Timing: the first frame gets pts 0 and every later one ``round((t - t0) * 90000)``, so the
    real timing (dropped camera frames, stalls) is kept as a variable frame rate. A ``t`` that
    does not advance the pts is nudged one tick past the previous frame and logged; no frame
    is dropped.

    Threads: libx264 ultrafast costs ~8 ms of CPU per 1080p frame on the 2-core x86 dev
    box (more under load, and a Pi is slower), so ``write`` never encodes. It only enqueues
    the array (no copy: do not modify it afterwards) on a bounded queue of 2 s of frames
    (``_CLIP_QUEUE_S``) and returns. One daemon thread owned by this writer ("clip-writer")
    encodes, muxes, hashes and fsyncs; it is the only thread touching the PyAV objects. When
    the queue is full ``write`` blocks (logging a warning when it is long) until there is
    room; frames are never dropped. An error in the thread is stored and raised as
    ``RecordingError`` by the next ``write`` or by ``finish``. ``write``, ``finish`` and the
    properties must be called from one thread (the capture loop).

    Durability: fsync at most every ``fsync_interval_s`` of wall time while frames arrive,
    also when the input pauses with unsynced data, and on ``finish`` (plus the directory
    after the first sync and at the end). A power cut loses at most ~``fsync_interval_s`` of
    video plus whatever was queued; a killed process loses only the last frame or two. After
    a write error the file is cut back to its last complete fragment and left in place.

    Encoders (``settings``, an ``EncoderSettings``): ``encoder="libx264"`` (``preset``,
    ``crf``, ``threads``) or ``"h264_v4l2m2m"``, a Pi 4's hardware encoder (``bitrate_kbps``;
    it has no CRF). Either may hand packets back some frames late (the V4L2 encoder keeps
    several buffers in flight): ``finish`` drains the encoder, and only then must every frame
    have its packet. Packets without a dts get dts = pts (no B-frames). An encoder that gives
    no SPS/PPS at open time (h264_v4l2m2m; libx264 with ``global_header=False``, which exists
    to test this path) has them taken from its first packet into the stream's extradata
    before the file header is written, so the ``avcC`` box is complete; a packet of parameter
    sets alone is joined to the picture after it, so the file has one sample per frame.
    """

    _kind = "encoder"

    def __init__(
        self,
        path: Path,
        settings: EncoderSettings,
        *,
        fsync_interval_s: float = 1.0,
    ) -> None:
        s = settings
        max_queue = max(2, math.ceil(_CLIP_QUEUE_S * float(s.fps)))
        super().__init__(path, s, fsync_interval_s, max_queue)
        self.encoder = s.encoder
        # Written by the caller's thread only.
        self._frames_written = 0
        self._nudged = 0
        # Written by the encoder thread only.
        self._frames_encoded = 0
        self._needs_headers = False  # SPS/PPS still to be taken from the first packet
        self._held = b""  # a packet of parameter sets only, waiting for its picture

        try:
            self._container = av.open(
                self._file, "w", format="mp4", options=dict(MUX_OPTIONS), buffer_size=1 << 18
            )
            x264 = _x264_options(s.preset, s.crf, s.threads) if s.encoder == "libx264" else None
            stream = cast(  # add_stream is typed for any codec name; H.264's is a video stream
                "VideoStream",
                self._container.add_stream(
                    s.encoder, rate=Fraction(self.fps).limit_denominator(1001), options=x264
                ),
            )
            stream.time_base = TIME_BASE
            ctx = stream.codec_context
            _configure_encoder(ctx, s)
            if not s.global_header:
                ctx.flags = int(ctx.flags) & ~int(av.codec.context.Flags.global_header)
            open_encoder(ctx, s)
            # No SPS/PPS yet (h264_v4l2m2m): the muxer would write an empty avcC with the
            # empty moov, and no player could open the file. Take them from the first packet.
            self._needs_headers = not ctx.extradata
            self._stream = stream
        except Exception as exc:
            self._file.close()
            self.path.unlink(missing_ok=True)  # our own empty file, nothing was written
            hint = encoder_unusable_hint(s.encoder)
            raise RecordingError(
                f"cannot set up the H.264/MP4 encoder {s.encoder} for {self.path}: "
                f"{_describe(exc)}" + (f". {hint}" if hint else "")
            ) from exc

        self._start("clip-writer")
        quality = (
            f"preset={s.preset} crf={s.crf}" if s.encoder == "libx264" else f"{s.bitrate_kbps} kb/s"
        )
        log.info(
            "clip started path=%s encoder=%s %s size=%dx%d fps=%.3g gop=%d",
            self.path,
            s.encoder,
            quality,
            s.width,
            s.height,
            self.fps,
            stream.gop_size,
        )

    # --- public, caller's thread ----------------------------------------------------------
    @property
    def frames_written(self) -> int:
        """Frames accepted by ``write`` (queued or already encoded)."""
        return self._frames_written

    @property
    def frames_encoded(self) -> int:
        """Frames the encoder thread has handed to the encoder (their packets may come later)."""
        return self._frames_encoded

    @property
    def backlog(self) -> int:
        """Frames queued and not yet encoded."""
        return self._queue.qsize()

    def write(self, image_i420: np.ndarray, t: float) -> None:
        """Queue one I420 frame (from ``to_i420``) presented at camera time ``t`` seconds."""
        if self._closed:
            raise RuntimeError(f"write() after finish() on {self.path}")
        self._raise_if_failed()
        expected = (self.height * 3 // 2, self.width)
        if image_i420.dtype != np.uint8 or image_i420.shape != expected:
            raise ValueError(
                f"expected an I420 uint8 array of shape {expected}, "
                f"got {image_i420.shape} {image_i420.dtype}"
            )
        if not math.isfinite(t):
            raise ValueError(f"frame time must be finite, got {t!r}")
        if self._first_t is None:
            self._first_t = t
        pts = round((t - self._first_t) * _TICKS)
        if pts <= self._last_pts:
            self._nudged += 1
            if self._nudged == 1 or self._nudged % 100 == 0:
                log.warning(
                    "non-increasing frame time t=%.6f after t=%.6f in %s: pts nudged to "
                    "%d (%d frames nudged so far)",
                    t,
                    self._last_t,
                    self.path.name,
                    self._last_pts + 1,
                    self._nudged,
                )
            pts = self._last_pts + 1
        self._put((image_i420, pts))
        self._last_pts = pts
        self._last_t = t
        self._frames_written += 1

    # --- internals -------------------------------------------------------------------------
    def _check_complete(self) -> None:
        if self._packets != self._frames_written:  # the encoder was drained: one per frame
            log.error(
                "clip %s: %d frames written but %d packets muxed after draining %s",
                self.path,
                self._frames_written,
                self._packets,
                self.encoder,
            )

    def _consume(self, item: object) -> None:
        image, pts = cast("tuple[np.ndarray, int]", item)
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = pts
        frame.time_base = TIME_BASE
        self._mux(self._stream.encode(frame))
        self._frames_encoded += 1

    def _drain(self) -> None:
        self._mux(self._stream.encode(None))  # drain: a buffering encoder's last packets
        if self._held:
            raise RecordingError(f"{self.encoder} ended with parameter sets but no picture")

    def _mux(self, packets: list[av.Packet[Any]]) -> None:
        for packet in packets:
            if self._needs_headers:
                joined = self._take_headers(packet)
                if joined is None:
                    continue  # parameter sets only: they go in front of the next picture
                packet = joined
            if packet.dts is None:
                packet.dts = packet.pts  # no B-frames: decode order is presentation order
            assert self._container is not None  # opened in __init__
            self._container.mux(packet)
            self._packets += 1
            # flush_packets: after each mux the file ends on a complete fragment
            self._good_size = self._file.size

    def _take_headers(self, packet: av.Packet[Any]) -> av.Packet[Any] | None:
        """Before the first mux: SPS/PPS from the first packet(s) into the stream's extradata.

        The MP4 header (empty moov, with avcC) is written by the first ``mux``; the codec
        parameters are copied from the encoder context then, so extradata set here lands in
        the avcC. Returns the packet to mux, or None while only parameter sets have come.
        """
        data = self._held + bytes(packet)
        if not has_picture(data):
            if len(data) > _HELD_HEADER_LIMIT:
                raise RecordingError(f"{self.encoder} produced {len(data)} bytes without a picture")
            self._held = data
            return None
        headers = parameter_sets(data)
        if headers is None:
            raise RecordingError(
                f"{self.encoder} gave no SPS/PPS with its first picture (and none at open "
                "time): the MP4 could not be played"
            )
        self._stream.codec_context.extradata = headers
        self._needs_headers = False
        if not self._held:
            return packet
        self._held = b""
        joined = av.Packet(data)
        joined.pts = packet.pts
        joined.dts = packet.dts
        joined.time_base = packet.time_base
        joined.stream = packet.stream
        joined.is_keyframe = packet.is_keyframe
        return joined


__all__ = [
    "ENCODERS",
    "HARDWARE_ENCODERS",
    "MUX_OPTIONS",
    "PI4_ENCODER_DEVICE",
    "TIME_BASE",
    "ClipFileThread",
    "ClipWriter",
    "EncoderSettings",
    "FinishedFile",
    "encoder_failed",
    "encoder_unusable_hint",
    "has_picture",
    "nal_units",
    "open_encoder",
    "parameter_sets",
    "probe_encoder",
    "to_i420",
]
