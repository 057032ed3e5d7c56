"""Barcode accuracy and cost: zbar, zxing-cpp, either, the packcam pipeline and its live path.

"live" decodes each photo alone within the live budget; "in-frame" pastes it into a 1280x720
frame of the synthetic packing table and decodes the whole frame (the station without the
change gate); "gated" shows the station's ScanWorker the empty table, then the table with the
photo, through the change gate (the station as it runs).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import statistics
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

# run from a checkout without installing: `.venv/bin/python bench/decode_accuracy.py`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station.capture import barcodes
from station.capture.changegate import ChangeGate
from station.capture.frames import Frame
from station.capture.synthetic import Scenario, SyntheticCamera
from station.store.ledger import ScanEventRecord

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = [REPO.parent / "shared/data/barcodes", Path("/work/shared/data/barcodes")]
METHODS = ("zbar", "zxing", "either", "pipeline", "live", "in-frame", "gated")
FRAME_W, FRAME_H = 1280, 720


# The manifest follows zxing-Java, which read this Code 39 as full ASCII ("Extended !?*#");
# packcam reads standard Code 39, as hand scanners do by default: the characters printed.
AS_PRINTED = {"code39-2_1.png": "E+X+T+E+N+D+E+D /A%J/J/C"}


def load_manifest(data: Path) -> list[tuple[Path, str, str]]:
    """(image path, symbology, expected text) per row; texts are exact (CR LF and all), but
    for ``AS_PRINTED``."""
    with open(data / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        path = data / r["file"]
        out.append((path, r["symbology"], AS_PRINTED.get(path.name, r["expected_text"])))
    return out


def timed(
    fn: Callable[[np.ndarray], list[barcodes.Detection]], image: np.ndarray
) -> tuple[list[str], float]:
    t = time.perf_counter()
    found = fn(image)
    return [d.text for d in found], (time.perf_counter() - t) * 1e3


def table() -> np.ndarray:
    """An empty 1280x720 frame of the synthetic packing table (boxes and hands, no card)."""
    cam = SyntheticCamera(
        FRAME_W, FRAME_H, 30.0, Scenario.from_dict({"seed": 3, "event": []}), realtime=False
    )
    cam.start()
    return cam.render(2.0)


def in_frame(background: np.ndarray, image: np.ndarray) -> np.ndarray:
    """``image`` pasted at the centre of a copy of ``background``, shrunk to fit if needed."""
    h, w = image.shape[:2]
    k = min(1.0, FRAME_W / w, FRAME_H / h)
    if k < 1.0:
        image = cv2.resize(image, (int(w * k), int(h * k)), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    out = background.copy()
    y, x = (FRAME_H - h) // 2, (FRAME_W - w) // 2
    out[y : y + h, x : x + w] = image
    return out


def gated_read(
    decoder: barcodes.BarcodeDecoder, background: np.ndarray, frame: np.ndarray
) -> list[barcodes.Detection]:
    """What the station's ScanWorker reports when ``frame`` follows the empty table."""
    worker = barcodes.ScanWorker(decoder, sync=True, gate=ChangeGate(1.5))
    worker.start()
    wall = datetime(2026, 1, 1, tzinfo=UTC)
    worker.submit(Frame(image=background, t=0.0, wall=wall, index=0))
    worker.poll(0.0)
    # two looks: a read becomes a scan once confirmed in two frames (station/capture/confirm.py)
    worker.submit(Frame(image=frame, t=0.1, wall=wall, index=3))
    worker.submit(Frame(image=frame, t=0.2, wall=wall, index=6))
    worker.stop()
    return [barcodes.Detection(e.text, "", ()) for e in worker.poll(1.0)]


def accuracy(data: Path, live_budget: float) -> None:
    rows = load_manifest(data)
    decoder = barcodes.BarcodeDecoder(frame_budget_ms=live_budget)
    background = table()
    hits: dict[str, Counter[str]] = {m: Counter() for m in METHODS}
    wrong: Counter[str] = Counter()
    ms: dict[tuple[str, str], list[float]] = defaultdict(list)
    per_stage: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for path, sym, expected in rows:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"cannot read {path}", file=sys.stderr)
            continue
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        totals[sym] += 1
        texts: dict[str, list[str]] = {}
        texts["zbar"], t_zbar = timed(barcodes.decode_zbar, gray)
        texts["zxing"], t_zxing = timed(barcodes.decode_zxing, gray)
        texts["either"] = texts["zbar"] + texts["zxing"]
        t0 = time.perf_counter()
        result = decoder.run(image)
        checked = barcodes.check_products(gray, result.detections, result.stage)
        t_pipe = (time.perf_counter() - t0) * 1e3
        texts["pipeline"] = [d.text for d in checked]  # what decoder.decode returns
        texts["live"], t_live = timed(decoder.decode_frame, image)
        framed = in_frame(background, image)
        texts["in-frame"], t_framed = timed(decoder.decode_frame, framed)
        texts["gated"], t_gated = timed(lambda f: gated_read(decoder, background, f), framed)
        times = {
            "zbar": t_zbar,
            "zxing": t_zxing,
            "either": t_zbar + t_zxing,
            "pipeline": t_pipe,
            "live": t_live,
            "in-frame": t_framed,
            "gated": t_gated,
        }
        for m, t in times.items():
            ms[(m, sym)].append(t)
            ms[(m, "all")].append(t)
            if any(barcodes.same_text(expected, x) for x in texts[m]):
                hits[m][sym] += 1
        ok = any(barcodes.same_text(expected, x) for x in texts["pipeline"])
        if texts["pipeline"] and not ok:
            wrong[sym] += 1
            print(f"  other text: {path.name}: {texts['pipeline']!r} (stage {result.stage})")
        if ok:
            per_stage[result.stage or "?"] += 1
    n_all = sum(totals.values())
    print(f"\naccuracy on {data} ({n_all} images); % read, median ms per image")
    header = f"{'symbology':11s} {'n':>4s}" + "".join(f" {m:>14s}" for m in METHODS)
    print(header)
    print("-" * len(header))
    for sym in [*sorted(totals), "all"]:
        n = n_all if sym == "all" else totals[sym]
        cells = []
        for m in METHODS:
            h = sum(hits[m].values()) if sym == "all" else hits[m][sym]
            cells.append(f" {100 * h / n:6.1f}% {statistics.median(ms[(m, sym)]):5.1f}ms")
        print(f"{sym:11s} {n:4d}" + "".join(cells))
    pipe = sorted(ms[("pipeline", "all")])
    p95 = pipe[int(0.95 * (len(pipe) - 1))]
    print(
        f"\npipeline ms per image: median {statistics.median(pipe):.1f}, "
        f"mean {statistics.fmean(pipe):.1f}, p95 {p95:.1f}, max {pipe[-1]:.1f}"
    )
    print(f"pipeline read a different code than expected: {sum(wrong.values())} image(s)")
    print("pipeline reads by stage: " + ", ".join(f"{k} {v}" for k, v in per_stage.most_common()))


def synthetic_frame(width: int, height: int, content: str, rng: np.random.Generator) -> np.ndarray:
    """A grainy cardboard-grey frame: "code128" or "qrcode" pastes a label in, "clutter" adds
    printed text and boxes (no code), "plain" is grain only."""
    import zxingcpp

    frame = rng.normal(150, 18, (height, width, 3)).clip(0, 255).astype(np.uint8)
    frame = cv2.GaussianBlur(frame, (0, 0), 1.2)
    if content == "clutter":
        for _ in range(12):
            x, y = int(rng.integers(0, width - 300)), int(rng.integers(0, height - 120))
            cv2.rectangle(frame, (x, y), (x + 280, y + 110), (235, 235, 235), -1)
            for line in range(3):
                words = " ".join(str(rng.integers(10**5, 10**7)) for _ in range(3))
                origin = (x + 8, y + 30 + 30 * line)
                font = cv2.FONT_HERSHEY_SIMPLEX
                cv2.putText(frame, words, origin, font, 0.6, (30, 30, 30), 1, cv2.LINE_AA)
    elif content in ("code128", "qrcode"):
        fmt = (
            zxingcpp.BarcodeFormat.Code128
            if content == "code128"
            else zxingcpp.BarcodeFormat.QRCode
        )
        code = zxingcpp.create_barcode("SF1234567890123", fmt)
        label = np.asarray(
            zxingcpp.write_barcode_to_image(code, scale=2 if content == "code128" else 4)
        )
        y, x = height // 3, width // 3
        frame[y : y + label.shape[0], x : x + label.shape[1]] = label[:, :, None]
    return frame


def frame_costs(live_budget: float, repeats: int) -> None:
    decoder = barcodes.BarcodeDecoder(frame_budget_ms=live_budget)
    rng = np.random.default_rng(7)
    print(f"\nlive path per frame (budget {live_budget:g} estimated ms), median of {repeats}")
    print(f"{'frame':10s} {'content':8s} {'found':6s} {'ms':>6s} {'est.ms':>7s}  stages run")
    for w, h in ((1280, 720), (1920, 1080)):
        for content in ("code128", "qrcode", "plain", "clutter"):
            frame = synthetic_frame(w, h, content, rng)
            runs = [decoder.run(frame, live_budget) for _ in range(repeats)]
            med = statistics.median(r.seconds for r in runs) * 1e3
            r = runs[-1]
            found = "yes" if r.detections else "no"
            ran = ", ".join(f"{k}x{n}" if n > 1 else k for k, n in Counter(r.ran).items())
            print(f"{w}x{h:<5d} {content:8s} {found:6s} {med:6.1f} {r.estimated_ms:7.1f}  {ran}")


# --------------------------------------------------------------------------- showings

SHOW_S = 1.0  # each photo lies in view this long ...
GAP_S = 1.0  # ... then the table is empty this long
REPEAT_S = 12.0  # the same text is never shown again within this many seconds
FPS = 30.0
# Texts that are really on a photo besides its expected code (checked by eye: a second label,
# a book's price code beside its ISBN, the inner QR of a double QR): reading them is not a
# misread. file name -> texts.
ALSO_ON_PHOTO: dict[str, tuple[str, ...]] = {
    "code39-3_02.png": ("001EC947D49B",),
    "code39-3_08.png": ("001EC9476B0A",),
    "ean13-2_24.png": ("1920081045006",),
    "ean13-2_28.png": ("9784872348880",),
    "qrcode-2_16.png": ("[内側QRコード]\r\n\r\n*ダブルQR*\r\nhttp://d-qr.net/ex/",),
}
# Reads that differ from the manifest's text but pass the symbol's error correction (a QR's
# Reed-Solomon check): most likely the manifest's text is off. Reported, not counted.
DISPUTED: dict[str, tuple[str, ...]] = {
    "qrcode-2_13.png": (
        "The 2005 USGS aerial photography of the Washington Monument is censored.",
    ),
}


@dataclass(frozen=True)
class Showing:
    path: Path
    symbology: str
    expected: str
    start: float  # scene seconds when the photo is put down


def schedule(rows: list[tuple[Path, str, str]], seed: int) -> list[Showing]:
    """The photos in a shuffled order, one per SHOW_S + GAP_S slot, the same text never twice
    within REPEAT_S (a slot is left empty when no photo fits)."""
    rng = random.Random(seed)
    pending = list(rows)
    rng.shuffle(pending)
    slot = SHOW_S + GAP_S
    out: list[Showing] = []
    last: dict[str, float] = {}
    t = 1.0  # a second of empty table first: the gate's first look is the table
    while pending:
        for i, (path, sym, text) in enumerate(pending):
            if t - last.get(text, -math.inf) >= REPEAT_S:
                out.append(Showing(path, sym, text, t))
                last[text] = t
                del pending[i]
                break
        t += slot
    return out


class _NullLedger:
    """No earlier clips: every order is a first packing."""

    def order_clip_refs(self, order_id: str) -> list[tuple[int, str]]:
        return []


class _NullRecorder:
    """Records what the station asks of a recorder, writes nothing (the decode path only)."""

    def __init__(self) -> None:
        self.ledger = _NullLedger()
        self.recording = False
        self.events: list[tuple[float, ScanEventRecord]] = []
        self.starts: list[tuple[float, str]] = []
        self.stops: list[tuple[float, str]] = []

    def push(self, image: np.ndarray, t: float, wall: datetime, label: object = None) -> None:
        pass

    def start(self, order_id: str, t: float, **_kw: object) -> None:
        self.recording = True
        self.starts.append((t, order_id))

    def stop(self, reason: str, t: float) -> None:
        self.recording = False
        self.stops.append((t, reason))

    def link_waybill(self, waybill: str, carrier: str, t: float) -> None:
        pass

    def log_event(self, event: ScanEventRecord, t: float, *, in_clip: bool = True) -> None:
        self.events.append((t, event))

    def close(self) -> None:
        pass


def _photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path}")
    h, w = image.shape[:2]
    k = min(1.0, 0.9 * FRAME_W / w, 0.9 * FRAME_H / h)
    if k < 1.0:
        image = cv2.resize(image, (int(w * k), int(h * k)), interpolation=cv2.INTER_AREA)
    return image


class ShowingsVideo:
    """The 720p30 table video: the synthetic table (moving boxes and hands), each photo lying
    on it for SHOW_S with a little hand drift (sub-pixel shift, +-0.4 degrees), then GAP_S of
    empty table; sensor noise (sigma 2.5 grey levels) on every frame."""

    def __init__(self, shows: list[Showing], seed: int) -> None:
        self.shows = shows
        self.end = shows[-1].start + SHOW_S + GAP_S if shows else 1.0
        self.rng = np.random.default_rng(seed)
        self.cam = SyntheticCamera(
            FRAME_W, FRAME_H, FPS, Scenario.from_dict({"seed": 3, "event": []}), realtime=False
        )
        self.cam.start()
        self.noise = [
            self.rng.normal(0, 2.5, (FRAME_H, FRAME_W, 1)).astype(np.int16) for _ in range(8)
        ]
        self._cache: tuple[int, np.ndarray, tuple[float, ...]] | None = None

    def frame(self, index: int) -> np.ndarray:
        s = index / FPS
        img = self.cam.render(s)
        i = int((s - 1.0) // (SHOW_S + GAP_S))
        shown = self.shows[i] if 0 <= i < len(self.shows) else None
        if shown is not None and shown.start <= s < shown.start + SHOW_S:
            if self._cache is None or self._cache[0] != i:
                r = self.rng
                pose = (
                    r.uniform(0.4, 0.6),
                    r.uniform(0.4, 0.6),
                    r.uniform(0, 6.3),
                    r.uniform(0, 6.3),
                )
                self._cache = (i, _photo(shown.path), pose)
            _, photo, (cx, cy, ph1, ph2) = self._cache
            u = s - shown.start
            dx = 2.5 * math.sin(2 * math.pi * 0.8 * u + ph1)
            dy = 2.0 * math.sin(2 * math.pi * 0.6 * u + ph2)
            angle = 0.4 * math.sin(2 * math.pi * 0.5 * u + ph2)
            _lay(img, photo, cx * FRAME_W + dx, cy * FRAME_H + dy, angle)
        noise = self.noise[int(self.rng.integers(len(self.noise)))]
        return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _lay(frame: np.ndarray, photo: np.ndarray, cx: float, cy: float, angle: float) -> None:
    """Draw ``photo`` centred at (cx, cy), turned by ``angle`` degrees, into ``frame``."""
    h, w = photo.shape[:2]
    fh, fw = frame.shape[:2]
    cx = min(max(cx, w / 2 + 3), fw - w / 2 - 3)
    cy = min(max(cy, h / 2 + 3), fh - h / 2 - 3)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    half = 0.5 * (abs(m[0, 0]) * w + abs(m[0, 1]) * h), 0.5 * (abs(m[1, 0]) * w + abs(m[1, 1]) * h)
    x0, y0 = max(0, int(cx - half[0]) - 1), max(0, int(cy - half[1]) - 1)
    x1, y1 = min(fw, int(cx + half[0]) + 2), min(fh, int(cy + half[1]) + 2)
    m[0, 2] += cx - w / 2 - x0
    m[1, 2] += cy - h / 2 - y0
    roi = np.ascontiguousarray(frame[y0:y1, x0:x1])
    cv2.warpAffine(photo, m, (x1 - x0, y1 - y0), dst=roi, flags=cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_TRANSPARENT)  # fmt: skip
    frame[y0:y1, x0:x1] = roi


def _matches(expected: str, rec: ScanEventRecord) -> bool:
    text = rec.text
    if rec.kind == "rejected":
        # the runner logs a rejected code as the repr of its first 80 characters
        return text in (repr(expected[:80]), repr(expected.strip()[:80]))
    plain = unicodedata.normalize("NFC", expected.strip())
    return barcodes.same_text(expected, text) or barcodes.same_text(plain, text)


def station_scans(
    render: Callable[[int], np.ndarray], n_frames: int
) -> tuple[_NullRecorder, list[float], barcodes.ScanWorkerStats]:
    """Frames 0..n_frames-1 through the station's capture loop (``Station.process``: scan
    worker, debounce, classification, session) with the default config and a recorder that
    writes nothing. Returns what was logged, the thread CPU seconds of each decoded frame's
    ``process`` (the sync decode runs in it) and the worker's counters."""
    from station import config as config_mod
    from station.recording.runner import Station

    cfg = config_mod.load(None)
    recorder = _NullRecorder()
    worker = camera_worker(cfg)
    station = Station(cfg, None, recorder, decoder=worker, to_i420=lambda im: im)  # type: ignore[arg-type]
    worker.start()
    wall = datetime(2026, 1, 1, tzinfo=UTC)
    every = cfg.scanner.decode_every
    costs: list[float] = []
    for index in range(n_frames):
        if index % every:
            continue  # the station decodes only every decode_every-th frame; skip rendering
        image = render(index)
        t = index / FPS
        # CPU time of this thread (the sync decode runs here): other jobs on the machine
        # do not inflate it as they would wall time
        t0 = time.thread_time()
        station.process(Frame(image=image, t=t, wall=wall + timedelta(seconds=t), index=index))
        costs.append(time.thread_time() - t0)
    worker.stop()
    for ev in worker.poll(math.inf):
        station._handle_input(ev)
    return recorder, costs, worker.stats()


def loop_scene_cost(seconds: float) -> None:
    """Decode CPU on bench/loop.py's busy scene (two boxes and two hands always moving, an
    order sheet, a waybill and a seal card in view two thirds of the time), 720p30."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loop import scenario

    cam = SyntheticCamera(FRAME_W, FRAME_H, FPS, scenario(seconds), realtime=False)
    cam.start()
    n_frames = round(seconds * FPS)
    recorder, costs, stats = station_scans(lambda i: cam.render(i / FPS), n_frames)
    per_frame = sum(costs) / n_frames * 1e3
    esc_s = getattr(stats, "escalation_seconds", 0.0)  # 0 for trees without the escalator
    print(f"\nloop.py scene, {seconds:g} s at {FRAME_W}x{FRAME_H}@{FPS:g}: decode CPU "
          f"{per_frame:.2f} ms per video frame (mean), median {statistics.median(costs) * 1e3:.2f}"
          f" ms per decoded frame; {len(recorder.starts)} clips started; of the mean, "
          f"background escalation {esc_s / n_frames * 1e3:.2f} ms")  # fmt: skip


def showings(data: Path, limit: int | None, seed: int) -> dict[str, object]:
    """Show every photo to the station's scan path as described above; per showing, count the
    scan events the session logs while the photo lies there."""

    rows = load_manifest(data)
    if limit is not None:
        rows = rows[:: max(1, len(rows) // limit)][:limit]
    shows = schedule(rows, seed)
    video = ShowingsVideo(shows, seed)
    n_frames = round(video.end * FPS)
    started = time.perf_counter()
    recorder, costs, stats = station_scans(video.frame, n_frames)
    elapsed = time.perf_counter() - started
    # scan events per showing
    per_show: dict[int, list[ScanEventRecord]] = defaultdict(list)
    outside: list[tuple[float, ScanEventRecord]] = []
    for t, rec in recorder.events:
        i = int((t - 1.0) // (SHOW_S + GAP_S))
        if 0 <= i < len(shows) and shows[i].start <= t < shows[i].start + SHOW_S + 0.05:
            per_show[i].append(rec)
        else:
            outside.append((t, rec))
    read: Counter[str] = Counter()
    total: Counter[str] = Counter()
    misread: Counter[str] = Counter()
    events_n: Counter[str] = Counter()
    for i, sh in enumerate(shows):
        total[sh.symbology] += 1
        recs = per_show.get(i, [])
        events_n[sh.symbology] += len(recs)
        ok = False
        for rec in recs:
            if _matches(sh.expected, rec):
                ok = True
            elif any(_matches(x, rec) for x in ALSO_ON_PHOTO.get(sh.path.name, ())):
                pass
            elif any(_matches(x, rec) for x in DISPUTED.get(sh.path.name, ())):
                print(f"  disputed (not counted): {sh.path.name} read {rec.text!r}")
            else:
                misread[sh.symbology] += 1
                print(f"  misread: {sh.path.name} showed {sh.expected!r}, "
                      f"read {rec.kind} {rec.text!r}")  # fmt: skip
        read[sh.symbology] += ok
        if not ok:
            print(f"  not read: {sh.path.name} ({sh.symbology})")
    for t, rec in outside:
        misread["(no photo)"] += 1
        print(f"  read with no photo in view at t={t:.2f}: {rec.kind} {rec.text!r}")
    hours = video.end / 3600
    return {
        "shows": shows,
        "read": read,
        "total": total,
        "misread": misread,
        "events": events_n,
        "hours": hours,
        "frames": n_frames,
        "decode_s": sum(costs),
        "decoded": stats.decoded,
        "elapsed_s": elapsed,
        "orders": len(recorder.starts),
        "median_ms": statistics.median(costs) * 1e3 if costs else 0.0,
        "escalations": stats.escalations,
        "escalation_s": stats.escalation_seconds,
    }


def camera_worker(cfg) -> barcodes.ScanWorker:
    """The station's camera scan worker for a file replay (sync), built as service.assemble does."""
    factory = getattr(barcodes, "camera_scan_worker", None)
    if factory is not None:
        return factory(cfg, sync=True)
    every = cfg.scanner.full_decode_every_s
    if cfg.codes.debounce_s > 0:
        every = min(every, cfg.codes.debounce_s / 2)
    return barcodes.ScanWorker(barcodes.BarcodeDecoder(), sync=True, gate=ChangeGate(every))


def stills(rows: list[tuple[Path, str, str]]) -> tuple[Counter[str], Counter[str]]:
    """`packcam decode` on each photo: reads and misreads per symbology."""
    decoder = barcodes.BarcodeDecoder()
    read: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for path, sym, expected in rows:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        texts = [d.text for d in decoder.decode(image)]
        allowed = (expected, *ALSO_ON_PHOTO.get(path.name, ()), *DISPUTED.get(path.name, ()))
        read[sym] += any(barcodes.same_text(expected, x) for x in texts)
        for x in texts:
            if not any(barcodes.same_text(a, x) for a in allowed):
                wrong[sym] += 1
                print(f"  stills misread: {path.name}: expected {expected!r}, read {x!r}")
    return read, wrong


def showings_report(data: Path, limit: int | None, seed: int) -> None:
    r = showings(data, limit, seed)
    rows = [(s.path, s.symbology, s.expected) for s in r["shows"]]
    still_read, still_wrong = stills(rows)
    total, read, misread = r["total"], r["read"], r["misread"]
    hours = r["hours"]
    print(f"\nshowings on {data}: {len(rows)} photos, each {SHOW_S:g} s in a {FRAME_W}x{FRAME_H}"
          f"@{FPS:g} table video + {GAP_S:g} s gap ({hours * 60:.1f} min of video)")  # fmt: skip
    header = (f"{'symbology':11s} {'n':>4s} {'read':>7s} {'misreads':>9s} {'per hour':>9s}"
              f" {'events/show':>12s} {'stills':>7s} {'stills misreads':>16s}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for sym in [*sorted(total), "all"]:
        pick = list(total) if sym == "all" else [sym]
        n = sum(total[s] for s in pick)
        h = sum(read[s] for s in pick)
        m = sum(misread[s] for s in pick) + (misread["(no photo)"] if sym == "all" else 0)
        ev = sum(r["events"][s] for s in pick)
        sr = sum(still_read[s] for s in pick)
        sw = sum(still_wrong[s] for s in pick)
        print(f"{sym:11s} {n:4d} {100 * h / n:6.1f}% {m:9d} {m / hours:9.1f} {ev / n:12.2f}"
              f" {100 * sr / n:6.1f}% {sw:16d}")  # fmt: skip
    per_frame = r["decode_s"] / r["frames"] * 1e3
    print(f"decode CPU: {per_frame:.2f} ms per video frame (mean; {r['decoded']} decodes, "
          f"every {r['frames'] // max(1, r['decoded'])}rd frame), median {r['median_ms']:.2f} "
          f"ms per decode; orders started: {r['orders']}; {r['elapsed_s']:.0f} s")  # fmt: skip
    esc_s = r["escalation_s"]
    print(f"of which background escalation: {r['escalations']} jobs, {esc_s:.1f} s CPU "
          f"({esc_s / r['frames'] * 1e3:.2f} ms per video frame); frame loop alone "
          f"{(r['decode_s'] - esc_s) / r['frames'] * 1e3:.2f} ms per video frame")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, help="folder with manifest.csv (default: shared set)")
    default_budget = barcodes.BarcodeDecoder().frame_budget_ms
    ap.add_argument(
        "--budget", type=float, default=default_budget, help="live-path budget in estimated ms"
    )
    ap.add_argument("--repeats", type=int, default=5, help="frames timed per frame size")
    ap.add_argument("--frames-only", action="store_true", help="skip the accuracy table")
    ap.add_argument(
        "--showings",
        action="store_true",
        help="only the showings table: each photo 1 s in a 720p30 table video, through the station",
    )
    ap.add_argument(
        "--quick", type=int, metavar="N", help="showings: only N photos (spread over the set)"
    )
    ap.add_argument("--seed", type=int, default=16, help="showings: order and poses")
    ap.add_argument(
        "--loop-scene",
        type=float,
        metavar="SECONDS",
        help="only the decode cost on bench/loop.py's busy scene, this long",
    )
    args = ap.parse_args(argv)
    if args.loop_scene:
        loop_scene_cost(args.loop_scene)
        return 0
    if not args.frames_only:
        candidates = [args.data] if args.data else DEFAULT_DATA
        data = next((d for d in candidates if (d / "manifest.csv").is_file()), None)
        if data is None:
            tried = ", ".join(str(d) for d in candidates)
            print(f"no barcode data set (manifest.csv) found in: {tried}", file=sys.stderr)
            print("pass --data DIR or --frames-only", file=sys.stderr)
            return 2
        if args.showings:
            showings_report(data, args.quick, args.seed)
            return 0
        accuracy(data, args.budget)
    frame_costs(args.budget, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
