"""A microphone or speaker that goes away and comes back, end to end, without restarting anything.

Real parts: PyAudio, PortAudio and alsa-lib's pulse plugin into a private PulseAudio whose sinks are taken away
and loaded again (the streams on them die, as on a pulled USB card); and the virtual sound card, whose devices
are unplugged and plugged back at a new index, listed the way PortAudio lists them.

What the owner would notice: the device is reported gone within a few seconds, the other one keeps working,
and once the device is back it is reported back and sound flows again through the same Player or Capture.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance.audio.capture import Capture
from appliance.audio.devices import AudioDeviceError
from appliance.audio.frames import RATE
from appliance.audio.speaker import Player
from appliance.audio.resample import resample
from appliance.audio.portaudio_host import PortAudioHost
from appliance.audio.virtual_card import MIC_NAME, SPEAKER_NAME, VirtualCard
from appliance.settings.schema import AudioConfig
from rigs import MIC_PCM, SPEAKER_PCM, PulseRig
from waiting import wait_until

REPLY_RATE = 24000
REC_RATE = 48000
LOST_WITHIN_S = 4.0  # a steady stream that stops is dropped after 2 s without a callback, plus a tick
STEADY = 120  # callbacks (or frames) of 20 ms: past the pulse plugin's start-up gap, and 2 s old
BACK_WITHIN_S = 10.0  # retries back off to every 5 s, plus the open itself
TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------------------------- helpers


class Presence:
    """Records on_presence reports, checks they arrive on the loop's thread, and hands them out in order."""

    def __init__(self) -> None:
        self.reports: list[tuple[bool, str]] = []
        self.off_loop_calls = 0
        self._taken = 0
        self._loop_thread = threading.get_ident()
        self._changed = asyncio.Event()

    def __call__(self, present: bool, reason: str) -> None:
        if threading.get_ident() != self._loop_thread:
            self.off_loop_calls += 1
        self.reports.append((present, reason))
        self._changed.set()

    async def next(self, present: bool, within_s: float) -> str:
        """The next report not handed out yet, waiting for it; it must say `present`. Returns its reason."""
        deadline = time.monotonic() + within_s
        while len(self.reports) == self._taken:
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no presence report ({'back' if present else 'lost'}) within {within_s:g} s")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass
        got, reason = self.reports[self._taken]
        self._taken += 1
        assert got is present, f"expected present={present}, got {self.reports[self._taken - 1:]}"
        return reason

    @property
    def states(self) -> list[bool]:
        return [present for present, _ in self.reports]




async def stop_watch(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def tone(seconds: float, rate: int, hz: float, amplitude: float = 0.5) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


def pcm16(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2").tobytes()


def best_correlation(recording: np.ndarray, expected: np.ndarray) -> float:
    """Normalised cross-correlation of `expected` with the part of `recording` that lines up best."""
    n = 1 << int(np.ceil(np.log2(recording.size + expected.size)))
    xc = np.fft.irfft(np.fft.rfft(recording, n) * np.conj(np.fft.rfft(expected, n)), n)
    lag = int(np.argmax(xc[: recording.size]))
    segment = recording[lag : lag + expected.size]
    segment = np.concatenate((segment, np.zeros(expected.size - segment.size)))
    return float(segment @ expected / np.sqrt((segment @ segment) * (expected @ expected) + 1e-30))


def frames_level(frames: list[bytes]) -> float:
    """Peak of some 16 kHz frames, as a fraction of full scale."""
    if not frames:
        return 0.0
    return float(np.max(np.abs(np.frombuffer(b"".join(frames), "<i2").astype(np.float64)))) / 32768.0


# ---------------------------------------------------------------------------------------------- PulseAudio rig



@pytest.fixture
def rig(hotplug_rig: PulseRig) -> Iterator[PulseRig]:
    """The module's rig, with every sink plugged back in and the recorder stopped after each test."""
    try:
        yield hotplug_rig
    finally:
        hotplug_rig.stop_recording_speaker()
        hotplug_rig.restore()


def rig_cfg(**changes: object) -> AudioConfig:
    base = {"input_device": MIC_PCM, "output_device": SPEAKER_PCM, "volume": 100, "earcons": True}
    return dataclasses.replace(AudioConfig(), **{**base, **changes})


def recorded(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float64) / 32768.0 if path.exists() else np.zeros(0)


async def play_and_record(player: Player, rig: PulseRig, recording: Path, reply: np.ndarray) -> None:
    """Record the speaker sink while `reply` is fed like the Live API sends it, until it has drained."""
    drained = asyncio.Event()
    previous = player.events.on_drained
    player.events.on_drained = lambda _at: drained.set()
    try:
        rig.start_recording_speaker(recording, REC_RATE)
        await wait_until(lambda: recording.exists() and recording.stat().st_size > 0, "the recorder to start")
        player.new_reply()
        pcm, step = pcm16(reply), int(0.04 * REPLY_RATE) * 2
        for i in range(0, len(pcm), step):
            player.feed(pcm[i : i + step])
            await asyncio.sleep(0.02)  # pacing the sender (40 ms chunks at 2x real time), not waiting for anything
        player.end_of_reply()
        await asyncio.wait_for(drained.wait(), TIMEOUT_S)
        size = recording.stat().st_size
        await wait_until(lambda: recording.stat().st_size >= size + int(0.3 * REC_RATE) * 2, "the recording to grow")
    finally:
        rig.stop_recording_speaker()
        player.events.on_drained = previous


def test_a_speaker_whose_sink_goes_away_is_reported_lost_then_back_and_plays_again(
    rig: PulseRig, tmp_path: Path
) -> None:
    reply = tone(1.0, REPLY_RATE, 523.0)
    recording = tmp_path / "after.raw"

    async def scenario() -> tuple[Presence, Player, float]:
        loop = asyncio.get_running_loop()
        presence = Presence()
        host = PortAudioHost()
        player = Player(rig_cfg(output_rate=48000), loop, host=host, on_presence=presence)
        events = player.events
        drained = asyncio.Event()
        silent = asyncio.Event()
        events.on_drained = lambda _at: drained.set()
        events.on_silent_after_flush = lambda _at: silent.set()
        assert await player.start_async(allow_missing=False) is not None
        watch = asyncio.create_task(player.watch())
        try:
            await wait_until(lambda: player.stats.callbacks >= STEADY, "the speaker to call back steadily")
            jitter = player.jitter
            player.set_volume(80)

            unplugged_at = time.monotonic()
            rig.unplug("speaker")
            reason = await presence.next(False, LOST_WITHIN_S)
            lost_after = time.monotonic() - unplugged_at
            assert "unplugged?" in reason and not player.present

            # everything the conductor calls goes on working, and the turn still ends
            player.new_reply()
            player.feed(pcm16(reply[:2400]))
            assert player.play_earcon("listen_end") is False
            player.end_of_reply()
            await asyncio.wait_for(drained.wait(), TIMEOUT_S)
            player.flush()
            await asyncio.wait_for(silent.wait(), TIMEOUT_S)

            rig.plug("speaker")
            reason = await presence.next(True, BACK_WITHIN_S)
            assert SPEAKER_PCM in reason and player.present
            assert player.jitter is jitter and player.events is events and player.volume == 80
            player.set_volume(100)
            await play_and_record(player, rig, recording, reply)
            return presence, player, lost_after
        finally:
            await stop_watch(watch)
            await player.close_async()
            await asyncio.to_thread(host.close)

    presence, player, lost_after = asyncio.run(scenario())
    assert presence.states == [False, True] and presence.off_loop_calls == 0
    assert lost_after < LOST_WITHIN_S
    assert player.stats.restarts == 1
    expected = resample(reply, REPLY_RATE, REC_RATE).astype(np.float64)
    ncc = best_correlation(recorded(recording), expected)
    assert ncc > 0.9, f"after coming back the speaker did not play the reply (correlation {ncc:.3f})"


def test_a_microphone_whose_source_goes_away_is_reported_lost_then_back_and_heard_again(rig: PulseRig) -> None:
    async def scenario() -> tuple[Presence, Capture, list[bytes]]:
        loop = asyncio.get_running_loop()
        presence = Presence()
        frames: list[bytes] = []
        capture = Capture(rig_cfg(), frames.append, loop, on_presence=presence)  # its own host
        assert await capture.start_async(allow_missing=False) is not None
        watch = asyncio.create_task(capture.watch())
        try:
            await wait_until(lambda: len(frames) > STEADY, "microphone frames")
            unplugged_at = time.monotonic()
            rig.unplug("mic")
            await presence.next(False, LOST_WITHIN_S)
            assert not capture.present and time.monotonic() - unplugged_at < LOST_WITHIN_S

            rig.plug("mic")
            await presence.next(True, BACK_WITHIN_S)
            after = len(frames)
            await wait_until(lambda: len(frames) > after + 25, "frames from the microphone that came back")
            # and it is the microphone that is heard: a tone played into it arrives through the same on_frame
            player = rig.play_into_mic(pcm16(tone(1.0, RATE, 1000.0, 0.3)), RATE)
            await asyncio.to_thread(player.wait, TIMEOUT_S)
            await wait_until(lambda: frames_level(frames[after:]) > 0.1, "the tone in the microphone")
            return presence, capture, frames
        finally:
            await stop_watch(watch)
            await capture.close_async()

    presence, capture, _ = asyncio.run(scenario())
    assert presence.states == [False, True] and presence.off_loop_calls == 0
    assert capture.stats.restarts == 1


def test_losing_the_speaker_leaves_the_microphone_on_the_same_host_untouched(rig: PulseRig) -> None:
    async def scenario() -> tuple[Presence, Presence, PortAudioHost, float]:
        loop = asyncio.get_running_loop()
        speaker_presence, mic_presence = Presence(), Presence()
        host = PortAudioHost()
        frame_times: list[float] = []
        player = Player(rig_cfg(), loop, host=host, on_presence=speaker_presence)
        capture = Capture(rig_cfg(), lambda _f: frame_times.append(time.monotonic()), loop, host=host,
                          on_presence=mic_presence)
        await player.start_async(allow_missing=False)
        await capture.start_async(allow_missing=False)
        watches = [asyncio.create_task(player.watch()), asyncio.create_task(capture.watch())]
        try:
            await wait_until(lambda: len(frame_times) > STEADY, "microphone frames")
            mic_stream = capture._stream
            start = len(frame_times)
            rig.unplug("speaker")
            await speaker_presence.next(False, LOST_WITHIN_S)
            rig.plug("speaker")
            await speaker_presence.next(True, BACK_WITHIN_S)
            assert capture._stream is mic_stream, "the microphone's stream was reopened"
            gaps = np.diff(frame_times[start:])
            return speaker_presence, mic_presence, host, float(gaps.max())
        finally:
            for watch in watches:
                await stop_watch(watch)
            await capture.close_async()
            await player.close_async()
            await asyncio.to_thread(host.close)

    speaker_presence, mic_presence, host, longest_gap = asyncio.run(scenario())
    assert speaker_presence.states == [False, True]
    assert mic_presence.reports == []
    assert host.rescans == 0  # PulseAudio devices keep their ALSA names: nothing needed a rescan
    assert longest_gap < 0.5, f"the microphone paused for {longest_gap:.2f} s"


def test_a_speaker_missing_at_start_is_reported_and_comes_up_when_it_appears(rig: PulseRig, tmp_path: Path) -> None:
    rig.unplug("speaker")
    recording = tmp_path / "late.raw"
    reply = tone(0.8, REPLY_RATE, 659.0)

    async def scenario() -> Presence:
        loop = asyncio.get_running_loop()
        presence = Presence()
        player = Player(rig_cfg(output_rate=48000), loop, on_presence=presence)
        with pytest.raises(AudioDeviceError):
            await player.start_async(allow_missing=False)  # the old behaviour, for doctor and audio-test
        assert await player.start_async() is None  # allow_missing is the default of start_async
        watch = asyncio.create_task(player.watch())
        try:
            reason = await presence.next(False, 1.0)
            assert SPEAKER_PCM in reason and not player.present
            rig.plug("speaker")
            await presence.next(True, BACK_WITHIN_S)
            await play_and_record(player, rig, recording, reply)
            return presence
        finally:
            await stop_watch(watch)
            await player.close_async()

    presence = asyncio.run(scenario())
    assert presence.states == [False, True]
    expected = resample(reply, REPLY_RATE, REC_RATE).astype(np.float64)
    assert best_correlation(recorded(recording), expected) > 0.9


# ---------------------------------------------------------------------------------------------- virtual card

SPEED = 4.0


def card_cfg(**changes: object) -> AudioConfig:
    base = {"input_device": MIC_NAME, "output_device": SPEAKER_NAME, "volume": 100, "earcons": False}
    return dataclasses.replace(AudioConfig(), **{**base, **changes})


def played_since(card: VirtualCard, frames_before: int) -> np.ndarray:
    """What the virtual speaker played after it had played `frames_before` frames, mono float."""
    mono = card.recorded_mono16().astype(np.float64) / 32768.0
    forgotten = card.output_frames_forgotten
    return mono[max(0, frames_before - forgotten) :]


def test_on_the_virtual_card_both_devices_come_back_after_an_unplug(tmp_path: Path) -> None:
    """The card used as `pa=` (as `appliance demo` does): it lists what is plugged in right now."""
    reply = tone(0.5, REPLY_RATE, 440.0)

    async def scenario() -> tuple[Presence, Presence, VirtualCard, np.ndarray]:
        loop = asyncio.get_running_loop()
        card = VirtualCard(speed=SPEED)
        mic_presence, speaker_presence = Presence(), Presence()
        frames: list[bytes] = []
        capture = Capture(card_cfg(), frames.append, loop, pa=card, on_presence=mic_presence)
        player = Player(card_cfg(), loop, pa=card, on_presence=speaker_presence)
        drained = asyncio.Event()
        player.events.on_drained = lambda _at: drained.set()
        await capture.start_async(allow_missing=False)
        await player.start_async(allow_missing=False)
        watches = [asyncio.create_task(capture.watch(0.3, retry_s=0.2)),
                   asyncio.create_task(player.watch(0.3, retry_s=0.2))]
        try:
            await wait_until(lambda: len(frames) > 10, "microphone frames")
            card.unplug(MIC_NAME)
            await mic_presence.next(False, LOST_WITHIN_S)
            card.unplug(SPEAKER_NAME)
            await speaker_presence.next(False, LOST_WITHIN_S)
            card.plug(SPEAKER_NAME)  # back first: now at index 0
            card.plug(MIC_NAME)
            await speaker_presence.next(True, BACK_WITHIN_S)
            await mic_presence.next(True, BACK_WITHIN_S)

            heard_from = len(frames)
            card.queue_input(tone(0.5, card.mic.rate, 1000.0, 0.3).astype(np.float64))
            await wait_until(lambda: frames_level(frames[heard_from:]) > 0.1, "the queued tone")

            before = card.output_frames_played
            player.new_reply()
            player.feed(pcm16(reply))
            player.end_of_reply()
            await asyncio.wait_for(drained.wait(), TIMEOUT_S)
            await asyncio.to_thread(card.wait_output_frames, card.output_frames_played + 960, TIMEOUT_S)
            return mic_presence, speaker_presence, card, played_since(card, before)
        finally:
            for watch in watches:
                await stop_watch(watch)
            await capture.close_async()
            await player.close_async()
            card.terminate()

    mic_presence, speaker_presence, card, played = asyncio.run(scenario())
    assert mic_presence.states == speaker_presence.states == [False, True]
    assert card.mic.index == 1 and card.speaker.index == 0  # they came back in the other order
    expected = resample(reply, REPLY_RATE, card.speaker.rate).astype(np.float64)
    assert best_correlation(played, expected) > 0.9


def test_a_microphone_pulled_for_a_moment_is_noticed_at_once_not_after_the_stall_time(tmp_path: Path) -> None:
    """Pulled and pushed back within the stall time, the dead stream must still be noticed and reopened:
    otherwise the box looks ready while its microphone hears nothing, and the next question is lost."""

    async def scenario() -> tuple[Presence, str]:
        loop = asyncio.get_running_loop()
        card = VirtualCard(speed=SPEED)
        presence = Presence()
        frames: list[bytes] = []
        capture = Capture(card_cfg(), frames.append, loop, pa=card, on_presence=presence)
        await capture.start_async(allow_missing=False)
        watch = asyncio.create_task(capture.watch(30.0, retry_s=0.2))  # the stall check cannot fire here
        try:
            await wait_until(lambda: len(frames) > 10, "microphone frames")
            card.unplug(MIC_NAME)
            why = await presence.next(False, 2.0)
            card.plug(MIC_NAME)
            await presence.next(True, BACK_WITHIN_S)
            heard_from = len(frames)
            card.queue_input(tone(0.5, card.mic.rate, 1000.0, 0.3).astype(np.float64))
            await wait_until(lambda: frames_level(frames[heard_from:]) > 0.1, "the queued tone")
            return presence, why
        finally:
            await stop_watch(watch)
            await capture.close_async()
            card.terminate()

    presence, why = asyncio.run(scenario())
    assert presence.states == [False, True]
    assert "ended by itself" in why, why


def test_a_replugged_microphone_at_a_new_address_is_found_by_a_rescan_that_only_pauses_the_speaker() -> None:
    """The card listed as PortAudio lists it: seeing the replugged mic needs a rescan under the open speaker."""
    long_tone = tone(4.0, REPLY_RATE, 330.0, 0.4)

    async def scenario() -> tuple[Presence, Presence, PortAudioHost, VirtualCard, Player, np.ndarray, int]:
        loop = asyncio.get_running_loop()
        card = VirtualCard(speed=SPEED)
        host = PortAudioHost(card.portaudio, cards=card.cards)
        mic_presence, speaker_presence = Presence(), Presence()
        frames: list[bytes] = []
        capture = Capture(card_cfg(), frames.append, loop, host=host, on_presence=mic_presence)
        player = Player(card_cfg(), loop, host=host, on_presence=speaker_presence)
        await capture.start_async(allow_missing=False)
        await player.start_async(allow_missing=False)
        watches = [asyncio.create_task(capture.watch(0.3, retry_s=0.2)),
                   asyncio.create_task(player.watch(0.3, retry_s=0.2))]
        try:
            await wait_until(lambda: len(frames) > 10, "microphone frames")
            before = card.output_frames_played
            player.new_reply()
            player.feed(pcm16(long_tone))  # plays for 1 s of wall time at 4x, across the replug
            player.end_of_reply()
            card.unplug(MIC_NAME)
            await mic_presence.next(False, LOST_WITHIN_S)
            await wait_until(lambda: capture.stats.reopen_failures >= 2, "retries while the microphone is out")
            assert host.rescans == 0, "a rescan while nothing new was plugged in would pause the speaker for nothing"
            card.plug(MIC_NAME)
            await mic_presence.next(True, BACK_WITHIN_S)
            heard_from = len(frames)
            card.queue_input(tone(0.5, card.mic.rate, 1000.0, 0.3).astype(np.float64))
            await wait_until(lambda: frames_level(frames[heard_from:]) > 0.1, "the queued tone")
            await asyncio.to_thread(
                card.wait_output_frames, before + round(4.2 * card.speaker.rate), TIMEOUT_S
            )
            return (mic_presence, speaker_presence, host, card, player, played_since(card, before),
                    capture.stats.restarts)
        finally:
            for watch in watches:
                await stop_watch(watch)
            await capture.close_async()
            await player.close_async()
            await asyncio.to_thread(host.close)
            card.terminate()

    mic_presence, speaker_presence, host, card, player, played, mic_restarts = asyncio.run(scenario())
    assert mic_presence.states == [False, True]
    assert host.rescans == 1 and mic_restarts == 1
    assert speaker_presence.reports == [], "the speaker only paused: it was never lost"
    # the whole tone played, paused by no more than the rescan took (a few periods of the card)
    loud = np.flatnonzero(np.abs(played) > 0.05)
    span = (loud[-1] - loud[0]) / card.speaker.rate
    assert 3.9 < span < 4.5, span
    expected = resample(long_tone, REPLY_RATE, card.speaker.rate).astype(np.float64)
    assert best_correlation(played, expected) > 0.8
