"""A clip's start, timestamped: the start statement a station fixes at the first frame, the
RFC 3161 token a TSA puts on it at once, and the one rule both verifiers judge them by."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from proof_support import (  # noqa: F401 (fixtures)
    FPS,
    KIT,
    H,
    Store,
    TsaServer,
    W,
    bundle_index,
    forge_log,
    frame_i420,
    make_clip,
    read_zip,
    run_kit,
    store,
    tsa_ec,
)
from recorder_support import encoded_recorder
from sync_support import fsyncs, run_killed

from station import config as config_mod
from station.proof import startstamp
from station.proof.bundle import export_order
from station.proof.canonical import canonical_json
from station.proof.finalizer import ProofFinalizer
from station.proof.log import ProofLog
from station.proof.standalone_verify import (
    FAIL,
    OK,
    WARN,
    judge_start,
    start_statement_digest,
    start_statement_problem,
)
from station.proof.tsa import verify_token
from station.proof.verify import AUTHENTIC, TAMPERED, audit, verify_bundle, verify_clip
from station.recording.recorder import JOURNAL_SUFFIX
from station.store.ledger import Ledger
from station.store.recovery import recover_data_dir

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


def test_a_step_past_the_calendar_s_edge_is_judged_not_raised() -> None:
    """Times and a stated step are compared as seconds: moving a datetime by a step of 31
    years near year 9999 (or year 1) raised OverflowError in both verifiers."""
    edge = _body(started_at="9999-12-31T23:59:58.000+00:00", clock_step_s=-1e9)
    assert "earlier" in (start_statement_problem(edge) or ""), start_statement_problem(edge)
    last = datetime(9999, 12, 31, 23, 59, 58, tzinfo=UTC)
    seen = [(last, 1.0, True)]
    assert judge_start(last, seen, MAX_DELAY_S, 1e9)[:2] == (FAIL, "start-time-inconsistent")
    first = datetime(1, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert judge_start(first, [(first, 1.0, True)], MAX_DELAY_S, -1e9)[0] == WARN


@pytest.mark.parametrize("step_s", [-3600.0, 3600.0])
def test_judge_start_holds_the_token_to_the_clock_after_a_step(step_s: float) -> None:
    """An honest station whose clock NTP set right while the clip recorded: its statement is
    by the clock before the step (off by it), its manifest's start by the clock after it, the
    one a TSA's time is held to. The TSA saw the statement a moment after the start by that
    clock: timestamped. Held to the statement's own time, a clock an hour ahead failed
    (start-time-inconsistent) and one an hour behind warned (start-unanchored)."""
    stated = T0 - timedelta(seconds=step_s)  # the clock before the step read so
    seen = [(T0 + timedelta(seconds=2), 1.0, True)]
    status, code, text = judge_start(stated, seen, MAX_DELAY_S, step_s)
    assert (status, code) == (OK, ""), text
    assert "2 s after" in text and f"clock step {step_s:+g} s" in text, text
    # a stated step the token does not bear out: the start it states is a day off the TSA's
    day = [(T0 + timedelta(days=1), 1.0, True)]
    assert judge_start(stated, day, MAX_DELAY_S, step_s)[:2] == (WARN, "start-unanchored")


def test_judge_start_before_the_stated_start_fails() -> None:
    """A TSA saw the statement more than the bound before the start it states: the start
    is not when the clip began. A loose accuracy is for the signer on this side: it fails
    only when even genTime + accuracy is before the bound (``time_before``, as at the end)."""
    early = [(T0 - timedelta(seconds=MAX_DELAY_S + 5), 1.0, True)]
    assert judge_start(T0, early, MAX_DELAY_S)[:2] == (FAIL, "start-time-inconsistent")
    # even beside a token in time, and from a TSA you did not pin
    mixed = [(T0 + timedelta(seconds=3), 1.0, True), (early[0][0], 1.0, False)]
    assert judge_start(T0, mixed, MAX_DELAY_S)[:2] == (FAIL, "start-time-inconsistent")
    # ± 2 min, 14 min before: the TSA may have seen it 12 min before, within the bound of a
    # clock ahead; nor does it place it within the bound (it anchors nothing)
    loose = [(T0 - timedelta(seconds=MAX_DELAY_S - 60), 120.0, True)]
    assert judge_start(T0, loose, MAX_DELAY_S)[:2] == (WARN, "start-unanchored")
    # ± 2 min, 17 min 2 s before: even at genTime + 2 min + 1 s it was before the bound
    loose = [(T0 - timedelta(seconds=MAX_DELAY_S + 122), 120.0, True)]
    assert judge_start(T0, loose, MAX_DELAY_S)[:2] == (FAIL, "start-time-inconsistent")


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


# ---- the station: off the capture thread, and through a crash -----------------------------


def _station_cfg(data: Path, tsa: TsaServer) -> config_mod.Config:
    cfg = config_mod.load(None).with_data_dir(data)
    return cfg.replace(
        "proof", tsa_urls=(tsa.url,), tsa_ca_path=str(tsa.root), c2pa=False, checkpoint_every=1
    )


def _granted(plog: ProofLog, digest: str) -> list[bytes]:
    return [t.token for t in plog.timestamps_for(digest) if t.status == "granted" and t.token]


def test_the_capture_thread_never_asks_the_tsa(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start statement is fixed on the capture thread at the clip's first frame, but its
    RFC 3161 request is queued in memory and sent by the TSA worker: the capture thread opens
    no connection, writes nothing to the proof log and fsyncs nothing (a TSA's round trip, or
    an SD card's fsync, there dropped the next buyer's frames: docs/performance.md). The token
    comes all the same, over the statement the signed manifest carries."""
    cfg = _station_cfg(tmp_path / "data", tsa_ec)
    capture = threading.current_thread().name
    connects: list[str] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        connects.append(threading.current_thread().name)
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    synced = fsyncs(monkeypatch)
    fin = ProofFinalizer(cfg, clock=lambda: True)
    proof_sql: list[tuple[str, str]] = []
    fin.log.db.conn.set_trace_callback(
        lambda sql: proof_sql.append((threading.current_thread().name, sql))
    )
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    rec = encoded_recorder(cfg, ledger, W, H, FPS, finalizers=(fin,))
    wall0 = datetime.now(UTC).astimezone()
    on_capture: list[object] = []
    try:
        for i in range(12):
            t = i / FPS
            wall = wall0 + timedelta(seconds=t)
            mark = (len(connects), len(synced), len(proof_sql))
            if i == 2:
                rec.start("A1", t, wall=wall)
            rec.push(frame_i420(i), t, wall)
            if i == 11:
                rec.stop("sealed", t)
            on_capture += [c for c in connects[mark[0] :] if c == capture]
            on_capture += [s for s in synced[mark[1] :] if s[0] == capture]
            on_capture += [s for s in proof_sql[mark[2] :] if s[0] == capture]
        rec.wait_idle()
    finally:
        rec.close()
        ledger.close()
    assert on_capture == []
    assert "tsa-worker" in connects  # the requests went out, from the worker
    (done,) = rec.finished
    assert done.record is not None
    manifest = json.loads((cfg.station.data_dir / done.record.manifest_path).read_text())
    st = manifest["start_statement"]
    assert (st["order_id"], st["station_key"]) == ("A1", fin.key.fingerprint)
    assert st["started_at"] == manifest["started_at"]
    assert Path(manifest["path"]).stem == st["clip"]
    digest = startstamp.digest(st)
    assert fin.worker is not None
    for _ in range(200):  # the worker fetches it (woken at the first frame)
        if _granted(fin.log, digest):
            break
        fin.worker.wake()
        threading.Event().wait(0.05)
    (token,) = _granted(fin.log, digest)
    info = verify_token(token, bytes.fromhex(digest), [x509.load_pem_x509_certificate(
        tsa_ec.root.read_bytes())])  # fmt: skip
    started = datetime.fromisoformat(st["started_at"])
    assert judge_start(started, [(info.gen_time, info.accuracy_s, True)], MAX_DELAY_S)[0] == OK
    fin.close()


# The station is killed by -9 in the middle of a clip: its start statement is in the clip's
# journal only (no TSA worker here: the request never reached the proof log).
KILLED_CHILD = """
import os, signal, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proof_support import FPS, H, W, frame_i420
from recorder_support import encoded_recorder

from station import config as config_mod
from station.proof.finalizer import ProofFinalizer
from station.store.ledger import Ledger

data, url, root = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
cfg = config_mod.load(None).with_data_dir(data).replace(
    "proof", tsa_urls=(url,), tsa_ca_path=root, c2pa=False, checkpoint_every=1
)
fin = ProofFinalizer(cfg, start_worker=False, clock=lambda: True)
ledger = Ledger.in_data_dir(data)
rec = encoded_recorder(cfg, ledger, W, H, FPS, finalizers=(fin,))
wall0 = datetime.now(UTC).astimezone()
i = 0
while True:  # until a whole fragment of the clip is on disk (the encoder may lag)
    t = i / FPS
    if i == 2:
        rec.start("A9", t, wall=wall0 + timedelta(seconds=t))
    rec.push(frame_i420(i), t, wall0 + timedelta(seconds=t))
    i += 1
    if i > 15 and getattr(rec._open.writer, "_good_size", 1) > 0 or i > 3000:
        break
    if i > 15:
        time.sleep(0.01)
rec.flush_journals()
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_clip_cut_by_a_crash_keeps_its_start_statement(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
) -> None:
    """Crash recovery signs the cut clip's manifest from its journal: the start statement
    fixed at its first frame is in it (the journal keeps the manifest fields), its timestamp
    request is queued when the manifest is signed, and the token a TSA then gives is over the
    statement the manifest carries (late, were the station down long: start-unanchored)."""
    data = tmp_path / "data"
    run_killed(KILLED_CHILD, str(data), tsa_ec.url, str(tsa_ec.root))
    (journal,) = (data / "tmp").glob("*" + JOURNAL_SUFFIX)
    before = json.loads(journal.read_text())["extra"]["start_statement"]
    cfg = _station_cfg(data, tsa_ec)
    report = recover_data_dir(cfg)
    assert report.ok, report
    ledger = Ledger.in_data_dir(data)
    try:
        (clip,) = ledger.clips()
    finally:
        ledger.close()
    manifest = json.loads((data / clip.manifest_path).read_text())
    assert manifest["finish_reason"] == "interrupted" and "recovery" in manifest
    assert manifest["start_statement"] == before
    assert start_statement_problem(manifest) is None
    fin = ProofFinalizer(cfg, start_worker=False)
    try:
        assert fin.tsa is not None
        fin.tsa.process_due()
        (token,) = _granted(fin.log, startstamp.digest(before))
    finally:
        fin.close()
    info = verify_token(token, bytes.fromhex(startstamp.digest(before)), [])
    started = datetime.fromisoformat(before["started_at"])
    assert judge_start(started, [(info.gen_time, info.accuracy_s, True)], MAX_DELAY_S)[0] == OK


def test_a_pending_start_token_holds_the_central_bundle_parts(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
) -> None:
    """The archiver signs an order's bundle parts once its clips' tokens are in
    (``pending_for_clip``): the start statement's token counts too, or the central bundle
    would carry the end token only, for good (parts are not signed again for that clip)."""
    cfg = _station_cfg(tmp_path / "data", tsa_ec)
    fin = ProofFinalizer(cfg, start_worker=False, clock=lambda: True)
    try:
        clip = make_clip(tmp_path / "c.mp4")
        st = fin.start_statement("A1", "c", T0)
        started = T0.isoformat(timespec="milliseconds")
        data = {"order_id": "A1", "station": cfg.station.name, "path": "c.mp4",
                "started_at": started, "start_statement": st}  # fmt: skip
        body = fin(clip, data)
        tables = fin.log.tables
        assert tables.pending_for_clip(body["sha256"]) == 2  # the manifest's and the start's
        (end,) = fin.log.timestamps_for(body["signature"]["manifest_sha256"])
        fin.log.store_token(end.id, b"token", datetime.now(UTC))
        assert tables.pending_for_clip(body["sha256"]) == 1
        (start,) = fin.log.timestamps_for(startstamp.digest(st))
        fin.log.store_token(start.id, b"token", datetime.now(UTC))
        assert tables.pending_for_clip(body["sha256"]) == 0
    finally:
        fin.close()


def test_verify_data_judges_a_bare_clip_s_start(store: Store) -> None:  # noqa: F811
    """`packcam verify --data DIR CLIP` holds the clip's start statement to the data dir's
    tokens by the same rule."""
    ledger = Ledger.in_data_dir(store.data)
    try:
        clips = ledger.clips()
    finally:
        ledger.close()
    assert clips
    for clip in clips:
        report = verify_clip(store.data / clip.path, store.cfg, anchors=store.anchors())
        assert report.verdict == AUTHENTIC, report.lines()
        (start,) = [c for c in report.checks if c.name == "start"]
        assert start.status == "ok" and start.reason.startswith("start timestamped"), start


def test_audit_sums_up_the_starts(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """`packcam audit` holds every clip's start statement to its tokens by the same rule: an
    honest store's are all timestamped; a store whose start tokens are gone (a TSA that never
    answered for them) says how many starts are the station's word, without failing."""
    report = audit(store.cfg, anchors=store.anchors())
    assert report.verdict == AUTHENTIC, report.lines()
    (line,) = [c for c in report.checks if c.name == "log.start"]
    assert line.status == "ok" and "all 3 clips" in line.reason, line
    st = store.copy(tmp_path / "data")
    plog = ProofLog.in_data_dir(st.data)
    try:
        starts = [startstamp.digest(json.loads(e.manifest)["start_statement"])
                  for e in plog.entries()]  # fmt: skip
        plog.db.conn.executemany(
            "DELETE FROM proof_timestamps WHERE subject_sha256 = ?", [(d,) for d in starts]
        )
    finally:
        plog.close()
    report = audit(st.cfg, anchors=st.anchors())
    assert report.verdict == AUTHENTIC, report.lines()
    (line,) = [c for c in report.checks if c.name == "log.start"]
    assert (line.status, line.code) == ("warn", "start-unanchored")
    assert "3 of 3 clips" in line.reason, line


def test_the_assembled_station_signs_a_start_statement_for_each_clip(
    tmp_path: Path,
    tsa_ec: TsaServer,  # noqa: F811
) -> None:
    """The station as the service builds it (``assemble``) hands the proof signer's
    ``start_statement`` to its recorder: each clip's signed manifest carries its statement and
    the TSA's token over it, with no wiring found by the recorder itself."""
    from station.capture.synthetic import Scenario, SyntheticCamera
    from station.service import assemble

    cfg = _station_cfg(tmp_path / "data", tsa_ec)
    cfg = cfg.replace("camera", width=160, height=96, fps=10.0).replace(
        "scanner", camera_decode=False
    )
    scenario = Scenario.from_dict({"seed": 3, "event": [
        {"at": 0.5, "kind": "key", "text": "PO-START"},
        {"at": 2.5, "kind": "key", "text": "SEAL"},
        {"at": 3.0, "kind": "end"},
    ]})  # fmt: skip
    asm = assemble(cfg, camera=SyntheticCamera(160, 96, 10.0, scenario, realtime=False),
                   live_view=False)  # fmt: skip
    try:
        asm.station.run(threading.Event())
        asm.recorder.wait_idle()
        (clip,) = asm.ledger.clips()
    finally:
        asm.close()
    body = json.loads((cfg.station.data_dir / clip.manifest_path).read_text())
    st = body["start_statement"]
    assert (st["order_id"], st["station"]) == ("PO-START", cfg.station.name)
    plog = ProofLog.in_data_dir(cfg.station.data_dir)
    try:
        assert _granted(plog, start_statement_digest(body))
    finally:
        plog.close()
