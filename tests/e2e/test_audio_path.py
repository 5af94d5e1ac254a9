"""The whole audio path through real PyAudio and alsa-lib: microphone to the emulator, reply to the speaker.

The microphone file holds what an I2S mic array gives (48 kHz, stereo, 32-bit): room
noise, an espeak-ng sentence, more noise.  What reaches the emulator must be 16 kHz
mono, begin one pre-roll before the press and end inside the post-roll window after
the true end of speech.  The PulseAudio rig, paced in real time, checks `ask` through
the microphone and `audio-test`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.audio import speech
from appliance.audio.frames import FRAME_SAMPLES, RATE
from appliance.audio.resample import resample
from appliance.settings.schema import AudioConfig, VadConfig
from appliance.live import messages as p
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario
from appliance.live.connection import LiveSession
from appliance.settings.secrets import Secret
from appliance.app.turntaking import Mode, Uplink
from rigs import FileRig, PulseRig

MIC_RATE = 48000
QUESTION = "How long should I boil an egg for a soft yolk?"


def question_16k() -> np.ndarray:
    pcm = speech.spoken(QUESTION, RATE)
    assert pcm, "espeak-ng is needed (scripts/bootstrap.sh installs it)"
    return np.frombuffer(pcm, "<i2")


def i2s_recording() -> tuple[np.ndarray, float, float]:
    """(samples (n, 2) int32 at 48 kHz, speech start s, speech end s): noise, speech, noise."""
    words = speech.spoken(QUESTION, MIC_RATE)
    assert words, "espeak-ng is needed (scripts/bootstrap.sh installs it)"
    voice = np.frombuffer(words, "<i2").astype(np.float64) / 32768
    loud = np.flatnonzero(np.abs(voice) > 0.02)
    voice = voice[loud[0] : loud[-1] + 1]
    lead, tail = int(1.2 * MIC_RATE), int(2.0 * MIC_RATE)
    mono = np.concatenate([np.zeros(lead), voice * 0.5, np.zeros(tail)])
    rng = np.random.default_rng(11)
    left = mono + rng.normal(0, 0.002, len(mono))
    right = mono + rng.normal(0, 0.002, len(mono))  # the array's second mic
    stereo = np.stack([left, right], axis=1)
    return (np.clip(stereo, -1, 1) * (2**31 - 1)).astype(np.int64), lead / MIC_RATE, (lead + len(voice)) / MIC_RATE


def test_i2s_microphone_to_emulator_is_16k_mono_with_preroll_and_postroll(tmp_path, monkeypatch):
    from appliance.audio.capture import Capture

    samples, speech_start, speech_end = i2s_recording()
    rig = FileRig(tmp_path)
    rig.add_capture("i2smic", samples, rate=MIC_RATE, fmt="S32_LE")
    rig.activate(monkeypatch)
    audio = dataclasses.replace(AudioConfig(), input_device="i2smic", input_rate=MIC_RATE, input_channels=2,
                                input_format="int32", input_channel=-1)
    total_frames = int(len(samples) / MIC_RATE * 1000 / 20) - 2  # never read past the file's end
    press_frame = int(speech_start * 50) - 3  # pressed 60 ms before the first word
    release_frame = int(speech_end * 50) + 1  # let go just after the last

    async def scenario():
        loop = asyncio.get_running_loop()
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=0.2)) as emu:
            session = LiveSession(emu.url, p.SessionSettings(model="gemini-3.8-live"), Secret("test-key-path"))
            session.start()
            assert await session.wait_ready(5)
            uplink = Uplink(session, audio, VadConfig())
            done = asyncio.Event()
            uplink.on_turn_end = lambda report: done.set()
            sender = asyncio.create_task(uplink.run())
            seen = 0
            captured: list[bytes] = []
            enough = asyncio.Event()

            def on_frame(frame: bytes) -> None:
                nonlocal seen
                if seen >= total_frames:
                    enough.set()
                    return
                if seen == press_frame:
                    uplink.press(Mode.HOLD)
                if seen == release_frame:
                    uplink.release()
                captured.append(frame)
                uplink.on_frame(frame)
                seen += 1

            capture = Capture(audio, on_frame, loop)
            fmt = capture.start()
            try:
                await asyncio.wait_for(enough.wait(), 20)
            finally:
                capture.close()
            await asyncio.wait_for(done.wait(), 5)
            await emu.wait_for(lambda e: len(e.turns) == 1, 5)
            sender.cancel()
            await session.close()
            return emu, fmt, b"".join(captured)

    emu, fmt, captured = asyncio.run(scenario())
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (MIC_RATE, 2, "int32")
    sent = np.frombuffer(emu.turns[0].user_pcm, "<i2")
    audio_msgs = [r for r in emu.received if r.pcm]
    assert all(r.pcm_rate == 16000 for r in audio_msgs)

    # 16 kHz mono that matches the microphone's mix, resampled properly
    reference = resample(samples.mean(axis=1) / 2**31, MIC_RATE, RATE)
    first = (press_frame - AudioConfig().preroll_ms // 20) * FRAME_SAMPLES
    expected = reference[first : first + len(sent)]
    got = sent.astype(np.float64) / 32768
    corr = np.dot(got, expected) / (np.linalg.norm(got) * np.linalg.norm(expected))
    assert corr > 0.99
    # and the turn starts exactly at the pre-roll: the captured frames from there on
    assert emu.turns[0].user_pcm == captured[first * 2 : first * 2 + len(sent) * 2]

    end_s = (first + len(sent)) / RATE
    release_s = release_frame * 0.02
    assert end_s >= speech_end  # the last word is whole
    assert AudioConfig().postroll_silence_ms / 1000 - 0.05 <= end_s - release_s <= AudioConfig().postroll_max_ms / 1000


# ---------------------------------------------------------------- paced: PulseAudio


@pytest.fixture(scope="module")
def echoing_pulse(tmp_path_factory):
    """A rig whose speaker is heard by the microphone, like a box with both in one case."""
    rig = PulseRig(tmp_path_factory.mktemp("pulse"), speaker_heard_by_mic=True)
    rig.start()
    try:
        yield rig
    finally:
        rig.stop()


def appliance_env(rig: PulseRig, **extra: str) -> dict[str, str]:
    """A child `appliance` on the rig, with Python's own buffering: through a pipe, a line
    it does not flush arrives only when it exits (CI's PYTHONUNBUFFERED would hide that)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APPLIANCE_", "GEMINI_")) and k != "PYTHONUNBUFFERED"}
    env.update(rig.env())
    env.update(extra)
    return env


def test_audio_test_hears_the_speaker_through_the_room(echoing_pulse):
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--set", "audio.input_device=pulse", "--set", "audio.output_device=pulse",
         "audio-test"],
        capture_output=True, text=True, timeout=60, env=appliance_env(echoing_pulse), stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the microphone hears the speaker: yes" in result.stdout
    assert "audio test passed" in result.stdout


def test_audio_test_fails_with_advice_when_the_speaker_is_not_heard(pulse):
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--set", "audio.input_device=pulse", "--set", "audio.output_device=pulse",
         "audio-test"],
        capture_output=True, text=True, timeout=60, env=appliance_env(pulse), stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert "PROBLEM: the microphone does not hear the speaker; check the speaker is connected" in result.stdout


def test_devices_lists_and_marks_the_configured_device(pulse):
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "--set", "audio.input_device=pulse", "devices"],
        capture_output=True, text=True, timeout=60, env=appliance_env(pulse), stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "pulse" in result.stdout and "16000" in result.stdout


def test_ask_without_a_file_listens_and_plays_the_reply(pulse, tmp_path):
    """`appliance ask` says it listens (through a pipe, while it waits: only then does the
    test speak), ends on silence, sends the question, and plays the echo."""

    async def scenario():
        async with Emulator(EmulatorConfig(pace=1.7), Scenario(reply="echo", transcript=QUESTION)) as emu:
            out = tmp_path / "reply.wav"
            env = appliance_env(pulse, GEMINI_API_KEY="test-key-mic")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "appliance", "--set", f"live.endpoint={emu.url}",
                "--set", "audio.input_device=pulse", "--set", "audio.output_device=pulse",
                "ask", "--out", str(out),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
            )
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert b"listening: speak now" in line, line
            recording = tmp_path / "speaker.raw"
            pulse.start_recording_speaker(recording, rate=48000)
            question = question_16k()
            # 1.5 s of lead-in lets the capture stream settle (the rig starts late)
            player = pulse.play_into_mic(np.concatenate([np.zeros(24000, "<i2"), question]).tobytes(), RATE)
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            player.wait(timeout=10)
            pulse.stop_recording_speaker()
            return emu, proc.returncode, stdout.decode(), stderr.decode(), out, recording, question

    emu, code, stdout, stderr, out, recording, question = asyncio.run(scenario())
    assert code == 0, stderr
    assert f"you said:   {QUESTION}" in stdout
    heard = np.frombuffer(emu.turns[0].user_pcm, "<i2")
    # the whole question reached the emulator, with the pre-roll and post-roll around it
    assert len(question) / RATE <= len(heard) / RATE <= len(question) / RATE + 1.5
    played = np.frombuffer(recording.read_bytes(), "<i2").astype(np.float64)
    assert played.size and np.sqrt(np.mean(played**2)) > 100  # the echoed reply came out of the speaker
    assert out.exists()


#: stops a rig while its room noise waits in the pipe, then lets the garbage collector run;
#: prints every unraisable exception (a child run in development mode, so that Python 3.11
#: and 3.12 report a failing close() in a finaliser the way 3.13 always does)
RIG_STOPPED_MID_STREAM = """
import array, asyncio, fcntl, gc, sys, termios, threading
from pathlib import Path
from rigs import PulseRig
from waiting import wait_until

seen = []
sys.unraisablehook = seen.append
rig = PulseRig(Path(sys.argv[1]))
rig.start()
try:
    fd = rig._feeder.stdin.fileno()  # the rig's own pipe: it is what this is about

    def backlog():
        waiting = array.array("i", [0])
        fcntl.ioctl(fd, termios.FIONREAD, waiting)
        return waiting[0]

    # pacat is paced by the sink, the writer is not: the pipe fills up
    asyncio.run(wait_until(lambda: backlog() > 0, "room noise waiting in the pipe", 10))
finally:
    rig.stop()
for thread in threading.enumerate():
    if thread.name == "mic-silence":
        thread.join(timeout=5)
del rig
gc.collect()
for u in seen:
    print(f"unraisable {u.exc_type.__name__}: {u.exc_value} in {u.object!r}")
print("collected")
"""


def test_a_rig_stopped_mid_stream_leaves_nothing_for_the_garbage_collector(tmp_path):
    """stop() closes the rig's pipes itself.  Left to the garbage collector, the flush into the
    killed pacat raised BrokenPipeError as an unraisable exception, which pytest turns into an
    error in whichever test runs at that moment (as it did on Python 3.13)."""
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-X", "dev", "-c", RIG_STOPPED_MID_STREAM, str(tmp_path)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["collected"], result.stdout + result.stderr
