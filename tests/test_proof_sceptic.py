"""A buyer's lawyer against every verifier: material shipped in a bundle never vouches for itself.

Beyond test_proof_stranger: the bundle's own verify.py rigged, a zip that unpacks to far more
than it holds, and other tricks a key holder can play on what the verifiers read or show.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    Store,
    TsaServer,
    bundle_index,
    forge_log,
    read_zip,
    resign_bundle,
    rewrite_zip,
    run_kit,
    store,
    tsa_ec,
    tsa_rsa,
)

from station.proof.bundle import export_order
from station.proof.ca import cert_fingerprint
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey
from station.proof.standalone_verify import OVERLAP_SLACK_S, overlaps
from station.proof.trust import build_anchors
from station.proof.verify import (
    AUTHENTIC,
    TAMPERED,
    UNANCHORED,
    WARN,
    WitnessRecordError,
    verify_bundle,
)

RIGGED = b'print("RESULT: AUTHENTIC")\n'
_key, _pins, _kit = Store.station_key, Store.pins, run_kit


def _both_refuse(st: Store, bundle: Path, tmp: Path, code: str) -> str:
    """`packcam verify` and a verify.py you hold both say NOT AUTHENTIC with ``code``, the
    anchors pinned; verify.py's output."""
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp)
    assert report.verdict == TAMPERED and code in report.codes(), report.lines()
    rc, out = _kit(KIT, bundle, tmp, *_pins(st))
    assert rc == 1 and f"[{code}]" in out, out
    return out


@pytest.fixture(scope="module")
def a1(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return export_order(store.cfg, "A1", tmp_path_factory.mktemp("sceptic") / "A1.zip").path


# ---- the bundle's own verify.py, edited by the key holder ---------------------------------


def test_a_rigged_verify_py_is_named_by_packcam_verify(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """The key holder swaps verify.py for one that prints AUTHENTIC and re-signs the bundle
    manifest over it: `packcam verify` never runs it and says the copy is not its own."""
    rigged = resign_bundle(a1, tmp_path / "rigged.zip", _key(store), {"verify.py": RIGGED})
    report = verify_bundle(rigged, anchors=store.anchors())
    assert [c.status for c in report.checks if c.code == "bundle-verifier-differs"] == [WARN], (
        report.lines()
    )
    honest = verify_bundle(a1, anchors=store.anchors())
    assert honest.verdict == AUTHENTIC and "bundle-verifier-differs" not in honest.reasons()


def test_a_rigged_verify_py_is_named_by_a_verify_py_you_hold(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    rigged = resign_bundle(a1, tmp_path / "rigged.zip", _key(store), {"verify.py": RIGGED})
    rc, out = _kit(KIT, rigged, tmp_path, *_pins(store))
    assert "[bundle-verifier-differs]" in out, out
    rc, out = _kit(KIT, a1, tmp_path, *_pins(store))
    assert rc == 0 and "bundle-verifier-differs" not in out, out


def test_verify_md_says_to_run_a_verifier_not_from_the_bundle(a1: Path) -> None:
    text = " ".join(read_zip(a1, "VERIFY.md").decode().split())
    assert "not the one in this bundle" in text, text
    assert "不要运行本包内的" in text, text


def test_verify_md_says_to_pin_the_witness_key_from_the_site_itself(a1: Path) -> None:
    """A witness file the seller hands over may be its own: VERIFY.md tells the stranger to
    fetch the witness key's fingerprint from the central site and pin it, in both languages."""
    text = " ".join(read_zip(a1, "VERIFY.md").decode().split())
    assert "--witness FILE --witness-key FINGERPRINT" in text and "yourself" in text, text
    assert "--witness 文件 --witness-key 指纹" in text and "witness-untrusted" in text, text


def test_verify_md_names_the_witness_record_of_the_bundle_s_own_checkpoint(a1: Path) -> None:
    """The plain witness record lists the newest checkpoints only: long after the export the
    bundle's is not among them. VERIFY.md names the record that holds it and its clips' own
    checkpoints (a clip the witness has not seen is not vouched for), in both languages."""
    index = bundle_index(a1)
    cp = json.loads(read_zip(a1, index["checkpoint"]["body"]))
    own = [
        json.loads(read_zip(a1, c["first_checkpoint"]["body"]))["tree_size"]
        for c in index["clips"]
        if c.get("first_checkpoint")
    ]
    assert own, "A1's first clip has a checkpoint of its own"
    sizes = ",".join(str(s) for s in dict.fromkeys([cp["tree_size"], *own]))
    text = " ".join(read_zip(a1, "VERIFY.md").decode().split())
    path = f"/witness/{cp['station']}?tree_size={sizes}"
    assert text.count(path) == 2 and f"({cp['tree_size']} entries)" in text, text
    assert f"（{cp['tree_size']} 条记录）" in text, text


# ---- a zip that unpacks to far more than it holds ------------------------------------------


def _bomb(src: Path, dst: Path, key: StationKey, mb: int) -> Path:
    """The first clip replaced by ``mb`` MB of zeros, deflated to almost nothing, re-signed."""
    clip = bundle_index(src)["clips"][0]["clip"]
    out = resign_bundle(src, dst.with_name("plain-" + dst.name), key, {clip: b""})
    with zipfile.ZipFile(out) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(
                info.filename, zin.read(info) if info.filename != clip else b"\0" * (mb << 20)
            )
    out.unlink()
    return dst


def test_a_zip_bomb_clip_is_refused_before_it_is_unpacked(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    bomb = _bomb(a1, tmp_path / "bomb.zip", _key(store), 64)
    assert bomb.stat().st_size < 1 << 20
    _both_refuse(store, bomb, tmp_path, "bundle-malformed")


def test_a_clip_listed_twice_is_refused(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    idx = bundle_index(a1)
    idx["clips"].append(idx["clips"][0])
    twice = resign_bundle(
        a1, tmp_path / "twice.zip", _key(store), {"bundle.json": json.dumps(idx).encode()}
    )
    _both_refuse(store, twice, tmp_path, "bundle-malformed")


# ---- times that read as another day ----------------------------------------------------------


def test_a_station_clock_in_a_made_up_time_zone_is_not_authentic(
    tmp_path: Path,
    tsa_ec: object,  # noqa: F811
) -> None:
    """The seller sets the station's TZ to UTC-23:59: every signed time is the true instant
    (the TSA agrees), but written as the day before; the summary, the share page and the
    burnt-in overlay all read "yesterday". No time zone has that offset."""
    from proof_support import build_store

    old = os.environ.get("TZ")
    os.environ["TZ"] = "XYZ+23:59"  # POSIX: 23 h 59 min west of UTC
    time.tzset()
    try:
        st = build_store(tmp_path / "st", tsa_ec, ["A1"], c2pa=False)  # type: ignore[arg-type]
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()
    bundle = export_order(st.cfg, "A1", tmp_path / "A1.zip").path
    body = json.loads(read_zip(bundle, bundle_index(bundle)["clips"][0]["manifest"]))
    assert body["ended_at"].endswith("-23:59"), body
    _both_refuse(st, bundle, tmp_path, "time-offset-invalid")


@pytest.mark.parametrize(
    ("when", "ok"),
    [
        ("2026-12-07T10:00:00.123+08:00", True),
        ("2026-12-07T10:00:00+05:45", True),  # Nepal
        ("2026-12-07T10:00:00-12:00", True),
        ("2026-12-07T10:00:00+14:00", True),  # Kiribati
        ("2026-12-07T10:00:00+00:00", True),
        ("2026-12-07T10:00:00Z", True),
        ("2026-12-07T10:00:00+23:59", False),
        ("2026-12-07T10:00:00-14:00", False),
        ("2026-12-07T10:00:00+08:07", False),
        ("2026-12-07T10:00:00+08:00:30", False),
        ("2026-W49-1T10:00:00+08:00", False),  # a week date: Python reads it, people do not
        ("20261207T100000+0800", False),
        ("2026-12-07 10:00:00+08:00", False),
    ],
)
def test_which_signed_times_read_as_what_they_are(when: str, ok: bool) -> None:
    from station.proof.standalone_verify import local_time_problem

    body = {"started_at": when, "ended_at": "2026-12-07T10:00:10.000+08:00"}
    assert (local_time_problem(body) is None) is ok
    assert (
        local_time_problem({**body, "started_at": body["ended_at"], "ended_at": when}) is None
    ) is ok


# ---- an order ID that reads as another ------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "named"),
    [
        ("\u04101", "U+0410 CYRILLIC CAPITAL LETTER A"),  # А1, not A1
        ("A\uff11", "U+FF11 FULLWIDTH DIGIT ONE"),  # A１
    ],
)
def test_an_order_id_that_looks_like_another_is_named(
    tmp_path: Path,
    tsa_ec: object,  # noqa: F811
    order: str,
    named: str,
) -> None:
    """A QR code reading "А1" (a Cyrillic А) shown to the camera while some parcel is packed:
    a genuine, signed, timestamped clip of order "А1", which every page draws as A1, the order
    in dispute. Both verifiers name the character; the clip is still what it says."""
    from proof_support import build_store

    st = build_store(tmp_path / "st", tsa_ec, [order], c2pa=False)  # type: ignore[arg-type]
    bundle = export_order(st.cfg, order, tmp_path / "b.zip").path
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    warned = [c for c in report.checks if c.code == "order-id-lookalike"]
    assert [c.status for c in warned] == [WARN], report.lines()
    assert named in warned[0].reason, report.lines()
    assert report.verdict == AUTHENTIC, report.lines()
    rc, out = _kit(KIT, bundle, tmp_path, *_pins(st))
    assert rc == 0 and "[order-id-lookalike]" in out and named in out, out


@pytest.mark.parametrize(
    "order", ["A1", "SO-2026/0042_x", "订单12345", "注文ＡＢ", "\u00e9t\u00e9"]
)
def test_which_order_ids_read_as_themselves(order: str) -> None:
    from station.proof.standalone_verify import lookalike_problem

    plain = order.isascii() or order.startswith("订单")
    assert (lookalike_problem(order) is None) is plain, order


# ---- pins: what is already refused ----------------------------------------------------------


def test_a_manifest_with_a_key_twice_is_not_canonical(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """The key holder signs (and has timestamped) a manifest naming order B2 first and A1
    last: Python's json keeps the last, a first-wins parser or a person reads B2. Only the
    canonical form is accepted, and it has no key twice."""
    forged = forge_log(
        a1,
        tmp_path / "twice.zip",
        _key(store),
        store.tsa.url,
        lambda b: None,
        lambda b: b'{"order_id":"B2",' + canonical_json(b)[1:],
    )
    _both_refuse(store, forged, tmp_path, "manifest-not-canonical")


def test_a_forgers_tsa_root_shipped_beside_the_pinned_one_anchors_nothing(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    tsa_rsa: TsaServer,  # noqa: F811
) -> None:
    """Tokens from the forger's own TSA, its root added to keys/tsa-roots.pem beside the real
    one, and the verifier pins the real root by fingerprint: only the certificate with that
    fingerprint is trusted, not the file it came in."""
    key = _key(store)
    forged = forge_log(a1, tmp_path / "own-tsa.zip", key, tsa_rsa.url, lambda b: None)
    roots = store.tsa.root.read_bytes() + tsa_rsa.root.read_bytes()
    both = resign_bundle(forged, tmp_path / "both.zip", key, {"keys/tsa-roots.pem": roots})
    fp = cert_fingerprint(x509.load_pem_x509_certificate(store.tsa.root.read_bytes()))
    ca = str(store.data / "proof-public/company-ca.crt")
    report = verify_bundle(
        both, anchors=build_anchors([ca], [fp], use_default=False), tmp_dir=tmp_path
    )
    assert report.verdict == UNANCHORED and "time-unanchored" in report.reasons(), report.lines()
    rc, out = _kit(KIT, both, tmp_path, "--ca", ca, "--tsa-ca", fp)
    assert rc == 4 and "[time-unanchored]" in out, out


def test_a_witness_file_made_by_the_seller_is_named_by_its_key(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """The seller hands the buyer a "saved witness file" whose key is its own, cosigning the
    bundle's checkpoint. With no witness key pinned both verifiers say which key cosigned and
    that it was not pinned, to compare with the one the central witness publishes; the verdict
    is the bundle's own. With the central witness's key pinned, both refuse the file."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from station.proof.keys import fingerprint

    wkey = Ed25519PrivateKey.generate()
    cp = json.loads(read_zip(a1, bundle_index(a1)["checkpoint"]["body"]))
    cosigned = canonical_json(
        {"type": "packcam-witness-cosignature", "tree_size": cp["tree_size"],
         "root_sha256": cp["root_sha256"]}
    )  # fmt: skip
    pem = wkey.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    doc = {
        "public_key_pem": pem.decode(),
        "checkpoints": [
            {
                "cosigned_b64": base64.b64encode(cosigned).decode(),
                "cosignature_b64": base64.b64encode(wkey.sign(cosigned)).decode(),
            }
        ],
    }
    fp = fingerprint(wkey.public_key())
    report = verify_bundle(a1, anchors=store.anchors(), tmp_dir=tmp_path, witness=doc)
    said = [c.reason for c in report.checks if c.name == "witness"]
    assert len(said) == 1 and fp[:23] in said[0] and "compare" in said[0], report.lines()
    assert "not pinned" in said[0], said
    saved = tmp_path / "witness.json"
    saved.write_text(json.dumps(doc))
    rc, out = _kit(KIT, a1, tmp_path, *_pins(store), "--witness", str(saved))
    line = next(ln for ln in out.splitlines() if ln.startswith("OK   witness"))
    assert rc == 0 and fp in line and "compare" in line and "not pinned" in line, out
    central = Ed25519PrivateKey.generate().public_key()
    # pinned to another key: the file is refused as the verifier's input, no verdict
    with pytest.raises(WitnessRecordError, match="witness-untrusted"):
        verify_bundle(a1, anchors=store.anchors(), tmp_dir=tmp_path, witness=doc,
                      witness_pin=fingerprint(central))  # fmt: skip
    rc, out = _kit(KIT, a1, tmp_path, *_pins(store), "--witness", str(saved),
                   "--witness-key", fingerprint(central))  # fmt: skip
    assert rc == 3 and "RESULT:" not in out, out


@pytest.mark.parametrize("text", ["[]", '"witness"', "null"])
def test_a_witness_file_that_is_not_a_json_object_is_refused_not_skipped(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    text: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`packcam verify --witness FILE` (and the bundle's verify.py) with a file that is JSON
    but no witness document: an error (exit 3), never a verdict given as if no witness (and
    no pinned key) was asked for, nor NOT AUTHENTIC for the bundle."""
    from station import cli as station_cli

    saved = tmp_path / "witness.json"
    saved.write_text(text)
    args = ["verify", str(a1), *_pins(store), "--no-default-trust", "--witness", str(saved)]
    assert station_cli.main([*args, "--witness-key", "SHA256:" + "0" * 64]) == 3
    assert "not a witness document" in capsys.readouterr().err
    # the bundle's verify.py alike: the file is the verifier's input, never bundle-malformed
    rc, out = _kit(KIT, a1, tmp_path, *_pins(store), "--witness", str(saved))
    assert rc == 3 and "RESULT:" not in out and "bundle-malformed" not in out, out


def test_many_small_zip_bombs_are_refused_before_they_are_unpacked(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """Each member under the one-member limit, together a thousand times the zip: verify.py
    unpacks every member, so the whole bundle is held to the ratio too."""
    bomb = tmp_path / "many.zip"
    with zipfile.ZipFile(a1) as zin, zipfile.ZipFile(bomb, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        for i in range(64):
            zout.writestr(f"pad/{i}", b"\0" * (1 << 20), zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 1 << 20
    _both_refuse(store, bomb, tmp_path, "bundle-malformed")
    assert not list((tmp_path / "t").iterdir())


# ---- what the share summary shows of signed text -------------------------------------------


def test_the_share_summary_shows_signed_waybills_and_station_names_as_signed(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A waybill, a certified station name or a TSA's name with a bidi override
    ("\\u202eSF123" is drawn "321FS") is shown as its characters on the share summary, as the
    order ID already is."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from flask import render_template

    from web import create_app
    from web.summary import ClipClaims, OrderClaims

    st = store.copy(tmp_path / "data")
    app = create_app(st.cfg, test_config={"TESTING": True})
    claims = ClipClaims(
        clip=SimpleNamespace(duration_s=1.0),  # type: ignore[arg-type]
        verdict=AUTHENTIC,
        sha256="0" * 64,
        size=1,
        station_key="SHA256:" + "1" * 64,
        signer_ca="SHA256:" + "2" * 64,
        signer_station="\u202e10-noitats",
        order_id="A1",
        waybills=("\u202eSF123",),
        untrusted_tsa="\u202eAST",
    )
    with app.test_request_context("/"):
        page = render_template(
            "share_summary_body.html",
            claims=OrderClaims("A1", [claims]),
            share=None,
            generated=datetime.now(UTC),
            site="http://site",
            max_delay_min=15,
        )
    assert "\u202e" not in page, page
    assert "\\u202eSF123" in page and "\\u202e10-noitats" in page, page
    assert "\\u202eAST" in page, page


# ---- one camera, one clip at a time -----------------------------------------------------------


def test_two_clips_claiming_the_same_seconds_are_not_authentic(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """The key holder re-signs A1's second clip as recorded over the first one's seconds (its
    log of its own, timestamped now: within the time bound). Offline nothing else contradicts
    it, but one station records one clip at a time."""
    idx = bundle_index(a1)
    first = json.loads(read_zip(a1, idx["clips"][0]["manifest"]))

    def edit(b: dict) -> None:
        b["clock_synced"] = True
        if b["seq"] != first["seq"]:
            b.update({k: first[k] for k in ("started_at", "ended_at", "duration_s")})

    forged = forge_log(a1, tmp_path / "overlap.zip", _key(store), store.tsa.url, edit)
    assert "FAIL clips" in _both_refuse(store, forged, tmp_path, "clip-overlap")


def test_an_overlap_with_an_unsynchronised_clock_is_a_warning() -> None:
    from station.proof.standalone_verify import overlap_problem

    a = {
        "seq": 0,
        "started_at": "2026-12-07T10:00:00+08:00",
        "ended_at": "2026-12-07T10:01:00+08:00",
    }
    b = {
        "seq": 1,
        "started_at": "2026-12-07T10:00:30+08:00",
        "ended_at": "2026-12-07T10:02:00+08:00",
    }
    assert overlap_problem([{**a, "clock_synced": True}, {**b, "clock_synced": True}])[1] is True  # type: ignore[index]
    assert overlap_problem([{**a, "clock_synced": True}, {**b, "clock_synced": None}])[1] is False  # type: ignore[index]
    # the next clip starts a frame before the end: not the same seconds
    c = {**b, "started_at": "2026-12-07T10:00:59.900+08:00"}
    assert overlap_problem([a, c]) is None
    assert overlap_problem([a]) is None


def test_the_sweep_finds_every_pair_a_comparison_of_all_pairs_finds() -> None:
    """Sorted by start and swept (a log of 100k clips), the same pairs as every pair compared."""
    rng = random.Random(7)
    t0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    bodies = []
    for seq in range(400):
        start = t0 + timedelta(seconds=rng.uniform(0, 3000))
        end = start + timedelta(seconds=rng.choice([0.5, 5.0, 30.0, 120.0]))
        bodies.append({"seq": seq, "started_at": start.isoformat(), "ended_at": end.isoformat()})

    def shared(a: dict, b: dict) -> float:
        s = max(datetime.fromisoformat(a["started_at"]), datetime.fromisoformat(b["started_at"]))
        e = min(datetime.fromisoformat(a["ended_at"]), datetime.fromisoformat(b["ended_at"]))
        return (e - s).total_seconds()

    want = {
        frozenset((a["seq"], b["seq"]))
        for i, a in enumerate(bodies)
        for b in bodies[i + 1 :]
        if shared(a, b) > OVERLAP_SLACK_S
    }
    got = [frozenset((o.first["seq"], o.second["seq"])) for o in overlaps(bodies)]
    assert len(got) == len(set(got)) and set(got) == want and want


def test_an_honest_sequence_of_clips_a_frame_apart_has_no_overlap() -> None:
    t0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    bodies = [
        {
            "seq": i,
            "started_at": (t0 + timedelta(seconds=10 * i - 0.1)).isoformat(),
            "ended_at": (t0 + timedelta(seconds=10 * i + 10)).isoformat(),
        }
        for i in range(1000)
    ]
    assert overlaps(bodies) == []


def test_an_edit_list_that_claims_longer_than_the_frames_play_is_not_authentic(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """The key holder remuxes a clip with every frame 30 s later (an edit list opens with 30 s
    of nothing), re-signs its manifest as 30 s longer, started 30 s earlier, in a log of its
    own stamped now: the frames still play 1.2 s, which `packcam verify` reads from them."""
    from datetime import datetime, timedelta

    import av
    from proof_support import presentation_s

    from station.proof.standalone_verify import clip_span_s

    idx = bundle_index(a1)
    name = idx["clips"][0]["clip"]
    src, dst = tmp_path / "src.mp4", tmp_path / "late.mp4"
    src.write_bytes(read_zip(a1, name))
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4") as o:
        out = o.add_stream_from_template(i.streams.video[0])
        shift = int(30 / i.streams.video[0].time_base)
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.pts, p.dts, p.stream = p.pts + shift, p.dts + shift, out
                o.mux(p)
    data = dst.read_bytes()
    assert b"elst" in data and presentation_s(dst) == presentation_s(src)
    assert clip_span_s(dst) == pytest.approx(clip_span_s(src))  # what both verifiers measure
    first = json.loads(read_zip(a1, idx["clips"][0]["manifest"]))

    def edit(b: dict) -> None:
        if b["seq"] == first["seq"]:
            start = datetime.fromisoformat(b["started_at"]) - timedelta(seconds=30)
            b.update(
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
                duration_s=round(b["duration_s"] + 30, 3),
                started_at=start.isoformat(timespec="milliseconds"),
            )

    swapped = rewrite_zip(a1, tmp_path / "swapped.zip", {name: data})
    forged = forge_log(swapped, tmp_path / "elst.zip", _key(store), store.tsa.url, edit)
    report = verify_bundle(forged, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and "time-inconsistent" in report.codes(), report.lines()
