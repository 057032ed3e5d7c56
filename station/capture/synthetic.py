"""The synthetic packing-table camera and the scenario files that script it."""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zxingcpp

from station.capture.frames import Frame
from station.config import DEFAULT_WAYBILL_PATTERNS, CameraSection, read_toml
from station.errors import ConfigError

log = logging.getLogger(__name__)

SYMBOLOGIES: dict[str, zxingcpp.BarcodeFormat] = {
    "qrcode": zxingcpp.BarcodeFormat.QRCode,
    "code128": zxingcpp.BarcodeFormat.Code128,
    "ean13": zxingcpp.BarcodeFormat.EAN13,
    "code39": zxingcpp.BarcodeFormat.Code39,
    "datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
}
_MATRIX = {"qrcode", "datamatrix"}
KINDS = ("show", "key", "pedal", "still", "end")
_KEYS: dict[str, frozenset[str]] = {
    "show": frozenset({"at", "kind", "code", "symbology", "duration", "position", "size"}),
    "key": frozenset({"at", "kind", "text"}),
    "pedal": frozenset({"at", "kind"}),
    "still": frozenset({"at", "kind", "duration"}),
    "end": frozenset({"at", "kind"}),
}
_TOP_KEYS = frozenset({"event", "description", "seed"})
SEAL_CODES = ("SEAL", "封箱")
SLIDE_S = 0.3  # a card takes this long to slide into view and out again
MIN_SHOW_S = 2 * SLIDE_S + 0.2
_WAYBILL_RES = tuple(re.compile(p) for p in DEFAULT_WAYBILL_PATTERNS.values())


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """One scripted happening at scene time ``at`` (seconds from the start of the scenario).

    ``show``: a card with ``code`` in ``symbology`` slides in at ``at``, is still and readable
    from ``at + 0.3`` to ``at + duration - 0.3`` and has left at ``at + duration``.
    ``key``: ``text`` typed on the scripted keyboard scanner. ``pedal``: the pedal is pressed.
    ``still``: nothing in view moves for ``duration`` seconds. ``end``: the input ends.
    ``position`` is the card centre as fractions of the frame width and height; ``size`` the
    card height as a fraction of the frame height.
    """

    at: float
    kind: str
    code: str = ""
    symbology: str = ""
    duration: float = 0.0
    text: str = ""
    position: tuple[float, float] | None = None
    size: float | None = None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def check_encodable(code: str, symbology: str) -> None:
    """Raise ConfigError unless ``code`` can be drawn in ``symbology``."""
    if symbology not in SYMBOLOGIES:
        raise ConfigError(
            f"unknown symbology {symbology!r} (allowed: {', '.join(sorted(SYMBOLOGIES))})"
        )
    try:
        zxingcpp.create_barcode(code, SYMBOLOGIES[symbology])
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"{code!r} cannot be encoded as {symbology}: {exc}") from exc


def _parse_event(raw: Any, i: int) -> ScenarioEvent:
    where = f"event[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    kind = raw.get("kind")
    if kind not in _KEYS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    unknown = sorted(set(raw) - _KEYS[kind])
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} for a {kind!r} event: "
            f"{', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS[kind]))})"
        )
    if "at" not in raw:
        raise ConfigError(f"{where}: missing 'at' (seconds from the start)")
    at = _number(raw["at"], f"{where}.at")
    if at < 0:
        raise ConfigError(f"{where}.at must not be negative")
    if kind == "show":
        if "code" not in raw:
            raise ConfigError(f"{where}: a 'show' event needs a code")
        code = _string(raw["code"], f"{where}.code")
        sym = raw.get("symbology", "qrcode")
        if not isinstance(sym, str):
            raise ConfigError(f"{where}.symbology: expected a string, got {sym!r}")
        try:
            check_encodable(code, sym)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        duration = _number(raw.get("duration", 2.0), f"{where}.duration")
        if not MIN_SHOW_S <= duration <= 600:
            raise ConfigError(f"{where}.duration must be between {MIN_SHOW_S:g} and 600 s")
        position = None
        if "position" in raw:
            pos = raw["position"]
            if not isinstance(pos, list) or len(pos) != 2:
                raise ConfigError(f"{where}.position: expected [x, y] fractions, got {pos!r}")
            x, y = (_number(v, f"{where}.position") for v in pos)
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ConfigError(f"{where}.position: fractions must be between 0 and 1")
            position = (x, y)
        size = None
        if "size" in raw:
            size = _number(raw["size"], f"{where}.size")
            if not 0.1 <= size <= 0.95:
                raise ConfigError(f"{where}.size must be between 0.1 and 0.95 of the height")
        return ScenarioEvent(at, kind, code=code, symbology=sym, duration=duration,
                             position=position, size=size)  # fmt: skip
    if kind == "key":
        if "text" not in raw:
            raise ConfigError(f"{where}: a 'key' event needs text")
        return ScenarioEvent(at, kind, text=_string(raw["text"], f"{where}.text"))
    if kind == "still":
        if "duration" not in raw:
            raise ConfigError(f"{where}: a 'still' event needs a duration")
        duration = _number(raw["duration"], f"{where}.duration")
        if duration <= 0:
            raise ConfigError(f"{where}.duration must be positive")
        return ScenarioEvent(at, kind, duration=duration)
    return ScenarioEvent(at, kind)


class Scenario:
    """A time-ordered script of cards, keystrokes, pedal presses and still periods.

    Either finite (from TOML or a dict; ``end`` is the time of its ``end`` event, or None when
    it has none and the camera keeps showing the table) or endless and generated lazily
    (``demo``). ``events()`` returns a fresh iterator each call, so the camera and the scripted
    scanner each walk the same script. Immutable; safe to share between threads.
    """

    def __init__(
        self,
        events: Iterable[ScenarioEvent] = (),
        *,
        name: str = "scenario",
        seed: int = 0,
        generator: Callable[[], Iterator[ScenarioEvent]] | None = None,
    ) -> None:
        self.name = name
        self.seed = seed
        self._generator = generator
        self._events: tuple[ScenarioEvent, ...] = ()
        self.end: float | None = None
        if generator is None:
            evs = sorted(events, key=lambda e: e.at)
            ends = [e for e in evs if e.kind == "end"]
            if len(ends) > 1:
                raise ConfigError(f"{name}: more than one 'end' event")
            if ends:
                self.end = ends[0].at
                late = [e for e in evs if e.at > self.end]
                if late:
                    raise ConfigError(
                        f"{name}: a {late[0].kind!r} event at {late[0].at:g} s comes after "
                        f"the end at {self.end:g} s"
                    )
            self._events = tuple(evs)

    @property
    def endless(self) -> bool:
        return self._generator is not None

    def events(self) -> Iterator[ScenarioEvent]:
        """A new iterator over the events in time order (endless for the demo)."""
        if self._generator is not None:
            return self._generator()
        return iter(self._events)

    def __repr__(self) -> str:
        size = "endless" if self.endless else f"{len(self._events)} events"
        return f"Scenario({self.name!r}, {size})"

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "scenario") -> Scenario:
        """Build and validate a scenario from parsed TOML; errors raise ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"{name}: must be a table")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise ConfigError(
                f"{name}: unknown top-level key{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)} (allowed: {', '.join(sorted(_TOP_KEYS))})"
            )
        raw_events = data.get("event", [])
        if not isinstance(raw_events, list):
            raise ConfigError(f"{name}: 'event' must be an array of tables ([[event]])")
        if "description" in data and not isinstance(data["description"], str):
            raise ConfigError(f"{name}: description must be a string")
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"{name}: seed must be an integer")
        try:
            events = [_parse_event(raw, i) for i, raw in enumerate(raw_events)]
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from exc
        return cls(events, name=name, seed=seed)

    @classmethod
    def load(cls, path: Path | str) -> Scenario:
        """Load and validate a scenario TOML file."""
        p = Path(path)
        return cls.from_dict(read_toml(p, "scenario file"), name=str(p))

    @classmethod
    def demo(cls, seed: int = 0, day: date | None = None) -> Scenario:
        """The endless built-in script of ``packcam demo`` (see ``_demo_events``)."""
        stamp = (day or date.today()).strftime("%Y%m%d")
        return cls(name=f"demo(seed={seed})", seed=seed,
                   generator=lambda: _demo_events(seed, stamp))  # fmt: skip


def load_scenario(camera: CameraSection) -> Scenario:
    """The scenario ``[camera] scenario`` names, or the endless demo when it is empty."""
    return Scenario.load(camera.scenario) if camera.scenario else Scenario.demo()


# ---- the demo script ----------------------------------------------------------------------

_EPISODES = ("sealed", "next-order", "rescan", "pedal", "waybill", "still", "timeout")

# Session settings `packcam demo` uses (without --config) so that the "still" and "timeout"
# episodes end their clips by those rules within a short demo.
DEMO_SESSION = {"still_timeout_s": 10.0, "max_duration_s": 30.0}
DEMO_PACKER = "OP:demo-packer"  # the badge the demo signs in with (codes.operator_patterns)
DEMO_RETURN = "RETURN"  # the return card (codes.return_codes)


def _order_id(rng: random.Random, stamp: str, n: int) -> str:
    if rng.random() < 0.5:
        return f"PO{stamp}-{n:04d}"
    # Taobao / Tmall style: 18 or 19 digits, no leading zero.
    digits = rng.choice((18, 19))
    return str(rng.randrange(10 ** (digits - 1), 10**digits))


def _waybill(rng: random.Random) -> str:
    carrier = rng.choice(("SF", "YT", "JT", "JD", "ZTO"))
    if carrier == "JD":
        return "JDVA" + "".join(rng.choices("0123456789", k=11))
    if carrier == "ZTO":
        return "7" + rng.choice("3578") + "".join(rng.choices("0123456789", k=12))
    return carrier + "".join(rng.choices("0123456789", k=13))


class _Episode:
    """The events of one demo order, collected before they are yielded in time order."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.events: list[ScenarioEvent] = []

    def card(self, at: float, code: str, symbology: str) -> None:
        dur = round(self.rng.uniform(1.6, 2.8), 3)
        self.events.append(ScenarioEvent(round(at, 3), "show", code=code, symbology=symbology,
                                         duration=dur))  # fmt: skip

    def scan(self, at: float, code: str, symbology: str, keyboard: bool) -> None:
        if keyboard:
            self.events.append(ScenarioEvent(round(at, 3), "key", text=code))
        else:
            self.card(at, code, symbology)

    def add(self, at: float, kind: str, duration: float = 0.0) -> None:
        self.events.append(ScenarioEvent(round(at, 3), kind, duration=duration))


def _demo_events(seed: int, stamp: str) -> Iterator[ScenarioEvent]:
    """Orders about every 15-20 s; each cycle of seven ends one clip by each stop rule.

    sealed: the seal card. next-order: the next order's scan. rescan: the same order scanned
    again by hand. pedal: the pedal. waybill: the
    waybill (ends the clip when ``session.waybill_ends_clip``; the seal card follows otherwise).
    still: 25 s of stillness (ends it when ``session.still_timeout_s`` is set), then the seal.
    timeout: no end at all for longer than ``DEMO_SESSION["max_duration_s"]``.
    Some orders and about a quarter of the waybills arrive as keyboard scans instead of cards.
    The packing floor (issue 13): a packer badge is scanned first (DEMO_PACKER); from the
    second cycle on, the "sealed" order is the previous cycle's again (a duplicate: a repack)
    and a return card (DEMO_RETURN) before the "pedal" order makes that clip a return.
    """
    rng = random.Random(seed)
    t = rng.uniform(1.0, 2.5)
    n = 0
    seals = 0
    yield ScenarioEvent(0.5, "key", text=DEMO_PACKER)
    repeat: str | None = None
    while True:
        for episode in _EPISODES:
            n += 1
            order = _order_id(rng, stamp, n)
            if episode == "sealed":
                order, repeat = repeat or order, order
            ep = _Episode(rng)
            if episode == "pedal":
                ep.events.append(ScenarioEvent(round(t - 0.5, 3), "key", text=DEMO_RETURN))
            by_key = episode in ("pedal", "next-order") and rng.random() < 0.5
            ep.scan(t, order, rng.choice(("qrcode", "code128")), by_key)
            waybill_at = t + rng.uniform(6.0, 9.0)
            ep.scan(waybill_at, _waybill(rng), "code128", rng.random() < 0.25)
            length = rng.uniform(15.0, 19.0)
            seal_at: float | None = None
            if episode in ("sealed", "waybill"):
                seal_at = t + rng.uniform(12.0, 13.5)
            elif episode == "rescan":  # by hand: the camera seeing the sheet again ends nothing
                ep.scan(t + rng.uniform(11.5, 13.0), order, "qrcode", True)
            elif episode == "pedal":
                ep.add(t + rng.uniform(12.0, 13.5), "pedal")
            elif episode == "still":
                still_at = waybill_at + 3.0
                ep.add(still_at, "still", duration=25.0)
                seal_at = still_at + 26.0
                length = seal_at + 4.0 - t + rng.uniform(0.0, 2.0)
            elif episode == "timeout":
                # Nobody seals this one: the safety timeout ends it.
                length = DEMO_SESSION["max_duration_s"] + rng.uniform(4.0, 6.0)
            if seal_at is not None:
                ep.card(seal_at, SEAL_CODES[seals % 2], "qrcode")
                seals += 1
            yield from sorted(ep.events, key=lambda e: e.at)
            t += length


# ---- rendering ----------------------------------------------------------------------------


def _modules(code: str, symbology: str) -> np.ndarray:
    """The barcode as a uint8 0/255 image at one pixel per module, quiet zones included."""
    bc = zxingcpp.create_barcode(code, SYMBOLOGIES[symbology])
    img = np.asarray(bc.to_image(scale=1, add_quiet_zones=True))
    if symbology not in _MATRIX:
        img = img[:1]  # a linear code: one row says it all
    return img


def card_kind(code: str) -> str:
    """How a code is dressed in the scene: "seal" card, "waybill" label or "order" sheet."""
    if code.casefold() in {s.casefold() for s in SEAL_CODES}:
        return "seal"
    if any(r.match(code) for r in _WAYBILL_RES):
        return "waybill"
    return "order"


def _put_text(img: np.ndarray, text: str, x: int, y: int, height: int, color: Any) -> None:
    """Hershey text about ``height`` px tall, shrunk to fit the image width; ASCII only."""
    if not text.isascii() or height < 6:
        return
    scale = height / 22.0
    thick = max(1, round(scale * 1.6))
    (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    room = img.shape[1] - x - 2
    if w > room > 0:
        scale *= room / w
        thick = max(1, round(scale * 1.6))
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def render_card(code: str, symbology: str, height: int, max_width: int) -> np.ndarray:
    """A printed card carrying the barcode: an order sheet, a waybill label or a seal card.

    The barcode is drawn with whole pixels per module (at least 2 where the frame allows) and
    its quiet zone stays white, so a real decoder reads it.
    """
    kind = card_kind(code)
    mod = _modules(code, symbology)
    matrix = symbology in _MATRIX
    height = max(height, 48)
    if matrix:
        width = int(height * 0.8)
        side = int(min(width * 0.86, height * 0.66))
        scale = max(1, side // max(mod.shape))
    else:
        width = int(height * 1.5)
        scale = max(1, int(width * 0.9) // mod.shape[1])
        if scale < 2:
            width = min(max_width, int(mod.shape[1] * 2 / 0.9) + 2)
            scale = max(1, int(width * 0.9) // mod.shape[1])
    width = min(max(width, mod.shape[1] * scale + 4), max_width)
    paper = {"order": (236, 240, 242), "waybill": (250, 250, 250), "seal": (40, 140, 245)}[kind]
    card = np.empty((height, width, 3), np.uint8)
    card[:] = paper
    ink = (30, 30, 30)
    band = max(6, height // 9)
    if kind == "order":
        card[:band] = (120, 70, 30)
        _put_text(card, "PACKING LIST", band // 3, int(band * 0.75), int(band * 0.6), (255,) * 3)
    elif kind == "waybill":
        cv2.rectangle(card, (1, 1), (width - 2, height - 2), ink, max(1, height // 120))
        card[band : band + max(2, band // 6)] = ink
        _put_text(card, code[:2] + " EXPRESS", band // 3, int(band * 0.75), int(band * 0.6), ink)
    else:
        _put_text(card, "SEAL", band // 3, int(band * 1.1), band, (255,) * 3)
    if matrix:
        block = np.repeat(np.repeat(mod, scale, axis=0), scale, axis=1)
    else:
        bar_h = max(8, int(height * 0.36))
        block = np.repeat(np.repeat(mod, scale, axis=1), bar_h, axis=0)
        pad = max(4, scale * 6)
        block = np.pad(block, ((pad, pad), (0, 0)), constant_values=255)
    bh, bw = block.shape
    bh, bw = min(bh, height - band - 4), min(bw, width)
    y0 = band + max(2, (height - band - bh) // 2 - height // 12)
    x0 = (width - bw) // 2
    card[y0 : y0 + bh, x0 : x0 + bw] = block[:bh, :bw, None]
    # Human-readable text under the code and a few printed lines, as on the real thing.
    text_h = max(6, height // 16)
    ty = y0 + bh + text_h + 4
    if ty < height - 2:
        _put_text(card, code, max(2, min(x0, band // 3)), ty, text_h, ink)
    line_y = ty + text_h
    rng = random.Random(zlib.crc32(code.encode()))
    while kind != "seal" and line_y + 3 < height - 4:
        w = int(width * rng.uniform(0.3, 0.8))
        card[line_y : line_y + max(2, text_h // 3), band // 3 : band // 3 + w] = (150, 150, 150)
        line_y += text_h
    return card


def _wood(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A wooden table top with a cutting mat: cheap low-frequency noise, scaled up."""
    sh, sw = max(4, height // 8), max(4, width // 8)
    grain: np.ndarray = rng.normal(0.0, 1.0, (sh, sw // 6 + 1)).astype(np.float32)
    grain = cv2.resize(grain, (sw, sh), interpolation=cv2.INTER_CUBIC)
    xs = np.linspace(0, 40 * np.pi, sw, dtype=np.float32)
    stripes = np.sin(xs[None, :] + grain * 2.0) * 0.5 + grain * 0.5
    base = np.array([62, 104, 148], np.float32)
    small = base[None, None, :] * (1.0 + 0.10 * stripes[..., None])
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    img = np.clip(img, 0, 255).astype(np.uint8)
    # A green cutting mat where the packing happens, with a grid.
    x0, y0, x1, y1 = width // 6, height // 8, width * 5 // 6, height * 7 // 8
    img[y0:y1, x0:x1] = (70, 110, 60)
    step = max(8, height // 18)
    line = (90, 135, 80)
    for x in range(x0, x1, step):
        img[y0:y1, x : x + max(1, height // 540)] = line
    for y in range(y0, y1, step):
        img[y : y + max(1, height // 540), x0:x1] = line
    return img


def _box_patch(h: int, w: int, color: tuple[int, int, int]) -> np.ndarray:
    patch = np.empty((h, w, 3), np.uint8)
    patch[:] = color
    cv2.rectangle(patch, (0, 0), (w - 1, h - 1), (40, 70, 100), max(1, h // 60))
    tape = max(2, h // 10)
    patch[h // 2 - tape // 2 : h // 2 + tape // 2] = (150, 185, 205)
    return patch


def _hand_patch(size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = size, int(size * 0.8)
    patch = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    # A palm and a forearm; enough to read as a hand at a glance and to make motion.
    cv2.ellipse(mask, (w // 2, h // 3), (w // 3, h // 4), 0, 0, 360, 255, -1)
    cv2.rectangle(mask, (w // 2 - w // 5, h // 3), (w // 2 + w // 5, h - 1), 255, -1)
    for i in range(4):
        fx = w // 2 - w // 4 + i * w // 6
        cv2.ellipse(mask, (fx, h // 8), (max(2, w // 14), h // 8), 0, 0, 360, 255, -1)
    patch[:] = (140, 170, 215)
    shade = cv2.GaussianBlur(mask, (0, 0), max(1, size / 30))
    patch = (patch.astype(np.float32) * (0.8 + 0.2 * shade[..., None] / 255)).astype(np.uint8)
    return patch, (mask > 0)[..., None]


def _blit(dst: np.ndarray, patch: np.ndarray, x: int, y: int, mask: np.ndarray | None) -> None:
    """Paste ``patch`` with its top-left at (x, y), clipped to ``dst``."""
    h, w = patch.shape[:2]
    H, W = dst.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return
    src = patch[y0 - y : y1 - y, x0 - x : x1 - x]
    roi = dst[y0:y1, x0:x1]
    if mask is None:
        roi[:] = src
    else:
        np.copyto(roi, src, where=mask[y0 - y : y1 - y, x0 - x : x1 - x])


def _ease(f: float) -> float:
    f = min(max(f, 0.0), 1.0)
    return f * f * (3 - 2 * f)


@dataclass
class _Shown:
    event: ScenarioEvent
    patch: np.ndarray
    x: int  # resting top-left
    y: int


class SyntheticCamera:
    """A packing table seen from above: wood, a mat, moving boxes and hands, barcode cards.

    Cards are real barcodes (zxing-cpp), pre-rendered once per scenario event, so any decoder
    reads them. Non-realtime (``realtime=False``): ``t = index / fps`` and frames come as fast
    as they are asked for. Realtime: paced to ``fps`` on the ``time.monotonic()`` timeline
    (``origin`` is the ``t`` of scene time 0); a consumer that falls behind gets the current
    frame and the skipped ones are counted in ``dropped``. During a ``still`` event the scene
    freezes and consecutive frames are identical. ``read`` returns None at the scenario's end
    or after ``stop``. No threads of its own; one capture thread owns it.

    ``pixel_format="i420"``: frames are planar YUV420 (``Frame.pixel_format``), as picamera2
    delivers them, so the station's I420 path can run without a Pi.
    """

    N_VARIANTS = 4  # pre-rendered noisy backgrounds the frames cycle through

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        scenario: Scenario,
        realtime: bool,
        start_wall: datetime | None = None,
        tz: tzinfo | None = None,
        pixel_format: str = "bgr",
    ) -> None:
        if width < 16 or height < 16 or fps <= 0:
            raise ValueError("synthetic camera needs a size of at least 16x16 and fps > 0")
        if pixel_format not in ("bgr", "i420"):
            raise ValueError(f"pixel_format must be bgr or i420, not {pixel_format!r}")
        self.pixel_format = pixel_format
        self.width, self.height, self.fps = width, height, float(fps)
        self.scenario = scenario
        self.realtime = realtime
        self.live = realtime
        self.dropped = 0
        self.origin = 0.0
        self._start_wall_arg = start_wall
        self._tz = tz
        self._stop = threading.Event()
        self._started = False
        rng = np.random.default_rng(scenario.seed)
        wood = _wood(height, width, rng)
        # Sensor noise, a pixel of shake and a breath of auto-exposure, baked in once: a frame
        # then costs one copy plus a few small pastes.
        self._variants: list[np.ndarray] = []
        shifts = ((0, 0), (1, 0), (1, 1), (0, 1))
        for k in range(self.N_VARIANTS):
            noise = rng.integers(-3, 4, size=wood.shape, dtype=np.int16)
            gain = 2 * (k % 2) - 1
            v = np.roll(wood, shifts[k % 4], axis=(0, 1)).astype(np.int16) + noise + gain
            self._variants.append(np.clip(v, 0, 255).astype(np.uint8))
        u = height
        self._boxes = [
            (_box_patch(int(u * 0.30), int(u * 0.42), (85, 140, 190)), (0.42, 0.55), 0.23),
            (_box_patch(int(u * 0.22), int(u * 0.22), (70, 120, 170)), (0.70, 0.40), 0.31),
        ]
        self._hand, self._hand_mask = _hand_patch(int(u * 0.28))
        self._reset()

    def _reset(self) -> None:
        self._events = self.scenario.events()
        self._pending: ScenarioEvent | None = None
        self._shows: list[_Shown] = []
        self._stills: deque[tuple[float, float]] = deque()
        self._pulled_to = -1.0
        self._next_index = 0

    # ---- FrameSource ----------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._reset()
        self.dropped = 0
        self._started = True
        self.origin = time.monotonic() if self.realtime else 0.0
        self._start_wall = self._start_wall_arg or datetime.now(self._tz).astimezone(self._tz)
        log.info("synthetic camera %dx%d@%g (%s, %s)", self.width, self.height, self.fps,
                 "realtime" if self.realtime else "as fast as read", self.scenario)  # fmt: skip

    def read(self, timeout: float = 2.0) -> Frame | None:
        if not self._started:
            raise RuntimeError("SyntheticCamera.read() before start()")
        if self._stop.is_set():
            return None
        idx = self._next_index
        if self.realtime:
            due = int((time.monotonic() - self.origin) * self.fps)
            if due > idx:
                self.dropped += due - idx
                idx = due
            else:
                wait = self.origin + idx / self.fps - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return None
        s = idx / self.fps
        end = self.scenario.end
        if end is not None and s >= end:
            return None
        self._next_index = idx + 1
        image = self.render(s)
        if self.pixel_format == "i420":  # the scene is drawn in BGR; the sensor gives YUV
            image = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        return Frame(
            image=image,
            t=self.origin + s,
            wall=self._start_wall + timedelta(seconds=s),
            index=idx,
            pixel_format=self.pixel_format,
        )

    def stop(self) -> None:
        self._stop.set()

    # ---- the scene ------------------------------------------------------------------------

    def _pull(self, s: float) -> None:
        """Take scenario events up to a second ahead of scene time ``s``."""
        horizon = s + 1.0
        while True:
            ev = self._pending
            if ev is None:
                ev = next(self._events, None)
                if ev is None:
                    return
            if ev.at > horizon:
                self._pending = ev
                return
            self._pending = None
            if ev.kind == "show":
                self._shows.append(self._place(ev))
            elif ev.kind == "still":
                self._stills.append((ev.at, ev.at + ev.duration))

    def _place(self, ev: ScenarioEvent) -> _Shown:
        kind = card_kind(ev.code)
        size = ev.size or {"order": 0.5, "waybill": 0.5, "seal": 0.4}[kind]
        patch = render_card(ev.code, ev.symbology, int(self.height * size), self.width - 4)
        h, w = patch.shape[:2]
        if ev.position is not None:
            cx, cy = ev.position
        else:
            r = random.Random(zlib.crc32(f"{ev.code}@{ev.at}".encode()))
            cx, cy = r.uniform(0.38, 0.62), r.uniform(0.42, 0.58)
        x = min(max(int(cx * self.width - w / 2), 0), max(self.width - w, 0))
        y = min(max(int(cy * self.height - h / 2), 0), max(self.height - h, 0))
        return _Shown(ev, patch, x, y)

    def scene_time(self, s: float) -> float:
        """The moment the picture shows: ``s``, or the start of the still period around it."""
        while self._stills and self._stills[0][1] <= s:
            self._stills.popleft()
        for start, end in self._stills:
            if start <= s < end:
                return start
        return s

    def render(self, s: float) -> np.ndarray:
        """The picture at scene time ``s`` (seconds from the scenario start), a new array."""
        if s > self._pulled_to:
            self._pull(s)
            self._pulled_to = s
        st = self.scene_time(s)
        k = round(st * self.fps) % self.N_VARIANTS
        img = self._variants[k].copy()
        H, W = self.height, self.width
        for patch, (cx, cy), w in self._boxes:
            bx = cx + 0.06 * math.sin(w * st * 2 * math.pi)
            by = cy + 0.05 * math.sin(w * st * 1.3 * math.pi + 1.0)
            ph, pw = patch.shape[:2]
            _blit(img, patch, int(bx * W - pw / 2), int(by * H - ph / 2), None)
        hh, hw = self._hand.shape[:2]
        for i, phase in enumerate((0.0, 2.1)):
            hx = 0.35 + 0.30 * i + 0.12 * math.sin(1.1 * st + phase)
            hy = 0.62 + 0.16 * math.sin(1.7 * st + phase * 1.7)
            _blit(img, self._hand, int(hx * W - hw / 2), int(hy * H - hh / 3), self._hand_mask)
        self._shows = [sh for sh in self._shows if sh.event.at + sh.event.duration > st]
        for sh in self._shows:
            p = st - sh.event.at
            if p < 0:
                continue
            f = min(p / SLIDE_S, (sh.event.duration - p) / SLIDE_S, 1.0)
            y = sh.y + int((1.0 - _ease(f)) * (H - sh.y))
            _blit(img, sh.patch, sh.x, y, None)
        return img


__all__ = [
    "SYMBOLOGIES",
    "Scenario",
    "ScenarioEvent",
    "SyntheticCamera",
    "card_kind",
    "check_encodable",
    "load_scenario",
    "render_card",
]
