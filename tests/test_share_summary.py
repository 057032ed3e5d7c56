"""The share link's one-page summary: both languages, and only what the verifier proved."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from conftest_web import FAST_PW, add_users, csrf_of, login
from proof_support import Store, build_store, store, tsa_ec  # noqa: F401 (fixtures)

from station.proof.ca import cert_fingerprint
from station.proof.tsa import load_pem_certs


def _app(st: Store):
    from flask.testing import FlaskClient

    from web import create_app

    class Buffered(FlaskClient):
        def open(self, *args, **kwargs):
            kwargs.setdefault("buffered", True)
            return super().open(*args, **kwargs)

    add_users(st.data)
    app = create_app(st.cfg, test_config={"TESTING": True, "PASSWORD_METHOD": FAST_PW})
    app.test_client_class = Buffered
    return app


def share_path(app, order_id: str) -> str:
    staff = login(app.test_client(), "viewer")
    resp = staff.post(
        "/shares", data={"order_id": order_id, "days": "7", "csrf_token": csrf_of(staff)}
    )
    assert resp.status_code == 302
    page = staff.get(resp.location).get_data(as_text=True)
    url = re.search(r'class="share-url" readonly value="([^"]+)"', page).group(1)
    return url.replace("http://localhost", "")


def summary_of(st: Store, order_id: str) -> tuple[str, str]:
    """(the summary page, its zh-CN part, its English part) for a fresh share of the order."""
    app = _app(st)
    path = share_path(app, order_id)
    anon = app.test_client()
    shared = anon.get(path).get_data(as_text=True)
    assert f'href="{path}/summary"' in shared  # the share page links it
    resp = anon.get(path + "/summary")
    assert resp.status_code == 200
    return resp.get_data(as_text=True), path


def parts(page: str) -> dict[str, str]:
    zh = re.search(
        r'<section class="summary-lang" lang="zh-CN">(.*?)</section>\s*<section', page, re.S
    )
    en = re.search(r'<section class="summary-lang" lang="en">(.*)</section>\s*</div>', page, re.S)
    assert zh and en
    return {"zh": zh.group(1), "en": en.group(1)}


def _tsa_fp(st: Store) -> str:
    return cert_fingerprint(load_pem_certs(st.tsa.root.read_bytes())[0])


def _ca_fp(st: Store) -> str:
    return cert_fingerprint(
        load_pem_certs((st.data / "proof-public/company-ca.crt").read_bytes())[0]
    )


def test_an_anchored_clip_is_summarised_in_both_languages(store: Store, tmp_path: Path) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    page, path = summary_of(st, "B2")
    p = parts(page)
    ca, tsa_root = _ca_fp(st), _tsa_fp(st)
    for lang, text in p.items():
        assert "B2" in text
        assert ca in text, lang  # the signer: certified by the company CA the site trusts
        assert tsa_root in text, lang  # the anchors the page was checked against
        assert 'class="summary-verdict verdict-authentic"' in text
        assert "RFC 3161" in text
    assert "Authentic: matches a recorded clip" in p["en"]
    assert "certified as “station-01” by the company CA" in p["en"]
    assert "a time-stamp authority this site trusts" in p["en"]
    assert "Station clock only" not in p["en"]
    # the start too: the TSA's time over the clip's start statement, in both languages
    assert re.search(r"Its start was timestamped too: .* start statement at \d{4}-", p["en"])
    assert "录像的开始也有时间戳" in p["zh"]
    assert "Its start has no timestamp" not in p["en"]
    assert "真实" in p["zh"] and "公司 CA" in p["zh"] and "时间戳" in p["zh"]
    assert "Authentic" not in p["zh"] and "certified" not in p["zh"]
    # the hash the station signed, the log entry and its checkpoint
    from station.store.ledger import Ledger

    ledger = Ledger.in_data_dir(st.data)
    (clip,) = ledger.clips("B2")
    ledger.close()
    assert clip.sha256 in p["en"] and clip.sha256 in p["zh"]
    assert re.search(
        r"Entry \d+ of the station's append-only log, covered by a checkpoint", p["en"]
    )
    # the print button, the key frames and the bundle link
    assert "data-print" in page and 'class="summary-frames"' in page
    assert f'href="{path}/bundle.zip"' in page
    assert re.search(rf'<img src="{re.escape(path)}/clips/\d+/keyframes/0.jpg"', page)


def test_the_summarys_own_times_are_in_the_site_zone(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """The time-stamp authority's time, the checkpoint's and when the page was made are
    shown in the site's zone (Beijing time here), with its offset, in both languages: the
    reviewer compares them with the recorded times above, not with UTC."""
    st = store.copy(tmp_path / "data")
    st = Store(st.cfg.replace("station", timezone="Asia/Shanghai"), st.data, st.tsa)
    page, _ = summary_of(st, "B2")
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    for lang, text in parts(page).items():
        for cls in ("claim-time", "claim-log"):
            claim = re.search(rf'class="{cls}">(.*?)</dd>', text, re.S)
            assert claim is not None and re.search(stamp + r"\+08:00", claim.group(1)), lang
            assert not re.search(stamp + r"\+00:00", claim.group(1)), lang
        made = re.search(r'class="summary-generated">(.*?)</p>', text, re.S)
        assert made is not None and re.search(stamp + r"\+08:00", made.group(1)), lang


def test_a_clip_without_a_timestamp_claims_the_station_clock_only(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    st = store.copy(tmp_path / "data")
    conn = sqlite3.connect(st.data / "index.sqlite3")
    with conn:
        conn.execute("DELETE FROM proof_timestamps")
    conn.close()
    page, _ = summary_of(st, "B2")
    p = parts(page)
    assert "Station clock only: no RFC 3161 timestamp." in p["en"]
    assert "RFC 3161 timestamp from" not in p["en"]
    assert "a time-stamp authority this site trusts." not in p["en"]
    assert "Authentic" not in p["en"] and "Intact, but not anchored" in p["en"]
    assert "verdict-authentic" not in page
    # the signer is still proven: the certificate chains to the configured CA
    assert "certified as “station-01” by the company CA" in p["en"]
    assert "仅工位时钟" in p["zh"] and "真实：" not in p["zh"]


def test_a_timestamp_from_an_untrusted_tsa_is_not_claimed(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """A token exists, but the site no longer pins its TSA root: station clock only."""
    st = store.copy(tmp_path / "data")
    st = Store(st.cfg.replace("proof", tsa_ca_path=""), st.data, st.tsa)
    p = parts(summary_of(st, "B2")[0])
    assert "Station clock only: a timestamp token from" in p["en"]
    assert "RFC 3161 timestamp from" not in p["en"]
    assert "Authentic" not in p["en"]


def test_a_clip_timestamped_late_is_intact_its_time_not_claimed(tmp_path: Path, tsa_ec) -> None:  # noqa: F811
    """The station was offline at the clip's end; the site's TSA saw the manifest an hour
    later (`time-late`): the page called it "Not authentic" (`time-out-of-bounds`); it is
    intact, the signer proven, the time the station clock's only (the token named, not in
    time)."""
    from datetime import timedelta

    st = build_store(tmp_path / "s", tsa_ec, ["L1"], ago=timedelta(hours=1))
    page = summary_of(st, "L1")[0]
    p = parts(page)
    assert "Intact, but not anchored" in p["en"] and "Not authentic" not in p["en"]
    assert "verdict-authentic" not in page and "RFC 3161 timestamp from" not in p["en"]
    # The token is from a TSA the site trusts: the page says so, and that it came late,
    # not that no trusted TSA vouches (which read as a token of unknown origin).
    assert "a time-stamp authority this site trusts" in p["en"] and "after the clip's" in p["en"]
    assert "no time-stamp authority this site trusts vouches" not in p["en"]
    assert "certified as “station-01” by the company CA" in p["en"]
    assert "仅工位时钟" in p["zh"] and "真实：" not in p["zh"] and "之后" in p["zh"]


def test_a_loose_token_just_before_the_end_is_not_said_to_be_late(tmp_path: Path) -> None:
    """The site's TSA states its time only to ± 2 h, and stamped the clip at once, the station
    clock 30 s ahead: genTime is 30 s *before* the recorded end. That places nothing within
    the bound (not anchored), but it was not seen "too long after the clip's recorded end":
    the page must not say so (it did, once the verdict stopped calling it forged)."""
    from datetime import timedelta

    from proof_support import TsaServer

    srv = TsaServer(tmp_path / "tsa", "ec")
    cnf = srv.dir / "tsa.cnf"
    cnf.write_text(cnf.read_text().replace("accuracy = secs:1", "accuracy = secs:7200"))
    try:
        st = build_store(tmp_path / "s", srv, ["L2"], ago=-timedelta(seconds=30))
        p = parts(summary_of(st, "L2")[0])
    finally:
        srv.stop()
    assert "Intact, but not anchored" in p["en"] and "Not authentic" not in p["en"]
    assert "RFC 3161 timestamp from" not in p["en"]  # no time claimed
    assert "after the clip's" not in p["en"] and "之后" not in p["zh"], p["en"]


def test_an_uncertified_key_is_not_called_certified(tmp_path: Path, tsa_ec) -> None:  # noqa: F811
    st = build_store(tmp_path / "s", tsa_ec, ["U1"], certify=False)
    p = parts(summary_of(st, "U1")[0])
    assert "certified as" not in p["en"]
    assert "It is not certified by a company CA this site trusts" in p["en"]
    assert "Authentic" not in p["en"] and "Intact, but not anchored" in p["en"]
    assert "RFC 3161 timestamp from" in p["en"]  # the time is still proven
    assert "未经本站信任的公司 CA 认证" in p["zh"]


def test_a_certificate_from_another_ca_is_not_claimed(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """The station's certificate stays, but the site's configured CA is another one."""
    from station.proof.ca import CompanyCa, pem

    st = store.copy(tmp_path / "data")
    other = CompanyCa.create(tmp_path / "other-ca", "Other Co CA")
    (st.data / "proof-public/company-ca.crt").write_bytes(pem(other.cert))
    p = parts(summary_of(st, "B2")[0])
    assert "certified as" not in p["en"]
    assert "Not authentic" in p["en"] and "cert-foreign-ca" in p["en"]
    assert "SHA-256 <code>" not in p["en"]  # a failed clip gets no claim at all


def test_a_replaced_clip_gets_no_claims(store: Store, tmp_path: Path) -> None:  # noqa: F811
    from station.store.ledger import Ledger

    st = store.copy(tmp_path / "data")
    ledger = Ledger.in_data_dir(st.data)
    (clip,) = ledger.clips("B2")
    ledger.close()
    f = st.data / clip.path
    data = bytearray(f.read_bytes())
    data[-100] ^= 0xFF
    f.write_bytes(bytes(data))
    p = parts(summary_of(st, "B2")[0])
    assert "Not authentic" in p["en"] and "Reasons:" in p["en"]
    assert clip.sha256 not in p["en"]
    assert "certified as" not in p["en"] and "RFC 3161 timestamp from" not in p["en"]


def test_the_summary_follows_the_link(store: Store, tmp_path: Path) -> None:  # noqa: F811
    st = store.copy(tmp_path / "data")
    app = _app(st)
    path = share_path(app, "A1")
    anon = app.test_client()
    resp = anon.get(path + "/summary")
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert text.count('class="summary-clip"') == 4  # two clips, two languages
    assert anon.get(path[:-4] + "abcd/summary").status_code == 404
    staff = login(app.test_client(), "viewer")
    page = staff.get("/orders/A1").get_data(as_text=True)
    share_id = re.search(r'action="/shares/([0-9a-f]+)/revoke"', page).group(1)
    staff.post(f"/shares/{share_id}/revoke", data={"csrf_token": csrf_of(staff)})
    assert anon.get(path + "/summary").status_code == 410


def _retain_all(st: Store) -> Store:
    """The real retention manager, disk reported full and no minimum age: every clip goes,
    each with its deletion record signed by the station key."""
    from station.proof.finalizer import build_finalizers, deletion_signer_of
    from station.store.ledger import Ledger
    from station.store.retention import DiskSpace, RetentionManager

    cfg = st.cfg.replace("retention", min_age_days=0.0)
    fins = build_finalizers(cfg)
    ledger = Ledger.in_data_dir(st.data)
    try:
        mgr = RetentionManager(
            cfg, ledger, probe=lambda: DiskSpace(0, 1 << 40), signer=deletion_signer_of(fins)
        )
        mgr.check()
        assert mgr.deleted == 3
    finally:
        ledger.close()
        for f in fins:
            f.close()
    assert not list(st.data.glob("clips/**/*.mp4"))
    return Store(cfg, st.data, st.tsa)


def test_a_clip_deleted_by_retention_is_not_verified_here_not_called_tampered(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Retention removed the order's clip (a signed deletion record: `packcam audit` passes):
    the summary cannot check it, so it says so; it does not call honest evidence forged."""
    from station.proof.verify import audit

    st = _retain_all(store.copy(tmp_path / "data"))
    assert audit(st.cfg, anchors=st.anchors(), check_timestamps=False).ok
    p = parts(summary_of(st, "B2")[0])
    assert "Not authentic" not in p["en"] and "verdict-tampered" not in p["en"]
    assert 'class="summary-verdict verdict-not-verified"' in p["en"]
    assert "could not be checked on this site" in p["en"]
    assert "clip-deleted-by-retention" in p["en"] and "clip-deleted-by-retention" in p["zh"]
    assert "未验证" in p["zh"] or "无法" in p["zh"]


def test_a_clip_gone_without_a_deletion_record_is_still_not_authentic(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    from station.store.ledger import Ledger

    st = store.copy(tmp_path / "data")
    ledger = Ledger.in_data_dir(st.data)
    (clip,) = ledger.clips("B2")
    ledger.close()
    (st.data / clip.path).unlink()
    p = parts(summary_of(st, "B2")[0])
    assert "Not authentic" in p["en"] and "clip-missing" in p["en"]


def test_a_clip_file_swapped_for_another_stations_clip_is_not_authentic(
    store: Store,  # noqa: F811
    tmp_path: Path,
    tsa_ec,  # noqa: F811
) -> None:
    """B2's file on disk is replaced by station-02's honest clip of another order (its C2PA
    manifest valid, certified by the same CA): the summary of B2 must not call it intact."""
    import shutil

    import pytest

    from station.proof.c2pa_embed import c2pa_available
    from station.proof.ca import CompanyCa
    from station.store.ledger import Ledger

    if not c2pa_available():
        pytest.skip("c2pa not installed")
    st = store.copy(tmp_path / "data")
    sib = build_store(
        tmp_path / "sib", tsa_ec, ["Z9"], ca=CompanyCa.load(store.data.parent / "ca"),
        station="station-02",
    )  # fmt: skip
    ledger = Ledger.in_data_dir(st.data)
    (clip,) = ledger.clips("B2")
    ledger.close()
    shutil.copyfile(next(sib.data.glob("clips/**/*.mp4")), st.data / clip.path)
    p = parts(summary_of(st, "B2")[0])
    assert "Not authentic" in p["en"] and "Intact" not in p["en"], p["en"]
    assert "Z9" not in p["en"]


def test_a_clip_file_swapped_for_another_order_of_this_station_is_not_authentic(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """B2's file on disk replaced by this station's (authentic) clip of order A1: B2's summary
    must not show it as B2's evidence."""
    import shutil

    from station.store.ledger import Ledger

    st = store.copy(tmp_path / "data")
    ledger = Ledger.in_data_dir(st.data)
    (b2,) = ledger.clips("B2")
    a1 = ledger.clips("A1")[0]
    ledger.close()
    shutil.copyfile(st.data / a1.path, st.data / b2.path)
    p = parts(summary_of(st, "B2")[0])
    assert "Not authentic" in p["en"] and "Authentic:" not in p["en"], p["en"]
    assert a1.sha256 not in p["en"]


def test_a_start_without_a_trusted_timestamp_is_called_the_stations_word(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The end is timestamped by a TSA the site trusts, the start's tokens are gone: the page
    claims the end's time and says the start is the station's word, never that it was
    timestamped (the verdict stays: a start token is not required, docs/proof.md)."""
    st = store.copy(tmp_path / "data")
    conn = sqlite3.connect(st.data / "index.sqlite3")
    with conn:
        gone = conn.execute("DELETE FROM proof_timestamps WHERE subject = 'start'").rowcount
    conn.close()
    assert gone
    p = parts(summary_of(st, "B2")[0])
    assert "RFC 3161 timestamp from" in p["en"]
    assert "Its start has no timestamp this site trusts" in p["en"]
    assert "Its start was timestamped" not in p["en"]
    assert "录像的开始没有本站信任的时间戳" in p["zh"]
