"""APA102 ("DotStar") LEDs: the bytes a strip is sent, and which pins carry them.

Pure values, no hardware: `led_outputs.StripOutput` sends these frames through gpiozero's SPI.

A frame is a start frame of 32 zero bits, then four bytes per LED: ``0b111`` and a 5-bit global
brightness, then blue, green and red, then an end frame of ones. Every LED passes the data on
half a clock late, so the end frame must add at least ``count / 2`` clock edges for the colour
to reach the last LED: that is ``ceil(count / 16)`` bytes. We never send fewer than the four
bytes (32 ones) the APA102 datasheet shows, which already covers 64 LEDs, the most `leds.count`
allows; longer strips get the formula. The ones would read as a white LED frame to an LED past
the last one counted, so `leds.count` must be the number of LEDs on the strip.

Brightness: a colour channel of 0..1 (brightness cap and night dimming already applied) is the
product of the 5-bit global brightness (x/31) and the 8-bit channel (y/255). APA102s flicker
visibly when their fast 8-bit PWM runs at small values, so the 5-bit field takes the coarse
dimming (the smallest step that still reaches the brightest channel) and the 8-bit channels keep
the hue at values as high as possible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.hw.led_patterns import Colour

__all__ = [
    "MAX_GLOBAL", "SPI0_CLOCK", "SPI0_DATA", "SPI0_SELECT", "START_FRAME", "Pixel", "StripPins",
    "StripWiringError", "end_frame", "encode", "frame", "pixel", "strip_pins",
]

START_FRAME = bytes(4)
MAX_GLOBAL = 31  # the 5-bit global brightness field
_LED_MARKER = 0b1110_0000
_MIN_END_BYTES = 4

#: the Pi's SPI0 pins (BCM), as gpiozero maps them to /dev/spidev0.N
SPI0_CLOCK = 11
SPI0_DATA = 10
SPI0_SELECT = (8, 7)  # CE0, CE1: leds.spi_device picks one


@dataclass(frozen=True)
class Pixel:
    """One LED's frame: `brightness` is the 5-bit global field, the rest are 8-bit channels."""

    brightness: int
    red: int
    green: int
    blue: int

    def to_bytes(self) -> bytes:
        return bytes((_LED_MARKER | self.brightness, self.blue, self.green, self.red))


DARK = Pixel(0, 0, 0, 0)


def pixel(colour: Colour) -> Pixel:
    """The frame for an RGB colour of 0..1 per channel; a colour too dark to show is all zeros."""
    red, green, blue = (min(1.0, max(0.0, c)) for c in colour)
    peak = max(red, green, blue)
    if peak <= 0.0:
        return DARK
    level = min(MAX_GLOBAL, math.ceil(peak * MAX_GLOBAL - 1e-9))
    scale = 255.0 * MAX_GLOBAL / level

    def channel(value: float) -> int:
        return min(255, round(value * scale))

    dot = Pixel(level, channel(red), channel(green), channel(blue))
    return DARK if (dot.red, dot.green, dot.blue) == (0, 0, 0) else dot


def end_frame(count: int) -> bytes:
    """The ones that clock the data through `count` LEDs (see the module docstring)."""
    return b"\xff" * max(_MIN_END_BYTES, math.ceil(count / 16))


def encode(pixels: Sequence[Pixel]) -> bytes:
    """The whole frame for a strip, first LED first."""
    return START_FRAME + b"".join(dot.to_bytes() for dot in pixels) + end_frame(len(pixels))


def frame(colour: Colour, count: int) -> bytes:
    """The frame that shows `colour` on all `count` LEDs of a strip."""
    return encode([pixel(colour)] * count)


# --------------------------------------------------------------------------- wiring


class StripWiringError(ValueError):
    """The strip's pin settings do not fit together; `key` is the `leds.` setting to change."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(problem)


@dataclass(frozen=True)
class StripPins:
    """The BCM pins a strip uses. gpiozero's SPI always drives a chip-select line, which
    APA102s ignore; with the hardware pins it is /dev/spidev0.N's CE line."""

    clock: int
    data: int
    select: int
    hardware: bool

    def describe(self) -> str:
        how = "SPI0" if self.hardware else "software SPI"
        return f"{how}: clock GPIO{self.clock}, data GPIO{self.data}, chip select GPIO{self.select}"


def strip_pins(*, data_pin: int, clock_pin: int, spi_bus: int, spi_device: int) -> StripPins:
    """The pins `leds.data_pin`, `clock_pin`, `spi_bus` and `spi_device` name (-1 pins mean SPI0).

    StripWiringError when they do not fit together.
    """
    if not 0 <= spi_device < len(SPI0_SELECT):
        raise StripWiringError("spi_device", "must be 0 (CE0, GPIO8) or 1 (CE1, GPIO7)")
    select = SPI0_SELECT[spi_device]
    if (data_pin < 0) != (clock_pin < 0):
        unset, given = ("data_pin", "clock_pin") if data_pin < 0 else ("clock_pin", "data_pin")
        raise StripWiringError(
            unset,
            f"must be set too when leds.{given} is (software SPI on both pins, like data_pin = 5 and "
            "clock_pin = 6 on the Voice Bonnet), or set both to -1 for hardware SPI0",
        )
    if data_pin < 0:
        if spi_bus != 0:
            raise StripWiringError(
                "spi_bus",
                "must be 0: gpiozero drives hardware SPI on bus 0 only (GPIO10/GPIO11); for other "
                "pins set leds.data_pin and leds.clock_pin",
            )
        return StripPins(SPI0_CLOCK, SPI0_DATA, select, hardware=True)
    if data_pin == clock_pin:
        raise StripWiringError("clock_pin", f"must differ from leds.data_pin ({data_pin})")
    for key, pin in (("data_pin", data_pin), ("clock_pin", clock_pin)):
        if pin == select:
            raise StripWiringError(
                key,
                f"is GPIO{pin}, the chip-select line gpiozero's software SPI drives for "
                f"leds.spi_device = {spi_device}; use another pin or the other spi_device",
            )
    hardware = (clock_pin, data_pin) == (SPI0_CLOCK, SPI0_DATA)
    return StripPins(clock_pin, data_pin, select, hardware=hardware)
