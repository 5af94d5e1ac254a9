"""Status LEDs: show the appliance's state on whatever `[leds]` says is wired.

Four wirings are supported (`LedsConfig.kind`):

- ``none``: nothing is driven, but the current state and pattern are still recorded, so
  `appliance ctl status`, the demo timeline and tests can see what *would* be shown.
- ``pwm``: one dimmable LED on `pin`; every state is told apart by its rhythm.
- ``rgb``: one RGB LED on `rgb_pins`; every state also has a colour.
- ``per_state``: one LED per listed ``"state:pin"``; the LED of the current state shows that
  state's rhythm and all others are dark. A state without an LED shows nothing. Two states may
  share a pin (one LED for "offline" and "error", say).

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

Timing runs on gpiozero's own background threads (`pulse()` / `blink()`), and even starting
or stopping a pattern can wait (gpiozero's `off()` joins its blink thread), so no gpiozero call
is made by `Leds.show`: it records the state and posts it to the Leds' own worker thread,
which makes the calls. `show` never waits for that thread, so it is safe to call from the
asyncio loop, including from the code that sends microphone audio (which is how the listening
LED is kept on exactly while audio leaves the device). The devices are opened by `build_leds`
(once, at start-up) and closed on the worker by `Leds.close`.

gpiozero is imported only by `build_leds` for a real wiring, so this module imports on a
machine without it.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.hw.states import STATES
from appliance.settings.schema import LedsConfig

__all__ = ["STATES", "Leds", "LedsError", "Pattern", "build_leds", "pattern_for"]

_log = logging.getLogger(__name__)

_NONE_ADVICE = 'or set leds.kind = "none" to run without status LEDs'

Colour = tuple[float, float, float]
_BLACK: Colour = (0.0, 0.0, 0.0)


class LedsError(Exception):
    """The LEDs cannot be set up as configured; the message is one line saying what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


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


def _check_state(state: str) -> None:
    if state not in STATES:
        raise ValueError(f"unknown LED state {state!r}; use one of {', '.join(STATES)}")


def pattern_for(state: str, *, cap: float, idle_brightness: float = 0.0) -> Pattern:
    """The pattern `state` shows under brightness cap `cap` (ValueError for an unknown state)."""
    _check_state(state)
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


# --------------------------------------------------------------------------- outputs


class _Output(Protocol):
    """Something that makes a pattern visible (or, for kind none, does nothing)."""

    def shows(self, state: str) -> bool:
        """Whether anything lights up for `state` at all."""

    def render(self, state: str, pattern: Pattern) -> None:
        """Start showing `pattern` for `state`, replacing whatever ran before."""

    def close(self) -> None:
        """Turn everything off and release the pins."""


class _NoOutput:
    def shows(self, state: str) -> bool:
        return True

    def render(self, state: str, pattern: Pattern) -> None:
        pass

    def close(self) -> None:
        pass


@functools.cache
def _scaled_pwmled_class() -> type:
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


class _SingleOutput:
    def __init__(self, led: Any) -> None:
        self._led = led

    def shows(self, state: str) -> bool:
        return True

    def render(self, state: str, pattern: Pattern) -> None:
        _drive_single(self._led, pattern)

    def close(self) -> None:
        _close_device(self._led)


class _RgbOutput:
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


class _PerStateOutput:
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
        _close_all(list(self._leds_by_pin.values()))


def _close_all(devices: list[Any]) -> None:
    """Close every device even if one fails, then re-raise the first failure."""
    first: BaseException | None = None
    for device in devices:
        try:
            _close_device(device)
        except Exception as exc:  # noqa: BLE001 - keep releasing the other pins
            first = first or exc
    if first is not None:
        raise first


# --------------------------------------------------------------------------- Leds


_CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class _Job:
    """One thing for the worker to show."""

    state: str
    pattern: Pattern


class Leds:
    """The appliance's status LEDs. Build one with `build_leds`.

    `show()` is cheap and idempotent: showing the state that is already shown leaves its
    pattern running undisturbed. All methods may be called from any thread, and none of them
    waits for the hardware except `close()` and `wait_idle()`, both bounded by a timeout.

    gpiozero is driven by one worker thread per Leds, fed through a mailbox that holds a
    single job. Overflow policy: only the newest state matters. A state posted while an
    earlier one is still waiting replaces it, so a burst of changes costs one render and the
    LEDs never replay stale states; `state` and `pattern` always tell the newest one.
    """

    def __init__(self, cfg: LedsConfig, output: _Output | None = None) -> None:
        self._cfg = cfg
        self._output: _Output = output if output is not None else _NoOutput()
        self._cap = cfg.max_brightness
        self._state: str | None = None
        self._pattern = OFF
        self._failed = False
        # Guards everything above and the mailbox below; never held while gpiozero is called.
        self._cond = threading.Condition()
        self._pending: _Job | None = None
        self._current: _Job | None = None  # the job the worker rendered last (or is rendering)
        self._rendering = False
        self._stopping = False
        self._worker: threading.Thread | None = None
        if output is not None:
            self._worker = threading.Thread(target=self._run, args=(output,), name="leds", daemon=True)
            self._worker.start()

    @property
    def kind(self) -> str:
        """The configured wiring: none, pwm, rgb or per_state."""
        return self._cfg.kind

    @property
    def state(self) -> str | None:
        """The state last shown, or None before the first `show()`."""
        return self._state

    @property
    def pattern(self) -> Pattern:
        """What the LEDs show, or are about to (OFF for a per_state state without an LED)."""
        return self._pattern

    @property
    def brightness_cap(self) -> float:
        """The current cap on every pattern's peak (starts at `max_brightness`)."""
        return self._cap

    def show(self, state: str) -> None:
        """Show `state`'s pattern; a no-op when `state` is already shown. Never waits for the LEDs."""
        _check_state(state)
        with self._cond:
            if state != self._state:
                self._apply(state)

    def set_brightness_cap(self, cap: float) -> None:
        """Change the peak brightness of every pattern (night mode); 0 turns the LEDs off."""
        is_number = isinstance(cap, (int, float)) and not isinstance(cap, bool)
        if not is_number or not math.isfinite(cap) or not 0.0 <= cap <= 1.0:
            raise ValueError(f"LED brightness must be a number from 0 to 1, not {cap!r}")
        with self._cond:
            if cap == self._cap:
                return
            self._cap = float(cap)
            if self._state is not None:
                self._apply(self._state)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the worker has shown the newest state; False if `timeout` s passed first.

        For tests and tools that look at the pins; the appliance itself never waits.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._rendering, timeout)

    def close(self) -> None:
        """Turn the LEDs off and release their pins. Later `show()` calls only record the state.

        A state still waiting is dropped. Waits at most a couple of seconds for the worker; a
        worker stuck in gpiozero is logged and left behind (it is a daemon thread).
        """
        with self._cond:
            self._output = _NoOutput()
            self._stopping = True
            self._pending = None
            self._cond.notify_all()
        worker = self._worker
        if worker is None or worker is threading.current_thread():
            return
        worker.join(_CLOSE_TIMEOUT_S)
        if worker.is_alive():
            _log.warning("status LEDs did not turn off within %g s; leaving them to the worker thread",
                         _CLOSE_TIMEOUT_S)

    def __enter__(self) -> Leds:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _apply(self, state: str) -> None:
        """Record `state` and post it to the worker (the caller holds the lock)."""
        if self._output.shows(state):
            pattern = pattern_for(state, cap=self._cap, idle_brightness=self._cfg.idle_brightness)
        else:
            pattern = OFF
        self._state = state
        self._pattern = pattern
        if self._worker is None or self._stopping:
            return
        job = _Job(state, pattern)
        # Latest wins: replace whatever waits; nothing waits if the worker already shows this.
        self._pending = None if job == self._current else job
        self._cond.notify_all()

    def _run(self, output: _Output) -> None:
        """The worker: render the newest job, one at a time, until close; then close the devices."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopping)
                if self._stopping:
                    break
                job, self._pending = self._pending, None
                assert job is not None
                self._current = job
                self._rendering = True
            try:
                self._render(output, job)
            finally:
                with self._cond:
                    self._rendering = False
                    self._cond.notify_all()
        try:
            output.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort; say so once
            _log.warning("status LEDs could not be released cleanly: %s", " ".join(str(exc).split()))

    def _render(self, output: _Output, job: _Job) -> None:
        try:
            output.render(job.state, job.pattern)
        except Exception as exc:  # noqa: BLE001 - a broken LED must never stop the appliance
            if not self._failed:
                self._failed = True
                _log.warning("status LED failed while showing %s: %s", job.state, " ".join(str(exc).split()))

    def __repr__(self) -> str:
        return f"Leds(kind={self.kind!r}, state={self._state!r}, pattern={self._pattern.describe()!r})"


# --------------------------------------------------------------------------- building


def _parse_state_pins(items: tuple[str, ...]) -> dict[str, int]:
    pin_of_state: dict[str, int] = {}
    for item in items:
        state, sep, pin = item.partition(":")
        state = state.strip()
        pin = pin.strip()
        if not sep or state not in STATES or not pin.isdigit():
            raise LedsError(
                f'leds.state_pins entry {item!r} must be STATE:PIN with STATE one of '
                f'{", ".join(STATES)}, like "listening:5"'
            )
        if state in pin_of_state:
            raise LedsError(f"leds.state_pins lists {state!r} twice; give each state one pin")
        pin_of_state[state] = int(pin)
    if not pin_of_state:
        raise LedsError(f'leds.state_pins is empty; list entries like "listening:5" {_NONE_ADVICE}')
    return pin_of_state


def _make_output(cfg: LedsConfig, pin_factory: Any) -> _Output:
    scaled_pwmled = _scaled_pwmled_class()
    if cfg.kind == "pwm":
        return _SingleOutput(scaled_pwmled(cfg.pin, active_high=cfg.active_high, pin_factory=pin_factory))
    if cfg.kind == "rgb":
        if len(cfg.rgb_pins) != 3:
            raise LedsError("leds.rgb_pins must list exactly three pins: red, green, blue")
        from gpiozero import RGBLED

        red, green, blue = cfg.rgb_pins
        return _RgbOutput(RGBLED(red, green, blue, active_high=cfg.active_high, pin_factory=pin_factory))
    # per_state
    pin_of_state = _parse_state_pins(cfg.state_pins)
    leds_by_pin: dict[int, Any] = {}
    try:
        for pin in pin_of_state.values():
            if pin not in leds_by_pin:
                leds_by_pin[pin] = scaled_pwmled(pin, active_high=cfg.active_high, pin_factory=pin_factory)
    except BaseException:
        _close_all(list(leds_by_pin.values()))
        raise
    return _PerStateOutput(leds_by_pin, pin_of_state)


def _pins_text(cfg: LedsConfig) -> str:
    if cfg.kind == "pwm":
        return f"leds.pin {cfg.pin}"
    if cfg.kind == "rgb":
        return f"leds.rgb_pins {', '.join(map(str, cfg.rgb_pins))}"
    return f"leds.state_pins {', '.join(cfg.state_pins)}"


def build_leds(cfg: LedsConfig, *, pin_factory: Any = None) -> Leds:
    """Set up the LEDs `cfg` describes; LedsError (one line with advice) when that is impossible.

    `pin_factory` is a gpiozero pin factory; None means gpiozero's default (`Device.pin_factory`,
    `GPIOZERO_PIN_FACTORY`, or whichever driver gpiozero finds).
    """
    if cfg.kind == "none":
        return Leds(cfg)
    if cfg.kind not in ("pwm", "rgb", "per_state"):
        raise LedsError(f"leds.kind must be none, pwm, rgb or per_state, not {cfg.kind!r}")
    try:
        import gpiozero
    except ImportError:
        raise LedsError(
            f"gpiozero is not installed; install it (pip install gpiozero) {_NONE_ADVICE}"
        ) from None

    def reason(exc: BaseException) -> str:
        return " ".join(str(exc).split()) or type(exc).__name__

    try:
        with warnings.catch_warnings():
            # gpiozero warns once per driver it fails to load; the LedsError below says it in one line.
            warnings.simplefilter("ignore", gpiozero.PinFactoryFallback)
            output = _make_output(cfg, pin_factory)
    except gpiozero.BadPinFactory as exc:
        raise LedsError(
            f"no GPIO driver works on this machine ({reason(exc)}); on a Raspberry Pi install lgpio "
            f"(apt install python3-lgpio), {_NONE_ADVICE}"
        ) from None
    except gpiozero.PinPWMUnsupported:
        raise LedsError(
            f"the GPIO driver in use cannot dim LEDs (no PWM); install lgpio (apt install python3-lgpio) "
            f"{_NONE_ADVICE}"
        ) from None
    except gpiozero.GPIOPinInUse as exc:
        raise LedsError(
            f"an LED pin is already in use ({reason(exc)}); give {_pins_text(cfg)} free pins {_NONE_ADVICE}"
        ) from None
    except gpiozero.PinInvalidPin as exc:
        raise LedsError(
            f"{_pins_text(cfg)} is not a usable GPIO pin here ({reason(exc)}); check the BCM numbers"
        ) from None
    except (gpiozero.GPIOZeroError, OSError) as exc:
        raise LedsError(
            f"cannot drive the LEDs on {_pins_text(cfg)} ({reason(exc)}); check the wiring and GPIO "
            f"permissions (the gpio group) {_NONE_ADVICE}"
        ) from None
    return Leds(cfg, output)
