"""Burned-in text band (time, station, order, waybill, REC + elapsed) drawn on BGR frames."""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import subprocess
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from station.capture.frames import Caption

log = logging.getLogger(__name__)

# Fonts with Chinese glyphs, most common first (Debian/Raspberry Pi OS packages, then other
# distributions' paths, then macOS / Windows for developers).
CJK_FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # fonts-wqy-zenhei
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",  # fonts-wqy-microhei
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",  # fonts-noto-cjk
    "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",  # Arch
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",  # Fedora
    "/usr/share/fonts/google-noto-sans-cjk-fonts/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",  # fonts-droid-fallback
    "/usr/share/fonts/truetype/arphic/uming.ttc",  # fonts-arphic-uming
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)
LATIN_FONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
)

# Band look: black at 60 % opacity under white text; the REC dot is red (BGR).
BAND_OPACITY = 0.6
TEXT_BGR = (255, 255, 255)
REC_BGR = (40, 40, 230)
_PATCH_CACHE_SIZE = 64


def find_cjk_font() -> str | None:
    """Path of an installed font with Chinese glyphs, or None.

    Tries the usual package paths first, then asks fontconfig (``fc-list :lang=zh``) when it
    is installed.
    """
    for candidate in CJK_FONT_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return None
    try:
        out = subprocess.run(
            [fc_list, ":lang=zh", "file"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("fc-list failed: %s", exc)
        return None
    for line in sorted(out.splitlines()):
        path = line.split(":", 1)[0].strip()
        if path.lower().endswith((".ttf", ".ttc", ".otf")) and os.path.isfile(path):
            return path
    return None


def format_wall(wall: datetime, tz: tzinfo | None) -> str:
    """``2026-11-30 16:39:11 +08:00``: ``wall`` in ``tz`` (None = the machine's zone)."""
    local = wall.astimezone(tz)
    offset = local.utcoffset()
    minutes = round(offset.total_seconds() / 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    return f"{local:%Y-%m-%d %H:%M:%S} {sign}{hh:02d}:{mm:02d}"


def format_elapsed(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` from one hour), truncated to whole seconds."""
    total = max(0, int(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _has_cjk_glyphs(font_path: str) -> bool:
    """True when the font draws two different CJK characters differently.

    A font without them draws both as the same .notdef glyph (a box or nothing).
    """
    try:
        font = ImageFont.truetype(font_path, 24)
    except OSError as exc:
        log.warning("cannot load font %s: %s", font_path, exc)
        return False
    glyphs = []
    for ch in ("封", "箱"):
        img = Image.new("L", (48, 48), 0)
        ImageDraw.Draw(img).text((4, 4), ch, font=font, fill=255)
        glyphs.append(np.asarray(img))
    return bool(glyphs[0].any()) and not np.array_equal(glyphs[0], glyphs[1])


def _i420_band(
    band: _Band,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The band's keep/ink for the Y plane and the half-size U and V planes.

    Blending is linear, so with keep k and premultiplied ink in BGR, each YUV plane gets the
    same k and the ink's colour transformed without offset, plus offset * (1 - k). An odd band
    height is padded by one untouched row so its last chroma row averages correctly.
    """
    rows = band.keep.shape[0]
    keep = band.keep[..., 0].astype(np.float32)  # alpha is the same in every channel
    ink = band.ink.astype(np.float32)
    if keep.shape[0] % 2:
        keep = np.vstack([keep, np.full((1, keep.shape[1]), 255, np.float32)])
        ink = np.vstack([ink, np.zeros((1, *ink.shape[1:]), np.float32)])
    b, g, r = ink[..., 0], ink[..., 1], ink[..., 2]
    rest = 1.0 - keep / 255.0
    y = 16.0 * rest + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0

    def half(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA)

    kc, bc, gc, rc = half(keep), half(b), half(g), half(r)
    rest_c = 1.0 - kc / 255.0
    u = 128.0 * rest_c + (-37.797 * rc - 74.203 * gc + 112.0 * bc) / 255.0
    v = 128.0 * rest_c + (112.0 * rc - 93.786 * gc - 18.214 * bc) / 255.0

    def u8(a: np.ndarray) -> np.ndarray:
        return np.clip(a + 0.5, 0, 255).astype(np.uint8)

    return (u8(keep[:rows]), u8(y[:rows])), (u8(kc), u8(u), u8(v))


@dataclass(frozen=True)
class _Band:
    """The precomposed band: out = src * keep / 255 + ink over rows y0..y1 (saturating)."""

    y0: int
    y1: int
    keep: np.ndarray  # uint8 (rows, W, 3): 255 * (1 - alpha), how much of the scene shows
    ink: np.ndarray  # uint8 (rows, W, 3): alpha * colour, premultiplied band + text


# What a band shows: frame height and width, time text, order, waybill, REC text, packer, kind.
_BandKey = tuple[int, int, str, str, str, str | None, str, str]


# The words on line 2 of the band. "zh" is for platforms' Chinese-speaking dispute reviewers;
# "REC" and the digits read the same in both.
LABELS: dict[str, dict[str, str]] = {
    "en": {"order": "Order", "waybill": "Waybill", "packer": "Packer", "return": "RETURN"},
    "zh": {"order": "订单", "waybill": "运单", "packer": "打包员", "return": "退货"},
    "zh+en": {
        "order": "订单 Order",
        "waybill": "运单 Waybill",
        "packer": "打包员 Packer",
        "return": "退货 RETURN",
    },
}


class Overlay:
    """Draws a semi-opaque dark band with white text across the top of BGR frames, in place.

    Line 1: local time with seconds and UTC offset, the station name and, while recording, a
    red dot with ``REC mm:ss`` at the right. Line 2 (only when known): a return clip's mark,
    order ID, waybill and packer, labelled in ``language`` (``LABELS``: "en", "zh" or "zh+en").
    The font size follows the frame height (about 1/28 of it, at least 12 px).

    Cost: the text only changes once a second or on a scan, so rendered text patches are
    cached (LRU) and the whole band is precomposed into two uint8 arrays when its content
    changes; every other frame is one multiply and one add over the band rows. ``renders``
    counts text rasterisations, ``band_builds`` band recompositions.

    Not thread-safe: one thread (the capture loop) calls ``apply``.
    """

    def __init__(
        self, station_name: str, tz: tzinfo | None, font_path: str = "", language: str = "en"
    ) -> None:
        if language not in LABELS:
            raise ValueError(f"overlay language must be one of {', '.join(LABELS)}")
        self.station_name = station_name
        self.tz = tz
        self.labels = LABELS[language]
        self._warned: set[str] = set()  # this overlay's font warnings, said once each
        self.font_path, self.cjk = self._choose_font(font_path)
        self._fonts: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}
        self._patches: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._band_key: _BandKey | None = None
        self._band: _Band | None = None
        self._i420_key: _BandKey | None = None
        self._i420: Any = None  # the band for the Y, U and V planes (apply_i420)
        self.renders = 0
        self.band_builds = 0

    # --- public ----------------------------------------------------------------------------
    def apply(self, image: np.ndarray, caption: Caption) -> None:
        """Draw the band showing ``caption`` on ``image`` (HxWx3 uint8 BGR, modified in place)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {image.shape} {image.dtype}")
        band = self._bgr_band(self._band_content(caption, *image.shape[:2]))
        roi = image[band.y0 : band.y1]
        if roi.flags.c_contiguous:
            # Two saturating SIMD passes over the band rows, in place (rows of a C-contiguous
            # frame are one contiguous block); about twice as fast as numpy uint16 maths.
            cv2.multiply(roi, band.keep, dst=roi, scale=1.0 / 255.0)
            cv2.add(roi, band.ink, dst=roi)
        else:  # a strided view: OpenCV would write into a copy, so assign explicitly
            roi[...] = cv2.add(cv2.multiply(roi, band.keep, scale=1.0 / 255.0), band.ink)

    def apply_i420(self, image: np.ndarray, caption: Caption) -> None:
        """Draw the band showing ``caption`` on a planar I420 frame ((H*3/2)xW uint8, modified
        in place).

        What the station draws, on the I420 frame the encoder gets (from an I420 camera, or
        converted from a BGR one): the same band as ``apply``, blended in each plane (BT.601
        limited range, what the encoder is told), with no BGR round trip.
        """
        if image.ndim != 2 or image.dtype != np.uint8 or image.shape[0] % 3:
            raise ValueError(f"expected an (H*3/2)xW uint8 I420 image, got {image.shape}")
        height, width = image.shape[0] * 2 // 3, image.shape[1]
        key = self._band_content(caption, height, width)
        if key != self._i420_key:
            self._i420 = _i420_band(self._bgr_band(key))
            self._i420_key = key
        assert self._i420 is not None
        (keep_y, ink_y), (keep_c, ink_u, ink_v) = self._i420
        rows, crows = keep_y.shape[0], keep_c.shape[0]
        quarter = height // 4
        u = image[height : height + quarter].reshape(height // 2, width // 2)
        v = image[height + quarter :].reshape(height // 2, width // 2)
        for plane, keep, ink in ((image[:rows], keep_y, ink_y), (u[:crows], keep_c, ink_u),
                                 (v[:crows], keep_c, ink_v)):  # fmt: skip
            cv2.multiply(plane, keep, dst=plane, scale=1.0 / 255.0)
            cv2.add(plane, ink, dst=plane)

    @property
    def band(self) -> tuple[int, int] | None:
        """Rows ``(y0, y1)`` covered by the band drawn last (None before the first apply)."""
        return None if self._band is None else (self._band.y0, self._band.y1)

    def render_text(self, text: str, size_px: int) -> np.ndarray:
        """The text as a uint8 coverage mask (0 = background, 255 = ink), cached."""
        key = (text, size_px)
        patch = self._patches.get(key)
        if patch is not None:
            self._patches.move_to_end(key)
            return patch
        patch = self._rasterise(text, size_px)
        self.renders += 1
        self._patches[key] = patch
        if len(self._patches) > _PATCH_CACHE_SIZE:
            self._patches.popitem(last=False)
        return patch

    @staticmethod
    def font_size_for(height: int) -> int:
        """Text size in pixels for a frame ``height`` pixels tall."""
        return max(12, round(height / 28))

    # --- band ------------------------------------------------------------------------------
    def _band_content(self, caption: Caption, height: int, width: int) -> _BandKey:
        """What the band on a ``height`` x ``width`` frame shows, as ``_build_band``'s
        arguments: equal for two frames exactly when their bands are the same pixels."""
        rec = None
        if caption.recording:
            elapsed = caption.elapsed_s
            rec = "REC" if elapsed is None else f"REC {format_elapsed(elapsed)}"
        return (height, width, format_wall(caption.wall, self.tz), caption.order_id or "",
                caption.waybill or "", rec, caption.packer or "", caption.kind)  # fmt: skip

    def _bgr_band(self, key: _BandKey) -> _Band:
        """The band for ``key``, built again only when it differs from the last one."""
        if key != self._band_key:
            self._band = self._build_band(*key)
            self._band_key = key
        assert self._band is not None
        return self._band

    # --- fonts -----------------------------------------------------------------------------
    @staticmethod
    def _choose_font(font_path: str) -> tuple[str, bool]:
        if font_path:
            if not os.path.isfile(font_path):
                log.warning("overlay font %s not found; searching the system fonts", font_path)
            elif _has_cjk_glyphs(font_path):
                return font_path, True
            else:
                log.warning("overlay font %s has no Chinese glyphs; searching others", font_path)
        found = find_cjk_font()
        if found:
            return found, True
        latin = next((p for p in LATIN_FONT_CANDIDATES if os.path.isfile(p)), "")
        log.warning(  # once per overlay: this runs only as it is made
            "no font with Chinese glyphs found (install fonts-wqy-zenhei or set recorder.font);"
            " overlay text uses %s and CJK will not render",
            latin or "Pillow default font",
        )
        return latin, False

    def _font(self, size_px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        font = self._fonts.get(size_px)
        if font is None:
            try:
                font = (
                    ImageFont.truetype(self.font_path, size_px)
                    if self.font_path
                    else ImageFont.load_default(size_px)
                )
            except OSError as exc:
                self._warn_once(f"cannot load overlay font {self.font_path}: {exc}; using default")
                font = ImageFont.load_default(size_px)
                self.cjk = False
            self._fonts[size_px] = font
        return font

    def _warn_once(self, message: str) -> None:
        """Log ``message`` the first time this overlay says it (a font fails at every size)."""
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)

    def _rasterise(self, text: str, size_px: int) -> np.ndarray:
        font = self._font(size_px)
        height = self._line_height(size_px)
        if not isinstance(font, ImageFont.FreeTypeFont):
            # Pillow's bitmap fallback only knows Latin-1.
            text = text.encode("latin-1", "replace").decode("latin-1")
        width = max(1, math.ceil(font.getlength(text)) + 2)
        img = Image.new("L", (width, height), 0)
        ImageDraw.Draw(img).text((1, 0), text, font=font, fill=255)
        return np.asarray(img)

    def _line_height(self, size_px: int) -> int:
        font = self._font(size_px)
        if isinstance(font, ImageFont.FreeTypeFont):
            ascent, descent = font.getmetrics()
            return ascent + descent
        return int(font.getbbox("Ay")[3]) + 2

    # --- band ------------------------------------------------------------------------------
    def _build_band(
        self,
        height: int,
        width: int,
        time_text: str,
        order_id: str,
        waybill: str,
        rec: str | None,
        packer: str = "",
        kind: str = "order",
    ) -> _Band:
        size = self.font_size_for(height)
        pad = max(2, round(size * 0.3))
        margin = max(4, round(size * 0.5))
        line_h = self._line_height(size)
        line2 = "   ".join(
            part
            for part in (
                self.labels["return"] if kind == "return" and order_id else "",
                f"{self.labels['order']} {order_id}" if order_id else "",
                f"{self.labels['waybill']} {waybill}" if waybill else "",
                f"{self.labels['packer']} {packer}" if packer else "",
            )
            if part
        )
        lines = 2 if line2 else 1
        rows = min(height, pad * 2 + line_h * lines + pad * (lines - 1))

        keep_plain, ink_plain = self._plain_band(rows, width)
        keep = keep_plain.copy()
        ink_all = ink_plain.copy()

        def ink(mask: np.ndarray, x: int, y: int, bgr: tuple[int, int, int], limit: int) -> None:
            """Composite a coverage mask at (x, y) over the band, cropped to columns < limit."""
            h = min(mask.shape[0], rows - y)
            w = min(mask.shape[1], limit - x)
            if h <= 0 or w <= 0 or x < 0:
                return
            m = mask[:h, :w, None].astype(np.float32)
            m *= np.float32(1.0 / 255.0)
            k = keep[y : y + h, x : x + w]
            i = ink_all[y : y + h, x : x + w]
            # "over" in premultiplied form: keep (1 - m) of what is there, add colour * m.
            rest = np.float32(1.0) - m
            new_ink = i * rest
            new_ink += m * np.asarray(bgr, np.float32)
            k[...] = k * rest + np.float32(0.5)
            i[...] = np.minimum(new_ink + np.float32(0.5), np.float32(255.0))

        right = width - margin
        if rec is not None:
            rec_mask = self.render_text(rec, size)
            dot = max(4, round(size * 0.55))
            x_text = right - rec_mask.shape[1]
            x_dot = x_text - dot - max(2, size // 4)
            y_dot = pad + (line_h - dot) // 2
            ink(self._disc(dot), x_dot, y_dot, REC_BGR, width)
            ink(rec_mask, x_text, pad, TEXT_BGR, width)
            right = x_dot - size  # line-1 text stops short of the REC marker
        line1 = f"{time_text}   {self.station_name}"
        ink(self.render_text(line1, size), margin, pad, TEXT_BGR, max(margin, right))
        if line2:
            ink(self.render_text(line2, size), margin, pad * 2 + line_h, TEXT_BGR, width - margin)
        self.band_builds += 1
        return _Band(0, rows, keep, ink_all)

    @staticmethod
    @functools.lru_cache(maxsize=4)
    def _plain_band(rows: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """keep/ink of the empty band (black at BAND_OPACITY); copied, never modified."""
        keep = np.full((rows, width, 3), round(255 * (1.0 - BAND_OPACITY)), np.uint8)
        return keep, np.zeros((rows, width, 3), np.uint8)

    @staticmethod
    @functools.cache
    def _disc(diameter: int) -> np.ndarray:
        img = Image.new("L", (diameter, diameter), 0)
        ImageDraw.Draw(img).ellipse((0, 0, diameter - 1, diameter - 1), fill=255)
        return np.asarray(img)


__all__ = ["LABELS", "Overlay", "find_cjk_font", "format_elapsed", "format_wall"]
