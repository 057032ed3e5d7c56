"""Crash recovery: finalise unfinished recordings and reconcile the index with the disk."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import math
import os
import shutil
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av

from station.config import Config
from station.errors import StationError
from station.floor.alarms import AlarmBoard
from station.proof import manifest as manifest_mod
from station.proof.finalizer import build_finalizers
from station.proof.log import ProofLog
from station.recording.recorder import (
    JOURNAL_SUFFIX,
    Finalizer,
    clip_times,
    manifest_body,
    write_manifest,
)
from station.recording.session import FinishReason
from station.recording.writer import MUX_OPTIONS
from station.store.clips import FLOOR_FIELDS, event_card
from station.store.files import fsync_dir, sha256_file, write_json_atomic
from station.store.ledger import ClipRecord, Ledger, ScanEventRecord, StoredClip, WaybillLink
from station.store.mp4box import iter_boxes
from station.store.retention import remove_clip_files

log = logging.getLogger(__name__)

LOCK_NAME = "station.lock"
UNKNOWN_ORDER = "unknown"
# Leftovers of interrupted atomic writes: never evidence themselves (the file they were going
# to replace is still there, or is rebuilt by recovery), so they are removed.
PARTIAL_SUFFIXES = (".json.tmp", ".remux.tmp", ".c2pa.tmp", ".repair.part")


class DataDirBusy(StationError):
    """Another station (or recovery) holds the data directory's lock."""


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Exclusive lock on ``<data>/station.lock`` (released by the kernel on kill -9 as well).
    A data dir that cannot be made or written is a StationError naming the fix."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StationError(
            f"cannot write the data dir {data_dir}: {exc.strerror or exc}; it must belong to "
            "this user (sudo -u packcam-station; systemd/packcam.tmpfiles), and the "
            "packcam-station unit may write only /var/lib/packcam: mount a disk there or add "
            "the folder to ReadWritePaths= in a drop-in (docs/raspberry-pi.md)"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DataDirBusy(
                f"{data_dir} is in use by another packcam station or recovery (lock {LOCK_NAME})"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


# ---- looking at a fragmented MP4 -------------------------------------------------------------


@dataclass(frozen=True)
class Mp4Probe:
    """What a (possibly cut-off) station MP4 holds, found without trusting it."""

    size: int
    good_end: int  # end of the last complete top-level box that leaves the file consistent
    has_moov: bool
    packets: int  # video packets the demuxer delivers
    first_pts_s: float | None
    last_pts_s: float | None
    frame_interval_s: float
    decoded: int  # frames decoded in the checked stretches (first and last group of pictures)
    checked: int  # packets fed to the decoder
    error: str | None  # the first demux/decode error, if any

    @property
    def torn(self) -> bool:
        return self.good_end < self.size

    @property
    def plays(self) -> bool:
        return self.packets > 0 and self.error is None and self.decoded == self.checked

    @property
    def span_s(self) -> float:
        if self.first_pts_s is None or self.last_pts_s is None:
            return 0.0
        return max(0.0, self.last_pts_s - self.first_pts_s)


def box_walk(path: Path) -> tuple[int, bool]:
    """(end of the last whole box after which the file is consistent, has a moov box).

    A ``moof`` only counts once its ``mdat`` is complete too. The boxes are those of
    ``station.store.mp4box.iter_boxes`` (its rules for size 0, size 1 and cut-off boxes; a
    zero-filled tail left by a power cut is not a box).
    """
    good = 0
    has_moov = pending_moof = False
    for box in iter_boxes(path):
        if box.kind == b"moov":
            has_moov = True
        if box.kind == b"moof":
            pending_moof = True
            continue
        if box.kind == b"mdat" or not pending_moof:
            pending_moof = False
            good = box.end
    return good, has_moov


def probe_mp4(path: Path) -> Mp4Probe:
    """Walk the boxes, demux every packet and decode the first and the last group of pictures.

    Decoding everything would make a station with a long interrupted clip start minutes late on
    a Pi; a cut-off file goes wrong at its end, so the end is what is decoded (and the start).
    """
    size = path.stat().st_size
    good_end, has_moov = box_walk(path)
    packets = decoded = checked = 0
    pts: list[float] = []
    error: str | None = None
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise ValueError("no video stream")
            stream = c.streams.video[0]
            tb = float(stream.time_base or 0) or 1 / 90_000
            first_gop_done = False
            tail: list[av.Packet[Any]] = []
            for packet in c.demux(stream):
                if packet.dts is None or not packet.size:
                    continue
                packets += 1
                if packet.pts is not None:
                    pts.append(packet.pts * tb)
                if packet.is_keyframe and packets > 1:
                    first_gop_done = True
                    tail = []
                if first_gop_done:
                    tail.append(packet)
                else:
                    checked += 1
                    decoded += len(stream.decode(packet))
            if first_gop_done:
                for packet in tail:
                    checked += 1
                    decoded += len(stream.decode(packet))
            decoded += len(stream.decode(None))  # the decoder's delayed frames
            decoded = min(decoded, checked)
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    deltas = [b - a for a, b in itertools.pairwise(pts) if b > a]
    interval = statistics.median(deltas) if deltas else 1 / 30
    return Mp4Probe(
        size=size,
        good_end=good_end,
        has_moov=has_moov,
        packets=packets,
        first_pts_s=min(pts) if pts else None,
        last_pts_s=max(pts) if pts else None,
        frame_interval_s=interval,
        decoded=decoded,
        checked=checked,
        error=error,
    )


def copy_prefix(src: Path, dst: Path, length: int) -> None:
    """Write the first ``length`` bytes of ``src`` to a new file ``dst`` and fsync it."""
    with src.open("rb") as f, dst.open("xb") as out:
        left = length
        while left and (block := f.read(min(left, 1 << 20))):
            out.write(block)
            left -= len(block)
        out.flush()
        os.fsync(out.fileno())


def remux_copy(src: Path, dst: Path) -> int:
    """Stream-copy every packet the demuxer still delivers into a new station-style MP4.

    Never re-encodes. Returns the packets copied; stops at the first demux error.
    """
    copied = 0
    with (
        av.open(str(src)) as inp,
        av.open(str(dst), "w", format="mp4", options=dict(MUX_OPTIONS)) as out,
    ):
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        try:
            for packet in inp.demux(vin):
                if packet.dts is None or not packet.size:
                    continue
                packet.stream = vout
                out.mux(packet)
                copied += 1
        except av.FFmpegError as exc:
            log.warning("remux of %s stopped after %d packets: %s", src.name, copied, exc)
    with dst.open("rb") as f:
        os.fsync(f.fileno())
    return copied


# ---- manifests <-> index records -------------------------------------------------------------


def record_from_manifest(body: dict[str, Any]) -> ClipRecord:
    """The index record a manifest (sidecar or signed log entry) describes."""
    return ClipRecord(
        order_id=str(body["order_id"]),
        station=str(body["station"]),
        started_at=datetime.fromisoformat(body["started_at"]),
        ended_at=datetime.fromisoformat(body["ended_at"]),
        duration_s=float(body["duration_s"]),
        frame_count=int(body["frame_count"]),
        finish_reason=str(body["finish_reason"]),
        pre_roll_s=float(body.get("pre_roll_s") or 0.0),
        path=str(body["path"]),
        manifest_path=str(body["manifest_path"]),
        size=int(body["size"]),
        sha256=str(body["sha256"]),
        waybills=tuple(
            WaybillLink(str(w["waybill"]), str(w.get("carrier", "")), float(w["t_clip_s"]))
            for w in body.get("waybills") or ()
        ),
        events=tuple(_event(e) for e in body.get("events") or ()),
        extra={k: body[k] for k in FLOOR_FIELDS if k in body},
    )


def _event(e: dict[str, Any]) -> ScanEventRecord:
    t = e.get("t_clip_s")
    return ScanEventRecord(
        kind=str(e["kind"]),
        text=str(e["text"]),
        source=str(e["source"]),
        wall=datetime.fromisoformat(e["wall"]),
        t_clip_s=None if t is None else float(t),
        note=str(e.get("note", "")),
        card=event_card(e),
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- the report ------------------------------------------------------------------------------


@dataclass
class RecoveryReport:
    """What one recovery pass did. ``ok`` is False when evidence is missing or a step failed."""

    recovered: list[str] = field(default_factory=list)  # unfinished clips now indexed
    repaired: list[str] = field(default_factory=list)  # ... of which cut or remuxed (+ original)
    indexed: list[str] = field(default_factory=list)  # finished clips that had no index row
    quarantined: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)  # sidecars written again
    deletions_completed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # indexed, not on disk (alarm)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.errors

    @property
    def changed(self) -> bool:
        return bool(
            self.recovered
            or self.indexed
            or self.quarantined
            or self.manifests
            or self.deletions_completed
        )

    def lines(self) -> list[str]:
        out: list[str] = []
        for label, items in (
            ("recovered (interrupted)", self.recovered),
            ("repaired (original kept)", self.repaired),
            ("indexed (had no row)", self.indexed),
            ("quarantined (no decodable frame)", self.quarantined),
            ("manifest written again", self.manifests),
            ("retention deletion completed", self.deletions_completed),
            ("MISSING from disk", self.missing),
            ("ERROR", self.errors),
        ):
            out.extend(f"{label}: {item}" for item in items)
        return out or ["nothing to recover: index and disk agree"]


# ---- recovery --------------------------------------------------------------------------------


class Recovery:
    """Finalises every unfinished recording of one data dir and reconciles index and disk.

    ``run`` (at station start, before the capture loop; or ``packcam recover``):

    1. removes leftovers of interrupted atomic writes (``*.json.tmp``, ``*.remux.tmp``, ...);
    2. each ``tmp/<name>.mp4`` (with or without its ``.open.json`` journal) is probed: no
       decodable frame -> moved to ``quarantine/``; cut off inside a fragment (or unreadable to
       the demuxer) -> the whole fragments are copied (or the packets stream-copied, never
       re-encoded) into a new file and the original bytes are kept in ``recovered/``; then it is
       moved into ``clips/YYYY/MM/DD/``, to be indexed by step 3 with finish reason
       "interrupted" under the journal's order ("unknown" without one);
    3. each file in ``clips/`` without an index row is indexed, in the order they were recorded
       (``recorded_order``): from its sidecar or its signed log entry when they match the bytes
       (the station stopped between signing and indexing), else with a new manifest from its
       journal (signed by the finalizers);
    4. each index row is checked against the disk: a missing file is logged at ERROR and raised
       as a persistent "clip-missing" alarm (the row stays); a missing sidecar is written again
       from the signed log; a file that retention had recorded as deleted is removed.

    Nothing is ever deleted but derived copies and retention's own decisions. Every step leaves
    a state the next pass picks up, so a kill -9 during recovery is safe and passes are
    idempotent. Runs on the caller's thread; ``salvage`` is also called by the recorder's
    finisher thread for a clip whose writer failed, while the capture loop runs: it only
    touches that clip's files.
    """

    def __init__(
        self,
        cfg: Config,
        ledger: Ledger,
        finalizers: Sequence[Finalizer] = (),
        *,
        alarms: AlarmBoard | None = None,
    ) -> None:
        self.cfg = cfg
        self.ledger = ledger
        self.finalizers = tuple(finalizers)
        self.alarms = alarms
        self.data_dir = cfg.station.data_dir
        self.tmp_dir = self.data_dir / "tmp"
        self.clips_dir = self.data_dir / "clips"
        self.quarantine_dir = self.data_dir / "quarantine"
        self.originals_dir = self.data_dir / "recovered"
        self.report = RecoveryReport()
        # temp clips moved into place this pass, not indexed yet: rel -> (probe, original kept)
        self._fresh: dict[str, tuple[Mp4Probe, str | None]] = {}

    # ---- entry points ----------------------------------------------------------------------

    def run(self) -> RecoveryReport:
        self.report = RecoveryReport()
        self._fresh = {}
        for d in (self.tmp_dir, self.clips_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._sweep_partials()
        journals = self._recover_tmp()
        self._index_orphans(journals)
        self._check_rows()
        for line in self.report.lines():
            if self.report.changed or not self.report.ok:
                log.warning("recovery: %s", line)
        if not self.report.changed and self.report.ok:
            log.info("recovery: index and disk agree")
        return self.report

    def salvage(self, mp4: Path, meta: dict[str, Any]) -> ClipRecord | None:
        """The recorder's ``Salvage``: finalise one temp clip whose writer failed; or index one
        already in place in ``clips/`` that its index write missed (a full disk), from the
        manifest it was signed with when there is one: the file is never changed."""
        self.report = RecoveryReport()
        if self.clips_dir in mp4.parents:
            return self._index_file(mp4, meta, None, False)
        return self._finalise_tmp(mp4.name[: -len(".mp4")], mp4, meta)

    def _finalise_tmp(
        self, stem: str, source: Path, meta: dict[str, Any] | None
    ) -> ClipRecord | None:
        """Move one temp clip into place (``_move_tmp``) and index it at once."""
        moved = self._move_tmp(stem, source, meta)
        return None if moved is None else self._index_moved(*moved)

    # ---- 1. leftovers ---------------------------------------------------------------------

    def _sweep_partials(self) -> None:
        for root in (self.tmp_dir, self.clips_dir):
            for pattern in ("*.tmp", "*.part"):  # no stat of every clip: months of them
                for p in root.rglob(pattern):
                    if p.name.endswith(PARTIAL_SUFFIXES) and p.is_file():
                        log.info("recovery: removing the leftover of an interrupted write: %s", p)
                        p.unlink(missing_ok=True)

    # ---- 2. unfinished recordings -------------------------------------------------------

    def _recover_tmp(self) -> dict[str, dict[str, Any]]:
        """Move every temp clip into place (``_move_tmp``), not indexed yet; return the
        journals of clips in ``clips/`` without an index row (those moved now included)."""
        stems: set[str] = set()
        for p in self.tmp_dir.iterdir():
            if p.name.endswith(".mp4"):
                stems.add(p.name[: -len(".mp4")])
            elif p.name.endswith(JOURNAL_SUFFIX):
                stems.add(p.name[: -len(JOURNAL_SUFFIX)])
        moved: dict[str, dict[str, Any]] = {}
        for stem in sorted(stems):
            mp4 = self.tmp_dir / f"{stem}.mp4"
            journal = self.tmp_dir / f"{stem}{JOURNAL_SUFFIX}"
            meta = _read_json(journal)
            final = meta.get("final_path") if meta else None
            if (
                isinstance(final, str)
                and not mp4.exists()
                and self.ledger.clip_by_path(final) is not None
            ):
                # Indexed, then cut off before the recorder removed the journal: done.
                log.info("recovery: removing the journal of the indexed clip %s", final)
                journal.unlink(missing_ok=True)
                continue
            if meta is not None and isinstance(final, str) and (self.data_dir / final).is_file():
                moved[final] = meta  # moved into place; step 3 indexes it with this journal
                if mp4.exists():
                    log.error("recovery: %s and %s both exist; recovering both", mp4, final)
                    self._try(stem, self._move_tmp_into, moved, stem, mp4,
                              {**meta, "final_path": None})  # fmt: skip
                continue
            if isinstance(final, str) and self.ledger.clip_by_path(final) is not None:
                journal.unlink(missing_ok=True)  # indexed already; its file is checked in step 4
                continue
            source = mp4 if mp4.exists() else None
            saved = meta.get("original_saved_as") if meta else None
            if source is None and isinstance(saved, str) and (self.data_dir / saved).is_file():
                source = self.data_dir / saved  # a repair was interrupted: start it again
            if source is None:
                found = self._find_in_clips(stem)
                if found is None:
                    self._journal_without_clip(stem, journal, meta)
                elif self.ledger.clip_by_path(found) is not None:
                    journal.unlink(missing_ok=True)
                else:
                    moved[found] = meta or {}
                continue
            self._try(stem, self._move_tmp_into, moved, stem, source, meta)
        return moved

    def _move_tmp_into(
        self, moved: dict[str, dict[str, Any]], stem: str, source: Path, meta: dict[str, Any] | None
    ) -> None:
        done = self._move_tmp(stem, source, meta)
        if done is not None:
            final, meta, facts, original = done
            rel = final.relative_to(self.data_dir).as_posix()
            moved[rel] = meta
            self._fresh[rel] = (facts, original)

    def _try(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (OSError, StationError, av.FFmpegError, KeyError, ValueError) as exc:
            log.error("recovery of %s failed (left as it is for the next pass): %s", what, exc)
            self.report.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return None

    def _find_in_clips(self, stem: str) -> str | None:
        """A clip moved into place under this temp name (journals of older versions)."""
        for pattern in (f"{stem}.mp4", f"{stem}-*.mp4"):
            for f in sorted(self.clips_dir.rglob(pattern)):
                return f.relative_to(self.data_dir).as_posix()
        return None

    def _journal_without_clip(self, stem: str, journal: Path, meta: dict[str, Any] | None) -> None:
        order = (meta or {}).get("order_id")
        msg = (
            f"the journal of {stem} (order {order!r}) is in tmp/ but its video is nowhere: "
            "it was removed by hand or lost"
        )
        log.error("recovery: %s", msg)
        self.report.missing.append(f"tmp/{stem}.mp4")
        if self.alarms is not None:
            self.alarms.raise_("clip-missing", f"tmp/{stem}.mp4", msg)
        self._quarantine(journal)

    def _move_tmp(
        self, stem: str, source: Path, meta: dict[str, Any] | None
    ) -> tuple[Path, dict[str, Any], Mp4Probe, str | None] | None:
        """Probe (and repair) one temp clip and move it into ``clips/``, its journal naming
        where it went: the final path, the journal, the probe and the original kept (None: as
        recorded); None when nothing was kept (quarantine)."""
        journal = self.tmp_dir / f"{stem}{JOURNAL_SUFFIX}"
        if meta is None:
            meta = {
                "order_id": None,
                "note": f"no journal: the order of {stem}.mp4 is unknown",
            }
            write_json_atomic(journal, meta)  # the repair steps below are journaled in it
        facts = probe_mp4(source)
        if facts.packets == 0 or not facts.has_moov:
            log.warning(
                "recovery: %s has no decodable frame (%s); moving it to quarantine/",
                source,
                facts.error or "no video packets",
            )
            self._quarantine(source, journal)
            return None
        method, original = "as-recorded", None
        if facts.torn or not facts.plays:
            repaired = self._repair(stem, source, facts, meta, journal)
            if repaired is None:
                if facts.decoded == 0:
                    log.warning(
                        "recovery: no frame of %s decodes (%s); moving it to quarantine/",
                        source,
                        facts.error,
                    )
                    self._quarantine(source, journal)
                    return None
                log.warning(
                    "recovery: %s could not be repaired (%s); kept as recorded",
                    source.name,
                    facts.error,
                )
            else:
                source, facts, method, original = repaired
        first_wall = _parse_wall(meta.get("first_wall") or meta.get("scan_wall"))
        if first_wall is None:
            mtime = datetime.fromtimestamp(source.stat().st_mtime).astimezone()
            first_wall = mtime - timedelta(seconds=facts.span_s)
        final = self._final_path(stem, first_wall)
        rel = final.relative_to(self.data_dir).as_posix()
        recovery = {
            "recovered_utc": _utc_now(),
            "method": method,
            "note": "the recording was interrupted (station stopped, power cut or write error)"
            " and finalised by crash recovery",
        }
        ended = meta.get("finish_reason")
        if ended and ended != FinishReason.INTERRUPTED.value:
            # Stopped (sealed, the next order, ...) and journaled so, then cut off while it
            # waited for its last frames or for the finisher: what ended it is what it says.
            # (A writer that failed as it finished journals "interrupted", unless the disk was
            # too full for even that.)
            recovery["note"] = (
                f"the clip had ended ({ended}), but it was not finished: the station stopped"
                " (power cut or crash), or its writer failed, before it was; finalised by"
                " crash recovery"
            )
            if meta.get("stopped_wall"):
                recovery["stopped_at"] = meta["stopped_wall"]
        if original:
            recovery["original"] = original
        if meta.get("error"):
            recovery["error"] = meta["error"]
        if not meta.get("order_id"):
            recovery["note"] += (
                f"; its journal was missing, so the order is unknown (file tmp/{stem}.mp4)"
            )
        if facts.error is not None or not facts.plays:
            recovery["decode_error"] = facts.error or "frames missing when decoding"
        meta = {**meta, "final_path": rel, "recovery": recovery}
        if original:  # the repair moved it out of tmp/: a crash before the move finds it there
            meta["original_saved_as"] = original
        write_json_atomic(journal, meta)  # a crash after the move: step 3 indexes it with this
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, final)
        fsync_dir(final.parent)
        fsync_dir(source.parent)
        return final, meta, facts, original

    def _index_moved(
        self, final: Path, meta: dict[str, Any], facts: Mp4Probe, original: str | None
    ) -> ClipRecord | None:
        """Index a temp clip ``_move_tmp`` moved into place."""
        record = self._index_file(final, meta, facts, fresh=True)
        if record is not None:
            rel = final.relative_to(self.data_dir).as_posix()
            self.report.recovered.append(rel)
            if original:
                self.report.repaired.append(f"{rel} (original: {original})")
        return record

    def _repair(
        self, stem: str, source: Path, facts: Mp4Probe, meta: dict[str, Any], journal: Path
    ) -> tuple[Path, Mp4Probe, str, str] | None:
        """A copy that plays (whole fragments, else a stream copy), the original kept in
        ``recovered/``; None when neither copy has a decodable frame."""
        part = self.tmp_dir / f"{stem}.repair.part"
        fixed: Mp4Probe | None = None
        for method in ("cut-to-last-complete-fragment", "stream-copy-remux"):
            part.unlink(missing_ok=True)
            try:
                if method.startswith("cut"):
                    copy_prefix(source, part, facts.good_end)
                else:
                    remux_copy(source, part)
                fixed = probe_mp4(part)
            except (OSError, av.FFmpegError, IndexError) as exc:
                log.warning("recovery: %s of %s failed: %s", method, source.name, exc)
                fixed = None
            if fixed is not None and fixed.plays:
                break
        if fixed is None or not fixed.plays:
            part.unlink(missing_ok=True)
            return None
        if source.parent == self.tmp_dir:
            self.originals_dir.mkdir(parents=True, exist_ok=True)
            saved = _unique(self.originals_dir / f"{stem}.orig.mp4")
            saved_rel = saved.relative_to(self.data_dir).as_posix()
            write_json_atomic(journal, {**meta, "original_saved_as": saved_rel})
            os.replace(source, saved)
            fsync_dir(saved.parent)
            fsync_dir(self.tmp_dir)
        else:
            saved_rel = source.relative_to(self.data_dir).as_posix()
        log.warning(
            "recovery: %s ended inside a fragment or did not decode (%s); %s "
            "(%d of %d frames), original bytes kept as %s",
            stem,
            facts.error or "torn",
            method,
            fixed.packets,
            facts.packets,
            saved_rel,
        )
        return part, fixed, method, saved_rel

    # ---- 3. files without a row ----------------------------------------------------------

    def _clip_files(self) -> list[str]:
        """Every ``clips/**.mp4`` relative to the data dir (os.walk: pathlib costs ~20 us a
        file, which is seconds at the start of a station holding months of clips)."""
        out: list[str] = []
        base = str(self.data_dir)
        for dirpath, _dirs, files in os.walk(self.clips_dir):
            rel_dir = os.path.relpath(dirpath, base).replace(os.sep, "/")
            out.extend(f"{rel_dir}/{name}" for name in files if name.endswith(".mp4"))
        return sorted(out)

    def _index_orphans(self, journals: dict[str, dict[str, Any]]) -> None:
        """Index every clip in ``clips/`` without a row, those just moved from tmp/ included,
        in the order they were recorded (``recorded_order``): the index's sequence is the
        station's, and at its start the station takes its last indexed clip for the one its
        stop cut (a clip still being signed when the power went was recorded before the one
        recording then, whatever their names)."""
        known = set(self.ledger.clip_paths())
        orphans = [rel for rel in self._clip_files() if rel not in known]
        starts = {rel: self._recorded_start(rel, journals.get(rel)) for rel in orphans}
        for rel in recorded_order(starts):
            meta = journals.get(rel)
            fresh = self._fresh.pop(rel, None)
            if fresh is not None and meta is not None:
                self._try(rel, self._index_moved, self.data_dir / rel, meta, *fresh)
                continue
            record = self._try(rel, self._index_file, self.data_dir / rel, meta, None, False)
            if record is not None:
                self.report.indexed.append(rel)

    def _recorded_start(self, rel: str, meta: dict[str, Any] | None) -> datetime | None:
        """When the clip at ``rel`` started recording, as its journal or its manifest says
        (None: neither does)."""
        started = _parse_wall((meta or {}).get("first_wall") or (meta or {}).get("scan_wall"))
        if started is None:
            sidecar = _read_json((self.data_dir / rel).with_suffix(".json"))
            started = _parse_wall((sidecar or {}).get("started_at"))
        return started

    def _index_file(
        self, final: Path, meta: dict[str, Any] | None, facts: Mp4Probe | None, fresh: bool
    ) -> ClipRecord | None:
        """Index a clip in ``clips/``: reuse its signed manifest when there is one for these
        bytes, else write a manifest (run the finalizers). ``fresh``: just recovered from tmp/."""
        rel = final.relative_to(self.data_dir).as_posix()
        if self.ledger.clip_by_path(rel) is not None:
            return None
        digest = sha256_file(final)
        sidecar = final.with_suffix(".json")
        body = None if fresh else self._existing_manifest(final, rel, digest, sidecar)
        if body is None:
            if facts is None:
                facts = probe_mp4(final)
            if facts.packets == 0:
                log.warning("recovery: %s has no decodable frame; moving it to quarantine/", rel)
                self._quarantine(final, sidecar)
                return None
            body = self._new_manifest(final, rel, digest, meta or {}, facts)
        record = record_from_manifest(body)
        clip_id = self.ledger.add_clip(record)
        self._drop_journal_for(rel)
        log.warning(
            "recovery: indexed %s as %r (order %r, %d frames, id %d)",
            rel,
            record.finish_reason,
            record.order_id,
            record.frame_count,
            clip_id,
        )
        return replace(record, id=clip_id)

    def _drop_journal_for(self, rel: str) -> None:
        for j in self.tmp_dir.glob(f"*{JOURNAL_SUFFIX}"):
            meta = _read_json(j)
            if meta and meta.get("final_path") == rel:
                j.unlink(missing_ok=True)

    def _existing_manifest(
        self, final: Path, rel: str, digest: str, sidecar: Path
    ) -> dict[str, Any] | None:
        data = _read_json(sidecar)
        if data and data.get("sha256") == digest and data.get("path") == rel:
            return data
        logged = self._logged_manifest(rel, digest)
        if logged is not None:
            write_json_atomic(sidecar, logged)
            self.report.manifests.append(sidecar.relative_to(self.data_dir).as_posix())
        return logged

    def _logged_manifest(self, rel: str, digest: str) -> dict[str, Any] | None:
        """The signed sidecar of ``rel`` rebuilt from the proof log, when it holds these bytes."""

        with contextlib.closing(ProofLog.in_data_dir(self.data_dir)) as plog:
            entry = plog.entry_for_path(rel)
        if entry is None or entry.clip_sha256 != digest:
            return None
        return manifest_mod.from_canonical(entry.manifest, entry.signature).sidecar()

    def _new_manifest(
        self, final: Path, rel: str, digest: str, meta: dict[str, Any], facts: Mp4Probe
    ) -> dict[str, Any]:
        frames = _journaled_frames(meta)
        if frames is not None:
            # Dated as the recorder dates a clip: by the clock after a step it journaled.
            started, ended, step = clip_times(*frames, span_s=facts.span_s)
        else:  # a journal of an older version, or none: no step can be known
            wall = _parse_wall(meta.get("first_wall") or meta.get("scan_wall"))
            if wall is None:
                mtime = datetime.fromtimestamp(final.stat().st_mtime).astimezone()
                wall = mtime - timedelta(seconds=facts.span_s)
            started, ended, step = clip_times(wall, None, None, None, facts.span_s)
        recovery = meta.get("recovery") or {
            "recovered_utc": _utc_now(),
            "method": "as-recorded",
            "note": "the clip was in place but not indexed (the station stopped before it "
            "was); indexed by crash recovery",
        }
        order = meta.get("order_id") or UNKNOWN_ORDER
        if order == UNKNOWN_ORDER and "journal was missing" not in recovery.get("note", ""):
            recovery = {
                **recovery,
                "note": recovery.get("note", "") + "; the order is unknown"
                f" (no journal for {final.name})",
            }
        record = ClipRecord(
            order_id=str(order),
            station=str(meta.get("station") or self.cfg.station.name),
            started_at=started,
            ended_at=ended,
            duration_s=round(facts.span_s + facts.frame_interval_s, 3),
            frame_count=facts.packets,
            finish_reason=str(meta.get("finish_reason") or FinishReason.INTERRUPTED.value),
            pre_roll_s=float(meta.get("pre_roll_s") or 0.0),
            path=rel,
            manifest_path=final.with_suffix(".json").relative_to(self.data_dir).as_posix(),
            size=final.stat().st_size,
            sha256=digest,
            waybills=tuple(
                WaybillLink(str(w["waybill"]), str(w.get("carrier", "")), float(w["t_clip_s"]))
                for w in meta.get("waybills") or ()
            ),
            events=tuple(_event(e) for e in meta.get("events") or ()),
            extra={
                **(meta.get("extra") or {}),
                **({"clock_step_s": step} if step is not None else {}),
                "recovery": recovery,
            },
        )
        return write_manifest(final, rel, record, self.finalizers)

    # ---- 4. rows without files ------------------------------------------------------------

    def _check_rows(self) -> None:
        alarmed = {a.subject for a in self.ledger.alarms() if a.kind == "clip-missing"}
        base = str(self.data_dir)
        for c in self.ledger.stored_clips(include_deleted=True):
            exists = os.path.isfile(os.path.join(base, c.path))
            if c.deleted_utc is not None:
                if exists and not self._is_clip(c):
                    msg = (
                        f"{c.path} is on disk but is not the clip retention deleted there "
                        "(other bytes): kept, not indexed; give it a name of its own and run "
                        "`packcam recover`"
                    )
                    log.error("recovery: %s", msg)
                    self.report.errors.append(msg)
                    continue
                if exists or os.path.exists(os.path.join(base, c.manifest_path)):
                    remove_clip_files(self.data_dir, c.path, c.manifest_path)
                    log.warning("recovery: completed the retention deletion of %s", c.path)
                    self.report.deletions_completed.append(c.path)
                continue
            if not exists:
                msg = (
                    f"clip {c.path} (order {c.order_id!r}, id {c.id}, sha256 "
                    f"{c.sha256[:16]}...) is indexed but missing from disk"
                )
                log.error("recovery: %s", msg)
                self.report.missing.append(c.path)
                if self.alarms is not None:
                    self.alarms.raise_("clip-missing", c.path, msg)
                else:
                    self.ledger.raise_alarm("clip-missing", c.path, msg)
                continue
            if c.path in alarmed:
                self._clear_missing(c.path)
            if not os.path.exists(os.path.join(base, c.manifest_path)):
                sidecar = self.data_dir / c.manifest_path
                self._try(c.path, self._rewrite_sidecar, c.id, c.path, c.sha256, sidecar)

    def _is_clip(self, c: StoredClip) -> bool:
        """Are the bytes at ``c.path`` the indexed clip's (size first: hashing is slow)?"""
        path = self.data_dir / c.path
        return path.stat().st_size == c.size and sha256_file(path) == c.sha256

    def _clear_missing(self, rel: str) -> None:
        log.warning("recovery: %s is back on disk", rel)
        if self.alarms is not None:
            self.alarms.clear("clip-missing", rel)
        else:
            self.ledger.clear_alarm("clip-missing", rel)

    def _rewrite_sidecar(self, clip_id: int, rel: str, digest: str, sidecar: Path) -> None:
        data = self._logged_manifest(rel, digest)
        if data is None:
            record = self.ledger.clip(clip_id)
            if record is None:
                return
            data = manifest_body(
                record,
                regenerated={
                    "utc": _utc_now(),
                    "note": "the sidecar was missing and no signed manifest was logged for "
                    "these bytes: rebuilt from the index, unsigned",
                },
            )
        write_json_atomic(sidecar, data)
        log.warning("recovery: wrote the missing manifest %s", sidecar.name)
        self.report.manifests.append(sidecar.relative_to(self.data_dir).as_posix())

    # ---- helpers --------------------------------------------------------------------------

    def _quarantine(self, *paths: Path) -> None:
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        for p in paths:
            if not p.exists():
                continue
            dest = _unique(self.quarantine_dir / p.name)
            shutil.move(str(p), dest)
            log.warning("recovery: moved %s to %s", p, dest.relative_to(self.data_dir))
            if p.suffix == ".mp4":
                self.report.quarantined.append(dest.relative_to(self.data_dir).as_posix())
        fsync_dir(self.quarantine_dir)

    def _final_path(self, stem: str, first_wall: datetime) -> Path:
        def indexed(p: Path) -> bool:  # a deleted clip's row keeps its path
            return self.ledger.clip_by_path(p.relative_to(self.data_dir).as_posix()) is not None

        return _unique(self.clips_dir / first_wall.strftime("%Y/%m/%d") / f"{stem}.mp4", indexed)


def _unique(path: Path, taken: Callable[[Path], bool] = lambda p: False) -> Path:
    """``path``, or ``name-1.ext``, ``name-2.ext``, ... : never overwrite anything, nor take a
    path ``taken`` says is someone else's."""
    n, cand = 1, path
    base = path.name.split(".", 1)
    while cand.exists() or cand.with_suffix(".json").exists() or taken(cand):
        suffix = "." + base[1] if len(base) > 1 else ""
        cand = path.with_name(f"{base[0]}-{n}{suffix}")
        n += 1
    return cand


def recorded_order(starts: dict[str, datetime | None]) -> list[str]:
    """The clips ``starts`` names (path -> when it started recording, None: unknown) in the
    order they were recorded: by start, ties by path; those of unknown start first (no
    journal, no manifest: not the clip a journal shows recording at the cut)."""
    known = sorted((t.astimezone(UTC), rel) for rel, t in starts.items() if t is not None)
    return sorted(rel for rel, t in starts.items() if t is None) + [rel for _t, rel in known]


def _journaled_frames(
    meta: dict[str, Any],
) -> tuple[datetime, float, datetime, float] | None:
    """The first and the last frame a clip's journal names, by wall and camera time (the
    recorder's ``frames``): None when it names none (no frame yet, a journal of an older
    version) or they do not read."""
    frames = meta.get("frames")
    if not isinstance(frames, dict):
        return None
    first_wall, last_wall = (
        _parse_wall(frames.get("first_wall")),
        _parse_wall(frames.get("last_wall")),
    )
    first_t, last_t = _camera_t(frames.get("first_t")), _camera_t(frames.get("last_t"))
    if first_wall is None or last_wall is None or first_t is None or last_t is None:
        return None
    return first_wall, first_t, last_wall, last_t


def _camera_t(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _parse_wall(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.astimezone()


def recover_data_dir(
    cfg: Config, *, alarms: AlarmBoard | None = None, finalizers: Sequence[Finalizer] | None = None
) -> RecoveryReport:
    """Lock the data dir, run one recovery pass with the configured finalizers, and close."""

    with data_dir_lock(cfg.station.data_dir):
        # the lock is the station's: the capture loop's writes a crash left in the journal
        # are committed here too
        ledger = Ledger.in_data_dir(cfg.station.data_dir, capture_writes=True)
        own = finalizers is None
        fins: Sequence[Finalizer] = build_finalizers(cfg) if finalizers is None else finalizers
        try:
            board = alarms or AlarmBoard(ledger, cfg.retention.alarm_command)
            return Recovery(cfg, ledger, fins, alarms=board).run()
        finally:
            if own:
                for f in fins:
                    close = getattr(f, "close", None)
                    if close is not None:
                        close()
            ledger.close()


__all__ = [
    "DataDirBusy",
    "Mp4Probe",
    "Recovery",
    "RecoveryReport",
    "box_walk",
    "copy_prefix",
    "data_dir_lock",
    "probe_mp4",
    "record_from_manifest",
    "recover_data_dir",
    "remux_copy",
]
