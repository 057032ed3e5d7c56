"""summary.html claims only what the bundle proves: the time claim needs tokens, no raw flags."""

from __future__ import annotations

from pathlib import Path

from proof_support import Store, read_zip, store, tsa_ec  # noqa: F401 (fixtures)

from station.proof.bundle import _clock_text, _intro_html, _tokens_text, export_order


def test_without_tokens_no_trusted_time_is_claimed() -> None:
    intro = _intro_html(0, 2)
    assert "time-stamping authority" not in intro and "trusted time" not in intro
    assert "station's clock alone" in intro and "仅来自工位时钟" in intro
    assert "none" in _tokens_text(0) and "0 token" not in _tokens_text(0)


def test_with_tokens_the_time_claim_names_them() -> None:
    assert "3 RFC 3161 token(s)" in _intro_html(3, 2)
    assert "2 token(s)" in _tokens_text(2)


def test_the_clock_state_is_said_in_words() -> None:
    for value in (True, False, None):
        text = _clock_text(value)
        assert "True" not in text and "False" not in text and "None" not in text
    assert "not NTP-synchronised" in _clock_text(False)


def test_an_exported_summary_reads_true(store: Store, tmp_path: Path) -> None:  # noqa: F811
    bundle = export_order(store.cfg, "B2", tmp_path / "b.zip").path
    html = read_zip(bundle, "summary.html").decode()
    assert "NTP: False" not in html and ">False<" not in html and ">None<" not in html
    assert "token(s) from a time-stamping authority" in html  # this store has a TSA
