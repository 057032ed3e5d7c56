"""A clip scanned while its pre-roll is still in the encoder: named, journaled and signed by
its real first frame, and never given another order's frames."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from recorder_support import HeldBack, PromptEncoder

from station import config as config_mod
from station.recording.recorder import FinishedClip, Recorder, journal_path
from station.recording.stream import stream_factories
from station.recording.writer import EncoderSettings, to_i420
from station.store.ledger import Ledger
from station.store.recovery import recover_data_dir

W, H, FPS = 64, 48, 10.0
LAG = 3
WALL0 = datetime(2026, 12, 7, 9, 0, 0).astimezone()


def wall(i: int) -> datetime:
    return WALL0 + timedelta(seconds=i / FPS)


def stamp(i: int) -> str:
    w = wall(i)
    return w.strftime("%Y%m%dT%H%M%S") + f"_{w.microsecond // 1000:03d}"


def picture(i: int) -> np.ndarray:
    img = np.full((H, W, 3), (i * 7) % 256, np.uint8)
    img[:, (i * 3) % (W - 4) :][:, :4] = (0, 200, 255)
    return to_i420(img)


class Station:
    """A recorder on the station's encoder and muxer, the encoder ``LAG`` frames behind;
    frame ``i`` is at camera time i/FPS. ``journals``: each clip's journal as it was on disk
    right after ``start`` (written with fsync: what a power cut leaves)."""

    def __init__(self, cfg: config_mod.Config, ledger: Ledger) -> None:
        # Keyframes far apart: the only IDR pictures are the ones the stream starts with
        # and the ones asked for.
        cfg = cfg.replace("recorder", keyframe_interval_s=20.0)
        _enc, mux = stream_factories(cfg.recorder, W, H, FPS)
        settings = EncoderSettings.from_recorder(cfg.recorder, W, H, FPS)
        self.encoders: list[HeldBack] = []

        def encoder() -> HeldBack:
            self.encoders.append(HeldBack(PromptEncoder(settings), LAG))
            return self.encoders[-1]

        self.rec = Recorder(cfg, ledger, encoder=encoder, muxer=mux)
        self.journals: dict[str, dict] = {}
        self.label: str | None = None

    def push(self, i: int) -> None:
        self.rec.push(picture(i), i / FPS, wall(i), self.label)

    def start(self, order: str, i: int) -> None:
        """The scan of ``order`` at frame ``i`` (before that frame is pushed)."""
        self.rec.start(order, i / FPS, wall=wall(i))
        self.label = order
        opened = self.rec._open
        assert opened is not None
        self.journals[order] = json.loads(journal_path(opened.tmp_path).read_text())
        self.journals[order]["stem"] = opened.tmp_path.stem

    def stop(self, i: int) -> None:
        self.rec.stop("sealed", i / FPS)
        self.label = None

    def keyframes(self) -> list[float]:
        return [round(p.t, 3) for e in self.encoders for p in e.seen if p.key]


def run(cfg: config_mod.Config, ledger: Ledger, script: dict[int, str]) -> Station:
    """Push frames 0..39; at frame i, before it is pushed, do ``script[i]``: "start X",
    "stop" or "disown"."""
    st = Station(cfg, ledger)
    try:
        for i in range(40):
            action = script.get(i, "")
            if action.startswith("start "):
                st.start(action.split()[1], i)
            elif action == "stop":
                st.stop(i)
            elif action == "disown":
                st.rec.disown((i - 0.5) / FPS)
            st.push(i)
        if st.rec.recording:
            st.stop(40)
    finally:
        st.rec.close()  # flushes the encoder: the last frames, then the clips finish
    return st


def finished(st: Station, order: str) -> FinishedClip:
    (fin,) = [f for f in st.rec.finished if f.order_id == order]
    assert fin.record is not None, fin.error
    return fin


# (script, order, the clip's first frame, frames that show another order or none)
CASES = {
    # The station has just started: frames 0 and 1 are still in the encoder at the scan.
    "first clip": ({2: "start A"}, "A", 0),
    # A ends before frame 20, which is then an IDR picture; B is scanned at frame 22 while
    # frames 19 (A's), 20 and 21 are still in the encoder.
    "after a clip": ({1: "start A", 20: "stop", 22: "start B"}, "B", 20),
    # The parcel before was seen finished just before frame 20 with no clip open.
    "after disown": ({20: "disown", 22: "start B"}, "B", 20),
}


@pytest.mark.parametrize(("script", "order", "first"), CASES.values(), ids=CASES.keys())
def test_a_clip_whose_pre_roll_is_in_the_encoder_is_named_journaled_and_signed_by_its_first_frame(
    cfg: config_mod.Config, ledger: Ledger, script: dict[int, str], order: str, first: int
) -> None:
    scan = max(i for i, a in script.items() if a == f"start {order}")
    st = run(cfg, ledger, script)
    fin = finished(st, order)
    rec = fin.record
    assert rec is not None and fin.span is not None
    # The pre-roll is kept: the clip starts on the IDR picture still in the encoder ...
    assert fin.span[0] == pytest.approx(first / FPS)
    pre_roll = round((scan - first) / FPS, 3)
    assert rec.started_at == wall(first) and rec.pre_roll_s == pre_roll
    # ... and says so everywhere: its name, its journal from the start, its signed manifest.
    assert Path(rec.path).stem.endswith(stamp(first))
    journal = st.journals[order]
    assert journal["stem"].endswith(stamp(first))
    assert journal["first_wall"] == wall(first).isoformat(timespec="milliseconds")
    assert journal["pre_roll_s"] == pre_roll
    manifest = json.loads((cfg.station.data_dir / rec.manifest_path).read_text())
    assert manifest["pre_roll_s"] == pre_roll
    # No IDR picture was asked for at the scan: the one in the encoder serves.
    assert scan / FPS not in st.keyframes()
    # Nothing from before the previous clip's end (or the disowned parcel) is in it.
    assert [label for label, _n in fin.frame_labels] == [None, order]


def test_a_clip_recovered_after_a_power_cut_states_its_real_pre_roll(
    cfg: config_mod.Config, ledger: Ledger, tmp_path: Path
) -> None:
    """Power cut while the clip was open: the file and the journal written at its start are
    all crash recovery has; the manifest it signs must state the clip's real start."""
    st = run(cfg, ledger, {2: "start A"})
    fin = finished(st, "A")
    assert fin.record is not None
    cut = cfg.with_data_dir(tmp_path / "after-the-cut")
    tmp = cut.station.data_dir / "tmp"
    tmp.mkdir(parents=True)
    journal = dict(st.journals["A"])
    stem = journal.pop("stem")
    shutil.copyfile(cfg.station.data_dir / fin.record.path, tmp / f"{stem}.mp4")
    (tmp / f"{stem}.open.json").write_text(json.dumps(journal), encoding="utf-8")
    report = recover_data_dir(cut)
    assert len(report.recovered) == 1 and report.errors == []
    led = Ledger.in_data_dir(cut.station.data_dir)
    try:
        (clip,) = led.clips()
    finally:
        led.close()
    manifest = json.loads((cut.station.data_dir / clip.manifest_path).read_text())
    assert manifest["pre_roll_s"] == fin.record.pre_roll_s == 0.2
    assert clip.started_at == fin.record.started_at == wall(0)
    assert Path(clip.path).name == Path(fin.record.path).name


def test_frames_of_the_order_before_never_join_a_clip_from_the_encoder(
    cfg: config_mod.Config, ledger: Ledger
) -> None:
    """B is scanned right after A stopped, A's last frames still in the encoder: B starts at
    the first frame after A's end, and each of A's frames is in A's clip only."""
    st = run(cfg, ledger, {1: "start A", 20: "stop", 20 + 1: "start B"})
    a, b = finished(st, "A"), finished(st, "B")
    assert a.span is not None and b.span is not None
    assert a.span == (pytest.approx(0.0), pytest.approx(1.9))
    assert b.span[0] == pytest.approx(2.0)
    assert [label for label, _n in b.frame_labels] == [None, "B"]
    assert b.record is not None and b.record.started_at == wall(20)
