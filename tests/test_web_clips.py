"""Search, order page and clip streaming (Range, conditional GET) through the Flask test client."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest_web import ORDERS, WebEnv, login
from werkzeug.http import http_date, parse_date

from station.store.ledger import ClipRecord


@pytest.fixture
def viewer(web_client):
    return login(web_client, "viewer")


def order_url(order_id: str) -> str:
    return "/orders/" + quote(order_id, safe="")


# ---- search ---------------------------------------------------------------------------------


def test_search_lists_latest_clips_with_thumbnails(viewer, web_env: WebEnv) -> None:
    page = viewer.get("/search").get_data(as_text=True)
    assert "PO-1001" in page and "订单-七号" in page
    assert f"/clips/{web_env.clips['plain'].id}/thumb.jpg" in page


@pytest.mark.parametrize(
    ("q", "expect", "absent"),
    [
        ("PO-1001", ["PO-1001"], ["订单-七号"]),
        ("PO-10", ["PO-1001"], ["订单-七号"]),  # prefix
        ("订单", ["订单-七号"], ["PO-1001"]),
        ("SF1234567890121", ["订单-七号"], ["PO-1001"]),  # exact waybill
        ("SF123456789012", ["PO-1001", "订单-七号"], []),  # waybill prefix
        ("50%", ["50%_off"], ["PO-1001"]),  # % is a character, not a wildcard
        ("x'; DROP", ["DROP TABLE"], ["PO-1001"]),
    ],
)
def test_search_by_order_or_waybill(viewer, q: str, expect: list[str], absent: list[str]) -> None:
    page = viewer.get("/search", query_string={"q": q}).get_data(as_text=True)
    for text in expect:
        assert text.replace("'", "&#39;") in page
    for text in absent:
        assert f">{text}<" not in page


def test_search_filters_station_and_dates(viewer) -> None:
    page = viewer.get("/search", query_string={"station": "station-02"}).get_data(as_text=True)
    assert "订单-七号" in page and ">PO-1001<" not in page
    empty = viewer.get("/search", query_string={"from": "2027-01-01"}).get_data(as_text=True)
    assert 'id="no-results"' in empty
    day = viewer.get("/search", query_string={"from": "2026-11-30", "to": "2026-11-30"})
    assert "PO-1001" in day.get_data(as_text=True)
    bad = viewer.get("/search", query_string={"from": "30/11/2026"})
    assert bad.status_code == 200 and "2026-11-30" in bad.get_data(as_text=True)


def test_search_needs_login(web_client) -> None:
    resp = web_client.get("/search?q=PO")
    assert resp.status_code == 302 and resp.location.startswith("/login?next=")


# ---- order page ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(ORDERS))
def test_order_page_for_every_kind_of_order_id(viewer, web_env: WebEnv, key: str) -> None:
    clip = web_env.clips[key]
    resp = viewer.get(order_url(clip.order_id))
    assert resp.status_code == 200, key
    page = resp.get_data(as_text=True)
    assert f'<video id="video-{clip.id}"' in page
    assert f'src="/clips/{clip.id}/video"' in page
    assert clip.sha256 in page
    assert f"/clips/{clip.id}/keyframes/0.jpg" in page


def test_order_page_shows_every_clip_and_logs_the_view(viewer, web_env: WebEnv) -> None:
    page = viewer.get(order_url("PO-1001")).get_data(as_text=True)
    assert "Clip 1 of 2" in page and "Clip 2 of 2" in page
    again = viewer.get(order_url("PO-1001")).get_data(as_text=True)
    assert again.count(">viewed<") >= 1 and "viewer" in again


@pytest.mark.parametrize(
    "path",
    [
        "/orders/NOPE",
        "/orders/..",
        "/orders/%2e%2e/%2e%2e/etc/passwd",
        "/orders/..%2F..%2Findex.sqlite3",
        "/orders/%00",
        "/orders/%ff%fe",
        "/orders/' OR '1'='1",
        "/orders/订单-不存在",
        "/orders/" + "x" * 5000,
        "/clips/999999/video",
        "/clips/999999/download",
        "/clips/999999/thumb.jpg",
        "/clips/1/keyframes/99.jpg",
        "/clips/-1/video",
        "/clips/abc/video",
        "/clips/\u0661/video",  # Arabic-Indic 1: int() reads it as clip 1
        "/clips/\uff11/download",  # fullwidth 1
        "/clips/1/keyframes/\u0660.jpg",
        f"/clips/{2**63}/video",
        f"/clips/{2**64}/download",
        f"/clips/1/keyframes/{2**70}.jpg",
        "/static/../web.sqlite3",
        "/static/",
        "/clips/",
        "/orders/",
    ],
)
def test_unknown_things_are_404(viewer, path: str) -> None:
    resp = viewer.get(path)
    assert resp.status_code == 404, path
    assert b"<html" in resp.data


@pytest.mark.parametrize("order_id", ["A//B", "trail/", "A/B"])
def test_slashes_in_order_ids_are_never_merged(web_env: WebEnv, mp4_template, order_id) -> None:
    """ "A//B" is its own order: no redirect to order "A/B" (werkzeug merges slashes by default)."""
    from conftest_web import index_clip, make_app

    from station.store.ledger import Ledger

    ledger = Ledger.in_data_dir(web_env.data_dir)
    for oid in ("A//B", "trail/", "A/B"):
        index_clip(ledger, web_env.data_dir, mp4_template, oid)
    ledger.close()
    viewer = login(make_app(web_env).test_client(), "viewer")
    for url in (order_url(order_id), "/orders/" + order_id):
        resp = viewer.get(url)
        assert resp.status_code == 200, (url, resp.status_code, resp.location)
        assert order_id in resp.get_data(as_text=True)
    api = viewer.get("/api/orders/" + quote(order_id, safe=""))
    assert api.status_code == 200 and api.json["order_id"] == order_id


def test_unknown_order_page_offers_search(viewer) -> None:
    resp = viewer.get("/orders/NOPE-123")
    assert resp.status_code == 404
    assert b"NOPE-123" in resp.data and b'action="/search"' in resp.data


def test_index_row_outside_the_store_is_never_served(viewer, web_env: WebEnv) -> None:
    for key in ("outside", "missing"):
        clip = web_env.clips[key]
        assert viewer.get(f"/clips/{clip.id}/video").status_code == 404
        assert viewer.get(f"/clips/{clip.id}/download").status_code == 404
        assert viewer.get(f"/clips/{clip.id}/thumb.jpg").status_code == 404
    page = viewer.get(order_url("GONE-1")).get_data(as_text=True)
    assert "missing from the store" in page


def test_size_mismatch_is_flagged(viewer, web_env: WebEnv) -> None:
    with web_env.file("pct").open("ab") as f:
        f.write(b"tampered")
    page = viewer.get(order_url(ORDERS["pct"])).get_data(as_text=True)
    assert "may have been altered" in page


# ---- streaming ----------------------------------------------------------------------------


def video(web_env: WebEnv, key: str = "plain") -> tuple[str, bytes]:
    clip = web_env.clips[key]
    return f"/clips/{clip.id}/video", web_env.file(key).read_bytes()


def test_full_get_streams_the_exact_file(viewer, web_env: WebEnv) -> None:
    url, data = video(web_env)
    resp = viewer.get(url)
    assert resp.status_code == 200
    assert resp.data == data
    assert resp.headers["Content-Length"] == str(len(data))
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Type"] == "video/mp4"
    assert resp.headers["ETag"].startswith('"') and resp.headers["Last-Modified"]
    assert resp.headers["Content-Disposition"].startswith("inline")
    assert "private" in resp.headers["Cache-Control"]


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes=0-99", (0, 100)),
        ("bytes=100-", (100, None)),
        ("bytes=-500", (-500, None)),
        ("bytes=10-10", (10, 11)),
        ("bytes=0-99999999", (0, None)),
    ],
)
def test_single_range_is_206(viewer, web_env: WebEnv, header: str, span) -> None:
    url, data = video(web_env)
    resp = viewer.get(url, headers={"Range": header})
    assert resp.status_code == 206
    start, end = span
    expect = data[start:end] if end is not None else data[start:]
    assert resp.data == expect
    first = len(data) + start if start < 0 else start
    assert resp.headers["Content-Range"] == f"bytes {first}-{first + len(expect) - 1}/{len(data)}"
    assert resp.headers["Content-Length"] == str(len(expect))


def test_many_seeks_in_a_row(viewer, web_env: WebEnv) -> None:
    url, data = video(web_env)
    for start in range(0, len(data), max(1, len(data) // 7)):
        resp = viewer.get(url, headers={"Range": f"bytes={start}-{start + 999}"})
        assert resp.status_code == 206 and resp.data == data[start : start + 1000]


@pytest.mark.parametrize("extra", [1, 1000, 10**12])
def test_suffix_range_longer_than_the_file_is_the_whole_file(
    viewer, web_env: WebEnv, extra: int
) -> None:
    # RFC 9110 section 14.1.2: "If the selected representation is shorter than the specified
    # suffix-length, the entire representation is used" (a player or a script asking for the
    # last MB of a smaller clip); it is not a 416.
    url, data = video(web_env)
    resp = viewer.get(url, headers={"Range": f"bytes=-{len(data) + extra}"})
    assert resp.status_code == 206
    assert resp.data == data
    assert resp.headers["Content-Range"] == f"bytes 0-{len(data) - 1}/{len(data)}"
    assert resp.headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=999999999-1000000000"])
def test_unsatisfiable_range_is_416(viewer, web_env: WebEnv, header: str) -> None:
    url, data = video(web_env)
    resp = viewer.get(url, headers={"Range": header})
    assert resp.status_code == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-0,-1",  # several ranges: the whole file (documented)
        "bytes=5-1",
        "bytes=abc",
        "bytes=-0",
        "items=0-10",
        "bytes=--1",
        "bytes=1-2,,3",
        "",
        "bytes=" + "9" * 400,
        "bytes=0-\x00",
    ],
)
def test_malformed_or_multi_range_gets_the_whole_file(viewer, web_env: WebEnv, header) -> None:
    url, data = video(web_env)
    resp = viewer.get(url, headers={"Range": header})
    assert resp.status_code in (200, 416)
    if resp.status_code == 200:
        assert resp.data == data


def test_conditional_get(viewer, web_env: WebEnv) -> None:
    url, _ = video(web_env)
    first = viewer.get(url)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert viewer.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert viewer.get(url, headers={"If-None-Match": f"W/{etag}"}).status_code == 304
    assert viewer.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert viewer.get(url, headers={"If-Modified-Since": modified}).status_code == 304
    older = http_date(parse_date(modified).timestamp() - 3600)
    assert viewer.get(url, headers={"If-Modified-Since": older}).status_code == 200
    assert viewer.get(url, headers={"If-Match": '"other"'}).status_code == 412
    assert viewer.get(url, headers={"If-Match": etag}).status_code == 200
    assert viewer.get(url, headers={"If-Unmodified-Since": older}).status_code == 412
    not_modified = viewer.get(url, headers={"If-None-Match": etag})
    assert not_modified.data == b"" and not_modified.headers["ETag"] == etag


def test_if_range(viewer, web_env: WebEnv) -> None:
    url, data = video(web_env)
    first = viewer.get(url)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    same = viewer.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206 and same.data == data[:10]
    by_date = viewer.get(url, headers={"Range": "bytes=0-9", "If-Range": modified})
    assert by_date.status_code == 206
    changed = viewer.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert changed.status_code == 200 and changed.data == data
    weak = viewer.get(url, headers={"Range": "bytes=0-9", "If-Range": f"W/{etag}"})
    assert weak.status_code == 200


def test_etag_changes_when_the_file_does(viewer, web_env: WebEnv) -> None:
    url, _ = video(web_env)
    before = viewer.get(url).headers["ETag"]
    with web_env.file("plain").open("ab") as f:
        f.write(b"x")
    assert viewer.get(url).headers["ETag"] != before


def test_head_has_headers_and_no_body(viewer, web_env: WebEnv) -> None:
    url, data = video(web_env)
    resp = viewer.head(url)
    assert resp.status_code == 200 and resp.data == b""
    assert resp.headers["Content-Length"] == str(len(data))


def test_download_has_a_meaningful_unicode_name_and_is_logged(viewer, web_env: WebEnv) -> None:
    clip = web_env.clips["unicode"]
    resp = viewer.get(f"/clips/{clip.id}/download")
    assert resp.status_code == 200 and resp.data == web_env.file("unicode").read_bytes()
    cd = resp.headers["Content-Disposition"]
    assert cd.startswith("attachment; filename=")
    assert "filename*=UTF-8''" + quote("订单-七号_station-02_20261130-090100.mp4", safe="") in cd
    plain = viewer.get(f"/clips/{web_env.clips['slash'].id}/download")
    assert 'filename="A_B_.._C_' in plain.headers["Content-Disposition"]
    assert "/" not in plain.headers["Content-Disposition"].split("filename=")[1].split(";")[0]
    page = viewer.get(order_url(clip.order_id)).get_data(as_text=True)
    assert ">downloaded" in page
    # Ranged re-fetches of the same download are not logged again.
    viewer.get(f"/clips/{clip.id}/download", headers={"Range": "bytes=100-"})
    page = viewer.get(order_url(clip.order_id)).get_data(as_text=True)
    assert page.count(">downloaded") == 1


# ---- key frames ---------------------------------------------------------------------------


def test_keyframes_are_jpegs_cut_at_the_indexed_times_and_cached(viewer, web_env: WebEnv) -> None:
    from PIL import Image

    clip = web_env.clips["plain"]
    sizes = []
    for n in range(3):  # order scan, waybill, seal
        resp = viewer.get(f"/clips/{clip.id}/keyframes/{n}.jpg")
        assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
        assert resp.data[:2] == b"\xff\xd8"
        sizes.append(resp.data)
    assert len(set(sizes)) == 3  # three different moments
    cached = list((web_env.data_dir / "cache" / "frames").glob(f"{clip.id}-*.jpg"))
    assert len(cached) == 3
    thumb = viewer.get(f"/clips/{clip.id}/thumb.jpg")
    import io

    assert Image.open(io.BytesIO(thumb.data)).width == 320
    assert viewer.get(f"/clips/{clip.id}/keyframes/3.jpg").status_code == 404


def test_keyframe_times_come_from_the_index(web_env: WebEnv) -> None:
    from web.frames import keyframes

    kinds = [(k.kind, k.t) for k in keyframes(web_env.clips["plain"])]
    assert kinds == [("order", 1.0), ("waybill", 2.0), ("seal", 3.5)]
    no_seal = keyframes(web_env.clips["plain2"])
    assert [k.kind for k in no_seal] == ["order", "seal"]


def test_evidence_bundle_of_unsigned_clips_is_a_clear_409(viewer, web_env: WebEnv) -> None:
    clip = web_env.clips["plain"]  # indexed without the proof finalizer: nothing to export
    page = viewer.get(order_url(clip.order_id)).get_data(as_text=True)
    assert f'href="/clips/{clip.id}/bundle"' in page  # the page that says what the export warned
    from station.proof.exports import ExportWorker

    with ExportWorker(web_env.cfg, poll_s=0.02):  # the station refuses; the site says why
        for url in (f"/clips/{clip.id}/bundle", f"/clips/{clip.id}/bundle.zip"):
            resp = viewer.get(url)
            assert resp.status_code == 409, url
            assert "no signed clips" in resp.get_data(as_text=True)


def test_evidence_bundle_needs_a_login(web_client, web_env: WebEnv) -> None:
    resp = web_client.get(f"/clips/{web_env.clips['plain'].id}/bundle.zip")
    assert resp.status_code in (302, 401, 403)


def test_legal_hold_from_the_order_page(web_env: WebEnv) -> None:
    """Operators put an order on hold (retention then never deletes it) and release it."""
    from conftest_web import make_app, session_csrf

    from station.store.ledger import Ledger

    clip = web_env.clips["plain"]
    client = login(make_app(web_env).test_client(), "operator")
    page = client.get(order_url(clip.order_id)).get_data(as_text=True)
    assert "Put on legal hold" in page
    token = session_csrf(client)
    form = {"order_id": clip.order_id, "action": "hold", "note": "dispute 42", "csrf_token": token}
    assert client.post("/holds", data=form).status_code == 302
    ledger = Ledger(web_env.data_dir / "index.sqlite3")
    try:
        hold = ledger.legal_hold(clip.order_id)
        assert hold is not None and hold.held_by == "operator" and hold.note == "dispute 42"
    finally:
        ledger.close()
    page = client.get(order_url(clip.order_id)).get_data(as_text=True)
    assert "is on legal hold" in page and "Release legal hold" in page
    form["action"] = "release"
    assert client.post("/holds", data=form).status_code == 302
    ledger = Ledger(web_env.data_dir / "index.sqlite3")
    try:
        assert ledger.legal_hold(clip.order_id) is None
    finally:
        ledger.close()


@pytest.mark.parametrize(
    ("role", "order", "status"),
    [("viewer", "PO-1001", 403), ("operator", "no-such-order", 404)],
)
def test_legal_hold_refusals(web_env: WebEnv, role: str, order: str, status: int) -> None:
    from conftest_web import make_app, session_csrf

    client = login(make_app(web_env).test_client(), role)
    token = session_csrf(client)
    resp = client.post("/holds", data={"order_id": order, "action": "hold", "csrf_token": token})
    assert resp.status_code == status
    assert "Put on legal hold" not in client.get(order_url("PO-1001")).get_data(as_text=True) or (
        role == "operator"
    )


def _retention_deletes(web_env: WebEnv, clip: ClipRecord) -> None:
    """What the station's retention does to ``clip``: the row marked (on 2027-03-01 02:00
    UTC, a record kept), then its files removed."""
    from datetime import UTC, datetime

    from station.store.ledger import Ledger
    from station.store.retention import REASON_FLOOR, remove_clip_files

    ledger = Ledger.in_data_dir(web_env.data_dir)
    ledger.mark_deleted(
        clip.id, reason=REASON_FLOOR, record=b"{}", signature=None, key_fingerprint="",
        deleted_at=datetime(2027, 3, 1, 2, 0, tzinfo=UTC),
    )  # fmt: skip
    ledger.close()
    remove_clip_files(web_env.data_dir, clip.path, clip.manifest_path)


def _retention_as_found(
    monkeypatch: pytest.MonkeyPatch, web_env: WebEnv, clip: ClipRecord, *modules: Any
) -> None:
    """Retention deletes ``clip`` just after the site found its file (through ``clip_file``
    as each of ``modules`` imported it): the race of a file gone as it is opened."""
    import web.serving

    found = web.serving.clip_file

    def then_retention(c: ClipRecord) -> Path | None:
        path = found(c)
        if c.id == clip.id and path is not None:
            _retention_deletes(web_env, clip)
        return path

    for module in modules:
        monkeypatch.setattr(module, "clip_file", then_retention)


@pytest.mark.parametrize("what", ["video", "download"])
def test_a_clip_retention_deletes_as_it_is_asked_for_is_a_404_not_a_500(
    web_env: WebEnv, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    """Retention deletes the clip between the site finding its file and opening it: the
    answer is the 404 of a clip whose file is gone, not a server error."""
    from conftest_web import make_app

    import web.serving

    viewer = login(make_app(web_env).test_client(), "viewer")
    clip = web_env.clips["plain2"]
    found = web.serving.clip_file

    def then_retention(c: ClipRecord) -> Path | None:
        path = found(c)
        _retention_deletes(web_env, clip)
        return path

    monkeypatch.setattr(web.serving, "clip_file", then_retention)
    assert viewer.get(f"/clips/{clip.id}/{what}").status_code == 404


@pytest.mark.parametrize(
    ("what", "status"),
    [
        ("{clip}/thumb.jpg", 404),
        ("{clip}/keyframes/0.jpg", 404),
        ("{order}", 200),
        ("{share}/clips/{id}/video", 404),
        ("{share}/clips/{id}/download", 404),
        ("{share}/clips/{id}/thumb.jpg", 404),
        ("{share}/clips/{id}/keyframes/1.jpg", 404),
        ("{share}", 200),
        ("{share}/summary", 200),
    ],
)
def test_every_route_reading_a_clip_retention_deletes_as_it_reads_is_not_a_500(
    web_env: WebEnv, monkeypatch: pytest.MonkeyPatch, what: str, status: int
) -> None:
    """The same race on the key frames, the order page (it checks each clip's size on disk),
    and a share link's clips, page and summary (which verifies the stored clip): the clip is
    gone (404), or the page says so, never a server error."""
    from conftest_web import make_app
    from test_web_share import create_share

    import web.serving
    import web.summary

    viewer = login(make_app(web_env).test_client(), "viewer")
    clip = web_env.clips["plain2"]
    share = create_share(viewer, order_id=clip.order_id)
    _retention_as_found(monkeypatch, web_env, clip, web.serving, web.summary)
    url = what.format(
        clip=f"/clips/{clip.id}", order=order_url(clip.order_id), share=share, id=clip.id
    )
    resp = viewer.get(url)
    assert resp.status_code == status, resp.get_data(as_text=True)[:300]
    resp.close()


def test_a_clip_deleted_by_retention_says_so_not_missing(web_env: WebEnv) -> None:
    """The station deleted an old clip to keep room for recording (a recorded, signed
    deletion): the seller, and the reviewer of a share link, read that, in their language,
    and when, in the site's zone (Beijing time here) like every other time on the site,
    not "missing from the store", which reads as lost or tampered evidence."""
    from conftest_web import make_app

    web_env.cfg = web_env.cfg.replace("station", timezone="Asia/Shanghai")
    viewer = login(make_app(web_env).test_client(), "viewer")
    clip = web_env.clips["plain2"]
    _retention_deletes(web_env, clip)
    page = viewer.get(order_url(ORDERS["plain"])).get_data(as_text=True)
    assert '<p class="flash error">The video file of this clip is missing' not in page
    assert "deleted this clip's video on 2027-03-01 10:00:00 +08:00 under its retention" in page
    zh = viewer.get(order_url(ORDERS["plain"]), headers={"Accept-Language": "zh-CN"})
    assert "工作站于 2027-03-01 10:00:00 +08:00 按保留策略删除了此视频" in zh.get_data(as_text=True)
    assert viewer.get(f"/clips/{clip.id}/video").status_code == 404


DELETED_SAYS = {
    "en": "deleted this clip's video on 2027-03-01 10:00:00 +08:00 under its retention",
    "zh-CN": "工作站于 2027-03-01 10:00:00 +08:00 按保留策略删除了此视频",
}
MISSING_SAYS = {"en": "The video file of this clip is missing", "zh-CN": "存储中缺少此视频文件"}


@pytest.mark.parametrize(
    ("page", "lang", "said"),
    [(p, lang, said) for p in ("order", "share") for lang, said in DELETED_SAYS.items()],
)
def test_a_clip_retention_deletes_as_the_page_is_built_reads_deleted_not_missing(
    web_env: WebEnv, monkeypatch: pytest.MonkeyPatch, page: str, lang: str, said: str
) -> None:
    """Retention deletes a clip after the site read the order's clips and before it looked at
    the clip's file: the order page and a share link's page say the station deleted it and
    when, as a reload would, not that its file is missing from the store (lost evidence)."""
    from conftest_web import make_app
    from test_web_share import create_share

    import web.serving

    web_env.cfg = web_env.cfg.replace("station", timezone="Asia/Shanghai")
    app = make_app(web_env)
    viewer = login(app.test_client(), "viewer")
    clip = web_env.clips["plain2"]
    url = create_share(viewer, order_id=clip.order_id) if page == "share" else None
    found = web.serving.clip_file

    def retention_first(c: ClipRecord) -> Path | None:
        if c.id == clip.id and (web_env.data_dir / clip.path).exists():
            _retention_deletes(web_env, clip)
        return found(c)

    monkeypatch.setattr(web.serving, "clip_file", retention_first)
    client = app.test_client() if url else viewer
    resp = client.get(url or order_url(clip.order_id), headers={"Accept-Language": lang})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert said in body, body[-3000:]
    missing = MISSING_SAYS[lang]
    assert f'<p class="flash error">{missing}' not in body
    player = body[body.index(f'id="video-{clip.id}"') :].split(">", 1)[0]
    assert said in html.unescape(player) and missing not in player  # what the player says


@pytest.mark.parametrize(
    ("lang", "said", "player"),
    [
        ("en", "deleted this clip's video on 2027-03-01 10:00:00 +08:00 under its retention",
         "after this page was opened. Reload the page to see when."),
        ("zh-CN", "工作站于 2027-03-01 10:00:00 +08:00 按保留策略删除了此视频",
         "在本页面打开之后按保留策略删除了此视频"),
    ],
)  # fmt: skip
def test_a_clip_retention_deletes_after_its_page_was_made_is_not_called_missing(
    web_env: WebEnv, lang: str, said: str, player: str
) -> None:
    """The order page was made while the clip's file was there; retention then deleted it. Its
    player, when the video fails, must not say the file is missing from the store: the video's
    404 says it was deleted (``X-Clip-Deleted``, which app.js reads), and the player has that
    to say; "Download original" (and a share link's) shows the site's page saying so and when."""
    from conftest_web import make_app
    from test_web_share import create_share

    web_env.cfg = web_env.cfg.replace("station", timezone="Asia/Shanghai")
    app = make_app(web_env)
    viewer = login(app.test_client(), "viewer")
    clip = web_env.clips["plain2"]
    share = create_share(viewer, order_id=clip.order_id)
    head = {"Accept-Language": lang}
    page = html.unescape(viewer.get(order_url(clip.order_id), headers=head).get_data(as_text=True))
    tag = page[page.index(f'id="video-{clip.id}"') :].split(">", 1)[0]
    assert player in tag
    _retention_deletes(web_env, clip)
    for client, base in ((viewer, ""), (app.test_client(), share)):
        resp = client.head(f"{base}/clips/{clip.id}/video")
        assert resp.status_code == 404 and resp.headers["X-Clip-Deleted"].startswith("2027-03-01")
        resp = client.get(f"{base}/clips/{clip.id}/download", headers=head)
        assert resp.status_code == 404
        assert said in html.unescape(resp.get_data(as_text=True))
    js = (Path(__file__).parents[1] / "web/static/app.js").read_text()
    assert 'r.headers.get("X-Clip-Deleted")' in js and "d.errorDeleted" in js
    gone = web_env.clips["plain"]  # a clip whose file is simply not there: missing, as before
    (web_env.data_dir / gone.path).unlink()
    resp = viewer.head(f"/clips/{gone.id}/video")
    assert resp.status_code == 404 and "X-Clip-Deleted" not in resp.headers


def _as_frames_get_their_name(monkeypatch: pytest.MonkeyPatch, then: Any) -> None:
    """Run ``then(dest)`` the moment the site renames a frame it cut into its cache (before
    it answers): the station's sweep, a full disk."""
    import os
    import types

    import web.frames

    def replace(src: Any, dst: Any) -> None:
        then(Path(src), Path(dst))

    proxy = types.ModuleType("os")
    proxy.__dict__.update(vars(os))
    proxy.replace = replace  # type: ignore[attr-defined]
    monkeypatch.setattr(web.frames, "os", proxy)


def _then_swept(after: Any = None) -> Any:
    """The frame gets its name, then the station's sweep empties the cache (``after``: what
    happens next, retention, say)."""
    import os

    def then(src: Path, dst: Path) -> None:
        os.replace(src, dst)
        for p in dst.parent.iterdir():
            p.unlink()
        if after is not None:
            after()

    return then


@pytest.mark.parametrize("when", ["first-view", "swept-before"])
@pytest.mark.parametrize("frame", ["thumb.jpg", "keyframes/1.jpg"])
def test_a_frame_the_cache_sweep_removes_as_it_is_served_is_sent_whole(
    web_env: WebEnv, monkeypatch: pytest.MonkeyPatch, when: str, frame: str
) -> None:
    """The sweep removes the frame just after the site cut and cached it, before it was sent
    (its first view, or one after an earlier sweep): the picture is sent whole, not a server
    error (the site used to open the file again to send it); it revalidates with 304."""
    from conftest_web import make_app

    viewer = login(make_app(web_env).test_client(), "viewer")
    clip = web_env.clips["plain"]
    url = f"/clips/{clip.id}/{frame}"
    first = None
    if when == "swept-before":
        first = viewer.get(url).data
        for p in (web_env.data_dir / "cache" / "frames").iterdir():
            p.unlink()
    _as_frames_get_their_name(monkeypatch, _then_swept())
    resp = viewer.get(url)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.data[:2] == b"\xff\xd8" and resp.data[-2:] == b"\xff\xd9"
    assert first is None or resp.data == first
    etag = resp.headers["ETag"]
    assert viewer.get(url, headers={"If-None-Match": etag}).status_code == 304


def test_a_clip_deleted_and_its_frames_swept_as_one_is_cut_is_no_server_error(
    web_env: WebEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention deletes the clip, and the sweep its frames, while the site cuts one: the
    frame it cut is sent (it was cut from the clip before it went); the next view is the
    deleted clip's 404 (``X-Clip-Deleted``). Never a server error."""
    from conftest_web import make_app

    viewer = login(make_app(web_env).test_client(), "viewer")
    clip = web_env.clips["plain2"]
    url = f"/clips/{clip.id}/keyframes/0.jpg"
    _as_frames_get_their_name(monkeypatch, _then_swept(lambda: _retention_deletes(web_env, clip)))
    resp = viewer.get(url)
    assert resp.status_code == 200 and resp.data[:2] == b"\xff\xd8"
    monkeypatch.undo()
    resp = viewer.get(url)
    assert resp.status_code == 404 and resp.headers["X-Clip-Deleted"].startswith("2027-03-01")


def test_a_frame_not_cached_for_want_of_room_is_shown_and_cached_once_there_is_room(
    web_env: WebEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk as the frame is cached (ENOSPC) is no bad clip: the picture is shown
    uncached and no ``.bad`` marker is left (which kept it a 404 for good); with room again
    the next view caches it."""
    import errno
    import os

    from conftest_web import make_app

    def disk_full(src: Path, dst: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    viewer = login(make_app(web_env).test_client(), "viewer")
    clip = web_env.clips["plain"]
    url = f"/clips/{clip.id}/keyframes/0.jpg"
    frames = web_env.data_dir / "cache" / "frames"
    _as_frames_get_their_name(monkeypatch, disk_full)
    resp = viewer.get(url)
    assert resp.status_code == 200 and resp.data[:2] == b"\xff\xd8"
    assert list(frames.iterdir()) == []  # neither the frame nor a marker
    monkeypatch.undo()  # retention made room
    assert viewer.get(url).data == resp.data
    assert [p.suffix for p in frames.iterdir()] == [".jpg"]


@pytest.mark.parametrize(("lang", "said"), list(DELETED_SAYS.items()))
@pytest.mark.parametrize("when", ["before", "cached", "while-cut"])
def test_a_deleted_clips_key_frames_say_deleted_as_its_video_does(
    web_env: WebEnv, monkeypatch: pytest.MonkeyPatch, lang: str, said: str, when: str
) -> None:
    """Retention deleted the clip (before the frame was asked for, after it was cached, or as
    it was being cut): its thumbnail and key frames answer as its video does, a 404 with
    ``X-Clip-Deleted`` and the page saying the station deleted it and when, to its staff and
    to a share link's holder; not the bare 404 of a file gone missing (lost evidence)."""
    from conftest_web import make_app
    from test_web_share import create_share

    import web.serving

    web_env.cfg = web_env.cfg.replace("station", timezone="Asia/Shanghai")
    app = make_app(web_env)
    viewer = login(app.test_client(), "viewer")
    clip = web_env.clips["plain2"]
    share = create_share(viewer, order_id=clip.order_id)
    frames = ("thumb.jpg", "keyframes/0.jpg", "keyframes/1.jpg")
    clients = ((viewer, ""), (app.test_client(), share))
    if when == "cached":
        for client, base in clients:
            for frame in frames:
                assert client.get(f"{base}/clips/{clip.id}/{frame}").status_code == 200
    if when == "while-cut":
        _retention_as_found(monkeypatch, web_env, clip, web.serving)
    else:
        _retention_deletes(web_env, clip)
    for client, base in clients:
        for frame in frames:
            resp = client.get(f"{base}/clips/{clip.id}/{frame}", headers={"Accept-Language": lang})
            assert resp.status_code == 404, (base, frame)
            assert resp.headers.get("X-Clip-Deleted", "").startswith("2027-03-01"), (base, frame)
            assert said in html.unescape(resp.get_data(as_text=True))
            monkeypatch.undo()  # the deletion is done: the next ask finds it so
    gone = web_env.clips["plain"]  # a clip whose file is simply not there: missing, as before
    (web_env.data_dir / gone.path).unlink()
    resp = viewer.get(f"/clips/{gone.id}/thumb.jpg")
    assert resp.status_code == 404 and "X-Clip-Deleted" not in resp.headers


def test_a_deleted_clip_shows_no_broken_pictures(web_env: WebEnv) -> None:
    """The order page, a share link's page and its printable summary (for the platform's
    reviewer) of an order whose clip retention deleted ask for none of its pictures (poster,
    key frames): each would be a broken image beside the words saying it was deleted. Its
    key frames' times stay listed; the other clip of the order keeps its pictures."""
    from conftest_web import make_app
    from test_web_share import create_share

    app = make_app(web_env)
    viewer = login(app.test_client(), "viewer")
    clip, kept = web_env.clips["plain2"], web_env.clips["plain"]
    assert clip.order_id == kept.order_id
    share = create_share(viewer, order_id=clip.order_id)
    _retention_deletes(web_env, clip)
    for client, url in (
        (viewer, order_url(clip.order_id)),
        (app.test_client(), share),
        (app.test_client(), share + "/summary"),
    ):
        page = client.get(url).get_data(as_text=True)
        assert f"/clips/{clip.id}/keyframes/" not in page, url
        assert f"/clips/{kept.id}/keyframes/0.jpg" in page, url
        if not url.endswith("/summary"):
            tag = page[page.index(f'id="video-{clip.id}"') :].split(">", 1)[0]
            assert "poster=" not in tag, url
            section = page[page.index(f'id="clip-{clip.id}"') :].split("</section>", 1)[0]
            assert 'class="keyframe"' in section  # the moments, without their pictures


@pytest.mark.parametrize(("lang", "said"), [("en", "Video deleted"), ("zh-CN", "视频已删除")])
def test_search_shows_a_deleted_clip_as_deleted_not_as_a_broken_thumbnail(
    web_env: WebEnv, lang: str, said: str
) -> None:
    """A search lists a clip retention deleted (its record stays) with the word that its video
    was deleted where its thumbnail was, not a broken image; the others keep theirs."""
    from conftest_web import make_app

    viewer = login(make_app(web_env).test_client(), "viewer")
    clip, kept = web_env.clips["plain2"], web_env.clips["plain"]
    _retention_deletes(web_env, clip)
    page = viewer.get(f"/search?q={clip.order_id}", headers={"Accept-Language": lang})
    body = page.get_data(as_text=True)
    assert f"/clips/{clip.id}/thumb.jpg" not in body
    assert f"/clips/{kept.id}/thumb.jpg" in body
    assert body.count(said) == 1


GAPS = {
    "camera": ({"resumed_after_s": 7.5}, "Camera gap", "画面中断"),
    "restart": (
        {
            "resumed_after_s": 5400.0,
            "gap": {"seconds": 5400.0, "station_stopped_at": "2027-03-01T02:00:00.000+00:00"},
        },
        "Resumed after restart",
        "重启后继续",
    ),
}


@pytest.mark.parametrize("kind", list(GAPS))
def test_the_order_page_tells_a_station_restart_from_a_camera_gap(
    viewer, web_env: WebEnv, kind: str
) -> None:
    """A clip that resumes the packing a station stop cut (an hour and a half without power)
    is not labelled "the camera came back": its signed manifest names the station's stop."""
    clip = web_env.clips["plain"]
    manifest, en, zh = GAPS[kind]
    (web_env.data_dir / clip.manifest_path).write_text(json.dumps(manifest))
    page = viewer.get(order_url(clip.order_id)).get_data(as_text=True)
    assert f">{en}</span>" in page
    other = {g[1] for g in GAPS.values()} - {en}
    assert not any(f">{o}</span>" in page for o in other)
    page = viewer.get(order_url(clip.order_id), headers={"Accept-Language": "zh-CN"})
    assert f">{zh}</span>" in page.get_data(as_text=True)
