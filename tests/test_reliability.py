"""The station under faults: kill -9 at random moments, a full disk, a camera that drops out."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest

from station import config as config_mod
from station.capture.frames import Frame, RawScan
from station.capture.synthetic import Scenario, SyntheticCamera
from station.errors import CameraError
from station.proof import manifest as manifest_mod
from station.proof.keys import StationKey
from station.proof.paths import ProofPaths
from station.proof.verify import audit
from station.runtime.faults import DiskPressure, FlakyCamera, Outage
from station.service import assemble, run_station
from station.store.ledger import ClipRecord, Ledger, ScanEventRecord
from station.store.recovery import recover_data_dir
from station.store.retention import DiskSpace, disk_probe

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
W, H, FPS = 320, 240, 15.0
KILLS = int(os.environ.get("PACKCAM_KILLS", "20"))


def key_events(orders: int, *, every: float = 1.3, seal_every: int = 2) -> list[dict]:
    """Orders typed on the scripted scanner; every ``seal_every``-th one sealed, the rest run
    into the next order ("next-order")."""
    events, t = [], 0.3
    for i in range(orders):
        events.append({"at": round(t, 2), "kind": "key", "text": f"PO-{i:04d}"})
        t += every
        if i % seal_every == 0:
            events.append({"at": round(t, 2), "kind": "key", "text": "SEAL"})
            t += 0.3
    return events


def write_toml(path: Path, data: dict) -> Path:
    def value(v: object) -> str:
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, (dict, list))]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines.extend(f"{kk} = {value(vv)}" for kk, vv in v.items())
        elif isinstance(v, list):
            for item in v:
                lines.append(f"[[{k}]]")
                lines.extend(f"{kk} = {value(vv)}" for kk, vv in item.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def frames_decoded(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


class StoreChecker:
    """Checks a data dir after a crash: indexed clips play fully, hash right, are signed."""

    def __init__(self, cfg: config_mod.Config) -> None:
        self.cfg = cfg
        self.data = cfg.station.data_dir
        self._verified: set[tuple[str, str]] = set()

    def check_indexed(self) -> list:
        led = Ledger.in_data_dir(self.data)
        try:
            clips = led.clips()
        finally:
            led.close()
        pub = None
        for c in clips:
            if (c.path, c.sha256) in self._verified:
                continue
            if pub is None:
                # Loaded only once a clip is indexed: a kill before the first start made the
                # key leaves no key and no clip, which is fine.
                pub = StationKey.load(ProofPaths.from_config(self.cfg).key).public
            path = self.data / c.path
            assert path.is_file(), f"indexed clip {c.path} is not on disk"
            blob = path.read_bytes()
            assert len(blob) == c.size and hashlib.sha256(blob).hexdigest() == c.sha256, c.path
            assert frames_decoded(path) == c.frame_count, f"{c.path} does not play to its end"
            sidecar = json.loads((self.data / c.manifest_path).read_text(encoding="utf-8"))
            signed = manifest_mod.from_sidecar(sidecar)
            assert signed.verify(pub) and signed.body["sha256"] == c.sha256, c.manifest_path
            self._verified.add((c.path, c.sha256))
        return clips

    def unindexed(self) -> set[str]:
        led = Ledger.in_data_dir(self.data)
        try:
            known = {c.path for c in led.stored_clips(include_deleted=True)}
        finally:
            led.close()
        on_disk = {
            p.relative_to(self.data).as_posix() for p in (self.data / "clips").rglob("*.mp4")
        }
        return on_disk - known


def listing(data: Path) -> tuple[set[str], set[str]]:
    tmp = {p.name for p in (data / "tmp").glob("*.mp4")} if (data / "tmp").exists() else set()
    clips = (
        {p.relative_to(data).as_posix() for p in (data / "clips").rglob("*.mp4")}
        if (data / "clips").exists()
        else set()
    )
    return tmp, clips


# ---- kill -9 at random moments -------------------------------------------------------------------


def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    """The real station as a subprocess, SIGKILLed at random moments, restarted on the same data.

    After each restart (once its capture loop runs, i.e. after its own recovery) nothing left
    over from the killed run may remain: no temp clip, no clip without an index row. After each
    kill every indexed clip plays to its last frame, matches its hash and its signed manifest.

    Every fourth run is killed at a random time after the start, wherever that lands
    (imports, recovery, capture); the others are killed at a random time after the station
    reported ready and began a clip, waited for however long a loaded machine takes, so that
    the checks at ready and the interrupted clips do not depend on how fast the machine is.
    """
    data = tmp_path / "data"
    events = key_events(600, every=0.8)
    scenario = write_toml(tmp_path / "scenario.toml", {"seed": 1, "event": events})
    cfg_path = write_toml(
        tmp_path / "station.toml",
        {
            "station": {"name": "kill-test", "data_dir": str(data)},
            "camera": {
                "backend": "synthetic",
                "width": W,
                "height": H,
                "fps": FPS,
                "scenario": str(scenario),
            },
            "scanner": {"camera_decode": False},
            "session": {"pre_roll_s": 1.0},
            "recorder": {"keyframe_interval_s": 1.0},
        },
    )
    cfg = config_mod.load(cfg_path)
    checker = StoreChecker(cfg)
    rng = random.Random(int(os.environ.get("PACKCAM_KILL_SEED", "5")))
    live = data / "live" / "kill-test.json"
    ready_checks = ready_runs = 0
    t_start = time.monotonic()
    for i in range(KILLS):
        tmp_before, clips_before = listing(data)
        log_file = (tmp_path / f"run{i}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "station", "station", "--config", str(cfg_path)],
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        at_ready = i % 4 != 0
        ready_runs += at_ready
        delay = rng.uniform(0.3, 4.0) if not at_ready else rng.uniform(0.0, 3.0)
        # a generous bound on the wait for ready and a clip, not a timing assumption
        give_up = time.monotonic() + 120.0
        kill_at = time.monotonic() + delay if not at_ready else None
        ready = False
        while kill_at is None or time.monotonic() < kill_at:
            assert proc.poll() is None, (tmp_path / f"run{i}.log").read_text()[-2000:]
            if not ready:
                with contextlib.suppress(OSError, ValueError):
                    ready = json.loads(live.read_text())["pid"] == proc.pid
                if ready:
                    # The station recovered what the last kill left before capturing.
                    tmp_now, _ = listing(data)
                    assert not (tmp_before & tmp_now), f"run {i}: temp clips left over"
                    assert not (clips_before & checker.unindexed()), f"run {i}: unindexed"
                    ready_checks += 1
            if kill_at is None and ready and listing(data)[0]:  # recording its first clip
                kill_at = time.monotonic() + delay
            assert kill_at is not None or time.monotonic() < give_up, f"run {i}: never ready"
            time.sleep(0.02)
        proc.kill()
        proc.wait(timeout=10)
        log_file.close()
        assert proc.returncode == -9, (tmp_path / f"run{i}.log").read_text()[-2000:]
        checker.check_indexed()

    # One last recovery (the CLI, as an operator would) and the strict end state.
    out = subprocess.run(
        [sys.executable, "-m", "station", "recover", "--data", str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    clips = checker.check_indexed()
    tmp_left, _ = listing(data)
    assert tmp_left == set() and checker.unindexed() == set()
    report = audit(cfg, check_timestamps=False)
    assert report.ok, "\n".join(report.lines())
    reasons = [c.finish_reason for c in clips]
    elapsed = time.monotonic() - t_start
    logs = "".join((tmp_path / f"run{i}.log").read_text(errors="replace") for i in range(KILLS))
    seen = {what: logs.count(f"recovery: {what}") for what in (
        "recovered (interrupted)", "repaired", "indexed (had no row)", "quarantined",
        "manifest written again", "removing the leftover")}  # fmt: skip
    print(f"\nrecovery at restarts: {seen}")
    print(
        f"\n{KILLS} kills in {elapsed:.0f} s: {len(clips)} clips ({reasons.count('interrupted')}"
        f" interrupted), {ready_checks} restarts checked at ready, quarantined: "
        f"{len(list((data / 'quarantine').glob('*.mp4'))) if (data / 'quarantine').exists() else 0}"
    )
    assert ready_checks >= ready_runs  # every run killed after ready was checked there
    assert reasons.count("interrupted") >= 3 and len(set(reasons)) >= 2


# ---- camera loss ------------------------------------------------------------------------------


def scenario_cfg(cfg: config_mod.Config, **session: float) -> config_mod.Config:
    cfg = cfg.replace("camera", width=160, height=96, fps=10.0, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False)
    return cfg.replace("session", pre_roll_s=0.5, **session)


def run_blinking(
    cfg: config_mod.Config, events: list[dict]
) -> tuple[list[ClipRecord], list[ScanEventRecord]]:
    """The station on a synthetic scene whose camera fails reads 30-31 (0.2 s at 3.0): its
    clips and the scan events indexed outside any clip."""
    scenario = Scenario.from_dict({"seed": 2, "event": events})
    cam = FlakyCamera(SyntheticCamera(160, 96, 10.0, scenario, realtime=False), [Outage(30, 2)])
    asm = assemble(cfg, camera=cam, live_view=False)
    try:
        asm.station.run(threading.Event())
        return asm.ledger.clips(), asm.ledger.unattached_events()
    finally:
        asm.close()


def test_camera_loss_closes_the_clip_and_resumes_the_order_with_the_gap_recorded(
    cfg: config_mod.Config,
) -> None:
    cfg = scenario_cfg(cfg)
    scenario = Scenario.from_dict(
        {
            "seed": 2,
            "event": [
                {"at": 0.5, "kind": "key", "text": "PO-CAM"},
                {"at": 6.0, "kind": "key", "text": "SEAL"},
                {"at": 7.0, "kind": "end"},
            ],
        }
    )
    inner = SyntheticCamera(160, 96, 10.0, scenario, realtime=False)
    cam = FlakyCamera(inner, [Outage(30, 2)])  # reads 31-32 fail: 0.2 s of camera time
    asm = assemble(cfg, camera=cam, live_view=False)
    asm.station.run(threading.Event())
    clips = asm.ledger.clips()
    asm.close()
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-CAM", "camera-lost"),
        ("PO-CAM", "sealed"),
    ]
    assert asm.station.stats.camera_losses == 1 and cam.failures == 2
    data = cfg.station.data_dir
    first = json.loads((data / clips[0].manifest_path).read_text())
    second = json.loads((data / clips[1].manifest_path).read_text())
    assert "resumed_after_s" not in first
    assert second["resumed_after_s"] == pytest.approx(0.3, abs=0.01)  # last frame -> next frame
    gap = second["gap"]
    assert gap["order_at_loss"] == "PO-CAM" and gap["seconds"] == second["resumed_after_s"]
    lost_at = datetime.fromisoformat(gap["camera_lost_at"])
    assert abs((lost_at - datetime.fromisoformat(first["ended_at"])).total_seconds()) < 0.002
    assert second["pre_roll_s"] == 0  # no pre-roll across a gap: it would hide it
    # The resumed clip is named with the time of its first frame, not of the loss.
    start = clips[1].started_at
    assert f"{start:%Y%m%dT%H%M%S}_{start.microsecond // 1000:03d}" in clips[1].path
    assert datetime.fromisoformat(gap["resumed_at"]) == start
    assert asm.alarms is not None and asm.alarms.active() == []  # cleared when frames returned


def test_a_seal_while_the_camera_is_away_ends_the_order_without_an_empty_clip(
    cfg: config_mod.Config,
) -> None:
    cfg = scenario_cfg(cfg).replace("proof", enabled=False)
    clips, stray = run_blinking(cfg, [
        {"at": 0.5, "kind": "key", "text": "PO-S"},
        {"at": 2.95, "kind": "key", "text": "SEAL"},  # typed during the outage
        {"at": 4.0, "kind": "end"},
    ])  # fmt: skip
    notes = [e.note for e in stray]
    assert [c.finish_reason for c in clips] == ["camera-lost"]
    assert "order sealed while the camera was lost" in notes
    assert not (cfg.station.data_dir / "quarantine").exists()  # no empty clip was started


def test_a_return_card_scanned_while_the_camera_is_away_is_the_next_clips(
    cfg: config_mod.Config,
) -> None:
    """PO-K is being packed when the camera blinks; the return card for the next parcel is
    scanned in the dark. PO-K's packing resumes as what it was, an outbound order (a buyer's
    dispute over it must not show an "unboxing of a return"), and the return is PO-R's."""
    cfg = scenario_cfg(cfg).replace("proof", enabled=False)
    clips, _ = run_blinking(cfg, [
        {"at": 0.5, "kind": "key", "text": "PO-K"},
        {"at": 3.05, "kind": "key", "text": "RETURN"},  # during the outage
        {"at": 5.0, "kind": "key", "text": "PO-R"},
        {"at": 7.0, "kind": "key", "text": "SEAL"},
        {"at": 8.0, "kind": "end"},
    ])  # fmt: skip
    assert [(c.order_id, c.finish_reason, c.kind) for c in clips] == [
        ("PO-K", "camera-lost", "order"),
        ("PO-K", "next-order", "order"),
        ("PO-R", "sealed", "return"),
    ]


def test_orders_scanned_while_the_camera_is_away_start_when_it_is_back(
    cfg: config_mod.Config,
) -> None:
    """Found by the soak: orders scanned in the dark made empty clips. Now an order begun and
    sealed in the dark is only logged, and the one still open starts when frames return."""
    cfg = scenario_cfg(cfg).replace("proof", enabled=False)
    clips, stray = run_blinking(cfg, [
        {"at": 2.91, "kind": "key", "text": "PO-D1"},  # all three during the outage
        {"at": 2.93, "kind": "key", "text": "SEAL"},
        {"at": 2.96, "kind": "key", "text": "PO-D2"},
        {"at": 6.5, "kind": "key", "text": "SEAL"},  # after the 3 s debounce of the first
        {"at": 7.5, "kind": "end"},
    ])  # fmt: skip
    logged = [(e.kind, e.text) for e in stray]
    assert [(c.order_id, c.finish_reason) for c in clips] == [("PO-D2", "sealed")]
    assert ("order", "PO-D1") in logged and ("seal", "SEAL") in logged
    manifest = json.loads((cfg.station.data_dir / clips[0].manifest_path).read_text())
    assert manifest["resumed_after_s"] == pytest.approx(0.3, abs=0.01)
    assert "order_scanned_at" in manifest["gap"] and manifest["pre_roll_s"] == 0
    assert not (cfg.station.data_dir / "quarantine").exists()


def test_a_clip_cut_by_a_camera_loss_is_indexed_while_the_camera_is_still_away(
    cfg: config_mod.Config,
) -> None:
    """The camera dies mid-clip and stays dead: the clip is finished and indexed at once
    (findable, archived, on the screen), not when frames come back, hours later perhaps."""
    cfg = scenario_cfg(cfg).replace("proof", enabled=False)
    scenario = Scenario.from_dict({"seed": 2, "event": [
        {"at": 0.5, "kind": "key", "text": "PO-DARK"},
        {"at": 60.0, "kind": "end"},
    ]})  # fmt: skip
    cam = FlakyCamera(SyntheticCamera(160, 96, 10.0, scenario, realtime=False), [Outage(30, 10**9)])
    finished = threading.Event()
    asm = assemble(cfg, camera=cam, live_view=False, on_finished=lambda _r: finished.set())
    stop = threading.Event()
    runner = threading.Thread(target=asm.station.run, args=(stop,))
    runner.start()
    try:
        assert finished.wait(10), "the clip waits in tmp/ for frames that do not come"
        assert asm.station.stats.camera_losses == 1 and cam.failures >= 1  # still away
        assert [(c.order_id, c.finish_reason) for c in asm.ledger.clips()] == [
            ("PO-DARK", "camera-lost")
        ]
        assert [p.name for p in (cfg.station.data_dir / "tmp").iterdir()] == []
    finally:
        stop.set()
        runner.join(30)
        asm.close()


class _GapCamera:
    """A file-like camera (10 fps) that is unplugged after ``before`` frames and plugged back
    in ``gap_s`` seconds later (an evening to the next morning)."""

    width, height, fps, dropped, live = 160, 96, 10.0, 0, False

    def __init__(self, wall0: datetime, before: int, gap_s: float, after: int) -> None:
        self.wall0, self.before, self.gap_s, self.after = wall0, before, gap_s, after
        self.n, self.lost = 0, False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def read(self, timeout: float = 2.0) -> Frame | None:
        if self.n == self.before and not self.lost:
            self.lost = True
            raise CameraError("unplugged")
        if self.n >= self.before + self.after:
            return None
        t = self.n / self.fps + (self.gap_s if self.n >= self.before else 0.0)
        image = np.full((self.height, self.width, 3), self.n * 7 % 256, np.uint8)
        self.n += 1
        return Frame(image, t, self.wall0 + timedelta(seconds=t), self.n - 1)


class _OrderAt:
    """A scanner that types ``text`` at camera time ``at``."""

    def __init__(self, text: str, at: float) -> None:
        self.text, self.at, self.done = text, at, False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def poll(self, now: float) -> list[RawScan]:
        if self.done or now < self.at:
            return []
        self.done = True
        return [RawScan(self.text, "script", now)]


def test_the_first_order_after_a_camera_outage_does_not_start_before_it(
    cfg: config_mod.Config,
) -> None:
    """Idle at 18:00, the camera is unplugged; plugged in at 08:00 and the first order is
    scanned 2.5 s later. Its pre-roll comes from the frames since 08:00, not from the last
    keyframe of the evening before: no 14-hour clip dated (and filed) the day before."""
    cfg = scenario_cfg(cfg).replace("proof", enabled=False)
    cfg = cfg.replace("session", pre_roll_s=3.0)
    evening = datetime(2026, 12, 5, 18, 0, 0).astimezone()
    gap = 14 * 3600.0
    asm = assemble(cfg, camera=_GapCamera(evening, 21, gap, 40), live_view=False)
    asm.station.scan_sources = [_OrderAt("PO-MORNING", gap + 2.1 + 2.5)]
    asm.station.run(threading.Event())
    (clip,) = asm.ledger.clips()
    asm.close()
    back = evening + timedelta(seconds=gap + 2.1)  # the first frame after the outage
    assert clip.order_id == "PO-MORNING"
    assert clip.started_at >= back, clip.started_at
    assert clip.pre_roll_s <= 3.0 and clip.duration_s < 10.0
    assert f"/{back:%Y/%m/%d}/" in clip.path


def test_live_camera_outage_reconnects_with_backoff_and_shows_the_alarm(
    cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = scenario_cfg(cfg).replace("proof", enabled=False)
    scenario = Scenario.from_dict(
        {
            "seed": 2,
            "event": [
                {"at": 0.3, "kind": "key", "text": "PO-LIVE"},
                {"at": 4.5, "kind": "key", "text": "SEAL"},
                {"at": 5.0, "kind": "end"},
            ],
        }
    )
    cam = FlakyCamera(SyntheticCamera(160, 96, 10.0, scenario, realtime=True), [Outage(1.0, 1.6)])
    stop = threading.Event()
    seen: list[dict] = []
    status = cfg.station.data_dir / "live" / "station-01.json"

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                seen.append(json.loads(status.read_text()))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        asm = run_station(cfg, threading.Event(), camera=cam)
    finally:
        stop.set()
        watcher.join()
    assert asm.station.stats.camera_losses == 1
    led = Ledger.in_data_dir(cfg.station.data_dir)
    clips = led.clips()
    led.close()
    assert [c.finish_reason for c in clips] == ["camera-lost", "sealed"]
    assert {c.order_id for c in clips} == {"PO-LIVE"}
    assert any((s.get("alarm") or "").startswith("camera-lost") for s in seen)
    final = json.loads(status.read_text())
    assert final["state"] == "stopped" and final["alarm"] is None
    # reconnect attempts backed off (the outage outlived the first retries)
    assert cam.failures >= 3
    assert "retrying in 0.5s" in caplog.text and "retrying in 1.0s" in caplog.text


# ---- disk full: the injected probe (always) ------------------------------------------------------


class HookedCamera:
    """A non-live camera that runs ``hooks[index]`` before returning that frame."""

    def __init__(self, inner: SyntheticCamera, hooks: dict[int, Callable[[], None]]) -> None:
        self.inner, self.hooks = inner, hooks
        self.width, self.height, self.fps, self.live = inner.width, inner.height, inner.fps, False
        self.scenario = inner.scenario

    @property
    def dropped(self) -> int:
        return 0

    def start(self) -> None:
        self.inner.start()

    def read(self, timeout: float = 2.0) -> Frame | None:
        frame = self.inner.read(timeout)
        if frame is not None and frame.index in self.hooks:
            self.hooks[frame.index]()
        return frame

    def stop(self) -> None:
        self.inner.stop()


def test_disk_full_finishes_the_clip_refuses_new_ones_and_alarms(
    cfg: config_mod.Config, tmp_path: Path
) -> None:
    hook_out = tmp_path / "beeps.txt"
    beeper = tmp_path / "beep.py"
    beeper.write_text(f"import sys\nopen({str(hook_out)!r}, 'a').write(sys.argv[-1] + '\\n')\n")
    cfg = scenario_cfg(cfg).replace(
        "retention", free_floor_mb=100, alarm_command=f"{sys.executable} {beeper}"
    )
    scenario = Scenario.from_dict(
        {
            "seed": 4,
            "event": [
                {"at": 0.5, "kind": "key", "text": "PO-A"},  # recording when the disk fills
                {"at": 4.0, "kind": "key", "text": "PO-B"},  # refused: disk full
                {"at": 5.0, "kind": "key", "text": "SEAL"},
                {"at": 8.0, "kind": "key", "text": "PO-C"},  # space is back: recorded
                {"at": 10.0, "kind": "key", "text": "SEAL"},
                {"at": 10.5, "kind": "end"},
            ],
        }
    )
    free = {"bytes": 10 << 30}
    probe = DiskPressure(
        lambda: DiskSpace(10 << 30, 20 << 30), lambda _t: (10 << 30) - free["bytes"]
    )
    asm_box: dict = {}
    snapshots: dict[str, object] = {}

    def fill() -> None:  # 30 MB free < half the floor: no clip may be deleted (all young)
        free["bytes"] = 30 << 20
        asm_box["asm"].retention.check()

    def during() -> None:
        snapshots["status"] = asm_box["asm"].station.status()

    def freed() -> None:
        free["bytes"] = 10 << 30
        asm_box["asm"].retention.check()

    inner = SyntheticCamera(160, 96, 10.0, scenario, realtime=False)
    cam = HookedCamera(inner, {20: fill, 50: during, 70: freed})
    asm = assemble(cfg, camera=cam, live_view=False, probe=probe)
    asm_box["asm"] = asm
    asm.station.run(threading.Event())
    clips = asm.ledger.clips()
    events = asm.ledger.unattached_events()
    alarms = asm.ledger.alarms(active_only=False)
    asm.close()
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-A", "disk-full"),
        ("PO-C", "sealed"),
    ]
    refused = [e for e in events if e.kind == "refused"]
    assert [e.text for e in refused] == ["PO-B"] and "disk full" in refused[0].note
    status = snapshots["status"]
    assert status.alarm.startswith("disk-full: 30 MB free, floor 100 MB")  # type: ignore[attr-defined]
    assert [a.kind for a in alarms] == ["disk-full"] and alarms[0].cleared_utc  # cleared again
    deadline = time.monotonic() + 10
    while not (hook_out.exists() and hook_out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "disk-full: 30 MB free" in hook_out.read_text()


# ---- disk full: a real small filesystem ------------------------------------------------------


@contextlib.contextmanager
def small_fs(where: Path, size_mb: int) -> Iterator[Path]:
    where.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        pytest.skip(
            f"cannot mount a small tmpfs here (needs root/CAP_SYS_ADMIN, e.g. not in an "
            f"unprivileged container): {exc} {err.decode(errors='replace').strip()}"
        )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def test_real_full_disk_keeps_partial_clips_and_the_station_running(
    cfg: config_mod.Config, tmp_path: Path
) -> None:
    """A 12 MB tmpfs: the writer hits ENOSPC mid-clip; nothing recorded is lost."""
    with small_fs(tmp_path / "fs", 12) as fs:
        cfg = scenario_cfg(cfg.with_data_dir(fs / "data"), max_duration_s=3.0)
        cfg = cfg.replace("camera", width=320, height=240)
        cfg = cfg.replace("retention", free_floor_mb=0)  # no floor: let the disk really fill
        events = [{"at": 0.3 + 2.5 * i, "kind": "key", "text": f"PO-{i}"} for i in range(8)]
        scenario = Scenario.from_dict({"seed": 5, "event": [*events, {"at": 20.0, "kind": "end"}]})
        first = assemble(
            cfg, live_view=False, camera=SyntheticCamera(320, 240, 10, scenario, False)
        )
        first.recorder.close()  # only to create the index and the station key before filling
        first.close()
        ballast = fs / "ballast"
        with ballast.open("wb") as f:  # leave about 1.2 MB free: a few clips' worth
            left = shutil.disk_usage(fs).free - (1200 << 10)
            while left > 0:
                left -= f.write(os.urandom(min(left, 1 << 20)))
        cam = SyntheticCamera(320, 240, 10, scenario, realtime=False)
        finished: list = []
        asm = assemble(cfg, camera=cam, live_view=False, on_finished=finished.append)
        stats = asm.station.run(threading.Event())  # must return normally at the end of input
        asm.close()
        assert stats.frames == 200  # every frame was processed although the disk was full
        errors = [f.error for f in finished if f.error]
        assert any("space" in e or "full" in e for e in errors), finished

        ballast.unlink()  # an operator makes room; the next start recovers everything
        report = recover_data_dir(cfg)
        assert report.ok, report.lines()
        checker = StoreChecker(cfg)
        clips = checker.check_indexed()
        assert listing(cfg.station.data_dir)[0] == set() and checker.unindexed() == set()
        # The clips the full disk cut are kept and indexed: "interrupted" when their journal
        # could say so; else as they were stopped (the next order), their note saying they
        # were not finished (the disk had no room left for even the journal's update).
        failed = {f.order_id for f in finished if f.error}
        cut = [c for c in clips if c.order_id in failed]
        assert cut, (clips, failed)
        for c in cut:
            body = json.loads((cfg.station.data_dir / c.manifest_path).read_text())
            if "recovery" not in body:
                # Finished, signed and moved into place; only its index row found the disk
                # full (which write fills it first is the filesystem's timing): indexed by
                # recovery with its own signed manifest, unaltered.
                assert body["sha256"] == c.sha256 and c.finish_reason != "interrupted", c
                continue
            note = body["recovery"]["note"]
            assert c.finish_reason == "interrupted" or "not finished" in note, (c, note)
        assert audit(cfg, check_timestamps=False).ok

        # A floor above what is free, with nothing old enough to delete: new clips refused.
        free_mb = shutil.disk_usage(fs).free >> 20
        cfg = cfg.replace("retention", free_floor_mb=free_mb + 1)
        asm = assemble(cfg, camera=SyntheticCamera(320, 240, 10, scenario, False), live_view=False)
        asm.retention.check()  # type: ignore[union-attr]
        asm.station.run(threading.Event())
        assert len(asm.ledger.clips()) == len(clips)  # nothing new was recorded
        assert {e.text for e in asm.ledger.unattached_events() if e.kind == "refused"} >= {"PO-0"}
        assert asm.ledger.alarms()[0].kind == "disk-full"
        asm.close()
        assert disk_probe(fs)().total <= 13 << 20


class NoisyCamera:
    """A non-live synthetic scene whose pictures are noise: ~100 KB per encoded 320x240 frame,
    so a clip fills a small disk within seconds."""

    def __init__(self, inner: SyntheticCamera, seed: int) -> None:
        self.inner, self.rng = inner, np.random.default_rng(seed)
        self.width, self.height, self.fps, self.live = inner.width, inner.height, inner.fps, False
        self.scenario, self.dropped = inner.scenario, 0

    def start(self) -> None:
        self.inner.start()

    def read(self, timeout: float = 2.0) -> Frame | None:
        frame = self.inner.read(timeout)
        if frame is None:
            return None
        noise = self.rng.integers(0, 256, frame.image.shape, dtype=np.uint8)
        return dataclasses.replace(frame, image=noise)

    def stop(self) -> None:
        self.inner.stop()


def test_the_open_clip_is_finished_at_the_disk_floor_before_enospc_every_time(
    cfg: config_mod.Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 fills of a real small disk by the clip itself: every time the clip is finished as
    "disk-full" while there is room for it, never cut by ENOSPC and salvaged."""
    fills = 20
    with small_fs(tmp_path / "fs", 40) as fs:
        reasons, errors = [], []
        for i in range(fills):
            data = fs / f"data-{i}"
            run_cfg = scenario_cfg(cfg.with_data_dir(data), max_duration_s=60.0)
            run_cfg = run_cfg.replace("camera", width=320, height=240)
            run_cfg = run_cfg.replace("retention", free_floor_mb=8).replace("proof", enabled=False)
            events = [{"at": 0.3, "kind": "key", "text": f"PO-FILL-{i}"}]
            scenario = Scenario.from_dict(
                {"seed": i, "event": [*events, {"at": 40.0, "kind": "end"}]}  # ~22 MB of noise
            )
            ballast = fs / "ballast"
            slack = random.Random(i).randint(200 << 10, 2 << 20)  # above the floor at the start
            with ballast.open("wb") as f:
                left = shutil.disk_usage(fs).free - (8 << 20) - slack - (1 << 20)  # 1 MB: index
                while left > 0:
                    left -= f.write(bytes(min(left, 1 << 20)))
            finished: list = []
            cam = NoisyCamera(SyntheticCamera(320, 240, 10.0, scenario, realtime=False), seed=i)
            run_station(run_cfg, threading.Event(), camera=cam, live_view=False,
                        on_finished=finished.append)  # fmt: skip
            reasons += [f.record.finish_reason if f.record else "lost" for f in finished]
            errors += [f.error for f in finished if f.error]
            assert shutil.disk_usage(fs).free > 0
            shutil.rmtree(data)
            ballast.unlink()
    assert errors == [] and "No space left" not in caplog.text
    assert reasons == ["disk-full"] * fills, reasons


def test_live_status_keeps_changing_on_a_full_disk(tmp_path: Path) -> None:
    """It froze at "recording" for 40 s while the disk was full; now it is rewritten in place."""
    from station.recording.live import LiveWriter
    from station.recording.runner import Status

    with small_fs(tmp_path / "fs", 1) as fs:
        live = LiveWriter(fs, "台 1")
        image = np.zeros((96, 160, 3), np.uint8)
        live(image, Status("台 1", "recording", "PO-1", (), 1.0, 10, None))
        status = fs / "live" / f"{live.stem}.json"
        assert json.loads(status.read_text())["state"] == "recording"
        with contextlib.suppress(OSError), (fs / "ballast").open("wb") as f:
            while True:
                f.write(bytes(64 << 10))
                f.flush()
        assert shutil.disk_usage(fs).free < 64 << 10
        live._next = 0.0  # the next frame is due
        alarm = "disk-full: 0 MB free, floor 100 MB"
        live(image, Status("台 1", "idle", None, (), None, 11, "disk full", alarm))
        doc = json.loads(status.read_text())
        assert (doc["state"], doc["alarm"], doc["frames"]) == ("idle", alarm, 11)
        assert sorted(p.name for p in (fs / "live").iterdir()) == [f"{live.stem}.jpg", status.name]
