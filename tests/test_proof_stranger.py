"""A seller holding the station key, or a buyer with a doctored file, against the verdict.

Each attack is judged as a stranger who distrusts the seller would: nothing the station key
signed at export time (the bundle manifest) vouches for a member the TSA-timed manifests and
the site's own log do not also hold.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from flask import Flask
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    bundle_index,
    forge_log,
    read_zip,
    resign_bundle,
    rewrite_zip,
    store,
    tsa_ec,
)
from verify_support import big_store  # noqa: F401 (fixture)
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from station.proof import cli as station_cli
from station.proof.bundle import export_order
from station.proof.keys import StationKey
from station.proof.verify import AUTHENTIC, TAMPERED, Report, verify_bundle, verify_clip
from web import verify as verify_web


def _app(st: Store) -> Flask:
    app = Flask("verify-stranger")
    app.config.update(PACKCAM=st.cfg, TESTING=True)
    app.register_blueprint(verify_web.bp)
    return app


def _post(st: Store, data: bytes, name: str) -> str:
    # encoded in memory: the test client would spool a multi-MB form to a file it never closes
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), name)})
    resp = (
        _app(st)
        .test_client()
        .post("/verify", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    )
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def _key(st: Store) -> StationKey:
    return StationKey.load(st.data / "proof/station-key.pem")


def _resigned(st: Store, bundle: Path, dst: Path, changes: dict[str, bytes | None]) -> Report:
    """What the key holder does: change members, re-sign the bundle manifest over them; the
    verdict of a verifier who pins the company CA and the TSA root."""
    return verify_bundle(resign_bundle(bundle, dst, _key(st), changes), anchors=st.anchors())


def _refused(report: Report, code: str) -> None:
    assert report.verdict == TAMPERED, report.lines()
    assert code in report.codes(), report.lines()


@pytest.fixture(scope="module")
def a1(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """Order A1's honest bundle (two clips, key frames, signed bundle manifest)."""
    return export_order(store.cfg, "A1", tmp_path_factory.mktemp("stranger") / "A1.zip").path


@pytest.fixture(scope="module")
def b2(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return export_order(store.cfg, "B2", tmp_path_factory.mktemp("stranger") / "B2.zip").path


def test_the_honest_bundles_are_authentic(store: Store, a1: Path, b2: Path) -> None:  # noqa: F811
    for bundle in (a1, b2):
        report = verify_bundle(bundle, anchors=store.anchors())
        assert report.verdict == AUTHENTIC, report.lines()


# ---- the seller re-signs the bundle manifest over extra or swapped members ---------------


@pytest.mark.parametrize("member", ["clips/extra.mp4", "evidence/B2.mp4", "frames/extra.jpg"])
def test_an_unrelated_member_signed_only_at_export_is_not_authentic(
    store: Store,  # noqa: F811
    a1: Path,
    b2: Path,
    tmp_path: Path,
    member: str,
) -> None:
    """A second, unrelated clip (order B2's, genuine) added to A1's bundle and listed in a
    re-signed bundle manifest: bundle.json names no manifest, token or proof for it, so only
    the seller's export-time signature vouches for it."""
    idx = bundle_index(b2)
    other = read_zip(b2, idx["clips"][0]["clip"])
    _refused(
        _resigned(store, a1, tmp_path / "extra.zip", {member: other}), "bundle-member-unreferenced"
    )


def test_key_frames_of_another_clip_are_not_authentic(
    store: Store,  # noqa: F811
    a1: Path,
    b2: Path,
    tmp_path: Path,
) -> None:
    """The key frames summary.html shows, swapped for B2's (a picture of another packing) and
    the bundle manifest re-signed: the frames are not the clip's."""
    frames = bundle_index(a1)["clips"][0]["frames"]
    theirs = bundle_index(b2)["clips"][0]["frames"]
    assert frames and theirs
    swapped = {f["file"]: read_zip(b2, theirs[0]["file"]) for f in frames}
    _refused(_resigned(store, a1, tmp_path / "frames.zip", swapped), "bundle-frame-mismatch")


def test_key_frames_moved_to_another_time_are_not_authentic(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """The clip's own last frame shown as its first (the start looked like the end)."""
    frames = bundle_index(a1)["clips"][0]["frames"]
    assert len(frames) >= 2
    last = read_zip(a1, frames[-1]["file"])
    moved = {frames[0]["file"]: last}
    _refused(_resigned(store, a1, tmp_path / "moved.zip", moved), "bundle-frame-mismatch")


# ---- the clip's bytes (pins: the whole-file SHA-256 in the signed manifest holds) -------


def _box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(_box(b"mdat", b"\x00" * 64), id="extra-mdat"),
        pytest.param(_box(b"moov", _box(b"mvhd", b"\x00" * 100)), id="second-moov"),
        pytest.param(_box(b"uuid", b"\x11" * 16 + b"packcam"), id="uuid-box"),
    ],
)
def test_a_box_appended_after_signing_is_not_authentic(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    tail: bytes,
) -> None:
    """A box appended to the clip (a player ignores it or prefers it), bundle manifest
    re-signed; and the same file uploaded alone to the site."""
    name = bundle_index(a1)["clips"][0]["clip"]
    doctored = read_zip(a1, name) + tail
    report = _resigned(store, a1, tmp_path / "box.zip", {name: doctored})
    assert report.verdict == TAMPERED, report.lines()
    assert report.codes() & {"clip-remuxed", "clip-altered", "clip-replaced"}, report.lines()
    clip = tmp_path / Path(name).name
    clip.write_bytes(doctored)
    bare = verify_clip(clip, store.cfg, anchors=store.anchors())
    assert bare.verdict == TAMPERED, bare.lines()
    assert "✘ Not authentic" in _post(store, doctored, clip.name)


def test_another_orders_clip_under_this_orders_manifest_is_not_authentic(
    store: Store,  # noqa: F811
    a1: Path,
    b2: Path,
    tmp_path: Path,
) -> None:
    """Splice: B2's genuine clip in A1's bundle under A1's signed manifest and log entry."""
    name = bundle_index(a1)["clips"][0]["clip"]
    theirs = read_zip(b2, bundle_index(b2)["clips"][0]["clip"])
    _refused(_resigned(store, a1, tmp_path / "splice.zip", {name: theirs}), "clip-replaced")


# ---- the site's own log against a bundle the key holder re-signed ------------------------


def test_the_site_refuses_a_logged_clip_under_a_manifest_its_log_does_not_hold(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The key holder re-signs A1's genuine clips with another waybill (the buyer's), builds a
    log of its own around them and has the TSA stamp it now. Offline that is the key holder's
    word (docs/proof.md, threat model); the site holds the real log, whose entry for these
    bytes says another waybill: not authentic there."""

    def edit(body: dict) -> None:
        body["waybill"] = "SF9999999999999"
        body["waybills"] = [{**w, "waybill": "SF9999999999999"} for w in body.get("waybills") or []]

    forged = forge_log(a1, tmp_path / "relabel.zip", _key(store), store.tsa.url, edit)
    body = _post(store, forged.read_bytes(), "relabel.zip")
    assert "✘ Not authentic" in body, body[-4000:]
    assert "log-leaf-replaced" in body, body[-4000:]
    # `packcam verify --data` reads the same log: it said AUTHENTIC (exit 0), the page not
    rc = station_cli.main(["verify", "--data", str(store.data), *store.pins(), str(forged),
                           "--json", "--no-default-trust"])  # fmt: skip
    said = json.loads(capsys.readouterr().out)
    assert rc == 1 and "log-leaf-replaced" in said["reasons"], said
    honest = _post(store, a1.read_bytes(), "A1.zip")
    assert "✔ Authentic" in honest, honest[-4000:]


# ---- the zip itself over the site (pins) --------------------------------------------------


@pytest.mark.parametrize("evil", ["../../evil.mp4", "/tmp/evil.mp4", "C:/evil.mp4", "a\\..\\..\\e"])
def test_a_member_that_would_unpack_outside_is_refused_and_nothing_is_written(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    evil: str,
) -> None:
    forged = rewrite_zip(a1, tmp_path / "evil.zip", {evil: b"x" * 100})
    with zipfile.ZipFile(forged) as z:
        assert evil in z.namelist()
    body = _post(store, forged.read_bytes(), "evil.zip")
    # "/tmp/x" unpacks as "tmp/x" (unzip drops the slash): a member the station did not sign
    assert "✘ Not authentic" in body, body[-3000:]
    assert "bundle-malformed" in body or "bundle-member-unsigned" in body, body[-3000:]
    assert not (tmp_path.parent.parent / "evil.mp4").exists()


# ---- a real multi-MB bundle over the site ------------------------------------------------


def test_a_multi_mb_bundle_with_a_second_unrelated_clip_is_refused_by_the_site(
    big_store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """BIG1's real bundle (megabytes of video) with BIG2's clip added as a second clip and the
    bundle manifest re-signed, uploaded to the site's /verify page."""
    big1 = export_order(big_store.cfg, "BIG1", tmp_path / "BIG1.zip").path
    big2 = export_order(big_store.cfg, "BIG2", tmp_path / "BIG2.zip").path
    other = read_zip(big2, bundle_index(big2)["clips"][0]["clip"])
    assert len(other) > 1 << 20
    honest = _post(big_store, big1.read_bytes(), "BIG1.zip")
    assert "✔ Authentic" in honest, honest[-3000:]
    forged = resign_bundle(big1, tmp_path / "two.zip", _key(big_store), {"clips/b.mp4": other})
    body = _post(big_store, forged.read_bytes(), "two.zip")
    assert "✘ Not authentic" in body and "bundle-member-unreferenced" in body, body[-3000:]
    # the same clip only appended by whoever holds the file: not even the seller vouches
    added = rewrite_zip(big1, tmp_path / "added.zip", {"clips/b.mp4": other})
    body = _post(big_store, added.read_bytes(), "added.zip")
    assert "✘ Not authentic" in body and "bundle-member-unsigned" in body, body[-3000:]


# ---- what the page shows of a signed order ID ----------------------------------------------


def test_an_order_id_with_a_bidi_override_is_shown_as_signed_not_as_rendered(
    store: Store,  # noqa: F811
    tmp_path: Path,
    tsa_ec: object,  # noqa: F811
) -> None:
    """A sibling station (its key certified by the site's CA) signed order "\\u202e1A-RO",
    which a browser draws as "OR-A1" (the station's scanner refuses such codes; the key holder
    need not). The page shows the characters that were signed, not a look-alike."""
    from proof_support import build_store

    from station.proof.ca import CompanyCa

    order = "\u202e1A-RO"
    ca = CompanyCa.load(store.data.parent / "ca")
    sib = build_store(tmp_path / "sib", tsa_ec, [order], ca=ca, station="station-02")  # type: ignore[arg-type]
    bundle = export_order(sib.cfg, order, tmp_path / "sib.zip").path
    body = _post(store, bundle.read_bytes(), "sib.zip")
    assert "✔ Authentic" in body, body[-3000:]
    assert "\u202e" not in body, body[-3000:]
    assert "\\u202e1A-RO" in body, body[-3000:]


# ---- time ---------------------------------------------------------------------------------


def test_a_checkpoint_from_the_future_is_not_authentic(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """The key holder re-signs the bundle's checkpoint saying 2099 (the same tree), has the TSA
    stamp it now and re-signs the bundle manifest: the site's share summary would state "signed
    2099"; the TSA saw it decades before it claims to have been signed."""
    from station.proof.canonical import canonical_json
    from station.proof.tsa import request_token

    idx = bundle_index(a1)
    cpi = idx["checkpoint"]
    cp = json.loads(read_zip(a1, cpi["body"]))
    cp["time"] = "2099-01-01T00:00:00+00:00"
    raw = canonical_json(cp)
    key = _key(store)
    changes: dict[str, bytes | None] = {cpi["body"]: raw, cpi["signature"]: key.sign(raw)}
    token = request_token(store.tsa.url, hashlib.sha256(raw).digest())[0]
    changes.update({t: token for t in cpi["timestamps"]})
    forged = resign_bundle(
        a1,
        tmp_path / "future.zip",
        key,
        changes,
        lambda bm: bm.update(checkpoint_sha256=hashlib.sha256(raw).hexdigest()),
    )
    _refused(verify_bundle(forged, anchors=store.anchors()), "time-out-of-bounds")
    # the stranger's verify.py, inside the bundle, says the same
    kit = tmp_path / "verify.py"
    kit.write_bytes(read_zip(forged, "verify.py"))
    pins = [
        "--ca",
        str(store.data / "proof-public/company-ca.crt"),
        "--tsa-ca",
        str(store.tsa.root),
    ]
    r = subprocess.run(
        [sys.executable, "-I", str(kit), str(forged), *pins],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
        timeout=120,
    )
    assert r.returncode == 1 and "[time-out-of-bounds]" in r.stdout, r.stdout + r.stderr


def _remux(src: Path, dst: Path, *, keep: int | None = None, audio: bool = False) -> Path:
    """A stream copy of ``src``'s video (its first ``keep`` packets), with a silent audio track
    added when ``audio``: a new moov, the coded frames untouched."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        if audio:
            aout = out.add_stream("aac", rate=8000, layout="mono")
            for frame_no in range(4):
                silence = av.AudioFrame(format="fltp", layout="mono", samples=1024)
                silence.planes[0].update(bytes(4 * 1024))
                silence.sample_rate, silence.pts = 8000, frame_no * 1024
                for p in aout.encode(silence):
                    out.mux(p)
            for p in aout.encode(None):
                out.mux(p)
        for n, packet in enumerate(inp.demux(vin)):
            if packet.dts is None or (keep is not None and n >= keep):
                continue
            packet.stream = vout
            out.mux(packet)
    return dst


@pytest.mark.parametrize(
    ("how", "code"),
    [({"audio": True}, "clip-remuxed"), ({"keep": 10}, "clip-truncated")],
    ids=["extra-track", "cut-and-moov-rebuilt"],
)
def test_a_clip_remuxed_with_a_new_moov_is_named_and_not_authentic(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    how: dict,
    code: str,
) -> None:
    """A track added after signing, or the clip cut short and its moov rebuilt (so it plays
    whole): in a re-signed bundle and uploaded alone, each named for what it is."""
    name = bundle_index(a1)["clips"][0]["clip"]
    src = tmp_path / "src.mp4"
    src.write_bytes(read_zip(a1, name))
    doctored = _remux(src, tmp_path / Path(name).name, **how)
    _refused(_resigned(store, a1, tmp_path / "remux.zip", {name: doctored.read_bytes()}), code)
    _refused(verify_clip(doctored, store.cfg, anchors=store.anchors()), code)
