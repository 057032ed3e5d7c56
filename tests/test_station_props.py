"""Property tests of the real Station: fake camera, clock, scanner, guard, encoder and muxer,
random event sequences; the invariants hold in the loop, not only in ``session.step``."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from station import config as config_mod
from station.capture.frames import Frame, InputEvent, PedalPress, RawScan
from station.errors import CameraError, RecordingError
from station.recording import session as ss
from station.recording.recorder import Recorder
from station.recording.runner import Station
from station.recording.stream import EncodedPacket
from station.recording.writer import FinishedFile, to_i420
from station.store.ledger import Ledger

W, H, FPS = 16, 16, 10.0
WALL0 = datetime(2026, 12, 4, 9, 0, 0).astimezone()
REASONS = {r.value for r in ss.FinishReason}


@dataclass
class World:
    """What the fakes share: the script's effects and what the test checks afterwards."""

    refuse: bool = False
    critical: bool = False
    fail_next_write: bool = False
    fail_starts: int = 0
    pending: list[InputEvent] = field(default_factory=list)
    writers: list[FakeWriter] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


class FakeWriter:
    """A clip muxer (PacketSink) that keeps the camera times of its packets and writes a small
    real file."""

    def __init__(self, path: Path, world: World) -> None:
        self.path, self.world = path, world
        self.times: list[float] = []
        self.finishes = 0
        path.write_bytes(b"")

    def write(self, packet: EncodedPacket) -> None:
        if self.world.fail_next_write:
            self.world.fail_next_write = False
            raise RecordingError("writing clip failed: disk full: [Errno 28]")
        if not self.times and not packet.key:
            self.world.violations.append(f"{self.path.name} starts on a non-keyframe")
        self.times.append(packet.t)

    def finish(self) -> FinishedFile:
        self.finishes += 1
        if not self.times:
            raise RecordingError(f"clip {self.path} has no frames")
        data = b"".join(f"{t:.3f}\n".encode() for t in self.times)
        self.path.write_bytes(data)
        return FinishedFile(
            self.path,
            hashlib.sha256(data).hexdigest(),
            len(data),
            len(self.times),
            self.times[-1] - self.times[0] + 1 / FPS,
            self.times[0],
            self.times[-1],
        )


class FakeEncoder:
    """An encoder that hands each frame back as a packet ``lag`` frames later (a V4L2 encoder
    keeps a few), a keyframe every ``gop`` frames or when asked."""

    width, height, fps, encoder = W, H, FPS, "fake"
    extradata = b"\x00\x00\x00\x01\x67"

    def __init__(self, lag: int, gop: int = 15) -> None:
        self.lag, self.gop = lag, gop
        self._queue: list[EncodedPacket] = []
        self._out: list[EncodedPacket] = []
        self._force = True
        self._n = 0

    @property
    def in_flight(self) -> int:
        return len(self._queue) + len(self._out)

    def request_keyframe(self) -> None:
        self._force = True

    def submit(self, image_i420, t, wall, label) -> None:  # type: ignore[no-untyped-def]
        key = self._force or self._n % self.gop == 0
        self._force, self._n = False, self._n + 1
        self._queue.append(EncodedPacket(b"", t, wall, label, key))
        while len(self._queue) > self.lag:
            self._out.append(self._queue.pop(0))

    def drain(self) -> list[EncodedPacket]:
        out, self._out = self._out, []
        return out

    def flush(self) -> list[EncodedPacket]:
        self._out += self._queue
        self._queue = []
        return self.drain()


class SpyRecorder(Recorder):
    """The real recorder, noting every start and how each clip ended."""

    def __init__(self, *a, world: World, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*a, **kw)
        self.world = world
        self.starts: list[str] = []
        self.ends: list[str] = []
        self.last_order: str | None = None  # the order last scanned (refused or not)

    def log_event(self, event, t, **kw) -> None:  # type: ignore[no-untyped-def]
        if event.kind in ("order", "refused"):
            self.last_order = event.text
        super().log_event(event, t, **kw)

    def start(self, order_id: str, t: float, **kw) -> None:  # type: ignore[no-untyped-def]
        if self.recording:
            self.world.violations.append(f"start({order_id}) with a clip open")
        if "resumed_after_s" in kw.get("extra", {}) and order_id != self.last_order:
            # An order resumed after a camera loss is never one scanned before the last order
            # (a refused one included): that parcel is off the table.
            self.world.violations.append(f"{order_id} resumed after {self.last_order} scanned")
        opened = len(self.world.writers)
        try:
            super().start(order_id, t, **kw)
        finally:  # a clip whose pre-roll failed to write was started (and abandoned)
            if len(self.world.writers) > opened:
                self.starts.append(order_id)

    def stop(self, reason: str, t: float) -> None:
        super().stop(reason, t)
        self.ends.append(reason)

    def _abandon(self, clip, exc) -> None:  # type: ignore[no-untyped-def]
        super()._abandon(clip, exc)
        self.ends.append(clip.finish_reason)


class FakeCamera:
    """Plays a script: frames 1/FPS apart, scans and pedal presses at the current time,
    camera losses (with ``k`` failed reopenings), disk and writer faults, stop or end."""

    live = False
    width, height, fps = W, H, FPS

    def __init__(self, script: list[tuple], world: World, stop: threading.Event) -> None:
        self.script, self.world, self.stop_event = list(script), world, stop
        self.t, self.index, self.dropped = 0.0, 0, 0
        self.frames_left = 0

    def start(self) -> None:
        if self.world.fail_starts > 0:
            self.world.fail_starts -= 1
            raise CameraError("cannot open camera: gone")

    def stop(self) -> None:
        pass

    def read(self, timeout: float = 2.0) -> Frame | None:
        while self.frames_left == 0:
            if not self.script:
                return None
            step, *args = self.script.pop(0)
            w = self.world
            if step == "frames":
                self.frames_left = args[0]
            elif step == "scan":
                w.pending.append(RawScan(args[0], "script", self.t))
            elif step == "pedal":
                w.pending.append(PedalPress(self.t))
            elif step == "lose":
                w.fail_starts = args[0]
                self.t += 0.3  # the gap
                raise CameraError("no frame for 0.5 s")
            elif step == "refuse":
                w.refuse = args[0]
            elif step == "critical":
                w.critical = args[0]
            elif step == "fail_write":
                w.fail_next_write = True
            elif step == "stop":
                self.stop_event.set()
                return None
        self.frames_left -= 1
        self.t = round(self.t + 1 / FPS, 6)
        self.index += 1
        image = np.full((H, W, 3), self.index % 256, np.uint8)
        return Frame(image, self.t, WALL0 + timedelta(seconds=self.t), self.index)


class ScriptScanner:
    def __init__(self, world: World) -> None:
        self.world = world

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def poll(self, now: float) -> list[InputEvent]:
        due = [e for e in self.world.pending if e.t <= now]
        self.world.pending = [e for e in self.world.pending if e.t > now]
        return due


class FakeGuard:
    def __init__(self, world: World) -> None:
        self.world = world

    def refusal(self) -> str | None:
        return "disk full: 3 MB free, floor 100 MB" if self.world.refuse else None

    def must_finish_clip(self) -> bool:
        return self.world.critical


@contextlib.contextmanager
def runner_errors() -> Iterator[list[str]]:
    """The messages the capture loop logs with a traceback (a frame or a source that failed)."""
    errors: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: errors.append(r.getMessage()) if r.exc_info else None  # type: ignore[method-assign]
    logging.getLogger("station.recording.runner").addHandler(handler)
    try:
        yield errors
    finally:
        logging.getLogger("station.recording.runner").removeHandler(handler)


class InstantStop(threading.Event):
    """A stop event on a fake clock: back-off waits return at once."""

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


steps = st.one_of(
    st.tuples(st.just("frames"), st.integers(1, 12)),
    st.tuples(
        st.just("scan"),
        st.sampled_from(["PO-A", "PO-B", "PO-C", "SEAL", "SF1234567890123", "OP:alice", "SIGNOUT"]),
    ),
    st.tuples(st.just("pedal")),
    st.tuples(st.just("lose"), st.integers(0, 3)),
    st.tuples(st.just("refuse"), st.booleans()),
    st.tuples(st.just("critical"), st.booleans()),
    st.tuples(st.just("fail_write")),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, max_size=40), st.booleans(), st.sampled_from([0, 3]), st.booleans())
# The order open at a loss, its packer signs out and the next order is refused in the dark.
@example(
    [("scan", "OP:alice"), ("frames", 2), ("scan", "PO-A"), ("frames", 3), ("lose", 0),
     ("scan", "SIGNOUT"), ("scan", "PO-B"), ("frames", 3)], True, 0, True,
)  # fmt: skip
def test_the_real_station_keeps_the_invariants(
    script: list[tuple], stop_at_end: bool, lag: int, require_packer: bool
) -> None:
    """At most one open clip; the session and the recorder agree after every frame; every
    started clip is finished with a reason; no frame is in two clips; each clip shows only
    its own order; every clip starts on a keyframe. The encoded ring, with packets on time
    or three frames late (a V4L2 encoder keeps a few). A clip resumed after a camera loss
    is of the order scanned last (packers signing in and out, orders refused while none is
    when ``require_packer`` is on)."""
    if stop_at_end:
        script = [*script, ("frames", 1), ("stop",)]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_mod.load(None).with_data_dir(Path(tmp) / "data")
        cfg = cfg.replace(
            "session", pre_roll_s=0.5, max_duration_s=3.0, require_packer=require_packer
        )
        cfg = cfg.replace("camera", width=W, height=H, fps=FPS, read_timeout_s=0.5)
        cfg = cfg.replace("proof", enabled=False)
        world = World()
        ledger = Ledger(Path(tmp) / "index.sqlite3")

        def factory(path: Path) -> FakeWriter:
            writer = FakeWriter(path, world)
            world.writers.append(writer)
            return writer

        # The station's encoded ring, with packets ``lag`` frames late.
        rec = SpyRecorder(
            cfg,
            ledger,
            encoder=lambda: FakeEncoder(lag),
            muxer=lambda p, _enc: factory(p),
            world=world,
        )
        stop = InstantStop()
        cam = FakeCamera(script, world, stop)
        station: Station

        def on_frame(_image, status, _dropped) -> None:  # type: ignore[no-untyped-def]
            if (status.state == "recording") != rec.recording:
                world.violations.append(f"session {status.state} but recorder {rec.recording}")

        station = Station(
            cfg,
            cam,
            rec,
            scan_sources=[ScriptScanner(world)],
            to_i420=to_i420,
            on_frame=on_frame,
            guard=FakeGuard(world),
        )
        try:
            with runner_errors() as errors:
                station.run(stop)
        finally:
            ledger.close()
        assert errors == [] and world.violations == []
        assert not rec.recording and isinstance(station.state, ss.Idle)
        # Every started clip was finished exactly once, with a reason.
        assert len(rec.ends) == len(rec.starts) == len(world.writers) == len(rec.finished)
        assert set(rec.ends) <= REASONS
        assert all(w.finishes == 1 for w in world.writers)
        # No frame in two clips, and each clip shows only its own order.
        seen: set[float] = set()
        for w in world.writers:
            assert not seen & set(w.times)
            seen |= set(w.times)
        for f in rec.finished:
            assert {label for label, _n in f.frame_labels} <= {None, f.order_id}
