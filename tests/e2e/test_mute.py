"""The mute end to end: the daemon on the private PulseAudio rig, the emulator as the service,
gpiozero's MockFactory as the button and LED.  What is checked is what a person in the kitchen
relies on: the microphone stream is really closed (PulseAudio has no recording stream from us),
nothing said before or during the mute ever reaches the service, a press only beeps, the light
says muted, and a power cut or restart leaves the box muted."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess

import numpy as np
import pytest

from appliance.app.conductor import State
from appliance.app.daemon import Daemon
from appliance.app.mute import MuteStore
from appliance.audio import speech
from appliance.audio.earcons import earcon
from appliance.audio.frames import RATE
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario
from appliance.ipc.client import request
from harness import BUTTON_PIN, LED_PIN, Running, config_for, eventually, speak

QUESTION = "Please remember that the spare key is under the blue flower pot."
MUTED_LEVEL = 0.5  # the muted pattern's brightness under the test config's cap of 1


@pytest.fixture(scope="module")
def question() -> bytes:
    """The question, without espeak's silence at either end: its last syllable is its last sample."""
    pcm = speech.spoken(QUESTION, RATE)
    assert pcm, "espeak-ng is needed (scripts/bootstrap.sh installs it)"
    voice = np.frombuffer(pcm, "<i2")
    loud = np.flatnonzero(np.abs(voice.astype(np.int32)) > 0.02 * 32768)
    return voice[loud[0] : loud[-1] + 1].tobytes()


def our_mic_streams(rig) -> list[str]:
    """PulseAudio's recording streams on the rig's microphone: the daemon's, if its stream is open."""
    env = {**os.environ, **rig.env()}

    def short(kind: str) -> list[list[str]]:
        out = subprocess.run(["pactl", "list", "short", kind], env=env, capture_output=True, text=True,
                             timeout=10, check=True).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    mic = next(fields[0] for fields in short("sources") if fields[1] == "mic.monitor")
    return [fields[0] for fields in short("source-outputs") if fields[1] == mic]


def audio_sent(emu: Emulator) -> int:
    return sum(1 for r in emu.received if r.kind == "realtimeInput" and "audio" in r.message["realtimeInput"])


def similarity(recorded: np.ndarray, sound: np.ndarray) -> float:
    """How well `sound` matches its best place in `recorded` (1.0: it is there, at any level)."""
    corr = np.correlate(recorded, sound, mode="valid")
    energy = np.convolve(recorded**2, np.ones(sound.size), mode="valid")
    best = int(np.argmax(np.abs(corr)))
    return float(abs(corr[best]) / (np.linalg.norm(sound) * np.sqrt(energy[best]) + 1e-9))


def test_ctl_mute_closes_the_microphone_and_nothing_said_around_the_mute_is_ever_sent(
    pulse, question, gpio, tmp_path, monkeypatch
):
    pulse.activate(monkeypatch)
    recording = tmp_path / "speaker.raw"

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.3)) as emu:
            async with Running(config_for(emu, tmp_path), monkeypatch, gpio) as daemon:
                capture, conductor, sock = daemon.capture, daemon.conductor, daemon.control_path
                led = gpio.pin(LED_PIN)
                assert our_mic_streams(pulse), "the rig does not show the daemon's microphone stream"
                # a secret said just before the mute: its tail sits in the resting microphone's pre-roll
                await speak(pulse, question)
                muted = await request(sock, "mute", muted=True)
                assert not capture.running
                await eventually(lambda: not our_mic_streams(pulse), 5, "PulseAudio to drop our recording stream")
                await eventually(lambda: led.state == pytest.approx(MUTED_LEVEL), 5, "the muted light")
                status = await request(sock, "status")
                callbacks = capture.stats.callbacks

                await speak(pulse, question)  # said while muted
                quiet_callbacks = capture.stats.callbacks - callbacks

                # a press while muted: the muted earcon, and nothing goes out
                rate = daemon.player.format.rate
                pulse.start_recording_speaker(recording, rate=rate)
                # the recorder is listening (the idle speaker plays silence) before the press plays anything
                await eventually(lambda: recording.exists() and recording.stat().st_size >= rate // 5, 10,
                                 "the speaker recording to start")
                pressed = await request(sock, "press")
                await speak(pulse, question)
                released = await request(sock, "release")
                pulse.stop_recording_speaker()
                sent_while_muted = audio_sent(emu)

                unmuted = await request(sock, "mute", muted=False)
                assert capture.running
                await eventually(lambda: our_mic_streams(pulse), 5, "our recording stream back on PulseAudio")
                # at once, a hold with nothing said: the pre-roll can hold only what was heard since unmuting
                mark = conductor.seq
                gpio.pin(BUTTON_PIN).drive_low()
                await conductor.wait_state(State.LISTENING, 5, since=mark)
                await eventually(lambda: capture.stats.frames > 25, 5, "half a second of listening")
                gpio.pin(BUTTON_PIN).drive_high()
                await conductor.wait_state(State.IDLE, 10, since=mark)
                sent_after_unmute = audio_sent(emu)

                # the microphone works again: a question now is heard
                mark = conductor.seq
                assert (await request(sock, "tap"))["ok"]
                await speak(pulse, question)
                await emu.wait_for(lambda e: e.turns and e.turns[0].turn_complete, 20)
                await conductor.wait_state(State.IDLE, 20, since=await conductor.wait_state(State.SPEAKING, 20,
                                                                                              since=mark))
            return (emu, muted, status, quiet_callbacks, pressed, released, sent_while_muted, unmuted,
                    sent_after_unmute, rate)

    (emu, muted, status, quiet_callbacks, pressed, released, sent_while_muted, unmuted, sent_after_unmute,
     rate) = asyncio.run(scenario())
    assert muted == {"ok": True, "muted": True, "state": "muted"}
    assert status["muted"] is True and status["state"] == "muted"
    assert quiet_callbacks == 0, "the microphone called back while muted"
    assert pressed == {"ok": True, "state": "muted"} and released["state"] == "muted"
    assert sent_while_muted == 0 and sent_after_unmute == 0, "audio from before or during the mute was sent"
    assert unmuted == {"ok": True, "muted": False, "state": "idle"}
    assert len(emu.turns) == 1, "only the question asked after unmuting reached the service"
    played = np.frombuffer(recording.read_bytes(), "<i2").astype(np.float64)
    assert similarity(played, earcon("muted", rate).astype(np.float64)) > 0.8, "the muted earcon did not play"


def test_a_mute_survives_a_restart_and_the_microphone_never_opens(pulse, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone")) as emu:
            cfg = config_for(emu, tmp_path)
            async with Running(cfg, monkeypatch, gpio) as daemon:
                assert (await request(daemon.control_path, "mute", muted=True))["muted"] is True
            saved = (tmp_path / "state" / "mute.json").read_text()

            # the power comes back: the same state directory
            daemon = Daemon(cfg, pin_factory=gpio, printer=lambda _line: None)
            task = asyncio.create_task(daemon.run())
            try:
                await eventually(lambda: daemon.conductor is not None or task.done(), 15, "the daemon to start")
                conductor, capture = daemon.conductor, daemon.capture
                await conductor.wait_state(State.MUTED, 15)
                await emu.wait_for(lambda e: len(e.connections) == 2 and e.connections[1].setup_complete, 15)
                await eventually(lambda: gpio.pin(LED_PIN).state == pytest.approx(MUTED_LEVEL), 5, "the muted light")
                status = await request(daemon.control_path, "status")
                closed = (capture.running, capture.stats.callbacks, our_mic_streams(pulse))
                states_while_muted = [s for _, s, _ in conductor.history]
                unmuted = await request(daemon.control_path, "mute", muted=False)
                await eventually(lambda: capture.stats.callbacks > 25, 15, "microphone callbacks after unmuting")
            finally:
                daemon.request_stop()
                code = await asyncio.wait_for(task, 10)
            return saved, status, closed, states_while_muted, unmuted, code

    saved, status, closed, states_while_muted, unmuted, code = asyncio.run(scenario())
    assert '"muted": true' in saved
    assert status["state"] == "muted" and status["muted"] is True and status["connection"] == "ready"
    assert closed == (False, 0, []), "the microphone was opened although the box started muted"
    assert states_while_muted == [State.MUTED], "the light showed something else before muted"
    assert unmuted == {"ok": True, "muted": False, "state": "idle"}
    assert code == 0


def test_holding_the_button_mutes_and_holding_it_again_unmutes(pulse, gpio, tmp_path, monkeypatch):
    pulse.activate(monkeypatch)

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone")) as emu:
            cfg = config_for(emu, tmp_path)
            cfg = dataclasses.replace(cfg, button=dataclasses.replace(cfg.button, long_hold_s=1.0, mute_hold_s=2.0))
            async with Running(cfg, monkeypatch, gpio) as daemon:
                conductor, capture, button = daemon.conductor, daemon.capture, gpio.pin(BUTTON_PIN)
                mark = conductor.seq
                button.drive_low()  # held, nothing said
                await conductor.wait_state(State.MUTED, 10, since=mark)
                button.drive_high()
                await eventually(lambda: not capture.running, 5, "the microphone stream to close")
                await eventually(lambda: (tmp_path / "state" / "mute.json").exists(), 5, "the mute to be saved")
                saved = MuteStore(tmp_path / "state").load()
                await emu.wait_for(lambda e: len(e.connections) == 2 and e.connections[1].setup_complete, 15)
                states = [s for seq, s, _ in conductor.history if seq > mark]
                mark = conductor.seq
                button.drive_low()
                await conductor.wait_state(State.IDLE, 10, since=mark)
                button.drive_high()
                await eventually(lambda: capture.running, 5, "the microphone stream to open again")
                await eventually(lambda: not MuteStore(tmp_path / "state").load(), 5, "the unmute to be saved")
                callbacks = capture.stats.callbacks
                await eventually(lambda: capture.stats.callbacks > callbacks + 25, 15, "microphone callbacks")
                again = [s for seq, s, _ in conductor.history if seq > mark]
                return saved, states, again, len(emu.turns)

    saved, states, again, turns = asyncio.run(scenario())
    # the hold passes the new-conversation mark on its way, as a long hold always does, then mutes
    assert states[:2] == [State.LISTENING, State.CONNECTING] and states[-1] is State.MUTED, states
    assert states.count(State.MUTED) == 1, "the link coming up took the muted light away"
    assert saved is True
    assert again == [State.IDLE], "the second hold did nothing but unmute"
    assert turns == 0

