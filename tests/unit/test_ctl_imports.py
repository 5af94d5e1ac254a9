"""`appliance ctl` runs on every status check, often on a slow Pi: it must not pull in the
server, asyncio, the emulator, the doctor or the audio and network stacks the daemon needs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("appliance.ipc.server", "websockets", "numpy", "pyaudio", "asyncio")
#: the emulator's and the doctor's packages; their argument modules import only argparse and may load
FORBIDDEN_PACKAGES = ("appliance.emulator", "appliance.commands.doctor")
ALLOWED = ("appliance.emulator", "appliance.emulator.arguments")


def is_heavy(module: str) -> bool:
    if module in ALLOWED:
        return False
    return module.startswith(HEAVY) or any(module == p or module.startswith(p + ".") for p in FORBIDDEN_PACKAGES)


def heavy_modules_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    """Run `code` in a fresh interpreter and name the heavy modules it left loaded."""
    report = "import sys\nprint('\\n'.join(sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code + report], capture_output=True, text=True,
                            check=True, timeout=60, env=env)
    loaded = result.stdout.split()
    assert "appliance.ipc.ctl" in loaded or "appliance.cli" in loaded
    return sorted(m for m in loaded if is_heavy(m))


def test_importing_the_ctl_module_and_its_client_loads_nothing_heavy() -> None:
    assert heavy_modules_after("import appliance.ipc.ctl, appliance.ipc.client\n") == []


def test_the_appliance_command_line_parses_ctl_without_the_emulator_or_the_doctor() -> None:
    """`appliance ctl status` builds the whole parser first; that must stay cheap too."""
    code = (
        "from appliance.cli import build_parser\n"
        "args = build_parser().parse_args(['ctl', 'status'])\n"
        "assert args.command == 'ctl'\n"
    )
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize("config", ["", "[live]\nmodle = 'x'\n"], ids=["valid config", "config with a mistake"])
def test_a_whole_appliance_ctl_run_loads_nothing_heavy(tmp_path: Path, config: str) -> None:
    """The real `main`, from the parser to the refused connection, with or without the fallback."""
    path = tmp_path / "config.toml"
    path.write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    code = (
        "from appliance.cli import main\n"
        f"assert main(['--config', {str(path)!r}, 'ctl', 'status']) == 2  # nothing listens\n"
    )
    assert heavy_modules_after(code, env) == []


def test_the_doctor_checks_are_the_ones_its_command_line_offers() -> None:
    from appliance.commands.doctor.runner import CHECK_NAMES as runner_names, CHECKS
    from appliance.commands.doctor_arguments import CHECK_NAMES

    assert tuple(spec.name for spec in CHECKS) == CHECK_NAMES
    assert runner_names is CHECK_NAMES


def test_ctl_offers_the_night_modes_the_daemon_accepts() -> None:
    from appliance.hw.night import OVERRIDES
    from appliance.ipc.ctl import NIGHT_MODES

    assert NIGHT_MODES == OVERRIDES
