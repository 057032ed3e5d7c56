"""An order one of whose clips retention deleted: a bundle of the rest with the signed record."""

from __future__ import annotations

import html
import io
import json
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest_web import add_users
from proof_support import (  # noqa: F401 (fixtures)
    Store,
    bundle_index,
    read_zip,
    resign_bundle,
    store,
    tsa_ec,
)
from test_proof_kit import _kit, _pins
from test_proof_rotation import _issue_next
from test_share_summary import parts, summary_of

from station import cli as station_cli
from station.proof import rotation
from station.proof.bundle import export_order
from station.proof.canonical import canonical_json
from station.proof.exports import ExportWorker, bundle_key
from station.proof.finalizer import build_finalizers, deletion_signer_of
from station.proof.keys import StationKey
from station.proof.verify import AUTHENTIC, EXIT_PARTIAL, TAMPERED, Report, verify_bundle
from station.store.ledger import ClipRecord, Ledger
from station.store.retention import DiskSpace, Policy, RetentionManager
from web import create_app


@pytest.fixture(scope="module")
def deleted_when(store: Store) -> datetime:  # noqa: F811
    """When retention deleted order A1's first clip in these tests: after the store's clips
    were recorded (minutes before it was built), before now, as on a station; a record dated
    after the verification is refused (test_a_future_dated_deletion_record_is_refused)."""
    return datetime.now(UTC).replace(microsecond=0)


def day(when: datetime, fmt: str = "%Y-%m-%d") -> str:
    """``when`` as the verifiers, pages and messages print it (UTC)."""
    return when.astimezone(UTC).strftime(fmt)


def retain_oldest(st: Store, when: datetime, order: str = "A1") -> ClipRecord:
    """The real retention manager, free space one byte below the floor and no minimum age:
    it deletes the oldest clip (``order``'s first) at ``when`` with a record signed by the
    station key."""
    cfg = st.cfg.replace("retention", min_age_days=0.0)
    ledger = Ledger.in_data_dir(st.data)
    fins = build_finalizers(cfg)
    total = 1 << 40
    floor = Policy.from_config(cfg.retention, archiving=False).floor(total)
    try:
        first = ledger.clips(order)[0]
        mgr = RetentionManager(
            cfg,
            ledger,
            # the first deletion frees the byte that was missing
            probe=lambda: DiskSpace(floor - (st.data / first.path).exists(), total),
            signer=deletion_signer_of(fins),
            now=lambda: when,
        )
        mgr.check()
        assert mgr.deleted == 1
        assert ledger.deletion_record(first.path) is not None
    finally:
        ledger.close()
        for f in fins:
            f.close()
    assert not (st.data / first.path).exists()
    return first


@pytest.fixture(scope="module")
def partial(
    store: Store,  # noqa: F811
    deleted_when: datetime,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Store, Path, ClipRecord]:
    """Order A1's first clip deleted by retention, the second kept; the order exported."""
    st = store.copy(tmp_path_factory.mktemp("partial") / "data")
    first = retain_oldest(st, deleted_when)
    out = export_order(st.cfg, "A1", st.data.parent / "A1.zip")
    assert out.clips == 1
    assert any("deleted by this station's retention" in w for w in out.warnings), out.warnings
    return st, out.path, first


def _deleted_lines(report: Report) -> list[str]:
    return [c.reason for c in report.checks if c.code == "clip-deleted-by-retention"]


def test_the_export_holds_the_remaining_clip_and_the_signed_deletion_record(
    partial: tuple[Store, Path, ClipRecord],
    deleted_when: datetime,
) -> None:
    st, path, first = partial
    index = bundle_index(path)
    with closing(Ledger.in_data_dir(st.data)) as ledger:
        kept = [Path(r.path).name for r in ledger.clips("A1")[1:]]
    assert [Path(c["clip"]).name for c in index["clips"]] == kept
    (gone,) = index["deleted_clips"]
    assert gone["clip"] == f"clips/{Path(first.path).name}"
    names = set(json.loads(read_zip(path, "bundle/manifest.json"))["members"])
    assert f"clips/{Path(first.path).name}" not in names
    record = json.loads(read_zip(path, gone["deletion_record"]))
    assert record["sha256"] == first.sha256 and record["deleted_utc"].startswith(
        day(deleted_when, "%Y-%m-%dT%H:%M:%S")
    )
    assert "This bundle is partial" in read_zip(path, "VERIFY.md").decode()
    assert (
        f"已被工位的保留策略于 {day(deleted_when, '%Y-%m-%d %H:%M:%S')} UTC 删除"
        in read_zip(path, "summary.html").decode()
    )


def test_packcam_verify_gives_the_remaining_clip_its_verdict_and_names_the_deletion(
    partial: tuple[Store, Path, ClipRecord],
    deleted_when: datetime,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    st, path, first = partial
    report = verify_bundle(path, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC and report.exit_code == EXIT_PARTIAL, report.lines()
    (line,) = _deleted_lines(report)
    start = first.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f"clip 1 of this order ({start}–" in line
    assert first.sha256 in line and day(deleted_when, "%Y-%m-%d %H:%M") in line
    assert "by its own signed record" in line
    assert report.facts["deleted_clips"][0]["sha256"] == first.sha256
    assert report.partial
    # the label does not read as the whole order's recording
    assert "PARTIAL" in report.summary() and "FOR 1 OF THIS ORDER'S 2 CLIPS" in report.summary()
    assert "order-incomplete" not in report.reasons()
    rc = station_cli.main(["verify", str(path), *_pins(st), "--no-default-trust"])
    out = capsys.readouterr().out
    assert rc == EXIT_PARTIAL
    assert f"deleted by the station's retention on {day(deleted_when)}" in out
    assert "PARTIAL" in out.splitlines()[-1]
    # a partial bundle never exits 0 (a script checking for 0 would take it for the whole
    # order), in --json too; unanchored it stays 4
    assert rc != 0 and report.to_json()["exit_code"] == EXIT_PARTIAL
    rc = station_cli.main(["verify", str(path), "--no-default-trust"])
    assert rc == 4 and "INTACT BUT NOT ANCHORED FOR 1 OF THIS ORDER'S 2 CLIPS" in (
        capsys.readouterr().out
    )


def test_the_strangers_verifier_reports_the_deletion_and_a_partial_result(
    partial: tuple[Store, Path, ClipRecord],
    deleted_when: datetime,
    tmp_path: Path,
) -> None:
    st, path, first = partial
    rc, out = _kit(path, tmp_path, *_pins(st))
    assert rc == EXIT_PARTIAL, out
    assert "FAIL" not in out
    assert f"deleted by the station's retention on {day(deleted_when)}" in out
    assert first.sha256 in out
    assert "RESULT: AUTHENTIC FOR 1 OF THIS ORDER'S 2 CLIPS (PARTIAL" in out, out


def _forged(partial: tuple[Store, Path, ClipRecord], tmp: Path, what: str) -> Path:
    """The bundle with its deletion record changed by the station key's holder (who can sign
    the bundle manifest again): signed by another key, unsigned, for another clip, or one
    saying the clip went younger than its own minimum age."""
    st, path, _ = partial
    (gone,) = bundle_index(path)["deleted_clips"]
    record = read_zip(path, gone["deletion_record"])
    key = StationKey.load(st.data / "proof/station-key.pem")
    changes: dict[str, bytes | None] = {}
    if what == "other-key":
        changes[gone["deletion_signature"]] = StationKey.generate().sign(record)
    elif what == "unsigned":
        changes[gone["deletion_signature"]] = b""
    elif what == "other-clip":
        with closing(Ledger.in_data_dir(st.data)) as ledger:
            other = ledger.clips("B2")[0]
        body = json.loads(record)
        body.update(sha256=other.sha256, path=other.path)
        forged = canonical_json(body)
        changes[gone["deletion_record"]] = forged
        changes[gone["deletion_signature"]] = key.sign(forged)
    elif what == "too-young":  # deleted sooner than the record's own age rule allowed
        body = json.loads(record)
        body["min_age_days"] = 1000
        forged = canonical_json(body)
        changes[gone["deletion_record"]] = forged
        changes[gone["deletion_signature"]] = key.sign(forged)
    elif what == "dropped":  # the record and the deleted clip's entry left out: a silent gap
        index = bundle_index(path)
        del index["deleted_clips"]
        changes["bundle.json"] = json.dumps(index).encode()
        for name in gone.values():
            if isinstance(name, str) and name != gone["clip"]:
                changes[name] = None
    return resign_bundle(path, tmp / f"{what}.zip", key, changes)


@pytest.mark.parametrize("what", ["other-key", "unsigned", "other-clip", "too-young"])
def test_a_deletion_record_that_is_not_the_stations_for_that_clip_is_not_accepted(
    partial: tuple[Store, Path, ClipRecord], tmp_path: Path, what: str
) -> None:
    st = partial[0]
    bad = _forged(partial, tmp_path, what)
    report = verify_bundle(bad, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED, report.lines()
    assert {"deletion-record-invalid", "order-incomplete"} <= report.codes(), report.lines()
    assert not _deleted_lines(report)
    rc, out = _kit(bad, tmp_path, *_pins(st))
    assert rc == 1 and "deletion-record-invalid" in out and "order-incomplete" in out, out


def test_a_bundle_that_silently_leaves_the_deleted_clip_out_still_fails(
    partial: tuple[Store, Path, ClipRecord], tmp_path: Path
) -> None:
    st = partial[0]
    bad = _forged(partial, tmp_path, "dropped")
    report = verify_bundle(bad, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED and "order-incomplete" in report.codes(), report.lines()
    rc, out = _kit(bad, tmp_path, *_pins(st))
    assert rc == 1 and "order-incomplete" in out, out


def test_an_unsigned_deletion_record_still_refuses_the_export(
    store: Store,  # noqa: F811
    deleted_when: datetime,
    tmp_path: Path,
) -> None:
    """Retention with proofs off leaves no signature: nothing could vouch for the gap."""
    st = store.copy(tmp_path / "data")
    ledger = Ledger.in_data_dir(st.data)
    first = ledger.clips("A1")[0]
    ledger.mark_deleted(
        first.id, reason="free space below the floor", record=b"{}", signature=None,
        key_fingerprint="", deleted_at=deleted_when,
    )  # fmt: skip
    ledger.close()
    (st.data / first.path).unlink()
    said = f"deleted by this station's retention on {day(deleted_when)}"
    with pytest.raises(Exception, match=said):
        export_order(st.cfg, "A1", tmp_path / "A1.zip")


def test_the_webs_download_of_such_an_order_is_built(
    partial: tuple[Store, Path, ClipRecord], tmp_path: Path
) -> None:
    st = Store(partial[0].cfg, partial[0].data, partial[0].tsa).copy(tmp_path / "data")
    add_users(st.data)
    ledger = Ledger.in_data_dir(st.data)
    key = bundle_key("A1", ledger.clips("A1"))
    ledger.close()
    worker = ExportWorker(st.cfg)
    worker.dirs.request(key).write_text('{"order_id": "A1"}')
    assert worker.run_once() == 1
    assert not worker.dirs.error(key).exists()
    report = verify_bundle(worker.dirs.bundle(key), anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC and report.partial, report.lines()


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("en", ["partial: 1 of this order's 2 clips are in this bundle",
                "Clip 1 of this order (", "was deleted by the station's retention on {day}",
                "by its own signed record", "the seller's own statement"]),
        ("zh-CN", ["不完整：本订单共 2 段视频，本证据包只含 1 段", "本订单第 1 段视频（",
                   "被工位的保留策略删除，依据工位自己签名的删除记录", "卖家工位自己的声明"]),
    ],
)  # fmt: skip
def test_the_verify_page_names_the_deleted_clip_in_both_languages(
    partial: tuple[Store, Path, ClipRecord],
    deleted_when: datetime,
    tmp_path: Path,
    lang: str,
    words: list[str],
) -> None:
    st, path, first = partial
    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    client = app.test_client()
    head = {"Accept-Language": lang}
    assert client.get("/verify", headers=head).status_code == 200
    with client.session_transaction() as sess:
        token = sess.get("csrf")
    resp = client.post(
        "/verify",
        data={"csrf_token": token, "file": (io.BytesIO(path.read_bytes()), "A1.zip")},
        headers=head,
    )
    body = html.unescape(resp.get_data(as_text=True))
    assert resp.status_code == 200, body
    for w in words:
        assert w.format(day=day(deleted_when)) in body, (w, body[-4000:])
    assert first.sha256 in body


def test_the_share_summary_dates_the_deleted_clip_in_both_languages(
    partial: tuple[Store, Path, ClipRecord], deleted_when: datetime, tmp_path: Path
) -> None:
    """The order's summary (the station's own clips, not a bundle): the clip left keeps its
    claims, the deleted one is named with its date, and the order is not called verified."""
    st, _, first = partial
    st = st.copy(tmp_path / "data")
    p = {k: html.unescape(v) for k, v in parts(summary_of(st, "A1")[0]).items()}
    assert "verdict-authentic" not in p["en"] and "verdict-tampered" not in p["en"]
    assert "Clip 1 of this order (" in p["en"] and first.sha256 in p["en"]
    assert f"was deleted by the station's retention on {day(deleted_when)}" in p["en"]
    assert "本订单第 1 段视频（" in p["zh"] and "被工位的保留策略删除" in p["zh"]
    assert "The file is the one the station hashed and signed" in p["en"]  # the clip left


def test_the_share_summary_refuses_a_deletion_record_dated_next_month(
    store: Store,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The station's own deletion record dated a month after the moment the summary is read:
    the summary holds it to the verifiers' rule (the same function), so the clip is missing,
    not "deleted by retention", and the order is not called partial; `packcam audit` too."""
    from station.proof.verify import audit

    st = store.copy(tmp_path / "data")
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    first = retain_oldest(st, when)
    p = {k: html.unescape(v) for k, v in parts(summary_of(st, "A1")[0]).items()}
    assert "was deleted by the station's retention" not in p["en"], p["en"]
    assert "被工位的保留策略删除" not in p["zh"], p["zh"]
    assert "clip-deleted-by-retention" not in p["en"]
    assert "Not authentic" in p["en"] and "clip-missing" in p["en"], p["en"]
    report = audit(st.cfg, anchors=st.anchors(), check_timestamps=False)
    (missing,) = [c for c in report.checks if c.code == "clip-missing"]
    assert missing.name == f"clip {first.path}", missing
    assert f"dated {day(when, '%Y-%m-%d %H:%M')} UTC, after this verification" in missing.reason


ROTATIONS = {
    "rotated before the deletion": ("rotate", "delete"),
    "rotated after the deletion": ("delete", "rotate"),
    "rotated before and after the deletion": ("rotate", "delete", "rotate"),
}


def _rotated_partial(base: Store, root: Path, steps: tuple[str, ...]) -> tuple[Store, Path]:
    """Order A1 (in the first key's log) with its first clip deleted by the real retention
    manager, the station key rotated (`packcam keys rotate`, certified by the company CA,
    the retired key kept to play the thief) around the deletion as ``steps`` say; exported."""
    st = base.copy(root / "data")
    for n, step in enumerate(steps):
        if step == "rotate":
            cert = _issue_next(st, root / f"issued-{n}", base.data.parent / "ca")
            assert rotation.rotate(st.cfg, cert=cert, keep_old_key=True).certified
        else:  # a minute after the clip ended: before any later rotation, as on a station
            retain_oldest(st, datetime.now(UTC))
    out = export_order(st.cfg, "A1", root / "A1.zip")
    assert out.clips == 1 and bundle_index(out.path)["deleted_clips"], out.warnings
    return st, out.path


@pytest.mark.parametrize("steps", list(ROTATIONS.values()), ids=list(ROTATIONS))
def test_a_deletion_record_signed_around_a_key_rotation_is_accepted(
    store: Store,  # noqa: F811
    tmp_path: Path,
    steps: tuple[str, ...],
) -> None:
    """An honest seller who rotated the station key: the record is signed by whichever key
    was the station's when retention ran, a key the bundle's rotation chain vouches for."""
    st, path = _rotated_partial(store, tmp_path, steps)
    report = verify_bundle(path, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC and report.partial, report.lines()
    assert len(_deleted_lines(report)) == 1 and "deletion-record-invalid" not in report.codes()
    rc, out = _kit(path, tmp_path, *_pins(st))
    assert (
        rc == EXIT_PARTIAL and "RESULT: AUTHENTIC FOR 1 OF THIS ORDER'S 2 CLIPS (PARTIAL" in out
    ), out
    assert "FAIL" not in out


def _resigned_record(st: Store, path: Path, tmp: Path, key: StationKey, when: datetime) -> Path:
    """The bundle with its deletion record dated ``when`` and signed by ``key`` (the bundle
    manifest signed again by the station key's holder)."""
    (gone,) = bundle_index(path)["deleted_clips"]
    body = json.loads(read_zip(path, gone["deletion_record"]))
    body["deleted_utc"] = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    record = canonical_json(body)
    changes: dict[str, bytes | None] = {
        gone["deletion_record"]: record,
        gone["deletion_signature"]: key.sign(record),
    }
    current = StationKey.load(st.data / "proof/station-key.pem")
    return resign_bundle(path, tmp / "forged.zip", current, changes)


@pytest.mark.parametrize("signer", [0, 1, None], ids=["first key", "middle key", "no key"])
def test_a_deletion_record_of_a_key_the_chain_does_not_vouch_for_then_is_refused(
    store: Store,  # noqa: F811
    tmp_path: Path,
    signer: int | None,
) -> None:
    """The thief who kept a retired key (the log's own, or the one between two rotations)
    signs a record dated after that key's rotation, or anyone signs one with a key of their
    own: a retired key counts only for what it signed while it was the station's."""
    st, path = _rotated_partial(store, tmp_path, ("rotate", "delete", "rotate"))
    kept = sorted((st.data / "proof" / rotation.RETIRED_DIR).glob("*.pem"))
    retired = [StationKey.load(k) for k in kept]
    rots = [json.loads(read_zip(path, r["checkpoint"])) for r in bundle_index(path)["rotations"]]
    if signer is not None:  # rotation statement `signer` retired this key
        key = next(k for k in retired if k.fingerprint == rots[signer]["key"])
        when = datetime.fromisoformat(rots[signer]["time"]) + timedelta(minutes=5)
    else:
        key, when = StationKey.generate(), datetime.now(UTC)
    bad = _resigned_record(st, path, tmp_path, key, when)
    report = verify_bundle(bad, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == TAMPERED, report.lines()
    assert {"deletion-record-invalid", "order-incomplete"} <= report.codes(), report.lines()
    rc, out = _kit(bad, tmp_path, *_pins(st))
    assert rc == 1 and "deletion-record-invalid" in out and "order-incomplete" in out, out


# ---- why an order's bundle cannot be built: said to the seller and to a share link's holder ----


def _refused_order(st: Store, what: str, when: datetime) -> None:
    """Order A1 (two clips) as the station can no longer bundle it: one clip deleted by
    retention with no signed record (proofs were off then), or every clip deleted by it."""
    ledger = Ledger.in_data_dir(st.data)
    try:
        clips = ledger.clips("A1")
        gone = clips[:1] if what == "deleted-unsigned" else clips
        for n, c in enumerate(gone):
            ledger.mark_deleted(
                c.id, reason="free space below the floor", record=b"{}",
                signature=None if what == "deleted-unsigned" else b"s" * 64,
                key_fingerprint="", deleted_at=when - timedelta(seconds=n),
            )  # fmt: skip
            (st.data / c.path).unlink()
    finally:
        ledger.close()


REFUSALS = {
    ("deleted-unsigned", "en"): (
        ["was deleted by the station's retention on {day}", "no signed record"],
        ["was deleted by the station's retention on {day}", "without a record"],
    ),
    ("deleted-unsigned", "zh-CN"): (
        ["已于 {day}", "没有签名记录"],
        ["已于 {day}", "没有证据包可以出示的记录"],
    ),
    ("all-deleted", "en"): (
        ["Every clip of this order was deleted by the station's retention", "{day}"],
        ["Every clip of this order was deleted by the station's retention", "{day}"],
    ),
    ("all-deleted", "zh-CN"): (
        ["本订单的所有视频都已被工位的保留策略删除", "{day}"],
        ["本订单的所有视频都已被工位的保留策略删除", "{day}"],
    ),
}


@pytest.mark.parametrize(("what", "lang"), sorted(REFUSALS))
def test_a_refused_bundle_says_why_to_the_seller_and_to_the_share_links_holder(
    store: Store,  # noqa: F811
    deleted_when: datetime,
    tmp_path: Path,
    what: str,
    lang: str,
) -> None:
    """The station refuses order A1's bundle (409): the order page's button and a share link's
    bundle say why, in the reader's language, and with the deletion's date; neither shows the
    station's own message (file paths, the data dir), the share link's holder no advice meant
    for the station's staff."""
    from conftest_web import login
    from test_web_share import create_share

    st = store.copy(tmp_path / "data")
    add_users(st.data)
    _refused_order(st, what, deleted_when)
    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    seller = login(app.test_client(), "viewer")
    with closing(Ledger.in_data_dir(st.data)) as ledger:
        clip_id = ledger.clips("A1")[0].id
    share = create_share(seller, "A1")
    head = {"Accept-Language": lang}
    with ExportWorker(st.cfg, poll_s=0.02):
        pages = []
        for client, url in ((seller, f"/clips/{clip_id}/bundle"),
                            (app.test_client(), f"{share}/bundle.zip")):  # fmt: skip
            resp = client.get(url, headers=head)
            pages.append(html.unescape(resp.get_data(as_text=True)))
            assert resp.status_code == 409, pages[-1][-1500:]
    for page, words in zip(pages, REFUSALS[(what, lang)], strict=True):
        for w in words:
            assert w.format(day=day(deleted_when)) in page, (w, page[-1500:])
        assert "no signed clips" not in page and "没有已签名的视频" not in page
        assert str(st.data) not in page and "clips/" not in page.split("<main>")[-1]
    assert "packcam" not in pages[1].split("<main>")[-1]


@pytest.mark.parametrize("lang", ["en", "zh-CN"])
def test_every_refusal_of_the_exporter_has_its_own_words(store: Store, lang: str) -> None:  # noqa: F811
    """Each reason station/proof/bundle.py refuses an order's bundle for is said as itself
    (never the generic 409), in both languages; a share link's holder is told the deletions
    the order's page shows anyway, and for the rest (the station's keys, log and disk) only
    that the bundle cannot be built now."""
    from station.proof.bundle import (
        ALL_DELETED,
        DELETED_UNMANIFESTED,
        DELETED_UNSIGNED,
        NOT_SIGNED,
        REFUSAL_CODES,
    )
    from web.errors import MESSAGES, SHARED_CANNOT_BUILD, refusal_message

    params = {"started": "2026-02-28T09:00:00+08:00", "deleted_utc": "2026-03-01T02:00:00.0Z"}
    app = create_app(store.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    with app.test_request_context("/", headers={"Accept-Language": lang}):
        staff = {c: refusal_message(c, params, shared=False) for c in REFUSAL_CODES}
        holder = {c: refusal_message(c, params, shared=True) for c in REFUSAL_CODES}
        generic = str(MESSAGES[409])
        assert refusal_message("a-code-of-a-newer-station", {}, shared=False) == generic
        cannot = str(SHARED_CANNOT_BUILD)
    assert len(set(staff.values())) == len(REFUSAL_CODES) and generic not in staff.values()
    told = (NOT_SIGNED, DELETED_UNSIGNED, DELETED_UNMANIFESTED, ALL_DELETED)
    for code in REFUSAL_CODES:
        assert (holder[code] == cannot) is (code not in told), code
        assert "packcam" not in holder[code]
    for code in (DELETED_UNSIGNED, DELETED_UNMANIFESTED):
        assert "2026-02-28 09:00:00 +08:00" in staff[code] and "2026-03-01" in staff[code]
        assert "2026-02-28 09:00:00 +08:00" in holder[code]
    assert "2026-03-01" in staff[ALL_DELETED] == holder[ALL_DELETED]
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in staff.values()) is (
        lang == "zh-CN"
    )


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [(timedelta(hours=3), True), (timedelta(days=30), False)],
    ids=["within the clocks' day", "a month ahead"],
)
def test_a_future_dated_deletion_record_is_refused(
    partial: tuple[Store, Path, ClipRecord],
    tmp_path: Path,
    ahead: timedelta,
    accepted: bool,
) -> None:
    """The station key's holder dates the deletion after the moment of verification: no
    honest station signed that, so both verifiers and the /verify page refuse the record
    (the entry stays missing); a station clock a few hours fast is still accepted."""
    st, path, _ = partial
    key = StationKey.load(st.data / "proof/station-key.pem")
    when = datetime.now(UTC) + ahead
    bad = _resigned_record(st, path, tmp_path, key, when)
    report = verify_bundle(bad, anchors=st.anchors(), tmp_dir=tmp_path)
    rc, out = _kit(bad, tmp_path, *_pins(st))
    app = create_app(st.cfg, test_config={"TESTING": True, "SECRET_KEY": "k" * 40})
    client = app.test_client()
    assert client.get("/verify").status_code == 200
    with client.session_transaction() as sess:
        token = sess.get("csrf")
    page = html.unescape(
        client.post(
            "/verify", data={"csrf_token": token, "file": (io.BytesIO(bad.read_bytes()), "A1.zip")}
        ).get_data(as_text=True)
    )
    if accepted:
        assert report.verdict == AUTHENTIC and report.partial, report.lines()
        assert rc == EXIT_PARTIAL and "deletion-record-invalid" not in out, out
        assert "deletion-record-invalid" not in page
        return
    assert report.verdict == TAMPERED, report.lines()
    assert {"deletion-record-invalid", "order-incomplete"} <= report.codes(), report.lines()
    (why,) = [c.reason for c in report.checks if c.code == "deletion-record-invalid"]
    assert f"dated {day(when, '%Y-%m-%d %H:%M')} UTC, after this verification" in why, why
    assert not _deleted_lines(report)
    assert rc == 1 and "deletion-record-invalid" in out and "order-incomplete" in out, out
    assert "after this verification" in out, out
    assert "deletion-record-invalid" in page and "after this verification" in page, page[-3000:]
