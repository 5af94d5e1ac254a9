"""The `[mcp]` table: which MCP servers to use, and how long to wait for them.

```toml
[mcp]
call_timeout_s = 10          # one tool call the model waits for
non_blocking_timeout_s = 120 # one call of a non_blocking tool (the model talks on meanwhile)
list_timeout_s = 5           # connecting and listing a server's tools
retry_s = 60                 # how often a server that is down is tried again

[[mcp.servers]]
name = "home"                # [a-z0-9_]; prefixes a tool's name when two servers share one
url = "http://homeassistant.local:8123/api/mcp"
token_file = "/etc/appliance/home-token"   # mode 600; sent as "Authorization: Bearer ..."
include = ["Hass*", "GetLiveContext"]      # fnmatch patterns over tool names (optional)
exclude = ["HassCancelAllTimers"]
non_blocking = ["script_*"]  # slow tools: the model talks on, and hears the result when it comes

[[mcp.servers]]
name = "notes"
command = "/usr/local/bin/notes-mcp"       # stdio: the appliance starts it
args = ["--db", "/var/lib/notes.db"]
```

Plain http:// carries the bearer token in clear, so it is allowed only to this machine and
to names and addresses of the local network (private and link-local addresses, `.local`,
`.lan`, `.home.arpa`, `.internal` and single-label names); anything else needs https://.
Standard library and the light settings helpers only: the settings loader imports this.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from appliance.netutil import is_loopback_host
from appliance.settings.display import closest, looks_like_credential, show
from appliance.settings.errors import ConfigError
from appliance.settings.path_rules import check_path
from appliance.settings.secrets import Secret, read_secret_text

__all__ = [
    "MAX_SERVERS",
    "SERVER_KEYS",
    "SETTINGS_KEYS",
    "TIMINGS",
    "TOKEN_FILE_MAX_BYTES",
    "McpServer",
    "McpSettings",
    "load_token",
    "parse_mcp_table",
    "url_problem",
]

#: a bearer token file holds one token (Home Assistant's long-lived tokens are about 180 bytes)
TOKEN_FILE_MAX_BYTES = 4096
MAX_SERVERS = 16
_MAX_PATTERNS = 64
_MAX_ARGS = 64
#: a server's name: it may prefix function names, which must start with a letter
_SERVER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
#: host name endings that only make sense on the local network
_LOCAL_SUFFIXES = (".local", ".lan", ".home.arpa", ".internal")


@dataclass(frozen=True)
class McpServer:
    """One `[[mcp.servers]]` entry: a URL (streamable HTTP) or a command (stdio), never both."""

    name: str
    url: str = ""
    token_file: str = ""
    command: str = ""
    args: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: tools declared NON_BLOCKING (where the model allows it): fnmatch patterns like include
    non_blocking: tuple[str, ...] = ()

    @property
    def transport(self) -> str:
        return "http" if self.url else "stdio"

    @property
    def target(self) -> str:
        """Where the server is, for logs and status: the URL, or the command's name."""
        return self.url if self.url else os.path.basename(self.command)

    def wants(self, tool_name: str) -> bool:
        """Whether the tool passes `include` (all when empty) and is not in `exclude`."""
        if self.include and not any(fnmatch.fnmatchcase(tool_name, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(tool_name, p) for p in self.exclude)

    def slow(self, tool_name: str) -> bool:
        """Whether the tool is one of `non_blocking`: declared so the model need not wait for it."""
        return any(fnmatch.fnmatchcase(tool_name, p) for p in self.non_blocking)


@dataclass(frozen=True)
class McpSettings:
    """`[mcp]`; the defaults here are the only ones."""

    servers: tuple[McpServer, ...] = ()
    call_timeout_s: float = 10.0
    #: a call the model does not wait for (declared NON_BLOCKING) may take longer
    non_blocking_timeout_s: float = 120.0
    list_timeout_s: float = 5.0
    retry_s: float = 60.0


SERVER_KEYS = ("name", "url", "token_file", "command", "args", "include", "exclude", "non_blocking")
#: key -> (lowest, highest) accepted value in seconds
TIMINGS = {"call_timeout_s": (0.1, 600.0), "non_blocking_timeout_s": (0.1, 3600.0),
           "list_timeout_s": (0.1, 120.0), "retry_s": (1.0, 3600.0)}
SETTINGS_KEYS = ("servers", *TIMINGS)


def parse_mcp_table(table: Mapping[str, Any] | None, problems: list[str] | None = None) -> McpSettings:
    """`[mcp]` as read from TOML (None or {} when absent), checked; ConfigError names the key.

    With a `problems` list it raises nothing: each problem's line is appended to it and
    the result keeps what was right (a refused timing stays at its default, a refused
    server is left out), so `appliance config check` can list every mistake at once.

    Reads each `token_file` once to check it (it exists, is a regular file of mode 600 or
    stricter and holds one token); the client reads it again at every connection, so a
    new token needs no restart.
    """
    found: list[str] = [] if problems is None else problems
    before = len(found)
    settings = _settings(table, found)
    if problems is None and len(found) > before:
        raise ConfigError(found[before])
    return settings


def url_problem(url: str) -> str | None:
    """What is wrong with `url` as an MCP server's address, or None.

    The text completes a sentence that starts with the setting's name.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL, like http://homeassistant.local:8123/api/mcp"
    try:
        host = parts.hostname
        parts.port  # noqa: B018 - raises for a port that is not a number or out of range
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    if not host:
        return "must name a host, like http://homeassistant.local:8123/api/mcp"
    if parts.username or parts.password:
        return "must not contain a user name or password; put a token in token_file"
    if parts.scheme == "http" and not _on_local_network(host):
        return (
            "uses plain http:// to a host outside the local network, which would send the token "
            "in clear; use https:// (http:// only to this machine or a private address)"
        )
    return None


def load_token(path: str, label: str) -> Secret:
    """The bearer token in `path`, wrapped; ConfigError starting with `label` otherwise.

    The file must be a regular file that only its owner can read or write (mode 600 or
    stricter) and hold the token on one line.
    """
    shown = f"{label} {show(path, hidden=False, limit=None)}"  # a path is shown whole: the owner must find it
    full = os.path.expanduser(path)
    try:
        mode = os.stat(full).st_mode
    except FileNotFoundError:
        raise ConfigError(f"{shown} does not exist; put the server's token in it (chmod 600)") from None
    except OSError as exc:
        raise ConfigError(f"{shown} cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode) and stat.S_IMODE(mode) & 0o177:
        raise ConfigError(
            f"{shown} has mode {stat.S_IMODE(mode):03o}; a token file must be mode 600 or stricter; "
            f"run: chmod 600 {full}"
        )
    token = read_secret_text(full, shown, TOKEN_FILE_MAX_BYTES, "the server's token")
    if any(ch.isspace() or not ch.isprintable() for ch in token):
        raise ConfigError(f"{shown} must hold only the token, on one line with no spaces")
    return Secret(token)


# --------------------------------------------------------------------------- internals


def _settings(table: Mapping[str, Any] | None, problems: list[str]) -> McpSettings:
    if table is None:
        return McpSettings()
    if not isinstance(table, Mapping):
        problems.append("mcp must be a table, like [mcp]")
        return McpSettings()
    problems.extend(_unknown(table, SETTINGS_KEYS, "mcp"))
    timings: dict[str, float] = {}
    for key in TIMINGS:
        if key in table:
            try:
                timings[key] = _seconds(table, key)
            except ConfigError as exc:
                problems.append(str(exc))
    return McpSettings(servers=_servers(table.get("servers", []), problems), **timings)


def _servers(raw_servers: Any, problems: list[str]) -> tuple[McpServer, ...]:
    """The entries that are right; a line in `problems` for each that is not."""
    if not isinstance(raw_servers, list) or not all(isinstance(s, Mapping) for s in raw_servers):
        problems.append("mcp.servers must be an array of tables, written [[mcp.servers]]")
        return ()
    if len(raw_servers) > MAX_SERVERS:
        problems.append(f"mcp.servers has {len(raw_servers)} entries; at most {MAX_SERVERS} are allowed")
        return ()
    servers: list[McpServer] = []
    for index, raw in enumerate(raw_servers):
        try:
            server = _server(raw, f"mcp.servers[{index}]")
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if any(earlier.name == server.name for earlier in servers):
            problems.append(f"mcp.servers[{index}].name {server.name!r} is used twice; each server needs its own")
            continue
        servers.append(server)
    return tuple(servers)


def _server(raw: Mapping[str, Any], where: str) -> McpServer:
    unknown = _unknown(raw, SERVER_KEYS, where)
    if unknown:
        raise ConfigError(unknown[0])
    name = raw.get("name")
    if name is None:
        raise ConfigError(f'{where}.name is missing; give each server a short name, like name = "home"')
    if not isinstance(name, str) or not _SERVER_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}.name {show(name, hidden=False)} must be 1 to 32 of a-z, 0-9 and _, starting with a letter"
        )
    url = _text(raw, "url", where)
    command = _text(raw, "command", where)
    if bool(url) == bool(command):
        which = "has both" if url else "needs one of them"
        raise ConfigError(f"{where} {which}: give url (a server on the network) or command (one started here)")
    token_file = _text(raw, "token_file", where)
    if url:
        problem = url_problem(url)
        if problem:
            raise ConfigError(f"{where}.url {show(url, hidden=looks_like_credential(url))} {problem}")
        if "args" in raw:
            raise ConfigError(f"{where}.args is only for a server started by command; this one has a url")
    if command:
        if token_file:
            raise ConfigError(f"{where}.token_file is only for a url server; a command server gets no token")
        problem = check_path(command)
        if problem:
            raise ConfigError(f"{where}.command {problem}")
    if token_file:
        _check_token_file(token_file, f"{where}.token_file")
    return McpServer(
        name=name,
        url=url,
        token_file=token_file,
        command=command,
        args=_strings(raw, "args", where, _MAX_ARGS),
        include=_patterns(raw, "include", where),
        exclude=_patterns(raw, "exclude", where),
        non_blocking=_patterns(raw, "non_blocking", where),
    )


def _check_token_file(path: str, label: str) -> None:
    if not path.startswith(("/", "~")):
        # not echoed: a value that is not a path may be the token itself
        raise ConfigError(f"{label} must be the absolute path of a file holding the token (chmod 600), not the token")
    problem = check_path(path)
    if problem:
        raise ConfigError(f"{label} {problem}")
    load_token(path, label)


def _on_local_network(host: str) -> bool:
    """This machine, a private or link-local address, or a name only the local network resolves."""
    if is_loopback_host(host):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.lower().rstrip(".")
        return "." not in name or name.endswith(_LOCAL_SUFFIXES)
    return address.is_private or address.is_link_local


def _unknown(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> list[str]:
    """A line for each key of `table` that is not one of `known`, with the one likely meant."""
    lines = []
    for key in table:
        if key not in known:
            guess = closest(key, known) if isinstance(key, str) else None
            hint = f"did you mean {where}.{guess}?" if guess else f"known: {', '.join(known)}"
            lines.append(f"{where}.{show(key, hidden=False)} is not a setting; {hint}")
    return lines


def _text(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string, not {show(value, hidden=key == 'token_file')}")
    if "\x00" in value:
        raise ConfigError(f"{where}.{key} must not contain a NUL byte")
    return value.strip()


def _strings(raw: Mapping[str, Any], key: str, where: str, limit: int) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f'{where}.{key} must be a list of strings, like {key} = ["a", "b"]')
    if len(value) > limit:
        raise ConfigError(f"{where}.{key} has {len(value)} entries; at most {limit} are allowed")
    if any("\x00" in item for item in value):
        raise ConfigError(f"{where}.{key} must not contain a NUL byte")
    return tuple(value)


def _patterns(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    patterns = _strings(raw, key, where, _MAX_PATTERNS)
    for position, pattern in enumerate(patterns):
        if not pattern.strip():
            raise ConfigError(f"{where}.{key}[{position}] is empty; use a tool name or a pattern like \"Hass*\"")
    return patterns


def _seconds(table: Mapping[str, Any], key: str) -> float:
    value = table[key]
    low, high = TIMINGS[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"mcp.{key} must be a number of seconds, not {show(value, hidden=False)}")
    if not low <= value <= high:
        raise ConfigError(f"mcp.{key} is {value:g}; it must be from {low:g} to {high:g} seconds")
    return float(value)
