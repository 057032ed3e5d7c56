"""Property-based fuzz of routes and Range headers: never a 500, never a file outside the store.

Runs a few hundred examples by default; set PACKCAM_FUZZ_EXAMPLES (e.g. 10000) for a long run.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from conftest_web import FAST_PW, OUTSIDE_MARKER, add_users, build_env, login, make_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("PACKCAM_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=os.environ.get("PACKCAM_FUZZ_RANDOM") is None,
)


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory: pytest.TempPathFactory, mp4_template: Path):
    env = build_env(tmp_path_factory.mktemp("fuzz"), mp4_template)
    add_users(env.data_dir)
    app = make_app(env, LIVE_MAX_S=0.2)
    client = login(app.test_client(), "admin")
    store = {c.id: (env.data_dir / c.path) for c in env.clips.values()}
    contents = [p.read_bytes() for p in store.values() if p.is_file() and "outside" not in str(p)]
    secret = (env.data_dir / "web-secret").read_text().strip().encode()
    assert FAST_PW
    return FuzzSite(client, env, contents, secret)


class FuzzSite(tuple):
    """(client, env, clip contents, secret) with a short repr for hypothesis' reports."""

    def __new__(cls, *items: object) -> FuzzSite:
        return super().__new__(cls, items)

    def __repr__(self) -> str:
        return "<fuzz site>"


def check(resp, contents: list[bytes], secret: bytes) -> None:
    assert resp.status_code < 500 or resp.status_code == 503, resp.status_code
    body = resp.data
    assert OUTSIDE_MARKER not in body
    assert secret not in body
    assert b"SQLite format 3" not in body
    if resp.mimetype == "video/mp4" and body:
        assert any(body in c for c in contents), "served bytes that are not a stored clip"


hostile = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["..", "../..", "%2e%2e", "%00", "/", "//", "\\", "'", '"', ";--", "*", "~"]),
    st.lists(st.sampled_from(["..", ".", "a", "%2F", "订单", "web.sqlite3", "index.sqlite3",
                              "clips", "web-secret", "outside.mp4", "%", "?", "#"]),
             max_size=6).map("/".join),
)  # fmt: skip
prefixes = st.sampled_from(
    [
        "/orders/",
        "/api/orders/",
        "/clips/",
        "/s/",
        "/static/",
        "/live/",
        "/lang/",
        "/",
        "/clips/1/",
        "/clips/1/keyframes/",
        "/search?q=",
        "/api/clips?q=",
    ]
)
suffixes = st.sampled_from(["", "/video", "/download", "/thumb.jpg", "/stream.mjpg", ".jpg"])


@FUZZ
@given(prefix=prefixes, value=hostile, suffix=suffixes, encode=st.booleans())
def test_routes_never_crash_or_leak(fuzz_site, prefix: str, value: str, suffix: str, encode):
    client, _env, contents, secret = fuzz_site
    part = quote(value, safe="/%") if encode else quote(value, safe="/%.'\";*~\\")
    url = prefix + part + suffix
    if url.startswith("//"):
        # The test client would read "//x" as a host name; a real server passes it as a path.
        raw = unquote(url.split("?")[0]).encode("utf-8").decode("latin-1")
        resp = client.get("/", environ_overrides={"PATH_INFO": raw})
    else:
        resp = client.get(url)
    check(resp, contents, secret)


range_values = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda unit, specs: f"{unit}={','.join(specs)}",
        st.sampled_from(["bytes", "Bytes", "items", ""]),
        st.lists(
            st.one_of(
                st.builds(lambda a, b: f"{a}-{b}", st.integers(-5, 10**7), st.integers(-5, 10**7)),
                st.builds(lambda a: f"{a}-", st.integers(-5, 10**12)),
                st.builds(lambda a: f"-{a}", st.integers(-5, 10**7)),
                st.text(alphabet="0123456789-, =", max_size=12),
            ),
            max_size=4,
        ),
    ),
)


@FUZZ
@given(
    key=st.sampled_from(["plain", "unicode", "slash", "outside", "missing"]),
    rng=range_values,
    if_range=st.one_of(st.none(), st.text(max_size=20), st.just("etag")),
    endpoint=st.sampled_from(["video", "download"]),
    method=st.sampled_from(["GET", "HEAD"]),
)
def test_range_headers_never_crash(fuzz_site, key, rng, if_range, endpoint, method) -> None:
    client, env, contents, secret = fuzz_site
    clip = env.clips[key]
    url = f"/clips/{clip.id}/{endpoint}"
    headers = {"Range": rng}
    if if_range == "etag":
        headers["If-Range"] = client.head(url).headers.get("ETag", '"x"')
    elif if_range is not None:
        headers["If-Range"] = if_range
    try:
        resp = client.open(url, method=method, headers=headers)
    except ValueError:  # the test client itself refuses some header bytes (e.g. newlines)
        return
    check(resp, contents, secret)
    if resp.status_code == 206:
        total = int(resp.headers["Content-Range"].split("/")[1])
        start, end = map(int, resp.headers["Content-Range"].split()[1].split("/")[0].split("-"))
        assert 0 <= start <= end < total
        if method == "GET":
            assert len(resp.data) == end - start + 1
    if key in ("outside", "missing"):
        assert resp.status_code == 404
