"""Live and kiosk streams over a real server (waitress, real sockets): a client that goes away
gives its stream slot back at once, not at the stream's next write."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from conftest_web import PASSWORDS, WebEnv
from test_web_live import write_station

import web.live
import web.screen
from station.floor.screen import ScreenFeed
from web import cli

KEY = "desk-1"
WAIT_S = 10.0  # a bound for a condition, polled; before the fix it is never met


def _request(
    port: int, path: str, cookie: str = "", method: str = "GET", body: str = ""
) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    if body:
        head += "Content-Type: application/x-www-form-urlencoded\r\n"
        head += f"Content-Length: {len(body.encode())}\r\n"
    sock.sendall((head + "\r\n" + body).encode())
    return sock


def _head(sock: socket.socket) -> tuple[int, str]:
    """The response's status and its header block (the body is left in the socket)."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    head = got.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return int(head.split(" ", 2)[1]), head


def _login(port: int) -> str:
    sock = _request(port, "/login")
    data = b""
    while b"</html>" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    text = data.decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)
    cookie = re.search(r"Set-Cookie: ([^;]+);", text).group(1)
    body = urlencode(
        {"username": "operator", "password": PASSWORDS["operator"], "csrf_token": token}
    )
    sock = _request(port, "/login", cookie, "POST", body)
    status, head = _head(sock)
    sock.close()
    assert status == 302
    return re.search(r"Set-Cookie: ([^;]+);", head).group(1)


@pytest.fixture
def site(web_env: WebEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, str]]:
    # The frame and the screen never change here and no keepalive falls due while the test
    # runs: a write to the gone client can never be what gives a slot back.
    monkeypatch.setattr(web.live, "KEEPALIVE_S", 3600.0)
    monkeypatch.setattr(web.screen, "KEEPALIVE_S", 3600.0)
    write_station(web_env.data_dir / "live", KEY)
    feed = ScreenFeed(web_env.data_dir, KEY)
    feed.close()
    cfg = web_env.cfg.replace("web", threads=4)  # two stream slots of each kind, two threads free
    server = cli.make_server(cfg, "127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    try:
        port = server.effective_port
        yield port, _login(port)
    finally:
        stop.set()
        thread.join(15)


def _open_all(port: int, path: str, cookie: str) -> list[socket.socket]:
    """Open streams until the site refuses one (503); the open ones."""
    held: list[socket.socket] = []
    for _ in range(10):
        sock = _request(port, path, cookie)
        status, _ = _head(sock)
        if status != 200:
            sock.close()
            assert status == 503
            return held
        held.append(sock)
    raise AssertionError(f"{path}: 10 streams open and none refused")


@pytest.mark.parametrize(
    "path",
    [f"/live/{KEY}/stream.mjpg", f"/screen/{KEY}/stream.mjpg", f"/screen/{KEY}/events"],
)
def test_a_closed_stream_gives_its_slot_back_while_nothing_is_written(site, path: str) -> None:
    port, cookie = site
    held = _open_all(port, path, cookie)
    assert held  # the slots there are
    for sock in held:
        sock.close()  # the browser tab closed (or the kiosk reloaded)
    reopened: list[socket.socket] = []
    deadline = time.monotonic() + WAIT_S
    try:
        while len(reopened) < len(held) and time.monotonic() < deadline:
            sock = _request(port, path, cookie)
            if _head(sock)[0] == 200:
                reopened.append(sock)
            else:
                sock.close()
                time.sleep(0.05)  # poll interval of the bounded wait
        assert len(reopened) == len(held), "a slot stayed taken by a client that left"
    finally:
        for sock in reopened:
            sock.close()
