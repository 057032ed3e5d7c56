"""Key-frame JPEGs (order scan, waybill, seal) cut from clips with PyAV and cached on disk."""

from __future__ import annotations

import contextlib
import errno
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
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


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


def extract_jpeg(video: Path, t: float, width: int, dest: Path) -> None:
    """Write the frame shown at ``t`` seconds as a JPEG ``width`` pixels wide (atomically).

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
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        image.save(tmp, "JPEG", quality=80)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


class FrameCache:
    """Key-frame JPEGs under ``<data_dir>/cache/frames``, made on first request.

    Names are built only from the clip id, its indexed SHA-256, the time in ms and the width
    (``station.store.caches.frame_name``), so a request never names a file. At most ``slots``
    extractions run at once (the others wait); a clip that cannot be decoded gets a ``.bad``
    marker so it is not retried per view. The station sweeps the folder (``FrameFiles``: least
    recently used first, within ``web.frame_cache_mb``), so a hit refreshes the frame's mtime
    (at most every ``TOUCH_EVERY_S``) and ``read`` cuts a frame again that went as it was found.
    """

    def __init__(self, cache_dir: Path, slots: threading.BoundedSemaphore) -> None:
        self.dir = cache_dir / "frames"
        self.slots = slots

    def path_for(self, clip: ClipRecord, t: float, width: int) -> Path:
        return self.dir / frame_name(clip.id or 0, clip.sha256, t, width)

    def read(self, clip: ClipRecord, video: Path, t: float, width: int) -> bytes | None:
        """The frame's JPEG bytes (cut now unless cached), or None when it cannot be cut."""
        for _ in range(2):  # a sweep may remove it between finding and opening it: cut it again
            path = self.get(clip, video, t, width)
            if path is None:
                return None
            try:
                return path.read_bytes()
            except FileNotFoundError:
                log.info("key frame %s went as it was read; cutting it again", path.name)
        return None

    def get(self, clip: ClipRecord, video: Path, t: float, width: int) -> Path | None:
        dest = self.path_for(clip, t, width)
        bad = dest.with_suffix(".bad")
        if self._hit(dest):
            return dest
        if bad.exists():
            return None
        if not self.slots.acquire(timeout=30):
            log.warning("frame extraction busy; gave up on clip %s", clip.id)
            return None
        try:
            if dest.is_file():
                return dest
            extract_jpeg(video, t, width, dest)
            return dest
        except OSError as exc:
            if exc.errno not in _NO_ROOM:
                return self._bad(clip, t, bad, exc)
            # the disk is full, not the clip bad: no marker, so it is cut once there is room
            log.warning("no room to cache a frame of clip %s: %s", clip.id, exc)
            return None
        except (av.FFmpegError, ValueError) as exc:
            return self._bad(clip, t, bad, exc)
        finally:
            self.slots.release()

    @staticmethod
    def _bad(clip: ClipRecord, t: float, bad: Path, exc: Exception) -> None:
        """Mark the frame as one that cannot be cut (not retried per view)."""
        log.warning("cannot cut a frame at %.2fs from clip %s: %s", t, clip.id, exc)
        try:
            bad.parent.mkdir(parents=True, exist_ok=True)
            bad.write_text(str(exc)[:500], encoding="utf-8")
        except OSError:
            pass

    @staticmethod
    def _hit(dest: Path) -> bool:
        """Whether ``dest`` is cached; a hit marks it used (its mtime) for the LRU sweep."""
        try:
            st = dest.stat()
        except FileNotFoundError:
            return False
        now = time.time()
        if now - st.st_mtime >= TOUCH_EVERY_S:  # not every view: a write per hit wears the card
            # swept meanwhile, or not ours: it is still a hit for this request
            with contextlib.suppress(OSError):
                os.utime(dest, (now, now))
        return True
