"""The last few hundred milliseconds before a button press.

People start talking as they press, and the first syllable would be lost if the
turn began at the press.  The microphone stays open all the time, so every frame
also goes into this ring; a press starts the turn with the ring's contents
(`[audio] preroll_ms`, 300 ms by default).  A deque with `maxlen` drops the
oldest frame on overflow, so the ring never grows and never blocks.
"""

from __future__ import annotations

from collections import deque

from appliance.audio.frames import FRAME_BYTES, ms_to_frames


class PrerollRing:
    """Keeps the newest `capacity_frames` 20 ms frames; older ones fall out."""

    def __init__(self, capacity_frames: int) -> None:
        if capacity_frames < 0:
            raise ValueError(f"pre-roll capacity must be 0 or more frames, got {capacity_frames}")
        self._frames: deque[bytes] = deque(maxlen=capacity_frames)

    @classmethod
    def from_ms(cls, preroll_ms: float) -> PrerollRing:
        """A ring covering `preroll_ms` (e.g. `[audio] preroll_ms`), rounded up to whole frames."""
        return cls(ms_to_frames(preroll_ms))

    @property
    def capacity(self) -> int:
        return self._frames.maxlen or 0

    def push(self, frame: bytes) -> None:
        """Add the newest frame, dropping the oldest when full."""
        if len(frame) != FRAME_BYTES:
            raise ValueError(
                f"pre-roll frames must be {FRAME_BYTES} bytes (20 ms of 16 kHz mono s16le), got {len(frame)}"
            )
        self._frames.append(bytes(frame))

    def snapshot(self) -> list[bytes]:
        """The frames held now, oldest first; the ring itself is left as it is."""
        return list(self._frames)

    def clear(self) -> None:
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)

    def __repr__(self) -> str:
        return f"PrerollRing({len(self)}/{self.capacity} frames)"


class RawPreroll:
    """The newest device chunks, exactly as PortAudio delivered them, covering at least `capacity_bytes`.

    The microphone keeps this between turns instead of converted frames: storing a chunk is one deque
    append of the buffer PortAudio handed over, so an idle microphone costs no resampling and no wake-up
    of the event loop. Only a press pays for converting the last few hundred milliseconds. Runs on
    PortAudio's thread alone; the loop never touches it.
    """

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"raw pre-roll capacity must be 0 or more bytes, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._chunks: deque[bytes] = deque()
        self._size = 0

    def push(self, chunk: bytes) -> None:
        """Keep `chunk`; drop the oldest chunks that are no longer needed to cover the capacity."""
        self._chunks.append(chunk)
        self._size += len(chunk)
        chunks = self._chunks
        while chunks and self._size - len(chunks[0]) >= self.capacity_bytes:
            self._size -= len(chunks.popleft())

    def take(self) -> bytes:
        """Everything held, oldest first, as one buffer; the ring is left empty."""
        data = b"".join(self._chunks)
        self.clear()
        return data

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0

    def __len__(self) -> int:
        """Bytes held."""
        return self._size
