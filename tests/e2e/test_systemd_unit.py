"""The shipped systemd unit: systemd accepts it, it is hardened enough, and it matches the daemon.

Needs `systemd-analyze` (Debian package `systemd`, version 252 or newer).  `verify` insists
that ExecStart's binary exists, so the unit is checked as a copy whose ExecStart points at
a stand-in executable; every other line is the shipped one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "appliance.service"
SHIPPED_EXEC = "/opt/appliance/venv/bin/appliance"
MAX_EXPOSURE = 2.0


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is missing: apt-get install systemd"
    return exe


def _directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order (keys may repeat)."""
    section = ""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line in the unit: {raw!r}"
        found.append((section, key.strip(), value.strip()))
    return found


def _values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in _directives(UNIT.read_text()) if s == section and k == key]


def _one(key: str, section: str = "Service") -> str:
    values = _values(key, section)
    assert len(values) == 1, f"{section}.{key} should be set once, found {values}"
    return values[0]


@pytest.fixture
def checkable_unit(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart's binary replaced by an executable that exists."""
    stand_in = tmp_path / "bin" / "appliance"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    text = UNIT.read_text()
    assert text.count(SHIPPED_EXEC) == 1, "ExecStart should name the venv's appliance exactly once"
    unit = tmp_path / "appliance.service"
    unit.write_text(text.replace(SHIPPED_EXEC, str(stand_in)))
    return unit


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_systemd_analyze(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_systemd_verify_accepts_the_unit(checkable_unit: Path) -> None:
    result = _run("verify", str(checkable_unit), cwd=checkable_unit.parent)
    complaints = result.stdout + result.stderr
    assert result.returncode == 0, complaints
    for warning in ("Unknown key", "Unknown section", "Unknown lvalue", "ignoring", "not executable"):
        assert warning not in complaints, complaints


def test_verify_really_rejects_a_typo(checkable_unit: Path) -> None:
    """The check above can fail: an unknown key is reported."""
    checkable_unit.write_text(checkable_unit.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    result = _run("verify", str(checkable_unit), cwd=checkable_unit.parent)
    assert "Unknown key" in result.stderr + result.stdout


def _exposure(output: str) -> float:
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", output)
    assert match, f"no overall exposure in systemd-analyze's output:\n{output[-2000:]}"
    return float(match.group(1))


def test_security_exposure_is_at_most_2(checkable_unit: Path) -> None:
    threshold = str(int(MAX_EXPOSURE * 10))
    result = _run("security", "--offline=true", f"--threshold={threshold}", "--no-pager",
                  str(checkable_unit), cwd=checkable_unit.parent)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert _exposure(output) <= MAX_EXPOSURE, output


def test_security_gate_fails_a_bare_unit(tmp_path: Path) -> None:
    """The threshold really gates: an unhardened unit with the same ExecStart fails it."""
    stand_in = tmp_path / "appliance"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    bare = tmp_path / "bare.service"
    bare.write_text(f"[Service]\nExecStart={stand_in} run\n")
    result = _run("security", "--offline=true", "--threshold=20", "--no-pager", str(bare), cwd=tmp_path)
    assert result.returncode != 0
    assert _exposure(result.stdout + result.stderr) > MAX_EXPOSURE


def test_runs_as_a_dedicated_user_with_the_device_groups() -> None:
    user = _one("User")
    assert user and user not in ("root", "voice"), "Debian has a static group 'voice'; use another name"
    assert user == "appliance"
    assert set(_one("SupplementaryGroups").split()) == {"audio", "gpio", "spi"}
    assert _values("DynamicUser") in ([], ["no"])


def test_the_key_arrives_as_the_credential_the_daemon_reads() -> None:
    from appliance.settings.secrets import CREDENTIAL_NAME

    name, _, path = _one("LoadCredential").partition(":")
    assert name == CREDENTIAL_NAME == "gemini-api-key"
    assert path == "/etc/appliance/gemini-api-key"


def test_notify_watchdog_and_restart_policy() -> None:
    assert _one("Type") == "notify"
    assert _one("NotifyAccess") == "main"
    assert 10 <= int(_one("WatchdogSec")) <= 60
    assert _one("Restart") == "on-failure"
    assert int(_one("StartLimitBurst", "Unit")) >= 1
    assert int(_one("StartLimitIntervalSec", "Unit")) > 0
    # The daemon exits within 2 s of SIGTERM; a long stop timeout would only delay restarts.
    assert int(_one("TimeoutStopSec")) <= 10


def test_reload_sends_sighup_to_the_daemon() -> None:
    """`systemctl reload appliance` reaches the handler `appliance.app.daemon` installs for SIGHUP."""
    assert _one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert _one("Type") == "notify", "notify-reload needs systemd 253; Bookworm has 252"


def test_starts_the_daemon_with_the_installed_config() -> None:
    assert _one("ExecStart") == f"{SHIPPED_EXEC} --config ${{CONFIGURATION_DIRECTORY}}/config.toml run"
    for key in ("StateDirectory", "ConfigurationDirectory", "RuntimeDirectory"):
        assert _one(key) == "appliance"
    wants = _one("Wants", "Unit").split()
    after = _one("After", "Unit").split()
    assert {"network-online.target", "time-sync.target"} <= set(wants)
    assert {"network-online.target", "time-sync.target", "sound.target"} <= set(after)
    assert _one("WantedBy", "Install") == "multi-user.target"


def test_device_allow_list_covers_sound_gpio_and_spi() -> None:
    assert _one("DevicePolicy") == "closed"
    allowed = {value.split()[0] for value in _values("DeviceAllow")}
    assert {"char-alsa", "char-gpiochip", "char-spi"} <= allowed
    assert _values("PrivateDevices") in ([], ["no"]), "PrivateDevices hides /dev/snd"


def test_hardening_keeps_what_the_daemon_needs() -> None:
    filters = _values("SystemCallFilter")
    assert "@system-service" in filters
    for value in filters:
        if value.startswith("~"):
            assert "@resources" not in value.split(), "denying @resources breaks os.nice()"
            assert "setpriority" not in value
    assert _one("ProtectSystem") == "strict"
    assert _one("CapabilityBoundingSet") == ""
    assert _one("NoNewPrivileges") == "yes"
    assert _one("MemoryDenyWriteExecute") == "yes"
    # lgpio writes its notification pipes into the working directory; it must be writable.
    assert _one("WorkingDirectory") in ("%t/appliance", "/run/appliance", "%S/appliance", "/var/lib/appliance")

