"""Station cards as they are scanned: folded texts, a card's readings, and Code ID prefixes."""

from __future__ import annotations

import contextlib
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Zebra's Code IDs of 2D symbologies: "P0" and a character ("P0Q" GS1 QR, "P0G" GS1
# DataMatrix, "P01" QR, "P00" DataMatrix). Other vendors' Code IDs are one ASCII letter.
ZEBRA_2D_ID = re.compile(r"P0[0-9A-Z]")

# Every Code ID a hand scan may carry before a code, as the classifier strips them: one ASCII
# letter, or Zebra's three characters.
CODE_IDS: tuple[str, ...] = (
    *string.ascii_letters,
    *(f"P0{c}" for c in string.digits + string.ascii_uppercase),
)


def fold(text: str) -> str:
    """``text`` as seal and control cards are compared: case-insensitively and in NFC, so
    "seal", "SEAL" and a decomposed "封箱" all match (order IDs and waybills are kept exactly
    as scanned). Only true one-to-one case pairs fold (S/s, Σ/σ): str.casefold() also maps
    look-alikes such as the long s or the Kelvin sign onto ASCII, and "ſeal" on a label is not
    a seal card."""
    return "".join(map(_fold_char, unicodedata.normalize("NFC", text)))


def _fold_char(ch: str) -> str:
    low = ch.lower()
    return low if len(low) == 1 and low.upper() == ch else ch


def card_readings(card: str) -> set[str]:
    """The folded texts a camera reads off a seal or control card: its own, and, for a card in
    Chinese, what zxing reads off a QR code with the card's text in GBK and no ECI (what
    Chinese label software writes): it guesses ISO-8859-1 or Shift_JIS for bytes that are not
    UTF-8 ("封箱" read "·âÏä", "签退" read "ﾇｩﾍﾋ"), which would otherwise be a new order."""
    readings = {fold(card)}
    try:
        raw = unicodedata.normalize("NFC", card).encode("gb18030")
    except UnicodeEncodeError:
        return readings
    if raw.isascii():
        return readings
    readings.add(fold(raw.decode("latin-1")))
    with contextlib.suppress(UnicodeDecodeError):  # not every GBK text is valid Shift_JIS
        readings.add(fold(raw.decode("shift_jis")))
    return readings


def code_id_splits(text: str) -> list[tuple[str, str]]:
    """The ways a hand scan's ``text`` is a Code ID and a body: (Code ID, body), one ASCII
    letter first, then Zebra's three characters (``ZEBRA_2D_ID``). Empty for none."""
    splits = []
    if len(text) > 1 and text[0] in string.ascii_letters:
        splits.append((text[0], text[1:]))
    if len(text) > 3 and ZEBRA_2D_ID.match(text):
        splits.append((text[:3], text[3:]))
    return splits


@dataclass(frozen=True, slots=True)
class Card:
    """A configured station card: its ``text``, the ``[codes]`` key that lists it and what it
    does (``meaning``: "seal" for a seal card or a ``seal`` control card, else the command)."""

    key: str
    text: str
    meaning: str


def card_conflicts(cards: Iterable[Card]) -> list[str]:
    """Why the configured ``cards`` cannot all be told apart by hand scans, one message a
    pair (empty: they can). Two cards of different meanings clash when they share a reading
    (``card_readings``: a scan of it is one of them, silently), or when one is the other
    behind a Code ID (``code_id_splits``: "AX" and "X"; a scanner sending Code IDs types the
    card "X" as "AX", and with Code IDs off "AX" is typed so too). Cards of one meaning may:
    either does the same."""
    listed = list(cards)
    found: list[str] = []
    for i, a in enumerate(listed):
        for j, b in enumerate(listed):
            if a.meaning == b.meaning:
                continue
            theirs = card_readings(b.text)
            if j < i and card_readings(a.text) & theirs:
                found.append(
                    f"codes.{a.key}: {a.text!r} ({a.meaning}) is also in codes.{b.key} as"
                    f" {b.text!r} ({b.meaning}): a scan of it cannot be both; give one card"
                    " another text"
                )
                continue
            behind = [cid for cid, body in code_id_splits(a.text) if fold(body) in theirs]
            if behind:
                found.append(
                    f"codes.{a.key}: {a.text!r} ({a.meaning}) is the card {b.text!r} of"
                    f" codes.{b.key} ({b.meaning}) behind a scanner's Code ID {behind[0]!r}:"
                    f" a hand scanner sending Code IDs types {b.text!r} as {a.text!r}; give"
                    " one card another text"
                )
    return found
