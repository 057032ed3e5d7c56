"""The encoded pre-roll: one running encoder, a ring of packets, clips muxed from packets."""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest

from station import config as config_mod
from station.errors import RecordingError
from station.recording.recorder import FinishedClip, Recorder
from station.recording.stream import ClipMuxer, EncodedPacket, PacketRing, StreamEncoder
from station.recording.writer import EncoderSettings, encoder_failed
from station.store.ledger import Ledger

W, H, FPS = 160, 96, 10.0
WALL0 = datetime(2026, 12, 4, 9, 0, 0).astimezone()


def frame(i: int) -> np.ndarray:
    img = np.full((H * 3 // 2, W), 60, np.uint8)
    img[10:40, (i * 3) % (W - 20) :][:, :20] = 220  # something moves: real P-frames
    return img


def pkt(t: float, key: bool, size: int = 10) -> EncodedPacket:
    return EncodedPacket(b"x" * size, t, WALL0 + timedelta(seconds=t), None, key)


# ---- the ring (pure) ---------------------------------------------------------------------------


def test_ring_keeps_the_newest_keyframe_at_or_before_the_horizon_and_what_follows() -> None:
    ring = PacketRing(1.0)
    for i in range(40):  # keyframes every 1.0 s at 10 fps
        ring.append(pkt(i / 10, key=i % 10 == 0))
    # newest t = 3.9, horizon 2.9: the keyframe at 2.0 is the newest at or before it
    assert ring.since(0.0)[0].t == 2.0 and len(ring) == 20
    assert ring.start_for(3.9, 1.0, None) == 2.0
    assert ring.start_for(3.9, 1.0, 2.5) == 3.0  # 2.0 is another clip's: the next one
    assert ring.start_for(3.9, 1.0, 3.0) is None  # none left: start at the next IDR
    assert ring.start_for(2.5, 1.0, None) == 2.0  # less than a full pre-roll exists


def test_ring_never_starts_mid_gop() -> None:
    ring = PacketRing(0.5)
    for i in range(5):
        ring.append(pkt(i / 10, key=False))  # an encoder that has not made a keyframe yet
    assert len(ring) == 0
    ring.append(pkt(0.5, key=True))
    assert len(ring) == 1


# ---- encoder + muxer + recorder, real libx264 and real files -----------------------------------


@pytest.fixture
def rec_cfg(cfg: config_mod.Config) -> config_mod.Config:
    return cfg.replace("session", pre_roll_s=1.0).replace("proof", enabled=False)


class Counting(StreamEncoder):
    """The real encoder, counting the frames it is given (each must be encoded once)."""

    submitted = 0

    def submit(self, image_i420, t, wall, label):  # type: ignore[no-untyped-def]
        type(self).submitted += 1
        super().submit(image_i420, t, wall, label)


def recorder(cfg: config_mod.Config, ledger: Ledger, *, global_header: bool = True) -> Recorder:
    Counting.submitted = 0

    def enc() -> StreamEncoder:
        return Counting(
            EncoderSettings(W, H, FPS, keyframe_interval_s=1.0, global_header=global_header)
        )

    def mux(path: Path, e) -> ClipMuxer:  # type: ignore[no-untyped-def]
        return ClipMuxer(path, e.settings, lambda: e.extradata)

    return Recorder(cfg, ledger, encoder=enc, muxer=mux)


def play(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(c.streams.video[0]))


def run(rec: Recorder, script: dict[int, tuple], frames: int) -> list[FinishedClip]:
    label = None
    try:
        for i in range(frames):
            t = round(i / FPS, 6)
            for action in script.get(i, ()):
                if action[0] == "start":
                    rec.start(action[1], t, wall=WALL0 + timedelta(seconds=t))
                    label = action[1]
                else:
                    rec.stop(action[1], t)
                    label = None
            rec.push(frame(i), t, WALL0 + timedelta(seconds=t), label)
        if rec.recording:
            rec.stop("end-of-input", frames / FPS)
        rec.wait_idle()
    finally:
        rec.close()
    return list(rec.finished)


@pytest.mark.parametrize("global_header", [True, False], ids=["libx264", "v4l2-like"])
def test_a_clip_starts_on_the_newest_keyframe_before_its_pre_roll_and_plays(
    rec_cfg: config_mod.Config, ledger: Ledger, global_header: bool
) -> None:
    """``global_header=False`` is the path of h264_v4l2m2m (SPS/PPS in the first picture)."""
    rec = recorder(rec_cfg, ledger, global_header=global_header)
    (clip,) = run(rec, {35: [("start", "PO-1")]}, 60)
    assert clip.error is None and clip.record is not None
    rec_ = clip.record
    # keyframes at 0, 1, 2, 3 s: the newest at or before 3.5 - 1.0 is 2.0
    assert rec_.pre_roll_s == 1.5 and clip.span == (2.0, 5.9)
    assert rec_.frame_count == 40 and clip.frame_labels == ((None, 15), ("PO-1", 25))
    path = rec_cfg.station.data_dir / rec_.path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == rec_.sha256  # hashed as written
    frames = play(path)
    assert len(frames) == 40 and frames[0].key_frame
    assert [round(float(f.time), 3) for f in frames] == [round(i / FPS, 3) for i in range(40)]
    assert Counting.submitted == 60  # every frame encoded once: no second encode, no burst
    # The ring holds encoded packets, far smaller than the raw frames they stand for.
    assert 0 < rec._packets.nbytes < len(rec._packets) * W * H * 3 // 2 // 4


def test_next_order_starts_on_an_idr_right_after_the_previous_clip(
    rec_cfg: config_mod.Config, ledger: Ledger
) -> None:
    rec = recorder(rec_cfg, ledger)
    a, b = run(rec, {12: [("start", "A")], 25: [("stop", "next-order"), ("start", "B")]}, 40)
    assert a.span == (0.0, 2.4) and b.span == (2.5, 3.9)  # one owner per frame
    assert a.frame_labels == ((None, 12), ("A", 13)) and b.frame_labels == (("B", 15),)
    assert b.record is not None and b.record.pre_roll_s == 0
    frames = play(rec_cfg.station.data_dir / b.record.path)
    assert len(frames) == 15 and frames[0].key_frame  # the IDR asked for at the scan
    # After a seal the next clip's pre-roll may start right where the last clip ended.
    rec2 = recorder(rec_cfg, ledger)
    c, d = run(rec2, {5: [("start", "C")], 20: [("stop", "sealed")], 26: [("start", "D")]}, 35)
    assert c.span == (0.0, 1.9) and d.span == (2.0, 3.4)  # the IDR after C's last frame
    assert d.frame_labels == ((None, 6), ("D", 9))


def test_a_clip_stopped_before_its_first_frame_is_done_at_once_not_at_shutdown(
    rec_cfg: config_mod.Config, ledger: Ledger
) -> None:
    """An order and a seal in one poll (two codes in one camera frame): the clip is stopped
    before any frame of its own. It must be let go as soon as the frames pushed before the
    stop are out of the encoder, not kept open (a muxer thread, a file descriptor and a temp
    file each) until the station stops."""
    done = threading.Event()
    rec = recorder(rec_cfg, ledger)
    rec.on_finished = lambda result: done.set()
    try:
        for i in range(40):
            t = round(i / FPS, 6)
            if i == 20:
                rec.start("PO-1", t, pre_roll=False, wall=WALL0 + timedelta(seconds=t))
                rec.stop("sealed", t)
            rec.push(frame(i), t, WALL0 + timedelta(seconds=t), None)
            if i > 20 and done.wait(0.05):
                break
        assert done.is_set(), "the stopped clip is still waiting while frames go on"
        (empty,) = rec.finished
        assert empty.order_id == "PO-1" and empty.empty and empty.record is None
    finally:
        rec.close()


def test_frames_go_to_the_encoder_without_a_copy_and_encode_as_a_copy_would() -> None:
    from station.recording.stream import yuv420p_frame
    from station.recording.writer import encoder_context

    images = [frame(i) for i in range(12)]
    shared = yuv420p_frame(images[0])
    images[0][0, 0] = 7  # the frame is the array's memory, not a copy of it
    assert shared.to_ndarray()[0, 0] == 7
    strided = np.zeros((H * 3 // 2, W * 2), np.uint8)[:, ::2]  # not C-contiguous: copied
    assert yuv420p_frame(strided).to_ndarray().shape == (H * 3 // 2, W)

    def encode(make) -> list[bytes]:  # type: ignore[no-untyped-def]
        settings = EncoderSettings(
            W, H, FPS, keyframe_interval_s=1.0, bitrate_kbps=1000, threads=1, global_header=False
        )
        ctx = encoder_context(settings)  # opened
        out = []
        for i, img in enumerate(images):
            f = make(img)
            f.pts = i * 9000
            out += [bytes(p) for p in ctx.encode(f)]
        return out + [bytes(p) for p in ctx.encode(None)]

    copied = encode(lambda img: av.VideoFrame.from_ndarray(img, format="yuv420p"))
    assert encode(yuv420p_frame) == copied and len(copied) == len(images)


def test_the_stream_encoder_opens_the_codec_inside_the_pi4_encoder_controls(monkeypatch) -> None:
    """h264_v4l2m2m takes its I-period and level from V4L2 controls set on the descriptor
    FFmpeg opens (station/recording/h264_limits.py): the always-running encoder sets them as
    ClipWriter does. (The device itself exists only on a Pi 4; here the wiring is checked.)"""
    import contextlib

    import station.recording.writer
    from station.recording.h264_limits import HwH264Settings

    calls: list[tuple[str, HwH264Settings]] = []

    @contextlib.contextmanager
    def recording(encoder, settings):  # type: ignore[no-untyped-def]
        calls.append((encoder, settings))
        yield

    monkeypatch.setattr(station.recording.writer, "hw_controls", recording)  # writer.open_encoder
    enc = StreamEncoder(EncoderSettings(W, H, FPS, keyframe_interval_s=2.0))
    enc.flush()
    assert calls == [("libx264", HwH264Settings(level="4.0", i_period=20))]


def test_an_encoder_that_will_not_open_is_the_one_encoder_error() -> None:
    settings = EncoderSettings(W, H, FPS, preset="no-such-preset")
    with pytest.raises(RecordingError) as exc:
        StreamEncoder(settings)
    assert str(exc.value).startswith(f"H.264 encoder libx264 failed at {W}x{H}: ")
    cause = exc.value.__cause__  # what libx264 said
    assert cause is not None and str(exc.value) == str(encoder_failed(settings, cause))


def test_a_clip_muxer_refuses_a_non_positive_fsync_interval_before_creating_the_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="fsync_interval_s must be positive"):
        ClipMuxer(tmp_path / "x.mp4", EncoderSettings(W, H, FPS), lambda: None, fsync_interval_s=0)
    assert not (tmp_path / "x.mp4").exists()
