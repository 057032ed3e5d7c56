"""Archiver unit tests on moto: proof material, RFC 3161 tokens as they arrive, local problems.

The same archiver runs against a real SeaweedFS in tests/test_fleet.py.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from proof_support import record_orders

from central.storage_policy import station_user_policy
from station import config as config_mod
from station.capture.synthetic import Scenario, SyntheticCamera
from station.fleet.archiver import Archiver
from station.fleet.objstore import ArchiveError, ObjectStore, clip_key, is_not_found
from station.floor.alarms import AlarmBoard
from station.service import assemble, build_fleet
from station.store.ledger import Ledger
from station.store.retention import DiskSpace, RetentionManager

BUCKET = "packcam-arch"  # created by the moto_s3 fixture (conftest)


@pytest.fixture
def station_cfg(tmp_path: Path, moto_s3: None) -> config_mod.Config:
    cfg = config_mod.load(None).with_data_dir(tmp_path / "data")
    cfg = cfg.replace("archive", enabled=True, bucket=BUCKET, keyframes=False)
    from station.proof.finalizer import build_finalizers

    finalizers = build_finalizers(cfg)
    try:
        record_orders(cfg, finalizers, ["T-1", "T-2"])
    finally:
        for f in finalizers:
            f.close()
    return cfg


def _keys(arch: Archiver) -> list[str]:
    resp = arch.store.client.list_objects_v2(Bucket=BUCKET)
    return [o["Key"] for o in resp.get("Contents", [])]


def _add_token_row(cfg: config_mod.Config, subject: str, status: str, token: bytes | None) -> int:
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        cur = ledger.conn.execute(
            "INSERT INTO proof_timestamps(subject, subject_sha256, tsa_url, status, next_try_utc,"
            " token, created_utc) VALUES ('manifest', ?, 'http://tsa.test/', ?, ?, ?, ?)",
            (subject, status, now, token, now),
        )
        return int(cur.lastrowid or 0)
    finally:
        ledger.close()


def test_clips_proofs_and_checkpoints_are_archived(station_cfg: config_mod.Config) -> None:
    done: list[str] = []
    arch = Archiver(station_cfg, on_archived=lambda rec: done.append(rec.order_id))
    try:
        assert arch.run_once() == 2
        assert sorted(done) == ["T-1", "T-2"]
        keys = _keys(arch)
        prefix = "packcam/stations/station-01/"
        assert sum(k.startswith(prefix + "clips/") for k in keys) == 2
        assert sum(k.startswith(prefix + "manifests/") for k in keys) == 2
        # the log's leaves live under the signing key's fingerprint (a replaced station with a
        # new key starts again at 0 without touching these)
        from station.proof.keys import StationKey
        from station.proof.paths import ProofPaths

        key = StationKey.load(ProofPaths.from_config(station_cfg).key)
        fp = key.fingerprint.split(":", 1)[-1][:16]
        # ... and the leaf's digest (a station restored from a backup signs the same numbers)
        leaves = {k for k in keys if k.startswith(prefix + f"proof/log/{fp}/")}
        names = {k.rsplit("/", 1)[1].split("-")[0] for k in leaves}
        assert names == {"0000000000", "0000000001"} and len(leaves) == 4
        assert any(k.startswith(prefix + "proof/checkpoints/") for k in keys)
        assert arch.backlog() == 0
        assert arch.run_once() == 0  # nothing is due any more
    finally:
        arch.stop()


def test_a_heartbeat_checkpoint_of_the_same_log_writes_over_no_checkpoint(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    """An idle station signs a checkpoint every ``checkpoint_interval_min``: the same size and
    root, another time and signature. Checkpoints were named by size and root only, so each
    heartbeat found the last one's object "in the bucket but wrong" (an ERROR) and wrote over
    it: on an unversioned bucket the signed checkpoint its RFC 3161 token stamps was gone, on
    a locked one a second version of a write-once key, every hour. Each signed checkpoint is
    kept, under its own name."""
    from datetime import timedelta

    from station.proof.finalizer import ProofFinalizer

    arch = Archiver(station_cfg)
    try:
        arch.run_once()
        fin = ProofFinalizer(station_cfg, start_worker=False)
        try:
            later = datetime.now(UTC) + timedelta(days=1)
            assert fin.checkpoint_if_due(later)
            assert fin.checkpoint_if_due(later + timedelta(days=1))
        finally:
            fin.close()
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            arch.run_once()
        assert not [r for r in caplog.records if "wrong" in r.getMessage()], caplog.text
        cps = arch.proof_log.checkpoints()
        assert len({(c.tree_size, c.root_hash) for c in cps}) < len(cps)  # heartbeats
        stored = {
            arch.store.get_bytes(k)
            for k in _keys(arch)
            if "/proof/checkpoints/" in k and k.endswith(".json")
        }
        assert {c.body for c in cps} <= stored
    finally:
        arch.stop()


def test_tokens_follow_the_timestamp_queue(station_cfg: config_mod.Config) -> None:
    pending = _add_token_row(station_cfg, "aa" * 32, "pending", None)
    _add_token_row(station_cfg, "bb" * 32, "granted", b"TOKEN-B")
    arch = Archiver(station_cfg)
    try:
        arch.run_once()
        keys = _keys(arch)
        own = hashlib.sha256(b"TOKEN-B").hexdigest()[:16]  # the token's digest: never over one
        assert any(k.endswith(f"{'bb' * 32}.{_tsa()}.{own}.tst") for k in keys)
        assert not any("aa" * 32 in k for k in keys)
        # the pending request holds the cursor before it
        assert arch.cursors.cursor("archive:tokens") == pending - 1
        ledger = Ledger.in_data_dir(station_cfg.station.data_dir)
        ledger.conn.execute(
            "UPDATE proof_timestamps SET status = 'granted', token = ? WHERE id = ?",
            (b"TOKEN-A", pending),
        )
        ledger.close()
        arch.run_once()
        token_key = next(k for k in _keys(arch) if "aa" * 32 in k)
        assert arch.store.get_bytes(token_key) == b"TOKEN-A"
        assert arch.cursors.cursor("archive:tokens") == pending + 1
    finally:
        arch.stop()


def _tsa() -> str:
    import hashlib

    return hashlib.sha256(b"http://tsa.test/").hexdigest()[:8]


def test_a_missing_or_changed_local_clip_is_logged_and_the_others_go_on(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = Ledger.in_data_dir(station_cfg.station.data_dir)
    first, second = ledger.clips()
    ledger.close()
    (station_cfg.station.data_dir / first.path).unlink()
    path2 = station_cfg.station.data_dir / second.path
    data = bytearray(path2.read_bytes())
    data[-1] ^= 0xFF  # edited after recording: never archived as the recorded clip
    path2.write_bytes(bytes(data))
    arch = Archiver(station_cfg)
    try:
        with caplog.at_level(logging.ERROR, logger="station.fleet.archiver"):
            assert arch.run_once() == 0
        assert "not archived" in caplog.text and first.path in caplog.text
        assert "SHA-256" in caplog.text
        assert arch.backlog() == 2
        assert not any("/clips/" in k for k in _keys(arch))
    finally:
        arch.stop()


def test_signed_bundle_parts_wait_for_the_clips_timestamp(station_cfg: config_mod.Config) -> None:
    """Each order's evidence bundle goes up signed and without its clips, once the clip's RFC
    3161 request is settled (parts without the token would not prove the time)."""
    import io
    import json
    import zipfile

    from station.proof.log import ProofLog

    data = station_cfg.station.data_dir
    ledger = Ledger.in_data_dir(data)
    (clip,) = ledger.clips("T-1")
    ledger.close()
    plog = ProofLog.in_data_dir(data)
    (entry,) = plog.entries_for_clip(clip.sha256)
    plog.close()
    row = _add_token_row(station_cfg, entry.manifest_sha256, "pending", None)
    arch = Archiver(station_cfg)
    try:
        assert arch.run_once() == 2
        assert not [k for k in _keys(arch) if "/bundles/" in k]  # T-1's token holds the cursor
        ledger = Ledger.in_data_dir(data)
        with ledger.conn:
            ledger.conn.execute(
                "UPDATE proof_timestamps SET status = 'failed' WHERE id = ?", (row,)
            )
        ledger.close()
        arch.run_once()
        parts = sorted(k for k in _keys(arch) if "/bundles/" in k)
        assert len(parts) == 2  # one per order
        blobs = [arch.store.get_bytes(k) for k in parts]
    finally:
        arch.stop()
    found = {}
    for blob in blobs:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            assert not [n for n in zf.namelist() if n.startswith("clips/")]  # no clip bytes
            manifest = json.loads(zf.read("bundle/manifest.json"))
            assert "bundle/manifest.sig" in zf.namelist()
        clips = {n: h for n, h in manifest["members"].items() if n.startswith("clips/")}
        found[manifest["order_id"]] = set(clips.values())
    assert clip.sha256 in found["T-1"] and len(found["T-2"]) == 1
    assert not list((data / "archive-spool").iterdir())


def test_key_frames_of_a_changed_local_clip_are_never_uploaded(
    station_cfg: config_mod.Config,
) -> None:
    """The key frames are cut from the local file: when that file is no longer the indexed
    clip (here another recording copied over it), no frame of it may go up under the clip's
    SHA-256, where it would stay (frames in the bucket are kept as they are) and be shown as
    the clip's once the file is restored."""
    cfg = station_cfg.replace("archive", keyframes=True)
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    first, second = ledger.clips()
    ledger.close()
    data_dir = cfg.station.data_dir
    (data_dir / first.path).write_bytes((data_dir / second.path).read_bytes())
    arch = Archiver(cfg)
    try:
        assert arch.run_once() == 1  # the other clip is archived, with its frames
        keys = _keys(arch)
        assert any(f"/frames/{second.sha256}/" in k for k in keys)
        assert not any(first.sha256 in k for k in keys if "/frames/" in k or "/clips/" in k)
    finally:
        arch.stop()


@pytest.mark.parametrize("damage", ["truncated", "another clip's"])
def test_a_bad_manifest_holds_up_only_its_own_clip(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """A clip whose manifest file is damaged (a bad SD card sector, a hand edit) or is
    another clip's is a local problem of that clip: logged and retried later, nothing of it
    uploaded, while the clips after it are archived. Before, the JSON error left every pass
    at that clip, and nothing more was ever archived."""
    ledger = Ledger.in_data_dir(station_cfg.station.data_dir)
    first, second = ledger.clips()
    ledger.close()
    data_dir = station_cfg.station.data_dir
    bad = (
        b'{"sha256": "trunc'
        if damage == "truncated"
        else (data_dir / second.manifest_path).read_bytes()
    )
    (data_dir / first.manifest_path).write_bytes(bad)
    arch = Archiver(station_cfg)
    try:
        with caplog.at_level(logging.ERROR, logger="station.fleet.archiver"):
            assert arch.run_once() == 1
        assert "not archived" in caplog.text and first.path in caplog.text
        assert arch.backlog() == 1
        keys = _keys(arch)
        assert any(second.sha256 in k for k in keys if "/clips/" in k)
        assert not any(first.sha256 in k for k in keys if "/clips/" in k or "/manifests/" in k)
    finally:
        arch.stop()


def test_a_station_restored_from_a_backup_writes_over_no_leaf_of_its_log(
    tmp_path: Path, moto_s3: None
) -> None:
    """A station whose data dir (index and key) is restored from last night's backup, or an
    SD card cloned from it, goes on signing leaves with the numbers the lost day already
    used. Those leaves are in the bucket: written over, the archived signed manifest of a
    genuine clip would name another clip's bytes (the central /verify calls it swapped)."""
    import hashlib
    import json
    import shutil

    from station.proof.finalizer import build_finalizers

    cfg = config_mod.load(None).with_data_dir(tmp_path / "data")
    cfg = cfg.replace("archive", enabled=True, bucket=BUCKET, keyframes=False)
    data_dir = cfg.station.data_dir

    def record(order: str, frames: int) -> None:
        finalizers = build_finalizers(cfg)
        try:  # another length: other bytes than the clips before
            record_orders(cfg, finalizers, [order], frames=frames)
        finally:
            for f in finalizers:
                f.close()

    def archive() -> None:
        arch = Archiver(cfg)
        try:
            arch.run_once()
            assert arch.backlog() == 0
        finally:
            arch.stop()

    record("T-1", 12)
    shutil.copytree(data_dir, tmp_path / "backup")
    record("T-2", 13)
    archive()
    ledger = Ledger.in_data_dir(data_dir)
    lost_day = next(c for c in ledger.clips() if c.order_id == "T-2")
    meta = (ledger.archive_state(int(lost_day.id or 0)) or {})["archive_meta"]
    ledger.close()

    shutil.rmtree(data_dir)
    shutil.copytree(tmp_path / "backup", data_dir)
    record("T-3", 14)  # the same key, the same next leaf number as T-2's
    archive()

    arch = Archiver(cfg)
    try:
        manifest = arch.store.get_bytes(meta["log"]["manifest"])
    finally:
        arch.stop()
    assert hashlib.sha256(manifest).hexdigest() == meta["log"]["manifest_sha256"]
    assert json.loads(manifest)["sha256"] == lost_day.sha256


# ---- retention asks the bucket before it frees an archived clip ------------------------------


def _full_disk() -> DiskSpace:
    return DiskSpace(0, 1 << 40)  # below any floor: every clip the policy allows goes


@pytest.mark.parametrize("change", ["deleted", "replaced", "overwritten", "forged"])
def test_a_clip_whose_bucket_copy_went_is_kept_sent_again_then_freed(
    station_cfg: config_mod.Config, change: str
) -> None:
    """The bucket object of an archived clip is deleted (a lifecycle rule, an operator),
    replaced by other bytes, overwritten by an object of the same size that is not ours, or
    forged (other bytes of the same size, the uploader's ``x-amz-meta-sha256`` copied onto
    them by someone who may write the bucket): retention keeps the station's copy, clears
    its mark and alarms; the archiver's next pass sends it again; then retention frees it.
    The honest clip beside it goes at once."""
    cfg = station_cfg.replace(
        "retention", min_age_days=0.0, free_floor_mb=1, free_floor_percent=0.0
    )
    data = cfg.station.data_dir
    board = AlarmBoard(Ledger.in_data_dir(data))
    archiver, _ = build_fleet(cfg, alarms=board)
    assert archiver is not None
    ledger = Ledger.in_data_dir(data)
    try:
        assert archiver.run_once() == 2
        gone, honest = ledger.clips()
        key = clip_key(cfg.archive.prefix, cfg.station.name, gone.sha256)
        s3 = archiver.store.client
        if change == "deleted":
            s3.delete_object(Bucket=BUCKET, Key=key)
        elif change == "replaced":
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"other", Metadata={"sha256": gone.sha256})
        elif change == "overwritten":
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x" * gone.size)
        else:
            s3.put_object(
                Bucket=BUCKET, Key=key, Body=b"x" * gone.size, Metadata={"sha256": gone.sha256}
            )
        mgr = RetentionManager(
            cfg, ledger, probe=_full_disk, alarms=board, archive_check=archiver.store.check_archived
        )
        mgr.check()
        assert (data / gone.path).is_file() and not (data / honest.path).exists()
        assert ledger.archive_state(gone.id)["archived_utc"] is None  # type: ignore[index]
        (alarm,) = [a for a in ledger.alarms() if a.kind == "archive-missing"]
        assert alarm.subject == gone.path and key in alarm.message

        assert archiver.run_once() == 1  # sent again, verified, marked
        head = archiver.store.head(key)
        assert head is not None and head["ContentLength"] == gone.size
        assert archiver.store.sha256_of(key) == (gone.sha256, gone.size)
        assert not [a for a in ledger.alarms() if a.kind == "archive-missing"]  # cleared
        mgr.check()
        assert not (data / gone.path).exists() and mgr.deleted == 2
    finally:
        archiver.stop()
        ledger.close()
        board.ledger.close()  # type: ignore[union-attr]


def test_a_bucket_that_cannot_be_asked_keeps_the_clip_and_its_mark() -> None:
    """A HEAD that fails (the store is down, a timeout) is an ArchiveError: retention keeps
    the clip this round and does not clear the mark on a guess."""

    class Down:
        def head_object(self, **_kw: object) -> None:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")

    a = config_mod.load(None).replace("archive", enabled=True, bucket=BUCKET).archive
    with pytest.raises(ArchiveError, match="could not"):
        ObjectStore(a, client=Down()).check_archived("k/c.mp4", 10, "ab" * 32)


def test_the_assembled_station_asks_its_archivers_bucket(
    station_cfg: config_mod.Config,
) -> None:
    """assemble() hands the archiver's store to retention as its archive check."""
    scenario = Scenario.from_dict({"seed": 1, "event": [{"at": 0.5, "kind": "end"}]})
    cam = SyntheticCamera(160, 96, 10.0, scenario, realtime=False)
    asm = assemble(station_cfg, camera=cam, live_view=False)
    try:
        assert asm.archiver is not None and asm.retention is not None
        assert asm.retention.archive_check == asm.archiver.store.check_archived
    finally:
        asm.recorder.close()
        asm.close()


# ---- AWS with the printed least-privilege policy --------------------------------------------


class AwsStationKey:
    """A moto client answering as AWS does a station key with ``packcam storage-policy``'s policy.

    A HEAD of a missing key is refused (403, no body: the HEAD has no s3:prefix for the
    ListBucket condition); a list is allowed only with a prefix the policy's condition allows,
    and never with ``may_list=False`` (the policy before it had ListBucket). Keys in
    ``unreadable`` are there but refused (a real permission problem).
    """

    def __init__(
        self, cfg: config_mod.Config, *, may_list: bool = True, unreadable: tuple[str, ...] = ()
    ) -> None:
        import boto3

        self.real = boto3.client("s3", region_name="us-east-1")
        a = cfg.archive
        policy = station_user_policy(a.bucket, a.prefix, cfg.station.name)
        self.list_prefixes = [
            pattern
            for st in policy["Statement"]
            if may_list and st["Effect"] == "Allow" and "s3:ListBucket" in st["Action"]
            for pattern in st["Condition"]["StringLike"]["s3:prefix"]
        ]
        self.unreadable = unreadable
        self.lists: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    @staticmethod
    def _refused(op: str, code: str, message: str) -> ClientError:
        meta = {"HTTPStatusCode": 403}  # AWS answers a HEAD with no body: the code is "403"
        return ClientError(
            {"Error": {"Code": code, "Message": message}, "ResponseMetadata": meta}, op
        )

    def head_object(self, **kw: object) -> object:
        if kw["Key"] in self.unreadable:
            raise self._refused("HeadObject", "403", "Forbidden")
        try:
            return self.real.head_object(**kw)
        except ClientError as exc:
            if is_not_found(exc):
                raise self._refused("HeadObject", "403", "Forbidden") from None
            raise

    def list_objects_v2(self, **kw: object) -> object:
        prefix = str(kw.get("Prefix", ""))
        self.lists.append(prefix)
        if not any(fnmatch.fnmatchcase(prefix, p) for p in self.list_prefixes):
            raise self._refused("ListObjectsV2", "AccessDenied", "Access Denied")
        return self.real.list_objects_v2(**kw)


def test_a_least_privilege_aws_key_archives_new_clips(station_cfg: config_mod.Config) -> None:
    """Every object's HEAD before its upload is a 403 on AWS: a list of that one key (allowed
    by the policy's ListBucket on the station's prefix) tells that it is not there yet."""
    aws = AwsStationKey(station_cfg)
    arch = Archiver(station_cfg, client=aws)
    try:
        assert arch.run_once() == 2
        assert arch.run_once() == 0  # nothing sent twice
    finally:
        arch.stop()
    assert aws.lists and all(p.startswith("packcam/stations/station-01/") for p in aws.lists)
    ledger = Ledger.in_data_dir(station_cfg.station.data_dir)
    try:
        clips = ledger.clips()
    finally:
        ledger.close()
    store = ObjectStore(station_cfg.archive, client=aws)
    for rec in clips:
        key = clip_key(station_cfg.archive.prefix, station_cfg.station.name, rec.sha256)
        assert store.sha256_of(key) == (rec.sha256, rec.size)
        assert store.check_archived(key, rec.size, rec.sha256) is None
        # retention's check of a clip whose object went
        aws.real.delete_object(Bucket=BUCKET, Key=key)
        assert store.check_archived(key, rec.size, rec.sha256) == "not in the bucket"


def test_an_object_the_key_may_not_read_stays_an_error(station_cfg: config_mod.Config) -> None:
    key = clip_key(station_cfg.archive.prefix, station_cfg.station.name, "ab" * 32)
    aws = AwsStationKey(station_cfg, unreadable=(key,))
    aws.real.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    store = ObjectStore(station_cfg.archive, client=aws)
    with pytest.raises(ClientError) as info:
        store.head(key)
    assert info.value.response["Error"]["Code"] == "403"
    assert store.head(key.removesuffix(".mp4")) is None  # only that very key is listed
    with pytest.raises(ArchiveError, match="could not be asked"):
        store.check_archived(key, 1, "ab" * 32)


def test_a_policy_without_list_bucket_is_refused_loudly_naming_it(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    arch = Archiver(station_cfg, client=AwsStationKey(station_cfg, may_list=False))
    try:
        with (
            caplog.at_level(logging.ERROR, logger="station.fleet.objstore"),
            pytest.raises(ClientError) as info,
        ):
            arch.run_once()
    finally:
        arch.stop()
    assert info.value.response["Error"]["Code"] == "403"  # the HEAD's own error, not the list's
    assert "s3:ListBucket" in caplog.text and "packcam/stations/station-01/" in caplog.text
    assert "packcam storage-policy" in caplog.text
    ledger = Ledger.in_data_dir(station_cfg.station.data_dir)
    try:
        assert ledger.archive_backlog() == 2
    finally:
        ledger.close()
