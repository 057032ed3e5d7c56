"""Scan-to-screen latency: a keystroke scan through the station and site until Chromium shows it.

Runs, side by side in one process and one run:
  * station: the real capture loop (realtime synthetic camera, libx264 writer, recorder, live
    view, proof off) with a keyboard-like scan source; order / waybill / seal scans every
    ``--every`` seconds. Measured per scan: the keystroke -> the screen file
    (``<data>/screen/<station>.json``) replaced -> the kiosk page (the real site on 127.0.0.1,
    headless Chromium) has rendered it (the page's ``data-rendered-at``);
  * floor: a second screen file on the same site fed events directly, with no station (what
    the site's file watch, the SSE stream and the page cost for any change), interleaved with
    the scans and shown in a second kiosk page of the same browser.
Chromium is Debian's (``--chromium``); browsers are never downloaded. Prints a table and the
ratio; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.feedback import TimedScanner, ms, report  # noqa: E402
from station import config as config_mod  # noqa: E402
from station.capture.synthetic import Scenario, SyntheticCamera  # noqa: E402
from station.floor.events import EventKind, StationEvent  # noqa: E402
from station.floor.screen import ScreenFeed, screen_path  # noqa: E402
from station.service import assemble  # noqa: E402
from web import cli  # noqa: E402

BUDGET_MS = 300.0
FLOOR_STATION = "bench-floor"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
# Every render of the page, logged with what it showed (the observer runs after render()).
RENDER_LOG = """() => {
  window.__renders = [];
  const root = document.getElementById('screen');
  const text = (id) => document.getElementById(id).textContent;
  new MutationObserver(() => window.__renders.push({
    at: Number(root.dataset.renderedAt), seq: Number(root.dataset.seq),
    state: root.dataset.state, order: text('order'), waybills: text('waybills'),
    last: text('last-clip')})).observe(root, {attributes: true,
    attributeFilter: ['data-rendered-at']});
}"""


Write = tuple[float, dict[str, Any]]


def time_writes(feed: ScreenFeed) -> list[Write]:
    """Log (wall time once the file is replaced, the document) of each write of ``feed``."""
    writes: list[Write] = []
    write: Callable[[], None] = feed.write

    def timed() -> None:
        write()
        done = time.time()
        # Only this thread replaces the file: what it holds now is what was just written.
        writes.append((done, json.loads(feed.path.read_text(encoding="utf-8"))))

    feed.write = timed  # type: ignore[method-assign]
    return writes


def first_write(
    writes: list[Write], after: float, shows: Callable[[dict[str, Any]], bool]
) -> Write:
    return next((w, d) for w, d in writes if w >= after and shows(d))


def shows(kind: str, text: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a screen document shows the scan of ``text`` (an order, waybill or seal)."""
    if kind == "order":
        return lambda d: bool(d["order_id"] == text)
    if kind == "waybill":
        return lambda d: text in d["waybills"]
    return lambda d: d["state"] == "sealed" and (d["last_clip"] or {}).get("order_id") == text


def render_at(renders: list[dict[str, Any]], seq: int) -> float:
    """When the page first showed document ``seq`` (or a later one: the site's file watch
    sends the newest version, so two writes close together are shown once)."""
    return float(min(r["at"] for r in renders if r["seq"] >= seq)) / 1000


def kiosk(browser: Any, url: str) -> Any:
    page = browser.new_context(locale="en-US").new_page()
    page.goto(url)
    page.wait_for_function("() => document.getElementById('screen').dataset.seq !== '-1'")
    page.evaluate(RENDER_LOG)
    return page


def run(args: argparse.Namespace, data: Path, browser: Any) -> dict[str, float]:
    cfg = config_mod.load(None).with_data_dir(data)
    cfg = cfg.replace("camera", width=args.width, height=args.height, fps=args.fps)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    cam = SyntheticCamera(
        args.width, args.height, args.fps, Scenario.from_dict({"seed": 1}), realtime=True
    )
    asm = assemble(cfg, camera=cam, live_view=True)
    assert asm.events is not None
    feed = next(x for x in asm.events.listeners if isinstance(x, ScreenFeed))
    writes = time_writes(feed)
    floor_feed = ScreenFeed(data, FLOOR_STATION)
    floor_writes = time_writes(floor_feed)
    scanner = TimedScanner()
    asm.station.scan_sources.append(scanner)
    stop = threading.Event()
    runner = threading.Thread(target=asm.station.run, args=(stop,), name="capture")
    runner.start()
    server = cli.make_server(cfg, "127.0.0.1", 0)
    web_stop = threading.Event()
    web = threading.Thread(target=cli.run_server, args=(server,), kwargs={"stop": web_stop})
    web.start()
    scans: list[tuple[str, str, float]] = []
    floor_events: list[tuple[str, float]] = []
    try:
        url = cli.server_url(server).rstrip("/")
        key = screen_path(data, cfg.station.name).stem
        floor_key = screen_path(data, FLOOR_STATION).stem
        while not screen_path(data, cfg.station.name).is_file():
            time.sleep(0.05)
        station_page = kiosk(browser, f"{url}/screen/{key}")
        floor_page = kiosk(browser, f"{url}/screen/{floor_key}")
        time.sleep(args.every)  # a pre-roll's worth of frames first
        for i in range(args.orders):
            order = f"PO-BENCH-{i:04d}"
            for kind, text in (
                ("order", order),
                ("waybill", f"SF{1000000000000 + i}"),
                ("seal", "SEAL"),
            ):
                typed = time.time()  # the keystroke on the browser's clock (wall)
                scanner.type(text)
                scans.append((kind, order if kind == "seal" else text, typed))
                time.sleep(args.every / 2)
                floor_order = f"PO-FLOOR-{len(floor_events):04d}"
                floor_events.append((floor_order, time.time()))
                floor_feed.on_event(
                    StationEvent(
                        EventKind.ORDER_STARTED, FLOOR_STATION, time.monotonic(), floor_order
                    )
                )
                time.sleep(args.every / 2)
        renders = station_page.evaluate("() => window.__renders")
        floor_renders = floor_page.evaluate("() => window.__renders")
    finally:
        web_stop.set()
        stop.set()
        runner.join()
        asm.close()
        floor_feed.close()
        web.join(15)

    key_to_file: list[float] = []
    file_to_page: list[float] = []
    total: list[float] = []
    seal_total: list[float] = []
    for kind, text, typed in scans:
        written, doc = first_write(writes, typed, shows(kind, text))
        shown = render_at(renders, doc["seq"])
        file_to_page.append(shown - written)
        if kind == "seal":
            seal_total.append(shown - typed)
        else:
            key_to_file.append(written - typed)
            total.append(shown - typed)
    floor_file: list[float] = []
    floor_page_ms: list[float] = []
    floor_total: list[float] = []
    for floor_order, sent in floor_events:
        written, doc = first_write(floor_writes, sent, shows("order", floor_order))
        shown = render_at(floor_renders, doc["seq"])
        floor_file.append(written - sent)
        floor_page_ms.append(shown - written)
        floor_total.append(shown - sent)
    return {
        "scan_to_file_ms": ms(key_to_file),
        "file_to_page_ms": ms(file_to_page),
        "scan_to_screen_ms": ms(total),
        "scan_to_screen_max_ms": max(total) * 1000,
        "seal_scan_to_screen_ms": ms(seal_total),
        "seal_scan_to_screen_max_ms": max(seal_total) * 1000,
        "floor_event_to_file_ms": ms(floor_file),
        "floor_file_to_page_ms": ms(floor_page_ms),
        "floor_event_to_screen_ms": ms(floor_total),
        "floor_event_to_screen_max_ms": max(floor_total) * 1000,
        "n": len(scans),
        "n_floor": len(floor_events),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=10)
    p.add_argument("--every", type=float, default=1.0, help="seconds between scans")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    args = p.parse_args()
    if not args.chromium.is_file():
        raise SystemExit(f"{args.chromium} is missing: apt install chromium (never downloaded)")
    with (
        tempfile.TemporaryDirectory(prefix="packcam-bench-screen-") as tmp,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=str(args.chromium), args=CHROMIUM_ARGS)
        try:
            res: dict[str, float] = run(args, Path(tmp), browser)
        finally:
            browser.close()
    floor = res["floor_event_to_screen_ms"]
    report(
        res,
        f"{args.width}x{args.height}@{args.fps:g}, live view on, {res['n']} scans, medians (ms):",
        [
            ("keystroke -> screen file (station)", res["scan_to_file_ms"], None),
            ("screen file -> page rendered (site, page)", res["file_to_page_ms"], None),
            (
                "scan -> screen (order, waybill)",
                res["scan_to_screen_ms"],
                res["scan_to_screen_max_ms"],
            ),
            (
                "seal scan -> sealed shown (clip hashed)",
                res["seal_scan_to_screen_ms"],
                res["seal_scan_to_screen_max_ms"],
            ),
            ("floor: event -> screen file", res["floor_event_to_file_ms"], None),
            ("floor: screen file -> page rendered", res["floor_file_to_page_ms"], None),
            ("floor: event -> screen (no station)", floor, res["floor_event_to_screen_max_ms"]),
        ],
        width=44,
        ratio="scan->screen",
        measure="scan_to_screen_ms",
        floor=floor,
        budget_ms=BUDGET_MS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
