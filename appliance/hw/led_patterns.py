"""What each state looks like on the status LEDs: rhythm, colour and brightness, as plain values.

No hardware here: `pattern_for` turns a state and the brightness cap into a `Pattern`, which the
outputs in `led_outputs` hand to gpiozero (or draw themselves, for an APA102 strip, with
`Pattern.colour_at`) and which status output and tests can read directly.

The rhythms (all peaks are multiplied by the brightness cap: `max_brightness`, or
`night_brightness` while night mode is on):

=========== ======================================= ============================
state       rhythm                                  RGB colour
=========== ======================================= ============================
connecting  slow half-bright pulse (0.5 Hz)         dim blue
idle        steady at `idle_brightness` (0 = off)   dim white
listening   solid, full                             blue
thinking    fast pulse (2 Hz)                       cyan
speaking    slow breathe (0.7 Hz)                   green
offline     a short 0.2 s blink every 2 s           amber
error       fast blink (4 Hz)                       red
alarm       bright flash (3 Hz)                     white flashes over red
muted       half-bright, dark for 0.3 s every 3 s   red
=========== ======================================= ============================

Listening, thinking and speaking have three different hues so a glance tells them apart; the
owner may change any state's colour with `leds.colors` ("state:RRGGBB", read by `parse_colour`).

Muted is red, as a microphone switched off is on most smart speakers, but calm where the error
is frantic: lit nearly all the time at half brightness rather than blinking four times a second.
The short dark gap is for a single-colour LED (`pwm`, or one `per_state` LED shared by several
states), where the red is lost: a steady light would read as listening or idle there, and a
mostly-lit one with a regular gap reads as neither.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from appliance.hw.states import STATES

__all__ = [
    "COLOUR_EXAMPLE", "OFF", "PULSE_FPS", "Colour", "Pattern", "UnknownLedState", "check_state",
    "colour_overrides", "parse_colour", "pattern_for", "repeated_colour",
]

Colour = tuple[float, float, float]
_BLACK: Colour = (0.0, 0.0, 0.0)

#: steps per second of a pulse the appliance draws itself (gpiozero's own pulse() uses 25 too)
PULSE_FPS = 25
#: a `leds.colors` entry, as the error messages show it
COLOUR_EXAMPLE = '"listening:0040FF"'
_HEX_COLOUR = re.compile(r"[0-9A-Fa-f]{6}")


def _blend(dark: Colour, lit: Colour, mix: float) -> Colour:
    return (
        dark[0] + (lit[0] - dark[0]) * mix,
        dark[1] + (lit[1] - dark[1]) * mix,
        dark[2] + (lit[2] - dark[2]) * mix,
    )


@dataclass(frozen=True)
class Pattern:
    """What an LED shows, as a value for status output and tests.

    `level` is the peak brightness actually driven (0..1, brightness cap applied).
    `colour` is the RGB colour at the peak and `off_colour` the colour between flashes, both
    with `level` applied (a single-colour LED uses `level` and is dark between flashes).
    Timing is in seconds: a pulse fades in for `fade_in` and out for `fade_out`; a blink is
    on for `on_time` and off for `off_time`.
    """

    kind: str = "off"  # "off" | "solid" | "pulse" | "blink"
    level: float = 0.0
    colour: Colour = _BLACK
    off_colour: Colour = _BLACK
    on_time: float = 0.0
    off_time: float = 0.0
    fade_in: float = 0.0
    fade_out: float = 0.0

    @property
    def period_s(self) -> float:
        """Length of one cycle; 0 for patterns that do not repeat."""
        return self.on_time + self.off_time + self.fade_in + self.fade_out

    def describe(self) -> str:
        """A few words for logs and the demo timeline, e.g. "pulse 2.0 Hz up to 0.30"."""
        if self.kind == "off":
            return "off"
        if self.kind == "solid":
            return f"solid {self.level:.2f}"
        if self.kind == "pulse":
            return f"pulse {1.0 / self.period_s:.1f} Hz up to {self.level:.2f}"
        return f"blink {self.on_time:g} s on, {self.off_time:g} s off at {self.level:.2f}"

    def colour_at(self, t: float) -> Colour:
        """The colour `t` seconds after the pattern started, drawn as gpiozero draws it on a pin:
        a blink starts lit, a pulse starts dark and fades linearly up to the peak and back."""
        if self.kind == "off":
            return _BLACK
        if self.kind == "solid" or self.period_s <= 0.0:
            return self.colour
        phase = t % self.period_s
        if self.kind == "blink":
            return self.colour if phase < self.on_time else self.off_colour
        if phase < self.fade_in:
            return _blend(self.off_colour, self.colour, phase / self.fade_in)
        return _blend(self.off_colour, self.colour, 1.0 - (phase - self.fade_in) / self.fade_out)

    def next_change(self, t: float) -> float | None:
        """When, after `t`, `colour_at` may next differ; None for a pattern that never changes.

        A blink changes only at its edges; a pulse every 1/PULSE_FPS s, and always exactly at
        its peak and at the end of a cycle, so the brightest and darkest steps are both drawn.
        """
        if self.kind in ("off", "solid") or self.period_s <= 0.0:
            return None
        start = t - t % self.period_s
        if self.kind == "blink":
            edges = (start + self.on_time, start + self.period_s)
        else:
            step = (math.floor(t * PULSE_FPS + 1e-9) + 1) / PULSE_FPS
            edges = (step, start + self.fade_in, start + self.period_s)
        return min(edge for edge in edges if edge > t + 1e-9)


OFF = Pattern()


@dataclass(frozen=True)
class _Style:
    """A state's look before the brightness cap: relative peak, hue and timing."""

    kind: str
    level: float
    colour: Colour
    off_colour: Colour = _BLACK
    on_time: float = 0.0
    off_time: float = 0.0
    fade_in: float = 0.0
    fade_out: float = 0.0


_BLUE: Colour = (0.0, 0.0, 1.0)
_CYAN: Colour = (0.0, 1.0, 1.0)
_GREEN: Colour = (0.0, 1.0, 0.0)
_AMBER: Colour = (1.0, 0.5, 0.0)
_RED: Colour = (1.0, 0.0, 0.0)
_WHITE: Colour = (1.0, 1.0, 1.0)

# "idle" is missing on purpose: its level comes from the config (see pattern_for).
_STYLES: dict[str, _Style] = {
    "connecting": _Style("pulse", 0.5, _BLUE, fade_in=1.0, fade_out=1.0),
    "listening": _Style("solid", 1.0, _BLUE),
    "thinking": _Style("pulse", 1.0, _CYAN, fade_in=0.25, fade_out=0.25),
    "speaking": _Style("pulse", 1.0, _GREEN, fade_in=0.7, fade_out=0.7),
    "offline": _Style("blink", 1.0, _AMBER, on_time=0.2, off_time=1.8),
    "error": _Style("blink", 1.0, _RED, on_time=0.125, off_time=0.125),
    "alarm": _Style("blink", 1.0, _WHITE, off_colour=_RED, on_time=0.15, off_time=0.18),
    "muted": _Style("blink", 0.5, _RED, on_time=2.7, off_time=0.3),
}


def check_state(state: str) -> None:
    """ValueError unless `state` is one the LEDs know."""
    if state not in STATES:
        raise ValueError(f"unknown LED state {state!r}; use one of {', '.join(STATES)}")


class UnknownLedState(ValueError):
    """A `leds.colors` entry names a state the LEDs do not have; `state` is the name given."""

    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(f"names no LED state {state!r}; the states are {', '.join(STATES)}")


def parse_colour(item: str) -> tuple[str, Colour]:
    """One `leds.colors` entry, "state:RRGGBB" (a leading # is allowed), as (state, RGB 0..1).

    ValueError says what is wrong in words that follow "item 'x' ..."; UnknownLedState
    (a ValueError) when only the state's name is.
    """
    state, sep, digits = item.partition(":")
    state, digits = state.strip(), digits.strip().removeprefix("#")
    if not sep:
        raise ValueError(f"must be STATE:RRGGBB, like {COLOUR_EXAMPLE}")
    if state not in STATES:
        raise UnknownLedState(state)
    if not _HEX_COLOUR.fullmatch(digits):
        raise ValueError(f"has colour {digits!r}; write six hex digits RRGGBB, like {COLOUR_EXAMPLE}")
    red, green, blue = (int(digits[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
    return state, (red, green, blue)


def repeated_colour(items: Iterable[str]) -> str | None:
    """What is wrong when two `leds.colors` entries name one state, or None."""
    seen: set[str] = set()
    for item in items:
        state = item.partition(":")[0].strip()
        if state in seen:
            return f"lists {state!r} twice; give each state one colour"
        seen.add(state)
    return None


def colour_overrides(items: Iterable[str]) -> dict[str, Colour]:
    """`leds.colors` as state -> colour; ValueError (naming the entry) for a bad or repeated one."""
    items = tuple(items)
    overrides: dict[str, Colour] = {}
    for item in items:
        try:
            state, colour = parse_colour(item)
        except ValueError as exc:
            raise ValueError(f"entry {item!r} {exc}") from None
        overrides[state] = colour
    problem = repeated_colour(items)
    if problem is not None:
        raise ValueError(problem)
    return overrides


def pattern_for(
    state: str, *, cap: float, idle_brightness: float = 0.0, colours: Mapping[str, Colour] | None = None,
) -> Pattern:
    """The pattern `state` shows under brightness cap `cap` (ValueError for an unknown state).

    `colours` (from `colour_overrides`) replaces a state's peak colour; the alarm's red between
    flashes stays, so an alarm is still unmistakable whatever colour its flash is.
    """
    check_state(state)
    if state == "idle":
        style = _Style("solid", idle_brightness, _WHITE)
    else:
        style = _STYLES[state]
    if colours and state in colours:
        style = replace(style, colour=colours[state])
    level = style.level * cap
    if level <= 0.0:
        return OFF

    def scaled(colour: Colour) -> Colour:
        return (colour[0] * level, colour[1] * level, colour[2] * level)

    return Pattern(
        kind=style.kind, level=level, colour=scaled(style.colour), off_colour=scaled(style.off_colour),
        on_time=style.on_time, off_time=style.off_time, fade_in=style.fade_in, fade_out=style.fade_out,
    )
