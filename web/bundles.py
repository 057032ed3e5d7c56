"""Evidence-bundle downloads: asked of the station (which signs them), then served with Range."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from station.proof.exports import (
    ALIVE_S,
    ERROR_TTL_S,
    HEARTBEAT,
    MAX_PENDING,
    REQUEST_SUFFIX,
    TTL_S,
    ExportDirs,
    bundle_key,
    bundle_need,
    read_error,
    read_warnings,
    request_body,
)
from station.store.ledger import ClipRecord

log = logging.getLogger(__name__)

WAIT_S = 30.0
RETRY_AFTER_S = 15


class BundleTooLarge(Exception):
    """The bundle does not fit the cache (or the disk's floor): export it on the station."""


class BundleRefused(Exception):
    """The station refused to build the bundle (``status``: the HTTP status to answer;
    ``code``, ``params``: why, as station/proof/bundle.py ``ExportRefused`` says it)."""

    def __init__(
        self, status: int, message: str, code: str = "", params: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.params = params or {}


class BundleUnavailable(Exception):
    """No bundle now (station not running, or still building): 503 with Retry-After."""

    def __init__(self, message: str, *, station_down: bool, retry_after: int = RETRY_AFTER_S):
        super().__init__(message)
        self.station_down = station_down
        self.retry_after = retry_after


class BundleCache:
    """Bundles the station built, under ``<data_dir>/exports/<key>.zip`` (see
    station/proof/exports.py): this process cannot read the station key, so it asks.

    ``get`` serves a fresh bundle at once; else it writes ``export-requests/<key>.json``
    (``{"order_id": ...}``, temporary name then rename; none if one is already waiting) and
    waits up to ``wait_s`` for the bundle or the station's refusal. The key covers the order
    and its clips' hashes, so a new clip asks for a new bundle. Any server thread may call
    ``get``; at most ``waiters`` wait at once (the rest get 503 at once).
    """

    def __init__(
        self,
        data_dir: Path,
        cap_bytes: int,
        *,
        wait_s: float = WAIT_S,
        poll_s: float = 0.1,
        waiters: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dirs = ExportDirs.in_data_dir(data_dir)
        self.cap = cap_bytes
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.clock = clock
        self._waiters = threading.BoundedSemaphore(waiters)
        legacy = data_dir / "cache" / "bundles"  # where this site built unsigned bundles before
        if legacy.is_dir():
            log.info("removing %s: evidence bundles now come from the station", legacy)
            shutil.rmtree(legacy, ignore_errors=True)

    key = staticmethod(bundle_key)

    def fresh(self, key: str) -> Path | None:
        path = self.dirs.bundle(key)
        try:
            if self.clock() - path.stat().st_mtime < TTL_S:
                return path
        except FileNotFoundError:
            pass
        return None

    def station_alive(self) -> bool:
        try:
            beat = (self.dirs.exports / HEARTBEAT).stat().st_mtime
        except OSError:
            return False
        return self.clock() - beat < ALIVE_S

    def get(self, order_id: str, clips: list[ClipRecord], witness: str = "") -> Path:
        """The order's bundle file, asked of the station unless a fresh one is there.
        ``witness``: what the central witness accepted of the order (``order_witness``): a
        fresh bundle built before a sync moved it is not the one the seller should send."""
        key = self.key(order_id, clips, witness)
        path = self.fresh(key)
        if path is not None:
            return path
        need = bundle_need(clips)
        if need > self.cap:
            raise BundleTooLarge(
                f"the bundle of order {order_id!r} (~{need >> 20} MB) is larger than the "
                f"download cache ({self.cap >> 20} MB)"
            )
        self._raise_refusal(key, since=self.clock() - ERROR_TTL_S)
        if not self.station_alive():
            raise BundleUnavailable(
                "the station is not running: evidence bundles are built and signed there",
                station_down=True,
                retry_after=60,
            )
        if not self._waiters.acquire(blocking=False):
            raise BundleUnavailable("other evidence bundles are being built", station_down=False)
        try:
            asked = self._ask(order_id, key)
            deadline = time.monotonic() + self.wait_s
            while time.monotonic() < deadline:
                path = self.fresh(key)
                if path is not None:
                    return path
                self._raise_refusal(key, since=asked - 1.0)
                if not self.station_alive():
                    raise BundleUnavailable(
                        "the station stopped before it built the bundle", station_down=True
                    )
                time.sleep(self.poll_s)
        finally:
            self._waiters.release()
        log.info(
            "bundle of order %r not ready after %.0f s; the client retries", order_id, self.wait_s
        )
        raise BundleUnavailable("the station is still building the bundle", station_down=False)

    def warnings(self, bundle: Path) -> dict[str, list[Any]]:
        """What the station's export said of ``bundle`` (a path ``get`` returned): for whoever
        downloads it from the order page, not in the bundle (``read_warnings``)."""
        return read_warnings(self.dirs.warnings(bundle.stem))

    def _raise_refusal(self, key: str, *, since: float) -> None:
        err = self.dirs.error(key)
        try:
            if err.stat().st_mtime < since:
                return
        except FileNotFoundError:
            return
        body = read_error(err)
        if body is not None:
            raise BundleRefused(body["status"], body["message"], body["code"], body["params"])

    def _ask(self, order_id: str, key: str) -> float:
        """Leave a request for the station (unless one waits already); when it was asked."""
        req = self.dirs.request(key)
        try:
            return req.stat().st_mtime  # asked already (by another thread or process)
        except FileNotFoundError:
            pass
        try:
            waiting = sum(
                1 for p in self.dirs.requests.iterdir() if p.name.endswith(REQUEST_SUFFIX)
            )
        except FileNotFoundError as exc:
            raise BundleUnavailable(
                f"{self.dirs.requests} is missing: the station creates it", station_down=True
            ) from exc
        if waiting >= MAX_PENDING:
            raise BundleUnavailable("too many evidence bundles waiting", station_down=False)
        tmp = self.dirs.requests / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            tmp.write_bytes(request_body(order_id))
            os.replace(tmp, req)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("asked the station for the evidence bundle of order %r", order_id)
        return self.clock()
