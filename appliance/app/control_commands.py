"""What each `appliance ctl` command does to the running appliance.

The control server (appliance.ipc.server) checks a request's shape; this answers it, on the
loop, from the daemon's parts: the conductor, the night mode, the timers, the speaker, the mute.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["control_command"]


async def control_command(daemon: Any, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """Answer one `appliance ctl` request (already checked by ipc.server) on the running daemon."""
    conductor = daemon.conductor
    night = daemon.night
    assert conductor is not None and night is not None
    if cmd == "status":
        reply = {"ok": True, **conductor.status(), "night": night.describe(), "timers": daemon.timers.describe()}
        if daemon.home is not None:
            reply["home_servers"] = [server.line() for server in daemon.home.status()]
        return reply
    if cmd == "timers":
        return {"ok": True, "timers": daemon.timers.describe()}
    if cmd == "press":
        daemon.virtual_button.set_pressed(True)
    elif cmd == "release":
        daemon.virtual_button.set_pressed(False)
    elif cmd == "tap":
        daemon.virtual_button.tap()
    elif cmd == "stop":
        conductor.stop()
    elif cmd == "new-conversation":
        conductor.new_conversation("appliance ctl")
    elif cmd == "volume":
        level = args["value"] if "value" in args else daemon.player.volume + args["delta"]
        level = max(0, min(100, int(level)))
        daemon.player.set_volume(level)
        return {"ok": True, "volume": level}
    elif cmd == "night":
        return {"ok": True, "night": night.set(args["mode"])}
    elif cmd == "mute":
        assert daemon.mute is not None
        # answered once the microphone is off; a client that hangs up does not stop it halfway
        await asyncio.shield(daemon.mute.switch(args["muted"], "appliance ctl"))
        return {"ok": True, "muted": conductor.muted, "state": conductor.state.value}
    elif cmd == "say":
        try:
            item = conductor.announce(args["text"])
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        if item.state == "dropped":
            return {"ok": False, "error": f"not spoken: {item.why}"}
        return {"ok": True, "announcement": item.state, "state": conductor.state.value}
    return {"ok": True, "state": conductor.state.value}
