"""A tiny sd_notify(3) client and a per-frame watchdog feeder for systemd's Type=notify units."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

# systemd reads each datagram as newline-separated VAR=value assignments.
_MAX_STATUS = 200


def _clean(value: str, limit: int = _MAX_STATUS) -> str:
    """One line of printable text: a newline in a value would inject another assignment."""
    text = "".join(c if c.isprintable() else " " for c in value)
    return text[:limit]


def socket_address(value: str) -> str | bytes | None:
    """The AF_UNIX address named by ``$NOTIFY_SOCKET``; ``@name`` is an abstract socket."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:..." (VMs): not for a service on a Pi


class Notifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET``; every method is a no-op without it.

    Never raises and never blocks: a send that fails (no listener, queue full) returns False
    and is logged once per minute. Safe to call from any thread (a socket per message).
    """

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self._next_error_log = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket; not notifying systemd", raw)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``VAR=value`` lines in one datagram; True when it was sent."""
        if self.address is None or not assignments:
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        try:
            # A socket per message, as sd_notify(3) does: nothing to close, nothing inherited.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(data, socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            now = time.monotonic()
            if now >= self._next_error_log:  # a race here costs at most one extra log line
                self._next_error_log = now + 60.0
                log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={_clean(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_clean(text)}")

    def watchdog(self, status: str | None = None) -> bool:
        return self.send("WATCHDOG=1", *([f"STATUS={_clean(status)}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={_clean(status)}"] if status else []))

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop (e.g. while recovering many unfinished clips)."""
        return self.send(f"EXTEND_TIMEOUT_USEC={max(1, int(seconds * 1e6))}")


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, as sd_watchdog_enabled(3) advises; None if off.

    ``$WATCHDOG_PID``, when set, must be this process: the watchdog is not ours otherwise.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6


def describe(status: Any, fps: float, dropped: int = 0) -> str:
    """The STATUS line `systemctl status` shows, e.g. ``recording PO-123 00:42, 30.0 fps``."""
    state = str(getattr(status, "state", "running"))
    text = state
    order = getattr(status, "order_id", None)
    if order:
        text += f" {order}"
    elapsed = getattr(status, "elapsed_s", None)
    if elapsed is not None and math.isfinite(elapsed):
        m, s = divmod(int(elapsed), 60)
        text += f" {m:02d}:{s:02d}"
    text += f", {fps:.1f} fps"
    if dropped:
        text += f", {dropped} dropped"
    if getattr(status, "last_error", None):
        text += f"; last error: {status.last_error}"
    return _clean(text)


class Watchdog:
    """A per-frame callback (``image, status, dropped``) that feeds systemd's watchdog.

    Call it from the capture thread for every frame, like ``LiveWriter``. The first call sends
    ``READY=1`` (the camera is running and a frame arrived); later calls send ``WATCHDOG=1``
    at most every ``WATCHDOG_USEC / 2`` and a ``STATUS=`` line at most every
    ``status_interval`` s. A capture loop that stalls stops calling it, so systemd kills and
    restarts the service after ``WatchdogSec``. ``inner`` (e.g. the LiveWriter) is called
    first; its errors are logged, never passed on, and never stop the pings. ``write_status``
    forwards to ``inner`` so the Watchdog can stand where the LiveWriter stood. Without
    ``$NOTIFY_SOCKET`` it only forwards. Not thread-safe: one capture thread calls it.
    """

    def __init__(
        self,
        inner: Callable[..., None] | None = None,
        *,
        notifier: Notifier | None = None,
        interval_s: float | None = None,
        status_interval_s: float = 1.0,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.notifier = notifier if notifier is not None else Notifier.from_env(environ)
        self.interval = interval_s if interval_s is not None else watchdog_interval(environ)
        self.status_interval = status_interval_s
        self.clock = clock
        self.ready_sent = False
        self.pings = 0
        self.fps = 0.0
        self._next_ping = 0.0
        self._next_status = 0.0
        self._fps_mark: tuple[float, int] | None = None
        self._next_error_log = 0.0

    @property
    def enabled(self) -> bool:
        return self.notifier.enabled

    def __call__(self, image: Any, status: Any, dropped: int = 0) -> None:
        if self.inner is not None:
            try:
                self.inner(image, status, dropped)
            except Exception:
                self._log_inner_error()
        if self.notifier.enabled:
            self._feed(status, dropped)

    def _feed(self, status: Any, dropped: int) -> None:
        now = self.clock()
        frames = int(getattr(status, "frames", 0))
        if self._fps_mark is None:
            self._fps_mark = (now, frames)
        elif now - self._fps_mark[0] >= 1.0:
            self.fps = (frames - self._fps_mark[1]) / (now - self._fps_mark[0])
            self._fps_mark = (now, frames)
        if not self.ready_sent:
            self.ready_sent = self.notifier.ready(describe(status, self.fps, dropped))
            if self.ready_sent:
                log.info("told systemd the station is ready (watchdog %s)",
                         f"every {self.interval:.1f} s" if self.interval else "off")  # fmt: skip
            self._next_ping = now + (self.interval or 0.0)
            self._next_status = now + self.status_interval
            return
        lines = []
        if self.interval is not None and now >= self._next_ping:
            lines.append("WATCHDOG=1")
            self._next_ping = now + self.interval
        if now >= self._next_status or lines:
            lines.append(f"STATUS={describe(status, self.fps, dropped)}")
            self._next_status = now + self.status_interval
        if lines and self.notifier.send(*lines) and lines[0] == "WATCHDOG=1":
            self.pings += 1

    def alive(self, status: str) -> None:
        """Feed the watchdog from outside the frame path, e.g. while retrying a lost camera.

        Before the first frame (a camera absent at start) this sends READY=1 with ``status``
        ("waiting for camera: ..."): the service is up and alarming, so systemd must not wait
        out TimeoutStartSec and then kill it.
        """
        now = self.clock()
        if not self.ready_sent and self.notifier.enabled:
            self.ready_sent = self.notifier.ready(status)
            if self.ready_sent:
                log.info("told systemd the station is ready without a camera (%s)", status)
            self._next_ping = now + (self.interval or 0.0)
            self._next_status = now + self.status_interval
            return
        if self.interval is not None and now >= self._next_ping:
            self._next_ping = now + self.interval
            if self.notifier.watchdog(status):
                self.pings += 1
        elif now >= self._next_status:
            self._next_status = now + self.status_interval
            self.notifier.status(status)

    def write_status(self, status: Any, dropped: int = 0, state: str | None = None) -> None:
        """Forward to ``inner.write_status`` (the LiveWriter's final "stopped" status)."""
        write = getattr(self.inner, "write_status", None)
        if write is not None:
            write(status, dropped, state=state)
        if state is not None:
            self.notifier.status(state)

    def stopping(self, status: str = "stopping") -> None:
        """Tell systemd the station is shutting down (the open clip is being finished)."""
        self.notifier.stopping(status)

    def _log_inner_error(self) -> None:
        now = self.clock()
        if now >= self._next_error_log:
            self._next_error_log = now + 60.0
            log.exception("frame callback %r failed (the watchdog is still fed)", self.inner)
