"""What `packcam demo` adds at the packing table: sounds, a webhook receiver, a screen sign-in."""

from __future__ import annotations

import http.cookiejar
import json
import logging
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TextIO

from station.config import Config
from station.floor.packer_inbox import inbox_dir
from station.floor.screen import screen_path
from station.floor.webhooks import SIGNATURE_HEADER, verify

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
DEMO_SCREEN_PACKER = "王芳"  # signs in on the station screen a few seconds into the demo
SCREEN_SIGN_IN_AFTER_S = 3.0


class DemoReceiver:
    """A webhook receiver on 127.0.0.1 (any free port) that checks each delivery's signature,
    answers 200 (401 for a bad signature), appends it to ``log_path`` and tells ``out``."""

    def __init__(self, secret: str, log_path: Path, out: TextIO) -> None:
        self.secret = secret.encode()
        self.log_path = log_path
        self.out = out
        self.received: list[dict[str, object]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY:
                    self.send_error(413)
                    return
                body = self.rfile.read(length)
                ok = verify(
                    outer.secret, self.headers.get(SIGNATURE_HEADER, ""), body, now=time.time()
                )
                outer.got(body, ok)
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="demo-webhooks", daemon=True
        )
        self.thread.start()

    def got(self, body: bytes, ok: bool) -> None:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {"event": "?", "body": body[:200].decode(errors="replace")}
        line = (
            f"packcam demo: webhook {doc.get('event')} order {doc.get('order_id')!r}"
            f" signature {'ok' if ok else 'BAD'}\n"
        )
        with self._lock:
            self.received.append(doc)
            with self.log_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"signature_ok": ok, **doc}, ensure_ascii=False) + "\n")
            self.out.write(line)
            self.out.flush()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def sign_in_on_screen(
    base_url: str, cfg: Config, packer: str, stop: threading.Event, out: TextIO
) -> bool:
    """What a packer does at the kiosk: open the station screen (from 127.0.0.1: no login)
    and press their name, once the station reads sign-ins. True when the site took it."""

    key = screen_path(cfg.station.data_dir, cfg.station.name).stem
    while not (inbox_dir(cfg.station.data_dir).is_dir() and screen_path(
        cfg.station.data_dir, cfg.station.name).is_file()):  # fmt: skip
        if stop.wait(0.2):
            return False
    page_url = f"{base_url.rstrip('/')}/screen/{urllib.parse.quote(key)}"
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    try:
        with opener.open(page_url, timeout=10) as resp:
            page = resp.read().decode("utf-8")
        m = re.search(r'name="csrf_token" value="([^"]+)"', page)
        if m is None:
            raise ValueError("the screen has no sign-in form")
        form = urllib.parse.urlencode({"packer": packer, "csrf_token": m.group(1)}).encode()
        with opener.open(f"{page_url}/packer", data=form, timeout=10):
            pass
    except (OSError, ValueError) as exc:
        log.warning("demo: signing %r in on the station screen failed: %s", packer, exc)
        return False
    out.write(f"packcam demo: {packer} signed in on the station screen ({page_url})\n")
    out.flush()
    return True


def packing_floor(cfg: Config, out: TextIO) -> tuple[Config, DemoReceiver | None]:
    """The demo's config with sounds written to a log and webhooks sent to a receiver it
    starts, unless the config already sets them, and a packer to pick on the station screen
    (``DEMO_SCREEN_PACKER``); and that receiver (close it at the end)."""
    data = cfg.station.data_dir
    if not cfg.screen.packers:
        cfg = cfg.replace("screen", packers=(DEMO_SCREEN_PACKER,))
    if cfg.feedback.output == "none":
        cfg = cfg.replace("feedback", output="log")
        out.write(f"packcam demo: sounds are written to {data / 'sounds.log'}\n")
    receiver = None
    if not cfg.webhooks.urls:
        secret = secrets.token_hex(16)
        receiver = DemoReceiver(secret, data / "webhooks-received.log", out)
        cfg = cfg.replace("webhooks", urls=(receiver.url,), secret=secret, retry_s=2.0)
        out.write(f"packcam demo: webhooks go to {receiver.url} (log: "
                  f"{data / 'webhooks-received.log'})\n")  # fmt: skip
    out.flush()
    return cfg, receiver


__all__ = ["DEMO_SCREEN_PACKER", "DemoReceiver", "packing_floor", "sign_in_on_screen"]
