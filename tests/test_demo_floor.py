"""`packcam demo` at the packing table: sounds into a log, the screen URL, webhooks received."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from station import config as config_mod
from station.capture.synthetic import DEMO_SESSION
from station.floor.demo_floor import DemoReceiver
from station.floor.webhooks import sign
from station.service import run_demo
from web.cli import start_demo_site


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_demo_receiver_checks_signatures(tmp_path: Path) -> None:
    out = io.StringIO()
    rx = DemoReceiver("k" * 32, tmp_path / "rx.log", out)
    try:
        body = b'{"event": "clip.finished", "order_id": "PO-1"}'
        for secret, want in ((b"k" * 32, 200), (b"x" * 32, 401)):
            req = urllib.request.Request(
                rx.url, data=body, method="POST",
                headers={"X-Packcam-Signature": sign(secret, int(time.time()), body)},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    code = resp.status
            except urllib.error.HTTPError as exc:
                code = exc.code
                exc.close()
            assert code == want
    finally:
        rx.close()
    lines = [json.loads(x) for x in (tmp_path / "rx.log").read_text("utf-8").splitlines()]
    assert [x["signature_ok"] for x in lines] == [True, False]
    assert "signature ok" in out.getvalue() and "signature BAD" in out.getvalue()


@pytest.mark.slow
def test_the_demo_plays_sounds_prints_the_screen_and_delivers_webhooks(tmp_path: Path) -> None:
    cfg = config_mod.load(None).with_data_dir(tmp_path / "demo")
    cfg = cfg.replace("session", **DEMO_SESSION).replace("web", port=free_port())
    cfg = cfg.replace("camera", width=640, height=360, fps=15.0)
    out = io.StringIO()
    run_demo(cfg, threading.Event(), duration=10.0, start_web=start_demo_site, out=out)
    text = out.getvalue()
    assert f"station screen at http://127.0.0.1:{cfg.web.port}/screen" in text
    sounds = (tmp_path / "demo/sounds.log").read_text("utf-8")
    assert "sound order-started" in sounds
    received = [
        json.loads(x)
        for x in (tmp_path / "demo/webhooks-received.log").read_text("utf-8").splitlines()
    ]
    assert received and all(r["signature_ok"] for r in received)
    assert "clip.finished" in {r["event"] for r in received}
    assert "webhook clip.finished" in text
    assert (tmp_path / "demo/screen").is_dir()
    # a packer picked their name on the station screen, and the station took it as a badge
    assert "王芳 signed in on the station screen" in text
    (doc,) = [json.loads(p.read_text("utf-8")) for p in (tmp_path / "demo/screen").glob("*.json")]
    assert doc["packer"] == "王芳"
