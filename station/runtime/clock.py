"""Is the system clock synchronised (NTP)? Read from the kernel, as timedatectl does."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_TIME_ERROR = 5  # adjtimex() return value while the kernel flags the clock STA_UNSYNC


def clock_synced() -> bool | None:
    """True when the kernel says the clock is NTP-synchronised, False when not, None if unknown.

    adjtimex(2) with modes=0 only reads; it is the same source `timedatectl` uses for
    NTPSynchronized. The struct is passed as an oversized zeroed buffer so this does not depend on
    the exact struct timex layout of the architecture (only ``modes``, the first field, matters).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        log.debug("adjtimex failed: errno %d", ctypes.get_errno())
        return None
    return bool(state != _TIME_ERROR)  # adjtimex's result is an untyped ctypes int
