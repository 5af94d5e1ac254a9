"""The microphone: one PortAudio input stream, open for as long as the daemon runs.

Keeping the stream open means no open latency and no pop at the start of a turn,
and it lets the pre-roll hold audio from before the button press. Whatever the
device delivers (int16/int32, any channel count, any rate) is turned into the
pipeline's unit, 20 ms frames of 16 kHz mono s16le, on PortAudio's thread; the
frames reach the asyncio loop through a bounded deque and one pending wake-up.
A microphone that is unplugged and plugged back is reopened by `watch()` (see
`appliance.audio.stream`), and the same frame callback carries on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.audio.devices import (
    PA_CONTINUE,
    PA_INPUT_OVERFLOW,
    DeviceInfo,
    InputFormat,
    choose_input_format,
    find_device,
)
from appliance.audio.frames import FRAME_BYTES, RATE
from appliance.audio.resample import StreamResampler, int32_to_int16, select_or_mix_channels
from appliance.audio.portaudio_host import PortAudioHost
from appliance.audio.stream import DeviceStream, PresenceCallback

log = logging.getLogger(__name__)

#: Frames waiting for the loop: 1 s. If the loop falls further behind, the oldest go (counted).
HANDOFF_FRAMES = 50
#: At most one warning per this many seconds about overflows and dropped frames.
WARN_INTERVAL_S = 10.0


@dataclass
class CaptureStats:
    """Counters since the Capture was created (they survive restarts)."""

    frames: int = 0  # frames handed to on_frame
    callbacks: int = 0  # PortAudio callbacks received
    overflows: int = 0  # callbacks flagged paInputOverflow (the device lost samples)
    dropped_frames: int = 0  # frames discarded because the loop did not drain in time
    restarts: int = 0  # successful reopenings after the microphone was lost (or restart())
    reopen_failures: int = 0  # attempts to reopen a lost microphone that failed (it was still away)


class FrameConverter:
    """Raw device bytes -> exact 640-byte frames of 16 kHz mono s16le; keeps state across chunks."""

    def __init__(self, fmt: InputFormat, input_channel: int) -> None:
        self._dtype = np.dtype("<i2" if fmt.sample_format == "int16" else "<i4")
        self._channels = fmt.channels
        self._channel = None if input_channel < 0 else input_channel
        self._is_int32 = fmt.sample_format == "int32"
        self._resampler = StreamResampler(fmt.rate, RATE)
        self._pending = bytearray()

    def convert(self, data: bytes) -> list[bytes]:
        """Convert one chunk; return the frames it completed (the remainder waits for the next chunk)."""
        usable = len(data) - len(data) % (self._dtype.itemsize * self._channels)
        if usable <= 0:
            return []
        interleaved = np.frombuffer(data, dtype=self._dtype, count=usable // self._dtype.itemsize)
        mono = select_or_mix_channels(interleaved.reshape(-1, self._channels), self._channel)
        if self._is_int32:
            mono = int32_to_int16(mono)  # rounds and saturates; I2S mics put the audio in the top bits
        self._pending += self._resampler.process(mono).astype("<i2", copy=False).tobytes()
        whole = len(self._pending) - len(self._pending) % FRAME_BYTES
        if whole == 0:
            return []
        chunk = bytes(self._pending[:whole])
        del self._pending[:whole]
        return [chunk[i : i + FRAME_BYTES] for i in range(0, whole, FRAME_BYTES)]


class Capture(DeviceStream):
    """The always-open microphone; `on_frame(frame)` runs on `loop` for every 20 ms frame, in order.

    The same `on_frame` keeps being called after the microphone was lost and came back (see
    `DeviceStream.watch`); frames simply pause while it is absent.
    """

    kind = "microphone"
    _output = False
    _log = log

    def __init__(
        self,
        audio_cfg: Any,
        on_frame: Callable[[bytes], None],
        loop: asyncio.AbstractEventLoop,
        *,
        pa: Any = None,
        host: PortAudioHost | None = None,
        on_presence: PresenceCallback | None = None,
    ) -> None:
        super().__init__(loop, pa=pa, host=host, on_presence=on_presence)
        self._cfg = audio_cfg
        self._on_frame = on_frame
        self._converter: FrameConverter | None = None
        self._queue: collections.deque[bytes] = collections.deque(maxlen=HANDOFF_FRAMES)
        self._drain_pending = False
        self._overflow_flag = 0
        self._continue = 0
        self.stats = CaptureStats()
        self._warned_at = -WARN_INTERVAL_S
        self._warned_overflows = 0
        self._warned_drops = 0

    def start(self, *, allow_missing: bool = False) -> InputFormat | None:
        """Find the configured microphone, open it at a format it accepts and start streaming.

        See `DeviceStream.start` for `allow_missing`. Blocking (0.1-0.5 s): at startup, or via start_async().
        """
        return super().start(allow_missing=allow_missing)

    def _prepare(self, pa: Any) -> tuple[DeviceInfo, InputFormat]:
        device = find_device(pa, self._cfg.input_device, direction="input")
        fmt = choose_input_format(pa, device, self._cfg)
        self._overflow_flag = PA_INPUT_OVERFLOW
        self._continue = PA_CONTINUE
        self._converter = FrameConverter(fmt, int(self._cfg.input_channel))
        return device, fmt

    def _after_close(self) -> None:
        self._queue.clear()

    # -- PortAudio's thread

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[None, int]:
        """Convert, queue, wake the loop once. Runs on PortAudio's thread: no blocking, no logging."""
        self.last_callback_at = time.monotonic()
        self.stats.callbacks += 1
        overflowed = bool(status & self._overflow_flag)
        if overflowed:
            self.stats.overflows += 1
        converter = self._converter
        frames = converter.convert(in_data) if (in_data and converter is not None) else []
        queue = self._queue
        for frame in frames:
            if len(queue) == queue.maxlen:
                self.stats.dropped_frames += 1
            queue.append(frame)
        if (frames or overflowed) and not self._drain_pending:
            self._drain_pending = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass
        return None, self._continue

    # -- the loop's side of the handoff

    def _drain(self) -> None:
        # Clear the flag before emptying the queue: a frame appended meanwhile schedules another drain.
        self._drain_pending = False
        queue = self._queue
        while queue and self._stream is not None:
            try:
                frame = queue.popleft()
            except IndexError:
                break
            self.stats.frames += 1
            self._on_frame(frame)
        self._maybe_warn()

    def _maybe_warn(self) -> None:
        overflows = self.stats.overflows - self._warned_overflows
        drops = self.stats.dropped_frames - self._warned_drops
        if not (overflows or drops):
            return
        now = time.monotonic()
        if now - self._warned_at < WARN_INTERVAL_S:
            return
        self._warned_at = now
        self._warned_overflows += overflows
        self._warned_drops += drops
        log.warning(
            "microphone audio had gaps: %d input overflow(s), %d frame(s) dropped before processing "
            "(the system is too busy to keep up)",
            overflows,
            drops,
        )
