"""Live view (MJPEG from the stations' status files) and the dashboard."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest_web import WebEnv, login, make_app


def jpeg(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 36), color).save(buf, "JPEG")
    return buf.getvalue()


def write_station(live: Path, key: str, *, age_s: float = 1.0, **status) -> None:
    live.mkdir(parents=True, exist_ok=True)
    updated = (datetime.now(UTC) - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {
        "station": key,
        "state": "recording",
        "order_id": "PO-9",
        "waybills": [],
        "elapsed_s": 42.0,
        "frames": 1000,
        "fps": 30.0,
        "dropped": 0,
        "last_error": None,
        "updated_utc": updated,
        "disk_free_bytes": 10**10,
        "clock_synced": True,
        **status,
    }
    (live / f"{key}.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    (live / f"{key}.jpg").write_bytes(jpeg())


@pytest.fixture
def operator(web_env: WebEnv):
    live = web_env.data_dir / "live"
    write_station(live, "desk-1")
    write_station(live, "desk-2", age_s=120, state="idle", last_error="camera read timeout")
    write_station(live, "desk-3", clock_synced=False, state="idle")
    (live / ".desk-1.jpg.123.tmp").write_bytes(b"partial")
    (live / "broken.json").write_text("{not json")
    app = make_app(web_env, LIVE_MAX_S=0.6, LIVE_INTERVAL_S=0.05)
    return login(app.test_client(), "operator"), app


def test_live_page_lists_stations_with_state(operator) -> None:
    client, _ = operator
    page = client.get("/live").get_data(as_text=True)
    assert 'src="/live/desk-1/stream.mjpg"' in page
    assert "recording" in page and "PO-9" in page and "0:42" in page
    assert "stopped reporting" in page  # desk-2 is silent


def test_mjpeg_stream_is_bounded_and_multipart(operator) -> None:
    client, _ = operator
    started = time.monotonic()
    resp = client.get("/live/desk-1/stream.mjpg")
    elapsed = time.monotonic() - started
    assert resp.status_code == 200
    assert resp.mimetype == "multipart/x-mixed-replace"
    assert len(frames(resp.data)) == 1  # unchanged frame: sent once
    assert 0.5 <= elapsed < 3


def frames(body: bytes) -> list[bytes]:
    """The JPEGs of a whole multipart body; the part begun when the stream ended is empty."""
    parts = body.split(b"--packcamframe")
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    datas = []
    for part in parts[1:-1]:
        head, _, data = part.partition(b"\r\n\r\n")
        assert head == b"\r\nContent-Type: image/jpeg"
        datas.append(data.removesuffix(b"\r\n"))
    assert datas[-1] == b""  # the part begun when the stream ended
    assert all(d.startswith(b"\xff\xd8") for d in datas[:-1])
    return datas[:-1]


def test_each_frame_goes_out_with_the_next_parts_headers(operator) -> None:
    """Chromium shows a part only once the next part begins: a frame is sent together with the
    next part's headers, so a frame that does not change shows at once, not at a keepalive."""
    client, _ = operator
    resp = client.get("/live/desk-1/stream.mjpg", buffered=False)
    first = next(iter(resp.response))
    resp.close()
    head = b"--packcamframe\r\nContent-Type: image/jpeg\r\n\r\n"
    assert first.startswith(head) and first.endswith(b"\r\n" + head)
    assert frames(first + b"\r\n--packcamframe--\r\n") == [jpeg()]


def test_mjpeg_sends_a_new_part_when_the_frame_changes(operator, web_env: WebEnv) -> None:
    import threading

    client, _ = operator
    live = web_env.data_dir / "live"

    def replace() -> None:
        time.sleep(0.25)
        tmp = live / ".new.jpg"
        tmp.write_bytes(jpeg((0, 200, 0)))
        tmp.replace(live / "desk-1.jpg")

    t = threading.Thread(target=replace)
    t.start()
    body = client.get("/live/desk-1/stream.mjpg").data
    t.join()
    assert frames(body) == [jpeg(), jpeg((0, 200, 0))]


def test_stream_slots_are_released(operator) -> None:
    client, app = operator
    slots = app.extensions["packcam"]["live_slots"]
    for _ in range(3):
        client.get("/live/desk-1/stream.mjpg")
    assert slots.acquire(blocking=False)
    slots.release()


def test_stream_stops_when_the_site_stops(operator) -> None:
    client, app = operator
    app.extensions["packcam"]["stop"].set()
    started = time.monotonic()
    client.get("/live/desk-1/stream.mjpg")
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize(
    "key", ["nope", "..", "desk-1.json", "%2e%2e%2fweb-secret", "broken.json", ".desk-1"]
)
def test_unknown_or_hostile_station_keys_are_404(operator, key: str) -> None:
    client, _ = operator
    assert client.get(f"/live/{key}/stream.mjpg").status_code == 404
    assert client.get(f"/live/{key}/frame.jpg").status_code == 404


def test_snapshot(operator) -> None:
    client, _ = operator
    resp = client.get("/live/desk-1/frame.jpg")
    assert resp.status_code == 200 and resp.data[:2] == b"\xff\xd8"


def test_viewer_may_not_watch_live(web_client) -> None:
    login(web_client, "viewer")
    assert web_client.get("/live/desk-1/stream.mjpg").status_code == 403


def test_dashboard(operator, web_env: WebEnv) -> None:
    from conftest_web import TZ8, index_clip

    from station.store.ledger import Ledger
    from web.formatting import site_tz

    client, _ = operator
    ledger = Ledger.in_data_dir(web_env.data_dir)
    now = datetime.now(TZ8).replace(minute=5, second=0, microsecond=0)
    for i in range(3):
        index_clip(ledger, web_env.data_dir, web_env.file("plain"), f"TODAY-{i}", start=now,
                   station="desk-1")  # fmt: skip
    ledger.close()
    page = client.get("/dashboard").get_data(as_text=True)
    assert ">3<" in page  # clips today
    assert 'id="silent-stations"' in page and "desk-2" in page
    assert "camera read timeout" in page
    assert "Clock not synchronised" in page and "desk-3" in page
    assert 'id="days-left"' in page and "days of footage left at" in page
    assert "<rect" in page  # the per-hour chart
    doc = client.get("/api/stations").get_json()
    assert doc["clips_today"]["desk-1"] == 3
    hour = now.astimezone(site_tz(web_env.cfg)).hour
    assert doc["clips_today_per_hour"]["desk-1"][hour] == 3
    assert doc["days_left"] is not None and doc["days_left"] > 0
    keys = {s["key"] for s in doc["stations"]}
    assert {"desk-1", "desk-2", "desk-3", "broken"} == keys


def test_dashboard_shows_a_stations_alarm(web_env: WebEnv) -> None:
    live = web_env.data_dir / "live"
    write_station(
        live, "desk-9", state="idle", alarm="disk-full: 3 MB free; not starting new clips"
    )
    client = login(make_app(web_env).test_client(), "operator")
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'role="alert"' in page and "disk-full: 3 MB free" in page


def test_dashboard_shows_the_stations_start_up_self_check(web_env: WebEnv) -> None:
    """The station's start-up `packcam doctor` report reaches the dashboard: its WARN lines
    with their fix (this test config has no company CA and no TSA: two WARNs)."""
    from station import config as config_mod
    from station.runtime.doctor import startup_checks

    cfg = config_mod.load(None).with_data_dir(web_env.data_dir)
    cfg = cfg.replace("camera", width=320, height=240, fps=10.0)
    startup_checks(cfg, background=False)
    client = login(make_app(web_env).test_client(), "operator")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Self-check at start-up" in page and "WARN certificate" in page
    assert "packcam ca issue" in page and "WARN tsa" in page
    (web_env.data_dir / "live" / "doctor" / "station-01.json").write_text("{not json")
    assert client.get("/dashboard").status_code == 200  # a torn file is skipped, logged


def test_a_file_that_stays_unreadable_is_warned_of_once_until_it_reads_again(
    web_env: WebEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """Each open dashboard reads every status file every 2 s: a file that stays unreadable is
    one WARNING in the site log (then DEBUG), not 1800 an hour per page; once it reads again,
    its next breakage is warned of again. The same for a torn start-up self-check."""
    live = web_env.data_dir / "live"
    write_station(live, "desk-1")
    (live / "doctor").mkdir(parents=True, exist_ok=True)
    (live / "doctor" / "desk-1.json").write_text("{not json")
    (live / "broken.json").write_text("{not json")
    client = login(make_app(web_env).test_client(), "operator")

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    with caplog.at_level("DEBUG", logger="web"):
        for _ in range(5):
            assert client.get("/dashboard").status_code == 200
            assert client.get("/api/stations").status_code == 200
        assert len([m for m in warned() if "broken.json" in m]) == 1, warned()
        assert len([m for m in warned() if "self-check desk-1.json" in m]) == 1, warned()
        assert any(
            "broken.json" in r.getMessage() for r in caplog.records if r.levelname == "DEBUG"
        )
        write_station(live, "broken")
        (live / "doctor" / "desk-1.json").write_text(
            json.dumps({"station": "desk-1", "time": "2026-12-07T10:00:00Z", "checks": []})
        )
        client.get("/dashboard")
        (live / "broken.json").write_text("[]")
        (live / "doctor" / "desk-1.json").write_text("{not json")
        client.get("/dashboard")
        client.get("/dashboard")
    assert len([m for m in warned() if "broken.json" in m]) == 2, warned()
    assert "status is not an object" in warned()[-2] + warned()[-1]
    assert len([m for m in warned() if "self-check desk-1.json" in m]) == 2, warned()


def test_two_sites_in_one_process_each_warn_of_an_unreadable_file(
    web_env: WebEnv, caplog: pytest.LogCaptureFixture
) -> None:
    """What a site has warned of is its own: a second site over the same data dir in the same
    process (tests do this; so would a site rebuilt in a running process) warns of a broken
    status file and self-check the first time it reads them, once, not silenced by the first."""
    live = web_env.data_dir / "live"
    (live / "doctor").mkdir(parents=True, exist_ok=True)
    (live / "doctor" / "desk-1.json").write_text("{not json")
    (live / "broken.json").write_text("{not json")

    def warned(about: str) -> int:
        return len(
            [r for r in caplog.records if r.levelname == "WARNING" and about in r.getMessage()]
        )

    with caplog.at_level("WARNING", logger="web"):
        for n in (1, 2):
            client = login(make_app(web_env).test_client(), "operator")
            for _ in range(3):
                assert client.get("/dashboard").status_code == 200
                assert client.get("/live").status_code == 200
            assert warned("broken.json") == n, caplog.text
            assert warned("self-check desk-1.json") == n, caplog.text


@pytest.mark.parametrize(
    ("lang", "said"),
    [("zh-CN", "无法读取其状态文件（原因见网站日志）。"),
     ("en", "Its status file could not be read (the reason is in the site log).")],
)  # fmt: skip
def test_an_unreadable_status_file_is_said_in_the_readers_language_without_the_reason(
    web_env: WebEnv, caplog: pytest.LogCaptureFixture, lang: str, said: str
) -> None:
    """A station's status file that is no JSON, or too large: the dashboard says so in the
    reader's language, never the parser's English error or the file's path on the server,
    which go to the site's log."""
    live = web_env.data_dir / "live"
    write_station(live, "desk-1")
    (live / "broken.json").write_text("{not json")
    (live / "huge.json").write_text(" " * (70 * 1024) + "{}")
    client = login(make_app(web_env).test_client(), "operator")
    with caplog.at_level("WARNING", logger="web.stations"):
        page = client.get("/dashboard", headers={"Accept-Language": lang}).get_data(as_text=True)
    assert page.count(said) == 4, page  # each station's row and its line in "Last errors"
    for leak in ("unreadable status", "Expecting property name", "too large", str(live)):
        assert leak not in page, leak
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert str(live / "broken.json") in logged and "Expecting property name" in logged, logged
    assert str(live / "huge.json") in logged and "too large" in logged, logged
    doc = client.get("/api/stations").get_json()
    broken = next(s for s in doc["stations"] if s["key"] == "broken")
    assert broken["unreadable"] is True and broken["last_error"] == "status file unreadable"


@pytest.mark.parametrize("jpg", [None, b"", b"not a jpeg"], ids=["missing", "empty", "not-jpeg"])
@pytest.mark.parametrize("prefix", ["/live", "/screen"])
def test_a_station_with_no_readable_jpeg_yet_is_404_and_takes_no_slot(
    web_env: WebEnv, prefix: str, jpg: bytes | None
) -> None:
    """A station that has written its status but no picture yet: the picture is refused at
    once (the page's retry asks again), not a stream that sends nothing for live_max_s while
    holding a slot; once the station writes its JPEG the next ask streams it."""
    live = web_env.data_dir / "live"
    write_station(live, "desk-1")
    if jpg is None:
        (live / "desk-1.jpg").unlink()
    else:
        (live / "desk-1.jpg").write_bytes(jpg)
    app = make_app(web_env, LIVE_MAX_S=30.0, SCREEN_STREAM_MAX_S=30.0, LIVE_INTERVAL_S=0.05)
    client = login(app.test_client(), "operator")
    url = f"/{prefix.strip('/')}/desk-1/stream.mjpg"
    for _ in range(5):  # more than the slots there are: none kept
        started = time.monotonic()
        resp = client.get(url, buffered=False)
        try:
            assert resp.status_code == 404
        finally:
            resp.close()
        assert time.monotonic() - started < 5  # not held for the stream's 30 s
    (live / "desk-1.jpg").write_bytes(jpeg())
    resp = client.get(url, buffered=False)
    try:
        assert resp.status_code == 200
        assert frames(next(iter(resp.response)) + b"\r\n--packcamframe--\r\n") == [jpeg()]
    finally:
        resp.close()
