"""Only a seal is a clip's "seal" key frame: a return, sign-out or test card is not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from central import media
from station.store.ledger import ClipRecord, ScanEventRecord
from web.frames import keyframes

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _clip(*events: tuple[str, str, float, str]) -> ClipRecord:
    """A 10 s clip of PO-1 whose timeline is ``events`` (kind, text, t_clip_s, note), with the
    archived key frames the archiver cut at each of them (labelled by the event's kind)."""
    evs = tuple(ScanEventRecord(k, text, "hid", NOW, t, note) for k, text, t, note in events)
    frames = [{"key": f"f/{t:07.2f}s_{k}.jpg", "t": t, "label": k} for k, _x, t, _n in events]
    return ClipRecord("PO-1", "st", NOW, NOW, 10.0, 300, "sealed", 1.0, "clips/a.mp4",
                      "clips/a.json", 10, "0" * 64, id=7, events=evs,
                      extra={"archive_key": "k", "archive_meta": {"frames": frames}})  # fmt: skip


ORDER = ("order", "PO-1", 1.0, "")
LYING = "lying where it lay before, seen again by the camera; ignored (hold it up or scan it)"
# What the session logs in an open clip for each card that is no seal (recording/session.py).
NOT_SEALS = [
    pytest.param(("control", "RETURN", 4.0, "the next clip is a return"), id="return card"),
    pytest.param(("control", "SIGNOUT", 4.0, "packer ann signed out"), id="sign-out card"),
    pytest.param(("control", "TEST", 4.0, "test scan"), id="test card"),
    pytest.param(("seal", "SEAL", 4.0, LYING), id="seal card lying where it lay"),
]


@pytest.mark.parametrize("card", NOT_SEALS)
def test_a_control_card_that_is_no_seal_is_no_seal_frame(card: tuple[str, str, float, str]) -> None:
    clip = _clip(ORDER, card)  # the clip then ended on the next order: no seal
    assert [k.kind for k in keyframes(clip)] == ["order", "end"]
    assert [k.kind for k in media.keyframes(clip)] == ["order"]


@pytest.mark.parametrize(
    "seal",
    [
        pytest.param(("seal", "SEAL", 5.0, ""), id="seal card"),
        pytest.param(("control", "SEAL", 5.0, ""), id="control card set to seal"),
        pytest.param(("pedal", "", 5.0, ""), id="pedal"),
    ],
)
def test_a_seal_is_the_seal_frame(seal: tuple[str, str, float, str]) -> None:
    clip = _clip(ORDER, seal)
    assert [(k.kind, k.t) for k in keyframes(clip)] == [("order", 1.0), ("seal", 5.0)]
    assert [(k.kind, k.t) for k in media.keyframes(clip)] == [("order", 1.0), ("seal", 5.0)]
