"""Doctor's check of the pins: the button and the LEDs open on the configured GPIO.

It builds them with the appliance's own classes and closes them again at once, so the
pins are free for the daemon afterwards; the advice tells a non-Pi box from a missing
driver from a wrong pin.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from appliance.commands.doctor.machine import CheckContext
from appliance.commands.doctor.report import Check, failed, passed, skipped
from appliance.settings.validate import led_pins

__all__ = ["check_gpio"]


async def check_gpio(ctx: CheckContext) -> Check:
    name = "gpio"
    cfg, env = ctx.cfg, ctx.env
    want_button = cfg.button.enabled
    want_leds = cfg.leds.kind != "none"
    if not want_button and not want_leds:
        return skipped(name, 'button.enabled = false and leds.kind = "none"')

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
                return failed(name, f"button: {exc}", _gpio_advice(str(exc), "button.pin"))
            opened.append(button)
            parts.append(f"button on GPIO{cfg.button.pin} ({'pull-up' if cfg.button.pull_up else 'no pull-up'})")
        else:
            parts.append("no button (button.enabled = false)")
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


def _gpio_advice(message: str, setting: str) -> str:
    if "unable to locate Pi revision" in message:
        return (
            'this machine is not a Raspberry Pi: set button.enabled = false and leds.kind = "none" '
            "(use `appliance ctl` or `appliance run --keyboard` instead of the button)"
        )
    if "No module named 'lgpio'" in message:
        # gpiozero fell back past lgpio; on a Pi 5 nothing after it works
        return (
            "lgpio is missing from the appliance's Python: apt install python3-lgpio and make the venv with "
            "--system-site-packages (scripts/install.sh does both); or set button.enabled = false and "
            'leds.kind = "none"'
        )
    if setting == "button.pin":
        return "fix button.pin or the wiring, or set button.enabled = false (then use `appliance ctl`)"
    return f'fix {setting} or the wiring, or set leds.kind = "none"'
