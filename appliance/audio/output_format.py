"""The speaker's side of format negotiation: which rate, channels and sample format to open it at, and
turning the pipeline's float samples into exactly that.

Pure functions over PyAudio's `is_format_supported`, kept apart from the `Player` so that `appliance doctor`
can ask the same question without opening a stream. The microphone's counterpart is
`appliance.audio.devices.choose_input_format`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.audio.devices import AudioDeviceError, DeviceInfo, pa_sample_format

__all__ = ["REPLY_RATE", "OutputFormat", "choose_output_format", "encode_block"]

REPLY_RATE = 24000  # the Live API's output audio
PERIOD_MS = 20  # one device period: the flush-to-silence bound is this plus one 20 ms frame
FALLBACK_RATES = (48000, 44100)


@dataclass(frozen=True)
class OutputFormat:
    """How the speaker stream is open."""

    device: DeviceInfo
    rate: int
    channels: int
    sample_format: str  # "int16", or "int32" for devices that take nothing else
    frames_per_buffer: int

    @property
    def period_ms(self) -> float:
        return 1000.0 * self.frames_per_buffer / self.rate

    def describe(self) -> str:
        return f"{self.rate} Hz, {self.channels} ch, {self.sample_format}, {self.period_ms:.0f} ms periods"


def encode_block(block: np.ndarray, fmt: OutputFormat) -> bytes:
    """float32 mono -> the device's sample format, clipped (never wrapped), on every channel.

    The int16 path scales `block` in place.
    """
    if fmt.sample_format == "int32":
        scaled = np.clip(np.rint(block.astype(np.float64) * 2147483648.0), -2147483648.0, 2147483647.0)
        samples: np.ndarray = scaled.astype("<i4")
    else:
        np.multiply(block, np.float32(32768.0), out=block)
        np.rint(block, out=block)
        np.clip(block, -32768.0, 32767.0, out=block)
        samples = block.astype("<i2")
    if fmt.channels > 1:
        samples = np.repeat(samples, fmt.channels)
    return samples.tobytes()


def _output_supported(pa: Any, device: DeviceInfo, rate: int, channels: int, sample_format: str) -> bool:
    try:
        return bool(
            pa.is_format_supported(
                rate,
                output_device=device.index,
                output_channels=channels,
                output_format=pa_sample_format(sample_format),  # type: ignore[arg-type]
            )
        )
    except (ValueError, OSError):  # PyAudio's way of saying "no"
        return False


def choose_output_format(pa: Any, device: DeviceInfo, output_rate: int = 0) -> OutputFormat:
    """Pick rate, channels and sample format for the speaker.

    Rate: `output_rate` when set; else 24000 (the replies' own rate: no resampling) when the device takes it,
    else the device's default rate, else 48000 or 44100. Channels: 1 if possible, else 2, else all.
    Format: int16, else int32 (I2S devices such as the AIY Voice HAT accept only S32_LE).
    """
    max_channels = device.max_output_channels
    channel_counts = list(dict.fromkeys(c for c in (1, 2, max_channels) if 0 < c <= max_channels))
    if output_rate:
        rates = [int(output_rate)]
    else:
        rates = list(dict.fromkeys((REPLY_RATE, device.default_rate, *FALLBACK_RATES)))
    for rate in rates:
        for sample_format in ("int16", "int32"):
            for channels in channel_counts:
                if _output_supported(pa, device, rate, channels, sample_format):
                    return OutputFormat(device, rate, channels, sample_format, rate * PERIOD_MS // 1000)
    tried = f"{'/'.join(str(r) for r in rates)} Hz x {'/'.join(str(c) for c in channel_counts)} ch x int16/int32"
    hint = (
        "set audio.output_rate to a rate it supports (see \"aplay -D <device> --dump-hw-params\")"
        if output_rate
        else "choose another audio.output_device"
    )
    raise AudioDeviceError(f'speaker "{device.name}" accepts none of the formats tried ({tried}); {hint}')
