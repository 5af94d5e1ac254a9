"""The settings: one frozen dataclass per section, each field declared with `setting()`.

Adding a setting means adding a field to a section dataclass with
`setting(default, help, ...)`; adding a section means adding a frozen dataclass
and a field for it on `Config`.  Per-key constraints (choices, min/max, pattern,
non-empty, custom check from `checks`) live in the field metadata, and
cross-field rules in the section's `cross_checks()` method, so neither the
loader nor the template needs editing.  Supported field types: str, bool, int,
float and tuple[str | int | float, ...].  Every number has a lower and an upper
bound, and every path setting is checked for what the kernel would refuse.

The dataclasses do not validate on direct construction: code and tests may
build e.g. ``LiveConfig(setup_timeout_s=0.05)`` on purpose.  Only
`loader.load_config` enforces the constraints (and `validate.config_problems`
reports them for a Config built any way).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.audio.cleanup import INSTALL_HINT, MAX_AUTO_GAIN_DBFS, NOISE_SUPPRESSION_LEVELS
from appliance.hw.apa102 import StripWiringError, strip_pins
from appliance.hw.led_outputs import KINDS as LED_KINDS
from appliance.hw.led_patterns import repeated_colour
from appliance.live.profiles import DEFAULT_MODEL, known_models
from appliance.live.voices import PREBUILT_VOICES
from appliance.mcp.config import McpSettings
from appliance.settings.checks import (
    MAX_BCM_PIN,
    check_device_rate,
    check_endpoint,
    check_key_file,
    check_led_colour,
    check_led_pin,
    check_night,
    check_time_zone,
    check_tool_name,
)
from appliance.settings.path_rules import check_path, check_socket_path
from appliance.settings.secrets import API_KEY_ENV, CREDENTIAL_NAME
from appliance.tools.names import TOOL_NAMES

__all__ = [
    "AudioConfig",
    "ButtonConfig",
    "Config",
    "ControlConfig",
    "LedsConfig",
    "LiveConfig",
    "LogConfig",
    "PrivacyConfig",
    "StateConfig",
    "TimersConfig",
    "ToolsConfig",
    "VadConfig",
    "setting",
]


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


@dataclass(frozen=True)
class LiveConfig:
    """Connection to the Gemini Live API."""

    endpoint: str = setting(
        "",
        "Full WebSocket URL to use instead of the Google endpoint (an emulator or tests). "
        "Empty means build it from api_version and auth.",
        check=check_endpoint,
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
    model: str = setting(
        DEFAULT_MODEL,
        f"Live model id. This version knows {', '.join(known_models())}; another one is tried with "
        "only the setup fields every Live model accepts, and `appliance config check` warns about it.",
        nonempty=True,
    )
    voice: str = setting(
        "Kore", "Prebuilt voice for spoken replies, one of the Live API's voices (any case).",
        choices=PREBUILT_VOICES,
    )
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
        check=check_key_file,
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
        check=check_device_rate(16000),
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
        min=0, max=192000, check=check_device_rate(24000),
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
    noise_suppression: int = setting(
        0,
        "WebRTC noise suppression of what the microphone hears during a turn (fans, taps, pans): 0 off, "
        f"1 low, 2 moderate, 3 high, 4 very high; 2 suits a kitchen fan. Needs {INSTALL_HINT}.",
        min=0, max=NOISE_SUPPRESSION_LEVELS,
    )
    auto_gain: int = setting(
        0,
        "WebRTC automatic gain during a turn: 0 off, else the target level in dB below full scale, as the "
        f"library takes it (1.3.0 gives the same gain for any target). Needs {INSTALL_HINT}.",
        min=0, max=MAX_AUTO_GAIN_DBFS,
    )

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
    pin: int = setting(
        17, "BCM pin of the button (17 is the ReSpeaker 2-Mic HAT button).", min=0, max=MAX_BCM_PIN
    )
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
    mute_hold_s: float = setting(
        10.0,
        "Holding this long without talking mutes the microphone, or unmutes it; more than long_hold_s.",
        min=2.0, max=60.0,
    )

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.mute_hold_s <= self.long_hold_s:
            yield ("mute_hold_s", f"must be more than button.long_hold_s ({self.long_hold_s:g})")


@dataclass(frozen=True)
class LedsConfig:
    """Status LEDs (gpiozero): what is wired, and how bright."""

    kind: str = setting(
        "none",
        "none; pwm (one LED on `pin`); rgb (an RGB LED on `rgb_pins`); per_state (one LED per state, "
        "`state_pins`); apa102 (an APA102/DotStar strip of `count` LEDs on SPI, as on the ReSpeaker "
        "2-Mics HAT and the Adafruit Voice Bonnet).",
        choices=LED_KINDS,
    )
    pin: int = setting(12, "BCM pin of the single LED (kind = pwm).", min=0, max=MAX_BCM_PIN)
    rgb_pins: tuple[int, ...] = setting(
        (5, 6, 13), "BCM pins of the red, green and blue legs (kind = rgb).", min=0, max=MAX_BCM_PIN
    )
    state_pins: tuple[str, ...] = setting(
        (), 'One LED per state as "state:pin" (kind = per_state), e.g. "listening:5", "error:6".',
        check=check_led_pin,
    )
    count: int = setting(3, "LEDs on the APA102 strip (kind = apa102); the HATs have 3.", min=1, max=64)
    spi_bus: int = setting(
        0, "SPI bus of the strip (kind = apa102); gpiozero drives hardware SPI on bus 0 (GPIO10/11).",
        min=0, max=6,
    )
    spi_device: int = setting(
        1,
        "Chip select of the strip: 1 is /dev/spidev0.1 (GPIO7), which Seeed's ReSpeaker examples "
        "open; 0 is /dev/spidev0.0 (GPIO8). APA102s ignore it, but gpiozero's SPI drives that pin.",
        min=0, max=1,
    )
    data_pin: int = setting(
        -1, "BCM pin of the strip's data line for software SPI (5 on the Voice Bonnet); -1 = hardware SPI.",
        min=-1, max=MAX_BCM_PIN,
    )
    clock_pin: int = setting(
        -1, "BCM pin of the strip's clock line for software SPI (6 on the Voice Bonnet); -1 = hardware SPI.",
        min=-1, max=MAX_BCM_PIN,
    )
    colors: tuple[str, ...] = setting(
        (),
        'Colours instead of the defaults, as "state:RRGGBB" (kind = rgb or apa102), e.g. "listening:0040FF".',
        check=check_led_colour,
    )
    active_high: bool = setting(True, "The LED lights when the pin is high (false for common-anode wiring).")
    max_brightness: float = setting(1.0, "Cap for every pattern, 0-1 (e.g. 0.3 for a bedroom).", min=0.0, max=1.0)
    idle_brightness: float = setting(0.0, "Brightness while idle, 0 = off.", min=0.0, max=1.0)
    night: str = setting(
        "", 'Night mode: the LEDs dim daily in this window, like "22:00-07:00"; empty = never.',
        check=check_night,
    )
    night_brightness: float = setting(
        0.1, "Cap for every pattern while night mode is on (0 = LEDs off at night).", min=0.0, max=1.0
    )

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        if self.kind == "rgb" and len(self.rgb_pins) != 3:
            yield ("rgb_pins", "must list exactly three pins: red, green, blue")
        if self.kind == "per_state" and not self.state_pins:
            yield ("state_pins", 'must list at least one "state:pin" when leds.kind = per_state')
        if self.kind == "apa102":
            try:
                strip_pins(data_pin=self.data_pin, clock_pin=self.clock_pin, spi_bus=self.spi_bus,
                           spi_device=self.spi_device)
            except StripWiringError as exc:
                yield (exc.key, str(exc))
        repeated = repeated_colour(self.colors)
        if repeated is not None:
            yield ("colors", repeated)


@dataclass(frozen=True)
class ControlConfig:
    """The local control socket used by `appliance ctl`."""

    socket: str = setting(
        "",
        "Unix socket path (at most 107 bytes); empty means $RUNTIME_DIRECTORY/control.sock "
        "(systemd), else $XDG_RUNTIME_DIR/appliance/control.sock, else a private "
        "/tmp/appliance-UID/appliance/control.sock.",
        check=check_socket_path,
        secret=False,
    )


@dataclass(frozen=True)
class PrivacyConfig:
    """What the appliance may write to its logs."""

    log_transcripts: bool = setting(False, "Log what was said and answered (off: only lengths and timings).")


@dataclass(frozen=True)
class ToolsConfig:
    """Functions the model may call on the device."""

    enabled: tuple[str, ...] = setting(TOOL_NAMES, "Tools declared to the model.", check=check_tool_name)
    google_search: bool = setting(
        False, "Also offer Google Search, where the model allows it beside our functions."
    )
    time_zone: str = setting(
        "", "IANA time zone for get_time and timers, e.g. Europe/Berlin; empty = the system's.",
        check=check_time_zone,
    )


@dataclass(frozen=True)
class TimersConfig:
    """Kitchen timers, kept on the device."""

    #: The quietest an alarm ever rings, on the audio.volume scale (not a setting: no annotation).
    ALARM_VOLUME_FLOOR = 60

    ring_max_s: float = setting(600.0, "A ringing timer stops by itself after this long.", min=5, max=3600)
    ring_interval_s: float = setting(2.0, "Seconds between alarm sounds while ringing.", min=0.5, max=30)
    alarm_volume: int = setting(
        85,
        "How loud a finished timer rings, 0-100 on the audio.volume scale but apart from it: turning the "
        f"voice down (ctl volume) leaves the alarm as loud. Never below {ALARM_VOLUME_FLOOR}: a lower value "
        f"rings at {ALARM_VOLUME_FLOOR}. The first rings of an alarm are softer, rising to it.",
        min=0, max=100,
    )
    max_timers: int = setting(20, "Most timers at once.", min=1, max=200)
    max_duration_h: float = setting(24.0, "Longest timer, in hours.", min=0.1, max=168)

    @property
    def alarm_level(self) -> int:
        """The level the alarm rings at: alarm_volume, raised to the floor."""
        return max(int(self.alarm_volume), self.ALARM_VOLUME_FLOOR)


@dataclass(frozen=True)
class StateConfig:
    """Where the appliance keeps what must survive a restart (volume, timers)."""

    dir: str = setting(
        "",
        "State directory; empty means $STATE_DIRECTORY (systemd), else ~/.local/state/appliance.",
        check=check_path,
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
    #: `[mcp]` and its `[[mcp.servers]]`, read whole by `appliance.mcp.config` (no per-key specs)
    mcp: McpSettings = field(default_factory=McpSettings)
    source: str = "defaults"
    # "section.key" -> where the value came from, for keys not left at their default.
    origins: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), compare=False, repr=False
    )
