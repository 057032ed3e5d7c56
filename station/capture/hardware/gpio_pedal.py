"""A foot pedal or push button on a GPIO pin, read with gpiozero."""

from __future__ import annotations

import logging
import time
from typing import Any

from station.capture.eventqueue import EventQueue
from station.capture.frames import InputEvent, PedalPress
from station.errors import ScannerError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "gpiozero is not installed: `sudo apt install python3-gpiozero python3-lgpio` (or "
    "`pip install gpiozero lgpio` in the venv)"
)


class GpioPedal:
    """A normally-open pedal or button between BCM pin ``pin`` and ground.

    gpiozero's ``Button(pin, pull_up=True, bounce_time=0.05)``: the internal pull-up holds the
    pin high, pressing pulls it low, and 50 ms of debounce (gpiozero's, and a lockout of our
    own for pin backends that ignore it) swallows contact bounce. Each press
    becomes ``PedalPress(time.monotonic())``. gpiozero calls ``when_pressed`` on its own
    thread; presses are queued and ``poll`` drains them. ``pin_factory`` is passed to the
    Button (tests use gpiozero's ``MockFactory``); ``start`` raises ``ScannerError`` when
    gpiozero is missing or the pin cannot be used.
    """

    def __init__(
        self,
        pin: int,
        gpiozero_module: Any = None,
        *,
        pin_factory: Any = None,
        bounce_time: float = 0.05,
    ) -> None:
        self.pin = pin
        self._gpiozero = gpiozero_module
        self._pin_factory = pin_factory
        self.bounce_time = bounce_time
        self._queue = EventQueue(f"pedal on GPIO{pin}")
        self._button: Any = None
        self._last_press = float("-inf")
        self.presses = 0

    def start(self) -> None:
        if self._button is not None:
            raise RuntimeError("GpioPedal already started")
        gz = self._gpiozero
        if gz is None:
            try:
                import gpiozero
            except ImportError as exc:
                raise ScannerError(INSTALL_HINT) from exc
            gz = gpiozero
        kwargs: dict[str, Any] = {"pull_up": True, "bounce_time": self.bounce_time}
        if self._pin_factory is not None:
            kwargs["pin_factory"] = self._pin_factory
        try:
            button = gz.Button(self.pin, **kwargs)
        except Exception as exc:  # gpiozero's GPIOZeroError family, or a pin-library error
            raise ScannerError(f"cannot use GPIO{self.pin} for the pedal: {exc}") from exc
        button.when_pressed = self._pressed
        self._button = button
        log.info("pedal on GPIO%d (pull-up, press connects to ground)", self.pin)

    def _pressed(self) -> None:
        now = time.monotonic()
        # Not every pin backend debounces (gpiozero's MockPin ignores bounce_time, lgpio's
        # filter depends on the kernel): a second "press" within the bounce time is chatter.
        if now - self._last_press < self.bounce_time:
            return
        self._last_press = now
        self.presses += 1
        self._queue.put(PedalPress(now))

    def poll(self, now: float) -> list[InputEvent]:
        return self._queue.drain()

    def stop(self) -> None:
        button, self._button = self._button, None
        if button is not None:
            button.when_pressed = None
            button.close()


__all__ = ["INSTALL_HINT", "GpioPedal"]
