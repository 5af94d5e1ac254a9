"""What a connection may use of the emulator that accepted it, and nothing more.

Why an explicit interface: a connection needs the settings, a place to record what happens and the
resumption handles; it must not reach into the server (its listening socket, its list of open
connections, the offline switch). The server builds one ``Host`` and hands it to every connection, so
the connection modules never import the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.emulator.config import EmulatorConfig
from appliance.emulator.journal import Journal
from appliance.emulator.resumption import Conversations

__all__ = ["Host"]


@dataclass(frozen=True)
class Host:
    config: EmulatorConfig  # pacing, lifetimes, caps, the models served
    journal: Journal  # the records sink; every change wakes Emulator.wait_for
    conversations: Conversations  # resumption handles, shared by every connection
