"""A clip's video without trusting its container: packet digests (tell a remux, a cut and a
re-encode apart) and the key frames a bundle shows (how long it plays: clip_span_s)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

HEAD_PACKETS = 10  # a truncated copy still starts with the recorded first packets
MAX_FRAMES_PER_CLIP = 8
# Two pictures are the same frame when the mean of every 8x8 luma block (what JPEG keeps best:
# its DC coefficient) agrees this closely; another frame or another recording moves whole
# blocks by tens of levels, a JPEG of the same frame by a few.
BLOCK = 8
MAX_BLOCK_DIFF = 12.0


def video_digests(path: Path) -> dict[str, Any] | None:
    """``{"packets", "packets_sha256", "head_sha256"}`` over the first video stream's packet
    payloads in decode order (demuxed, never decoded); None if the file is not a video.

    A stream-copy remux keeps every payload (same digests, other file bytes); a cut keeps the
    head; a re-encode or another recording changes the head.
    """
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            whole, head = hashlib.sha256(), hashlib.sha256()
            n = 0
            for p in c.demux(c.streams.video[0]):
                if not p.size:
                    continue
                data = bytes(p)
                whole.update(len(data).to_bytes(4, "big") + data)
                if n < HEAD_PACKETS:
                    head.update(len(data).to_bytes(4, "big") + data)
                n += 1
    except Exception:  # any unreadable file simply is "not a video" here
        return None
    return {"packets": n, "packets_sha256": whole.hexdigest(), "head_sha256": head.hexdigest()}


def _seconds(value: Any) -> float | None:
    """A signed number of seconds as a finite float; None for anything else (a 400-digit
    integer is valid JSON, but no float holds it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def keyframe_times(body: dict[str, Any]) -> list[tuple[float, str]]:
    """(seconds into the clip, label) for the first frame, each scan event and the last frame
    of a clip's signed manifest ``body``: the key frames a bundle shows."""
    duration = _seconds(body.get("duration_s")) or 0.0
    out: list[tuple[float, str]] = [(0.0, "start")]
    for ev in body.get("events", []):
        t = _seconds(ev.get("t_clip_s"))
        if t is not None:
            out.append((max(0.0, t), f"{ev.get('kind', 'scan')}"))
    out.append((max(0.0, duration - 0.2), "end"))
    picked: list[tuple[float, str]] = []
    for t, label in sorted(out):
        if picked and t - picked[-1][0] < 0.5:
            continue
        picked.append((t, label))
    return picked[:MAX_FRAMES_PER_CLIP]


def frames_at(clip: Path, times: list[tuple[float, str]]) -> list[tuple[float, str, Image.Image]]:
    """The picture shown at each (time, label): seek to the keyframe before, decode forward.
    Raises av.FFmpegError, OSError or IndexError (no video stream)."""
    out: list[tuple[float, str, Image.Image]] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        start = stream.start_time or 0
        for t, label in times:
            target = start + int(t / tb) if tb else 0
            container.seek(target, stream=stream, backward=True, any_frame=False)
            chosen = None
            for frame in container.decode(stream):
                chosen = frame
                if frame.pts is not None and frame.pts >= target:
                    break
            if chosen is not None:
                out.append((t, label, chosen.to_image()))  # type: ignore[no-untyped-call]  # PyAV leaves to_image unannotated
    return out


def same_picture(a: Image.Image, b: Image.Image) -> bool:
    """Whether ``a`` and ``b`` show the same frame (one may be a JPEG of the other)."""
    if a.size != b.size:
        return False
    w, h = (a.size[0] // BLOCK) * BLOCK, (a.size[1] // BLOCK) * BLOCK
    if not w or not h:
        return False

    def blocks(img: Image.Image) -> np.ndarray:
        luma = np.asarray(img.convert("L"), dtype=np.float64)[:h, :w]
        means: np.ndarray = luma.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(1, 3))
        return means

    return float(np.abs(blocks(a) - blocks(b)).max()) <= MAX_BLOCK_DIFF
