"""Barcode accuracy and cost: zbar, zxing-cpp, either, the packcam pipeline and its live path.

"live" decodes each photo alone within the live budget; "in-frame" pastes it into a 1280x720
frame of the synthetic packing table and decodes the whole frame (the station without the
change gate); "gated" shows the station's ScanWorker the empty table, then the table with the
photo, through the change gate (the station as it runs).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

# run from a checkout without installing: `.venv/bin/python bench/decode_accuracy.py`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from station import barcodes
from station.changegate import ChangeGate
from station.frames import Frame
from station.synthetic import Scenario, SyntheticCamera

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = [REPO.parent / "shared/data/barcodes", Path("/work/shared/data/barcodes")]
METHODS = ("zbar", "zxing", "either", "pipeline", "live", "in-frame", "gated")
FRAME_W, FRAME_H = 1280, 720


def load_manifest(data: Path) -> list[tuple[Path, str, str]]:
    """(image path, symbology, expected text) per row; texts are exact (CR LF and all)."""
    with open(data / "manifest.csv", newline="", encoding="utf-8") as f:
        return [(data / r["file"], r["symbology"], r["expected_text"]) for r in csv.DictReader(f)]


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
    worker.submit(Frame(image=frame, t=0.1, wall=wall, index=3))
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
        t_pipe = (time.perf_counter() - t0) * 1e3
        texts["pipeline"] = [d.text for d in result.detections]
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, help="folder with manifest.csv (default: shared set)")
    default_budget = barcodes.BarcodeDecoder().frame_budget_ms
    ap.add_argument(
        "--budget", type=float, default=default_budget, help="live-path budget in estimated ms"
    )
    ap.add_argument("--repeats", type=int, default=5, help="frames timed per frame size")
    ap.add_argument("--frames-only", action="store_true", help="skip the accuracy table")
    args = ap.parse_args(argv)
    if not args.frames_only:
        candidates = [args.data] if args.data else DEFAULT_DATA
        data = next((d for d in candidates if (d / "manifest.csv").is_file()), None)
        if data is None:
            tried = ", ".join(str(d) for d in candidates)
            print(f"no barcode data set (manifest.csv) found in: {tried}", file=sys.stderr)
            print("pass --data DIR or --frames-only", file=sys.stderr)
            return 2
        accuracy(data, args.budget)
    frame_costs(args.budget, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
