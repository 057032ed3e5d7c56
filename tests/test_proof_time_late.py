"""A clip timestamped late: the station offline at its end is not called forged.

A token granted after the recorded end (beyond ``--max-delay``) proves the manifest existed by
then, and nothing about when the clip ended: a station offline at the end and a key holder who
signed later look the same offline. The forger can leave such a token out (``time-unanchored``),
so failing it only ever hit honest stations. It is a warning (``time-late``) that anchors no
time; a token BEFORE the recorded end beyond the bound still fails (``time-out-of-bounds``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    LateTsa,
    TsaServer,
    build_store,
    run_kit,
    tsa_ec,
)

from station.proof.bundle import export_order
from station.proof.standalone_verify import judge_end
from station.proof.trust import Anchors
from station.proof.verify import (
    AUTHENTIC,
    TAMPERED,
    UNANCHORED,
    Report,
    audit,
    verify_bundle,
    verify_clip,
)

MAX_DELAY_S = 15 * 60.0


def _clip(data: Path) -> Path:
    (clip,) = sorted((data / "clips").rglob("*.mp4"))
    return clip


def _late_not_forged(report: Report) -> None:
    assert report.verdict == UNANCHORED and report.exit_code == 4, report.lines()
    assert "time-late" in report.reasons() and not report.failures, report.lines()


@pytest.fixture(scope="module")
def tsa_a_day_late(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LateTsa]:
    """A second TSA, one the station reaches only a day after each clip (it is down)."""
    srv = LateTsa(tmp_path_factory.mktemp("tsa-late"), timedelta(days=1))
    yield srv
    srv.stop()


def test_a_station_offline_at_the_clip_s_end_is_intact_not_forged(
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The warehouse's internet is down for an hour: the clip's end token (and its start token)
    is granted an hour after its recorded end by the TSA the verifier pins. Both verifiers
    called it NOT AUTHENTIC (``time-out-of-bounds``); it is intact, its time the station's
    word: INTACT BUT NOT ANCHORED with ``time-late``, which says what the token does prove."""
    st = build_store(tmp_path / "st", tsa_ec, ["A1"], c2pa=False, ago=timedelta(hours=1))
    bundle = export_order(st.cfg, "A1", tmp_path / "A1.zip").path
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    _late_not_forged(report)
    said = " ".join(c.reason for c in report.checks if c.code == "time-late")
    assert "after the recorded end" in said and "the clip existed by then" in said, said
    assert "does not anchor" in said, said
    # no page claims it in time (the share summary's claim: web/summary.py)
    clip_tokens = [t for t in report.facts["tokens"] if "checkpoint" not in t["check"]]
    assert [(t["trusted"], t["in_bounds"]) for t in clip_tokens] == [(True, False)], clip_tokens
    _late_not_forged(verify_clip(_clip(st.data), st.cfg, anchors=st.anchors()))
    audited = audit(st.cfg, anchors=st.anchors())  # it sums up: so many manifests unanchored
    assert audited.verdict == UNANCHORED and not audited.failures, audited.lines()
    assert "time-unanchored" in audited.reasons(), audited.lines()
    # ... and says which of them a TSA saw late (an outage), apart from the never-timestamped
    late = [c.reason for c in audited.checks if c.code == "time-late"]
    assert len(late) == 1 and late[0].startswith("1 of 1 manifests"), audited.lines()
    rc, out = run_kit(KIT, bundle, tmp_path, *st.pins())
    assert rc == 4 and "[time-late]" in out and "INTACT BUT NOT ANCHORED" in out, out
    assert "[time-out-of-bounds]" not in out and "NOT AUTHENTIC" not in out, out


def test_a_second_tsa_a_day_late_does_not_undo_the_first_one_s_time(
    tsa_ec: TsaServer,  # noqa: F811
    tsa_a_day_late: LateTsa,
    tmp_path: Path,
) -> None:
    """Two TSAs, both pinned: the first grants its token at the clip's end, the second (down
    for a day) a day later. The token in time anchors the clip; the late one over the same
    bytes contradicts nothing: AUTHENTIC in both verifiers, with the ``time-late`` warning.
    It was NOT AUTHENTIC (``time-out-of-bounds``)."""
    st = build_store(tmp_path / "st", tsa_ec, ["A1"], c2pa=False, more_tsas=(tsa_a_day_late,))
    bundle = export_order(st.cfg, "A1", tmp_path / "A1.zip").path
    late_root = x509.load_pem_x509_certificate(tsa_a_day_late.root.read_bytes())
    anchors = Anchors(ca=st.anchors().ca, tsa=(*st.anchors().tsa, late_root))
    report = verify_bundle(bundle, anchors=anchors, tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC, report.lines()
    assert "time-late" in report.reasons(), report.lines()
    clip_tokens = [t for t in report.facts["tokens"] if "checkpoint" not in t["check"]]
    assert sorted(t["in_bounds"] for t in clip_tokens) == [False, True], clip_tokens
    assert verify_clip(_clip(st.data), st.cfg, anchors=anchors).verdict == AUTHENTIC
    rc, out = run_kit(KIT, bundle, tmp_path, *st.pins(), "--tsa-ca", str(tsa_a_day_late.root))
    assert rc == 0 and "[time-late]" in out and "RESULT: AUTHENTIC" in out, out
    # the day-late TSA alone (the first unpinned): not anchored, and not forged either
    alone = Anchors(ca=st.anchors().ca, tsa=(late_root,))
    _late_not_forged(verify_bundle(bundle, anchors=alone, tmp_dir=tmp_path))


def test_a_token_before_the_recorded_end_still_fails_pinned_or_not(
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The recorded times a day after the TSA saw the manifest: a contradiction, not a delay.
    It fails in both verifiers whether or not the TSA is pinned (a bundle whose own token
    says the manifest existed before the end it states is not one a station makes; the start
    token is held the same way, ``start-time-inconsistent``)."""
    st = build_store(tmp_path / "st", tsa_ec, ["A1"], c2pa=False, ago=-timedelta(days=1))
    bundle = export_order(st.cfg, "A1", tmp_path / "A1.zip").path
    for anchors, pins in ((st.anchors(), st.pins()), (Anchors(ca=st.anchors().ca), [])):
        report = verify_bundle(bundle, anchors=anchors, tmp_dir=tmp_path)
        assert report.verdict == TAMPERED and "time-out-of-bounds" in report.codes()
        assert "time-late" not in report.reasons(), report.lines()
        ca = ["--ca", str(st.data / "proof-public/company-ca.crt")]
        rc, out = run_kit(KIT, bundle, tmp_path, *(pins or ca))
        assert rc == 1 and "[time-out-of-bounds]" in out and "[time-late]" not in out, out


def test_the_end_token_judgement_of_a_day_and_of_a_loose_accuracy() -> None:
    """``judge_end``: seconds from the recorded end, the token's accuracy, the bound (its
    precision and the bound's edges: test_proof_forgery.py)."""
    assert judge_end(86400.0, 1.0, MAX_DELAY_S) == "late"
    assert judge_end(-86400.0, 1.0, MAX_DELAY_S) == "early"
    # a TSA stating ± 2 h places nothing within 15 min: late on the late side, never in time
    # ("loose": a time-late the pages do not call "too long after the end": it was not)
    assert judge_end(60.0, 7200.0, MAX_DELAY_S) == "loose"
    assert judge_end(0.0, 7200.0, MAX_DELAY_S) == "loose"
    assert judge_end(MAX_DELAY_S + 3, 7200.0, MAX_DELAY_S) == "late"  # genTime itself late
    # ... nor does it say it saw the manifest before the end: genTime + 2 h is after it
    assert judge_end(-60.0, 7200.0, MAX_DELAY_S) == "loose"
    assert judge_end(-(MAX_DELAY_S + 7200.0), 7200.0, MAX_DELAY_S) == "loose"  # + 1 s precision
    assert judge_end(-(MAX_DELAY_S + 7202.0), 7200.0, MAX_DELAY_S) == "early"
