"""Webhooks: HMAC-SHA256-signed POSTs of station events, from a durable SQLite queue."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station.config import Config
from station.errors import ConfigError, StationError
from station.floor.events import EventKind, StationEvent
from station.store.sqlitedb import (
    Database,
    Table,
    closed_on_error,
    create_shared,
    migrate,
    transaction,
    use_wal,
)

log = logging.getLogger(__name__)

QUEUE_NAME = "webhooks.sqlite3"
SIGNATURE_HEADER = "X-Packcam-Signature"
# Event names on the wire (stable, dotted, as receivers filter them), from the station's events.
WIRE_NAMES: dict[EventKind, str] = {
    EventKind.CLIP_SEALED: "clip.finished",
    EventKind.CLIP_FAILED: "clip.failed",
    EventKind.CLIP_ARCHIVED: "clip.archived",
    EventKind.ALARM_RAISED: "alarm.raised",
    EventKind.ALARM_CLEARED: "alarm.cleared",
    EventKind.WAYBILL_UNLINKED: "waybill.unlinked",
}
WIRE_EVENTS = tuple(WIRE_NAMES.values())

MIGRATIONS = (
    """
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,        -- the receiver's idempotency key (in the body too)
        event TEXT NOT NULL,
        url TEXT NOT NULL,
        body BLOB NOT NULL,              -- fixed at enqueue: every retry sends the same bytes
        created REAL NOT NULL,           -- unix time
        next_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | failed
        last_code INTEGER,
        last_error TEXT,
        done_at REAL
    );
    CREATE INDEX deliveries_due ON deliveries(status, next_at);
    CREATE TABLE attempts (
        delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
        at REAL NOT NULL,
        code INTEGER,                    -- HTTP status, NULL when no response
        error TEXT,
        ms REAL NOT NULL
    );
    CREATE INDEX attempts_delivery ON attempts(delivery_id);
    """,
)


class WebhookError(StationError):
    """The webhook queue could not be opened or written."""


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``t=<unix>,v1=<hex HMAC-SHA256 of "<t>." + body>``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: bytes, header: str, body: bytes, *, now: float, tolerance_s: float = 300
) -> bool:
    """What a receiver checks: a well-formed header, a fresh timestamp, a matching HMAC."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs(now - ts) > tolerance_s:
        return False  # an old request replayed
    return hmac.compare_digest(sign(secret, ts, body), f"t={ts},v1={given}")


def backoff_s(attempts: int, first_s: float, max_s: float) -> float:
    """Seconds before the next try after ``attempts`` failed ones (1, 2, 4 ... times first_s)."""
    delay: float = first_s * 2 ** max(0, attempts - 1)
    return min(delay, max_s)


def load_secret(cfg: Config) -> bytes:
    w = cfg.webhooks
    if w.secret_file:
        try:
            secret = Path(w.secret_file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"webhooks.secret_file: cannot read it: {exc}") from exc
    else:
        secret = w.secret
    if len(secret) < 16:
        raise ConfigError("the webhook secret must be at least 16 characters")
    return secret.encode()


@dataclass(frozen=True)
class Delivery:
    id: int
    uid: str
    event: str
    url: str
    body: bytes
    created: float
    next_at: float
    attempts: int
    status: str
    last_code: int | None
    last_error: str | None
    done_at: float | None


class WebhookQueue(Table):
    """The durable queue (``<data>/webhooks.sqlite3``): deliveries and every attempt.

    One connection, used from any thread under its database's lock (the sender and the
    listener's persisting both run on the sender thread; the web site opens its own
    read-only one).
    """

    error = WebhookError

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """Open (creating and migrating) the queue; ``read_only``: an existing file, as it
        is, for a reader in another process (the web site's delivery log)."""
        self.path = path
        try:
            if read_only:
                conn = sqlite3.connect(
                    f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False, timeout=5
                )
                super().__init__(Database(conn))
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            create_shared(path)  # the web site's reader writes its -shm
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            with closed_on_error(conn):
                super().__init__(Database(conn))
                use_wal(self.conn)
                self.conn.execute("PRAGMA busy_timeout=5000")
                migrate(self.conn, self._lock, MIGRATIONS, WebhookError, "webhook queue")
        except (sqlite3.Error, OSError) as exc:
            raise WebhookError(f"cannot open the webhook queue {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def enqueue(self, event: str, url: str, payload: Mapping[str, Any], now: float) -> str:
        uid = str(uuid.uuid4())
        body = json.dumps(
            {"id": uid, "event": event, **payload}, ensure_ascii=False, sort_keys=True
        ).encode()
        with transaction(self.conn, self._lock, WebhookError, "enqueue") as c:
            c.execute(
                "INSERT INTO deliveries (uid, event, url, body, created, next_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (uid, event, url, body, now, now),
            )
        return uid

    def due(self, now: float, limit: int = 50) -> list[Delivery]:
        rows = self._all(
            "SELECT * FROM deliveries WHERE status = 'pending' AND next_at <= ?"
            " ORDER BY next_at, id LIMIT ?",
            (now, limit),
        )
        return [Delivery(*r) for r in rows]

    def next_due(self) -> float | None:
        row = self._one("SELECT MIN(next_at) FROM deliveries WHERE status = 'pending'")
        due: float | None = row[0] if row else None
        return due

    def record(
        self,
        d: Delivery,
        *,
        now: float,
        code: int | None,
        error: str | None,
        ms: float,
        next_at: float | None,
        status: str,
    ) -> None:
        with transaction(self.conn, self._lock, WebhookError, "record attempt") as c:
            c.execute(
                "INSERT INTO attempts (delivery_id, at, code, error, ms) VALUES (?, ?, ?, ?, ?)",
                (d.id, now, code, error, ms),
            )
            c.execute(
                "UPDATE deliveries SET attempts = attempts + 1, status = ?, last_code = ?,"
                " last_error = ?, next_at = COALESCE(?, next_at), done_at = ? WHERE id = ?",
                (status, code, error, next_at, now if status != "pending" else None, d.id),
            )

    def deliveries(self, limit: int = 200) -> list[Delivery]:
        rows = self._all("SELECT * FROM deliveries ORDER BY id DESC LIMIT ?", (limit,))
        return [Delivery(*r) for r in rows]

    def attempts_of(self, delivery_id: int) -> list[tuple[float, int | None, str | None, float]]:
        """(at, HTTP code, error, ms) of each attempt of one delivery, oldest first."""
        rows = self._all(
            "SELECT at, code, error, ms FROM attempts WHERE delivery_id = ? ORDER BY at",
            (delivery_id,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._all("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        return {s: n for s, n in rows}


Poster = Callable[[str, bytes, Mapping[str, str], float], int]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is the status of the attempt: urllib would follow a 301/302/303 as a GET
    without the body (and count the page it lands on as delivered), to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
    """POST ``body``; return the HTTP status (an HTTP error status is returned, not raised;
    a redirect is not followed: its 3xx is returned)."""
    req = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read(65536)
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


class Webhooks:
    """An event listener that queues clip and alarm events as signed webhook deliveries.

    ``on_event`` (any thread, the capture thread too) only appends to an in-memory list and
    wakes the sender thread ("webhooks"), which first writes them to the SQLite queue, then
    POSTs what is due. A delivery succeeds on a 2xx answer; otherwise it is tried again after
    ``retry_s``, doubling up to ``max_backoff_s``, until ``max_attempts`` (then "failed", kept
    in the log). Pending deliveries survive a restart. ``close`` writes what is still in memory
    to the queue, tries what is due once more for at most ``timeout_s``, and stops.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        queue_path: Path | None = None,
        post: Poster = http_post,
        clock: Callable[[], float] = time.time,
    ) -> None:
        w = cfg.webhooks
        self.urls = w.urls
        self.events = frozenset(w.events)
        self.secret = load_secret(cfg)
        self.timeout_s = w.timeout_s
        self.retry_s = w.retry_s
        self.max_backoff_s = w.max_backoff_s
        self.max_attempts = w.max_attempts
        self.station = cfg.station.name
        self.queue = WebhookQueue(queue_path or cfg.station.data_dir / QUEUE_NAME)
        self._post = post
        self._clock = clock
        self._incoming: deque[StationEvent] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
        self._thread.start()

    def on_event(self, event: StationEvent) -> None:
        name = WIRE_NAMES.get(event.kind)
        if name is None or name not in self.events:
            return
        self._incoming.append(event)  # deque.append is atomic: no lock on the capture thread
        self._wake.set()

    def _persist(self) -> None:
        while self._incoming:
            ev = self._incoming[0]
            name = WIRE_NAMES[ev.kind]
            payload = {
                "station": ev.station,
                "at": ev.at.isoformat(timespec="milliseconds"),
                "order_id": ev.order_id,
                "data": dict(ev.data),
            }
            for url in self.urls:
                self.queue.enqueue(name, url, payload, self._clock())
            self._incoming.popleft()  # only once queued: a failed write is tried again

    def deliver_due(self, deadline: float | None = None) -> int:
        """POST every due delivery once (until ``deadline``, monotonic, when closing); return
        how many succeeded."""
        ok = 0
        for d in self.queue.due(self._clock()):
            if deadline is None and self._stop.is_set():
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            # an event that came in during the last attempt (each up to timeout_s) is written
            # now, not after the whole pass: in memory a power cut would lose it
            self._persist()
            ok += self._attempt(d)
        return ok

    def _attempt(self, d: Delivery) -> bool:
        now = self._clock()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "packcam-webhooks/1",
            "X-Packcam-Event": d.event,
            "X-Packcam-Delivery": d.uid,
            SIGNATURE_HEADER: sign(self.secret, int(now), d.body),
        }
        t0 = time.monotonic()
        code: int | None = None
        error: str | None = None
        try:
            code = self._post(d.url, d.body, headers, self.timeout_s)
        except (OSError, ValueError) as exc:  # refused, timed out, DNS, bad URL
            error = f"{type(exc).__name__}: {exc}"[:300]
        ms = (time.monotonic() - t0) * 1000
        if code is not None and 200 <= code < 300:
            self.queue.record(
                d, now=now, code=code, error=None, ms=ms, next_at=None, status="delivered"
            )
            log.info("webhook %s %s delivered to %s (%d)", d.event, d.uid, d.url, code)
            return True
        if code is not None:
            error = f"HTTP {code}"
        attempts = d.attempts + 1
        if attempts >= self.max_attempts:
            self.queue.record(
                d, now=now, code=code, error=error, ms=ms, next_at=None, status="failed"
            )
            log.error(
                "webhook %s %s to %s failed %d times; giving up: %s",
                d.event,
                d.uid,
                d.url,
                attempts,
                error,
            )
            return False
        wait = backoff_s(attempts, self.retry_s, self.max_backoff_s)
        self.queue.record(
            d, now=now, code=code, error=error, ms=ms, next_at=now + wait, status="pending"
        )
        log.warning(
            "webhook %s to %s: %s; retry %d in %.0f s", d.event, d.url, error, attempts + 1, wait
        )
        return False

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._persist()
                self.deliver_due()
                nxt = self.queue.next_due()
            except Exception:
                log.exception("webhook sender pass failed; trying again")
                nxt = self._clock() + self.retry_s
            wait = 60.0 if nxt is None else min(60.0, max(0.05, nxt - self._clock()))
            self._wake.wait(wait)
            self._wake.clear()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.timeout_s + 5)
        if self._thread.is_alive():
            log.warning("webhook sender still busy; events not yet queued are lost")
            return
        try:
            self._persist()  # what came in meanwhile is kept for the next start ...
            # ... and tried once now (the clip finished at shutdown), within one timeout.
            self.deliver_due(deadline=time.monotonic() + self.timeout_s)
        except WebhookError:
            log.exception("cannot queue the last webhook events")
        self.queue.close()


def build_webhooks(cfg: Config) -> Webhooks | None:
    return Webhooks(cfg) if cfg.webhooks.urls else None


__all__ = [
    "QUEUE_NAME",
    "SIGNATURE_HEADER",
    "WIRE_EVENTS",
    "Delivery",
    "WebhookError",
    "WebhookQueue",
    "Webhooks",
    "backoff_s",
    "build_webhooks",
    "sign",
    "verify",
]
