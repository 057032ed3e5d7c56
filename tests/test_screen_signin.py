"""Packer sign-in on the station screen: the web site's request, the station's inbox, and the
same session event as a badge (packer in the manifest, the index, the overlay, the events)."""

from __future__ import annotations

import errno
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest_web import WebEnv, make_app

from station import config as config_mod
from station.capture.frames import PackerPick
from station.capture.synthetic import Scenario, SyntheticCamera
from station.floor.events import EventKind, EventRecorder, StationEvent
from station.floor.feedback import Feedback, RecordingSink, prepare_sounds
from station.floor.packer_inbox import (
    MAX_AGE_S,
    PackerRequestError,
    ScreenSignIn,
    inbox_dir,
    parse_request,
    request_body,
    write_request,
)
from station.floor.screen import ScreenFeed, screen_path
from station.service import assemble

PACKERS = ("王芳", "alice")
NOW = 1_800_000_000.0


# ---- the request, pure ---------------------------------------------------------------------


def test_a_request_names_a_configured_packer_of_this_station() -> None:
    assert parse_request(request_body("st", "王芳", NOW), "st", PACKERS, NOW + 1) == "王芳"
    assert parse_request(request_body("st", None, NOW), "st", PACKERS, NOW) is None


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (request_body("st", "mallory", NOW), "not in"),
        (request_body("other", "alice", NOW), "not this one"),
        (request_body("st", "alice", NOW - MAX_AGE_S - 1), "stale"),
        (request_body("st", "alice", NOW + MAX_AGE_S + 1), "stale"),
        (b"\xff", "not JSON"),
        (b'{"station": "st", "packer": "alice"}', "not {"),
        (json.dumps({"station": "st", "packer": "alice", "at": NOW, "x": 1}).encode(), "not {"),
        (json.dumps({"station": "st", "packer": "alice", "at": "now"}).encode(), "stale"),
        (b" " * 2000, "larger"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(raw: bytes, why: str) -> None:
    with pytest.raises(PackerRequestError, match=why):
        parse_request(raw, "st", PACKERS, NOW)


# ---- the station's inbox -------------------------------------------------------------------


def _source(tmp_path: Path) -> ScreenSignIn:
    src = ScreenSignIn(tmp_path, "st", PACKERS)
    src.start()
    return src


def test_the_inbox_hands_picks_to_the_capture_loop_in_order(tmp_path: Path) -> None:
    src = _source(tmp_path)
    assert inbox_dir(tmp_path).stat().st_mode & 0o777 == 0o770  # the web's group writes
    write_request(tmp_path, "st", "alice")
    write_request(tmp_path, "st", None)
    write_request(tmp_path, "st", "王芳")
    got = src.poll(12.5)
    assert got == [PackerPick("alice", 12.5), PackerPick(None, 12.5), PackerPick("王芳", 12.5)]
    assert os.listdir(inbox_dir(tmp_path)) == []  # read once
    write_request(tmp_path, "st", "alice")
    assert src.poll(12.6) == []  # polled at most every POLL_S
    time.sleep(0.12)
    assert src.poll(12.7) == [PackerPick("alice", 12.7)]


def test_foreign_files_are_dropped_and_stale_picks_cleared_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = inbox_dir(tmp_path)
    d.mkdir()
    (d / "0-old.json").write_bytes(request_body("st", "alice", time.time()))
    src = _source(tmp_path)
    assert os.listdir(d) == []  # picked while the station was down: void
    secret = tmp_path / "secret"
    secret.write_text("x")
    (d / "1-link.json").symlink_to(secret)
    os.mkfifo(d / "2-fifo.json")
    (d / "3-bad.json").write_text(json.dumps({"station": "st", "packer": "eve", "at": 0}))
    write_request(tmp_path, "st", "alice")
    assert src.poll(1.0) == [PackerPick("alice", 1.0)]
    assert sorted(os.listdir(d)) == [] and secret.read_text() == "x"
    assert caplog.text.count("refused") == 3


def test_a_full_inbox_refuses_more(tmp_path: Path) -> None:
    inbox_dir(tmp_path).mkdir()
    for _ in range(16):
        write_request(tmp_path, "st", "alice")
    with pytest.raises(OSError):
        write_request(tmp_path, "st", "alice")


def test_a_request_the_disk_cannot_hold_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full data disk: the web site's sign-in fails with its OSError (a 503 for the
    screen), and the half-made request file it was writing is not left in the inbox."""
    d = inbox_dir(tmp_path)
    d.mkdir()

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space"):
        write_request(tmp_path, "st", "alice")
    monkeypatch.undo()
    assert os.listdir(d) == []


# ---- the station: the same as a badge ------------------------------------------------------

W, H, FPS = 320, 180, 15.0


def _run(cfg: config_mod.Config, keys: list[tuple[float, str]], picks: list[tuple[float, Any]],
         end: float) -> tuple[list, EventRecorder, RecordingSink]:  # fmt: skip
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS).replace("proof", enabled=False)
    cfg = cfg.replace("screen", packers=PACKERS)
    events = [{"at": at, "kind": "key", "text": text} for at, text in keys]
    scenario = Scenario.from_dict({"event": [*events, {"at": end, "kind": "end"}]})
    cam = SyntheticCamera(W, H, FPS, scenario, realtime=True)
    asm = assemble(cfg, camera=cam, live_view=False)
    rec, sink = EventRecorder(), RecordingSink()
    assert asm.events is not None
    asm.events.add(rec)
    asm.events.add(Feedback(sink, prepare_sounds(cfg.station.data_dir / "sounds")))
    key = screen_path(cfg.station.data_dir, cfg.station.name).stem

    def web_side() -> None:  # what POST /screen/<key>/packer does, at the scripted times
        t0 = time.monotonic()
        for at, who in picks:
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            write_request(cfg.station.data_dir, key, who)

    inbox_dir(cfg.station.data_dir).mkdir(parents=True, exist_ok=True)
    writer = threading.Thread(target=web_side)
    writer.start()
    asm.station.run(threading.Event())
    writer.join()
    clips = asm.ledger.clips()
    asm.close()
    return clips, rec, sink


def _shape(clips: list, rec: EventRecorder, sink: RecordingSink) -> tuple:
    changed = [e.data.get("packer") for e in rec.events if e.kind is EventKind.PACKER_CHANGED]
    return ([(c.order_id, c.packer) for c in clips], changed, [p.name for p in sink.played])


@pytest.mark.slow
def test_a_pick_on_the_screen_is_exactly_a_badge(tmp_path: Path) -> None:
    base = config_mod.load(None)
    orders = [(0.9, "PO-S1"), (1.3, "SEAL"), (2.1, "PO-S2"), (2.5, "SEAL")]
    screen = _run(base.with_data_dir(tmp_path / "screen"), orders,
                  [(0.3, "王芳"), (1.6, None)], 3.0)  # fmt: skip
    badges = [(0.3, "OP-王芳"), *orders[:2], (1.6, "SIGNOUT"), *orders[2:]]
    badge = _run(base.with_data_dir(tmp_path / "badge"), badges, [], 3.0)
    assert _shape(*screen) == _shape(*badge)
    assert _shape(*screen)[:2] == ([("PO-S1", "王芳"), ("PO-S2", None)], ["王芳", None])
    m = json.loads((tmp_path / "screen" / screen[0][0].manifest_path).read_text("utf-8"))
    assert m["packer"] == "王芳"


# ---- the web site --------------------------------------------------------------------------


@pytest.fixture
def signin_env(web_env: WebEnv) -> tuple[WebEnv, str, Any]:
    feed = ScreenFeed(web_env.data_dir, "桌1")
    feed.close()
    key = screen_path(web_env.data_dir, "桌1").stem
    env = WebEnv(web_env.data_dir, web_env.cfg.replace("screen", packers=PACKERS), web_env.clips)
    inbox_dir(env.data_dir).mkdir()
    return env, key, make_app(env)


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m, page[:500]
    return m.group(1)


def _requests(env: WebEnv) -> list[dict]:
    d = inbox_dir(env.data_dir)
    return [json.loads((d / n).read_bytes()) for n in sorted(os.listdir(d))]


def test_the_kiosk_signs_a_packer_in_and_out(signin_env) -> None:
    env, key, app = signin_env
    client = app.test_client()
    page = client.get(f"/screen/{key}").get_data(as_text=True)
    assert 'id="signin"' in page and ">王芳</button>" in page and 'value="signout"' in page
    token = _csrf(page)
    resp = client.post(f"/screen/{key}/packer", data={"packer": "王芳", "csrf_token": token})
    assert resp.status_code == 303 and resp.location.endswith(f"/screen/{key}")
    resp = client.post(f"/screen/{key}/packer", data={"action": "signout", "csrf_token": token},
                       headers={"Accept": "application/json"})  # fmt: skip
    assert resp.get_json() == {"ok": True, "packer": None}
    got = _requests(env)
    assert [(r["station"], r["packer"]) for r in got] == [(key, "王芳"), (key, None)]
    assert all(abs(r["at"] - time.time()) < 30 for r in got)


def test_the_kiosk_refuses_strangers_forgeries_and_unknown_names(signin_env) -> None:
    env, key, app = signin_env
    client = app.test_client()
    token = _csrf(client.get(f"/screen/{key}").get_data(as_text=True))
    url = f"/screen/{key}/packer"
    assert client.post(url, data={"packer": "mallory", "csrf_token": token}).status_code == 400
    assert client.post(url, data={"packer": "alice"}).status_code == 400  # no CSRF token
    assert client.post("/screen/nope/packer", data={"packer": "alice", "csrf_token": token}
                       ).status_code == 404  # fmt: skip
    remote = app.test_client()
    resp = remote.post(url, data={"packer": "alice"}, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert resp.status_code in (400, 302, 403)
    assert _requests(env) == []
    os.rmdir(inbox_dir(env.data_dir))  # the station has not made its inbox: nothing to write
    assert client.post(url, data={"packer": "alice", "csrf_token": token}).status_code == 503


def test_no_packers_no_sign_in_on_the_screen(web_env: WebEnv) -> None:
    ScreenFeed(web_env.data_dir, "桌1").close()
    key = screen_path(web_env.data_dir, "桌1").stem
    page = make_app(web_env).test_client().get(f"/screen/{key}").get_data(as_text=True)
    assert 'id="signin"' not in page


def test_screen_packers_are_validated() -> None:
    cfg = config_mod.load(None)
    for bad in ((" a",), ("",), ("a", "a"), ("x" * 65,), ("a\tb",)):
        with pytest.raises(config_mod.ConfigError):
            config_mod.validate(cfg.replace("screen", packers=bad))


def test_the_screen_state_shows_the_picked_packer() -> None:
    from station.floor.screen import ScreenState

    s = ScreenState("st")
    s.apply(StationEvent(EventKind.PACKER_CHANGED, "st", 1.0, None, {"packer": "王芳"}))
    assert s.to_json()["packer"] == "王芳"
