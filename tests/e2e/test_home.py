"""The box and the house: a home server's tools (MCP) called by the model through the running daemon,
and `ctl say` announcements. A real MCP server (tests/mcp_servers) on loopback with a bearer token,
the daemon on the PulseAudio rig, the strict emulator scripting the tool calls by name."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

pytest.importorskip("mcp", reason="the MCP tests need the optional SDK: pip install -e '.[home]'")

from appliance.app.conductor import State  # noqa: E402
from appliance.audio import speech  # noqa: E402
from appliance.audio.frames import RATE  # noqa: E402
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario  # noqa: E402
from appliance.ipc.client import request  # noqa: E402
from appliance.mcp.config import McpSettings  # noqa: E402
from appliance.mcp.manager import UP  # noqa: E402
from harness import BUTTON_PIN, Running, config_for, speak  # noqa: E402
from mcp_servers.rig import HttpHomeServer, write_token  # noqa: E402

QUESTION = "Turn on the kitchen light please"


@pytest.fixture(scope="module")
def question() -> bytes:
    pcm = speech.spoken(QUESTION, RATE)
    assert pcm, "espeak-ng is needed (scripts/bootstrap.sh installs it)"
    return pcm


async def ask(daemon, pulse, gpio, pcm: bytes) -> int:
    conductor = daemon.conductor
    mark = conductor.seq
    button = gpio.pin(BUTTON_PIN)
    button.drive_low()
    await conductor.wait_state(State.LISTENING, 5, since=mark)
    await speak(pulse, pcm)
    button.drive_high()
    thinking = await conductor.wait_state(State.THINKING, 10, since=mark)
    return await conductor.wait_state(State.IDLE, 30, since=thinking)


def test_the_model_turns_on_a_home_light_a_broken_tool_says_so_and_a_hung_one_times_out(
        pulse, question, gpio, tmp_path, monkeypatch, caplog):
    pulse.activate(monkeypatch)
    caplog.set_level(logging.DEBUG)
    token = write_token(tmp_path / "ha-token")
    home = HttpHomeServer(tmp_path / "ha-token")
    home.start()

    async def scenario():
        calls = [("light_on", {"area": "kitchen"}), ("broken", {}), ("hang", {})]
        emu = Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.3, tool_calls=calls))
        await emu.start()
        try:
            cfg = dataclasses.replace(config_for(emu, tmp_path), mcp=McpSettings(
                servers=(home.entry(),), call_timeout_s=2.0, list_timeout_s=10.0, retry_s=0.5))
            async with Running(cfg, monkeypatch, gpio) as daemon:
                assert await daemon.home.wait_for(lambda s: all(x.state == UP for x in s), 45)
                # the tools came after the first setup: a new conversation declares them while idle
                await emu.wait_for(lambda e: any(c.setup_complete and "light_on" in str(c.setup)
                                                 for c in e.connections), 20)
                await daemon.conductor.wait_state(State.IDLE, 10)
                await ask(daemon, pulse, gpio, question)
                status = await request(daemon.control_path, "status")
                # the session serves the next turn after a hung tool
                await ask(daemon, pulse, gpio, question)
                return emu.turns, status, daemon.conductor.turns
        finally:
            await emu.stop()
            home.stop()

    turns, status, metrics = asyncio.run(asyncio.wait_for(scenario(), 150))
    answered = [t for t in turns if t.tool_responses]
    first = {r["name"]: r for r in answered[0].tool_responses}
    assert set(first) == {"light_on", "broken", "hang"}
    call_ids = {c["name"]: c["id"] for c in answered[0].tool_calls}
    assert all(first[name]["id"] == call_ids[name] for name in first)  # each answer carries its call's id
    assert first["light_on"]["response"]["output"]["state"] == "on"  # the server's light is on now
    assert "error" in first["broken"]["response"]
    assert "error" in first["hang"]["response"]
    assert [m.outcome for m in metrics][-2:] == ["answered", "answered"]
    assert status["home_servers"] and status["home_servers"][0].startswith("home (") and ": up" in status["home_servers"][0]
    assert token not in caplog.text  # the bearer token is in no log line, at any level


def test_ctl_say_speaks_a_sentence_through_the_model_and_offline_it_says_why(pulse, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        emu = Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.3))
        await emu.start()
        try:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                mark = conductor.seq
                said = await request(daemon.control_path, "say", text="The washing machine is done")
                thinking = await conductor.wait_state(State.THINKING, 5, since=mark)
                await conductor.wait_state(State.IDLE, 20, since=thinking)
                await emu.stop()  # the router goes down
                await conductor.wait_state(State.OFFLINE, 10, since=thinking)
                offline = await request(daemon.control_path, "say", text="Dinner is ready")
                status = await request(daemon.control_path, "status")
                return said, offline, status, emu.turns, conductor.turns, daemon.player.stats
        finally:
            await emu.stop()

    said, offline, status, turns, metrics, _stats = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert said["ok"] and said["announcement"] == "speaking"
    assert turns[-1].source == "text" and turns[-1].input_text.endswith(": The washing machine is done")
    assert metrics[-1].mode == "announcement" and metrics[-1].outcome == "answered"
    assert not offline["ok"] and "offline" in offline["error"]
    assert [a["state"] for a in status["announcements"]] == ["spoken", "dropped"]


def test_ctl_say_during_a_question_waits_for_its_answer(pulse, question, gpio, tmp_path, monkeypatch):
    """Someone is asking something: the announcement is not spoken over them, but right after."""
    pulse.activate(monkeypatch)

    async def scenario():
        emu = Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.3))
        await emu.start()
        try:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                mark = conductor.seq
                button = gpio.pin(BUTTON_PIN)
                button.drive_low()
                await conductor.wait_state(State.LISTENING, 5, since=mark)
                said = await request(daemon.control_path, "say", text="The oven is hot")
                texts_while_asking = [t for t in emu.turns if t.source == "text"]
                await speak(pulse, question)
                button.drive_high()
                thinking = await conductor.wait_state(State.THINKING, 10, since=mark)
                idle = await conductor.wait_state(State.IDLE, 30, since=thinking)
                announced = await conductor.wait_state(State.THINKING, 10, since=idle)
                await conductor.wait_state(State.IDLE, 30, since=announced)
                return said, texts_while_asking, emu.turns, conductor.turns
        finally:
            await emu.stop()

    said, texts_while_asking, turns, metrics = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert said["ok"] and said["announcement"] == "waiting"
    assert texts_while_asking == []
    assert [t.source for t in turns] == ["audio", "text"]  # the question first, then the announcement
    assert turns[1].input_text.endswith(": The oven is hot")
    assert [m.mode for m in metrics] == ["hold", "announcement"]
