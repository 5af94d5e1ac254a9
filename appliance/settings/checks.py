"""Checks for single setting values, each returning what is wrong or None.

A check's text completes "invalid section.key = VALUE <origin>: ..." in the loader and
"section.key = VALUE: ..." in doctor, so it says what to write instead.  The rules that
other parts of the appliance also apply are imported from their owners (the endpoint rule,
the LED state names, the tool names, the night window parser), never restated here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from appliance.hw.led_patterns import UnknownLedState, parse_colour
from appliance.hw.states import STATES as LED_STATES
from appliance.live.endpoint import endpoint_problem
from appliance.live.profiles import known_models, strip_models_prefix
from appliance.settings.display import closest, looks_like_credential
from appliance.settings.path_rules import check_path
from appliance.tools.names import TOOL_NAMES

__all__ = [
    "MAX_BCM_PIN",
    "check_device_rate",
    "check_endpoint",
    "check_key_file",
    "check_led_colour",
    "check_led_pin",
    "check_night",
    "check_time_zone",
    "check_tool_name",
    "model_warning",
]

#: the highest GPIO number on the Pi's BCM numbering
MAX_BCM_PIN = 53
# The resampler's filter grows with the terms of the reduced ratio between two rates: every common rate
# gives small terms (44100 -> 16000 is 441:160), an odd one like 96001 Hz needs a filter of about 1 GB.
_MAX_RATE_RATIO_TERM = 6000

#: `live.endpoint`: the rule `appliance.live.endpoint` owns
check_endpoint = endpoint_problem


def check_key_file(path: str) -> str | None:
    """`live.api_key_file` is a path; someone pasting the key itself there is told so."""
    if path and looks_like_credential(path):
        return "looks like the API key itself; store the key in a mode-600 file and give its path"
    return check_path(path)


def check_device_rate(converted_to: int) -> Callable[[int], str | None]:
    """A device rate is 0 (the device's own) or a real audio rate the resampler can afford."""

    def check(rate: int) -> str | None:
        if rate == 0:
            return None
        if not 8000 <= rate <= 192000:
            return "must be 0 (the device's default) or a rate from 8000 to 192000 Hz"
        if max(rate, converted_to) // math.gcd(rate, converted_to) > _MAX_RATE_RATIO_TERM:
            return "is not a usual audio rate; use one such as 16000, 44100 or 48000"
        return None

    return check


def check_led_pin(item: str) -> str | None:
    """One `leds.state_pins` entry, "state:pin"."""
    state, sep, pin = item.partition(":")
    if not sep or state not in LED_STATES or not re.fullmatch(r"[0-9]{1,2}", pin):
        return f'must be STATE:PIN with STATE one of {", ".join(LED_STATES)}, like "listening:5"'
    if int(pin) > MAX_BCM_PIN:
        return f"names pin {int(pin)}; BCM pins go from 0 to {MAX_BCM_PIN}"
    return None


def check_led_colour(item: str) -> str | None:
    """One `leds.colors` entry, "state:RRGGBB", as `appliance.hw.led_patterns` reads it."""
    try:
        parse_colour(item)
    except UnknownLedState as exc:
        guess = closest(exc.state, LED_STATES)
        return f"{exc}; did you mean {guess}?" if guess else str(exc)
    except ValueError as exc:
        return str(exc)
    return None


def check_night(text: str) -> str | None:
    """`leds.night`: a daily window as `appliance.hw.night` reads it, or empty for never."""
    if not text:
        return None
    # Imported here: the night module brings asyncio, which loading settings does not need.
    from appliance.hw.night import NightError, NightWindow

    try:
        NightWindow.parse(text)
    except NightError as exc:
        # The parser names the window itself; the loader's message already shows the value.
        return str(exc).removeprefix(f"night window {text!r} ")
    return None


def check_tool_name(name: str) -> str | None:
    if name not in TOOL_NAMES:
        return f"unknown tool; known tools: {', '.join(TOOL_NAMES)}"
    return None


def check_time_zone(name: str) -> str | None:
    if not name:
        return None
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(name)
    except (ImportError, ValueError, KeyError, OSError):
        return "is not a known time zone; use an IANA name like Europe/Berlin, or empty for the system's"
    return None


#: Live model ids the Gemini API no longer serves (live-protocol.md §6); the service closes a
#: setup that names one with 1008 "... is not found for API version ...".
_GONE_MODELS = {
    "gemini-live-2.5-flash-preview": "was shut down on 2025-12-09",
    "gemini-2.0-flash-live-001": "was shut down on 2025-12-09",
    "gemini-live-2.5-flash-native-audio": "is served by Vertex AI only, not by the Gemini API",
}


def model_warning(name: str) -> str | None:
    """Why `live.model` may not work, or None for a model this version knows.

    A warning, not a refusal: new Live models come out faster than the appliance is updated,
    so an unknown one is still tried, with only the setup fields every Live model accepts.
    """
    model_id = strip_models_prefix(name)
    known = known_models()
    if model_id in known:
        return None
    listed = ", ".join(known)
    gone = _GONE_MODELS.get(model_id.lower())
    if gone:
        return f"{gone}, so the service will refuse it; use one of: {listed}"
    guess = closest(model_id, known)
    hint = f"did you mean {guess}? " if guess else ""
    return (
        "is not a model this version knows: it is tried with only the setup fields every Live model "
        f"accepts; {hint}known models: {listed}"
    )
