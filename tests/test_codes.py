"""Classifier, sanitiser, debounce and safe-name tests (pure functions)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from station.capture.codes import (
    LYING_S,
    Code,
    Debounce,
    Kind,
    Lying,
    Rules,
    Sight,
    classify,
    orders_that_are_products,
    product_code,
    safe_component,
    same_place,
    sanitize,
    strip_symbology_id,
)
from station.config import CodesSection
from station.errors import RejectedCode

RULES = Rules.from_config(CodesSection())


@pytest.mark.parametrize(
    ("text", "kind", "detail"),
    [
        ("SF1234567890123", Kind.WAYBILL, "SF"),
        ("SF123456789012", Kind.WAYBILL, "SF"),
        ("YT1234567890123", Kind.WAYBILL, "YTO"),
        ("JDVA12345678901", Kind.WAYBILL, "JD"),
        ("JT1234567890123", Kind.WAYBILL, "JT"),
        ("EA123456789CN", Kind.WAYBILL, "EMS"),
        ("1123456789012", Kind.WAYBILL, "EMS"),
        ("77312345678901", Kind.WAYBILL, "STO"),
        ("3123456789012", Kind.WAYBILL, "YUNDA"),
        ("75123456789012", Kind.WAYBILL, "ZTO"),
        ("SEAL", Kind.SEAL, ""),
        ("seal", Kind.SEAL, ""),
        ("封箱", Kind.SEAL, ""),
        ("PO20261130-0001", Kind.ORDER, ""),
        ("123456789012345678", Kind.ORDER, ""),  # Taobao-like 18 digits: not a waybill
        ("订单-42", Kind.ORDER, ""),
        ("SF12", Kind.ORDER, ""),  # too short for an SF waybill
    ],
)
def test_default_classification(text: str, kind: Kind, detail: str) -> None:
    assert classify(text, RULES) == Code(text, kind, detail)


@pytest.mark.parametrize(
    "text",
    [
        "6901234567892",  # goods from China (GS1 690-699)
        "6920152400777",  # ... that the ZTO waybill heuristic (6x + 11 digits) would take
        "9787111213826",  # a book (ISBN-13, 978)
        "9791032305690",  # ... 979
    ],
)
def test_a_product_ean13_scanned_by_hand_is_an_item(text: str) -> None:
    """A packer checks each item with the handheld scanner: no product starts or ends a clip."""
    assert classify(text, RULES) == Code(text, Kind.ITEM, "ean13")


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("16901234567899", "itf14"),  # an ITF-14 carton of 6901234567892s (indicator 1)
        ("36920152400778", "itf14"),  # indicator 3
        ("56901234567897", "itf14"),  # ... indicator 5 gives ZTO's shape (14 digits, 5x)
        ("19787111213823", "itf14"),  # a carton of books
        ("0106901234567892", "gs1"),  # GS1-128 / GS1 DataMatrix: (01) GTIN
        ("0116901234567899", "gs1"),  # (01) the carton's GTIN-14
        ("01069012345678921726123110LOT1", "gs1"),  # (01) GTIN (17) best before (10) lot
        ("010690123456789210AB-7", "gs1"),  # (01) GTIN (10) lot
        ("00069012340000000016", "gs1"),  # (00) SSCC of a carton of a Chinese company
        # (01) a variable-measure GTIN (indicator 9) (3103) net weight 1.250 kg: meat or fruit
        # sold by weight; the camera reads its GS1-128 as a Code 128
        ("0196901234567895310300125", "gs1"),
        ("0196901234567895", "gs1"),
        # a carton's GS1 logistic label, its second line: (02) the GTIN of the goods in it,
        # (37) their count; its first line is the (00) SSCC above
        ("02069012345678923724", "gs1"),
        ("0216901234567899", "gs1"),
    ],
)
def test_cartons_and_gs1_labels_of_products_are_items(text: str, detail: str) -> None:
    """A carton's ITF-14 or a GS1-128 label scanned by hand, or the GS1-128 read by the camera
    (a Code 128: an order symbology) is no order and no waybill: with the default config
    these started a clip, ended the open one as next-order, or were linked as its waybill."""
    assert classify(text, RULES) == Code(text, Kind.ITEM, detail)
    assert classify(text, RULES, "code128") == Code(text, Kind.ITEM, detail)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("16901234567898", Kind.ORDER),  # wrong check digit
        ("96901234567895", Kind.ORDER),  # indicator 9 (variable measure) is not a carton
        ("14006381333938", Kind.ORDER),  # a German carton: 40 is not in product_prefixes
        ("76901234567898", Kind.WAYBILL),  # wrong check digit: ZTO's shape
        ("0106901234567891", Kind.ORDER),  # (01) with a wrong check digit
        ("0196901234567891", Kind.ORDER),  # (01) variable measure, wrong check digit
        ("0206901234567891", Kind.ORDER),  # (02) with a wrong check digit
        ("0194006381333934", Kind.ORDER),  # (01) variable measure, German: 40 not listed
        ("0114006381333938", Kind.ORDER),  # (01) of a German carton
        ("00069012340000000017", Kind.ORDER),  # SSCC with a wrong check digit
        ("0010614141123456789", Kind.ORDER),  # 19 digits: no SSCC
        ("016901234567892", Kind.ORDER),  # 15 digits: no (01) element string
    ],
)
def test_numbers_that_are_not_product_gtins_keep_the_text_rules(text: str, kind: Kind) -> None:
    assert classify(text, RULES).kind is kind


def test_upca_typed_in_12_digits_is_an_item_when_its_prefix_is_listed() -> None:
    """Scanners type UPC-A in 12 digits: its EAN-13 form is "0" + those. Off by default (one
    12-digit order ID or waybill in ten has a valid check digit): a seller packing US goods
    lists "0" (or "03", ...) in product_prefixes."""
    assert classify("781735802045", RULES).kind is Kind.WAYBILL  # ZTO's shape: the default
    us = Rules.from_config(CodesSection(product_prefixes=("0",)))
    assert classify("781735802045", us) == Code("781735802045", Kind.ITEM, "upca")
    assert classify("036602301467", us) == Code("036602301467", Kind.ITEM, "upca")
    assert classify("0036602301467", us) == Code("0036602301467", Kind.ITEM, "ean13")
    assert classify("781735802046", us).kind is Kind.WAYBILL  # wrong check digit
    with_orders = Rules.from_config(
        CodesSection(product_prefixes=("0",), order_patterns=(r"^PO\d{8}$",))
    )
    assert classify("781735802045", with_orders).kind is Kind.ITEM


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("6901234567891", Kind.WAYBILL),  # wrong check digit: not an EAN-13 (ZTO's shape)
        ("6901234567890", Kind.WAYBILL),
        ("9787111213825", Kind.ORDER),
        ("978711121382", Kind.ORDER),  # 12 digits (a JD-like order ID)
        ("69012345678928", Kind.WAYBILL),  # 14 digits: ZTO
        ("7312345678903", Kind.WAYBILL),  # valid check digit, not a product prefix: ZTO
        ("978711121382６", Kind.ORDER),  # a full-width digit is no EAN digit
    ],
)
def test_numbers_that_are_not_product_ean13s_keep_the_text_rules(text: str, kind: Kind) -> None:
    assert classify(text, RULES).kind is kind


@pytest.mark.parametrize(
    "text",
    [
        "978039305867352595",  # a book and its price add-on (photo ean13-1_32), joined
        "9780393058673 52595",  # ... after the separator a scanner may be set to send
        "9780393058673-52595",
        "978155860497190000",  # 90000: no suggested price (photo ean13-1_33)
        "978711121382612",  # a 2-digit add-on
        "977031784700103",  # a periodical (ISSN 0317-8471) and its issue number
        "9770317847001",  # ... without it
    ],
)
def test_a_book_or_periodical_with_its_add_on_scanned_by_hand_is_an_item(text: str) -> None:
    """A handheld scanner with add-ons enabled types the price or issue add-on of a book or
    a periodical after its EAN-13 (zxing reads it so too, e.g. "978039305867352595"):
    it was an order, which opened a clip or ended the open one as next-order."""
    assert classify(text, RULES) == Code(text, Kind.ITEM, "ean13")


def test_a_upca_with_its_add_on_is_an_item_when_its_prefix_is_listed() -> None:
    """The shared set's UPC-A photos with add-ons (upca-1_9: 19868, upca-1_18: 00), in 12
    or 13 digits and the add-on."""
    us = Rules.from_config(CodesSection(product_prefixes=("00", "02")))
    for text in ("07183100799519868", "007183100799519868", "02454313653800", "002454313653800"):
        assert classify(text, us).kind is Kind.ITEM, text
        assert classify(text, RULES).kind is Kind.ORDER, text  # prefix 0 is not listed


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("978039305867452595", Kind.ORDER),  # the EAN-13's check digit is wrong
        ("690123456789212345", Kind.ORDER),  # goods carry no add-on: 18 digits, an order ID
        ("690123456789212", Kind.WAYBILL),  # ... 15 digits: ZTO's shape
        ("97803930586735259", Kind.ORDER),  # 17 digits: a 4-digit add-on does not exist
        ("9780393058673  52595", Kind.ORDER),  # two separators
        ("9780393058673/52595", Kind.ORDER),
    ],
)
def test_numbers_that_are_not_a_product_and_its_add_on_keep_the_text_rules(
    text: str, kind: Kind
) -> None:
    assert classify(text, RULES).kind is kind


def test_an_ean8_or_upce_typed_by_hand_is_an_item_when_its_prefix_is_listed() -> None:
    """Small goods carry an EAN-8 (China's start 69, like its EAN-13s) or, from the US, a
    UPC-E, which handheld scanners type as 8 digits (the camera reads them as ean8 / upce):
    they were orders, opening a clip or ending the open one as next-order."""
    assert classify("69012341", RULES) == Code("69012341", Kind.ITEM, "ean8")
    assert classify("69712340", RULES) == Code("69712340", Kind.ITEM, "ean8")
    us = Rules.from_config(CodesSection(product_prefixes=("00",)))
    # UPC-E 0 123456 5 stands for the UPC-A 012345000065 (EAN-13 0012345000065)
    assert classify("01234565", us) == Code("01234565", Kind.ITEM, "upce")
    assert classify("01234565", RULES).kind is Kind.ORDER  # prefix 00 is not listed


@pytest.mark.parametrize(
    "text",
    [
        "69012340",  # wrong check digit
        "42094043",  # a Code 128 order ID of the shared set: no listed prefix
        "20261130",  # a date-like order ID
        "01234564",  # a UPC-E's wrong check digit (were 00 listed)
        "0690123",  # 7 digits
    ],
)
def test_eight_digit_numbers_that_are_no_listed_ean8_or_upce_are_orders(text: str) -> None:
    us = Rules.from_config(CodesSection(product_prefixes=("00", "69")))
    assert classify(text, RULES).kind is Kind.ORDER
    assert classify(text, us).kind is Kind.ORDER


def test_order_patterns_win_over_product_prefixes_and_an_empty_list_turns_them_off() -> None:
    ordered = Rules.from_config(CodesSection(order_patterns=(r"^69\d{11}$",)))
    assert classify("6901234567892", ordered).kind is Kind.ORDER
    assert classify("9787111213826", ordered).kind is Kind.ITEM
    off = Rules.from_config(CodesSection(product_prefixes=()))
    assert classify("6901234567892", off).kind is Kind.WAYBILL  # ZTO's shape
    assert classify("9787111213826", off).kind is Kind.ORDER
    own = Rules.from_config(CodesSection(product_prefixes=("40",)))
    assert classify("4045787034318", own).kind is Kind.ITEM
    assert classify("6901234567892", own).kind is Kind.WAYBILL


def test_real_product_labels_scanned_by_hand_are_items(barcodes_dir) -> None:
    """The shared set's EAN-13 photos (zxing): their texts as a handheld scanner types them."""
    import csv

    lines = (barcodes_dir / "ean13" / "manifest.csv").read_text().splitlines()
    rows = list(csv.DictReader(lines))
    texts = {r["expected_text"] for r in rows}
    books = {t for t in texts if t.startswith(("978", "979"))}
    assert len(books) >= 10
    for text in books:
        assert classify(text, RULES).kind is Kind.ITEM, text
    for text in texts - books:  # other countries' goods: [codes] product_prefixes names them
        assert classify(text, RULES).kind is not Kind.ITEM, text
        assert classify(text, Rules.from_config(CodesSection(product_prefixes=(text[:3],)))) == (
            Code(text, Kind.ITEM, "ean13")
        )


@pytest.mark.parametrize(
    ("text", "symbology"),
    [
        ("https://weixin.qq.com/r/AbCdEfGh", "qrcode"),  # a product's WeChat QR code
        ("http://google.com/m", "datamatrix"),
        ("HTTPS://ID.GS1.ORG/01/06901234567892", "qrcode"),  # a GS1 Digital Link on goods
        ("MEBKM:URL:http\\://en.wikipedia.org/wiki/Main_Page;;", "qrcode"),  # a bookmark
        ("WWW.CITRONSOFT.COM", "code39"),
        ("https://shop.example.com/item/123", ""),  # the same QR read by a handheld scanner
    ],
)
def test_a_web_address_on_goods_is_an_item_never_an_order(text: str, symbology: str) -> None:
    """QR codes on goods mostly hold web addresses: with no order_patterns every other
    camera read in an order symbology would be an order, so a product's QR code held up in
    view would start a clip (or end the open one as next-order)."""
    assert classify(text, RULES, symbology) == Code(text, Kind.ITEM, "url")


def test_an_order_pattern_may_take_web_addresses_as_orders() -> None:
    rules = Rules.from_config(CodesSection(order_patterns=(r"^https://erp\.example\.com/o/\d+$",)))
    assert classify("https://erp.example.com/o/42", rules, "qrcode").kind is Kind.ORDER
    assert classify("https://weixin.qq.com/r/x", rules, "qrcode") == Code(
        "https://weixin.qq.com/r/x", Kind.ITEM, "url"
    )
    # not web addresses: order IDs that merely contain a dot, a slash or a colon
    for text in ("PO-2026/11/30.7", "OP:alice", "JD:123", "SO.20261130"):
        assert classify(text, RULES, "code128").kind is not Kind.ITEM, text


def test_real_web_address_labels_are_items(barcodes_dir) -> None:
    """The shared set's QR, DataMatrix and Code 39 photos that hold a web address (zxing)."""
    import csv

    texts = set()
    for sym in ("qrcode", "datamatrix", "code39"):
        lines = (barcodes_dir / sym / "manifest.csv").read_text().splitlines()
        for row in csv.DictReader(lines):
            text = row["expected_text"].strip()
            if "http" in text.lower() or "www." in text.lower():
                texts.add((text, sym))
    assert len(texts) >= 10
    for text, sym in texts:
        if any(ch in text for ch in "\r\n"):
            continue  # multi-line payloads are rejected before classification
        assert classify(text, RULES, sym).kind is Kind.ITEM, text


def test_real_upca_labels_typed_in_12_digits_are_items_with_prefix_0(barcodes_dir) -> None:
    """The shared set's UPC-A photos (zxing) as a handheld scanner types them: 12 digits."""
    import csv

    lines = (barcodes_dir / "upca" / "manifest.csv").read_text().splitlines()
    texts = {r["expected_text"] for r in csv.DictReader(lines)}
    assert len(texts) >= 20 and all(len(t) == 12 for t in texts)
    us = Rules.from_config(CodesSection(product_prefixes=("0",), order_patterns=(r"^PO\d{8}$",)))
    for text in texts:
        assert classify(text, us) == Code(text, Kind.ITEM, "upca"), text


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("sf123456789012", Code("SF123456789012", Kind.WAYBILL, "SF")),
        ("jdva12345678901", Code("JDVA12345678901", Kind.WAYBILL, "JD")),
        ("ea123456789cn", Code("EA123456789CN", Kind.WAYBILL, "EMS")),
        ("op:ALICE", Code("OP:alice", Kind.OPERATOR, "alice")),
        ("sEAL", Code("sEAL", Kind.SEAL, "")),  # cards fold case anyway
    ],
)
def test_a_label_typed_with_caps_lock_on_is_read_as_printed(typed: str, code: Code) -> None:
    """A scanner that sees the host's Caps Lock on types every letter in the other case (it
    is set to compensate for a Caps Lock the grabbed evdev device never applies): the SF
    waybill "sf1..." was a new order that ended the open clip, a badge an order too."""
    assert classify(typed, RULES) == code


def test_caps_lock_inverted_order_ids_and_return_labels_match_their_patterns() -> None:
    rules = Rules.from_config(
        CodesSection(order_patterns=(r"^PO-\d+$",), return_patterns=(r"^RT\d{10}$",))
    )
    assert classify("po-1001", rules) == Code("PO-1001", Kind.ORDER)
    assert classify("rt1234567890", rules) == Code("RT1234567890", Kind.RETURN, "return")
    assert classify("po-1001", rules, "code128").kind is Kind.UNKNOWN  # a camera reads the label


def test_caps_lock_never_merges_two_order_ids_a_format_allows() -> None:
    """The inverted text is tried only when the typed one matches no pattern: IDs that
    differ in case and both fit the format stay two orders, and without order_patterns (no
    format to tell) a code stays as typed."""
    mixed = Rules.from_config(CodesSection(order_patterns=(r"^[A-Za-z]{2}\d{4}$",)))
    assert classify("Ab1234", mixed) == Code("Ab1234", Kind.ORDER)
    assert classify("aB1234", mixed) == Code("aB1234", Kind.ORDER)
    assert classify("po-1001", RULES) == Code("po-1001", Kind.ORDER)
    assert classify("PO-1001", RULES) == Code("PO-1001", Kind.ORDER)
    # a lower-case waybill a warehouse's own pattern takes is kept as scanned
    own = Rules.from_config(CodesSection(waybill_patterns={"X": r"^sf\d{12}$"}))
    assert classify("sf123456789012", own) == Code("sf123456789012", Kind.WAYBILL, "X")
    # only ASCII letters are inverted: a keyboard-wedge scanner types nothing else
    assert classify("ſf123456789012", RULES).kind is Kind.ORDER


def test_order_patterns_win_over_waybill_heuristics_and_others_are_unknown() -> None:
    rules = Rules.from_config(CodesSection(order_patterns=(r"^75\d{12}$",)))
    assert classify("75123456789012", rules).kind is Kind.ORDER
    assert classify("SF1234567890123", rules).kind is Kind.WAYBILL
    assert classify("hello", rules).kind is Kind.UNKNOWN
    assert classify("SEAL", rules).kind is Kind.SEAL


def test_control_codes_and_custom_seals() -> None:
    section = CodesSection(seal_codes=("DONE",), control_codes={"Stop": "seal", "PING": "test"})
    rules = Rules.from_config(section)
    assert classify("done", rules).kind is Kind.SEAL
    assert classify("SEAL", rules).kind is Kind.ORDER  # no longer a seal code
    assert classify("STOP", rules) == Code("STOP", Kind.CONTROL, "seal")
    assert classify("ping", rules) == Code("ping", Kind.CONTROL, "test")


def test_seal_matches_decomposed_unicode() -> None:
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "封箱")
    assert classify(sanitize(decomposed, 64), RULES).kind is Kind.SEAL


@pytest.mark.parametrize(
    "text",
    [
        "ſeal",  # long s: str.casefold() makes it "seal"
        "SEAſ",
        "\uff33\uff25\uff21\uff2c",  # fullwidth ＳＥＡＬ: NFKC would make it "SEAL"
        "SE\u0391L",  # a Greek capital alpha that looks like A
        "seal\u0307",  # a combining dot that does not compose with l
    ],
)
def test_look_alikes_of_a_seal_card_are_not_seals(text: str) -> None:
    clean = sanitize(text, 64)
    assert classify(clean, RULES).kind is not Kind.SEAL


def test_control_codes_fold_case_but_not_look_alikes() -> None:
    rules = Rules.from_config(CodesSection(control_codes={"FINISH": "seal", "ΣTOP": "test"}))
    assert classify("Finish", rules).kind is Kind.CONTROL
    assert classify("\ufb01nish", rules).kind is not Kind.CONTROL  # the "fi" ligature
    assert classify("σtop", rules) == Code("σtop", Kind.CONTROL, "test")  # a real case pair
    assert classify("ςtop", rules).kind is not Kind.CONTROL  # final sigma is another letter
    assert classify(sanitize("  Seal \n", 64), RULES).kind is Kind.SEAL


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("   \r\n", "empty"),
        ("A" * 65, "too long"),
        ("AB\x00CD", "control"),
        ("AB\x1bCD", "control"),
        ("line1\nline2", "control"),
        ("AB\u200bCD", "control"),  # zero-width space hides in a label
        ("AB\ufffdCD", "binary"),
        ("AB\udc80CD", "binary"),
        ("x\u2028x", "control"),
    ],
)
def test_sanitize_rejects(raw: str, why: str) -> None:
    with pytest.raises(RejectedCode, match=why):
        sanitize(raw, 64)


def test_sanitize_strips_scanner_terminators() -> None:
    assert sanitize("  PO-1\r\n", 64) == "PO-1"
    assert sanitize("订单 42", 64) == "订单 42"


@pytest.mark.parametrize(
    ("typed", "text", "kind"),
    [
        ("]E06901234567892", "6901234567892", Kind.ITEM),  # EAN-13
        ("]E09787111213826", "9787111213826", Kind.ITEM),  # a book's ISBN
        ("]I156901234567897", "56901234567897", Kind.ITEM),  # a carton's ITF-14: ZTO's shape
        ("]C101069012345678921726123110LOT1", "01069012345678921726123110LOT1", Kind.ITEM),
        ("]d20106901234567892", "0106901234567892", Kind.ITEM),  # GS1 DataMatrix
        ("]C0SEAL", "SEAL", Kind.SEAL),
        ("]A0SIGNOUT", "SIGNOUT", Kind.CONTROL),
        ("]C0OP:alice", "OP:alice", Kind.OPERATOR),
        ("]C0SF1234567890123", "SF1234567890123", Kind.WAYBILL),
        ("]Q1PO20261130-0001", "PO20261130-0001", Kind.ORDER),
        ("PO-]C0", "PO-]C0", Kind.ORDER),  # only a prefix is an identifier
        ("]X", "]X", Kind.ORDER),  # too short to be one
    ],
)
def test_a_scanners_symbology_identifier_is_not_part_of_the_code(
    typed: str, text: str, kind: Kind
) -> None:
    """A hand scanner set to send AIM symbology identifiers (]E0 EAN-13, ]C1 GS1-128, ...)
    types them before the code: with them an EAN-13 was an order, and the seal card a new
    order that ended the open clip."""
    clean = strip_symbology_id(sanitize(typed, 64))
    assert clean == text
    assert classify(clean, RULES).kind is kind


@pytest.mark.parametrize("typed", ["]C0", "]E0  "])
def test_a_symbology_identifier_alone_is_rejected(typed: str) -> None:
    with pytest.raises(RejectedCode, match="empty"):
        strip_symbology_id(sanitize(typed, 64))


@given(st.text(max_size=200))
def test_sanitize_either_returns_clean_text_or_rejects(raw: str) -> None:
    try:
        text = sanitize(raw, 64)
    except RejectedCode:
        return
    assert text == text.strip() and 0 < len(text) <= 64
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in text)
    assert isinstance(classify(text, RULES).kind, Kind)


def test_debounce_sliding_window() -> None:
    d = Debounce()
    new, d = d.seen("A", 0.0, 3.0)
    assert new
    # Seen continuously every second for 10 s: still one scan.
    for t in range(1, 11):
        new, d = d.seen("A", float(t), 3.0)
        assert not new
    new, d = d.seen("B", 10.5, 3.0)
    assert new
    new, d = d.seen("A", 14.5, 3.0)  # 4.5 s since last sighting
    assert new
    new, d = d.seen("A", 14.6, 0.0)  # window 0: every sighting counts... after any gap
    assert new


def test_debounce_a_sighting_just_before_the_last_is_the_same_scan() -> None:
    # A camera read reaches the station after its decode, behind a keyboard scan of the same
    # label stamped 50 ms later: one scan, and the window runs from the later sighting.
    d = Debounce()
    new, d = d.seen("A", 10.05, 3.0)
    assert new
    new, d = d.seen("A", 10.0, 3.0)
    assert not new
    new, d = d.seen("A", 13.04, 3.0)
    assert not new
    new, d = d.seen("A", 2.0, 3.0)  # the timeline went back (a new camera session)
    assert new


def test_debounce_forgets_old_codes() -> None:
    d = Debounce()
    for i in range(1000):
        _, d = d.seen(f"C{i}", float(i), 3.0)
    assert len(d.last) < 20


TABLE = (198, 330, 284, 416)  # the seal card lying at the table's edge (960x540)
HELD = (406, 160, 554, 308)  # held up to the camera: mid-view, nearer (larger)
ELSEWHERE = (600, 100, 686, 186)


class Card:
    """The seal card's camera reads fed to ``Lying``, one every 0.1 s."""

    def __init__(self) -> None:
        self.lying = Lying()

    def at(self, box: tuple[int, int, int, int], t0: float, t1: float | None = None) -> list[bool]:
        """Read at ``box`` from ``t0`` to ``t1`` (once when None): was each read lying?"""
        return [s is Sight.LYING for s in self.sights(box, t0, t1)]

    def sights(
        self,
        box: tuple[int, int, int, int],
        t0: float,
        t1: float | None = None,
        new: bool = False,
        clip_began: float | None = None,
    ) -> list[Sight]:
        """Read at ``box`` from ``t0`` to ``t1`` (once when None, the first read ``new`` to the
        debounce; a clip open since ``clip_began``): what was each read?"""
        out = []
        for i in range(round(((t1 or t0) - t0) * 10) + 1):
            t = t0 + i / 10
            sight, self.lying = self.lying.seen("SEAL", t, box, new and i == 0, clip_began)
            out.append(sight)
        return out


def test_a_card_put_down_and_seen_again_where_it_lay_is_lying() -> None:
    card, lay = Card(), LYING_S
    assert not any(card.at(HELD, 0.0, 1.0))  # shown for a moment: held up
    assert not any(card.at(TABLE, 1.5, 1.5 + lay))  # put down: lying once unmoved so long
    assert card.at(TABLE, 1.6 + lay, 3.0 + lay) == [True] * 15
    # Covered by a parcel, read once as it slid over, then uncovered: where it lay.
    assert card.at((198, 399, 284, 485), 3.3 + lay) == [False]
    assert card.at((199, 331, 285, 416), 10.0 + lay) == [True]


def test_a_card_held_up_again_or_elsewhere_is_not_lying() -> None:
    card, lay = Card(), LYING_S
    card.at(HELD, 0.0, 3.0)  # held up still for 3 s (until the beep): a gesture, not put down
    assert card.at(HELD, 9.0) == [False]  # shown again at the same place
    card.at(TABLE, 10.0, 11.0 + lay)  # put down
    assert card.at(HELD, 20.0 + lay) == [False]  # held up: elsewhere, larger
    assert card.at((120, 330, 206, 416), 30.0 + lay) == [False]  # another place on the table


def test_a_card_lies_where_it_lay_last_and_a_new_timeline_starts_afresh() -> None:
    card, lay = Card(), LYING_S
    card.at(TABLE, 0.0, 1.0 + lay)
    card.at(HELD, 2.0 + lay, 2.5 + lay)  # picked up, held up for a moment
    assert card.at(TABLE, 6.0 + lay) == [True]  # the last place it lay is still that one
    card.at(ELSEWHERE, 7.0 + lay, 8.0 + 2 * lay)  # put down elsewhere
    assert card.at(TABLE, 16.0 + 2 * lay) == [False]
    assert card.at(ELSEWHERE, 17.0 + 2 * lay) == [True]
    assert card.at(ELSEWHERE, 1.0) == [False]  # the timeline went back: a new camera session
    assert Lying().seen("OTHER", 0.0, TABLE)[1].places.keys() == {"OTHER"}


def test_a_card_picked_up_from_where_it_lay_and_held_still_nearer_is_held_up_once() -> None:
    """Read on and on where it lay, then held up: one sighting to the debounce, so the second
    read held still nearer the camera is a showing of its own, once."""
    card, lay, o, up = Card(), LYING_S, Sight.OTHER, Sight.HELD_UP
    card.sights(TABLE, 0.0, 1.0 + lay)  # put down
    assert card.sights(HELD, 7.0, 7.5) == [o, up, o, o, o, o]  # picked up, held still
    assert card.sights((420, 170, 568, 318), 7.6, 7.8) == [o] * 3  # wobbling: the same showing
    assert card.sights(TABLE, 8.5, 8.6) == [Sight.LYING] * 2  # put down again where it lay
    assert card.sights(HELD, 9.0, 9.2) == [o, up, o]  # picked up again: shown again


def test_a_card_moved_at_the_table_or_carried_through_is_not_held_up() -> None:
    """Slid over, pushed along the table (its size) or carried through the view nearer the
    camera (never read twice at one place) it is no showing; nor before it ever lay."""
    card, lay = Card(), LYING_S
    assert Sight.HELD_UP not in card.sights(HELD, 0.0, 1.0)  # held up; lay nowhere yet
    card.sights(TABLE, 2.0, 3.0 + lay)  # put down
    assert card.sights((198, 399, 284, 485), 9.0, 9.3) == [Sight.OTHER] * 4  # slid over
    assert card.sights((120, 330, 206, 416), 9.5, 9.8) == [Sight.OTHER] * 4  # pushed along
    assert card.sights((300, 280, 421, 401), 9.9, 10.2) == [Sight.OTHER] * 4  # and turned 45°
    boxes = [(150 + 40 * i, 300 - 30 * i, 260 + 50 * i, 410 - 20 * i) for i in range(5)]
    assert [card.sights(b, 10.5 + i / 10)[0] for i, b in enumerate(boxes)] == [Sight.OTHER] * 5


def test_a_card_held_up_that_the_debounce_takes_as_new_is_no_second_showing() -> None:
    card, lay = Card(), LYING_S
    card.sights(TABLE, 0.0, 1.0 + lay)
    assert Sight.HELD_UP not in card.sights(HELD, 20.0, 21.0, new=True)  # a scan already


def test_a_card_shown_at_one_spot_for_every_order_never_lies_there() -> None:
    """Held up still at the same spot for 3 s per order, each showing a new sighting: the
    showings do not add up to a card lying there (the third order's seal was ignored)."""
    card = Card()
    card.sights(TABLE, 0.0, 1.0, new=True)  # read at the table once: HELD is nearer
    for t in (2.0, 13.0, 24.0, 35.0):
        assert Sight.LYING not in card.sights(HELD, t, t + 3.0, new=True)


def test_a_card_never_read_farther_than_where_it_stayed_is_lying_there_when_seen_again() -> None:
    """Put down at the table by a hand from out of view (never shown), covered before it lay
    there 5 s, uncovered 5 s or more after its last read and after the next order's scan: a
    new sighting at no place where it lay, so a seal mid-packing. Nothing tells that spot
    from one it was held up at, so it is lying there, however long it was covered (a missed
    seal, not a false one); so is a card shown at one spot for every order and never read at
    the table (its first showing acts). Read nearer than there (held up) it is shown."""
    side, o, lying = Card(), Sight.OTHER, Sight.LYING
    assert lying not in side.sights(TABLE, 0.0, 2.0, new=True)  # put down from the side
    assert side.sights(TABLE, 15.0, 15.5, new=True, clip_began=8.0) == [lying] + [o] * 5
    assert side.sights(TABLE, 600.0, new=True) == [lying]  # and again, much later
    assert side.sights(HELD, 610.0, 610.5, new=True) == [o] * 6  # held up: shown
    assert side.sights(HELD, 620.0, new=True, clip_began=615.0) == [o]  # there again: shown
    held = Card()
    assert held.sights(HELD, 0.0, 3.0, new=True) == [o] * 31  # shown: acts
    assert held.sights(HELD, 11.0, new=True, clip_began=5.0) == [lying]  # not known held up


def test_a_card_put_down_and_covered_for_moments_sooner_than_it_lies_is_lying() -> None:
    """Put down, covered before it lay there 5 s, for longer than the debounce but less than
    5 s, and uncovered, again and again: each uncovering was a new sighting at a place where
    it never lay, so a seal, each ending the open clip mid-packing. Where it was last read,
    less than 5 s before, it is the card uncovered, not shown. The stays do not add up (a card
    shown twice at one spot is not lying there for the orders after)."""
    card, o, lying = Card(), Sight.OTHER, Sight.LYING
    assert lying not in card.sights(TABLE, 0.0, 2.0, new=True)  # put down
    assert card.sights(TABLE, 6.0, 7.0, new=True) == [lying] + [o] * 10  # covered for 4 s
    assert card.sights(TABLE, 11.0, 12.0, new=True) == [lying] + [o] * 10  # and again
    assert card.sights(TABLE, 17.5, new=True) == [lying]  # 5.5 s: never read farther away
    assert card.sights(HELD, 18.0, 18.5, new=True) == [o] * 6  # held up elsewhere: shown
    assert card.sights(HELD, 30.0, new=True) == [o]  # at the same spot for the next order


def test_a_card_read_where_it_lies_while_the_open_clip_runs_is_lying_there() -> None:
    """Put down before the order's scan, read there on and on while its clip began, then
    covered by its parcel for long and uncovered: the card seen again, no showing (it lay in
    view while that order was packed), whether or not it lay there 5 s before. A card shown at
    one spot for every order was last read there before the open clip began: shown."""
    card, o, lying = Card(), Sight.OTHER, Sight.LYING
    card.sights(TABLE, 0.0, 2.0, new=True)  # put down; the next order scanned at 1.0
    assert card.sights(TABLE, 30.0, 30.5, new=True, clip_began=1.0) == [lying] + [o] * 5
    assert card.sights(TABLE, 60.0, new=True, clip_began=1.0) == [lying]  # and again
    # Not read in this clip, but never read farther from the camera either: lying too
    assert card.sights(TABLE, 90.0, new=True, clip_began=70.0) == [lying]
    held = Card()
    held.sights(TABLE, 0.0, 1.0, new=True)  # read at the table once: HELD is nearer
    for t, began in ((2.0, None), (11.0, 6.0), (22.0, 17.0)):
        assert held.sights(HELD, t, t + 3.0, new=True, clip_began=began)[0] is o


def test_a_card_put_down_from_where_it_was_shown_lies_there_however_long_it_is_covered() -> None:
    """Shown to seal (held up: nearer), then put down at the table in the same sighting and
    covered before it lay there 5 s, until after the next order's clip began (its stays
    before that scan): each uncovering there was a new sighting at no place where it lay,
    and 5 s or more after its last read there, so a seal, ending that order's clip
    mid-packing. Lowered from where it was shown and left there, it was put down: seen again
    there it is lying, however long it was covered. Shown at a spot for every order is not
    putting it down."""
    card, o, lying = Card(), Sight.OTHER, Sight.LYING
    assert lying not in card.sights(HELD, 0.0, 1.5, new=True)  # shown: seals the open order
    assert lying not in card.sights(TABLE, 2.0, 3.5)  # put down, covered at 3.5
    # the next order scanned at 8.0; uncovered 11.5 s after the last read at the table
    assert card.sights(TABLE, 15.0, 15.5, new=True, clip_began=8.0) == [lying] + [o] * 5
    assert card.sights(TABLE, 40.0, new=True, clip_began=30.0) == [lying]  # and again, later
    assert card.sights(HELD, 50.0, 51.0, new=True) == [o] * 11  # held up again: shown
    assert card.sights(HELD, 60.0, new=True) == [o]  # at the same spot for the next order
    first = Card()  # first read lying at the table (put down from out of view): lying too,
    assert lying not in first.sights(TABLE, 0.0, 2.0, new=True)  # never read farther away
    assert first.sights(TABLE, 15.0, new=True, clip_began=8.0) == [lying]


@given(
    shown_s=st.floats(0.2, 3.0),
    laid_s=st.floats(0.2, 4.8),
    covers=st.lists(st.tuples(st.floats(3.1, 600.0), st.floats(0.0, 4.8)), min_size=1, max_size=5),
    scan_after=st.floats(0.0, 20.0),
)
def test_a_card_put_down_from_a_showing_is_lying_at_every_uncovering(
    shown_s: float, laid_s: float, covers: list[tuple[float, float]], scan_after: float
) -> None:
    """Shown for ``shown_s``, put down at the table for ``laid_s`` (less than it takes to lie
    there), then covered and uncovered there again and again (each cover longer than the
    debounce, each uncovering read for a while), the next order scanned at any time: no
    uncovering is a showing (a seal ending that order's clip mid-packing)."""
    card = Card()
    card.sights(HELD, 0.0, shown_s, new=True)
    t = shown_s + 0.1
    card.sights(TABLE, t, t + laid_s)
    t += laid_s
    began = t + scan_after
    for covered, read_s in covers:
        t += covered
        sights = card.sights(TABLE, t, t + read_s, new=True, clip_began=began)
        assert sights[0] is Sight.LYING, (t, began)
        t += read_s


@given(
    laid_s=st.floats(0.1, 4.8),
    covers=st.lists(st.tuples(st.floats(3.1, 600.0), st.floats(0.0, 4.8)), min_size=1, max_size=5),
    scan_after=st.floats(0.0, 20.0),
)
def test_a_card_put_down_from_out_of_view_is_lying_at_every_uncovering(
    laid_s: float, covers: list[tuple[float, float]], scan_after: float
) -> None:
    """Never shown: first read at the table for ``laid_s`` (less than it takes to lie there),
    then covered and uncovered there again and again, the next order scanned at any time: no
    uncovering is a showing (a seal ending that order's clip mid-packing); held up nearer the
    camera after, it is one."""
    card = Card()
    card.sights(TABLE, 0.0, laid_s, new=True)
    t, began = laid_s, laid_s + scan_after
    for covered, read_s in covers:
        t += covered
        sights = card.sights(TABLE, t, t + read_s, new=True, clip_began=began)
        assert sights[0] is Sight.LYING, (t, began)
        t += read_s
    assert card.sights(HELD, t + 5.0, new=True, clip_began=t + 1.0) == [Sight.OTHER]


@given(
    gaps=st.lists(st.floats(5.1, 600.0), min_size=1, max_size=5),
    held_s=st.floats(0.1, 3.0),
    laid_s=st.floats(0.2, 4.8),
)
def test_a_card_shown_at_one_spot_for_every_order_is_shown_each_time(
    gaps: list[float], held_s: float, laid_s: float
) -> None:
    """Held up still at the same spot for every order (each showing a new sighting, 5 s or
    more after the last, before that order's scan), put down elsewhere at the table in
    between: every showing is one, also after the card was put down (the put-down place is
    the table's, not the spot it is shown at)."""
    card, t = Card(), 0.0
    for gap in gaps:
        sights = card.sights(HELD, t, t + held_s, new=True, clip_began=t - 0.5)
        assert Sight.LYING not in sights, t
        card.sights(TABLE, t + held_s + 0.1, t + held_s + 0.1 + laid_s)  # put down
        t += held_s + 0.1 + laid_s + gap


def test_return_labels_are_forgotten_when_unread_for_long_cards_never() -> None:
    labels = Lying(forget_s=60.0)
    for text in ("RT01", "RT02", "RT03"):
        _sight, labels = labels.seen(text, 0.0, TABLE)
    _sight, labels = labels.seen("RT02", 30.0, TABLE)
    assert labels.seen("RT04", 70.0, HELD)[1].places.keys() == {"RT02", "RT04"}
    cards = Lying().seen("SEAL", 0.0, TABLE)[1]
    assert cards.seen("X", 1e6, HELD)[1].places.keys() == {"SEAL", "X"}


def test_same_place_allows_an_eighth_of_the_size() -> None:
    assert same_place(TABLE, TABLE)
    assert same_place(TABLE, (208, 340, 294, 426))  # 10 px off an 86 px code
    assert not same_place(TABLE, (198, 345, 284, 431))  # 15 px off
    assert not same_place(TABLE, (180, 312, 302, 434))  # larger: nearer the camera


@pytest.mark.parametrize(
    "text",
    ["../../etc/passwd", "a/b", "..", ".", "C:\\x", "x" * 300, "订单", "a b", "%2e%2e", "", "\x00"],
)
def test_safe_component_never_escapes(text: str) -> None:
    name = safe_component(text)
    assert re.fullmatch(r"[A-Za-z0-9_~-]+", name)
    assert len(name) <= 48 + 9
    assert name not in {".", ".."}


def test_safe_component_keeps_plain_ids_and_separates_lookalikes() -> None:
    assert safe_component("PO-20261130_1") == "PO-20261130_1"
    assert safe_component("a/b") != safe_component("a_b")
    assert safe_component("a/b") != safe_component("a\\b")


@given(st.text(min_size=1, max_size=100), st.text(min_size=1, max_size=100))
def test_safe_component_injective_on_changed_names(a: str, b: str) -> None:
    if a != b:
        assert safe_component(a) != safe_component(b) or (
            safe_component(a) == a and safe_component(b) == b
        )


# ---- camera reads: product codes are items, orders come from the order symbologies ---------


@pytest.mark.parametrize("symbology", ["ean13", "ean8", "upca", "upce"])
def test_camera_product_codes_are_items_whatever_their_text(symbology: str) -> None:
    # digits that would otherwise be an order ID, or even match a waybill pattern (EMS)
    for text in ("4006381333931", "1123456789012", "SEAL"):
        assert classify(text, RULES, symbology) == Code(text, Kind.ITEM, symbology)


def test_keyboard_scans_keep_the_text_rules() -> None:
    # a USB scanner types an EAN's digits with no symbology: today's rules apply
    assert classify("4006381333931", RULES).kind is Kind.ORDER
    assert classify("1123456789012", RULES).kind is Kind.WAYBILL


@pytest.mark.parametrize("symbology", ["code128", "code39", "qrcode", "datamatrix"])
def test_camera_reads_in_order_symbologies_follow_the_text_rules(symbology: str) -> None:
    assert classify("PO-7", RULES, symbology).kind is Kind.ORDER
    assert classify("SF1234567890123", RULES, symbology).kind is Kind.WAYBILL
    assert classify("SEAL", RULES, symbology).kind is Kind.SEAL


def test_order_symbologies_and_patterns_together() -> None:
    rules = Rules.from_config(
        CodesSection(order_symbologies=("qrcode", "ean13"), order_patterns=(r"^PO-\d+$",))
    )
    assert classify("PO-12", rules, "qrcode").kind is Kind.ORDER
    assert classify("PO-12", rules, "code128").kind is Kind.UNKNOWN  # not an order symbology
    assert classify("ABC", rules, "qrcode").kind is Kind.UNKNOWN  # no pattern matches
    assert classify("SF1234567890123", rules, "code128").kind is Kind.WAYBILL
    assert classify("SEAL", rules, "code128").kind is Kind.SEAL
    # ean13 listed: no longer an item, but still needs an order pattern
    assert classify("4006381333931", rules, "ean13").kind is Kind.UNKNOWN
    assert classify("4006381333931", rules, "upca").kind is Kind.ITEM


def test_without_order_patterns_other_symbologies_are_unknown() -> None:
    rules = Rules.from_config(CodesSection(order_symbologies=("qrcode",)))
    assert classify("PO-12", rules, "qrcode").kind is Kind.ORDER
    assert classify("PO-12", rules, "code128").kind is Kind.UNKNOWN
    assert classify("PO-12", rules).kind is Kind.ORDER  # keyboard


@pytest.mark.parametrize(
    ("patterns", "prefixes", "taken"),
    [
        ((r"^\d{12,19}$",), ("69",), True),  # "any long number": every Chinese EAN-13
        ((r"^\d{13}$",), ("00", "01"), True),  # a US UPC-A as its EAN-13 form... or itself
        ((r"^\d{14}$",), ("69",), True),  # a carton's ITF-14
        ((r"^69\d{11}$",), ("69",), True),
        ((r"^PO-\d+$", r"^\d{18}$"), ("69", "978"), False),  # order IDs of other shapes
        ((r"^\d{12,19}$",), (), False),  # product ranges off: nothing to take
    ],
)
def test_an_order_pattern_that_takes_product_codes_is_named(
    patterns: tuple[str, ...], prefixes: tuple[str, ...], taken: bool
) -> None:
    rules = Rules.from_config(CodesSection(order_patterns=patterns, product_prefixes=prefixes))
    found = orders_that_are_products(rules)
    assert bool(found) == taken, found
    for pattern, code in found:
        assert re.search(pattern, code) and product_code(code, prefixes)
        # and so a hand scan of that product is an order, which is why check-config warns
        assert classify(code, rules).kind == Kind.ORDER
