"""Verify a bundle with no data dir, a bare clip against the index and C2PA, and audit a store."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from station.config import Config
from station.files import sha256_and_size
from station.ledger import INDEX_NAME
from station.proof import ProofError, merkle
from station.proof import manifest as manifest_mod
from station.proof.c2pa_embed import C2paInfo, c2pa_available, read_c2pa, unavailable_reason
from station.proof.ca import cert_fingerprint, check_issued_by, pem
from station.proof.canonical import canonical_json
from station.proof.keys import (
    fingerprint,
    load_public_pem,
    station_public_key,
    verify_signature,
)
from station.proof.log import CHECKPOINT_TYPE, LogEntry, ProofLog
from station.proof.paths import ProofPaths
from station.proof.tsa import TokenInvalid, load_pem_certs, verify_token

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "packcam-evidence-bundle"
MAX_BUNDLE_MEMBER = 8 << 30  # a 10-minute 1080p clip is well under 1 GiB
MAX_BUNDLE_MEMBERS = 10_000
OK, FAIL, WARN, INFO = "ok", "fail", "warn", "info"


@dataclass(frozen=True)
class Check:
    """One verification step: ``status`` ok/fail/warn/info, a reason a person can act on."""

    name: str
    status: str
    reason: str
    code: str = ""  # stable machine word for a failure kind (clip-truncated, log-reordered, ...)


@dataclass
class Report:
    """All checks of one verification. Authentic means: no failure and at least one success."""

    subject: str
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, status: str, reason: str, code: str = "") -> Check:
        c = Check(name, status, reason, code)
        self.checks.append(c)
        return c

    @property
    def ok(self) -> bool:
        return any(c.status == OK for c in self.checks) and not self.failures

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def codes(self) -> set[str]:
        return {c.code for c in self.failures if c.code}

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "authentic": self.ok,
            "facts": self.facts,
            "checks": [asdict(c) for c in self.checks],
        }

    def lines(self) -> list[str]:
        out = [
            f"{c.status.upper():4} {c.name}: {c.reason}" + (f" [{c.code}]" if c.code else "")
            for c in self.checks
        ]
        out.append(
            f"RESULT {self.subject}: "
            + ("AUTHENTIC" if self.ok else f"NOT AUTHENTIC ({len(self.failures)} failed checks)")
        )
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
    pos = moofs = boxes = 0
    with path.open("rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(16)
            if len(head) < 8:
                return Mp4Facts(False, moofs, boxes)
            box_size, kind = struct.unpack(">I4s", head[:8])
            if box_size == 1:
                if len(head) < 16:
                    return Mp4Facts(False, moofs, boxes)
                box_size = struct.unpack(">Q", head[8:16])[0]
            elif box_size == 0:
                box_size = size - pos
            if box_size < 8 or pos + box_size > size:
                return Mp4Facts(False, moofs, boxes)
            boxes += 1
            moofs += kind == b"moof"
            pos += box_size
    return Mp4Facts(boxes > 0, moofs, boxes)


def count_video_packets(path: Path) -> int | None:
    """Frames in the first video stream by demuxing (no decoding); None if not a video."""
    try:
        import av

        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except Exception:  # any unreadable file simply is "not a video" here
        return None


def classify_mismatch(
    path: Path, size: int, recorded_size: int, recorded_frames: int | None
) -> tuple[str, str]:
    """Why a file differs from the recorded clip: (code, reason)."""
    if size == recorded_size:
        return (
            "clip-altered",
            f"same size as recorded ({size} bytes) but different SHA-256: bytes were changed "
            "in place",
        )
    facts = mp4_facts(path)
    if size < recorded_size and (
        not facts.complete or (recorded_frames and facts.moofs and facts.moofs < recorded_frames)
    ):
        how = "ends inside an MP4 box" if not facts.complete else f"has {facts.moofs} fragments"
        return (
            "clip-truncated",
            f"file is {recorded_size - size} bytes shorter than recorded and {how}: truncated",
        )
    frames = count_video_packets(path) if facts.complete else None
    if frames is not None:
        return (
            "clip-reencoded",
            f"a complete video of {frames} frames and {size} bytes, but not the recorded bytes "
            f"({recorded_frames} frames, {recorded_size} bytes): re-encoded or replaced",
        )
    return "clip-replaced", f"not the recorded clip ({size} bytes vs {recorded_size}), not a video"


# ---- shared checks -------------------------------------------------------------------------


def _check_key_cert(
    report: Report,
    station_pub: Ed25519PublicKey,
    key_cert: x509.Certificate | None,
    ca: x509.Certificate | None,
    trusted_ca: list[x509.Certificate] | None,
) -> None:
    fp = fingerprint(station_pub)
    report.facts["station_key"] = fp
    if trusted_ca:
        report.facts["trusted_ca"] = [cert_fingerprint(c) for c in trusted_ca]
    if key_cert is None:
        report.add(
            "station-key.certificate",
            WARN,
            f"the station key {fp} is not certified by a company CA; compare this fingerprint "
            "with the one the seller published",
        )
        return
    if key_cert.public_key() != station_pub:
        report.add(
            "station-key.certificate",
            FAIL,
            "the station certificate is for another key than the one that signs the manifests",
            "cert-key-mismatch",
        )
        return
    anchors = list(trusted_ca or ([] if ca is None else [ca]))
    if not anchors:
        report.add("station-key.certificate", WARN, "no company CA certificate to check against")
        return
    reasons = [r for r in (check_issued_by(key_cert, a) for a in anchors) if r]
    if len(reasons) == len(anchors):
        code = "cert-foreign-ca"
        report.add(
            "station-key.certificate",
            FAIL,
            f"certificate from a foreign CA: {reasons[0]}"
            + (" (the CA you trust)" if trusted_ca else " (the CA in the bundle)"),
            code,
        )
        return
    report.facts["station"] = key_cert.subject.rfc4514_string()
    if trusted_ca:
        report.add(
            "station-key.certificate",
            OK,
            f"station key {fp[:23]}... certified by the trusted company CA "
            f"{cert_fingerprint(anchors[0])[:23]}...",
        )
    else:
        assert ca is not None
        report.add(
            "station-key.certificate",
            OK,
            f"station key certified by the bundled company CA {cert_fingerprint(ca)}",
        )
        report.add(
            "company-ca.pinned",
            WARN,
            f"the company CA {cert_fingerprint(ca)} was not pinned: compare it with the "
            "fingerprint the seller published, or pass --ca",
        )


def _check_tokens(
    report: Report,
    name: str,
    tokens: list[bytes],
    digest: bytes,
    roots: list[x509.Certificate],
    not_before: datetime | None = None,
) -> datetime | None:
    if not tokens:
        report.add(name, WARN, "no RFC 3161 timestamp token (TSA not configured or offline)")
        return None
    earliest: datetime | None = None
    for i, tok in enumerate(tokens):
        try:
            info = verify_token(tok, digest, roots)
        except TokenInvalid as exc:
            code = "tsa-other-data" if "other data" in str(exc) else "tsa-invalid"
            report.add(f"{name}[{i}]", FAIL, str(exc), code)
            continue
        when = info.gen_time.isoformat()
        if not info.chain_checked:
            report.add(
                f"{name}[{i}]",
                WARN,
                f"token valid and signed at {when} by {info.tsa_subject}, but no trusted TSA root "
                "was given to check its certificate (pass --tsa-ca)",
            )
        else:
            report.add(f"{name}[{i}]", OK, f"timestamped at {when} by {info.tsa_subject}")
        if not_before and info.gen_time < not_before:
            report.add(
                f"{name}[{i}].time",
                WARN,
                f"the TSA time {when} is before the clip's recorded end {not_before.isoformat()}"
                ": the station clock was ahead",
            )
        earliest = info.gen_time if earliest is None else min(earliest, info.gen_time)
    return earliest


def _check_c2pa(
    report: Report,
    clip: Path,
    body: dict[str, Any] | None,
    trust_pem: bytes | None,
    name: str = "c2pa",
) -> C2paInfo | None:
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
    if info.failures or info.state == "Invalid":
        report.add(
            name,
            FAIL,
            "embedded C2PA manifest does not validate: "
            + "; ".join(info.failures or [info.error or "invalid"]),
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
    report.add(
        name,
        OK if trust_pem else WARN,
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


# ---- bundles -------------------------------------------------------------------------------


class _Bundle:
    """Read-only access to a bundle zip with size limits; member names are never paths."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        infos = zf.infolist()
        if len(infos) > MAX_BUNDLE_MEMBERS:
            raise ProofError("bundle has too many files")
        self.names = {i.filename: i for i in infos}
        for i in infos:
            if i.file_size > MAX_BUNDLE_MEMBER:
                raise ProofError(f"bundle member {i.filename!r} is too large")

    def has(self, name: str | None) -> bool:
        return bool(name) and name in self.names

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        info = self.names.get(name)
        if info is None:
            raise ProofError(f"bundle lacks {name}")
        if info.file_size > limit:
            raise ProofError(f"bundle member {name} is too large")
        return self.zf.read(info)

    def extract(self, name: str, dest: Path) -> Path:
        info = self.names.get(name)
        if info is None:
            raise ProofError(f"bundle lacks {name}")
        with self.zf.open(info) as src, dest.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        return dest


def verify_bundle(
    path: Path,
    *,
    trusted_ca: list[x509.Certificate] | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
    tmp_dir: Path | None = None,
) -> Report:
    """Check an evidence bundle using only what is inside it (and the anchors you pass).

    ``tmp_dir``: where its clips are unpacked to be hashed (default: the system's temp dir).
    """
    report = Report(subject=path.name)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        report.add("bundle", FAIL, f"not a readable zip file: {exc}", "bundle-unreadable")
        return report
    with zf, tempfile.TemporaryDirectory(prefix="packcam-verify-", dir=tmp_dir) as tmp:
        try:
            _verify_bundle(report, _Bundle(zf), Path(tmp), trusted_ca, tsa_roots)
        except (ProofError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            report.add("bundle", FAIL, f"malformed bundle: {exc}", "bundle-malformed")
    return report


def _verify_bundle(
    report: Report,
    b: _Bundle,
    tmp: Path,
    trusted_ca: list[x509.Certificate] | None,
    tsa_roots: list[x509.Certificate] | None,
) -> None:
    index = json.loads(b.read("bundle.json"))
    if index.get("format") != BUNDLE_FORMAT:
        raise ProofError("bundle.json is not a packcam evidence bundle index")
    report.facts["order_id"] = index.get("order_id")
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
    _check_key_cert(report, pub, key_cert, ca, trusted_ca)
    roots = tsa_roots
    if roots is None and b.has(keys.get("tsa_roots")):
        roots = load_pem_certs(b.read(keys["tsa_roots"]))
        report.add(
            "tsa.roots",
            INFO,
            "TSA roots taken from the bundle; pass --tsa-ca to use "
            "the TSA's published root instead",
        )
    roots = roots or []

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
    cp_root = bytes.fromhex(cp["root_sha256"])
    cp_size = int(cp["tree_size"])
    _check_tokens(
        report,
        "checkpoint.timestamp",
        [b.read(n) for n in cpi.get("timestamps", [])],
        hashlib.sha256(cp_bytes).digest(),
        roots,
    )

    manifests: dict[str, dict[str, Any]] = {}
    for entry in index["clips"]:
        if entry.get("manifest") and b.has(entry["manifest"]):
            manifests[entry["clip"]] = json.loads(b.read(entry["manifest"]))
    trust_pem = b"".join(pem(c) for c in (trusted_ca or ([ca] if ca else [])))
    clips_facts = []
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
        # the clip's bytes against the signed manifest
        clip = b.extract(entry["clip"], tmp / f"clip{n}.mp4")
        digest, size = sha256_and_size(clip)
        if digest == body.get("sha256") and size == body.get("size"):
            report.add(f"{pre} sha256", OK, f"SHA-256 {digest} and size {size} match the manifest")
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
                code, reason = classify_mismatch(
                    clip, size, int(body.get("size", -1)), body.get("frame_count")
                )
                report.add(f"{pre} sha256", FAIL, reason, code)
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
        ended = _parse_time(body.get("ended_at"))
        when = _check_tokens(
            report,
            f"{pre} timestamp",
            [b.read(t) for t in entry.get("timestamps", [])],
            hashlib.sha256(m.canonical).digest(),
            roots,
            ended.astimezone(UTC) if ended else None,
        )
        _check_c2pa(report, clip, body, trust_pem or None, f"{pre} c2pa")
        clips_facts.append(
            {
                "file": name,
                "order_id": body.get("order_id"),
                "waybill": body.get("waybill"),
                "station": body.get("station"),
                "started_at": body.get("started_at"),
                "ended_at": body.get("ended_at"),
                "sha256": body.get("sha256"),
                "log_index": seq,
                "timestamp": when.isoformat() if when else None,
                "clock_synced": body.get("clock_synced"),
            }
        )
        if body.get("clock_synced") is False:
            report.add(
                f"{pre} clock",
                WARN,
                "the station clock was not NTP-synchronised when "
                "this clip was signed: rely on the TSA time",
            )
    report.facts["clips"] = clips_facts


# ---- a data directory ----------------------------------------------------------------------


@dataclass
class _Store:
    """The pieces of a station's data dir the verifier and the auditor read."""

    cfg: Config
    data_dir: Path
    paths: ProofPaths
    pub: Ed25519PublicKey
    log: ProofLog
    conn: sqlite3.Connection
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
            conn=plog.conn,
            key_cert=cert(paths.key_cert),
            ca=cert(paths.ca_cert),
            tsa_roots=load_pem_certs(paths.tsa_ca.read_bytes())
            if paths.tsa_ca and paths.tsa_ca.exists()
            else [],
        )
    finally:
        plog.close()


def _clip_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute("SELECT * FROM clips ORDER BY id").fetchall()


def verify_clip(
    path: Path,
    cfg: Config | None,
    *,
    trusted_ca: list[x509.Certificate] | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
) -> Report:
    """A bare clip: is it a recorded one (index + log), and what does its C2PA manifest say?"""
    report = Report(subject=path.name)
    digest, size = sha256_and_size(path)
    report.facts.update(sha256=digest, size=size)
    if cfg is None:
        report.add("index", WARN, "no data dir given: only the embedded C2PA manifest is checked")
        info = _check_c2pa(report, path, None, b"".join(pem(c) for c in trusted_ca or []) or None)
        if info is not None and info.assertion:
            report.facts.update(info.assertion)
        if not trusted_ca:
            report.add(
                "c2pa.trust",
                FAIL,
                "no company CA given (--ca) to trust the C2PA signer",
                "c2pa-untrusted",
            )
        return report
    with _open_store(cfg) as st:
        anchors = trusted_ca or ([st.ca] if st.ca else None)
        _check_key_cert(report, st.pub, st.key_cert, st.ca, anchors)
        roots = tsa_roots if tsa_roots is not None else st.tsa_roots
        entries = st.log.entries_for_clip(digest)
        trust_pem = b"".join(pem(c) for c in anchors or []) or None
        if not entries:
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
        row = st.conn.execute(
            "SELECT * FROM clips WHERE sha256 = ? ORDER BY id DESC LIMIT 1", (digest,)
        ).fetchone()
        if row is None:
            report.add(
                "index.row",
                FAIL,
                "the log has this clip but the index has no row for it",
                "index-row-deleted",
            )
        else:
            diffs = _row_diffs(row, body)
            if diffs:
                report.add(
                    "index.row", FAIL, "index row edited: " + "; ".join(diffs), "index-row-edited"
                )
            else:
                report.add("index.row", OK, f"index row {row['id']} agrees with the manifest")
        size_now = st.log.size()
        root = st.log.root(size_now)
        proof = st.log.inclusion_proof(e.seq, size_now)
        if merkle.verify_inclusion(e.seq, size_now, merkle.leaf_hash(e.manifest), proof, root):
            report.add("log.inclusion", OK, f"included in the log of {size_now} entries")
        cp = st.log.latest_checkpoint()
        if cp is not None and cp.tree_size > e.seq:
            ok_root = st.log.root(cp.tree_size).hex() == cp.root_hash
            ok_sig = verify_signature(st.pub, cp.body, cp.signature)
            if ok_root and ok_sig:
                report.add(
                    "log.checkpoint",
                    OK,
                    f"covered by signed checkpoint {cp.id} "
                    f"({cp.tree_size} entries, {cp.created_utc})",
                )
            else:
                report.add(
                    "log.checkpoint",
                    FAIL,
                    "the latest checkpoint does not match the log (run `packcam audit`)",
                    "log-checkpoint-mismatch",
                )
        else:
            report.add("log.checkpoint", WARN, "no signed checkpoint covers this entry yet")
        ended = _parse_time(body.get("ended_at"))
        _check_tokens(
            report,
            "timestamp",
            [t.token for t in st.log.timestamps_for(e.manifest_sha256) if t.token],
            bytes.fromhex(e.manifest_sha256),
            roots,
            ended.astimezone(UTC) if ended else None,
        )
        _check_c2pa(report, path, body, trust_pem)
        report.facts.update(
            {k: body.get(k) for k in ("order_id", "waybill", "station", "started_at", "ended_at")}
        )
        report.facts["log_index"] = e.seq
    return report


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
    code, reason = classify_mismatch(path, size, int(body["size"]), body.get("frame_count"))
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
    st: _Store, row: sqlite3.Row | None, rel: str, body: dict[str, Any]
) -> tuple[bool, str]:
    """Was the missing clip ``rel`` deleted by retention, provably? (ok, what was found)

    Retention keeps the index row (with ``deleted_utc``) and a deletion record signed by the
    station key (``station/retention.py``). It counts only when that signature verifies, the
    record names these bytes, the clip was older than the policy's minimum age, and its order
    was not on legal hold at that moment. Anything less is reported as a missing clip.
    """
    if row is None or not row["deleted_utc"]:  # the column exists: migrations ran
        return False, ""
    rec = st.conn.execute(
        "SELECT record, signature FROM retention_deletions WHERE clip_id = ?", (row["id"],)
    ).fetchone()
    if rec is None or rec["signature"] is None:
        return False, "the index marks it deleted by retention, but there is no signed record"
    record = bytes(rec["record"])
    if not verify_signature(st.pub, record, bytes(rec["signature"])):
        return False, "its retention deletion record is not signed by the station key"
    try:
        d = json.loads(record)
        deleted = datetime.fromisoformat(d["deleted_utc"])
        started = datetime.fromisoformat(d["started_utc"])
        min_age = float(d["min_age_days"])
    except (ValueError, KeyError, TypeError):
        return False, "its retention deletion record is unreadable"
    if d.get("path") != rel or d.get("sha256") != body.get("sha256"):
        return False, "its retention deletion record names other bytes"
    claimed = _parse_time(body.get("started_at"))
    if claimed is None or abs((claimed - started).total_seconds()) > 1:
        return False, "its retention deletion record gives another start time"
    if (deleted - started).total_seconds() < min_age * 86400 - 1:
        return False, f"it was deleted younger than the minimum age of {min_age:g} days"
    hold = st.conn.execute(
        "SELECT action FROM legal_hold_log WHERE order_id = ? AND at_utc <= ?"
        " ORDER BY id DESC LIMIT 1",
        (body.get("order_id"), d["deleted_utc"]),
    ).fetchone()
    if hold is not None and hold["action"] == "hold":
        return False, "it was deleted while its order was on legal hold"
    return True, (
        f"deleted by retention on {d['deleted_utc']} ({d.get('reason', '')}; signed record, "
        f"older than {min_age:g} days, not on hold)"
    )


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


def audit(cfg: Config, *, check_timestamps: bool = True) -> Report:
    """Re-walk store, index and log; every disagreement is a failure with its own reason."""
    report = Report(subject=str(cfg.station.data_dir))
    with _open_store(cfg) as st:
        _audit(report, st, check_timestamps)
    return report


def _audit(report: Report, st: _Store, check_timestamps: bool) -> None:
    entries = st.log.entries()
    fp = fingerprint(st.pub)
    report.facts.update(log_size=len(entries), station_key=fp)
    bodies: list[dict[str, Any] | None] = []
    prev = manifest_mod.GENESIS
    chain_ok = True
    for i, e in enumerate(entries):
        where = f"log[{i}]"
        m = manifest_mod.from_canonical(e.manifest, e.signature)
        body = m.body
        bodies.append(body)
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
        if not verify_signature(st.pub, e.manifest, e.signature):
            report.add(
                where,
                FAIL,
                f"leaf {e.seq} ({body.get('path')}) is not signed by the station "
                f"key {fp[:23]}...: replaced or signed by another key",
                "log-bad-signature",
            )
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
            for t in st.log.timestamps_for(e.manifest_sha256):
                if t.token is None:
                    continue
                try:
                    verify_token(t.token, bytes.fromhex(e.manifest_sha256), st.tsa_roots)
                except TokenInvalid as exc:
                    report.add(f"{where}.timestamp", FAIL, f"leaf {e.seq}: {exc}", "tsa-invalid")
    if entries and chain_ok:
        report.add(
            "log.chain", OK, f"{len(entries)} signed manifests, each chained to the previous"
        )
    # checkpoints: the roots the station signed (and a TSA may have timestamped) must still hold
    leaves = [merkle.leaf_hash(e.manifest) for e in entries]
    cps = st.log.checkpoints()
    bad_cp = False
    for cp in cps:
        try:
            cpb = json.loads(cp.body)
        except ValueError:
            cpb = {}
        if (
            not verify_signature(st.pub, cp.body, cp.signature)
            or cpb.get("tree_size") != cp.tree_size
            or cpb.get("root_sha256") != cp.root_hash
        ):
            report.add(
                f"checkpoint[{cp.id}]",
                FAIL,
                "checkpoint signature or fields do not verify",
                "checkpoint-bad-signature",
            )
            bad_cp = True
        elif cp.tree_size > len(leaves):
            report.add(
                f"checkpoint[{cp.id}]",
                FAIL,
                f"checkpoint {cp.id} covers {cp.tree_size} "
                f"entries but the log has {len(leaves)}: leaves were removed",
                "log-truncated",
            )
            bad_cp = True
        elif merkle.root(leaves[: cp.tree_size]).hex() != cp.root_hash:
            report.add(
                f"checkpoint[{cp.id}]",
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

    # index rows <-> log leaves <-> files on disk
    rows = _clip_rows(st.conn)
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
            by_retention, why = _retention_deletion(st, row, rel, body)
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
                code, reason = classify_mismatch(
                    clip, size, int(body["size"]), body.get("frame_count")
                )
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
            diffs = _row_diffs(row, body)
            if diffs:
                report.add(
                    f"index {rel}",
                    FAIL,
                    f"row {row['id']} edited: " + "; ".join(diffs),
                    "index-row-edited",
                )
                rows_ok = False
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
    for r in rows:
        if r["path"] not in logged_paths:
            report.add(
                f"index {r['path']}",
                FAIL,
                f"extra row: clip {r['id']} (order "
                f"{r['order_id']!r}) is indexed but not in the signed log",
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
