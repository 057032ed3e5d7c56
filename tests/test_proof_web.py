"""The public /verify page through a real Flask app: clips and bundles, limits, nothing kept."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

import pytest
from flask import Flask
from proof_support import Store, garbage_bundles, store, tsa_ec, tsa_rsa  # noqa: F401 (fixtures)

from station.proof.bundle import export_order
from station.proof.ca import cert_fingerprint
from web import verify as verify_web


def _app(st: Store, **extra: object) -> Flask:
    app = Flask("verify-test")
    app.config.update(PACKCAM=st.cfg, TESTING=True, **extra)
    app.register_blueprint(verify_web.bp)
    return app


@pytest.fixture
def upload_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "uploads"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _clip(st: Store) -> Path:
    return sorted(st.data.glob("clips/**/*.mp4"))[0]


def test_page_is_public_and_bilingual(store: Store) -> None:  # noqa: F811
    resp = _app(store).test_client().get("/verify")
    assert resp.status_code == 200
    body = resp.get_data(as_text=True)
    assert "验证" in body and "Verify" in body and 'type="file"' in body
    css = _app(store).test_client().get("/verify/verify.css")
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_recorded_clip_matches_and_upload_is_not_kept(store: Store, upload_tmp: Path) -> None:  # noqa: F811
    clip = _clip(store)
    resp = (
        _app(store)
        .test_client()
        .post("/verify", data={"file": (io.BytesIO(clip.read_bytes()), "../../etc/passwd.mp4")})
    )
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Authentic" in body, body
    assert "A1" in body and "station-01" in body
    assert list(upload_tmp.iterdir()) == []


def test_garbage_bundle_gets_a_verdict_not_a_server_error(
    store: Store,  # noqa: F811
    upload_tmp: Path,
    tmp_path: Path,
) -> None:
    """An encrypted bundle.json, an unknown compression method, a corrupt deflate stream, JSON
    nested too deep or of another shape: NOT AUTHENTIC (bundle-malformed), not a 500."""
    client = _app(store).test_client()
    for what, path in garbage_bundles(tmp_path).items():
        resp = client.post("/verify", data={"file": (io.BytesIO(path.read_bytes()), "b.zip")})
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200 and "bundle-malformed" in body, (what, body[-2000:])
        assert list(upload_tmp.iterdir()) == [], what


def test_altered_clip_is_refused_with_its_reason(store: Store, upload_tmp: Path) -> None:  # noqa: F811
    data = bytearray(_clip(store).read_bytes())
    data[len(data) // 2] ^= 1
    resp = (
        _app(store)
        .test_client()
        .post("/verify", data={"file": (io.BytesIO(bytes(data)), "clip.mp4")})
    )
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Not authentic" in body
    assert "changed in place" in body
    assert list(upload_tmp.iterdir()) == []


def test_bundle_verifies_and_is_in_this_sites_log(store: Store, tmp_path: Path) -> None:  # noqa: F811
    bundle = export_order(store.cfg, "B2", tmp_path / "b.zip").path
    resp = (
        _app(store)
        .test_client()
        .post("/verify", data={"file": (io.BytesIO(bundle.read_bytes()), "b.zip")})
    )
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Authentic" in body and "B2" in body, body
    assert "in this site&#39;s signed log" in body


def test_too_large_upload_is_refused_and_not_kept(store: Store, upload_tmp: Path) -> None:  # noqa: F811
    app = _app(store, PACKCAM_VERIFY_MAX_BYTES=4096)
    resp = app.test_client().post("/verify", data={"file": (io.BytesIO(b"x" * 100_000), "big.mp4")})
    assert resp.status_code == 413
    assert list(upload_tmp.iterdir()) == []


def test_no_file_is_a_400(store: Store) -> None:  # noqa: F811
    assert _app(store).test_client().post("/verify", data={}).status_code == 400


def test_site_cap_and_csrf_of_the_real_app(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """Registered in the site's create_app: larger than its 64 KiB body cap, CSRF enforced."""
    web = pytest.importorskip("web")
    create_app = getattr(web, "create_app", None)
    if create_app is None:
        pytest.skip("web.create_app not available")
    st = store.copy(tmp_path / "data")
    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    if "verify.page" not in app.view_functions:
        app.register_blueprint(verify_web.bp)
    client = app.test_client()
    page = client.get("/verify")
    assert page.status_code == 200
    with client.session_transaction() as sess:
        token = sess.get("csrf")
    payload = _clip(st).read_bytes() + b"\0" * 70_000  # over the site's 64 KiB cap
    refused = client.post("/verify", data={"file": (io.BytesIO(payload), "c.mp4")})
    assert refused.status_code == 400  # no CSRF token
    resp = client.post(
        "/verify", data={"csrf_token": token, "file": (io.BytesIO(payload), "c.mp4")}
    )
    assert resp.status_code == 200 and "Not authentic" in resp.get_data(as_text=True)


def test_order_page_bundle_button_exports_a_bundle_that_verifies(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Logged in on the real site: the order's evidence bundle downloads and verifies offline."""
    from conftest_web import add_users, login

    from station.proof.verify import verify_bundle
    from station.store.ledger import Ledger
    from web import create_app

    st = store.copy(tmp_path / "data")
    add_users(st.data)
    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    client = app.test_client()
    login(client, "viewer")
    ledger = Ledger.in_data_dir(st.data)
    (clip_id,) = [c.id for c in ledger.clips("B2")]
    ledger.close()
    from station.proof.exports import ExportWorker

    with ExportWorker(st.cfg, poll_s=0.02):  # the station builds and signs it
        resp = client.get(f"/clips/{clip_id}/bundle.zip")
    assert resp.status_code == 200
    out = tmp_path / "elsewhere" / "B2.zip"
    out.parent.mkdir()
    out.write_bytes(resp.data)
    resp.close()
    report = verify_bundle(out, trusted_ca=None)
    assert report.ok, report
    # signed by the station (bundle manifest and all): authentic to whoever pins CA and TSA
    assert verify_bundle(out, anchors=store.anchors()).authentic


# ---- upload limits on the real site (create_app, waitress) ---------------------------------


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(("-wal", "-shm"))
    }


def _multipart(payload: bytes) -> tuple[bytes, str]:
    head = (
        b'--bnd\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        b"Content-Type: video/mp4\r\n\r\n"
    )
    return head + payload + b"\r\n--bnd--\r\n", "multipart/form-data; boundary=bnd"


@pytest.mark.parametrize("chunked", [False, True])
def test_the_real_site_refuses_an_oversized_upload_without_keeping_it(
    web_env, upload_tmp: Path, chunked: bool
) -> None:
    """Declared too large (Content-Length) or found too large while streaming (chunked):
    413, nothing in the temp folder, nothing new in the data dir."""
    from conftest_web import csrf_of, make_app

    app = make_app(web_env, PACKCAM_VERIFY_MAX_BYTES=256 * 1024)
    client = app.test_client()
    token = csrf_of(client)
    before = _files(web_env.data_dir)
    body, ctype = _multipart(b"\0" * (300 * 1024))
    if chunked:
        resp = client.post(
            f"/verify?csrf_token={token}",
            input_stream=io.BytesIO(body),
            content_type=ctype,
            headers={"Transfer-Encoding": "chunked", "X-CSRF-Token": token},
            environ_overrides={"wsgi.input_terminated": True},
        )
    else:
        resp = client.post(
            "/verify", data={"csrf_token": token, "file": (io.BytesIO(body), "big.mp4")}
        )
    assert resp.status_code == 413
    assert list(upload_tmp.iterdir()) == []
    assert _files(web_env.data_dir) == before
    small = client.post(
        "/verify", data={"csrf_token": token, "file": (io.BytesIO(b"\0" * 200_000), "s.mp4")}
    )
    assert small.status_code != 413  # under the limit it is read (and found not authentic)


def test_waitress_refuses_a_declared_oversized_body_before_reading_it(web_env) -> None:
    """waitress spools request bodies to disk before the app runs: its own cap is the app's."""
    import socket
    import threading

    from web import cli

    srv = cli.make_server(web_env.cfg, "127.0.0.1", 0)
    limit = verify_web.DEFAULT_MAX_BYTES + cli.UPLOAD_FRAMING
    assert srv.adj.max_request_body_size == limit
    stop = threading.Event()
    thread = threading.Thread(target=cli.run_server, args=(srv,), kwargs={"stop": stop})
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.effective_port), timeout=10) as sock:
            sock.sendall(
                b"POST /verify HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: multipart/form-data; boundary=bnd\r\n"
                + f"Content-Length: {limit}\r\n\r\n".encode()
                + b"--bnd\r\n"  # a few bytes of the promised gigabyte
            )
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    finally:
        stop.set()
        thread.join(10)


# ---- the verdict model on the page ---------------------------------------------------------


def _post(app: Flask, data: bytes, name: str) -> str:
    resp = app.test_client().post("/verify", data={"file": (io.BytesIO(data), name)})
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def test_page_names_the_anchors_it_used(store: Store) -> None:  # noqa: F811
    body = _post(_app(store), _clip(store).read_bytes(), "clip.mp4")
    assert "✔ Authentic" in body
    assert "company CA SHA256:" in body and "TSA root SHA256:" in body and "/trust" in body


def test_site_without_tsa_roots_says_intact_not_anchored(store: Store) -> None:  # noqa: F811
    app = _app(store)
    app.config["PACKCAM"] = store.cfg.replace("proof", tsa_ca_path="")
    body = _post(app, _clip(store).read_bytes(), "clip.mp4")
    assert "Intact, but not anchored" in body and "Authentic" not in body
    assert "[time-unanchored]" in body


def test_forged_and_relabelled_bundles_are_refused(
    store: Store,  # noqa: F811
    tmp_path: Path,
    tsa_rsa: object,  # noqa: F811
) -> None:
    from proof_support import build_store, bundle_index, rewrite_zip

    forger = build_store(tmp_path / "forger", tsa_rsa, ["A1"], c2pa=False)
    forged = export_order(forger.cfg, "A1", tmp_path / "forged.zip").path
    body = _post(_app(store), forged.read_bytes(), "b.zip")
    assert "✘ Not authentic" in body and "cert-foreign-ca" in body
    honest = export_order(store.cfg, "A1", tmp_path / "a1.zip").path
    idx = bundle_index(honest)
    idx["order_id"] = "B2"
    relabelled = rewrite_zip(honest, tmp_path / "r.zip", {"bundle.json": json.dumps(idx).encode()})
    body = _post(_app(store), relabelled.read_bytes(), "r.zip")
    assert "Not authentic" in body and "bundle-member-unsigned" in body


def test_trust_page_and_trust_file_publish_the_anchors(store: Store, tmp_path: Path) -> None:  # noqa: F811
    from station.proof.trust import build_anchors
    from station.proof.verify import verify_bundle

    client = _app(store).test_client()
    page = client.get("/trust").get_data(as_text=True)
    ca_fp, tsa_fp = (cert_fingerprint(c) for c in (*store.anchors().ca, *store.anchors().tsa))
    assert ca_fp in page and tsa_fp in page
    trust = tmp_path / "trust.txt"
    trust.write_bytes(client.get("/trust.txt").data)
    bundle = export_order(store.cfg, "B2", tmp_path / "b.zip").path
    report = verify_bundle(bundle, anchors=build_anchors(trust_file=str(trust)))
    assert report.authentic, report.lines()


def test_verdict_in_chinese_on_the_real_site(store: Store, tmp_path: Path) -> None:  # noqa: F811
    from web import create_app

    st = store.copy(tmp_path / "data")
    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    client = app.test_client()
    zh = {"Accept-Language": "zh-CN"}
    assert client.get("/verify", headers=zh).status_code == 200
    with client.session_transaction() as sess:
        token = sess.get("csrf")
    resp = client.post(
        "/verify",
        data={"csrf_token": token, "file": (io.BytesIO(_clip(st).read_bytes()), "c.mp4")},
        headers=zh,
    )
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200, body
    assert "真实：与录制的视频一致" in body and "依据本站公布的信任锚进行验证" in body


def test_a_sibling_stations_bundle_gets_the_verdict_packcam_verify_gives(
    store: Store,  # noqa: F811
    tmp_path: Path,
    tsa_ec: object,  # noqa: F811
) -> None:
    """station-02, certified by the same company CA, exports an order; its bundle is uploaded
    to station-01's page. `packcam verify --trust trust.txt` (this site's anchors) calls it
    authentic; the page must not reject it because station-01's own log does not hold it, nor
    read station-01's log as if it were the bundle's."""
    from proof_support import build_store

    from station.proof.ca import CompanyCa
    from station.proof.verify import verify_bundle

    ca = CompanyCa.load(store.data.parent / "ca")
    sib = build_store(tmp_path / "sib", tsa_ec, ["A1"], ca=ca, station="station-02", c2pa=False)  # type: ignore[arg-type]
    bundle = export_order(sib.cfg, "A1", tmp_path / "s1.zip").path
    assert verify_bundle(bundle, anchors=verify_web.site_anchors(store.cfg)).authentic
    body = _post(_app(store), bundle.read_bytes(), "s1.zip")
    assert "✔ Authentic" in body and "clip-unknown" not in body, body[-3000:]
    assert "station-02_A1" in body and "station-02" in body
    assert "not in this station&#39;s log" in body  # said, as a warning, not a failure
    # station-01 recorded an A1 too: its log says nothing about station-02's order
    assert "order-later-clips" not in body and "recorded again" not in body


def test_a_bundle_signed_by_this_stations_key_but_not_in_its_log_is_refused(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """This station's key signed a clip its log does not hold (a copy of the key recording
    elsewhere): the page's own log contradicts the bundle, so it is not authentic."""
    from datetime import timedelta

    from proof_support import record_orders

    from station.proof.finalizer import ProofFinalizer

    twin = store.copy(tmp_path / "twin")
    fin = ProofFinalizer(twin.cfg, start_worker=False, clock=lambda: True)
    try:
        record_orders(twin.cfg, (fin,), ["T9"], ago=timedelta(minutes=2))
    finally:
        fin.close()
    fin2 = ProofFinalizer(twin.cfg, start_worker=False)
    assert fin2.tsa is not None
    fin2.tsa.process_due()
    fin2.close()
    bundle = export_order(twin.cfg, "T9", tmp_path / "t9.zip").path
    body = _post(_app(store), bundle.read_bytes(), "t9.zip")
    assert "✘ Not authentic" in body and "clip-unknown" in body, body[-4000:]


def test_a_sibling_stations_bare_clip_is_not_called_another_clip_of_this_station(
    store: Store,  # noqa: F811
    tmp_path: Path,
    tsa_ec: object,  # noqa: F811
) -> None:
    """station-02's honest clip (C2PA signed by a key the company CA certified) uploaded to
    station-01's page: not "not authentic, claims to be station-01's clip of order A1", but
    what its own signed C2PA manifest proves against the site's anchors (`packcam verify
    --ca`: intact, the time not proven), naming station-02 and its order."""
    from proof_support import build_store

    from station.proof.c2pa_embed import c2pa_available
    from station.proof.ca import CompanyCa
    from station.proof.verify import UNANCHORED, verify_clip

    if not c2pa_available():
        pytest.skip("c2pa not installed")
    ca = CompanyCa.load(store.data.parent / "ca")
    sib = build_store(tmp_path / "sib", tsa_ec, ["Z9"], ca=ca, station="station-02")  # type: ignore[arg-type]
    clip = _clip(sib)
    assert verify_clip(clip, None, anchors=verify_web.site_anchors(store.cfg)).verdict == UNANCHORED
    body = _post(_app(store), clip.read_bytes(), clip.name)
    assert "⚠ Intact, but not anchored" in body and "Not authentic" not in body, body[-3000:]
    assert "station-02" in body and "Z9" in body
    assert "station-01_A1" not in body
    assert "clip-remuxed" not in body and "clip-replaced" not in body
    assert "[time-unanchored]" in body


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_intact_with_nothing_to_compare_does_not_point_at_fingerprints(web_app, lang) -> None:
    """A bare clip judged by its C2PA manifest alone is intact but untimed, with no fingerprint
    to compare: the page must not ask the reader to compare "the fingerprints below"."""
    from station.proof.trust import Anchors
    from station.proof.verify import Report

    report = Report(subject="clip.mp4")
    report.add("c2pa", "ok", "embedded C2PA manifest valid")
    report.add("time", "warn", "no RFC 3161 token", "time-unanchored")
    report.time_anchors.append(False)
    with web_app.test_request_context("/verify", headers={"Accept-Language": lang}):
        view = verify_web.verdict_view(report, Anchors())
        assert not view["compare"]
        assert "below" not in view["detail"] and "下面" not in view["detail"]
        assert ("bundle" in view["detail"]) if lang == "en" else ("证据包" in view["detail"])
        report.compare("station key SHA256:ab")
        view = verify_web.verdict_view(report, Anchors())
        assert view["compare"] and ("below" in view["detail"] or "下面" in view["detail"])
