"""cancel_timer: remove a timer by label or id, or all of them; a ringing one stops ringing."""

from __future__ import annotations

from typing import Any

from appliance.tools.list_timers import timer_row
from appliance.tools.registry import Tool, ToolContext, ToolError
from appliance.timers.model import Timer
from appliance.timers.service import TimerService


def run(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    timers = ctx.require_timers()
    which = args.get("timer")
    if which is None or not which.strip():
        chosen = _implicit(timers)
    elif which.strip().casefold() == "all":
        chosen = timers.list()
        if not chosen:
            return {"status": "nothing_to_cancel", "cancelled": [], "timers_left": 0,
                    "message": "no timers are set"}
    else:
        chosen = timers.match(which)
        if not chosen:
            raise _no_match(timers, f'no timer has the label or id "{which.strip()}"')
    cancelled = []
    for timer in chosen:
        if timers.cancel(timer.id) is not None:
            cancelled.append({"id": timer.id, "label": timer.label, "was": timer.state})
    return {"status": "cancelled", "cancelled": cancelled, "timers_left": len(timers.list())}


def _implicit(timers: TimerService) -> list[Timer]:
    """No name given: the ringing timers, else the only timer, else ask which."""
    ringing = timers.ringing()
    if ringing:
        return ringing
    existing = timers.list()
    if len(existing) == 1:
        return existing
    if not existing:
        raise ToolError("not_found", "no timers are set", retryable=False, timers=[])
    raise _no_match(timers, "several timers are set; say which one by label or id, or \"all\"")


def _no_match(timers: TimerService, problem: str) -> ToolError:
    existing = timers.list()
    if existing:
        names = ", ".join(f"{t.label} ({t.id})" for t in existing)
        message = f"{problem}; the timers are: {names}"
    else:
        message = f"{problem}; no timers are set"
    return ToolError("not_found", message, retryable=False, timers=[timer_row(timers, t) for t in existing])


TOOL = Tool(
    name="cancel_timer",
    description=(
        "Cancel a timer on this device, or stop one that is ringing. Name it by label (any case) or id "
        "(like \"t3\"), or say \"all\" to cancel every timer. Without a name it stops the ringing timers, "
        "or cancels the only timer there is."
    ),
    parameters={
        "type": "OBJECT",
        "properties": {
            "timer": {"type": "STRING", "description": "Label or id of the timer, or \"all\"."},
        },
    },
    run=run,
)
