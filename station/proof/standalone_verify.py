#!/usr/bin/env python3
"""A stranger's verifier for packcam evidence bundles (verify.py): Python stdlib + openssl only.

Usage:  python3 verify.py BUNDLE.zip --ca COMPANY-CA.pem|SHA256 --tsa-ca TSA-ROOT.pem|SHA256
                          [--witness STATION.json]   (saved from <site>/witness/<station>
                                                      ?tree_size=N: the bundle's size)
                          [--witness-key SHA256|PEM] (the witness key you trust)

It imports nothing from packcam, so you can read all of it before you run it. Run a copy you
hold (from the packcam project, or one you checked before), not the one inside the bundle you
check: that one is the seller's, like everything in the bundle, and may say anything; this
script names a bundle copy that is not byte for byte itself (bundle-verifier-differs). It checks
every member's SHA-256 against the bundle manifest the station signed, the Ed25519 signatures
(openssl pkeyutl) and that each signed document names the key that signed it, each clip
manifest is in the canonical form that was signed and describes its own clip, the station
certificate against the company CA *you* pin (openssl verify) and that every manifest,
checkpoint, rotation statement and the bundle manifest names the station it certifies,
the RFC 3161 tokens (openssl ts -verify: over this data, signed by a timestamping certificate,
anchored when it chains to the TSA root *you* pin) and their time against each clip's
recorded end (before it beyond --max-delay fails, after it is time-late: it existed by then,
its time not anchored), each clip's start statement and its tokens against its recorded
start (a start timestamped when the clip began, or only the station's word:
start-unanchored), each clip's
recorded start, end and duration against one another,
and the RFC 9162 Merkle inclusion and consistency proofs, and the duration against how long
the clip plays (read from its MP4 boxes, as `packcam verify` reads a bundle's clip). It decodes no
pictures: unlike `packcam verify` it cannot hold the key frames to the clip's pictures, nor
tell how a changed clip was changed (cut, remuxed, re-encoded): each is clip-altered here.
Certificates that came inside the bundle are never trusted by themselves.

Exit status: 0 AUTHENTIC, 1 NOT AUTHENTIC (a check failed), 4 INTACT BUT NOT ANCHORED (nothing
altered, but you pinned no company CA or TSA root that vouches for it), 5 AUTHENTIC FOR SOME
OF THE ORDER'S CLIPS (a partial bundle: the others were deleted by the station's retention, by
its signed record), 2 usage error, 3 a file you passed cannot be used: a --witness file that
is not one the witness signed (fetch it again), or a --ca / --tsa-ca / --witness-key file that
cannot be read (no verdict on the bundle).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import heapq
import io
import json
import re
import struct
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import quote

OK, FAIL, WARN = "OK", "FAIL", "WARN"
MAX_DELAY_MIN = 15.0
# how far past the verifier's clock a retention deletion record may be dated: two clocks
# disagree, a station's never by a day; a later date is one no honest station signed
DELETION_CLOCK_ALLOWANCE = timedelta(days=1)
DOCUMENT_SIGNING = "1.3.6.1.5.5.7.3.36"  # id-kp-documentSigning (RFC 9336)
MANIFEST, MANIFEST_SIG = "bundle/manifest.json", "bundle/manifest.sig"
MAX_MEMBERS, MAX_MEMBER_SIZE = 10_000, 8 << 30  # as `packcam verify`: more is not a bundle
# An export stores clips and deflates only text and pictures: a member (from 1 MiB on) that
# unpacks to more than 20 times its compressed size is a zip bomb, not a bundle.
MAX_UNPACK_RATIO, UNPACK_RATIO_FROM = 20, 1 << 20
VERIFIER = "verify.py"  # the copy of this script every bundle ships
# A token's stated accuracy (RFC 3161 2.4.2) up to this counts as slack both ways, as
# genTime's one-second precision does (real TSAs state 1 s or less); beyond it, against the
# signer: the TSA vouches only that it saw the data by genTime + accuracy.
ACCURACY_GRACE_S = 1.0
WITNESS_SIZES_MAX = 64  # tree sizes one GET /witness/<station>?tree_size=... may ask for
# The witness's signed word that a record asked for sizes holds every checkpoint it cosigned
# at them (GET /witness/<station>?tree_size=N: ``sizes_statement_b64``)
SIZES_STATEMENT_TYPE = "packcam-witness-sizes"
# How far the station's clock (a checkpoint's time) may run ahead of the witness's (its
# statement's, whole seconds) before a statement counts as older than the checkpoint
WITNESS_CLOCK_SLACK_S = 60.0


def as_characters(text: str) -> str:
    """``text`` as its characters: a control or format character (a line break, ESC, a bidi
    override) written as its escape (``\\x1b``), so a member name or signed text from the
    bundle cannot draw a line of its own ("RESULT: AUTHENTIC") or hide the ones after it on
    the terminal. Other Unicode (打包台1) is kept."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


class Result:
    """The checks so far and the verdict they add up to (same rules as `packcam verify`)."""

    def __init__(self) -> None:
        self.checks: list[tuple[str, str, str, str]] = []
        self.signer_anchored = False
        self.time_anchors: list[bool] = []
        self.covered = False
        self.here = 0  # clips in the bundle
        self.deleted = 0  # clips of the order deleted by retention, by the station's record

    def add(self, status: str, name: str, reason: str, code: str = "") -> None:
        reason = " ".join(reason.split())  # one line per check (openssl's errors span several)
        self.checks.append((status, name, reason, code))
        print(f"{status:4} {as_characters(name)}: {as_characters(reason)}"
              + (f" [{code}]" if code else ""))  # fmt: skip

    def verdict(self) -> tuple[int, str]:
        failed = sorted({c[3] for c in self.checks if c[0] == FAIL})
        if failed or not any(c[0] == OK for c in self.checks):
            return 1, "NOT AUTHENTIC (" + ", ".join(failed) + ")"
        if self.signer_anchored and self.time_anchors and all(self.time_anchors) and self.covered:
            code, text = 0, "AUTHENTIC"
        else:
            code, text = (
                4,
                "INTACT BUT NOT ANCHORED: compare the fingerprints above with the seller's",
            )
        if self.deleted:  # never read as the whole order's recording
            code = 5 if code == 0 else code
            label, colon, rest = text.partition(":")
            text = (
                f"{label} FOR {self.here} OF THIS ORDER'S {self.here + self.deleted} CLIPS "
                f"(PARTIAL: {self.deleted} deleted by the station's retention, by its own signed "
                f"record; see the clip-deleted-by-retention lines){colon}{rest}"
            )
        return code, text


# ---- RFC 9162 Merkle proofs ------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _proof_sides(fn: int, sn: int, path: Sequence[bytes]) -> list[tuple[bytes, bool]] | None:
    """RFC 9162's walk up the tree from node ``fn`` of a tree whose last node is ``sn``.

    Each node of ``path`` with whether it is the left sibling (hashed as ``node_hash(c, r)``)
    or the right one (``node_hash(r, c)``); None when ``path`` is too long or too short to
    reach the root (``sn`` not 0 at its end). The same walk serves inclusion (2.1.3.2) and
    consistency (2.1.4.2) proofs.
    """
    sides = []
    for c in path:
        if sn == 0:
            return None
        left = bool(fn & 1) or fn == sn
        if left and not fn & 1:
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        sides.append((c, left))
        fn >>= 1
        sn >>= 1
    return sides if sn == 0 else None


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does ``leaf`` sit at ``index`` of the tree of ``size`` with that root?"""
    if not 0 <= index < size:
        return False
    sides = _proof_sides(index, size - 1, proof)
    if sides is None:
        return False
    r = leaf
    for p, left in sides:
        r = node_hash(p, r) if left else node_hash(r, p)
    return r == expected_root


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """RFC 9162 2.1.4.2: is the tree of ``size2`` an append-only extension of ``size1``?"""
    if size1 > size2 or size1 < 0:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if size1 == 0:
        return not proof  # the empty tree is a prefix of every tree
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is an exact power of two
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    sides = _proof_sides(fn, sn, path[1:])
    if sides is None:
        return False
    fr = sr = path[0]
    for c, left in sides:
        if left:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
    return fr == root1 and sr == root2


# ---- certificates and openssl ----------------------------------------------------------------

PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def pem_certs(data: bytes) -> list[bytes]:
    """Each certificate of a PEM file as its own PEM block."""
    return [m.group(0) + b"\n" for m in PEM_RE.finditer(data)]


PUBLIC_KEY_RE = re.compile(r"-----BEGIN PUBLIC KEY-----(.+?)-----END PUBLIC KEY-----", re.S)


def key_der(text: str) -> bytes:
    """The SPKI DER of the first public key of a PEM text, as openssl and `packcam verify`
    read a key file (text around it, a second key after it, CRLF line ends: all ignored);
    ValueError when it holds none."""
    m = PUBLIC_KEY_RE.search(text)
    if m is None:
        raise ValueError("no PEM public key")
    return base64.b64decode("".join(m.group(1).split()), validate=True)


def key_fp(path: Path) -> str:
    """``SHA256:<hex>`` of an Ed25519 public key's raw 32 bytes (the end of its SPKI DER)."""
    return "SHA256:" + hashlib.sha256(key_der(path.read_text())[-32:]).hexdigest()


def cert_fingerprint(pem: bytes) -> str:
    body = PEM_RE.search(pem)
    der = base64.b64decode(b"".join(body.group(1).split())) if body else b""
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def normalise_fp(text: str) -> str | None:
    s = text.strip().split("=", 1)[-1].strip().lower()
    s = s[7:] if s.startswith("sha256:") else s
    s = s.replace(":", "").replace(" ", "")
    return "SHA256:" + s if re.fullmatch(r"[0-9a-f]{64}", s) else None


def openssl(*args: str, cwd: Path) -> tuple[bool, str]:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    return r.returncode == 0, r.stdout + r.stderr


def pins(values: list[str], candidates: list[bytes], what: str) -> list[bytes]:
    """The certificates the user trusts: their files, or bundled ones with a pinned hash."""
    out: list[bytes] = []
    for v in values:
        fp = normalise_fp(v)
        if fp is None:
            try:
                out += pem_certs(Path(v).read_bytes())
            except OSError as exc:
                raise InputError(f"cannot read {what} {v}: {exc}") from exc
        else:
            out += [c for c in candidates if cert_fingerprint(c) == fp]
    return out


def subject_cn(text: str) -> str | None:
    """The CN of ``openssl x509 -subject -nameopt RFC2253`` output, unescaped. RFC 2253 escapes
    specials (``\\,``) and each byte of a non-ASCII character as ``\\XX`` (打 is \\E6\\89\\93),
    which keeps the text ASCII in any locale; it lists the RDNs last first, so the last CN is
    the certificate's first (the one `packcam verify` reads)."""
    line = [ln for ln in text.splitlines() if ln.startswith("subject=")] or [""]
    s = line[0][len("subject=") :]  # not stripped: a trailing space ("\\ ") is part of the CN
    fields, raw, i = [], bytearray(), 0
    while i < len(s):
        c = s[i]
        if c in (",", "+"):  # the end of one attribute
            fields.append(bytes(raw))
            raw = bytearray()
        elif c == "\\" and re.fullmatch(r"[0-9A-Fa-f]{2}", s[i + 1 : i + 3]):
            raw.append(int(s[i + 1 : i + 3], 16))
            i += 2
        elif c == "\\":
            raw += s[i + 1 : i + 2].encode()
            i += 1
        else:
            raw += c.encode()
        i += 1
    fields.append(bytes(raw))
    cns = [f[3:].decode("utf-8", "replace") for f in fields if f.startswith(b"CN=")]
    return cns[-1] if cns else None


def parse_time(s: str) -> datetime | None:
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


# A time as the station writes it (datetime.isoformat): calendar date, seconds, UTC offset
STATION_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[+-]\d{2}:\d{2}|Z)")
# The UTC offsets time zones use: -12:00 to +14:00, on the quarter hour (Nepal +05:45)
MIN_OFFSET_MIN, MAX_OFFSET_MIN, OFFSET_STEP_MIN = -12 * 60, 14 * 60, 15


def local_time_problem(body: dict[str, Any]) -> str | None:
    """Why a clip's signed start or end reads as another wall-clock time than it was (None:
    it does not): not written as the station writes times (a week date), or with a UTC offset
    no time zone uses (a station's TZ set to UTC-23:59 writes every instant as the day before;
    the TSA holds only the instant). A missing or unreadable time is the other checks' matter."""
    for field in ("started_at", "ended_at"):
        value = str(body.get(field))
        t = parse_time(value)
        offset = t.utcoffset() if t is not None else None
        if offset is None:
            continue
        minutes = offset.total_seconds() / 60
        if (
            not STATION_TIME.fullmatch(value)
            or not MIN_OFFSET_MIN <= minutes <= MAX_OFFSET_MIN
            or minutes % OFFSET_STEP_MIN
        ):
            utc = t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[union-attr]  # noqa: UP017
            return (
                f"the signed {field} {value!r} is not a local time as a station writes it "
                f"(YYYY-MM-DDTHH:MM:SS with a UTC offset a time zone uses, -12:00 to +14:00): "
                f"its wall-clock reading misleads; the instant is {utc} UTC"
            )
    return None


# Scripts an order ID may hold besides ASCII without reading as another one (Chinese,
# Japanese and Korean order IDs; their names start so in the Unicode database)
CJK_NAMES = ("CJK ", "HIRAGANA ", "KATAKANA ", "HANGUL ", "BOPOMOFO ", "IDEOGRAPHIC ")


def lookalike_problem(order_id: object) -> str | None:
    """Why a signed order ID may read as another order's (None: it reads as itself): not in
    NFC (the station writes NFC), or a character neither ASCII nor CJK (a Cyrillic А, a
    fullwidth １, an accented letter): a genuine clip of "А1" is drawn as order A1."""
    if not isinstance(order_id, str):
        return None
    if unicodedata.normalize("NFC", order_id) != order_id:
        return f"the signed order ID {order_id!a} is not in NFC: it reads as another ID"
    # a scanned code's surrounding whitespace is stripped and a control character refused
    # (station/capture/codes.py); a page draws "A1 " as A1 and two spaces as one
    if " ".join(order_id.split()) != order_id or any(
        unicodedata.category(ch) == "Cc" for ch in order_id
    ):
        return (
            f"the signed order ID {order_id!a} holds a control character, a space at an end or "
            f"spaces in a row: it is drawn as {' '.join(order_id.split())!a}, another order's "
            "ID; compare it character by character"
        )
    for ch in order_id:
        name = unicodedata.name(ch, "")
        if not ch.isascii() and not name.startswith(CJK_NAMES):
            return (
                f"the signed order ID {order_id!a} holds U+{ord(ch):04X} {name or '?'}: "
                "it may read as another order's ID; compare it character by character"
            )
    return None


# A clip's ended_at and the next one's started_at are a frame apart: more shared time than
# this (a frame interval and clock jitter, at any camera rate over 1 fps) is the same seconds
OVERLAP_SLACK_S = 1.0


class Overlap(NamedTuple):
    """Two clips claiming the same seconds: the one that started first, the other, how many
    seconds they share from when, and whether both clocks were NTP-synchronised."""

    first: dict[str, Any]
    second: dict[str, Any]
    shared_s: float
    since: datetime
    synced: bool

    def text(self) -> str:
        a, b = self.first, self.second
        return (
            f"log entries {a.get('seq')} (order {a.get('order_id')!r}) and {b.get('seq')} "
            f"(order {b.get('order_id')!r}) both claim {self.shared_s:.0f} s from "
            f"{utc_plain(self.since.isoformat())} UTC: one station records one clip at a time"
            + ("" if self.synced else " (a clock not NTP-synchronised may have stepped back)")
        )


def overlaps(bodies: Sequence[dict[str, Any]]) -> list[Overlap]:
    """Every pair of clips of one station's log that claim the same seconds (one camera records
    one clip at a time, and a clip's pre-roll starts after the clip before it), in order of
    start. Sorted by start and swept, keeping only the clips still open: a log of 100k clips
    costs n log n plus one step per pair."""
    spans = []
    for b in bodies:
        start, end = parse_time(str(b.get("started_at"))), parse_time(str(b.get("ended_at")))
        if start is not None and end is not None and start.tzinfo and end.tzinfo:
            spans.append((start, end, b))
    spans.sort(key=lambda x: (x[0], x[1]))
    found: list[Overlap] = []
    open_: list[tuple[datetime, int, datetime, dict[str, Any]]] = []  # a heap by end
    for i, (s2, e2, b2) in enumerate(spans):
        # a clip ending within the slack after this start shares too little with any later one
        while open_ and (open_[0][0] - s2).total_seconds() <= OVERLAP_SLACK_S:
            heapq.heappop(open_)
        for e1, _, _s1, b1 in sorted(open_, key=lambda x: x[1]):
            shared = (min(e1, e2) - s2).total_seconds()
            if shared > OVERLAP_SLACK_S:
                synced = b1.get("clock_synced") is True and b2.get("clock_synced") is True
                found.append(Overlap(b1, b2, shared, s2, synced))
        heapq.heappush(open_, (e2, i, s2, b2))
    return found


def overlap_problem(bodies: Sequence[dict[str, Any]]) -> tuple[str, bool] | None:
    """Why two clips of one station's log claim the same seconds, and whether both clocks were
    NTP-synchronised (if not, a clock stepped back may explain it); or None."""
    found = overlaps(bodies)
    return (found[0].text(), found[0].synced) if found else None


def span_problem(body: dict[str, Any], ended: datetime) -> str | None:
    """Why a clip's signed start, end and duration disagree (None: they agree). A genuine clip's
    duration_s is its presentation span plus one frame and ended_at - started_at that span;
    the TSA holds only the end, so this holds the start (same bound as `packcam verify`)."""
    started = parse_time(str(body.get("started_at")))
    duration = body.get("duration_s")
    if (
        started is None
        or started.tzinfo is None
        or isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or not -1e9 < duration < 1e9  # NaN, infinities and integers no float holds
        or duration < 0
    ):
        return (
            "the signed manifest states no start (started_at with its UTC offset) or no "
            "duration (duration_s, seconds) to hold to its recorded end"
        )
    span = (ended - started).total_seconds()
    slack = 2.0 + 0.01 * abs(duration)
    if abs(duration - span) > slack:
        return (
            f"the signed manifest says {started.isoformat()} to {ended.isoformat()} "
            f"({span:.0f} s) but a duration of {duration:g} s (allowed: +/- {slack:.1f} s): "
            "the recorded start is not when it happened"
        )
    return None


MP4_BOX_MAX = 64 << 20  # a moov or moof box larger than this is not a clip's (not read)
# More samples than this (a day at over 100 frames a second) is no clip's either: a table or a
# run stating four billion of them would be counted one by one until memory runs out
MP4_SAMPLES_MAX = 10_000_000


def _room(have: int, more: int) -> None:
    """ValueError (the file read as no clip) when ``more`` samples past ``have`` exceed
    MP4_SAMPLES_MAX."""
    if have + more > MP4_SAMPLES_MAX:
        raise ValueError(f"more than {MP4_SAMPLES_MAX} samples")


def _mp4_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of the whole boxes in ``data[start:end]`` (ISO/IEC 14496-12
    4.2: size 1 a 64-bit size follows, 0 to the end); stops at one that is not whole."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > end:
                return
            size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            return
        yield kind, pos + head, pos + size
        pos += size


def _mp4_child(data: bytes, start: int, end: int, *path: bytes) -> tuple[int, int] | None:
    """The payload (start, end) of the first box along ``path`` below ``data[start:end]``."""
    for kind in path:
        found = next(((a, b) for k, a, b in _mp4_boxes(data, start, end) if k == kind), None)
        if found is None:
            return None
        start, end = found
    return start, end


def _mp4_video_track(moov: bytes) -> tuple[int, int, int] | None:
    """(track_ID, timescale, default sample duration from trex) of the first video track."""
    for kind, a, b in _mp4_boxes(moov, 0, len(moov)):
        if kind != b"trak":
            continue
        hdlr = _mp4_child(moov, a, b, b"mdia", b"hdlr")
        mdhd = _mp4_child(moov, a, b, b"mdia", b"mdhd")
        tkhd = _mp4_child(moov, a, b, b"tkhd")
        if (
            hdlr is None
            or mdhd is None
            or tkhd is None
            or moov[hdlr[0] + 8 : hdlr[0] + 12] != b"vide"
        ):
            continue
        v1 = moov[mdhd[0]] == 1
        (timescale,) = struct.unpack_from(">I", moov, mdhd[0] + (20 if v1 else 12))
        (track,) = struct.unpack_from(">I", moov, tkhd[0] + (20 if moov[tkhd[0]] == 1 else 12))
        default = 0
        mvex = _mp4_child(moov, 0, len(moov), b"mvex")
        for k, ta, _tb in _mp4_boxes(moov, *mvex) if mvex else ():
            if k == b"trex" and struct.unpack_from(">I", moov, ta + 4)[0] == track:
                (default,) = struct.unpack_from(">I", moov, ta + 12)
        return track, timescale, default
    return None


def _mp4_table_pts(moov: bytes, track: int) -> list[int]:
    """The presentation times of the track's samples in the moov's sample tables (stts decode
    deltas, ctts offsets), zero-sized samples left out as a demuxer skips them."""
    for kind, a, b in _mp4_boxes(moov, 0, len(moov)):
        tkhd = _mp4_child(moov, a, b, b"tkhd")
        if kind != b"trak" or tkhd is None:
            continue
        if struct.unpack_from(">I", moov, tkhd[0] + (20 if moov[tkhd[0]] == 1 else 12))[0] != track:
            continue
        stbl = _mp4_child(moov, a, b, b"mdia", b"minf", b"stbl")
        if stbl is None:
            return []
        tables = {k: (x, y) for k, x, y in _mp4_boxes(moov, *stbl)}
        if b"stts" not in tables:
            return []
        dts: list[int] = []
        t = 0
        x = tables[b"stts"][0]
        for i in range(struct.unpack_from(">I", moov, x + 4)[0]):
            count, delta = struct.unpack_from(">II", moov, x + 8 + 8 * i)
            _room(len(dts), count)
            for _ in range(count):
                dts.append(t)
                t += delta
        offsets = [0] * len(dts)
        if b"ctts" in tables:
            x = tables[b"ctts"][0]
            fmt = ">Ii" if moov[x] == 1 else ">II"
            n = 0
            for i in range(struct.unpack_from(">I", moov, x + 4)[0]):
                count, off = struct.unpack_from(fmt, moov, x + 8 + 8 * i)
                _room(n, count)
                for _ in range(count):
                    if n < len(offsets):
                        offsets[n] = off
                    n += 1
        sizes: list[int] = []
        if b"stsz" in tables:
            x = tables[b"stsz"][0]
            fixed, count = struct.unpack_from(">II", moov, x + 4)
            sizes = (
                [fixed] * count if fixed else list(struct.unpack_from(f">{count}I", moov, x + 12))
            )
        return [
            dts[n] + offsets[n] for n in range(len(dts)) if not (n < len(sizes) and sizes[n] == 0)
        ]
    return []


def _mp4_fragment_pts(moof: bytes, track: int, default: int, dts: int) -> tuple[list[int], int]:
    """The presentation times of the track's samples in one moof (tfhd, tfdt, trun), and the
    decode time after them (a fragment without tfdt follows on from the one before)."""
    pts: list[int] = []
    for kind, a, b in _mp4_boxes(moof, 0, len(moof)):
        if kind != b"traf":
            continue
        boxes = [(k, x, y) for k, x, y in _mp4_boxes(moof, a, b)]
        tfhd = next(((x, y) for k, x, y in boxes if k == b"tfhd"), None)
        if tfhd is None:
            continue
        flags = int.from_bytes(moof[tfhd[0] + 1 : tfhd[0] + 4], "big")
        (tid,) = struct.unpack_from(">I", moof, tfhd[0] + 4)
        if tid != track:
            continue
        at, duration, size = tfhd[0] + 8, default, None
        at += 8 if flags & 0x1 else 0  # base-data-offset
        at += 4 if flags & 0x2 else 0  # sample-description-index
        if flags & 0x8:
            (duration,) = struct.unpack_from(">I", moof, at)
            at += 4
        if flags & 0x10:
            (size,) = struct.unpack_from(">I", moof, at)
        for k, x, _y in boxes:
            if k == b"tfdt":
                dts = struct.unpack_from(">Q" if moof[x] == 1 else ">I", moof, x + 4)[0]
            elif k == b"trun":
                tflags = int.from_bytes(moof[x + 1 : x + 4], "big")
                (count,) = struct.unpack_from(">I", moof, x + 4)
                _room(len(pts), count)
                at = x + 8 + (4 if tflags & 0x1 else 0) + (4 if tflags & 0x4 else 0)
                for _ in range(count):
                    d, sz, off = duration, size, 0
                    if tflags & 0x100:
                        (d,) = struct.unpack_from(">I", moof, at)
                        at += 4
                    if tflags & 0x200:
                        (sz,) = struct.unpack_from(">I", moof, at)
                        at += 4
                    at += 4 if tflags & 0x400 else 0
                    if tflags & 0x800:
                        (off,) = struct.unpack_from(">i" if moof[x] == 1 else ">I", moof, at)
                        at += 4
                    if sz != 0:
                        pts.append(dts + off)
                    dts += d
    return pts, dts


def clip_span_s(path: Path) -> float | None:
    """How long a clip's first video track plays (the last presentation time minus the first
    plus one frame, the median step), read from its MP4 boxes alone: the moov's sample tables
    and each fragment's (moof) runs, never the pictures. Both verifiers measure a bundle's
    clip with it: two readers of one file differ somewhere (PyAV read a clip whose moov a
    free box made 65 MiB, this did not), and a signed duration must be held to one length.
    None when it is no MP4 with a video track this reads (``played_problem``: no station
    signs one)."""
    try:
        size = path.stat().st_size
        moov, pts, dts, track = None, [], 0, None
        with path.open("rb") as f:
            pos = 0
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(16)
                box, kind = struct.unpack(">I4s", head[:8])
                skip = 8
                if box == 1:
                    box, skip = struct.unpack(">Q", head[8:16])[0], 16
                elif box == 0:
                    box = size - pos
                if box < skip or pos + box > size:
                    break
                if kind in (b"moov", b"moof"):
                    if box > MP4_BOX_MAX:
                        return None
                    f.seek(pos + skip)
                    data = f.read(box - skip)
                    if kind == b"moov" and moov is None:
                        moov = data
                        track = _mp4_video_track(moov)
                        if track is None:
                            return None
                        pts.extend(_mp4_table_pts(moov, track[0]))
                    elif kind == b"moof" and track is not None:
                        got, dts = _mp4_fragment_pts(data, track[0], track[2], dts)
                        _room(len(pts), len(got))
                        pts.extend(got)
                pos += box
    except (OSError, struct.error, IndexError, ValueError):
        return None
    if track is None or not pts or not track[1]:
        return None
    pts.sort()
    steps = sorted(pts[i + 1] - pts[i] for i in range(len(pts) - 1) if pts[i + 1] > pts[i])
    if not steps:
        frame = 0.0
    elif len(steps) % 2:
        frame = float(steps[len(steps) // 2])
    else:
        frame = (steps[len(steps) // 2 - 1] + steps[len(steps) // 2]) / 2
    return (pts[-1] - pts[0] + frame) / track[1]


def played_problem(body: dict[str, Any], played_s: float | None) -> str | None:
    """Why the signed duration is not how long the clip, its signed bytes, plays
    (``clip_span_s``; None: they agree within ``span_problem``'s bound). A start moved back
    with the duration inflated to match keeps start, end and duration agreeing; the clip's own
    length does not follow. A clip whose length its boxes do not give (``played_s`` None:
    no video track, a box past MP4_BOX_MAX, a table of more than MP4_SAMPLES_MAX samples)
    holds its signed duration to nothing: a station's clip always gives one, and a key
    holder who pads one past what is read would keep any duration. The one rule of both
    verifiers."""
    duration = body.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)):
        return None  # span_problem says so
    if played_s is None:
        return (
            "the clip's MP4 boxes give no length this reads (no video track, a box of more "
            f"than {MP4_BOX_MAX >> 20} MiB or more than {MP4_SAMPLES_MAX} samples): its signed "
            "duration cannot be held to how long it plays, and a station's clip always gives one"
        )
    slack = 2.0 + 0.01 * abs(duration)
    if abs(duration - played_s) <= slack:
        return None
    return (
        f"the clip plays for {played_s:.1f} s but the signed manifest says a duration of "
        f"{duration:g} s (allowed: +/- {slack:.1f} s): the recorded times are not the clip's"
    )


def clock_step(body: dict[str, Any]) -> tuple[float, str | None]:
    """The wall-clock step a manifest states (``clock_step_s``: NTP stepped the station's clock
    while the clip recorded; its times are by the clock after the step, the one the TSA time is
    held to), 0.0 when none; and why the stated one is no step (None: it is one, or none). As
    `packcam verify`."""
    if "clock_step_s" not in body:
        return 0.0, None
    step = body["clock_step_s"]
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not -1e10 < step < 1e10:
        return 0.0, (
            f"the signed manifest states a clock step of {step!r}, not a number of seconds "
            "(clock_step_s): its recorded times cannot be held to the TSA's"
        )
    return float(step), None


def step_text(step: float) -> str:
    """What a clock step stated in a manifest means (as `packcam verify` says it)."""
    return (
        f"the station's clock stepped {'forward' if step > 0 else 'back'} by {abs(step):g} s "
        "while this clip recorded (clock_step_s): its start and end are by the clock after the "
        "step, the camera's time between them, and its TSA time is held to that end; the time "
        f"burned into the picture before the step reads {abs(step):g} s "
        f"{'earlier' if step > 0 else 'later'}"
    )


def time_beyond(delta_s: float, accuracy_s: float, max_delay_s: float) -> bool:
    """Whether a TSA time ``delta_s`` from the recorded end (its token's stated accuracy
    ``accuracy_s``) fails to place the signing within ``max_delay_s`` of it, either way: the
    accuracy past ACCURACY_GRACE_S widens the doubt, never the bound (a token of ± 2 h would
    otherwise pass a manifest signed 2 h late)."""
    excess = max(accuracy_s - ACCURACY_GRACE_S, 0.0)
    return abs(delta_s) + excess > max_delay_s + min(accuracy_s, ACCURACY_GRACE_S) + 1.0


def time_before(delta_s: float, accuracy_s: float, max_delay_s: float) -> bool:
    """Whether a TSA time ``delta_s`` from a stated time (its token's stated accuracy
    ``accuracy_s``) says the TSA saw the statement before that time beyond ``max_delay_s``
    (a station clock ahead by less is no contradiction): even the latest time the token
    allows, genTime + accuracy + genTime's 1 s precision, is before it. A loose accuracy
    leaves room on this side, so it is for the signer here, as it is against him in
    ``time_beyond`` (a token of ± 2 h a minute before the end shows no contradiction: the TSA
    may have seen it 2 h later)."""
    return delta_s + accuracy_s + 1.0 < -max_delay_s


def judge_end(delta_s: float, accuracy_s: float, max_delay_s: float) -> str:
    """A clip's end token judged: its TSA time ``delta_s`` from the recorded end (the token's
    stated accuracy ``accuracy_s``). ``ok``: within the bound, the time anchored.
    ``clock-ahead``: before the end by more than the accuracy plus genTime's 1 s precision,
    within the bound (a WARN: the station clock was ahead). ``early``: before it beyond the
    bound even at genTime + accuracy (``time_before``): a TSA saw the manifest before the end
    it states, a contradiction (FAIL ``time-out-of-bounds``, pinned TSA or not, as
    ``judge_start`` fails any token before the start). ``late``: genTime after it beyond the
    bound; ``loose``: genTime near it, but a stated accuracy too loose to place it within,
    on either side (``time_beyond``). Both WARN ``time-late``: the clip existed by genTime +
    accuracy; when it ended is the station's word, for a station offline at the end and a
    manifest signed later look the same, and failing it would call the honest one forged
    while the forger just leaves the late token out (``time-unanchored``). It anchors no
    time. Pages tell them apart (a loose token was not seen "too long after" the end). The
    one rule of both verifiers."""
    if time_before(delta_s, accuracy_s, max_delay_s):
        return "early"
    if delta_s > max_delay_s + min(accuracy_s, ACCURACY_GRACE_S) + 1.0:
        return "late"
    if time_beyond(delta_s, accuracy_s, max_delay_s):
        return "loose"
    if delta_s < -(accuracy_s + 1.0):  # genTime is whole seconds
        return "clock-ahead"
    return "ok"


def late_text(accuracy_s: float) -> str:
    """What a late end token proves (``time-late``), as both verifiers say it."""
    loose = (
        f"; the TSA states an accuracy of only ± {accuracy_s:g} s, so its time cannot place it "
        "nearer"
        if accuracy_s > ACCURACY_GRACE_S
        else ""
    )
    return (
        f"{loose}: the clip existed by then, but whether it ended when the station says is the "
        "station's word (a station offline at its end, or a manifest signed later: offline "
        "nobody can tell them apart); this token does not anchor its time"
    )


# The start statement (station/proof/startstamp.py): what the station fixes at a clip's first
# frame and has a TSA timestamp at once; the signed manifest carries it (``start_statement``).
START_TYPE = "packcam-clip-start"
START_FIELDS = ("type", "version", "station", "station_key", "order_id", "clip", "started_at",
                "nonce")  # fmt: skip
# How far the statement's start may be from the manifest's (less a stated clock step): both
# are the first frame's wall time, written to the millisecond
START_SLACK_S = 1.0


# Both verifiers' words for a manifest without a start statement (start-unanchored)
NO_START_STATEMENT = (
    "the signed manifest holds no start statement (recorded before packcam timestamped "
    "starts, or without the proof on): its start is the station's word, held only to its "
    "duration"
)


def start_statement_digest(body: dict[str, Any]) -> str | None:
    """The SHA-256 (hex) a start token must be over: of the canonical statement the signed
    manifest carries (None: it carries none, or not an object)."""
    st = body.get("start_statement")
    if not isinstance(st, dict):
        return None
    try:
        return hashlib.sha256(canonical(st).encode("utf-8")).hexdigest()
    except (TypeError, ValueError):
        return None


def start_statement_problem(body: dict[str, Any]) -> str | None:
    """Why the start statement a signed manifest carries is not this clip's start (None: it
    is, or there is none: ``start_statement_digest``). It must name the manifest's station,
    key, order and clip file and state its start (less a stated clock step: the statement is
    by the clock before it) within START_SLACK_S. A key holder who re-times a clip and keeps
    the start statement (and token) of the recording gets this. The one rule of both
    verifiers."""
    st = body.get("start_statement")
    if st is None:
        return None
    if not isinstance(st, dict) or set(st) != set(START_FIELDS):
        return "the signed start statement is not one a station writes (its fields)"
    if st.get("type") != START_TYPE or st.get("version") != 1:
        return f"the signed start statement is of type {st.get('type')!r}, not {START_TYPE!r} 1"
    for field, mine in (("station", "station"), ("station_key", "station_key"),
                        ("order_id", "order_id")):  # fmt: skip
        if st.get(field) != body.get(mine):
            return (
                f"the start statement names {field} {st.get(field)!r}, the manifest "
                f"{body.get(mine)!r}: it is another clip's start"
            )
    name = PurePosixPath(str(body.get("path", ""))).stem
    clip = st.get("clip")
    if not isinstance(clip, str) or not re.fullmatch(re.escape(clip) + r"(-\d+)?", name):
        return f"the start statement is of clip {clip!r}, the manifest of {name!r}"
    stated, started = parse_time(str(st.get("started_at"))), parse_time(str(body.get("started_at")))
    if stated is None or stated.tzinfo is None or started is None or started.tzinfo is None:
        return (
            f"the start statement's start {st.get('started_at')!r} or the manifest's "
            f"{body.get('started_at')!r} is not a time with its UTC offset"
        )
    step, _ = clock_step(body)
    # numbers of seconds: a stated step may move a time past the calendar's edge (year 9999)
    off = (started - stated).total_seconds() - step
    if abs(off) > START_SLACK_S:
        return (
            f"the signed manifest says the clip started at {started.isoformat()}"
            + (f" (clock step {step:+g} s)" if step else "")
            + f", its start statement {stated.isoformat()}, {abs(off):.1f} s "
            + ("later" if off < 0 else "earlier")
            + ": the start was moved after it was timestamped"
        )
    return None


def judge_start(
    stated: datetime,
    seen: Sequence[tuple[datetime, float, bool]],
    max_delay_s: float,
    step_s: float = 0.0,
) -> tuple[str, str, str]:
    """(status, code, text) of a clip's start statement that starts at ``stated`` (its own
    field; ``start_statement_problem`` holds it to the manifest) from its valid tokens
    ``seen``: (genTime, accuracy, whether the TSA is one you pinned) each. ``step_s``: the
    clock step the manifest states (``clock_step``): the statement is by the clock before it,
    the TSA's time is held to the clock after it, as the end is (an honest clock an hour ahead
    then set right is no forgery; a key holder's stated step moves nothing a token is held
    to: a re-timed clip keeping its recorded statement with a "step" of a day is a day late
    for the start its manifest states). The statement is
    timestamped at the first frame, so a TSA you pinned saw it within ``max_delay_s`` after
    the stated start (the end token's bound): OK, the start was stated then. Before it beyond
    that bound even at genTime + accuracy (``time_before``, as the end): FAIL
    ``start-time-inconsistent``, the statement
    claims a start later than the TSA saw it (a station clock ahead by less gets clock-ahead
    on the end token; the start then reads so too). Later than the bound, none, or none
    pinned: WARN ``start-unanchored``, the start is the key holder's word (an honest station
    offline at the start, a clip of an older version, or a start re-written later: a stranger
    cannot tell them apart offline). The one rule of both verifiers."""
    if not seen:
        return (
            WARN,
            "start-unanchored",
            (
                "no RFC 3161 token over the clip's start statement (the TSA was not reached while "
                "the clip recorded): its start is the station's word, held only to its duration"
            ),
        )
    # the stated start on the clock after the step, in seconds from the statement's time (a
    # stated step may move a time past the calendar's edge: no datetime is moved by it)
    by = f" plus the stated clock step {step_s:+g} s" if step_s else ""
    delays = [((w - stated).total_seconds() - step_s, acc, pinned, w) for w, acc, pinned in seen]
    for delta, acc, _, _ in delays:
        if time_before(delta, acc, max_delay_s):
            return (
                FAIL,
                "start-time-inconsistent",
                (
                    f"a TSA saw the start statement {-delta:.0f} s before the start it states "
                    f"({stated.isoformat()}{by}): the stated start is not when the clip began"
                ),
            )
    good = [(d, p, w) for d, acc, p, w in delays if not time_beyond(d, acc, max_delay_s)]
    if any(p for _, p, _ in good):
        delta, when = min(((d, w) for d, p, w in good if p), key=lambda dw: dw[0])
        return (
            OK,
            "",
            (
                f"start timestamped: a TSA you pinned saw the start statement at "
                f"{when.isoformat(timespec='seconds')}, "
                + (
                    f"{delta:.0f} s after"
                    if delta >= 0
                    else f"{-delta:.0f} s before (the station clock was ahead)"
                )
                + f" the stated start {stated.isoformat()}{by}: the start was stated when it "
                "happened, not written later"
            ),
        )
    late_pinned = [d for d, _, p, _ in delays if p]  # none of them in time (good has none)
    if good and late_pinned:
        return (
            WARN,
            "start-unanchored",
            (
                f"a TSA you pinned saw the start statement only {min(late_pinned) / 60:.0f} min "
                f"after the start it states ({stated.isoformat()}{by}; allowed: "
                f"{max_delay_s / 60:g} min); the token in time is from a TSA you did not pin: "
                "its start rests on the station's word"
            ),
        )
    if good:
        return (
            WARN,
            "start-unanchored",
            (
                "the start statement's token is valid but not from a TSA you pinned: its start "
                "rests on the station's word"
            ),
        )
    delta = min(d for d, _, _, _ in delays)
    return (
        WARN,
        "start-unanchored",
        (
            f"the start statement was timestamped only {delta / 60:.0f} min after the start it "
            f"states ({stated.isoformat()}{by}; allowed: {max_delay_s / 60:g} min): the station "
            "was offline when the clip began, or the start was written later; its start is the "
            "station's word, held only to its duration"
        ),
    )


def token_text(tst: Path, cwd: Path) -> str:
    """What `openssl ts -reply -text` prints of a token ("": not a token it reads)."""
    ok, out = openssl("ts", "-reply", "-token_in", "-in", str(tst), "-text", cwd=cwd)
    return out if ok else ""


def token_time(tst: Path, cwd: Path) -> tuple[datetime | None, float]:
    """(genTime, accuracy in seconds) as `openssl ts -reply -text` prints them."""
    text = token_text(tst, cwd)
    return token_gen_time(text), token_accuracy(text)


def token_gen_time(text: str) -> datetime | None:
    """A token's genTime from `openssl ts -text` ("Time stamp: Dec  8 02:53:58.125 2026 GMT"),
    its fraction of a second kept, as `packcam verify` reads it from the token: cut to whole
    seconds, a token 902.7 s after the end was in time here (902 s) and late there."""
    m = re.search(r"Time stamp: (\w+ +\d+ \d+:\d+:\d+)(?:\.(\d+))? (\d+) GMT", text)
    if not m:
        return None
    when = datetime.strptime(" ".join(f"{m.group(1)} {m.group(3)}".split()), "%b %d %H:%M:%S %Y")
    micros = int((m.group(2) or "0")[:6].ljust(6, "0"))  # a datetime holds microseconds
    return when.replace(microsecond=micros, tzinfo=timezone.utc)  # noqa: UP017 (Python < 3.11 too)


def token_hash_name(text: str) -> str | None:
    """The hash algorithm of a token's message imprint, as `openssl ts -text` names it
    ("sha256"), or None."""
    m = re.search(r"Hash Algorithm: (\S+)", text)
    return m.group(1).lower() if m else None


def token_accuracy(text: str) -> float:
    """A token's stated accuracy in seconds from `openssl ts -text` ("Accuracy: 0x01 seconds,
    0x01F4 millis, unspecified micros"), to the microsecond as `packcam verify` reads it from
    the token: read in whole seconds, ± 1.5 s passed here what failed there."""
    line = re.search(r"Accuracy: (.*)", text)
    total = 0.0
    for unit, scale in (("seconds", 1.0), ("millis", 1e-3), ("micros", 1e-6)):
        n = re.search(rf"(?<![\w-])(0x)?(-?[0-9a-fA-F]+) {unit}\b", line.group(1)) if line else None
        if n:  # openssl prints hex (0x..., a negative one 0x-...); older ones decimal
            total += int(n.group(2), 16 if n.group(1) else 10) * scale
    return total


# ---- canonical JSON (what the station signs) -------------------------------------------------


def js_number(x: float) -> str:
    """A float as JavaScript prints it (RFC 8785 numbers): 1.0 is "1", 1e-7 "1e-7"."""
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{x!r} is not a JSON number")
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 2**53:
        return str(int(x))
    sign = "-" if x < 0 else ""
    mant, _, exp = repr(abs(x)).partition("e")  # Python's shortest round-trip digits
    whole, _, frac = mant.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) - (len(whole + frac) - len(digits)) + int(exp or 0)  # after `point` digits
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        return sign + digits + "0" * (point - k)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    e = point - 1
    return f"{sign}{digits[0]}{'.' + digits[1:] if k > 1 else ''}e{'+' if e >= 0 else '-'}{abs(e)}"


def canonical(value: Any) -> str:
    """RFC 8785 canonical JSON: keys sorted by UTF-16 code units, no whitespace. A manifest
    is signed in exactly this form; other bytes that parse to the same JSON are not it. (The
    station signs with this same function: what is not JSON raises, never signs.)"""
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("JSON object keys must be strings")
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(f"{canonical(k)}:{canonical(v)}" for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, float):
        return js_number(value)
    if value is None or isinstance(value, (str, int)):  # bool is an int: true/false
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot canonicalise {type(value).__name__}")


# ---- the bundle ------------------------------------------------------------------------------


def check(
    root: Path,
    ca_pins: list[str],
    tsa_pins: list[str],
    max_delay_s: float,
    witness: dict[str, Any] | None = None,
    witness_pin: str | None = None,
) -> int:
    """Verify the unzipped bundle in ``root``; print every check and the verdict
    (``witness``: the witness record read by read_witness; ``witness_pin``: the fingerprint
    its key must have)."""
    with tempfile.TemporaryDirectory(prefix="packcam-kit-pins-") as pins_dir:
        return _check(root, ca_pins, tsa_pins, max_delay_s, Path(pins_dir), witness, witness_pin)


def utc_plain(value: object) -> str:
    """A signed time as UTC "YYYY-MM-DD HH:MM:SS" (the text as it is when it is not one)."""
    t = parse_time(str(value))
    if t is None:
        return str(value)
    return (t.astimezone(timezone.utc) if t.tzinfo else t).strftime("%Y-%m-%d %H:%M:%S")  # noqa: UP017


def frames_missing(item: dict[str, Any]) -> str | None:
    """Why the bundle shows none of a clip's pictures (``item``: its entry in bundle.json, the
    clip the signed one), or None: it lists key frames. They are what lets a person hold the
    clock burned into the pictures to the signed times; the TSA holds only the end, and the
    start and the clip's own length are the key holder's word. An honest export leaves them
    out only for a clip it could not read (the central site's bundle of a clip the station
    freed after archiving it), so this is a warning, the same in both verifiers."""
    if item.get("frames"):
        return None
    return (
        "bundle.json lists no key frames for this clip: the bundle shows none of its pictures, "
        "so nothing here holds the clock burned into them to the signed start and end (a "
        "timestamp holds only the end; an export leaves them out only for a clip it could not "
        "read); play the clip and compare its burned-in time with the signed times"
    )


def deletion_dated_ahead(deleted: datetime, now: datetime) -> str | None:
    """Why a retention deletion record dated ``deleted`` (aware) is one no honest station signed
    by ``now``, the moment of verification: dated more than DELETION_CLOCK_ALLOWANCE after it
    (None: it is not). The one rule of both verifiers, the share summary and `packcam audit`."""
    if deleted <= now + DELETION_CLOCK_ALLOWANCE:
        return None
    return (
        f"the deletion record is dated {deleted.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC, "  # noqa: UP017
        f"after this verification ({now.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC, with a "  # noqa: UP017
        "day for the two clocks): no station deletes a clip in the future"
    )


def deletion_problem(
    body: dict[str, Any], record: bytes, retired: str | bool | None, now: datetime
) -> str | None:
    """Why a retention deletion record is not the station's about the clip of the signed
    manifest ``body``, or None. ``retired``: when the station key that signed it was retired
    (None: it is the current one; False: no key of the bundle's chain signed it); ``now``:
    the moment of verification."""
    if retired is False:
        return "the deletion record is not signed by the station key"
    try:
        d = json.loads(record)
    except ValueError:
        d = None
    if not isinstance(d, dict):
        return "the deletion record is unreadable"
    deleted, started = parse_time(str(d.get("deleted_utc"))), parse_time(str(d.get("started_utc")))
    if d.get("type") != "packcam-retention-deletion":
        return "it is not a retention deletion record"
    if deleted is None or started is None or deleted.tzinfo is None or started.tzinfo is None:
        return "the deletion record is unreadable"
    if any(d.get(f) != body.get(f) for f in ("sha256", "path", "order_id", "station")):
        return "the deletion record names another clip"
    claimed, ended = parse_time(str(body.get("started_at"))), parse_time(str(body.get("ended_at")))
    if claimed is None or claimed.tzinfo is None or abs((claimed - started).total_seconds()) > 1:
        return "the deletion record gives another start time"
    if ended is None or ended.tzinfo is None or deleted < ended:
        return "the deletion record says it was deleted before it was recorded"
    ahead = deletion_dated_ahead(deleted, now)
    if ahead is not None:
        return ahead
    until = parse_time(str(retired)) if retired is not None else None
    if retired is not None and (until is None or until.tzinfo is None or deleted > until):
        # what a thief holding the retired key would sign (as `packcam audit` judges it)
        return f"the deletion record is signed by a key after it was retired ({retired})"
    min_age = d.get("min_age_days")  # as `packcam audit`: its own rule, broken, is no retention
    if not isinstance(min_age, (int, float)) or (deleted - started).total_seconds() < (
        min_age * 86400 - 1
    ):
        return f"the deletion record says it was deleted younger than its minimum age ({min_age})"
    return None


def signed_after_final(checkpoint: bytes, final: dict[str, Any]) -> bool:
    """Whether ``checkpoint`` is a later one of the log a rotation statement closed (``final``):
    the retired key signed after its final checkpoint."""
    cp = json.loads(checkpoint)
    return cp.get("key") == final.get("key") and int(cp.get("tree_size", -1)) > int(
        final["tree_size"]
    )


# What an export writes besides what bundle.json names (bundle.py): the index, its signature,
# the stranger's kit and the human summary.
FIXED_MEMBERS = frozenset(
    ("bundle.json", MANIFEST, MANIFEST_SIG, "SHA256SUMS", "VERIFY.md", "verify.py", "summary.html")
)


# The members a clip deleted by retention is accounted for by (bundle.json's deleted_clips).
DELETED_MEMBERS = ("manifest", "signature", "inclusion", "deletion_record", "deletion_signature")


def unpack_problem(infos: Sequence[zipfile.ZipInfo]) -> str | None:
    """Why a verifier must not unpack these members (too many, one too large, a zip bomb:
    one member, or all of them together, many times their compressed size), or None."""
    if len(infos) > MAX_MEMBERS:
        return f"more than {MAX_MEMBERS} members"
    for info in infos:
        if info.file_size > MAX_MEMBER_SIZE:
            return f"{info.filename!r} is too large"
    for what, size, packed in [
        *((repr(i.filename), i.file_size, i.compress_size) for i in infos),
        ("its members", sum(i.file_size for i in infos), sum(i.compress_size for i in infos)),
    ]:
        if size > UNPACK_RATIO_FROM and size > MAX_UNPACK_RATIO * max(1, packed):
            return (
                f"{what} would unpack to {size >> 20} MiB from {packed >> 10} KiB: "
                "a zip bomb, not a bundle"
            )
    return None


def framing_problem(path: Path, z: zipfile.ZipFile) -> str | None:
    """Why the zip file at ``path`` holds more than its members, or None. An export (and the
    central site's stream) starts with its first member and ends with the zip's end record;
    zip readers find the members from the end, so bytes in front can be another file that
    plays (an MP4 of another recording), and `unzip` prints an archive comment: neither is
    covered by any signature."""
    first = min((i.header_offset for i in z.infolist()), default=0)
    if first:
        return (
            f"{first} bytes before its first member: the file is something else too (a video "
            "that plays, say), not only the bundle"
        )
    if z.comment:
        return (
            f"an archive comment ({z.comment[:60]!r}): unzip prints it, and no signature covers it"
        )
    with path.open("rb") as f:
        f.seek(-22, 2)  # the end record, which an export writes last
        if f.read(4) != b"PK\x05\x06":
            return "data after the zip's end record: not only the bundle"
    return None


# A file name's longest part (NAME_MAX on Linux, macOS and Windows alike) and a member name's
# longest whole, well under PATH_MAX with the folder a verifier unpacks to in front
NAME_MAX_BYTES, MEMBER_NAME_MAX_BYTES = 255, 1024


def member_name_problem(name: str) -> str | None:
    """Why ``name`` is not a member name as an export writes it (None: it is): parts joined by
    single slashes, none empty, ``.`` or ``..``, no backslash, no drive, not absolute (a
    folder entry ends with one slash). Another spelling (``clips//X.mp4``, ``./X``) unpacks
    to a file of another name than the zip's: a verifier reading the zip and one reading the
    unpacked folder would check different names, and bundle.json would name neither. A part
    longer than a file name may be (NAME_MAX_BYTES, in UTF-8), or a name past
    MEMBER_NAME_MAX_BYTES, unpacks to no file at all (an export's names are under 200 bytes):
    `packcam verify`, reading the zip, called a re-signed bundle with a key frame so named
    AUTHENTIC, and verify.py could not unpack it."""
    parts = (name[:-1] if name.endswith("/") else name).split("/")
    if "\\" in name or ":" in parts[0] or any(p in ("", ".", "..") for p in parts):
        return f"{name!r} is not a member name as an export writes it"
    if len(name.encode("utf-8", "surrogatepass")) > MEMBER_NAME_MAX_BYTES or any(
        len(p.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES for p in parts
    ):
        return f"{name[:80]!r}... is longer than a file name may be: no export writes it"
    return None


def file_and_folder(keys: Iterable[str]) -> str | None:
    """A name that is both a file and a folder among members unpacked to ``keys`` (as an
    unzip tool writes them; a folder entry ends with a slash), or None. No tool writes both:
    a frame ``X`` beside a folder entry ``X/`` (or a member ``X/y``) is a file the person
    unzipping is not shown, whichever comes first."""
    keys = list(keys)
    files = {k for k in keys if not k.endswith("/")}
    folders = {k.rstrip("/") for k in keys if k.endswith("/")}
    for k in keys:
        parts = k.rstrip("/").split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return min(files & folders, default=None)


def clip_listed_twice(index: dict[str, Any]) -> str | None:
    """A clip ``bundle.json`` lists more than once (an export lists each once; a verifier
    would unpack and hash it once per listing), or None."""
    names = [str(e.get("clip")) for e in index.get("clips") or []]
    return next((n for n in names if names.count(n) > 1), None)


# What a field of bundle.json that names members holds, as an export writes it (named_fields)
NAMES, NAME = "a list of member names", "a member name"
ENTRY, ENTRIES = "an object", "a list of objects"
# The fields of bundle.json's objects that name one member each (or None, where there is none):
# the checkpoint, a clip, its own checkpoint, a key frame, a deleted clip (named_fields).
NAME_FIELDS = {
    "checkpoint": ("body", "signature"),
    "clip": ("clip", "manifest", "signature", "inclusion"),
    "first_checkpoint": ("body", "signature", "consistency"),
    "frame": ("file",),
    "deleted": DELETED_MEMBERS,
}


def named_fields(index: dict[str, Any]) -> Iterator[tuple[str, object, str]]:
    """Each (field, value, want) of ``bundle.json`` that names members: its keys, checkpoint,
    rotations, clips (their tokens, start tokens, own checkpoint and key frames) and deleted
    clips (the deleted clip itself is not a member). ``want``: what an export writes there,
    ``NAMES`` (a list of names: tokens), ``NAME`` (one, or None) or ``ENTRY`` (an object of
    such fields: a clip, a key frame), for ``unheld_reference`` to hold it to."""
    keys, cp = index.get("keys"), index.get("checkpoint")
    parts: list[tuple[str, object, str]] = [("keys", keys, ENTRY), ("checkpoint", cp, ENTRY)]
    for where in ("rotations", "clips", "deleted_clips"):
        parts += entries(where, index.get(where))
    while parts:
        where, part, want = parts.pop(0)
        if want != ENTRY or not isinstance(part, dict):
            yield where, part, want  # no list of entries, no entry: another shape
            continue
        kind = where.rpartition(".")[2].partition("[")[0]
        if kind in ("keys", "rotations"):  # every field a name, tokens aside
            yield from ((f"{where}.{k}", v, NAME) for k, v in part.items() if k != "timestamps")
        else:
            fields = NAME_FIELDS["deleted" if kind == "deleted_clips" else kind.rstrip("s")]
            yield from ((f"{where}.{k}", part.get(k), NAME) for k in fields)
        if kind == "frames":
            continue
        if kind != "keys" and kind != "deleted_clips":
            yield f"{where}.timestamps", part.get("timestamps", []), NAMES
        if kind == "clips":
            yield f"{where}.start_timestamps", part.get("start_timestamps") or [], NAMES
            fc = part.get("first_checkpoint")
            if fc or (fc is not None and not isinstance(fc, dict)):
                parts.append((f"{where}.first_checkpoint", fc, ENTRY))
            parts += entries(f"{where}.frames", part.get("frames"))


def entries(where: str, value: object) -> list[tuple[str, object, str]]:
    """The entries of a list field of ``bundle.json`` (``named_fields``), each with where it
    is; the field None: none; one that is no list: itself, to be refused as another shape."""
    if value is None:
        return []
    if not isinstance(value, list):
        return [(where, value, ENTRIES)]
    return [(f"{where}[{n}]", v, ENTRY) for n, v in enumerate(value)]


def referenced_names(index: dict[str, Any]) -> set[str]:
    """Every member name ``bundle.json`` gives (keys, checkpoint, rotations, clips, their
    frames and deleted clips), besides the fixed parts of every bundle."""
    named: set[str] = set()
    for _, value, want in named_fields(index):
        for v in value if want == NAMES and isinstance(value, list) else [value]:
            if isinstance(v, str):
                named.add(v)
    return named


def unheld_reference(index: dict[str, Any], names: Collection[str]) -> str | None:
    """Why ``bundle.json`` does not hold together with the members ``names`` (None: it does):
    a field that names members not of the form an export writes (``named_fields``: a token
    list that is a dict or a string, a number among names, a key frame that is a name and
    not an entry), or a name of a member the bundle does not hold. An export writes every
    member it names; one named and absent leaves a verifier nothing to check, and each
    verifier met the absence at another place (`packcam verify` refused the bundle,
    verify.py called a token invalid, a frame went unread): both refuse it here, as
    ``bundle-malformed``, before reading any member."""
    for where, value, want in named_fields(index):
        names_ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not (
            (want == ENTRY and isinstance(value, dict))
            or (want == ENTRIES and isinstance(value, list))
            or (want == NAME and (value is None or isinstance(value, str)))
            or (want == NAMES and names_ok)
        ):
            return f"bundle.json's {where} is {json_shape(value)}, not {want}"
        for name in value if isinstance(value, list) else [value]:
            if isinstance(name, str) and name not in names:
                return f"bundle.json's {where} names {name!r}, which the bundle does not hold"
    return None


# What `packcam verify` reads of a bundle into memory: a member up to MEMBER_READ_MAX (a key
# frame up to FRAME_READ_MAX), all reads together up to READ_BUDGET (its clips are hashed in
# streams, never read whole). A real order's manifests, proofs, tokens and key frames come to
# a few MB. Defined here only: `packcam verify` imports them (this script imports nothing of
# packcam).
MEMBER_READ_MAX, FRAME_READ_MAX, READ_BUDGET = 64 << 20, 8 << 20, 128 << 20
# read once each (bundle.json, the bundle manifest, its signature, SHA256SUMS)
READ_ONCE = ("bundle.json", MANIFEST, MANIFEST_SIG, "SHA256SUMS")


def oversized_problem(index: dict[str, Any], sizes: Mapping[str, int]) -> str | None:
    """Why checking this bundle would read more than a verifier takes into memory (None: it
    would not): a member bundle.json names (its clips aside) past MEMBER_READ_MAX, a key
    frame past FRAME_READ_MAX, or all of them, each naming counted twice (a verifier reads a
    manifest or a signature at most twice), with the index, the bundle manifest and
    SHA256SUMS, past READ_BUDGET. ``sizes``: each member's size. `packcam verify` refused such
    a bundle (bundle-malformed) where verify.py read it and could say AUTHENTIC (a key frame
    padded to 9 MiB); both refuse it here, before any is read. The one rule of both."""
    total = 0
    for name in READ_ONCE:
        size = sizes.get(name, 0)
        if size > MEMBER_READ_MAX:
            return f"{name} is {size >> 20} MiB: more than a bundle's ({MEMBER_READ_MAX >> 20} MiB)"
        total += size
    for where, value, _want in named_fields(index):
        if re.fullmatch(r"clips\[\d+\]\.clip", where):
            continue  # a clip is hashed as it is unpacked, never read whole
        frame = ".frames[" in where
        for member in value if isinstance(value, list) else [value]:
            size = sizes.get(member, 0) if isinstance(member, str) else 0
            most = FRAME_READ_MAX if frame else MEMBER_READ_MAX
            if size > most:
                return (
                    f"bundle.json's {where} names {member!r} of {size >> 20} MiB: more than "
                    f"a {'key frame' if frame else 'member'} of a bundle ({most >> 20} MiB)"
                )
            total += 2 * size
    if total > READ_BUDGET:
        return (
            f"checking it would read more than {READ_BUDGET >> 20} MiB of its members into "
            "memory (members named over and over): not a packcam bundle"
        )
    return None


def json_shape(value: object) -> str:
    """What a JSON value is, to say in a reason ("an object", "the string 'x'")."""
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def misnamed_reference(index: dict[str, Any]) -> str | None:
    """A name ``bundle.json`` gives that is not one an export writes (member_name_problem:
    read from the zip it names no member; from the unpacked folder, a file under another
    name), or None."""
    return next((n for n in sorted(referenced_names(index)) if member_name_problem(n)), None)


def unreferenced_members(index: dict[str, Any], names: Sequence[str]) -> list[str]:
    """The members among ``names`` that ``bundle.json`` does not name (nor are fixed parts of
    every bundle): an export never writes one, so one is material only the export-time bundle
    manifest vouches for (another clip, a picture), with no timestamp, proof or manifest."""
    named = FIXED_MEMBERS | referenced_names(index)
    return sorted(n for n in names if n not in named and not n.endswith("/"))


def parse_witness_pin(value: str) -> str:
    """A --witness-key value: the witness key's SHA-256 fingerprint, or its public key PEM
    file; its fingerprint."""
    fp = normalise_fp(value)
    if fp is not None:
        return fp
    try:
        return key_fp(Path(value))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the witness key {value}: {exc}") from exc


def read_witness(path: str) -> dict[str, Any]:
    """The saved witness record (a JSON object), or WitnessFileError."""
    try:
        doc = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise WitnessFileError("witness-invalid", f"cannot read {path}: {exc!r}") from exc
    if not isinstance(doc, dict):
        raise WitnessFileError("witness-invalid", f"{path} is not a witness document")
    return doc


class InputError(Exception):
    """A file the verifier was given (a pin, the witness key) cannot be read: the verifier's own
    input (exit 3), never a verdict on the bundle."""


class WitnessFileError(Exception):
    """The --witness file is not one the witness signed: the verifier's own input (exit 3),
    never a verdict on the bundle."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(
            f"the witness record you passed is not one the witness signed ({code}: {detail}): "
            "fetch it again (GET /witness/<station>?tree_size=N of the central site)"
        )


def check_witness(
    res: Result,
    doc: dict[str, Any],
    seen: list[tuple[int, str]],
    pins_dir: Path,
    log_key: str = "",
    pinned: str | None = None,
    station: str = "",
    made: str = "",
    proved: int = 0,
) -> None:
    """The bundle's checkpoints against the witness's cosigned ones (GET /witness/<station>
    of the central site): another root for the same size is a forked log (judge_witnessed;
    ``proved``: one past the newest log entry the bundle proves). ``pinned``: the
    fingerprint the witness key must have (a file of any other key is refused); without it
    the file's key is only named. ``station``: the checkpoint's signed name, for where to
    fetch a record holding the bundle's sizes; ``made``: its signed time (vouched_sizes).
    A file that fails its own signatures or the pin raises WitnessFileError: anyone can flip a
    byte of a genuine record, so it says nothing of the bundle."""
    try:
        _check_witness(res, doc, seen, pins_dir, log_key, pinned, station, made, proved)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WitnessFileError("witness-invalid", f"not a witness document: {exc!r}") from exc


def _check_witness(
    res: Result,
    doc: dict[str, Any],
    seen: list[tuple[int, str]],
    pins_dir: Path,
    log_key: str,
    pinned: str | None,
    station: str,
    made: str,
    proved: int,
) -> None:
    key = pins_dir / "witness.pub.pem"
    key.write_text(doc["public_key_pem"])
    if pinned is not None and key_fp(key) != pinned:
        raise WitnessFileError(
            "witness-untrusted",
            f"it is cosigned by key {key_fp(key)}, not by the pinned witness key {pinned}",
        )
    if pinned is None:
        whose = (
            f"the witness key {key_fp(key)} of the file you gave, which was not pinned "
            "(--witness-key): compare it with the one the central witness publishes "
            "(GET /witness)"
        )
    else:
        whose = f"the pinned witness key {pinned}"

    def checked() -> Iterator[tuple[dict[str, Any], bytes]]:
        for i, c in enumerate(doc.get("checkpoints", [])):
            body, sig = pins_dir / f"w{i}.json", pins_dir / f"w{i}.sig"
            body.write_bytes(base64.b64decode(c["cosigned_b64"]))
            sig.write_bytes(base64.b64decode(c["cosignature_b64"]))
            if not signed_by(key, body, sig, pins_dir):
                raise WitnessFileError("witness-invalid", "a cosignature does not verify")
            yield c, body.read_bytes()

    record = cosigned_checkpoints(checked(), station, log_key, WitnessFileError)
    cosigned, attributed = record.roots, record.attributed
    for i, r in enumerate(doc.get("rotations", [])):
        final = rotation_final_size(r, log_key, pins_dir / f"r{i}")
        if final is not None and any(s > final for s, _ in seen):
            res.add(
                FAIL,
                "witness",
                f"the witness saw this key retired at {final} entries (its final checkpoint, "
                "which it signed); this bundle's log goes on past that",
                "log-after-rotation",
            )
            return
    judged = judge_witnessed(seen, record, proved)
    if judged.status == "fork":
        res.add(
            FAIL,
            "witness",
            f"the witness cosigned another root for {judged.size} entries: "
            f"this bundle comes from a forked log (cosigned by {whose})",
            "log-fork",
        )
        return
    if judged.status == "seen":
        res.add(OK, "witness", f"{judged.text} by {whose}")
    else:
        vouched: tuple[set[int], str] = (set(), "")
        if doc.get("sizes_statement_b64"):
            body, sig = pins_dir / "sizes.json", pins_dir / "sizes.sig"
            body.write_bytes(base64.b64decode(doc["sizes_statement_b64"]))
            sig.write_bytes(base64.b64decode(doc.get("sizes_signature_b64") or ""))
            if signed_by(key, body, sig, pins_dir):
                vouched = vouched_sizes(json.loads(body.read_bytes()), station, attributed, made)
        gap = witness_gap(station, vouched, [s for s, _ in seen if s not in cosigned])
        res.add(WARN, "witness", f"not cosigned by the witness (yet){judged.text}{gap}; the "
                f"record checked is signed by {whose}", "checkpoint-unwitnessed")  # fmt: skip


def signed_by(key: Path, data: Path, sig: Path, cwd: Path) -> bool:
    """Whether the Ed25519 public key in ``key`` signed ``data`` (``sig``: 64 raw bytes)."""
    ok, _ = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(key), "-rawin", "-in", str(data),
        "-sigfile", str(sig), cwd=cwd,
    )  # fmt: skip
    return ok


class Cosigned(NamedTuple):
    """What a witness record's cosigned checkpoints say of one station's log (of one key)."""

    roots: dict[int, str]  # size -> root cosigned in this key's log (body given)
    loose: set[tuple[int, str]]  # cosigned, the log unnamed (no body)
    attributed: set[str]  # checkpoints (SHA-256) cosigned, given with their body


def cosigned_checkpoints(
    checked: Iterable[tuple[dict[str, Any], bytes]],
    station: str,
    log_key: str | None,
    invalid: Callable[[str, str], Exception],
) -> Cosigned:
    """The checkpoints a witness record lists (``checked``: each entry of its ``checkpoints``
    with its cosigned statement, whose cosignature the caller verified as it yields it),
    read for the log of ``station`` whose key is ``log_key``. A checkpoint given with its
    body must be the one the witness cosigned: else the caller's ``invalid`` exception is
    raised (``witness-invalid``), as for a cosignature that does not verify."""
    out = Cosigned({}, set(), set())
    for c, cosigned in checked:
        w = json.loads(cosigned)
        if station and w.get("station") not in (station, None):
            continue  # the witness's word on another station's log
        if not c.get("body_b64"):  # missing or empty
            # sizes repeat across a station's logs (one per key): a cosignature without the
            # checkpoint it names may confirm this root, never contradict it
            out.loose.add((int(w["tree_size"]), str(w["root_sha256"])))
            continue
        body = base64.b64decode(c["body_b64"])
        if hashlib.sha256(body).hexdigest() != w.get("checkpoint_sha256"):
            raise invalid("witness-invalid", "a cosigned checkpoint was swapped")
        out.attributed.add(str(w["checkpoint_sha256"]))
        if log_key and json.loads(body).get("key") not in (log_key, None):
            continue
        out.roots[int(w["tree_size"])] = str(w["root_sha256"])
    return out


class Witnessed(NamedTuple):
    """What a witness record's cosigned checkpoints make of a bundle (judge_witnessed)."""

    status: str  # "fork" (log-fork), "seen" (every clip) or "unseen" (not, or not yet)
    size: int  # fork: the size cosigned with another root; else entries it cosigned (0: none)
    text: str  # seen: what it cosigned; unseen: how far it saw, when short of a clip


def judge_witnessed(seen: Sequence[tuple[int, str]], cosigned: Cosigned, proved: int) -> Witnessed:
    """The bundle's signed checkpoints (``seen``: size, root; its own first, then its clips'
    own, each of which the bundle proves a prefix of its own, else it fails with log-fork)
    against what a witness record cosigned in the same log (``cosigned``: cosigned_checkpoints).

    Another root than the witness's at any of those sizes: a forked log. Otherwise the witness
    has seen the bundle's log up to the largest of them it cosigned, and vouches for the
    bundle only if that holds every log entry the bundle proves (``proved``: one past the
    newest, its clips' and deleted clips'). A clip's own checkpoint cosigned says nothing of
    a later clip: on a fork padded past the log the witness saw (to a size it never cosigned),
    the first clip's checkpoint is the cosigned one and the second clip the forger's."""
    for size, root in seen:
        if size in cosigned.roots and cosigned.roots[size] != root:
            return Witnessed("fork", size, "")
    reach = max(
        (s for s, r in seen if cosigned.roots.get(s) == r or (s, r) in cosigned.loose),
        default=0,
    )
    if not reach:
        return Witnessed("unseen", 0, "")
    if reach >= proved:
        whole = bool(seen) and reach == seen[0][0]
        return Witnessed(
            "seen",
            reach,
            f"the bundle's checkpoint ({reach} entries) was cosigned"
            if whole
            else f"the log up to {reach} entries, which holds every clip of this bundle, was "
            "cosigned (the checkpoint signed after its newest clip)",
        )
    return Witnessed(
        "unseen",
        reach,
        f"; it cosigned this log up to {reach} entries only, which do not reach log entry "
        f"{proved - 1} (a clip of this bundle): the witness has not seen that clip",
    )


def rotation_final_size(r: dict[str, Any], log_key: str, work: Path) -> int | None:
    """The size at which a rotation a witness record lists retired ``log_key``: only when its
    final checkpoint (``body_b64``) is of that key and signed by it. The record's other
    fields are nobody's signature: a line reading "retired at 1" would otherwise turn every
    honest bundle of the key into a stolen key's. ``work``: a path prefix for its files."""
    if not log_key or r.get("old_key") != log_key:
        return None
    pub, body, sig = (work.with_name(work.name + x) for x in (".pub.pem", ".json", ".sig"))
    try:
        pub.write_text(str(r["old_public_key_pem"]))
        body.write_bytes(base64.b64decode(r["body_b64"]))
        sig.write_bytes(base64.b64decode(r["signature_old_b64"]))
        if key_fp(pub) != log_key or not signed_by(pub, body, sig, work.parent):
            return None
        cp = json.loads(body.read_bytes())
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(cp, dict) or cp.get("key") != log_key or cp.get("final") is not True:
        return None
    size = cp.get("tree_size")
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def witness_path(station: str, sizes: Sequence[int]) -> str:
    """Where the central site serves its witness record of ``station`` with the cosigned
    checkpoints at ``sizes`` however old they are (the plain record lists the newest only)."""
    want = list(dict.fromkeys(sizes))[:WITNESS_SIZES_MAX]
    return f"/witness/{quote(station, safe='')}?tree_size={','.join(str(s) for s in want)}"


def vouched_sizes(
    statement: Any, station: str, attributed: set[str], not_before: Any
) -> tuple[set[int], str]:
    """The tree sizes at which a witness record holds every checkpoint the witness cosigned,
    by its signed statement (``sizes_statement_b64``, its signature already verified), and
    its time: each checkpoint it lists (by SHA-256) must be in the record with its body
    (``attributed``: whose log it is of is known), and it must be no older than the bundle's
    checkpoint (``not_before``, its signed time: a statement signed before that checkpoint
    existed, asked for a size the log had not reached, says nothing of it). Only at those
    sizes can a verifier say the witness never cosigned a checkpoint of the bundle's log;
    ``requested_sizes`` and ``never_witnessed_sizes`` beside it are signed by no one (a
    seller drops the checkpoint that forks his bundle and lists its size there)."""
    if not isinstance(statement, dict) or statement.get("type") != SIZES_STATEMENT_TYPE:
        return set(), ""
    sizes, listed = statement.get("tree_sizes"), statement.get("checkpoints")
    if statement.get("station") != station or not isinstance(sizes, list):
        return set(), ""
    if not isinstance(listed, list) or not set(map(str, listed)) <= attributed:
        return set(), ""
    said, made = parse_time(str(statement.get("time"))), parse_time(str(not_before))
    if said is None or said.tzinfo is None or made is None or made.tzinfo is None:
        return set(), ""
    if (made - said).total_seconds() > WITNESS_CLOCK_SLACK_S:
        return set(), ""
    return {s for s in sizes if isinstance(s, int) and not isinstance(s, bool)}, said.isoformat()


def witness_gap(station: str, vouched: tuple[set[int], str], missing: Sequence[int]) -> str:
    """What to say of the bundle's checkpoint sizes a witness record holds none of: those the
    witness's signed statement covers (``vouched``: vouched_sizes, and its time) it never
    cosigned in this log; the others the record does not include, and where to fetch them."""
    sizes, as_of = vouched
    missing = list(dict.fromkeys(missing))
    never = [s for s in missing if s in sizes]
    absent = [s for s in missing if s not in sizes]
    said = ""
    if never:
        said += (
            f"; the witness's signed statement of {as_of} says it never cosigned a checkpoint "
            f"of this log at {', '.join(map(str, never))} entries"
        )
    if absent:
        said += (
            f"; the witness record given does not include its checkpoints at "
            f"{', '.join(map(str, absent))} entries (a record lists the newest ones only): "
            f"fetch {witness_path(station, absent)} from the central site and verify again"
        )
    return said


def _check(
    root: Path,
    ca_pins: list[str],
    tsa_pins: list[str],
    max_delay_s: float,
    pins_dir: Path,
    witness: dict[str, Any] | None,
    witness_pin: str | None = None,
) -> int:
    res = Result()
    index = json.loads((root / "bundle.json").read_bytes())
    if index.get("format") != "packcam-evidence-bundle":
        raise ValueError("bundle.json is not a packcam evidence bundle index")
    if twice := clip_listed_twice(index):
        raise ValueError(f"bundle.json lists {twice} more than once")
    if misnamed := misnamed_reference(index):
        raise ValueError(f"bundle.json names {misnamed!r}, not a member name an export writes")
    files = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if not p.is_dir()}
    if unheld := unheld_reference(index, files):  # as `packcam verify`, before any is read
        raise ValueError(unheld)
    if big := oversized_problem(index, {n: p.stat().st_size for n, p in files.items()}):
        raise ValueError(big)  # as `packcam verify`
    keys = index["keys"]
    pub = keys["station_public_key"]

    def sig_ok(data: str, sig: str, key: str = pub) -> bool:
        return openssl(
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            key,
            "-rawin",
            "-in",
            data,
            "-sigfile",
            sig,
            cwd=root,
        )[0]

    def have(name: str | None) -> bool:
        return bool(name) and (root / str(name)).is_file()

    digests: dict[Path, str] = {}

    def sha256_of(path: Path) -> str:
        """A member's SHA-256, read once in 1 MiB blocks (a clip can be gigabytes; the member
        list, SHA256SUMS and the clip's manifest all ask for it)."""
        if path not in digests:
            h = hashlib.sha256()
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            digests[path] = h.hexdigest()
        return digests[path]

    # 0. a retired key's clips: the chain of rotation statements to the key that signed the
    # bundle manifest (each a final checkpoint signed by the old and the new key)
    signer = pub  # each link's old key; at the end the key that signed the bundle manifest
    links, statements = index.get("rotations") or [], []  # the links that hold, their bodies
    station_keys: list[tuple[str, str | None]] = []  # each key of the chain, retired when
    cp_body = (root / index["checkpoint"]["body"]).read_bytes()
    for j, link in enumerate(links):
        old = signer
        signer = succ = link["successor_public_key"]
        body = (root / link["checkpoint"]).read_bytes()
        rc = json.loads(body)
        if not (
            rc.get("type") == "packcam-checkpoint"
            and rc.get("final") is True
            and rc.get("key") == key_fp(root / old)
            and rc.get("successor_key") == key_fp(root / succ)
            and isinstance(rc.get("tree_size"), int)
            and sig_ok(link["checkpoint"], link["signature_old"], old)
            and sig_ok(link["checkpoint"], link["signature_new"], succ)
        ):
            res.add(
                FAIL,
                f"rotation[{j}]",
                "not a final checkpoint signed by both keys",
                "rotation-unsigned",
            )
            break  # as `packcam verify`: the chain ends here (its key signs the rest)
        statements.append(rc)
        station_keys.append((old, str(rc.get("time"))))
        if j == 0 and body != cp_body:
            res.add(
                FAIL,
                f"rotation[{j}]",
                "the bundle's checkpoint is not its log's final one",
                "log-after-rotation" if signed_after_final(cp_body, rc) else "rotation-unsigned",
            )
        else:
            res.add(OK, f"rotation[{j}]", f"log closed at {rc['tree_size']} entries, both "
                    "keys signed the final checkpoint")  # fmt: skip

    station_keys.append((signer, None))  # the bundle manifest's: the station's now

    # 1. every member is covered by the manifest the station signed (none at all: exported
    # where the key was not readable, never authentic; one that does not verify: a failure)
    bm: dict[str, Any] = json.loads((root / MANIFEST).read_bytes()) if have(MANIFEST) else {}
    if not have(MANIFEST):
        res.add(WARN, "bundle.manifest", "missing: the bundle index, summary and key frames "
                "are not covered by a signature", "bundle-member-unsigned")  # fmt: skip
    elif not (
        have(MANIFEST_SIG)
        and sig_ok(MANIFEST, MANIFEST_SIG, signer)
        # what it is and which key signed it: no other signed document stands in for it
        and bm.get("type") == "packcam-bundle-manifest"
        and bm.get("station_key") == key_fp(root / signer)
    ):
        bm = {}
        res.add(
            FAIL,
            "bundle.manifest",
            "not signed by the station key (or not a bundle manifest of this key)",
            "bundle-manifest-bad-signature",
        )
    else:
        members = bm.get("members") or {}
        bad = False
        for name, p in files.items():
            if name in (MANIFEST, MANIFEST_SIG, "SHA256SUMS"):
                continue
            if members.get(name) != sha256_of(p):
                res.add(
                    FAIL,
                    name,
                    "not covered by the signed bundle manifest",
                    "bundle-member-unsigned",
                )
                bad = True
        for name in sorted(set(members) - set(files)):
            res.add(
                FAIL, name, "listed in the bundle manifest but missing", "bundle-member-missing"
            )
            bad = True
        # SHA256SUMS is unsigned, for transport only; but one that disagrees with the members
        # means something was changed (as `packcam verify`)
        if have("SHA256SUMS"):
            lines = (root / "SHA256SUMS").read_bytes().decode("utf-8").splitlines()
            sums = {n: h for h, _, n in (ln.partition("  ") for ln in lines)}  # the last counts
            for name, digest in sums.items():
                if name in files and sha256_of(files[name]) != digest:
                    res.add(FAIL, "SHA256SUMS", f"lists another SHA-256 for {name}",
                            "bundle-member-unsigned")  # fmt: skip
                    bad = True
                    break
        if not bad:
            res.add(OK, "bundle.manifest", f"all {len(members)} members match the signed list")
        res.covered = True
    for name in unreferenced_members(index, list(files)):
        res.add(FAIL, name, "not named by bundle.json: no manifest, timestamp or log proof "
                "vouches for it, only the bundle manifest signed at export",
                "bundle-member-unreferenced")  # fmt: skip
    # Whoever made the bundle wrote its copy of this script: one that differs may say anything
    own = Path(globals().get("__file__") or "-")  # "<stdin>" as `python3 - < verify.py`
    if own.is_file() and have(VERIFIER) and (root / VERIFIER).read_bytes() != own.read_bytes():
        res.add(WARN, VERIFIER, "the bundle's verify.py is not this one (another packcam "
                "version, or edited after export): never run the bundle's own copy; this "
                "verdict is this script's", "bundle-verifier-differs")  # fmt: skip

    # 2. who signed: the station key's certificate against the company CA you pinned
    # the first certificate of the shipped CA file, as `packcam verify` reads it: with every
    # one of them a candidate, a fingerprint pinned of the second was AUTHENTIC here and
    # cert-foreign-ca there (an export ships one)
    shipped_ca = b""
    if have(keys.get("company_ca")):
        shipped_ca = (pem_certs((root / keys["company_ca"]).read_bytes()) or [b""])[0]
        if not shipped_ca:
            raise ValueError(f"{keys['company_ca']} holds no certificate")
    trusted = pins(ca_pins, pem_certs(shipped_ca), "company CA")

    def certify(cert: str | None, key: str, what: str) -> tuple[bool, str | None]:
        """(anchored, certified station name) of one signing key."""
        if not have(cert):
            res.add(
                FAIL if ca_pins else WARN,
                what,
                "no certificate for the station key",
                "cert-missing" if ca_pins else "signer-unanchored",
            )
            return False, None
        ok, key_pem = openssl("x509", "-in", str(cert), "-noout", "-pubkey", cwd=root)
        if not ok:  # as `packcam verify`, which cannot load it: not a bundle it reads
            raise ValueError(f"{cert} is not a certificate openssl reads")
        # the key itself, not its text: a line of text before it is no other key
        if key_der(key_pem) != key_der((root / key).read_text()):
            res.add(FAIL, what, "the certificate is for another key", "cert-key-mismatch")
            return False, None
        _, subj = openssl(
            "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253", cwd=root
        )
        name = subject_cn(subj)
        shipped = f"CA {cert_fingerprint(shipped_ca)}" if shipped_ca else "no CA"
        if ca_pins and not trusted:  # a pinned fingerprint the bundle's CA does not have
            res.add(
                FAIL,
                what,
                f"not from the company CA you pinned (the bundle ships {shipped})",
                "cert-foreign-ca",
            )
            return False, None
        if not trusted and not shipped_ca:
            res.add(
                WARN,
                what,
                "has a certificate but no company CA came with it: compare the station key "
                f"{key_fp(root / key)} with the seller's",
                "signer-unanchored",
            )
            return False, name
        cafile = pins_dir / "ca.pem"  # the CA you pinned (else the shipped one, to say so)
        cafile.write_bytes(b"".join(trusted) or shipped_ca)
        # -trusted: these and nothing else (-CAfile also trusts the machine's CA store)
        ok, out = openssl("verify", "-x509_strict", "-trusted", str(cafile), str(cert), cwd=root)
        if not ok:
            where = "you pinned" if trusted else "shipped in the bundle"
            res.add(
                FAIL, what, f"does not chain to the company CA {where}: {out}", "cert-foreign-ca"
            )
            return False, None
        # As `packcam verify`: the CA certified this key for signing documents (a certificate
        # it issued for, say, a web server proves nothing about clips).
        _, ext = openssl("x509", "-in", str(cert), "-noout", "-ext", "extendedKeyUsage,keyUsage",
                         cwd=root)  # fmt: skip
        eku = ext.partition("Extended Key Usage:")[2].partition("X509v3")[0]
        ku = ext.partition("X509v3 Key Usage:")[2].partition("X509v3")[0]
        signs = "X509v3 Key Usage:" not in ext or "Digital Signature" in ku
        if not signs or not any(w in eku for w in (DOCUMENT_SIGNING, "Document Signing")):
            res.add(
                FAIL,
                what,
                "the certificate is not for signing documents (extended key usage "
                f"{DOCUMENT_SIGNING}, key usage digitalSignature)",
                "cert-foreign-ca",
            )
            return False, None
        if trusted:
            res.add(OK, what, f"certified as {name!r} by the company CA you pinned")
            return True, name
        res.add(
            WARN,
            what,
            f"certified as {name!r} by the CA shipped in the bundle "
            f"{cert_fingerprint(shipped_ca)}: compare it with the seller's",
            "signer-unanchored",
        )
        return False, name

    anchored, station = certify(keys.get("station_key_certificate"), pub, "signer")
    for j, link in enumerate(links[: len(statements)]):
        ok, succ_station = certify(
            link.get("successor_certificate"), link["successor_public_key"],
            f"rotation[{j}].signer",
        )  # fmt: skip
        anchored = anchored and ok
        if station and succ_station and succ_station != station:
            res.add(FAIL, f"rotation[{j}]", f"successor certified for {succ_station!r}",
                    "station-name-mismatch")  # fmt: skip
    res.signer_anchored = anchored
    cpi = index["checkpoint"]
    cp = json.loads(cp_body)
    if cp.get("type") != "packcam-checkpoint":
        raise ValueError("the checkpoint is not a packcam checkpoint")
    # every signed statement names the station: the one the key is certified for
    named = [("checkpoint", cp), *((f"rotation[{j}]", rc) for j, rc in enumerate(statements))]
    for what, doc in named + ([("bundle.manifest", bm)] if bm else []):
        if station is not None and doc.get("station") != station:
            res.add(FAIL, what, f"says station {doc.get('station')!r}, certificate {station!r}",
                    "station-name-mismatch")  # fmt: skip

    # 3. the checkpoint every proof leads to
    if cp.get("key") != key_fp(root / pub) or not sig_ok(cpi["body"], cpi["signature"]):
        res.add(FAIL, "checkpoint", "not signed by the station key", "checkpoint-bad-signature")
    cp_size, cp_root = int(cp["tree_size"]), bytes.fromhex(cp["root_sha256"])
    shipped_tsa = (root / keys["tsa_roots"]).read_bytes() if have(keys.get("tsa_roots")) else b""
    tsa_trusted = pins(tsa_pins, pem_certs(shipped_tsa), "TSA root")
    tsa_file = pins_dir / "tsa-roots.pem"  # what you pinned, for openssl -CAfile
    tsa_file.write_bytes(b"".join(tsa_trusted))

    def ts_verify(tst: str, data: str, cafile: Path, *extra: str) -> tuple[bool, str]:
        return openssl("ts", "-verify", "-token_in", "-in", tst, "-data", data,
                       "-CAfile", str(cafile), *extra, cwd=root)  # fmt: skip

    def read_token(
        t: str, data: str, say: Callable[[str, str, str], None]
    ) -> tuple[datetime | None, float, bool] | None:
        """(genTime, accuracy, pinned) of the token ``t`` over the member ``data``; None, said
        as a failure, when it is not a valid token over it."""
        # What the token proves by itself, pinned or not: it is over this data and signed
        # by the TSA certificate inside it (critical timeStamping EKU, ESS); -partial_chain
        # trusts that certificate for this check only.
        _, certs = openssl("pkcs7", "-inform", "DER", "-in", t, "-print_certs", cwd=root)
        own = pins_dir / "token-certs.pem"
        own.write_bytes(b"".join(pem_certs(certs.encode())))
        text = token_text(root / t, root)
        when, acc = token_gen_time(text), token_accuracy(text)
        alg = token_hash_name(text)
        if alg is not None and alg != "sha256":  # as `packcam verify`: what a station asks for
            say(
                FAIL,
                f"the token timestamps other data: its imprint is {alg}, not the SHA-256 of "
                "what the station signed",
                "tsa-other-data",
            )
            return None
        # the TSA's certificate as of when it signed, as `packcam verify` judges it: an
        # honest bundle outlives it
        attime = ("-attime", str(int(when.timestamp()))) if when else ()
        ok, out = ts_verify(t, data, own, "-partial_chain", *attime)
        if not ok:
            other = "message imprint mismatch" in out
            say(
                FAIL,
                ("the token timestamps other data" if other else "not a valid token")
                + f": {out.strip()[-200:]}",
                "tsa-other-data" if other else "tsa-invalid",
            )
            return None
        return when, acc, bool(tsa_trusted) and ts_verify(t, data, tsa_file, *attime)[0]

    def tokens(
        name: str,
        data: str,
        tsts: list[str],
        ended: datetime | None,
        timed: bool = False,
        failures_only: bool = False,
        stated: datetime | None = None,
    ) -> bool:
        """``timed``: a clip's tokens, held to its recorded end ``ended`` (None: it has none).
        ``failures_only``: tokens that only back up another proof (a clip's own checkpoint,
        a rotation statement) are reported only when they are bad, as `packcam verify` does.
        ``stated``: the time the signed data says it was signed at (a checkpoint's): a token
        may come much later, but not more than the bound before it."""
        anchored = False

        def say(status: str, reason: str, code: str = "") -> None:
            if status == FAIL or not failures_only:
                res.add(status, name, reason, code)

        if not tsts:
            say(WARN, "no RFC 3161 token", "time-unanchored")
        for t in tsts:
            read = read_token(t, data, say)
            if read is None:
                continue
            when, acc, pinned = read
            in_bounds = True
            if timed and (ended is None or when is None):
                in_bounds = False
                say(
                    FAIL,
                    "the signed manifest states no recorded end (ended_at with its UTC offset) "
                    "or the token no time: the TSA's time cannot be held to it",
                    "time-out-of-bounds",
                )
            elif ended is not None and when is not None:
                delta = (when - ended).total_seconds()
                judged = judge_end(delta, acc, max_delay_s)
                if judged == "early":
                    in_bounds = False
                    loose = (
                        f" (the TSA states an accuracy of only ± {acc:g} s)"
                        if acc > ACCURACY_GRACE_S
                        else ""
                    )
                    say(
                        FAIL,
                        f"TSA time {when.isoformat()} is {delta:+.0f} s from the "
                        f"recorded end {ended.isoformat()}{loose}: the TSA saw the manifest "
                        "before the end it states",
                        "time-out-of-bounds",
                    )
                elif judged in ("late", "loose"):
                    in_bounds = False
                    say(
                        WARN,
                        f"a TSA saw this manifest at {when.isoformat()}, {abs(delta):.0f} s "
                        f"{'after' if delta >= 0 else 'before'} the recorded end "
                        f"{ended.isoformat()} (allowed: {max_delay_s:g} s)" + late_text(acc),
                        "time-late",
                    )
                elif judged == "clock-ahead":
                    say(
                        WARN,
                        f"TSA time {when.isoformat()} is {-delta:.0f} s before the recorded end "
                        f"{ended.isoformat()}: the station clock was ahead",
                        "clock-ahead",
                    )
            if (
                stated is not None
                and stated.tzinfo is not None
                and when is not None
                and (stated - when).total_seconds() > max_delay_s + 1
            ):
                say(
                    FAIL,
                    f"signed, it says, at {stated.isoformat()}, but the TSA saw it at "
                    f"{when.isoformat()}: its time is not when it was signed",
                    "time-out-of-bounds",
                )
            at = when.isoformat() if when else "?"
            if pinned:
                say(OK, f"timestamped at {at} by a TSA you pinned")
                anchored = anchored or in_bounds
            else:
                say(
                    WARN,
                    f"token valid, timestamped at {at}, but not by a TSA you pinned: compare "
                    "its root with the TSA's published one and pin it (--tsa-ca)",
                    "time-unanchored",
                )
        return anchored

    def check_start(name: str, body: dict[str, Any], tsts: list[str], n: int) -> None:
        """The clip's start statement and its tokens (``judge_start``, as `packcam verify`)."""
        digest = start_statement_digest(body)
        if digest is None:
            res.add(WARN, name, NO_START_STATEMENT, "start-unanchored")
            return
        if wrong := start_statement_problem(body):
            res.add(FAIL, name, wrong, "start-time-inconsistent")
            return
        data = pins_dir / f"start-{n}.json"  # the statement's bytes, as the station hashed them
        data.write_bytes(canonical(body["start_statement"]).encode("utf-8"))

        def say(status: str, reason: str, code: str = "") -> None:
            res.add(status, name, reason, code)

        seen = []
        for t in tsts:
            read = read_token(t, str(data), say)
            if read is not None and read[0] is not None:
                seen.append((read[0], read[1], read[2]))
        stated = parse_time(str(body["start_statement"]["started_at"]))
        assert stated is not None  # start_statement_problem parsed it
        status, code, text = judge_start(stated, seen, max_delay_s, clock_step(body)[0])
        res.add(status, name, text, code)

    cp_time = parse_time(str(json.loads(cp_body).get("time")))
    tokens("checkpoint.timestamp", cpi["body"], cpi.get("timestamps", []), None, stated=cp_time)
    for j, link in enumerate(links[: len(statements)]):
        tokens(f"rotation[{j}].timestamp", link["checkpoint"], link.get("timestamps", []), None,
               failures_only=True)  # fmt: skip

    # 4. each clip
    seqs = set()
    # the clips' own checkpoints the station key signed, for the witness (as `packcam verify`:
    # one whose signature fails is no checkpoint of this log to hold to a cosigned root)
    own_checkpoints: list[tuple[int, str]] = []
    signed = {  # each clip's signed manifest, to name a swap
        item["clip"]: json.loads((root / item["manifest"]).read_bytes().decode("utf-8"))
        for item in index["clips"]
        if item.get("manifest")
    }
    bodies = []  # the clips' signed manifests
    for n, item in enumerate(index["clips"]):
        pre = f"clip[{n}]"
        if not item.get("manifest"):
            res.add(FAIL, pre, "no signed manifest (recorded before the proof was enabled?)",
                    "manifest-missing")  # fmt: skip
            continue
        raw = (root / item["manifest"]).read_bytes()
        body = json.loads(raw.decode("utf-8"))
        bodies.append(body)
        if canonical(body).encode("utf-8") != raw:  # what was signed, logged and timestamped
            res.add(FAIL, pre, "manifest bytes are not in canonical form", "manifest-not-canonical")
        if not sig_ok(item["manifest"], item["signature"]):
            res.add(FAIL, pre, "manifest not signed by the station key", "manifest-bad-signature")
        elif body.get("station_key") != key_fp(root / pub):
            res.add(FAIL, pre, f"manifest names key {body.get('station_key')} but verifies with "
                    "the station key", "manifest-key-mismatch")  # fmt: skip
        if station is not None and body.get("station") != station:
            res.add(
                FAIL,
                pre,
                f"manifest says station {body.get('station')!r}, certificate {station!r}",
                "station-name-mismatch",
            )
        if body.get("order_id") != index.get("order_id"):
            res.add(FAIL, pre, "the bundle is labelled with another order", "bundle-order-mismatch")
        clip = root / item["clip"]
        digest = sha256_of(clip)
        signed_bytes, played = False, None  # how long the signed bytes play (not another's)
        if digest == body.get("sha256") and clip.stat().st_size == body.get("size"):
            res.add(OK, pre, f"{item['clip']}: SHA-256 matches the signed manifest")
            signed_bytes, played = True, clip_span_s(clip)
            if no_frames := frames_missing(item):
                res.add(WARN, pre, no_frames, "bundle-frames-missing")
        elif any(c != item["clip"] and m.get("sha256") == digest for c, m in signed.items()):
            res.add(FAIL, pre, f"{item['clip']} is another clip of this bundle: the manifests "
                    "were swapped", "manifest-swapped")  # fmt: skip
        else:
            res.add(FAIL, pre, f"{item['clip']} is not the recorded file", "clip-altered")
        if PurePosixPath(str(body.get("path", ""))).name != PurePosixPath(item["clip"]).name:
            res.add(FAIL, pre, f"the manifest describes {body.get('path')!r}, not {item['clip']}",
                    "manifest-swapped")  # fmt: skip
        inc = json.loads((root / item["inclusion"]).read_bytes())
        seq = body.get("seq")
        if isinstance(seq, int):
            seqs.add(seq)
        path = [bytes.fromhex(h) for h in inc["audit_path"]]
        if inc.get("log_index") != seq:
            res.add(FAIL, pre, f"the inclusion proof is for entry {inc.get('log_index')}, the "
                    f"manifest says {seq}", "log-index-mismatch")  # fmt: skip
        elif int(inc.get("tree_size", -1)) != cp_size:
            res.add(FAIL, pre, "the inclusion proof is not for the bundled checkpoint",
                    "log-proof-mismatch")  # fmt: skip
        elif verify_inclusion(seq, cp_size, leaf_hash(raw), path, cp_root):
            res.add(OK, pre, f"entry {seq} of the station's log of {cp_size} entries")
        else:
            res.add(FAIL, pre, "not included in the signed log", "log-not-included")
        fc = item.get("first_checkpoint")
        if fc:
            fcb = json.loads((root / fc["body"]).read_bytes())
            if fcb.get("key") != key_fp(root / pub) or not sig_ok(fc["body"], fc["signature"]):
                res.add(FAIL, pre, "the clip's own checkpoint is not signed by the station key",
                        "checkpoint-bad-signature")  # fmt: skip
            else:
                own_checkpoints.append((int(fcb["tree_size"]), str(fcb["root_sha256"])))
                cons = json.loads((root / fc["consistency"]).read_bytes())
                tokens(f"{pre} first-checkpoint", fc["body"], fc.get("timestamps", []), None,
                       failures_only=True)  # fmt: skip
                if not isinstance(seq, int) or int(fcb["tree_size"]) <= seq:
                    res.add(FAIL, pre, f"the clip's own checkpoint covers {fcb['tree_size']} "
                            f"entries, not entry {seq}", "log-proof-mismatch")  # fmt: skip
                elif verify_consistency(
                    int(fcb["tree_size"]),
                    cp_size,
                    [bytes.fromhex(h) for h in cons.get("proof", [])],
                    bytes.fromhex(fcb["root_sha256"]),
                    cp_root,
                ):
                    res.add(OK, pre, "the log only grew since the clip's own checkpoint")
                else:
                    res.add(FAIL, pre, "the newest checkpoint does not extend the clip's own",
                            "log-fork")  # fmt: skip
        # ended_at without a UTC offset would be another instant in each verifier's time zone
        ended = parse_time(str(body.get("ended_at")))
        ended = ended.astimezone(timezone.utc) if ended and ended.tzinfo else None  # noqa: UP017
        step, bad_step = clock_step(body)
        stamps, member = item.get("timestamps", []), item["manifest"]
        res.time_anchors.append(tokens(f"{pre} timestamp", member, stamps, ended, True))
        check_start(f"{pre} start", body, item.get("start_timestamps") or [], n)
        if bad_step:
            res.add(FAIL, f"{pre} manifest.times", bad_step, "time-inconsistent")
        elif step:
            res.add(OK, f"{pre} manifest.times", step_text(step))
        # start, end and duration against one another; then the duration against the clip's
        # own length (a start moved back with the duration inflated to match)
        wrong = span_problem(body, ended) if ended is not None else None
        if wrong is None and ended is not None and signed_bytes:
            wrong = played_problem(body, played)
        if wrong:
            res.add(FAIL, f"{pre} times", wrong, "time-inconsistent")
        if shifted := local_time_problem(body):
            res.add(FAIL, f"{pre} times", shifted, "time-offset-invalid")
    if overlap := overlap_problem(bodies):
        res.add(FAIL if overlap[1] else WARN, "clips", overlap[0], "clip-overlap")
    # 5. clips of the order the station's retention deleted: the clip's signed manifest in the
    # log and the station's signed deletion record. The record is the seller's own word: it
    # explains a gap, it proves nothing of what the clip showed, so it is only ever a warning.
    want = {int(x) for x in bm.get("order_clips", [])}
    order = sorted(want or seqs)
    gone: set[int] = set()
    now = datetime.now(timezone.utc)  # noqa: UP017
    for n, item in enumerate(index.get("deleted_clips") or []):
        pre = f"deleted[{n}] {PurePosixPath(item['clip']).name}"
        raw = (root / item["manifest"]).read_bytes()
        body = json.loads(raw.decode("utf-8"))
        inc = json.loads((root / item["inclusion"]).read_bytes())
        seq = body.get("seq")
        why = None
        if canonical(body).encode("utf-8") != raw or not sig_ok(
            item["manifest"], item["signature"]
        ):
            why = "its manifest is not signed by the station key"
        elif not (
            isinstance(seq, int)
            and inc.get("log_index") == seq
            and int(inc.get("tree_size", -1)) == cp_size
            and verify_inclusion(seq, cp_size, leaf_hash(raw),
                                 [bytes.fromhex(h) for h in inc["audit_path"]], cp_root)
        ):  # fmt: skip
            why = "its manifest is not in the bundled signed log"
        else:
            why = deletion_problem(
                body,
                (root / item["deletion_record"]).read_bytes(),
                next((r for k, r in station_keys
                      if sig_ok(item["deletion_record"], item["deletion_signature"], k)), False),
                now,
            )  # fmt: skip
        if why is None and body.get("order_id") != index.get("order_id"):
            why = f"it is a clip of order {body.get('order_id')!r}"
        if why is None and (seq in seqs or seq in gone or (order and seq not in order)):
            why = f"log entry {seq} is not a clip of this order missing from the bundle"
        if why is not None:
            res.add(FAIL, pre, f"not accepted as a clip deleted by retention: {why}",
                    "deletion-record-invalid")  # fmt: skip
            continue
        d = json.loads((root / item["deletion_record"]).read_bytes())
        gone.add(seq)
        # both parsed with their offsets by deletion_problem
        age = parse_time(d["deleted_utc"]) - parse_time(body["ended_at"])  # type: ignore[operator]
        res.add(
            WARN,
            pre,
            f"clip {order.index(seq) + 1 if seq in order else '?'} of this order "
            f"({utc_plain(body['started_at'])}–{utc_plain(body['ended_at'])[11:]} UTC, sha256 "
            f"{body['sha256']}) was deleted by the station's retention on "
            f"{utc_plain(d['deleted_utc'])[:16]} UTC, by its own signed record "
            f"({age.total_seconds() / 86400:.1f} days after it was recorded; "
            f"{d.get('reason', '')}): it is not in this bundle; the record is the seller's "
            "statement, its date too (no time-stamp authority saw it): it explains the gap "
            "and proves neither when the clip was deleted nor what it showed",
            "clip-deleted-by-retention",
        )
    if witness is not None:
        seen = [(cp_size, str(cp["root_sha256"])), *own_checkpoints]
        # the log entries the bundle proves: its clips' and the deleted clips it accounts for
        proved = max(seqs | gone, default=-1) + 1
        check_witness(
            res,
            witness,
            seen,
            pins_dir,
            key_fp(root / pub),
            witness_pin,
            str(cp.get("station") or ""),
            str(cp.get("time") or ""),
            proved,
        )
    res.here, res.deleted = len(index["clips"]), len(gone)
    if odd := lookalike_problem(index.get("order_id")):  # the signed one (bundle-order-mismatch)
        res.add(WARN, "order", odd, "order-id-lookalike")
    if bm and bm.get("order_id") != index.get("order_id"):
        res.add(FAIL, "order", "the bundle is labelled with another order than the signed "
                "bundle manifest", "bundle-order-mismatch")  # fmt: skip
    if want - seqs - gone:
        res.add(
            FAIL,
            "order",
            f"log entries {sorted(want - seqs - gone)} of this order are missing",
            "order-incomplete",
        )
    elif gone:
        res.add(
            WARN,
            "order",
            f"{len(seqs & want)} of the {len(want)} clip(s) the station logged for this order "
            f"are here, {len(gone)} deleted by its retention (log entries {sorted(gone)}): the "
            "result is for the clips here only",
            "order-partial",
        )
    for c in pem_certs(shipped_ca):
        print(f"     compare: company CA {cert_fingerprint(c)}")
    for c in pem_certs(shipped_tsa):
        print(f"     compare: TSA root {cert_fingerprint(c)}")
    code, text = res.verdict()
    print(f"RESULT: {text}")
    return code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="the evidence bundle (.zip) or the folder it was unzipped to")
    ap.add_argument("--ca", action="append", default=[], help="company CA: PEM file or SHA-256")
    ap.add_argument("--tsa-ca", action="append", default=[], help="TSA root: PEM file or SHA-256")
    ap.add_argument("--max-delay", type=float, default=MAX_DELAY_MIN, help="minutes (default 15)")
    ap.add_argument(
        "--witness",
        help="the station's cosigned checkpoints: a saved JSON of the central site's "
        "/witness/<station>?tree_size=N (N: the bundle's checkpoint size, in VERIFY.md; "
        "without it the record lists the newest checkpoints only)",
    )
    ap.add_argument(
        "--witness-key",
        help="the central witness's key you trust: its SHA-256 fingerprint (witness_key in "
        "<site>/witness) or its public key PEM file; a --witness file signed by any other key "
        "is refused (exit 3, witness-untrusted), as is one whose own signatures do not verify "
        "(witness-invalid). Without it the file's key is only named",
    )
    a = ap.parse_args(argv)
    if a.witness_key and not a.witness:
        ap.error("--witness-key pins the key of a --witness file: give --witness too")
    try:
        pin = parse_witness_pin(a.witness_key) if a.witness_key else None
        return _main(a, pin)
    except (InputError, WitnessFileError) as exc:  # the verifier's own input: no verdict
        print(f"verify.py: {exc}", file=sys.stderr)
        return 3


def _main(a: argparse.Namespace, pin: str | None) -> int:
    witness = read_witness(a.witness) if a.witness else None
    if isinstance(sys.stdout, io.TextIOWrapper):  # a station named 打包台1 on a cp1252 console
        sys.stdout.reconfigure(errors="backslashreplace")
    src = Path(a.bundle)
    if not src.is_dir():
        try:
            zipfile.ZipFile(src).close()
        except (OSError, zipfile.BadZipFile) as exc:
            print(f"FAIL bundle: not a readable zip file: {exc!r} [bundle-unreadable]")
            print("RESULT: NOT AUTHENTIC (bundle-unreadable)")
            return 1
    try:
        if src.is_dir():
            return check(src, a.ca, a.tsa_ca, a.max_delay * 60, witness, pin)
        with tempfile.TemporaryDirectory(prefix="packcam-kit-") as tmp, zipfile.ZipFile(src) as z:
            base = Path(tmp).resolve()
            seen: set[str] = set()
            if problem := unpack_problem(z.infolist()) or framing_problem(src, z):
                raise ValueError(problem)  # nor fill the disk, nor vouch for another file
            for info in z.infolist():  # never write outside the folder
                parts = [
                    p for p in info.filename.replace("\\", "/").split("/") if p not in ("", ".")
                ]
                # two members unpacking to one file: only the last is checked, and which one
                # your unzip tool shows is its choice (é as e + U+0301 too, on a Mac)
                key = unicodedata.normalize("NFC", "/".join(parts).casefold())
                key += "/" * info.filename.endswith(("/", "\\"))
                if (
                    not str((base / info.filename).resolve()).startswith(str(base))
                    or ".." in parts
                    or (parts and ":" in parts[0])
                    or key in seen
                ):
                    print(f"FAIL bundle: unsafe member name {info.filename!r} [bundle-malformed]")
                    print("RESULT: NOT AUTHENTIC (bundle-malformed)")
                    return 1
                if misnamed := member_name_problem(info.filename):  # as `packcam verify`
                    print(f"FAIL bundle: member {as_characters(misnamed)} [bundle-malformed]")
                    print("RESULT: NOT AUTHENTIC (bundle-malformed)")
                    return 1
                seen.add(key)
            if clash := file_and_folder(seen):  # as `packcam verify`
                print(f"FAIL bundle: {as_characters(repr(clash))} is both a file and a folder "
                      "of the bundle: they unpack to one place [bundle-malformed]")  # fmt: skip
                print("RESULT: NOT AUTHENTIC (bundle-malformed)")
                return 1
            z.extractall(tmp)
            return check(Path(tmp), a.ca, a.tsa_ca, a.max_delay * 60, witness, pin)
    except (
        OSError,
        KeyError,
        ValueError,
        TypeError,
        AttributeError,  # JSON of another shape (a list where an object belongs)
        zipfile.BadZipFile,
        RuntimeError,  # an encrypted member, an unknown compression, JSON nested too deep
        EOFError,  # a cut deflate stream
        zlib.error,  # a corrupt one
    ) as exc:
        print(f"FAIL bundle: unreadable or incomplete: {exc!r} [bundle-malformed]")
        print("RESULT: NOT AUTHENTIC (bundle-malformed)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
