"""The capture loop's alarms with slow fsyncs: its waits at a camera's loss and return.

Runs the real station (synthetic camera at 160x96, 10 fps, not paced, so no frame is dropped
by a stall: the waits are timed instead) on one order whose camera fails twice, for 0.2 s
each, in a fresh child process per delay (``--fsync-delay-ms``), with every fsync and
fdatasync of that process, Python's and SQLite's, made that much slower first by
``bench/loop.py``'s LD_PRELOAD library and counted by thread and file. Prints, per delay,
each "camera-lost" raise and clear the capture thread made and how long it took, and the
index syncs by thread (the capture thread should make none: docs/performance.md). The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import loop  # bench/loop.py: the LD_PRELOAD library and its counts

from station import config as config_mod
from station.capture.synthetic import Scenario, SyntheticCamera
from station.runtime.faults import FlakyCamera, Outage
from station.service import assemble


def child(data: Path) -> dict[str, Any]:
    """One run on ``data``, in this process (started with the library preloaded)."""
    loop.note_thread_names()
    cfg = config_mod.load(None).with_data_dir(data).replace("proof", enabled=False)
    cfg = cfg.replace("camera", width=160, height=96, fps=10.0, read_timeout_s=0.5)
    cfg = cfg.replace("scanner", camera_decode=False).replace("session", pre_roll_s=0.5)
    scenario = Scenario.from_dict({"seed": 2, "event": [
        {"at": 0.5, "kind": "key", "text": "PO-CAM"},
        {"at": 6.0, "kind": "key", "text": "SEAL"},
        {"at": 7.0, "kind": "end"},
    ]})  # fmt: skip
    outages = [Outage(30, 2), Outage(45, 2)]  # reads 30-31 and 45-46 fail
    cam = FlakyCamera(SyntheticCamera(160, 96, 10.0, scenario, realtime=False), outages)
    asm = assemble(cfg, camera=cam, live_view=False)
    assert asm.alarms is not None
    calls: list[tuple[str, str, float]] = []  # (raise_ | clear, kind, ms) on the capture thread
    for name in ("raise_", "clear"):
        real = getattr(asm.alarms, name)

        def timed(*a: Any, _real: Any = real, _name: str = name, **kw: Any) -> None:
            t0 = time.perf_counter()
            _real(*a, **kw)
            if threading.current_thread().name == "capture":
                calls.append((_name, a[0], (time.perf_counter() - t0) * 1000))

        setattr(asm.alarms, name, timed)
    capture = threading.Thread(target=asm.station.run, args=(threading.Event(),), name="capture")
    capture.start()
    capture.join()
    losses = asm.station.stats.camera_losses
    asm.close()  # before counting: the close's syncs ("index-sync" among them) are in
    syncs = loop.sync_counts(os.environ.get("LD_PRELOAD"))
    return {"camera_losses": losses, "alarm_calls": calls, "syncs": syncs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--fsync-delay-ms",
        type=loop.delay_list,
        default=[0.0, 200.0],
        help="comma-separated delays added to every fsync and fdatasync (default 0,200)",
    )
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    results = {}
    with tempfile.TemporaryDirectory(prefix="packcam-bench-") as tmp:
        lib = loop.build_slowsync(Path(tmp))
        for delay in args.fsync_delay_ms:
            env = {**os.environ, "LD_PRELOAD": str(lib), "SLOWSYNC_MS": f"{delay:g}"}
            cmd = [sys.executable, __file__, "--child", str(Path(tmp) / f"data-{delay:g}")]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[f"{delay:g}"] = r
            on_capture = sum(
                n for th, f, n in r["syncs"] if th == "capture" and loop.is_sqlite_file(f)
            )
            print(f"fsync delay {delay:g} ms: {r['camera_losses']} camera losses, "
                  f"{on_capture} SQLite syncs on the capture thread")  # fmt: skip
            for name, kind, ms in r["alarm_calls"]:
                print(f"  capture thread {name}({kind!r}): {ms:.1f} ms")
            for thread, name, n in sorted(r["syncs"]):
                if loop.is_sqlite_file(name):
                    print(f"  {thread:<16} {name:<22} {n} syncs")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
