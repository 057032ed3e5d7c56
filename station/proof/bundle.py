"""Evidence bundle export: clips, signed manifests, tokens, log proof, keys, key frames, summary."""

from __future__ import annotations

import hashlib
import html
import io
import json
import logging
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
from cryptography import x509

import station
from station.config import Config
from station.proof import ProofError
from station.proof import manifest as manifest_mod
from station.proof.ca import cert_fingerprint
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey, public_pem, station_public_key
from station.proof.log import ArchivedLog, Checkpoint, LogEntry, ProofLog, Rotation
from station.proof.paths import ProofPaths
from station.proof.rotation import RotationFiles, cert_is_for
from station.proof.standalone_verify import start_statement_digest, witness_path
from station.proof.tsa import TsaQueue, load_roots
from station.proof.verify import (
    BUNDLE_FORMAT,
    BUNDLE_MANIFEST,
    BUNDLE_MANIFEST_SIG,
    BUNDLE_MANIFEST_TYPE,
    utc_plain,
    verifier_kit,
)
from station.proof.videohash import frames_at, keyframe_times
from station.store.cursors import WITNESSED_CURSOR, SyncCursors
from station.store.files import atomic_file
from station.store.ledger import ClipRecord, Ledger

log = logging.getLogger(__name__)


WITNESS_BEHIND = "witness-behind"  # params: accepted (entries the witness accepted, or absent)
CLOSED_LOG = "closed-log"  # params: key (the retired key's fingerprint), entries


# Why an order's bundle cannot be built (ExportRefused.code): the web site says it in its
# reader's language, never the message, which names files of the station.
NOT_SIGNED = "not-signed"  # no clip of the order is in the signed log
DELETED_UNSIGNED = "deleted-unsigned"  # params: started, deleted_utc (no signed deletion record)
DELETED_UNMANIFESTED = "deleted-unmanifested"  # params: started, deleted_utc (clip never signed)
ALL_DELETED = "all-deleted"  # params: deleted_utc (the last deletion)
SEVERAL_KEYS = "several-keys"  # params: keys (recorded before and after a key rotation)
CLOSED_LOG_BROKEN = "closed-log-broken"  # a retired key's log or its rotation chain is not whole
NO_CHECKPOINT = "no-checkpoint"  # none covers the newest clip, and this process cannot sign one
CLIP_MISSING = "clip-missing"  # a clip's file is gone with no deletion record
REFUSAL_CODES = (NOT_SIGNED, DELETED_UNSIGNED, DELETED_UNMANIFESTED, ALL_DELETED, SEVERAL_KEYS,
                 CLOSED_LOG_BROKEN, NO_CHECKPOINT, CLIP_MISSING)  # fmt: skip


class ExportRefused(ProofError):
    """The order's bundle cannot be built: ``code`` (above) says why, ``params`` its values
    (times as ISO 8601 text, counts), for the web site to say in its reader's language."""

    def __init__(self, code: str, message: str, **params: str | int) -> None:
        super().__init__(message)
        self.code = code
        self.params = params


@dataclass(frozen=True)
class ExportNote:
    """A warning for the one exporting that is not evidence, so not in the bundle (the next sync
    may make it untrue): ``code`` (above) and ``params`` let the web site say it in its reader's
    language; ``text`` is the English one ``ExportResult.warnings`` holds too."""

    code: str
    text: str
    params: tuple[tuple[str, int | str], ...] = ()


@dataclass
class ExportResult:
    path: Path
    clips: int
    frames: int
    timestamps: int
    checkpoint_size: int
    warnings: list[str] = field(default_factory=list)
    notes: list[ExportNote] = field(default_factory=list)  # those of ``warnings`` not in it

    def add_note(self, note: ExportNote) -> None:
        self.warnings = [*self.warnings, note.text]
        self.notes = [*self.notes, note]


# The key frames of a clip this station no longer has (freed after it was archived): (seconds
# into the clip, label, JPEG) as ``extract_jpegs`` made them when the archiver cut them.
FrameSource = Callable[[ClipRecord], list[tuple[float, str, bytes]]]


def extract_jpegs(clip: Path, times: list[tuple[float, str]]) -> list[tuple[float, str, bytes]]:
    """The picture shown at each time, as JPEG (none when the clip cannot be decoded)."""
    out: list[tuple[float, str, bytes]] = []
    try:
        for t, label, image in frames_at(clip, times):
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=85)
            out.append((t, label, buf.getvalue()))
    except (av.FFmpegError, OSError, IndexError) as exc:
        log.warning("no key frames from %s: %s", clip, exc)
    return out


def _latest_covering(plog: ProofLog, need: int) -> Checkpoint | None:
    cp = plog.latest_checkpoint()
    return cp if cp is not None and cp.tree_size >= need else None


def _witnessed(plog: ProofLog, accepted_id: int) -> Checkpoint | None:
    """The newest checkpoint of the live log the central witness accepted (ids up to
    ``accepted_id``, the sync's cursor). A station restored from a backup still holds the ones
    it had sent before the backup: they are of the part both forks share."""
    ok = [c for c in plog.checkpoints() if c.id <= accepted_id]
    return max(ok, key=lambda c: c.id) if ok else None


def _live_entry(plog: ProofLog, r: ClipRecord) -> LogEntry | None:
    """The clip's leaf in the live log (None: unsigned, or in a retired key's closed log)."""
    # the same bytes could be logged twice (a static scene): the path tells them apart
    e = [x for x in plog.entries_for_clip(r.sha256) if x.clip_path == r.path]
    return e[-1] if e else None


def _witness_covers(witnessed: Checkpoint | None, need: int) -> bool:
    return bool(need) and witnessed is not None and witnessed.tree_size >= need


def witness_state(plog: ProofLog, records: list[ClipRecord], accepted: int) -> str:
    """What an export of ``records`` would make of the central witness (``accepted``: the
    sync's cursor), in a word that changes exactly when its bundle or its witness note would:
    "" (no leaf of the live log to prove, or no witness has accepted anything: no fleet, or
    not yet), "witnessed" (proved with a checkpoint the witness accepted), "behind:<n>" (it
    accepted <n> entries, fewer than the order needs: the bundle holds a checkpoint it has not
    cosigned, and the note says <n>). A cached bundle is named by it too
    (``exports.bundle_key``), so the sync that makes the witness catch up gets the seller a
    cosigned bundle and a true note at once, not after the cache's 10 minutes."""
    need = max((e.seq + 1 for r in records if (e := _live_entry(plog, r)) is not None), default=0)
    witnessed = _witnessed(plog, accepted)
    if not need or witnessed is None:
        return ""
    return "witnessed" if _witness_covers(witnessed, need) else f"behind:{witnessed.tree_size}"


@dataclass(frozen=True)
class ArchivedClip:
    """A clip member left out of a bundle's parts (``without_clips``): the fleet's bucket holds
    its bytes under its SHA-256, and the central site puts it back when it streams the bundle."""

    sha256: str


def export_order(
    cfg: Config,
    order_id: str,
    out: Path,
    *,
    without_clips: bool = False,
    perm: int | None = None,
    archived_frames: FrameSource | None = None,
) -> ExportResult:
    """Write the evidence bundle of every clip of ``order_id`` to ``out`` (a zip; ``perm``:
    its mode bits, set before it has its name, else the umask's).

    ``without_clips``: the bundle's *parts*: every member but the clips (``clips/*``), signed
    exactly as the whole bundle (the bundle manifest lists the clips' SHA-256), for the
    archiver to upload; the central site streams parts + archived clips as one bundle. A clip
    whose local file is gone after it was archived (freed by retention) is listed by its
    indexed hash: the bucket holds it, and its key frames are those ``archived_frames``
    gives (the archiver: the ones it cut from the clip and uploaded, read back), else none.

    Otherwise (and in the parts, for a clip retention deleted before it was archived: the
    bucket never had it) a clip this station's retention deleted is carried as a gap: its
    signed manifest, log proof and the signed deletion record (``deleted_clips``); verifiers
    name it and give their verdict for the clips that are here only.
    """
    data_dir = cfg.station.data_dir
    paths = ProofPaths.from_config(cfg)
    ledger = Ledger.in_data_dir(data_dir)
    plog = ProofLog.in_data_dir(data_dir)
    try:
        records = ledger.clips(order_id)
        if not records:
            raise ProofError(f"no clips for order {order_id!r} in {data_dir}")
        deleted: dict[str, dict[str, Any]] = {}
        for r in records:
            if (data_dir / r.path).exists() or (without_clips and _archived(ledger, r)):
                continue
            done = ledger.deletion_record(r.path)
            if done is None:
                continue
            # not "missing": that reads as lost or tampered evidence
            when = f"{done['deleted_utc'][:19].replace('T', ' ')} UTC"
            if done["signature"] is None:
                raise ExportRefused(
                    DELETED_UNSIGNED,
                    f"clip {r.path} was deleted by this station's retention on {when}, and its "
                    "deletion record is not signed (proofs were off): a bundle can show a gap "
                    "only by the station's signed record, so this order's can no longer be "
                    "built here",
                    started=r.started_at.isoformat(),
                    deleted_utc=done["deleted_utc"],
                )
            deleted[r.path] = done
        if deleted and len(deleted) == len(records):
            raise ExportRefused(
                ALL_DELETED,
                f"every clip of order {order_id!r} was deleted by this station's retention "
                "(signed deletion records; `packcam audit` checks them): there is no clip left "
                "to bundle",
                deleted_utc=max(d["deleted_utc"] for d in deleted.values()),
            )
        accepted = SyncCursors(ledger.db).cursor(WITNESSED_CURSOR)
        job = _Job(cfg, paths, records, deleted, order_id, out, without_clips=without_clips,
                   perm=perm, archived_frames=archived_frames)  # fmt: skip
        return _export(job, plog, accepted)
    finally:
        plog.close()
        ledger.close()


def _archived(ledger: Ledger, r: ClipRecord) -> bool:
    """Whether the archiver verified the clip in the bucket (the central site then has it)."""
    state = ledger.archive_state(r.id) if r.id is not None else None
    return bool(state and state["archived_utc"])


@dataclass(frozen=True)
class _Job:
    """One ``export_order`` call as the steps that build its bundle need it: the order's
    ``records``, those of them retention ``deleted`` (by path: the signed deletion record), and
    the caller's ``out``, ``without_clips``, ``perm`` and ``archived_frames``."""

    cfg: Config
    paths: ProofPaths
    records: list[ClipRecord]
    deleted: Mapping[str, dict[str, Any]]
    order_id: str
    out: Path
    without_clips: bool
    perm: int | None
    archived_frames: FrameSource | None


def _export(job: _Job, plog: ProofLog, accepted: int) -> ExportResult:
    warnings: list[str] = []
    entries: list[LogEntry | None] = []
    logs: set[str] = set()  # "" the live log, else the fingerprint of a retired key's log
    for r in job.records:
        live = _live_entry(plog, r)
        archived = [
            (k, x) for k, x in plog.archived_entries_for_clip(r.sha256) if x.clip_path == r.path
        ]
        if live is not None:
            entries.append(live)
            logs.add("")
        elif archived:
            entries.append(archived[-1][1])
            logs.add(archived[-1][0])
        else:
            entries.append(None)
            warnings.append(f"{r.path} has no signed manifest (recorded before proof was on?)")
    if len(logs) > 1:
        raise ExportRefused(
            SEVERAL_KEYS,
            f"order {job.order_id!r} has clips in the logs of {len(logs)} station keys (it was "
            "recorded before and after a key rotation): one bundle holds the clips of one log",
            keys=len(logs),
        )
    old_key = next(iter(logs), "")
    if old_key:
        return _export_archived(job, plog, entries, old_key, warnings)
    need = max((e.seq + 1 for e in entries if e is not None), default=0)
    queue = None
    if job.cfg.proof.tsa_urls:
        queue = TsaQueue(
            plog,
            roots=load_roots(job.paths.tsa_ca),
            timeout_s=job.cfg.proof.tsa_timeout_s,
            retry_s=job.cfg.proof.tsa_retry_s,
        )
    # A checkpoint the witness cosigned first: it is what `verify --witness` holds the bundle
    # to, and on a station restored from a backup the newest one is of a log the witness
    # refused (a fork), while an older clip is in the part both share.
    witnessed = _witnessed(plog, accepted)
    cp = witnessed if _witness_covers(witnessed, need) else None
    note = None  # for the one exporting, not written into the bundle (the next sync may cosign)
    if need and cp is None and job.cfg.central.enabled and not job.without_clips:
        upto = f"up to {witnessed.tree_size} entries" if witnessed else "no checkpoint of it"
        note = ExportNote(
            WITNESS_BEHIND,
            f"the central witness has accepted this log {upto}, not up to this order's newest "
            "clip: `verify --witness` calls the bundle not cosigned until the next sync, or "
            "fails it with log-fork if the witness refused this log (a station restored from a "
            "backup: its clips recorded since are never cosigned, see docs/fleet.md)",
            (("accepted", witnessed.tree_size),) if witnessed else (),
        )
    cp = cp or (_latest_covering(plog, need) if need else None)
    if need and cp is None:
        try:
            key = StationKey.load(job.paths.key)  # a new checkpoint needs the private key
        except ProofError as exc:
            raise ExportRefused(
                NO_CHECKPOINT,
                f"no signed checkpoint covers the newest clip yet, and this process cannot sign "
                f"one ({exc}); the station signs one every proof.checkpoint_every clips and when "
                "it stops",
            ) from exc
        cp = plog.checkpoint(key, job.cfg.station.name)
        if cp is not None and job.cfg.proof.tsa_urls:
            plog.enqueue_timestamp("checkpoint", cp.sha256, job.cfg.proof.tsa_urls)
    if queue is not None:
        queue.process_due()  # fetch what is still queued, once
        pending = plog.pending_count()
        if pending:
            warnings.append(f"{pending} timestamp request(s) still pending (TSA unreachable)")
    if cp is None:
        raise ExportRefused(NOT_SIGNED, "no signed log entries to export")
    station_pub = public_pem(station_public_key(job.paths.public_key, job.paths.key))
    res = _assemble(job, plog, entries, cp, station_pub, job.paths.key_cert, [], warnings)
    if note:
        res.add_note(note)
    return res


def _export_archived(
    job: _Job, plog: ProofLog, entries: list[LogEntry | None], old_key: str, warnings: list[str]
) -> ExportResult:
    """An order recorded under a retired key: its closed log up to the final checkpoint, and
    the chain of rotation statements from that key to the current one (which signs the
    bundle manifest: the retired key is gone)."""

    rots = plog.rotations()
    start = next((i for i, r in enumerate(rots) if r.old_key == old_key), None)
    if start is None:
        raise ExportRefused(CLOSED_LOG_BROKEN, f"no rotation statement closes the log of {old_key}")
    chain = rots[start:]
    arch = plog.archived(old_key)
    cp = arch.latest_checkpoint()
    if cp is None or cp.body != chain[0].body:
        raise ExportRefused(
            CLOSED_LOG_BROKEN, f"the archived log of {old_key} does not end at its final checkpoint"
        )
    rf = RotationFiles.of(job.paths)
    cert = rf.retired(old_key) / "station-key.crt"
    links = []
    for r in chain:
        succ_cert = rf.retired(r.new_key) / "station-key.crt"
        if cert_is_for(job.paths.key_cert, r.new_public_pem):
            succ_cert = job.paths.key_cert
        links.append((r, succ_cert if succ_cert.exists() else None))
    if links[-1][1] is None:
        warnings.append(
            f"no certificate for the current key {chain[-1].new_key}: the rotation to it cannot "
            "be anchored (run `packcam ca issue`)"
        )
    res = _assemble(job, arch, entries, cp, chain[0].old_public_pem, cert, links, warnings)
    if job.cfg.central.enabled and not job.without_clips:
        # The chain to the current key starts at the closed log's final checkpoint, so no
        # earlier (cosigned) checkpoint can stand in, and the station does not know whether
        # the witness saw the rotation; the one exporting is told what decides it.
        note = ExportNote(
            CLOSED_LOG,
            f"this order is in the closed log of the retired key {old_key} ({cp.tree_size} "
            "entries): `verify --witness` holds the bundle to that log's final checkpoint, "
            "cosigned only if the witness saw the rotation; on a station restored from a "
            "backup before `packcam keys rotate` it did not (log-fork): send the central "
            "site's bundle of this order instead (docs/fleet.md)",
            (("key", old_key), ("entries", cp.tree_size)),
        )
        res.add_note(note)
    return res


def _assemble(
    job: _Job,
    plog: ProofLog | ArchivedLog,
    entries: list[LogEntry | None],
    cp: Checkpoint,
    station_pub: bytes,
    key_cert: Path,
    links: list[tuple[Rotation, Path | None]],
    warnings: list[str],
) -> ExportResult:
    files: dict[str, bytes | Path | ArchivedClip] = {}
    keys: dict[str, str | None] = {"station_public_key": "keys/station-key.pub.pem"}
    files["keys/station-key.pub.pem"] = station_pub
    ca_fp = None
    for name, src in (
        ("station_key_certificate", key_cert),
        ("company_ca", job.paths.ca_cert),
        ("c2pa_chain", job.paths.c2pa_cert),
        ("tsa_roots", job.paths.tsa_ca),
    ):
        if src is not None and src.exists():
            arc = f"keys/{src.name}" if name != "tsa_roots" else "keys/tsa-roots.pem"
            files[arc] = src.read_bytes()
            keys[name] = arc
            if name == "company_ca":
                ca_fp = cert_fingerprint(x509.load_pem_x509_certificate(src.read_bytes()))
        else:
            keys[name] = None

    cp_tokens = [t.token for t in plog.timestamps_for(cp.sha256) if t.token]
    files["log/checkpoint.json"] = cp.body
    files["log/checkpoint.sig"] = cp.signature
    cp_ts_names = []
    for i, tok in enumerate(cp_tokens):
        files[f"log/checkpoint.{i}.tst"] = tok
        cp_ts_names.append(f"log/checkpoint.{i}.tst")
    rotations = [_add_rotation(files, plog, j, r, c) for j, (r, c) in enumerate(links)]

    clips_index = []
    summaries = []
    deleted_index: list[dict[str, Any]] = []
    gaps: list[Gap] = []
    n_frames = n_tokens = 0
    all_cps = plog.checkpoints()
    own_sizes: list[int] = []  # the clips' own checkpoints: the witness record to fetch has them
    no_frames: dict[str, str] = {}  # clip member -> why it has no key frames (NO_FRAMES_*)
    for n, (r, e) in enumerate(zip(job.records, entries, strict=True), 1):
        gone_record = job.deleted.get(r.path)
        if gone_record is not None:
            if e is None:
                raise ExportRefused(
                    DELETED_UNMANIFESTED,
                    f"clip {r.path} was deleted by this station's retention and has no signed "
                    "manifest: a bundle could not show which clip its gap is",
                    started=r.started_at.isoformat(),
                    deleted_utc=gone_record["deleted_utc"],
                )
            deleted_index.append(_add_deleted(files, plog, r, e, gone_record, cp))
            gaps.append(Gap(n, json.loads(e.manifest), json.loads(gone_record["record"])))
            warnings.append(
                f"clip {r.path} was deleted by this station's retention on "
                f"{gone_record['deleted_utc'][:19].replace('T', ' ')} UTC: the bundle carries "
                "its signed deletion record instead, and verifiers report the gap"
            )
            continue
        clip_path = job.cfg.station.data_dir / r.path
        gone = not clip_path.exists()
        if gone and not job.without_clips:
            raise ExportRefused(
                CLIP_MISSING, f"clip {r.path} is missing from {job.cfg.station.data_dir}"
            )
        stem = Path(r.path).stem
        item: dict[str, Any] = {"clip": f"clips/{Path(r.path).name}"}
        files[item["clip"]] = ArchivedClip(r.sha256) if job.without_clips else clip_path
        body: dict[str, Any] = {}
        if e is not None:
            m = manifest_mod.from_canonical(e.manifest, e.signature)
            body = m.body
            item["manifest"] = f"manifests/{stem}.manifest.json"
            item["signature"] = f"manifests/{stem}.manifest.sig"
            files[item["manifest"]] = e.manifest
            files[item["signature"]] = e.signature
            tokens = [t.token for t in plog.timestamps_for(e.manifest_sha256) if t.token]
            item["timestamps"] = []
            for i, tok in enumerate(tokens):
                name = f"manifests/{stem}.manifest.{i}.tst"
                files[name] = tok
                item["timestamps"].append(name)
            n_tokens += len(tokens)
            start = start_statement_digest(body)
            if start is not None:  # the tokens over its start statement (docs/proof.md)
                item["start_timestamps"] = []
                starts = [t.token for t in plog.timestamps_for(start) if t.token]
                for i, tok in enumerate(starts):
                    name = f"manifests/{stem}.start.{i}.tst"
                    files[name] = tok
                    item["start_timestamps"].append(name)
            item["inclusion"] = f"log/{stem}.inclusion.json"
            files[item["inclusion"]] = _inclusion(plog, e, cp)
            first = _first_covering(all_cps, e.seq)
            if first is not None and first.id != cp.id and first.tree_size <= cp.tree_size:
                item["first_checkpoint"] = _add_first_checkpoint(files, plog, first, cp)
                own_sizes.append(first.tree_size)
        else:
            item["manifest"] = None
            body = r.to_json()
        if not gone:
            frames = extract_jpegs(clip_path, keyframe_times(body))
        else:  # the parts of a clip freed after archiving: the frames cut then, if given
            frames = job.archived_frames(r) if job.archived_frames is not None else []
        item["frames"] = []
        for t, label, jpg in frames:
            name = f"frames/{stem}_{t:07.2f}s_{label}.jpg"
            files[name] = jpg
            item["frames"].append({"file": name, "t_clip_s": round(t, 2), "label": label})
        n_frames += len(frames)
        if not frames:
            # The verifiers warn of it (bundle-frames-missing) but cannot know why; the one
            # reading the bundle is told here, as the pictures are what hold the burned-in
            # clock to the signed times.
            no_frames[item["clip"]] = NO_FRAMES_GONE if gone else NO_FRAMES_UNDECODABLE
            warnings.append(f"{r.path}: {NO_FRAMES_TEXT[no_frames[item['clip']]][1]}")
        item["kind"] = str(body.get("kind") or "order")  # as signed: "order" or "return"
        clips_index.append(item)
        summaries.append((r, body, item, e.seq if e else None, len(item.get("timestamps", []))))

    index = {
        "format": BUNDLE_FORMAT,
        "version": 1,
        "order_id": job.order_id,
        "station": job.cfg.station.name,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": f"packcam {station.__version__}",
        "keys": keys,
        "checkpoint": {
            "body": "log/checkpoint.json",
            "signature": "log/checkpoint.sig",
            "timestamps": cp_ts_names,
        },
        "clips": clips_index,
        "warnings": warnings,
    }
    if deleted_index:  # absent otherwise: a bundle without gaps reads as before
        index["deleted_clips"] = deleted_index
    if rotations:
        index["rotations"] = rotations
    files["bundle.json"] = json.dumps(index, indent=2, ensure_ascii=False).encode()
    tsa_fps = (
        [cert_fingerprint(c) for c in load_roots(job.paths.tsa_ca)] if keys["tsa_roots"] else []
    )
    files["VERIFY.md"] = verify_md(index, ca_fp, tsa_fps, [cp.tree_size, *own_sizes]).encode()
    files["verify.py"] = verifier_kit()
    files["summary.html"] = summary_html(index, summaries, cp, ca_fp, gaps, no_frames).encode()
    order_clips = _order_log_indexes(plog, job.order_id, cp.tree_size)
    try:
        key = StationKey.load(job.paths.key)
    except ProofError as exc:
        warnings.append(
            f"bundle manifest not signed ({exc}): export on the station to cover every file"
        )
        log.warning("bundle of order %r exported without a signed bundle manifest", job.order_id)
    else:
        body = bundle_manifest_body(
            files, job.order_id, job.cfg.station.name, key.fingerprint, cp, order_clips
        )
        manifest = canonical_json(body)
        files[BUNDLE_MANIFEST] = manifest
        files[BUNDLE_MANIFEST_SIG] = key.sign(manifest)
    _write_zip(job.out, files, job.perm)
    log.info("exported order %r: %d clip(s), %d deleted by retention -> %s", job.order_id,
             len(clips_index), len(deleted_index), job.out)  # fmt: skip
    return ExportResult(job.out, len(clips_index), n_frames, n_tokens, cp.tree_size, warnings)


def _inclusion(plog: ProofLog | ArchivedLog, e: LogEntry, cp: Checkpoint) -> bytes:
    """The RFC 9162 inclusion proof of log entry ``e`` in checkpoint ``cp`` (JSON)."""
    proof = plog.inclusion_proof(e.seq, cp.tree_size)
    inc = {
        "log_index": e.seq,
        "tree_size": cp.tree_size,
        "leaf_hash": e.leaf_hash,
        "root_sha256": cp.root_hash,
        "audit_path": [h.hex() for h in proof],
        "hashing": "RFC 6962: leaf = SHA-256(0x00 || manifest bytes), "
        "node = SHA-256(0x01 || left || right)",
    }
    return json.dumps(inc, indent=2).encode()


@dataclass(frozen=True)
class Gap:
    """A clip of the order retention deleted, for the summary: its place among the order's
    clips (1 = first recorded), its signed manifest and the signed deletion record."""

    n: int
    manifest: dict[str, Any]
    record: dict[str, Any]


def _add_deleted(
    files: dict[str, bytes | Path | ArchivedClip],
    plog: ProofLog | ArchivedLog,
    r: ClipRecord,
    e: LogEntry,
    row: dict[str, Any],
    cp: Checkpoint,
) -> dict[str, Any]:
    """A deleted clip's gap: its signed manifest and log proof (which clip it was: the order's
    clip count in the bundle manifest includes it) and the station's signed deletion record
    (why it is not here, by the seller's own word: it vouches for nothing the clip showed)."""
    base = f"deleted/{Path(r.path).stem}"
    item = {
        "clip": f"clips/{Path(r.path).name}",
        "manifest": f"{base}.manifest.json",
        "signature": f"{base}.manifest.sig",
        "inclusion": f"{base}.inclusion.json",
        "deletion_record": f"{base}.deletion.json",
        "deletion_signature": f"{base}.deletion.sig",
    }
    files[item["manifest"]] = e.manifest
    files[item["signature"]] = e.signature
    files[item["inclusion"]] = _inclusion(plog, e, cp)
    files[item["deletion_record"]] = bytes(row["record"])
    files[item["deletion_signature"]] = bytes(row["signature"])
    return item


def _add_rotation(
    files: dict[str, bytes | Path | ArchivedClip],
    plog: ProofLog | ArchivedLog,
    j: int,
    rot: Rotation,
    succ_cert: Path | None,
) -> dict[str, Any]:
    """One link of the key chain: a log's final checkpoint signed by its key and the successor,
    the successor's public key and (when the station has it) its certificate."""
    base = f"log/rotation-{j}"
    link: dict[str, Any] = {
        "checkpoint": f"{base}.json",
        "signature_old": f"{base}.old.sig",
        "signature_new": f"{base}.new.sig",
        "timestamps": [],
        "successor_public_key": f"keys/rotation-{j}-successor.pub.pem",
        "successor_certificate": None,
    }
    files[link["checkpoint"]] = rot.body
    files[link["signature_old"]] = rot.signature_old
    files[link["signature_new"]] = rot.signature_new
    for i, t in enumerate(x.token for x in plog.timestamps_for(rot.sha256) if x.token):
        files[f"{base}.{i}.tst"] = t
        link["timestamps"].append(f"{base}.{i}.tst")
    files[link["successor_public_key"]] = rot.new_public_pem
    if succ_cert is not None:
        link["successor_certificate"] = f"keys/rotation-{j}-successor.crt"
        files[link["successor_certificate"]] = succ_cert.read_bytes()
    return link


def _first_covering(cps: list[Checkpoint], seq: int) -> Checkpoint | None:
    """The first checkpoint signed after leaf ``seq`` was appended (the clip's checkpoint)."""
    covering = [c for c in cps if c.tree_size > seq]
    return min(covering, key=lambda c: c.id) if covering else None


def _add_first_checkpoint(
    files: dict[str, bytes | Path | ArchivedClip],
    plog: ProofLog | ArchivedLog,
    first: Checkpoint,
    newest: Checkpoint,
) -> dict[str, Any]:
    """The clip's own checkpoint (signed and timestamped right after recording) and the RFC
    9162 consistency proof that the bundled newest checkpoint only appended to it."""
    base = f"log/checkpoint-{first.id}"
    entry: dict[str, Any] = {
        "body": f"{base}.json",
        "signature": f"{base}.sig",
        "timestamps": [],
        "consistency": f"{base}.consistency.json",
    }
    if entry["body"] in files:  # another clip of the bundle has the same checkpoint
        entry["timestamps"] = sorted(n for n in files if n.startswith(base + ".") and
                                     n.endswith(".tst"))  # fmt: skip
        return entry
    files[entry["body"]] = first.body
    files[entry["signature"]] = first.signature
    for i, t in enumerate(x.token for x in plog.timestamps_for(first.sha256) if x.token):
        name = f"{base}.{i}.tst"
        files[name] = t
        entry["timestamps"].append(name)
    proof = plog.consistency_proof(first.tree_size, newest.tree_size)
    files[entry["consistency"]] = json.dumps(
        {
            "old_size": first.tree_size,
            "old_root_sha256": first.root_hash,
            "new_size": newest.tree_size,
            "new_root_sha256": newest.root_hash,
            "proof": [h.hex() for h in proof],
            "hashing": "RFC 9162 section 2.1.4 consistency proof",
        },
        indent=2,
    ).encode()
    return entry


def _order_log_indexes(plog: ProofLog | ArchivedLog, order_id: str, tree_size: int) -> list[int]:
    """Log indexes of every signed clip of ``order_id`` in the first ``tree_size`` leaves."""
    out = []
    for e in plog.entries()[:tree_size]:
        try:
            if json.loads(e.manifest).get("order_id") == order_id:
                out.append(e.seq)
        except ValueError:
            continue
    return out


def _member_sha256(src: bytes | Path | ArchivedClip) -> str:
    if isinstance(src, ArchivedClip):
        return src.sha256
    if isinstance(src, bytes):
        return hashlib.sha256(src).hexdigest()
    h = hashlib.sha256()
    with src.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def bundle_manifest_body(
    files: dict[str, bytes | Path | ArchivedClip],
    order_id: str,
    station_name: str,
    key_fingerprint: str,
    cp: Checkpoint,
    order_clips: list[int],
) -> dict[str, Any]:
    """What the station signs for a bundle: every member's SHA-256 and the order's clips."""
    return {
        "type": BUNDLE_MANIFEST_TYPE,
        "version": 1,
        "order_id": order_id,
        "station": station_name,
        "station_key": key_fingerprint,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint_sha256": cp.sha256,
        "order_clips": order_clips,
        "members": {n: _member_sha256(src) for n, src in sorted(files.items())},
    }


def _write_zip(
    out: Path, files: dict[str, bytes | Path | ArchivedClip], perm: int | None = None
) -> None:
    """Write the zip through ``atomic_file``: after a crash or a power cut there is the whole
    bundle under ``out`` or none; a failed write leaves no ``.part``, nor does SIGTERM to the
    CLI (station.cli; a SIGKILL leaves one: the export worker and the archiver remove theirs,
    the next export to that path writes over it)."""
    sums = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        atomic_file(out, suffix=".part", perm=perm) as f,
        zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        for name in sorted(files):
            src = files[name]
            if isinstance(src, ArchivedClip):  # a bundle's parts: the clip is in the bucket
                sums.append((src.sha256, name))
            elif isinstance(src, Path):
                h = hashlib.sha256()
                with src.open("rb") as clip:
                    while block := clip.read(1 << 20):
                        h.update(block)
                # video does not compress; storing keeps extraction a plain copy
                zf.write(src, name, compress_type=zipfile.ZIP_STORED)
                sums.append((h.hexdigest(), name))
            else:
                zf.writestr(name, src)
                sums.append((hashlib.sha256(src).hexdigest(), name))
        zf.writestr("SHA256SUMS", "".join(f"{h}  {n}\n" for h, n in sums))


VERIFY_TEMPLATE = """\
# 如何验证本证据包 / How to verify this evidence bundle

订单 Order: **{order}** — 工位 Station: **{station}** — 生成 Created: {created}

## 中文

**先比对指纹，再相信结果。** 本包内附带的证书（`keys/company-ca.crt`、`keys/tsa-roots.pem`）
只是副本，任何伪造者都可以自己生成一套。只有当下面两个 SHA-256 指纹与您**通过其他渠道**
获得的一致时，验证结果才有意义：

- **卖家公司 CA 的指纹** `{ca_fp}`：向卖家核对（合同、平台登记的资料、卖家网站的
  `/trust` 页面，最好电话核对）。它证明签名的工位密钥属于该卖家，而不是伪造者自己生成的密钥。
- **时间戳机构（TSA）根证书的指纹** {tsa_fps}：与时间戳机构官网公布的根证书核对。它证明
  录制时间由独立第三方见证，卖家事后无法倒签。

验证（只需 Python 3 和 `openssl` 命令，不需要安装 packcam）。**不要运行本包内的
`verify.py`**：它和包内其他文件一样来自卖家，伪造者会把它改成总是输出"真实"。请运行您自己
持有的副本（来自 packcam 项目，或您以前核对过的副本；包内副本与它不同时会提示
`bundle-verifier-differs`）：

    python3 您的/verify.py {bundle_name} --ca 公司CA指纹或文件 --tsa-ca TSA根证书指纹或文件

或使用 packcam：

    packcam verify {bundle_name} --ca 公司CA指纹或文件 --tsa-ca TSA根证书指纹或文件

若卖家有中心站（多个工位），中心站是各工位日志的见证者，为每个检查点副签。请**自己**从中心站
保存本证据包的检查点（{tree_size} 条记录）及其各段视频自己的检查点的见证记录
`<中心站>{witness_path}`（不带 `?tree_size=` 时只列出最新的检查点，旧证据包的检查点不在
其中），并从 `<中心站>/witness` 读出
见证者密钥指纹 `witness_key`，再加上 `--witness 文件 --witness-key 指纹`（`packcam verify`
也接受网址 `<中心站>/witness/<工位>`，并自动查询本包的检查点）。见证者为同样条数副签了另一个
根哈希时判为失败（`log-fork`：日志被改写过）。卖家直接交给您的"见证文件"可能是卖家用自己的
密钥签的：固定指纹后，其他密钥签的见证文件会被拒绝（退出码 3，`witness-untrusted`）；签名
验证不通过的见证文件同样被拒绝（退出码 3，`witness-invalid`）：那是您传入的文件有问题，不是
对证据包的结论，请自己重新获取。不固定时只列出它的密钥，请自行比对。

退出码 / 结论：**0 真实**（未被修改、签名者由您信任的公司 CA 认证、可信时间戳在录制结束
{max_delay} 分钟内）；**1 不真实**（某项检查失败，每项都写明原因代码）；**4 完整但未锚定**
（文件未被修改，但您没有固定任何能为它担保的 CA 或 TSA——请先比对上表中的指纹）。

## English

**Compare fingerprints first, then trust the result.** The certificates inside this bundle
(`keys/company-ca.crt`, `keys/tsa-roots.pem`) are copies: a forger can make a set of their own.
The verdict only means something once the two SHA-256 fingerprints below match the ones you
obtained **through another channel**:

- **The seller's company CA** `{ca_fp}`: check with the seller (contract, platform records,
  the `/trust` page of the seller's site; ideally read out on the phone). It proves the signing
  station key belongs to that seller, not to a key a forger made.
- **The time-stamp authority's (TSA) root** {tsa_fps}: check with the root the TSA publishes
  on its own site. It proves an independent party saw each manifest in time: no back-dating.

Verify (needs only Python 3 and the `openssl` command, no packcam) with a `verify.py` you
hold yourself, from the packcam project or one you checked before, **not the one in this
bundle**: like every file here it comes from the seller, and a forger edits it to print
AUTHENTIC (yours warns `bundle-verifier-differs` when the bundle's copy is not the same):

    python3 YOUR/verify.py {bundle_name} --ca CA-FINGERPRINT-OR-FILE --tsa-ca TSA-ROOT-OR-FP

or with packcam (`--trust FILE` reads `ca ...` / `tsa ...` lines; the seller's site serves one
at `/trust.txt`):

    packcam verify {bundle_name} --ca CA-FINGERPRINT-OR-FILE --tsa-ca TSA-ROOT-OR-FINGERPRINT

If the seller runs a central site (a fleet of stations), it witnesses each station's log and
cosigns its checkpoints. Save the witness's record of this bundle's checkpoint ({tree_size}
entries) and of its clips' own, `<site>{witness_path}` (without `?tree_size=` it lists the
newest checkpoints only, and an old bundle's are not among them), and read the witness key's
fingerprint
(`witness_key`) at `<site>/witness` **yourself**, then add `--witness FILE --witness-key
FINGERPRINT` (`packcam verify` also takes the URL `<site>/witness/<station>` and asks it for
this bundle's checkpoints). Another root cosigned for as many entries fails (`log-fork`: the
log was rewritten). A "witness file" the seller hands you may be signed with a key of the
seller's own: with the key pinned, a file signed by any other key is refused (exit 3,
`witness-untrusted`), as is one whose own signatures do not verify (exit 3, `witness-invalid`):
that is the file you passed, no verdict on the bundle; fetch it again yourself. Unpinned, its
key is only named for you to compare.

Exit status / verdict: **0 AUTHENTIC** (unaltered, signer certified by the company CA you
pinned, trusted time within {max_delay} minutes of the recorded end); **1 NOT AUTHENTIC** (a
check failed; each names its reason code); **4 INTACT BUT NOT ANCHORED** (nothing altered, but
nothing you pinned vouches for it: compare the fingerprints above); **5 AUTHENTIC FOR SOME OF
THE ORDER'S CLIPS** (a partial bundle: the others were deleted by the station's retention, by
its signed record, which explains the gap and proves nothing of what they showed nor, its date
being the seller's own, when they were deleted).

## By hand with openssl / 手工验证（openssl 3）

Unzip the bundle; for each clip `X` (see `bundle.json`) / 解压后对每段视频 `X`：

    sha256sum clips/X.mp4        # = "sha256" in manifests/X.manifest.json
    openssl pkeyutl -verify -pubin -inkey keys/station-key.pub.pem -rawin \\
        -in manifests/X.manifest.json -sigfile manifests/X.manifest.sig
    openssl verify -trusted YOUR-COPY-OF-THE-COMPANY-CA.crt keys/station-key.crt
    openssl x509 -in keys/station-key.crt -noout -pubkey -subject  # = pub key; CN = station
    openssl ts -verify -token_in -in manifests/X.manifest.0.tst \\
        -data manifests/X.manifest.json -CAfile YOUR-COPY-OF-THE-TSA-ROOT.pem
    openssl ts -reply -token_in -in manifests/X.manifest.0.tst -text   # "Time stamp:"
    openssl pkeyutl -verify -pubin -inkey keys/station-key.pub.pem -rawin \\
        -in bundle/manifest.json -sigfile bundle/manifest.sig        # covers every file
    openssl pkeyutl -verify -pubin -inkey keys/station-key.pub.pem -rawin \\
        -in log/checkpoint.json -sigfile log/checkpoint.sig

`manifests/X.start.N.tst` timestamps the clip's start: it is over the canonical JSON of
`start_statement` in `manifests/X.manifest.json` (keys sorted, no spaces; `verify.py` checks
it), and its time should be within {max_delay} minutes after the manifest's own `started_at`
(not the statement's: with a `clock_step_s` they differ by it) / 开始时间戳：对清单中
`start_statement` 的规范 JSON 盖的时间戳，其时间应在清单本身的 `started_at`（不是
`start_statement` 里的；有 `clock_step_s` 时两者相差该值）之后 {max_delay} 分钟内。

`bundle/manifest.json` lists every file's SHA-256 and the log entries of all of the order's
clips; `log/X.inclusion.json` and `log/checkpoint-N.consistency.json` are RFC 9162 Merkle
proofs (`verify.py` recomputes them). `SHA256SUMS` only detects transport damage.
"""


PARTIAL_NOTE = """
## 本证据包不完整 / This bundle is partial

本订单有 {n} 段视频已被工位的保留策略删除，包内没有这些视频，只有工位签名的删除记录
（`deleted/`）。验证结果只针对包内的视频；删除记录是卖家自己的声明，删除日期也是（没有可信
时间戳机构见证）：它只说明缺口，既不能证明视频何时被删除，也不能证明被删除的视频内容。

{n} clip(s) of this order were deleted by the station's retention: they are not in this
bundle, only the station's signed deletion records are (`deleted/`). The verdict is for the
clips that are here; a deletion record is the seller's own statement, its date too (no
time-stamp authority saw it): it explains the gap, it proves neither when the clip was deleted
nor what it showed. The verifiers print each one as
`clip-deleted-by-retention`.
"""


def verify_md(
    index: dict[str, Any], ca_fp: str | None, tsa_fps: list[str], sizes: list[int]
) -> str:
    """The bundle's VERIFY.md (``sizes``: its checkpoint's, then its clips' own: the witness
    record to fetch must hold them, as a clip the witness has not seen is not vouched for)."""
    gaps = len(index.get("deleted_clips") or [])
    return VERIFY_TEMPLATE.format(
        order=index["order_id"],
        station=index["station"],
        tree_size=sizes[0],
        witness_path=witness_path(str(index["station"]), sizes),
        created=index["created_utc"],
        bundle_name="bundle.zip",
        ca_fp=ca_fp or "—",
        tsa_fps=", ".join(f"`{f}`" for f in tsa_fps) or "—",
        max_delay=15,
    ) + (PARTIAL_NOTE.format(n=gaps) if gaps else "")


def _tokens_text(n: int) -> str:
    if n:
        return f"{n} 个时间戳 · {n} token(s) from a time-stamping authority"
    return "无 · none: the recording time rests on the station's clock alone"


def _start_tokens_text(stated: bool, n: int) -> str:
    """The tokens over a clip's start statement (docs/proof.md): when its start was seen."""
    if not stated:
        return "未记录 · none: this clip's signed manifest has no start statement"
    if n:
        return (
            f"{n} 个时间戳（开始声明）· {n} token(s) over the clip's start statement: the "
            "verifier says when the authority saw it"
        )
    return "无 · none: the clip's start time is the station's word"


def _clock_text(synced: object) -> str:
    if synced is True:
        return "是 · yes, the station's clock was NTP-synchronised when it recorded"
    if synced is False:
        return "否 · no: the station's clock was not NTP-synchronised; its times may be off"
    return "未记录 · not recorded"


def _intro_html(tokens: int, clips: int) -> str:
    """What the bundle proves, and only that: the time claim only with tokens in it."""
    zh = "本证据包中的视频由打包工位在录制时计算哈希、以工位密钥签名，并写入只可追加的日志"
    en = (
        "Each clip in this bundle was hashed and signed by the packing station's key when it "
        "was recorded, and appended to the station's append-only log"
    )
    if tokens:
        zh += "；可信时间戳（RFC 3161）证明签名时间"
        en += (
            f"; {tokens} RFC 3161 token(s) from a time-stamping authority prove when it was signed"
        )
    else:
        zh += "；本包不含可信时间戳，录制时间仅来自工位时钟"
        en += (
            ". It holds no RFC 3161 timestamp: the recording times rest on the station's "
            "clock alone"
        )
    return (
        f"<p>{zh}。验证方法见 VERIFY.md。<br>\n{en}. See VERIFY.md for how anyone can check "
        "this without the seller.</p>"
    )


def _gaps_html(gaps: list[Gap], here: int) -> str:
    """The clips of the order retention deleted, first and plain: this bundle is not the whole
    order's recording, and the deletion record is the seller's own word."""
    if not gaps:
        return ""
    e = html.escape
    items = []
    for g in gaps:
        span = (
            f"{utc_plain(g.manifest.get('started_at'))} – {utc_plain(g.manifest.get('ended_at'))}"
        )
        sha = str(g.manifest.get("sha256"))
        when = utc_plain(g.record.get("deleted_utc"))
        items.append(
            f"<li>本订单第 {g.n} 段视频（{e(span)} UTC，SHA-256 <code>{e(sha)}</code>）"
            f"已被工位的保留策略于 {e(when)} UTC 删除（依据工位自己签名的删除记录）。<br>\n"
            f"Clip {g.n} of this order ({e(span)} UTC, SHA-256 <code>{e(sha)}</code>) was "
            f"deleted by the station's retention on {e(when)} UTC, by its own signed record.</li>"
        )
    total = here + len(gaps)
    return (
        f'<div class="gaps"><p><b>本证据包不完整：本订单共 {total} 段视频，包内只有 {here} 段。'
        f"<br>\nThis bundle is partial: {here} of this order's {total} clips are here.</b></p>"
        f"<ul>{''.join(items)}</ul>"
        f"<p>{DELETION_NOTE_ZH}<br>\n{DELETION_NOTE_EN}</p></div>"
    )


# What a deletion record is worth, in summary.html: its date is the key holder's (no TSA
# sees a retention record), so a date before the dispute proves nothing.
DELETION_NOTE_ZH = (
    "删除记录是卖家工位自己的声明，其日期也是（没有可信时间戳机构见证）：它说明缺"
    "口的原因，既不能证明视频何时被删除，也不能证明视频里有什么。删除日期若在争议"
    "可能开始之后，对卖家不利；更早的日期什么也证明不了。"
)
DELETION_NOTE_EN = (
    "A deletion record is the seller's station's own statement, its date too (no time-stamp "
    "authority saw it): it explains the gap, it proves neither when the clip was deleted nor "
    "what it showed. A date after the dispute may have begun tells against the seller; an "
    "earlier one proves nothing."
)

# Why a clip of a bundle has no key frames: (zh-CN, English), said in bundle.json's warnings
# (English, as its others) and beside the clip in summary.html (both).
NO_FRAMES_UNDECODABLE = "undecodable"  # extract_jpegs could not decode the clip
NO_FRAMES_GONE = "not-here"  # the parts of a clip freed after it was archived: no file to read
NO_FRAMES_TEXT = {
    NO_FRAMES_UNDECODABLE: (
        "本证据包没有这段视频的关键帧：导出时视频无法解码。请播放视频，将画面中的时间与签名的"
        "开始、结束时间比对。",
        "no key frames in this bundle: the clip could not be decoded when it was exported. "
        "Play the clip and compare the time burned into its pictures with the signed start "
        "and end",
    ),
    NO_FRAMES_GONE: (
        "本证据包没有这段视频的关键帧：导出时视频已不在工位上（归档后被保留策略释放，中心站"
        "从存储桶取回视频本身），存储桶中也没有它归档时的关键帧。请播放视频，将画面中的时间与"
        "签名的开始、结束时间比对。",
        "no key frames in this bundle: the clip was not on the station when it was exported "
        "(freed by retention after it was archived; the central site puts the clip itself back "
        "from the bucket), and the bucket had none of the key frames archived with it. Play "
        "the clip and compare the time burned into its pictures with the signed start and end",
    ),
}


def _starts(item: dict[str, Any]) -> tuple[bool, int]:
    """(has a start statement, tokens over it) of a bundle.json clip entry."""
    starts = item.get("start_timestamps")
    return starts is not None, len(starts or [])


_KIND_TEXT = {"order": "打包 Packing an order", "return": "退货拆箱 Return (unboxing)"}


def summary_html(
    index: dict[str, Any],
    summaries: list[tuple[ClipRecord, dict[str, Any], dict[str, Any], int | None, int]],
    cp: Checkpoint,
    ca_fp: str | None,
    gaps: list[Gap] | None = None,
    no_frames: dict[str, str] | None = None,
) -> str:
    """``no_frames``: clip member -> why it has no key frames (NO_FRAMES_*)."""
    e = html.escape
    rows = []
    for r, body, item, seq, n_tokens in summaries:
        frames = "".join(
            f'<figure><img src="{e(f["file"])}" alt="{e(f["label"])}">'
            f"<figcaption>{e(f['label'])} · {f['t_clip_s']:.1f}s</figcaption></figure>"
            for f in item["frames"]
        )
        why = (no_frames or {}).get(item["clip"])
        if why is not None:
            zh, en = NO_FRAMES_TEXT[why]
            frames = f'<p class="no-frames">{e(zh)}<br>\n{e(en[0].upper() + en[1:])}.</p>'
        # What the station signed, never the (editable) index row, when there is a manifest.
        signed = body if seq is not None else r.to_json()
        waybills = [
            str(w.get("waybill")) for w in signed.get("waybills") or [] if isinstance(w, dict)
        ] or ([str(signed["waybill"])] if signed.get("waybill") else [])
        kind = _KIND_TEXT.get(str(signed.get("kind") or "order"), str(signed.get("kind")))
        # A repack names the earlier clips by their SHA-256 (ids are only the station's).
        repack = ", ".join(f"SHA-256 {str(h)[:16]}…" for h in signed.get("repack_of_sha256") or [])
        if signed.get("repack") and not repack:
            repack = "earlier clip of this order (recorded just before)"
        rows.append(
            f"""<section class="clip">
<h2>{e(Path(r.path).name)}</h2>
<table>
<tr><th>类型 Kind</th><td class="kind">{e(kind)}</td></tr>
<tr><th>订单 Order</th><td>{e(str(signed.get("order_id")))}</td></tr>
<tr><th>打包员 Packer</th><td>{e(str(signed.get("packer") or "—"))}</td></tr>
{f"<tr><th>重新打包 Repack of</th><td class='repack'>{e(repack)}</td></tr>" if repack else ""}
<tr><th>运单 Waybill</th><td>{e(", ".join(waybills) or "—")}</td></tr>
<tr><th>工位 Station</th><td>{e(str(signed.get("station")))}</td></tr>
<tr><th>开始 Start</th><td>{e(str(signed.get("started_at")))}</td></tr>
<tr><th>结束 End</th><td>{e(str(signed.get("ended_at")))}
 ({float(signed.get("duration_s") or 0):.1f} s, {e(str(signed.get("finish_reason")))})</td></tr>
<tr><th>SHA-256</th><td><code>{e(str(signed.get("sha256")))}</code>
 ({signed.get("size")} bytes)</td></tr>
<tr><th>日志序号 Log entry</th><td>{"—" if seq is None else seq} / {cp.tree_size}</td></tr>
<tr><th>可信时间戳 RFC 3161</th><td>{_tokens_text(n_tokens)}</td></tr>
<tr><th>开始时间戳 Start RFC 3161</th><td>{_start_tokens_text(*_starts(item))}</td></tr>
<tr><th>时钟同步 NTP</th><td>{_clock_text(body.get("clock_synced"))}</td></tr>
</table>
<div class="frames">{frames}</div>
</section>"""
        )
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>证据包 Evidence bundle — {e(index["order_id"])}</title>
<style>
body{{font-family:system-ui,"Noto Sans CJK SC","WenQuanYi Zen Hei",sans-serif;margin:1.5em;
max-width:60em}} th{{text-align:left;padding-right:1em;white-space:nowrap}}
code{{font-size:.8em;word-break:break-all}} .frames{{display:flex;flex-wrap:wrap;gap:.5em}}
figure{{margin:0}} img{{width:12em;border:1px solid #999}} figcaption{{font-size:.8em}}
.clip{{border-top:1px solid #ccc;margin-top:1em}}
.gaps{{border:2px solid #a40000;padding:0 1em;margin:1em 0}}
.no-frames{{border-left:4px solid #a40000;padding-left:.5em}}
</style></head><body>
<h1>打包视频证据 · Packing video evidence</h1>
<p>订单 Order <b>{e(index["order_id"])}</b> · 工位 Station <b>{e(index["station"])}</b>
· 导出 Exported {e(index["created_utc"])} · {e(index["software"])}</p>
{_intro_html(sum(n for *_, n in summaries), len(summaries))}
{_gaps_html(gaps or [], len(summaries))}
<p>公司根证书 Company CA: <code>{e(ca_fp or "—")}</code></p>
{"".join(rows)}
</body></html>
"""
