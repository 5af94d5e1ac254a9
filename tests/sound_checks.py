"""Reading what a test's speaker played, and the sounds a test says: one copy for every test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.audio import speech
from appliance.audio.frames import RATE


def read_recording(path: Path) -> np.ndarray:
    """A recording of raw mono s16le (the speaker sink's monitor, or a card) as floats in [-1, 1)."""
    return np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float64) / 32768.0


def dbfs(x: np.ndarray) -> float:
    """RMS level in dB below full scale (-240 for silence, never -inf)."""
    return float(20 * np.log10(max(float(np.sqrt(np.mean(np.square(x.astype(np.float64))))), 1e-12)))


def spoken_question(text: str) -> bytes:
    """`text` spoken by espeak-ng at the microphone's rate; fails the test with the fix when it cannot be."""
    pcm = speech.spoken(text, RATE)
    assert pcm, "espeak-ng is needed (scripts/bootstrap.sh installs it)"
    return pcm
