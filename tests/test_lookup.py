"""Order lookup: parsing, URL building, a real local HTTP service, the clip's manifest."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from station import config as config_mod
from station.capture.synthetic import Scenario, SyntheticCamera
from station.errors import ConfigError
from station.floor.events import EventKind, EventRecorder, StationEvent, StationEvents
from station.floor.eventworker import fetch_failure
from station.floor.lookup import MANIFEST_KEY, LookupFailed, OrderLookup, lookup_url, parse_items
from station.service import assemble


class ItemService:
    """A real HTTP server on 127.0.0.1 answering ``answers[path]`` (status, body), slowly if
    asked; records the paths and headers it saw."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes]] = {}
        self.redirects: dict[str, str] = {}  # path -> Location of a 302
        self.delay_s = 0.0
        self.seen: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.seen.append((self.path, dict(self.headers)))
                time.sleep(outer.delay_s)
                code, body = outer.answers.get(self.path, (404, b"{}"))
                try:
                    if self.path in outer.redirects:
                        self.send_response(302)
                        self.send_header("Location", outer.redirects[self.path])
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def service() -> Iterator[ItemService]:
    s = ItemService()
    yield s
    s.close()


ITEMS = {"items": [{"sku": "SKU-1", "name": "杯子", "qty": 2}, {"sku": "SKU-2", "name": "Lid"}]}


def started(order: str) -> StationEvent:
    return StationEvent(EventKind.ORDER_STARTED, "st-1", 1.0, order)


# ---- pure ----------------------------------------------------------------------------------


def test_parse_items_accepts_lists_objects_and_strings() -> None:
    assert parse_items(json.dumps(ITEMS).encode()) == [
        {"sku": "SKU-1", "name": "杯子", "qty": "2"},
        {"sku": "SKU-2", "name": "Lid"},
    ]
    assert parse_items(b'["a", "b"]') == [{"name": "a"}, {"name": "b"}]
    assert parse_items(b'[{"colour": "red"}]') == [{"name": '{"colour": "red"}'}]
    long = parse_items(json.dumps(["x" * 500] * 300).encode())
    assert len(long) == 100 and len(long[0]["name"]) == 200
    assert parse_items(b'["bad\\u0000\\u001b[2J"]') == [{"name": "bad[2J"}]


@pytest.mark.parametrize("body", [b"<html>", b'{"orders": []}', b'"text"', b"\xff\xfe"])
def test_parse_items_refuses_what_is_no_item_list(body: bytes) -> None:
    with pytest.raises(LookupFailed):
        parse_items(body)


def test_lookup_url_quotes_the_order_id() -> None:
    t = "https://erp.example/api/orders/{order}/items?x=1"
    assert lookup_url(t, "PO-1") == "https://erp.example/api/orders/PO-1/items?x=1"
    assert lookup_url(t, "A/B ?#") == "https://erp.example/api/orders/A%2FB%20%3F%23/items?x=1"
    assert lookup_url(t, "订单") == "https://erp.example/api/orders/%E8%AE%A2%E5%8D%95/items?x=1"


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"url_template": "ftp://x/{order}"}, "http"),
        ({"url_template": "http://x/orders"}, "{order}"),
        ({"url_template": "http://x/{order}", "timeout_s": 0}, "timeout"),
        ({"headers": {"Bad Header": "x"}}, "header"),
        ({"headers": {"X-A": "a\r\nInjected: 1"}}, "header"),
    ],
)
def test_bad_lookup_config_is_refused(values: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_mod.from_dict({"lookup": values})


def test_a_failed_fetch_is_named_by_its_status_or_its_exception() -> None:
    """What the order lookup and the fleet duplicate check say of a failed fetch: an HTTP
    error by its status, its body closed (it holds the connection); anything else by its type
    and text, at most 300 characters (it goes into the signed manifest)."""
    body = io.BytesIO(b"<html>busy</html>")
    err = urllib.error.HTTPError("http://erp.example/x", 503, "Unavailable", Message(), body)
    assert fetch_failure(err) == "HTTP 503"
    assert body.closed
    assert fetch_failure(TimeoutError("timed out")) == "TimeoutError: timed out"
    assert fetch_failure(LookupFailed("x" * 400)) == ("LookupFailed: " + "x" * 400)[:300]


# ---- a real service ------------------------------------------------------------------------


def make_lookup(cfg: config_mod.Config, service: ItemService, **kw: Any):  # type: ignore[no-untyped-def]
    c = cfg.replace(
        "lookup",
        url_template=service.base + "/orders/{order}",
        headers={"Authorization": "Bearer t0ken"},
        **kw,
    )
    rec = EventRecorder()
    notes: list[tuple[str, str, Any]] = []

    def annotate(order: str, key: str, value: Any) -> bool:
        notes.append((order, key, value))
        return True

    return OrderLookup(c, StationEvents("st-1", [rec]), annotate), rec, notes


def wait_items(rec: EventRecorder, n: int = 1, timeout: float = 10.0) -> list[StationEvent]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = [e for e in rec.events if e.kind is EventKind.ORDER_ITEMS]
        if len(got) >= n:
            return got
        time.sleep(0.02)
    raise AssertionError("no ORDER_ITEMS event")


def test_items_are_fetched_announced_and_annotated(
    cfg: config_mod.Config, service: ItemService
) -> None:
    service.answers["/orders/PO%2F7"] = (200, json.dumps(ITEMS).encode())
    lookup, rec, notes = make_lookup(cfg, service)
    lookup.on_event(started("PO/7"))
    lookup.on_event(StationEvent(EventKind.CLIP_SEALED, "st-1", 2.0, "PO/7"))  # ignored
    [ev] = wait_items(rec)
    lookup.close()
    assert ev.order_id == "PO/7" and ev.data["in_manifest"] is True
    assert [i["sku"] for i in ev.data["items"]] == ["SKU-1", "SKU-2"]
    [(order, key, value)] = notes
    assert (order, key) == ("PO/7", MANIFEST_KEY)
    assert value["items"] == ev.data["items"] and value["url"].endswith("/orders/PO%2F7")
    assert service.seen[0][1]["Authorization"] == "Bearer t0ken"
    assert len(service.seen) == 1


def test_a_redirect_to_another_server_gets_neither_the_token_nor_the_manifest(
    cfg: config_mod.Config, service: ItemService
) -> None:
    """urllib follows a redirect with every header, Authorization too: a lookup service that
    redirects elsewhere (a hostile or hijacked ERP, an http downgrade, an address inside the
    warehouse network) would get the seller's API token, and its answer would go into the
    clip's signed manifest. A redirect on the same server is still followed."""
    other = ItemService()
    try:
        other.answers["/steal"] = (200, json.dumps(["from the other server"]).encode())
        service.redirects["/orders/PO-1"] = other.base + "/steal"
        service.redirects["/orders/PO-2"] = "/v2/orders/PO-2"
        service.answers["/v2/orders/PO-2"] = (200, json.dumps(ITEMS).encode())
        lookup, rec, notes = make_lookup(cfg, service)
        lookup.on_event(started("PO-1"))
        [ev] = wait_items(rec)
        lookup.on_event(started("PO-2"))
        _, ev2 = wait_items(rec, 2)
        lookup.close()
    finally:
        other.close()
    assert not [h["Authorization"] for _, h in other.seen if "Authorization" in h]
    assert other.seen == []
    assert "items" not in ev.data and "HTTP 302" in ev.data["error"]
    assert "items" not in notes[0][2]
    assert [i["sku"] for i in ev2.data["items"]] == ["SKU-1", "SKU-2"]
    assert service.seen[-1] == ("/v2/orders/PO-2", service.seen[-1][1])
    assert service.seen[-1][1]["Authorization"] == "Bearer t0ken"


@pytest.mark.parametrize(
    ("answer", "error"),
    [((500, b"oops"), "HTTP 500"), ((200, b"<html>"), "not JSON"), (None, "HTTP 404")],
)
def test_a_bad_answer_is_announced_as_an_error(
    cfg: config_mod.Config, service: ItemService, answer: tuple[int, bytes] | None, error: str
) -> None:
    if answer is not None:
        service.answers["/orders/PO-1"] = answer
    lookup, rec, notes = make_lookup(cfg, service)
    lookup.on_event(started("PO-1"))
    [ev] = wait_items(rec)
    lookup.close()
    assert error in ev.data["error"] and "items" not in ev.data
    assert error in notes[0][2]["error"]  # the manifest says the lookup failed, and why


def test_a_slow_service_times_out_and_never_blocks_the_caller(
    cfg: config_mod.Config, service: ItemService
) -> None:
    service.delay_s = 1.5
    service.answers["/orders/PO-1"] = (200, json.dumps(ITEMS).encode())
    lookup, rec, _ = make_lookup(cfg, service, timeout_s=0.3)
    t0 = time.perf_counter()
    lookup.on_event(started("PO-1"))
    assert time.perf_counter() - t0 < 0.05  # the capture thread only queues it
    [ev] = wait_items(rec)
    assert "timed out" in ev.data["error"].lower()
    lookup.close()


# ---- the clip's manifest -------------------------------------------------------------------


@pytest.mark.slow
def test_the_items_land_in_the_signed_manifest(
    cfg: config_mod.Config, service: ItemService
) -> None:
    service.answers["/orders/PO-LK-1"] = (200, json.dumps(ITEMS).encode())
    cfg = cfg.replace("lookup", url_template=service.base + "/orders/{order}")
    cfg = cfg.replace("camera", width=320, height=180, fps=15.0)
    scenario = Scenario.from_dict(
        {
            "event": [
                {"at": 0.3, "kind": "key", "text": "PO-LK-1"},
                {"at": 2.5, "kind": "key", "text": "SEAL"},
                {"at": 3.0, "kind": "end"},
            ]
        }
    )
    asm = assemble(cfg, camera=SyntheticCamera(320, 180, 15.0, scenario, realtime=True),
                   live_view=False)  # fmt: skip
    rec = EventRecorder()
    assert asm.events is not None
    asm.events.add(rec)
    asm.station.run(threading.Event())
    [clip] = asm.ledger.clips()
    asm.close()
    manifest = json.loads((cfg.station.data_dir / clip.manifest_path).read_text("utf-8"))
    assert "signature" in manifest  # signed, with the lookup inside
    assert manifest[MANIFEST_KEY]["items"][0] == {"sku": "SKU-1", "name": "杯子", "qty": "2"}
    assert EventKind.ORDER_ITEMS in rec.kinds()
