"""A shared order's one-page evidence summary: what the verifier proved per clip, nothing more."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from flask_babel import force_locale
from markupsafe import Markup

from station.config import WEB_LANGUAGES
from station.proof import ProofError
from station.proof.ca import cert_fingerprint
from station.proof.exports import bundle_key
from station.proof.trust import Anchors
from station.proof.verify import (
    AUTHENTIC,
    TAMPERED,
    UNANCHORED,
    UNVERIFIED,
    Report,
    verify_clip,
    verify_gone_clip,
)
from station.store.ledger import ClipRecord
from web.handles import site_config
from web.serving import clip_file, clip_named
from web.streaming import unless_gone

log = logging.getLogger(__name__)

CACHE_TTL_S = 60.0  # a token granted a minute later shows up on the next load
CACHE_ENTRIES = 64
LANGUAGES = WEB_LANGUAGES
# worst first: the order's verdict is its weakest clip's
_RANK = {TAMPERED: 0, UNVERIFIED: 1, UNANCHORED: 2, AUTHENTIC: 3}


@dataclass(frozen=True)
class ClipClaims:
    """What may be said about one clip, taken from its verification report.

    A field is set only when the report proved it: ``sha256`` when the bytes are the signed
    ones, ``signer_ca`` when the station's certificate chains to a CA the site trusts,
    ``tsa``/``tsa_time`` when a token from a trusted TSA lies within the time bound, and
    ``checkpoint`` when a signed checkpoint covers the clip's log entry.
    """

    clip: ClipRecord
    verdict: str
    reasons: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    station_key: str | None = None
    signer_ca: str | None = None
    signer_station: str | None = None
    tsa: str | None = None
    tsa_time: str | None = None
    start_tsa_time: str | None = None  # a TSA this site trusts saw the clip's start then
    late_tsa: str | None = None  # a TSA the site trusts saw it, but after its end (time-late)
    late_tsa_time: str | None = None
    untrusted_tsa: str | None = None  # a token exists, but nothing the site trusts vouches
    clock_synced: bool | None = None
    order_id: str | None = None
    waybills: tuple[str, ...] = ()
    started_at: str | None = None
    ended_at: str | None = None
    log_index: int | None = None
    checkpoint: dict[str, Any] | None = None
    later_clips: tuple[Any, ...] = ()
    compare: tuple[str, ...] = ()
    # deleted by the station's retention, by its signed record: sha256, started_at, ended_at,
    # deleted_utc (the seller's own statement: it dates the gap, it proves nothing)
    deleted: dict[str, Any] | None = None

    @property
    def intact(self) -> bool:
        return self.verdict in (AUTHENTIC, UNANCHORED)


@dataclass(frozen=True)
class OrderClaims:
    order_id: str
    clips: list[ClipClaims]
    ca_fps: list[str] = field(default_factory=list)  # the site's anchors, for the reader
    tsa_fps: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if not self.clips:
            return UNVERIFIED
        return min((c.verdict for c in self.clips), key=lambda v: _RANK.get(v, 0))


def claims_from_report(clip: ClipRecord, report: Report) -> ClipClaims:
    """The claims a report supports (pure). A clip that failed a check gets no claim but its
    reasons; an unanchored one keeps its hash, log and the key to compare."""
    verdict = report.verdict
    facts = report.facts
    if verdict in (TAMPERED, UNVERIFIED):
        # not verified: no check failed, so say what kept it from being checked
        reasons = report.codes() if verdict == TAMPERED else report.reasons()
        return ClipClaims(
            clip=clip,
            verdict=verdict,
            reasons=tuple(sorted(reasons)),
            deleted=facts.get("deleted") if verdict == UNVERIFIED else None,
        )
    tokens = facts.get("tokens") or []
    trusted = next((t for t in tokens if t.get("trusted") and t.get("in_bounds")), None)
    # a TSA the site trusts that saw it only late (time-late): the clip existed by then
    # (not one whose loose accuracy alone kept it from placing the time: it was not late)
    late = next((t for t in tokens if t.get("trusted") and t.get("late")), None)
    late = late if trusted is None else None
    other = next((t for t in tokens if t is not trusted), None) if trusted is None else None
    cas = facts.get("trusted_ca") or []
    waybills = [
        str(w.get("waybill"))
        for w in facts.get("waybills") or []
        if isinstance(w, dict) and w.get("waybill")
    ] or ([str(facts["waybill"])] if facts.get("waybill") else [])
    return ClipClaims(
        clip=clip,
        verdict=verdict,
        sha256=facts.get("sha256"),
        size=facts.get("size"),
        station_key=facts.get("station_key"),
        signer_ca=cas[0] if report.signer_anchored and cas else None,
        signer_station=facts.get("station") if report.signer_anchored else None,
        tsa=trusted["tsa"] if trusted and report.time_anchored else None,
        tsa_time=trusted["time"] if trusted and report.time_anchored else None,
        start_tsa_time=facts.get("start_tsa_time") if trusted and report.time_anchored else None,
        late_tsa=str(late["tsa"]) if late else None,
        late_tsa_time=str(late["time"]) if late else None,
        untrusted_tsa=str(other["tsa"]) if other else None,
        clock_synced=facts.get("clock_synced"),
        order_id=facts.get("order_id"),
        waybills=tuple(waybills),
        started_at=facts.get("started_at"),
        ended_at=facts.get("ended_at"),
        log_index=facts.get("log_index"),
        checkpoint=facts.get("checkpoint"),
        later_clips=tuple(facts.get("later_clips") or ()),
        compare=tuple(facts.get("compare") or ()),
    )


def verify_station_clips(clips: list[ClipRecord], anchors: Anchors) -> list[Report]:
    return [_verify_station_clip(c, anchors) for c in clips]


def _verify_station_clip(clip: ClipRecord, anchors: Anchors) -> Report:
    """``packcam verify --data`` on the clip's file, with the site's anchors; the file must be
    this clip's (another recording in its place, however authentic, is not its evidence)."""

    path = clip_file(clip)
    cfg = site_config()
    try:
        # deleted by retention (signed record, also just now) is not forgery
        report = None if path is None else unless_gone(
            lambda: verify_clip(path, cfg, anchors=anchors), clip_named(clip)
        )  # fmt: skip
        if report is None:
            return verify_gone_clip(clip.path, clip.sha256, cfg)
    except ProofError as exc:
        log.warning("summary: clip %s not verified: %s", clip.id, exc)
        return Report(subject=clip.path)  # nothing checked: not verified
    if report.facts.get("sha256") != clip.sha256 and not report.failures:
        report.add(
            "file", "fail", f"the file at {clip.path} is another recording than the clip "
            f"indexed there (SHA-256 {report.facts.get('sha256')})", "clip-replaced",
        )  # fmt: skip
    return report


def order_claims(
    order_id: str,
    clips: list[ClipRecord],
    anchors: Anchors,
    verify: Callable[[list[ClipRecord], Anchors], list[Report]] | None = None,
) -> OrderClaims:
    """Every clip of the order verified against ``anchors`` (cached ``CACHE_TTL_S`` per order
    and clip set: hashing a clip and reading the log is not free on a Pi). ``verify``: one
    report per clip (default: the station's ``verify_clip`` on its data dir)."""
    verify = verify or verify_station_clips
    cache = current_app.extensions.setdefault("packcam_summary", _Cache())
    key = (bundle_key(order_id, clips), tuple(sorted(anchors.describe())))
    hit: OrderClaims | None = cache.get(key)
    if hit is not None:
        return hit
    with cache.lock:  # one verification at a time: the summary must not starve recording
        hit = cache.get(key)
        if hit is not None:
            return hit
        t0 = time.monotonic()
        out = OrderClaims(
            order_id=order_id,
            clips=[
                claims_from_report(c, r) for c, r in zip(clips, verify(clips, anchors), strict=True)
            ],
            ca_fps=[cert_fingerprint(c) for c in anchors.ca] + sorted(anchors.ca_fps),
            tsa_fps=[cert_fingerprint(c) for c in anchors.tsa] + sorted(anchors.tsa_fps),
        )
        log.info("summary of order %r: %s for %d clip(s) in %.2f s", order_id, out.verdict,
                 len(clips), time.monotonic() - t0)  # fmt: skip
        cache.put(key, out)
        return out


class _Cache:
    """Recent summaries by (order, clips, anchors); any server thread may use it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._items: dict[Any, tuple[float, OrderClaims]] = {}
        self._guard = threading.Lock()

    def get(self, key: Any) -> OrderClaims | None:
        with self._guard:
            item = self._items.get(key)
        if item is None or time.monotonic() - item[0] > CACHE_TTL_S:
            return None
        return item[1]

    def put(self, key: Any, value: OrderClaims) -> None:
        with self._guard:
            if len(self._items) >= CACHE_ENTRIES:
                self._items.pop(min(self._items, key=lambda k: self._items[k][0]))
            self._items[key] = (time.monotonic(), value)


def in_both_languages(render: Callable[[], str]) -> dict[str, Markup]:
    """``render()`` once per language (zh_CN, en): the summary is read by either."""
    out = {}
    for lang in LANGUAGES:
        with force_locale(lang):
            out[lang] = Markup(render())
    return out
