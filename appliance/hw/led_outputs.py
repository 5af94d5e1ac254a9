"""The LED wirings as outputs: each turns a `Pattern` into gpiozero calls on the devices it owns.

One output per `LedsConfig.kind`: nothing (``none``), one dimmable LED (``pwm``), one RGB LED (``rgb``),
one LED per state (``per_state``) or a strip of APA102s (``apa102``). For the pin LEDs, timing runs on
gpiozero's own background threads (`pulse()` / `blink()`); these calls can wait (gpiozero's `off()`
joins its blink thread), which is why `Leds` makes them on its worker thread only. gpiozero has no
pulse or blink for an SPI strip, so `StripOutput` draws each step itself: `render` and `tick` return
when they want the next `tick`, and the `Leds` worker calls it then; a frame goes out over SPI only
when it differs from the one the strip already shows. The devices are handed in already opened (see
`build_leds`); gpiozero itself is imported only when a device class is first needed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, Protocol

from appliance.hw import apa102
from appliance.hw.led_patterns import OFF, PULSE_FPS, Pattern

__all__ = [
    "NoOutput", "Output", "PerStateOutput", "RgbOutput", "SingleOutput", "StripOutput", "close_all",
    "KINDS", "scaled_pwmled_class", "strip_device_class",
]

#: the wirings `leds.kind` names, one output class each
KINDS = ("none", "pwm", "rgb", "per_state", "apa102")


class Output(Protocol):
    """Something that makes a pattern visible (or, for kind none, does nothing)."""

    def shows(self, state: str) -> bool:
        """Whether anything lights up for `state` at all."""

    def render(self, state: str, pattern: Pattern) -> float | None:
        """Start showing `pattern` for `state`, replacing whatever ran before.

        Returns in how many seconds `tick` wants to draw the next step, or None for never.
        """

    def tick(self) -> float | None:
        """Draw the pattern's next step; returns like `render`."""

    def close(self) -> None:
        """Turn everything off and release the pins."""


class NoOutput:
    def shows(self, state: str) -> bool:
        return True

    def render(self, state: str, pattern: Pattern) -> None:
        pass

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


@functools.cache
def scaled_pwmled_class() -> type:
    """A gpiozero PWMLED whose every write is multiplied by its `scale`.

    gpiozero's `pulse()` and `blink()` on a single PWMLED always swing between 0 and 1. Scaling
    at the last step before the pin lets those patterns keep running on gpiozero's thread
    while never going above the brightness cap; `active_high=False` still inverts after it.
    """
    from gpiozero import PWMLED

    class ScaledPWMLED(PWMLED):  # type: ignore[misc, valid-type]
        scale: float = 1.0

        def _write(self, value: float) -> None:
            super()._write(value * self.scale)

    return ScaledPWMLED


def _drive_single(led: Any, pattern: Pattern) -> None:
    """Show `pattern` on one scaled PWMLED (the level goes into `scale`)."""
    led.off()  # stops a running pattern first, so no old write uses the new scale
    if pattern.kind == "off":
        return
    led.scale = pattern.level
    if pattern.kind == "solid":
        led.on()
    elif pattern.kind == "pulse":
        led.pulse(fade_in_time=pattern.fade_in, fade_out_time=pattern.fade_out, background=True)
    else:
        led.blink(on_time=pattern.on_time, off_time=pattern.off_time, background=True)


def _close_device(device: Any) -> None:
    try:
        device.off()
    finally:
        device.close()


class SingleOutput:
    def __init__(self, led: Any) -> None:
        self._led = led

    def shows(self, state: str) -> bool:
        return True

    def render(self, state: str, pattern: Pattern) -> None:
        _drive_single(self._led, pattern)

    def tick(self) -> None:
        pass  # gpiozero's own thread runs the pattern

    def close(self) -> None:
        _close_device(self._led)


class RgbOutput:
    def __init__(self, rgb: Any) -> None:
        self._rgb = rgb

    def shows(self, state: str) -> bool:
        return True

    def render(self, state: str, pattern: Pattern) -> None:
        rgb = self._rgb
        if pattern.kind == "off":
            rgb.off()
        elif pattern.kind == "solid":
            rgb.color = pattern.colour
        elif pattern.kind == "pulse":
            rgb.pulse(
                fade_in_time=pattern.fade_in, fade_out_time=pattern.fade_out,
                on_color=pattern.colour, off_color=pattern.off_colour, background=True,
            )
        else:
            rgb.blink(
                on_time=pattern.on_time, off_time=pattern.off_time,
                on_color=pattern.colour, off_color=pattern.off_colour, background=True,
            )

    def tick(self) -> None:
        pass  # gpiozero's own thread runs the pattern

    def close(self) -> None:
        _close_device(self._rgb)


class PerStateOutput:
    def __init__(self, leds_by_pin: dict[int, Any], pin_of_state: dict[str, int]) -> None:
        self._leds_by_pin = leds_by_pin
        self._pin_of_state = pin_of_state

    def shows(self, state: str) -> bool:
        return state in self._pin_of_state

    def render(self, state: str, pattern: Pattern) -> None:
        lit = self._pin_of_state.get(state)
        for pin, led in self._leds_by_pin.items():
            if pin != lit:
                _drive_single(led, OFF)
        if lit is not None:
            _drive_single(self._leds_by_pin[lit], pattern)

    def tick(self) -> None:
        pass  # gpiozero's own threads run the pattern

    def close(self) -> None:
        close_all(list(self._leds_by_pin.values()))


@functools.cache
def strip_device_class() -> type:
    """A gpiozero SPIDevice that sends whole APA102 frames (gpiozero has no LED strip device).

    Built on the pin factory's `spi()`: spidev on the SPI0 pins where it can be opened, gpiozero's
    own bit-banged SPI on any other pins (or when spidev is missing).
    """
    from gpiozero import SPIDevice

    class StripDevice(SPIDevice):  # type: ignore[misc, valid-type]
        def write(self, data: bytes) -> None:
            self._spi.write(list(data))

    return StripDevice


class StripOutput:
    """All `count` APA102s of a strip show the pattern's colour, one SPI frame per visible step.

    Time is measured from `render`; `clock` is for tests. A step is drawn at the moment it was
    due (not a few milliseconds later, when the worker woke), so every pulse reaches its peak;
    a worker that fell more than a step behind skips to the present instead.
    """

    def __init__(self, device: Any, count: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._device = device
        self._count = count
        self._clock = clock
        self._pattern = OFF
        self._started = 0.0
        self._due = 0.0  # pattern time of the step tick() draws next
        self._shown: bytes | None = None  # the frame the strip has, None before the first write

    def shows(self, state: str) -> bool:
        return True

    def render(self, state: str, pattern: Pattern) -> float | None:
        self._pattern = pattern
        self._started = self._clock()
        return self._draw(0.0)

    def tick(self) -> float | None:
        now = self._clock() - self._started
        behind = now - self._due
        return self._draw(self._due if behind < 1.0 / PULSE_FPS else now)

    def close(self) -> None:
        try:
            self._device.write(apa102.frame((0.0, 0.0, 0.0), self._count))
        finally:
            self._device.close()

    def _draw(self, t: float) -> float | None:
        wanted = apa102.frame(self._pattern.colour_at(t), self._count)
        if wanted != self._shown:
            self._device.write(wanted)
            self._shown = wanted
        due = self._pattern.next_change(t)
        if due is None:
            return None
        self._due = due
        return max(0.0, due - (self._clock() - self._started))


def close_all(devices: list[Any]) -> None:
    """Close every device even if one fails, then re-raise the first failure."""
    first: BaseException | None = None
    for device in devices:
        try:
            _close_device(device)
        except Exception as exc:  # noqa: BLE001 - keep releasing the other pins
            first = first or exc
    if first is not None:
        raise first
