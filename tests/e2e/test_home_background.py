"""A slow home tool the model does not wait for: declared NON_BLOCKING, answered later, told when idle.

The daemon on the PulseAudio rig, a real MCP server (tests/mcp_servers) on loopback whose
`slow_scene` takes longer than `call_timeout_s`, and the emulator on the default model (whose
calls are BLOCKING unless a declaration asks for NON_BLOCKING).
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

pytest.importorskip("mcp", reason="the MCP tests need the optional SDK: pip install -e '.[home]'")

from appliance.emulator.scenario import tone_pcm  # noqa: E402
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario  # noqa: E402
from appliance.mcp.config import McpSettings  # noqa: E402
from harness import Running, ask_by_button, config_for  # noqa: E402
from mcp_servers.rig import HttpHomeServer, until_home_tools_declared, write_token  # noqa: E402
from sound_checks import spoken_question  # noqa: E402

SCENE_S = 2.5  # longer than call_timeout_s below: only the longer non_blocking timeout lets it finish
TONE_S = 0.3  # each part of the model's reply


def declared(setup: dict, name: str) -> dict:
    for tool in setup.get("tools", []):
        for fn in tool.get("functionDeclarations", []):
            if fn["name"] == name:
                return fn
    raise AssertionError(f"{name} is not declared in the setup")


def test_a_slow_scene_is_declared_non_blocking_answered_later_and_told_when_idle(pulse, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)
    question = spoken_question("Set the movie scene please")
    write_token(tmp_path / "ha-token")
    home = HttpHomeServer(tmp_path / "ha-token")
    home.start()

    async def scenario():
        calls = [("slow_scene", {"name": "movie", "seconds": SCENE_S})]
        emu = Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=TONE_S, tool_calls=calls))
        await emu.start()
        try:
            cfg = dataclasses.replace(config_for(emu, tmp_path), mcp=McpSettings(
                servers=(home.entry(non_blocking=("slow_*",)),), call_timeout_s=1.0, list_timeout_s=10.0,
                retry_s=0.5))
            async with Running(cfg, monkeypatch, gpio) as daemon:
                await until_home_tools_declared(daemon, emu, "slow_scene")
                # the model's first part ends (IN_PROGRESS) while the scene is still being set
                first_part_over = asyncio.ensure_future(emu.wait_for(lambda e: any(
                    t.turn_completes == ["IN_PROGRESS"] and not t.tool_responses for t in e.turns), 60))
                # the turn stays open while the scene is set (the model said its first part and
                # waits for the result, which it tells at the end): idle comes after both
                await ask_by_button(daemon, pulse, gpio, question)
                await asyncio.wait_for(first_part_over, 5)  # it held before the answer came
                setup = next(c.setup for c in emu.connections if "slow_scene" in str(c.setup))
                return setup, emu.turns, daemon.conductor.turns
        finally:
            await emu.stop()
            home.stop()

    setup, turns, metrics = asyncio.run(asyncio.wait_for(scenario(), 150))
    assert declared(setup, "slow_scene")["behavior"] == "NON_BLOCKING"
    assert declared(setup, "light_on")["behavior"] == "BLOCKING"  # only the listed tools are background ones
    turn = next(t for t in turns if t.tool_calls)
    assert turn.tool_behavior == "NON_BLOCKING"
    # the model did not wait: it spoke and closed its first part (IN_PROGRESS) before the answer came
    assert turn.turn_completes == ["IN_PROGRESS", "IDLE"]
    (response,) = turn.tool_responses
    assert response["id"] == turn.tool_calls[0]["id"] and response["scheduling"] == "WHEN_IDLE"
    assert response["response"]["output"]["scene"] == "movie"  # the result, not a timeout
    # the model spoke twice: "on it" at once, then the result once the answer came
    assert len(turn.reply_pcm) == 2 * len(tone_pcm(TONE_S))
    assert metrics[-1].outcome == "answered"
