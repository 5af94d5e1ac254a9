"""Doctor's check of the pins: the button and the LEDs open on the configured GPIO.

It builds them with the appliance's own classes and closes them again at once, so the
pins are free for the daemon afterwards; the advice tells a non-Pi box from a missing
driver from a wrong pin.  A machine without GPIO is still usable: the terminal
(`appliance run --keyboard`) or `appliance ctl press` is the button there, and
`doctor --keyboard` checks the box for that use (the button is left out, LEDs are not).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from appliance.commands.doctor.machine import CheckContext
from appliance.commands.doctor.report import Check, failed, passed, skipped
from appliance.settings.validate import led_pins

__all__ = ["NO_GPIO_ADVICE", "check_gpio"]

#: what a machine without GPIO (a laptop, a CI box) is told when button.enabled = true
NO_GPIO_ADVICE = (
    "this machine has no GPIO: set button.enabled = false and use `appliance run --keyboard` or `appliance ctl press`"
)
#: how the check says the button was left out under `doctor --keyboard`
KEYBOARD_NOTE = "button not checked (--keyboard: `appliance run --keyboard` stands in for it)"
#: what gpiozero's last fallback says on a machine that is not a Raspberry Pi
_NOT_A_PI = "unable to locate Pi revision"


async def check_gpio(ctx: CheckContext) -> Check:
    name = "gpio"
    cfg, env = ctx.cfg, ctx.env
    want_button = cfg.button.enabled and not ctx.keyboard
    want_leds = cfg.leds.kind != "none"
    no_button = KEYBOARD_NOTE if ctx.keyboard else "button.enabled = false"
    if not want_button and not want_leds:
        return skipped(name, f'{no_button} and leds.kind = "none"')

    from appliance.hw.button import ButtonError, GpioButton
    from appliance.hw.leds import LedsError, build_leds

    opened: list[Any] = []
    parts: list[str] = []
    try:
        if want_button:
            try:
                button = GpioButton(cfg.button, asyncio.get_running_loop(), lambda _gesture: None,
                                    pin_factory=env.pin_factory)
            except ButtonError as exc:
                return _button_failed(name, str(exc), want_leds)
            opened.append(button)
            parts.append(f"button on GPIO{cfg.button.pin} ({'pull-up' if cfg.button.pull_up else 'no pull-up'})")
        else:
            parts.append(KEYBOARD_NOTE if ctx.keyboard else "no button (button.enabled = false)")
        if want_leds:
            try:
                leds = build_leds(cfg.leds, pin_factory=env.pin_factory)
            except LedsError as exc:
                return failed(name, f"LEDs: {exc}", _gpio_advice(str(exc), "the [leds] pins"))
            opened.append(leds)
            pins = ", ".join(str(pin) for _key, pin in led_pins(cfg))
            parts.append(f"{cfg.leds.kind} LEDs on GPIO {pins}")
        else:
            parts.append('no LEDs (leds.kind = "none")')
        factory = env.pin_factory
        if factory is None:
            with contextlib.suppress(Exception):
                import gpiozero

                factory = gpiozero.Device.pin_factory
        driver = f" via {type(factory).__name__}" if factory is not None else ""
        return passed(name, "; ".join(parts) + driver)
    finally:
        for device in reversed(opened):
            with contextlib.suppress(Exception):
                device.close()


def _button_failed(name: str, message: str, want_leds: bool) -> Check:
    """The button did not open; on a machine without GPIO, point at keyboard mode instead of the wiring."""
    from appliance.hw import button

    if _NOT_A_PI not in message:
        return failed(name, f"button: {message}", _gpio_advice(message, "button.pin"))
    detail = message.removesuffix(f": {button.NO_GPIO_ADVICE}")  # the advice says it, once
    if want_leds:
        rest = 'set leds.kind = "none" too (LEDs need GPIO as well)'
    else:
        rest = "or, to keep this config for the Pi, check the rest with `appliance doctor --keyboard`"
    return failed(name, f"button: {detail}", f"{NO_GPIO_ADVICE}; {rest}")


def _gpio_advice(message: str, setting: str) -> str:
    if _NOT_A_PI in message:  # the button's case is _button_failed's
        return 'this machine has no GPIO: set leds.kind = "none" (the appliance runs without status LEDs)'
    if "No module named 'lgpio'" in message:
        # gpiozero fell back past lgpio; on a Pi 5 nothing after it works
        return (
            "lgpio is missing from the appliance's Python: apt install python3-lgpio and make the venv with "
            "--system-site-packages (scripts/install.sh does both); or set button.enabled = false and "
            'leds.kind = "none"'
        )
    if setting == "button.pin":
        return "fix button.pin or the wiring, or set button.enabled = false (then use `appliance ctl press`)"
    return f'fix {setting} or the wiring, or set leds.kind = "none"'
