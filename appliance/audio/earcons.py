"""Short, distinct status sounds ("earcons"), synthesised in numpy at whatever rate the speaker runs.

Generating them instead of shipping WAV files means no resampling at start, no files to lose, and exact
control of level and fades. Each one is shaped to be told apart without looking at the device:

- ``listen_start``: a bright rising two-note chime (A5 -> E6): "go ahead, I'm listening".
- ``listen_end``: a softer falling chime (G5 -> C5): "got it".
- ``error``: a low double buzz (a 140 Hz band-limited buzz, twice): clearly "something went wrong".
- ``no_network``: three slow descending notes (F5 -> D5 -> A#4): a sad "cannot reach the service".
- ``alarm``: one ring of a kitchen timer, meant to be repeated: four 100 ms pulses alternating between
  two bright pitches (C7 and E7), each a sawtooth-like stack of harmonics.
- ``muted``: two short, low, hollow beeps falling (G4 -> E4): "the microphone is off" (on muting, and
  at every press while muted). Odd harmonics only, soft where the error is a harsh buzz.
- ``unmuted``: the same hollow beep rising an octave (A3 -> A4): "the microphone is on again".
- ``announce``: a rising three-note gong (C6 -> E6 -> G6), before a `ctl say` sentence; the voice
  waits for it to end (``Player.new_reply(after_earcons=True)``).

The alarm has to cut through an extractor fan or running water, whose noise is mostly below 1 kHz, so
its energy sits at 2-4 kHz (where hearing is keenest) and nothing of it is below 2 kHz; pulses with gaps
stand out from steady noise better than a held tone. It peaks at ``ALARM_PEAK_DBFS`` (-1 dBFS), because
it is played at its own level, never above 1.0, and so never clips. The other earcons peak at -12 dBFS,
which leaves room under speech at the same volume.

All start and end with 5 ms fades so they never click, even when mixed over silence. Partials at or
above 0.45x the rate are left out (the sounds are additive, so nothing else can alias): a 24 kHz device
gets the alarm's harmonics up to 10.8 kHz, an 8 or 16 kHz device a clean (if duller) version.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["ALARM_PEAK_DBFS", "EARCON_NAMES", "FADE_MS", "PEAK_DBFS", "earcon"]

PEAK_DBFS = -12.0
ALARM_PEAK_DBFS = -1.0
FADE_MS = 5.0
_CHIME = ((1.0, 1.0), (2.0, 0.22), (3.0, 0.06))  # (partial ratio, amplitude): a soft bell-like tone
_RING = tuple((float(k), 1.0 / k) for k in range(1, 5))  # sawtooth-like: harmonics 1-4 at 1/k
_RING_PITCHES = (2093.0, 2637.0)  # C7 and E7: a bright major third, both in the 2-4 kHz band
#: odd partials: a soft, clarinet-like beep, whose overtones a small speaker still plays at 220-400 Hz
_HOLLOW = ((1.0, 1.0), (3.0, 0.3), (5.0, 0.12))
_NYQUIST_FRACTION = 0.45


def _tone(freq: float, seconds: float, rate: int, partials: tuple[tuple[float, float], ...],
          decay_per_s: float, attack_ms: float = 6.0, release_ms: float = 8.0) -> np.ndarray:
    """One note: additive partials, a raised-cosine attack, an exponential decay and a short release."""
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n, dtype=np.float64) / rate
    wave = np.zeros(n)
    for ratio, amplitude in partials:
        f = freq * ratio
        if f < _NYQUIST_FRACTION * rate:
            wave += amplitude * np.sin(2.0 * np.pi * f * t)
    env = np.exp(-decay_per_s * t)
    attack = max(1, int(rate * attack_ms / 1000.0))
    release = max(1, int(rate * release_ms / 1000.0))
    env[:attack] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    env[-release:] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(1, release + 1) / release)
    return wave * env


def _buzz(freq: float, seconds: float, rate: int) -> np.ndarray:
    """A band-limited sawtooth-like buzz (harmonics 1/k up to ~2.5 kHz) with a flat envelope."""
    partials = tuple((float(k), 1.0 / k) for k in range(1, 40) if freq * k <= 2500.0)
    return _tone(freq, seconds, rate, partials, decay_per_s=1.5, attack_ms=8.0, release_ms=12.0)


def _place(parts: list[tuple[float, np.ndarray]], rate: int, total_s: float) -> np.ndarray:
    """Mix (start time, signal) pairs into one buffer of `total_s` seconds."""
    out = np.zeros(int(round(total_s * rate)))
    for start_s, signal in parts:
        i = int(round(start_s * rate))
        end = min(out.size, i + signal.size)
        out[i:end] += signal[: end - i]
    return out


def _listen_start(rate: int) -> np.ndarray:
    return _place([(0.0, _tone(880.0, 0.11, rate, _CHIME, 14.0)),
                   (0.085, _tone(1318.5, 0.17, rate, _CHIME, 12.0))], rate, 0.26)


def _listen_end(rate: int) -> np.ndarray:
    return _place([(0.0, _tone(784.0, 0.11, rate, _CHIME, 14.0)),
                   (0.085, _tone(523.25, 0.17, rate, _CHIME, 12.0))], rate, 0.26)


def _error(rate: int) -> np.ndarray:
    return _place([(0.0, _buzz(140.0, 0.13, rate)), (0.2, _buzz(140.0, 0.13, rate))], rate, 0.34)


def _no_network(rate: int) -> np.ndarray:
    notes = (698.46, 587.33, 466.16)
    parts = [(i * 0.16, _tone(f, 0.18 if i < 2 else 0.3, rate, ((1.0, 1.0), (2.0, 0.1)), 6.0))
             for i, f in enumerate(notes)]
    return _place(parts, rate, 0.62)


def _beeps(notes: tuple[float, float], rate: int) -> np.ndarray:
    """Two short hollow beeps, 160 ms apart."""
    return _place([(i * 0.16, _tone(f, 0.12, rate, _HOLLOW, 10.0)) for i, f in enumerate(notes)], rate, 0.3)


def _muted(rate: int) -> np.ndarray:
    return _beeps((392.0, 329.63), rate)


def _unmuted(rate: int) -> np.ndarray:
    return _beeps((220.0, 440.0), rate)


def _announce(rate: int) -> np.ndarray:
    """Before `ctl say`: a rising three-note chime, like a station's announcement gong."""
    notes = (1046.5, 1318.5, 1568.0)
    return _place([(i * 0.14, _tone(f, 0.35 if i == 2 else 0.16, rate, _CHIME, 7.0)) for i, f in enumerate(notes)],
                  rate, 0.66)


def _alarm(rate: int) -> np.ndarray:
    pulses = [_tone(f, 0.1, rate, _RING, 0.5, attack_ms=4.0, release_ms=6.0) for f in _RING_PITCHES]
    # 0.49 s in all: shorter than the quickest ring_interval_s (0.5 s), so two rings never overlap and clip
    return _place([(i * 0.13, pulses[i % 2]) for i in range(4)], rate, 0.49)


_MAKERS = {
    "listen_start": _listen_start,
    "listen_end": _listen_end,
    "error": _error,
    "no_network": _no_network,
    "alarm": _alarm,
    "muted": _muted,
    "unmuted": _unmuted,
    "announce": _announce,
}
EARCON_NAMES: tuple[str, ...] = tuple(_MAKERS)


def earcon(name: str, rate: int) -> np.ndarray:
    """The earcon `name` as read-only float32 mono samples at `rate` Hz (cached per name and rate)."""
    if name not in _MAKERS:
        raise ValueError(f"unknown earcon {name!r}; choose one of: {', '.join(EARCON_NAMES)}")
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 4000 <= rate <= 384000:
        raise ValueError(f"earcon rate must be a sample rate in Hz from 4000 to 384000, got {rate!r}")
    return _render(name, int(rate))


@lru_cache(maxsize=32)
def _render(name: str, rate: int) -> np.ndarray:
    signal = _MAKERS[name](rate)
    fade = max(1, int(round(rate * FADE_MS / 1000.0)))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)  # starts at exactly 0
    signal[:fade] *= ramp
    signal[-fade:] *= ramp[::-1]
    peak_dbfs = ALARM_PEAK_DBFS if name == "alarm" else PEAK_DBFS
    signal *= 10.0 ** (peak_dbfs / 20.0) / np.max(np.abs(signal))
    out = signal.astype(np.float32)
    out.setflags(write=False)
    return out
