"""A sixth sceptic round: a bundle without key frames, and times without a UTC offset in the
station's own records (`packcam audit`, `packcam verify --data`, the share summary)."""

from __future__ import annotations

import contextlib
import html
import json
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    Store,
    bundle_index,
    read_zip,
    resign_bundle,
    run_kit,
    store,
    tsa_ec,
)
from test_bundle_deleted_clip import retain_oldest
from test_share_summary import parts, summary_of

from station.proof.bundle import export_order, extract_jpegs
from station.proof.canonical import canonical_json
from station.proof.verify import AUTHENTIC, TAMPERED, audit, verify_bundle, verify_clip
from station.proof.videohash import keyframe_times
from station.store.ledger import INDEX_NAME, Ledger

LINE = re.compile(r"^(OK|FAIL|WARN) +.*\[([a-z0-9-]+)\]$", re.M)


@pytest.fixture(scope="module")
def b2(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return export_order(store.cfg, "B2", tmp_path_factory.mktemp("sceptic6") / "B2.zip").path


def _without_frames(st: Store, src: Path, dst: Path) -> Path:
    """``src`` with its key frames left out (bundle.json listing none), re-signed by the key
    holder: every member left is the station's, signed."""
    idx = bundle_index(src)
    changes: dict[str, bytes | None] = {}
    for e in idx["clips"]:
        changes.update((f["file"], None) for f in e["frames"])
        e["frames"] = []
    changes["bundle.json"] = json.dumps(idx).encode()
    return resign_bundle(src, dst, st.station_key(), changes)


def _noted(out: str, status: str) -> set[str]:
    return {code for s, code in LINE.findall(out) if s == status}


def test_a_bundle_without_key_frames_is_named_by_both_verifiers(
    store: Store,  # noqa: F811
    b2: Path,
    tmp_path: Path,
) -> None:
    """The key frames are what lets a person hold the clock burned into the pictures to the
    signed times (the re-timed clip of test_proof_sceptic_fifth leaves them out). A bundle
    whose clip is here with no key frame listed was AUTHENTIC with not a word about it; both
    verifiers now warn (`bundle-frames-missing`), as an honest central bundle of a clip the
    station had freed after archiving it has none either when the bucket lost its archived
    key frames: the verdict stands."""
    bundle = _without_frames(store, b2, tmp_path / "bare.zip")
    report = verify_bundle(bundle, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC, report.lines()
    (warned,) = [c for c in report.checks if c.code == "bundle-frames-missing"]
    assert warned.status == "warn" and "burned" in warned.reason, warned
    rc, out = run_kit(KIT, bundle, tmp_path, *store.pins())
    assert rc == 0, out
    assert "bundle-frames-missing" in _noted(out, "WARN"), out


def _archived_frames(st: Store, order_id: str) -> dict[str, list[tuple[float, str, bytes]]]:
    """The key frames the archiver cuts from each clip of ``order_id`` and uploads (by the
    clip's SHA-256, as ``frames/<sha256>/`` in the bucket): what it reads back for the parts
    of a clip it has freed since."""
    with contextlib.closing(Ledger.in_data_dir(st.data)) as ledger:
        clips = ledger.clips(order_id)
    return {
        c.sha256: extract_jpegs(
            st.data / c.path, keyframe_times(json.loads((st.data / c.manifest_path).read_bytes()))
        )
        for c in clips
    }


def _central_bundle(
    st: Store,
    order_id: str,
    out: Path,
    bucket: dict[str, list[tuple[float, str, bytes]]] | None = None,
) -> Path:
    """The central site's bundle of ``order_id`` after the station archived its clips and
    retention freed them locally: the parts the archiver exports then (``without_clips``:
    the clips listed by hash, their key frames those of ``bucket``, none if it has none),
    each clip put back from the bucket as central/bundles.py streams it (every member in
    name order, the clip stored)."""
    with contextlib.closing(Ledger.in_data_dir(st.data)) as ledger:
        clips = ledger.clips(order_id)
        for c in clips:
            assert c.id is not None and ledger.mark_archived(c.id, f"k/{c.sha256}", {})
    kept = {f"clips/{Path(c.path).name}": (st.data / c.path).read_bytes() for c in clips}
    for c in clips:
        (st.data / c.path).unlink()
    parts = export_order(
        st.cfg,
        order_id,
        out.with_suffix(".parts.zip"),
        without_clips=True,
        archived_frames=None if bucket is None else (lambda r: bucket.get(r.sha256, [])),
    )
    with zipfile.ZipFile(parts.path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(set(zin.namelist()) | set(kept)):
            if name in kept:
                z.writestr(name, kept[name], compress_type=zipfile.ZIP_STORED)
            else:
                z.writestr(zin.getinfo(name), zin.read(name))
    return out


def test_an_honest_central_bundle_of_a_freed_clip_is_warned_of_not_failed(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Why a warning and not a failure: the central site's bundle of a clip the station freed
    after archiving it has no key frames when the bucket has none of them either (the
    station could not decode a clip it no longer has), and is honest: AUTHENTIC in both
    verifiers, each naming the missing pictures."""
    st = store.copy(tmp_path / "data")
    bundle = _central_bundle(st, "B2", tmp_path / "B2.zip", bucket={})
    assert all(not e["frames"] for e in bundle_index(bundle)["clips"])
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC and not report.failures, report.lines()
    assert "bundle-frames-missing" in report.reasons(), report.lines()
    rc, out = run_kit(KIT, bundle, tmp_path, *st.pins())
    assert rc == 0 and "bundle-frames-missing" in _noted(out, "WARN"), out


def test_a_central_bundle_of_a_freed_clip_carries_the_key_frames_archived_with_it(
    store: Store,  # noqa: F811
    b2: Path,
    tmp_path: Path,
) -> None:
    """The archiver uploads each clip's key frames (``frames/<sha256>/``); the parts it
    builds after retention freed the clip carry them, read back from the bucket, under the
    names and bundle.json entries a station export gives them: no warning, and `packcam
    verify` holds each to the clip's picture at its moment."""
    st = store.copy(tmp_path / "data")
    bucket = _archived_frames(st, "B2")
    bundle = _central_bundle(st, "B2", tmp_path / "B2.zip", bucket=bucket)
    idx = bundle_index(bundle)
    assert [e["frames"] for e in idx["clips"]] == [e["frames"] for e in bundle_index(b2)["clips"]]
    assert all(e["frames"] for e in idx["clips"])
    assert not [w for w in idx["warnings"] if "key frame" in w], idx["warnings"]
    assert 'class="no-frames"' not in read_zip(bundle, "summary.html").decode()
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC and not report.failures, report.lines()
    assert "bundle-frames-missing" not in report.reasons(), report.lines()
    held = [c for c in report.checks if "key frames are this clip's own pictures" in c.reason]
    assert len(held) == len(idx["clips"]), report.lines()
    rc, out = run_kit(KIT, bundle, tmp_path, *st.pins())
    assert rc == 0 and "bundle-frames-missing" not in out, out


def test_key_frames_from_the_bucket_that_are_not_the_clip_s_fail(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Frames from the bucket are the seller's material, vouching for nothing: pictures put
    in the bucket under other moments' names (each the next one's) are signed into the parts
    like any, and `packcam verify` finds they are not the clip's (bundle-frame-mismatch)."""
    st = store.copy(tmp_path / "data")
    bucket = _archived_frames(st, "B2")
    (sha, frames), *_ = bucket.items()
    assert len(frames) >= 2
    swapped = {sha: [(t, lb, frames[(i + 1) % len(frames)][2]) for i, (t, lb, _) in
                     enumerate(frames)]}  # fmt: skip
    bundle = _central_bundle(st, "B2", tmp_path / "B2.zip", bucket=swapped)
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and "bundle-frame-mismatch" in report.codes(), report.lines()


def _clip_section(summary: str, clip: str) -> str:
    """The part of summary.html about the clip whose member is ``clip``."""
    name = html.escape(Path(clip).name)
    (section,) = [s for s in summary.split('<section class="clip">') if f"<h2>{name}</h2>" in s]
    return section


def test_an_export_of_a_clip_it_cannot_decode_says_why_it_has_no_key_frames(
    store: Store,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A clip the station cannot decode (extract_jpegs logs and returns none) was bundled
    without key frames and not a word about it in the bundle: the verifiers' warning was the
    only one, with no reason. Now bundle.json's warnings and summary.html say it, and why."""
    st = store.copy(tmp_path / "data")

    def undecodable(clip: Path, times: list[tuple[float, str]]) -> list[Any]:
        raise OSError(f"{clip}: Invalid data found when processing input")

    monkeypatch.setattr("station.proof.bundle.frames_at", undecodable)
    res = export_order(st.cfg, "B2", tmp_path / "B2.zip")
    idx = bundle_index(res.path)
    assert res.frames == 0 and all(not e["frames"] for e in idx["clips"])
    summary = read_zip(res.path, "summary.html").decode()
    for e in idx["clips"]:
        name = Path(e["clip"]).name
        (said,) = [w for w in idx["warnings"] if name in w and "key frame" in w]
        assert "could not be decoded" in said, said
        assert said in res.warnings
        section = _clip_section(summary, e["clip"])
        assert "无法解码" in section and "could not be decoded" in section, section


def test_a_bundle_of_a_freed_clip_says_it_has_no_key_frames_for_that(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The parts the archiver exports after retention freed an archived clip (the central
    site's bundle): the clip is not on the station, so no key frames, and the bundle says so."""
    st = store.copy(tmp_path / "data")
    bundle = _central_bundle(st, "B2", tmp_path / "B2.zip")
    idx = bundle_index(bundle)
    summary = read_zip(bundle, "summary.html").decode()
    for e in idx["clips"]:
        name = Path(e["clip"]).name
        (said,) = [w for w in idx["warnings"] if name in w and "key frame" in w]
        assert "not on the station" in said and "could not be decoded" not in said, said
        section = _clip_section(summary, e["clip"])
        assert "不在工位上" in section and "not on the station" in section, section


def test_an_exported_bundle_has_no_such_warning(
    store: Store,  # noqa: F811
    b2: Path,
    tmp_path: Path,
) -> None:
    report = verify_bundle(b2, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC and "bundle-frames-missing" not in report.reasons()
    rc, out = run_kit(KIT, b2, tmp_path, *store.pins())
    assert rc == 0 and "bundle-frames-missing" not in out, out
    assert not [w for w in bundle_index(b2)["warnings"] if "key frame" in w]
    assert 'class="no-frames"' not in read_zip(b2, "summary.html").decode()


def test_a_tampered_clip_without_key_frames_is_not_also_warned_of(
    store: Store,  # noqa: F811
    b2: Path,
    tmp_path: Path,
) -> None:
    """The warning is for the signed clip: a clip that is not the recorded one fails, and
    neither verifier adds a note about pictures of a clip it already refused."""
    bare = _without_frames(store, b2, tmp_path / "bare.zip")
    clip = bundle_index(bare)["clips"][0]["clip"]
    bad = resign_bundle(bare, tmp_path / "bad.zip", store.station_key(), {clip: b"\0" * 4096})
    report = verify_bundle(bad, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and "bundle-frames-missing" not in report.reasons()
    rc, out = run_kit(KIT, bad, tmp_path, *store.pins())
    assert rc == 1 and "bundle-frames-missing" not in out, out


# ---- times without a UTC offset in the station's own records -------------------------------


@contextlib.contextmanager
def _db(st: Store) -> Iterator[sqlite3.Connection]:
    """The station's index, to tamper with (autocommit); closed on leaving the block."""
    with contextlib.closing(sqlite3.connect(st.data / INDEX_NAME, isolation_level=None)) as conn:
        yield conn


@pytest.mark.parametrize("field", ["deleted_utc", "started_utc"])
def test_a_stored_deletion_record_with_a_time_without_offset_is_a_missing_clip(
    store: Store,  # noqa: F811
    tmp_path: Path,
    field: str,
) -> None:
    """The key holder's deletion record in the station's index, its ``started_utc`` (or
    ``deleted_utc``) cut to a time with no UTC offset and signed again: `packcam audit`
    subtracted it from the manifest's aware start and raised TypeError (no verdict), and the
    share summary, which asks the same rule of a gone clip, answered 500. By the one rule of
    the bundle verifiers (`deletion_problem`) the record is unreadable: the clip is missing."""
    st = store.copy(tmp_path / "data")
    first = retain_oldest(st, datetime.now(UTC).replace(microsecond=0))
    with _db(st) as conn:
        (raw,) = conn.execute(
            "SELECT record FROM retention_deletions WHERE path = ?", (first.path,)
        ).fetchone()
        record = json.loads(raw)
        record[field] = record[field][:19]  # 2026-12-07T19:14:02, its Z cut off
        forged = canonical_json(record)
        conn.execute(
            "UPDATE retention_deletions SET record = ?, signature = ? WHERE path = ?",
            (forged, st.station_key().sign(forged), first.path),
        )
    report = audit(st.cfg, anchors=st.anchors(), check_timestamps=False)
    (missing,) = [c for c in report.checks if c.code == "clip-missing"]
    assert missing.name == f"clip {first.path}" and "unreadable" in missing.reason, missing
    p = {k: html.unescape(v) for k, v in parts(summary_of(st, "A1")[0]).items()}
    assert "clip-missing" in p["en"] and "clip-deleted-by-retention" not in p["en"], p["en"]


def test_an_index_time_without_offset_is_an_edited_row(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Staff set a clip's ``started_utc`` in the index to a time with no UTC offset: `packcam
    audit` and `packcam verify --data` (and so the share summary) compared it with the signed
    manifest's aware time and raised TypeError. It is an edited row, as any other edit."""
    st = store.copy(tmp_path / "data")
    with _db(st) as conn:
        path, started = conn.execute("SELECT path, started_utc FROM clips WHERE id = 1").fetchone()
        conn.execute("UPDATE clips SET started_utc = ? WHERE id = 1", (started[:19],))
    report = audit(st.cfg, anchors=st.anchors(), check_timestamps=False)
    assert report.verdict == TAMPERED and "index-row-edited" in report.codes(), report.lines()
    assert any("started_utc" in c.reason for c in report.failures), report.lines()
    clip = verify_clip(st.data / path, st.cfg, anchors=st.anchors())
    assert "index-row-edited" in clip.codes(), clip.lines()
