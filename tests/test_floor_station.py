"""The packing floor through a real station: packer, returns and repacks reach the signed
manifest, the index, the overlay and the event hub (synthetic camera, real clips)."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest

from station import config as config_mod
from station.capture.frames import Caption
from station.capture.synthetic import Scenario, SyntheticCamera
from station.floor.events import EventKind, EventRecorder
from station.floor.feedback import Feedback, RecordingSink, prepare_sounds
from station.recording.overlay import Overlay
from station.service import assemble
from station.store.ledger import ClipRecord

pytestmark = pytest.mark.slow

W, H, FPS = 320, 180, 15.0


def run(
    cfg: config_mod.Config,
    keys: list[tuple[float, str]],
    end: float,
    proof: bool = False,
    sink: RecordingSink | None = None,
    realtime: bool = False,
):
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS).replace("proof", enabled=proof)
    events = [{"at": at, "kind": "key", "text": text} for at, text in keys]
    scenario = Scenario.from_dict({"event": [*events, {"at": end, "kind": "end"}]})
    asm = assemble(cfg, camera=SyntheticCamera(W, H, FPS, scenario, realtime=realtime),
                   live_view=False)  # fmt: skip
    rec = EventRecorder()
    assert asm.events is not None
    asm.events.add(rec)
    if sink is not None:
        asm.events.add(Feedback(sink, prepare_sounds(cfg.station.data_dir / "sounds")))
    asm.station.run(threading.Event())
    clips = asm.ledger.clips()
    asm.close()
    return clips, rec


def manifest(cfg: config_mod.Config, clip: ClipRecord) -> dict:
    return json.loads((cfg.station.data_dir / clip.manifest_path).read_text(encoding="utf-8"))


def test_the_packer_signed_in_is_in_the_manifest_and_the_index(cfg: config_mod.Config) -> None:
    clips, _rec = run(cfg, [(0.2, "OP:alice"), (0.5, "PO-P1"), (1.0, "OP:bob"), (1.5, "SEAL"),
                            (2.0, "PO-P2"), (2.5, "SIGNOUT"), (3.0, "SEAL"), (3.5, "PO-P3"),
                            (4.0, "SEAL")], 4.5)  # fmt: skip
    assert [(c.order_id, c.packer, c.kind) for c in clips] == [
        ("PO-P1", "alice", "order"),  # bob's badge mid-clip neither ended it nor took it over
        ("PO-P2", "bob", "order"),
        ("PO-P3", None, "order"),
    ]
    m = manifest(cfg, clips[0])
    assert (m["packer"], m["kind"]) == ("alice", "order")
    assert "packer" not in manifest(cfg, clips[2])
    assert clips[0].finish_reason == "sealed"


def test_require_packer_refuses_with_the_scan_refused_event(cfg: config_mod.Config) -> None:
    cfg = cfg.replace("session", require_packer=True)
    sink = RecordingSink()
    clips, rec = run(cfg, [(0.3, "PO-R1"), (0.8, "OP-王芳"), (1.2, "PO-R2"), (2.0, "SEAL")], 2.5,
                     sink=sink)  # fmt: skip
    assert [p.name for p in sink.played][:2] == ["refused", "order-started"]
    assert [(c.order_id, c.packer) for c in clips] == [("PO-R2", "王芳")]
    refused = [e for e in rec.events if e.kind is EventKind.SCAN_REFUSED]
    assert [(e.order_id, e.data["why"]) for e in refused] == [("PO-R1", "no packer signed in")]
    assert rec.kinds().count(EventKind.ORDER_STARTED) == 1


def test_the_overlay_shows_packer_and_return_mark() -> None:
    ov = Overlay("st", None)
    img = np.zeros((H, W, 3), np.uint8)
    from datetime import datetime

    caption = Caption(datetime(2026, 12, 4, 9, 0).astimezone(), "PO-1", None, 1.0, True)
    ov.apply(img, caption)
    plain = ov.band
    before = ov.renders
    img2 = np.zeros((H, W, 3), np.uint8)
    ov.apply(img2, replace(caption, packer="alice", kind="return"))
    assert ov.renders > before  # new text was drawn: the packer and the return mark
    assert ov.band == plain
    assert not np.array_equal(img, img2)
    assert ov.render_text("RETURN", 12).any() and ov.render_text("Packer alice", 12).any()


def test_a_return_card_or_label_makes_the_next_clip_a_return(cfg: config_mod.Config) -> None:
    cfg = cfg.replace("codes", return_patterns=("^RT\\d{6}$",))
    clips, _rec = run(cfg, [(0.2, "退货"), (0.5, "PO-X1"), (1.0, "SEAL"), (1.5, "PO-X2"),
                            (2.0, "SEAL"), (2.5, "RT123456"), (3.0, "PO-X3"), (3.5, "SEAL")],
                      4.0)  # fmt: skip
    assert [(c.order_id, c.kind) for c in clips] == [
        ("PO-X1", "return"),
        ("PO-X2", "order"),
        ("PO-X3", "return"),
    ]
    assert manifest(cfg, clips[0])["kind"] == "return"


def test_the_evidence_bundle_says_return_and_packer(cfg: config_mod.Config, tmp_path) -> None:
    from station.proof.bundle import export_order

    cfg = cfg.replace("camera", width=W, height=H, fps=FPS)
    keys = [(0.2, "OP:alice"), (0.3, "RETURN"), (0.5, "PO-BX"), (1.5, "SEAL")]
    events = [{"at": at, "kind": "key", "text": text} for at, text in keys]
    scenario = Scenario.from_dict({"event": [*events, {"at": 2.0, "kind": "end"}]})
    asm = assemble(cfg, camera=SyntheticCamera(W, H, FPS, scenario, realtime=False),
                   live_view=False)  # fmt: skip
    asm.station.run(threading.Event())
    asm.close()
    out = export_order(cfg, "PO-BX", tmp_path / "b.zip").path
    import zipfile

    with zipfile.ZipFile(out) as z:
        html = z.read("summary.html").decode()
        index = json.loads(z.read("bundle.json"))
    assert '<td class="kind">退货拆箱 Return (unboxing)</td>' in html
    assert "<th>打包员 Packer</th><td>alice</td>" in html
    assert index["clips"][0]["kind"] == "return"


def test_an_order_recorded_before_is_a_repack_linked_to_the_earlier_clip(
    cfg: config_mod.Config,
) -> None:
    (first,), rec = run(cfg, [(0.3, "PO-D1"), (1.0, "SEAL")], 1.5)
    assert first.repack_of == [] and EventKind.DUPLICATE_ORDER not in rec.kinds()
    sink = RecordingSink()
    clips, rec = run(cfg, [(0.3, "PO-D1"), (1.0, "SEAL"), (1.3, "PO-D2"), (2.0, "SEAL")], 2.5,
                     sink=sink)  # fmt: skip
    assert [p.name for p in sink.played][:2] == ["order-started", "duplicate"]
    again, other = clips[1:]
    assert again.order_id == "PO-D1" and again.repack_of == [first.id]
    m = manifest(cfg, again)
    assert m["repack"] is True and m["repack_of_sha256"] == [first.sha256]
    assert other.repack_of == [] and "repack" not in manifest(cfg, other)
    dup = [e for e in rec.events if e.kind is EventKind.DUPLICATE_ORDER]
    assert [(e.order_id, e.data["earlier"]) for e in dup] == [("PO-D1", [first.id])]
    # the banner comes after order-started, which clears the screen's notice
    kinds = rec.kinds()
    assert kinds.index(EventKind.DUPLICATE_ORDER) == kinds.index(EventKind.ORDER_STARTED) + 1


def test_a_repack_in_the_same_run_is_one_even_before_the_first_clip_is_indexed(
    cfg: config_mod.Config,
) -> None:
    cfg = cfg.replace("codes", debounce_s=0.1)  # the same label scanned again at once
    clips, rec = run(cfg, [(0.3, "PO-E1"), (0.8, "PO-E1"), (1.0, "PO-E1"), (1.6, "SEAL")], 2.0)
    assert [c.order_id for c in clips] == ["PO-E1", "PO-E1"]
    assert clips[0].finish_reason == "rescan"
    assert manifest(cfg, clips[1])["repack"] is True
    assert [e.order_id for e in rec.events if e.kind is EventKind.DUPLICATE_ORDER] == ["PO-E1"]


def test_the_bundle_names_the_earlier_clip_of_a_repack_by_its_hash(
    cfg: config_mod.Config, tmp_path
) -> None:
    from station.proof.bundle import export_order

    (first,), _ = run(cfg, [(0.3, "PO-BR"), (1.0, "SEAL")], 1.5, proof=True)
    clips, _ = run(cfg, [(0.3, "PO-BR"), (1.0, "SEAL")], 1.5, proof=True)
    assert clips[1].repack_of == [first.id]
    cfg = cfg.replace("camera", width=W, height=H, fps=FPS)
    out = export_order(cfg, "PO-BR", tmp_path / "b.zip").path
    import zipfile

    with zipfile.ZipFile(out) as z:
        html = z.read("summary.html").decode()
    assert html.count("<th>重新打包 Repack of</th>") == 1
    assert f"SHA-256 {first.sha256[:16]}…" in html


def test_the_station_screen_shows_packer_kind_and_the_duplicate_banner(
    cfg: config_mod.Config,
) -> None:
    from station.floor.screen import ScreenState

    run(cfg, [(0.3, "PO-S1"), (1.0, "SEAL")], 1.5)
    _clips, rec = run(cfg, [(0.2, "OP:alice"), (0.25, "退货"), (0.3, "PO-S1")], 1.0)
    screen = ScreenState("st")
    for e in rec.events:
        screen.apply(e)
    doc = screen.to_json()
    assert (doc["packer"], doc["kind"]) == ("alice", "return")
    assert doc["notice"]["kind"] == "duplicate-order" and doc["notice"]["order_id"] == "PO-S1"
    # signed in before any order: the screen says who at once
    _clips, rec = run(cfg, [(0.2, "OP:bob"), (0.6, "SIGNOUT"), (0.9, "OP-carol")], 1.2)
    changes = [e.data["packer"] for e in rec.events if e.kind is EventKind.PACKER_CHANGED]
    assert changes == ["bob", None, "carol"]
    screen = ScreenState("st")
    for e in rec.events:
        screen.apply(e)
    assert screen.to_json()["packer"] == "carol" and screen.to_json()["state"] == "idle"


def test_a_badge_under_the_camera_is_confirmed_signs_in_and_never_ends_the_clip(
    cfg: config_mod.Config,
) -> None:
    """A badge card shown to the camera mid-clip: read (confirmed over frames, like an order),
    it signs its packer in for the next clip; the open clip goes on and keeps its packer."""
    w, h = 640, 360
    cfg = cfg.replace("camera", width=w, height=h, fps=FPS).replace("proof", enabled=False)
    scenario = Scenario.from_dict({"event": [
        {"at": 0.2, "kind": "key", "text": "OP:alice"},
        {"at": 0.5, "kind": "key", "text": "PO-CAM1"},
        {"at": 1.0, "kind": "show", "code": "OP:bob", "symbology": "qrcode", "duration": 2.0},
        {"at": 4.0, "kind": "key", "text": "SEAL"},
        {"at": 4.5, "kind": "key", "text": "PO-CAM2"},
        {"at": 7.5, "kind": "key", "text": "SEAL"},  # past the 3 s debounce
        {"at": 8.0, "kind": "end"},
    ]})  # fmt: skip
    asm = assemble(cfg, camera=SyntheticCamera(w, h, FPS, scenario, realtime=False),
                   live_view=False)  # fmt: skip
    asm.station.run(threading.Event())
    clips = asm.ledger.clips()
    asm.close()
    assert [(c.order_id, c.packer, c.finish_reason) for c in clips] == [
        ("PO-CAM1", "alice", "sealed"),
        ("PO-CAM2", "bob", "sealed"),
    ]
    badge = [e for e in clips[0].events if e.kind == "operator"]
    assert [(e.text, e.source, e.note) for e in badge] == [("OP:bob", "camera",
                                                           "packer bob signed in")]  # fmt: skip


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
def test_the_waybill_linked_event_names_the_order_it_was_linked_to(
    cfg: config_mod.Config, ends: bool
) -> None:
    """The station screen lists an order's waybills from these events; a waybill that ends
    the clip (``waybill_ends_clip``) is that order's too, not "no order". (Scanned a second
    or more after the order: sooner, with ``waybill_ends_clip``, it is no one's,
    ``test_session_pedal.py``.)"""
    cfg = cfg.replace("session", waybill_ends_clip=ends)
    _clips, rec = run(cfg, [(0.3, "PO-W1"), (1.5, "SF1234567890123")], 2.0)
    linked = [e for e in rec.events if e.kind is EventKind.WAYBILL_LINKED]
    assert [(e.order_id, e.data["waybill"]) for e in linked] == [("PO-W1", "SF1234567890123")]
