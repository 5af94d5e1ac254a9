"""The names of the function tools, in the order they are declared to the model.

The one list: `appliance.tools.catalog` builds its tools in this order, and the settings
check `[tools] enabled` against it.  It imports nothing, so the settings can read it
without loading the tools or the timer service.
"""

from __future__ import annotations

__all__ = ["TOOL_NAMES"]

TOOL_NAMES: tuple[str, ...] = ("set_timer", "list_timers", "cancel_timer", "get_time", "set_volume")
