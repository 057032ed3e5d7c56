"""Fleet end to end against real servers: SeaweedFS (S3) and PostgreSQL on 127.0.0.1.

Several stations with real recorded clips archive concurrently; the object store is killed in
the middle of a throttled multipart upload and restarted; PostgreSQL is restarted while the
stations register; the central site finds every clip and streams it with Range requests.
"""

from __future__ import annotations

import fractions
import hashlib
import io
import logging
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import proof_support
import pytest
from conftest_web import TZ8, add_users, index_clip, login, openapi_errors
from fleet_servers import S3_ACCESS_KEY, S3_SECRET_KEY, PostgresServer, SeaweedServer
from proof_support import record_orders
from verify_support import noise_i420, verify_page

from central.site import CentralSite
from station import config as config_mod
from station.fleet.archiver import Archiver
from station.fleet.central_sync import CentralSync, SyncError
from station.fleet.objstore import clip_key
from station.store.ledger import Ledger

pytestmark = pytest.mark.slow

N_STATIONS = 3
ORDERS_PER_STATION = 3


def _s3(seaweed: SeaweedServer, **boto: Any) -> Any:
    """A boto3 S3 client of the test SeaweedFS (``boto``: more botocore Config)."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.session.Session().client(
        "s3",
        endpoint_url=seaweed.endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        config=BotoConfig(s3={"addressing_style": "path"}, **boto),
    )


def _bucket(seaweed: SeaweedServer, *, lock: bool = False) -> str:
    name = "packcam-" + uuid.uuid4().hex[:10]
    _s3(seaweed).create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
    return name


def station_cfg(
    root: Path, name: str, seaweed: SeaweedServer, bucket: str, **archive: Any
) -> config_mod.Config:
    cfg = config_mod.load(None).with_data_dir(root / name)
    cfg = cfg.replace("station", name=name)
    return cfg.replace(
        "archive",
        enabled=True,
        endpoint_url=seaweed.endpoint,
        region="us-east-1",
        bucket=bucket,
        access_key_id=S3_ACCESS_KEY,
        secret_access_key=S3_SECRET_KEY,
        addressing_style="path",
        retry_s=0.2,
        **archive,
    )


def record(
    cfg: config_mod.Config, orders: list[str], frames: int = 12, *, pre_roll: bool = True
) -> None:
    """Real clips through the real Recorder with the proof finalizer (signed, logged).

    With ``pre_roll`` a clip's bytes depend on thread timing (``record_orders``): two
    recordings of the same frames may or may not be the same file. A test that needs the same
    bytes twice records with ``pre_roll=False``."""
    from station.proof.finalizer import build_finalizers

    finalizers = build_finalizers(cfg)
    try:
        record_orders(cfg, finalizers, orders, frames=frames, pre_roll=pre_roll)
    finally:
        for f in finalizers:
            f.close()


def big_mp4(path: Path, frames: int = 24) -> Path:
    """A real ~12 MB H.264 MP4: noise at near-lossless quality does not compress."""
    import av

    rng = np.random.default_rng(7)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10, options={"preset": "ultrafast", "crf": "2"})
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for i in range(frames):
            img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, fractions.Fraction(1, 10)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- a fleet: stations, a bucket, a central index and site ----------------------------------


@dataclass
class Fleet:
    root: Path
    bucket: str
    dsn: str
    stations: list[config_mod.Config]
    central_cfg: config_mod.Config
    server: Any
    stop: threading.Event
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        from web.cli import server_url

        return server_url(self.server)

    def with_central(self, cfg: config_mod.Config) -> config_mod.Config:
        name = cfg.station.name
        return cfg.replace(
            "central", enabled=True, url=self.url, token=self.tokens[name], interval_s=0.2
        )


@pytest.fixture(scope="module")
def fleet(
    seaweed: SeaweedServer, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    import psycopg

    from central.db import CentralDB
    from web.cli import make_server, run_server

    root = tmp_path_factory.mktemp("fleet")
    bucket = _bucket(seaweed)
    dbname = "fleet_" + uuid.uuid4().hex[:8]
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    dsn = postgres.dsn.replace("dbname=postgres", f"dbname={dbname}")

    stations = []
    for i in range(N_STATIONS):
        cfg = station_cfg(root, f"station-{i + 1:02d}", seaweed, bucket)
        record(cfg, [f"ORD-{i + 1}-{n}" for n in range(ORDERS_PER_STATION)])
        stations.append(cfg)

    central_cfg = config_mod.load(None).with_data_dir(root / "central")
    keys = ("endpoint_url", "region", "bucket", "access_key_id", "secret_access_key")
    shared = {k: getattr(stations[0].archive, k) for k in keys}
    central_cfg = central_cfg.replace("central", dsn=dsn).replace(
        "archive", addressing_style="path", **shared
    )
    db = CentralDB(dsn)
    db.migrate()
    tokens = {cfg.station.name: db.add_station(cfg.station.name) for cfg in stations}
    db.close()
    # every station any test here enrols (an account in no group would see nothing)
    names = [c.station.name for c in stations] + [
        "station-svc", "station-fin", "station-rep", "station-late", "station-rkey"
    ]  # fmt: skip
    add_users(central_cfg.station.data_dir, stations=names)
    server = make_server(central_cfg, "127.0.0.1", 0, central=CentralSite(central_cfg))
    stop = threading.Event()
    thread = threading.Thread(target=run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    try:
        yield Fleet(root, bucket, dsn, stations, central_cfg, server, stop, tokens)
    finally:
        stop.set()
        thread.join(timeout=15)


def _archive_all(cfgs: list[config_mod.Config], *, keep: bool = False) -> list[Archiver]:
    """Every station's archiver pass at once, each on its own thread (as on real stations);
    stopped (their index connections closed) unless ``keep``: the caller stops them."""
    archivers = [Archiver(cfg) for cfg in cfgs]
    errors: list[BaseException] = []

    def run(a: Archiver) -> None:
        try:
            a.run_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in archivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    if not keep:
        for a in archivers:
            a.stop()
    assert not errors, errors
    return archivers


def test_stations_archive_concurrently_verified_without_duplicates(fleet: Fleet) -> None:
    archivers = _archive_all(fleet.stations, keep=True)
    try:
        s3 = archivers[0].store.client
        for cfg, arch in zip(fleet.stations, archivers, strict=True):
            ledger = Ledger.in_data_dir(cfg.station.data_dir)
            try:
                clips = ledger.clips()
                assert len(clips) == ORDERS_PER_STATION
                assert ledger.archive_backlog() == 0
                for c in clips:
                    assert c.id is not None
                    state = ledger.archive_state(c.id)
                    assert state is not None and state["archived_utc"]
                    key = clip_key(cfg.archive.prefix, cfg.station.name, c.sha256)
                    assert state["archive_key"] == key
                    meta = state["archive_meta"]
                    # the clip's bytes in the bucket are the recorded ones
                    assert arch.store.sha256_of(key) == (c.sha256, c.size)
                    assert meta["manifest"] and meta["log"]["seq"] >= 0 and meta["frames"]
                    manifest = arch.store.get_bytes(meta["log"]["manifest"])
                    assert hashlib.sha256(manifest).hexdigest() == meta["log"]["manifest_sha256"]
            finally:
                ledger.close()
        # a second pass uploads nothing and makes no second version of anything
        again = _archive_all(fleet.stations)
        assert all(a.stats.bytes_sent == 0 and a.stats.clips == 0 for a in again)
        listed = s3.list_object_versions(Bucket=fleet.bucket)
        keys = [v["Key"] for v in listed.get("Versions", [])]
        assert len(keys) == len(set(keys)), "a retried upload made a duplicate"
        clip_objects = [k for k in keys if "/clips/" in k]
        assert len(clip_objects) == N_STATIONS * ORDERS_PER_STATION
        assert any("/proof/checkpoints/" in k for k in keys)
        assert any("/keys/" in k and k.endswith(".pub.pem") for k in keys)
    finally:
        for a in archivers:
            a.stop()


def _sync(cfg: config_mod.Config, fleet: Fleet) -> dict[str, int]:
    sync = CentralSync(fleet.with_central(cfg))
    try:
        return sync.sync_once()
    finally:
        sync.stop()


def test_central_registration_and_search_finds_every_clip(fleet: Fleet) -> None:
    _archive_all(fleet.stations)  # (idempotent if the previous test ran)
    for cfg in fleet.stations:
        sent = _sync(cfg, fleet)
        assert sent["checkpoints"] >= 1
    app = fleet.server.packcam_app
    client = login(app.test_client(), "viewer")
    doc = client.get("/api/openapi.json").get_json()
    for i, cfg in enumerate(fleet.stations):
        for n in range(ORDERS_PER_STATION):
            order = f"ORD-{i + 1}-{n}"
            got = client.get(f"/api/orders/{order}").get_json()
            assert [c["station"] for c in got["clips"]] == [cfg.station.name]
            assert got["clips"][0]["sha256"] and got["clips"][0]["archived_utc"]
            assert openapi_errors(got, {"$ref": "#/components/schemas/Order"}, doc) == []
    found = client.get("/api/clips?q=ORD-&limit=500").get_json()["clips"]
    assert len(found) == N_STATIONS * ORDERS_PER_STATION
    assert client.get("/api/clips?q=ORD-2-&limit=50").get_json()["clips"][0]["station"] == (
        "station-02"
    )
    page = client.get("/search?q=ORD-1-1")
    assert page.status_code == 200 and "ORD-1-1" in page.get_data(as_text=True)
    stations = client.get("/api/stations").get_json()
    assert len(stations["stations"]) == N_STATIONS
    assert openapi_errors(stations, {"$ref": "#/components/schemas/Stations"}, doc) == []
    # a repeated sync sends nothing new and duplicates nothing
    assert _sync(fleet.stations[0], fleet) == {
        "clips": 0, "archived": 0, "checkpoints": 0, "waybills": 0
    }  # fmt: skip
    assert len(client.get("/api/clips?q=ORD-1-&limit=50").get_json()["clips"]) == (
        ORDERS_PER_STATION
    )


def test_central_site_streams_clips_with_range_and_shares_them(fleet: Fleet) -> None:
    _archive_all(fleet.stations[:1])
    _sync(fleet.stations[0], fleet)
    app = fleet.server.packcam_app
    client = login(app.test_client(), "viewer")
    order = client.get("/api/orders/ORD-1-0").get_json()
    clip = order["clips"][0]
    local = fleet.stations[0].station.data_dir / clip["path"]
    data = local.read_bytes()
    page = client.get("/orders/ORD-1-0")
    assert page.status_code == 200 and f"/clips/{clip['id']}/video" in page.get_data(True)
    full = client.get(clip["video_url"])
    assert full.status_code == 200 and full.data == data
    part = client.get(clip["video_url"], headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.data == data[100:1100]
    assert part.headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
    tail = client.get(clip["video_url"], headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.data == data[-50:]
    assert (
        client.get(clip["video_url"], headers={"Range": f"bytes={len(data) + 5}-"}).status_code
        == 416
    )
    etag = full.headers["ETag"]
    assert client.get(clip["video_url"], headers={"If-None-Match": etag}).status_code == 304
    thumb = client.get(clip["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.data[:3] == b"\xff\xd8\xff"
    dl = client.get(clip["download_url"])
    assert dl.status_code == 200 and "attachment" in dl.headers["Content-Disposition"]

    # share link, used logged out
    from conftest_web import session_csrf

    token = session_csrf(client)
    made = client.post("/shares", data={"order_id": "ORD-1-0", "days": "1", "csrf_token": token})
    assert made.status_code == 302
    from web.db import WebDB

    db = WebDB.in_data_dir(fleet.central_cfg.station.data_dir)
    share = db.shares("ORD-1-0")[0]
    db.close()
    with app.test_request_context():
        from web.share import share_token

        url = f"/s/{share_token(share)}/clips/{clip['id']}/video"
    anon = app.test_client()
    assert anon.get(clip["video_url"]).status_code in (302, 401)
    shared = anon.get(url, headers={"Range": "bytes=0-9"})
    assert shared.status_code == 206 and shared.data == data[:10]


def test_redirect_mode_sends_the_browser_a_presigned_url_that_honours_range(
    fleet: Fleet,
) -> None:
    import urllib.request

    from web import create_app

    _archive_all(fleet.stations[:1])
    _sync(fleet.stations[0], fleet)
    cfg = fleet.central_cfg.replace("archive", stream="redirect")
    app = create_app(cfg, central=CentralSite(cfg))
    client = login(app.test_client(), "viewer")
    clip = client.get("/api/orders/ORD-1-1").get_json()["clips"][0]
    resp = client.get(clip["video_url"])
    assert resp.status_code == 302
    target = resp.headers["Location"]
    assert target.startswith(fleet.stations[0].archive.endpoint_url)
    csp = resp.headers["Content-Security-Policy"]
    assert f"media-src 'self' {fleet.stations[0].archive.endpoint_url}" in csp
    req = urllib.request.Request(target, headers={"Range": "bytes=0-99"})
    with urllib.request.urlopen(req, timeout=10) as got:
        body = got.read()
        assert got.status == 206 and len(body) == 100
    data = (fleet.stations[0].station.data_dir / clip["path"]).read_bytes()
    assert body == data[:100]


def test_postgres_restart_registration_catches_up(
    fleet: Fleet, postgres: PostgresServer, mp4_template: Path
) -> None:
    cfg = fleet.with_central(fleet.stations[1])
    _sync(fleet.stations[1], fleet)
    postgres.stop()
    try:
        ledger = Ledger.in_data_dir(cfg.station.data_dir)
        try:
            for n in range(4):
                start = datetime(2026, 11, 30, 14, n, 0, tzinfo=TZ8)
                index_clip(
                    ledger, cfg.station.data_dir, mp4_template, f"LATE-{n}",
                    station=cfg.station.name, start=start, waybill=f"YT{9000000000000 + n}",
                )  # fmt: skip
        finally:
            ledger.close()
        sync = CentralSync(cfg)
        try:
            with pytest.raises(SyncError, match="503"):
                sync.sync_once()
        finally:
            sync.stop()
    finally:
        postgres.start()
    # the background loop retries with backoff until the index is back, then catches up
    sync = CentralSync(cfg)
    sync.start()
    try:
        app = fleet.server.packcam_app
        client = login(app.test_client(), "viewer")
        deadline = time.monotonic() + 30
        found: list[Any] = []
        while time.monotonic() < deadline:
            resp = client.get("/api/clips?q=LATE-&limit=50")
            if resp.status_code == 200:
                found = resp.get_json()["clips"]
                if len(found) == 4:
                    break
            time.sleep(0.2)
        assert sorted(c["order_id"] for c in found) == [f"LATE-{n}" for n in range(4)]
        by_waybill = client.get("/api/clips?q=YT9000000000002").get_json()["clips"]
        assert [c["order_id"] for c in by_waybill] == ["LATE-2"]
    finally:
        sync.stop()


_COUNTERS = ("n_clips", "high_clip", "high_archived", "high_checkpoint", "last_clip_utc",
             "n_archived", "archived_bytes", "last_archived_utc")  # fmt: skip


def _backup(cdb: Any, sid: int) -> dict[str, Any]:
    """What a backup of the central database holds of station ``sid`` (its counters and
    the size of its newest witnessed checkpoint)."""
    row = cdb._one(f"SELECT {', '.join(_COUNTERS)} FROM stations WHERE id = %s", (sid,))
    (w,) = cdb._all("SELECT COALESCE(max(tree_size), 0) AS n FROM witnessed"
                    " WHERE station_id = %s", (sid,))  # fmt: skip
    return {**dict(row), "witnessed": int(w["n"])}


def _restore(cdb: Any, sid: int, backup: dict[str, Any]) -> None:
    """Station ``sid``'s rows and counters as a restore of ``backup`` leaves them."""
    with cdb.conn.transaction():
        for sql, arg in (
            ("DELETE FROM clips WHERE station_id = %s AND local_id > %s", backup["high_clip"]),
            ("DELETE FROM checkpoints WHERE station_id = %s AND local_id > %s",
             backup["high_checkpoint"]),
            ("DELETE FROM witnessed WHERE station_id = %s AND tree_size > %s",
             backup["witnessed"]),
        ):  # fmt: skip
            cdb.conn.execute(sql, (sid, arg))
        cdb.conn.execute(
            f"UPDATE stations SET {', '.join(f'{c} = %s' for c in _COUNTERS)} WHERE id = %s",
            (*(backup[c] for c in _COUNTERS), sid),
        )


def test_a_central_index_restored_from_an_older_backup_gets_back_what_it_lost(
    fleet: Fleet, mp4_template: Path, tmp_path: Path
) -> None:
    """The central database is restored from a backup taken before the station's last clips
    were registered, and the site stays up: the station, syncing on without a new hello,
    has its cursors past them; its next batch is answered "behind" and it sends them again,
    so no clip is missing from the central index for good."""
    from central.db import CentralDB

    name = "station-restore"
    cdb = CentralDB(fleet.dsn)
    token = cdb.add_station(name)
    cfg = station_cfg(tmp_path, name, fleet_seaweed(fleet), fleet.bucket)
    cfg = cfg.replace("central", enabled=True, url=fleet.url, token=token, interval_s=0.2)
    cfg.station.data_dir.mkdir(parents=True)

    def add(n: int) -> None:
        # five recordings, five files: one SHA-256 goes under at most 4 rows of a station
        src = tmp_path / f"restore-{n}.mp4"
        src.write_bytes(mp4_template.read_bytes() + bytes([n]))
        ledger = Ledger.in_data_dir(cfg.station.data_dir)
        try:
            start = datetime(2026, 11, 30, 15, n, 0, tzinfo=TZ8)
            index_clip(ledger, cfg.station.data_dir, src, f"RESTORE-{n}",
                       station=name, start=start)  # fmt: skip
        finally:
            ledger.close()

    def held() -> list[str]:
        rows = cdb.conn.execute("SELECT order_id FROM clips WHERE station = %s", (name,))
        return sorted(str(r[0]) for r in rows.fetchall())

    sync = CentralSync(cfg)
    try:
        add(0)
        add(1)
        sync.sync_once()
        sid = cdb.station_for_token(token)["id"]  # type: ignore[index]
        backup = _backup(cdb, sid)
        add(2)
        add(3)
        sync.sync_once()
        assert held() == [f"RESTORE-{n}" for n in range(4)]
        _restore(cdb, sid, backup)
        assert held() == ["RESTORE-0", "RESTORE-1"]
        add(4)
        sync.sync_once()  # the same process: no new hello
        assert held() == [f"RESTORE-{n}" for n in range(5)]
    finally:
        sync.stop()
        cdb.close()


@pytest.mark.parametrize("then", ["clip", "checkpoint-alone"])
def test_a_witness_restored_from_an_older_backup_goes_on_witnessing_without_a_failed_round(
    fleet: Fleet, tmp_path: Path, then: str
) -> None:
    """The central database (the witness with it) is restored from a backup taken before
    the station's last clip and checkpoint, while the station syncs on: the next round sends
    both again, the checkpoint with a consistency proof from what the witness holds now, so
    no round fails, no alarm is raised and the log is witnessed up to its newest entry.

    Also when the first thing sent after the restore is a checkpoint alone (say the one
    signed at shutdown: no new clip, so no clips batch finds the site behind): the
    checkpoints batch names the cursor it follows too, is answered "behind" and goes again
    from what the site holds; the lost clip goes in the next round."""
    from central.db import CentralDB
    from station.proof.finalizer import build_finalizers

    name = f"station-wrestore-{then}"
    cdb = CentralDB(fleet.dsn)
    token = cdb.add_station(name)
    cfg = station_cfg(tmp_path, name, fleet_seaweed(fleet), fleet.bucket)
    cfg = cfg.replace("central", enabled=True, url=fleet.url, token=token, interval_s=0.2)
    frames = 25 if then == "clip" else 28  # lengths no other test here records
    sync = CentralSync(cfg)
    try:
        record(cfg, ["WR-1"], frames=frames)
        sync.sync_once()
        sid = cdb.station_for_token(token)["id"]  # type: ignore[index]
        backup = _backup(cdb, sid)
        record(cfg, ["WR-2"], frames=frames + 1)
        sync.sync_once()
        _restore(cdb, sid, backup)
        if then == "clip":
            record(cfg, ["WR-3"], frames=frames + 2)
        else:
            finalizers = build_finalizers(cfg)
            try:
                for f in finalizers:
                    if hasattr(f, "checkpoint"):
                        f.checkpoint()
            finally:
                for f in finalizers:
                    f.close()
        sent = sync.sync_once()  # the same process, no new hello: raises if a step fails
        assert sent["checkpoints"] >= 2  # the lost one again, and the new one
        sync.sync_once()
    finally:
        sync.stop()
    try:
        orders = cdb._all("SELECT order_id FROM clips WHERE station_id = %s", (sid,))
        n = 3 if then == "clip" else 2
        assert sorted(r["order_id"] for r in orders) == [f"WR-{i}" for i in range(1, n + 1)]
        (now,) = cdb._all("SELECT max(tree_size) AS n FROM witnessed WHERE station_id = %s",
                          (sid,))  # fmt: skip
        assert now["n"] == n
        assert cdb._all("SELECT kind FROM witness_alarms WHERE station_id = %s", (sid,)) == []
    finally:
        cdb.close()


def _big_clip(cfg: config_mod.Config, tmp_path: Path, order: str) -> Any:
    """A ~12 MB clip of ``order`` indexed in ``cfg``'s new data dir."""
    cfg.station.data_dir.mkdir(parents=True)
    src = big_mp4(tmp_path / "big.mp4")
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        return index_clip(ledger, cfg.station.data_dir, src, order, station=cfg.station.name)
    finally:
        ledger.close()


def test_object_store_killed_mid_upload_resumes_without_loss_or_duplicates(
    seaweed: SeaweedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = _bucket(seaweed)
    # 5 MB parts at 8 MB/s: the ~12 MB clip takes ~1.5 s, time to pull the plug in between
    cfg = station_cfg(
        tmp_path, "station-big", seaweed, bucket, part_size_mb=5, max_bytes_per_s=8_000_000,
        keyframes=False,
    )  # fmt: skip
    clip = _big_clip(cfg, tmp_path, "BIG-1")
    assert clip.size > 10 * 1024 * 1024
    key = clip_key(cfg.archive.prefix, cfg.station.name, clip.sha256)

    archiver = Archiver(cfg)
    archiver.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = archiver.journal.get(key)
            if state is not None and len(state.parts) >= 1:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no part was uploaded")
        seaweed.stop(kill=True)  # the store dies in the middle of the upload
        time.sleep(0.3)
    finally:
        archiver.stop(timeout=30)  # the station restarts too
    try:
        ledger = Ledger.in_data_dir(cfg.station.data_dir)
        assert ledger.archive_backlog() == 1  # not marked archived
        ledger.close()
    finally:
        seaweed.start()

    with caplog.at_level(logging.INFO, logger="station.fleet.objstore"):
        again = Archiver(cfg)
        try:
            assert again.run_once() == 1
            assert "resuming upload" in caplog.text
            # only what was missing went over the wire
            assert again.store.bytes_sent < clip.size
            assert again.store.sha256_of(key) == (clip.sha256, clip.size)
            versions = again.store.client.list_object_versions(Bucket=bucket, Prefix=key)
            assert len(versions.get("Versions", [])) == 1
            uploads = again.store.client.list_multipart_uploads(Bucket=bucket)
            assert not uploads.get("Uploads")
            assert again.journal.get(key) is None
        finally:
            again.stop()
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        assert ledger.archive_backlog() == 0
        assert _sha(cfg.station.data_dir / clip.path) == clip.sha256  # local copy untouched
    finally:
        ledger.close()


class _CutAfter:
    """A TokenBucket stand-in that lets ``limit`` bytes go over the wire, then sets the
    archiver's stop: the request body ends there, mid-object."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent = 0

    def consume(self, n: int, stop: threading.Event | None = None) -> bool:
        self.sent += n
        if self.sent <= self.limit:
            return True
        assert stop is not None
        stop.set()
        return False


@pytest.mark.parametrize("part_size_mb", [16, 5], ids=["single-put", "multipart"])
def test_an_upload_cut_mid_object_is_never_counted_and_the_retry_sends_it_whole(
    seaweed: SeaweedServer, tmp_path: Path, part_size_mb: int
) -> None:
    """The body stops half-way through the clip (one PUT, or a part of a multipart upload):
    the clip is not marked archived, retention's question finds no copy of it, and the
    next pass leaves the whole clip, verified, as the key's object."""
    from botocore.exceptions import HTTPClientError

    from station.fleet.objstore import ObjectStore

    bucket = _bucket(seaweed)
    cfg = station_cfg(tmp_path, "station-cut", seaweed, bucket, part_size_mb=part_size_mb,
                      keyframes=False)  # fmt: skip
    clip = _big_clip(cfg, tmp_path, "CUT-1")
    key = clip_key(cfg.archive.prefix, cfg.station.name, clip.sha256)
    cut = Archiver(cfg)
    try:
        cut.store.limiter = _CutAfter(clip.size * 3 // 5)  # type: ignore[assignment]
        with pytest.raises(HTTPClientError, match="upload stopped"):
            cut.run_once()  # a store error: the archiver's loop backs off
        assert cut.ledger.archive_backlog() == 1  # not marked archived
    finally:
        cut.stop()
    store = ObjectStore(cfg.archive)
    assert store.check_archived(key, clip.size, clip.sha256) is not None
    again = Archiver(cfg)
    try:
        assert again.run_once() == 1
        assert again.ledger.archive_backlog() == 0
    finally:
        again.stop()
    assert store.check_archived(key, clip.size, clip.sha256) is None
    assert store.sha256_of(key) == (clip.sha256, clip.size)


def test_object_lock_is_applied_where_the_bucket_supports_it(
    seaweed: SeaweedServer, tmp_path: Path
) -> None:
    bucket = _bucket(seaweed, lock=True)
    cfg = station_cfg(
        tmp_path, "station-lock", seaweed, bucket, object_lock_mode="GOVERNANCE",
        object_lock_days=2,
    )  # fmt: skip
    record(cfg, ["LOCK-1"])
    arch = Archiver(cfg)
    try:
        assert arch.run_once() == 1
        assert arch.store.lock_enabled is True
        ledger = Ledger.in_data_dir(cfg.station.data_dir)
        clip = ledger.clips()[0]
        ledger.close()
        key = clip_key(cfg.archive.prefix, cfg.station.name, clip.sha256)
        ret = arch.store.client.get_object_retention(Bucket=bucket, Key=key)["Retention"]
        assert ret["Mode"] == "GOVERNANCE"
        until = ret["RetainUntilDate"]
        assert until.astimezone() > datetime.now().astimezone() + timedelta(days=1)
    finally:
        arch.stop()


@pytest.mark.parametrize("part_size_mb", [6, 16])
def test_a_clip_sent_with_another_part_size_is_proven_and_not_sent_again(
    seaweed: SeaweedServer, tmp_path: Path, part_size_mb: int
) -> None:
    """On a real store (whose composite checksums carry their part count): a clip completed
    but not marked archived, then ``part_size_mb`` changed (other parts, or one part). The
    next pass proves it by reading it back instead of sending a second version."""
    from station.fleet.objstore import ObjectStore, UploadJournal
    from station.store.index import open_index
    from station.store.sqlitedb import Database

    bucket = _bucket(seaweed, lock=True)  # versioned: a second PUT would be a second version
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = big_mp4(tmp_path / "big.mp4")
    size, sha = path.stat().st_size, _sha(path)
    assert size > 6 * 1024 * 1024

    opened: list[Database] = []

    def store(mb: int) -> ObjectStore:
        cfg = station_cfg(tmp_path, "station-ps", seaweed, bucket, part_size_mb=mb)
        opened.append(open_index(data_dir / "index.sqlite3"))
        return ObjectStore(cfg.archive, journal=UploadJournal(opened[-1]))

    try:
        first = store(5)
        assert first.put_file("k/big.mp4", path, sha256=sha, size=size).uploaded
        again = store(part_size_mb).put_file("k/big.mp4", path, sha256=sha, size=size)
        assert not again.uploaded and "read-back-sha256" in again.verified_by
        listing = first.client.list_object_versions(Bucket=bucket, Prefix="k/big.mp4")
        assert len(listing["Versions"]) == 1
    finally:
        for db in opened:
            db.close()


@pytest.mark.parametrize("part_size_mb", [16, 5], ids=["single-put", "multipart"])
def test_retention_proves_the_bytes_not_just_the_size_and_metadata_a_forger_can_copy(
    seaweed: SeaweedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part_size_mb: int
) -> None:
    """Someone who may write the bucket replaces an archived clip by other bytes of the same
    size and copies the uploader's ``x-amz-meta-sha256`` onto them: retention's check finds
    it not the clip (the store's checksum, then the read-back), with or without the local
    file. The honest object is proven by the store's SHA-256 checksum (for a multipart
    object its composite over the local file's parts), without reading it back."""
    from station.fleet.objstore import ObjectStore

    bucket = _bucket(seaweed)
    cfg = station_cfg(tmp_path, "station-forge", seaweed, bucket, part_size_mb=part_size_mb,
                      keyframes=False)  # fmt: skip
    clip = _big_clip(cfg, tmp_path, "FORGE-1")
    path = cfg.station.data_dir / clip.path
    key = clip_key(cfg.archive.prefix, cfg.station.name, clip.sha256)
    arch = Archiver(cfg)
    try:
        assert arch.run_once() == 1
    finally:
        arch.stop()
    store = ObjectStore(cfg.archive)
    real_read_back = store.sha256_of
    reads: list[str] = []

    def read_back(k: str) -> tuple[str, int]:
        reads.append(k)
        return real_read_back(k)

    monkeypatch.setattr(store, "sha256_of", read_back)
    assert store.check_archived(key, clip.size, clip.sha256, path) is None
    assert reads == []  # the store's own checksum proved it
    assert store.check_archived(key, clip.size, clip.sha256) is None  # no local file: read back
    assert reads == ([] if part_size_mb == 16 else [key])

    forged = bytes(b ^ 0xFF for b in path.read_bytes()[:4096]) + path.read_bytes()[4096:]
    store.client.put_object(Bucket=bucket, Key=key, Body=forged,
                            Metadata={"sha256": clip.sha256})  # fmt: skip
    head = store.head(key)
    assert head is not None and head["ContentLength"] == clip.size
    assert head["Metadata"]["sha256"] == clip.sha256  # what the HEAD alone compared
    for local in (path, None):
        why = store.check_archived(key, clip.size, clip.sha256, local)
        assert why is not None and "read back" in why
    assert path.is_file()


def test_packcam_central_cli(pg_dsn: str, tmp_path: Path) -> None:
    import io

    from central.cli import cmd_central
    from packcam.cli import build_parser

    parser = build_parser()
    out = io.StringIO()
    args = parser.parse_args(["central", "add-station", "station-x", "--dsn", pg_dsn])
    assert cmd_central(args, out=out) == 0
    assert "token pcs_" in out.getvalue()
    out = io.StringIO()
    cmd_central(parser.parse_args(["central", "stations", "--dsn", pg_dsn]), out=out)
    assert out.getvalue().startswith("station-x\tclips 0")
    from packcam.cli import main

    assert main(["central", "add-station", "station-x", "--dsn", pg_dsn]) == 3  # exists


def test_station_health_reaches_the_central_dashboard(fleet: Fleet) -> None:
    _archive_all(fleet.stations[:1])
    _sync(fleet.stations[0], fleet)
    client = login(fleet.server.packcam_app.test_client(), "operator")
    got = client.get("/api/stations").get_json()
    by_name = {s["station"]: s for s in got["stations"]}
    st = by_name["station-01"]
    assert st["archive_backlog"] == 0 and st["last_clip_utc"]
    assert st["disk_free_bytes"] and st["silent"] is False
    assert set(by_name) == {c.station.name for c in fleet.stations}
    page = client.get("/dashboard")
    assert page.status_code == 200 and "station-01" in page.get_data(as_text=True)


def _post(fleet: Fleet, path: str, token: str, doc: dict[str, Any]) -> tuple[int, Any]:
    import json as json_mod
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        fleet.url.rstrip("/") + "/api/fleet/v1" + path,
        data=json_mod.dumps(doc).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json_mod.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json_mod.loads(exc.read() or b"{}")


def test_fleet_api_refuses_bad_tokens_other_stations_and_forged_checkpoints(fleet: Fleet) -> None:
    import base64

    _sync(fleet.stations[0], fleet)  # enrols station-01 with its public key
    token = fleet.tokens["station-01"]
    assert _post(fleet, "/health", "pcs_forged", {})[0] == 401
    assert _post(fleet, "/health", "", {})[0] == 401
    clip = {"id": 999, "station": "station-02", "order_id": "X"}
    status, body = _post(fleet, "/clips", token, {"clips": [clip]})
    assert status == 409 and "station-02" in body["error"]
    assert _post(fleet, "/clips", token, {"clips": "nope"})[0] == 409
    forged = {
        "local_id": 10_000, "tree_size": 1, "root_hash": "00" * 32,
        "body_b64": base64.b64encode(b'{"forged": true}').decode(),
        "signature_b64": base64.b64encode(b"\0" * 64).decode(), "created_utc": "x",
    }  # fmt: skip
    status, body = _post(fleet, "/checkpoints", token, {"checkpoints": [forged]})
    assert status == 409 and "not signed" in body["error"]


def test_verify_page_in_central_mode(fleet: Fleet, tmp_path: Path) -> None:
    _archive_all(fleet.stations[:1])
    _sync(fleet.stations[0], fleet)
    ledger = Ledger.in_data_dir(fleet.stations[0].station.data_dir)
    clip = ledger.clips()[0]
    ledger.close()
    data = (fleet.stations[0].station.data_dir / clip.path).read_bytes()
    good = _verify_upload(fleet, data)
    assert "signed by the station" in good and clip.order_id in good
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    assert "no station of this site recorded" in _verify_upload(fleet, bytes(flipped))


def _verify_upload(fleet: Fleet, payload: bytes, lang: str = "en") -> str:
    """The central /verify page's answer to a clip uploaded by anyone."""
    return verify_page(fleet.server.packcam_app, payload, lang)


def test_central_verify_says_only_what_the_signed_manifest_proves(
    fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare clip on the central /verify page. Registered but its signed manifest not yet
    archived: the index (the seller's own database) proves nothing, so not verified, not
    "intact". Archived: intact but not anchored, with the station key to compare; the order
    shown is the signed manifest's, not an index row edited afterwards."""
    import psycopg

    from central.db import CentralDB
    from station.proof.keys import StationKey, fingerprint
    from station.proof.paths import ProofPaths

    cdb = CentralDB(fleet.dsn)
    fleet.tokens["station-vf"] = cdb.add_station("station-vf")
    cdb.close()
    cfg = station_cfg(tmp_path, "station-vf", fleet_seaweed(fleet), fleet.bucket)
    monkeypatch.setattr(proof_support, "frame_i420", noise_i420)  # a clip of real size
    record(cfg, ["VF-1"], frames=160)
    _sync(cfg, fleet)  # registered, not archived
    led = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        (clip,) = led.clips("VF-1")
    finally:
        led.close()
    data = (cfg.station.data_dir / clip.path).read_bytes()
    assert len(data) > 2 << 20
    page = _verify_upload(fleet, data)
    assert "Not verified" in page and "Intact" not in page and "Not authentic" not in page
    zh = _verify_upload(fleet, data, "zh_CN")
    assert "未能验证" in zh and "本站无法检查该文件" in zh and "完整" not in zh

    _archive_all([cfg])
    _sync(cfg, fleet)
    with psycopg.connect(fleet.dsn, autocommit=True) as conn:
        conn.execute("UPDATE clips SET order_id = 'EDITED-1' WHERE sha256 = %s", (clip.sha256,))
    page = _verify_upload(fleet, data)
    assert "Intact, but not anchored" in page
    key = fingerprint(StationKey.load(ProofPaths.from_config(cfg).key).public)
    assert key in page  # the fingerprint the page asks the reader to compare
    match = page.split("<table>", 1)[1].split("</table>", 1)[0]
    assert "VF-1" in match and "EDITED-1" not in match


def test_the_station_service_archives_and_registers_what_it_records(
    fleet: Fleet, tmp_path: Path
) -> None:
    """`packcam station` with [archive] and [central] on: recorded clips reach the bucket and
    the central index (the service's threads, then `packcam archive` for what is left)."""
    import argparse

    from central.cli import cmd_archive
    from station.capture.synthetic import Scenario, SyntheticCamera
    from station.service import run_station

    db_token = fleet.tokens.get("station-svc")
    if db_token is None:
        from central.db import CentralDB

        cdb = CentralDB(fleet.dsn)
        db_token = fleet.tokens["station-svc"] = cdb.add_station("station-svc")
        cdb.close()
    base = station_cfg(tmp_path, "station-svc", fleet_seaweed(fleet), fleet.bucket)
    cfg = base.replace("central", enabled=True, url=fleet.url, token=db_token, interval_s=0.2)
    cfg = cfg.replace("camera", width=320, height=240, fps=10.0)
    cfg = cfg.replace("scanner", camera_decode=False)
    scenario = Scenario.from_dict(
        {"seed": 1, "event": [
            {"at": 0.5, "kind": "key", "text": "SVC-1"}, {"at": 2.5, "kind": "pedal"},
            {"at": 3.0, "kind": "key", "text": "SVC-2"}, {"at": 5.0, "kind": "pedal"},
            {"at": 5.5, "kind": "end"},
        ]}
    )  # fmt: skip
    cam = SyntheticCamera(320, 240, 10.0, scenario, realtime=False)
    run_station(cfg, threading.Event(), camera=cam, live_view=False)
    toml = tmp_path / "station.toml"
    toml.write_text(
        f'[station]\nname = "station-svc"\ndata_dir = "{cfg.station.data_dir}"\n'
        "[archive]\n"
        + "".join(
            f"{k} = {v!r}\n".replace("'", '"')
            for k, v in {
                "enabled": True, "endpoint_url": cfg.archive.endpoint_url,
                "bucket": cfg.archive.bucket, "access_key_id": S3_ACCESS_KEY,
                "secret_access_key": S3_SECRET_KEY, "addressing_style": "path",
            }.items()
        ).replace("True", "true")
        + f'[central]\nenabled = true\nurl = "{fleet.url}"\ntoken = "{db_token}"\n',
        encoding="utf-8",
    )  # fmt: skip
    import io

    out = io.StringIO()
    assert cmd_archive(argparse.Namespace(config=str(toml)), out=out) == 0
    assert "0 not archived yet" in out.getvalue()
    client = login(fleet.server.packcam_app.test_client(), "viewer")
    for order in ("SVC-1", "SVC-2"):
        got = client.get(f"/api/orders/{order}").get_json()
        assert got["clips"][0]["station"] == "station-svc"
        assert got["clips"][0]["archived_utc"]


def fleet_seaweed(fleet: Fleet) -> SeaweedServer:
    """The session's SeaweedFS, as the fleet's bucket lives there (endpoint from a station)."""

    class _Endpoint:
        endpoint = fleet.stations[0].archive.endpoint_url

    return _Endpoint()  # type: ignore[return-value]


def test_central_sync_pushes_once_more_at_shutdown(
    fleet: Fleet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A clip archived just before the station stops is registered as archived at the stop,
    not at the next start (which, for a retired station, never comes)."""
    from central.db import CentralDB

    cdb = CentralDB(fleet.dsn)
    fleet.tokens["station-fin"] = cdb.add_station("station-fin")
    cdb.close()
    cfg = fleet.with_central(
        station_cfg(tmp_path, "station-fin", fleet_seaweed(fleet), fleet.bucket)
    )
    record(cfg, ["FIN-1"])
    sync = CentralSync(cfg)
    assert sync.sync_once()["clips"] == 1  # the last pass before the archiver's upload
    client = login(fleet.server.packcam_app.test_client(), "viewer")
    arch = Archiver(cfg)
    try:
        assert arch.run_once() == 1
    finally:
        arch.stop()
    assert not client.get("/api/orders/FIN-1").get_json()["clips"][0]["archived_utc"]
    sync.stop(final_push=True)
    got = client.get("/api/orders/FIN-1").get_json()["clips"][0]
    assert got["archived_utc"] and got["station"] == "station-fin"

    # A central site that is gone: the stop still returns, says so, and loses nothing locally.
    dead = cfg.replace("central", url="http://127.0.0.1:9", timeout_s=2.0)
    record(dead, ["FIN-2"])
    with caplog.at_level(logging.WARNING, logger="station.fleet.central_sync"):
        CentralSync(dead).stop(final_push=True)
    assert "final push at shutdown failed" in caplog.text
    led = Ledger.in_data_dir(dead.station.data_dir)
    try:
        assert [c.order_id for c in led.clips("FIN-2")] == ["FIN-2"]  # the next start sends it
    finally:
        led.close()


def test_a_waybill_linked_after_the_clip_was_synced_reaches_the_central_search(
    fleet: Fleet, tmp_path: Path
) -> None:
    """LATE-A's waybill was decoded after its clip was signed and sent to the central site
    (a late camera read, linked in the station's index only): the next sync sends the clip
    again and the site adds the waybill, so a search there finds LATE-A by it. The site only
    adds: a waybill it holds keeps its row, and a clip sent with another SHA-256 adds nothing."""
    from central.db import CentralDB
    from station.store.clips import WaybillLink

    name, wb = "station-late", "YT5566778899"
    cdb = CentralDB(fleet.dsn)
    fleet.tokens[name] = cdb.add_station(name)
    cfg = fleet.with_central(station_cfg(tmp_path, name, fleet_seaweed(fleet), fleet.bucket))
    record(cfg, ["LATE-A", "LATE-B"])
    client = login(fleet.server.packcam_app.test_client(), "viewer")

    def found(q: str) -> list[tuple[str, str]]:
        got = client.get("/api/clips", query_string={"q": q}).get_json()["clips"]
        return [(c["order_id"], c["station"]) for c in got]

    def held() -> list[tuple[str, str, str]]:
        rows = cdb._all(
            "SELECT c.order_id, w.waybill, w.carrier FROM clip_waybills w JOIN clips c"
            " ON c.id = w.clip_id JOIN stations s ON s.id = c.station_id WHERE s.name = %s"
            " ORDER BY c.order_id, w.waybill",
            (name,),
        )
        return [(r["order_id"], r["waybill"], r["carrier"]) for r in rows]

    sync = CentralSync(cfg)
    try:
        assert sync.sync_once()["clips"] == 2
        signed = held()  # the waybills in the signed manifests
        assert [o for o, _w, _c in signed] == ["LATE-A", "LATE-B"]
        led = Ledger.in_data_dir(cfg.station.data_dir)
        try:
            (a,) = led.clips("LATE-A")
            assert a.id is not None
            led.link_waybill_after_signing(a.id, "LATE-A", WaybillLink(wb, "YT", 1.5))
        finally:
            led.close()
        assert sync.sync_once()["waybills"] == 1
        assert held() == sorted([*signed, ("LATE-A", wb, "YT")])
        assert found(wb) == [("LATE-A", name)]
        assert found("5566778") == [("LATE-A", name)]
        assert sync.sync_once()["waybills"] == 0  # sent once
        doc = sync._clip_doc(a.id)
    finally:
        sync.stop()
    assert doc is not None
    # marked as the station marks it: in the index only, not proven by the signed manifest
    late = {w["waybill"]: w.get("linked_utc") for w in doc["waybills"]}
    assert late[wb] and not any(v for w, v in late.items() if w != wb)
    clips = client.get("/api/orders/LATE-A").get_json()["clips"]
    assert [c.get("late_waybills") for c in clips] == [[wb]]
    assert client.get("/api/orders/LATE-B").get_json()["clips"][0].get("late_waybills") is None
    for lang, want in (("en", "linked in the index after the clip was signed"),
                       ("zh-CN", "视频签名后才在索引中关联")):  # fmt: skip
        page = client.get("/orders/LATE-A", headers={"Accept-Language": lang})
        assert want in page.get_data(as_text=True).split(wb, 1)[1].split("</dd>", 1)[0], lang
        page = client.get("/orders/LATE-B", headers={"Accept-Language": lang})
        assert want not in page.get_data(as_text=True), lang
    changed = {**doc, "waybills": [{"waybill": wb, "carrier": "ZZ", "t_clip_s": 9.0}]}
    assert _post(fleet, "/clips", fleet.tokens[name], {"clips": [changed]})[0] == 200
    other = {**doc, "sha256": "ab" * 32, "waybills": [{"waybill": "ZZ000111", "carrier": "ZZ"}]}
    status, resp = _post(
        fleet, "/clips", fleet.tokens[name], {"clips": [other], "conflicts": "report"}
    )
    assert status == 200 and resp["conflicts"] == [a.id]
    assert held() == sorted([*signed, ("LATE-A", wb, "YT")])  # none rewritten, none added
    cdb.close()


def test_a_replaced_station_keeps_both_histories_and_overwrites_nothing(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A Pi is replaced: same station name, a fresh data dir and key. Without
    `replace-station` its new key is refused; with it, the new station's clips register and
    play, the old station's clips stay playable and verify with the old key, and no object in
    the bucket gets a second version (the two logs live under their keys' fingerprints)."""
    from central.db import CentralDB
    from central.verify import verify_clip_central
    from station.fleet.central_sync import SyncError
    from station.fleet.objstore import ObjectStore
    from station.proof.verify import TAMPERED, verify_bundle

    name = "station-rep"
    cdb = CentralDB(fleet.dsn)
    old_token = cdb.add_station(name)
    old = station_cfg(tmp_path / "old-pi", name, fleet_seaweed(fleet), fleet.bucket)
    old = old.replace("central", enabled=True, url=fleet.url, token=old_token, interval_s=0.2)
    # lengths no other test here records: a clip's frames depend only on the length, so the
    # first clip of each default-length record() may be the same file at every station of the
    # module (it is, unless the encoder thread's timing made an extra keyframe in one)
    record(old, ["REP-1", "REP-2"], frames=17)
    _archive_all([old])
    sync = CentralSync(old)
    try:
        sync.sync_once()
    finally:
        sync.stop()

    # The new Pi: fresh data dir and key, configured with the old token by mistake.
    new = station_cfg(tmp_path / "new-pi", name, fleet_seaweed(fleet), fleet.bucket)
    record(new, ["REP-3", "REP-2"], frames=18)  # REP-2 packed again after the swap
    _archive_all([new])
    wrong = CentralSync(
        new.replace("central", enabled=True, url=fleet.url, token=old_token, interval_s=0.2)
    )
    try:
        with pytest.raises(SyncError, match="replace-station station-rep"):
            wrong.sync_once()
    finally:
        wrong.stop()

    new_token = cdb.replace_station(name)
    new = new.replace("central", enabled=True, url=fleet.url, token=new_token, interval_s=0.2)
    sync = CentralSync(new)
    try:
        assert sync.sync_once()["clips"] == 2
    finally:
        sync.stop()
    stale = CentralSync(old)  # the old Pi, back on the network, can no longer write
    try:
        with pytest.raises(SyncError, match="401"):
            stale.sync_once()
    finally:
        stale.stop()

    client = login(fleet.server.packcam_app.test_client(), "viewer")
    rep2 = client.get("/api/orders/REP-2").get_json()["clips"]
    assert len(rep2) == 2 and {c["station"] for c in rep2} == {name}
    # Each Pi's clip of REP-2 has its own bundle, signed by its own key: never the other's
    # clip in it, never one key's parts said to cover the other's clip
    for c, cfg in zip(sorted(rep2, key=lambda c: c["id"]), (old, new), strict=True):
        got = client.get(f"/clips/{c['id']}/bundle.zip")
        assert got.status_code == 200, got.data[:300]
        with zipfile.ZipFile(io.BytesIO(got.data)) as zf:
            clips = [n for n in zf.namelist() if n.startswith("clips/")]
            assert clips == [f"clips/{Path(c['path']).name}"]
            assert zf.read(clips[0]) == (cfg.station.data_dir / c["path"]).read_bytes()
        (bundle := tmp_path / f"rep2-{c['id']}.zip").write_bytes(got.data)
        report = verify_bundle(bundle, tmp_dir=tmp_path)
        assert report.verdict != TAMPERED, "\n".join(report.lines())
    store = ObjectStore(fleet.central_cfg.archive)
    for order, cfg in (("REP-1", old), ("REP-3", new)):
        clip = client.get(f"/api/orders/{order}").get_json()["clips"][0]
        local = cfg.station.data_dir / clip["path"]
        got = client.get(clip["video_url"], headers={"Range": "bytes=0-99"})
        assert got.status_code == 206 and got.data == local.read_bytes()[:100]
        # verify finds the clip by its bytes: they must be this clip's alone in the module's
        # shared site, or the report is about another station's clip (archived or not yet)
        sha = hashlib.sha256(local.read_bytes()).hexdigest()
        assert [(c.station, c.order_id) for c in cdb.clips_by_sha256(sha)] == [(name, order)]
        report = verify_clip_central(local, cdb, store)
        checks = {c.name: c.status for c in report.checks}
        assert checks.get("signature") == "ok", "\n".join(report.lines())

    rows = cdb.stations_table(retired=True)
    mine = [r for r in rows if r["name"] == name]
    assert [bool(r["retired_utc"]) for r in mine] == [True, False]
    assert mine[0]["replaced_by"] == mine[1]["id"] and mine[0]["clips"] == 2
    assert name in [r["name"] for r in cdb.stations_table()]
    assert len([r for r in cdb.stations_table() if r["name"] == name]) == 1
    cdb.close()

    prefix = f"packcam/stations/{name}/"
    listing = store.client.list_object_versions(Bucket=fleet.bucket, Prefix=prefix)
    keys = [v["Key"] for v in listing["Versions"]]
    assert len(keys) == len(set(keys)), "an object of the old station got a second version"
    logs = {k.split("/proof/log/")[1].split("/")[0] for k in keys if "/proof/log/" in k}
    assert len(logs) == 2  # one log per key


def test_a_station_restored_from_a_backup_syncs_again_and_overwrites_nothing(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The data dir is copied at T, more clips are recorded and synced, then the copy is put
    back (same name and key) and new clips are recorded offline: they took local ids the
    central site holds with other SHA-256s. The sync renumbers them (they were never
    acknowledged), new clips start above the site's high, and every clip of both timelines is
    on the central site with its own SHA-256, none overwritten."""
    import shutil

    from central.db import CentralDB
    from station.fleet.central_sync import CLIPS_CURSOR
    from station.store.cursors import SyncCursors

    name = "station-rst"
    cdb = CentralDB(fleet.dsn)
    token = cdb.add_station(name)
    cfg = station_cfg(tmp_path / "pi", name, fleet_seaweed(fleet), fleet.bucket)
    cfg = cfg.replace("central", enabled=True, url=fleet.url, token=token, interval_s=0.2)
    data = cfg.station.data_dir

    def sync() -> dict[str, int]:
        s = CentralSync(cfg)
        try:
            return s.sync_once()
        finally:
            s.stop()

    def local() -> dict[str, tuple[int, str]]:
        led = Ledger.in_data_dir(data)
        try:
            return {r.order_id: (int(r.id or 0), r.sha256) for r in led.clips()}
        finally:
            led.close()

    record(cfg, ["RST-1", "RST-2"])  # (each call its own length: the test's frames repeat)
    sync()
    shutil.copytree(data, tmp_path / "backup")  # the backup, at T
    record(cfg, ["RST-3", "RST-4"], frames=13)
    assert sync()["clips"] == 2
    first = local()
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "backup", data)  # restored: RST-3 and RST-4 are not in it
    record(cfg, ["RST-5", "RST-6"], frames=14)  # offline: they take the ids RST-3 and RST-4 had
    collided = local()
    assert {collided[o][0] for o in ("RST-5", "RST-6")} == {first[o][0] for o in ("RST-3", "RST-4")}

    # The witness refuses the restored log's checkpoints (a rollback: an alarm, as it must);
    # the clips go first and get through.
    with pytest.raises(SyncError, match="log-rollback"):
        sync()
    record(cfg, ["RST-7"], frames=15)
    with pytest.raises(SyncError, match="log-rollback"):
        sync()
    second = local()
    renumbered = {o: s for o, (_i, s) in collided.items()} | {"RST-7": second["RST-7"][1]}
    assert {o: s for o, (_i, s) in second.items()} == renumbered  # renumbered, not altered

    rows = cdb._all(
        "SELECT c.local_id, c.order_id, c.sha256 FROM clips c JOIN stations s"
        " ON s.id = c.station_id WHERE s.name = %s ORDER BY c.local_id",
        (name,),
    )
    central = {r["order_id"]: (int(r["local_id"]), r["sha256"]) for r in rows}
    want = {**first, **second}
    assert len(rows) == 7 and sorted(central) == sorted(want)
    assert {o: sha for o, (_i, sha) in central.items()} == {o: s for o, (_i, s) in want.items()}
    assert len({sha for _i, sha in central.values()}) == 7  # nobody's clip under another's
    for order in ("RST-1", "RST-2", "RST-5", "RST-6", "RST-7"):
        assert central[order][0] == second[order][0]  # the station's ids are the site's
    for order in ("RST-3", "RST-4"):
        assert central[order] == first[order]  # the first timeline kept its ids and hashes
    assert second["RST-7"][0] > max(i for i, _s in central.values() if i != second["RST-7"][0])
    led = Ledger.in_data_dir(data)
    try:
        assert SyncCursors(led.db).cursor(CLIPS_CURSOR) == second["RST-7"][0]
    finally:
        led.close()
    (mine,) = [r for r in cdb.fleet_health() if r["name"] == name]
    assert [a["kind"] for a in mine["witness_alarms"]] == ["log-rollback"]

    # Restored once more, and this time the sync says hello before anything is recorded: the
    # next clip takes an id above the site's at once, nothing to renumber.
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "backup", data)
    sync()
    record(cfg, ["RST-8"], frames=16)
    third = local()
    assert third["RST-8"][0] == second["RST-7"][0] + 1
    with pytest.raises(SyncError, match="log-rollback"):
        sync()
    (row,) = cdb._all(
        "SELECT c.local_id, c.sha256 FROM clips c JOIN stations s ON s.id = c.station_id"
        " WHERE s.name = %s AND c.order_id = 'RST-8'",
        (name,),
    )
    assert (row["local_id"], row["sha256"]) == third["RST-8"]
    cdb.close()


def test_a_restored_station_reports_its_refused_log_and_gets_a_witnessed_log_back(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A Pi restored from a backup of its data dir (same name and key): the witness refuses
    its log, and the station still reports its health, naming the refusal. The operator's way
    back (docs/fleet.md): `replace-station`, then `packcam keys rotate` on the station. The
    same key under the new enrolment is refused (the witness would cosign a fork of that key's
    log); the rotation of the refused log is not held against the new enrolment; the new key's
    log is witnessed from entry 0; no clip is registered twice and old clips still verify."""
    import base64
    import json
    import shutil
    import urllib.request

    from central.db import CentralDB
    from central.verify import verify_clip_central
    from station.fleet.objstore import ObjectStore
    from station.proof import rotation
    from station.proof.bundle import export_order
    from station.proof.verify import verify_bundle

    name = "station-rkey"
    cdb = CentralDB(fleet.dsn)
    old_token = cdb.add_station(name)
    cfg = station_cfg(tmp_path / "pi", name, fleet_seaweed(fleet), fleet.bucket)
    data = cfg.station.data_dir

    def sync(token: str) -> dict[str, int]:
        s = CentralSync(cfg.replace("central", enabled=True, url=fleet.url, token=token))
        try:
            return s.sync_once()
        finally:
            s.stop()

    def health() -> dict[str, Any]:
        (row,) = [r for r in cdb.fleet_health() if r["name"] == name and not r["retired_utc"]]
        return dict(row)

    record(cfg, ["RK-1", "RK-2"], frames=21)  # lengths no other test here records
    _archive_all([cfg])
    sync(old_token)
    shutil.copytree(data, tmp_path / "backup")
    record(cfg, ["RK-3"], frames=22)
    _archive_all([cfg])
    sync(old_token)
    shutil.rmtree(data)
    shutil.copytree(tmp_path / "backup", data)  # the SD card died; the backup is put back
    record(cfg, ["RK-4"], frames=23)
    _archive_all([cfg])

    # Refused by the witness, the round fails, but the health report still goes out and
    # names the refusal: the dashboard shows a station that is up with its log refused.
    with pytest.raises(SyncError, match="log-fork"):
        sync(old_token)
    h = health()
    assert "log-fork" in h["health"].get("sync_failed", {}).get("checkpoints", "")
    client = login(fleet.server.packcam_app.test_client(), "operator")
    page = client.get("/fleet").get_data(as_text=True)
    assert "central sync failing" in page and "log-fork" in page
    dash = client.get("/dashboard").get_data(as_text=True)
    assert "Central sync failing" in dash and "log-fork" in dash

    # The operator: replace-station first. The same key on the new enrolment is refused.
    new_token = cdb.replace_station(name)
    with pytest.raises(SyncError, match="packcam keys rotate"):
        sync(new_token)
    assert "packcam keys rotate" in health()["health"]["sync_failed"]["hello"]
    # Then the station rotates its key (stopped): the final checkpoint of its refused log
    # cannot be witnessed, and the new enrolment does not need it.
    rotation.rotate(cfg)
    sync(new_token)
    record(cfg, ["RK-5"], frames=24)
    _archive_all([cfg])
    assert sync(new_token)["checkpoints"] >= 1
    assert not health()["health"]["sync_failed"]

    rows = [r for r in cdb.stations_table(retired=True) if r["name"] == name]
    assert [bool(r["retired_utc"]) for r in rows] == [True, False]
    new_row = rows[1]
    witnessed = cdb._all(
        "SELECT tree_size, log_key FROM witnessed WHERE station_id = %s", (new_row["id"],)
    )
    assert witnessed and {w["log_key"] for w in witnessed} == {new_row["key_fingerprint"]}
    assert max(w["tree_size"] for w in witnessed) == 1  # RK-5: entry 0 of the new key's log
    alarms = cdb._all("SELECT kind FROM witness_alarms WHERE station_id = %s", (new_row["id"],))
    assert alarms == []  # the new enrolment witnessed nothing wrong
    assert new_row["clips"] == 1  # RK-5 only: nothing the old enrolment holds sent again
    # The witness's public record: one root per key and size (the old key's refused log was
    # never cosigned), so an old clip's bundle checked against it is not taken for a fork.
    with urllib.request.urlopen(f"{fleet.url.rstrip('/')}/witness/{name}", timeout=10) as r:
        wdoc = json.loads(r.read())
    roots: dict[tuple[str, int], set[str]] = {}
    for c in wdoc["checkpoints"]:
        key = json.loads(base64.b64decode(c["body_b64"])).get("key")
        roots.setdefault((key, c["tree_size"]), set()).add(c["root_sha256"])
    assert len({k for k, _ in roots}) == 2 and all(len(v) == 1 for v in roots.values()), roots

    def witness_verdict(bundle: Path) -> list[tuple[str, str]]:
        report = verify_bundle(bundle, witness=wdoc)
        return [(c.status, c.code) for c in report.checks if c.name == "witness"]

    viewer = login(fleet.server.packcam_app.test_client(), "viewer")
    (rk1,) = viewer.get("/api/orders/RK-1").get_json()["clips"]
    got = viewer.get(f"/clips/{rk1['id']}/bundle.zip")
    assert got.status_code == 200
    (central_rk1 := tmp_path / "central-rk1.zip").write_bytes(got.data)
    assert witness_verdict(central_rk1) == [("ok", "")]  # its parts, signed before the backup
    (rk5,) = viewer.get("/api/orders/RK-5").get_json()["clips"]
    (central_rk5 := tmp_path / "central-rk5.zip").write_bytes(
        viewer.get(f"/clips/{rk5['id']}/bundle.zip").data
    )
    assert witness_verdict(central_rk5) == [("ok", "")]  # the new key's log, cosigned
    # The restored station's own export of the same clip proves it with the refused log's
    # final checkpoint: a fork, rightly (docs/fleet.md: export it from the central site).
    # After the rotation the clip is in the closed log, whose bundle chains to the current key
    # from that log's final checkpoint (never cosigned): the export says so and what to send.
    own_cfg = cfg.replace("central", enabled=True, url=fleet.url, token=new_token)
    own_res = export_order(own_cfg, "RK-1", tmp_path / "own-rk1.zip")
    assert any("central site's bundle" in w for w in own_res.warnings), own_res.warnings
    own = own_res.path
    assert witness_verdict(own) == [("fail", "log-fork")]

    store = ObjectStore(fleet.central_cfg.archive)
    for order in ("RK-1", "RK-3", "RK-4", "RK-5"):  # each listed once, and playing
        (clip,) = viewer.get(f"/api/orders/{order}").get_json()["clips"]
        assert viewer.get(clip["video_url"], headers={"Range": "bytes=0-9"}).status_code == 206
        if order == "RK-3":  # recorded after the backup: only the bucket has it now
            continue
        report = verify_clip_central(data / clip["path"], cdb, store)
        checks = {c.name: c.status for c in report.checks}
        assert checks.get("signature") == checks.get("manifest") == "ok", (order, report.checks)
    cdb.close()


def test_a_clip_signed_before_a_key_rotation_still_verifies_centrally(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A station rotates its key (`packcam keys rotate`, witnessed by the site): the central
    /verify page checks a clip's archived leaf against the key that signed it (the retired
    one for a clip logged before), not the key the station holds now, which would call a
    genuine clip's signature bad."""
    from central.db import CentralDB
    from central.verify import verify_clip_central
    from station.fleet.objstore import ObjectStore
    from station.proof import rotation

    name = "station-rot"
    cdb = CentralDB(fleet.dsn)
    token = cdb.add_station(name)
    cfg = station_cfg(tmp_path, name, fleet_seaweed(fleet), fleet.bucket)
    cfg = cfg.replace("central", enabled=True, url=fleet.url, token=token, interval_s=0.2)

    def sync() -> None:
        s = CentralSync(cfg)
        try:
            s.sync_once()
        finally:
            s.stop()

    # a length no other test here records: the default one's first clip may be the same file
    # as the fixture stations' ORD-n-0, whose archived row the page would check instead
    record(cfg, ["ROT-1"], frames=27)
    _archive_all([cfg])
    sync()
    rotation.rotate(cfg)
    sync()  # the rotation is witnessed: the site moves the station to the new key
    led = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        (clip,) = led.clips("ROT-1")
    finally:
        led.close()
    report = verify_clip_central(
        cfg.station.data_dir / clip.path, cdb, ObjectStore(fleet.central_cfg.archive)
    )
    cdb.close()
    checks = {c.name: c.status for c in report.checks}
    assert checks["signature"] == "ok" and checks["manifest"] == "ok", report.checks
    index = next(c for c in report.checks if c.name == "index")
    assert name in index.reason and "ROT-1" in index.reason, report.checks  # this clip's row


def test_station_counters_are_maintained_not_counted(fleet: Fleet) -> None:
    """The high-water marks `hello` returns and the dashboard's clip counts come from columns
    the registrations maintain; they must equal what counting the tables gives."""
    from central.db import CentralDB

    _archive_all(fleet.stations)
    for cfg in fleet.stations:
        _sync(cfg, fleet)
        _sync(cfg, fleet)  # a repeated batch changes no counter
    db = CentralDB(fleet.dsn)
    try:
        for row in db.stations_table(retired=True):
            counted = db._one(
                "SELECT (SELECT COUNT(*) FROM clips WHERE station_id = %(id)s) AS n,"
                " (SELECT COALESCE(MAX(local_id), 0) FROM clips WHERE station_id = %(id)s)"
                "   AS clips,"
                " (SELECT COALESCE(MAX((archive_meta->>'archive_seq')::bigint), 0) FROM clips"
                "   WHERE station_id = %(id)s AND archive_meta ? 'archive_seq') AS archived,"
                " (SELECT COALESCE(MAX(local_id), 0) FROM checkpoints WHERE station_id = %(id)s)"
                "   AS checkpoints,"
                " (SELECT MAX(started_utc) FROM clips WHERE station_id = %(id)s) AS last",
                {"id": row["id"]},
            )
            assert counted is not None
            assert row["clips"] == counted["n"], row["name"]
            assert row["last_clip_utc"] == counted["last"], row["name"]
            assert db.high_water(row["id"]) == {
                k: counted[k] for k in ("clips", "archived", "checkpoints")
            }, row["name"]
        assert any(r["clips"] >= ORDERS_PER_STATION for r in db.stations_table())
        # the fleet health page's archive counters (clips archived for real, synced twice)
        for row in db.fleet_health():
            counted = db._one(
                "SELECT COUNT(*) AS n_archived, COALESCE(SUM(size), 0) AS archived_bytes,"
                " MAX(archived_utc) AS last_archived_utc FROM clips"
                " WHERE station_id = %s AND archived_utc IS NOT NULL",
                (row["id"],),
            )
            assert counted is not None
            assert {k: row[k] for k in counted} == counted, row["name"]
        assert any(r["archived_bytes"] > 0 for r in db.fleet_health())
    finally:
        db.close()


def test_the_central_verify_page_takes_the_archived_row_of_bytes_registered_twice(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The same bytes registered by two rows (a restored station registering a clip again
    under its new enrolment; here two stations recording the same frames, each clip started
    without pre-roll so that its bytes do not depend on the encoder thread's timing): the page
    checks the row whose signed manifest is archived, not the lowest id, which may not be
    archived yet ("nothing to check", and the other station named)."""
    from central.db import CentralDB
    from central.verify import verify_clip_central
    from station.fleet.objstore import ObjectStore

    cdb = CentralDB(fleet.dsn)
    cfgs = []
    for name, order in (("station-dupa", "DUP-A"), ("station-dupb", "DUP-B")):
        cfg = station_cfg(tmp_path / name, name, fleet_seaweed(fleet), fleet.bucket)
        cfg = cfg.replace(
            "central", enabled=True, url=fleet.url, token=cdb.add_station(name), interval_s=0.2
        )
        record(cfg, [order], frames=26, pre_roll=False)  # a length no other test here records
        cfgs.append(cfg)
    clips = []
    for cfg, order in zip(cfgs, ("DUP-A", "DUP-B"), strict=True):
        led = Ledger.in_data_dir(cfg.station.data_dir)
        try:
            clips.extend(led.clips(order))
        finally:
            led.close()
    first, clip = clips  # one clip each
    assert first.sha256 == clip.sha256, "two recordings of the same frames are not the same file"
    second = cfgs[1]
    _archive_all([second])  # the first station's copy is not archived (yet)
    for cfg in cfgs:
        s = CentralSync(cfg)
        try:
            s.sync_once()
        finally:
            s.stop()
    rows = cdb.clips_by_sha256(clip.sha256)
    assert [r.station for r in rows] == ["station-dupa", "station-dupb"]
    report = verify_clip_central(
        second.station.data_dir / clip.path, cdb, ObjectStore(fleet.central_cfg.archive)
    )
    cdb.close()
    checks = {c.name: c.status for c in report.checks}
    assert checks.get("signature") == checks.get("manifest") == "ok", report.checks
    index = next(c for c in report.checks if c.name == "index")
    assert "station-dupb" in index.reason and "DUP-B" in index.reason, report.checks


def test_the_test_bucket_server_takes_a_write_in_each_of_many_buckets(
    seaweed: SeaweedServer,
) -> None:
    """The suite's SeaweedFS serves as many buckets as its fleet tests make in one worker and
    more: each bucket is a collection that weed grows by 7 volumes, and with 100 volumes in
    all the 15th bucket's first write failed (InternalError), a red CI run for no fault of
    the code under test (tests/fleet_servers.py)."""
    s3 = _s3(seaweed, retries={"max_attempts": 1})
    names = [_bucket(seaweed) for _ in range(24)]
    try:
        for name in names:
            s3.put_object(Bucket=name, Key="probe", Body=b"x" * 1000)
    finally:  # a deleted bucket's collection gives its volumes back
        for name in names:
            s3.delete_object(Bucket=name, Key="probe")
            s3.delete_bucket(Bucket=name)
