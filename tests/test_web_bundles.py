"""Evidence-bundle downloads: one cached file on the data disk, Range, nothing left in /tmp."""

from __future__ import annotations

import re
import socket
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from conftest_web import PASSWORDS, add_users
from proof_support import Store, store, tsa_ec  # noqa: F401 (fixtures)
from verify_support import Browserless, big_store, running_site  # noqa: F401 (fixture)

from station.ledger import Ledger
from station.proof.verify import verify_bundle
from web.bundles import BundleCache


def _login(c: Browserless, role: str = "viewer") -> None:
    _, _, page = c.request("GET", "/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert token
    form = urlencode(
        {"username": role, "password": PASSWORDS[role], "csrf_token": token.group(1).decode()}
    ).encode()
    status, _, _ = c.request(
        "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 302


@pytest.fixture
def site(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    tmp = tmp_path / "system-tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    st = store.copy(tmp_path / "data")
    add_users(st.data)
    ledger = Ledger.in_data_dir(st.data)
    ids = {c.order_id: c.id for c in ledger.clips()}
    ledger.close()
    yield st, ids, tmp


def test_full_range_and_aborted_downloads_leave_nothing_in_tmp(site, tmp_path: Path) -> None:
    st, ids, tmp = site
    with running_site(st.cfg) as (url, _server):
        c = Browserless(url)
        _login(c)
        path = f"/clips/{ids['B2']}/bundle.zip"
        status, headers, full = c.request("GET", path)
        assert status == 200 and headers["content-type"] == "application/zip"
        out = tmp_path / "B2.zip"
        out.write_bytes(full)
        assert verify_bundle(out).ok
        status, headers, part = c.request("GET", path, headers={"Range": "bytes=100-199"})
        assert status == 206 and part == full[100:200]
        status, _, part = c.request(
            "GET", path, headers={"Range": "bytes=1000-", "If-Range": headers["etag"]}
        )
        assert status == 206 and part == full[1000:]
        # aborted: read the headers and a few bytes, then hang up
        with socket.create_connection(("127.0.0.1", int(urlsplit(url).port or 0))) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nCookie: {c.cookie}\r\n\r\n".encode())
            assert s.recv(1024).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)
        status, _, again = c.request("GET", path)
        assert status == 200 and again == full  # the cached file, not a rebuilt one
    assert list(tmp.iterdir()) == []
    cached = list((st.data / "cache" / "bundles").iterdir())
    assert [p.suffix for p in cached] == [".zip"]


def test_a_bundle_larger_than_the_cache_is_refused_with_507(
    big_store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    st = big_store.copy(tmp_path / "data")
    add_users(st.data)
    ledger = Ledger.in_data_dir(st.data)
    big1 = ledger.clips("BIG1")[0]
    ledger.close()
    assert big1.size > 2 << 20
    cfg = st.cfg.replace("web", bundle_cache_mb=2)
    with running_site(cfg) as (url, _server):
        c = Browserless(url)
        _login(c)
        status, _, body = c.request("GET", f"/clips/{big1.id}/bundle.zip")
        assert status == 507 and b"free space" in body
    assert list((st.data / "cache" / "bundles").iterdir()) == []


def test_bundle_cache_expires_and_sweeps_partial_builds(tmp_path: Path) -> None:
    now = [0.0]
    root = tmp_path / "bundles"
    root.mkdir()
    for name in ("a.zip", "b.zip", "c.zip.part"):
        (root / name).write_bytes(b"x" * 1000)
    cache = BundleCache(root, 10_000, ttl_s=600, clock=lambda: now[0] + time.time())
    assert sorted(p.name for p in root.iterdir()) == ["a.zip", "b.zip", "c.zip.part"]
    now[0] += 700
    cache.sweep()
    assert sorted(p.name for p in root.iterdir()) == ["c.zip.part"]
    now[0] += 3600
    cache.sweep()
    assert list(root.iterdir()) == []
    (root / "old.zip").write_bytes(b"x" * 6000)
    (root / "new.zip").write_bytes(b"x" * 3000)
    import os

    os.utime(root / "old.zip", (time.time() - 60, time.time() - 60))
    now[0] = 0
    cache.sweep(need=2000)  # 9000 + 2000 > 10000: the oldest goes
    assert [p.name for p in root.iterdir()] == ["new.zip"]


def test_a_share_link_gives_the_buyer_the_evidence_bundle(site, tmp_path: Path) -> None:
    """The buyer's page links the order's bundle; it downloads (Range too), verifies offline,
    is logged as the link's use, and stops with the link."""
    st, _ids, tmp = site
    with running_site(st.cfg) as (url, _server):
        c = Browserless(url)
        _login(c)
        _, _, page = c.request("GET", "/orders/B2")
        token = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        assert token
        form = urlencode(
            {"order_id": "B2", "days": "7", "csrf_token": token.group(1).decode()}
        ).encode()
        c.request("POST", "/shares", form, {"Content-Type": "application/x-www-form-urlencoded"})
        _, _, page = c.request("GET", "/orders/B2")
        share = re.search(rb'class="share-url" readonly value="([^"]+)"', page)
        assert share
        path = urlsplit(share.group(1).decode()).path
        buyer = Browserless(url)
        status, _, shared = buyer.request("GET", path)
        assert status == 200 and f'href="{path}/bundle.zip"'.encode() in shared
        status, _, data = buyer.request("GET", path + "/bundle.zip")
        assert status == 200
        out = tmp_path / "from-share.zip"
        out.write_bytes(data)
        assert verify_bundle(out).ok
        status, _, part = buyer.request("GET", path + "/bundle.zip", headers={"Range": "bytes=0-9"})
        assert status == 206 and part == data[:10]
        _, _, page = c.request("GET", "/orders/B2")
        assert b"share link" in page  # the access log names the link's use
        assert buyer.request("GET", path[:-3] + "xyz/bundle.zip")[0] == 404
    assert list(tmp.iterdir()) == []
