"""get_time: the local time and date, so the model never guesses them."""

from __future__ import annotations

from typing import Any

from appliance.tools.registry import Tool, ToolContext


def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    now = ctx.local().replace(microsecond=0)
    zone = getattr(ctx.time_zone, "key", None) or now.tzname() or "local"
    return {
        "time": now.strftime("%H:%M"),
        "date": ctx.day(now),
        "iso": now.isoformat(),
        "time_zone": zone,
    }


TOOL = Tool(
    name="get_time",
    description="Get the current local time (24-hour) and date on this device, with its time zone.",
    parameters=None,
    run=run,
)
