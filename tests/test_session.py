"""Exhaustive tests of the pure order state machine."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from station.capture.codes import Code, Kind
from station.capture.frames import PedalPress
from station.config import SessionSection
from station.recording.session import (
    KEPT_ORDERS,
    STATION_ENDS,
    CameraBack,
    CameraLost,
    ClipKind,
    ClipRefused,
    Cut,
    EndClip,
    FinishReason,
    Floor,
    Idle,
    LinkWaybill,
    LogEvent,
    PreviousParcel,
    Recording,
    RecordingFailed,
    Scanned,
    StartClip,
    State,
    StopClip,
    Suspended,
    Tick,
    in_open_clip,
    remembered,
    restarted,
    step,
)
from station.store.clips import LYING_CARD

RULES = SessionSection()
ORDER_A = Code("PO-A", Kind.ORDER)
ORDER_B = Code("PO-B", Kind.ORDER)
WAYBILL = Code("SF1234567890123", Kind.WAYBILL, "SF")
SEAL = Code("SEAL", Kind.SEAL)
CTRL_SEAL = Code("STOP", Kind.CONTROL, "seal")
CTRL_TEST = Code("PING", Kind.CONTROL, "test")
UNKNOWN = Code("???x", Kind.UNKNOWN)
ITEM = Code("4006381333931", Kind.ITEM, "ean13")


def rec(order: str = "PO-A", t: float = 10.0, **kw) -> Recording:
    return Recording(order_id=order, started_t=t, last_motion_t=kw.pop("last_motion_t", t), **kw)


def packed(*orders: str) -> Floor:
    """The floor of a table where ``orders`` were packed (newest first), no one signed in."""
    return Floor(packed=orders)


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


def unlabelled(state: State) -> State:
    """``state`` without the waybills read with no clip open it remembers."""
    return replace(state, floor=replace(state.floor, unlinked=()))


# ---- idle ----------------------------------------------------------------------------------


def test_idle_order_scan_starts_recording_and_logs_scan_into_new_clip() -> None:
    state, actions = step(Idle(), Scanned(ORDER_A, 5.0, "camera"), RULES)
    assert state == rec("PO-A", 5.0, floor=packed("PO-A"), at_scan=True)
    assert actions == [
        StartClip("PO-A", 5.0),
        LogEvent("order", "PO-A", 5.0, "camera"),
    ]


@pytest.mark.parametrize("code", [CTRL_TEST, UNKNOWN])
def test_idle_non_order_scans_are_logged_only(code: Code) -> None:
    state, actions = step(Idle(), Scanned(code, 1.0), RULES)
    assert state == Idle()
    assert kinds(actions) == ["LogEvent"]
    assert actions[0].note


@pytest.mark.parametrize("event", [Scanned(WAYBILL, 1.0), Scanned(SEAL, 1.0),
                                   Scanned(CTRL_SEAL, 1.0), PedalPress(1.0)])  # fmt: skip
def test_a_seal_waybill_or_pedal_with_no_order_open_marks_the_parcel_before(event) -> None:
    """With no order open, a seal, a waybill or a pedal press is the parcel before being
    finished (its clip ended by a timeout, say): it opens nothing, and the next clip's pre-roll
    must not reach back to it (that buyer's parcel and label would be in another order's clip)."""
    state, actions = step(Idle(), event, RULES)
    assert unlabelled(state) == Idle()
    assert kinds(actions) == ["LogEvent", "PreviousParcel"]
    assert actions[0].note and actions[1] == PreviousParcel(1.0)
    waybill = isinstance(event, Scanned) and event.code is WAYBILL
    assert state.floor.unlinked == ((WAYBILL.text,) if waybill else ())  # no clip's label


@pytest.mark.parametrize(
    "event", [Tick(1.0), Tick(1.0, False), EndClip(1.0, FinishReason.END_OF_INPUT)]
)
def test_idle_ignores_other_events(event) -> None:
    state, actions = step(Idle(), event, RULES)
    assert state == Idle()
    assert actions == []


def test_idle_camera_loss_is_remembered_and_its_return_starts_nothing() -> None:
    assert step(Idle(), CameraLost(1.0), RULES) == (Suspended(None, 1.0), [])
    assert step(Suspended(None, 1.0), CameraBack(2.0), RULES) == (Idle(), [])
    assert step(Idle(), CameraBack(1.0), RULES) == (Idle(), [])


# ---- recording -----------------------------------------------------------------------------


def test_waybill_links_without_ending_by_default() -> None:
    state, actions = step(rec(), Scanned(WAYBILL, 12.0), RULES)
    assert state == rec(waybills=("SF1234567890123",))
    assert actions[1] == LinkWaybill("PO-A", "SF1234567890123", "SF", 12.0)
    assert not any(isinstance(a, StopClip) for a in actions)
    # A second, different waybill (two-parcel order) is kept too; a repeat is not duplicated.
    other = Code("YT1234567890123", Kind.WAYBILL, "YTO")
    state, _ = step(state, Scanned(other, 13.0), RULES)
    state, _ = step(state, Scanned(WAYBILL, 14.0), RULES)
    assert state.waybills == ("SF1234567890123", "YT1234567890123")


def test_waybill_ends_clip_when_configured() -> None:
    rules = SessionSection(waybill_ends_clip=True)
    state, actions = step(rec(), Scanned(WAYBILL, 12.0), rules)
    assert state == Idle(last=("PO-A", 12.0), last_waybills=("SF1234567890123",), last_began=10.0)
    assert kinds(actions) == ["LogEvent", "LinkWaybill", "StopClip"]
    assert actions[-1] == StopClip(FinishReason.WAYBILL, 12.0)


@pytest.mark.parametrize("code", [SEAL, CTRL_SEAL])
def test_seal_ends_clip(code: Code) -> None:
    state, actions = step(rec(), Scanned(code, 20.0), RULES)
    assert state == Idle(last=("PO-A", 20.0), last_began=10.0)
    assert kinds(actions) == ["LogEvent", "StopClip"]
    assert actions[-1] == StopClip(FinishReason.SEALED, 20.0)


def test_pedal_ends_clip_as_sealed() -> None:
    state, actions = step(rec(), PedalPress(20.0), RULES)
    assert state == Idle(last=("PO-A", 20.0), last_began=10.0)
    assert actions == [LogEvent("pedal", "", 20.0, "pedal"), StopClip(FinishReason.SEALED, 20.0)]


def test_next_order_ends_previous_and_starts_next() -> None:
    state, actions = step(rec(), Scanned(ORDER_B, 30.0), RULES)
    expected = rec("PO-B", 30.0, previous="PO-A", previous_span=(10.0, 30.0), at_scan=True)
    assert state == replace(expected, floor=packed("PO-B"))
    assert actions == [
        StopClip(FinishReason.NEXT_ORDER, 30.0),
        StartClip("PO-B", 30.0),
        LogEvent("order", "PO-B", 30.0, "camera"),
    ]


def test_same_order_again_by_hand_is_rescan() -> None:
    state, actions = step(rec(floor=packed("PO-A")), Scanned(ORDER_A, 30.0, "keyboard"), RULES)
    assert state == Idle(packed("PO-A"), last=("PO-A", 30.0), last_began=10.0)
    assert actions == [
        LogEvent("order", "PO-A", 30.0, "keyboard"),
        StopClip(FinishReason.RESCAN, 30.0),
    ]


def test_the_open_orders_sheet_seen_again_by_the_camera_ends_nothing() -> None:
    """Its sheet lying at the table, covered by a box for a while and seen again: the packing
    goes on, so the clip does too (a rescan would leave the rest of the packing unrecorded)."""
    note = "seen again by the camera; the clip goes on"
    assert step(rec(), Scanned(ORDER_A, 30.0), RULES) == (
        rec(),
        [LogEvent("order", "PO-A", 30.0, "camera", note)],
    )


SIGNOUT = Code("SIGNOUT", Kind.CONTROL, "signout")
RETURN = Code("RETURN", Kind.CONTROL, "return")
RETURN_LABEL = Code("RT0123456789", Kind.RETURN, "return")
ANN = Floor(packer="ann")
LYING = "lying where it lay before, seen again by the camera; ignored (hold it up or scan it)"


@pytest.mark.parametrize("code", [SEAL, CTRL_SEAL, SIGNOUT, RETURN, CTRL_TEST, RETURN_LABEL])
@pytest.mark.parametrize(
    "state",
    [Idle(ANN, unrecorded="PO-A"), rec(floor=ANN), Suspended("PO-A", 5.0, floor=ANN, since=1.0)],
    ids=["idle", "recording", "suspended"],
)
def test_a_card_seen_again_by_the_camera_where_it_lay_changes_nothing(state, code: Code) -> None:
    """The seal card put down at the table after it sealed the order before, covered by this
    parcel for longer than the debounce and seen again where it lay: no seal (it ended the
    open clip mid-packing, the rest unrecorded), no sign-out, no return. Nor a returned
    parcel's label seen again on it at the table (it made the next clip a return too)."""
    new, actions = step(state, Scanned(code, 30.0, "camera", lying=True), RULES)
    assert new == state
    # recorded as a card that did nothing: no seal key frame, no seal in the timeline
    assert actions == [LogEvent(code.kind.value, code.text, 30.0, "camera", LYING, card=LYING_CARD)]


@pytest.mark.parametrize("code", [SEAL, CTRL_SEAL])
def test_a_seal_card_held_up_or_scanned_by_hand_seals(code: Code) -> None:
    for event in (Scanned(code, 30.0, "camera"), Scanned(code, 30.0, "keyboard", lying=True)):
        state, actions = step(rec(), event, RULES)
        assert state == Idle(last=("PO-A", 30.0), last_began=10.0)
        assert actions[-1] == StopClip(FinishReason.SEALED, 30.0)


def test_test_and_unknown_codes_keep_recording() -> None:
    for code in (CTRL_TEST, UNKNOWN):
        state, actions = step(rec(), Scanned(code, 11.0), RULES)
        assert state == rec()
        assert kinds(actions) == ["LogEvent"]


@pytest.mark.parametrize(
    "state", [Idle(), rec(), Suspended("PO-A", 5.0)], ids=["idle", "recording", "suspended"]
)
@pytest.mark.parametrize(
    "code",
    [
        CTRL_SEAL,
        CTRL_TEST,
        Code("SIGNOUT", Kind.CONTROL, "signout"),
        Code("RET", Kind.CONTROL, "return"),
    ],
)
def test_a_control_card_is_logged_with_what_it_is_set_to_do(state: State, code: Code) -> None:
    """The scan event names the card (a seal is told from a test card by it, not by its
    note); no other code has one."""
    _, actions = step(state, Scanned(code, 12.0), RULES)
    assert [a.card for a in actions if isinstance(a, LogEvent)] == [code.detail]
    _, actions = step(state, Scanned(code, 1.0), RULES)  # stamped before the open clip began
    assert [a.card for a in actions if isinstance(a, LogEvent)] == [code.detail]
    _, actions = step(state, Scanned(SEAL, 12.0), RULES)
    assert [a.card for a in actions if isinstance(a, LogEvent)] == [""]


def test_timeout_at_max_duration() -> None:
    rules = SessionSection(max_duration_s=60)
    state, actions = step(rec(t=10.0), Tick(69.9), rules)
    assert isinstance(state, Recording) and actions == []
    state, actions = step(state, Tick(70.0), rules)
    # The clip ends, not the packing: the next order's pre-roll would be PO-A's parcel.
    assert state == Idle(last=("PO-A", 70.0), last_began=10.0, unrecorded="PO-A", unrecorded_t=10.0)
    assert actions == [StopClip(FinishReason.TIMEOUT, 70.0)]
    assert step(state, Scanned(ORDER_B, 75.0), rules)[1][0] == StartClip("PO-B", 75.0, False)


def test_the_timeout_counts_from_the_orders_first_clip_across_camera_losses() -> None:
    """A camera that flickers does not keep an order open for ever: ``max_duration_s`` bounds
    an order from its first clip's start, the time in the dark included, not each resumed
    clip from its own start."""
    rules = SessionSection(max_duration_s=60)
    state: State = rec("PO-A", 10.0)
    for lost in (30.0, 50.0):
        state, _ = step(state, CameraLost(lost), rules)
        state, _ = step(state, CameraBack(lost + 5), rules)
    assert isinstance(state, Recording) and state.started_t == 55.0
    state, actions = step(state, Tick(69.9), rules)
    assert isinstance(state, Recording) and actions == []
    state, actions = step(state, Tick(70.0), rules)
    assert isinstance(state, Idle) and actions == [StopClip(FinishReason.TIMEOUT, 70.0)]


def test_an_order_whose_time_ran_out_in_the_dark_does_not_resume() -> None:
    """No clip of it starts when the camera is back (it would end at its first frame): its
    clip is over, as after a timeout in the light, but not its packing: its sheet read then
    opens no repack, and the next order's clip starts at its scan, with no pre-roll."""
    rules = SessionSection(max_duration_s=60)
    state, _ = step(rec("PO-A", 10.0, waybills=(WAYBILL.text,)), CameraLost(30.0), rules)
    state, actions = step(state, CameraBack(70.0), rules)
    want = Idle(last=("PO-A", 70.0), last_waybills=(WAYBILL.text,), unrecorded="PO-A")
    assert state == replace(want, unrecorded_t=10.0) and actions == []
    state, actions = step(state, Scanned(ORDER_A, 71.0), rules)
    assert kinds(actions) == ["LogEvent", "PreviousParcel"]
    _, actions = step(want, Scanned(ORDER_B, 75.0, "keyboard"), rules)
    assert actions[0] == StartClip(ORDER_B.text, 75.0, pre_roll=False)


def test_an_order_scanned_in_the_dark_is_timed_from_its_first_clip() -> None:
    """Its recording begins when the camera is back (no picture of it before)."""
    rules = SessionSection(max_duration_s=60)
    state, _ = step(Idle(), CameraLost(5.0), rules)
    state, _ = step(state, Scanned(ORDER_A, 6.0, "keyboard"), rules)
    state, _ = step(state, CameraBack(100.0), rules)
    state, actions = step(state, Tick(159.9), rules)
    assert isinstance(state, Recording) and actions == []
    _, actions = step(state, Tick(160.0), rules)
    assert actions == [StopClip(FinishReason.TIMEOUT, 160.0)]


def test_timeout_applies_even_while_still() -> None:
    rules = SessionSection(max_duration_s=60, still_timeout_s=120)
    _, actions = step(rec(t=0.0), Tick(60.0, moving=False), rules)
    assert actions == [StopClip(FinishReason.TIMEOUT, 60.0)]


def test_still_timeout() -> None:
    rules = SessionSection(still_timeout_s=5)
    state = rec(t=0.0)
    state, _ = step(state, Tick(3.0, moving=True), rules)
    assert state.last_motion_t == 3.0
    state, actions = step(state, Tick(7.9, moving=False), rules)
    assert isinstance(state, Recording) and actions == []
    state, actions = step(state, Tick(8.0, moving=False), rules)
    # The clip ends, not the packing (as at a timeout): stillness is nobody moving in view.
    assert state == Idle(last=("PO-A", 8.0), last_began=0.0, unrecorded="PO-A", unrecorded_t=0.0)
    assert actions == [StopClip(FinishReason.STILL, 8.0)]


def test_a_clip_ended_still_leaves_its_parcel_packed_on_until_something_ends_it() -> None:
    """The picture stays unchanged with the parcel half packed where it lies: the packer
    away for tape or filler, or a question at the next table. The clip ends "still"; then
    the packer is back and packs on (the scene moves again, with no clip), and scans the
    next order. Its pre-roll would be the rest of PO-A's packing, owned by no clip: it starts
    at its scan. PO-A's seal, waybill or the pedal after the still stop ends that packing
    (the parcel before, up to then: ``PreviousParcel``), and pre-roll is as ever."""
    rules = SessionSection(still_timeout_s=5)
    state, _ = step(rec(t=0.0), Tick(2.0, moving=True), rules)
    state, actions = step(state, Tick(7.0, moving=False), rules)
    assert actions == [StopClip(FinishReason.STILL, 7.0)]
    for moving in (Tick(20.0, moving=True), Tick(30.0, moving=False)):  # PO-A packed on
        state, actions = step(state, moving, rules)
        assert actions == []
    _, actions = step(state, Scanned(ORDER_B, 40.0, "keyboard"), rules)
    assert actions[0] == StartClip("PO-B", 40.0, pre_roll=False)
    # Its sheet seen again says it was still there, not that it is finished.
    seen, actions = step(state, Scanned(ORDER_A, 35.0), rules)
    assert actions[-1] == PreviousParcel(35.0) and seen.unrecorded == "PO-A"
    # PO-A scanned again by hand: its own parcel, pre-roll and all.
    assert step(state, Scanned(ORDER_A, 40.0, "keyboard"), rules)[1][0] == StartClip("PO-A", 40.0)
    # A camera blink in between changes none of it.
    dark, _ = step(state, CameraLost(32.0), rules)
    back, _ = step(dark, CameraBack(33.0), rules)
    assert back.unrecorded == "PO-A"
    for end in (Scanned(SEAL, 35.0), Scanned(WAYBILL, 35.0), PedalPress(35.0)):
        for now in (state, dark):
            ended, actions = step(now, end, rules)
            if isinstance(ended, Suspended):
                ended, actions = step(ended, CameraBack(36.0), rules)
            else:
                assert actions[-1] == PreviousParcel(35.0)
            assert isinstance(ended, Idle) and ended.unrecorded is None
            _, actions = step(ended, Scanned(ORDER_B, 40.0, "keyboard"), rules)
            assert actions[0] == StartClip("PO-B", 40.0)


def test_still_timeout_off_by_default() -> None:
    state, actions = step(rec(t=0.0), Tick(500.0, moving=False), RULES)
    assert isinstance(state, Recording) and actions == []


def test_end_of_input_closes_clip() -> None:
    state, actions = step(rec(), EndClip(40.0, FinishReason.END_OF_INPUT), RULES)
    assert state == Idle(last=("PO-A", 40.0), last_began=10.0)
    assert actions == [StopClip(FinishReason.END_OF_INPUT, 40.0)]


# ---- events stamped before the open clip began --------------------------------------------------

OPEN_B = rec("PO-B", 10.0, waybills=("YT1234567890123",))


def early(kind: str, text: str, t: float, source: str) -> LogEvent:
    note = f"stamped t={t:.3f}, before the clip of 'PO-B' began at t=10.000; ignored"
    return LogEvent(kind, text, t, source, note, in_clip=False)


@pytest.mark.parametrize(
    ("event", "rules", "logged"),
    [
        # order A's sheet, read by the camera at 9.5, decoded after B was scanned by hand at 10
        (Scanned(ORDER_A, 9.5), RULES, early("order", "PO-A", 9.5, "camera")),
        (Scanned(ORDER_B, 9.5), RULES, early("order", "PO-B", 9.5, "camera")),
        (Scanned(WAYBILL, 9.5), RULES, early("waybill", WAYBILL.text, 9.5, "camera")),
        (
            Scanned(WAYBILL, 9.5),
            SessionSection(waybill_ends_clip=True),
            early("waybill", WAYBILL.text, 9.5, "camera"),
        ),
        (Scanned(SEAL, 9.99, "keyboard"), RULES, early("seal", "SEAL", 9.99, "keyboard")),
        (PedalPress(9.0), RULES, early("pedal", "", 9.0, "pedal")),
    ],
    ids=["other-order", "same-order", "waybill", "waybill-ends-clip", "seal", "pedal"],
)
def test_an_event_stamped_before_the_open_clip_began_never_changes_it(event, rules, logged) -> None:
    """A scan or pedal press that happened before the open clip began (a camera read decoded
    late, after a hand scan opened the next order) is not the open order's: it neither ends,
    seals, links to nor replaces that clip; it is logged outside it. A waybill read then is
    remembered as no clip's (``Floor.unlinked``)."""
    state, actions = step(OPEN_B, event, rules)
    assert (unlabelled(state), actions) == (OPEN_B, [logged])
    assert state.floor.unlinked == ((WAYBILL.text,) if logged.kind == "waybill" else ())


def test_an_item_stamped_before_the_open_clip_keeps_its_symbology() -> None:
    state, actions = step(OPEN_B, Scanned(ITEM, 9.5), RULES)
    note = "ean13; stamped t=9.500, before the clip of 'PO-B' began at t=10.000; ignored"
    assert (state, actions) == (OPEN_B, [LogEvent("item", ITEM.text, 9.5, "camera", note, False)])


def test_an_order_stamped_before_the_open_clip_is_no_refused_scan_ending_it() -> None:
    signed_out = replace(OPEN_B, packer="alice")  # the floor has nobody signed in now
    state, actions = step(signed_out, Scanned(ORDER_A, 9.5), SessionSection(require_packer=True))
    assert (state, actions) == (signed_out, [early("order", "PO-A", 9.5, "camera")])


def test_an_event_stamped_as_the_clip_began_or_later_is_the_clips() -> None:
    """But for a seal card the camera read in the frame whose read opened the clip (below)."""
    ended = Idle(last=("PO-B", 10.0), last_waybills=("YT1234567890123",), last_began=10.0)
    assert step(OPEN_B, Scanned(SEAL, 10.0, "keyboard"), RULES)[0] == ended
    assert step(OPEN_B, PedalPress(10.0), RULES)[0] == ended
    assert step(OPEN_B, Scanned(SEAL, 10.1), RULES)[0] == replace(ended, last=("PO-B", 10.1))


@pytest.mark.parametrize("card", [SEAL, CTRL_SEAL], ids=["seal", "seal-command"])
@pytest.mark.parametrize("before", [Idle(), rec("PO-A", 2.0)], ids=["idle", "recording"])
def test_a_seal_card_read_with_the_next_orders_sheet_in_one_frame_never_seals_it(
    card: Code, before: State
) -> None:
    """The camera reads PO-B's sheet and, in the same frame, the seal card held up for the
    parcel before. One frame's reads reach the session in no set order (the decoder's, by
    where the codes lie). Card first: PO-A is sealed and PO-B's clip opens. Sheet first, the
    card sealed PO-B's clip in the frame that opened it: a clip of 0.3 s, and PO-B's whole
    packing in no clip (its sheet seen again later is an old one, ignored). Either way PO-B's
    clip now goes on; the card is logged outside it. Shown again a second later, it seals
    PO-B (within the second: the parcel before's, ``test_session_pedal.py``)."""
    opened, _ = step(before, Scanned(ORDER_B, 20.0), RULES)
    after, actions = step(opened, Scanned(card, 20.0), RULES)
    note = "stamped t=20.000, in the frame whose read opened the clip of 'PO-B'; ignored"
    assert after == opened
    logged = LogEvent(card.kind.value, card.text, 20.0, "camera", note, in_clip=False)
    assert actions == [replace(logged, card=card.detail)]
    sealed_first, _ = step(before, Scanned(card, 20.0), RULES)
    other_way, _ = step(sealed_first, Scanned(ORDER_B, 20.0), RULES)
    assert isinstance(other_way, Recording) and other_way.order_id == "PO-B"
    assert step(after, Scanned(card, 21.1), RULES)[0] == Idle(
        after.floor, last=("PO-B", 21.1), last_began=20.0
    )


@pytest.mark.parametrize("source", ["camera", "keyboard"])
def test_a_seal_card_in_view_as_the_next_order_opened_is_the_parcel_befores(source: str) -> None:
    """The card and PO-B's sheet came into view together; the sheet was confirmed first (at
    20.0, by the camera; or PO-B scanned by hand at 20.05) and the card, first read at 20.0,
    only at 20.3: PO-B's clip was sealed 0.3 s in. Now it goes on; the card is logged outside
    it, at its first look. A card the camera first read a second or more after the clip
    began still seals it, as a hand scan then does (sooner, it is the parcel before's seal a
    moment late: ``test_session_pedal.py``), and as the card does in a clip resuming its
    order after a loss."""
    t = 20.0 if source == "camera" else 20.05
    opened, _ = step(rec("PO-A", 2.0), Scanned(ORDER_B, t, source), RULES)
    after, actions = step(opened, Scanned(SEAL, 20.3, first_t=20.0), RULES)
    assert after == opened
    where = "in the frame whose read opened" if source == "camera" else "before"
    began = "" if source == "camera" else " began at t=20.050"
    note = f"stamped t=20.000, {where} the clip of 'PO-B'{began}; ignored"
    assert actions == [LogEvent("seal", "SEAL", 20.0, "camera", note, in_clip=False)]
    sealed, actions = step(opened, Scanned(SEAL, 21.3, first_t=21.1), RULES)
    assert isinstance(sealed, Idle) and StopClip(FinishReason.SEALED, 21.3) in actions
    assert isinstance(step(opened, Scanned(SEAL, 21.3, "keyboard", first_t=20.0), RULES)[0], Idle)
    resumed = replace(opened, first_t=10.0, at_scan=False)  # (a resumed clip: not at a scan)
    assert isinstance(step(resumed, Scanned(SEAL, 20.3, first_t=20.0), RULES)[0], Idle)


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
def test_a_label_in_view_as_the_next_order_opened_is_the_parcel_befores(ends: bool) -> None:
    """PO-A's label came into view with PO-B's sheet and was confirmed one decode after it
    (first read 20.0, confirmed 20.3): it was linked to PO-B's clip as its waybill (another
    buyer's label in PO-B's index row, manifest and frames) or, with waybill_ends_clip, ended
    PO-B's clip 0.3 s in. It is PO-A's, as when both were confirmed in one frame."""
    rules = SessionSection(waybill_ends_clip=ends)
    opened, _ = step(rec("PO-A", 2.0), Scanned(ORDER_B, 20.0), rules)
    new, actions = step(opened, Scanned(WAYBILL, 20.3, first_t=20.0), rules)
    assert isinstance(new, Recording) and new.order_id == "PO-B" and new.waybills == ()
    assert LinkWaybill("PO-A", WAYBILL.text, "SF", 20.0, ended=True) in actions
    assert not any(isinstance(a, StopClip) for a in actions)


def test_a_badge_stamped_before_the_open_clip_still_signs_the_packer_in() -> None:
    badge = Code("OP:alice", Kind.OPERATOR, "alice")
    state, _ = step(OPEN_B, Scanned(badge, 9.5), RULES)
    assert state == replace(OPEN_B, floor=Floor(packer="alice"))


def test_a_late_waybill_read_while_the_clip_before_was_open_is_linked_to_that_clip() -> None:
    """PO-A records from 10; its waybill is read by the camera at 29.5 and decoded after PO-B
    was scanned by hand at 30. It is PO-A's label: linked to PO-A's (ended) clip, so a search
    by it finds PO-A; never to PO-B's, and the same read again links nothing twice."""
    wb = Code("JT1234567890123", Kind.WAYBILL, "JT")
    state, _ = step(rec("PO-A", 10.0, waybills=(WAYBILL.text,)), Scanned(ORDER_B, 30.0), RULES)
    new, actions = step(state, Scanned(wb, 29.5), RULES)
    note = "stamped t=29.500, before the clip of 'PO-B' began at t=30.000: PO-A's waybill"
    assert actions == [
        LogEvent("waybill", wb.text, 29.5, "camera", note + ", linked to its ended clip", False),
        LinkWaybill("PO-A", wb.text, "JT", 29.5, ended=True),
    ]
    assert new == replace(state, previous_waybills=(WAYBILL.text, wb.text))
    assert new.waybills == ()  # not PO-B's
    again, actions = step(new, Scanned(wb, 29.6), RULES)
    assert again == new
    assert actions == [
        LogEvent(
            "waybill",
            wb.text,
            29.6,
            "camera",
            note.replace("29.500", "29.600") + ", already linked",
            False,
        )
    ]


def test_a_label_read_with_the_next_orders_sheet_in_one_frame_is_the_parcel_befores() -> None:
    """The camera reads PO-B's sheet and, in the same frame, the label on PO-A's parcel still
    at the table; the sheet's read comes first and ends PO-A's clip. The label is PO-A's
    (linked to its ended clip), or, when PO-A's clip had ended before (a timeout), nobody's:
    never PO-B's, burned into its frames, in its index row and manifest."""
    opened, _ = step(rec("PO-A", 10.0), Scanned(ORDER_B, 20.0), RULES)
    new, actions = step(opened, Scanned(WAYBILL, 20.0), RULES)
    assert new.waybills == () and LinkWaybill("PO-A", WAYBILL.text, "SF", 20.0, True) in actions
    timed_out, _ = step(rec("PO-A", 10.0), Tick(10.0 + RULES.max_duration_s), RULES)
    opened, _ = step(timed_out, Scanned(ORDER_B, 700.0), RULES)
    new, actions = step(opened, Scanned(WAYBILL, 700.0), RULES)
    assert unlabelled(new) == opened and kinds(actions) == ["LogEvent"] and not actions[0].in_clip
    assert "in the frame whose read opened the clip of 'PO-B'" in actions[0].note
    assert new.floor.unlinked == (WAYBILL.text,)  # read with no clip of its own open
    seen, actions = step(opened, Scanned(WAYBILL, 700.0, "keyboard"), RULES)  # by hand: B's
    assert seen.waybills == (WAYBILL.text,)


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
@pytest.mark.parametrize("first_look", [False, True], ids=["confirmed-there", "confirmed-later"])
@pytest.mark.parametrize("before", ["idle", "timed-out"])
def test_a_label_in_the_frame_that_opened_a_clip_is_remembered_as_no_clips(
    before: str, first_look: bool, ends: bool
) -> None:
    """The camera reads PO-B's sheet and, in that frame, a label on the table: the parcel
    before's (its clip timed out, or none was open), not PO-B's (``_opening_frame``); logged
    outside the clip, linked to none. It is remembered as read with no clip open
    (``Floor.unlinked``), as a label read a frame earlier is: seen again while PO-B is packed
    it is no clip's label, never PO-B's waybill (burned into its frames, its index row and
    manifest) nor, with ``waybill_ends_clip``, its end. It was forgotten: by default linked to
    PO-B's clip 5 s later. Confirmed a frame later, it is stamped at its first look there."""
    rules = SessionSection(waybill_ends_clip=ends)
    state: State = Idle()
    if before == "timed-out":
        state, _ = step(rec("PO-A", 10.0), Tick(10.0 + rules.max_duration_s), rules)
    t = 700.0
    opened, _ = step(state, Scanned(ORDER_B, t), rules)
    read = Scanned(WAYBILL, t + 0.3, first_t=t) if first_look else Scanned(WAYBILL, t)
    new, actions = step(opened, read, rules)
    assert kinds(actions) == ["LogEvent"] and not actions[0].in_clip
    assert unlabelled(new) == opened and new.floor.unlinked == (WAYBILL.text,)
    again, actions = step(new, Scanned(WAYBILL, t + 5.0), rules)  # after the debounce
    assert kinds(actions) == ["LogEvent"] and "first seen with no clip open" in actions[0].note
    assert again == new  # not PO-B's waybill, nor its end
    _, actions = step(new, Scanned(WAYBILL, t + 5.0, "keyboard"), rules)  # deliberate
    assert LinkWaybill("PO-B", WAYBILL.text, "SF", t + 5.0) in actions
    assert ("StopClip" in kinds(actions)) is ends


def test_a_late_waybill_outside_the_clip_before_is_linked_to_no_clip() -> None:
    """Only a read stamped while the clip before was open is its order's: one stamped after
    its seal (before the next scan) or with no clip before known stays linked to none."""
    sealed, _ = step(rec("PO-A", 10.0), Scanned(SEAL, 20.0), RULES)
    state, _ = step(sealed, Scanned(ORDER_B, 30.0, "keyboard"), RULES)
    assert state.previous_span == (10.0, 20.0)
    new, actions = step(state, Scanned(WAYBILL, 15.0), RULES)
    assert actions[-1] == LinkWaybill("PO-A", WAYBILL.text, "SF", 15.0, ended=True)
    for stranger in (Scanned(WAYBILL, 25.0), Scanned(WAYBILL, 9.0)):
        new, actions = step(state, stranger, RULES)
        assert unlabelled(new) == state and kinds(actions) == ["LogEvent"]
        assert not actions[0].in_clip and new.floor.unlinked == (WAYBILL.text,)
    unknown = rec("PO-B", 30.0, previous="PO-A")  # e.g. the camera came back: no span known
    assert kinds(step(unknown, Scanned(WAYBILL, 29.0), RULES)[1]) == ["LogEvent"]


# ---- a late read of the order whose clip just ended -----------------------------------------

SEALED_A = Idle(last=("PO-A", 20.0))  # PO-A's clip was sealed by hand at t=20


def test_a_late_read_of_the_sealed_order_opens_no_repack() -> None:
    """PO-A's sheet read by the camera at 19.5, while its clip was open, decoded after the hand
    seal at 20: on time it would have ended that clip as a rescan; late it opens nothing."""
    note = "stamped t=19.500, before its clip ended at t=20.000; ignored"
    assert step(SEALED_A, Scanned(ORDER_A, 19.5), RULES) == (
        SEALED_A,
        [LogEvent("order", "PO-A", 19.5, "camera", note, in_clip=False)],
    )


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
def test_a_late_waybill_read_while_the_clip_that_ended_last_was_open_is_linked_to_it(
    ends: bool,
) -> None:
    """PO-A's clip records from 10 and is sealed by hand at 20; its label, read by the camera
    at 19.5, is decoded after the seal with no clip open. It was in PO-A's frames: PO-A's
    label, linked to its ended clip (it was remembered as no clip's: the seller lost the
    link), and PO-A's from then on. A read stamped outside that clip stays no clip's."""
    rules = SessionSection(waybill_ends_clip=ends)
    sealed = Idle(packed("PO-A"), last=("PO-A", 20.0), last_began=10.0)
    state, actions = step(sealed, Scanned(WAYBILL, 19.5), rules)
    note = "stamped t=19.500, before its clip ended at t=20.000: PO-A's waybill"
    assert actions == [
        LogEvent("waybill", WAYBILL.text, 19.5, "camera", note + ", linked to its ended clip"),
        LinkWaybill("PO-A", WAYBILL.text, "SF", 19.5, ended=True),
        PreviousParcel(19.5),
    ]
    assert state == replace(
        sealed,
        floor=replace(sealed.floor, waybills=((WAYBILL.text, "PO-A"),)),
        last_waybills=(WAYBILL.text,),
    )
    _, actions = step(state, Scanned(WAYBILL, 19.6), rules)
    assert kinds(actions) == ["LogEvent", "PreviousParcel"]  # linked once
    b, _ = step(state, Scanned(ORDER_B, 30.0, "keyboard"), rules)
    assert step(b, Scanned(WAYBILL, 31.0), rules)[1] == [
        LogEvent("waybill", WAYBILL.text, 31.0, "camera", LABEL_A)
    ]
    for stranger in (Scanned(WAYBILL, 25.0), Scanned(WAYBILL, 9.0)):
        new, actions = step(sealed, stranger, rules)
        assert "LinkWaybill" not in kinds(actions) and new.floor.unlinked == (WAYBILL.text,)


def test_a_late_waybill_of_the_clip_that_ended_last_ends_its_packing_not_the_next() -> None:
    """PO-A's clip timed out (PO-A is packed on with no clip), or PO-B's clip was refused
    after it: PO-A's label read while its clip was open, decoded now, is linked to that clip;
    it ends PO-A's packing (as a waybill read with no clip open does), never PO-B's: it was
    made before PO-B was scanned."""
    timed_out = Idle(packed("PO-A"), last=("PO-A", 20.0), last_began=10.0, unrecorded="PO-A")
    state, actions = step(timed_out, Scanned(WAYBILL, 19.5), RULES)
    assert "LinkWaybill" in kinds(actions) and state.unrecorded is None
    refused = replace(timed_out, floor=packed("PO-B", "PO-A"), unrecorded="PO-B")
    state, actions = step(refused, Scanned(WAYBILL, 19.5), RULES)
    assert "LinkWaybill" in kinds(actions) and state.unrecorded == "PO-B"


OTHER_WAYBILL = Code("YT1234567890123", Kind.WAYBILL, "YTO")
ANN_BADGE = Code("PACKER-ANN", Kind.OPERATOR, "ann")


@pytest.mark.parametrize(
    ("a_ends", "stamped"),
    [([PedalPress(20.0)], 25.0), ([PedalPress(20.0)], 5.0), ([], 5.0)],
    ids=["after-its-seal", "before-its-clip", "before-the-clip-b-ended"],
)
def test_a_late_waybill_stamped_before_a_refused_order_ends_not_its_packing(
    a_ends: list[PedalPress], stamped: float
) -> None:
    """PO-B scanned at 30 with no packer signed in (require_packer): its clip refused, it is
    packed all the same with no clip. A waybill the camera read before then, outside PO-A's
    clip (after its seal, or before it began), decoded now: another parcel's label, it does
    not end PO-B's packing. It did, and PO-C's clip opened with a pre-roll reaching back
    into PO-B's parcel: another buyer's packing."""
    rules = SessionSection(require_packer=True)
    sign_in = Scanned(ANN_BADGE, 1.0, "keyboard")
    a = (sign_in, Scanned(ORDER_A, 10.0, "keyboard"), *a_ends, Scanned(SIGNOUT, 28.0, "keyboard"))
    idle = after(*a, Scanned(ORDER_B, 30.0, "keyboard"), rules=rules)
    assert isinstance(idle, Idle) and idle.unrecorded == "PO-B"
    state, actions = step(idle, Scanned(OTHER_WAYBILL, stamped), rules)
    assert not any(isinstance(x, LinkWaybill) for x in actions)
    assert isinstance(state, Idle) and state.unrecorded == "PO-B"
    state, _ = step(state, replace(sign_in, t=50.0), rules)
    _, actions = step(state, Scanned(ORDER_C, 60.0, "keyboard"), rules)
    assert [x.pre_roll for x in actions if isinstance(x, StartClip)] == [False]


@pytest.mark.parametrize("read_at", ["in-the-dark", "after-it"])
def test_a_late_waybill_before_a_refused_order_ends_not_its_packing_across_a_loss(
    read_at: str,
) -> None:
    """As in the light, across a camera blink after PO-B's clip was refused at 30: a waybill
    stamped at 25, decoded in the dark or once the camera is back, ends not PO-B's packing."""
    refused, _ = step(rec("PO-A", 10.0), Scanned(ORDER_B, 30.0, "keyboard"), RULES)
    idle, _ = step(refused, ClipRefused("PO-B", 30.0, "disk full"), RULES)
    assert isinstance(idle, Idle) and idle.unrecorded == "PO-B"
    dark, _ = step(idle, CameraLost(35.0), RULES)
    if read_at == "in-the-dark":
        dark, _ = step(dark, Scanned(OTHER_WAYBILL, 5.0), RULES)
    state, _ = step(dark, CameraBack(36.0), RULES)
    if read_at == "after-it":
        state, _ = step(state, Scanned(OTHER_WAYBILL, 5.0), RULES)
    assert isinstance(state, Idle) and state.unrecorded == "PO-B"


def test_a_late_label_of_the_clip_a_refused_order_ended_is_linked_to_it() -> None:
    """PO-B scanned at 30 while PO-A records, with no packer signed in: PO-A's clip ends
    there and PO-B's is refused. PO-A's label read at 25, decoded now, is PO-A's (linked to
    its ended clip), as after any clip the next order's scan ended; it ends not PO-B's
    packing. The session forgot PO-A's clip there, and that read ended PO-B's packing."""
    rules = SessionSection(require_packer=True)
    a = (Scanned(ANN_BADGE, 1.0, "keyboard"), Scanned(ORDER_A, 10.0, "keyboard"))
    a = (*a, Scanned(SIGNOUT, 28.0, "keyboard"))
    idle = after(*a, Scanned(ORDER_B, 30.0, "keyboard"), rules=rules)
    state, actions = step(idle, Scanned(OTHER_WAYBILL, 25.0), rules)
    assert LinkWaybill("PO-A", OTHER_WAYBILL.text, "YTO", 25.0, ended=True) in actions
    assert isinstance(state, Idle) and state.unrecorded == "PO-B"


NEXT_ORDER_REFUSED = {
    # PO-B's scan ends PO-A's clip at 30; PO-B's clip refused (the disk full)
    "next-order": (Scanned(ORDER_B, 30.0, "keyboard"), ClipRefused("PO-B", 30.0, "disk full")),
    # PO-A sealed by the pedal at 30, PO-B scanned in the same instant, its clip refused
    "sealed-then-next": (
        PedalPress(30.0),
        Scanned(ORDER_B, 30.0, "keyboard"),
        ClipRefused("PO-B", 30.0, "disk full"),
    ),
}
UNSIGNED_NEXT_ORDER = {
    # PO-B scanned at 30 with no packer signed in (require_packer): PO-A's clip ends, B's refused
    "next-order-unsigned": (Scanned(SIGNOUT, 28.0, "keyboard"), Scanned(ORDER_B, 30.0, "keyboard")),
    # PO-A sealed by the pedal at 30, PO-B scanned in the same instant with no packer signed in
    "sealed-then-unsigned": (
        Scanned(SIGNOUT, 28.0, "keyboard"),
        PedalPress(30.0),
        Scanned(ORDER_B, 30.0, "keyboard"),
    ),
}


@pytest.mark.parametrize("pedal", [False, True], ids=["label", "pedal-then-label"])
@pytest.mark.parametrize("then", [*NEXT_ORDER_REFUSED, *UNSIGNED_NEXT_ORDER])
def test_a_label_scanned_after_the_next_orders_scan_is_not_the_clip_before(
    then: str, pedal: bool
) -> None:
    """PO-A records from 10; PO-B is scanned by hand at 30 (ending PO-A's clip, or just after
    its seal) and its clip refused: PO-B is packed with no clip. A waybill scanned by hand
    then, stamped 30 too (one frame interval), after PO-B's scan, with or without a pedal
    press between: PO-B's label (or a later one's), never PO-A's. It was linked to PO-A's
    ended clip (stamped at its end, inside it): another buyer's label on PO-A. A read the
    camera made while PO-A's clip was open, decoded now, is still PO-A's."""
    unsigned = then in UNSIGNED_NEXT_ORDER
    rules = SessionSection(require_packer=unsigned)
    a = (Scanned(ANN_BADGE, 1.0, "keyboard"), Scanned(ORDER_A, 10.0, "keyboard"))
    b = UNSIGNED_NEXT_ORDER[then] if unsigned else NEXT_ORDER_REFUSED[then]
    idle = after(*a, *b, *([PedalPress(30.0)] if pedal else []), rules=rules)
    assert isinstance(idle, Idle) and idle.last == ("PO-A", 30.0)
    state, actions = step(idle, Scanned(OTHER_WAYBILL, 30.0, "keyboard"), rules)
    assert not any(isinstance(x, LinkWaybill) for x in actions)
    assert isinstance(state, Idle) and OTHER_WAYBILL.text not in state.last_waybills
    assert OTHER_WAYBILL.text not in dict(state.floor.waybills)
    _, actions = step(idle, Scanned(OTHER_WAYBILL, 29.9), rules)  # read in PO-A's clip: A's
    assert LinkWaybill("PO-A", OTHER_WAYBILL.text, "YTO", 29.9, ended=True) in actions


def test_a_label_in_the_frame_that_opened_a_refused_next_order_is_the_parcel_befores() -> None:
    """The camera reads PO-B's sheet at 30 (ending PO-A's clip; PO-B's refused) and PO-A's
    label in that frame: one frame's reads come in no set order, and the frame was shot before
    PO-B was opened. The label is PO-A's, linked to its ended clip, as when PO-B's clip opens
    (``_opening_frame``); a label scanned by hand in that instant would be PO-B's."""
    state, _ = step(rec("PO-A", 10.0), Scanned(ORDER_B, 30.0), RULES)
    idle, _ = step(state, ClipRefused("PO-B", 30.0, "disk full"), RULES)
    _, actions = step(idle, Scanned(OTHER_WAYBILL, 30.0), RULES)
    assert LinkWaybill("PO-A", OTHER_WAYBILL.text, "YTO", 30.0, ended=True) in actions


def test_the_sealed_orders_sheet_seen_again_by_the_camera_opens_no_repack() -> None:
    """The sheet of the order just sealed, still at the table and seen again: no repack clip
    (it would record the next parcel under this order until that one is scanned)."""
    note = (
        "its clip has ended: seen again by the camera, ignored (scan it by hand to record a repack)"
    )
    assert step(SEALED_A, Scanned(ORDER_A, 25.0), RULES) == (
        SEALED_A,
        [LogEvent("order", "PO-A", 25.0, "camera", note, in_clip=False), PreviousParcel(25.0)],
    )
    # Nor once another order has been recorded: PO-A's sheet may lie there still.
    state, _ = step(replace(SEALED_A, floor=packed("PO-A")), Scanned(ORDER_B, 30.0), RULES)
    state, _ = step(state, Scanned(SEAL, 40.0), RULES)
    state, actions = step(state, Scanned(ORDER_A, 50.0), RULES)
    assert isinstance(state, Idle) and state.last == ("PO-B", 40.0)
    assert actions == [
        LogEvent("order", "PO-A", 50.0, "camera", note, in_clip=False),
        PreviousParcel(50.0),
    ]


def packing_b_after_a(end: str, rules: SessionSection, *in_a: Code) -> Recording:
    """PO-B recording, scanned by hand after PO-A's clip (with ``in_a`` scanned by the camera
    in it) was sealed by hand (``end`` "sealed") or ended by PO-B as the next order."""
    state: object = rec("PO-A", 10.0, floor=packed("PO-A"))
    for code in in_a:
        state, _ = step(state, Scanned(code, 15.0), rules)
    if end == "sealed" and isinstance(state, Recording):
        state, _ = step(state, Scanned(SEAL, 20.0, "keyboard"), rules)
    state, _ = step(state, Scanned(ORDER_B, 21.0, "keyboard"), rules)
    assert isinstance(state, Recording) and state.order_id == "PO-B"
    return state


@pytest.mark.parametrize("end", ["sealed", "next-order"])
def test_the_last_orders_sheet_seen_again_while_the_next_is_recorded_ends_nothing(
    end: str,
) -> None:
    """PO-A's sheet, still at the table when PO-B is scanned (after PO-A's seal, or as the
    next order), covered by PO-B's box for longer than the debounce and seen again: the
    camera's read of the order whose clip ended last changes nothing at any time. It ended
    PO-B's clip as next-order and opened a "repack" of PO-A recording PO-B's packing."""
    note = (
        "its clip has ended: seen again by the camera, ignored (scan it by hand to record a repack)"
    )
    before = packing_b_after_a(end, RULES)
    state, actions = step(before, Scanned(ORDER_A, 30.0), RULES)
    assert state == before
    assert actions == [LogEvent("order", "PO-A", 30.0, "camera", note)]
    # By hand it is a repack of PO-A, as ever; and once PO-B has ended, the camera still
    # opens no clip of PO-A: its sheet may lie there while PO-C is packed.
    _, actions = step(before, Scanned(ORDER_A, 30.0, "keyboard"), RULES)
    assert kinds(actions) == ["StopClip", "StartClip", "LogEvent"]
    state, _ = step(before, Scanned(SEAL, 40.0, "keyboard"), RULES)
    state, _ = step(state, Scanned(Code("PO-C", Kind.ORDER), 41.0, "keyboard"), RULES)
    _, actions = step(state, Scanned(ORDER_A, 50.0), RULES)
    assert actions == [LogEvent("order", "PO-A", 50.0, "camera", note)]


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
@pytest.mark.parametrize("end", ["sealed", "next-order"])
def test_the_last_orders_waybill_seen_again_while_the_next_is_recorded_is_not_its_waybill(
    end: str, ends: bool
) -> None:
    """PO-A's parcel, its waybill label on it, still at the table while PO-B is packed, and
    seen again by the camera: the label is PO-A's. It was linked to PO-B as its waybill (or,
    with waybill_ends_clip, ended PO-B's clip). By hand it is linked, as ever."""
    rules = SessionSection(waybill_ends_clip=ends)
    before = packing_b_after_a(end, rules, WAYBILL)
    state, actions = step(before, Scanned(WAYBILL, 30.0), rules)
    assert state == before
    note = "PO-A's waybill, seen again by the camera; ignored (scan it by hand to link it)"
    assert actions == [LogEvent("waybill", WAYBILL.text, 30.0, "camera", note)]
    _, actions = step(before, Scanned(WAYBILL, 30.0, "keyboard"), rules)
    assert LinkWaybill("PO-B", WAYBILL.text, "SF", 30.0) in actions


def test_a_read_after_the_clip_ended_or_of_another_order_still_opens_a_clip() -> None:
    # Scanned by hand again after the seal: a repack of PO-A, as ever.
    state, actions = step(SEALED_A, Scanned(ORDER_A, 20.0, "keyboard"), RULES)
    assert state == rec("PO-A", 20.0, previous="PO-A", floor=packed("PO-A"), at_scan=True)
    assert kinds(actions) == ["StartClip", "LogEvent"]
    # The next order's sheet, read at 19.5 and decoded late: its clip opens (the recorder
    # starts it after PO-A's last frame, so no second is in both).
    state, actions = step(SEALED_A, Scanned(ORDER_B, 19.5), RULES)
    assert state == rec("PO-B", 19.5, previous="PO-A", floor=packed("PO-B"), at_scan=True)
    assert kinds(actions) == ["StartClip", "LogEvent"]


# ---- an earlier order's sheet lying in view --------------------------------------------------

SEEN_AGAIN = (
    "its clip has ended: seen again by the camera, ignored (scan it by hand to record a repack)"
)
STILL_RULES = SessionSection(still_timeout_s=5.0)
B_ENDS = {
    "sealed": Scanned(SEAL, 30.0, "keyboard"),
    "pedal": PedalPress(30.0),
    "waybill": Scanned(WAYBILL, 30.0, "keyboard"),
    "timeout": Tick(21.0 + STILL_RULES.max_duration_s),
    "still": Tick(26.0, moving=False),
}


def after(*events: Scanned | PedalPress | Tick | CameraLost, rules: SessionSection) -> State:
    state: State = Idle()
    for event in events:
        state, _ = step(state, event, rules)
    return state


@pytest.mark.parametrize("end", list(B_ENDS))
def test_the_sheet_of_the_order_before_the_last_opens_no_clip_over_the_next_parcel(
    end: str,
) -> None:
    """PO-A packed, then PO-B, whose clip ended (however): PO-A's sheet, still lying at the
    table, seen again by the camera. It opened a "repack" of PO-A recording PO-B's parcel
    (or the next one): the session forgot PO-A once PO-B's clip had ended. The rule for the
    last order holds for every order packed here: by hand it is a repack, as ever."""
    rules = replace(STILL_RULES, waybill_ends_clip=end == "waybill")
    a = (Scanned(ORDER_A, 10.0, "keyboard"), PedalPress(20.0))
    idle = after(*a, Scanned(ORDER_B, 21.0, "keyboard"), B_ENDS[end], rules=rules)
    assert isinstance(idle, Idle) and idle.last is not None and idle.last[0] == "PO-B"
    t = 700.0
    state, actions = step(idle, Scanned(ORDER_A, t), rules)
    assert state == idle
    assert actions == [
        LogEvent("order", "PO-A", t, "camera", SEEN_AGAIN, in_clip=False),
        PreviousParcel(t),
    ]
    state, actions = step(idle, Scanned(ORDER_A, t, "keyboard"), rules)
    assert isinstance(state, Recording) and state.order_id == "PO-A"
    assert kinds(actions) == ["StartClip", "LogEvent"]


def test_an_earlier_orders_sheet_ends_nothing_while_another_is_recorded_or_waits() -> None:
    """PO-A, PO-B, then PO-C recorded (or waiting for the camera): PO-A's sheet seen again
    is not a next order. It ended PO-C's clip and recorded PO-C's parcel as PO-A's."""
    order_c = Code("PO-C", Kind.ORDER)
    ab = (Scanned(ORDER_A, 10.0, "keyboard"), Scanned(ORDER_B, 20.0, "keyboard"))
    recording = after(*ab, Scanned(order_c, 30.0, "keyboard"), rules=RULES)
    assert isinstance(recording, Recording) and recording.previous == "PO-B"
    assert step(recording, Scanned(ORDER_A, 40.0), RULES) == (
        recording,
        [LogEvent("order", "PO-A", 40.0, "camera", SEEN_AGAIN)],
    )
    waiting = after(*ab, CameraLost(25.0), Scanned(order_c, 30.0, "keyboard"), rules=RULES)
    assert isinstance(waiting, Suspended) and waiting.order_id == "PO-C"
    for order in (ORDER_A, ORDER_B):
        state, actions = step(waiting, Scanned(order, 40.0), RULES)
        assert state == waiting
        assert actions == [LogEvent("order", order.text, 40.0, "camera", SEEN_AGAIN)]
    # By hand it is the next order, as ever.
    _, actions = step(recording, Scanned(ORDER_A, 40.0, "keyboard"), RULES)
    assert kinds(actions) == ["StopClip", "StartClip", "LogEvent"]


def test_the_sheet_of_an_order_packed_with_no_clip_opens_none_over_the_next_parcel() -> None:
    """PO-A's clip refused (the disk full): it is packed all the same, and its sheet shown
    again records it (its own parcel). Once PO-B is scanned, PO-A's sheet still lying there
    is not a next order: it ended PO-B's clip and recorded PO-B's parcel as PO-A's."""
    state, _ = step(Idle(), Scanned(ORDER_A, 10.0, "keyboard"), RULES)
    idle, _ = step(state, ClipRefused("PO-A", 10.0, "disk full"), RULES)
    assert isinstance(idle, Idle) and idle.unrecorded == "PO-A"
    _, actions = step(idle, Scanned(ORDER_A, 20.0), RULES)
    assert kinds(actions) == ["StartClip", "LogEvent"]
    recording, _ = step(idle, Scanned(ORDER_B, 20.0, "keyboard"), RULES)
    assert isinstance(recording, Recording) and recording.previous is None
    assert step(recording, Scanned(ORDER_A, 30.0), RULES) == (
        recording,
        [LogEvent("order", "PO-A", 30.0, "camera", SEEN_AGAIN)],
    )


def test_the_table_remembers_its_last_orders_only() -> None:
    """A sheet lies in view for a while, not for ever: the camera opens a clip of an order
    again once KEPT_ORDERS others have been packed here since."""
    events = [Scanned(Code(f"PO-{i}", Kind.ORDER), i, "keyboard") for i in range(KEPT_ORDERS + 1)]
    state = after(*events, rules=RULES)
    assert isinstance(state, Recording)
    late = float(KEPT_ORDERS + 1)
    _, actions = step(state, Scanned(Code("PO-1", Kind.ORDER), late), RULES)
    assert kinds(actions) == ["LogEvent"]
    _, actions = step(state, Scanned(Code("PO-0", Kind.ORDER), late), RULES)
    assert kinds(actions) == ["StopClip", "StartClip", "LogEvent"]


# ---- an earlier parcel's waybill label lying in view -----------------------------------------

ORDER_C = Code("PO-C", Kind.ORDER)
LABEL_A = "PO-A's waybill, seen again by the camera; ignored (scan it by hand to link it)"


def labelled_a(rules: SessionSection, *then: Scanned | PedalPress | Tick | CameraLost) -> State:
    """PO-A packed, its waybill linked to its clip, sealed by the pedal; then PO-B scanned by
    hand and ``then``."""
    a = (Scanned(ORDER_A, 10.0, "keyboard"), Scanned(WAYBILL, 12.0), PedalPress(15.0))
    return after(*a, Scanned(ORDER_B, 20.0, "keyboard"), *then, rules=rules)


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
def test_an_earlier_parcels_waybill_lying_in_view_is_not_the_open_orders(ends: bool) -> None:
    """PO-A packed with its waybill, PO-B, then PO-C recording: PO-A's label, lying on the
    table, read by the camera. The session remembered the last order's waybills only: it
    linked PO-A's label to PO-C's clip (its index row and manifest named another buyer's
    waybill) or, with waybill_ends_clip, ended PO-C's clip mid-packing. By hand it is linked
    (and ends the clip), as ever: a deliberate act, as for the last order's label."""
    rules = SessionSection(waybill_ends_clip=ends)
    c = labelled_a(rules, PedalPress(25.0), Scanned(ORDER_C, 30.0, "keyboard"))
    assert isinstance(c, Recording) and c.order_id == "PO-C" and c.previous == "PO-B"
    state, actions = step(c, Scanned(WAYBILL, 40.0), rules)
    assert (state, actions) == (c, [LogEvent("waybill", WAYBILL.text, 40.0, "camera", LABEL_A)])
    _, actions = step(c, Scanned(WAYBILL, 40.0, "keyboard"), rules)
    assert LinkWaybill("PO-C", WAYBILL.text, "SF", 40.0) in actions
    assert (StopClip(FinishReason.WAYBILL, 40.0) in actions) is ends


def test_an_earlier_parcels_waybill_ends_no_packing_waiting_or_unrecorded() -> None:
    """PO-A's label read by the camera while PO-C waits for the camera (read from a frame
    before the loss): it ended PO-C (waybill_ends_clip), so PO-C did not resume. With PO-C
    packed with no clip (refused): it ended PO-C's packing, so the next order's pre-roll
    reached back into PO-C's parcel."""
    rules = SessionSection(waybill_ends_clip=True)
    waiting = labelled_a(rules, Scanned(ORDER_C, 30.0, "keyboard"), CameraLost(35.0))
    assert isinstance(waiting, Suspended) and waiting.order_id == "PO-C"
    assert step(waiting, Scanned(WAYBILL, 33.0), rules) == (
        waiting,
        [LogEvent("waybill", WAYBILL.text, 33.0, "camera", LABEL_A)],
    )
    refused, _ = step(labelled_a(rules), ClipRefused("PO-B", 20.0, "disk full"), rules)
    assert isinstance(refused, Idle) and refused.unrecorded == "PO-B"
    assert step(refused, Scanned(WAYBILL, 30.0), rules) == (
        refused,
        [LogEvent("waybill", WAYBILL.text, 30.0, "camera", LABEL_A, in_clip=False),
         PreviousParcel(30.0)],
    )  # fmt: skip


def test_an_earlier_parcels_waybill_read_late_is_linked_to_no_clip() -> None:
    """PO-A's label read by the camera while PO-B's clip was open, decoded after PO-C was
    scanned: it is not PO-B's waybill either (it was linked to PO-B's ended clip)."""
    c = labelled_a(RULES, Scanned(ORDER_C, 30.0, "keyboard"))
    assert isinstance(c, Recording) and c.previous_span == (20.0, 30.0)
    note = "stamped t=29.000, before the clip of 'PO-C' began at t=30.000: " + LABEL_A
    assert step(c, Scanned(WAYBILL, 29.0), RULES) == (
        c,
        [LogEvent("waybill", WAYBILL.text, 29.0, "camera", note, in_clip=False)],
    )


LOOSE = (
    "a waybill first seen with no clip open, seen again by the camera; ignored (scan it by hand"
    " to link it)"
)


@pytest.mark.parametrize("ends", [False, True], ids=["linked", "waybill-ends-clip"])
@pytest.mark.parametrize(
    "first",
    [Scanned(WAYBILL, 16.0), Scanned(WAYBILL, 16.0, "keyboard"), Scanned(WAYBILL, 17.0)],
    ids=["camera", "by-hand", "decoded-late"],
)
def test_a_waybill_first_seen_with_no_clip_open_is_no_waybill_of_a_later_clip(
    first: Scanned, ends: bool
) -> None:
    """PO-A sealed by the pedal before its label was read; the label is read at the table with
    no clip open (by the camera or by hand; or read then and decoded after PO-B's scan), then
    by the camera while PO-B is recorded. It was linked to PO-B's clip (its index row and
    signed manifest named another parcel's waybill) or, with waybill_ends_clip, ended PO-B's
    clip mid-packing. A label stuck on before its order's scan is no different: the camera
    cannot tell them apart. By hand it is linked (and ends the clip), as ever."""
    rules = SessionSection(waybill_ends_clip=ends)
    a = (Scanned(ORDER_A, 10.0, "keyboard"), PedalPress(15.0))
    scan_b = Scanned(ORDER_B, 20.0, "keyboard")
    b = after(*a, *((scan_b, first) if first.t == 17.0 else (first, scan_b)), rules=rules)
    assert isinstance(b, Recording) and b.order_id == "PO-B" and b.waybills == ()
    state, actions = step(b, Scanned(WAYBILL, 30.0), rules)
    assert (state, actions) == (b, [LogEvent("waybill", WAYBILL.text, 30.0, "camera", LOOSE)])
    state, actions = step(b, Scanned(WAYBILL, 30.0, "keyboard"), rules)
    assert LinkWaybill("PO-B", WAYBILL.text, "SF", 30.0) in actions
    assert (StopClip(FinishReason.WAYBILL, 30.0) in actions) is ends
    if not ends:  # linked by hand: PO-B's label from then on, the camera's reads included
        _, actions = step(state, Scanned(WAYBILL, 40.0), rules)
        assert LinkWaybill("PO-B", WAYBILL.text, "SF", 40.0) in actions


def test_the_table_remembers_its_last_unlinked_waybills_only() -> None:
    """Each parcel has its own label: those read with no clip open are kept as many as the
    orders, the newest; an older one is a waybill of the open order again."""
    labels = [Scanned(Code(f"SF{i:013d}", Kind.WAYBILL, "SF"), float(i)) for i in range(101)]
    state = after(*labels, Scanned(ORDER_B, 200.0, "keyboard"), rules=RULES)
    assert len(state.floor.unlinked) == KEPT_ORDERS
    assert state.floor.unlinked[0] == labels[-1].code.text
    _, actions = step(state, replace(labels[0], t=210.0), RULES)
    assert kinds(actions) == ["LogEvent", "LinkWaybill"]
    _, actions = step(state, replace(labels[1], t=210.0), RULES)
    assert kinds(actions) == ["LogEvent"]


def test_the_table_remembers_the_waybills_of_its_last_orders_only() -> None:
    """A label is its order's for as long as the table remembers that order: a repack of
    PO-A gets PO-A's label from the camera, and once KEPT_ORDERS others were packed since,
    PO-A's label is a waybill of the open order again."""
    repack = labelled_a(RULES, Scanned(ORDER_A, 30.0, "keyboard"))
    assert isinstance(repack, Recording) and repack.order_id == "PO-A"
    _, actions = step(repack, Scanned(WAYBILL, 40.0), RULES)
    assert LinkWaybill("PO-A", WAYBILL.text, "SF", 40.0) in actions
    others = [Scanned(Code(f"PO-{i}", Kind.ORDER), 20.0 + i, "keyboard") for i in range(1, 100)]
    state = labelled_a(RULES, *others[:-1])
    assert state.floor.waybills == ((WAYBILL.text, "PO-A"),)
    state, _ = step(state, others[-1], RULES)
    assert state.floor.waybills == () and len(state.floor.packed) == KEPT_ORDERS
    _, actions = step(state, Scanned(WAYBILL, 200.0), RULES)
    assert LinkWaybill("PO-99", WAYBILL.text, "SF", 200.0) in actions


def test_a_floor_remembered_from_the_index_knows_the_sheets_and_labels_in_view() -> None:
    """After a restart, the orders of the station's last clips (newest first) with their
    waybills: their sheets open no clip, their labels are no waybill of the next order."""
    yt = "YT1234567890123"
    floor = remembered([("PO-B", [yt]), ("PO-A", [WAYBILL.text]), ("PO-B", [])])
    assert floor == Floor(packed=("PO-B", "PO-A"), waybills=((yt, "PO-B"), (WAYBILL.text, "PO-A")))
    idle = Idle(floor)
    assert kinds(step(idle, Scanned(ORDER_A, 5.0), RULES)[1]) == ["LogEvent", "PreviousParcel"]
    c, _ = step(idle, Scanned(ORDER_C, 5.0, "keyboard"), RULES)
    assert step(c, Scanned(WAYBILL, 6.0), RULES) == (
        c,
        [LogEvent("waybill", WAYBILL.text, 6.0, "camera", LABEL_A)],
    )
    many = remembered((f"PO-{i}", [f"SF{i:013d}"]) for i in range(2 * KEPT_ORDERS))
    assert many.packed[0] == "PO-0" and len(many.packed) == KEPT_ORDERS
    assert len(many.waybills) == KEPT_ORDERS and many.waybills[0] == ("SF0000000000000", "PO-0")


def test_a_floor_remembered_from_the_index_knows_the_labels_read_with_no_clip_open() -> None:
    """After a restart, the waybills the station read with no clip open and linked to none
    (its index's scan events of no clip, newest first): read by the camera while the next
    order is packed, one is neither its waybill nor its end. One linked to a remembered
    order is that order's label; a hand scan still links."""
    yt = "YT1234567890123"
    idle = restarted([("PO-A", [yt])], unlinked=[WAYBILL.text, yt, WAYBILL.text])
    assert idle == Idle(Floor(packed=("PO-A",), waybills=((yt, "PO-A"),), unlinked=(WAYBILL.text,)))
    ends = SessionSection(waybill_ends_clip=True)
    c, _ = step(idle, Scanned(ORDER_C, 5.0, "keyboard"), ends)
    assert step(c, Scanned(WAYBILL, 6.0), ends) == (
        c,
        [LogEvent("waybill", WAYBILL.text, 6.0, "camera", LOOSE)],
    )
    assert kinds(step(c, Scanned(WAYBILL, 6.0, "keyboard"), ends)[1]) == [
        "LogEvent", "LinkWaybill", "StopClip"
    ]  # fmt: skip
    many = remembered([], (f"SF{i:013d}" for i in range(2 * KEPT_ORDERS)))
    assert len(many.unlinked) == KEPT_ORDERS and many.unlinked[0] == "SF0000000000000"


# ---- a restart mid-order ------------------------------------------------------------------

# The station stopped while PO-A's clip recorded (its newest clip ended "interrupted"); PO-B
# was packed and sealed before. Nobody is signed in after the restart.
CUT_A = restarted([("PO-A", [WAYBILL.text]), ("PO-B", [])], Cut("PO-A"))


def test_a_restart_keeps_the_cut_order_in_memory_and_its_packing_unended() -> None:
    floor = Floor(packed=("PO-A", "PO-B"), waybills=((WAYBILL.text, "PO-A"),))
    assert restarted([("PO-A", [WAYBILL.text]), ("PO-B", [])], Cut("PO-A")) == Idle(
        floor, unrecorded="PO-A", cut=Cut("PO-A")
    )
    assert restarted([("PO-A", []), ("PO-B", [])]) == Idle(Floor(packed=("PO-A", "PO-B")))


@pytest.mark.parametrize("source", ["camera", "keyboard"])
def test_the_sheet_of_the_order_a_stop_cut_resumes_its_packing(source: str) -> None:
    """Shown to the camera or scanned: a clip of PO-A, with its pre-roll (that parcel), marked
    as resuming the packing the stop cut (no repack); then PO-A is the order open, as ever."""
    state, actions = step(CUT_A, Scanned(ORDER_A, 5.0, source), RULES)
    assert actions == [
        StartClip("PO-A", 5.0, after_restart=True),
        LogEvent("order", "PO-A", 5.0, source),
    ]
    assert state == rec("PO-A", 5.0, floor=CUT_A.floor)
    # sealed: its sheet seen again is an old one; scanned by hand, a repack
    state, _ = step(state, Scanned(SEAL, 9.0), RULES)
    assert kinds(step(state, Scanned(ORDER_A, 12.0), RULES)[1]) == ["LogEvent", "PreviousParcel"]
    again = step(state, Scanned(ORDER_A, 12.0, "keyboard"), RULES)[1][0]
    assert again == StartClip("PO-A", 12.0)


def test_the_other_orders_remembered_before_a_restart_stay_old_sheets() -> None:
    assert kinds(step(CUT_A, Scanned(ORDER_B, 5.0), RULES)[1]) == ["LogEvent", "PreviousParcel"]


def test_another_order_after_a_restart_ends_the_cut_packing() -> None:
    """PO-C scanned first: its clip starts at its scan (PO-A's parcel may be packed on in
    view before it), and PO-A's sheet is an old one from then on, not a packing resumed."""
    order_c = Code("PO-C", Kind.ORDER)
    state, actions = step(CUT_A, Scanned(order_c, 5.0, "keyboard"), RULES)
    assert actions[0] == StartClip("PO-C", 5.0, pre_roll=False)
    assert kinds(step(state, Scanned(ORDER_A, 6.0), RULES)[1]) == ["LogEvent"]
    idle, _ = step(state, Scanned(SEAL, 9.0), RULES)
    assert kinds(step(idle, Scanned(ORDER_A, 12.0), RULES)[1]) == ["LogEvent", "PreviousParcel"]
    assert step(idle, Scanned(ORDER_A, 12.0, "keyboard"), RULES)[1][0] == StartClip("PO-A", 12.0)


@pytest.mark.parametrize("end", [Scanned(SEAL, 3.0), Scanned(WAYBILL, 3.0, "keyboard"),
                                 PedalPress(3.0)])  # fmt: skip
def test_a_cut_packing_ended_with_no_clip_is_not_resumed(end) -> None:
    """Sealed (or its waybill scanned, or the pedal) before its sheet was shown: that packing
    is over, PO-A is an order packed here, its sheet an old one and its hand scan a repack."""
    state, _ = step(CUT_A, end, RULES)
    assert state == Idle(CUT_A.floor)
    assert kinds(step(state, Scanned(ORDER_A, 5.0), RULES)[1]) == ["LogEvent", "PreviousParcel"]
    assert step(state, Scanned(ORDER_A, 5.0, "keyboard"), RULES)[1][0] == StartClip("PO-A", 5.0)


def test_a_cut_packing_refused_for_no_packer_resumes_once_one_signs_in() -> None:
    rules = SessionSection(require_packer=True)
    state, actions = step(CUT_A, Scanned(ORDER_A, 5.0), rules)
    assert kinds(actions) == ["LogEvent"] and actions[0].kind == "refused"
    assert state == CUT_A
    state, _ = step(state, Scanned(Code("OP:alice", Kind.OPERATOR, "alice"), 6.0), rules)
    _, actions = step(state, Scanned(ORDER_A, 7.0), rules)
    assert actions[0] == StartClip("PO-A", 7.0, packer="alice", after_restart=True)


def test_a_cut_return_resumes_as_a_return() -> None:
    cut = restarted([("PO-A", [])], Cut("PO-A", ClipKind.RETURN))
    state, actions = step(cut, Scanned(ORDER_A, 5.0), RULES)
    assert actions[0] == StartClip("PO-A", 5.0, kind=ClipKind.RETURN, after_restart=True)
    assert isinstance(state, Recording) and state.kind is ClipKind.RETURN
    assert state.floor.next_kind is ClipKind.ORDER


def test_a_cut_packing_survives_a_camera_away_at_start() -> None:
    """The camera is absent when the station starts: the cut packing waits with it, and PO-A's
    sheet shown when it is back, or scanned in the dark, resumes it."""
    dark, _ = step(CUT_A, CameraLost(0.0), RULES)
    assert dark == Suspended(None, 0.0, floor=CUT_A.floor, unrecorded="PO-A", cut=Cut("PO-A"))
    back, _ = step(dark, CameraBack(4.0), RULES)
    assert back == CUT_A
    assert step(back, Scanned(ORDER_A, 5.0), RULES)[1][0].after_restart
    waiting, _ = step(dark, Scanned(ORDER_A, 2.0, "keyboard"), RULES)
    _, actions = step(waiting, CameraBack(4.0), RULES)
    assert actions[0].after_restart and actions[0].scanned_t == 2.0
    sealed, _ = step(waiting, Scanned(SEAL, 3.0), RULES)
    again, _ = step(sealed, Scanned(ORDER_A, 3.5, "keyboard"), RULES)
    assert not step(again, CameraBack(4.0), RULES)[1][0].after_restart


def test_a_timeout_of_the_resumed_clip_leaves_no_second_resumption() -> None:
    state, _ = step(CUT_A, Scanned(ORDER_A, 5.0, "keyboard"), RULES)
    state, _ = step(state, Tick(5.0 + RULES.max_duration_s), RULES)
    assert isinstance(state, Idle) and state.cut is None
    assert step(state, Scanned(ORDER_A, 9999.0, "keyboard"), RULES)[1][0].after_restart is False


# ---- the repack card -------------------------------------------------------------------------

REPACK = Code("REPACK", Kind.CONTROL, "repack")
# PO-A and PO-B were packed here, PO-A last: their sheets may lie in view.
PACKED_HERE = Idle(packed("PO-A", "PO-B"), last=("PO-A", 20.0))


def test_the_repack_card_shown_lets_the_next_sheet_shown_record_its_repack() -> None:
    """A station with no hand scanner: the repack card, then PO-B's sheet shown to the camera
    within repack_window_s, opens PO-B's clip (the runner makes it a repack); only that
    sheet: the next one packed here before is an old sheet again."""
    armed, actions = step(PACKED_HERE, Scanned(REPACK, 30.0), RULES)
    assert armed == replace(PACKED_HERE, floor=replace(PACKED_HERE.floor, repack=(30.0, 40.0)))
    assert kinds(actions) == ["LogEvent"] and actions[0].card == "repack"
    state, actions = step(armed, Scanned(ORDER_B, 35.0), RULES)
    assert actions[0] == StartClip("PO-B", 35.0)
    assert isinstance(state, Recording) and state.floor.repack is None
    idle, _ = step(state, Scanned(SEAL, 50.0), RULES)
    assert kinds(step(idle, Scanned(ORDER_A, 52.0), RULES)[1]) == ["LogEvent", "PreviousParcel"]


def test_a_sheet_shown_after_the_repack_window_is_an_old_one_again() -> None:
    armed, _ = step(PACKED_HERE, Scanned(REPACK, 30.0), RULES)
    late = 30.0 + RULES.repack_window_s + 0.1
    assert kinds(step(armed, Scanned(ORDER_B, late), RULES)[1]) == ["LogEvent", "PreviousParcel"]


def test_a_sheet_read_before_the_repack_card_was_shown_is_no_repack() -> None:
    """Decoded late, stamped before the card: a sheet lying in view, not the one shown."""
    armed, _ = step(PACKED_HERE, Scanned(REPACK, 30.0), RULES)
    assert kinds(step(armed, Scanned(ORDER_B, 29.5), RULES)[1]) == ["LogEvent", "PreviousParcel"]


def test_a_repack_card_lying_in_view_seen_again_makes_no_repack() -> None:
    """Put down in view and seen again where it lay: no gesture, so no repack window; every
    old sheet seen after it stays an old sheet."""
    state, actions = step(PACKED_HERE, Scanned(REPACK, 30.0, lying=True), RULES)
    assert state == PACKED_HERE and actions[0].card == LYING_CARD
    assert kinds(step(state, Scanned(ORDER_B, 31.0), RULES)[1]) == ["LogEvent", "PreviousParcel"]


def test_a_repack_card_never_touches_the_open_clip() -> None:
    """Shown while PO-C records: logged, and an old sheet read then still changes nothing
    (ending the open clip is a seal); once it is sealed, the next sheet within the window is
    the repack."""
    state, actions = step(
        rec("PO-C", 25.0, floor=packed("PO-C", "PO-A")), Scanned(REPACK, 30.0), RULES
    )
    assert kinds(actions) == ["LogEvent"] and isinstance(state, Recording)
    assert step(state, Scanned(ORDER_A, 31.0), RULES)[0].order_id == "PO-C"
    idle, _ = step(state, Scanned(SEAL, 32.0), RULES)
    assert step(idle, Scanned(ORDER_A, 33.0), RULES)[1][0] == StartClip("PO-A", 33.0)


# ---- camera loss -----------------------------------------------------------------------------


def test_camera_loss_closes_clip_and_resumes_same_order_without_pre_roll() -> None:
    state, actions = step(rec(waybills=("SF1234567890123",)), CameraLost(15.0), RULES)
    assert state == Suspended(
        "PO-A",
        15.0,
        ("SF1234567890123",),
        order_at_loss="PO-A",
        since=10.0,
        kind=ClipKind.ORDER,
        first_t=10.0,
    )
    assert actions == [StopClip(FinishReason.CAMERA_LOST, 15.0)]
    state, actions = step(state, CameraBack(19.0), RULES)
    assert state == Recording("PO-A", 19.0, 19.0, ("SF1234567890123",), first_t=10.0)
    assert actions == [
        StartClip(
            "PO-A",
            19.0,
            pre_roll=False,
            waybills=("SF1234567890123",),
            resumed_after_s=4.0,
            lost_t=15.0,
            order_at_loss="PO-A",
        )
    ]


ALICE = Code("OP:alice", Kind.OPERATOR, "alice")
BOB = Code("OP:bob", Kind.OPERATOR, "bob")
SIGNOUT = Code("SIGNOUT", Kind.CONTROL, "signout")


def test_a_resumed_clip_keeps_the_packer_of_the_clip_the_loss_cut() -> None:
    """The same packing goes on after the loss: bob's badge read mid-clip (the next clip's
    packer) no more makes the resumed clip his than it made the clip it was read in."""
    state: State = rec("PO-A", 10.0, packer="alice", floor=Floor("alice"))
    state, _ = step(state, Scanned(BOB, 11.0), RULES)
    state, _ = step(state, CameraLost(15.0), RULES)
    state, actions = step(state, CameraBack(19.0), RULES)
    (start,) = actions
    assert isinstance(start, StartClip) and (start.packer, start.handover) == ("alice", None)
    assert isinstance(state, Recording) and (state.packer, state.floor.packer) == ("alice", "bob")


@pytest.mark.parametrize(
    ("dark", "packer", "handover"),
    [
        ([SIGNOUT, BOB], None, ("alice", "bob")),
        ([BOB], None, ("alice", "bob")),
        ([SIGNOUT], None, ("alice", None)),
        ([SIGNOUT, ALICE], "alice", None),  # she signed in again: it is hers
        ([BOB, ALICE], "alice", None),
    ],
    ids=["signed-out-bob-in", "bob-in", "signed-out", "alice-again", "bob-then-alice"],
)
def test_a_resumed_clip_names_no_packer_when_sign_in_changed_in_the_dark(
    dark: list[Code], packer: str | None, handover: tuple[str | None, str | None] | None
) -> None:
    """Alice packs PO-A; the camera is lost; the packer signed in changes in the dark. Who
    packed on from the camera's return nobody saw: alice (her clip) or the one signed in now.
    The resumed clip names neither (its caption and manifest name no packer) and its start
    says who was at either end of the gap (the manifest's ``gap``)."""
    state: State = rec("PO-A", 10.0, packer="alice", floor=Floor("alice"))
    state, _ = step(state, CameraLost(15.0), RULES)
    for i, code in enumerate(dark):
        state, _ = step(state, Scanned(code, 16.0 + i, "keyboard"), RULES)
    state, actions = step(state, CameraBack(19.0), RULES)
    (start,) = actions
    assert isinstance(start, StartClip) and (start.packer, start.handover) == (packer, handover)
    assert isinstance(state, Recording) and state.packer == packer
    assert state.floor.packer == (dark[-1].detail if dark[-1] is not SIGNOUT else None)


def test_suspended_handles_scans() -> None:
    sus = Suspended("PO-A", 15.0, order_at_loss="PO-A")
    dark = Suspended(None, 15.0, order_at_loss="PO-A")  # the camera is still away
    last = ("PO-A", 16.0)  # ended in the dark: its sheet read later opens no repack
    assert step(sus, Scanned(SEAL, 16.0), RULES)[0] == replace(dark, last=last)
    by_hand = step(sus, Scanned(ORDER_A, 16.0, "keyboard"), RULES)[0]
    assert by_hand == replace(dark, last=last, floor=packed("PO-A"))
    assert step(sus, PedalPress(16.0), RULES)[0] == replace(dark, last=last)
    # PO-B waits; PO-A, closed by it, is the order before (PO-B's clip's ``previous``)
    assert step(sus, Scanned(ORDER_B, 16.0), RULES)[0] == Suspended(
        "PO-B",
        15.0,
        order_at_loss="PO-A",
        scanned_t=16.0,
        floor=packed("PO-B"),
        since=16.0,
        last=last,
    )
    state, actions = step(sus, Scanned(WAYBILL, 16.0), RULES)
    assert state.waybills == ("SF1234567890123",) and "LinkWaybill" in kinds(actions)
    assert step(sus, Tick(99.0), RULES) == (sus, [])
    assert step(sus, EndClip(99.0, FinishReason.END_OF_INPUT), RULES) == (Idle(), [])
    assert step(sus, EndClip(99.0, FinishReason.INTERRUPTED), RULES) == (Idle(), [])


def test_with_waybill_ends_clip_the_waybill_in_the_dark_ends_the_waiting_order() -> None:
    """The waybill is the seal (``waybill_ends_clip``): scanned while the camera is lost, it
    ends the order waiting, as a seal does, and is linked to that order's clip cut by the
    loss. No clip of PO-A resumes when the camera is back: it would record the table after
    PO-A was finished (the next parcel brought in) under PO-A."""
    rules = SessionSection(waybill_ends_clip=True)
    sus = Suspended("PO-A", 15.0, order_at_loss="PO-A")
    state, actions = step(sus, Scanned(WAYBILL, 16.0), rules)
    assert state == Suspended(None, 15.0, order_at_loss="PO-A", last=("PO-A", 16.0))
    assert actions[1:] == [LinkWaybill("PO-A", WAYBILL.text, "SF", 16.0, ended=True)]
    assert step(state, CameraBack(17.0), rules) == (Idle(last=("PO-A", 16.0)), [])


@pytest.mark.parametrize(
    "read",
    [Scanned(WAYBILL, 16.0, "keyboard"), Scanned(WAYBILL, 14.0)],
    ids=["scanned-by-hand-in-the-dark", "read-before-the-loss-decoded-in-the-dark"],
)
def test_a_waybill_read_while_the_order_waits_for_the_camera_is_linked_to_its_cut_clip(
    read: Scanned,
) -> None:
    """PO-A's clip is cut by a camera loss; its waybill is scanned by hand in the dark (or read
    by the camera before the loss, decoded in the dark), then PO-A is sealed in the dark. The
    link went to no clip (the runner has none open in the dark): PO-A's clip had no waybill
    in the index, searching the waybill found nothing, and after a restart it was remembered
    as no clip's label. It is linked to PO-A's clip the loss cut, as with waybill_ends_clip,
    and the clip that resumes it (if it does) names it too."""
    state, _ = step(rec("PO-A", 10.0, floor=packed("PO-A")), CameraLost(15.0), RULES)
    state, actions = step(state, read, RULES)
    assert actions[1:] == [LinkWaybill("PO-A", WAYBILL.text, "SF", read.t, ended=True)]
    assert isinstance(state, Suspended) and state.waybills == (WAYBILL.text,)
    assert state.floor.waybills == ((WAYBILL.text, "PO-A"),) and state.floor.unlinked == ()
    back, actions = step(state, CameraBack(19.0), RULES)
    assert isinstance(actions[0], StartClip) and actions[0].waybills == (WAYBILL.text,)
    sealed, actions = step(state, Scanned(SEAL, 17.0, "keyboard"), RULES)
    assert kinds(actions) == ["LogEvent"] and sealed.floor.waybills == back.floor.waybills
    # An order scanned in the dark has no clip yet: its first clip, when the camera is back,
    # names the waybill (the runner links none in the dark).
    dark = replace(state, order_id="PO-B", waybills=(), scanned_t=16.5, since=16.5)
    state, actions = step(dark, Scanned(WAYBILL, 17.0, "keyboard"), RULES)
    assert actions[1:] == [LinkWaybill("PO-B", WAYBILL.text, "SF", 17.0)]


def _links(actions: list) -> list[LinkWaybill]:
    return [a for a in actions if isinstance(a, LinkWaybill)]


def test_a_label_read_in_the_last_clip_decoded_after_a_camera_loss_is_linked_to_that_clip() -> None:
    """The camera read PO-A's label at 14, while its clip (begun at 10) was open; the decode
    reached the session only after a camera loss: in the dark, once the camera is back, in
    the clip of PO-B scanned in the dark, or in PO-A's own clip resumed after the loss. The
    session forgot when that clip began at the loss, so the label was linked to no clip (no
    clip of PO-A named it, and it was remembered as no clip's). It is linked to PO-A's clip,
    as with no loss between (``Idle.last_began``, ``Recording.previous_span``); never to
    PO-B's."""
    late = Scanned(WAYBILL, 14.0)
    ended = [LinkWaybill("PO-A", WAYBILL.text, "SF", 14.0, ended=True)]
    # PO-A sealed by hand at 14.5, then the camera lost at 15
    sealed, _ = step(
        rec("PO-A", 10.0, floor=packed("PO-A")), Scanned(SEAL, 14.5, "keyboard"), RULES
    )
    dark, _ = step(sealed, CameraLost(15.0), RULES)
    state, actions = step(dark, late, RULES)
    assert _links(actions) == ended and state.floor.unlinked == ()
    back, _ = step(dark, CameraBack(19.0), RULES)
    state, actions = step(back, late, RULES)
    assert _links(actions) == ended and state.floor.unlinked == ()
    # PO-A's clip cut by the loss at 15, PO-A sealed in the dark, PO-B scanned in the dark
    cut, _ = step(rec("PO-A", 10.0, floor=packed("PO-A")), CameraLost(15.0), RULES)
    state, _ = step(cut, Scanned(SEAL, 16.0, "keyboard"), RULES)
    state, _ = step(state, Scanned(ORDER_B, 16.5, "keyboard"), RULES)
    b, _ = step(state, CameraBack(19.0), RULES)
    assert isinstance(b, Recording) and (b.previous, b.previous_span) == ("PO-A", (10.0, 15.0))
    state, actions = step(b, late, RULES)
    assert _links(actions) == ended and isinstance(state, Recording)
    assert state.waybills == () and state.floor.unlinked == ()
    # PO-A resumed after the loss: the label read before it is its own, linked to its cut clip
    resumed, _ = step(cut, CameraBack(19.0), RULES)
    state, actions = step(resumed, late, RULES)
    assert _links(actions) == ended and not actions[0].in_clip
    assert state.floor.waybills == ((WAYBILL.text, "PO-A"),) and state.floor.unlinked == ()
    # Stamped before PO-A's clip began: no label of it, linked to none
    state, actions = step(resumed, Scanned(WAYBILL, 9.0), RULES)
    assert _links(actions) == [] and state.floor.unlinked == (WAYBILL.text,)


def test_the_waybill_ending_an_order_scanned_in_the_dark_stays_that_orders_label() -> None:
    """With ``waybill_ends_clip``: PO-B scanned while the camera is lost and ended by its
    waybill scanned by hand; no clip of PO-B exists to link it to. Its label was remembered as
    nobody's: lying in view and read by the camera while PO-C is recorded, it was linked to
    PO-C's clip (its index row and signed manifest naming another buyer's waybill) and ended
    it. It is PO-B's label; of an order the table does not know, no clip's."""
    rules = SessionSection(waybill_ends_clip=True)
    dark = after(CameraLost(5.0), Scanned(ORDER_B, 6.0, "keyboard"), rules=rules)
    state, actions = step(dark, Scanned(WAYBILL, 7.0, "keyboard"), rules)
    assert kinds(actions) == ["LogEvent"] and isinstance(state, Suspended)
    assert state.order_id is None and state.last == ("PO-B", 7.0)
    assert state.floor.waybills == ((WAYBILL.text, "PO-B"),) and state.floor.unlinked == ()
    state, _ = step(state, CameraBack(8.0), rules)
    c, _ = step(state, Scanned(ORDER_C, 9.0, "keyboard"), rules)
    label_b = LABEL_A.replace("PO-A", "PO-B")
    assert step(c, Scanned(WAYBILL, 10.0), rules) == (
        c,
        [LogEvent("waybill", WAYBILL.text, 10.0, "camera", label_b)],
    )
    stranger = Suspended("PO-X", 5.0, scanned_t=6.0, since=6.0)  # not among the orders packed
    state, _ = step(stranger, Scanned(WAYBILL, 7.0, "keyboard"), rules)
    assert state.floor.waybills == () and state.floor.unlinked == (WAYBILL.text,)


def test_orders_begun_and_sealed_in_the_dark_are_only_logged_the_open_one_starts_at_return():
    state, _ = step(Idle(), CameraLost(5.0), RULES)
    state, _ = step(state, Scanned(ORDER_A, 6.0), RULES)
    state, actions = step(state, Scanned(SEAL, 6.5), RULES)
    assert state == Suspended(None, 5.0, floor=packed("PO-A"), last=("PO-A", 6.5))
    assert kinds(actions) == ["LogEvent"]
    state, _ = step(state, Scanned(ORDER_B, 7.0), RULES)
    state, actions = step(state, CameraBack(8.0), RULES)
    # PO-A's sheet, still at the table, read during PO-B's clip is not a next order
    assert state == Recording("PO-B", 8.0, 8.0, floor=packed("PO-B", "PO-A"), previous="PO-A")
    assert actions == [
        StartClip("PO-B", 8.0, pre_roll=False, resumed_after_s=3.0, lost_t=5.0, scanned_t=7.0)
    ]


def test_the_last_order_is_remembered_through_a_camera_loss() -> None:
    """PO-A sealed by hand, then the camera blinks: once it is back its sheet, still lying at
    the table, is no repack of PO-A either (it would record the next buyer's parcel as PO-A)."""
    dark, actions = step(SEALED_A, CameraLost(21.0), RULES)
    assert dark == Suspended(None, 21.0, last=("PO-A", 20.0)) and actions == []
    back, actions = step(dark, CameraBack(23.0), RULES)
    assert back == SEALED_A and actions == []
    state, actions = step(back, Scanned(ORDER_A, 24.0), RULES)
    assert state == SEALED_A and kinds(actions) == ["LogEvent", "PreviousParcel"]
    # A late read of it reaching the station in the dark waits for nothing either.
    state, actions = step(dark, Scanned(ORDER_A, 19.9), RULES)
    assert state == dark and kinds(actions) == ["LogEvent"] and not actions[0].in_clip


@pytest.mark.parametrize(
    "close", [Scanned(SEAL, 17.0), Scanned(ORDER_A, 17.0, "keyboard"), PedalPress(17.0)]
)
def test_the_order_closed_in_the_dark_is_the_last_one_when_the_camera_is_back(close) -> None:
    """PO-A was open at the loss and finished in the dark: its sheet seen when the camera is
    back opens no repack recording the next parcel (and its label read before the loss,
    decoded late, is linked to its clip the loss cut, begun at 10)."""
    sus = Suspended("PO-A", 15.0, order_at_loss="PO-A", since=10.0)
    state, _ = step(sus, close, RULES)
    state, actions = step(state, CameraBack(19.0), RULES)
    idle = Idle(last=("PO-A", 17.0), last_began=10.0)
    assert replace(state, floor=Floor()) == idle and actions == []
    state, actions = step(state, Scanned(ORDER_A, 20.0), RULES)
    assert kinds(actions) == ["LogEvent", "PreviousParcel"]


def test_camera_reads_from_before_the_loss_decoded_in_the_dark() -> None:
    """Reads of frames from before the loss reach the session only when the camera is back
    (the decoder's queue): the order open at the loss, read again, is not closed; an order
    read before its clip began is not its order and does not replace it (its clip would
    resume on this buyer's parcel)."""
    state, _ = step(rec("PO-A", 10.0), CameraLost(15.0), RULES)
    assert state == Suspended(
        "PO-A", 15.0, order_at_loss="PO-A", since=10.0, kind=ClipKind.ORDER, first_t=10.0
    )
    new, actions = step(state, Scanned(ORDER_A, 14.0), RULES)
    assert new == state and kinds(actions) == ["LogEvent"]
    for ev in (Scanned(ORDER_B, 9.8), Scanned(SEAL, 9.9), Scanned(WAYBILL, 9.9), PedalPress(9.9)):
        new, actions = step(state, ev, RULES)
        assert unlabelled(new) == state and kinds(actions) == ["LogEvent"]
        assert not actions[0].in_clip
    # Read after PO-A began, before the loss: the next order (as in the light).
    new, _ = step(state, Scanned(ORDER_B, 14.5), RULES)
    assert new.order_id == "PO-B"
    new, actions = step(new, CameraBack(19.0), RULES)
    assert kinds(actions) == ["StartClip"] and actions[0].order_id == "PO-B"


# ---- failures are events too -------------------------------------------------------------------


def test_disk_full_finishes_the_clip() -> None:
    # The clip ends, not the packing: once there is room again, the next order's clip starts
    # at its scan (its pre-roll would be PO-A's parcel, still being packed).
    state, actions = step(rec(), EndClip(12.0, FinishReason.DISK_FULL), RULES)
    assert state == Idle(last=("PO-A", 12.0), last_began=10.0, unrecorded="PO-A", unrecorded_t=10.0)
    assert actions == [StopClip(FinishReason.DISK_FULL, 12.0)]
    assert step(state, Scanned(ORDER_B, 20.0), RULES)[1][0] == StartClip("PO-B", 20.0, False)
    assert step(Idle(), EndClip(12.0, FinishReason.DISK_FULL), RULES) == (Idle(), [])
    # In the dark the order keeps waiting: the runner refuses its clip if the disk is still full.
    waiting = Suspended("PO-A", 5.0, order_at_loss="PO-A")
    assert step(waiting, EndClip(12.0, FinishReason.DISK_FULL), RULES) == (waiting, [])


@pytest.mark.parametrize("reason", sorted(set(FinishReason) - STATION_ENDS), ids=lambda r: str(r))
def test_the_station_ends_a_clip_only_for_its_own_reasons(reason: FinishReason) -> None:
    """A packer's reason (sealed, waybill, ...) as a station event is a programming error."""
    with pytest.raises(ValueError, match="does not end a clip"):
        EndClip(1.0, reason)


def test_a_refused_clip_returns_to_idle_and_logs_the_refusal() -> None:
    state, actions = step(rec("PO-A"), ClipRefused("PO-A", 10.0, "disk full"), RULES)
    assert state == Idle(unrecorded="PO-A", unrecorded_t=10.0)
    assert actions == [LogEvent("refused", "PO-A", 10.0, "station", "disk full")]
    # A refusal of another order than the open one changes nothing (a late report).
    assert step(rec("PO-A"), ClipRefused("PO-B", 10.0, "x"), RULES) == (rec("PO-A"), [])


@pytest.mark.parametrize(
    "failure", [ClipRefused("PO-A", 10.0, "disk full"), RecordingFailed(10.0, "EIO")]
)
def test_after_an_unrecorded_packing_the_next_order_has_no_pre_roll(failure) -> None:
    """PO-A's clip was refused (or its writer failed): PO-A is packed on with no clip, and
    nothing marks its end. The next order's pre-roll would be PO-A's parcel: it starts at its
    scan. PO-A scanned again records its own parcel, pre-roll and all; a seal, a waybill or
    the pedal marks the end of PO-A, after which pre-roll is as ever."""
    state, _ = step(rec("PO-A", 10.0), failure, RULES)
    assert state == Idle(unrecorded="PO-A", unrecorded_t=10.0)
    _, actions = step(state, Scanned(ORDER_B, 30.0), RULES)
    assert actions[0] == StartClip("PO-B", 30.0, pre_roll=False)
    _, actions = step(state, Scanned(ORDER_A, 30.0, "keyboard"), RULES)
    assert actions[0] == StartClip("PO-A", 30.0)
    for end in (Scanned(SEAL, 20.0), Scanned(WAYBILL, 20.0), PedalPress(20.0)):
        ended, actions = step(state, end, RULES)
        assert unlabelled(ended) == Idle() and kinds(actions) == ["LogEvent", "PreviousParcel"]
    # A camera blink does not end that packing: it goes on when the camera is back, until
    # a seal, a waybill or the pedal ends it (in the dark too).
    dark = step(state, CameraLost(20.0), RULES)[0]
    assert dark == Suspended(None, 20.0, unrecorded="PO-A", unrecorded_t=10.0)
    assert step(dark, CameraBack(21.0), RULES)[0] == Idle(unrecorded="PO-A", unrecorded_t=10.0)
    for end in (Scanned(SEAL, 20.5), Scanned(WAYBILL, 20.5), PedalPress(20.5)):
        ended = step(dark, end, RULES)[0]
        assert unlabelled(step(ended, CameraBack(21.0), RULES)[0]) == Idle()


@pytest.mark.parametrize(
    "failure", [ClipRefused("PO-B", 30.0, "disk full"), RecordingFailed(30.0, "EIO")]
)
def test_a_next_order_whose_clip_fails_still_knows_the_order_before(failure) -> None:
    """PO-B is scanned while PO-A records (one step: stop A, start B) and B's clip cannot
    start. The state still knows PO-A ended there: A's sheet, still at the table, read by the
    camera afterwards is not a "repack" of A (it would record B's parcel as A's), and A's
    waybill seen again is A's parcel, not the end of B's unrecorded packing."""
    recording_a = rec("PO-A", 10.0, waybills=(WAYBILL.text,))
    state, _ = step(recording_a, Scanned(ORDER_B, 30.0, "keyboard"), RULES)
    state, _ = step(state, failure, RULES)
    assert state == Idle(
        packed("PO-B"),
        last=("PO-A", 30.0),
        last_waybills=(WAYBILL.text,),
        unrecorded="PO-B",
        last_began=10.0,
        unrecorded_t=30.0,
        followed_t=30.0,
    )
    again, actions = step(state, Scanned(ORDER_A, 31.0, "camera"), RULES)
    assert again == state and not any(isinstance(a, StartClip) for a in actions)
    # B scanned again by hand records B, pre-roll and all (B's own parcel).
    _, actions = step(state, Scanned(ORDER_B, 32.0, "keyboard"), RULES)
    assert actions[0] == StartClip("PO-B", 32.0)


def test_recording_failed_and_shutdown() -> None:
    assert step(rec(), RecordingFailed(11.0, "ENOSPC"), RULES) == (
        Idle(unrecorded="PO-A", unrecorded_t=10.0),
        [],
    )
    assert step(rec(), EndClip(11.0, FinishReason.INTERRUPTED), RULES) == (
        Idle(last=("PO-A", 11.0), last_began=10.0),
        [StopClip(FinishReason.INTERRUPTED, 11.0)],
    )
    assert step(Idle(), EndClip(11.0, FinishReason.INTERRUPTED), RULES) == (Idle(), [])


@pytest.mark.parametrize(
    "state",
    [Idle(), rec(), rec(waybills=("SF1234567890123",)), Suspended("PO-A", 5.0)],
    ids=["idle", "recording", "recording-with-waybill", "suspended"],
)
def test_an_item_is_logged_and_changes_nothing(state) -> None:
    new, actions = step(state, Scanned(ITEM, 12.0), RULES)
    assert new == state
    assert actions == [LogEvent("item", "4006381333931", 12.0, "camera", "ean13")]


def test_a_record_that_decides_nothing_is_in_the_open_clip_only_from_its_start() -> None:
    """A rejected read stamped before the open clip began, or read by the camera in the frame
    whose read opened it, is of the parcel before."""
    assert in_open_clip(rec("PO-B", 10.0), 10.0) and in_open_clip(rec("PO-B", 10.0), 11.0)
    assert not in_open_clip(rec("PO-B", 10.0), 9.9)
    assert not in_open_clip(rec("PO-B", 10.0), 10.0, "camera")
    assert in_open_clip(rec("PO-B", 10.0, first_t=4.0), 10.0, "camera")  # resumed: its own
    assert not in_open_clip(Idle(), 10.0)
    assert not in_open_clip(Suspended("PO-A", 5.0), 10.0)


def test_unknown_state_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        step(object(), Tick(1.0), RULES)  # type: ignore[arg-type]


# ---- properties ------------------------------------------------------------------------------

CODES = [ORDER_A, ORDER_B, WAYBILL, SEAL, CTRL_SEAL, CTRL_TEST, UNKNOWN, ITEM]
codes = st.sampled_from(CODES)
events = st.one_of(
    st.builds(Scanned, codes, st.just(0.0)),
    st.builds(PedalPress, st.just(0.0)),
    st.builds(Tick, st.just(0.0), st.booleans()),
    st.builds(EndClip, st.just(0.0), st.sampled_from(sorted(STATION_ENDS))),
    st.builds(CameraLost, st.just(0.0)),
    st.builds(CameraBack, st.just(0.0)),
    st.builds(ClipRefused, st.sampled_from(["PO-A", "PO-B"]), st.just(0.0), st.just("full")),
    st.builds(RecordingFailed, st.just(0.0), st.just("ENOSPC")),
)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(events, st.floats(0, 30)), max_size=60),
    st.sampled_from(
        [RULES, SessionSection(waybill_ends_clip=True, still_timeout_s=4, max_duration_s=20)]
    ),
)
def test_clips_always_pair_up(seq, rules) -> None:
    """Starts and stops alternate; the state says recording exactly when a clip is open."""
    state, t, open_clip = Idle(), 0.0, False
    for ev, dt in seq:
        t += dt
        ev = type(ev)(**{**{f: getattr(ev, f) for f in ev.__slots__}, "t": t})
        before = state
        state, actions = step(state, ev, rules)
        if isinstance(before, Recording) and (
            isinstance(ev, RecordingFailed)  # the recorder closed the clip itself
            or (isinstance(ev, ClipRefused) and ev.order_id == before.order_id)  # never opened
        ):
            assert actions == [] or kinds(actions) == ["LogEvent"]
            open_clip = False
        for a in actions:
            if isinstance(a, StartClip):
                assert not open_clip
                open_clip = True
            elif isinstance(a, StopClip):
                assert open_clip
                assert a.t == t
                open_clip = False
        assert open_clip == isinstance(state, Recording)
        if isinstance(state, Recording) and isinstance(ev, Tick):
            # the safety timeout bounds the order from its first clip, resumed or not
            began = state.first_t if state.first_t is not None else state.started_t
            assert t - began < rules.max_duration_s


@settings(max_examples=300)
@given(st.lists(st.tuples(events, st.floats(0, 30)), max_size=60))
def test_resumed_clips_carry_their_gap_and_only_follow_a_camera_loss(seq) -> None:
    """A clip without pre-roll is exactly a resumed one: it follows a loss and names the gap."""
    state, t, lost_at = Idle(), 0.0, None
    for ev, dt in seq:
        t += dt
        ev = type(ev)(**{**{f: getattr(ev, f) for f in ev.__slots__}, "t": t})
        before = state
        state, actions = step(state, ev, RULES)
        if isinstance(ev, CameraLost) and not isinstance(before, Suspended):
            lost_at = t
        for a in actions:
            if not isinstance(a, StartClip):
                continue
            if a.pre_roll:
                assert a.resumed_after_s is None
                continue
            if isinstance(before, Idle):  # after a packing no clip recorded: not resumed
                assert before.unrecorded not in (None, a.order_id) and a.resumed_after_s is None
                continue
            assert isinstance(before, Suspended) and isinstance(ev, CameraBack)
            # The gap is recorded to the millisecond.
            gap = pytest.approx(t - before.lost_t, abs=5e-4)
            assert lost_at is not None and a.resumed_after_s == gap
            assert a.resumed_after_s >= 0 and a.order_id == before.order_id


@settings(max_examples=300)
@given(st.lists(st.tuples(events, st.floats(0, 30)), max_size=60))
def test_an_item_never_starts_or_ends_a_clip(seq) -> None:
    """Whatever came before, a product scan leaves the state as it was and only logs."""
    state, t = Idle(), 0.0
    for ev, dt in seq:
        t += dt
        ev = type(ev)(**{**{f: getattr(ev, f) for f in ev.__slots__}, "t": t})
        state, _ = step(state, ev, RULES)
        after, actions = step(state, Scanned(ITEM, t), RULES)
        assert after == state
        assert [type(a) for a in actions] == [LogEvent]


early_codes = st.sampled_from(
    [
        *CODES,
        Code("OP:alice", Kind.OPERATOR, "alice"),
        Code("SIGNOUT", Kind.CONTROL, "signout"),
        Code("RETURN", Kind.CONTROL, "return"),
    ]
)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(events, st.floats(0, 30)), max_size=40),
    st.one_of(st.builds(Scanned, early_codes, st.just(0.0)), st.builds(PedalPress, st.just(0.0))),
    st.floats(0.001, 30),
    st.sampled_from(
        [
            RULES,
            SessionSection(waybill_ends_clip=True),
            SessionSection(require_packer=True, waybill_ends_clip=True),
        ]
    ),
)
@example(  # the waybill of the parcel before, read while its clip was open
    [(Scanned(ORDER_A, 0.0), 0.0), (Scanned(ORDER_B, 0.0), 1.0)], Scanned(WAYBILL, 0.0), 1.0, RULES
)
@example(  # the order's own label, read while its clip a camera loss cut was open
    [(Scanned(ORDER_A, 0.0, "camera"), 0.0), (CameraLost(0.0), 0.0), (CameraBack(0.0), 1.0)],
    Scanned(WAYBILL, 0.0, "camera"),
    1.0,
    RULES,
)
def test_no_event_stamped_before_a_clip_began_changes_that_clip(seq, late, back, rules) -> None:
    """Whatever came before, a scan or pedal press stamped before the open clip's start leaves
    that clip as it is (its order, start, waybills, packer, kind) and starts, stops and links
    nothing to it; only the floor (who is signed in, what the next clip is) may change, and
    a waybill stamped while the clip before was open is linked to that one (_late_waybill):
    the parcel before's, or, in a clip that resumes its order after a camera loss, that
    order's clip the loss cut (_label_before_the_loss; found by a CI run of this test)."""
    state, t = Idle(), 0.0
    for ev, dt in seq:
        t += dt
        ev = type(ev)(**{**{f: getattr(ev, f) for f in ev.__slots__}, "t": t})
        state, _ = step(state, ev, rules)
        if not isinstance(state, Recording):
            continue
        ev = type(late)(
            **{**{f: getattr(late, f) for f in late.__slots__}, "t": state.started_t - back}
        )
        after, actions = step(state, ev, rules)
        kept = replace(after, floor=state.floor, previous_waybills=state.previous_waybills)
        assert kept == state
        assert not [a for a in actions if isinstance(a, StartClip | StopClip)]
        links = [a for a in actions if isinstance(a, LinkWaybill)]
        before_loss = state.first_t is not None and state.first_t <= ev.t
        want = state.order_id if before_loss else state.previous
        assert all(a.ended and a.order_id == want for a in links)
        assert set(after.previous_waybills) == {
            *state.previous_waybills,
            *(a.waybill for a in links if not before_loss),
        }


def test_the_order_before_a_camera_loss_is_the_resumed_or_waiting_clips_previous() -> None:
    """PO-A sealed, PO-B recording, the camera lost and back: PO-A's sheet, still at the table
    and read during PO-B's resumed clip, ends nothing; likewise after PO-B was scanned in the
    dark with PO-A open at the loss."""
    state, _ = step(SEALED_A, Scanned(ORDER_B, 30.0, "keyboard"), RULES)
    state, _ = step(state, CameraLost(31.0), RULES)
    state, _ = step(state, CameraBack(33.0), RULES)
    assert isinstance(state, Recording) and state.previous == "PO-A"
    after, actions = step(state, Scanned(ORDER_A, 34.0), RULES)
    assert after == state and kinds(actions) == ["LogEvent"]
    state, _ = step(rec("PO-A", 10.0), CameraLost(11.0), RULES)
    state, _ = step(state, Scanned(ORDER_B, 12.0, "keyboard"), RULES)
    state, _ = step(state, CameraBack(13.0), RULES)
    assert isinstance(state, Recording) and state.order_id == "PO-B"
    after, actions = step(state, Scanned(ORDER_A, 14.0), RULES)
    assert after == state and kinds(actions) == ["LogEvent"]
