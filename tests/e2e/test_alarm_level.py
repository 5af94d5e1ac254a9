"""The kitchen-timer alarm is heard with the voice turned all the way down, on the real PulseAudio rig.

The daemon runs against the emulator; the model's scripted `set_timer` call starts a short timer and
what reaches the speaker sink is recorded from its monitor. At `ctl volume 0` the voice must be silent
while every ring past the ramp reaches -30 dBFS RMS, and the first ring must be the soft start of it.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from appliance.app.conductor import State
from appliance.audio.earcons import earcon
from appliance.audio.volume import ALARM_RAMP_DB, ALARM_RAMP_S
from appliance.emulator.server import Emulator, EmulatorConfig, Scenario
from appliance.ipc.client import request
from harness import Running, config_for, speak
from sound_checks import dbfs, read_recording, spoken_question

QUESTION = "Set a timer for the eggs please."
REC_RATE = 24000
RINGS = 4  # at the default two-second rhythm: 0 s, 2 s (in the ramp), 4 s and 6 s (at the full level)
HEARD_DBFS = -30.0
SOUND_DBFS = -50.0  # louder than this counts as sound when finding the rings in the recording


@pytest.fixture(scope="module")
def question() -> bytes:
    return spoken_question(QUESTION)


def bursts(x: np.ndarray, rate: int) -> list[tuple[int, int]]:
    """(start, end) of each stretch of sound, split at half a second of silence (a ring's own gaps are 30 ms)."""
    sound = np.flatnonzero(np.abs(x) > 10 ** (SOUND_DBFS / 20))
    if sound.size == 0:
        return []
    gaps = np.flatnonzero(np.diff(sound) > rate // 2)
    starts = [int(sound[0])] + [int(sound[i + 1]) for i in gaps]
    ends = [int(sound[i]) + 1 for i in gaps] + [int(sound[-1]) + 1]
    return list(zip(starts, ends))


def pitch(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


async def turn(daemon, rig, pcm: bytes) -> None:
    """A tap, the question, and the whole spoken reply."""
    conductor = daemon.conductor
    mark = conductor.seq
    assert (await request(daemon.control_path, "tap"))["ok"]
    await speak(rig, pcm)
    thinking = await conductor.wait_state(State.THINKING, 10, since=mark)
    speaking = await conductor.wait_state(State.SPEAKING, 10, since=thinking)
    await conductor.wait_state(State.IDLE, 20, since=speaking)


def test_at_volume_0_the_alarm_rings_loud_and_the_voice_stays_quiet(pulse, question, gpio, tmp_path, monkeypatch):
    """One recording of the speaker: a reply at volume 70, a reply at volume 0, a timer set and ringing."""
    pulse.activate(monkeypatch)
    recording = tmp_path / "speaker.raw"
    reply_s = 1.0

    async def scenario():
        async with Emulator(EmulatorConfig(pace=0), Scenario(reply="tone", tone_seconds=reply_s)) as emu:
            cfg = config_for(emu, tmp_path)
            # No earcons: the only sounds are the voice (the replies) and the alarm, which plays regardless.
            cfg = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, earcons=False))
            assert cfg.audio.volume == 70 and cfg.timers.alarm_volume == 85
            async with Running(cfg, monkeypatch, gpio) as daemon:
                conductor, player = daemon.conductor, daemon.player
                rings: list[tuple[int, float]] = []
                enough = asyncio.Event()
                play_alarm = player.play_alarm

                def counted(level: int, since_s: float) -> bool:
                    rings.append((level, since_s))
                    if len(rings) > RINGS:  # ring RINGS + 1 starts two seconds after ring RINGS began
                        enough.set()
                    return play_alarm(level, since_s)

                monkeypatch.setattr(player, "play_alarm", counted)
                pulse.start_recording_speaker(recording, rate=REC_RATE)
                try:
                    await turn(daemon, pulse, question)  # heard: the configured volume
                    assert (await request(daemon.control_path, "volume", value=0))["ok"]
                    await turn(daemon, pulse, question)  # not heard

                    # The model sets a two-second timer in the next conversation (a scenario holds per connection).
                    emu.scenario = Scenario(reply="tone", tone_seconds=reply_s,
                                            tool_calls=[("set_timer", {"seconds": 2, "label": "eggs"})])
                    mark = conductor.seq
                    assert (await request(daemon.control_path, "new-conversation"))["ok"]
                    connecting = await conductor.wait_state(State.CONNECTING, 5, since=mark)
                    await conductor.wait_state(State.IDLE, 15, since=connecting)
                    mark = conductor.seq
                    assert (await request(daemon.control_path, "tap"))["ok"]
                    await speak(pulse, question)
                    await conductor.wait_state(State.ALARM, 30, since=mark)
                    await asyncio.wait_for(enough.wait(), 30)
                finally:
                    pulse.stop_recording_speaker()
                after = await request(daemon.control_path, "status")
                assert (await request(daemon.control_path, "stop"))["ok"]
                return rings, after, [t.tool_calls for t in emu.turns]

    rings, after, calls = asyncio.run(scenario())
    assert [len(c) for c in calls] == [0, 0, 1], "three replies, the last one with the timer"
    heard = read_recording(recording)
    found = bursts(heard, REC_RATE)
    assert found, "nothing reached the speaker"

    # The voice: the reply at volume 70 is the first sound, and the two replies at volume 0 made none.
    (start, end), found_rings = found[0], found[1:]
    voice = heard[start:end]
    assert voice.size / REC_RATE == pytest.approx(reply_s, abs=0.15)
    assert pitch(voice, REC_RATE) == pytest.approx(440.0, abs=5.0)
    assert dbfs(voice) > -35.0, "the reply at volume 70 is heard"
    assert len(found_rings) in (RINGS, RINGS + 1), (
        f"after the first reply expected only the {RINGS} rings (and the start of one more), "
        f"found sounds {[(round(a / REC_RATE, 2), round(b / REC_RATE, 2)) for a, b in found]} s"
    )
    assert after["volume"] == 0, "the alarm leaves the voice volume alone"

    # The alarm: its own level, whatever the voice volume, loud past the ramp, and a gentle start.
    assert {level for level, _ in rings} == {85}
    ring_len = earcon("alarm", REC_RATE).size
    levels = [dbfs(heard[a : a + ring_len]) for a, _ in found_rings[:RINGS]]
    full = [level for level, (_, since_s) in zip(levels, rings) if since_s >= ALARM_RAMP_S]
    assert full, f"no ring past the {ALARM_RAMP_S} s ramp was recorded (rings at {[s for _, s in rings]})"
    assert min(full) >= HEARD_DBFS, f"rings measured {levels} dBFS RMS"
    assert levels[0] - max(full) == pytest.approx(ALARM_RAMP_DB, abs=1.5), levels
