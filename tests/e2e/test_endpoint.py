"""Endpointing on generated signals whose speech boundaries are known from the signal itself.

Speech comes from espeak-ng (real words) or from a sustained generated vowel (where only
"continuous voice" matters); backgrounds are digital silence or white noise at a known
level.  The true start and end of speech are measured on the clean signal (its energy),
never taken from the VAD under test.  Time is in 20 ms frames: frame i covers
[20 i, 20 i + 20) ms of the scene, and a turn that ends on frame i lasts (i + 1) * 20 ms.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.audio.endpointing import Endpointer, EndReason, SpeechDetector
from appliance.audio.frames import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES, RATE, ms_to_frames
from appliance.audio.preroll import PrerollRing
from appliance.audio.speech import spoken
from appliance.settings.schema import AudioConfig, VadConfig

SENTENCE = "Turn on the kitchen light please"
QUESTION = "What is the weather like tomorrow"
TOLERANCE_FRAMES = 2

# ------------------------------------------------------------------------------------------------ signals


def audio_cfg(**changes: object) -> AudioConfig:
    return dataclasses.replace(AudioConfig(), **changes)


def vad_cfg(**changes: object) -> VadConfig:
    return dataclasses.replace(VadConfig(), **changes)


def white_noise(seconds: float, dbfs: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 32768 * 10 ** (dbfs / 20), int(round(seconds * RATE)))


def sustained_vowel(seconds: float, f0: float = 120.0, dbfs: float = -12.0) -> np.ndarray:
    """A held 'ah': harmonics of a slightly wavering pitch, louder near two formants; no gaps."""
    n = int(round(seconds * RATE))
    t = np.arange(n) / RATE
    pitch = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    x = np.zeros(n)
    for k in range(1, 30):
        f = k * f0
        weight = 1 / k + 1.5 * np.exp(-(((f - 700) / 200) ** 2)) + np.exp(-(((f - 1200) / 250) ** 2))
        x += weight * np.sin(k * phase)
    x *= np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    return x * (10 ** (dbfs / 20) * 32767 / np.abs(x).max())


def short_time_rms(x: np.ndarray, window_ms: float = 5.0) -> np.ndarray:
    w = int(RATE * window_ms / 1000)
    return np.sqrt(np.convolve(np.asarray(x, dtype=np.float64) ** 2, np.ones(w) / w, mode="same"))


def energy_bounds(x: np.ndarray, below_peak_db: float = 40.0) -> tuple[int, int]:
    """First and one-past-last sample whose 5 ms RMS is within `below_peak_db` of the loudest."""
    rms = short_time_rms(x)
    loud = np.nonzero(rms > rms.max() * 10 ** (-below_peak_db / 20))[0]
    assert loud.size, "the clean signal holds no speech at all"
    return int(loud[0]), int(loud[-1]) + 1


@functools.cache
def words(text: str) -> np.ndarray:
    """`text` spoken by espeak-ng at 16 kHz, trimmed to where its energy starts and ends."""
    pcm = spoken(text, RATE)
    assert pcm, "espeak-ng is required for this test and did not produce speech: install it (apt-get install espeak-ng)"
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
    start, end = energy_bounds(x)
    return x[start:end]


@dataclasses.dataclass(frozen=True)
class Scene:
    """A generated recording: frames, and where the speech in it truly starts and ends."""

    frames: tuple[bytes, ...]
    clean: np.ndarray
    speech_start_ms: float
    speech_end_ms: float

    @property
    def speech_end_frame(self) -> int:
        """The first frame boundary at or after the true end of speech."""
        return math.ceil(self.speech_end_ms / FRAME_MS)

    def loud_at(self, ms: float) -> bool:
        """Is the clean signal voiced (within 20 dB of its peak) at `ms`?"""
        rms = short_time_rms(self.clean, 10.0)
        return bool(rms[int(ms * RATE / 1000)] > rms.max() * 0.1)


def scene(speech: np.ndarray | None, *, lead_s: float = 1.0, tail_s: float = 2.0, noise_dbfs: float | None = -50.0,
          seed: int = 0) -> Scene:
    """Lead-in, speech, trailing silence; white noise at `noise_dbfs` under all of it (None: digital silence)."""
    speech = np.zeros(0) if speech is None else speech
    clean = np.concatenate([np.zeros(int(round(lead_s * RATE))), speech, np.zeros(int(round(tail_s * RATE)))])
    clean = np.pad(clean, (0, -clean.size % FRAME_SAMPLES))
    noisy = clean if noise_dbfs is None else clean + white_noise(clean.size / RATE, noise_dbfs, seed)
    pcm = np.clip(np.rint(noisy), -32768, 32767).astype("<i2").tobytes()
    frames = tuple(pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES))
    if speech.size:
        start, end = energy_bounds(clean)
        start_ms, end_ms = start * 1000 / RATE, end * 1000 / RATE
    else:
        start_ms = end_ms = math.nan
    return Scene(frames, clean, start_ms, end_ms)


def drive(ep: Endpointer, frames: Sequence[bytes], *, preroll: int = 0, release_after: int | None = None) -> Endpointer:
    """Push `frames` (the first `preroll` as pre-roll) until the turn ends; release after `release_after` frames."""
    for i, frame in enumerate(frames):
        if release_after is not None and i == release_after and ep.release() is not None:
            return ep
        if ep.push(frame, preroll=i < preroll) is not None:
            return ep
    if release_after is not None and release_after >= len(frames):
        ep.release()
    return ep


def smoothed_states(detector: SpeechDetector, frames: Sequence[bytes]) -> list[bool]:
    return [detector.push(frame) for frame in frames]


def vowel_scene(seconds: float = 3.0, **kwargs: object) -> Scene:
    return scene(sustained_vowel(seconds), lead_s=0.5, tail_s=0.5, **kwargs)  # type: ignore[arg-type]


class MarkerVad:
    """Test double standing in for webrtcvad: a frame is speech when its first byte is nonzero.

    Lets the smoothing rules be checked against exact raw decision sequences.
    """

    def is_speech(self, buf: bytes, sample_rate: int) -> bool:
        assert sample_rate == RATE
        return buf[0] != 0


SPEECH_MARK = b"\x01" + bytes(FRAME_BYTES - 1)
SILENCE_MARK = bytes(FRAME_BYTES)


def marker_frames(raw: Sequence[bool]) -> list[bytes]:
    return [SPEECH_MARK if r else SILENCE_MARK for r in raw]


# ------------------------------------------------------------------------------------------------ pre-roll ring


def test_preroll_ring_keeps_the_newest_frames_oldest_first() -> None:
    ring = PrerollRing.from_ms(AudioConfig().preroll_ms)
    assert ring.capacity == 15  # 300 ms
    frames = [bytes([i]) * FRAME_BYTES for i in range(40)]
    for frame in frames[:5]:
        ring.push(frame)
    assert ring.snapshot() == frames[:5]
    for frame in frames[5:]:
        ring.push(frame)
    assert len(ring) == 15
    snapshot = ring.snapshot()
    assert snapshot == frames[-15:]
    ring.push(frames[0])
    assert snapshot == frames[-15:], "a snapshot must not change when the ring moves on"
    ring.clear()
    assert len(ring) == 0 and ring.snapshot() == []


def test_preroll_ring_rounds_up_and_can_be_empty() -> None:
    assert PrerollRing.from_ms(310).capacity == 16
    empty = PrerollRing.from_ms(0)
    empty.push(bytes(FRAME_BYTES))
    assert len(empty) == 0 and empty.snapshot() == []


def test_preroll_ring_copies_reused_buffers_and_rejects_wrong_sizes() -> None:
    ring = PrerollRing(3)
    buffer = bytearray(FRAME_BYTES)
    ring.push(buffer)
    buffer[0] = 9  # a capture callback reusing its buffer must not rewrite the past
    assert ring.snapshot() == [bytes(FRAME_BYTES)]
    with pytest.raises(ValueError, match="640 bytes"):
        ring.push(bytes(FRAME_BYTES - 2))
    with pytest.raises(ValueError, match="0 or more"):
        PrerollRing(-1)


# ------------------------------------------------------------------------------------------------ detector: input


def test_detector_rejects_wrong_frames_and_settings_with_a_clear_message() -> None:
    detector = SpeechDetector(2)
    with pytest.raises(ValueError, match=r"640 bytes \(20 ms of 16 kHz mono s16le\), got 960"):
        detector.push(bytes(960))
    with pytest.raises(ValueError, match="aggressiveness must be 0, 1, 2 or 3"):
        SpeechDetector(4)
    with pytest.raises(ValueError, match="at least 2"):
        SpeechDetector(2, start_frames=1)
    with pytest.raises(ValueError, match="at least 2"):
        SpeechDetector(2, stop_frames=1)
    with pytest.raises(ValueError, match="start_window"):
        SpeechDetector(2, start_frames=4, start_window=3)
    with pytest.raises(ValueError, match='"hold" or "tap"'):
        Endpointer("push", AudioConfig(), VadConfig())


# ------------------------------------------------------------------------------------------------ detector: smoothing


def test_one_raw_speech_frame_never_starts_speech_and_one_gap_never_stops_it() -> None:
    for position in range(12):
        raw = [False] * 12
        raw[position] = True
        detector = SpeechDetector(2, vad=MarkerVad())
        assert not any(smoothed_states(detector, marker_frames(raw))), f"isolated speech frame {position} flipped it"
        assert detector.raw_speech_frames == 1

    for position in range(6, 12):
        raw = [True] * 16
        raw[position] = False
        detector = SpeechDetector(2, vad=MarkerVad())
        states = smoothed_states(detector, marker_frames(raw))
        assert states[2:] == [True] * 14, f"isolated gap at {position} flipped it: {states}"
        assert detector.onsets == 1


@settings(max_examples=300, deadline=None)
@given(
    raw=st.lists(st.booleans(), min_size=1, max_size=80),
    start_frames=st.integers(2, 4),
    extra_window=st.integers(0, 6),
    stop_frames=st.integers(2, 4),
)
@example(raw=[True, True, True, False, False, False], start_frames=2, extra_window=3, stop_frames=2)
def test_smoothed_state_changes_only_on_enough_evidence(
    raw: list[bool], start_frames: int, extra_window: int, stop_frames: int
) -> None:
    window = start_frames + extra_window
    detector = SpeechDetector(
        2, start_frames=start_frames, start_window=window, stop_frames=stop_frames, vad=MarkerVad()
    )
    states = smoothed_states(detector, marker_frames(raw))
    previous = False
    for i, state in enumerate(states):
        if state and not previous:
            assert raw[i] and sum(raw[max(0, i - window + 1) : i + 1]) >= start_frames
        if previous and not state:
            assert i + 1 >= stop_frames and not any(raw[i - stop_frames + 1 : i + 1])
        previous = state
    assert detector.speech_frames == sum(states)
    assert detector.onsets == sum(1 for a, b in zip([False, *states], states) if b and not a)


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
@pytest.mark.parametrize("click", ["voiced", "impulse", "noise burst"])
def test_a_20ms_click_in_quiet_noise_is_not_speech(aggressiveness: int, click: str) -> None:
    background = white_noise(2.0, -50.0, seed=3)
    burst = {
        "voiced": sustained_vowel(0.02, dbfs=-6.0),
        "impulse": np.r_[30000.0, np.zeros(FRAME_SAMPLES - 1)],
        "noise burst": white_noise(0.02, -6.0, seed=4),
    }[click]
    at = 50 * FRAME_SAMPLES
    background[at : at + FRAME_SAMPLES] += burst
    pcm = np.clip(background, -32768, 32767).astype("<i2").tobytes()
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    detector = SpeechDetector(aggressiveness)
    states = smoothed_states(detector, frames)
    assert detector.raw_speech_frames > 0, "the click should at least register with webrtcvad itself"
    assert not any(states)


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_a_20ms_dropout_inside_a_vowel_does_not_stop_speech(aggressiveness: int) -> None:
    vowel = scene(sustained_vowel(1.5), lead_s=0.5, tail_s=0.5)
    frames = list(vowel.frames)
    gap = 25 + 40  # 0.8 s into the vowel
    frames[gap] = bytes(FRAME_BYTES)  # the microphone delivered 20 ms of digital silence
    detector = SpeechDetector(aggressiveness)
    states = smoothed_states(detector, frames)
    first = states.index(True)
    last = len(states) - 1 - states[::-1].index(True)
    assert first < gap < last
    assert all(states[first : last + 1]), "the smoothed state dropped inside the vowel"
    assert detector.onsets == 1


def test_a_20ms_dropout_inside_a_spoken_word_does_not_stop_speech() -> None:
    words_scene = scene(words(SENTENCE))
    frames = list(words_scene.frames)
    rms = [float(np.sqrt(np.mean(words_scene.clean[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] ** 2)))
           for i in range(len(frames))]
    gap = int(np.argmax(rms))  # the middle of the loudest vowel
    reference = smoothed_states(SpeechDetector(2), frames)
    frames[gap] = bytes(FRAME_BYTES)
    states = smoothed_states(SpeechDetector(2), frames)
    assert reference[gap - 3 : gap + 4] == [True] * 7
    assert states[gap - 3 : gap + 4] == [True] * 7


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
@pytest.mark.parametrize("background", [None, -60.0, -50.0])
def test_a_fresh_detector_does_not_call_its_first_frames_speech(aggressiveness: int, background: float | None) -> None:
    quiet = scene(None, lead_s=1.0, tail_s=0.0, noise_dbfs=background)
    detector = SpeechDetector(aggressiveness)
    assert not any(smoothed_states(detector, quiet.frames))
    assert detector.raw_speech_frames == 0


# ------------------------------------------------------------------------------------------------ hold-to-talk


def test_hold_released_at_the_end_of_speech_keeps_the_postroll_and_no_more() -> None:
    for text in (SENTENCE, QUESTION):
        s = scene(words(text))
        ep = drive(Endpointer("hold", AudioConfig(), VadConfig()), s.frames, release_after=s.speech_end_frame)
        assert ep.end_reason is EndReason.POSTROLL_SILENCE, text
        after_release_ms = (ep.end_frame - s.speech_end_frame) * FRAME_MS
        assert AudioConfig().postroll_silence_ms <= after_release_ms <= AudioConfig().postroll_max_ms, text
        assert ep.heard_speech


def test_hold_released_long_after_speech_ends_at_once() -> None:
    s = scene(words(SENTENCE), tail_s=3.0)
    release = s.speech_end_frame + 50  # one second of silence already
    ep = Endpointer("hold", AudioConfig(), VadConfig())
    for frame in s.frames[:release]:
        assert ep.push(frame) is None, "a held turn must not end on silence"
    assert ep.release() is EndReason.POSTROLL_SILENCE
    assert ep.end_frame == release
    assert ep.push(s.frames[release]) is EndReason.POSTROLL_SILENCE
    assert ep.frames == release


@pytest.mark.parametrize(("text", "before_end_ms"), [(SENTENCE, 150.0), (SENTENCE, 250.0), ("Hello", 150.0)])
def test_hold_released_mid_word_keeps_the_word(text: str, before_end_ms: float) -> None:
    s = scene(words(text))
    release_ms = s.speech_end_ms - before_end_ms
    assert s.loud_at(release_ms), "the release point must be inside a voiced part of the last word"
    release = int(release_ms // FRAME_MS)
    ep = drive(Endpointer("hold", AudioConfig(), VadConfig()), s.frames, release_after=release)
    assert ep.end_reason is EndReason.POSTROLL_SILENCE
    assert ep.end_frame * FRAME_MS >= s.speech_end_ms - 100.0, "the last word was cut"
    assert (ep.end_frame - release) * FRAME_MS <= AudioConfig().postroll_max_ms


def test_hold_with_no_postroll_silence_still_waits_for_the_word_to_end() -> None:
    s = scene(words(SENTENCE))
    release = int((s.speech_end_ms - 150.0) // FRAME_MS)
    ep = drive(Endpointer("hold", audio_cfg(postroll_silence_ms=0), VadConfig()), s.frames, release_after=release)
    assert ep.end_reason is EndReason.POSTROLL_SILENCE
    assert ep.end_frame * FRAME_MS >= s.speech_end_ms - 100.0, "the last word was cut"


def test_hold_caps_the_postroll_when_speech_goes_on() -> None:
    s = vowel_scene(3.0)
    release = 25 + 25  # half a second into the vowel
    ep = drive(Endpointer("hold", AudioConfig(), VadConfig()), s.frames, release_after=release)
    assert ep.end_reason is EndReason.POSTROLL_CAP
    assert ep.end_frame - release == ms_to_frames(AudioConfig().postroll_max_ms)


def test_hold_postroll_settings_are_honoured() -> None:
    cfg = audio_cfg(postroll_silence_ms=500, postroll_max_ms=1500)
    s = scene(words(SENTENCE))
    ep = drive(Endpointer("hold", cfg, VadConfig()), s.frames, release_after=s.speech_end_frame)
    assert ep.end_reason is EndReason.POSTROLL_SILENCE
    assert 500 <= (ep.end_frame - s.speech_end_frame) * FRAME_MS <= 1500

    ep = drive(Endpointer("hold", cfg, VadConfig()), vowel_scene(4.0).frames, release_after=50)
    assert (ep.end_reason, ep.end_frame) == (EndReason.POSTROLL_CAP, 50 + 75)


@pytest.mark.parametrize("signal", ["vowel", "silence"])
def test_hold_while_held_ends_only_at_max_turn(signal: str) -> None:
    frames = vowel_scene(3.0).frames if signal == "vowel" else scene(None, lead_s=3.0, tail_s=0.0).frames
    ep = drive(Endpointer("hold", AudioConfig(), vad_cfg(max_turn_s=2.0)), frames)
    assert ep.end_reason is EndReason.MAX_TURN
    assert ep.end_frame == 100


def test_hold_accidental_press_ends_without_speech() -> None:
    s = scene(None, lead_s=0.5, tail_s=1.0)
    ep = drive(Endpointer("hold", AudioConfig(), VadConfig()), s.frames, release_after=5)
    assert ep.end_reason is EndReason.POSTROLL_SILENCE
    assert ep.end_frame == ms_to_frames(AudioConfig().postroll_silence_ms)
    assert not ep.heard_speech and ep.speech_started_frame is None and ep.speech_frames == 0


# ------------------------------------------------------------------------------------------------ tap-to-talk


@pytest.mark.parametrize("text", [SENTENCE, QUESTION])
def test_tap_ends_end_silence_after_the_true_end_of_speech(text: str) -> None:
    s = scene(words(text), tail_s=3.0)
    ep = drive(Endpointer("tap", AudioConfig(), VadConfig()), s.frames)
    assert ep.end_reason is EndReason.END_SILENCE
    silence_ms = ep.end_frame * FRAME_MS - s.speech_end_ms
    assert abs(silence_ms - VadConfig().end_silence_ms) <= TOLERANCE_FRAMES * FRAME_MS, silence_ms
    assert ep.heard_speech


def test_tap_ends_at_max_turn_when_speech_goes_on() -> None:
    ep = drive(Endpointer("tap", AudioConfig(), vad_cfg(max_turn_s=2.0)), vowel_scene(3.0).frames)
    assert ep.end_reason is EndReason.MAX_TURN
    assert ep.end_frame == 100


@pytest.mark.parametrize("background", [None, -50.0, -30.0])
def test_tap_with_nobody_speaking_ends_no_speech_at_the_timeout(background: float | None) -> None:
    s = scene(None, lead_s=6.0, tail_s=0.0, noise_dbfs=background)
    ep = drive(Endpointer("tap", AudioConfig(), VadConfig()), s.frames)
    assert ep.end_reason is EndReason.NO_SPEECH
    assert ep.end_frame == ms_to_frames(VadConfig().no_speech_timeout_s * 1000)
    assert not ep.heard_speech


def test_tap_no_speech_within_a_shorter_max_turn_is_still_no_speech() -> None:
    s = scene(None, lead_s=3.0, tail_s=0.0)
    ep = drive(Endpointer("tap", AudioConfig(), vad_cfg(max_turn_s=1.0, no_speech_timeout_s=5.0)), s.frames)
    assert (ep.end_reason, ep.end_frame) == (EndReason.NO_SPEECH, 50)


def test_another_press_ends_the_turn_and_the_end_sticks() -> None:
    s = scene(words(SENTENCE))
    ep = Endpointer("tap", AudioConfig(), VadConfig())
    for frame in s.frames[:80]:
        assert ep.push(frame) is None
    assert ep.stop() is EndReason.PRESS
    assert ep.ended and ep.end_frame == 80
    detector_frames = ep.detector.frames
    for frame in s.frames[80:]:
        assert ep.push(frame) is EndReason.PRESS
    assert ep.release() is EndReason.PRESS and ep.stop() is EndReason.PRESS
    assert (ep.frames, ep.detector.frames) == (80, detector_frames)


def test_the_first_reason_sticks() -> None:
    ep = drive(Endpointer("tap", AudioConfig(), VadConfig()), scene(None, lead_s=6.0, tail_s=0.0).frames)
    assert ep.end_reason is EndReason.NO_SPEECH
    assert ep.stop() is EndReason.NO_SPEECH
    assert ep.push(bytes(FRAME_BYTES)) is EndReason.NO_SPEECH


# ------------------------------------------------------------------------------------------------ pre-roll


def preroll_scene() -> Scene:
    """Speech that truly starts 200 ms before the press, with a 300 ms pre-roll in front of the press."""
    s = scene(words(SENTENCE), lead_s=0.1, tail_s=2.0)
    assert abs(s.speech_start_ms - 100.0) <= 1.0
    return s


def test_speech_begun_before_the_press_is_heard_from_the_preroll() -> None:
    s = preroll_scene()
    preroll = ms_to_frames(AudioConfig().preroll_ms)
    for mode in ("hold", "tap"):
        ep = Endpointer(mode, AudioConfig(), VadConfig())
        for frame in s.frames[:preroll]:
            assert ep.push(frame, preroll=True) is None
        assert ep.heard_speech, "speech that began 200 ms before the press must be heard by the press"
        assert ep.speech_started_frame is not None and 5 <= ep.speech_started_frame < preroll
        assert (ep.preroll_frames, ep.live_frames) == (preroll, 0)


def test_tap_with_preroll_still_ends_end_silence_after_speech() -> None:
    s = preroll_scene()
    ep = drive(Endpointer("tap", AudioConfig(), VadConfig()), s.frames, preroll=15)
    assert ep.end_reason is EndReason.END_SILENCE
    silence_ms = ep.end_frame * FRAME_MS - s.speech_end_ms
    assert abs(silence_ms - VadConfig().end_silence_ms) <= TOLERANCE_FRAMES * FRAME_MS


def test_preroll_frames_do_not_run_the_timers() -> None:
    preroll = 15
    # max_turn counts from the press
    ep = drive(Endpointer("tap", AudioConfig(), vad_cfg(max_turn_s=1.0)), vowel_scene(3.0).frames[25:], preroll=preroll)
    assert (ep.end_reason, ep.live_frames, ep.frames) == (EndReason.MAX_TURN, 50, 50 + preroll)
    # so does the no-speech timeout
    quiet = scene(None, lead_s=6.0, tail_s=0.0).frames
    ep = drive(Endpointer("tap", AudioConfig(), VadConfig()), quiet, preroll=preroll)
    assert (ep.end_reason, ep.live_frames) == (EndReason.NO_SPEECH, 250)
    # and silence before the press does not count towards the post-roll
    ep = drive(Endpointer("hold", AudioConfig(), VadConfig()), quiet, preroll=preroll, release_after=preroll + 1)
    assert (ep.end_reason, ep.live_frames) == (EndReason.POSTROLL_SILENCE, 15)


def test_preroll_after_live_frames_is_refused() -> None:
    ep = Endpointer("tap", AudioConfig(), VadConfig())
    ep.push(bytes(FRAME_BYTES))
    with pytest.raises(ValueError, match="before the first live frame"):
        ep.push(bytes(FRAME_BYTES), preroll=True)


# ------------------------------------------------------------------------------------------------ every aggressiveness


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_every_aggressiveness_hears_the_sentence_and_ends_in_the_window(aggressiveness: int) -> None:
    s = scene(words(SENTENCE), tail_s=3.0)
    vad = vad_cfg(aggressiveness=aggressiveness)

    tap = drive(Endpointer("tap", AudioConfig(), vad), s.frames)
    assert tap.end_reason is EndReason.END_SILENCE
    assert tap.speech_started_frame is not None
    onset_ms = tap.speech_started_frame * FRAME_MS - s.speech_start_ms
    assert 0 <= onset_ms <= 200, "speech was heard too late (or before it began)"
    silence_ms = tap.end_frame * FRAME_MS - s.speech_end_ms
    assert abs(silence_ms - vad.end_silence_ms) <= TOLERANCE_FRAMES * FRAME_MS, silence_ms

    hold = drive(Endpointer("hold", AudioConfig(), vad), s.frames, release_after=s.speech_end_frame)
    assert hold.end_reason is EndReason.POSTROLL_SILENCE
    after_release_ms = (hold.end_frame - s.speech_end_frame) * FRAME_MS
    assert AudioConfig().postroll_silence_ms <= after_release_ms <= AudioConfig().postroll_max_ms


# ------------------------------------------------------------------------------------------------ property


@functools.cache
def frame_pools() -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """Real 20 ms frames of voice and of quiet noise, to build arbitrary sequences from."""
    voice = vowel_scene(2.0, noise_dbfs=-50.0).frames[30:120]
    quiet = scene(None, lead_s=2.0, tail_s=0.0, noise_dbfs=-50.0, seed=7).frames
    return voice, quiet


@settings(max_examples=150, deadline=None)
@given(
    mode=st.sampled_from(["hold", "tap"]),
    runs=st.lists(st.tuples(st.booleans(), st.integers(1, 25)), min_size=1, max_size=12),
    release_after=st.one_of(st.none(), st.integers(0, 70)),
    preroll=st.integers(0, 15),
)
def test_any_sequence_ends_by_max_turn_and_a_held_turn_never_ends_early(
    mode: str, runs: list[tuple[bool, int]], release_after: int | None, preroll: int
) -> None:
    voice, quiet = frame_pools()
    raw = [is_voice for is_voice, length in runs for _ in range(length)]
    raw += [raw[-1]] * (preroll + 80)  # long enough to reach max_turn whatever happens
    frames = [(voice if is_voice else quiet)[i % 90] for i, is_voice in enumerate(raw)]
    max_turn = 50
    vad = vad_cfg(max_turn_s=1.0, no_speech_timeout_s=0.5)
    ep = Endpointer(mode, AudioConfig(), vad)
    release_at = None if release_after is None else preroll + release_after
    for i, frame in enumerate(frames):
        if i == release_at and ep.release() is not None:
            break
        if ep.push(frame, preroll=i < preroll) is not None:
            break
        assert ep.live_frames < max_turn, "the turn outlived max_turn"
    assert ep.ended and ep.live_frames <= max_turn
    if mode == "hold":
        released_live = None if release_at is None or release_at >= len(frames) else release_at - preroll
        if released_live is None or ep.end_reason is EndReason.MAX_TURN:
            assert (ep.end_reason, ep.live_frames) == (EndReason.MAX_TURN, max_turn)
        else:
            assert ep.end_reason in (EndReason.POSTROLL_SILENCE, EndReason.POSTROLL_CAP)
            assert ep.live_frames >= released_live, "a held turn ended before the release"
            assert ep.live_frames - released_live <= ms_to_frames(AudioConfig().postroll_max_ms)
