"""Helpers for the /verify upload tests: multi-MB recorded clips, a small data disk, a server."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import proof_support
import pytest
from proof_support import H, Store, W, build_store

MB = 1 << 20


def noise_i420(i: int) -> np.ndarray:
    """A picture x264 cannot compress much (so a short clip is megabytes)."""
    return np.random.default_rng(i).integers(0, 256, (H * 3 // 2, W), dtype=np.uint8)


def build_big_store(root: Path, tsa: Any, monkeypatch: pytest.MonkeyPatch) -> Store:
    """Orders BIG1 and BIG2 recorded by the real Recorder, each clip a few MB of noise."""
    with monkeypatch.context() as m:
        m.setattr(proof_support, "frame_i420", noise_i420)
        real = proof_support.record_orders

        def record(cfg: Any, finalizers: tuple, orders: list[str], **kw: Any) -> list:
            return real(cfg, finalizers, orders, **{**kw, "frames": 160})

        m.setattr(proof_support, "record_orders", record)
        return build_store(root, tsa, ["BIG1", "BIG2"], c2pa=False)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory, tsa_ec: Any) -> Store:
    mp = pytest.MonkeyPatch()
    try:
        return build_big_store(tmp_path_factory.mktemp("big"), tsa_ec, mp)
    finally:
        mp.undo()


def clip_of(st: Store, n: int = 0) -> Path:
    return sorted(st.data.glob("clips/**/*.mp4"))[n]


def zip_bomb(path: Path, member_mb: int, listed: int) -> Path:
    """A bundle whose one zero-filled "clip" (deflated to almost nothing) is listed N times."""
    import json

    zeros = b"\0" * (member_mb * MB)
    index = {
        "format": "packcam-evidence-bundle/1",
        "order_id": "BOMB",
        "keys": {},
        "checkpoint": {},
        "clips": [{"clip": "clips/zero.mp4"} for _ in range(listed)],
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bundle.json", json.dumps(index))
        z.writestr("clips/zero.mp4", zeros)
    return path


class Browserless:
    """A cookie-keeping HTTP client for one site (http.client: nothing else is needed)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.cookie = ""

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            h = dict(headers or {})
            if self.cookie:
                h["Cookie"] = self.cookie
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            for k, v in resp.getheaders():
                if k.lower() == "set-cookie":
                    self.cookie = v.split(";", 1)[0]
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def token(self) -> str:
        _, _, page = self.request("GET", "/verify")
        m = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        assert m, page[:300]
        return m.group(1).decode()

    def upload(self, data: bytes, name: str, token: str | None = None) -> tuple[int, str]:
        token = token if token is not None else self.token()
        body = (
            b'--bnd\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            + token.encode()
            + b'\r\n--bnd\r\nContent-Disposition: form-data; name="file"; filename="'
            + name.encode()
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + data
            + b"\r\n--bnd--\r\n"
        )
        status, _, out = self.request(
            "POST",
            "/verify",
            body,
            {"Content-Type": "multipart/form-data; boundary=bnd"},
        )
        return status, out.decode("utf-8", "replace")


def verify_page(app: Any, payload: bytes, lang: str = "en", filename: str = "clip.mp4") -> str:
    """A site's /verify page's answer to a file uploaded by anyone, through the app's test
    client (the body built here: werkzeug's form encoder would spool a multi-MB file to a temp
    file it never closes)."""
    client = app.test_client()
    client.get(f"/lang/{lang}")
    client.get("/verify")
    with client.session_transaction() as sess:
        token = sess.setdefault("csrf", "c" * 43)
    body = (
        b'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
        + token.encode()
        + b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="'
        + filename.encode()
        + b'"\r\n\r\n'
        + payload
        + b"\r\n--b--\r\n"
    )
    resp = client.post("/verify", data=body, content_type="multipart/form-data; boundary=b")
    assert resp.status_code == 200
    return str(resp.get_data(as_text=True))


@dataclass
class SmallDisk:
    """A data dir on a small filesystem (a tmpfs when this process may mount one), or on the
    normal disk with a disk probe that reports a small one (``probe``), so the free-space
    floor can be reached in a test."""

    root: Path
    size: int
    mounted: bool

    def used(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                with suppress(FileNotFoundError):
                    total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
        return total

    def free(self) -> int:
        if self.mounted:
            st = os.statvfs(self.root)
            return st.f_bavail * st.f_frsize
        return self.size - self.used() - open_unlinked(self.root)

    def probe(self, _path: Path) -> tuple[int, int]:
        return self.free(), self.size


def open_unlinked(root: Path) -> int:
    """Bytes of files under ``root`` that this process holds open after deleting them."""
    total = 0
    fd_dir = Path("/proc/self/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
            if target.startswith(str(root)) and target.endswith(" (deleted)"):
                total += os.fstat(int(fd.name)).st_blocks * 512
        except OSError:
            pass
    return total


@contextmanager
def small_disk(where: Path, size_mb: int) -> Iterator[SmallDisk]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(where)],
            capture_output=True,
        )
        mounted = res.returncode == 0
    try:
        yield SmallDisk(where, size_mb * MB, mounted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], check=False)


class FreeWatch:
    """Samples a SmallDisk's free space on a thread; ``lowest`` is the least seen."""

    def __init__(self, disk: SmallDisk, every_s: float = 0.002) -> None:
        self.disk = disk
        self.every_s = every_s
        self.lowest = disk.free()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.lowest = min(self.lowest, self.disk.free())

    def __enter__(self) -> FreeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.lowest = min(self.lowest, self.disk.free())


@contextmanager
def running_site(cfg: Any, **test_config: Any) -> Iterator[tuple[str, Any]]:
    """The real site (``packcam web``'s waitress server) on 127.0.0.1 in a thread."""
    from web import cli

    server = cli.make_server(cfg, "127.0.0.1", 0, test_config=test_config or None)
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    try:
        yield cli.server_url(server), server
    finally:
        stop.set()
        thread.join(15)
