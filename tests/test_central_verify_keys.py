"""The central /verify page reads a clip's signed manifest where its station said it archived
it (``archive_meta.log``, the station's own sync payload): only under that station's own
``proof/log/``, and only an object of a manifest's size (real PostgreSQL, moto S3)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from central.db import CentralDB
from central.verify import verify_clip_central
from station import config as config_mod
from station.fleet.objstore import ObjectStore, station_prefix
from station.proof.keys import StationKey

pytestmark = pytest.mark.slow
BUCKET = "verify-keys"


def _clip(i: int, station: str, sha: str, size: int, leaf: dict[str, Any]) -> dict[str, Any]:
    t = f"2026-12-01T09:00:{i:02d}+08:00"
    return {
        "id": i, "order_id": f"PO-{i}", "waybill": None, "station": station,
        "started_at": t, "ended_at": t, "started_utc": t, "ended_utc": t, "tz": "+08:00",
        "duration_s": 1.0, "frame_count": 1, "finish_reason": "sealed", "pre_roll_s": 0.0,
        "path": f"clips/{i}.mp4", "manifest_path": f"clips/{i}.json", "size": size,
        "sha256": sha, "events": [], "archived_utc": t, "archive_key": f"k/{i}",
        "archive_meta": {"log": leaf},
    }  # fmt: skip


def _spied_store(cfg: config_mod.Config) -> tuple[ObjectStore, list[str]]:
    """The bucket's store, and the keys of every object it reads (in order)."""
    store = ObjectStore(cfg.archive)
    reads: list[str] = []
    real_get = store.client.get_object

    def spy(**kw: Any) -> Any:
        reads.append(kw["Key"])
        return real_get(**kw)

    store.client.get_object = spy
    return store, reads


def _enrolled(db: CentralDB, name: str) -> tuple[StationKey, dict[str, Any]]:
    """A new station ``name`` that said hello with a key of its own: (its key, its row)."""
    key = StationKey.generate()
    st = db.station_for_token(db.add_station(name))
    assert st is not None
    db.hello(int(st["id"]), key_fingerprint=key.fingerprint,
             public_key=key.public_pem().decode(), software="t")  # fmt: skip
    return key, dict(st)


def test_a_leaf_outside_the_stations_proof_log_or_too_large_is_not_read(
    pg_dsn: str, moto_s3: None, tmp_path: Path
) -> None:
    cfg = config_mod.load(None).replace("archive", bucket=BUCKET, region="us-east-1")
    store, reads = _spied_store(cfg)
    db = CentralDB(pg_dsn)
    db.migrate()
    try:
        key, st = _enrolled(db, "st-b")
        other = station_prefix(cfg.archive.prefix, "st-a")
        mine = station_prefix(cfg.archive.prefix, "st-b")
        huge = f"{mine}proof/log/{key.fingerprint[7:23]}/0000000009-big.manifest.json"
        store.client.put_object(Bucket=BUCKET, Key=huge, Body=b" " * (3 << 20))
        cases = {
            # another station's object (the site reads the whole bucket)
            "elsewhere": f"{other}proof/log/x/0000000000-y.manifest.json",
            # out of the station's prefix by dots, for a store that resolves them
            "dots": f"{mine}proof/log/../../st-a/proof/log/x/0000000000-y.manifest.json",
            # under its prefix, but no signed manifest is megabytes long
            "huge": huge,
        }
        for i, (what, manifest_key) in enumerate(cases.items(), start=1):
            video = f"clip {what}".encode()
            path = tmp_path / f"{what}.mp4"
            path.write_bytes(video)
            sha = hashlib.sha256(video).hexdigest()
            body = json.dumps({"sha256": sha, "size": len(video)}).encode()
            sig_key = manifest_key.removesuffix(".manifest.json") + ".sig"
            if what != "huge":
                store.client.put_object(Bucket=BUCKET, Key=manifest_key, Body=body)
            store.client.put_object(Bucket=BUCKET, Key=sig_key, Body=key.sign(body))
            leaf = {"seq": i, "manifest": manifest_key, "signature": sig_key,
                    "key_fingerprint": key.fingerprint}  # fmt: skip
            db.register_clips(int(st["id"]), "st-b", [_clip(i, "st-b", sha, len(video), leaf)])
            reads.clear()
            report = verify_clip_central(path, db, store)
            assert reads == [], (what, reads)
            (check,) = [c for c in report.checks if c.name == "manifest"]
            assert check.status == "warn" and "could not be read" in check.reason, report.checks
    finally:
        db.close()


def test_verify_reads_a_bounded_number_of_rows_and_never_passes_what_it_left_unread(
    pg_dsn: str, moto_s3: None, tmp_path: Path
) -> None:
    """Bytes registered under many rows (before the registration limit, or by several
    stations): each /verify upload of them read every row's manifest from the bucket. It reads
    MAX_ROWS_READ rows at most, and says so: the rows it left unread may hold a second signed
    manifest (`clip-logged-twice`), so neither the bare clip nor a bundle of it verifies."""
    import psycopg

    from central.verify import MAX_ROWS_READ, check_bundle_in_index
    from station.proof.verify import Report

    cfg = config_mod.load(None).replace("archive", bucket=BUCKET, region="us-east-1")
    store, reads = _spied_store(cfg)
    db = CentralDB(pg_dsn)
    db.migrate()
    try:
        key, st = _enrolled(db, "st-m")
        video = b"one recording"
        path = tmp_path / "c.mp4"
        path.write_bytes(video)
        sha = hashlib.sha256(video).hexdigest()
        log = f"{station_prefix(cfg.archive.prefix, 'st-m')}proof/log/{key.fingerprint[7:23]}/"
        leaves = []
        for seq, order in enumerate(("PO-1", "PO-2")):  # the second: logged twice
            body = json.dumps({"sha256": sha, "size": len(video), "order_id": order}).encode()
            m, s = f"{log}{seq:010d}-x.manifest.json", f"{log}{seq:010d}-x.sig"
            store.client.put_object(Bucket=BUCKET, Key=m, Body=body)
            store.client.put_object(Bucket=BUCKET, Key=s, Body=key.sign(body))
            leaves.append(({"seq": seq, "manifest": m, "signature": s,
                            "key_fingerprint": key.fingerprint}, body))  # fmt: skip
        db.register_clips(int(st["id"]), "st-m", [_clip(1, "st-m", sha, len(video), leaves[0][0])])
        n = MAX_ROWS_READ + 5
        with psycopg.connect(pg_dsn, autocommit=True) as conn:  # rows of an older version
            for i in range(2, n + 1):
                leaf = leaves[1 if i == n else 0][0]  # the second manifest: the last row
                conn.execute(
                    "INSERT INTO clips(station_id, local_id, order_id, station, started_at,"
                    " ended_at, started_utc, ended_utc, tz, duration_s, frame_count,"
                    " finish_reason, pre_roll_s, path, manifest_path, size, sha256, events,"
                    " archived_utc, archive_key, archive_meta) SELECT station_id, %s,"
                    " order_id, station, started_at, ended_at, started_utc, ended_utc, tz,"
                    " duration_s, frame_count, finish_reason, pre_roll_s, path, manifest_path,"
                    " size, sha256, events, archived_utc, archive_key, %s::jsonb FROM clips"
                    " WHERE local_id = 1 AND station = 'st-m'",
                    (i, json.dumps({"log": leaf})),
                )
        reads.clear()
        report = verify_clip_central(path, db, store)
        assert 0 < len(reads) <= 2 * MAX_ROWS_READ, len(reads)
        assert not report.ok or report.pending, report.checks
        said = [c for c in report.checks if c.code == "clip-rows-unchecked"]
        assert said and f"more than {MAX_ROWS_READ}" in said[0].reason, report.checks

        reads.clear()
        bundle = Report(subject="b.zip")
        bundle.add("signature", "ok", "the bundle verifies on its own")
        bundle.facts["clips"] = [
            {
                "file": "c.mp4",
                "sha256": sha,
                "manifest_sha256": hashlib.sha256(leaves[0][1]).hexdigest(),
            }
        ]
        check_bundle_in_index(bundle, db, store)
        assert 0 < len(reads) <= 2 * MAX_ROWS_READ, len(reads)
        assert bundle.verdict != "authentic" and (not bundle.ok or bundle.pending), bundle.checks
        assert any(c.code == "clip-rows-unchecked" for c in bundle.checks), bundle.checks
    finally:
        db.close()


def test_a_clip_s_tokens_and_certificates_are_read_only_under_its_station_s_prefix(
    moto_s3: None, tmp_path: Path
) -> None:
    """The bare clip's RFC 3161 tokens are listed under its own station's ``proof/tokens/``
    by the subject's SHA-256 (both names: with and without the token's digest, docs/fleet.md),
    its key's certificate under its own ``keys/``: another station's objects, other subjects
    and objects of other names are never read; more than the page reads, or one larger than a
    token, is Unread rather than judged in part."""
    from central.verify import MAX_TOKENS_READ, Unread, archived_certificate, archived_tokens
    from station.proof.ca import CompanyCa

    cfg = config_mod.load(None).replace("archive", bucket=BUCKET, region="us-east-1")
    store, reads = _spied_store(cfg)
    mine, other = (
        station_prefix(cfg.archive.prefix, "st-t"),
        station_prefix(cfg.archive.prefix, "st-o"),
    )
    subject, next_subject = "ab" * 32, "ab" * 31 + "ac"
    put = {
        f"{mine}proof/tokens/{subject}.0123abcd.tst": b"old name",
        f"{mine}proof/tokens/{subject}.0123abcd.{'1' * 16}.tst": b"granted again",
        f"{mine}proof/tokens/{subject}.4567cdef.{'2' * 16}.tst": b"another TSA",
        f"{mine}proof/tokens/{subject}.4567cdef.tst": b"another TSA",  # both names: one token
        f"{mine}proof/tokens/{subject}.0123abcd.tst.bak": b"not a token's name",
        f"{mine}proof/tokens/{next_subject}.0123abcd.tst": b"another subject",
        f"{other}proof/tokens/{subject}.0123abcd.tst": b"another station",
    }
    for key, body in put.items():
        store.client.put_object(Bucket=BUCKET, Key=key, Body=body)
    reads.clear()
    got = archived_tokens(store, "st-t", subject)
    assert sorted(got) == [b"another TSA", b"granted again", b"old name"]
    assert all(k.startswith(f"{mine}proof/tokens/{subject}.") for k in reads), reads
    assert not any(k.endswith(".bak") for k in reads)

    big = f"{mine}proof/tokens/{subject}.89abcdef.{'3' * 16}.tst"
    store.client.put_object(Bucket=BUCKET, Key=big, Body=b"\0" * (1 << 20))
    with pytest.raises(Unread, match="larger than"):
        archived_tokens(store, "st-t", subject)
    store.client.delete_object(Bucket=BUCKET, Key=big)
    for i in range(MAX_TOKENS_READ):
        key = f"{mine}proof/tokens/{subject}.{i:08x}.{'4' * 16}.tst"
        store.client.put_object(Bucket=BUCKET, Key=key, Body=b"t")
    with pytest.raises(Unread, match="more than"):
        archived_tokens(store, "st-t", subject)

    # the certificate: the one of this key, under this station's keys/ only
    ca = CompanyCa.create(tmp_path / "ca", "Test Co CA")
    key, stranger = StationKey.generate(), StationKey.generate()
    certs = ca.issue_station("st-t", key.public)
    store.client.put_object(Bucket=BUCKET, Key=f"{other}keys/station-key-1.crt",
                            Body=ca.issue_station("st-o", key.public).key_cert_pem)  # fmt: skip
    reads.clear()
    assert archived_certificate(store, "st-t", key.public) == (None, None)
    assert reads == []  # nothing under its own keys/ yet: another station's not read
    for name, body in {
        "keys/station-key-2.crt": ca.issue_station("st-t", stranger.public).key_cert_pem,
        "keys/station-key-3.crt": certs.key_cert_pem,
        "keys/company-ca-4.crt": certs.ca_cert_pem,
        "keys/x.pub.pem": key.public_pem(),
    }.items():
        store.client.put_object(Bucket=BUCKET, Key=mine + name, Body=body)
    reads.clear()
    cert, issuer = archived_certificate(store, "st-t", key.public)
    assert cert is not None and cert.public_key() == key.public
    assert issuer is not None and issuer == ca.cert
    assert reads and all(k.startswith(f"{mine}keys/") and k.endswith(".crt") for k in reads)
