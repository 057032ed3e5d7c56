"""summary.html claims only what the bundle proves: the time claim needs tokens, no raw flags."""

from __future__ import annotations

from pathlib import Path

from proof_support import Store, bundle_index, read_zip, store, tsa_ec  # noqa: F401 (fixtures)

from station.proof.bundle import (
    _clock_text,
    _intro_html,
    _start_tokens_text,
    _starts,
    _tokens_text,
    export_order,
)


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


def test_the_start_tokens_are_counted_apart_from_the_end_tokens() -> None:
    # The start statement's tokens say when the clip began; the manifest's, when it ended.
    assert "1 token(s) over the clip's start statement" in _start_tokens_text(True, 1)
    none = _start_tokens_text(True, 0)
    assert "none" in none and "station's word" in none and "0 token" not in none
    assert "no start statement" in _start_tokens_text(False, 0)
    assert _starts({"clip": "c.mp4"}) == (False, 0)
    assert _starts({"start_timestamps": ["a.tst", "b.tst"]}) == (True, 2)


def test_an_exported_summary_shows_each_clips_start_tokens(store: Store, tmp_path: Path) -> None:  # noqa: F811
    bundle = export_order(store.cfg, "B2", tmp_path / "b.zip").path
    html = read_zip(bundle, "summary.html").decode()
    starts = [len(c.get("start_timestamps", [])) for c in bundle_index(bundle)["clips"]]
    assert starts and all(starts), starts  # this store's TSA saw every clip's start
    assert html.count("Start RFC 3161") == len(starts)
    for n in starts:
        assert f"{n} token(s) over the clip's start statement" in html
