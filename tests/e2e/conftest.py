"""Fixtures for browser tests: a real waitress server on 127.0.0.1 and Debian's Chromium."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest_web import WebEnv, add_users, build_env

CHROMIUM = Path(os.environ.get("PACKCAM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _skip_reason() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is not installed (pip install playwright)"
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing (apt-get install chromium); browsers are never downloaded"
    return None


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    reason = _skip_reason()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class Site:
    url: str
    env: WebEnv

    def __call__(self, path: str) -> str:
        return self.url.rstrip("/") + path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, mp4_template: Path) -> Iterator[Site]:
    from web import cli

    env = build_env(tmp_path_factory.mktemp("e2e"), mp4_template)
    add_users(env.data_dir)
    server = cli.make_server(env.cfg, "127.0.0.1", 0)
    server.packcam_app.config["PASSWORD_METHOD"] = "scrypt:1024:8:1"
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    try:
        yield Site(cli.server_url(server), env)
    finally:
        stop.set()
        thread.join(15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(locale="en-US", accept_downloads=True)
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()
