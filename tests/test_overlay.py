"""station.recording.overlay: CJK glyphs, band-only drawing, per-second updates, caching."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from station.capture.frames import Caption
from station.recording import overlay as overlay_mod
from station.recording.overlay import (
    CJK_FONT_CANDIDATES,
    Overlay,
    find_cjk_font,
    format_elapsed,
    format_wall,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
WALL = datetime(2026, 11, 30, 8, 39, 11, 250_000, tzinfo=UTC)  # 16:39:11 in Shanghai
HAVE_CJK = find_cjk_font() is not None


def noise(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def drawn(ov: Overlay, img: np.ndarray, **kwargs: object) -> np.ndarray:
    out = img.copy()
    args: dict[str, object] = {"wall": WALL}
    args.update(kwargs)
    ov.apply(out, Caption(**args))  # type: ignore[arg-type]
    return out


def test_find_cjk_font_finds_an_installed_font() -> None:
    installed = [p for p in CJK_FONT_CANDIDATES if os.path.isfile(p)]
    if not installed:
        pytest.skip("no CJK font installed here (apt install fonts-wqy-zenhei)")
    assert find_cjk_font() == installed[0]
    assert Overlay("s", SHANGHAI).cjk


@pytest.mark.skipif(not HAVE_CJK, reason="no CJK font installed (apt install fonts-wqy-zenhei)")
def test_chinese_renders_glyphs_not_placeholders() -> None:
    ov = Overlay("station", SHANGHAI)
    cjk = ov.render_text("封箱", 24)
    qq = ov.render_text("??", 24)
    assert cjk.max() == 255  # ink, not an empty box
    assert cjk.shape != qq.shape or not np.array_equal(cjk, qq)
    # and a different CJK text gives different ink: real glyphs, not one .notdef shape
    assert not np.array_equal(ov.render_text("打包", 24), cjk)
    # end to end: the station name shows up differently in the band
    img = noise()
    assert not np.array_equal(
        drawn(Overlay("封箱", SHANGHAI), img), drawn(Overlay("??", SHANGHAI), img)
    )


def test_missing_cjk_font_falls_back_and_each_overlay_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two overlays in one process (two stations, or two tests): each warns of its own missing
    font once, however many frames it draws; the first does not silence the second."""
    monkeypatch.setattr(overlay_mod, "find_cjk_font", lambda: None)
    with caplog.at_level(logging.WARNING, logger="station.recording.overlay"):
        a = Overlay("封箱", SHANGHAI, font_path="/nonexistent/font.ttc")
        out = drawn(a, noise(), order_id="订单1")
        drawn(a, noise(480, 640), order_id="订单2")
        assert caplog.text.count("CJK will not render") == 1
        b = Overlay("封箱", SHANGHAI)
        drawn(b, noise())
    assert not a.cjk and not b.cjk
    assert caplog.text.count("CJK will not render") == 2
    assert "/nonexistent/font.ttc" in caplog.text
    assert out[:20].any()


def test_a_font_that_cannot_be_loaded_is_warned_of_once_per_overlay(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """The only Latin font found is not a font: each overlay says so once (not once per text
    size), draws with Pillow's own font, and a second overlay is not silenced by the first."""
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font")
    monkeypatch.setattr(overlay_mod, "find_cjk_font", lambda: None)
    monkeypatch.setattr(overlay_mod, "LATIN_FONT_CANDIDATES", (str(broken),))
    with caplog.at_level(logging.WARNING, logger="station.recording.overlay"):
        for _ in range(2):
            ov = Overlay("station", SHANGHAI)
            assert ov.font_path == str(broken)
            # two frame heights: two text sizes, each loaded (and failing) on its own
            assert drawn(ov, noise(), order_id="A1")[:20].any()
            assert drawn(ov, noise(480, 640), order_id="A1")[:40].any()
    assert caplog.text.count("cannot load overlay font") == 2, caplog.text


def test_configured_font_is_used_only_if_it_has_chinese_glyphs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cjk = find_cjk_font()
    latin = next((p for p in overlay_mod.LATIN_FONT_CANDIDATES if os.path.isfile(p)), None)
    if cjk is None or latin is None:
        pytest.skip("needs both a CJK and a Latin-only font installed")
    assert Overlay("s", SHANGHAI, font_path=cjk).font_path == cjk
    with caplog.at_level(logging.WARNING, logger="station.recording.overlay"):
        ov = Overlay("s", SHANGHAI, font_path=latin)
    assert "has no Chinese glyphs" in caplog.text
    assert ov.font_path == cjk and ov.cjk


def test_draws_into_a_strided_view() -> None:
    base = noise(240, 400)
    view = base[:, 40:360]  # not C-contiguous
    before = view.copy()
    ov = Overlay("s", SHANGHAI)
    ov.apply(view, Caption(WALL, "A1"))
    assert ov.band is not None
    assert not np.array_equal(view[: ov.band[1]], before[: ov.band[1]])
    assert np.array_equal(base[:, :40], noise(240, 400)[:, :40])


def test_only_band_rows_change() -> None:
    img = noise()
    ov = Overlay("station-01", SHANGHAI)
    out = drawn(ov, img, order_id="A123", waybill="SF1234567890123", elapsed_s=5, recording=True)
    assert ov.band is not None
    y0, y1 = ov.band
    assert y0 == 0 and 0 < y1 < img.shape[0] // 3
    assert np.array_equal(out[y1:], img[y1:])
    changed_rows = np.flatnonzero((out != img).any(axis=(1, 2)))
    assert changed_rows.min() == y0 and changed_rows.max() == y1 - 1


def test_band_darkens_a_bright_scene_and_text_is_white() -> None:
    img = np.full((480, 640, 3), 250, np.uint8)
    ov = Overlay("station-01", SHANGHAI)
    out = drawn(ov, img)
    assert ov.band is not None
    band = out[: ov.band[1]].astype(int)
    assert np.median(band) < 120  # the plain band
    assert band.max() >= 245  # text stays bright on it


def test_second_line_only_when_order_or_waybill_known() -> None:
    ov = Overlay("s", SHANGHAI)
    drawn(ov, noise())
    one = ov.band
    drawn(ov, noise(), waybill="SF1234567890123")
    two = ov.band
    assert one is not None and two is not None and two[1] > one[1]


def test_text_changes_with_the_second_and_cache_avoids_rerendering() -> None:
    img = noise()
    ov = Overlay("station-01", SHANGHAI)
    first = drawn(ov, img, recording=True, elapsed_s=1.2)
    renders, builds = ov.renders, ov.band_builds
    # same second, same elapsed second: identical pixels, nothing re-rendered or rebuilt
    again = drawn(ov, img, wall=WALL + timedelta(milliseconds=500), recording=True, elapsed_s=1.7)
    assert np.array_equal(first, again)
    assert (ov.renders, ov.band_builds) == (renders, builds)
    # next second: the time text changes
    later = drawn(ov, img, wall=WALL + timedelta(seconds=1), recording=True, elapsed_s=1.7)
    assert not np.array_equal(first, later)
    assert ov.band_builds == builds + 1
    # and going back hits the text cache: no new rasterisation
    renders = ov.renders
    drawn(ov, img, recording=True, elapsed_s=1.2)
    assert ov.renders == renders


def test_rec_marker_only_while_recording() -> None:
    img = noise()
    ov = Overlay("s", SHANGHAI)
    idle = drawn(ov, img, elapsed_s=12)
    rec = drawn(ov, img, elapsed_s=12, recording=True)
    w = img.shape[1]
    assert not np.array_equal(idle[:, w // 2 :], rec[:, w // 2 :])
    assert np.array_equal(idle[:, :10], rec[:, :10])  # left side unchanged


@pytest.mark.parametrize(("w", "h"), [(640, 480), (1280, 720), (1920, 1080)])
def test_font_scales_with_frame_height(w: int, h: int) -> None:
    ov = Overlay("打包台 station", SHANGHAI)
    out = np.zeros((h, w, 3), np.uint8)
    ov.apply(out, Caption(WALL, "ORDER-1", "SF1234567890123", 65.0, True))
    assert ov.band is not None
    assert 0.07 < ov.band[1] / h < 0.16  # two lines, roughly the same share of the frame
    assert Overlay.font_size_for(h) == max(12, round(h / 28))


def test_long_text_is_cropped_not_an_error() -> None:
    ov = Overlay("x" * 64, SHANGHAI)
    drawn(ov, noise(), order_id="O" * 64, waybill="W" * 64, elapsed_s=3, recording=True)


def test_rejects_non_bgr_frames() -> None:
    with pytest.raises(ValueError):
        Overlay("s", SHANGHAI).apply(np.zeros((10, 10), np.uint8), Caption(WALL))


def test_format_wall_and_elapsed() -> None:
    assert format_wall(WALL, SHANGHAI) == "2026-11-30 16:39:11 +08:00"
    assert format_wall(WALL, ZoneInfo("America/St_Johns")) == "2026-11-30 05:09:11 -03:30"
    assert format_wall(WALL, UTC) == "2026-11-30 08:39:11 +00:00"
    assert format_elapsed(0) == "00:00"
    assert format_elapsed(83.9) == "01:23"
    assert format_elapsed(3725) == "1:02:05"
    assert format_elapsed(-1) == "00:00"


@pytest.mark.skipif(not HAVE_CJK, reason="no CJK font installed here (fonts-wqy-zenhei)")
def test_labels_can_be_chinese_for_the_platforms_reviewers() -> None:
    img = np.full((480, 640, 3), 128, np.uint8)
    args = {"order_id": "PO-1", "waybill": "SF1234567890123", "elapsed_s": 3, "recording": True}
    outs = {}
    for lang in ("en", "zh", "zh+en"):
        ov = Overlay("打包台1", SHANGHAI, language=lang)
        outs[lang] = drawn(ov, img, **args)
        texts = [key[0] for key in ov._patches]
        line2 = next(t for t in texts if "PO-1" in t)
        assert (
            line2
            == {
                "en": "Order PO-1   Waybill SF1234567890123",
                "zh": "订单 PO-1   运单 SF1234567890123",
                "zh+en": "订单 Order PO-1   运单 Waybill SF1234567890123",
            }[lang]
        )
        # the Chinese labels are drawn as glyphs, not as the font's empty box
        label = ov.render_text(line2.split()[0], 20)
        assert label.any() and not np.array_equal(label, ov.render_text("??", 20))
    assert not np.array_equal(outs["en"], outs["zh"])
    with pytest.raises(ValueError):
        Overlay("s", SHANGHAI, language="fr")
