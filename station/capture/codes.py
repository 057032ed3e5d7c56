"""Pure code hygiene: sanitise, classify, debounce repeats, see cards lying, make safe names."""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from station.capture.cards import CODE_IDS, card_readings, code_id_splits, fold
from station.capture.frames import Box
from station.config import PRODUCT_SYMBOLOGIES, CodesSection, station_cards
from station.errors import RejectedCode


class Kind(StrEnum):
    ORDER = "order"
    WAYBILL = "waybill"
    SEAL = "seal"
    CONTROL = "control"
    ITEM = "item"  # a product code (EAN/UPC): logged, never an order
    OPERATOR = "operator"  # a packer badge: signs its packer in (detail: the packer)
    RETURN = "return"  # a return waybill: the next clip is a return (detail: "return")
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Code:
    """A classified code. ``detail`` is the carrier for waybills, the command for controls
    the symbology for items and the packer's name for operator badges."""

    text: str
    kind: Kind
    detail: str = ""


@dataclass(frozen=True)
class Rules:
    """Compiled classification rules, built once from ``[codes]``."""

    order: tuple[re.Pattern[str], ...]
    order_symbologies: frozenset[str]
    waybill: tuple[tuple[str, re.Pattern[str]], ...]
    seal: frozenset[str]
    control: Mapping[str, str]
    max_length: int
    debounce_s: float
    operator: tuple[re.Pattern[str], ...] = ()
    returns: tuple[re.Pattern[str], ...] = ()
    product_prefixes: tuple[str, ...] = ()
    check_digits_sent: bool = True  # False: hand scans may be product codes without one

    @classmethod
    def from_config(cls, section: CodesSection) -> Rules:
        return cls(
            order=tuple(re.compile(p) for p in section.order_patterns),
            order_symbologies=frozenset(section.order_symbologies),
            waybill=tuple((n, re.compile(p)) for n, p in section.waybill_patterns.items()),
            seal=frozenset(r for s in section.seal_codes for r in card_readings(s)),
            control=MappingProxyType(
                {
                    **{r: "signout" for k in section.signout_codes for r in card_readings(k)},
                    **{r: "return" for k in section.return_codes for r in card_readings(k)},
                    **{r: v for k, v in section.control_codes.items() for r in card_readings(k)},
                }
            ),
            max_length=section.max_length,
            debounce_s=section.debounce_s,
            operator=tuple(re.compile(p) for p in section.operator_patterns),
            returns=tuple(re.compile(p) for p in section.return_patterns),
            product_prefixes=section.product_prefixes,
            check_digits_sent=section.check_digits_sent,
        )


# A GS1 element string's group separator (FNC1 inside a GS1-128, GS1 DataMatrix or GS1 QR:
# ASCII GS, which scanners type as Ctrl+]) as ``sanitize`` keeps it: visible, U+241D.
GS_SHOWN = "\u241d"


def sanitize(raw: str, max_length: int) -> str:
    """Return the scanned text ready to classify, or raise RejectedCode saying why.

    Scanners end a code with CR/LF and sometimes pad it, so surrounding whitespace is dropped.
    Everything else that could not be a printed label is refused rather than repaired: control
    characters (they would corrupt logs and overlays), undecodable bytes, and overlong input.
    Except the group separator of a GS1 element string (a product's GS1 label, an item):
    part of its data, kept as the visible ``GS_SHOWN``.
    """
    if not isinstance(raw, str):
        raise RejectedCode(f"not text: {type(raw).__name__}")
    text = unicodedata.normalize("NFC", raw.strip()).replace("\x1d", GS_SHOWN)
    if not text:
        raise RejectedCode("empty code")
    if len(text) > max_length:
        raise RejectedCode(f"code too long ({len(text)} > {max_length} characters)")
    for ch in text:
        cat = unicodedata.category(ch)
        if ch == "\ufffd" or cat == "Cs":
            raise RejectedCode("code contains undecodable (binary) data")
        if cat in {"Cc", "Cf", "Co", "Cn", "Zl", "Zp"}:
            raise RejectedCode(f"code contains a control or unassigned character U+{ord(ch):04X}")
    return text


# An AIM symbology identifier: "]", the symbology's letter, a modifier (]C0 Code 128, ]C1
# GS1-128, ]E0 EAN-13/UPC-A, ]E4 EAN-8, ]I1 ITF-14, ]A0 Code 39, ]Q1 QR, ]d2 GS1 DataMatrix).
_SYMBOLOGY_ID = re.compile(r"\][A-Za-z][0-9A-Za-z]")


def strip_symbology_id(text: str) -> str:
    """A hand scan's sanitised text without the AIM symbology identifier a scanner may be set
    to send before each code (its transmission, not the label's text: with it an EAN-13 or
    the seal card was a new order); raises RejectedCode when nothing else was scanned.
    Camera reads never carry one."""
    m = _SYMBOLOGY_ID.match(text)
    if m is None:
        return text
    rest = text[m.end() :].strip()
    if not rest:
        raise RejectedCode(f"empty code after the symbology identifier {text!r}")
    return rest


def classify(text: str, rules: Rules, symbology: str = "") -> Code:
    """Classify sanitised text. Order of precedence: seal, control, operator badge, return
    waybill, order pattern, product code, web address, waybill.

    Explicit order patterns beat the carrier heuristics because a warehouse that configured them
    knows its own IDs; with no order patterns every other code is taken as an order ID.

    ``symbology`` is given for camera reads only. A product code (EAN/UPC) whose symbology is
    not among ``order_symbologies`` is an item before anything else: every product at the
    table carries one, and it must never start or end a clip. Other camera reads can be
    orders only in an order symbology (else they are unknown, logged and ignored). Without a
    symbology (a keyboard-wedge scanner) the text alone decides: a product code of
    ``product_prefixes`` (``product_code``: an EAN-13, its carton's ITF-14 or GS1 label;
    unless an order pattern matches it) is an item too, from either source (a GS1-128 label
    is a Code 128 to the camera); by hand also behind a scanner's Code ID letter, or sent
    without its check digit when ``check_digits_sent`` is off (``hand_product``). So is a
    web address (the QR code on a product's box). A text with a GS1 group separator
    (``GS_SHOWN``) is never an order: an item or unknown.

    A hand scan that matches no pattern but would with its ASCII letters in the other case
    is that code, typed with Caps Lock on, and gets its printed text: a scanner compensating
    for the host's Caps Lock types "sf1..." for the waybill "SF1...". Only then: a code that
    matches as typed (two IDs a format allows in both cases) is kept as typed, and a code
    that matches nothing either way is an order as typed.

    A hand scan that is a seal or control card behind a scanner's Code ID ("jSEAL",
    ``_cards_behind_code_id``) is that card, with its printed text; unless it matches a
    pattern as typed (an order ID "JSEAL" of ``order_patterns``) or is two cards so: then
    it is unknown, a misread that neither starts nor ends a clip. Likewise a hand scan of a
    card whose own text is a Code ID and a code the patterns and product ranges take ("END"
    where an order pattern takes "ND") or another card of another meaning ("AX", "X"): a
    scanner sending Code IDs types that code so (``card_clashes`` and the config say which
    cards clash).
    """
    if symbology in PRODUCT_SYMBOLOGIES and symbology not in rules.order_symbologies:
        return Code(text, Kind.ITEM, symbology)
    order_ok = not symbology or symbology in rules.order_symbologies
    hand = not symbology
    card = _card(text, rules)
    if card is not None:
        # By hand, a card that is also a Code ID and another code ("END": "E" and the order
        # ID "ND"; "AX": "A" and the card "X" of another meaning) is that code as a scanner
        # sending Code IDs types it: nothing tells which, a misread (card_clashes says so).
        if hand and any(
            recognised(body, rules) is not None
            or ((other := _card(body, rules)) is not None and _meaning(other) != _meaning(card))
            for _cid, body in code_id_splits(text)
        ):
            return Code(text, Kind.UNKNOWN)
        return card
    code = _match(text, rules, order_ok, hand)
    if code is None and hand:
        inverted = text.translate(_CAPS_LOCK)
        code = _match(inverted, rules, order_ok, hand) if inverted != text else None
    cards = _cards_behind_code_id(text, rules) if hand else set()
    if cards:
        # A station card behind a scanner's Code ID ("jSEAL"): the card, with its printed
        # text. Unless the text is something else as typed (an order ID of a pattern: "JSEAL"
        # where five capitals are one), two cards, or a code behind another Code ID ("P01X":
        # the card "X" behind Zebra's "P01", or an order ID "01X" behind "P"): a misread
        # either way, never an order.
        if code is None and len(cards) == 1 and not _code_behind_code_id(text, rules):
            return cards.pop()
        return Code(text, Kind.UNKNOWN)
    if code is not None:
        return code
    if rules.order or not order_ok or GS_SHOWN in text:
        # (a group separator is a GS1 element string's: no order sheet prints one)
        return Code(text, Kind.UNKNOWN)
    return Code(text, Kind.ORDER)


def _code_behind_code_id(text: str, rules: Rules) -> tuple[str, str, Code] | None:
    """The first (Code ID, body, code) where a hand scan's ``text`` is a Code ID and a code
    the patterns and product ranges take (``recognised``) that is no card; None for none."""
    for cid, body in code_id_splits(text):
        code = recognised(body, rules) if _card(body, rules) is None else None
        if code is not None:
            return cid, body, code
    return None


def _card(text: str, rules: Rules) -> Code | None:
    """The seal or control card ``text`` is (folded, ``cards.fold``), None for none."""
    folded = fold(text)
    if folded in rules.seal:
        return Code(text, Kind.SEAL)
    if folded in rules.control:
        return Code(text, Kind.CONTROL, rules.control[folded])
    return None


def _meaning(card: Code) -> str:
    """What a card does: "seal" for a seal card or a seal control card, else its command."""
    return "seal" if card.kind is Kind.SEAL else card.detail


def _cards_behind_code_id(text: str, rules: Rules) -> set[Code]:
    """The seal and control cards a hand scan's ``text`` is behind a vendor's Code ID (one
    ASCII letter, or Zebra's "P0" and a character for a 2D symbology; ``hand_product``):
    "jSEAL" (Honeywell's Code 128), "P01封箱" (Zebra's QR). Empty for none. Only a whole
    card behind one counts: a card's text is the station's own, compared whole, so an order
    ID that merely starts with a Code ID's letter ("A1001", "P01234567") is none."""
    return {card for _cid, body in code_id_splits(text) if (card := _card(body, rules))}


_CAPS_LOCK = str.maketrans(
    string.ascii_lowercase + string.ascii_uppercase, string.ascii_uppercase + string.ascii_lowercase
)


def _match(text: str, rules: Rules, order_ok: bool, hand: bool) -> Code | None:
    """What ``text`` is by the patterns, product ranges and web addresses of ``classify``
    (after the cards), None when nothing says. ``hand``: a keyboard-wedge scan."""
    if order_ok:
        # Badges and return labels are read like orders: the camera takes them only from an
        # order symbology (and confirmed, station/capture/confirm.py), never from a product code.
        for pattern in rules.operator:
            m = pattern.search(text)
            if m and text[m.end() :].strip():
                return Code(text, Kind.OPERATOR, text[m.end() :].strip())
        if any(p.search(text) for p in rules.returns):
            return Code(text, Kind.RETURN, "return")
    if order_ok and any(p.search(text) for p in rules.order):
        return Code(text, Kind.ORDER)
    product = hand_product(text, rules) if hand else product_code(text, rules.product_prefixes)
    if product:
        return Code(text, Kind.ITEM, product)
    if is_web_address(text):
        return Code(text, Kind.ITEM, "url")
    for carrier, pattern in rules.waybill:
        if pattern.search(text):
            return Code(text, Kind.WAYBILL, carrier)
    return None


def hand_product(text: str, rules: Rules) -> str:
    """What product code a hand scan's ``text`` is ("" for none): ``product_code`` of it, or
    of it without one leading ASCII letter, a vendor's Code ID (Honeywell's "d" EAN-13, "c"
    UPC-A, "j" Code 128, "I" GS1-128, Zebra's "A" UPC/EAN, "D" Code 128...) that a scanner can
    be set to send before each code, as it can an AIM identifier (``strip_symbology_id``).
    Not stripped as that is: an order ID may start with a letter, and only a product's
    valid check digit and listed prefix behind it tell a Code ID (an order ID so shaped is
    one in ten by chance; ``order_patterns`` still win). Zebra's Code IDs of 2D symbologies
    have three characters ("P0Q" GS1 QR, "P0G" GS1 DataMatrix, "P01" QR, "P00" DataMatrix).
    With ``check_digits_sent`` off, also such a product code sent shortened
    (``shortened_product``)."""
    for body in [text, *(body for _cid, body in code_id_splits(text))]:
        found = product_code(body, rules.product_prefixes)
        if not found and not rules.check_digits_sent:
            found = shortened_product(body, rules.product_prefixes)
        if found:
            return found
    return ""


def shortened_product(text: str, prefixes: tuple[str, ...]) -> str:
    """What product code ``text`` is when a scanner sent it without its check digit or (a
    UPC-A) its number system digit ("" for none): "ean13" (12 digits starting with a listed
    prefix), "upca" (11 digits: "0" + them starts with one; or "00" + them is a valid EAN-13
    of one, the number system dropped), "ean8" (7 digits starting with one; not 0 or 1:
    those are in-store codes and UPC-Es). No check digit tells them from other numbers: only
    for a scanner configured so (``[codes] check_digits_sent = false``)."""
    if not prefixes or not text.isascii() or not text.isdigit():
        return ""
    listed = tuple(prefixes)
    if len(text) == 12 and text.startswith(listed):
        return "ean13"
    if len(text) == 11 and (("0" + text).startswith(listed) or _gtin_ok("00" + text, prefixes)):
        return "upca"
    if len(text) == 7 and text[0] not in "01" and text.startswith(listed):
        return "ean8"
    return ""


def product_code(text: str, prefixes: tuple[str, ...]) -> str:
    """What product code ``text`` is ("" for none): a GTIN with a valid check digit whose
    EAN-13 form starts with one of the GS1 ``prefixes``, as the goods and their cartons carry
    it. "ean13" (13 digits), "upca" (12 digits: the EAN-13 is "0" + them), "itf14" (a
    carton's 14 digits: an indicator 0-8, then the item's EAN-13 without its check digit,
    then a check digit), "ean8" (8 digits, the listed prefix first), "upce" (8 digits as a
    scanner types a UPC-E: its UPC-A's EAN-13 form is tested), "gs1" (a GS1-128, GS1
    DataMatrix or GS1 QR element string: AI 01 or 02 and such a GTIN-14, or a variable-measure
    one (indicator 9), then maybe more AIs; or AI 00 and a carton's SSCC of that company).
    An EAN-13 or UPC-A of a book, a periodical or US goods followed by its 2- or 5-digit
    add-on (``_ADD_ON``) is the EAN-13 or UPC-A it extends.

    A GS1 element string may come in its human-readable form, as label software encodes it
    or a scanner sends it ("(01)06901234567892(10)ABC", AIs in any order), or with its group
    separators (``GS_SHOWN``, after a variable-length AI): any of its elements, also one
    after fixed-length ones ("17271231" + "0106901234567892"), can be the product's.

    Both tests matter: one number in ten has a valid check digit by chance (a waybill, an
    order ID), so only the product ranges count."""
    if not prefixes:
        return ""
    if text.startswith("(") or GS_SHOWN in text:
        return "gs1" if _gs1_product(text, prefixes) else ""
    if not text.isascii() or not text[:2].isdigit():
        return ""
    digits = text if text.isdigit() else ""
    if len(digits) == 13 and _gtin_ok(digits, prefixes):
        return "ean13"
    if len(digits) == 12 and _gtin_ok("0" + digits, prefixes):
        return "upca"
    if len(digits) == 14 and digits[0] != "9" and _gtin_ok(digits, prefixes):
        return "itf14"
    if len(digits) == 8 and digits[0] in "01":
        # How scanners type a UPC-E (number system 0 or 1): its check digit is that of the
        # UPC-A it stands for. EAN-8s starting with 0 are in-store codes (restricted
        # circulation); the ones of the listed ranges (69...) start otherwise.
        return "upce" if _gtin_ok("0" + _upca_of_upce(digits), prefixes) else ""
    if len(digits) == 8 and digits.startswith(tuple(prefixes)) and _check_ok(digits):
        return "ean8"
    # (A GTIN-14 with indicator 9 is a variable-measure item, goods sold by weight: no carton
    # (its bare 14 digits above), but behind AI 01 a product all the same. AI 02 is the GTIN
    # of the goods in a carton, on the line of its logistic label below the SSCC.)
    if len(text) >= 16 and _gs1_product(text, prefixes):
        return "gs1"
    add_on = _ADD_ON.fullmatch(text)
    if add_on and add_on[1].zfill(13).startswith(_ADD_ON_PREFIXES):
        return product_code(add_on[1], prefixes)
    return ""


# GS1 element strings: a human-readable one's "(AI)value" parts; the total length (AI and
# value) of the AIs of predefined length, which need no separator after them (GS1 General
# Specifications, 7.8.5: 00, 01-04, 11-20, 31-36, 41).
_HRI = re.compile(r"(?:\(\d{2,4}\)[^()]*)+")
_HRI_PART = re.compile(r"\((\d{2,4})\)([^()]*)")
_FIXED = {"00": 20, "01": 16, "02": 16, "03": 16, "04": 18, "20": 4, "41": 16}
_FIXED |= {str(ai): 8 for ai in range(11, 20)} | {str(ai): 10 for ai in range(31, 37)}


def _gs1_product(text: str, prefixes: tuple[str, ...]) -> bool:
    """Whether an element of the GS1 element string ``text`` (human-readable, with group
    separators, or plain) is a GTIN (AI 01, 02) or an SSCC (AI 00) of a listed prefix."""
    if text.startswith("("):
        if _HRI.fullmatch(text) is None:
            return False
        parts = [ai + value.strip() for ai, value in _HRI_PART.findall(text)]
    else:
        parts = [p for p in text.split(GS_SHOWN) if p]
    for part in parts:
        # Each part begins with an AI; fixed-length ones may follow each other in it.
        while part.isascii() and part[:2].isdigit():
            if len(part) >= 16 and part.startswith(("01", "02")) and _gtin_ok(part[2:16], prefixes):
                return True
            if len(part) >= 20 and part.startswith("00") and _gtin_ok(part[2:20], prefixes):
                return True
            size = _FIXED.get(part[:2])
            if size is None or len(part) <= size:
                break
            part = part[size:]
    return False


# A price or issue add-on (2 or 5 digits) after an EAN-13 or a UPC-A, as handheld scanners
# type it: joined (ISO/IEC 15420; zxing reads it so too) or after a separator they may be set
# to send. GS1 allows add-ons on periodicals (977), books and sheet music (978, 979) and UPC-A
# (EAN-13 form 0...) only: an 18-digit order ID that starts with 69 stays an order.
_ADD_ON = re.compile(r"(\d{12,13})[ -]?(?:\d{2}|\d{5})")
_ADD_ON_PREFIXES = ("977", "978", "979", "0")


def orders_that_are_products(rules: Rules) -> list[tuple[str, str]]:
    """The order patterns that take product codes of ``product_prefixes`` for orders, each with
    one such code it matches: (pattern, code). An order pattern wins over the product ranges,
    so a product scanned by hand that matches one starts an order's clip (``packcam
    check-config`` warns). Pure: tried on made-up GTINs of each prefix (EAN-13, its UPC-A,
    its carton's ITF-14)."""
    samples: list[str] = []
    for prefix in rules.product_prefixes:
        for body in ("0000000000000", "1234567890123", "9876543210987"):
            ean = (prefix + body)[:12]
            ean += _check_digit(ean)
            samples.append(ean)
            if ean.startswith("0"):
                samples.append(ean[1:])  # its UPC-A
            carton = "1" + ean[:12]
            samples.append(carton + _check_digit(carton))
            samples.append("d" + ean)  # behind a Code ID letter (Honeywell's EAN-13)
            if not rules.check_digits_sent:
                samples.append(ean[:12])
                if ean.startswith("0"):
                    samples.append(ean[1:12])
        if not rules.check_digits_sent and prefix[:1] not in "01":
            samples.append((prefix + "12345")[:7])
    found: list[tuple[str, str]] = []
    for pattern in rules.order:
        hit = next(
            (c for c in samples if pattern.search(c) and hand_product(c, rules)),
            None,
        )
        if hit is not None:
            found.append((pattern.pattern, hit))
    return found


# A card this short ("X", "OK", "END") is the tail of order IDs a letter longer ("AX", "AOK"):
# with no order_patterns every code is an order ID, and one that is a Code ID and the card is
# taken for the card by hand (``card_clashes``). A longer card ("SEAL", "STOP") is a word no
# order ID ends in after one letter ("jSEAL" as an order ID).
SHORT_CARD = 3


def card_clashes(section: CodesSection) -> list[str]:
    """What hand scans of the station cards ``section`` configures cannot tell apart from other
    codes (``packcam check-config`` warns, the station logs it at start): one warning a card
    at most, naming it, the config key, the code and what the classifier does. Pure: tried on
    each card's printed text behind every Code ID (``CODE_IDS``) and split at every Code ID
    it begins with (``code_id_splits``). Two cards that clash are refused by the config
    itself (``cards.card_conflicts``); camera reads carry no Code ID and are the card.

    * A card that is a Code ID and a code the rules recognise ("END" = "E" + an order ID "ND"
      of ``order_patterns``, a waybill, a badge, a product): refused by hand (``classify``).
    * A card behind a Code ID that is a code as typed ("JSEAL" where five capitals are an
      order ID): refused by hand, and so is that order ID.
    * A card whose own text the rules also recognise (an order ID "SEAL" of ``^[A-Z]{4}$``):
      the card wins, so that order's sheet scanned would seal or sign out.
    * A card of at most ``SHORT_CARD`` ASCII characters with no ``order_patterns``: an order
      ID that is a Code ID and the card ("AX") is taken for the card by hand."""
    rules = Rules.from_config(section)
    found: list[str] = []
    for card in station_cards(section):
        where = f"codes.{card.key}: {card.text!r} ({card.meaning})"
        inside = [
            (cid, body, other)
            for cid, body in code_id_splits(card.text)
            if (other := recognised(body, rules)) is not None
        ]
        if inside:
            cid, body, other = inside[0]
            found.append(
                f"{where} is {body!r} behind a scanner's Code ID {cid!r}, and {body!r} is"
                f" {_what(other, rules)}: a hand scanner sending Code IDs types that code as"
                f" {card.text!r}, so a hand scan of the card is refused as a misread (the"
                " camera's read of it is the card); give the card another text"
            )
            continue
        refused = [
            (cid + card.text, why)
            for cid in CODE_IDS
            if fold(cid + card.text) not in rules.seal
            and fold(cid + card.text) not in rules.control
            and classify(cid + card.text, rules).kind is Kind.UNKNOWN
            and (why := _why_refused(cid + card.text, rules))
        ]
        if refused:
            scan, why = refused[0]
            more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
            found.append(
                f"{where} behind a scanner's Code ID ({scan!r}{more}) is also {why}, so a"
                " hand scan of the card with Code IDs on is refused as a misread (and so is"
                " that code); turn the scanner's Code IDs off or give the card another text"
            )
            continue
        if (other := recognised(card.text, rules)) is not None:
            found.append(
                f"{where} is also {_what(other, rules)}: a scan of {card.text!r} is taken for"
                " the card; give the card another text or narrow the pattern"
            )
            continue
        if not rules.order and len(card.text) <= SHORT_CARD and card.text.isascii():
            # (a hand scanner types no Chinese card: "封箱" is for the camera, hardware.md)
            found.append(
                f"{where} is short and codes.order_patterns is empty: an order ID that is a"
                f" Code ID and the card ({'A' + card.text!r}, {'P01' + card.text!r}) scanned by"
                " hand is taken for the card; set order_patterns to your order IDs or give"
                " the card a longer text"
            )
    return found


def recognised(text: str, rules: Rules) -> Code | None:
    """What a hand scan of ``text`` is by the patterns and product ranges (as typed, or with
    Caps Lock on: ``classify``), None when nothing says (with no ``order_patterns``, an order
    only because nothing else is)."""
    code = _match(text, rules, True, True)
    inverted = text.translate(_CAPS_LOCK)
    if code is None and inverted != text:
        code = _match(inverted, rules, True, True)
    return code


def _why_refused(scan: str, rules: Rules) -> str:
    """Why ``classify`` refuses the hand scan ``scan``, a card behind a Code ID."""
    other = recognised(scan, rules)
    if other is not None:
        return _what(other, rules)
    if (behind := _code_behind_code_id(scan, rules)) is not None:
        cid, body, code = behind
        return f"{body!r} behind the Code ID {cid!r}, {_what(code, rules)}"
    cards = sorted(c.text for c in _cards_behind_code_id(scan, rules))
    return "the cards " + " and ".join(map(repr, cards)) + " behind two Code IDs"


def _what(code: Code, rules: Rules) -> str:
    """What rule makes ``code`` what it is, in words: "an order ID of codes.order_patterns
    '^PO\\d{8}$'" and the like."""
    text = code.text
    if code.kind is Kind.ORDER:
        (pattern, *_) = [p.pattern for p in rules.order if p.search(text)] or [""]
        return f"an order ID of codes.order_patterns {pattern!r}"
    if code.kind is Kind.WAYBILL:
        return f"a waybill of codes.waybill_patterns.{code.detail}"
    if code.kind is Kind.OPERATOR:
        return "a packer's badge of codes.operator_patterns"
    if code.kind is Kind.RETURN:
        return "a return label of codes.return_patterns"
    return f"a product code ({code.detail}) of codes.product_prefixes"


def numbers_taken_for_products(rules: Rules) -> list[str]:
    """With ``check_digits_sent`` off and no ``order_patterns``, a 12-digit number that starts
    with a product prefix (and 11 or 7 digits likewise) scanned by hand is an item, also an
    order ID so shaped: one such number of each 12-digit form (``packcam check-config``
    warns). Empty when either setting rules it out."""
    if rules.check_digits_sent or rules.order:
        return []
    return [(p + "0" * 12)[:12] for p in rules.product_prefixes]


def _check_digit(digits: str) -> str:
    """The GS1 check digit to append to ``digits``."""
    weighted = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - weighted % 10) % 10)


def _gtin_ok(digits: str, prefixes: tuple[str, ...]) -> bool:
    """A GTIN-13 or -14 (or an SSCC) with a valid GS1 check digit, of a listed prefix: the
    13-digit form's prefix (a GTIN-14's and an SSCC's first digit is an indicator)."""
    if len(digits) not in (13, 14, 18) or not digits.isdigit():
        return False
    if not (digits if len(digits) == 13 else digits[1:]).startswith(tuple(prefixes)):
        return False
    return _check_ok(digits)


def _check_ok(digits: str) -> bool:
    """Whether the last of ``digits`` is their GS1 check digit (any GTIN's length)."""
    return _check_digit(digits[:-1]) == digits[-1]


def _upca_of_upce(upce: str) -> str:
    """The 12-digit UPC-A an 8-digit UPC-E (number system, six digits, check) stands for."""
    ns, d, check = upce[0], upce[1:7], upce[7]
    last = d[5]
    if last in "012":
        body = d[:2] + last + "0000" + d[2:5]
    elif last == "3":
        body = d[:3] + "00000" + d[3:5]
    elif last == "4":
        body = d[:4] + "00000" + d[4]
    else:
        body = d[:5] + "0000" + last
    return ns + body + check


# A scheme and "://" anywhere (a QR bookmark escapes it as "http\\://"), or a bare "www." host.
_WEB_ADDRESS = re.compile(r"[A-Za-z]\\?://|(?:^|[^A-Za-z0-9])www\.", re.IGNORECASE)


def is_web_address(text: str) -> bool:
    """Whether ``text`` holds a web address: what most QR codes on goods carry (a brand's
    page, a WeChat link, a GS1 Digital Link), and what no order sheet prints unless the
    warehouse's ``order_patterns`` say so."""
    return _WEB_ADDRESS.search(text) is not None


@dataclass(frozen=True)
class Debounce:
    """When each code was last seen (camera timeline). Immutable; ``seen`` returns a new one."""

    last: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def seen(self, text: str, t: float, window: float) -> tuple[bool, Debounce]:
        """Return (is_new_scan, new_state).

        The window slides: a label lying in view is decoded again and again, and must count as
        one scan for as long as it stays there, so every sighting refreshes its time. A code
        seen again only after ``window`` seconds without a sighting is a new scan.

        A sighting up to ``window`` seconds *before* the last one is the same scan too: the
        sources reach the station out of order (a camera read arrives only after its decode,
        behind a keyboard scan of the same label stamped a moment later). Only a jump back by
        more than ``window`` (a new timeline) makes it a new scan.
        """
        prev = self.last.get(text)
        is_new = prev is None or abs(t - prev) > window
        # Forget codes not seen for a long time so the map stays small over months of uptime.
        horizon = t - max(window, 1.0) * 4
        kept = {k: v for k, v in self.last.items() if v >= horizon}
        kept[text] = t if is_new or prev is None else max(t, prev)
        return is_new, Debounce(MappingProxyType(kept))


# Seal and control cards: station cards a packer shows to the camera and may put down in view.
CARD_KINDS = frozenset({Kind.SEAL, Kind.CONTROL})

# What may lie in view and be seen again where it lay, a sighting that does nothing: the cards,
# and a returned parcel's label (its parcel lies at the table while it is unboxed; seen again,
# it made the clip after the return one too). Not badges: one put back at a fixed sign-in spot
# would be ignored, and, with require_packer, the next clip refused.
LYING_KINDS = CARD_KINDS | {Kind.RETURN}

# How long a return label's place is kept unread (``Lying.forget_s``): its parcel is unboxed
# within it. Each return has its own label, so they would add up over months; the few station
# cards are kept for good (one covered for hours and seen again must still seal nothing).
LABEL_MEMORY_S = 3600.0

# A card the camera read unmoved at one place for this long was put down there. One held up
# to the camera is read and confirmed in a fraction of a second, but a careful packer holds
# it still until the beep and a moment more, at the same spot for every order: 3 s must stay
# a gesture (tests/test_camera_reads.py). A card put down lies there while the next order is
# scanned and its box fetched, mostly far longer (in one sighting: showings at one spot, order
# after order, never add up to it). One covered sooner is lying where it stayed when seen
# there again within this long, or after the open order began to be recorded, or at any time
# where it was put down from a showing or that is no nearer than its farthest read
# (``Lying.seen``); a card is not shown again at the very spot so soon, nor was it in view
# unmoved while the order was packed, nor is it shown at the table.
LYING_S = 5.0

# A read this much larger (its box's longer side) than the place where the card lay is nearer
# the camera: held up, a third of the camera's height above the table or more (20-35 cm under
# a camera 60-100 cm up; held up to be read it is nearer still). A card pushed along the table
# keeps its size, but turned by 45 degrees its box grows by 1.41 and it looks a little larger
# nearer the middle of the view: less than this would take a card a parcel pushed and turned
# for one picked up. A card held up lower is a sighting only after the debounce, as before.
HELD_UP = 1.5


def same_place(a: Box, b: Box) -> bool:
    """Whether two reads' boxes are one place: every edge within an eighth of the larger
    side. A code lying still is read within a pixel or two; one held up again lands elsewhere
    (and nearer the camera: larger)."""
    tol = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1]) / 8
    return all(abs(p - q) <= tol for p, q in zip(a, b, strict=True))


def _nearer(a: Box, b: Box) -> bool:
    """Whether a read at ``a`` is of a card held up from ``b``: elsewhere and larger."""
    side = max(a[2] - a[0], a[3] - a[1])
    return side >= HELD_UP * max(b[2] - b[0], b[3] - b[1]) and not same_place(a, b)


def _larger(a: Box, b: Box) -> Box:
    """The nearer of two reads: the one with the longer side (``a`` when equal)."""
    return b if max(b[2] - b[0], b[3] - b[1]) > max(a[2] - a[0], a[3] - a[1]) else a


def _smaller(a: Box, b: Box) -> Box:
    """The farther of two reads: the one with the shorter longest side (``a`` when equal)."""
    return b if max(b[2] - b[0], b[3] - b[1]) < max(a[2] - a[0], a[3] - a[1]) else a


def _stayed(t: float, last: float, clip_began: float | None) -> bool:
    """Whether a card last read where it stayed at ``last`` and read there again at ``t`` lay
    there: covered for a moment, or in view while the clip open since ``clip_began`` ran."""
    return t - last < LYING_S or (clip_began is not None and last >= clip_began)


class Sight(StrEnum):
    """What a camera read of a card is, by where it was read (``Lying.seen``)."""

    LYING = "lying"  # where it last lay: seen again after something covered it
    HELD_UP = "held up"  # picked up from where it lay and held still nearer the camera
    OTHER = ""


@dataclass(frozen=True, slots=True)
class _Place:
    at: Box  # where the last reads saw it, unmoved
    since: float  # read there since, in one sighting
    last: float  # last read there
    lay: Box | None  # the last place it lay unmoved for LYING_S or more
    up: bool = False  # held up from there (Sight.HELD_UP) since last read at the table
    # The last place it stayed (read there twice or more in a row) and its last read there: a
    # parcel sliding over the card is read once elsewhere on its way
    stay: tuple[Box, float] | None = None
    # The nearest read (longest side) since the debounce last took a read as a new sighting
    peak: Box | None = None
    # Whether it was put down where it stayed: lowered there from nearer in one sighting
    put: bool = False
    # Its farthest read (shortest side) in this timeline: the card at the table, when it was
    # ever read there; a place nearer than that (HELD_UP) is one it was held up at
    low: Box | None = None


@dataclass(frozen=True)
class Lying:
    """Where each code was last seen lying still, from camera reads and their boxes (camera
    timeline). Immutable; ``seen`` returns a new one. Fed every read of a card, also those the
    debounce swallows: a card put down in view is read on and on, one scan."""

    places: Mapping[str, _Place] = field(default_factory=lambda: MappingProxyType({}))
    forget_s: float | None = None  # codes not read for this long are forgotten (None: never)

    def seen(
        self, text: str, t: float, box: Box, new: bool = False, clip_began: float | None = None
    ) -> tuple[Sight, Lying]:
        """Return (sight, new_state). ``Sight.LYING`` when ``box`` is the place where the code
        last lay unmoved for ``LYING_S`` or more, i.e. it was put down there, and is seen there
        again (after something covered it, if this read starts a new sighting).

        ``Sight.HELD_UP`` for the second read in a row at one place nearer the camera than
        where it lay (``HELD_UP``), the first since it was read at the table: the card picked
        up and shown, a new sighting even within the debounce (it was read on and on where it
        lay). Once per showing; a single read there (a card or a parcel carried through) is
        not, nor one after a read the debounce took as ``new`` already (that was the showing).

        ``new``: the debounce takes this read as a new sighting. A stay at one place is one
        sighting: a card held up at the same spot for every order is not lying there because
        its showings add up to ``LYING_S`` (from the third order on it sealed nothing).

        A new sighting where the code last stayed (read there twice or more in a row) is
        ``Sight.LYING`` too, though it never lay there ``LYING_S``, when its last read there
        was less than ``LYING_S`` before (covered for a moment: a card is not shown again so
        soon, nor at the very spot) or after the open order began to be recorded
        (``clip_began``, its first clip: it was in view, unmoved, while that order was packed;
        a card shown at one spot for every order was last read there before that order's
        scan). So is one there however long after, when it was put down there: lowered
        there from a read nearer the camera (``HELD_UP``) in one sighting (a card shown, then
        laid on the table, and covered before it lay there ``LYING_S``; shown at one spot for
        every order, each stay starts a sighting of its own). So is one there however long
        after when that place is not ``HELD_UP`` nearer than the code's farthest read (its
        shortest box) in this timeline: nothing tells it from a place at the table (a card
        put down from out of view, never shown, covered before it lay there ``LYING_S`` and
        uncovered in the next order's clip sealed that order mid-packing). A card shown at one
        spot for every order is shown each time once it was read at the table; never read
        farther away, only its first showing there acts (a missed seal, not a false one). The
        stays still do not add up: only lying unmoved for ``LYING_S`` makes a place its lay.

        That place is kept when the card is then read elsewhere (a parcel sliding over it,
        the card picked up): only lying unmoved at another place replaces it. A timeline
        going back (a new camera session) starts afresh."""
        prev = self.places.get(text)
        if prev is not None and t < prev.last:
            prev = None
        lay = prev.lay if prev is not None else None
        stay = prev.stay if prev is not None else None
        sight = Sight.LYING if lay is not None and same_place(box, lay) else Sight.OTHER
        low = prev.low if prev is not None else None
        if (
            new
            and stay is not None
            and same_place(box, stay[0])
            and (
                (prev is not None and prev.put)
                or _stayed(t, stay[1], clip_began)
                # never read farther from the camera than there: not known to be held up
                or low is None
                or not _nearer(stay[0], low)
            )
        ):
            sight = Sight.LYING  # uncovered where it stayed: not shown
        low = box if low is None else _smaller(low, box)
        peak = box if new or prev is None or prev.peak is None else _larger(prev.peak, box)
        if prev is not None and same_place(box, prev.at) and not new:
            # Stays there: put down, if lowered there from a read nearer in this sighting (a
            # card shown, then laid on the table), or where it was put down before.
            put = (prev.stay is not None and same_place(prev.at, prev.stay[0]) and prev.put) or (
                prev.peak is not None and _nearer(prev.peak, prev.at)
            )
            place = replace(prev, last=t, stay=(prev.at, t), peak=peak, put=put, low=low)
        else:
            up = prev.up if prev is not None else False
            put = prev.put if prev is not None else False
            place = _Place(box, t, t, lay, up, stay, peak, put, low)
        if lay is not None and not _nearer(box, lay):
            place = replace(place, up=False)  # at the table again
        elif lay is not None and not place.up and (new or place.since < t):
            place = replace(place, up=True)
            sight = Sight.OTHER if new else Sight.HELD_UP
        if place.last - place.since >= LYING_S:
            place = replace(place, lay=place.at, up=False)
        kept = self.places
        if self.forget_s is not None:
            kept = {k: v for k, v in kept.items() if v.last >= t - self.forget_s}
        return sight, Lying(MappingProxyType({**kept, text: place}), self.forget_s)


_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_component(text: str, max_len: int = 48) -> str:
    """A file-name component made from scanned text: ASCII letters, digits, '-' and '_' only.

    A code never reaches the file system as-is. When anything had to be replaced or cut, a short
    hash of the original is appended so two different codes can never map to the same name.
    """
    cleaned = _SAFE.sub("_", text).strip("_")[:max_len] or "code"
    if cleaned != text:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
        cleaned = f"{cleaned}~{digest}"
    return cleaned
