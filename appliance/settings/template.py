"""The commented TOML file `appliance config-template` prints: every setting at its default.

Written from the schema's own declarations (help text, constraints, environment name),
so a new setting appears in the template without anyone editing it.
"""

from __future__ import annotations

import textwrap
from typing import Any

from appliance.mcp.config import TIMINGS as MCP_TIMINGS
from appliance.settings.fields import ENV_PREFIX, MCP_SECTION, Spec, bound, sections
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
    lines.extend(_mcp_block(defaults))
    return "\n".join(lines) + "\n"


#: what each `[mcp]` timing is for (its range and default are `appliance.mcp.config`'s)
_MCP_HELP = {
    "call_timeout_s": "Seconds one tool call may take before the model is told the server did not answer.",
    "non_blocking_timeout_s": "The same for a tool in a server's non_blocking list: the model talks on "
                              "while it runs, so it may take longer.",
    "list_timeout_s": "Seconds to connect to a server and list its tools (a server started by command "
                      "gets extra time to start).",
    "retry_s": "Seconds between checks of a server that is up, and between tries of one that is down.",
}

#: a server entry, as the owner of a Home Assistant box would write it (comments with "# ",
#: so that uncommenting every "#key = value" line still loads the defaults)
_MCP_EXAMPLE = (
    "Tools from MCP servers, offered to the model beside the device's own (needs",
    "pip install 'appliance[home]'). One [[mcp.servers]] table per server; url for a server on",
    "the network (plain http:// only to this machine or the local network), or command (and",
    "args) for one the appliance starts. include/exclude are patterns over tool names;",
    "non_blocking names the slow ones, which the model does not wait for (it says so, and",
    "tells the result when it comes; on models with synchronous calls only, it waits anyway).",
    "Home Assistant: add the \"Model Context Protocol Server\" integration, expose the",
    "entities to Assist, make a long-lived access token (your profile, Security tab) and put",
    "it alone in a file only the appliance can read (chmod 600). Servers are set here only,",
    "not by environment or --set; a change takes a restart.",
    "[[mcp.servers]]",
    'name = "home"',
    'url = "http://homeassistant.local:8123/api/mcp"',
    'token_file = "/etc/appliance/home-token"',
    'include = ["Hass*", "GetLiveContext"]',
    'exclude = ["HassCancelAllTimers"]',
    'non_blocking = ["*_routine"]',
)


def _mcp_block(defaults: Config) -> list[str]:
    intro, example = _MCP_EXAMPLE[:10], _MCP_EXAMPLE[10:]
    lines = ["", *(f"# {line}" for line in intro), f"[{MCP_SECTION}]"]
    for key, (low, high) in MCP_TIMINGS.items():
        lines.append("")
        env = f"{ENV_PREFIX}{MCP_SECTION}_{key}".upper()
        for text in (_MCP_HELP[key], f"(range {bound(low)}..{bound(high)}; env {env})"):
            lines.extend(textwrap.wrap(text, width=88, initial_indent="# ", subsequent_indent="# "))
        lines.append(f"#{key} = {_toml_value(getattr(defaults.mcp, key))}")
    lines.append("")
    lines.extend(f"# {line}" for line in example)
    return lines
