"""The push-to-talk button: raw GPIO edges in, debounced gestures out, on the event loop.

A mechanical switch bounces for a few milliseconds on every press and release.
gpiozero's own `bounce_time` handles that by ignoring edges for a while after
one, which can swallow the real release of a short tap and leave the device
"held" forever.  So gpiozero runs with `bounce_time=None` and the debounce is
done here, on levels rather than edges: a new level counts once it has stayed
put for `debounce_ms`.  Every real change is reported, just `debounce_ms` late.

`GestureTracker` is the pure logic (explicit timestamps, no threads, no GPIO),
so it can be tested edge by edge.  `GpioButton` wires it to gpiozero: the edge
callbacks run on gpiozero's threads and only hand the edge over to the loop;
the tracker, its timers and the gesture callback all live on the loop.

The conductor decides what a gesture means (talk, barge in, stop an alarm, new
conversation); this module only says what the finger did.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

from appliance.settings.loader import ButtonConfig

__all__ = ["ButtonError", "Gesture", "GestureTracker", "GpioButton"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

#: what to tell someone whose machine has no usable GPIO
NO_GPIO_ADVICE = "run `appliance run --keyboard` or set button.enabled = false"


class ButtonError(Exception):
    """The button cannot be used; the message is one line that says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class Gesture(str, enum.Enum):
    """What the finger did, as the conductor needs to hear it."""

    PRESS = "press"  # went down (debounced): start listening now
    RELEASE_TAP = "release_tap"  # came up quickly: a tap, the turn ends on silence
    RELEASE_HOLD = "release_hold"  # came up after a hold: hold-to-talk is over
    LONG_HOLD = "long_hold"  # still down after long_hold_s (once per press)


class GestureTracker:
    """Debounces raw button levels and turns them into gestures.

    Feed it every raw edge with `edge()` and call `poll()` at `next_deadline()`
    (the debounce settling and the long hold are timers).  Times are seconds on
    one monotonic clock; a time earlier than one already seen is treated as
    "now", since an edge may be stamped on another thread just before a timer
    on the loop has run.

    Guarantees: PRESS and a RELEASE_* alternate, starting with PRESS; LONG_HOLD
    comes at most once, between a PRESS and its release; a level change shorter
    than the debounce time produces nothing.
    """

    def __init__(
        self,
        cfg: ButtonConfig,
        emit: Callable[[Gesture], None],
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._debounce_s = cfg.debounce_ms / 1000.0
        self._tap_max_s = cfg.tap_max_ms / 1000.0
        self._long_hold_s = float(cfg.long_hold_s)
        self._emit = emit
        self.clock = clock
        self._raw = False  # the level as last reported, bounces and all
        self._raw_since = 0.0  # when the raw level last changed
        self._pressed = False  # the debounced level
        self._pressed_at = 0.0  # when the debounced press began (its last raw edge)
        self._long_hold_sent = False
        self._now = float("-inf")  # the latest time seen

    @property
    def pressed(self) -> bool:
        """The debounced level: True between a PRESS and its release."""
        return self._pressed

    def edge(self, pressed: bool, at: float | None = None) -> None:
        """A raw level change (possibly a bounce) at time `at` (default: now)."""
        at = self._advance(self.clock() if at is None else at)
        self._run_timers(at)  # anything due before this edge happened first
        if pressed != self._raw:
            self._raw = pressed
            self._raw_since = at
        self._run_timers(at)  # with no debounce, the edge counts at once

    def poll(self, now: float | None = None) -> None:
        """Fire whatever is due by `now` (default: the clock)."""
        self._run_timers(self._advance(self.clock() if now is None else now))

    def next_deadline(self) -> float | None:
        """When `poll` must next be called, or None if nothing is pending."""
        if self._raw != self._pressed:
            return self._settle_at()
        if self._pressed and not self._long_hold_sent:
            return self._long_hold_at()
        return None

    # ------------------------------------------------------------------ internals

    def _advance(self, t: float) -> float:
        self._now = max(self._now, t)
        return self._now

    def _settle_at(self) -> float:
        return self._raw_since + self._debounce_s

    def _long_hold_at(self) -> float:
        return self._pressed_at + self._long_hold_s

    def _run_timers(self, now: float) -> None:
        if self._raw != self._pressed and now >= self._settle_at():
            self._pressed = self._raw
            if self._pressed:
                self._pressed_at = self._raw_since
                self._long_hold_sent = False
                self._emit(Gesture.PRESS)
            else:
                held_for = self._raw_since - self._pressed_at
                self._emit(Gesture.RELEASE_TAP if held_for < self._tap_max_s else Gesture.RELEASE_HOLD)
        # only while the finger is still down: a release waiting out its bounce
        # already ended the press, and the press lasted until that release
        if self._pressed and self._raw and not self._long_hold_sent and now >= self._long_hold_at():
            self._long_hold_sent = True
            self._emit(Gesture.LONG_HOLD)


class GpioButton:
    """A gpiozero input that reports gestures on the asyncio loop.

    Build it on the loop's thread.  gpiozero calls the edge callbacks on its
    own thread (with MockFactory: the thread that drives the pin); those only
    stamp the time and pass the edge to the loop with `call_soon_threadsafe`.  Everything else, including `on_gesture`, runs on
    the loop.  There is at most one pending timer at any time.

    A button already held when this starts is ignored until it is let go, so a
    stuck or held button at boot does not start a turn.
    """

    def __init__(
        self,
        cfg: ButtonConfig,
        loop: asyncio.AbstractEventLoop,
        on_gesture: Callable[[Gesture], None],
        *,
        pin_factory: Any = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._loop = loop
        self._on_gesture = on_gesture
        self._clock = clock
        self._tracker = GestureTracker(cfg, self._emit, clock=clock)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._device = _open_gpio_button(cfg, pin_factory)
        self._device.when_activated = self._pressed_in_thread
        self._device.when_deactivated = self._released_in_thread
        log.info("button on GPIO%d (pull_up=%s) ready", cfg.pin, cfg.pull_up)

    @property
    def pressed(self) -> bool:
        """The debounced level, as the gestures so far describe it."""
        return self._tracker.pressed

    def close(self) -> None:
        """Stop reporting and release the pin.  Safe to call twice; call it on the loop."""
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        device, self._device = self._device, None
        if device is not None:
            device.when_activated = None
            device.when_deactivated = None
            device.close()

    def __enter__(self) -> GpioButton:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ gpiozero's thread

    def _pressed_in_thread(self) -> None:
        self._hand_over(True)

    def _released_in_thread(self) -> None:
        self._hand_over(False)

    def _hand_over(self, pressed: bool) -> None:
        at = self._clock()
        try:
            self._loop.call_soon_threadsafe(self._on_edge, pressed, at)
        except RuntimeError:  # the loop is closed: the daemon is going away
            pass

    # ------------------------------------------------------------------ the loop

    def _on_edge(self, pressed: bool, at: float) -> None:
        if self._closed:
            return
        self._tracker.edge(pressed, at)
        self._reschedule()

    def _on_timer(self) -> None:
        deadline, self._timer, self._timer_at = self._timer_at, None, None
        if self._closed:
            return
        # asyncio may run a timer a clock tick early; it still stands for its deadline
        now = self._clock()
        self._tracker.poll(now if deadline is None else max(now, deadline))
        self._reschedule()

    def _reschedule(self) -> None:
        if self._closed:  # on_gesture may have closed us
            return
        deadline = self._tracker.next_deadline()
        if deadline == self._timer_at and self._timer is not None:
            return
        self._cancel_timer()
        if deadline is None:
            return
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(0.0, deadline - self._clock()), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _emit(self, gesture: Gesture) -> None:
        log.debug("button gesture: %s", gesture.value)
        try:
            self._on_gesture(gesture)
        except Exception:  # a bug downstream must not stop the button
            log.exception("handling the button gesture %s failed", gesture.value)


def _open_gpio_button(cfg: ButtonConfig, pin_factory: Any) -> Any:
    """The button's input on cfg.pin, with every way that can fail as one ButtonError line.

    This is gpiozero's `Button` without its hold thread: the long hold is timed
    here, and `Button.close()` waits up to `hold_time` (1 s) for that thread
    while the button is held, which would stall the loop at shutdown.
    """
    try:
        import gpiozero
        from gpiozero.exc import BadPinFactory, GPIOPinInUse, GPIOZeroError, PinFactoryFallback
    except ImportError as exc:
        raise ButtonError(f"gpiozero is not installed ({exc}); install it, or {NO_GPIO_ADVICE}") from None

    with warnings.catch_warnings(record=True) as caught:
        # gpiozero warns once per pin library it could not load; on a laptop that
        # is four lines of noise before the one error that matters
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            device = gpiozero.DigitalInputDevice(
                cfg.pin, pull_up=cfg.pull_up, bounce_time=None, pin_factory=pin_factory
            )
        except BadPinFactory as exc:
            tried = "; ".join(str(w.message) for w in caught if issubclass(w.category, PinFactoryFallback))
            detail = f" ({tried})" if tried else f" ({exc})"
            raise ButtonError(f"no usable GPIO on this machine{detail}: {NO_GPIO_ADVICE}") from None
        except GPIOPinInUse:
            raise ButtonError(
                f"GPIO{cfg.pin} is already in use by another device or program; "
                "set button.pin to the pin the button is wired to, or stop the other user"
            ) from None
        except PermissionError as exc:
            raise ButtonError(
                f"no permission to use GPIO{cfg.pin} ({exc.strerror or exc}); "
                "add the service user to the gpio group"
            ) from None
        except (GPIOZeroError, OSError, RuntimeError, ValueError) as exc:
            raise ButtonError(f"cannot use GPIO{cfg.pin} for the button ({exc}); {NO_GPIO_ADVICE}") from None
    for w in caught:
        if issubclass(w.category, PinFactoryFallback):
            log.info("gpio: %s", w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return device


class VirtualButton(GpioButton):
    """A button without a pin, for `appliance ctl press/release/tap`.

    It shares everything after the pin with `GpioButton` (debounce, tap or hold,
    long hold), so a remote press behaves exactly like a finger on the button.
    """

    def __init__(
        self,
        cfg: ButtonConfig,
        loop: asyncio.AbstractEventLoop,
        on_gesture: Callable[[Gesture], None],
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._loop = loop
        self._on_gesture = on_gesture
        self._clock = clock
        self._tracker = GestureTracker(cfg, self._emit, clock=clock)
        self._timer = None
        self._timer_at = None
        self._closed = False
        self._device = None
        self._settle_s = cfg.debounce_ms / 1000

    def set_pressed(self, pressed: bool) -> None:
        """The virtual contact closes or opens (call on the loop)."""
        self._on_edge(pressed, self._clock())

    def tap(self) -> None:
        """A short press: down now, up once the press has settled."""
        self.set_pressed(True)
        self._loop.call_later(2 * self._settle_s + 0.02, self.set_pressed, False)
