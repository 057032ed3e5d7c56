"""Barcode pipeline (zxing-cpp + zbar + preprocessing stages) and the camera scan worker."""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal, Protocol, TextIO

import cv2
import numpy as np
import zxingcpp
from pyzbar import pyzbar
from pyzbar.pyzbar import ZBarSymbol

from station.capture.changegate import ChangeGate
from station.capture.confirm import Look, ReadConfirmer, box_of
from station.capture.ean_blur import read_blurry_ean, rotate
from station.capture.escalate import Escalator
from station.capture.frames import Frame, InputEvent, RawScan
from station.config import PRODUCT_SYMBOLOGIES, Config
from station.runtime.priority import lower_thread_priority

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Detection:
    """One decoded symbol.

    ``text`` is the payload as text (UPC-A in its 13-digit EAN form with a leading 0),
    ``symbology`` a lower-case name ("qrcode", "code128", "ean13", "upca", "ean8", "upce",
    "code39", "datamatrix") and ``points`` the corners in the input image's pixel coordinates.
    ``heavy``: found by a model-based or heavily preprocessed stage (``Stage.heavy``), whose
    single reads the camera path never trusts (station/capture/confirm.py).
    """

    text: str
    symbology: str
    points: tuple[tuple[int, int], ...]
    heavy: bool = False


# --------------------------------------------------------------------------- decoders

# The formats zxing-cpp reports, by packcam's names. A read of any other format is no read.
_ZXING_FORMATS: dict[zxingcpp.BarcodeFormat, str] = {
    zxingcpp.BarcodeFormat.QRCode: "qrcode",
    zxingcpp.BarcodeFormat.Code128: "code128",
    zxingcpp.BarcodeFormat.EAN13: "ean13",
    zxingcpp.BarcodeFormat.EAN8: "ean8",
    zxingcpp.BarcodeFormat.UPCA: "upca",
    zxingcpp.BarcodeFormat.UPCE: "upce",
    zxingcpp.BarcodeFormat.Code39: "code39",
    zxingcpp.BarcodeFormat.DataMatrix: "datamatrix",
}
# The variants it is asked for (a list, not `a | b`: zxing-cpp 3 deprecates or-ing formats).
# Not the families QRCode and Code39: they add Micro QR and rMQR, which packcam has no name
# for, and Code 39 read as full ASCII ("PO/A12" as "PO!12"), as a PZN or as a Code 32
# pharmacode (one 6-digit ID in ten becomes "A0..."). Hand scanners read standard Code 39 by
# default and type the printed characters; so does zbar. Both QR models come as QRCode and
# standard Code 39 as Code39.
_ZXING_FORMAT_LIST = [
    zxingcpp.BarcodeFormat.QRCodeModel1,
    zxingcpp.BarcodeFormat.QRCodeModel2,
    zxingcpp.BarcodeFormat.Code128,
    zxingcpp.BarcodeFormat.EAN13,
    zxingcpp.BarcodeFormat.EAN8,
    zxingcpp.BarcodeFormat.UPCA,
    zxingcpp.BarcodeFormat.UPCE,
    zxingcpp.BarcodeFormat.Code39Std,
    zxingcpp.BarcodeFormat.DataMatrix,
]

# UPC-A and UPC-E are left out on purpose: with only EAN-13 enabled zbar still reads them but
# reports the 13-digit EAN form, the same text zxing-cpp >= 3 gives. zbar cannot read DataMatrix.
_ZBAR_SYMBOLS: dict[str, str] = {
    "QRCODE": "qrcode",
    "CODE128": "code128",
    "EAN13": "ean13",
    "EAN8": "ean8",
    "CODE39": "code39",
}
_ZBAR_SYMBOL_LIST = [ZBarSymbol[name] for name in _ZBAR_SYMBOLS]


def normalise_text(text: str, symbology: str) -> tuple[str, str]:
    """Bring a decoder's (text, symbology) to packcam's conventions.

    UPC-A is the EAN-13 form with a leading 0, whichever decoder read it; an EAN-13 starting
    with 0 *is* a UPC-A code, so it is named "upca" either way.
    """
    if symbology == "upca" and len(text) == 12 and text.isdigit():
        text = "0" + text
    if symbology in ("ean13", "upca") and len(text) == 13 and text.isdigit():
        symbology = "upca" if text.startswith("0") else "ean13"
    return text, symbology


def same_text(expected: str, decoded: str) -> bool:
    """Scoring rule: equal texts, a 12-digit UPC-A also matching its 13-digit EAN form."""
    if expected == decoded:
        return True
    return len(expected) == 12 and expected.isdigit() and decoded == "0" + expected


def decode_zxing(
    gray: np.ndarray, binarizer: zxingcpp.Binarizer = zxingcpp.Binarizer.LocalAverage
) -> list[Detection]:
    """One zxing-cpp pass over a gray image, formats restricted to packcam's symbologies."""
    found = []
    # Plain text mode: control characters (GS, CR LF in QR payloads) come through as
    # themselves instead of zxing's "<GS>" rendering, like zbar and like a keyboard scanner.
    for b in zxingcpp.read_barcodes(
        gray,
        formats=_ZXING_FORMAT_LIST,  # type: ignore[arg-type]  # the stub says BarcodeFormats; a list works
        text_mode=zxingcpp.TextMode.Plain,
        binarizer=binarizer,
    ):
        if not b.text:
            continue
        name = _ZXING_FORMATS.get(b.format)
        if name is None:
            # Named after the format, it would be a code of no order symbology ("unknown") and
            # stop the pipeline before zbar and the other stages could read the symbol.
            log.warning("zxing-cpp read a %s, which packcam does not name: ignored", b.format)
            continue
        p = b.position
        points = tuple(
            (int(q.x), int(q.y)) for q in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)
        )
        text, sym = normalise_text(b.text, name)
        found.append(Detection(text, sym, points))
    return found


def decode_zbar(gray: np.ndarray) -> list[Detection]:
    """One zbar pass over a gray image, symbols restricted to packcam's symbologies."""
    found = []
    for d in pyzbar.decode(gray, symbols=_ZBAR_SYMBOL_LIST):
        text = d.data.decode("utf-8", errors="replace")
        if not text:
            continue
        text, sym = normalise_text(text, _ZBAR_SYMBOLS.get(d.type, d.type.lower()))
        if sym == "qrcode" and not text.isascii():
            # zbar guesses a QR text's legacy encoding (Shift_JIS, Big5) otherwise than zxing
            # (half-width katakana and a Big5 card's name came out as other kanji): one label
            # would be two codes, the second another order. zxing reads every such QR of the
            # shared set, so zbar's reading is left to it.
            continue
        # zbar's polygon of a 1-D code is the scan lines' end points (often just two): report
        # its bounding box corners, as zxing reports four corners.
        x, y, w, h = d.rect
        points = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
        found.append(Detection(text, sym, points))
    return found


# --------------------------------------------------------------------------- preprocessing


def _to_gray(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("expected a uint8 numpy image")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.ascontiguousarray(image[:, :, 0])
    raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image.shape}")


def _clahe(gray: np.ndarray) -> np.ndarray:
    # Local contrast: glare and shadows on glossy packaging leave half a code too dark or too
    # bright for one global threshold.
    return cv2.createCLAHE(clipLimit=4.0, tileGridSize=(8, 8)).apply(gray)


def _upscale(gray: np.ndarray, factor: float) -> np.ndarray:
    if factor <= 1.0:
        return gray
    return cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)


def _unsharp(gray: np.ndarray, sigma: float = 3.0, amount: float = 1.0) -> np.ndarray:
    blurred = cv2.GaussianBlur(gray, (0, 0), sigma)
    return cv2.addWeighted(gray, 1.0 + amount, blurred, -amount, 0)


@lru_cache(maxsize=8)
def _gauss_psf(sigma: float) -> np.ndarray:
    k = cv2.getGaussianKernel(int(6 * sigma) | 1, sigma)
    return (k @ k.T).astype(np.float32)


def _deblur(gray: np.ndarray, sigma: float, iterations: int) -> np.ndarray:
    """Richardson-Lucy deconvolution with a Gaussian PSF (defocus of fixed-focus cameras)."""
    psf = _gauss_psf(sigma)
    flipped = psf[::-1, ::-1]
    observed = gray.astype(np.float32) + 1.0
    estimate = observed.copy()
    for _ in range(iterations):
        reblurred = cv2.filter2D(estimate, -1, psf)
        estimate *= cv2.filter2D(observed / np.maximum(reblurred, 1e-3), -1, flipped)
    out: np.ndarray = np.clip(estimate - 1.0, 0, 255).astype(np.uint8)
    return out


class _View:
    """A gray image (the frame or a crop of it) with lazily built, shared preprocessed copies.

    ``origin`` is the view's top-left corner in the input image; ``up_factor`` the enlargement
    the enlarging stages use (``to_input`` maps their points back).
    """

    __slots__ = ("_cache", "gray", "origin", "up_factor")

    def __init__(self, gray: np.ndarray, origin: tuple[int, int] = (0, 0)) -> None:
        self.gray = gray
        self.origin = origin
        # Small images and crops are enlarged: both decoders need about 2 px per module and
        # blurry 1-D codes from 240 px photos or distant labels have less.
        longest = max(gray.shape)
        self.up_factor = float(min(3.0, max(1.0, _UPSCALE_TARGET / longest)))
        self._cache: dict[str, np.ndarray] = {}

    def get(self, name: str, build: Callable[[], np.ndarray]) -> np.ndarray:
        img = self._cache.get(name)
        if img is None:
            img = self._cache[name] = build()
        return img

    def clahe(self) -> np.ndarray:
        return self.get("clahe", lambda: _clahe(self.gray))

    def clahe_up(self) -> np.ndarray:
        return self.get("clahe_up", lambda: _upscale(self.clahe(), self.up_factor))

    def up(self) -> np.ndarray:
        return self.get("up", lambda: _upscale(self.gray, self.up_factor))

    def to_input(self, found: Iterable[Detection], scale: float = 1.0) -> list[Detection]:
        """Map detections made on a ``scale``-times enlarged copy of this view to input pixels."""
        ox, oy = self.origin
        return [
            Detection(
                d.text,
                d.symbology,
                tuple((round(ox + x / scale), round(oy + y / scale)) for x, y in d.points),
            )
            for d in found
        ]


_UPSCALE_TARGET = 500  # px: views whose long side is shorter are enlarged up to 3x for some stages


# --------------------------------------------------------------------------- regions


def _locate(gray: np.ndarray, max_regions: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) of densely textured areas, most textured first.

    Barcodes are the densest edge texture on a packing table; on a downscaled copy this costs
    about 2 ms per 720p frame and tells the enlarging stages where to look.
    """
    h, w = gray.shape
    scale = min(1.0, 480 / max(h, w))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gx = cv2.convertScaleAbs(cv2.Sobel(small, cv2.CV_16S, 1, 0))
    gy = cv2.convertScaleAbs(cv2.Sobel(small, cv2.CV_16S, 0, 1))
    density = cv2.blur(cv2.addWeighted(gx, 0.5, gy, 0.5, 0), (7, 7))
    otsu, _ = cv2.threshold(density, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    level = max(otsu, float(np.percentile(density, 90)), 12.0)
    mask: np.ndarray = (density > level).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    area = small.shape[0] * small.shape[1]
    scored = []
    for c in contours:
        x, y, bw, bh = cv2.boundingRect(c)
        if bw * bh < 0.002 * area or bw * bh > 0.5 * area or min(bw, bh) < 6:
            continue
        scored.append((float(density[y : y + bh, x : x + bw].sum()), x, y, bw, bh))
    scored.sort(reverse=True)
    boxes = []
    for _, x, y, bw, bh in scored[:max_regions]:
        pad = 0.15 * max(bw, bh) + 4  # keep the quiet zone: both decoders need it
        x0, y0 = max(0, int((x - pad) / scale)), max(0, int((y - pad) / scale))
        x1, y1 = min(w, int((x + bw + pad) / scale)), min(h, int((y + bh + pad) / scale))
        boxes.append((x0, y0, x1, y1))
    return boxes


def code_like(gray: np.ndarray) -> bool:
    """Whether an image (a changed part of a frame) holds a patch of dense, strong edges, as
    any barcode does and hands, boxes, tape and the table do not (about 0.3 ms)."""
    h, w = gray.shape
    if h < 8 or w < 8:
        return False
    k = min(1.0, _CODE_LIKE_SIZE / max(h, w))
    small = cv2.resize(gray, None, fx=k, fy=k, interpolation=cv2.INTER_AREA) if k < 1 else gray
    gx = cv2.Sobel(small, cv2.CV_16S, 1, 0)
    gy = cv2.Sobel(small, cv2.CV_16S, 0, 1)
    edges = cv2.addWeighted(cv2.convertScaleAbs(gx), 0.5, cv2.convertScaleAbs(gy), 0.5, 0)
    density = cv2.blur(edges, (9, 9))
    return int(np.count_nonzero(density > _CODE_LIKE_LEVEL)) >= _CODE_LIKE_PX


# A 240 px copy; a code has >= 800 px (e.g. 30 x 27) of mean edge strength > 60 there (half
# the Sobel sum). Measured: 0 of 145 crops of the synthetic table's moving hands and boxes
# reach it, 357 of the 370 shared photos on the table do (the others are mostly the blurriest
# fixed-focus shots, which the live path cannot read anyway).
_CODE_LIKE_SIZE = 240
_CODE_LIKE_LEVEL = 60
_CODE_LIKE_PX = 800


# --------------------------------------------------------------------------- the pipeline

Scope = Literal["image", "regions"]


@dataclass(frozen=True, slots=True)
class Stage:
    """One pipeline step: a preprocessed copy of a view and the decoder run on it.

    ``scope`` "image" runs once on the whole input; "regions" runs on each region (the whole
    input when it is small, else the textured boxes found in it, then the whole input).
    ``fixed_ms + ms_per_mpx * megapixels`` estimates the cost on the reference machine (the
    x86 build machine); budgets are spent in these estimates, so results never depend on CPU
    load.
    ``enlarged`` stages work on the view scaled by its ``up_factor``; views of more than
    ``max_pixels`` are not given to the stage at all. ``heavy`` stages (a model, deconvolution,
    sharpened enlargements, turned copies) can make a plausible code out of noise: their
    detections are marked, and the camera path needs more looks to trust them.
    """

    name: str
    scope: Scope
    fixed_ms: float
    ms_per_mpx: float
    enlarged: bool
    run: Callable[[_View], list[Detection]]
    max_pixels: float = math.inf
    heavy: bool = False

    def estimate_ms(self, view: _View) -> float:
        mpx: float = view.gray.shape[0] * view.gray.shape[1] / 1e6
        if self.enlarged:
            mpx *= view.up_factor**2
        return self.fixed_ms + self.ms_per_mpx * mpx


def _sharp(v: _View) -> np.ndarray:
    return v.get("sharp", lambda: _unsharp(v.clahe_up()))


def _step_zxing(v: _View) -> list[Detection]:
    return v.to_input(decode_zxing(v.gray))


def _step_zbar(v: _View) -> list[Detection]:
    return v.to_input(decode_zbar(v.gray))


def _step_zxing_clahe(v: _View) -> list[Detection]:
    return v.to_input(decode_zxing(v.clahe()))


def _step_zxing_global(v: _View) -> list[Detection]:
    # One threshold for the whole view instead of zxing's local one: reads codes whose
    # modules carry texture (printed on pictures, on patterned film) that the local
    # threshold breaks up; the median filter removes the grain first.
    smooth = v.get("median", lambda: cv2.medianBlur(v.gray, 3))
    return v.to_input(decode_zxing(smooth, zxingcpp.Binarizer.GlobalHistogram))


def _step_zxing_sharp(v: _View) -> list[Detection]:
    return v.to_input(decode_zxing(_sharp(v)), v.up_factor)


def _step_zbar_sharp(v: _View) -> list[Detection]:
    return v.to_input(decode_zbar(_sharp(v)), v.up_factor)


def _step_zxing_rotated(v: _View) -> list[Detection]:
    # zxing's 1-D readers scan rows, and columns with try_rotate, so a code tilted by 20-70
    # degrees (held diagonally under the camera) is crossed by no single scan line. Copies
    # turned by +-30 degrees bring every tilt within 15 degrees of a row or a column.
    found: list[Detection] = []
    for angle in (30.0, -30.0):
        rotated, inverse = rotate(v.clahe(), angle)
        for d in decode_zxing(rotated):
            pts = np.array(d.points, dtype=np.float64) @ inverse[:, :2].T + inverse[:, 2]
            found.append(
                Detection(d.text, d.symbology, tuple((round(x), round(y)) for x, y in pts))
            )
        if found:
            break
    return v.to_input(found)


def _step_zxing_deblur(v: _View) -> list[Detection]:
    return v.to_input(decode_zxing(_deblur(v.clahe_up(), 1.5, 15)), v.up_factor)


def _step_zxing_deblur_strong(v: _View) -> list[Detection]:
    return v.to_input(decode_zxing(_deblur(v.up(), 2.5, 10)), v.up_factor)


def _step_ean_blur(v: _View) -> list[Detection]:
    found = []
    for code, points in read_blurry_ean(v.gray):
        text, sym = normalise_text(code, "ean13")
        found.append(Detection(text, sym, points))
    return v.to_input(found)


# Enough for zbar and the contrast stages on a card-sized crop (about 300 x 200 pixels).
MIN_CROP_BUDGET_MS = 10.0
_SMALL_IMAGE_PX = 400_000  # up to this size the whole image is the only region
_LOCATE_MS = (0.5, 3.0)  # fixed, per megapixel: estimate for _locate

# Cost estimates: medians on this project's x86 build machine (a Pi 4 is typically a few times
# slower), the zbar figures from textured camera frames, where it is far slower than on stills.
STAGES: tuple[Stage, ...] = (
    Stage("zxing", "image", 0.3, 12.0, False, _step_zxing),
    # zbar on the located boxes is cheap and reads what zxing misses; on a whole camera frame
    # (the last region) it costs 110-170 ms and only stills can afford it.
    Stage("zbar", "regions", 0.3, 150.0, False, _step_zbar),
    Stage("zxing-clahe", "regions", 0.3, 35.0, False, _step_zxing_clahe),
    Stage("zxing-global", "regions", 0.3, 20.0, False, _step_zxing_global),
    Stage("zxing-sharp", "regions", 0.3, 50.0, True, _step_zxing_sharp, heavy=True),
    Stage("zbar-sharp", "regions", 0.3, 150.0, True, _step_zbar_sharp, heavy=True),
    Stage("zxing-rotated", "regions", 0.5, 200.0, False, _step_zxing_rotated, heavy=True),
    Stage("zxing-deblur", "regions", 1.0, 250.0, True, _step_zxing_deblur, heavy=True),
    Stage(
        "zxing-deblur-strong", "regions", 1.0, 400.0, True, _step_zxing_deblur_strong, heavy=True
    ),
    # The EAN model reads one symbol that fills much of the view: a product photo or a
    # located box, never a whole camera frame.
    Stage(
        "ean-blur",
        "regions",
        150.0,
        5000.0,
        False,
        _step_ean_blur,
        max_pixels=_SMALL_IMAGE_PX,
        heavy=True,
    ),
)
"""The station's pipeline, cheapest and most productive first. See docs/barcodes.md."""


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What one pipeline run found and what it did: ``stage`` is the stage that found the
    codes (None if nothing was found), ``ran`` the stages run, ``skipped`` the (stage, view)
    runs left out for the budget, ``estimated_ms`` the budget spent and ``seconds`` wall time."""

    detections: list[Detection]
    stage: str | None
    ran: tuple[str, ...]
    skipped: int
    estimated_ms: float
    seconds: float


class BarcodeDecoder:
    """The barcode pipeline: ``STAGES`` in order, stopping at the first stage that finds a code.

    ``decode`` (stills, ``packcam decode``) runs every stage; ``decode_frame`` (the camera)
    runs the same list but leaves out a stage on a view whose estimated cost would exceed
    ``frame_budget_ms`` for the call. Stateless after construction: one instance may be shared
    by threads.
    """

    def __init__(
        self,
        *,
        frame_budget_ms: float = 60.0,
        max_regions: int = 3,
        stages: Sequence[Stage] = STAGES,
    ) -> None:
        if frame_budget_ms <= 0 or max_regions < 0:
            raise ValueError("frame_budget_ms must be positive and max_regions not negative")
        self.frame_budget_ms = frame_budget_ms
        self.max_regions = max_regions
        self.stages = tuple(stages)

    def decode(self, image: np.ndarray) -> list[Detection]:
        """All codes found in a still image (BGR or gray uint8), deduplicated by text.

        A still gets no second frame to confirm a read, so product codes (EAN/UPC: one
        mod-10 check digit) are checked against other looks at the image (``check_products``).
        """
        result = self.run(image)
        return check_products(_to_gray(image), result.detections, result.stage)

    def decode_frame(self, image: np.ndarray, share: float = 1.0) -> list[Detection]:
        """Like ``decode`` within ``frame_budget_ms`` estimated milliseconds (the live path).

        ``share`` (0-1] scales the budget for a part of a frame: the change gate gives a crop
        the budget share of its area, at least ``MIN_CROP_BUDGET_MS``.
        """
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        budget = self.frame_budget_ms
        if share < 1:
            budget = max(budget * share, min(budget, MIN_CROP_BUDGET_MS))
        return self.run(image, budget).detections

    def run(
        self, image: np.ndarray, budget_ms: float | None = None, skip: frozenset[str] = frozenset()
    ) -> DecodeResult:
        """Run the pipeline; ``budget_ms`` None means no budget. Returns findings and a trace.

        ``skip``: stages not to run (already run on this image by the caller)."""
        started = time.perf_counter()
        gray = _to_gray(image)
        if gray.size == 0:
            return DecodeResult([], None, (), 0, 0.0, time.perf_counter() - started)
        whole = _View(gray)
        regions: list[_View] | None = None
        spent, skipped = 0.0, 0
        ran: list[str] = []

        def affordable(cost: float) -> bool:
            return budget_ms is None or spent + cost <= budget_ms

        for stage in self.stages:
            if stage.name in skip:
                continue
            if stage.scope == "image":
                views = [whole]
            else:
                if regions is None:
                    regions, cost = self._regions(gray, whole, affordable)
                    spent += cost
                views = regions
            for view in views:
                if view.gray.size > stage.max_pixels:
                    continue
                cost = stage.estimate_ms(view)
                if not affordable(cost):
                    skipped += 1
                    continue
                spent += cost
                ran.append(stage.name)
                found = _dedupe(stage.run(view))
                if found and stage.heavy:
                    found = [replace(d, heavy=True) for d in found]
                if found:
                    elapsed = time.perf_counter() - started
                    log.debug(
                        "decoded %d code(s) at stage %s in %.1f ms",
                        len(found),
                        stage.name,
                        elapsed * 1e3,
                    )
                    return DecodeResult(found, stage.name, tuple(ran), skipped, spent, elapsed)
        elapsed = time.perf_counter() - started
        return DecodeResult([], None, tuple(ran), skipped, spent, elapsed)

    def _regions(
        self, gray: np.ndarray, whole: _View, affordable: Callable[[float], bool]
    ) -> tuple[list[_View], float]:
        if gray.size <= _SMALL_IMAGE_PX:
            return [whole], 0.0
        cost = _LOCATE_MS[0] + _LOCATE_MS[1] * gray.size / 1e6
        if not affordable(cost) or self.max_regions == 0:
            return [whole], 0.0
        boxes = _locate(gray, self.max_regions)
        views = [_View(gray[y0:y1, x0:x1], (x0, y0)) for x0, y0, x1, y1 in boxes]
        # The whole image last: for stills it catches what the boxes missed; on live frames
        # its enlarging stages are too dear for the budget and are left out.
        return [*views, whole], cost


# Product codes (EAN-13/8, UPC-A/E) have one mod-10 check digit, so a misread often still passes
# the check: they are read again at these scales.
_CHECK_SCALES = (0.8, 1.25, 1.6, 2.0)


def _product_looks(gray: np.ndarray) -> list[Detection]:
    """Product codes read by both decoders on copies of ``gray`` at other scales, with their
    points mapped back to ``gray``."""
    looks = []
    for k in _CHECK_SCALES:
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
        scaled = cv2.resize(gray, None, fx=k, fy=k, interpolation=interp)
        for decode in (decode_zxing, decode_zbar):
            for d in decode(scaled):
                if d.symbology in PRODUCT_SYMBOLOGIES:
                    pts = tuple((round(x / k), round(y / k)) for x, y in d.points)
                    looks.append(Detection(d.text, d.symbology, pts))
    return looks


def _near(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> bool:
    """Whether two detections' boxes, each widened by an eighth of its larger side, overlap
    (a 1-D read's points may be one scan line across the symbol; a book's price code a
    little below its ISBN is another place)."""
    boxes = []
    for pts in (a, b):
        box = box_of(pts)
        if box is None:
            return True  # no position: assume the same place
        pad = max(box[2] - box[0], box[3] - box[1]) // 8
        boxes.append((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad))
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = boxes
    return ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1


def check_products(
    gray: np.ndarray,
    found: list[Detection],
    stage: str | None = None,
    *,
    corroborated: bool = False,
) -> list[Detection]:
    """Keep a product code read on a still only if other looks do not contradict it.

    The other looks: zxing and zbar on the image at four other scales (a few ms on a photo;
    only when a product code was read). A read is dropped unless it was read at least twice
    as often as different product texts at the same place (one label giving two numbers), and a
    read of the ``zbar`` stage (``stage``: the one that found ``found``; zbar decodes single
    scan lines) needs two other looks that agree. Other symbologies pass unchanged: Code 128
    and QR carry stronger checks.

    ``corroborated`` (the camera, which has other frames to read a code in): a read of a
    plain stage is also dropped unless at least one of the other looks reads the same text. A
    clean label misread the same way in every frame at its own scale (too few pixels per bar)
    is read by none of them, or differently. Heavy-stage reads (the EAN model) are left to
    their extra look and the model's own acceptance tests: the libraries cannot read them.
    """
    if not any(d.symbology in PRODUCT_SYMBOLOGIES for d in found):
        return found
    looks = _product_looks(gray)
    kept = []
    for d in found:
        if d.symbology not in PRODUCT_SYMBOLOGIES:
            kept.append(d)
            continue
        votes = 1 + sum(lk.text == d.text for lk in looks)
        rivals = sum(lk.text != d.text and _near(lk.points, d.points) for lk in looks)
        alone = corroborated and not d.heavy and votes < 2
        if votes >= 2 * rivals and (stage != "zbar" or votes >= 3) and not alone:
            kept.append(d)
        else:
            log.debug("product read %r dropped: %d looks agree, %d disagree", d.text, votes, rivals)
    return kept


def _dedupe(found: Iterable[Detection]) -> list[Detection]:
    seen: set[str] = set()
    out = []
    for d in found:
        if d.text not in seen:
            seen.add(d.text)
            out.append(d)
    return out


# --------------------------------------------------------------------------- camera worker


def _plausible(image: np.ndarray, look: Look) -> bool:
    """A product code about to be confirmed, checked as on stills (``check_products``) on a
    crop of the frame around it: once per confirmation, so it costs a few ms per label."""
    if look.symbology not in PRODUCT_SYMBOLOGIES or look.box is None:
        return True
    h, w = image.shape[:2]
    x0, y0, x1, y1 = look.box
    pad = max(x1 - x0, y1 - y0) // 2 + 16
    cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    gray = _to_gray(image[cy0:cy1, cx0:cx1])
    pts = ((x0 - cx0, y0 - cy0), (x1 - cx0, y0 - cy0), (x1 - cx0, y1 - cy0), (x0 - cx0, y1 - cy0))
    read = Detection(look.text, look.symbology, pts, look.heavy)
    ok = bool(check_products(gray, [read], corroborated=True))
    if not ok:
        log.info("camera read %s %r not confirmed: other looks disagree", look.symbology, look.text)
    return ok


class FrameDecoder(Protocol):
    """What ScanWorker needs from a decoder (BarcodeDecoder, or a fake in tests)."""

    def decode_frame(self, image: np.ndarray, share: float = 1.0) -> list[Detection]: ...


@dataclass(frozen=True, slots=True)
class ScanWorkerStats:
    """Counters of a ScanWorker: frames decoded, frames replaced unseen while the worker was
    busy, decodes that raised, total decode time, the last submit-to-result latency, and
    with a change gate: frames with nothing changed and the pixels actually decoded."""

    decoded: int = 0
    skipped: int = 0
    errors: int = 0
    decode_seconds: float = 0.0
    last_latency_s: float = 0.0
    unchanged: int = 0  # decoded frames with nothing to look at: unchanged, or nothing code-like
    pixels: int = 0  # frame pixels given to the decoder (the gate's saving shows here)
    escalations: int = 0  # located codes sent to the whole pipeline (Escalator)
    escalation_seconds: float = 0.0  # CPU time of those, in the escalation thread


_MAX_QUEUED_SCANS = 1000  # scans nobody polls (a stalled capture loop) are dropped oldest first


@dataclass(slots=True)
class _Mailbox:
    frame: Frame | None = None
    submitted: float = 0.0
    events: deque[RawScan] = field(default_factory=lambda: deque(maxlen=_MAX_QUEUED_SCANS))


class ScanWorker:
    """Camera frames in, ``RawScan(text, "camera", frame.t, symbology)`` out: a ScanSource.

    Only *confirmed* reads become scans (``confirm``, a ReadConfirmer: by default the same
    text in two different frames, three for model-based stages; see station/capture/confirm.py), so
    one misread never reaches the session.

    Threaded mode (default, live cameras): ``submit`` never blocks. It puts the frame in a
    one-slot mailbox; a frame still waiting there is replaced and counted as skipped, so the
    worker always decodes the newest frame and never builds a backlog. One daemon thread
    decodes with ``decoder.decode_frame`` and queues the scans; ``poll`` drains them.
    ``sync=True`` (file replay, tests): ``submit`` decodes inline, so results do not depend on
    CPU speed. Frames are kept by reference, not copied: the caller must not modify a frame's
    image after submitting it (the capture loop draws its overlay on a copy).
    With a ``gate`` (ChangeGate) only the parts of a frame that changed since the decoder last
    looked, and the places where codes were just read, are decoded (see
    station/capture/changegate.py), and of those only the ones that look like a code
    (``code_like``). A decode that raises is logged and counted; the worker carries on with the next
    frame. ``start``, ``submit``, ``poll`` and ``stop`` may be called from any thread; calling
    ``submit`` before ``start`` or after ``stop`` is a programming error and raises.
    """

    def __init__(
        self,
        decoder: FrameDecoder | None = None,
        *,
        sync: bool = False,
        source: str = "camera",
        gate: ChangeGate | None = None,
        confirm: ReadConfirmer | None = None,
        escalator: Escalator[Detection] | None = None,
    ) -> None:
        self._decoder: FrameDecoder = decoder if decoder is not None else BarcodeDecoder()
        self._gate = gate
        self._escalator = escalator
        self._confirm = confirm if confirm is not None else ReadConfirmer()
        self._sync = sync
        self._source = source
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._box = _Mailbox()
        self._stats = ScanWorkerStats()
        self._state: Literal["new", "running", "stopped"] = "new"
        self._thread: threading.Thread | None = None
        self._last_error_log = -math.inf

    @property
    def sync(self) -> bool:
        """Reads inline in ``submit`` (True) or in its own thread."""
        return self._sync

    def start(self) -> None:
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"ScanWorker.start() called when {self._state}")
            self._state = "running"
        if self._escalator is not None:
            self._escalator.start()
        if not self._sync:
            self._thread = threading.Thread(target=self._loop, name="scan-worker", daemon=True)
            self._thread.start()

    def submit(self, frame: Frame) -> None:
        """Hand over a frame to decode (see the class docstring for the two modes)."""
        if self._sync:
            with self._lock:
                self._check_running()
            self._decode(frame, time.monotonic())
            return
        with self._wake:
            self._check_running()
            if self._box.frame is not None:
                self._stats = replace(self._stats, skipped=self._stats.skipped + 1)
            self._box.frame = frame
            self._box.submitted = time.monotonic()
            self._wake.notify()

    def poll(self, now: float) -> list[InputEvent]:
        """Scans from frames with ``t <= now``, oldest first; never blocks for long."""
        with self._lock:
            ready: list[InputEvent] = [e for e in self._box.events if e.t <= now]
            if ready:
                later = [e for e in self._box.events if e.t > now]
                self._box.events = deque(later, maxlen=_MAX_QUEUED_SCANS)
        return ready

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (waiting up to ``timeout`` for a decode in progress); idempotent."""
        with self._wake:
            if self._state == "stopped":
                return
            self._state = "stopped"
            self._box.frame = None
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("scan worker still decoding after %.1f s; left to finish", timeout)
        if self._escalator is not None:
            self._escalator.stop(timeout)

    def stats(self) -> ScanWorkerStats:
        """A snapshot of the counters."""
        with self._lock:
            st = self._stats
        if self._escalator is not None:
            esc = self._escalator.stats()
            st = replace(st, escalations=esc.jobs, escalation_seconds=esc.seconds)
        return st

    def _check_running(self) -> None:
        if self._state != "running":
            raise RuntimeError(f"ScanWorker.submit() called when {self._state}")

    def _loop(self) -> None:
        lower_thread_priority()  # a slow decode may wait; the capture loop may not
        while True:
            with self._wake:
                while self._box.frame is None and self._state == "running":
                    self._wake.wait()
                if self._state != "running":
                    return
                frame, submitted = self._box.frame, self._box.submitted
                self._box.frame = None
            assert frame is not None
            self._decode(frame, submitted)

    def _read(self, frame: Frame) -> tuple[list[Detection], int]:
        """The codes in ``frame`` and the number of pixels decoded, through the gate if any."""
        image = frame.image
        h, w = image.shape[:2]
        if self._gate is None:
            return self._decoder.decode_frame(image), h * w
        boxes = self._gate.plan(image, frame.t)
        located: list[tuple[int, int, int, int]] = []
        if boxes is None:
            found, pixels = self._decoder.decode_frame(image), h * w
        else:
            found, pixels = [], 0
            for x0, y0, x1, y1 in boxes:
                crop = _to_gray(image[y0:y1, x0:x1])
                like = code_like(crop)
                if not like:
                    # A change with no patch of dense strong edges (a hand, a box, the table,
                    # a hand over a label read a moment ago) holds no code the pipeline could
                    # read: it would spend the crop's whole budget finding nothing, half the
                    # worker's CPU on a busy table. The full look every full_every_s still
                    # decodes the whole frame.
                    continue
                pixels += (x1 - x0) * (y1 - y0)
                got = self._decoder.decode_frame(crop, crop.shape[0] * crop.shape[1] / (h * w))
                like = like and not got
                if like and self._gate.settled((x0, y0, x1, y1), frame.t):
                    # The crop still looks like a code, one was read or located here on an
                    # earlier look, it has settled, and the cheap stages of the crop's budget
                    # share read nothing now: escalate to the frame's budget. A code just put
                    # down gets it on its second look; a moving hand, box or card, or a place
                    # a code has left, never.
                    got = self._decoder.decode_frame(crop)
                    if not got and self._escalator is not None:
                        # Still nothing: the whole pipeline (the EAN model, deconvolution)
                        # looks at this code off the frame loop, once, on a few frames.
                        self._escalator.offer((x0, y0, x1, y1), frame.t, _to_gray(crop))
                for d in got:
                    pts = tuple((x + x0, y + y0) for x, y in d.points)
                    found.append(Detection(d.text, d.symbology, pts, d.heavy))
                if like and not got:
                    located.append((x0, y0, x1, y1))
            found = _dedupe(found)
        self._gate.done(boxes, frame.t, [d.points for d in found], w, h, located)
        return found, pixels

    def _decode(self, frame: Frame, submitted: float) -> None:
        started = time.perf_counter()
        try:
            found, pixels = self._read(frame)
        except Exception:
            took = time.perf_counter() - started
            with self._lock:
                st = self._stats
                self._stats = replace(
                    st, errors=st.errors + 1, decode_seconds=st.decode_seconds + took
                )
                errors = self._stats.errors
            # One traceback per minute at most: a decoder broken by some input would
            # otherwise flood the journal once per frame.
            now = time.monotonic()
            if now - self._last_error_log >= 60.0:
                self._last_error_log = now
                log.exception(
                    "barcode decode failed on frame %d (%d failures so far)", frame.index, errors
                )
            return
        looks = [Look(d.text, d.symbology, d.heavy, box_of(d.points)) for d in found]
        earlier = []
        if self._escalator is not None:
            for t, (x0, y0, _x1, _y1), got in self._escalator.take():
                for d in got:
                    pts = tuple((x + x0, y + y0) for x, y in d.points)
                    earlier.append((t, Look(d.text, d.symbology, d.heavy, box_of(pts))))
        confirmed = self._confirm.feed(
            frame.t, looks, lambda lk: _plausible(frame.image, lk), earlier
        )
        took = time.perf_counter() - started
        scans = [
            RawScan(
                c.text, self._source, frame.t, c.symbology, c.box, self._confirm.first_look(c.text)
            )
            for c in confirmed
        ]
        with self._lock:
            self._box.events.extend(scans)
            st = self._stats
            self._stats = replace(
                st,
                decoded=st.decoded + 1,
                decode_seconds=st.decode_seconds + took,
                last_latency_s=time.monotonic() - submitted,
                unchanged=st.unchanged + (pixels == 0),
                pixels=st.pixels + pixels,
            )
        # debug only: a code in view is read on every decoded frame; the debounced scans are
        # logged where they are classified
        for d in found:
            log.debug("camera read %s %r at t=%.3f", d.symbology, d.text, frame.t)


def read_located(decoder: BarcodeDecoder, gray: np.ndarray) -> list[Detection]:
    """The whole pipeline, no budget, on a crop where a code was located but not read: on
    its most textured box only when the crop is larger than a photo of one item (a hand or a
    box beside the code widens the changed area), so the EAN model gets to look at it."""
    if gray.size <= _SMALL_IMAGE_PX:
        return decoder.run(gray).detections
    boxes = _locate(gray, 1)
    if not boxes:
        return []
    x0, y0, x1, y1 = boxes[0]
    found = decoder.run(gray[y0:y1, x0:x1]).detections
    return [replace(d, points=tuple((x + x0, y + y0) for x, y in d.points)) for d in found]


def camera_scan_worker(cfg: Config, *, sync: bool) -> ScanWorker:
    """The station's camera scan worker built from ``[scanner]`` and ``[codes]``: the
    pipeline, the change gate (``decode_changes_only``) and read confirmation
    (``confirm_looks``). ``sync`` for cameras that are not live (file replay)."""
    gate = None
    if cfg.scanner.decode_changes_only:
        # A label lying in view must be seen again within the debounce window, or it
        # would count as a new scan: the full look comes at least twice per window.
        every = cfg.scanner.full_decode_every_s
        if cfg.codes.debounce_s > 0:
            every = min(every, cfg.codes.debounce_s / 2)
        gate = ChangeGate(every)
    confirm = ReadConfirmer(cfg.scanner.confirm_looks)
    decoder = BarcodeDecoder()
    escalator = None
    if gate is not None:
        # A heavy stage's text needs confirm_looks + 1 looks: that many crops per code.
        escalator = Escalator(
            lambda gray: read_located(decoder, gray), sync=sync, looks=confirm.looks + 1
        )
    return ScanWorker(decoder, sync=sync, gate=gate, confirm=confirm, escalator=escalator)


# --------------------------------------------------------------------------- packcam decode


def _printable(text: str) -> str:
    """Text for a terminal line: control characters escaped, other Unicode kept."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def decode_command(
    paths: list[str], as_json: bool, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``packcam decode``: run the station's pipeline (``BarcodeDecoder().decode``) on images.

    One line per image on ``out`` (default stdout): JSON ``{"file", "texts", "symbologies"}``
    with ``as_json``, else ``file: symbology: text`` per code or ``file: no barcode``. An
    unreadable file gets an error line on ``err`` (default stderr) and exit status 1; the
    other files are still decoded. Returns 0 when every file could be read.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    decoder = BarcodeDecoder()
    status = 0
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = np.frombuffer(f.read(), dtype=np.uint8)
        except OSError as exc:
            print(f"packcam decode: {path}: {exc.strerror or exc}", file=err)
            status = 1
            continue
        # imdecode rather than imread: same decoders, but a missing file gives a clear OS
        # error above instead of OpenCV's warning on stderr.
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            print(f"packcam decode: {path}: not an image OpenCV can read", file=err)
            status = 1
            continue
        found = decoder.decode(image)
        if as_json:
            record = {
                "file": path,
                "texts": [d.text for d in found],
                "symbologies": [d.symbology for d in found],
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif not found:
            out.write(f"{path}: no barcode\n")
        else:
            for d in found:
                out.write(f"{path}: {d.symbology}: {_printable(d.text)}\n")
    return status


__all__ = [
    "STAGES",
    "BarcodeDecoder",
    "DecodeResult",
    "Detection",
    "FrameDecoder",
    "ScanWorker",
    "ScanWorkerStats",
    "Stage",
    "camera_scan_worker",
    "decode_command",
    "decode_zbar",
    "decode_zxing",
    "normalise_text",
    "same_text",
]
