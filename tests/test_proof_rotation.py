"""Key rotation: the old log closes with a final checkpoint signed by both keys, a new one starts.

Honest rotation end to end (record, rotate, record, export from both logs, verify and audit
with the anchors pinned) and the attacks on it, each by its reason and exit code.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    build_store,
    bundle_index,
    read_zip,
    record_orders,
    rewrite_zip,
    tsa_ec,
)

from station import cli as station_cli
from station.proof import ProofError, rotation
from station.proof.bundle import export_order
from station.proof.ca import CompanyCa
from station.proof.canonical import canonical_json
from station.proof.finalizer import ProofFinalizer
from station.proof.keys import StationKey
from station.proof.log import ProofLog
from station.proof.paths import ProofPaths
from station.proof.verify import Report, audit, load_known_checkpoint, verify_bundle, verify_clip
from station.store.ledger import INDEX_NAME

AUTHENTIC, UNANCHORED, TAMPERED = "authentic", "intact-unanchored", "tampered"


def _tampered(report: Report, code: str) -> None:
    assert report.verdict == TAMPERED and report.exit_code == 1, report.lines()
    assert code in report.codes(), (code, report.lines())


def _record(st: Store, orders: list[str], ago: timedelta = timedelta(minutes=1)) -> None:
    fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
    # 14 frames, not build_store's 12: bytes unlike the first log's clips
    done = record_orders(st.cfg, (fin,), orders, ago=ago, frames=14)
    assert all(d.record is not None for d in done), [d.error for d in done]
    fin.close()
    fin2 = ProofFinalizer(st.cfg, start_worker=False)
    assert fin2.tsa is not None
    fin2.tsa.process_due()
    fin2.close()


def _issue_next(st: Store, out: Path, ca_dir: Path | None = None) -> Path:
    """The company CA certifies the prepared successor key (as `packcam ca issue --out`)."""
    paths = ProofPaths.from_config(st.cfg)
    nxt = rotation.prepare(paths)
    ca = CompanyCa.load(ca_dir or st.data.parent / "ca")
    certs = ca.issue_station(st.cfg.station.name, nxt.public)
    out.mkdir(parents=True, exist_ok=True)
    (out / "station-key.crt").write_bytes(certs.key_cert_pem)
    return out / "station-key.crt"


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory, tsa_ec) -> Store:  # noqa: F811
    """Orders A1, B2 under key 1; rotation with a certificate for key 2; C3, A9 under key 2."""
    root = tmp_path_factory.mktemp("rot")
    st = build_store(root, tsa_ec, ["A1", "B2"], c2pa=False)
    cert = _issue_next(st, root / "issued")
    res = rotation.rotate(st.cfg, cert=cert, keep_old_key=True)  # the tests' thief
    assert res.tree_size == 2 and res.certified
    _record(st, ["C3", "A9"])
    return st


@pytest.fixture(scope="module")
def bundles(rotated: Store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rot-bundles")
    return {o: export_order(rotated.cfg, o, out / f"{o}.zip").path for o in ("A1", "C3")}


def test_honest_rotation_verifies_and_audits(rotated: Store, bundles: dict[str, Path]) -> None:
    anchors = rotated.anchors()
    for order, path in bundles.items():
        rep = verify_bundle(path, anchors=anchors)
        assert rep.verdict == AUTHENTIC, (order, rep.lines())
    old = verify_bundle(bundles["A1"], anchors=anchors)
    assert old.facts["rotations"][0]["tree_size"] == 2
    assert "rotations" not in bundle_index(bundles["C3"])
    assert bundle_index(bundles["A1"])["rotations"][0]["timestamps"]  # the TSA saw the rotation
    rep = audit(rotated.cfg, anchors=anchors)
    assert rep.verdict == AUTHENTIC, rep.lines()
    assert any(c.name == "rotation[0]" and c.status == "ok" for c in rep.checks), rep.lines()
    # nothing pinned: intact but never authentic
    assert verify_bundle(bundles["A1"]).verdict == UNANCHORED


def _pins(st: Store) -> list[str]:
    return ["--ca", str(st.data / "proof-public/company-ca.crt"), "--tsa-ca", str(st.tsa.root)]


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    rc = station_cli.main([*argv, "--json", "--no-default-trust"])
    return rc, json.loads(capsys.readouterr().out)


def test_cli_verify_json_old_and_new_log(
    rotated: Store, bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for order in ("A1", "C3"):
        rc, doc = _cli(["verify", str(bundles[order]), *_pins(rotated)], capsys)
        assert rc == 0 and doc["verdict"] == AUTHENTIC, (order, doc)
    rc, doc = _cli(["audit", "--data", str(rotated.data), *_pins(rotated)], capsys)
    assert rc == 0 and doc["verdict"] == AUTHENTIC, doc


def test_kit_verifies_a_rotated_bundle(
    rotated: Store, bundles: dict[str, Path], tmp_path: Path
) -> None:
    script = tmp_path / "verify.py"
    script.write_bytes(read_zip(bundles["A1"], "verify.py"))
    r = subprocess.run(
        [sys.executable, "-I", str(script), str(bundles["A1"]), *_pins(rotated)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rotation[0]" in r.stdout
    forged = _forge_link(bundles["A1"], tmp_path / "edited.zip", edit=True)
    r = subprocess.run(
        [sys.executable, "-I", str(script), str(forged), *_pins(rotated)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 1 and "rotation-unsigned" in r.stdout, r.stdout


def test_single_clip_of_the_retired_key_verifies(rotated: Store) -> None:
    plog = ProofLog.in_data_dir(rotated.data)
    try:
        old_key = plog.rotations()[0].old_key
        clip = rotated.data / plog.archived(old_key).entries()[0].clip_path
    finally:
        plog.close()
    rep = verify_clip(clip, rotated.cfg, anchors=rotated.anchors())
    assert rep.verdict == AUTHENTIC, rep.lines()
    assert any(c.name == "rotation" and c.status == "ok" for c in rep.checks), rep.lines()


# ---- attacks on the rotation link -----------------------------------------------------------


def _forge_link(
    src: Path,
    dst: Path,
    *,
    edit: bool = False,
    drop_new: bool = False,
    successor: StationKey | None = None,
    old: StationKey | None = None,
) -> Path:
    """Rewrite rotation[0] of a bundle: edit its body, sign it with the old key only, or name
    another successor (signed by ``old`` when the forger holds the retired key)."""
    idx = bundle_index(src)
    link = idx["rotations"][0]
    body = json.loads(read_zip(src, link["checkpoint"]))
    changes: dict[str, bytes | None] = {}
    if edit:
        body["tree_size"] = body["tree_size"] + 1
        changes[link["checkpoint"]] = canonical_json(body)
    if drop_new:
        changes[link["signature_new"]] = b"\0" * 64
    if successor is not None:
        assert old is not None
        body["successor_key"] = successor.fingerprint
        raw = canonical_json(body)
        changes[link["checkpoint"]] = raw
        changes["log/checkpoint.json"] = raw
        changes["log/checkpoint.sig"] = old.sign(raw)
        changes[link["signature_old"]] = old.sign(raw)
        changes[link["signature_new"]] = successor.sign(raw)
        changes[link["successor_public_key"]] = successor.public_pem()
        if link.get("successor_certificate"):
            changes[link["successor_certificate"]] = None
        idx["rotations"][0]["successor_certificate"] = None
        for n in idx["checkpoint"]["timestamps"] + link["timestamps"]:
            changes[n] = None  # tokens over the honest bytes: the forger drops them
        idx["checkpoint"]["timestamps"] = idx["rotations"][0]["timestamps"] = []
        changes["bundle.json"] = json.dumps(idx).encode()
        bm = json.loads(read_zip(src, "bundle/manifest.json"))
        bm["station_key"] = successor.fingerprint
        bm["members"] = {}
        tmp = rewrite_zip(src, dst.with_suffix(".tmp.zip"), changes)
        import hashlib
        import zipfile

        with zipfile.ZipFile(tmp) as z:
            for n in z.namelist():
                if not n.startswith("bundle/") and n != "SHA256SUMS":
                    bm["members"][n] = hashlib.sha256(z.read(n)).hexdigest()
        raw_bm = canonical_json(bm)
        out = rewrite_zip(tmp, dst, {"bundle/manifest.json": raw_bm,
                                     "bundle/manifest.sig": successor.sign(raw_bm),
                                     "SHA256SUMS": None})  # fmt: skip
        tmp.unlink()
        return out
    return rewrite_zip(src, dst, changes)


def test_rotation_statement_edited(
    rotated: Store, bundles: dict[str, Path], tmp_path: Path
) -> None:
    rep = verify_bundle(_forge_link(bundles["A1"], tmp_path / "e.zip", edit=True),
                        anchors=rotated.anchors())  # fmt: skip
    _tampered(rep, "rotation-unsigned")


def test_final_checkpoint_signed_by_one_key(
    rotated: Store, bundles: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = _forge_link(bundles["A1"], tmp_path / "one.zip", drop_new=True)
    _tampered(verify_bundle(forged, anchors=rotated.anchors()), "rotation-unsigned")
    rc, doc = _cli(["verify", str(forged), *_pins(rotated)], capsys)
    assert rc == 1 and "rotation-unsigned" in {c["code"] for c in doc["checks"]}, doc


def test_forged_successor_never_authentic(
    rotated: Store, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """A forger holding the leaked old key names their own key as successor: every signature
    verifies, but their key has no certificate from the company CA."""
    old = _retired_key(rotated)
    mine = StationKey.generate()
    forged = _forge_link(bundles["A1"], tmp_path / "succ.zip", successor=mine, old=old)
    _tampered(verify_bundle(forged, anchors=rotated.anchors()), "cert-missing")
    rep = verify_bundle(forged)
    assert rep.verdict == UNANCHORED, [c for c in rep.checks if c.status == "fail"]


def _retired_key(st: Store) -> StationKey:
    """The retired private key, as a thief who copied it before the rotation would hold it."""
    kept = sorted((st.data / "proof" / rotation.RETIRED_DIR).glob("*.pem"))
    assert kept, "the fixture keeps the old key (--keep-old-key) to play the thief"
    return StationKey.load(kept[0])


def test_old_key_signing_after_rotation_audit(rotated: Store, tmp_path: Path) -> None:
    st = rotated.copy(tmp_path / "after")
    old = _retired_key(st)
    plog = ProofLog.in_data_dir(st.data)
    try:
        # the thief signs a checkpoint of the new log with the retired key
        cp = plog.checkpoint(old, st.cfg.station.name)
        assert cp is not None
    finally:
        plog.close()
    _tampered(audit(st.cfg, anchors=st.anchors()), "log-after-rotation")


def test_old_key_checkpoint_after_final_in_bundle(
    rotated: Store, bundles: dict[str, Path], tmp_path: Path
) -> None:
    old = _retired_key(rotated)
    idx = bundle_index(bundles["A1"])
    final = json.loads(read_zip(bundles["A1"], "log/checkpoint.json"))
    later = dict(final, tree_size=final["tree_size"] + 1, final=False)
    del later["successor_key"]
    raw = canonical_json(later)
    changes = {"log/checkpoint.json": raw, "log/checkpoint.sig": old.sign(raw)}
    forged = rewrite_zip(bundles["A1"], tmp_path / "later.zip", changes)
    assert idx["rotations"]
    _tampered(verify_bundle(forged, anchors=rotated.anchors()), "log-after-rotation")


def test_leaf_added_to_archived_log_is_refused_and_caught(rotated: Store, tmp_path: Path) -> None:
    st = rotated.copy(tmp_path / "arch")
    conn = sqlite3.connect(st.data / INDEX_NAME)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="read-only"):
            conn.execute("DELETE FROM proof_archive_log")
        # a tamperer who drops the trigger and appends: audit names it
        conn.execute("DROP TRIGGER proof_archive_log_no_update")
        row = conn.execute("SELECT * FROM proof_archive_log ORDER BY seq DESC LIMIT 1").fetchone()
        vals = list(row)
        vals[1] += 1  # seq
        vals[5] = "f" * 64  # manifest_sha256 (unique)
        conn.execute(f"INSERT INTO proof_archive_log VALUES ({','.join('?' * len(vals))})", vals)
        conn.commit()
    finally:
        conn.close()
    _tampered(audit(st.cfg, anchors=st.anchors()), "log-after-rotation")


def test_rotation_row_edited_in_data_dir(rotated: Store, tmp_path: Path) -> None:
    st = rotated.copy(tmp_path / "edit")
    conn = sqlite3.connect(st.data / INDEX_NAME)
    try:
        conn.execute("DROP TRIGGER proof_rotations_no_update")
        conn.execute("UPDATE proof_rotations SET signature_new = zeroblob(64)")
        conn.commit()
    finally:
        conn.close()
    _tampered(audit(st.cfg, anchors=st.anchors()), "rotation-unsigned")


# ---- the station's side: refusal, crash, recovery --------------------------------------------


def test_rotate_refused_while_station_runs(rotated: Store, tmp_path: Path) -> None:
    from station.store.recovery import data_dir_lock

    st = rotated.copy(tmp_path / "busy")
    with data_dir_lock(st.data):
        rc = station_cli.main(["keys", "rotate", "--data", str(st.data)])
    assert rc == 3
    plog = ProofLog.in_data_dir(st.data)
    try:
        assert len(plog.rotations()) == 1  # nothing happened
    finally:
        plog.close()


def test_retired_key_refused_at_start(rotated: Store, tmp_path: Path) -> None:
    st = rotated.copy(tmp_path / "retired")
    paths = ProofPaths.from_config(st.cfg)
    paths.key.write_bytes(
        next((st.data / "proof" / rotation.RETIRED_DIR).glob("*.pem")).read_bytes()
    )
    with pytest.raises(ProofError, match="retired"):
        ProofFinalizer(st.cfg, start_worker=False)


def test_crash_after_commit_is_completed_at_start(
    rotated: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = rotated.copy(tmp_path / "crash")
    paths = ProofPaths.from_config(st.cfg)
    before = StationKey.load(paths.key).fingerprint

    def crash(*a: object, **k: object) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(rotation, "_finish", crash)
    with pytest.raises(KeyboardInterrupt):
        rotation.rotate(st.cfg)
    monkeypatch.undo()
    # committed: the old log is closed, but the old key file is still in place
    assert StationKey.load(paths.key).fingerprint == before
    fin = ProofFinalizer(st.cfg, start_worker=False)  # the next start finishes it
    try:
        plog = fin.log
        last = plog.rotations()[-1]
        assert last.old_key == before and fin.key.fingerprint == last.new_key
        assert plog.size() == 0
    finally:
        fin.close()
    assert not rotation.RotationFiles.of(paths).next_key.exists()
    rep = audit(st.cfg, anchors=st.anchors())
    # the chain holds; only the newest key lacks a certificate, which a pinned CA requires
    assert rep.codes() == {"cert-missing"}, rep.lines()
    assert audit(st.cfg).verdict == UNANCHORED  # nothing pinned


def test_crash_before_commit_changes_nothing(
    rotated: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = rotated.copy(tmp_path / "early")
    paths = ProofPaths.from_config(st.cfg)
    before = StationKey.load(paths.key).fingerprint

    def crash(*a: object, **k: object) -> None:
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(rotation, "_commit", crash)
    with pytest.raises(KeyboardInterrupt):
        rotation.rotate(st.cfg)
    monkeypatch.undo()
    fin = ProofFinalizer(st.cfg, start_worker=False)
    try:
        assert fin.key.fingerprint == before and len(fin.log.rotations()) == 1
    finally:
        fin.close()
    assert audit(st.cfg, anchors=st.anchors()).verdict == AUTHENTIC


def test_cert_for_another_key_is_refused(rotated: Store, tmp_path: Path) -> None:
    st = rotated.copy(tmp_path / "badcert")
    wrong = st.data / "proof-public" / "station-key.crt"  # the current key's, not the successor's
    with pytest.raises(ProofError, match="another key"):
        rotation.rotate(st.cfg, cert=wrong)


def test_web_verify_page_takes_bundles_of_both_logs(
    rotated: Store, bundles: dict[str, Path]
) -> None:
    import io

    from flask import Flask

    from web import verify as verify_web

    app = Flask("verify-test")
    app.config.update(PACKCAM=rotated.cfg, TESTING=True)
    app.register_blueprint(verify_web.bp)
    for order, path in bundles.items():
        resp = app.test_client().post(
            "/verify", data={"file": (io.BytesIO(path.read_bytes()), f"{order}.zip")}
        )
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200 and "Authentic" in body, (order, body)
        assert "in this site&#39;s signed log" in body and "clip-unknown" not in body


def test_order_recorded_again_after_rotation_is_named(
    rotated: Store, bundles: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A1, recorded before the rotation, is recorded again under the new key: the old bundle's
    verify with --data names the later clip; one bundle of both logs is refused clearly."""
    st = rotated.copy(tmp_path / "again")
    _record(st, ["A1"], ago=timedelta(seconds=20))
    rc, doc = _cli(["verify", str(bundles["A1"]), *_pins(st), "--data", str(st.data)], capsys)
    assert rc == 0 and "order-later-clips" in doc["reasons"], doc
    with pytest.raises(ProofError, match="key rotation"):
        export_order(st.cfg, "A1", st.data.parent / "A1-both.zip")


def test_keys_rotate_cli_prepare_then_cert(
    rotated: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    st = rotated.copy(tmp_path / "cli")
    assert station_cli.main(["keys", "rotate", "--prepare", "--data", str(st.data)]) == 0
    out = capsys.readouterr().out
    nxt = rotation.RotationFiles.of(ProofPaths.from_config(st.cfg)).next_public
    assert nxt.exists() and "station-key.next.pub.pem" in out
    cert = _issue_next(st, tmp_path / "issued", rotated.data.parent / "ca")
    assert station_cli.main(["keys", "rotate", "--cert", str(cert), "--data", str(st.data)]) == 0
    out = capsys.readouterr().out
    assert "log closed at 2 entries" in out and "new log, 0 entries" in out
    assert "no TSA configured: not timestamped" in out  # --data alone: the default config
    assert not nxt.exists()
    rc, doc = _cli(["audit", "--data", str(st.data), *_pins(st)], capsys)
    assert rc == 0 and doc["verdict"] == AUTHENTIC, doc
    assert [c for c in doc["checks"] if c["name"] == "rotation[1]" and c["status"] == "ok"]
    # the fixture's rotation (TSA configured) had its final checkpoint timestamped
    plog = ProofLog.in_data_dir(st.data)
    try:
        rots = plog.rotations()
        assert len(rots) == 2
        assert [any(t.token for t in plog.timestamps_for(r.sha256)) for r in rots] == [
            True,
            False,
        ]
    finally:
        plog.close()


def test_audit_holds_the_log_to_a_bundle_from_before_the_rotation(
    rotated: Store, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """A checkpoint kept from before the rotation is checked against the retired key's closed
    log (no false fork); that log rolled back is caught."""
    known = [load_known_checkpoint(bundles["A1"]), load_known_checkpoint(bundles["C3"])]
    rep = audit(rotated.cfg, anchors=rotated.anchors(), known=known)
    assert rep.verdict == AUTHENTIC, rep.lines()
    st = rotated.copy(tmp_path / "rb")
    conn = sqlite3.connect(st.data / INDEX_NAME)
    try:
        conn.execute("DROP TRIGGER proof_archive_log_no_delete")
        conn.execute("DELETE FROM proof_archive_log WHERE seq = 1")
        conn.commit()
    finally:
        conn.close()
    rep = audit(st.cfg, anchors=st.anchors(), known=known)
    _tampered(rep, "log-rollback")
    assert "log-truncated" in rep.codes()


def test_rotation_chain_stripped_from_bundle(
    rotated: Store, bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Dropping the rotation statements leaves a bundle manifest signed by a key the bundle no
    longer links to its clips' key."""
    idx = bundle_index(bundles["A1"])
    del idx["rotations"]
    forged = rewrite_zip(bundles["A1"], tmp_path / "strip.zip",
                         {"bundle.json": json.dumps(idx).encode()})  # fmt: skip
    _tampered(verify_bundle(forged, anchors=rotated.anchors()), "bundle-manifest-bad-signature")


def test_crash_between_destroying_and_replacing_the_key(
    rotated: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power cut after the old key was overwritten, before the successor took its name: the
    next start puts the successor in place."""
    st = rotated.copy(tmp_path / "mid")
    paths = ProofPaths.from_config(st.cfg)
    real = rotation.os.replace

    def cut(src: object, dst: object) -> None:
        if Path(str(dst)) == paths.key:
            raise KeyboardInterrupt("power cut")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(rotation.os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        rotation.rotate(st.cfg)
    monkeypatch.undo()
    with pytest.raises(ProofError):
        StationKey.load(paths.key)  # overwritten: the old key is gone
    fin = ProofFinalizer(st.cfg, start_worker=False)
    try:
        assert fin.key.fingerprint == fin.log.rotations()[-1].new_key
    finally:
        fin.close()
    assert audit(st.cfg).codes() == set()


@pytest.mark.parametrize(("before", "ok"), [(True, True), (False, False)])
def test_retention_record_of_the_retired_key(
    rotated: Store, tmp_path: Path, before: bool, ok: bool
) -> None:
    """A clip deleted by retention while the old key was in use keeps its signed record valid
    after the rotation; a record the retired key signs dated after it is not taken."""
    from datetime import datetime

    from station.store.ledger import Ledger
    from station.store.retention import DELETION_TYPE

    st = rotated.copy(tmp_path / "ret")
    plog = ProofLog.in_data_dir(st.data)
    try:
        rot = plog.rotations()[0]
        e = plog.archived(rot.old_key).entries()[1]
    finally:
        plog.close()
    body = json.loads(e.manifest)
    rotated_at = datetime.fromisoformat(rot.created_utc)
    when = rotated_at + (timedelta(seconds=-30) if before else timedelta(minutes=5))
    record = canonical_json(
        {  # as the station's retention writes one (station/store/retention.py)
            "type": DELETION_TYPE,
            "station": body["station"],
            "order_id": body["order_id"],
            "path": e.clip_path,
            "sha256": e.clip_sha256,
            "started_utc": datetime.fromisoformat(body["started_at"]).isoformat(),
            "deleted_utc": when.isoformat(),
            "min_age_days": 0,
            "reason": "disk floor",
        }
    )
    old = _retired_key(st)
    ledger = Ledger.in_data_dir(st.data)
    try:
        row = next(r for r in ledger.clips(body["order_id"]) if r.path == e.clip_path)
        ledger.mark_deleted(
            row.id, reason="disk floor", record=record, signature=old.sign(record),
            key_fingerprint=old.fingerprint, deleted_at=when,
        )  # fmt: skip
    finally:
        ledger.close()
    (st.data / e.clip_path).unlink()
    (st.data / str(body["manifest_path"])).unlink(missing_ok=True)
    rep = audit(st.cfg, anchors=st.anchors())
    if ok:
        assert rep.verdict == AUTHENTIC, rep.lines()
        assert any("deleted by retention" in c.reason for c in rep.checks)
    else:
        _tampered(rep, "clip-missing")


def test_each_key_s_certificate_is_archived_in_its_own_folder_and_found_there(
    rotated: Store, seaweed: Any
) -> None:
    """The archiver puts the certificate of the station key and of the key it retired (kept in
    ``proof-public/retired/``), each with the company CA's, under ``keys/<key fingerprint, 16
    hex>/``; the central /verify page finds each key's certificate there alone, however many
    files the station archived directly in ``keys/`` (renewals: each is a new object), and a
    key with none there is looked for among those (what a station archived before)."""
    import uuid

    from fleet_servers import S3_ACCESS_KEY, S3_SECRET_KEY

    from central.verify import MAX_KEYS_READ, Unread, archived_certificate
    from station.fleet.archiver import Archiver
    from station.fleet.objstore import station_prefix
    from station.proof.ca import pem as pem_of
    from station.proof.keys import load_public_pem

    bucket = "rot-" + uuid.uuid4().hex[:10]
    cfg = rotated.cfg.replace(
        "archive", enabled=True, endpoint_url=seaweed.endpoint, region="us-east-1", bucket=bucket,
        access_key_id=S3_ACCESS_KEY, secret_access_key=S3_SECRET_KEY, addressing_style="path",
        keyframes=False,
    )  # fmt: skip
    arch = Archiver(cfg)
    try:
        arch.store.client.create_bucket(Bucket=bucket)
        keys = f"{station_prefix(cfg.archive.prefix, cfg.station.name)}keys/"
        for i in range(MAX_KEYS_READ + 6):  # a station's renewals archived since
            arch.store.put_bytes(f"{keys}station-c2pa-chain-{i:016x}.pem", b"renewed %d" % i)
        arch.run_once()  # its first pass archives the public key and certificates, then the rest
        plog = ProofLog.in_data_dir(rotated.data)
        try:
            (rot,) = plog.rotations()
        finally:
            plog.close()
        reads: list[str] = []
        get = arch.store.client.get_object

        def spy(**kw: object) -> object:
            reads.append(str(kw["Key"]))
            return get(**kw)

        arch.store.client.get_object = spy
        ca = (rotated.data / "proof-public/company-ca.crt").read_bytes()
        for fp, pem in ((rot.old_key, rot.old_public_pem), (rot.new_key, rot.new_public_pem)):
            public = load_public_pem(pem)
            reads.clear()
            cert, issuer = archived_certificate(arch.store, cfg.station.name, public)
            assert cert is not None and cert.public_key() == public, fp
            assert issuer is not None and pem_of(issuer) == ca, fp
            assert reads and all(k.startswith(f"{keys}{fp[7:23]}/") for k in reads), reads
        with pytest.raises(Unread, match="more than"):  # a key of none there: the files in keys/
            archived_certificate(arch.store, cfg.station.name, StationKey.generate().public)
    finally:
        arch.stop()
