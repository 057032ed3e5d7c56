"""/verify uploads: admission, the spool on the data disk, zip limits, over a real server."""

from __future__ import annotations

import http.client
import os
import socket
import tempfile
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from proof_support import Store, tsa_ec  # noqa: F401 (fixture)
from verify_support import (  # noqa: F401 (fixtures)
    MB,
    Browserless,
    FreeWatch,
    SmallDisk,
    big_store,
    clip_of,
    open_unlinked,
    running_site,
    small_disk,
    zip_bomb,
)

from station.proof.bundle import export_order
from web import uploads

# ---- the spool's admission (pure accounting, injected disk and clock) -----------------------


def _limits(**kw: int | float) -> uploads.Limits:
    base = dict(
        max_bytes=10 * MB,
        spool_bytes=40 * MB,
        floor_bytes=8 * MB,
        floor_percent=0.0,
        headroom_bytes=2 * MB,
        unzipped_bytes=20 * MB,
        max_members=50,
        parallel=3,
        per_hour=5,
    )
    base.update(kw)
    return uploads.Limits(**base)  # type: ignore[arg-type]


class Disk:
    def __init__(self, free: int, total: int = 100 * MB) -> None:
        self.free, self.total = free, total

    def __call__(self, _path: Path) -> tuple[int, int]:
        return self.free, self.total


def test_an_upload_is_held_to_the_minimum_rate_only_after_its_grace() -> None:
    limits = _limits(min_bytes_per_s=4 * 1024)
    grace = uploads.SLOW_GRACE_S
    assert uploads.too_slow(0, grace, limits) is None  # its first seconds: anything goes
    assert uploads.too_slow(4 * 1024 * 60, 60.0, limits) is None  # 4 KB/s on average
    slow = uploads.too_slow(4 * 1024 * 60 - 1, 60.0, limits)
    assert slow is not None and slow.status == 408 and slow.code == "too-slow"
    assert "上传太慢" in slow.message and "under 4 KB/s" in slow.message


def test_admission_keeps_the_floor_and_the_quota(tmp_path: Path) -> None:
    disk = Disk(free=30 * MB)
    spool = uploads.Spool(tmp_path, _limits(), probe=disk)
    a = spool.admit("192.0.2.1", 12 * MB)  # 30 - 12 = 18 >= floor 10
    with pytest.raises(uploads.UploadRefused) as err:
        spool.admit("192.0.2.2", 9 * MB)  # 30 - 12 - 9 = 9 < 10
    assert err.value.status == 507 and err.value.code == "disk-floor"
    b = spool.admit("192.0.2.2", 8 * MB)  # exactly at the floor
    with pytest.raises(uploads.UploadRefused) as grow:
        b.grow(1)
    assert grow.value.code == "disk-floor"
    a.release()
    a.release()  # idempotent
    assert spool.reserved == 8 * MB and spool.active == 1
    disk.free = 1000 * MB  # lots of disk: now the spool quota (40 MB) bites
    c = spool.admit("192.0.2.3", 30 * MB)
    with pytest.raises(uploads.UploadRefused) as quota:
        spool.admit("192.0.2.4", 3 * MB)
    assert quota.value.code == "spool-full"
    b.release()
    c.release()
    assert spool.reserved == 0 and spool.active == 0


def test_floor_includes_the_retention_percentage(tmp_path: Path) -> None:
    lim = _limits(floor_bytes=1 * MB, floor_percent=20.0, headroom_bytes=1 * MB)
    assert lim.floor(100 * MB) == 21 * MB
    spool = uploads.Spool(tmp_path, lim, probe=Disk(free=30 * MB))
    with pytest.raises(uploads.UploadRefused):
        spool.admit("x", 10 * MB)
    spool.admit("x", 9 * MB).release()


def test_per_address_rate_and_parallel_limits(tmp_path: Path) -> None:
    now = [1000.0]
    spool = uploads.Spool(
        tmp_path, _limits(per_hour=3, parallel=2), probe=Disk(10_000 * MB), clock=lambda: now[0]
    )
    for _ in range(3):
        spool.admit("2001:db8::1", 1).release()
    with pytest.raises(uploads.UploadRefused) as rate:
        spool.admit("2001:db8::ffff", 1)  # the same /64
    assert rate.value.status == 429 and rate.value.retry_after == 3600
    spool.admit("2001:db8:1::1", 1).release()  # another /64 is not affected
    now[0] += 3600
    t1 = spool.admit("2001:db8::1", 1)
    t2 = spool.admit("192.0.2.9", 1)
    with pytest.raises(uploads.UploadRefused) as busy:
        spool.admit("192.0.2.10", 1)
    assert busy.value.status == 503
    t1.release()
    t2.release()


def test_tickets_remove_their_files_and_a_restart_sweeps_leftovers(tmp_path: Path) -> None:
    spool = uploads.Spool(tmp_path, _limits(), probe=Disk(10_000 * MB))
    t = spool.admit("x", 1)
    (t.workdir() / "upload").write_bytes(b"x")
    t.release()
    assert list(spool.root.iterdir()) == []
    (spool.root / "u-crashed").mkdir()
    (spool.root / "u-crashed" / "upload").write_bytes(b"x")
    (spool.root / "tmpabc").write_bytes(b"x")
    uploads.Spool(tmp_path, _limits(), probe=Disk(10_000 * MB))
    assert list(spool.root.iterdir()) == []


@pytest.mark.parametrize(
    ("forwarded", "trust", "addr"),
    [
        ("198.51.100.7", True, "198.51.100.7"),
        ("203.0.113.9, 198.51.100.7", True, "198.51.100.7"),  # what the proxy appended
        ("198.51.100.7, ", True, "198.51.100.7"),  # as werkzeug's ProxyFix reads it
        (" , ", True, "10.0.0.2"),
        (None, True, "10.0.0.2"),
        ("198.51.100.7", False, "10.0.0.2"),  # no proxy trusted: the header is anyone's
    ],
)
def test_the_uploader_behind_the_trusted_proxy(forwarded: str | None, trust: bool, addr: str):
    assert uploads.client_address("10.0.0.2", forwarded, trust) == addr


# ---- zip limits -----------------------------------------------------------------------------


def test_zip_bomb_listed_four_times_is_refused_before_unpacking(tmp_path: Path) -> None:
    bomb = zip_bomb(tmp_path / "bomb.zip", member_mb=64, listed=4)
    assert bomb.stat().st_size < MB
    with pytest.raises(uploads.UploadRefused) as err:
        uploads.unzip_need(bomb, _limits(unzipped_bytes=10_000 * MB))
    assert err.value.code == "zip-bomb"


def test_zip_listing_a_clip_twice_or_unpacking_too_much_is_refused(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).bytes(3 * MB)
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as z:
        z.writestr("bundle.json", '{"clips": [{"clip": "c.mp4"}, {"clip": "c.mp4"}]}')
        z.writestr("c.mp4", noise)
    with pytest.raises(uploads.UploadRefused) as dup:
        uploads.unzip_need(twice, _limits())
    assert dup.value.code == "zip-duplicate"
    once = tmp_path / "once.zip"
    with zipfile.ZipFile(once, "w") as z:
        z.writestr("bundle.json", '{"clips": [{"clip": "c.mp4"}]}')
        z.writestr("c.mp4", noise)
        z.writestr("frames/1.jpg", b"j")
    assert uploads.unzip_need(once, _limits()) == 3 * MB
    with pytest.raises(uploads.UploadRefused) as big:
        uploads.unzip_need(once, _limits(unzipped_bytes=2 * MB))
    assert big.value.code == "zip-too-large"
    with pytest.raises(uploads.UploadRefused) as members:
        uploads.unzip_need(once, _limits(max_members=2))
    assert members.value.code == "zip-members"


def test_a_bundle_naming_one_member_many_times_is_not_read_into_memory_each_time(
    big_store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A real bundle whose checkpoint names one 4 MB stored member as its time-stamp token
    64 times: under the zip limits (no ratio, no listed clip), 6 MB to upload, and before the
    verifier read the member into memory once per naming (256 MB here; 1,000 namings of a
    32 MB member, 32 GB: the Pi's memory, the station's too). The verifier stops at its
    read budget with a verdict."""
    import json
    import tracemalloc

    from station.proof.verify import READ_BUDGET, verify_bundle

    real = export_order(big_store.cfg, "BIG2", tmp_path / "real.zip").path
    crafted = tmp_path / "crafted.zip"
    with zipfile.ZipFile(real) as zin, zipfile.ZipFile(crafted, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "bundle.json":
                index = json.loads(data)
                index["checkpoint"]["timestamps"] = ["log/big.tst"] * 64
                data = json.dumps(index).encode()
            zout.writestr(info, data)
        zout.writestr("log/big.tst", np.random.default_rng(4).bytes(4 * MB))
    assert uploads.unzip_need(crafted, _limits()) < 8 * MB  # the upload's limits let it in
    tracemalloc.start()
    try:
        report = verify_bundle(crafted, tmp_dir=tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not report.ok and "bundle-malformed" in report.codes()
    assert peak < READ_BUDGET + 32 * MB, peak // MB


# ---- over the real site (waitress), on a small data disk ----------------------------------


@pytest.fixture
def tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "system-tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture
def disk_site(big_store: Store, tmp_path: Path, tmp_dir: Path):  # noqa: F811
    """The big store copied onto a 96 MB data disk; the floor at 32 MB free."""
    with small_disk(tmp_path / "disk", 96) as disk:
        st = big_store.copy(disk.root / "data")
        cfg = st.cfg.replace(
            "web", verify_max_mb=24, verify_spool_mb=200, verify_headroom_mb=16,
            verify_parallel=64, verify_per_hour=1000,
        ).replace("retention", free_floor_mb=16)  # fmt: skip
        yield disk, st, cfg


def _send_chunked(url: str, cookie: str, total: int) -> bytes:
    """POST a chunked body of ``total`` bytes (no Content-Length); the first answer line."""
    with socket.create_connection(("127.0.0.1", int(urlsplit(url).port or 0))) as s:
        s.sendall(
            b"POST /verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=bnd\r\n"
            + f"Cookie: {cookie}\r\n\r\n".encode()
        )
        chunk = b"%x\r\n" % MB + b"\0" * MB + b"\r\n"
        try:
            for _ in range(total // MB):
                s.sendall(chunk)
        except OSError:
            pass  # the server answered and closed while we were still sending
        s.settimeout(30)
        return s.recv(4096)


def _upload_expect_continue(url: str, cookie: str, token: str, data: bytes) -> int:
    """An upload as curl sends a large one (Expect: 100-continue): the body only goes once
    the server has looked at the headers; returns the final status."""
    body = (
        b'--bnd\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        + token.encode()
        + b'\r\n--bnd\r\nContent-Disposition: form-data; name="file"; filename="p.mp4"\r\n\r\n'
        + data
        + b"\r\n--bnd--\r\n"
    )
    with socket.create_connection(("127.0.0.1", int(urlsplit(url).port or 0))) as s:
        s.settimeout(60)
        s.sendall(
            b"POST /verify HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: multipart/form-data; boundary=bnd\r\nConnection: close\r\n"
            + f"Cookie: {cookie}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        first = s.recv(4096)
        if first.startswith(b"HTTP/1.1 100"):
            s.sendall(body)
            first = b""
            while b"\r\n" not in first:
                got = s.recv(4096)
                if not got:
                    break
                first += got
        return int(first.split(b" ", 2)[1])


def _site_config(disk: SmallDisk) -> dict:
    return {} if disk.mounted else {"PACKCAM_DISK_PROBE": disk.probe}


def _no_leftovers(disk: SmallDisk, st: Store, tmp_dir: Path) -> None:
    assert list((st.data / "spool" / "verify").iterdir()) == []
    assert list(tmp_dir.iterdir()) == []


def test_real_multi_mb_clip_and_bundle_verify_over_waitress(disk_site, tmp_dir: Path) -> None:
    disk, st, cfg = disk_site
    clip = clip_of(st)
    assert clip.stat().st_size > 2 * MB
    bundle = export_order(st.cfg, "BIG2", disk.root / "b.zip").path
    bundle_bytes = bundle.read_bytes()
    bundle.unlink()
    assert len(bundle_bytes) > 2 * MB
    with running_site(cfg, **_site_config(disk)) as (url, _server):
        c = Browserless(url)
        status, body = c.upload(clip.read_bytes(), "clip.mp4")
        assert status == 200 and "Authentic" in body and "BIG" in body, body[-2000:]
        status, body = c.upload(bundle_bytes, "bundle.zip")
        assert status == 200 and "Authentic" in body and "BIG2" in body, body[-2000:]
        altered = bytearray(clip.read_bytes())
        altered[len(altered) // 2] ^= 1
        status, body = c.upload(bytes(altered), "clip.mp4")
        assert status == 200 and "Not authentic" in body
        status, body = c.upload(clip.read_bytes(), "clip.mp4", token="forged")
        assert status == 400
    _no_leftovers(disk, st, tmp_dir)


def test_zip_bomb_and_oversized_uploads_leave_the_disk_alone(disk_site, tmp_dir: Path) -> None:
    disk, st, cfg = disk_site
    bomb = zip_bomb(disk.root / "bomb.zip", member_mb=256, listed=4).read_bytes()
    (disk.root / "bomb.zip").unlink()
    start_free = disk.free()
    with running_site(cfg, **_site_config(disk)) as (url, _server), FreeWatch(disk) as watch:
        c = Browserless(url)
        status, body = c.upload(bomb, "bomb.zip")
        assert status == 413 and "not a recorded clip" in body
        # over the limit, declared: refused at the headers, before any body byte is stored
        with socket.create_connection(("127.0.0.1", int(urlsplit(url).port or 0))) as s:
            s.sendall(
                b"POST /verify HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=bnd\r\n"
                b"Content-Length: 3221225472\r\n\r\n--bnd\r\n"
            )
            assert s.recv(4096).startswith(b"HTTP/1.1 413")
        # over the limit, found while streaming (chunked): cut off at the limit
        assert _send_chunked(url, c.cookie, 40 * MB).startswith(b"HTTP/1.1 413")
        # a body on any other page is capped at the site's 64 KB
        with socket.create_connection(("127.0.0.1", int(urlsplit(url).port or 0))) as s:
            s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\nx")
            assert s.recv(4096).startswith(b"HTTP/1.1 413")
    assert watch.lowest >= 32 * MB, watch.lowest
    assert disk.free() >= start_free - MB
    _no_leftovers(disk, st, tmp_dir)


def test_many_parallel_uploads_never_push_below_the_floor(disk_site, tmp_dir: Path) -> None:
    disk, st, cfg = disk_site
    clip_bytes = clip_of(st).read_bytes()
    payload = clip_bytes + np.random.default_rng(2).bytes(10 * MB)  # ~13 MB, not authentic
    statuses: list[int] = []
    lock = threading.Lock()
    with running_site(cfg, **_site_config(disk)) as (url, _server), FreeWatch(disk) as watch:
        token_client = Browserless(url)
        token = token_client.token()

        def one() -> None:
            status = _upload_expect_continue(url, token_client.cookie, token, payload)
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=one) for _ in range(300)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        status, body = token_client.upload(clip_bytes, "clip.mp4")
        assert status == 200 and "Authentic" in body
    assert len(statuses) == 300
    assert statuses.count(200) >= 1, statuses
    assert statuses.count(507) >= 1, statuses  # the floor turned some away
    assert set(statuses) <= {200, 507}, statuses
    assert watch.lowest >= 32 * MB, (watch.lowest, disk.mounted)
    _no_leftovers(disk, st, tmp_dir)


def test_rate_limit_per_address_over_waitress(disk_site, tmp_dir: Path) -> None:
    disk, st, cfg = disk_site
    cfg = cfg.replace("web", verify_per_hour=2)
    with running_site(cfg, **_site_config(disk)) as (url, _server):
        c = Browserless(url)
        token = c.token()
        for _ in range(2):
            assert c.upload(b"not a clip" * 100, "a.mp4", token=token)[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", int(urlsplit(url).port or 0), timeout=30)
        body = (
            b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
            b"x\r\n--bnd--\r\n"
        )
        conn.request(
            "POST",
            "/verify",
            body,
            {"Content-Type": "multipart/form-data; boundary=bnd", "Cookie": c.cookie},
        )
        resp = conn.getresponse()
        assert resp.status == 429 and int(resp.getheader("Retry-After") or 0) > 0
        resp.read()
        conn.close()
    _no_leftovers(disk, st, tmp_dir)


def test_behind_the_trusted_proxy_each_uploader_has_their_own_hourly_count(
    disk_site, tmp_dir: Path
) -> None:
    """With ``web.trust_proxy`` every connection comes from the reverse proxy: the hourly
    count is per uploader (the last X-Forwarded-For entry, as the app reads it), not one
    count for the whole world (before: the third uploader of the hour was told "too many
    uploads from your address")."""
    disk, st, cfg = disk_site
    cfg = cfg.replace("web", verify_per_hour=2, trust_proxy=True)
    with running_site(cfg, **_site_config(disk)) as (url, _server):
        token_client = Browserless(url)
        token = token_client.token()

        def upload(forwarded: str) -> int:
            status, _, _ = token_client.request(
                "POST",
                "/verify",
                b'--bnd\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
                + token.encode()
                + b'\r\n--bnd\r\nContent-Disposition: form-data; name="file"; filename="a"'
                + b"\r\n\r\nnot a clip\r\n--bnd--\r\n",
                {
                    "Content-Type": "multipart/form-data; boundary=bnd",
                    "X-Forwarded-For": forwarded,
                    "X-Forwarded-Proto": "https",
                },
            )
            return status

        assert [upload(f"198.51.100.{n}") for n in range(4)] == [200] * 4
        # the proxy appends the address it saw; an entry the client wrote itself is not it
        assert upload("203.0.113.9, 198.51.100.0") == 200  # 198.51.100.0's second
        assert upload("198.51.100.0") == 429  # its third this hour
        assert upload("203.0.113.9") == 200
    _no_leftovers(disk, st, tmp_dir)


def test_test_client_path_streams_without_werkzeugs_form_limit(
    big_store: Store,  # noqa: F811
    tmp_dir: Path,
) -> None:
    """Outside waitress (Flask's test client) the view admits and spools the upload itself;
    a multi-MB file is read in chunks, not refused by the 64 KB form-memory limit."""
    from flask import Flask

    from web import verify as verify_web

    app = Flask("t")
    app.config.update(PACKCAM=big_store.cfg, TESTING=True)
    app.register_blueprint(verify_web.bp)
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.mp4"\r\n\r\n'
        + clip_of(big_store).read_bytes()
        + b"\r\n--b--\r\n"
    )
    resp = app.test_client().post(
        "/verify", data=body, content_type="multipart/form-data; boundary=b"
    )
    assert resp.status_code == 200 and "Authentic" in resp.get_data(as_text=True)
    assert list((big_store.data / "spool" / "verify").iterdir()) == []
    assert list(tmp_dir.iterdir()) == []


def test_an_upload_cut_off_midway_leaves_nothing(disk_site, tmp_dir: Path) -> None:
    import time

    from web.verify import spool_of

    disk, st, cfg = disk_site
    with running_site(cfg, **_site_config(disk)) as (url, server):
        spool = spool_of(server.packcam_app)
        with socket.create_connection(("127.0.0.1", int(urlsplit(url).port or 0))) as s:
            s.sendall(
                b"POST /verify HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=bnd\r\n"
                b"Content-Length: 10485760\r\n\r\n" + b"\0" * (5 * MB)
            )
            deadline = time.monotonic() + 10
            while spool.active == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert spool.active == 1 and spool.reserved > 10 * MB
        deadline = time.monotonic() + 10
        while spool.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert spool.active == 0 and spool.reserved == 0
        assert open_unlinked(st.data) == 0  # waitress's spool file is closed too
    _no_leftovers(disk, st, tmp_dir)


def test_a_chunked_upload_stopped_halfway_leaves_nothing_and_the_next_is_checked(
    disk_site, tmp_dir: Path
) -> None:
    """A chunked upload (no Content-Length: admitted for the largest file it may be) of a
    real clip stops at half and the client hangs up: its reservation and its spooled body go,
    nothing is left in the spool or the temp folder, and the same clip uploaded next verifies."""
    import time

    from web.verify import spool_of

    disk, st, cfg = disk_site
    clip = clip_of(st).read_bytes()
    with running_site(cfg, **_site_config(disk)) as (url, server):
        spool = spool_of(server.packcam_app)
        c = Browserless(url)
        token = c.token()
        body = (
            b'--bnd\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            + token.encode()
            + b'\r\n--bnd\r\nContent-Disposition: form-data; name="file"; filename="c.mp4"'
            + b"\r\n\r\n"
            + clip[: len(clip) // 2]
        )
        with socket.create_connection(("127.0.0.1", int(urlsplit(url).port or 0))) as s:
            s.sendall(
                b"POST /verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: multipart/form-data; boundary=bnd\r\n"
                + f"Cookie: {c.cookie}\r\n\r\n".encode()
            )
            for i in range(0, len(body), 64 * 1024):
                part = body[i : i + 64 * 1024]
                s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            deadline = time.monotonic() + 10
            while open_unlinked(st.data) < MB and time.monotonic() < deadline:
                time.sleep(0.01)
            assert spool.active == 1 and open_unlinked(st.data) >= MB  # spooled on the data disk
        deadline = time.monotonic() + 10
        while (spool.active or open_unlinked(st.data)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert spool.active == 0 and spool.reserved == 0
        assert open_unlinked(st.data) == 0
        _no_leftovers(disk, st, tmp_dir)
        status, page = c.upload(clip, "clip.mp4", token=token)
        assert status == 200 and "Authentic" in page
    _no_leftovers(disk, st, tmp_dir)


def test_an_upload_that_trickles_is_cut_off_and_frees_its_place(
    disk_site, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sends a few bytes and then one every so often (waitress closes only a
    silent connection) held one of the verify_parallel places for as long as it liked: two
    closed /verify to everyone. Past its grace (shortened here) an upload below
    verify_min_kbps on average is answered 408 in both languages, its spool goes, and the
    one place there is serves the next upload (a real clip, which verifies)."""
    import time

    from web.verify import spool_of

    monkeypatch.setattr(uploads, "SLOW_GRACE_S", 0.5)
    disk, st, cfg = disk_site
    cfg = cfg.replace("web", verify_parallel=1, verify_min_kbps=64)
    clip = clip_of(st).read_bytes()
    with running_site(cfg, **_site_config(disk)) as (url, server):
        spool = spool_of(server.packcam_app)
        c = Browserless(url)
        token = c.token()
        with socket.create_connection(("127.0.0.1", int(urlsplit(url).port or 0))) as s:
            s.settimeout(10)
            s.sendall(
                b"POST /verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: multipart/form-data; boundary=bnd\r\n"
                + f"Cookie: {c.cookie}\r\n\r\n".encode()
            )
            head = b'--bnd\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            s.sendall(b"%x\r\n" % len(head) + head + b"\r\n")
            deadline = time.monotonic() + 10
            while not spool.active and time.monotonic() < deadline:
                time.sleep(0.01)
            assert spool.active == 1  # it holds the one place
            answer = b""
            for _ in range(40):  # a byte every 0.1 s: 10 B/s, far below 64 KB/s
                time.sleep(0.1)
                try:
                    s.sendall(b"1\r\nx\r\n")
                except OSError:
                    break
            while chunk := s.recv(65536):
                answer += chunk
        status_line, _, rest = answer.partition(b"\r\n")
        assert b" 408 " in status_line, answer[:300]
        text = rest.decode("utf-8", "replace")
        assert "上传太慢" in text and "The upload was too slow (under 64 KB/s" in text, text
        deadline = time.monotonic() + 10
        while spool.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert spool.active == 0 and spool.reserved == 0
        _no_leftovers(disk, st, tmp_dir)
        status, page = c.upload(clip, "clip.mp4", token=token)
        assert status == 200 and "Authentic" in page
    _no_leftovers(disk, st, tmp_dir)


def test_hostile_upload_names_are_only_shown_never_used(disk_site, tmp_dir: Path) -> None:
    """The name a browser sends with the file is the uploader's text: a path climbing out of
    the spool, a NUL, 300 Chinese characters, a bidi override. The clip is checked as any other,
    the name is shown as its characters (escapes for the invisible ones), no file is made
    under it, and nothing is left."""
    import html
    import re

    disk, st, cfg = disk_site
    clip = clip_of(st).read_bytes()
    names = {
        "../../../../web-secret": "../../../../web-secret",
        "a\x00b.mp4": "a\\x00b.mp4",
        "订" * 300 + ".mp4": "订" * 300 + ".mp4",
        "\u202egnp.mp4": "\\u202egnp.mp4",
    }
    with running_site(cfg, **_site_config(disk)) as (url, _server):
        c = Browserless(url)
        token = c.token()
        for sent, shown in names.items():
            status, page = c.upload(clip, sent, token=token)
            assert status == 200 and "Authentic" in page, (sent[:20], page[-1500:])
            found = re.search(r"File: <code>([^<]*)</code>", page)
            assert found and html.unescape(found.group(1)) == shown
            assert str(st.data) not in page
    made = [p for p in disk.root.rglob("*") if re.search("web-secret|订订|gnp|b\\.mp4", p.name)]
    assert made == [st.data / "web-secret"]  # the site's own, made at start
    _no_leftovers(disk, st, tmp_dir)


def test_receive_frees_the_body_file_behind_the_copy(tmp_path: Path) -> None:
    """A body spooled in a file (as waitress's) is hole-punched as the part is copied out:
    the two together never hold much more than one upload."""
    data = np.random.default_rng(3).bytes(8 * MB)
    body_file = tmp_path / "body"
    body_file.write_bytes(
        b'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\ntok\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.mp4"\r\n\r\n'
        + data
        + b"\r\n--b--\r\n"
    )
    spool = uploads.Spool(tmp_path / "d", _limits(max_bytes=20 * MB), probe=Disk(10_000 * MB))
    ticket = spool.admit("x", body_file.stat().st_size)
    seen: list[dict[str, str]] = []
    with body_file.open("r+b") as body:  # waitress opens its spool file w+b
        up = uploads.receive(
            body, "multipart/form-data; boundary=b", ticket, spool.limits,
            check_fields=lambda f: seen.append(dict(f)),
        )  # fmt: skip
        allocated = os.fstat(body.fileno()).st_blocks * 512
    assert up.path.read_bytes() == data and up.size == len(data) and up.name == "x.mp4"
    assert seen == [{"csrf_token": "tok"}]
    assert allocated < 2 * MB, allocated  # 8 MB copied out, the body's blocks freed
    assert ticket.reserved == body_file.stat().st_size  # no second copy had to be reserved
    ticket.release()
    assert list(spool.root.iterdir()) == []


def test_a_full_disk_mid_upload_is_a_clear_507_and_leaves_nothing(
    web_env, mp4_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data disk fills up (the station recording) while an admitted upload is copied to
    the spool: the page says so (507, not "something went wrong"), the reservation is given
    back and the spool is empty."""
    from conftest_web import csrf_of, make_app

    from web.verify import spool_of

    real_workdir = uploads.Ticket.workdir

    def full_disk(ticket: uploads.Ticket) -> Path:
        d = real_workdir(ticket)
        if not (d / "upload").is_symlink():
            (d / "upload").symlink_to("/dev/full")  # every write: ENOSPC
        return d

    monkeypatch.setattr(uploads.Ticket, "workdir", full_disk)
    app = make_app(web_env, PROPAGATE_EXCEPTIONS=False)
    client = app.test_client()
    token = csrf_of(client)
    body = (
        b'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        + token.encode()
        + b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="c.mp4"\r\n\r\n'
        + mp4_template.read_bytes()
        + b"\r\n--b--\r\n"
    )
    resp = client.post("/verify", data=body, content_type="multipart/form-data; boundary=b")
    assert resp.status_code == 507
    assert "disk space" in resp.get_data(as_text=True)
    spool = spool_of(app)
    assert spool.active == 0 and spool.reserved == 0
    assert list((web_env.data_dir / "spool" / "verify").iterdir()) == []


@pytest.mark.parametrize("chunked", [False, True])
def test_an_upload_over_the_limit_is_told_the_limit_in_both_languages(
    web_env, chunked: bool
) -> None:
    """Over the real server, a file over ``verify_max_mb`` (declared, or found while a chunked
    body arrives) is answered as the page words it, in Chinese and English with the limit in
    MB; waitress's own answer said "exceeds max_body of 2097152" in English only."""
    cfg = web_env.cfg.replace("web", verify_max_mb=1)
    with running_site(cfg) as (_url, server):
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=30) as s:
            head = b"POST /verify HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            if chunked:
                s.sendall(head + b"boundary=bnd\r\nTransfer-Encoding: chunked\r\n\r\n")
                try:
                    for _ in range(4):
                        s.sendall(b"%x\r\n" % MB + b"\0" * MB + b"\r\n")
                except OSError:
                    pass  # the server answered and closed while we were still sending
            else:
                s.sendall(head + b"boundary=bnd\r\nContent-Length: 5242880\r\n\r\n--bnd\r\n")
            answer = b""
            while b"(generated by" not in answer:
                got = s.recv(4096)
                if not got:
                    break
                answer += got
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        text = answer.decode("utf-8")
        assert "文件太大 · The file is larger than the 1 MB limit" in text, text
        assert "max_body" not in text
        assert list((web_env.data_dir / "spool" / "verify").iterdir()) == []
