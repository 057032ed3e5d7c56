"""Only a seal is a clip's "seal" key frame: a return, sign-out or test card is not."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime

import pytest

from central import media
from station import config as config_mod
from station.capture.synthetic import Scenario, SyntheticCamera
from station.proof.verify import verify_clip
from station.service import assemble
from station.store.clips import LYING_CARD, event_card
from station.store.ledger import INDEX_NAME, ClipRecord, ScanEventRecord
from web.frames import keyframes

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _clip(*events: tuple[str, str, float, str] | tuple[str, str, float, str, str]) -> ClipRecord:
    """A 10 s clip of PO-1 whose timeline is ``events`` (kind, text, t_clip_s, note[, card]),
    with the archived key frames the archiver cut at each of them (labelled by the event's
    kind)."""
    evs = tuple(ScanEventRecord(k, text, "hid", NOW, t, *more) for k, text, t, *more in events)
    frames = [{"key": f"f/{e[2]:07.2f}s_{e[0]}.jpg", "t": e[2], "label": e[0]} for e in events]
    return ClipRecord("PO-1", "st", NOW, NOW, 10.0, 300, "sealed", 1.0, "clips/a.mp4",
                      "clips/a.json", 10, "0" * 64, id=7, events=evs,
                      extra={"archive_key": "k", "archive_meta": {"frames": frames}})  # fmt: skip


ORDER = ("order", "PO-1", 1.0, "")
LYING = "lying where it lay before, seen again by the camera; ignored (hold it up or scan it)"
# What the session logs in an open clip for each card that is no seal (recording/session.py).
NOT_SEALS = [
    pytest.param(("control", "RETURN", 4.0, "the next clip is a return", "return"), id="return"),
    pytest.param(("control", "SIGNOUT", 4.0, "packer ann signed out", "signout"), id="sign-out"),
    pytest.param(("control", "TEST", 4.0, "test scan", "test"), id="test card"),
    # the card says what it was, whatever the note says (none here)
    pytest.param(("control", "TEST", 4.0, "", "test"), id="test card with no note"),
    pytest.param(("seal", "SEAL", 4.0, LYING, LYING_CARD), id="seal card lying where it lay"),
    pytest.param(("control", "SEAL", 4.0, LYING, LYING_CARD), id="control seal card lying"),
]


@pytest.mark.parametrize("card", NOT_SEALS)
def test_a_control_card_that_is_no_seal_is_no_seal_frame(card: tuple[str, ...]) -> None:
    clip = _clip(ORDER, card)  # the clip then ended on the next order: no seal
    assert [k.kind for k in keyframes(clip)] == ["order", "end"]
    assert [k.kind for k in media.keyframes(clip)] == ["order"]


@pytest.mark.parametrize(
    "seal",
    [
        pytest.param(("seal", "SEAL", 5.0, ""), id="seal card"),
        pytest.param(("control", "SEAL", 5.0, "", "seal"), id="control card set to seal"),
        pytest.param(("control", "SEAL", 5.0, "sealed", "seal"), id="seal card with a note"),
        pytest.param(("pedal", "", 5.0, ""), id="pedal"),
    ],
)
def test_a_seal_is_the_seal_frame(seal: tuple[str, ...]) -> None:
    clip = _clip(ORDER, seal)
    assert [(k.kind, k.t) for k in keyframes(clip)] == [("order", 1.0), ("seal", 5.0)]
    assert [(k.kind, k.t) for k in media.keyframes(clip)] == [("order", 1.0), ("seal", 5.0)]


@pytest.mark.parametrize(
    ("event", "card"),
    [
        ({"kind": "control", "note": "", "card": "test"}, "test"),
        ({"kind": "seal", "note": ""}, ""),
        # recorded before events named their card: the session logged the seal card alone
        # with no note (index version 10 and event_card)
        ({"kind": "control", "note": ""}, "seal"),
        ({"kind": "control", "note": "test scan"}, ""),
    ],
)
def test_the_card_of_an_event_stored_as_json(event: dict[str, str], card: str) -> None:
    assert event_card(event) == card


def test_the_station_records_what_each_control_card_did(cfg: config_mod.Config) -> None:
    """A test card and a control card set to seal scanned in a clip: the index, the signed
    manifest and the seal frame all say which was the seal, and the clip verifies."""
    cfg = cfg.replace("camera", width=160, height=96, fps=10.0)
    cfg = cfg.replace("scanner", camera_decode=False)
    cfg = cfg.replace("codes", control_codes={"PING": "test", "STOP": "seal"})
    keys = [(0.5, "PO-1"), (1.5, "PING"), (3.0, "STOP")]
    events = [{"at": at, "kind": "key", "text": text} for at, text in keys]
    scenario = Scenario.from_dict({"seed": 3, "event": [*events, {"at": 4.0, "kind": "end"}]})
    asm = assemble(cfg, camera=SyntheticCamera(160, 96, 10.0, scenario, realtime=False),
                   live_view=False)  # fmt: skip
    try:
        asm.station.run(threading.Event())
        (clip,) = asm.ledger.clips()
    finally:
        asm.close()
    assert [(e.text, e.card) for e in clip.events] == [("PO-1", ""), ("PING", "test"),
                                                       ("STOP", "seal")]  # fmt: skip
    signed = json.loads((cfg.station.data_dir / clip.manifest_path).read_text("utf-8"))
    assert [e.get("card") for e in signed["events"]] == [None, "test", "seal"]
    (seal,) = [k for k in keyframes(clip) if k.kind == "seal"]
    assert seal.text == "STOP"
    report = verify_clip(cfg.station.data_dir / clip.path, cfg)
    assert report.ok, [c for c in report.checks if c.status != "ok"]
    # the seal told as a test card in the index (its seal frame gone): the signed manifest
    # says otherwise
    with sqlite3.connect(cfg.station.data_dir / INDEX_NAME) as conn:
        conn.execute("UPDATE scan_events SET card = 'test' WHERE text = 'STOP'")
    conn.close()
    (row,) = [c for c in verify_clip(cfg.station.data_dir / clip.path, cfg).checks
              if c.name == "index.row"]  # fmt: skip
    assert row.status == "fail" and "scan events" in row.reason
