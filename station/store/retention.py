"""Retention: the pure "what may be deleted now" decision, the deleter and the disk-space guard."""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

from station.config import Config, RetentionSection
from station.errors import LedgerError, StationError
from station.floor.alarms import AlarmBoard
from station.proof.canonical import canonical_json
from station.store.ledger import Ledger, StoredClip

log = logging.getLogger(__name__)

DELETION_TYPE = "packcam-retention-deletion"
DELETION_VERSION = 1
REASON_FLOOR = "free space below the floor"
ARCHIVE_MISSING = "archive-missing"  # the alarm: an archived clip's bucket copy is gone or other

# Why a clip is not deleted (the keys of Plan.kept).
HELD = "on legal hold"
YOUNG = "younger than the minimum age"
UNARCHIVED = "not archived yet"
UNFINISHED = "not finished"


# ---- the pure decision ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """What the decision needs to know about one clip."""

    id: int
    started_at: datetime  # aware
    size: int
    legal_hold: bool = False
    archived: bool = False
    finished: bool = True
    kind: str = "order"  # "return": an unboxing clip, kept min_age_days_return

    @classmethod
    def from_stored(cls, c: StoredClip) -> Candidate:
        return cls(
            c.id, c.started_at, c.size, c.legal_hold, c.archived, c.deleted_utc is None, c.kind
        )


@dataclass(frozen=True)
class Policy:
    min_age_days: float = 90.0
    free_floor_bytes: int = 0
    free_floor_percent: float = 0.0
    archive_required: bool = False
    min_age_days_return: float | None = None  # None: the same as min_age_days

    @classmethod
    def from_config(cls, r: RetentionSection, *, archiving: bool) -> Policy:
        """``archiving``: ``[archive] enabled``; only then is there an archive to wait for."""
        return cls(
            r.min_age_days,
            r.free_floor_mb * 1024 * 1024,
            r.free_floor_percent,
            r.archive_required and archiving,
            r.min_age_days_return if r.min_age_days_return >= 0 else None,
        )

    def min_age(self, kind: str) -> float:
        """Days a clip of ``kind`` is kept at least (returns may have their own window)."""
        if kind == "return" and self.min_age_days_return is not None:
            return self.min_age_days_return
        return self.min_age_days

    def floor(self, total_bytes: int) -> int:
        """Bytes that must stay free: the larger of the absolute and the relative floor.

        The percent is taken as written (0.07, not the binary float nearest to it): float
        arithmetic made 0.07 % of 10,000 bytes 8, one byte off the 7 a person works out."""
        percent = Fraction(repr(self.free_floor_percent))
        return max(self.free_floor_bytes, math.ceil(total_bytes * percent / 100))


@dataclass(frozen=True)
class Plan:
    """Deletions needed now, oldest first, and whether they reach the floor."""

    deletions: tuple[Candidate, ...]
    floor_bytes: int
    free_bytes: int
    free_after: int  # free bytes once every deletion is done (sizes as indexed)
    floor_reached: bool
    kept: Mapping[str, int] = field(default_factory=dict)  # reason -> clips that may not go
    cache_bytes: int = 0  # bytes of the caches to free first, before any of the deletions

    @property
    def below_floor(self) -> bool:
        return self.free_bytes < self.floor_bytes


def age_starts(
    clips: Sequence[Candidate], now: datetime, gone: Sequence[tuple[int, datetime]] = ()
) -> dict[int, datetime]:
    """Per clip id, the start its age counts from: a start no earlier than it really began.

    Ids are recording order; start times are the station clock's. The anchor of a clip is the
    latest start, not in the future, of the clips indexed before it (lower ids; ``gone``: the
    (id, start) of deleted clips, anchors only). A clip dated no earlier than its anchor counts
    from its own start. A clip dated earlier (the clock was set back, or the station booted
    with it wrong: a Pi has no RTC) has no date to trust: it began after its anchor and before
    the next clip dated right, so it counts from the start of the first later clip dated no
    earlier than its anchor; with none yet, from ``now`` (young: never deleted on a guess).
    A clip dated in the future (the clock was fast) is no anchor: it would keep every clip
    after it young for as long.
    """
    kept = {c.id for c in clips}
    seq = sorted([*((c.id, c.started_at) for c in clips), *(a for a in gone if a[0] not in kept)])
    starts: dict[int, datetime] = {}
    waiting: deque[tuple[int, datetime]] = deque()  # (id, anchor) of clips dated too early
    latest: datetime | None = None
    for cid, start in seq:
        if cid in kept:
            while waiting and waiting[0][1] <= start:  # anchors rise with ids: oldest first
                starts[waiting.popleft()[0]] = start
            if latest is not None and start < latest:
                waiting.append((cid, latest))
            else:
                starts[cid] = start
        if start <= now and (latest is None or start > latest):
            latest = start
    for cid, _ in waiting:
        starts[cid] = now
    return starts


def why_kept(
    clip: Candidate, now: datetime, policy: Policy, started_at: datetime | None = None
) -> str | None:
    """The reason ``clip`` may not be deleted now, or None when it may.

    ``started_at`` is the start its age counts from (``age_starts``); its own by default.
    """
    if not clip.finished:
        return UNFINISHED
    if clip.legal_hold:
        return HELD
    # A clip "from the future" (the clock was wrong) counts as young: never delete on a guess.
    start = clip.started_at if started_at is None else started_at
    if now - start < timedelta(days=policy.min_age(clip.kind)):
        return YOUNG
    if policy.archive_required and not clip.archived:
        return UNARCHIVED
    return None


def plan(
    clips: Sequence[Candidate],
    *,
    now: datetime,
    free_bytes: int,
    total_bytes: int,
    policy: Policy,
    gone: Sequence[tuple[int, datetime]] = (),
    reclaimable: int = 0,
) -> Plan:
    """Pure: which clips to delete, oldest first, to get free space up to the floor.

    ``reclaimable``: bytes the caches of derived files hold (key frames, evidence bundles:
    made again from the clips): they count as free space, and go before any clip
    (``cache_bytes``: as much of them as the floor needs).

    Never a clip on legal hold, younger than ``min_age_days`` (``min_age_days_return`` for a
    return clip), not finished, or not archived when ``archive_required``. Age and order
    count from ``age_starts`` (a clock set wrong makes no clip look older than it is, nor
    newer clips go first; ``gone``: deleted clips, anchors only). Deletes nothing while free
    space is at or above the floor and stops as soon as it would be reached;
    ``floor_reached`` is False when even deleting every eligible clip is not enough.
    """
    floor = policy.floor(total_bytes)
    starts = age_starts(clips, now, gone)
    kept: Counter[str] = Counter()
    eligible: list[Candidate] = []
    for c in clips:
        why = why_kept(c, now, policy, starts[c.id])
        if why is None:
            eligible.append(c)
        else:
            kept[why] += 1
    eligible.sort(key=lambda c: (starts[c.id], c.id))
    deletions: list[Candidate] = []
    from_caches = min(max(0, floor - free_bytes), max(0, reclaimable))
    free = free_bytes + from_caches
    for c in eligible:
        if free >= floor:
            break
        deletions.append(c)
        free += c.size
    return Plan(tuple(deletions), floor, free_bytes, free, free >= floor, dict(kept), from_caches)


# ---- the edges: disk probe, deletion records, the deleter -------------------------------------


@dataclass(frozen=True)
class DiskSpace:
    free: int  # bytes available to this process
    total: int


DiskProbe = Callable[[], DiskSpace]


def disk_probe(path: Path) -> DiskProbe:
    """The real probe: ``statvfs`` of the filesystem holding ``path``."""

    def probe() -> DiskSpace:
        u = shutil.disk_usage(path)
        return DiskSpace(u.free, u.total)

    return probe


# (object key, indexed size, indexed SHA-256, the local clip) -> None when the bucket still holds
# the bytes the archiver sent, else why not; raises StationError when the bucket cannot be asked.
# The fleet side is ObjectStore.check_archived (a HEAD, and the bytes proven by the store's
# checksum or a read-back); retention never talks to the bucket itself.
ArchiveCheck = Callable[[str, int, str, Path], str | None]


class DerivedFiles(Protocol):
    """A cache of files made from the clips and made again on demand (the site's key frames,
    its evidence bundles): retention frees them before it deletes any clip for space."""

    def usage(self) -> int:
        """Bytes the cache takes on disk."""
        ...

    def release(self, need: int) -> int:
        """Free at least ``need`` bytes if the cache holds them; the bytes freed."""
        ...


# (canonical bytes) -> (signature, key fingerprint); None when proofs are off.
Signer = Callable[[bytes], tuple[bytes, str]]


def deletion_record(
    clip: StoredClip,
    *,
    station: str,
    deleted_at: datetime,
    reason: str,
    policy: Policy,
    floor_bytes: int,
    free_bytes: int,
) -> dict[str, Any]:
    """What a retention deletion states (signed by the station key, checked by the audit)."""
    return {
        "type": DELETION_TYPE,
        "version": DELETION_VERSION,
        "station": station,
        "clip_id": clip.id,
        "order_id": clip.order_id,
        "path": clip.path,
        "sha256": clip.sha256,
        "size": clip.size,
        "started_utc": clip.started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "deleted_utc": deleted_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reason": reason,
        "min_age_days": policy.min_age(clip.kind),  # the age rule applied to this clip
        "archive_required": policy.archive_required,
        "floor_bytes": floor_bytes,
        "free_bytes": free_bytes,
    }


def remove_clip_files(data_dir: Path, path: str, manifest_path: str) -> None:
    """Unlink a clip and its JSON sidecar (either may already be gone) and sync the directory."""
    clip = data_dir / path
    for p in (clip, data_dir / manifest_path):
        p.unlink(missing_ok=True)
    try:
        fd = os.open(clip.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RetentionManager:
    """Keeps free space above the floor by deleting what the policy allows; guards new clips.

    ``check`` probes free space, plans, deletes (record first, signed; then file and sidecar)
    and updates the guard: below the floor with nothing left to delete, ``refusal`` returns a
    message (no new clips) and the "disk-full" alarm is raised; below half the floor,
    ``must_finish_clip`` is True (the capture loop finishes the open clip at once, while there
    is still room for its index and manifest).

    With ``archive_required`` in force a clip goes only after ``archive_check`` (a HEAD, and
    the bytes proven by the store's checksum or read back) has found its bucket copy still
    there and the one sent: the mark alone is not trusted, as an object may be deleted or
    replaced after it was verified. A copy gone or other keeps the
    clip, clears its mark (the archiver sends it again) and raises the "archive-missing" alarm;
    a bucket that cannot be asked keeps every archived clip this round, marks untouched.

    Below the floor, the ``caches`` of derived files (the site's key frames, its evidence
    bundles: made again from the clips) are freed first, as far as the floor needs; a clip is
    deleted only for what they cannot free.

    Threads: ``start`` runs one ``check`` on the caller's thread, then one every
    ``check_every_s`` on the daemon thread "retention"; ``poke`` (after each finished clip)
    makes it check at once. ``refusal``/``must_finish_clip`` are called by the capture thread:
    they read plain attributes and, while refusing, re-probe free space (a ``statvfs``, at most
    once a second) so freed space is noticed without waiting for the next check.
    """

    def __init__(
        self,
        cfg: Config,
        ledger: Ledger,
        *,
        probe: DiskProbe | None = None,
        alarms: AlarmBoard | None = None,
        signer: Signer | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] | None = None,
        archive_check: ArchiveCheck | None = None,
        caches: Sequence[DerivedFiles] = (),
    ) -> None:

        self.cfg = cfg
        self.ledger = ledger
        self.data_dir = cfg.station.data_dir
        self.policy = Policy.from_config(cfg.retention, archiving=cfg.archive.enabled)
        self.every = cfg.retention.check_every_s
        self.probe = probe or disk_probe(self.data_dir)
        self.alarms = alarms
        self.signer = signer
        if self.policy.archive_required and archive_check is None:
            # programming error: the archived mark alone must never free the only local copy
            raise ValueError("archive_required with [archive] enabled needs an archive_check")
        self.archive_check = archive_check
        # emptied, in this order, before any clip is deleted for space (``add_cache``)
        self.caches: list[DerivedFiles] = list(caches)
        self._bucket_down = False  # the bucket could not be asked during this check
        self._now = now
        self._mono = monotonic or time.monotonic
        self._refusal: str | None = None
        self._critical = False
        self._floor = 0
        self._last_probe = 0.0
        self._lock = threading.Lock()  # one check at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.deleted = 0
        self.last_plan: Plan | None = None

    # ---- the guard (capture thread) ------------------------------------------------------

    def refusal(self) -> str | None:
        """Why no new clip may start now, or None."""
        if self._refusal is not None and self._mono() - self._last_probe >= 1.0:
            self._last_probe = self._mono()
            try:
                space = self.probe()
            except OSError:
                return self._refusal
            if space.free >= self._floor:  # someone made room: allow at once, tidy up later
                log.warning("free space is back above the floor (%d MB free)", space.free >> 20)
                self._refusal, self._critical = None, False
                if self.alarms is not None:
                    # on the capture thread: a commit that waits for no fsync
                    self.alarms.clear("disk-full", str(self.data_dir), capture=True)
                self.poke()
        return self._refusal

    def must_finish_clip(self) -> bool:
        """True when free space is below half the floor: finish the open clip now.

        Called once a frame while a clip is open, it probes free space itself (a
        ``statvfs``, about a microsecond) instead of waiting for the next ``check``: a clip
        fills the disk between two checks, and a replay faster than real time fills it
        between two frames of a time-based probe. The clip must be finished while there is
        room for its queued frames, manifest and index row.
        """
        try:
            space = self.probe()
        except OSError:
            return self._critical
        floor = self.policy.floor(space.total)
        critical = space.free < floor // 2
        if critical and not self._critical:
            log.warning(
                "free space %d MB is below half the floor (%d MB): finishing the open clip",
                space.free >> 20,
                floor >> 20,
            )
            self.poke()  # delete what may be deleted, raise the alarm
        self._critical = critical
        return self._critical

    # ---- checks --------------------------------------------------------------------------

    def check(self) -> Plan:
        """Delete what is needed and allowed, then update the guard and the alarm."""
        with self._lock:
            self._bucket_down = False
            space = self.probe()
            result = self._plan(space, count_caches=True)
            if result.cache_bytes:
                self._release_caches(result.cache_bytes, space, result.floor_bytes)
                space = self.probe()
                # what the caches still hold could not be freed now: clips go for the rest
                result = self._plan(space)
            attempted: set[int] = set()
            while result.deletions and not {c.id for c in result.deletions} <= attempted:
                kept = {c.id: c for c in self.ledger.stored_clips()}
                for cand in result.deletions:
                    attempted.add(cand.id)
                    clip = kept.get(cand.id)
                    if clip is not None and self.delete(clip, result, space):
                        self.deleted += 1
                space = self.probe()  # what the filesystem says, not what the index says
                result = self._plan(space)
            self.last_plan = result
            self._update_guard(space, result)
            return result

    def add_cache(self, cache: DerivedFiles) -> None:
        """Free ``cache`` too before deleting clips (call before ``start``)."""
        self.caches.append(cache)

    def _release_caches(self, need: int, space: DiskSpace, floor: int) -> None:
        """Free ``need`` bytes of derived files, cache by cache; a cache that fails is logged
        and skipped (its bytes are then freed by deleting clips, never left to fill the disk)."""
        freed = 0
        for cache in self.caches:
            if freed >= need:
                break
            try:
                freed += cache.release(need - freed)
            except Exception:
                log.exception("retention: cannot free the cache %r", cache)
        log.warning(
            "retention: freed %d MB of cached key frames and evidence bundles first"
            " (free %d MB < floor %d MB)",
            freed >> 20,
            space.free >> 20,
            floor >> 20,
        )

    def _cache_usage(self) -> int:
        total = 0
        for cache in self.caches:
            try:
                total += cache.usage()
            except Exception:
                log.exception("retention: cannot measure the cache %r", cache)
        return total

    def _plan(self, space: DiskSpace, *, count_caches: bool = False) -> Plan:
        floor = self.policy.floor(space.total)
        if space.free >= floor:  # the usual case: no need to read the whole index
            return Plan((), floor, space.free, space.free, True)
        reclaimable = self._cache_usage() if count_caches else 0
        now = self._now()
        cands = [Candidate.from_stored(c) for c in self.ledger.stored_clips()]
        gone = self.ledger.latest_deleted(now)
        return plan(
            cands,
            now=now,
            free_bytes=space.free,
            total_bytes=space.total,
            policy=self.policy,
            gone=[gone] if gone else [],
            reclaimable=reclaimable,
        )

    def delete(self, clip: StoredClip, result: Plan, space: DiskSpace) -> bool:
        """Delete one clip: signed record and row mark first (one transaction), then the files."""
        path = self.data_dir / clip.path
        if not path.exists():
            # Not ours to paper over: a missing file is reported by reconciliation as missing.
            log.error(
                "retention: %s is already missing from disk; not marking it deleted", clip.path
            )
            return False
        if self.policy.archive_required and not self._archive_copy_there(clip):
            return False

        when = self._now()
        record = canonical_json(
            deletion_record(
                clip,
                station=self.cfg.station.name,
                deleted_at=when,
                reason=REASON_FLOOR,
                policy=self.policy,
                floor_bytes=result.floor_bytes,
                free_bytes=space.free,
            )
        )
        signature, key = self.signer(record) if self.signer is not None else (None, "")
        try:
            self.ledger.mark_deleted(
                clip.id,
                reason=REASON_FLOOR,
                record=record,
                signature=signature,
                key_fingerprint=key,
                deleted_at=when,
            )
        except LedgerError as exc:
            log.warning("retention: not deleting %s: %s", clip.path, exc)
            return False
        remove_clip_files(self.data_dir, clip.path, clip.manifest_path)
        log.warning(
            "retention deleted %s (order %r, started %s, %d bytes): free %d MB < floor %d MB",
            clip.path,
            clip.order_id,
            clip.started_at.isoformat(),
            clip.size,
            space.free >> 20,
            result.floor_bytes >> 20,
        )
        return True

    def _archive_copy_there(self, clip: StoredClip) -> bool:
        """Ask the bucket whether the archived clip's copy is still the one sent; when it is
        gone or other, clear the clip's mark (the archiver sends it again) and alarm.

        A crash after the answer changes nothing: the clip is deleted, or unmarked, only after.
        """
        assert self.archive_check is not None  # the constructor requires it with the policy
        if self._bucket_down:
            return False
        state = self.ledger.archive_state(clip.id)
        key = state["archive_key"] if state is not None else None
        if not key:
            return False  # no longer marked: not archived, so not deleted
        try:
            why = self.archive_check(key, clip.size, clip.sha256, self.data_dir / clip.path)
        except StationError as exc:
            log.warning("retention: keeping archived clips this round, bucket not asked: %s", exc)
            self._bucket_down = True
            return False
        if why is None:
            if self.alarms is not None:
                self.alarms.clear(ARCHIVE_MISSING, clip.path)  # it was sent again
            return True
        msg = (
            f"{clip.path}: the bucket no longer holds its archived copy {key} ({why});"
            " kept here, to be archived again"
        )
        log.error("retention: %s", msg)
        if self.alarms is not None:  # first: a crash before the unmark asks the bucket again
            self.alarms.raise_(ARCHIVE_MISSING, clip.path, msg)
        try:
            self.ledger.unmark_archived(clip.id)
        except LedgerError as exc:  # still marked: the next check asks the bucket again
            log.error("retention: cannot clear the archived mark of %s: %s", clip.path, exc)
        return False

    def _update_guard(self, space: DiskSpace, result: Plan) -> None:
        self._floor = result.floor_bytes
        self._last_probe = self._mono()
        subject = str(self.data_dir)
        if space.free >= result.floor_bytes:
            self._refusal, self._critical = None, False
            if self.alarms is not None:
                self.alarms.clear("disk-full", subject)
            return
        kept = ", ".join(f"{n} {why}" for why, n in sorted(result.kept.items())) or "no clips"
        msg = (
            f"{space.free / 2**20:.0f} MB free, floor {result.floor_bytes / 2**20:.0f} MB, "
            f"nothing more may be deleted ({kept}); not starting new clips"
        )
        self._refusal = f"disk full: {msg}"
        self._critical = space.free < result.floor_bytes // 2
        if self.alarms is not None:
            self.alarms.raise_("disk-full", subject, msg)

    # ---- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Check once now, then every ``check_every_s`` in the background."""
        if self._thread is not None:
            raise RuntimeError("RetentionManager.start() called twice")
        try:
            self.check()
        except Exception:  # a failing probe must not keep the station from starting
            log.exception("retention check failed")
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.check()
            except Exception:  # survive a bad iteration; try again next time
                log.exception("retention check failed")


__all__ = [
    "ARCHIVE_MISSING",
    "HELD",
    "UNARCHIVED",
    "UNFINISHED",
    "YOUNG",
    "ArchiveCheck",
    "Candidate",
    "DerivedFiles",
    "DiskSpace",
    "Plan",
    "Policy",
    "RetentionManager",
    "age_starts",
    "deletion_record",
    "disk_probe",
    "plan",
    "remove_clip_files",
    "why_kept",
]
