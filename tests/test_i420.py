"""The I420 path: a camera that gives planar YUV420 is overlaid, encoded and read for
barcodes (from the Y plane) without a BGR round trip."""

from __future__ import annotations

import threading
from datetime import datetime

import av
import cv2
import numpy as np
import pytest

from station import config as config_mod
from station.capture.frames import Caption
from station.capture.synthetic import Scenario, SyntheticCamera
from station.errors import ConfigError
from station.recording.overlay import Overlay
from station.recording.writer import to_i420
from station.service import assemble

WALL = datetime(2026, 12, 4, 9, 0, 0).astimezone()


def bt601(bgr: np.ndarray) -> np.ndarray:
    b, g, r = (bgr[..., i].astype(np.float32) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return np.stack([y, u, v], axis=-1)


@pytest.mark.parametrize(("h", "w"), [(96, 160), (360, 640), (720, 1280)])
def test_the_band_drawn_in_i420_is_the_band_drawn_in_bgr(h: int, w: int) -> None:
    rng = np.random.default_rng(h)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 6)
    ov = Overlay("台 1", None)
    bgr = scene.copy()
    caption = Caption(WALL, "PO-1", "SF1234567890123", 65.0, True)
    ov.apply(bgr, caption)
    yuv = to_i420(scene)
    ov.apply_i420(yuv, caption)
    # Y: the same to the rounding; U/V: against the 2x2 average of the BGR result's chroma
    # (OpenCV's own I420 conversion samples one pixel of four, the encoder wants the mean).
    ref = bt601(bgr)  # 4:4:4, limited range, what to_i420 makes per pixel
    assert np.abs(yuv[:h].astype(np.float32) - ref[..., 0]).max() <= 1.6
    for plane, offset in ((1, h), (2, h + h // 4)):
        mean = cv2.resize(ref[..., plane], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        got = yuv[offset : offset + h // 4].reshape(h // 2, w // 2)
        assert np.abs(got.astype(np.float32) - mean).max() <= 3
    # Below the band nothing changed.
    rows = ov.band[1]  # type: ignore[index]
    assert np.array_equal(yuv[rows + 2 : h], to_i420(scene)[rows + 2 : h])


def test_i420_station_records_orders_read_from_the_y_plane(cfg: config_mod.Config) -> None:
    w, h, fps = 640, 360, 10.0
    cfg = cfg.replace("camera", width=w, height=h, fps=fps, pixel_format="i420")
    cfg = cfg.replace("proof", enabled=False).replace("session", pre_roll_s=1.0)
    events = [
        {"at": 1.0, "kind": "show", "code": "PO-YUV-1", "symbology": "qrcode", "duration": 2.0},
        {"at": 5.0, "kind": "show", "code": "SEAL", "symbology": "qrcode", "duration": 2.0},
        {"at": 9.0, "kind": "end"},
    ]
    cam = SyntheticCamera(w, h, fps, Scenario.from_dict({"seed": 2, "event": events}), False,
                          pixel_format="i420")  # fmt: skip
    asm = assemble(cfg, camera=cam, live_view=False)

    def no_bgr(_image: np.ndarray) -> np.ndarray:
        raise AssertionError("an I420 frame went through the BGR -> I420 conversion")

    asm.station.to_i420 = no_bgr
    try:
        asm.station.run(threading.Event())
        clips = asm.ledger.clips()
    finally:
        asm.close()
    assert [(c.order_id, c.finish_reason) for c in clips] == [("PO-YUV-1", "sealed")]
    assert asm.station.last_error is None
    path = cfg.station.data_dir / clips[0].path
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
    assert len(frames) == clips[0].frame_count and (frames[0].width, frames[0].height) == (w, h)
    # The band is in the picture: the top rows are darker than the scene below them.
    grey = frames[-1].to_ndarray(format="gray")
    assert grey[:10].mean() < grey[h // 2 :].mean() - 20


def test_i420_is_refused_for_cameras_that_do_not_deliver_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "c.toml"
    p.write_text('[camera]\nbackend = "opencv"\npixel_format = "i420"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="synthetic camera or picamera2"):
        config_mod.load(p)


def test_a_bgr_cameras_frame_is_never_drawn_on_the_band_goes_on_its_i420_copy(
    cfg: config_mod.Config,
) -> None:
    """The barcode worker may still be reading the camera's BGR frame in its thread: the
    overlay goes on the I420 array made from it, and no copy of the BGR frame is needed."""
    w, h = 320, 180
    cfg = cfg.replace("camera", width=w, height=h, fps=10.0).replace("proof", enabled=False)
    cam = SyntheticCamera(w, h, 10.0, Scenario.from_dict({"seed": 3, "event": []}), False)
    asm = assemble(cfg, camera=cam, live_view=False)
    seen: list[np.ndarray] = []
    asm.station.on_frame = lambda image, _status, _dropped: seen.append(image)
    try:
        cam.start()
        asm.station.decoder.start()
        frame = cam.read()
        before = frame.image.copy()
        asm.station.process(frame)
    finally:
        asm.station.decoder.stop()
        asm.station.recorder.close()  # the station was never run, so its run did not close it
        asm.close()
    assert np.array_equal(frame.image, before)
    (drawn,) = seen
    assert drawn.shape == (h * 3 // 2, w)
    band = asm.station.overlay.band
    assert band is not None
    y0, y1 = band
    plain = to_i420(before)
    assert not np.array_equal(drawn[y0:y1], plain[y0:y1])  # the band is in the I420 frame
    assert np.array_equal(drawn[y1 + 2 : h], plain[y1 + 2 : h])  # and nothing else changed
