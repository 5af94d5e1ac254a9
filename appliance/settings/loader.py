"""Load the configuration in layers, each checked as it is applied.

Precedence, lowest first: dataclass defaults < TOML file < environment
(``APPLIANCE_<SECTION>_<KEY>``) < command line (``--set section.key=value``).
Every layer is checked as it is applied, so a bad value is reported with the
place it came from even if a later layer overrides it, and an unknown section
or key is answered with "did you mean ...".  The config file itself is read
only when it is a regular file of at most `CONFIG_MAX_BYTES`.

What the settings are is `schema`'s; how a raw value becomes one is `fields`'.
"""

from __future__ import annotations

import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.atomicfile import FileRefused, read_regular_file
from appliance.settings.checks import check_path
from appliance.settings.display import name_looks_secret, show
from appliance.settings.fields import (
    ENV_PREFIX,
    Spec,
    closest,
    constraint_problem,
    convert_text,
    convert_typed,
    sections,
)
from appliance.settings.schema import Config, ConfigError
from appliance.settings.secrets import API_KEY_ENV, CREDENTIAL_NAME

__all__ = [
    "CONFIG_MAX_BYTES",
    "DEFAULT_CONFIG_PATH",
    "ENV_CONFIG_PATH",
    "find_config_path",
    "load_config",
]

DEFAULT_CONFIG_PATH = "/etc/appliance/config.toml"
ENV_CONFIG_PATH = "APPLIANCE_CONFIG"
_ENV_NOT_SETTINGS = frozenset({ENV_CONFIG_PATH})

#: the config file is read only up to this size (a real one is a few KiB)
CONFIG_MAX_BYTES = 256 * 1024


# --------------------------------------------------------------------------- layers


@dataclass
class _Layers:
    """Effective raw values per section and where each came from."""

    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def apply(self, spec: Spec, value: Any, origin: str) -> None:
        value, problem = constraint_problem(spec, value)
        if problem:
            raise ConfigError(_invalid(spec, value, origin, problem))
        self.values.setdefault(spec.section, {})[spec.name] = value
        self.origins[spec.dotted] = origin


def _invalid(spec: Spec, value: Any, origin: str, problem: str) -> str:
    return f"invalid {spec.dotted} = {show(value, hidden=spec.secret)} {origin}: {problem}"


def _lookup_section(section: str, origin: str) -> dict[str, Spec]:
    known = sections()
    if section in known:
        return known[section][1]
    guess = closest(section, list(known))
    hint = f"did you mean [{guess}]?" if guess else f"known sections: {', '.join(known)}"
    raise ConfigError(f"unknown section [{section}] {origin}; {hint}")


def _lookup_key(section: str, key: str, origin: str, *, as_env: bool = False) -> Spec:
    specs = _lookup_section(section, origin)
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
                value = convert_typed(spec, raw)
            except ValueError as exc:
                raise ConfigError(_invalid(spec, raw, origin, str(exc))) from None
            layers.apply(spec, value, origin)


def _reject_top_level_key(key: str, origin: str) -> typing.NoReturn:
    owners = [s for s, (_, specs) in sections().items() if key in specs]
    if owners:
        hint = f"move it under [{owners[0]}] (did you mean {owners[0]}.{key}?)"
    else:
        hint = f"settings belong in a section: {', '.join(f'[{s}]' for s in sections())}"
    raise ConfigError(f"key {key} {origin} is outside any section; {hint}")


def _split_env_name(name: str) -> tuple[str, str]:
    rest = name[len(ENV_PREFIX) :].lower()
    matching = [s for s in sections() if rest.startswith(s + "_")]
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
            value = convert_text(spec, raw)
        except ValueError as exc:
            raise ConfigError(_invalid(spec, raw, origin, str(exc))) from None
        layers.apply(spec, value, origin)


def _apply_overrides(layers: _Layers, overrides: Sequence[str]) -> None:
    origin = "from --set"
    for item in overrides:
        name, sep, raw = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            shown = show(item, hidden=name_looks_secret(item))
            raise ConfigError(f"--set expects section.key=value, like live.model=NAME (got {shown})")
        spec = _lookup_key(section, key, origin)
        try:
            value = convert_text(spec, raw)
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
    problem = check_path(text)
    if problem:
        raise ConfigError(f"config file {show(text, hidden=False)} (named by {named_by}) {problem}")
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
    for section, (section_type, specs) in sections().items():
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
