"""Child process of the crash-point tests: ``python helpers_crash_child.py MODE WORK``.

Imports the station once, runs MODE once without a crash to list its steps (every rename,
unlink, fsync and index transaction), then for each step N forks a child that runs MODE again
on ``WORK/<N>/data`` and dies by ``os._exit`` just before step N (a kill -9 there). Forking
saves the interpreter start and the imports for each of the many points. Prints one JSON line:
``{"steps": [...], "missed": [why point N did not crash, ...]}`` (none: every point crashed).

MODE ``finish``: record one clip of order PO-1 with the station's recorder, proof finalizer
and salvage; the steps counted are the finisher's (from ``stop`` on: it journals how the
clip ended), once a fragment of the clip is on disk.
MODE ``recover``: one recovery pass over a copy of ``WORK/template`` (the test makes it).
MODE ``retain``: one retention check (``retention_config``, the disk always full, every archive
copy there: each HEAD is a step) over a copy of the template. MODE ``export``: the export
worker builds the bundle of order PO-1 from a copy of the template. MODE ``tsa``: one pass of
the TSA queue over a copy of the template.
MODE ``migrate``: ``open_index`` migrates the template's old index; the
steps are every ``MIGRATE_OPS`` SQLite instructions (a kill inside a migration's script).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from recorder_support import encoded_recorder

from station import config as config_mod
from station.proof.exports import ExportWorker, bundle_key
from station.proof.finalizer import build_finalizers, deletion_signer_of
from station.proof.log import ProofLog
from station.proof.tsa import TsaQueue
from station.recording.writer import to_i420
from station.store import sqlitedb
from station.store.index import INDEX_NAME, open_index
from station.store.ledger import Ledger, ScanEventRecord
from station.store.recovery import Recovery, recover_data_dir
from station.store.retention import DiskSpace, RetentionManager

W, H, FPS = 160, 96, 10.0
WALL0 = datetime(2026, 11, 30, 14, 5, 6, 789000).astimezone()
CRASHED = 77
JOURNAL_SYNC = "clip-journal-sync"  # the recorder's BackgroundSync thread
FLOOR = {"kind": "order", "packer": "ann", "repack_of": [7]}  # the clip's; must reach its row


class Steps:
    """Counts the side effects a crash can fall between; ``os._exit`` before step ``crash_at``."""

    def __init__(self) -> None:
        self.crash_at = 0  # 0: never
        self.armed = False
        self.done: list[str] = []

    def step(self, what: str) -> None:
        if not self.armed or threading.current_thread().name == JOURNAL_SYNC:
            # The journal-sync thread only fsyncs: nothing a kill -9 leaves changes with it,
            # and when it runs against the finisher is the scheduler's choice (the steps
            # would differ from run to run). A kill still falls anywhere on its account.
            return
        self.done.append(what)
        if len(self.done) == self.crash_at:
            os._exit(CRASHED)

    def install(self) -> None:
        def wrap(name: str) -> None:
            real = getattr(os, name)

            def call(*args: Any, **kw: Any) -> Any:
                target = args[1] if name in ("replace", "rename") else args[0]
                if isinstance(target, int):  # fsync(fd): name what it is open on
                    target = os.readlink(f"/proc/self/fd/{target}")
                self.step(f"{name} {os.path.basename(os.fsdecode(target))}")
                return real(*args, **kw)

            setattr(os, name, call)

        for name in ("replace", "rename", "unlink", "fsync"):
            wrap(name)
        real_tx = sqlitedb.transaction

        @contextlib.contextmanager
        def tx(conn: Any, lock: Any, error: type[Exception], what: str) -> Iterator[Any]:
            self.step(f"index: {what}")
            with real_tx(conn, lock, error, what) as c:
                yield c

        sqlitedb.transaction = tx  # type: ignore[assignment]


def picture(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    img[:, (i * 5) % (W - 10) :][:, :10] = (0, 200, 255)
    return img


def finish(data: Path, steps: Steps) -> None:
    # No periodic fsync of the clip (one every fsync_interval_s of wall time while it is
    # written): on a loaded machine the muxer's thread fell a second behind in some runs and
    # not in others, so a run made one or two fsyncs more or fewer than the run that listed
    # the steps, and the points past a shorter run's end never crashed. A kill -9 leaves the
    # same files with or without an fsync; the clip's last fsyncs, as it is finished, count.
    cfg = config_mod.load(None).with_data_dir(data).replace("recorder", fsync_interval_s=3600.0)
    ledger = Ledger.in_data_dir(data)
    fins = build_finalizers(cfg)
    salvage = Recovery(cfg, ledger, fins).salvage
    rec = encoded_recorder(cfg, ledger, W, H, FPS, finalizers=fins, salvage=salvage)
    t = 0.0
    for i in range(15):
        wall = WALL0 + timedelta(seconds=t)
        rec.push(to_i420(picture(i)), t, wall)
        if i == 3:
            rec.start("PO-1", t, wall=wall, extra=dict(FLOOR))
            rec.log_event(ScanEventRecord("order", "PO-1", "script", wall), t)
        if i == 6:
            rec.link_waybill("SF1234567890123", "SF", t)
        t += 1 / FPS
    # A whole fragment of the clip on disk before the steps are counted: a kill -9 before
    # any is the loss of frames still in memory (docs/reliability.md), not a finisher's step
    # (stop() journals how the clip ended: the first step counted).
    writer = rec._open.writer if rec._open is not None else None
    deadline = time.monotonic() + 60.0
    while getattr(writer, "_good_size", 1) == 0:
        if time.monotonic() > deadline:  # counting now would count other steps: say so
            raise RuntimeError("no fragment of the clip on disk after 60 s")
        time.sleep(0.005)
    steps.armed = True
    rec.stop("sealed", t)
    rec.wait_idle()
    rec.close()
    for f in fins:
        f.close()
    ledger.close()


def recover(data: Path, steps: Steps) -> None:
    steps.armed = True
    recover_data_dir(config_mod.load(None).with_data_dir(data))


def retention_config(cfg: config_mod.Config) -> config_mod.Config:
    """Every finished clip old enough; only archived ones may go."""
    return cfg.replace("archive", enabled=True, bucket="packcam-clips").replace(
        "retention",
        min_age_days=0.0,
        free_floor_mb=1,
        free_floor_percent=0.0,
        archive_required=True,
    )


def retain(data: Path, steps: Steps) -> None:
    cfg = retention_config(config_mod.load(None).with_data_dir(data))
    ledger = Ledger.in_data_dir(data)
    fins = build_finalizers(cfg)

    def bucket(key: str, size: int, sha256: str, _path: Path) -> None:
        steps.step(f"head {key}")  # the archive copy is there: a crash may come after the HEAD

    mgr = RetentionManager(
        cfg,
        ledger,
        probe=lambda: DiskSpace(0, 1 << 40),
        signer=deletion_signer_of(fins),
        archive_check=bucket,
    )
    steps.armed = True
    mgr.check()
    for f in fins:
        f.close()
    ledger.close()


def export(data: Path, steps: Steps) -> None:
    cfg = config_mod.load(None).with_data_dir(data)
    worker = ExportWorker(cfg)
    ledger = Ledger.in_data_dir(data)
    clips = ledger.clips("PO-1")
    ledger.close()
    steps.armed = True
    worker.build("PO-1", clips, bundle_key("PO-1", clips))


def tsa(data: Path, steps: Steps) -> None:
    plog = ProofLog.in_data_dir(data)
    steps.armed = True
    TsaQueue(plog).process_due()
    plog.close()


MIGRATE_OPS = 100


def migrate(data: Path, steps: Steps) -> None:
    real = sqlitedb.open_connection

    def opened(target: Any) -> Any:
        conn = real(target)
        conn.set_progress_handler(lambda: steps.step(f"sqlite: {MIGRATE_OPS} ops"), MIGRATE_OPS)
        return conn

    sqlitedb.open_connection = opened  # type: ignore[assignment]
    steps.armed = True
    open_index(data / INDEX_NAME).close()


def run(work: Path, mode: Callable[[Path, Steps], None], n: int, steps: Steps) -> int:
    """Run ``mode`` in a forked child dying before step ``n`` (0: none); its exit status."""
    point = work / str(n)
    template = work / "template"
    if template.exists():
        shutil.copytree(template, point)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            steps.crash_at = n
            mode(point / "data", steps)
            (point / "steps.json").write_text(json.dumps(steps.done))
            code = 0
        except BaseException:
            traceback.print_exc()  # to the test's message (os._exit would drop it)
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def missed(work: Path, n: int, code: int) -> str:
    """Why the run for point ``n`` did not crash: its exit status, and the steps it made."""
    done = work / str(n) / "steps.json"
    made = json.loads(done.read_text()) if done.exists() else None
    return f"point {n}: exit {code}" + ("" if made is None else f" after {len(made)} steps {made}")


# ---- the test side ---------------------------------------------------------------------------

CRASH_CHILD = Path(__file__).resolve()


def crash_at_every_step(mode: str, work: Path) -> list[str]:
    """Run ``helpers_crash_child.py``: ``mode`` once per step, killed just before it; the steps.

    Each run's data dir is ``work/<step number>/data``."""
    out = subprocess.run(
        [sys.executable, str(CRASH_CHILD), mode, str(work)],
        capture_output=True,
        text=True,
        cwd=CRASH_CHILD.parents[1],
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},  # the child forks: no BLAS threads
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run = json.loads(out.stdout)
    steps: list[str] = run["steps"]
    # every point was a real crash (not: a run with other steps than these, or one that failed)
    assert not run["missed"], f"{len(steps)} steps {steps}; {run['missed']}\n{out.stderr[-3000:]}"
    return steps


def assert_every_step(steps: list[str], check: Callable[[int, str], None]) -> None:
    """``check(n, where)`` the state a crash before each step left; fail listing every point
    that does not pass (one bug often shows at several)."""
    failed = []
    for n, step in enumerate(steps, 1):
        where = f"crash before step {n} ({step})"
        try:
            check(n, where)
        except AssertionError as exc:
            failed.append(f"{where}: {' '.join(str(exc).split())[:300]}")
    assert not failed, "\n".join(failed)


def main() -> None:
    modes = {"finish": finish, "recover": recover, "retain": retain, "export": export}
    mode = {**modes, "tsa": tsa, "migrate": migrate}[sys.argv[1]]
    work = Path(sys.argv[2])
    steps = Steps()
    steps.install()
    if run(work, mode, 0, steps) != 0:
        raise SystemExit("the run without a crash failed")
    done = json.loads((work / "0" / "steps.json").read_text())
    codes = {n: run(work, mode, n, steps) for n in range(1, len(done) + 1)}
    missing = [missed(work, n, code) for n, code in codes.items() if code != CRASHED]
    sys.stdout.write(json.dumps({"steps": done, "missed": missing}) + "\n")


if __name__ == "__main__":
    main()
