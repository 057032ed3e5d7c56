"""Read confirmation (station/capture/confirm.py): which camera reads may become scans."""

from __future__ import annotations

import random

import pytest

from station.capture.confirm import Look, ReadConfirmer, box_of

A_BOX = (100, 100, 300, 160)
NEAR_A = (110, 105, 290, 150)  # the same label: a misread of it overlaps
ELSEWHERE = (600, 400, 700, 500)


def texts(out: list[Look]) -> list[str]:
    return [r.text for r in out]


def test_one_read_is_not_enough_two_frames_are() -> None:
    c = ReadConfirmer()
    assert c.feed(0.0, [Look("PO-1", "code128", box=A_BOX)]) == []
    assert texts(c.feed(0.1, [Look("PO-1", "code128", box=A_BOX)])) == ["PO-1"]
    # once confirmed, every further read passes (the debounce keeps it one scan)
    assert texts(c.feed(0.2, [Look("PO-1", "code128", box=A_BOX)])) == ["PO-1"]


def test_a_confirmed_read_knows_its_first_look_within_the_window() -> None:
    """A seal card read first beside the next order's sheet and confirmed a frame later: the
    session needs to know it was in view then (station/recording/session.py)."""
    c = ReadConfirmer()
    assert c.first_look("SEAL") is None
    c.feed(5.4, [Look("PO-B", "code128"), Look("SEAL", "qrcode")])
    c.feed(5.7, [Look("SEAL", "qrcode")])
    assert (c.first_look("SEAL"), c.first_look("PO-B")) == (5.4, 5.4)
    c.feed(6.95, [Look("SEAL", "qrcode")])  # the look at 5.4 has left the window
    assert c.first_look("SEAL") == 5.7 and c.first_look("PO-B") is None


def test_the_same_frame_twice_is_one_look() -> None:
    c = ReadConfirmer()
    assert c.feed(1.0, [Look("PO-1", "code128")]) == []
    assert c.feed(1.0, [Look("PO-1", "code128")]) == []
    assert texts(c.feed(1.1, [Look("PO-1", "code128")])) == ["PO-1"]


@pytest.mark.parametrize("looks", [1, 2, 3])
def test_heavy_stages_alone_need_one_look_more(looks: int) -> None:
    c = ReadConfirmer(looks)
    for i in range(looks):
        assert c.feed(0.1 * i, [Look("4006381333931", "ean13", heavy=True)]) == []
    assert texts(c.feed(0.1 * looks, [Look("4006381333931", "ean13", heavy=True)])) == [
        "4006381333931"
    ]


def test_a_plain_read_and_a_heavy_read_are_two_looks() -> None:
    c = ReadConfirmer()
    assert c.feed(0.0, [Look("4006381333931", "ean13", heavy=True)]) == []
    assert texts(c.feed(0.1, [Look("4006381333931", "ean13")])) == ["4006381333931"]


def test_one_plain_look_is_enough_when_configured_so_but_never_for_a_heavy_read() -> None:
    c = ReadConfirmer(1)
    assert texts(c.feed(0.0, [Look("PO-1", "qrcode")])) == ["PO-1"]
    assert c.feed(0.1, [Look("4006381333931", "ean13", heavy=True)]) == []


def test_looks_further_apart_than_the_window_do_not_add_up() -> None:
    c = ReadConfirmer(2, window_s=1.5)
    assert c.feed(0.0, [Look("PO-1", "code128")]) == []
    assert c.feed(1.6, [Look("PO-1", "code128")]) == []
    assert texts(c.feed(2.0, [Look("PO-1", "code128")])) == ["PO-1"]


def test_confirmation_lapses_when_the_text_is_not_read_for_a_window() -> None:
    c = ReadConfirmer(2, window_s=1.0)
    c.feed(0.0, [Look("PO-1", "code128")])
    assert texts(c.feed(0.1, [Look("PO-1", "code128")])) == ["PO-1"]
    assert c.feed(5.0, [Look("PO-1", "code128")]) == []  # starts from nothing again


def test_a_label_giving_two_numbers_needs_a_clear_winner() -> None:
    c = ReadConfirmer()
    assert c.feed(0.0, [Look("0023942431015", "upca", box=A_BOX)]) == []
    assert c.feed(0.1, [Look("9074932437075", "ean13", box=NEAR_A)]) == []
    # two looks of the first text, but its rival had one: it needs 1 + 2
    assert c.feed(0.2, [Look("0023942431015", "upca", box=A_BOX)]) == []
    assert texts(c.feed(0.3, [Look("0023942431015", "upca", box=A_BOX)])) == ["0023942431015"]
    # the rival reads again but never catches up
    assert c.feed(0.4, [Look("9074932437075", "ean13", box=NEAR_A)]) == []


def test_two_codes_side_by_side_are_no_rivals() -> None:
    c = ReadConfirmer()
    both = [Look("PO-1", "code128", box=A_BOX), Look("SF1234567890123", "code128", box=ELSEWHERE)]
    assert c.feed(0.0, both) == []
    assert texts(c.feed(0.1, both)) == ["PO-1", "SF1234567890123"]


def test_a_timeline_going_back_starts_afresh() -> None:
    c = ReadConfirmer()
    c.feed(10.0, [Look("PO-1", "code128")])
    assert c.feed(0.0, [Look("PO-1", "code128")]) == []  # a new camera session at t=0


def test_reads_seen_once_each_are_never_confirmed() -> None:
    # Random misreads: a different wrong number in every frame never becomes a scan.
    rng = random.Random(4)
    c = ReadConfirmer()
    t = 0.0
    for _ in range(2000):
        t += 0.1
        reads = [Look(f"{rng.randrange(10**12):013d}-{t:.1f}", "ean13", box=A_BOX)]
        assert c.feed(t, reads) == []


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        ReadConfirmer(0)
    with pytest.raises(ValueError):
        ReadConfirmer(2, window_s=0)


def test_box_of_points() -> None:
    assert box_of(((10, 20), (30, 20), (30, 25), (10, 25))) == (10, 20, 31, 26)
    assert box_of(()) is None


def test_a_check_is_asked_once_and_a_veto_lasts_while_the_text_is_read() -> None:
    asked: list[str] = []

    def check(look: Look) -> bool:
        asked.append(look.text)
        return look.text != "0000000000000"

    c = ReadConfirmer(2, window_s=1.0)
    bad, good = Look("0000000000000", "ean13"), Look("4006381333931", "ean13")
    c.feed(0.0, [bad, good], check)
    assert texts(c.feed(0.1, [bad, good], check)) == ["4006381333931"]
    for i in range(2, 20):  # read on and on: vetoed, and not asked again
        assert texts(c.feed(0.1 * i, [bad, good], check)) == ["4006381333931"]
    assert asked == ["0000000000000", "4006381333931"]
    # gone for a window: it starts from nothing and is asked again
    c.feed(5.0, [bad], check)
    c.feed(5.1, [bad], check)
    assert asked.count("0000000000000") == 2


def test_reads_of_earlier_frames_arriving_late_are_looks_of_their_own_frames() -> None:
    # a background decode of crops of frames 0.1-0.3 reports at frame 0.5: three heavy looks
    c = ReadConfirmer()
    late = [(u, Look("4006381333931", "ean13", heavy=True, box=A_BOX)) for u in (0.1, 0.2)]
    assert c.feed(0.5, [], earlier=late) == []
    third = [(0.3, Look("4006381333931", "ean13", heavy=True, box=A_BOX))]
    assert texts(c.feed(0.6, [], earlier=third)) == ["4006381333931"]


def test_late_reads_older_than_the_window_or_from_the_same_frame_add_nothing() -> None:
    c = ReadConfirmer(2, window_s=1.5)
    old = [(0.0, Look("PO-1", "code128")), (0.1, Look("PO-1", "code128"))]
    assert c.feed(2.0, [], earlier=old) == []
    # a late read of the frame being fed now is the same look
    assert c.feed(2.1, [Look("PO-1", "code128")], earlier=[(2.1, Look("PO-1", "code128"))]) == []
    assert texts(c.feed(2.2, [Look("PO-1", "code128")])) == ["PO-1"]
