"""Recorder -> finalizer -> log -> export -> verify, end to end on real clips, TSAs and C2PA."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    build_store,
    bundle_index,
    read_zip,
    record_orders,
    store,
    tsa_ec,
    tsa_rsa,
)

from station import config as config_mod
from station.proof import c2pa_embed, merkle
from station.proof.bundle import export_order
from station.proof.c2pa_embed import read_c2pa
from station.proof.finalizer import ProofFinalizer, sha256_file
from station.proof.log import ProofLog
from station.proof.manifest import from_sidecar
from station.proof.verify import audit, verify_bundle, verify_clip


def _clips(data: Path) -> list[Path]:
    return sorted(data.glob("clips/**/*.mp4"))


def test_sidecar_index_and_file_agree_after_c2pa(store: Store) -> None:  # noqa: F811
    plog = ProofLog.in_data_dir(store.data)
    try:
        entries = plog.entries()
        assert [e.seq for e in entries] == [0, 1, 2]
        prev = "0" * 64
        for e in entries:
            clip = store.data / e.clip_path
            sidecar = json.loads(clip.with_suffix(".json").read_text("utf-8"))
            signed = from_sidecar(sidecar)
            assert signed.canonical == e.manifest  # the sidecar is the logged manifest
            assert sidecar["sha256"] == sha256_file(clip) == e.clip_sha256  # final bytes
            assert sidecar["size"] == clip.stat().st_size
            assert sidecar["seq"] == e.seq and sidecar["prev_manifest_sha256"] == prev
            assert sidecar["clock_synced"] is True and sidecar["c2pa"]["label"]
            info = read_c2pa(clip, (store.data / "proof-public/company-ca.crt").read_bytes())
            assert info.state == "Trusted" and info.timestamped
            assert info.assertion and info.assertion["log_index"] == e.seq
            prev = e.manifest_sha256
            assert all(t.status == "granted" for t in plog.timestamps_for(e.manifest_sha256))
        assert plog.latest_checkpoint().tree_size == 3
    finally:
        plog.close()


def test_audit_of_an_honest_store_passes(store: Store) -> None:  # noqa: F811
    report = audit(store.cfg, anchors=store.anchors())
    assert report.verdict == "authentic", report.lines()
    assert not [c for c in report.checks if c.status == "warn"], report.lines()
    bare = audit(store.cfg)  # the data dir's own CA and TSA roots vouch for nothing
    assert bare.ok and bare.verdict == "intact-unanchored", bare.lines()
    assert {"signer-unanchored", "time-unanchored"} <= bare.reasons()


def test_bare_clip_verifies_against_index_and_c2pa(store: Store) -> None:  # noqa: F811
    clip = _clips(store.data)[0]
    report = verify_clip(clip, store.cfg)
    assert report.ok, report.lines()
    assert report.facts["order_id"] in {"A1", "B2"} and report.facts["log_index"] >= 0
    ca = (store.data / "proof-public/company-ca.crt").read_bytes()
    from cryptography import x509

    alone = verify_clip(clip, None, trusted_ca=[x509.load_pem_x509_certificate(ca)])
    assert alone.ok, alone.lines()  # C2PA alone, with the company CA pinned
    assert not verify_clip(clip, None).ok  # nothing pinned: not enough


def test_honest_bundle_verifies_on_a_second_machine(store: Store, tmp_path: Path) -> None:  # noqa: F811
    bundle = tmp_path / "A1.zip"
    res = export_order(store.cfg, "A1", bundle)
    assert res.clips == 2 and res.timestamps == 2 and res.frames >= 4 and not res.warnings
    idx = bundle_index(bundle)
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
    for item in idx["clips"]:
        assert {item["clip"], item["manifest"], item["signature"], item["inclusion"]} <= names
        assert item["timestamps"] and item["frames"]
    assert {
        "VERIFY.md",
        "summary.html",
        "SHA256SUMS",
        "keys/station-key.pub.pem",
        "keys/station-key.crt",
        "keys/company-ca.crt",
        "keys/tsa-roots.pem",
    } <= names
    html = read_zip(bundle, "summary.html").decode()
    assert "订单" in html and "Order" in html and "A1" in html and "<img" in html
    # a fresh directory, a fresh process, no data dir, no config, nothing but the zip
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    copy = fresh / "bundle.zip"
    copy.write_bytes(bundle.read_bytes())
    # (this checkout's code, not whatever the venv has installed)
    env = {"PATH": os.environ["PATH"], "HOME": str(fresh), "LANG": "C.UTF-8",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # fmt: skip

    def verify(*pins: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "station.proof", "verify", *pins, "bundle.zip"],
            cwd=fresh,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    out = verify()  # nothing pinned: the CA and TSA root inside vouch for nothing
    assert out.returncode == 4, out.stdout + out.stderr
    assert "RESULT bundle.zip: INTACT BUT NOT ANCHORED" in out.stdout
    shutil.copy(store.data / "proof-public/company-ca.crt", fresh / "ca-from-the-seller.pem")
    shutil.copy(store.tsa.root, fresh / "root-from-the-tsa.pem")
    out = verify("--ca", "ca-from-the-seller.pem", "--tsa-ca", "root-from-the-tsa.pem")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "RESULT bundle.zip: AUTHENTIC" in out.stdout
    # and pinned to the CA and the TSA root it was given independently
    pinned = verify_bundle(
        copy,
        trusted_ca=_pem(store.data / "proof-public/company-ca.crt"),
        tsa_roots=_pem(store.tsa.root),
    )
    assert pinned.ok and not [c for c in pinned.checks if c.status == "warn"], pinned.lines()
    assert {c["order_id"] for c in pinned.facts["clips"]} == {"A1"}


def _pem(path: Path) -> list:
    from cryptography import x509

    return x509.load_pem_x509_certificates(path.read_bytes())


def test_verify_md_steps_work_with_standard_tools(store: Store, tmp_path: Path) -> None:  # noqa: F811
    bundle = export_order(store.cfg, "B2", tmp_path / "B2.zip").path
    out = tmp_path / "unzipped"
    with zipfile.ZipFile(bundle) as z:
        z.extractall(out)
    item = bundle_index(bundle)["clips"][0]
    manifest = json.loads((out / item["manifest"]).read_bytes())

    def run(*cmd: str) -> str:
        r = subprocess.run(cmd, cwd=out, capture_output=True, text=True, check=False)
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
        return r.stdout

    assert run("sha256sum", item["clip"]).split()[0] == manifest["sha256"]
    assert "OK" in run("sha256sum", "-c", "SHA256SUMS")
    run(
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "keys/station-key.pub.pem",
        "-rawin",
        "-in",
        item["manifest"],
        "-sigfile",
        item["signature"],
    )
    run(
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "keys/station-key.pub.pem",
        "-rawin",
        "-in",
        "log/checkpoint.json",
        "-sigfile",
        "log/checkpoint.sig",
    )
    assert "OK" in run(
        "openssl", "verify", "-trusted", "keys/company-ca.crt", "keys/station-key.crt"
    )
    assert "Verification: OK" in run(
        "openssl",
        "ts",
        "-verify",
        "-token_in",
        "-in",
        item["timestamps"][0],
        "-data",
        item["manifest"],
        "-CAfile",
        "keys/tsa-roots.pem",
    )
    assert "Time stamp:" in run(
        "openssl", "ts", "-reply", "-token_in", "-in", item["timestamps"][0], "-text"
    )
    # the start, as docs/proof.md shows it by hand: the start statement's canonical JSON
    run("sh", "-c", """python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))
        ["start_statement"], sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        end="")' "$0" > start.json""", item["manifest"])  # fmt: skip
    assert "Verification: OK" in run(
        "openssl", "ts", "-verify", "-token_in", "-in", item["start_timestamps"][0],
        "-data", "start.json", "-CAfile", "keys/tsa-roots.pem",
    )  # fmt: skip
    inclusion = json.loads((out / item["inclusion"]).read_text())
    assert manifest["order_id"] == "B2"
    assert merkle.leaf_hash((out / item["manifest"]).read_bytes()).hex() == inclusion["leaf_hash"]


def test_offline_tsa_queues_then_catches_up(tmp_path: Path, tsa_rsa) -> None:  # noqa: F811
    tsa_rsa.online = False
    try:
        st = build_store(tmp_path, tsa_rsa, ["Q1"], c2pa=False)
    finally:
        tsa_rsa.online = True
    plog = ProofLog.in_data_dir(st.data)
    try:
        e = plog.entries()[0]
        assert [t.status for t in plog.timestamps_for(e.manifest_sha256)] == ["pending"]
    finally:
        plog.close()
    fin = ProofFinalizer(st.cfg, start_worker=False)
    assert fin.tsa is not None
    assert fin.tsa.process_due()[0] == 0  # not due yet: backing off
    later = datetime.now(UTC) + timedelta(hours=1)
    assert fin.tsa.process_due(later)[0] >= 1
    fin.close()
    assert audit(st.cfg).ok


def test_c2pa_missing_degrades_with_a_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(c2pa_embed, "_c2pa", None)
    cfg = config_mod.load(None).with_data_dir(tmp_path / "d").replace("proof", c2pa=True)
    with caplog.at_level(logging.WARNING):
        fin = ProofFinalizer(cfg, start_worker=False)
    assert fin.embedder is None and "c2pa-python is not installed" in caplog.text
    done = record_orders(cfg, (fin,), ["N1"])
    fin.close()
    assert done[0].record is not None
    sidecar = json.loads((cfg.station.data_dir / done[0].record.manifest_path).read_text())
    assert sidecar["c2pa"] is None and sidecar["signature"]["alg"] == "Ed25519"
    assert audit(cfg).ok


def test_c2pa_on_without_certificate_degrades(tmp_path: Path, caplog) -> None:
    cfg = config_mod.load(None).with_data_dir(tmp_path / "d").replace("proof", c2pa=True)
    with caplog.at_level(logging.WARNING):
        fin = ProofFinalizer(cfg, start_worker=False)
    fin.close()
    assert fin.embedder is None and "packcam ca issue" in caplog.text


def test_many_fragments_are_remuxed_losslessly_before_c2pa(
    tmp_path: Path,
    tsa_ec,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import av

    monkeypatch.setattr(c2pa_embed, "MAX_FRAGMENTS", 4)  # the test clips have 12 fragments
    st = build_store(tmp_path, tsa_ec, ["R1"])
    clip = _clips(st.data)[0]
    sidecar = json.loads(clip.with_suffix(".json").read_text())
    assert sidecar["c2pa"]["remuxed_from_fragments"] == 12
    with av.open(str(clip)) as c:
        assert sum(1 for _ in c.decode(video=0)) == sidecar["frame_count"] == 12
    assert c2pa_embed.count_fragments(clip) < 12
    assert audit(st.cfg).ok and verify_clip(clip, st.cfg).ok
