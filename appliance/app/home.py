"""The daemon's side of the home servers (MCP): starting them, and noticing when one comes up.

The SDK is imported only by `appliance.mcp`, on a worker thread inside its manager: a box without
[[mcp.servers]] never loads it, and one with them starts talking before it has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Any

from appliance.settings.schema import Config

__all__ = ["start_home_servers", "watch_home_servers"]

log = logging.getLogger(__name__)

#: how long one wait for a change lasts before it is simply waited again
_WAIT_S = 3600.0


def start_home_servers(cfg: Config, *, reserved: Collection[str]) -> Any:
    """The MCP manager, connecting in the background, or None without [[mcp.servers]]."""
    if not cfg.mcp.servers:
        return None
    from appliance.mcp.manager import McpManager

    manager = McpManager(cfg.mcp, reserved=reserved, log_args=cfg.privacy.log_transcripts)
    manager.start()
    return manager


async def watch_home_servers(manager: Any, conductor: Callable[[], Any]) -> None:
    """A server that comes up (after the box booted, or back from its own reboot) has tools the
    session was not set up with: a new conversation at the next idle moment declares them.

    Only a server coming up counts; one going down answers its calls as unavailable meanwhile.
    A new conversation already pending (a reload) declares them too and is not replaced.
    """
    from appliance.mcp.manager import UP

    up: frozenset[str] = frozenset()
    while True:
        def changed(servers: tuple[Any, ...]) -> bool:
            return frozenset(s.name for s in servers if s.state == UP) != up

        if not await manager.wait_for(changed, _WAIT_S):
            continue
        now_up = frozenset(s.name for s in manager.status() if s.state == UP)
        arrived, up = now_up - up, now_up
        current = conductor()
        if arrived and current is not None and not current.switch_pending:
            log.info("home server %s is up: its tools come with a new conversation at the next idle moment",
                     ", ".join(sorted(arrived)))
            current.new_conversation_when_idle(lambda: None, "home server tools")
