"""Key-frame JPEGs (order scan, waybill, seal) cut from clips with PyAV and cached on disk."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image

from station.store.caches import TOUCH_EVERY_S, frame_name
from station.store.ledger import ClipRecord

log = logging.getLogger(__name__)

THUMB_WIDTH = 320
FRAME_WIDTH = 640


@dataclass(frozen=True)
class KeyFrame:
    kind: str  # order | waybill | seal | end
    t: float  # seconds from the clip's first frame
    text: str


def keyframes(clip: ClipRecord) -> list[KeyFrame]:
    """The moments worth a picture: order scan, each waybill, the seal (or the clip's end)."""
    last = max(0.0, clip.duration_s - 0.05)
    out: list[KeyFrame] = []
    order_t = next(
        (
            e.t_clip_s
            for e in clip.events
            if e.kind == "order" and e.text == clip.order_id and e.t_clip_s is not None
        ),
        clip.pre_roll_s,
    )
    out.append(KeyFrame("order", min(max(0.0, order_t), last), clip.order_id))
    for w in clip.waybills:
        if w.carrier or w.t_clip_s:  # a real link (search rows carry only the waybill text)
            out.append(KeyFrame("waybill", min(max(0.0, w.t_clip_s), last), w.waybill))
    seal = next(
        (
            e
            for e in reversed(clip.events)
            if e.is_seal and e.t_clip_s is not None  # not a return, sign-out or test card
        ),
        None,
    )
    if seal is not None and seal.t_clip_s is not None:
        out.append(KeyFrame("seal", min(max(0.0, seal.t_clip_s), last), seal.text))
    else:
        out.append(KeyFrame("end", last, clip.finish_reason))
    return out


def extract_jpeg(video: Path, t: float, width: int) -> bytes:
    """The frame shown at ``t`` seconds as JPEG bytes, ``width`` pixels wide at most.

    Seeks to the key frame at or before ``t`` and decodes forward, so the cost is at most one
    GOP of decoding, whatever the clip's length.
    """
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        if tb is None:
            raise ValueError(f"no time base for the video stream of {video}")
        base = float(stream.start_time * tb) if stream.start_time else 0.0
        target = base + max(0.0, t)
        rate = float(stream.average_rate or 25)
        if target > base + 0.5:
            container.seek(int(target / tb), stream=stream, backward=True)
        picked = None
        for frame in container.decode(stream):
            picked = frame
            if frame.time is not None and frame.time >= target - 0.5 / rate:
                break
        if picked is None:
            raise ValueError(f"no video frame in {video}")
        image = picked.to_image()  # type: ignore[no-untyped-call]  # PyAV leaves it unannotated
    if image.width > width:
        image = image.resize(
            (width, max(2, round(image.height * width / image.width))), Image.Resampling.BILINEAR
        )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def store_jpeg(dest: Path, data: bytes) -> None:
    """Put ``data`` at ``dest`` atomically (a temporary name, then a rename): a reader, or the
    station's sweep, sees the whole file or none."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


class FrameCache:
    """Key-frame JPEGs under ``<data_dir>/cache/frames``, made on first request.

    Names are built only from the clip id, its indexed SHA-256, the time in ms and the width
    (``station.store.caches.frame_name``), so a request never names a file. At most ``slots``
    extractions run at once (the others wait); a clip that cannot be decoded gets a ``.bad``
    marker so it is not retried per view. The station sweeps the folder (``FrameFiles``: least
    recently used first, within ``web.frame_cache_mb``; all of it when the disk runs short), so
    ``read`` answers with bytes it holds, never a path the sweep may remove: a cached frame is
    read in one open (gone: cut again), a frame cut now is answered from memory, cached or not
    (a full disk leaves it uncached, no marker), and a hit refreshes the file's mtime (at
    most every ``TOUCH_EVERY_S``) for the LRU sweep.
    """

    def __init__(self, cache_dir: Path, slots: threading.BoundedSemaphore) -> None:
        self.dir = cache_dir / "frames"
        self.slots = slots

    def path_for(self, clip: ClipRecord, t: float, width: int) -> Path:
        return self.dir / frame_name(clip.id or 0, clip.sha256, t, width)

    def read(self, clip: ClipRecord, video: Path, t: float, width: int) -> bytes | None:
        """The frame's JPEG bytes (cut now unless cached), or None when it cannot be cut."""
        dest = self.path_for(clip, t, width)
        bad = dest.with_suffix(".bad")
        data = self._cached(dest)
        if data is not None:
            return data
        if bad.exists():
            return None
        if not self.slots.acquire(timeout=30):
            log.warning("frame extraction busy; gave up on clip %s", clip.id)
            return None
        try:
            data = self._cached(dest)  # cut by another request while this one waited
            if data is not None:
                return data
            try:
                data = extract_jpeg(video, t, width)
            except (av.FFmpegError, OSError, ValueError) as exc:
                log.warning("cannot cut a frame at %.2fs from clip %s: %s", t, clip.id, exc)
                with contextlib.suppress(OSError):
                    bad.parent.mkdir(parents=True, exist_ok=True)
                    bad.write_text(str(exc)[:500], encoding="utf-8")
                return None
            try:  # within the slot: a request waiting for it finds the frame cached
                store_jpeg(dest, data)
            except OSError as exc:  # a full disk, say: the picture is shown, cached next time
                log.warning("cannot cache a frame of clip %s: %s", clip.id, exc)
            return data
        finally:
            self.slots.release()

    @staticmethod
    def _cached(dest: Path) -> bytes | None:
        """``dest``'s bytes if it is cached (one open: the sweep may remove it at any moment);
        a hit marks it used (its mtime) for the LRU sweep."""
        try:
            data = dest.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None
        now = time.time()
        with contextlib.suppress(OSError):  # swept meanwhile: it is still a hit for this request
            if now - dest.stat().st_mtime >= TOUCH_EVERY_S:  # not per view: writes wear the card
                os.utime(dest, (now, now))
        return data
