"""The pedal pressed, or a seal card shown or scanned, a moment after the next order's clip
opened: the parcel before's seal, a moment late."""

from __future__ import annotations

import pytest

from station.capture.codes import Code, Kind
from station.capture.frames import PedalPress
from station.config import SessionSection
from station.recording.session import (
    PEDAL_LATE_S,
    SEAL_LATE_S,
    CameraBack,
    CameraLost,
    ClipRefused,
    FinishReason,
    Idle,
    LinkWaybill,
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


# ---- seal cards: the same moment ----------------------------------------------------------

SEAL = Code("SEAL", Kind.SEAL)
STOP = Code("STOP", Kind.CONTROL, "seal")  # a control card configured to seal
WAYBILL_B = Code("SF1000000000002", Kind.WAYBILL, "SF")


def opened_b(source: str = "camera") -> Recording:
    """PO-A packed from 2.0; PO-B's sheet read (or scanned) at 20.0 opens its clip."""
    state, _ = step(packing_a(), Scanned(ORDER_B, 20.0, source), RULES)
    assert isinstance(state, Recording) and state.order_id == "PO-B" and state.at_scan
    return state


def test_the_pedal_and_a_seal_card_share_one_window() -> None:
    assert PEDAL_LATE_S == SEAL_LATE_S == 1.0


@pytest.mark.parametrize("card", [SEAL, STOP])
@pytest.mark.parametrize("source", ["camera", "keyboard"])
@pytest.mark.parametrize("after", [0.05, 0.3, 0.95])
def test_a_seal_card_just_after_the_next_order_opened_its_clip_is_the_parcel_befores(
    card: Code, source: str, after: float
) -> None:
    """PO-B's sheet opened its clip at 20.0; the seal card for PO-A, held up to the camera a
    moment late (first read 0.3 s after the sheet) or scanned by hand just after the sheet,
    sealed PO-B's clip 0.3 s in, and PO-B was packed in no clip. It is PO-A's seal: PO-B's
    clip goes on, and the card is logged outside it, saying why."""
    opened = opened_b()
    t = round(20.0 + after, 6)
    new, actions = step(opened, Scanned(card, t, source), RULES)
    assert new == opened
    (logged,) = actions
    assert isinstance(logged, LogEvent) and not logged.in_clip
    assert (logged.kind, logged.text, logged.source) == (card.kind.value, card.text, source)
    assert "the parcel before's seal" in logged.note and "'PO-B'" in logged.note
    assert f"{after:.2f} s after" in logged.note


@pytest.mark.parametrize("source", ["camera", "keyboard"])
def test_a_seal_card_a_second_after_the_scan_seals_the_clip(source: str) -> None:
    opened = opened_b()
    t = 20.0 + SEAL_LATE_S
    new, actions = step(opened, Scanned(SEAL, t, source), RULES)
    assert sealed(new, actions) and StopClip(FinishReason.SEALED, t) in actions
    # A card ignored in the window does not stop a later one (the debounce aside).
    first, _ = step(opened, Scanned(SEAL, 20.3, source), RULES)
    assert sealed(*step(first, Scanned(SEAL, 24.0, source), RULES))


def test_a_camera_read_counts_from_its_first_look() -> None:
    """A card first looked at 0.8 s after the sheet and confirmed at 1.1 s was shown in the
    moment after it: the parcel before's. One first looked at after the second seals."""
    opened = opened_b()
    late = Scanned(SEAL, 21.1, "camera", first_t=20.8)
    assert step(opened, late, RULES)[0] == opened
    assert sealed(*step(opened, Scanned(SEAL, 21.2, "camera", first_t=21.05), RULES))


def test_a_seal_card_lying_where_it_lay_is_still_ignored_as_lying() -> None:
    opened = opened_b()
    new, (logged,) = step(opened, Scanned(SEAL, 20.3, "camera", lying=True), RULES)
    assert new == opened and "lying where it lay" in logged.note


def test_clips_that_resume_a_packing_are_sealed_by_a_card_at_once() -> None:
    """After a camera loss, or when a refused order's sheet opens its clip, the packing went
    on before the clip opened: a card a moment after is its seal."""
    lost, _ = step(packing_a(), CameraLost(10.0), RULES)
    back, _ = step(lost, CameraBack(12.0), RULES)
    assert sealed(*step(back, Scanned(SEAL, 12.3, "keyboard"), RULES))
    refused, _ = step(packing_a(), ClipRefused("PO-A", 2.0, "disk full"), RULES)
    reopened, _ = step(refused, Scanned(ORDER_A, 20.0), RULES)
    assert sealed(*step(reopened, Scanned(SEAL, 20.3, "camera"), RULES))


@pytest.mark.parametrize("source", ["camera", "keyboard"])
def test_a_waybill_just_after_its_order_sheet_is_still_linked_to_that_order(source: str) -> None:
    """A workflow that scans the sheet and the parcel's label at the start: the label 0.3 s
    after the sheet is the new parcel's, linked to its clip, as ever (no window: a waybill
    names its parcel and, by default, ends nothing)."""
    opened = opened_b(source)
    new, actions = step(opened, Scanned(WAYBILL_B, 20.3, source), RULES)
    assert isinstance(new, Recording) and new.waybills == ("SF1000000000002",)
    assert LinkWaybill("PO-B", "SF1000000000002", "SF", 20.3) in actions


ENDS = SessionSection(waybill_ends_clip=True)


def opened_b_ending_at_labels(source: str = "camera") -> Recording:
    packing, _ = step(Idle(), Scanned(ORDER_A, 2.0, "keyboard"), ENDS)
    state, _ = step(packing, Scanned(ORDER_B, 20.0, source), ENDS)
    assert isinstance(state, Recording) and state.at_scan
    return state


@pytest.mark.parametrize("source", ["camera", "keyboard"])
def test_with_waybill_ends_clip_a_label_just_after_the_scan_ends_nothing_and_links_nowhere(
    source: str,
) -> None:
    """With ``waybill_ends_clip`` the label is the seal. Scanned 0.3 s after PO-B's sheet it
    ended PO-B's clip 0.3 s in (its packing in no clip) and was linked to it: the parcel
    before's label scanned late (another buyer's label on PO-B's clip), or PO-B's scanned
    early; nothing tells which. Now it ends nothing and is linked to no clip: remembered as
    one read with no clip open, so the camera seeing it again links and ends nothing either;
    scanned by hand later, it is linked to PO-B and ends its clip, as any label."""
    opened = opened_b_ending_at_labels(source)
    new, actions = step(opened, Scanned(WAYBILL_B, 20.3, source), ENDS)
    assert isinstance(new, Recording) and new.order_id == "PO-B" and new.waybills == ()
    assert new.floor.unlinked == ("SF1000000000002",)
    (logged,) = actions
    assert isinstance(logged, LogEvent) and not logged.in_clip and logged.kind == "waybill"
    assert "0.30 s after the clip of 'PO-B'" in logged.note and "no clip" in logged.note
    again, actions = step(new, Scanned(WAYBILL_B, 25.0, "camera"), ENDS)
    assert again == new and not any(isinstance(a, LinkWaybill | StopClip) for a in actions)
    ended, actions = step(new, Scanned(WAYBILL_B, 25.0, "keyboard"), ENDS)
    assert isinstance(ended, Idle)
    assert LinkWaybill("PO-B", "SF1000000000002", "SF", 25.0) in actions
    assert StopClip(FinishReason.WAYBILL, 25.0) in actions


def test_with_waybill_ends_clip_a_label_a_second_after_the_scan_ends_the_clip() -> None:
    opened = opened_b_ending_at_labels()
    ended, actions = step(opened, Scanned(WAYBILL_B, 21.0, "keyboard"), ENDS)
    assert isinstance(ended, Idle) and StopClip(FinishReason.WAYBILL, 21.0) in actions
    late = Scanned(WAYBILL_B, 21.2, "camera", first_t=20.9)  # first looked at in the second
    assert isinstance(step(opened, late, ENDS)[0], Recording)


def test_with_waybill_ends_clip_a_resumed_clip_ends_at_its_label_at_once() -> None:
    lost, _ = step(packing_a(), CameraLost(10.0), ENDS)
    back, _ = step(lost, CameraBack(12.0), ENDS)
    assert isinstance(back, Recording) and not back.at_scan
    assert isinstance(step(back, Scanned(WAYBILL_B, 12.3, "keyboard"), ENDS)[0], Idle)
