"""Noise suppression and automatic gain on the captured frames, for a kitchen's extractor fan and taps.

Sans-I/O: 20 ms frames of 16 kHz mono s16le in, the same frames cleaned out, in order, one for one.
The work is WebRTC's audio-processing module through `webrtc-noise-gain` (the `kitchen` extra), which
takes 10 ms at a time, so each frame is two calls into C and no Python touches a sample. Its noise
estimate and gain are state: `reset()` starts them afresh, which the microphone does at every press,
because between turns it has not heard the room and the last turn's estimate would smear the first
syllable of this one. The fresh processor first hears `WARMUP_MS` of the room from just before the
pre-roll. Off (both settings 0), or with the library missing, a `Passthrough` stands in.

The library is imported lazily, so loading the settings (which read the limits below) stays cheap.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from appliance.audio.frames import FRAME_BYTES

log = logging.getLogger(__name__)

#: The library's noise suppression levels: 1 low, 2 moderate, 3 high, 4 very high (0 is off).
NOISE_SUPPRESSION_LEVELS = 4
#: The library's automatic gain target, in dB below full scale (0 is off).
MAX_AUTO_GAIN_DBFS = 31
#: Room audio a fresh processor hears before the pre-roll. Measured (scripts/bench_noise.py, fan noise,
#: speech begun 200 ms before the press): starting at the pre-roll, the first 100 ms of speech lost 3-4 dB
#: more than the rest; with 300 ms more it loses what the rest does, and more buys nothing. The price is
#: converting 300 ms more of the raw backlog at the press, on PortAudio's thread (~2 ms on x86).
WARMUP_MS = 300
#: What to run when the library is missing.
INSTALL_HINT = "pip install 'appliance[kitchen]' (in the appliance's venv)"

LIBRARY = "webrtc_noise_gain"
HALF_BYTES = FRAME_BYTES // 2  # the library's 10 ms: 160 samples


class CleanupUnavailable(RuntimeError):
    """The processing library is not installed."""


class Passthrough:
    """Frames unchanged: the settings are off, or the library is missing."""

    enabled = False
    warmup_ms = 0

    def reset(self) -> None:
        pass

    def process(self, frames: list[bytes]) -> list[bytes]:
        return frames


def _load_processor_factory() -> Callable[[int, int], Any]:
    try:
        module = importlib.import_module(LIBRARY)
    except ImportError as exc:
        raise CleanupUnavailable(f"webrtc-noise-gain is not installed: {INSTALL_HINT}") from exc
    return module.AudioProcessor


def _check_level(key: str, value: int, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise ValueError(f"audio.{key} must be a whole number from 0 (off) to {top}, got {value!r}")
    return value


class Cleanup:
    """WebRTC noise suppression and/or automatic gain over 20 ms frames; one processor per listen."""

    enabled = True
    warmup_ms = WARMUP_MS

    def __init__(
        self, noise_suppression: int, auto_gain: int, *, factory: Callable[[int, int], Any] | None = None
    ) -> None:
        self.noise_suppression = _check_level("noise_suppression", noise_suppression, NOISE_SUPPRESSION_LEVELS)
        self.auto_gain = _check_level("auto_gain", auto_gain, MAX_AUTO_GAIN_DBFS)
        self._factory = factory if factory is not None else _load_processor_factory()
        self._processor: Any = None
        self.reset()

    def reset(self) -> None:
        """Forget the noise estimate and the gain: a fresh processor (tens of microseconds to make)."""
        # positional: the 1.2 wheels (the only ones for 32-bit Pi OS) take no keywords
        self._processor = self._factory(self.auto_gain, self.noise_suppression)

    def process(self, frames: list[bytes]) -> list[bytes]:
        """The frames cleaned, in order; each must be exactly one 20 ms frame."""
        step = self._processor.Process10ms
        out = []
        for frame in frames:
            if len(frame) != FRAME_BYTES:
                raise ValueError(f"cleanup takes {FRAME_BYTES}-byte frames (20 ms of 16 kHz mono s16le), "
                                 f"got {len(frame)}")
            out.append(step(frame[:HALF_BYTES]).audio + step(frame[HALF_BYTES:]).audio)
        return out


def cleanup_for(audio_cfg: Any) -> Cleanup | Passthrough:
    """The cleaner `[audio] noise_suppression` and `auto_gain` ask for.

    With either on and the library missing, the microphone works unprocessed and this logs one warning
    saying how to install it: a missing extra must not keep the appliance from answering.
    """
    noise_suppression, auto_gain = int(audio_cfg.noise_suppression), int(audio_cfg.auto_gain)
    if not (noise_suppression or auto_gain):
        return Passthrough()
    try:
        return Cleanup(noise_suppression, auto_gain)
    except CleanupUnavailable as exc:
        log.warning(
            "audio.noise_suppression = %d, audio.auto_gain = %d, but %s; capturing without them",
            noise_suppression, auto_gain, exc,
        )
        return Passthrough()
