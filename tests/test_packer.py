"""Packer identity and return clips in the pure session (issue 13 parts 1 and 5)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from station.capture.codes import Kind, Rules, classify
from station.capture.frames import PedalPress
from station.config import CodesSection, SessionSection
from station.recording import session as ss

RULES = Rules.from_config(CodesSection())
S = SessionSection()
STRICT = SessionSection(require_packer=True)


def scan(text: str, t: float, symbology: str = "") -> ss.Scanned:
    return ss.Scanned(classify(text, RULES, symbology), t)


def run(events: list[ss.Event], rules: SessionSection = S) -> tuple[ss.State, list[ss.Action]]:
    return run_from(ss.Idle(), events, rules)


def run_from(
    state: ss.State, events: list[ss.Event], rules: SessionSection = S
) -> tuple[ss.State, list[ss.Action]]:
    out: list[ss.Action] = []
    for ev in events:
        state, actions = ss.step(state, ev, rules)
        out.extend(actions)
    return state, out


def starts(actions: list[ss.Action]) -> list[ss.StartClip]:
    return [a for a in actions if isinstance(a, ss.StartClip)]


@pytest.mark.parametrize(
    ("text", "kind", "detail"),
    [
        ("OP:alice", Kind.OPERATOR, "alice"),
        ("OP-王芳", Kind.OPERATOR, "王芳"),
        ("OP:", Kind.ORDER, ""),  # a badge with no name is no badge
        ("SIGNOUT", Kind.CONTROL, "signout"),
        ("签退", Kind.CONTROL, "signout"),
        ("return", Kind.CONTROL, "return"),
        ("退货", Kind.CONTROL, "return"),
    ],
)
def test_badges_and_cards_are_classified(text: str, kind: Kind, detail: str) -> None:
    code = classify(text, RULES)
    assert (code.kind, code.detail) == (kind, detail)


def test_a_return_waybill_pattern_is_a_return_code() -> None:
    rules = Rules.from_config(CodesSection(return_patterns=("^RT\\d{6}$",)))
    assert classify("RT123456", rules).kind is Kind.RETURN
    assert classify("RT12345", rules).kind is Kind.ORDER


def test_a_badge_on_a_product_symbology_is_an_item_and_a_camera_badge_needs_an_order_one() -> None:
    assert classify("OP:alice", RULES, "ean13").kind is Kind.ITEM
    assert classify("OP:alice", RULES, "qrcode").kind is Kind.OPERATOR
    assert classify("OP:alice", RULES, "pdf417").kind is Kind.UNKNOWN


def test_the_packer_signed_in_goes_with_the_clip_and_a_badge_never_ends_it() -> None:
    state, actions = run([scan("OP:alice", 0), scan("A1", 1), scan("OP:bob", 2)])
    assert starts(actions)[0].packer == "alice"
    assert isinstance(state, ss.Recording) and state.order_id == "A1"
    assert state.packer == "alice" and state.floor.packer == "bob"
    assert not [a for a in actions if isinstance(a, ss.StopClip)]
    state, actions = ss.step(state, scan("A2", 3), S)
    assert starts(actions)[0].packer == "bob"


def test_sign_out_leaves_the_open_clip_its_packer() -> None:
    state, actions = run([scan("OP:alice", 0), scan("A1", 1), scan("SIGNOUT", 2)])
    assert isinstance(state, ss.Recording) and state.packer == "alice"
    assert state.floor.packer is None
    assert actions[-1] == ss.LogEvent(
        "control", "SIGNOUT", 2, "camera", "packer alice signed out", card="signout"
    )


def test_require_packer_refuses_an_order_without_one() -> None:
    state, actions = run([scan("A1", 1)], STRICT)
    assert state == ss.Idle(ss.Floor(packed=("A1",)), unrecorded="A1", unrecorded_t=1)
    assert actions == [ss.LogEvent("refused", "A1", 1, "camera", "no packer signed in")]
    state, actions = run([scan("OP:alice", 0), scan("A1", 1), scan("SIGNOUT", 2), scan("A2", 3)],
                         STRICT)  # fmt: skip
    assert isinstance(state, ss.Idle)
    assert [a.order_id for a in starts(actions)] == ["A1"]
    assert ss.StopClip(ss.FinishReason.NEXT_ORDER, 3) in actions
    assert actions[-1].kind == "refused"  # type: ignore[union-attr]


def test_the_open_orders_sheet_seen_again_after_a_sign_out_ends_nothing() -> None:
    """alice signs out mid-clip (end of shift) and the camera sees A1's sheet again: packing
    goes on, as when someone is signed in (it ended A1's clip as a rescan); a hand rescan
    still ends the clip."""
    state, _ = run([scan("OP:alice", 0), scan("A1", 1), scan("SIGNOUT", 2)], STRICT)
    new, actions = ss.step(state, scan("A1", 6), STRICT)
    assert new == state
    assert actions == [
        ss.LogEvent("order", "A1", 6, "camera", "seen again by the camera; the clip goes on")
    ]
    new, actions = ss.step(state, ss.Scanned(classify("A1", RULES), 6, "keyboard"), STRICT)
    assert isinstance(new, ss.Idle) and ss.StopClip(ss.FinishReason.RESCAN, 6) in actions


def test_after_an_order_refused_for_no_packer_the_next_order_has_no_pre_roll() -> None:
    """A2 refused (no packer signed in) may be packed all the same, with no clip: the next
    order's pre-roll would show it. A2 itself, scanned again once signed in, has its pre-roll."""
    signed_out = [scan("OP:alice", 0), scan("A1", 1), scan("SIGNOUT", 2), scan("A2", 3)]
    state, _ = run(signed_out, STRICT)
    assert isinstance(state, ss.Idle) and state.unrecorded == "A2"
    _, actions = run_from(state, [scan("OP:bob", 4), scan("A3", 9)], STRICT)
    assert [(a.order_id, a.pre_roll) for a in starts(actions)] == [("A3", False)]
    _, actions = run_from(state, [scan("OP:bob", 4), scan("A2", 9)], STRICT)
    assert [(a.order_id, a.pre_roll) for a in starts(actions)] == [("A2", True)]


@pytest.mark.parametrize("dark", [False, True], ids=["open-at-loss", "scanned-in-the-dark"])
def test_an_order_refused_while_the_camera_is_lost_ends_the_waiting_order(dark: bool) -> None:
    """A1 waits for the camera (open at the loss, or scanned in the dark); alice signs out and
    A2 is scanned, refused. The next parcel is on the table: when the camera is back, no clip
    of A1 resumes on A2's parcel."""
    if dark:
        script = [scan("OP:alice", 0), ss.CameraLost(0.5), scan("A1", 1)]
    else:
        script = [scan("OP:alice", 0), scan("A1", 1), ss.CameraLost(1.5)]
    state, _ = run(script, STRICT)
    assert isinstance(state, ss.Suspended) and state.order_id == "A1"
    state, actions = run_from(state, [scan("SIGNOUT", 2), scan("A2", 3)], STRICT)
    assert actions[-1] == ss.LogEvent("refused", "A2", 3, "camera", "no packer signed in")
    assert isinstance(state, ss.Suspended) and state.order_id is None
    state, actions = ss.step(state, ss.CameraBack(4), STRICT)
    # A2 may be packed all the same, with no clip: the next order's pre-roll would show it.
    # A1's clip (open at the loss) began at its scan: a label read in it and decoded late is
    # still linked to it (last_began); scanned in the dark, A1 had no clip.
    expected = ss.Idle(
        ss.Floor(packed=("A2", "A1")),
        last=("A1", 3),
        unrecorded="A2",
        unrecorded_t=3,
        last_began=None if dark else 1,
    )
    assert state == expected and starts(actions) == []


def test_the_waiting_order_rescanned_while_signed_out_in_the_dark_is_closed() -> None:
    state, _ = run([scan("OP:alice", 0), scan("A1", 1), ss.CameraLost(1.5), scan("SIGNOUT", 2)],
                   STRICT)  # fmt: skip
    state, actions = ss.step(state, scan("A1", 3), STRICT)
    assert isinstance(state, ss.Suspended) and state.order_id is None
    assert [a.kind for a in actions] == ["order"]  # type: ignore[union-attr]


def test_a_return_card_makes_only_the_next_clip_a_return() -> None:
    state, actions = run([scan("退货", 0), scan("A1", 1), scan("A2", 2)])
    assert [(a.order_id, a.kind) for a in starts(actions)] == [
        ("A1", ss.ClipKind.RETURN),
        ("A2", ss.ClipKind.ORDER),
    ]
    state, actions = run([scan("A1", 0), scan("RETURN", 1)])
    assert isinstance(state, ss.Recording) and state.kind is ss.ClipKind.ORDER  # open clip keeps
    assert state.floor.next_kind is ss.ClipKind.RETURN


def test_the_floor_survives_a_camera_loss() -> None:
    state, actions = run(
        [scan("OP:alice", 0), scan("A1", 1), ss.CameraLost(2), scan("退货", 3), ss.CameraBack(4)]
    )
    (first, resumed) = starts(actions)
    assert first.packer == "alice" and first.kind is ss.ClipKind.ORDER
    assert resumed.packer == "alice"
    assert isinstance(state, ss.Recording) and state.floor.packer == "alice"


def test_a_clip_resumed_after_a_camera_loss_keeps_its_kind() -> None:
    """The same packing goes on after the loss: an outbound order does not become a return
    because the return card for the next parcel was scanned in the dark (that card is the
    next clip's), and a return being unboxed does not become an outbound order."""
    events: list[ss.Event] = [scan("A1", 1), ss.CameraLost(2), scan("退货", 3), ss.CameraBack(4)]
    state, actions = run([*events, scan("A2", 5)])
    assert [(a.order_id, a.kind) for a in starts(actions)] == [
        ("A1", ss.ClipKind.ORDER),
        ("A1", ss.ClipKind.ORDER),
        ("A2", ss.ClipKind.RETURN),
    ]
    state, actions = run([scan("RETURN", 0), scan("A1", 1), ss.CameraLost(2), ss.CameraBack(4)])
    assert [a.kind for a in starts(actions)] == [ss.ClipKind.RETURN, ss.ClipKind.RETURN]
    assert isinstance(state, ss.Recording) and state.kind is ss.ClipKind.RETURN
    assert state.floor.next_kind is ss.ClipKind.ORDER
    # An order scanned in the dark is a new clip: it takes the next kind, as in the light.
    state, actions = run([scan("A1", 1), ss.CameraLost(2), scan("RETURN", 3), scan("A2", 3.5),
                          ss.CameraBack(4)])  # fmt: skip
    assert [(a.order_id, a.kind) for a in starts(actions)][-1] == ("A2", ss.ClipKind.RETURN)


codes = st.sampled_from(["OP:alice", "OP:bob", "OP-carol", "SIGNOUT", "签退", "RETURN", "A1",
                         "A2", "SEAL", "SF1234567890123", "4006381333931"])  # fmt: skip
events = st.one_of(
    st.tuples(st.just("scan"), codes),
    st.tuples(st.sampled_from(["pedal", "tick", "lost", "back", "disk", "shutdown"]), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=40), st.booleans(), st.booleans())
@example([("scan", "OP:alice"), ("scan", "A1"), ("scan", "OP:bob"), ("lost", None),
          ("back", None)], False, False)  # fmt: skip
@example([("scan", "OP:alice"), ("scan", "A1"), ("lost", None), ("scan", "SIGNOUT"),
          ("back", None)], False, False)  # fmt: skip
def test_no_clip_ever_lacks_the_packer_signed_in_when_it_started(
    script: list[tuple[str, str | None]], strict: bool, waybill_ends: bool
) -> None:
    """A clip names who was signed in when it started; one that resumes the clip a camera
    loss cut names that clip's packer, or nobody when who is signed in changed in the dark."""
    rules = SessionSection(require_packer=strict, waybill_ends_clip=waybill_ends)
    state: ss.State = ss.Idle()
    signed_in: str | None = None  # the model: who the badges say is at the table
    clip_packer: str | None = None
    at_loss: tuple[str | None, str | None] = (None, None)  # (clip's packer, signed in)
    for i, (what, text) in enumerate(script):
        t = float(i)
        ev: ss.Event
        match what:
            case "scan":
                assert text is not None
                ev = scan(text, t, "ean13" if text.isdigit() else "")
            case "pedal":
                ev = PedalPress(t)
            case "tick":
                ev = ss.Tick(t)
            case "lost":
                ev = ss.CameraLost(t)
            case "back":
                ev = ss.CameraBack(t)
            case "disk":
                ev = ss.EndClip(t, ss.FinishReason.DISK_FULL)
            case _:
                ev = ss.EndClip(t, ss.FinishReason.INTERRUPTED)
        if isinstance(ev, ss.CameraLost) and isinstance(state, ss.Recording):
            at_loss = (clip_packer, signed_in)
        state, actions = ss.step(state, ev, rules)
        for a in actions:
            if (
                isinstance(a, ss.StartClip)
                and a.resumed_after_s is not None
                and a.scanned_t is None
            ):
                # The clip the loss cut resumes: its packer, unless the one signed in changed
                # in the dark to another (then nobody).
                kept = signed_in in (at_loss[1], at_loss[0])
                assert a.packer == (at_loss[0] if kept else None)
                clip_packer = a.packer
            elif isinstance(a, ss.StartClip):
                assert a.packer == signed_in
                assert not (strict and a.packer is None and a.resumed_after_s is None)
                clip_packer = a.packer
        if isinstance(ev, ss.Scanned) and ev.code.kind is Kind.OPERATOR:
            signed_in = ev.code.detail
            assert not any(isinstance(a, ss.StopClip | ss.StartClip) for a in actions)
        if isinstance(ev, ss.Scanned) and ev.code.detail == "signout":
            signed_in = None
            assert not any(isinstance(a, ss.StopClip | ss.StartClip) for a in actions)
        assert state.floor.packer == signed_in
        if isinstance(state, ss.Recording):
            assert state.packer == clip_packer


def test_a_refused_return_clip_leaves_the_next_clip_a_return() -> None:
    state, _ = run([scan("RETURN", 0), scan("A1", 1)])
    assert isinstance(state, ss.Recording) and state.kind is ss.ClipKind.RETURN
    state, actions = ss.step(state, ss.ClipRefused("A1", 1, "disk full"), S)
    assert isinstance(state, ss.Idle) and state.floor.next_kind is ss.ClipKind.RETURN
    state, actions = ss.step(state, scan("A1", 5), S)
    assert starts(actions)[0].kind is ss.ClipKind.RETURN
