"""Capture-loop benchmark: packcam's real loop vs the naive loop other packing recorders use.

Runs, side by side in one run:
  * packcam: the real station (synthetic camera paced at 30 fps, threaded barcode worker on
    every Nth frame, cached overlay, I420 conversion, the always-running encoder with its
    encoded pre-roll ring, clip muxer, recorder, proof finalizer) at 1280x720 and 1920x1080,
    with an order / waybill / seal card shown every 6 s, each in a fresh child process so its
    peak RSS (VmHWM) is the station's alone; once more at 1080p with pre_roll_s = 30 (RSS),
    with an I420 camera at both sizes, and at 1080p with the old encoder queue (15 frames) and
    with glibc's malloc settings of MALLOC_ENV (memory, one lever at a time); frames dropped
    overall and in the first second after each clip's scan;
  * with --fsync-delay-ms instead: only the 720p packcam row, once per delay (and --repeat
    times, medians), every fsync and fdatasync in the station's child process made that much
    slower first (an SD card busy with the video): Python's os.fsync and SQLite's own syncs
    alike, through a small LD_PRELOAD library built with the C compiler into a temporary
    folder for the run; frames dropped overall, in the first second after each clip's scan
    and after each clip's stop, the longest gap between consecutive frames in any clip
    (camera time), and the syncs on the capture thread and on the others, SQLite's counted
    apart, with ratios to the 0 ms row;
  * with --writer-hold-ms instead: the same 720p packcam row once per hold (and --repeat times,
    medians), another process meanwhile holding a write transaction on the station's index
    (BEGIN IMMEDIATE, one alarm row written, that many ms, COMMIT; again after
    --writer-gap-ms), as a big retention pass or another writer would, and with
    --writer-checkpoint a WAL checkpoint (RESTART or TRUNCATE) after each of its commits; the
    same columns, plus the longest wait of the capture thread in SQLite (its index calls);
  * naive: pyzbar on every full frame + cv2.putText + cv2.VideoWriter(mp4v), as fast as it
    can go, on the same synthetic frames;
  * floor: the same frames through I420 conversion and libx264 only (no barcode reading, no
    overlay): what any H.264 recorder pays, the least packcam could cost;
and, as a check of the scene, pyzbar's cost per megapixel on the real photos of
../shared/data/barcodes (at their own size) next to its cost on the synthetic frames.
Prints a table and ratios; the last line is one JSON object (see README / docs/performance.md).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import dataclasses
import functools
import itertools
import json
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from station import config as config_mod  # noqa: E402
from station.capture.barcodes import BarcodeDecoder  # noqa: E402
from station.capture.frames import RawScan  # noqa: E402
from station.capture.synthetic import Scenario, SyntheticCamera  # noqa: E402
from station.service import assemble  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SHARED_PHOTOS = REPO.parent / "shared/data/barcodes"
CYCLE = 6.0  # seconds per order in the bench scenario
PRODUCT_EAN = "6901234567892"  # a Chinese product's EAN-13 (prefix 69): an item, never an order


def ratio_to(x: float, b: float, *, zero: str) -> str:
    """``x`` against the baseline ``b`` ("1.00x" when both are 0; ``zero`` names the baseline
    row where only it is 0)."""
    return f"{x / b:.2f}x" if b else ("1.00x" if not x else f"+{x:g} ({zero}: 0)")


def scenario(seconds: float) -> Scenario:
    events = []
    n = int((seconds - 1.0) // CYCLE)
    for i in range(n):
        t0 = 0.5 + i * CYCLE
        events += [
            {"at": t0, "kind": "show", "code": f"PO-BENCH-{i:04d}", "duration": 1.6},
            {
                "at": t0 + 2.0,
                "kind": "show",
                "code": f"SF{1000000000000 + i}",
                "symbology": "code128",
                "duration": 1.6,
            },
            {"at": t0 + 4.0, "kind": "show", "code": "SEAL", "duration": 1.4},
            # a product scanned by hand between two orders (no clip open): indexed on its own
            {"at": t0 + 5.6, "kind": "key", "text": PRODUCT_EAN},
        ]
    events.append({"at": seconds, "kind": "end"})
    return Scenario.from_dict({"seed": 11, "event": events})


def thread_cpu() -> dict[int, float]:
    """CPU seconds (user+system) of every thread of this process, by native thread id."""
    out: dict[int, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue
    return out


def peak_rss_mb(field: str = "VmHWM") -> float:
    """This process's peak resident set (VmHWM; or VmRSS / RssAnon now), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


# glibc settings tried for the station (docs/performance.md): frames of a few MB always
# mmapped and given back when freed, two malloc arenas for all threads instead of one per
# thread. Measured here: they save little once the scene's temporaries are trimmed, and the
# page faults of mmapping every frame cost CPU, so the service unit does not set them; one
# row runs with them for comparison.
MALLOC_ENV = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}


# The LD_PRELOAD library of --fsync-delay-ms: every fsync and fdatasync of the process sleeps
# SLOWSYNC_MS first (SQLite's syncs are C calls a Python patch of os.fsync never sees), and is
# counted by thread id and file name; slowsync_report() lists them.
SLOWSYNC_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ROWS 1024
static struct { long tid; char file[96]; long calls; } rows[ROWS];
static int nrows;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static int slow(int fd, const char *name) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
    const char *ms = getenv("SLOWSYNC_MS");
    double d = ms ? atof(ms) : 0.0;
    if (d > 0) {
        struct timespec ts = {(time_t)(d / 1000), (long)((d - 1000 * (time_t)(d / 1000)) * 1e6)};
        while (nanosleep(&ts, &ts) != 0) {}
    }
    char link[64], path[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    path[n > 0 ? n : 0] = 0;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    long tid = syscall(SYS_gettid);
    pthread_mutex_lock(&mu);
    int i = 0;
    while (i < nrows && !(rows[i].tid == tid && !strncmp(rows[i].file, base, 95))) i++;
    if (i < ROWS) {
        if (i == nrows) {
            rows[i].tid = tid;
            strncpy(rows[i].file, base, 95);
            nrows++;
        }
        rows[i].calls++;
    }
    pthread_mutex_unlock(&mu);
    return real(fd);
}

int fsync(int fd) { return slow(fd, "fsync"); }
int fdatasync(int fd) { return slow(fd, "fdatasync"); }

/* "tid<TAB>calls<TAB>file" lines into buf; returns the length it needs */
size_t slowsync_report(char *buf, size_t size) {
    size_t used = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < nrows; i++) {
        char line[160];
        int k = snprintf(line, sizeof line, "%ld\t%ld\t%s\n", rows[i].tid, rows[i].calls,
                         rows[i].file);
        if (used + k < size) memcpy(buf + used, line, k);
        used += k;
    }
    pthread_mutex_unlock(&mu);
    if (used < size) buf[used] = 0;
    return used;
}
"""


def build_slowsync(folder: Path) -> Path:
    """Compile SLOWSYNC_C into ``folder`` (removed by the caller); SystemExit without a C
    compiler: the sweep cannot slow SQLite's syncs without it."""
    import shutil

    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("--fsync-delay-ms needs a C compiler (cc or gcc) to slow SQLite's syncs")
    src, lib = folder / "slowsync.c", folder / "slowsync.so"
    src.write_text(SLOWSYNC_C)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src), "-ldl",
                    "-lpthread"], check=True)  # fmt: skip
    return lib


# thread names by native id, noted as each thread starts (child processes of the sweep)
THREAD_NAMES: dict[int, str] = {}
SLOWSYNC_LIB: str | None = None  # the LD_PRELOAD library loaded in this child, if any


def note_thread_names() -> None:
    """Note each thread's name by its native id as it starts: the LD_PRELOAD library knows
    only thread ids, and a thread may be gone by the time the syncs are counted."""
    THREAD_NAMES[threading.get_native_id()] = threading.current_thread().name

    def first_call(_frame, _event, _arg):  # type: ignore[no-untyped-def]
        THREAD_NAMES[threading.get_native_id()] = threading.current_thread().name
        sys.setprofile(None)

    threading.setprofile(first_call)


def is_sqlite_file(name: str) -> bool:
    return ".sqlite3" in name  # index.sqlite3, index.sqlite3-wal, webhooks.sqlite3 ...


def sync_counts(lib: str | None) -> list[tuple[str, str, int]]:
    """(thread name, file name, calls) of every fsync/fdatasync the library counted."""
    if not lib:
        return []
    report = ctypes.CDLL(lib).slowsync_report  # the library already loaded: its counts
    report.restype = ctypes.c_size_t
    buf = ctypes.create_string_buffer(1 << 16)
    need = report(buf, len(buf))
    if need >= len(buf):
        buf = ctypes.create_string_buffer(need + 1)
        report(buf, len(buf))
    out = []
    for line in buf.value.decode(errors="replace").splitlines():
        tid, calls, name = line.split("\t", 2)
        out.append((THREAD_NAMES.get(int(tid), f"tid {tid}"), name, int(calls)))
    return out


class DropLog:
    """Wraps the camera: notes (camera time, wall time, dropped so far) at every read."""

    def __init__(self, cam: SyntheticCamera) -> None:
        self.cam = cam
        self.log: list[tuple[float, int]] = []
        self.walls: list[datetime] = []
        self.indices: list[int] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.cam, name)

    def read(self, timeout: float = 2.0):  # type: ignore[no-untyped-def]
        frame = self.cam.read(timeout)
        if frame is not None:
            self.log.append((frame.t, self.cam.dropped))
            self.walls.append(frame.wall)
            self.indices.append(frame.index)
        return frame

    def dropped_between(self, t0: float, t1: float) -> int:
        """Frames due at camera times in [t0, t1] (up to the last frame read) never read.
        Counted by frame index, not from ``dropped`` at the reads inside the window: a stall
        of a second or more has no read inside it, yet dropped every frame of it."""
        if not self.log:
            return 0
        fps, origin = self.cam.fps, self.cam.origin
        last = min(t1, self.log[-1][0])
        due = range(
            math.ceil((t0 - origin) * fps - 1e-6), math.floor((last - origin) * fps + 1e-6) + 1
        )
        return len(set(due) - set(self.indices))

    def longest_gap(self, first: datetime, last: datetime) -> float:
        """The longest camera-time step between consecutive frames read with a wall time in
        [first, last] (a clip's span), in seconds; 0 with fewer than two frames."""
        ts = [t for (t, _d), w in zip(self.log, self.walls, strict=True) if first <= w <= last]
        return max((b - a for a, b in itertools.pairwise(ts)), default=0.0)


@dataclasses.dataclass(frozen=True)
class WriterLoad:
    """Another process writing the station's index (--writer-hold-ms): it holds a write
    transaction ``hold_ms`` (BEGIN IMMEDIATE, one row of its own written, then it sleeps),
    commits, runs ``checkpoint`` ("" none, else PRAGMA wal_checkpoint(RESTART|TRUNCATE)),
    waits ``gap_ms`` and starts again, for the whole run."""

    hold_ms: float
    gap_ms: float
    checkpoint: str = ""


def start_holder(index: Path, load: WriterLoad) -> subprocess.Popen[str]:
    """The other writer of ``load`` on ``index``, in a process of its own (the web site, a
    retention pass run by hand, ``packcam`` commands: not the station's threads). It inherits
    the slowed syncs of --fsync-delay-ms, as a process on the same SD card would. Returns once
    it holds the file open; ``stop_holder`` ends it."""
    env = dict(os.environ)
    if SLOWSYNC_LIB:
        env["LD_PRELOAD"] = SLOWSYNC_LIB
    cmd = [sys.executable, __file__, "--hold-index", str(index), "--writer-hold-ms",
           f"{load.hold_ms:g}", "--writer-gap-ms", f"{load.gap_ms:g}"]  # fmt: skip
    if load.checkpoint:
        cmd += ["--writer-checkpoint", load.checkpoint]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready"
    return proc


def stop_holder(proc: subprocess.Popen[str]) -> dict:
    """End the holder (its stdin closed: it commits what it holds and exits); its counts."""
    out, _ = proc.communicate(timeout=60)
    return json.loads(out.strip().splitlines()[-1])


def hold_index(index: Path, load: WriterLoad) -> int:
    """The holder's loop (``start_holder``), until its stdin closes."""
    stop = threading.Event()

    def wait_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_eof, daemon=True).start()
    conn = sqlite3.connect(str(index), timeout=30, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")  # as the station's other connections
    holds = checkpoints = 0
    print("ready", flush=True)
    while not stop.is_set():
        conn.execute("BEGIN IMMEDIATE")
        now = datetime.now().isoformat()
        # a page of its own dirtied, so the commit writes the WAL and a checkpoint has work
        conn.execute(
            "INSERT INTO alarms(kind, subject, message, first_utc, last_utc)"
            " VALUES ('bench-writer', 'bench', 'held', ?, ?) ON CONFLICT(kind, subject)"
            " DO UPDATE SET count = count + 1, last_utc = excluded.last_utc",
            (now, now),
        )
        stop.wait(load.hold_ms / 1000)
        conn.execute("COMMIT")
        holds += 1
        if load.checkpoint:
            conn.execute(f"PRAGMA wal_checkpoint({load.checkpoint.upper()})").fetchall()
            checkpoints += 1
        stop.wait(load.gap_ms / 1000)
    conn.close()
    print(json.dumps({"holds": holds, "checkpoints": checkpoints}), flush=True)
    return 0


def _timed_on_capture(fn: Callable, spent: list[float]) -> Callable:  # type: ignore[type-arg]
    """``fn`` timed into ``spent`` when the capture thread calls it."""

    def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
        if threading.current_thread().name != "capture":
            return fn(*args, **kwargs)
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    return timed


def run_packcam(
    width: int,
    height: int,
    seconds: float,
    data: Path,
    decode_every: int | None = None,
    pre_roll_s: float = 3.0,
    pixel_format: str = "bgr",
    queue_frames: int | None = None,
    writer: WriterLoad | None = None,
) -> dict:
    import station.recording.stream

    if queue_frames is not None:
        station.recording.stream.ENCODER_QUEUE_FRAMES = queue_frames
    rss_imports = peak_rss_mb("VmRSS")
    cfg = config_mod.load(None).with_data_dir(data)
    cfg = cfg.replace("camera", width=width, height=height, fps=30.0, pixel_format=pixel_format)
    cfg = cfg.replace("session", pre_roll_s=pre_roll_s)
    if decode_every is not None:
        cfg = cfg.replace("scanner", decode_every=decode_every)
    cam = SyntheticCamera(
        width, height, 30.0, scenario(seconds), realtime=True, pixel_format=pixel_format
    )
    # The synthetic camera pre-renders its scene (a real camera has no such cost). Building it
    # leaves ~40 MB of freed int16 temporaries in the heap at 1080p, which glibc keeps: hand
    # them back, then measure the scene apart, so the station's own share can be told.
    ctypes.CDLL(None).malloc_trim(0)
    rss_camera = peak_rss_mb("VmRSS") - rss_imports
    drops = DropLog(cam)
    asm = assemble(cfg, camera=drops, live_view=True)  # type: ignore[arg-type]
    st = asm.station
    scan_times: list[float] = []
    stop_times: list[float] = []
    orig_do = st._do

    def do(action):  # type: ignore[no-untyped-def]  # when each clip's order was scanned
        if type(action).__name__ == "StartClip":
            scan_times.append(action.t)
        elif type(action).__name__ == "StopClip":
            stop_times.append(action.t)
        return orig_do(action)

    st._do = do  # type: ignore[method-assign]
    sightings: list[tuple[float, RawScan]] = []
    orig = st._handle_input

    def spy(ev):  # record when each scan reaches the session
        if isinstance(ev, RawScan):
            sightings.append((time.monotonic(), ev))
        return orig(ev)

    st._handle_input = spy  # type: ignore[method-assign]
    log_event_s: list[float] = []  # each Recorder.log_event on the capture thread, seconds
    outside_times: list[float] = []  # camera times of the scans indexed with no clip open
    orig_log = asm.recorder.log_event

    def timed_log(event, t_scan, *, in_clip=True):  # type: ignore[no-untyped-def]
        if not (in_clip and asm.recorder.recording):
            outside_times.append(t_scan)
        t = time.perf_counter()
        try:
            return orig_log(event, t_scan, in_clip=in_clip)
        finally:
            log_event_s.append(time.perf_counter() - t)

    asm.recorder.log_event = timed_log  # type: ignore[method-assign]
    # every call the capture thread makes into the index: its scans' and alarms' writes, the
    # duplicate check's read (a wait in SQLite there is a wait of the capture loop)
    sqlite_s: list[float] = []
    for obj, names in ((asm.ledger, ("log_events", "order_clip_refs", "raise_alarm",
                                     "clear_alarm")),):  # fmt: skip
        for name in names:
            setattr(obj, name, _timed_on_capture(getattr(obj, name), sqlite_s))
    holder = start_holder(data / "index.sqlite3", writer) if writer is not None else None
    cpu0, wall0 = time.process_time(), time.monotonic()
    capture_tid: list[int] = []
    before = thread_cpu()

    def target() -> None:
        capture_tid.append(threading.get_native_id())
        st.run(threading.Event())

    th = threading.Thread(target=target, name="capture")
    th.start()
    # Sample per-thread CPU just before the capture thread ends (threads vanish after).
    worker_cpu = 0.0
    anon_peak = 0.0  # anonymous memory (heap, frames, encoder), sampled: VmHWM has no split
    while th.is_alive():
        th.join(0.1)
        anon_peak = max(anon_peak, peak_rss_mb("RssAnon"))
        now = thread_cpu()
        for t in threading.enumerate():
            if t.name == "scan-worker" and t.native_id in now:
                worker_cpu = now[t.native_id] - before.get(t.native_id, 0.0)
        if capture_tid and capture_tid[0] in now:
            capture_cpu = now[capture_tid[0]] - before.get(capture_tid[0], 0.0)
    wall = time.monotonic() - wall0
    cpu = time.process_time() - cpu0
    held = stop_holder(holder) if holder is not None else {}
    stats = st.stats
    frames = stats.frames
    gate = st.decoder.stats() if st.decoder is not None else None
    clips = asm.ledger.clips()
    unattached = len(asm.ledger.unattached_events())  # scans indexed with no clip open
    asm.close()
    syncs = sync_counts(SLOWSYNC_LIB)
    peak = peak_rss_mb()  # before the latency check below renders a second scene
    # Scan-to-recognition latency: from the first frame in which the card is readable (found by
    # decoding the scene's own frames at every frame time after it appears) to the moment its
    # scan reached the session.
    decoder = BarcodeDecoder()
    probe = SyntheticCamera(width, height, 30.0, scenario(seconds), realtime=False)
    readable: dict[str, list[float]] = {}
    for e in probe.scenario.events():
        if e.kind != "show":
            continue
        for k in range(int(e.duration * 30)):
            s = e.at + k / 30
            if any(d.text == e.code for d in decoder.decode_frame(probe.render(s))):
                readable.setdefault(e.code, []).append(cam.origin + s)
                break
    lat = []
    seen: set[tuple[str, float]] = set()
    for when, ev in sightings:
        for r in readable.get(ev.text, []):
            if r - 0.5 <= ev.t <= r + 2.0 and (ev.text, r) not in seen:
                seen.add((ev.text, r))
                lat.append((when - r) * 1000)
    edges = sorted([*scan_times, *stop_times, *outside_times])

    def second(t: float) -> float:
        """The end of the 1 s window after the edge at ``t``: cut short by the next edge (a
        scan between two orders falls within a second of the stop before it)."""
        return min([t + 1.0, *(e - 1e-6 for e in edges if e > t)])

    mb = sum(c.size for c in clips) / 1e6
    minutes = sum(c.duration_s for c in clips) / 60
    encode_cpu = max(0.0, cpu - capture_cpu - worker_cpu)
    per = 1000 / max(frames, 1)
    return {
        "res": f"{width}x{height}",
        "pixel_format": pixel_format,
        "pre_roll_s": pre_roll_s,
        "queue_frames": station.recording.stream.ENCODER_QUEUE_FRAMES,
        "malloc_env": all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()),
        "peak_rss_mb": peak,
        "rss_imports_mb": rss_imports,
        "rss_camera_mb": rss_camera,
        "peak_anon_mb": anon_peak,
        # frames the camera dropped in the first second after each clip's scan (where the
        # raw ring's burst used to be)
        "dropped_first_s": sum(drops.dropped_between(t, second(t)) for t in scan_times),
        # ... and in the second after each clip's stop (its durable journal write)
        "dropped_after_stop": sum(drops.dropped_between(t, second(t)) for t in stop_times),
        # ... and in the second after each scan indexed with no clip open (its index write)
        "dropped_after_outside": sum(drops.dropped_between(t, second(t)) for t in outside_times),
        # the longest step between consecutive frames inside any clip, camera time
        "max_gap_ms": 1000
        * max((drops.longest_gap(c.started_at, c.ended_at) for c in clips), default=0.0),
        # fsync/fdatasync calls (--fsync-delay-ms only) on the capture thread and the others,
        # all of them and SQLite's apart; (thread, file, calls) for the breakdown
        "fsync_capture": sum(n for th, _f, n in syncs if th == "capture"),
        "fsync_other": sum(n for th, _f, n in syncs if th != "capture"),
        "sqlite_capture": sum(n for th, f, n in syncs if th == "capture" and is_sqlite_file(f)),
        "sqlite_other": sum(n for th, f, n in syncs if th != "capture" and is_sqlite_file(f)),
        "syncs": syncs,
        "events_unattached": unattached,
        "log_event_n": len(log_event_s),
        "log_event_max_ms": 1000 * max(log_event_s, default=0.0),
        # the longest index call on the capture thread (writes, the duplicate check)
        "capture_sqlite_max_ms": 1000 * max(sqlite_s, default=0.0),
        "capture_sqlite_n": len(sqlite_s),
        # what the other writer did (--writer-hold-ms): transactions held, checkpoints run
        "holds": held.get("holds", 0),
        "checkpoints": held.get("checkpoints", 0),
        "fps": frames / wall,
        "frames": frames,
        "dropped": cam.dropped,
        "cpu_ms": cpu * per,
        # The capture thread's CPU less its measured stages: rendering / grabbing the frame.
        "capture_ms": max(
            0.0, capture_cpu - stats.overlay_s - stats.convert_s - stats.record_s - stats.control_s
        )
        * per,
        "decode_ms": worker_cpu * per,
        "overlay_ms": (stats.overlay_s + stats.convert_s) * per,
        "encode_ms": encode_cpu * per,
        "control_ms": (stats.control_s + stats.record_s) * per,
        "latency_ms": statistics.median(lat) if lat else float("nan"),
        "latency_n": len(lat),
        "scans_expected": sum(len(v) for v in readable.values()),
        "clips": len(clips),
        "mb_per_min": mb / minutes if minutes else float("nan"),
        # share of the decoded frames' pixels the change gate let through to the decoder
        "decode_pixels": gate.pixels / max(1, gate.decoded * width * height) if gate else 1.0,
        "decode_unchanged": gate.unchanged if gate else 0,
        "decoded_frames": gate.decoded if gate else 0,
    }


def reference_loop(
    width: int,
    height: int,
    frames: int,
    stages: dict[str, Callable[[np.ndarray, int], object]],
    finish: Callable[[], Path],
) -> dict:
    """Read synthetic frames as fast as they come and run ``stages`` on each, in order
    (``decode`` / ``overlay`` / ``encode``, each given the image and the frame number), timing
    each; ``finish`` closes the output and returns its path. The row for naive and floor."""
    cam = SyntheticCamera(width, height, 30.0, scenario(frames / 30 + 1), realtime=False)
    cam.start()
    spent = dict.fromkeys(("capture", "decode", "overlay", "encode"), 0.0)
    cpu0, wall0 = time.process_time(), time.monotonic()
    n = 0
    while n < frames:
        a = time.perf_counter()
        f = cam.read()
        if f is None:
            break
        spent["capture"] += time.perf_counter() - a
        for name, stage in stages.items():
            a = time.perf_counter()
            stage(f.image, n)
            spent[name] += time.perf_counter() - a
        n += 1
    path = finish()
    cam.stop()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    per = 1000 / max(n, 1)
    return {
        "res": f"{width}x{height}",
        "fps": n / wall,
        "frames": n,
        "cpu_ms": cpu * per,
        **{f"{name}_ms": t * per for name, t in spent.items()},
        "mb_per_min": path.stat().st_size / 1e6 / (n / 30 / 60),
    }


def run_floor(width: int, height: int, frames: int, data: Path) -> dict:
    """Capture, I420 and libx264 (packcam's settings) only, one thread feeding the encoder."""
    import av

    from station.recording.writer import to_i420

    path = data / f"floor_{width}.mp4"
    out = av.open(str(path), "w", format="mp4")
    stream = out.add_stream(
        "libx264",
        rate=30,
        options={"preset": "ultrafast", "tune": "zerolatency", "crf": "23", "threads": "0"},
    )
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.gop_size = 120
    pending: list[av.VideoFrame] = []

    def convert(image: np.ndarray, n: int) -> None:
        vf = av.VideoFrame.from_ndarray(to_i420(image), format="yuv420p")
        vf.pts = n
        pending.append(vf)

    def encode(_image: np.ndarray, _n: int) -> None:
        for packet in stream.encode(pending.pop()):
            out.mux(packet)

    def finish() -> Path:
        for packet in stream.encode():
            out.mux(packet)
        out.close()
        return path

    return reference_loop(width, height, frames, {"overlay": convert, "encode": encode}, finish)


def zbar_on_real_photos(folder: Path) -> dict | None:
    """pyzbar's median CPU per megapixel on the real photos (>= 400x300, own size)."""
    from pyzbar import pyzbar

    if not folder.is_dir():
        return None
    per_mpx = []
    for path in sorted(folder.glob("*/*")):
        if path.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            continue
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None or min(gray.shape) < 300 or max(gray.shape) < 400:
            continue
        runs = []
        for _ in range(3):
            a = time.process_time()
            pyzbar.decode(gray)
            runs.append(time.process_time() - a)
        per_mpx.append(statistics.median(runs) * 1000 / (gray.size / 1e6))
    if not per_mpx:
        return None
    return {"photos": len(per_mpx), "ms_per_mpx": statistics.median(per_mpx)}


def run_naive(width: int, height: int, frames: int, data: Path) -> dict:
    from pyzbar import pyzbar

    path = data / f"naive_{width}.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))

    def finish() -> Path:
        out.release()
        return path

    return reference_loop(
        width,
        height,
        frames,
        {
            "decode": lambda img, _n: pyzbar.decode(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)),
            "overlay": lambda img, _n: cv2.putText(
                img,
                time.strftime("%Y-%m-%d %H:%M:%S") + " station-01 PO-1",
                (20, 40),
                cv2.FONT_HERSHEY_SIMPLEX,
                1.0,
                (255, 255, 255),
                2,
            ),
            "encode": lambda img, _n: out.write(img),
        },
        finish,
    )


def child(
    width: int,
    height: int,
    seconds: float,
    pre_roll_s: float,
    every: int | None,
    fmt: str = "bgr",
    *,
    queue_frames: int | None = None,
    malloc: bool = False,
    fsync_delay_ms: float | None = None,
    slowsync: Path | None = None,
    writer: WriterLoad | None = None,
) -> dict:
    """One packcam run in a fresh process, so its peak RSS is the station's alone.

    ``malloc``: with the service unit's malloc settings (``MALLOC_ENV``); ``queue_frames``:
    the encoder's input queue (None: the station's default); ``fsync_delay_ms`` (with
    ``slowsync``, the library ``build_slowsync`` made): every fsync and fdatasync in that
    process, Python's and SQLite's, sleeps this long first and is counted (None: as they are);
    ``writer``: another process writes the index meanwhile (``WriterLoad``)."""
    cmd = [sys.executable, __file__, "--child", str(width), str(height), str(seconds),
           str(pre_roll_s), fmt] + (["--decode-every", str(every)] if every else [])  # fmt: skip
    if queue_frames is not None:
        cmd += ["--queue-frames", str(queue_frames)]
    if fsync_delay_ms is not None:
        cmd += ["--child-fsync-delay-ms", str(fsync_delay_ms)]
    if writer is not None:
        cmd += ["--writer-hold-ms", f"{writer.hold_ms:g}", "--writer-gap-ms",
                f"{writer.gap_ms:g}", "--child-writer"]  # fmt: skip
        if writer.checkpoint:
            cmd += ["--writer-checkpoint", writer.checkpoint]
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    if malloc:
        env.update(MALLOC_ENV)
    if fsync_delay_ms is not None and slowsync is not None:
        env.update(LD_PRELOAD=str(slowsync), SLOWSYNC_MS=f"{fsync_delay_ms:g}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def delay_list(text: str) -> list[float]:
    """``0,50,200`` -> [0.0, 50.0, 200.0], with 0 first (the baseline of the ratios)."""
    try:
        delays = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of milliseconds: {text!r}") from None
    if any(d < 0 for d in delays):
        raise argparse.ArgumentTypeError("delays must be >= 0")
    return sorted(set(delays) | {0.0})


FSYNC_COLS = ("dropped", "dropped_first_s", "dropped_after_stop", "dropped_after_outside",
              "max_gap_ms", "fps", "fsync_capture", "fsync_other", "sqlite_capture",
              "sqlite_other", "events_unattached", "log_event_max_ms")  # fmt: skip


def sqlite_syncs_by_thread(rows: list[dict]) -> str:
    """``thread: file calls, ...; thread: ...`` of SQLite's syncs summed over ``rows``."""
    per: collections.Counter[tuple[str, str]] = collections.Counter()
    for r in rows:
        for th, name, n in r["syncs"]:
            if is_sqlite_file(name):
                per[th, name] += n
    threads = sorted({th for th, _ in per}, key=lambda th: (th != "capture", th))
    return (
        "; ".join(
            f"{th}: " + ", ".join(f"{name} {n}" for (t, name), n in sorted(per.items()) if t == th)
            for th in threads
        )
        or "none"
    )


def fsync_sweep(delays: list[float], repeat: int, seconds: float, every: int | None) -> int:
    """The 720p packcam row once per delay, ``repeat`` rounds (each round every delay once,
    so the machine's load drifts over all of them alike); prints medians and ratios to 0 ms."""
    runs: dict[float, list[dict]] = {d: [] for d in delays}
    with tempfile.TemporaryDirectory(prefix="packcam-slowsync-") as tmp:
        lib = build_slowsync(Path(tmp))
        for _ in range(repeat):
            for d in delays:
                runs[d].append(child(1280, 720, seconds, 3.0, every, fsync_delay_ms=d,
                                     slowsync=lib))  # fmt: skip
    med = {d: {c: statistics.median(r[c] for r in runs[d]) for c in FSYNC_COLS} for d in delays}
    print(f"720p30, {seconds:g} s per run, {repeat} run(s) per delay, medians; every fsync and "
          f"fdatasync in the station's process (Python's and SQLite's) slowed by the delay "
          f"(x86, simulated: not a Pi)")  # fmt: skip
    print(f"{'fsync_ms':>8} {'frames':>6} {'dropped':>7} {'1st s':>5} {'stop 1s':>7} "
          f"{'scan 1s':>7} {'max_gap_ms':>10} {'fps':>5} {'sync_cap':>8} {'sync_oth':>8} "
          f"{'sql_cap':>7} {'sql_oth':>7} {'scans':>5} {'log_ms':>6}"
          "  dropped per run")  # fmt: skip
    for d in delays:
        m = med[d]
        frames = statistics.median(r["frames"] for r in runs[d])
        print(f"{d:8.0f} {frames:6.0f} {m['dropped']:7.1f} {m['dropped_first_s']:5.1f} "
              f"{m['dropped_after_stop']:7.1f} {m['dropped_after_outside']:7.1f} "
              f"{m['max_gap_ms']:10.1f} {m['fps']:5.1f} {m['fsync_capture']:8.0f} "
              f"{m['fsync_other']:8.0f} {m['sqlite_capture']:7.0f} {m['sqlite_other']:7.0f} "
              f"{m['events_unattached']:5.0f} {m['log_event_max_ms']:6.1f}  "
              f"{[r['dropped'] for r in runs[d]]}")  # fmt: skip
    print(
        "(1st s / stop 1s / scan 1s: frames dropped in the second after each clip's scan, "
        "each clip's stop, each scan indexed with no clip open; sync_*: fsync+fdatasync "
        "calls on the capture thread / the others, sql_*: those on SQLite's files; scans: "
        "scans indexed with no clip open; log_ms: the longest Recorder.log_event)"
    )
    every_run = [r for rs in runs.values() for r in rs]
    print(f"SQLite's syncs by thread and file, all runs: {sqlite_syncs_by_thread(every_run)}")
    base = med[0.0]

    ratio = functools.partial(ratio_to, zero="0 ms")
    print()
    for d in delays[1:]:
        m = med[d]
        print(f"{d:.0f} ms vs 0 ms: dropped {ratio(m['dropped'], base['dropped'])}, "
              f"1st s after scan {ratio(m['dropped_first_s'], base['dropped_first_s'])}, "
              f"1 s after stop {ratio(m['dropped_after_stop'], base['dropped_after_stop'])}, "
              f"1 s after a scan outside a clip "
              f"{ratio(m['dropped_after_outside'], base['dropped_after_outside'])}, "
              f"longest gap in a clip {ratio(m['max_gap_ms'], base['max_gap_ms'])}")  # fmt: skip
    summary: dict[str, object] = {"fsync_runs_per_delay": repeat, "fsync_seconds": seconds}
    for d in delays:
        k = f"{d:g}ms"
        summary[f"dropped_fsync_{k}"] = med[d]["dropped"]
        summary[f"dropped_first_s_fsync_{k}"] = med[d]["dropped_first_s"]
        summary[f"dropped_after_stop_fsync_{k}"] = med[d]["dropped_after_stop"]
        summary[f"dropped_after_outside_scan_fsync_{k}"] = med[d]["dropped_after_outside"]
        summary[f"sqlite_syncs_capture_fsync_{k}"] = med[d]["sqlite_capture"]
        summary[f"max_gap_ms_fsync_{k}"] = round(med[d]["max_gap_ms"], 1)
        if base["max_gap_ms"]:
            summary[f"max_gap_ratio_fsync_{k}"] = round(
                med[d]["max_gap_ms"] / base["max_gap_ms"], 2
            )
    print(json.dumps(summary))
    return 0


WRITER_COLS = ("dropped", "dropped_first_s", "dropped_after_stop", "dropped_after_outside",
               "max_gap_ms", "log_event_max_ms", "capture_sqlite_max_ms", "sqlite_capture",
               "holds", "checkpoints")  # fmt: skip


def writer_sweep(
    holds: list[float],
    gap_ms: float,
    checkpoint: str,
    repeat: int,
    seconds: float,
    every: int | None,
    fsync_delay_ms: float | None,
) -> int:
    """The 720p packcam row once per hold of the other writer (0: no other writer), ``repeat``
    rounds interleaved; prints medians and ratios to the 0 row."""
    runs: dict[float, list[dict]] = {h: [] for h in holds}
    with tempfile.TemporaryDirectory(prefix="packcam-writer-") as tmp:
        lib = build_slowsync(Path(tmp)) if fsync_delay_ms else None
        for _ in range(repeat):
            for h in holds:
                load = WriterLoad(h, gap_ms, checkpoint) if h else None  # 0: none
                runs[h].append(child(1280, 720, seconds, 3.0, every, writer=load,
                                     fsync_delay_ms=fsync_delay_ms if lib else None,
                                     slowsync=lib))  # fmt: skip
    med = {h: {c: statistics.median(r[c] for r in runs[h]) for c in WRITER_COLS} for h in holds}
    other = (f"another process holds a write transaction on the index for the given ms, "
             f"then {gap_ms:g} ms free"
             + (f", a wal_checkpoint({checkpoint.upper()}) after each commit" if checkpoint
                else ""))  # fmt: skip
    print(f"720p30, {seconds:g} s per run, {repeat} run(s) per row, medians; {other}"
          + (f"; every fsync and fdatasync slowed by {fsync_delay_ms:g} ms" if lib else "")
          + " (x86: not a Pi)")  # fmt: skip
    print(f"{'hold_ms':>7} {'frames':>6} {'dropped':>7} {'1st s':>5} {'stop 1s':>7} "
          f"{'scan 1s':>7} {'max_gap_ms':>10} {'log_ms':>7} {'sql_ms':>7} {'sql_cap':>7} "
          f"{'holds':>5} {'ckpts':>5}  dropped per run")  # fmt: skip
    for h in holds:
        m = med[h]
        frames = statistics.median(r["frames"] for r in runs[h])
        print(f"{h:7.0f} {frames:6.0f} {m['dropped']:7.1f} {m['dropped_first_s']:5.1f} "
              f"{m['dropped_after_stop']:7.1f} {m['dropped_after_outside']:7.1f} "
              f"{m['max_gap_ms']:10.1f} {m['log_event_max_ms']:7.1f} "
              f"{m['capture_sqlite_max_ms']:7.1f} {m['sqlite_capture']:7.0f} "
              f"{m['holds']:5.0f} {m['checkpoints']:5.0f}  "
              f"{[r['dropped'] for r in runs[h]]}")  # fmt: skip
    print(
        "(hold_ms 0: no other writer; log_ms: the longest Recorder.log_event; sql_ms: the "
        "longest index call on the capture thread (its writes, the duplicate check); sql_cap: "
        "SQLite's syncs on the capture thread (counted with --fsync-delay-ms only); holds, "
        "ckpts: the other writer's transactions and checkpoints in the run)"
    )
    base = med[holds[0]]

    ratio = functools.partial(ratio_to, zero="0 row")
    print()
    for h in holds[1:]:
        m = med[h]
        print(f"{h:.0f} ms vs {holds[0]:.0f} ms: dropped {ratio(m['dropped'], base['dropped'])}, "
              f"longest gap in a clip {ratio(m['max_gap_ms'], base['max_gap_ms'])}, longest "
              f"index call on the capture thread "
              f"{ratio(m['capture_sqlite_max_ms'], base['capture_sqlite_max_ms'])}")  # fmt: skip
    summary: dict[str, object] = {"writer_runs_per_hold": repeat, "writer_seconds": seconds,
                                  "writer_gap_ms": gap_ms, "writer_checkpoint": checkpoint,
                                  "writer_fsync_delay_ms": fsync_delay_ms or 0}  # fmt: skip
    for h in holds:
        k = f"{h:g}ms"
        summary[f"dropped_hold_{k}"] = med[h]["dropped"]
        summary[f"max_gap_ms_hold_{k}"] = round(med[h]["max_gap_ms"], 1)
        summary[f"capture_sqlite_max_ms_hold_{k}"] = round(med[h]["capture_sqlite_max_ms"], 1)
        summary[f"dropped_per_run_hold_{k}"] = [r["dropped"] for r in runs[h]]
    print(json.dumps(summary))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="short runs: the full bench finishes within 2 minutes; with --fsync-delay-ms, "
        "25 s and one run per delay",
    )
    ap.add_argument(
        "--seconds", type=float, help="packcam run length per row (default 90 s; 25 with --quick)"
    )
    ap.add_argument("--naive-frames", type=int, help="frames for the naive loop per resolution")
    ap.add_argument(
        "--decode-every", type=int, help="override scanner.decode_every (default: the config's)"
    )
    ap.add_argument(
        "--fsync-delay-ms",
        type=delay_list,
        metavar="MS,MS,...",
        help="instead of the full bench: run the 720p packcam row once per delay (0 is always "
        "added: the ratios' baseline) with every fsync and fdatasync of the station's process "
        "(Python's and SQLite's) slowed by that many ms, e.g. 0,50,200,500",
    )
    ap.add_argument(
        "--writer-hold-ms",
        type=delay_list,
        metavar="MS,MS,...",
        help="instead of the full bench: run the 720p packcam row once per hold (0, always "
        "added, is the baseline: no other writer) while another process holds a write "
        "transaction on the station's index that long, again and again (a big retention pass, "
        "the web site, a packcam command), e.g. 0,500,2000; with --fsync-delay-ms MS (one "
        "delay) every sync of both processes is slowed too",
    )
    ap.add_argument(
        "--writer-gap-ms",
        type=float,
        default=250.0,
        help="with --writer-hold-ms: ms between the other writer's transactions (default 250)",
    )
    ap.add_argument(
        "--writer-checkpoint",
        choices=("restart", "truncate"),
        default="",
        help="with --writer-hold-ms: the other writer runs PRAGMA wal_checkpoint(RESTART or "
        "TRUNCATE) after each commit, so the next write restarts the WAL (and syncs its header)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        help="with --fsync-delay-ms or --writer-hold-ms: runs per row, interleaved, medians "
        "reported (default 3; 1 with --quick)",
    )
    ap.add_argument("--queue-frames", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-fsync-delay-ms", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--child-writer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--hold-index", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=5, metavar=("W", "H", "SECONDS", "PRE_ROLL", "FORMAT"),
                    help=argparse.SUPPRESS)  # fmt: skip
    args = ap.parse_args()
    if args.hold_index:
        hold = max(args.writer_hold_ms or [0.0])
        return hold_index(args.hold_index, WriterLoad(hold, args.writer_gap_ms,
                                                      args.writer_checkpoint))  # fmt: skip
    if args.child:
        import logging

        logging.basicConfig(level=logging.ERROR)
        w, h = int(args.child[0]), int(args.child[1])
        secs, pre, fmt = float(args.child[2]), float(args.child[3]), args.child[4]
        global SLOWSYNC_LIB
        if args.child_fsync_delay_ms is not None:
            SLOWSYNC_LIB = os.environ.pop("LD_PRELOAD", None)  # loaded; not for our children
            note_thread_names()
        with tempfile.TemporaryDirectory(prefix="packcam-bench-") as tmp:
            load = None
            if args.child_writer:
                load = WriterLoad(max(args.writer_hold_ms), args.writer_gap_ms,
                                  args.writer_checkpoint)  # fmt: skip
            row = run_packcam(w, h, secs, Path(tmp), args.decode_every, pre, fmt,
                              args.queue_frames, load)  # fmt: skip
            print(json.dumps(row))
        return 0
    seconds = args.seconds or (25.0 if args.quick else 90.0)
    naive_frames = args.naive_frames or (90 if args.quick else 300)
    import logging

    logging.basicConfig(level=logging.ERROR)
    if args.writer_hold_ms:
        delays = [d for d in args.fsync_delay_ms or [] if d]
        if len(delays) > 1:
            raise SystemExit("--writer-hold-ms takes one --fsync-delay-ms at most")
        return writer_sweep(args.writer_hold_ms, args.writer_gap_ms, args.writer_checkpoint,
                            args.repeat or (1 if args.quick else 3), seconds,
                            args.decode_every, delays[0] if delays else None)  # fmt: skip
    if args.fsync_delay_ms:
        return fsync_sweep(args.fsync_delay_ms, args.repeat or (1 if args.quick else 3),
                           seconds, args.decode_every)  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="packcam-bench-") as tmp:
        for w, h in ((1280, 720), (1920, 1080)):
            rows.append(("packcam", child(w, h, seconds, 3.0, args.decode_every)))
            nd = Path(tmp) / f"n{w}"
            nd.mkdir()
            rows.append(("naive", run_naive(w, h, naive_frames, nd)))
            rows.append(("floor", run_floor(w, h, naive_frames, nd)))
        # Memory with the longest pre-roll the config allows: run long enough to fill it.
        long_pre = child(1920, 1080, max(seconds, 45.0), 30.0, args.decode_every)
        # A camera that gives I420 (picamera2): no BGR frame in the station at all.
        yuv = [child(w, h, seconds, 3.0, args.decode_every, "i420")
               for w, h in ((1280, 720), (1920, 1080))]  # fmt: skip
        # Memory, one lever at a time, at 1080p: the encoder's input queue as it was (0.5 s =
        # 15 frames); the glibc settings of MALLOC_ENV.
        mem = [child(1920, 1080, seconds, 3.0, args.decode_every, queue_frames=15),
               child(1920, 1080, seconds, 3.0, args.decode_every, malloc=True)]  # fmt: skip
    cols = ["fps", "cpu_ms", "capture_ms", "decode_ms", "overlay_ms", "encode_ms", "mb_per_min"]
    head = (f"{'loop':8} {'res':10} {'frames':>6} {'dropped':>7} {'1st s':>5} {'rss_mb':>6} "
            f"{'anon_mb':>7} {'scene_mb':>8} {'queue':>5} {'malloc':>6} ")  # fmt: skip
    print(head + " ".join(f"{c:>10}" for c in cols) + f" {'latency_ms':>10}")
    named = [*rows, ("pre30", long_pre), ("i420", yuv[0]), ("i420", yuv[1]),
             ("queue15", mem[0]), ("malloc", mem[1])]  # fmt: skip
    for name, r in named:
        print(f"{name:8} {r['res']:10} {r['frames']:6d} {r.get('dropped', '-')!s:>7} "
              f"{r.get('dropped_first_s', '-')!s:>5} {r.get('peak_rss_mb', float('nan')):6.0f} "
              f"{r.get('peak_anon_mb', float('nan')):7.0f} "
              f"{r.get('rss_camera_mb', float('nan')):8.0f} {r.get('queue_frames', '-')!s:>5} "
              f"{'-' if 'malloc_env' not in r else 'yes' if r['malloc_env'] else 'no':>6} "
              + " ".join(f"{r[c]:10.1f}" for c in cols)
              + f" {r.get('latency_ms', float('nan')):10.0f}")  # fmt: skip
    p720, n720, f720, p1080, n1080, f1080 = (r for _, r in rows)
    print()
    print(f"CPU per frame vs floor: 720p {p720['cpu_ms'] / f720['cpu_ms']:.3f}x, "
          f"1080p {p1080['cpu_ms'] / f1080['cpu_ms']:.3f}x (target <= 1.5x)")  # fmt: skip
    print(f"peak RSS of the station: 1080p pre-roll 3 s {p1080['peak_rss_mb']:.0f} MB "
          f"(target <= 150), pre-roll 30 s {long_pre['peak_rss_mb']:.0f} MB (target <= 250); "
          f"720p {p720['peak_rss_mb']:.0f} MB")  # fmt: skip
    print(f"peak RSS at 1080p, one lever at a time: encoder queue 15 frames "
          f"{mem[0]['peak_rss_mb']:.0f} MB, 4 frames {p1080['peak_rss_mb']:.0f} MB, 4 frames + "
          f"MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1 MB {mem[1]['peak_rss_mb']:.0f} MB "
          f"(CPU {mem[0]['cpu_ms']:.1f} / {p1080['cpu_ms']:.1f} / {mem[1]['cpu_ms']:.1f} ms "
          f"per frame); of which imports {p1080['rss_imports_mb']:.0f} MB and the synthetic "
          f"camera's pre-rendered scene {p1080['rss_camera_mb']:.0f} MB")  # fmt: skip
    print(f"I420 camera: CPU per frame vs floor: 720p {yuv[0]['cpu_ms'] / f720['cpu_ms']:.3f}x, "
          f"1080p {yuv[1]['cpu_ms'] / f1080['cpu_ms']:.3f}x; peak RSS 720p "
          f"{yuv[0]['peak_rss_mb']:.0f} MB, 1080p {yuv[1]['peak_rss_mb']:.0f} MB")  # fmt: skip
    print(f"CPU per frame vs naive: 720p {p720['cpu_ms'] / n720['cpu_ms']:.3f}x, "
          f"1080p {p1080['cpu_ms'] / n1080['cpu_ms']:.3f}x")  # fmt: skip
    print(f"floor (I420 + libx264 only) vs naive: 720p {f720['cpu_ms'] / n720['cpu_ms']:.3f}x, "
          f"1080p {f1080['cpu_ms'] / n1080['cpu_ms']:.3f}x")  # fmt: skip
    print(f"change gate: decoder saw {p720['decode_pixels']:.0%} of the decoded frames' pixels "
          f"at 720p ({p720['decode_unchanged']}/{p720['decoded_frames']} decodes had nothing "
          f"changed), {p1080['decode_pixels']:.0%} at 1080p")  # fmt: skip
    real = zbar_on_real_photos(SHARED_PHOTOS)
    synth_mpx = n720["decode_ms"] / (1280 * 720 / 1e6)
    if real is None:
        print(f"pyzbar on real photos: skipped ({SHARED_PHOTOS} is absent)")
    else:
        print(f"pyzbar per megapixel: synthetic 720p frames {synth_mpx:.1f} ms, "
              f"{real['photos']} real photos (own size, median) {real['ms_per_mpx']:.1f} ms "
              f"= {real['ms_per_mpx'] * 0.9216:.1f} ms per 720p frame")  # fmt: skip
    print(f"scans recognised: 720p {p720['latency_n']}/{p720['scans_expected']}, "
          f"1080p {p1080['latency_n']}/{p1080['scans_expected']}")  # fmt: skip
    summary = {
        "fps_720p": round(p720["fps"], 2),
        "fps_1080p": round(p1080["fps"], 2),
        "dropped_frames": p720["dropped"] + p1080["dropped"],
        "dropped_720p": p720["dropped"],
        "dropped_1080p": p1080["dropped"],
        "cpu_ms_per_frame": round(p720["cpu_ms"], 2),
        "cpu_ms_per_frame_1080p": round(p1080["cpu_ms"], 2),
        "scan_latency_ms": round(
            statistics.median([x for x in (p720["latency_ms"], p1080["latency_ms"]) if x == x]), 1
        ),
        "scan_latency_ms_720p": round(p720["latency_ms"], 1),
        "scan_latency_ms_1080p": round(p1080["latency_ms"], 1),
        "mb_per_min_720p": round(p720["mb_per_min"], 1),
        "mb_per_min_1080p": round(p1080["mb_per_min"], 1),
        "peak_rss_mb_720p": round(p720["peak_rss_mb"], 1),
        "peak_rss_mb_1080p": round(p1080["peak_rss_mb"], 1),
        "peak_rss_mb_1080p_pre_roll_30s": round(long_pre["peak_rss_mb"], 1),
        "peak_rss_mb_1080p_queue15": round(mem[0]["peak_rss_mb"], 1),
        "peak_rss_mb_1080p_malloc_env": round(mem[1]["peak_rss_mb"], 1),
        "cpu_ms_per_frame_1080p_malloc_env": round(mem[1]["cpu_ms"], 2),
        "synthetic_scene_mb_1080p": round(p1080["rss_camera_mb"], 1),
        "peak_anon_mb_1080p": round(p1080["peak_anon_mb"], 1),
        "imports_mb": round(p1080["rss_imports_mb"], 1),
        "dropped_first_second_of_clips": p720["dropped_first_s"] + p1080["dropped_first_s"],
        "i420_cpu_ratio_vs_floor": round(yuv[0]["cpu_ms"] / f720["cpu_ms"], 3),
        "i420_cpu_ratio_vs_floor_1080p": round(yuv[1]["cpu_ms"] / f1080["cpu_ms"], 3),
        "i420_peak_rss_mb_720p": round(yuv[0]["peak_rss_mb"], 1),
        "i420_peak_rss_mb_1080p": round(yuv[1]["peak_rss_mb"], 1),
        "i420_dropped": yuv[0]["dropped"] + yuv[1]["dropped"],
        "floor_ratio_vs_naive": round(f720["cpu_ms"] / n720["cpu_ms"], 3),
        "decode_pixels_720p": round(p720["decode_pixels"], 3),
        "zbar_ms_per_mpx_synthetic": round(synth_mpx, 1),
        "zbar_ms_per_mpx_real_photos": round(real["ms_per_mpx"], 1) if real else None,
    }
    # the pipeline's CPU against each baseline run, at both resolutions
    for base, b720, b1080 in (("naive", n720, n1080), ("floor", f720, f1080)):
        for suffix, ours, theirs in (("", p720, b720), ("_1080p", p1080, b1080)):
            summary[f"{base}_cpu_ms_per_frame{suffix}"] = round(theirs["cpu_ms"], 2)
            summary[f"cpu_ratio_vs_{base}{suffix}"] = round(ours["cpu_ms"] / theirs["cpu_ms"], 3)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
