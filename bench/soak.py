"""Soak test: the real station on the synthetic camera for N minutes under random faults.

The parent process runs the station as a child process (``soak.py child``) again and again on
one data directory, each run with a new script of scans (orders, seals, pedal presses, garbage
input), and ends each run at a random moment: mostly SIGKILL, sometimes SIGTERM. Inside the
child the camera drops out at random (frames stall, the device cannot be reopened: the
station's reconnect backoff runs) and the disk is a small virtual one (``VirtualDisk``: the
data dir's real files plus random "someone filled the disk" windows), so retention deletes
old clips and, when it may not, the station refuses new ones and alarms.

At the end: one ``packcam recover``, the proof audit, a decode of every kept clip, and the
tally: orders, clips started / indexed / interrupted / deleted by retention / quarantined,
clips lost (must be 0: every clip the station started is indexed or quarantined), refusals,
camera losses, kills, and the child's memory growth per hour (RSS sampled every 5 s; slope
of a least-squares line per run after a warm-up). The last line is one JSON object.

    python bench/soak.py --minutes 30            # the recorded run (docs/reliability.md)
    python bench/soak.py --minutes 2 --keep DIR  # a quick look, data kept in DIR
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STATION = "soak"
GARBAGE = [
    "\x00\x01\x02",
    "A" * 300,
    "\x1b[31mRED",
    "\tSEAL\t",
    "订单\u200b\u202e",
    "DROP TABLE clips;--",
]


# ---- the child: one station run ---------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    import logging

    from station import config as config_mod
    from station.backends import build_camera
    from station.runtime.faults import FlakyCamera, Outage, VirtualDisk, random_outages
    from station.service import run_station

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = config_mod.load(args.config)
    rng = random.Random(args.seed)
    horizon = 3600.0
    outages = random_outages(rng, horizon, args.camera_every, (1.0, 12.0))
    # "Someone fills the disk": each window takes 35-85 % of it; retention deletes what it
    # may, and when that is not enough the station refuses new clips until the window ends.
    pressure = [
        (o, int(rng.uniform(0.35, 0.85) * (args.disk_mb << 20)))
        for o in random_outages(rng, horizon, args.pressure_every, (20.0, 90.0))
    ]

    def eat(t: float) -> int:
        return next((n for o, n in pressure if o.covers(t)), 0)

    cam = FlakyCamera(
        build_camera(cfg, realtime=True), [Outage(o.start, o.length) for o in outages]
    )
    probe = VirtualDisk(cfg.station.data_dir, args.disk_mb << 20, eat)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_station(cfg, stop, camera=cam, probe=probe)
    return 0


# ---- the parent -------------------------------------------------------------------------------


def write_scenario(path: Path, run: int, rng: random.Random, seconds: float) -> None:
    """Orders every 4-14 s: sealed by card, by pedal, by the next order, or by the timeout."""
    lines = [f"seed = {run}"]

    def key(at: float, text: str) -> None:
        lines.append(f'[[event]]\nat = {at:.2f}\nkind = "key"\ntext = {json.dumps(text)}')

    t, n = rng.uniform(0.5, 3), 0
    while t < seconds:
        key(t, f"SOAK{run:03d}-{n:04d}")
        n += 1
        dur = rng.uniform(3, 12)
        r = rng.random()
        if r < 0.5:
            key(t + dur, "SEAL")
        elif r < 0.7:
            lines.append(f'[[event]]\nat = {t + dur:.2f}\nkind = "pedal"')
        elif r < 0.8:
            key(t + dur / 2, f"SF{rng.randrange(10**12, 10**13)}")  # a waybill; the next ends it
        if rng.random() < 0.15:
            key(t + rng.uniform(0.5, dur), rng.choice(GARBAGE))
        t += dur + rng.uniform(1, 4)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_config(path: Path, data: Path, scenario: Path, a: argparse.Namespace) -> None:
    path.write_text(
        f"""[station]
name = "{STATION}"
data_dir = "{data}"
[camera]
backend = "synthetic"
width = {a.width}
height = {a.height}
fps = {a.fps}
scenario = "{scenario}"
read_timeout_s = 2.0
[scanner]
camera_decode = false
[session]
pre_roll_s = 2.0
max_duration_s = 60
[retention]
min_age_days = {a.min_age_s / 86400!r}
free_floor_mb = {a.floor_mb}
check_every_s = 10
""",
        encoding="utf-8",
    )


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def slope_mb_per_h(samples: list[tuple[float, int]]) -> float | None:
    if len(samples) < 10:
        return None
    ts = [t for t, _ in samples]
    ms = [kb / 1024 for _, kb in samples]
    mt, mm = statistics.fmean(ts), statistics.fmean(ms)
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return None
    return sum((t - mt) * (m - mm) for t, m in zip(ts, ms, strict=True)) / var * 3600


def run_parent(a: argparse.Namespace) -> dict:
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="packcam-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    rng = random.Random(a.seed)
    deadline = time.monotonic() + a.minutes * 60
    runs: list[dict] = []
    run = 0
    while time.monotonic() < deadline:
        left = deadline - time.monotonic()
        life = min(left, rng.uniform(a.min_life, a.max_life))
        scen, cfgp, logp = (
            work / f"scenario{run}.toml",
            work / f"station{run}.toml",
            work / f"run{run}.log",
        )
        write_scenario(scen, run, rng, life + 30)
        write_config(cfgp, data, scen, a)
        with logp.open("wb") as log_file:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "child",
                    "--config",
                    str(cfgp),
                    "--seed",
                    str(run),
                    "--disk-mb",
                    str(a.disk_mb),
                    "--camera-every",
                    str(a.camera_every),
                    "--pressure-every",
                    str(a.pressure_every),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            t0 = time.monotonic()
            samples: list[tuple[float, int]] = []
            while time.monotonic() - t0 < life and proc.poll() is None:
                kb = rss_kb(proc.pid)
                if kb:
                    samples.append((time.monotonic() - t0, kb))
                time.sleep(5)
            graceful = time.monotonic() >= deadline or rng.random() < a.term_share
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        warm = [s for s in samples if s[0] >= a.warmup]
        runs.append(
            {
                "run": run,
                "seconds": round(time.monotonic() - t0, 1),
                "end": "term" if graceful else "kill",
                "rc": rc,
                "rss_mb_first": round(warm[0][1] / 1024, 1) if warm else None,
                "rss_mb_last": round(warm[-1][1] / 1024, 1) if warm else None,
                "rss_slope_mb_per_h": slope_mb_per_h(warm),
            }
        )
        print(f"run {run}: {runs[-1]}", flush=True)
        run += 1
    return tally(a, work, data, runs)


def tally(a: argparse.Namespace, work: Path, data: Path, runs: list[dict]) -> dict:
    import av

    from station import config as config_mod
    from station.proof.verify import audit
    from station.store.ledger import Ledger

    rec = subprocess.run(
        [sys.executable, "-m", "station", "recover", "--data", str(data)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    logs = "".join(p.read_text(errors="replace") for p in sorted(work.glob("run*.log")))
    started = set(re.findall(r"recording order '.*?' -> (\S+)\.mp4", logs))
    orders = set(re.findall(r"scan '(SOAK[^']*)' \(order\)", logs))
    cfg = config_mod.load(work / "station0.toml")
    led = Ledger.in_data_dir(data)
    try:
        rows = led.stored_clips(include_deleted=True)
        records = {c.path: c for c in led.clips()}
        refused = [e for e in led.unattached_events() if e.kind == "refused"]
        rejected = led.conn.execute(
            "SELECT COUNT(*) FROM scan_events WHERE kind = 'rejected'"
        ).fetchone()[0]
    finally:
        led.close()
    stems = {re.sub(r"-\d+$", "", Path(c.path).stem) for c in rows}
    quarantine = data / "quarantine"
    quarantined = {p.stem for p in quarantine.glob("*.mp4")} if quarantine.exists() else set()
    lost = sorted(started - stems - quarantined)
    kept = [c for c in rows if c.deleted_utc is None]
    bad_play = []
    for c in kept:
        try:
            with av.open(str(data / c.path)) as box:
                n = sum(1 for _ in box.decode(box.streams.video[0]))
        except Exception as exc:  # report, do not stop the tally
            bad_play.append(f"{c.path}: {exc}")
            continue
        if n != records[c.path].frame_count:
            bad_play.append(f"{c.path}: {n} of {records[c.path].frame_count} frames")
    report = audit(cfg, check_timestamps=False)
    reasons: dict[str, int] = {}
    for c in records.values():
        reasons[c.finish_reason] = reasons.get(c.finish_reason, 0) + 1
    slopes = [
        r["rss_slope_mb_per_h"]
        for r in runs
        if r["rss_slope_mb_per_h"] is not None and r["seconds"] >= a.warmup + 120
    ]
    longest = max(runs, key=lambda r: r["seconds"]) if runs else {}
    result = {
        "minutes": a.minutes,
        "runs": len(runs),
        "kills": sum(r["end"] == "kill" for r in runs),
        "terms": sum(r["end"] == "term" for r in runs),
        "orders_scanned": len(orders),
        "clips_started": len(started),
        "clips_indexed": len(rows),
        "clips_kept": len(kept),
        "deleted_by_retention": len(rows) - len(kept),
        "quarantined": len(quarantined),
        "clips_lost": len(lost),
        "lost": lost[:20],
        "finish_reasons": reasons,
        "refused_disk_full": len(refused),
        "rejected_scans": rejected,
        "camera_losses": logs.count("ERROR station.recording.runner: camera lost:"),
        "recover_rc": rec.returncode,
        "audit_ok": report.ok,
        "audit_failures": [c.reason for c in report.failures][:10],
        "clips_not_playing": bad_play[:10],
        "rss_slope_mb_per_h_median": round(statistics.median(slopes), 2) if slopes else None,
        "rss_slope_mb_per_h_max": round(max(slopes), 2) if slopes else None,
        "longest_run": longest,
        "work": str(work),
    }
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="mode")
    c = sub.add_parser("child")
    c.add_argument("--config", required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--disk-mb", type=int, default=120)
    c.add_argument("--camera-every", type=float, default=120.0)
    c.add_argument("--pressure-every", type=float, default=240.0)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--disk-mb", type=int, default=120, help="virtual disk size")
    p.add_argument("--floor-mb", type=int, default=12, help="retention.free_floor_mb")
    p.add_argument("--min-age-s", type=float, default=180.0, help="retention.min_age_days, in s")
    p.add_argument("--camera-every", type=float, default=120.0, help="mean s between dropouts")
    p.add_argument("--pressure-every", type=float, default=240.0, help="mean s between fills")
    p.add_argument("--min-life", type=float, default=60.0, help="shortest station run, s")
    p.add_argument("--max-life", type=float, default=300.0, help="longest station run, s")
    p.add_argument("--term-share", type=float, default=0.25, help="share of runs ended by TERM")
    p.add_argument("--warmup", type=float, default=30.0, help="s before RSS counts")
    p.add_argument("--keep", metavar="DIR", help="work directory (default: a new temp dir)")
    a = p.parse_args()
    if a.mode == "child":
        return child(a)
    os.nice(5)  # a shared box: the soak should not starve interactive work
    result = run_parent(a)
    print()
    for k, v in result.items():
        print(f"{k:28} {v}")
    print(json.dumps(result))
    return 0 if result["clips_lost"] == 0 and result["audit_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
