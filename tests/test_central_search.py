"""The central site's search on a real PostgreSQL: substrings in any case via pg_trgm."""

from __future__ import annotations

import pytest

from central import db as central_db_mod
from central import schema as schema_mod
from central.db import CentralDB
from central.site import CentralSite
from station.store.clips import ClipSearch
from web.index import SearchTimeout


def _clip(i: int, order: str, waybill: str | None) -> dict:
    t = f"2026-12-01T01:{i // 60:02d}:{i % 60:02d}Z"
    return {
        "id": i, "order_id": order, "waybill": waybill, "station": "s1",
        "started_at": t, "ended_at": t, "started_utc": t, "ended_utc": t, "tz": "+08:00",
        "duration_s": 1.0, "frame_count": 1, "finish_reason": "sealed", "pre_roll_s": 0.0,
        "path": f"clips/{i}.mp4", "manifest_path": "", "size": 1, "sha256": f"{i:064x}",
        "waybills": [{"waybill": waybill, "carrier": "SF", "t_clip_s": 0.0}] if waybill else [],
    }  # fmt: skip


@pytest.fixture
def central(pg_dsn: str):
    db = CentralDB(pg_dsn)
    db.migrate()
    token = db.add_station("s1")
    station = db.station_for_token(token)
    assert station is not None
    clips = [_clip(i, f"PO-{i:06d}", f"SF{1000000000000 + i}") for i in range(1, 301)]
    clips += [_clip(301, "订单-七号", None), _clip(302, "50%_off", "YT77_1")]
    db.register_clips(station["id"], "s1", clips)
    yield db
    db.close()


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("po-000123", {"PO-000123"}),
        ("000123", {"PO-000123"}),  # the last digits
        ("1000000000123", {"PO-000123"}),  # a waybill's digits without SF
        ("sf1000000000123", {"PO-000123"}),
        ("七号", {"订单-七号"}),
        ("%_o", {"50%_off"}),  # wildcards are plain characters
        ("7_1", {"50%_off"}),
        ("p", set()),  # one character: a prefix, in any case; page below
    ],
)
def test_central_search_matches_anywhere_in_any_case(central, q: str, expected: set) -> None:
    found = {c.order_id for c in central.search(ClipSearch(q, limit=500))}
    if q == "p":
        assert len(found) == 300
    else:
        assert found == expected


def test_common_and_rare_pieces_page_newest_first(central) -> None:
    page1 = central.search(ClipSearch("po", limit=10))
    page2 = central.search(ClipSearch("po", limit=10, offset=10))
    orders = [c.order_id for c in page1 + page2]
    assert orders == [f"PO-{i:06d}" for i in range(300, 280, -1)]
    assert [c.order_id for c in central.search(ClipSearch("o-000012", limit=50))] == ["PO-000012"]
    assert len(central.search(ClipSearch("po-0001", limit=500))) == 100
    assert [c.order_id for c in central.search(ClipSearch("PO-0000", limit=3, offset=2))] == [
        "PO-000097", "PO-000096", "PO-000095",
    ]  # fmt: skip


def test_central_search_timeout(central, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(central_db_mod, "SEARCH_TIMEOUT_S", 0.001)
    with pytest.raises(SearchTimeout):
        # pg_sleep stands in for a slow plan: the statement timeout must stop it
        central._timed("x", [("SELECT pg_sleep(1)", [])])
    calls = []

    def slow(conn) -> None:
        calls.append(1)
        with conn.transaction():
            conn.execute("SET LOCAL statement_timeout = '1ms'")
            conn.execute("SELECT pg_sleep(1)")

    with pytest.raises(central_db_mod.CentralError):
        central._run(slow)
    assert calls == [1]  # a timeout is not a lost connection: not run twice
    assert central.search(ClipSearch("po", limit=1))  # the connection is still usable


def site_client(pg_dsn: str, tmp_path, role: str):  # type: ignore[no-untyped-def]
    """A test client of the central site on ``pg_dsn``, logged in as ``role`` (in a station
    group with s1)."""
    from conftest_web import add_users, login

    from station import config as config_mod
    from web import create_app

    cfg = config_mod.load(None).with_data_dir(tmp_path / "central").replace("central", dsn=pg_dsn)
    add_users(cfg.station.data_dir, stations=["s1"])
    client = create_app(cfg, central=CentralSite(cfg), test_config={"TESTING": True}).test_client()
    return login(client, role)


def test_central_site_has_no_dead_ends(central, pg_dsn: str, tmp_path) -> None:
    """No bare 501 behind the evidence button, no live view asking about a data dir."""
    client = site_client(pg_dsn, tmp_path, "operator")
    page = client.get("/orders/PO-000123").get_data(as_text=True)
    assert "bundle.zip" in page  # streamed from the bucket (tests/test_fleet_bundles.py)
    assert 'href="/live"' not in page
    live = client.get("/live")
    assert live.status_code == 200 and 'id="live-central"' in live.get_data(as_text=True)
    clip_id = central.order("PO-000123")[0].id
    bundle = client.get(f"/clips/{clip_id}/bundle.zip")
    assert bundle.status_code == 503  # no [archive] bucket on this central site


def test_a_waybill_linked_after_signing_is_marked_in_the_central_search_results(
    central, pg_dsn: str, tmp_path
) -> None:
    """A waybill a station linked to a clip after signing it (``linked_utc``) is in no signed
    manifest: the central site's search results say so next to it, in the reader's language,
    and not next to the waybills the manifests signed."""
    (station,) = central._all("SELECT id FROM stations WHERE name = 's1'")
    late = _clip(303, "PO-LATE-1", "SF7700000001")
    late["waybills"].append(
        {"waybill": "YT8800000001", "carrier": "YT", "t_clip_s": 2.0,
         "linked_utc": "2026-12-01T02:00:00Z"}
    )  # fmt: skip
    central.register_clips(station["id"], "s1", [late, _clip(304, "PO-LATE-2", "SF7700000002")])
    client = site_client(pg_dsn, tmp_path, "viewer")
    for lang, mark in (("en", "not in the signed manifest"), ("zh-CN", "不在签名的记录中")):
        page = client.get("/search?q=PO-LATE", headers={"Accept-Language": lang})
        body = page.get_data(as_text=True).split("<tbody>", 1)[1].split("</tbody>", 1)[0]
        rows = body.split("<tr>")[1:]
        [one] = [r for r in rows if "PO-LATE-1" in r]
        [two] = [r for r in rows if "PO-LATE-2" in r]
        signed, after = one.split("YT8800000001", 1)
        assert "SF7700000001" in signed and mark not in signed, lang
        assert mark in after and "late-waybill" in after, lang
        assert "SF7700000002" in two and mark not in two and "late-waybill" not in two, lang


# ---- newest first in blocks of clip ids, against an exact oracle ----------------------------

_ALPHABET = "aAbBzZ019-%_É"
_BLOCK = 1 << central_db_mod.SEARCH_BLOCK_BITS


def _fold(text: str) -> str:
    """ILIKE on COLLATE "C" columns folds ASCII letters only."""
    return "".join(ch.lower() if ch.isascii() else ch for ch in text)


@pytest.fixture
def spread(pg_dsn: str):
    """Clips with ids spread over ~40 blocks (gaps between them), random order IDs and 0-2
    waybills each from a small alphabet (pieces repeat, some are dense in one stretch only)."""
    import random

    import psycopg

    db = CentralDB(pg_dsn)
    db.migrate()
    db.add_station("s1")
    db.add_station("s2")
    rnd = random.Random(12)
    ids = sorted(rnd.sample(range(1, 40 * _BLOCK), 500))
    rows: dict[int, tuple[str, str, list[str]]] = {}
    for n, i in enumerate(ids):
        # a stretch of old clips share "bz9" (common in older rows only)
        head = "bz9" if 150 <= n < 260 else ""
        order = head + "".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(2, 7)))
        waybills = ["".join(rnd.choice(_ALPHABET) for _ in range(rnd.randint(3, 9)))
                    for _ in range(rnd.choice((0, 1, 1, 2)))]  # fmt: skip
        rows[i] = (order, rnd.choice(("s1", "s2")), sorted(set(waybills)))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for i, (order, st, waybills) in rows.items():
            conn.execute(
                "INSERT INTO clips(id, station_id, local_id, order_id, station, started_at,"
                " ended_at, started_utc, ended_utc, tz, duration_s, frame_count, finish_reason,"
                " pre_roll_s, path, manifest_path, size, sha256) SELECT %s, s.id, %s, %s, %s,"
                " %s, %s, %s, %s, '+08:00', 1, 1, 'sealed', 0, 'p', 'm', 1, 'x'"
                " FROM stations s WHERE s.name = %s",
                (i, i, order, st, *["2026-12-01T00:00:00Z"] * 4, st),
            )
            for w in waybills:
                conn.execute(
                    "INSERT INTO clip_waybills(clip_id, waybill, carrier, t_clip_s)"
                    " VALUES (%s, %s, 'SF', 0)",
                    (i, w),
                )
        conn.execute("ANALYZE")
    yield db, rows
    db.close()


def _expected(rows, q: str, stations: list[str] | None) -> list[int]:
    want = _fold(q)
    return sorted(
        (i for i, (order, st, waybills) in rows.items()
         if (stations is None or st in stations)
         and any(want in _fold(t) for t in (order, *waybills))),
        reverse=True,
    )  # fmt: skip


def test_search_keys() -> None:
    from central.db import search_keys

    assert search_keys("Po") == ["po"]
    assert search_keys("o-0") == ["o-0"]  # any characters (pg_trgm found no trigram in it)
    assert search_keys("七号订单") == ["七号订单"]
    assert search_keys("ÉA%_") == ["Éa%_"]  # ASCII letters folded only, as ILIKE on "C" does
    assert search_keys("a%b_c") == ["%b_c", "a%b_"]
    # a long piece: its last KEY_CHARS characters' pieces of 4
    assert search_keys("SF7000001234567") == ["1234", "2345", "3456", "4567"]


def test_search_equals_a_plain_scan(spread, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step of the block walk (newest rows, first blocks, rare try, the rest) gives
    exactly the newest matches of a plain case-insensitive scan, pages and filters included."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    db, rows = spread
    texts = [t for order, _, waybills in rows.values() for t in (order, *waybills)]
    pieces = st.one_of(
        st.text(alphabet=_ALPHABET, min_size=2, max_size=4),
        st.builds(
            lambda t, a, k, up: (t[a : a + k].upper() if up else t[a : a + k]),
            st.sampled_from(texts), st.integers(0, 6), st.integers(2, 5), st.booleans(),
        ).filter(lambda s: len(s) >= 2),
        # "bz9A": its pieces are common, it matches in older rows only (O001 at 10 M rows)
        st.sampled_from(["bz9", "BZ", "z9", "qqq", "zq", "bz9A", "Z9-%", "É_1"]),
    )  # fmt: skip

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        q=pieces,
        limit=st.sampled_from([1, 5, 20]),
        offset=st.sampled_from([0, 3]),
        stations=st.sampled_from([None, ["s1"], ["s1", "s2"], []]),
        scan=st.sampled_from([0, 3, 50]),
        first=st.sampled_from([1, 2, 8]),
        rare_s=st.sampled_from([0.001, 2.0]),  # 1 ms: the rare try runs out, the walk goes on
        rare_rows=st.sampled_from([0, 10**9]),  # never / always tried as a rare piece
        key=st.sampled_from([4, 7]),  # 4: the index is asked for the last 4 characters only
    )
    def check(q, limit, offset, stations, scan, first, rare_s, rare_rows, key) -> None:
        monkeypatch.setattr(central_db_mod, "KEY_CHARS", key)
        monkeypatch.setattr(central_db_mod, "RARE_ROWS", rare_rows)
        monkeypatch.setattr(central_db_mod, "RARE_MIN_CHARS", 2)
        monkeypatch.setattr(central_db_mod, "NEWEST_SCAN", scan)
        monkeypatch.setattr(central_db_mod, "FIRST_BLOCKS", first)
        monkeypatch.setattr(central_db_mod, "RARE_TRY_S", rare_s)
        found = db.search(ClipSearch(q, limit=limit, offset=offset, stations=stations))
        got = [c.id for c in found]
        assert got == _expected(rows, q, stations)[offset : offset + limit], q

    check()


def test_station_filter_and_one_character(spread) -> None:
    db, rows = spread
    found = db.search(ClipSearch("a", limit=500, stations=["s2"]))
    assert found and {c.station for c in found} == {"s2"}
    assert [c.id for c in found] == sorted(
        (
            i
            for i, (o, st, wbs) in rows.items()
            if st == "s2" and any(t[:1] in ("a", "A") for t in (o, *wbs))
        ),
        reverse=True,
    )
    assert db.search(ClipSearch("a", limit=500, stations=[])) == []


def _register_before(db: CentralDB, pg_dsn: str, station_id: int) -> None:
    """PO-000001 and PO-000002 (waybills SF1, SF2) in a database of an older schema version:
    this code's register_clips writes columns of later versions, so the waybills by hand."""
    import psycopg

    clips = [_clip(i, f"PO-{i:06d}", f"SF{i}") for i in (1, 2)]
    db.register_clips(station_id, "s1", [{**c, "waybills": []} for c in clips])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO clip_waybills(clip_id, waybill, carrier, t_clip_s)"
            " SELECT id, waybill, 'SF', 0 FROM clips"
        )


def test_search_migration_builds_on_an_existing_database(pg_dsn: str) -> None:
    """The block indexes are built over clips already there; the old ones go."""
    import psycopg

    from central import schema

    upto = schema.MIGRATIONS.index(schema.SEARCH_BLOCKS)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert schema.migrate(conn, upto=upto) == upto
    db = CentralDB(pg_dsn)
    token = db.add_station("s1")
    station = db.station_for_token(token)
    assert station is not None
    _register_before(db, pg_dsn, station["id"])
    db.migrate()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
    assert set(schema.SEARCH_GRAMS_INDEXES) <= names
    assert not names & {"clips_order_trgm", "clips_order_bigrams", "clip_waybills_trgm",
                        "clips_search", "clip_waybills_search"}  # fmt: skip
    assert [c.order_id for c in db.search(ClipSearch("o-0", limit=5))] == ["PO-000002", "PO-000001"]
    assert [c.order_id for c in db.search(ClipSearch("sf1", limit=5))] == ["PO-000001"]
    db.close()


def _search_indexes(conn) -> dict[str, tuple[bool, str]]:
    return {
        name: (valid, definition)
        for name, valid, definition in conn.execute(
            "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY(%s)",
            (list(schema_mod.SEARCH_GRAMS_INDEXES),),
        )
    }


@pytest.mark.parametrize("build_first", [True, False])
def test_search_indexes_built_ahead_or_by_the_migration(pg_dsn: str, build_first: bool) -> None:
    """``build_search_indexes`` (CONCURRENTLY, beside a site of the previous version) leaves
    the migration nothing to build; an index an interrupted build left invalid is built again
    by either of them."""
    import argparse
    import io

    import psycopg

    from central.cli import cmd_central

    schema = schema_mod
    upto = schema.MIGRATIONS.index(schema.SEARCH_GRAMS)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert schema.migrate(conn, upto=upto) == upto
    db = CentralDB(pg_dsn)
    token = db.add_station("s1")
    station = db.station_for_token(token)
    assert station is not None
    _register_before(db, pg_dsn, station["id"])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # an interrupted CONCURRENTLY build: an invalid index under the name
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY clips_grams ON clips(station)")
        assert _search_indexes(conn)["clips_grams"][0] is False
        if build_first:  # `packcam central build-search-indexes`, then the upgrade
            out = io.StringIO()
            args = argparse.Namespace(central_command="build-search-indexes", dsn=pg_dsn)
            assert cmd_central(args, out=out) == 0
            assert "built: clips_grams, clip_waybills_grams" in out.getvalue()
            assert schema.build_search_indexes(conn) == []  # nothing left to build
            assert {"clips_search", "clip_waybills_search"} <= {
                r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")
            }  # the previous version's search keeps its indexes until the migration
    db.migrate()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        got = _search_indexes(conn)
    assert set(got) == set(schema.SEARCH_GRAMS_INDEXES)
    assert all(valid and "packcam_grams" in d for valid, d in got.values())
    assert [c.order_id for c in db.search(ClipSearch("O-0", limit=5))] == ["PO-000002", "PO-000001"]
    assert [c.order_id for c in db.search(ClipSearch("f1", limit=5))] == ["PO-000001"]
    db.close()


def test_build_search_indexes_needs_the_schema(pg_dsn: str) -> None:
    import psycopg

    with (
        psycopg.connect(pg_dsn, autocommit=True) as conn,  # an empty database
        pytest.raises(central_db_mod.CentralError, match="packcam central migrate"),
    ):
        schema_mod.build_search_indexes(conn)


def test_one_search_index_builder_and_the_migration_waits(pg_dsn: str) -> None:
    """While a builder runs (its advisory lock held) a second builder is refused and the
    migration waits for it, polling (a waiting lock would deadlock with CREATE INDEX
    CONCURRENTLY, which waits for every open snapshot)."""
    import threading

    import psycopg

    upto = schema_mod.MIGRATIONS.index(schema_mod.SEARCH_GRAMS)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        schema_mod.migrate(conn, upto=upto)
    done: list[int] = []
    with psycopg.connect(pg_dsn, autocommit=True) as builder:
        builder.execute("SELECT pg_advisory_lock(%s)", (schema_mod._BUILD_LOCK,))
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            with pytest.raises(central_db_mod.CentralError, match="is running"):
                schema_mod.build_search_indexes(conn)
            waiter = threading.Thread(target=lambda: done.append(schema_mod.migrate(conn)))
            waiter.start()
            waiter.join(2.5)
            assert waiter.is_alive() and not done  # waiting for the builder
            with psycopg.connect(pg_dsn, autocommit=True) as other:  # nothing migrated yet
                assert schema_mod.current_version(other) == upto
            builder.execute("SELECT pg_advisory_unlock(%s)", (schema_mod._BUILD_LOCK,))
            waiter.join(30)
    assert done == [len(schema_mod.MIGRATIONS)]


def test_a_clip_not_uploaded_yet_is_not_called_missing(central, pg_dsn: str, tmp_path) -> None:
    """The central site knows a clip (its station synced the row) before the station has
    uploaded its video: the seller reads that it is on its way, not that it is missing."""
    client = site_client(pg_dsn, tmp_path, "viewer")
    for lang, want in (("en", "has not reached this site yet"), ("zh-CN", "尚未上传到本站")):
        page = client.get("/orders/PO-000123", headers={"Accept-Language": lang})
        text = page.get_data(as_text=True)
        assert want in text
        assert '<p class="flash error">' not in text.split('id="clip-')[1]


def test_download_of_a_clip_not_uploaded_yet_says_it_is_on_its_way(
    central, pg_dsn: str, tmp_path
) -> None:
    """'Download original' of a clip whose video its station has not uploaded yet: the
    site's page saying it is on its way (404: not here yet; the player reads 404 the same
    way), in the reader's language, not 'there is nothing here'."""
    client = site_client(pg_dsn, tmp_path, "viewer")
    clip = central.order("PO-000123")[0]
    for lang, want in (("en", "has not reached this site yet"), ("zh-CN", "尚未上传到本站")):
        resp = client.get(f"/clips/{clip.id}/download", headers={"Accept-Language": lang})
        assert resp.status_code == 404
        text = resp.get_data(as_text=True)
        assert want in text
        assert "There is nothing here" not in text
