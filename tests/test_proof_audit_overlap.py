"""Each second of video belongs to one order: `packcam audit` and a bare clip with --data name
clips of different orders claiming the same seconds, and one recording logged twice."""

from __future__ import annotations

import html
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from proof_support import TsaServer, build_store, record_orders, tsa_ec  # noqa: F401 (fixtures)
from verify_support import verify_page

from station.config import Config
from station.proof.bundle import export_order
from station.proof.finalizer import ProofFinalizer
from station.proof.verify import (
    AUTHENTIC,
    TAMPERED,
    audit,
    check_bundle_in_log,
    name_later_clips,
    verify_bundle,
    verify_clip,
)
from station.store.ledger import INDEX_NAME
from web import create_app


def _session(
    store_cfg: Config,
    orders: list[str],
    started: datetime,
    *,
    clock: Callable[[], bool | None] = lambda: True,
    pre_roll: bool = True,
) -> None:
    """One more recording session on the station, its camera clock reading ``started`` at its
    first frame (a clock set back, or a key holder signing made-up times), 4 s per clip;
    every manifest signed, logged and timestamped as the station does."""
    fin = ProofFinalizer(store_cfg, start_worker=False, clock=clock)
    ago = datetime.now(UTC) - started
    done = record_orders(store_cfg, (fin,), orders, frames=40, ago=ago, pre_roll=pre_roll)
    assert all(d.record is not None for d in done), [d.error for d in done]
    fin.close()
    fin2 = ProofFinalizer(store_cfg, start_worker=False)
    assert fin2.tsa is not None
    fin2.tsa.process_due()
    fin2.close()


def _clip_rows(data: Path) -> list[tuple[int, str, str, str]]:
    with sqlite3.connect(data / INDEX_NAME) as conn:
        rows = conn.execute("SELECT id, order_id, path, sha256 FROM clips ORDER BY id").fetchall()
    conn.close()
    return rows


@pytest.mark.parametrize("synced", [True, None])
def test_audit_names_clips_of_two_orders_claiming_the_same_seconds(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
    synced: bool | None,
) -> None:
    """A1 and B2 recorded (4 s each); then C3 signed as recorded from 1 s into A1 (the
    station's clock set back, or its key holder making up a clip): every manifest is genuine
    and timestamped, and C3's buyer would get seconds of A1's packing. Both clocks
    NTP-synchronised: a failure; else a warning (a clock stepped back may explain it)."""
    st = build_store(tmp_path, tsa_ec, [])
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    _session(st.cfg, ["A1", "B2"], t0)
    _session(st.cfg, ["C3"], t0 + timedelta(seconds=1), clock=lambda: synced)
    rows = _clip_rows(st.data)
    assert [r[1] for r in rows] == ["A1", "B2", "C3"]
    report = audit(st.cfg, anchors=st.anchors())
    hits = [c for c in report.checks if c.code == "clip-overlap"]
    assert len(hits) == 1, report.lines()
    assert hits[0].status == ("fail" if synced else "warn"), report.lines()
    why = hits[0].reason
    assert "'A1'" in why and "'C3'" in why and f"clips {rows[0][0]} and {rows[2][0]}" in why
    assert report.verdict == ("tampered" if synced else "authentic"), report.lines()
    # the bare clip, verified against the station's index, says so too (and A1's names C3)
    for mine, other in ((2, 0), (0, 2)):
        bare = verify_clip(st.data / rows[mine][2], st.cfg, anchors=st.anchors())
        got = [c for c in bare.checks if c.code == "clip-overlap"]
        assert len(got) == 1 and f"'{rows[other][1]}'" in got[0].reason, bare.lines()
    assert "clip-overlap" not in verify_clip(st.data / rows[1][2], st.cfg).codes()


def test_audit_fails_one_recording_logged_under_two_orders(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
) -> None:
    """A1's packing recorded, then the same bytes signed again as Z9's (the same frames, no
    C2PA to tell them apart): two buyers would each be shown one packing as theirs."""
    st = build_store(tmp_path, tsa_ec, [], c2pa=False)
    t0 = datetime.now(UTC) - timedelta(minutes=20)
    _session(st.cfg, ["A1"], t0, pre_roll=False)
    _session(st.cfg, ["Z9"], t0 + timedelta(minutes=5), pre_roll=False)
    rows = _clip_rows(st.data)
    assert [r[1] for r in rows] == ["A1", "Z9"] and rows[0][3] == rows[1][3]
    report = audit(st.cfg, anchors=st.anchors())
    hits = [c for c in report.checks if c.code == "clip-logged-twice"]
    assert len(hits) == 1 and hits[0].status == "fail", report.lines()
    assert "['A1', 'Z9']" in hits[0].reason and "log entries [0, 1]" in hits[0].reason
    assert f"clips {[rows[0][0], rows[1][0]]}" in hits[0].reason
    assert report.verdict == "tampered"
    bare = verify_clip(st.data / rows[1][2], st.cfg, anchors=st.anchors())
    got = [c for c in bare.checks if c.code == "clip-logged-twice"]
    assert len(got) == 1 and got[0].reason == hits[0].reason, bare.lines()


def test_a_bundle_of_a_recording_logged_twice_fails_with_the_station_s_data(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
) -> None:
    """One recording logged under A1 and again under Z9: its bare clip with --data is NOT
    AUTHENTIC (`clip-logged-twice`), and so is a bundle of either order on the central site.
    `packcam verify --data DIR BUNDLE` and the station site's /verify of the bundle read the
    same log, and called Z9's bundle AUTHENTIC (A1's: intact, its token late): one clip, two
    verdicts for the buyer on one site. With the station's data a bundle's clip is held to
    the log as the bare clip is; alone, a bundle cannot know (docs/proof.md)."""
    st = build_store(tmp_path, tsa_ec, [], c2pa=False)
    t0 = datetime.now(UTC) - timedelta(minutes=20)
    _session(st.cfg, ["A1"], t0, pre_roll=False)
    _session(st.cfg, ["Z9"], t0 + timedelta(minutes=5), pre_roll=False)
    rows = _clip_rows(st.data)
    bare = verify_clip(st.data / rows[1][2], st.cfg, anchors=st.anchors())
    (said,) = [c.reason for c in bare.checks if c.code == "clip-logged-twice"]
    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    for order in ("A1", "Z9"):
        bundle = export_order(st.cfg, order, tmp_path / f"{order}.zip").path
        alone = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
        assert "clip-logged-twice" not in alone.codes(), alone.lines()  # it cannot know
        name_later_clips(alone, st.cfg)  # what --data adds, on the CLI and the /verify page
        assert alone.verdict == TAMPERED == bare.verdict, alone.lines()
        got = [c.reason for c in alone.checks if c.code == "clip-logged-twice"]
        assert got == [said], alone.lines()
        page = html.unescape(verify_page(app, bundle.read_bytes(), "en", f"{order}.zip"))
        assert "clip-logged-twice" in page and "Authentic" not in page, page[-3000:]


def test_a_recording_logged_again_under_the_next_key_is_logged_twice_bare_and_bundled(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
) -> None:
    """One recording logged as A1's under key 1, the key rotated, the same bytes logged again
    as Z9's under key 2: `packcam audit` fails it (every key's log). The bare clip with --data
    looked only in the log its entry was found in (the current one, or the newest retired
    key's) and called both clips AUTHENTIC, where a bundle of either, checked with the same
    data, fails: each clip is held to every log of the station, one rule."""
    from test_proof_rotation import _issue_next

    from station.proof import rotation

    st = build_store(tmp_path, tsa_ec, [], c2pa=False)
    t0 = datetime.now(UTC) - timedelta(minutes=20)
    _session(st.cfg, ["A1"], t0, pre_roll=False)
    rotation.rotate(st.cfg, cert=_issue_next(st, tmp_path / "issued"), keep_old_key=True)
    _session(st.cfg, ["Z9"], t0 + timedelta(minutes=5), pre_roll=False)
    rows = _clip_rows(st.data)
    assert [r[1] for r in rows] == ["A1", "Z9"] and rows[0][3] == rows[1][3]
    assert "clip-logged-twice" in audit(st.cfg, anchors=st.anchors()).codes()
    for n, order in enumerate(("A1", "Z9")):
        bare = verify_clip(st.data / rows[n][2], st.cfg, anchors=st.anchors())
        assert bare.verdict == TAMPERED and "clip-logged-twice" in bare.codes(), bare.lines()
        bundle = export_order(st.cfg, order, tmp_path / f"{order}.zip").path
        report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
        name_later_clips(report, st.cfg)
        assert report.verdict == TAMPERED and "clip-logged-twice" in report.codes()


def test_a_bundle_s_clip_claiming_another_order_s_seconds_is_named_with_the_station_s_data(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
) -> None:
    """C3 signed as recorded from 1 s into A1 (both clocks synced): the bare clip with --data
    fails (`clip-overlap`, each second belongs to one order); a bundle of C3 or A1 checked
    with the same data (`packcam verify --data`, the station's /verify) did not hold its
    clips to the index's other clips, only to one another: one rule now, the same reasons."""
    st = build_store(tmp_path, tsa_ec, [], c2pa=False)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    _session(st.cfg, ["A1", "B2"], t0)
    _session(st.cfg, ["C3"], t0 + timedelta(seconds=1))
    rows = {r[1]: r for r in _clip_rows(st.data)}
    for order in ("A1", "C3"):
        bare = verify_clip(st.data / rows[order][2], st.cfg, anchors=st.anchors())
        assert "clip-overlap" in bare.codes(), bare.lines()
        bundle = export_order(st.cfg, order, tmp_path / f"{order}.zip").path
        report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
        check_bundle_in_log(report, st.cfg)
        assert report.verdict == TAMPERED == bare.verdict, report.lines()
        assert report.codes() == bare.codes(), (report.lines(), bare.lines())
    b2 = export_order(st.cfg, "B2", tmp_path / "B2.zip").path
    report = verify_bundle(b2, anchors=st.anchors(), tmp_dir=tmp_path)
    check_bundle_in_log(report, st.cfg)
    assert report.verdict == AUTHENTIC, report.lines()
