"""list_timers: what timers exist, how long they have left, and which are ringing."""

from __future__ import annotations

from typing import Any

from appliance.tools.registry import Tool, ToolContext
from appliance.timers.model import Timer
from appliance.timers.service import TimerService


def timer_row(timers: TimerService, timer: Timer) -> dict[str, Any]:
    """How a timer is shown to the model."""
    row: dict[str, Any] = {"id": timer.id, "label": timer.label, "state": timer.state}
    if timer.state == "running":
        row["remaining_s"] = round(timers.remaining_s(timer))
    else:
        row["remaining_s"] = 0
    return row


def end_fields(ctx: ToolContext, epoch: float) -> dict[str, Any]:
    """`ends_at` as local "14:05:10", plus `ends_on` ("Monday 23 November") when that is not today."""
    fields: dict[str, Any] = {"ends_at": ctx.clock(epoch)}
    end, today = ctx.local(epoch), ctx.local()
    if end.date() != today.date():
        fields["ends_on"] = ctx.day(end, year=False)
    return fields


def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    timers = ctx.require_timers()
    rows = []
    for timer in timers.list():
        row = timer_row(timers, timer)
        if timer.state == "running":
            row.update(end_fields(ctx, timers.ends_at(timer)))
        rows.append(row)
    result: dict[str, Any] = {"count": len(rows), "timers": rows}
    if not rows:
        result["message"] = "no timers are set"
    return result


TOOL = Tool(
    name="list_timers",
    description=(
        "List the timers on this device: id, label, state (running or ringing), whole seconds remaining "
        "and the local end time. Ringing timers come first."
    ),
    parameters=None,
    run=run,
)
