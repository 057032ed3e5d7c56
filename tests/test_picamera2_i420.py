"""The I420 path with picamera2's YUV420 output: the adapter against the fake (picamera2's
array shape, row padding, colour space) and a station that never makes a full-size BGR frame."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import av
import cv2
import numpy as np
import pytest

from station import config as config_mod
from station.capture.frames import PedalPress, RawScan, i420_planes
from station.capture.hardware.mock_picamera2 import ColorSpace
from station.capture.hardware.mock_picamera2 import Picamera2 as FakePicamera2
from station.capture.hardware.picamera2_camera import Picamera2Camera, tight_i420
from station.errors import ConfigError

BLUE = (41, 240, 110)  # BT.601 limited-range Y, U, V of pure blue, as the fake draws it
RED = (81, 90, 240)


@pytest.fixture
def picams() -> Iterator[list[FakePicamera2]]:
    made: list[FakePicamera2] = []
    yield made
    for cam in made:
        cam.close()
    FakePicamera2.in_use.clear()


def opener(made: list[FakePicamera2]) -> Callable[[int], FakePicamera2]:
    def open_camera(num: int) -> FakePicamera2:
        cam = FakePicamera2(num)
        made.append(cam)
        return cam

    return open_camera


def i420_camera(made: list[FakePicamera2], w: int, h: int, fps: float = 50.0) -> Picamera2Camera:
    return Picamera2Camera(0, w, h, fps, 1.0, picamera2_cls=opener(made), pixel_format="i420",
                           colour_space_cls=ColorSpace)  # fmt: skip


def test_fake_gives_yuv420_in_picamera2s_shape_with_its_default_colour_spaces(picams) -> None:
    pc = opener(picams)(0)
    small = pc.create_video_configuration(main={"size": (640, 360), "format": "YUV420"})
    hd = pc.create_video_configuration(main={"size": (1280, 720), "format": "YUV420"})
    assert small["colour_space"] == ColorSpace.Smpte170m()
    assert hd["colour_space"] == ColorSpace.Rec709()  # picamera2's choice for HD video
    pc.configure(pc.create_video_configuration(main={"size": (100, 48), "format": "YUV420"}))
    main = pc.camera_configuration()["main"]
    assert main["stride"] == 128 and main["framesize"] == 128 * 72  # rows aligned to 64 bytes
    pc.start()
    array = pc.capture_array("main", wait=1.0)
    assert array.shape == (72, 128) and array.dtype == np.uint8  # (h*3/2, stride), as picamera2
    assert (array[:48, 100:] == 0xEE).all()  # the padding is there, not pixels


@pytest.mark.parametrize(("w", "h"), [(100, 48), (128, 48), (1296, 972)])
def test_adapter_requests_yuv420_in_smpte170m_and_returns_tight_i420(picams, w, h) -> None:
    cam = i420_camera(picams, w, h)
    cam.start()
    config = picams[0].camera_configuration()
    frame = cam.read(1.0)
    cam.stop()
    assert config["main"]["format"] == "YUV420"
    # The stream's tags say BT.601 (smpte170m): picamera2 would have picked Rec.709 for HD.
    assert config["colour_space"] == ColorSpace.Smpte170m()
    assert frame.pixel_format == "i420" and frame.image.shape == (h * 3 // 2, w)
    y, u, v = i420_planes(frame.image)
    for plane, k in ((y, 0), (u, 1), (v, 2)):
        half = plane.shape[1] // 2
        assert (plane[1:, :half] == BLUE[k]).all() and (plane[:, half:] == RED[k]).all()
    assert not (frame.image == 0xEE).any()  # no row padding left in the picture


def test_tight_i420_is_picamera2s_array_itself_when_rows_are_not_padded() -> None:
    buf = np.arange(72 * 64, dtype=np.uint8).reshape(72, 64)
    assert tight_i420(buf, 64, 48, 64) is buf
    with pytest.raises(ValueError, match="YUV420"):
        tight_i420(buf, 32, 48, 32)


def test_adapter_scales_a_size_libcamera_adjusted_plane_by_plane(picams, monkeypatch) -> None:
    monkeypatch.setattr(FakePicamera2, "width_align", 64)
    cam = i420_camera(picams, 100, 48)
    cam.start()
    frame = cam.read(1.0)
    cam.stop()
    assert cam.actual_size == (64, 48)
    assert frame.image.shape == (72, 100)
    y, u, _ = i420_planes(frame.image)
    assert abs(int(y[10, 5]) - BLUE[0]) <= 1 and abs(int(u[10, 45]) - RED[1]) <= 1


def test_i420_is_accepted_for_picamera2_and_refused_for_opencv(tmp_path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[camera]\nbackend = "picamera2"\npixel_format = "i420"\n', encoding="utf-8")
    assert config_mod.load(p).camera.pixel_format == "i420"
    p.write_text('[camera]\nbackend = "opencv"\npixel_format = "i420"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="synthetic camera or picamera2"):
        config_mod.load(p)


class Script:
    """A scan source: an order scan after ``order_after`` s, a seal after ``seal_after`` s."""

    def __init__(self, order_after: float, seal_after: float) -> None:
        self.order_after, self.seal_after = order_after, seal_after
        self.t0: float | None = None
        self.sent: list[str] = []

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def poll(self, now: float) -> list[RawScan | PedalPress]:
        if self.t0 is None:
            self.t0 = now
        out: list[RawScan | PedalPress] = []
        if not self.sent and now - self.t0 >= self.order_after:
            self.sent.append("order")
            out.append(RawScan("PO-PICAM-1", "keyboard", now))
        elif self.sent == ["order"] and now - self.t0 >= self.seal_after:
            self.sent.append("seal")
            out.append(PedalPress(now))
        return out


def test_station_on_a_yuv420_pi_camera_makes_no_full_size_bgr_frame(
    picams, cfg, monkeypatch
) -> None:
    """picamera2 YUV420 in, H.264 out: overlay on the planes, barcodes from the Y plane, the
    encoder fed the planes, the live view converting only its 640-wide preview."""
    from station.service import assemble

    w, h = 1280, 720
    conversions: list[tuple[int, ...]] = []
    real_cvt = cv2.cvtColor

    def counting_cvt(src, code, *args, **kwargs):  # type: ignore[no-untyped-def]
        conversions.append(src.shape)
        return real_cvt(src, code, *args, **kwargs)

    monkeypatch.setattr(cv2, "cvtColor", counting_cvt)
    cfg = cfg.replace("camera", backend="picamera2", width=w, height=h, fps=30.0,
                      pixel_format="i420")  # fmt: skip
    cfg = cfg.replace("proof", enabled=False).replace("session", pre_roll_s=0.5)
    camera = i420_camera(picams, w, h, 30.0)
    asm = assemble(cfg, camera=camera, live_view=True)
    script = Script(0.7, 1.8)
    asm.station.scan_sources.append(script)

    def no_bgr(_image: np.ndarray) -> np.ndarray:
        raise AssertionError("an I420 frame went through the BGR -> I420 conversion")

    asm.station.to_i420 = no_bgr
    stop = threading.Event()
    runner = threading.Thread(target=asm.station.run, args=(stop,), daemon=True)
    runner.start()
    deadline = time.monotonic() + 20
    while script.sent != ["order", "seal"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)
    stop.set()
    runner.join(10)
    assert not runner.is_alive()
    live_jpg = cfg.station.data_dir / "live" / f"{cfg.station.name}.jpg"
    try:
        clips = asm.ledger.clips()
    finally:
        asm.close()
    assert script.sent == ["order", "seal"]
    assert [(c.order_id, c.finish_reason) for c in clips] == [("PO-PICAM-1", "sealed")]
    assert asm.station.last_error is None and asm.station.stats.frames > 30
    full = [s for s in conversions if s[:2] in ((h * 3 // 2, w), (h, w))]
    assert full == [], f"{len(full)} full-size colour conversions in the station loop"
    assert (360 * 3 // 2, 640) in conversions  # the live preview: converted after scaling
    assert cv2.imread(str(live_jpg)).shape == (360, 640, 3)
    with av.open(str(cfg.station.data_dir / clips[0].path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (w, h)
        picture = next(container.decode(stream)).to_ndarray(format="bgr24")
    # Below the overlay band: blue on the left, red on the right, as the sensor gave them.
    b, g, r = (int(x) for x in picture[h // 2, w // 4])
    assert b > 200 and r < 60 and g < 60
    b, g, r = (int(x) for x in picture[h // 2, 3 * w // 4])
    assert r > 200 and b < 60 and g < 60
