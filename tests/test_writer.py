"""station.recording.writer: real MP4 files encoded, decoded, hashed, killed and starved."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from station.errors import RecordingError
from station.recording import writer as writer_mod
from station.recording.writer import ClipWriter, EncoderSettings, FinishedFile, to_i420

W, H, FPS = 320, 240, 30.0
CHILD = Path(__file__).with_name("helpers_writer_child.py")
REPO = Path(__file__).resolve().parents[1]


def scene(i: int) -> np.ndarray:
    """A flat background with a moving square: cheap to encode, every frame different."""
    img = np.full((H, W, 3), 90, np.uint8)
    x = (i * 5) % (W - 40)
    img[100:140, x : x + 40] = (20, 200, 240)
    return img


def write_clip(path: Path, times: list[float], **kwargs: object) -> FinishedFile:
    w = ClipWriter(path, EncoderSettings(W, H, FPS, **kwargs))  # type: ignore[arg-type]
    for i, t in enumerate(times):
        w.write(to_i420(scene(i)), t)
    assert w.frames_written == len(times)
    return w.finish()


def decode(path: Path) -> tuple[av.video.stream.VideoStream, list[av.VideoFrame], float]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        duration = c.duration / 1e6 if c.duration else 0.0
    return stream, frames, duration


def test_clip_decodes_with_right_facts_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    times = [1000.0 + i / FPS for i in range(90)]
    ff = write_clip(path, times)

    data = path.read_bytes()
    assert ff.sha256 == hashlib.sha256(data).hexdigest()
    assert ff.size == len(data)
    assert ff.path == path
    assert ff.frame_count == 90
    assert ff.first_t == times[0] and ff.last_t == times[-1]
    assert ff.duration_s == pytest.approx(3.0, abs=0.01)

    stream, frames, duration = decode(path)
    assert stream.codec_context.name == "h264"
    assert stream.codec_context.pix_fmt == "yuv420p"
    assert (stream.codec_context.width, stream.codec_context.height) == (W, H)
    assert len(frames) == 90
    assert duration == pytest.approx(3.0, abs=0.05)
    assert frames[0].pts == 0
    assert frames[0].key_frame


def test_decoded_colours_match_the_input(tmp_path: Path) -> None:
    """to_i420's BT.601 tv range and the stream's colour tags agree: colours survive."""
    patches = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (128, 128, 128), (30, 160, 220)]
    img = np.zeros((H, W, 3), np.uint8)
    width = W // len(patches)
    for k, bgr in enumerate(patches):
        img[:, k * width : (k + 1) * width] = bgr
    path = tmp_path / "colours.mp4"
    w = ClipWriter(path, EncoderSettings(W, H, FPS, crf=18))
    for i in range(3):
        w.write(to_i420(img), i / FPS)
    w.finish()

    _, frames, _ = decode(path)
    out = frames[-1].to_ndarray(format="bgr24")
    for k, bgr in enumerate(patches):
        got = out[H // 2, k * width + width // 2].astype(int)
        assert np.abs(got - np.array(bgr)).max() <= 6, (bgr, got)
    assert frames[0].color_range == 1  # tv / MPEG range, as tagged


def test_to_i420_shape_and_validation() -> None:
    yuv = to_i420(scene(0))
    assert yuv.shape == (H * 3 // 2, W) and yuv.dtype == np.uint8
    with pytest.raises(ValueError):
        to_i420(np.zeros((H, W), np.uint8))
    with pytest.raises(ValueError):
        to_i420(np.zeros((H + 1, W, 3), np.uint8))


def test_variable_frame_timing_is_kept(tmp_path: Path) -> None:
    # dropped camera frames and a one-second stall must stay visible in the timeline
    times = [50.0, 50.033, 50.067, 50.2, 50.233, 51.5, 51.533, 51.6]
    path = tmp_path / "vfr.mp4"
    ff = write_clip(path, times)
    _, frames, _ = decode(path)
    got = [float(f.pts * f.time_base) for f in frames]
    assert got == pytest.approx([t - times[0] for t in times], abs=0.001)
    assert ff.duration_s == pytest.approx(times[-1] - times[0] + 1 / FPS, abs=0.001)


def test_non_increasing_times_are_nudged_not_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    times = [10.0, 10.1, 10.1, 10.05, 10.3]
    path = tmp_path / "nudge.mp4"
    with caplog.at_level(logging.WARNING, logger="station.recording.writer"):
        ff = write_clip(path, times)
    assert "non-increasing frame time" in caplog.text
    assert ff.frame_count == len(times)
    _, frames, _ = decode(path)
    pts = [f.pts for f in frames]
    assert len(pts) == len(times)
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert float(frames[-1].pts * frames[-1].time_base) == pytest.approx(0.3, abs=0.001)


def test_keyframe_interval(tmp_path: Path) -> None:
    path = tmp_path / "gop.mp4"
    write_clip(path, [i / FPS for i in range(75)], keyframe_interval_s=1.0)
    with av.open(str(path)) as c:
        keys = [i for i, p in enumerate(c.demux(c.streams.video[0])) if p.is_keyframe]
    assert keys[:3] == [0, 30, 60]


def test_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "taken.mp4"
    path.write_bytes(b"evidence")
    with pytest.raises(RecordingError, match="overwrite"):
        ClipWriter(path, EncoderSettings(W, H, FPS))
    assert path.read_bytes() == b"evidence"


def test_unwritable_path_raises_recording_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot create"):
        ClipWriter(tmp_path / "missing-dir" / "clip.mp4", EncoderSettings(W, H, FPS))
    if os.geteuid() != 0:  # root ignores directory permissions
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(RecordingError, match="cannot create"):
            ClipWriter(ro / "clip.mp4", EncoderSettings(W, H, FPS))


def test_bad_encoder_settings_fail_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "bad.mp4"
    with pytest.raises(RecordingError, match="encoder"):
        ClipWriter(path, EncoderSettings(W, H, FPS, preset="no-such-preset"))
    assert not path.exists()


def test_programming_errors_raise_at_once(tmp_path: Path) -> None:
    w = ClipWriter(tmp_path / "p.mp4", EncoderSettings(W, H, FPS))
    with pytest.raises(ValueError, match="I420"):
        w.write(scene(0), 0.0)  # BGR instead of I420
    w.write(to_i420(scene(0)), 0.0)
    ff = w.finish()
    assert w.finish() is ff  # idempotent
    with pytest.raises(RuntimeError):
        w.write(to_i420(scene(1)), 1.0)


def test_finish_without_frames_is_an_error(tmp_path: Path) -> None:
    w = ClipWriter(tmp_path / "empty.mp4", EncoderSettings(W, H, FPS))
    with pytest.raises(RecordingError, match="no frames"):
        w.finish()
    with pytest.raises(RecordingError):
        w.finish()


def test_fsync_is_periodic_and_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[float] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(time.monotonic())
        real_fsync(fd)

    monkeypatch.setattr(writer_mod.os, "fsync", counting_fsync)
    w = ClipWriter(tmp_path / "sync.mp4", EncoderSettings(W, H, FPS), fsync_interval_s=0.1)
    start = time.monotonic()
    for i in range(30):  # ~0.3 s of frames
        w.write(to_i420(scene(i)), i / FPS)
        time.sleep(0.01)
    time.sleep(0.25)  # input pauses: the idle writer still syncs what it has
    assert synced, "no fsync while frames were flowing or idle"
    elapsed = time.monotonic() - start
    w.finish()
    # file + directory syncs: at most about two per interval, plus the final ones
    assert len(synced) <= 2 * (elapsed / 0.1 + 1) + 2


def test_hashing_file_detects_rewrites(tmp_path: Path) -> None:
    f = writer_mod._HashingFile(tmp_path / "h.bin")
    f.write(b"abc")
    f.write(b"def")
    assert f.hash_valid and f.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
    f.seek(1)
    f.write(b"X")
    assert not f.hash_valid
    f.close()
    assert f.closed


def test_kill_9_mid_clip_leaves_a_decodable_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.mp4"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "kill", str(path)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    encoded = 0
    try:
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        while encoded < 60:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "child did not encode 60 frames in time"
            ready, _, _ = select.select([proc.stdout], [], [], remaining)
            if ready:
                line = proc.stdout.readline()
                assert line, f"child exited early with {proc.poll()}"
                encoded = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    decoded = 0
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        for frame in c.decode(stream):
            assert (frame.width, frame.height) == (320, 240)
            decoded += 1
    assert decoded >= encoded - 3


def test_disk_error_surfaces_as_recording_error(tmp_path: Path) -> None:
    """RLIMIT_FSIZE in a child makes writes fail with EFBIG, like a full disk."""
    path = tmp_path / "full.mp4"
    limit = 200_000  # room for the header and a few noise frames
    out = subprocess.run(
        [sys.executable, str(CHILD), "fsize", str(path), str(limit)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["raised_in"] == "write/finish", result
    assert "failed" in result["message"] and "File too large" in result["message"]
    assert result["finish1"] == result["message"] == result["finish2"]
    # the half-written fragment was cut off: what is left decodes cleanly to its end
    assert path.stat().st_size < limit
    _, frames, _ = decode(path)
    assert 1 <= len(frames) < result["frames"]


def test_time_base_is_90khz() -> None:
    assert Fraction(1, 90000) == writer_mod.TIME_BASE


# --- buffering encoders and in-band parameter sets (the Pi 4 hardware encoder's traits) ------


def delaying_x264(monkeypatch: pytest.MonkeyPatch) -> None:
    """libx264 with an 8-frame lookahead and no zerolatency: it returns packets late, like
    h264_v4l2m2m, while keeping B-frames off so decode order stays presentation order."""

    def options(preset: str, crf: int, threads: int) -> dict[str, str]:
        params = "rc-lookahead=8:sync-lookahead=0:bframes=0"
        return {"preset": "veryfast", "crf": str(crf), "threads": "1", "x264-params": params}

    monkeypatch.setattr(writer_mod, "_x264_options", options)


def annexb(units: list[bytes]) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + u for u in units)


def avcc_box(path: Path) -> bytes:
    data = path.read_bytes()
    at = data.index(b"avcC")
    size = int.from_bytes(data[at - 4 : at], "big")
    return data[at + 4 : at - 4 + size]


def assert_plays(path: Path, ff: FinishedFile, times: list[float]) -> None:
    assert ff.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ff.size == path.stat().st_size
    assert ff.frame_count == len(times)
    stream, frames, duration = decode(path)
    assert (stream.codec_context.width, stream.codec_context.height) == (W, H)
    assert stream.codec_context.pix_fmt == "yuv420p"
    assert len(frames) == len(times)
    assert duration == pytest.approx(times[-1] - times[0] + 1 / FPS, abs=0.05)
    got = [float(f.pts * f.time_base) for f in frames]
    assert got == pytest.approx([t - times[0] for t in times], abs=0.001)
    assert frames[0].key_frame
    avcc = avcc_box(path)
    assert avcc[0] == 1 and avcc[5] & 0x1F >= 1, "avcC must hold an SPS"  # version, numOfSPS


def test_a_buffering_encoder_is_drained_at_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delaying_x264(monkeypatch)
    path = tmp_path / "late.mp4"
    times = [20.0 + i / FPS for i in range(45)]
    w = ClipWriter(path, EncoderSettings(W, H, FPS))
    for i, t in enumerate(times):
        w.write(to_i420(scene(i)), t)
    deadline = time.monotonic() + 20
    while w.frames_encoded < len(times):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert w._packets < len(times), "the stand-in encoder did not hold any packet back"
    ff = w.finish()
    assert_plays(path, ff, times)


def test_without_a_global_header_the_avcc_comes_from_the_first_packet(tmp_path: Path) -> None:
    """The path h264_v4l2m2m takes (no SPS/PPS at open time), forced with libx264.

    Without it the empty moov would carry an empty avcC and no player could open the file.
    """
    times = [i / FPS for i in range(30)]
    path = tmp_path / "inband.mp4"
    w = ClipWriter(path, EncoderSettings(W, H, FPS, global_header=False))
    assert w._needs_headers
    for i, t in enumerate(times):
        w.write(to_i420(scene(i)), t)
    ff = w.finish()
    assert_plays(path, ff, times)

    normal = write_clip(tmp_path / "normal.mp4", times)
    assert not ClipWriter(
        tmp_path / "n2.mp4", EncoderSettings(W, H, FPS)
    )._needs_headers  # default unchanged
    # the same SPS/PPS as libx264 puts in its global header
    assert avcc_box(path) == avcc_box(normal.path)


def test_late_packets_and_in_band_headers_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delaying_x264(monkeypatch)
    times = [i / FPS for i in range(40)]
    path = tmp_path / "both.mp4"
    assert_plays(path, write_clip(path, times, global_header=False), times)


class V4L2LikeWriter(ClipWriter):
    """Reshapes libx264's packets the way a V4L2 encoder may deliver them: the SPS/PPS in a
    packet of their own before the first picture, and no dts on any packet."""

    split_done = False
    strip_headers = False

    def _mux(self, packets: list[av.Packet]) -> None:
        out = []
        for p in packets:
            units = writer_mod.nal_units(bytes(p))
            if not self.split_done:
                self.split_done = True
                sets = [u for u in units if u[0] & 0x1F in (7, 8)]
                units = [u for u in units if u[0] & 0x1F not in (7, 8)]
                if not self.strip_headers:
                    out.append(self.copy(p, annexb(sets), keyframe=False))
            out.append(self.copy(p, annexb(units), keyframe=p.is_keyframe))
        super()._mux(out)

    @staticmethod
    def copy(p: av.Packet, data: bytes, *, keyframe: bool) -> av.Packet:
        q = av.Packet(data)
        q.pts = p.pts
        q.dts = None
        q.time_base = p.time_base
        q.stream = p.stream
        q.is_keyframe = keyframe
        return q


def test_a_parameter_set_packet_is_joined_to_the_first_picture(tmp_path: Path) -> None:
    times = [5.0 + i / FPS for i in range(30)]
    path = tmp_path / "split.mp4"
    w = V4L2LikeWriter(path, EncoderSettings(W, H, FPS, global_header=False))
    for i, t in enumerate(times):
        w.write(to_i420(scene(i)), t)
    ff = w.finish()
    assert w.split_done
    assert_plays(path, ff, times)  # one sample per frame, dts filled in, avcC complete


def test_no_parameter_sets_at_all_fails_the_clip_clearly(tmp_path: Path) -> None:
    w = V4L2LikeWriter(tmp_path / "nosps.mp4", EncoderSettings(W, H, FPS, global_header=False))
    w.strip_headers = True
    w.write(to_i420(scene(0)), 0.0)
    # The writer's thread fails at the first picture: the error surfaces at the next write or
    # at finish, whichever comes after it (a race that CI lost once); finish cleans up anyway.
    with pytest.raises(RecordingError, match="no SPS/PPS"):
        try:
            w.write(to_i420(scene(1)), 1 / FPS)
        finally:
            w.finish()


def test_nal_unit_helpers() -> None:
    sps, pps, sei, idr, p_slice = b"\x67\x42", b"\x68\xce", b"\x06\x05", b"\x65\x88", b"\x41\x9a"
    stream = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x01" + idr + b"\x00"
    assert writer_mod.nal_units(stream) == [sps, pps, idr]
    assert writer_mod.nal_units(b"") == []
    assert writer_mod.parameter_sets(stream) == annexb([sps, pps])
    assert writer_mod.parameter_sets(annexb([sps, idr])) is None  # no PPS
    assert writer_mod.has_picture(stream) and writer_mod.has_picture(annexb([p_slice]))
    assert not writer_mod.has_picture(annexb([sps, pps, sei]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoder": "h264_omx"}, "encoder must be one of libx264, h264_v4l2m2m, not 'h264_omx'"),
        ({"width": 0}, "width and height must be positive and even, got 0x240"),
        ({"height": -2}, "width and height must be positive and even, got 320x-2"),
        ({"width": 321}, "width and height must be positive and even, got 321x240"),
        ({"height": 241}, "width and height must be positive and even, got 320x241"),
        ({"fps": 0.0}, "fps must be positive"),
        ({"keyframe_interval_s": 0.0}, "keyframe_interval_s must be positive"),
        ({"bitrate_kbps": 0}, "bitrate_kbps must be positive"),
    ],
)
def test_settings_no_encoder_could_take_are_programming_errors(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        EncoderSettings(**{"width": W, "height": H, "fps": FPS, **change})  # type: ignore[arg-type]
    good = EncoderSettings(W, H, FPS)
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(good, **change)  # replace checks again
    assert good.for_probe() == dataclasses.replace(good, threads=1, global_header=False)


def test_fsync_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fsync_interval_s must be positive"):
        ClipWriter(tmp_path / "x.mp4", EncoderSettings(W, H, FPS), fsync_interval_s=0)
    assert not (tmp_path / "x.mp4").exists()
