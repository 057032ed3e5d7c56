"""Order lookup: fetch an order's item list from the seller's system when its clip starts."""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from station.config import Config
from station.floor.events import EventKind, StationEvent, StationEvents
from station.floor.eventworker import Annotate, OrderEventWorker, fetch_failure

log = logging.getLogger(__name__)

MAX_BYTES = 256 * 1024
MAX_ITEMS = 100
MAX_FIELD = 200
MANIFEST_KEY = "order_lookup"

Fetcher = Callable[[str, Mapping[str, str], float], bytes]


class LookupFailed(Exception):
    """The lookup answered nothing usable (kept local: it is logged, never raised further)."""


def lookup_url(template: str, order_id: str) -> str:
    """The template with ``{order}`` replaced by the URL-quoted order ID (a "/" stays inside)."""
    return template.replace("{order}", urllib.parse.quote(order_id, safe=""))


def _text(value: Any) -> str:
    s = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "".join(c for c in s if c.isprintable())[:MAX_FIELD]


def parse_items(body: bytes) -> list[dict[str, str]]:
    """Items from a JSON answer: a list, or an object with "items". Each item a string or an
    object (sku / name / qty kept, as text); at most ``MAX_ITEMS``. Raises LookupFailed."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LookupFailed(f"not JSON: {exc}") from exc
    if isinstance(doc, dict):
        doc = doc.get("items")
    if not isinstance(doc, list):
        raise LookupFailed("expected a JSON list of items, or an object with an items list")
    items: list[dict[str, str]] = []
    for raw in doc[:MAX_ITEMS]:
        if isinstance(raw, dict):
            item = {k: _text(raw[k]) for k in ("sku", "name", "qty") if raw.get(k) is not None}
            if not item:
                item = {"name": _text(raw)}
        else:
            item = {"name": _text(raw)}
        items.append(item)
    return items


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class _SameOrigin(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only on the lookup's own server (scheme, host and port): urllib
    would send the configured headers (the seller's API token) to wherever it points, and
    that server's answer would go into the signed manifest. Elsewhere: the 3xx is the error."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:  # fmt: skip
        if _origin(newurl) != _origin(req.full_url):
            log.warning("order lookup: %s redirects to another server (%s); not followed",
                        req.full_url, newurl)  # fmt: skip
            return None  # urllib then raises HTTPError(code)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameOrigin)


def http_get(url: str, headers: Mapping[str, str], timeout: float) -> bytes:
    req = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    with _OPENER.open(req, timeout=timeout) as resp:
        data: bytes = resp.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise LookupFailed(f"answer larger than {MAX_BYTES} bytes")
    return data


class OrderLookup(OrderEventWorker):
    """An event listener: on each order started, fetch the order's items on its own thread
    ("order-lookup"), put them into the open clip's manifest (``annotate``) and announce them
    as ORDER_ITEMS (the station screen shows them).

    Never blocks the caller: a full queue drops the lookup (logged). A slow, failing or absent
    service is logged and announced with an ``error``; the recording is never affected. An
    answer that arrives after the clip ended is shown but cannot be in that clip's manifest.
    """

    thread_name = "order-lookup"
    work = "order lookup"
    max_queue = 16

    def __init__(
        self,
        cfg: Config,
        events: StationEvents,
        annotate: Annotate,
        *,
        fetch: Fetcher = http_get,
    ) -> None:
        self.template = cfg.lookup.url_template
        self.headers = dict(cfg.lookup.headers)
        self.timeout_s = cfg.lookup.timeout_s
        self.events = events
        self.annotate = annotate
        self._fetch = fetch
        super().__init__(self.lookup, timeout_s=self.timeout_s)

    def wants(self, event: StationEvent) -> bool:
        return event.kind is EventKind.ORDER_STARTED and event.order_id is not None

    def lookup(self, event: StationEvent) -> dict[str, Any]:
        assert event.order_id is not None
        url = lookup_url(self.template, event.order_id)
        result: dict[str, Any] = {
            "url": url,
            "fetched_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        try:
            result["items"] = parse_items(self._fetch(url, self.headers, self.timeout_s))
        except (OSError, LookupFailed, ValueError) as exc:  # HTTP error, timeout, bad answer
            result["error"] = fetch_failure(exc)
        if "error" in result:
            log.warning("order lookup of %r: %s", event.order_id, result["error"])
        in_manifest = self.annotate(event.order_id, MANIFEST_KEY, result)
        if not in_manifest:
            log.warning("order lookup of %r came after its clip ended; not in its manifest",
                        event.order_id)  # fmt: skip
        self.events.emit(
            EventKind.ORDER_ITEMS, event.t, event.order_id, **result, in_manifest=in_manifest
        )
        return result


def build_lookup(cfg: Config, events: StationEvents, annotate: Annotate) -> OrderLookup | None:
    return OrderLookup(cfg, events, annotate) if cfg.lookup.url_template else None


__all__ = ["MANIFEST_KEY", "OrderLookup", "build_lookup", "lookup_url", "parse_items"]
