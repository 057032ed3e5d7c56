"""Central /verify: is an upload a clip that some station of the fleet recorded and signed?"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from cryptography import x509

from central.db import CentralDB
from central.witness import station_record
from station.fleet.objstore import ObjectStore, key_files_dir, station_prefix
from station.proof import ProofError
from station.proof.keys import StationKey, fingerprint, load_public_pem, verify_signature
from station.proof.standalone_verify import WITNESS_SIZES_MAX, start_statement_digest
from station.proof.trust import Anchors
from station.proof.tsa import load_pem_certs
from station.proof.verify import (
    WARN,
    Report,
    TimeBound,
    WitnessRecordError,
    check_clip_c2pa,
    check_clip_tokens,
    check_recorded_times,
    check_signer,
    check_witness,
)
from station.proof.verify import logged_twice as verify_logged_twice
from station.store.files import sha256_and_size
from station.store.ledger import ClipRecord

log = logging.getLogger(__name__)


def _station_key(db: CentralDB, station_id: int, leaf: dict[str, Any]) -> Any:
    """The key of the enrolment that registered the clip (a replaced station has two): the
    one it holds now, or a key it rotated away from (witnessed) when the leaf is in that key's
    closed log; the station's current key never signed those."""

    pem = db.public_key(station_id)
    fp, seq = leaf.get("key_fingerprint"), leaf.get("seq")
    for r in db.retired_keys(station_id):
        if r["old_key"] == fp and isinstance(seq, int) and 0 <= seq < int(r["tree_size"]):
            pem = r["old_public_key"]
    return load_public_pem(pem.encode()) if pem else None


def _archived_leaf(c: ClipRecord) -> dict[str, Any] | None:
    """Where the bucket holds the clip's signed manifest (its log leaf), None if not yet."""
    meta = c.extra.get("archive_meta") or {}
    leaf = meta.get("log") if isinstance(meta, dict) else None
    return leaf if isinstance(leaf, dict) and leaf else None


# The rows of one SHA-256 whose archived manifests /verify reads (4 bucket requests each) for
# an upload by anyone: an honest fleet has one per enrolment, a station registers at most
# central.db.MAX_ROWS_PER_SHA256. Bytes under more rows are not verified (ROWS_UNCHECKED):
# a row left unread may hold a second signed manifest (`clip-logged-twice`).
MAX_ROWS_READ = 8
ROWS_UNCHECKED = "clip-rows-unchecked"


def _rows_unchecked(name: str) -> str:
    return (f"{name} is registered under more than {MAX_ROWS_READ} rows of this site's index;"
            f" this page reads the signed manifests of {MAX_ROWS_READ}: one it did not read may"
            " be another signed manifest of these bytes (clip-logged-twice), so it is not"
            " verified here")  # fmt: skip


MAX_LEAF = 1 << 20  # a signed manifest is a few KB; its signature 64 bytes


def _leaf_object(store: ObjectStore, key: Any, c: ClipRecord) -> bytes:
    """One object of a clip's log leaf, read only where its own station archives its log
    (``<prefix>stations/<station>/proof/log/``) and only when it is of a leaf's size: the
    keys are what the station registered, and the site reads the whole bucket (another
    station's objects, or a clip of gigabytes held in memory, for anyone who uploads a file
    of those bytes). ValueError otherwise."""
    key = str(key)
    where = f"{station_prefix(store.cfg.prefix, c.station)}proof/log/"
    if not key.startswith(where) or {".", ".."} & set(key.split("/")):
        raise ValueError(f"{key!r} is not under its station's {where!r}")
    head = store.head(key)
    if head is None:
        raise ValueError(f"{key!r} is not in the bucket")
    if int(head["ContentLength"]) > MAX_LEAF:
        raise ValueError(f"{key!r} is {head['ContentLength']} bytes, no signed manifest is")
    return store.get_bytes(key)


def _read_leaf(
    store: ObjectStore, leaf: dict[str, Any], c: ClipRecord
) -> tuple[bytes, bytes] | None:
    """The archived signed manifest of clip row ``c`` and its signature, None if unreadable."""
    try:
        return _leaf_object(store, leaf["manifest"], c), _leaf_object(store, leaf["signature"], c)
    except Exception as exc:
        log.warning("verify page: cannot read the archived manifest of clip %s: %s", c.id, exc)
        return None


# What the page reads of a clip's other evidence in the bucket, only under its own station's
# prefix (the rows are the station's sync payload; the site reads the whole bucket) and only
# objects of their kind's size: an RFC 3161 token is a few KB (its TSA's certificates in it),
# a certificate file one or a few certificates.
MAX_TOKEN = 64 << 10
MAX_TOKENS_READ = 16  # of one subject: one per TSA, one more for each request granted twice
MAX_CERT_FILE = 64 << 10
MAX_KEYS_READ = 64  # in a key's keys/<fingerprint>/ (its certificates and its CA's), or keys/
EVIDENCE_UNREAD = "clip-evidence-unread"
# `<tsa>.tst` (archived before tokens were named by their digest) or `<tsa>.<digest>.tst`
_TOKEN_NAME = re.compile(r"[0-9a-f]{8}(?:\.[0-9a-f]{16})?\.tst")
_SUBJECT = re.compile(r"[0-9a-f]{64}")


class Unread(Exception):
    """Evidence of a clip in the bucket the page could not read whole: more objects than it
    reads, an object larger than its kind, or a store that did not answer."""


def _bounded_get(store: ObjectStore, key: str, limit: int) -> bytes:
    """Object ``key``, of at most ``limit`` bytes (a larger one is never read whole)."""
    body = store.client.get_object(Bucket=store.bucket, Key=key, Range=f"bytes=0-{limit}")["Body"]
    try:
        data = bytes(body.read(limit + 1))
    finally:
        body.close()
    if len(data) > limit:
        raise Unread(f"{key!r} is larger than {limit} bytes")
    return data


def _listed(store: ObjectStore, where: str, most: int, *, folder: bool = False) -> list[str]:
    """The keys under ``where`` (only those directly in it with ``folder``), Unread if more
    than ``most``."""
    more = {"Delimiter": "/"} if folder else {}
    resp = store.client.list_objects_v2(Bucket=store.bucket, Prefix=where, MaxKeys=most, **more)
    if resp.get("IsTruncated"):
        raise Unread(f"more than {most} objects under {where!r}")
    return sorted(str(o["Key"]) for o in resp.get("Contents", []))


def archived_tokens(store: ObjectStore, station: str, subject: str) -> list[bytes]:
    """The RFC 3161 tokens over ``subject`` (the SHA-256 hex of the signed bytes they stamp)
    that ``station`` archived under its own ``proof/tokens/`` (docs/fleet.md: both names, with
    and without the token's digest; one token under both is one). Unread when there are more
    than MAX_TOKENS_READ objects or one is larger than a token."""
    if not _SUBJECT.fullmatch(subject):
        raise ValueError(f"{subject!r} is not a SHA-256")  # programming error
    where = f"{station_prefix(store.cfg.prefix, station)}proof/tokens/{subject}."
    keys = [
        k for k in _listed(store, where, MAX_TOKENS_READ) if _TOKEN_NAME.fullmatch(k[len(where) :])
    ]
    # one token under both names (re-sent by a station restored from a backup) is one token
    return list(dict.fromkeys(_bounded_get(store, k, MAX_TOKEN) for k in keys))


def archived_certificate(
    store: ObjectStore, station: str, public: Any
) -> tuple[x509.Certificate | None, x509.Certificate | None]:
    """The certificate of key ``public`` and its issuer's, as ``station`` archived them under
    its own ``keys/<key fingerprint, 16 hex>/`` (``key_files_dir``: that key's files only,
    however many renewals the station archived since); for a key archived only before that,
    among the files directly in ``keys/``. (None, None) when there is none; Unread as
    ``archived_tokens`` (more than MAX_KEYS_READ files where it looks)."""
    keys = f"{station_prefix(store.cfg.prefix, station)}keys/"
    own = key_files_dir(keys, fingerprint(public))
    found = _certificate_among(store, _listed(store, own, MAX_KEYS_READ), public)
    if found[0] is not None:
        return found
    return _certificate_among(store, _listed(store, keys, MAX_KEYS_READ, folder=True), public)


def _certificate_among(
    store: ObjectStore, keys: list[str], public: Any
) -> tuple[x509.Certificate | None, x509.Certificate | None]:
    """The certificate of ``public`` in the certificate files among ``keys``, and its
    issuer's when one of them holds it."""
    certs: list[x509.Certificate] = []
    for key in keys:
        if key.endswith((".crt", ".pem")) and not key.endswith(".pub.pem"):
            try:
                certs += load_pem_certs(_bounded_get(store, key, MAX_CERT_FILE))
            except ProofError:
                continue  # not a certificate file: nothing of the signer in it
    mine = next((c for c in certs if c.public_key() == public), None)
    if mine is None:
        return None, None
    issuer = next((c for c in certs if c is not mine and c.subject == mine.issuer), None)
    return mine, issuer


def _check_archived_evidence(
    report: Report,
    store: ObjectStore,
    c: ClipRecord,
    path: Path,
    manifest: bytes,
    body: dict[str, Any],
    public: Any,
    anchors: Anchors,
    bound: TimeBound | None,
) -> None:
    """A bare clip whose archived manifest is signed by its station's key and names its
    bytes, judged as the other verifiers judge it: the key's certificate (archived under
    ``keys/``) against this site's company CA, the recorded times against the clip's own
    length, the RFC 3161 tokens over the manifest (its end) and over its start statement
    (archived under ``proof/tokens/``) against this site's TSA roots, its embedded C2PA
    manifest against the signed one. What it cannot read whole leaves the clip not verified
    (``pending``): a token left unread may be one that fails."""
    try:
        cert, ca = archived_certificate(store, c.station, public)
        start = start_statement_digest(body)
        manifest_sha = hashlib.sha256(manifest).hexdigest()
        end_tokens = archived_tokens(store, c.station, manifest_sha)
        start_tokens = archived_tokens(store, c.station, start) if start else []
    except Exception as exc:  # the store, or an object over its size: no verdict on it
        log.warning("verify page: the archived evidence of clip %s is not read: %s", c.id, exc)
        report.add("evidence", WARN, f"the station's archived certificates or RFC 3161 tokens "
                   f"of this clip could not be read ({exc}): one left unread may be one that "
                   "fails, so it is not verified here", EVIDENCE_UNREAD)  # fmt: skip
        report.pending = True
        return
    if cert is None:
        fp = fingerprint(public)
        report.facts["station_key"] = fp
        report.add("signer", WARN, f"the station has archived no certificate of its key {fp}: "
                   "compare this fingerprint with the one the seller published",
                   "signer-unanchored")  # fmt: skip
        report.compare(f"station key {fp}")
    else:
        check_signer(report, public, cert, ca, anchors, body.get("station"),
                     where="the station's archived keys")  # fmt: skip
    check_recorded_times(report, body, path)
    check_clip_tokens(report, manifest_sha, body, end_tokens, start_tokens, anchors, [], bound)
    check_clip_c2pa(report, path, body, anchors, ca)


def verify_clip_central(
    path: Path,
    db: CentralDB,
    store: ObjectStore | None,
    anchors: Anchors | None = None,
    bound: TimeBound | None = None,
) -> Report:
    """A bare clip against the central index and the archived, signed manifest of that clip.

    The index is this site's own database: it finds the manifest but proves nothing. The
    station's signed manifest (the log leaf archived in the bucket) must verify with the key
    the station enrolled with and name exactly these bytes; the order, station and times
    shown are the manifest's. Then the clip is judged as a bundle's clip is
    (``_check_archived_evidence``) against ``anchors`` (this site's company CA and TSA roots):
    authentic when the key's archived certificate chains to the CA and a TSA root saw the
    manifest within the bound of its recorded end.
    """

    report = Report(subject=path.name)
    sha, size = sha256_and_size(path)
    report.facts.update(sha256=sha, size=size)
    clips = db.clips_by_sha256(sha, limit=MAX_ROWS_READ + 1)
    unread = len(clips) > MAX_ROWS_READ
    clips = clips[:MAX_ROWS_READ]
    if not clips:
        report.add(
            "index", "fail", "no station of this site recorded a clip with these bytes",
            "clip-unknown",
        )  # fmt: skip
        return report
    # The same bytes may stand in several rows (a restored station registering a clip again
    # under its new enrolment): the one whose signed manifest is archived can be checked.
    c = next((x for x in clips if _archived_leaf(x) is not None), clips[0])
    report.add("index", "info", f"registered (unsigned index): station {c.station}, "
               f"order {c.order_id}")  # fmt: skip
    leaf = _archived_leaf(c)
    if not leaf or store is None:
        report.add("manifest", "warn", "the signed manifest is not archived yet: nothing to check")
        return report
    got = _read_leaf(store, leaf, c)
    if got is None:
        report.add("manifest", "warn", "the archived signed manifest could not be read")
        return report
    manifest, signature = got
    public = _station_key(db, int(c.extra["station_id"]), leaf)
    signed = public is not None and verify_signature(public, manifest, signature)
    others = [_archived_manifest(db, store, x) for x in clips if x is not c]
    twice = logged_twice([manifest if signed else None, *others])
    if public is None:
        report.add("signature", "warn", "the station has not enrolled a public key")
    elif signed:
        report.add("signature", "ok", "the manifest is signed by the station's enrolled key")
    else:
        report.add("signature", "fail", "the archived manifest's signature does not verify",
                   "manifest-bad-signature")  # fmt: skip
    try:
        body = json.loads(manifest)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if body.get("sha256") != sha or body.get("size") != size:
        report.add("manifest", "fail", "the signed manifest describes other bytes",
                   "manifest-swapped")  # fmt: skip
    elif twice is not None:  # neither manifest's order, station or times is the recording's
        report.add("manifest", "fail", twice, "clip-logged-twice")
    elif unread:
        report.add("manifest", "warn", _rows_unchecked("the clip"), ROWS_UNCHECKED)
        report.pending = True
    elif signed:
        report.add("manifest", "ok", "the signed manifest names exactly these bytes")
        report.facts.update({k: body.get(k) for k in _SIGNED_FACTS})
        report.facts["log_index"] = body.get("seq")
        _check_archived_evidence(
            report, store, c, path, manifest, body, public, anchors or Anchors(), bound
        )
    else:
        report.add("manifest", "info", "the manifest names these bytes, but its signature is "
                   "not checked")  # fmt: skip
    return report


def logged_twice(manifests: list[bytes | None]) -> str | None:
    """Why the verified signed manifests ``manifests`` (None: not archived, or not checked) of
    the rows registering one recording wrong a buyer, None when they are one manifest: the
    station logged those bytes more than once (``clip-logged-twice``, as `packcam audit` says
    on the station), so its signature on either is no more its word than on the other. Each
    row is the station's own sync payload: one of them cannot vouch for a bundle by
    matching it."""
    bodies: dict[bytes, dict[str, Any]] = {}
    for m in manifests:
        if m is not None and m not in bodies:
            try:
                body = json.loads(m)
            except ValueError:
                body = {}
            bodies[m] = body if isinstance(body, dict) else {}
    if len(bodies) < 2:
        return None
    same = list(bodies.values())
    return verify_logged_twice(same, lambda b: b.get("station"), "stations")


# What the page shows of a clip: only what the verified manifest states.
_SIGNED_FACTS = ("order_id", "waybill", "station", "started_at", "ended_at")


def _archived_manifest(db: CentralDB, store: ObjectStore, c: ClipRecord) -> bytes | None:
    """The signed manifest the station archived for clip row ``c`` when the station's enrolled
    key signed it, None when it is not archived yet or cannot be read or checked."""
    leaf = _archived_leaf(c)
    if leaf is None:
        return None
    got = _read_leaf(store, leaf, c)
    if got is None:
        return None
    manifest, signature = got
    public = _station_key(db, int(c.extra["station_id"]), leaf)
    return (
        manifest if public is not None and verify_signature(public, manifest, signature) else None
    )


def check_bundle_in_index(report: Report, db: CentralDB, store: ObjectStore | None) -> None:
    """A bundle that verifies on its own must also hold clips of this site's stations under
    the signed manifests the stations archived: the key holder can re-sign a clip's real bytes
    (another waybill, other times) in a log of its own, every signature checks and the bytes'
    SHA-256 is in the index, but the manifest archived when the clip was recorded is another.
    Until that manifest is archived the index vouches for nothing: not verified (``pending``)."""
    if not report.ok:
        return
    for clip in report.facts.get("clips", []):
        name = clip.get("file")
        rows = db.clips_by_sha256(str(clip.get("sha256")), limit=MAX_ROWS_READ + 1)
        unread = len(rows) > MAX_ROWS_READ
        rows = rows[:MAX_ROWS_READ]
        if not rows:
            report.add("store", "fail", f"{name} is not a clip of this site's stations",
                       "clip-unknown")  # fmt: skip
            continue
        held = [_archived_manifest(db, store, c) if store is not None else None for c in rows]
        if (twice := logged_twice(held)) is not None:
            # one recording, two signed manifests (two orders, or one order twice): the
            # station's own rows vouch for either, so neither is the recording's evidence
            report.add("store", "fail", f"{name}: {twice}", "clip-logged-twice")
            continue
        if unread:  # never held to the rows it did not read
            report.add("store", "warn", _rows_unchecked(str(name)), ROWS_UNCHECKED)
            report.pending = True
            continue
        if any(
            m is not None and hashlib.sha256(m).hexdigest() == clip.get("manifest_sha256")
            for m in held
        ):
            report.add("store", "ok", f"{name} is registered with this site, under the signed "
                       "manifest its station archived")  # fmt: skip
        elif all(m is not None for m in held):
            # every row of these bytes has its station's signed manifest archived, none the
            # bundle's: the key holder re-signed them, the bundle's manifest and log are its own
            report.add("store", "fail", f"{name} is registered with this site, but its station "
                       "archived another signed manifest for these bytes than the bundle's: the "
                       "bundle's manifest and log are not the ones the station recorded",
                       "log-leaf-replaced")  # fmt: skip
        else:
            report.add("store", "warn", f"{name} is registered with this site, but its signed "
                       "manifest is not archived yet (or could not be read and checked): "
                       "nothing to hold the bundle's manifest to")  # fmt: skip
            report.pending = True
    _name_left_out_clips(report, db)


def _name_left_out_clips(report: Report, db: CentralDB) -> None:
    """Fail a bundle that leaves out a clip of its order this site holds: registered for the
    station of the bundle's clips, its signed manifest archived under the same log key at an
    index the bundle's checkpoint covers, and neither in the bundle nor carried as deleted by
    the station's retention. The bundle manifest listing the order's clips is signed at
    export; a key holder re-signs it without one (offline nothing tells)."""
    order = report.facts.get("order_id")
    size = (report.facts.get("checkpoint") or {}).get("tree_size")
    if not isinstance(order, str) or not isinstance(size, int):
        return
    held = {str(c.get("sha256")) for c in report.facts.get("clips", [])}
    held |= {str(d.get("sha256")) for d in report.facts.get("deleted_clips", [])}
    logs = set()  # (station, log key) of the bundle's clips, as the station archived them
    for sha in held:
        for row in db.clips_by_sha256(sha):
            if (leaf := _archived_leaf(row)) is not None:
                logs.add((row.station, leaf.get("key_fingerprint")))
    left = [
        f"{Path(c.path).name} (log entry {leaf.get('seq')})"
        for c in db.order(order)
        if (leaf := _archived_leaf(c)) is not None
        and (c.station, leaf.get("key_fingerprint")) in logs
        and isinstance(leaf.get("seq"), int)
        and leaf["seq"] < size
        and c.sha256 not in held
    ]
    if left:
        report.add("store", "fail", f"this site holds clips of order {order!r} that the "
                   f"bundle's station logged up to its checkpoint and the bundle leaves out: "
                   f"{', '.join(left)}", "order-incomplete")  # fmt: skip


def check_bundle_witnessed(report: Report, db: CentralDB, key: StationKey) -> None:
    """The /verify page of the site that is the witness: a bundle is held to this site's own
    cosigned record of its station's log at exactly the sizes the bundle cites (``GET
    /witness/<station>?tree_size=N``, however old), this site's witness key pinned: a bundle
    of a log the witness refused, or re-signed at an old size, fails with log-fork, as
    ``verify --witness`` would."""
    station = (report.facts.get("checkpoint") or {}).get("station")
    if not isinstance(station, str):  # no signed checkpoint read: nothing to hold it to
        return
    # the bundle's checkpoint first: it is what its clips' proofs lead to
    sizes = list(dict.fromkeys(int(s) for s, _ in report.facts.get("checkpoints_seen", [])))
    record = station_record(db, key, station, sizes[:WITNESS_SIZES_MAX])
    try:
        check_witness(report, record, key.fingerprint)
    except WitnessRecordError as exc:  # this site's own record: its fault, not the bundle's
        log.error("the witness record of station %r fails this site's key: %s", station, exc)
        report.add(
            "witness",
            WARN,
            "this site's own witness record of the station does not verify with its witness "
            "key, so the bundle could not be held to it: not checked",
            "checkpoint-unwitnessed",
        )
