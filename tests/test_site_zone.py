"""With station.timezone empty, the sites show and filter times in the machine's own zone,
each instant with the offset it had then: a daylight-saving change moves no time by an hour."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest_web import WebEnv, index_clip, login, make_app

from station.runtime.localzone import machine_zone
from station.store.ledger import Ledger
from web.dashboard import pg_zone
from web.formatting import day_bounds_utc, fmt_site_dt, site_tz

CET, CEST = timezone(timedelta(hours=1)), timezone(timedelta(hours=2))


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine is in Berlin (the C library's zone as well), back as it was after."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_site_time_has_the_offset_of_its_own_season(berlin: None, web_env: WebEnv) -> None:
    assert web_env.cfg.station.timezone == ""
    with make_app(web_env).app_context():
        assert fmt_site_dt(datetime(2026, 1, 15, 12, 0, tzinfo=UTC)) == "2026-01-15 13:00:00 +01:00"
        assert fmt_site_dt("2026-07-15T12:00:00.000000Z") == "2026-07-15 14:00:00 +02:00"


@pytest.mark.parametrize(
    ("day", "start", "end"),
    [
        (date(2026, 3, 29), "2026-03-28T23:00:00.000000Z", "2026-03-29T22:00:00.000000Z"),
        (date(2026, 10, 25), "2026-10-24T22:00:00.000000Z", "2026-10-25T23:00:00.000000Z"),
    ],
)
def test_a_day_with_a_clock_change_is_23_or_25_hours(
    berlin: None, web_env: WebEnv, day: date, start: str, end: str
) -> None:
    assert day_bounds_utc(day, site_tz(web_env.cfg)) == (start, end)


@pytest.mark.parametrize(
    ("day", "before", "after"),
    [
        ("2026-03-29", CET, CEST),  # clocks go forward at 02:00: a 23-hour day
        ("2026-10-25", CEST, CET),  # and back at 03:00: a 25-hour day
    ],
)
def test_search_and_export_of_a_clock_change_day_cover_that_local_day(
    berlin: None, web_env: WebEnv, day: str, before: timezone, after: timezone
) -> None:
    """Clips half an hour inside each end of the day are found, and those half an hour
    outside are not, by the search page and by the export."""
    d = date.fromisoformat(day)
    starts = {
        "DST-EVE": datetime.combine(d - timedelta(days=1), datetime.min.time(), before)
        + timedelta(hours=23, minutes=30),
        "DST-FIRST": datetime.combine(d, datetime.min.time(), before) + timedelta(minutes=30),
        "DST-LAST": datetime.combine(d, datetime.min.time(), after)
        + timedelta(hours=23, minutes=30),
        "DST-MORROW": datetime.combine(d + timedelta(days=1), datetime.min.time(), after)
        + timedelta(minutes=30),
    }
    ledger = Ledger.in_data_dir(web_env.data_dir)
    try:
        for order, start in starts.items():
            index_clip(ledger, web_env.data_dir, web_env.file("plain"), order, start=start,
                       copy=False)  # fmt: skip
    finally:
        ledger.close()
    client = login(make_app(web_env).test_client(), "operator")
    page = client.get("/search", query_string={"from": day, "to": day}).get_data(as_text=True)
    assert {o for o in starts if o in page} == {"DST-FIRST", "DST-LAST"}
    csv = client.get("/export/orders.csv", query_string={"from": day, "to": day})
    assert csv.status_code == 200
    assert {o for o in starts if o in csv.get_data(as_text=True)} == {"DST-FIRST", "DST-LAST"}


@pytest.mark.parametrize(
    "tz", ["Europe/Berlin", ":Europe/Berlin", "/usr/share/zoneinfo/Europe/Berlin"]
)
def test_the_machine_zone_is_named_by_tz(tz: str, tmp_path: Path) -> None:
    zone = machine_zone({"TZ": tz}, tmp_path / "no-localtime")
    assert zone == ZoneInfo("Europe/Berlin")
    assert pg_zone(zone, datetime.now(UTC)) == "Europe/Berlin"  # the central's days, by name


@pytest.mark.parametrize(
    "target", ["/usr/share/zoneinfo/Europe/Berlin", "../zoneinfo/Europe/Berlin"]
)
def test_without_tz_the_machine_zone_is_where_etc_localtime_links(
    target: str, tmp_path: Path
) -> None:
    localtime = tmp_path / "localtime"
    localtime.symlink_to(target)
    assert machine_zone({}, localtime) == ZoneInfo("Europe/Berlin")


def test_a_copied_zone_file_gives_its_rules_and_no_zone_file_is_utc(tmp_path: Path) -> None:
    localtime = tmp_path / "localtime"
    shutil.copyfile("/usr/share/zoneinfo/Europe/Berlin", localtime)
    zone = machine_zone({}, localtime)
    winter, summer = (datetime(2026, m, 15, 12, tzinfo=UTC).astimezone(zone) for m in (1, 7))
    assert (winter.utcoffset(), summer.utcoffset()) == (timedelta(hours=1), timedelta(hours=2))
    assert machine_zone({}, tmp_path / "none") is UTC
    assert machine_zone({"TZ": ""}, localtime) is UTC  # as glibc reads an empty TZ


def test_a_tz_without_a_zone_is_todays_offset_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    rule = "PCT-3PCST,M3.5.0,M10.5.0/3"  # a POSIX rule: the C library reads it, zoneinfo not
    monkeypatch.setenv("TZ", rule)
    time.tzset()
    try:
        with caplog.at_level(logging.WARNING, "station.runtime.localzone"):
            zones = [machine_zone({"TZ": rule}, tmp_path / "none") for _ in range(2)]
        now = datetime.now().astimezone().utcoffset()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert [z.utcoffset(None) for z in zones] == [now, now]
    assert now in {timedelta(hours=3), timedelta(hours=4)}
    [record] = caplog.records
    assert rule in record.getMessage() and "station.timezone" in record.getMessage()
