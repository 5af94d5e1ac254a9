"""`appliance ctl` runs on every status check, often on a slow Pi: it must not pull in the
server, asyncio, the emulator, the doctor or the audio and network stacks the daemon needs,
nor, to find its socket, the config loader, the settings schema or logging."""

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


#: what finding the socket must not cost when no layer sets it (and the file is not even parsed)
CONFIG_MACHINERY = ("logging", "tomllib", "dataclasses", "appliance.settings.schema", "appliance.settings.fields",
                    "appliance.settings.loader", "appliance.logsetup")
#: the other subcommands' argument modules, which the small `ctl` parser does not build
OTHER_PARSERS = ("appliance.commands.doctor_arguments", "appliance.emulator.arguments")


def modules_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    """Run `code` in a fresh interpreter and list the modules it left loaded."""
    report = "import sys\nprint('\\n'.join(sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code + report], capture_output=True, text=True,
                            check=True, timeout=60, env=env)
    loaded = result.stdout.split()
    assert "appliance.ipc.ctl" in loaded or "appliance.cli" in loaded
    return loaded


def heavy_modules_after(code: str, env: dict[str, str] | None = None) -> list[str]:
    """Run `code` in a fresh interpreter and name the heavy modules it left loaded."""
    return sorted(m for m in modules_after(code, env) if is_heavy(m))


def ctl_run(tmp_path: Path, *argv: str) -> tuple[str, dict[str, str]]:
    """Code for the real `main` from the command line to the refused connection, and its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    code = (
        "from appliance.cli import main\n"
        f"assert main({list(argv)!r}) == 2  # nothing listens\n"
    )
    return code, env


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


CONFIGS = {
    "valid config": "",
    "config with a mistake": "[live]\nmodle = 'x'\n",
    "config that is not TOML": "[live\nmodle = 'x\n",
    "config that sets the socket": "[live]\nmodle = 'x'\n[control]\nsocket = 'SOCKET'\n",
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_a_whole_appliance_ctl_run_loads_nothing_heavy(tmp_path: Path, config: str) -> None:
    """The real `main`, from the parser to the refused connection, whatever the file holds."""
    path = tmp_path / "config.toml"
    path.write_text(CONFIGS[config].replace("SOCKET", str(tmp_path / "c.sock")))
    assert heavy_modules_after(*ctl_run(tmp_path, "--config", str(path), "ctl", "status")) == []


@pytest.mark.parametrize("config", ["valid config", "config with a mistake", "config that is not TOML"])
def test_ctl_finds_its_socket_without_the_config_machinery_when_nothing_sets_it(tmp_path: Path, config: str) -> None:
    """No layer sets the socket: the file is read, not parsed, and no setting is validated."""
    path = tmp_path / "config.toml"
    path.write_text(CONFIGS[config])
    loaded = modules_after(*ctl_run(tmp_path, "--config", str(path), "ctl", "status"))
    assert [m for m in loaded if m in CONFIG_MACHINERY + OTHER_PARSERS] == []


def test_ctl_with_socket_reads_no_config_at_all(tmp_path: Path) -> None:
    """Only the names of the config file's defaults (for the help text) come from the settings."""
    loaded = modules_after(*ctl_run(tmp_path, "ctl", "status", "--socket", str(tmp_path / "c.sock")))
    settings = [m for m in loaded if m.startswith("appliance.settings.")]
    assert sorted(settings) == ["appliance.settings.errors", "appliance.settings.paths"]
    assert [m for m in loaded if m in CONFIG_MACHINERY + OTHER_PARSERS + ("appliance.atomicfile",)] == []


def test_a_socket_set_in_the_file_is_parsed_and_checked_but_the_loader_stays_out(tmp_path: Path) -> None:
    """A valid value is checked by the path rules alone (what an installed box's config holds); neither the
    schema nor the loader nor argparse loads for it."""
    path = tmp_path / "config.toml"
    path.write_text(CONFIGS["config that sets the socket"].replace("SOCKET", str(tmp_path / "c.sock")))
    loaded = modules_after(*ctl_run(tmp_path, "--config", str(path), "ctl", "status"))
    assert {"tomllib", "appliance.settings.path_rules"} <= set(loaded)
    heavy = ("appliance.settings.loader", "appliance.settings.fields", "appliance.settings.schema",
             "appliance.logsetup", "argparse")
    assert [m for m in loaded if m in heavy + OTHER_PARSERS] == []


def test_the_doctor_checks_are_the_ones_its_command_line_offers() -> None:
    from appliance.commands.doctor.runner import CHECK_NAMES as runner_names, CHECKS
    from appliance.commands.doctor_arguments import CHECK_NAMES

    assert tuple(spec.name for spec in CHECKS) == CHECK_NAMES
    assert runner_names is CHECK_NAMES


def test_ctl_offers_the_night_modes_the_daemon_accepts() -> None:
    from appliance.hw.night import OVERRIDES
    from appliance.ipc.ctl import NIGHT_MODES

    assert NIGHT_MODES == OVERRIDES
