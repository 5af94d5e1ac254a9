"""Checks for single setting values, each returning what is wrong or None.

A check's text completes "invalid section.key = VALUE <origin>: ..." in the loader and
"section.key = VALUE: ..." in doctor, so it says what to write instead.  The rules that
other parts of the appliance also apply are imported from their owners (the endpoint rule,
the LED state names, the tool names, the night window parser), never restated here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable

from appliance.hw.states import STATES as LED_STATES
from appliance.live.endpoint import endpoint_problem
from appliance.settings.display import looks_like_credential
from appliance.tools.names import TOOL_NAMES

__all__ = [
    "MAX_BCM_PIN",
    "MAX_NAME_BYTES",
    "MAX_PATH_BYTES",
    "MAX_SOCKET_PATH_BYTES",
    "check_device_rate",
    "check_endpoint",
    "check_key_file",
    "check_led_pin",
    "check_night",
    "check_path",
    "check_socket_path",
    "check_time_zone",
    "check_tool_name",
]

#: what Linux allows for a whole path and for one name in it (PATH_MAX, NAME_MAX)
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
#: sun_path is 108 bytes including the terminating NUL
MAX_SOCKET_PATH_BYTES = 107
#: the highest GPIO number on the Pi's BCM numbering
MAX_BCM_PIN = 53
# The resampler's filter grows with the terms of the reduced ratio between two rates: every common rate
# gives small terms (44100 -> 16000 is 441:160), an odd one like 96001 Hz needs a filter of about 1 GB.
_MAX_RATE_RATIO_TERM = 6000

#: `live.endpoint`: the rule `appliance.live.endpoint` owns
check_endpoint = endpoint_problem


def check_path(text: str) -> str | None:
    """What the kernel (or pathlib) would refuse in a path, said before anything uses it."""
    if not text:
        return None
    if "\x00" in text:
        return "must not contain a NUL byte"
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        return "holds characters no file name can (a lone surrogate)"
    if len(raw) > MAX_PATH_BYTES:
        return f"is {len(raw)} bytes long; a path can be at most {MAX_PATH_BYTES} bytes"
    longest = max(len(part) for part in raw.split(b"/"))
    if longest > MAX_NAME_BYTES:
        return (
            f"has a name of {longest} bytes in it; each part of a path can be at most "
            f"{MAX_NAME_BYTES} bytes"
        )
    first = text.split("/", 1)[0]
    if first.startswith("~") and os.path.expanduser(first) == first:
        whose = "this user has no home directory" if first == "~" else f"there is no user {first[1:]}"
        return f"starts with {first}, but {whose}; give an absolute path"
    return None


def check_key_file(path: str) -> str | None:
    """`live.api_key_file` is a path; someone pasting the key itself there is told so."""
    if path and looks_like_credential(path):
        return "looks like the API key itself; store the key in a mode-600 file and give its path"
    return check_path(path)


def check_socket_path(path: str) -> str | None:
    problem = check_path(path)
    if problem or not path:
        return problem
    length = len(os.fsencode(os.path.expanduser(path)))
    if length > MAX_SOCKET_PATH_BYTES:
        return (
            f"is {length} bytes long; a Unix socket path can be at most {MAX_SOCKET_PATH_BYTES} "
            "bytes, choose a shorter one"
        )
    return None


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
