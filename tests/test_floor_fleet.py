"""Repacks across stations and the central site's packing floor, on a real PostgreSQL with the
real central site: the fleet duplicate check (station/fleet/duplicates.py), the links both ways on
the central order page, search by packer and kind, and per-packer counts in SQL."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest_web import add_users, login
from test_floor_station import manifest, run

from central.db import CentralDB, CentralError
from central.site import CentralSite
from station import config as config_mod
from station.fleet.central_sync import CentralSync
from station.fleet.duplicates import FleetDuplicates, fleet_refs
from station.floor.events import EventKind, EventRecorder, StationEvents
from station.floor.feedback import RecordingSink
from station.store.clips import ClipSearch
from station.store.ledger import Ledger

pytestmark = pytest.mark.slow


@dataclass
class Site:
    dsn: str
    url: str
    tokens: dict[str, str]
    server: Any
    root: Path

    def station(self, name: str, **central: Any) -> config_mod.Config:
        cfg = config_mod.load(None).with_data_dir(self.root / name).replace("station", name=name)
        return cfg.replace("central", enabled=True, url=self.url, token=self.tokens[name],
                           interval_s=0.2, **central)  # fmt: skip


@pytest.fixture
def site(pg_dsn: str, tmp_path: Path) -> Iterator[Site]:
    from web.cli import make_server, run_server, server_url

    db = CentralDB(pg_dsn)
    db.migrate()
    tokens = {n: db.add_station(n) for n in ("st-01", "st-02")}
    db.close()
    central_cfg = config_mod.load(None).with_data_dir(tmp_path / "central")
    central_cfg = central_cfg.replace("central", dsn=pg_dsn)
    add_users(central_cfg.station.data_dir, stations=["st-01", "st-02"])
    server = make_server(central_cfg, "127.0.0.1", 0, central=CentralSite(central_cfg))
    stop = threading.Event()
    thread = threading.Thread(target=run_server, args=(server,), kwargs={"stop": stop})
    thread.start()
    try:
        yield Site(pg_dsn, server_url(server), tokens, server, tmp_path)
    finally:
        stop.set()
        thread.join(timeout=15)


def sync(cfg: config_mod.Config) -> dict[str, int]:
    s = CentralSync(cfg)
    try:
        return s.sync_once()
    finally:
        s.stop()


def get(url: str, token: str | None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}")


def test_an_order_recorded_at_another_station_is_a_repack_linked_both_ways(site: Site) -> None:
    second = site.station("st-02")
    earlier, _ = run(second, [(0.2, "OP:bob"), (0.4, "DUP-1"), (1.0, "SEAL")], 1.5)
    sync(second)  # (closing the station already pushed once: nothing or the clip)
    first = site.station("st-01")
    sink = RecordingSink()
    # a real-time camera: the central answer (well under a second) comes while the clip is open
    clips, rec = run(first, [(0.2, "OP:alice"), (0.3, "DUP-1"), (2.5, "SEAL")], 3.0,
                     sink=sink, realtime=True)  # fmt: skip
    (clip,) = clips
    ref = {"station": "st-02", "clip_id": earlier[0].id,
           "started": earlier[0].started_at.isoformat(timespec="milliseconds")}  # fmt: skip
    assert clip.repack_of_fleet == [ref] and clip.repack_of == []
    m = manifest(first, clip)
    assert m["repack"] is True and m["repack_of_fleet"] == [ref]
    dup = [e for e in rec.events if e.kind is EventKind.DUPLICATE_ORDER]
    assert len(dup) == 1 and "st-02" in dup[0].data["why"]
    assert "duplicate" in [p.name for p in sink.played]
    # the started clip came first: the check never delays the recording
    kinds = rec.kinds()
    assert kinds.index(EventKind.ORDER_STARTED) < kinds.index(EventKind.DUPLICATE_ORDER)

    sync(first)
    db = CentralDB(site.dsn)
    try:
        rows = {c.station: c for c in db.order("DUP-1")}
    finally:
        db.close()
    assert rows["st-01"].repack_of_fleet == [ref] and rows["st-01"].packer == "alice"
    assert rows["st-02"].packer == "bob"
    client = login(site.server.packcam_app.test_client(), "viewer")
    page = client.get("/orders/DUP-1").get_data(as_text=True)
    new, old = rows["st-01"].id, rows["st-02"].id
    assert f'class="repack-of"><a href="#clip-{old}">clip {earlier[0].id} at st-02</a>' in page
    assert f'class="repacked-by"><a href="#clip-{new}">clip {clip.id} at st-01</a>' in page
    # the station's own site names the other station's clip (it is not on this page)
    from web import create_app

    local = create_app(first, test_config={"TESTING": True})
    add_users(first.station.data_dir)
    mine = login(local.test_client(), "viewer").get("/orders/DUP-1").get_data(as_text=True)
    assert f'<span class="elsewhere">clip {earlier[0].id} at st-02</span>' in mine


def test_a_local_repack_is_linked_to_the_fleet_without_a_second_warning(site: Site) -> None:
    second = site.station("st-02")
    run(second, [(0.4, "DUP-2"), (1.0, "SEAL")], 1.5)
    sync(second)
    first = site.station("st-01")
    run(first, [(0.3, "DUP-2"), (0.8, "SEAL")], 1.0)
    clips, rec = run(first, [(0.3, "DUP-2"), (2.0, "SEAL")], 2.5, realtime=True)
    assert [c.repack_of for c in clips] == [[], [clips[0].id]]
    assert [r["station"] for r in clips[1].repack_of_fleet] == ["st-02"]
    assert rec.kinds().count(EventKind.DUPLICATE_ORDER) == 1  # the local one only


def test_an_unreachable_central_site_leaves_the_local_check_only(
    cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    cfg = cfg.replace("central", enabled=True, url=url, token="t" * 20)
    sink = RecordingSink()
    with caplog.at_level(logging.WARNING, logger="station.fleet.duplicates"):
        clips, rec = run(cfg, [(0.3, "NEW-1"), (1.5, "SEAL")], 2.0, sink=sink, realtime=True)
    assert [(c.order_id, c.repack_of_fleet) for c in clips] == [("NEW-1", [])]
    assert EventKind.DUPLICATE_ORDER not in rec.kinds()
    assert EventKind.SCAN_REFUSED not in rec.kinds()
    assert [p.name for p in sink.played] == ["order-started", "sealed"]
    assert "central index not answering" in caplog.text


class _Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(3)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_slow_central_site_is_given_up_after_the_timeout_without_blocking(
    cfg: config_mod.Config, ledger: Ledger
) -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        cfg = cfg.replace("central", enabled=True, url=f"http://127.0.0.1:{srv.server_port}",
                          token="t" * 20, duplicate_timeout_s=0.3)  # fmt: skip
        hub = StationEvents("st")
        dup = FleetDuplicates(cfg, hub, lambda *a: True, ledger, token="t" * 20)
        hub.add(dup)
        t0 = time.monotonic()
        hub.emit(EventKind.ORDER_STARTED, 1.0, "SLOW-1", repack=False)
        assert time.monotonic() - t0 < 0.05  # the capture loop only queues
        t1 = time.monotonic()
        from station.floor.events import StationEvent

        assert dup.check(StationEvent(EventKind.ORDER_STARTED, "st", 1.0, "SLOW-2")) is None
        assert 0.25 < time.monotonic() - t1 < 1.5  # given up at the timeout
        dup.close()
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_late_answer_links_the_index_row_not_the_manifest(site: Site, ledger: Ledger) -> None:
    from proof_support import record_orders

    second = site.station("st-02")
    run(second, [(0.4, "LATE-1"), (1.0, "SEAL")], 1.5)
    sync(second)
    first = site.station("st-01")
    hub = StationEvents("st-01")
    rec = EventRecorder()
    hub.add(rec)
    dup = FleetDuplicates(first, hub, lambda *a: False, ledger, token=site.tokens["st-01"])
    from station.floor.events import StationEvent

    started = StationEvent(EventKind.ORDER_STARTED, "st-01", 1.0, "LATE-1",
                           {"repack": False}, datetime.now(UTC))  # fmt: skip
    refs = dup.check(started)  # the clip has ended (annotate says so) and is not indexed yet
    assert refs is not None and [r["station"] for r in refs] == ["st-02"]
    assert rec.kinds() == [EventKind.DUPLICATE_ORDER]
    record_orders(first.with_data_dir(ledger_dir(ledger)), (), ["LATE-1"], ago=timedelta(0))
    (clip,) = ledger.clips("LATE-1")
    assert clip.repack_of_fleet == []
    dup.on_event(StationEvent(EventKind.CLIP_SEALED, "st-01", 2.0, "LATE-1", {"clip_id": clip.id}))
    dup.close()
    (clip,) = ledger.clips("LATE-1")
    assert clip.repack_of_fleet == refs
    assert "repack_of_fleet" not in json.loads(
        (ledger_dir(ledger) / clip.manifest_path).read_text(encoding="utf-8")
    )


def ledger_dir(ledger: Ledger) -> Path:
    return Path(ledger.conn.execute("PRAGMA database_list").fetchone()[2]).parent


def test_the_order_clips_api_needs_a_station_token_and_a_sane_order(site: Site) -> None:
    base = site.url.rstrip("/") + "/api/fleet/v1/order-clips?order="
    assert get(base + "X-1", None)[0] == 401
    assert get(base + "X-1", "nope")[0] == 401
    assert get(base, site.tokens["st-01"])[0] == 400
    assert get(base + "%01", site.tokens["st-01"])[0] == 400
    assert get(base + "X-1", site.tokens["st-01"]) == (200, {"order": "X-1", "clips": []})


def test_a_second_machine_with_a_stations_token_is_not_told_of_the_fleets_clips(
    site: Site, ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """order-clips answers other stations' clips of an order (their buyers' orders), but it
    did not check the key the request names, and the station's duplicate check named none: a
    second Pi given st-01's token (its own data dir, its own key) was told of them. The check
    names the station's key as the sync does, and the site refuses another key than the one
    st-01 enrolled (403, as for health, clips and checkpoints); a request naming no key (a
    station older than this) is taken, as the other endpoints take it."""
    from station.fleet.central_sync import KEY_HEADER
    from station.floor.events import StationEvent
    from station.proof.keys import StationKey
    from station.proof.paths import ProofPaths

    second = site.station("st-02")
    run(second, [(0.4, "TWIN-1"), (1.0, "SEAL")], 1.5)
    sync(second)
    first, twin = site.station("st-01"), site.station("st-01").with_data_dir(site.root / "twin")
    mine, other = (StationKey.load_or_create(ProofPaths.from_config(c).key)[0]
                   for c in (first, twin))  # fmt: skip
    sync(first)  # its hello enrols its key
    url = site.url.rstrip("/") + "/api/fleet/v1/order-clips?order=TWIN-1"

    def ask(key: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {site.tokens['st-01']}"}
        if key is not None:
            headers[KEY_HEADER] = key
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=5) as resp:  # fmt: skip
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"{}")

    status, doc = ask(mine.fingerprint)
    assert status == 200 and [c["station"] for c in doc["clips"]] == ["st-02"], doc
    for key in (other.fingerprint, ""):  # a twin, and a machine without a key
        status, doc = ask(key)
        assert status == 403 and "clips" not in doc, doc
        assert mine.fingerprint in doc["error"] and "st-01" in doc["error"], doc
    assert ask(None)[0] == 200  # a station older than this names no key: taken as before

    # the stations' own duplicate check: the header names the key each machine signs with
    started = StationEvent(EventKind.ORDER_STARTED, "st-01", 1.0, "TWIN-1", {"repack": True})
    checks = {}
    for name, cfg in (("first", first), ("twin", twin)):
        dup = FleetDuplicates(cfg, StationEvents("st-01"), lambda *a: True, ledger,
                              token=site.tokens["st-01"])  # fmt: skip
        try:
            with caplog.at_level(logging.WARNING, logger="station.fleet.duplicates"):
                checks[name] = dup.check(started)
        finally:
            dup.close()
    assert [r["station"] for r in checks["first"] or []] == ["st-02"], checks
    assert checks["twin"] is None, checks
    assert "HTTP 403" in caplog.text, caplog.text


def test_another_sellers_order_of_the_same_id_is_no_repack_and_never_named_in_a_manifest(
    site: Site,
) -> None:
    """Station groups on the central site are also clients (two sellers' numbering: an order
    ID is two orders). st-02 (seller B) records order 10001; then st-01 (seller A) records its
    own 10001. The duplicate check used to answer every station's clips: st-01's packer heard
    the duplicate warning, and seller A's buyer's signed manifest and bundle named seller B's
    station, clip and time (the central pages hide that link from A's accounts, the manifest
    cannot). A station is told of the clips of the stations it shares a group with."""
    from web.db import WebDB

    web = WebDB.in_data_dir(site.root / "central")
    try:
        web.change_group_stations("all-stations", remove=["st-01", "st-02"])
        for group, station in (("seller-a", "st-01"), ("seller-b", "st-02")):
            web.add_group(group)
            web.change_group_stations(group, add=[station])
    finally:
        web.close()
    other = site.station("st-02")
    run(other, [(0.2, "OP:bob"), (0.4, "10001"), (1.0, "SEAL")], 1.5)
    sync(other)
    base = site.url.rstrip("/") + "/api/fleet/v1/order-clips?order=10001"
    assert [c["station"] for c in get(base, site.tokens["st-02"])[1]["clips"]] == ["st-02"]
    assert get(base, site.tokens["st-01"]) == (200, {"order": "10001", "clips": []})
    mine = site.station("st-01")
    sink = RecordingSink()
    clips, rec = run(mine, [(0.2, "OP:alice"), (0.3, "10001"), (2.5, "SEAL")], 3.0,
                     sink=sink, realtime=True)  # fmt: skip
    (clip,) = clips
    assert clip.repack_of_fleet == [] and "repack_of_fleet" not in manifest(mine, clip)
    assert EventKind.DUPLICATE_ORDER not in rec.kinds()
    assert "duplicate" not in [p.name for p in sink.played]
    # a group listing both (one seller's two warehouses) makes them one fleet again
    web = WebDB.in_data_dir(site.root / "central")
    try:
        web.add_group("seller-ab")
        web.change_group_stations("seller-ab", add=["st-01", "st-02"])
    finally:
        web.close()
    got = get(base, site.tokens["st-01"])[1]["clips"]
    assert "st-02" in {c["station"] for c in got}, got


def test_a_station_is_told_of_the_stations_it_shares_a_group_with() -> None:
    from web.db import StationGroup
    from web.scope import peer_stations

    def group(*stations: str) -> StationGroup:
        return StationGroup("g", stations, ())

    assert peer_stations("a", []) is None  # no groups: one seller, the whole fleet
    assert peer_stations("a", [group("a", "b"), group("c")]) == {"a", "b"}
    assert peer_stations("a", [group("a", "b"), group("a", "d"), group("c")]) == {"a", "b", "d"}
    assert peer_stations("x", [group("a", "b")]) == {"x"}  # in no group: its own clips only


def test_fleet_refs_keeps_other_stations_only() -> None:
    body = json.dumps({"order": "A", "clips": [
        {"station": "me", "clip_id": 1, "started": "s"},
        {"station": "other", "clip_id": 2, "started": "t"},
        {"station": "bad", "clip_id": "3"},
    ]}).encode()  # fmt: skip
    assert fleet_refs(body, "A", "me") == [{"station": "other", "clip_id": 2, "started": "t"}]
    from station.fleet.duplicates import CheckFailed

    for bad in (b"nope", b"[]", json.dumps({"order": "B", "clips": []}).encode()):
        with pytest.raises(CheckFailed):
            fleet_refs(bad, "A", "me")


# ---- the central index: packer and kind, search filters, per-packer counts in SQL ----------


def _clip(i: int, packer: str | None, kind: str, started: datetime, dur: float) -> dict:
    t = started.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    local = started.astimezone().isoformat(timespec="milliseconds")
    return {
        "id": i, "order_id": f"PK-{i}", "waybill": None, "station": "st-01",
        "started_at": local, "ended_at": local, "started_utc": t, "ended_utc": t, "tz": "+0000",
        "duration_s": dur, "frame_count": 1, "finish_reason": "sealed", "pre_roll_s": 0.0,
        "path": f"clips/{i}.mp4", "manifest_path": "", "size": 10, "sha256": f"{i:064x}",
        "kind": kind, **({"packer": packer} if packer else {}),
    }  # fmt: skip


def test_central_search_by_packer_and_kind_and_packer_days_in_sql(pg_dsn: str) -> None:
    db = CentralDB(pg_dsn)
    try:
        db.migrate()
        st = db.station_for_token(db.add_station("st-01"))
        assert st is not None
        # 2026-12-01 23:30 UTC is 12-02 in Shanghai: days are the site's local days
        d1 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
        late = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
        clips = [_clip(1, "alice", "order", d1, 10), _clip(2, "alice", "order", d1, 30),
                 _clip(3, "alice", "order", d1, 50), _clip(4, "王芳", "order", late, 20),
                 _clip(5, "alice", "return", d1, 99), _clip(6, None, "order", d1, 5)]  # fmt: skip
        db.register_clips(int(st["id"]), "st-01", clips)
        ids = lambda rs: sorted(c.extra["local_id"] for c in rs)  # noqa: E731
        assert ids(db.search(ClipSearch("", packer="alice"))) == [1, 2, 3, 5]
        assert ids(db.search(ClipSearch("PK", packer="alice", kind="return"))) == [5]
        assert ids(db.search(ClipSearch("PK-", kind="order"))) == [1, 2, 3, 4, 6]
        assert ids(db.search(ClipSearch("P", packer="王芳"))) == [4]
        got = db.packer_days("2026-11-30T00:00:00Z", "2026-12-03T00:00:00Z", "Asia/Shanghai")
        assert got == [("alice", "2026-12-01", 3, 30.0), ("王芳", "2026-12-02", 1, 20.0)]
        assert db.packer_days("2026-11-30T00:00:00Z", "2026-12-03T00:00:00Z", "+08:00") == got
        assert db.packer_days("2026-11-30T00:00:00Z", "2026-12-03T00:00:00Z", "+00:00")[1] == (
            "王芳", "2026-12-01", 1, 20.0)  # fmt: skip
        with pytest.raises(CentralError, match="kind"):
            db.register_clips(int(st["id"]), "st-01", [_clip(9, None, "parcel", d1, 1)])
        with pytest.raises(CentralError, match="repack_of_fleet"):
            bad = {**_clip(9, None, "order", d1, 1), "repack_of_fleet": [1]}
            db.register_clips(int(st["id"]), "st-01", [bad])
    finally:
        db.close()


def test_the_central_site_filters_by_packer_and_kind_and_counts_per_packer(site: Site) -> None:
    db = CentralDB(site.dsn)
    try:
        st = db.station_for_token(site.tokens["st-01"])
        assert st is not None
        now = datetime.now(UTC)
        yesterday = now - timedelta(days=1)
        db.register_clips(int(st["id"]), "st-01", [
            _clip(1, "alice", "order", now - timedelta(minutes=5), 40),
            _clip(2, "alice", "order", now - timedelta(minutes=3), 60),
            _clip(3, "alice", "return", now - timedelta(minutes=2), 90),
            _clip(4, "bob", "order", yesterday, 25),
            _clip(5, "bob", "order", now - timedelta(days=9), 25),  # outside the 7 days
        ])  # fmt: skip
    finally:
        db.close()
    client = login(site.server.packcam_app.test_client(), "operator")
    page = client.get("/search?packer=alice&kind=return").get_data(as_text=True)
    assert "PK-3" in page and "PK-1" not in page and 'name="packer"' in page
    page = client.get("/search?q=PK&kind=order").get_data(as_text=True)
    assert all(f"PK-{i}" in page for i in (1, 2, 4, 5)) and "PK-3" not in page
    api = client.get("/api/clips?packer=bob").get_json()["clips"]
    assert sorted(c["order_id"] for c in api) == ["PK-4", "PK-5"]
    page = client.get("/dashboard").get_data(as_text=True)
    table = page[page.index('id="packers"') :]
    table = table[: table.index("</table>")]
    alice = table[table.index("<td>alice</td>") :].split("</tr>")[0]
    assert "2 orders" in alice and "50" in alice  # median of 40 s and 60 s; not the return
    bob = table[table.index("<td>bob</td>") :].split("</tr>")[0]
    assert bob.count("1 orders") == 1 and "25" in bob


def test_packer_table_and_pg_zone() -> None:
    from datetime import date, timezone
    from zoneinfo import ZoneInfo

    from web.dashboard import packer_table, pg_zone

    days = [date(2026, 12, 1), date(2026, 12, 2)]
    rows = [("b", "2026-12-02", 2, 7.5), ("a", "2026-12-01", 1, 3.0), ("a", "2026-11-01", 9, 1.0)]
    assert packer_table(rows, days) == {"a": [(1, 3.0), (0, None)], "b": [(0, None), (2, 7.5)]}
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert pg_zone(ZoneInfo("Asia/Shanghai"), now) == "Asia/Shanghai"
    assert pg_zone(timezone(timedelta(hours=-3, minutes=-30)), now) == "-03:30"


def test_a_clip_resuming_after_a_camera_loss_is_linked_but_not_warned_again(
    site: Site, ledger: Ledger
) -> None:
    from station.floor.events import StationEvent

    second = site.station("st-02")
    run(second, [(0.4, "RES-1"), (1.0, "SEAL")], 1.5)
    sync(second)
    hub = StationEvents("st-01")
    rec = EventRecorder()
    hub.add(rec)
    notes: list[tuple[str, str, Any]] = []
    first = site.station("st-01")
    dup = FleetDuplicates(first, hub, lambda *a: notes.append(a) or True, ledger,
                          token=site.tokens["st-01"])  # fmt: skip
    try:
        resumed = StationEvent(EventKind.ORDER_STARTED, "st-01", 9.0, "RES-1",
                               {"repack": False, "resumed": True})  # fmt: skip
        refs = dup.check(resumed)
        assert refs and [(o, k) for o, k, _v in notes] == [
            ("RES-1", "repack_of_fleet"), ("RES-1", "repack")
        ]  # fmt: skip
        assert rec.kinds() == []  # linked, but the packer heard the warning at the first clip
    finally:
        dup.close()


def test_the_central_answer_comes_well_inside_the_timeout(site: Site, ledger: Ledger) -> None:
    import statistics

    from station.floor.events import StationEvent

    second = site.station("st-02")
    run(second, [(0.4, "FAST-1"), (1.0, "SEAL")], 1.5)
    sync(second)
    first = site.station("st-01")
    dup = FleetDuplicates(first, StationEvents("st-01"), lambda *a: True, ledger,
                          token=site.tokens["st-01"])  # fmt: skip
    try:
        took = []
        for n in range(20):
            t0 = time.perf_counter()
            ev = StationEvent(EventKind.ORDER_STARTED, "st-01", n, "FAST-1", {"repack": True})
            assert dup.check(ev)
            took.append((time.perf_counter() - t0) * 1000)
    finally:
        dup.close()
    print(f"fleet duplicate check (ms): median {statistics.median(took):.1f}, max {max(took):.1f}")
    assert statistics.median(took) < first.central.duplicate_timeout_s * 1000 / 5
