"""Status LEDs: show the appliance's state on whatever `[leds]` says is wired.

Five wirings are supported (`LedsConfig.kind`):

- ``none``: nothing is driven, but the current state and pattern are still recorded, so
  `appliance ctl status`, the demo timeline and tests can see what *would* be shown.
- ``pwm``: one dimmable LED on `pin`; every state is told apart by its rhythm.
- ``rgb``: one RGB LED on `rgb_pins`; every state also has a colour.
- ``per_state``: one LED per listed ``"state:pin"``; the LED of the current state shows that
  state's rhythm and all others are dark. A state without an LED shows nothing. Two states may
  share a pin (one LED for "offline" and "error", say).
- ``apa102``: a strip of `count` APA102 ("DotStar") LEDs, all showing the state's colour, on
  hardware SPI0 (the ReSpeaker 2-Mics HAT) or bit-banged on `data_pin` / `clock_pin` (the
  Adafruit Voice Bonnet: 5 and 6), through gpiozero's SPI.

Each state's rhythm and colour are in `appliance.hw.led_patterns` (`leds.colors` may change a
colour); the wirings' gpiozero calls are in `appliance.hw.led_outputs`, an APA102 frame's bytes in
`appliance.hw.apa102`. This module owns the `Leds` object and building it from the config.

Timing runs on gpiozero's own background threads (`pulse()` / `blink()`), and even starting
or stopping a pattern can wait (gpiozero's `off()` joins its blink thread); an APA102 strip is
animated by the worker itself, and each of its SPI writes (bit-banged, on the Voice Bonnet) takes
a while. So no gpiozero call is made by `Leds.show`: it records the state and posts it to the
Leds' own worker thread, which makes the calls. `show` never waits for that thread, so it is
safe to call from the asyncio loop, including from the code that sends microphone audio (which
is how the listening LED is kept on exactly while audio leaves the device). The devices are
opened by `build_leds` (once, at start-up) and closed on the worker by `Leds.close`.

gpiozero is imported only by `build_leds` for a real wiring, so this module imports on a
machine without it.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from dataclasses import dataclass, replace
from typing import Any

from appliance.hw.apa102 import StripPins, StripWiringError, strip_pins
from appliance.hw.led_outputs import (
    KINDS,
    NoOutput,
    Output,
    PerStateOutput,
    RgbOutput,
    SingleOutput,
    StripOutput,
    close_all,
    scaled_pwmled_class,
    strip_device_class,
)
from appliance.hw.led_patterns import OFF, Pattern, check_state, colour_overrides, pattern_for
from appliance.hw.states import STATES
from appliance.settings.schema import LedsConfig

__all__ = ["STATES", "Leds", "LedsError", "build_leds"]

_log = logging.getLogger(__name__)

_NONE_ADVICE = 'or set leds.kind = "none" to run without status LEDs'


class LedsError(Exception):
    """The LEDs cannot be set up as configured; the message is one line saying what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


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

    def __init__(self, cfg: LedsConfig, output: Output | None = None) -> None:
        self._cfg = cfg
        self._colours = colour_overrides(cfg.colors)  # ValueError for a bad entry; build_leds says it first
        self._output: Output = output if output is not None else NoOutput()
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
        """The configured wiring: none, pwm, rgb, per_state or apa102."""
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
        check_state(state)
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

    def use_settings(self, cfg: LedsConfig) -> None:
        """Take new colours and idle brightness (a config reload); the wiring stays as it was built.

        The brightness cap is night mode's (`set_brightness_cap`); ValueError for a bad colour.
        """
        colours = colour_overrides(cfg.colors)
        with self._cond:
            self._cfg = replace(self._cfg, colors=cfg.colors, idle_brightness=cfg.idle_brightness)
            self._colours = colours
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
            self._output = NoOutput()
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
            pattern = pattern_for(state, cap=self._cap, idle_brightness=self._cfg.idle_brightness,
                                  colours=self._colours)
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

    def _run(self, output: Output) -> None:
        """The worker: render the newest job, one at a time, until close; then close the devices.

        Between jobs it wakes when the output asked for its next step (an APA102 strip's pulse).
        """
        delay: float | None = None
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopping, delay)
                if self._stopping:
                    break
                job, self._pending = self._pending, None
                if job is not None:
                    self._current = job
                self._rendering = True
            try:
                delay = self._render(output, job) if job is not None else self._tick(output)
            finally:
                with self._cond:
                    self._rendering = False
                    self._cond.notify_all()
        try:
            output.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort; say so once
            _log.warning("status LEDs could not be released cleanly: %s", " ".join(str(exc).split()))

    def _render(self, output: Output, job: _Job) -> float | None:
        try:
            return output.render(job.state, job.pattern)
        except Exception as exc:  # noqa: BLE001 - a broken LED must never stop the appliance
            self._warn_once(job.state, exc)
            return None

    def _tick(self, output: Output) -> float | None:
        try:
            return output.tick()
        except Exception as exc:  # noqa: BLE001 - as in _render
            self._warn_once(self._current.state if self._current else "?", exc)
            return None

    def _warn_once(self, state: str, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            _log.warning("status LED failed while showing %s: %s", state, " ".join(str(exc).split()))

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


def _strip_pins(cfg: LedsConfig) -> StripPins:
    try:
        return strip_pins(data_pin=cfg.data_pin, clock_pin=cfg.clock_pin, spi_bus=cfg.spi_bus,
                          spi_device=cfg.spi_device)
    except StripWiringError as exc:
        raise LedsError(f"leds.{exc.key} {exc}") from None


def _make_output(cfg: LedsConfig, pin_factory: Any) -> Output:
    if cfg.kind == "apa102":
        pins = _strip_pins(cfg)
        strip = strip_device_class()(clock_pin=pins.clock, mosi_pin=pins.data, miso_pin=None,
                                     select_pin=pins.select, pin_factory=pin_factory)
        return StripOutput(strip, cfg.count)
    scaled_pwmled = scaled_pwmled_class()
    if cfg.kind == "pwm":
        return SingleOutput(scaled_pwmled(cfg.pin, active_high=cfg.active_high, pin_factory=pin_factory))
    if cfg.kind == "rgb":
        if len(cfg.rgb_pins) != 3:
            raise LedsError("leds.rgb_pins must list exactly three pins: red, green, blue")
        from gpiozero import RGBLED

        red, green, blue = cfg.rgb_pins
        return RgbOutput(RGBLED(red, green, blue, active_high=cfg.active_high, pin_factory=pin_factory))
    # per_state
    pin_of_state = _parse_state_pins(cfg.state_pins)
    leds_by_pin: dict[int, Any] = {}
    try:
        for pin in pin_of_state.values():
            if pin not in leds_by_pin:
                leds_by_pin[pin] = scaled_pwmled(pin, active_high=cfg.active_high, pin_factory=pin_factory)
    except BaseException:
        close_all(list(leds_by_pin.values()))
        raise
    return PerStateOutput(leds_by_pin, pin_of_state)


def _pins_text(cfg: LedsConfig) -> str:
    if cfg.kind == "pwm":
        return f"leds.pin {cfg.pin}"
    if cfg.kind == "rgb":
        return f"leds.rgb_pins {', '.join(map(str, cfg.rgb_pins))}"
    if cfg.kind == "apa102":
        pins = _strip_pins(cfg)
        select = f"GPIO{pins.select} as chip select (leds.spi_device = {cfg.spi_device})"
        if cfg.data_pin < 0:
            return f"SPI0 (GPIO{pins.clock} clock, GPIO{pins.data} data, {select})"
        return f"leds.clock_pin {pins.clock} and leds.data_pin {pins.data} (and {select})"
    return f"leds.state_pins {', '.join(cfg.state_pins)}"


def _pass_on_warnings(caught: list[warnings.WarningMessage], gpiozero: Any) -> None:
    """gpiozero's fallback warnings as one log line each (or not at all); others as they were."""
    for warning in caught:
        if issubclass(warning.category, gpiozero.PinFactoryFallback):
            continue  # the driver gpiozero settled on is what doctor reports
        if issubclass(warning.category, gpiozero.SPISoftwareFallback):
            _log.warning(
                "status LEDs: %s; bit-banging the SPI0 pins instead, which works only while SPI is off. "
                "For hardware SPI put dtparam=spi=on in config.txt (install.sh --hat does) and install "
                "python3-spidev", " ".join(str(warning.message).split()),
            )
            continue
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def build_leds(cfg: LedsConfig, *, pin_factory: Any = None) -> Leds:
    """Set up the LEDs `cfg` describes; LedsError (one line with advice) when that is impossible.

    `pin_factory` is a gpiozero pin factory; None means gpiozero's default (`Device.pin_factory`,
    `GPIOZERO_PIN_FACTORY`, or whichever driver gpiozero finds).
    """
    try:
        colour_overrides(cfg.colors)
    except ValueError as exc:
        raise LedsError(f"leds.colors {exc}") from None
    if cfg.kind == "none":
        return Leds(cfg)
    if cfg.kind not in KINDS:
        raise LedsError(f"leds.kind must be one of {', '.join(KINDS)}, not {cfg.kind!r}")
    if cfg.kind == "apa102":
        _strip_pins(cfg)  # a wiring that cannot work is said before any pin is touched
    try:
        import gpiozero
    except ImportError:
        raise LedsError(
            f"gpiozero is not installed; install it (pip install gpiozero) {_NONE_ADVICE}"
        ) from None

    def reason(exc: BaseException) -> str:
        return " ".join(str(exc).split()) or type(exc).__name__

    groups = "the gpio and spi groups" if cfg.kind == "apa102" else "the gpio group"
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            # gpiozero warns once per driver it fails to load; the LedsError below says it in one line.
            warnings.simplefilter("always")
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
            f"permissions ({groups}) {_NONE_ADVICE}"
        ) from None
    _pass_on_warnings(caught, gpiozero)
    return Leds(cfg, output)
