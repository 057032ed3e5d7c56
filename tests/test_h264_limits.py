"""The Pi 4 hardware encoder's limits: sizes, H.264 level, I-period, the key-frame check, and
how the settings reach the V4L2 device FFmpeg opened."""

from __future__ import annotations

import errno
import logging
import os
import struct
from pathlib import Path

import pytest

from station import config as config_mod
from station.errors import ConfigError
from station.recording.h264_limits import (
    V4L2_CID_MPEG_VIDEO_H264_I_PERIOD,
    V4L2_CID_MPEG_VIDEO_H264_LEVEL,
    VIDIOC_S_CTRL,
    HwH264Settings,
    h264_level,
    hw_controls,
    hw_settings,
    hw_size_problem,
    i_period,
    keyframe_problem,
    set_controls,
    video_fds,
)


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        ((1280, 720), None),
        ((1920, 1080), None),
        ((640, 480), None),
        ((1366, 768), "width 1366 is not a multiple of 32: the Pi 4 hardware encoder corrupts "
                      "such frames (use 1344 or 1376)"),
        ((1080, 1920), "1080x1920 is larger than the Pi 4 hardware encoder's 1920x1080"),
        ((2560, 1440), "2560x1440 is larger than the Pi 4 hardware encoder's 1920x1080"),
        ((1936, 1080), "1936x1080 is larger than the Pi 4 hardware encoder's 1920x1080"),
    ],
)  # fmt: skip
def test_hw_size_problem(size: tuple[int, int], problem: str | None) -> None:
    assert hw_size_problem(*size) == problem


@pytest.mark.parametrize(
    ("w", "h", "fps", "kbps", "level"),
    [
        (1280, 720, 30, 4000, "4.0"),
        (1920, 1080, 30, 4000, "4.0"),  # 120 x 68 MB x 30 = 244 800 <= 245 760
        (1920, 1080, 30, 10_000, "4.0"),
        (1920, 1080, 30, 10_001, "4.1"),  # above 10 Mb/s, as picamera2's H264Encoder
        (1280, 720, 30, 25_000, "4.1"),
        (1920, 1080, 31, 4000, "4.2"),  # macroblock rate above level 4.1
        (1920, 1080, 60, 25_000, "4.2"),
    ],
)
def test_h264_level_follows_picamera2s_rule(w, h, fps, kbps, level) -> None:
    assert h264_level(w, h, fps, kbps) == level


def test_i_period_and_settings() -> None:
    assert i_period(30, 4.0) == 120
    assert i_period(29.97, 2.0) == 60
    assert i_period(25, 0.01) == 1
    s = hw_settings(1920, 1080, 30, 12_000, 2.0)
    assert s == HwH264Settings(level="4.1", i_period=60) and s.level_control == 12


def test_keyframe_problem() -> None:
    def pattern(n: int, at: set[int]) -> list[bool]:
        return [i in at for i in range(n)]

    assert keyframe_problem(pattern(25, {0, 10, 20}), 10) is None
    assert keyframe_problem(pattern(21, {0, 10, 20}), 10) is None
    assert (
        keyframe_problem(pattern(25, {0, 10}), 10)
        == "key frames every 10 frames, configured every 10"
    )
    assert (
        keyframe_problem(pattern(25, {0, 12, 24}), 10)
        == "key frames every 12 frames, configured every 10"
    )
    assert keyframe_problem(pattern(121, {0, 60, 120}), 120) == (
        "key frames every 60 frames, configured every 120"
    )  # the driver's default of 60 instead of ours
    assert keyframe_problem(pattern(30, {0}), 10) == (
        "no key frame after frame 0 in 30 frames, configured every 10"
    )
    assert keyframe_problem(pattern(30, {1, 11, 21}), 10) == "the first frame is not a key frame"
    assert keyframe_problem([], 10) == "the first frame is not a key frame"


class RecordingIoctl:
    def __init__(self, fail: dict[int, int] | None = None) -> None:
        self.calls: list[tuple[int, int, int, int]] = []
        self.fail = fail or {}

    def __call__(self, fd: int, request: int, arg: bytes) -> bytes:
        cid, value = struct.unpack("=Ii", arg)
        self.calls.append((fd, request, cid, value))
        if cid in self.fail:
            raise OSError(self.fail[cid], os.strerror(self.fail[cid]))
        return arg


def test_set_controls_sends_i_period_and_level_as_v4l2_controls() -> None:
    ioctl = RecordingIoctl()
    assert set_controls(9, HwH264Settings("4.2", 60), ioctl) == []
    assert ioctl.calls == [
        (9, VIDIOC_S_CTRL, V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, 60),
        (9, VIDIOC_S_CTRL, V4L2_CID_MPEG_VIDEO_H264_LEVEL, 13),
    ]
    # The kernel ABI values (linux/v4l2-controls.h, linux/videodev2.h).
    assert (V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, V4L2_CID_MPEG_VIDEO_H264_LEVEL) == (
        0x990A66,
        0x990A67,
    )
    assert (3 << 30) | (8 << 16) | (ord("V") << 8) | 28 == VIDIOC_S_CTRL
    refused = RecordingIoctl(fail={V4L2_CID_MPEG_VIDEO_H264_LEVEL: errno.EINVAL})
    assert set_controls(9, HwH264Settings("4.1", 120), refused) == ["level 12: Invalid argument"]


def test_hw_controls_go_to_the_descriptor_ffmpeg_opened(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    fd_dir = tmp_path / "fd"
    fd_dir.mkdir()
    (fd_dir / "3").symlink_to("/dev/video10")  # some other video device, open before
    (fd_dir / "4").symlink_to("/dev/null")
    ioctl = RecordingIoctl()
    settings = HwH264Settings("4.0", 120)
    with hw_controls("h264_v4l2m2m", settings, fd_dir=str(fd_dir), ioctl=ioctl):
        (fd_dir / "7").symlink_to("/dev/video11")  # what ctx.open() opens
        (fd_dir / "8").symlink_to("/dev/null")
    assert [(fd, cid, v) for fd, _, cid, v in ioctl.calls] == [
        (7, V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, 120),
        (7, V4L2_CID_MPEG_VIDEO_H264_LEVEL, 11),
    ]
    assert "h264_v4l2m2m on /dev/video11: I-period 120, level 4.0" in caplog.text
    assert video_fds(str(fd_dir)) == {3: "/dev/video10", 7: "/dev/video11"}


def test_hw_controls_leave_software_encoders_alone_and_say_when_nothing_opened(
    tmp_path: Path, caplog
) -> None:
    ioctl = RecordingIoctl()
    with hw_controls("libx264", HwH264Settings("4.0", 120), fd_dir=str(tmp_path), ioctl=ioctl):
        (tmp_path / "5").symlink_to("/dev/video11")
    assert ioctl.calls == []
    with hw_controls("h264_v4l2m2m", HwH264Settings("4.0", 120), fd_dir=str(tmp_path),
                     ioctl=ioctl):  # fmt: skip
        pass
    assert ioctl.calls == [] and "found no new /dev/video descriptor" in caplog.text


def test_config_rejects_sizes_the_hardware_encoder_corrupts(cfg: config_mod.Config) -> None:
    hw = cfg.replace("recorder", encoder="h264_v4l2m2m")
    config_mod.validate(hw.replace("camera", width=1280, height=720))
    config_mod.validate(hw.replace("camera", width=1920, height=1080))
    with pytest.raises(ConfigError, match="width 1366 is not a multiple of 32"):
        config_mod.validate(hw.replace("camera", width=1366, height=768))
    with pytest.raises(ConfigError, match="larger than the Pi 4 hardware encoder's 1920x1080"):
        config_mod.validate(hw.replace("camera", width=2560, height=1440))
    config_mod.validate(cfg.replace("camera", width=1366, height=768))  # libx264: any even size
