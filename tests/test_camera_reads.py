"""The station with the camera as its scanner: confirmed reads only, product codes as items."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from scan_support import LateScans

from station import config as config_mod
from station.capture.barcodes import Detection, ScanWorker
from station.capture.confirm import ReadConfirmer
from station.capture.frames import RawScan
from station.capture.synthetic import Scenario, SyntheticCamera
from station.runtime.faults import FlakyCamera, Outage
from station.service import assemble
from station.store.clips import LYING_CARD
from station.store.ledger import ClipRecord, Ledger, ScanEventRecord

pytestmark = pytest.mark.slow

W, H = 960, 540
EAN = "4006381333931"


@pytest.fixture
def station_cfg(cfg: config_mod.Config) -> config_mod.Config:
    cfg = cfg.replace("camera", width=W, height=H, fps=10.0)
    return cfg.replace("proof", enabled=False)


def run(
    cfg: config_mod.Config,
    events: list[dict],
    decoder: object | None = None,
    outages: tuple[Outage, ...] = (),
) -> tuple[list[ClipRecord], Ledger]:
    scene = Scenario.from_dict({"seed": 3, "event": events})
    cam: SyntheticCamera | FlakyCamera = SyntheticCamera(
        W, H, cfg.camera.fps, scene, realtime=False
    )
    if outages:
        cam = FlakyCamera(cam, list(outages))
    asm = assemble(cfg, camera=cam, live_view=False)
    if decoder is not None:
        asm.station.decoder = decoder
    asm.station.run(threading.Event())
    clips = asm.ledger.clips()
    asm.close()
    return clips, Ledger.in_data_dir(cfg.station.data_dir)


def test_a_product_ean_held_up_during_a_recording_is_an_item_and_does_not_end_the_clip(
    station_cfg: config_mod.Config,
) -> None:
    events = [
        {"at": 0.5, "kind": "show", "code": "PO-ITEM-1", "symbology": "code128", "duration": 1.5},
        {"at": 3.0, "kind": "show", "code": EAN, "symbology": "ean13", "duration": 2.0},
        {"at": 6.0, "kind": "show", "code": "SEAL", "symbology": "qrcode", "duration": 1.5},
        {"at": 9.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [("PO-ITEM-1", "sealed")]
    kinds = [(e.kind, e.text) for e in clips[0].events]
    assert kinds == [("order", "PO-ITEM-1"), ("item", EAN), ("seal", "SEAL")]
    item = clips[0].events[1]
    assert item.source == "camera" and item.note == "ean13"
    assert item.t_clip_s is not None and item.t_clip_s > 2.0
    assert ledger.unattached_events() == []
    ledger.close()


def test_a_product_barcode_lying_in_view_for_a_minute_produces_no_order_events(
    station_cfg: config_mod.Config,
) -> None:
    events = [
        {"at": 0.5, "kind": "show", "code": EAN, "symbology": "ean13", "duration": 61.0},
        {"at": 62.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert clips == []
    logged = [(e.kind, e.text) for e in ledger.unattached_events()]
    # read all along, it stays one (debounced) item: no order, no clip
    assert logged == [("item", EAN)]
    ledger.close()


def test_a_web_address_qr_code_on_goods_neither_starts_nor_ends_a_clip(
    station_cfg: config_mod.Config,
) -> None:
    """A product's QR code (a web address) seen before the order and held up during the
    packing: logged as an item, no clip of its own, and the order's clip ends at the seal."""
    url = "https://weixin.qq.com/r/mp/PACKCAM1"
    events = [
        {"at": 0.5, "kind": "show", "code": url, "symbology": "qrcode", "duration": 1.5},
        {"at": 5.0, "kind": "show", "code": "PO-URL-1", "symbology": "code128", "duration": 1.5},
        {"at": 8.0, "kind": "show", "code": url, "symbology": "qrcode", "duration": 1.5},
        {"at": 13.0, "kind": "show", "code": "SEAL", "symbology": "qrcode", "duration": 1.5},
        {"at": 16.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [("PO-URL-1", "sealed")]
    kinds = [(e.kind, e.text, e.note) for e in clips[0].events]
    assert kinds == [("order", "PO-URL-1", ""), ("item", url, "url"), ("seal", "SEAL", "")]
    assert [(e.kind, e.text) for e in ledger.unattached_events()] == [("item", url)]
    ledger.close()


@pytest.mark.parametrize(
    ("sheet", "card"),
    [((0.25, 0.3), (0.75, 0.7)), ((0.75, 0.7), (0.25, 0.3))],
    ids=["sheet-read-first", "card-read-first"],
)
def test_a_seal_card_held_up_as_the_next_sheet_is_put_down_never_seals_the_next_order(
    station_cfg: config_mod.Config, sheet: tuple[float, float], card: tuple[float, float]
) -> None:
    """PO-A is packed; the packer holds up the seal card as PO-B's sheet is put down, and the
    camera confirms both in one frame. Their reads come in the decoder's order, by where they
    lie: with the sheet read first, the card sealed PO-B's clip in the frame that opened it
    (a clip of 0.3 s), and PO-B's whole packing was recorded in no clip. Wherever they lie,
    PO-A's clip ends there and PO-B's records its packing."""
    events = [
        {"at": 0.5, "kind": "key", "text": "PO-A-1"},
        {"at": 5.0, "kind": "show", "code": "PO-B-2", "symbology": "code128", "duration": 1.5,
         "position": list(sheet), "size": 0.3},
        {"at": 5.0, "kind": "show", "code": "SEAL", "symbology": "qrcode", "duration": 1.5,
         "position": list(card), "size": 0.3},
        {"at": 12.0, "kind": "end"},
    ]  # fmt: skip
    clips, ledger = run(station_cfg, events)
    assert [c.order_id for c in clips] == ["PO-A-1", "PO-B-2"]
    a, b = clips
    assert b.finish_reason == "end-of-input" and b.duration_s > 6.0
    assert a.ended_at <= b.started_at
    assert [(e.kind, e.text) for e in b.events] == [("order", "PO-B-2")]
    ledger.close()


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
def test_the_label_beside_the_next_sheet_confirmed_a_decode_later_is_the_parcel_befores(
    station_cfg: config_mod.Config, ends: bool
) -> None:
    """PO-A's parcel label comes into view just after PO-B's sheet: first read in the frame
    whose read of the sheet opened PO-B's clip, confirmed one decode (0.3 s) later. It was
    linked to PO-B's clip as its waybill, or with waybill_ends_clip ended that clip 0.3 s in.
    It is PO-A's: linked to PO-A's ended clip, PO-B's clip records on."""
    cfg = station_cfg.replace("session", waybill_ends_clip=ends)
    label = "SF1234567890123"
    events = [
        {"at": 0.5, "kind": "key", "text": "PO-A-1"},
        {"at": 5.0, "kind": "show", "code": "PO-B-2", "symbology": "code128", "duration": 1.5,
         "position": [0.25, 0.3], "size": 0.3},
        {"at": 5.25, "kind": "show", "code": label, "symbology": "code128", "duration": 1.5,
         "position": [0.75, 0.7], "size": 0.3},
        {"at": 12.0, "kind": "end"},
    ]  # fmt: skip
    clips, ledger = run(cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        ("PO-A-1", "next-order"),
        ("PO-B-2", "end-of-input"),
    ]
    assert [w.waybill for w in clips[0].waybills] == [label]
    assert clips[1].waybills == () and clips[1].duration_s > 6.0
    ledger.close()


class ReadsOn:
    """A decoder that 'reads' an order sheet on the given calls only (a misread, or a glimpse)."""

    def __init__(self, calls: set[int], text: str = "PO-GLIMPSE-1") -> None:
        self.calls = calls
        self.text = text
        self.n = 0

    def decode_frame(self, image: np.ndarray, share: float = 1.0) -> list[Detection]:
        self.n += 1
        if self.n in self.calls:
            return [Detection(self.text, "code128", ((100, 100), (300, 100), (300, 150)))]
        return []


@pytest.mark.parametrize(("calls", "clips_expected"), [({5}, 0), ({5, 6}, 1)])
def test_a_single_unconfirmed_read_never_starts_a_clip(
    station_cfg: config_mod.Config, calls: set[int], clips_expected: int
) -> None:
    worker = ScanWorker(ReadsOn(calls), sync=True, confirm=ReadConfirmer(2))
    clips, ledger = run(station_cfg, [{"at": 4.0, "kind": "end"}], decoder=worker)
    assert [c.order_id for c in clips] == ["PO-GLIMPSE-1"] * clips_expected
    if clips_expected == 0:
        assert ledger.unattached_events() == []  # not even logged: it was never a scan
    ledger.close()


def run_table(
    cfg: config_mod.Config,
    scans: list[tuple[float, RawScan]],
    *,
    end: float,
    seed: int,
    shown: tuple[dict[str, object], ...] = (),
) -> tuple[list[ClipRecord], list[ScanEventRecord]]:
    """The station on a synthetic table (``shown`` events, input ending at ``end``), with
    ``scans`` (poll time, scan) handed over late as LateScans does; its clips and the events
    indexed outside any clip."""
    script = {"seed": seed, "event": [*shown, {"at": end, "kind": "end"}]}
    cam = SyntheticCamera(W, H, cfg.camera.fps, Scenario.from_dict(script), realtime=False)
    asm = assemble(cfg, camera=cam, live_view=False)
    asm.station.scan_sources.append(LateScans(scans))
    try:
        asm.station.run(threading.Event())
        return asm.ledger.clips(), asm.ledger.unattached_events()
    finally:
        asm.close()


def test_the_camera_reading_the_order_just_scanned_by_hand_is_no_rescan(
    station_cfg: config_mod.Config,
) -> None:
    # The packer scans the order sheet with the handheld scanner at t=2.04 while the sheet lies
    # under the camera. The scan worker reads the same sheet in the frame of t=2.0, and its
    # read (decoded in its own thread) reaches the station one frame later, after the
    # keyboard scan: the same label, the same moment, one scan. It must not end the clip
    # just started as a "rescan" (and start the next sighting as a repack).
    order = "PO-TWICE-1"
    scans = [
        (2.0, RawScan(order, "keyboard", 2.04)),
        (2.1, RawScan(order, "camera", 2.0, "code128")),
        (6.0, RawScan("SEAL", "keyboard", 6.0)),
    ]
    clips, _ = run_table(station_cfg, scans, end=8.0, seed=3)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(order, "sealed")]


def test_product_codes_scanned_by_hand_neither_start_nor_end_a_clip(
    station_cfg: config_mod.Config,
) -> None:
    """A packer checks each item with the handheld scanner: Chinese goods (69...) and books
    (978...) before the order, during it and after the seal are items in the clip's timeline,
    never orders, never waybills (69... has ZTO's shape), never the end of the clip."""
    order = "PO-ITEMS-1"
    scans = [
        (1.0, RawScan("6901234567892", "keyboard", 1.0)),
        (2.0, RawScan(order, "keyboard", 2.0)),
        (3.0, RawScan("6920152400777", "keyboard", 3.0)),
        (4.0, RawScan("9787111213826", "keyboard", 4.0)),
        (6.0, RawScan("SEAL", "keyboard", 6.0)),
        (7.0, RawScan("6901234567892", "keyboard", 7.0)),
    ]
    clips, _ = run_table(station_cfg, scans, end=9.0, seed=4)
    assert [(c.order_id, c.finish_reason, c.waybill) for c in clips] == [(order, "sealed", None)]
    items = [(e.text, e.note) for e in clips[0].events if e.kind == "item"]
    assert items == [("6920152400777", "ean13"), ("9787111213826", "ean13")]


def test_cartons_and_gs1_labels_of_products_neither_start_nor_end_a_clip(
    station_cfg: config_mod.Config,
) -> None:
    """A carton's ITF-14 scanned by hand before the order and during it (indicator 5 gives
    ZTO's waybill shape), and a GS1-128 label (a Code 128: an order symbology) read by the
    camera during it: items in the timeline, no clip of their own, no waybill, and the
    order's clip ends at the seal."""
    order = "PO-CARTON-1"
    gs1 = "01069012345678921726123110LOT1"  # (01) GTIN (17) best before (10) lot
    scans = [
        (1.0, RawScan("16901234567899", "keyboard", 1.0)),
        (2.0, RawScan(order, "keyboard", 2.0)),
        (3.0, RawScan("56901234567897", "keyboard", 3.0)),
        (9.0, RawScan("SEAL", "keyboard", 9.0)),
    ]
    label = {"at": 4.0, "kind": "show", "code": gs1, "symbology": "code128", "duration": 1.5}
    clips, stray = run_table(station_cfg, scans, end=11.0, seed=4, shown=(label,))
    assert [(c.order_id, c.finish_reason, c.waybills) for c in clips] == [(order, "sealed", ())]
    items = [(e.text, e.note, e.source) for e in clips[0].events if e.kind == "item"]
    assert items == [("56901234567897", "itf14", "keyboard"), (gs1, "gs1", "camera")]
    assert [(e.kind, e.text) for e in stray] == [("item", "16901234567899")]


def test_a_hand_scanner_sending_symbology_identifiers_records_one_clip_of_the_order(
    station_cfg: config_mod.Config,
) -> None:
    """A scanner set to prefix each scan with its AIM identifier (]C0 Code 128, ]E0 EAN-13,
    ]I1 ITF-14): the order sheet scanned by hand and read by the camera is one order, the
    product and its carton are items, the waybill is linked and the seal card seals. Before,
    every one of them was an order: the clip of "]C0PO-AIM-1" ended as next-order on the
    camera's read of its own sheet, and again on each product and on the seal card."""
    order = "PO-AIM-1"
    scans = [
        (2.0, RawScan("]C0" + order, "keyboard", 2.0)),
        (5.0, RawScan("]E06901234567892", "keyboard", 5.0)),
        (5.5, RawScan("]I156901234567897", "keyboard", 5.5)),
        (6.0, RawScan("]C0SF1234567890123", "keyboard", 6.0)),
        (7.0, RawScan("]C0SEAL", "keyboard", 7.0)),
    ]
    sheet = {"at": 3.0, "kind": "show", "code": order, "symbology": "code128", "duration": 1.5}
    clips, stray = run_table(station_cfg, scans, end=9.0, seed=5, shown=(sheet,))
    assert [(c.order_id, c.finish_reason) for c in clips] == [(order, "sealed")]
    assert [(w.waybill, w.carrier) for w in clips[0].waybills] == [("SF1234567890123", "SF")]
    kinds = [(e.kind, e.text) for e in clips[0].events if e.source == "keyboard"]
    assert kinds == [
        ("order", order),
        ("item", "6901234567892"),
        ("item", "56901234567897"),
        ("waybill", "SF1234567890123"),
        ("seal", "SEAL"),
    ]
    assert stray == []


def test_a_seal_card_scanned_by_a_scanner_sending_code_ids_seals_the_clip(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    """A scanner set to send Honeywell Code IDs types the seal card as "jSEAL" (j: Code 128):
    it seals the order the camera opened. Before, it was an order: the clip ended as
    next-order and a clip of a buyer "jSEAL" recorded the next parcel."""
    order = "PO-CID-1"
    sheet = {"at": 1.0, "kind": "show", "code": order, "symbology": "code128", "duration": 1.5}
    scans = [(5.0, RawScan("jSEAL", "keyboard", 5.0))]
    with caplog.at_level(logging.INFO, logger="station.recording.runner"):
        clips, stray = run_table(station_cfg, scans, end=7.0, seed=4, shown=(sheet,))
    assert [(c.order_id, c.finish_reason) for c in clips] == [(order, "sealed")]
    assert [(e.kind, e.text) for e in clips[0].events if e.source == "keyboard"] == [
        ("seal", "SEAL")
    ]
    assert stray == []
    assert any("'jSEAL'" in m and "Code ID" in m for m in caplog.messages)


def two_parcels(
    cfg: config_mod.Config,
    first: str,
    second: str,
    label: str,
    *,
    seen: tuple[float, float] = (1.5, 7.0),
    then: float = 4.0,
) -> tuple[list[ClipRecord], list[ScanEventRecord]]:
    """``first`` and ``second`` (scanned at ``then``) scanned and sealed by hand, one after the
    other; ``label`` in view for 1.5 s from each time ``seen``: by default during ``first``'s
    clip, and again, after 4 s covered, during ``second``'s. Both clips must end at their
    seals. The clips, and the events indexed outside any clip."""
    scans = [
        (1.0, RawScan(first, "keyboard", 1.0)),
        (3.5, RawScan("SEAL", "keyboard", 3.5)),
        (then, RawScan(second, "keyboard", then)),
        (then + 6.0, RawScan("SEAL", "keyboard", then + 6.0)),
    ]
    shown = tuple(
        {"at": at, "kind": "show", "code": label, "symbology": "code128", "duration": 1.5}
        for at in seen
    )
    clips, stray = run_table(cfg, scans, end=then + 8.0, seed=6, shown=shown)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(first, "sealed"), (second, "sealed")]
    return clips, stray


def test_the_last_orders_sheet_seen_again_during_the_next_clip_ends_nothing(
    station_cfg: config_mod.Config,
) -> None:
    """PO-LAST-1 is packed and sealed by hand; its sheet, left at the table, is covered by the
    next parcel for 4 s and seen again while PO-NEXT-2 is recorded. It ended PO-NEXT-2's clip
    as next-order and recorded the rest of its packing as a repack of PO-LAST-1."""
    first, second = "PO-LAST-1", "PO-NEXT-2"
    clips, _ = two_parcels(station_cfg, first, second, first)
    seen = [(e.kind, e.text, e.source) for e in clips[1].events if e.source == "camera"]
    assert seen == [("order", first, "camera")]


def test_the_last_parcels_waybill_seen_again_during_the_next_clip_is_not_linked_to_it(
    station_cfg: config_mod.Config,
) -> None:
    """PO-SHIP-1's waybill label is read by the camera and linked to it; the parcel, sealed,
    stays at the table while PO-SHIP-2 is packed, and its label comes back into view: it was
    linked to PO-SHIP-2 as well, and a search by that waybill found both parcels."""
    first, second, waybill = "PO-SHIP-1", "PO-SHIP-2", "SF1234567890123"
    clips, _ = two_parcels(station_cfg, first, second, waybill)
    assert [w.waybill for w in clips[0].waybills] == [waybill]
    assert clips[1].waybills == ()


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
def test_a_waybill_first_read_with_no_clip_open_is_no_waybill_of_the_next_clip(
    station_cfg: config_mod.Config, ends: bool
) -> None:
    """PO-LOOSE-1 is packed and sealed by hand before the camera read its label; the label,
    still in view, is read with no clip open, then covered for 3.5 s and read again while
    PO-LOOSE-2 is packed. It was linked to PO-LOOSE-2's clip (its index row and signed
    manifest named another parcel's waybill) or, with waybill_ends_clip, ended that clip
    mid-packing."""
    cfg = station_cfg.replace("session", waybill_ends_clip=ends)
    first, second, waybill = "PO-LOOSE-1", "PO-LOOSE-2", "SF1234567890123"
    clips, stray = two_parcels(cfg, first, second, waybill, seen=(4.0, 9.0), then=6.0)
    assert clips[0].waybills == () and clips[1].waybills == ()
    assert [(e.kind, e.text, e.source) for e in stray] == [("waybill", waybill, "camera")]
    seen = [(e.kind, e.note.split(",")[0]) for e in clips[1].events if e.source == "camera"]
    assert seen == [("waybill", "a waybill first seen with no clip open")]


def test_after_a_restart_the_last_parcels_sheet_and_label_in_view_open_and_link_nothing(
    station_cfg: config_mod.Config,
) -> None:
    """PO-SHIP-1 is packed, its label linked, sealed; the station restarts (the same index).
    Its sheet and label still lie at the table: the camera reading the sheet opened a clip of
    PO-SHIP-1 over the table, and the label was linked to PO-SHIP-2's clip, as the session
    started with no memory of the orders packed here; it starts with the index's last ones."""
    first, second, waybill = "PO-SHIP-1", "PO-SHIP-2", "SF1234567890123"

    def show(code: str, at: float) -> dict[str, object]:
        return {"at": at, "kind": "show", "code": code, "symbology": "code128", "duration": 1.5}

    scans = [(1.0, RawScan(first, "keyboard", 1.0)), (4.0, RawScan("SEAL", "keyboard", 4.0))]
    clips, _ = run_table(station_cfg, scans, end=5.0, seed=6, shown=(show(waybill, 2.0),))
    assert [(c.order_id, [w.waybill for w in c.waybills]) for c in clips] == [(first, [waybill])]
    scans = [(4.0, RawScan(second, "keyboard", 4.0)), (9.0, RawScan("SEAL", "keyboard", 9.0))]
    clips, stray = run_table(
        station_cfg, scans, end=10.0, seed=6, shown=(show(first, 1.0), show(waybill, 6.0))
    )
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (first, "sealed"),
        (second, "sealed"),
    ]
    assert clips[1].waybills == ()
    assert [(e.text, e.source) for e in stray] == [(first, "camera")]
    seen = [(e.kind, e.text) for e in clips[1].events if e.source == "camera"]
    assert seen == [("waybill", waybill)]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_late_camera_read_of_the_last_order_never_ends_links_to_or_replaces_the_next(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    # Order A is packed; at t=4.0-4.2 the camera sees its waybill, its sheet and the seal card,
    # and at 4.3 the packer scans order B by hand. The decode queue lags: the camera's reads
    # of A reach the station only after B's clip has begun. They happened before it, so they
    # are not B's: B's clip is neither replaced by A (a "repack" of A), nor linked to A's
    # waybill, nor sealed; each is logged outside B's clip with a warning. A's waybill, read
    # while A's clip was open, is linked to A's clip (a search by it finds A).
    a, b = "PO-LATE-A", "PO-LATE-B"
    scans = [
        (0.5, RawScan(a, "keyboard", 0.5)),
        (4.3, RawScan(b, "keyboard", 4.3)),
        (4.5, RawScan("SF1234567890123", "camera", 4.0, "code128")),
        (4.6, RawScan(a, "camera", 4.1, "code128")),
        (4.7, RawScan("SEAL", "camera", 4.2, "qrcode")),
        (8.0, RawScan("SEAL", "keyboard", 8.0)),
    ]
    with caplog.at_level("WARNING", logger="station.recording.runner"):
        clips, stray = run_table(station_cfg, scans, end=10.0, seed=5)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(a, "next-order"), (b, "sealed")]
    assert clips[1].waybills == ()
    assert [w.waybill for w in clips[0].waybills] == ["SF1234567890123"]
    assert [(e.kind, e.text) for e in clips[1].events] == [("order", b), ("seal", "SEAL")]
    assert [(e.kind, e.text, e.source) for e in stray] == [
        ("waybill", "SF1234567890123", "camera"),
        ("order", a, "camera"),
        ("seal", "SEAL", "camera"),
    ]
    assert "PO-LATE-A's waybill, linked to its ended clip" in stray[0].note
    assert all("ignored" in e.note for e in stray[1:])
    warned = warnings_of(caplog)
    assert any(a in m and "t=4.100" in m and "t=4.300" in m for m in warned), warned


def test_a_late_camera_read_of_the_order_sealed_by_hand_opens_no_repack(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    # The camera reads order A's sheet at t=3.9, while A's clip is open; the packer seals the
    # parcel by hand at 4.0; the read reaches the station at 4.5, after the seal. On time it
    # would have ended A's clip (a rescan); late, it must not open a "repack" of A that then
    # records the next parcel until its order is scanned.
    a = "PO-LATE-SEALED"
    scans = [
        (0.5, RawScan(a, "keyboard", 0.5)),
        (4.0, RawScan("SEAL", "keyboard", 4.0)),
        (4.5, RawScan(a, "camera", 3.9, "code128")),
    ]
    with caplog.at_level("WARNING", logger="station.recording.runner"):
        clips, stray = run_table(station_cfg, scans, end=10.0, seed=6)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(a, "sealed")]
    assert [(e.kind, e.text, e.source) for e in stray] == [("order", a, "camera")]
    assert "before its clip ended" in stray[0].note
    assert any(a in m and "t=3.900" in m for m in warnings_of(caplog)), warnings_of(caplog)


def test_a_late_camera_read_of_the_waybill_of_the_order_sealed_by_hand_is_linked_to_its_clip(
    station_cfg: config_mod.Config,
) -> None:
    # The camera reads order A's waybill at t=3.9, while A's clip is open; the packer seals
    # by hand at 4.0; the read reaches the station at 4.5, with no clip open. It was in A's
    # frames: it is linked to A's clip (it was linked to none, so a search by it found no
    # order), and the camera reading it again while B is packed links it to no clip of B.
    a, b, waybill = "PO-LATE-LABEL-A", "PO-LATE-LABEL-B", "SF1234567890123"
    scans = [
        (0.5, RawScan(a, "keyboard", 0.5)),
        (4.0, RawScan("SEAL", "keyboard", 4.0)),
        (4.5, RawScan(waybill, "camera", 3.9, "code128")),
        (6.0, RawScan(b, "keyboard", 6.0)),
        (7.5, RawScan(waybill, "camera", 7.5, "code128")),
        (9.0, RawScan("SEAL", "keyboard", 9.0)),
    ]
    clips, stray = run_table(station_cfg, scans, end=10.0, seed=6)
    assert [(c.order_id, [w.waybill for w in c.waybills]) for c in clips] == [
        (a, [waybill]),
        (b, []),
    ]
    assert [(e.kind, e.text) for e in stray] == [("waybill", waybill)]
    assert "A's waybill, linked to its ended clip" in stray[0].note


def test_the_order_sheet_seen_again_after_a_box_covered_it_ends_nothing(
    station_cfg: config_mod.Config,
) -> None:
    # The camera reads order A's sheet at 0.5; a box covers it, and at 6.0 (well past the 3 s
    # debounce) it is read again; the packer seals at 9.0 and the sheet is read once more at
    # 12.0, still on the table. Packing went on throughout: one clip, sealed, and no repack.
    a = "PO-SHEET-A"
    scans = [(at, RawScan(a, "camera", at, "code128")) for at in (0.5, 6.0, 12.0)]
    scans.append((9.0, RawScan("SEAL", "keyboard", 9.0)))
    clips, stray = run_table(station_cfg, scans, end=15.0, seed=7)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(a, "sealed")]
    assert [(e.kind, e.note) for e in clips[0].events] == [
        ("order", ""),
        ("order", "seen again by the camera; the clip goes on"),
        ("seal", ""),
    ]
    assert [(e.kind, e.text) for e in stray] == [("order", a)]
    assert "seen again by the camera" in stray[0].note


def test_a_waybill_and_a_badge_typed_with_caps_lock_on_are_what_their_labels_print(
    station_cfg: config_mod.Config,
) -> None:
    """The hand scanner types letters in the other case (Caps Lock): the packer's badge signs
    her in and the SF waybill is linked to the open order. Before, each was a new order: the
    waybill ended the clip as next-order and recorded the rest as an order "sf1..."."""
    order = "PO-CAPS-1"
    scans = [
        (1.0, RawScan("op:ALICE", "keyboard", 1.0)),
        (2.0, RawScan(order, "keyboard", 2.0)),
        (4.0, RawScan("sf1234567890123", "keyboard", 4.0)),
        (6.0, RawScan("seal", "keyboard", 6.0)),
    ]
    clips, _ = run_table(station_cfg, scans, end=8.0, seed=4)
    assert [(c.order_id, c.finish_reason, c.packer) for c in clips] == [(order, "sealed", "alice")]
    assert [(w.waybill, w.carrier) for w in clips[0].waybills] == [("SF1234567890123", "SF")]


def test_an_order_sheet_read_by_the_camera_and_typed_with_caps_lock_on_is_one_scan(
    station_cfg: config_mod.Config,
) -> None:
    """The camera reads the sheet and opens its clip; a moment later the packer scans the
    same sheet by hand, Caps Lock on: the same label at the same moment, one scan, not a
    rescan that ends the clip just begun."""
    cfg = station_cfg.replace("codes", order_patterns=(r"^PO-CAPS-\d$",))
    order = "PO-CAPS-2"
    sheet = {"at": 1.0, "kind": "show", "code": order, "symbology": "code128", "duration": 2.0}
    scans = [(2.0, RawScan("po-caps-2", "keyboard", 2.0)), (6.0, RawScan("SEAL", "keyboard", 6.0))]
    clips, _ = run_table(cfg, scans, end=8.0, seed=4, shown=(sheet,))
    assert [(c.order_id, c.finish_reason) for c in clips] == [(order, "sealed")]


HELD = {"position": [0.5, 0.45], "size": 0.6}  # held up to the camera: near it, mid-view
LAID = {"position": [0.25, 0.7]}  # put down on the table, at its edge
UP = {"position": [0.5, 0.45], "size": 0.9}  # picked up and held up near the camera


def shown(
    code: str, at: float, duration: float, where: dict[str, object], symbology: str = "qrcode"
) -> dict[str, object]:
    """A card or label in view from ``at`` for ``duration`` seconds, ``where`` (HELD, LAID, UP)."""
    return {"at": at, "kind": "show", "code": code, "symbology": symbology,
            "duration": duration, **where}  # fmt: skip


def sealed_and_put_down(a: str, b: str) -> list[dict[str, object]]:
    """Order ``a`` scanned and sealed by the seal card held up at 3 s, the card put down in
    view (read lying there from 4.8 s to 12.5 s: one debounced sighting with the seal), order
    ``b`` scanned at 6 s."""
    return [
        {"at": 0.5, "kind": "key", "text": a},
        shown("SEAL", 3.0, 1.5, HELD),
        shown("SEAL", 4.5, 8.0, LAID),
        {"at": 6.0, "kind": "key", "text": b},
    ]


def test_the_seal_card_lying_in_view_seen_again_after_a_parcel_covered_it_seals_nothing(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    """The packer shows the seal card to end PO-LAY-A's clip and puts it down in view; PO-LAY-B
    is scanned; the card lies in view for 8 s, then its parcel covers it for 6 s (longer than
    the 3 s debounce) and is moved away. The card read again where it lay is no seal: it
    ended PO-LAY-B's clip as sealed mid-packing, the rest of the packing unrecorded. Held up
    again, it seals."""
    a, b = "PO-LAY-A", "PO-LAY-B"

    events = [
        *sealed_and_put_down(a, b),
        shown("SEAL", 18.5, 4.0, LAID),  # covered 12.5-18.5, seen again where it lay
        shown("SEAL", 27.0, 1.5, HELD),  # held up again: seals B
        {"at": 30.0, "kind": "end"},
    ]
    with caplog.at_level("INFO", logger="station.recording.runner"):
        clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(a, "sealed"), (b, "sealed")]
    lay = [r.getMessage() for r in caplog.records if "where it lay before" in r.getMessage()]
    assert len(lay) == 1 and "'SEAL'" in lay[0] and "ignored" in lay[0], lay
    assert [(e.kind, e.source, e.note.split(",")[0]) for e in clips[1].events] == [
        ("order", "script", ""),
        ("seal", "camera", "lying where it lay before"),
        ("seal", "camera", ""),
    ]
    assert clips[1].duration_s > 27.0 - 6.0  # sealed by the card held up, not where it lay
    assert ledger.unattached_events() == []
    ledger.close()


@pytest.mark.parametrize("covered", [4.0, 13.5])
def test_the_seal_card_put_down_and_covered_soon_after_seals_nothing_when_uncovered(
    station_cfg: config_mod.Config, covered: float
) -> None:
    """The seal card shown to end PO-SOON-A's clip is put down in view, PO-SOON-B scanned, and
    2 s after it was put down (before it lay there 5 s) PO-SOON-B's parcel covers it, for
    ``covered`` seconds (longer than the 3 s debounce), then again. Each uncovering was a new
    sighting at no place where it lay: a seal, ending PO-SOON-B's clip mid-packing. It is
    where it was last read, a moment before or while PO-SOON-B's clip ran: no seal."""
    a, b = "PO-SOON-A", "PO-SOON-B"
    again = 6.5 + covered
    events = [
        {"at": 0.5, "kind": "key", "text": a},
        shown("SEAL", 3.0, 1.5, HELD),  # seals A
        shown("SEAL", 4.5, 2.0, LAID),  # put down, read lying there for less than 5 s
        {"at": 5.0, "kind": "key", "text": b},
        shown("SEAL", again, 1.5, LAID),  # uncovered where it lay
        shown("SEAL", again + 1.5 + covered, 1.5, LAID),  # and again
        {"at": again + 2 * covered + 4.0, "kind": "key", "text": "SEAL"},  # B sealed by hand
        {"at": again + 2 * covered + 5.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(a, "sealed"), (b, "sealed")]
    assert [(e.kind, e.source, e.card) for e in clips[1].events] == [
        ("order", "script", ""),
        ("seal", "camera", LYING_CARD),
        ("seal", "camera", LYING_CARD),
        ("seal", "script", ""),
    ]
    assert ledger.unattached_events() == []
    ledger.close()


def test_the_seal_card_shown_then_put_down_and_covered_before_the_next_scan_seals_nothing(
    station_cfg: config_mod.Config,
) -> None:
    """The seal card held up to seal PO-DOWN-A is put down in view and covered 2 s later (it
    never lay there 5 s), before PO-DOWN-B is scanned; PO-DOWN-B's parcel is moved off it 7.5
    s after its last read there. The card seen again where it was put down sealed PO-DOWN-B
    6 s into its packing, the rest of it unrecorded: it is lying there, no seal. B is sealed
    by hand."""
    a, b = "PO-DOWN-A", "PO-DOWN-B"
    events = [
        {"at": 0.5, "kind": "key", "text": a},
        shown("SEAL", 3.0, 1.5, UP),  # held up: seals A
        shown("SEAL", 4.5, 2.0, LAID),  # put down, covered at 6.5
        {"at": 8.0, "kind": "key", "text": b},
        shown("SEAL", 14.0, 1.5, LAID),  # uncovered where it was put down
        {"at": 19.0, "kind": "key", "text": "SEAL"},  # B sealed by hand (after the debounce)
        {"at": 20.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(a, "sealed"), (b, "sealed")]
    first, last = clips[1].events[0], clips[1].events[-1]
    assert first.t_clip_s is not None and last.t_clip_s is not None
    assert last.t_clip_s - first.t_clip_s > 19.0 - 8.0 - 0.5  # sealed by hand, not at 14 s
    assert [(e.kind, e.source, e.card) for e in clips[1].events] == [
        ("order", "script", ""),
        ("seal", "camera", LYING_CARD),
        ("seal", "script", ""),
    ]
    ledger.close()


def test_the_seal_card_put_down_from_out_of_view_and_covered_soon_seals_nothing_uncovered(
    station_cfg: config_mod.Config,
) -> None:
    """The seal card, never shown, is put down in view by a hand coming from the side after
    PO-SIDE-A was sealed by hand, and covered 2 s later (it never lay there 5 s), before
    PO-SIDE-B is scanned; PO-SIDE-B's parcel is moved off it 9 s after its last read there.
    The card seen again where it stayed sealed PO-SIDE-B 6 s into its packing, the rest of it
    unrecorded: it was never read farther from the camera than there, so it is lying, no seal.
    Held up to the camera (nearer), it seals B."""
    a, b = "PO-SIDE-A", "PO-SIDE-B"
    events = [
        {"at": 0.5, "kind": "key", "text": a},
        {"at": 2.0, "kind": "key", "text": "SEAL"},  # A sealed by hand
        shown("SEAL", 2.5, 2.0, LAID),  # put down from the side, covered at 4.5
        {"at": 8.0, "kind": "key", "text": b},
        shown("SEAL", 13.5, 1.5, LAID),  # uncovered where it stayed
        shown("SEAL", 19.0, 1.5, UP),  # held up (after the debounce): seals B
        {"at": 22.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(a, "sealed"), (b, "sealed")]
    first, last = clips[1].events[0], clips[1].events[-1]
    assert first.t_clip_s is not None and last.t_clip_s is not None
    assert last.t_clip_s - first.t_clip_s > 19.0 - 8.0 - 0.5  # sealed held up, not at 13.5 s
    assert [(e.kind, e.source, e.card) for e in clips[1].events] == [
        ("order", "script", ""),
        ("seal", "camera", LYING_CARD),
        ("seal", "camera", ""),
    ]
    ledger.close()


def test_the_seal_card_lying_while_the_order_was_recorded_seals_nothing_after_a_camera_loss(
    station_cfg: config_mod.Config,
) -> None:
    """The seal card is put down in view after PO-GAP-A was sealed by hand, read lying there
    while PO-GAP-B is scanned, and covered 2 s after it was put down (it never lay there 5 s);
    the camera is lost for a moment and PO-GAP-B's clip resumes. Uncovered 7.5 s after its last
    read there, it was taken as shown (its last read was before the resumed clip began) and
    sealed PO-GAP-B mid-packing: it lay in view, unmoved, while that order was recorded."""
    a, b = "PO-GAP-A", "PO-GAP-B"
    events = [
        {"at": 0.5, "kind": "key", "text": a},
        {"at": 2.0, "kind": "key", "text": "SEAL"},  # A sealed by hand
        shown("SEAL", 5.5, 3.0, LAID),  # put down (no open order), read lying till about 8.2
        {"at": 7.0, "kind": "key", "text": b},
        shown("SEAL", 16.0, 1.5, LAID),  # uncovered where it lay, in B's resumed clip
        {"at": 21.0, "kind": "key", "text": "SEAL"},  # B sealed by hand
        {"at": 22.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events, outages=(Outage(100, 2),))  # lost at about 10 s
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (a, "sealed"),
        (b, "camera-lost"),
        (b, "sealed"),
    ]
    assert [(e.kind, e.source, e.card) for e in clips[2].events] == [
        ("seal", "camera", LYING_CARD),
        ("seal", "script", ""),
    ]
    ledger.close()


def test_a_seal_card_held_up_still_at_the_same_place_for_each_order_seals_each(
    station_cfg: config_mod.Config,
) -> None:
    """A careful packer holds the seal card up at the same spot for 3 s, until the beep and a
    moment more, for every order: that is a gesture each time, not a card put down there. (The
    showings for A and B were one stay there of 11 s: C's was taken as the card lying.) The
    card was read on the table at the start, so that spot is known to be nearer the camera:
    one never read farther away than where it was last shown is taken as lying there."""
    a, b, c = "PO-HOLD-A", "PO-HOLD-B", "PO-HOLD-C"

    def card(at: float) -> dict[str, object]:
        return {"at": at, "kind": "show", "code": "SEAL", "symbology": "qrcode",
                "duration": 3.0, **UP}  # fmt: skip

    events = [
        shown("SEAL", 0.0, 1.0, LAID),  # on the table at the start of the shift
        {"at": 2.0, "kind": "key", "text": a},
        card(6.0),  # seals A
        {"at": 11.0, "kind": "key", "text": b},
        card(17.0),  # held up again, at the same spot: seals B
        {"at": 22.0, "kind": "key", "text": c},
        card(28.0),  # and again: seals C
        {"at": 33.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(o, "sealed") for o in (a, b, c)]
    for clip in clips[1:]:  # sealed by the card held up, not at the end of input
        last = clip.events[-1]
        assert (last.kind, last.source, last.note, last.card) == ("seal", "camera", "", "")
    ledger.close()


def test_the_seal_card_picked_up_from_where_it_lay_and_shown_within_the_debounce_seals(
    station_cfg: config_mod.Config,
) -> None:
    """The packer seals PO-PICK-A with the card and puts it down in view; it lies there, read
    on and on, while PO-PICK-B is scanned and packed; then it is picked up and held up to
    seal B, 0.5 s after its last read where it lay. One sighting for the debounce: the seal
    was missed and B's clip ran on past it (over the next buyer's goods)."""
    a, b = "PO-PICK-A", "PO-PICK-B"

    events = [
        *sealed_and_put_down(a, b),
        shown("SEAL", 13.0, 1.5, UP),  # picked up 0.5 s after its last read lying: seals B
        {"at": 20.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(a, "sealed"), (b, "sealed")]
    first, last = clips[1].events[0], clips[1].events[-1]
    assert (last.kind, last.source, last.note, last.card) == ("seal", "camera", "", "")
    assert first.t_clip_s is not None and last.t_clip_s is not None
    assert 13.0 - 6.0 <= last.t_clip_s - first.t_clip_s < 14.5 - 6.0  # sealed when held up
    assert ledger.unattached_events() == []  # shown once: one seal
    ledger.close()


def test_the_seal_card_lifted_only_a_little_within_the_debounce_is_a_missed_seal(
    station_cfg: config_mod.Config,
) -> None:
    """The seal card lying in view is lifted a little (its code 1.25 times larger, less than
    HELD_UP) 0.5 s after its last read where it lay: as a card pushed and turned at the table,
    it is no showing. The seal is missed, not taken: PO-LIFT-B's clip runs on to PO-LIFT-C's
    scan, which starts its own clip at once; no second is lost (a false seal would have ended
    B's clip mid-packing, the rest unrecorded)."""
    a, b, c = "PO-LIFT-A", "PO-LIFT-B", "PO-LIFT-C"
    events = [
        *sealed_and_put_down(a, b),
        shown("SEAL", 13.0, 1.5, {"position": [0.3, 0.6], "size": 0.5}),  # lifted a little
        {"at": 16.0, "kind": "key", "text": c},
        {"at": 18.0, "kind": "key", "text": "SEAL"},
        {"at": 19.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [
        (a, "sealed"),
        (b, "next-order"),
        (c, "sealed"),
    ]
    assert [e.kind for e in clips[1].events] == ["order"]
    assert clips[1].duration_s >= 16.0 - 6.0  # its scan (and pre-roll) to C's
    assert clips[2].duration_s == pytest.approx(18.0 - 16.0, abs=0.2)  # C's from its scan on
    ledger.close()


def test_the_return_card_picked_up_from_where_it_lay_and_shown_makes_a_return(
    station_cfg: config_mod.Config,
) -> None:
    """The return card shown for PO-PICK-R1 and put down in view, read on and on while R1 is
    unboxed and sealed; picked up and shown for the next returned parcel 0.5 s after its last
    read where it lay. One sighting for the debounce: PO-PICK-R2 was recorded as an order."""
    r1, r2 = "PO-PICK-R1", "PO-PICK-R2"

    events = [
        shown("RETURN", 0.5, 1.5, HELD),  # the next clip is a return
        shown("RETURN", 2.0, 8.0, LAID),  # lying in view from 2.3 to 10.0
        {"at": 3.0, "kind": "key", "text": r1},
        {"at": 9.0, "kind": "key", "text": "SEAL"},
        shown("RETURN", 10.5, 1.5, UP),  # picked up and shown: the next clip is a return
        {"at": 13.0, "kind": "key", "text": r2},
        {"at": 15.0, "kind": "key", "text": "SEAL"},
        {"at": 16.0, "kind": "end"},
    ]
    clips, ledger = run(station_cfg, events)
    assert [(c.order_id, c.kind) for c in clips] == [(r1, "return"), (r2, "return")]
    ledger.close()


def test_a_return_label_lying_in_view_seen_again_makes_no_later_clip_a_return(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    """A returned parcel's label read by the camera makes the next clip, PO-RET-A, a return;
    the parcel lies at the table with its label in view, covered by hands for 4 s while it is
    unboxed and uncovered. Seen again where it lay, the label made the clip after it,
    PO-RET-B, an ordinary order packed later, a "return" too."""
    cfg = station_cfg.replace("codes", return_patterns=("^RT\\d{10}$",))
    a, b, label = "PO-RET-A", "PO-RET-B", "RT0123456789"

    events = [
        shown(label, 0.5, 7.0, LAID, "code128"),  # the returned parcel put down, label in view
        {"at": 2.0, "kind": "key", "text": a},  # its order: a return
        shown(label, 11.5, 4.0, LAID, "code128"),  # covered 7.5-11.5, seen again where it lay
        {"at": 16.0, "kind": "key", "text": "SEAL"},
        {"at": 18.0, "kind": "key", "text": b},
        {"at": 20.0, "kind": "key", "text": "SEAL"},
        {"at": 21.0, "kind": "end"},
    ]
    with caplog.at_level("INFO", logger="station.recording.runner"):
        clips, ledger = run(cfg, events)
    assert [(c.order_id, c.kind) for c in clips] == [(a, "return"), (b, "order")]
    lay = [r.getMessage() for r in caplog.records if "where it lay before" in r.getMessage()]
    assert len(lay) == 1 and label in lay[0], lay
    assert [(e.kind, e.source, e.card) for e in clips[0].events] == [
        ("order", "script", ""),
        ("return", "camera", LYING_CARD),
        ("seal", "script", ""),
    ]
    ledger.close()


def test_a_camera_only_station_records_a_repack_after_the_repack_card_not_after_it_lying(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    """No hand scanner: PO-RE-A is packed and sealed by the camera; its sheet shown again
    opens nothing (it may lie in view). The repack card held up, then the sheet shown: its
    repack is recorded. The card put down in view and seen again where it lay after a parcel
    covered it: no repack, the sheet shown then opens nothing."""
    cfg = station_cfg.replace("codes", control_codes={"REPACK": "repack"})
    cfg = cfg.replace("session", repack_window_s=5.0)
    a = "PO-RE-A"

    def sheet(at: float) -> dict[str, object]:
        return shown(a, at, 1.5, HELD, "code128")

    events = [
        sheet(0.5),
        shown("SEAL", 3.0, 1.5, HELD),
        sheet(6.0),  # packed here: nothing
        shown("REPACK", 9.0, 1.5, HELD),
        sheet(11.0),  # the repack
        shown("SEAL", 14.0, 1.5, UP),  # held up nearer than at 3 s (there it would be lying)
        shown("REPACK", 17.0, 8.0, LAID),  # put down: read lying there from 22 on
        shown("REPACK", 31.0, 4.0, LAID),  # covered 25-31, seen again where it lay
        sheet(32.0),  # nothing
        {"at": 37.0, "kind": "end"},
    ]
    with caplog.at_level("INFO", logger="station.recording.runner"):
        clips, ledger = run(cfg, events)
    assert [(c.order_id, c.finish_reason) for c in clips] == [(a, "sealed"), (a, "sealed")]
    assert clips[1].repack_of == [clips[0].id]
    assert clips[1].events[0].t_clip_s is not None
    lay = [r.getMessage() for r in caplog.records if "where it lay before" in r.getMessage()]
    assert len(lay) == 1 and "'REPACK'" in lay[0], lay
    stray = [(e.kind, e.text, e.card) for e in ledger.unattached_events()]
    assert stray == [
        ("order", a, ""),
        ("control", "REPACK", "repack"),
        ("control", "REPACK", "repack"),
        ("control", "REPACK", LYING_CARD),
        ("order", a, ""),
    ]
    ledger.close()


def test_a_code39_order_sheet_with_shift_pairs_starts_its_order_as_printed(
    station_cfg: config_mod.Config,
) -> None:
    """A Code 39 "PO/A12" is that order to the camera, as to a hand scanner at its defaults,
    not the full-ASCII "PO!12" (a read of no order symbology, which started nothing)."""
    order = "PO/A12"
    sheet = {"at": 1.0, "kind": "show", "code": order, "symbology": "code39", "duration": 2.0}
    scans = [(6.0, RawScan("SEAL", "keyboard", 6.0))]
    clips, _ = run_table(station_cfg, scans, end=8.0, seed=4, shown=(sheet,))
    assert [(c.order_id, c.finish_reason) for c in clips] == [(order, "sealed")]
    first = clips[0].events[0]
    assert (first.kind, first.text, first.source) == ("order", order, "camera")


def test_a_code_of_no_order_symbology_is_logged_as_such_not_as_a_pattern_mismatch(
    station_cfg: config_mod.Config, caplog: pytest.LogCaptureFixture
) -> None:
    """A Code 128 in view on a station that takes orders from QR codes only is ignored with an
    INFO line naming its symbology; the WARNING about order patterns is for a code of an order
    symbology that matches none (a misconfiguration or a foreign sheet), not for this."""
    cfg = station_cfg.replace("codes", order_symbologies=("qrcode",), order_patterns=(r"^PO-",))
    shown = (
        {"at": 1.0, "kind": "show", "code": "CARTON-77", "symbology": "code128", "duration": 2.0},
        {"at": 4.0, "kind": "show", "code": "XX-1", "symbology": "qrcode", "duration": 2.0},
    )
    with caplog.at_level("INFO", logger="station.recording.runner"):
        clips, _ = run_table(cfg, [], end=8.0, seed=4, shown=shown)
    assert clips == []
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    carton = [(lvl, m) for lvl, m in lines if "'CARTON-77'" in m and "ignored" in m]
    assert carton == [("INFO", carton[0][1])] and "code128" in carton[0][1], lines
    assert ("WARNING", "code 'XX-1' matches no configured order pattern") in lines
    assert not any(lvl == "WARNING" and "CARTON-77" in m for lvl, m in lines)
