"""The recorder finalizer: embed C2PA, hash the final bytes, sign, append to the log, timestamp."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import station
from station.config import Config
from station.proof import ProofError, rotation, startstamp
from station.proof import manifest as manifest_mod
from station.proof.c2pa_embed import (
    C2paEmbedder,
    c2pa_available,
    unavailable_reason,
)
from station.proof.keys import StationKey
from station.proof.log import ProofLog, iso_utc, utc_now
from station.proof.paths import ProofPaths
from station.proof.tsa import TsaQueue, TsaWorker, load_roots
from station.proof.videohash import video_digests
from station.recording.recorder import StartStamp
from station.runtime.background import Repeater, Schedule
from station.runtime.clock import clock_synced
from station.store.files import sha256_file
from station.store.retention import Signer

log = logging.getLogger(__name__)


def build_embedder(cfg: Config, paths: ProofPaths) -> C2paEmbedder | None:
    """The C2PA embedder when ``proof.c2pa`` is on and everything it needs is there, else None."""
    if not cfg.proof.c2pa:
        return None
    if not c2pa_available():
        log.warning("proof.c2pa is on but %s: clips get no C2PA manifest", unavailable_reason())
        return None
    try:
        chain, key = paths.c2pa_cert.read_bytes(), paths.c2pa_key.read_bytes()
    except OSError as exc:
        log.warning(
            "proof.c2pa is on but the station certificate is missing (%s); run "
            "`packcam ca issue %s`: clips get no C2PA manifest",
            exc,
            cfg.station.name,
        )
        return None
    tsa = cfg.proof.tsa_urls[0] if cfg.proof.tsa_urls else None
    return C2paEmbedder(chain, key, tsa_url=tsa, software="packcam", version=station.__version__)


class ProofFinalizer:
    """A ``station.recording.recorder.Finalizer``: ``(final mp4 path, manifest dict) -> manifest
    dict``.

    For each clip, in this order: optionally embed a C2PA manifest (rewrites the file), hash the
    final bytes, sign the manifest (sequence number + previous manifest's hash) with the station
    key, append it to the Merkle log, queue RFC 3161 requests and, every
    ``proof.checkpoint_every`` clips, sign a checkpoint. It must be the recorder's last
    finalizer: anything added to the manifest after it breaks the signature.

    It also fixes each clip's start statement (``start_statement``, which the recorder calls
    at the clip's first frame): the manifest carries it, and a TSA timestamps it at once, so
    the start is anchored as the end is (docs/proof.md).

    Thread contract: calls are serialised by an internal lock (the recorder calls it from its
    finisher thread); timestamps are fetched by a background ``TsaWorker`` thread when TSA URLs
    are configured (``start_worker``). ``start_statement`` runs on the capture thread: it takes
    no lock and does no I/O, its timestamp request is queued in memory and written to the log
    by the worker (or, at the latest, when the clip is signed). ``close`` writes a last
    checkpoint and stops the worker.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        proof_log: ProofLog | None = None,
        key: StationKey | None = None,
        embedder: C2paEmbedder | None = None,
        clock: Callable[[], bool | None] = clock_synced,
        start_worker: bool = True,
    ) -> None:
        self.cfg = cfg
        self.paths = ProofPaths.from_config(cfg)
        self._own_log = proof_log is None
        self.log = proof_log or ProofLog.in_data_dir(cfg.station.data_dir)
        if key is None:
            self.paths.ensure_dirs()  # proof/ 0700 (and ours), proof-public/ 0755
            try:
                # a rotation interrupted after its commit is finished; a retired key refused
                rotation.recover(self.paths, self.log)
                key = StationKey.load_or_create(self.paths.key, public_path=self.paths.public_key)[
                    0
                ]
            except ProofError:
                if self._own_log:
                    self.log.close()
                raise
        self.key = key
        self.embedder = embedder if embedder is not None else build_embedder(cfg, self.paths)
        self.clock = clock
        self._lock = threading.Lock()
        self._since_checkpoint = 0
        self.tsa_urls = cfg.proof.tsa_urls
        self.tsa: TsaQueue | None = None
        self.worker: TsaWorker | None = None
        # start statements' digests from the capture thread, for the worker to queue
        self._starts: queue.SimpleQueue[str] = queue.SimpleQueue()
        if self.tsa_urls:
            self.tsa = TsaQueue(
                self.log,
                roots=load_roots(self.paths.tsa_ca),
                timeout_s=cfg.proof.tsa_timeout_s,
                retry_s=cfg.proof.tsa_retry_s,
            )
            if start_worker:
                self.worker = TsaWorker(
                    self.tsa,
                    poll_s=min(30.0, cfg.proof.tsa_retry_s),
                    before_pass=self._queue_starts,
                )
                self.worker.start()
        self.heartbeat: Repeater | None = None
        if start_worker:
            every = cfg.proof.checkpoint_interval_min * 60.0
            soon = min(60.0, every / 2)
            self.heartbeat = Repeater(
                "proof-checkpoint", self.checkpoint_if_due, Schedule(soon, soon, every)
            )
            self.heartbeat.start()
        log.info(
            "proof: station key %s, log size %d, C2PA %s, TSA %s",
            self.key.fingerprint,
            self.log.size(),
            "on" if self.embedder else "off",
            ", ".join(self.tsa_urls) or "none",
        )

    def __call__(self, path: Path, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._finalize(path, data)

    def start_statement(self, order_id: str, clip: str, started_at: datetime) -> dict[str, Any]:
        """The start statement of a clip whose first frame is ``started_at`` (the recorder's
        ``StartStamp``, on the capture thread: no lock, no I/O). Its timestamp request goes to
        the TSA worker in memory; the worker writes it to the log and asks the TSA."""
        st = startstamp.statement(
            station=self.cfg.station.name,
            station_key=self.key.fingerprint,
            order_id=order_id,
            clip=clip,
            started_at=started_at,
        )
        if self.tsa_urls:
            self._starts.put(startstamp.digest(st))
            if self.worker is not None:
                self.worker.wake()
        return st

    def _queue_starts(self) -> None:
        """Queue the timestamp requests of the start statements made since (the worker's
        thread, before each pass)."""
        while True:
            try:
                digest = self._starts.get_nowait()
            except queue.Empty:
                return
            self.log.enqueue_timestamp("start", digest, self.tsa_urls)

    def _finalize(self, path: Path, data: dict[str, Any]) -> dict[str, Any]:
        start = data.get("start_statement")
        if start is not None and (
            not isinstance(start, dict) or start.get("station_key") != self.key.fingerprint
        ):
            # fixed under another key (a clip recovered after `packcam keys rotate`): it would
            # contradict the manifest this key signs; the start is then unanchored
            log.warning("the start statement of %s names another key; left out", path.name)
            data = {k: v for k, v in data.items() if k != "start_statement"}
        elif start is not None and self.tsa_urls:
            # queued here too: the capture thread's request may not have reached the log yet
            # (recovery after a crash, or no worker); the same request is queued once
            self.log.enqueue_timestamp("start", startstamp.digest(start), self.tsa_urls)
        last = self.log.last()
        seq = 0 if last is None else last.seq + 1
        prev = manifest_mod.GENESIS if last is None else last.manifest_sha256
        c2pa_info: dict[str, Any] | None = None
        if self.embedder is not None:
            assertion = {
                "order_id": data.get("order_id"),
                "waybill": data.get("waybill"),
                "station": data.get("station"),
                "started_at": data.get("started_at"),
                "ended_at": data.get("ended_at"),
                "log_index": seq,
                "prev_manifest_sha256": prev,
                "station_key": self.key.fingerprint,
            }
            try:
                c2pa_info = self.embedder.embed(path, assertion, title=path.name)
            except ProofError as exc:  # the clip stays as recorded; the manifest says so
                log.error("C2PA embedding failed for %s, clip kept without it: %s", path, exc)
        size = path.stat().st_size
        digest = sha256_file(path)
        video = video_digests(path)
        body = manifest_mod.build_body(
            {**data, "size": size, "sha256": digest, **({"video": video} if video else {})},
            seq=seq,
            prev_manifest_sha256=prev,
            key=self.key,
            clock_synced=self.clock(),
            signed_at=iso_utc(utc_now()),
            c2pa=c2pa_info,
        )
        signed = manifest_mod.sign(body, self.key)
        self.log.append(
            seq,
            station=str(data.get("station", self.cfg.station.name)),
            clip_path=str(data.get("path", path.name)),
            clip_sha256=digest,
            manifest=signed.canonical,
            signature=signed.signature,
            key_fingerprint=self.key.fingerprint,
        )
        if self.tsa_urls:
            self.log.enqueue_timestamp("manifest", signed.sha256, self.tsa_urls)
        self._since_checkpoint += 1
        if self._since_checkpoint >= self.cfg.proof.checkpoint_every:
            self._checkpoint()
        elif self.worker is not None:
            self.worker.wake()
        log.info("manifest %d signed (%s...) for %s", seq, signed.sha256[:12], path.name)
        return signed.sidecar()

    def _checkpoint(self) -> None:
        cp = self.log.checkpoint(self.key, self.cfg.station.name)
        self._since_checkpoint = 0
        if cp is not None and self.tsa_urls:
            self.log.enqueue_timestamp("checkpoint", cp.sha256, self.tsa_urls)
        if self.worker is not None:
            self.worker.wake()

    def checkpoint(self) -> None:
        """Sign a checkpoint now (on demand, e.g. before an export)."""
        with self._lock:
            self._checkpoint()

    def checkpoint_if_due(self, now: datetime | None = None) -> bool:
        """Sign (and queue a timestamp for) a checkpoint when the newest one is older than
        ``proof.checkpoint_interval_min``, idle or not; True when one was signed."""
        now = now or utc_now()
        with self._lock:
            if not self.log.size():
                return False
            latest = self.log.latest_checkpoint()
            if latest is not None:
                age = (now - datetime.fromisoformat(latest.created_utc)).total_seconds()
                if age < self.cfg.proof.checkpoint_interval_min * 60.0:
                    return False
            self._checkpoint()
            return True

    def close(self) -> None:
        """Checkpoint what is not yet covered, stop the TSA worker, close our log connection."""
        with self._lock:
            latest = self.log.latest_checkpoint()
            if self.log.size() and (latest is None or latest.tree_size < self.log.size()):
                self._checkpoint()
        if self.heartbeat is not None:
            self.heartbeat.stop(timeout=5)
        if self.worker is not None:
            self.worker.stop(timeout=self.cfg.proof.tsa_timeout_s + 5)
        if self._own_log:
            self.log.close()


def _proof_signer(finalizers: Sequence[object]) -> ProofFinalizer | None:
    """The proof signer among ``finalizers``, found by its type (never by what attributes
    another finalizer happens to have)."""
    return next((f for f in finalizers if isinstance(f, ProofFinalizer)), None)


def start_stamp_of(finalizers: Sequence[object]) -> StartStamp | None:
    """The recorder's ``start_stamp``: the proof signer's among ``finalizers`` (None without
    one: no start statements)."""
    signer = _proof_signer(finalizers)
    return signer.start_statement if signer is not None else None


def deletion_signer_of(finalizers: Sequence[object]) -> Signer | None:
    """Retention's ``signer`` of deletion records: the proof signer's station key (None
    without one: records are kept unsigned)."""
    signer = _proof_signer(finalizers)
    return signer.key.sign_record if signer is not None else None


def build_finalizers(cfg: Config) -> tuple[ProofFinalizer, ...]:
    """What the station wires into its Recorder: () when ``proof.enabled`` is off."""
    if not cfg.proof.enabled:
        return ()
    return (ProofFinalizer(cfg),)
