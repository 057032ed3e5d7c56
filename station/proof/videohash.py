"""Digests of a clip's coded video packets: tell a remux, a cut and a re-encode apart."""

from __future__ import annotations

import hashlib
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
