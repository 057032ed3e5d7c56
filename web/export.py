"""CSV and XLSX export of the orders recorded in a date range (for the seller's spreadsheets)."""

from __future__ import annotations

import csv
import io
import itertools
import logging
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import IO

from flask import Blueprint, render_template, request, stream_with_context, url_for
from flask_babel import format_number
from flask_babel import gettext as _
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from station.store.clips import ClipSearch
from station.store.ledger import ClipRecord
from web.auth import require
from web.formatting import day_bounds_utc, parse_day, site_tz
from web.handles import get_index, site_config
from web.xlsx import write_xlsx

log = logging.getLogger(__name__)

bp = Blueprint("export", __name__)

HEADER = (
    "order",
    "waybills",
    "station",
    "start",
    "duration_s",
    "reason",
    "sha256",
    "link",
    "packer",
    "kind",
    "repack_of",
    # in no signed manifest (web/index.py, central/db.py); last, so older sheets keep theirs
    "late_waybills",
)
MAX_DAYS = 366
XLSX_MAX_ROWS = 1_048_575  # a sheet holds 2**20 rows, the header included
PAGE = 500
SPOOL_BYTES = 8 << 20  # a workbook larger than this is spooled to disk, not kept in memory
# A cell starting with one of these is a formula to Excel and LibreOffice; order IDs come
# from scanners and labels, so a CSV cell is made inert with a leading apostrophe (OWASP).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class ExportRefused(Exception):
    """The export form's values cannot be exported; the message says what to change.
    ``status``: 400 when a value is not readable, 422 when it is but cannot be done."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _day(name: str) -> date:
    text = request.args.get(name, "").strip()
    if not text:
        raise ExportRefused(_("Choose both dates, From and To."))
    day = parse_day(text)
    if day is None or len(text) != 10:
        raise ExportRefused(
            _(
                "“%(text)s” is not a date. Pick the day in the calendar, or type it as 2026-11-30.",
                text=text[:40],
            )
        )
    return day


def _range() -> tuple[str, str, str, str]:
    """(from, to, start_utc, end_utc) from ?from=YYYY-MM-DD&to=YYYY-MM-DD (ExportRefused)."""
    day_from, day_to = _day("from"), _day("to")
    if day_to < day_from:
        day_from, day_to = day_to, day_from
    days = (day_to - day_from).days + 1
    if days > MAX_DAYS:
        raise ExportRefused(
            _(
                "%(from)s to %(to)s is %(days)s days; an export covers at most %(max)d days. "
                "Export it in parts.",
                days=format_number(days),
                max=MAX_DAYS,
                **{"from": day_from.isoformat(), "to": day_to.isoformat()},
            ),
            422,
        )
    tz = site_tz(site_config())
    return (
        day_from.isoformat(),
        day_to.isoformat(),
        day_bounds_utc(day_from, tz)[0],
        day_bounds_utc(day_to, tz)[1],
    )


def _clips(start_utc: str, end_utc: str, station: str | None) -> Iterator[ClipRecord]:
    """The clips started in [start, end), oldest first, a page at a time: each page starts
    after the last clip of the one before (by OFFSET, each would read all those before it)."""
    index = get_index()
    after = ("", 0)  # before the first clip
    while True:
        page = index.search(
            ClipSearch(
                start_utc=start_utc, end_utc=end_utc, station=station, limit=PAGE, after=after
            )
        )
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1]
        assert last.id is not None  # both indexes give every clip its id
        after = (str(last.extra["started_utc"]), last.id)


def rows(start_utc: str, end_utc: str, station: str | None) -> Iterator[list[str | float]]:
    """One row per clip (a re-packed order has several), oldest first."""
    for c in _clips(start_utc, end_utc, station):
        yield [
            c.order_id,
            " ".join(w.waybill for w in c.waybills),
            c.station,
            c.started_at.isoformat(timespec="seconds"),
            round(c.duration_s, 1),
            c.finish_reason,
            c.sha256,
            url_for("clips.order", order_id=c.order_id, _external=True),
            c.packer or "",
            c.kind,
            " ".join(str(i) for i in c.repack_of),
            " ".join(c.extra.get("late_waybills") or ()),
        ]


def _inert(value: str | float) -> str | float:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _station() -> str:
    return request.args.get("station", "").strip()[:64]


def _args() -> tuple[str, str, Iterator[list[str | float]]]:
    """The first and last day of the form's range, and the rows of its clips, read as they
    are used (ExportRefused)."""
    day_from, day_to, start_utc, end_utc = _range()
    return day_from, day_to, rows(start_utc, end_utc, _station() or None)


def _csv(data: Iterable[list[str | float]]) -> Iterator[bytes]:
    """The CSV file, a page of rows at a time."""
    buf = io.StringIO()
    buf.write("\ufeff")  # a BOM, so Excel reads the UTF-8 (Chinese order IDs) correctly
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER)
    for n, row in enumerate(data, start=1):
        writer.writerow([_inert(v) for v in row])
        if n % PAGE == 0:
            yield buf.getvalue().encode("utf-8")
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode("utf-8")


def _xlsx(day_from: str, day_to: str, data: Iterator[list[str | float]]) -> IO[bytes]:
    """The workbook in a temporary file (in memory while small, else on disk and nameless);
    ExportRefused when the range has more rows than a sheet holds."""
    # closed here on a refusal or an error, else by the response (wrap_file) once sent
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
    try:
        n = write_xlsx(spool, "orders", HEADER, itertools.islice(data, XLSX_MAX_ROWS + 1))
        if n > XLSX_MAX_ROWS:
            # Excel would drop the rows past its last with a warning that is easy to miss
            raise ExportRefused(
                _(
                    "%(from)s to %(to)s has more than %(max)s clips, more than an Excel sheet "
                    "holds. Choose fewer days or one station, or export it as CSV.",
                    max=format_number(XLSX_MAX_ROWS),
                    **{"from": day_from, "to": day_to},
                ),
                422,
            )
    except BaseException:
        spool.close()
        raise
    return spool


def _download(resp: Response, day_from: str, day_to: str, ext: str) -> Response:
    name = f"packcam-orders_{day_from}_{day_to}.{ext}"
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _form(day_from: str, day_to: str, station: str, error: str | None = None) -> str:
    return render_template(
        "export.html",
        day_from=day_from,
        day_to=day_to,
        station=station,
        error=error,
        stations=get_index().stations(),
    )


def _refused(exc: ExportRefused) -> tuple[str, int]:
    """The form again, as the user filled it in, with what to change."""
    args = request.args
    log.info("export refused: %s", exc)
    return (
        _form(args.get("from", "")[:40], args.get("to", "")[:40], _station(), str(exc)),
        exc.status,
    )


@bp.get("/export")
@require("operator")
def form() -> str:
    today = datetime.now(site_tz(site_config())).date()
    return _form((today - timedelta(days=6)).isoformat(), today.isoformat(), "")


@bp.get("/export/orders.csv")
@require("operator")
def orders_csv() -> Response | tuple[str, int]:
    try:
        day_from, day_to, data = _args()
    except ExportRefused as exc:
        return _refused(exc)
    # streamed: the rows are read, a page at a time, while the file is sent
    resp = Response(stream_with_context(_csv(data)), mimetype="text/csv")
    return _download(resp, day_from, day_to, "csv")


@bp.get("/export/orders.xlsx")
@require("operator")
def orders_xlsx() -> Response | tuple[str, int]:
    try:
        day_from, day_to, data = _args()
        spool = _xlsx(day_from, day_to, data)
    except ExportRefused as exc:
        return _refused(exc)
    size = spool.seek(0, io.SEEK_END)
    spool.seek(0)
    # the server closes the file (and so deletes it) when the response ends, sent or not
    resp = Response(
        wrap_file(request.environ, spool),
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        direct_passthrough=True,
    )
    resp.content_length = size
    return _download(resp, day_from, day_to, "xlsx")
