"""Pre-roll, post-roll and lazy activityStart, from frames to the strict emulator."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np

from appliance.audio import speech
from appliance.audio.endpointing import EndReason
from appliance.audio.frames import FRAME_BYTES, FRAME_SAMPLES, RATE
from appliance.settings.schema import AudioConfig, VadConfig
from appliance.live import messages as p
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario
from appliance.live.connection import LiveSession
from appliance.settings.secrets import Secret
from appliance.app.turntaking import Mode, TurnReport, Uplink

AUDIO = AudioConfig()
VAD = VadConfig()


def spoken_question() -> tuple[np.ndarray, int, int]:
    """Noise, espeak speech, noise at 16 kHz; returns samples and the speech's first/last sample."""
    words = speech.spoken("Set a timer for five minutes please.", RATE)
    assert words, "espeak-ng is needed for this test (scripts/bootstrap.sh installs it)"
    voice = np.frombuffer(words, "<i2").astype(np.float64)
    loud = np.flatnonzero(np.abs(voice) > 0.02 * 32768)
    voice = voice[loud[0] : loud[-1] + 1]  # the true speech boundaries
    rng = np.random.default_rng(7)
    lead, tail = RATE, int(1.5 * RATE)
    signal = np.concatenate([np.zeros(lead), voice, np.zeros(tail)])
    signal += rng.normal(0, 0.003 * 32768, len(signal))  # about -50 dBFS of room noise
    return np.clip(signal, -32768, 32767).astype("<i2"), lead, lead + len(voice)


def frames_of(samples: np.ndarray) -> list[bytes]:
    n = len(samples) // FRAME_SAMPLES
    return [samples[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES].tobytes() for i in range(n)]


async def with_uplink(scenario, body, audio: AudioConfig = AUDIO):
    async with Emulator(EmulatorConfig(pace=0), scenario) as emu:
        session = LiveSession(emu.url, p.SessionSettings(model="gemini-3.8-live"), Secret("test-key-uplink"))
        session.start()
        assert await session.wait_ready(5)
        uplink = Uplink(session, audio, VAD)
        reports: list[TurnReport] = []
        done = asyncio.Event()

        def on_end(report: TurnReport) -> None:
            reports.append(report)
            done.set()

        uplink.on_turn_end = on_end
        sender = asyncio.create_task(uplink.run())
        try:
            await body(emu, session, uplink, reports, done)
        finally:
            sender.cancel()
            await session.close()
        return emu, reports


def test_hold_to_talk_sends_preroll_and_postroll_and_nothing_more():
    samples, start, end = spoken_question()
    frames = frames_of(samples)
    press_frame = start // FRAME_SAMPLES - 2  # the user presses just as they start talking
    release_frame = end // FRAME_SAMPLES  # and lets go as the last word ends

    async def body(emu, session, uplink, reports, done):
        for i, frame in enumerate(frames):
            if i == press_frame:
                uplink.press(Mode.HOLD)
            if i == release_frame:
                uplink.release()
            uplink.on_frame(frame)
        await asyncio.wait_for(done.wait(), 5)
        await emu.wait_for(lambda e: len(e.turns) == 1, 5)

    emu, reports = asyncio.run(with_uplink(Scenario(reply="tone", tone_seconds=0.1), body))
    [report] = reports
    assert report.submitted and report.reason in (EndReason.POSTROLL_SILENCE, EndReason.POSTROLL_CAP)
    sent = np.frombuffer(emu.turns[0].user_pcm, "<i2")
    first_sample = (press_frame - AUDIO.preroll_ms // 20) * FRAME_SAMPLES
    # the turn starts exactly one pre-roll before the press
    assert np.array_equal(sent[: 4 * FRAME_SAMPLES], samples[first_sample : first_sample + 4 * FRAME_SAMPLES])
    last_sample = first_sample + len(sent)
    after_release_ms = (last_sample - release_frame * FRAME_SAMPLES) / RATE * 1000
    assert AUDIO.postroll_silence_ms - 40 <= after_release_ms <= AUDIO.postroll_max_ms + 20
    assert last_sample >= end  # the last word is whole


def test_a_press_with_nothing_said_sends_nothing():
    rng = np.random.default_rng(3)
    noise = (rng.normal(0, 0.003 * 32768, RATE * 8)).astype("<i2")

    async def body(emu, session, uplink, reports, done):
        uplink.press(Mode.TAP)
        for frame in frames_of(noise):
            uplink.on_frame(frame)
            if done.is_set():
                break
        await asyncio.wait_for(done.wait(), 5)

    emu, reports = asyncio.run(with_uplink(Scenario(reply="tone"), body))
    assert reports[0].reason is EndReason.NO_SPEECH and not reports[0].submitted
    assert not emu.turns
    assert all(r.kind == "setup" for r in emu.received)
    assert emu.connections[0].closed_by == "client"  # we closed it, the emulator had no complaint


def test_a_barge_in_press_without_speech_sends_nothing_and_the_next_turn_works():
    samples, start, end = spoken_question()
    rng = np.random.default_rng(5)
    quiet = (rng.normal(0, 0.003 * 32768, RATE * 7)).astype("<i2")

    async def body(emu, session, uplink, reports, done):
        uplink.press(Mode.TAP, barge_in=True)
        for frame in frames_of(quiet):
            uplink.on_frame(frame)
            if done.is_set():
                break
        await asyncio.wait_for(done.wait(), 5)
        # the speaker was silenced locally; with nothing said no activity is opened on the wire
        assert not session.busy
        assert all(r.kind == "setup" for r in emu.received)
        done.clear()
        uplink.press(Mode.TAP)
        for frame in frames_of(samples):
            uplink.on_frame(frame)
            if done.is_set():
                break
        await asyncio.wait_for(done.wait(), 5)
        await emu.wait_for(lambda e: len(e.turns) == 1, 5)

    emu, reports = asyncio.run(with_uplink(Scenario(reply="tone", tone_seconds=0.1), body))
    assert reports[0].barge_in and not reports[0].submitted
    assert reports[1].submitted and reports[1].reason is EndReason.END_SILENCE
    assert len(emu.connections) == 1 and emu.connections[0].closed_by == "client"


def test_speech_that_began_before_the_press_is_kept():
    samples, start, end = spoken_question()
    frames = frames_of(samples)
    press_frame = start // FRAME_SAMPLES + 10  # 200 ms into the first word

    async def body(emu, session, uplink, reports, done):
        for i, frame in enumerate(frames):
            if i == press_frame:
                uplink.press(Mode.TAP)
            uplink.on_frame(frame)
        await asyncio.wait_for(done.wait(), 5)
        await emu.wait_for(lambda e: len(e.turns) == 1, 5)

    emu, reports = asyncio.run(with_uplink(Scenario(reply="tone", tone_seconds=0.1), body))
    sent = np.frombuffer(emu.turns[0].user_pcm, "<i2")
    first_sample = (press_frame - AUDIO.preroll_ms // 20) * FRAME_SAMPLES
    assert first_sample < start + 10 * FRAME_SAMPLES
    assert np.array_equal(sent[:FRAME_SAMPLES], samples[first_sample : first_sample + FRAME_SAMPLES])
    assert reports[0].frames_sent * FRAME_BYTES == len(emu.turns[0].user_pcm)


def test_a_tiny_preroll_setting_is_honoured():
    audio = dataclasses.replace(AUDIO, preroll_ms=0)
    samples, start, end = spoken_question()
    frames = frames_of(samples)
    press_frame = start // FRAME_SAMPLES - 5

    async def body(emu, session, uplink, reports, done):
        for i, frame in enumerate(frames):
            if i == press_frame:
                uplink.press(Mode.TAP)
            uplink.on_frame(frame)
        await asyncio.wait_for(done.wait(), 5)
        await emu.wait_for(lambda e: len(e.turns) == 1, 5)

    emu, _ = asyncio.run(with_uplink(Scenario(reply="tone", tone_seconds=0.1), body, audio))
    sent = np.frombuffer(emu.turns[0].user_pcm, "<i2")
    starts = [i for i in range(len(frames)) if np.array_equal(sent[:FRAME_SAMPLES], np.frombuffer(frames[i], "<i2"))]
    assert len(starts) == 1
    # nothing from before the press, and the first word is whole
    assert press_frame <= starts[0] <= start // FRAME_SAMPLES


def test_a_long_wait_before_speaking_is_not_sent():
    samples, start, end = spoken_question()
    frames = frames_of(samples)
    press_frame = 0  # pressed a whole second before the first word

    async def body(emu, session, uplink, reports, done):
        for i, frame in enumerate(frames):
            if i == press_frame:
                uplink.press(Mode.HOLD)
            if i == end // FRAME_SAMPLES + 2:
                uplink.release()
            uplink.on_frame(frame)
        await asyncio.wait_for(done.wait(), 5)
        await emu.wait_for(lambda e: len(e.turns) == 1, 5)

    emu, _ = asyncio.run(with_uplink(Scenario(reply="tone", tone_seconds=0.1), body))
    sent = np.frombuffer(emu.turns[0].user_pcm, "<i2")
    first = [i for i in range(len(frames)) if np.array_equal(sent[:FRAME_SAMPLES], np.frombuffer(frames[i], "<i2"))][0]
    lead_ms = (start // FRAME_SAMPLES - first) * 20
    # the pre-roll before the onset is kept, the silent second before it is not
    assert AUDIO.preroll_ms <= lead_ms <= AUDIO.preroll_ms + 200
