"""`appliance ctl` runs on every status check: importing its module must not pull in the
server or the audio and network stacks the daemon needs."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("appliance.ipc.server", "websockets", "numpy", "pyaudio")


def test_importing_the_ctl_module_loads_no_server_and_no_heavy_library() -> None:
    code = (
        "import sys, appliance.ipc.ctl\n"
        f"print('\\n'.join(m for m in sys.modules if m.startswith({HEAVY!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split() == []
