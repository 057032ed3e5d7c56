"""Digests of a clip's coded video packets: tell a remux, a cut and a re-encode apart."""

from __future__ import annotations

import hashlib
import itertools
import statistics
from pathlib import Path
from typing import Any

import av

HEAD_PACKETS = 10  # a truncated copy still starts with the recorded first packets


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


def presentation_s(path: Path) -> float | None:
    """How long the first video stream plays, as the writer and crash recovery state it in
    ``duration_s``: the last packet's pts minus the first's plus one frame (the median step
    between pts), in seconds, from the demuxed packets (never decoded); None if the file is
    not a video or has no timed packet."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            stream = c.streams.video[0]
            tb = float(stream.time_base or 0) or 1 / 90_000
            pts = sorted(
                p.pts for p in c.demux(stream) if p.size and p.pts is not None
            )  # presentation order (B-frames arrive in decode order)
    except Exception:  # any unreadable file simply is "not a video" here
        return None
    if not pts:
        return None
    steps = [b - a for a, b in itertools.pairwise(pts) if b > a]
    frame = statistics.median(steps) if steps else 0
    return float((pts[-1] - pts[0] + frame) * tb)
