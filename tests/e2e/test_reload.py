"""`systemctl reload appliance`: SIGHUP makes the daemon read its config again.

As a real `appliance --config FILE --set ... run` against the emulator on the PulseAudio rig:
live settings apply without touching the conversation, a new voice waits for the reply to play
out and then opens exactly one new session, a broken file changes nothing, and an audio device
says a restart is needed.  In process, with gpiozero's MockFactory: the LED and the alarm level
really change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import socket
import sys
import threading
from pathlib import Path

import pytest

from appliance.app.conductor import State
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario
from appliance.settings.errors import ConfigError
from appliance.settings.loader import load_config
from harness import KEY, LED_PIN, Running, config_for, speak
from sound_checks import spoken_question
from waiting import wait_until

QUESTION = "How long do I boil an egg?"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def question() -> bytes:
    return spoken_question(QUESTION)


def _voice(setup: dict | None) -> str | None:
    if not setup:
        return None
    return setup["generationConfig"]["speechConfig"]["voiceConfig"]["prebuiltVoiceConfig"]["voiceName"]


def _config_text(*, voice: str = "Kore", output_device: str = "pulse", brightness: float = 1.0,
                 alarm_volume: int = 85) -> str:
    return (f'[live]\nvoice = "{voice}"\n'
            f'[audio]\ninput_device = "pulse"\noutput_device = "{output_device}"\n'
            f'[leds]\nmax_brightness = {brightness}\n'
            f'[timers]\nalarm_volume = {alarm_volume}\n')


class Stderr:
    """The daemon's log lines as they come, to wait on."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while line := await self._stream.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()

    async def wait(self, pattern: str, since: int, what: str) -> int:
        """The index of the first line from `since` on that matches `pattern`."""
        regex = re.compile(pattern)

        def found() -> int | None:
            return next((i for i in range(since, len(self.lines)) if regex.search(self.lines[i])), None)

        try:
            async with asyncio.timeout(TIMEOUT), self._changed:
                await self._changed.wait_for(lambda: found() is not None)
        except TimeoutError:
            raise AssertionError(f"no log line for {what}; the log ends:\n" + "\n".join(self.lines[-15:])) from None
        index = found()
        assert index is not None
        return index

    def matching(self, text: str, since: int) -> list[str]:
        return [line for line in self.lines[since:] if text in line]


class Notifications:
    """systemd's side of sd_notify: a datagram socket read on a thread (the kernel queues only a few)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.2)
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while self._running.is_set():
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self._running.clear()
        self._thread.join(5)
        self._sock.close()


def _readiness(messages: list[str]) -> list[str]:
    """READY and RELOADING (with the MONOTONIC_USEC systemd wants beside it) in the order they came."""
    said = []
    for message in messages:
        if message.startswith("READY=1"):
            said.append("READY")
        elif message.startswith("RELOADING=1"):
            said.append("RELOADING" if "\nMONOTONIC_USEC=" in message else "RELOADING without MONOTONIC_USEC")
    return said


def test_sighup_reloads_the_config_of_a_running_appliance(pulse, question, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(_config_text())
    sock = tmp_path / "run.sock"
    overrides = ["--set", f"control.socket={sock}", "--set", f"state.dir={tmp_path / 'state'}",
                 "--set", "button.debounce_ms=5"]

    async def scenario():
        async with Emulator(EmulatorConfig(pace=1.0), Scenario(reply="tone", tone_seconds=4.0)) as emu:
            notify = Notifications(tmp_path / "notify.sock")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "GEMINI_"))}
            env.update(pulse.env())
            env.update({"GEMINI_API_KEY": KEY, "GPIOZERO_PIN_FACTORY": "mock", "NOTIFY_SOCKET": str(notify.path)})
            cli = ["--config", str(config), "--set", f"live.endpoint={emu.url}", *overrides]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "appliance", *cli, "run",
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=env,
            )
            log = Stderr(proc.stderr)

            async def ctl(*words: str) -> str:
                child = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "appliance", "--set", f"control.socket={sock}", "ctl", *words,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT, env=env,
                )
                out, _ = await child.communicate()
                assert child.returncode == 0, out.decode()
                return out.decode()

            async def ask() -> int:
                """Press, speak, release until the service took the question; the log index of "speaking"."""
                for _ in range(3):  # the rig's microphone may start late: a turn without speech is retried
                    mark = len(log.lines)
                    await ctl("press")
                    await speak(pulse, question)
                    await ctl("release")
                    end = await log.wait(r"-> (thinking|idle)", mark, "the end of the turn")
                    if "-> thinking" in log.lines[end]:
                        return await log.wait(r"-> speaking", end, "the reply playing")
                raise AssertionError("the microphone never heard the question")

            async def reload(text: str) -> int:
                config.write_text(text)
                mark = len(log.lines)
                proc.send_signal(signal.SIGHUP)
                return mark

            try:
                await log.wait(r"appliance running", 0, "the start")
                await emu.wait_for(lambda e: e.connections and e.connections[0].setup_complete, TIMEOUT)
                await log.wait(r"-> idle", 0, "idle")

                # (a) a conversation exists; LED brightness and alarm volume apply without a new session
                await log.wait(r"-> idle: reply played", await ask(), "the first reply")
                mark = await reload(_config_text(brightness=0.3, alarm_volume=95))
                applied = log.lines[await log.wait(r"config reloaded", mark, "the live reload")]
                assert "applied leds.max_brightness, timers.alarm_volume" in applied, applied
                live = dict(connections=len(emu.connections), lines=log.lines[mark:])

                # (b) a new voice waits for the reply, then exactly one new session asks for it
                speaking = await ask()
                mark = await reload(_config_text(voice="Puck", brightness=0.3, alarm_volume=95))
                announced = await log.wait(r"live\.voice", mark, "the new-session reload")
                connections_during_reply = len(emu.connections)
                played = await log.wait(r"speaking -> idle: reply played", speaking, "the reply played out")
                await emu.wait_for(lambda e: len(e.connections) == 2 and e.connections[1].setup_complete, TIMEOUT)
                first_reply = emu.turns[-1].ending
                await log.wait(r"connecting -> idle", played, "idle in the new session")
                voice_lines = log.matching("live.voice", speaking)
                status_b = await ctl("status")

                # (c) a broken file is refused; the running settings stay
                broken = _config_text(voice="Charon").replace('voice = "Charon"', 'voice = "Charon')
                mark = await reload(broken)
                refused = log.lines[await log.wait(r"config not reloaded", mark, "the refusal")]
                status_c = await ctl("status")
                with pytest.raises(ConfigError) as at_start:
                    load_config(str(config), overrides=overrides[1::2])
                refused_lines = log.matching("reload", mark)

                # (d) another speaker needs a restart, which the reload says
                mark = await reload(_config_text(voice="Puck", output_device="default", brightness=0.3,
                                                 alarm_volume=95))
                restart = log.lines[await log.wait(r"restart the appliance", mark, "the restart notice")]
                await ctl("status")  # still answering
                connections_after = len(emu.connections)

                proc.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(proc.wait(), 5)
                await log.task
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                notify.close()
            return dict(emu=emu, live=live, connections_during_reply=connections_during_reply,
                        announced_before_played=announced < played, first_reply=first_reply,
                        voice_lines=voice_lines, status_b=status_b, refused=refused, status_c=status_c,
                        start_error=str(at_start.value), refused_lines=refused_lines, restart=restart,
                        connections_after=connections_after, code=code, log=log.lines,
                        notes=notify.messages)

    r = asyncio.run(scenario())
    emu = r["emu"]
    # (a) nothing else happened: no new session, no restart or new-conversation notice
    assert r["live"]["connections"] == 1
    assert not [line for line in r["live"]["lines"] if "restart" in line or "new conversation" in line]
    # (b) the reload came while the reply played, which went on to its end; then one new session
    assert r["announced_before_played"] and r["connections_during_reply"] == 1
    assert r["first_reply"] == "complete"
    assert [_voice(c.setup) for c in emu.connections] == ["Kore", "Puck"]
    assert emu.connections[1].resumed_handle is None  # a new conversation, not the old one resumed
    assert len(r["voice_lines"]) == 1 and "new conversation" in r["voice_lines"][0]
    assert re.search(r"voice:\s+Puck", r["status_b"])
    # (c) one line with the error the start would print; the voice in use stays
    assert r["start_error"] in r["refused"]
    assert len(r["refused_lines"]) == 1
    assert re.search(r"voice:\s+Puck", r["status_c"])
    # (d) the restart notice names only the device: --set and the environment were read again
    assert "audio.output_device changed; restart the appliance to apply" in r["restart"]
    assert r["connections_after"] == 2
    assert _readiness(r["notes"]) == ["READY"] + ["RELOADING", "READY"] * 4
    assert r["code"] == 0, "\n".join(r["log"][-20:])
    assert not any(KEY in line for line in r["log"])


def test_a_reload_dims_the_led_and_raises_the_alarm_in_place(pulse, gpio, tmp_path, monkeypatch):
    """The LIVE settings reach the parts: the LED pin and the alarm level change, the session stays."""
    pulse.activate(monkeypatch)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone")) as emu:
            cfg = config_for(emu, tmp_path)
            cfg = dataclasses.replace(cfg, leds=dataclasses.replace(cfg.leds, idle_brightness=1.0, max_brightness=1.0))
            reloaded = dataclasses.replace(
                cfg, leds=dataclasses.replace(cfg.leds, max_brightness=0.3),
                timers=dataclasses.replace(cfg.timers, alarm_volume=95),
            )
            running = Running(cfg, monkeypatch, gpio)
            running.daemon.load = lambda: reloaded
            async with running as daemon:
                led = gpio.pin(LED_PIN)
                await wait_until(lambda: led.state == 1.0, "the idle LED at full brightness", TIMEOUT)
                started = daemon.session.conversation_started_at
                plan = daemon.reload()
                await wait_until(lambda: 0 < led.state <= 0.3 + 1e-9, "the LED dimmed to 0.3", TIMEOUT)
                return emu, plan, daemon.timers.alarm_level, daemon.conductor.state, \
                    daemon.session.conversation_started_at == started

    emu, plan, alarm_level, state, same_conversation = asyncio.run(scenario())
    assert plan is not None and plan.live == ("leds.max_brightness", "timers.alarm_volume")
    assert alarm_level == 95
    assert state is State.IDLE and same_conversation
    assert len(emu.connections) == 1
