"""Retention: the pure decision (hypothesis), the deleter and guard on real files, holds, audit."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from helpers_crash_child import assert_every_step, crash_at_every_step, retention_config
from hypothesis import example, given, settings
from hypothesis import strategies as st
from recorder_support import encoded_recorder
from sync_support import statements

from station import config as config_mod
from station.errors import ConfigError, LedgerError
from station.fleet.objstore import ArchiveError
from station.floor.alarms import AlarmBoard
from station.proof.exports import ExportDirs, ExportWorker
from station.proof.finalizer import build_finalizers, deletion_signer_of
from station.proof.keys import StationKey, verify_signature
from station.proof.paths import ProofPaths
from station.proof.verify import audit
from station.recording.writer import to_i420
from station.store.caches import FRAMES_DIR, FrameFiles, frame_name
from station.store.ledger import Ledger
from station.store.recovery import recover_data_dir
from station.store.retention import (
    HELD,
    UNARCHIVED,
    UNFINISHED,
    YOUNG,
    Candidate,
    DiskSpace,
    Plan,
    Policy,
    RetentionManager,
    plan,
    remove_clip_files,
    why_kept,
)

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
W, H, FPS = 160, 96, 10.0

# ---- the pure decision -----------------------------------------------------------------------


def cand(i: int, days_old: float, size: int = 100, **kw) -> Candidate:
    return Candidate(i, NOW - timedelta(days=days_old), size, **kw)


def test_floor_is_the_larger_of_absolute_and_percent() -> None:
    assert Policy(free_floor_bytes=500, free_floor_percent=10).floor(10_000) == 1000
    assert Policy(free_floor_bytes=5000, free_floor_percent=10).floor(10_000) == 5000
    assert Policy().floor(10**12) == 0


@pytest.mark.parametrize(
    ("percent", "total", "want"),
    [(0.07, 10_000, 7), (0.22, 78_125_000, 171_875), (0.07, 10_001, 8), (5.0, 1000, 50)],
)
def test_the_percent_floor_is_the_percent_as_written(percent: float, total: int, want: int) -> None:
    """0.07 % of 10,000 bytes is 7 (float arithmetic said 8); 0.22 % of 78,125,000 is 171,875
    (the float 0.22's exact binary value says 171,876): rounded up only when not whole."""
    assert Policy(0.0, 0, percent).floor(total) == want


def test_oldest_eligible_first_and_stop_at_the_floor() -> None:
    # Ids in recording order (as the index numbers them), the list in no particular order.
    clips = [
        cand(2, 200, legal_hold=True),
        cand(3, 150),
        cand(1, 300),
        cand(6, 10),
        cand(5, 120),
        cand(4, 130, finished=False),
    ]
    p = plan(
        clips,
        now=NOW,
        free_bytes=50,
        total_bytes=10_000,
        policy=Policy(min_age_days=90, free_floor_bytes=220),
    )
    assert [c.id for c in p.deletions] == [1, 3]
    assert p.floor_reached and p.free_after == 250 and p.below_floor
    assert p.kept == {HELD: 1, YOUNG: 1, UNFINISHED: 1}
    nothing = plan(
        clips, now=NOW, free_bytes=300, total_bytes=10_000, policy=Policy(free_floor_bytes=220)
    )
    assert nothing.deletions == () and nothing.floor_reached and not nothing.below_floor
    stuck = plan(
        clips,
        now=NOW,
        free_bytes=0,
        total_bytes=10_000,
        policy=Policy(min_age_days=90, free_floor_bytes=10_000),
    )
    assert [c.id for c in stuck.deletions] == [1, 3, 5] and not stuck.floor_reached


def test_a_clock_set_back_does_not_make_newer_clips_go_first() -> None:
    # Ids are recording order. Clips 1-3 were recorded with the clock right; then an RTC reset
    # set it back 200 days for clips 4 and 5 (really recorded after clip 3), and NTP fixed it.
    clips = [cand(1, 150), cand(2, 120), cand(3, 100), cand(4, 300), cand(5, 290)]
    p = plan(
        clips,
        now=NOW,
        free_bytes=0,
        total_bytes=10_000,
        policy=Policy(min_age_days=90, free_floor_bytes=200),
    )
    assert [c.id for c in p.deletions] == [1, 2]  # not 4 and 5, the newest
    # Clips 4 and 5 are at most as old as clip 3 (100 days): under a 110-day minimum they stay.
    young = plan(
        clips,
        now=NOW,
        free_bytes=0,
        total_bytes=10_000,
        policy=Policy(min_age_days=110, free_floor_bytes=10_000),
    )
    assert [c.id for c in young.deletions] == [1, 2] and young.kept == {YOUNG: 3}
    # A clip dated in the future (the clock was fast) does not keep the clips after it young.
    fast = [cand(1, 150), cand(2, -30), cand(3, 120)]
    p = plan(
        fast,
        now=NOW,
        free_bytes=0,
        total_bytes=10_000,
        policy=Policy(min_age_days=90, free_floor_bytes=10_000),
    )
    assert [c.id for c in p.deletions] == [1, 3] and p.kept == {YOUNG: 1}


def test_a_clip_dated_by_a_clock_that_started_wrong_is_no_older_than_the_next_clip() -> None:
    # Clip 1 was recorded with the clock right, 100 days ago. Eighty days later the station
    # lost power and booted with its clock at 1970 (a Pi has no RTC): clip 2 is dated 1970
    # but was really recorded 20 days ago, just before NTP set the clock and clip 3 was dated
    # right. Clip 2 is no older than clip 3, so the 90-day minimum keeps it; counting it from
    # clip 1 (the clip before it) made it 100 days old and deleted it.
    epoch = (NOW - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(days=1)
    clips = [cand(1, 100), cand(2, epoch), cand(3, 20)]
    pol = Policy(min_age_days=90, free_floor_bytes=10_000)

    def full(kept: list[Candidate], gone: list[tuple[int, datetime]] | None = None) -> Plan:
        return plan(kept, now=NOW, free_bytes=0, total_bytes=10_000, policy=pol, gone=gone or [])

    p = full(clips)
    assert [c.id for c in p.deletions] == [1] and p.kept == {YOUNG: 2}
    # Once clip 1 is deleted it is still the anchor of the clips recorded after it.
    p = full(clips[1:], gone=[(1, NOW - timedelta(days=100))])
    assert p.deletions == () and p.kept == {YOUNG: 2}
    # The newest clips dated wrong, none dated right after them yet: young, not a guess.
    p = full(clips[:2])
    assert [c.id for c in p.deletions] == [1] and p.kept == {YOUNG: 1}


def test_archive_required_and_clock_skew() -> None:
    pol = Policy(min_age_days=1, archive_required=True)
    assert why_kept(cand(1, 5), NOW, pol) == UNARCHIVED
    assert why_kept(cand(1, 5, archived=True), NOW, pol) is None
    assert why_kept(cand(1, -3, archived=True), NOW, pol) == YOUNG  # started "in the future"


clip_lists = st.lists(
    st.builds(
        Candidate,
        st.integers(0, 10**6),
        st.floats(-5, 400).map(lambda d: NOW - timedelta(days=d)),
        st.integers(0, 10**9),
        st.booleans(),
        st.booleans(),
        st.booleans(),
        st.sampled_from(["order", "return"]),
    ),
    max_size=40,
    unique_by=lambda c: c.id,
)
policies = st.builds(
    Policy,
    st.floats(0, 200),
    st.integers(0, 10**10),
    st.floats(0, 50),
    st.booleans(),
    st.none() | st.floats(0, 400),
)


def _days(policy: Policy, c: Candidate) -> float:
    """The documented minimum age: [retention] min_age_days_return for returns, when set."""
    if c.kind == "return" and policy.min_age_days_return is not None:
        return policy.min_age_days_return
    return policy.min_age_days


def _age_starts(clips: list[Candidate]) -> dict[int, datetime]:
    """'A clip's anchor is the latest start, not in the future, of the clips with a lower id.
    A clip dated no earlier than its anchor (or with none) counts from its own start; one
    dated earlier counts from the start of the first clip with a higher id dated no earlier
    than its anchor, and from now while there is none' (docs/reliability.md)."""
    starts = {}
    for c in clips:
        anchor = max(
            (o.started_at for o in clips if o.id < c.id and o.started_at <= NOW), default=None
        )
        if anchor is None or c.started_at >= anchor:
            starts[c.id] = c.started_at
            continue
        later = sorted(
            (o for o in clips if o.id > c.id and o.started_at >= anchor), key=lambda o: o.id
        )
        starts[c.id] = later[0].started_at if later else NOW
    return starts


def reference_plan(
    clips: list[Candidate], free: int, total: int, policy: Policy
) -> tuple[list[int], int, int, bool, dict[str, int]]:
    """The retention rule written again from docs/reliability.md and the example config,
    sharing no code with station/store/retention.py: (ids deleted in order, floor, free after,
    floor reached, kept clips per reason)."""
    # "floor = max(free_floor_mb, free_floor_percent x disk size)": at least that much free.
    # (the percent as written in the config: 0.22 is 22/100, not the binary float's value)
    percent = Fraction(repr(policy.free_floor_percent))
    floor = max(policy.free_floor_bytes, -(-total * percent // 100))
    # "a clip's age counts from the latest of its own start and the starts of the clips with a
    # lower id that are not in the future"
    age_start = _age_starts(clips)
    kept: dict[str, int] = {}
    may_go: list[Candidate] = []
    for c in clips:
        # "never ... on legal hold, younger than min_age_days (a clip dated in the future counts
        # as young), not finished, or not yet archived when archive_required"; a clip is
        # counted under the first of: not finished, held, young, unarchived.
        # (times are kept to the microsecond, datetime's resolution: so is the minimum age)
        age_us = (NOW - age_start[c.id]) // timedelta(microseconds=1)
        young = age_us < round(_days(policy, c) * 86_400_000_000)
        rules = [
            (not c.finished, UNFINISHED),
            (c.legal_hold, HELD),
            (young, YOUNG),
            (policy.archive_required and not c.archived, UNARCHIVED),
        ]
        reasons = [why for applies, why in rules if applies]
        if reasons:
            kept[reasons[0]] = kept.get(reasons[0], 0) + 1
        else:
            may_go.append(c)
    # "the oldest clips (by age start, then id) that may go are deleted, and it stops as soon
    # as the floor would be reached"; "while free space is at or above the floor nothing is
    # deleted".
    deleted: list[int] = []
    now_free = free
    for c in sorted(may_go, key=lambda c: (age_start[c.id], c.id)):
        if now_free >= floor:
            break
        deleted.append(c.id)
        now_free += c.size
    return deleted, int(floor), now_free, now_free >= floor, kept


@settings(max_examples=400, deadline=None)
@given(clip_lists, policies, st.integers(0, 10**10), st.integers(0, 10**10))
@example(clips=[], policy=Policy(0.0, 0, 0.22, False, None), free=0, extra=78_125_000)  # CI found
def test_plan_matches_a_reference_written_from_the_docs(clips, policy, free, extra) -> None:
    total = free + extra
    p = plan(clips, now=NOW, free_bytes=free, total_bytes=total, policy=policy)
    ids, floor, free_after, reached, kept = reference_plan(clips, free, total, policy)
    assert [c.id for c in p.deletions] == ids
    assert (p.floor_bytes, p.free_bytes, p.free_after, p.floor_reached) == (
        floor, free, free_after, reached,
    )  # fmt: skip
    assert dict(p.kept) == kept


@settings(max_examples=400, deadline=None)
@given(clip_lists, policies, st.integers(0, 10**10), st.integers(0, 10**10))
def test_plan_properties(clips, policy, free, extra) -> None:
    """What must hold whatever the rules' details: safety, recording order, minimal deletions."""
    total = free + extra
    p = plan(clips, now=NOW, free_bytes=free, total_bytes=total, policy=policy)
    floor = p.floor_bytes
    assert floor >= policy.free_floor_bytes and floor * 100 >= total * policy.free_floor_percent
    k = len(p.deletions)
    starts = _age_starts(clips)
    for c in p.deletions:  # never a held, young, unfinished or (when required) unarchived clip
        assert not c.legal_hold and c.finished
        assert NOW - starts[c.id] >= timedelta(days=_days(policy, c))
        assert NOW - c.started_at >= timedelta(days=_days(policy, c))  # by its own start too
        assert c.archived or not policy.archive_required
    ids = [c.id for c in p.deletions]
    assert ids == sorted(ids)  # recording order, whatever the clock said
    if k:  # nothing recorded before the last clip deleted stays unless a rule keeps it
        for c in clips:
            if c.id not in ids and c.id < ids[-1]:
                assert (
                    not c.finished
                    or c.legal_hold
                    or NOW - starts[c.id] < timedelta(days=_days(policy, c))
                    or (policy.archive_required and not c.archived)
                )
    freed = sum(c.size for c in p.deletions)
    assert p.free_after == free + freed
    assert p.floor_reached == (free + freed >= floor)
    if free >= floor:
        assert k == 0  # nothing is deleted while there is room
    if k:  # stops as soon as the floor is reached: one deletion fewer would not do
        assert free + freed - p.deletions[-1].size < floor
    assert sum(p.kept.values()) + (k if p.floor_reached else 0) <= len(clips)


# ---- ledger: holds and deletion marks ----------------------------------------------------------


def test_legal_hold_history_and_refused_deletion(ledger: Ledger) -> None:
    from test_ledger import make_clip

    cid = ledger.add_clip(make_clip("PO-H"))
    assert ledger.set_legal_hold("PO-H", True, "alice", "dispute 42")
    assert not ledger.set_legal_hold("PO-H", True, "bob")
    assert ledger.legal_hold("PO-H").held_by == "alice"  # type: ignore[union-attr]
    with pytest.raises(LedgerError, match="legal hold"):
        ledger.mark_deleted(
            cid, reason="x", record=b"{}", signature=None, key_fingerprint="", deleted_at=NOW
        )
    assert ledger.set_legal_hold("PO-H", False, "carol")
    assert [h["action"] for h in ledger.legal_hold_history("PO-H")] == ["hold", "release"]
    ledger.mark_deleted(
        cid, reason="x", record=b"{}", signature=None, key_fingerprint="", deleted_at=NOW
    )
    with pytest.raises(LedgerError, match="already deleted"):
        ledger.mark_deleted(
            cid, reason="x", record=b"{}", signature=None, key_fingerprint="", deleted_at=NOW
        )
    (row,) = ledger.stored_clips(include_deleted=True)
    assert row.deleted_utc and ledger.stored_clips() == []
    assert ledger.clip(cid) is not None  # the row and its hash stay


def test_retention_config_is_validated() -> None:
    cfg = config_mod.load(None)
    assert cfg.retention.min_age_days == 90 and cfg.retention.archive_required is True
    for bad in (
        {"min_age_days": -1},
        {"free_floor_percent": 100},
        {"check_every_s": 0},
        {"alarm_command": "'unclosed"},
        {"free_floor_mb": -5},
    ):
        with pytest.raises(ConfigError, match="retention"):
            config_mod.from_dict({"retention": bad})


# ---- the deleter and the guard on real files ---------------------------------------------------


class FakeDisk:
    """Capacity minus what is really under the data dir, minus ``eaten``."""

    def __init__(self, data: Path, capacity: int) -> None:
        self.data, self.capacity, self.eaten = data, capacity, 0

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.data.rglob("*.mp4"))

    def __call__(self) -> DiskSpace:
        return DiskSpace(max(0, self.capacity - self.used() - self.eaten), self.capacity)


def record_at(
    cfg: config_mod.Config, orders_days: list[tuple[str, float]], now: datetime | None = None
) -> list:
    """One small real clip per (order, age in days before ``now``), finalised and indexed."""
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    fins = build_finalizers(cfg)
    rec = encoded_recorder(cfg, ledger, W, H, FPS, finalizers=fins)
    rng = np.random.default_rng(0)
    t = 0.0
    try:
        for order, days in orders_days:
            wall0 = (now or datetime.now(UTC)).astimezone() - timedelta(days=days)
            for i in range(6):
                img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
                rec.push(to_i420(img), t, wall0 + timedelta(seconds=i / FPS))
                if i == 1:  # the ring holds the last clip's days
                    rec.start(order, t, pre_roll=False, wall=wall0 + timedelta(seconds=i / FPS))
                t += 1 / FPS
            rec.stop("sealed", t)
            t += 1
        rec.wait_idle()
    finally:
        rec.close()
        for f in fins:
            f.close()
        ledger.close()
    return [f.record for f in rec.finished]


@pytest.fixture
def stocked(cfg: config_mod.Config) -> tuple[config_mod.Config, list]:
    clips = record_at(
        cfg, [("PO-A", 200), ("PO-B", 150), ("PO-C", 120), ("PO-D", 100), ("PO-E", 10), ("PO-F", 5)]
    )
    return cfg, clips


class FakeBucket:
    """Retention's archive check: per object key, None (there, the bytes sent), why not (a
    string), or an exception to raise (the bucket cannot be asked); records every question."""

    def __init__(self, answers: dict[str, str | Exception] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[tuple[str, int, str]] = []

    def __call__(self, key: str, size: int, sha256: str, _path: Path) -> str | None:
        self.asked.append((key, size, sha256))
        answer = self.answers.get(key)
        if isinstance(answer, Exception):
            raise answer
        return answer


def manager(
    cfg, ledger, disk, *, floor_bytes: int, clock=None, bucket=None, caches=(), **kw
) -> RetentionManager:
    pct = floor_bytes / disk.capacity * 100
    cfg = cfg.replace("retention", min_age_days=90.0, free_floor_mb=0, free_floor_percent=pct, **kw)
    key = StationKey.load(ProofPaths.from_config(cfg).key)
    signer = key.sign_record
    return RetentionManager(
        cfg,
        ledger,
        probe=disk,
        signer=signer,
        alarms=AlarmBoard(ledger, cfg.retention.alarm_command),
        monotonic=clock,
        archive_check=bucket,
        caches=caches,
    )


def test_deletes_oldest_allowed_first_keeps_rows_and_signs_records(
    stocked: tuple[config_mod.Config, list],
) -> None:
    cfg, clips = stocked
    data = cfg.station.data_dir
    by_order = {c.order_id: c for c in clips}
    ledger = Ledger.in_data_dir(data)
    ledger.set_legal_hold("PO-B", True, "legal")
    size = max(c.size for c in clips)
    disk = FakeDisk(data, capacity=FakeDisk(data, 0).used() + 10 * size)
    floor = 10 * size + int(1.5 * size)  # two clips' worth short
    mgr = manager(cfg, ledger, disk, floor_bytes=floor)
    result = mgr.check()
    assert result.floor_reached and mgr.refusal() is None and mgr.deleted == 2
    gone = {c.order_id for c in ledger.stored_clips(include_deleted=True) if c.deleted_utc}
    assert gone == {"PO-A", "PO-C"}  # PO-B is on hold; PO-D was not needed; E, F are young
    for order in ("PO-A", "PO-C"):
        c = by_order[order]
        assert not (data / c.path).exists() and not (data / c.manifest_path).exists()
        assert ledger.clip_by_path(c.path).sha256 == c.sha256  # type: ignore[union-attr]
        rec = ledger.deletion_record(c.path)
        assert rec is not None
        pub = StationKey.load(ProofPaths.from_config(cfg).key).public
        assert verify_signature(pub, rec["record"], rec["signature"])
        body = json.loads(rec["record"])
        assert body["sha256"] == c.sha256 and body["type"] == "packcam-retention-deletion"
    for order in ("PO-B", "PO-D", "PO-E", "PO-F"):
        assert (data / by_order[order].path).exists()
    ledger.close()

    report = audit(cfg, check_timestamps=False)
    assert report.ok, report.lines()
    text = "\n".join(report.lines())
    assert "deleted by retention" in text and "2 more deleted by retention" in text


def test_nothing_deletable_refuses_new_clips_and_alarms_until_space_returns(
    stocked: tuple[config_mod.Config, list], tmp_path: Path
) -> None:
    cfg, clips = stocked
    data = cfg.station.data_dir
    hook_out = tmp_path / "hook.txt"
    hook = tmp_path / "hook.py"
    hook.write_text(f"import sys\nopen({str(hook_out)!r}, 'a').write(sys.argv[-1] + '\\n')\n")
    ledger = Ledger.in_data_dir(data, capture_writes=True)  # as the station opens it
    size = max(c.size for c in clips)
    disk = FakeDisk(data, capacity=FakeDisk(data, 0).used() + 1000 * size)
    disk.eaten = 995 * size  # 5 clips' worth free
    now = [0.0]
    mgr = manager(
        cfg,
        ledger,
        disk,
        floor_bytes=100 * size,
        clock=lambda: now[0],
        alarm_command=f"{sys.executable} {hook}",
    )
    result = mgr.check()
    assert not result.floor_reached and mgr.deleted == 4  # every old clip, still not enough
    refusal = mgr.refusal()
    assert refusal and refusal.startswith("disk full:") and "2 younger than" in refusal
    assert mgr.must_finish_clip()  # below half the floor
    (alarm,) = ledger.alarms()
    assert alarm.kind == "disk-full" and "not starting new clips" in alarm.message
    deadline = time.monotonic() + 10
    # The hook's file exists a moment before its line is in it.
    while not (hook_out.exists() and hook_out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hook_out.read_text().startswith("disk-full: ")

    disk.eaten = 0  # someone freed space
    assert mgr.refusal() is not None  # re-probed at most once a second
    now[0] = 5.0
    with statements(ledger) as ran:
        assert mgr.refusal() is None and not mgr.must_finish_clip()
        assert ledger.flush_capture_writes()
    assert ledger.alarms() == []
    # refusal() runs on the capture thread: its clear is committed by the writer thread
    # (tests/test_capture_writes.py); check()'s raise, on the retention thread, was not
    assert [(th, conn) for th, conn, sql in ran if sql.lstrip().startswith("UPDATE alarms")] == [
        ("index-writer", "writer")
    ]
    ledger.close()


class WholeDisk(FakeDisk):
    """Capacity minus every clip, key frame and bundle under the data dir."""

    def used(self) -> int:
        kinds = {".mp4", ".jpg", ".zip"}
        return sum(p.stat().st_size for p in self.data.rglob("*") if p.suffix in kinds)


def site_caches(cfg: config_mod.Config, ledger: Ledger, clips: list, size: int):
    """The site's caches as a busy site leaves them: two key frames of each of the two oldest
    clips, used in that order, and one evidence bundle, each ``size`` bytes; the caches as
    the station hands them to retention (frames first, then bundles) and their files."""
    data = cfg.station.data_dir
    frames = data / FRAMES_DIR
    frames.mkdir(parents=True)
    files = []
    for c in clips[:2]:
        for t in (1.0, 2.0):
            p = frames / frame_name(c.id, c.sha256, t, 640)
            p.write_bytes(b"\xff" * size)
            when = 1_800_000_000 + len(files)
            os.utime(p, (when, when))
            files.append(p)
    exports = ExportWorker(cfg)
    bundle = ExportDirs.in_data_dir(data).bundle("c" * 40)
    bundle.write_bytes(b"z" * size)
    files.append(bundle)
    caches = [FrameFiles(data, cfg.web.frame_cache_mb << 20, ledger), exports]
    return caches, files


def test_a_disk_nearly_full_empties_the_caches_and_deletes_no_clip(
    stocked: tuple[config_mod.Config, list],
) -> None:
    """Derived files (key frames, bundles: made again on demand) go before any evidence: the
    disk is two clips short of its floor and the caches hold five clips' worth."""
    cfg, clips = stocked
    data = cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    size = max(c.size for c in clips)
    caches, files = site_caches(cfg, ledger, clips, size)
    disk = WholeDisk(data, capacity=WholeDisk(data, 0).used() + 10 * size)
    mgr = manager(cfg, ledger, disk, floor_bytes=12 * size, caches=caches)
    result = mgr.check()
    assert mgr.deleted == 0 and result.floor_reached and mgr.refusal() is None
    assert disk().free >= 12 * size
    assert all((data / c.path).exists() for c in clips)
    assert not [c for c in ledger.stored_clips(include_deleted=True) if c.deleted_utc]
    # as much as the floor needed, least recently used key frames first; the bundle stays
    assert [p.exists() for p in files] == [False, False, True, True, True]
    ledger.close()


def test_caches_too_small_are_emptied_and_only_the_rest_is_taken_from_clips(
    stocked: tuple[config_mod.Config, list],
) -> None:
    """Six clips short, five clips' worth of caches: every cached file goes, then the fewest
    oldest clips for the rest (without the caches, all four old clips went: not enough)."""
    cfg, clips = stocked
    data = cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    size = max(c.size for c in clips)
    caches, files = site_caches(cfg, ledger, clips, size)
    disk = WholeDisk(data, capacity=WholeDisk(data, 0).used() + 10 * size)
    mgr = manager(cfg, ledger, disk, floor_bytes=16 * size, caches=caches)
    result = mgr.check()
    assert result.floor_reached and not any(p.exists() for p in files)
    gone = [c.order_id for c in ledger.stored_clips(include_deleted=True) if c.deleted_utc]
    assert 1 <= mgr.deleted <= 2 and gone == ["PO-A", "PO-B"][: mgr.deleted]
    ledger.close()


def test_the_plan_counts_the_caches_before_any_clip() -> None:
    clips = [cand(1, 200, 100), cand(2, 150, 100)]
    p = plan(clips, now=NOW, free_bytes=0, total_bytes=10_000, policy=Policy(90, 250),
             reclaimable=200)  # fmt: skip
    assert p.cache_bytes == 200 and [c.id for c in p.deletions] == [1] and p.floor_reached
    p = plan(clips, now=NOW, free_bytes=0, total_bytes=10_000, policy=Policy(90, 250),
             reclaimable=900)  # fmt: skip
    assert p.cache_bytes == 250 and p.deletions == () and p.free_after == 250


def test_a_clip_recorded_after_a_boot_with_the_clock_at_1970_is_not_deleted_as_old(
    cfg: config_mod.Config,
) -> None:
    """PO-I was recorded 20 days ago by a station that booted with its clock at 1970; PO-J
    after NTP set it. Retention deletes PO-K (100 days old) and nothing else, also on the
    checks after PO-K is gone."""
    epoch = (datetime.now(UTC) - datetime(1970, 1, 2, tzinfo=UTC)) / timedelta(days=1)
    clips = record_at(cfg, [("PO-K", 100), ("PO-I", epoch), ("PO-J", 20)])
    data = cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    size = max(c.size for c in clips)
    disk = FakeDisk(data, capacity=FakeDisk(data, 0).used() + 10 * size)
    mgr = manager(cfg, ledger, disk, floor_bytes=12 * size)  # every clip would not do
    for _ in range(2):
        assert mgr.check().kept == {YOUNG: 2}
    gone = {c.order_id for c in ledger.stored_clips(include_deleted=True) if c.deleted_utc}
    assert gone == {"PO-K"} and mgr.deleted == 1
    ledger.close()


def test_a_new_clip_never_takes_the_path_of_a_deleted_one(cfg: config_mod.Config) -> None:
    """A clip named like one retention deleted (same order, same wall time to the millisecond:
    a station that booted twice with its clock at the same wrong time) gets a path of its own:
    on the deleted clip's path it could not be indexed (paths are unique), and the next
    start's recovery, completing that deletion, removed it."""
    at = datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)
    (first,) = record_at(cfg, [("PO-R", 0)], now=at)
    data = cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    ledger.mark_deleted(
        first.id, reason="test", record=b"{}", signature=None, key_fingerprint="", deleted_at=NOW
    )
    remove_clip_files(data, first.path, first.manifest_path)
    (second,) = record_at(cfg, [("PO-R", 0)], now=at)
    assert second is not None and second.path != first.path
    assert ledger.clip_by_path(second.path) is not None
    ledger.close()
    recover_data_dir(cfg)
    assert (data / second.path).exists() and not (data / first.path).exists()


def test_a_hold_keeps_every_clip_of_its_order_and_unindexed_files_are_never_touched(
    cfg: config_mod.Config,
) -> None:
    """An order of two clips (packed, then repacked) on hold keeps both, however old; a clip
    still being recorded (tmp/) or moved into place but not indexed yet (the finisher, or
    recovery after a power cut, indexes it next) is no candidate: retention reads the index."""
    clips = record_at(cfg, [("PO-M", 200), ("PO-N", 150), ("PO-M", 120)])
    data = cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    ledger.set_legal_hold("PO-M", True, "lawyer")
    recording = data / "tmp" / "station-01_PO-X_20260101T000000_000.mp4"
    unindexed = data / "clips" / "2026" / "01" / "01" / "station-01_PO-Y_20260101T000000_000.mp4"
    for p in (recording, unindexed):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\0" * 1000)
    size = max(c.size for c in clips)
    disk = FakeDisk(data, capacity=FakeDisk(data, 0).used() + 10 * size)
    mgr = manager(cfg, ledger, disk, floor_bytes=12 * size)  # every clip would not do
    result = mgr.check()
    assert not result.floor_reached and result.kept == {HELD: 2}
    gone = {c.id for c in ledger.stored_clips(include_deleted=True) if c.deleted_utc}
    assert gone == {clips[1].id} and recording.exists() and unindexed.exists()
    assert all((data / c.path).exists() for c in (clips[0], clips[2]))
    ledger.close()


def test_a_hold_set_after_retention_chose_the_clip_wins(
    stocked: tuple[config_mod.Config, list],
) -> None:
    """The web sets a hold (its own connection) after the plan chose PO-A and before the
    deletion is recorded: PO-A stays whole, and PO-B goes instead."""
    cfg, clips = stocked
    data = cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    size = max(c.size for c in clips)
    disk = FakeDisk(data, capacity=FakeDisk(data, 0).used() + 10 * size)
    mgr = manager(cfg, ledger, disk, floor_bytes=10 * size + size // 2)  # one clip short
    sign = mgr.signer
    assert sign is not None

    def web_holds_then_sign(record: bytes) -> tuple[bytes, str]:
        if json.loads(record)["order_id"] == "PO-A":
            web = Ledger.in_data_dir(data)
            web.set_legal_hold("PO-A", True, "lawyer")
            web.close()
        return sign(record)

    mgr.signer = web_holds_then_sign
    mgr.check()
    by_order = {c.order_id: c for c in clips}
    gone = {c.order_id for c in ledger.stored_clips(include_deleted=True) if c.deleted_utc}
    assert gone == {"PO-B"} and (data / by_order["PO-A"].path).exists()
    assert ledger.deletion_record(by_order["PO-A"].path) is None
    ledger.close()
    assert audit(cfg, check_timestamps=False).ok


def test_with_archiving_on_only_archived_clips_go_unless_told_otherwise(cfg) -> None:
    """archive_required is on by default and applies when [archive] is enabled: a station that
    archives never deletes the only copy of a clip not yet in the bucket (unless its config
    says archive_required = false); without archiving there is nothing to wait for."""
    r = cfg.retention
    assert Policy.from_config(r, archiving=True).archive_required
    assert not Policy.from_config(r, archiving=False).archive_required
    off = cfg.replace("retention", archive_required=False).retention
    assert not Policy.from_config(off, archiving=True).archive_required


def test_archive_required_keeps_unarchived_clips(stocked: tuple[config_mod.Config, list]) -> None:
    cfg, clips = stocked
    data = cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    size = max(c.size for c in clips)
    disk = FakeDisk(data, capacity=FakeDisk(data, 0).used() + 10 * size)
    archiving = cfg.replace("archive", enabled=True, bucket="packcam-clips")
    bucket = FakeBucket()
    mgr = manager(
        archiving, ledger, disk, floor_bytes=11 * size, archive_required=True, bucket=bucket
    )
    assert mgr.check().deletions == () and mgr.deleted == 0 and mgr.refusal()
    old = next(c for c in clips if c.order_id == "PO-D")
    ledger.mark_archived(old.id, "k/PO-D.mp4", {})
    mgr.check()
    assert mgr.deleted == 1 and not (data / old.path).exists()
    assert bucket.asked == [("k/PO-D.mp4", old.size, old.sha256)]  # one HEAD, for the one going
    ledger.close()


def test_archiving_needs_a_way_to_ask_the_bucket(cfg: config_mod.Config) -> None:
    """With archive_required in force the manager only exists with an archive check: an
    archived mark alone never frees the only local copy."""
    archiving = cfg.replace("archive", enabled=True, bucket="packcam-clips")
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        with pytest.raises(ValueError, match="archive_check"):
            RetentionManager(archiving, ledger, probe=lambda: DiskSpace(0, 1 << 40))
        off = archiving.replace("retention", archive_required=False)
        RetentionManager(off, ledger, probe=lambda: DiskSpace(0, 1 << 40))  # nothing to ask
    finally:
        ledger.close()


def archived_two(stocked: tuple[config_mod.Config, list], answers: dict[str, str | Exception]):
    """PO-A and PO-B archived (as k/PO-A.mp4, k/PO-B.mp4), the disk two clips short of the
    floor, and a manager whose bucket gives ``answers``: (data dir, clips by order, ledger,
    manager, bucket)."""
    cfg, clips = stocked
    data = cfg.station.data_dir
    by_order = {c.order_id: c for c in clips}
    ledger = Ledger.in_data_dir(data)
    size = max(c.size for c in clips)
    disk = FakeDisk(data, capacity=FakeDisk(data, 0).used() + 10 * size)
    archiving = cfg.replace("archive", enabled=True, bucket="packcam-clips")
    for order in ("PO-A", "PO-B"):
        ledger.mark_archived(by_order[order].id, f"k/{order}.mp4", {"clip": f"k/{order}.mp4"})
    bucket = FakeBucket(answers)
    mgr = manager(archiving, ledger, disk, floor_bytes=12 * size, bucket=bucket)
    return data, by_order, ledger, mgr, bucket


@pytest.mark.parametrize("why", ["not in the bucket", "stored size 7, indexed 1234"])
def test_an_archived_clip_whose_bucket_copy_is_gone_or_other_is_kept_and_sent_again(
    stocked: tuple[config_mod.Config, list], why: str
) -> None:
    """The mark said archived, the bucket says otherwise: the only copy stays, the mark is
    cleared (the archiver's queue is every unmarked clip), an alarm says so; the honest clip
    next to it goes."""
    data, by_order, ledger, mgr, bucket = archived_two(stocked, {"k/PO-A.mp4": why})
    result = mgr.check()
    a, b = by_order["PO-A"], by_order["PO-B"]
    assert (data / a.path).is_file() and (data / a.manifest_path).is_file()
    assert not (data / b.path).exists() and mgr.deleted == 1
    state = ledger.archive_state(a.id)
    assert state is not None and state["archived_utc"] is None and state["archive_key"] is None
    assert next(c.id for c in ledger.unarchived_clips()) == a.id  # due for the archiver again
    assert result.kept[UNARCHIVED] >= 1 and mgr.refusal()  # and the floor guard says so
    (alarm,) = [x for x in ledger.alarms() if x.kind == "archive-missing"]
    assert alarm.subject == a.path and why in alarm.message
    assert [k for k, _, _ in bucket.asked] == ["k/PO-A.mp4", "k/PO-B.mp4"]

    # archived again (by the archiver): the next check asks again, and it goes
    ledger.mark_archived(a.id, "k/PO-A.mp4", {})
    bucket.answers.clear()
    mgr.check()
    assert not (data / a.path).exists() and mgr.deleted == 2
    assert not [x for x in ledger.alarms() if x.kind == "archive-missing"]  # cleared
    ledger.close()


def test_an_unreachable_bucket_deletes_nothing_archived_and_keeps_the_marks(
    stocked: tuple[config_mod.Config, list],
) -> None:
    """The bucket cannot be asked: no archived clip goes this round, none is unmarked, the
    bucket is not asked again for the next clip of the same round; the floor guard refuses."""
    down = ArchiveError("k/PO-A.mp4: the store did not answer (connection refused)")
    data, by_order, ledger, mgr, bucket = archived_two(
        stocked, {"k/PO-A.mp4": down, "k/PO-B.mp4": down}
    )
    mgr.check()
    assert mgr.deleted == 0 and len(bucket.asked) == 1
    for order in ("PO-A", "PO-B"):
        c = by_order[order]
        assert (data / c.path).is_file()
        assert ledger.archive_state(c.id)["archived_utc"] is not None  # type: ignore[index]
    assert [x.kind for x in ledger.alarms()] == ["disk-full"] and mgr.refusal()

    bucket.answers.clear()  # back: the next check deletes as the policy allows
    mgr.check()
    assert mgr.deleted == 2
    ledger.close()


def test_audit_tells_retention_from_tampering(stocked: tuple[config_mod.Config, list]) -> None:
    cfg, clips = stocked
    data = cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    size = max(c.size for c in clips)
    disk = FakeDisk(data, capacity=FakeDisk(data, 0).used() + 10 * size)
    manager(cfg, ledger, disk, floor_bytes=10 * size + size // 2).check()  # deletes PO-A
    a = next(c for c in clips if c.order_id == "PO-A")
    assert ledger.clip_by_path(a.path) is not None and not (data / a.path).exists()
    assert audit(cfg, check_timestamps=False).ok

    # someone deletes a clip and marks its row "deleted" by hand: no signed record
    b = next(c for c in clips if c.order_id == "PO-B")
    (data / b.path).unlink()
    ledger.conn.execute(
        "UPDATE clips SET deleted_utc = '2026-11-30T00:00:00.000000Z' WHERE id = ?", (b.id,)
    )
    report = audit(cfg, check_timestamps=False)
    assert "clip-missing" in report.codes()
    assert any("no signed record" in c.reason for c in report.failures)

    # a properly signed deletion of a clip whose order was on hold at that moment
    ledger.conn.execute(
        "INSERT INTO legal_hold_log(order_id, action, by_whom, at_utc) VALUES (?, 'hold', 'x',"
        " '2000-01-01T00:00:00.000000Z')",
        (a.order_id,),
    )
    report = audit(cfg, check_timestamps=False)
    assert any("on legal hold" in c.reason for c in report.failures)
    ledger.close()


def test_retention_thread_checks_after_a_poke(stocked: tuple[config_mod.Config, list]) -> None:
    cfg, clips = stocked
    data = cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    size = max(c.size for c in clips)
    disk = FakeDisk(data, capacity=FakeDisk(data, 0).used() + 100 * size)
    mgr = manager(cfg, ledger, disk, floor_bytes=10 * size, check_every_s=3600.0)
    mgr.start()
    try:
        assert mgr.deleted == 0
        disk.eaten = 95 * size  # a big copy lands on the disk
        mgr.poke()
        deadline = time.monotonic() + 10
        while mgr.deleted == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert mgr.deleted >= 1
    finally:
        mgr.stop()
        ledger.close()


# ---- CLI -----------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "station", *args], capture_output=True, text=True, cwd=REPO
    )


def test_hold_and_retention_commands(stocked: tuple[config_mod.Config, list]) -> None:
    cfg, _ = stocked
    data = str(cfg.station.data_dir)
    out = run_cli("hold", "PO-A", "--data", data, "--by", "lawyer", "--note", "case 7")
    assert out.returncode == 0 and "is now on legal hold (1 clip indexed)" in out.stdout
    assert "was already" in run_cli("hold", "PO-A", "--data", data).stdout
    assert "no clips of this order yet" in run_cli("hold", "PO-ZZ", "--data", data).stdout
    out = run_cli("retention", "--data", data)
    assert out.returncode == 0, out.stderr
    assert "nothing to delete now" in out.stdout and "legal hold: PO-A (by lawyer" in out.stdout
    out = run_cli("hold", "PO-A", "--release", "--data", data)
    assert "is now released" in out.stdout
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    history = ledger.legal_hold_history("PO-A")
    assert [h["action"] for h in history] == ["hold", "release"]
    assert history[0]["by_whom"] == "lawyer" and history[0]["note"] == "case 7"
    assert history[1]["by_whom"].startswith("cli:")
    assert ledger.legal_hold("PO-A") is None
    ledger.close()
    assert run_cli("hold", "PO-A", "--data", str(cfg.station.data_dir / "nope")).returncode == 3


def test_a_hold_on_an_order_retention_already_thinned_says_which_clips_are_gone(
    stocked: tuple[config_mod.Config, list],
) -> None:
    """A hold keeps what is still there; the clips retention deleted before it are not brought
    back, and `packcam hold` says so instead of counting them as held."""
    cfg, clips = stocked
    (old,) = [c for c in clips if c.order_id == "PO-A"]
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    ledger.mark_deleted(
        old.id, reason="t", record=b"{}", signature=None, key_fingerprint="", deleted_at=NOW
    )
    ledger.close()
    remove_clip_files(cfg.station.data_dir, old.path, old.manifest_path)
    out = run_cli("hold", "PO-A", "--data", str(cfg.station.data_dir))
    assert out.returncode == 0 and "is now on legal hold (1 clip indexed" in out.stdout
    assert "1 of them already deleted by retention" in out.stdout
    assert old.path in out.stdout


def test_returns_keep_their_own_minimum_age(cfg) -> None:
    pol = Policy.from_config(
        cfg.replace("retention", min_age_days=30, min_age_days_return=180).retention,
        archiving=False,
    )
    ret = Candidate(1, NOW - timedelta(days=100), 10, kind="return")
    order = Candidate(2, NOW - timedelta(days=100), 10)
    assert why_kept(ret, NOW, pol) == YOUNG and why_kept(order, NOW, pol) is None
    same = Policy.from_config(cfg.replace("retention", min_age_days=30).retention, archiving=False)
    assert why_kept(ret, NOW, same) is None  # negative (the default): as min_age_days


# ---- a crash at every step of a deletion -----------------------------------------------------


def test_a_crash_at_any_step_of_a_deletion_leaves_the_clip_whole_or_its_deletion_recorded(
    cfg: config_mod.Config,
) -> None:
    """Retention killed before each index write, unlink and fsync of deleting two clips: the
    next start completes each recorded deletion (and says so) and leaves every other clip
    whole; the clip on hold and the one not archived are never touched."""
    clips = record_at(cfg, [("PO-A", 9), ("PO-B", 8), ("PO-C", 7), ("PO-D", 6)])
    by_order = {c.order_id: c for c in clips}
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    ledger.set_legal_hold("PO-B", True, "legal")
    for order in ("PO-A", "PO-B", "PO-D"):  # PO-C is not archived yet
        ledger.mark_archived(by_order[order].id, f"k/{order}.mp4", {})
    ledger.close()
    pub = StationKey.load(ProofPaths.from_config(cfg).key).public
    work = cfg.station.data_dir.parent / "crash"
    (work / "template").mkdir(parents=True)
    cfg.station.data_dir.rename(work / "template" / "data")
    steps = crash_at_every_step("retain", work)
    assert len(steps) >= 8 and sum(s.startswith("index:") for s in steps) == 2
    # the bucket is asked before each deletion: a crash between the HEAD and the deletion
    assert [s for s in steps if s.startswith("head ")] == ["head k/PO-A.mp4", "head k/PO-D.mp4"]

    def check(n: int, where: str) -> None:
        again = retention_config(cfg.with_data_dir(work / str(n) / "data"))
        data = again.station.data_dir
        led = Ledger.in_data_dir(data)
        left = {
            c.path
            for c in led.stored_clips(include_deleted=True)
            if c.deleted_utc and ((data / c.path).exists() or (data / c.manifest_path).exists())
        }
        led.close()
        report = recover_data_dir(again)
        assert report.ok, report.lines()
        assert sorted(report.deletions_completed) == sorted(left), where
        led = Ledger.in_data_dir(data)
        try:
            for c in led.stored_clips(include_deleted=True):
                if c.deleted_utc is not None:
                    assert c.order_id in ("PO-A", "PO-D"), where
                    assert not (data / c.path).exists(), where
                    assert not (data / c.manifest_path).exists(), where
                    rec = led.deletion_of_clip(c.id)
                    assert rec is not None, where
                    assert verify_signature(pub, rec["record"], rec["signature"]), where
                else:
                    blob = (data / c.path).read_bytes()
                    assert hashlib.sha256(blob).hexdigest() == c.sha256, where
                    assert (data / c.manifest_path).is_file(), where
            fins = build_finalizers(again)
            mgr = RetentionManager(
                again,
                led,
                probe=lambda: DiskSpace(0, 1 << 40),
                signer=deletion_signer_of(fins),
                archive_check=FakeBucket(),
            )
            mgr.check()  # the next check deletes what the crash kept from going
            for f in fins:
                f.close()
            gone = {c.order_id for c in led.stored_clips(include_deleted=True) if c.deleted_utc}
            assert gone == {"PO-A", "PO-D"}, where
        finally:
            led.close()
        assert audit(again, check_timestamps=False).ok, where

    assert_every_step(steps, check)


def test_deletion_records_are_signed_by_the_proof_finalizers_key_only(cfg) -> None:
    # Found by type, not by whatever finalizer has a ``key`` with a ``sign``: another
    # finalizer's key must never sign a deletion record in the station's name.
    stranger = StationKey.generate()
    other = type("Other", (), {"key": stranger})()
    assert deletion_signer_of([other]) is None and deletion_signer_of(()) is None
    fins = build_finalizers(cfg)
    try:
        sign = deletion_signer_of([other, *fins])
        assert sign is not None
        signature, fingerprint = sign(b"record")
        own = StationKey.load(ProofPaths.from_config(cfg).key)
        assert fingerprint == own.fingerprint != stranger.fingerprint
        assert verify_signature(own.public, b"record", signature)
    finally:
        for f in fins:
            f.close()
