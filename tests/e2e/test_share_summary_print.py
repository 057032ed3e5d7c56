"""The share summary printed to PDF by Chromium over waitress: one A4 page, with the order."""

from __future__ import annotations

import re
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest_web import add_users
from proof_support import Store, build_store, tsa_ec  # noqa: F401 (fixture)
from verify_support import running_site

ORDER = "PO-SUMMARY-7731"


def _pdf_pages(pdf: bytes) -> int:
    """Page objects (``/Type /Page``, not ``/Pages``) in the PDF's plain and deflated parts."""
    texts = [pdf]
    for m in re.finditer(rb"stream\r?\n", pdf):
        try:
            texts.append(zlib.decompressobj().decompress(pdf[m.end() : m.end() + (1 << 22)]))
        except zlib.error:
            continue
    return sum(len(re.findall(rb"/Type\s*/Page(?![s\w])", t)) for t in texts)


def _pdf_text(pdf: bytes) -> str:
    """The text Chromium drew: glyph IDs of each shown string mapped through the fonts'
    ToUnicode CMaps (enough for Skia's PDFs; no PDF library is installed here)."""
    streams = []
    for m in re.finditer(rb"stream\r?\n", pdf):
        try:
            streams.append(zlib.decompressobj().decompress(pdf[m.end() : m.end() + (1 << 22)]))
        except zlib.error:
            continue
    cmap: dict[bytes, str] = {}
    for s in streams:
        if b"begincmap" not in s:
            continue
        for block in re.findall(rb"beginbfchar(.*?)endbfchar", s, re.S):
            for src, dst in re.findall(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                cmap[bytes.fromhex(src.decode())] = bytes.fromhex(dst.decode()).decode("utf-16-be")
        for block in re.findall(rb"beginbfrange(.*?)endbfrange", s, re.S):
            for lo, hi, dst in re.findall(
                rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block
            ):
                a, b = int(lo, 16), int(hi, 16)
                base = bytes.fromhex(dst.decode()).decode("utf-16-be")
                for i in range(a, b + 1):
                    cmap[(i).to_bytes(len(lo) // 2, "big")] = chr(ord(base[-1]) + i - a)
    out = []
    for s in streams:
        if b"BT" not in s:
            continue
        for hexstr in re.findall(rb"<([0-9A-Fa-f]+)>", s):
            raw = bytes.fromhex(hexstr.decode()) if len(hexstr) % 2 == 0 else b""
            out.append("".join(cmap.get(raw[i : i + 2], "?") for i in range(0, len(raw), 2)))
    return "".join(out)


def test_the_share_summary_prints_to_one_a4_page(page: Any, tmp_path: Path, tsa_ec) -> None:  # noqa: F811
    st: Store = build_store(tmp_path / "s", tsa_ec, [ORDER], ago=timedelta(minutes=1))
    add_users(st.data)
    from web.db import WebDB
    from web.share import share_token

    db = WebDB.in_data_dir(st.data)
    try:
        share = db.create_share(ORDER, "viewer", timedelta(days=7), "dispute 42")
    finally:
        db.close()
    with running_site(st.cfg) as (url, server):
        with server.packcam_app.test_request_context():
            path = f"/s/{share_token(share)}"
        page.goto(url.rstrip("/") + path)
        page.click("a.summary-link")
        page.wait_for_selector("button[data-print]")
        assert ORDER in page.title()
        page.wait_for_load_state("networkidle")
        loaded = page.eval_on_selector_all(
            ".summary-frames img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"
        )
        assert loaded and all(loaded)  # the key frames are there to print
        assert "Authentic" in page.inner_text(".summary-lang[lang=en] .summary-verdict")
        assert "真实" in page.inner_text(".summary-lang[lang=zh-CN] .summary-verdict")
        pdf = page.pdf(format="A4", prefer_css_page_size=True)
    (tmp_path / "summary.pdf").write_bytes(pdf)
    assert pdf.startswith(b"%PDF")
    assert _pdf_pages(pdf) == 1
    text = _pdf_text(pdf)
    assert ORDER in text, text[:500]
    assert "Print / save as PDF" not in text  # the tools are not printed
    assert "SHA-256" in text
