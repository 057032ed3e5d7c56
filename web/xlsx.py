"""A minimal XLSX (Office Open XML) writer: one sheet of text and number cells, no dependency."""

from __future__ import annotations

import io
import itertools
import re
import time
import zipfile
from collections.abc import Iterable, Sequence
from typing import IO
from xml.sax.saxutils import escape

Cell = str | int | float | None

# Characters XML 1.0 cannot carry at all (a scanner's control codes are refused long before,
# but an export must never produce a file Excel calls corrupt).
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_PKG = "http://schemas.openxmlformats.org/package/2006"
_DOC = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_OOXML = "application/vnd.openxmlformats-"
_SML = f"{_OOXML}officedocument.spreadsheetml"
_CONTENT_TYPES = (
    f'{_XML}<Types xmlns="{_PKG}/content-types">'
    f'<Default Extension="rels" ContentType="{_OOXML}package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    f'<Override PartName="/xl/workbook.xml" ContentType="{_SML}.sheet.main+xml"/>'
    f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_SML}.worksheet+xml"/>'
    "</Types>"
)
_RELS = (
    f'{_XML}<Relationships xmlns="{_PKG}/relationships">'
    f'<Relationship Id="rId1" Type="{_DOC}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WORKBOOK_RELS = (
    f'{_XML}<Relationships xmlns="{_PKG}/relationships">'
    f'<Relationship Id="rId1" Type="{_DOC}/worksheet" Target="worksheets/sheet1.xml"/>'
    "</Relationships>"
)


def _col(i: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    name = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        name = chr(65 + rem) + name
    return name


def _cell(ref: str, value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int | float):
        return f'<c r="{ref}"><v>{value!r}</v></c>'
    text = escape(_ILLEGAL.sub("\ufffd", value))
    # An inline string is text, never a formula: "=cmd|..." from a scanner stays inert.
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'


def write_xlsx(
    out: IO[bytes], sheet: str, header: Sequence[str], rows: Iterable[Sequence[Cell]]
) -> int:
    """Write a one-sheet workbook to ``out`` (seekable): ``header`` in bold-free row 1, then
    ``rows``, the sheet read and written a row at a time; returns the number of ``rows``."""
    name = escape(_ILLEGAL.sub("", sheet)[:31] or "Sheet1", {'"': "&quot;"})
    workbook = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
        ' xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f'<sheets><sheet name="{name}" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    # the sheet's entry as writestr makes one (its time, its mode), with no sizes to know
    # beforehand: written through open(), which goes back to fill them in
    info = zipfile.ZipInfo("xl/worksheets/sheet1.xml", time.localtime(time.time())[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o600 << 16
    n = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", _CONTENT_TYPES)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/workbook.xml", workbook)
        z.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        with z.open(info, "w") as raw, io.TextIOWrapper(raw, "utf-8", newline="") as body:
            body.write(
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                '<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2"'
                ' activePane="bottomLeft" state="frozen"/></sheetView></sheetViews><sheetData>'
            )
            for r, row in enumerate(itertools.chain([header], rows), start=1):
                cells = "".join(_cell(f"{_col(c)}{r}", v) for c, v in enumerate(row))
                body.write(f'<row r="{r}">{cells}</row>')
                n = r - 1
            body.write("</sheetData></worksheet>")
    return n


__all__ = ["write_xlsx"]
