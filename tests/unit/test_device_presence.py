"""The presence logic of the microphone and speaker streams: lost, reported once, retried with backoff, back.

These run against `FakeMachine`, a fake of PortAudio and the sound devices under it (a last resort, named as
such): the real rigs cannot wedge a stream that stays "active", count every open attempt with its time, or
fail a rescan on cue, and they take seconds where these take tenths. The same paths run end to end, with real
PortAudio, in tests/e2e/test_device_return.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from appliance.audio.capture import Capture
from appliance.audio.devices import AudioDeviceError
from appliance.audio.speaker import Player
from appliance.audio.portaudio_host import PortAudioHost
from appliance.settings.schema import AudioConfig
from waiting import wait_until

MIC, SPEAKER = "usb-mic", "usb-speaker"
RATE = 48000
PERIOD_FRAMES = 960
CALLBACK_EVERY_S = 0.002  # the fake's callbacks come 10x faster than a real 20 ms period: no test waits long
STALL_S = 0.1
RETRY_S = 0.05
MAX_RETRY_S = 0.12
TIMEOUT_S = 5.0


# ---------------------------------------------------------------------------------------------- the fake


class FakeMachine:
    """FAKE (last resort): sound devices that come and go, and PortAudio's way of listing them.

    Like PortAudio, a `pyaudio()` instance lists the devices present when the first live instance was made
    (initialisations are counted), and a device that has gone, or was plugged back since it was listed,
    refuses to open. Streams call back from their own thread; `wedge()` stops the callbacks of a device's
    stream while it still claims to be active, as a stuck driver does.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.present: dict[str, int] = {MIC: 1, SPEAKER: 1}  # name -> its plugging (0: unplugged)
        self.directions = {MIC: "input", SPEAKER: "output"}
        self.alive = 0
        self.listing: tuple[tuple[str, int], ...] = ()
        self.initialisations = 0
        self.opens: list[tuple[float, str, bool]] = []  # (when, device, it worked)
        self.lookups: list[float] = []  # when a device was looked up by name (once per open attempt)
        self.streams: list[FakeStream] = []
        self.fail_next_init: Exception | None = None

    def pyaudio(self) -> FakePyAudio:
        with self.lock:
            if self.fail_next_init is not None:
                error, self.fail_next_init = self.fail_next_init, None
                raise error
            if self.alive == 0:
                self.listing = tuple((name, plug) for name, plug in self.present.items() if plug)
                self.initialisations += 1
            self.alive += 1
            return FakePyAudio(self, self.listing)

    def cards(self) -> frozenset[str]:
        with self.lock:
            return frozenset(f"{name} #{plug}" for name, plug in self.present.items() if plug)

    def unplug(self, name: str) -> None:
        with self.lock:
            self.present[name] = 0
            streams = [s for s in self.streams if s.name == name]
        for stream in streams:
            stream.lost = True

    def plug(self, name: str, *, new_card: bool = True) -> None:
        """Back in; `new_card=False`: at its old address, so the old listing still opens it."""
        with self.lock:
            last = max(p for n, p in self.listing if n == name) if any(n == name for n, _ in self.listing) else 1
            self.present[name] = last + 1 if new_card else last

    def wedge(self, name: str) -> None:
        for stream in list(self.streams):
            if stream.name == name:
                stream.wedged = True

    def open_attempts(self, name: str) -> list[tuple[float, bool]]:
        return [(at, ok) for at, device, ok in self.opens if device == name]


class FakePyAudio:
    """FAKE: the part of PyAudio the audio path uses, over one listing of a FakeMachine."""

    def __init__(self, machine: FakeMachine, listing: tuple[tuple[str, int], ...]) -> None:
        self._machine = machine
        self._listing = listing
        self._terminated = False

    def get_device_count(self) -> int:
        self._machine.lookups.append(time.monotonic())
        return len(self._listing)

    def get_device_info_by_index(self, index: int) -> dict[str, Any]:
        name, _ = self._listing[index]
        is_input = self._machine.directions[name] == "input"
        return {"index": index, "name": name, "hostApi": 0, "maxInputChannels": 2 if is_input else 0,
                "maxOutputChannels": 0 if is_input else 2, "defaultSampleRate": float(RATE)}

    def get_host_api_info_by_index(self, index: int) -> dict[str, Any]:
        return {"index": 0, "name": "Fake"}

    def get_default_input_device_info(self) -> dict[str, Any]:
        raise OSError(-9996, "no default device in the fake")

    get_default_output_device_info = get_default_input_device_info

    def _usable(self, index: int) -> str:
        name, plug = self._listing[index]
        with self._machine.lock:
            if self._terminated or self._machine.present[name] != plug:
                raise OSError(-9999, "Unanticipated host error")
        return name

    def is_format_supported(self, rate: float, **kwargs: Any) -> bool:
        index = kwargs.get("input_device", kwargs.get("output_device"))
        channels = kwargs.get("input_channels", kwargs.get("output_channels"))
        try:
            self._usable(index)
        except OSError:
            raise ValueError("Device unavailable", -9985) from None
        if rate != RATE or channels != 2:
            raise ValueError("Invalid sample rate", -9997)
        return True

    def open(self, *, input_device_index: int | None = None, output_device_index: int | None = None,
             stream_callback: Callable[..., Any], frames_per_buffer: int, channels: int, **_: Any) -> FakeStream:
        index = input_device_index if input_device_index is not None else output_device_index
        assert index is not None
        name = self._listing[index][0]
        try:
            self._usable(index)
        except OSError:
            self._machine.opens.append((time.monotonic(), name, False))
            raise
        self._machine.opens.append((time.monotonic(), name, True))
        stream = FakeStream(name, self._machine.directions[name] == "input", stream_callback, frames_per_buffer,
                            channels)
        with self._machine.lock:
            self._machine.streams.append(stream)
        return stream

    def terminate(self) -> None:
        with self._machine.lock:
            if not self._terminated:
                self._terminated = True
                self._machine.alive -= 1


class FakeStream:
    """FAKE: a callback stream whose thread calls back every CALLBACK_EVERY_S until stopped, lost or wedged."""

    def __init__(self, name: str, is_input: bool, callback: Callable[..., Any], frames: int, channels: int) -> None:
        self.name = name
        self._input = bytes(frames * channels * 2) if is_input else None
        self._callback = callback
        self._frames = frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # gone: the thread ends, the stream turns inactive
        self.wedged = False  # stuck: no callbacks, but it still says it is active
        self.closed = False

    def start_stream(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"fake-{self.name}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(CALLBACK_EVERY_S) and not self.lost:
            if not self.wedged:
                self._callback(self._input, self._frames, {}, 0)

    def is_active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop_stream(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(TIMEOUT_S)

    def close(self) -> None:
        self.stop_stream()
        self.closed = True


# ---------------------------------------------------------------------------------------------- helpers


def cfg(**changes: Any) -> AudioConfig:
    base = {"input_device": MIC, "output_device": SPEAKER, "volume": 100, "earcons": True, "output_rate": RATE}
    return dataclasses.replace(AudioConfig(), **{**base, **changes})


class Reports:
    """on_presence calls, and the thread each came on."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, str]] = []
        self.threads: set[int] = set()

    def __call__(self, present: bool, reason: str) -> None:
        self.calls.append((present, reason))
        self.threads.add(threading.get_ident())

    @property
    def states(self) -> list[bool]:
        return [present for present, _ in self.calls]




def watch(stream: Any) -> asyncio.Task[None]:
    return asyncio.create_task(stream.watch(STALL_S, retry_s=RETRY_S, max_retry_s=MAX_RETRY_S))


async def cancel(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------------------------- tests


def test_a_missing_device_raises_at_start_unless_allowed_and_then_it_is_reported_absent_once() -> None:
    machine = FakeMachine()
    machine.unplug(MIC)

    async def scenario() -> tuple[Reports, Capture]:
        loop = asyncio.get_running_loop()
        reports = Reports()
        capture = Capture(cfg(), lambda _frame: None, loop, host=PortAudioHost(machine.pyaudio, cards=machine.cards),
                          on_presence=reports)
        with pytest.raises(AudioDeviceError, match=MIC):
            capture.start()
        assert reports.calls == [] and not capture.present
        assert capture.start(allow_missing=True) is None
        assert capture.start(allow_missing=True) is None  # asked again: still one report
        await wait_until(lambda: reports.calls, "the report", TIMEOUT_S)
        await asyncio.sleep(0)  # let anything else scheduled run: no second report may be queued
        assert not capture.healthy(), "absent with nobody bringing it back: the watchdog should know"
        task = watch(capture)
        await wait_until(lambda: capture.watching, "the watch to start", TIMEOUT_S)
        assert capture.healthy()
        await cancel(task)
        capture.close()
        return reports, capture

    reports, capture = asyncio.run(scenario())
    assert reports.states == [False]
    assert MIC in reports.calls[0][1]


def test_a_wedged_stream_is_dropped_reported_once_retried_with_backoff_and_reported_back() -> None:
    machine = FakeMachine()

    async def scenario() -> tuple[Reports, Capture, list[float], int, set[int]]:
        loop = asyncio.get_running_loop()
        reports = Reports()
        frames: list[bytes] = []
        capture = Capture(cfg(), frames.append, loop, host=PortAudioHost(machine.pyaudio, cards=machine.cards),
                          on_presence=reports)
        capture.start()
        task = watch(capture)
        try:
            await wait_until(lambda: len(frames) > 5, "frames", TIMEOUT_S)
            machine.unplug(MIC)
            machine.wedge(MIC)  # the stream stays "active" but nothing more comes
            await wait_until(lambda: reports.calls, "the loss to be reported", TIMEOUT_S)
            assert not capture.present and capture.healthy()  # away, but being brought back: not a hung process
            lost = len(machine.lookups)
            await wait_until(lambda: len(machine.lookups) >= lost + 7, "seven attempts to reopen", TIMEOUT_S)
            attempts = machine.lookups[lost:]
            machine.plug(MIC)
            await wait_until(lambda: len(reports.calls) == 2, "the return to be reported", TIMEOUT_S)
            back_at = len(frames)
            await wait_until(lambda: len(frames) > back_at + 5, "frames again, through the same on_frame", TIMEOUT_S)
            assert capture.healthy()
            return reports, capture, attempts, machine.initialisations, reports.threads
        finally:
            await cancel(task)
            capture.close()

    reports, capture, attempts, initialisations, threads = asyncio.run(scenario())
    assert reports.states == [False, True]
    assert threads == {threading.get_ident()}  # asyncio.run's loop runs on this thread: every report came on it
    assert capture.stats.restarts == 1 and capture.stats.reopen_failures >= 7
    assert initialisations >= 2, "with nobody else on the host a retry rescans"
    gaps = np.diff(attempts)
    expected = [min(MAX_RETRY_S, RETRY_S * 1.5**k) for k in range(gaps.size)]
    assert all(gap >= want * 0.95 for gap, want in zip(gaps, expected)), (gaps, expected)
    assert all(gap < want + 0.25 for gap, want in zip(gaps, expected)), (gaps, expected)  # a tick or two late at most
    assert expected[-1] == MAX_RETRY_S  # the backoff reached its cap and stayed there


def test_the_other_stream_is_left_alone_until_a_new_card_appears_and_then_only_paused() -> None:
    machine = FakeMachine()

    async def scenario() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        host = PortAudioHost(machine.pyaudio, cards=machine.cards)
        mic_reports, speaker_reports = Reports(), Reports()
        capture = Capture(cfg(), lambda _f: None, loop, host=host, on_presence=mic_reports)
        player = Player(cfg(), loop, host=host, on_presence=speaker_reports)
        capture.start()
        player.start()
        tasks = [watch(capture), watch(player)]
        try:
            speaker_stream = player._stream
            machine.unplug(MIC)
            await wait_until(lambda: mic_reports.calls, "the microphone's loss", TIMEOUT_S)
            await wait_until(lambda: capture.stats.reopen_failures >= 3, "retries against the old list", TIMEOUT_S)
            untouched = player._stream is speaker_stream and not speaker_stream.closed
            rescans_while_out = host.rescans

            machine.plug(MIC, new_card=True)  # a new card number: only a rescan sees it
            await wait_until(lambda: len(mic_reports.calls) == 2, "the microphone's return", TIMEOUT_S)
            callbacks = player.stats.callbacks
            await wait_until(lambda: player.stats.callbacks > callbacks + 5, "the speaker to call back after the rescan", TIMEOUT_S)
            return {
                "untouched": untouched, "rescans_while_out": rescans_while_out, "rescans": host.rescans,
                "speaker_reports": speaker_reports.calls, "mic": mic_reports.states,
                "speaker_reopened": player._stream is not speaker_stream, "speaker_present": player.present,
            }
        finally:
            await cancel(*tasks)
            capture.close()
            player.close()
            host.close()

    result = asyncio.run(scenario())
    assert result["untouched"] and result["rescans_while_out"] == 0
    assert result["rescans"] == 1 and result["mic"] == [False, True]
    assert result["speaker_reopened"] and result["speaker_present"]
    assert result["speaker_reports"] == [], "a pause for the rescan is not a loss"


def test_a_device_back_at_its_old_address_reopens_without_a_rescan() -> None:
    machine = FakeMachine()

    async def scenario() -> tuple[int, list[bool]]:
        loop = asyncio.get_running_loop()
        host = PortAudioHost(machine.pyaudio, cards=machine.cards)
        reports = Reports()
        capture = Capture(cfg(), lambda _f: None, loop, host=host)
        player = Player(cfg(), loop, host=host, on_presence=reports)
        capture.start()
        player.start()
        tasks = [watch(player)]
        try:
            machine.unplug(SPEAKER)
            await wait_until(lambda: reports.calls, "the speaker's loss", TIMEOUT_S)
            machine.plug(SPEAKER, new_card=False)
            await wait_until(lambda: len(reports.calls) == 2, "the speaker's return", TIMEOUT_S)
            return host.rescans, reports.states
        finally:
            await cancel(*tasks)
            capture.close()
            player.close()
            host.close()

    rescans, states = asyncio.run(scenario())
    assert states == [False, True] and rescans == 0


def test_the_player_keeps_its_promises_and_its_state_while_the_speaker_is_away() -> None:
    machine = FakeMachine()
    machine.unplug(SPEAKER)
    reply = np.zeros(4800, "<i2").tobytes()

    async def scenario() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        reports = Reports()
        player = Player(cfg(), loop, host=PortAudioHost(machine.pyaudio, cards=machine.cards), on_presence=reports)
        fired: list[str] = []
        events = player.events
        events.on_drained = lambda _at: fired.append("drained")
        events.on_silent_after_flush = lambda _at: fired.append("silent")
        events.on_first_audio = lambda _at: fired.append("first")
        assert player.start(allow_missing=True) is None
        task = watch(player)
        try:
            # absent from the start: nothing raises, and a turn still ends
            player.new_reply()
            player.feed(reply)
            assert player.play_earcon("listen_start") is False
            player.end_of_reply()
            player.flush()
            await wait_until(lambda: fired == ["drained", "silent"], "the events of a reply that could not play", TIMEOUT_S)

            machine.plug(SPEAKER)
            await wait_until(lambda: reports.states == [False, True], "the speaker", TIMEOUT_S)
            jitter = player.jitter
            player.set_volume(40)

            # lost in the middle of a complete reply: on_drained still comes, once, after the loss
            fired.clear()
            player.on_presence = lambda present, _why: fired.append("back" if present else "lost")
            player.new_reply()
            player.feed(reply * 100)  # 10 s at 24 kHz, about 1 s at the fake's pace
            player.end_of_reply()
            await wait_until(lambda: "first" in fired, "the reply to start playing", TIMEOUT_S)
            machine.unplug(SPEAKER)
            machine.wedge(SPEAKER)
            await wait_until(lambda: "drained" in fired, "the drain promise", TIMEOUT_S)
            player.feed(reply)  # the rest of a lost reply goes nowhere, silently
            machine.plug(SPEAKER)
            await wait_until(lambda: "back" in fired, "the return", TIMEOUT_S)
            await asyncio.sleep(STALL_S)  # an observation window: nothing promised may fire twice
            return {"fired": list(fired), "jitter_kept": player.jitter is jitter, "events_kept": player.events is events,
                    "volume": player.volume}
        finally:
            await cancel(task)
            player.close()

    result = asyncio.run(scenario())
    assert result["fired"] == ["first", "lost", "drained", "back"]
    assert result["jitter_kept"] and result["events_kept"] and result["volume"] == 40


def test_the_watch_carries_on_after_a_surprise_and_stop_means_stopped(caplog: pytest.LogCaptureFixture) -> None:
    machine = FakeMachine()

    async def scenario() -> tuple[Reports, int]:
        loop = asyncio.get_running_loop()
        reports = Reports()
        capture = Capture(cfg(), lambda _f: None, loop, host=PortAudioHost(machine.pyaudio, cards=machine.cards),
                          on_presence=reports)
        capture.start()
        task = watch(capture)
        try:
            machine.unplug(MIC)
            machine.fail_next_init = RuntimeError("a bug in the rescan")
            await wait_until(lambda: reports.calls, "the loss", TIMEOUT_S)
            await wait_until(lambda: capture.stats.reopen_failures >= 2, "retries after the surprise", TIMEOUT_S)
            machine.plug(MIC)
            await wait_until(lambda: capture.present, "the microphone back", TIMEOUT_S)
            assert not task.done()
            capture.stop()
            opens = len(machine.opens)
            machine.unplug(MIC)
            machine.plug(MIC)
            await asyncio.sleep(3 * STALL_S)  # a stopped stream must stay closed however long the watch runs
            assert not task.done()
            return reports, len(machine.opens) - opens
        finally:
            await cancel(task)
            capture.close()

    with caplog.at_level(logging.ERROR, logger="appliance.audio.capture"):
        reports, opens_after_stop = asyncio.run(scenario())
    assert reports.states == [False, True]
    assert opens_after_stop == 0
    assert any("watch failed" in r.getMessage() for r in caplog.records)
