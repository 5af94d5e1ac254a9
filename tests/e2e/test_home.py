"""The box and the house: a home server's tools (MCP) called by the model through the running daemon,
and `ctl say` announcements. A real MCP server (tests/mcp_servers) on loopback with a bearer token,
the daemon on the PulseAudio rig, the strict emulator scripting the tool calls by name."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mcp", reason="the MCP tests need the optional SDK: pip install -e '.[home]'")

from appliance.app.conductor import State  # noqa: E402
from appliance.audio.earcons import PEAK_DBFS, earcon  # noqa: E402
from appliance.audio.speaker import EARCON_MIN_LEVEL  # noqa: E402
from appliance.audio.volume import level_to_gain  # noqa: E402
from appliance.emulator.scenario import tone_pcm  # noqa: E402
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario  # noqa: E402
from appliance.ipc.client import request  # noqa: E402
from appliance.mcp.config import McpSettings  # noqa: E402
from harness import BUTTON_PIN, Running, ask_by_button, config_for, speak  # noqa: E402
from mcp_servers.rig import HttpHomeServer, until_home_tools_declared, write_token  # noqa: E402
from rigs import PulseRig  # noqa: E402
from sound_checks import dbfs, read_recording, spoken_question  # noqa: E402
from waiting import wait_until  # noqa: E402

QUESTION = "Turn on the kitchen light please"
REC_RATE = 24000  # what the speaker sink's monitor is recorded at
#: the announcement chime's notes are all above this, the emulator's reply tone below it
CHIME_SPLIT_HZ = 800.0
SAY_SCENARIO = Scenario(reply="tone", tone_seconds=0.3)
#: how much of the chime's last, fading note the reply may cover and still come after the chime
CHIME_TAIL_S = 0.1


@pytest.fixture(scope="module")
def question() -> bytes:
    return spoken_question(QUESTION)


async def start_recording(rig: PulseRig, path: Path) -> None:
    rig.start_recording_speaker(path, REC_RATE)
    await wait_until(lambda: path.exists() and path.stat().st_size > 0, "the speaker recording to start")


async def record_more(path: Path, seconds: float) -> None:
    """Until the recording holds `seconds` more of the speaker (a file growing has no event to wait on)."""
    target = path.stat().st_size + 2 * int(seconds * REC_RATE)
    await wait_until(lambda: path.stat().st_size >= target, "the speaker recording to grow")


def earcon_at(name: str) -> np.ndarray:
    return earcon(name, REC_RATE).astype(np.float64)


def band(x: np.ndarray, *, low: float = 0.0, high: float = REC_RATE / 2) -> np.ndarray:
    """`x` with only its content from `low` to `high` Hz (sounds in different bands do not mask each other)."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / REC_RATE)
    spectrum[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spectrum, x.size)


def align(recording: np.ndarray, expected: np.ndarray) -> tuple[int, float]:
    """Where in `recording` `expected` lines up best, and how well (normalised cross-correlation, 1 = exact)."""
    n = 1 << int(np.ceil(np.log2(recording.size + expected.size)))
    xc = np.fft.irfft(np.fft.rfft(recording, n) * np.conj(np.fft.rfft(expected, n)), n)
    lag = int(np.argmax(xc[: recording.size]))
    segment = np.zeros(expected.size)
    part = recording[lag : lag + expected.size]
    segment[: part.size] = part
    return lag, float(segment @ expected / np.sqrt((segment @ segment) * (expected @ expected) + 1e-30))


def dbfs_peak(x: np.ndarray) -> float:
    return float(20 * np.log10(max(float(np.max(np.abs(x))), 1e-12)))


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
                await until_home_tools_declared(daemon, emu, "light_on")
                await ask_by_button(daemon, pulse, gpio, question)
                status = await request(daemon.control_path, "status")
                # the session serves the next turn after a hung tool
                await ask_by_button(daemon, pulse, gpio, question)
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


async def say_and_record(daemon, rig: PulseRig, recording: Path, text: str) -> dict:
    """`ctl say` while idle and online, with the speaker recorded until the reply has played out."""
    conductor = daemon.conductor
    await start_recording(rig, recording)
    try:
        mark = conductor.seq
        said = await request(daemon.control_path, "say", text=text)
        thinking = await conductor.wait_state(State.THINKING, 5, since=mark)
        await conductor.wait_state(State.IDLE, 20, since=thinking)
        await record_more(recording, 0.4)  # the device's and the recorder's latency
    finally:
        rig.stop_recording_speaker()
    return said


def chime_and_reply(recording: Path) -> tuple[int, int]:
    """Where the announcement chime and the reply tone start in the recording; asserts both are there.

    The chime's notes are all above CHIME_SPLIT_HZ and the tone below it, so each is found in its own band
    even where they overlap.
    """
    heard = read_recording(recording)
    chime_at, chime_match = align(band(heard, low=CHIME_SPLIT_HZ), band(earcon_at("announce"), low=CHIME_SPLIT_HZ))
    assert chime_match > 0.9, f"the announcement chime is not on the speaker (correlation {chime_match:.3f})"
    reply = np.frombuffer(tone_pcm(SAY_SCENARIO.tone_seconds, SAY_SCENARIO.tone_hz, REC_RATE), "<i2") / 32768.0
    voice = band(heard, high=CHIME_SPLIT_HZ)
    reply_at, reply_match = align(voice, band(reply, high=CHIME_SPLIT_HZ))
    assert reply_match > 0.9, f"the model's reply is not on the speaker (correlation {reply_match:.3f})"
    assert dbfs(voice[reply_at:reply_at + reply.size]) > -35.0, "the reply is played loud enough to hear"
    return chime_at, reply_at


def test_ctl_say_plays_the_reply_on_the_speaker_and_offline_the_no_network_sound(pulse, gpio, tmp_path, monkeypatch):
    """What the kitchen hears: the chime and the model's reply; offline, the no-network notes and no sentence."""
    pulse.activate(monkeypatch)
    offline_rec = tmp_path / "say-offline.raw"

    async def scenario():
        emu = Emulator(EmulatorConfig(pace=0), SAY_SCENARIO)
        await emu.start()
        try:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                conductor = daemon.conductor
                said = await say_and_record(daemon, pulse, tmp_path / "say-online.raw", "The washing machine is done")
                mark = conductor.seq
                await emu.stop()  # the router goes down
                await conductor.wait_state(State.OFFLINE, 10, since=mark)
                await start_recording(pulse, offline_rec)
                try:
                    offline = await request(daemon.control_path, "say", text="Dinner is ready")
                    await record_more(offline_rec, earcon("no_network", REC_RATE).size / REC_RATE + 0.4)
                finally:
                    pulse.stop_recording_speaker()
                status = await request(daemon.control_path, "status")
                return said, offline, status, emu.turns, conductor.turns, daemon.player.volume
        finally:
            await emu.stop()

    said, offline, status, turns, metrics, volume = asyncio.run(asyncio.wait_for(scenario(), 90))
    assert said["ok"] and said["announcement"] == "speaking"
    assert turns[-1].source == "text" and turns[-1].input_text.endswith(": The washing machine is done")
    assert metrics[-1].mode == "announcement" and metrics[-1].outcome == "answered"
    chime_and_reply(tmp_path / "say-online.raw")
    assert not offline["ok"] and "offline" in offline["error"]
    assert [a["state"] for a in status["announcements"]] == ["spoken", "dropped"]

    # Offline: the no-network notes at the earcons' level, and not the chime that promises a sentence.
    heard = read_recording(offline_rec)
    expected = earcon_at("no_network")
    sound_at, sound_match = align(heard, expected)
    assert sound_match > 0.9, f"offline, the no-network sound is not on the speaker (correlation {sound_match:.3f})"
    earcon_peak = PEAK_DBFS + 20 * np.log10(level_to_gain(max(volume, EARCON_MIN_LEVEL)))
    assert dbfs_peak(heard[sound_at:sound_at + expected.size]) == pytest.approx(earcon_peak, abs=1.5)
    assert align(heard, earcon_at("announce"))[1] < 0.5, "offline, the announcement chime must not play"


def test_ctl_say_chimes_first_and_the_reply_follows_the_chime(pulse, gpio, tmp_path, monkeypatch):
    """An announcement is "with an earcon first": the chime is heard, then the voice, not both at once."""
    pulse.activate(monkeypatch)
    recording = tmp_path / "say.raw"

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), SAY_SCENARIO) as emu:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                return await say_and_record(daemon, pulse, recording, "The washing machine is done")

    assert asyncio.run(asyncio.wait_for(scenario(), 60))["ok"]
    chime_at, reply_at = chime_and_reply(recording)
    chime_ends = chime_at + earcon_at("announce").size
    assert reply_at >= chime_ends - int(CHIME_TAIL_S * REC_RATE), (
        f"the reply starts {(reply_at - chime_at) / REC_RATE:.3f} s into the {earcon_at('announce').size / REC_RATE:.2f} s "
        "chime: the voice covers it")


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
