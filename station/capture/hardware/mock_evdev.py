"""The mock scanner backend: python-evdev's API shape, backed by a simulated input bus."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

# ---- ecodes -------------------------------------------------------------------------------

_CODES: dict[str, int] = {
    "EV_SYN": 0x00, "EV_KEY": 0x01, "EV_REL": 0x02, "EV_ABS": 0x03, "EV_MSC": 0x04,
    "EV_LED": 0x11, "EV_REP": 0x14,
    "SYN_REPORT": 0, "SYN_DROPPED": 3, "MSC_SCAN": 4, "REL_X": 0, "REL_Y": 1, "REL_WHEEL": 8,
    "LED_NUML": 0, "LED_CAPSL": 1, "LED_SCROLLL": 2,
    "KEY_RESERVED": 0, "KEY_ESC": 1, "KEY_MINUS": 12, "KEY_EQUAL": 13, "KEY_BACKSPACE": 14,
    "KEY_TAB": 15, "KEY_LEFTBRACE": 26, "KEY_RIGHTBRACE": 27, "KEY_ENTER": 28,
    "KEY_LEFTCTRL": 29, "KEY_SEMICOLON": 39, "KEY_APOSTROPHE": 40, "KEY_GRAVE": 41,
    "KEY_LEFTSHIFT": 42, "KEY_BACKSLASH": 43, "KEY_COMMA": 51, "KEY_DOT": 52, "KEY_SLASH": 53,
    "KEY_RIGHTSHIFT": 54, "KEY_KPASTERISK": 55, "KEY_LEFTALT": 56, "KEY_SPACE": 57,
    "KEY_CAPSLOCK": 58, "KEY_NUMLOCK": 69, "KEY_SCROLLLOCK": 70, "KEY_KP7": 71, "KEY_KP8": 72,
    "KEY_KP9": 73, "KEY_KPMINUS": 74, "KEY_KP4": 75, "KEY_KP5": 76, "KEY_KP6": 77,
    "KEY_KPPLUS": 78, "KEY_KP1": 79, "KEY_KP2": 80, "KEY_KP3": 81, "KEY_KP0": 82,
    "KEY_KPDOT": 83, "KEY_KPENTER": 96, "KEY_RIGHTCTRL": 97, "KEY_KPSLASH": 98,
    "KEY_RIGHTALT": 100, "KEY_UP": 103, "KEY_DOWN": 108,
    "BTN_MOUSE": 0x110, "BTN_LEFT": 0x110, "BTN_RIGHT": 0x111, "BTN_MIDDLE": 0x112,
}  # fmt: skip
_CODES.update({f"KEY_{d}": 2 + i for i, d in enumerate("1234567890")})
_CODES.update({f"KEY_{c}": 16 + i for i, c in enumerate("QWERTYUIOP")})
_CODES.update({f"KEY_{c}": 30 + i for i, c in enumerate("ASDFGHJKL")})
_CODES.update({f"KEY_{c}": 44 + i for i, c in enumerate("ZXCVBNM")})
_CODES.update({f"KEY_F{i}": 58 + i for i in range(1, 11)})


def _by_prefix(prefix: str) -> dict[int, str | list[str]]:
    out: dict[int, str | list[str]] = {}
    for name, code in _CODES.items():
        if name.startswith(prefix):
            prev = out.get(code)
            if prev is None:
                out[code] = name
            else:  # aliases share a code: evdev then lists the names
                out[code] = sorted([*([prev] if isinstance(prev, str) else prev), name])
    return out


ecodes = SimpleNamespace(**_CODES)
ecodes.ecodes = dict(_CODES)
ecodes.EV = _by_prefix("EV_")
ecodes.KEY = {**_by_prefix("KEY_")}
ecodes.BTN = _by_prefix("BTN_")
ecodes.keys = {**ecodes.KEY, **ecodes.BTN}
ecodes.MSC = _by_prefix("MSC_")
ecodes.SYN = _by_prefix("SYN_")
ecodes.REL = _by_prefix("REL_")
ecodes.LED = _by_prefix("LED_")
ecodes.bytype = {
    _CODES["EV_KEY"]: ecodes.keys,
    _CODES["EV_REL"]: ecodes.REL,
    _CODES["EV_MSC"]: ecodes.MSC,
    _CODES["EV_SYN"]: ecodes.SYN,
    _CODES["EV_LED"]: ecodes.LED,
}

KEYBOARD_KEYS = sorted(c for n, c in _CODES.items() if n.startswith("KEY_") and n != "KEY_RESERVED")
MOUSE_CAPS = {_CODES["EV_KEY"]: [0x110, 0x111, 0x112], _CODES["EV_REL"]: [0, 1, 8]}

# US layout: character -> (key name, shift)
_TYPING: dict[str, tuple[str, bool]] = {}
for _c in "abcdefghijklmnopqrstuvwxyz":
    _TYPING[_c] = (f"KEY_{_c.upper()}", False)
    _TYPING[_c.upper()] = (f"KEY_{_c.upper()}", True)
for _d, _s in zip("1234567890", "!@#$%^&*()", strict=True):
    _TYPING[_d] = (f"KEY_{_d}", False)
    _TYPING[_s] = (f"KEY_{_d}", True)
for _name, _plain, _shifted in (
    ("MINUS", "-", "_"), ("EQUAL", "=", "+"), ("LEFTBRACE", "[", "{"), ("RIGHTBRACE", "]", "}"),
    ("SEMICOLON", ";", ":"), ("APOSTROPHE", "'", '"'), ("GRAVE", "`", "~"),
    ("BACKSLASH", "\\", "|"), ("COMMA", ",", "<"), ("DOT", ".", ">"), ("SLASH", "/", "?"),
):  # fmt: skip
    _TYPING[_plain] = (f"KEY_{_name}", False)
    _TYPING[_shifted] = (f"KEY_{_name}", True)
_TYPING[" "] = ("KEY_SPACE", False)
_TYPING["\n"] = ("KEY_ENTER", False)
_TYPING["\t"] = ("KEY_TAB", False)


# ---- events -------------------------------------------------------------------------------


class InputEvent:
    """A generic input event, as ``struct input_event``."""

    __slots__ = ("code", "sec", "type", "usec", "value")

    def __init__(self, sec: int, usec: int, type: int, code: int, value: int) -> None:
        self.sec, self.usec, self.type, self.code, self.value = sec, usec, type, code, value

    def timestamp(self) -> float:
        return self.sec + self.usec / 1_000_000.0

    def __repr__(self) -> str:
        return f"InputEvent({self.sec}, {self.usec}, {self.type}, {self.code}, {self.value})"


class KeyEvent:
    """An EV_KEY event with its state (``key_up``, ``key_down``, ``key_hold``) and name."""

    key_up = 0x0
    key_down = 0x1
    key_hold = 0x2

    __slots__ = ("event", "keycode", "keystate", "scancode")

    def __init__(self, event: InputEvent, allow_unknown: bool = False) -> None:
        self.scancode = event.code
        self.keystate = {0: KeyEvent.key_up, 1: KeyEvent.key_down, 2: KeyEvent.key_hold}.get(
            event.value
        )
        try:
            self.keycode = ecodes.keys[event.code]
        except KeyError:
            if not allow_unknown:
                raise
            self.keycode = f"0x{event.code:02X}"
        self.event = event


def categorize(event: InputEvent) -> Any:
    """A ``KeyEvent`` for EV_KEY events; other events come back unchanged (as evdev does for
    types this fake does not model)."""
    return KeyEvent(event) if event.type == ecodes.EV_KEY else event


# ---- the simulated bus and devices --------------------------------------------------------


@dataclass
class _Hardware:
    path: str
    name: str
    caps: dict[int, list[int]]
    phys: str = "usb-0000:01:00.0-1.3/input0"
    plugged: bool = True
    handles: list[InputDevice] = field(default_factory=list)
    grabbed_by: InputDevice | None = None


class InputDevice:
    """A handle on an input device node. ``_bus`` is set on the subclass a ``FakeEvdev`` makes."""

    _bus: FakeEvdev

    def __init__(self, dev: str | os.PathLike[str]) -> None:
        path = os.fspath(dev)
        hw = self._bus.nodes.get(path)
        if hw is None or not hw.plugged:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        if path in self._bus.denied:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        self._hw = hw
        self.path = path
        self.name = hw.name
        self.phys = hw.phys
        self.uniq = ""
        self.info = SimpleNamespace(bustype=3, vendor=0x0C2E, product=0x0901, version=0x0111)
        self.version = 0x010001
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._pending: list[InputEvent] = []
        self._lock = threading.Lock()
        self._dead = False
        hw.handles.append(self)
        self._bus.opened += 1

    @property
    def fd(self) -> int:
        return self._r

    def fileno(self) -> int:
        if self._r < 0:
            raise ValueError("I/O operation on closed device")
        return self._r

    def capabilities(self, verbose: bool = False, absinfo: bool = True) -> dict[Any, list[Any]]:
        caps = {etype: list(codes) for etype, codes in self._hw.caps.items()}
        if not verbose:
            return caps
        out: dict[Any, list[Any]] = {}
        for etype, codes in caps.items():
            names = ecodes.bytype.get(etype, {})
            out[(ecodes.EV.get(etype, "?"), etype)] = [(names.get(c, "?"), c) for c in codes]
        return out

    def grab(self) -> None:
        self._check()
        if self._hw.grabbed_by is not None:
            raise OSError(errno.EBUSY, "Device or resource busy")
        self._hw.grabbed_by = self

    def ungrab(self) -> None:
        self._check()
        if self._hw.grabbed_by is not self:
            raise OSError(errno.EINVAL, "Invalid argument")
        self._hw.grabbed_by = None

    def active_keys(self, verbose: bool = False) -> list[Any]:
        self._check()
        return []

    def _check(self) -> None:
        if self._dead:
            raise OSError(errno.ENODEV, "No such device")

    def _deliver(self, events: list[InputEvent]) -> None:
        with self._lock:
            self._pending.extend(events)
        if self._w >= 0:
            os.write(self._w, b"\x00")

    def _die(self) -> None:
        self._dead = True
        if self._w >= 0:
            os.write(self._w, b"\x00")  # wake a select, as the kernel does on removal

    def read(self) -> Iterator[InputEvent]:
        """A generator over the pending events; like evdev's it raises on first iteration."""
        self._check()
        # Drain the wake-up bytes first, then the events: an event delivered in between
        # leaves a byte behind, so the next select still wakes.
        with contextlib.suppress(BlockingIOError):
            os.read(self._r, 4096)
        with self._lock:
            events, self._pending = self._pending, []
        if not events:
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        yield from events

    def read_one(self) -> InputEvent | None:
        self._check()
        with self._lock:
            return self._pending.pop(0) if self._pending else None

    def read_loop(self) -> Iterator[InputEvent]:
        while True:
            select.select([self._r], [], [])
            try:
                yield from self.read()
            except BlockingIOError:
                continue

    def close(self) -> None:
        if self._r >= 0:
            if self._hw.grabbed_by is self:
                self._hw.grabbed_by = None
            if self in self._hw.handles:
                self._hw.handles.remove(self)
            os.close(self._r)
            os.close(self._w)
            self._r = self._w = -1
            self._bus.closed += 1

    def __fspath__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"InputDevice({self.path!r})"


class FakeEvdev:
    """The ``evdev`` module plus a test's control of the devices behind it.

    ``FakeEvdev()`` is used like the ``evdev`` module (``ecodes``, ``list_devices``,
    ``InputDevice``, ``InputEvent``, ``KeyEvent``, ``categorize``) and adds the bus a test drives:
    ``add`` a device, ``type`` text on it (real key sequences: MSC_SCAN, shift presses, key
    down/up, SYN_REPORT), ``unplug`` and ``replug`` it. As in evdev: each ``InputDevice`` is a
    non-blocking handle with a real file descriptor for ``select``; ``read()`` raises
    ``BlockingIOError`` when nothing is pending and ``OSError(ENODEV)`` once the device is
    unplugged; ``grab()`` gives one handle all events (a second grab raises ``OSError(EBUSY)``,
    ``ungrab()`` without a grab ``OSError(EINVAL)``); opening a missing node raises
    ``FileNotFoundError``; ``list_devices`` lists the plugged nodes this user may open (nodes
    in ``denied`` raise ``PermissionError`` and are left out, as python-evdev does). Key codes
    are the kernel's (``linux/input-event-codes.h``).
    """

    InputEvent = InputEvent
    KeyEvent = KeyEvent
    ecodes = ecodes

    def __init__(self) -> None:
        self.nodes: dict[str, _Hardware] = {}
        self.denied: set[str] = set()
        self.opened = 0
        self.closed = 0
        self.InputDevice = type("InputDevice", (InputDevice,), {"_bus": self})

    # the evdev module's functions
    def list_devices(
        self, input_device_dir: str = "/dev/input", writable: bool = True
    ) -> list[str]:
        # As python-evdev: nodes this user may not open are left out without a word.
        return [p for p in self._plugged(input_device_dir) if p not in self.denied]

    def _plugged(self, input_device_dir: str) -> list[str]:
        return [p for p, hw in self.nodes.items() if hw.plugged and p.startswith(input_device_dir)]

    def unreadable(self) -> list[str]:
        """The plugged nodes this user may not open (what the filesystem check would find)."""
        return sorted(p for p in self._plugged("/dev/input") if p in self.denied)

    @staticmethod
    def categorize(event: Any) -> Any:
        return categorize(event)

    # the test's hands on the bus
    def add(self, path: str, name: str, caps: dict[int, list[int]] | None = None) -> None:
        """Plug in a device; by default a full keyboard, as scanners announce themselves."""
        if caps is None:
            caps = {ecodes.EV_SYN: [0, 1, 4], ecodes.EV_KEY: list(KEYBOARD_KEYS),
                    ecodes.EV_MSC: [ecodes.MSC_SCAN], ecodes.EV_LED: [0, 1, 2]}  # fmt: skip
        self.nodes[path] = _Hardware(path, name, caps)

    def unplug(self, path: str) -> None:
        hw = self.nodes[path]
        hw.plugged = False
        hw.grabbed_by = None
        for handle in list(hw.handles):
            handle._die()

    def replug(self, path: str, new_path: str | None = None) -> None:
        """Plug a device in again, possibly on another node (as the kernel often does)."""
        old = self.nodes.pop(path)
        self.add(new_path or path, old.name, old.caps)

    def send(self, path: str, events: list[tuple[int, int, int]]) -> None:
        hw = self.nodes[path]
        now = time.time()
        sec, usec = int(now), int((now % 1) * 1_000_000)
        evs = [InputEvent(sec, usec, t, c, v) for t, c, v in events]
        targets = [hw.grabbed_by] if hw.grabbed_by is not None else list(hw.handles)
        for handle in targets:
            handle._deliver(evs)

    def key_events(self, text: str, hold: bool = False) -> list[tuple[int, int, int]]:
        """The events a US-layout keyboard wedge sends to type ``text`` ("\\n" = Enter)."""
        out: list[tuple[int, int, int]] = []
        key, syn, msc = ecodes.EV_KEY, (ecodes.EV_SYN, ecodes.SYN_REPORT, 0), ecodes.EV_MSC
        for ch in text:
            name, shift = _TYPING[ch]
            code = _CODES[name]
            if shift:
                out += [(msc, 4, 0x700E1), (key, ecodes.KEY_LEFTSHIFT, 1), syn]
            out += [(msc, 4, 0x70000 + code), (key, code, 1), syn]
            if hold:
                out += [(key, code, 2), syn]
            out += [(msc, 4, 0x70000 + code), (key, code, 0), syn]
            if shift:
                out += [(msc, 4, 0x700E1), (key, ecodes.KEY_LEFTSHIFT, 0), syn]
        return out

    def type(self, path: str, text: str) -> None:
        self.send(path, self.key_events(text))
