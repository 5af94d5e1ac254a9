"""One device of the virtual card: its place in the listing and the single native format it accepts.

A value, shared by the card, its PyAudio-like listings and its streams. Accepting exactly one format is
the point: the real format probing, channel mixing and resampling must find it, as on a picky I2S card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from appliance.audio.pa_constants import paInt16, paInt32

SampleFormat = Literal["int16", "int32"]
Direction = Literal["input", "output"]

#: Default period when a stream is opened with frames_per_buffer unspecified (also the reported latency).
DEFAULT_PERIOD_S = 0.02

_FORMAT_CODES: dict[str, int] = {"int16": paInt16, "int32": paInt32}


@dataclass(frozen=True)
class VirtualDevice:
    """One device of the card and the only format it accepts."""

    index: int
    name: str
    direction: Direction
    rate: int
    channels: int
    sample_format: SampleFormat
    serial: int = 0  # how many times it was plugged back in: a new plugging is a new device to PortAudio

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("<i2" if self.sample_format == "int16" else "<i4")

    @property
    def full_scale(self) -> float:
        return 32768.0 if self.sample_format == "int16" else 2147483648.0

    @property
    def pa_format(self) -> int:
        """PortAudio's code for the sample format (paInt16 or paInt32)."""
        return _FORMAT_CODES[self.sample_format]

    def describe(self) -> str:
        return f"{self.rate} Hz, {self.channels} ch, {self.sample_format}"


def check_device_args(what: str, rate: object, channels: object, sample_format: object) -> None:
    """ValueError unless `rate`, `channels` and `sample_format` describe a device the card can offer."""
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 384000:
        raise ValueError(f"{what} rate must be a whole number of Hz between 1000 and 384000, got {rate!r}")
    if isinstance(channels, bool) or not isinstance(channels, int) or not 1 <= channels <= 32:
        raise ValueError(f"{what} channels must be a whole number from 1 to 32, got {channels!r}")
    if sample_format not in _FORMAT_CODES:
        raise ValueError(f'{what} format must be "int16" or "int32", got {sample_format!r}')
