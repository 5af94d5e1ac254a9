"""A bounded jitter buffer between bursty reply audio and the sound card's steady pull.

Replies arrive in bursts (about 1.7x real time, with gaps); the sound card asks for a fixed block every
device period. This buffer decides *when* audio plays, so that what the listener hears is either clean
reply audio or clean silence, never a reply peppered with dropouts:

- Playback of a reply starts once ``start_ms`` is buffered, or at once when the reply is complete and shorter.
- If the buffer runs dry in the middle of a reply (an *underrun*), the audio fades out over 5 ms and playback
  pauses until the (now larger) start target is buffered again, then fades back in over 5 ms. The target
  grows by half after each underrun, up to 500 ms, so a slow network costs a little latency instead of
  repeated stutters. To have 5 ms of real audio to fade out with, a streaming reply always keeps one fade
  length in reserve.
- ``flush()`` (barge-in, ``interrupted``) fades the sound out within 5 ms and drops the rest; pushes are
  ignored until ``new_reply()``, because audio of the interrupted turn may still be in flight.

Storage is an int16 ring, preallocated: replies are 16-bit PCM on the wire, so int16 loses nothing, and it
halves memory (60 s at 48 kHz is 5.5 MiB instead of 11) and copy bandwidth on a 512 MB Pi Zero 2 W. ``pull``
hands out float32 because the output stage (fades, volume, earcon mixing) works in float.

Threading: one lock guards all state. ``pull`` runs on PortAudio's callback thread, everything else on the
event loop's thread; each holds the lock only for O(n) array copies of the block being moved, and never
for I/O, logging or unbounded allocation. (A lock-free single-producer ring buys nothing in CPython, where
the GIL serialises the two threads anyway, and it would make ``flush`` and overflow-dropping racy.)

No clock is read: time is counted in samples, so an unpaced test device and a real card behave the same.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["FADE_MS", "JitterBuffer", "JitterEvents", "JitterStats"]

FADE_MS = 5.0
UNDERRUN_TARGET_GROWTH = 1.5
MAX_GROWN_TARGET_MS = 500.0
_INT16_SCALE = np.float32(1.0 / 32768.0)


class JitterEvents:
    """Bit flags ``pull`` raises for the owner; collect them with ``JitterBuffer.take_events()``."""

    FIRST_AUDIO = 1  # the first sample of a reply went out in this pull
    DRAINED = 2  # a reply marked complete has been played to its last sample
    SILENT_AFTER_FLUSH = 4  # after flush(), the fade-out has been handed out and only silence follows


@dataclass(frozen=True)
class JitterStats:
    underruns: int
    dropped_samples: int
    max_depth_samples: int
    depth_samples: int
    depth_ms: float
    start_target_ms: float


class JitterBuffer:
    """Reply audio at the device rate, mono. ``push`` from the loop thread, ``pull`` from the audio thread."""

    def __init__(self, rate: int, *, start_ms: float = 120.0, max_seconds: float = 60.0) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"jitter buffer rate must be a positive integer in Hz, got {rate!r}")
        if not start_ms > 0:
            raise ValueError(f"jitter buffer start_ms must be positive, got {start_ms!r}")
        if not max_seconds > 0:
            raise ValueError(f"jitter buffer max_seconds must be positive, got {max_seconds!r}")
        self.rate = int(rate)
        self.fade_samples = max(1, round(rate * FADE_MS / 1000.0))
        self.capacity = max(self.fade_samples * 2, int(round(rate * max_seconds)))
        self._initial_target = self._ms_to_samples(start_ms)
        self._max_target = max(self._initial_target, self._ms_to_samples(MAX_GROWN_TARGET_MS))
        self._ring = np.zeros(self.capacity, dtype=np.int16)
        # Flush fade-out, computed at flush() time and handed out by the following pull(s).
        self._tail = np.zeros(self.fade_samples, dtype=np.float32)
        self._fade_gain = np.arange(1, self.fade_samples + 1, dtype=np.float32) / np.float32(self.fade_samples + 1)
        self._lock = threading.Lock()
        # Counters (read without the lock: single ints, written under it).
        self.underruns = 0
        self.dropped_samples = 0
        self.max_depth = 0
        self._reset_state()

    # ------------------------------------------------------------------ helpers

    def _ms_to_samples(self, ms: float) -> int:
        return max(1, int(math.ceil(self.rate * ms / 1000.0)))

    def _reset_state(self) -> None:
        self._written = 0  # absolute count of samples ever stored
        self._read = 0  # absolute count of samples consumed (played or dropped)
        self._target = self._initial_target
        self._playing = False
        self._fade_in_pos = self.fade_samples  # samples since playback (re)started; >= fade_samples: no fade
        self._complete = False  # end_of_reply() seen for the reply being received
        self._stop_mark: int | None = None  # absolute position where playback will pause or end
        self._stop_is_end = False  # True: the stop mark is the end of a complete reply
        self._discarding = False  # after flush(), until new_reply()
        self._reply_start = 0  # absolute position of the current reply's first sample
        self._first_pending = True  # FIRST_AUDIO not yet raised for the current reply
        self._tail_len = 0
        self._tail_pos = 0
        self._silence_event_pending = False
        self._events = 0

    def _begin_reply(self) -> None:
        self._complete = False
        self._discarding = False
        self._reply_start = self._written
        self._first_pending = True

    # ------------------------------------------------------------------ loop side

    def push(self, samples: np.ndarray) -> int:
        """Append mono samples (int16, or float in [-1, 1]); returns how many were stored.

        While flushed (between ``flush()`` and ``new_reply()``) the samples are dropped and 0 is returned.
        When the ring is full the *oldest* audio is dropped to make room and counted in ``dropped_samples``.
        """
        data = np.asarray(samples)
        if data.ndim != 1:
            raise ValueError(f"jitter buffer takes mono 1-D samples, got shape {data.shape}")
        if data.dtype != np.int16:
            if data.dtype.kind != "f":
                raise ValueError(f"jitter buffer takes int16 or float samples, got dtype {data.dtype}")
            data = np.clip(np.rint(data.astype(np.float32) * 32768.0), -32768, 32767).astype(np.int16)
        with self._lock:
            if self._discarding or data.size == 0:
                return 0
            if data.size > self.capacity:
                # Only the newest `capacity` samples can be kept; the rest count as dropped at once.
                skipped = data.size - self.capacity
                self.dropped_samples += skipped
                self._written += skipped
                self._read += skipped
                data = data[skipped:]
            overflow = (self._written - self._read) + data.size - self.capacity
            if overflow > 0:
                self._read += overflow
                self.dropped_samples += overflow
            start = self._written % self.capacity
            first = min(data.size, self.capacity - start)
            self._ring[start : start + first] = data[:first]
            if first < data.size:
                self._ring[: data.size - first] = data[first:]
            self._written += data.size
            depth = self._written - self._read
            if depth > self.max_depth:
                self.max_depth = depth
            return int(data.size)

    def end_of_reply(self) -> None:
        """The reply is complete: play what is buffered even if it is shorter than the start target."""
        with self._lock:
            if not self._discarding:
                self._complete = True

    def flush(self) -> None:
        """Barge-in: fade out within 5 ms on the next pull, drop everything, ignore pushes until new_reply()."""
        with self._lock:
            if self._playing:  # (when not playing, an earlier flush's fade may still be pending: keep it)
                count = min(self.fade_samples, self._written - self._read)
                block = self._read_block(count)
                # Down to zero over the next 5 ms of audio (fewer samples only if fewer are left), never
                # louder than a fade that is already under way.
                ramp = np.arange(count, 0, -1, dtype=np.float32) / np.float32(count + 1)
                block *= np.minimum(ramp, self._gains_from_here(count))
                self._tail[:count] = block
                self._tail_len = count
                self._tail_pos = 0
            self._read = self._written
            self._playing = False
            self._stop_mark = None
            self._complete = False
            self._discarding = True
            self._first_pending = False
            self._silence_event_pending = True

    def new_reply(self) -> None:
        """A new reply begins: accept pushes again and wait for the start target before playing it."""
        with self._lock:
            self._begin_reply()

    # ------------------------------------------------------------------ audio-thread side

    def pull(self, n: int) -> np.ndarray:
        """Exactly ``n`` float32 samples: reply audio where there is some, silence elsewhere. Never blocks long."""
        n = max(0, int(n))
        out = np.zeros(n, dtype=np.float32)
        with self._lock:
            pos = self._pull_tail(out)
            if pos < n:
                self._pull_reply(out, pos)
        return out

    def quiet(self) -> bool:
        """True when the next pull would be pure silence and raise no event: nothing buffered, no fade pending.

        The speaker asks this first, so that an idle device period costs no array work at all.
        """
        with self._lock:
            return (
                not self._playing
                and self._written == self._read
                and self._tail_pos >= self._tail_len
                and not self._silence_event_pending
                and not self._events
            )

    def take_events(self) -> int:
        """Return and clear the JitterEvents flags raised by pulls since the last call."""
        with self._lock:
            events, self._events = self._events, 0
        return events

    # ------------------------------------------------------------------ internals (lock held)

    def _read_block(self, count: int) -> np.ndarray:
        """Copy `count` samples from the read position as float32 (does not advance)."""
        out = np.empty(count, dtype=np.float32)
        self._read_into(out)
        return out

    def _read_into(self, out: np.ndarray) -> None:
        count = out.size
        start = self._read % self.capacity
        first = min(count, self.capacity - start)
        np.multiply(self._ring[start : start + first], _INT16_SCALE, out=out[:first])
        if first < count:
            np.multiply(self._ring[: count - first], _INT16_SCALE, out=out[first:])

    def _gains_from_here(self, count: int) -> np.ndarray:
        """Gains of the next `count` output samples: the fade-in after a (re)start and the fade-out before a stop."""
        gains = np.ones(count, dtype=np.float32)
        if self._fade_in_pos < self.fade_samples:
            ramp = self._fade_gain[self._fade_in_pos : self._fade_in_pos + count]
            gains[: ramp.size] = ramp
        if self._stop_mark is not None:
            left = self._stop_mark - self._read  # samples until silence, counting the first of these
            if left - count < self.fade_samples:
                remaining = np.arange(left, left - count, -1, dtype=np.float32)
                np.minimum(gains, np.clip(remaining / np.float32(self.fade_samples + 1), 0.0, 1.0), out=gains)
        return gains

    def _pull_tail(self, out: np.ndarray) -> int:
        pos = 0
        if self._tail_pos < self._tail_len:
            k = min(out.size, self._tail_len - self._tail_pos)
            out[:k] = self._tail[self._tail_pos : self._tail_pos + k]
            self._tail_pos += k
            pos = k
        if self._silence_event_pending and self._tail_pos >= self._tail_len:
            self._silence_event_pending = False
            self._events |= JitterEvents.SILENT_AFTER_FLUSH
        return pos

    def _pull_reply(self, out: np.ndarray, pos: int) -> None:
        want = out.size - pos
        available = self._written - self._read
        if want <= 0:
            return
        if not self._playing:
            if self._discarding or available == 0:
                return
            if available < self._target and not self._complete:
                return
            self._playing = True
            self._fade_in_pos = 0
        if self._stop_mark is None:
            # Decide where the sound must be silent, early enough to fade out over real audio.
            if self._complete:
                self._stop_mark, self._stop_is_end = self._written, True
            elif available < want + self.fade_samples:
                # Running dry mid-reply: stop at the end of this block, or after one fade length of the
                # reserve when blocks are shorter than a fade.
                self._stop_mark = self._read + min(available, max(want, self.fade_samples))
                self._stop_is_end = False
        count = want if self._stop_mark is None else max(0, min(want, self._stop_mark - self._read))
        if count:
            block = out[pos : pos + count]
            self._read_into(block)
            if self._fade_in_pos < self.fade_samples or self._stop_mark is not None:
                block *= self._gains_from_here(count)
                self._fade_in_pos = min(self.fade_samples, self._fade_in_pos + count)
            if self._first_pending and self._read + count > self._reply_start:
                self._first_pending = False
                self._events |= JitterEvents.FIRST_AUDIO
            self._read += count
        if self._stop_mark is not None and self._read >= self._stop_mark:
            self._stop()

    def _stop(self) -> None:
        self._playing = False
        self._stop_mark = None
        if self._stop_is_end:
            self._events |= JitterEvents.DRAINED
            if self._complete:
                # No new_reply() since the end: whatever is pushed next is a new reply.
                self._complete = False
                self._reply_start = self._read
                self._first_pending = True
        else:
            self.underruns += 1
            grown = int(math.ceil(self._target * UNDERRUN_TARGET_GROWTH))
            self._target = min(self._max_target, max(self._target, grown))

    # ------------------------------------------------------------------ read-only views

    @property
    def depth_samples(self) -> int:
        return self._written - self._read

    @property
    def depth_ms(self) -> float:
        return 1000.0 * self.depth_samples / self.rate

    @property
    def start_target_ms(self) -> float:
        return 1000.0 * self._target / self.rate

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def discarding(self) -> bool:
        return self._discarding

    def stats(self) -> JitterStats:
        with self._lock:
            depth = self._written - self._read
            return JitterStats(
                underruns=self.underruns,
                dropped_samples=self.dropped_samples,
                max_depth_samples=self.max_depth,
                depth_samples=depth,
                depth_ms=1000.0 * depth / self.rate,
                start_target_ms=1000.0 * self._target / self.rate,
            )
