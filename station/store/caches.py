"""The web site's key-frame cache in the data dir: its file names, its bound and its LRU sweep."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

FRAMES_DIR = Path("cache") / "frames"  # under the data dir
TOUCH_EVERY_S = 3600.0  # a hit refreshes a frame's mtime (its "last used") at most this often
TEMP_STALE_S = 3600.0  # a temporary file older than this was left by a crash mid-write
_FRAME = re.compile(r"(\d+)-([0-9a-f]{0,16})-\d+-\d+\.(?:jpg|bad)")


def frame_name(clip_id: int, sha256: str, t: float, width: int) -> str:
    """A cached frame's file name: only the clip's id, its indexed SHA-256 (16 hex digits),
    the time in ms and the width, so a request never names a file."""
    digest = "".join(c for c in sha256[:16] if c in "0123456789abcdef")
    return f"{int(clip_id)}-{digest}-{round(t * 1000)}-{width}.jpg"


def frame_clip(name: str) -> tuple[int, str] | None:
    """The (clip id, SHA-256 prefix) a cached frame or ``.bad`` marker was cut from; None for a
    name the cache does not make."""
    m = _FRAME.fullmatch(name)
    return (int(m[1]), m[2]) if m else None


class KeptHashes(Protocol):
    """The index's answer the sweep needs (``ClipTable.kept_hashes``)."""

    def kept_hashes(self, clip_ids: Sequence[int]) -> dict[int, str]: ...


@dataclass(frozen=True)
class CachedFile:
    """One file of a cache as the sweep weighs it."""

    name: str
    size: int  # bytes it takes on disk
    used: float  # when it was last used (its mtime: a hit refreshes it)
    stale: bool = False  # of a clip that is gone, or left by a crash: removed first


def sweep_choice(files: Sequence[CachedFile], *, cap: int, need: int = 0) -> list[CachedFile]:
    """Pure: the files to remove, in order: every stale file first (of a deleted clip), then
    the least recently used, until the rest fit in ``cap`` bytes and at least ``need`` bytes
    are freed."""
    out = [f for f in files if f.stale]
    freed = sum(f.size for f in out)
    rest = sorted((f for f in files if not f.stale), key=lambda f: (f.used, f.name))
    total = sum(f.size for f in rest)
    for f in rest:
        if total <= cap and freed >= need:
            break
        out.append(f)
        freed += f.size
        total -= f.size
    return out


class FrameFiles:
    """The key frames the web site cuts from clips, under ``<data_dir>/cache/frames``, kept
    within ``cap_bytes`` (``web.frame_cache_mb``).

    The site writes each frame under a temporary name and renames it, and opens a frame before
    it answers with it, so removing one here never hands a request half a file: a request
    that finds it gone cuts it again. ``sweep`` removes the frames of clips that are no longer
    kept (deleted by retention, or not indexed) first, then the least recently used; retention
    calls ``release`` before it deletes any clip for space. Any thread may call either (one
    sweep at a time); the site's process may be removing files too, so a file already gone
    is fine.
    """

    def __init__(
        self,
        data_dir: Path,
        cap_bytes: int,
        clips: KeptHashes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = data_dir / FRAMES_DIR
        self.cap = cap_bytes
        self.clips = clips
        self.clock = clock
        self._lock = threading.Lock()

    def scan(self) -> list[CachedFile]:
        """Every file in the cache, with whether it is stale (one index read per 500 clips)."""
        found: list[tuple[os.DirEntry[str], os.stat_result]] = []
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return []
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            found.append((e, st))
        names = {e.name: frame_clip(e.name) for e, _ in found}
        kept = self.clips.kept_hashes([ref[0] for ref in names.values() if ref is not None])
        now = self.clock()
        out = []
        for e, st in found:
            ref = names[e.name]
            if e.name.startswith("."):  # a frame being written, or one a crash left
                if now - st.st_mtime < TEMP_STALE_S:
                    continue
                stale = True
            else:
                stale = ref is None or not kept.get(ref[0], "").startswith(ref[1] or "-")
            out.append(CachedFile(e.name, st.st_blocks * 512, st.st_mtime, stale))
        return out

    def usage(self) -> int:
        """Bytes the cache takes on disk."""
        return sum(f.size for f in self.scan())

    def sweep(self, need: int = 0) -> int:
        """Remove stale frames, then the least recently used until the rest fit the cap and
        ``need`` bytes are freed; the bytes freed."""
        with self._lock:
            freed = 0
            removed = 0
            for f in sweep_choice(self.scan(), cap=self.cap, need=need):
                try:
                    (self.dir / f.name).unlink()
                except FileNotFoundError:  # the site's own sweep, or a request, was first
                    continue
                except OSError as exc:  # not the cache's to remove: left, not counted
                    log.warning("frame cache: cannot remove %s: %s", f.name, exc)
                    continue
                freed += f.size
                removed += 1
            if removed:
                log.info(
                    "frame cache: removed %d files (%d KiB) of clips gone or least recently used",
                    removed,
                    freed >> 10,
                )
            return freed

    def release(self, need: int) -> int:
        """Free at least ``need`` bytes if the cache holds them (retention: the disk is below
        its floor); the bytes freed."""
        return self.sweep(need)


__all__ = [
    "FRAMES_DIR",
    "TOUCH_EVERY_S",
    "CachedFile",
    "FrameFiles",
    "frame_clip",
    "frame_name",
    "sweep_choice",
]
