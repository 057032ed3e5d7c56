"""Evidence-bundle downloads: built once into a size-capped cache on the data disk, with Range."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from station.config import Config
from station.ledger import ClipRecord

log = logging.getLogger(__name__)

CACHE_DIR = Path("cache") / "bundles"
TTL_S = 600.0  # long enough to resume a download with Range, short enough to pick up new tokens
PART_STALE_S = 3600.0
PER_CLIP = 1 << 20  # its manifest, proofs and up to 8 key frames, beside the clip itself


class BundleTooLarge(Exception):
    """The bundle does not fit the cache (or the disk's floor): export it on the station."""


class BundleCache:
    """Bundles under ``<data_dir>/cache/bundles/<key>.zip``, reused for ``ttl_s``.


    The key covers the order and its clips' hashes, so a new clip makes a new bundle. Before a
    build, expired and then the oldest bundles are removed until the new one fits ``cap_bytes``
    and ``room(need)`` (the free-space floor) agrees. A file removed while a download still
    reads it stays readable (Linux frees it on close). One build per key at a time; any server
    thread may call ``get`` (builds run one at a time).
    """

    def __init__(
        self,
        root: Path,
        cap_bytes: int,
        *,
        ttl_s: float = TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.cap = cap_bytes
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self.sweep()

    @staticmethod
    def key(order_id: str, clips: list[ClipRecord]) -> str:
        h = hashlib.sha256(order_id.encode("utf-8", "surrogatepass"))
        for c in sorted(clips, key=lambda c: c.id or 0):
            h.update(f"|{c.id}:{c.sha256}:{c.size}".encode())
        return h.hexdigest()[:40]

    def get(
        self,
        cfg: Config,
        order_id: str,
        clips: list[ClipRecord],
        *,
        room: Callable[[int], bool] = lambda _n: True,
    ) -> Path:
        """The order's bundle file, built now unless a fresh one is cached."""
        key = self.key(order_id, clips)
        path = self.root / f"{key}.zip"
        # one build at a time: they are disk- and CPU-heavy, and a second request for the
        # same order waits and then finds the first one's file
        with self._lock:
            return self._get(cfg, order_id, clips, path, room)

    def _get(
        self,
        cfg: Config,
        order_id: str,
        clips: list[ClipRecord],
        path: Path,
        room: Callable[[int], bool],
    ) -> Path:
        from station.proof.bundle import export_order

        try:
            if self.clock() - path.stat().st_mtime < self.ttl_s:
                return path
        except FileNotFoundError:
            pass
        need = sum(c.size + PER_CLIP for c in clips)
        if need > self.cap:
            raise BundleTooLarge(
                f"the bundle of order {order_id!r} (~{need >> 20} MB) is larger than the "
                f"download cache ({self.cap >> 20} MB)"
            )
        self.sweep(need)
        if not room(need):
            raise BundleTooLarge(f"no room above the free-space floor for ~{need >> 20} MB")
        export_order(cfg, order_id, path)
        return path

    def sweep(self, need: int = 0) -> None:
        """Remove expired bundles and stale partial builds, then the oldest until ``need`` fits."""
        now = self.clock()
        entries = []
        for p in self.root.iterdir():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if p.name.endswith(".part"):
                if now - st.st_mtime > PART_STALE_S:
                    p.unlink(missing_ok=True)
                continue
            if now - st.st_mtime >= self.ttl_s:
                log.debug("bundle cache: %s expired", p.name)
                p.unlink(missing_ok=True)
                continue
            entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _mtime, size, p in sorted(entries, key=lambda e: e[0]):
            if total + need <= self.cap:
                break
            log.info("bundle cache: removing %s (%d MB) to make room", p.name, size >> 20)
            p.unlink(missing_ok=True)
            total -= size

    def total(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*.zip"))
