"""The push-to-talk button on a GPIO pin, and the same button without a pin for `ctl`.

Both are a contact feeding a `GestureSource` (debounce, tap or hold, long hold),
so a remote `ctl press` behaves exactly like a finger on the button.  gpiozero
calls the pin's edge callbacks on its own thread (with MockFactory: the thread
that drives the pin); those only stamp the time and pass the level to the loop
with `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

from appliance.hw.gestures import Clock, Gesture, GestureSource
from appliance.settings.schema import ButtonConfig

__all__ = ["ButtonError", "GpioButton", "VirtualButton"]

log = logging.getLogger(__name__)

#: what to tell someone whose machine has no usable GPIO
NO_GPIO_ADVICE = "run `appliance run --keyboard` or set button.enabled = false"


class ButtonError(Exception):
    """The button cannot be used; the message is one line that says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class GpioButton:
    """A gpiozero input that reports gestures on the asyncio loop.

    Build it on the loop's thread.  A button already held when this starts is
    ignored until it is let go, so a stuck or held button at boot does not
    start a turn.
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
        self._gestures = GestureSource(cfg, loop, on_gesture, clock=clock)
        self._device: Any = _open_gpio_button(cfg, pin_factory)
        self._device.when_activated = self._pressed_in_thread
        self._device.when_deactivated = self._released_in_thread
        log.info("button on GPIO%d (pull_up=%s) ready", cfg.pin, cfg.pull_up)

    @property
    def pressed(self) -> bool:
        """The debounced level, as the gestures so far describe it."""
        return self._gestures.pressed

    def close(self) -> None:
        """Stop reporting and release the pin.  Safe to call twice; call it on the loop."""
        self._gestures.close()
        device, self._device = self._device, None
        if device is not None:
            device.when_activated = None
            device.when_deactivated = None
            device.close()

    def __enter__(self) -> GpioButton:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # gpiozero's thread: stamp the time and hand over, nothing else

    def _pressed_in_thread(self) -> None:
        self._hand_over(True)

    def _released_in_thread(self) -> None:
        self._hand_over(False)

    def _hand_over(self, pressed: bool) -> None:
        at = self._gestures.clock()
        try:
            self._gestures.loop.call_soon_threadsafe(self._gestures.level, pressed, at)
        except RuntimeError:  # the loop is closed: the daemon is going away
            pass


#: how long `ctl tap` holds the virtual button down: well under the tap limit
VIRTUAL_TAP_S = 0.02


class VirtualButton:
    """A button without a pin, for `appliance ctl press/release/tap` (call on the loop).

    A request on the socket does not bounce, so its edges count at once: `ctl press` during
    a reply silences it without waiting out the GPIO button's `debounce_ms`.
    """

    def __init__(
        self,
        cfg: ButtonConfig,
        loop: asyncio.AbstractEventLoop,
        on_gesture: Callable[[Gesture], None],
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._gestures = GestureSource(dataclasses.replace(cfg, debounce_ms=0), loop, on_gesture, clock=clock)
        self._release: asyncio.TimerHandle | None = None

    @property
    def pressed(self) -> bool:
        return self._gestures.pressed

    def set_pressed(self, pressed: bool) -> None:
        """The virtual contact closes or opens."""
        self._gestures.level(pressed)

    def tap(self) -> None:
        """A short press: down now, up once the press has settled."""
        if self._release is not None:
            self._release.cancel()
        self.set_pressed(True)
        self._release = self._gestures.loop.call_later(VIRTUAL_TAP_S, self.set_pressed, False)

    def close(self) -> None:
        if self._release is not None:
            self._release.cancel()
            self._release = None
        self._gestures.close()

    def __enter__(self) -> VirtualButton:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
