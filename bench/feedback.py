"""Scan-to-sound latency: a keystroke scan through the real station until ALSA has the sound.

Runs, side by side in one process and one run:
  * station: the real capture loop (realtime synthetic camera, libx264 writer, recorder,
    proof off) with a keyboard-like scan source; order / waybill / seal scans every
    ``--every`` seconds; each sound played by ``aplay -v -D null``. Measured per scan: the
    keystroke -> the event emitted on the capture thread -> the feedback thread asks the sink
    -> aplay has opened the PCM and is about to write (its ``-v`` report on stderr);
  * floor: the same aplay started directly, with no station (what any sound costs here).
The ``null`` device accepts samples at once, so "PCM opened" is the moment a real card would
start its (short, default) buffer. Prints a table and the ratio; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from station import config as config_mod  # noqa: E402
from station.capture.frames import InputEvent, RawScan  # noqa: E402
from station.capture.scanner import EventQueue  # noqa: E402
from station.capture.synthetic import Scenario, SyntheticCamera  # noqa: E402
from station.floor.events import EventKind, StationEvent  # noqa: E402
from station.floor.feedback import EVENT_SOUNDS, Feedback, prepare_sounds  # noqa: E402
from station.service import assemble  # noqa: E402

BUDGET_MS = 150.0


class TimedScanner:
    """A keyboard-like scan source: ``type`` queues a scan stamped with the keystroke time."""

    def __init__(self) -> None:
        self.queue = EventQueue("bench")
        self.typed: dict[str, float] = {}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def type(self, text: str) -> None:
        t = time.monotonic()
        self.typed[text] = t
        self.queue.put(RawScan(text, "keyboard", t))

    def poll(self, now: float) -> list[InputEvent]:
        return self.queue.drain()


class AplayVerbose:
    """Plays with ``aplay -v``; records when aplay reports the PCM set up (first stderr line)."""

    def __init__(self, device: str) -> None:
        self.argv = [shutil.which("aplay") or "aplay", "-v", "-D", device]
        self.asked: list[float] = []
        self.opened: list[float] = []
        self._threads: list[threading.Thread] = []

    def play(self, name: str, path: Path) -> None:
        self.asked.append(time.monotonic())
        proc = subprocess.Popen(
            [*self.argv, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

        def watch() -> None:
            assert proc.stderr is not None
            proc.stderr.readline()
            self.opened.append(time.monotonic())
            proc.communicate()

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        self._threads.append(th)

    def close(self) -> None:
        for th in self._threads:
            th.join(timeout=5)


class EmitTimes:
    def __init__(self) -> None:
        self.at: list[tuple[EventKind, float]] = []

    def on_event(self, event: StationEvent) -> None:
        self.at.append((event.kind, time.monotonic()))


def ms(xs: list[float]) -> float:
    """The median of ``xs`` (seconds) in milliseconds; NaN for none."""
    return statistics.median(xs) * 1000 if xs else float("nan")


def report(
    res: dict[str, float],
    heading: str,
    rows: Sequence[tuple[str, float, float | None]],
    *,
    width: int,
    ratio: str,
    measure: str,
    floor: float,
    budget_ms: float,
) -> None:
    """Print a latency bench's result: ``heading``, a row per (label, median ms, max ms or
    None), ``res[measure]`` over the ``floor`` (named ``ratio``) against ``budget_ms``; then
    ``res``, with the budget and that ratio added, as the last line (JSON)."""
    res["budget_ms"] = budget_ms
    res["ratio_to_floor"] = res[measure] / floor if floor else float("nan")
    print(heading)
    for label, median, most in rows:
        row = f"  {label:{width}s} {median:8.1f}"
        print(row if most is None else f"{row}   max {most:.1f}")
    print(
        f"  {ratio} / floor = {res['ratio_to_floor']:.1f}x; budget {budget_ms:.0f} ms: "
        f"{'met' if res[measure] <= budget_ms else 'NOT met'}"
    )
    print(json.dumps(res))


def run_station(args: argparse.Namespace, data: Path) -> dict[str, float]:
    cfg = config_mod.load(None).with_data_dir(data)
    cfg = cfg.replace("camera", width=args.width, height=args.height, fps=args.fps)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    cfg = cfg.replace("session", pre_roll_s=3.0)
    cam = SyntheticCamera(
        args.width, args.height, args.fps, Scenario.from_dict({"seed": 1}), realtime=True
    )
    asm = assemble(cfg, camera=cam, live_view=False)
    scanner = TimedScanner()
    asm.station.scan_sources.append(scanner)
    sink = AplayVerbose(args.device)
    emits = EmitTimes()
    assert asm.events is not None
    asm.events.add(emits)
    asm.events.add(Feedback(sink, prepare_sounds(data / "sounds")))
    stop = threading.Event()
    runner = threading.Thread(target=asm.station.run, args=(stop,), name="capture")
    runner.start()
    typed: list[float] = []
    time.sleep(args.every)  # a pre-roll's worth of frames first
    for i in range(args.orders):
        for text in (f"PO-BENCH-{i:04d}", f"SF{1000000000000 + i}", "SEAL"):
            scanner.type(text)
            typed.append(scanner.typed[text])
            time.sleep(args.every)
    stop.set()
    runner.join()
    asm.close()
    sink.close()
    sounded = [
        k
        for k, _ in emits.at
        if k in (EventKind.ORDER_STARTED, EventKind.WAYBILL_LINKED, EventKind.CLIP_SEALED)
    ]
    if len(sounded) < len(typed) or len(sink.opened) < len(typed):
        raise SystemExit(
            f"only {len(sounded)} events / {len(sink.opened)} sounds for {len(typed)} scans"
        )
    emitted = [t for k, t in emits.at if k in (EventKind.ORDER_STARTED, EventKind.WAYBILL_LINKED)]
    # The seal's sound comes when the clip is sealed (finished, hashed, indexed): its own row.
    order_waybill = [i for i in range(len(typed)) if i % 3 != 2]
    seal = [i for i in range(len(typed)) if i % 3 == 2]
    asked = sorted(sink.asked)
    with_sound = [t for k, t in emits.at if k in EVENT_SOUNDS]
    opened = sorted(sink.opened)
    return {
        "scan_to_emit_ms": ms([e - typed[i] for e, i in zip(emitted, order_waybill, strict=True)]),
        "emit_to_sink_ms": ms([a - e for a, e in zip(asked, with_sound, strict=True)]),
        "sink_to_pcm_ms": ms([o - a for o, a in zip(opened, asked, strict=True)]),
        "scan_to_sound_ms": ms([opened[i] - typed[i] for i in order_waybill]),
        "seal_scan_to_sound_ms": ms([opened[i] - typed[i] for i in seal]),
        "seal_scan_to_sound_max_ms": max(opened[i] - typed[i] for i in seal) * 1000,
        "scan_to_sound_max_ms": max(opened[i] - typed[i] for i in order_waybill) * 1000,
        "n": len(typed),
    }


def run_floor(args: argparse.Namespace, data: Path) -> float:
    sounds = prepare_sounds(data / "sounds-floor")
    sink = AplayVerbose(args.device)
    for _ in range(args.orders * 3):
        sink.play("order-started", sounds["order-started"])
        time.sleep(0.2)
    sink.close()
    return ms([o - a for o, a in zip(sorted(sink.opened), sorted(sink.asked), strict=True)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=10)
    p.add_argument("--every", type=float, default=1.5, help="seconds between scans")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--device", default="null", help="ALSA device for aplay (null: no card)")
    args = p.parse_args()
    if shutil.which("aplay") is None:
        raise SystemExit("aplay (alsa-utils) is needed: apt install alsa-utils")
    with tempfile.TemporaryDirectory(prefix="packcam-bench-feedback-") as tmp:
        st = run_station(args, Path(tmp))
        floor = run_floor(args, Path(tmp))
    report(
        {**st, "floor_aplay_ms": floor},
        f"{args.width}x{args.height}@{args.fps:g}, {st['n']} scans, medians (ms):",
        [
            ("keystroke -> event (capture loop)", st["scan_to_emit_ms"], None),
            ("event -> sink (feedback thread)", st["emit_to_sink_ms"], None),
            ("sink -> aplay PCM open", st["sink_to_pcm_ms"], None),
            ("scan -> sound (order, waybill)", st["scan_to_sound_ms"], st["scan_to_sound_max_ms"]),
            (
                "seal scan -> sealed sound (clip hashed)",
                st["seal_scan_to_sound_ms"],
                st["seal_scan_to_sound_max_ms"],
            ),
            ("floor: aplay alone", floor, None),
        ],
        width=40,
        ratio="scan->sound",
        measure="scan_to_sound_ms",
        floor=floor,
        budget_ms=BUDGET_MS,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
