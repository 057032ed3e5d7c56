"""Verify a bundle with no data dir, a bare clip against the index and C2PA, and audit a store."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import sqlite3
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import av
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID
from PIL import Image, UnidentifiedImageError

from station.config import Config
from station.proof import ProofError, merkle
from station.proof import manifest as manifest_mod
from station.proof.c2pa_embed import C2paInfo, c2pa_available, read_c2pa, unavailable_reason
from station.proof.ca import DOCUMENT_SIGNING, cert_fingerprint, pem
from station.proof.canonical import canonical_json
from station.proof.keys import (
    fingerprint,
    load_public_pem,
    station_public_key,
    verify_signature,
)
from station.proof.log import (
    CHECKPOINT_TYPE,
    ArchivedLog,
    Checkpoint,
    LogEntry,
    ProofLog,
    Rotation,
)
from station.proof.paths import ProofPaths
from station.proof.rotation import RotationFiles
from station.proof.standalone_verify import (
    ACCURACY_GRACE_S,
    FRAME_READ_MAX,
    MAX_DELAY_MIN,
    MEMBER_READ_MAX,
    NO_START_STATEMENT,
    READ_BUDGET,
    VERIFIER,
    Overlap,
    as_characters,
    clip_listed_twice,
    clip_span_s,
    clock_step,
    cosigned_checkpoints,
    deletion_problem,
    file_and_folder,
    frames_missing,
    framing_problem,
    judge_end,
    judge_start,
    judge_witnessed,
    late_text,
    local_time_problem,
    lookalike_problem,
    member_name_problem,
    misnamed_reference,
    overlap_problem,
    overlaps,
    oversized_problem,
    parse_time,
    played_problem,
    signed_after_final,
    start_statement_digest,
    start_statement_problem,
    step_text,
    unheld_reference,
    unpack_problem,
    unreferenced_members,
    vouched_sizes,
    witness_gap,
)
from station.proof.trust import Anchors, ChainError, verify_chain
from station.proof.tsa import TokenInvalid, load_pem_certs, verify_token
from station.proof.videohash import (
    frames_at,
    keyframe_times,
    same_picture,
    video_digests,
)
from station.store.clips import ClipTable, event_card
from station.store.files import sha256_and_size
from station.store.holds import HoldTable
from station.store.ledger import INDEX_NAME
from station.store.mp4box import iter_boxes

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "packcam-evidence-bundle"
BUNDLE_MANIFEST = "bundle/manifest.json"  # canonical JSON, every other member's SHA-256
BUNDLE_MANIFEST_SIG = "bundle/manifest.sig"  # Ed25519 by the station key
BUNDLE_MANIFEST_TYPE = "packcam-bundle-manifest"
SUMS_NAME = "SHA256SUMS"
OK, FAIL, WARN, INFO = "ok", "fail", "warn", "info"
# What reading a hostile zip can raise besides BadZipFile: an encrypted member or an unknown
# compression method (RuntimeError, NotImplementedError), a corrupt or cut deflate stream
# (zlib.error, EOFError); and JSON nested too deep (RecursionError, a RuntimeError).
ZIP_ERRORS = (zipfile.BadZipFile, RuntimeError, EOFError, zlib.error)
# fetches the witness's record of the tree sizes a bundle cites (``verify --witness URL``)
WitnessFetch = Callable[[list[int]], dict[str, Any]]


AUTHENTIC, UNANCHORED, TAMPERED, UNVERIFIED = (
    "authentic",
    "intact-unanchored",
    "tampered",
    "not-verified",
)
# `packcam verify|audit` exit codes per verdict (2 = usage/config error, 3 = unusable input)
EXIT_CODES = {AUTHENTIC: 0, TAMPERED: 1, UNVERIFIED: 1, UNANCHORED: 4}
# authentic for the clips here, but some of the order's clips are gone (by the station's signed
# retention record): never 0, so a script that checks for 0 never takes it for the whole order
EXIT_PARTIAL = 5
DEFAULT_MAX_DELAY_S = MAX_DELAY_MIN * 60  # recorded end -> the TSA's time, either way
TSA_TIME_PRECISION_S = 1.0  # genTime is usually whole seconds (RFC 3161 2.4.2 allows more)


@dataclass(frozen=True)
class Check:
    """One verification step: ``status`` ok/fail/warn/info, a reason a person can act on."""

    name: str
    status: str
    reason: str
    code: str = ""  # stable machine word (clip-truncated, signer-unanchored, ...): docs/proof.md


@dataclass
class Report:
    """All checks of one verification and the verdict they add up to.

    * ``tampered``: some check failed (exit 1).
    * ``authentic``: nothing failed, the bytes are the signed ones, the signer chains to a
      company CA the verifier trusts and every clip has a token from a trusted TSA within the
      time bound (exit 0; 5 when the bundle is partial: some of the order's clips were
      deleted by the station's retention, by its signed record).
    * ``intact-unanchored``: nothing failed, but the signer or the time rests only on material
      that came with the evidence (exit 4); ``facts["compare"]`` names what to compare.
    * ``not-verified``: nothing could be checked, or a check this verifier must make could not
      be made yet (``pending``) (exit 1).
    """

    subject: str
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    signer_anchored: bool = False
    time_anchors: list[bool] = field(default_factory=list)  # one per signed manifest
    covered: bool = True  # False: part of the evidence is not covered by any signature
    # True: a check this verifier must make could not be made yet (the central site: a clip's
    # signed manifest not archived), so nothing else that held makes the evidence verified
    pending: bool = False

    def add(self, name: str, status: str, reason: str, code: str = "") -> Check:
        c = Check(name, status, reason, code)
        self.checks.append(c)
        return c

    @property
    def ok(self) -> bool:
        """Intact: no failure and at least one success (anchored or not)."""
        return any(c.status == OK for c in self.checks) and not self.failures

    @property
    def time_anchored(self) -> bool:
        return bool(self.time_anchors) and all(self.time_anchors)

    @property
    def verdict(self) -> str:
        if self.failures:
            return TAMPERED
        if not self.ok or self.pending:
            return UNVERIFIED
        if self.signer_anchored and self.time_anchored and self.covered:
            return AUTHENTIC
        return UNANCHORED

    @property
    def authentic(self) -> bool:
        return self.verdict == AUTHENTIC

    @property
    def partial(self) -> bool:
        """A bundle without some clips of its order (deleted by the station's retention, by
        its signed record): the verdict is for the clips that are here only."""
        return bool(self.facts.get("deleted_clips"))

    @property
    def exit_code(self) -> int:
        if self.partial and self.verdict == AUTHENTIC:
            return EXIT_PARTIAL
        return EXIT_CODES[self.verdict]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def codes(self) -> set[str]:
        """Reason codes of the failed checks."""
        return {c.code for c in self.failures if c.code}

    def reasons(self) -> set[str]:
        """Reason codes of every check (failures and what keeps a verdict from authentic)."""
        return {c.code for c in self.checks if c.code}

    def compare(self, what: str) -> None:
        """Something the person must compare out of band before trusting the evidence."""
        lst = self.facts.setdefault("compare", [])
        if what not in lst:
            lst.append(what)

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "verdict": self.verdict,
            "authentic": self.authentic,
            "intact": self.ok,
            "exit_code": self.exit_code,
            "signer_anchored": self.signer_anchored,
            "time_anchored": self.time_anchored,
            "partial": self.partial,
            "reasons": sorted(self.reasons()),
            "facts": self.facts,
            "checks": [asdict(c) for c in self.checks],
        }

    def summary(self) -> str:
        text = self._summary()
        if self.partial and self.verdict in (AUTHENTIC, UNANCHORED):
            gone = len(self.facts["deleted_clips"])
            here = len(self.facts.get("clips") or [])
            label, _, rest = text.partition(":")
            text = (
                f"{label} FOR {here} OF THIS ORDER'S {here + gone} CLIPS (PARTIAL: {gone} "
                f"deleted by the station's retention, by its own signed record; see the "
                f"clip-deleted-by-retention lines):{rest}"
            )
        return text

    def _summary(self) -> str:
        v = self.verdict
        if v == AUTHENTIC:
            return (
                "AUTHENTIC: the signed bytes are intact, the signer is certified by a company CA "
                "you trust and a TSA you trust saw the evidence in time"
            )
        if v == UNANCHORED:
            missing = [
                w
                for w, ok in (
                    ("the signer", self.signer_anchored),
                    ("the time", self.time_anchored),
                    ("the bundle index, summary and key frames", self.covered),
                )
                if not ok
            ]
            out = (
                "INTACT BUT NOT ANCHORED: nothing was altered, but "
                + " and ".join(missing)
                + " rest only on material shipped with the evidence. Compare these fingerprints "
                "with the ones the seller publishes (its site's /trust page) and the TSA "
                "publishes, then pass them with --ca / --tsa-ca or put them in your trust file"
            )
            for c in self.facts.get("compare", []):
                out += f"\n       {c}"
            return out
        if v == UNVERIFIED and self.pending:
            return (
                "NOT VERIFIED: a check this verifier must make cannot be made yet (the warn lines)"
            )
        if v == UNVERIFIED:
            return "NOT VERIFIED: nothing could be checked"
        return (
            f"NOT AUTHENTIC ({len(self.failures)} failed checks: {', '.join(sorted(self.codes()))})"
        )

    def lines(self) -> list[str]:
        out = [
            # text from the evidence as its characters: it must not draw or hide a line
            f"{c.status.upper():4} {as_characters(c.name)}: {as_characters(c.reason)}"
            + (f" [{c.code}]" if c.code else "")
            for c in self.checks
        ]
        out.append(f"RESULT {as_characters(self.subject)}: {self.summary()}")
        return out


# ---- file facts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mp4Facts:
    complete: bool  # every top-level box is whole (a cut-off file ends inside one)
    moofs: int  # movie fragments (the station writes one per frame)
    boxes: int


def mp4_facts(path: Path) -> Mp4Facts:
    """Walk the top-level ISO-BMFF boxes without decoding anything."""
    size = path.stat().st_size
    moofs = boxes = end = 0
    for box in iter_boxes(path):
        boxes += 1
        moofs += box.kind == b"moof"
        end = box.end
    return Mp4Facts(boxes > 0 and end == size, moofs, boxes)


def _c2pa_claim(path: Path) -> dict[str, Any] | None:
    """The packcam assertion embedded in a file (unvalidated: only used to name a swap)."""
    if not c2pa_available():
        return None
    info = read_c2pa(path, None, validate=False)
    return info.assertion if info.present and info.assertion else None


def classify_mismatch(path: Path, size: int, body: dict[str, Any]) -> tuple[str, str]:
    """Why a file differs from the recorded clip ``body`` describes: (code, reason).

    Uses the manifest's packet digests (``video``, see videohash.py) when it has them: all
    payloads equal = a remux; the first packets equal but fewer = a cut; a video with as many
    frames but other payloads = a re-encode; anything else = another recording.
    """
    recorded_size = int(body.get("size", -1))
    recorded_frames = body.get("frame_count")
    rec_video = body.get("video") if isinstance(body.get("video"), dict) else None
    facts = mp4_facts(path)
    if size == recorded_size and not rec_video:
        return (
            "clip-altered",
            f"same size as recorded ({size} bytes) but different SHA-256: bytes were changed "
            "in place",
        )
    if not facts.complete and size < recorded_size:
        return (
            "clip-truncated",
            f"file is {recorded_size - size} bytes shorter than recorded and ends inside an MP4 "
            "box: truncated",
        )
    got = video_digests(path) if facts.complete else None
    if rec_video and got:
        if got["packets_sha256"] == rec_video.get("packets_sha256"):
            if size == recorded_size:
                return (
                    "clip-altered",
                    f"same size ({size} bytes) and the same coded frames as recorded, but other "
                    "bytes: the container or its metadata was changed in place",
                )
            return (
                "clip-remuxed",
                f"the same {got['packets']} coded frames as recorded, in another container "
                f"({size} bytes vs {recorded_size}): remuxed (nothing in the picture changed, "
                "but these are not the signed bytes)",
            )
        if got["head_sha256"] == rec_video.get("head_sha256"):
            if got["packets"] < int(rec_video.get("packets", 0)):
                return (
                    "clip-truncated",
                    f"starts with the recorded frames but has {got['packets']} of "
                    f"{rec_video.get('packets')}: truncated",
                )
            return (
                "clip-altered",
                "starts with the recorded frames but later frames differ: edited",
            )
        other = _c2pa_claim(path)
        if other is not None and other.get("log_index") != body.get("seq"):
            return (
                "clip-replaced",
                f"another recording: its embedded C2PA assertion names order "
                f"{other.get('order_id')!r}, log entry {other.get('log_index')}",
            )
        if recorded_frames and abs(got["packets"] - int(recorded_frames)) <= 1:
            return (
                "clip-reencoded",
                f"a complete video of {got['packets']} frames like the recording, but every "
                "coded frame differs: re-encoded",
            )
        return (
            "clip-replaced",
            f"another recording: {got['packets']} frames (recorded {recorded_frames}) and "
            "none of the recorded coded frames",
        )
    if size == recorded_size:
        return (
            "clip-altered",
            f"same size as recorded ({size} bytes) but different SHA-256: bytes were changed "
            "in place",
        )
    if (
        size < recorded_size
        and recorded_frames
        and facts.moofs
        and facts.moofs < recorded_frames
        and got is None
    ):
        return ("clip-truncated", f"has {facts.moofs} fragments: truncated")
    frames = got["packets"] if got else None
    if frames is not None:
        if recorded_frames and frames < int(recorded_frames) and size < recorded_size:
            return (
                "clip-truncated",
                f"a video of {frames} of the recorded {recorded_frames} frames: truncated",
            )
        return (
            "clip-reencoded",
            f"a complete video of {frames} frames and {size} bytes, but not the recorded bytes "
            f"({recorded_frames} frames, {recorded_size} bytes): re-encoded or replaced",
        )
    return "clip-replaced", f"not the recorded clip ({size} bytes vs {recorded_size}), not a video"


# ---- shared checks -------------------------------------------------------------------------


def _cert_station(cert: x509.Certificate) -> str | None:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else None


def _check_key_cert(
    report: Report,
    station_pub: Ed25519PublicKey,
    key_cert: x509.Certificate | None,
    shipped_ca: x509.Certificate | None,
    anchors: Anchors,
    *,
    where: str = "the bundle",
) -> str | None:
    """Who signed: the station key's certificate against the anchors. Returns the station
    name the certificate binds the key to (its CN), or None."""
    fp = fingerprint(station_pub)
    report.facts["station_key"] = fp
    trusted = anchors.trusted_ca([shipped_ca] if shipped_ca is not None else [])
    if trusted:
        report.facts["trusted_ca"] = [cert_fingerprint(c) for c in trusted]
    now = datetime.now(UTC)
    if key_cert is None:
        if anchors.has_ca:
            report.add(
                "signer",
                FAIL,
                f"you pinned a company CA but {where} has no certificate for the station key "
                f"{fp}: anyone can make a key; only a certified one counts",
                "cert-missing",
            )
        else:
            report.add(
                "signer",
                WARN,
                f"the station key {fp} is not certified by a company CA: compare this "
                "fingerprint with the one the seller published",
                "signer-unanchored",
            )
            report.compare(f"station key {fp}")
        return None
    if key_cert.public_key() != station_pub:
        report.add(
            "signer",
            FAIL,
            "the station certificate is for another key than the one that signs the manifests",
            "cert-key-mismatch",
        )
        return None
    station = _cert_station(key_cert)
    if trusted:
        try:
            verify_chain(key_cert, trusted, now, eku=DOCUMENT_SIGNING)
        except ChainError as exc:
            report.add(
                "signer",
                FAIL,
                f"the station certificate does not chain to the company CA you trust "
                f"({', '.join(cert_fingerprint(c)[:23] + '...' for c in trusted)}): {exc}",
                "cert-foreign-ca",
            )
            return None
        report.signer_anchored = True
        report.facts["station"] = station
        report.add(
            "signer",
            OK,
            f"station key {fp[:23]}... certified as {station!r} by the company CA you trust "
            f"{cert_fingerprint(trusted[0])[:23]}...",
        )
        return station
    if anchors.has_ca:
        # a CA was pinned, but neither it nor a certificate with its fingerprint is here
        report.add(
            "signer",
            FAIL,
            f"the station certificate is not from the company CA you trust ({where} ships "
            + (f"CA {cert_fingerprint(shipped_ca)}" if shipped_ca else "no CA")
            + ")",
            "cert-foreign-ca",
        )
        return None
    if shipped_ca is None:
        report.add(
            "signer",
            WARN,
            f"station key {fp[:23]}... has a certificate but no company CA came with it",
            "signer-unanchored",
        )
        report.compare(f"station key {fp}")
        return station
    try:
        verify_chain(key_cert, [shipped_ca], now, eku=DOCUMENT_SIGNING)
    except ChainError as exc:
        report.add(
            "signer",
            FAIL,
            f"the station certificate does not chain to the company CA shipped in {where}: {exc}",
            "cert-foreign-ca",
        )
        return None
    report.facts["station"] = station
    report.add(
        "signer",
        WARN,
        f"station key certified as {station!r} by the company CA {cert_fingerprint(shipped_ca)} "
        f"shipped in {where}; not one you trust: compare it with the fingerprint the seller "
        "published, or pass --ca",
        "signer-unanchored",
    )
    report.compare(f"company CA {cert_fingerprint(shipped_ca)}")
    return station


def _check_station_name(report: Report, name: str, claimed: Any, certified: str | None) -> None:
    if certified is not None and claimed != certified:
        report.add(
            name,
            FAIL,
            f"the manifest says station {claimed!r} but the signing key is certified for "
            f"{certified!r}",
            "station-name-mismatch",
        )


@dataclass(frozen=True)
class StationKeySpan:
    """A key a bundle's rotation chain vouches for as the station's: up to ``retired_at``
    (its log's final checkpoint time, as signed) or, None, still the station's."""

    key: Ed25519PublicKey
    retired_at: str | None


@dataclass(frozen=True)
class TimeBound:
    """How far the TSA's time may lie from the recorded end (``--max-delay``)."""

    max_delay_s: float = DEFAULT_MAX_DELAY_S


def _add_token_failures(
    report: Report,
    name: str,
    tokens: list[bytes],
    body: bytes,
    anchors: Anchors,
    shipped_roots: list[x509.Certificate],
) -> None:
    """Check the RFC 3161 tokens over ``body`` and keep only their failures in ``report``."""
    scratch = Report(subject=name)
    _check_tokens(
        scratch, f"{name}.timestamp", tokens, hashlib.sha256(body).digest(), anchors, shipped_roots
    )
    report.checks.extend(c for c in scratch.checks if c.status == FAIL)


def _adopt(report: Report, name: str, scratch: Report) -> None:
    """Fold a sub-check's report into ``report``: its checks (named under ``name``), its
    comparisons, and whether its signer was anchored."""
    for c in scratch.checks:
        report.checks.append(Check(f"{name}.{c.name}", c.status, c.reason, c.code))
    for c in scratch.facts.get("compare", []):
        report.compare(c)
    if not scratch.signer_anchored:
        report.signer_anchored = False


def _check_tokens(
    report: Report,
    name: str,
    tokens: list[bytes],
    digest: bytes,
    anchors: Anchors,
    shipped_roots: list[x509.Certificate],
    ended: datetime | None = None,
    bound: TimeBound | None = None,
    *,
    timed: bool = False,
) -> tuple[datetime | None, bool]:
    """Each RFC 3161 token over ``digest``: valid, from a trusted TSA, in time.

    Returns (earliest genTime, anchored): anchored when at least one token chains to a TSA root
    the verifier trusts and (with ``ended``) its time is within the bound of the recorded end.
    ``timed``: tokens over a clip's manifest, which must state its recorded end (``ended``
    None then means it does not, and no token can be held to it).
    """
    bound = bound or TimeBound()
    if not tokens:
        report.add(
            name,
            WARN,
            "no RFC 3161 timestamp token (TSA not configured or offline)",
            "time-unanchored",
        )
        return None, False
    trusted = anchors.trusted_tsa(shipped_roots)
    earliest: datetime | None = None
    anchored = False
    for i, tok in enumerate(tokens):
        tname = f"{name}[{i}]"
        info = None
        from_trusted = False
        try:
            if trusted:
                try:
                    info = verify_token(tok, digest, trusted)
                    from_trusted = True
                except TokenInvalid as exc:
                    if "does not chain" not in str(exc):
                        raise
            if info is None:
                try:
                    info = verify_token(tok, digest, shipped_roots)
                except TokenInvalid as exc:
                    if "does not chain" not in str(exc):
                        raise
                    info = verify_token(tok, digest, [])
        except TokenInvalid as exc:
            code = "tsa-other-data" if "other data" in str(exc) else "tsa-invalid"
            report.add(tname, FAIL, str(exc), code)
            continue
        when = info.gen_time.isoformat()
        earliest = info.gen_time if earliest is None else min(earliest, info.gen_time)
        in_bounds = True
        late = False  # genTime past the bound after the end (not merely loose: judge_end)
        if ended is None and timed:
            in_bounds = False
            report.add(
                f"{tname}.time",
                FAIL,
                f"the TSA saw this at {when}, but the signed manifest states no recorded end "
                "(ended_at with its UTC offset) to hold that time to",
                "time-out-of-bounds",
            )
        elif ended is not None:
            slack = info.accuracy_s + TSA_TIME_PRECISION_S
            delta = (info.gen_time - ended).total_seconds()
            judged = judge_end(delta, info.accuracy_s, bound.max_delay_s)
            late = judged == "late"
            allowed = f"{_human(bound.max_delay_s)} ± {min(slack, ACCURACY_GRACE_S + 1):g} s"
            if judged == "early":
                in_bounds = False
                report.add(
                    f"{tname}.time",
                    FAIL,
                    f"the TSA saw this at {when}, {_human(abs(delta))} before the recorded end "
                    f"{ended.isoformat()} (allowed: {allowed}"
                    + (
                        f"; the TSA states an accuracy of only ± {_human(info.accuracy_s)}, "
                        "so its time cannot place it nearer"
                        if info.accuracy_s > ACCURACY_GRACE_S
                        else ""
                    )
                    + "): the recorded times are not when it happened",
                    "time-out-of-bounds",
                )
            elif judged in ("late", "loose"):
                in_bounds = False  # the time is the station's word: nothing anchored by it
                report.add(
                    f"{tname}.time",
                    WARN,
                    f"a TSA saw this manifest at {when}, {_human(abs(delta))} "
                    f"{'after' if delta >= 0 else 'before'} the recorded end "
                    f"{ended.isoformat()} (allowed: {allowed})" + late_text(info.accuracy_s),
                    "time-late",
                )
            elif judged == "clock-ahead":
                report.add(
                    f"{tname}.time",
                    WARN,
                    f"the TSA time {when} is {abs(delta):.1f} s before the recorded end "
                    f"{ended.isoformat()} (more than its accuracy {slack:g} s): the station "
                    "clock was ahead",
                    "clock-ahead",
                )
        # For pages that state what is proven (the share summary): each token, structured.
        report.facts.setdefault("tokens", []).append(
            {"check": tname, "time": when, "tsa": info.tsa_subject, "trusted": from_trusted,
             "in_bounds": in_bounds, "late": late})  # fmt: skip
        if from_trusted:
            report.add(tname, OK, f"timestamped at {when} by {info.tsa_subject}, a TSA you trust")
            anchored = anchored or in_bounds
        else:
            roots = ", ".join(cert_fingerprint(c) for c in shipped_roots) or "none shipped"
            report.add(
                tname,
                WARN,
                f"token valid, signed at {when} by {info.tsa_subject}, but not by a TSA you "
                f"trust (roots that came with it: {roots}); compare with the TSA's published "
                "root or pass --tsa-ca",
                "time-unanchored",
            )
            for c in shipped_roots:
                report.compare(f"TSA root {cert_fingerprint(c)} ({c.subject.rfc4514_string()})")
            if not shipped_roots:
                report.compare(
                    f"TSA certificate {cert_fingerprint(info.signer_cert)} ({info.tsa_subject}), "
                    f"issued by {info.signer_cert.issuer.rfc4514_string()}: pin that issuer"
                )
    return earliest, anchored


def _check_start(
    report: Report,
    name: str,
    body: dict[str, Any],
    tokens: list[bytes],
    anchors: Anchors,
    shipped_roots: list[x509.Certificate],
    bound: TimeBound,
) -> str | None:
    """A clip's start statement (the signed manifest's ``start_statement``) and the RFC 3161
    tokens over it: held to the manifest (``start_statement_problem``) and judged by
    ``judge_start``, the rule verify.py shares. A token that is not valid over the statement
    fails as any other (``tsa-invalid``, ``tsa-other-data``). Returns when a pinned TSA saw
    the statement, for a start it timestamped (the clip's ``start_tsa_time`` fact: what the
    share summary claims), else None."""
    digest = start_statement_digest(body)
    if digest is None:
        report.add(name, WARN, NO_START_STATEMENT, "start-unanchored")
        return None
    if wrong := start_statement_problem(body):
        report.add(name, FAIL, wrong, "start-time-inconsistent")
        return None
    trusted = anchors.trusted_tsa(shipped_roots)
    seen: list[tuple[datetime, float, bool]] = []
    for i, tok in enumerate(tokens):
        try:
            info = verify_token(tok, bytes.fromhex(digest), [])
        except TokenInvalid as exc:
            code = "tsa-other-data" if "other data" in str(exc) else "tsa-invalid"
            report.add(f"{name}[{i}]", FAIL, str(exc), code)
            continue
        pinned = False
        if trusted:
            try:
                verify_token(tok, bytes.fromhex(digest), trusted)
                pinned = True
            except TokenInvalid:
                pass
        seen.append((info.gen_time, info.accuracy_s, pinned))
    stated = parse_time(body["start_statement"]["started_at"])  # the kit's own reading
    assert stated is not None  # start_statement_problem parsed it
    status, code, text = judge_start(stated, seen, bound.max_delay_s, clock_step(body)[0])
    report.add(name, status.lower(), text, code)  # verify.py's OK/WARN/FAIL are ours in capitals
    if status.lower() != OK:  # the kit's "OK" is our "ok"
        return None
    return min(t for t, _acc, pinned in seen if pinned).isoformat()


def _check_not_after_seen(
    report: Report, name: str, claimed: Any, seen: datetime | None, bound: TimeBound
) -> None:
    """A signed statement's own time (a checkpoint's ``time``) against the earliest TSA time
    over it: a token may come hours later (the station was offline), but a statement cannot
    be signed after a TSA saw it. Pages state that time (the share summary's "signed ...")."""
    stated = _parse_time(claimed)
    if seen is None or stated is None or stated.tzinfo is None:
        return
    ahead = (stated - seen).total_seconds()
    if ahead > bound.max_delay_s + TSA_TIME_PRECISION_S:
        report.add(
            name,
            FAIL,
            f"signed, it says, at {stated.isoformat()}, but a TSA saw it at {seen.isoformat()}, "
            f"{_human(ahead)} earlier (allowed: {_human(bound.max_delay_s)}): its time is not "
            "when it was signed",
            "time-out-of-bounds",
        )


def _human(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.1f} s"


def _check_c2pa(
    report: Report,
    clip: Path,
    body: dict[str, Any] | None,
    trust_pem: bytes | None,
    name: str = "c2pa",
    *,
    anchored: bool = False,
) -> C2paInfo | None:
    """The embedded C2PA manifest against ``trust_pem`` (the CA trusted, or the one shipped
    with the evidence when ``anchored`` is False) and the signed manifest ``body``."""
    expected = bool(body and body.get("c2pa"))
    if not c2pa_available():
        report.add(name, WARN if expected else INFO, f"not checked: {unavailable_reason()}")
        return None
    info = read_c2pa(clip, trust_pem)
    if not info.present:
        if expected:
            report.add(
                name,
                FAIL,
                "the recorded clip had a C2PA manifest; this file has none",
                "c2pa-missing",
            )
        else:
            report.add(name, INFO, "no embedded C2PA manifest")
        return info
    # A signer that chains to no anchor is judged below: c2pa-untrusted against a CA that is
    # trusted, and with none (no CA pinned or shipped) not anchored, like the station key.
    failures = [f for f in info.failures if not f.startswith("signingCredential.untrusted")]
    if failures or info.state == "Invalid":
        report.add(
            name,
            FAIL,
            "embedded C2PA manifest does not validate: "
            + "; ".join(failures or [info.error or "invalid"]),
            "c2pa-invalid",
        )
        return info
    if trust_pem and info.state != "Trusted":
        report.add(
            name,
            FAIL,
            f"C2PA signer {info.signer!r} does not chain to the company CA",
            "c2pa-untrusted",
        )
        return info
    a = info.assertion or {}
    if body is not None and (
        a.get("log_index") != body.get("seq") or a.get("order_id") != body.get("order_id")
    ):
        report.add(
            name,
            FAIL,
            f"C2PA assertion (order {a.get('order_id')!r}, log index "
            f"{a.get('log_index')}) disagrees with the manifest",
            "c2pa-mismatch",
        )
        return info
    if body is not None and info.signer is not None and info.signer != body.get("station"):
        report.add(
            name,
            FAIL,
            f"the C2PA signer is {info.signer!r} but the manifest says station "
            f"{body.get('station')!r}",
            "station-name-mismatch",
        )
        return info
    report.add(
        name,
        OK if trust_pem and anchored else WARN,
        f"embedded C2PA manifest valid ({info.state}), signed by {info.signer!r}, "
        f"order {a.get('order_id')!r}, log index {a.get('log_index')}",
    )
    return info


def _check_manifest_sig(
    report: Report, name: str, m: manifest_mod.SignedManifest, pub: Ed25519PublicKey
) -> bool:
    fp = fingerprint(pub)
    if m.verify(pub):
        if m.key_fingerprint != fp:
            report.add(
                name,
                FAIL,
                f"manifest names key {m.key_fingerprint} but verifies with {fp}",
                "manifest-key-mismatch",
            )
            return False
        report.add(name, OK, f"signed by the station key {fp[:23]}...")
        return True
    if m.key_fingerprint and m.key_fingerprint != fp:
        reason = f"signed by another key ({m.key_fingerprint[:23]}...), not the station key {fp}"
    else:
        reason = f"signature does not verify with the station key {fp}: altered after signing"
    report.add(name, FAIL, reason, "manifest-bad-signature")
    return False


def _parse_time(s: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(s))
    except ValueError:
        return None


def _recorded_end(body: dict[str, Any]) -> datetime | None:
    """A manifest's ``ended_at`` in UTC; None when missing, unreadable or without an offset
    (the station always writes one; a time without it means a different instant to each
    verifier's time zone)."""
    ended = _parse_time(body.get("ended_at"))
    return ended.astimezone(UTC) if ended is not None and ended.tzinfo is not None else None


def _check_clock_step(report: Report, name: str, body: dict[str, Any]) -> None:
    step, problem = clock_step(body)
    if problem is not None:
        report.add(name, FAIL, problem, "time-inconsistent")
    elif step:
        report.facts["clock_step_s"] = step
        report.add(name, OK, step_text(step))


# A genuine clip's ``duration_s`` is its presentation span plus one frame interval, and
# ``ended_at - started_at`` that span: they differ by one frame. Moving the start (the TSA
# only holds the end) by minutes or years breaks that; the bound leaves room for odd cameras.
SPAN_SLACK_S = 2.0
SPAN_SLACK_FRACTION = 0.01


def span_slack(duration_s: float) -> float:
    """How far ``ended_at - started_at``, ``duration_s`` and the clip's own presentation span
    may disagree before the recorded times are not the clip's."""
    return SPAN_SLACK_S + SPAN_SLACK_FRACTION * abs(duration_s)


def _check_recorded_span(
    report: Report,
    name: str,
    body: dict[str, Any],
    played_s: float | None = None,
    *,
    measured: bool = False,
) -> None:
    """The signed manifest's start, end and duration must agree (and, ``measured``, the
    duration with how long the clip's signed bytes play, ``played_s``: their ``clip_span_s``,
    held by ``played_problem``, the kit's rule, a None included): the TSA's time holds only
    the recorded end, so this is what holds the start. Adds a check only when it fails
    (``time-inconsistent``); a manifest with no recorded end is left to the token check
    (``time-out-of-bounds``). A start or end that reads as another wall-clock time is
    ``time-offset-invalid``."""
    if shifted := local_time_problem(body):
        report.add(name, FAIL, shifted, "time-offset-invalid")
    _check_clock_step(report, name, body)
    ended = _recorded_end(body)
    if ended is None:
        return
    started = _parse_time(body.get("started_at"))
    duration = body.get("duration_s")
    if (
        started is None
        or started.tzinfo is None
        or isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not -1e9 < duration < 1e9  # NaN, infinities and integers no float holds
        or duration < 0
    ):
        report.add(
            name,
            FAIL,
            "the signed manifest states no start (started_at with its UTC offset) or no "
            "duration (duration_s, seconds) to hold to its recorded end",
            "time-inconsistent",
        )
        return
    span = (ended - started).total_seconds()
    slack = span_slack(duration)
    if abs(duration - span) > slack:
        report.add(
            name,
            FAIL,
            f"the signed manifest says {started.isoformat()} to {ended.isoformat()} ("
            f"{'minus ' if span < 0 else ''}{_human(abs(span))}) but a duration of "
            f"{duration:g} s (allowed: ± {slack:.1f} s): the recorded start is not when it "
            "happened",
            "time-inconsistent",
        )
    elif measured and (wrong := played_problem(body, played_s)):
        report.add(name, FAIL, wrong, "time-inconsistent")


# ---- bundles -------------------------------------------------------------------------------


def unpacked_name(name: str) -> str:
    """Where an unzip tool puts member ``name``, as a case- and normalisation-folded key:
    ``./a``, ``a//b``, ``/a``, ``a\\b``, ``A`` all land on (or over) ``a`` somewhere, ``é``
    written as e + U+0301 on ``é`` on a Mac. ProofError for a name that leaves the folder
    (``..``)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts or (parts and ":" in parts[0]):
        raise ProofError(f"bundle member {name!r} would unpack outside its folder")
    # é written as e + U+0301 and as one character: one file on a Mac (APFS and HFS+)
    folded = unicodedata.normalize("NFC", "/".join(parts).casefold())
    return folded + ("/" if name.endswith(("/", "\\")) else "")


# The most a bundle's members may take in memory while it is checked is the kit's
# READ_BUDGET, all reads together (its clips are unpacked and hashed in streams, not read):
# bundle.json may name one member any number of times, and each naming is another read.
# MEMBER_READ_MAX, FRAME_READ_MAX and READ_BUDGET are defined once, in the kit (verify.py
# cannot import packcam), and oversized_problem refuses up front what would pass them.


class _Bundle:
    """Read-only access to a bundle zip with size limits; member names are never paths."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        infos = zf.infolist()
        if problem := unpack_problem(infos):  # each is hashed in full, a clip also unpacked
            raise ProofError(f"bundle: {problem}")
        if zf.filename and (problem := framing_problem(Path(zf.filename), zf)):
            raise ProofError(f"bundle: {problem}")  # vouch for the members, not another file
        self.names = {i.filename: i for i in infos}
        self._sha256: dict[str, str] = {}
        self._read = 0  # bytes read() has handed out (READ_BUDGET)
        seen: dict[str, str] = {}
        for i in infos:
            # Two members that unpack to the same file: only one is checked here, and which
            # one a person's unzip tool shows is its choice (the last, the first, a prompt).
            key = unpacked_name(i.filename)
            if key in seen:
                raise ProofError(
                    f"bundle members {seen[key]!r} and {i.filename!r} unpack to the same file"
                )
            if problem := member_name_problem(i.filename):  # as verify.py
                raise ProofError(f"bundle member {problem}")
            seen[key] = i.filename
        if clash := file_and_folder(seen):  # as verify.py
            raise ProofError(
                f"bundle member {clash!r} is both a file and a folder: they unpack to one place"
            )

    def has(self, name: str | None) -> bool:
        return bool(name) and name in self.names

    def read(self, name: str, limit: int = MEMBER_READ_MAX) -> bytes:
        info = self.names.get(name)
        if info is None:
            raise ProofError(f"bundle lacks {name}")
        if info.file_size > limit:
            raise ProofError(f"bundle member {name} is too large")
        self._read += info.file_size  # zipfile reads no more than the size the member declares
        if self._read > READ_BUDGET:
            raise ProofError(
                f"checking it would read more than {READ_BUDGET >> 20} MiB of its members into "
                f"memory ({name} and others named over and over): not a packcam bundle"
            )
        return self.zf.read(info)

    def extract(self, name: str, dest: Path) -> Path:
        info = self.names.get(name)
        if info is None:
            raise ProofError(f"bundle lacks {name}")
        with self.zf.open(info) as src, dest.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        return dest

    def member_sha256(self, name: str) -> str:
        """SHA-256 of a member's bytes, computed once (clips are large)."""
        cache = self._sha256
        if name not in cache:
            h = hashlib.sha256()
            with self.zf.open(self.names[name]) as f:
                while block := f.read(1 << 20):
                    h.update(block)
            cache[name] = h.hexdigest()
        return cache[name]


def make_anchors(
    anchors: Anchors | None,
    trusted_ca: list[x509.Certificate] | None,
    tsa_roots: list[x509.Certificate] | None,
) -> Anchors:
    """``anchors`` plus certificates passed the older way (lists of trusted certificates)."""
    out = anchors or Anchors()
    return out.merged(Anchors(ca=tuple(trusted_ca or ()), tsa=tuple(tsa_roots or ())))


def verify_bundle(
    path: Path,
    *,
    anchors: Anchors | None = None,
    trusted_ca: list[x509.Certificate] | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
    bound: TimeBound | None = None,
    tmp_dir: Path | None = None,
    witness: dict[str, Any] | WitnessFetch | None = None,
    witness_pin: str | None = None,
) -> Report:
    """Check an evidence bundle using only what is inside it and the anchors you pass.

    Nothing in the bundle is trusted by itself: a CA or TSA root shipped inside counts only
    when it is one of ``anchors`` (a certificate or a pinned fingerprint). ``tmp_dir``: where
    its clips are unpacked to be hashed (default: the system's temp dir). ``witness``: a
    ``GET /witness/<station>`` document, or what fetches it given the tree sizes the bundle
    cites (its checkpoint's first); ``witness_pin``: the fingerprint its key must have.
    """
    report = Report(subject=path.name)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        report.add("bundle", FAIL, f"not a readable zip file: {exc}", "bundle-unreadable")
        return report
    with zf, tempfile.TemporaryDirectory(prefix="packcam-verify-", dir=tmp_dir) as tmp:
        try:
            _verify_bundle(
                report,
                _Bundle(zf),
                Path(tmp),
                make_anchors(anchors, trusted_ca, tsa_roots),
                bound or TimeBound(),
            )
            if witness is not None:
                if callable(witness):
                    sizes = [s for s, _ in report.facts.get("checkpoints_seen", [])]
                    witness = witness(list(dict.fromkeys(sizes)))
                check_witness(report, witness, witness_pin)
        except WitnessRecordError:
            raise  # the verifier's own input: no verdict on the bundle
        except (ProofError, KeyError, ValueError, TypeError, AttributeError, *ZIP_ERRORS) as exc:
            # AttributeError: JSON of another shape (a list where an object belongs)
            report.add("bundle", FAIL, f"malformed bundle: {exc}", "bundle-malformed")
    return report


def _check_bundle_manifest(
    report: Report, b: _Bundle, pub: Ed25519PublicKey, certified: str | None
) -> dict[str, Any] | None:
    """The station-signed list of every member with its SHA-256 (bundle/manifest.json)."""
    if not b.has(BUNDLE_MANIFEST):
        report.covered = False
        report.add(
            "bundle.manifest",
            WARN,
            "no signed bundle manifest (exported where the station key was not readable): "
            "bundle.json, summary.html and the key frames are not covered by a signature; "
            "only the clips, their manifests and proofs are",
            "bundle-member-unsigned",
        )
        return None
    raw = b.read(BUNDLE_MANIFEST)
    sig = b.read(BUNDLE_MANIFEST_SIG) if b.has(BUNDLE_MANIFEST_SIG) else b""
    bm: dict[str, Any] = json.loads(raw)
    if (
        not verify_signature(pub, raw, sig)
        or bm.get("type") != BUNDLE_MANIFEST_TYPE
        or bm.get("station_key") != fingerprint(pub)
    ):
        report.add(
            "bundle.manifest",
            FAIL,
            "the bundle manifest is not signed by the station key",
            "bundle-manifest-bad-signature",
        )
        return None
    _check_station_name(report, "bundle.manifest.station", bm.get("station"), certified)
    members: dict[str, str] = bm.get("members") or {}
    bad = False
    for name in sorted(b.names):
        if name in (BUNDLE_MANIFEST, BUNDLE_MANIFEST_SIG, SUMS_NAME) or name.endswith("/"):
            continue
        want = members.get(name)
        if want is None:
            report.add(
                f"member {name}",
                FAIL,
                "not listed in the signed bundle manifest: added after export",
                "bundle-member-unsigned",
            )
            bad = True
        elif b.member_sha256(name) != want:
            report.add(
                f"member {name}",
                FAIL,
                "differs from the SHA-256 in the signed bundle manifest: changed after export",
                "bundle-member-unsigned",
            )
            bad = True
    for name in sorted(set(members) - set(b.names)):
        report.add(
            f"member {name}",
            FAIL,
            "listed in the signed bundle manifest but missing from the bundle: removed",
            "bundle-member-missing",
        )
        bad = True
    if b.has(SUMS_NAME):
        sums = {
            n: h
            for h, _, n in (ln.partition("  ") for ln in b.read(SUMS_NAME).decode().splitlines())
        }
        # a folder entry has no bytes to hash (verify.py unpacks it to a folder, not a file):
        # a line for one, which anyone can add, is no member's
        if any(
            n in b.names and not n.endswith("/") and b.member_sha256(n) != h
            for n, h in sums.items()
        ):
            report.add(
                f"member {SUMS_NAME}",
                FAIL,
                "lists hashes that do not match the members",
                "bundle-member-unsigned",
            )
            bad = True
    if not bad:
        report.add(
            "bundle.manifest",
            OK,
            f"all {len(members)} members match the bundle manifest signed by the station key",
        )
    return bm


def verifier_kit() -> bytes:
    """The stranger's verifier (standalone_verify.py) every bundle ships as verify.py."""
    return resources.files("station.proof").joinpath("standalone_verify.py").read_bytes()


def _check_shipped_verifier(report: Report, b: _Bundle) -> None:
    """The bundle's verify.py against this packcam's: whoever made the bundle wrote that copy
    (the bundle manifest signs whatever it was), and a stranger who runs it runs their code.
    Never run here; another packcam version's copy differs too, so it is a warning."""
    if not b.has(VERIFIER):
        return
    if b.member_sha256(VERIFIER) != hashlib.sha256(verifier_kit()).hexdigest():
        report.add(
            VERIFIER,
            WARN,
            "the bundle's verify.py is not this packcam's (another version, or edited after "
            "export): never run the bundle's own copy; this verdict does not come from it",
            "bundle-verifier-differs",
        )


def _verify_bundle(
    report: Report, b: _Bundle, tmp: Path, anchors: Anchors, bound: TimeBound
) -> None:
    index = json.loads(b.read("bundle.json"))
    if index.get("format") != BUNDLE_FORMAT:
        raise ProofError("bundle.json is not a packcam evidence bundle index")
    if twice := clip_listed_twice(index):  # it would be unpacked once per listing
        raise ProofError(f"bundle.json lists {twice} more than once")
    if misnamed := misnamed_reference(index):  # verify.py would find it unpacked
        raise ProofError(f"bundle.json names {misnamed!r}, not a member name an export writes")
    if unheld := unheld_reference(index, b.names):  # as verify.py, before any is read
        raise ProofError(unheld)
    if big := oversized_problem(index, {n: i.file_size for n, i in b.names.items()}):
        raise ProofError(big)  # as verify.py: no read below passes READ_BUDGET
    keys = index["keys"]
    pub = load_public_pem(b.read(keys["station_public_key"]))
    key_cert = (
        x509.load_pem_x509_certificate(b.read(keys["station_key_certificate"]))
        if b.has(keys.get("station_key_certificate"))
        else None
    )
    ca = (
        x509.load_pem_x509_certificate(b.read(keys["company_ca"]))
        if b.has(keys.get("company_ca"))
        else None
    )
    certified = _check_key_cert(report, pub, key_cert, ca, anchors)
    shipped_roots = (
        load_pem_certs(b.read(keys["tsa_roots"])) if b.has(keys.get("tsa_roots")) else []
    )

    # The checkpoint: a signed tree head every inclusion proof is checked against.
    cpi = index["checkpoint"]
    cp_bytes = b.read(cpi["body"])
    cp_sig = b.read(cpi["signature"])
    cp = json.loads(cp_bytes)
    if cp.get("type") != CHECKPOINT_TYPE:
        raise ProofError("checkpoint has the wrong type")
    if verify_signature(pub, cp_bytes, cp_sig) and cp.get("key") == fingerprint(pub):
        report.add(
            "checkpoint.signature",
            OK,
            f"log checkpoint of {cp['tree_size']} entries signed by the station key",
        )
    else:
        report.add(
            "checkpoint.signature",
            FAIL,
            "the log checkpoint is not signed by the station key",
            "checkpoint-bad-signature",
        )
    _check_station_name(report, "checkpoint.station", cp.get("station"), certified)
    cp_root = bytes.fromhex(cp["root_sha256"])
    cp_size = int(cp["tree_size"])
    report.facts["checkpoint"] = {
        "tree_size": cp_size,
        "root_sha256": cp["root_sha256"],
        "created_utc": cp.get("time"),
        "station": cp.get("station"),  # the signed name: whose witness record to hold it to
    }
    report.facts["checkpoints_seen"] = [(cp_size, str(cp["root_sha256"]))]
    cp_seen, _ = _check_tokens(
        report,
        "checkpoint.timestamp",
        [b.read(n) for n in cpi.get("timestamps", [])],
        hashlib.sha256(cp_bytes).digest(),
        anchors,
        shipped_roots,
    )
    _check_not_after_seen(report, "checkpoint.time", cp.get("time"), cp_seen, bound)
    signer, station_keys = pub, [StationKeySpan(pub, None)]
    if index.get("rotations"):
        station_keys = _check_rotations(
            report, b, index["rotations"], pub, cp_bytes, ca, anchors, shipped_roots, certified
        )
        signer = station_keys[-1].key
    bm = _check_bundle_manifest(report, b, signer, certified)
    _check_shipped_verifier(report, b)
    for name in unreferenced_members(index, list(b.names)):
        report.add(
            f"member {name}",
            FAIL,
            "not named by bundle.json: no manifest, timestamp or log proof vouches for it, only "
            "the bundle manifest signed at export",
            "bundle-member-unreferenced",
        )

    manifests: dict[str, dict[str, Any]] = {}
    for entry in index["clips"]:
        if entry.get("manifest") and b.has(entry["manifest"]):
            manifests[entry["clip"]] = json.loads(b.read(entry["manifest"]))
    trusted_ca = anchors.trusted_ca([ca] if ca is not None else [])
    trust_pem = b"".join(pem(c) for c in (trusted_ca or ([ca] if ca else [])))
    clips_facts = []
    seqs: set[int] = set()
    for n, entry in enumerate(index["clips"]):
        name = Path(entry["clip"]).name
        pre = f"clip[{n}] {name}"
        if not entry.get("manifest"):
            report.add(
                pre,
                FAIL,
                "this clip has no signed manifest (recorded before the proof was enabled?)",
                "manifest-missing",
            )
            continue
        m = manifest_mod.from_canonical(b.read(entry["manifest"]), b.read(entry["signature"]))
        body = m.body
        if canonical_json(body) != m.canonical:
            report.add(
                f"{pre} manifest.form",
                FAIL,
                "manifest bytes are not in canonical form",
                "manifest-not-canonical",
            )
        _check_manifest_sig(report, f"{pre} manifest.signature", m, pub)
        _check_station_name(report, f"{pre} manifest.station", body.get("station"), certified)
        if body.get("order_id") != index.get("order_id"):
            report.add(
                f"{pre} order",
                FAIL,
                f"bundle.json says order {index.get('order_id')!r} but the signed manifest says "
                f"{body.get('order_id')!r}",
                "bundle-order-mismatch",
            )
        # the clip's bytes against the signed manifest
        clip = b.extract(entry["clip"], tmp / f"clip{n}.mp4")
        digest, size = sha256_and_size(clip)
        # how long the signed bytes play (not another file's), read as verify.py reads it
        signed_bytes, played = False, None
        if digest == body.get("sha256") and size == body.get("size"):
            report.add(f"{pre} sha256", OK, f"SHA-256 {digest} and size {size} match the manifest")
            signed_bytes, played = True, clip_span_s(clip)
            _check_key_frames(report, f"{pre} frames", b, entry.get("frames") or [], clip, body)
        else:
            other = [
                k for k, v in manifests.items() if v.get("sha256") == digest and k != entry["clip"]
            ]
            if other:
                report.add(
                    f"{pre} sha256",
                    FAIL,
                    f"this clip matches the manifest of {Path(other[0]).name}: "
                    "the manifests of two clips were swapped",
                    "manifest-swapped",
                )
            else:
                code, reason = classify_mismatch(clip, size, body)
                report.add(f"{pre} sha256", FAIL, reason, code)
        _check_recorded_span(report, f"{pre} manifest.times", body, played, measured=signed_bytes)
        if Path(str(body.get("path", ""))).name != name:
            report.add(
                f"{pre} manifest.path",
                FAIL,
                f"the manifest describes {body.get('path')!r}, not {name}",
                "manifest-swapped",
            )
        # its place in the log
        inc = json.loads(b.read(entry["inclusion"]))
        leaf = merkle.leaf_hash(m.canonical)
        seq = body.get("seq")
        if isinstance(seq, int):
            seqs.add(seq)
        if inc.get("log_index") != seq:
            report.add(
                f"{pre} log",
                FAIL,
                f"inclusion proof is for log index {inc.get('log_index')}, manifest says {seq}",
                "log-index-mismatch",
            )
        elif int(inc.get("tree_size", -1)) != cp_size:
            report.add(
                f"{pre} log",
                FAIL,
                "inclusion proof is not for the bundled checkpoint",
                "log-proof-mismatch",
            )
        elif merkle.verify_inclusion(
            int(seq), cp_size, leaf, [bytes.fromhex(h) for h in inc["audit_path"]], cp_root
        ):
            report.add(
                f"{pre} log",
                OK,
                f"manifest is entry {seq} of the station's log (checkpoint of {cp_size} entries)",
            )
        else:
            report.add(
                f"{pre} log",
                FAIL,
                "the manifest is not in the signed log at that index "
                "(leaf replaced or proof forged)",
                "log-not-included",
            )
        when, anchored = _check_tokens(
            report,
            f"{pre} timestamp",
            [b.read(t) for t in entry.get("timestamps", [])],
            hashlib.sha256(m.canonical).digest(),
            anchors,
            shipped_roots,
            _recorded_end(body),
            bound,
            timed=True,
        )
        report.time_anchors.append(anchored)
        start_seen = _check_start(
            report, f"{pre} start", body,
            [b.read(t) for t in entry.get("start_timestamps") or []], anchors, shipped_roots,
            bound,
        )  # fmt: skip
        if entry.get("first_checkpoint"):
            _check_first_checkpoint(
                report, b, f"{pre} first-checkpoint", entry["first_checkpoint"], cp, pub,
                anchors, shipped_roots, seq,
            )  # fmt: skip
        _check_c2pa(report, clip, body, trust_pem or None, f"{pre} c2pa", anchored=bool(trusted_ca))
        clips_facts.append(_clip_facts(name, body, when, m.canonical))
        if start_seen is not None:
            clips_facts[-1]["start_tsa_time"] = start_seen
        if body.get("clock_synced") is False:
            report.add(
                f"{pre} clock",
                WARN,
                "the station clock was not NTP-synchronised when "
                "this clip was signed: rely on the TSA time",
            )
    want = {int(x) for x in bm.get("order_clips", [])} if bm is not None else set()
    gone = _check_deleted_clips(
        report, b, index, pub, station_keys, cp_size, cp_root, sorted(want or seqs), seqs
    )
    if bm is not None:
        if bm.get("order_id") != index.get("order_id"):
            report.add(
                "bundle.order",
                FAIL,
                f"bundle.json says order {index.get('order_id')!r}, the signed bundle manifest "
                f"{bm.get('order_id')!r}",
                "bundle-order-mismatch",
            )
        if want - seqs - gone:
            held = f" and the deletion records of {len(gone & want)}" if gone else ""
            report.add(
                "bundle.order",
                FAIL,
                f"the station logged {len(want)} clip(s) of this order (log entries "
                f"{sorted(want)}) but the bundle holds {len(seqs & want)}{held}: entries "
                f"{sorted(want - seqs - gone)} were left out",
                "order-incomplete",
            )
        elif gone:
            report.add(
                "bundle.order",
                WARN,
                f"the station logged {len(want)} clip(s) of this order: {len(seqs & want)} are "
                f"here, {len(gone)} deleted by its retention (log entries {sorted(gone)}); the "
                "verdict is for the clips here only",
                "order-partial",
            )
        elif want:
            report.add(
                "bundle.order",
                OK,
                f"all {len(want)} clip(s) the station logged for this order up to the checkpoint "
                "are here",
            )
    if overlap := overlap_problem(list(manifests.values())):
        report.add("clips", FAIL if overlap[1] else WARN, overlap[0], "clip-overlap")
    # the signed one: each clip's manifest is held to it (bundle-order-mismatch)
    if odd := lookalike_problem(index.get("order_id")):
        report.add("bundle.order", WARN, odd, "order-id-lookalike")
    orders = {c["order_id"] for c in clips_facts}
    report.facts["order_id"] = orders.pop() if len(orders) == 1 else sorted(map(str, orders))
    report.facts["clips"] = clips_facts


def _check_key_frames(
    report: Report,
    name: str,
    b: _Bundle,
    frames: list[dict[str, Any]],
    clip: Path,
    body: dict[str, Any],
) -> None:
    """The key frames summary.html shows must be the clip's own pictures at the moments its
    signed manifest names (``keyframe_times``, as the export picks them): the bundle
    manifest, signed at export, vouches for a picture no more than for another clip. None at
    all is a warning (``frames_missing``, verify.py's rule): an honest bundle may have none."""
    if no_frames := frames_missing({"frames": frames}):
        report.add(name, WARN, no_frames, "bundle-frames-missing")  # as verify.py says it
        return
    moments = keyframe_times(body)
    wrong: list[str] = []
    named: list[tuple[float, str, str]] = []  # (exact time, label, member)
    for f in frames:
        t = next(
            (
                t
                for t, label in moments
                if label == f.get("label")
                and abs(round(t, 2) - float(f.get("t_clip_s", -1))) < 0.006
            ),
            None,
        )
        if t is None:
            wrong.append(f"{f.get('file')} (no {f.get('label')!r} at {f.get('t_clip_s')} s)")
        else:
            named.append((t, str(f.get("label")), str(f.get("file"))))
    try:
        shown = {t: image for t, _, image in frames_at(clip, [(t, lb) for t, lb, _ in named])}
    except (av.FFmpegError, OSError, IndexError):
        shown = {}
    for t, _, member in named:
        try:
            with Image.open(io.BytesIO(b.read(member, FRAME_READ_MAX))) as img:
                same = t in shown and same_picture(shown[t], img)
        except (UnidentifiedImageError, OSError, ValueError):
            same = False
        if not same:
            wrong.append(member)
    if wrong:
        report.add(
            name,
            FAIL,
            f"key frame(s) {', '.join(wrong)} are not this clip's pictures at the moments they "
            "name: only the bundle manifest, signed at export, vouches for them",
            "bundle-frame-mismatch",
        )
    else:
        report.add(name, OK, f"all {len(frames)} key frames are this clip's own pictures")


def _check_deleted_clips(
    report: Report,
    b: _Bundle,
    index: dict[str, Any],
    pub: Ed25519PublicKey,
    station_keys: list[StationKeySpan],
    cp_size: int,
    cp_root: bytes,
    order: list[int],
    seqs: set[int],
) -> set[int]:
    """The clips of the order the station's retention deleted (``deleted_clips``): each the
    clip's signed manifest in the bundled log and the deletion record signed by a station
    key of the bundle's chain (the log's, a successor's, the bundle's; a retired one only
    dated up to its rotation). Returns the log entries so accounted for. The record is the
    seller's own statement: it explains a gap, it vouches for nothing the clip showed, so
    each is reported (a warning) and none counts towards the verdict."""
    gone: set[int] = set()
    now = datetime.now(UTC)
    for n, item in enumerate(index.get("deleted_clips") or []):
        name = f"deleted[{n}] {Path(item['clip']).name}"
        raw = b.read(item["manifest"])
        body = manifest_mod.from_canonical(raw, b.read(item["signature"])).body
        record = b.read(item["deletion_record"])
        why = _deletion_problem(
            body, raw, b.read(item["signature"]), record, b.read(item["deletion_signature"]),
            json.loads(b.read(item["inclusion"])), pub, station_keys, cp_size, cp_root, now,
        )  # fmt: skip
        seq = body.get("seq")
        if why is None and body.get("order_id") != index.get("order_id"):
            why = f"it is a clip of order {body.get('order_id')!r}"
        if why is None and (seq in seqs or seq in gone or (order and seq not in order)):
            why = f"log entry {seq} is not a clip of this order missing from the bundle"
        if why is not None or not isinstance(seq, int):  # an int when nothing is wrong
            report.add(name, FAIL, f"not accepted as a clip deleted by retention: {why}",
                       "deletion-record-invalid")  # fmt: skip
            continue
        d = json.loads(record)
        gone.add(seq)
        k = order.index(seq) + 1 if seq in order else "?"
        span = f"{utc_plain(body['started_at'])}–{utc_plain(body['ended_at'])[11:]} UTC"
        when = utc_plain(d["deleted_utc"])[:16]
        age = (_parse_time(d["deleted_utc"]) - _parse_time(body["ended_at"])).total_seconds()  # type: ignore[operator]  # both parsed in _deletion_problem
        report.add(
            name,
            WARN,
            f"clip {k} of this order ({span}, sha256 {body['sha256']}) was deleted by the "
            f"station's retention on {when} UTC, by its own signed record ({age / 86400:.1f} "
            f"days after it was recorded; {d.get('reason', '')}): it is not in this bundle; "
            "the record is the seller's statement, its date too (no time-stamp authority saw "
            "it): it explains the gap and proves neither when the clip was deleted nor what it "
            "showed",
            "clip-deleted-by-retention",
        )
        report.facts.setdefault("deleted_clips", []).append(
            {
                "clip": k,
                "file": Path(item["clip"]).name,
                "log_index": seq,
                "sha256": body["sha256"],
                "started_at": body["started_at"],
                "ended_at": body["ended_at"],
                "deleted_utc": d["deleted_utc"],
                "reason": d.get("reason"),
            }
        )
    return gone


def _deletion_problem(
    body: dict[str, Any],
    raw: bytes,
    sig: bytes,
    record: bytes,
    record_sig: bytes,
    inc: dict[str, Any],
    pub: Ed25519PublicKey,
    station_keys: list[StationKeySpan],
    cp_size: int,
    cp_root: bytes,
    now: datetime,
) -> str | None:
    """Why a deleted clip's manifest and deletion record are not the station's about one and
    the same logged clip (None: they are). ``now``: the moment of verification."""
    if canonical_json(body) != raw or not verify_signature(pub, raw, sig):
        return "its manifest is not signed by the station key"
    seq = body.get("seq")
    if (
        not isinstance(seq, int)
        or inc.get("log_index") != seq
        or int(inc.get("tree_size", -1)) != cp_size
        or not merkle.verify_inclusion(
            seq,
            cp_size,
            merkle.leaf_hash(raw),
            [bytes.fromhex(h) for h in inc["audit_path"]],
            cp_root,
        )
    ):
        return "its manifest is not in the bundled signed log"
    by = next((k for k in station_keys if verify_signature(k.key, record, record_sig)), None)
    # the one rule of both verifiers (verify.py's): False, no key of the chain signed it
    return deletion_problem(body, record, False if by is None else by.retired_at, now)


def utc_plain(value: object) -> str:
    """A signed time as UTC "YYYY-MM-DD HH:MM:SS" (the text as it is when it is not one)."""
    t = _parse_time(value)
    if t is None:
        return str(value)
    return (t.astimezone(UTC) if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%S")


def check_rotation_link(
    body: bytes, sig_old: bytes, sig_new: bytes, old: Ed25519PublicKey, new: Ed25519PublicKey
) -> dict[str, Any] | None:
    """The final checkpoint of ``old``'s log naming ``new`` as its successor, signed by both;
    its fields, or None when it is not exactly that."""
    try:
        rc = json.loads(body)
    except ValueError:
        return None
    if (
        isinstance(rc, dict)
        and rc.get("type") == CHECKPOINT_TYPE
        and rc.get("final") is True
        and rc.get("key") == fingerprint(old)
        and rc.get("successor_key") == fingerprint(new)
        and isinstance(rc.get("tree_size"), int)
        and verify_signature(old, body, sig_old)
        and verify_signature(new, body, sig_new)
    ):
        return rc
    return None


def _check_rotations(
    report: Report,
    b: _Bundle,
    links: list[dict[str, Any]],
    pub: Ed25519PublicKey,
    cp_bytes: bytes,
    ca: x509.Certificate | None,
    anchors: Anchors,
    shipped_roots: list[x509.Certificate],
    certified: str | None,
) -> list[StationKeySpan]:
    """A bundle of clips signed by a retired key: the chain of rotation statements from that
    key to the one that signed the bundle manifest. Each link is the closed log's final
    checkpoint, signed by both keys; each successor key must be certified like the first
    (a forger's own "successor" never makes the verdict authentic). Returns the chain's keys,
    each retired at its link's final checkpoint, the last one (which signs the bundle
    manifest) not."""
    key = pub
    chain: list[StationKeySpan] = []
    for j, link in enumerate(links):
        name = f"rotation[{j}]"
        body = b.read(link["checkpoint"])
        succ = load_public_pem(b.read(link["successor_public_key"]))
        rc = check_rotation_link(
            body, b.read(link["signature_old"]), b.read(link["signature_new"]), key, succ
        )
        if rc is None:
            report.add(
                name,
                FAIL,
                f"the rotation statement from key {fingerprint(key)[:23]}... to "
                f"{fingerprint(succ)[:23]}... is not a final checkpoint signed by both keys "
                "(edited, or signed by one only)",
                "rotation-unsigned",
            )
            return [*chain, StationKeySpan(succ, None)]
        if j == 0 and body != cp_bytes:
            cp = json.loads(cp_bytes)
            after = signed_after_final(cp_bytes, rc)
            report.add(
                name,
                FAIL,
                f"the bundle's checkpoint ({cp.get('tree_size')} entries) is not the final "
                f"checkpoint of its log ({rc['tree_size']} entries)"
                + (": the retired key signed after its final checkpoint" if after else ""),
                "log-after-rotation" if after else "rotation-unsigned",
            )
        _check_station_name(report, f"{name}.station", rc.get("station"), certified)
        _add_token_failures(
            report, name, [b.read(t) for t in link.get("timestamps", [])], body, anchors,
            shipped_roots,
        )  # fmt: skip
        cert_name = link.get("successor_certificate")
        succ_cert = (
            x509.load_pem_x509_certificate(b.read(cert_name))
            if cert_name is not None and b.has(cert_name)
            else None
        )
        scratch = Report(subject=name)
        succ_station = _check_key_cert(
            scratch, succ, succ_cert, ca, anchors, where=f"the bundle (successor key {j})"
        )
        _adopt(report, name, scratch)
        if certified is not None and succ_station is not None and succ_station != certified:
            report.add(
                f"{name}.station",
                FAIL,
                f"the successor key is certified for {succ_station!r}, not {certified!r}",
                "station-name-mismatch",
            )
        report.add(
            name,
            OK,
            f"the log of key {fingerprint(key)[:23]}... was closed at {rc['tree_size']} entries "
            f"({rc.get('time')}) by a final checkpoint signed by it and by its successor "
            f"{fingerprint(succ)[:23]}...",
        )
        report.facts.setdefault("rotations", []).append(
            {"old_key": fingerprint(key), "new_key": fingerprint(succ),
             "tree_size": rc["tree_size"], "root_sha256": rc.get("root_sha256")}
        )  # fmt: skip
        chain.append(StationKeySpan(key, str(rc.get("time"))))
        key = succ
    return [*chain, StationKeySpan(key, None)]


def _check_first_checkpoint(
    report: Report,
    b: _Bundle,
    name: str,
    fc: dict[str, Any],
    newest: dict[str, Any],
    pub: Ed25519PublicKey,
    anchors: Anchors,
    shipped_roots: list[x509.Certificate],
    seq: Any,
) -> None:
    """The clip's own checkpoint must be signed, timestamped and a prefix of the newest one."""
    body = b.read(fc["body"])
    cp = json.loads(body)
    if not verify_signature(pub, body, b.read(fc["signature"])) or cp.get("key") != fingerprint(
        pub
    ):
        report.add(name, FAIL, "not signed by the station key", "checkpoint-bad-signature")
        return
    size, root = int(cp["tree_size"]), bytes.fromhex(cp["root_sha256"])
    report.facts.setdefault("checkpoints_seen", []).append((size, str(cp["root_sha256"])))
    _add_token_failures(
        report, name, [b.read(t) for t in fc.get("timestamps", [])], body, anchors, shipped_roots
    )
    cons = json.loads(b.read(fc["consistency"]))
    new_size, new_root = int(newest["tree_size"]), bytes.fromhex(newest["root_sha256"])
    if not isinstance(seq, int) or size <= seq:
        report.add(name, FAIL, f"covers {size} entries, not entry {seq}", "log-proof-mismatch")
    elif merkle.verify_consistency(
        size, new_size, [bytes.fromhex(h) for h in cons.get("proof", [])], root, new_root
    ):
        report.add(
            name,
            OK,
            f"the checkpoint signed after this clip ({size} entries, {cp.get('time')}) is a "
            f"prefix of the newest ({new_size} entries): the log only grew since",
        )
    else:
        report.add(
            name,
            FAIL,
            f"the log of the newest checkpoint ({new_size} entries) does not extend the "
            f"checkpoint signed after this clip ({size} entries): the history was rewritten",
            "log-fork",
        )


class WitnessRecordError(ProofError):
    """The witness record the verifier passed is not one the witness signed (a cosignature
    that does not verify, a swapped checkpoint, another key than the pinned one, not a
    witness document): a fault of the verifier's own input, never a verdict on the bundle."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(
            f"the witness record you passed is not one the witness signed ({code}: {detail}): "
            "fetch it again (GET /witness/<station>?tree_size=N of the central site)"
        )
        self.code = code


def check_witness(report: Report, doc: dict[str, Any], pinned: str | None = None) -> None:
    """The bundle's checkpoints against a witness's cosigned history (``/witness/<station>``
    of the central site, saved by the verifier): another root for the same tree size is a
    fork. ``pinned``: the fingerprint of the witness key the verifier trusts; a document of
    any other key (one the seller made with a key of its own) is refused. Without a pin the
    document's key is only named, to be compared out of band. A document that fails its own
    signatures or the pin raises WitnessRecordError: anyone can flip a byte of a genuine
    record, so it says nothing of the bundle (only a record the witness signed can make it
    a fork)."""
    if "unreachable" in doc:
        report.add(
            "witness",
            WARN,
            f"the witness could not be reached ({doc['unreachable']}): not checked",
            "checkpoint-unwitnessed",
        )
        return
    try:
        wkey = load_public_pem(str(doc["public_key_pem"]).encode())
        if pinned is not None and fingerprint(wkey) != pinned:
            raise WitnessRecordError(
                "witness-untrusted",
                f"it is cosigned by key {fingerprint(wkey)}, not by the pinned witness key "
                f"{pinned}",
            )
        mine_key = report.facts.get("station_key")  # the key of the bundle's log
        station = str((report.facts.get("checkpoint") or {}).get("station") or "")

        def checked() -> Iterator[tuple[dict[str, Any], bytes]]:
            for c in doc.get("checkpoints", []):
                cosigned = base64.b64decode(c["cosigned_b64"])
                if not verify_signature(wkey, cosigned, base64.b64decode(c["cosignature_b64"])):
                    raise WitnessRecordError("witness-invalid", "a cosignature does not verify")
                yield c, cosigned

        record = cosigned_checkpoints(checked(), station, mine_key, WitnessRecordError)
        seen, attributed = record.roots, record.attributed
        for r in doc.get("rotations", []):
            final = rotation_final_size(r, mine_key)
            if final is not None and any(
                s > final for s, _ in report.facts.get("checkpoints_seen", [])
            ):
                report.add(
                    "witness",
                    FAIL,
                    f"the witness saw key {str(mine_key)[:23]}... retired at {final} entries "
                    "(its final checkpoint, which it signed), but this bundle's log goes on "
                    "past that: signed after its rotation (a stolen key?)",
                    "log-after-rotation",
                )
                return
        vouched: tuple[set[int], str] = (set(), "")
        if doc.get("sizes_statement_b64"):
            statement = base64.b64decode(doc["sizes_statement_b64"])
            sig = base64.b64decode(doc.get("sizes_signature_b64") or "")
            if verify_signature(wkey, statement, sig):
                made = (report.facts.get("checkpoint") or {}).get("created_utc")
                vouched = vouched_sizes(json.loads(statement), station, attributed, made)
    except (KeyError, TypeError, ValueError) as exc:
        raise WitnessRecordError("witness-invalid", f"not a witness document: {exc}") from exc
    if pinned is None:
        report.compare(f"witness key {fingerprint(wkey)}")
        whose = (
            f"the witness key {fingerprint(wkey)[:23]}... of the document you gave, which was "
            "not pinned (--witness-key): compare it with the one the central witness "
            "publishes (GET /witness)"
        )
    else:
        whose = f"the pinned witness key {pinned}"
    mine = report.facts.get("checkpoints_seen", [])
    # the log entries the bundle proves: its clips' and its deleted clips'
    held = [c.get("log_index") for c in report.facts.get("clips", [])]
    held += [d.get("log_index") for d in report.facts.get("deleted_clips", [])]
    proved = max((s for s in held if isinstance(s, int)), default=-1) + 1
    judged = judge_witnessed(mine, record, proved)
    if judged.status == "fork":
        report.add(
            "witness",
            FAIL,
            f"the witness cosigned another root for the station's log of {judged.size} "
            f"entries: this bundle comes from a forked log (cosigned by {whose})",
            "log-fork",
        )
    elif judged.status == "seen":
        report.add("witness", OK, f"{judged.text} by {whose}")
    else:
        gap = witness_gap(station, vouched, [s for s, _ in mine if s not in seen])
        report.add(
            "witness",
            WARN,
            f"the witness has not cosigned this bundle's checkpoints (yet){judged.text}{gap}; "
            f"the record checked is signed by {whose}",
            "checkpoint-unwitnessed",
        )


def rotation_final_size(r: dict[str, Any], log_key: str | None) -> int | None:
    """The size at which a rotation a witness record lists retired ``log_key``: only when its
    final checkpoint (``body_b64``) is of that key and signed by it. The record's other
    fields are nobody's signature: a line reading "retired at 1" would otherwise turn every
    honest bundle of the key into a stolen key's."""
    if not log_key or r.get("old_key") != log_key:
        return None
    try:
        pub = load_public_pem(str(r["old_public_key_pem"]).encode())
        body = base64.b64decode(r["body_b64"])
        signed = verify_signature(pub, body, base64.b64decode(r["signature_old_b64"]))
        cp = json.loads(body)
    except (KeyError, TypeError, ValueError, ProofError):
        return None
    if not (signed and fingerprint(pub) == log_key and isinstance(cp, dict)):
        return None
    if cp.get("key") != log_key or cp.get("final") is not True:
        return None
    size = cp.get("tree_size")
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def check_bundle_in_log(report: Report, cfg: Config) -> None:
    """A bundle checked with a station's data (``packcam verify --data DIR BUNDLE``, the
    station site's ``/verify``): one that verifies on its own must also be one of *this*
    station's clips, each under the bundle's own signed manifest (``log-leaf-replaced``: the
    key holder re-signed it in a log of its own; ``clip-unknown``), unless another station's
    key signed it: this log knows nothing of those, and a key the company CA certified is what
    ``packcam verify`` with the site's anchors accepts. Then ``name_later_clips``."""
    if report.ok and not report.failures:
        _hold_clips_to_log(report, cfg)
    name_later_clips(report, cfg)  # the order recorded again since: say so


def _hold_clips_to_log(report: Report, cfg: Config) -> None:
    try:
        plog = ProofLog.in_data_dir(cfg.station.data_dir)
    except ProofError:
        return
    try:
        other_station = report.signer_anchored and report.facts.get("station_key") not in (
            own_keys(cfg, plog)
        )
        for clip in report.facts.get("clips", []):
            sha = str(clip.get("sha256"))
            # a clip recorded before a key rotation is in its retired key's closed log
            logged = plog.entries_for_clip(sha) + [
                e for _, e in plog.archived_entries_for_clip(sha)
            ]
            if any(e.manifest_sha256 == clip.get("manifest_sha256") for e in logged):
                report.add("store", OK, f"{clip.get('file')} is in this site's signed log")
            elif logged:
                # the key holder re-signed these bytes (another waybill, other times) in a log
                # of its own: offline that is its word, but this site holds the real entry
                report.add(
                    "store",
                    FAIL,
                    f"{clip.get('file')} is entry {logged[-1].seq} of this site's signed log, "
                    "under another signed manifest than the bundle's: the bundle's manifest and "
                    "log are not the ones this site recorded",
                    "log-leaf-replaced",
                )
            elif other_station:
                report.add(
                    "store",
                    WARN,
                    f"{clip.get('file')} is not in this station's log: station "
                    f"{clip.get('station')!r} signed it with a key this site's company CA "
                    "certified; only its signatures were checked, not that station's log",
                )
            else:
                report.add(
                    "store",
                    FAIL,
                    f"{clip.get('file')} is not a clip of this site's stations",
                    "clip-unknown",
                )
    finally:
        plog.close()


def name_later_clips(report: Report, cfg: Config) -> None:
    """With the station's data: clips of the bundle's order logged after its checkpoint (an
    order re-recorded after the export) are named, so an old bundle is not taken as complete;
    and one logged up to the checkpoint that the bundle neither holds nor carries the deletion
    record of fails (``order-incomplete``): the bundle manifest that lists the order's clips
    is signed at export, and a key holder can re-sign it without one (offline nothing tells);
    and a clip whose bytes the log holds more than once fails (``clip-logged-twice``), as the
    bare clip does against the same log."""
    order = report.facts.get("order_id")
    cp = report.facts.get("checkpoint") or {}
    if not isinstance(order, str) or "tree_size" not in cp:
        return
    plog = ProofLog.in_data_dir(cfg.station.data_dir)
    try:
        key = report.facts.get("station_key")
        logs: list[tuple[str, list[LogEntry]]] = []
        rots = plog.rotations()
        start = next((i for i, r in enumerate(rots) if r.old_key == key), None)
        if key not in own_keys(cfg, plog):
            return  # another station's bundle: this log says nothing about its order
        table = ClipTable(plog.db)
        for clip in report.facts.get("clips", []):  # as the bare clip: its seconds, its bytes
            sha = str(clip.get("sha256"))
            logged = plog.entries_for_clip(sha) + [
                e for _, e in plog.archived_entries_for_clip(sha)
            ]
            e = next((e for e in logged if e.manifest_sha256 == clip.get("manifest_sha256")), None)
            if e is None:  # not this log's entry (log-leaf-replaced): its bytes at least
                check_logged_once(report, f"clip {clip.get('file')}.log", plog, sha)
                continue
            body, row = json.loads(e.manifest), table.raw_row_by_sha256(sha)
            note_overlaps(report, plog, table, body, row, f"clip {clip.get('file')}")
        size = int(cp["tree_size"])
        own = plog.entries() if start is None else plog.archived(str(key)).entries()
        _name_left_out_clips(report, order, own[:size])
        logs.append(("", own[size:]))
        if start is not None:  # of a retired key's log: then every later log
            for r in rots[start + 1 :]:
                logs.append((r.old_key, plog.archived(r.old_key).entries()))
            logs.append((rots[-1].new_key, plog.entries()))
        later = []
        for other, entries in logs:
            for e in entries:
                body = json.loads(e.manifest)
                if body.get("order_id") == order:
                    where = f"log entry {e.seq}" + (f" of key {other[:23]}..." if other else "")
                    later.append(f"{Path(str(body.get('path'))).name} ({where})")
    finally:
        plog.close()
    if later:
        report.facts["later_clips"] = later
        report.add(
            "order.later",
            WARN,
            f"order {order!r} was recorded again after this bundle's checkpoint: "
            + ", ".join(later),
            "order-later-clips",
        )


def _name_left_out_clips(report: Report, order: str, entries: list[LogEntry]) -> None:
    """Fail a bundle that leaves out a clip of its order the station's log holds up to the
    bundle's checkpoint (``entries``), unless it carries that clip's deletion record."""
    held = {c.get("log_index") for c in report.facts.get("clips", [])}
    held |= {d.get("log_index") for d in report.facts.get("deleted_clips", [])}
    left = [
        f"{Path(str(body.get('path'))).name} (log entry {e.seq})"
        for e in entries
        if (body := json.loads(e.manifest)).get("order_id") == order and e.seq not in held
    ]
    if left:
        report.add(
            "order.log",
            FAIL,
            f"this station's log holds clips of order {order!r} up to the bundle's checkpoint "
            f"that the bundle leaves out: {', '.join(left)}",
            "order-incomplete",
        )


def own_keys(cfg: Config, plog: ProofLog) -> set[str]:
    """Fingerprints of every key this data dir's station signed with: its current one and
    those it rotated away from (what one of them signed must be in this station's logs)."""
    keys = {k for r in plog.rotations() for k in (r.old_key, r.new_key)}
    try:
        keys.add(fingerprint(_station_public(ProofPaths.from_config(cfg))))
    except ProofError as exc:
        log.warning("the station's public key is unreadable: %s", exc)
    return keys


def _clip_facts(
    name: str, body: dict[str, Any], when: datetime | None, manifest: bytes
) -> dict[str, Any]:
    """What a clip's signed manifest (its bytes ``manifest``) says (never the unsigned bundle
    index)."""
    return {
        "file": name,
        "order_id": body.get("order_id"),
        "waybill": body.get("waybill"),
        "waybills": body.get("waybills"),
        "station": body.get("station"),
        "started_at": body.get("started_at"),
        "ended_at": body.get("ended_at"),
        "sha256": body.get("sha256"),
        "log_index": body.get("seq"),
        "timestamp": when.isoformat() if when else None,
        "clock_synced": body.get("clock_synced"),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
    }


# ---- a data directory ----------------------------------------------------------------------


@dataclass
class _Store:
    """The pieces of a station's data dir the verifier and the auditor read."""

    cfg: Config
    data_dir: Path
    paths: ProofPaths
    pub: Ed25519PublicKey
    log: ProofLog
    clips: ClipTable
    holds: HoldTable
    key_cert: x509.Certificate | None
    ca: x509.Certificate | None
    tsa_roots: list[x509.Certificate]


def _station_public(paths: ProofPaths) -> Ed25519PublicKey:
    return station_public_key(paths.public_key, paths.key)


def _read_cert(p: Path) -> x509.Certificate | None:
    """A public certificate, or None when missing; unreadable ones are logged, not raised."""
    try:
        return x509.load_pem_x509_certificate(p.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError as exc:
        log.warning("cannot read %s: %s (certificates belong in the public folder)", p, exc)
        return None


@contextlib.contextmanager
def _open_store(cfg: Config) -> Iterator[_Store]:
    data_dir = cfg.station.data_dir
    if not (data_dir / INDEX_NAME).exists():
        raise ProofError(f"no station index in {data_dir}")
    paths = ProofPaths.from_config(cfg)
    plog = ProofLog.in_data_dir(data_dir)
    try:
        cert = _read_cert
        yield _Store(
            cfg=cfg,
            data_dir=data_dir,
            paths=paths,
            pub=_station_public(paths),
            log=plog,
            clips=ClipTable(plog.db),
            holds=HoldTable(plog.db),
            key_cert=cert(paths.key_cert),
            ca=cert(paths.ca_cert),
            tsa_roots=load_pem_certs(paths.tsa_ca.read_bytes())
            if paths.tsa_ca and paths.tsa_ca.exists()
            else [],
        )
    finally:
        plog.close()


def verify_clip(
    path: Path,
    cfg: Config | None,
    *,
    anchors: Anchors | None = None,
    trusted_ca: list[x509.Certificate] | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
    bound: TimeBound | None = None,
) -> Report:
    """A bare clip: is it a recorded one (index + log), and what does its C2PA manifest say?

    The data dir's certificates are the seller's own: like a bundle's, they count as anchors
    only when ``anchors`` trust them (a certificate or a pinned fingerprint).
    """
    report = Report(subject=path.name)
    anchors = make_anchors(anchors, trusted_ca, tsa_roots)
    digest, size = sha256_and_size(path)
    report.facts.update(sha256=digest, size=size)
    if cfg is None:
        report.add("index", WARN, "no data dir given: only the embedded C2PA manifest is checked")
        return _c2pa_only(report, path, anchors)
    with _open_store(cfg) as st:
        entries = st.log.entries_for_clip(digest)
        archived = st.log.archived_entries_for_clip(digest) if not entries else []
        if archived:  # recorded under a key retired since: its closed log, its certificate
            st = _retired_store(report, st, archived[-1][0])
            entries = [archived[-1][1]]
        certified = _check_key_cert(
            report, st.pub, st.key_cert, st.ca, anchors, where="the data directory"
        )
        trusted = anchors.trusted_ca([st.ca] if st.ca is not None else [])
        trust_pem = b"".join(pem(c) for c in (trusted or ([st.ca] if st.ca else []))) or None
        if not entries:
            other = _other_station(path, anchors, certified or cfg.station.name)
            if other is not None:  # its own signed C2PA manifest is all there is to check
                report = Report(subject=path.name, facts={"sha256": digest, "size": size})
                report.add(
                    "index", INFO, f"not in this station's log: its embedded C2PA manifest is "
                    f"signed by {other!r}, another station; only that manifest is checked",
                )  # fmt: skip
                return _c2pa_only(report, path, anchors)
            _explain_unknown(report, st, path, size, trust_pem)
            return report
        e = entries[-1]
        m = manifest_mod.from_canonical(e.manifest, e.signature)
        body = m.body
        report.add(
            "index.log",
            OK,
            f"a recorded clip: log entry {e.seq}, order "
            f"{body.get('order_id')!r}, station {body.get('station')!r}, "
            f"{body.get('started_at')} - {body.get('ended_at')}",
        )
        _check_manifest_sig(report, "manifest.signature", m, st.pub)
        _check_station_name(report, "manifest.station", body.get("station"), certified)
        # the file's bytes are the signed ones (found in the log by their SHA-256)
        check_recorded_times(report, body, path)
        row = st.clips.raw_row_by_sha256(digest)
        if row is None:
            report.add(
                "index.row",
                FAIL,
                "the log has this clip but the index has no row for it",
                "index-row-deleted",
            )
        else:
            diffs = _row_diffs(row, body) + _derived_diffs(st.clips, row, body)
            if diffs:
                report.add(
                    "index.row", FAIL, "index row edited: " + "; ".join(diffs), "index-row-edited"
                )
            else:
                report.add("index.row", OK, f"index row {row['id']} agrees with the manifest")
            _note_late_links(report, "index.row", st.clips, row)
        note_overlaps(report, st.log, st.clips, body, row)
        _check_clip_in_log(report, st, e)
        start = start_statement_digest(body)
        check_clip_tokens(
            report, e.manifest_sha256, body,
            [t.token for t in st.log.timestamps_for(e.manifest_sha256) if t.token],
            [t.token for t in st.log.timestamps_for(start) if t.token] if start else [],
            anchors, st.tsa_roots, bound,
        )  # fmt: skip
        check_clip_c2pa(report, path, body, anchors, st.ca)
        report.facts.update({k: body.get(k) for k in _CLIP_FACTS})
        report.facts["log_index"] = e.seq
    return report


def note_overlaps(
    report: Report,
    log: ProofLog | ArchivedLog,
    clips: ClipTable,
    body: dict[str, Any],
    row: sqlite3.Row | None,
    where: str = "index",
) -> None:
    """Another clip of this station claiming this clip's seconds (its index row found by time,
    judged by its signed manifest when ``log`` holds it), and this clip's bytes logged twice:
    the rules ``packcam audit`` applies to the whole log, for this clip (signed manifest
    ``body``, index row ``row``). The one rule of a bare clip and, with the station's data,
    of each clip of a bundle of the station's (``check_bundle_in_log``)."""

    def clip_id(b: dict[str, Any]) -> object:
        clip = clips.clip_by_path(str(b.get("path")))
        return clip.id if clip is not None else "?"

    start, end = _parse_time(body.get("started_at")), _parse_time(body.get("ended_at"))
    others: list[dict[str, Any]] = []
    if start is not None and end is not None and start.tzinfo and end.tzinfo:
        for r in clips.rows_overlapping(start, end):
            if row is not None and r["id"] == row["id"]:
                continue
            logged = log.entries_for_clip(r["sha256"])
            others.append(
                json.loads(logged[-1].manifest)
                if logged  # its signed claim; else what the index says (no clock known)
                else {k: r[k] for k in ("order_id", "path", "sha256", "started_at", "ended_at")}
            )
    for o in overlaps([body, *others]):
        if o.first is body or o.second is body:
            _add_overlap(report, f"{where}.overlap", o, clip_id(o.first), clip_id(o.second))
    live = log.live if isinstance(log, ArchivedLog) else log  # a retired key's view
    check_logged_once(report, f"{where}.log", live, str(body.get("sha256")))


def logged_manifests(plog: ProofLog, sha256: str) -> list[dict[str, Any]]:
    """Every signed manifest of these clip bytes in the station's logs: its current key's and
    each retired key's closed log (bytes logged under an old key and again under the new one
    are logged twice too)."""
    entries = plog.entries_for_clip(sha256)
    entries += [e for _, e in plog.archived_entries_for_clip(sha256)]
    return [json.loads(e.manifest) for e in entries]


def check_logged_once(report: Report, name: str, plog: ProofLog, sha256: str) -> None:
    """Fail a clip whose bytes the station logged more than once (``clip-logged-twice``): the
    one rule of a bare clip and, with the station's data, of a bundle's clip (the bundle
    carries one of the manifests, and alone cannot know of the other)."""
    same = logged_manifests(plog, sha256)
    if len(same) < 2:
        return
    clips = ClipTable(plog.db)

    def clip_id(b: dict[str, Any]) -> object:
        clip = clips.clip_by_path(str(b.get("path")))
        return clip.id if clip is not None else "?"

    report.add(name, FAIL, logged_twice(same, clip_id), "clip-logged-twice")


def verify_gone_clip(rel: str, sha256: str, cfg: Config) -> Report:
    """A logged clip whose file is not on disk, as ``packcam audit`` judges it: deleted by
    retention with a valid signed record is not verified (nothing here to check, nothing
    failed); any other absence is ``clip-missing``."""
    report = Report(subject=rel)
    with _open_store(cfg) as st:
        entries = st.log.entries_for_clip(sha256)
        archived = st.log.archived_entries_for_clip(sha256) if not entries else []
        e = entries[-1] if entries else archived[-1][1] if archived else None
        body = json.loads(e.manifest) if e is not None else {}
        row = st.clips.raw_row_by_sha256(sha256)
        by_retention, why = _retention_deletion(st, row, rel, body, datetime.now(UTC))
        stored = st.holds.deletion_of_clip(row["id"]) if by_retention and row else None
        if stored is not None:  # what the summary says of it, with its date (verified above)
            rec = json.loads(bytes(stored["record"]))
            report.facts["deleted"] = {
                "sha256": sha256,
                "started_at": body.get("started_at"),
                "ended_at": body.get("ended_at"),
                "deleted_utc": rec["deleted_utc"],
            }
    if by_retention:
        report.add(
            "file", WARN, f"the clip's file is gone: {why}; not verifiable here",
            "clip-deleted-by-retention",
        )  # fmt: skip
    else:
        report.add(
            "file", FAIL, "the clip's file is missing from the store" + (f"; {why}" if why else ""),
            "clip-missing",
        )  # fmt: skip
    return report


def _c2pa_only(report: Report, path: Path, anchors: Anchors) -> Report:
    """A clip judged by its embedded C2PA manifest alone: at best intact (no token to time it)."""
    trusted = anchors.trusted_ca()
    info = _check_c2pa(
        report,
        path,
        None,
        b"".join(pem(c) for c in trusted) or None,
        anchored=bool(trusted),
    )
    if info is not None and info.assertion:
        report.facts.update(info.assertion)
    if not trusted:
        report.add(
            "signer",
            WARN,
            "no company CA given (--ca) to trust the C2PA signer",
            "signer-unanchored",
        )
    elif info is not None and info.present and info.state == "Trusted":
        report.signer_anchored = True
    report.add(
        "time",
        WARN,
        "without the station's data (--data) or a bundle there is no RFC 3161 token to "
        "check: the time is not proven",
        "time-unanchored",
    )
    report.time_anchors.append(False)
    return report


def _other_station(path: Path, anchors: Anchors, this_station: str) -> str | None:
    """The station whose valid C2PA manifest, chaining to a CA ``anchors`` trust, this clip
    carries when that is not this data dir's station (whose log cannot speak for it)."""
    trusted = anchors.trusted_ca()
    if not trusted or not c2pa_available():
        return None
    info = read_c2pa(path, b"".join(pem(c) for c in trusted))
    if not info.present or info.state != "Trusted" or info.failures or info.signer is None:
        return None
    return info.signer if info.signer != this_station else None


def _retired_store(report: Report, st: _Store, old_key: str) -> _Store:
    """The view of a data dir from a retired key: its closed log and archived certificate,
    after checking the rotation statement that closed it."""

    rot = next(r for r in st.log.rotations() if r.old_key == old_key)
    old, new = load_public_pem(rot.old_public_pem), load_public_pem(rot.new_public_pem)
    if check_rotation_link(rot.body, rot.signature_old, rot.signature_new, old, new) is None:
        report.add(
            "rotation",
            FAIL,
            f"the statement that retired key {old_key[:23]}... is not a final checkpoint "
            "signed by both keys",
            "rotation-unsigned",
        )
    else:
        report.add(
            "rotation",
            OK,
            f"recorded under key {old_key[:23]}..., retired on {rot.created_utc}; its log "
            f"was closed by a final checkpoint signed by it and by {rot.new_key[:23]}...",
        )
    cert = _read_cert(RotationFiles.of(st.paths).retired(old_key) / "station-key.crt")
    return replace(st, pub=old, key_cert=cert, log=st.log.archived(old_key))  # type: ignore[arg-type]


# What a verified clip's report states from its signed manifest (the share summary shows them).
_CLIP_FACTS = (
    "order_id", "waybill", "waybills", "station", "started_at", "ended_at", "clock_synced",
)  # fmt: skip


def _check_clip_in_log(report: Report, st: _Store, e: LogEntry) -> None:
    """Inclusion of leaf ``e`` in the stored log and its newest checkpoint; gaps are reasons."""
    all_entries = st.log.entries()
    gaps = [i for i, x in enumerate(all_entries) if x.seq != i]
    if gaps:
        report.add(
            "log.inclusion",
            FAIL,
            f"the station's log has a gap: position {gaps[0]} holds leaf "
            f"{all_entries[gaps[0]].seq} (leaves were deleted); run `packcam audit`",
            "log-gap",
        )
        return
    leaves = [merkle.leaf_hash(x.manifest) for x in all_entries]
    size_now = len(leaves)
    if merkle.verify_inclusion(
        e.seq,
        size_now,
        merkle.leaf_hash(e.manifest),
        merkle.inclusion_proof(e.seq, leaves),
        merkle.root(leaves),
    ):
        report.add("log.inclusion", OK, f"included in the log of {size_now} entries")
    order = json.loads(e.manifest).get("order_id")
    later = [
        x.seq
        for x in all_entries[e.seq + 1 :]
        if json.loads(x.manifest).get("order_id") == order and order is not None
    ]
    if later:
        report.add(
            "order.later",
            INFO,
            f"order {order!r} has later clip(s) in this log: entries {later}",
        )
        report.facts["later_clips"] = later
    cp = st.log.latest_checkpoint()
    if cp is None or cp.tree_size <= e.seq:
        report.add("log.checkpoint", WARN, "no signed checkpoint covers this entry yet")
        return
    if cp.tree_size > size_now:
        report.add(
            "log.checkpoint",
            FAIL,
            f"checkpoint {cp.id} covers {cp.tree_size} entries but the log has {size_now}: "
            "leaves were removed",
            "log-truncated",
        )
        return
    ok_root = merkle.root(leaves[: cp.tree_size]).hex() == cp.root_hash
    ok_sig = verify_signature(st.pub, cp.body, cp.signature)
    if ok_root and ok_sig:
        report.add(
            "log.checkpoint",
            OK,
            f"covered by signed checkpoint {cp.id} ({cp.tree_size} entries, {cp.created_utc})",
        )
        report.facts["checkpoint"] = {
            "tree_size": cp.tree_size,
            "root_sha256": cp.root_hash,
            "created_utc": cp.created_utc,
        }
    else:
        report.add(
            "log.checkpoint",
            FAIL,
            "the latest checkpoint does not match the log (run `packcam audit`)",
            "log-checkpoint-mismatch",
        )


def _check_leaf_tokens(
    report: Report,
    name: str,
    st: _Store,
    e: LogEntry,
    body: dict[str, Any],
    anchors: Anchors,
    bound: TimeBound | None,
) -> bool:
    """The data dir's RFC 3161 tokens over leaf ``e``'s manifest, timed against the clip's
    recorded end (``ended_at`` of its manifest ``body``); True when they anchor it."""
    _, anchored = _check_tokens(
        report,
        name,
        [t.token for t in st.log.timestamps_for(e.manifest_sha256) if t.token],
        bytes.fromhex(e.manifest_sha256),
        anchors,
        st.tsa_roots,
        _recorded_end(body),
        bound,
        timed=True,
    )
    return anchored


def check_clip_tokens(
    report: Report,
    manifest_sha256: str,
    body: dict[str, Any],
    end_tokens: list[bytes],
    start_tokens: list[bytes],
    anchors: Anchors,
    shipped_roots: list[x509.Certificate],
    bound: TimeBound | None = None,
) -> None:
    """A bare clip's RFC 3161 tokens by the rules every verifier shares: those over its signed
    manifest (SHA-256 ``manifest_sha256``, body ``body``) timed against its recorded end
    (``timestamp``: the report's time anchor for the clip), those over its start statement
    judged by ``judge_start`` (``start``: the ``start_tsa_time`` fact when a TSA you pinned
    saw it in time). `packcam verify --data` reads them from the data dir, the central site
    from the station's own prefix in the bucket."""
    _, anchored = _check_tokens(
        report, "timestamp", end_tokens, bytes.fromhex(manifest_sha256), anchors,
        shipped_roots, _recorded_end(body), bound, timed=True,
    )  # fmt: skip
    report.time_anchors.append(anchored)
    seen = _check_start(
        report, "start", body, start_tokens, anchors, shipped_roots, bound or TimeBound()
    )
    if seen is not None:
        report.facts["start_tsa_time"] = seen


def check_signer(
    report: Report,
    station_pub: Ed25519PublicKey,
    key_cert: x509.Certificate | None,
    shipped_ca: x509.Certificate | None,
    anchors: Anchors,
    claimed_station: Any,
    *,
    where: str,
) -> str | None:
    """Who signed a bare clip's manifest (the station key's certificate, from ``where``,
    against the anchors), and the station its manifest names (``claimed_station``) against
    the one the certificate binds the key to; returns that certified name, or None."""
    certified = _check_key_cert(report, station_pub, key_cert, shipped_ca, anchors, where=where)
    _check_station_name(report, "manifest.station", claimed_station, certified)
    return certified


def check_clip_c2pa(
    report: Report,
    clip: Path,
    body: dict[str, Any],
    anchors: Anchors,
    shipped_ca: x509.Certificate | None,
) -> None:
    """A bare clip's embedded C2PA manifest against its signed manifest ``body``, its signer
    against the company CA you trust (else the one that came with the evidence,
    ``shipped_ca``: not anchored then)."""
    trusted = anchors.trusted_ca([shipped_ca] if shipped_ca is not None else [])
    shipped = [shipped_ca] if shipped_ca is not None else []
    trust_pem = b"".join(pem(c) for c in (trusted or shipped)) or None
    _check_c2pa(report, clip, body, trust_pem, anchored=bool(trusted))


def check_recorded_times(report: Report, body: dict[str, Any], clip: Path) -> None:
    """The signed manifest's start, end and duration against one another and against how
    long ``clip``, the signed bytes, plays (``manifest.times``; only failures are added),
    measured as a bundle's clip is (``clip_span_s``, the one measure of both verifiers): a
    bare clip gets its bundle's word."""
    _check_recorded_span(report, "manifest.times", body, clip_span_s(clip), measured=True)


def _explain_unknown(
    report: Report, st: _Store, path: Path, size: int, trust_pem: bytes | None
) -> None:
    """No recorded clip has these bytes: find what it claims to be and say what changed."""
    candidate = None
    info = read_c2pa(path, trust_pem, validate=False) if c2pa_available() else None
    if info is not None and info.assertion and isinstance(info.assertion.get("log_index"), int):
        candidate = st.log.entry(info.assertion["log_index"])
    if candidate is None:
        candidate = _prefix_match(st, path, size)
    if candidate is None:
        for e in st.log.entries():
            if Path(e.clip_path).name == path.name:
                candidate = e
    if candidate is None:
        report.add(
            "index.log",
            FAIL,
            "no recorded clip has this SHA-256 (and nothing in the file names one)",
            "clip-unknown",
        )
        return
    body = manifest_mod.from_canonical(candidate.manifest, candidate.signature).body
    code, reason = classify_mismatch(path, size, body)
    report.add(
        "index.log",
        FAIL,
        f"claims to be {body.get('path')} (log entry {candidate.seq}, "
        f"order {body.get('order_id')!r}) but {reason}",
        code,
    )
    report.facts.update(claimed_order=body.get("order_id"), claimed_log_index=candidate.seq)


def _prefix_match(st: _Store, path: Path, size: int) -> LogEntry | None:
    """The logged clip whose first ``size`` bytes are this file (a truncated copy), if any."""
    with path.open("rb") as f:
        head = f.read(4096)
    if len(head) < 64:
        return None
    for e in reversed(st.log.entries()):
        clip = st.data_dir / e.clip_path
        try:
            if clip.stat().st_size <= size:
                continue
            with clip.open("rb") as f:
                if f.read(len(head)) != head:
                    continue
                f.seek(0)
                h = hashlib.sha256()
                left = size
                while left and (block := f.read(min(left, 1 << 20))):
                    h.update(block)
                    left -= len(block)
        except OSError:
            continue
        if h.hexdigest() == sha256_and_size(path)[0]:
            return e
    return None


_ROW_FIELDS = (
    "order_id",
    "station",
    "started_at",
    "ended_at",
    "duration_s",
    "frame_count",
    "finish_reason",
    "size",
    "sha256",
    "waybill",
    "path",
)


def _retention_deletion(
    st: _Store, row: sqlite3.Row | None, rel: str, body: dict[str, Any], now: datetime
) -> tuple[bool, str]:
    """Was the missing clip ``rel`` deleted by retention, provably? (ok, what was found)

    Retention keeps the index row (with ``deleted_utc``) and a deletion record signed by the
    station key (``station/store/retention.py``), or by a key retired since while it was the
    station's. The record is judged by the bundle verifiers' one rule (``deletion_problem``:
    these bytes, this start, times with their UTC offset, dated no later than a day after
    ``now``, the moment of verification, and older than its own minimum age); here also by
    the station's own index: its order was not on legal hold at that moment. Anything less
    is reported as a missing clip.
    """
    if row is None or not row["deleted_utc"]:  # the column exists: migrations ran
        return False, ""
    rec = st.holds.deletion_of_clip(row["id"])
    if rec is None or rec["signature"] is None:
        return False, "the index marks it deleted by retention, but there is no signed record"
    record, sig = bytes(rec["record"]), bytes(rec["signature"])
    retired = None if verify_signature(st.pub, record, sig) else _retired_signer(st, record, sig)
    if retired is False:
        return False, "its retention deletion record is not signed by the station key"
    try:
        d = json.loads(record)
    except ValueError:
        d = None
    if isinstance(d, dict) and d.get("path") != rel:  # the index's clip, not only the log's
        return False, "its retention deletion record names other bytes"
    # the rule of both bundle verifiers: a time without its UTC offset is no instant to
    # compare (it raised TypeError here, and the share summary answered 500)
    why = deletion_problem(body, record, retired, now)
    if why is not None or not isinstance(d, dict):
        return False, why or "the deletion record is unreadable"
    order_id = body.get("order_id")
    if isinstance(order_id, str) and st.holds.held_at(order_id, d["deleted_utc"]):
        return False, "it was deleted while its order was on legal hold"
    return True, (
        f"deleted by retention on {d['deleted_utc']} ({d.get('reason', '')}; signed record, "
        f"older than {d['min_age_days']:g} days, not on hold)"
    )


def _retired_signer(st: _Store, record: bytes, sig: bytes) -> str | bool:
    """When the key that signed ``record`` was retired (its rotation's time: a record it
    signed after that is what a thief holding it would sign, ``deletion_problem`` refuses
    it); False: no key this station retired signed it."""
    for r in st.log.rotations():
        if verify_signature(load_public_pem(r.old_public_pem), record, sig):
            return r.created_utc
    return False


def _row_diffs(row: sqlite3.Row, body: dict[str, Any]) -> list[str]:
    out = []
    for f in _ROW_FIELDS:
        a, b = row[f], body.get(f)
        if isinstance(a, float) or isinstance(b, float):
            same = a is not None and b is not None and abs(float(a) - float(b)) <= 5e-4 + 1e-9
        else:
            same = a == b
        if not same:
            out.append(f"{f} is {a!r} in the index but {b!r} in the signed manifest")
    return out


@dataclass(frozen=True)
class KnownCheckpoint:
    """A signed checkpoint someone kept from earlier (in a bundle, from a witness)."""

    body: bytes
    signature: bytes
    source: str


def load_known_checkpoint(path: Path) -> KnownCheckpoint:
    """From an evidence bundle (its log/checkpoint.json) or a checkpoint.json beside its .sig."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return KnownCheckpoint(
                    zf.read("log/checkpoint.json"), zf.read("log/checkpoint.sig"), path.name
                )
        sig = path.with_suffix(".sig")
        return KnownCheckpoint(path.read_bytes(), sig.read_bytes(), path.name)
    except (OSError, KeyError, *ZIP_ERRORS) as exc:
        raise ProofError(f"cannot read a signed checkpoint from {path}: {exc}") from exc


def check_known_checkpoints(
    report: Report,
    leaves: list[bytes],
    pub: Ed25519PublicKey,
    known: list[KnownCheckpoint],
) -> None:
    """The log must extend every checkpoint seen before: fewer leaves is a rollback, other
    leaves under an old root (or a log signed by another key) is a fork."""
    for k in known:
        name = f"known-checkpoint {k.source}"
        try:
            cp = json.loads(k.body)
            size, root = int(cp["tree_size"]), str(cp["root_sha256"])
        except (ValueError, KeyError, TypeError):
            report.add(name, FAIL, "not a checkpoint", "checkpoint-bad-signature")
            continue
        if not verify_signature(pub, k.body, k.signature):
            report.add(
                name,
                FAIL,
                f"the checkpoint you hold (key {cp.get('key')}) is not signed by this log's key "
                f"{fingerprint(pub)}: the log was re-signed with another key (a fork)",
                "log-fork",
            )
            continue
        if size > len(leaves):
            report.add(
                name,
                FAIL,
                f"the checkpoint you hold covers {size} entries ({cp.get('time')}) but the log "
                f"now has {len(leaves)}: the newest entries were removed (a rollback)",
                "log-rollback",
            )
        elif merkle.root(leaves[:size]).hex() != root:
            report.add(
                name,
                FAIL,
                f"the log's first {size} entries no longer hash to the root of the checkpoint "
                f"you hold ({cp.get('time')}): the history was rewritten (a fork)",
                "log-fork",
            )
        else:
            report.add(
                name,
                OK,
                f"the log of {len(leaves)} entries extends the checkpoint you hold "
                f"({size} entries, {cp.get('time')})",
            )


def utc_seconds(value: Any) -> str | None:
    dt = _parse_time(value)
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _note_late_links(report: Report, name: str, clips: ClipTable, row: sqlite3.Row) -> None:
    """Say which of the row's waybills were linked after the clip was signed (a read decoded
    late): the index alone holds them, no signature vouches for them."""
    late = [r["waybill"] for r in clips.waybill_rows(row["id"]) if r["linked_utc"] is not None]
    if late:
        report.add(
            name,
            INFO,
            f"waybill(s) {', '.join(late)} linked in the index after the clip was signed (a "
            "read decoded late): not in the signed manifest, so not proven by it",
        )


def _derived_diffs(clips: ClipTable, row: sqlite3.Row, body: dict[str, Any]) -> list[str]:
    """Index fields that reach search results, bundles and summaries but are not copied
    verbatim from the manifest: the UTC times, the time zone, the manifest path, the waybills
    and the scan events of the clip must all follow from the signed manifest."""
    out = []
    start = _parse_time(body.get("started_at"))
    derived = {
        "started_utc": utc_seconds(body.get("started_at")),
        "ended_utc": utc_seconds(body.get("ended_at")),
        "tz": (start.strftime("%z") or "+0000") if start is not None else None,
        "manifest_path": body.get("manifest_path"),
    }
    for col, want in derived.items():
        if want is None:
            continue
        have = row[col]
        if col.endswith("_utc"):  # the manifest keeps milliseconds, the index microseconds
            a, b = _parse_time(have), _parse_time(want)  # ``want`` is UTC, as the index writes
            # a time without its offset is no instant (the index always has one): an edit
            same = (
                a is not None
                and a.tzinfo is not None
                and b is not None
                and (abs((a - b).total_seconds()) < 1e-3)
            )
        else:
            same = have == want
        if not same:
            out.append(f"{col} is {have!r} in the index but the signed manifest gives {want!r}")
    signed_wb = sorted(
        (str(w.get("waybill")), str(w.get("carrier")), round(float(w.get("t_clip_s") or 0), 3))
        for w in body.get("waybills") or []
        if isinstance(w, dict)
    )
    rows_wb = sorted(
        (r["waybill"], r["carrier"], round(float(r["t_clip_s"] or 0), 3))
        for r in clips.waybill_rows(row["id"])
        if r["linked_utc"] is None  # a late read linked after signing is in no manifest
    )
    if "waybills" in body and signed_wb != rows_wb:
        out.append(
            f"waybills are {[w[0] for w in rows_wb]} in the index but "
            f"{[w[0] for w in signed_wb]} in the signed manifest"
        )
    # the card decides which frame is the seal: it too follows from the manifest (one signed
    # before events named their card gets it by the rule index version 10 gave its rows)
    signed_ev = sorted(
        (str(e.get("kind")), str(e.get("text")), str(e.get("source")), str(e.get("wall")),
         event_card(e))
        for e in body.get("events") or []
        if isinstance(e, dict)
    )  # fmt: skip
    rows_ev = sorted(
        (r["kind"], r["text"], r["source"], r["wall"], r["card"])
        for r in clips.event_rows(row["id"])
    )
    if "events" in body and signed_ev != rows_ev:
        out.append(
            f"the clip's scan events in the index ({len(rows_ev)}) differ from the "
            f"{len(signed_ev)} in the signed manifest"
        )
    return out


def audit(
    cfg: Config,
    *,
    anchors: Anchors | None = None,
    check_timestamps: bool = True,
    bound: TimeBound | None = None,
    known: list[KnownCheckpoint] | None = None,
) -> Report:
    """Re-walk store, index and log; every disagreement is a failure with its own reason.

    The verdict is authentic only when the station key's certificate chains to a CA in
    ``anchors`` and every leaf has a token from a TSA in ``anchors`` within the time bound.
    """
    report = Report(subject=str(cfg.station.data_dir))
    with _open_store(cfg) as st:
        _audit(report, st, check_timestamps, anchors or Anchors(), bound or TimeBound())
        if known:
            entries = st.log.entries()
            live = [merkle.leaf_hash(e.manifest) for e in entries]
            retired = {r.old_key: r for r in st.log.rotations()}
            for k in known:
                try:
                    r = retired.get(json.loads(k.body).get("key"))
                except (ValueError, AttributeError):
                    r = None
                if r is None:
                    check_known_checkpoints(report, live, st.pub, [k])
                else:  # held from before a key rotation: that key's closed log must extend it
                    pub = load_public_pem(r.old_public_pem)
                    leaves = st.log.archived(r.old_key).leaf_hashes()
                    check_known_checkpoints(report, leaves, pub, [k])
    return report


def _audit(
    report: Report, st: _Store, check_timestamps: bool, anchors: Anchors, bound: TimeBound
) -> None:
    live = st.log.entries()
    report.facts.update(log_size=len(live), station_key=fingerprint(st.pub))
    certified = _check_key_cert(
        report, st.pub, st.key_cert, st.ca, anchors, where="the data directory"
    )
    rots = st.log.rotations()
    retired_keys = {r.old_key: load_public_pem(r.old_public_pem) for r in rots}
    _audit_rotations(report, st, rots, anchors)
    entries = []
    bodies: list[dict[str, Any] | None] = []
    for r in rots:
        arch = st.log.archived(r.old_key)
        part = arch.entries()
        bodies += _audit_log(
            report, st, retired_keys[r.old_key], part, arch.checkpoints(), certified,
            check_timestamps, anchors, bound, label=f"log {r.old_key[7:23]} ", final=r,
            retired={},
        )  # fmt: skip
        entries += part
    bodies += _audit_log(
        report, st, st.pub, live, st.log.checkpoints(), certified, check_timestamps, anchors,
        bound, label="", final=None, retired=retired_keys,
    )  # fmt: skip
    entries += live
    # index rows <-> log leaves <-> files on disk
    now = datetime.now(UTC)  # the moment of the audit, a deletion record's date is held to
    rows = st.clips.raw_rows()
    rows_by_path = {r["path"]: r for r in rows}
    logged_paths = set()
    files_ok = rows_ok = True
    retired = 0  # clips provably deleted by retention
    for e, body in zip(entries, bodies, strict=True):
        if body is None:
            continue
        rel = str(body.get("path"))
        logged_paths.add(rel)
        clip = st.data_dir / rel
        row = rows_by_path.get(rel)
        gone_by_retention = False
        if not clip.exists():
            by_retention, why = _retention_deletion(st, row, rel, body, now)
            if by_retention:
                report.add(f"clip {rel}", OK, why)
                retired += 1
                gone_by_retention = True  # its sidecar went too; the row and log keep the hash
            else:
                report.add(
                    f"clip {rel}",
                    FAIL,
                    f"missing: order {body.get('order_id')!r}, log entry "
                    f"{e.seq}, is not on disk (deleted)" + (f"; {why}" if why else ""),
                    "clip-missing",
                )
                files_ok = False
        else:
            digest, size = sha256_and_size(clip)
            if digest != body.get("sha256"):
                code, reason = classify_mismatch(clip, size, body)
                report.add(f"clip {rel}", FAIL, f"replaced: {reason}", code)
                files_ok = False
        if row is None:
            report.add(
                f"index {rel}",
                FAIL,
                f"row deleted: log entry {e.seq} (order "
                f"{body.get('order_id')!r}) has no row in the index",
                "index-row-deleted",
            )
            rows_ok = False
        else:
            diffs = _row_diffs(row, body) + _derived_diffs(st.clips, row, body)
            if diffs:
                report.add(
                    f"index {rel}",
                    FAIL,
                    f"row {row['id']} edited: " + "; ".join(diffs),
                    "index-row-edited",
                )
                rows_ok = False
            _note_late_links(report, f"index {rel}", st.clips, row)
        sidecar = st.data_dir / str(body.get("manifest_path", ""))
        if body.get("manifest_path") and sidecar.is_file():
            try:
                sm = manifest_mod.from_sidecar(json.loads(sidecar.read_text("utf-8")))
            except (ProofError, ValueError) as exc:
                report.add(f"manifest {sidecar.name}", FAIL, f"unreadable: {exc}", "sidecar-bad")
                continue
            if sm.canonical != e.manifest:
                if sm.body.get("path") != rel:
                    report.add(
                        f"manifest {sidecar.name}",
                        FAIL,
                        f"the sidecar of {rel} describes "
                        f"{sm.body.get('path')}: manifests were swapped",
                        "manifest-swapped",
                    )
                else:
                    report.add(
                        f"manifest {sidecar.name}",
                        FAIL,
                        "the sidecar differs from the signed manifest in the log: edited",
                        "sidecar-edited",
                    )
                files_ok = False
        elif body.get("manifest_path") and not gone_by_retention:
            report.add(
                f"manifest {rel}",
                WARN,
                "the JSON sidecar is missing (the log holds the signed manifest)",
            )
    for row in rows:
        if row["path"] not in logged_paths:
            report.add(
                f"index {row['path']}",
                FAIL,
                f"extra row: clip {row['id']} (order "
                f"{row['order_id']!r}) is indexed but not in the signed log",
                "index-row-extra",
            )
            rows_ok = False
    clips_dir = st.data_dir / "clips"
    if clips_dir.is_dir():
        for f in sorted(clips_dir.rglob("*.mp4")):
            rel = f.relative_to(st.data_dir).as_posix()
            if rel not in logged_paths and rel not in rows_by_path:
                report.add(
                    f"clip {rel}",
                    FAIL,
                    "extra file: neither indexed nor in the signed log",
                    "clip-extra",
                )
                files_ok = False
    _audit_one_order_per_second(report, [b for b in bodies if b is not None], rows_by_path)
    if entries and files_ok:
        report.add(
            "store",
            OK,
            f"all {len(entries) - retired} logged clips are on disk with their signed SHA-256"
            + (f" ({retired} more deleted by retention)" if retired else ""),
        )
    if entries and rows_ok:
        report.add("index", OK, f"all {len(rows)} index rows agree with the signed manifests")
    if not entries and not rows:
        report.add("store", OK, "empty store: nothing recorded yet")


def _audit_one_order_per_second(
    report: Report, bodies: list[dict[str, Any]], rows_by_path: dict[str, sqlite3.Row]
) -> None:
    """Each second of video belongs to one order: no two logged clips claim the same seconds
    (whatever their orders), and no recording (one SHA-256) is logged twice."""

    def clip_id(b: dict[str, Any]) -> object:
        row = rows_by_path.get(str(b.get("path")))
        return row["id"] if row is not None else "?"

    found = overlaps(bodies)
    for o in found:
        _add_overlap(report, f"clip {o.second.get('path')}", o, clip_id(o.first), clip_id(o.second))
    by_digest: dict[str, list[dict[str, Any]]] = {}
    for b in bodies:
        by_digest.setdefault(str(b.get("sha256")), []).append(b)
    twice = [same for same in by_digest.values() if len(same) > 1]
    for same in twice:
        report.add(
            f"clip {same[-1].get('path')}", FAIL, logged_twice(same, clip_id), "clip-logged-twice"
        )
    if bodies and not found and not twice:
        report.add(
            "clips",
            OK,
            f"no two of the {len(bodies)} logged clips claim the same seconds or the same bytes",
        )


def _add_overlap(
    report: Report, name: str, o: Overlap, first_id: object, second_id: object
) -> None:
    report.add(
        name, FAIL if o.synced else WARN, f"clips {first_id} and {second_id}: {o.text()}",
        "clip-overlap",
    )  # fmt: skip


def logged_twice(
    same: list[dict[str, Any]], clip_id: Callable[[dict[str, Any]], object], of: str = "clips"
) -> str:
    """Why the signed manifests ``same`` (one SHA-256) wrong a buyer: the one recording is
    logged more than once, under one order or several. ``clip_id`` names each one's clip
    (or, on the central site, its station: ``of``)."""
    orders = sorted({str(b.get("order_id")) for b in same})
    return (
        f"the same bytes (SHA-256 {str(same[0].get('sha256'))[:16]}...) are logged "
        f"{len(same)} times (log entries {[b.get('seq') for b in same]}, {of} "
        f"{[clip_id(b) for b in same]}) "
        + (f"under orders {orders}: one recording is one order's evidence" if len(orders) > 1
           else f"for order {orders[0]!r}: a station logs each recording once")
    )  # fmt: skip


def _final_size(r: Rotation) -> int:
    try:
        return int(json.loads(r.body)["tree_size"])
    except (ValueError, KeyError, TypeError):
        return -1


def _signed_by_retired(
    report: Report, where: str, data: bytes, sig: bytes, retired: dict[str, Ed25519PublicKey]
) -> None:
    for fp, pub in retired.items():
        if verify_signature(pub, data, sig):
            report.add(
                where,
                FAIL,
                f"signed by the retired key {fp[:23]}... after its log was closed",
                "log-after-rotation",
            )
            return


def _audit_rotations(report: Report, st: _Store, rots: list[Rotation], anchors: Anchors) -> None:
    """Each rotation statement: the final checkpoint of the retired key's log, signed by it and
    its successor; the chain of keys ends at the station's key; each retired key's archived
    certificate still chains to the anchors (a retired key's clips count only then)."""

    for j, r in enumerate(rots):
        name = f"rotation[{j}]"
        old, new = load_public_pem(r.old_public_pem), load_public_pem(r.new_public_pem)
        rc = check_rotation_link(r.body, r.signature_old, r.signature_new, old, new)
        nxt = rots[j + 1].old_key if j + 1 < len(rots) else fingerprint(st.pub)
        if rc is None or fingerprint(old) != r.old_key or fingerprint(new) != r.new_key:
            report.add(
                name,
                FAIL,
                f"the rotation from {r.old_key[:23]}... to {r.new_key[:23]}... is not a final "
                "checkpoint signed by both keys (edited, or signed by one only)",
                "rotation-unsigned",
            )
            continue
        if r.new_key != nxt:
            report.add(
                name,
                FAIL,
                f"the rotation names {r.new_key[:23]}... as successor but the next log is "
                f"signed by {nxt[:23]}...: a key took over without a rotation",
                "rotation-unsigned",
            )
            continue
        cert = _read_cert(RotationFiles.of(st.paths).retired(r.old_key) / "station-key.crt")
        scratch = Report(subject=name)
        _check_key_cert(scratch, old, cert, st.ca, anchors, where="the retired key's archive")
        _adopt(report, name, scratch)
        report.add(
            name,
            OK,
            f"log of {r.old_key[:23]}... closed at {rc['tree_size']} entries ({r.created_utc}); "
            f"final checkpoint signed by it and by its successor {r.new_key[:23]}...",
        )


def _audit_log(
    report: Report,
    st: _Store,
    pub: Ed25519PublicKey,
    entries: list[LogEntry],
    cps: list[Checkpoint],
    certified: str | None,
    check_timestamps: bool,
    anchors: Anchors,
    bound: TimeBound,
    *,
    label: str,
    final: Rotation | None,
    retired: dict[str, Ed25519PublicKey],
) -> list[dict[str, Any] | None]:
    """One log (the live one, or a retired key's closed one ending at ``final``): chained,
    signed leaves with their tokens, checkpoints that still hold. Returns the leaf bodies."""
    fp = fingerprint(pub)
    bodies: list[dict[str, Any] | None] = []
    prev = manifest_mod.GENESIS
    chain_ok = True
    unanchored: list[int] = []
    unstarted: list[int] = []  # clips whose start no TSA you pinned saw in time
    late: list[int] = []  # of those, clips a TSA saw only late (time-late)
    for i, e in enumerate(entries):
        where = f"{label}log[{i}]"
        m = manifest_mod.from_canonical(e.manifest, e.signature)
        body = m.body
        bodies.append(body)
        _check_station_name(report, where, body.get("station"), certified)
        _check_recorded_span(report, f"{where}.times", body)
        if e.seq != i:
            report.add(
                where, FAIL, f"log position {i} holds seq {e.seq}: a leaf is missing", "log-gap"
            )
        if body.get("seq") != e.seq:
            report.add(
                where,
                FAIL,
                f"leaf {e.seq} holds the manifest of entry {body.get('seq')} "
                f"({body.get('path')}): log leaves were reordered",
                "log-reordered",
            )
            chain_ok = False
        elif body.get("prev_manifest_sha256") != prev:
            report.add(
                where,
                FAIL,
                f"leaf {e.seq} does not chain to leaf {e.seq - 1} (previous-"
                "manifest hash differs): a leaf was replaced or removed",
                "log-leaf-replaced",
            )
            chain_ok = False
        if not verify_signature(pub, e.manifest, e.signature):
            report.add(
                where,
                FAIL,
                f"leaf {e.seq} ({body.get('path')}) is not signed by the station "
                f"key {fp[:23]}...: replaced or signed by another key",
                "log-bad-signature",
            )
            _signed_by_retired(report, where, e.manifest, e.signature, retired)
            chain_ok = False
        if (
            e.manifest_sha256 != hashlib.sha256(e.manifest).hexdigest()
            or e.leaf_hash != merkle.leaf_hash(e.manifest).hex()
            or e.clip_sha256 != body.get("sha256")
            or e.clip_path != body.get("path")
        ):
            report.add(
                where,
                FAIL,
                f"leaf {e.seq}'s index columns disagree with its signed manifest bytes",
                "log-row-edited",
            )
        prev = hashlib.sha256(e.manifest).hexdigest()
        if check_timestamps:
            scratch = Report(subject=where)
            anchored = _check_leaf_tokens(
                scratch, f"{where}.timestamp", st, e, body, anchors, bound
            )
            report.checks.extend(c for c in scratch.checks if c.status == FAIL)
            for c in scratch.facts.get("compare", []):
                report.compare(c)
            report.time_anchors.append(anchored)
            if not anchored:
                unanchored.append(e.seq)
                if any(c.code == "time-late" for c in scratch.checks):
                    late.append(e.seq)
            # the start too (its failures; the unanchored ones summed up below)
            start = start_statement_digest(body)
            scratch = Report(subject=where)
            _check_start(
                scratch, f"{where}.start", body,
                [t.token for t in st.log.timestamps_for(start) if t.token] if start else [],
                anchors, st.tsa_roots, bound,
            )  # fmt: skip
            report.checks.extend(c for c in scratch.checks if c.status == FAIL)
            if not any(c.status == OK for c in scratch.checks):
                unstarted.append(e.seq)
    if entries and chain_ok:
        report.add(
            "log.chain", OK, f"{len(entries)} signed manifests, each chained to the previous"
        )
    if check_timestamps and entries:
        if unanchored:
            report.add(
                "log.time",
                WARN,
                f"{len(unanchored)} of {len(entries)} manifests have no token from a TSA you "
                f"trust within {_human(bound.max_delay_s)} of their end (first: entry "
                f"{unanchored[0]})",
                "time-unanchored",
            )
            if late:
                report.add(
                    "log.time-late",
                    WARN,
                    f"{len(late)} of {len(entries)} manifests were timestamped by a TSA only "
                    f"later than {_human(bound.max_delay_s)} after their end (first: entry "
                    f"{late[0]}): each existed by then, its end is the station's word (a station "
                    "offline at its end, or a manifest signed later)",
                    "time-late",
                )
        else:
            report.add(
                "log.time",
                OK,
                f"all {len(entries)} manifests timestamped in time by a TSA you trust",
            )
        if unstarted:
            report.add(
                "log.start",
                WARN,
                f"the start of {len(unstarted)} of {len(entries)} clips is not timestamped "
                f"within {_human(bound.max_delay_s)} by a TSA you trust (no start statement: "
                "signed before packcam timestamped starts; or its token late or missing) "
                f"(first: entry {unstarted[0]})",
                "start-unanchored",
            )
        else:
            report.add(
                "log.start", OK, f"the start of all {len(entries)} clips timestamped in time"
            )
    # checkpoints: the roots the station signed (and a TSA may have timestamped) must still hold
    leaves = [merkle.leaf_hash(e.manifest) for e in entries]
    bad_cp = False
    for cp in cps:
        try:
            cpb = json.loads(cp.body)
        except ValueError:
            cpb = {}
        _check_station_name(report, f"{label}checkpoint[{cp.id}]", cpb.get("station"), certified)
        if check_timestamps:
            # every checkpoint token must hold; which TSA is trusted is the leaves' business
            scratch = Report(subject="checkpoint")
            _check_tokens(
                scratch,
                f"checkpoint[{cp.id}].timestamp",
                [t.token for t in st.log.timestamps_for(cp.sha256) if t.token],
                hashlib.sha256(cp.body).digest(),
                anchors,
                st.tsa_roots,
            )
            report.checks.extend(c for c in scratch.checks if c.status == FAIL)
        if (
            not verify_signature(pub, cp.body, cp.signature)
            or cpb.get("tree_size") != cp.tree_size
            or cpb.get("root_sha256") != cp.root_hash
        ):
            report.add(
                f"{label}checkpoint[{cp.id}]",
                FAIL,
                "checkpoint signature or fields do not verify",
                "checkpoint-bad-signature",
            )
            _signed_by_retired(
                report, f"{label}checkpoint[{cp.id}]", cp.body, cp.signature, retired
            )
            bad_cp = True
        elif final is not None and cp.tree_size > _final_size(final):
            report.add(
                f"{label}checkpoint[{cp.id}]",
                FAIL,
                f"the retired key signed a checkpoint of {cp.tree_size} entries after its final "
                f"one of {_final_size(final)}",
                "log-after-rotation",
            )
            bad_cp = True
        elif cp.tree_size > len(leaves):
            report.add(
                f"{label}checkpoint[{cp.id}]",
                FAIL,
                f"checkpoint {cp.id} covers {cp.tree_size} "
                f"entries but the log has {len(leaves)}: leaves were removed",
                "log-truncated",
            )
            bad_cp = True
        elif merkle.root(leaves[: cp.tree_size]).hex() != cp.root_hash:
            report.add(
                f"{label}checkpoint[{cp.id}]",
                FAIL,
                f"the first {cp.tree_size} entries no longer "
                f"hash to checkpoint {cp.id}'s signed root ({cp.created_utc}): a log leaf was"
                " replaced or reordered",
                "log-history-rewritten",
            )
            bad_cp = True
    if cps and not bad_cp:
        report.add("log.checkpoints", OK, f"{len(cps)} signed checkpoints match the log")
    elif not cps and entries:
        report.add("log.checkpoints", WARN, "no signed checkpoint yet")

    if final is not None and len(entries) != _final_size(final):
        more = len(entries) > _final_size(final)
        report.add(
            f"{label}final",
            FAIL,
            f"the closed log holds {len(entries)} entries but its final checkpoint says "
            f"{_final_size(final)}"
            + (": leaves were added after the rotation" if more else ": leaves were removed"),
            "log-after-rotation" if more else "log-truncated",
        )
    return bodies
