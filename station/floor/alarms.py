"""Station alarms: the current set (live status), the persistent record (index) and a hook."""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from station.errors import StationError
from station.floor.events import EventKind, StationEvents
from station.store.ledger import Ledger

log = logging.getLogger(__name__)

# Order of importance when the live status shows only one alarm.
SEVERITY = (
    "disk-full",
    "recording-failed",
    "clip-missing",
    "archive-missing",
    "camera-lost",
    "disk-low",
)
REPEAT_HOOK_S = 300.0  # an alarm still active runs the hook again this often (a beeper nags)


@dataclass(frozen=True)
class Active:
    kind: str
    subject: str
    message: str
    since: float  # time.monotonic()


def _rank(kind: str) -> int:
    return SEVERITY.index(kind) if kind in SEVERITY else len(SEVERITY)


class AlarmBoard:
    """Alarms raised by the recorder, the retention thread, recovery and the capture loop.

    ``raise_`` logs at ERROR (once per new alarm or changed message), records it in the index's
    ``alarms`` table (kept across restarts, with a count) and runs ``alarm_command`` with the
    message as its last argument, in the background, again every ``REPEAT_HOOK_S`` while it stays
    active. ``clear`` logs and marks it cleared. ``summary`` is what the live status shows.

    Thread-safe: any thread may raise or clear. The hook runs in its own short-lived thread and
    is never waited for by the caller; a hook that fails is logged, never raised. The capture
    thread passes ``capture=True``: its record goes into the index's capture journal (one line
    written, no wait in SQLite; a kill -9 keeps it, synced at once on the thread "index-sync")
    and is committed, in order, on the thread "index-writer" (``Ledger``); the other threads'
    commits return once synced.
    """

    def __init__(
        self,
        ledger: Ledger | None = None,
        command: str = "",
        *,
        runner: Callable[[list[str]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        events: StationEvents | None = None,
    ) -> None:
        self.ledger = ledger
        self.argv = shlex.split(command) if command else []
        self._runner = runner or _run_hook
        self._clock = clock
        self.events = events  # hears each new alarm and each clearing (sound, screen, webhook)
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], Active] = {}
        self._hooked: dict[tuple[str, str], float] = {}

    def raise_(self, kind: str, subject: str, message: str, *, capture: bool = False) -> None:
        key = (kind, subject)
        now = self._clock()
        with self._lock:
            old = self._active.get(key)
            self._active[key] = Active(kind, subject, message, old.since if old else now)
            last_hook = self._hooked.get(key)
            hook = last_hook is None or old is None or now - last_hook >= REPEAT_HOOK_S
            if hook:
                self._hooked[key] = now
        if old is None or old.message != message:
            log.error("ALARM %s: %s", kind, message)
        if self.ledger is not None:
            try:
                self.ledger.raise_alarm(kind, subject, message, capture=capture)
            except StationError as exc:  # a full disk may refuse this too; the log has it
                log.error("cannot record alarm %s in the index: %s", kind, exc)
        if hook and self.argv:
            self._runner([*self.argv, f"{kind}: {message}"])
        if old is None and self.events is not None:
            self.events.emit(
                EventKind.ALARM_RAISED, now, None, alarm=kind, subject=subject, message=message
            )

    def clear(self, kind: str, subject: str, *, capture: bool = False) -> None:
        with self._lock:
            old = self._active.pop((kind, subject), None)
            self._hooked.pop((kind, subject), None)
        if old is not None:
            log.warning("alarm cleared %s: %s", kind, subject)
            if self.events is not None:
                self.events.emit(
                    EventKind.ALARM_CLEARED, self._clock(), None, alarm=kind, subject=subject
                )
        if self.ledger is not None:
            try:
                self.ledger.clear_alarm(kind, subject, capture=capture)
            except StationError as exc:
                log.error("cannot clear alarm %s in the index: %s", kind, exc)

    def active(self) -> list[Active]:
        with self._lock:
            items = list(self._active.values())
        return sorted(items, key=lambda a: (_rank(a.kind), a.since))

    def is_active(self, kind: str) -> bool:
        with self._lock:
            return any(k == kind for k, _ in self._active)

    def summary(self) -> str | None:
        """The most important alarm as ``"kind: message"`` (plus how many more), or None."""
        items = self.active()
        if not items:
            return None
        top = items[0]
        more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
        return f"{top.kind}: {top.message}{more}"


def _run_hook(argv: list[str]) -> None:
    """Start the hook and reap it in a daemon thread: no zombie, and no waiting on the caller's
    thread (often the capture loop's), not even for the fork and exec."""
    threading.Thread(target=_hook_thread, args=(argv,), name="alarm-hook", daemon=True).start()


def _hook_thread(argv: list[str]) -> None:
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        log.error("alarm command %r failed to start: %s", argv[0], exc)
        return
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        log.error("alarm command %r did not finish in 60 s; killed", argv[0])
        return
    if proc.returncode:
        log.error(
            "alarm command %r exited with %d: %s",
            argv[0],
            proc.returncode,
            err.decode(errors="replace").strip()[:200],
        )


__all__ = ["SEVERITY", "Active", "AlarmBoard"]
