"""What each setting is, read from the schema's dataclasses, and how a raw value becomes one.

`sections()` derives a `Spec` per field from `schema.Config` (its type and the constraints
`setting()` put in the metadata).  The loader, the template and `validate` all work from
these specs, so a new field in the schema needs no code anywhere else.  Values arrive
typed from TOML (`convert_typed`) or as text from the environment and `--set`
(`convert_text`); `constraint_problem` then applies the declared constraints.

`[mcp]` is the one section without specs: its `[[mcp.servers]]` are tables, which no
per-key spec describes, so `appliance.mcp.config` reads it whole and `sections()` leaves
it out; `setting_names()` lists every setting, its keys included.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from appliance.mcp.config import SETTINGS_KEYS as MCP_KEYS
from appliance.settings.display import closest, name_looks_secret, show
from appliance.settings.schema import Config

__all__ = [
    "ENV_PREFIX",
    "MCP_SECTION",
    "Spec",
    "bound",
    "constraint_problem",
    "convert_text",
    "convert_typed",
    "sections",
    "setting_names",
]

#: environment variables APPLIANCE_<SECTION>_<KEY> set a setting
ENV_PREFIX = "APPLIANCE_"
#: the `Config` field (and TOML table) that `appliance.mcp.config.parse_mcp_table` reads whole
MCP_SECTION = "mcp"

_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})
_SCALARS = (str, bool, int, float)
_KIND_WORDS = {str: "a string", bool: "true or false", int: "a whole number", float: "a number"}
_PLURAL_WORDS = {str: "strings", int: "whole numbers", float: "numbers"}
#: past this many choices a "did you mean" comes before the list, which would bury it
_LONG_CHOICES = 10


@dataclass(frozen=True)
class Spec:
    """One setting: where it lives, its type and the constraints `setting()` declared."""

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
        return name_looks_secret(self.name) if declared is None else bool(declared)


def _field_kind(owner: type, name: str, hint: Any) -> tuple[type, bool]:
    if hint in _SCALARS:
        return hint, False
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and args[0] in (str, int, float):
            return args[0], True
    raise TypeError(f"{owner.__name__}.{name}: unsupported config field type {hint!r}")


@cache
def sections() -> dict[str, tuple[type, dict[str, Spec]]]:
    """Section name -> (dataclass, key -> spec), derived from `Config`."""
    result: dict[str, tuple[type, dict[str, Spec]]] = {}
    for section, section_type in typing.get_type_hints(Config).items():
        if section == MCP_SECTION or not dataclasses.is_dataclass(section_type):
            continue
        hints = typing.get_type_hints(section_type)
        specs = {}
        for f in dataclasses.fields(section_type):
            kind, is_tuple = _field_kind(section_type, f.name, hints[f.name])
            specs[f.name] = Spec(section, f.name, kind, is_tuple, f.metadata)
        result[section] = (section_type, specs)
    return result


def setting_names() -> tuple[str, ...]:
    """Every setting as "section.key", `[mcp]`'s too; each is `getattr(getattr(cfg, section), key)`."""
    named = [spec.dotted for _type, specs in sections().values() for spec in specs.values()]
    return (*named, *(f"{MCP_SECTION}.{key}" for key in MCP_KEYS))


def bound(number: float) -> str:
    """A min/max as a person writes it: 120, 0.5, 1048576 (not 1.04858e+06)."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


# --------------------------------------------------------------------------- conversion


def convert_typed(spec: Spec, raw: Any) -> Any:
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


def convert_text(spec: Spec, raw: str) -> Any:
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


# --------------------------------------------------------------------------- constraints


def constraint_problem(spec: Spec, value: Any) -> tuple[Any, str | None]:
    """Return (canonical value, problem or None) after the declared constraints."""
    if spec.is_tuple:
        checked = []
        for item in value:
            item, problem = _scalar_constraint_problem(spec, item)
            if problem:
                return value, f"item {show(item, hidden=spec.secret)} {problem}"
            checked.append(item)
        return tuple(checked), None
    return _scalar_constraint_problem(spec, value)


def _scalar_constraint_problem(spec: Spec, value: Any) -> tuple[Any, str | None]:
    meta = spec.meta
    choices: tuple[str, ...] = meta.get("choices") or ()
    if choices:
        canonical = {c.lower(): c for c in choices}.get(str(value).lower())
        if canonical is None:
            retired = {k.lower(): v for k, v in (meta.get("retired") or {}).items()}
            guess = closest(str(value), choices)
            if str(value).lower() in retired and not spec.secret:
                hint = f"; {retired[str(value).lower()]}"
            else:
                hint = f"; did you mean {guess}?" if guess and not spec.secret else ""
            if hint and len(choices) > _LONG_CHOICES:  # the guess first, before a long list
                return value, f"is not one of the {len(choices)} choices{hint} They are: {', '.join(choices)}"
            return value, f"must be one of: {', '.join(choices)}{hint}"
        value = canonical
    low, high = meta.get("min"), meta.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            return value, f"must be between {bound(low)} and {bound(high)}"
        if low is not None:
            return value, f"must be at least {bound(low)}"
        return value, f"must be at most {bound(high)}"
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
