"""`appliance config show | check | template`: the settings, readable over SSH.

`check` exists for a config with mistakes, so it does not load the config as the other
commands do: it walks every layer with `collect_config` and lists all it finds at once.
`show` refuses a broken config with the daemon's own one-line error.  The rules are the
settings package's; this module only prints what they say.  Every line is escaped on the
way out, since values, key names and paths come from a file or the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from appliance.mcp.config import TIMINGS as MCP_TIMINGS
from appliance.mcp.config import McpServer
from appliance.settings.display import looks_like_credential, show
from appliance.settings.errors import ConfigError
from appliance.settings.fields import MCP_SECTION, Spec, sections
from appliance.settings.keys import api_key_source, load_api_key
from appliance.settings.loader import collect_config, load_config, origin_label
from appliance.settings import paths
from appliance.settings.schema import Config
from appliance.settings.secrets import API_KEY_ENV, CREDENTIAL_NAME
from appliance.settings.template import config_template
from appliance.settings.validate import config_warnings, pin_clashes
from appliance.textsafe import escape_controls

__all__ = ["check_command", "config_command", "show_command"]

#: what `show` adds to the daemon's refusal
FULL_LIST_HINT = "run `appliance config check` for the full list"


def config_command(args: argparse.Namespace, *, env: Mapping[str, str] = os.environ) -> int:
    """Run `appliance config ACTION`; returns the exit code."""
    if args.config_action == "template":
        sys.stdout.write(config_template())
        return 0
    if args.config_action == "check":
        path = args.file if args.file is not None else args.config
        return check_command(path, args.overrides, env=env)
    return show_command(args.config, args.overrides, env=env)


def _say(stream: TextIO, text: str) -> None:
    stream.write(escape_controls(text) + "\n")


def _count(number: int, word: str) -> str:
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def _where(path: Path | None) -> str:
    """The file read, for a clean check or `show`'s heading (a named file that is missing is a mistake)."""
    if path is not None:
        return f"config file {path}"
    return f"no config file ({paths.DEFAULT_CONFIG_PATH} does not exist and none is named)"


# --------------------------------------------------------------------------- check


def check_command(
    cli_path: str | None,
    overrides: Sequence[str] = (),
    *,
    env: Mapping[str, str] = os.environ,
    out: TextIO | None = None,
) -> int:
    """Every mistake, one line each, then a summary; 0 when there is none, else 1."""
    out = out or sys.stdout
    collected = collect_config(cli_path, env=env, overrides=overrides)
    mistakes = [*collected.problems, *collected.clashes]
    for line in mistakes:
        _say(out, line)
    for line in collected.warnings:
        _say(out, f"warning: {line}")
    if mistakes:
        read = f" (config file {collected.path})" if collected.path is not None else ""
        _say(out, f"{_count(len(mistakes), 'mistake')}{read}")
        return 1
    warned = f" ({_count(len(collected.warnings), 'warning')})" if collected.warnings else ""
    _say(out, f"no mistakes: {_where(collected.path)}{warned}")
    return 0


# --------------------------------------------------------------------------- show


def show_command(
    cli_path: str | None,
    overrides: Sequence[str] = (),
    *,
    env: Mapping[str, str] = os.environ,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Every effective setting as `section.key = value  (origin)`; 2 when the config is refused."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        cfg = load_config(cli_path, env=env, overrides=overrides)
    except ConfigError as exc:
        _say(err, f"appliance: {exc}; {FULL_LIST_HINT}")
        return 2
    _say(out, f"# {_where(None if cfg.source == 'defaults' else Path(cfg.source))}")
    for section, (_section_type, specs) in sections().items():
        _say(out, "")
        instance = getattr(cfg, section)
        for name, spec in specs.items():
            _say(out, _setting_line(spec, getattr(instance, name), cfg))
        if section == "live":
            _say(out, _api_key_line(cfg, env))
    _say(out, "")
    for line in _mcp_lines(cfg):
        _say(out, line)
    notes = [*pin_clashes(cfg), *config_warnings(cfg)]
    if notes:
        _say(out, "")
    for note in notes:
        _say(out, f"# warning: {note}")
    return 0


def _setting_line(spec: Spec, value: Any, cfg: Config) -> str:
    if spec.secret:
        shown = "set (hidden)" if value not in ("", ()) else "not set"
    else:
        shown = show(value, hidden=False, limit=None)
    return f"{spec.dotted} = {shown}  ({origin_label(cfg.origins.get(spec.dotted))})"


def _mcp_lines(cfg: Config) -> list[str]:
    """`[mcp]`: the timings, then one line per server (its token file's path, never the token)."""
    def origin(key: str) -> str:
        return origin_label(cfg.origins.get(f"{MCP_SECTION}.{key}"))

    lines = [f"{MCP_SECTION}.{key} = {show(getattr(cfg.mcp, key), hidden=False)}  ({origin(key)})"
             for key in MCP_TIMINGS]
    if not cfg.mcp.servers:
        return [*lines, f"{MCP_SECTION}.servers = none  ({origin('servers')})"]
    for index, server in enumerate(cfg.mcp.servers):
        lines.append(f"{MCP_SECTION}.servers[{index}] = {_server_text(server)}  ({origin('servers')})")
    return lines


def _server_text(server: McpServer) -> str:
    parts = [f"name {show(server.name, hidden=False)}"]
    if server.url:
        parts.append(f"url {show(server.url, hidden=looks_like_credential(server.url), limit=None)}")
        parts.append(f"token_file {show(server.token_file, hidden=False, limit=None)}" if server.token_file
                     else "no token_file")
    else:
        parts.append(f"command {show(server.command, hidden=False, limit=None)}")
        if server.args:
            parts.append(f"args {show(list(server.args), hidden=False, limit=None)}")
    for key in ("include", "exclude"):
        patterns = getattr(server, key)
        if patterns:
            parts.append(f"{key} {show(list(patterns), hidden=False, limit=None)}")
    return ", ".join(parts)


def _api_key_line(cfg: Config, env: Mapping[str, str]) -> str:
    """The API key is not a setting, but where it comes from is: never the key itself."""
    source = api_key_source(cfg, env=env)
    if source is None:
        return (
            f"api key = not set  (no {API_KEY_ENV} and no systemd credential {CREDENTIAL_NAME} here, "
            "live.api_key_file empty; systemd hands the service its credential itself)"
        )
    warnings: list[str] = []
    try:
        load_api_key(cfg, env=env, warn=warnings.append)
    except ConfigError as exc:
        return f"api key = not usable  ({exc})"
    return f"api key = set (hidden)  ({'; '.join([source, *warnings])})"
