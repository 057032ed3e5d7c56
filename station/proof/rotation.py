"""Key rotation: close the log with a final checkpoint signed by both keys, start a new one."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from station.config import Config
from station.proof import ProofError
from station.proof.ca import DOCUMENT_SIGNING
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey, write_private, write_public
from station.proof.log import ProofLog, Rotation, checkpoint_body, utc_now
from station.proof.paths import ProofPaths
from station.proof.trust import ChainError, verify_chain
from station.proof.tsa import TsaQueue, load_roots

log = logging.getLogger(__name__)

RETIRED_DIR = "retired"  # <data>/proof-public/retired/<hex>/: a retired key's public files


@dataclass(frozen=True)
class RotationFiles:
    """Where a rotation keeps its pieces between steps (all beside the live ones)."""

    next_key: Path  # the successor's private key, until it replaces the station key
    next_public: Path  # its public half, published for `packcam ca issue --station-key`
    next_cert: Path  # its certificate (from --cert), installed once the rotation committed
    retired_public: Path  # proof-public/retired/
    retired_private: Path  # proof/retired/ (only with --keep-old-key)

    @classmethod
    def of(cls, paths: ProofPaths) -> RotationFiles:
        return cls(
            next_key=paths.key.with_name("station-key.next.pem"),
            next_public=paths.public_dir / "station-key.next.pub.pem",
            next_cert=paths.dir / "station-key.next.crt",
            retired_public=paths.public_dir / RETIRED_DIR,
            retired_private=paths.dir / RETIRED_DIR,
        )

    def retired(self, key_fp: str) -> Path:
        """The folder of one retired key (named by the first 16 hex digits of its fingerprint)."""
        return self.retired_public / key_fp.removeprefix("SHA256:")[:16]


@dataclass(frozen=True)
class RotationResult:
    rotation: Rotation
    tree_size: int
    certified: bool
    kept_old_key: Path | None
    pending_timestamps: int


def final_checkpoint_body(
    station: str, old: StationKey, new_fp: str, tree_size: int, root: bytes
) -> bytes:
    """The old log's last word: an ordinary checkpoint that says it is final and names the key
    that continues the station's record. Both keys sign exactly these bytes."""
    body = checkpoint_body(station, old, tree_size, root, utc_now())
    body.update(final=True, successor_key=new_fp)
    return canonical_json(body)


def prepare(paths: ProofPaths) -> StationKey:
    """Make (or reuse) the successor key and publish its public half, so the company CA can
    certify it before the rotation (`packcam keys rotate --prepare`)."""
    paths.ensure_dirs()
    files = RotationFiles.of(paths)
    key, created = StationKey.load_or_create(files.next_key, public_path=files.next_public)
    if created:
        log.info("prepared successor key %s", key.fingerprint)
    return key


def _check_cert(cert_pem: bytes, key: StationKey, station: str, paths: ProofPaths) -> None:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ProofError(f"--cert is not a PEM certificate: {exc}") from exc
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    try:
        same = cert.public_key().public_bytes(*raw) == key.public.public_bytes(*raw)
    except (TypeError, ValueError):
        same = False
    if not same:
        raise ProofError(
            f"--cert certifies another key, not the successor {key.fingerprint} (issue it with "
            f"`packcam ca issue {station} --station-key {RotationFiles.of(paths).next_public}`)"
        )
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cn != [station]:
        raise ProofError(f"--cert is for station {cn}, not {station!r}")
    if paths.ca_cert.exists():
        ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        try:
            verify_chain(cert, [ca], datetime.now(UTC), eku=DOCUMENT_SIGNING)
        except ChainError as exc:
            raise ProofError(f"--cert does not chain to {paths.ca_cert}: {exc}") from exc


def rotate(cfg: Config, *, cert: Path | None = None, keep_old_key: bool = False) -> RotationResult:
    """Retire the station key: sign the old log's final checkpoint with it and the successor,
    archive the old log (read-only) and its public files, start an empty log under the new key.

    The caller holds the data dir's lock (no clip is being recorded). The commit point is one
    SQLite transaction; the key files change only after it, each step redoable, so
    ``recover`` finishes an interrupted rotation at the next start. Before the commit nothing
    has changed but a prepared successor key, which the next attempt reuses.
    """
    paths = ProofPaths.from_config(cfg)
    paths.ensure_dirs()
    files = RotationFiles.of(paths)
    plog = ProofLog.in_data_dir(cfg.station.data_dir)
    try:
        recover(paths, plog)
        old = StationKey.load(paths.key)
        new = prepare(paths)
        if new.fingerprint == old.fingerprint:
            raise ProofError("the successor key is the station key itself")
        if any(new.fingerprint in (r.old_key, r.new_key) for r in plog.rotations()):
            raise ProofError(f"key {new.fingerprint} was used before: make a fresh one")
        if cert is not None:
            pem = cert.read_bytes()
            _check_cert(pem, new, cfg.station.name, paths)
            write_public(files.next_cert, pem)
        kept = None
        if keep_old_key:
            files.retired_private.mkdir(mode=0o700, parents=True, exist_ok=True)
            kept = files.retired_private / (old.fingerprint.removeprefix("SHA256:")[:16] + ".pem")
            if not kept.exists():  # a copy: the original is overwritten after the commit
                write_private(kept, paths.key.read_bytes())
        rot, size = _commit(plog, cfg, old, new)
        _finish(paths, plog, rot)
        pending = 0
        if cfg.proof.tsa_urls:
            TsaQueue(
                plog,
                roots=load_roots(paths.tsa_ca),
                timeout_s=cfg.proof.tsa_timeout_s,
                retry_s=cfg.proof.tsa_retry_s,
            ).process_due()
            pending = sum(1 for t in plog.timestamps_for(rot.sha256) if t.status == "pending")
        return RotationResult(rot, size, cert is not None, kept, pending)
    finally:
        plog.close()


def _commit(plog: ProofLog, cfg: Config, old: StationKey, new: StationKey) -> tuple[Rotation, int]:
    rot = plog.close_for_rotation(
        old,
        new,
        lambda size, root: final_checkpoint_body(
            cfg.station.name, old, new.fingerprint, size, root
        ),
        cfg.proof.tsa_urls,
    )
    size = _final_size(rot)
    log.warning(
        "key rotation: log of %s closed at %d entries (final checkpoint %d, signed by both "
        "keys); new log under %s",
        old.fingerprint,
        size,
        rot.checkpoint_id,
        new.fingerprint,
    )
    return rot, size


def _final_size(rot: Rotation) -> int:
    return int(json.loads(rot.body)["tree_size"])


def _write_once(path: Path, data: bytes) -> None:
    """A public, read-only (0444) file, written unless it already holds ``data``."""
    try:
        if path.read_bytes() == data:
            return
        path.chmod(0o644)
    except FileNotFoundError:
        pass
    write_public(path, data)
    path.chmod(0o444)


def cert_is_for(path: Path, public_pem: bytes) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        pub = cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (OSError, ValueError, TypeError):
        return False
    return pub == public_pem


def _finish(paths: ProofPaths, plog: ProofLog, rot: Rotation) -> None:
    """Everything after the commit, each step safe to redo: archive the old key's public files,
    install the successor's certificate, destroy the old private key, put the new one in its
    place and publish its public half."""
    files = RotationFiles.of(paths)
    retired = files.retired(rot.old_key)
    retired.mkdir(parents=True, exist_ok=True)
    _write_once(retired / "station-key.pub.pem", rot.old_public_pem)
    _write_once(
        retired / "rotation.json",
        json.dumps(
            {
                "old_key": rot.old_key,
                "new_key": rot.new_key,
                "final_checkpoint_id": rot.checkpoint_id,
                "rotated_utc": rot.created_utc,
            },
            indent=2,
        ).encode(),
    )
    if cert_is_for(paths.key_cert, rot.old_public_pem):
        _write_once(retired / "station-key.crt", paths.key_cert.read_bytes())
        paths.key_cert.unlink()
    if files.next_cert.exists():
        write_public(paths.key_cert, files.next_cert.read_bytes())
        files.next_cert.unlink()
    if files.next_key.exists():
        _destroy(paths.key, rot.old_key)
        os.replace(files.next_key, paths.key)
        _fsync_dir(paths.key.parent)
    write_public(paths.public_key, rot.new_public_pem)
    files.next_public.unlink(missing_ok=True)
    log.info("key rotation finished: station key is now %s", rot.new_key)


def _destroy(path: Path, expect_fp: str) -> None:
    """Overwrite the retired private key before its name is taken by the successor (on flash
    storage this does not guarantee the old bits are gone: treat a suspected leak as a leak)."""
    try:
        if StationKey.load(path).fingerprint != expect_fp:
            return
        size = path.stat().st_size
    except (ProofError, OSError):
        return  # already overwritten (a rotation interrupted after this step) or gone
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(paths: ProofPaths, plog: ProofLog) -> str | None:
    """Finish a rotation interrupted after its commit; refuse a retired key. Run before the
    station key is loaded (the station's start, `packcam keys rotate`). Returns what it did.

    Before the commit a rotation has changed nothing but a prepared successor key (kept for
    the next attempt: its certificate may be on its way), so there is nothing to roll back.
    """
    rots = plog.rotations()
    if not rots:
        return None
    last = rots[-1]
    files = RotationFiles.of(paths)
    if files.next_key.exists():
        try:
            nxt = StationKey.load(files.next_key).fingerprint
        except ProofError:
            nxt = None
        if nxt == last.new_key:
            log.warning("completing the key rotation interrupted after its commit")
            _finish(paths, plog, last)
            return "completed"
    try:
        current = StationKey.load(paths.key).fingerprint
    except ProofError as exc:
        raise ProofError(
            f"the station key was rotated to {last.new_key} on {last.created_utc}, but that "
            f"key is not at {paths.key} ({exc}); restore it from a backup — a new key would "
            "need a new rotation, which the retired key can no longer sign"
        ) from exc
    retired = {r.old_key: r for r in rots}
    if current in retired:
        raise ProofError(
            f"the station key {current} was retired by the rotation of "
            f"{retired[current].created_utc} (successor {retired[current].new_key}): it must "
            "not sign again; put the successor key back"
        )
    if current == last.new_key and (
        files.next_cert.exists() or cert_is_for(paths.key_cert, last.old_public_pem)
    ):
        _finish(paths, plog, last)
        return "completed"
    return None
