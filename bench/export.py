"""Export benchmark: time and peak memory of the order export (CSV, XLSX), old code vs new.

    python bench/export.py [--rows 50000 300000] [--repeat 3] [--old main]

Each index is filled once (bench/web.py's fill_index, one year's range); each export runs in
a fresh process of the code under test (``--old``: a git ref, unpacked to a temporary tree;
new: this working tree) through the Flask test client, reading the body chunk by chunk as a
WSGI server does. Peak RSS is the process's high-water mark during the export (VmHWM, reset
before it); "+rise" is that peak over the RSS just before the export. Prints a table of
medians and the new/old ratios; the outputs of old and new are compared.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAYS = {"from": "2025-12-31", "to": "2026-12-30"}  # 366 days around fill_index's clips


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def child(tree: str, data_dir: str, fmt: str) -> int:
    """Run one export with the code in ``tree``; print its measurements as one JSON line."""
    sys.path.insert(0, tree)
    import logging

    from station import config as config_mod
    from web import create_app

    logging.basicConfig(level=logging.ERROR)
    app = create_app(config_mod.load(None).with_data_dir(Path(data_dir)))
    client = app.test_client()
    client.get("/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    form = {"username": "bench", "password": "bench-password-1", "csrf_token": token}
    assert client.post("/login", data=form).status_code == 302
    # the peak from here on (the login's scrypt alone takes 32 MB for a moment): Linux
    # resets a process's high-water mark when "5" is written to clear_refs
    Path("/proc/self/clear_refs").write_text("5")
    rss0 = _status_kb("VmRSS")
    t0 = time.perf_counter()
    resp = client.get(f"/export/orders.{fmt}", query_string=DAYS, buffered=False)
    assert resp.status_code == 200, resp.status_code
    digest, size = hashlib.sha256(), 0
    saved = Path(data_dir) / f"export-{os.getpid()}.{fmt}"  # as a browser would save it
    with saved.open("wb") as f:
        for chunk in resp.iter_encoded():
            f.write(chunk)
            size += len(chunk)
    resp.close()
    seconds = time.perf_counter() - t0
    rss = _status_kb("VmHWM")
    if fmt == "xlsx":  # the zip's member times differ from run to run: hash the contents
        with zipfile.ZipFile(saved) as z:
            for info in z.infolist():
                digest.update(info.filename.encode() + z.read(info))
    else:
        digest.update(saved.read_bytes())
    saved.unlink()
    out = {"s": seconds, "rss_mb": rss / 1024, "rise_mb": (rss - rss0) / 1024, "bytes": size}
    print(json.dumps({**out, "sha256": digest.hexdigest()}))
    return 0


def run(tree: Path, data_dir: Path, fmt: str, tmp: Path) -> dict[str, Any]:
    """One export in a fresh process; its temporary files go to ``tmp``, which must stay empty."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(tree), str(data_dir), fmt],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    left = list(tmp.iterdir())
    assert not left, f"{tree.name} {fmt} left temporary files: {left}"
    return dict(json.loads(out.splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[50_000, 300_000])
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (medians)")
    ap.add_argument("--old", default="main", help="the git ref of the code to compare with")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    sys.path.insert(0, str(REPO))
    from bench.web import PASSWORD, fill_index
    from web.db import WebDB

    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", args.old],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    lines = [
        "| clips | format | old s | new s | new/old | old peak RSS MB (+rise) "
        "| new peak RSS MB (+rise) | new/old rise | same output |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="packcam-bench-") as tmp_name:
        tmp = Path(tmp_name)
        old_tree, child_tmp = tmp / "old", tmp / "child-tmp"
        old_tree.mkdir()
        child_tmp.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", rev, "station", "web", "packcam"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(old_tree, filter="data")
        for rows in args.rows:
            data_dir = tmp / f"data-{rows}"
            data_dir.mkdir()
            fill_index(data_dir, rows)
            db = WebDB.in_data_dir(data_dir)
            db.add_user("bench", "operator", PASSWORD)
            db.close()
            for fmt in ("csv", "xlsx"):
                got: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
                for _ in range(args.repeat):  # interleaved, so a noisy minute hits both
                    for name, tree in (("old", old_tree), ("new", REPO)):
                        got[name].append(run(tree, data_dir, fmt, child_tmp))
                        print(f"{rows} {fmt} {name}: {got[name][-1]}", file=sys.stderr)
                med = {
                    n: {
                        k: statistics.median(r[k] for r in runs) for k in ("s", "rss_mb", "rise_mb")
                    }
                    for n, runs in got.items()
                }
                same = {r["sha256"] for runs in got.values() for r in runs}
                o, n = med["old"], med["new"]
                lines.append(
                    f"| {rows:,} | {fmt} | {o['s']:.1f} | {n['s']:.1f} | {n['s'] / o['s']:.2f} "
                    f"| {o['rss_mb']:.0f} (+{o['rise_mb']:.0f}) "
                    f"| {n['rss_mb']:.0f} (+{n['rise_mb']:.0f}) "
                    f"| {n['rise_mb'] / max(o['rise_mb'], 0.1):.2f} "
                    f"| {'yes' if len(same) == 1 else 'NO'} |"
                )
            shutil.rmtree(data_dir)
    print(f"old: {args.old} ({rev}); new: this working tree; medians of {args.repeat} runs")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
