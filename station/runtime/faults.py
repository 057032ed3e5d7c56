"""Fault injection that ships with the package: a camera that drops out, a disk that fills."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from station.capture.frames import Frame, FrameSource
from station.errors import CameraError
from station.store.retention import DiskProbe, DiskSpace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outage:
    """From ``start`` for ``length``: reads (a non-live camera) or seconds since ``start()``."""

    start: float
    length: float

    def covers(self, x: float) -> bool:
        return self.start <= x < self.start + self.length


def random_outages(
    rng: random.Random, total: float, every: float, length: tuple[float, float]
) -> list[Outage]:
    """Outages about every ``every`` (exponential gaps) over ``total``, each ``length`` long."""
    out: list[Outage] = []
    t = rng.expovariate(1 / every)
    while t < total:
        n = rng.uniform(*length)
        out.append(Outage(t, n))
        t += n + rng.expovariate(1 / every)
    return out


class FlakyCamera:
    """Wraps a FrameSource; during an outage its frames stop and the device cannot be opened.

    A live camera (``inner.live``): outages are in seconds since the first ``start``; ``read``
    waits up to its timeout (a stalled camera) and raises ``CameraError``, and ``start``
    raises ``CameraError`` (the device vanished), so the station's reconnect backoff runs.
    ``stop`` during an outage is ignored (the device is gone); the inner camera is stopped and
    started again by the reconnect that succeeds.

    A non-live camera: outages are counted in ``read`` calls; each failing read consumes one
    inner frame, so the camera timeline moves on as it would. Only the first ``start`` and a
    ``stop`` outside an outage are passed on (a synthetic scene would start over). Same thread
    contract as the inner camera.
    """

    def __init__(
        self,
        inner: FrameSource,
        outages: Sequence[Outage],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.inner = inner
        self.outages = sorted(outages, key=lambda o: o.start)
        self.width, self.height, self.fps = inner.width, inner.height, inner.fps
        self.live = inner.live
        self._clock = clock
        self._halt = threading.Event()  # set by stop(): a read waiting out a stall returns
        self._sleep = sleep or self._halt.wait
        self._inner_running = False
        self._t0: float | None = None
        self._reads = 0
        self.failures = 0
        self.scenario = getattr(inner, "scenario", None)  # scan sources follow the same script

    @property
    def dropped(self) -> int:
        return self.inner.dropped

    def _now(self) -> float:
        if self.live:
            return self._clock() - (self._t0 or 0.0)
        return float(self._reads)

    def _down(self) -> bool:
        x = self._now()
        return any(o.covers(x) for o in self.outages)

    def start(self) -> None:
        self._halt.clear()
        if self._t0 is None:
            self._t0 = self._clock()
        elif self.live and self._down():
            self.failures += 1
            raise CameraError("synthetic fault: camera device not found")
        if not self._inner_running and (self.live or self._reads == 0):
            self.inner.start()
            self._inner_running = True

    def read(self, timeout: float = 2.0) -> Frame | None:
        self._reads += 1
        if self._down():
            self.failures += 1
            if self.live:
                self._sleep(timeout)
                raise CameraError(f"synthetic fault: no frame for {timeout:.1f} s")
            frame = self.inner.read(timeout)  # the timeline moves on
            if frame is None:
                return None
            raise CameraError("synthetic fault: camera lost")
        return self.inner.read(timeout)

    def stop(self) -> None:
        """Ignored during an outage (nothing to stop); passed on otherwise."""
        self._halt.set()
        if self._down() or not self._inner_running:
            return
        self.inner.stop()
        self._inner_running = False


class DiskPressure:
    """A free-space probe that reports the real disk minus ``eat(t)`` bytes (t: seconds)."""

    def __init__(
        self,
        probe: DiskProbe,
        eat: Callable[[float], int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probe = probe
        self.eat = eat
        self._clock = clock
        self._t0 = clock()

    def __call__(self) -> DiskSpace:
        space = self.probe()
        return DiskSpace(max(0, space.free - self.eat(self._clock() - self._t0)), space.total)


class VirtualDisk:
    """A free-space probe for a disk of ``capacity`` bytes holding only ``root``'s files, plus
    ``eat(t)`` bytes of someone else's (t: seconds since creation): retention then really frees
    space by deleting clips, on a disk as small as a test wants."""

    def __init__(
        self,
        root: Path,
        capacity: int,
        eat: Callable[[float], int] = lambda _t: 0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root, self.capacity, self.eat = root, capacity, eat
        self._clock = clock
        self._t0 = clock()
        self._used: tuple[float, int] | None = None

    def used(self) -> int:
        # The capture thread probes once a frame while a clip is open: walk the tree at most
        # ten times a second (a real statvfs costs microseconds, a walk does not).
        now = self._clock()
        if self._used is not None and now - self._used[0] < 0.1:
            return self._used[1]
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # renamed or deleted meanwhile
                    total += os.stat(os.path.join(dirpath, name)).st_size
        self._used = (now, total)
        return total

    def __call__(self) -> DiskSpace:
        taken = self.used() + self.eat(self._clock() - self._t0)
        return DiskSpace(max(0, self.capacity - taken), self.capacity)


__all__ = ["DiskPressure", "FlakyCamera", "Outage", "VirtualDisk", "random_outages"]
