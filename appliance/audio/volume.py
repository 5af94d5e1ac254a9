"""Software volume: a perceptual 0-100 scale, a zipper-free gain ramp, and a remembered setting.

Why software volume: HATs and USB speakers expose different (or no) ALSA mixer controls, so one gain stage
in our own output path behaves the same on every device, and earcons can be levelled against speech.

The scale is a dB taper, because loudness is perceived logarithmically: 100 is 0 dB, 1 is -50 dB, the steps in
between are equal in dB (about 0.5 dB each), and 0 is true silence. A linear 0-100 would put all the useful
range in the bottom tenth of the scale.

A gain change is never applied as a step (that is the "zipper" click); the gain slews linearly, sample by
sample, at a rate that crosses the whole range in ``RAMP_MS`` (50 ms), so any change lands within 50 ms.
The loop thread only writes the target (one float); the audio thread owns the current gain, so there is no
lock on the audio path.

The kitchen-timer alarm does not follow this volume: it is played at its own level (``[timers]
alarm_volume``, on the same scale) so a voice turned down for the evening does not hide the eggs. It
starts softer and rises to that level over the first seconds of ringing (`alarm_gain`), one gain per
ring, so a person standing next to the box is not startled and one across the kitchen hears it soon.

The chosen level is stored as JSON in the state directory (atomically: temp file, fsync, rename) and
overrides ``[audio] volume`` at the next start; a corrupt file is logged and ignored.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np

from appliance.atomicfile import write_atomic

__all__ = [
    "ALARM_RAMP_DB",
    "ALARM_RAMP_S",
    "MIN_DB",
    "RAMP_MS",
    "VOLUME_FILE",
    "GainRamp",
    "VolumeStore",
    "alarm_gain",
    "initial_level",
    "level_to_gain",
    "validate_level",
]

log = logging.getLogger(__name__)

MIN_DB = -50.0  # gain at level 1
RAMP_MS = 50.0
VOLUME_FILE = "volume.json"
ALARM_RAMP_DB = -12.0  # the first ring, under the alarm's level
ALARM_RAMP_S = 4.0  # rings this long after the first are at the full level


def validate_level(level: object) -> int:
    """A volume level as an int 0-100, or ValueError with a one-line reason."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or level != level:
        raise ValueError(f"volume must be a number from 0 to 100, got {level!r}")
    if not 0 <= level <= 100:
        raise ValueError(f"volume must be from 0 to 100, got {level!r}")
    return int(round(level))


def level_to_gain(level: int) -> float:
    """Linear amplitude gain for a 0-100 level on the dB taper (0 -> 0.0, 1 -> -50 dB, 100 -> 1.0)."""
    level = validate_level(level)
    if level == 0:
        return 0.0
    db = MIN_DB * (100 - level) / 99.0
    return float(10.0 ** (db / 20.0))


def alarm_gain(level: int, since_s: float) -> float:
    """Linear gain of a ring `since_s` seconds into ringing: `level`'s gain, rising in dB from
    ALARM_RAMP_DB below it at the first ring to all of it at ALARM_RAMP_S."""
    progress = min(1.0, max(0.0, float(since_s) / ALARM_RAMP_S))
    return level_to_gain(level) * float(10.0 ** (ALARM_RAMP_DB * (1.0 - progress) / 20.0))


class GainRamp:
    """Applies a gain to output blocks, moving toward the target without steps.

    ``set_level`` may be called from any thread; ``apply`` belongs to the audio thread.
    """

    def __init__(self, rate: int, level: int, *, ramp_ms: float = RAMP_MS) -> None:
        self.rate = int(rate)
        self._level = validate_level(level)
        self._target = level_to_gain(self._level)
        self._current = self._target  # the starting level is applied at once: nothing is playing yet
        # Largest gain change per sample: the full 0..1 range in ramp_ms.
        self._slew = 1.0 / max(1.0, rate * ramp_ms / 1000.0)

    @property
    def level(self) -> int:
        return self._level

    @property
    def target_gain(self) -> float:
        return self._target

    @property
    def current_gain(self) -> float:
        return self._current

    def settle(self) -> None:
        """Jump to the target: called (on the audio thread) while only silence plays, where a ramp is inaudible."""
        self._current = self._target

    def set_level(self, level: int) -> None:
        level = validate_level(level)
        self._level = level
        self._target = level_to_gain(level)  # one float store: atomic for the audio thread

    def apply(self, block: np.ndarray) -> None:
        """Multiply a float32 block in place by the gain, ramping linearly toward the target."""
        n = block.shape[0]
        if n == 0:
            return
        start = self._current
        target = self._target
        if start == target:
            if target != 1.0:
                block *= np.float32(target)
            return
        distance = target - start
        steps = abs(distance) / self._slew  # samples needed to arrive
        if steps <= n:
            reach = max(1, int(np.ceil(steps)))
            ramp = np.full(n, target, dtype=np.float32)
            ramp[:reach] = start + distance * np.arange(1, reach + 1, dtype=np.float32) / np.float32(reach)
            self._current = target
        else:
            step = self._slew if distance > 0 else -self._slew
            ramp = (start + step * np.arange(1, n + 1, dtype=np.float64)).astype(np.float32)
            self._current = float(start + step * n)
        if block.ndim == 2:
            block *= ramp[:, None]
        else:
            block *= ramp


class VolumeStore:
    """The remembered volume in ``<state dir>/volume.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / VOLUME_FILE
        self._lock = threading.Lock()  # saves may run on worker threads; write one file at a time

    def load(self) -> int | None:
        """The stored level, or None when there is none (or it is unreadable, which is logged)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cannot read the saved volume %s (%s); using the configured volume", self.path,
                        exc.strerror or exc)
            return None
        try:
            data = json.loads(text)
            return validate_level(data["volume"])
        except (ValueError, TypeError, KeyError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("ignoring the saved volume in %s: %s; using the configured volume", self.path, reason)
            return None

    def save(self, level: int) -> None:
        """Write the level atomically: a crash leaves the old file or the new one, never half of one."""
        level = validate_level(level)
        payload = json.dumps({"volume": level}) + "\n"
        with self._lock:
            write_atomic(self.path, payload)


def initial_level(configured: int, store: VolumeStore | None) -> int:
    """The stored level if there is a valid one, else the configured ``[audio] volume``."""
    stored = store.load() if store is not None else None
    return validate_level(configured) if stored is None else stored
