"""Forgeries and tampering against the verdict model: each attack gets its reason and exit code.

An honest verifier pins the company CA and the TSA root (``Store.anchors()``). Nothing shipped
inside the evidence vouches for itself: a forger with their own key, CA and TSA never gets 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sqlite3
import warnings
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import av
import pytest
from cryptography import x509
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    TsaServer,
    build_store,
    bundle_index,
    forge_log,
    read_zip,
    rewrite_zip,
    store,
    tsa_ec,
    tsa_rsa,
)

from station import cli as station_cli
from station.proof import merkle
from station.proof.bundle import export_order
from station.proof.ca import CompanyCa, cert_fingerprint
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey
from station.proof.standalone_verify import judge_end
from station.proof.trust import Anchors, build_anchors
from station.proof.tsa import request_token
from station.proof.verify import (
    BUNDLE_MANIFEST,
    BUNDLE_MANIFEST_SIG,
    Report,
    TimeBound,
    audit,
    load_known_checkpoint,
    verify_bundle,
    verify_clip,
)
from station.store.ledger import INDEX_NAME

AUTHENTIC, UNANCHORED, TAMPERED = "authentic", "intact-unanchored", "tampered"


def _clips(data: Path) -> list[Path]:
    return sorted(data.glob("clips/**/*.mp4"))


def _tampered(report: Report, code: str) -> None:
    assert report.verdict == TAMPERED and report.exit_code == 1, report.lines()
    assert code in report.codes(), (code, report.lines())


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    rc = station_cli.main([*argv, "--json", "--no-default-trust"])
    return rc, json.loads(capsys.readouterr().out)


def _pins(st: Store) -> list[str]:
    return ["--ca", str(st.data / "proof-public/company-ca.crt"), "--tsa-ca", str(st.tsa.root)]


@pytest.fixture(scope="module")
def bundle(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """Order A1 (two clips) exported on the station: its bundle manifest is signed."""
    path = tmp_path_factory.mktemp("forgery") / "A1.zip"
    export_order(store.cfg, "A1", path)
    return path


@pytest.fixture(scope="module")
def station_key(store: Store) -> StationKey:  # noqa: F811
    return StationKey.load(store.data / "proof/station-key.pem")


def _resign(bundle: Path, dst: Path, key: StationKey, changes: dict[str, bytes | None]) -> Path:
    """What an insider with the station key does: change members, then re-sign the bundle
    manifest over the new contents (keeping its order_clips)."""
    tmp = rewrite_zip(bundle, dst.with_name("tmp-" + dst.name), changes)
    bm = json.loads(read_zip(bundle, BUNDLE_MANIFEST))
    with zipfile.ZipFile(tmp) as z:
        bm["members"] = {
            n: hashlib.sha256(z.read(n)).hexdigest()
            for n in z.namelist()
            if n not in (BUNDLE_MANIFEST, BUNDLE_MANIFEST_SIG, "SHA256SUMS")
        }
    body = canonical_json(bm)
    out = rewrite_zip(
        tmp, dst, {BUNDLE_MANIFEST: body, BUNDLE_MANIFEST_SIG: key.sign(body), "SHA256SUMS": None}
    )
    tmp.unlink()
    return out


# ---- the honest bundle ---------------------------------------------------------------------


def test_honest_bundle_is_authentic_only_with_anchors(store: Store, bundle: Path) -> None:  # noqa: F811
    pinned = verify_bundle(bundle, anchors=store.anchors())
    assert pinned.verdict == AUTHENTIC and pinned.exit_code == 0, pinned.lines()
    assert not [c for c in pinned.checks if c.status == "warn"], pinned.lines()
    bare = verify_bundle(bundle)
    assert bare.verdict == UNANCHORED and bare.exit_code == 4, bare.lines()
    assert {"signer-unanchored", "time-unanchored"} <= bare.reasons()
    ca_fp = cert_fingerprint(
        x509.load_pem_x509_certificate((store.data / "proof-public/company-ca.crt").read_bytes())
    )
    assert any(ca_fp in c for c in bare.facts["compare"])  # what to compare, by fingerprint
    assert "INTACT BUT NOT ANCHORED" in bare.lines()[-1]


def test_pinning_by_fingerprint_and_trust_files(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
) -> None:
    ca = x509.load_pem_x509_certificate((store.data / "proof-public/company-ca.crt").read_bytes())
    tsa = x509.load_pem_x509_certificate(store.tsa.root.read_bytes())
    # fingerprints as openssl prints them ("AB:CD:..") or as packcam does ("SHA256:abcd..")
    openssl_style = ":".join(f"{b:02X}" for b in bytes.fromhex(cert_fingerprint(ca)[7:]))
    anchors = build_anchors([openssl_style], [cert_fingerprint(tsa)], None, use_default=False)
    assert verify_bundle(bundle, anchors=anchors).verdict == AUTHENTIC
    trust = tmp_path / "trust"
    shutil.copy(store.tsa.root, tmp_path / "tsa-root.pem")
    trust.write_text(f"# the seller's CA, read to me on the phone\nca {cert_fingerprint(ca)}\n"
                     "tsa tsa-root.pem\n")  # fmt: skip
    assert verify_bundle(bundle, anchors=build_anchors(trust_file=str(trust))).authentic
    # the per-user default location
    xdg = tmp_path / "xdg"
    (xdg / "packcam").mkdir(parents=True)
    shutil.copy(trust, xdg / "packcam/trust")
    shutil.copy(store.tsa.root, xdg / "packcam/tsa-root.pem")
    anchors = build_anchors(env={"XDG_CONFIG_HOME": str(xdg)})
    assert verify_bundle(bundle, anchors=anchors).authentic
    # a pinned fingerprint of some other CA: the bundled CA is not it
    wrong = build_anchors(["ab" * 32], [cert_fingerprint(tsa)], None, use_default=False)
    _tampered(verify_bundle(bundle, anchors=wrong), "cert-foreign-ca")


def test_cli_exit_codes_for_the_three_verdicts(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, j = _cli(["verify", str(bundle), *_pins(store)], capsys)
    assert (rc, j["verdict"], j["facts"]["order_id"]) == (0, AUTHENTIC, "A1")
    rc, j = _cli(["verify", str(bundle)], capsys)
    assert (rc, j["verdict"]) == (4, UNANCHORED)
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", {"summary.html": b"<p>all good</p>"})
    rc, j = _cli(["verify", str(bad), *_pins(store)], capsys)
    assert (rc, j["verdict"]) == (1, TAMPERED) and "bundle-member-unsigned" in j["reasons"]


# ---- a forger with their own key, CA and TSA ----------------------------------------------


@pytest.fixture(scope="module")
def forger(tmp_path_factory: pytest.TempPathFactory, tsa_rsa: TsaServer) -> Path:  # noqa: F811
    """A complete, self-consistent forgery of order A1: fresh key, own CA, own TSA (roots
    shipped inside), own log."""
    root = tmp_path_factory.mktemp("forger")
    st = build_store(root, tsa_rsa, ["A1"], c2pa=False)
    out = root / "forged.zip"
    export_order(st.cfg, "A1", out)
    return out


def test_total_forgery_never_authentic(
    store: Store,  # noqa: F811
    forger: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bare = verify_bundle(forger)
    assert bare.verdict == UNANCHORED and bare.exit_code == 4, bare.lines()
    pinned = verify_bundle(forger, anchors=store.anchors())
    _tampered(pinned, "cert-foreign-ca")
    assert "time-unanchored" in pinned.reasons()  # its tokens are from a TSA nobody pinned
    rc, j = _cli(["verify", str(forger), *_pins(store)], capsys)
    assert rc == 1 and j["authentic"] is False and "cert-foreign-ca" in j["reasons"]


def test_forger_with_uncertified_key_fails_when_a_ca_is_pinned(
    store: Store,  # noqa: F811
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    st = build_store(tmp_path, tsa_ec, ["A1"], certify=False)
    out = tmp_path / "b.zip"
    export_order(st.cfg, "A1", out)
    assert verify_bundle(out).verdict == UNANCHORED
    _tampered(verify_bundle(out, anchors=store.anchors()), "cert-missing")


def test_station_certificate_removed_and_resigned_with_fresh_key(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
) -> None:
    idx = bundle_index(bundle)
    fresh = StationKey.generate()
    cert = idx["keys"]["station_key_certificate"]
    idx["keys"]["station_key_certificate"] = None  # else it names a member not there
    bad = _resign(
        bundle,
        tmp_path / "bad.zip",
        fresh,
        {
            cert: None,
            "keys/station-key.pub.pem": fresh.public_pem(),
            "bundle.json": json.dumps(idx).encode(),
        },
    )
    report = verify_bundle(bad, anchors=store.anchors())
    _tampered(report, "cert-missing")
    assert "manifest-bad-signature" in report.codes()


def test_station_02_key_signing_as_station_01(
    store: Store,  # noqa: F811
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The same company CA certified this key for station-02; its manifests say station-01."""
    ca = CompanyCa.create(tmp_path / "ca", "Shared CA")
    st = build_store(tmp_path / "s", tsa_ec, ["A1"], ca=ca, cert_station="station-02")
    out = tmp_path / "b.zip"
    export_order(st.cfg, "A1", out)
    anchors = Anchors(ca=(ca.cert,), tsa=store.anchors().tsa)
    report = verify_bundle(out, anchors=anchors)
    _tampered(report, "station-name-mismatch")
    assert any("certified for 'station-02'" in c.reason for c in report.failures)
    _tampered(audit(st.cfg, anchors=anchors), "station-name-mismatch")


# ---- time -----------------------------------------------------------------------------------


def _late(report: Report, code: str) -> None:
    """Not AUTHENTIC: intact, its time not anchored (a late token is the station's word)."""
    assert report.verdict == UNANCHORED and report.exit_code == 4, report.lines()
    assert not report.failures and not report.time_anchored, report.lines()
    assert code in report.reasons(), (code, report.lines())


@pytest.mark.parametrize(
    ("ago", "code"),
    [(timedelta(days=1), "time-late"), (timedelta(days=-1), "time-out-of-bounds")],
    ids=["claims-a-day-earlier", "claims-a-day-later"],
)
def test_recorded_times_far_from_the_tsa_time(
    store: Store,  # noqa: F811
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
    ago: timedelta,
    code: str,
) -> None:
    """The real key and CA, times moved by a day. Later (the TSA saw the manifest before the
    end it states): the TSA's time contradicts them. Earlier (a day late for its token): the
    clip existed by the TSA's time, its end is the key holder's word, as a station offline a
    day would have it; `time-late` anchors nothing, so never AUTHENTIC, as the audit sums up
    (`time-unanchored`)."""
    ca = CompanyCa.create(tmp_path / "ca", "Test Co CA")
    st = build_store(tmp_path / "s", tsa_ec, ["A1"], ca=ca, ago=ago)
    anchors = Anchors(ca=(ca.cert,), tsa=store.anchors().tsa)
    out = tmp_path / "b.zip"
    export_order(st.cfg, "A1", out)
    if code == "time-late":
        _late(verify_bundle(out, anchors=anchors), code)
        _late(audit(st.cfg, anchors=anchors), "time-unanchored")
        _late(verify_clip(_clips(st.data)[0], st.cfg, anchors=anchors), code)
    else:
        _tampered(verify_bundle(out, anchors=anchors), code)
        _tampered(audit(st.cfg, anchors=anchors), code)
        _tampered(verify_clip(_clips(st.data)[0], st.cfg, anchors=anchors), code)
    # a verifier who accepts two days of delay (a station offline that long) gets authentic
    assert verify_bundle(out, anchors=anchors, bound=TimeBound(2 * 86400)).authentic


@pytest.mark.parametrize(
    ("ended_at", "authentic"),
    [
        (None, True),  # the helper's forgery with the times left as recorded: authentic
        ("gone", False),
        ("yesterday", False),
        ("naive", False),  # a different instant in each verifier's time zone
    ],
)
def test_recorded_end_missing_from_a_resigned_manifest(
    store: Store,  # noqa: F811
    bundle: Path,
    station_key: StationKey,
    tmp_path: Path,
    ended_at: str | None,
    authentic: bool,
) -> None:
    """The key holder re-signs the manifests (a log of its own, fresh tokens) without a
    recorded end the TSA's time can be held to: the start then claims any day it likes."""

    def edit(body: dict) -> None:
        if ended_at == "gone":
            del body["ended_at"]
            body["started_at"] = "2020-01-01T10:00:00.000+08:00"
        elif ended_at == "yesterday":
            body["ended_at"] = "yesterday"
        elif ended_at == "naive":
            body["ended_at"] = body["ended_at"][:23]  # 2026-...T..:..:..... without +08:00

    forged = forge_log(bundle, tmp_path / "f.zip", station_key, store.tsa.url, edit)
    report = verify_bundle(forged, anchors=store.anchors())
    if authentic:
        assert report.authentic, report.lines()
    else:
        _tampered(report, "time-out-of-bounds")
        assert "states no recorded end" in "\n".join(report.lines())


BACK_DATED = "2020-01-01T10:00:00.000+08:00"


def _back_date(body: dict, *, inflate: bool) -> None:
    """The start moved years back, the end kept next to the TSA's time; ``inflate``: the
    duration made to match ("2020-01-01 to today, 5.6 years")."""
    if inflate:
        span = datetime.fromisoformat(body["ended_at"]) - datetime.fromisoformat(BACK_DATED)
        body["duration_s"] = round(span.total_seconds() + 0.1, 3)
    body["started_at"] = BACK_DATED


@pytest.mark.parametrize("inflate", [False, True])
def test_start_moved_back_in_a_resigned_bundle(
    store: Store,  # noqa: F811
    bundle: Path,
    station_key: StationKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    inflate: bool,
) -> None:
    """The key holder re-signs the manifests (a log of its own, fresh tokens) with the start
    moved back and the end kept next to the token: the TSA holds only the end, the signed
    duration (and, inflated to match, the clip's own length) holds the start."""
    forged = forge_log(
        bundle, tmp_path / "f.zip", station_key, store.tsa.url,
        lambda body: _back_date(body, inflate=inflate),
    )  # fmt: skip
    report = verify_bundle(forged, anchors=store.anchors())
    _tampered(report, "time-inconsistent")
    text = "\n".join(report.lines())
    if inflate:
        assert "the clip plays for" in text and "not the clip's" in text, text
    else:
        assert "2020-01-01T10:00:00+08:00" in text and "not when it happened" in text, text
    rc, j = _cli(["verify", str(forged), *_pins(store)], capsys)
    assert rc == 1 and "time-inconsistent" in j["reasons"], j


@pytest.mark.parametrize("inflate", [False, True])
def test_start_moved_back_in_the_data_dir(
    store: Store,  # noqa: F811
    station_key: StationKey,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    inflate: bool,
) -> None:
    """The same on the station: the newest log leaf re-signed back-dated, with a fresh token.
    ``packcam verify --data`` holds the duration to the clip too; ``audit`` (which does not
    demux every clip) to the manifest's own start and end."""
    st = store.copy(tmp_path / "data")
    with _db(st) as conn:
        seq, manifest, path = conn.execute(
            "SELECT seq, manifest, clip_path FROM proof_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        body = json.loads(manifest)
        _back_date(body, inflate=inflate)
        m = canonical_json(body)
        digest = hashlib.sha256(m).digest()
        conn.execute(
            "UPDATE proof_log SET manifest = ?, signature = ?, manifest_sha256 = ?,"
            " leaf_hash = ? WHERE seq = ?",
            (m, station_key.sign(m), digest.hex(), merkle.leaf_hash(m).hex(), seq),
        )
        conn.execute(
            "INSERT INTO proof_timestamps(subject, subject_sha256, tsa_url, status,"
            " next_try_utc, token, created_utc) VALUES ('manifest', ?, ?, 'granted', '', ?, '')",
            (digest.hex(), store.tsa.url, request_token(store.tsa.url, digest)[0]),
        )
    rc, j = _cli(["verify", "--data", str(st.data), *_pins(store), str(st.data / path)], capsys)
    assert rc == 1 and "time-inconsistent" in j["reasons"], j
    rc, j = _cli(["audit", "--data", str(st.data), *_pins(store)], capsys)
    assert rc == 1, j  # the leaf no longer matches the log's timestamped checkpoints either
    if not inflate:
        assert "time-inconsistent" in j["reasons"], j


def test_recorded_times_of_genuine_clips_agree(store: Store) -> None:  # noqa: F811
    """Each clip as recorded: its duration is its start-to-end span plus one frame, and how
    long it plays; no verifier path calls that inconsistent."""
    for clip in _clips(store.data):
        body = json.loads(clip.with_suffix(".json").read_text("utf-8"))
        span = (
            datetime.fromisoformat(body["ended_at"]) - datetime.fromisoformat(body["started_at"])
        ).total_seconds()
        assert 0 < body["duration_s"] - span <= 0.2, body
        report = verify_clip(clip, store.cfg, anchors=store.anchors())
        assert report.authentic, report.lines()
    assert audit(store.cfg, anchors=store.anchors()).authentic


def test_time_judgement_respects_accuracy_and_one_second_precision() -> None:
    bound = 15 * 60.0
    # genTime is whole seconds: 16:00:00 for an end at 16:00:00.700 is no "clock ahead"
    assert judge_end(-0.7, 0.0, bound) == "ok"
    assert judge_end(-1.5, 1.0, bound) == "ok"  # within the token's stated accuracy
    assert judge_end(-30.0, 1.0, bound) == "clock-ahead"
    assert judge_end(15 * 60 + 1.5, 1.0, bound) == "ok"
    assert judge_end(15 * 60 + 3, 1.0, bound) == "late"  # was "out-of-bounds": now a warning
    assert judge_end(-(15 * 60 + 3), 1.0, bound) == "early"  # "out-of-bounds": still a FAIL


def test_tokens_removed_or_from_an_unpinned_tsa(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    station_key: StationKey,
    tsa_rsa: TsaServer,  # noqa: F811
) -> None:
    idx = bundle_index(bundle)
    tokens = [t for c in idx["clips"] for t in c["timestamps"]]
    # removing tokens without the key: bundle.json names members the bundle does not hold
    # (both verifiers refuse it before reading any: test_proof_named_members.py)
    stripped = rewrite_zip(bundle, tmp_path / "s.zip", dict.fromkeys(tokens))
    _tampered(verify_bundle(stripped, anchors=store.anchors()), "bundle-malformed")
    # with the key, bundle.json and the bundle manifest re-signed: never authentic
    for c in idx["clips"]:
        c["timestamps"] = []
    changes: dict[str, bytes | None] = dict.fromkeys(tokens)
    changes["bundle.json"] = json.dumps(idx).encode()
    resigned = _resign(bundle, tmp_path / "r.zip", station_key, changes)
    report = verify_bundle(resigned, anchors=store.anchors())
    assert report.verdict == UNANCHORED and "time-unanchored" in report.reasons(), report.lines()
    # a token from another TSA over the very same manifest: valid, but not one you trust

    first = bundle_index(bundle)["clips"][0]
    digest = hashlib.sha256(read_zip(bundle, first["manifest"])).digest()
    token, _ = request_token(tsa_rsa.url, digest)
    swapped = _resign(bundle, tmp_path / "o.zip", station_key, {first["timestamps"][0]: token})
    report = verify_bundle(swapped, anchors=store.anchors())
    assert report.verdict == UNANCHORED and not report.time_anchored, report.lines()


# ---- unsigned bundle members ----------------------------------------------------------------


def test_bundle_json_relabelled_to_another_order(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    station_key: StationKey,
    capsys: pytest.CaptureFixture[str],
) -> None:
    idx = bundle_index(bundle)
    idx["order_id"] = "B2"
    new = json.dumps(idx).encode()
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", {"bundle.json": new})
    report = verify_bundle(bad, anchors=store.anchors())
    _tampered(report, "bundle-member-unsigned")
    assert "bundle-order-mismatch" in report.codes()
    assert report.facts["order_id"] == "A1"  # facts come from signed manifests only
    rc, j = _cli(["verify", str(bad), *_pins(store)], capsys)
    assert rc == 1 and j["facts"]["order_id"] == "A1"
    # even re-signed by the station key, the signed clip manifests still say A1
    resigned = _resign(bundle, tmp_path / "r.zip", station_key, {"bundle.json": new})
    _tampered(verify_bundle(resigned, anchors=store.anchors()), "bundle-order-mismatch")


@pytest.mark.parametrize("what", ["frame", "summary", "added", "sums"])
def test_unsigned_member_changed(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    what: str,
) -> None:
    idx = bundle_index(bundle)
    frames = [f["file"] for c in idx["clips"] for f in c["frames"]]
    changes: dict[str, bytes | None] = {
        "frame": {frames[0]: read_zip(bundle, frames[-1])},
        "summary": {"summary.html": read_zip(bundle, "summary.html").replace(b"A1", b"A9")},
        "added": {"clips/extra.mp4": read_zip(bundle, idx["clips"][0]["clip"])},
        "sums": {"SHA256SUMS": b"0" * 64 + b"  summary.html\n"},
    }[what]
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", changes)
    _tampered(verify_bundle(bad, anchors=store.anchors()), "bundle-member-unsigned")


def _shadowed(bundle: Path, dst: Path, name: str, data: bytes) -> Path:
    """``bundle`` with a member ``name`` written before all the others."""
    with zipfile.ZipFile(bundle) as zin, zipfile.ZipFile(dst, "w") as zout:
        zout.writestr(name, data)
        with warnings.catch_warnings():  # zipfile warns of the duplicate name, and writes it
            warnings.simplefilter("ignore", UserWarning)
            for info in zin.infolist():
                zout.writestr(info, zin.read(info))
    return dst


@pytest.mark.parametrize("how", ["same", "dot", "case", "slashes"])
def test_two_members_that_unpack_to_one_file(
    store: Store,  # noqa: F811
    bundle: Path,
    station_key: StationKey,
    tmp_path: Path,
    how: str,
) -> None:
    """An edited copy of a clip under the clip's own name (or a spelling an unzip tool writes to
    the same file: ./, another case, //): the verifier checked one of the two, the person
    unzipping may be shown the other. Refused, also when the station key signed both."""
    clip = bundle_index(bundle)["clips"][0]["clip"]
    edited = b"edited " + read_zip(bundle, clip)
    if how == "same":  # the bundle manifest cannot list it twice: it is simply never checked
        bad = _shadowed(bundle, tmp_path / "bad.zip", clip, edited)
    else:
        name = {"dot": "./" + clip, "case": clip.upper(), "slashes": clip.replace("/", "//")}[how]
        bad = _resign(bundle, tmp_path / "bad.zip", station_key, {name: edited})
    report = verify_bundle(bad, anchors=store.anchors())
    _tampered(report, "bundle-malformed")
    assert "unpack to the same file" in report.lines()[-2], report.lines()


def test_bundle_manifest_signed_by_another_key(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
) -> None:
    bad = _resign(bundle, tmp_path / "bad.zip", StationKey.generate(), {})
    _tampered(verify_bundle(bad, anchors=store.anchors()), "bundle-manifest-bad-signature")


def test_bundle_without_a_signed_manifest_is_never_authentic(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
) -> None:
    bad = rewrite_zip(
        bundle,
        tmp_path / "bad.zip",
        {BUNDLE_MANIFEST: None, BUNDLE_MANIFEST_SIG: None, "summary.html": b"<p>edited</p>"},
    )
    report = verify_bundle(bad, anchors=store.anchors())
    assert report.verdict == UNANCHORED and "bundle-member-unsigned" in report.reasons()


def test_one_clip_of_two_dropped(store: Store, bundle: Path, tmp_path: Path) -> None:  # noqa: F811
    idx = bundle_index(bundle)
    gone = idx["clips"].pop()
    changes: dict[str, bytes | None] = {
        gone[k]: None for k in ("clip", "manifest", "signature", "inclusion")
    }
    changes.update({t: None for t in gone["timestamps"]})
    changes.update({f["file"]: None for f in gone["frames"]})
    changes["bundle.json"] = json.dumps(idx).encode()
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", changes)
    report = verify_bundle(bad, anchors=store.anchors())
    _tampered(report, "order-incomplete")
    assert "bundle-member-missing" in report.codes()


# ---- the clip itself: specific reasons --------------------------------------------------------


def _remux(src: Path, dst: Path) -> Path:
    """Stream copy into a plain (non-fragmented) MP4: same coded frames, new container."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4") as o:
        vin = i.streams.video[0]
        out = o.add_stream_from_template(vin)
        for p in i.demux(vin):
            if p.dts is None:
                continue
            p.stream = out
            o.mux(p)
    return dst


def test_clip_remuxed_is_named_as_such(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
) -> None:
    name = bundle_index(bundle)["clips"][0]["clip"]
    src = tmp_path / "x.mp4"
    src.write_bytes(read_zip(bundle, name))
    remuxed = _remux(src, tmp_path / "remuxed.mp4")
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", {name: remuxed.read_bytes()})
    report = verify_bundle(bad, anchors=store.anchors())
    _tampered(report, "clip-remuxed")
    assert not report.codes() & {"clip-truncated", "clip-reencoded"}


def test_another_orders_clip_swapped_in(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
) -> None:
    b2 = next(c for c in _clips(store.data) if "_B2_" in c.name)
    name = bundle_index(bundle)["clips"][0]["clip"]
    bad = rewrite_zip(bundle, tmp_path / "bad.zip", {name: b2.read_bytes()})
    report = verify_bundle(bad, anchors=store.anchors())
    _tampered(report, "clip-replaced")
    assert "clip-truncated" not in report.codes()


# ---- the data directory: verify --data and audit -------------------------------------------


@contextlib.contextmanager
def _db(st: Store) -> Iterator[sqlite3.Connection]:
    """The station's index, to tamper with (autocommit); closed on leaving the block."""
    with contextlib.closing(sqlite3.connect(st.data / INDEX_NAME, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys=OFF")
        yield conn


def test_deleted_middle_clip_is_a_reason_not_a_crash(
    store: Store,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    st = store.copy(tmp_path / "data")
    middle = _clips(st.data)
    with _db(st) as conn:
        row = conn.execute("SELECT clip_path FROM proof_log WHERE seq = 1").fetchone()
        conn.execute("DELETE FROM proof_log WHERE seq = 1")
        conn.execute("DELETE FROM clips WHERE path = ?", row)
    (st.data / row[0]).unlink()
    last = next(c for c in middle if c.exists() and "_A1_" in c.name and c != middle[0])
    rc, j = _cli(["verify", "--data", str(st.data), *_pins(store), str(last)], capsys)
    assert rc == 1 and "log-gap" in j["reasons"]
    rc, j = _cli(["audit", "--data", str(st.data), *_pins(store)], capsys)
    assert rc == 1 and "log-gap" in j["reasons"]


def test_rollback_and_fork_against_a_checkpoint_held_elsewhere(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Deleting the newest clips with everything about them needs no key; the checkpoint in a
    bundle handed out earlier exposes it."""
    held = load_known_checkpoint(bundle)
    st = store.copy(tmp_path / "data")
    assert audit(st.cfg, anchors=store.anchors(), known=[held]).authentic
    with _db(st) as conn:
        path = conn.execute("SELECT clip_path FROM proof_log WHERE seq = 2").fetchone()[0]
        sha = conn.execute("SELECT manifest_sha256 FROM proof_log WHERE seq = 2").fetchone()[0]
        conn.execute("DELETE FROM proof_log WHERE seq = 2")
        conn.execute("DELETE FROM proof_timestamps WHERE subject_sha256 = ?", (sha,))
        conn.execute("DELETE FROM proof_checkpoints WHERE tree_size > 2")
        cid = conn.execute("SELECT id FROM clips WHERE path = ?", (path,)).fetchone()[0]
        for t in ("waybills", "scan_events"):
            conn.execute(f"DELETE FROM {t} WHERE clip_id = ?", (cid,))
        conn.execute("DELETE FROM clips WHERE id = ?", (cid,))
    (st.data / path).unlink()
    (st.data / path).with_suffix(".json").unlink()
    assert audit(st.cfg, anchors=store.anchors()).ok  # consistent in itself
    rc, j = _cli(
        ["audit", "--data", str(st.data), *_pins(store), "--checkpoint", str(bundle)], capsys
    )
    assert rc == 1 and "log-rollback" in j["reasons"]
    # a whole log re-signed with a new key: the held checkpoint names the old one
    fork = store.copy(tmp_path / "fork")
    new = StationKey.generate()
    (fork.data / "proof-public/station-key.pub.pem").write_bytes(new.public_pem())
    (fork.data / "proof/station-key.pem").unlink()
    report = audit(fork.cfg, anchors=store.anchors(), known=[held])
    _tampered(report, "log-fork")
    assert "cert-key-mismatch" in report.codes()


@pytest.mark.parametrize(
    ("sql", "field"),
    [
        ("UPDATE waybills SET waybill = 'SF-FORGED' WHERE clip_id = 1", "waybills"),
        (
            "UPDATE clips SET started_utc = '2020-01-01T00:00:00.000000Z' WHERE id = 1",
            "started_utc",
        ),
        ("UPDATE clips SET tz = '+0900' WHERE id = 1", "tz"),
        ("UPDATE scan_events SET text = 'X' WHERE clip_id = 1 AND kind = 'order'", "scan events"),
        ("UPDATE clips SET manifest_path = 'clips/other.json' WHERE id = 1", "manifest_path"),
    ],
)
def test_index_fields_outside_the_old_audit(
    store: Store,  # noqa: F811
    tmp_path: Path,
    sql: str,
    field: str,
) -> None:
    st = store.copy(tmp_path / "data")
    with _db(st) as conn:
        conn.execute(sql)
    report = audit(st.cfg, anchors=store.anchors())
    _tampered(report, "index-row-edited")
    assert any(field in c.reason for c in report.failures), report.lines()
    with _db(st) as conn:
        clip = st.data / conn.execute("SELECT path FROM clips WHERE id = 1").fetchone()[0]
    _tampered(verify_clip(clip, st.cfg, anchors=store.anchors()), "index-row-edited")


def test_data_dir_certificate_replaced_by_a_foreign_one(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    st = store.copy(tmp_path / "data")
    foreign = CompanyCa.create(tmp_path / "foreign", "Test Co CA")
    pub = StationKey.load(st.data / "proof/station-key.pem").public
    certs = foreign.issue_station("station-01", pub)
    (st.data / "proof-public/station-key.crt").write_bytes(certs.key_cert_pem)
    (st.data / "proof-public/company-ca.crt").write_bytes(certs.ca_cert_pem)
    _tampered(audit(st.cfg, anchors=store.anchors()), "cert-foreign-ca")
    assert audit(st.cfg).verdict == UNANCHORED  # self-consistent: only a pin tells
    clip = _clips(st.data)[0]
    _tampered(verify_clip(clip, st.cfg, anchors=store.anchors()), "cert-foreign-ca")


def test_bare_clip_without_data_is_never_authentic(store: Store) -> None:  # noqa: F811
    report = verify_clip(_clips(store.data)[0], None, anchors=store.anchors())
    assert report.verdict == UNANCHORED and "time-unanchored" in report.reasons(), report.lines()
    assert report.signer_anchored  # its C2PA signer chains to the pinned CA


def test_checkpoint_token_swapped_is_caught_by_audit(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    st = store.copy(tmp_path / "data")
    with _db(st) as conn:
        rows = conn.execute(
            "SELECT id, token FROM proof_timestamps WHERE subject = 'checkpoint' ORDER BY id"
        ).fetchall()
        conn.execute("UPDATE proof_timestamps SET token = ? WHERE id = ?", (rows[1][1], rows[0][0]))
    report = audit(st.cfg, anchors=store.anchors())
    _tampered(report, "tsa-other-data")
    assert any(c.name.startswith("checkpoint[") for c in report.failures)


# ---- checkpoints: the clip's own, and the heartbeat ------------------------------------------


def test_bundle_carries_the_clips_checkpoint_and_a_consistency_proof(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    station_key: StationKey,
) -> None:
    idx = bundle_index(bundle)
    fc = idx["clips"][0]["first_checkpoint"]
    assert fc["timestamps"], fc  # timestamped right after the clip
    report = verify_bundle(bundle, anchors=store.anchors())
    assert any(c.name.endswith("first-checkpoint") and c.status == "ok" for c in report.checks)
    # the insider rewrites history: the newest checkpoint no longer extends the clip's one
    cons = json.loads(read_zip(bundle, fc["consistency"]))
    cons["proof"] = ["00" * 32 for _ in cons["proof"]] or ["00" * 32]
    bad = _resign(
        bundle, tmp_path / "bad.zip", station_key, {fc["consistency"]: json.dumps(cons).encode()}
    )
    _tampered(verify_bundle(bad, anchors=store.anchors()), "log-fork")


def test_checkpoint_heartbeat_signs_and_timestamps_when_due(store: Store, tmp_path: Path) -> None:  # noqa: F811
    from datetime import UTC, datetime

    from station.proof.finalizer import ProofFinalizer
    from station.proof.log import ProofLog

    st = store.copy(tmp_path / "data")
    fin = ProofFinalizer(st.cfg, start_worker=False)
    try:
        before = len(fin.log.checkpoints())
        now = datetime.now(UTC)
        assert not fin.checkpoint_if_due(now)  # the last one is fresh
        assert fin.checkpoint_if_due(now + timedelta(minutes=11))  # idle, but 10 min passed
        assert len(fin.log.checkpoints()) == before + 1
        assert fin.tsa is not None and fin.tsa.process_due()[0] == 1  # and it is timestamped
    finally:
        fin.close()
    plog = ProofLog.in_data_dir(st.data)
    cp = plog.latest_checkpoint()
    assert cp is not None and all(t.token for t in plog.timestamps_for(cp.sha256))
    plog.close()
    assert audit(st.cfg, anchors=store.anchors()).authentic


def test_order_recorded_again_after_export_is_named_with_data(
    store: Store,  # noqa: F811
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from proof_support import record_orders

    from station.proof.finalizer import ProofFinalizer

    st = store.copy(tmp_path / "data")
    fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
    record_orders(st.cfg, (fin,), ["A1"], ago=timedelta(minutes=1))
    fin.close()
    rc, j = _cli(["verify", str(bundle), *_pins(store), "--data", str(st.data)], capsys)
    # what the bundle holds is still authentic, but the later recording is named
    assert rc == 0 and "order-later-clips" in j["reasons"], j
    assert j["facts"]["later_clips"] and "log entry 3" in j["facts"]["later_clips"][0]
