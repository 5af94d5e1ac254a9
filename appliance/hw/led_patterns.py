"""What each state looks like on the status LEDs: rhythm, colour and brightness, as plain values.

No hardware here: `pattern_for` turns a state and the brightness cap into a `Pattern`, which the
outputs in `led_outputs` hand to gpiozero and which status output and tests can read directly.

The rhythms (all peaks are multiplied by the brightness cap, `max_brightness` at start):

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
=========== ======================================= ============================
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.hw.states import STATES

__all__ = ["OFF", "Colour", "Pattern", "check_state", "pattern_for"]

Colour = tuple[float, float, float]
_BLACK: Colour = (0.0, 0.0, 0.0)


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
}


def check_state(state: str) -> None:
    """ValueError unless `state` is one the LEDs know."""
    if state not in STATES:
        raise ValueError(f"unknown LED state {state!r}; use one of {', '.join(STATES)}")


def pattern_for(state: str, *, cap: float, idle_brightness: float = 0.0) -> Pattern:
    """The pattern `state` shows under brightness cap `cap` (ValueError for an unknown state)."""
    check_state(state)
    if state == "idle":
        style = _Style("solid", idle_brightness, _WHITE)
    else:
        style = _STYLES[state]
    level = style.level * cap
    if level <= 0.0:
        return OFF

    def scaled(colour: Colour) -> Colour:
        return (colour[0] * level, colour[1] * level, colour[2] * level)

    return Pattern(
        kind=style.kind, level=level, colour=scaled(style.colour), off_colour=scaled(style.off_colour),
        on_time=style.on_time, off_time=style.off_time, fade_in=style.fade_in, fade_out=style.fade_out,
    )
