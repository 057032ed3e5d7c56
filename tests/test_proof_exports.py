"""The station's export worker: hostile request files, refusals, dedup, and the web's 503s."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import html
import io
import json
import logging
import os
import stat
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest_web import add_users, login
from helpers_crash_child import Steps, assert_every_step, crash_at_every_step, finish
from proof_support import Store, store, tsa_ec  # noqa: F401 (fixtures)

from station import config as config_mod
from station.proof.bundle import export_order
from station.proof.exports import (
    MAX_REQUEST_BYTES,
    ExportDirs,
    ExportRequestError,
    ExportWorker,
    bundle_key,
    parse_request,
)
from station.proof.log import ProofLog
from station.store.cursors import WITNESSED_CURSOR, SyncCursors
from station.store.ledger import Ledger
from station.store.retention import REASON_FLOOR, remove_clip_files
from web.bundles import BundleCache, BundleUnavailable


@pytest.fixture
def st(store: Store, tmp_path: Path) -> Store:  # noqa: F811
    s = store.copy(tmp_path / "data")
    add_users(s.data)
    return s


def _key(st: Store, order: str) -> str:
    ledger = Ledger.in_data_dir(st.data)
    try:
        return bundle_key(order, ledger.clips(order))
    finally:
        ledger.close()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe garbage", "not JSON"),
        (b'{"order_id": "A1"', "not JSON"),
        (b'["A1"]', "order_id"),
        (b'{"order_id": "A1", "path": "/etc/passwd"}', "order_id"),
        (b'{"order_id": 7}', "not a string"),
        (b'{"order_id": ""}', "refused"),
        (b'{"order_id": "A1\\n../x"}', "control"),
        (b'{"order_id": " A1"}', "normal form"),
        (json.dumps({"order_id": "x" * 600}).encode(), "too long"),
        (b" " * (MAX_REQUEST_BYTES + 1), "larger"),
    ],
)
def test_parse_request_refuses_what_is_not_one_order_id(raw: bytes, why: str) -> None:
    with pytest.raises(ExportRequestError, match=why):
        parse_request(raw)


def test_parse_request_keeps_unicode_order_ids() -> None:
    assert parse_request(json.dumps({"order_id": "订单-A//B"}).encode()) == "订单-A//B"


def test_hostile_requests_are_logged_and_dropped_and_the_worker_goes_on(
    st: Store, caplog: pytest.LogCaptureFixture
) -> None:
    worker = ExportWorker(st.cfg)
    req = worker.dirs.requests
    key_b2 = _key(st, "B2")
    k = "0" * 39
    (req / f"{k}1.json").write_text('{"order_id": "../../proof/station-key.pem"}')
    with (req / f"{k}2.json").open("wb") as huge:  # 50 MB (sparse): never read
        huge.truncate(50 << 20)
    (req / f"{k}3.json").write_text("{ garbage")
    (req / f"{k}4.json").symlink_to(st.data / "proof" / "station-key.pem")
    os.mkfifo(req / f"{k}5.json")  # opening must not block the worker
    (req / f"{k}6.json").mkdir()
    (req / "not-a-key.json").write_text('{"order_id": "B2"}')
    (req / f"{key_b2}.json").write_text('{"order_id": "B2"}')
    for i, p in enumerate(sorted(req.iterdir())):  # the valid one last
        t = time.time() - 100 + i + (50 if p.name.startswith(key_b2) else 0)
        os.utime(p, (t, t), follow_symlinks=False)
    before = (st.data / "proof" / "station-key.pem").read_bytes()
    with caplog.at_level(logging.WARNING, logger="station.proof.exports"):
        built = worker.run_once()
    assert built == 1
    assert list(req.iterdir()) == []
    assert (st.data / "proof" / "station-key.pem").read_bytes() == before
    text = caplog.text
    assert "unknown order '../../proof/station-key.pem' rejected" in text
    assert "request of 52428800 bytes" in text
    assert "not JSON" in text
    assert "symbolic link" in text
    assert text.count("not a regular file") == 2  # the FIFO and the directory
    assert "'not-a-key.json' rejected: bad file name" in text
    assert "BEGIN" not in text  # nothing of the key file reached the log
    exports = worker.dirs.exports
    assert json.loads((exports / f"{k}1.error").read_text())["status"] == 404
    assert json.loads((exports / f"{k}3.error").read_text())["status"] == 400
    assert (exports / f"{key_b2}.zip").stat().st_mode & 0o777 == 0o640
    names = sorted(p.name for p in exports.iterdir())
    assert not [n for n in names if n.endswith(".part")]


def test_a_refused_build_is_answered_and_a_fresh_bundle_is_not_rebuilt(st: Store) -> None:
    worker = ExportWorker(st.cfg)
    key = _key(st, "B2")
    for _ in range(2):
        worker.dirs.request(key).write_text('{"order_id": "B2"}')
        assert worker.run_once() in (0, 1)
    assert worker._builds and len(worker._builds) == 1  # the second request found the first
    small = ExportWorker(st.cfg.replace("web", bundle_cache_mb=1))
    key_a1 = _key(st, "A1")
    small.dirs.request(key_a1).write_text('{"order_id": "A1"}')
    assert small.run_once() == 0
    err = json.loads(small.dirs.error(key_a1).read_text())
    assert err["status"] == 507 and "larger than the download cache" in err["message"]


def test_a_bundle_has_its_mode_before_it_has_its_name(st: Store, monkeypatch) -> None:
    """The web may serve a bundle the moment it is renamed into place, and a crash just after
    the rename leaves it as it is: it is 0640 (the web's group reads, never writes) already
    then, under the station service's UMask=0007."""
    worker = ExportWorker(st.cfg)
    key = _key(st, "B2")
    at_rename = {}
    real = os.replace

    def replace(src: Path, dst: Path) -> None:
        at_rename[Path(dst).name] = stat.S_IMODE(os.stat(src).st_mode)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    worker.dirs.request(key).write_text('{"order_id": "B2"}')
    umask = os.umask(0o007)
    try:
        assert worker.run_once() == 1
    finally:
        os.umask(umask)
    assert at_rename[f"{key}.zip"] == 0o640
    assert stat.S_IMODE(worker.dirs.bundle(key).stat().st_mode) == 0o640


def test_the_worker_thread_survives_a_failing_pass(st: Store, monkeypatch, caplog) -> None:
    worker = ExportWorker(st.cfg, poll_s=0.02)
    calls = []

    def boom(path: Path) -> int:
        calls.append(path.name)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(worker, "handle", boom)
    key = _key(st, "B2")
    left = worker.dirs.exports / f"{key}.zip.part"  # a build a stopped station left behind
    left.write_bytes(b"PK")
    with caplog.at_level(logging.ERROR), worker:
        assert not left.exists()
        worker.dirs.request(key).write_text('{"order_id": "B2"}')
        deadline = time.monotonic() + 10
        while not worker.dirs.error(key).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker._threads[0].is_alive()
    assert calls and "disk on fire" in caplog.text
    assert json.loads(worker.dirs.error(key).read_text())["status"] == 500
    assert not (worker.dirs.exports / ".alive").exists()  # stopped: the web knows at once


def _client(st: Store, **bundles: object):
    from web import create_app

    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    if bundles:
        app.extensions["packcam"]["bundles"] = BundleCache(
            st.data, st.cfg.web.bundle_cache_mb << 20, **bundles
        )
    client = app.test_client()
    login(client, "viewer")
    ledger = Ledger.in_data_dir(st.data)
    (clip_id,) = [c.id for c in ledger.clips("B2")]
    ledger.close()
    return client, f"/clips/{clip_id}/bundle.zip"


def test_no_station_running_is_a_clear_503_and_no_request_is_left(st: Store) -> None:
    client, url = _client(st)
    resp = client.get(url)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "60"
    assert "not running" in resp.get_data(as_text=True)
    zh = client.get(url, headers={"Accept-Language": "zh-CN"})
    assert zh.status_code == 503 and "工位现在没有运行" in zh.get_data(as_text=True)
    assert not (st.data / "export-requests").exists() or not any(
        (st.data / "export-requests").iterdir()
    )


def test_a_slow_station_gives_503_then_the_bundle_with_one_request(st: Store) -> None:
    worker = ExportWorker(st.cfg)
    worker.beat()  # alive, but not building until run_once below
    client, url = _client(st, wait_s=0.3, poll_s=0.05)
    for _ in range(2):  # asked twice: still one request waiting
        resp = client.get(url)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "15"
        assert "still building" in resp.get_data(as_text=True)
    assert len(list(worker.dirs.requests.iterdir())) == 1
    assert worker.run_once() == 1
    resp = client.get(url)
    assert resp.status_code == 200 and resp.data[:2] == b"PK"
    resp.close()
    assert list(worker.dirs.requests.iterdir()) == []
    assert worker.run_once() == 0  # a cache hit asked for nothing


def test_the_station_refusal_reaches_the_client_at_once(st: Store) -> None:
    worker = ExportWorker(st.cfg)
    worker.beat()
    key = _key(st, "B2")
    worker._refuse(key, 409, "no signed log entries to export")
    client, url = _client(st, wait_s=5)
    t0 = time.monotonic()
    resp = client.get(url)
    assert resp.status_code == 409 and time.monotonic() - t0 < 2
    assert not any(worker.dirs.requests.iterdir())  # a fresh refusal is not asked again


def test_web_side_cache_refuses_without_a_station(tmp_path: Path) -> None:
    cache = BundleCache(tmp_path, 1 << 30)
    with pytest.raises(BundleUnavailable, match="not running") as info:
        cache.get("A1", [])
    assert info.value.station_down


def test_the_bundle_key_changes_with_the_clip_set(st: Store) -> None:
    ledger = Ledger.in_data_dir(st.data)
    clips = ledger.clips("A1")
    ledger.close()
    assert len(clips) == 2
    key = bundle_key("A1", clips)
    assert bundle_key("A1", list(reversed(clips))) == key  # order of listing does not matter
    assert bundle_key("A1", clips[:1]) != key  # a clip fewer (or more): another bundle
    changed = [clips[0], dataclasses.replace(clips[1], sha256="0" * 64)]
    assert bundle_key("A1", changed) != key
    assert bundle_key("B2", clips) != key


def test_a_request_for_a_changed_order_is_answered_and_built_under_the_new_key(st: Store) -> None:
    worker = ExportWorker(st.cfg)
    stale = "f" * 40  # what the site computed before a clip was added
    worker.dirs.request(stale).write_text('{"order_id": "B2"}')
    assert worker.run_once() == 1
    err = json.loads(worker.dirs.error(stale).read_text())
    assert err["status"] == 503 and "changed" in err["message"]
    assert worker.dirs.bundle(_key(st, "B2")).exists()
    assert not worker.dirs.bundle(stale).exists()


def test_a_busy_station_is_a_503_with_retry_after(st: Store) -> None:
    worker = ExportWorker(st.cfg)
    worker.beat()
    worker._refuse(_key(st, "B2"), 503, "too many evidence bundles asked for; try again later")
    client, url = _client(st, wait_s=5)
    resp = client.get(url)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "15"


def test_builds_are_rate_limited(st: Store) -> None:
    from station.proof.exports import BUILD_WINDOW_S, BUILDS_PER_WINDOW

    now = [time.time()]
    worker = ExportWorker(st.cfg, clock=lambda: now[0])
    worker._builds.extend([now[0]] * BUILDS_PER_WINDOW)
    key = _key(st, "B2")
    worker.dirs.request(key).write_text('{"order_id": "B2"}')
    assert worker.run_once() == 0
    err = json.loads(worker.dirs.error(key).read_text())
    assert err["status"] == 503 and "too many" in err["message"]
    now[0] += BUILD_WINDOW_S + 1  # the window has passed
    worker.dirs.request(key).write_text('{"order_id": "B2"}')
    assert worker.run_once() == 1


# ---- a crash at every step of a build --------------------------------------------------------


def _members(zip_path: Path) -> list[str]:
    """The members of a whole bundle, each matching its line in SHA256SUMS."""
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.testzip() is None
        sums = dict(
            reversed(line.split("  ", 1)) for line in zf.read("SHA256SUMS").decode().splitlines()
        )
        for name, digest in sums.items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == digest, name
        return sorted(zf.namelist())


def test_a_crash_at_any_step_of_a_build_leaves_no_half_bundle_and_no_leftover(
    tmp_path: Path,
) -> None:
    """The worker killed before each step of building a bundle: under the bundle's name there
    is the whole bundle or nothing, its bytes were synced before the rename (a power cut must
    not leave an empty file under the final name), and the next start removes the partial
    build and builds the bundle again."""
    work = tmp_path / "crash"
    finish(work / "template" / "data", Steps())
    steps = crash_at_every_step("export", work)
    cfg = config_mod.load(None).with_data_dir(work / "0" / "data")
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    clips = ledger.clips("PO-1")
    ledger.close()
    key = bundle_key("PO-1", clips)
    whole = _members(ExportDirs.in_data_dir(cfg.station.data_dir).bundle(key))
    renamed = steps.index(f"replace {key}.zip")
    assert f"fsync .{key}.zip.build.part" in steps[:renamed], steps  # built under another name

    def check(n: int, where: str) -> None:
        again = cfg.with_data_dir(work / str(n) / "data")
        dirs = ExportDirs.in_data_dir(again.station.data_dir)
        if dirs.bundle(key).exists():
            assert n > renamed + 1 and _members(dirs.bundle(key)) == whole, where
            assert stat.S_IMODE(dirs.bundle(key).stat().st_mode) == 0o640, where
        worker = ExportWorker(again)
        worker.start()
        worker.stop()
        assert not list(dirs.exports.glob("*.part")), where
        worker.build("PO-1", clips, key)
        assert _members(dirs.bundle(key)) == whole, where
        assert sorted(p.name for p in dirs.exports.iterdir()) == [f"{key}.zip"], where

    assert_every_step(steps, check)


def test_retention_deleting_a_clip_while_its_bundle_is_built_leaves_no_half_bundle(
    st: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention deletes one of order A1's two clips while the station builds the order's
    bundle: no bundle, no ``.part``, the web is answered at once; the next request is refused
    saying the clip was deleted by retention (and when), not "missing", which reads as lost or
    tampered evidence."""
    ledger = Ledger.in_data_dir(st.data)
    first = ledger.clips("A1")[0]
    write = zipfile.ZipFile.write

    def retention_strikes(zf: zipfile.ZipFile, src: Path, *args: object, **kw: object) -> None:
        if Path(src) == st.data / first.path and ledger.deletion_record(first.path) is None:
            ledger.mark_deleted(
                first.id, reason=REASON_FLOOR, record=b"{}", signature=None,
                key_fingerprint="", deleted_at=datetime(2027, 3, 1, 2, 0, tzinfo=UTC),
            )  # fmt: skip
            remove_clip_files(st.data, first.path, first.manifest_path)
        write(zf, src, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "write", retention_strikes)
    worker = ExportWorker(st.cfg)
    key = _key(st, "A1")
    worker.dirs.request(key).write_text('{"order_id": "A1"}')
    assert worker.run_once() == 0
    assert json.loads(worker.dirs.error(key).read_text())["status"] == 500
    assert [p.name for p in worker.dirs.exports.iterdir() if p.suffix in (".zip", ".part")] == []
    worker.dirs.request(key).write_text('{"order_id": "A1"}')
    assert worker.run_once() == 0
    err = json.loads(worker.dirs.error(key).read_text())
    assert err["status"] == 409 and "missing" not in err["message"]
    assert f"{first.path} was deleted by this station's retention on 2027-03-01" in err["message"]
    ledger.close()


def test_an_export_that_fails_half_way_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``packcam export`` writes where the user asked: a build cut short by a full disk must
    not leave a ``.part`` there (nothing sweeps the user's folder)."""
    cfg = config_mod.load(None).with_data_dir(tmp_path / "data")
    finish(cfg.station.data_dir, Steps())

    def full(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "write", full)
    out = tmp_path / "out" / "PO-1.zip"
    with pytest.raises(OSError, match="No space"):
        export_order(cfg, "PO-1", out)
    assert list(out.parent.iterdir()) == []


# ---- the export's warnings reach the seller, next to the download, never inside the bundle ----


def _seller(st: Store, cfg: config_mod.Config):
    from web import create_app

    app = create_app(cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    client = app.test_client()
    login(client, "viewer")
    ledger = Ledger.in_data_dir(st.data)
    (clip_id,) = [c.id for c in ledger.clips("B2")]
    ledger.close()
    return client, clip_id


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("en", "has not accepted any checkpoint of this station's log yet"),
        ("zh-CN", "中心站点（本工位日志的见证方）尚未接受本工位日志的任何检查点"),
    ],
)
def test_the_seller_is_told_what_the_export_warned_next_to_the_download(
    st: Store, lang: str, said: str
) -> None:
    """A station in a fleet whose witness has cosigned nothing of its log yet: `packcam export`
    warns that `verify --witness` will not pass this bundle now; so does the bundle page."""
    cfg = st.cfg.replace("central", enabled=True, url="https://central.invalid/", token="t" * 40)
    client, clip_id = _seller(st, cfg)
    head = {"Accept-Language": lang}
    order_page = client.get("/orders/B2", headers=head).get_data(as_text=True)
    assert f'href="/clips/{clip_id}/bundle"' in order_page
    with ExportWorker(cfg, poll_s=0.02):
        resp = client.get(f"/clips/{clip_id}/bundle", headers=head)
        page = html.unescape(resp.get_data(as_text=True))
        assert resp.status_code == 200, page[:500]
        assert said in page
        assert f'href="/clips/{clip_id}/bundle.zip"' in page  # the download, beside it
        with client.get(f"/clips/{clip_id}/bundle.zip") as resp:
            data = resp.data
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        inside = zf.read("bundle.json").decode()
    assert "witness" not in inside  # not evidence: the next sync may make it untrue


def test_a_bundle_without_warnings_downloads_at_once(st: Store) -> None:
    client, clip_id = _seller(st, st.cfg)  # not in a fleet: nothing to warn of
    with ExportWorker(st.cfg, poll_s=0.02):
        resp = client.get(f"/clips/{clip_id}/bundle")
        assert resp.status_code == 303
        assert resp.headers["Location"].endswith(f"/clips/{clip_id}/bundle.zip")
        with client.get(resp.headers["Location"]) as resp:
            assert resp.status_code == 200


def test_a_bundles_warnings_go_with_it(st: Store) -> None:
    cfg = st.cfg.replace("central", enabled=True, url="https://central.invalid/", token="t" * 40)
    worker = ExportWorker(cfg)
    key = _key(st, "B2")
    worker.dirs.request(key).write_text('{"order_id": "B2"}')
    assert worker.run_once() == 1
    notes = json.loads(worker.dirs.warnings(key).read_text())["notes"]
    assert [n["code"] for n in notes] == ["witness-behind"]
    worker.dirs.bundle(key).unlink()
    worker.sweep()
    assert not worker.dirs.warnings(key).exists()
    assert not [p for p in worker.dirs.exports.iterdir() if p.name != ".alive"]


def test_once_the_witness_catches_up_the_seller_is_not_told_it_is_behind(st: Store) -> None:
    """The seller opened the bundle page while the central witness had cosigned nothing of the
    log: the page says so and to download the bundle again after the next sync. That sync has
    the witness accept the checkpoint covering the order (the sync moves its cursor only then).
    Within the cached bundle's 10 minutes, downloading again must not give the cached bundle
    and its note again: the page goes straight to the download, a bundle the station built
    after the sync (another ETag), proved with the checkpoint the witness accepted."""
    cfg = st.cfg.replace("central", enabled=True, url="https://central.invalid/", token="t" * 40)
    client, clip_id = _seller(st, cfg)
    page_url, zip_url = f"/clips/{clip_id}/bundle", f"/clips/{clip_id}/bundle.zip"
    with ExportWorker(cfg, poll_s=0.02):
        resp = client.get(page_url)
        assert resp.status_code == 200
        assert "has not accepted any checkpoint" in html.unescape(resp.get_data(as_text=True))
        with client.get(zip_url) as resp:
            before = resp.headers["ETag"]
        ledger = Ledger.in_data_dir(st.data)
        try:
            (cp,) = ProofLog(ledger.db).checkpoints()[-1:]
            SyncCursors(ledger.db).set_cursor(WITNESSED_CURSOR, cp.id)  # what the sync does
        finally:
            ledger.close()
        resp = client.get(page_url)
        assert resp.status_code == 303, html.unescape(resp.get_data(as_text=True))[-2000:]
        assert resp.headers["Location"].endswith(zip_url)
        with client.get(zip_url) as resp:
            after, data = resp.headers["ETag"], resp.data
    assert after != before  # built after the sync, not the cached bundle of before
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("log/checkpoint.json") == cp.body
        assert "witness" not in zf.read("bundle.json").decode()


@pytest.mark.parametrize(
    ("lang", "said"),
    [
        ("en", "Send the central site's evidence bundle of this order instead."),
        ("zh-CN", "请改为发送中心站点生成的本订单证据包。"),
    ],
)
def test_an_order_in_a_closed_log_tells_the_seller_to_send_the_central_bundle(
    st: Store, lang: str, said: str
) -> None:
    from station.proof.bundle import CLOSED_LOG, WITNESS_BEHIND
    from web import create_app
    from web.clips import seller_note

    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    with app.test_request_context("/", headers={"Accept-Language": lang}):
        note = seller_note(CLOSED_LOG, {"key": "ab12", "entries": 7})
        assert note is not None and said in note and "ab12" in note and "7" in note
        behind = seller_note(WITNESS_BEHIND, {"accepted": 41})
        assert behind is not None and "41" in behind
        assert seller_note("a-code-from-a-newer-station", {}) is None  # its English is shown


def test_a_bundle_the_station_removes_as_the_site_opens_it_is_a_503_not_a_500(
    st: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The station's sweep removes the oldest bundle to make room just after the site found it
    fresh: the client is told to try again (which asks for it anew), not a server error."""
    client, url = _client(st)
    found = BundleCache.get

    def then_swept(self: BundleCache, order_id: str, clips: list, witness: str = "") -> Path:  # type: ignore[type-arg]
        path = found(self, order_id, clips, witness)
        path.unlink()
        return path

    monkeypatch.setattr(BundleCache, "get", then_swept)
    with ExportWorker(st.cfg, poll_s=0.02):
        resp = client.get(url)
    assert resp.status_code == 503, resp.get_data(as_text=True)[:300]
    assert resp.headers["Retry-After"] == "15"
