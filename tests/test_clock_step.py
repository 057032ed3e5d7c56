"""A clip that records while NTP steps the wall clock: its times, its manifest, its verdicts."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    TsaServer,
    build_store,
    forge_log,
    run_kit,
    tsa_ec,
)
from scan_support import LateScans

from station import config as config_mod
from station.capture.frames import Frame, InputEvent, RawScan
from station.capture.synthetic import Scenario, SyntheticCamera
from station.proof import standalone_verify
from station.proof import verify as verify_mod
from station.proof.bundle import export_order
from station.proof.finalizer import ProofFinalizer
from station.proof.keys import StationKey
from station.proof.trust import Anchors
from station.proof.verify import AUTHENTIC, TAMPERED, audit, verify_bundle
from station.recording.recorder import clock_step_s
from station.service import assemble
from station.store.ledger import ClipRecord, Ledger
from station.store.recovery import recover_data_dir

W, H, FPS = 320, 192, 10.0
ORDER = "PO-STEP-1"
STEP_AT = 3.0  # camera seconds: the scan is at 1.0, the seal at 5.0


class SteppedClock:
    """The station's camera, its frames' wall time stepped by ``step`` from camera time
    ``at`` on: NTP setting the station's clock right while a clip records."""

    def __init__(self, inner: SyntheticCamera, at: float, step: timedelta) -> None:
        self.inner, self.at, self.step = inner, at, step

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read(self, timeout: float) -> Frame | None:
        frame = self.inner.read(timeout)
        if frame is not None and frame.t >= self.at:
            frame = dataclasses.replace(frame, wall=frame.wall + self.step)
        return frame


def record_across_a_step(cfg: config_mod.Config, start: datetime, step: timedelta) -> ClipRecord:
    """One order packed at the real station while its clock steps by ``step`` mid-clip."""
    script = {"seed": 4, "event": [{"at": 8.0, "kind": "end"}]}
    cam = SyntheticCamera(W, H, FPS, Scenario.from_dict(script), realtime=False, start_wall=start)
    asm = assemble(cfg, camera=SteppedClock(cam, STEP_AT, step), live_view=False)
    seal = RawScan("SEAL", "keyboard", 5.0)
    asm.station.scan_sources.append(
        LateScans([(1.0, RawScan(ORDER, "keyboard", 1.0)), (5.0, seal)])
    )
    try:
        asm.station.run(threading.Event())
        (clip,) = asm.ledger.clips()
    finally:
        asm.close()
    return clip


@pytest.fixture
def step_cfg(cfg: config_mod.Config, tsa_ec: TsaServer) -> config_mod.Config:  # noqa: F811
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS)
    return cfg.replace("proof", tsa_urls=(tsa_ec.url,), tsa_ca_path=str(tsa_ec.root), c2pa=False)


def test_the_step_is_measured_between_the_first_and_the_last_frame() -> None:
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert clock_step_s(t0, 10.0, t0 + timedelta(seconds=4.0004), 14.0) is None  # jitter
    assert clock_step_s(t0, 10.0, t0 + timedelta(seconds=4 - 300), 14.0) == -300.0
    assert clock_step_s(t0, 10.0, t0 + timedelta(seconds=604.5), 14.0) == 600.5
    assert clock_step_s(t0, None, t0, None) is None


@pytest.mark.parametrize(
    "step",
    [timedelta(minutes=-5), timedelta(hours=1), timedelta(hours=-1)],
    ids=["back-5-min", "forward-1-h", "back-1-h"],
)
def test_a_clip_across_a_clock_step_is_signed_with_its_real_times_and_states_the_step(
    step_cfg: config_mod.Config,
    tsa_ec: TsaServer,  # noqa: F811
    step: timedelta,
    tmp_path: Path,
) -> None:
    """The clock was 5 minutes ahead (or an hour behind, booted on fake-hwclock's time) and
    NTP set it right while the clip recorded. The clip's times are by the clock after the step
    (the right one, and the one the TSA's time is held to): its start is the clock at its first
    frame moved by the step, its end that plus the camera's time. Its signed manifest states
    the step (``clock_step_s``: the picture before the step reads that much off). An hour's
    step was `time-out-of-bounds` (NOT AUTHENTIC), five minutes back a `clock-ahead` warning.
    Its start statement, fixed at the first frame by the clock before the step, is held to its
    token on the clock after it too: "start timestamped" (held to the statement's own time,
    an hour forward was start-unanchored, an hour back start-time-inconsistent)."""
    cfg = step_cfg
    # The TSA's time is now: the clip started half a minute ago, by a clock then off by minus
    # the step (the synthetic camera runs faster than real time: its 8 s pass at once).
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30) - step
    clip = record_across_a_step(cfg, start, step)
    body = json.loads((cfg.station.data_dir / clip.manifest_path).read_text())
    span = timedelta(seconds=clip.frame_count / FPS - 1 / FPS)
    assert clip.started_at == start + step  # the first pre-roll frame, by the clock after
    assert clip.ended_at == start + step + span
    assert body["started_at"] == (start + step).isoformat(timespec="milliseconds")
    assert body["ended_at"] == (start + step + span).isoformat(timespec="milliseconds")
    assert body["clock_step_s"] == step.total_seconds()

    fin = ProofFinalizer(cfg, start_worker=False)  # the station's TSA queue, online now
    assert fin.tsa is not None
    fin.tsa.process_due()
    fin.close()
    tsa_root = x509.load_pem_x509_certificate(tsa_ec.root.read_bytes())
    report = audit(cfg, check_timestamps=True)
    assert report.ok and not report.failures, report.lines()
    bundle = export_order(cfg, ORDER, tmp_path / "order.zip").path
    report = verify_bundle(bundle, anchors=Anchors(tsa=(tsa_root,)))
    assert report.verdict != TAMPERED, report.lines()
    assert {"time-out-of-bounds", "time-late", "clock-ahead", "time-inconsistent"}.isdisjoint(
        report.reasons()
    )
    assert report.time_anchored and report.facts["clock_step_s"] == step.total_seconds()
    assert any("clock stepped" in line for line in report.lines())
    (start_line,) = [c for c in report.checks if c.name.endswith(" start")]
    assert start_line.status == "ok", report.lines()
    assert start_line.reason.startswith("start timestamped"), start_line
    _code, out = run_kit(KIT, bundle, tmp_path, "--tsa-ca", str(tsa_ec.root))
    assert (
        "time-out-of-bounds" not in out and "time-late" not in out and "clock-ahead" not in out
    ), out
    assert "clock stepped" in out and "NOT AUTHENTIC" not in out, out
    assert re.search(r"^OK   clip\[0\] start: start timestamped", out, re.M), out


@pytest.mark.parametrize("stated", ["300", True, float("nan"), 1e300, None, [1]])
def test_a_stated_step_that_is_no_number_of_seconds_is_a_reason_in_both_verifiers(
    stated: object,
) -> None:
    """A signed ``clock_step_s`` moves the end a TSA time is held to: anything but a number of
    seconds is no step (``time-inconsistent``), in `packcam verify` and in the stranger's
    verify.py alike; none stated is no step and no reason."""
    for module in (verify_mod, standalone_verify):
        assert module.clock_step({"clock_step_s": stated})[0] == 0.0
        assert "clock_step_s" in str(module.clock_step({"clock_step_s": stated})[1])
        assert module.clock_step({"clock_step_s": -300}) == (-300.0, None)
        assert module.clock_step({}) == (0.0, None)


def test_a_step_stated_by_the_key_holder_backdates_nothing(
    cfg: config_mod.Config,
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The key holder re-signs an honest clip's manifest a day earlier and states a clock step
    of a day, TSA-stamped now: were the token held to ``ended_at + clock_step_s``, a clip
    recorded today would pass for yesterday's. The times are by the clock after the step, so
    the token is held to the stated end itself: a day late (`time-late`), it anchors nothing
    (it was `time-out-of-bounds`: a late token fails no clip, an honest station offline at
    its end gets one too), and with the company CA and the TSA pinned the clip is not
    AUTHENTIC in either verifier (its start statement, kept, fails it besides)."""
    st = build_store(tmp_path / "st", tsa_ec, [ORDER], c2pa=False)
    honest = export_order(st.cfg, ORDER, tmp_path / "honest.zip").path
    day = timedelta(days=1)

    def backdate(body: dict[str, Any]) -> None:
        for k in ("started_at", "ended_at"):
            body[k] = (datetime.fromisoformat(body[k]) - day).isoformat(timespec="milliseconds")
        body["clock_step_s"] = day.total_seconds()

    key = StationKey.load(st.data / "proof/station-key.pem")
    forged = forge_log(honest, tmp_path / "backdated.zip", key, tsa_ec.url, backdate)
    report = verify_bundle(forged, anchors=st.anchors())
    assert "time-late" in report.reasons() and report.verdict != AUTHENTIC, report.lines()
    assert report.signer_anchored and not report.time_anchored, report.lines()
    assert "start-time-inconsistent" in report.codes(), report.lines()
    code, out = run_kit(KIT, forged, tmp_path, *st.pins())
    assert code != 0 and "[time-late]" in out and "RESULT: AUTHENTIC" not in out, out


class CutAt(LateScans):
    """LateScans that, at its first poll at or after ``at``, copies the data dir into ``into``
    as a power cut (or kill -9) would leave it on disk: the clip recording in tmp/ with its
    journal."""

    def __init__(
        self, scans: list[tuple[float, RawScan]], at: float, data_dir: Path, into: Path
    ) -> None:
        super().__init__(scans)
        self.at, self.data_dir, self.into = at, data_dir, into

    def poll(self, now: float) -> list[InputEvent]:
        if now >= self.at and not self.into.exists():
            shutil.copytree(self.data_dir, self.into)
        return super().poll(now)


def cut_across_a_step(
    cfg: config_mod.Config, start: datetime, step: timedelta, into: Path
) -> config_mod.Config:
    """One order packed while the clock steps by ``step`` at camera time 3 s, the power cut
    at 6 s (before the seal): the config of the data dir the cut left."""
    script = {"seed": 4, "event": [{"at": 8.0, "kind": "end"}]}
    cam = SyntheticCamera(W, H, FPS, Scenario.from_dict(script), realtime=False, start_wall=start)
    asm = assemble(cfg, camera=SteppedClock(cam, STEP_AT, step), live_view=False)
    scans = [(1.0, RawScan(ORDER, "keyboard", 1.0)), (7.0, RawScan("SEAL", "keyboard", 7.0))]
    asm.station.scan_sources.append(CutAt(scans, 6.0, cfg.station.data_dir, into))
    try:
        asm.station.run(threading.Event())
    finally:
        asm.close()
    assert [p.parent.name for p in into.rglob("*.mp4")] == ["tmp"]  # cut while it recorded
    return cfg.with_data_dir(into)


@pytest.mark.parametrize(
    "step",
    [timedelta(minutes=-5), timedelta(hours=1), timedelta(hours=-1)],
    ids=["back-5-min", "forward-1-h", "back-1-h"],
)
def test_a_clip_a_power_cut_left_across_a_clock_step_is_recovered_with_its_real_times(
    step_cfg: config_mod.Config,
    tsa_ec: TsaServer,  # noqa: F811
    step: timedelta,
    tmp_path: Path,
) -> None:
    """The clock stepped while the clip recorded, then the power went before it was finished:
    crash recovery finishes it from its journal. Its times must be the recorder's, by the clock
    after the step (the start is the first frame's clock moved by the step), and its manifest
    states the step: it then verifies once TSA-stamped. Recovery dated it by the clock before
    the step: an hour's step was `time-out-of-bounds`, five minutes back `clock-ahead`. Its
    start statement, kept by the journal, is timestamped on the clock after the step too (held
    to the statement's own time, an hour back failed: start-time-inconsistent)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30) - step
    cfg = cut_across_a_step(step_cfg, start, step, tmp_path / "after-the-cut")
    assert recover_data_dir(cfg).ok
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        (clip,) = ledger.clips()
    finally:
        ledger.close()
    body = json.loads((cfg.station.data_dir / clip.manifest_path).read_text())
    span = timedelta(seconds=clip.frame_count / FPS - 1 / FPS)
    assert clip.finish_reason == "interrupted" and clip.frame_count >= 40  # cut at 6 s
    assert clip.started_at == start + step and clip.ended_at == start + step + span
    assert body["clock_step_s"] == step.total_seconds()

    fin = ProofFinalizer(cfg, start_worker=False)
    assert fin.tsa is not None
    fin.tsa.process_due()
    fin.close()
    report = audit(cfg, check_timestamps=True)
    assert report.ok and not report.failures, report.lines()
    assert {"time-out-of-bounds", "time-late", "clock-ahead"}.isdisjoint(report.reasons()), (
        report.lines()
    )
    tsa_root = x509.load_pem_x509_certificate(tsa_ec.root.read_bytes())
    bundle = export_order(cfg, ORDER, tmp_path / "order.zip").path
    report = verify_bundle(bundle, anchors=Anchors(tsa=(tsa_root,)))
    assert report.verdict != TAMPERED, report.lines()
    assert {"time-out-of-bounds", "time-late", "clock-ahead", "time-inconsistent"}.isdisjoint(
        report.reasons()
    )
    assert report.time_anchored and report.facts["clock_step_s"] == step.total_seconds()
    (start_line,) = [c for c in report.checks if c.name.endswith(" start")]
    assert start_line.reason.startswith("start timestamped"), report.lines()
    _code, out = run_kit(KIT, bundle, tmp_path, "--tsa-ca", str(tsa_ec.root))
    assert (
        "time-out-of-bounds" not in out and "time-late" not in out and "clock-ahead" not in out
    ), out
    assert "clock stepped" in out and "NOT AUTHENTIC" not in out, out
    assert re.search(r"^OK   clip\[0\] start: start timestamped", out, re.M), out
