"""The microphone path through real PyAudio and ALSA: device audio in, 20 ms frames of 16 kHz mono out.

The file rig is not paced and repeats stale data past the end of its file, so every
capture stops after a counted number of frames (from inside on_frame), the files are
padded with silence, and only the part before the padding is compared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.audio.capture import HANDOFF_FRAMES, Capture, CaptureStats, FrameConverter
from appliance.audio.devices import AudioDeviceError, DeviceInfo, InputFormat, open_pyaudio
from appliance.audio.frames import FRAME_BYTES, FRAME_SAMPLES, RATE
from appliance.settings.schema import AudioConfig
from tests.rigs import FileRig

FULL_SCALE_32 = 2**31
LEFT_HZ, RIGHT_HZ = 440.0, 1000.0
LEFT_AMP, RIGHT_AMP = 0.5, 0.25  # fractions of full scale
BURST_START_S, BURST_END_S, FILE_S = 0.5, 1.5, 2.0
WAIT_S = 5.0


def audio(**changes: Any) -> AudioConfig:
    return dataclasses.replace(AudioConfig(), **changes)


def two_tone_burst(rate: int) -> np.ndarray:
    """Stereo: left 440 Hz, right 1 kHz, both from 0.5 s to 1.5 s, silence around them (float, full scale 1)."""
    n = int(FILE_S * rate)
    t = np.arange(n) / rate
    on = (t >= BURST_START_S) & (t < BURST_END_S)
    left = LEFT_AMP * np.sin(2 * np.pi * LEFT_HZ * (t - BURST_START_S)) * on
    right = RIGHT_AMP * np.sin(2 * np.pi * RIGHT_HZ * (t - BURST_START_S)) * on
    return np.stack([left, right], axis=1)


def as_int32(x: np.ndarray) -> np.ndarray:
    return np.round(x * FULL_SCALE_32).clip(-(2**31), 2**31 - 1).astype(np.int32)


def as_int16(x: np.ndarray) -> np.ndarray:
    return np.round(x * 32768).clip(-32768, 32767).astype(np.int16)


def tone_amplitude(y: np.ndarray, freq: float, rate: int) -> float:
    """Amplitude of the component at exactly `freq` (y spans whole periods of it), in fractions of int16 full scale."""
    t = np.arange(y.size) / rate
    return float(2 * np.abs(np.sum(y * np.exp(-2j * np.pi * freq * t))) / y.size / 32768)


def dominant_frequency(y: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    return float(np.argmax(spectrum)) * rate / y.size


def db(ratio: float) -> float:
    return 20 * np.log10(ratio)


class PacedCapture(Capture):
    """Capture plus test-only back-pressure, standing in for the pacing of a real microphone.

    A real device delivers one period per 20 ms, so the loop always keeps up. The file rig delivers as
    fast as the CPU allows, from a PortAudio thread that may even run at real-time priority; on a loaded
    machine the loop can then fall over a second behind, and the handoff rightly drops the oldest frames,
    which here would be the very audio under test. So the PortAudio thread waits while the handoff queue
    is half full, until the loop has drained it. Everything else is the real Capture.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._room = threading.Event()
        self._room.set()
        self._released = False

    def _callback(self, *args: Any) -> tuple[None, int]:
        if not self._released:
            self._room.wait(WAIT_S)
        result = super()._callback(*args)
        if len(self._queue) >= HANDOFF_FRAMES // 2:
            self._room.clear()
            if len(self._queue) < HANDOFF_FRAMES // 2:  # drained in the meantime
                self._room.set()
        return result

    def _drain(self) -> None:
        super()._drain()
        self._room.set()

    def stop(self) -> None:
        self._released = True  # never hold up the PortAudio thread that stop_stream waits for
        self._room.set()
        super().stop()


async def capture_frames(
    cfg: AudioConfig, count: int, *, pa: Any = None
) -> tuple[np.ndarray, InputFormat, CaptureStats]:
    """Capture exactly `count` frames (through PacedCapture); returns the 16 kHz samples, format and stats."""
    frames: list[bytes] = []
    done = asyncio.Event()
    capture: PacedCapture

    def on_frame(frame: bytes) -> None:
        frames.append(frame)
        if len(frames) == count:
            capture.stop()  # from on_frame: not a single stale frame more
            done.set()

    capture = PacedCapture(cfg, on_frame, asyncio.get_running_loop(), pa=pa)
    fmt = capture.start()
    try:
        await asyncio.wait_for(done.wait(), WAIT_S)
    finally:
        capture.close()
    assert len(frames) == count
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    return np.frombuffer(b"".join(frames), dtype="<i2").astype(np.float64), fmt, capture.stats


def burst_onset(y: np.ndarray, threshold: float) -> int:
    return int(np.argmax(np.abs(y) > threshold))


FILE_FRAMES = int(FILE_S * RATE) // FRAME_SAMPLES  # 100
STEADY = slice(int(0.7 * RATE), int(1.2 * RATE))  # whole periods of both tones, well inside the burst


@pytest.fixture
def stereo_48k_s32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileRig:
    rig = FileRig(tmp_path)
    rig.add_capture("i2smic", as_int32(two_tone_burst(48000)), rate=48000, fmt="S32_LE")
    rig.activate(monkeypatch)
    return rig


@pytest.mark.parametrize(
    ("channel", "tones"),
    [(0, {LEFT_HZ: LEFT_AMP}), (1, {RIGHT_HZ: RIGHT_AMP}), (-1, {LEFT_HZ: LEFT_AMP / 2, RIGHT_HZ: RIGHT_AMP / 2})],
    ids=["left", "right", "mix"],
)
def test_48k_stereo_s32_becomes_16k_mono_frames(
    stereo_48k_s32: FileRig, channel: int, tones: dict[float, float]
) -> None:
    cfg = audio(input_device="i2smic", input_channel=channel, input_format="int32")
    y, fmt, stats = asyncio.run(capture_frames(cfg, FILE_FRAMES))
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (48000, 2, "int32")
    assert stats.dropped_frames == 0 and stats.overflows == 0

    steady = y[STEADY]
    strongest = max(tones, key=lambda f: tones[f])
    assert abs(dominant_frequency(steady, RATE) - strongest) <= 2.0
    for freq, amp in tones.items():
        assert abs(db(tone_amplitude(steady, freq, RATE) / amp)) < 0.5, freq
    if channel >= 0:
        other = RIGHT_HZ if channel == 0 else LEFT_HZ
        assert tone_amplitude(steady, other, RATE) < 1e-3  # the other channel does not leak in

    # the burst starts at 0.5 s in the file and at 0.5 s in the frames (within one frame), and ends at 1.5 s
    threshold = 0.1 * min(tones.values()) * 32768
    assert abs(burst_onset(y, threshold) - int(BURST_START_S * RATE)) <= FRAME_SAMPLES
    compared = y[: int(1.9 * RATE)]  # the last 0.1 s may already come from past the end of the file
    last_loud = compared.size - burst_onset(compared[::-1], threshold)
    assert abs(last_loud - int(BURST_END_S * RATE)) <= FRAME_SAMPLES
    assert np.max(np.abs(y[: int(0.45 * RATE)])) < 0.01 * 32768  # silence before the burst stays silent


def test_an_i2s_mic_that_only_does_s32_48k_stereo_is_captured_with_auto_settings(
    stereo_48k_s32: FileRig,
) -> None:
    from tests.e2e.test_devices import MockFormatLimits

    async def scenario() -> tuple[np.ndarray, InputFormat, CaptureStats]:
        pa = open_pyaudio()
        try:
            index = next(i for i in range(pa.get_device_count()) if pa.get_device_info_by_index(i)["name"] == "i2smic")
            limited = MockFormatLimits(pa, index, {(48000, 2, "int32")})
            return await capture_frames(audio(input_device="i2smic", input_channel=0), FILE_FRAMES, pa=limited)
        finally:
            pa.terminate()

    y, fmt, _ = asyncio.run(scenario())
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (48000, 2, "int32")
    assert abs(db(tone_amplitude(y[STEADY], LEFT_HZ, RATE) / LEFT_AMP)) < 0.5


def test_44k1_capture_is_resampled_to_16k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = FileRig(tmp_path)
    rig.add_capture("usbmic", as_int16(two_tone_burst(44100)), rate=44100, fmt="S16_LE")
    rig.activate(monkeypatch)
    y, fmt, stats = asyncio.run(capture_frames(audio(input_device="usbmic", input_channel=0), FILE_FRAMES))
    assert (fmt.rate, fmt.sample_format) == (44100, "int16")
    assert fmt.frames_per_buffer == 882
    assert stats.dropped_frames == 0
    assert abs(dominant_frequency(y[STEADY], RATE) - LEFT_HZ) <= 2.0
    assert abs(db(tone_amplitude(y[STEADY], LEFT_HZ, RATE) / LEFT_AMP)) < 0.5
    assert abs(burst_onset(y, 0.05 * 32768) - int(BURST_START_S * RATE)) <= FRAME_SAMPLES


def test_16k_mono_s16_device_passes_through_bit_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    content = rng.integers(-20000, 20000, size=RATE, dtype=np.int16)  # 1 s, 50 frames
    padded = np.concatenate([content, np.zeros(RATE // 5, np.int16)])
    rig = FileRig(tmp_path)
    rig.add_capture("monomic", padded, rate=16000, fmt="S16_LE")
    rig.activate(monkeypatch)

    frames_wanted = content.size // FRAME_SAMPLES
    y, fmt, stats = asyncio.run(capture_frames(audio(input_device="monomic", input_channels=1), frames_wanted))
    assert stats.dropped_frames == 0 and stats.overflows == 0, stats
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (16000, 1, "int16")
    assert np.array_equal(y.astype(np.int16), content)


def test_any_period_size_gives_the_same_frames() -> None:
    """Real devices do not always deliver 20 ms periods: partial frames must carry over, never be lost."""
    fmt = InputFormat(DeviceInfo(0, "i2smic", 2, 0, 48000, "ALSA"), 48000, 2, "int32", 960)
    samples = as_int32(two_tone_burst(48000))
    whole = FrameConverter(fmt, input_channel=-1).convert(samples.tobytes())

    chunked_converter = FrameConverter(fmt, input_channel=-1)
    chunked: list[bytes] = []
    rng = np.random.default_rng(3)
    at = 0
    while at < samples.shape[0]:
        size = int(rng.choice([1, 7, 160, 333, 441, 960, 1024, 4096]))
        chunked += chunked_converter.convert(samples[at : at + size].tobytes())
        at += size

    assert len(chunked) == len(whole) >= FILE_FRAMES - 1
    assert all(len(frame) == FRAME_BYTES for frame in chunked)
    a = np.frombuffer(b"".join(chunked), "<i2").astype(int)
    b = np.frombuffer(b"".join(whole), "<i2").astype(int)
    assert np.max(np.abs(a - b)) <= 1  # identical up to float rounding in the resampler


# ------------------------------------------------------------------------------------------------ overflow


def test_overflow_is_counted_warned_once_and_frames_keep_flowing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import pyaudio

    rig = FileRig(tmp_path)
    rig.add_capture("quietmic", np.zeros((48000, 2), np.int32), rate=48000, fmt="S32_LE")
    rig.activate(monkeypatch)
    loud_period = as_int32(two_tone_burst(48000)[48000 : 48000 + 960])  # 20 ms of the tones

    async def scenario() -> tuple[Capture, int]:
        loud_frames: list[bytes] = []
        started = asyncio.Event()
        loud_arrived = asyncio.Event()
        loud_target = [2]

        def on_frame(frame: bytes) -> None:
            if np.max(np.abs(np.frombuffer(frame, "<i2"))) > 1000:
                loud_frames.append(frame)
                if len(loud_frames) >= loud_target[0]:
                    loud_arrived.set()
            else:
                started.set()

        capture = Capture(audio(input_device="quietmic", input_format="int32"), on_frame, asyncio.get_running_loop())
        fmt = capture.start()
        try:
            await asyncio.wait_for(started.wait(), WAIT_S)
            capture._stream.stop_stream()  # pause the device behind Capture's back; only our calls remain
            assert fmt.frames_per_buffer == loud_period.shape[0]
            for target in (2, 5):  # two batches, so the loop drains (and may warn) at least twice
                loud_target[0] = target
                loud_arrived.clear()
                for _ in range(4):  # the callback as PortAudio calls it after the device lost samples
                    result = capture._callback(loud_period.tobytes(), 960, {}, pyaudio.paInputOverflow)
                    assert result == (None, pyaudio.paContinue)  # never fatal
                await asyncio.wait_for(loud_arrived.wait(), WAIT_S)
            return capture, len(loud_frames)
        finally:
            capture.close()

    with caplog.at_level(logging.WARNING, logger="appliance.audio.capture"):
        capture, loud = asyncio.run(scenario())
    assert capture.stats.overflows == 8
    assert loud >= 5  # the periods flagged as overflowed still became frames
    warnings = [r.getMessage() for r in caplog.records if "overflow" in r.getMessage()]
    assert len(warnings) == 1, warnings  # at most one warning per 10 s, however many overflows


def test_a_loop_a_second_behind_loses_the_oldest_frames_counted_and_keeps_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rig = FileRig(tmp_path)
    rig.add_capture("quietmic", np.zeros((48000, 2), np.int32), rate=48000, fmt="S32_LE")
    rig.activate(monkeypatch)
    periods = 60  # 1.2 s arriving while the loop is busy: more than the 1 s handoff holds

    async def scenario() -> tuple[Capture, list[int]]:
        levels: list[int] = []
        started = asyncio.Event()
        all_delivered = asyncio.Event()

        def on_frame(frame: bytes) -> None:
            level = int(np.median(np.frombuffer(frame, "<i2")))
            if level == 0:
                started.set()
                return
            levels.append(level)
            if len(levels) == HANDOFF_FRAMES:
                all_delivered.set()

        capture = Capture(audio(input_device="quietmic", input_format="int32"), on_frame, asyncio.get_running_loop())
        capture.start()
        try:
            await asyncio.wait_for(started.wait(), WAIT_S)
            capture._stream.stop_stream()  # only our calls remain
            for k in range(1, periods + 1):  # period k holds the constant level 100*k; no await: the loop is "busy"
                period = np.full((960, 2), 100 * k << 16, np.int32)
                capture._callback(period.tobytes(), 960, {}, 0)
            await asyncio.wait_for(all_delivered.wait(), WAIT_S)
            return capture, levels
        finally:
            capture.close()

    with caplog.at_level(logging.WARNING, logger="appliance.audio.capture"):
        capture, levels = asyncio.run(scenario())
    assert len(levels) == HANDOFF_FRAMES
    assert capture.stats.dropped_frames >= periods - 1 - HANDOFF_FRAMES
    assert levels == sorted(levels)  # in order
    assert levels[-1] >= 100 * (periods - 1)  # the newest survived
    assert levels[0] >= 100 * (periods - 1 - HANDOFF_FRAMES)  # the oldest went
    assert any("dropped" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------ stalls


def test_watch_reopens_a_stream_that_stopped_behind_its_back(stereo_48k_s32: FileRig) -> None:
    async def scenario() -> Capture:
        flowing = asyncio.Event()
        recovered = asyncio.Event()
        capture: Capture

        def on_frame(frame: bytes) -> None:
            flowing.set()
            if capture.stats.restarts >= 1:
                recovered.set()

        capture = Capture(audio(input_device="i2smic"), on_frame, asyncio.get_running_loop())
        capture.start()
        watcher = asyncio.create_task(capture.watch(stall_s=0.2))
        try:
            await asyncio.wait_for(flowing.wait(), WAIT_S)
            capture._stream.stop_stream()  # the device went away: no more callbacks
            await asyncio.wait_for(recovered.wait(), WAIT_S)
            assert capture.running
            return capture
        finally:
            watcher.cancel()
            capture.close()

    capture = asyncio.run(scenario())
    assert capture.stats.restarts == 1


def test_watch_keeps_retrying_until_an_unplugged_device_returns(stereo_48k_s32: FileRig) -> None:
    config = stereo_48k_s32.root / "asoundrc"  # written by rig.activate(); alsa-lib rereads it on a rescan
    present = config.read_text()

    class ReplugOnFailure(logging.Handler):
        """When Capture reports that reopening failed, plug the device back in."""

        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.failures = 0

        def emit(self, record: logging.LogRecord) -> None:
            if "could not reopen" in record.getMessage():
                self.failures += 1
                config.write_text(present)

    replug = ReplugOnFailure()
    logger = logging.getLogger("appliance.audio.capture")
    logger.addHandler(replug)

    async def scenario() -> Capture:
        flowing = asyncio.Event()
        recovered = asyncio.Event()
        capture: Capture

        def on_frame(frame: bytes) -> None:
            flowing.set()
            if capture.stats.restarts >= 1:
                recovered.set()

        capture = Capture(audio(input_device="i2smic"), on_frame, asyncio.get_running_loop())
        capture.start()
        watcher = asyncio.create_task(capture.watch(stall_s=0.2))
        try:
            await asyncio.wait_for(flowing.wait(), WAIT_S)
            config.write_text("")  # unplugged: a rescan no longer finds it
            capture._stream.stop_stream()
            await asyncio.wait_for(recovered.wait(), WAIT_S)
            return capture
        finally:
            watcher.cancel()
            capture.close()

    try:
        capture = asyncio.run(scenario())
    finally:
        logger.removeHandler(replug)
    assert replug.failures == 1
    assert capture.stats.restarts == 1


def test_start_on_a_missing_device_is_a_one_line_error(stereo_48k_s32: FileRig) -> None:
    async def scenario() -> None:
        capture = Capture(audio(input_device="respeaker"), lambda frame: None, asyncio.get_running_loop())
        try:
            with pytest.raises(AudioDeviceError) as caught:
                capture.start()
            assert "\n" not in str(caught.value) and '"i2smic"' in str(caught.value)
            assert not capture.running
        finally:
            capture.close()
        capture.close()  # idempotent

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------------ noise suppression


def kitchen_fan(n: int, rms: float, seed: int = 2) -> np.ndarray:
    """A stand-in for an extractor fan: brown-ish rumble, hiss and a 100 Hz hum, at `rms`."""
    rng = np.random.default_rng(seed)
    rumble = np.cumsum(rng.normal(size=n))
    rumble -= np.convolve(rumble, np.ones(400) / 400, mode="same")  # keep it from wandering off
    t = np.arange(n) / RATE
    y = rumble / rumble.std() + 0.6 * rng.normal(size=n) + 0.5 * np.sin(2 * np.pi * 100 * t)
    return y * rms / y.std()


def gain_db(est: np.ndarray, ref: np.ndarray) -> float:
    """How much of `ref` is in `est` (least squares), in dB."""
    return float(db(max(np.dot(est, ref) / np.dot(ref, ref), 1e-6)))


def power_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(x**2)))


class PressedCapture(PacedCapture):
    """A gated PacedCapture whose button goes down at a given PortAudio callback, i.e. a known file position."""

    def __init__(self, *args: Any, press_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._press_at = press_at

    def _callback(self, *args: Any) -> tuple[None, int]:
        if self.stats.callbacks == self._press_at:
            self.listen()  # attribute stores only: from this callback on the gate is open
        return super()._callback(*args)


async def pressed_turn(cfg: AudioConfig, press_at: int, live: int) -> tuple[list[bytes], list[bytes]]:
    """(pre-roll frames, the first `live` live frames) of a press at callback `press_at`."""
    preroll: list[bytes] = []
    frames: list[bytes] = []
    done = asyncio.Event()
    capture: PressedCapture

    def on_frame(frame: bytes) -> None:
        frames.append(frame)
        if len(frames) == live:
            capture.stop()
            done.set()

    capture = PressedCapture(cfg, on_frame, asyncio.get_running_loop(), on_preroll=preroll.append, press_at=press_at)
    fmt = capture.start()
    try:
        await asyncio.wait_for(done.wait(), WAIT_S)
    finally:
        capture.close()
    assert (fmt.rate, fmt.channels, fmt.frames_per_buffer) == (RATE, 1, FRAME_SAMPLES)  # one frame per callback
    return preroll, frames


def test_noise_suppression_turns_a_fan_down_and_keeps_the_words_and_the_first_syllable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.audio.frames import ms_to_frames
    from tests.e2e.test_endpoint import SENTENCE, words

    rest_frames, lead_frames, tail_s = 100, 10, 1.5  # the speech begins 200 ms before the press
    speech = words(SENTENCE)
    start = (rest_frames - lead_frames) * FRAME_SAMPLES
    n = start + speech.size + int(tail_s * RATE)
    n += -n % FRAME_SAMPLES
    clean = np.zeros(n)
    clean[start : start + speech.size] = speech
    noisy = as_int16((clean + kitchen_fan(n, 1500.0)) / 32768)  # about 7 dB SNR
    rig = FileRig(tmp_path)
    rig.add_capture("monomic", np.concatenate([noisy, np.zeros(RATE // 2, np.int16)]), rate=RATE, fmt="S16_LE")
    rig.activate(monkeypatch)
    preroll = ms_to_frames(AudioConfig().preroll_ms)
    live = n // FRAME_SAMPLES - rest_frames

    def turn(**cleanup: int) -> np.ndarray:
        cfg = audio(input_device="monomic", input_channels=1, **cleanup)
        pre, frames = asyncio.run(pressed_turn(cfg, rest_frames, live))
        assert len(pre) == preroll and all(len(f) == FRAME_BYTES for f in pre + frames)
        return np.frombuffer(b"".join(pre + frames), "<i2").astype(np.float64)

    before, after = turn(), turn(noise_suppression=2)
    origin = (rest_frames - preroll) * FRAME_SAMPLES
    assert np.array_equal(before, noisy[origin:].astype(np.float64))  # off: the microphone's own samples
    delay = int(np.argmax([np.dot(after[d:], before[: before.size - d]) for d in range(200)]))
    assert delay < FRAME_SAMPLES  # a few ms (6 measured), far under a frame
    after = np.concatenate([after[delay:], np.zeros(delay)])
    ref = clean[origin:]
    s0, s1 = start - origin, start - origin + speech.size
    first, quiet = slice(s0, s0 + RATE // 10), slice(s1 + int(0.3 * RATE), None)

    assert power_db(after[quiet]) - power_db(before[quiet]) < -10.0, "the fan was not turned down"
    assert gain_db(after[s0:s1], ref[s0:s1]) > -4.0, "the words were turned down with it"
    assert gain_db(after[first], ref[first]) > -4.0, "the first 100 ms of speech (in the pre-roll) were lost"
    assert gain_db(after[first], ref[first]) > gain_db(after[s0:s1], ref[s0:s1]) - 1.0, "the start was smeared"


@pytest.mark.parametrize("noise_suppression", [1, 2, 3, 4])
def test_noise_suppression_moves_the_end_of_speech_by_at_most_one_frame(noise_suppression: int) -> None:
    from appliance.audio.cleanup import Cleanup
    from appliance.audio.endpointing import Endpointer
    from appliance.settings.schema import VadConfig
    from tests.e2e.test_endpoint import QUESTION, SENTENCE, drive, scene, words

    for text in (SENTENCE, QUESTION):  # the endpointing tests' own scenes: -50 dBFS under the words
        s = scene(words(text), tail_s=3.0)
        cleaned = Cleanup(noise_suppression, 0).process(list(s.frames))
        for mode in ("tap", "hold"):
            release = s.speech_end_frame if mode == "hold" else None
            raw = drive(Endpointer(mode, AudioConfig(), VadConfig()), s.frames, release_after=release)
            got = drive(Endpointer(mode, AudioConfig(), VadConfig()), cleaned, release_after=release)
            assert got.end_reason is raw.end_reason, (text, mode)
            assert abs(got.end_frame - raw.end_frame) <= 1, (text, mode, raw.end_frame, got.end_frame)
