"""Every tool the appliance has, and the registry of the ones `[tools] enabled` names.

Lives apart from `registry` because the tool modules import `registry`: gathering them
there would make the two import each other.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from appliance.tools import cancel_timer, get_time, list_timers, set_timer, set_volume
from appliance.tools.registry import Tool, ToolContext, ToolRegistry

if TYPE_CHECKING:
    from appliance.settings.schema import Config

__all__ = ["ALL_TOOLS", "registry_for"]

log = logging.getLogger(__name__)

#: name -> tool, in the order of `names.TOOL_NAMES` (a unit test checks that both hold the same names)
ALL_TOOLS: dict[str, Tool] = {
    module.TOOL.name: module.TOOL
    for module in (set_timer, list_timers, cancel_timer, get_time, set_volume)
}


def registry_for(cfg: Config, ctx: ToolContext) -> ToolRegistry:
    """The tools named in `[tools] enabled`, in that order."""
    chosen = []
    for name in dict.fromkeys(cfg.tools.enabled):
        tool = ALL_TOOLS.get(name)
        if tool is None:
            log.warning("ignoring unknown tool %r in tools.enabled", name)
            continue
        chosen.append(tool)
    return ToolRegistry(chosen, ctx)
