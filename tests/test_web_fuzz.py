"""Property-based fuzz of routes, Range headers, share links and the API: no 5xx, no leaks.

Each test runs PACKCAM_FUZZ_EXAMPLES cases (default 250; CI sets it so that the four tests run
well over 10 000 together, see .ci/run). Canary files lie in the data dir outside clips/, and
outside the data dir behind an index row and behind a symlink in clips/: no response may ever
carry their bytes, the site secret, a database file, or video bytes that are not a stored clip.
"""

from __future__ import annotations

import base64
import os
import re
from collections import Counter
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from conftest_web import (
    FAST_PW,
    OUTSIDE_MARKER,
    PASSWORDS,
    add_users,
    build_env,
    index_clip,
    login,
    make_app,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("PACKCAM_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=os.environ.get("PACKCAM_FUZZ_RANDOM") is None,
)
CANARY = b"CANARY-OUTSIDE-THE-DATA-DIR;"
RUNS: Counter[str] = Counter()  # cases actually run, per test (checked by the last test)


class FuzzSite:
    """Clients (admin, anonymous), the env, what may be served, and a share link of PO-1001."""

    def __init__(self, tmp: Path, mp4_template: Path) -> None:
        from station.store.ledger import Ledger

        self.env = env = build_env(tmp / "site", mp4_template)
        add_users(env.data_dir)
        # A canary outside the data dir, reachable only through a bad index row or a symlink.
        canary = tmp / "canary.mp4"
        canary.write_bytes(CANARY * 64)
        link = env.data_dir / "clips/2026/11/30/link.mp4"
        link.symlink_to(canary)
        ledger = Ledger.in_data_dir(env.data_dir)
        try:
            env.clips["symlink"] = index_clip(
                ledger, env.data_dir, mp4_template, "LINK-1", rel="clips/2026/11/30/link.mp4",
                copy=False,
            )  # fmt: skip
            env.clips["absolute"] = index_clip(
                ledger, env.data_dir, mp4_template, "ABS-1", rel=str(canary), copy=False
            )
            env.clips["dotdot"] = index_clip(
                ledger, env.data_dir, mp4_template, "DOTDOT-1",
                rel="clips/../../canary.mp4", copy=False,
            )  # fmt: skip
        finally:
            ledger.close()
        self.app = make_app(env, LIVE_MAX_S=0.2)
        self.admin = login(self.app.test_client(), "admin")
        self.anon = self.app.test_client()
        clips_dir = (env.data_dir / "clips").resolve()
        self.contents = [
            p.read_bytes()
            for p in (env.data_dir / c.path for c in env.clips.values())
            if p.is_file() and p.resolve().is_relative_to(clips_dir)
        ]
        self.secret = (env.data_dir / "web-secret").read_text().strip().encode()
        self.share_path, self.share_ids = self._share("PO-1001")
        assert FAST_PW

    def _share(self, order_id: str) -> tuple[str, set[int]]:
        from web.db import WebDB
        from web.share import share_token

        db = WebDB.in_data_dir(self.env.data_dir, pw_method=FAST_PW)
        share = db.create_share(order_id, "admin", __import__("datetime").timedelta(days=1))
        db.close()
        with self.app.test_request_context():
            token = share_token(share)
        ids = {c.id for c in self.env.clips.values() if c.order_id == order_id}
        return f"/s/{token}", ids

    def __repr__(self) -> str:  # short, for hypothesis' failure reports
        return "<fuzz site>"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, mp4_template: Path) -> FuzzSite:
    return FuzzSite(tmp_path_factory.mktemp("fuzz"), mp4_template)


def check(resp, s: FuzzSite) -> None:
    assert resp.status_code < 500 or resp.status_code == 503, resp.status_code
    body = resp.data
    assert OUTSIDE_MARKER not in body and CANARY not in body
    assert s.secret not in body
    assert b"SQLite format 3" not in body
    if resp.mimetype == "video/mp4" and body:
        assert any(body in c for c in s.contents), "served bytes that are not a stored clip"


hostile = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["..", "../..", "%2e%2e", "%00", "/", "//", "\\", "'", '"', ";--", "*", "~"]),
    st.lists(st.sampled_from(["..", ".", "a", "%2F", "订单", "web.sqlite3", "index.sqlite3",
                              "clips", "web-secret", "outside.mp4", "canary.mp4", "proof",
                              "%", "?", "#", "1", "999999999999",
                              "9223372036854775808", "-0", "1e3"]),
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
        "/api/clips?limit=",
        "/search?from=",
        "/verify/",
        "/admin/",
        "/dashboard?",
        "/shares/",
    ]
)
suffixes = st.sampled_from(
    ["", "/video", "/download", "/thumb.jpg", "/stream.mjpg", "/frame.jpg", ".jpg", "/bundle.zip",
     "/revoke"]
)  # fmt: skip


@FUZZ
@given(
    prefix=prefixes,
    value=hostile,
    suffix=suffixes,
    encode=st.booleans(),
    who=st.sampled_from(["admin", "anonymous"]),
    method=st.sampled_from(["GET", "HEAD"]),
)
def test_routes_never_crash_or_leak(site: FuzzSite, prefix, value, suffix, encode, who, method):
    RUNS["routes"] += 1
    client = site.admin if who == "admin" else site.anon
    part = quote(value, safe="/%") if encode else quote(value, safe="/%.'\";*~\\")
    url = prefix + part + suffix
    if url.startswith("//"):
        # The test client would read "//x" as a host name; a real server passes it as a path.
        raw = unquote(url.split("?")[0]).encode("utf-8").decode("latin-1")
        resp = client.open("/", method=method, environ_overrides={"PATH_INFO": raw})
    else:
        resp = client.open(url, method=method)
    check(resp, site)


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
BAD_ROWS = ("outside", "missing", "symlink", "absolute", "dotdot")


def _assert_range_answer(resp, method: str) -> None:
    if resp.status_code == 206:
        total = int(resp.headers["Content-Range"].split("/")[1])
        start, end = map(int, resp.headers["Content-Range"].split()[1].split("/")[0].split("-"))
        assert 0 <= start <= end < total
        if method == "GET":
            assert len(resp.data) == end - start + 1


@FUZZ
@given(
    key=st.sampled_from(["plain", "unicode", "slash", *BAD_ROWS]),
    rng=range_values,
    if_range=st.one_of(st.none(), st.text(max_size=20), st.just("etag")),
    endpoint=st.sampled_from(["video", "download"]),
    method=st.sampled_from(["GET", "HEAD"]),
)
def test_range_headers_never_crash(site: FuzzSite, key, rng, if_range, endpoint, method) -> None:
    RUNS["range"] += 1
    client, env = site.admin, site.env
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
    check(resp, site)
    _assert_range_answer(resp, method)
    if key in BAD_ROWS:
        assert resp.status_code == 404


@FUZZ
@given(
    clip=st.one_of(st.sampled_from(range(1, 14)), st.integers(-3, 2**70)),
    token=st.sampled_from(["valid", "truncated", "flipped", "other-salt", "none"]),
    suffix=st.sampled_from(["video", "download", "thumb.jpg", "keyframes/0.jpg",
                            "keyframes/7.jpg", "keyframes/-1.jpg", f"keyframes/{10**20}.jpg",
                            "bundle.zip", ""]),
    rng=st.one_of(st.none(), range_values),
    method=st.sampled_from(["GET", "HEAD"]),
)  # fmt: skip
def test_share_links_never_leave_their_order(site: FuzzSite, clip, token, suffix, rng, method):
    """A link for PO-1001: anything served is one of PO-1001's clips, through a valid token."""
    RUNS["share"] += 1
    path = site.share_path
    if token == "truncated":
        path = path[:-3]
    elif token == "flipped":
        # Not the last character: its low bits are base64 padding, so some flips of it decode
        # to the same signature (the same, valid token). 'A' and 'g' differ in the top bit.
        path = path[:-5] + ("g" if path[-5] != "g" else "A") + path[-4:]
    elif token == "other-salt":
        from itsdangerous import URLSafeTimedSerializer

        path = "/s/" + URLSafeTimedSerializer(site.secret.decode(), salt="x").dumps("0" * 24)
    elif token == "none":
        path = "/s"
    url = f"{path}/clips/{clip}/{suffix}".rstrip("/")
    headers = {} if rng is None else {"Range": rng}
    try:
        resp = site.anon.open(url, method=method, headers=headers)
    except ValueError:
        return
    check(resp, site)
    _assert_range_answer(resp, method)
    if resp.status_code in (200, 206, 304):
        assert token == "valid" and clip in site.share_ids, (url, resp.status_code)
        assert suffix not in ("bundle.zip", "") and "-1" not in suffix


def _openapi_params(doc: dict) -> list[tuple[str, list[dict]]]:
    return [(p, op["get"].get("parameters", [])) for p, op in doc["paths"].items() if "get" in op]


def _value(schema: dict) -> st.SearchStrategy[str]:
    """Values for a parameter: valid for its schema, at its edges, and plain wrong."""
    kind = schema.get("type")
    good: st.SearchStrategy[str]
    if kind == "integer":
        lo, hi = schema.get("minimum", -(2**63)), schema.get("maximum", 2**63)
        good = st.integers(lo - 2, hi + 2).map(str)
    elif schema.get("format") == "date":
        good = st.dates().map(str)
    else:
        good = st.sampled_from(["PO-1001", "订单-七号", "A/B/../C", "SF1234567890120", "50%_off"])
    return st.one_of(good, st.text(max_size=24), st.sampled_from(["", "1e9", "-1", "NaN"]))


BASIC = "Basic " + base64.b64encode(f"viewer:{PASSWORDS['viewer']}".encode()).decode()


@st.composite
def api_requests(draw: st.DrawFn) -> tuple[str, dict[str, str], str]:
    from web.api import openapi_document

    path, params = draw(st.sampled_from(_openapi_params(openapi_document())))
    query = {}
    for p in params:
        if p["in"] == "path":
            path = path.replace("{" + p["name"] + "}", quote(draw(_value(p["schema"])), safe=""))
        elif draw(st.booleans()):
            query[p["name"]] = draw(_value(p.get("schema", {})))
    auth = draw(st.sampled_from(["basic", "session", "none", "wrong"]))
    return path, query, auth


@FUZZ
@given(req=api_requests())
def test_api_answers_as_its_openapi_description_says(site: FuzzSite, req) -> None:
    """Requests built from /api/openapi.json: only documented statuses, always JSON."""
    from web.api import openapi_document

    RUNS["api"] += 1
    path, query, auth = req
    headers = {}
    environ = {}
    client = site.admin if auth == "session" else site.anon
    if auth == "basic":
        headers["Authorization"] = BASIC
    elif auth == "wrong":
        # Locks "nobody" after a few tries (429 is documented for every route); from its own
        # address, so the address lock that follows never stops the viewer's requests.
        headers["Authorization"] = "Basic " + base64.b64encode(b"nobody:x").decode()
        environ["REMOTE_ADDR"] = "198.51.100.66"
    resp = client.get(path, query_string=query, headers=headers, environ_overrides=environ)
    check(resp, site)
    assert resp.is_json, (path, resp.status_code, resp.mimetype)
    template = next(
        (t for t in openapi_document()["paths"]
         if re.fullmatch(re.sub(r"\{[^}]+\}", ".+", t), path)),
        None,
    )  # fmt: skip
    if template is None:  # e.g. an empty order ID: no such route
        assert resp.status_code == 404
        return
    documented = set(openapi_document()["paths"][template]["get"]["responses"]) | {"429"}
    assert str(resp.status_code) in documented, (path, query, resp.status_code)


def test_the_requested_number_of_cases_ran() -> None:
    """Hypothesis stops early when a strategy runs out of new cases: make sure none did."""
    if not RUNS:
        pytest.skip("run together with the fuzz tests above")
    assert all(n >= EXAMPLES for n in RUNS.values()), dict(RUNS)
    assert sum(RUNS.values()) >= 4 * EXAMPLES
