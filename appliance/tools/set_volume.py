"""set_volume: the speaker volume, absolute (0-100) or a step up or down."""

from __future__ import annotations

from typing import Any

from appliance.tools.registry import BadArguments, CallRecord, Tool, ToolContext, ToolError


def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    if ctx.get_volume is None or ctx.set_volume is None:
        raise ToolError("unavailable", "the volume cannot be changed on this device right now")
    level, step = args.get("level"), args.get("step")
    if (level is None) == (step is None):
        raise BadArguments("give exactly one of 'level' (0 to 100) or 'step' (-100 to 100)")
    if level is not None and not 0 <= level <= 100:
        raise BadArguments(f"'level' must be from 0 to 100, not {level}")
    if step is not None and not -100 <= step <= 100:
        raise BadArguments(f"'step' must be from -100 to 100, not {step}")
    previous = int(ctx.get_volume())
    target = level if level is not None else min(100, max(0, previous + step))
    ctx.set_volume(target)
    result: dict[str, Any] = {"status": "set", "volume": target, "previous": previous}
    if step is not None and target != previous + step:
        result["note"] = f"the volume is limited to 0..100, so it stopped at {target}"
    return result


def undo(record: CallRecord, ctx: ToolContext) -> str | None:
    """Go back to the previous volume, unless something else has changed it since."""
    if ctx.get_volume is None or ctx.set_volume is None:
        return None
    if ctx.get_volume() != record.result.get("volume"):
        return None
    previous = int(record.result["previous"])
    ctx.set_volume(previous)
    return f"volume back to {previous}"


TOOL = Tool(
    name="set_volume",
    description=(
        "Change the speaker volume on a 0-100 scale. Give either 'level' (0 to 100) to set it, or 'step' "
        "(-100 to 100, e.g. 10 for a bit louder, -10 for a bit quieter) to change it; not both. "
        "Returns the new and the previous volume."
    ),
    parameters={
        "type": "OBJECT",
        "properties": {
            "level": {"type": "INTEGER", "description": "New volume, 0 (silent) to 100 (loudest)."},
            "step": {"type": "INTEGER", "description": "Change relative to now, -100 to 100."},
        },
    },
    run=run,
    undo=undo,
)
