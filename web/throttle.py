"""Brute-force protection for logins: lockouts per account name and per remote address."""

from __future__ import annotations

import ipaddress
import logging
import math
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from web.db import WebDB

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """How many failures are free, and how long a lock lasts after that.

    The ``account_free``-th failure for one account name (whether or not the account exists, so
    lockouts reveal nothing) locks that name for ``base_s``; every further failure doubles the
    lock, up to ``max_s``. The same per remote address with ``address_free``, higher because a
    warehouse's staff may share one NAT address. Failures are forgotten after ``window_s``
    without one, and a successful login clears its account's and its address's count.
    """

    account_free: int = 5
    address_free: int = 20
    base_s: float = 30.0
    max_s: float = 900.0
    window_s: float = 86400.0

    def lock_s(self, failures: int, free: int) -> float:
        """Seconds to lock after the ``failures``-th failure in a row (0 = no lock)."""
        if failures < free:
            return 0.0
        return min(self.max_s, self.base_s * 2.0 ** min(failures - free, 30))


def account_key(name: str) -> str:
    return unicodedata.normalize("NFC", name.strip())[:64]


def address_key(addr: str | None) -> str:
    """IPv4 as it is; IPv6 by its /64 prefix, since one host usually holds a whole /64."""
    if not addr:
        return "-"
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class LoginThrottle:
    """Checks and records login attempts in web.sqlite3 (shared by all server threads and
    processes). ``retry_after`` before checking a password; ``failed`` or ``succeeded`` after.
    A locked attempt is refused without looking at the password, so guessing stops entirely.
    """

    def __init__(
        self, db: WebDB, policy: Policy | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.policy = policy or Policy()
        self.clock = clock

    def _keys(self, name: str, addr: str | None) -> list[tuple[str, str]]:
        return [("account", account_key(name)), ("address", address_key(addr))]

    def attempt(self, name: str, addr: str | None) -> tuple[int, dict[str, int]]:
        """Before checking a password: (seconds locked, {}) to refuse it unchecked, or
        (0, failure counts) with this attempt already counted as a failure (``succeeded``
        clears it). Atomic across threads and processes, so parallel guesses cannot all slip
        in before the lock: at most ``account_free`` passwords are checked per name."""
        now = self.clock()
        p = self.policy
        keys: list[tuple[str, str, Callable[[int], float]]] = [
            (scope, key, partial(p.lock_s, free=p.account_free if scope == "account" else
                                 p.address_free))
            for scope, key in self._keys(name, addr)
        ]  # fmt: skip
        until, counts = self.db.begin_login_attempt(keys, now, p.window_s)
        return max(0, math.ceil(until - now)), counts

    def after_failure(self, name: str, addr: str | None, counts: dict[str, int]) -> int:
        """After a wrong password counted by ``attempt``: the lock it caused (0 = none)."""
        wait = self.retry_after(name, addr)
        if wait:
            log.warning(
                "login locked for %d s: %d failures for account %r, %d from address %s",
                wait, counts.get("account", 0), account_key(name), counts.get("address", 0),
                address_key(addr),
            )  # fmt: skip
        return wait

    def retry_after(self, name: str, addr: str | None) -> int:
        """Whole seconds until this name may try again from this address; 0 = now."""
        until = self.db.login_locked_until(self._keys(name, addr))
        return max(0, math.ceil(until - self.clock()))

    def failed(self, name: str, addr: str | None) -> int:
        """Record a failure; returns the seconds of lock it caused (0 = none yet)."""
        now = self.clock()
        p = self.policy
        counts = {}
        until = 0.0
        for scope, key in self._keys(name, addr):
            free = p.account_free if scope == "account" else p.address_free
            n, locked = self.db.record_login_failure(
                scope, key, now, p.window_s, partial(p.lock_s, free=free)
            )
            counts[scope] = n
            until = max(until, locked)
        wait = max(0, math.ceil(until - now))
        if wait:
            log.warning(
                "login locked for %d s: %d failures for account %r, %d from address %s",
                wait, counts["account"], account_key(name), counts["address"], address_key(addr),
            )  # fmt: skip
        return wait

    def succeeded(self, name: str, addr: str | None) -> None:
        self.db.clear_login_failures(self._keys(name, addr))
