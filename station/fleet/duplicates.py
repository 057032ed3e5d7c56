"""Repacks across stations: ask the central index whether an order was recorded elsewhere."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, timedelta
from typing import Any

import station
from station.config import Config
from station.fleet.central_sync import KEY_HEADER, read_token, signing_key
from station.floor.events import EventKind, StationEvent, StationEvents
from station.floor.eventworker import Annotate, OrderEventWorker, fetch_failure
from station.store.ledger import Ledger

log = logging.getLogger(__name__)

MANIFEST_KEY = "repack_of_fleet"
MAX_BYTES = 64 * 1024
MAX_REFS = 20
PENDING_S = 600.0  # how long a late answer waits for its clip to be indexed
LOG_EVERY_S = 60.0
REFUSED = (401, 403)  # the site refuses this station: a bad token, another machine's key
REASON_BYTES = 4096  # read of a refusal's body, for its reason
REASON_CHARS = 300

Fetcher = Callable[[str, Mapping[str, str], float], bytes]


class CheckFailed(Exception):
    """The central index gave no usable answer (kept local: logged, never raised further)."""


def http_get(url: str, headers: Mapping[str, str], timeout: float) -> bytes:
    """GET ``url`` with ``headers`` (the station's token and key) and the client's own."""
    req = urllib.request.Request(
        url,
        headers={
            "Accept": "application/json",
            "User-Agent": f"packcam-station/{station.__version__}",
            **headers,
        },
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data: bytes = resp.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise CheckFailed(f"answer larger than {MAX_BYTES} bytes")
    return data


def fleet_refs(body: bytes, order_id: str, own_station: str) -> list[dict[str, Any]]:
    """The earlier clips of ``order_id`` at *other* stations in a central answer, as
    {"station", "clip_id", "started"} (this station's own are in its own index). Pure;
    raises CheckFailed for an answer that is not the API's."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckFailed(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("order") != order_id:
        raise CheckFailed("not an answer about this order")
    clips = doc.get("clips")
    if not isinstance(clips, list):
        raise CheckFailed("no clips list")
    refs = []
    for c in clips:
        if not isinstance(c, dict):
            continue
        st, cid = c.get("station"), c.get("clip_id")
        if not isinstance(st, str) or type(cid) is not int or st == own_station:
            continue
        refs.append({"station": st[:64], "clip_id": cid, "started": str(c.get("started", ""))[:40]})
    return refs[:MAX_REFS]


def refusal_reason(body: bytes) -> str:
    """The central site's reason for a refusal (its JSON ``{"error": ...}``, central/api.py),
    on one line of at most 300 characters (control characters made spaces); "" when the body
    is not that (a proxy's page). For the log only: never a manifest. Pure."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, str):
        return ""
    text = " ".join("".join(c if c.isprintable() else " " for c in error).split())
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + "…"


def _refusal(exc: urllib.error.HTTPError) -> str:
    """What the log says of a refusal: its status and the site's reason (read: at most
    REASON_BYTES of its body; the response closed)."""
    try:
        body = exc.read(REASON_BYTES)
    except (OSError, ValueError):
        body = b""
    finally:
        exc.close()
    reason = refusal_reason(body)
    return f"HTTP {exc.code}: {reason}" if reason else f"HTTP {exc.code}"


def describe(refs: list[dict[str, Any]]) -> str:
    """ "clip 3 at station-02, clip 9 at station-03": what the banner and the log say."""
    return ", ".join(f"clip {r['clip_id']} at {r['station']}" for r in refs)


class FleetDuplicates(OrderEventWorker):
    """An event listener: for each order started here, ask the central index
    (``GET /api/fleet/v1/order-clips?order=``, naming the station's token and the key it
    signs with, as the sync does) on its own thread ("fleet-duplicates"),
    waiting at most ``[central] duplicate_timeout_s``, whether other stations recorded it.

    If so, the open clip becomes a repack linked to those clips: ``repack_of_fleet`` goes into
    its manifest (``annotate``) and so into the index; an answer that comes after the clip
    ended is written into the index row once the clip is indexed (CLIP_SEALED), not into
    its manifest. DUPLICATE_ORDER (sound, banner, webhooks) is announced unless this
    station's own index had already made the clip a repack (it announced it then) or the
    clip resumes its order after a camera loss.

    Never blocks the caller (the capture loop): ``on_event`` only queues; a full queue drops
    the check (logged). An unreachable or failing central site leaves the local check only,
    logged (at most once a minute), with no event for the packer.
    """

    thread_name = "fleet-duplicates"
    work = "fleet duplicate check"
    max_queue = 32

    def __init__(
        self,
        cfg: Config,
        events: StationEvents,
        annotate: Annotate,
        ledger: Ledger,
        *,
        token: str,
        fetch: Fetcher = http_get,
    ) -> None:
        self.cfg = cfg
        self.station = cfg.station.name
        self.base = cfg.central.url.rstrip("/") + "/api/fleet/v1/order-clips?order="
        self.timeout_s = cfg.central.duplicate_timeout_s
        self.events = events
        self.annotate = annotate
        self.ledger = ledger
        self._token = token
        self._fetch = fetch
        self._pending: dict[str, tuple[list[dict[str, Any]], float]] = {}
        self._next_log = 0.0
        self.checked = 0  # answers received (tests and the log)
        super().__init__(self._handle, timeout_s=self.timeout_s)

    def wants(self, event: StationEvent) -> bool:
        if event.order_id is None:
            return False
        if event.kind is EventKind.CLIP_SEALED:
            return bool(self._pending)
        return event.kind is EventKind.ORDER_STARTED

    def _handle(self, event: StationEvent) -> None:
        if event.kind is EventKind.ORDER_STARTED:
            self.check(event)
        else:
            self._sealed(event)

    def check(self, event: StationEvent) -> list[dict[str, Any]] | None:
        """Ask the central index about ``event``'s order; the other stations' clips, or
        None when it could not be asked."""
        assert event.order_id is not None
        order = event.order_id
        url = self.base + urllib.parse.quote(order, safe="")
        # the key the station signs with, as the sync names it: the site tells only the
        # machine it enrolled of other stations' clips (a second Pi with this token is refused)
        headers = {"Authorization": f"Bearer {self._token}", KEY_HEADER: signing_key(self.cfg)[0]}
        try:
            refs = fleet_refs(self._fetch(url, headers, self.timeout_s), order, self.station)
        except urllib.error.HTTPError as exc:
            if exc.code in REFUSED:  # the site answers, and says why it will not
                self._failed(order, f"the central site refused the check ({_refusal(exc)})")
            else:
                self._failed(order, f"central index not answering ({fetch_failure(exc)})")
            return None
        except (OSError, CheckFailed, ValueError) as exc:  # timeout, no connection, bad answer
            self._failed(order, f"central index not answering ({fetch_failure(exc)})")
            return None
        self.checked += 1
        if not refs:
            return refs
        in_manifest = self.annotate(order, MANIFEST_KEY, refs)
        if in_manifest:
            self.annotate(order, "repack", True)
        else:
            self._late(event, refs)
        late = "" if in_manifest else " (the answer came after the clip ended)"
        log.warning("order %r was recorded before at other stations: %s%s", order,
                    describe(refs), late)  # fmt: skip
        # One warning per packing: none when the station's own index already warned, or
        # when the clip resumes its order after a camera loss (warned at its first clip).
        if not event.data.get("repack") and not event.data.get("resumed"):
            self.events.emit(EventKind.DUPLICATE_ORDER, event.t, order, earlier_fleet=refs,
                             why=f"already recorded: {describe(refs)}")  # fmt: skip
        return refs

    def _failed(self, order: str, what: str) -> None:
        """Logged as a WARNING at most once a minute, else at DEBUG."""
        now = time.monotonic()
        if now >= self._next_log:
            self._next_log = now + LOG_EVERY_S
            log.warning("fleet duplicate check of %r: %s; local check only", order, what)
        else:
            log.debug("fleet duplicate check of %r: %s", order, what)

    def _late(self, event: StationEvent, refs: list[dict[str, Any]]) -> None:
        """The clip ended before the answer: link its index row, now or once indexed."""
        assert event.order_id is not None
        # Pending first, then the index: a CLIP_SEALED in between is queued, not missed.
        now = time.monotonic()
        pending = {o: v for o, v in self._pending.items() if v[1] > now}
        pending[event.order_id] = (refs, now + PENDING_S)
        self._pending = pending
        since = (event.at - timedelta(seconds=5)).astimezone(UTC)
        clip_id = self.ledger.newest_clip_of(
            event.order_id, since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        )
        if clip_id is not None:
            self._pending.pop(event.order_id, None)
            self.ledger.set_repack_of_fleet(clip_id, refs)

    def _sealed(self, event: StationEvent) -> None:
        assert event.order_id is not None
        got = self._pending.pop(event.order_id, None)
        clip_id = event.data.get("clip_id")
        if got is not None and isinstance(clip_id, int):
            self.ledger.set_repack_of_fleet(clip_id, got[0])
            log.info("clip %d of %r linked to %s in the index", clip_id, event.order_id,
                     describe(got[0]))  # fmt: skip


def build_duplicates(
    cfg: Config, events: StationEvents, annotate: Annotate, ledger: Ledger
) -> FleetDuplicates | None:
    """The fleet duplicate check when ``[central]`` is enabled with ``duplicate_check``."""
    if not (cfg.central.enabled and cfg.central.duplicate_check):
        return None

    return FleetDuplicates(cfg, events, annotate, ledger, token=read_token(cfg.central))


__all__ = [
    "MANIFEST_KEY",
    "FleetDuplicates",
    "build_duplicates",
    "describe",
    "fleet_refs",
    "refusal_reason",
]
