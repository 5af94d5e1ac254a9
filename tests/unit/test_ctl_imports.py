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


def test_the_appliance_command_line_parses_ctl_without_the_emulator_or_heavy_libraries() -> None:
    """`appliance ctl status` builds the whole parser first; that must stay cheap too."""
    heavy = ("appliance.emulator.server", "websockets", "numpy", "pyaudio")
    code = (
        "import sys\n"
        "from appliance.cli import build_parser\n"
        "args = build_parser().parse_args(['ctl', 'status'])\n"
        "assert args.command == 'ctl'\n"
        f"print('\\n'.join(m for m in sys.modules if m.startswith({heavy!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split() == []
