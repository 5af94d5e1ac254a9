"""Doctor's check of the MCP servers in `[[mcp.servers]]`: each reached, its token taken, its tools listed.

One line per server, all under the name `mcp`.  Each server is tried once, all at the same
time, by `appliance.mcp.manager.probe`, which the daemon's own connections share; the
words for what went wrong are the manager's, and this adds which setting to look at.
No token reaches a line: the manager never puts one in its text, and each server's token
is cut out of the lines here as well.
"""

from __future__ import annotations

import asyncio

from appliance.commands.doctor.machine import CheckContext
from appliance.commands.doctor.report import Check, failed, passed, skipped
from appliance.mcp.config import McpServer, load_token
from appliance.settings.errors import ConfigError
from appliance.settings.secrets import REDACTED
from appliance.textsafe import escape_controls

__all__ = ["check_mcp", "mcp_time_limit"]

NAME = "mcp"
#: on top of the slowest server's connection time, for starting and stopping the probes
_SLACK_S = 3.0
_HOME_ASSISTANT_TOKEN = ("a long-lived access token (Home Assistant: your profile, Security tab), "
                         "alone on one line, chmod 600")


def mcp_time_limit(ctx: CheckContext) -> float:
    """How long probing every server may take: they are tried at once, each within its own limit."""
    from appliance.mcp.manager import STDIO_START_S

    settings = ctx.cfg.mcp
    stdio = any(server.command for server in settings.servers)
    return settings.list_timeout_s + (STDIO_START_S if stdio else 0.0) + _SLACK_S


async def check_mcp(ctx: CheckContext) -> tuple[Check, ...]:
    settings = ctx.cfg.mcp
    if not settings.servers:
        return (skipped(NAME, "no [[mcp.servers]]"),)
    from appliance.mcp.manager import NOT_INSTALLED, probe

    statuses = await asyncio.gather(*(probe(server, settings.list_timeout_s) for server in settings.servers))
    if any(status.error == NOT_INSTALLED for status in statuses):
        names = ", ".join(server.name for server in settings.servers)
        return (failed(NAME, f"servers configured ({names}), but {NOT_INSTALLED}",
                       "run that pip in the appliance's venv (install.sh has no option for it), "
                       "then run doctor again"),)
    checks = [_verdict(index, server, status.state, status.tools, status.error or "")
              for index, (server, status) in enumerate(zip(settings.servers, statuses))]
    return tuple(_without_tokens(check, settings.servers) for check in checks)


def _verdict(index: int, server: McpServer, state: str, tools: int, error: str) -> Check:
    from appliance.mcp.manager import UNAUTHORISED, UP

    key = f"mcp.servers[{index}]"
    where = f"{server.name} ({escape_controls(server.target[:120])})"
    if state == UP:
        if not tools:
            return failed(NAME, f"{where}: reachable, but offers no tool the model can use",
                          f"check {key}.include and exclude (and, in Home Assistant, which entities "
                          "are exposed to Assist)")
        how = "started" if server.command else "reachable, authorised" if server.token_file else "reachable"
        return passed(NAME, f"{server.name}: {how}, {tools} tool{'s' if tools != 1 else ''}")
    if state == UNAUTHORISED:
        if server.token_file:
            return failed(NAME, f"{server.name}: {error}", f"check {key}.token_file: it must hold {_HOME_ASSISTANT_TOKEN}")
        return failed(NAME, f"{server.name}: {error}", f"set {key}.token_file to a file holding {_HOME_ASSISTANT_TOKEN}")
    if server.command:
        return failed(NAME, f"{where}: {error}",
                      f"check {key}.command and args: run the command by hand to see what it says")
    return failed(NAME, f"{where}: unreachable: {error}",
                  f"check that the server is running and that {key}.url is its address (Home Assistant: "
                  "the \"Model Context Protocol Server\" integration, at http://HOST:8123/api/mcp)")


def _without_tokens(check: Check, servers: tuple[McpServer, ...]) -> Check:
    """The second line of defence: no server's token in the line, whatever went wrong."""
    for server in servers:
        if not server.token_file:
            continue
        try:
            token = load_token(server.token_file, "token_file").reveal()
        except ConfigError:
            continue
        if len(token) >= 4:
            check = Check(check.name, check.ok, check.detail.replace(token, REDACTED),
                          check.advice.replace(token, REDACTED))
    return check
