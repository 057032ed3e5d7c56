"""web/static/retry.js's pure decisions, run in Chromium: the backoff and why a stream failed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import web

RETRY_JS = Path(web.__file__).parent / "static" / "retry.js"


@pytest.fixture
def retry(page: Any) -> Any:
    page.add_script_tag(path=str(RETRY_JS))
    return page


def test_the_wait_doubles_from_the_first_and_stays_within_the_bound(retry: Any) -> None:
    delays = "([ns, first, max]) => ns.map((n) => PackcamRetry.delay(n, first, max))"
    events = retry.evaluate(delays, [[0, 1, 2, 3, 4, 5, 6, 40], 1000, 30000])
    assert events == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    picture = retry.evaluate(delays, [[0, 1, 2, 3, 4], 500, 5000])
    assert picture == [500, 1000, 2000, 4000, 5000]


@pytest.mark.parametrize(
    ("status", "kind", "why"),
    [
        (503, "basic", "busy"),  # every stream slot taken
        (401, "basic", "denied"),  # a proxy's login in front
        (403, "basic", "denied"),  # a wrong [screen] token
        (0, "opaqueredirect", "denied"),  # sent to the login page: no token, no session
        (200, "basic", "lost"),  # the stream is there again: the next try takes it
        (404, "basic", "lost"),  # no screen file (yet): the station has not started
        (502, "basic", "lost"),  # a proxy in front, the site down
        (504, "basic", "lost"),
        (0, "error", "lost"),  # no answer at all
    ],
)
def test_why_a_refused_event_stream_failed(retry: Any, status: int, kind: str, why: str) -> None:
    assert retry.evaluate("([s, k]) => PackcamRetry.why(s, k)", [status, kind]) == why
