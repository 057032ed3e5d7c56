"""The station screen in Chromium: a real station and a real site; each scan shows on it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from test_live_slots import _open_all
from test_web_live import write_station

import web.live
from station import config as config_mod
from station.capture.frames import InputEvent, RawScan
from station.capture.scanner import EventQueue
from station.capture.synthetic import Scenario, SyntheticCamera
from station.floor.screen import ScreenFeed, screen_path
from station.recording.session import SEAL_LATE_S
from station.service import assemble

pytestmark = pytest.mark.slow


class Keyboard:
    """A scanner that types when the test says so; the scan's time is the keystroke's."""

    def __init__(self) -> None:
        self.queue = EventQueue("e2e")
        self.typed = 0.0  # when the last scan was typed (monotonic)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def type(self, text: str) -> None:
        self.typed = time.monotonic()
        self.queue.put(RawScan(text, "keyboard", self.typed))

    def seal(self) -> None:
        """Scan the seal card once the clip has run past SEAL_LATE_S: one sooner after the
        order's scan is the parcel before's seal, a moment late, and seals nothing (as a
        packer's real seal always comes after the packing)."""
        time.sleep(max(0.0, self.typed + SEAL_LATE_S + 0.2 - time.monotonic()))
        self.type("SEAL")

    def poll(self, now: float) -> list[InputEvent]:
        return self.queue.drain()


@pytest.fixture
def station_site(tmp_path: Any) -> Iterator[tuple[str, Keyboard, str]]:
    with _station_site(tmp_path) as site:
        yield site


@pytest.fixture
def signin_site(tmp_path: Any) -> Iterator[tuple[str, Keyboard, str]]:
    with _station_site(tmp_path, packers=("王芳", "alice")) as site:
        yield site


@contextlib.contextmanager
def _station_site(tmp_path: Any, **screen: Any) -> Iterator[tuple[str, Keyboard, str]]:
    from web import cli

    cfg = config_mod.load(None).with_data_dir(tmp_path / "data")
    cfg = cfg.replace("screen", **screen)
    cfg = cfg.replace("camera", width=320, height=180, fps=10.0)
    cfg = cfg.replace("scanner", camera_decode=False).replace("proof", enabled=False)
    cam = SyntheticCamera(320, 180, 10.0, Scenario.from_dict({"seed": 2}), realtime=True)
    asm = assemble(cfg, camera=cam, live_view=True)
    keyboard = Keyboard()
    asm.station.scan_sources.append(keyboard)
    stop = threading.Event()
    capture = threading.Thread(target=asm.station.run, args=(stop,), name="capture")
    capture.start()
    server = cli.make_server(cfg, "127.0.0.1", 0)
    web_stop = threading.Event()
    web = threading.Thread(target=cli.run_server, args=(server,), kwargs={"stop": web_stop})
    web.start()
    try:
        key = screen_path(cfg.station.data_dir, cfg.station.name).stem
        yield cli.server_url(server).rstrip("/"), keyboard, key
    finally:
        web_stop.set()
        stop.set()
        capture.join(30)
        asm.close()
        web.join(15)


def test_the_kiosk_screen_shows_each_order_waybill_and_seal(page: Any, station_site) -> None:
    # How fast it shows is bench/screen.py's measure (docs/performance.md), not a test's.
    url, keyboard, key = station_site
    page.goto(f"{url}/screen")  # from 127.0.0.1: the kiosk needs no login
    page.wait_for_url(f"{url}/screen/{key}")
    page.wait_for_function("() => document.getElementById('screen').dataset.seq !== '-1'")
    assert page.locator("#state").inner_text() == "Ready: scan an order"
    page.wait_for_function("() => { const i = document.getElementById('live');"
                           " return i && i.complete && i.naturalWidth > 0; }")  # fmt: skip
    for i, order in enumerate(["PO-SCREEN-1", "PO-SCREEN-2", "PO-SCREEN-3"]):
        keyboard.type(order)
        page.wait_for_function(
            "(o) => document.getElementById('order').textContent === o", arg=order, timeout=5000
        )
        assert page.locator("#screen").get_attribute("data-state") == "recording"
        if i == 0:
            keyboard.type("SF1234567890123")
            page.wait_for_function(
                "() => document.getElementById('waybills').textContent === 'SF1234567890123'"
            )
    keyboard.seal()
    page.wait_for_function("() => document.getElementById('screen').dataset.state === 'sealed'")
    assert page.locator("#state").inner_text() == "Sealed ✓"
    last = page.locator("#last-clip").inner_text()
    assert last.startswith("PO-SCREEN-3") and "✓" in last
    assert page.locator("#recent li").count() == 3  # next-order ended the first two


def test_a_packer_signs_in_and_out_on_the_kiosk_screen(page: Any, signin_site) -> None:
    url, keyboard, key = signin_site
    page.goto(f"{url}/screen/{key}")
    page.wait_for_function("() => document.getElementById('screen').dataset.seq !== '-1'")
    assert page.locator("#packer").inner_text() == "—"
    page.get_by_role("button", name="王芳").click()  # the station takes it like a badge
    page.wait_for_function("() => document.getElementById('packer').textContent === '王芳'",
                           timeout=5000)  # fmt: skip
    assert page.get_by_role("button", name="王芳").get_attribute("aria-pressed") == "true"
    keyboard.type("PO-SIGNIN-1")
    page.wait_for_function("() => document.getElementById('order').textContent === 'PO-SIGNIN-1'")
    assert page.locator("#packer").inner_text() == "王芳"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_function("() => document.getElementById('packer').textContent === '—'",
                           timeout=5000)  # fmt: skip
    keyboard.seal()
    page.wait_for_function("() => document.getElementById('screen').dataset.state === 'sealed'")


@contextlib.contextmanager
def _serve(cfg: config_mod.Config, port: int = 0) -> Iterator[str]:
    """The site alone on 127.0.0.1 (``port`` 0: any free one) while in the block; its URL."""
    from web import cli

    server = cli.make_server(cfg, "127.0.0.1", port)
    stop = threading.Event()
    web = threading.Thread(target=cli.run_server, args=(server,), kwargs={"stop": stop})
    web.start()
    try:
        yield cli.server_url(server).rstrip("/")
    finally:
        stop.set()
        web.join(15)


def _kiosk_config(tmp_path: Path, **screen: Any) -> config_mod.Config:
    """A config with the screen file of station "desk-1" written and no live picture yet."""
    cfg = config_mod.load(None).with_data_dir(tmp_path / "data").replace("screen", **screen)
    ScreenFeed(cfg.station.data_dir, "desk-1").close()
    return cfg


@pytest.fixture
def kiosk_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The site alone, with the screen file of station "desk-1" and no live picture yet:
    (its URL, the live folder the test writes the station's picture into)."""
    cfg = _kiosk_config(tmp_path)
    with _serve(cfg) as url:
        yield url, cfg.station.data_dir / "live"


SHOWN = (
    "() => { const i = document.getElementById('live');"
    " return i && i.complete && i.naturalWidth > 0; }"
)


def test_a_kiosk_opened_before_the_stations_first_frame_shows_it_once_it_comes(
    page: Any, kiosk_site
) -> None:
    """At boot the kiosk browser can be quicker than the camera (and under load, in CI, the
    page came before the station's first frame): the page says there is no picture yet and
    shows it once the station writes one, without a reload."""
    url, live = kiosk_site
    page.goto(f"{url}/screen/desk-1")
    page.wait_for_function("() => document.getElementById('screen').dataset.seq !== '-1'")
    assert page.locator(".no-live").is_visible()
    write_station(live, "desk-1")
    page.wait_for_function(SHOWN)
    assert not page.locator(".no-live").is_visible()


def test_a_frame_that_does_not_change_shows_without_waiting_for_the_next(
    page: Any, kiosk_site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stopped station's picture does not change: the stream's first part is all the browser
    gets (no keepalive falls due here), and Chromium shows a part only once the next part's
    headers arrive; they are sent with it."""
    monkeypatch.setattr(web.live, "KEEPALIVE_S", 3600.0)
    url, live = kiosk_site
    write_station(live, "desk-1")
    page.goto(f"{url}/screen/desk-1", wait_until="commit")
    page.wait_for_function(SHOWN)


SCREEN = "() => document.getElementById('screen').dataset"
LIVE_AGAIN = (
    "() => { const s = document.getElementById('screen').dataset;"
    " return s.conn === 'ok' && s.seq !== '-1'; }"
)


def test_a_kiosk_refused_its_streams_comes_back_by_itself_once_a_slot_is_free(
    page: Any, kiosk_site
) -> None:
    """Every screen slot taken: the events are refused (503), and an EventSource refused with
    an HTTP error never tries again by itself (the spec). The kiosk says it is reconnecting,
    tries again, sooner first, and shows the live state and picture once a slot is free,
    without a reload."""
    url, live = kiosk_site
    write_station(live, "desk-1")
    held = _open_all(urlsplit(url).port, "/screen/desk-1/stream.mjpg", "")
    try:
        page.goto(f"{url}/screen/desk-1")
        page.wait_for_function(f"() => ({SCREEN})().conn === 'busy'")
        banner = page.locator("#conn-banner")
        assert banner.is_visible() and "reconnecting" in banner.inner_text().lower()
        assert page.locator("#screen").get_attribute("data-seq") == "-1"
    finally:
        for sock in held:
            sock.close()
    page.wait_for_function(LIVE_AGAIN)
    page.wait_for_function(SHOWN)
    assert not page.locator("#conn-banner").is_visible()


def test_a_kiosk_whose_token_stops_working_says_so_and_comes_back_once_it_works(
    page: Any, tmp_path: Path
) -> None:
    """The site restarted with another [screen] token (rotated, mistyped): the kiosk's events
    are refused (403) and the screen says the token is refused, clearly, instead of a silent
    "lost"; it keeps trying, so it comes back by itself once the token works again."""
    token = "kiosk-token-" + "k" * 8
    cfg = _kiosk_config(tmp_path, allow_localhost=False, token=token)
    with _serve(cfg) as url:
        page.goto(f"{url}/screen/desk-1?token={token}")
        page.wait_for_function(LIVE_AGAIN)
    port = urlsplit(url).port
    with _serve(cfg.replace("screen", token="another-token-" + "x" * 8), port):
        page.wait_for_function(f"() => ({SCREEN})().conn === 'denied'")
        banner = page.locator("#conn-banner")
        assert banner.is_visible() and "token" in banner.inner_text()
    with _serve(cfg, port):
        page.wait_for_function(LIVE_AGAIN)
        assert not page.locator("#conn-banner").is_visible()
