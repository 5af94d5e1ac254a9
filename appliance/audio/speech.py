"""Generated speech for the demo, self-tests and tests.

espeak-ng gives real words (so a real service could transcribe them); where it is
not installed, a voiced, syllable-shaped signal stands in, which is enough for a
VAD and an echoing emulator.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from appliance.audio import wavio
from appliance.audio.resample import float_to_pcm16


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def spoken(text: str, rate: int = 16000) -> bytes | None:
    """`text` spoken by espeak-ng as s16le mono at `rate`, or None without espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        try:
            subprocess.run([exe, "-w", str(path), "--", text], check=True, capture_output=True, timeout=30)
        except (subprocess.SubprocessError, OSError):
            return None
        return wavio.read_wav_as_pcm16(path, rate)


def speechlike(seconds: float, rate: int = 16000, seed: int = 1) -> bytes:
    """A voiced signal with a syllable rhythm (about 4 Hz) and a falling pitch."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = 140.0 - 25.0 * t / max(seconds, 1e-3)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, np.pi)), 0, None) ** 0.5
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02) if n else t
    signal = 0.3 * voice * syllables * fade / 2.0
    return float_to_pcm16(signal.astype(np.float32))


def utterance(text: str, rate: int = 16000) -> tuple[bytes, str]:
    """Speech for `text` and how it was made ("espeak-ng" or "synthetic")."""
    pcm = spoken(text, rate)
    if pcm:
        return pcm, "espeak-ng"
    return speechlike(max(1.0, 0.07 * len(text)), rate), "synthetic"
