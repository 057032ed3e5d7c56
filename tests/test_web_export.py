"""Order export (CSV, XLSX) and the webhook delivery log, through the Flask test client."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import sqlite3
import struct
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openpyxl
import pytest
from conftest_web import ORDERS, WebEnv, login

from station.floor.webhooks import QUEUE_NAME, Delivery, WebhookQueue
from web.xlsx import write_xlsx

DAY = {"from": "2026-11-30", "to": "2026-11-30"}


@pytest.fixture
def operator(web_client):
    return login(web_client, "operator")


def csv_rows(resp) -> list[list[str]]:  # type: ignore[no-untyped-def]
    data = resp.get_data()
    assert data.startswith("\ufeff".encode())  # Excel needs the BOM for UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_csv_export_lists_every_clip_of_the_day(operator, web_env: WebEnv) -> None:
    resp = operator.get("/export/orders.csv", query_string=DAY)
    assert resp.status_code == 200
    assert resp.mimetype == "text/csv"
    assert (
        'filename="packcam-orders_2026-11-30_2026-11-30.csv"' in resp.headers["Content-Disposition"]
    )
    rows = csv_rows(resp)
    header, body = rows[0], rows[1:]
    assert header == [
        "order", "waybills", "station", "start", "duration_s", "reason", "sha256", "link",
        "packer", "kind", "repack_of", "late_waybills",
    ]  # fmt: skip
    indexed = [c for k, c in web_env.clips.items()]
    assert len(body) == len(indexed)
    plain = web_env.clips["plain"]
    [row] = [r for r in body if r[0] == "PO-1001" and r[3].startswith("2026-11-30T09:00")]
    assert row[6] == plain.sha256
    assert row[0] == "PO-1001" and row[1] == "SF1234567890120" and row[2] == "桌1"
    assert row[3] == "2026-11-30T09:00:00+08:00" and float(row[4]) == 4.0
    assert row[5] == "sealed" and row[7] == "http://localhost/orders/PO-1001"
    assert [r[3] for r in body] == sorted(r[3] for r in body)  # oldest first
    orders = {r[0] for r in body}
    assert ORDERS["unicode"] in orders and ORDERS["slash"] in orders


def test_csv_cells_that_look_like_formulas_are_inert(operator, web_env: WebEnv) -> None:
    from conftest_web import index_clip

    from station.store.ledger import Ledger

    ledger = Ledger.in_data_dir(web_env.data_dir)
    try:
        index_clip(ledger, web_env.data_dir, web_env.file("plain"), '=HYPERLINK("x")')
    finally:
        ledger.close()
    rows = csv_rows(operator.get("/export/orders.csv", query_string=DAY))
    assert '\'=HYPERLINK("x")' in [r[0] for r in rows]
    xlsx = operator.get("/export/orders.xlsx", query_string=DAY).get_data()
    ws = openpyxl.load_workbook(io.BytesIO(xlsx)).active
    cell = next(c for c in ws["A"] if c.value and "HYPERLINK" in c.value)
    assert cell.value == '=HYPERLINK("x")' and cell.data_type == "s"  # text, not a formula


def test_xlsx_export_opens_in_a_real_reader(operator, web_env: WebEnv) -> None:
    resp = operator.get("/export/orders.xlsx", query_string=DAY)
    assert resp.status_code == 200
    assert resp.mimetype.endswith("spreadsheetml.sheet")
    wb = openpyxl.load_workbook(io.BytesIO(resp.get_data()))
    ws = wb.active
    assert ws.title == "orders"
    values = list(ws.iter_rows(values_only=True))
    assert values[0][:3] == ("order", "waybills", "station")
    csv_body = csv_rows(operator.get("/export/orders.csv", query_string=DAY))[1:]
    assert len(values) - 1 == len(csv_body)
    for got, want in zip(values[1:], csv_body, strict=True):
        assert got[0] == want[0].removeprefix("'") and got[6] == want[6]
        assert got[4] == pytest.approx(float(want[4]))  # a number cell, not text


def test_a_waybill_linked_after_signing_is_named_in_its_own_last_column(
    operator, web_env: WebEnv
) -> None:
    """A waybill the station linked to a clip after signing it (a late camera read) is in no
    signed manifest: ``waybills`` keeps every waybill the index links, as before (a script
    reading it by name finds the order by it still), and ``late_waybills``, the last column,
    names those the signed manifest does not prove, in the CSV and the XLSX alike."""
    late_clip = web_env.link_late_waybill("YT8800000001")  # PO-1001's second clip
    header, *body = csv_rows(operator.get("/export/orders.csv", query_string=DAY))
    assert header[-1] == "late_waybills" and header[1] == "waybills"
    # by start: the fixture's clips of PO-1001 are one file (one SHA-256)
    by_start = {r[3]: dict(zip(header, r, strict=True)) for r in body if r[0] == "PO-1001"}
    start = late_clip.started_at.isoformat(timespec="seconds")
    late = by_start[start]
    assert late["waybills"] == "YT8800000001" and late["late_waybills"] == "YT8800000001"
    signed = by_start[web_env.clips["plain"].started_at.isoformat(timespec="seconds")]
    assert signed["waybills"] == "SF1234567890120" and signed["late_waybills"] == ""
    assert [(r[0], r[3]) for r in body if r[-1]] == [("PO-1001", start)]  # the only late read
    xlsx = operator.get("/export/orders.xlsx", query_string=DAY).get_data()
    sheet = list(openpyxl.load_workbook(io.BytesIO(xlsx)).active.iter_rows(values_only=True))
    assert sheet[0][-1] == "late_waybills"
    assert [(r[0], r[3], r[-1]) for r in sheet[1:] if r[-1]] == [("PO-1001", start, "YT8800000001")]


def test_another_day_is_empty_and_the_range_is_checked(operator) -> None:
    later = {"from": "2027-01-01", "to": "2027-01-02"}
    rows = csv_rows(operator.get("/export/orders.csv", query_string=later))
    assert len(rows) == 1
    for query in ({}, {"from": "2026-11-30"}, {"from": "30/11/2026", "to": "2026-11-30"},
                  {"from": "2020-01-01", "to": "2026-11-30"}):  # fmt: skip
        status = 422 if query.get("from") == "2020-01-01" else 400
        assert operator.get("/export/orders.csv", query_string=query).status_code == status
        assert operator.get("/export/orders.xlsx", query_string=query).status_code == status


@pytest.mark.parametrize("path", ["/export/orders.csv", "/export/orders.xlsx"])
@pytest.mark.parametrize(
    ("query", "status", "en", "zh"),
    [
        ({"to": "2026-11-30", "station": "station-02"}, 400,
         "Choose both dates", "请选择起止两个日期"),
        ({"from": "30/11/2026", "to": "2026-11-30", "station": "station-02"}, 400,
         "“30/11/2026” is not a date", "“30/11/2026” 不是日期"),
        ({"from": "2020-01-01", "to": "2026-11-30", "station": "station-02"}, 422,
         "2,526 days", "2,526 天"),
    ],
)  # fmt: skip
def test_a_refused_export_says_why_and_keeps_the_form(
    operator, path: str, query: dict[str, str], status: int, en: str, zh: str
) -> None:
    """A seller's mistake on the export form is answered with the form again, what they
    chose still in it, and what to change, in their language: not the bare "The request
    could not be understood." of a generic 400, which loses the form. A date that is not
    one is a bad request (400); a range read well but too long to export, 422."""
    for lang, want in (("en", en), ("zh-CN", zh)):
        resp = operator.get(path, query_string=query, headers={"Accept-Language": lang})
        page = resp.get_data(as_text=True)
        assert resp.status_code == status and resp.mimetype == "text/html"
        assert "Content-Disposition" not in resp.headers
        error = re.search(r'<p class="flash error" id="export-error"[^>]*>(.*?)</p>', page, re.S)
        assert error is not None and want in error.group(1), (lang, page)
        assert 'id="export-form"' in page
        assert f'name="to" value="{query["to"]}"' in page
        assert 'value="station-02" selected' in page
        if "from" in query and "/" not in query["from"]:
            assert f'name="from" value="{query["from"]}"' in page
        if lang == "zh-CN":
            assert "The request could not be understood" not in page
            assert not re.search(r"\b(days|Choose|date)\b", error.group(1))


@pytest.mark.parametrize(("lang", "want"), [("en", "more than 3 clips"), ("zh-CN", "超过 3 段")])
def test_an_xlsx_export_larger_than_a_sheet_is_refused_not_cut(
    operator, monkeypatch: pytest.MonkeyPatch, lang: str, want: str
) -> None:
    """Excel shows at most 1,048,575 rows under the header and drops the rest with a
    warning that is easy to miss: a range with more clips is refused with what to do (a
    shorter range, one station, or the CSV), not handed out short. The CSV is not cut."""
    from web import export

    monkeypatch.setattr(export, "XLSX_MAX_ROWS", 3)  # the fixture's day has 8 clips
    resp = operator.get("/export/orders.xlsx", query_string=DAY, headers={"Accept-Language": lang})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422 and "Content-Disposition" not in resp.headers
    error = re.search(r'<p class="flash error" id="export-error"[^>]*>(.*?)</p>', page, re.S)
    assert error is not None and want in error.group(1), page
    assert 'name="from" value="2026-11-30"' in page and 'name="to" value="2026-11-30"' in page
    assert len(csv_rows(operator.get("/export/orders.csv", query_string=DAY))) == 9


def test_the_station_filter_applies(operator) -> None:
    rows = csv_rows(
        operator.get("/export/orders.csv", query_string={**DAY, "station": "station-02"})
    )
    assert rows[1:] and all(r[2] == "station-02" for r in rows[1:])


@pytest.mark.parametrize("path", ["/export/orders.csv", "/export/orders.xlsx"])
def test_export_needs_an_operator(web_client, path: str) -> None:
    assert web_client.get(path, query_string=DAY).status_code == 302  # to the login page
    login(web_client, "viewer")
    assert web_client.get(path, query_string=DAY).status_code == 403


def test_xlsx_writer_keeps_unicode_and_replaces_what_xml_cannot_carry() -> None:
    out = io.BytesIO()
    rows = [["订单-七号", 1.5], ["bad\x01char", None], [7, "x&<y>"]]
    assert write_xlsx(out, "s", ["a", "b"], iter(rows)) == 3
    ws = openpyxl.load_workbook(out).active
    assert list(ws.iter_rows(values_only=True)) == [
        ("a", "b"),
        ("订单-七号", 1.5),
        ("bad\ufffdchar", None),
        (7, "x&<y>"),
    ]


# ---- the webhook delivery log --------------------------------------------------------------


def test_the_admin_sees_the_webhook_log(web_client, web_env: WebEnv) -> None:
    q = WebhookQueue(web_env.data_dir / QUEUE_NAME)
    now = time.time()
    q.enqueue("clip.finished", "http://erp.example/hook", {"order_id": "PO-1"}, now)
    q.enqueue("alarm.raised", "http://erp.example/hook", {"order_id": None}, now)
    first: Delivery = q.due(now)[0]
    q.record(first, now=now, code=500, error="HTTP 500", ms=12.0, next_at=now + 10,
             status="pending")  # fmt: skip
    q.record(first, now=now + 10, code=200, error=None, ms=8.0, next_at=None, status="delivered")
    q.close()
    login(web_client, "admin")
    page = web_client.get("/admin/webhooks").get_data(as_text=True)
    assert "clip.finished" in page and "alarm.raised" in page
    assert 'class="delivery delivered"' in page and 'class="delivery pending"' in page
    assert "HTTP 500" in page and "(12 ms)" in page
    assert "Delivered: <b>1</b>" in page and "Pending: <b>1</b>" in page


def test_the_webhook_log_without_a_queue_and_for_non_admins(web_client, tmp_path: Path) -> None:
    login(web_client, "admin")
    page = web_client.get("/admin/webhooks").get_data(as_text=True)
    assert "No webhook deliveries yet." in page
    other = web_client.application.test_client()
    login(other, "operator")
    assert other.get("/admin/webhooks").status_code == 403


def test_the_export_page_offers_both_formats_for_the_last_week(operator) -> None:
    page = operator.get("/export").get_data(as_text=True)
    assert 'action="/export/orders.csv"' in page and 'formaction="/export/orders.xlsx"' in page
    assert 'name="from"' in page and 'name="to"' in page and "station-02" in page


# ---- the export of many clips: order, unchanged bytes, streaming ---------------------------


def _undated(blob: bytes) -> bytes:
    """The zip with every member's time set to 0: the rest of its bytes are the writer's."""
    out = bytearray(blob)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        infos = z.infolist()
    for info in infos:
        out[info.header_offset + 10 : info.header_offset + 14] = bytes(4)  # local header
    at = blob.index(b"PK\x01\x02")  # the central directory, one header per member
    for _ in infos:
        out[at + 12 : at + 16] = bytes(4)
        n, m, k = struct.unpack("<HHH", blob[at + 28 : at + 34])
        at += 46 + n + m + k
    return bytes(out)


def _index_many(env: WebEnv, n: int) -> None:
    """``n`` clips on the fixture's day, a few seconds apart, with order IDs a sheet could take
    for formulas, Chinese ones, packers, returns and repacks: every column of the export."""
    from conftest_web import TZ8, index_clip

    from station.store.ledger import Ledger

    shapes = ("PO-{i}", "订单-{i}", "=SUM(A{i})", "+86{i}", "-{i}", "@x{i}", "\t{i}")
    ledger = Ledger.in_data_dir(env.data_dir)
    try:
        for i in range(n):
            start = datetime(2026, 11, 30, 10, 0, 0, i * 37 % 1000 * 1000, tzinfo=TZ8)
            extra: dict[str, object] = {"packer": "张三"} if i % 3 else {}
            if i % 11 == 5:
                extra.update(kind="return", repack_of=[1, i])
            index_clip(
                ledger, env.data_dir, env.file("plain"), shapes[i % len(shapes)].format(i=i),
                station="桌1" if i % 2 else "station-02", start=start + timedelta(seconds=7 * i),
                rel=f"clips/2026/11/30/many_{i}.mp4", copy=False,
                waybill=None if i % 5 == 0 else f"SF{9000 + i}", extra=extra,
            )  # fmt: skip
    finally:
        ledger.close()


def test_the_export_of_a_few_hundred_clips_is_byte_for_byte_what_it_was(
    operator, web_env: WebEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CSV without its last column (``late_waybills``, added at the end) is byte for byte
    the export built whole in memory (before it was streamed, commit f013c44), for these
    clips; the digests with that column were taken when it was added: a spreadsheet a seller
    made from an earlier export must read a new one the same way. Pages of 64 rows: several
    pages, each read once."""
    from web import export

    monkeypatch.setattr(export, "PAGE", 64)
    _index_many(web_env, 300)
    body = operator.get("/export/orders.csv", query_string=DAY).get_data()
    assert len(csv_rows(operator.get("/export/orders.csv", query_string=DAY))) == 1 + 8 + 300
    xlsx = operator.get("/export/orders.xlsx", query_string=DAY).get_data()
    # Without the last column (late_waybills, added at the end and empty here), the CSV is
    # the one pinned before it was added: the earlier columns are as they were.
    header_end = b",late_waybills\r\n"
    assert body.count(header_end) == 1 and body.count(b",\r\n") == 8 + 300
    before = body.replace(header_end, b"\r\n").replace(b",\r\n", b"\r\n")
    assert (
        hashlib.sha256(before).hexdigest()
        == "daf0806f9b99e76d86cd6d6ddfae5b05a23becebeebb14f59076c111989960e8"
    )
    # the digests with the late_waybills column
    assert (
        hashlib.sha256(body).hexdigest()
        == "ee2cd28c53f6c1befc466fc07d4d59fac3ac09949dfd02eb559a5eff6864d4e5"
    )
    assert (
        hashlib.sha256(_undated(xlsx)).hexdigest()
        == "c9d1dc56e082fe660f2964090e8a43647574a2e7515ab4674cc9a97b16552a81"
    )


def test_the_export_is_oldest_first_across_pages_and_time_zones(
    operator, web_env: WebEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are in the order the clips started (then by clip): clips started in the same
    second on either side of a page of the index, and a station on another offset whose
    local time reads earlier than an older clip's, are not shuffled."""
    from conftest_web import TZ8, index_clip

    from station.store.ledger import Ledger
    from web import export

    monkeypatch.setattr(export, "PAGE", 2)
    ledger = Ledger.in_data_dir(web_env.data_dir)
    try:
        for i, (station, start) in enumerate((
            ("桌1", datetime(2026, 11, 30, 10, 0, 0, 100000, tzinfo=TZ8)),
            ("桌1", datetime(2026, 11, 30, 10, 0, 0, 600000, tzinfo=TZ8)),
            ("station-02", datetime(2026, 11, 30, 10, 0, 0, 300000, tzinfo=TZ8)),
            ("london", datetime(2026, 11, 30, 3, 0, 0, tzinfo=UTC)),  # 11:00 at +08:00
            ("桌1", datetime(2026, 11, 30, 10, 30, 0, tzinfo=TZ8)),
        )):  # fmt: skip
            index_clip(ledger, web_env.data_dir, web_env.file("plain"), f"T-{i}",
                       station=station, start=start, copy=False)  # fmt: skip
    finally:
        ledger.close()
    conn = sqlite3.connect(web_env.data_dir / "index.sqlite3")
    want = [
        [order, datetime.fromisoformat(at).isoformat(timespec="seconds")]
        for order, at in conn.execute(
            "SELECT order_id, started_at FROM clips ORDER BY started_utc, id"
        )
    ]
    conn.close()
    rows = csv_rows(operator.get("/export/orders.csv", query_string=DAY))[1:]
    assert [[r[0], r[3]] for r in rows] == want
    assert [r[0] for r in rows if r[0].startswith("T-")] == ["T-0", "T-2", "T-1", "T-4", "T-3"]
    sheet = openpyxl.load_workbook(
        io.BytesIO(operator.get("/export/orders.xlsx", query_string=DAY).get_data())
    ).active
    assert [[r[0], r[3]] for r in sheet.iter_rows(min_row=2, values_only=True)] == want


def test_the_csv_is_streamed_a_page_at_a_time(
    operator, web_env: WebEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first rows leave before the last page of the index is read: a year of clips is
    never held whole in the site's memory."""
    from web import export

    monkeypatch.setattr(export, "PAGE", 3)
    resp = operator.get("/export/orders.csv", query_string=DAY, buffered=False)
    assert resp.status_code == 200 and resp.is_streamed
    chunks = list(resp.iter_encoded())
    resp.close()
    assert len(chunks) > 2 and chunks[0].startswith("\ufeff".encode())
    assert b"".join(chunks).decode("utf-8-sig").count("\r\n") == 1 + 8


def _open_in(folder: Path) -> list[str]:
    """The files this process holds open in ``folder`` (a nameless temporary file too)."""
    links = (os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink())
    return [link for link in links if link.startswith(str(folder))]


def test_an_xlsx_export_leaves_no_temporary_file_sent_abandoned_or_refused(
    operator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workbook is spooled to a temporary file (on disk past SPOOL_BYTES, as a year's
    is): closed, and so gone, once sent, when the browser goes away mid-download, and when
    the export is refused."""
    from web import export

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.setattr(export, "SPOOL_BYTES", 1)
    sent = operator.get("/export/orders.xlsx", query_string=DAY)
    assert sent.status_code == 200 and openpyxl.load_workbook(io.BytesIO(sent.get_data()))
    assert _open_in(spool) == []
    gone = operator.get("/export/orders.xlsx", query_string=DAY, buffered=False)
    assert gone.status_code == 200 and next(gone.iter_encoded()).startswith(b"PK")
    assert len(_open_in(spool)) == 1  # on disk while it is sent
    gone.close()  # the server closes the response of a client that went away
    assert _open_in(spool) == []
    monkeypatch.setattr(export, "XLSX_MAX_ROWS", 3)
    assert operator.get("/export/orders.xlsx", query_string=DAY).status_code == 422
    assert _open_in(spool) == [] and list(spool.iterdir()) == []
