"""Limits and settings of the Pi 4's H.264 encoder (bcm2835-codec via h264_v4l2m2m)."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

# The SoC encoder takes at most 1080p; widths that are not a multiple of 32 come out corrupted
# (a known bcm2835-codec limitation: its input stride is aligned to 32 pixels).
HW_MAX_WIDTH, HW_MAX_HEIGHT = 1920, 1080
HW_WIDTH_ALIGN = 32

# linux/v4l2-controls.h and linux/videodev2.h (stable kernel ABI).
_V4L2_CID_CODEC_BASE = 0x00990000 | 0x900
V4L2_CID_MPEG_VIDEO_H264_I_PERIOD = _V4L2_CID_CODEC_BASE + 358
V4L2_CID_MPEG_VIDEO_H264_LEVEL = _V4L2_CID_CODEC_BASE + 359
V4L2_H264_LEVEL_MENU = {"4.0": 11, "4.1": 12, "4.2": 13}
VIDIOC_S_CTRL = 0xC008561C  # _IOWR('V', 28, struct v4l2_control {__u32 id; __s32 value;})

# H.264 table A-1: level 4.0/4.1 allow 245 760 macroblocks per second (1080p30).
_LEVEL_4_MAX_MBPS = 245_760


@dataclass(frozen=True)
class HwH264Settings:
    """What the bcm2835 encoder is told through V4L2 controls (as picamera2's H264Encoder)."""

    level: str  # "4.0", "4.1" or "4.2"
    i_period: int  # frames from one key frame to the next

    @property
    def level_control(self) -> int:
        return V4L2_H264_LEVEL_MENU[self.level]


def hw_size_problem(width: int, height: int) -> str | None:
    """Why ``h264_v4l2m2m`` cannot encode ``width`` x ``height`` on a Pi 4, or None."""
    if width > HW_MAX_WIDTH or height > HW_MAX_HEIGHT:
        return (
            f"{width}x{height} is larger than the Pi 4 hardware encoder's "
            f"{HW_MAX_WIDTH}x{HW_MAX_HEIGHT}"
        )
    if width % HW_WIDTH_ALIGN:
        lower = width - width % HW_WIDTH_ALIGN
        return (
            f"width {width} is not a multiple of {HW_WIDTH_ALIGN}: the Pi 4 hardware encoder "
            f"corrupts such frames (use {lower} or {lower + HW_WIDTH_ALIGN})"
        )
    return None


def h264_level(width: int, height: int, fps: float, bitrate_kbps: int) -> str:
    """The H.264 level the encoder must announce, picamera2's rule for the same encoder.

    4.0 by default (the driver's default); 4.2 when the macroblock rate exceeds level 4.1's
    245 760/s (1080p above 30 fps); else 4.1 when the bitrate exceeds 10 Mb/s, which the
    firmware will not produce at 4.0.
    """
    mbps = ((width + 15) // 16) * ((height + 15) // 16) * fps
    if mbps > _LEVEL_4_MAX_MBPS:
        return "4.2"
    if bitrate_kbps > 10_000:
        return "4.1"
    return "4.0"


def i_period(fps: float, keyframe_interval_s: float) -> int:
    """Frames between key frames for ``keyframe_interval_s`` (at least 1)."""
    return max(1, round(keyframe_interval_s * fps))


def hw_settings(
    width: int, height: int, fps: float, bitrate_kbps: int, keyframe_interval_s: float
) -> HwH264Settings:
    return HwH264Settings(
        level=h264_level(width, height, fps, bitrate_kbps),
        i_period=i_period(fps, keyframe_interval_s),
    )


def keyframe_problem(keyframes: Sequence[bool], period: int) -> str | None:
    """Whether encoded frames (True = key frame) follow the configured I-period; None if so.

    Frame 0 must be a key frame and then one every ``period`` frames, no more and no fewer:
    the clip cutter and the pre-roll ring rely on them.
    """
    where = [i for i, key in enumerate(keyframes) if key]
    if not where or where[0] != 0:
        return "the first frame is not a key frame"
    expected = list(range(0, len(keyframes), period))
    if where == expected:
        return None
    gaps = sorted({b - a for a, b in itertools.pairwise(where)})
    seen = (
        f"key frames every {', '.join(map(str, gaps))} frames"
        if gaps
        else f"no key frame after frame 0 in {len(keyframes)} frames"
    )
    return f"{seen}, configured every {period}"


# ---- applying the settings to the device FFmpeg opened --------------------------------------


def video_fds(fd_dir: str = "/proc/self/fd") -> dict[int, str]:
    """This process's open file descriptors on ``/dev/video*`` devices."""
    found = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir(fd_dir):
            with contextlib.suppress(OSError, ValueError):
                target = os.readlink(os.path.join(fd_dir, entry))
                if target.startswith("/dev/video"):
                    found[int(entry)] = target
    return found


def set_controls(
    fd: int,
    settings: HwH264Settings,
    ioctl: Callable[[int, int, bytes], bytes] = fcntl.ioctl,
) -> list[str]:
    """Set the I-period and level on an open V4L2 encoder; the failures, as text."""
    failures = []
    for name, cid, value in (
        ("I-period", V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, settings.i_period),
        ("level", V4L2_CID_MPEG_VIDEO_H264_LEVEL, settings.level_control),
    ):
        try:
            ioctl(fd, VIDIOC_S_CTRL, struct.pack("=Ii", cid, value))
        except OSError as exc:
            failures.append(f"{name} {value}: {exc.strerror or exc}")
    return failures


@contextlib.contextmanager
def hw_controls(
    encoder: str,
    settings: HwH264Settings | None,
    *,
    fd_dir: str = "/proc/self/fd",
    ioctl: Callable[[int, int, bytes], bytes] = fcntl.ioctl,
) -> Iterator[None]:
    """Around ``ctx.open()`` of FFmpeg's ``h264_v4l2m2m``: set the I-period and level the way
    the bcm2835 driver honours them.

    FFmpeg's wrapper sets only ``V4L2_CID_MPEG_VIDEO_GOP_SIZE`` (from ``gop_size``), which the
    bcm2835 driver may ignore (its intra period is ``H264_I_PERIOD``, default 60), and no
    level at all. The driver takes
    ``V4L2_CID_MPEG_VIDEO_H264_I_PERIOD`` and ``..._H264_LEVEL``, as picamera2's H264Encoder
    sets them. V4L2 controls belong to the open file, so they go on the descriptor FFmpeg just
    opened (the ``/dev/video*`` descriptor that is new after ``open``), before the first frame
    starts the stream. Failures are logged, not raised: the start-up key-frame check
    (``packcam doctor``) reports what the encoder really does.
    """
    if settings is None or encoder != "h264_v4l2m2m":
        yield
        return
    before = set(video_fds(fd_dir))
    yield
    new = {fd: path for fd, path in video_fds(fd_dir).items() if fd not in before}
    if not new:
        log.warning("h264_v4l2m2m: found no new /dev/video descriptor to set I-period %d and "
                    "level %s on", settings.i_period, settings.level)  # fmt: skip
        return
    for fd, path in sorted(new.items()):
        failures = set_controls(fd, settings, ioctl)
        if failures:
            log.warning("h264_v4l2m2m on %s refused %s", path, "; ".join(failures))
        else:
            log.info("h264_v4l2m2m on %s: I-period %d, level %s", path, settings.i_period,
                     settings.level)  # fmt: skip


__all__ = [
    "HW_MAX_HEIGHT",
    "HW_MAX_WIDTH",
    "HW_WIDTH_ALIGN",
    "HwH264Settings",
    "h264_level",
    "hw_controls",
    "hw_settings",
    "hw_size_problem",
    "i_period",
    "keyframe_problem",
    "set_controls",
    "video_fds",
]
