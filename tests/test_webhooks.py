"""Webhooks: signatures, back-off, the durable queue, delivery to a real local HTTP receiver."""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from station import config as config_mod
from station.capture.synthetic import Scenario, SyntheticCamera
from station.errors import ConfigError
from station.floor.events import EventKind, StationEvent
from station.floor.webhooks import (
    QUEUE_NAME,
    SIGNATURE_HEADER,
    WebhookQueue,
    Webhooks,
    backoff_s,
    sign,
    verify,
)
from station.service import assemble

SECRET = "s3cret-s3cret-s3cret"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records each POST and answers ``codes`` in turn
    (then 200)."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.codes = list(codes or [])
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.cond:
                    outer.requests.append((time.monotonic(), dict(self.headers), body))
                    code = outer.codes.pop(0) if outer.codes else 200
                    outer.cond.notify_all()
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[float, dict[str, str], bytes]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.requests) >= n, timeout)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering with ``handler``; yields its /hook URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def hook_cfg(cfg: config_mod.Config, url: str, **kw: object) -> config_mod.Config:
    values: dict[str, object] = {"urls": (url,), "secret": SECRET, "retry_s": 0.05}
    values.update(kw)
    return cfg.replace("webhooks", **values)


def sealed(order: str = "PO-1") -> StationEvent:
    return StationEvent(EventKind.CLIP_SEALED, "st-1", 1.0, order, {"sha256": "ab" * 32})


def wait_until(pred, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


# ---- pure parts ----------------------------------------------------------------------------


def test_signature_round_trip_and_what_it_refuses() -> None:
    body = b'{"event":"clip.finished"}'
    header = sign(SECRET.encode(), 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(SECRET.encode(), header, body, now=1_700_000_010)
    assert not verify(SECRET.encode(), header, body + b" ", now=1_700_000_010)  # altered body
    assert not verify(b"another-secret-xx", header, body, now=1_700_000_010)
    assert not verify(SECRET.encode(), header, body, now=1_700_001_000)  # replayed later
    forged = header.replace("t=1700000000", "t=1700000900")  # a fresh time on an old MAC
    assert not verify(SECRET.encode(), forged, body, now=1_700_000_900)
    for bad in ("", "v1=00", "t=x,v1=00", "garbage"):
        assert not verify(SECRET.encode(), bad, body, now=1_700_000_000)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, 10, 100) for n in range(1, 7)] == [10, 20, 40, 80, 100, 100]
    assert backoff_s(0, 10, 100) == 10


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"urls": ["ftp://x/y"], "secret": SECRET}, "http"),
        ({"urls": ["http://x/y"]}, "secret"),
        ({"urls": ["http://x/y"], "secret": "short"}, "16"),
        ({"events": ["clip.deleted"]}, "unknown"),
        ({"timeout_s": 0}, "timeout"),
        ({"retry_s": 10.0, "max_backoff_s": 1.0}, "max_backoff"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"url": "http://x"}, "unknown key"),
    ],
)
def test_bad_webhook_config_is_refused(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_mod.from_dict({"webhooks": values})


# ---- delivery ------------------------------------------------------------------------------


def test_clip_and_alarm_events_reach_the_receiver_signed(
    cfg: config_mod.Config, receiver: Receiver
) -> None:
    hooks = Webhooks(hook_cfg(cfg, receiver.url))
    try:
        hooks.on_event(StationEvent(EventKind.ORDER_STARTED, "st-1", 0.5, "PO-1"))  # not sent
        hooks.on_event(sealed())
        hooks.on_event(StationEvent(EventKind.ALARM_RAISED, "st-1", 2.0, None, {"alarm": "x"}))
        got = receiver.wait_for(2)
    finally:
        hooks.close()
    assert len(got) == 2
    events = []
    for _, headers, body in got:
        assert verify(SECRET.encode(), headers[SIGNATURE_HEADER], body, now=time.time())
        doc = json.loads(body)
        assert doc["id"] == headers["X-Packcam-Delivery"]
        assert doc["event"] == headers["X-Packcam-Event"]
        assert headers["Content-Type"].startswith("application/json")
        events.append(doc)
    assert [e["event"] for e in events] == ["clip.finished", "alarm.raised"]
    assert events[0]["order_id"] == "PO-1" and events[0]["data"]["sha256"] == "ab" * 32
    q = WebhookQueue(cfg.station.data_dir / QUEUE_NAME)
    assert q.counts() == {"delivered": 2}
    q.close()


def test_a_waybill_in_no_clip_is_sent_when_asked_for(
    cfg: config_mod.Config, receiver: Receiver
) -> None:
    """A late waybill whose clip was never indexed ("waybill-unlinked"): not sent by default;
    sent as waybill.unlinked when [webhooks] events lists it."""
    why = {"waybill": "SF1", "clip": "c", "why": "its clip was not indexed"}
    unlinked = StationEvent(EventKind.WAYBILL_UNLINKED, "st-1", 1.0, "PO-1", why)
    hooks = Webhooks(hook_cfg(cfg, receiver.url))
    try:
        hooks.on_event(unlinked)  # not among the default events
        hooks.on_event(sealed())
        receiver.wait_for(1)
    finally:
        hooks.close()
    wanted = (*config_mod.WebhooksSection().events, "waybill.unlinked")
    hooks = Webhooks(hook_cfg(cfg, receiver.url, events=wanted))
    try:
        hooks.on_event(unlinked)
        got = receiver.wait_for(2)
    finally:
        hooks.close()
    docs = [json.loads(body) for _, _, body in got]
    assert [d["event"] for d in docs] == ["clip.finished", "waybill.unlinked"]
    assert docs[1]["data"]["why"] == "its clip was not indexed"


def test_a_failing_receiver_is_retried_with_back_off(
    cfg: config_mod.Config, receiver: Receiver
) -> None:
    receiver.codes = [500, 503]
    hooks = Webhooks(hook_cfg(cfg, receiver.url, retry_s=0.2))
    try:
        hooks.on_event(sealed())
        got = receiver.wait_for(3)
        assert wait_until(lambda: hooks.queue.counts() == {"delivered": 1})
        [d] = hooks.queue.deliveries()
    finally:
        hooks.close()
    assert len(got) == 3
    assert got[0][2] == got[1][2] == got[2][2]  # the same bytes every time
    assert {g[1]["X-Packcam-Delivery"] for g in got} == {d.uid}
    assert (d.attempts, d.status, d.last_code) == (3, "delivered", 200)
    with contextlib.closing(sqlite3.connect(cfg.station.data_dir / QUEUE_NAME)) as c:
        rows = c.execute("SELECT code, at FROM attempts ORDER BY at").fetchall()
    assert [r[0] for r in rows] == [500, 503, 200]
    # The sender's own attempt times (not the receiver's, which a loaded machine delays by
    # different amounts): 0.2 s, then doubled.
    gaps = [b[1] - a[1] for a, b in itertools.pairwise(rows)]
    assert gaps[0] >= 0.2 - 1e-6 and gaps[1] >= 0.4 - 1e-6


def test_pending_deliveries_survive_a_restart(cfg: config_mod.Config, receiver: Receiver) -> None:
    receiver.codes = [503] * 100
    c = hook_cfg(cfg, receiver.url, retry_s=30.0)
    hooks = Webhooks(c)
    hooks.on_event(sealed("PO-KEEP"))
    receiver.wait_for(1)
    hooks.close()
    first_body = receiver.requests[0][2]
    receiver.codes = []
    # The next start (sooner than the 30 s back-off: its clock is moved on) delivers it.
    later = Webhooks(c, clock=lambda: time.time() + 60)
    try:
        got = receiver.wait_for(2)
        assert wait_until(lambda: later.queue.counts() == {"delivered": 1})
    finally:
        later.close()
    assert got[1][2] == first_body


def test_events_not_yet_written_are_queued_at_close(cfg: config_mod.Config) -> None:
    hooks = Webhooks(hook_cfg(cfg, "http://127.0.0.1:9/none", retry_s=60.0))
    hooks._stop.set()  # as if stopping: the sender takes nothing more
    hooks._wake.set()
    hooks._thread.join(5)
    hooks.on_event(sealed("PO-LATE"))
    hooks.close()
    q = WebhookQueue(cfg.station.data_dir / QUEUE_NAME)
    [d] = q.deliveries()
    q.close()
    assert (d.status, json.loads(d.body)["order_id"]) == ("pending", "PO-LATE")


def test_an_unreachable_receiver_fails_after_max_attempts(cfg: config_mod.Config) -> None:
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # nothing listens there now: connection refused
    hooks = Webhooks(hook_cfg(cfg, url, retry_s=0.01, max_backoff_s=0.02, max_attempts=3))
    try:
        hooks.on_event(sealed())
        assert wait_until(lambda: hooks.queue.counts() == {"failed": 1})
        [d] = hooks.queue.deliveries()
    finally:
        hooks.close()
    assert d.attempts == 3 and d.last_code is None
    assert d.last_error is not None and "refused" in d.last_error.lower()


# ---- a real station ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_sealed_clip_is_posted_with_its_hash(cfg: config_mod.Config, receiver: Receiver) -> None:
    cfg = hook_cfg(cfg, receiver.url)
    cfg = cfg.replace("camera", width=640, height=360, fps=15.0).replace("proof", enabled=False)
    scenario = Scenario.from_dict(
        {
            "event": [
                {"at": 0.5, "kind": "key", "text": "PO-HOOK-1"},
                {"at": 2.0, "kind": "key", "text": "SEAL"},
                {"at": 3.0, "kind": "end"},
            ]
        }
    )
    asm = assemble(cfg, camera=SyntheticCamera(640, 360, 15.0, scenario, realtime=False),
                   live_view=False)  # fmt: skip
    asm.station.run(threading.Event())
    [clip] = asm.ledger.clips()
    got = receiver.wait_for(1)
    asm.close()
    doc = json.loads(got[0][2])
    assert doc["event"] == "clip.finished" and doc["order_id"] == "PO-HOOK-1"
    assert doc["data"]["sha256"] == clip.sha256 and doc["data"]["finish_reason"] == "sealed"
    assert doc["station"] == cfg.station.name


def test_the_archiver_announces_each_archived_clip(cfg: config_mod.Config) -> None:
    from datetime import UTC, datetime

    from station.floor.events import EventRecorder, StationEvents
    from station.service import build_fleet
    from station.store.ledger import ClipRecord

    cfg = cfg.replace("archive", enabled=True, bucket="packcam-test",
                      endpoint_url="http://127.0.0.1:9")  # fmt: skip
    rec = EventRecorder()
    archiver, sync = build_fleet(cfg, StationEvents("st-1", [rec]))
    assert archiver is not None and sync is None and archiver.on_archived is not None
    now = datetime(2026, 11, 30, tzinfo=UTC)
    clip = ClipRecord("PO-ARC", "st-1", now, now, 4.0, 60, "sealed", 1.0, "clips/a.mp4",
                      "clips/a.json", 10, "ef" * 32, id=7)  # fmt: skip
    archiver.on_archived(clip)  # what the archiver calls once the upload is verified
    [ev] = rec.events
    assert (ev.kind, ev.order_id, ev.data["sha256"], ev.data["clip_id"]) == (
        EventKind.CLIP_ARCHIVED, "PO-ARC", "ef" * 32, 7)  # fmt: skip
    archiver.stop()


def test_a_redirect_is_not_a_delivery(cfg: config_mod.Config) -> None:
    """A receiver that answers a POST with 302 (an http -> https move, a login page) has not
    received the event: urllib would follow it as a GET without the body and take that page's
    200 as delivered. The 302 is a failed attempt like any other non-2xx, and nothing is sent
    to the address it names."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(("POST", self.path))
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(302)
            self.send_header("Location", "/moved")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            seen.append(("GET", self.path))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        hooks = Webhooks(hook_cfg(cfg, url, retry_s=0.01, max_backoff_s=0.02, max_attempts=2))
        try:
            hooks.on_event(sealed())
            assert wait_until(lambda: set(hooks.queue.counts()) & {"delivered", "failed"})
            [d] = hooks.queue.deliveries()
        finally:
            hooks.close()
    assert (d.status, d.attempts, d.last_code) == ("failed", 2, 302)
    assert d.last_error == "HTTP 302"
    assert seen == [("POST", "/hook"), ("POST", "/hook")]


def test_events_are_written_to_the_queue_while_a_slow_receiver_holds_the_sender(
    cfg: config_mod.Config,
) -> None:
    """Events wait in memory only until the sender writes them to the queue. A receiver that
    takes its time (each attempt up to timeout_s, up to 50 due deliveries a pass) must not
    keep a new event in memory for the whole pass, where a power cut would lose it: it is
    written before the next attempt."""
    gate = threading.Semaphore(0)
    arrived = threading.Semaphore(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            arrived.release()
            gate.acquire(timeout=10)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serving(Handler) as url:
        hooks = Webhooks(hook_cfg(cfg, url))
        try:
            hooks.on_event(sealed("PO-1"))
            hooks.on_event(sealed("PO-2"))
            assert arrived.acquire(timeout=10)  # the sender is in PO-1's attempt
            hooks.on_event(sealed("PO-LATE"))
            gate.release()
            assert arrived.acquire(timeout=10)  # ... and now in PO-2's
            orders = [json.loads(d.body)["order_id"] for d in hooks.queue.deliveries()]
            assert "PO-LATE" in orders
        finally:
            for _ in range(5):
                gate.release()
            hooks.close()
