"""Loading the settings stays cheap: `appliance ctl` and every command load them first."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "websockets", "gpiozero", "pyaudio", "appliance.emulator", "appliance.commands.doctor",
         "appliance.timers.service", "appliance.tools.registry", "asyncio")


def test_the_loader_and_the_paths_pull_in_nothing_heavy() -> None:
    code = (
        "import sys, appliance.settings.loader, appliance.settings.paths, appliance.settings.keys\n"
        f"print('\\n'.join(m for m in sys.modules if m.startswith({HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == []
