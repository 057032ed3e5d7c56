"""The station screen: the state folded from events, its file, and the kiosk page and SSE."""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest_web import WebEnv, login, make_app

import web.screen
from station.floor.events import EventKind, StationEvent
from station.floor.screen import ScreenFeed, ScreenState, screen_path


def ev(kind: EventKind, order: str | None = None, **data: object) -> StationEvent:
    return StationEvent(
        kind, "桌1", 1.0, order, data, at=datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC)
    )


# ---- the state -----------------------------------------------------------------------------


def test_an_order_goes_idle_recording_sealed() -> None:
    s = ScreenState("桌1")
    assert s.to_json()["state"] == "idle"
    assert s.apply(ev(EventKind.ORDER_STARTED, "PO-1"))
    assert s.apply(ev(EventKind.WAYBILL_LINKED, "PO-1", waybill="SF1"))
    assert s.apply(ev(EventKind.ORDER_ITEMS, "PO-1", items=[{"name": "cup", "qty": "2"}]))
    doc = s.to_json()
    assert (doc["state"], doc["order_id"], doc["waybills"]) == ("recording", "PO-1", ["SF1"])
    assert doc["items"] == [{"name": "cup", "qty": "2"}] and doc["elapsed_s"] >= 0
    assert s.apply(ev(EventKind.CLIP_SEALED, "PO-1", sha256="ab" * 32, duration_s=4.0))
    doc = s.to_json()
    assert doc["state"] == "sealed" and doc["order_id"] is None and doc["elapsed_s"] is None
    assert doc["last_clip"]["sha256_prefix"] == "abababababab" and doc["last_clip"]["ok"]
    assert [c["order_id"] for c in doc["recent"]] == ["PO-1"]


def test_a_waybill_kept_for_a_clip_to_come_is_not_listed_as_the_recording_orders() -> None:
    """The camera lost, the waybill scanned is linked to no clip (kept for the order's clip to
    come): the screen does not list it as a waybill of the clip on screen."""
    s = ScreenState("桌1")
    s.apply(ev(EventKind.ORDER_STARTED, "PO-1"))
    assert not s.apply(ev(EventKind.WAYBILL_LINKED, "PO-1", waybill="SF1", linked_to="order"))
    s.apply(ev(EventKind.WAYBILL_LINKED, "PO-1", waybill="SF2", linked_to="open-clip", clip="c"))
    assert s.to_json()["waybills"] == ["SF2"]


def test_the_waybills_a_clip_starts_with_are_listed_from_its_start() -> None:
    """The camera back after a loss: the clip that starts names the waybill scanned in the
    dark (announced "kept for the order's clip" then); the screen lists it under that clip,
    and a waybill linked later joins it."""
    s = ScreenState("桌1")
    s.apply(ev(EventKind.ORDER_STARTED, "PO-0"))
    s.apply(ev(EventKind.WAYBILL_LINKED, "PO-0", waybill="SF0", linked_to="open-clip", clip="a"))
    s.apply(ev(EventKind.WAYBILL_LINKED, "PO-1", waybill="SF1", linked_to="order"))
    assert s.apply(ev(EventKind.ORDER_STARTED, "PO-1", waybills=["SF1"], resumed=True))
    assert s.to_json()["waybills"] == ["SF1"]
    s.apply(ev(EventKind.WAYBILL_LINKED, "PO-1", waybill="SF2", linked_to="open-clip", clip="b"))
    assert s.to_json()["waybills"] == ["SF1", "SF2"]


def test_a_clip_sealed_after_the_next_order_started_keeps_the_new_order_on_screen() -> None:
    s = ScreenState("桌1")
    s.apply(ev(EventKind.ORDER_STARTED, "PO-1"))
    s.apply(ev(EventKind.ORDER_STARTED, "PO-2"))  # next-order: PO-1 is finished behind
    s.apply(ev(EventKind.ORDER_ITEMS, "PO-1", items=[{"name": "late"}]))  # not PO-2's
    s.apply(ev(EventKind.CLIP_SEALED, "PO-1", sha256="cd" * 32))
    doc = s.to_json()
    assert (doc["state"], doc["order_id"], doc["items"]) == ("recording", "PO-2", None)
    assert doc["last_clip"]["order_id"] == "PO-1"


def test_refusals_alarms_and_the_recent_list() -> None:
    s = ScreenState("桌1")
    s.apply(ev(EventKind.SCAN_REFUSED, "PO-9", why="disk full"))
    assert s.to_json()["state"] == "error"
    assert s.to_json()["notice"]["why"] == "disk full"
    s.apply(ev(EventKind.ALARM_RAISED, alarm="disk-full", message="1 MB free"))
    assert s.to_json()["alarms"] == [{"kind": "disk-full", "message": "1 MB free"}]
    assert s.apply(ev(EventKind.ALARM_CLEARED, alarm="disk-full"))
    assert not s.apply(ev(EventKind.ALARM_CLEARED, alarm="disk-full"))
    assert not s.apply(ev(EventKind.CLIP_ARCHIVED, "PO-1"))
    for i in range(7):
        s.apply(ev(EventKind.ORDER_STARTED, f"PO-{i}"))
        s.apply(ev(EventKind.CLIP_FAILED if i == 6 else EventKind.CLIP_SEALED, f"PO-{i}",
                   sha256="00" * 32, error="disk" if i == 6 else None))  # fmt: skip
    doc = s.to_json()
    assert [c["order_id"] for c in doc["recent"]] == ["PO-6", "PO-5", "PO-4", "PO-3", "PO-2"]
    assert doc["state"] == "error" and not doc["recent"][0]["ok"]


def test_the_feed_writes_the_file_and_says_stopped(tmp_path: Path) -> None:
    feed = ScreenFeed(tmp_path, "桌1")
    feed.on_event(ev(EventKind.ORDER_STARTED, "PO-1"))
    path = screen_path(tmp_path, "桌1")
    end = time.monotonic() + 5
    while time.monotonic() < end:
        if path.is_file() and json.loads(path.read_text("utf-8"))["order_id"] == "PO-1":
            break
        time.sleep(0.01)
    assert json.loads(path.read_text("utf-8"))["state"] == "recording"
    feed.close()
    assert json.loads(path.read_text("utf-8"))["state"] == "stopped"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left


def test_a_temp_file_left_by_a_killed_station_goes_and_a_failed_write_leaves_none(
    tmp_path: Path, dead_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = screen_path(tmp_path, "桌1")
    path.parent.mkdir(parents=True)
    stale = path.with_name(f".{path.name}.{dead_pid}.tmp")
    stale.write_text("{", encoding="utf-8")
    feed = ScreenFeed(tmp_path, "桌1")
    feed.close()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)  # the temp file is written, the rename fails
    feed.write()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# ---- the web page --------------------------------------------------------------------------


@pytest.fixture
def screen_env(web_env: WebEnv) -> tuple[WebEnv, str]:
    feed = ScreenFeed(web_env.data_dir, "桌1")
    feed.on_event(ev(EventKind.ORDER_STARTED, "PO-SCREEN"))
    feed.close()
    return web_env, screen_path(web_env.data_dir, "桌1").stem


def test_the_kiosk_on_localhost_needs_no_login(web_client, screen_env) -> None:
    _, key = screen_env
    resp = web_client.get("/screen")
    assert resp.status_code == 302 and resp.location.endswith(f"/screen/{key}")
    page = web_client.get(f"/screen/{key}").get_data(as_text=True)
    assert 'id="screen"' in page and f"/screen/{key}/events" in page
    assert "screen.js" in page and "<script>" not in page  # CSP: no inline script


@pytest.mark.parametrize(
    "headers", [{"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}]
)
def test_not_through_a_proxy_on_this_machine(web_client, screen_env, headers) -> None:
    _, key = screen_env
    resp = web_client.get(f"/screen/{key}", headers=headers)
    assert resp.status_code == 302 and "/login" in resp.location


def test_other_machines_need_a_login_or_the_token(screen_env) -> None:
    env, key = screen_env
    cfg = env.cfg.replace("screen", token="t" * 20)
    app = make_app(WebEnv(env.data_dir, cfg, env.clips))
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    client = app.test_client()
    assert client.get(f"/screen/{key}", environ_base=remote).status_code == 302
    assert client.get(f"/screen/{key}?token=wrong", environ_base=remote).status_code == 403
    ok = client.get(f"/screen/{key}?token={'t' * 20}", environ_base=remote)
    assert ok.status_code == 200
    assert f"/screen/{key}/events?token={'t' * 20}" in ok.get_data(as_text=True)
    viewer = login(app.test_client(), "viewer")
    assert viewer.get(f"/screen/{key}", environ_base=remote).status_code == 403
    operator = login(app.test_client(), "operator")
    assert operator.get(f"/screen/{key}", environ_base=remote).status_code == 200


def test_localhost_can_be_switched_off(screen_env) -> None:
    env, key = screen_env
    app = make_app(WebEnv(env.data_dir, env.cfg.replace("screen", allow_localhost=False)))
    assert app.test_client().get(f"/screen/{key}").status_code == 302


@pytest.mark.parametrize("path", ["/screen/nope", "/screen/..%2Fweb", "/screen/nope/events",
                                  "/screen/nope/stream.mjpg"])  # fmt: skip
def test_unknown_stations_are_404(web_client, screen_env, path: str) -> None:
    assert web_client.get(path).status_code == 404


def test_a_head_of_the_events_says_if_a_stream_would_be_refused_and_holds_no_slot(
    screen_env, caplog: pytest.LogCaptureFixture
) -> None:
    """screen.js asks with a HEAD why its events were refused (an EventSource does not say);
    the refused GET before it was logged, the HEAD is not logged again."""
    env, key = screen_env
    app = make_app(env)
    client = app.test_client()
    with app.app_context():
        slots = web.screen._slots()
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        with caplog.at_level(logging.WARNING, logger="web.screen"):
            assert client.head(f"/screen/{key}/events").status_code == 503
        assert not caplog.records
        slots.release()
        taken -= 1
        for _ in range(3):  # each time the one free slot: none kept
            resp = client.head(f"/screen/{key}/events")
            assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
            assert resp.get_data() == b""
    finally:
        for _ in range(taken):
            slots.release()


def test_the_event_stream_sends_each_change(screen_env) -> None:
    env, key = screen_env
    app = make_app(env, SCREEN_STREAM_MAX_S=3.0)
    resp = app.test_client().get(f"/screen/{key}/events", buffered=False)
    assert resp.mimetype == "text/event-stream"
    chunks = iter(resp.response)
    assert next(chunks) == b"retry: 1000\n\n"
    first = next(chunks)
    assert first.startswith(b"event: screen\ndata: ")
    assert json.loads(first.split(b"data: ", 1)[1])["order_id"] == "PO-SCREEN"
    feed = ScreenFeed(env.data_dir, "桌1")
    t0 = time.monotonic()
    feed.on_event(ev(EventKind.ORDER_STARTED, "PO-NEXT"))
    docs = []
    for chunk in chunks:
        if chunk.startswith(b"event: screen"):
            docs.append(json.loads(chunk.split(b"data: ", 1)[1]))
            if docs[-1]["order_id"] == "PO-NEXT":
                break
    assert docs and docs[-1]["order_id"] == "PO-NEXT"
    assert time.monotonic() - t0 < 2.5  # long before the stream's end
    feed.close()
    resp.close()
