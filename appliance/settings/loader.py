"""Typed, validated configuration from one TOML file plus overrides.

Precedence, lowest first: dataclass defaults < TOML file < environment
(``APPLIANCE_<SECTION>_<KEY>``) < command line (``--set section.key=value``).
Every layer is checked as it is applied, so a bad value is reported with the
place it came from even if a later layer overrides it.

Adding a setting means adding a field to a section dataclass with
`setting(default, help, ...)`; adding a section means adding a frozen
dataclass and a field for it on `Config`.  Per-key constraints (choices,
min/max, pattern, non-empty, custom check) live in the field metadata, and
cross-field rules in the section's `cross_checks()` method, so the loader
never needs editing.  Supported field types: str, bool, int, float and
tuple[str | int | float, ...] (comma-separated in the environment / --set).

Every number has a lower and an upper bound, every path setting is checked for what
the kernel would refuse (NUL bytes, over-long names), and the config file itself is read
only when it is a regular file of at most `CONFIG_MAX_BYTES`.

Values of keys whose name contains "key", "token", "secret" or "password" are
shown as ``<hidden>`` in errors, unless the field says ``secret=False``
(`live.api_key_file` is a path and the compression limits are token *counts*,
so they are shown).  Any value that looks like it carries a credential in a
URL query (``key=`` / ``token=``) is hidden too.

The section dataclasses do not validate on direct construction: code and
tests may build e.g. ``LiveConfig(setup_timeout_s=0.05)`` on purpose.  Only
`load_config` enforces the constraints.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import re
import stat
import textwrap
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from appliance.atomicfile import FileRefused, read_regular_file
from appliance.netutil import is_loopback_host
from appliance.settings.secrets import Secret

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_CONFIG_PATH",
    "ENV_PREFIX",
    "Config",
    "ConfigError",
    "LiveConfig",
    "LogConfig",
    "config_template",
    "endpoint_url",
    "find_config_path",
    "load_api_key",
    "load_config",
    "secure_control_socket_path",
    "setting",
]

DEFAULT_CONFIG_PATH = "/etc/appliance/config.toml"
ENV_PREFIX = "APPLIANCE_"
ENV_CONFIG_PATH = "APPLIANCE_CONFIG"
_ENV_NOT_SETTINGS = frozenset({ENV_CONFIG_PATH})

API_KEY_ENV = "GEMINI_API_KEY"
CREDENTIAL_NAME = "gemini-api-key"

_HIDDEN = "<hidden>"
_SECRET_WORDS = ("key", "token", "secret", "password")
_CREDENTIAL_IN_TEXT = re.compile(r"(key|token)=", re.IGNORECASE)
# Google API keys ("AIza" + 35 characters) and ephemeral tokens ("auth_tokens/...").
_CREDENTIAL_SHAPE = re.compile(r"AIza[0-9A-Za-z_\-]{30,}|auth_tokens/")
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_MAX_SHOWN_VALUE = 80

#: the config file is read only up to this size (a real one is a few KiB)
CONFIG_MAX_BYTES = 256 * 1024
#: an API key file or credential holds one key; anything bigger is not one
KEY_FILE_MAX_BYTES = 4096
#: what Linux allows for a whole path and for one name in it (PATH_MAX, NAME_MAX)
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
#: sun_path is 108 bytes including the terminating NUL
MAX_SOCKET_PATH_BYTES = 107
#: where the control socket goes when neither systemd nor the login session gives a runtime directory
RUNTIME_FALLBACK_PARENT = "/tmp"


class ConfigError(Exception):
    """A configuration problem, described in one line that says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.splitlines()))


def setting(
    default: Any,
    help: str,  # noqa: A002 - reads naturally at the declaration site
    *,
    choices: Sequence[str] = (),
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    pattern: str | None = None,
    pattern_hint: str = "",
    nonempty: bool = False,
    check: Callable[[Any], str | None] | None = None,
    secret: bool | None = None,
    retired: Mapping[str, str] | None = None,
) -> Any:
    """Declare a config field with its help text and constraints.

    `pattern` must match the whole string (an empty string is always allowed
    unless `nonempty`); `check` returns a problem description or None;
    `secret` overrides the name-based decision whether to hide the value;
    `retired` maps a choice that is no longer accepted to the hint shown for it.
    """
    meta = {
        "help": help,
        "choices": tuple(choices),
        "min": min,
        "max": max,
        "pattern": pattern,
        "pattern_hint": pattern_hint,
        "nonempty": nonempty,
        "check": check,
        "secret": secret,
        "retired": dict(retired or {}),
    }
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- sections


def _check_endpoint(url: str) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        return "must be a ws:// or wss:// URL"
    if not parts.hostname:
        return "must name a host, like wss://host/path"
    if any(_CREDENTIAL_IN_TEXT.search(f"{name}=") for name, _ in parse_qsl(parts.query)):
        return f"must not carry a key or token; put the key in {API_KEY_ENV} or live.api_key_file"
    if parts.username or parts.password:
        return "must not contain a user name or password"
    if parts.scheme == "ws" and not is_loopback_host(parts.hostname):
        return "uses plain ws://, which would send the API key in clear; use wss:// (ws:// only to 127.0.0.1)"
    return None




def _check_path(text: str) -> str | None:
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


def _check_key_file(path: str) -> str | None:
    if path and _looks_like_credential(path):
        return "looks like the API key itself; store the key in a mode-600 file and give its path"
    return _check_path(path)


def _check_socket_path(path: str) -> str | None:
    problem = _check_path(path)
    if problem or not path:
        return problem
    length = len(os.fsencode(os.path.expanduser(path)))
    if length > MAX_SOCKET_PATH_BYTES:
        return (
            f"is {length} bytes long; a Unix socket path can be at most {MAX_SOCKET_PATH_BYTES} "
            "bytes, choose a shorter one"
        )
    return None


@dataclass(frozen=True)
class LiveConfig:
    """Connection to the Gemini Live API."""

    endpoint: str = setting(
        "",
        "Full WebSocket URL to use instead of the Google endpoint (an emulator or tests). "
        "Empty means build it from api_version and auth.",
        check=_check_endpoint,
    )
    api_version: str = setting(
        "v1beta",
        "API version in the endpoint path (the Live API WebSocket is served on v1beta and v1alpha).",
        choices=("v1beta", "v1alpha"),
        retired={"v1": "did you mean v1beta? The Live API WebSocket is served on v1beta and v1alpha only"},
    )
    auth: str = setting(
        "api_key",
        "api_key sends a normal API key; ephemeral sends a short-lived token and always uses "
        "the v1alpha BidiGenerateContentConstrained endpoint.",
        choices=("api_key", "ephemeral"),
    )
    model: str = setting("gemini-3.8-live", "Live model name.", nonempty=True)
    voice: str = setting("Kore", "Prebuilt voice for spoken replies.", nonempty=True)
    language: str = setting(
        "",
        "Reply language as a BCP-47 tag like en-US; empty means the model's default.",
        pattern=r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*",
        pattern_hint="a BCP-47 tag like en-US or de, or empty",
    )
    system_instruction: str = setting(
        "You are a concise, friendly kitchen helper. Answer in one or two short sentences.",
        "System instruction sent when the session starts.",
    )
    input_transcription: bool = setting(True, "Ask the server to transcribe what the user said.")
    output_transcription: bool = setting(True, "Ask the server to transcribe the spoken reply.")
    api_key_file: str = setting(
        "",
        f"File holding the API key (mode 600). Used only when neither {API_KEY_ENV} nor the "
        f"systemd credential {CREDENTIAL_NAME} is present.",
        check=_check_key_file,
        secret=False,
    )
    setup_timeout_s: float = setting(
        10.0, "Seconds to wait for setupComplete after connecting.", min=0.5, max=120
    )
    reply_timeout_s: float = setting(
        20.0, "Seconds to wait for the first reply after the user stops talking.", min=1, max=300
    )
    keepalive_interval_s: float = setting(
        20.0, "Seconds between WebSocket keepalive pings.", min=5, max=300
    )
    keepalive_timeout_s: float = setting(
        60.0, "Seconds without a pong before the connection counts as dead.", min=5, max=600
    )
    compression_trigger_tokens: int = setting(
        25600,
        "Context size in tokens at which the server starts dropping old turns.",
        min=1,
        max=1_048_576,
        secret=False,
    )
    compression_target_tokens: int = setting(
        12800,
        "Context size in tokens the server shrinks to; must be below the trigger.",
        min=1,
        max=1_048_576,
        secret=False,
    )

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        """Yield (key, problem) for rules that involve more than one key."""
        if self.compression_target_tokens >= self.compression_trigger_tokens:
            yield (
                "compression_target_tokens",
                f"must be less than live.compression_trigger_tokens "
                f"({self.compression_trigger_tokens})",
            )


@dataclass(frozen=True)
class LogConfig:
    """Logging."""

    level: str = setting(
        "info", "Lowest level that is logged.", choices=("debug", "info", "warning", "error")
    )


# The resampler's filter grows with the terms of the reduced ratio between two rates: every common rate
# gives small terms (44100 -> 16000 is 441:160), an odd one like 96001 Hz needs a filter of about 1 GB.
_MAX_RATE_RATIO_TERM = 6000


def _check_device_rate(converted_to: int) -> Callable[[int], str | None]:
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


_DEVICE_HINT = 'a device name or part of one as `appliance devices` lists it, "default", or #N for index N'


@dataclass(frozen=True)
class AudioConfig:
    """Microphone, speaker and the edges of a turn."""

    input_device: str = setting("default", f"Microphone: {_DEVICE_HINT}.", nonempty=True)
    output_device: str = setting("default", f"Speaker: {_DEVICE_HINT}.", nonempty=True)
    input_channel: int = setting(
        -1, "Which microphone channel to use (0 = first); -1 mixes all channels.", min=-1, max=31
    )
    input_rate: int = setting(
        0, "Capture rate in Hz; 0 means the device's own default rate.", min=0, max=192000,
        check=_check_device_rate(16000),
    )
    input_channels: int = setting(
        0, "Channels to open the microphone with; 0 means up to 2, as the device allows.", min=0, max=32
    )
    input_format: str = setting(
        "auto",
        "Capture sample format; auto tries 16-bit, then 32-bit (many I2S mics give only 32-bit).",
        choices=("auto", "int16", "int32"),
    )
    output_rate: int = setting(
        0, "Playback rate in Hz; 0 means 24000 when the device takes it, else its default rate.",
        min=0, max=192000, check=_check_device_rate(24000),
    )
    preroll_ms: int = setting(
        300, "Audio kept from before the button press, so the first syllable is not lost.", min=0, max=1000
    )
    postroll_silence_ms: int = setting(
        300, "After release, keep listening until this much non-speech, so the last word is kept.",
        min=0, max=2000,
    )
    postroll_max_ms: int = setting(
        800, "After release, stop listening after this long even if speech goes on.", min=0, max=3000
    )
    playback_start_ms: int = setting(
        120, "Reply audio buffered before playback starts (replies arrive in bursts).", min=20, max=1000
    )
    volume: int = setting(
        70, "Initial speaker volume 0-100; a volume changed later is remembered in the state directory.",
        min=0, max=100,
    )
    earcons: bool = setting(True, "Play short sounds when listening starts and ends, and on errors.")

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.postroll_max_ms < self.postroll_silence_ms:
            yield (
                "postroll_max_ms",
                f"must be at least audio.postroll_silence_ms ({self.postroll_silence_ms})",
            )


@dataclass(frozen=True)
class VadConfig:
    """Local voice activity detection (webrtcvad) that ends a turn."""

    aggressiveness: int = setting(
        2, "webrtcvad mode: 0 lets most sounds count as speech, 3 is the strictest.", min=0, max=3
    )
    end_silence_ms: int = setting(
        700, "Tap-to-talk: the turn ends after this much non-speech following speech.", min=100, max=5000
    )
    max_turn_s: float = setting(30.0, "No turn is longer than this.", min=1, max=300)
    no_speech_timeout_s: float = setting(
        5.0, "Tap-to-talk: give up when nobody speaks within this time (no model turn).", min=0.5, max=60
    )


@dataclass(frozen=True)
class ButtonConfig:
    """The push-to-talk button (gpiozero, BCM pin numbers)."""

    enabled: bool = setting(True, "Use a GPIO button; false for a box without one (use `appliance ctl`).")
    pin: int = setting(17, "BCM pin of the button (17 is the ReSpeaker 2-Mic HAT button).", min=0, max=53)
    pull_up: bool = setting(True, "The button connects the pin to ground (internal pull-up on).")
    debounce_ms: int = setting(
        30, "A change must hold this long to count; filters switch bounce without losing edges.", min=0, max=200
    )
    tap_max_ms: int = setting(
        400, "A press shorter than this is a tap (talk until silence); longer is hold-to-talk.", min=100, max=2000
    )
    long_hold_s: float = setting(
        5.0, "Holding this long while idle starts a new conversation.", min=1.0, max=30.0
    )


_LED_STATES = ("connecting", "idle", "listening", "thinking", "speaking", "offline", "error", "alarm")


_MAX_BCM_PIN = 53


def _check_led_pin(item: str) -> str | None:
    state, sep, pin = item.partition(":")
    if not sep or state not in _LED_STATES or not re.fullmatch(r"[0-9]{1,2}", pin):
        return f'must be STATE:PIN with STATE one of {", ".join(_LED_STATES)}, like "listening:5"'
    if int(pin) > _MAX_BCM_PIN:
        return f"names pin {int(pin)}; BCM pins go from 0 to {_MAX_BCM_PIN}"
    return None


@dataclass(frozen=True)
class LedsConfig:
    """Status LEDs (gpiozero): what is wired, and how bright."""

    kind: str = setting(
        "none",
        "none; pwm (one LED on `pin`); rgb (an RGB LED on `rgb_pins`); per_state (one LED per state, `state_pins`).",
        choices=("none", "pwm", "rgb", "per_state"),
    )
    pin: int = setting(12, "BCM pin of the single LED (kind = pwm).", min=0, max=_MAX_BCM_PIN)
    rgb_pins: tuple[int, ...] = setting(
        (5, 6, 13), "BCM pins of the red, green and blue legs (kind = rgb).", min=0, max=_MAX_BCM_PIN
    )
    state_pins: tuple[str, ...] = setting(
        (), 'One LED per state as "state:pin" (kind = per_state), e.g. "listening:5", "error:6".',
        check=_check_led_pin,
    )
    active_high: bool = setting(True, "The LED lights when the pin is high (false for common-anode wiring).")
    max_brightness: float = setting(1.0, "Cap for every pattern, 0-1 (e.g. 0.3 for a bedroom).", min=0.0, max=1.0)
    idle_brightness: float = setting(0.0, "Brightness while idle, 0 = off.", min=0.0, max=1.0)

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.kind == "rgb" and len(self.rgb_pins) != 3:
            yield ("rgb_pins", "must list exactly three pins: red, green, blue")
        if self.kind == "per_state" and not self.state_pins:
            yield ("state_pins", 'must list at least one "state:pin" when leds.kind = per_state')


@dataclass(frozen=True)
class ControlConfig:
    """The local control socket used by `appliance ctl`."""

    socket: str = setting(
        "",
        "Unix socket path (at most 107 bytes); empty means $RUNTIME_DIRECTORY/control.sock "
        "(systemd), else $XDG_RUNTIME_DIR/appliance/control.sock, else a private "
        "/tmp/appliance-UID/appliance/control.sock.",
        check=_check_socket_path,
        secret=False,
    )


@dataclass(frozen=True)
class PrivacyConfig:
    """What the appliance may write to its logs."""

    log_transcripts: bool = setting(False, "Log what was said and answered (off: only lengths and timings).")


TOOL_NAMES = ("set_timer", "list_timers", "cancel_timer", "get_time", "set_volume")


def _check_tool_name(name: str) -> str | None:
    if name not in TOOL_NAMES:
        return f"unknown tool; known tools: {', '.join(TOOL_NAMES)}"
    return None


def _check_time_zone(name: str) -> str | None:
    if not name:
        return None
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(name)
    except (ImportError, ValueError, KeyError, OSError):
        return "is not a known time zone; use an IANA name like Europe/Berlin, or empty for the system's"
    return None


@dataclass(frozen=True)
class ToolsConfig:
    """Functions the model may call on the device."""

    enabled: tuple[str, ...] = setting(TOOL_NAMES, "Tools declared to the model.", check=_check_tool_name)
    google_search: bool = setting(
        False, "Also offer Google Search, where the model allows it beside our functions."
    )
    time_zone: str = setting(
        "", "IANA time zone for get_time and timers, e.g. Europe/Berlin; empty = the system's.",
        check=_check_time_zone,
    )


@dataclass(frozen=True)
class TimersConfig:
    """Kitchen timers, kept on the device."""

    ring_max_s: float = setting(600.0, "A ringing timer stops by itself after this long.", min=5, max=3600)
    ring_interval_s: float = setting(2.0, "Seconds between alarm sounds while ringing.", min=0.5, max=30)
    max_timers: int = setting(20, "Most timers at once.", min=1, max=200)
    max_duration_h: float = setting(24.0, "Longest timer, in hours.", min=0.1, max=168)


@dataclass(frozen=True)
class StateConfig:
    """Where the appliance keeps what must survive a restart (volume, timers)."""

    dir: str = setting(
        "",
        "State directory; empty means $STATE_DIRECTORY (systemd), else ~/.local/state/appliance.",
        check=_check_path,
        secret=False,
    )


@dataclass(frozen=True)
class Config:
    """The whole configuration; `source` is the file that was read or "defaults"."""

    live: LiveConfig = field(default_factory=LiveConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    button: ButtonConfig = field(default_factory=ButtonConfig)
    leds: LedsConfig = field(default_factory=LedsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    timers: TimersConfig = field(default_factory=TimersConfig)
    state: StateConfig = field(default_factory=StateConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str = "defaults"
    # "section.key" -> where the value came from, for keys not left at their default.
    origins: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), compare=False, repr=False
    )


# --------------------------------------------------------------------------- field specs


@dataclass(frozen=True)
class _Spec:
    section: str
    name: str
    kind: type  # str, bool, int or float; the element type for tuples
    is_tuple: bool
    meta: Mapping[str, Any]

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env_name(self) -> str:
        return f"{ENV_PREFIX}{self.section}_{self.name}".upper()

    @property
    def secret(self) -> bool:
        declared = self.meta.get("secret")
        return _name_looks_secret(self.name) if declared is None else bool(declared)


_SCALARS = (str, bool, int, float)


def _field_kind(owner: type, name: str, hint: Any) -> tuple[type, bool]:
    if hint in _SCALARS:
        return hint, False
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in (str, int, float):
            return args[0], True
    raise TypeError(f"{owner.__name__}.{name}: unsupported config field type {hint!r}")


@cache
def _sections() -> dict[str, tuple[type, dict[str, _Spec]]]:
    """Section name -> (dataclass, key -> spec), derived from `Config`."""
    result: dict[str, tuple[type, dict[str, _Spec]]] = {}
    for section, section_type in typing.get_type_hints(Config).items():
        if not dataclasses.is_dataclass(section_type):
            continue
        hints = typing.get_type_hints(section_type)
        specs = {}
        for f in dataclasses.fields(section_type):
            kind, is_tuple = _field_kind(section_type, f.name, hints[f.name])
            specs[f.name] = _Spec(section, f.name, kind, is_tuple, f.metadata)
        result[section] = (section_type, specs)
    return result


def _name_looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _show(value: Any, *, hidden: bool) -> str:
    if hidden:
        return _HIDDEN
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int) and abs(value) >= 10**_MAX_SHOWN_VALUE:
        text = f"a {value.bit_length()}-bit number"  # repr() of a huge int is slow, or refused
    elif isinstance(value, (str, int, float)):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_show(v, hidden=False) for v in value) + "]"
    else:
        text = f"a {type(value).__name__}"
    if _looks_like_credential(text):
        return _HIDDEN
    if len(text) > _MAX_SHOWN_VALUE:
        text = text[: _MAX_SHOWN_VALUE - 3] + "..."
    return text


def _looks_like_credential(text: str) -> bool:
    """True for text that carries a key: ``key=``/``token=`` or a key's shape."""
    return bool(_CREDENTIAL_IN_TEXT.search(text) or _CREDENTIAL_SHAPE.search(text))


def _closest(word: str, options: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


# --------------------------------------------------------------------------- conversion


_KIND_WORDS = {str: "a string", bool: "true or false", int: "a whole number", float: "a number"}
_PLURAL_WORDS = {str: "strings", int: "whole numbers", float: "numbers"}


def _convert_typed(spec: _Spec, raw: Any) -> Any:
    """Check a value parsed from TOML; raise ValueError(problem) if its type is wrong."""
    if spec.is_tuple:
        if not isinstance(raw, list):
            raise ValueError(f"expected a list of {_PLURAL_WORDS[spec.kind]}")
        return tuple(_convert_scalar_typed(spec.kind, item) for item in raw)
    return _convert_scalar_typed(spec.kind, raw)


def _convert_scalar_typed(kind: type, raw: Any) -> Any:
    if kind is bool:
        if isinstance(raw, bool):
            return raw
    elif kind is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
    elif kind is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return _finite(float(raw))
    elif isinstance(raw, str):
        return raw
    raise ValueError(f"expected {_KIND_WORDS[kind]}")


def _convert_text(spec: _Spec, raw: str) -> Any:
    """Convert a string from the environment or --set; raise ValueError(problem)."""
    if spec.is_tuple:
        items = [item.strip() for item in raw.split(",")] if raw.strip() else []
        return tuple(_convert_scalar_text(spec.kind, item) for item in items)
    return _convert_scalar_text(spec.kind, raw)


def _convert_scalar_text(kind: type, raw: str) -> Any:
    if kind is str:
        return raw
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE_WORDS:
            return True
        if text.lower() in _FALSE_WORDS:
            return False
        raise ValueError("expected true/false, 1/0, yes/no or on/off")
    try:
        return int(text) if kind is int else _finite(float(text))
    except ValueError:
        raise ValueError(f"expected {_KIND_WORDS[kind]}") from None


def _finite(number: float) -> float:
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _bound(number: float) -> str:
    """A min/max as a person writes it: 120, 0.5, 1048576 (not 1.04858e+06)."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _constraint_problem(spec: _Spec, value: Any) -> tuple[Any, str | None]:
    """Return (canonical value, problem or None) after the declared constraints."""
    if spec.is_tuple:
        checked = []
        for item in value:
            item, problem = _scalar_constraint_problem(spec, item)
            if problem:
                return value, f"item {_show(item, hidden=spec.secret)} {problem}"
            checked.append(item)
        return tuple(checked), None
    return _scalar_constraint_problem(spec, value)


def _scalar_constraint_problem(spec: _Spec, value: Any) -> tuple[Any, str | None]:
    meta = spec.meta
    choices: tuple[str, ...] = meta.get("choices") or ()
    if choices:
        canonical = {c.lower(): c for c in choices}.get(str(value).lower())
        if canonical is None:
            retired = {k.lower(): v for k, v in (meta.get("retired") or {}).items()}
            guess = _closest(str(value).lower(), choices)
            if str(value).lower() in retired and not spec.secret:
                hint = f"; {retired[str(value).lower()]}"
            else:
                hint = f"; did you mean {guess}?" if guess and not spec.secret else ""
            return value, f"must be one of: {', '.join(choices)}{hint}"
        value = canonical
    low, high = meta.get("min"), meta.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            return value, f"must be between {_bound(low)} and {_bound(high)}"
        if low is not None:
            return value, f"must be at least {_bound(low)}"
        return value, f"must be at most {_bound(high)}"
    if meta.get("nonempty") and isinstance(value, str) and not value.strip():
        return value, "must not be empty"
    pattern = meta.get("pattern")
    if pattern and isinstance(value, str) and value and not re.fullmatch(pattern, value):
        return value, f"must be {meta.get('pattern_hint') or f'like {pattern}'}"
    check = meta.get("check")
    if check is not None:
        problem = check(value)
        if problem:
            return value, problem
    return value, None


# --------------------------------------------------------------------------- layers


@dataclass
class _Layers:
    """Effective raw values per section and where each came from."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def apply(self, spec: _Spec, value: Any, origin: str) -> None:
        value, problem = _constraint_problem(spec, value)
        if problem:
            raise ConfigError(_invalid(spec, value, origin, problem))
        self.values.setdefault(spec.section, {})[spec.name] = value
        self.origins[spec.dotted] = origin


def _invalid(spec: _Spec, value: Any, origin: str, problem: str) -> str:
    return f"invalid {spec.dotted} = {_show(value, hidden=spec.secret)} {origin}: {problem}"


def _lookup_section(section: str, origin: str) -> dict[str, _Spec]:
    sections = _sections()
    if section in sections:
        return sections[section][1]
    guess = _closest(section, list(sections))
    hint = f"did you mean [{guess}]?" if guess else f"known sections: {', '.join(sections)}"
    raise ConfigError(f"unknown section [{section}] {origin}; {hint}")


def _lookup_key(section: str, key: str, origin: str, *, as_env: bool = False) -> _Spec:
    specs = _lookup_section(section, origin)
    if key in specs:
        return specs[key]
    guess = _closest(key, list(specs))
    if guess:
        hint = f"did you mean {specs[guess].env_name if as_env else f'{section}.{guess}'}?"
    else:
        hint = f"known keys in [{section}]: {', '.join(specs)}"
    if re.fullmatch(r"(gemini_)?(api_?)?(key|token)", key.lower()):
        hint = (
            f"the API key never goes in the config: use {API_KEY_ENV}, the systemd credential "
            f"{CREDENTIAL_NAME}, or a mode-600 file named by live.api_key_file"
        )
    raise ConfigError(f"unknown key {section}.{key} {origin}; {hint}")


def _is_devnull(path: Path) -> bool:
    """`--config /dev/null` is the usual way to say "no file": it reads as empty."""
    try:
        return os.path.samefile(path, os.devnull)
    except (OSError, ValueError):
        return False


def _read_toml(path: Path) -> dict[str, Any]:
    if _is_devnull(path):
        return {}
    try:
        data = read_regular_file(path, CONFIG_MAX_BYTES)
    except FileRefused as exc:
        raise ConfigError(f"config file {path} {exc.problem}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not valid UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"TOML syntax error in {path}: {exc}") from None
    except RecursionError:
        raise ConfigError(
            f"config file {path} nests tables or arrays too deeply to read; a config needs no nesting"
        ) from None
    except MemoryError:
        raise ConfigError(f"config file {path} is too big to parse on this machine") from None
    except ValueError as exc:  # e.g. an integer with thousands of digits
        raise ConfigError(f"TOML value error in {path}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _apply_file(layers: _Layers, path: Path) -> None:
    origin = f"in {path}"
    document = _read_toml(path)
    for section, table in document.items():
        if not isinstance(table, dict):
            _reject_top_level_key(section, origin)
        _lookup_section(section, origin)
        for key, raw in table.items():
            spec = _lookup_key(section, key, origin)
            try:
                value = _convert_typed(spec, raw)
            except ValueError as exc:
                raise ConfigError(_invalid(spec, raw, origin, str(exc))) from None
            layers.apply(spec, value, origin)


def _reject_top_level_key(key: str, origin: str) -> typing.NoReturn:
    owners = [s for s, (_, specs) in _sections().items() if key in specs]
    if owners:
        hint = f"move it under [{owners[0]}] (did you mean {owners[0]}.{key}?)"
    else:
        hint = f"settings belong in a section: {', '.join(f'[{s}]' for s in _sections())}"
    raise ConfigError(f"key {key} {origin} is outside any section; {hint}")


def _split_env_name(name: str) -> tuple[str, str]:
    rest = name[len(ENV_PREFIX) :].lower()
    matching = [s for s in _sections() if rest.startswith(s + "_")]
    if not matching:
        return rest.split("_", 1)[0], ""
    section = max(matching, key=len)
    return section, rest[len(section) + 1 :]


def _apply_env(layers: _Layers, env: Mapping[str, str]) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in _ENV_NOT_SETTINGS:
            continue
        origin = f"from environment variable {name}"
        section, key = _split_env_name(name)
        spec = _lookup_key(section, key, origin, as_env=True)
        raw = env[name]
        try:
            value = _convert_text(spec, raw)
        except ValueError as exc:
            raise ConfigError(_invalid(spec, raw, origin, str(exc))) from None
        layers.apply(spec, value, origin)


def _apply_overrides(layers: _Layers, overrides: Sequence[str]) -> None:
    origin = "from --set"
    for item in overrides:
        name, sep, raw = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            shown = _show(item, hidden=_name_looks_secret(item))
            raise ConfigError(f"--set expects section.key=value, like live.model=NAME (got {shown})")
        spec = _lookup_key(section, key, origin)
        try:
            value = _convert_text(spec, raw)
        except ValueError as exc:
            raise ConfigError(_invalid(spec, raw, origin, str(exc))) from None
        layers.apply(spec, value, origin)


# --------------------------------------------------------------------------- public API


def find_config_path(cli_path: str | None, env: Mapping[str, str]) -> Path | None:
    """`--config PATH`, else `$APPLIANCE_CONFIG`, else the default file if present.

    A file named explicitly (flag or environment) must exist.
    """
    if cli_path is not None:
        return _explicit_path(cli_path, "--config")
    from_env = env.get(ENV_CONFIG_PATH, "")
    if from_env:
        return _explicit_path(from_env, f"environment variable {ENV_CONFIG_PATH}")
    default = Path(DEFAULT_CONFIG_PATH)
    return default if default.exists() else None


def _explicit_path(text: str, named_by: str) -> Path:
    if not text.strip():
        raise ConfigError(f"{named_by} is empty; give the path of a TOML config file")
    problem = _check_path(text)
    if problem:
        raise ConfigError(f"config file {_show(text, hidden=False)} (named by {named_by}) {problem}")
    path = Path(text).expanduser()
    try:
        os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} (named by {named_by}) does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} (named by {named_by}): {exc.strerror or exc}") from None
    return path


def load_config(
    cli_path: str | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    overrides: Sequence[str] = (),
) -> Config:
    """Build the configuration: defaults < file < environment < `--set` overrides."""
    path = find_config_path(cli_path, env)
    layers = _Layers()
    if path is not None:
        _apply_file(layers, path)
    _apply_env(layers, env)
    _apply_overrides(layers, overrides)

    built: dict[str, Any] = {}
    for section, (section_type, specs) in _sections().items():
        instance = section_type(**layers.values.get(section, {}))
        cross_checks = getattr(instance, "cross_checks", None)
        for key, problem in cross_checks() if cross_checks else ():
            spec = specs[key]
            origin = layers.origins.get(spec.dotted, "(default)")
            message = _invalid(spec, getattr(instance, key), origin, problem)
            raise ConfigError(message + _related_origins(section, key, problem, layers))
        built[section] = instance
    return Config(
        **built,
        source=str(path) if path is not None else "defaults",
        origins=types.MappingProxyType(dict(layers.origins)),
    )


def _related_origins(section: str, key: str, problem: str, layers: _Layers) -> str:
    """Say where the other keys a cross-field problem mentions were set."""
    notes = []
    for other in dict.fromkeys(re.findall(rf"\b{re.escape(section)}\.(\w+)", problem)):
        dotted = f"{section}.{other}"
        if other != key and dotted in layers.origins:
            notes.append(f"{dotted} was set {layers.origins[dotted]}")
    return f" ({'; '.join(notes)})" if notes else ""


def load_api_key(
    cfg: Config,
    *,
    env: Mapping[str, str] = os.environ,
    warn: Callable[[str], None] | None = None,
) -> Secret | None:
    """Find the API key: `$GEMINI_API_KEY`, the systemd credential, `live.api_key_file`.

    The first source present wins.  Returns None when there is no key at all;
    the caller decides whether that is fatal.
    """
    warn = warn or logging.getLogger(__name__).warning

    from_env = env.get(API_KEY_ENV, "").strip()
    if from_env:
        return Secret(_checked_key(from_env, f"environment variable {API_KEY_ENV}"))

    credentials_dir = env.get("CREDENTIALS_DIRECTORY", "")
    if credentials_dir:
        credential = Path(credentials_dir) / CREDENTIAL_NAME
        if credential.exists():
            return Secret(_read_key_file(credential, f"systemd credential {credential}"))

    if cfg.live.api_key_file:
        where = cfg.origins.get("live.api_key_file", "set in code")
        problem = _check_key_file(cfg.live.api_key_file)
        if problem:  # only when the Config was built in code: the loader already refused it
            shown = _show(cfg.live.api_key_file, hidden=_looks_like_credential(cfg.live.api_key_file))
            raise ConfigError(f"live.api_key_file {shown} ({where}) {problem}")
        path = Path(cfg.live.api_key_file).expanduser()
        label = f"live.api_key_file {_show(str(path), hidden=False)} ({where})"
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(f"{label} does not exist; create it or clear the setting") from None
        except OSError as exc:
            raise ConfigError(f"{label} cannot be read: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{label} is not a regular file")
        if mode & 0o077:
            warn(
                f"API key file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(mode):03o}); run: chmod 600 {path}"
            )
        return Secret(_read_key_file(path, label))
    return None


def _read_key_file(path: Path, label: str) -> str:
    try:
        text = read_regular_file(path, KEY_FILE_MAX_BYTES).decode("utf-8")
    except FileRefused as exc:
        if exc.problem.startswith("is larger"):
            raise ConfigError(f"{label} {exc.problem}; it must hold only the API key") from None
        raise ConfigError(f"{label} {exc.problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{label} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{label} cannot be read: {exc.strerror or exc}") from None
    key = text.strip()
    if not key:
        raise ConfigError(f"{label} is empty; put the API key in it")
    return _checked_key(key, label)


def _checked_key(key: str, label: str) -> str:
    if any(ch.isspace() for ch in key):
        raise ConfigError(f"{label} must hold only the API key, on one line with no spaces")
    return key


_GOOGLE_HOST = "wss://generativelanguage.googleapis.com/ws"
_SERVICE = "google.ai.generativelanguage.{version}.GenerativeService.{method}"


def endpoint_url(live: LiveConfig) -> str:
    """The WebSocket URL to connect to.  Never contains the key: it goes in a header."""
    if live.endpoint:
        return live.endpoint
    if live.auth == "ephemeral":
        service = _SERVICE.format(version="v1alpha", method="BidiGenerateContentConstrained")
    else:
        service = _SERVICE.format(version=live.api_version, method="BidiGenerateContent")
    return f"{_GOOGLE_HOST}/{service}"


# --------------------------------------------------------------------------- template


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _constraint_note(spec: _Spec) -> str:
    meta = spec.meta
    notes = []
    if meta.get("choices"):
        notes.append("one of: " + ", ".join(meta["choices"]))
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        notes.append(f"range {_bound(low)}..{_bound(high)}")
    elif low is not None:
        notes.append(f"at least {_bound(low)}")
    elif high is not None:
        notes.append(f"at most {_bound(high)}")
    notes.append(f"env {spec.env_name}")
    return "; ".join(notes)


def config_template() -> str:
    """A commented TOML file listing every setting at its default.

    The settings are commented out, so the file loads to the defaults and
    later versions' new defaults still apply; uncomment a line to change it.
    """
    lines = [
        "# Appliance configuration (TOML).",
        "# Every setting is shown commented out at its default value; uncomment to change it.",
        f"# Precedence: defaults < this file < environment ({ENV_PREFIX}<SECTION>_<KEY>)",
        "#             < command line (--set section.key=value).",
        f"# The API key does not belong here: use {API_KEY_ENV}, the systemd credential",
        f"# {CREDENTIAL_NAME}, or live.api_key_file pointing at a mode-600 file.",
    ]
    defaults = Config()
    for section, (section_type, specs) in _sections().items():
        instance = getattr(defaults, section)
        lines.append("")
        summary = (section_type.__doc__ or "").strip().splitlines()
        if summary:
            lines.append(f"# {summary[0]}")
        lines.append(f"[{section}]")
        for name, spec in specs.items():
            lines.append("")
            for text in (spec.meta.get("help", ""), f"({_constraint_note(spec)})"):
                lines.extend(textwrap.wrap(text, width=88, initial_indent="# ", subsequent_indent="# "))
            lines.append(f"#{name} = {_toml_value(getattr(instance, name))}")
    return "\n".join(lines) + "\n"


def state_dir(cfg: Config, env: Mapping[str, str] = os.environ) -> Path:
    """The state directory: `[state] dir`, else systemd's $STATE_DIRECTORY, else ~/.local/state."""
    if cfg.state.dir:
        return Path(cfg.state.dir).expanduser()
    systemd_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd_dir:
        return Path(systemd_dir)
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "appliance"


def control_socket_path(cfg: Config, env: Mapping[str, str] = os.environ) -> Path:
    """`[control] socket`, else systemd's $RUNTIME_DIRECTORY, else $XDG_RUNTIME_DIR/appliance.

    Only computes the path; `secure_control_socket_path` is what the daemon and `ctl` use.
    """
    if cfg.control.socket:
        return Path(cfg.control.socket).expanduser()
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / "control.sock"
    base = env.get("XDG_RUNTIME_DIR") or _runtime_fallback_dir()
    return Path(base) / "appliance" / "control.sock"


def _runtime_fallback_dir() -> Path:
    return Path(RUNTIME_FALLBACK_PARENT) / f"appliance-{os.getuid()}"


def secure_control_socket_path(cfg: Config, env: Mapping[str, str] = os.environ) -> Path:
    """The control socket path, after making sure nobody else controls its directory.

    Without systemd's or the login session's runtime directory the socket lives under
    /tmp/appliance-UID, and anyone can create that name first: a socket there could be
    someone else's, answering `ctl` or taking the daemon's place.  So both the daemon and
    `ctl` call this: the directory is created with mode 0700 when missing, and refused
    (ConfigError, one line) when it is a symlink, not ours, or open to group or others.
    """
    path = control_socket_path(cfg, env)
    fallback = _runtime_fallback_dir()
    if fallback in path.parents:
        _ensure_private_dir(fallback)
    return path


def _ensure_private_dir(directory: Path) -> None:
    created = False
    try:
        os.mkdir(directory, 0o700)
        created = True
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(
            f"cannot create the control socket directory {directory}: {exc.strerror or exc}; "
            "set XDG_RUNTIME_DIR or [control] socket"
        ) from None
    try:
        info = os.lstat(directory)
    except OSError as exc:
        raise ConfigError(f"cannot inspect the control socket directory {directory}: {exc.strerror or exc}") from None
    fix = f"remove it (rm -r {directory}) or set XDG_RUNTIME_DIR or [control] socket"
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(f"control socket directory {directory} is a symlink, which anyone could have made; {fix}")
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"control socket directory {directory} is not a directory; {fix}")
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"control socket directory {directory} belongs to uid {info.st_uid}, not to this user "
            f"(uid {os.geteuid()}), so it cannot be trusted; {fix}"
        )
    if created:
        try:
            os.chmod(directory, 0o700)  # mkdir's mode went through the umask
        except OSError as exc:
            raise ConfigError(
                f"cannot make the control socket directory {directory} private: {exc.strerror or exc}"
            ) from None
    elif info.st_mode & 0o077:
        raise ConfigError(
            f"control socket directory {directory} has mode {stat.S_IMODE(info.st_mode):04o}, open to other "
            f"users, so what is in it cannot be trusted; {fix}"
        )
