"""Function tools the model may call on the device (timers, clock, volume).

Adding a tool: write a module with a `TOOL = Tool(...)` and add one line to `ALL_TOOLS`
(and its name to `appliance.settings.loader.TOOL_NAMES` so `[tools] enabled` accepts it).
"""

from __future__ import annotations

from appliance.tools import cancel_timer, get_time, list_timers, set_timer, set_volume
from appliance.tools.registry import (
    BadArguments,
    CallRecord,
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    resolve_time_zone,
)
from appliance.timers.service import Timer, TimerError, TimerService, TimerStore

ALL_TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        set_timer.TOOL,
        list_timers.TOOL,
        cancel_timer.TOOL,
        get_time.TOOL,
        set_volume.TOOL,
    )
}

__all__ = [
    "ALL_TOOLS",
    "BadArguments",
    "CallRecord",
    "Timer",
    "TimerError",
    "TimerService",
    "TimerStore",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "resolve_time_zone",
]
