"""The states the status LEDs can show, in one list both the LEDs and the settings read.

Kept apart from `appliance.hw.leds` (which imports gpiozero) so that checking
`leds.state_pins` while loading the config costs nothing.
"""

from __future__ import annotations

__all__ = ["STATES"]

STATES: tuple[str, ...] = (
    "connecting", "idle", "listening", "thinking", "speaking", "offline", "error", "alarm", "muted",
)
