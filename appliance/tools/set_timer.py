"""set_timer: start a kitchen timer that rings on the device, online or not."""

from __future__ import annotations

from typing import Any

from appliance.tools.list_timers import end_fields
from appliance.tools.registry import BadArguments, CallRecord, Tool, ToolContext, ToolError
from appliance.timers.model import MAX_LABEL_CHARS, TimerError, normalise_label


def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    timers = ctx.require_timers()
    seconds: int = args["seconds"]
    limit = timers.max_duration_s
    if seconds < 1:
        raise BadArguments(f"'seconds' must be a whole number of seconds from 1 to {limit}, not {seconds}")
    if seconds > limit:
        raise BadArguments(
            f"'seconds' must be at most {limit} ({limit / 3600:g} hours, the longest timer), not {seconds}"
        )
    label = args.get("label")
    if label is not None and normalise_label(label).casefold() == "all":
        raise BadArguments("'label' cannot be \"all\" (that word cancels every timer); pick another name")
    wanted = normalise_label(label)
    try:
        timer = timers.add(seconds, label, call_id=ctx.call_id)
    except TimerError as exc:
        raise ToolError(exc.code, exc.message, retryable=exc.retryable) from None
    running = sum(1 for t in timers.list() if t.state == "running")
    result: dict[str, Any] = {
        "status": "started",
        "id": timer.id,
        "label": timer.label,
        "duration_s": timer.duration_s,
        **end_fields(ctx, timers.ends_at(timer)),
        "timers_running": running,
    }
    if timer.label != wanted:
        result["note"] = f'a timer called "{wanted}" already exists, so this one is called "{timer.label}"'
    return result


def undo(record: CallRecord, ctx: ToolContext) -> str | None:
    if ctx.timers is None:
        return None
    removed = ctx.timers.cancel_by_call(record.id)
    return "; ".join(f"removed timer {t.label}" for t in removed) or None


TOOL = Tool(
    name="set_timer",
    description=(
        "Start a countdown timer on this device; it rings here even without a network. "
        "Give the duration in whole seconds (1 second up to 24 hours unless the device allows less). "
        f"Optional short label such as \"eggs\" (up to {MAX_LABEL_CHARS} characters); a label already in use "
        "gets a number, e.g. \"eggs 2\". Returns the timer's id, label and end time."
    ),
    parameters={
        "type": "OBJECT",
        "properties": {
            "seconds": {"type": "INTEGER", "description": "Duration in seconds, e.g. 300 for five minutes."},
            "label": {"type": "STRING", "description": "Short name for the timer, e.g. \"pasta\"."},
        },
        "required": ["seconds"],
    },
    run=run,
    undo=undo,
)
