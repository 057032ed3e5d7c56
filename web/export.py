"""CSV and XLSX export of the orders recorded in a date range (for the seller's spreadsheets)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from flask import Blueprint, current_app, render_template, request, url_for
from flask_babel import format_number
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from station.store.clips import ClipSearch
from station.store.ledger import ClipRecord
from web.auth import require
from web.formatting import day_bounds_utc, parse_day, site_tz
from web.handles import get_index
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
)
MAX_DAYS = 366
XLSX_MAX_ROWS = 1_048_575  # a sheet holds 2**20 rows, the header included
PAGE = 500
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
    tz = site_tz(current_app.config["PACKCAM"])
    return (
        day_from.isoformat(),
        day_to.isoformat(),
        day_bounds_utc(day_from, tz)[0],
        day_bounds_utc(day_to, tz)[1],
    )


def _clips(start_utc: str, end_utc: str, station: str | None) -> Iterator[ClipRecord]:
    index = get_index()
    offset = 0
    while True:
        page = index.search(
            ClipSearch(
                start_utc=start_utc, end_utc=end_utc, station=station, limit=PAGE, offset=offset
            )
        )
        yield from reversed(page)  # the index pages newest first; each page oldest first
        if len(page) < PAGE:
            return
        offset += PAGE


def rows(
    start_utc: str, end_utc: str, station: str | None, limit: int | None = None
) -> list[list[str | float]]:
    """One row per clip (a re-packed order has several), oldest first; ``limit``: stop
    after ``limit + 1`` rows (more than the caller can use)."""
    out: list[list[str | float]] = []
    for c in _clips(start_utc, end_utc, station):
        if limit is not None and len(out) > limit:
            break
        out.append(
            [
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
            ]
        )
    out.sort(key=lambda r: str(r[3]))
    return out


def _inert(value: str | float) -> str | float:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _station() -> str:
    return request.args.get("station", "").strip()[:64]


def _args(limit: int | None = None) -> tuple[str, list[list[str | float]]]:
    """The file's name and its rows (ExportRefused; ``limit``: the most rows it may have)."""
    day_from, day_to, start_utc, end_utc = _range()
    name = f"packcam-orders_{day_from}_{day_to}"
    data = rows(start_utc, end_utc, _station() or None, limit)
    if limit is not None and len(data) > limit:
        # Excel would drop the rows past its last with a warning that is easy to miss
        raise ExportRefused(
            _(
                "%(from)s to %(to)s has more than %(max)s clips, more than an Excel sheet "
                "holds. Choose fewer days or one station, or export it as CSV.",
                max=format_number(limit),
                **{"from": day_from, "to": day_to},
            ),
            422,
        )
    return name, data


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
    today = datetime.now(site_tz(current_app.config["PACKCAM"])).date()
    return _form((today - timedelta(days=6)).isoformat(), today.isoformat(), "")


@bp.get("/export/orders.csv")
@require("operator")
def orders_csv() -> Response | tuple[str, int]:
    try:
        name, data = _args()
    except ExportRefused as exc:
        return _refused(exc)
    buf = io.StringIO()
    buf.write("\ufeff")  # a BOM, so Excel reads the UTF-8 (Chinese order IDs) correctly
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in data:
        writer.writerow([_inert(v) for v in row])
    resp = Response(buf.getvalue().encode("utf-8"), mimetype="text/csv")
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/export/orders.xlsx")
@require("operator")
def orders_xlsx() -> Response | tuple[str, int]:
    try:
        name, data = _args(XLSX_MAX_ROWS)
    except ExportRefused as exc:
        return _refused(exc)
    blob = write_xlsx("orders", HEADER, data)
    resp = Response(
        blob, mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}.xlsx"'
    resp.headers["Cache-Control"] = "no-store"
    return resp
