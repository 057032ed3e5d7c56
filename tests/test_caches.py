"""The site's caches in the data dir: key frames and bundles kept within their bounds, swept."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest_web import WebEnv, login, make_app
from hypothesis import given, settings
from hypothesis import strategies as st

from station.proof.exports import GRACE_S, TTL_S, ExportDirs, ExportWorker
from station.runtime.background import CacheSweep
from station.store.caches import CachedFile, FrameFiles, frame_clip, frame_name, sweep_choice
from station.store.ledger import Ledger
from station.store.retention import REASON_FLOOR, remove_clip_files

T0 = 1_800_000_000.0


def f(name: str, size: int, used: float, stale: bool = False) -> CachedFile:
    return CachedFile(name, size, used, stale)


# ---- the pure choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cap", "need", "want"),
    [
        (1000, 0, ["gone"]),  # within the cap: only the deleted clip's file
        (150, 0, ["gone", "old", "mid"]),  # then least recently used first, down to the cap
        (1000, 150, ["gone", "old"]),  # retention: ``need`` freed, stale counted first
        (0, 0, ["gone", "old", "mid", "new"]),
    ],
)
def test_the_sweep_takes_files_of_deleted_clips_first_then_the_least_recently_used(
    cap: int, need: int, want: list[str]
) -> None:
    files = [
        f("new", 100, T0 + 30),
        f("gone", 100, T0 + 40, stale=True),  # used last, but its clip is deleted
        f("old", 100, T0 + 10),
        f("mid", 100, T0 + 20),
    ]
    assert [c.name for c in sweep_choice(files, cap=cap, need=need)] == want


def test_frame_names_say_the_clip_they_were_cut_from() -> None:
    name = frame_name(42, "ab" * 32, 1.5, 640)
    assert name == "42-abababababababab-1500-640.jpg"
    assert frame_clip(name) == (42, "ab" * 8)
    assert frame_clip(name.replace(".jpg", ".bad")) == (42, "ab" * 8)
    assert frame_clip("../42-ab-1-2.jpg") is None and frame_clip("notes.txt") is None


# ---- the frame cache on real clips, a real index --------------------------------------------


def _view_frames(web_env: WebEnv, keys: list[str]) -> dict[str, list[Path]]:
    """Each clip's thumbnail and key frames asked for, as the order pages do: the files cut."""
    viewer = login(make_app(web_env).test_client(), "viewer")
    frames = web_env.data_dir / "cache" / "frames"
    out = {}
    for key in keys:
        clip = web_env.clips[key]
        for url in ("thumb.jpg", "keyframes/0.jpg", "keyframes/1.jpg"):
            assert viewer.get(f"/clips/{clip.id}/{url}").status_code == 200
        out[key] = sorted(frames.glob(f"{clip.id}-*.jpg"))
        assert len(out[key]) == 3
    return out


def _used_at(paths: list[Path], when: float) -> None:
    for p in paths:
        os.utime(p, (when, when))


def test_the_frame_cache_sweep_removes_deleted_clips_frames_first_then_least_recently_used(
    web_env: WebEnv,
) -> None:
    cut = _view_frames(web_env, ["plain", "unicode", "plain2"])
    _used_at(cut["plain"], T0 + 100)  # viewed last
    _used_at(cut["unicode"], T0)  # least recently used
    _used_at(cut["plain2"], T0 + 200)  # viewed very last, but retention deletes the clip
    ledger = Ledger.in_data_dir(web_env.data_dir)
    try:
        gone = web_env.clips["plain2"]
        ledger.mark_deleted(
            gone.id, reason=REASON_FLOOR, record=b"{}", signature=None, key_fingerprint="",
            deleted_at=datetime(2027, 3, 1, tzinfo=UTC),
        )  # fmt: skip
        remove_clip_files(web_env.data_dir, gone.path, gone.manifest_path)
        stray = web_env.data_dir / "cache" / "frames" / "999-00-1000-640.jpg"  # no such clip
        stray.write_bytes(b"x" * 100)
        one_clip = sum(p.stat().st_blocks * 512 for p in cut["plain"])
        cache = FrameFiles(web_env.data_dir, one_clip, ledger, clock=lambda: T0 + 300)
        over = cache.usage()
        freed = cache.sweep()
    finally:
        ledger.close()
    left = sorted((web_env.data_dir / "cache" / "frames").iterdir())
    assert left == cut["plain"]  # the deleted and the unknown clip's, then the LRU one's went
    assert freed == over - one_clip


def test_a_thousand_clips_viewed_leave_the_cache_within_its_bound(web_env: WebEnv) -> None:
    """The measure of the task: every clip's thumbnail and three key frames viewed (about
    90 KB a clip at 720p); the sweep keeps the most recently viewed within the cap."""
    cut = _view_frames(web_env, ["plain"])["plain"]
    jpegs = [p.read_bytes() for p in cut]
    ledger = Ledger.in_data_dir(web_env.data_dir)
    frames = web_env.data_dir / "cache" / "frames"
    try:
        ids = []
        base = web_env.clips["plain"]
        for i in range(1000):  # indexed clips (rows only) whose frames were all viewed
            row = replace(base, id=None, order_id=f"PO-V{i}", path=f"clips/v/{i}.mp4")
            clip = replace(row, id=ledger.add_clip(row))
            ids.append(clip.id)
            for k, data in enumerate(jpegs):
                p = frames / frame_name(clip.id or 0, clip.sha256, k, 640)
                p.write_bytes(data)
                os.utime(p, (T0 + i, T0 + i))  # clip i viewed at T0 + i
        per_clip = sum(p.stat().st_blocks * 512 for p in frames.glob(f"{ids[0]}-*"))
        cache = FrameFiles(web_env.data_dir, 100 * per_clip, ledger, clock=lambda: T0 + 2000)
        before = cache.usage()
        cache.sweep()
        after = cache.usage()
    finally:
        ledger.close()
    assert before >= 1000 * per_clip and after <= 100 * per_clip
    kept = {frame_clip(p.name)[0] for p in frames.iterdir()}  # type: ignore[index]
    assert kept == set(ids[-100:])  # the hundred viewed last


def test_a_frame_being_written_is_left_alone_and_one_a_crash_left_goes(web_env: WebEnv) -> None:
    frames = web_env.data_dir / "cache" / "frames"
    frames.mkdir(parents=True)
    writing = frames / ".1-ab-0-640.jpg.7.8.tmp"
    left = frames / ".1-ab-0-640.jpg.5.6.tmp"
    for p in (writing, left):
        p.write_bytes(b"x" * 5000)
    os.utime(writing, (T0, T0))
    os.utime(left, (T0 - 7200, T0 - 7200))
    ledger = Ledger.in_data_dir(web_env.data_dir)
    try:
        FrameFiles(web_env.data_dir, 1 << 20, ledger, clock=lambda: T0 + 1).sweep()
    finally:
        ledger.close()
    assert writing.exists() and not left.exists()


# ---- the background sweep -------------------------------------------------------------------


class Broken:
    def sweep(self) -> int:
        raise PermissionError("not ours")


def test_the_cache_sweep_runs_at_start_and_a_failing_cache_does_not_stop_the_others(
    web_env: WebEnv,
) -> None:
    """At start the sweep runs once on the caller's thread (what a stopped station left over
    the bound goes before the first clip), a broken cache is logged, the others are swept."""
    cut = _view_frames(web_env, ["plain", "unicode"])
    _used_at(cut["plain"], T0)
    _used_at(cut["unicode"], T0 + 10)
    ledger = Ledger.in_data_dir(web_env.data_dir)
    one_clip = sum(p.stat().st_blocks * 512 for p in cut["unicode"])
    sweep = CacheSweep([Broken(), FrameFiles(web_env.data_dir, one_clip, ledger)])
    try:
        sweep.start()
        assert all(not p.exists() for p in cut["plain"])
        assert all(p.exists() for p in cut["unicode"])
        assert any(t.name == "cache-sweep" for t in threading.enumerate())
    finally:
        sweep.stop(10)
        ledger.close()
    with pytest.raises(PermissionError):
        CacheSweep([Broken()]).sweep()


def test_expired_bundles_go_with_the_sweep_not_only_before_the_next_build(
    cfg, tmp_path: Path
) -> None:
    """A bundle built once stayed until another order was exported (the worker swept only
    before a build): now the background sweep removes it once expired."""
    now = [T0]
    worker = ExportWorker(cfg, clock=lambda: now[0])
    dirs = ExportDirs.in_data_dir(cfg.station.data_dir)
    old, fresh = dirs.bundle("a" * 40), dirs.bundle("b" * 40)
    for p, when in ((old, T0 - TTL_S - GRACE_S - 1), (fresh, T0 - 1)):
        p.write_bytes(b"z" * 20000)
        os.utime(p, (when, when))
    freed = CacheSweep([worker]).sweep()
    assert not old.exists() and fresh.exists() and freed >= 20000
    assert worker.usage() >= 20000
    assert worker.release(1) >= 20000 and not fresh.exists()  # retention: the rest too


# ---- the station wires it -------------------------------------------------------------------


def test_a_station_sweeps_the_caches_at_start_and_hands_them_to_retention(cfg) -> None:
    """What a stopped station left over the bounds goes at its start (the frame of a clip
    not in the index, a bundle long expired); retention frees key frames, then bundles."""
    from station.capture.synthetic import Scenario, SyntheticCamera
    from station.service import run_station

    cfg = cfg.replace("camera", width=160, height=96, fps=10.0).replace("proof", enabled=False)
    data = cfg.station.data_dir
    frames = data / "cache" / "frames"
    frames.mkdir(parents=True)
    stale = frames / frame_name(999, "ab" * 32, 1.0, 640)
    stale.write_bytes(b"x" * 1000)
    exports = ExportDirs.in_data_dir(data).exports
    exports.mkdir(parents=True)
    old = exports / f"{'d' * 40}.zip"
    old.write_bytes(b"z" * 1000)
    day_ago = time.time() - 86400  # the worker's own clock
    os.utime(old, (day_ago, day_ago))
    scene = Scenario.from_dict({"seed": 1, "event": [{"at": 0.5, "kind": "end"}]})
    cam = SyntheticCamera(160, 96, 10.0, scene, realtime=False)
    asm = run_station(cfg, threading.Event(), camera=cam, live_view=False)
    assert not stale.exists() and not old.exists()
    assert asm.retention is not None and asm.sweep is not None
    assert [type(c).__name__ for c in asm.retention.caches] == ["FrameFiles", "ExportWorker"]
    assert not any(t.name == "cache-sweep" and t.is_alive() for t in threading.enumerate())


files_st = st.lists(
    st.tuples(st.integers(0, 500), st.integers(0, 50), st.booleans()), max_size=12
).map(lambda xs: [f(f"f{i}", size, T0 + used, stale) for i, (size, used, stale) in enumerate(xs)])


@settings(max_examples=200, deadline=None)
@given(files=files_st, cap=st.integers(0, 3000), need=st.integers(0, 3000))
def test_the_sweep_choice_properties(files: list[CachedFile], cap: int, need: int) -> None:
    """Every stale file goes, and goes first; the rest go least recently used first, and
    only while the cache is over ``cap`` or short of ``need``: never one more."""
    out = sweep_choice(files, cap=cap, need=need)
    names = [c.name for c in out]
    assert len(set(names)) == len(names)
    stale = [c for c in files if c.stale]
    assert out[: len(stale)] == stale
    taken = out[len(stale) :]
    assert all(not c.stale for c in taken)
    assert [(c.used, c.name) for c in taken] == sorted((c.used, c.name) for c in taken)
    left = [c for c in files if c not in out]
    assert all((c.used, c.name) >= (t.used, t.name) for c in left for t in taken)
    kept = sum(c.size for c in left)
    freed = sum(c.size for c in out)
    assert left == [] or (kept <= cap and freed >= need)  # else everything went
    if taken:  # the last one taken was still needed
        last = taken[-1]
        assert kept + last.size > cap or freed - last.size < need
