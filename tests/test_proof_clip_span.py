"""The stranger's verify.py holds a clip's signed duration to how long the clip plays.

verify.py reads no pictures, but an MP4's boxes say when each frame plays: the moov's sample
tables (stts, ctts) and each fragment's runs (moof: tfhd, tfdt, trun). ``clip_span_s`` reads
them with the standard library and must measure what `packcam verify` measures by demuxing
(``presentation_s``, PyAV). Without it, a key holder who moved a clip's start back and inflated
its signed duration to match (and left the start statement out: "an older clip") got AUTHENTIC
from verify.py and NOT AUTHENTIC from `packcam verify`.
"""

from __future__ import annotations

import fractions
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    TsaServer,
    build_store,
    forge_log,
    presentation_s,
    run_kit,
    tsa_ec,
)

from station.proof.bundle import export_order
from station.proof.keys import StationKey
from station.proof.standalone_verify import clip_span_s
from station.proof.verify import TAMPERED, verify_bundle


def _encode(path: Path, muxer: dict[str, str], *, frames: int, rate: int, bf: int = 0) -> Path:
    with av.open(str(path), "w", format="mp4", options=muxer) as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        s.options = {"bf": str(bf), "g": "12"}
        for i in range(frames):
            img = np.full((96, 160, 3), (i * 7) % 255, np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, fractions.Fraction(1, rate)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


STATION = {"movflags": "frag_every_frame+empty_moov+default_base_moof"}  # as the writer


@pytest.mark.parametrize(
    ("muxer", "frames", "rate", "bf"),
    [
        (STATION, 75, 25, 0),
        (STATION, 61, 30, 0),
        ({}, 75, 25, 0),  # sample tables in the moov (a remux, a phone's file)
        ({"movflags": "faststart"}, 40, 10, 0),
        ({}, 75, 25, 3),  # B-frames: presentation order is not decode order (ctts)
        ({"movflags": "frag_keyframe+empty_moov"}, 90, 30, 3),  # fragments with ctts
    ],
    ids=["station", "station-30fps", "moov", "faststart", "b-frames", "fragments-b-frames"],
)
def test_the_kit_measures_a_clip_as_packcam_verify_does(
    tmp_path: Path, muxer: dict[str, str], frames: int, rate: int, bf: int
) -> None:
    clip = _encode(tmp_path / "c.mp4", muxer, frames=frames, rate=rate, bf=bf)
    played = presentation_s(clip)
    assert played == pytest.approx(frames / rate)
    assert clip_span_s(clip) == pytest.approx(played, abs=1e-9)


def test_a_file_it_cannot_read_is_no_measure(tmp_path: Path) -> None:
    """Not an MP4, a cut-off one, no video track: None (no check), never an exception."""
    clip = _encode(tmp_path / "c.mp4", STATION, frames=50, rate=25)
    cases: dict[str, Callable[[bytes], bytes]] = {
        "garbage": lambda b: b"\x00\x01 not a video" * 100,
        "empty": lambda b: b"",
        "moov cut": lambda b: b[:60],
    }
    for name, cut in cases.items():
        bad = tmp_path / f"{name}.mp4"
        bad.write_bytes(cut(clip.read_bytes()))
        assert clip_span_s(bad) is None, name
    with av.open(str(tmp_path / "audio.mp4"), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=8000)
        for _ in range(4):
            f = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            f.sample_rate = 8000
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    assert clip_span_s(tmp_path / "audio.mp4") is None


def test_a_start_moved_back_with_its_duration_inflated_fails_in_both_verifiers(
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The key holder re-signs a clip's manifest with its start moved back to 2020, the
    duration inflated to match, and the start statement left out (as an older station's):
    start, end and duration agree and the end token is in time. Only the clip's own length
    (a few seconds, not six years) tells. verify.py said AUTHENTIC."""
    st = build_store(tmp_path / "st", tsa_ec, ["A1"], c2pa=False)
    bundle = export_order(st.cfg, "A1", tmp_path / "A1.zip").path
    key = StationKey.load(st.data / "proof/station-key.pem")

    def back_date(body: dict) -> None:
        from datetime import datetime

        body.pop("start_statement", None)
        moved = "2020-01-01T10:00:00.000+08:00"
        span = datetime.fromisoformat(body["ended_at"]) - datetime.fromisoformat(moved)
        body["duration_s"] = round(span.total_seconds() + 0.1, 3)
        body["started_at"] = moved

    forged = forge_log(bundle, tmp_path / "f.zip", key, tsa_ec.url, back_date)
    report = verify_bundle(forged, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and "time-inconsistent" in report.codes(), report.lines()
    rc, out = run_kit(KIT, forged, tmp_path, *st.pins())
    assert rc == 1 and "[time-inconsistent]" in out and "the clip plays for" in out, out
    # the honest bundle still verifies in both
    rc, out = run_kit(KIT, bundle, tmp_path, *st.pins())
    assert rc == 0 and "RESULT: AUTHENTIC" in out, out


def test_a_sample_table_of_four_billion_frames_is_no_measure(tmp_path: Path) -> None:
    """A moov whose stts says 4 294 967 295 frames (the key holder's, signed): counted one
    by one, verify.py ran out of memory; it is read as no clip's length (None), which
    ``played_problem`` holds the signed duration to as a failure in both verifiers."""
    from station.proof.standalone_verify import MP4_SAMPLES_MAX, played_problem

    clip = _encode(tmp_path / "c.mp4", {}, frames=40, rate=10)
    data = bytearray(clip.read_bytes())
    at = data.index(b"stts") + 4 + 4 + 4  # size, type, version+flags, entry count
    data[at : at + 4] = (0xFFFFFFFF).to_bytes(4, "big")  # the first entry's sample count
    bomb = tmp_path / "bomb.mp4"
    bomb.write_bytes(bytes(data))
    assert clip_span_s(clip) == pytest.approx(4.0)
    assert clip_span_s(bomb) is None
    said = played_problem({"duration_s": 4.1}, None)
    assert said is not None and f"more than {MP4_SAMPLES_MAX} samples" in said
    assert played_problem({"duration_s": 4.1}, 4.0) is None


def test_a_bare_clip_is_measured_as_its_bundle_s_clip(tmp_path: Path) -> None:
    """`packcam verify --data`, the station site's /verify of a bare clip and the share
    summary hold a clip's signed duration to how long it plays with ``clip_span_s``, as both
    bundle verifiers do: a clip padded inside its moov past what that reads (the frames as
    recorded, PyAV reads them) is time-inconsistent in its bundle, so it is bare too. With
    PyAV there the bare clip passed where its bundle failed."""
    from datetime import UTC, datetime, timedelta

    from station.proof.verify import Report, check_recorded_times

    clip = _encode(tmp_path / "c.mp4", STATION, frames=50, rate=25)
    end = datetime(2026, 12, 8, 10, 0, 2, tzinfo=UTC)
    body = {
        "started_at": (end - timedelta(seconds=1.96)).isoformat(timespec="milliseconds"),
        "ended_at": end.isoformat(timespec="milliseconds"),
        "duration_s": 2.0,
    }
    honest = Report(subject="c.mp4")
    check_recorded_times(honest, body, clip)
    assert not honest.failures, honest.lines()
    data = clip.read_bytes()
    at = data.index(b"moov") - 4
    size = int.from_bytes(data[at : at + 4], "big")
    pad = 65 << 20
    free = (pad + 8).to_bytes(4, "big") + b"free" + bytes(pad)
    moov = (size + len(free)).to_bytes(4, "big") + data[at + 4 : at + size] + free
    padded = tmp_path / "padded.mp4"
    padded.write_bytes(data[:at] + moov + data[at + size :])
    assert presentation_s(padded) == pytest.approx(2.0)  # it plays as recorded
    report = Report(subject="padded.mp4")
    check_recorded_times(report, body, padded)
    assert report.codes() == {"time-inconsistent"}, report.lines()
