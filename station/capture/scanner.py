"""Scan sources that need no hardware: standard input and the synthetic scene's script."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

from station.capture.eventqueue import MAX_LINE, EventQueue
from station.capture.frames import InputEvent, PedalPress, RawScan

if TYPE_CHECKING:
    from station.capture.synthetic import Scenario, ScenarioEvent

log = logging.getLogger(__name__)


def read_capped(
    readline: Callable[[int], str | bytes], limit: int = MAX_LINE
) -> Iterator[tuple[str | bytes, int]]:
    """Yield ``(line, dropped)`` from a ``readline(size)`` callable, never holding more than
    ``limit`` characters of one line: the rest of an over-long line is read and thrown away,
    and ``dropped`` says how many characters went. Stops at end of input.
    """
    while True:
        chunk = readline(limit)
        if not chunk:
            return
        dropped = 0
        nl = "\n" if isinstance(chunk, str) else b"\n"
        if not chunk.endswith(nl) and len(chunk) >= limit:  # type: ignore[arg-type]
            while True:
                rest = readline(limit)
                if not rest:
                    break
                done = rest.endswith(nl)  # type: ignore[arg-type]
                dropped += len(rest) - done
                if done:
                    break
        yield chunk, dropped


class ThreadedScanner:
    """The lifecycle of a scan source read on a daemon thread: ``_run`` (the subclass's reader)
    puts events into an ``EventQueue``, ``poll`` drains it, ``stop`` sets the stop event and
    waits at most ``join_timeout_s`` for the thread; once the thread has ended the source may
    be started again.
    """

    join_timeout_s: float  # how long ``stop`` waits for the reader thread

    def __init__(self, queue_name: str) -> None:
        self._queue = EventQueue(queue_name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        raise NotImplementedError

    def _start_reader(self, name: str) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def poll(self, now: float) -> list[InputEvent]:
        return self._queue.drain()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_timeout_s)
            # a reader still blocked (stdin on a terminal) keeps its place: a second start
            # would put two readers on one device
            if not self._thread.is_alive():
                self._thread = None


class StdinScanner(ThreadedScanner):
    """Scans typed or piped on standard input, one per line (a keyboard-wedge scanner on a
    terminal, or a test harness).

    A daemon thread reads lines; each stripped, non-empty line becomes
    ``RawScan(text, "stdin", time.monotonic())``. Bytes that are not UTF-8 are replaced, lines
    longer than ``MAX_LINE`` characters are cut there (the rest is discarded and logged); what
    the text means is decided elsewhere. End of input ends the thread. ``stop`` cannot interrupt
    a blocked read on a terminal, which is why the thread is a daemon (and ``stop`` waits for
    it only briefly).
    """

    join_timeout_s = 0.2

    def __init__(self, stream: IO[str] | IO[bytes] | None = None, source: str = "stdin") -> None:
        super().__init__(f"{source} scanner")
        self._stream = stream if stream is not None else sys.stdin
        self.source = source
        self.lines = 0
        self.eof = threading.Event()

    def start(self) -> None:
        self._start_reader(f"{self.source}-scanner")

    def _run(self) -> None:
        stream = self._stream
        # Read bytes where we can, so a stray binary byte is replaced instead of killing us.
        raw = getattr(stream, "buffer", None)
        readline = raw.readline if raw is not None else stream.readline
        try:
            for chunk, dropped in read_capped(readline):
                if self._stop.is_set():
                    break
                text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk
                if dropped:
                    log.warning("%s: line longer than %d characters; kept the first %d and "
                                "discarded %d more", self.source, MAX_LINE, MAX_LINE,
                                dropped)  # fmt: skip
                text = text.strip()
                if text:
                    self.lines += 1
                    self._queue.put(RawScan(text, self.source, time.monotonic()))
        except (OSError, ValueError) as exc:  # closed or broken stream
            log.warning("%s: reading failed: %s", self.source, exc)
        finally:
            log.info("%s: end of input after %d lines", self.source, self.lines)
            self.eof.set()


class ScriptedScanner:
    """The keyboard scans and pedal presses of a scenario, delivered on the camera timeline.

    ``poll(now)`` returns every ``key`` event (as ``RawScan(text, "script", t)``) and ``pedal``
    event (``PedalPress(t)``) with ``t = origin + at <= now``, each once and in order. ``origin``
    is the camera ``t`` of scene time 0: 0 for a non-realtime synthetic camera; when not given
    it is taken from the first ``poll`` (the runner polls with the first frame's ``t``). No
    threads; the endless demo script is walked lazily.
    """

    def __init__(self, scenario: Scenario, origin: float | None = None) -> None:
        self.scenario = scenario
        self.origin = origin
        self._events: Iterator[ScenarioEvent] | None = None
        self._next: ScenarioEvent | None = None

    def start(self) -> None:
        self._events = self.scenario.events()
        self._next = None

    def poll(self, now: float) -> list[InputEvent]:
        if self._events is None:
            raise RuntimeError("ScriptedScanner.poll() before start()")
        if self.origin is None:
            self.origin = now
            log.debug("scripted scanner: scene time 0 is t=%.3f", now)
        out: list[InputEvent] = []
        while True:
            ev = self._next if self._next is not None else next(self._events, None)
            if ev is None or ev.kind == "end":
                self._next = ev
                return out
            t = self.origin + ev.at
            if t > now:
                self._next = ev
                return out
            self._next = None
            if ev.kind == "key":
                out.append(RawScan(ev.text, "script", t))
            elif ev.kind == "pedal":
                out.append(PedalPress(t))

    def stop(self) -> None:
        self._events = None


__all__ = [
    "MAX_LINE",
    "EventQueue",
    "ScriptedScanner",
    "StdinScanner",
    "ThreadedScanner",
    "read_capped",
]
