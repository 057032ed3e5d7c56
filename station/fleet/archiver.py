"""Background archiver: every finished clip, its proofs and key frames go to object storage."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station.config import Config
from station.errors import StationError
from station.fleet.objstore import (
    LocalFileChanged,
    ObjectStore,
    bundle_parts_key,
    clip_key,
    key_files_dir,
    station_prefix,
)
from station.proof import ProofError
from station.proof.bundle import export_order, extract_jpegs
from station.proof.keys import StationKey, fingerprint, load_public_pem
from station.proof.log import ProofLog
from station.proof.paths import ProofPaths
from station.proof.rotation import RotationFiles, cert_is_for
from station.proof.standalone_verify import FRAME_READ_MAX
from station.proof.verify import BUNDLE_MANIFEST
from station.proof.videohash import keyframe_times
from station.runtime.background import IndexWorker, Schedule
from station.store.ledger import ClipRecord, Ledger

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 900.0
LOCAL_PROBLEM_RETRY_S = 3600.0  # a clip whose file is missing or changed: look again hourly
TOKENS_CURSOR = "archive:tokens"
CHECKPOINTS_CURSOR = "archive:checkpoints"
BUNDLES_CURSOR = "archive:bundles"
DELETIONS_CURSOR = "archive:deletions"
PARTS_SPOOL = "archive-spool"  # in the data dir: a bundle's parts between export and upload


@dataclass(frozen=True)
class ArchiveStats:
    clips: int = 0
    objects: int = 0
    bytes_sent: int = 0


class Archiver(IndexWorker):
    """Uploads clips, manifests, log entries, checkpoints, RFC 3161 tokens and key frames.

    The station index is the queue: every clip with ``archived_utc IS NULL`` is due, oldest
    first, so the startup scan, a crash or a week offline need no extra bookkeeping.
    ``on_finished`` (the recorder's callback) only wakes the thread. A clip is marked archived
    (``Ledger.mark_archived``) only after each of its objects is verified in the bucket, which
    is what lets retention free the local copy.

    Threads: one daemon thread (``start``/``stop``); ``run_once`` may be called instead of
    starting it (CLI, tests). Store outages back off exponentially from ``archive.retry_s`` to
    15 minutes; a clip with a local problem (file missing or no longer the indexed bytes) is
    logged and retried hourly, without holding up the others.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        ledger: Ledger | None = None,
        store: ObjectStore | None = None,
        client: Any | None = None,
        on_archived: Callable[[ClipRecord], None] | None = None,
    ) -> None:
        self.a = cfg.archive
        schedule = Schedule(
            self.a.scan_interval_s, self.a.retry_s, max(MAX_BACKOFF_S, self.a.retry_s)
        )
        super().__init__(cfg, ledger, name="archiver", job=self.run_once, schedule=schedule)
        self.proof_log = ProofLog(self.index)
        # the store gives up mid-upload when self._stop is set
        self.store = store or ObjectStore(
            self.a, client=client, journal=self.journal, stop=self._stop
        )
        if self.store.journal is None:
            self.store.journal = self.journal
        self.store.stop = self._stop
        self.prefix = station_prefix(self.a.prefix, cfg.station.name)
        self.on_archived = on_archived
        self._skip_until: dict[int, float] = {}
        self._ready = False
        self.stats = ArchiveStats()

    # ---- lifecycle ----------------------------------------------------------------------------

    STOP_TIMEOUT_S = 30.0  # "stop after the current request": a part upload may be slow

    def start(self) -> None:
        super().start()
        log.info("archiver: uploading to bucket %r under %s", self.a.bucket, self.prefix)

    def backlog(self) -> int:
        return self.ledger.archive_backlog()

    # ---- one pass -----------------------------------------------------------------------------

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        self.store.detect_object_lock()
        self._upload_keys()
        self._ready = True

    def run_once(self) -> int:
        """Archive every due clip, then new checkpoints and tokens; return clips archived.

        Store errors propagate (the loop backs off); local problems of one clip do not.
        """
        self._ensure_ready()
        done = 0
        after = 0
        while not self._stop.is_set():
            batch = self.ledger.unarchived_clips(after_id=after, limit=50)
            if not batch:
                break
            for rec in batch:
                after = int(rec.id or 0)
                if self._stop.is_set():
                    break
                if self._skip_until.get(after, 0.0) > time.monotonic():
                    continue
                try:
                    if self.archive_clip(rec):
                        done += 1
                except (LocalFileChanged, FileNotFoundError, IsADirectoryError) as exc:
                    log.error("archiver: clip %s not archived: %s", rec.path, exc)
                    self._skip_until[after] = time.monotonic() + LOCAL_PROBLEM_RETRY_S
        if not self._stop.is_set():
            self._upload_checkpoints()
            self._upload_tokens()
            self._upload_bundle_parts()
        return done

    def archive_clip(self, rec: ClipRecord) -> bool:
        """Upload everything of one clip, verified, then mark it archived. True if marked now."""
        assert rec.id is not None
        path = self._local(rec.path)
        if not path.is_file():
            raise FileNotFoundError(f"{rec.path} is not in {self.data_dir}")
        t0 = time.monotonic()
        sent0 = self.store.bytes_sent
        meta: dict[str, Any] = {"bucket": self.a.bucket}
        objects = 0
        manifest = self._local(rec.manifest_path)
        body: dict[str, Any] = {}
        if manifest.is_file():
            raw = manifest.read_bytes()
            try:
                body = json.loads(raw)
            except ValueError as exc:  # damaged: a problem of this clip, not of the store
                raise LocalFileChanged(f"{rec.manifest_path}: not a JSON manifest: {exc}") from exc
            if not isinstance(body, dict) or body.get("sha256", rec.sha256) != rec.sha256:
                raise LocalFileChanged(f"{rec.manifest_path}: not the manifest of {rec.path}")
            # Named by its own digest too: one recording logged twice (relabelled to a second
            # order, `clip-logged-twice`) has two signed manifests of the same clip bytes, and
            # the second must never write over the first (each row's meta names its own; the
            # `<clip sha256>.json` of before stays readable where a row names it)
            digest = hashlib.sha256(raw).hexdigest()[:16]
            key = f"{self.prefix}manifests/{rec.sha256}-{digest}.json"
            self.store.put_bytes(key, raw, content_type="application/json")
            meta["manifest"] = key
            objects += 1
        meta["log"] = self._upload_log_entry(rec)
        objects += 2 if meta["log"] else 0
        cut: dict[str, bytes] = {}
        if self.a.keyframes:
            meta["frames"], cut = self._cut_frames(rec, path, body or rec.to_json())
            objects += len(meta["frames"])
        key = clip_key(self.a.prefix, self.cfg.station.name, rec.sha256)
        # put_file checks the local file against the index (LocalFileChanged) before anything
        # of it is stored: frames cut from it go up only after that, never from another file
        result = self.store.put_file(
            key, path, sha256=rec.sha256, size=rec.size, content_type="video/mp4"
        )
        for frame_key, jpg in cut.items():
            self.store.put_bytes(frame_key, jpg, content_type="image/jpeg", check_existing=False)
        objects += 1
        meta["clip"] = key
        meta["verified_by"] = result.verified_by
        marked = self.ledger.mark_archived(rec.id, key, meta)
        sent = self.store.bytes_sent - sent0
        self.stats = ArchiveStats(
            self.stats.clips + int(marked),
            self.stats.objects + objects,
            self.stats.bytes_sent + sent,
        )
        log.info(
            "archived %s -> %s (%s; %d objects, %d bytes sent in %.1f s)",
            rec.path,
            key,
            result.verified_by if result.uploaded else "already there, " + result.verified_by,
            objects,
            sent,
            time.monotonic() - t0,
        )
        if marked and self.on_archived is not None:
            self.on_archived(rec)
        return marked

    def _local(self, rel: str) -> Path:
        root = self.data_dir.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise LocalFileChanged(f"indexed path {rel!r} points outside the data dir")
        return path

    # ---- proof material -----------------------------------------------------------------------

    def _upload_log_entry(self, rec: ClipRecord) -> dict[str, Any] | None:
        """The exact signed manifest bytes of the clip's log leaf and their signature."""
        try:
            entries = self.proof_log.entries_for_clip(rec.sha256) or [
                e for _, e in self.proof_log.archived_entries_for_clip(rec.sha256)
            ]  # a clip logged before a key rotation sits in its retired key's closed log
        except StationError as exc:
            log.warning("archiver: no proof log for %s: %s", rec.path, exc)
            return None
        if not entries:
            return None
        # The leaf of this clip: the same bytes logged twice (one recording under two orders,
        # `clip-logged-twice`) are two leaves, and each row must name its own, or the central
        # site sees one signed manifest where the station signed two
        e = next((x for x in reversed(entries) if x.clip_path == rec.path), entries[-1])
        # Under the signing key: a replaced station (same name, new key) starts its log at seq 0
        # again, and must never write over the old station's leaves. Named by the leaf's digest
        # too: a station restored from a backup (same key) signs again the numbers of the day
        # it lost, and those leaves are in the bucket, the only signed record of their clips.
        fp = e.key_fingerprint.split(":", 1)[-1][:16]
        base = f"{self.prefix}proof/log/{fp}/{e.seq:010d}-{e.manifest_sha256[:16]}"
        self.store.put_bytes(base + ".manifest.json", e.manifest, content_type="application/json")
        self.store.put_bytes(base + ".sig", e.signature)
        return {
            "seq": e.seq,
            "manifest": base + ".manifest.json",
            "signature": base + ".sig",
            "manifest_sha256": e.manifest_sha256,
            "key_fingerprint": e.key_fingerprint,
        }

    def _upload_keys(self) -> None:
        """The station's public key and certificates (never the private key), once per start:
        each file under ``keys/`` by its digest, and the certificate of each signing key (the
        station key, and a retired one's kept in ``proof-public/retired/``) with the company
        CA's under ``keys/<key fingerprint, 16 hex>/`` too (``key_files_dir``), where the
        central /verify page finds a key's certificate without listing every renewal."""

        paths = ProofPaths.from_config(self.cfg)
        certified: list[tuple[bytes, Path]] = []  # (a key's public PEM, its certificate file)
        if paths.key.exists():
            try:
                key = StationKey.load(paths.key)
            except StationError as exc:
                log.warning("archiver: cannot read the station key: %s", exc)
            else:
                fp = key.fingerprint.split(":", 1)[-1][:16]
                self.store.put_bytes(
                    f"{self.prefix}keys/{fp}.pub.pem", key.public_pem(), content_type="text/plain"
                )
                certified.append((key.public_pem(), paths.key_cert))
        for src in (paths.key_cert, paths.ca_cert, paths.c2pa_cert):
            self._put_key_file(f"{self.prefix}keys/", src)
        for retired in sorted(RotationFiles.of(paths).retired_public.glob("*/station-key.pub.pem")):
            certified.append((retired.read_bytes(), retired.with_name("station-key.crt")))
        for pem, cert in certified:
            if not cert_is_for(cert, pem):  # none yet, or one of another key
                continue
            try:
                where = key_files_dir(f"{self.prefix}keys/", fingerprint(load_public_pem(pem)))
            except ProofError as exc:
                log.warning("archiver: %s: not a public key: %s", cert.parent, exc)
                continue
            for src in (cert, paths.ca_cert):
                self._put_key_file(where, src)

    def _put_key_file(self, where: str, src: Path) -> None:
        """Public file ``src``, if there, as ``<where><its stem>-<sha256, 16 hex><suffix>``."""
        if src.is_file():
            data = src.read_bytes()
            digest = hashlib.sha256(data).hexdigest()[:16]
            self.store.put_bytes(f"{where}{src.stem}-{digest}{src.suffix}", data,
                                 content_type="text/plain")  # fmt: skip

    def _upload_checkpoints(self) -> None:
        try:
            cps = self.proof_log.checkpoints()
        except StationError:
            return
        cursor = self.cursors.cursor(CHECKPOINTS_CURSOR)
        for cp in cps:
            if cp.id <= cursor or self._stop.is_set():
                continue
            # Named by the signed body's digest too: an idle station signs a heartbeat
            # checkpoint of the same size and root every checkpoint_interval_min, and each is
            # a signed statement of its own (its RFC 3161 token stamps that body), never
            # written over by the next (size-root names from before stay as they are)
            digest = hashlib.sha256(cp.body).hexdigest()[:16]
            base = (
                f"{self.prefix}proof/checkpoints/{cp.tree_size:010d}-{cp.root_hash[:16]}-{digest}"
            )
            self.store.put_bytes(base + ".json", cp.body, content_type="application/json")
            self.store.put_bytes(base + ".sig", cp.signature)
            self.cursors.set_cursor(CHECKPOINTS_CURSOR, cp.id)

    def _upload_tokens(self) -> None:
        """Granted RFC 3161 tokens (manifests and checkpoints) not uploaded yet.

        The cursor only passes rows that are settled (granted and uploaded, or given up); a
        pending request holds it, and granted ones after it are re-checked (HEAD) next time.
        """
        cursor = self.cursors.cursor(TOKENS_CURSOR)
        rows = self.proof_log.tables.timestamps_after(cursor)
        settled = True
        for r in rows:
            if self._stop.is_set():
                return
            if r.status == "granted" and r.token is not None:
                tsa = hashlib.sha256(r.tsa_url.encode()).hexdigest()[:8]
                # Named by the token's own digest too: a request granted twice (a station
                # restored from a backup asks again for a token it had uploaded) gives a
                # second token of the same subject from the same TSA, and the first must stay
                # (`<subject>.<tsa>.tst` of before stays readable: readers list the subject)
                own = hashlib.sha256(r.token).hexdigest()[:16]
                key = f"{self.prefix}proof/tokens/{r.subject_sha256}.{tsa}.{own}.tst"
                self.store.put_bytes(key, r.token, content_type="application/timestamp-reply")
            elif r.status == "pending":
                settled = False
            if settled:
                self.cursors.set_cursor(TOKENS_CURSOR, r.id)

    # ---- evidence bundles -----------------------------------------------------------------------

    def _upload_bundle_parts(self) -> None:
        """For each order with a newly archived clip: its evidence bundle without the clips,
        signed here (the bundle manifest lists every member, the clips by SHA-256), so the
        central site can stream the whole signed bundle from the bucket, also once this station
        is gone. Follows ``archive_seq``; a clip whose RFC 3161 token is still pending holds
        the cursor (a bundle without it would not prove the time). See docs/fleet.md.
        """

        cursor = self.cursors.cursor(BUNDLES_CURSOR)
        archived = self.clips.archived_after(cursor)
        spool = self.data_dir / PARTS_SPOOL
        for left in spool.glob("*") if spool.is_dir() else ():  # a pass cut short by a crash
            left.unlink(missing_ok=True)
        built: set[str] = set()
        for seq, order_id, sha256 in archived:
            # a clip whose RFC 3161 token is still pending holds the cursor
            if self._stop.is_set() or self.proof_log.tables.pending_for_clip(sha256):
                return
            if order_id not in built:  # the export takes every clip of the order at once
                built.add(order_id)
                self._build_parts(order_id, spool / f"order-{seq}.zip", self._log_key(sha256))
            self.cursors.set_cursor(BUNDLES_CURSOR, seq)
        self._upload_deletion_parts()

    def _upload_deletion_parts(self) -> None:
        """Sign and upload the parts again of each order with an archived clip whose other
        clip retention deleted before the archiver sent it (``archive_required = false``):
        parts signed before the deletion list that clip by its hash, and the central site
        would wait forever for an object the bucket never gets; the new parts carry it as
        deleted, with the station's signed record. Follows the deletions; a pending RFC 3161
        token of the order holds the cursor, as in ``_upload_bundle_parts``."""

        cursor = self.cursors.cursor(DELETIONS_CURSOR)
        spool = self.data_dir / PARTS_SPOOL
        # Not the orders built above: a deletion may have come after their export.
        built: set[str] = set()
        for deletion_id, order_id in self.ledger.unarchived_deletions_after(cursor):
            if self._stop.is_set() or any(
                self.proof_log.tables.pending_for_clip(c.sha256)
                for c in self.ledger.clips(order_id)
            ):
                return
            if order_id not in built:  # parts built since carry every deletion before
                built.add(order_id)
                clips = self.ledger.clips(order_id)  # one log: the export refuses two
                log_key = next((k for c in clips if (k := self._log_key(c.sha256))), None)
                self._build_parts(order_id, spool / f"deleted-{deletion_id}.zip", log_key)
            self.cursors.set_cursor(DELETIONS_CURSOR, deletion_id)

    def _build_parts(self, order_id: str, out: Path, log_key: str | None) -> None:
        """Export the parts of ``order_id`` to ``out`` (in the spool) and upload them under
        ``log_key`` (``_put_parts``)."""
        out.parent.mkdir(exist_ok=True)
        try:
            result = export_order(
                self.cfg, order_id, out, without_clips=True, archived_frames=self._archived_frames
            )
            self._put_parts(order_id, out, result.checkpoint_size, log_key)
        except ProofError as exc:
            log.info("archiver: no bundle parts for order %r: %s", order_id, exc)
        finally:
            out.unlink(missing_ok=True)
            out.with_name(out.name + ".part").unlink(missing_ok=True)

    def _archived_frames(self, rec: ClipRecord) -> list[tuple[float, str, bytes]]:
        """The key frames this station cut from ``rec`` and uploaded when it archived it, read
        back from the bucket (the clip is freed here): the parts carry them as an export from
        the clip would, and `packcam verify` holds each to the clip's picture. One gone from
        the bucket (or larger than any picture) is left out; a store error propagates (the
        parts are built again)."""
        state = self.ledger.archive_state(rec.id) if rec.id is not None else None
        meta = (state or {}).get("archive_meta") or {}
        own = f"{self.prefix}frames/{rec.sha256}/"  # never another clip's, whatever the meta says
        out: list[tuple[float, str, bytes]] = []
        for f in meta.get("frames") or []:
            key = f.get("key") if isinstance(f, dict) else None
            if not isinstance(key, str) or not key.startswith(own):
                continue
            head = self.store.head(key)
            if head is None:
                log.warning("archiver: key frame %s of %s is not in the bucket", key, rec.path)
                continue
            if int(head.get("ContentLength") or 0) > FRAME_READ_MAX:  # a JPEG of one picture
                log.warning("archiver: key frame %s of %s is too large; left out", key, rec.path)
                continue
            out.append((float(f.get("t", 0.0)), str(f.get("label")), self.store.get_bytes(key)))
        return out

    def _log_key(self, sha256: str) -> str | None:
        """The fingerprint of the key whose log holds the clip's leaf (a retired key's, when
        the clip was logged before a rotation); None when it has none."""
        try:
            live = self.proof_log.entries_for_clip(sha256)
            closed = [] if live else self.proof_log.archived_entries_for_clip(sha256)
        except StationError:
            return None
        e = live[-1] if live else (closed[-1][1] if closed else None)
        return e.key_fingerprint if e is not None else None

    def _put_parts(self, order_id: str, parts: Path, tree_size: int, log_key: str | None) -> None:

        with zipfile.ZipFile(parts) as zf:
            if BUNDLE_MANIFEST not in zf.namelist():
                # unsigned parts would make an unanchored bundle: nothing to offer
                log.warning("archiver: bundle parts of order %r not signed; not uploaded", order_id)
                return
            station_key = json.loads(zf.read(BUNDLE_MANIFEST))["station_key"]
        # Under the key of the log the clips are in, where the central site looks (the clips'
        # archive_meta): after a rotation the current key signs the parts of an order whose
        # clips are in the retired key's log, with that log's final checkpoint.
        key = bundle_parts_key(self.a.prefix, self.cfg.station.name, order_id,
                               log_key or station_key, tree_size)  # fmt: skip
        data = parts.read_bytes()
        if self.store.check_archived(key, len(data), hashlib.sha256(data).hexdigest()) is None:
            return  # these very parts are there
        # Other parts at that checkpoint are older ones of the order (a clip deleted or a
        # token granted since): the newer replace them, which is no fault of the bucket.
        self.store.put_bytes(key, data, content_type="application/zip", check_existing=False)
        log.info("archiver: evidence bundle parts of order %r -> %s", order_id, key)

    # ---- key frames ---------------------------------------------------------------------------

    def _cut_frames(
        self, rec: ClipRecord, path: Path, body: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
        """JPEGs at the start, each scan and the end (as in the evidence bundle): the frames'
        entries for the archive meta, and the JPEGs not in the bucket yet, by key (uploaded
        by the caller once the clip itself is verified)."""

        times = keyframe_times(body)
        out: list[dict[str, Any]] = []
        todo: list[tuple[float, str]] = []
        keys: dict[tuple[float, str], str] = {}
        for t, label in times:
            key = f"{self.prefix}frames/{rec.sha256}/{t:07.2f}s_{label}.jpg"
            keys[(t, label)] = key
            # Derived data: an existing frame is kept as it is (re-encoding could differ).
            if self.store.head(key) is None:
                todo.append((t, label))
        made = {(t, label): jpg for t, label, jpg in extract_jpegs(path, todo)} if todo else {}
        cut: dict[str, bytes] = {}
        for t, label in times:
            key = keys[(t, label)]
            if (t, label) in made:
                cut[key] = made[(t, label)]
            elif (t, label) in todo:
                continue  # could not decode that moment; the clip is what matters
            out.append({"key": key, "t": round(t, 2), "label": label})
        return out, cut
