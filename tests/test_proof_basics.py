"""Canonical JSON, the station key, signed manifests and the SQLite log on their own."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from station.proof import ProofError
from station.proof import manifest as manifest_mod
from station.proof.ca import CompanyCa
from station.proof.canonical import canonical_json
from station.proof.keys import StationKey, fingerprint, load_public_pem, write_public
from station.proof.log import ProofLog
from station.store.ledger import Ledger


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 8785 appendix B number examples (ECMAScript Number.prototype.toString)
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (5e-324, "5e-324"),
        (333333333.3333333, "333333333.3333333"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (9007199254740992.0, "9007199254740992"),
        (295147905179352830000.0, "295147905179352830000"),
        (4.5, "4.5"),
        (2**60, "1152921504606846976"),
        ("é\n\u2028", '"é\\n\u2028"'),
        (None, "null"),
        (True, "true"),
        ([1, "a"], '[1,"a"]'),
    ],
)
def test_canonical_scalars(value: object, expected: str) -> None:
    assert canonical_json(value) == expected.encode("utf-8")


def test_canonical_objects_sort_by_utf16_and_round_trip() -> None:
    obj = {"b": 1, "a": {"z": [1.5, None], "\U0001f600": 1, "\uffff": 2}, "订单": "封箱"}
    out = canonical_json(obj)
    assert out.decode() == '{"a":{"z":[1.5,null],"\U0001f600":1,"\uffff":2},"b":1,"订单":"封箱"}'
    assert canonical_json(json.loads(out)) == out
    with pytest.raises(ValueError):
        canonical_json(float("nan"))
    with pytest.raises(TypeError):
        canonical_json({1: 2})


def test_station_key_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "proof" / "station-key.pem"
    key, created = StationKey.load_or_create(path)
    assert created and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created2 = StationKey.load_or_create(path)
    assert not created2 and again.fingerprint == key.fingerprint
    assert key.fingerprint.startswith("SHA256:") and len(key.fingerprint) == 7 + 64
    assert fingerprint(load_public_pem(key.public_pem())) == key.fingerprint
    os.chmod(path, 0o644)  # a loosened key file is tightened again on load
    StationKey.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ProofError):
        StationKey.load(tmp_path / "missing.pem")


def test_a_key_write_cut_short_leaves_no_key_file_to_stop_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "proof" / "station-key.pem"

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        with pytest.raises(ProofError, match="cannot create station key"):
            StationKey.load_or_create(path)
    assert list(path.parent.iterdir()) == []  # no empty station-key.pem, no temp file
    key, created = StationKey.load_or_create(path)  # the next start makes one
    assert created and StationKey.load(path).fingerprint == key.fingerprint


def test_publishing_the_key_removes_what_a_killed_publisher_left(
    tmp_path: Path, dead_pid: int
) -> None:
    public = tmp_path / "proof-public" / "station-key.pub.pem"
    public.parent.mkdir()
    stale = public.with_name(f".{public.name}.{dead_pid}.new")
    stale.write_bytes(b"-----BEGIN")
    write_public(public, b"pem")
    assert public.read_bytes() == b"pem"
    assert sorted(p.name for p in public.parent.iterdir()) == [public.name]


def test_reissuing_replaces_the_c2pa_key_whole_and_leaves_no_temp_file(
    tmp_path: Path, dead_pid: int
) -> None:
    ca = CompanyCa.create(tmp_path / "ca", "Test Co CA")
    key, _ = StationKey.load_or_create(tmp_path / "proof" / "station-key.pem")
    public = tmp_path / "proof-public"
    c2pa_key = tmp_path / "proof" / "c2pa-key.pem"
    files = {
        "c2pa_key": c2pa_key,
        "c2pa_cert": public / "c2pa-chain.pem",
        "key_cert": public / "station-key.crt",
        "ca_cert": public / "company-ca.crt",
    }
    ca.issue_station("station-01", key.public).install(**files)
    first = c2pa_key.read_bytes()
    stale = c2pa_key.with_name(f".{c2pa_key.name}.{dead_pid}.new")  # a killed issuer's
    stale.write_bytes(b"-----BEGIN")
    ca.issue_station("station-01", key.public).install(**files)
    assert c2pa_key.read_bytes() != first
    assert serialization.load_pem_private_key(c2pa_key.read_bytes(), None)
    assert stat.S_IMODE(c2pa_key.stat().st_mode) == 0o600
    assert sorted(p.name for p in c2pa_key.parent.iterdir()) == ["c2pa-key.pem", "station-key.pem"]


def _body(key: StationKey, seq: int = 0, prev: str = manifest_mod.GENESIS) -> dict:
    return manifest_mod.build_body(
        {"order_id": "订单-1", "sha256": "ab" * 32, "size": 10, "duration_s": 1.25},
        seq=seq,
        prev_manifest_sha256=prev,
        key=key,
        clock_synced=None,
        signed_at="2026-01-01T00:00:00.000000Z",
        c2pa=None,
    )


def test_manifest_sign_sidecar_round_trip_and_tamper() -> None:
    key, other = StationKey.generate(), StationKey.generate()
    signed = manifest_mod.sign(_body(key), key)
    sidecar = json.loads(json.dumps(signed.sidecar(), indent=2, sort_keys=True))
    again = manifest_mod.from_sidecar(sidecar)
    assert again.canonical == signed.canonical and again.verify(key.public)
    assert not again.verify(other.public)
    sidecar["order_id"] = "订单-2"
    assert not manifest_mod.from_sidecar(sidecar).verify(key.public)
    with pytest.raises(ProofError):
        manifest_mod.from_sidecar({"order_id": "x"})


def test_log_appends_in_order_and_checkpoints(tmp_path: Path) -> None:
    Ledger(tmp_path / "index.sqlite3").close()
    plog = ProofLog(tmp_path / "index.sqlite3")
    key = StationKey.generate()
    assert plog.checkpoint(key, "s") is None
    prev = manifest_mod.GENESIS
    for seq in range(5):
        m = manifest_mod.sign(_body(key, seq, prev), key)
        plog.append(
            seq,
            station="s",
            clip_path=f"c{seq}.mp4",
            clip_sha256="ab" * 32,
            manifest=m.canonical,
            signature=m.signature,
            key_fingerprint=key.fingerprint,
        )
        prev = m.sha256
    with pytest.raises(ProofError, match="out of order"):
        plog.append(
            9,
            station="s",
            clip_path="x",
            clip_sha256="",
            manifest=b"{}",
            signature=b"",
            key_fingerprint="",
        )
    cp = plog.checkpoint(key, "s")
    assert cp is not None and cp.tree_size == 5
    assert json.loads(cp.body)["root_sha256"] == cp.root_hash == plog.root().hex()
    assert key.public.verify(cp.signature, cp.body) is None
    plog.enqueue_timestamp("checkpoint", cp.sha256, ("http://127.0.0.1:9/tsa",))
    plog.enqueue_timestamp("checkpoint", cp.sha256, ("http://127.0.0.1:9/tsa",))  # idempotent
    assert plog.pending_count() == 1
    plog.close()
