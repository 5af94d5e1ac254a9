"""Function tools the model may call on the device (timers, clock, volume).

`names` lists the tools, `registry` answers the model's calls, `catalog` gathers the tool
modules.  Adding a tool: write a module named after it with a `TOOL = Tool(...)`, add it
to `catalog.ALL_TOOLS` and its name to `names.TOOL_NAMES` (so `[tools] enabled` accepts it).

This package module imports nothing, so reading `names` stays cheap.
"""
