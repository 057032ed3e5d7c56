"""Fleet alerts: station health and bucket findings, de-duplicated, sent by webhook and e-mail."""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from station.config import AlertsSection
from station.errors import StationError
from station.floor.webhooks import SIGNATURE_HEADER, sign
from station.store.files import write_json_atomic

log = logging.getLogger(__name__)


class DeliveryError(StationError):
    """A webhook or the mail server did not take an alert (it is sent again at the next run)."""


@dataclass(frozen=True)
class Alert:
    """One condition that is true now; ``key`` (station + kind) is what de-duplicates it."""

    station: str
    kind: str
    message: str

    @property
    def key(self) -> str:
        return f"{self.station}:{self.kind}"


# ---- pure decisions --------------------------------------------------------------------------


def fleet_alerts(statuses: Iterable[Any], a: AlertsSection) -> list[Alert]:
    """Pure: the alerts the central dashboard's station statuses call for."""
    out: list[Alert] = []
    for s in statuses:
        name = str(s.station)
        if s.silent:
            seen = f"last heard {s.updated_utc}" if s.updated_utc else "never heard from"
            out.append(Alert(name, "silent", f"{name} stopped reporting ({seen})"))
            continue  # what it said last is stale: the other checks would repeat old news
        if s.archive_backlog is not None and s.archive_backlog >= a.backlog_clips:
            out.append(
                Alert(name, "archive-backlog", f"{name}: {s.archive_backlog} clips not archived")
            )
        free = s.disk_free_bytes
        if free is not None and free < a.disk_free_mb * 1024 * 1024:
            out.append(Alert(name, "disk-low", f"{name}: {free // (1024 * 1024)} MB free"))
        if s.clock_synced is False:
            out.append(Alert(name, "clock", f"{name}: the clock is not NTP-synchronised"))
        if s.last_error:
            out.append(Alert(name, "error", f"{name}: {s.last_error}"))
        if s.sync_problem:  # up, but the site refuses part of what it sends (e.g. its log)
            out.append(Alert(name, "sync", f"{name}: central sync failing: {s.sync_problem}"))
    return out


@dataclass(frozen=True)
class Event:
    """What is sent: ``type`` is alert.raised, alert.repeated or alert.cleared."""

    type: str
    key: str
    station: str
    kind: str
    message: str
    since_utc: str

    def as_dict(self, sent: datetime) -> dict[str, str]:
        return {
            "type": self.type,
            "key": self.key,
            "station": self.station,
            "kind": self.kind,
            "message": self.message,
            "since_utc": self.since_utc,
            "sent_utc": _iso(sent),
        }


def plan(
    active: dict[str, dict[str, Any]],
    current: Sequence[Alert],
    now: datetime,
    repeat: timedelta,
) -> tuple[list[Event], dict[str, dict[str, Any]]]:
    """Pure: what to send now, and the state to keep if every send succeeds.

    ``active`` maps an alert key to ``{station, kind, message, since_utc, sent_utc}`` as the
    previous run left it (``sent_utc`` None when its sending failed). A new condition is
    raised once; one still true is repeated only every ``repeat`` (0 = never); one gone is
    cleared once. So a dashboard that stays red sends one message, not one a minute.
    """
    events: list[Event] = []
    state: dict[str, dict[str, Any]] = {}
    for alert in current:
        old = active.get(alert.key)
        since = old["since_utc"] if old else _iso(now)
        entry = {"station": alert.station, "kind": alert.kind, "message": alert.message,
                 "since_utc": since, "sent_utc": old.get("sent_utc") if old else None}  # fmt: skip
        if old is None or old.get("sent_utc") is None or old.get("clearing"):
            events.append(Event("alert.raised", alert.key, alert.station, alert.kind,
                                alert.message, since))  # fmt: skip
            entry["sent_utc"] = _iso(now)
        elif repeat > timedelta(0) and now - _parse(old["sent_utc"]) >= repeat:
            events.append(Event("alert.repeated", alert.key, alert.station, alert.kind,
                                alert.message, since))  # fmt: skip
            entry["sent_utc"] = _iso(now)
        state[alert.key] = entry
    keys = {a.key for a in current}
    for key, old in active.items():
        if key in keys or (old.get("sent_utc") is None and not old.get("clearing")):
            continue  # still on, or never announced: nothing to clear
        events.append(Event("alert.cleared", key, old["station"], old["kind"], old["message"],
                            old["since_utc"]))  # fmt: skip
    return events, state


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# ---- delivery ---------------------------------------------------------------------------------


class Sink(Protocol):
    name: str

    def send(self, events: Sequence[dict[str, str]]) -> None: ...


class WebhookSink:
    """POSTs ``{"events": [...]}`` as JSON, signed like the station's own webhooks
    (``X-Packcam-Signature: t=<unix>,v1=<HMAC-SHA256>``, station/floor/webhooks.py), so a receiver
    checks both with one function."""

    name = "webhook"

    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s

    def send(self, events: Sequence[dict[str, str]]) -> None:
        body = json.dumps({"events": list(events)}, ensure_ascii=False).encode("utf-8")
        req = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Packcam-Event": "fleet.alerts",
                SIGNATURE_HEADER: sign(self.secret, int(time.time()), body),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"webhook {self.url}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"webhook {self.url}: {exc}") from exc


class SmtpSink:
    """One e-mail per run listing every event (plain text, UTF-8), STARTTLS when asked."""

    name = "smtp"

    def __init__(self, a: AlertsSection, password: str = "") -> None:
        self.a = a
        self.password = password

    def send(self, events: Sequence[dict[str, str]]) -> None:
        msg = EmailMessage()
        raised = sum(1 for e in events if e["type"] != "alert.cleared")
        msg["Subject"] = (
            f"[packcam] {raised} alert(s), {len(events) - raised} cleared: "
            + "; ".join(e["message"] for e in events[:3])
        )[:200]
        msg["From"] = self.a.mail_from
        msg["To"] = ", ".join(self.a.mail_to)
        lines = [
            f"{e['type'].removeprefix('alert.'):9} {e['message']} (since {e['since_utc']})"
            for e in events
        ]
        msg.set_content("\n".join(lines) + "\n")
        try:
            with smtplib.SMTP(self.a.smtp_host, self.a.smtp_port, timeout=10) as smtp:
                if self.a.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.a.smtp_user:
                    smtp.login(self.a.smtp_user, self.password)
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"mail via {self.a.smtp_host}:{self.a.smtp_port}: {exc}") from exc


def build_sinks(a: AlertsSection) -> list[Sink]:
    """The configured sinks (none configured: alerts are only logged)."""
    sinks: list[Sink] = []
    if a.webhook_url:
        secret = _read_secret(a.webhook_secret_file) if a.webhook_secret_file else ""
        sinks.append(WebhookSink(a.webhook_url, (secret or a.webhook_secret).encode("utf-8")))
    if a.smtp_host:
        password = _read_secret(a.smtp_password_file) if a.smtp_password_file else ""
        sinks.append(SmtpSink(a, password))
    return sinks


def _read_secret(path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StationError(f"alerts: cannot read {path}: {exc}") from exc


# ---- one run ----------------------------------------------------------------------------------


def run_once(
    current: Sequence[Alert],
    sinks: Sequence[Sink],
    state_path: Path,
    a: AlertsSection,
    *,
    now: datetime | None = None,
) -> list[dict[str, str]]:
    """Send what changed since the last run; return the events sent.

    The state file is written only for what every sink took: an event a sink refused is sent
    again (to all sinks) at the next run, so a mail server that is down delays an alert but
    never drops it.
    """
    now = now or datetime.now(UTC)
    try:
        active = json.loads(state_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        active = {}
    events, state = plan(active, current, now, timedelta(hours=a.repeat_hours))
    if not events:
        return []
    docs = [e.as_dict(now) for e in events]
    for doc in docs:
        log.warning("alert %s: %s", doc["type"].removeprefix("alert."), doc["message"])
    failed = []
    for sink in sinks:
        try:
            sink.send(docs)
        except DeliveryError as exc:
            log.error("alerts: %s", exc)
            failed.append(sink.name)
    if failed:
        # Keep the old state, and mark what was to be cleared, so all of it goes out again.
        for e in events:
            if e.type == "alert.cleared":
                state[e.key] = {**active[e.key], "clearing": True}
            elif e.key in state and e.key not in active:
                state[e.key]["sent_utc"] = None
            elif e.key in state:
                state[e.key]["sent_utc"] = active[e.key].get("sent_utc")
    write_json_atomic(state_path, state)
    if failed:
        raise DeliveryError(f"alerts not delivered by {', '.join(failed)}; sent again next run")
    return docs
