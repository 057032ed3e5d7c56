"""The central site as a witness, on real PostgreSQL: append-only growth is cosigned, a forked
or rolled-back station log is refused with an alarm, and a stranger's verify catches a bundle
from the fork."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    TsaServer,
    build_store,
    read_zip,
    record_orders,
    tsa_ec,
    witness_doc,
)
from verify_support import Browserless

from central.site import CentralSite
from central.witness import (
    ACCEPT,
    FORK,
    NO_PROOF,
    ROLLBACK,
    cosign,
    judge,
    parse_tree_sizes,
    witness_key,
)
from station import cli as station_cli
from station import config as config_mod
from station.fleet.central_sync import CentralSync, SyncError
from station.proof import manifest as manifest_mod
from station.proof import merkle
from station.proof.bundle import export_order
from station.proof.canonical import canonical_json
from station.proof.finalizer import ProofFinalizer
from station.proof.keys import StationKey, load_public_pem, verify_signature
from station.proof.log import ProofLog
from station.store.ledger import INDEX_NAME


def test_judge_is_append_only() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(7)]
    r3, r7 = merkle.root(leaves[:3]).hex(), merkle.root(leaves).hex()
    proof = merkle.consistency_proof(3, leaves)
    assert judge(None, 3, r3, None, []).verdict == ACCEPT  # first use
    assert judge((3, r3), 7, r7, 3, proof).verdict == ACCEPT
    assert judge((3, r3), 3, r3, 3, []).verdict == ACCEPT  # an idle heartbeat
    assert judge((7, r7), 3, r3, 7, []).verdict == ROLLBACK
    assert judge((3, r3), 3, r7, 3, []).verdict == FORK
    other = [merkle.leaf_hash(b"x"), *leaves[1:]]
    assert judge((3, r3), 7, merkle.root(other).hex(), 3, proof).verdict == FORK
    assert judge((3, r3), 7, r7, 2, proof).verdict == NO_PROOF


def test_tree_sizes_are_whole_numbers_each_once_and_bounded() -> None:
    assert parse_tree_sizes([]) == []
    assert parse_tree_sizes(["7", "3, 7", "0"]) == [7, 3, 0]  # repeated, comma lists, once
    for bad in (["x"], ["-1"], ["1e3"], [""], ["3,"], ["٣"], [str(1 << 63)]):
        with pytest.raises(ValueError, match="tree_size"):
            parse_tree_sizes(bad)
    assert len(parse_tree_sizes([",".join(map(str, range(64)))])) == 64
    with pytest.raises(ValueError, match="at most 64"):
        parse_tree_sizes([",".join(map(str, range(65)))])


@dataclass
class Site:
    url: str
    dsn: str
    token: str
    cfg: config_mod.Config

    def station_cfg(self, cfg: config_mod.Config) -> config_mod.Config:
        return cfg.replace("central", enabled=True, url=self.url, token=self.token)

    def sync(self, cfg: config_mod.Config) -> dict[str, int]:
        sync = CentralSync(self.station_cfg(cfg))
        try:
            return sync.sync_once()
        finally:
            sync.stop()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=10) as resp:
            return json.loads(resp.read())


@contextlib.contextmanager
def _serve(pg_dsn: str, tmp_path: Path, test_config: dict[str, Any] | None) -> Iterator[Site]:
    from central.db import CentralDB
    from web.cli import make_server, run_server, server_url

    db = CentralDB(pg_dsn)
    db.migrate()
    token = db.add_station("station-01")
    db.close()
    cfg = config_mod.load(None).with_data_dir(tmp_path / "central").replace("central", dsn=pg_dsn)
    server = make_server(cfg, "127.0.0.1", 0, central=CentralSite(cfg), test_config=test_config)
    stop = threading.Event()
    thread = threading.Thread(target=run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    try:
        yield Site(server_url(server), pg_dsn, token, cfg)
    finally:
        stop.set()
        thread.join(timeout=15)


@pytest.fixture
def site(pg_dsn: str, tmp_path: Path) -> Iterator[Site]:
    with _serve(pg_dsn, tmp_path, None) as s:
        yield s


@pytest.fixture
def busy_site(pg_dsn: str, tmp_path: Path) -> Iterator[Site]:
    """A witness whose GET /witness/<station> lists the newest 2 cosigned checkpoints (the
    product lists 1000: a busy station passes that in days), as if many more had come."""
    with _serve(pg_dsn, tmp_path, {"WITNESS_NEWEST": 2}) as s:
        yield s


def _forked_copy(st: Store, dest: Path) -> Store:
    """The key holder rewrites leaf 1 (another order), re-signs it and signs a new checkpoint
    for the same number of leaves (the next heartbeat would)."""
    fork = st.copy(dest)
    key = StationKey.load(fork.data / "proof/station-key.pem")
    conn = sqlite3.connect(fork.data / INDEX_NAME, isolation_level=None)
    row = conn.execute("SELECT manifest FROM proof_log WHERE seq = 1").fetchone()
    m = manifest_mod.sign({**json.loads(row[0]), "order_id": "FORGED"}, key)
    conn.execute(
        "UPDATE proof_log SET manifest = ?, signature = ?, manifest_sha256 = ? WHERE seq = 1",
        (m.canonical, m.signature, m.sha256),
    )
    conn.close()
    plog = ProofLog.in_data_dir(fork.data)
    plog.checkpoint(key, "station-01")
    plog.close()
    return fork


def _rolled_back_copy(st: Store, dest: Path) -> Store:
    """No key needed to delete the newest clip; then a new checkpoint of the shorter log."""
    rb = st.copy(dest)
    conn = sqlite3.connect(rb.data / INDEX_NAME, isolation_level=None)
    n = conn.execute("SELECT COUNT(*) FROM proof_log").fetchone()[0]
    conn.execute("DELETE FROM proof_log WHERE seq = ?", (n - 1,))
    conn.close()
    plog = ProofLog.in_data_dir(rb.data)
    plog.checkpoint(StationKey.load(rb.data / "proof/station-key.pem"), "station-01")
    plog.close()
    return rb


def test_witness_cosigns_growth_and_refuses_fork_and_rollback(
    site: Site,
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    st = build_store(tmp_path / "st", tsa_ec, ["A1", "B2", "A1"])
    assert site.sync(st.cfg)["checkpoints"] >= 1
    # the log grows: the next checkpoint comes with a consistency proof and is cosigned
    fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
    record_orders(st.cfg, (fin,), ["C3"], ago=timedelta(minutes=1))
    assert fin.tsa is not None
    fin.close()  # signs the checkpoint covering C3
    fin = ProofFinalizer(st.cfg, start_worker=False)
    assert fin.tsa is not None
    fin.tsa.process_due()  # its tokens
    size = fin.log.size()
    fin.close()
    site.sync(st.cfg)
    doc = site.get("/witness/station-01")
    wkey = load_public_pem(doc["public_key_pem"].encode())
    sizes = [c["tree_size"] for c in doc["checkpoints"]]
    assert sizes[0] == size and len(set(sizes)) >= 2 and not doc["alarms"], doc
    for c in doc["checkpoints"]:
        assert verify_signature(
            wkey, base64.b64decode(c["cosigned_b64"]), base64.b64decode(c["cosignature_b64"])
        )
    assert site.get("/witness")["stations"][0]["tree_size"] == size

    # a fork: same number of leaves, another root -> refused, alarm
    fork = _forked_copy(st, tmp_path / "fork")
    with pytest.raises(SyncError, match="log-fork"):
        site.sync(fork.cfg)
    # a rollback: the newest clip deleted with its leaf -> refused, alarm
    rb = _rolled_back_copy(st, tmp_path / "rb")
    with pytest.raises(SyncError, match="log-rollback"):
        site.sync(rb.cfg)
    doc = site.get("/witness/station-01")
    assert {a["kind"] for a in doc["alarms"]} == {"log-fork", "log-rollback"}
    assert doc["checkpoints"][0]["tree_size"] == size  # nothing of the fork was cosigned

    # the stranger: the fork's bundle against the witness's cosigned checkpoints
    witness_file = tmp_path / "witness.json"
    witness_file.write_text(json.dumps(doc))
    bundle = export_order(fork.cfg, "A1", tmp_path / "forked.zip").path
    pins = [
        "--ca", str(st.data / "proof-public/company-ca.crt"), "--tsa-ca", str(tsa_ec.root),
    ]  # fmt: skip
    rc = station_cli.main(
        ["verify", str(bundle), *pins, "--witness", str(witness_file), "--json",
         "--no-default-trust"]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and "log-fork" in out["reasons"], out
    # the stranger's kit (stdlib + openssl) inside the bundle sees it too
    kit = tmp_path / "verify.py"
    kit.write_bytes(read_zip(bundle, "verify.py"))
    r = subprocess.run(
        [sys.executable, "-I", str(kit), str(bundle), *pins, "--witness", str(witness_file)],
        capture_output=True, text=True, check=False, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 1 and "[log-fork]" in r.stdout, r.stdout + r.stderr
    # the honest station's bundle is cosigned: fetched from the witness itself
    honest = export_order(st.cfg, "C3", tmp_path / "honest.zip").path
    url = site.url.rstrip("/") + "/witness/station-01"
    rc = station_cli.main(
        ["verify", str(honest), *pins, "--witness", url, "--json", "--no-default-trust"]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and any(c["name"] == "witness" and c["status"] == "ok" for c in out["checks"])
    # an unreachable witness is said, not a crash
    rc = station_cli.main(
        ["verify", str(honest), *pins, "--witness", "http://127.0.0.1:9/witness/x", "--json",
         "--no-default-trust"]
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and "checkpoint-unwitnessed" in out["reasons"]
    r = subprocess.run(
        [sys.executable, "-I", str(kit), str(honest), *pins, "--witness", str(witness_file)],
        capture_output=True, text=True, check=False, timeout=120, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 0 and "OK   witness" in r.stdout, r.stdout + r.stderr
    shutil.rmtree(tmp_path / "fork")


def test_witness_accepts_a_rotation_and_refuses_the_retired_key(
    site: Site,
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from station.proof import rotation

    st = build_store(tmp_path / "st", tsa_ec, ["A1", "B2"], c2pa=False)
    site.sync(st.cfg)
    keep = st.copy(tmp_path / "thief")  # the thief's copy of the data dir, old key included
    # a new key without a rotation: refused, with an alarm (as with replace-station's case)
    nokey = st.copy(tmp_path / "nokey")
    (nokey.data / "proof/station-key.pem").unlink()
    StationKey.load_or_create(nokey.data / "proof/station-key.pem")
    with pytest.raises(SyncError, match="replace-station"):
        site.sync(nokey.cfg)
    assert "key-unrotated" in {a["kind"] for a in site.get("/witness/station-01")["alarms"]}
    # grow the log after the last push, then rotate: the final checkpoint needs a proof
    fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
    record_orders(st.cfg, (fin,), ["C3"], ago=timedelta(minutes=1), frames=13)
    fin.close()
    from station.proof.ca import CompanyCa
    from station.proof.paths import ProofPaths

    nxt = rotation.prepare(ProofPaths.from_config(st.cfg))
    cert = tmp_path / "next.crt"
    ca = CompanyCa.load(tmp_path / "st" / "ca")
    cert.write_bytes(ca.issue_station("station-01", nxt.public).key_cert_pem)
    res = rotation.rotate(st.cfg, cert=cert)
    assert res.tree_size == 3
    fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
    record_orders(st.cfg, (fin,), ["D4"], ago=timedelta(seconds=30), frames=14)
    fin.close()
    sent = site.sync(st.cfg)  # rotation first, then hello under the new key, new log from 0
    assert sent["checkpoints"] >= 1
    doc = site.get("/witness/station-01")
    assert [r["tree_size"] for r in doc["rotations"]] == [3]
    assert doc["rotations"][0]["new_key"] == res.rotation.new_key
    assert doc["checkpoints"][0]["tree_size"] == 1  # the new key's log
    assert not {"log-fork", "log-rollback"} & {a["kind"] for a in doc["alarms"]}, doc["alarms"]
    # the thief signs a checkpoint of the old log past its final one: refused, alarm
    plog = ProofLog.in_data_dir(keep.data)
    old_key = StationKey.load(keep.data / "proof/station-key.pem")
    conn = sqlite3.connect(keep.data / INDEX_NAME, isolation_level=None)
    row = conn.execute("SELECT manifest FROM proof_log ORDER BY seq DESC LIMIT 1").fetchone()
    for seq in (2, 3):  # two late leaves: the log goes past the final size of 3
        m = manifest_mod.sign({**json.loads(row[0]), "seq": seq, "order_id": "LATE"}, old_key)
        conn.execute(
            "INSERT INTO proof_log SELECT ?, station, clip_path || ?, clip_sha256, ?,"
            " leaf_hash, ?, ?, key_fingerprint, created_utc FROM proof_log WHERE seq = 1",
            (seq, f".{seq}", m.sha256, m.canonical, m.signature),
        )
    conn.close()
    plog.checkpoint(old_key, "station-01")
    plog.close()
    cp = ProofLog.in_data_dir(keep.data)
    last = cp.latest_checkpoint()
    cp.close()
    assert last is not None
    import urllib.request as ur

    item = {
        "local_id": 999, "tree_size": last.tree_size, "root_hash": last.root_hash,
        "body_b64": base64.b64encode(last.body).decode(),
        "signature_b64": base64.b64encode(last.signature).decode(),
        "created_utc": last.created_utc, "consistency": {"old_size": 0, "proof": []},
    }  # fmt: skip
    req = ur.Request(
        site.url.rstrip("/") + "/api/fleet/v1/checkpoints",
        data=json.dumps({"checkpoints": [item]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {site.token}"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as ei:
        ur.urlopen(req, timeout=10)
    assert ei.value.code == 409 and b"log-after-rotation" in ei.value.read()
    doc = site.get("/witness/station-01")
    assert "log-after-rotation" in {a["kind"] for a in doc["alarms"]}
    # a stranger holding the witness's record catches a bundle from the thief's log
    wfile = tmp_path / "w.json"
    wfile.write_text(json.dumps(doc))
    # the thief's bundle proves A1 with his own newest checkpoint (the export would pick the
    # one the witness accepted, the sync's cursor, as it does for an honest restored station)
    conn = sqlite3.connect(keep.data / INDEX_NAME, isolation_level=None)
    conn.execute("DELETE FROM sync_cursors")
    conn.close()
    bundle = export_order(keep.cfg, "A1", tmp_path / "thief.zip").path
    rc = station_cli.main(
        ["verify", str(bundle), "--witness", str(wfile), "--json", "--no-default-trust"]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and "log-after-rotation" in out["reasons"], out
    # the stranger's kit reads the same witness file: the thief's bundle fails, the honest
    # bundle of the closed log (its final checkpoint cosigned) passes, sizes of the two logs
    # never confused
    kit = tmp_path / "verify.py"
    kit.write_bytes(read_zip(bundle, "verify.py"))

    def run_kit(b: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", str(kit), str(b), "--witness", str(wfile), *extra],
            capture_output=True, text=True, check=False, timeout=120,
            env={"PATH": "/usr/bin:/bin"},
        )  # fmt: skip

    r = run_kit(bundle)
    assert r.returncode == 1 and "[log-after-rotation]" in r.stdout, r.stdout + r.stderr
    honest = export_order(st.cfg, "A1", tmp_path / "honest-old.zip").path
    pins = ["--ca", str(st.data / "proof-public/company-ca.crt"), "--tsa-ca", str(tsa_ec.root)]
    r = run_kit(honest, *pins)
    assert r.returncode == 0 and "OK   witness" in r.stdout, r.stdout + r.stderr
    rc = station_cli.main(
        ["verify", str(honest), *pins, "--witness", str(wfile), "--json", "--no-default-trust"]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and any(c["name"] == "witness" and c["status"] == "ok" for c in out["checks"])
    assert not {"log-fork", "log-after-rotation"} & set(out["reasons"]), out


def test_a_restored_station_proves_an_old_clip_with_a_checkpoint_the_witness_cosigned(
    site: Site,
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A station put back from a backup of its data dir signs leaf numbers again: its log forks
    from the one the witness cosigned, and the witness refuses it. A clip recorded before the
    backup is in the part both forks share: the station's own bundle of it proves it with the
    newest checkpoint the witness accepted, and passes `verify --witness` (a seller's genuine
    evidence). A clip of the fork has no such checkpoint: the export says so and what to do,
    and its bundle still fails with log-fork (the verifier is not weakened)."""
    from station.proof.verify import verify_bundle

    st = build_store(tmp_path / "st", tsa_ec, ["A1", "B2"], c2pa=False)
    site.sync(st.cfg)
    restored = st.copy(tmp_path / "restored")  # the backup, taken after that sync
    fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
    record_orders(st.cfg, (fin,), ["C3"], ago=timedelta(minutes=1), frames=13)
    fin.close()
    site.sync(st.cfg)  # the witness cosigns the log of 3 entries
    # the SD card died; the backup is put back and records another clip: leaf 2 again
    fin = ProofFinalizer(restored.cfg, start_worker=False, clock=lambda: True)
    record_orders(restored.cfg, (fin,), ["D4"], ago=timedelta(seconds=30), frames=14)
    fin.close()
    with pytest.raises(SyncError, match="log-fork"):
        site.sync(restored.cfg)
    doc = site.get("/witness/station-01")
    cfg = site.station_cfg(restored.cfg)

    def witness_verdict(bundle: Path) -> list[tuple[str, str]]:
        report = verify_bundle(bundle, witness=doc)
        return [(c.status, c.code) for c in report.checks if c.name == "witness"]

    old = export_order(cfg, "A1", tmp_path / "a1.zip")
    assert old.checkpoint_size == 2  # the witnessed prefix, not the fork's newest checkpoint
    assert not [w for w in old.warnings if "witness" in w], old.warnings
    assert witness_verdict(old.path) == [("ok", "")]
    new = export_order(cfg, "D4", tmp_path / "d4.zip")
    assert new.checkpoint_size == 3
    (said,) = [w for w in new.warnings if "witness" in w]
    assert "log-fork" in said and "restored from a backup" in said, said
    assert said not in json.loads(read_zip(new.path, "bundle.json"))["warnings"]  # said, not kept
    assert witness_verdict(new.path) == [("fail", "log-fork")]
    shutil.rmtree(tmp_path / "restored")


def test_a_pinned_witness_key_refuses_a_witness_file_the_seller_made(
    site: Site,
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The seller hands the buyer a "saved witness file" cosigned by a key of its own. The
    buyer pins the witness key GET /witness prints: both verifiers fail that file
    (witness-untrusted) and pass the site's own, saved or fetched; unpinned, the file's key is
    only named, as before, and the output says it was not pinned. The site's /verify page is
    the witness itself: it holds a bundle to its own cosignatures, pinned to its own key, so
    the bundle of a log the witness refused (a station restored from a backup: every check of
    its own passes) fails there with log-fork."""
    st = build_store(tmp_path / "st", tsa_ec, ["A1", "B2"], c2pa=False)
    site.sync(st.cfg)
    restored = st.copy(tmp_path / "restored")  # a backup, put back later: a fork
    fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
    record_orders(st.cfg, (fin,), ["C3"], ago=timedelta(minutes=1), frames=13)
    fin.close()
    site.sync(st.cfg)
    pin = site.get("/witness")["witness_key"]
    assert pin.startswith("SHA256:") and site.get("/witness/station-01")["witness_key"] == pin
    honest = export_order(st.cfg, "A1", tmp_path / "honest.zip").path
    real, forged = tmp_path / "witness.json", tmp_path / "forged.json"
    real.write_text(json.dumps(site.get("/witness/station-01")))
    seller = StationKey.generate()
    forged.write_text(json.dumps(witness_doc(honest, seller)))
    url = site.url.rstrip("/") + "/witness/station-01"
    pins = [
        "--ca", str(st.data / "proof-public/company-ca.crt"), "--tsa-ca", str(tsa_ec.root),
        "--no-default-trust", "--json",
    ]  # fmt: skip

    def packcam(*args: str) -> tuple[int, dict[str, Any]]:
        rc = station_cli.main(["verify", str(honest), *pins, *args])
        out = json.loads(capsys.readouterr().out)
        return rc, next(c for c in out["checks"] if c["name"] == "witness")

    for source in (str(real), url):
        rc, check = packcam("--witness", source, "--witness-key", pin)
        assert rc == 0 and check["status"] == "ok" and "pinned witness key" in check["reason"]
    # the seller's file, pinned: refused as the verifier's own input (exit 3), no verdict
    rc = station_cli.main(["verify", str(honest), *pins, "--witness", str(forged),
                           "--witness-key", pin])  # fmt: skip
    said = capsys.readouterr()
    assert rc == 3 and not said.out and "witness-untrusted" in said.err, said
    assert seller.fingerprint in said.err and pin in said.err, said.err
    rc, check = packcam("--witness", str(forged))  # nothing pinned: named, as before
    assert (
        rc == 0 and "not pinned" in check["reason"] and seller.fingerprint[:23] in check["reason"]
    )
    assert station_cli.main(["verify", str(honest), *pins, "--witness-key", pin]) == 3
    capsys.readouterr()

    kit = tmp_path / "verify.py"
    kit.write_bytes(read_zip(honest, "verify.py"))

    def run_kit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", str(kit), str(honest), *pins[:4], *args],
            capture_output=True, text=True, check=False, timeout=120,
            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
        )  # fmt: skip

    r = run_kit("--witness", str(real), "--witness-key", pin)
    assert r.returncode == 0 and "OK   witness" in r.stdout, r.stdout + r.stderr
    r = run_kit("--witness", str(forged), "--witness-key", pin)
    assert r.returncode == 3 and "RESULT:" not in r.stdout, r.stdout + r.stderr
    assert "witness-untrusted" in r.stderr and seller.fingerprint in r.stderr, r.stderr
    r = run_kit("--witness", str(forged))
    assert r.returncode == 0 and "not pinned" in r.stdout, r.stdout + r.stderr
    assert run_kit("--witness-key", pin).returncode == 2

    # the site's own /verify page, over the real server: the witness's own record, its own key
    page = Browserless(site.url)
    status, text = page.upload(honest.read_bytes(), "honest.zip")
    assert status == 200 and "pinned witness key" in text and pin[:23] in text, text
    fin = ProofFinalizer(restored.cfg, start_worker=False, clock=lambda: True)
    record_orders(restored.cfg, (fin,), ["D4"], ago=timedelta(seconds=30), frames=14)
    fin.close()
    with pytest.raises(SyncError, match="log-fork"):
        site.sync(restored.cfg)
    bundle = export_order(site.station_cfg(restored.cfg), "D4", tmp_path / "d4.zip").path
    status, text = page.upload(bundle.read_bytes(), "d4.zip")
    failed = re.findall(r'<li class="fail"><b>FAIL</b>\s*([^:<]+):.*?\[([a-z0-9-]+)\]', text, re.S)
    assert status == 200 and 'class="verdict fail"' in text, text
    assert failed == [("witness", "log-fork")], text
    shutil.rmtree(tmp_path / "restored")


def _rewritten_history(st: Store, dest: Path) -> Store:
    """The key holder's fork of an old size (_forked_copy), its every trace of the history the
    witness saw gone: the checkpoints signed before (a clip's own checkpoint is the forged one)
    and the sync's cursor (which names the one the witness accepted, for the export)."""
    fork = _forked_copy(st, dest)
    conn = sqlite3.connect(fork.data / INDEX_NAME, isolation_level=None)
    conn.execute("DELETE FROM sync_cursors")
    conn.execute("DELETE FROM proof_checkpoints WHERE id < (SELECT MAX(id) FROM proof_checkpoints)")
    conn.close()
    return fork


def _cosign_more(site: Site, station: str, sizes: range) -> None:
    """What a busy station's pushes leave in the witness: a cosigned checkpoint of its log (its
    current key) at each of ``sizes``, newer than everything before (the witness's own key, as
    central.db.CentralDB.witness_checkpoint would; the roots are made up: only sizes count)."""
    key = witness_key(site.cfg)
    with psycopg.connect(site.dsn, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, key_fingerprint FROM stations WHERE name = %s", (station,))
        station_id, fp = cur.fetchone()  # type: ignore[misc]
        rows = []
        for n in sizes:
            root = format(n, "064x")
            body = canonical_json(
                {"type": "packcam-checkpoint", "station": station, "tree_size": n,
                 "root_sha256": root, "key": fp}
            )  # fmt: skip
            cosigned, cosig = cosign(key, station, body, n, root)
            rows.append((station_id, n, root, body, b"", cosigned, cosig, fp))
        cur.executemany(
            "INSERT INTO witnessed(station_id, tree_size, root_hash, body, signature, cosigned,"
            " cosignature, log_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def test_the_verify_page_holds_a_bundle_re_signed_at_an_old_size_past_the_newest_1000(
    site: Site,
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The key holder rewrites old history and re-signs a checkpoint at a size the witness
    cosigned long ago: more than the 1000 newest cosigned checkpoints later (a busy station,
    days), the central /verify page still holds the bundle to the witness's record at exactly
    that size and fails it with log-fork; the station's genuine old bundle is cosigned."""
    from central.db import CentralDB
    from central.verify import check_bundle_witnessed
    from station.proof.verify import verify_bundle

    st = build_store(tmp_path / "st", tsa_ec, ["A1", "B2"], c2pa=False)
    site.sync(st.cfg)  # the witness cosigns the log of 2 entries
    honest = export_order(site.station_cfg(st.cfg), "A1", tmp_path / "a1.zip")
    assert honest.checkpoint_size == 2
    fork = _rewritten_history(st, tmp_path / "fork")  # re-signed at 2 entries
    forked = export_order(fork.cfg, "A1", tmp_path / "forked.zip").path
    _cosign_more(site, "station-01", range(3, 3 + 1000))
    db = CentralDB(site.dsn)
    try:

        def witness_verdict(bundle: Path) -> list[tuple[str, str]]:
            report = verify_bundle(bundle)
            check_bundle_witnessed(report, db, witness_key(site.cfg))
            return [(c.status, c.code) for c in report.checks if c.name == "witness"]

        assert witness_verdict(forked) == [("fail", "log-fork")]
        assert witness_verdict(honest.path) == [("ok", "")]
    finally:
        db.close()
    with psycopg.connect(site.dsn, autocommit=True) as conn, conn.cursor() as cur:
        # the lookup of a size reads an index, not the station's every cosigned checkpoint
        cur.execute("SET enable_seqscan = off")
        cur.execute(
            "EXPLAIN SELECT w.* FROM witnessed w JOIN stations s ON s.id = w.station_id"
            " WHERE s.name = 'station-01' AND w.tree_size = ANY(ARRAY[2]::bigint[])"
        )
        plan = " ".join(str(r[0]) for r in cur.fetchall())
    assert "witnessed_size" in plan, plan
    shutil.rmtree(tmp_path / "fork")


def test_an_old_bundle_is_held_to_the_witness_record_of_its_own_tree_size(
    busy_site: Site,
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """GET /witness/<station> lists the newest cosigned checkpoints; a bundle exported before
    many more names a size long out of them. Held to that record, the station's genuine old
    bundle and one re-signed at that size (a fork) are both merely "not cosigned", and both
    verifiers say which record to fetch: /witness/<station>?tree_size=N. That record holds the
    cosigned checkpoint of N: the genuine bundle is cosigned, the fork fails with log-fork, in
    packcam verify (which asks a witness URL for the bundle's sizes itself), in the bundle's
    verify.py and on the central /verify page. A size the witness never cosigned is said to be
    one, garbage sizes are a 400."""
    site = busy_site
    st = build_store(tmp_path / "st", tsa_ec, ["A1", "B2"], c2pa=False)
    site.sync(st.cfg)  # cosigned: the log of 2 entries
    honest = export_order(site.station_cfg(st.cfg), "A1", tmp_path / "a1.zip").path
    fork = _rewritten_history(st, tmp_path / "fork")  # re-signed at 2 entries
    forked = export_order(fork.cfg, "A1", tmp_path / "forked.zip").path
    for n, order in enumerate(("C3", "D4", "E5")):  # the station goes on: 3, 4, 5 cosigned
        fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
        record_orders(st.cfg, (fin,), [order], ago=timedelta(seconds=90 - 30 * n), frames=13)
        fin.close()
        site.sync(st.cfg)
    plain = site.get("/witness/station-01")
    assert [c["tree_size"] for c in plain["checkpoints"]] == [5, 4], plain["checkpoints"]
    assert plain["newest"] == 2 and plain["requested_sizes"] == [], plain

    def witness_check(bundle: Path, doc: dict[str, Any]) -> tuple[str, str, str]:
        from station.proof.verify import verify_bundle

        (c,) = [c for c in verify_bundle(bundle, witness=doc).checks if c.name == "witness"]
        return c.status, c.code, c.reason

    fetch = "fetch /witness/station-01?tree_size=2"
    for bundle in (honest, forked):
        status, code, why = witness_check(bundle, plain)
        assert (status, code) == ("warn", "checkpoint-unwitnessed") and fetch in why, why
    record = site.get("/witness/station-01?tree_size=2")
    assert [c["tree_size"] for c in record["checkpoints"]] == [5, 4, 2], record["checkpoints"]
    assert record["requested_sizes"] == [2] and record["never_witnessed_sizes"] == []
    assert witness_check(honest, record)[:2] == ("ok", "")
    assert witness_check(forked, record)[:2] == ("fail", "log-fork")
    both = site.get("/witness/station-01?tree_size=2&tree_size=999,1")
    # the first sync sent the log of 2 entries: the witness never saw the one of 1
    assert both["requested_sizes"] == [2, 999, 1] and both["never_witnessed_sizes"] == [999, 1]
    # a size the witness never cosigned: said so, not "fetch it" (a clip not synced yet)
    fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
    record_orders(st.cfg, (fin,), ["F6"], ago=timedelta(seconds=5), frames=13)
    fin.close()
    unsynced = export_order(site.station_cfg(st.cfg), "F6", tmp_path / "f6.zip")
    assert unsynced.checkpoint_size == 6
    asked = site.get("/witness/station-01?tree_size=6")
    assert asked["never_witnessed_sizes"] == [6]
    status, code, why = witness_check(unsynced.path, asked)
    assert code == "checkpoint-unwitnessed", why
    assert "never cosigned a checkpoint of this log at 6 entries" in why
    assert "fetch" not in why, why

    # garbage: a clear 400, nothing looked up
    too_many = ",".join(str(n) for n in range(65))
    for query in ("abc", "-1", "1.5", "", "2,,3", "%EF%BC%92", "0x10", too_many, "9" * 20):
        with pytest.raises(urllib.error.HTTPError) as ei:
            site.get(f"/witness/station-01?tree_size={query}")
        assert ei.value.code == 400 and b"tree_size" in ei.value.read(), query

    # packcam verify: the saved plain record says where to look; the URL asks for the sizes
    pin = site.get("/witness")["witness_key"]
    plain_file, record_file = tmp_path / "plain.json", tmp_path / "record.json"
    plain_file.write_text(json.dumps(plain))
    record_file.write_text(json.dumps(record))
    url = site.url.rstrip("/") + "/witness/station-01"

    def packcam(bundle: Path, source: str) -> tuple[int, dict[str, Any]]:
        rc = station_cli.main(
            ["verify", str(bundle), "--witness", source, "--witness-key", pin, "--json",
             "--no-default-trust"]
        )  # fmt: skip
        out = json.loads(capsys.readouterr().out)
        return rc, next(c for c in out["checks"] if c["name"] == "witness")

    rc, check = packcam(forked, str(plain_file))  # the fork passes this record (rc 4: no CA)
    assert rc == 4 and check["code"] == "checkpoint-unwitnessed", check
    assert fetch in check["reason"], check
    for source in (str(record_file), url):
        rc, check = packcam(forked, source)
        assert rc == 1 and check["code"] == "log-fork", (source, check)
        rc, check = packcam(honest, source)
        assert check["status"] == "ok", (source, check)
    # the bundle's own verify.py agrees
    kit = tmp_path / "verify.py"
    kit.write_bytes(read_zip(forked, "verify.py"))

    def run_kit(bundle: Path, wfile: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", str(kit), str(bundle), "--witness", str(wfile),
             "--witness-key", pin],
            capture_output=True, text=True, check=False, timeout=120,
            env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
        )  # fmt: skip

    r = run_kit(forked, plain_file)
    assert r.returncode == 4 and "[checkpoint-unwitnessed]" in r.stdout, r.stdout + r.stderr
    assert fetch in r.stdout, r.stdout
    r = run_kit(forked, record_file)
    assert r.returncode == 1 and "[log-fork]" in r.stdout, r.stdout + r.stderr
    r = run_kit(honest, record_file)
    assert "OK   witness" in r.stdout, r.stdout + r.stderr

    # the central /verify page looks up exactly the sizes the bundle cites
    page = Browserless(site.url)
    status, text = page.upload(forked.read_bytes(), "forked.zip")
    failed = re.findall(r'<li class="fail"><b>FAIL</b>\s*([^:<]+):.*?\[([a-z0-9-]+)\]', text, re.S)
    assert status == 200 and ("witness", "log-fork") in failed, text
    status, text = page.upload(honest.read_bytes(), "a1.zip")
    assert status == 200 and "pinned witness key" in text and "log-fork" not in text, text
    shutil.rmtree(tmp_path / "fork")


def test_the_record_of_a_station_named_with_a_slash_is_served(site: Site) -> None:
    """A station name may hold "/" (names are 1-64 printable characters); the verifiers print
    its record's path quoted (hall%2F2), which the site must serve, not answer 404."""
    from central.db import CentralDB

    db = CentralDB(site.dsn)
    db.add_station("hall/2")
    db.close()
    for path in ("/witness/hall%2F2", "/witness/hall/2?tree_size=3"):
        doc = site.get(path)
        assert doc["station"] == "hall/2" and doc["checkpoints"] == [], doc
    assert site.get("/witness/hall/2?tree_size=3")["never_witnessed_sizes"] == [3]


def test_the_verify_page_whose_own_record_fails_its_key_warns_not_fails(
    site: Site,
    tsa_ec: TsaServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The central /verify page holds a bundle to its own witness record; when a stored
    cosignature no longer verifies with the site's witness key (its own data damaged, or the
    key replaced), that is the site's fault, not the bundle's: a warning that the bundle
    could not be held to the record (checkpoint-unwitnessed), never a failure or a crash."""
    from central.db import CentralDB
    from central.verify import check_bundle_witnessed
    from station.proof.verify import verify_bundle

    st = build_store(tmp_path / "st", tsa_ec, ["A1"], c2pa=False)
    site.sync(st.cfg)
    honest = export_order(site.station_cfg(st.cfg), "A1", tmp_path / "a1.zip").path
    db = CentralDB(site.dsn)
    try:

        def witness_verdict() -> list[tuple[str, str]]:
            report = verify_bundle(honest)
            check_bundle_witnessed(report, db, witness_key(site.cfg))
            return [(c.status, c.code) for c in report.checks if c.name == "witness"]

        assert witness_verdict() == [("ok", "")]
        with psycopg.connect(site.dsn, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(  # one bit of every stored cosignature flipped
                "UPDATE witnessed SET cosignature = set_byte(cosignature, 7, "
                "get_byte(cosignature, 7) # 1)"
            )
        assert witness_verdict() == [("warn", "checkpoint-unwitnessed")]
    finally:
        db.close()
