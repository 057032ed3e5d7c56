"""Search: anywhere in order IDs and waybills, any case, digits only; the fill; the timeout."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest_web import TZ8, WebEnv, index_clip, login

from station import config as config_mod
from station.store.clips import ClipSearch, WaybillLink
from station.store.ledger import Ledger
from web import index as index_mod
from web import search as search_mod
from web.index import ClipIndex, SearchTimeout
from web.search import SearchIndex, bigram_tokens, match_expr


def _orders(client, q: str, **extra: str) -> list[str]:
    resp = client.get("/api/clips", query_string={"q": q, "limit": 500, **extra})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [c["order_id"] for c in resp.get_json()["clips"]]


@pytest.mark.parametrize(
    ("q", "order"),
    [
        ("PO-1001", "PO-1001"),
        ("po-1001", "PO-1001"),  # any case
        ("o-10", "PO-1001"),  # inside
        ("1001", "PO-1001"),  # the last digits
        ("01", "PO-1001"),  # two characters
        ("1234567890121", "订单-七号"),  # a waybill's digits without its carrier letters
        ("sf1234567890121", "订单-七号"),
        ("七号", "订单-七号"),  # two Chinese characters
        ("单-七", "订单-七号"),
        ("%_o", "50%_off"),  # LIKE wildcards are plain characters
        ("DROP", "x'; DROP TABLE clips; --"),
        ("'; d", "x'; DROP TABLE clips; --"),
        ("/../", "A/B/../C"),
    ],
)
def test_search_matches_anywhere_in_any_case(web_client, q: str, order: str) -> None:
    login(web_client, "viewer")
    assert order in _orders(web_client, q)


@pytest.mark.parametrize(
    ("day_from", "day_to"),
    [
        ("0001-01-01", "9999-12-31"),  # "from the beginning, until forever"
        ("0001-01-01", ""),
        ("", "9999-12-31"),
        ("0999-01-01", "2026-11-30"),  # a year of three digits
    ],
)
def test_dates_at_the_ends_of_the_calendar_are_no_limit(
    web_env: WebEnv, day_from: str, day_to: str
) -> None:
    # Real dates a date field accepts; the bounds in the site's zone (east of UTC here) and
    # the day after 9999-12-31 are outside Python's calendar: a 500 before. They limit
    # nothing: the 2026 clips are found by the API, the search page and the export.
    from conftest_web import make_app

    web_env.cfg = web_env.cfg.replace("station", timezone="Asia/Shanghai")
    client = make_app(web_env).test_client()
    login(client, "operator")
    dates = {"from": day_from, "to": day_to}
    assert "PO-1001" in _orders(client, "PO-1001", **dates)
    page = client.get("/search", query_string={"q": "PO-1001", **dates})
    assert page.status_code == 200 and "PO-1001" in page.get_data(as_text=True)
    if (day_from, day_to) == ("0001-01-01", "9999-12-31"):  # the export: a day at each end
        for first, last in ((day_from, "0001-01-02"), ("9999-12-30", day_to)):
            csv = client.get("/export/orders.csv", query_string={"from": first, "to": last})
            assert csv.status_code == 200 and "PO-1001" not in csv.get_data(as_text=True)


def test_search_finds_nothing_that_is_not_there(web_client) -> None:
    login(web_client, "viewer")
    assert _orders(web_client, "PO-1001X") == []
    assert _orders(web_client, "zz") == []
    # found by its piece "567890", then refused as a whole: no waybill holds "X1234..."
    assert _orders(web_client, "X1234567890121") == []
    assert _orders(web_client, "1001\n") == _orders(web_client, "1001")  # stripped


@pytest.mark.parametrize(
    ("q", "order"),
    [
        ("ＰＯ－１００１", "PO-1001"),  # a Chinese IME in full-width mode
        ("ｐｏ-1001", "PO-1001"),  # half typed in each width
        ("１００１", "PO-1001"),  # full-width digits
        ("\u3000PO-1001\u3000", "PO-1001"),  # the IME's ideographic spaces around it
        ("ＳＦ１２３４５６７８９０１２１", "订单-七号"),  # a waybill typed in full width
        ("订单－七号", "订单-七号"),  # the IME's full-width hyphen between Chinese characters
    ],
)
def test_a_query_typed_in_full_width_finds_the_order(web_client, q: str, order: str) -> None:
    """A seller typing the order ID with a Chinese IME gets full-width letters and digits
    (U+FF01-FF5E): scanned labels hold the ASCII ones, so the query is read in ASCII."""
    login(web_client, "viewer")
    assert order in _orders(web_client, q)
    page = web_client.get("/search", query_string={"q": q}).get_data(as_text=True)
    assert order in page or order.replace("'", "&#39;") in page


@pytest.mark.parametrize(
    "q", ["SF 1234 5678 90121", "1234 5678 9012 1", "sf 123456 7890121", "SF1234567890121 "]
)
def test_a_waybill_pasted_in_groups_finds_its_order(web_client, q: str) -> None:
    """Carriers' apps print waybill numbers in groups of digits; the label holds none of the
    spaces. A query that finds nothing as typed is tried without its spaces (an order ID
    that does hold spaces is still found as typed, above)."""
    login(web_client, "viewer")
    assert _orders(web_client, q) == ["订单-七号"]
    page = web_client.get("/search", query_string={"q": q}).get_data(as_text=True)
    assert "订单-七号" in page and f'value="{q.strip()}"' in page  # the box keeps what was typed


@pytest.mark.parametrize("q", ["\x00", "PO\x00", "PO-10\x0001", "10\x00\"'", "\x01\x02\x03"])
def test_control_characters_find_nothing_and_break_nothing(web_client, q: str) -> None:
    """FTS5 reads a NUL as the end of its query string (the fuzz found a 500 there)."""
    login(web_client, "viewer")
    resp = web_client.get("/api/clips", query_string={"q": q})
    assert resp.status_code == 200 and resp.get_json()["clips"] == []
    assert web_client.get("/search", query_string={"q": q}).status_code == 200


def test_one_character_is_a_prefix_in_any_case(web_client) -> None:
    login(web_client, "viewer")
    assert set(_orders(web_client, "p")) == {"PO-1001"}
    assert set(_orders(web_client, "x")) == {"x'; DROP TABLE clips; --"}


def test_filters_pages_and_newest_first(web_client, web_env: WebEnv) -> None:
    login(web_client, "viewer")
    everything = _orders(web_client, "sf")  # every clip with a waybill
    assert len(everything) == 7 and "PO-1001" in everything
    ids = [c["id"] for c in web_client.get("/api/clips?q=sf&limit=500").get_json()["clips"]]
    assert ids == sorted(ids, reverse=True)
    page1 = web_client.get("/api/clips?q=sf&limit=2").get_json()
    page2 = web_client.get("/api/clips?q=sf&limit=2&offset=2").get_json()
    got = [c["order_id"] for c in page1["clips"] + page2["clips"]]
    assert got == everything[:4] and page1["more"]
    assert set(_orders(web_client, "sf", station="station-02")) == {
        "订单-七号",
        "x'; DROP TABLE clips; --",
    }


def test_a_new_clip_is_found_at_the_next_search(web_client, web_env: WebEnv, mp4_template) -> None:
    login(web_client, "viewer")
    assert _orders(web_client, "NEWORDER") == []
    ledger = Ledger.in_data_dir(web_env.data_dir)
    index_clip(
        ledger, web_env.data_dir, mp4_template, "neworder-77",
        start=datetime(2026, 12, 1, 9, 0, tzinfo=TZ8), waybill="YT5550001",
    )  # fmt: skip
    ledger.close()
    assert _orders(web_client, "NEWORDER") == ["neworder-77"]
    assert _orders(web_client, "5550001") == ["neworder-77"]


def test_the_search_page_shows_matches_and_a_useful_hint(web_client) -> None:
    login(web_client, "viewer")
    body = web_client.get("/search?q=o-10").get_data(as_text=True)
    assert "PO-1001" in body
    empty = web_client.get("/search?q=nothing-like-this").get_data(as_text=True)
    assert "Any part of the order ID or waybill" in empty


def test_a_big_backlog_is_filled_in_the_background_and_searched_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(tmp_path / "index.sqlite3")
    ledger.close()
    conn = sqlite3.connect(tmp_path / "index.sqlite3")
    _bulk(conn, 3000)
    conn.close()
    monkeypatch.setattr(search_mod, "SYNC_IN_REQUEST", 10)
    monkeypatch.setattr(search_mod, "BATCH", 500)
    si = SearchIndex(tmp_path / "s.sqlite3", tmp_path / "index.sqlite3")
    idx = ClipIndex(tmp_path / "index.sqlite3", search=si)
    try:
        first = [c.order_id for c in idx.search(ClipSearch("ord-0002999"))]
        assert first == ["ORD-0002999"]  # found by the direct scan while the fill runs
        assert si._thread is not None
        si._thread.join(60)
        assert si.indexed_up_to() == 3000 and si.backlog() == 0
        assert [c.order_id for c in idx.search(ClipSearch("ord-0002999"))] == ["ORD-0002999"]
        assert len(idx.search(ClipSearch("ord-0001", limit=5000))) == 1000
        assert len(idx.search(ClipSearch("wb7000999", limit=5000))) == 3  # ids 1000, 2000, 3000
    finally:
        idx.close()
        si.close()


def test_a_waybill_linked_after_its_clip_was_searchable_is_found_by_every_search(
    tmp_path: Path,
) -> None:
    """PO-A's waybill was decoded after PO-A's clip was indexed (and after a search had put the
    clip's text in the site's search index): every search that finds a waybill finds PO-A by
    it, newest first, once, page by page."""
    ledger = Ledger(tmp_path / "index.sqlite3")
    start = datetime(2026, 12, 1, 9, 0, tzinfo=TZ8)
    a, b, c = (
        index_clip(ledger, tmp_path, tmp_path / "none.mp4", order, copy=False, waybill=wb,
                   start=start + timedelta(minutes=i))
        for i, (order, wb) in enumerate(
            [("PO-A", None), ("PO-B", "YT7700000002"), ("PO-C", "YT7700000003")]
        )
    )  # fmt: skip
    si = SearchIndex(tmp_path / "s.sqlite3", tmp_path / "index.sqlite3")
    idx = ClipIndex(tmp_path / "index.sqlite3", search=si)

    def orders(q: str, **kw: int) -> list[str]:
        return [x.order_id for x in idx.search(ClipSearch(q, **kw))]

    try:
        assert orders("po-") == ["PO-C", "PO-B", "PO-A"]  # the search index is filled
        assert si.indexed_up_to() == c.id
        assert a.id is not None and b.id is not None
        ledger.link_waybill_after_signing(a.id, "PO-A", WaybillLink("YT7700000001", "YT", 3.0))
        ledger.link_waybill_after_signing(b.id, "PO-B", WaybillLink("YT7700000009", "YT", 3.0))
        for q in ("YT7700000001", "yt7700000001", "0000001", "000001", "001", "01"):
            assert orders(q) == ["PO-A"], q
        assert orders("0000009") == ["PO-B"]
        assert orders("YT77") == ["PO-C", "PO-B", "PO-A"]  # PO-B once, though it matches twice
        pages = [orders("YT77", limit=1, offset=i) for i in range(4)]
        assert pages == [["PO-C"], ["PO-B"], ["PO-A"], []]
        assert orders("YT77", limit=2, offset=1) == ["PO-B", "PO-A"]
        # a new search index (a rebuild) holds them as well
        si2 = SearchIndex(tmp_path / "s2.sqlite3", tmp_path / "index.sqlite3")
        idx2 = ClipIndex(tmp_path / "index.sqlite3", search=si2)
        try:
            assert [x.order_id for x in idx2.search(ClipSearch("0000001"))] == ["PO-A"]
        finally:
            idx2.close()
            si2.close()
    finally:
        idx.close()
        si.close()
        ledger.close()


def test_a_slow_search_is_stopped_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest_web import add_users, make_app

    data = tmp_path / "data"
    Ledger.in_data_dir(data).close()
    conn = sqlite3.connect(data / "index.sqlite3")
    _bulk(conn, 3000)
    conn.close()
    add_users(data)
    env = WebEnv(data, config_mod.load(None).with_data_dir(data))
    client = make_app(env).test_client()
    login(client, "viewer")
    assert len(_orders(client, "ord-0001")) == 500  # the API's page
    monkeypatch.setattr(index_mod, "SEARCH_TIMEOUT_S", -1.0)
    page = client.get("/search?q=ord-0001")
    assert page.status_code == 200 and "took too long" in page.get_data(as_text=True)
    assert client.get("/api/clips?q=ord").status_code == 503
    with closing(ClipIndex(data / "index.sqlite3")) as idx, pytest.raises(SearchTimeout):
        idx.search(ClipSearch("ord-0001"))


def test_bigrams_and_match_expressions() -> None:
    assert bigram_tokens("Ab\nC") == "6162"  # per line; case-folded; no pair across lines
    assert match_expr("a") is None
    assert match_expr("aB") == ("bi", "6162", False)
    assert match_expr('a"b') == ("tri", '"a""b"', False)
    # long: the most varied 6 characters, rightmost first; the whole query checked after
    assert match_expr("1000000102870") == ("tri", '"102870"', True)
    assert match_expr("XYZ000000") == ("tri", '"XYZ000"', True)


def _bulk(conn, n: int) -> None:
    """n clips (ORD-0000000..) with one waybill each (WB7000 + id % 10 ... ), inserted fast."""
    now = "2026-12-01T01:00:00Z"
    conn.executemany(
        "INSERT OR IGNORE INTO orders(order_id, first_seen_utc) VALUES (?, ?)",
        [(f"ORD-{i:07d}", now) for i in range(n)],
    )
    cols = [r[1] for r in conn.execute("PRAGMA table_info(clips)")]
    rows = []
    for i in range(n):
        row = dict.fromkeys(cols)
        row.update(
            id=i + 1, order_id=f"ORD-{i:07d}", station="s1", started_at=now, ended_at=now,
            started_utc=now, ended_utc=now, tz="+08:00", duration_s=1.0, frame_count=1,
            finish_reason="sealed", pre_roll_s=0.0, path=f"clips/{i}.mp4", size=1,
            sha256="00" * 32, manifest_path="", created_utc=now, kind="order",
        )  # fmt: skip
        rows.append(tuple(row[c] for c in cols))
    conn.executemany(f"INSERT INTO clips VALUES ({','.join('?' * len(cols))})", rows)
    conn.executemany(
        "INSERT INTO waybills(clip_id, order_id, waybill, carrier, t_clip_s) VALUES (?,?,?,?,?)",
        [(i + 1, f"ORD-{i:07d}", f"WB7000{i % 1000:03d}", "X", 0.0) for i in range(n)],
    )
    conn.commit()


LATE_MARK = {"en": "not in the signed manifest", "zh-CN": "不在签名的记录中"}


def result_rows(page: str) -> list[str]:
    """The search page's result rows (the HTML of each ``<tr>`` in its table's body)."""
    body = page.split('<table class="results" id="results">', 1)[1].split("<tbody>", 1)[1]
    return body.split("</tbody>", 1)[0].split("<tr>")[1:]


def test_a_waybill_linked_after_signing_is_marked_in_the_search_results(
    web_client, web_env: WebEnv
) -> None:
    """A waybill the station linked to a clip after signing it (a late camera read) is in no
    signed manifest: the search results say so next to it, in the reader's language, and
    not next to a waybill the manifest signed."""
    web_env.link_late_waybill("YT8800000001")  # to PO-1001's second clip
    login(web_client, "viewer")
    for lang, mark in LATE_MARK.items():
        page = web_client.get("/search?q=PO-1001", headers={"Accept-Language": lang})
        rows = result_rows(page.get_data(as_text=True))
        [late] = [r for r in rows if "YT8800000001" in r]
        [signed] = [r for r in rows if "SF1234567890120" in r]
        assert mark in late and "late-waybill" in late, lang
        assert mark not in signed and "late-waybill" not in signed, lang
        found = web_client.get("/search?q=YT8800000001", headers={"Accept-Language": lang})
        [row] = result_rows(found.get_data(as_text=True))
        assert "YT8800000001" in row and mark in row, lang
