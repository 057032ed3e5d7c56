"""sd_notify client and per-frame watchdog, against a real AF_UNIX datagram socket; the
watchdog's time is a fake clock the tests move."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_clock import FakeClock

from station.errors import CameraError
from station.recording.live import LiveWriter
from station.recording.runner import Status
from station.runtime.sdnotify import Notifier, Watchdog, describe, socket_address, watchdog_interval


class Listener:
    """What systemd does: a datagram socket that receives the service's notifications."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.01)

    def messages(self, wait: float = 0.0) -> list[dict[str, str]]:
        """Every datagram received so far (waiting up to ``wait`` s for the first one)."""
        out: list[dict[str, str]] = []
        deadline = time.monotonic() + wait
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                if out or time.monotonic() >= deadline:
                    return out
                continue
            out.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    lst = Listener(str(tmp_path / "notify.sock"))
    yield lst
    lst.close()


def env_for(path: str, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": path, **extra}


def status(frames: int = 0, **kw: object) -> Status:
    base = dict(station="s1", state="idle", order_id=None, waybills=(), elapsed_s=None,
                frames=frames, last_error=None)  # fmt: skip
    base.update(kw)
    return Status(**base)  # type: ignore[arg-type]


IMG = np.zeros((8, 8, 3), np.uint8)


def test_without_notify_socket_everything_is_a_noop() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.stopping() is False
    seen = []
    wd = Watchdog(lambda *a: seen.append(a), environ={})
    wd(IMG, status(1), 0)
    assert len(seen) == 1 and not wd.enabled and not wd.ready_sent


def test_notifier_sends_to_a_path_socket(listener: Listener, tmp_path: Path) -> None:
    n = Notifier.from_env(env_for(str(tmp_path / "notify.sock")))
    assert n.ready("camera up") and n.watchdog() and n.stopping() and n.extend_timeout(30)
    assert listener.messages(wait=1) == [
        {"READY": "1", "STATUS": "camera up"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1"},
        {"EXTEND_TIMEOUT_USEC": "30000000"},
    ]


def test_abstract_socket() -> None:
    name = f"@packcam-test-{os.getpid()}-{time.monotonic_ns()}"
    lst = Listener(socket_address(name))  # type: ignore[arg-type]
    try:
        n = Notifier.from_env(env_for(name))
        assert n.status("hello")
        assert lst.messages(wait=1) == [{"STATUS": "hello"}]
    finally:
        lst.close()


def test_a_status_cannot_inject_assignments(listener: Listener, tmp_path: Path) -> None:
    n = Notifier.from_env(env_for(str(tmp_path / "notify.sock")))
    n.status("order X\nMAINPID=1\nREADY=1")
    (msg,) = listener.messages(wait=1)
    assert set(msg) == {"STATUS"} and "\n" not in msg["STATUS"]


def test_no_listener_is_logged_not_raised(tmp_path: Path, caplog) -> None:
    n = Notifier.from_env(env_for(str(tmp_path / "nobody.sock")))
    assert n.enabled
    assert n.watchdog() is False
    assert n.watchdog() is False
    assert sum("sd_notify" in r.message for r in caplog.records) == 1  # once a minute


@pytest.mark.parametrize(
    ("env", "expect"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], expect) -> None:
    assert watchdog_interval(env) == expect


def test_status_line() -> None:
    rec = status(10, state="recording", order_id="PO-123", elapsed_s=42.7)
    assert describe(rec, 30.0) == "recording PO-123 00:42, 30.0 fps"
    assert describe(status(), 29.96, dropped=3) == "idle, 30.0 fps, 3 dropped"
    assert describe(status(last_error="camera lost: gone"), 0) == (
        "idle, 0.0 fps; last error: camera lost: gone"
    )


def test_ready_on_first_frame_then_pings_at_half_the_watchdog_timeout(
    listener: Listener, tmp_path: Path
) -> None:
    clock = FakeClock()
    env = env_for(str(tmp_path / "notify.sock"), WATCHDOG_USEC="2000000")  # WatchdogSec=2
    wd = Watchdog(environ=env, clock=clock, status_interval_s=10.0)
    assert wd.interval == 1.0
    wd(IMG, status(1), 0)
    (first,) = listener.messages(wait=1)
    assert first["READY"] == "1" and first["STATUS"].startswith("idle")
    frames = 1
    for _ in range(24):  # 3 s of frames at 8 fps (exact binary steps)
        clock.advance(0.125)
        frames += 1
        wd(IMG, status(frames, state="recording", order_id="PO-9", elapsed_s=2.0), 0)
    msgs = listener.messages(wait=1)
    pings = [m for m in msgs if m.get("WATCHDOG") == "1"]
    assert len(pings) == 3 == wd.pings  # one per interval, not one per frame
    assert all("READY" not in m for m in msgs)
    assert pings[-1]["STATUS"] == "recording PO-9 00:02, 8.0 fps"


def test_status_is_refreshed_between_pings(listener: Listener, tmp_path: Path) -> None:
    clock = FakeClock()
    env = env_for(str(tmp_path / "notify.sock"))  # Type=notify without WatchdogSec
    wd = Watchdog(environ=env, clock=clock, status_interval_s=1.0)
    assert wd.interval is None
    for i in range(25):
        wd(IMG, status(i), 0)
        clock.advance(0.1)
    msgs = listener.messages(wait=1)
    assert msgs[0]["READY"] == "1"
    assert [set(m) for m in msgs[1:]] == [{"STATUS"}] * 2
    assert wd.pings == 0


def test_a_failing_inner_callback_does_not_starve_the_watchdog(
    listener: Listener, tmp_path: Path, caplog
) -> None:
    def broken(*_a: object) -> None:
        raise OSError("disk full")

    clock = FakeClock()
    env = env_for(str(tmp_path / "notify.sock"), WATCHDOG_USEC="1000000")
    wd = Watchdog(broken, environ=env, clock=clock)
    for i in range(20):
        wd(IMG, status(i), 0)
        clock.advance(0.1)
    assert wd.pings >= 3
    assert sum("frame callback" in r.message for r in caplog.records) == 1


def test_stands_in_for_the_live_writer(listener: Listener, tmp_path: Path) -> None:
    live = LiveWriter(tmp_path / "data", "s1", interval=0.0)
    wd = Watchdog(live, environ=env_for(str(tmp_path / "notify.sock")))
    wd(IMG, status(1), 0)
    assert (tmp_path / "data/live/s1.json").is_file()
    wd.write_status(status(2), state="stopped")
    assert '"state": "stopped"' in (tmp_path / "data/live/s1.json").read_text()
    wd.stopping("finishing the open clip")
    msgs = listener.messages(wait=1)
    assert msgs[-2:] == [
        {"STATUS": "stopped"},
        {"STOPPING": "1", "STATUS": "finishing the open clip"},
    ]


def test_alive_feeds_the_watchdog_without_frames(listener: Listener, tmp_path: Path) -> None:
    clock = FakeClock()
    env = env_for(str(tmp_path / "notify.sock"), WATCHDOG_USEC="1000000")
    wd = Watchdog(environ=env, clock=clock)
    wd.alive("waiting for camera: cannot open /dev/video7")  # no frame yet: READY first
    for _ in range(2):
        clock.advance(0.6)
        wd.alive("camera lost, retrying in 4 s")
    msgs = listener.messages(wait=1)
    assert msgs[0] == {"READY": "1", "STATUS": "waiting for camera: cannot open /dev/video7"}
    assert [m.get("WATCHDOG") for m in msgs[1:]] == ["1", "1"]
    assert msgs[1]["STATUS"] == "camera lost, retrying in 4 s"


class StallingCamera:
    """Wraps a frame source; each read moves ``clock`` on by ``frame_s``. The reads numbered
    in ``stall_at`` hang (a wedged driver): each releases ``blocked`` and waits for ``go``."""

    def __init__(self, inner, clock: FakeClock, frame_s: float, stall_at: set[int]) -> None:
        self.inner = inner
        self.clock, self.frame_s, self.stall_at = clock, frame_s, stall_at
        self.reads = 0
        self.blocked = threading.Semaphore(0)
        self.go = threading.Semaphore(0)
        self.width, self.height, self.fps = inner.width, inner.height, inner.fps
        self.live = inner.live
        self.scenario = getattr(inner, "scenario", None)

    @property
    def dropped(self) -> int:
        return self.inner.dropped

    def start(self) -> None:
        self.inner.start()

    def read(self, timeout: float = 2.0):
        self.reads += 1
        if self.reads in self.stall_at:
            self.blocked.release()
            self.go.acquire()
        frame = self.inner.read(timeout)
        self.clock.advance(self.frame_s)
        return frame

    def stop(self) -> None:
        self.inner.stop()


def pings(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    return [m for m in messages if m.get("WATCHDOG") == "1"]


@pytest.mark.slow
def test_a_stalled_capture_loop_stops_feeding_the_watchdog(
    cfg, listener: Listener, tmp_path: Path
) -> None:
    """The real capture loop feeds it; when the camera read hangs, the pings stop, however
    long the watchdog's clock runs on; the next frame pings again."""
    from station.capture.synthetic import Scenario, SyntheticCamera
    from station.service import assemble

    cfg = cfg.replace("camera", width=160, height=120, fps=10.0)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    scenario = Scenario.from_dict({"seed": 1, "event": [{"at": 600.0, "kind": "end"}]})
    clock = FakeClock()
    # 0.02 s of the watchdog's clock a frame: a ping every third frame; the 30th read hangs,
    # and after one more frame the 31st.
    cam = StallingCamera(SyntheticCamera(160, 120, 10.0, scenario, realtime=False), clock,
                         frame_s=0.02, stall_at={30, 31})  # fmt: skip
    asm = assemble(cfg, camera=cam, live_view=False)
    env = env_for(str(tmp_path / "notify.sock"), WATCHDOG_USEC="100000")  # 0.05 s pings
    wd = Watchdog(asm.station.on_frame, environ=env, clock=clock)
    asm.station.on_frame = wd
    stop = threading.Event()
    runner = threading.Thread(target=asm.station.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert cam.blocked.acquire(timeout=60)  # the loop is now blocked in camera.read
        before = listener.messages()  # all it sent: it pings before it reads again
        assert before[0]["READY"] == "1"
        assert len(pings(before)) == wd.pings >= 3
        clock.advance(60.0)  # 1200 watchdog intervals, and no frame
        assert listener.messages(wait=0.5) == []  # (a wait only slowness could lengthen)
        assert wd.pings == len(pings(before))
        cam.go.release()  # one frame, then the next read hangs again
        assert cam.blocked.acquire(timeout=60)
        assert len(pings(listener.messages())) == 1 == wd.pings - len(pings(before))
    finally:
        stop.set()
        cam.go.release(5)
        runner.join(timeout=30)
        asm.close()
    assert not runner.is_alive()


class AbsentCamera:
    """A camera that never opens (/dev/video7 with nothing plugged in)."""

    width, height, fps, dropped, live = 160, 120, 10.0, 0, True

    def start(self) -> None:
        raise CameraError("cannot open camera '/dev/video7'")

    def read(self, timeout: float = 2.0):
        raise CameraError("not started")

    def stop(self) -> None:
        pass


class EndlessBackoffStop(threading.Event):
    """The capture loop's stop event; its back-off waits are recorded and last until the event
    is set, as if each were endless: the loop can then only end by being stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []
        self.waiting = threading.Semaphore(0)

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        self.waiting.release()
        return super().wait()


def test_a_stop_ends_the_camera_back_off_at_once(cfg, listener: Listener, tmp_path: Path) -> None:
    """Camera absent: READY=1 saying so, then back-off waits on the stop event, which SIGTERM
    sets; the wait here never ends by itself, yet the loop ends when stopped."""
    from station.service import assemble

    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    asm = assemble(cfg, camera=AbsentCamera(), live_view=False)
    env = env_for(str(tmp_path / "notify.sock"), WATCHDOG_USEC="1000000")
    wd = Watchdog(asm.station.on_frame, environ=env, clock=FakeClock())
    asm.station.on_frame = wd
    stop = EndlessBackoffStop()
    runner = threading.Thread(target=asm.station.run, args=(stop,), daemon=True)
    runner.start()
    try:
        assert stop.waiting.acquire(timeout=30)  # in its first back-off wait
        assert stop.waits == [0.5]
        (ready,) = listener.messages(wait=1)
        assert ready["READY"] == "1" and ready["STATUS"].startswith("waiting for camera")
        stop.set()
        runner.join(timeout=30)
        assert not runner.is_alive()
    finally:
        stop.set()
        runner.join(timeout=30)
        asm.close()
    assert stop.waits == [0.5]  # no second try after the stop


@pytest.mark.slow
def test_packcam_station_under_type_notify(tmp_path: Path) -> None:
    """`packcam station` as systemd runs it: READY=1 after the first frame, WATCHDOG=1 at half
    of WATCHDOG_USEC with a STATUS line, STOPPING=1 on SIGTERM, exit 0."""
    import signal
    import subprocess
    import sys

    cfg = tmp_path / "packcam.toml"
    cfg.write_text(
        f'[station]\ndata_dir = "{tmp_path / "data"}"\n'
        '[camera]\nbackend = "synthetic"\nwidth = 320\nheight = 240\nfps = 10\n'
        "[scanner]\ncamera_decode = false\n[proof]\nenabled = false\n",
        encoding="utf-8",
    )
    listener = Listener(str(tmp_path / "notify.sock"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
           "WATCHDOG_USEC": "1000000"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "station", "station", "--config", str(cfg)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        got: list[dict[str, str]] = []
        deadline = time.monotonic() + 60
        while sum("WATCHDOG" in m for m in got) < 3 and time.monotonic() < deadline:
            got += listener.messages(wait=0.5)
        assert got and got[0].get("READY") == "1", got[:3]
        pings = [m for m in got if "WATCHDOG" in m]
        assert len(pings) >= 3 and all(m["STATUS"].startswith("idle") for m in pings), got
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert any(m.get("STOPPING") == "1" for m in listener.messages(wait=1))
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_packcam_station_without_its_camera_alarms_waits_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """Camera absent at start (/dev/video7): it hung ignoring SIGTERM, no alarm, and systemd
    waited out TimeoutStartSec. Now: READY=1 with "waiting for camera", the alarm in the live
    status, WATCHDOG=1 while it retries with back-off, and SIGTERM ends it cleanly."""
    import json
    import signal
    import subprocess
    import sys

    data = tmp_path / "data"
    cfg = tmp_path / "packcam.toml"
    cfg.write_text(
        f'[station]\ndata_dir = "{data}"\n'
        '[camera]\nbackend = "opencv"\nsource = "/dev/video7"\nwidth = 320\nheight = 240\n'
        "[scanner]\ncamera_decode = false\n[proof]\nenabled = false\n",
        encoding="utf-8",
    )
    listener = Listener(str(tmp_path / "notify.sock"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
           "WATCHDOG_USEC": "1000000"}  # fmt: skip
    log_path = tmp_path / "station.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "station", "station", "--config", str(cfg)],
            env=env,
            stderr=log_file,
        )
        try:
            got: list[dict[str, str]] = []
            deadline = time.monotonic() + 60
            while sum("WATCHDOG" in m for m in got) < 3 and time.monotonic() < deadline:
                got += listener.messages(wait=0.5)
            assert got and got[0].get("READY") == "1", got[:3]
            assert got[0]["STATUS"].startswith("waiting for camera"), got[0]
            assert sum("WATCHDOG" in m for m in got) >= 3, got
            live = json.loads((data / "live" / "station-01.json").read_text(encoding="utf-8"))
            assert (live["alarm"] or "").startswith("camera-lost"), live
            assert proc.poll() is None  # still retrying, not crashed
            # SIGTERM sets the stop event its back-off waits on (timed in-process above)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            listener.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text(errors="replace")
    assert "retrying in 0.5s" in text and "retrying in 1.0s" in text, text[-2000:]
