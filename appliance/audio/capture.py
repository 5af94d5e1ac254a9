"""The microphone: one PortAudio input stream, open for as long as the daemon runs.

Keeping the stream open means no open latency and no pop at the start of a turn,
and it lets the pre-roll hold audio from before the button press. Whatever the
device delivers (int16/int32, any channel count, any rate) is turned into the
pipeline's unit, 20 ms frames of 16 kHz mono s16le, on PortAudio's thread; the
frames reach the asyncio loop through a bounded deque and one pending wake-up.
A microphone that is unplugged and plugged back is reopened by `watch()` (see
`appliance.audio.stream`), and the same frame callback carries on.

Gated (with `on_preroll`, as the daemon runs it): the box is idle almost all its
life, so between turns the callback only keeps the raw device chunks of the last
`[audio] preroll_ms` (`RawPreroll`): no conversion, no wake-up of the loop. `listen()`
opens the gate: the next callback converts that raw backlog and hands over its
newest `preroll_ms` as pre-roll frames, then live frames follow; `idle()` closes it. A stream that
closes (`stop()`, as a mute does, or a lost device) takes its raw pre-roll and its queued frames with
it: a reopened stream's first pre-roll holds only what it heard since it opened. While it is
open, `[audio] noise_suppression` / `auto_gain` clean every frame, pre-roll included, before anyone
sees it (`appliance.audio.cleanup`).
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

from appliance.audio.cleanup import Cleanup, Passthrough, cleanup_for
from appliance.audio.devices import (
    PA_CONTINUE,
    PA_INPUT_OVERFLOW,
    DeviceInfo,
    InputFormat,
    choose_input_format,
    find_device,
)
from appliance.audio.frames import FRAME_BYTES, FRAME_MS, RATE, ms_to_frames
from appliance.audio.preroll import RawPreroll
from appliance.audio.resample import StreamResampler, int32_to_int16, select_or_mix_channels
from appliance.audio.portaudio_host import PortAudioHost
from appliance.audio.stream import DeviceStream, PresenceCallback

log = logging.getLogger(__name__)

#: Frames waiting for the loop: 1 s. If the loop falls further behind, the oldest go (counted).
HANDOFF_FRAMES = 50
#: At most one warning per this many seconds about overflows and dropped frames.
WARN_INTERVAL_S = 10.0
#: Raw audio kept beyond the pre-roll when gated: the resampler's start-up transient (a few ms) falls in
#: it and is thrown away, so the pre-roll itself is converted exactly as a running stream would be.
WARMUP_MS = 40


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
        # already 16 kHz mono s16le (a sound server converted it): only slicing is left to do
        self._passthrough = fmt.rate == RATE and fmt.channels == 1 and fmt.sample_format == "int16"
        self._pending = bytearray()

    def convert(self, data: bytes) -> list[bytes]:
        """Convert one chunk; return the frames it completed (the remainder waits for the next chunk)."""
        usable = len(data) - len(data) % (self._dtype.itemsize * self._channels)
        if usable <= 0:
            return []
        if self._passthrough:
            self._pending += memoryview(data)[:usable]
            return self._whole_frames()
        interleaved = np.frombuffer(data, dtype=self._dtype, count=usable // self._dtype.itemsize)
        mono = select_or_mix_channels(interleaved.reshape(-1, self._channels), self._channel)
        if self._is_int32:
            mono = int32_to_int16(mono)  # rounds and saturates; I2S mics put the audio in the top bits
        self._pending += self._resampler.process(mono).astype("<i2", copy=False).tobytes()
        return self._whole_frames()

    def _whole_frames(self) -> list[bytes]:
        whole = len(self._pending) - len(self._pending) % FRAME_BYTES
        if whole == 0:
            return []
        chunk = bytes(self._pending[:whole])
        del self._pending[:whole]
        return [chunk[i : i + FRAME_BYTES] for i in range(0, whole, FRAME_BYTES)]


class PrerollGate:
    """Between turns, raw device chunks; during them, frames. Sans-I/O: PortAudio's thread calls `chunk`.

    `chunk(data, gen)` is told, for every device chunk, whether the gate is open (the listen generation,
    a number that grows with every `Capture.listen()`) or closed (None). Closed, it only keeps the chunk in
    the raw pre-roll and returns nothing. On the first open chunk it converts the raw backlog with a fresh
    converter and returns its newest `preroll_frames` frames marked as pre-roll (the older ones absorbed the
    resampler's start-up), then the chunk's own frames. A new generation while already open (a press during
    a turn) gets the newest frames made so far as its pre-roll, as a ring of converted frames would.
    `cleanup` processes every frame converted while open, in order; it starts afresh when the gate opens
    and goes on unbroken through a press during a turn (the audio was, too).
    Returns (generation, is_preroll, frame) entries, oldest first.
    """

    def __init__(
        self, fmt: InputFormat, input_channel: int, preroll_frames: int, cleanup: Cleanup | Passthrough | None = None
    ) -> None:
        self._fmt = fmt
        self._cleanup = cleanup if cleanup is not None else Passthrough()
        self._channel = input_channel
        self._preroll_frames = max(0, preroll_frames)
        bytes_per_ms = fmt.rate * fmt.channels * fmt.bytes_per_sample / 1000
        warmup_ms = WARMUP_MS + self._cleanup.warmup_ms  # the cleanup, too, settles before the pre-roll
        self._raw = RawPreroll(int((self._preroll_frames * FRAME_MS + warmup_ms) * bytes_per_ms))
        self._recent: collections.deque[bytes] = collections.deque(maxlen=self._preroll_frames)
        self._converter: FrameConverter | None = None  # None: closed, the raw ring is all there is
        self._served = 0  # the generation whose pre-roll went out

    def chunk(self, data: bytes, gen: int | None) -> list[tuple[int, bool, bytes]]:
        if gen is None:
            self._converter = None
            self._raw.push(data)
            return []
        entries: list[tuple[int, bool, bytes]] = []
        converter = self._converter
        if converter is None:
            converter = self._converter = FrameConverter(self._fmt, self._channel)
            self._cleanup.reset()  # it has not heard the room since the last turn
            backlog = self._cleanup.process(converter.convert(self._raw.take()))
            self._recent.clear()
            self._recent.extend(backlog[max(0, len(backlog) - self._preroll_frames):] if self._preroll_frames else [])
            self._served = gen
            entries.extend((gen, True, frame) for frame in self._recent)
        elif gen != self._served:
            self._served = gen
            entries.extend((gen, True, frame) for frame in self._recent)
        self._raw.push(data)  # so that a press soon after this turn still finds its pre-roll
        frames = self._cleanup.process(converter.convert(data))
        self._recent.extend(frames)
        entries.extend((gen, False, frame) for frame in frames)
        return entries


class Capture(DeviceStream):
    """The always-open microphone; `on_frame(frame)` runs on `loop` for every 20 ms frame, in order.

    The same `on_frame` keeps being called after the microphone was lost and came back (see
    `DeviceStream.watch`); frames simply pause while it is absent. With `on_preroll`, frames flow only
    between `listen()` and `idle()` (see the module docstring), each listen starting with pre-roll frames
    passed to `on_preroll`.
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
        on_preroll: Callable[[bytes], None] | None = None,
    ) -> None:
        super().__init__(loop, pa=pa, host=host, on_presence=on_presence)
        self._cfg = audio_cfg
        self._on_frame = on_frame
        self._on_preroll = on_preroll
        self._converter: FrameConverter | None = None
        # gated only: that is the daemon's turn path; made here, on the loop, so a missing library warns once
        self._cleanup = cleanup_for(audio_cfg) if on_preroll is not None else Passthrough()
        #: (listen generation, is pre-roll, frame); see _drain for why frames carry their generation
        self._queue: collections.deque[tuple[int, bool, bytes]] = collections.deque(maxlen=HANDOFF_FRAMES)
        # The gate. Written on the loop (listen/idle), read by PortAudio's thread: single attribute
        # stores, so the callback sees either the old or the new value, and acts on it next period.
        self._gated = on_preroll is not None
        self._gate_open = not self._gated
        self._gate_gen = 0
        self._gate: PrerollGate | None = None  # PortAudio's thread only, made for each opened format
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
        channel = int(self._cfg.input_channel)
        if self._gated:
            self._gate = PrerollGate(fmt, channel, ms_to_frames(float(self._cfg.preroll_ms)), self._cleanup)
        else:
            self._converter = FrameConverter(fmt, channel)
        return device, fmt

    def _after_close(self) -> None:
        self._queue.clear()
        # a reopened stream starts with no backlog (`_prepare` makes a new gate): audio from before a
        # mute or a loss is not this stream's past, and must never reach a turn
        self._gate = None

    # -- the gate (loop)

    def listen(self) -> None:
        """Start handing over frames: first the last `preroll_ms` (to on_preroll), then live ones."""
        self._gate_gen += 1
        self._gate_open = True

    def idle(self) -> None:
        """Stop handing over frames; only the raw pre-roll is kept from now on."""
        self._gate_open = False

    @property
    def listening(self) -> bool:
        return self._gate_open

    # -- PortAudio's thread

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[None, int]:
        """Convert, queue, wake the loop once. Runs on PortAudio's thread: no blocking, no logging."""
        self.last_callback_at = time.monotonic()
        self.stats.callbacks += 1
        overflowed = bool(status & self._overflow_flag)
        if overflowed:
            self.stats.overflows += 1
        queued = self._queue_entries(self._entries(in_data)) if in_data else False
        if (queued or overflowed) and not self._drain_pending:
            self._drain_pending = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass
        return None, self._continue

    def _entries(self, data: bytes) -> list[tuple[int, bool, bytes]]:
        if self._gated:
            gate = self._gate
            return gate.chunk(data, self._gate_gen if self._gate_open else None) if gate is not None else []
        converter = self._converter
        return [(0, False, frame) for frame in converter.convert(data)] if converter is not None else []

    def _queue_entries(self, entries: list[tuple[int, bool, bytes]]) -> bool:
        queue = self._queue
        for entry in entries:
            if len(queue) == queue.maxlen:
                self.stats.dropped_frames += 1
            queue.append(entry)
        return bool(entries)

    # -- the loop's side of the handoff

    def _drain(self) -> None:
        # Clear the flag before emptying the queue: a frame appended meanwhile schedules another drain.
        self._drain_pending = False
        queue = self._queue
        while queue and self._stream is not None:
            try:
                gen, preroll, frame = queue.popleft()
            except IndexError:
                break
            if self._gated and not (self._gate_open and gen == self._gate_gen):
                continue  # made for a listen that has ended since: its turn is over
            self.stats.frames += 1
            if preroll and self._on_preroll is not None:
                self._on_preroll(frame)
            else:
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
