"""The central site's evidence bundles, on real SeaweedFS and PostgreSQL: the station signs the
bundle's parts when it archives, the central site streams parts + clips from the bucket."""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest_web import PASSWORDS, add_users
from fleet_servers import S3_ACCESS_KEY, S3_SECRET_KEY, PostgresServer, SeaweedServer
from proof_support import (  # noqa: F401 (fixture)
    Store,
    build_store,
    forge_log,
    leave_out_last_clip,
    tsa_ec,
)
from verify_support import Browserless, verify_page

from central.site import CentralSite
from station import config as config_mod
from station.fleet.archiver import Archiver
from station.fleet.central_sync import CentralSync
from station.store.ledger import Ledger

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Site:
    store: Store  # the station: data dir with its signed log, CA and TSA
    station_cfg: config_mod.Config
    central_cfg: config_mod.Config
    server: Any
    tmp: Path  # the central site's system temp dir (must stay empty)
    token: str = ""  # the station's central token

    def sync(self) -> None:
        """One more sync of the station with the central site."""
        cfg = self.station_cfg.replace("central", enabled=True, url=self.url, token=self.token)
        sync = CentralSync(cfg)
        try:
            sync.sync_once()
        finally:
            sync.stop()

    @property
    def url(self) -> str:
        from web.cli import server_url

        return server_url(self.server)


def _bucket(seaweed: SeaweedServer) -> str:
    import boto3
    from botocore.config import Config as BotoConfig

    name = "bundles-" + uuid.uuid4().hex[:10]
    boto3.session.Session().client(
        "s3",
        endpoint_url=seaweed.endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        config=BotoConfig(s3={"addressing_style": "path"}),
    ).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def site(
    seaweed: SeaweedServer,
    postgres: PostgresServer,
    tsa_ec,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    import proof_support
    from verify_support import noise_i420

    root = tmp_path_factory.mktemp("fleet-bundles")
    with pytest.MonkeyPatch.context() as m:  # clips of a few MB: a download can be cut mid-way
        m.setattr(proof_support, "frame_i420", noise_i420)
        real = proof_support.record_orders

        def record(cfg: Any, finalizers: tuple, orders: list[str], **kw: Any) -> list:
            return real(cfg, finalizers, orders, **{**kw, "frames": 120})

        m.setattr(proof_support, "record_orders", record)
        st = build_store(root / "station", tsa_ec, ["F1", "F2", "F1"], c2pa=False)
    with central_site(st, seaweed, postgres, root) as s:
        yield s


@contextmanager
def central_site(
    st: Store, seaweed: SeaweedServer, postgres: PostgresServer, root: Path
) -> Iterator[Site]:
    """A central site (PostgreSQL, a fresh bucket) serving ``st``'s station after one archive
    pass (clips, proofs and each order's signed bundle parts) and one sync."""
    import psycopg

    from central.db import CentralDB
    from web.cli import make_server, run_server

    archive = {
        "endpoint_url": seaweed.endpoint,
        "region": "us-east-1",
        "bucket": _bucket(seaweed),
        "access_key_id": S3_ACCESS_KEY,
        "secret_access_key": S3_SECRET_KEY,
        "addressing_style": "path",
    }
    station_cfg = st.cfg.replace("archive", enabled=True, retry_s=0.2, **archive)
    dbname = "bundles_" + uuid.uuid4().hex[:8]
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    dsn = postgres.dsn.replace("dbname=postgres", f"dbname={dbname}")
    db = CentralDB(dsn)
    db.migrate()
    token = db.add_station(station_cfg.station.name)
    db.close()
    central_cfg = (
        config_mod.load(None)
        .with_data_dir(root / "central")
        .replace("central", dsn=dsn)
        .replace("archive", **archive)
    )
    # The central site trusts the same company CA and TSA root as the seller publishes.
    central_cfg = central_cfg.replace("proof", tsa_ca_path=str(st.tsa.root))
    pub = central_cfg.station.data_dir / "proof-public"
    pub.mkdir(parents=True)
    (pub / "company-ca.crt").write_bytes((st.data / "proof-public/company-ca.crt").read_bytes())
    add_users(central_cfg.station.data_dir, stations=[station_cfg.station.name])
    tmp = root / "central-system-tmp"
    tmp.mkdir()
    server = make_server(central_cfg, "127.0.0.1", 0, central=CentralSite(central_cfg))
    stop = threading.Event()
    thread = threading.Thread(target=run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    s = Site(st, station_cfg, central_cfg, server, tmp, token)
    try:
        archiver = Archiver(station_cfg)
        try:
            archiver.run_once()  # clips, proofs and each order's signed bundle parts
        finally:
            archiver.stop()  # its index connections
        s.sync()
        yield s
    finally:
        stop.set()
        thread.join(timeout=15)


def _login(c: Browserless) -> None:
    _, _, page = c.request("GET", "/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert token
    form = urlencode(
        {"username": "viewer", "password": PASSWORDS["viewer"], "csrf_token": token.group(1)}
    ).encode()
    status, _, _ = c.request(
        "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 302


def _pins(st: Store, where: Path) -> list[str]:
    ca = where / "ca-from-the-seller.pem"
    ca.write_bytes((st.data / "proof-public/company-ca.crt").read_bytes())
    root = where / "root-from-the-tsa.pem"
    root.write_bytes(st.tsa.root.read_bytes())
    return ["--ca", str(ca), "--tsa-ca", str(root)]


def _verify_both_ways(st: Store, data: bytes, where: Path, code: int = 0) -> tuple[str, str]:
    """``packcam verify`` and the bundle's own verify.py (isolated), anchors pinned; each
    exits ``code`` (5: authentic for the clips here, some deleted by retention)."""
    where.mkdir()
    bundle = where / "bundle.zip"
    bundle.write_bytes(data)
    pins = _pins(st, where)
    env = {"PATH": os.environ["PATH"], "HOME": str(where), "LANG": "C.UTF-8",
           "PYTHONPATH": str(REPO)}  # fmt: skip
    packcam = subprocess.run(
        [sys.executable, "-m", "station.proof", "verify", *pins, str(bundle)],
        cwd=where, env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert packcam.returncode == code, packcam.stdout + packcam.stderr
    script = where / "verify.py"
    with zipfile.ZipFile(bundle) as zf:
        script.write_bytes(zf.read("verify.py"))
    kit = subprocess.run(
        [sys.executable, "-I", str(script), str(bundle), *pins],
        cwd=where, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=False,
        timeout=120,
    )  # fmt: skip
    assert kit.returncode == code, kit.stdout + kit.stderr
    return packcam.stdout, kit.stdout


def _clip_ids(site: Site, order: str) -> list[int]:
    from central.db import CentralDB

    db = CentralDB(site.central_cfg.central.dsn)
    try:
        return [int(c.id or 0) for c in db.order(order)]
    finally:
        db.close()


def test_the_central_bundle_verifies_authentic_with_anchors_pinned(
    site: Site, tmp_path: Path
) -> None:
    c = Browserless(site.url)
    _login(c)
    ids = _clip_ids(site, "F1")
    assert len(ids) == 2
    _, _, page = c.request("GET", "/orders/F1")
    assert f'href="/clips/{ids[0]}/bundle.zip"'.encode() in page
    status, headers, data = c.request("GET", f"/clips/{ids[0]}/bundle.zip")
    assert status == 200, data[:300]
    assert headers["content-type"] == "application/zip"
    assert "attachment" in headers["content-disposition"]
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        names = zf.namelist()
        clips = [n for n in names if n.startswith("clips/")]
        assert len(clips) == 2  # both clips of the order, read from the bucket
        assert "bundle/manifest.json" in names and "summary.html" in names
        # the tokens over each clip's start statement, signed into the parts at archive time
        assert len([n for n in names if n.endswith(".start.0.tst")]) == 2
    packcam, kit = _verify_both_ways(site.store, data, tmp_path / "verifier")
    assert "RESULT bundle.zip: AUTHENTIC" in packcam
    assert "AUTHENTIC" in kit
    assert packcam.count("start timestamped") == kit.count("start timestamped") == 2
    # byte for byte what the station itself exports
    from station.proof.bundle import export_order

    own = tmp_path / "own.zip"
    export_order(site.store.cfg, "F1", own)
    with zipfile.ZipFile(own) as a, zipfile.ZipFile(__import__("io").BytesIO(data)) as b:
        for name in clips:
            assert a.read(name) == b.read(name)
    assert list(site.tmp.iterdir()) == []


def test_the_station_is_not_needed_and_nothing_is_left_behind(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served with the station's data dir gone (a dead station), to a share link; a download
    cut off after a few bytes leaves no file anywhere and the next one still works."""
    import shutil

    monkeypatch.setattr(tempfile, "tempdir", str(site.tmp))
    gone = tmp_path / "moved-away"
    shutil.move(str(site.store.data), gone)
    try:
        from web.db import WebDB
        from web.share import share_token

        db = WebDB.in_data_dir(site.central_cfg.station.data_dir)
        from datetime import timedelta

        share = db.create_share("F2", "viewer", timedelta(days=1), "")
        db.close()
        with site.server.packcam_app.test_request_context():
            path = f"/s/{share_token(share)}"
        buyer = Browserless(site.url)
        status, _, page = buyer.request("GET", path)
        assert status == 200 and f'href="{path}/bundle.zip"'.encode() in page
        # cut off: read the headers and the first 64 KB, then close the socket
        host, port = site.url.split("//")[1].rstrip("/").split(":")
        got = b""
        with socket.create_connection((host, int(port))) as s:
            s.sendall(f"GET {path}/bundle.zip HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            while len(got) < 65536:
                got += s.recv(65536)
        assert got.startswith(b"HTTP/1.1 200")
        status, _, data = buyer.request("GET", path + "/bundle.zip")
        assert status == 200
        assert len(data) > 1 << 20  # the cut-off one stopped well before its end
        shutil.move(str(gone), site.store.data)
        packcam, _kit = _verify_both_ways(site.store, data, tmp_path / "verifier")
        assert "RESULT bundle.zip: AUTHENTIC" in packcam
    finally:
        if gone.exists():
            shutil.move(str(gone), site.store.data)
    assert list(site.tmp.iterdir()) == []
    spool = site.central_cfg.station.data_dir / "spool"
    assert not spool.exists() or not any(p.is_file() for p in spool.rglob("*"))


def test_the_central_summary_states_what_the_bundle_proves(site: Site) -> None:
    from datetime import timedelta

    from web.db import WebDB
    from web.share import share_token

    db = WebDB.in_data_dir(site.central_cfg.station.data_dir)
    share = db.create_share("F1", "viewer", timedelta(days=1), "")
    db.close()
    with site.server.packcam_app.test_request_context():
        path = f"/s/{share_token(share)}"
    status, _, page = Browserless(site.url).request("GET", path + "/summary")
    assert status == 200
    text = page.decode()
    assert text.count("verdict-authentic") == 2  # both languages
    assert "certified as “station-01” by the company CA" in text
    assert "RFC 3161 timestamp from" in text
    # the clip's start, from its share of the bundle's report (its own facts entry)
    assert "Its start was timestamped too" in text and "录像的开始也有时间戳" in text
    assert "Its start has no timestamp" not in text
    assert "covered by a checkpoint of" in text
    assert not any(p.is_file() for p in (site.central_cfg.station.data_dir / "spool").rglob("*"))
    # without the company CA configured on the central site, the signer is not "certified"
    ca = site.central_cfg.station.data_dir / "proof-public/company-ca.crt"
    saved = ca.read_bytes()
    ca.unlink()
    try:
        status, _, page = Browserless(site.url).request("GET", path + "/summary")
    finally:
        ca.write_bytes(saved)
    text = page.decode()
    assert status == 200 and "verdict-authentic" not in text
    assert "certified as" not in text and "It is not certified by a company CA" in text


def test_the_central_summary_holds_the_bucket_s_parts_to_the_witness_record(
    site: Site, tmp_path: Path
) -> None:
    """The key holder re-signs F1's manifests (another waybill) in a log of its own, as large
    as the one this site witnessed, TSA-stamped now, and puts those parts in the bucket where
    the honest ones were: every signature checks, the clips are the bucket's own. The site that
    cosigned the honest log must not call the forged one authentic to a share link's visitor
    (log-fork, as its /verify page says)."""
    from datetime import timedelta

    from station.fleet.objstore import ObjectStore, bundle_parts_dir
    from station.proof.bundle import export_order
    from station.proof.keys import StationKey
    from web.db import WebDB
    from web.share import share_token

    def edit(body: dict) -> None:
        body["waybill"] = "SF9999999999999"
        body["waybills"] = [{**w, "waybill": "SF9999999999999"} for w in body.get("waybills") or []]

    honest = export_order(site.store.cfg, "F1", tmp_path / "F1.zip").path
    key = StationKey.load(site.store.data / "proof/station-key.pem")
    forged = forge_log(honest, tmp_path / "relabel.zip", key, site.store.tsa.url, edit)
    parts = io.BytesIO()
    with zipfile.ZipFile(forged) as src, zipfile.ZipFile(parts, "w") as dst:
        for info in src.infolist():
            if not info.filename.startswith("clips/"):
                dst.writestr(info, src.read(info))
    store = ObjectStore(site.station_cfg.archive)
    where = bundle_parts_dir(
        site.station_cfg.archive.prefix, site.station_cfg.station.name, "F1", key.fingerprint
    )
    keys = [
        o["Key"]
        for page in store.client.get_paginator("list_objects_v2").paginate(
            Bucket=store.bucket, Prefix=where
        )
        for o in page.get("Contents", [])
    ]
    assert keys, "the station uploaded F1's parts"
    newest = max(keys)
    saved = store.get_bytes(newest)
    db = WebDB.in_data_dir(site.central_cfg.station.data_dir)
    share = db.create_share("F1", "viewer", timedelta(days=1), "")
    db.close()
    with site.server.packcam_app.test_request_context():
        path = f"/s/{share_token(share)}/summary"
    summaries = site.server.packcam_app.extensions
    summaries.pop("packcam_summary", None)  # a summary of F1 another test asked for
    store.put_bytes(newest, parts.getvalue(), content_type="application/zip", check_existing=False)
    try:
        status, _, page = Browserless(site.url).request("GET", path)
    finally:
        store.put_bytes(newest, saved, content_type="application/zip", check_existing=False)
        summaries.pop("packcam_summary", None)
    text = page.decode()
    assert status == 200 and "verdict-authentic" not in text, text[-4000:]
    assert "log-fork" in text or "fork" in text, text[-4000:]
    status, _, page = Browserless(site.url).request("GET", path)
    assert page.decode().count("verdict-authentic") == 2  # the honest parts back: authentic


def _verify_page(site: Site, payload: bytes, lang: str = "en") -> str:
    """The central /verify page's answer to a bundle uploaded by anyone."""
    return verify_page(site.server.packcam_app, payload, lang, "F1.zip")


def test_central_verify_holds_a_bundle_to_the_archived_signed_manifest(
    site: Site, tmp_path: Path
) -> None:
    """The key holder re-signs F1's real clips with another waybill in a log of its own,
    TSA-stamped now: every signature checks, and the clips' SHA-256 are in the central index.
    The station's signed manifests archived in the bucket are other ones: not authentic. A clip
    whose manifest is not archived yet leaves the site nothing to hold a bundle to: not
    verified, never authentic on the index; the forged log, of as many entries as the one the
    site witnessed, is a fork of it there whatever is archived (log-fork)."""
    import psycopg

    from station.proof.bundle import export_order
    from station.proof.keys import StationKey

    def edit(body: dict) -> None:
        body["waybill"] = "SF9999999999999"
        body["waybills"] = [{**w, "waybill": "SF9999999999999"} for w in body.get("waybills") or []]

    honest = export_order(site.store.cfg, "F1", tmp_path / "F1.zip").path
    key = StationKey.load(site.store.data / "proof/station-key.pem")
    forged = forge_log(honest, tmp_path / "relabel.zip", key, site.store.tsa.url, edit)
    page = _verify_page(site, honest.read_bytes())
    assert "✔ Authentic" in page, page[-4000:]
    page = _verify_page(site, forged.read_bytes())
    assert "✘ Not authentic" in page and "log-leaf-replaced" in page, page[-4000:]
    assert "[log-fork]" in page and "Authentic:" not in page

    dsn = site.central_cfg.central.dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        saved = conn.execute(
            "SELECT id, archive_meta::text FROM clips WHERE order_id = 'F1'"
        ).fetchall()
        conn.execute("UPDATE clips SET archive_meta = archive_meta - 'log' WHERE order_id = 'F1'")
    try:
        page = _verify_page(site, honest.read_bytes())
        assert "Not verified" in page and "Authentic" not in page, page[-4000:]
        assert "not archived yet" in page, page[-4000:]
        page = _verify_page(site, forged.read_bytes())
        assert "✘ Not authentic" in page and "[log-fork]" in page, page[-4000:]
        assert "SF9999999999999" not in page  # no recorded clip is shown as matched
        zh = _verify_page(site, honest.read_bytes(), "zh_CN")
        assert "未能验证" in zh and "本站无法将此证据包与用工位密钥重新签名" in zh, zh[-4000:]
        assert "真实：与录制的视频一致" not in zh, zh[-4000:]
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for clip_id, meta in saved:
                conn.execute(
                    "UPDATE clips SET archive_meta = %s::jsonb WHERE id = %s", (meta, clip_id)
                )
    assert "✔ Authentic" in _verify_page(site, honest.read_bytes())


def test_central_verify_names_a_clip_the_bundle_leaves_out(site: Site, tmp_path: Path) -> None:
    """The key holder re-signs F1's bundle manifest without its second clip (the one showing
    the wrong item): offline that is its word, but this site holds that clip of F1, archived
    by the station under the same log at an index the bundle's checkpoint covers."""
    from station.proof.bundle import export_order
    from station.proof.keys import StationKey

    honest = export_order(site.store.cfg, "F1", tmp_path / "F1.zip").path
    key = StationKey.load(site.store.data / "proof/station-key.pem")
    one = leave_out_last_clip(honest, tmp_path / "one.zip", key)
    page = _verify_page(site, one.read_bytes())
    assert "✘ Not authentic" in page and "order-incomplete" in page, page[-4000:]
    assert "✔ Authentic" in _verify_page(site, honest.read_bytes())


def test_a_clip_not_covered_by_signed_parts_is_not_served(site: Site) -> None:
    """A newer clip the station archived but has not signed parts for: 503, never a bundle
    that leaves it out. (It adds that clip to the central index: no later test uses F2.)"""
    from central.db import CentralDB

    db = CentralDB(site.central_cfg.central.dsn)
    try:
        (clip,) = db.order("F2")
        with db.conn.transaction():
            db.conn.execute(
                "INSERT INTO clips (station_id, station, local_id, order_id, started_at, ended_at,"
                " started_utc, ended_utc, tz, duration_s, frame_count, finish_reason, pre_roll_s,"
                " path, manifest_path, size, sha256, archived_utc, archive_key, archive_meta)"
                " SELECT station_id, station, local_id + 1000, order_id, started_at, ended_at,"
                " started_utc, ended_utc, tz, duration_s, frame_count, finish_reason, pre_roll_s,"
                " 'clips/later.mp4', manifest_path, size, %s, archived_utc, archive_key,"
                " archive_meta FROM clips WHERE id = %s",
                ("f" * 64, clip.id),
            )
    finally:
        db.close()
    c = Browserless(site.url)
    _login(c)
    status, headers, body = c.request("GET", f"/clips/{clip.id}/bundle.zip")
    assert status == 503 and headers.get("retry-after") == "60"
    assert b"No evidence bundle signed by the packing station covers" in body


def test_central_live_view_points_at_the_stations(site: Site) -> None:
    c = Browserless(site.url)
    _, _, page = c.request("GET", "/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page)
    assert token
    form = urlencode(
        {"username": "operator", "password": PASSWORDS["operator"], "csrf_token": token.group(1)}
    ).encode()
    c.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
    status, _, page = c.request("GET", "/dashboard")
    assert status == 200 and b'href="/live"' not in page  # not in the navigation
    status, _, page = c.request("GET", "/live")
    assert status == 200 and b'id="live-central"' in page
    assert b"data directory" not in page


def test_an_order_whose_clip_retention_deleted_before_archiving_gets_a_partial_bundle(
    seaweed: SeaweedServer,
    postgres: PostgresServer,
    tsa_ec,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Retention may delete a clip the archiver never sent (`archive_required = false`, or
    archiving turned on later): the central site has no object for it, so its bundle can
    only be the station's partial one, carrying the station's signed deletion record."""
    from datetime import UTC, datetime

    from test_bundle_deleted_clip import retain_oldest

    st = build_store(tmp_path / "station", tsa_ec, ["D1", "D2", "D1"], c2pa=False)
    gone = retain_oldest(st, datetime.now(UTC), order="D1")
    with central_site(st, seaweed, postgres, tmp_path) as site:
        ids = _clip_ids(site, "D1")
        assert len(ids) == 2
        c = Browserless(site.url)
        _login(c)
        status, _, data = c.request("GET", f"/clips/{ids[-1]}/bundle.zip")
        assert status == 200, data[:300]
        with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
            names = zf.namelist()
        assert len([n for n in names if n.startswith("clips/")]) == 1
        assert f"clips/{Path(gone.path).name}" not in names
        assert f"deleted/{Path(gone.path).stem}.deletion.json" in names
        packcam, kit = _verify_both_ways(st, data, tmp_path / "verifier", 5)
        assert "AUTHENTIC FOR 1 OF THIS ORDER'S 2 CLIPS (PARTIAL" in packcam, packcam
        assert "AUTHENTIC FOR 1 OF THIS ORDER'S 2 CLIPS (PARTIAL" in kit, kit
        assert gone.sha256 in packcam and "deleted by the station's retention" in packcam
        # the deleted clip's own link gives the same bundle: its signed record is the answer
        status, _, same = c.request("GET", f"/clips/{ids[0]}/bundle.zip")
        assert status == 200 and same == data
        # the share summary dates the gap instead of calling the clip "not signed yet"
        assert "was deleted by the station's retention on" in _summary(site, "D1")
        assert "verdict-tampered" not in _summary(site, "D1")


def test_the_central_summary_refuses_a_deletion_record_dated_next_month(
    seaweed: SeaweedServer,
    postgres: PostgresServer,
    tsa_ec,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The station's deletion record of a clip never archived is dated a month ahead: the
    central summary judges it in the bucket's bundle by the verifiers' own rule
    (verify_bundle), so it never reads "deleted by retention" or partial there."""
    from datetime import UTC, datetime, timedelta

    from test_bundle_deleted_clip import retain_oldest

    st = build_store(tmp_path / "station", tsa_ec, ["D1", "D2", "D1"], c2pa=False)
    retain_oldest(st, datetime.now(UTC) + timedelta(days=30), order="D1")
    with central_site(st, seaweed, postgres, tmp_path) as site:
        page = html.unescape(_summary(site, "D1"))
    assert "was deleted by the station's retention" not in page, page
    assert "verdict-tampered" in page and "deletion-record-invalid" in page, page


def test_a_clip_retention_deleted_after_its_order_s_parts_went_up_gets_a_partial_bundle(
    seaweed: SeaweedServer,
    postgres: PostgresServer,
    tsa_ec,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The order's parts went up while its first clip was not archived yet (they list it by
    its hash), then retention deleted that clip (`archive_required = false`) and no other
    clip of the order was archived since: the station signs and uploads the parts again,
    carrying the deletion, so the central site serves the partial bundle instead of waiting
    for an object the bucket will never get."""
    from datetime import UTC, datetime

    from test_bundle_deleted_clip import retain_oldest

    st = build_store(tmp_path / "station", tsa_ec, ["D1", "D2", "D1"], c2pa=False)
    ledger = Ledger.in_data_dir(st.data)
    first = ledger.clips("D1")[0]
    ledger.close()
    clip = st.data / first.path
    hidden = clip.with_name(clip.name + ".away")
    clip.rename(hidden)  # the archiver cannot send it on the first pass
    with central_site(st, seaweed, postgres, tmp_path) as site:
        hidden.rename(clip)
        gone = retain_oldest(st, datetime.now(UTC), order="D1")
        assert gone.sha256 == first.sha256
        archiver = Archiver(site.station_cfg)
        try:
            archiver.run_once()
        finally:
            archiver.stop()  # its index connections
        site.sync()
        ids = _clip_ids(site, "D1")
        assert len(ids) == 2
        c = Browserless(site.url)
        _login(c)
        for clip_id in ids:
            status, _, data = c.request("GET", f"/clips/{clip_id}/bundle.zip")
            assert status == 200, data[:300]
        with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
            names = zf.namelist()
        assert len([n for n in names if n.startswith("clips/")]) == 1
        assert f"deleted/{Path(gone.path).stem}.deletion.json" in names
        packcam, _ = _verify_both_ways(st, data, tmp_path / "verifier", 5)
        assert "AUTHENTIC FOR 1 OF THIS ORDER'S 2 CLIPS (PARTIAL" in packcam, packcam


def _summary(site: Site, order: str) -> str:
    """The central share summary of ``order`` (English)."""
    from datetime import timedelta

    from web.db import WebDB
    from web.share import share_token

    db = WebDB.in_data_dir(site.central_cfg.station.data_dir)
    share = db.create_share(order, "viewer", timedelta(days=1), "")
    db.close()
    with site.server.packcam_app.test_request_context():
        path = f"/s/{share_token(share)}"
    status, _, page = Browserless(site.url).request("GET", path + "/summary")
    assert status == 200
    return page.decode()


def test_a_central_bundle_of_a_clip_freed_after_archiving_carries_its_archived_key_frames(
    seaweed: SeaweedServer,
    postgres: PostgresServer,
    tsa_ec,  # noqa: F811
    tmp_path: Path,
) -> None:
    """An order's first clip is archived (with its key frames, ``frames/<sha256>/``), then
    freed by retention; its second clip is archived later, so the station signs the order's
    parts again without the first clip's file. Those parts used to list it with no key
    frames (both verifiers: `bundle-frames-missing`); now the archiver reads back the frames
    it uploaded and the central bundle carries them as a station export would, each held
    by `packcam verify` to the clip. K3's first clip lost its frames from the bucket: that
    bundle says why it has none, and the verifiers warn."""
    import boto3
    from botocore.config import Config as BotoConfig

    st = build_store(tmp_path / "station", tsa_ec, ["K1", "K3", "K1", "K3"], c2pa=False)
    with contextlib.closing(Ledger.in_data_dir(st.data)) as ledger:
        firsts = {o: ledger.clips(o)[0] for o in ("K1", "K3")}
        seconds = {o: ledger.clips(o)[1] for o in ("K1", "K3")}
    hidden = {}
    for o, rec in seconds.items():  # the archiver cannot send them on the first pass
        hidden[o] = (st.data / rec.path, (st.data / rec.path).with_suffix(".away"))
        hidden[o][0].rename(hidden[o][1])
    with central_site(st, seaweed, postgres, tmp_path) as site:
        with contextlib.closing(Ledger.in_data_dir(st.data)) as ledger:
            metas = {o: ledger.archive_state(int(r.id or 0)) for o, r in firsts.items()}
        assert all(m and m["archive_meta"]["frames"] for m in metas.values()), metas
        s3 = boto3.session.Session().client(
            "s3", endpoint_url=seaweed.endpoint, region_name="us-east-1",
            aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY,
            config=BotoConfig(s3={"addressing_style": "path"}),
        )  # fmt: skip
        meta3 = metas["K3"]
        assert meta3 is not None
        for f in meta3["archive_meta"]["frames"]:
            s3.delete_object(Bucket=site.station_cfg.archive.bucket, Key=f["key"])
        for o, rec in firsts.items():
            (st.data / rec.path).unlink()  # freed by retention, as archived
            hidden[o][1].rename(hidden[o][0])
        archiver = Archiver(site.station_cfg)
        try:
            assert archiver.run_once() == 2
        finally:
            archiver.stop()  # its index connections
        site.sync()
        c = Browserless(site.url)
        _login(c)
        bundles = {}
        for o in ("K1", "K3"):
            status, _, data = c.request("GET", f"/clips/{_clip_ids(site, o)[0]}/bundle.zip")
            assert status == 200, data[:300]
            bundles[o] = data
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                idx = json.loads(zf.read("bundle.json"))
                assert all(f["file"] in zf.namelist() for e in idx["clips"] for f in e["frames"])
            assert [bool(e["frames"]) for e in idx["clips"]] == [o == "K1", True], idx
            said = [w for w in idx["warnings"] if "key frame" in w]
            assert len(said) == (o == "K3") and all(
                Path(firsts[o].path).name in w and "bucket had none" in w for w in said
            ), idx["warnings"]
        packcam, kit = _verify_both_ways(st, bundles["K1"], tmp_path / "v1")
        assert "bundle-frames-missing" not in packcam + kit, packcam + kit
        assert packcam.count("key frames are this clip's own pictures") == 2, packcam
        packcam, kit = _verify_both_ways(st, bundles["K3"], tmp_path / "v3")
        assert "bundle-frames-missing" in packcam and "bundle-frames-missing" in kit, packcam


def test_one_recording_logged_under_two_orders_is_authentic_on_the_central_site_for_neither(
    seaweed: SeaweedServer,
    postgres: PostgresServer,
    tsa_ec,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The station logs A1's packing, then the same bytes again as Z9's (the key holder
    labelling one packing for two buyers; `packcam audit` on the station calls it
    `clip-logged-twice`). Archived and synced as any clips: two rows of one SHA-256 in the
    central index, each with its own archived signed manifest, both in the log the witness
    cosigned. Each order's bundle verifies offline (it holds only its own leaf), but the
    central site holds both manifests: its /verify page must not call either bundle, nor the
    bare clip, authentic; the station's own sync payload (a row naming Z9's leaf) used to
    vouch for Z9's bundle."""
    from test_proof_audit_overlap import _session

    from station.proof.bundle import export_order

    st = build_store(tmp_path / "station", tsa_ec, [], c2pa=False)
    t0 = datetime.now(UTC) - timedelta(minutes=6)  # both TSA-stamped within --max-delay
    _session(st.cfg, ["A1"], t0, pre_roll=False)
    _session(st.cfg, ["Z9"], t0 + timedelta(minutes=2), pre_roll=False)
    with contextlib.closing(Ledger.in_data_dir(st.data)) as ledger:
        (a1,), (z9,) = ledger.clips("A1"), ledger.clips("Z9")
    assert a1.sha256 == z9.sha256, "the two sessions did not make the same file"
    with central_site(st, seaweed, postgres, tmp_path) as site:
        with contextlib.closing(Ledger.in_data_dir(st.data)) as ledger:
            leaves = [ledger.archive_state(int(r.id or 0)) for r in (a1, z9)]
        # each row names its own leaf: the archiver used to give both the newest (Z9's)
        assert [m and m["archive_meta"]["log"]["seq"] for m in leaves] == [0, 1], leaves
        app = site.server.packcam_app
        for order in ("A1", "Z9"):
            bundle = export_order(st.cfg, order, tmp_path / f"{order}.zip").path
            page = html.unescape(verify_page(app, bundle.read_bytes(), "en", f"{order}.zip"))
            assert "✘ Not authentic" in page and "clip-logged-twice" in page, page[-4000:]
            assert "log entries [0, 1]" in page, page[-4000:]
            assert "'A1'" in page and "'Z9'" in page, page[-4000:]
        page = verify_page(app, (st.data / z9.path).read_bytes())
        assert "clip-logged-twice" in page and "Authentic" not in page, page[-4000:]


def test_no_signed_manifest_nor_token_of_one_subject_is_written_over_in_the_bucket(
    seaweed: SeaweedServer,
    tsa_ec,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two evidence objects were named so that a second one wrote over the first (an ERROR,
    "in the bucket but wrong", then a PUT): the sidecar manifest by the clip's SHA-256 only,
    and an RFC 3161 token by its subject and TSA only. One recording logged under two orders
    (`clip-logged-twice`) has two signed manifests; a token request granted twice (a station
    restored from a backup asks again for a token it had already uploaded) has two tokens of
    one subject from one TSA. Each is kept, under its own name, each row's archive_meta names
    its own manifest, and nothing is written over."""
    import logging

    from test_proof_audit_overlap import _session

    from station.fleet.archiver import TOKENS_CURSOR
    from station.fleet.objstore import station_prefix
    from station.proof.finalizer import ProofFinalizer
    from station.store.cursors import SyncCursors

    st = build_store(tmp_path / "station", tsa_ec, [], c2pa=False)
    t0 = datetime.now(UTC) - timedelta(minutes=6)
    _session(st.cfg, ["A1"], t0, pre_roll=False)
    _session(st.cfg, ["Z9"], t0 + timedelta(minutes=2), pre_roll=False)
    bucket = _bucket(seaweed)
    cfg = st.cfg.replace(
        "archive", enabled=True, retry_s=0.2, endpoint_url=seaweed.endpoint,
        region="us-east-1", bucket=bucket, access_key_id=S3_ACCESS_KEY,
        secret_access_key=S3_SECRET_KEY, addressing_style="path",
    )  # fmt: skip
    prefix = station_prefix(cfg.archive.prefix, cfg.station.name)

    def archive() -> Archiver:
        arch = Archiver(cfg)
        try:
            with caplog.at_level(logging.ERROR):
                arch.run_once()
        finally:
            arch.stop()
        return arch

    def objects(under: str) -> dict[str, bytes]:
        arch = Archiver(cfg)
        try:
            listed = arch.store.client.list_objects_v2(Bucket=bucket, Prefix=prefix + under)
            keys = [o["Key"] for o in listed.get("Contents", [])]
            return {k: arch.store.get_bytes(k) for k in keys}
        finally:
            arch.stop()

    caplog.clear()
    archive()
    with contextlib.closing(Ledger.in_data_dir(st.data)) as ledger:
        (a1,), (z9,) = ledger.clips("A1"), ledger.clips("Z9")
        metas = [(ledger.archive_state(int(r.id or 0)) or {})["archive_meta"] for r in (a1, z9)]
    assert a1.sha256 == z9.sha256
    manifests = objects("manifests/")
    assert len(manifests) == 2, sorted(manifests)
    for rec, meta in zip((a1, z9), metas, strict=True):
        assert manifests[meta["manifest"]] == (st.data / rec.manifest_path).read_bytes()
    assert not [r for r in caplog.records if "wrong" in r.getMessage()], caplog.text

    # the station restored from a backup taken before A1's end token was uploaded: the request
    # is pending again, the TSA grants it once more (another token), the cursor is back
    with contextlib.closing(Ledger.in_data_dir(st.data)) as ledger:
        subject = metas[0]["log"]["manifest_sha256"]
        ledger.conn.execute(
            "UPDATE proof_timestamps SET status = 'pending', token = NULL WHERE subject_sha256 = ?",
            (subject,),
        )
        ledger.conn.commit()
        SyncCursors(ledger.db).set_cursor(TOKENS_CURSOR, 0)
    before = objects(f"proof/tokens/{subject}.")
    assert len(before) == 1, sorted(before)
    fin = ProofFinalizer(cfg, start_worker=False)
    assert fin.tsa is not None
    fin.tsa.process_due()
    fin.close()
    caplog.clear()
    archive()
    after = objects(f"proof/tokens/{subject}.")
    assert len(after) == 2, sorted(after)
    assert set(before.items()) < set(after.items())  # the first token is still there, as it was
    assert not [r for r in caplog.records if "wrong" in r.getMessage()], caplog.text


def test_the_central_verify_page_judges_a_bare_clip_by_its_archived_tokens(
    site: Site, tmp_path: Path
) -> None:
    """A bare clip on the central /verify page was at best "intact": the page checked the
    signed manifest the station archived, but no RFC 3161 token, neither the end (manifest)
    token nor the start statement's, though both are in the bucket. It now reads them from the
    station's own ``proof/tokens/`` and the station's certificate from its own ``keys/``, and
    judges them by the rules the other verifiers share: with the site's company CA and TSA
    root pinned, the clip whose bundle is AUTHENTIC is authentic bare as well, start and end
    timestamped, the TSA's times stated."""
    with contextlib.closing(Ledger.in_data_dir(site.store.data)) as ledger:
        (f2,) = ledger.clips("F2")
    data = (site.store.data / f2.path).read_bytes()
    page = html.unescape(verify_page(site.server.packcam_app, data))
    assert "Authentic: matches a recorded clip" in page, page[-4000:]
    assert "a TSA you trust" in page and "start timestamped" in page, page[-4000:]
    assert "certified as" in page, page[-4000:]


def test_a_bare_clip_is_verified_centrally_after_many_certificate_renewals(site: Site) -> None:
    """The central /verify page read a bare clip's key certificate from a listing of the
    station's whole ``keys/`` (at most MAX_KEYS_READ objects): every start archives the
    certificate files under their digest, so once renewals (C2PA chains, the key's own
    certificate, the CA's) or rotations put more than that there, every bare clip of the station
    was NOT VERIFIED (`clip-evidence-unread`). The station archives its key's certificate and
    its CA's under ``keys/<key fingerprint, 16 hex>/`` as well, and the page lists only that."""
    from central.verify import MAX_KEYS_READ
    from station.fleet.objstore import station_prefix

    with contextlib.closing(Ledger.in_data_dir(site.store.data)) as ledger:
        (f2,) = ledger.clips("F2")
    data = (site.store.data / f2.path).read_bytes()
    prefix = station_prefix(site.station_cfg.archive.prefix, site.station_cfg.station.name)
    ca_pem = (site.store.data / "proof-public/company-ca.crt").read_bytes()
    arch = Archiver(site.station_cfg)
    renewed = []
    try:
        for i in range(MAX_KEYS_READ + 6):  # certificate files archived by starts since renewed
            body = f"# renewal {i}\n".encode() + ca_pem
            digest = hashlib.sha256(body).hexdigest()[:16]
            renewed.append(f"{prefix}keys/station-c2pa-chain-{digest}.pem")
            arch.store.put_bytes(renewed[-1], body, content_type="text/plain")
        page = html.unescape(verify_page(site.server.packcam_app, data))
        assert "Authentic: matches a recorded clip" in page, page[-4000:]
        assert "certified as" in page and "clip-evidence-unread" not in page, page[-4000:]
    finally:
        for key in renewed:
            arch.store.client.delete_object(Bucket=site.station_cfg.archive.bucket, Key=key)
        arch.stop()


def test_a_bare_clip_timestamped_late_is_judged_centrally_as_its_bundle_is(
    seaweed: SeaweedServer,
    postgres: PostgresServer,
    tsa_ec,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A station whose manifests say the clips ended two hours before a TSA saw them: the
    bundle is `time-late`, intact but not anchored (its time is the station's word: offline
    at its end, or signed later; both were `time-out-of-bounds`, NOT AUTHENTIC, until a late
    token stopped failing honest evidence), and so is the bare clip on the central site, which
    used to ignore its tokens (its C2PA manifest is checked too). A token object under the
    station's prefix larger than any token is never read whole: the clip is not verified (the
    page cannot judge every token of it)."""
    from station.fleet.objstore import station_prefix
    from station.proof.bundle import export_order

    st = build_store(tmp_path / "station", tsa_ec, ["L1", "L2"], ago=timedelta(hours=2))
    with central_site(st, seaweed, postgres, tmp_path) as site:
        app = site.server.packcam_app
        with contextlib.closing(Ledger.in_data_dir(st.data)) as ledger:
            (l1,), (l2,) = ledger.clips("L1"), ledger.clips("L2")
            leaf2 = (ledger.archive_state(int(l2.id or 0)) or {})["archive_meta"]["log"]
        bundle = export_order(st.cfg, "L1", tmp_path / "L1.zip").path
        for page in (
            html.unescape(verify_page(app, bundle.read_bytes(), "en", "L1.zip")),
            html.unescape(verify_page(app, (st.data / l1.path).read_bytes(), "en")),
        ):
            assert "⚠ Intact, but not anchored" in page and "[time-late]" in page, page[-4000:]
            assert "Authentic" not in page and "time-out-of-bounds" not in page, page[-4000:]
            assert "saw it only after the allowed delay" in page, page[-4000:]
        # its embedded C2PA manifest is held to the signed one, as `packcam verify --data` does
        assert "embedded C2PA manifest valid" in page, page[-4000:]

        prefix = station_prefix(site.station_cfg.archive.prefix, site.station_cfg.station.name)
        big = f"{prefix}proof/tokens/{leaf2['manifest_sha256']}.00000000.{'0' * 16}.tst"
        arch = Archiver(site.station_cfg)
        try:
            arch.store.client.put_object(
                Bucket=site.station_cfg.archive.bucket, Key=big, Body=b"\0" * (1 << 20)
            )
        finally:
            arch.stop()
        page = html.unescape(verify_page(app, (st.data / l2.path).read_bytes()))
        assert "Not verified" in page and "Authentic" not in page, page[-4000:]
        assert "could not be read" in page, page[-4000:]
