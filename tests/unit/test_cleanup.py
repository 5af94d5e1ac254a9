"""Noise suppression and automatic gain on the microphone's frames (`appliance.audio.cleanup`).

The wrapper is driven directly and through `PrerollGate`, the code PortAudio's thread runs, with
generated frames: a recording stand-in for the library where the order of calls matters, and the real
WebRTC processor (the `kitchen` extra, installed with the test extras) where its state does. What it
does to speech in a fan's noise is in tests/e2e/test_capture.py, on espeak-ng's words: the generated
voice here is too steady for a speech model to take for speech.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from typing import Any

import numpy as np
import pytest

from appliance.audio.capture import WARMUP_MS, Capture, PrerollGate
from appliance.audio.cleanup import INSTALL_HINT, Cleanup, CleanupUnavailable, Passthrough, cleanup_for
from appliance.audio.devices import InputFormat
from appliance.audio.frames import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, RATE
from appliance.audio.speech import speechlike
from appliance.settings.errors import ConfigError
from appliance.settings.loader import load_config
from appliance.settings.schema import AudioConfig

PREROLL = 15  # frames in the default 300 ms
MONO_16K = InputFormat(None, RATE, 1, "int16", FRAME_SAMPLES)  # type: ignore[arg-type]


def audio(**changes: Any) -> AudioConfig:
    return dataclasses.replace(AudioConfig(), **changes)


def to_frames(x: np.ndarray) -> list[bytes]:
    pcm = np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def samples(frames: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(frames), "<i2").astype(np.float64)


def hum_and_rumble(n: int, rms: float, seed: int = 2) -> np.ndarray:
    """A stand-in for a fan: brown-ish rumble plus a 100 Hz hum, at `rms`."""
    rng = np.random.default_rng(seed)
    rumble = np.cumsum(rng.normal(size=n))
    rumble -= np.convolve(rumble, np.ones(400) / 400, mode="same")  # keep it from wandering off
    hiss = rng.normal(size=n)
    t = np.arange(n) / RATE
    y = rumble / rumble.std() + 0.6 * hiss + 0.5 * np.sin(2 * np.pi * 100 * t)
    return y * rms / y.std()


def voice(seconds: float, seed: int = 1) -> np.ndarray:
    """Generated voiced speech with a syllable rhythm (no espeak-ng in this tier)."""
    return np.frombuffer(speechlike(seconds, seed=seed), "<i2").astype(np.float64)


class RecordingProcessor:
    """Stands in for webrtc_noise_gain.AudioProcessor: keeps what it was given, returns it negated."""

    made: list[RecordingProcessor] = []

    def __init__(self, auto_gain: int, noise_suppression: int) -> None:
        self.settings = (auto_gain, noise_suppression)
        self.seen: list[bytes] = []
        RecordingProcessor.made.append(self)

    def Process10ms(self, audio: bytes) -> Any:  # noqa: N802 - the library's name
        assert len(audio) == FRAME_BYTES // 2
        self.seen.append(audio)
        return dataclasses.make_dataclass("Chunk", ["audio"])(negated(audio))


def negated(pcm: bytes) -> bytes:
    return (-np.frombuffer(pcm, "<i2").astype(np.int32)).clip(-32768, 32767).astype("<i2").tobytes()


@pytest.fixture
def recording() -> type[RecordingProcessor]:
    RecordingProcessor.made = []
    return RecordingProcessor


def numbered_chunks(count: int) -> list[bytes]:
    """20 ms chunks of 16 kHz mono whose every sample is the chunk's number: easy to follow."""
    return [np.full(FRAME_SAMPLES, k + 1, "<i2").tobytes() for k in range(count)]


# ------------------------------------------------------------------------------------------------ the wrapper


def test_off_is_a_passthrough_that_hands_back_the_very_same_frames() -> None:
    cleaner = cleanup_for(AudioConfig())
    assert isinstance(cleaner, Passthrough) and not cleaner.enabled
    frames = to_frames(hum_and_rumble(RATE, 3000.0))
    assert cleaner.process(frames) is frames


@pytest.mark.parametrize(("noise_suppression", "auto_gain"), [(1, 0), (2, 0), (4, 0), (0, 3), (2, 3)])
def test_every_frame_comes_back_whole_one_for_one(noise_suppression: int, auto_gain: int) -> None:
    frames = to_frames(hum_and_rumble(RATE, 3000.0))  # 50 frames
    cleaner = cleanup_for(audio(noise_suppression=noise_suppression, auto_gain=auto_gain))
    assert isinstance(cleaner, Cleanup)
    out = cleaner.process(frames)
    assert len(out) == len(frames) and all(len(f) == FRAME_BYTES and isinstance(f, bytes) for f in out)
    assert out != frames  # it did something


def test_each_frame_goes_in_as_two_10ms_halves_in_order(recording: type[RecordingProcessor]) -> None:
    frames = [bytes([k]) * FRAME_BYTES for k in range(1, 4)]
    out = Cleanup(2, 0, factory=recording).process(frames)
    (processor,) = recording.made
    assert processor.settings == (0, 2)  # the library's order: auto_gain, noise_suppression
    assert processor.seen == [half for frame in frames for half in (frame[:320], frame[320:])]
    assert out == [negated(frame[:320]) + negated(frame[320:]) for frame in frames]


def test_a_frame_of_the_wrong_size_is_refused_with_the_size_named() -> None:
    with pytest.raises(ValueError, match=r"640-byte frames .* got 320"):
        Cleanup(2, 0).process([bytes(320)])


def test_levels_outside_the_library_range_are_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"audio.noise_suppression must be .* 0 \(off\) to 4, got 5"):
        Cleanup(5, 0)
    with pytest.raises(ValueError, match=r"audio.auto_gain must be .* to 31, got -1"):
        Cleanup(0, -1)
    with pytest.raises(ConfigError, match=r"^invalid audio.noise_suppression = 5 from --set: must be between 0 and 4$"):
        load_config(None, env={}, overrides=["audio.noise_suppression=5"])
    with pytest.raises(ConfigError, match=r"audio.auto_gain"):
        load_config(None, env={}, overrides=["audio.auto_gain=32"])


def test_reset_forgets_what_the_processor_had_learnt() -> None:
    speech = to_frames(voice(1.0))
    fresh = Cleanup(3, 0).process(speech)
    cleaner = Cleanup(3, 0)
    cleaner.process(to_frames(hum_and_rumble(2 * RATE, 6000.0)))  # a loud fan, learnt as noise
    stale = cleaner.process(speech)
    assert stale != fresh  # so the state matters ...
    cleaner.reset()
    assert cleaner.process(speech) == fresh  # ... and reset() drops all of it


# ------------------------------------------------------------------------------------------------ the library missing


@pytest.fixture
def no_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "webrtc_noise_gain", None)  # import now raises ImportError


def test_without_the_library_asking_for_it_says_how_to_install_it(no_library: None) -> None:
    with pytest.raises(CleanupUnavailable, match=r"not installed: pip install 'appliance\[kitchen\]'") as caught:
        Cleanup(2, 0)
    assert "webrtc-noise-gain" in str(caught.value) and "\n" not in str(caught.value)


def test_without_the_library_the_microphone_starts_with_one_warning_and_plain_frames(
    no_library: None, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.WARNING):
            capture = Capture(audio(noise_suppression=2, auto_gain=3), lambda f: None, loop, on_preroll=lambda f: None)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        (line,) = warnings
        assert "\n" not in line and INSTALL_HINT in line and "audio.noise_suppression = 2" in line
        # and the frames it would hand over are the microphone's own
        gate = PrerollGate(MONO_16K, -1, PREROLL, capture._cleanup)
        chunks = numbered_chunks(40)
        for chunk in chunks[:30]:
            gate.chunk(chunk, None)
        got = [frame for chunk in chunks[30:] for _, _, frame in gate.chunk(chunk, 1)]
        assert got == chunks[30 - PREROLL :]
        capture.close()
    finally:
        loop.close()


# ------------------------------------------------------------------------------------------------ in the gate


def test_the_gate_cleans_warmup_preroll_and_live_frames_in_order_from_a_fresh_processor(
    recording: type[RecordingProcessor],
) -> None:
    cleaner = Cleanup(2, 0, factory=recording)
    gate = PrerollGate(MONO_16K, -1, PREROLL, cleaner)
    chunks = numbered_chunks(120)
    for chunk in chunks[:100]:
        assert gate.chunk(chunk, None) == []
    assert [p.seen for p in recording.made] == [[]]  # resting: nothing processed
    got = [entry for chunk in chunks[100:110] for entry in gate.chunk(chunk, 1)]
    assert len(recording.made) == 2  # a fresh processor at the press
    heard = samples(recording.made[-1].seen)
    warmup = (WARMUP_MS + cleaner.warmup_ms) // FRAME_MS
    first_heard = 100 - PREROLL - warmup
    assert list(heard[::FRAME_SAMPLES].astype(int)) == list(range(first_heard + 1, 111))  # room, pre-roll, live
    assert [is_pre for _, is_pre, _ in got] == [True] * PREROLL + [False] * 10
    assert [frame for _, _, frame in got] == [negated(c) for c in chunks[100 - PREROLL : 110]]  # all cleaned


def test_a_press_during_a_turn_goes_on_with_the_same_processor_and_a_new_listen_starts_afresh(
    recording: type[RecordingProcessor],
) -> None:
    gate = PrerollGate(MONO_16K, -1, PREROLL, Cleanup(2, 0, factory=recording))
    chunks = numbered_chunks(200)
    for chunk in chunks[:50]:
        gate.chunk(chunk, None)
    for chunk in chunks[50:80]:
        gate.chunk(chunk, 1)
    assert len(recording.made) == 2
    again = gate.chunk(chunks[80], 2)  # pressed again while listening: the audio never stopped
    assert len(recording.made) == 2
    assert [frame for _, _, frame in again] == [negated(c) for c in chunks[80 - PREROLL : 81]]
    for chunk in chunks[81:150]:
        gate.chunk(chunk, None)  # the turn ended; the microphone rests
    gate.chunk(chunks[150], 3)
    assert len(recording.made) == 3  # the next listen: a fresh processor, not the old one's state
