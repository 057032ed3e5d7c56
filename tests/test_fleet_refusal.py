"""The fleet duplicate check refused by the central site (401, 403): its log says the site's
reason, bounded, not "not answering" (station/fleet/duplicates.py). No PostgreSQL: a local
HTTP server answers as central/api.py does."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from station import config as config_mod
from station.fleet.duplicates import FleetDuplicates, refusal_reason
from station.floor.events import EventKind, StationEvent, StationEvents
from station.store.ledger import Ledger

TWIN = (
    "station 'st-01' is enrolled with key ab12; this request comes from a machine with key "
    "cd34: another machine with this station's token? Its hello is refused"
)


class _Refusing(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the status and JSON body set on the server."""

    def do_GET(self) -> None:
        status, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def central() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def _check(cfg: config_mod.Config, ledger: Ledger, port: int) -> list[dict[str, Any]] | None:
    cfg = cfg.replace("central", enabled=True, url=f"http://127.0.0.1:{port}", token="t" * 20)
    dup = FleetDuplicates(cfg, StationEvents("st-01"), lambda *a: True, ledger, token="t" * 20)
    try:
        return dup.check(StationEvent(EventKind.ORDER_STARTED, "st-01", 1.0, "PO-1"))
    finally:
        dup.close()


@pytest.mark.parametrize(
    ("status", "error"), [(403, TWIN), (401, "unknown station token")], ids=["403", "401"]
)
def test_a_refusal_by_the_central_site_is_logged_with_its_reason(
    cfg: config_mod.Config,
    ledger: Ledger,
    central: http.server.ThreadingHTTPServer,
    caplog: pytest.LogCaptureFixture,
    status: int,
    error: str,
) -> None:
    central.answer = (status, json.dumps({"error": error}).encode())  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="station.fleet.duplicates"):
        assert _check(cfg, ledger, central.server_port) is None
    [rec] = caplog.records
    assert rec.levelno == logging.WARNING
    msg = rec.getMessage()
    assert f"HTTP {status}" in msg and error in msg, msg
    assert "not answering" not in msg, msg


def test_a_server_error_is_still_not_answering(
    cfg: config_mod.Config,
    ledger: Ledger,
    central: http.server.ThreadingHTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    central.answer = (500, json.dumps({"error": "boom"}).encode())  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="station.fleet.duplicates"):
        assert _check(cfg, ledger, central.server_port) is None
    assert "central index not answering (HTTP 500)" in caplog.text
    assert "boom" not in caplog.text


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (json.dumps({"error": "unknown station token"}).encode(), "unknown station token"),
        (b"<html>Forbidden</html>", ""),  # a proxy's page, not the site's
        (json.dumps({"error": ["not", "text"]}).encode(), ""),
        (json.dumps(["error"]).encode(), ""),
        (b"\xff\xfe", ""),
        (json.dumps({"error": "one\nline\x1b[31m red"}).encode(), "one line [31m red"),
        (json.dumps({"error": "x" * 5000}).encode(), "x" * 300 + "…"),
    ],
)
def test_refusal_reason_is_the_sites_error_text_on_one_bounded_line(body: bytes, said: str) -> None:
    assert refusal_reason(body) == said
