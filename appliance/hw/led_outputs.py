"""The LED wirings as outputs: each turns a `Pattern` into gpiozero calls on the devices it owns.

One output per `LedsConfig.kind`: nothing (``none``), one dimmable LED (``pwm``), one RGB LED (``rgb``)
or one LED per state (``per_state``). Timing runs on gpiozero's own background threads (`pulse()` /
`blink()`); these calls can wait (gpiozero's `off()` joins its blink thread), which is why `Leds` makes
them on its worker thread only. The devices are handed in already opened (see `build_leds`); gpiozero
itself is imported only when a scaled PWMLED class is first needed.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from appliance.hw.led_patterns import OFF, Pattern

__all__ = [
    "NoOutput", "Output", "PerStateOutput", "RgbOutput", "SingleOutput", "close_all", "scaled_pwmled_class",
]


class Output(Protocol):
    """Something that makes a pattern visible (or, for kind none, does nothing)."""

    def shows(self, state: str) -> bool:
        """Whether anything lights up for `state` at all."""

    def render(self, state: str, pattern: Pattern) -> None:
        """Start showing `pattern` for `state`, replacing whatever ran before."""

    def close(self) -> None:
        """Turn everything off and release the pins."""


class NoOutput:
    def shows(self, state: str) -> bool:
        return True

    def render(self, state: str, pattern: Pattern) -> None:
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

    def close(self) -> None:
        close_all(list(self._leds_by_pin.values()))


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
