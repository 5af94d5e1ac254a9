"""`appliance doctor` against real parts: the emulator on 127.0.0.1, sound through PortAudio and
alsa-lib (a private PulseAudio, or ALSA file devices), gpiozero's MockFactory for the pins, and
small shell scripts standing in for the Pi's own tools (timedatectl, vcgencmd)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections import namedtuple
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from appliance.settings.schema import AudioConfig, ButtonConfig, Config, LedsConfig, LiveConfig, StateConfig
from appliance.commands.doctor import add_arguments, doctor_command
from appliance.commands.doctor.machine import DoctorEnv
from appliance.commands.doctor.runner import CHECK_NAMES
from appliance.commands.doctor.system_checks import parse_throttled
from appliance.emulator.server import Emulator, EmulatorConfig
from rigs import ALSA_CONF, FileRig

KEY = "test-key-doctor-7d2a91"
BUTTON_PIN, LED_PIN = 17, 12
Usage = namedtuple("Usage", "total used free")


# --------------------------------------------------------------------------- fixtures and helpers


def stand_in_tool(bin_dir: Path, name: str, script: str) -> None:
    """A shell script on a private PATH playing the part of a tool this machine lacks."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


def key_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "api_key"
    path.write_text(KEY + "\n")
    path.chmod(mode)
    return path


def make_config(tmp_path: Path, *, endpoint: str = "", audio: dict | None = None, leds: dict | None = None,
                button: dict | None = None, key_mode: int = 0o600) -> Config:
    return dataclasses.replace(
        Config(),
        live=dataclasses.replace(LiveConfig(), endpoint=endpoint,
                                 api_key_file=str(key_file(tmp_path, key_mode)), setup_timeout_s=5.0),
        audio=dataclasses.replace(AudioConfig(), **(audio or {"input_device": "pulse", "output_device": "pulse"})),
        button=dataclasses.replace(ButtonConfig(), pin=BUTTON_PIN, **(button or {})),
        leds=dataclasses.replace(LedsConfig(), **(leds or {"kind": "pwm", "pin": LED_PIN})),
        state=StateConfig(dir=str(tmp_path / "state")),
    )


def make_env(tmp_path: Path, gpio=None, **changes) -> DoctorEnv:
    """Only the stand-in tools in tmp_path/bin are found; no key comes from this process's environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    base = DoctorEnv(environ={}, which=lambda name: shutil.which(name, path=str(bin_dir)), pin_factory=gpio)
    return dataclasses.replace(base, **changes)


def doctor_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="appliance doctor")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def run_doctor(cfg: Config, env: DoctorEnv, *argv: str, emulator: EmulatorConfig | None = None) -> tuple[int, list[str]]:
    """Run `appliance doctor ARGV` in a fresh loop (with an emulator when asked); return (exit code, lines)."""
    lines: list[str] = []

    async def main() -> int:
        if emulator is None:
            return await doctor_command(cfg, doctor_args(*argv), printer=lines.append, env=env)
        async with Emulator(emulator) as emu:
            live = dataclasses.replace(cfg.live, endpoint=emu.url)
            return await doctor_command(dataclasses.replace(cfg, live=live), doctor_args(*argv),
                                        printer=lines.append, env=env)

    code = asyncio.run(main())
    assert not any(KEY in line for line in lines), "the API key must never be printed"
    return code, lines


def line_for(lines: list[str], name: str) -> str:
    found = [line for line in lines if line.split(" ", 2)[1:2] == [f"{name}:"]]
    assert len(found) == 1, f"one line for {name} expected in {lines}"
    return found[0]


def file_rig(tmp_path: Path, monkeypatch, samples: np.ndarray) -> None:
    """An ALSA file microphone "rigmic" (48 kHz stereo S32_LE, like an I2S mic) and a default speaker."""
    rig = FileRig(tmp_path)
    rig.add_capture("rigmic", samples, rate=48000, fmt="S32_LE")
    text = rig.config_path.read_text()
    text += 'pcm.!default { type asym; capture.pcm "rigmic"; playback.pcm "null" }\n'
    path = tmp_path / "asoundrc-doctor"
    path.write_text(text)
    monkeypatch.setenv("ALSA_CONFIG_PATH", f"{ALSA_CONF}:{path}")


def tone(seconds: float, rate: int = 48000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    left = (np.sin(2 * np.pi * 440 * t) * (1 << 28)).astype(np.int32)
    return np.stack([left, np.zeros_like(left)], axis=1)


# --------------------------------------------------------------------------- the whole run


def test_everything_passes_on_a_working_setup(tmp_path, pulse, monkeypatch, gpio):
    pulse.activate(monkeypatch)
    stand_in_tool(tmp_path / "bin", "timedatectl", "echo yes")  # stand-in for systemd's timedatectl
    cfg = make_config(tmp_path)

    code, lines = run_doctor(cfg, make_env(tmp_path, gpio), emulator=EmulatorConfig())

    assert code == 0, "\n".join(lines)
    checks, summary = lines[:-1], lines[-1]
    assert [line.split(" ", 2)[1].rstrip(":") for line in checks] == list(CHECK_NAMES)
    assert all(line.startswith("PASS ") for line in checks), "\n".join(lines)
    assert summary == "doctor: all 11 checks passed (2 skipped)"
    assert line_for(lines, "mcp") == "PASS mcp: skipped: no [[mcp.servers]]"
    assert line_for(lines, "power") == "PASS power: skipped: no vcgencmd (not a Raspberry Pi OS system)"
    assert "synchronised (timedatectl)" in line_for(lines, "clock")
    assert "TCP (plain ws://, this machine only)" in line_for(lines, "network")
    assert "accepted the session setup" in line_for(lines, "key-accepted")
    assert 'microphone "pulse" opens at' in line_for(lines, "audio-devices")
    assert 'speaker "pulse" opens at' in line_for(lines, "audio-devices")
    # the rig's microphone carries quiet room noise: heard, not silent
    assert re.search(r'1\.0 s from "pulse": peak -\d+ dBFS', line_for(lines, "microphone"))
    assert f"button on GPIO{BUTTON_PIN}" in line_for(lines, "gpio")
    assert f"pwm LEDs on GPIO {LED_PIN}" in line_for(lines, "gpio")
    # doctor released the pins it tried: they can be used again
    from gpiozero import LED, Button

    Button(BUTTON_PIN, pin_factory=gpio).close()
    LED(LED_PIN, pin_factory=gpio).close()


def test_json_output_reports_the_same_failures_as_the_text(tmp_path, pulse, monkeypatch, gpio):
    pulse.activate(monkeypatch)
    stand_in_tool(tmp_path / "bin", "timedatectl", "echo yes")
    cfg = make_config(tmp_path, audio={"input_device": "no-such-mic", "output_device": "pulse"})
    rejecting = EmulatorConfig(rejected_keys=frozenset({KEY}))

    json_lines: list[str] = []
    text_lines: list[str] = []

    async def both() -> tuple[int, int]:
        async with Emulator(rejecting) as emu:  # one emulator, so both reports name the same port
            served = dataclasses.replace(cfg, live=dataclasses.replace(cfg.live, endpoint=emu.url))
            env = make_env(tmp_path, gpio)
            as_json = await doctor_command(served, doctor_args("--json"), printer=json_lines.append, env=env)
            as_text = await doctor_command(served, doctor_args(), printer=text_lines.append, env=env)
            return as_json, as_text

    code, text_code = asyncio.run(both())

    report = json.loads("\n".join(json_lines))
    assert code == text_code == 1
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert failed == {"key-accepted", "audio-devices", "microphone"}
    for check in report["checks"]:
        assert set(check) == {"name", "ok", "detail", "advice"}
        assert bool(check["advice"]) == (not check["ok"])
        line = line_for(text_lines, check["name"])
        if check["ok"]:
            assert line == f"PASS {check['name']}: {check['detail']}"
        else:
            assert line == f"FAIL {check['name']}: {check['detail']} — {check['advice']}"
    assert text_lines[-1] == "doctor: 3 of 11 checks failed: key-accepted, audio-devices, microphone"


# --------------------------------------------------------------------------- single checks that fail, with advice


def test_a_key_file_others_can_read_fails_with_chmod_advice(tmp_path):
    cfg = make_config(tmp_path, key_mode=0o644)
    path = tmp_path / "api_key"

    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "api-key")

    assert code == 1
    assert lines[0] == (f"FAIL api-key: key file {path} can be read by group or others (mode 644)"
                        f" — chmod 600 {path}")


def test_a_private_key_file_passes(tmp_path):
    code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path), "--only", "api-key")
    assert code == 0
    assert lines[0] == f"PASS api-key: from live.api_key_file {tmp_path / 'api_key'}"


def test_a_credential_file_is_held_to_the_same_rule(tmp_path):
    # how scripts/install.sh runs doctor: the key as the systemd credential, from a directory
    credentials = tmp_path / "etc"
    credentials.mkdir()
    credential = credentials / "gemini-api-key"
    credential.write_text(KEY)
    credential.chmod(0o640)
    env = make_env(tmp_path, environ={"CREDENTIALS_DIRECTORY": str(credentials)})

    code, lines = run_doctor(make_config(tmp_path), env, "--only", "api-key")
    assert code == 1
    assert lines[0] == f"FAIL api-key: key file {credential} can be read by group or others (mode 640) — chmod 600 {credential}"

    credential.chmod(0o600)
    code, lines = run_doctor(make_config(tmp_path), env, "--only", "api-key")
    assert code == 0
    assert lines[0] == f"PASS api-key: from systemd credential {credential}"


def test_a_missing_key_fails_for_the_google_endpoint(tmp_path):
    cfg = make_config(tmp_path)
    cfg = dataclasses.replace(cfg, live=dataclasses.replace(cfg.live, api_key_file=""))
    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "api-key", "--only", "key-accepted")
    assert code == 1
    assert lines[0].startswith("FAIL api-key: no API key found — on the Pi run `sudo scripts/install.sh --api-key-file FILE`")
    assert lines[1] == "FAIL key-accepted: not tried: no API key — see the api-key check"


def test_a_rejected_key_shows_the_services_reason(tmp_path):
    cfg = make_config(tmp_path)
    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "key-accepted",
                             emulator=EmulatorConfig(rejected_keys=frozenset({KEY})))
    assert code == 1
    line = lines[0]
    assert line.startswith("FAIL key-accepted: the service refused the session: 1008 API key not valid")
    assert "the key was refused: make a new key in Google AI Studio" in line


def test_an_input_device_that_matches_nothing(tmp_path, monkeypatch):
    file_rig(tmp_path, monkeypatch, tone(2.0))
    cfg = make_config(tmp_path, audio={"input_device": "usb mic array", "output_device": "default"})

    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "audio-devices", "--only", "microphone")

    assert code == 1
    devices, mic = lines[0], lines[1]
    assert devices.startswith('FAIL audio-devices: microphone: no input device matches "usb mic array"')
    assert '"rigmic"' in devices  # the names it could have used
    assert 'speaker "default" opens at' in devices
    assert "run `appliance devices` and set audio.input_device" in devices
    assert mic.startswith('FAIL microphone: cannot open the microphone: no input device matches "usb mic array"')


def test_a_working_i2s_style_microphone_is_heard(tmp_path, monkeypatch):
    file_rig(tmp_path, monkeypatch, tone(2.0))
    cfg = make_config(tmp_path, audio={"input_device": "rigmic", "output_device": "default", "input_channel": 0})
    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "audio-devices", "--only", "microphone")
    assert code == 0, lines
    assert lines[1].startswith('PASS microphone: 1.0 s from "rigmic": peak -')


def test_a_digitally_silent_microphone_fails_with_mixer_advice(tmp_path, monkeypatch):
    # the mic is on the left slot, but the config listens to the empty right one
    file_rig(tmp_path, monkeypatch, tone(2.0))
    cfg = make_config(tmp_path, audio={"input_device": "rigmic", "output_device": "default", "input_channel": 1})

    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "microphone")

    assert code == 1
    assert lines[0].startswith('FAIL microphone: 1.0 s from "rigmic" is digital silence (every sample is 0) — ')
    assert "alsamixer" in lines[0] and "audio.input_channel" in lines[0]


def test_under_voltage_from_vcgencmd(tmp_path):
    # stand-in for the Pi's vcgencmd: under-voltage and throttling, now and since boot
    stand_in_tool(tmp_path / "bin", "vcgencmd", 'echo "throttled=0x50005"')

    code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path), "--only", "power")

    assert code == 1
    assert lines[0] == (
        "FAIL power: under-voltage now, throttled now, under-voltage has occurred, throttling has occurred "
        "(throttled=0x50005) — the supply sags: use the official power supply for this Pi model and a short, "
        "thick USB cable; a speaker amplifier on the 5 V pin adds to the load"
    )


def test_a_healthy_vcgencmd_reading_passes(tmp_path):
    stand_in_tool(tmp_path / "bin", "vcgencmd", 'echo "throttled=0x0"')
    code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path), "--only", "power")
    assert code == 0
    assert lines[0] == "PASS power: no under-voltage or throttling since boot (throttled=0x0)"


def test_parse_throttled():
    assert parse_throttled("throttled=0x50005\n") == 0x50005
    assert parse_throttled("throttled=0x0") == 0
    assert parse_throttled("VCHI initialization failed") is None


def test_an_unsynchronised_clock_fails(tmp_path):
    stand_in_tool(tmp_path / "bin", "timedatectl", "echo no")  # stand-in for timedatectl before NTP got through

    code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path), "--only", "clock")

    assert code == 1
    assert lines[0].startswith("FAIL clock: not synchronised yet (timedatectl says NTPSynchronized=no)")
    assert "a Pi has no battery-backed clock" in lines[0] and "timedatectl timesync-status" in lines[0]


def test_without_timedatectl_the_year_decides(tmp_path):
    # like a container: timedatectl exists but cannot talk to systemd
    stand_in_tool(tmp_path / "bin", "timedatectl",
                  'echo "System has not been booted with systemd as init system (PID 1)." >&2; exit 1')
    booted_in_1970 = make_env(tmp_path, now=lambda: datetime(1970, 1, 1, 0, 3, tzinfo=timezone.utc))
    code, lines = run_doctor(make_config(tmp_path), booted_in_1970, "--only", "clock")
    assert code == 1
    assert lines[0].startswith("FAIL clock: timedatectl gave no answer (System has not been booted with systemd")
    assert "the clock reads 1970-01-01 00:03 UTC, which cannot be right" in lines[0]

    code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path), "--only", "clock")
    assert code == 0
    assert "which is plausible (synchronisation not confirmed)" in lines[0]


def test_pins_that_cannot_dim_fail_the_gpio_check(tmp_path):
    from gpiozero.pins.mock import MockFactory

    plain = MockFactory()  # pins without PWM, like a driver that cannot dim
    try:
        code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path, plain), "--only", "gpio")
    finally:
        plain.reset()
        plain.close()
    assert code == 1
    assert lines[0].startswith("FAIL gpio: LEDs: the GPIO driver in use cannot dim LEDs")
    assert lines[0].endswith('fix the [leds] pins or the wiring, or set leds.kind = "none"')


@pytest.fixture
def no_gpio(monkeypatch):
    """gpiozero left to its own choice of driver, as on a laptop or CI box: it finds none."""
    from gpiozero import Device

    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(Device, "pin_factory", None)


NO_GPIO = ("this machine has no GPIO: set button.enabled = false and use `appliance run --keyboard` "
           "or `appliance ctl press`")


def test_gpio_on_a_machine_that_is_not_a_pi(tmp_path, no_gpio):
    cfg = make_config(tmp_path, leds={"kind": "none"})
    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "gpio")
    assert code == 1
    line = lines[0]
    assert line.startswith("FAIL gpio: button: no usable GPIO on this machine")
    assert line.endswith(f"— {NO_GPIO}; or, to keep this config for the Pi, check the rest with "
                         "`appliance doctor --keyboard`")
    assert line.count("appliance run --keyboard") == 1  # the button's own advice is not repeated


def test_gpio_on_a_machine_that_is_not_a_pi_with_leds_configured_says_both(tmp_path, no_gpio):
    code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path), "--only", "gpio")
    assert code == 1
    assert lines[0].endswith(f'— {NO_GPIO}; set leds.kind = "none" too (LEDs need GPIO as well)')


def test_keyboard_mode_passes_the_gpio_check_on_a_machine_that_is_not_a_pi(tmp_path, no_gpio):
    cfg = make_config(tmp_path, leds={"kind": "none"})  # button.enabled = true, as the Pi's config has it
    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "gpio", "--keyboard")
    assert code == 0, lines
    assert lines == [
        "PASS gpio: skipped: button not checked (--keyboard: `appliance run --keyboard` stands in for it) "
        'and leds.kind = "none"',
        "doctor: all 1 checks passed (1 skipped)",
    ]


def test_keyboard_mode_still_checks_the_leds(tmp_path, no_gpio):
    code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path), "--only", "gpio", "--keyboard")
    assert code == 1
    assert lines[0].startswith("FAIL gpio: LEDs: ")


def test_keyboard_mode_leaves_the_button_pin_alone(tmp_path, gpio):
    """A button pin another program holds fails the check; under --keyboard doctor does not touch it."""
    from gpiozero import Button

    held = Button(BUTTON_PIN, pin_factory=gpio)
    try:
        code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path, gpio), "--only", "gpio")
        assert code == 1
        assert lines[0].startswith(f"FAIL gpio: button: GPIO{BUTTON_PIN} is already in use")

        code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path, gpio), "--only", "gpio", "--keyboard")
    finally:
        held.close()
    assert code == 0, lines
    assert lines[0] == ("PASS gpio: button not checked (--keyboard: `appliance run --keyboard` stands in for it); "
                        f"pwm LEDs on GPIO {LED_PIN} via MockFactory")


def test_the_doctor_help_says_how_a_machine_without_gpio_is_treated():
    result = subprocess.run([sys.executable, "-m", "appliance", "doctor", "--help"], capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "--keyboard I will press with the keyboard (`appliance run --keyboard`) or `appliance ctl press`" in text
    assert 'with button.enabled = false and leds.kind = "none" the check is skipped and passes' in text


def test_gpio_is_skipped_when_nothing_is_wired(tmp_path):
    cfg = make_config(tmp_path, leds={"kind": "none"}, button={"enabled": False})
    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "gpio")
    assert code == 0
    assert lines[0] == 'PASS gpio: skipped: button.enabled = false and leds.kind = "none"'


def test_config_refuses_plain_ws_to_another_host_and_a_shared_pin(tmp_path):
    cfg = make_config(tmp_path, endpoint="ws://192.0.2.7/ws", leds={"kind": "pwm", "pin": BUTTON_PIN})

    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "config")

    assert code == 1
    assert "plain ws://, which would send the API key in clear" in lines[0]
    assert f"GPIO{BUTTON_PIN} is both button.pin and in leds.pin" in lines[0]
    assert lines[0].endswith("then run doctor again")


def test_low_disk_space_fails(tmp_path):
    tight = make_env(tmp_path, disk_usage=lambda path: Usage(8 << 30, (8 << 30) - (40 << 20), 40 << 20))
    code, lines = run_doctor(make_config(tmp_path), tight, "--only", "disk")
    assert code == 1
    assert lines[0].startswith(f"FAIL disk: only 40.0 MB free under {tmp_path / 'state'} (at {tmp_path})")
    assert "sudo apt clean" in lines[0]


def test_a_hung_check_does_not_hang_doctor(tmp_path):
    never = threading.Event()

    def stuck_lookup(*_args, **_kwargs):
        never.wait(30)  # a resolver that never answers
        raise OSError("released")

    env = make_env(tmp_path, getaddrinfo=stuck_lookup, check_timeout_s=0.5)
    started = time.monotonic()
    try:
        code, lines = run_doctor(make_config(tmp_path), env, "--only", "network", "--only", "disk")
    finally:
        never.set()
    assert time.monotonic() - started < 3
    assert code == 1
    assert lines[0] == "FAIL network: no result within 0.5 s — check the network connection and DNS"
    assert lines[1].startswith("PASS disk: ")


# --------------------------------------------------------------------------- MCP servers


def with_mcp_servers(tmp_path: Path, servers: str) -> Config:
    """The doctor's config with `[[mcp.servers]]` read from a file by the loader, as the daemon reads it."""
    from appliance.settings.loader import load_config

    path = tmp_path / "mcp.toml"
    path.write_text("[mcp]\nlist_timeout_s = 20\n" + servers)
    return dataclasses.replace(make_config(tmp_path), mcp=load_config(str(path), env={}).mcp)


def test_each_mcp_server_gets_one_line_and_no_token_is_ever_printed(tmp_path, capfd):
    pytest.importorskip("mcp", reason="the MCP tests need the optional SDK: pip install -e '.[home]'")
    from mcp_servers.rig import SERVER_SCRIPT, HttpHomeServer, write_token

    right, wrong = tmp_path / "home-token", tmp_path / "old-token"
    tokens = [write_token(right), write_token(wrong)]
    home = HttpHomeServer(right)
    down = HttpHomeServer(right)  # bound but never started: connections are refused
    home.start()
    try:
        cfg = with_mcp_servers(tmp_path, f"""
[[mcp.servers]]
name = "home"
url = "{home.url}"
token_file = "{right}"

[[mcp.servers]]
name = "kitchen"
url = "{home.url}"
token_file = "{wrong}"

[[mcp.servers]]
name = "garage"
url = "{down.url}"
token_file = "{right}"

[[mcp.servers]]
name = "desk"
command = "{sys.executable}"
args = ["{SERVER_SCRIPT}", "--stdio"]
exclude = ["hang*"]
""")
        code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "mcp")
    finally:
        home.stop()
        down.stop()
    captured = capfd.readouterr()
    printed = "\n".join([*lines, captured.out, captured.err])

    assert code == 1
    assert lines[0] == "PASS mcp: home: reachable, authorised, 6 tools"
    assert lines[1] == (f"FAIL mcp: kitchen: the server refused the token in {wrong} (HTTP 401); put a valid "
                        "access token there — check mcp.servers[1].token_file: it must hold a long-lived access "
                        "token (Home Assistant: your profile, Security tab), alone on one line, chmod 600")
    assert lines[2].startswith(f"FAIL mcp: garage ({down.url}): unreachable: cannot connect: Connection refused — "
                               "check that the server is running and that mcp.servers[2].url is its address")
    assert lines[3] == "PASS mcp: desk: started, 4 tools"
    assert lines[4] == "doctor: 2 of 4 checks failed: mcp"
    leaked = any(token in printed for token in tokens)  # a boolean: a failure must not print the token
    assert not leaked, "a token was printed"


def test_mcp_is_skipped_without_servers_and_says_how_to_install_the_sdk_when_it_is_missing(tmp_path, monkeypatch):
    code, lines = run_doctor(make_config(tmp_path), make_env(tmp_path), "--only", "mcp")
    assert (code, lines[0]) == (0, "PASS mcp: skipped: no [[mcp.servers]]")

    token_file = tmp_path / "home-token"
    token_file.write_text("tok-not-sent-anywhere\n")
    token_file.chmod(0o600)
    cfg = with_mcp_servers(tmp_path, f"""
[[mcp.servers]]
name = "home"
url = "http://homeassistant.local:8123/api/mcp"
token_file = "{token_file}"
""")
    monkeypatch.setitem(sys.modules, "mcp", None)  # import mcp now raises ImportError, as without the extra
    monkeypatch.delitem(sys.modules, "appliance.mcp.client", raising=False)
    code, lines = run_doctor(cfg, make_env(tmp_path), "--only", "mcp")
    assert code == 1 and len(lines) == 2
    assert lines[0].startswith("FAIL mcp: servers configured (home), but the mcp package is not installed; "
                               "install it with: pip install 'appliance[home]' — run that pip in the "
                               "appliance's venv")


# --------------------------------------------------------------------------- TLS to a wss:// endpoint


@pytest.fixture
def tls_server(tmp_path):
    """A TLS listener on 127.0.0.1 with a throwaway self-signed certificate; yields (port, cert path)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=20,
    )
    return cert, key


def run_against_tls(cert: Path, key: Path, env: DoctorEnv, tmp_path: Path) -> tuple[int, list[str]]:
    lines: list[str] = []

    async def main() -> int:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        async def greet(_reader, writer):
            writer.close()

        server = await asyncio.start_server(greet, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        cfg = make_config(tmp_path, endpoint=f"wss://127.0.0.1:{port}/ws")
        try:
            return await doctor_command(cfg, doctor_args("--only", "network"), printer=lines.append, env=env)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(main()), lines


def test_tls_to_a_trusted_endpoint_passes(tmp_path, tls_server):
    cert, key = tls_server
    trusting = make_env(tmp_path, ssl_context=lambda: ssl.create_default_context(cafile=str(cert)))
    code, lines = run_against_tls(cert, key, trusting, tmp_path)
    assert code == 0, lines
    assert re.fullmatch(r"PASS network: 127\.0\.0\.1; TLS to port \d+ connects, TLSv1\.[23] handshake done",
                        lines[0])


def test_a_certificate_that_does_not_verify_points_at_the_clock(tmp_path, tls_server):
    cert, key = tls_server
    code, lines = run_against_tls(cert, key, make_env(tmp_path), tmp_path)
    assert code == 1
    assert "the certificate did not verify (self-signed certificate)" in lines[0]
    assert "check the clock" in lines[0]

