"""S3-compatible object storage: idempotent, verified, resumable, bandwidth-limited uploads."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from station.capture.codes import safe_component
from station.config import ArchiveSection
from station.errors import StationError
from station.store.uploads import Part as Part
from station.store.uploads import UploadJournal as UploadJournal
from station.store.uploads import UploadState as UploadState

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit; the part size grows for files that would need more


class ArchiveError(StationError):
    """An object could not be uploaded or verified (the store is down, refused it, or lied)."""


class VerifyError(ArchiveError):
    """The stored object is not the bytes we have: wrong size, metadata or checksum."""


class LocalFileChanged(ArchiveError):
    """The local file no longer has the size / SHA-256 the index holds: never archived as is."""


# ---- object keys ------------------------------------------------------------------------------


def station_prefix(prefix: str, station: str) -> str:
    """``<prefix>stations/<station>/``; the station name made key-safe (Unicode gets a hash)."""
    p = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    return f"{p}stations/{safe_component(station, 64)}/"


def key_files_dir(station_keys: str, key_fingerprint: str) -> str:
    """Where a station archives the certificate of one of its signing keys, with its company
    CA's, under its ``keys/`` (``station_keys``): a folder named by the first 16 hex digits of
    the key's fingerprint, so a reader lists that key's files only, not every file the station
    archived there since (each renewal is a new object)."""
    return f"{station_keys}{key_fingerprint.removeprefix('SHA256:')[:16]}/"


def clip_key(prefix: str, station: str, sha256: str) -> str:
    """Deterministic: the same clip bytes of the same station always land on the same key."""
    return f"{station_prefix(prefix, station)}clips/{sha256}.mp4"


def bundle_parts_dir(prefix: str, station: str, order_id: str, key_fingerprint: str) -> str:
    """Where a station keeps the signed parts of an order's evidence bundles
    (station/fleet/archiver.py), per signing key (a replaced station starts a new log) and order
    (hashed: IDs are free text)."""
    order = hashlib.sha256(order_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    fp = key_fingerprint.split(":", 1)[-1][:16]
    return f"{station_prefix(prefix, station)}bundles/{order}/{fp}/"


def bundle_parts_key(
    prefix: str, station: str, order_id: str, key_fingerprint: str, tree_size: int
) -> str:
    """Named by the checkpoint it was signed with: the newest covers the most clips."""
    return f"{bundle_parts_dir(prefix, station, order_id, key_fingerprint)}{tree_size:010d}.zip"


# ---- bandwidth ----------------------------------------------------------------------------------


class TokenBucket:
    """Bytes-per-second limiter shared by every upload of one archiver (thread-safe).

    ``consume(n)`` blocks until ``n`` tokens are there; the bucket holds at most ``burst``
    tokens (one second's worth by default), so a long idle period does not allow a long burst.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")  # programming error
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self.clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def consume(self, n: int, stop: threading.Event | None = None) -> bool:
        """Take ``n`` tokens (waiting as needed); False if ``stop`` was set while waiting."""
        remaining = float(n)
        while remaining > 0:
            with self._lock:
                now = self.clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                take = min(remaining, self._tokens)
                self._tokens -= take
                remaining -= take
                wait = 0.0 if remaining <= 0 else min(remaining, self.burst) / self.rate
            if wait > 0:
                if stop is not None:
                    if stop.wait(wait):
                        return False
                else:
                    time.sleep(wait)
        return True


class ThrottledBody(io.BytesIO):
    """An in-memory request body whose reads are paced by a TokenBucket.

    Over plain http botocore reads the whole body once to hash it for SigV4 before sending it;
    the ``before-sign`` / ``before-send`` hooks (``_pacing_off`` / ``_pacing_on``) switch the
    pacing off for that read, so the limit applies to what goes over the wire (retries rewind
    and are paced again). Seeking and telling are ``io.BytesIO``'s, which shares ``data``
    rather than copying it (a part is up to ``archive.part_size_mb``).
    """

    def __init__(
        self,
        data: bytes,
        bucket: TokenBucket | None,
        stop: threading.Event | None = None,
        chunk: int = 64 * 1024,
    ) -> None:
        super().__init__(data)
        self._size = len(data)
        self._bucket = bucket
        self._stop = stop
        self._chunk = chunk
        self.paced = True

    def __len__(self) -> int:
        return self._size

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self._size - self.tell())
        n = left if n is None or n < 0 else min(n, left)
        if n and self.paced and self._bucket is not None:
            for start in range(0, n, self._chunk):  # tokens a chunk at a time: a smooth rate
                if not self._bucket.consume(min(self._chunk, n - start), self._stop):
                    raise ArchiveError("upload stopped")
        return super().read(n)


def _pacing_off(request: Any, **_kw: Any) -> None:
    """botocore ``before-sign`` hook: the signer's hashing read of the body is not sent."""
    body = getattr(request, "body", None)
    if isinstance(body, ThrottledBody):
        body.paced = False


def _pacing_on(request: Any, **_kw: Any) -> None:
    """botocore ``before-send`` hook: from here on the body's reads go over the wire."""
    body = getattr(request, "body", None)
    if isinstance(body, ThrottledBody):
        body.paced = True
        body.seek(0)


# ---- the client ---------------------------------------------------------------------------------


def build_client(a: ArchiveSection, *, attempts: int = 4, timeout_s: float | None = None) -> Any:
    """A boto3 S3 client for the configured store (AWS, MinIO, SeaweedFS, Garage, OSS).

    Checksums are sent only when we ask (``when_required``): some S3-compatible stores do not
    understand boto3's default CRC trailers with aws-chunked bodies; we send our own
    SHA-256 or MD5 headers instead, which every one of them checks. ``attempts`` and
    ``timeout_s`` (default ``a.timeout_s``) bound how long one call can wait on a frozen store:
    at most about ``attempts * timeout_s`` (``attempts`` counts the first try: botocore's own
    ``max_attempts`` would count only the retries).
    """
    timeout = a.timeout_s if timeout_s is None else timeout_s
    import boto3
    from botocore.config import Config as BotoConfig

    kwargs: dict[str, Any] = {"region_name": a.region or None}
    if a.endpoint_url:
        kwargs["endpoint_url"] = a.endpoint_url
    if a.access_key_id or a.secret_access_key:
        kwargs["aws_access_key_id"] = a.access_key_id
        kwargs["aws_secret_access_key"] = a.secret_access_key
    conf = BotoConfig(
        s3={"addressing_style": a.addressing_style},
        signature_version="s3v4",
        retries={"total_max_attempts": attempts, "mode": "standard"},
        connect_timeout=timeout,
        read_timeout=timeout,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
    )
    client = boto3.session.Session().client("s3", config=conf, **kwargs)
    client.meta.events.register("before-sign.s3", _pacing_off)
    client.meta.events.register("before-send.s3", _pacing_on)
    return client


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _code(exc: Exception) -> str:
    resp = getattr(exc, "response", None) or {}
    return str(resp.get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    resp = getattr(exc, "response", None) or {}
    return int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_not_found(exc: Exception) -> bool:
    return _code(exc) in {"404", "NoSuchKey", "NotFound"} or _status(exc) == 404


def is_denied(exc: Exception) -> bool:
    return _code(exc) in {"403", "AccessDenied", "Forbidden"} or _status(exc) == 403


def _not_ours(head: dict[str, Any], size: int, sha256: str) -> str | None:
    """Why a HEAD response is not the object uploaded with ``size`` bytes and ``x-amz-meta-
    sha256`` = ``sha256`` (every upload sets it), or None when size and metadata match."""
    stored = int(head.get("ContentLength", -1))
    if stored != size:
        return f"stored size {stored}, expected {size}"
    meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    if meta.get("sha256") != sha256:
        return f"stored sha256 metadata {meta.get('sha256')!r} differs"
    return None


# ---- the store ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What a stored object must be: size, SHA-256, and the checksums the store can echo."""

    size: int
    sha256: str
    checksum_sha256: str  # base64, as x-amz-checksum-sha256 reports it (composite: "...-N")
    etag: str  # the ETag an honest store gives: md5 hex, or md5-of-md5s "-N"


@dataclass(frozen=True)
class PutResult:
    key: str
    uploaded: bool  # False: it was already there and verified (idempotent retry)
    verified_by: str
    size: int


class ObjectStore:
    """One bucket of an S3-compatible store, as the archiver and the central site use it.

    ``put_file`` / ``put_bytes`` are idempotent: HEAD first, and an object that is already
    there and verifies is not sent again (on a versioned / Object Lock bucket a second PUT
    would make a duplicate version). Files larger than the part size go multipart with the
    upload id and finished parts journalled, so a restart or an outage resumes with the next
    part. Every object carries ``x-amz-meta-sha256`` and is verified after the upload (server
    checksum, ETag, and optionally a full read-back).

    Thread contract: one thread uploads at a time per instance (the archiver's); reads
    (``head``, ``get``, ``presign``) may come from any thread (boto3 clients are thread-safe).
    """

    def __init__(
        self,
        a: ArchiveSection,
        *,
        client: Any | None = None,
        journal: UploadJournal | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.cfg = a
        self.bucket = a.bucket
        self.client = client if client is not None else build_client(a)
        self.journal = journal
        self.stop = stop or threading.Event()
        self.limiter = TokenBucket(a.max_bytes_per_s) if a.max_bytes_per_s > 0 else None
        self.part_size = a.part_size_mb * MiB
        self.lock_enabled: bool | None = None  # None until detect_object_lock()
        self.bytes_sent = 0

    # ---- capability detection ----------------------------------------------------------

    def detect_object_lock(self) -> bool:
        """Whether objects get Object Lock retention; logs once why not when one was asked for."""
        if not self.cfg.object_lock_mode:
            self.lock_enabled = False
            return False
        try:
            resp = self.client.get_object_lock_configuration(Bucket=self.bucket)
            enabled: bool = (
                resp.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            )
            reason = "the bucket has no Object Lock enabled"
        except Exception as exc:  # not supported by the store, or not configured on the bucket
            if not hasattr(exc, "response"):
                raise  # a connection error: the caller retries later
            if _code(exc) in {"AccessDenied", "403"}:
                # A least-privilege station key (docs/fleet.md) may write objects but not read the
                # bucket's settings. Send the retention that was asked for: a bucket that cannot
                # lock refuses such uploads with an error, so retention is never dropped silently.
                log.info(
                    "archive: this key may not read bucket %r's Object Lock configuration;"
                    " uploading with %s retention for %d days as configured",
                    self.bucket,
                    self.cfg.object_lock_mode,
                    self.cfg.object_lock_days,
                )
                self.lock_enabled = True
                return True
            enabled, reason = False, f"{_code(exc) or exc}"
        if not enabled:
            log.warning(
                "archive: object_lock_mode=%s asked for, but bucket %r cannot lock objects (%s);"
                " uploading without retention",
                self.cfg.object_lock_mode,
                self.bucket,
                reason,
            )
        else:
            log.info(
                "archive: Object Lock %s for %d days on bucket %r",
                self.cfg.object_lock_mode,
                self.cfg.object_lock_days,
                self.bucket,
            )
        self.lock_enabled = enabled
        return enabled

    def _lock_args(self) -> dict[str, Any]:
        if self.lock_enabled is None:
            self.detect_object_lock()
        if not self.lock_enabled:
            return {}
        until = datetime.now(UTC) + timedelta(days=self.cfg.object_lock_days)
        return {"ObjectLockMode": self.cfg.object_lock_mode, "ObjectLockRetainUntilDate": until}

    # ---- reads ---------------------------------------------------------------------------

    def head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD; None when there is no object ``key``.

        AWS answers a HEAD of a missing key with 403, not 404, unless the key may list the
        bucket, and a station's ListBucket is conditioned on its prefix, which a HEAD does not
        carry (central/storage_policy.py). So a refused HEAD is followed by a list of that one
        key: absent from it, the object is not there; listed, the refusal stands.
        """
        try:
            return dict(
                self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            )
        except Exception as exc:
            if not hasattr(exc, "response"):
                raise
            if is_not_found(exc):
                return None
            if not is_denied(exc) or self._listed(key, exc):
                raise
            return None

    def _listed(self, key: str, refused: Exception) -> bool:
        """Whether the bucket lists an object named exactly ``key`` (whose HEAD was
        ``refused``); a refused list raises ``refused``: absent and forbidden look alike."""
        try:
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except Exception as exc:
            if hasattr(exc, "response") and is_denied(exc):
                log.error(
                    "archive: bucket %r refuses both HEAD and list of %s, so a missing object"
                    " cannot be told from a forbidden one: this key needs s3:ListBucket on its"
                    " own prefix (the policy `packcam storage-policy` prints)",
                    self.bucket,
                    key,
                )
                raise refused from exc
            raise
        return any(o.get("Key") == key for o in resp.get("Contents", []))

    def get_bytes(self, key: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def sha256_of(self, key: str) -> tuple[str, int]:
        """Read the object back and hash it (SHA-256 hex, size)."""
        resp = self.client.get_object(Bucket=self.bucket, Key=key)
        h = hashlib.sha256()
        n = 0
        body = resp["Body"]  # (its context manager yields the raw stream, not itself)
        try:
            for chunk in body.iter_chunks(MiB):
                h.update(chunk)
                n += len(chunk)
        finally:
            body.close()
        return h.hexdigest(), n

    def presign(self, key: str, expires_s: int, **params: Any) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key, **params},
                ExpiresIn=expires_s,
            )
        )  # fmt: skip

    # ---- verification ----------------------------------------------------------------------

    def verify(self, key: str, exp: Expect, head: dict[str, Any] | None = None) -> str:
        """Check the stored object against ``exp``; return how it was proven, else raise.

        Size and ``x-amz-meta-sha256`` must match. Then proof by the store's own SHA-256
        checksum (a mismatch is fatal), the MD5 ETag (a mismatch only fails to prove: SSE-KMS
        and some stores use other ETags), and a read-back when configured or when nothing
        else proved it.
        """
        h = head if head is not None else self.head(key)
        if h is None:
            raise VerifyError(f"{key}: not in the bucket after the upload")
        other = _not_ours(h, exp.size, exp.sha256)
        if other is not None:
            raise VerifyError(f"{key}: {other}")
        proofs: list[str] = []
        etag = str(h.get("ETag", "")).strip('"').lower()
        cs = h.get("ChecksumSHA256")
        if cs:
            full = _b64(bytes.fromhex(exp.sha256))
            # composite ("<b64>-N") as AWS and SeaweedFS report it; some stores drop the "-N"
            if cs in {exp.checksum_sha256, exp.checksum_sha256.split("-")[0], full}:
                proofs.append("checksum-sha256")
            elif not ("-" in exp.checksum_sha256 or "-" in cs or "-" in etag):
                raise VerifyError(f"{key}: the store's SHA-256 checksum {cs} is not ours")
            # else a multipart object's composite, over other parts than ours (sent with
            # another part size), proves nothing either way: the read-back below decides
        if etag and etag == exp.etag.lower():
            proofs.append("etag-md5")
        if self.cfg.verify_download or not proofs:
            digest, n = self.sha256_of(key)
            if digest != exp.sha256 or n != exp.size:
                raise VerifyError(f"{key}: read back {n} bytes with sha256 {digest[:16]}...")
            proofs.append("read-back-sha256")
        return "+".join(proofs)

    def check_archived(
        self, key: str, size: int, sha256: str, path: Path | None = None
    ) -> str | None:
        """Whether ``key`` still holds the bytes the archiver sent: None when it does, else
        why not ("not in the bucket", another size, SHA-256 metadata or content). Retention
        asks this before it frees an archived clip's local copy (``path``).

        A HEAD gives the size and the ``x-amz-meta-sha256`` every upload sets, but anyone who
        may write the bucket can put other bytes of that size under those metadata. So the
        bytes are proven too: by the store's own SHA-256 checksum (computed from what it
        received; SeaweedFS and S3 refuse a request whose checksum header is not its body's),
        for a multipart object its composite over ``path``'s parts, or else by reading the
        object back and hashing it (one download). Raises ArchiveError when the store cannot
        be asked.
        """
        try:
            h = self.head(key)
            if h is None:
                return "not in the bucket"
            other = _not_ours(h, size, sha256)
            if other is not None or self._checksum_proves(h, size, sha256, path):
                return other
            digest, n = self.sha256_of(key)
        except Exception as exc:  # down, timed out, refused: it could not say, so no verdict
            raise ArchiveError(f"{key}: the store could not be asked: {exc}") from exc
        if (digest, n) != (sha256, size):
            return f"read back {n} bytes with SHA-256 {digest[:16]}..., not the clip's"
        return None

    def _checksum_proves(
        self, head: dict[str, Any], size: int, sha256: str, path: Path | None
    ) -> bool:
        """Whether the store's SHA-256 checksum in ``head`` is that of the clip: its full
        SHA-256, or the composite of the local clip ``path`` cut in our parts (the same bytes
        only: ``path`` must still be the clip). False proves nothing either way."""
        cs = str(head.get("ChecksumSHA256") or "")
        if not cs:
            return False
        if cs == _b64(bytes.fromhex(sha256)):
            return True
        if path is None:
            return False
        try:
            parts, whole = _file_parts(path, self._part_size_for(size), md5=False)
        except OSError:
            return False
        if whole != sha256:
            return False
        composite = self._expect_multipart(sha256, size, parts).checksum_sha256
        # "<b64>-N" as AWS and SeaweedFS report it; some stores drop the "-N"
        return cs in {composite, composite.split("-")[0]}

    def _verified_existing(self, key: str, exp: Expect | Callable[[], Expect]) -> str | None:
        """How an object already in the bucket was proven to be ours; None if absent or bad."""
        h = self.head(key)
        if h is None:
            return None
        try:
            return self.verify(key, exp if isinstance(exp, Expect) else exp(), h)
        except VerifyError as exc:
            log.error("archive: %s is in the bucket but wrong (%s); uploading it again", key, exc)
            return None

    # ---- single-part -----------------------------------------------------------------------

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        check_existing: bool = True,
    ) -> PutResult:
        sha = hashlib.sha256(data)
        md5 = hashlib.md5(data, usedforsecurity=False)
        exp = Expect(len(data), sha.hexdigest(), _b64(sha.digest()), md5.hexdigest())
        if check_existing:
            how = self._verified_existing(key, exp)
            if how is not None:
                return PutResult(key, False, how, len(data))
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": ThrottledBody(data, self.limiter, self.stop),
            "ContentLength": len(data),
            "ContentType": content_type,
            "Metadata": {"sha256": exp.sha256},
            **self._checksum_args(sha.digest(), md5.digest()),
            **self._lock_args(),
        }
        resp = self.client.put_object(**args)
        self.bytes_sent += len(data)
        echoed = resp.get("ChecksumSHA256")
        etag = str(resp.get("ETag", "")).strip('"').lower()
        if echoed and echoed != exp.checksum_sha256:
            raise VerifyError(f"{key}: the store computed SHA-256 {echoed}, we sent {exp.sha256}")
        if (echoed or etag == exp.etag) and not self.cfg.verify_download:
            how = "checksum-sha256" if echoed else "etag-md5"
        else:
            how = self.verify(key, exp)
        return PutResult(key, True, how, len(data))

    def _checksum_args(self, sha256: bytes, md5: bytes) -> dict[str, str]:
        # The store recomputes the one we send and refuses the request if it differs.
        if self.cfg.checksum == "sha256":
            return {"ChecksumSHA256": _b64(sha256)}
        return {"ContentMD5": _b64(md5)}

    # ---- files (multipart when large) ------------------------------------------------------

    def _part_size_for(self, size: int) -> int:
        ps = self.part_size
        if math.ceil(size / ps) > MAX_PARTS:
            ps = math.ceil(size / MAX_PARTS / MiB) * MiB
        return ps

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        sha256: str,
        size: int,
        content_type: str = "application/octet-stream",
    ) -> PutResult:
        """Upload ``path`` (which must have ``size`` and ``sha256``) to ``key``, verified."""
        st = path.stat()
        if st.st_size != size:
            raise LocalFileChanged(f"{path}: {st.st_size} bytes on disk, the index says {size}")
        if size <= self.part_size:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != sha256:
                raise LocalFileChanged(f"{path}: SHA-256 {digest[:16]}... is not the indexed one")
            return self.put_bytes(key, data, content_type=content_type)
        return self._put_multipart(key, path, sha256=sha256, size=size, content_type=content_type)

    def _expect_multipart(self, sha256: str, size: int, parts: list[Part]) -> Expect:
        sha_cat = b"".join(base64.b64decode(p.sha256_b64) for p in parts)
        md5_cat = b"".join(bytes.fromhex(p.md5_hex) for p in parts)
        n = len(parts)
        composite = _b64(hashlib.sha256(sha_cat).digest()) + f"-{n}"
        etag = hashlib.md5(md5_cat, usedforsecurity=False).hexdigest() + f"-{n}"
        return Expect(size, sha256, composite, etag)

    def _server_parts(self, key: str, upload_id: str) -> dict[int, tuple[str, int]] | None:
        """Parts the store holds for an upload ({number: (etag, size)}); None if it is gone."""
        out: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            try:
                resp = self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            except Exception as exc:
                if hasattr(exc, "response") and (
                    _code(exc) == "NoSuchUpload" or _status(exc) == 404
                ):
                    return None
                raise
            for p in resp.get("Parts", []):
                out[int(p["PartNumber"])] = (str(p["ETag"]).strip('"').lower(), int(p["Size"]))
            if not resp.get("IsTruncated"):
                return out
            marker = int(resp.get("NextPartNumberMarker", 0))

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as exc:  # best effort: a lifecycle rule cleans up what is left
            log.warning("archive: could not abort upload %s of %s: %s", upload_id, key, exc)

    def _put_multipart(
        self, key: str, path: Path, *, sha256: str, size: int, content_type: str
    ) -> PutResult:
        journal = self.journal
        if journal is None:
            raise RuntimeError("multipart uploads need an UploadJournal")  # programming error
        part_size = self._part_size_for(size)
        st = journal.get(key)
        if st is not None and (st.size, st.sha256, st.part_size) != (size, sha256, part_size):
            log.info("archive: discarding an old upload of %s (file or part size changed)", key)
            self._abort(key, st.upload_id)
            journal.delete(key)
            st = None
        server: dict[int, tuple[str, int]] = {}
        if st is not None:
            found = self._server_parts(key, st.upload_id)
            if found is None:
                log.info("archive: upload %s of %s is gone; restarting", st.upload_id, key)
                journal.delete(key)
                st = None
            else:
                server = found
        if st is None:
            how = self._verified_existing(
                key, lambda: self._expect_whole(path, sha256, size, part_size)
            )
            if how is not None:
                return PutResult(key, False, how, size)
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": content_type,
                "Metadata": {"sha256": sha256},
                **self._lock_args(),
            }
            if self.cfg.checksum == "sha256":
                args["ChecksumAlgorithm"] = "SHA256"
            upload_id = str(self.client.create_multipart_upload(**args)["UploadId"])
            st = UploadState(key, str(path), size, sha256, upload_id, part_size)
            journal.begin(st)
            log.info("archive: multipart upload of %s (%d bytes, %d-byte parts) started",
                     key, size, part_size)  # fmt: skip
        else:
            log.info("archive: resuming upload of %s: %d of %d parts already stored",
                     key, len(st.parts), math.ceil(size / part_size))  # fmt: skip

        n_parts = math.ceil(size / part_size)
        whole = hashlib.sha256()
        parts: list[Part] = []
        with path.open("rb") as f:
            for n in range(1, n_parts + 1):
                if self.stop.is_set():
                    raise ArchiveError("upload stopped")
                data = os.pread(f.fileno(), part_size, (n - 1) * part_size)
                whole.update(data)
                have = st.parts.get(n)
                on_server = server.get(n)
                sha = hashlib.sha256(data).digest()
                if (
                    have is not None
                    and (have.size, have.sha256_b64) == (len(data), _b64(sha))
                    and (on_server is None or on_server[0] == have.etag)
                ):
                    # journalled as done, from these very bytes (a part sent while the file
                    # was not the clip is sent again); if the store's list missed it
                    # (eventual consistency) completing will tell us
                    parts.append(have)
                    continue
                md5 = hashlib.md5(data, usedforsecurity=False).digest()
                resp = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=st.upload_id,
                    PartNumber=n,
                    Body=ThrottledBody(data, self.limiter, self.stop),
                    ContentLength=len(data),
                    **self._checksum_args(sha, md5),
                )
                self.bytes_sent += len(data)
                etag = str(resp["ETag"]).strip('"').lower()
                echoed = resp.get("ChecksumSHA256")
                if echoed and echoed != _b64(sha):
                    raise VerifyError(f"{key} part {n}: the store computed another SHA-256")
                part = Part(n, len(data), etag, _b64(sha), md5.hex())
                journal.add_part(st, part)
                parts.append(part)
        if whole.hexdigest() != sha256:
            # Its parts came from a file that is not the clip: never to be completed, also
            # not after the file is right again (the next pass starts over from the file).
            self._abort(key, st.upload_id)
            journal.delete(key)
            raise LocalFileChanged(f"{path}: SHA-256 changed while uploading; not completing")
        exp = self._expect_multipart(sha256, size, parts)
        complete: list[dict[str, Any]] = []
        for p in parts:
            item: dict[str, Any] = {"PartNumber": p.number, "ETag": f'"{p.etag}"'}
            if self.cfg.checksum == "sha256":
                item["ChecksumSHA256"] = p.sha256_b64
            complete.append(item)
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=st.upload_id,
                MultipartUpload={"Parts": complete},
            )
        except Exception as exc:
            if not (hasattr(exc, "response") and _code(exc) in {"NoSuchUpload", "InvalidPart"}):
                raise
            # A retried complete whose first attempt succeeded, or parts the store lost.
            how = self._verified_existing(key, exp)
            journal.delete(key)
            if how is None:
                raise ArchiveError(f"{key}: completing the upload failed ({_code(exc)})") from exc
            return PutResult(key, True, how, size)
        journal.delete(key)
        how = self.verify(key, exp)
        return PutResult(key, True, how, size)

    def _expect_whole(self, path: Path, sha256: str, size: int, part_size: int) -> Expect:
        """The Expect of ``path`` as a multipart object (reads the file to hash its parts)."""
        return self._expect_multipart(sha256, size, _file_parts(path, part_size)[0])


def _file_parts(path: Path, part_size: int, *, md5: bool = True) -> tuple[list[Part], str]:
    """``path`` cut in ``part_size`` parts, as a multipart upload sends it (each part's
    SHA-256, and MD5 unless not asked for), and the SHA-256 hex of the whole file; one read."""
    parts: list[Part] = []
    whole = hashlib.sha256()
    with path.open("rb") as f:
        n = 1
        while data := f.read(part_size):
            whole.update(data)
            sha = hashlib.sha256(data).digest()
            md5_hex = hashlib.md5(data, usedforsecurity=False).hexdigest() if md5 else ""
            parts.append(Part(n, len(data), "", _b64(sha), md5_hex))
            n += 1
    return parts, whole.hexdigest()
