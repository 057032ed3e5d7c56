"""Benchmark the proof layer: per-clip signing + logging cost and bundle verification time.

    python bench/proof.py              # a 10-minute 720p30 clip (about 1-2 minutes to encode)
    python bench/proof.py --minutes 1  # quicker; verification scales with the clip's bytes

Prints a table; the last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from station import config as config_mod  # noqa: E402
from station.proof.bundle import export_order  # noqa: E402
from station.proof.ca import CompanyCa  # noqa: E402
from station.proof.finalizer import ProofFinalizer, sha256_file  # noqa: E402
from station.proof.keys import StationKey  # noqa: E402
from station.proof.paths import ProofPaths  # noqa: E402
from station.proof.verify import verify_bundle  # noqa: E402

W, H, FPS = 1280, 720, 30


def make_clip(path: Path, seconds: float) -> float:
    """A low-motion 720p30 H.264 clip in the station's fragmented MP4 layout; returns encode s."""
    t0 = time.perf_counter()
    opts = {"movflags": "frag_every_frame+empty_moov+default_base_moof"}
    with av.open(str(path), "w", format="mp4", options=opts) as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.time_base = Fraction(1, 90_000)
        s.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(FPS * 4)}
        rng = np.random.default_rng(1)
        base = rng.integers(60, 200, (H * 3 // 2, W), dtype=np.uint8)  # texture, as a real table
        for i in range(int(seconds * FPS)):
            img = base.copy()
            x = (i * 4) % (W - 200)
            img[200:400, x : x + 200] = 235  # a moving "parcel"
            f = av.VideoFrame.from_ndarray(img, format="yuv420p")
            f.pts = i * 3000
            f.time_base = Fraction(1, 90_000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return time.perf_counter() - t0


def fake_manifest(path: Path, data_dir: Path, seconds: float, n: int) -> dict:
    return {
        "order_id": f"BENCH-{n}",
        "waybill": "SF1234567890123",
        "waybills": [],
        "station": "station-01",
        "started_at": "2026-11-30T09:00:00.000+08:00",
        "ended_at": "2026-11-30T09:10:00.000+08:00",
        "duration_s": seconds,
        "frame_count": int(seconds * FPS),
        "finish_reason": "sealed",
        "pre_roll_s": 3.0,
        "path": path.relative_to(data_dir).as_posix(),
        "manifest_path": path.with_suffix(".json").relative_to(data_dir).as_posix(),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "events": [],
        "manifest_version": 1,
        "software": "packcam bench",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the big clip")
    ap.add_argument("--clips", type=int, default=30, help="small clips for the per-clip cost")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="packcam-bench-"))
    data = tmp / "data"
    clips = data / "clips"
    clips.mkdir(parents=True)
    seconds = args.minutes * 60

    cpu0 = time.process_time()
    enc_s = make_clip(clips / "big.mp4", seconds)
    enc_cpu = time.process_time() - cpu0  # all threads of this process: the x264 encode
    big = clips / "big.mp4"
    mb = big.stat().st_size / 1e6
    small = clips / "small.mp4"
    make_clip(small, 2.0)

    rows: list[tuple[str, str]] = []
    results: dict[str, float] = {"clip_minutes": args.minutes, "clip_mb": round(mb, 1)}
    rows.append(
        ("big clip", f"{args.minutes:g} min 720p30, {mb:.1f} MB (encoded in {enc_s:.0f} s)")
    )

    # 1. signing + logging per clip (no C2PA): the finalizer on a small clip, many times
    cfg = config_mod.load(None).with_data_dir(data)
    fin = ProofFinalizer(cfg, start_worker=False, clock=lambda: True)
    per_clip = []
    for n in range(args.clips):
        m = fake_manifest(small, data, 2.0, n)
        t0 = time.perf_counter()
        fin(small, m)
        per_clip.append((time.perf_counter() - t0) * 1000)
    fin.close()
    t0 = time.perf_counter()
    for _ in range(10):
        sha256_file(small)
    small_hash_ms = (time.perf_counter() - t0) * 100
    key = StationKey.generate()
    t0 = time.perf_counter()
    for _ in range(1000):
        key.sign(b"x" * 2048)
    sign_ms = time.perf_counter() - t0
    results["sign_log_ms_per_clip"] = round(statistics.median(per_clip), 2)
    results["sign_log_ms_excl_hash"] = round(statistics.median(per_clip) - small_hash_ms, 2)
    rows.append(
        (
            "sign + log per clip",
            f"{statistics.median(per_clip):.2f} ms median "
            f"(p90 {sorted(per_clip)[int(len(per_clip) * 0.9)]:.2f} ms; incl. hashing a "
            f"{small.stat().st_size / 1e3:.0f} kB clip, SQLite FULL sync)",
        )
    )
    rows.append(("  of which SHA-256 of the file", f"{small_hash_ms:.2f} ms"))
    rows.append(("  Ed25519 signature alone", f"{sign_ms:.3f} ms"))

    # 1b. what the station adds per recorded clip, C2PA off: SHA-256 + packet digests (demux)
    # + Ed25519 + log append on the big clip, and one checkpoint signed (its TSA request is
    # network wait, not CPU). Compared with the CPU the encode of that clip took.
    import shutil

    plain = clips / "plain.mp4"
    shutil.copy(big, plain)
    fin = ProofFinalizer(cfg, start_worker=False, clock=lambda: True)
    cpu0 = time.process_time()
    fin(plain, fake_manifest(plain, data, seconds, 500))
    fin_cpu = time.process_time() - cpu0
    cps = []
    for _ in range(20):
        c0 = time.process_time()
        fin.checkpoint()
        cps.append(time.process_time() - c0)
    fin.close()
    cp_cpu = statistics.median(cps)
    added = fin_cpu + cp_cpu
    results["encode_cpu_s"] = round(enc_cpu, 2)
    results["station_added_cpu_s"] = round(added, 3)
    results["station_added_pct"] = round(100 * added / enc_cpu, 2)
    rows.append(("recording CPU of the big clip", f"{enc_cpu:.1f} s (x264 encode only)"))
    rows.append(
        (
            "added per clip: finalize (hash, packet digests, sign, log)",
            f"{fin_cpu * 1000:.0f} ms CPU",
        )
    )
    rows.append(("added per clip: one checkpoint signed", f"{cp_cpu * 1000:.1f} ms CPU"))
    rows.append(
        (
            "added / recording CPU (target < 5 %)",
            f"{100 * added / enc_cpu:.2f} % {'OK' if added < 0.05 * enc_cpu else 'OVER'}",
        )
    )

    # 2. the same for the big clip, C2PA on: embedding rewrites and hashes the whole file
    paths = ProofPaths.from_config(cfg)
    ca = CompanyCa.create(tmp / "ca", "Bench CA")
    ca.issue_station("station-01", StationKey.load(paths.key).public).install(
        c2pa_key=paths.c2pa_key,
        c2pa_cert=paths.c2pa_cert,
        key_cert=paths.key_cert,
        ca_cert=paths.ca_cert,
    )
    cfg2 = cfg.replace("proof", c2pa=True)
    fin = ProofFinalizer(cfg2, start_worker=False, clock=lambda: True)
    m = fake_manifest(big, data, seconds, 999)
    t0 = time.perf_counter()
    c0 = time.process_time()
    fin(big, m)
    t_c2pa = time.perf_counter() - t0
    c2pa_cpu = time.process_time() - c0
    fin.close()
    t0 = time.perf_counter()
    sha256_file(big)
    t_hash = time.perf_counter() - t0
    results["finalize_big_c2pa_s"] = round(t_c2pa, 2)
    results["sha256_mb_per_s"] = round(mb / t_hash, 0)
    rows.append(("finalize big clip, C2PA on", f"{t_c2pa:.2f} s ({t_c2pa / mb * 1000:.1f} ms/MB)"))
    rows.append(("  C2PA on: CPU / recording CPU", f"{100 * c2pa_cpu / enc_cpu:.1f} %"))
    results["c2pa_cpu_pct_of_encode"] = round(100 * c2pa_cpu / enc_cpu, 1)
    rows.append(("SHA-256 of the big clip", f"{t_hash:.2f} s ({mb / t_hash:.0f} MB/s)"))

    # 3. index the big clip so it can be exported, then export and verify its bundle
    from datetime import datetime

    from station.store.ledger import ClipRecord, Ledger

    led = Ledger.in_data_dir(data)
    led.add_clip(
        ClipRecord(
            order_id="BENCH-999",
            station="station-01",
            started_at=datetime.fromisoformat(m["started_at"]),
            ended_at=datetime.fromisoformat(m["ended_at"]),
            duration_s=seconds,
            frame_count=int(seconds * FPS),
            finish_reason="sealed",
            pre_roll_s=3.0,
            path=m["path"],
            manifest_path=m["manifest_path"],
            size=big.stat().st_size,
            sha256=sha256_file(big),
        )
    )
    led.close()
    t0 = time.perf_counter()
    res = export_order(cfg2, "BENCH-999", tmp / "bundle.zip")
    t_export = time.perf_counter() - t0
    t0 = time.perf_counter()
    c0 = time.process_time()
    report = verify_bundle(res.path)
    t_verify = time.perf_counter() - t0
    v_cpu = time.process_time() - c0
    assert report.ok, report.lines()
    results["verify_cpu_s"] = round(v_cpu, 2)
    results["verify_pct_of_encode"] = round(100 * v_cpu / enc_cpu, 2)
    results["export_s"] = round(t_export, 2)
    results["verify_bundle_s"] = round(t_verify, 2)
    results["verify_ms_per_mb"] = round(t_verify / mb * 1000, 1)
    rows.append(("export bundle", f"{t_export:.2f} s ({res.frames} key frames)"))
    rows.append(
        (
            "verify bundle",
            f"{t_verify:.2f} s ({t_verify / mb * 1000:.1f} ms/MB: unzip, SHA-256, member "
            f"hashes, packet digests, signatures, Merkle proofs, tokens, C2PA); "
            f"{100 * v_cpu / enc_cpu:.1f} % of the recording CPU (on the verifier's machine)",
        )
    )

    shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a:<{width}}  {b}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
