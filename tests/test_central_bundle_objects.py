"""Central bundles check each clip object against the signed record (moto): a changed object
is refused or cut off, never handed out as if it were the signed clip."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import io
import logging
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from proof_support import record_orders

from central import bundles, media
from station import config as config_mod
from station.fleet.archiver import Archiver
from station.fleet.objstore import ObjectStore
from station.proof.finalizer import build_finalizers
from station.proof.trust import Anchors
from station.proof.verify import TAMPERED, verify_bundle
from station.store.ledger import ClipRecord, Ledger
from web.summary import claims_from_report

BUCKET = "packcam-bundle-objects"  # created by the moto_s3 fixture (conftest)
ORDER = "BO-1"


@dataclasses.dataclass
class Archived:
    cfg: config_mod.Config
    store: ObjectStore
    clips: list[ClipRecord]  # as the central index has them (archive key and meta in extra)


@pytest.fixture
def archived(tmp_path: Path, moto_s3: None) -> Archived:
    """A station recorded one order and archived it: the clip and the order's signed parts
    are in the bucket."""
    cfg = config_mod.load(None).with_data_dir(tmp_path / "data")
    cfg = cfg.replace("archive", enabled=True, bucket=BUCKET, keyframes=False)
    finalizers = build_finalizers(cfg)
    try:
        record_orders(cfg, finalizers, [ORDER])
    finally:
        for f in finalizers:
            f.close()
    arch = Archiver(cfg)
    try:
        assert arch.run_once() == 1
    finally:
        arch.stop()
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        clips = []
        for c in ledger.clips():
            state = ledger.archive_state(int(c.id or 0)) or {}
            extra = {**c.extra, "archive_key": state["archive_key"],
                     "archive_meta": state["archive_meta"]}  # fmt: skip
            clips.append(dataclasses.replace(c, extra=extra))
    finally:
        ledger.close()
    return Archived(cfg, ObjectStore(cfg.archive), clips)


@contextlib.contextmanager
def _served(a: Archived) -> Iterator[int]:
    """A real waitress server whose /bundle.zip is the central site's bundle of ORDER: what a
    server does with a body that ends in an error is part of the contract. Yields its port."""
    from waitress import create_server, wasyncore

    app = Flask(__name__)
    app.config["PACKCAM"] = a.cfg
    media.init_app(app, a.cfg)
    app.add_url_rule(
        "/bundle.zip", "bundle", lambda: bundles.respond(ORDER, a.clips, None, "x.zip")
    )
    server = create_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, name="bundle-objects-server")
    thread.start()
    try:
        yield int(server.effective_port)
    finally:
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(timeout=10)
        server.task_dispatcher.shutdown(timeout=5)


def _replace_object(a: Archived, change: bytes = b"", *, flip_at: int | None = None) -> str:
    """Rewrite the clip's object in the bucket: ``change`` appended, or one byte flipped."""
    (clip,) = a.clips
    key = str(clip.extra["archive_key"])
    data = bytearray(a.store.get_bytes(key))
    if flip_at is not None:
        data[flip_at] ^= 0xFF
    a.store.client.put_object(Bucket=a.store.bucket, Key=key, Body=bytes(data) + change)
    return key


def _download(a: Archived) -> tuple[int, bytes, http.client.IncompleteRead | None]:
    """GET the bundle over HTTP: (status, body received, the error if the body was cut)."""
    with _served(a) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/bundle.zip")
            resp = conn.getresponse()
            try:
                return resp.status, resp.read(), None
            except http.client.IncompleteRead as exc:
                return resp.status, exc.partial, exc
        finally:
            conn.close()


def _summary_reasons(a: Archived, tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    """The share summary's verdict and reasons for the clip (what CentralSite's verifier says)."""
    (report,) = bundles.verify_archived(
        a.store, a.cfg.archive.prefix, ORDER, a.clips, Anchors(), tmp_path / "spool",
        max_bytes=1 << 30, headroom=0,
    )  # fmt: skip
    claims = claims_from_report(a.clips[0], report)
    return claims.verdict, claims.reasons


def test_an_honest_object_is_streamed_and_verifies(archived: Archived, tmp_path: Path) -> None:
    status, data, cut = _download(archived)
    assert status == 200 and cut is None
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(data)
    with zipfile.ZipFile(bundle) as zf:
        (member,) = [n for n in zf.namelist() if n.startswith("clips/")]
        assert (
            zf.read(member) == (archived.cfg.station.data_dir / archived.clips[0].path).read_bytes()
        )
    report = verify_bundle(bundle, anchors=Anchors(), tmp_dir=tmp_path)
    assert not report.failures, report.lines()
    verdict, reasons = _summary_reasons(archived, tmp_path)
    assert verdict != TAMPERED and "clip-altered" not in reasons


def test_an_object_of_another_size_is_refused_before_anything_is_sent(
    archived: Archived, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = _replace_object(archived, b"\0" * 1000)
    with caplog.at_level(logging.ERROR, logger="central.bundles"):
        status, data, cut = _download(archived)
    assert status == 503 and cut is None and not data.startswith(b"PK")  # no byte of a zip
    (clip,) = archived.clips
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(key in m and Path(clip.path).name in m and ORDER in m for m in errors), errors
    verdict, reasons = _summary_reasons(archived, tmp_path)
    assert verdict == TAMPERED and "clip-altered" in reasons


def test_an_object_altered_in_place_cuts_the_download(
    archived: Archived, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key = _replace_object(archived, flip_at=archived.clips[0].size // 2)
    with caplog.at_level(logging.ERROR, logger="central.bundles"):
        status, data, cut = _download(archived)
    assert status == 200  # the headers went before the object was read
    assert cut is not None  # the connection is dropped: no last chunk, no clean end
    with pytest.raises(zipfile.BadZipFile):  # no central directory: not a bundle
        zipfile.ZipFile(io.BytesIO(data))
    (clip,) = archived.clips
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(key in m and Path(clip.path).name in m and ORDER in m for m in errors), errors
    verdict, reasons = _summary_reasons(archived, tmp_path)
    assert verdict == TAMPERED and "clip-altered" in reasons


def test_an_order_archived_after_a_key_rotation_has_its_bundle_found(
    tmp_path: Path, moto_s3: None
) -> None:
    """A clip signed under a key that was rotated (`packcam keys rotate`) before the archiver
    reached it: its log leaf is in the retired key's log, and the order's parts are signed by
    the current key (the retired one is gone). The central site must still find them for that
    clip, or the order's signed bundle is never served, also once the station is gone."""
    from station.proof import rotation

    cfg = config_mod.load(None).with_data_dir(tmp_path / "data")
    cfg = cfg.replace("archive", enabled=True, bucket=BUCKET, keyframes=False)
    finalizers = build_finalizers(cfg)
    try:
        record_orders(cfg, finalizers, [ORDER])
    finally:
        for f in finalizers:
            f.close()
    rotation.rotate(cfg)  # the bucket was out of reach until now
    arch = Archiver(cfg)
    try:
        assert arch.run_once() == 1
    finally:
        arch.stop()
    ledger = Ledger.in_data_dir(cfg.station.data_dir)
    try:
        clips = []
        for c in ledger.clips():
            state = ledger.archive_state(int(c.id or 0)) or {}
            extra = {**c.extra, "archive_key": state["archive_key"],
                     "archive_meta": state["archive_meta"]}  # fmt: skip
            clips.append(dataclasses.replace(c, extra=extra))
    finally:
        ledger.close()
    a = Archived(cfg, ObjectStore(cfg.archive), clips)
    status, data, cut = _download(a)
    assert status == 200 and cut is None
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(data)
    report = verify_bundle(bundle, anchors=Anchors(), tmp_dir=tmp_path)
    assert not report.failures, report.lines()
