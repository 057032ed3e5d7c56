"""The pedal pressed a moment after the next order's clip opened: the parcel before's seal."""

from __future__ import annotations

import pytest

from station.capture.codes import Code, Kind
from station.capture.frames import PedalPress
from station.config import SessionSection
from station.recording.session import (
    PEDAL_LATE_S,
    CameraBack,
    CameraLost,
    ClipRefused,
    FinishReason,
    Idle,
    LogEvent,
    Recording,
    Scanned,
    StopClip,
    step,
)

RULES = SessionSection()
ORDER_A = Code("PO-A", Kind.ORDER)
ORDER_B = Code("PO-B", Kind.ORDER)


def packing_a() -> Recording:
    state, _ = step(Idle(), Scanned(ORDER_A, 2.0, "keyboard"), RULES)
    assert isinstance(state, Recording)
    return state


def sealed(state: object, actions: list[object]) -> bool:
    return isinstance(state, Idle) and any(isinstance(a, StopClip) for a in actions)


@pytest.mark.parametrize("source", ["camera", "keyboard"])
@pytest.mark.parametrize("after", [0.0, 0.05, 0.5])
def test_a_pedal_press_just_after_the_next_order_opened_its_clip_is_the_parcel_befores(
    source: str, after: float
) -> None:
    """PO-B's sheet was read by the camera (or scanned by hand) at 20.0 while the packer
    sealed PO-A with the pedal a moment late, at 20.05: that press sealed PO-B's clip 0.05 s
    in, and PO-B was packed in no clip. It is PO-A's; PO-B's clip goes on, and the press is
    logged outside it."""
    opened, _ = step(packing_a(), Scanned(ORDER_B, 20.0, source), RULES)
    t = round(20.0 + after, 6)
    new, actions = step(opened, PedalPress(t), RULES)
    assert new == opened
    (logged,) = actions
    assert isinstance(logged, LogEvent) and logged.kind == "pedal" and not logged.in_clip
    assert "the parcel before" in logged.note and "'PO-B'" in logged.note


def test_a_pedal_press_later_in_the_clip_still_seals_it() -> None:
    opened, _ = step(packing_a(), Scanned(ORDER_B, 20.0), RULES)
    new, actions = step(opened, PedalPress(20.0 + PEDAL_LATE_S), RULES)
    assert sealed(new, actions)
    assert StopClip(FinishReason.SEALED, 20.0 + PEDAL_LATE_S) in actions
    # A first press ignored does not stop a second, later one.
    first, _ = step(opened, PedalPress(20.05), RULES)
    assert sealed(*step(first, PedalPress(21.5), RULES))


def test_the_first_order_of_the_day_gets_the_same_window() -> None:
    # (a press just after it: nothing is packed in that time, whatever it was meant for)
    opened, _ = step(Idle(), Scanned(ORDER_A, 5.0), RULES)
    assert step(opened, PedalPress(5.05), RULES)[0] == opened


def test_a_clip_that_resumes_an_order_after_a_camera_loss_is_sealed_at_once() -> None:
    """Its packing went on in the dark: a press as the camera comes back is its seal."""
    lost, _ = step(packing_a(), CameraLost(10.0), RULES)
    back, _ = step(lost, CameraBack(12.0), RULES)
    assert isinstance(back, Recording) and back.order_id == "PO-A"
    assert sealed(*step(back, PedalPress(12.05), RULES))


def test_an_order_scanned_in_the_dark_is_sealed_at_once_when_the_camera_is_back() -> None:
    dark, _ = step(Idle(), CameraLost(1.0), RULES)
    waiting, _ = step(dark, Scanned(ORDER_A, 2.0, "keyboard"), RULES)
    back, _ = step(waiting, CameraBack(12.0), RULES)
    assert isinstance(back, Recording)
    assert sealed(*step(back, PedalPress(12.05), RULES))


def test_a_refused_order_recorded_when_its_sheet_is_seen_again_is_sealed_at_once() -> None:
    """PO-A's clip was refused at 2.0 and it was packed on with no clip; its sheet seen
    again at 20.0 opens its clip: that packing began at 2.0, so the press at 20.05 seals it."""
    refused, _ = step(packing_a(), ClipRefused("PO-A", 2.0, "disk full"), RULES)
    assert isinstance(refused, Idle) and refused.unrecorded == "PO-A"
    reopened, _ = step(refused, Scanned(ORDER_A, 20.0), RULES)
    assert isinstance(reopened, Recording) and reopened.order_id == "PO-A"
    assert sealed(*step(reopened, PedalPress(20.05), RULES))


def test_the_next_order_after_a_refused_one_gets_the_window() -> None:
    """PO-A packed with no clip (refused); PO-B's scan opens its clip with no pre-roll; the
    pedal a moment after is PO-A's seal, a moment late."""
    refused, _ = step(packing_a(), ClipRefused("PO-A", 2.0, "disk full"), RULES)
    opened, _ = step(refused, Scanned(ORDER_B, 20.0), RULES)
    assert step(opened, PedalPress(20.05), RULES)[0] == opened
