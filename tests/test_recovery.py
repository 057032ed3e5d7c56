"""Crash recovery on real files: cut-off clips, lost index rows, missing files, the lock."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest
from helpers_crash_child import FLOOR, assert_every_step, crash_at_every_step
from recorder_support import encoded_recorder

from station import config as config_mod
from station.errors import LedgerError, RecordingError
from station.proof.finalizer import build_finalizers
from station.proof.verify import audit, verify_clip
from station.recording.recorder import (
    FinishedClip,
    PacketSink,
    manifest_body,
    write_json_quick,
    write_manifest,
)
from station.recording.stream import EncodedPacket
from station.recording.writer import ClipWriter, EncoderSettings, to_i420
from station.store.files import write_json_atomic
from station.store.ledger import ClipRecord, Ledger, ScanEventRecord
from station.store.recovery import (
    DataDirBusy,
    Recovery,
    box_walk,
    data_dir_lock,
    probe_mp4,
    record_from_manifest,
    recover_data_dir,
)
from station.store.retention import remove_clip_files

W, H, FPS = 160, 96, 10.0
REPO = Path(__file__).resolve().parents[1]
WALL0 = datetime(2026, 11, 30, 14, 5, 6, 789000).astimezone()


def picture(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    img[:, (i * 5) % (W - 10) :][:, :10] = (0, 200, 255)
    return img


def write_clip(path: Path, frames: int = 25, *, keyframe_s: float = 1.0) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = ClipWriter(path, EncoderSettings(W, H, FPS, keyframe_interval_s=keyframe_s))
    for i in range(frames):
        w.write(to_i420(picture(i)), i / FPS)
    w.finish()
    return path.read_bytes()


def decode_all(path: Path) -> int:
    """Frames PyAV decodes; raises on any decoding error (a player would stumble too)."""
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def boxes(data: bytes) -> list[tuple[int, bytes, int]]:
    out, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        out.append((pos, data[pos + 4 : pos + 8], size))
        pos += size
    return out


def journal(order: str = "PO-77", **kw: object) -> dict:
    return {
        "order_id": order,
        "station": "station-01",
        "scan_wall": (WALL0 + timedelta(seconds=1)).isoformat(timespec="milliseconds"),
        "first_wall": WALL0.isoformat(timespec="milliseconds"),
        "pre_roll_s": 1.0,
        "waybills": [{"waybill": "SF1234567890123", "carrier": "SF", "t_clip_s": 1.5}],
        "events": [
            ScanEventRecord("order", order, "script", WALL0 + timedelta(seconds=1), 1.0).to_json()
        ],
        "extra": {},
        **kw,
    }


@pytest.fixture
def data(cfg: config_mod.Config) -> Path:
    d = cfg.station.data_dir
    (d / "tmp").mkdir(parents=True)
    return d


def put_tmp(data: Path, stem: str, blob: bytes, meta: dict | None) -> Path:
    mp4 = data / "tmp" / f"{stem}.mp4"
    mp4.write_bytes(blob)
    if meta is not None:
        (data / "tmp" / f"{stem}.open.json").write_text(json.dumps(meta), encoding="utf-8")
    return mp4


def rows(cfg: config_mod.Config) -> list:
    led = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        return led.clips()
    finally:
        led.close()


def assert_clean(cfg: config_mod.Config) -> None:
    """Every indexed clip plays to its last frame, hashes match, the audit passes, tmp/ empty."""
    data = cfg.station.data_dir
    for c in rows(cfg):
        blob = (data / c.path).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == c.sha256 and len(blob) == c.size
        assert decode_all(data / c.path) == c.frame_count
        # its signed start, end and duration agree with each other and with how long it plays
        assert "time-inconsistent" not in verify_clip(data / c.path, cfg).codes()
    report = audit(cfg, check_timestamps=False)
    assert report.ok, report.lines()
    assert [p.name for p in (data / "tmp").iterdir()] == []


# ---- probing ----------------------------------------------------------------------------------


def test_probe_tells_whole_files_from_cut_ones(tmp_path: Path) -> None:
    blob = write_clip(tmp_path / "a.mp4")
    bx = boxes(blob)
    kinds = [k for _, k, _ in bx]
    assert kinds[:2] == [b"ftyp", b"moov"] and kinds[-1] == b"mfra"
    whole = probe_mp4(tmp_path / "a.mp4")
    assert whole.plays and not whole.torn and whole.packets == 25
    assert whole.span_s == pytest.approx(2.4) and whole.frame_interval_s == pytest.approx(0.1)

    mdat_ends = [pos + size for pos, k, size in bx if k == b"mdat"]
    moofs = [pos for pos, k, _ in bx if k == b"moof"]
    cases = {  # where the file ends -> (whole frames left, torn)
        "inside the last mdat": (mdat_ends[-1] - 40, 24, True),
        "inside the last moof": (moofs[-1] + 20, 24, True),
        "between a moof and its mdat": (moofs[-1] + bx[-3][2], 24, True),
        "at the end of a fragment": (mdat_ends[10], 11, False),
        "header only": (bx[2][0], 0, False),
    }
    for what, (cut, frames, torn) in cases.items():
        p = tmp_path / f"cut{cut}.mp4"
        p.write_bytes(blob[:cut])
        good, moov = box_walk(p)
        assert moov, what
        assert good == (mdat_ends[frames - 1] if frames else bx[2][0]), what
        facts = probe_mp4(p)
        assert facts.torn == torn, what
        if not torn:
            assert facts.packets == frames and facts.plays == (frames > 0), what
    zeros = tmp_path / "zeros.mp4"  # a power cut can leave a zero-filled tail
    zeros.write_bytes(blob[: bx[-4][0]] + b"\0" * 3000)
    assert probe_mp4(zeros).torn


# ---- unfinished recordings ----------------------------------------------------------------------


def test_cut_off_clip_is_made_playable_indexed_as_interrupted_and_the_original_kept(
    cfg: config_mod.Config, data: Path
) -> None:
    blob = write_clip(data / "scratch.mp4")
    (data / "scratch.mp4").unlink()
    last_mdat = [p for p, k, _ in boxes(blob) if k == b"mdat"][-1]
    cut = blob[: last_mdat + 100]  # killed while the last frame was being written
    put_tmp(data, "station-01_PO-77_20261130T140507_789", cut, journal())

    report = recover_data_dir(cfg)
    assert report.ok and len(report.recovered) == 1 and len(report.repaired) == 1
    (clip,) = rows(cfg)
    assert clip.order_id == "PO-77" and clip.finish_reason == "interrupted"
    assert clip.frame_count == 24 and clip.waybill == "SF1234567890123"
    assert [e.kind for e in clip.events] == ["order"]
    assert clip.started_at == WALL0.replace(microsecond=789000) and clip.pre_roll_s == 1.0
    assert clip.path == "clips/2026/11/30/station-01_PO-77_20261130T140507_789.mp4"
    manifest = json.loads((data / clip.manifest_path).read_text())
    assert manifest["recovery"]["method"] == "cut-to-last-complete-fragment"
    original = data / manifest["recovery"]["original"]
    assert original.read_bytes() == cut  # evidence is never deleted or changed
    assert manifest["signature"]["alg"] == "Ed25519"
    assert_clean(cfg)

    again = recover_data_dir(cfg)  # idempotent
    assert again.ok and not again.changed
    assert len(rows(cfg)) == 1


def test_complete_tmp_clip_is_kept_byte_for_byte(cfg: config_mod.Config, data: Path) -> None:
    blob = write_clip(data / "tmp" / "s_PO-1_20261130T140507_789.mp4")
    (data / "tmp" / "s_PO-1_20261130T140507_789.open.json").write_text(json.dumps(journal("PO-1")))
    recover_data_dir(cfg)
    (clip,) = rows(cfg)
    assert (data / clip.path).read_bytes() == blob and clip.frame_count == 25
    manifest = json.loads((data / clip.manifest_path).read_text())
    assert (
        manifest["recovery"]["method"] == "as-recorded" and "original" not in manifest["recovery"]
    )
    assert not (data / "recovered").exists()
    assert_clean(cfg)


STEM = "s_PO-1_20261130T140507_789"


def recovered_then_marked_deleted(cfg: config_mod.Config, data: Path) -> tuple[ClipRecord, bytes]:
    """Clip STEM recovered from tmp/ and indexed, then marked deleted by retention (its files
    not yet removed); the record and its bytes."""
    blob = write_clip(data / "tmp" / f"{STEM}.mp4")
    (data / "tmp" / f"{STEM}.open.json").write_text(json.dumps(journal("PO-1")))
    recover_data_dir(cfg)
    (old,) = rows(cfg)
    ledger = Ledger.in_data_dir(data)
    ledger.mark_deleted(
        old.id, reason="t", record=b"{}", signature=None, key_fingerprint="", deleted_at=WALL0
    )
    ledger.close()
    return old, blob


def test_a_recovered_clip_never_takes_the_path_of_a_deleted_one(
    cfg: config_mod.Config, data: Path
) -> None:
    """A power cut left a clip in tmp/ named like one retention deleted (same order, same
    wall time to the millisecond: a station that booted twice with its clock at the same
    wrong time). Recovery gives it a path of its own: on the deleted clip's path it could not
    be indexed (paths are unique), and the pass's last step removed it as retention's."""
    old, _ = recovered_then_marked_deleted(cfg, data)
    remove_clip_files(data, old.path, old.manifest_path)
    blob = write_clip(data / "tmp" / f"{STEM}.mp4", frames=20)
    (data / "tmp" / f"{STEM}.open.json").write_text(json.dumps(journal("PO-1")))
    report = recover_data_dir(cfg)
    assert report.ok and report.deletions_completed == []
    (new,) = [c for c in rows(cfg) if c.id != old.id]
    assert new.path != old.path and (data / new.path).read_bytes() == blob
    assert not (data / old.path).exists()


def test_other_bytes_on_a_deleted_clip_path_are_kept_and_reported(
    cfg: config_mod.Config, data: Path
) -> None:
    """Completing a retention deletion removes only the bytes retention deleted: a file put
    on that path since (before the fix above, a clip named like the deleted one) is kept,
    and the pass says so."""
    old, original = recovered_then_marked_deleted(cfg, data)
    (data / old.path).unlink()
    other = write_clip(data / old.path, frames=20)
    report = recover_data_dir(cfg)
    assert report.deletions_completed == [] and not report.ok
    assert "not the clip retention deleted" in report.errors[0]
    assert (data / old.path).read_bytes() == other and (data / old.manifest_path).exists()
    (data / old.path).write_bytes(original)  # a crash between the mark and the unlink
    report = recover_data_dir(cfg)
    assert report.ok and report.deletions_completed == [old.path]
    assert not (data / old.path).exists() and not (data / old.manifest_path).exists()


def test_clip_without_journal_is_indexed_under_unknown_order(
    cfg: config_mod.Config, data: Path
) -> None:
    blob = write_clip(data / "scratch.mp4", frames=12)
    (data / "scratch.mp4").unlink()
    put_tmp(data, "st_X_20261130T000000_000", blob[: len(blob) - 500], None)
    report = recover_data_dir(cfg)
    assert report.ok
    (clip,) = rows(cfg)
    assert clip.order_id == "unknown" and clip.finish_reason == "interrupted"
    manifest = json.loads((data / clip.manifest_path).read_text())
    assert "order is unknown" in manifest["recovery"]["note"]
    assert "st_X_20261130T000000_000.mp4" in manifest["recovery"]["note"]
    assert_clean(cfg)


def test_file_without_a_decodable_frame_goes_to_quarantine(
    cfg: config_mod.Config, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blob = write_clip(data / "scratch.mp4")
    (data / "scratch.mp4").unlink()
    header = blob[: boxes(blob)[2][0]]
    put_tmp(data, "s_PO-9_1", header, journal("PO-9"))
    put_tmp(data, "s_PO-9_2", b"", journal("PO-9"))  # killed right after the file was created
    with caplog.at_level(logging.WARNING, logger="station.store.recovery"):
        report = recover_data_dir(cfg)
    assert sorted(report.quarantined) == ["quarantine/s_PO-9_1.mp4", "quarantine/s_PO-9_2.mp4"]
    assert (data / "quarantine" / "s_PO-9_1.mp4").read_bytes() == header
    assert (data / "quarantine" / "s_PO-9_1.open.json").exists()
    assert rows(cfg) == [] and "quarantine" in caplog.text
    assert_clean(cfg)


def test_an_interrupted_repair_starts_again_from_the_kept_original(
    cfg: config_mod.Config, data: Path
) -> None:
    blob = write_clip(data / "scratch.mp4")
    (data / "scratch.mp4").unlink()
    cut = blob[: len(blob) - 1500]
    (data / "recovered").mkdir()
    (data / "recovered" / "s_PO-5_1.orig.mp4").write_bytes(cut)
    meta = journal("PO-5", original_saved_as="recovered/s_PO-5_1.orig.mp4")
    (data / "tmp" / "s_PO-5_1.open.json").write_text(json.dumps(meta))
    (data / "tmp" / "s_PO-5_1.repair.part").write_bytes(cut[:999])  # half-written copy
    report = recover_data_dir(cfg)
    assert report.ok and len(report.recovered) == 1
    (clip,) = rows(cfg)
    assert clip.order_id == "PO-5"
    assert (data / "recovered" / "s_PO-5_1.orig.mp4").read_bytes() == cut
    assert_clean(cfg)


# ---- the recorder's crash windows ------------------------------------------------------------


class _BrokenIndex(Ledger):
    """Power cut between signing and indexing: add_clip never happens."""

    def add_clip(self, clip):  # type: ignore[no-untyped-def]
        raise LedgerError("simulated crash before the index row")


def record(cfg: config_mod.Config, ledger: Ledger, orders: list[str], **kw) -> list[FinishedClip]:
    fins = build_finalizers(cfg)
    rec = encoded_recorder(cfg, ledger, W, H, FPS, finalizers=fins, **kw)
    t = 0.0
    try:  # the caller's ledger is closed at the end
        for n, order in enumerate(orders):
            for i in range(15):
                wall = WALL0 + timedelta(seconds=t)
                with contextlib.suppress(RecordingError):  # the clip ended; the loop goes on
                    rec.push(to_i420(picture(n * 100 + i)), t, wall)
                if i == 3:
                    rec.start(order, t, wall=wall)
                    rec.log_event(ScanEventRecord("order", order, "script", wall), t)
                if i == 6 and rec.recording:
                    rec.link_waybill("SF1234567890123", "SF", t)
                t += 1 / FPS
            if rec.recording:
                rec.stop("sealed", t)
            t += 3
        rec.wait_idle()
    finally:
        rec.close()
        for f in fins:
            f.close()
        ledger.close()
    return rec.finished


@pytest.mark.parametrize("lost", ["row", "row+sidecar"])
def test_signed_but_unindexed_clip_is_indexed_from_its_signed_manifest(
    cfg: config_mod.Config, data: Path, lost: str
) -> None:
    led = _BrokenIndex(data / "index.sqlite3")
    (fin,) = record(cfg, led, ["PO-1"])
    led.close()
    assert fin.record is None
    (mp4,) = (data / "clips").rglob("*.mp4")
    journal_file = next((data / "tmp").glob("*.open.json"))
    meta = json.loads(journal_file.read_text())
    assert meta["finish_reason"] == "sealed" and meta["final_path"].endswith(mp4.name)
    assert meta["waybills"][0]["waybill"] == "SF1234567890123"
    if lost == "row+sidecar":
        mp4.with_suffix(".json").unlink()
    report = recover_data_dir(cfg)
    assert report.indexed == [mp4.relative_to(data).as_posix()]
    (clip,) = rows(cfg)
    assert clip.finish_reason == "sealed" and clip.waybill == "SF1234567890123"
    led = Ledger.in_data_dir(data)
    assert led.conn.execute("SELECT COUNT(*) FROM proof_log").fetchone()[0] == 1  # not re-signed
    led.close()
    assert_clean(cfg)


def test_clip_moved_before_signing_gets_a_manifest_from_its_journal(
    cfg: config_mod.Config, data: Path
) -> None:
    """Power cut right after the rename: no sidecar, no log entry, the journal knows the rest."""
    led = Ledger.in_data_dir(data)
    record(cfg.replace("proof", enabled=False), _BrokenIndex(led.conn), ["PO-2"])
    led.close()
    (mp4,) = (data / "clips").rglob("*.mp4")
    mp4.with_suffix(".json").unlink()
    report = recover_data_dir(cfg)
    assert len(report.indexed) == 1
    (clip,) = rows(cfg)
    assert clip.order_id == "PO-2" and clip.finish_reason == "sealed" and clip.frame_count == 15
    manifest = json.loads(mp4.with_suffix(".json").read_text())
    assert "not indexed" in manifest["recovery"]["note"] and "signature" in manifest
    assert_clean(cfg)


class _CrashAfterIndexing(Ledger):
    """Power cut right after the index row was committed, before the journal was removed."""

    def add_clip(self, clip):  # type: ignore[no-untyped-def]
        super().add_clip(clip)
        raise LedgerError("simulated crash after the index row")


def test_journal_of_a_clip_indexed_just_before_the_crash_is_removed(
    cfg: config_mod.Config, data: Path
) -> None:
    led = _CrashAfterIndexing(data / "index.sqlite3")
    record(cfg, led, ["PO-3"])
    led.close()
    (journal_file,) = (data / "tmp").glob("*.open.json")
    (clip,) = rows(cfg)
    assert json.loads(journal_file.read_text())["final_path"] == clip.path
    report = recover_data_dir(cfg)
    assert report.ok and not report.indexed and not report.recovered
    assert rows(cfg) == [clip]
    assert_clean(cfg)  # tmp/ is empty: no journal left behind for months


class _IndexFullOnce(Ledger):
    """The index refuses the first clip row as a full disk does; later rows go in."""

    refused = False

    def add_clip(self, clip):  # type: ignore[no-untyped-def]
        if not self.refused:
            self.refused = True
            raise LedgerError("ClipTable write failed: database or disk is full")
        return super().add_clip(clip)


def test_a_signed_clip_the_full_index_refused_is_indexed_after_the_next_clip(
    cfg: config_mod.Config, data: Path
) -> None:
    """The disk filled between signing a clip and indexing it: once the next clip goes through
    (there is room again), the station indexes it from its signed manifest, without waiting
    for a restart; the file and its manifest stay as signed."""
    led = _IndexFullOnce(data / "index.sqlite3")
    recovery = Recovery(cfg, led, ())
    signed: dict[str, bytes] = {}

    def keep_signed(fin: FinishedClip) -> None:
        if fin.record is None:
            (mp4,) = (data / "clips").rglob(f"*{fin.order_id}*.mp4")
            signed[fin.order_id] = mp4.read_bytes() + mp4.with_suffix(".json").read_bytes()
            assert "database or disk is full" in str(fin.error)

    finished = record(cfg, led, ["PO-1", "PO-2"], salvage=recovery.salvage, on_finished=keep_signed)
    assert [(f.order_id, f.record is not None) for f in finished] == [
        ("PO-1", False),
        ("PO-2", True),
        ("PO-1", True),
    ]
    clips = {c.order_id: c for c in rows(cfg)}
    first = clips["PO-1"]
    assert finished[-1].record is not None and finished[-1].record.id == first.id
    assert first.finish_reason == "sealed" and first.waybill == "SF1234567890123"
    mp4 = data / first.path
    assert mp4.read_bytes() + (data / first.manifest_path).read_bytes() == signed["PO-1"]
    led = Ledger.in_data_dir(data)
    assert led.conn.execute("SELECT COUNT(*) FROM proof_log").fetchone()[0] == 2  # not re-signed
    led.close()
    assert_clean(cfg)  # its journal is gone too


def test_writer_failure_mid_clip_is_salvaged_as_interrupted(
    cfg: config_mod.Config, data: Path
) -> None:
    """ENOSPC from the clip muxer: the clip so far is kept, indexed as interrupted, with the
    error."""

    class FullDisk:
        """The station's ClipMuxer on a disk that fills up after 8 frames."""

        def __init__(self, inner: PacketSink) -> None:
            self.inner = inner
            self.n = 0

        def write(self, packet: EncodedPacket) -> None:
            self.n += 1
            if self.n > 8:
                raise RecordingError("writing clip failed: disk full: [Errno 28] No space left")
            self.inner.write(packet)

        def finish(self):  # type: ignore[no-untyped-def]
            self.inner.finish()
            raise RecordingError("writing clip failed: disk full: [Errno 28] No space left")

    led = Ledger.in_data_dir(data)
    fins = build_finalizers(cfg)
    recovery = Recovery(cfg, led, fins)
    try:
        (fin,) = record(cfg, led, ["PO-3"], wrap_muxer=FullDisk, salvage=recovery.salvage)
    finally:
        led.close()
    assert fin.error and "No space left" in fin.error
    assert fin.record is not None and fin.record.finish_reason == "interrupted"
    assert fin.record.frame_count == 8
    manifest = json.loads((data / fin.record.manifest_path).read_text())
    assert "No space left" in manifest["recovery"]["error"]
    assert_clean(cfg)


def test_recorder_and_recovery_build_byte_identical_manifests(
    cfg: config_mod.Config, data: Path
) -> None:
    """One manifest builder: the recorder's sidecar is rebuilt to the byte from its own record
    (with or without a finalizer), and recovery's rebuild from the index differs only by saying
    it was regenerated."""
    plain = cfg.replace("proof", enabled=False)
    (fin,) = record(plain, Ledger.in_data_dir(data), ["PO-5"])
    assert fin.record is not None
    mp4, sidecar = data / fin.record.path, data / fin.record.manifest_path
    written = sidecar.read_bytes()
    body = json.loads(written)
    assert body["manifest_version"] == 1 and body["software"].startswith("packcam ")

    sidecar.unlink()
    again = write_manifest(mp4, fin.record.path, record_from_manifest(body), ())
    assert sidecar.read_bytes() == written and again == body

    def note(_path: Path, d: dict) -> dict:
        return {**d, "note": "finalized"}

    write_manifest(mp4, fin.record.path, record_from_manifest(body), (note,))
    assert json.loads(sidecar.read_bytes()) == {**body, "note": "finalized"}

    def rewrites(path: Path, d: dict) -> dict:
        path.write_bytes(path.read_bytes() + b"\0" * 8)  # changes the file, not the manifest
        return d

    copy = data / "copy.mp4"
    copy.write_bytes(mp4.read_bytes())
    with pytest.raises(RecordingError, match="does not match the file"):
        write_manifest(copy, "copy.mp4", record_from_manifest(body), (rewrites,))
    assert not copy.with_suffix(".json").exists()  # no sidecar that lies about the bytes
    copy.unlink()

    sidecar.unlink()
    report = recover_data_dir(plain)
    assert report.manifests == [fin.record.manifest_path]
    rebuilt = json.loads(sidecar.read_bytes())
    assert "unsigned" in rebuilt.pop("regenerated")["note"]
    # The index stores the clip kind explicitly ("order" when the manifest leaves it out).
    assert rebuilt.pop("kind") == body.get("kind", "order")
    assert rebuilt == body


def test_a_record_rebuilt_from_a_manifest_keeps_who_packed_it_and_what_it_is(
    cfg: config_mod.Config, data: Path
) -> None:
    """Recovery indexes a signed-but-unindexed clip from its manifest: the packer, the clip kind
    and the repack links the manifest states reach the index row too."""
    plain = cfg.replace("proof", enabled=False)
    (fin,) = record(plain, Ledger.in_data_dir(data), ["PO-5"])
    assert fin.record is not None
    floor = {
        "packer": "ann",
        "kind": "return",
        "repack_of": [3, 4],
        "repack_of_fleet": [{"station": "station-02", "clip_id": 9, "started": "2026-11-29"}],
    }
    body = {**json.loads((data / fin.record.manifest_path).read_text()), **floor}
    rebuilt = record_from_manifest(body)
    assert (rebuilt.packer, rebuilt.kind) == ("ann", "return")
    assert rebuilt.repack_of == [3, 4] and rebuilt.repack_of_fleet == floor["repack_of_fleet"]
    assert manifest_body(rebuilt) == {k: v for k, v in body.items() if k != "id"}


# ---- a crash at every step -------------------------------------------------------------------


def assert_recovered_once(cfg: config_mod.Config, order: str, where: str) -> ClipRecord:
    """One clip of ``order``, indexed once, signed once, its bytes the ones its signed manifest
    and its row state, its packing-floor fields kept; nothing missing, nothing left in tmp/."""
    data = cfg.station.data_dir
    (clip,) = rows(cfg)
    assert clip.order_id == order, where
    manifest = json.loads((data / clip.manifest_path).read_text())
    digest = hashlib.sha256((data / clip.path).read_bytes()).hexdigest()
    assert digest == clip.sha256 == manifest["sha256"], where
    assert manifest["signature"]["alg"] == "Ed25519", where
    assert (clip.packer, clip.kind, clip.repack_of) == (FLOOR["packer"], "order", [7]), where
    led = Ledger.in_data_dir(data)
    try:
        assert led.conn.execute("SELECT COUNT(*) FROM proof_log").fetchone()[0] == 1, where
        assert led.alarms() == [], where
    finally:
        led.close()
    assert_clean(cfg)
    return clip


def test_a_crash_at_any_step_of_the_finisher_loses_nothing(tmp_path: Path) -> None:
    """Killed before each rename, fsync, unlink and index write of a finishing clip: the next
    start indexes the clip once, with the hash its signed manifest states."""
    steps = crash_at_every_step("finish", tmp_path)
    assert len(steps) >= 12 and steps[-1].endswith(".open.json")  # the journal goes last
    # How the clip ended is journaled at its stop, before the clip is finished and moved.
    journaled = next(n for n, s in enumerate(steps, 1) if s.startswith("replace") and
                     s.endswith(".open.json"))  # fmt: skip
    moved = next(n for n, s in enumerate(steps, 1) if s.startswith("replace") and
                 s.endswith(".mp4"))  # fmt: skip
    assert journaled < moved
    reasons: dict[int, str] = {}

    def check(n: int, where: str) -> None:
        cfg = config_mod.load(None).with_data_dir(tmp_path / str(n) / "data")
        # (what the journal left says how the clip ended: nothing before the stop's write)
        journals = list((cfg.station.data_dir / "tmp").glob("*.open.json"))
        ended = json.loads(journals[0].read_text()).get("finish_reason") if journals else "sealed"
        report = recover_data_dir(cfg)
        assert report.ok, report.lines()
        clip = assert_recovered_once(cfg, "PO-1", where)
        # once the journal says how the clip ended, recovery indexes it as it ended
        assert clip.finish_reason == (ended or "interrupted"), where
        assert clip.waybill == "SF1234567890123" and clip.events, where
        reasons[n] = clip.finish_reason

    assert_every_step(steps, check)
    assert reasons[1] == "interrupted" and reasons[moved] == "sealed", reasons


def crash_template(data: Path) -> Path:
    """Move the data dir ``data`` to ``<its parent>/crash/template/data``; the work dir."""
    work = data.parent / "crash"
    (work / "template").mkdir(parents=True)
    data.rename(work / "template" / "data")
    return work


def test_a_crash_at_any_step_of_recovery_loses_nothing(cfg: config_mod.Config, data: Path) -> None:
    """A cut-off clip (repaired, original kept) whose recovery is itself killed at each step:
    the next pass finishes it."""
    blob = write_clip(data / "scratch.mp4")
    (data / "scratch.mp4").unlink()
    cut = blob[: [p for p, k, _ in boxes(blob) if k == b"mdat"][-1] + 100]
    put_tmp(data, "s_PO-77_1", cut, journal(extra=FLOOR))
    work = crash_template(data)
    steps = crash_at_every_step("recover", work)
    assert len(steps) >= 15

    def check(n: int, where: str) -> None:
        again = cfg.with_data_dir(work / str(n) / "data")
        report = recover_data_dir(again)
        assert report.ok, report.lines()
        clip = assert_recovered_once(again, "PO-77", where)
        assert clip.frame_count == 24 and clip.finish_reason == "interrupted", where
        manifest = json.loads((again.station.data_dir / clip.manifest_path).read_text())
        original = again.station.data_dir / manifest["recovery"]["original"]
        assert original.read_bytes() == cut, where  # the original bytes, kept

    assert_every_step(steps, check)


def test_a_crash_at_any_step_of_indexing_a_clip_found_in_place_loses_nothing(
    cfg: config_mod.Config, data: Path
) -> None:
    """The finisher moved a clip into place and stopped before signing it; recovery, signing
    and indexing it from its journal, is killed at each step: the next pass finishes it, and
    the clip's bytes are the recorded ones."""
    led = Ledger.in_data_dir(data)
    record(cfg.replace("proof", enabled=False), _BrokenIndex(led.conn), ["PO-2"])
    led.close()
    (mp4,) = (data / "clips").rglob("*.mp4")
    mp4.with_suffix(".json").unlink()
    recorded = mp4.read_bytes()
    (journal_file,) = (data / "tmp").glob("*.open.json")
    journal_file.write_text(json.dumps({**json.loads(journal_file.read_text()), "extra": FLOOR}))
    work = crash_template(data)
    steps = crash_at_every_step("recover", work)
    assert len(steps) >= 8

    def check(n: int, where: str) -> None:
        again = cfg.with_data_dir(work / str(n) / "data")
        report = recover_data_dir(again)
        assert report.ok, report.lines()
        clip = assert_recovered_once(again, "PO-2", where)
        assert clip.frame_count == 15 and clip.finish_reason == "sealed", where
        assert (again.station.data_dir / clip.path).read_bytes() == recorded, where

    assert_every_step(steps, check)


# ---- rows without files, files without rows -------------------------------------------------


def test_missing_file_is_reported_loudly_and_its_row_kept(
    cfg: config_mod.Config, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (fin,) = record(cfg, Ledger.in_data_dir(data), ["PO-4"])
    assert fin.record is not None
    clip = data / fin.record.path
    saved = clip.read_bytes()
    clip.unlink()
    with caplog.at_level(logging.ERROR, logger="station.store.recovery"):
        report = recover_data_dir(cfg)
    assert not report.ok and report.missing == [fin.record.path]
    assert "missing from disk" in caplog.text
    recover_data_dir(cfg)
    led = Ledger.in_data_dir(data)
    (alarm,) = led.alarms()
    assert alarm.kind == "clip-missing" and alarm.subject == fin.record.path
    assert alarm.count == 2 and len(led.clips()) == 1
    led.close()
    cli = subprocess.run(
        [sys.executable, "-m", "station", "recover", "--data", str(data)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert cli.returncode == 1 and "MISSING from disk" in cli.stdout

    clip.write_bytes(saved)  # found again (e.g. a disk remounted): the alarm clears
    assert recover_data_dir(cfg).ok
    led = Ledger.in_data_dir(data)
    assert led.alarms() == [] and led.alarms(active_only=False)[0].cleared_utc
    led.close()


def test_missing_sidecar_is_written_again_from_the_signed_log(
    cfg: config_mod.Config, data: Path
) -> None:
    (fin,) = record(cfg, Ledger.in_data_dir(data), ["PO-6"])
    assert fin.record is not None
    sidecar = data / fin.record.manifest_path
    before = sidecar.read_text()
    sidecar.unlink()
    report = recover_data_dir(cfg)
    assert report.manifests == [fin.record.manifest_path]
    assert json.loads(sidecar.read_text()) == json.loads(before)
    assert_clean(cfg)


def test_leftovers_of_interrupted_writes_are_removed(cfg: config_mod.Config, data: Path) -> None:
    day = data / "clips" / "2026" / "11" / "30"
    day.mkdir(parents=True)
    for name in ("a.json.tmp", "b.mp4.remux.tmp", "c.mp4.c2pa.tmp"):
        (day / name).write_bytes(b"partial")
    (data / "tmp" / "d.open.json.tmp").write_bytes(b"{")
    recover_data_dir(cfg)
    assert list(day.iterdir()) == [] and list((data / "tmp").iterdir()) == []


# ---- the lock and the CLI --------------------------------------------------------------------


def test_a_json_write_that_fails_on_a_full_disk_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sidecar or journal write cut short by ENOSPC keeps the old file and leaves no
    ``.tmp`` beside it (in clips/ it would stay for months, until the station restarts)."""
    sidecar, journal_file = tmp_path / "clip.json", tmp_path / "clip.open.json"
    sidecar.write_text('{"old": true}')
    journal_file.write_text('{"old": true}')

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def half_written(self: Path, text: str, encoding: str | None = None) -> int:
        with self.open("w", encoding=encoding) as f:
            f.write(text[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr("station.store.files.os.fsync", full)
        with pytest.raises(OSError):
            write_json_atomic(sidecar, {"new": True})
    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", half_written)
        with pytest.raises(OSError):
            write_json_quick(journal_file, {"new": True})
    assert json.loads(sidecar.read_text()) == {"old": True}
    assert json.loads(journal_file.read_text()) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.json", "clip.open.json"]


def test_one_station_or_recovery_per_data_dir(cfg: config_mod.Config, data: Path) -> None:
    with data_dir_lock(data):
        with pytest.raises(DataDirBusy), data_dir_lock(data):
            pass
        Ledger.in_data_dir(data).close()
        cli = subprocess.run(
            [sys.executable, "-m", "station", "recover", "--data", str(data)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert cli.returncode == 3 and "in use by another" in cli.stderr
    with data_dir_lock(data):  # released
        pass


def test_a_data_dir_the_station_cannot_write_is_named_with_the_fix(tmp_path: Path) -> None:
    """First start with data_dir moved off /var/lib/packcam (read-only under the unit's
    ProtectSystem=strict) or not the station user's: one line naming the folder and the fix,
    not a traceback."""
    (tmp_path / "not-a-folder").write_text("")
    bad = tmp_path / "not-a-folder" / "data"
    config = tmp_path / "packcam.toml"
    config.write_text('[camera]\nbackend = "synthetic"\n', encoding="utf-8")
    cli = subprocess.run(
        [sys.executable, "-m", "station", "station", "--config", str(config), "--data", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert cli.returncode == 3, cli.stderr
    assert "Traceback" not in cli.stderr
    (line,) = [ln for ln in cli.stderr.splitlines() if ln.startswith("packcam: ")]
    assert str(bad) in line and "ReadWritePaths=" in line


def test_recover_cli_reports_and_exits_zero_when_all_is_well(
    cfg: config_mod.Config, data: Path
) -> None:
    blob = write_clip(data / "scratch.mp4", frames=10)
    (data / "scratch.mp4").unlink()
    put_tmp(data, "s_PO-8_1", blob, journal("PO-8"))
    Ledger.in_data_dir(data).close()
    cli = subprocess.run(
        [sys.executable, "-m", "station", "recover", "--data", str(data), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert cli.returncode == 0, cli.stderr
    out = json.loads(cli.stdout)
    assert out["ok"] and len(out["recovered"]) == 1
    assert_clean(cfg)


def test_clips_recovered_together_are_indexed_in_the_order_they_were_recorded(
    cfg: config_mod.Config, data: Path
) -> None:
    """A power cut leaves two clips in tmp/ (the one before still waiting for its finisher)
    and one moved into clips/ but not indexed: recovery indexes them by when they started
    recording, not by their names (order IDs sort as they like), so the index's sequence is
    the station's and its last row the clip that recorded when the power went."""
    blob = write_clip(data / "scratch.mp4")
    (data / "scratch.mp4").unlink()
    at = [WALL0 + timedelta(seconds=s) for s in (0, 10, 20)]
    moved = data / "clips" / "2026" / "11" / "30" / "s_PO-Z_20261130T140506_789.mp4"
    moved.parent.mkdir(parents=True)
    moved.write_bytes(blob)
    put_tmp(data, "s_PO-Z_20261130T140506_789", b"", None).unlink()
    rel = moved.relative_to(data).as_posix()
    (data / "tmp" / "s_PO-Z_20261130T140506_789.open.json").write_text(json.dumps(journal(
        "PO-Z", first_wall=at[0].isoformat(), finish_reason="sealed", final_path=rel)))  # fmt: skip
    put_tmp(data, "s_PO-B_20261130T140516_789", blob, journal("PO-B", first_wall=at[1].isoformat()))
    put_tmp(data, "s_PO-A_20261130T140526_789", blob, journal("PO-A", first_wall=at[2].isoformat()))
    recover_data_dir(cfg)
    assert [(c.id, c.order_id, c.finish_reason) for c in sorted(rows(cfg), key=lambda c: c.id)] == [
        (1, "PO-Z", "sealed"),
        (2, "PO-B", "interrupted"),
        (3, "PO-A", "interrupted"),
    ]


def frames(first_t: float, last_t: float, step_s: float) -> dict[str, object]:
    """A journal's ``frames``: its first frame at ``WALL0``, its last ``last_t - first_t`` of
    camera time later, by a wall clock that stepped by ``step_s`` between them."""
    last = WALL0 + timedelta(seconds=last_t - first_t + step_s)
    return {
        "first_t": first_t,
        "first_wall": WALL0.isoformat(timespec="microseconds"),
        "last_t": last_t,
        "last_wall": last.isoformat(timespec="microseconds"),
    }


@pytest.mark.parametrize(
    ("extra", "step_s"),
    [
        ({}, None),  # a journal of an older version: dated by its first frame's clock
        ({"frames": frames(40.0, 41.7, 0.0004)}, None),  # jitter: no step
        ({"frames": frames(40.0, 41.7, 3600.0)}, 3600.0),
        ({"frames": frames(40.0, 41.7, -300.0)}, -300.0),
        ({"frames": {**frames(40.0, 41.7, 3600.0), "last_t": "41.7"}}, None),  # unreadable
        ({"frames": [40.0, 41.7]}, None),
    ],
    ids=["old-journal", "jitter", "forward-1-h", "back-5-min", "unreadable-t", "no-dict"],
)
def test_a_cut_clip_is_dated_by_the_clock_after_a_step_its_journal_saw(
    cfg: config_mod.Config, data: Path, extra: dict[str, object], step_s: float | None
) -> None:
    """The journal names the first and the last frame it saw (camera and wall time): recovery
    dates the cut clip as the recorder would have, by the clock after a step (NTP setting it
    right while it recorded), and states the step in its signed manifest; a journal without
    them (older versions) or with ones that do not read is dated by its first frame's clock,
    as before. Recovery dated a clip cut after an hour's step an hour early."""
    blob = write_clip(data / "scratch.mp4")
    (data / "scratch.mp4").unlink()
    put_tmp(data, "station-01_PO-77_20261130T140507_789", blob, journal(**extra))
    assert recover_data_dir(cfg).ok
    (clip,) = rows(cfg)
    manifest = json.loads((data / clip.manifest_path).read_text())
    started = WALL0 + timedelta(seconds=step_s or 0.0)
    assert clip.started_at == started and clip.ended_at == started + timedelta(seconds=2.4)
    assert manifest.get("clock_step_s") == step_s
    assert_clean(cfg)
