"""Web benchmark: lookups and substring search at 1 M clips, Range streaming, 50 viewers.

    python bench/web.py [--rows 1000000] [--stream-mb 256] [--viewers 50] [--write-docs]
    python bench/web.py --search-only [--rows 1000000] [--searches 300]

Everything runs on this machine: a temporary data dir, a real waitress server on 127.0.0.1
and client threads; request loops are bounded in count. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import base64
import fractions
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import queries  # noqa: E402
from station import config as config_mod  # noqa: E402
from station.store.clips import ClipSearch  # noqa: E402
from station.store.ledger import Ledger  # noqa: E402

PASSWORD = "bench-password-1"
DOC = REPO / "docs" / "web.md"
BEGIN, END = "<!-- bench:web:begin -->", "<!-- bench:web:end -->"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


# ---- data ----------------------------------------------------------------------------------


def fill_index(data_dir: Path, rows: int) -> float:
    """``rows`` clips (one order, one waybill, two scan events each) via executemany."""
    Ledger.in_data_dir(data_dir).close()  # the station's schema and migrations
    import sqlite3

    t0 = time.perf_counter()
    conn = sqlite3.connect(str(data_dir / "index.sqlite3"), isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    batch = 50_000
    for lo in range(0, rows, batch):
        hi = min(rows, lo + batch)
        orders, clips, waybills, events = [], [], [], []
        for i in range(lo, hi):
            start = base + timedelta(seconds=i * 30)
            s_utc = start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            e_utc = (start + timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            local = start.astimezone().isoformat(timespec="milliseconds")
            order = f"PO-{i:08d}"
            wb = f"SF{1000000000000 + i}"
            orders.append((order, s_utc, s_utc))
            clips.append((i + 1, order, wb, f"station-{i % 8:02d}", local, local, s_utc, e_utc,
                          "+0000", 40.0, 1200, "sealed", 3.0, f"clips/x/{i}.mp4",
                          f"clips/x/{i}.json", 10_000_000, "ab" * 32, s_utc))  # fmt: skip
            waybills.append((i + 1, order, wb, "SF", 12.0))
            events.append((i + 1, f"station-{i % 8:02d}", "order", order, "camera", 3.0, local))
            events.append((i + 1, f"station-{i % 8:02d}", "seal", "SEAL", "camera", 39.0, local))
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?)", orders)
        conn.executemany(
            "INSERT INTO clips(id, order_id, waybill, station, started_at, ended_at, started_utc,"
            " ended_utc, tz, duration_s, frame_count, finish_reason, pre_roll_s, path,"
            " manifest_path, size, sha256, created_utc)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            clips,
        )
        conn.executemany(
            "INSERT INTO waybills(clip_id, order_id, waybill, carrier, t_clip_s)"
            " VALUES (?, ?, ?, ?, ?)",
            waybills,
        )
        conn.executemany(
            "INSERT INTO scan_events(clip_id, station, kind, text, source, t_clip_s, wall)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            events,
        )
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - t0


def make_mp4(path: Path, seconds: float = 6.0, fps: int = 25) -> None:
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    opts = {"movflags": "frag_every_frame+empty_moov+default_base_moof"}
    with av.open(str(path), "w", format="mp4", options=opts) as out:
        s = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(fps)})
        s.width, s.height, s.pix_fmt = 640, 360, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((360, 640, 3), 60, np.uint8)
            img[150:210, (i * 9) % 580 : (i * 9) % 580 + 60] = (250, 180, 20)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, fractions.Fraction(1, fps)
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def add_file_clip(data_dir: Path, order: str, src: Path | None, size_mb: int = 0) -> int:
    """Put a file under clips/ and index it; returns the clip id."""
    import hashlib

    from station.store.ledger import ClipRecord

    rel = f"clips/bench/{order}.mp4"
    dest = data_dir / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src is not None:
        dest.write_bytes(src.read_bytes())
    else:
        block = os.urandom(1 << 20)
        with dest.open("wb") as f:
            for _ in range(size_mb):
                f.write(block)
    h = hashlib.sha256()
    with dest.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    now = datetime.now(UTC)
    led = Ledger.in_data_dir(data_dir)
    try:
        return led.add_clip(
            ClipRecord(order, "bench", now, now + timedelta(seconds=6), 6.0, 150, "sealed",
                       1.0, rel, rel[:-4] + ".json", dest.stat().st_size, h.hexdigest())
        )  # fmt: skip
    finally:
        led.close()


# ---- measurements --------------------------------------------------------------------------


def bench_lookup(data_dir: Path, cfg: Any, rows: int, n: int) -> dict[str, float]:
    from web import create_app
    from web.index import ClipIndex

    index = ClipIndex(data_dir / "index.sqlite3")
    ids = [f"PO-{random.randrange(rows):08d}" for _ in range(n)]
    direct = []
    for oid in ids:
        t0 = time.perf_counter()
        clips = index.order(oid)
        direct.append((time.perf_counter() - t0) * 1000)
        assert len(clips) == 1
    prefix = []
    for oid in ids[: n // 4]:
        t0 = time.perf_counter()
        index.search(ClipSearch(oid[:-2], limit=51))
        prefix.append((time.perf_counter() - t0) * 1000)
    index.close()

    app = create_app(cfg)
    client = app.test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()}
    # Log in once with a session (Basic would pay the KDF on every request).
    client.get("/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    client.post("/login", data={"username": "bench", "password": PASSWORD, "csrf_token": token})
    api = []
    for oid in ids:
        t0 = time.perf_counter()
        resp = client.get(f"/api/orders/{oid}")
        api.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 200, resp.status_code
    assert client.get("/api/orders/PO-00000001", headers=auth).status_code == 200
    return {
        "lookup_p50_ms": statistics.median(direct),
        "lookup_p99_ms": pct(direct, 99),
        "api_p50_ms": statistics.median(api),
        "api_p99_ms": pct(api, 99),
        "prefix_search_p50_ms": statistics.median(prefix),
        "prefix_search_p99_ms": pct(prefix, 99),
    }


def search_queries(rows: int, n: int) -> dict[str, list[str]]:
    """What people type, over this benchmark's rows (bench/queries.py)."""
    return queries.search_queries(
        rows, n, seed=11, order=lambda i: f"PO-{i:08d}", waybill=lambda i: f"SF{1000000000000 + i}"
    )


def bench_search(data_dir: Path, rows: int, n: int) -> dict[str, Any]:
    """Fill the site's search index (web-search.sqlite3) and time substring searches."""
    from web.index import ClipIndex
    from web.search import SEARCH_DB_NAME, SearchIndex

    si = SearchIndex(data_dir / SEARCH_DB_NAME, data_dir / "index.sqlite3")
    t0 = time.perf_counter()
    si._fill(si.conn, stop_at=rows)
    fill_s = time.perf_counter() - t0
    size_mb = (data_dir / SEARCH_DB_NAME).stat().st_size / 1e6
    index = ClipIndex(data_dir / "index.sqlite3", search=si)
    out: dict[str, Any] = {"search_fill_s": fill_s, "search_db_mb": size_mb, "search": {}}
    try:
        for kind, qs in search_queries(rows, n).items():
            times, hits = [], 0
            for q in qs:
                t1 = time.perf_counter()
                found = index.search(ClipSearch(q, limit=51))
                times.append((time.perf_counter() - t1) * 1000)
                hits += bool(found)
            out["search"][kind] = {
                "p50": statistics.median(times),
                "p99": pct(times, 99),
                "found": hits / len(qs),
                "example": qs[0],
            }
    finally:
        index.close()
        si.close()
    return out


def search_table(r: dict[str, Any], rows: int) -> str:
    lines = [
        f"Substring search at {rows:,} clips (`web-search.sqlite3`: FTS5 trigram + bigram "
        f"tables, {r['search_db_mb']:.0f} MB, filled in {r['search_fill_s']:.0f} s), "
        "50 newest matches through `ClipIndex.search`:",
        "",
        "| query | example | p50 | p99 | found | target |",
        "|---|---|---|---|---|---|",
    ]
    for kind, m in r["search"].items():
        lines.append(
            f"| {kind} | `{m['example']}` | {m['p50']:.2f} ms | {m['p99']:.2f} ms | "
            f"{m['found']:.0%} | p99 ≤ 100 ms |"
        )
    return "\n".join(lines)


def drop_cache(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return True
    except (OSError, AttributeError):
        return False


def raw_read(path: Path, chunk: int = 1 << 20) -> float:
    t0 = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        while data := f.read(chunk):
            n += len(data)
    return n / (time.perf_counter() - t0) / 1e6


def http_read(port: int, url: str, cookie: str, size: int, span: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.perf_counter()
    n = 0
    for start in range(0, size, span):
        end = min(size, start + span) - 1
        conn.request("GET", url, headers={"Range": f"bytes={start}-{end}", "Cookie": cookie})
        resp = conn.getresponse()
        assert resp.status == 206, resp.status
        while data := resp.read(1 << 20):
            n += len(data)
    conn.close()
    assert n == size
    return n / (time.perf_counter() - t0) / 1e6


def curl_read(port: int, url: str, cookie: str, size: int, span: int) -> float | None:
    """The same ranged reads with curl (a native client, so the Python client is not what is
    measured); one connection reused across ranges. None when curl is not installed."""
    import shutil

    curl = shutil.which("curl")
    if curl is None:
        return None
    cmd = [curl, "-s"]
    for i, start in enumerate(range(0, size, span)):
        end = min(size, start + span) - 1
        if i:
            cmd.append("--next")
        cmd += ["-H", f"Cookie: {cookie}", "-r", f"{start}-{end}", "-o", "/dev/null"]
        cmd += [
            "-w",
            "%{http_code} %{size_download} %{time_total}\\n",
            f"http://127.0.0.1:{port}{url}",
        ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    got, seconds = 0, 0.0
    for line in out.strip().splitlines():
        code, n, t = line.split()
        assert code == "206", code
        got += int(n)
        seconds += float(t)
    assert got == size, (got, size)
    return got / seconds / 1e6


def login_cookie(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login")
    resp = conn.getresponse()
    page = resp.read().decode()
    cookie = resp.getheader("Set-Cookie").split(";")[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    from urllib.parse import urlencode

    body = urlencode({"username": "bench", "password": PASSWORD, "csrf_token": token})
    conn.request("POST", "/login", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})  # fmt: skip
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 302, resp.status
    cookie = resp.getheader("Set-Cookie").split(";")[0]
    conn.close()
    return cookie


def bench_stream(data_dir: Path, port: int, cookie: str, clip_id: int) -> dict[str, float]:
    path = next((data_dir / "clips" / "bench").glob("BIG-*.mp4"))
    size = path.stat().st_size
    url = f"/clips/{clip_id}/video"
    out: dict[str, float] = {"stream_file_mb": size / 1e6}
    span = 64 << 20  # a seek, then the player reads on: 64 MB per request
    raw_read(path)  # warm the page cache
    warm_raw = max(raw_read(path) for _ in range(2))
    out["python_client_mb_s"] = http_read(port, url, cookie, size, span)
    client = "curl" if curl_read(port, url, cookie, size, span) is not None else "python"

    def fetch() -> float:
        if client == "curl":
            return curl_read(port, url, cookie, size, span) or 0.0
        return http_read(port, url, cookie, size, span)

    warm_http = max(fetch() for _ in range(2))
    out.update(raw_warm_mb_s=warm_raw, http_warm_mb_s=warm_http, ratio_warm=warm_http / warm_raw)
    out["client"] = client
    if drop_cache(path):
        cold_raw = raw_read(path)
        drop_cache(path)
        cold_http = fetch()
        ratio = cold_http / cold_raw
        out.update(raw_cold_mb_s=cold_raw, http_cold_mb_s=cold_http, ratio_cold=ratio)
    return out


def bench_viewers(port: int, viewers: int, rounds: int, clip_id: int) -> dict[str, float]:
    """Each viewer (a session of its own) opens the order page, the API and seeks through the
    clip, all at once."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(viewers)
    # one after the other: the login throttle counts an attempt before its password is checked
    # (issue 12), so 50 logins to one account in the same instant lock it, as they should
    cookies = [login_cookie(port) for _ in range(viewers)]

    def viewer(i: int) -> None:
        try:
            cookie = cookies[i]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            barrier.wait(timeout=120)
            for r in range(rounds):
                for path, headers in (
                    ("/orders/SMALL-1", {}),
                    ("/api/orders/SMALL-1", {}),
                    (f"/clips/{clip_id}/thumb.jpg", {}),
                    (f"/clips/{clip_id}/video", {"Range": "bytes=0-"}),
                    (f"/clips/{clip_id}/video", {"Range": f"bytes={(i * 7919 + r) % 50000}-"}),
                ):
                    t0 = time.perf_counter()
                    conn.request("GET", path, headers={**headers, "Cookie": cookie})
                    resp = conn.getresponse()
                    body = resp.read()
                    dt = (time.perf_counter() - t0) * 1000
                    with lock:
                        latencies.append(dt)
                        if resp.status not in (200, 206) or not body:
                            errors.append(f"{path}: {resp.status}")
            conn.close()
        except Exception as exc:  # counted, reported
            with lock:
                errors.append(repr(exc))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=viewer, args=(i,)) for i in range(viewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    wall = time.perf_counter() - t0
    return {
        "viewers": viewers,
        "viewer_requests": len(latencies),
        "viewer_errors": len(errors),
        "viewer_p50_ms": statistics.median(latencies) if latencies else 0.0,
        "viewer_p99_ms": pct(latencies, 99) if latencies else 0.0,
        "viewer_wall_s": wall,
        "first_error": errors[0] if errors else "",
    }


# ---- report --------------------------------------------------------------------------------


def table(r: dict[str, Any], rows: int) -> str:
    lines = [
        "| measurement | result | target |",
        "|---|---|---|",
        f"| order lookup, index query (p50 / p99) at {rows:,} clips | "
        f"{r['lookup_p50_ms']:.2f} / {r['lookup_p99_ms']:.2f} ms | p99 ≤ 10 ms |",
        f"| order lookup, `GET /api/orders/<id>` in-process (p50 / p99) | "
        f"{r['api_p50_ms']:.2f} / {r['api_p99_ms']:.2f} ms | |",
        f"| search (2+ characters), 50 newest (p50 / p99) | "
        f"{r['prefix_search_p50_ms']:.2f} / {r['prefix_search_p99_ms']:.2f} ms | |",
        f"| raw read, page cache warm | {r['raw_warm_mb_s']:.0f} MB/s | |",
        f"| Range streaming over HTTP (64 MB ranges, {r['client']}), warm | "
        f"{r['http_warm_mb_s']:.0f} MB/s "
        f"(**{r['ratio_warm']:.0%}** of raw) | |",
    ]
    if "ratio_cold" in r:
        lines += [
            f"| raw read, cache dropped | {r['raw_cold_mb_s']:.0f} MB/s | |",
            f"| Range streaming over HTTP ({r['client']}), cache dropped | "
            f"{r['http_cold_mb_s']:.0f} MB/s "
            f"(**{r['ratio_cold']:.0%}** of raw) | ≥ 80 % |",
        ]
    lines.append(
        f"| {r['viewers']} concurrent viewers × {r['viewer_requests'] // r['viewers']} requests"
        f" (page, API, thumbnail, 2 seeks) | p50 {r['viewer_p50_ms']:.0f} ms, "
        f"p99 {r['viewer_p99_ms']:.0f} ms, {r['viewer_errors']} errors, "
        f"{r['viewer_wall_s']:.1f} s | no errors |"
    )
    return "\n".join(lines)


def write_docs(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + block + doc[doc.index(END) + len(END) :]
    else:
        doc += "\n" + block + "\n"
    DOC.write_text(doc, encoding="utf-8")


def serve_only(data_dir: Path) -> int:
    """Child process: serve ``data_dir`` on a free loopback port, print it, run until killed."""
    import logging
    import signal

    from web import cli

    # waitress warns on every queued request; 50 viewers on 16 threads queue on purpose.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    cfg = config_mod.load(None).with_data_dir(data_dir)
    server = cli.make_server(cfg, "127.0.0.1", 0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(server.effective_port, flush=True)
    cli.run_server(server, stop=stop)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=2000)
    ap.add_argument("--stream-mb", type=int, default=256)
    ap.add_argument("--viewers", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--searches", type=int, default=300, help="queries per search kind")
    ap.add_argument(
        "--search-only", action="store_true", help="only the index fill and the search timings"
    )
    ap.add_argument("--write-docs", action="store_true", help=f"put the table into {DOC}")
    ap.add_argument("--serve", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve_only(Path(args.serve))
    random.seed(7)

    import logging

    logging.basicConfig(level=logging.ERROR)
    from web.db import WebDB

    with tempfile.TemporaryDirectory(prefix="packcam-bench-") as tmp:
        data_dir = Path(tmp)
        cfg = config_mod.load(None).with_data_dir(data_dir)
        t_fill = fill_index(data_dir, args.rows)
        print(f"index: {args.rows:,} clips written in {t_fill:.1f} s", file=sys.stderr)
        search = bench_search(data_dir, args.rows, args.searches)
        print(search_table(search, args.rows))
        if args.search_only:
            print(json.dumps(search))
            ok = all(m["p99"] <= 100 for m in search["search"].values())
            return 0 if ok else 1
        db = WebDB.in_data_dir(data_dir)
        db.add_user("bench", "viewer", PASSWORD)
        db.close()
        results: dict[str, Any] = bench_lookup(data_dir, cfg, args.rows, args.lookups)
        results.update(search)

        small = data_dir / "small.mp4"
        make_mp4(small)
        small_id = add_file_clip(data_dir, "SMALL-1", small)
        big_id = add_file_clip(data_dir, "BIG-1", None, args.stream_mb)
        # The server runs in its own process, as in production, so the client threads of this
        # process do not compete with it for one GIL.
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(data_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            cookie = login_cookie(port)
            results.update(bench_stream(data_dir, port, cookie, big_id))
            results.update(bench_viewers(port, args.viewers, args.rounds, small_id))
        finally:
            server.terminate()
            server.wait(30)

    text = table(results, args.rows) + "\n\n" + search_table(results, args.rows)
    print(text)
    if args.write_docs:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        write_docs(f"Measured {stamp} on this 2-core machine (`python bench/web.py`).\n\n{text}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}))
    ok = (
        results["lookup_p99_ms"] <= 10
        and results["viewer_errors"] == 0
        and results.get("ratio_cold", results["ratio_warm"]) >= 0.8
        and all(m["p99"] <= 100 for m in results["search"].values())
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
