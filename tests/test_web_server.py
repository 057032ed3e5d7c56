"""The site under waitress on 127.0.0.1: Range responses come from waitress' file wrapper."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import threading
import time
from urllib.parse import urlencode

import pytest
from conftest_web import PASSWORDS, WebEnv

from web import cli


@pytest.fixture
def server(web_env: WebEnv):
    srv = cli.make_server(web_env.cfg, "127.0.0.1", 0)
    srv.packcam_app.config["PASSWORD_METHOD"] = "scrypt:1024:8:1"
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(srv,), kwargs={"stop": stop})
    thread.start()
    conn = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
    conn.request("GET", "/login")
    resp = conn.getresponse()
    token = re.search(r'name="csrf_token" value="([^"]+)"', resp.read().decode()).group(1)
    cookie = resp.getheader("Set-Cookie").split(";")[0]
    body = urlencode({"username": "viewer", "password": PASSWORDS["viewer"], "csrf_token": token})
    conn.request("POST", "/login", body=body, headers={
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 302
    cookie = resp.getheader("Set-Cookie").split(";")[0]
    try:
        yield conn, cookie
    finally:
        conn.close()
        stop.set()
        thread.join(10)


def get(conn, cookie: str, path: str, method: str = "GET", **headers: str):
    conn.request(method, path, headers={"Cookie": cookie, **headers})
    resp = conn.getresponse()
    return resp, resp.read()


def test_ranges_through_waitress_are_byte_exact(server, web_env: WebEnv) -> None:
    conn, cookie = server
    clip = web_env.clips["plain"]
    data = web_env.file("plain").read_bytes()
    url = f"/clips/{clip.id}/video"
    resp, body = get(conn, cookie, url)
    assert resp.status == 200 and body == data
    for header, expect in [
        ("bytes=0-99", data[:100]),
        ("bytes=1000-", data[1000:]),
        ("bytes=-777", data[-777:]),
        (f"bytes=-{len(data) + 777}", data),  # a suffix longer than the file: all of it
        (f"bytes={len(data) - 1}-", data[-1:]),
        ("bytes=5000-5000", data[5000:5001]),
    ]:
        resp, body = get(conn, cookie, url, Range=header)
        assert resp.status == 206, header
        assert body == expect, header
        assert int(resp.getheader("Content-Length")) == len(expect)
    resp, body = get(conn, cookie, url, Range=f"bytes={len(data)}-")
    assert resp.status == 416 and body == b""
    resp, body = get(conn, cookie, url, Range="bytes=0-1,5-6")
    assert resp.status == 200 and body == data


def test_an_empty_clip_file_is_sent_empty_whatever_range_is_asked(server, web_env: WebEnv) -> None:
    """A clip file found empty on disk (a damaged disk, fsck): every Range is ignored (RFC 9110
    section 14.2 allows it), the answer is an empty 200, and the connection serves on."""
    conn, cookie = server
    web_env.file("plain").write_bytes(b"")
    url = f"/clips/{web_env.clips['plain'].id}/video"
    for method in ("GET", "HEAD"):
        for header in ("bytes=0-", "bytes=-5", "bytes=0-0", "bytes=5-"):
            resp, body = get(conn, cookie, url, method=method, Range=header)
            assert (resp.status, body) == (200, b""), (method, header)
            assert resp.getheader("Content-Length") == "0"
            assert resp.getheader("Content-Range") is None
    other = web_env.file("unicode").read_bytes()
    resp, body = get(conn, cookie, f"/clips/{web_env.clips['unicode'].id}/video")
    assert resp.status == 200 and body == other


def test_head_and_304_do_not_leak_files(server, web_env: WebEnv) -> None:
    conn, cookie = server
    url = f"/clips/{web_env.clips['plain'].id}/video"
    resp, _ = get(conn, cookie, url)
    etag = resp.getheader("ETag")
    clip_file = str(web_env.file("plain").resolve())

    def open_clip_fds() -> int:
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                n += os.readlink(f"/proc/self/fd/{fd}") == clip_file
        return n

    for _ in range(40):
        resp, body = get(conn, cookie, url, method="HEAD")
        assert resp.status == 200 and body == b""
        resp, body = get(conn, cookie, url, **{"If-None-Match": etag})
        assert resp.status == 304
        resp, body = get(conn, cookie, url, Range="bytes=0-9")
        assert resp.status == 206 and len(body) == 10
    # waitress closes a sent file wrapper from its I/O thread, at most a moment later.
    get(conn, cookie, "/login")
    deadline = time.monotonic() + 3
    while open_clip_fds() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_clip_fds() == 0


def test_a_stopped_server_closes_its_databases(web_env: WebEnv) -> None:
    """Each server thread keeps its web.sqlite3 and clip index handles between requests, the
    site one search index: when the server stops, none of them stays open (a process that
    serves again, or a test, would otherwise hold their files and locks until collected)."""

    def open_databases() -> list[str]:
        names = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if target.startswith(str(web_env.data_dir)) and ".sqlite3" in target:
                    names.append(os.path.basename(target))
        return sorted(names)

    before = open_databases()
    srv = cli.make_server(web_env.cfg, "127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(srv,), kwargs={"stop": stop})
    thread.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.effective_port, timeout=10)
        for path in ("/login", "/share/nosuchtoken"):  # web.sqlite3, then the clip index
            conn.request("GET", path)
            conn.getresponse().read()
        conn.close()
        assert "web.sqlite3" in open_databases()  # kept by the thread that served
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert open_databases() == before
