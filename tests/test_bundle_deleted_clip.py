"""An order one of whose clips retention deleted: a bundle of the rest with the signed record."""

from __future__ import annotations

import html
import io
import json
from contextlib import closing
from datetime import UTC, datetime
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
from test_share_summary import parts, summary_of

from station import cli as station_cli
from station.proof.bundle import export_order
from station.proof.canonical import canonical_json
from station.proof.exports import ExportWorker, bundle_key
from station.proof.finalizer import build_finalizers
from station.proof.keys import StationKey
from station.proof.verify import AUTHENTIC, TAMPERED, Report, verify_bundle
from station.store.ledger import ClipRecord, Ledger
from station.store.retention import DiskSpace, Policy, RetentionManager, station_signer
from web import create_app

DELETED_WHEN = datetime(2027, 3, 1, 2, 0, tzinfo=UTC)


def _retain_oldest(st: Store) -> ClipRecord:
    """The real retention manager, free space one byte below the floor and no minimum age:
    it deletes the oldest clip (order A1's first) with a record signed by the station key."""
    cfg = st.cfg.replace("retention", min_age_days=0.0)
    ledger = Ledger.in_data_dir(st.data)
    fins = build_finalizers(cfg)
    total = 1 << 40
    floor = Policy.from_config(cfg.retention, archiving=False).floor(total)
    try:
        first = ledger.clips("A1")[0]
        mgr = RetentionManager(
            cfg,
            ledger,
            # the first deletion frees the byte that was missing
            probe=lambda: DiskSpace(floor - (st.data / first.path).exists(), total),
            signer=station_signer(fins),
            now=lambda: DELETED_WHEN,
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
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Store, Path, ClipRecord]:
    """Order A1's first clip deleted by retention, the second kept; the order exported."""
    st = store.copy(tmp_path_factory.mktemp("partial") / "data")
    first = _retain_oldest(st)
    out = export_order(st.cfg, "A1", st.data.parent / "A1.zip")
    assert out.clips == 1
    assert any("deleted by this station's retention" in w for w in out.warnings), out.warnings
    return st, out.path, first


def _deleted_lines(report: Report) -> list[str]:
    return [c.reason for c in report.checks if c.code == "clip-deleted-by-retention"]


def test_the_export_holds_the_remaining_clip_and_the_signed_deletion_record(
    partial: tuple[Store, Path, ClipRecord],
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
    assert record["sha256"] == first.sha256 and record["deleted_utc"].startswith("2027-03-01")
    assert "This bundle is partial" in read_zip(path, "VERIFY.md").decode()
    assert (
        "已被工位的保留策略于 2027-03-01 02:00:00 UTC 删除"
        in read_zip(path, "summary.html").decode()
    )


def test_packcam_verify_gives_the_remaining_clip_its_verdict_and_names_the_deletion(
    partial: tuple[Store, Path, ClipRecord],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    st, path, first = partial
    report = verify_bundle(path, anchors=st.anchors(), tmp_dir=tmp_path)
    assert report.verdict == AUTHENTIC and report.exit_code == 0, report.lines()
    (line,) = _deleted_lines(report)
    start = first.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f"clip 1 of this order ({start}–" in line
    assert first.sha256 in line and "2027-03-01 02:00" in line
    assert "by its own signed record" in line
    assert report.facts["deleted_clips"][0]["sha256"] == first.sha256
    assert report.partial
    # the label does not read as the whole order's recording
    assert "PARTIAL" in report.summary() and "FOR 1 OF THIS ORDER'S 2 CLIPS" in report.summary()
    assert "order-incomplete" not in report.reasons()
    rc = station_cli.main(["verify", str(path), *_pins(st), "--no-default-trust"])
    out = capsys.readouterr().out
    assert rc == 0 and "deleted by the station's retention on 2027-03-01" in out
    assert "PARTIAL" in out.splitlines()[-1]


def test_the_strangers_verifier_reports_the_deletion_and_a_partial_result(
    partial: tuple[Store, Path, ClipRecord],
    tmp_path: Path,
) -> None:
    st, path, first = partial
    rc, out = _kit(path, tmp_path, *_pins(st))
    assert rc == 0, out
    assert "FAIL" not in out
    assert "deleted by the station's retention on 2027-03-01" in out and first.sha256 in out
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
    tmp_path: Path,
) -> None:
    """Retention with proofs off leaves no signature: nothing could vouch for the gap."""
    st = store.copy(tmp_path / "data")
    ledger = Ledger.in_data_dir(st.data)
    first = ledger.clips("A1")[0]
    ledger.mark_deleted(
        first.id, reason="free space below the floor", record=b"{}", signature=None,
        key_fingerprint="", deleted_at=DELETED_WHEN,
    )  # fmt: skip
    ledger.close()
    (st.data / first.path).unlink()
    with pytest.raises(Exception, match="deleted by this station's retention on 2027-03-01"):
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
                "Clip 1 of this order (", "was deleted by the station's retention on 2027-03-01",
                "by its own signed record", "the seller's own statement"]),
        ("zh-CN", ["不完整：本订单共 2 段视频，本证据包只含 1 段", "本订单第 1 段视频（",
                   "被工位的保留策略删除，依据工位自己签名的删除记录", "卖家工位自己的声明"]),
    ],
)  # fmt: skip
def test_the_verify_page_names_the_deleted_clip_in_both_languages(
    partial: tuple[Store, Path, ClipRecord], tmp_path: Path, lang: str, words: list[str]
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
        assert w in body, (w, body[-4000:])
    assert first.sha256 in body


def test_the_share_summary_dates_the_deleted_clip_in_both_languages(
    partial: tuple[Store, Path, ClipRecord], tmp_path: Path
) -> None:
    """The order's summary (the station's own clips, not a bundle): the clip left keeps its
    claims, the deleted one is named with its date, and the order is not called verified."""
    st, _, first = partial
    st = st.copy(tmp_path / "data")
    p = {k: html.unescape(v) for k, v in parts(summary_of(st, "A1")[0]).items()}
    assert "verdict-authentic" not in p["en"] and "verdict-tampered" not in p["en"]
    assert "Clip 1 of this order (" in p["en"] and first.sha256 in p["en"]
    assert "was deleted by the station's retention on 2027-03-01" in p["en"]
    assert "本订单第 1 段视频（" in p["zh"] and "被工位的保留策略删除" in p["zh"]
    assert "The file is the one the station hashed and signed" in p["en"]  # the clip left
