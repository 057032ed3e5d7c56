"""End to end: synthetic camera / video file / real photos -> scans -> session -> indexed clips."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import sqlite3
from contextlib import closing, redirect_stdout
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from station import config as config_mod
from station.capture.codes import Kind, Rules, classify, sanitize
from station.capture.frames import Frame
from station.capture.synthetic import Scenario, SyntheticCamera
from station.cli import main
from station.errors import RejectedCode
from station.service import assemble
from station.store.ledger import ClipRecord

pytestmark = pytest.mark.slow

W, H, FPS = 960, 540, 15.0


def ev(at: float, kind: str, **kw) -> dict:
    return {"at": at, "kind": kind, **kw}


def run_scenario(cfg: config_mod.Config, events: list[dict]) -> list[ClipRecord]:
    scenario = Scenario.from_dict({"seed": 3, "event": events})
    cam = SyntheticCamera(W, H, FPS, scenario, realtime=False)
    asm = assemble(cfg, camera=cam, live_view=False)
    import threading

    asm.station.run(threading.Event())
    clips = asm.ledger.clips()
    asm.close()
    return clips


def decoded_frames(path: Path) -> tuple[int, float, tuple[int, int]]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n, last = 0, 0.0
        for frame in c.decode(s):
            n += 1
            last = float(frame.time)
        return n, last, (s.codec_context.width, s.codec_context.height)


def check_clip_files(data: Path, clip: ClipRecord, fps: float) -> None:
    path = data / clip.path
    assert path.is_file()
    blob = path.read_bytes()
    assert hashlib.sha256(blob).hexdigest() == clip.sha256
    assert len(blob) == clip.size
    n, last_pts, size = decoded_frames(path)
    assert n == clip.frame_count
    assert size == (W, H)
    assert clip.duration_s == pytest.approx(last_pts + 1 / fps, abs=2 / fps)
    manifest = json.loads((data / clip.manifest_path).read_text(encoding="utf-8"))
    assert manifest["sha256"] == clip.sha256
    assert manifest["order_id"] == clip.order_id
    assert manifest["finish_reason"] == clip.finish_reason


@pytest.fixture
def e2e_cfg(cfg: config_mod.Config) -> config_mod.Config:
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS)
    cfg = cfg.replace("session", max_duration_s=8.0, still_timeout_s=4.0)
    return cfg.replace("proof", enabled=False)


def test_every_stop_rule_yields_exactly_the_expected_clips(e2e_cfg: config_mod.Config) -> None:
    events = [
        # A: order sheet under the camera, waybill label, seal card -> sealed
        ev(1.0, "show", code="PO-A", symbology="qrcode", duration=2.0),
        ev(4.0, "show", code="SF1234567890123", symbology="code128", duration=2.5),
        ev(8.0, "show", code="SEAL", symbology="qrcode", duration=1.8),
        # B: keyboard scan, foot pedal -> sealed
        ev(11.0, "key", text="PO-B"),
        ev(14.0, "pedal"),
        # C then D: the next order's scan ends C -> next-order
        ev(16.0, "show", code="PO-C", symbology="code128", duration=2.0),
        ev(20.0, "key", text="PO-D"),
        # D again -> rescan
        ev(24.0, "key", text="PO-D"),
        # E: nobody seals it -> timeout after max_duration_s (8 s)
        ev(27.0, "show", code="PO-E", symbology="datamatrix", duration=2.0),
        # F: the table goes still for longer than still_timeout_s (4 s) -> still
        ev(37.0, "key", text="PO-F"),
        ev(38.0, "still", duration=8.0),
        # garbage from the scanner is rejected, nothing breaks
        ev(47.5, "key", text="PO-G\x1b[2J"),
        # G: the input ends while recording -> end-of-input
        ev(48.0, "key", text="PO-G"),
        ev(51.0, "end"),
    ]
    clips = run_scenario(e2e_cfg, events)
    data = e2e_cfg.station.data_dir
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-A", "sealed"),
        ("PO-B", "sealed"),
        ("PO-C", "next-order"),
        ("PO-D", "rescan"),
        ("PO-E", "timeout"),
        ("PO-F", "still"),
        ("PO-G", "end-of-input"),
    ]
    by = {c.order_id: c for c in clips}
    assert by["PO-A"].waybill == "SF1234567890123"
    assert [e.kind for e in by["PO-A"].events] == ["order", "waybill", "seal"]
    assert [e.kind for e in by["PO-B"].events] == ["order", "pedal"]
    # Pre-roll starts on the newest keyframe at or before scan - 3 s (keyframes every 4 s,
    # and right after each clip), but never in what the previous clip holds: no second of
    # video is in two clips, so a shorter pre-roll starts on the frame after that clip. After
    # a timeout or a still stop, with no seal, waybill or pedal since, the packing may have
    # gone on unrecorded: the next clip starts at its scan.
    for prev, clip in itertools.pairwise(clips):
        assert clip.started_at > prev.ended_at, clip.order_id
        if prev.finish_reason in ("timeout", "still"):
            assert clip.pre_roll_s == 0, clip.order_id
        elif clip.pre_roll_s < 3.0 - 1.5 / FPS:
            gap = (clip.started_at - prev.ended_at).total_seconds()
            assert gap == pytest.approx(1 / FPS, abs=0.5 / FPS), clip.order_id
        else:
            assert 3.0 - 1.5 / FPS <= clip.pre_roll_s <= 3.0 + 4.0, clip.order_id
    assert by["PO-D"].pre_roll_s == 0  # next-order: the seconds before the scan are C's
    # The camera reads the sheet within a second of it coming to rest.
    assert 1.0 < by["PO-A"].pre_roll_s < 2.2  # the scene started at 0: less than 3 s exist
    # Ends where the rules say, on the video's own timeline.
    # B: keyboard scan at 11 s, pedal at 14 s; its pre-roll is bounded by where A (sealed by a
    # confirmed camera read) ended, so measure from its own scan.
    b_scan = by["PO-B"].events[0].t_clip_s
    assert by["PO-B"].pre_roll_s == pytest.approx(b_scan, abs=1 / FPS)
    assert by["PO-B"].duration_s == pytest.approx(b_scan + 3.0, abs=0.3)
    # C is read within a second of 16 s and ends at D's scan at 20 s.
    c_pre = by["PO-C"].events[0].t_clip_s
    assert c_pre + 3.0 <= by["PO-C"].duration_s <= c_pre + 4.0 + 0.2
    assert by["PO-E"].duration_s == pytest.approx(by["PO-E"].pre_roll_s + 8.0, abs=0.3)
    assert by["PO-F"].duration_s == pytest.approx(by["PO-F"].pre_roll_s + 1.0 + 4.0, abs=0.5)
    for c in clips:
        check_clip_files(data, c, FPS)
        assert c.station == e2e_cfg.station.name
        assert c.started_at.tzinfo is not None
    # No half-clip left behind, and the rejected scan was logged with a reason.
    assert list((data / "tmp").glob("*.mp4")) == []
    with closing(sqlite3.connect(data / "index.sqlite3")) as conn:
        rows = conn.execute("SELECT note FROM scan_events WHERE kind = 'rejected'").fetchall()
    assert len(rows) == 1 and "control" in rows[0][0]


def test_waybill_can_be_the_seal(e2e_cfg: config_mod.Config) -> None:
    cfg = e2e_cfg.replace("session", waybill_ends_clip=True)
    clips = run_scenario(
        cfg,
        [
            ev(1.0, "key", text="PO-W"),
            ev(3.0, "show", code="YT1234567890123", symbology="code128", duration=2.0),
            ev(8.0, "end"),
        ],
    )
    assert [(c.order_id, c.finish_reason, c.waybill) for c in clips] == [
        ("PO-W", "waybill", "YT1234567890123")
    ]


def _write_video(path: Path, events: list[dict], seconds: float) -> None:
    scenario = Scenario.from_dict({"seed": 5, "event": events})
    cam = SyntheticCamera(W, H, FPS, scenario, realtime=False)
    cam.start()
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=int(FPS), options={"preset": "ultrafast", "crf": "18"})
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        while (f := cam.read()) is not None and f.t < seconds:
            for p in s.encode(av.VideoFrame.from_ndarray(f.image, format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    cam.stop()


def test_replay_of_a_video_file_yields_the_expected_clips(tmp_path: Path) -> None:
    video = tmp_path / "table.mp4"
    _write_video(
        video,
        [
            ev(1.0, "show", code="ORDER-X", symbology="qrcode", duration=2.0),
            ev(6.0, "show", code="封箱", symbology="qrcode", duration=2.0),
            ev(9.0, "show", code="ORDER-Y", symbology="code128", duration=2.0),
            ev(14.0, "show", code="ORDER-Z", symbology="qrcode", duration=2.0),
        ],
        seconds=20.0,
    )
    data = tmp_path / "data"
    cfg = tmp_path / "c.toml"
    cfg.write_text('[station]\nname = "打包台 1"\n[proof]\nenabled = false\n', encoding="utf-8")
    with redirect_stdout(io.StringIO()):
        assert main(["replay", str(video), "--data", str(data), "--config", str(cfg),
                     "--start", "2026-11-30T09:00:00+08:00"]) == 0  # fmt: skip
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["clips", "--data", str(data), "--json"]) == 0
    clips = json.loads(out.getvalue())
    assert [(c["order_id"], c["finish_reason"]) for c in clips] == [
        ("ORDER-X", "sealed"),
        ("ORDER-Y", "next-order"),
        ("ORDER-Z", "end-of-input"),
    ]
    x, y, z = clips
    # The video's own timeline: X scanned ~1.3 s in, so its clip starts at the video's start.
    start = datetime.fromisoformat(x["started_at"])
    assert start == datetime(2026, 11, 30, 9, 0, tzinfo=timezone(timedelta(hours=8)))
    assert x["station"] == "打包台 1"
    assert y["duration_s"] == pytest.approx(3.0 + 5.0, abs=0.6)
    # Z follows Y (next-order): no pre-roll, those seconds are Y's.
    assert z["duration_s"] == pytest.approx(20.0 - 14.0 - 0.3, abs=0.8)
    for c in clips:
        assert Path(c["path"]).is_file()
        assert hashlib.sha256(Path(c["path"]).read_bytes()).hexdigest() == c["sha256"]
        assert c["waybill"] is None
        assert {"order_id", "waybill", "finish_reason", "started_at", "ended_at",
                "duration_s", "path", "sha256"} <= set(c)  # fmt: skip


class PhotoCamera:
    """A non-live frame source showing each photo for 1.5 s on a grey table, 4 s apart."""

    live = False

    def __init__(self, photos: list[np.ndarray], fps: float = 10.0) -> None:
        self.width, self.height, self.fps, self.dropped = 1280, 720, fps, 0
        self.photos = photos
        self.index = 0
        self.total = int((len(photos) * 4.0 + 2.0) * fps)
        base = np.full((720, 1280, 3), 120, np.uint8)
        self.base = base

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def read(self, timeout: float = 2.0) -> Frame | None:
        if self.index >= self.total:
            return None
        t = self.index / self.fps
        img = self.base.copy()
        k, phase = divmod(t, 4.0)
        if 0.5 <= phase < 2.0 and int(k) < len(self.photos):
            p = self.photos[int(k)]
            h, w = p.shape[:2]
            y, x = (720 - h) // 2, (1280 - w) // 2
            img[y : y + h, x : x + w] = p
        frame = Frame(img, t, datetime.now().astimezone(), self.index)
        self.index += 1
        return frame


def test_real_barcode_photos_that_the_pipeline_reads_start_clips(
    cfg: config_mod.Config, barcodes_dir: Path
) -> None:
    root = barcodes_dir
    from station.capture.barcodes import BarcodeDecoder

    decoder = BarcodeDecoder()
    rules = Rules.from_config(cfg.codes)
    with (root / "manifest.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    photos, expected, seen = [], [], set()
    for row in rows:
        if row["expected_text"] in seen or len(photos) >= 12:
            continue
        img = cv2.imread(str(root / row["file"]))
        if img is None or img.shape[0] > 700 or img.shape[1] > 1260:
            continue
        seen.add(row["expected_text"])
        frame = np.full((720, 1280, 3), 120, np.uint8)
        h, w = img.shape[:2]
        frame[(720 - h) // 2 : (720 - h) // 2 + h, (1280 - w) // 2 : (1280 - w) // 2 + w] = img
        found = decoder.decode_frame(frame)
        photos.append(img)
        good = []
        for d in found:
            try:
                # a product code is an item, not an order: it starts no clip
                code = classify(sanitize(d.text, rules.max_length), rules, d.symbology)
            except RejectedCode:
                continue
            if code.kind is Kind.ORDER:
                good.append(code.text)
        expected.append(good[0] if len(good) == 1 else None)
    readable = [e for e in expected if e]
    assert len(readable) >= 6, "the pipeline should read most of these photos"
    asm = assemble(
        cfg.replace("proof", enabled=False).replace("scanner", decode_every=1),
        camera=PhotoCamera(photos),
        live_view=False,
    )
    import threading

    asm.station.run(threading.Event())
    clips = asm.ledger.clips()
    asm.close()
    assert [c.order_id for c in clips] == readable
