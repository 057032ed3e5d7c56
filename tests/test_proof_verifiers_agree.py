"""`packcam verify` and the bundle's own verify.py reach the same verdict and reason codes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    TsaServer,
    build_store,
    bundle_index,
    forge_log,
    read_zip,
    resign_bundle,
    rewrite_zip,
    store,
    tsa_ec,
    tsa_rsa,
    witness_doc,
)

from central.witness import cosign, sizes_statement
from station.proof import rotation, standalone_verify
from station.proof.bundle import export_order
from station.proof.ca import CompanyCa, cert_fingerprint, pem
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey
from station.proof.paths import ProofPaths
from station.proof.trust import build_anchors, parse_witness_pin
from station.proof.tsa import parse_reply, request_token
from station.proof.verify import (
    AUTHENTIC,
    FAIL,
    UNANCHORED,
    WARN,
    Report,
    WitnessRecordError,
    verify_bundle,
)

CN_STATION = "打包台1"  # openssl prints it escaped (\E6\89\93...) unless told otherwise
CODE_LINE = re.compile(r"^(OK|FAIL|WARN) .*\[([a-z0-9-]+)\]$")


@dataclass(frozen=True)
class Kind:
    """A bundle to verify and what its pins refer to."""

    path: Path
    ca: Path  # the company CA the honest verifier holds a copy of
    tsa: TsaServer  # the TSA that stamped it
    other_tsa: TsaServer  # a real TSA that did not


def _fp(pem_file: Path) -> str:
    return cert_fingerprint(x509.load_pem_x509_certificate(pem_file.read_bytes()))


@pytest.fixture(scope="module")
def kinds(
    store: Store,  # noqa: F811
    tsa_ec: TsaServer,  # noqa: F811
    tsa_rsa: TsaServer,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Kind]:
    tmp = tmp_path_factory.mktemp("agree")
    out: dict[str, Kind] = {}

    def add(name: str, st: Store, ca: Path | None = None) -> Path:
        path = export_order(st.cfg, "A1", tmp / f"{name}.zip").path
        other = tsa_rsa if st.tsa is tsa_ec else tsa_ec
        out[name] = Kind(path, ca or st.data / "proof-public/company-ca.crt", st.tsa, other)
        return path

    honest = add("honest", store)
    add("chinese", build_store(tmp / "cn", tsa_ec, ["A1"], station=CN_STATION))
    add(
        "chinese-mismatch",
        build_store(tmp / "cn2", tsa_ec, ["A1"], station="打包台2", cert_station=CN_STATION),
    )
    own = build_store(tmp / "rsa", tsa_rsa, ["A1"], c2pa=False)
    own_path = add("own-tsa", own)
    add("late", build_store(tmp / "late", tsa_ec, ["A1"], c2pa=False, ago=timedelta(hours=2)))
    ahead = build_store(tmp / "ahead", tsa_ec, ["A1"], c2pa=False, ago=-timedelta(minutes=5))
    add("clock-ahead", ahead)
    no_ca = store.copy(tmp / "no-ca")
    (no_ca.data / "proof-public/company-ca.crt").unlink()
    add("no-ca", no_ca, ca=store.data / "proof-public/company-ca.crt")
    assert bundle_index(out["no-ca"].path)["keys"]["company_ca"] is None

    # the key certified by the company CA, but for a web server, not for signing documents
    wrong_eku = store.copy(tmp / "wrong-eku")
    paths = ProofPaths.from_config(wrong_eku.cfg)
    ca = CompanyCa.load(store.data.parent / "ca")
    subject = x509.load_pem_x509_certificate(paths.key_cert.read_bytes()).subject
    station_key = StationKey.load(paths.key).public
    tls = ca._leaf(subject, station_key, [ExtendedKeyUsageOID.SERVER_AUTH], 30)
    paths.key_cert.write_bytes(pem(tls))
    add("wrong-eku", wrong_eku)

    idx = bundle_index(honest)
    clip = idx["clips"][0]["clip"]
    data = bytearray(read_zip(honest, clip))
    data[len(data) // 2] ^= 1
    tampered = rewrite_zip(honest, tmp / "tampered.zip", {clip: bytes(data)})
    out["tampered"] = replace(out["honest"], path=tampered)
    cut = rewrite_zip(honest, tmp / "truncated.zip", {clip: read_zip(honest, clip)[:-3000]})
    out["truncated"] = replace(out["honest"], path=cut)
    # the checkpoint's token in place of the first clip's: valid, but for other data
    swapped = {
        idx["clips"][0]["timestamps"][0]: read_zip(honest, idx["checkpoint"]["timestamps"][0])
    }
    other = rewrite_zip(honest, tmp / "other-data.zip", swapped)
    out["other-data"] = replace(out["honest"], path=other)
    for name, path in _forged(store, honest, tmp).items():
        out[name] = replace(out["honest"], path=path)
    padded = _padded_and_backdated(own, own_path, tmp)
    out["padded-backdated"] = replace(out["own-tsa"], path=padded)
    rotated = _rotated_store(store, tmp / "rot")
    path = add("rotated", rotated)
    for name, forged in _forged_rotation(rotated, path, tmp).items():
        out[name] = replace(out["rotated"], path=forged)
    return out


def _forged(st: Store, honest: Path, tmp: Path) -> dict[str, Path]:
    """Bundles altered by someone who holds the station key (and re-signs what they change),
    or by anyone (a signature or SHA256SUMS garbled): each caught by a check of its own."""
    key = StationKey.load(ProofPaths.from_config(st.cfg).key)
    idx = bundle_index(honest)
    cpi, clip0, clip1 = idx["checkpoint"], idx["clips"][0], idx["clips"][1]
    out: dict[str, Path] = {}

    def resign(name: str, changes: dict[str, bytes | None], bm: Any = None) -> None:
        out[name] = resign_bundle(honest, tmp / f"{name}.zip", key, changes, bm)

    def index(edit: Any) -> bytes:
        doc = bundle_index(honest)
        edit(doc)
        return json.dumps(doc).encode()

    def checkpoint(edit: Any) -> dict[str, bytes | None]:
        """The newest checkpoint edited and re-signed; its tokens (now over other bytes)
        dropped."""
        body = json.loads(read_zip(honest, cpi["body"]))
        edit(body)
        raw = canonical_json(body)
        changes: dict[str, bytes | None] = {cpi["body"]: raw, cpi["signature"]: key.sign(raw)}
        changes.update(dict.fromkeys(cpi["timestamps"]))
        changes["bundle.json"] = index(lambda d: d["checkpoint"].update(timestamps=[]))
        return changes

    resign("checkpoint-station", checkpoint(lambda b: b.update(station="Other station")))
    resign("checkpoint-key", checkpoint(lambda b: b.update(key="SHA256:" + "0" * 64)))
    resign("checkpoint-type", checkpoint(lambda b: b.update(type="packcam-something")))
    resign("bundle-manifest-station", {}, lambda bm: bm.update(station="Other station"))
    resign("bundle-manifest-type", {}, lambda bm: bm.update(type="packcam-something"))
    resign("bundle-manifest-key", {}, lambda bm: bm.update(station_key="SHA256:" + "0" * 64))
    out["bundle-manifest-bad-sig"] = rewrite_zip(
        honest, tmp / "bm-sig.zip", {"bundle/manifest.sig": b"\0" * 64}
    )
    sums = [  # the first clip's line with another digest
        ("0" * 64 + ln[64:]) if ln.endswith("  " + clip0["clip"]) else ln
        for ln in read_zip(honest, "SHA256SUMS").decode().splitlines()
    ]
    out["sums-wrong"] = rewrite_zip(
        honest, tmp / "sums.zip", {"SHA256SUMS": "\n".join(sums).encode() + b"\n"}
    )
    # anyone (SHA256SUMS is unsigned, a folder entry no member): a folder entry and a line of
    # SHA256SUMS for it; `packcam verify` hashed the folder entry (bundle-member-unsigned),
    # verify.py, which unpacks it to a folder, skipped the line (AUTHENTIC)
    listed = read_zip(honest, "SHA256SUMS") + b"0" * 64 + b"  frames/\n"
    out["sums-folder"] = rewrite_zip(
        honest, tmp / "sums-folder.zip", {"frames/": b"", "SHA256SUMS": listed}
    )
    out["not-a-zip"] = tmp / "not-a-zip.zip"
    out["not-a-zip"].write_bytes(b"PK\x03\x04 not a zip at all")
    pad = {f"pad/{i}": b"" for i in range(10_001)}  # more than a bundle ever holds
    out["too-many-members"] = resign_bundle(honest, tmp / "many.zip", key, pad)
    resign("index-format", {"bundle.json": index(lambda d: d.update(format="other"))})
    # the two clips' bytes swapped: each matches the other's signed manifest
    resign(
        "clips-swapped",
        {clip0["clip"]: read_zip(honest, clip1["clip"]),
         clip1["clip"]: read_zip(honest, clip0["clip"])},
    )  # fmt: skip
    resign(
        "manifest-missing", {"bundle.json": index(lambda d: d["clips"][0].update(manifest=None))}
    )

    def inclusion(**fields: int) -> bytes:
        return json.dumps({**json.loads(read_zip(honest, clip0["inclusion"])), **fields}).encode()

    resign("inclusion-index", {clip0["inclusion"]: inclusion(log_index=1)})
    resign("inclusion-size", {clip0["inclusion"]: inclusion(tree_size=2)})
    fc = clip0["first_checkpoint"]
    resign("first-checkpoint-sig", {fc["signature"]: key.sign(b"something else")})
    resign(
        "first-checkpoint-untimed",
        {**dict.fromkeys(fc["timestamps"]),
         "bundle.json": index(lambda d: d["clips"][0]["first_checkpoint"].update(timestamps=[]))},
    )  # fmt: skip
    # the company CA shipped after another CA's certificate in one file (an export ships one):
    # the first is the bundle's CA to both verifiers (verify.py took a pinned fingerprint of
    # either, AUTHENTIC, where `packcam verify` said cert-foreign-ca)
    other_ca = CompanyCa.create(tmp / "other-ca", "Other Co CA")
    shipped = idx["keys"]["company_ca"]
    resign("ca-second", {shipped: pem(other_ca.cert) + read_zip(honest, shipped)})
    resign("ca-garbage", {shipped: b"not a certificate\n"})
    resign("cert-garbage", {idx["keys"]["station_key_certificate"]: b"not a certificate\n"})
    # the station's public key file with a line of text before it, or another key after it:
    # openssl and `packcam verify` read the first key (AUTHENTIC); verify.py compared the
    # file's text with the certificate's key (cert-key-mismatch) or could not decode it
    pub = idx["keys"]["station_public_key"]
    own = read_zip(honest, pub)
    resign("key-text-before", {pub: b"the station's key:\n" + own})
    resign("key-two", {pub: own + StationKey.generate().public_pem()})
    # a key frame padded to 9 MiB past its JPEG's end (stored, not deflated): `packcam verify`
    # reads no key frame past 8 MiB (bundle-malformed), verify.py read none and said AUTHENTIC
    frame = clip0["frames"][0]["file"]
    resign("frame-9mib", {frame: read_zip(honest, frame) + os.urandom(9 << 20)})
    # that key frame under a name of 300 characters (bundle.json naming it): it unpacks to no
    # file (NAME_MAX), so verify.py could not unpack the bundle; `packcam verify` read the zip
    long = "frames/" + "x" * 300 + ".jpg"

    def renamed(d: dict[str, Any]) -> None:
        d["clips"][0]["frames"][0]["file"] = long

    resign(
        "name-too-long",
        {frame: None, long: read_zip(honest, frame), "bundle.json": index(renamed)},
    )
    # a second token on the first clip, from a TSA of the key holder's own that leaves out the
    # ESS signing-certificate attribute RFC 3161 demands: openssl refuses it (tsa-invalid),
    # `packcam verify` took it as valid, not pinned, and the pinned one made it AUTHENTIC
    forger = TsaServer(tmp / "forger-tsa", "ec")
    try:
        digest = hashlib.sha256(read_zip(honest, clip0["manifest"])).digest()
        token = _without_ess(request_token(forger.url, digest)[0], forger.key)
        # one naming no certificate: `packcam verify` stopped with an IndexError (no verdict)
        empty = _without_ess(request_token(forger.url, digest)[0], forger.key, empty=True)
    finally:
        forger.stop()
    extra = clip0["timestamps"][0] + ".forger.tst"
    for name, tok in (("token-no-ess", token), ("token-ess-empty", empty)):
        resign(
            name,
            {extra: tok,
             "bundle.json": index(lambda d: d["clips"][0]["timestamps"].append(extra))},
        )  # fmt: skip
    # the first clip's token replaced by one the same TSA gave over the manifest's SHA-512
    # (any TSA grants one to whoever asks): a station asks for SHA-256 only
    (tmp / "manifest.json").write_bytes(read_zip(honest, clip0["manifest"]))
    query = subprocess.run(
        ["openssl", "ts", "-query", "-data", str(tmp / "manifest.json"), "-sha512", "-cert"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    resign("token-sha512", {clip0["timestamps"][0]: parse_reply(st.tsa.reply(query))})
    url = st.tsa.url
    out["manifest-path"] = forge_log(
        honest, tmp / "m-path.zip", key, url, lambda b: b.update(path="clips/other.mp4")
    )
    out["manifest-key"] = forge_log(
        honest, tmp / "m-key.zip", key, url, lambda b: b.update(station_key="SHA256:" + "0" * 64)
    )
    out["manifest-not-canonical"] = forge_log(
        honest, tmp / "m-form.zip", key, url, lambda b: None,
        lambda b: json.dumps(b, sort_keys=True, indent=1).encode(),
    )  # fmt: skip
    return out


def _without_ess(token: bytes, key_file: Path, *, empty: bool = False) -> bytes:
    """``token`` without its ESS signing-certificate attribute (``empty``: with one naming no
    certificate), signed again with the TSA's EC key ``key_file`` (what a TSA of one's own
    can sign)."""
    ci = cms.ContentInfo.load(token)
    si = ci["content"]["signer_infos"][0]
    kept = [a for a in si["signed_attrs"] if not a["type"].native.startswith("signing_cert")]
    if empty:
        ess = next(a for a in si["signed_attrs"] if a["type"].native.startswith("signing_cert"))
        ess["values"][0]["certs"] = []
        kept.append(ess)
    si["signed_attrs"] = cms.CMSAttributes(kept)
    signed = b"\x31" + si["signed_attrs"].dump(force=True)[1:]  # as a SET OF
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    si["signature"] = key.sign(signed, ec.ECDSA(hashes.SHA256()))
    return bytes(ci.dump(force=True))


def _padded_and_backdated(st: Store, bundle: Path, tmp: Path) -> Path:
    """244a3ab's forgery (the key holder moves a clip's start back a year, inflates its
    duration to match, leaves out the start statement, the key frames and the C2PA claim, in
    a log of his own timestamped now), its clip padded inside the moov past the 64 MiB
    verify.py reads of one box: the frames and how they play are the recording's, and
    verify.py, reading no length, held the duration to nothing (AUTHENTIC) while `packcam
    verify`, demuxing it, said time-inconsistent."""
    key = StationKey.load(ProofPaths.from_config(st.cfg).key)
    idx = bundle_index(bundle)
    entry = idx["clips"][0]
    data = read_zip(bundle, entry["clip"])
    at = data.index(b"moov") - 4
    size = int.from_bytes(data[at : at + 4], "big")
    pad = 65 << 20
    free = (pad + 8).to_bytes(4, "big") + b"free" + os.urandom(pad)  # stored, not deflated
    moov = (size + len(free)).to_bytes(4, "big") + data[at + 4 : at + size] + free
    clip = data[:at] + moov + data[at + size :]
    changes: dict[str, bytes | None] = {entry["clip"]: clip}
    changes.update((f["file"], None) for f in entry["frames"])
    entry["frames"] = []
    changes["bundle.json"] = json.dumps(idx).encode()
    staged = rewrite_zip(bundle, tmp / "padded-staged.zip", changes)

    def back_date(body: dict[str, Any]) -> None:
        moved = datetime.fromisoformat(body["started_at"]) - timedelta(days=365)
        span = datetime.fromisoformat(body["ended_at"]) - moved
        body.pop("start_statement", None)
        body.update(
            sha256=hashlib.sha256(clip).hexdigest(),
            size=len(clip),
            started_at=moved.isoformat(timespec="milliseconds"),
            duration_s=round(span.total_seconds() + 0.1, 3),
        )

    forged = forge_log(staged, tmp / "padded-backdated.zip", key, st.tsa.url, back_date)
    staged.unlink()
    return forged


def _rotated_store(st: Store, root: Path) -> Store:
    """A copy of ``st`` whose key was rotated (certified successor; the old key kept, as a
    thief who copied it would hold it)."""
    rot = st.copy(root)
    nxt = rotation.prepare(ProofPaths.from_config(rot.cfg))
    issued = CompanyCa.load(st.data.parent / "ca").issue_station(rot.cfg.station.name, nxt.public)
    (root.parent / "succ.crt").write_bytes(issued.key_cert_pem)
    rotation.rotate(rot.cfg, cert=root.parent / "succ.crt", keep_old_key=True)
    return rot


def _forged_rotation(st: Store, bundle: Path, tmp: Path) -> dict[str, Path]:
    """A rotated bundle whose rotation statement names another station (re-signed by both
    keys), or carries a token for other data."""
    paths = ProofPaths.from_config(st.cfg)
    new = StationKey.load(paths.key)
    old = StationKey.load(sorted((paths.key.parent / rotation.RETIRED_DIR).glob("*.pem"))[0])
    idx = bundle_index(bundle)
    link, cpi = idx["rotations"][0], idx["checkpoint"]
    body = json.loads(read_zip(bundle, link["checkpoint"]))
    body["station"] = "Other station"
    raw = canonical_json(body)
    changes: dict[str, bytes | None] = {
        link["checkpoint"]: raw,
        link["signature_old"]: old.sign(raw),
        link["signature_new"]: new.sign(raw),
        cpi["body"]: raw,  # the bundle's checkpoint is its log's final one
        cpi["signature"]: old.sign(raw),
        **dict.fromkeys(link["timestamps"] + cpi["timestamps"]),
    }
    link["timestamps"] = cpi["timestamps"] = []
    changes["bundle.json"] = json.dumps(idx).encode()
    out = {"rotation-station": resign_bundle(bundle, tmp / "rot-station.zip", new, changes)}
    idx = bundle_index(bundle)
    token = read_zip(bundle, idx["clips"][0]["timestamps"][0])
    out["rotation-token"] = resign_bundle(
        bundle, tmp / "rot-token.zip", new, {idx["rotations"][0]["timestamps"][0]: token}
    )
    # an earlier checkpoint of the retired key's log in place of its final one
    fc, cpi = idx["clips"][0]["first_checkpoint"], idx["checkpoint"]
    earlier = {
        cpi["body"]: read_zip(bundle, fc["body"]),
        cpi["signature"]: read_zip(bundle, fc["signature"]),
        **{
            t: read_zip(bundle, u) for t, u in zip(cpi["timestamps"], fc["timestamps"], strict=True)
        },
    }
    out["rotation-earlier-checkpoint"] = resign_bundle(bundle, tmp / "rot-cp.zip", new, earlier)
    return out


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A company CA that certified none of these stations."""
    d = tmp_path_factory.mktemp("foreign")
    ca = CompanyCa.create(d / "ca", "Foreign Co CA")
    (d / "foreign.pem").write_bytes(pem(ca.cert))
    return d / "foreign.pem"


def _pins(kind: Kind, pins: str, foreign: Path) -> tuple[list[str], list[str]]:
    """(--ca values, --tsa-ca values) of a named pin set."""
    return {
        "none": ([], []),
        "files": ([str(kind.ca)], [str(kind.tsa.root)]),
        "fingerprints": ([_fp(kind.ca)], [_fp(kind.tsa.root)]),
        "ca-only": ([str(kind.ca)], []),
        "foreign-ca-file": ([str(foreign)], [str(kind.tsa.root)]),
        "foreign-ca-fingerprint": ([_fp(foreign)], [str(kind.tsa.root)]),
        "other-tsa": ([str(kind.ca)], [str(kind.other_tsa.root)]),
    }[pins]


def _standalone(
    bundle: Path, tmp: Path, ca: list[str], tsa: list[str], *more: str
) -> tuple[int, str]:
    """The stranger's way: verify.py out of the bundle, python -I, openssl on PATH only."""
    script = tmp / "verify.py"
    if zipfile.is_zipfile(bundle):
        script.write_bytes(read_zip(bundle, "verify.py"))
    else:  # nothing to take it from: the one every bundle ships
        script.write_bytes(Path(standalone_verify.__file__).read_bytes())
    args = [a for v in ca for a in ("--ca", v)] + [a for v in tsa for a in ("--tsa-ca", v)]
    r = subprocess.run(
        [sys.executable, "-I", str(script), str(bundle), *args, *more],
        cwd=tmp,
        capture_output=True,
        encoding="utf-8",  # what Python prints in the C locale it runs in here
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp)},
        check=False,
        timeout=120,
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout


# `packcam verify` reads the video to say how a clip differs; verify.py, which reads none,
# says that it does
HOW_CLIP_DIFFERS = {"clip-truncated", "clip-remuxed", "clip-reencoded", "clip-replaced"}


def _verdict(exit_code: int, failed: set[str], other: set[str]) -> str:
    """Exit code and reason codes, but those of the checks only `packcam verify` makes: it
    reads the video (C2PA; how a changed clip differs)."""

    def codes(found: set[str]) -> str:
        found = {"clip-altered" if c in HOW_CLIP_DIFFERS else c for c in found}
        return " ".join(sorted(c for c in found if not c.startswith("c2pa-")))

    return f"exit {exit_code}; failed: {codes(failed)}; noted: {codes(other)}"


def _assert_agree(report: Report, rc: int, out: str, exit_code: int) -> None:
    """`packcam verify`'s report and verify.py's exit and output give the same verdict and
    codes, and the exit code expected."""
    found = [CODE_LINE.match(line) for line in out.splitlines()]
    standalone = _verdict(
        rc,
        {m.group(2) for m in found if m and m.group(1) == "FAIL"},
        {m.group(2) for m in found if m and m.group(1) != "FAIL"},
    )
    failed = {c.code for c in report.checks if c.code and c.status == FAIL}
    packcam = _verdict(report.exit_code, failed, report.reasons() - failed)
    assert packcam == standalone, "\n".join([*report.lines(), "---- verify.py:", out])
    assert rc == exit_code, out


ALL_PINS = [
    "none",
    "files",
    "fingerprints",
    "ca-only",
    "foreign-ca-file",
    "foreign-ca-fingerprint",
    "other-tsa",
]
# exit code both must give: 0 AUTHENTIC, 1 NOT AUTHENTIC, 4 INTACT BUT NOT ANCHORED
ANCHORED = {"none": 4, "files": 0, "fingerprints": 0, "ca-only": 4, "other-tsa": 4}
HONEST = {**ANCHORED, "foreign-ca-file": 1, "foreign-ca-fingerprint": 1}
CASES = (
    [("honest", p, HONEST[p]) for p in ALL_PINS]
    + [("chinese", p, HONEST[p]) for p in ALL_PINS]
    + [("own-tsa", p, HONEST[p]) for p in ALL_PINS]
    # no CA in the bundle: a pinned fingerprint has nothing to match
    + [("no-ca", p, {**HONEST, "fingerprints": 1}[p]) for p in ALL_PINS]
    + [("tampered", p, 1) for p in ALL_PINS]
    + [("truncated", p, 1) for p in ("none", "files")]
    # a CA-issued certificate for another purpose vouches for nothing: shipped or pinned
    + [("wrong-eku", p, 1) for p in ALL_PINS]
    + [("chinese-mismatch", p, 1) for p in ("none", "files", "fingerprints")]
    # tokens two hours after the recorded end (a station offline, or a manifest signed later):
    # time-late, the time not anchored by them, so never AUTHENTIC, with every pin (it was 1,
    # time-out-of-bounds, which only ever hit stations that keep their late tokens)
    + [("late", p, 4) for p in ("none", "files", "fingerprints", "other-tsa")]
    + [("clock-ahead", p, HONEST[p]) for p in ("none", "files")]
    + [("other-data", p, 1) for p in ("none", "files", "other-tsa")]
    + [("rotated", p, HONEST[p]) for p in ("none", "files")]
    # altered and re-signed with the station key (or garbled): NOT AUTHENTIC, pinned or not;
    # with nothing pinned too where that changes what each verifier knows (the station name
    # of a shipped certificate, what the verdict would be without the failure)
    + [
        (k, p, 1)
        for k in (
            "checkpoint-station",
            "checkpoint-type",
            "bundle-manifest-station",
            "bundle-manifest-type",
            "bundle-manifest-key",
            "bundle-manifest-bad-sig",
            "manifest-path",
            "rotation-station",
            "rotation-token",
        )
        for p in ("none", "files")
    ]
    + [
        (k, "files", 1)
        for k in (
            "checkpoint-key",
            "sums-wrong",
            "not-a-zip",
            "too-many-members",
            "index-format",
            "clips-swapped",
            "manifest-missing",
            "inclusion-index",
            "inclusion-size",
            "first-checkpoint-sig",
            "manifest-key",
            "manifest-not-canonical",
            "rotation-earlier-checkpoint",
        )
    ]
    # a token over the manifest's SHA-512: valid, but not over what the station signed and
    # hashed (verify.py took any digest openssl knows and said AUTHENTIC)
    + [("token-sha512", p, 1) for p in ("none", "files")]
    # with the company CA pinned as a file, the shipped one is not read for trust
    + [("ca-second", p, {"files": 0}.get(p, 1)) for p in ("none", "files", "fingerprints")]
    + [(k, p, 1) for k in ("ca-garbage", "cert-garbage") for p in ("none", "fingerprints")]
    + [("frame-9mib", p, 1) for p in ("none", "files")]
    + [("name-too-long", p, 1) for p in ("none", "files")]
    + [(k, p, 1) for k in ("token-no-ess", "token-ess-empty") for p in ("none", "files")]
    + [("sums-folder", p, HONEST[p]) for p in ("none", "files")]
    + [(k, p, HONEST[p]) for k in ("key-text-before", "key-two") for p in ("none", "files")]
    # a clip verify.py could not measure (a box past 64 MiB): its signed duration holds to
    # nothing, in either verifier (verify.py said AUTHENTIC, `packcam verify` demuxed it)
    + [("padded-backdated", p, 1) for p in ("none", "files")]
    # a clip's own checkpoint with no token: nothing lost (the clip's tokens hold the time)
    + [("first-checkpoint-untimed", p, HONEST[p]) for p in ("none", "files")]
)


@pytest.mark.parametrize(
    ("kind", "pins", "exit_code"), CASES, ids=[f"{k}-{p}" for k, p, _ in CASES]
)
def test_standalone_and_packcam_verify_agree(
    kinds: dict[str, Kind],
    foreign_ca: Path,
    tmp_path: Path,
    kind: str,
    pins: str,
    exit_code: int,
) -> None:
    k = kinds[kind]
    ca, tsa = _pins(k, pins, foreign_ca)
    report = verify_bundle(
        k.path, anchors=build_anchors(ca, tsa, use_default=False), tmp_dir=tmp_path
    )
    rc, out = _standalone(k.path, tmp_path, ca, tsa)
    _assert_agree(report, rc, out, exit_code)


# A witness file (GET /witness/<station>) cosigned by the central site's witness key, or by a
# key of the seller's own, against the witness key the stranger pinned (its fingerprint as
# GET /witness prints it, or its PEM), or none: with a pin, any other key's file is refused
# as the verifier's own input (exit 3, no verdict on the bundle).
WITNESS_CASES = [
    (doc, pin, 3 if doc == "forged" and pin != "none" else 0)
    for doc in ("central", "forged")
    for pin in ("none", "fingerprint", "pem")
]


@pytest.mark.parametrize(
    ("doc", "pin", "exit_code"), WITNESS_CASES, ids=[f"{d}-{p}" for d, p, _ in WITNESS_CASES]
)
def test_both_verifiers_hold_a_witness_file_to_the_witness_key_pinned(
    kinds: dict[str, Kind], tmp_path: Path, doc: str, pin: str, exit_code: int
) -> None:
    k = kinds["honest"]
    central, seller = StationKey.generate(), StationKey.generate()
    wdoc = witness_doc(k.path, central if doc == "central" else seller)
    saved = tmp_path / "witness.json"
    saved.write_text(json.dumps(wdoc))
    pem = tmp_path / "witness.pub.pem"
    pem.write_bytes(central.public_pem())
    value = {"none": None, "fingerprint": central.fingerprint, "pem": str(pem)}[pin]
    ca, tsa = _pins(k, "files", k.ca)

    def verify() -> Report:
        return verify_bundle(
            k.path,
            anchors=build_anchors(ca, tsa, use_default=False),
            tmp_dir=tmp_path,
            witness=wdoc,
            witness_pin=parse_witness_pin(value) if value else None,
        )

    more = ["--witness", str(saved), *(["--witness-key", value] if value else [])]
    rc, out = _standalone(k.path, tmp_path, ca, tsa, *more)
    if exit_code == 3:
        with pytest.raises(WitnessRecordError, match=seller.fingerprint) as refused:
            verify()
        assert refused.value.code == "witness-untrusted"
        assert rc == 3 and "RESULT:" not in out, out
        return
    report = verify()
    _assert_agree(report, rc, out, exit_code)
    said = " ".join(c.reason for c in report.checks if c.name == "witness")
    line = " ".join(ln for ln in out.splitlines() if " witness:" in ln or " witness " in ln)
    if value is None:  # today's behaviour, and the output says nothing was pinned
        assert "not pinned" in said and "not pinned" in line, out
    else:
        assert "pinned witness key" in said and "pinned witness key" in line, out


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
@pytest.mark.parametrize("fault", ["flipped-cosignature", "swapped-checkpoint"])
def test_a_witness_record_that_fails_its_own_signatures_is_the_verifiers_input_error(
    kinds: dict[str, Kind], tmp_path: Path, fault: str, pinned: bool
) -> None:
    """The central witness's genuine record of an honest bundle, one byte of an unrelated
    cosignature changed by whoever passes it on (another station's, or the checkpoint under
    the bundle's swapped): the record is no longer one the witness signed, which
    says nothing of the bundle. Both verifiers refuse the record (exit 3, "fetch it again"),
    never NOT AUTHENTIC; the untouched record passes."""
    k = kinds["honest"]
    central = StationKey.generate()
    wdoc = witness_doc(k.path, central)
    ca, tsa = _pins(k, "files", k.ca)
    pin = ["--witness-key", central.fingerprint] if pinned else []

    def both(
        doc: dict[str, Any],
    ) -> tuple[Report | WitnessRecordError, subprocess.CompletedProcess[str]]:
        saved = tmp_path / "witness.json"
        saved.write_text(json.dumps(doc))
        script = tmp_path / "verify.py"
        script.write_bytes(read_zip(k.path, "verify.py"))
        args = [a for v in ca for a in ("--ca", v)] + [a for v in tsa for a in ("--tsa-ca", v)]
        r = subprocess.run(
            [sys.executable, "-I", str(script), str(k.path), *args, "--witness", str(saved), *pin],
            cwd=tmp_path, capture_output=True, encoding="utf-8", check=False, timeout=120,
            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
        )  # fmt: skip
        try:
            report: Report | WitnessRecordError = verify_bundle(
                k.path, anchors=build_anchors(ca, tsa, use_default=False), tmp_dir=tmp_path,
                witness=doc, witness_pin=central.fingerprint if pinned else None,
            )  # fmt: skip
        except WitnessRecordError as exc:
            report = exc
        return report, r

    report, r = both(wdoc)
    assert isinstance(report, Report) and report.verdict == AUTHENTIC, report
    assert r.returncode == 0 and "OK   witness" in r.stdout, r.stdout + r.stderr
    cp = wdoc["checkpoints"][0]
    body = base64.b64decode(cp["body_b64"])
    other = dict(cp)  # the witness's word on another station's log at the same size
    cosigned, cosignature = cosign(
        central, "another-station", body, int(cp["tree_size"]), str(cp["root_sha256"])
    )
    other.update(
        cosigned_b64=base64.b64encode(cosigned).decode(),
        cosignature_b64=base64.b64encode(cosignature).decode(),
    )
    assert isinstance(both({**wdoc, "checkpoints": [cp, other]})[0], Report)  # genuine: fine
    if fault == "flipped-cosignature":
        sig = bytearray(cosignature)
        sig[7] ^= 0x01
        other["cosignature_b64"] = base64.b64encode(bytes(sig)).decode()
    else:  # the checkpoint under the bundle's own cosignature (only it is looked at)
        cp = {**cp, "body_b64": base64.b64encode(body + b" ").decode()}
    report, r = both({**wdoc, "checkpoints": [cp, other]})
    assert isinstance(report, WitnessRecordError), report.lines()
    assert report.code == "witness-invalid" and "fetch it again" in str(report), report
    assert r.returncode == 3 and "RESULT:" not in r.stdout, r.stdout + r.stderr
    assert "not one the witness signed" in r.stderr and "fetch it again" in r.stderr, r.stderr
    assert "witness-invalid" in r.stderr and "Traceback" not in r.stderr, r.stderr


def _witness_record(bundle: Path, key: StationKey, record: str) -> dict[str, Any]:
    """A witness record (GET /witness/<station>, the witness ``key``) against the bundle's
    checkpoint: "cosigned" holds it; "newest-only" the station's newer checkpoints only (the
    plain record, long after the export); "never" that, asked for the bundle's size, which the
    witness never cosigned; "forked" another root cosigned at the bundle's size."""
    doc = witness_doc(bundle, key)
    cp = json.loads(base64.b64decode(doc["checkpoints"][0]["body_b64"]))
    if record == "cosigned":
        return doc
    size = int(cp["tree_size"])
    other = (
        {**cp, "root_sha256": "ab" * 32}
        if record == "forked"
        else {**cp, "tree_size": size + 40, "root_sha256": "cd" * 32}
    )
    body = canonical_json(other)
    cosigned, cosig = cosign(key, str(cp["station"]), body, other["tree_size"],
                             other["root_sha256"])  # fmt: skip
    doc["checkpoints"] = [
        {
            "tree_size": other["tree_size"],
            "root_sha256": other["root_sha256"],
            "body_b64": base64.b64encode(body).decode(),
            "signature_b64": "",
            "cosignature_b64": base64.b64encode(cosig).decode(),
            "cosigned_b64": base64.b64encode(cosigned).decode(),
        }
    ]
    if record == "never":  # asked for every size up to the bundle's (its clips' checkpoints)
        asked = list(range(size, 0, -1))
        raw, sig = sizes_statement(key, str(cp["station"]), asked, [])  # none at those sizes
        doc.update(
            requested_sizes=asked,
            never_witnessed_sizes=asked,
            sizes_statement_b64=base64.b64encode(raw).decode(),
            sizes_signature_b64=base64.b64encode(sig).decode(),
        )
    return doc


# A witness record (GET /witness/<station>) that holds the bundle's checkpoint, one that lists
# only the station's newer ones (a plain record long after the export: both say which record
# to fetch, /witness/<station>?tree_size=N), one asked for the bundle's size that the witness
# never cosigned, and one cosigning another root at that size (a fork at an old size).
RECORD_CASES = [
    ("honest", "cosigned", 0),
    ("honest", "newest-only", 0),
    ("chinese", "newest-only", 0),
    ("honest", "never", 0),
    ("honest", "forked", 1),
]


@pytest.mark.parametrize(
    ("kind", "record", "exit_code"), RECORD_CASES, ids=[f"{k}-{r}" for k, r, _ in RECORD_CASES]
)
def test_both_verifiers_say_which_witness_record_holds_the_bundle_s_checkpoint(
    kinds: dict[str, Kind], tmp_path: Path, kind: str, record: str, exit_code: int
) -> None:
    k = kinds[kind]
    central = StationKey.generate()
    doc = _witness_record(k.path, central, record)
    saved = tmp_path / "witness.json"
    saved.write_text(json.dumps(doc))
    ca, tsa = _pins(k, "files", k.ca)
    report = verify_bundle(
        k.path,
        anchors=build_anchors(ca, tsa, use_default=False),
        tmp_dir=tmp_path,
        witness=doc,
        witness_pin=central.fingerprint,
    )
    rc, out = _standalone(
        k.path, tmp_path, ca, tsa, "--witness", str(saved), "--witness-key", central.fingerprint
    )
    _assert_agree(report, rc, out, exit_code)
    said = " ".join(c.reason for c in report.checks if c.name == "witness")
    line = " ".join(ln for ln in out.splitlines() if " witness:" in ln)
    size = report.facts["checkpoint"]["tree_size"]
    station = quote(report.facts["checkpoint"]["station"], safe="")
    fetch = f"fetch /witness/{station}?tree_size={size}"  # the bundle's checkpoint first
    never = f"never cosigned a checkpoint of this log at {size}"
    codes = {c.code for c in report.checks if c.name == "witness"}
    if record == "newest-only":
        assert codes == {"checkpoint-unwitnessed"} and fetch in said and fetch in line, out
    elif record == "never":
        assert never in said and never in line and "fetch" not in said + line, out
    elif record == "forked":
        assert codes == {"log-fork"} and "[log-fork]" in line, out
    else:
        assert codes == {""} and line.startswith("OK"), out


def test_a_cut_clip_is_named_by_packcam_and_altered_for_verify_py(
    kinds: dict[str, Kind], tmp_path: Path
) -> None:
    """What the agreement test reads as one code: `packcam verify` reads the video and says
    how the clip changed, verify.py that it did."""
    k = kinds["truncated"]
    report = verify_bundle(k.path, anchors=build_anchors(use_default=False), tmp_dir=tmp_path)
    assert "clip-truncated" in report.codes(), report.lines()
    rc, out = _standalone(k.path, tmp_path, [], [])
    assert rc == 1 and "[clip-altered]" in out, out


@pytest.mark.parametrize(
    "x", [0.1, 1.0, -0.0, 2.5, 1e21, 1e20, 1e16, 1e-7, 1e-6, -1.5e-6, 123e-20, 5e-324,
          1.7976931348623157e308, 123456789.125, 2.0**53, 2.0**53 + 2, 1 / 3]
)  # fmt: skip
def test_verify_py_reads_canonical_json_as_the_station_writes_it(x: float) -> None:
    """verify.py's RFC 8785 form (keys in UTF-16 order, numbers as JavaScript prints them)
    is the station's, byte for byte: an honest manifest is never "not canonical"."""
    doc = {"n": x, "é": [x, -x, '打包台1\n"', None, True, 3], "\U0001f600": 1, "\ufb01": 2}
    assert standalone_verify.canonical(doc).encode("utf-8") == canonical_json(doc)


def test_a_chinese_station_name_is_compared_unescaped(
    kinds: dict[str, Kind], tmp_path: Path
) -> None:
    """verify.py: the honest Chinese-named bundle is AUTHENTIC, and the one whose manifests
    name 打包台2 for a key certified as 打包台1 fails on exactly that."""
    k = kinds["chinese"]
    rc, out = _standalone(k.path, tmp_path, [str(k.ca)], [str(k.tsa.root)])
    assert rc == 0 and f"certified as '{CN_STATION}'" in out, out
    k = kinds["chinese-mismatch"]
    rc, out = _standalone(k.path, tmp_path, [str(k.ca)], [str(k.tsa.root)])
    assert rc == 1 and "[station-name-mismatch]" in out, out
    assert "manifest says station '打包台2', certificate '打包台1'" in out, out


@pytest.mark.parametrize("cn", [CN_STATION, "a,b+c\\d =#x ", " #lead", "station-01", "é\x01"])
def test_subject_cn_reads_openssls_escaped_rfc2253_output(tmp_path: Path, cn: str) -> None:
    """openssl escapes RFC 2253 specials, leading and trailing spaces, each byte of a non-ASCII
    character and control characters; verify.py gets back the CN `packcam verify` reads."""
    ca = CompanyCa.create(tmp_path / "ca", "Org, CN=not this")
    key = StationKey.load_or_create(tmp_path / "key.pem")[0]
    (tmp_path / "c.pem").write_bytes(ca.issue_station(cn, key.public).key_cert_pem)
    out = subprocess.run(
        ["openssl", "x509", "-in", str(tmp_path / "c.pem"), "-noout", "-subject", "-nameopt",
         "RFC2253"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.isascii()
    assert standalone_verify.subject_cn(out) == cn


def test_c2pa_signer_with_no_ca_at_all_is_unanchored_not_invalid(
    kinds: dict[str, Kind], foreign_ca: Path, tmp_path: Path
) -> None:
    """The C2PA signer of an honest bundle that ships no company CA, nothing pinned, chains to
    nothing, like its station key: not anchored, not a failure. Against a CA you pin that did
    not issue it, it is c2pa-untrusted."""
    path = kinds["no-ca"].path
    report = verify_bundle(path, anchors=build_anchors(use_default=False), tmp_dir=tmp_path)
    assert report.verdict == UNANCHORED, report.lines()
    assert any(c.name.endswith("c2pa") and c.status == WARN for c in report.checks)
    pinned = build_anchors([str(foreign_ca)], use_default=False)
    codes = verify_bundle(path, anchors=pinned, tmp_dir=tmp_path).codes()
    assert codes == {"cert-foreign-ca", "c2pa-untrusted"}, codes


@dataclass(frozen=True)
class Expiring:
    path: Path  # a bundle stamped by a TSA whose certificate expires at ``expires``
    ca: list[str]
    roots: list[str]
    expires: datetime


@pytest.fixture(scope="module", autouse=True)
def expiring(tmp_path_factory: pytest.TempPathFactory) -> Expiring:
    """Made before this module's first test (autouse), so that the TSA certificate has expired
    by its last one, which then needs no sleep of its own."""
    tmp = tmp_path_factory.mktemp("expiring")
    valid = timedelta(seconds=12)
    expires = datetime.now(UTC) + valid
    tsa = TsaServer(tmp / "tsa", "ec", cert_valid=valid)
    try:
        st = build_store(tmp / "s", tsa, ["A1"], c2pa=False)
    finally:
        tsa.stop()
    assert datetime.now(UTC) < expires - timedelta(seconds=1), "the tokens came too late"
    path = export_order(st.cfg, "A1", tmp / "A1.zip").path
    ca, roots = [str(st.data / "proof-public/company-ca.crt")], [str(tsa.root)]
    return Expiring(path, ca, roots, expires)


def test_a_tsa_certificate_that_expired_after_it_signed_still_counts(
    expiring: Expiring, tmp_path: Path
) -> None:
    """An honest bundle outlives its TSA's certificate: the token is judged as of when it was
    signed (packcam verify validates the TSA's chain at genTime; verify.py asks openssl for
    the same with -attime), so both still say AUTHENTIC once that certificate has expired."""
    time.sleep(max(0.0, (expiring.expires - datetime.now(UTC)).total_seconds()) + 1.5)
    ca, roots = expiring.ca, expiring.roots
    report = verify_bundle(expiring.path, anchors=build_anchors(ca, roots, use_default=False))
    assert report.verdict == AUTHENTIC, report.lines()
    rc, out = _standalone(expiring.path, tmp_path, ca, roots)
    assert rc == 0 and "RESULT: AUTHENTIC" in out, out


def test_a_clips_own_checkpoint_that_fails_its_signature_is_held_to_no_witness(
    kinds: dict[str, Kind], tmp_path: Path
) -> None:
    """The first clip's own checkpoint given another root (anyone can: its signature then
    fails), and a witness record that cosigned the real one at that size: both verifiers fail
    the signature; verify.py also held the unsigned root to the witness's and said log-fork,
    where `packcam verify` holds only signed checkpoints to it."""
    k = kinds["honest"]
    idx = bundle_index(k.path)
    fc, cpi = idx["clips"][0]["first_checkpoint"], idx["checkpoint"]
    central = StationKey.generate()
    doc = witness_doc(
        k.path, central, [(cpi["body"], cpi["signature"]), (fc["body"], fc["signature"])]
    )
    body = json.loads(read_zip(k.path, fc["body"]))
    body["root_sha256"] = "ab" * 32
    forged = rewrite_zip(k.path, tmp_path / "fc-root.zip", {fc["body"]: canonical_json(body)})
    saved = tmp_path / "witness.json"
    saved.write_text(json.dumps(doc))
    ca, tsa = _pins(k, "files", k.ca)
    report = verify_bundle(
        forged,
        anchors=build_anchors(ca, tsa, use_default=False),
        tmp_dir=tmp_path,
        witness=doc,
        witness_pin=central.fingerprint,
    )
    rc, out = _standalone(
        forged, tmp_path, ca, tsa, "--witness", str(saved), "--witness-key", central.fingerprint
    )
    _assert_agree(report, rc, out, 1)
    assert "checkpoint-bad-signature" in report.codes(), report.lines()
