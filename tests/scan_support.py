"""A scan source whose scans reach the station late (a lagging decode queue, a dark camera)."""

from __future__ import annotations

from station.capture.frames import InputEvent, RawScan


class LateScans:
    """A scan source that hands over each ``(poll_at, scan)`` at the first poll with
    ``now >= poll_at``: a scan stamped ``scan.t`` that reaches the station only then (the
    station polls once more when the camera is back)."""

    def __init__(self, scans: list[tuple[float, RawScan]]) -> None:
        self.scans = sorted(scans, key=lambda s: s[0])

    def start(self) -> None:
        pass

    def poll(self, now: float) -> list[InputEvent]:
        ready = [s for at, s in self.scans if at <= now]
        self.scans = [(at, s) for at, s in self.scans if at > now]
        return list(ready)

    def stop(self) -> None:
        pass
