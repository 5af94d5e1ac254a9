"""Kitchen timers end to end: the emulator scripts the model's tool calls, the daemon runs
them on the device, and the timers ring on the speaker and LED with or without a network."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from appliance.audio import speech
from appliance.audio.frames import RATE
from appliance.app.conductor import State
from appliance.ipc.client import request
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario
from harness import BUTTON_PIN, Running, config_for, speak

QUESTION = "Set a timer for the eggs please."


@pytest.fixture(scope="module")
def question() -> bytes:
    pcm = speech.spoken(QUESTION, RATE)
    assert pcm, "espeak-ng is needed (scripts/bootstrap.sh installs it)"
    return pcm


async def ask(daemon, rig, pcm: bytes) -> int:
    """A tap, the question, and the whole reply; returns the transition mark of its end."""
    conductor = daemon.conductor
    mark = conductor.seq
    assert (await request(daemon.control_path, "tap"))["ok"]
    await speak(rig, pcm)
    thinking = await conductor.wait_state(State.THINKING, 10, since=mark)
    return await conductor.wait_state(State.IDLE, 20, since=thinking)


def test_a_timer_set_by_the_model_rings_offline_and_a_press_stops_it(pulse, question, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)
    recording = tmp_path / "speaker.raw"

    async def scenario():
        scen = Scenario(reply="tone", tone_seconds=0.3, tool_calls=[("set_timer", {"seconds": 3, "label": "eggs"})])
        emu = Emulator(EmulatorConfig(pace=0), scen)
        await emu.start()
        try:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                await ask(daemon, pulse, question)
                call = emu.turns[0].tool_calls[0]
                answer = emu.turns[0].tool_responses[0]
                timers = (await request(daemon.control_path, "timers"))["timers"]
                mark = conductor.seq
                await emu.stop()  # the network goes away; the timer must not care
                await conductor.wait_state(State.OFFLINE, 10, since=mark)
                pulse.start_recording_speaker(recording, rate=24000)
                ringing = await conductor.wait_state(State.ALARM, 10, since=mark)
                shown = (conductor.lights.state, conductor.lights.pattern.kind)
                await asyncio.sleep(2.5)  # let it ring a little
                button = gpio.pin(BUTTON_PIN)
                button.drive_low()  # pressed: the press is spent on the alarm
                await conductor.wait_state(State.OFFLINE, 5, since=ringing)
                button.drive_high()
                pulse.stop_recording_speaker()
                after = (await request(daemon.control_path, "timers"))["timers"]
                return call, answer, timers, shown, after
        finally:
            await emu.stop()

    call, answer, timers, shown, after = asyncio.run(scenario())
    assert answer["id"] == call["id"] and answer["name"] == "set_timer"
    assert answer["response"]["output"]["status"] == "started"
    assert [t["label"] for t in timers] == ["eggs"]
    assert shown == ("alarm", "blink")
    assert after == []
    # the alarm earcon was on the speaker
    played = np.frombuffer(recording.read_bytes(), "<i2").astype(np.float64) / 32768
    assert played.size and np.sqrt(np.mean(played**2)) > 0.005


def test_pending_timers_survive_a_restart(pulse, question, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        scen = Scenario(reply="tone", tone_seconds=0.3, tool_calls=[("set_timer", {"seconds": 600, "label": "roast"})])
        async with Emulator(EmulatorConfig(pace=0), scen) as emu:
            cfg = config_for(emu, tmp_path)
            async with Running(cfg, monkeypatch, gpio) as daemon:
                await ask(daemon, pulse, question)
            gpio.reset()
            async with Running(cfg, monkeypatch, gpio) as daemon:
                return (await request(daemon.control_path, "status"))["timers"]

    timers = asyncio.run(scenario())
    assert [t["label"] for t in timers] == ["roast"]
    assert 540 < timers[0]["remaining_s"] <= 600


def test_a_cancelled_tool_call_takes_its_timer_back(pulse, question, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        scen = Scenario(reply="tone", tone_seconds=0.3, cancel_tool_calls=True,
                        tool_calls=[("set_timer", {"seconds": 300, "label": "pasta"})])
        async with Emulator(EmulatorConfig(pace=0), scen) as emu:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                await ask(daemon, pulse, question)
                timers = (await request(daemon.control_path, "timers"))["timers"]
                return emu, timers

    emu, timers = asyncio.run(scenario())
    assert emu.turns[0].cancelled_tool_calls == [emu.turns[0].tool_calls[0]["id"]]
    assert timers == []


def test_bad_arguments_get_an_error_answer_and_the_session_stays_up(pulse, question, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        scen = Scenario(reply="tone", tone_seconds=0.3, tool_calls=[("set_timer", {"seconds": -5})])
        async with Emulator(EmulatorConfig(pace=0), scen) as emu:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                await ask(daemon, pulse, question)
                emu.scenario = Scenario(reply="tone", tone_seconds=0.3)
                await ask(daemon, pulse, question)  # and the next question works on the same connection
                return emu

    emu = asyncio.run(scenario())
    error = emu.turns[0].tool_responses[0]["response"]["error"]
    assert error["code"] == "bad_arguments" and "seconds" in error["message"]
    assert len(emu.connections) == 1 and len(emu.turns) == 2 and emu.turns[1].turn_complete
