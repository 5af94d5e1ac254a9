"""The speaker through real PyAudio, PortAudio and alsa-lib into a private PulseAudio (real-time paced).

What is checked is what a listener would notice: the reply comes out whole, at the right speed and level;
a barge-in silences it within one device period plus a 20 ms frame, without a click, and late audio of the
interrupted turn never plays; earcons sound while nothing else plays; the volume is remembered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from appliance.audio.devices import AudioDeviceError, DeviceInfo
from appliance.audio.earcons import earcon
from appliance.audio.output_format import OutputFormat, choose_output_format, encode_block
from appliance.audio.speaker import Player
from appliance.audio.resample import resample
from appliance.audio.speech import spoken, speechlike
from appliance.audio.volume import GainRamp, VolumeStore, level_to_gain
from appliance.settings.schema import AudioConfig
from rigs import PulseRig, pulse_available
from sound_checks import read_recording
from waiting import wait_until

REC_RATE = 48000  # the rig's speaker sink
REPLY_RATE = 24000
CHUNK_S = 0.04  # the emulator sends 40 ms chunks ...
SPEEDUP = 1.7  # ... about 1.7x faster than real time
TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseRig]:
    assert pulse_available(), "PulseAudio, pacat/parecord and the ALSA pulse plugin are needed for these tests"
    pulse = PulseRig(tmp_path_factory.mktemp("pulse"))
    pulse.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            pulse.activate(mp)  # before any PyAudio() is created
            yield pulse
    finally:
        pulse.stop()


def speaker_cfg(**changes: object) -> AudioConfig:
    return dataclasses.replace(AudioConfig(), **{"output_device": "pulse", "volume": 100, **changes})


def speech_reply() -> np.ndarray:
    pcm = spoken("The kitchen timer is set for ten minutes.", REPLY_RATE) or speechlike(2.0, REPLY_RATE)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def to_pcm(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2").tobytes()


# ---------------------------------------------------------------------------------------------- helpers




async def wait_event(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), TIMEOUT_S)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def recorded_samples(path: Path) -> int:
    return path.stat().st_size // 2 if path.exists() else 0


async def start_flowing(player: Player, rig: PulseRig, recording: Path) -> OutputFormat:
    """Open the speaker, wait until PortAudio calls back steadily, and start recording the speaker sink."""
    fmt = player.start()
    # the pulse plugin asks for a few blocks at once, then stalls ~1.7 s filling its buffer: wait past that
    await wait_until(lambda: player.stats.callbacks >= 8, "the output stream to flow")
    rig.start_recording_speaker(recording, REC_RATE)
    await wait_until(lambda: recorded_samples(recording) > 0, "the speaker recording to start")
    return fmt


async def record_more(recording: Path, seconds: float) -> None:
    """Let the recorder capture `seconds` more of the speaker (covers output and recorder latency)."""
    target = recorded_samples(recording) + int(seconds * REC_RATE)
    await wait_until(lambda: recorded_samples(recording) >= target, "the speaker recording to grow")


async def feed_like_the_emulator(player: Player, reply: np.ndarray, *, end: bool = True) -> None:
    pcm = to_pcm(reply)
    step = int(CHUNK_S * REPLY_RATE) * 2
    for i in range(0, len(pcm), step):
        player.feed(pcm[i : i + step])
        await asyncio.sleep(CHUNK_S / SPEEDUP)  # pacing the sender, not waiting for anything
    if end:
        player.end_of_reply()


def align(recording: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, float]:
    """The part of `recording` that lines up best with `expected`, and their normalised cross-correlation."""
    n = 1 << int(np.ceil(np.log2(recording.size + expected.size)))
    xc = np.fft.irfft(np.fft.rfft(recording, n) * np.conj(np.fft.rfft(expected, n)), n)
    lag = int(np.argmax(xc[: recording.size]))
    segment = recording[lag : lag + expected.size]
    if segment.size < expected.size:
        segment = np.concatenate((segment, np.zeros(expected.size - segment.size)))
    ncc = float(segment @ expected / np.sqrt((segment @ segment) * (expected @ expected) + 1e-30))
    return segment, ncc


def db(ratio: float) -> float:
    return 20.0 * np.log10(ratio)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


# ---------------------------------------------------------------------------------------------- the speaker


async def play_reply_and_record(rig: PulseRig, cfg: AudioConfig, recording: Path) -> tuple[OutputFormat, np.ndarray]:
    loop = asyncio.get_running_loop()
    player = Player(cfg, loop)
    drained, first = asyncio.Event(), asyncio.Event()
    player.events.on_drained = lambda _at: drained.set()
    player.events.on_first_audio = lambda _at: first.set()
    try:
        fmt = await start_flowing(player, rig, recording)
        reply = speech_reply()
        player.new_reply()
        await feed_like_the_emulator(player, reply)
        await wait_event(first, "the first audio of the reply")
        await wait_event(drained, "the reply to drain")
        await record_more(recording, 0.3)
        assert player.underruns == 0 and player.stats.callback_errors == 0
    finally:
        rig.stop_recording_speaker()
        player.close()
    return fmt, reply


def check_reply_in_recording(recording: Path, reply: np.ndarray) -> None:
    expected = resample(reply.astype(np.float32), REPLY_RATE, REC_RATE).astype(np.float64)
    segment, ncc = align(read_recording(recording), expected)
    assert ncc > 0.9, f"the speaker did not play the reply faithfully (correlation {ncc:.3f})"
    assert abs(db(rms(segment) / rms(expected))) < 1.0, "volume 100 keeps the level"


def test_a_reply_plays_whole_at_48k_through_the_resampler(rig: PulseRig, tmp_path: Path) -> None:
    recording = tmp_path / "speaker.raw"
    fmt, reply = asyncio.run(play_reply_and_record(rig, speaker_cfg(output_rate=48000), recording))
    assert fmt.rate == 48000 and fmt.sample_format == "int16"
    check_reply_in_recording(recording, reply)


def test_a_reply_plays_at_24k_when_the_device_takes_it(rig: PulseRig, tmp_path: Path) -> None:
    recording = tmp_path / "speaker.raw"
    fmt, reply = asyncio.run(play_reply_and_record(rig, speaker_cfg(output_rate=0), recording))
    assert fmt.rate == 24000, "24 kHz replies need no resampling when the device takes 24 kHz"
    check_reply_in_recording(recording, reply)


def test_flush_silences_the_speaker_within_a_period_and_a_frame_without_a_click(rig: PulseRig, tmp_path: Path) -> None:
    recording = tmp_path / "speaker.raw"
    amplitude = 0.5
    t = np.arange(int(3.0 * REPLY_RATE)) / REPLY_RATE
    tone = (amplitude * np.sin(2 * np.pi * 437.0 * t + 0.7)).astype(np.float32)
    times: dict[str, float] = {}

    async def scenario() -> OutputFormat:
        loop = asyncio.get_running_loop()
        player = Player(speaker_cfg(output_rate=48000), loop)
        first, silent = asyncio.Event(), asyncio.Event()
        player.events.on_first_audio = lambda at: (times.setdefault("first", at), first.set())
        player.events.on_silent_after_flush = lambda _at: silent.set()
        try:
            fmt = await start_flowing(player, rig, recording)
            player.new_reply()
            feeding = asyncio.create_task(feed_like_the_emulator(player, tone))  # keeps sending after the flush
            await wait_event(first, "the first audio")
            await asyncio.sleep(0.6)  # let the reply play for a while (this is the test's "press" moment)
            times["flush"] = time.monotonic()
            player.flush()
            await wait_event(silent, "silence after the flush")
            await feeding  # late audio of the interrupted reply arrives and must be dropped
            await record_more(recording, 0.4)
            return fmt
        finally:
            rig.stop_recording_speaker()
            player.close()

    fmt = asyncio.run(scenario())
    x = read_recording(recording)
    onset = int(np.flatnonzero(np.abs(x) > 0.02 * amplitude)[0])
    audible = np.flatnonzero(np.abs(x) > amplitude * 10 ** (-60 / 20))
    cut = int(audible[-1])
    played_s = (cut - onset) / REC_RATE
    # Both ends are measured in the recording, so the recorder's and the device's latency cancel out.
    delay = played_s - (times["flush"] - times["first"])
    allowed = fmt.period_ms / 1000 + 0.020
    assert -0.005 < delay <= allowed, f"silent {delay * 1000:.1f} ms after the flush (allowed {allowed * 1000:.0f})"
    # it played without gaps up to the flush (10 ms windows all near the tone's level)
    steady = x[onset + 480 : cut - 480]
    windows = steady[: steady.size // 480 * 480].reshape(-1, 480)
    assert np.all(np.sqrt(np.mean(windows**2, axis=1)) > 0.6 * amplitude / np.sqrt(2))
    # no click at the cut: the largest step there is no larger than the tone's own
    own = np.max(np.abs(np.diff(steady)))
    around_cut = x[cut - 960 : cut + 960]
    assert np.max(np.abs(np.diff(around_cut))) <= 1.25 * own
    # nothing of the late audio played after the cut
    assert not np.any(np.abs(x[cut + 1 :]) > amplitude * 10 ** (-60 / 20))


def test_an_earcon_plays_while_idle_at_the_set_volume(rig: PulseRig, tmp_path: Path) -> None:
    recording = tmp_path / "speaker.raw"

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        player = Player(speaker_cfg(output_rate=48000, volume=50), loop)
        try:
            await start_flowing(player, rig, recording)
            assert player.play_earcon("listen_start")
            await record_more(recording, earcon("listen_start", REC_RATE).size / REC_RATE + 0.3)
        finally:
            rig.stop_recording_speaker()
            player.close()

    asyncio.run(scenario())
    expected = earcon("listen_start", REC_RATE).astype(np.float64)
    segment, ncc = align(read_recording(recording), expected)
    assert ncc > 0.9, f"the earcon is not in the recording (correlation {ncc:.3f})"
    level = db(np.max(np.abs(segment)))
    assert level == pytest.approx(-12.0 + db(level_to_gain(50)), abs=1.0)


# ---------------------------------------------------------------------------------------------- choosing a format

# A stand-in for PyAudio's format probe (the rigs accept every format, so refusal cannot be shown with them).


class FakeFormatProbe:
    """Mock of our own, for `is_format_supported` only: accepts exactly the listed (rate, channels, format)."""

    def __init__(self, accepted: set[tuple[int, int, str]]) -> None:
        import pyaudio

        self._names = {pyaudio.paInt16: "int16", pyaudio.paInt32: "int32"}
        self.accepted = accepted

    def is_format_supported(self, rate: int, *, output_device: int, output_channels: int, output_format: int) -> bool:
        if (rate, output_channels, self._names[output_format]) in self.accepted:
            return True
        raise ValueError("Invalid sample rate")  # what PyAudio does for "no"


def device(default_rate: int = 48000, channels: int = 2) -> DeviceInfo:
    return DeviceInfo(index=3, name="seeed-2mic-voicecard", max_input_channels=2, max_output_channels=channels,
                      default_rate=default_rate, host_api="ALSA")


def test_format_prefers_24k_mono_then_the_devices_own_rate() -> None:
    fmt = choose_output_format(FakeFormatProbe({(24000, 1, "int16"), (48000, 1, "int16")}), device(), 0)
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (24000, 1, "int16")
    # a WM8960 at one fixed rate, stereo only: its default rate, two channels
    fmt = choose_output_format(FakeFormatProbe({(48000, 2, "int16")}), device(), 0)
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (48000, 2, "int16")
    assert fmt.frames_per_buffer == 960
    # an I2S HAT that takes only S32_LE
    fmt = choose_output_format(FakeFormatProbe({(48000, 2, "int32")}), device(), 0)
    assert (fmt.rate, fmt.channels, fmt.sample_format) == (48000, 2, "int32")


def test_a_configured_rate_the_device_refuses_is_one_clear_error() -> None:
    with pytest.raises(AudioDeviceError, match="audio.output_rate") as err:
        choose_output_format(FakeFormatProbe({(48000, 2, "int16")}), device(), 44100)
    assert "\n" not in str(err.value) and "seeed-2mic-voicecard" in str(err.value)


def test_output_is_clipped_not_wrapped_and_duplicated_to_both_channels() -> None:
    fmt = OutputFormat(device(), 48000, 2, "int16", 960)
    block = np.array([0.5, -1.5, 1.5, 0.0], dtype=np.float32)
    out = np.frombuffer(encode_block(block, fmt), dtype="<i2").reshape(-1, 2)
    assert out[:, 0].tolist() == out[:, 1].tolist() == [16384, -32768, 32767, 0]
    fmt32 = OutputFormat(device(), 48000, 1, "int32", 960)
    out32 = np.frombuffer(encode_block(np.array([0.5, 2.0], dtype=np.float32), fmt32), dtype="<i4")
    assert out32.tolist() == [1 << 30, 2**31 - 1]


# ---------------------------------------------------------------------------------------------- volume


def test_volume_taper_is_perceptual() -> None:
    assert level_to_gain(0) == 0.0
    assert level_to_gain(100) == 1.0
    assert db(level_to_gain(1)) == pytest.approx(-50.0)
    steps = [db(level_to_gain(v)) for v in range(1, 101)]
    assert np.allclose(np.diff(steps), steps[1] - steps[0]), "equal dB steps: each notch sounds alike"


def test_volume_changes_ramp_without_steps_and_arrive_within_50_ms() -> None:
    rate = 48000
    ramp = GainRamp(rate, 100)
    ones = [np.ones(960, dtype=np.float32) for _ in range(6)]
    ramp.apply(ones[0])
    ramp.set_level(0)
    for block in ones[1:]:
        ramp.apply(block)
    gains = np.concatenate(ones)
    assert np.max(np.abs(np.diff(gains))) <= 1.0 / (0.05 * rate) + 1e-6, "no zipper step"
    arrived = int(np.flatnonzero(gains == 0.0)[0]) - 960
    assert arrived <= 0.05 * rate


def test_volume_is_remembered_and_overrides_the_config(tmp_path: Path) -> None:
    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        player = Player(speaker_cfg(volume=70), loop, state_dir=tmp_path)
        assert player.volume == 70
        player.set_volume(35)
        player.set_volume(30)  # a burst of changes: the last one wins
        await wait_until(lambda: VolumeStore(tmp_path).load() == 30, "the volume to be saved")
        return Player(speaker_cfg(volume=70), loop, state_dir=tmp_path).volume

    assert asyncio.run(scenario()) == 30
    assert json.loads((tmp_path / "volume.json").read_text()) == {"volume": 30}
    assert [p.name for p in tmp_path.iterdir()] == ["volume.json"], "no temp files left behind"


@pytest.mark.parametrize("content", ["{not json", '{"volume": 250}', '["volume"]', ""])
def test_a_corrupt_volume_file_is_logged_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    (tmp_path / "volume.json").write_text(content)
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.WARNING):
            player = Player(speaker_cfg(volume=64), loop, state_dir=tmp_path)
    finally:
        loop.close()
    assert player.volume == 64
    assert any("volume.json" in r.getMessage() for r in caplog.records)


def test_a_bad_volume_is_refused_with_the_allowed_range() -> None:
    loop = asyncio.new_event_loop()
    try:
        player = Player(speaker_cfg(), loop)
        with pytest.raises(ValueError, match="0 to 100"):
            player.set_volume(101)
    finally:
        loop.close()
