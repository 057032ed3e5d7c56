"""A USB keyboard-wedge barcode scanner read with python-evdev, grabbed so it types nowhere else."""

from __future__ import annotations

import contextlib
import errno
import getpass
import glob
import logging
import os
import re
import select
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

from station.capture.eventqueue import MAX_LINE
from station.capture.frames import RawScan
from station.capture.scanner import ThreadedScanner
from station.errors import ScannerError
from station.runtime.backoff import Backoff

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "python-evdev is not installed: `sudo apt install python3-evdev` with a "
    "--system-site-packages venv (what `make venv` does on a Pi), or `pip install evdev` in the "
    "venv (it builds against the kernel headers: `sudo apt install python3-dev linux-libc-dev`)"
)


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def unreadable_input_devices(
    input_dir: str = "/dev/input",
    *,
    access: Callable[[str, int], bool] = os.access,
    is_char_device: Callable[[str], bool] = _is_char_device,
) -> list[str]:
    """Event nodes this user may not open for reading and writing.

    python-evdev's ``list_devices()`` silently leaves these out (it keeps only nodes that pass
    ``os.access(R_OK | W_OK)``), so without this a scanner the service user may not read looks
    exactly like no scanner at all.
    """
    nodes = sorted(glob.glob(os.path.join(input_dir, "event*")))
    return [p for p in nodes if is_char_device(p) and not access(p, os.R_OK | os.W_OK)]


def permission_hint(unreadable: list[str], user: str | None = None) -> str:
    """The fix for input devices ``user`` may not open ("" when there are none)."""
    if not unreadable:
        return ""
    who = user or _user()
    shown = ", ".join(unreadable[:4]) + (", ..." if len(unreadable) > 4 else "")
    return (
        f"{len(unreadable)} input device(s) exist that user {who!r} may not open ({shown}): "
        f"add the service user to the input group (`sudo usermod -aG input {who}`, then restart "
        "the service) or give the scanner a udev rule (docs/hardware.md)"
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


# Names scanners announce themselves with (USB product strings of common brands).
SCANNER_NAME = re.compile(
    r"scan|barcode|bar code|honeywell|symbol|zebra|datalogic|newland|metrologic|opticon|"
    r"netum|eyoyo|inateck|code ?reader",
    re.IGNORECASE,
)

# US layout, which is what scanners emulate unless reprogrammed: key -> (plain, shifted).
_US_KEYS: dict[str, tuple[str, str]] = {
    **{f"KEY_{c}": (c.lower(), c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
    **{f"KEY_{d}": (d, s) for d, s in zip("1234567890", "!@#$%^&*()", strict=True)},
    "KEY_MINUS": ("-", "_"),
    "KEY_EQUAL": ("=", "+"),
    "KEY_LEFTBRACE": ("[", "{"),
    "KEY_RIGHTBRACE": ("]", "}"),
    "KEY_SEMICOLON": (";", ":"),
    "KEY_APOSTROPHE": ("'", '"'),
    "KEY_GRAVE": ("`", "~"),
    "KEY_BACKSLASH": ("\\", "|"),
    "KEY_COMMA": (",", "<"),
    "KEY_DOT": (".", ">"),
    "KEY_SLASH": ("/", "?"),
    "KEY_SPACE": (" ", " "),
    **{f"KEY_KP{d}": (d, d) for d in "0123456789"},
    "KEY_KPMINUS": ("-", "-"),
    "KEY_KPPLUS": ("+", "+"),
    "KEY_KPASTERISK": ("*", "*"),
    "KEY_KPSLASH": ("/", "/"),
    "KEY_KPDOT": (".", "."),
}
_SHIFTS = ("KEY_LEFTSHIFT", "KEY_RIGHTSHIFT")
_CTRLS = ("KEY_LEFTCTRL", "KEY_RIGHTCTRL")
# Alt (and AltGr) + keypad digits is how scanners type what the layout lacks (a Chinese seal
# card): the digits are a code point in a code page we cannot know, never the code's text.
_ALTS = ("KEY_LEFTALT", "KEY_RIGHTALT")
ALT_CODES = "typed with Alt key codes"
EVENTS_LOST = "key events were lost"
# Enter ends a scan; Tab is the other suffix scanners are commonly set to send.
_TERMINATORS = ("KEY_ENTER", "KEY_KPENTER", "KEY_TAB")
_KEY_DOWN, _KEY_UP = 1, 0  # value 2 is autorepeat: scanners do not hold keys, so it is ignored


class KeyDecoder:
    """Turns EV_KEY events into text: shift, caps lock and ctrl tracked, a terminator ends a scan.

    Pure and single-threaded. ``feed(code, value)`` returns the finished scan text when a
    terminator goes down, else None. Ctrl+letter gives the ASCII control character (how
    scanners type GS1's group separator); unknown keys are ignored. At most ``limit`` characters
    of one scan are kept, the rest are counted in ``overflow`` and dropped. After ``lost``
    (events were dropped) the scan being typed is thrown away, up to its terminator; so is a
    scan with a key typed while Alt is held (Alt codes: "封箱" would read as "2355331665", an
    order). ``refused`` says why the last terminated scan was thrown away ("" when it was not).
    """

    def __init__(self, ecodes: Any, limit: int = MAX_LINE) -> None:
        def code(name: str) -> int | None:
            return getattr(ecodes, name, None)

        self._chars = {c: v for n, v in _US_KEYS.items() if (c := code(n)) is not None}
        self._shift_keys = {c for n in _SHIFTS if (c := code(n)) is not None}
        self._ctrl_keys = {c for n in _CTRLS if (c := code(n)) is not None}
        self._alt_keys = {c for n in _ALTS if (c := code(n)) is not None}
        self._end_keys = {c for n in _TERMINATORS if (c := code(n)) is not None}
        self._caps_key = code("KEY_CAPSLOCK")
        self._limit = limit
        self.reset()

    def reset(self) -> None:
        """Forget a half-typed scan and any held modifiers (after an unplug)."""
        self._buf: list[str] = []
        self._held: set[int] = set()
        self._caps = False
        self._damaged = ""
        self.overflow = 0
        self.refused = ""

    def lost(self) -> None:
        """Key events were dropped (the kernel's SYN_DROPPED: the reader fell behind and the
        device's buffer overflowed). The scan being typed misses characters, and a scan with
        a gap in it is another, wrong code: what was typed of it and the rest of it, up to its
        terminator, are thrown away. Held modifiers are forgotten (their key-ups may be lost),
        and Caps Lock is off after that terminator (a Caps Lock press may be lost too).
        """
        self._buf = []
        self._held.clear()
        self._damaged = EVENTS_LOST

    def feed(self, code: int, value: int) -> str | None:
        self.refused = ""
        if code in self._shift_keys or code in self._ctrl_keys or code in self._alt_keys:
            if value == _KEY_DOWN:
                self._held.add(code)
            elif value == _KEY_UP:
                self._held.discard(code)
            return None
        if value != _KEY_DOWN:
            return None
        if code == self._caps_key:
            self._caps = not self._caps
            return None
        if code in self._end_keys:
            text = "".join(self._buf)
            self._buf = []
            self.refused, self._damaged = self._damaged, ""
            if self.refused:
                if self.refused == EVENTS_LOST:
                    # A lost Caps Lock press would invert the case of every later scan (a
                    # waybill typed "sf1..." is a new order); a scanner leaves it off between
                    # scans, so it is off again now.
                    self._caps = False
                return None
            return text or None
        chars = self._chars.get(code)
        if chars is None:
            return None
        if self._held & self._alt_keys:
            self._buf = []
            self._damaged = ALT_CODES
            return None
        plain, shifted = chars
        shift = bool(self._held & self._shift_keys)
        if plain.isalpha() and self._caps:
            shift = not shift
        ch = shifted if shift else plain
        if self._held & self._ctrl_keys:
            if not ch.isalpha() and ch not in "[\\]^_":
                return None
            ch = chr(ord(ch.upper()) & 0x1F)
        if len(self._buf) >= self._limit:
            self.overflow += 1
            return None
        self._buf.append(ch)
        return None


def is_keyboard(caps: dict[int, list[Any]], ecodes: Any) -> bool:
    """Whether an EV_KEY capability list can type a code: Enter, digits and letters."""
    keys = set(caps.get(ecodes.EV_KEY, []))
    need = ["KEY_ENTER", "KEY_A", "KEY_Z", *(f"KEY_{d}" for d in "0123456789")]
    return all(getattr(ecodes, n) in keys for n in need)


def find_scanner(evdev: Any, name: str | None = None) -> tuple[str, str] | None:
    """``(path, name)`` of the scanner among the input devices, or None.

    With ``name`` (a scanner found before, now replugged) only a keyboard of exactly that
    name qualifies. Otherwise a keyboard-capable device whose name sounds like a scanner wins,
    then the only keyboard there is. With several ordinary keyboards we refuse to guess
    (grabbing the wrong one would swallow someone's typing): set ``scanner.evdev_device``.
    """
    keyboards: list[tuple[str, str]] = []
    for path in sorted(evdev.list_devices()):
        try:
            dev = evdev.InputDevice(path)
        except OSError as exc:
            log.debug("cannot open %s: %s", path, exc)
            continue
        try:
            if is_keyboard(dev.capabilities(), evdev.ecodes):
                keyboards.append((path, dev.name))
        finally:
            dev.close()
    if name is not None:
        return next((k for k in keyboards if k[1] == name), None)
    named = [k for k in keyboards if SCANNER_NAME.search(k[1])]
    if named:
        return named[0]
    if len(keyboards) == 1:
        return keyboards[0]
    if keyboards:
        log.warning(
            "several keyboards and none named like a scanner (%s); set scanner.evdev_device",
            ", ".join(f"{p} {n!r}" for p, n in keyboards),
        )
    return None


def import_evdev() -> Any:
    """python-evdev, or ``ScannerError`` naming how to install it."""
    try:
        import evdev
    except ImportError as exc:
        raise ScannerError(INSTALL_HINT) from exc
    return evdev


def scanner_report(
    device: str = "",
    evdev_module: Any = None,
    list_unreadable: Callable[[], list[str]] = unreadable_input_devices,
) -> tuple[tuple[str, str] | None, list[str]]:
    """For ``packcam doctor``: the scanner that would be used (path, name) or None, and the
    input devices this user may not open. Raises ``ScannerError`` without python-evdev."""
    evdev = evdev_module if evdev_module is not None else import_evdev()
    unreadable = list_unreadable()
    if not device:
        return find_scanner(evdev), unreadable
    try:
        dev = evdev.InputDevice(device)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            real = os.path.realpath(device)
            return None, sorted({*unreadable, real})
        return None, unreadable
    try:
        return (device, dev.name), unreadable
    finally:
        dev.close()


class EvdevScanner(ThreadedScanner):
    """A keyboard-wedge USB barcode scanner read from /dev/input with python-evdev.

    The device is ``device`` (an event node or a stable /dev/input/by-id path) or, when empty,
    found by ``find_scanner`` (and on reconnects, only a device of the name found first). It
    is grabbed (``grab=True``) so scans do not also land in whatever window has focus.
    Keystrokes are decoded as a US keyboard (``KeyDecoder``); each terminated scan becomes
    ``RawScan(text, "keyboard", time.monotonic())``.

    One daemon thread opens, reads and, when the device vanishes (unplugged: ENODEV) or cannot
    be found, logs and retries with backoff up to ``retry_max_s``, so a replugged scanner is
    picked up again. ``poll`` only drains the queue and never raises. ``start`` raises
    ``ScannerError`` only when python-evdev itself is missing. Reading the device needs
    permission: the user must be in group ``input``.
    """

    join_timeout_s = 2.0

    def __init__(
        self,
        device: str = "",
        grab: bool = True,
        evdev_module: Any = None,
        *,
        retry_max_s: float = 10.0,
        list_unreadable: Callable[[], list[str]] = unreadable_input_devices,
    ) -> None:
        self.device = device
        self._list_unreadable = list_unreadable
        self.grab = grab
        self._evdev = evdev_module
        self.retry_max_s = retry_max_s
        super().__init__("evdev scanner")
        self.connected = threading.Event()
        self.device_path = ""
        self.device_name = ""
        self.scans = 0
        self.reconnects = 0

    def start(self) -> None:
        if self._evdev is None:
            self._evdev = import_evdev()
        self._start_reader("evdev-scanner")

    # ---- the reader thread ----------------------------------------------------------------

    def _open(self) -> Any | None:
        evdev = self._evdev
        if self.device:
            path, name = self.device, ""
        else:
            # Once a scanner was found, only the same device (replugged) will do: falling
            # back to "the only keyboard" then could grab the operator's real keyboard.
            found = find_scanner(evdev, self.device_name or None)
            if found is None:
                return None
            path, name = found
        try:
            dev = evdev.InputDevice(path)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                log.error("no permission to read %s: add the user to group 'input'", path)
            else:
                log.debug("cannot open %s: %s", path, exc)
            return None
        if self.grab:
            try:
                dev.grab()
            except OSError as exc:
                # Someone else holds the grab: read anyway, but scans may also type elsewhere.
                log.warning("cannot grab %s (%s); reading it without a grab", path, exc)
        self.device_path, self.device_name = path, name or dev.name
        return dev

    def _run(self) -> None:
        self._decoder = KeyDecoder(self._evdev.ecodes)
        backoff = Backoff(min(0.25, self.retry_max_s), self.retry_max_s)
        missing_logged = False
        while not self._stop.is_set():
            dev = self._open()
            if dev is None:
                if not missing_logged:
                    log.warning("no barcode scanner at %s; waiting for one to be plugged in",
                                self.device or "any input device")  # fmt: skip
                    try:
                        hint = permission_hint(self._list_unreadable())
                    except OSError:
                        hint = ""
                    if hint:
                        log.error("barcode scanner: %s", hint)
                    missing_logged = True
                self._stop.wait(backoff.next())
                continue
            log.info("reading barcode scanner %s (%r)%s", self.device_path, self.device_name,
                     ", grabbed" if self.grab else "")  # fmt: skip
            missing_logged = False
            backoff.reset()
            self._decoder.reset()
            self.connected.set()
            try:
                self._read(dev)
            except OSError as exc:
                self.reconnects += 1
                log.warning("barcode scanner %s went away (%s); reconnecting", self.device_path,
                            exc)  # fmt: skip
            finally:
                self.connected.clear()
                self._close(dev)

    def _read(self, dev: Any) -> None:
        ecodes = self._evdev.ecodes
        ev_key, ev_syn = ecodes.EV_KEY, ecodes.EV_SYN
        syn_dropped = getattr(ecodes, "SYN_DROPPED", 3)
        while not self._stop.is_set():
            ready, _, _ = select.select([dev], [], [], 0.2)
            if not ready:
                continue
            try:
                events = list(dev.read())
            except BlockingIOError:
                continue
            for ev in events:
                if ev.type == ev_syn and ev.code == syn_dropped:
                    log.warning("barcode scanner %s: key events were lost (the reader fell "
                                "behind); the scan being typed is discarded: scan it again",
                                self.device_path)  # fmt: skip
                    self._decoder.lost()
                    continue
                if ev.type != ev_key:
                    continue
                text = self._decoder.feed(ev.code, ev.value)
                if text is None:
                    if self._decoder.refused == ALT_CODES:
                        log.warning("barcode scanner %s: a scan was typed with Alt key codes "
                                    "(characters a US keyboard lacks); discarded: set the "
                                    "scanner to a US layout without Alt codes",
                                    self.device_path)  # fmt: skip
                    continue
                if self._decoder.overflow:
                    log.warning("scan longer than %d characters; kept the first %d and "
                                "discarded %d more", MAX_LINE, MAX_LINE,
                                self._decoder.overflow)  # fmt: skip
                    self._decoder.overflow = 0
                self.scans += 1
                self._queue.put(RawScan(text, "keyboard", time.monotonic()))

    def _close(self, dev: Any) -> None:
        if self.grab:
            with contextlib.suppress(OSError):  # gone with the device, or never grabbed
                dev.ungrab()
        try:
            dev.close()
        except OSError:
            log.debug("closing %s failed", self.device_path, exc_info=True)


__all__ = ["INSTALL_HINT", "EvdevScanner", "KeyDecoder", "find_scanner", "is_keyboard"]
