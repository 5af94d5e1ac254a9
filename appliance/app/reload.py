"""What a reloaded config changes, and when each change may take effect (`systemctl reload`).

The one place that says, for every setting, how a running appliance takes a new value:

- LIVE: at once (LED patterns and night window, the timers' alarm, the log level, earcons, the
  VAD and post-roll for the next turn, whether transcripts are logged, the tools' time zone);
- NEW_SESSION: in a new conversation, started at the next idle moment, because the Live API
  takes them only in `setup` (model, voice, language, instruction, tools);
- RESTART: only a restart applies them (devices and their formats, pins, the socket, the state
  directory, the endpoint and key, the MCP servers and their timings, and what the running parts
  read only when they are built);
- KEPT: a starting value the appliance then keeps itself (the volume, set by `ctl volume`).

`diff(old, new)` is pure: it returns a `Plan` with the changed keys by effect and the configs
that are in force now and after the new session.  The daemon applies it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from appliance.mcp.config import SETTINGS_KEYS as MCP_KEYS
from appliance.settings.fields import MCP_SECTION, setting_names
from appliance.settings.loader import load_config
from appliance.settings.schema import Config

__all__ = ["Effect", "Plan", "diff", "effect_of", "load_like"]


class Effect(str, enum.Enum):
    LIVE = "live"
    NEW_SESSION = "new session"
    RESTART = "restart"
    KEPT = "kept"


def _keys(section: str, *names: str) -> frozenset[str]:
    return frozenset(f"{section}.{name}" for name in names)


#: applied as soon as the file is read
LIVE_KEYS = (
    _keys("leds", "colors", "idle_brightness", "max_brightness", "night", "night_brightness")
    | _keys("timers", "ring_max_s", "ring_interval_s", "alarm_volume", "max_timers", "max_duration_h")
    | _keys("log", "level")
    | _keys("audio", "postroll_silence_ms", "postroll_max_ms", "earcons")
    | _keys("vad", "aggressiveness", "end_silence_ms", "max_turn_s", "no_speech_timeout_s")
    | _keys("privacy", "log_transcripts")
    | _keys("tools", "time_zone")
)
#: sent in `setup`: a new conversation at the next idle moment
NEW_SESSION_KEYS = (
    _keys("live", "model", "voice", "language", "system_instruction", "input_transcription",
          "output_transcription", "compression_trigger_tokens", "compression_target_tokens")
    | _keys("tools", "enabled", "google_search")
)
#: seeds a value the appliance keeps from then on
KEPT_KEYS = _keys("audio", "volume")
#: Only a restart applies these.  The session's timeouts and the microphone cleanup are read by
#: parts that take them only when built (LiveSession's options, Capture); they move to LIVE once
#: those parts can be told.
RESTART_KEYS = (
    _keys("live", "endpoint", "api_version", "auth", "api_key_file", "setup_timeout_s",
          "reply_timeout_s", "keepalive_interval_s", "keepalive_timeout_s")
    | _keys("audio", "input_device", "output_device", "input_channel", "input_rate", "input_channels",
            "input_format", "output_rate", "preroll_ms", "playback_start_ms", "noise_suppression", "auto_gain")
    | _keys("button", "enabled", "pin", "pull_up", "debounce_ms", "tap_max_ms", "long_hold_s", "mute_hold_s")
    | _keys("leds", "kind", "pin", "rgb_pins", "state_pins", "count", "spi_bus", "spi_device",
            "data_pin", "clock_pin", "active_high")
    | _keys("control", "socket")
    | _keys("state", "dir")
    # the MCP manager is built at start with its servers (one connection each) and timings; the
    # tools a running server offers change by themselves, declared at the next session
    | _keys(MCP_SECTION, *MCP_KEYS)
)

_BY_EFFECT = {
    Effect.LIVE: LIVE_KEYS,
    Effect.NEW_SESSION: NEW_SESSION_KEYS,
    Effect.KEPT: KEPT_KEYS,
    Effect.RESTART: RESTART_KEYS,
}


def effect_of(dotted: str) -> Effect:
    """How `section.key` takes a new value; a key nobody classified needs a restart (the safe side)."""
    for effect, keys in _BY_EFFECT.items():
        if dotted in keys:
            return effect
    return Effect.RESTART


@dataclass(frozen=True)
class Plan:
    """The changed keys of a reload by effect, and the configs they lead to."""

    live: tuple[str, ...]
    new_session: tuple[str, ...]
    restart: tuple[str, ...]
    kept: tuple[str, ...]
    #: in force at once: the old config with the new LIVE values
    now: Config
    #: in force once the new session starts: `now` with the new NEW_SESSION values
    later: Config

    @property
    def changed(self) -> bool:
        return bool(self.live or self.new_session or self.restart or self.kept)

    def touches(self, section: str, *names: str) -> bool:
        """Whether a LIVE change is in `section` (any key, or one of `names`)."""
        return any(key.partition(".")[0] == section and (not names or key.partition(".")[2] in names)
                   for key in self.live)

    def messages(self) -> list[str]:
        """One line per kind of change, for the log; key names only, never values."""
        if not self.changed:
            return ["config reloaded: nothing changed"]
        lines = []
        if self.live:
            lines.append(f"config reloaded: applied {', '.join(self.live)}")
        if self.new_session:
            lines.append(f"config reloaded: {', '.join(self.new_session)} changed; a new conversation "
                         "starts when the appliance is next idle")
        if self.kept:
            lines.append(f"config reloaded: {', '.join(self.kept)} is only where the appliance starts; "
                         "the level set with `appliance ctl volume` stays")
        if self.restart:
            lines.append(f"config reloaded: {', '.join(self.restart)} changed; restart the appliance to "
                         "apply (systemctl restart appliance)")
        return lines


def _changed_keys(old: Config, new: Config) -> list[str]:
    changed = []
    for dotted in setting_names():
        section, _, key = dotted.partition(".")
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key):
            changed.append(dotted)
    return changed


def _with(base: Config, source: Config, keys: Iterable[str]) -> Config:
    """`base` with the values of `keys` taken from `source`."""
    by_section: dict[str, dict[str, Any]] = {}
    for dotted in keys:
        section, _, key = dotted.partition(".")
        by_section.setdefault(section, {})[key] = getattr(getattr(source, section), key)
    replaced = {section: dataclasses.replace(getattr(base, section), **values)
                for section, values in by_section.items()}
    return dataclasses.replace(base, **replaced)


def diff(old: Config, new: Config) -> Plan:
    """What reloading `new` over the running `old` changes, and when."""
    changed = _changed_keys(old, new)
    by_effect = {effect: tuple(k for k in changed if effect_of(k) is effect) for effect in Effect}
    now = dataclasses.replace(_with(old, new, by_effect[Effect.LIVE]), source=new.source, origins=new.origins)
    return Plan(
        live=by_effect[Effect.LIVE],
        new_session=by_effect[Effect.NEW_SESSION],
        restart=by_effect[Effect.RESTART],
        kept=by_effect[Effect.KEPT],
        now=now,
        later=_with(now, new, by_effect[Effect.NEW_SESSION]),
    )


# --------------------------------------------------------------------------- reading it again


def _as_text(value: Any) -> str:
    """A value as `--set` takes it (the loader's convert_text reads it back unchanged)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(_as_text(item) for item in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _overrides_of(cfg: Config) -> list[str]:
    """The `--set` items `cfg` was built with, from the values the loader recorded as set there."""
    items = []
    for dotted, origin in cfg.origins.items():
        if origin == "from --set":
            section, _, key = dotted.partition(".")
            items.append(f"{dotted}={_as_text(getattr(getattr(cfg, section), key))}")
    return items


def load_like(cfg: Config) -> Callable[[], Config]:
    """Reads the config again as `cfg` was read: the same file, the environment, the same `--set`.

    A start without a file (`source` "defaults") looks for one again by the same rules.
    """
    path = None if cfg.source == "defaults" else cfg.source
    overrides = _overrides_of(cfg)
    return lambda: load_config(path, overrides=overrides)
