"""The running appliance for end-to-end tests: a Daemon in the test's event loop, the
PulseAudio rig as its sound card, gpiozero's MockFactory as its GPIO."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from appliance.audio.frames import RATE
from appliance.app.conductor import State
from appliance.settings.schema import AudioConfig, ButtonConfig, Config, ControlConfig, LedsConfig, LiveConfig, StateConfig
from appliance.app.daemon import Daemon
from appliance.emulator.server import Emulator
from rigs import PulseRig

KEY = "test-key-daemon-5c1f"
BUTTON_PIN, LED_PIN = 17, 12


def config_for(emu: Emulator, tmp_path: Path, **live) -> Config:
    return dataclasses.replace(
        Config(),
        live=dataclasses.replace(LiveConfig(), endpoint=emu.url, **live),
        audio=dataclasses.replace(AudioConfig(), input_device="pulse", output_device="pulse"),
        button=dataclasses.replace(ButtonConfig(), pin=BUTTON_PIN, debounce_ms=5),
        leds=dataclasses.replace(LedsConfig(), kind="pwm", pin=LED_PIN, idle_brightness=0.0),
        control=ControlConfig(socket=str(tmp_path / "control.sock")),
        state=StateConfig(dir=str(tmp_path / "state")),
    )


async def eventually(predicate, timeout: float, what: str) -> None:
    """Poll a condition with a deadline (for values with no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Running:
    """A Daemon running in this event loop, torn down by SIGTERM semantics (request_stop)."""

    def __init__(self, cfg: Config, monkeypatch, gpio) -> None:
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        self.daemon = Daemon(cfg, pin_factory=gpio, printer=lambda _line: None)
        self.task: asyncio.Task[int] | None = None

    async def __aenter__(self) -> Daemon:
        self.task = asyncio.create_task(self.daemon.run())
        await eventually(lambda: self.daemon.conductor is not None or self.task.done(), 15, "the daemon to start")
        if self.task.done():
            self.task.result()
        conductor = self.daemon.conductor
        await conductor.wait_state(State.IDLE, 15)
        # the rig's capture stream starts late; wait until frames flow
        await eventually(lambda: self.daemon.capture.stats.callbacks > 25, 15, "microphone callbacks")
        return self.daemon

    async def __aexit__(self, *exc) -> None:
        self.daemon.request_stop()
        assert await asyncio.wait_for(self.task, 10) == 0


async def speak(rig: PulseRig, pcm: bytes) -> None:
    player = rig.play_into_mic(pcm, RATE)
    await asyncio.to_thread(player.wait, 30)


async def ask_by_button(daemon, rig: PulseRig, gpio, pcm: bytes) -> int:
    """Hold the GPIO button, say `pcm`, let go; the seq of the idle state after the answer."""
    conductor = daemon.conductor
    mark = conductor.seq
    button = gpio.pin(BUTTON_PIN)
    button.drive_low()
    await conductor.wait_state(State.LISTENING, 5, since=mark)
    await speak(rig, pcm)
    button.drive_high()
    thinking = await conductor.wait_state(State.THINKING, 10, since=mark)
    return await conductor.wait_state(State.IDLE, 30, since=thinking)


def led_levels(gpio) -> list[float]:
    return [state for _, state in gpio.pin(LED_PIN).states] if hasattr(gpio.pin(LED_PIN).states[0], "state") else [
        s.state for s in gpio.pin(LED_PIN).states
    ]


