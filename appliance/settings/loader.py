"""Load the configuration in layers, each checked as it is applied.

Precedence, lowest first: dataclass defaults < TOML file < environment
(``APPLIANCE_<SECTION>_<KEY>``) < command line (``--set section.key=value``).
Every layer is checked as it is applied, so a bad value is reported with the
place it came from even if a later layer overrides it, and an unknown section
or key is answered with "did you mean ...".  Which file, and how it is read (a
regular file of at most `CONFIG_MAX_BYTES`), is `paths`' (`ctl` reads it too).

What the settings are is `schema`'s; how a raw value becomes one is `fields`'.

`collect_config` walks every layer to the end and returns every problem it met (what
`appliance config check` lists); `load_config` is that same walk, refusing with the first
problem, so the daemon and the check cannot disagree about what is wrong.

`[mcp]` has no specs: the file's table goes whole to `parse_mcp_table`, whose problems
join the others.  The environment and `--set` can change its timings (each checked by
the same function) but not `mcp.servers`, a list of tables that only the file can hold.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.mcp.config import SETTINGS_KEYS as MCP_KEYS
from appliance.mcp.config import TIMINGS as MCP_TIMINGS
from appliance.mcp.config import McpSettings, parse_mcp_table
from appliance.settings.display import closest, name_looks_secret, show
from appliance.settings.errors import ConfigError
from appliance.settings.fields import (
    ENV_PREFIX,
    MCP_SECTION,
    Spec,
    constraint_problem,
    convert_text,
    convert_typed,
    sections,
)
from appliance.settings.paths import ENV_CONFIG_PATH, find_config_path, parse_config_text, read_config_text
from appliance.settings.schema import Config
from appliance.settings.secrets import API_KEY_ENV, CREDENTIAL_NAME
from appliance.settings.validate import config_warnings, pin_clashes
from appliance.textsafe import escape_controls

__all__ = ["Collected", "collect_config", "load_config", "origin_label"]

_ENV_NOT_SETTINGS = frozenset({ENV_CONFIG_PATH})
# How each layer names itself in messages and in `Config.origins`.
_FILE_ORIGIN = "in "
_ENV_ORIGIN = "from environment variable "
_SET_ORIGIN = "from --set"
#: a section or key name from a file or the environment is cut to this in a message
_MAX_SHOWN_NAME = 60


# --------------------------------------------------------------------------- layers


@dataclass
class _Layers:
    """Effective raw values per section, where each came from, and what was wrong on the way."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: "section.key" whose latest value was refused (its default stands in for it)
    bad: set[str] = field(default_factory=set)
    #: `[mcp]` as the layers so far make it (it has no per-key specs)
    mcp: McpSettings = field(default_factory=McpSettings)

    def refuse(self, message: str, key: str = "") -> None:
        self.problems.append(" ".join(message.splitlines()))
        if key:
            self.bad.add(key)

    def apply(self, spec: Spec, value: Any, origin: str) -> None:
        value, problem = constraint_problem(spec, value)
        if problem:
            self.refuse(_invalid(spec, value, origin, problem), spec.dotted)
            return
        self.values.setdefault(spec.section, {})[spec.name] = value
        self.origins[spec.dotted] = origin
        self.bad.discard(spec.dotted)


def _invalid(spec: Spec, value: Any, origin: str, problem: str) -> str:
    return f"invalid {spec.dotted} = {show(value, hidden=spec.secret)} {origin}: {problem}"


def _name(text: str) -> str:
    """A section or key name from a file or the environment, escaped and short enough for one line."""
    text = escape_controls(text)
    return text if len(text) <= _MAX_SHOWN_NAME else text[: _MAX_SHOWN_NAME - 3] + "..."


def _section_names() -> list[str]:
    return [*sections(), MCP_SECTION]


def _section_specs(layers: _Layers, section: str, origin: str) -> dict[str, Spec] | None:
    known = sections()
    if section in known:
        return known[section][1]
    names = _section_names()
    guess = closest(section, names)
    hint = f"did you mean [{guess}]?" if guess else f"known sections: {', '.join(names)}"
    layers.refuse(f"unknown section [{_name(section)}] {origin}; {hint}")
    return None


def _spec(layers: _Layers, section: str, key: str, origin: str, *, as_env: bool = False) -> Spec | None:
    specs = _section_specs(layers, section, origin)
    if specs is None:
        return None
    if key in specs:
        return specs[key]
    guess = closest(key, list(specs))
    if guess:
        hint = f"did you mean {specs[guess].env_name if as_env else f'{section}.{guess}'}?"
    else:
        hint = f"known keys in [{section}]: {', '.join(specs)}"
    if re.fullmatch(r"(gemini_)?(api_?)?(key|token)", key.lower()):
        hint = (
            f"the API key never goes in the config: use {API_KEY_ENV}, the systemd credential "
            f"{CREDENTIAL_NAME}, or a mode-600 file named by live.api_key_file"
        )
    layers.refuse(f"unknown key {section}.{_name(key)} {origin}; {hint}")
    return None


def _apply_raw(layers: _Layers, spec: Spec, raw: Any, origin: str, convert: Callable[[Spec, Any], Any]) -> None:
    try:
        value = convert(spec, raw)
    except ValueError as exc:
        layers.refuse(_invalid(spec, raw, origin, str(exc)), spec.dotted)
        return
    layers.apply(spec, value, origin)


def _apply_file(layers: _Layers, path: Path) -> None:
    origin = f"{_FILE_ORIGIN}{path}"
    try:
        document = parse_config_text(path, read_config_text(path))
    except ConfigError as exc:  # unreadable or not TOML: nothing in it can be checked
        layers.refuse(str(exc))
        return
    for section, table in document.items():
        if section == MCP_SECTION:
            _apply_mcp_file(layers, table, origin)
            continue
        if not isinstance(table, dict):
            layers.refuse(_outside_section(section, origin))
            continue
        if _section_specs(layers, section, origin) is None:
            continue
        for key, raw in table.items():
            spec = _spec(layers, section, key, origin)
            if spec is not None:
                _apply_raw(layers, spec, raw, origin, convert_typed)


def _apply_mcp_file(layers: _Layers, table: Any, origin: str) -> None:
    """The file's `[mcp]` and `[[mcp.servers]]`, through the one parser they have."""
    problems: list[str] = []
    layers.mcp = parse_mcp_table(table, problems)
    for problem in problems:
        layers.refuse(f"{problem} ({origin})")
    if isinstance(table, dict):
        for key in MCP_KEYS:
            if key in table:
                layers.origins[f"{MCP_SECTION}.{key}"] = origin


def _apply_mcp_text(layers: _Layers, key: str, raw: str, origin: str, *, as_env: bool) -> None:
    """One `[mcp]` timing from the environment or `--set`; `mcp.servers` only from the file."""
    dotted = f"{MCP_SECTION}.{key}"
    if key == "servers":
        layers.refuse(f"{dotted} {origin} cannot be set there: servers are [[mcp.servers]] tables, "
                      "so they go in the config file (see `appliance config template`)", dotted)
        return
    if key not in MCP_TIMINGS:
        guess = closest(key, list(MCP_TIMINGS))
        if guess:
            meant = f"{ENV_PREFIX}{MCP_SECTION}_{guess}".upper() if as_env else f"{MCP_SECTION}.{guess}"
            hint = f"did you mean {meant}?"
        else:
            hint = f"known keys in [{MCP_SECTION}]: {', '.join(MCP_KEYS)}"
        layers.refuse(f"unknown key {MCP_SECTION}.{_name(key)} {origin}; {hint}")
        return
    value: Any = raw
    try:
        value = float(raw)
    except ValueError:
        pass  # the parser says what a number of seconds looks like
    problems: list[str] = []
    parsed = parse_mcp_table({key: value}, problems)
    if problems:
        layers.refuse(f"{problems[0]} ({origin})", dotted)
        return
    layers.mcp = dataclasses.replace(layers.mcp, **{key: getattr(parsed, key)})
    layers.origins[dotted] = origin
    layers.bad.discard(dotted)


def _outside_section(key: str, origin: str) -> str:
    owners = [s for s, (_, specs) in sections().items() if key in specs]
    owners += [MCP_SECTION] if key in MCP_KEYS else []
    if owners:
        hint = f"move it under [{owners[0]}] (did you mean {owners[0]}.{key}?)"
    else:
        hint = f"settings belong in a section: {', '.join(f'[{s}]' for s in _section_names())}"
    return f"key {_name(key)} {origin} is outside any section; {hint}"


def _split_env_name(name: str) -> tuple[str, str]:
    rest = name[len(ENV_PREFIX) :].lower()
    matching = [s for s in _section_names() if rest.startswith(s + "_")]
    if not matching:
        return rest.split("_", 1)[0], ""
    section = max(matching, key=len)
    return section, rest[len(section) + 1 :]


def _apply_env(layers: _Layers, env: Mapping[str, str]) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in _ENV_NOT_SETTINGS:
            continue
        origin = f"{_ENV_ORIGIN}{escape_controls(name)}"
        section, key = _split_env_name(name)
        if section == MCP_SECTION:
            _apply_mcp_text(layers, key, env[name], origin, as_env=True)
            continue
        spec = _spec(layers, section, key, origin, as_env=True)
        if spec is not None:
            _apply_raw(layers, spec, env[name], origin, convert_text)


def _apply_overrides(layers: _Layers, overrides: Sequence[str]) -> None:
    for item in overrides:
        name, sep, raw = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            shown = show(item, hidden=name_looks_secret(item))
            layers.refuse(f"--set expects section.key=value, like live.model=NAME (got {shown})")
            continue
        if section == MCP_SECTION:
            _apply_mcp_text(layers, key, raw, _SET_ORIGIN, as_env=False)
            continue
        spec = _spec(layers, section, key, _SET_ORIGIN)
        if spec is not None:
            _apply_raw(layers, spec, raw, _SET_ORIGIN, convert_text)


def _build_sections(layers: _Layers) -> dict[str, Any]:
    """Each section from its checked values, and the problems of the rules across its keys.

    A rule that involves a key whose value was refused is skipped: it would judge the
    default standing in for that value, not what the owner wrote.
    """
    built: dict[str, Any] = {}
    for section, (section_type, specs) in sections().items():
        instance = section_type(**layers.values.get(section, {}))
        cross_checks = getattr(instance, "cross_checks", None)
        for key, problem in cross_checks() if cross_checks else ():
            involved = {f"{section}.{key}", *_mentioned_keys(section, problem)}
            if involved & layers.bad:
                continue
            spec = specs[key]
            origin = layers.origins.get(spec.dotted, "(default)")
            message = _invalid(spec, getattr(instance, key), origin, problem)
            layers.refuse(message + _related_origins(section, key, problem, layers), spec.dotted)
        built[section] = instance
    return built


def _mentioned_keys(section: str, problem: str) -> list[str]:
    """The "section.key" names a cross-key problem mentions, in order."""
    found = re.findall(rf"\b{re.escape(section)}\.(\w+)", problem)
    return list(dict.fromkeys(f"{section}.{key}" for key in found))


def _related_origins(section: str, key: str, problem: str, layers: _Layers) -> str:
    """Say where the other keys a cross-key problem mentions were set."""
    notes = [
        f"{dotted} was set {layers.origins[dotted]}"
        for dotted in _mentioned_keys(section, problem)
        if dotted != f"{section}.{key}" and dotted in layers.origins
    ]
    return f" ({'; '.join(notes)})" if notes else ""


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Collected:
    """What walking every layer found."""

    #: the configuration, or None when anything was refused (the daemon would not start)
    config: Config | None
    #: every refusal in the order met (the file's, the environment's, --set's, then the
    #: rules across keys); `load_config` raises the first
    problems: tuple[str, ...]
    #: pins given to two things across sections; loading allows them, GPIO later does not
    clashes: tuple[str, ...]
    #: what is allowed but may not work (a model this version does not know)
    warnings: tuple[str, ...]
    #: the config file read, or None when there is none (or the one named is unusable)
    path: Path | None


def collect_config(
    cli_path: str | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    overrides: Sequence[str] = (),
) -> Collected:
    """Apply defaults < file < environment < `--set`, going on past each problem to find them all."""
    layers = _Layers()
    path: Path | None = None
    try:
        path = find_config_path(cli_path, env)
    except ConfigError as exc:
        layers.refuse(str(exc))
    if path is not None:
        _apply_file(layers, path)
    _apply_env(layers, env)
    _apply_overrides(layers, overrides)
    whole = Config(
        **_build_sections(layers),
        mcp=layers.mcp,
        source=str(path) if path is not None else "defaults",
        origins=types.MappingProxyType(dict(layers.origins)),
    )
    pins_refused = any(key.startswith(("button.", "leds.")) for key in layers.bad)
    return Collected(
        config=None if layers.problems else whole,
        problems=tuple(layers.problems),
        clashes=() if pins_refused else tuple(pin_clashes(whole)),
        warnings=() if "live.model" in layers.bad else tuple(config_warnings(whole)),
        path=path,
    )


def load_config(
    cli_path: str | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    overrides: Sequence[str] = (),
) -> Config:
    """Build the configuration: defaults < file < environment < `--set` overrides.

    Raises ConfigError with the first problem `collect_config` finds.
    """
    collected = collect_config(cli_path, env=env, overrides=overrides)
    if collected.config is None:
        raise ConfigError(collected.problems[0])
    return collected.config


def origin_label(origin: str | None) -> str:
    """Where a value came from, as `appliance config show` says it: default, file PATH,
    environment NAME or --set (`origin` is a `Config.origins` value, None for a default)."""
    if origin is None:
        return "default"
    for prefix, label in ((_FILE_ORIGIN, "file "), (_ENV_ORIGIN, "environment "), (_SET_ORIGIN, "--set")):
        if origin.startswith(prefix):
            return label + origin[len(prefix):]
    return origin
