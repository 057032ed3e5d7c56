"""What a hand scanner may send besides a label's text (pure classification tests): a vendor
Code ID letter before the code (a product's or a station card's), a GS1 label in its
human-readable form or with group separators, and product codes sent shortened (no check
digit, no UPC-A number system)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from station import config as config_mod
from station.capture.cards import CODE_IDS, card_conflicts, fold
from station.capture.codes import (
    Code,
    Kind,
    Rules,
    card_clashes,
    classify,
    orders_that_are_products,
    product_code,
    recognised,
    sanitize,
    strip_symbology_id,
)
from station.config import CodesSection, station_cards
from station.errors import ConfigError

RULES = Rules.from_config(CodesSection())
US = Rules.from_config(CodesSection(product_prefixes=("0", "69")))
SHORT = Rules.from_config(CodesSection(product_prefixes=("0", "69"), check_digits_sent=False))
EAN13 = "6901234567892"  # a product from China
UPCA = "012345678905"  # US goods, EAN-13 form 0012345678905


def hand(typed: str, rules: Rules = RULES) -> Code:
    """A keyboard-wedge scan as the runner classifies it."""
    return classify(strip_symbology_id(sanitize(typed, 64)), rules)


# ---- 1. vendor Code ID letters ------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "detail", "rules"),
    [
        ("d" + EAN13, "ean13", RULES),  # Honeywell Code ID: d = EAN-13
        ("A" + EAN13, "ean13", RULES),  # Zebra (Symbol) Code ID: A = UPC/EAN
        ("F" + EAN13, "ean13", RULES),  # any letter: other vendors have tables of their own
        ("c" + UPCA, "upca", US),  # Honeywell: c = UPC-A
        ("D69012341", "ean8", RULES),  # Honeywell: D = EAN-8 (69012341: prefix 69, check ok)
        ("e16901234567899", "itf14", RULES),  # Honeywell: e = Interleaved 2 of 5 (a carton)
        ("j0106901234567892", "gs1", RULES),  # Honeywell: j = Code 128 (a GS1-128)
        ("I0106901234567892", "gs1", RULES),  # Honeywell: I = GS1-128
        ("Q0106901234567892", "gs1", RULES),  # Honeywell: Q = QR (a GS1 QR)
        ("P0Q0106901234567892", "gs1", RULES),  # Zebra: P0Q = GS1 QR
        ("P0G(01)06901234567892(10)AB", "gs1", RULES),  # Zebra: P0G = GS1 DataMatrix
        ("d9780393058673", "ean13", RULES),  # a book's ISBN behind Honeywell's d
        ("]E0d" + EAN13, "ean13", RULES),  # both an AIM ID and a Code ID
        ("D" + EAN13, "ean13", RULES),  # d typed with Caps Lock on
    ],
)
def test_a_product_behind_a_code_id_letter_is_an_item(
    typed: str, detail: str, rules: Rules
) -> None:
    code = hand(typed, rules)
    assert (code.kind, code.detail) == (Kind.ITEM, detail)


@pytest.mark.parametrize(
    "typed",
    [
        "d1234567890128",  # a letter and 13 digits of no listed prefix: an order ID
        "d6901234567891",  # the check digit is wrong: not a product
        "dd" + EAN13,  # two letters: no Code ID of a product
        "1" + EAN13,  # a digit before: a 14-digit number (no carton: its check is wrong)
        "d-" + EAN13,
        "P1Q0106901234567892",  # no Zebra Code ID
    ],
)
def test_other_codes_around_a_product_number_stay_orders(typed: str) -> None:
    assert hand(typed).kind is Kind.ORDER


def test_the_camera_never_strips_a_code_id_letter() -> None:
    # A camera read has a symbology and no Code ID: "d69..." in a Code 128 is its text.
    assert classify("d" + EAN13, RULES, "code128").kind is Kind.ORDER


def test_an_order_pattern_still_wins_over_a_code_id_letter() -> None:
    rules = Rules.from_config(CodesSection(order_patterns=(r"^[a-z]\d{13}$",)))
    assert classify("d" + EAN13, rules).kind is Kind.ORDER
    assert orders_that_are_products(rules)  # check-config warns of it


# ---- 1b. station cards behind a Code ID --------------------------------------------------

CARDS = Rules.from_config(
    CodesSection(control_codes={"REPACK": "repack", "STOP": "seal", "PING": "test"})
)


@pytest.mark.parametrize(
    ("typed", "card"),
    [
        ("jSEAL", Code("SEAL", Kind.SEAL)),  # Honeywell: j = Code 128 (it was the order "jSEAL")
        ("QSEAL", Code("SEAL", Kind.SEAL)),  # Honeywell: Q = QR
        ("DSEAL", Code("SEAL", Kind.SEAL)),  # Zebra: D = Code 128
        ("Bseal", Code("seal", Kind.SEAL)),  # Zebra: B = Code 39; a card folds case anyway
        ("P01SEAL", Code("SEAL", Kind.SEAL)),  # Zebra: P01 = QR
        ("P00封箱", Code("封箱", Kind.SEAL)),  # Zebra: P00 = DataMatrix, the Chinese card
        ("Q封箱", Code("封箱", Kind.SEAL)),
        ("]C0jSEAL", Code("SEAL", Kind.SEAL)),  # an AIM identifier and a Code ID both
        ("jSIGNOUT", Code("SIGNOUT", Kind.CONTROL, "signout")),
        ("Q签退", Code("签退", Kind.CONTROL, "signout")),
        ("jRETURN", Code("RETURN", Kind.CONTROL, "return")),
        ("jREPACK", Code("REPACK", Kind.CONTROL, "repack")),  # configured cards too
        ("wSTOP", Code("STOP", Kind.CONTROL, "seal")),  # Honeywell: w = DataMatrix
        ("jPING", Code("PING", Kind.CONTROL, "test")),
    ],
)
def test_a_station_card_behind_a_code_id_is_that_card(typed: str, card: Code) -> None:
    """A scanner set to send Code IDs typed "jSEAL" for the seal card: an order, whose clip
    began for a buyer "jSEAL" and ended the open one as next-order. It is the card, with its
    printed text (one scan with the camera's read of it, whose key is the text)."""
    assert hand(typed, CARDS) == card


@pytest.mark.parametrize(
    "typed",
    [
        "PO12345678",  # the docs' order ID (order_patterns = ['^PO\\d{8}$'])
        "PO-A",
        "P01234567",  # Zebra's P01 in front of no card
        "A1001",  # an order ID that starts with a Code ID's letter
        "jSEAL-1001",
        "SEAL2",  # more than the card
        "jSEALS",
        "SEALj",  # a letter after it: no Code ID
        "1SEAL",  # a digit is no Code ID
        "jjSEAL",  # two letters
        "j-SEAL",
        "P1QSEAL",  # no Zebra Code ID
        "ÉSEAL",  # a Code ID is an ASCII letter
        "jSEA L",
        "OP:jSEAL",  # a badge stays a badge
    ],
)
def test_order_ids_and_other_codes_near_a_card_keep_their_classification(typed: str) -> None:
    """Nothing changes for a code that is not exactly a Code ID and a card: ordinary order
    IDs (also those starting with a Code ID's letters) stay what they were."""
    before = Rules.from_config(CodesSection(seal_codes=(), signout_codes=(), return_codes=()))
    code = hand(typed, CARDS)
    assert code == hand(typed, before)
    assert code.kind in (Kind.ORDER, Kind.OPERATOR)


def test_with_order_patterns_an_order_id_behind_a_card_reading_is_refused() -> None:
    """A text that matches an order pattern and is also a Code ID and a card ("JSEAL" where
    five capitals are order IDs) could be either: refused as a misread (unknown, logged),
    neither an order nor a seal; with a pattern it does not match, it is the card."""
    broad = Rules.from_config(CodesSection(order_patterns=(r"^[A-Z]{5}$",)))
    assert hand("JSEAL", broad) == Code("JSEAL", Kind.UNKNOWN)
    assert hand("JSEALS", broad).kind is Kind.UNKNOWN  # no pattern, no card: as before
    assert hand("ABCDE", broad).kind is Kind.ORDER
    strict = Rules.from_config(CodesSection(order_patterns=(r"^PO\d{8}$",)))
    assert hand("jSEAL", strict) == Code("SEAL", Kind.SEAL)
    assert hand("PO12345678", strict).kind is Kind.ORDER


def test_two_cards_read_behind_two_code_ids_are_refused() -> None:
    """A text that is one card behind a letter and another behind Zebra's three characters
    is ambiguous: refused as a misread, neither card."""
    rules = Rules.from_config(CodesSection(control_codes={"01X": "test", "X": "seal"}))
    assert hand("P01X", rules) == Code("P01X", Kind.UNKNOWN)
    assert hand("A01X", rules) == Code("01X", Kind.CONTROL, "test")


def test_the_camera_never_reads_a_card_behind_a_code_id() -> None:
    # A camera read has a symbology and no Code ID: "jSEAL" in a Code 128 is its text.
    assert classify("jSEAL", RULES, "code128").kind is Kind.ORDER


# ---- 1c. configured cards that clash under Code IDs ------------------------------------------


def warnings_of(section: CodesSection) -> list[str]:
    return card_clashes(section)


def test_a_card_that_is_a_code_id_and_an_order_id_is_refused_by_hand() -> None:
    """A short card ("END": "E" and "ND") whose rest behind a Code ID letter is an order ID of
    the warehouse's pattern: a scanner sending Code IDs types the order sheet "ND" as "END",
    which sealed the open clip. Nothing tells the two: refused by hand (unknown, logged), as
    a card behind a Code ID that is an order ID as typed is; the camera's read of the card
    (no Code ID) is the card; and check-config says so, naming the card and the code."""
    section = CodesSection(order_patterns=(r"^[A-Z]{2}$",), control_codes={"END": "seal"})
    rules = Rules.from_config(section)
    assert hand("END", rules) == Code("END", Kind.UNKNOWN)
    assert hand("eND", rules) == Code("eND", Kind.UNKNOWN)  # Honeywell's e (ITF) and "ND"
    assert hand("ND", rules) == Code("ND", Kind.ORDER)
    assert classify("END", rules, "code128") == Code("END", Kind.CONTROL, "seal")
    (warning,) = warnings_of(section)
    assert "codes.control_codes: 'END'" in warning and "'ND'" in warning
    assert "order_patterns '^[A-Z]{2}$'" in warning and "refused" in warning
    # with a pattern it does not fit, the card is the card, by hand too, and nothing is said
    strict = CodesSection(order_patterns=(r"^PO\d{8}$",), control_codes={"END": "seal"})
    assert hand("END", Rules.from_config(strict)) == Code("END", Kind.CONTROL, "seal")
    assert warnings_of(strict) == []


@pytest.mark.parametrize(
    ("card", "rest"),
    [
        ("XSF1234567890123", "SF1234567890123"),  # a waybill behind a Code ID letter
        ("AOP:alice", "OP:alice"),  # a packer's badge
        ("P01OP:bob", "OP:bob"),  # behind Zebra's QR Code ID
        ("d6901234567892", "6901234567892"),  # a product (it is an item anyway)
    ],
)
def test_a_card_that_is_a_code_id_and_another_code_is_refused_by_hand(card: str, rest: str) -> None:
    section = CodesSection(control_codes={card: "test"})
    rules = Rules.from_config(section)
    assert hand(card, rules).kind is Kind.UNKNOWN
    assert hand(rest, rules).kind is not Kind.CONTROL
    (warning,) = warnings_of(section)
    assert repr(card) in warning and repr(rest) in warning


def test_a_card_behind_a_code_id_that_an_order_pattern_takes_is_said() -> None:
    """The refusal already pinned above ("JSEAL" where five capitals are an order ID), said
    by check-config: the seal card scanned with a Code ID does nothing."""
    section = CodesSection(order_patterns=(r"^[A-Z]{5}$",))
    seal, ret = warnings_of(section)
    assert "codes.seal_codes: 'SEAL'" in seal and "'ASEAL'" in seal
    assert "order_patterns '^[A-Z]{5}$'" in seal and "refused" in seal
    # and the return card is "R" and an order ID "ETURN" of that pattern: refused by hand
    assert "codes.return_codes: 'RETURN'" in ret and "'ETURN'" in ret and "refused" in ret
    assert hand("RETURN", Rules.from_config(section)) == Code("RETURN", Kind.UNKNOWN)


def test_a_card_that_is_an_order_id_as_typed_is_said() -> None:
    """A card's own text that an order pattern also takes: the card wins (it is the
    station's), so an order sheet of that ID would seal; said, not silent."""
    section = CodesSection(order_patterns=(r"^[A-Z]{4}$",))
    warned = warnings_of(section)
    assert hand("SEAL", Rules.from_config(section)) == Code("SEAL", Kind.SEAL)
    assert any("codes.seal_codes: 'SEAL'" in w and "taken for the card" in w for w in warned)


def test_a_short_card_with_no_order_patterns_is_said() -> None:
    """With no order_patterns every other code is an order, so an order ID that is a letter
    and a short card ("AX") scanned by hand is taken for the card behind a Code ID: said for
    cards of up to three characters (a card's own word, "SEAL", is no order ID's tail)."""
    section = CodesSection(control_codes={"X": "seal", "OK": "test"})
    rules = Rules.from_config(section)
    assert hand("AX", rules) == Code("X", Kind.CONTROL, "seal")  # the rule, pinned
    warned = warnings_of(section)
    assert [w.split(":")[0] for w in warned] == ["codes.control_codes"] * 2
    assert "'X'" in warned[0] and "'AX'" in warned[0] and "order_patterns" in warned[0]
    strict = CodesSection(order_patterns=(r"^PO\d{8}$",), control_codes={"X": "seal"})
    assert warnings_of(strict) == []


def test_the_default_cards_clash_with_nothing() -> None:
    assert warnings_of(CodesSection()) == []
    assert card_conflicts(station_cards(CodesSection())) == []


@pytest.mark.parametrize(
    ("control", "clash"),
    [
        ({"AX": "test", "X": "seal"}, "'AX' (test) is the card 'X'"),  # one behind a letter
        ({"P01X": "signout", "X": "seal"}, "behind a scanner's Code ID 'P01'"),
        ({"jSEAL": "test"}, "'jSEAL' (test) is the card 'SEAL'"),  # a default card
        ({"seal": "test"}, "is also in codes.seal_codes as 'SEAL'"),  # one text, two meanings
        ({"SIGNOUT": "return"}, "is also in codes.signout_codes"),
    ],
)
def test_two_cards_a_hand_scan_cannot_tell_apart_are_refused_at_start(
    control: dict[str, str], clash: str
) -> None:
    """A card that is another card behind a Code ID ("AX" and "X"): a scanner sending Code
    IDs types the seal card "X" as "AX", the test card, silently; one text listed as two
    cards: the first kind wins, silently. The config is refused, naming both cards."""
    with pytest.raises(ConfigError, match=re.escape(clash)):
        config_mod.from_dict({"codes": {"control_codes": control}})
    # cards of one meaning may share a text or a Code ID: either does the same
    config_mod.from_dict({"codes": {"control_codes": {"AX": "seal", "X": "seal"}}})
    config_mod.from_dict({"codes": {"control_codes": {"seal": "seal", "STOP": "seal"}}})


def test_a_card_and_another_behind_a_code_id_are_refused_by_hand() -> None:
    """For rules built without the config's check: "AX" is the card "AX" and the card "X"
    behind a Code ID, of other meanings: neither (a misread that starts and ends nothing)."""
    rules = Rules.from_config(CodesSection(control_codes={"AX": "test", "X": "seal"}))
    assert hand("AX", rules) == Code("AX", Kind.UNKNOWN)
    assert hand("BX", rules) == Code("X", Kind.CONTROL, "seal")
    same = Rules.from_config(CodesSection(control_codes={"AX": "seal", "X": "seal"}))
    assert hand("AX", same) == Code("AX", Kind.CONTROL, "seal")


def test_a_card_behind_a_code_id_that_is_also_a_code_behind_another_is_refused() -> None:
    """ "P01X" is the card "X" behind Zebra's QR Code ID "P01", and an order ID "01X" behind a
    one-letter Code ID "P": with order_patterns that take "01X", nothing tells which (it was
    the card, silently: the order sheet sealed the clip). Refused by hand, and said."""
    section = CodesSection(order_patterns=(r"^[0-9][0-9A-Z]X$",), control_codes={"X": "seal"})
    rules = Rules.from_config(section)
    assert hand("P01X", rules) == Code("P01X", Kind.UNKNOWN)
    assert hand("AX", rules) == Code("X", Kind.CONTROL, "seal")  # no other reading
    (warning,) = warnings_of(section)
    assert "codes.control_codes: 'X'" in warning and "'P00X' and 35 more" in warning
    assert "'00X' behind the Code ID 'P'" in warning  # P00 to P0Z: each an order ID so


CARD_TEXTS = st.text(alphabet="AXP01j", min_size=1, max_size=4)
PATTERNS = [r"^[A-Z]{2}$", r"^\d{2}$", r"^X\d$", r"^[A-Z0-9]{3}$", r"^[0-9][0-9A-Z]X$"]


@settings(max_examples=150)
@given(
    st.dictionaries(CARD_TEXTS, st.sampled_from(["seal", "test", "signout"]), max_size=3),
    st.lists(st.sampled_from(PATTERNS), max_size=2),
    st.lists(st.text(alphabet="AXP01j", min_size=1, max_size=5), max_size=6),
)
def test_no_hand_scan_is_a_card_silently_when_it_reads_otherwise_too(
    control: dict[str, str], patterns: list[str], others: list[str]
) -> None:
    """For every config the check lets through: each card behind every Code ID is that card
    (or one of its meaning) or refused, and a refusal is said (``card_clashes`` names the
    card); no code the rules take behind any Code ID is ever a card; a card whose own text
    the rules take otherwise is said."""
    section = CodesSection(order_patterns=tuple(patterns), control_codes=control)
    assume(not card_conflicts(station_cards(section)))
    rules = Rules.from_config(section)
    warned = warnings_of(section)
    said = {w.split(": ", 1)[1].split(" (", 1)[0] for w in warned}  # the cards named
    meaning = {fold(c.text): c.meaning for c in station_cards(section)}
    for card in station_cards(section):
        for cid in CODE_IDS:
            got = hand(cid + card.text, rules)
            if got.kind is Kind.UNKNOWN:
                assert repr(card.text) in said, (cid + card.text, warned)
            else:
                assert meaning.get(fold(got.text)) == card.meaning, (cid + card.text, got)
        if recognised(card.text, rules) is not None or hand(card.text, rules).kind is Kind.UNKNOWN:
            assert repr(card.text) in said
    for text in others:
        if recognised(text, rules) is None or fold(text) in meaning:
            continue
        for cid in CODE_IDS:
            assert hand(cid + text, rules).kind not in (Kind.SEAL, Kind.CONTROL), cid + text


# ---- 2. GS1 human-readable and group-separated forms ---------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "(01)06901234567892(17)271231(10)ABC",
        "(01)06901234567892",
        "(01) 06901234567892 (10) ABC",  # HRI as printed, spaces between
        "(10)ABC(01)06901234567892",  # lot first
        "(02)06901234567892(37)24",  # a carton label's goods line
        "(00)069012345678901238",  # an SSCC of a 69 company
        "(01)96901234567895(3103)001250",  # variable measure
        "]Q3(01)06901234567892(10)ABC",
        "0106901234567892\x1d10ABC",  # FNC1 as the group separator, as scanners type it
        "10ABC\x1d0106901234567892",  # a variable-length AI first, then the GTIN
        "\x1d0106901234567892",  # a leading FNC1 sent as GS
        "17271231\x1d10ABC\x1d0106901234567892\x1d",
        "172712310106901234567892",  # fixed-length AIs need no separator: (17) then (01)
    ],
)
def test_gs1_element_strings_of_products_are_items_in_every_form(typed: str) -> None:
    code = hand(typed)
    assert (code.kind, code.detail) == (Kind.ITEM, "gs1")
    assert code.text == sanitize(typed, 64).lstrip("]Q3")  # nothing invisible in logs


@pytest.mark.parametrize(
    "typed",
    [
        "(01)06901234567891(10)ABC",  # wrong check digit
        "(01)04012345678901",  # a German GTIN: no listed prefix
        "(10)ABC(17)271231",  # no GTIN at all
        "0104012345678901\x1d10ABC",
        "10LOT\x1d17271231",
        "2012016901234567892",  # 19 digits: no (20) + (01) GTIN-14 in it, an order ID
    ],
)
def test_other_gs1_element_strings_start_no_clip(typed: str) -> None:
    # Parenthesised: read as printed, maybe an order ID; with a group separator: never an
    # order (no order sheet prints one), so unknown, logged and ignored.
    code = hand(typed)
    if "\x1d" in typed:
        assert code.kind is Kind.UNKNOWN
    else:
        assert code.kind is Kind.ORDER


def test_a_group_separator_is_kept_visible() -> None:
    text = sanitize("0106901234567892\x1d10ABC", 64)
    assert "\x1d" not in text and text == "0106901234567892\u241d10ABC"
    assert product_code(text, ("69",)) == "gs1"


# ---- 3. product codes sent shortened ---------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "690123456789",  # EAN-13 6901234567892 without its check digit
        "978039305867",  # the ISBN 9780393058673 without it
        "01234567890",  # UPC-A 012345678905 without its check digit
        "6901234",  # EAN-8 69012341 without its check digit
    ],
)
def test_without_check_digits_sent_shortened_products_are_not_items_by_default(typed: str) -> None:
    # Nothing tells them from an order ID of that length (JD's are 12 digits): pinned. They
    # keep the text rules: an order, or ZTO's waybill shape (12 digits starting 6x).
    zto = typed.startswith("6") and len(typed) == 12
    assert hand(typed, US).kind is (Kind.WAYBILL if zto else Kind.ORDER)


@pytest.mark.parametrize(
    ("typed", "detail"),
    [
        ("690123456789", "ean13"),
        ("01234567890", "upca"),
        ("6901234", "ean8"),
        ("12345678905", "upca"),  # UPC-A 012345678905 without its number system digit
        ("d690123456789", "ean13"),  # and behind a Code ID
    ],
)
def test_a_scanner_set_to_drop_check_digits_sends_items(typed: str, detail: str) -> None:
    code = hand(typed, SHORT)
    assert (code.kind, code.detail) == (Kind.ITEM, detail)


def test_shortened_codes_are_hand_scans_only() -> None:
    assert classify("690123456789", SHORT, "code128") == classify("690123456789", US, "code128")
    assert classify("6901234", SHORT, "code128").kind is Kind.ORDER


@pytest.mark.parametrize(
    "typed", ["123456789012", "7012345678", "12345678", "SF1234567890123", "1234567"]
)
def test_dropping_check_digits_leaves_other_numbers_alone(typed: str) -> None:
    assert hand(typed, SHORT) == hand(typed, US)


def test_check_config_warns_of_order_patterns_that_take_shortened_products() -> None:
    pattern = (r"^\d{12}$",)
    short = dataclasses.replace(CodesSection(), order_patterns=pattern, check_digits_sent=False)
    full = dataclasses.replace(CodesSection(), order_patterns=pattern)
    assert orders_that_are_products(Rules.from_config(short))
    assert not orders_that_are_products(Rules.from_config(full))
