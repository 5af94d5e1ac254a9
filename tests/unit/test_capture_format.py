"""Which format the microphone is opened at, and the capture path's cheapest case (16 kHz mono in)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from appliance.audio.capture import FrameConverter
from appliance.audio.devices import DeviceInfo, InputFormat, choose_input_format
from appliance.audio.frames import FRAME_BYTES
from appliance.settings.schema import AudioConfig


class AcceptsEverything:
    """A fake of PyAudio's format question, as a sound server answers it: every rate and width opens."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []

    def is_format_supported(self, rate: float, **kwargs: Any) -> bool:
        self.asked.append((int(rate), int(kwargs["input_channels"])))
        return True


def device(name: str, default_rate: int = 44100) -> DeviceInfo:
    return DeviceInfo(index=3, name=name, max_input_channels=32, max_output_channels=32,
                      default_rate=default_rate, host_api="ALSA")


def audio(**changes: Any) -> AudioConfig:
    return dataclasses.replace(AudioConfig(), **changes)


def test_a_sound_server_is_asked_for_16_khz_mono_so_nothing_is_converted_twice() -> None:
    for name in ("pulse", "pipewire"):
        fmt = choose_input_format(AcceptsEverything(), device(name), audio())
        assert (fmt.rate, fmt.channels, fmt.sample_format) == (16000, 1, "int16")


def test_a_hardware_device_still_opens_at_its_own_rate_in_stereo() -> None:
    fmt = choose_input_format(AcceptsEverything(), device("hw:CARD=seeed2micvoicec,DEV=0", 48000), audio())
    assert (fmt.rate, fmt.channels) == (48000, 2)


def test_a_chosen_channel_on_a_sound_server_keeps_the_channels_apart() -> None:
    """Mono from the server is a mix; the owner who picked the left microphone gets the left microphone."""
    fmt = choose_input_format(AcceptsEverything(), device("pulse"), audio(input_channel=1))
    assert fmt.channels >= 2 and fmt.rate == 44100


def test_explicit_settings_win_over_the_sound_server_preference() -> None:
    fmt = choose_input_format(AcceptsEverything(), device("pulse"), audio(input_rate=48000, input_channels=2))
    assert (fmt.rate, fmt.channels) == (48000, 2)


def test_16_khz_mono_input_passes_through_bit_exact_in_whole_frames() -> None:
    fmt = InputFormat(device("pulse"), 16000, 1, "int16", frames_per_buffer=320)
    converter = FrameConverter(fmt, -1)
    samples = (np.random.default_rng(5).normal(0, 3000, 16000)).astype("<i2").tobytes()
    frames: list[bytes] = []
    for start in range(0, len(samples), 333 * 2):  # chunks that do not line up with frames
        frames.extend(converter.convert(samples[start:start + 333 * 2]))
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    assert b"".join(frames) == samples[: len(frames) * FRAME_BYTES]
    assert len(frames) == len(samples) // FRAME_BYTES
