"""A third sceptic round: what the verifiers print, and attacks already refused, pinned."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from proof_support import (  # noqa: F401 (fixtures)
    KIT,
    Store,
    bundle_index,
    forge_log,
    leave_out_last_clip,
    read_zip,
    resign_bundle,
    run_kit,
    store,
    tsa_ec,
)

from station import cli as station_cli
from station.proof.bundle import export_order
from station.proof.canonical import canonical_json
from station.proof.tsa import request_token
from station.proof.verify import AUTHENTIC, TAMPERED, WARN, verify_bundle

CODE = re.compile(r"^FAIL .*\[([a-z0-9-]+)\]$", re.M)
# A member name that, printed raw to a terminal, draws a verdict of its own and hides (SGR 8,
# "conceal") every line after it: the real NOT AUTHENTIC included
FAKE_VERDICT = "frames/x.jpg\r\x1b[2K\nRESULT: AUTHENTIC\x1b[8m\u202e.jpg"


_key, _pins = Store.station_key, Store.pins


def _kit(bundle: Path, tmp: Path, *args: str) -> tuple[int, str]:
    """A verify.py you hold, run in isolated mode (no packcam on sys.path)."""
    return run_kit(KIT, bundle, tmp, *args)


@pytest.fixture(scope="module")
def a1(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return export_order(store.cfg, "A1", tmp_path_factory.mktemp("sceptic3") / "A1.zip").path


def _post(st: Store, data: bytes, name: str) -> str:
    """The /verify page's answer to an upload (the blueprint on its own app)."""
    from flask import Flask

    from web import verify as verify_web

    app = Flask("verify-test")
    app.config.update(PACKCAM=st.cfg, TESTING=True)
    app.register_blueprint(verify_web.bp)
    resp = app.test_client().post("/verify", data={"file": (io.BytesIO(data), name)})
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def _drawn_as_is(out: str) -> None:
    """What a terminal shows is what was checked: one line per check, the verdict last, no
    control or direction character to rewrite or hide a line."""
    lines = out.splitlines()
    assert [ln for ln in lines if ln.startswith("RESULT")] == lines[-1:], out
    assert "NOT AUTHENTIC" in lines[-1], out
    assert all(c.isprintable() for c in out.replace("\n", "")), repr(out)


# ---- a member name that draws its own verdict -----------------------------------------------


def test_packcam_verify_prints_a_member_name_as_its_characters(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The key holder adds a member whose name holds a line break, "RESULT: AUTHENTIC" and the
    escape that conceals the rest: the lawyer's terminal would show AUTHENTIC last."""
    rigged = resign_bundle(a1, tmp_path / "rigged.zip", _key(store), {FAKE_VERDICT: b"x"})
    assert station_cli.main(["verify", *_pins(store), str(rigged)]) == 1
    out = capsys.readouterr().out
    _drawn_as_is(out)
    assert "\\x1b[8m" in out and "\\u202e" in out, out


def test_a_verify_py_you_hold_prints_a_member_name_as_its_characters(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    rigged = resign_bundle(a1, tmp_path / "rigged.zip", _key(store), {FAKE_VERDICT: b"x"})
    rc, out = _kit(rigged, tmp_path, *_pins(store))
    assert rc == 1 and "[bundle-member-unreferenced]" in out, out
    _drawn_as_is(out)
    assert "\\x1b[8m" in out and "\\u202e" in out, out


# ---- JSON numbers a station never writes ----------------------------------------------------


@pytest.mark.parametrize("field", ["duration_s", "seq"])
def test_a_signed_number_too_large_for_a_float_is_a_reason_not_a_crash(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    field: str,
) -> None:
    """The key holder signs (and has timestamped) a manifest whose duration or log index is a
    401-digit integer: canonical JSON, valid Python, but no float holds it. Both verifiers
    give a verdict with a reason, never a traceback."""
    first = json.loads(read_zip(a1, bundle_index(a1)["clips"][0]["manifest"]))

    def edit(b: dict) -> None:
        if b["seq"] == first["seq"] and field == "duration_s":
            b["duration_s"] = 10**400

    forged = forge_log(a1, tmp_path / "huge.zip", _key(store), store.tsa.url, edit)
    if field == "seq":  # the inclusion proof follows the manifest's index
        idx = bundle_index(forged)
        e = idx["clips"][0]
        body = json.loads(read_zip(forged, e["manifest"]))
        body["seq"] = 10**400
        m = canonical_json(body)
        inc = json.loads(read_zip(forged, e["inclusion"]))
        inc["log_index"] = body["seq"]
        forged = resign_bundle(
            forged,
            tmp_path / "huge-seq.zip",
            _key(store),
            {
                e["manifest"]: m,
                e["signature"]: _key(store).sign(m),
                e["timestamps"][0]: request_token(store.tsa.url, hashlib.sha256(m).digest())[0],
                e["inclusion"]: json.dumps(inc).encode(),
            },
        )
    rc, out = _kit(forged, tmp_path, *_pins(store))
    assert rc == 1 and "RESULT: NOT AUTHENTIC" in out, out
    report = verify_bundle(forged, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED, report.lines()
    # the same reason (packcam verify also reads the key frames and the C2PA manifest)
    want = "time-inconsistent" if field == "duration_s" else "log-not-included"
    assert want in report.codes() and set(CODE.findall(out)) <= report.codes(), report.lines()
    assert f"[{want}]" in out, out


# ---- an order ID no scanner gives ------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "plain"),
    [
        ("A1", True),
        ("SO 2026 42", True),
        ("A1 ", False),  # drawn as A1 everywhere
        (" A1", False),
        ("A  1", False),  # a browser draws two spaces as one
        ("A1\t", False),
        ("A1\x00", False),
        ("A1\x7f", False),
        ("A1\x1e", False),
    ],
)
def test_an_order_id_with_spaces_or_controls_is_named(order: str, plain: bool) -> None:
    """The station strips a code's surrounding whitespace and refuses control characters
    (station/capture/codes.py sanitize): a signed "A1 " is drawn as A1 but is not the order A1,
    and only a key holder's forgery carries it; a page draws "A  1" as "A 1"."""
    from station.proof.standalone_verify import lookalike_problem

    said = lookalike_problem(order)
    assert (said is None) is plain, said
    if said:
        assert ascii(order) in said, said


def test_a_bundle_of_order_a1_with_a_trailing_space_is_named(
    tmp_path: Path,
    tsa_ec: object,  # noqa: F811
) -> None:
    from proof_support import build_store

    st = build_store(tmp_path / "st", tsa_ec, ["A1 "], c2pa=False)  # type: ignore[arg-type]
    bundle = export_order(st.cfg, "A1 ", tmp_path / "b.zip").path
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp_path)
    assert [c.status for c in report.checks if c.code == "order-id-lookalike"] == [WARN], (
        report.lines()
    )
    rc, out = _kit(bundle, tmp_path, *_pins(st))
    assert rc == 0 and "[order-id-lookalike]" in out and "'A1 '" in out, out


# ---- a bundle that is something else too -----------------------------------------------------


def _polyglot(a1: Path, tmp: Path, store: Store) -> Path:  # noqa: F811
    """Another recording (order B2's clip, which plays) in front of A1's genuine bundle: zip
    readers find the members from the end, a player plays the MP4 from the start."""
    b2 = next(p for p in sorted(store.data.glob("clips/**/*.mp4")) if "_B2_" in p.name)
    out = tmp / "A1-evidence.zip"
    out.write_bytes(b2.read_bytes() + a1.read_bytes())
    return out


def test_a_video_in_front_of_a_bundle_is_not_authentic_in_either_verifier(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """The page (which reads an upload starting with an MP4 as a clip) says not authentic;
    `packcam verify` and verify.py must not say AUTHENTIC for the same file."""
    from proof_support import presentation_s

    poly = _polyglot(a1, tmp_path, store)
    assert presentation_s(poly) is not None  # it plays
    report = verify_bundle(poly, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and "bundle-malformed" in report.codes(), report.lines()
    rc, out = _kit(poly, tmp_path, *_pins(store))
    assert rc == 1 and "[bundle-malformed]" in out, out
    page = _post(store, poly.read_bytes(), poly.name)
    assert "✘ Not authentic" in page and "✔" not in page, page[-3000:]


def test_a_zip_comment_is_not_part_of_an_authentic_bundle(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """`unzip` prints an archive comment before the members: one saying "verified authentic"
    is the key holder's text, outside every signature; an export never writes one."""
    import shutil
    import zipfile

    said = tmp_path / "said.zip"
    shutil.copy(a1, said)
    with zipfile.ZipFile(said, "a") as z:
        z.comment = b"packcam: VERIFIED AUTHENTIC, every clip of order A1"
    report = verify_bundle(said, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and "bundle-malformed" in report.codes(), report.lines()
    rc, out = _kit(said, tmp_path, *_pins(store))
    assert rc == 1 and "[bundle-malformed]" in out, out


# ---- the same files on the real site (create_app behind waitress) ----------------------------


def _post_real(st: Store, uploads: list[tuple[bytes, str]]) -> list[str]:
    """Each upload POSTed to /verify of the real site over HTTP, with its session's CSRF."""
    import http.cookiejar
    import re
    import threading
    import urllib.request

    from web import cli

    srv = cli.make_server(st.cfg, "127.0.0.1", 0, test_config={"SECRET_KEY": "k" * 40})
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(srv,), kwargs={"stop": stop})
    thread.start()
    base = f"http://127.0.0.1:{srv.effective_port}"
    http = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    pages = []
    try:
        with http.open(f"{base}/verify", timeout=30) as resp:
            found = re.search(r'name="csrf_token" value="([^"]+)"', resp.read().decode())
        assert found
        for data, name in uploads:
            body = (
                b'--bnd\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
                + found.group(1).encode()
                + b'\r\n--bnd\r\nContent-Disposition: form-data; name="file"; filename="'
                + name.encode()
                + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
                + data
                + b"\r\n--bnd--\r\n"
            )
            req = urllib.request.Request(
                f"{base}/verify",
                data=body,
                headers={"Content-Type": "multipart/form-data; boundary=bnd"},
            )
            with http.open(req, timeout=120) as resp:
                assert resp.status == 200
                pages.append(resp.read().decode())
    finally:
        stop.set()
        thread.join(10)
    return pages


def test_the_real_site_agrees_on_a_rigged_name_and_a_video_in_front(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    st = store.copy(tmp_path / "data")
    rigged = resign_bundle(a1, tmp_path / "rigged.zip", _key(st), {FAKE_VERDICT: b"x"})
    poly = _polyglot(a1, tmp_path, st)
    named, front, honest = _post_real(
        st, [(rigged.read_bytes(), "rigged.zip"), (poly.read_bytes(), poly.name),
             (a1.read_bytes(), "A1.zip")]
    )  # fmt: skip
    assert "✘ Not authentic" in named and "bundle-member-unreferenced" in named, named[-3000:]
    assert "\x1b" not in named and "\u202e" not in named and "\\x1b[8m" in named
    assert "✘ Not authentic" in front and "✔" not in front, front[-3000:]
    assert "✔ Authentic" in honest, honest[-3000:]


# ---- pins: tried this round, already refused ---------------------------------------------------


def _refused_by_both(st: Store, bundle: Path, tmp: Path, code: str) -> None:
    report = verify_bundle(bundle, anchors=st.anchors(), tmp_dir=tmp)
    assert report.verdict == TAMPERED and code in report.codes(), report.lines()
    rc, out = _kit(bundle, tmp, *_pins(st))
    assert rc == 1 and f"[{code}]" in out, out


def test_a_manifest_signed_with_nan_as_its_duration_is_refused(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """Python's json reads NaN; canonical JSON has no such number, so the bytes signed and
    timestamped are not a manifest either verifier accepts (a NaN compares false to any
    bound)."""

    def encode(b: dict) -> bytes:
        return canonical_json({**b, "duration_s": 0}).replace(
            b'"duration_s":0', b'"duration_s":NaN'
        )

    forged = forge_log(a1, tmp_path / "nan.zip", _key(store), store.tsa.url, lambda b: None, encode)
    _refused_by_both(store, forged, tmp_path, "bundle-malformed")


def test_another_stations_clip_and_manifest_in_the_bundle_are_refused(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    tsa_ec: object,  # noqa: F811
) -> None:
    """station-02 (same company CA) recorded a clip; the key holder puts it, its manifest,
    signature and token in place of A1's first clip and re-signs the bundle manifest: the
    manifest is not signed by the bundle's station key."""
    from proof_support import build_store

    from station.proof.ca import CompanyCa

    sib = build_store(
        tmp_path / "sib",
        tsa_ec,  # type: ignore[arg-type]
        ["A1"],
        ca=CompanyCa.load(store.data.parent / "ca"),
        station="station-02",
        c2pa=False,
    )
    other = export_order(sib.cfg, "A1", tmp_path / "sib.zip").path
    mine, theirs = bundle_index(a1)["clips"][0], bundle_index(other)["clips"][0]
    swap = {mine[k]: read_zip(other, theirs[k]) for k in ("clip", "manifest", "signature")}
    swap[mine["timestamps"][0]] = read_zip(other, theirs["timestamps"][0])
    mixed = resign_bundle(a1, tmp_path / "mixed.zip", _key(store), swap)
    _refused_by_both(store, mixed, tmp_path, "manifest-bad-signature")


def test_a_symlink_member_in_place_of_a_clip_is_refused(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
) -> None:
    """A zip entry marked as a symlink to the station's clip on the verifier's disk: neither
    verifier follows it (zipfile unpacks the link text as a file), and that is not the clip."""
    import stat
    import zipfile

    name = bundle_index(a1)["clips"][0]["clip"]
    plain = resign_bundle(a1, tmp_path / "plain.zip", _key(store), {name: b"/etc/hostname"})
    linked = tmp_path / "linked.zip"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(linked, "w") as zout:
        for info in zin.infolist():
            if info.filename == name:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zout.writestr(info, zin.read(info))
    report = verify_bundle(linked, anchors=store.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and "clip-truncated" in report.codes(), report.lines()
    rc, out = _kit(linked, tmp_path, *_pins(store))
    assert rc == 1 and "[clip-altered]" in out, out  # what verify.py says of any other bytes


# ---- a clip left out of the order, by the bundle manifest re-signed ---------------------------


def test_a_clip_left_out_by_a_resigned_bundle_manifest_is_named_by_the_stations_log(
    store: Store,  # noqa: F811
    a1: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The key holder hands over A1 without the clip that shows the wrong item. Offline that
    is its word (docs/proof.md, threat model); but the /verify page and `packcam verify
    --data` hold the station's log, which has that clip of A1 within the bundle's checkpoint."""
    one = leave_out_last_clip(a1, tmp_path / "one-of-two.zip", _key(store))
    offline = verify_bundle(one, anchors=store.anchors(), tmp_dir=tmp_path)
    assert offline.verdict == AUTHENTIC, offline.lines()  # the documented offline limit
    page = _post(store, one.read_bytes(), "A1.zip")
    assert "✘ Not authentic" in page and "order-incomplete" in page, page[-3000:]
    rc = station_cli.main(["verify", "--data", str(store.data), *_pins(store), str(one)])
    out = capsys.readouterr().out
    assert rc == 1 and "[order-incomplete]" in out, out
    # the whole bundle is still authentic there
    assert "✔ Authentic" in _post(store, a1.read_bytes(), "A1.zip")
