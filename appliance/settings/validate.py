"""Everything `load_config` or the daemon would refuse in a `Config`, however it was built.

`load_config` stops at the first problem, with where the value came from; `doctor` wants
the whole list for a Config that may have been built or changed in code after loading.
Both apply the same per-key and cross-key rules (the schema's), and this adds what only
shows across sections: a GPIO pin given to both the button and an LED.  `config_warnings`
names what loads but may not work (a model this version does not know).
"""

from __future__ import annotations

from collections.abc import Iterator

from appliance.settings.checks import model_warning
from appliance.settings.display import show
from appliance.settings.fields import constraint_problem, sections
from appliance.settings.schema import Config

__all__ = ["config_problems", "config_warnings", "led_pins", "pin_clashes"]


def config_problems(cfg: Config) -> list[str]:
    """One line per problem, like "leds.pin = 99: must be between 0 and 53"; empty when fine."""
    problems: list[str] = []
    for section, (_section_type, specs) in sections().items():
        instance = getattr(cfg, section)
        for name, spec in specs.items():
            value = getattr(instance, name)
            _value, problem = constraint_problem(spec, value)
            if problem:
                problems.append(f"{spec.dotted} = {show(value, hidden=spec.secret)}: {problem}")
        cross_checks = getattr(instance, "cross_checks", None)
        for key, problem in cross_checks() if cross_checks else ():
            problems.append(f"{section}.{key}: {problem}")
    problems.extend(pin_clashes(cfg))
    return problems


def config_warnings(cfg: Config) -> list[str]:
    """What is allowed but may not work, one line each like "live.model = 'x': ..."."""
    warning = model_warning(cfg.live.model)
    return [f"live.model = {show(cfg.live.model, hidden=False)}: {warning}"] if warning else []


def led_pins(cfg: Config) -> list[tuple[str, int]]:
    """(setting, BCM pin) for every LED pin the configured `leds.kind` uses."""
    leds = cfg.leds
    if leds.kind == "pwm":
        return [("leds.pin", leds.pin)]
    if leds.kind == "rgb":
        return [("leds.rgb_pins", pin) for pin in leds.rgb_pins]
    if leds.kind == "per_state":
        pins = []
        for item in leds.state_pins:
            _state, _sep, pin = item.partition(":")
            if pin.isdigit():
                pins.append(("leds.state_pins", int(pin)))
        return pins
    if leds.kind == "apa102":
        from appliance.hw.apa102 import StripWiringError, strip_pins

        try:
            wired = strip_pins(data_pin=leds.data_pin, clock_pin=leds.clock_pin,
                               spi_bus=leds.spi_bus, spi_device=leds.spi_device)
        except StripWiringError:  # reported as the setting's own problem
            return []
        return [("leds.clock_pin", wired.clock), ("leds.data_pin", wired.data),
                ("leds.spi_device (chip select)", wired.select)]
    return []


def pin_clashes(cfg: Config) -> Iterator[str]:
    """A pin both the button and an LED use, or an RGB LED with a leg on a repeated pin."""
    pins_of_leds = led_pins(cfg)
    if cfg.button.enabled:
        for key, pin in pins_of_leds:
            if pin == cfg.button.pin:
                yield f"GPIO{pin} is both button.pin and in {key}; give the LED another pin"
                break
    if cfg.leds.kind == "rgb":
        pins = [pin for _key, pin in pins_of_leds]
        if len(set(pins)) != len(pins):
            yield f"leds.rgb_pins {', '.join(map(str, pins))} repeats a pin; red, green and blue need one each"
