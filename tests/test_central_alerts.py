"""Fleet alerts: pure decisions, de-duplication, a real webhook receiver and a real SMTP server."""

from __future__ import annotations

import argparse
import email
import email.policy
import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fleet_servers import free_port

from central.alerts import (
    Alert,
    DeliveryError,
    SmtpSink,
    WebhookSink,
    fleet_alerts,
    plan,
    run_once,
)
from station import config as config_mod
from station.config import AlertsSection
from station.floor.webhooks import SIGNATURE_HEADER, verify
from web.stations import StationStatus

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
MB = 1024 * 1024


def status(name: str, **kw: Any) -> StationStatus:
    base: dict[str, Any] = {"key": name, "station": name, "state": "idle", "silent": False}
    return StationStatus(**{**base, **kw})


# ---- pure ---------------------------------------------------------------------------------------


def test_fleet_alerts_from_station_health() -> None:
    a = AlertsSection(backlog_clips=100, disk_free_mb=1000)
    got = fleet_alerts(
        [
            status("ok", archive_backlog=99, disk_free_bytes=1000 * MB, clock_synced=True),
            status("full", archive_backlog=100, disk_free_bytes=999 * MB),
            status("clock", clock_synced=False, last_error="camera lost"),
            status("refused", sync_problem="checkpoints: /checkpoints: HTTP 409: log-fork"),
            # silent: only that, even with old bad news in its last health report
            status("gone", silent=True, updated_utc="2026-12-01T07:00:00Z", archive_backlog=5000),
        ],
        a,
    )
    assert [(x.station, x.kind) for x in got] == [
        ("full", "archive-backlog"),
        ("full", "disk-low"),
        ("clock", "clock"),
        ("clock", "error"),
        ("refused", "sync"),
        ("gone", "silent"),
    ]
    assert (
        got[4].message
        == "refused: central sync failing: checkpoints: /checkpoints: HTTP 409: log-fork"
    )
    assert got[-1].message == "gone stopped reporting (last heard 2026-12-01T07:00:00Z)"
    assert got[1].message == "full: 999 MB free"


def test_plan_raises_once_repeats_after_the_interval_and_clears_once() -> None:
    day = timedelta(hours=24)
    x = Alert("s1", "disk-low", "s1: 10 MB free")
    events, state = plan({}, [x], T0, day)
    assert [(e.type, e.key) for e in events] == [("alert.raised", "s1:disk-low")]
    assert state["s1:disk-low"]["since_utc"] == "2026-12-01T08:00:00Z"
    # a minute later, still true: nothing to send, the start time is kept
    events, state = plan(state, [x], T0 + timedelta(minutes=1), day)
    assert events == [] and state["s1:disk-low"]["since_utc"] == "2026-12-01T08:00:00Z"
    events, state = plan(state, [x], T0 + day, day)
    assert [e.type for e in events] == ["alert.repeated"]
    events, state2 = plan(state, [], T0 + day + timedelta(minutes=1), day)
    assert [(e.type, e.since_utc) for e in events] == [("alert.cleared", "2026-12-01T08:00:00Z")]
    assert state2 == {}
    # repeat_hours = 0: never repeated
    events, _ = plan(state, [x], T0 + 10 * day, timedelta(0))
    assert events == []


# ---- delivery against real servers ------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that records POSTs (status to answer is settable)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.posts.append((dict(self.headers), body))
                self.send_response(owner.status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    port = free_port()
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield port, received
    finally:
        ctl.stop()


def test_webhook_is_signed_over_timestamp_and_body(receiver: Receiver) -> None:
    WebhookSink(receiver.url, b"s3cret").send([{"type": "alert.raised", "message": "m"}])
    headers, body = receiver.posts[0]
    header = headers[SIGNATURE_HEADER]
    ts = int(header.split(",")[0].removeprefix("t="))
    mac = hmac.new(b"s3cret", f"{ts}.".encode() + body, hashlib.sha256)
    assert header == f"t={ts},v1={mac.hexdigest()}"  # the station webhooks' scheme
    assert verify(b"s3cret", header, body, now=time.time())
    assert not verify(b"other", header, body, now=time.time())
    assert not verify(b"s3cret", header, body + b" ", now=time.time())
    assert json.loads(body) == {"events": [{"type": "alert.raised", "message": "m"}]}
    receiver.status = 500
    with pytest.raises(DeliveryError, match="HTTP 500"):
        WebhookSink(receiver.url, b"s3cret").send([])


def test_run_once_delivers_by_webhook_and_mail_and_retries_what_failed(
    receiver: Receiver, smtp_server: tuple[int, list[Any]], tmp_path: Path
) -> None:
    port, mails = smtp_server
    a = AlertsSection(
        webhook_url=receiver.url, webhook_secret="k", smtp_host="127.0.0.1", smtp_port=port,
        smtp_starttls=False, mail_from="packcam@example.com", mail_to=("ops@example.com",),
    )  # fmt: skip
    sinks = [WebhookSink(a.webhook_url, b"k"), SmtpSink(a)]
    state = tmp_path / "alerts-state.json"
    x = Alert("s1", "silent", "s1 stopped reporting (never heard from)")

    receiver.status = 503  # the webhook is down: mail goes out, and all of it is sent again
    with pytest.raises(DeliveryError, match="webhook"):
        run_once([x], sinks, state, a, now=T0)
    assert len(mails) == 1
    receiver.status = 204
    sent = run_once([x], sinks, state, a, now=T0 + timedelta(minutes=1))
    assert [e["type"] for e in sent] == ["alert.raised"]
    assert len(receiver.posts) == 2 and len(mails) == 2
    # nothing changed: nothing sent
    assert run_once([x], sinks, state, a, now=T0 + timedelta(minutes=2)) == []
    assert len(receiver.posts) == 2 and len(mails) == 2
    sent = run_once([], sinks, state, a, now=T0 + timedelta(minutes=3))
    assert [e["type"] for e in sent] == ["alert.cleared"]
    mail = mails[-1]
    assert mail.rcpt_tos == ["ops@example.com"]
    msg = email.message_from_bytes(mail.content, policy=email.policy.default)
    assert (
        str(msg["Subject"])
        .strip()
        .startswith("[packcam] 0 alert(s), 1 cleared: s1 stopped reporting")
    )
    assert "cleared   s1 stopped reporting" in msg.get_content()
    assert json.loads(state.read_text()) == {}


def test_packcam_central_alerts_on_real_postgres(
    receiver: Receiver, pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from central.cli import cmd_central
    from central.db import CentralDB

    db = CentralDB(pg_dsn)
    db.migrate()
    db.add_station("st-ok")
    db.add_station("st-low")
    ids = {r["name"]: r["id"] for r in db.stations_table()}
    db.set_health(ids["st-ok"], {"state": "idle", "disk_free_bytes": 50_000 * MB})
    db.set_health(ids["st-low"], {"state": "recording", "disk_free_bytes": 100 * MB})
    cfg = config_mod.load(None).with_data_dir(tmp_path / "central").replace("central", dsn=pg_dsn)
    cfg = cfg.replace("alerts", webhook_url=receiver.url, webhook_secret="k")
    monkeypatch.setattr("central.cli._config", lambda _args: cfg)
    args = argparse.Namespace(central_command="alerts", json=True, bucket_audit=False)

    out = io.StringIO()
    assert cmd_central(args, out=out) == 0
    doc = json.loads(out.getvalue())
    assert [(e["type"], e["key"]) for e in doc["sent"]] == [("alert.raised", "st-low:disk-low")]
    assert len(receiver.posts) == 1
    assert cmd_central(args, out=io.StringIO()) == 0  # the same state: no second message
    assert len(receiver.posts) == 1
    db.set_health(ids["st-low"], {"state": "idle", "disk_free_bytes": 9_000 * MB})
    db.close()
    out = io.StringIO()
    assert cmd_central(args, out=out) == 0
    assert [e["type"] for e in json.loads(out.getvalue())["sent"]] == ["alert.cleared"]
    events = json.loads(receiver.posts[-1][1])["events"]
    assert events[0]["key"] == "st-low:disk-low" and events[0]["type"] == "alert.cleared"
