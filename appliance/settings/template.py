"""The commented TOML file `appliance config-template` prints: every setting at its default.

Written from the schema's own declarations (help text, constraints, environment name),
so a new setting appears in the template without anyone editing it.
"""

from __future__ import annotations

import textwrap
from typing import Any

from appliance.settings.fields import ENV_PREFIX, Spec, bound, sections
from appliance.settings.schema import Config
from appliance.settings.secrets import API_KEY_ENV, CREDENTIAL_NAME

__all__ = ["config_template"]


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


def _constraint_note(spec: Spec) -> str:
    meta = spec.meta
    notes = []
    if meta.get("choices"):
        notes.append("one of: " + ", ".join(meta["choices"]))
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        notes.append(f"range {bound(low)}..{bound(high)}")
    elif low is not None:
        notes.append(f"at least {bound(low)}")
    elif high is not None:
        notes.append(f"at most {bound(high)}")
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
    for section, (section_type, specs) in sections().items():
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
