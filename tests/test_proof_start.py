"""A clip's start, timestamped: the start statement a station fixes at the first frame, the
RFC 3161 token a TSA puts on it at once, and the one rule both verifiers judge them by."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    Store,
    bundle_index,
    forge_log,
    read_zip,
    run_kit,
    store,
    tsa_ec,
)

from station.proof import startstamp
from station.proof.bundle import export_order
from station.proof.canonical import canonical_json
from station.proof.standalone_verify import (
    FAIL,
    OK,
    WARN,
    judge_start,
    start_statement_digest,
    start_statement_problem,
)
from station.proof.verify import AUTHENTIC, TAMPERED, verify_bundle

T0 = datetime(2026, 3, 4, 10, 0, 0, tzinfo=UTC).astimezone()
MAX_DELAY_S = 15 * 60.0


def _body(**more: Any) -> dict[str, Any]:
    """A signed manifest's fields as the recorder and finalizer write them, with the start
    statement fixed at its first frame."""
    st = startstamp.statement(
        station="station-01",
        station_key="SHA256:" + "ab" * 32,
        order_id="A1",
        clip="station-01_A1_20260304T100000_000",
        started_at=T0,
    )
    body = {
        "order_id": "A1",
        "station": "station-01",
        "station_key": "SHA256:" + "ab" * 32,
        "path": "clips/2026/03/04/station-01_A1_20260304T100000_000.mp4",
        "started_at": T0.isoformat(timespec="milliseconds"),
        "ended_at": (T0 + timedelta(seconds=30)).isoformat(timespec="milliseconds"),
        "duration_s": 30.1,
        "start_statement": st,
    }
    body.update(more)
    return body


# ---- the shared rule ------------------------------------------------------------------------


def test_the_statement_agrees_with_the_manifest_it_was_made_for() -> None:
    body = _body()
    assert start_statement_problem(body) is None
    assert start_statement_digest(body) == startstamp.digest(body["start_statement"])
    assert (
        start_statement_digest(body)
        == hashlib.sha256(canonical_json(body["start_statement"])).hexdigest()
    )
    # the final name took "-2" (its first name was taken): still the clip it was started as
    renamed = _body(path="clips/2026/03/04/station-01_A1_20260304T100000_000-2.mp4")
    assert start_statement_problem(renamed) is None
    # none at all: nothing contradicts (the verifiers warn start-unanchored)
    assert start_statement_problem({**body, "start_statement": None}) is None
    assert start_statement_digest({k: v for k, v in body.items() if k != "start_statement"}) is None


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"order_id": "A2"}, "order_id"),
        ({"station": "station-02"}, "station"),
        ({"station_key": "SHA256:" + "cd" * 32}, "station_key"),
        ({"path": "clips/2026/03/04/station-01_A1_20260304T100500_000.mp4"}, "clip"),
        ({"path": "clips/2026/03/04/station-01_A1_20260304T100000_000-x.mp4"}, "clip"),
        # the key holder re-times the clip a day earlier and keeps the recorded statement
        ({"started_at": (T0 - timedelta(days=1)).isoformat()}, "86400.0 s later"),
        ({"started_at": (T0 + timedelta(seconds=1.5)).isoformat()}, "1.5 s earlier"),
        ({"started_at": "2026-03-04T10:00:00"}, "UTC offset"),
    ],
)
def test_a_statement_that_contradicts_its_manifest_is_named(
    change: dict[str, Any], words: str
) -> None:
    body = _body()
    body.update(change)
    problem = start_statement_problem(body)
    assert problem is not None and words in problem, problem


@pytest.mark.parametrize(
    "edit",
    [
        lambda st: st.update(type="packcam-checkpoint"),
        lambda st: st.update(version=2),
        lambda st: st.pop("nonce"),
        lambda st: st.update(extra="x"),
        lambda st: st.update(started_at="yesterday"),
    ],
)
def test_a_statement_no_station_writes_is_named(edit: Any) -> None:
    body = _body()
    edit(body["start_statement"])
    assert start_statement_problem(body) is not None
    assert start_statement_problem({**_body(), "start_statement": "a string"}) is not None


def test_a_stated_clock_step_is_held_as_the_recorder_states_it() -> None:
    """The statement is by the clock before a step, the manifest's start by the clock after
    it (clock_step_s): they agree by the step, not otherwise."""
    after = (T0 + timedelta(seconds=3600)).isoformat(timespec="milliseconds")
    assert start_statement_problem(_body(started_at=after, clock_step_s=3600.0)) is None
    assert start_statement_problem(_body(started_at=after)) is not None
    assert start_statement_problem(_body(clock_step_s=3600.0)) is not None


def test_judge_start_in_time_by_a_pinned_tsa() -> None:
    status, code, text = judge_start(T0, [(T0 + timedelta(seconds=3), 1.0, True)], MAX_DELAY_S)
    assert (status, code) == (OK, "")
    assert text.startswith("start timestamped") and "3 s after" in text
    # the bound is the end token's: 15 minutes (and the token's second) after the start
    late_ok = [(T0 + timedelta(seconds=MAX_DELAY_S), 1.0, True)]
    assert judge_start(T0, late_ok, MAX_DELAY_S)[0] == OK
    # a station clock a little ahead of the TSA's (the end token then says clock-ahead)
    ahead = judge_start(T0, [(T0 - timedelta(seconds=20), 1.0, True)], MAX_DELAY_S)
    assert ahead[0] == OK and "before (the station clock was ahead)" in ahead[2]


def test_judge_start_unanchored_warns() -> None:
    """No token, a token later than the bound (an honest station offline at the start, or a
    start written later: offline nobody can tell which), or none from a TSA you pinned."""
    assert judge_start(T0, [], MAX_DELAY_S)[:2] == (WARN, "start-unanchored")
    late = [(T0 + timedelta(hours=33), 1.0, True)]
    status, code, text = judge_start(T0, late, MAX_DELAY_S)
    assert (status, code) == (WARN, "start-unanchored") and "1980 min after" in text
    just_late = [(T0 + timedelta(seconds=MAX_DELAY_S + 3), 1.0, True)]
    assert judge_start(T0, just_late, MAX_DELAY_S)[:2] == (WARN, "start-unanchored")
    unpinned = [(T0 + timedelta(seconds=3), 1.0, False)]
    status, code, text = judge_start(T0, unpinned, MAX_DELAY_S)
    assert (status, code) == (WARN, "start-unanchored") and "not from a TSA you pinned" in text
    # one TSA late, another in time: anchored
    both = [*late, (T0 + timedelta(seconds=3), 1.0, True)]
    assert judge_start(T0, both, MAX_DELAY_S)[0] == OK


def test_judge_start_before_the_stated_start_fails() -> None:
    """A TSA saw the statement more than the bound before the start it states: the start
    is not when the clip began (a loose accuracy counts against the signer, as at the end)."""
    early = [(T0 - timedelta(seconds=MAX_DELAY_S + 5), 1.0, True)]
    assert judge_start(T0, early, MAX_DELAY_S)[:2] == (FAIL, "start-time-inconsistent")
    # even beside a token in time, and from a TSA you did not pin
    mixed = [(T0 + timedelta(seconds=3), 1.0, True), (early[0][0], 1.0, False)]
    assert judge_start(T0, mixed, MAX_DELAY_S)[:2] == (FAIL, "start-time-inconsistent")
    loose = [(T0 - timedelta(seconds=MAX_DELAY_S - 60), 120.0, True)]
    assert judge_start(T0, loose, MAX_DELAY_S)[0] == FAIL


# ---- the station's bundles, both verifiers ----------------------------------------------------


def test_a_station_bundle_carries_each_clips_start_token(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """Recorded through the real Recorder and ProofFinalizer: each manifest carries its start
    statement, fixed at its first frame, a token over it is in the bundle, and both verifiers
    say the start is timestamped."""
    bundle = export_order(store.cfg, "A1", tmp_path / "A1.zip").path
    idx = bundle_index(bundle)
    assert len(idx["clips"]) == 2
    for e in idx["clips"]:
        body = json.loads(read_zip(bundle, e["manifest"]))
        st = body["start_statement"]
        assert st["started_at"] == body["started_at"]  # the first frame's time, no step here
        assert Path(body["path"]).stem.startswith(st["clip"])
        assert [n.endswith(".start.0.tst") for n in e["start_timestamps"]] == [True]
    report = verify_bundle(bundle, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC, report.lines()
    starts = [c for c in report.checks if c.name.endswith(" start")]
    assert len(starts) == 2 and all(c.status == "ok" for c in starts), report.lines()
    assert all(c.reason.startswith("start timestamped") for c in starts)
    rc, out = run_kit(KIT, bundle, tmp_path, *store.pins())
    assert rc == 0, out
    assert len(re.findall(r"^OK   clip\[\d\] start: start timestamped", out, re.M)) == 2, out


def test_a_start_token_over_another_statement_fails(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """The key holder edits a statement (its nonce: no field the manifest holds it to) and
    re-signs the manifest in a log of his own: the start token a TSA gave is over other data."""
    a1 = export_order(store.cfg, "A1", tmp_path / "A1.zip").path

    def edit(body: dict[str, Any]) -> None:
        body["start_statement"] = {**body["start_statement"], "nonce": "00" * 16}

    forged = forge_log(a1, tmp_path / "forged.zip", store.station_key(), store.tsa.url, edit)
    report = verify_bundle(forged, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and report.codes() == {"tsa-other-data"}, report.lines()
    rc, out = run_kit(KIT, forged, tmp_path, *store.pins())
    assert rc == 1 and set(re.findall(r"^FAIL .*\[([a-z-]+)\]$", out, re.M)) == {
        "tsa-other-data"
    }, out
