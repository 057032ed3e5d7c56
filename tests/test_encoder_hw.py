"""The Pi 4 hardware encoder option: config, start-up probe, clear errors, and a real clip."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from station import config as config_mod
from station.capture.synthetic import Scenario, SyntheticCamera
from station.cli import EXIT_USAGE, main
from station.errors import ConfigError, RecordingError
from station.recording.writer import (
    PI4_ENCODER_DEVICE,
    ClipWriter,
    EncoderSettings,
    probe_encoder,
    to_i420,
)
from station.service import run_station

HW = "h264_v4l2m2m"


@functools.cache
def hardware_problem() -> str | None:
    """None when the V4L2 H.264 encoder really encodes here, else why not."""
    try:
        probe_encoder(EncoderSettings(640, 480, 30.0, encoder=HW))
    except RecordingError as exc:
        return str(exc)
    return None


def write_toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "packcam.toml"
    p.write_text(text, encoding="utf-8")
    return p


# --- config ---------------------------------------------------------------------------------


def test_encoder_defaults_to_libx264() -> None:
    r = config_mod.load(None).recorder
    assert (r.encoder, r.bitrate_kbps) == ("libx264", 4000)


def test_hardware_encoder_is_accepted(tmp_path: Path) -> None:
    cfg = config_mod.load(
        write_toml(tmp_path, '[recorder]\nencoder = "h264_v4l2m2m"\nbitrate_kbps = 6000\n')
    )
    assert (cfg.recorder.encoder, cfg.recorder.bitrate_kbps) == (HW, 6000)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('encoder = "h264_omx"', "recorder.encoder must be libx264 .* or h264_v4l2m2m"),
        ('encoder = "auto"', "recorder.encoder"),
        ("encoder = 264", "expected a string"),
        ("bitrate_kbps = 0", "recorder.bitrate_kbps"),
        ("bitrate_kbps = 100000", "recorder.bitrate_kbps"),
        ("bitrate_kbps = 4.5", "expected an integer"),
        ('encoder_device = "/dev/video11"', "unknown key in \\[recorder\\]: encoder_device"),
    ],
)
def test_bad_encoder_settings_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_mod.load(write_toml(tmp_path, f"[recorder]\n{text}\n"))


def test_check_config_catches_an_unknown_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_toml(tmp_path, '[recorder]\nencoder = "nvenc"\n')
    assert main(["check-config", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "recorder.encoder" in err and "'nvenc'" in err


# --- a missing device (every machine but a Pi 4) ----------------------------------------------


def test_missing_device_is_a_clear_error_from_the_probe() -> None:
    if hardware_problem() is None:
        pytest.skip("this machine has a working V4L2 H.264 encoder")
    with pytest.raises(RecordingError) as exc:
        probe_encoder(EncoderSettings(1280, 720, 30.0, encoder=HW))
    msg = str(exc.value)
    assert HW in msg and PI4_ENCODER_DEVICE in msg and 'encoder = "libx264"' in msg


def test_missing_device_fails_the_writer_before_any_file_is_left(tmp_path: Path) -> None:
    if hardware_problem() is None:
        pytest.skip("this machine has a working V4L2 H.264 encoder")
    path = tmp_path / "hw.mp4"
    with pytest.raises(RecordingError, match=f"{HW}.*{PI4_ENCODER_DEVICE}"):
        ClipWriter(path, EncoderSettings(320, 240, 30.0, encoder=HW))
    assert not path.exists()


def test_station_refuses_to_start_without_the_hardware_encoder(tmp_path: Path) -> None:
    """At start-up, before the camera runs or a clip exists; no fallback to libx264."""
    if hardware_problem() is None:
        pytest.skip("this machine has a working V4L2 H.264 encoder")
    cfg = config_mod.load(None).with_data_dir(tmp_path / "data")
    cfg = cfg.replace("camera", width=160, height=96, fps=10.0)
    cfg = cfg.replace("scanner", camera_decode=False)
    cfg = cfg.replace("recorder", encoder=HW)
    scenario = Scenario.from_dict(
        {"seed": 1, "event": [{"at": 0.2, "kind": "key", "text": "PO-1"}, {"at": 1, "kind": "end"}]}
    )
    cam = SyntheticCamera(160, 96, 10.0, scenario, realtime=False)
    with pytest.raises(RecordingError, match=f"{HW}.*{PI4_ENCODER_DEVICE}"):
        run_station(cfg, threading.Event(), camera=cam, live_view=False)
    assert not list((tmp_path / "data").rglob("*.mp4"))


def test_libx264_probe_works_here() -> None:
    probe_encoder(EncoderSettings(320, 240, 30.0))


def _probe_settings(encoder: str) -> EncoderSettings:
    return EncoderSettings(
        640, 480, 60.0, encoder=encoder, bitrate_kbps=12_000, keyframe_interval_s=2.0
    )


def _probe_clip_writer(tmp_path: Path, encoder: str) -> None:
    ClipWriter(tmp_path / "probe.mp4", _probe_settings(encoder)).finish()


def _probe_start_up(tmp_path: Path, encoder: str) -> None:
    probe_encoder(_probe_settings(encoder))


def _probe_doctor(tmp_path: Path, encoder: str) -> None:
    from station.runtime.doctor import encoder_probe

    encoder_probe(_probe_settings(encoder), frames=3)


@pytest.mark.parametrize("opener", [_probe_clip_writer, _probe_start_up, _probe_doctor])
def test_every_probe_opens_the_hardware_encoder_inside_its_controls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opener: Callable[[Path, str], None]
) -> None:
    """The start-up probe opened h264_v4l2m2m without the I-period and level the station sets
    (so it tested another encoder than the one that records); every opener now goes through
    writer.open_encoder. The device exists only on a Pi 4: here the wiring is checked."""
    import contextlib

    import station.recording.writer
    from station.recording.h264_limits import HwH264Settings

    calls: list[tuple[str, HwH264Settings | None]] = []

    @contextlib.contextmanager
    def recording(encoder: str, settings: HwH264Settings | None) -> Iterator[None]:
        calls.append((encoder, settings))
        yield

    works_here = hardware_problem() is None  # probed before the patch (cached)
    monkeypatch.setattr(station.recording.writer, "hw_controls", recording)
    if works_here:
        opener(tmp_path, HW)
    else:
        with pytest.raises(RecordingError):
            opener(tmp_path, HW)
    # 640x480 at 60 fps and 12 Mb/s: level 4.1 (the bitrate), a key frame every 2 s.
    assert calls == [(HW, HwH264Settings(level="4.1", i_period=120))]


# --- the real thing (a Raspberry Pi 4) --------------------------------------------------------


@pytest.mark.hardware
def test_hardware_encoder_records_a_playable_clip(tmp_path: Path) -> None:
    problem = hardware_problem()
    if problem is not None:
        pytest.skip(f"no usable V4L2 H.264 encoder here (a Pi 4's {PI4_ENCODER_DEVICE}): {problem}")
    w, h, fps, n = 640, 480, 30.0, 90
    path = tmp_path / "hw.mp4"
    writer = ClipWriter(
        path, EncoderSettings(w, h, fps, encoder=HW, bitrate_kbps=2000, keyframe_interval_s=1.0)
    )
    for i in range(n):
        img = np.full((h, w, 3), 90, np.uint8)
        x = (i * 5) % (w - 80)
        img[200:280, x : x + 80] = (20, 200, 240)
        writer.write(to_i420(img), 100.0 + i / fps)
    ff = writer.finish()
    assert ff.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ff.frame_count == n
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.extradata  # the avcC the muxer built
        frames = list(c.decode(stream))
    assert len(frames) == n
    assert (frames[0].width, frames[0].height) == (w, h)
    assert frames[0].key_frame
    pts = [float(f.pts * f.time_base) for f in frames]
    assert pts == pytest.approx([i / fps for i in range(n)], abs=0.001)
