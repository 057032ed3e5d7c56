"""Key rotation: the old log closes with a final checkpoint signed by both keys, a new one starts.

Honest rotation end to end (record, rotate, record, export from both logs, verify and audit
with the anchors pinned) and the attacks on it, each by its reason and exit code.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

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
from station.ledger import INDEX_NAME
from station.proof import ProofError, rotation
from station.proof.bundle import export_order
from station.proof.ca import CompanyCa
from station.proof.canonical import canonical_json
from station.proof.finalizer import ProofFinalizer
from station.proof.keys import StationKey
from station.proof.log import ProofLog
from station.proof.paths import ProofPaths
from station.proof.verify import Report, audit, verify_bundle, verify_clip

AUTHENTIC, UNANCHORED, TAMPERED = "authentic", "intact-unanchored", "tampered"


def _tampered(report: Report, code: str) -> None:
    assert report.verdict == TAMPERED and report.exit_code == 1, report.lines()
    assert code in report.codes(), (code, report.lines())


def _record(st: Store, orders: list[str], ago: timedelta = timedelta(minutes=1)) -> None:
    fin = ProofFinalizer(st.cfg, start_worker=False, clock=lambda: True)
    done = record_orders(st.cfg, (fin,), orders, ago=ago)
    assert all(d.record is not None for d in done), [d.error for d in done]
    fin.close()
    fin2 = ProofFinalizer(st.cfg, start_worker=False)
    assert fin2.tsa is not None
    fin2.tsa.process_due()
    fin2.close()


def _issue_next(st: Store, out: Path) -> Path:
    """The company CA certifies the prepared successor key (as `packcam ca issue --out`)."""
    paths = ProofPaths.from_config(st.cfg)
    nxt = rotation.prepare(paths)
    ca = CompanyCa.load(st.data.parent / "ca")
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
    res = rotation.rotate(st.cfg, cert=cert)
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
    rep = audit(rotated.cfg, anchors=anchors)
    assert rep.verdict == AUTHENTIC, rep.lines()
    assert any(c.name == "rotation[0]" and c.status == "ok" for c in rep.checks), rep.lines()
    # nothing pinned: intact but never authentic
    assert verify_bundle(bundles["A1"]).verdict == UNANCHORED
