"""Scoping on the central site (real PostgreSQL and SeaweedFS): an account sees only the
stations of its groups on every route, out-of-scope answers are the unknown ones' 404s, admins
see everything, an account in no group nothing; the `packcam group` CLI; station sites unscoped."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest_web import FAST_PW
from fleet_servers import S3_ACCESS_KEY, S3_SECRET_KEY, SeaweedServer

from central.db import CentralDB
from central.site import CentralSite
from station import config as config_mod
from station.fleet.objstore import clip_key, station_prefix
from station.store.clips import ClipSearch
from web.db import WebDB
from web.scope import ScopedIndex, covers, stations_for

PASSWORD = "scoped-pass-1"
# station -> warehouse group
STATIONS = {"wh1-a": "WH1", "wh1-b": "WH1", "wh2-a": "WH2"}
# account -> (role, groups)
ACCOUNTS = {
    "boss": ("admin", ()),
    "ann": ("operator", ("WH1",)),  # warehouse 1
    "bob": ("operator", ("WH2",)),  # warehouse 2
    "cat": ("operator", ("WH1", "WH2")),  # both
    "dan": ("operator", ()),  # in no group: sees nothing
}


def _today() -> datetime:
    """A minute ago, but never before the local midnight: "today" on the dashboard is the
    site's (here the machine's) day, and a run just after midnight must still count it."""
    now = datetime.now().astimezone().replace(microsecond=0)
    midnight = now.replace(hour=0, minute=0, second=0)
    return max(now - timedelta(minutes=1), midnight).astimezone(UTC)


def _utc(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clip(local_id: int, station: str, order_id: str, when: datetime, **kw: Any) -> dict:
    waybill = kw.pop("waybill", None)
    return {
        "id": local_id, "order_id": order_id, "waybill": waybill, "station": station,
        "started_at": when.isoformat(), "ended_at": (when + timedelta(seconds=4)).isoformat(),
        "started_utc": _utc(when), "ended_utc": _utc(when + timedelta(seconds=4)), "tz": "+00:00",
        "duration_s": 4.0, "frame_count": 100, "finish_reason": "sealed", "pre_roll_s": 1.0,
        "path": f"clips/{station}/{local_id}.mp4", "manifest_path": "",
        "size": 11, "sha256": uuid.uuid4().hex * 2,
        "waybills": [{"waybill": waybill, "carrier": "SF", "t_clip_s": 2.0}] if waybill else [],
        **kw,
    }  # fmt: skip


@dataclass
class Fleet:
    app: Any
    dsn: str
    data_dir: Path
    bucket: str
    ids: dict[tuple[str, str], int] = field(default_factory=dict)  # (station, order) -> clip id

    def client(self, name: str | None = None) -> Any:
        c = self.app.test_client()
        if name is not None:
            login(c, name)
        return c

    def webdb(self) -> WebDB:
        return WebDB.in_data_dir(self.data_dir, pw_method=FAST_PW)


def login(client: Any, name: str) -> None:
    client.get("/login")
    with client.session_transaction() as sess:
        token = sess["csrf"]
    resp = client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]


def csrf(client: Any) -> str:
    with client.session_transaction() as sess:
        return str(sess["csrf"])


def _s3(seaweed: SeaweedServer) -> Any:
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.session.Session().client(
        "s3", endpoint_url=seaweed.endpoint, region_name="us-east-1",
        aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY,
        config=BotoConfig(s3={"addressing_style": "path"}),
    )  # fmt: skip


def _body(station: str, n: int) -> bytes:
    """The bytes of ``station``'s clip ``n``: the central site hashes what it serves."""
    return f"video {station} #{n}".encode()


def _batches() -> dict[str, list[dict]]:
    """Three stations in two warehouses: each one's clips as it registers them, archived
    where its archiver puts them (the site serves a clip only from there)."""
    batches: dict[str, list[dict]] = {s: [] for s in STATIONS}

    def add(
        station: str, order_id: str, when: datetime, waybill: str | None = None, **kw: Any
    ) -> None:
        n = len(batches[station]) + 1
        body = _body(station, n)
        sha = hashlib.sha256(body).hexdigest()
        key = clip_key("packcam/", station, sha)
        frame = f"{station_prefix('packcam/', station)}frames/{sha}/0001.00s_order.jpg"
        batches[station].append(
            _clip(n, station, order_id, when, waybill=waybill, archived_utc=_utc(when), **kw,
                  size=len(body), sha256=sha, archive_key=key,
                  archive_meta={"frames": [{"label": "order", "t": 1.0, "key": frame}]})
        )  # fmt: skip

    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    add("wh1-a", "A-100", t0, "SFA100")
    add("wh1-b", "B-200", t0 + timedelta(minutes=1), "SFB200")
    add("wh2-a", "C-300", t0 + timedelta(minutes=2), "SFC300")
    # the same order ID at both warehouses (two sellers' numbering collides)
    # wh1-a's station found wh2-a's clip 2 of it in the fleet (a repack across stations)
    add("wh1-a", "DUP-7", t0 + timedelta(minutes=3),
        repack_of_fleet=[{"station": "wh2-a", "clip_id": 2, "started": ""}])  # fmt: skip
    add("wh2-a", "DUP-7", t0 + timedelta(minutes=4))
    # many matches, interleaved: 30 at warehouse 1, 40 at warehouse 2
    for i in range(70):
        st = ("wh1-a", "wh1-b", "wh2-a", "wh2-a", "wh2-a")[i % 5] if i < 50 else (
            "wh1-a" if i % 2 else "wh2-a")  # fmt: skip
        add(st, f"MANY-{i:03d}", t0 + timedelta(hours=1, minutes=i), f"SFM{i:04d}")
    for st in STATIONS:  # one clip each today (the dashboard's and /api/stations' counts)
        add(st, f"TODAY-{st}", _today(), packer=f"packer-{st}", kind="order")
    return batches


@pytest.fixture(scope="module")
def bucket(seaweed: SeaweedServer) -> str:
    """One bucket for the module (SeaweedFS gives each bucket volumes of its own) holding
    every clip's video and key frame object: the same keys and bytes for every test, and no
    test changes them, so they are uploaded once."""
    name = "scope-" + uuid.uuid4().hex[:10]
    s3 = _s3(seaweed)
    s3.create_bucket(Bucket=name)
    for station, clips in _batches().items():
        for clip in clips:
            s3.put_object(Bucket=name, Key=clip["archive_key"], Body=_body(station, clip["id"]))
            for frame in clip["archive_meta"]["frames"]:
                s3.put_object(Bucket=name, Key=frame["key"], Body=b"\xff\xd8 jpeg")
    return name


@pytest.fixture
def fleet(pg_dsn: str, seaweed: SeaweedServer, bucket: str, tmp_path: Path) -> Fleet:
    """Three stations in two warehouses; every clip archived (video and key frame objects in
    the bucket, so an out-of-scope 404 is the scoping, not a missing object)."""
    from flask.testing import FlaskClient

    from web import create_app

    db = CentralDB(pg_dsn)
    db.migrate()
    ids: dict[tuple[str, str], int] = {}
    for st, clips in _batches().items():
        sid = db.station_for_token(db.add_station(st))
        assert sid is not None
        db.register_clips(sid["id"], st, clips)
        db.set_health(sid["id"], {"state": "idle", "archive_backlog": 0})
    for r in db._all("SELECT id, station, order_id FROM clips"):
        ids[(r["station"], r["order_id"])] = int(r["id"])
    db.close()
    data_dir = tmp_path / "central"
    cfg = config_mod.load(None).with_data_dir(data_dir).replace("central", dsn=pg_dsn)
    cfg = cfg.replace(
        "archive", endpoint_url=seaweed.endpoint, region="us-east-1", bucket=bucket,
        access_key_id=S3_ACCESS_KEY, secret_access_key=S3_SECRET_KEY, addressing_style="path",
    )  # fmt: skip
    wdb = WebDB.in_data_dir(data_dir, pw_method=FAST_PW)
    try:
        for group in ("WH1", "WH2"):
            wdb.add_group(group)
            wdb.change_group_stations(group, add=[s for s, g in STATIONS.items() if g == group])
        for name, (role, groups) in ACCOUNTS.items():
            wdb.add_user(name, role, PASSWORD, groups=groups)
    finally:
        wdb.close()

    class Buffered(FlaskClient):
        def open(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("buffered", True)
            return super().open(*args, **kwargs)

    app = create_app(
        cfg, central=CentralSite(cfg), test_config={"TESTING": True, "PASSWORD_METHOD": FAST_PW}
    )
    app.test_client_class = Buffered
    return Fleet(app, pg_dsn, data_dir, bucket, ids)


def _sees(who: str) -> set[str]:
    role, groups = ACCOUNTS[who]
    return set(STATIONS) if role == "admin" else {s for s, g in STATIONS.items() if g in groups}


def _api_stations(resp: Any) -> set[str]:
    assert resp.status_code == 200, resp.status_code
    return {c["station"] for c in resp.get_json()["clips"]}


# ---- the pure decisions ---------------------------------------------------------------------


def test_a_clip_keeps_only_the_repack_links_its_viewer_may_see() -> None:
    from datetime import UTC, datetime

    from station.store.ledger import ClipRecord
    from web.scope import within

    t = datetime(2026, 12, 1, tzinfo=UTC)
    refs = [{"station": "b", "clip_id": 3, "started": "s"}, {"station": "c", "clip_id": 4}]
    clip = ClipRecord("O", "a", t, t, 1.0, 1, "sealed", 0.0, "p", "m", 1, "0" * 64,
                      extra={"repack_of_fleet": refs, "kind": "order"})  # fmt: skip
    assert within(clip, None) is clip
    assert within(clip, frozenset({"a", "b", "c"})) is clip
    assert within(clip, frozenset({"a", "b"})).repack_of_fleet == refs[:1]
    seen = within(clip, frozenset({"a"}))
    assert "repack_of_fleet" not in seen.extra and seen.extra["kind"] == "order"


def test_who_sees_what_is_decided_by_role_groups_and_site() -> None:
    assert stations_for("admin", (), central=True) is None
    assert stations_for("viewer", ("a", "b"), central=True) == {"a", "b"}
    assert stations_for("operator", (), central=True) == frozenset()  # fail closed
    assert stations_for("viewer", (), central=False) is None  # a station's own site
    assert covers(None, None) and covers(None, frozenset({"a"}))
    assert covers(frozenset({"a", "b"}), frozenset({"a"}))
    assert not covers(frozenset({"a"}), frozenset({"a", "b"}))
    assert not covers(frozenset({"a"}), None)  # an admin's link shows every station


# ---- every route, for every kind of account --------------------------------------------------


@pytest.mark.parametrize("who", list(ACCOUNTS))
def test_search_api_and_pages_show_only_the_accounts_stations(fleet: Fleet, who: str) -> None:
    c = fleet.client(who)
    sees = _sees(who)
    dup = sees & {"wh1-a", "wh2-a"}  # the stations that recorded DUP-7
    # JSON search: substring, waybills, no text (newest clips), 1 character (a prefix)
    assert _api_stations(c.get("/api/clips?q=DUP&limit=50")) == dup
    assert _api_stations(c.get("/api/clips?q=SF&limit=500")) == sees
    assert _api_stations(c.get("/api/clips?limit=500")) == sees
    assert _api_stations(c.get("/api/clips?q=D&limit=500")) == dup
    # another warehouse's station asked for by name: nothing, as for an unknown station
    for st in STATIONS:
        got = _api_stations(c.get(f"/api/clips?station={st}&limit=500"))
        assert got == ({st} if st in sees else set())
    # the search page: results and the station filter's choices
    page = c.get("/search?q=DUP").get_data(as_text=True)
    options = set(re.findall(r'<option value="([^"]+)"', page)) & set(STATIONS)
    assert options == sees
    for (st, order), clip_id in fleet.ids.items():
        if order == "DUP-7":
            assert (f"/clips/{clip_id}/thumb.jpg" in page) == (st in sees), (who, st)
    assert ('id="no-stations"' in page) == (who == "dan")
    if who == "dan":
        c.get("/lang/zh_CN")
        assert "您的账号不属于任何工位组" in c.get("/search").get_data(as_text=True)


@pytest.mark.parametrize("who", list(ACCOUNTS))
def test_order_pages_and_the_order_api(fleet: Fleet, who: str) -> None:
    c = fleet.client(who)
    sees = _sees(who)
    unknown_page = c.get("/orders/NO-SUCH-1")
    unknown_api = c.get("/api/orders/NO-SUCH-1")
    assert unknown_page.status_code == unknown_api.status_code == 404
    for station, order in (("wh1-a", "A-100"), ("wh1-b", "B-200"), ("wh2-a", "C-300")):
        page, api = c.get(f"/orders/{order}"), c.get(f"/api/orders/{order}")
        if station in sees:
            assert page.status_code == api.status_code == 200
            assert [x["station"] for x in api.get_json()["clips"]] == [station]
        else:  # exactly the answer for an order that does not exist: no existence leak
            assert page.status_code == api.status_code == 404
            assert page.get_data(as_text=True).replace(order, "NO-SUCH-1") == (
                unknown_page.get_data(as_text=True)
            )
            assert api.get_json() == unknown_api.get_json()
    # the order both warehouses recorded: each sees its own clip only, with its own times
    dup = c.get("/api/orders/DUP-7")
    if not sees:
        assert dup.status_code == 404
        return
    doc = dup.get_json()
    assert {x["station"] for x in doc["clips"]} == sees & {"wh1-a", "wh2-a"}
    assert doc["first_seen_utc"] == min(x["started_utc"] for x in doc["clips"])
    assert doc["last_clip_utc"] == max(x["started_utc"] for x in doc["clips"])
    html = c.get("/orders/DUP-7").get_data(as_text=True)
    for st in ("wh1-a", "wh2-a"):
        assert (f"/clips/{fleet.ids[(st, 'DUP-7')]}/video" in html) == (st in sees)


@pytest.mark.parametrize("who", list(ACCOUNTS))
def test_clip_media_and_evidence_bundles(fleet: Fleet, who: str) -> None:
    c = fleet.client(who)
    sees = _sees(who)
    missing = max(fleet.ids.values()) + 1000
    for station in STATIONS:
        clip_id = fleet.ids[(station, f"TODAY-{station}")]
        for path in ("video", "download", "thumb.jpg", "keyframes/0.jpg", "bundle.zip"):
            got = c.get(f"/clips/{clip_id}/{path}")
            unknown = c.get(f"/clips/{missing}/{path}")
            assert unknown.status_code == 404
            if station not in sees:
                assert got.status_code == 404, (who, station, path)
                # the same page, but for the path in its language links
                body = got.get_data(as_text=True)
                body = body.replace(f"/clips/{clip_id}/", f"/clips/{missing}/")
                assert body == unknown.get_data(as_text=True)
            elif path == "bundle.zip":  # in scope: the station has signed no parts here
                assert got.status_code == 503, (who, station, path)
            else:
                assert got.status_code == 200, (who, station, path)
                if path in ("video", "download"):
                    assert got.get_data().startswith(f"video {station} #".encode())


@pytest.mark.parametrize("who", list(ACCOUNTS))
def test_dashboard_station_api_fleet_page_and_export(fleet: Fleet, who: str) -> None:
    c = fleet.client(who)
    sees = _sees(who)
    doc = c.get("/api/stations").get_json()
    assert {s["station"] for s in doc["stations"]} == sees
    assert set(doc["clips_today"]) == sees
    assert all(n == 1 for n in doc["clips_today"].values())
    dash = c.get("/dashboard").get_data(as_text=True)
    fleet_page = c.get("/fleet").get_data(as_text=True)
    for st in STATIONS:
        assert (f"<td>{st}</td>" in dash) == (st in sees), (who, st)
        assert (f'id="fleet-{st}"' in fleet_page) == (st in sees), (who, st)
    day = "2026-12-01"
    for fmt in ("csv", "xlsx"):
        resp = c.get(f"/export/orders.{fmt}?from={day}&to={day}")
        assert resp.status_code == 200
    rows = list(csv.reader(io.StringIO(c.get(f"/export/orders.csv?from={day}&to={day}")
                                       .get_data(as_text=True).lstrip("\ufeff"))))  # fmt: skip
    assert {r[2] for r in rows[1:]} == sees
    assert len(rows) - 1 == sum(1 for (st, o) in fleet.ids if st in sees and "TODAY" not in o)
    other = c.get(f"/export/orders.csv?from={day}&to={day}&station=wh2-a").get_data(as_text=True)
    assert len(other.strip().splitlines()) == (1 + 1 + 1 + 40 if "wh2-a" in sees else 1)
    form = c.get("/export").get_data(as_text=True)
    assert set(re.findall(r'<option value="([^"]+)"', form)) & set(STATIONS) == sees


@pytest.mark.parametrize("who", list(ACCOUNTS))
def test_packers_and_repack_links_of_other_warehouses_stay_hidden(fleet: Fleet, who: str) -> None:
    c = fleet.client(who)
    sees = _sees(who)
    dash = c.get("/dashboard").get_data(as_text=True)
    for st in STATIONS:  # the per-packer table (counted by PostgreSQL) and the packer filter
        assert (f"packer-{st}" in dash) == (st in sees), (who, st)
        got = _api_stations(c.get(f"/api/clips?packer=packer-{st}&limit=50"))
        assert got == ({st} if st in sees else set())
    if "wh1-a" not in sees:
        return
    # wh1-a's clip of DUP-7 names wh2-a's clip it repacks: a link only for who sees wh2-a
    page = c.get("/orders/DUP-7").get_data(as_text=True)
    assert ("wh2-a" in page) == ("wh2-a" in sees)
    assert ('class="repack-of"' in page) == ("wh2-a" in sees)
    # the JSON API too (it gave each clip's repack_of_fleet as stored: the other warehouse's
    # station, clip id and start)
    for url in ("/api/orders/DUP-7", "/api/clips?q=DUP-7&limit=50"):
        doc = c.get(url).get_json()
        mine = next(x for x in doc["clips"] if x["station"] == "wh1-a")
        assert ("wh2-a" in json.dumps(doc)) == ("wh2-a" in sees), (who, url, doc)
        assert bool(mine.get("repack_of_fleet")) == ("wh2-a" in sees), (who, url)


def _share(c: Any, order_id: str) -> Any:
    return c.post("/shares", data={"order_id": order_id, "days": "7", "csrf_token": csrf(c)})


def _links(html: str) -> list[str]:
    return re.findall(r'value="https?://[^/"]+(/s/[^"]+)"', html)


def _share_keys(links: list[str]) -> list[str]:
    """The share each link names: a link is signed with the time it was rendered, so two
    renders of one share differ after the first '.'."""
    return [x.split(".", 1)[0] for x in links]


def test_share_links_are_created_only_in_scope_and_show_their_creators_stations(
    fleet: Fleet,
) -> None:
    ann, bob, dan, boss = (fleet.client(n) for n in ("ann", "bob", "dan", "boss"))
    # creation: another warehouse's order, an order of nobody, for someone in no group: 404
    for c, order in ((ann, "C-300"), (bob, "A-100"), (dan, "A-100"), (dan, "DUP-7")):
        unknown = _share(c, "NO-SUCH-1")
        got = _share(c, order)
        assert got.status_code == unknown.status_code == 404
        assert got.get_data() == unknown.get_data()
    db = fleet.webdb()
    try:
        assert db.shares("C-300") == db.shares("A-100") == []
        # ann's link to the order both warehouses recorded shows warehouse 1's clip only
        assert _share(ann, "DUP-7").status_code == 302
        (mine,) = db.shares("DUP-7")
        assert mine.stations == {"wh1-a", "wh1-b"}
    finally:
        db.close()
    (link,) = _links(ann.get("/orders/DUP-7").get_data(as_text=True))
    stranger = fleet.client()
    page = stranger.get(link).get_data(as_text=True)
    wh1, wh2 = fleet.ids[("wh1-a", "DUP-7")], fleet.ids[("wh2-a", "DUP-7")]
    assert f"/clips/{wh1}/video" in page and f"/clips/{wh2}/" not in page
    assert stranger.get(f"{link}/clips/{wh1}/video").get_data().startswith(b"video wh1-a #")
    assert stranger.get(f"{link}/clips/{wh2}/video").status_code == 404
    assert stranger.get(f"{link}/clips/{wh2}/thumb.jpg").status_code == 404
    # the link works for whoever holds it, also someone of the other warehouse, and keeps
    # working after its creator is moved out of the group
    assert f"/clips/{wh1}/video" in bob.get(link).get_data(as_text=True)
    db = fleet.webdb()
    try:
        db.change_group_members("WH1", remove=["ann"])
    finally:
        db.close()
    assert stranger.get(f"{link}/clips/{wh1}/video").status_code == 200
    assert ann.get("/orders/DUP-7").status_code == 404  # ann now sees nothing, at once
    # an admin's link to DUP-7 shows both clips; a scoped account neither sees it listed nor
    # gets its QR code, nor can revoke it (all: the unknown share's 404)
    assert _share(boss, "DUP-7").status_code == 302
    boss_links = _links(boss.get("/orders/DUP-7").get_data(as_text=True))
    assert len(boss_links) == 2
    db = fleet.webdb()
    try:
        admin_share = next(s for s in db.shares("DUP-7") if s.created_by == "boss")
        ann_share = next(s for s in db.shares("DUP-7") if s.created_by == "ann")
    finally:
        db.close()
    assert admin_share.stations is None
    cat_keys = _share_keys(_links(fleet.client("cat").get("/orders/DUP-7").get_data(as_text=True)))
    admin_link = next(x for x in boss_links if _share_keys([x])[0] not in cat_keys)
    both = stranger.get(admin_link).get_data(as_text=True)
    assert f"/clips/{wh1}/video" in both and f"/clips/{wh2}/video" in both
    bob_page = bob.get("/orders/DUP-7").get_data(as_text=True)
    assert _links(bob_page) == []  # neither ann's (warehouse 1) nor the admin's link
    for share_id in (admin_share.id, ann_share.id, "f" * 24):
        assert bob.get(f"/shares/{share_id}/qr.svg").status_code == 404
        revoke = bob.post(f"/shares/{share_id}/revoke", data={"csrf_token": csrf(bob)})
        assert revoke.status_code == 404
    # cat (both warehouses) sees ann's link (inside her scope) but not the admin's
    cat_keys = _share_keys(_links(fleet.client("cat").get("/orders/DUP-7").get_data(as_text=True)))
    assert _share_keys([link])[0] in cat_keys and _share_keys([admin_link])[0] not in cat_keys
    assert boss.get(f"/shares/{ann_share.id}/qr.svg").status_code == 200


def test_a_scoped_link_stays_scoped_for_its_evidence_bundle_and_summary(fleet: Fleet) -> None:
    ann = fleet.client("ann")
    assert _share(ann, "DUP-7").status_code == 302
    (link,) = _links(ann.get("/orders/DUP-7").get_data(as_text=True))
    stranger = fleet.client()
    # the bundle of warehouse 1's clip: not signed here (503), never warehouse 2's
    assert stranger.get(link + "/bundle.zip").status_code == 503
    db = fleet.webdb()
    try:
        (share,) = db.shares("DUP-7")
    finally:
        db.close()
    from web import share_index

    with fleet.app.test_request_context():
        clips = share_index(share).order("DUP-7")
    assert [x.station for x in clips] == ["wh1-a"]


def test_the_order_pages_access_log_leaves_out_the_other_warehouses_order(fleet: Fleet) -> None:
    """DUP-7 is two orders: Ningbo's views of theirs are not Hangzhou's business."""
    clients = {n: fleet.client(n) for n in ("ann", "bob", "cat", "boss")}
    for c in clients.values():
        assert c.get("/orders/DUP-7").status_code == 200
    assert _share(clients["bob"], "DUP-7").status_code == 302
    (bob_link,) = _links(clients["bob"].get("/orders/DUP-7").get_data(as_text=True))
    assert fleet.client().get(bob_link).status_code == 200  # logged as the link's use

    def log_of(who: str) -> str:
        html = clients[who].get("/orders/DUP-7").get_data(as_text=True)
        return html[html.index('id="access"') :] if 'id="access"' in html else html

    ann = log_of("ann")
    assert "<td>ann</td>" in ann and "<td>cat</td>" in ann and "<td>boss</td>" in ann
    assert "<td>bob</td>" not in ann and "share link" not in ann
    every = log_of("boss")
    assert "<td>bob</td>" in every and "share link" in every
    assert "<td>bob</td>" in log_of("cat")


# ---- the search is filtered in SQL: pages are full, counts right ------------------------------


PLANS = {
    "newest rows": {},  # the page fills from the newest rows tested one by one
    "blocks": {"NEWEST_SCAN": 0, "FIRST_BLOCKS": 1, "RARE_ROWS": 0},
    "rare": {"NEWEST_SCAN": 0, "RARE_ROWS": 10**9, "RARE_MIN_CHARS": 2, "RARE_TRY_S": 2.0},
}


@pytest.mark.parametrize("plan", list(PLANS))
def test_scoped_pages_are_full_and_complete(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, plan: str
) -> None:
    """Every step of the central search (central/db.py ``_newest_ids``) filters the stations."""
    import central.db

    for name, value in PLANS[plan].items():
        monkeypatch.setattr(central.db, name, value)
    for who, expect in (("ann", 30), ("bob", 40), ("cat", 70), ("boss", 70)):
        c = fleet.client(who)
        for q in ("MANY", "many-0", "SFM", "NY"):  # every one matches exactly the 70 MANY
            seen: list[int] = []
            offset = 0
            while True:
                doc = c.get(f"/api/clips?q={q}&limit=7&offset={offset}").get_json()
                seen += [x["id"] for x in doc["clips"]]
                if not doc["more"]:
                    break
                assert len(doc["clips"]) == 7, (who, q, offset)  # a full page
                offset += 7
            want = sorted((i for (st, o), i in fleet.ids.items() if o.startswith("MANY")
                           and st in _sees(who)), reverse=True)  # fmt: skip
            assert seen == want and len(seen) == expect, (who, q)


def test_central_search_takes_the_station_list(fleet: Fleet) -> None:
    db = CentralDB(fleet.dsn)
    try:
        for q in ("", "M", "MA", "MAN", "SFM0"):
            got = db.search(ClipSearch(q, stations=["wh1-b"], limit=500))
            assert got and {x.station for x in got} == {"wh1-b"}, q
            assert db.search(ClipSearch(q, stations=[], limit=500)) == []
            assert db.search(ClipSearch(q, stations=["no-such-station"], limit=500)) == []
        both = db.search(ClipSearch("MANY", stations=["wh1-a", "wh1-b"], limit=500))
        assert len(both) == 30
    finally:
        db.close()


# ---- the scope follows the groups at once; CLI ---------------------------------------------


def test_group_changes_apply_to_the_next_request(fleet: Fleet) -> None:
    dan = fleet.client("dan")
    assert _api_stations(dan.get("/api/clips?q=DUP")) == set()
    db = fleet.webdb()
    try:
        db.change_group_members("WH2", add=["dan"])
        assert _api_stations(dan.get("/api/clips?q=DUP")) == {"wh2-a"}
        db.change_group_stations("WH2", add=["wh1-b"])
        assert _api_stations(dan.get("/api/clips?limit=500")) == {"wh2-a", "wh1-b"}
        db.remove_group("WH2")
        assert _api_stations(dan.get("/api/clips?limit=500")) == set()
        assert db.groups()[0].name == "WH1" and len(db.groups()) == 1
    finally:
        db.close()
    # HTTP Basic on the API is scoped the same way
    import base64

    basic = {"Authorization": "Basic " + base64.b64encode(f"ann:{PASSWORD}".encode()).decode()}
    got = fleet.client().get("/api/clips?q=DUP", headers=basic)
    assert _api_stations(got) == {"wh1-a"}


def test_scoping_is_a_no_op_on_a_stations_own_site(web_env: Any) -> None:
    """A station's site has one station: accounts in no group see it (groups are ignored)."""
    from conftest_web import login as role_login
    from conftest_web import make_app

    db = WebDB.in_data_dir(web_env.data_dir, pw_method=FAST_PW)
    try:
        db.add_group("elsewhere")
        db.change_group_stations("elsewhere", add=["not-this-station"])
        db.change_group_members("elsewhere", add=["viewer"])
    finally:
        db.close()
    c = make_app(web_env).test_client()
    role_login(c, "viewer")
    got = _api_stations(c.get("/api/clips?limit=500"))
    assert got == {"桌1", "station-02"}
    assert c.get("/orders/PO-1001").status_code == 200
    page = c.get("/search").get_data(as_text=True)
    assert 'id="no-stations"' not in page


def test_scoped_index_on_the_station_sqlite_index(web_env: Any) -> None:
    """The same wrapper over the station's SQLite index filters in its SQL too."""
    from web.index import ClipIndex
    from web.search import SEARCH_DB_NAME, SearchIndex

    search = SearchIndex(web_env.data_dir / SEARCH_DB_NAME, web_env.data_dir / "index.sqlite3")
    index = ClipIndex(web_env.data_dir / "index.sqlite3", search=search)
    try:
        scoped = ScopedIndex(index, frozenset({"station-02"}))
        for q in ("", "S", "SF", "SF123"):
            got = scoped.search(ClipSearch(q, limit=100))
            assert got and {x.station for x in got} == {"station-02"}, q
        assert scoped.stations() == ["station-02"]
        assert scoped.order("PO-1001") == [] and scoped.order_info("PO-1001") is None
        plain = web_env.clips["plain"]
        assert scoped.clip(plain.id) is None and ScopedIndex(index, None).clip(plain.id)
        assert ScopedIndex(index, frozenset()).search(ClipSearch("", limit=100)) == []
    finally:
        index.close()
        search.close()  # the site's, not the index's: whoever made it closes it


class _Stdin(io.StringIO):
    def isatty(self) -> bool:
        return False


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> str:
    import argparse

    from web import cli

    p = argparse.ArgumentParser(prog="packcam")
    sub = p.add_subparsers(dest="command", required=True)
    cli.register(sub)
    args = p.parse_args(argv)
    monkeypatch.setattr("sys.stdin", _Stdin(stdin))
    out = io.StringIO()
    args.func(args, out=out)
    return out.getvalue()


def test_group_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from station.errors import StationError

    d = ["--data", str(tmp_path / "site")]
    assert "packcam group add NAME" in _run(["group", "list", *d], monkeypatch)
    _run(["group", "add", "hangzhou", *d], monkeypatch)
    _run(["group", "add", "ningbo", *d], monkeypatch)
    with pytest.raises(StationError, match="already exists"):
        _run(["group", "add", "hangzhou", *d], monkeypatch)
    out = _run(["group", "stations", "hangzhou", "--add", "hz-01", "hz-02", "桌3", *d],
               monkeypatch)  # fmt: skip
    assert out == "hangzhou\tstations hz-01,hz-02,桌3\n"
    out = _run(["group", "stations", "hangzhou", "--remove", "hz-02", *d], monkeypatch)
    assert out == "hangzhou\tstations hz-01,桌3\n"
    # an unknown group fails before the password is asked for, and creates nothing
    with pytest.raises(StationError, match="no station group named 'suzhou'"):
        _run(["user", "add", "amy", "--role", "viewer", "--group", "suzhou", *d], monkeypatch)
    out = _run(["user", "add", "amy", "--role", "viewer", "--group", "hangzhou", "--group",
                "ningbo", *d], monkeypatch, "amy-pass-123\namy-pass-123\n")  # fmt: skip
    assert "created in hangzhou, ningbo" in out
    out = _run(["user", "add", "ben", "--role", "operator", *d], monkeypatch,
               "ben-pass-123\nben-pass-123\n")  # fmt: skip
    assert "sees only\nthe stations of its groups, and nothing while it is in none" in out
    with pytest.raises(StationError, match="no account named 'nobody'"):
        _run(["group", "members", "ningbo", "--add", "nobody", *d], monkeypatch)
    _run(["group", "members", "ningbo", "--add", "ben", "--remove", "amy", *d], monkeypatch)
    listing = _run(["group", "list", *d], monkeypatch).splitlines()
    assert listing == ["hangzhou\tstations hz-01,桌3\tmembers amy",
                       "ningbo\tstations -\tmembers ben"]  # fmt: skip
    users = _run(["user", "list", *d], monkeypatch)
    assert re.search(r"^amy\tviewer\t.*\tgroups hangzhou$", users, re.M)
    assert re.search(r"^ben\toperator\t.*\tgroups ningbo$", users, re.M)
    _run(["user", "remove", "ben", *d], monkeypatch)
    _run(["group", "remove", "hangzhou", *d], monkeypatch)
    assert _run(["group", "list", *d], monkeypatch) == "ningbo\tstations -\tmembers -\n"
    with pytest.raises(StationError, match="no station group"):
        _run(["group", "stations", "hangzhou", "--add", "x", *d], monkeypatch)
    with pytest.raises(StationError, match="station names"):
        _run(["group", "stations", "ningbo", "--add", "bad\x01name", *d], monkeypatch)
    with pytest.raises(StationError, match="account names"):
        _run(["group", "add", "has space", *d], monkeypatch)


def test_the_admin_page_shows_groups_and_what_each_account_sees(fleet: Fleet) -> None:
    boss = fleet.client("boss")
    page = boss.get("/admin").get_data(as_text=True)
    groups = page[page.index('id="groups"') :]
    assert "<td>WH1</td><td>wh1-a, wh1-b</td><td>ann, cat</td>" in groups
    assert "<td>WH2</td><td>wh2-a</td><td>bob, cat</td>" in groups
    assert re.search(r"<td>dan</td>.*?none: sees nothing", page, re.S)
    assert re.search(r"<td>boss</td>.*?every station", page, re.S)
    boss.get("/lang/zh_CN")
    zh = boss.get("/admin").get_data(as_text=True)
    assert "工位组" in zh and "无：看不到任何视频" in zh
    assert fleet.client("ann").get("/admin").status_code == 403


def test_views_read_clips_only_through_the_scoped_index() -> None:
    """One enforcement point: no view opens the unscoped index or the central database for
    clips itself (the public verify page and the witness are not scoped on purpose)."""
    web = Path(__file__).resolve().parent.parent / "web"
    for path in sorted(web.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name not in ("handles.py", "scope.py"):
            assert "raw_index(" not in text, path.name
        if path.name not in ("__init__.py", "verify.py"):  # raw_index() opens it
            assert "central_db()" not in text, path.name
