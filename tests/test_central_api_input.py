"""The stations' API on the central site refuses hostile or broken clip records with a clear
error (409) before they reach the index, where one of them would break every page listing it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest_web import add_users, login

from central.api import KEY_HEADER, key_refusal
from central.db import CentralDB
from central.site import CentralSite
from station import config as config_mod

pytestmark = pytest.mark.slow


def _clip(i: int, **over: Any) -> dict[str, Any]:
    t = f"2026-12-01T09:00:{i:02d}+08:00"
    u = f"2026-12-01T01:00:{i:02d}.000000+00:00"
    doc: dict[str, Any] = {
        "id": i, "order_id": "PO-1", "waybill": None, "station": "st-1",
        "started_at": t, "ended_at": t, "started_utc": u, "ended_utc": u, "tz": "+08:00",
        "duration_s": 1.0, "frame_count": 1, "finish_reason": "sealed", "pre_roll_s": 0.0,
        "path": f"clips/{i}.mp4", "manifest_path": f"clips/{i}.json", "size": 1000,
        "sha256": f"{i:064x}", "events": [],
    }  # fmt: skip
    doc.update(over)
    return doc


@pytest.fixture
def app(pg_dsn: str, tmp_path: Path) -> Any:
    from web import create_app

    db = CentralDB(pg_dsn)
    db.migrate()
    token = db.add_station("st-1")
    db.close()
    cfg = config_mod.load(None).with_data_dir(tmp_path / "central").replace("central", dsn=pg_dsn)
    add_users(cfg.station.data_dir, stations=["st-1"])
    a = create_app(cfg, central=CentralSite(cfg), test_config={"TESTING": True})
    a.config["STATION_TOKEN"] = token
    # the station says hello first (no key file: it enrols none), as its sync always does
    assert _hello(a, "", "").status_code == 200
    return a


def _post(app: Any, clips: list[dict[str, Any]], key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {app.config['STATION_TOKEN']}"}
    if key is not None:
        headers[KEY_HEADER] = key
    return app.test_client().post("/api/fleet/v1/clips", json={"clips": clips}, headers=headers)


BAD = {
    "started_at not a time": {"started_at": "yesterday"},
    "ended_at not ISO 8601": {"ended_at": "12/01/2026 09:00:01"},
    "started_utc not a time": {"started_utc": "soon"},
    "event wall not a time": {"events": [{"kind": "scan", "text": "X", "wall": "noon"}]},
    "sha256 a path": {"sha256": "../../station-02/clips/" + "0" * 40},
    "size negative": {"size": -1},
    "duration not a number": {"duration_s": float("nan")},
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_clip_record_no_page_could_show_is_refused_and_the_pages_still_work(
    app: Any, case: str
) -> None:
    assert _post(app, [_clip(1)]).status_code == 200
    resp = _post(app, [_clip(2, order_id="PO-1", **BAD[case])])
    assert resp.status_code == 409, resp.get_data(as_text=True)
    assert "clip 2" in resp.get_json()["error"]
    c = app.test_client()
    login(c, "viewer")
    for url in ("/search?q=PO", "/api/clips?q=PO", "/orders/PO-1", "/api/orders/PO-1"):
        assert c.get(url).status_code == 200, url
    assert len(c.get("/api/clips?q=PO").get_json()["clips"]) == 1  # the good one only


def test_what_a_station_sends_passes_the_check() -> None:
    from central.db import check_clip

    check_clip(_clip(1))
    check_clip(_clip(1, started_utc="2026-12-01T01:00:01.000000Z", duration_s=3))
    check_clip(_clip(1, events=[{"kind": "scan", "wall": "2026-12-01T09:00:01.500+08:00"}]))
    check_clip(_clip(1, started_at="2026-12-01T09:00:01"))  # an older index's, no offset


def _hello(app: Any, fp: str, pem: str, token: str | None = None) -> Any:
    return app.test_client().post(
        "/api/fleet/v1/hello",
        json={"station": "st-1", "key_fingerprint": fp, "public_key": pem, "software": "t"},
        headers={"Authorization": f"Bearer {token or app.config['STATION_TOKEN']}"},
    )


def test_hello_never_swaps_the_enrolled_public_key_under_its_fingerprint(
    app: Any, pg_dsn: str
) -> None:
    """The key a station enrols with is the one its clips, checkpoints and manifests are
    checked with (witness, /verify). hello compared only the fingerprint the station wrote and
    then stored whatever public key came with it: a token holder (a thief with the SD card's
    config, a restored clone) sent the enrolled fingerprint with a key of its own, and the site
    held every later checkpoint and manifest to that key, with no rotation and no alarm."""
    from station.proof.keys import StationKey

    mine, thief = StationKey.generate(), StationKey.generate()
    pem, other_pem = mine.public_pem().decode(), thief.public_pem().decode()
    # a first hello whose key is not the fingerprint it names
    resp = _hello(app, mine.fingerprint, other_pem)
    assert resp.status_code == 409 and "fingerprint" in resp.get_json()["error"]
    assert _hello(app, mine.fingerprint, pem).status_code == 200
    resp = _hello(app, mine.fingerprint, other_pem)
    assert resp.status_code == 409 and "fingerprint" in resp.get_json()["error"]
    db = CentralDB(pg_dsn)
    try:
        st = db.station_for_token(app.config["STATION_TOKEN"])
        assert st is not None
        assert db.public_key(int(st["id"])) == pem
    finally:
        db.close()
    assert _hello(app, mine.fingerprint, pem).status_code == 200  # the station restarting
    assert _hello(app, mine.fingerprint, "").status_code == 200  # no key file (yet)


def _health(app: Any, doc: Any, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {app.config['STATION_TOKEN']}"}
    if key is not None:
        headers[KEY_HEADER] = key
    return app.test_client().post(
        "/api/fleet/v1/health", data=doc, content_type="application/json", headers=headers
    )


def test_a_long_health_report_is_kept_readable_and_a_broken_one_refused(
    app: Any, pg_dsn: str
) -> None:
    """The health post was cut at 64,000 characters of JSON text: a report longer than that
    (a long last error, the witness's answers in sync_failed) was no JSON, PostgreSQL refused
    it (a 500), and the station looked silent while it ran. Long texts are cut, so the report
    still lands; NaN (no JSON for PostgreSQL) is a 409 that says so."""
    import json

    long = {"state": "idle", "last_error": "E" * 100_000,
            "sync_failed": {"checkpoints": "w" * 70_000}, "disk_free_bytes": 5}  # fmt: skip
    assert _health(app, json.dumps(long)).status_code == 200
    db = CentralDB(pg_dsn)
    try:
        (row,) = db.stations_table()
        assert row["health"]["state"] == "idle" and row["health"]["disk_free_bytes"] == 5
        assert row["health"]["last_error"].startswith("EEEE") and row["health_utc"] is not None
    finally:
        db.close()
    many = {"state": "idle", **{f"k{i}": "x" * 3000 for i in range(60)}}
    assert _health(app, json.dumps(many)).status_code == 200
    resp = _health(app, '{"state": "idle", "disk_free_bytes": NaN}')
    assert resp.status_code == 409 and "health" in resp.get_json()["error"]


# (enrolled: hello said, enrolled key, the key the request names, writes) -> refused with
KEY_RULES = {
    "the enrolled station": (True, "SHA256:a", "SHA256:a", True, None),
    "its health": (True, "SHA256:a", "SHA256:a", False, None),
    "a twin's clips": (True, "SHA256:a", "SHA256:b", True, 403),
    "a twin's health": (True, "SHA256:a", "SHA256:b", False, 403),
    "a twin without a key": (True, "SHA256:a", "", False, 403),
    "clips before any hello": (False, None, "SHA256:a", True, 409),
    "clips of a key whose hello was refused": (True, None, "SHA256:b", True, 409),
    "health before the first hello enrols a key": (False, None, "SHA256:a", False, None),
    "a station without a key": (True, None, "", True, None),
    "an older station (no header), enrolled": (True, "SHA256:a", None, True, None),
    "an older station's clips before hello": (False, None, None, True, 409),
    # order-clips (other stations' clips of an order) is a read, held to the rule of health
    "a twin asking for an order's clips": (True, "SHA256:a", "SHA256:b", False, 403),
    "an older station asking for an order's clips": (True, "SHA256:a", None, False, None),
}


@pytest.mark.parametrize("case", list(KEY_RULES))
def test_the_key_rule_of_the_station_api(case: str) -> None:
    enrolled, key, said, writes, status = KEY_RULES[case]
    got = key_refusal("st-1", enrolled=enrolled, enrolled_key=key, said=said, writes=writes)
    assert (got and got[0]) == status, got
    if got is not None:
        assert "st-1" in got[1]


def test_a_second_machine_with_the_stations_token_is_refused_and_writes_nothing(
    app: Any, pg_dsn: str
) -> None:
    """A second Pi set up by mistake with a station's token (its own data dir: its own key)
    has its hello refused, but it posted its health to the first station's row anyway (and
    could send clips): the fleet page showed one station with the other's state. Every
    request but hello and a rotation names the key the station signs with; one that is not
    the enrolled key is refused (403, naming both), and clips before any hello (409)."""
    import json

    from station.proof.keys import StationKey

    mine, twin = StationKey.generate(), StationKey.generate()
    resp = _post(app, [_clip(1)], key=mine.fingerprint)  # the fixture's hello enrolled no key
    assert resp.status_code == 409 and "hello" in resp.get_json()["error"]
    assert _hello(app, mine.fingerprint, mine.public_pem().decode()).status_code == 200
    assert _post(app, [_clip(1)], key=mine.fingerprint).status_code == 200
    assert _health(app, json.dumps({"state": "recording"}), key=mine.fingerprint).status_code == 200

    assert _hello(app, twin.fingerprint, twin.public_pem().decode()).status_code == 409
    for key in (twin.fingerprint, ""):
        resp = _health(app, json.dumps({"state": "idle", "who": "twin"}), key=key)
        assert resp.status_code == 403, resp.get_data(as_text=True)
        error = resp.get_json()["error"]
        assert mine.fingerprint in error and "st-1" in error and "hello" in error, error
        resp = _post(app, [_clip(2)], key=key)
        assert resp.status_code == 403 and mine.fingerprint in resp.get_json()["error"]
    resp = app.test_client().post(
        "/api/fleet/v1/checkpoints", json={"checkpoints": []},
        headers={"Authorization": f"Bearer {app.config['STATION_TOKEN']}",
                 KEY_HEADER: twin.fingerprint},
    )  # fmt: skip
    assert resp.status_code == 403
    db = CentralDB(pg_dsn)
    try:
        (row,) = db.stations_table()
        assert row["health"] == {"state": "recording"}, row["health"]
        assert row["clips"] == 1
    finally:
        db.close()
    # an older station, which names no key, is taken as before once it said hello
    assert _health(app, json.dumps({"state": "idle"})).status_code == 200


def test_one_sha256_is_registered_under_a_few_rows_of_a_station_at_most(
    app: Any, pg_dsn: str
) -> None:
    """A station registered the same SHA-256 under thousands of local ids, and each upload of
    those bytes to the public /verify page read every row's archived manifest from the bucket.
    A recording logged twice (two rows, `clip-logged-twice`) still registers; past
    MAX_ROWS_PER_SHA256 rows of one station the batch is refused (409), saying so."""
    from central.db import MAX_ROWS_PER_SHA256

    same = "ab" * 32
    for i in range(1, MAX_ROWS_PER_SHA256 + 1):
        assert _post(app, [_clip(i, sha256=same)]).status_code == 200
    resp = _post(app, [_clip(50, sha256=same), _clip(51)])
    assert resp.status_code == 409, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert "clip 50" in error and same in error and str(MAX_ROWS_PER_SHA256) in error, error
    assert _post(app, [_clip(1, sha256=same)]).status_code == 200  # the same row again: fine
    db = CentralDB(pg_dsn)
    try:
        assert len(db.clips_by_sha256(same)) == MAX_ROWS_PER_SHA256
        assert db.clips_by_sha256(f"{51:064x}") == []  # the batch was refused whole
    finally:
        db.close()


def test_the_station_names_its_key_and_a_twin_with_its_token_posts_no_health(
    app: Any, pg_dsn: str, tmp_path: Path
) -> None:
    """Two stations' sync (one config copied to a second Pi: the same token, its own data dir
    and key) against the site over HTTP: the first enrols and reports; the twin's round fails
    at hello and at health, naming the enrolled key, and the first station's row keeps its
    own report."""
    import threading

    from werkzeug.serving import make_server

    from station.errors import StationError
    from station.fleet.central_sync import CentralSync
    from station.proof.keys import StationKey
    from station.proof.paths import ProofPaths

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        keys = []
        syncs = []
        for name in ("first", "twin"):
            cfg = config_mod.load(None).with_data_dir(tmp_path / name)
            cfg = cfg.replace("station", name="st-1").replace(
                "central", url=f"http://127.0.0.1:{server.server_port}",
                token=app.config["STATION_TOKEN"], timeout_s=10.0,
            )  # fmt: skip
            keys.append(StationKey.load_or_create(ProofPaths.from_config(cfg).key)[0])
            syncs.append(CentralSync(cfg))
        first, twin = syncs
        try:
            first.sync_once()
            with pytest.raises(StationError) as err:
                twin.sync_once()
            assert "hello" in str(err.value) and "health: /health: HTTP 403" in str(err.value)
            assert keys[0].fingerprint in str(err.value)
            first.sync_once()  # the first station is not troubled by its twin
        finally:
            for s in syncs:
                s.stop(timeout=0)
        row = _only_station(pg_dsn)
        assert row["key_fingerprint"] == keys[0].fingerprint
        assert row["health"]["sync_failed"] == {}, row["health"]
    finally:
        server.shutdown()
        thread.join()


def test_a_station_whose_key_is_made_after_its_hello_says_hello_again_before_it_sends(
    app: Any, pg_dsn: str, tmp_path: Path
) -> None:
    """A station that said hello without a key (none made yet) and then made one names the new
    key in its next round: the site has not enrolled it, so the station says hello again (which
    enrols it) before its clips, and the round goes through."""
    import threading

    from werkzeug.serving import make_server

    from station.fleet.central_sync import CentralSync
    from station.proof.keys import StationKey
    from station.proof.paths import ProofPaths

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = config_mod.load(None).with_data_dir(tmp_path / "st")
        cfg = cfg.replace("station", name="st-1").replace(
            "central", url=f"http://127.0.0.1:{server.server_port}",
            token=app.config["STATION_TOKEN"], timeout_s=10.0,
        )  # fmt: skip
        sync = CentralSync(cfg)
        try:
            sync.sync_once()  # no key yet
            key, created = StationKey.load_or_create(ProofPaths.from_config(cfg).key)
            assert created
            sync.sync_once()
        finally:
            sync.stop(timeout=0)
        row = _only_station(pg_dsn)
        assert row["key_fingerprint"] == key.fingerprint
        assert row["health"]["sync_failed"] == {}, row["health"]
    finally:
        server.shutdown()
        thread.join()


def _only_station(pg_dsn: str) -> dict[str, Any]:
    """The site's one station row (its enrolled key, its last health report)."""
    db = CentralDB(pg_dsn)
    try:
        (row,) = db.stations_table()
        return dict(row)
    finally:
        db.close()
