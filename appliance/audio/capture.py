"""The microphone: one PortAudio input stream, open for as long as the daemon runs.

Keeping the stream open means no open latency and no pop at the start of a turn,
and it lets the pre-roll hold audio from before the button press. Whatever the
device delivers (int16/int32, any channel count, any rate) is turned into the
pipeline's unit, 20 ms frames of 16 kHz mono s16le, on PortAudio's thread; the
frames reach the asyncio loop through a bounded deque and one pending wake-up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.audio.devices import (
    PA_CONTINUE,
    PA_INPUT_OVERFLOW,
    AudioDeviceError,
    InputFormat,
    choose_input_format,
    find_device,
    open_pyaudio,
)
from appliance.audio.frames import FRAME_BYTES, RATE
from appliance.audio.resample import StreamResampler, int32_to_int16, select_or_mix_channels
from appliance.audio.stream import DeviceStream

log = logging.getLogger(__name__)

#: Frames waiting for the loop: 1 s. If the loop falls further behind, the oldest go (counted).
HANDOFF_FRAMES = 50
#: At most one warning per this many seconds about overflows and dropped frames.
WARN_INTERVAL_S = 10.0
#: Restart backoff after a stalled stream: 1, 2, 4 ... capped here.
MAX_RESTART_DELAY_S = 30.0


@dataclass
class CaptureStats:
    """Counters since the Capture was created (they survive restarts)."""

    frames: int = 0  # frames handed to on_frame
    callbacks: int = 0  # PortAudio callbacks received
    overflows: int = 0  # callbacks flagged paInputOverflow (the device lost samples)
    dropped_frames: int = 0  # frames discarded because the loop did not drain in time
    restarts: int = 0  # successful reopenings after the stream stalled or died


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
    """The always-open microphone; `on_frame(frame)` runs on `loop` for every 20 ms frame, in order."""

    def __init__(
        self,
        audio_cfg: Any,
        on_frame: Callable[[bytes], None],
        loop: asyncio.AbstractEventLoop,
        *,
        pa: Any = None,
    ) -> None:
        super().__init__(pa)
        self._cfg = audio_cfg
        self._on_frame = on_frame
        self._loop = loop
        self._converter: FrameConverter | None = None
        self._wanted = False  # the stream should be running (watch() restores it if not)
        self._queue: collections.deque[bytes] = collections.deque(maxlen=HANDOFF_FRAMES)
        self._drain_pending = False
        # start/stop/restart may run on a worker thread (watch() reopens off the loop): one at a time
        self._lifecycle = threading.RLock()
        self._overflow_flag = 0
        self._continue = 0
        self.stats = CaptureStats()
        self._warned_at = -WARN_INTERVAL_S
        self._warned_overflows = 0
        self._warned_drops = 0

    # -- lifecycle (loop side)

    def start(self) -> InputFormat:
        """Find the configured microphone, open it at a format it accepts and start streaming.

        Blocking (device enumeration and open take 0.1-0.5 s); call it at startup or via asyncio.to_thread.
        """
        with self._lifecycle:
            return self._start()

    def _start(self) -> InputFormat:
        if self._stream is not None and self._format is not None:
            return self._format
        if self._pa is None:
            self._pa = open_pyaudio()
        device = find_device(self._pa, self._cfg.input_device, direction="input")
        fmt = choose_input_format(self._pa, device, self._cfg)
        self._overflow_flag = PA_INPUT_OVERFLOW
        self._continue = PA_CONTINUE
        self._converter = FrameConverter(fmt, int(self._cfg.input_channel))
        self.last_callback_at = time.monotonic()
        stream = self._open_stream(device, fmt, output=False)
        self._stream = stream
        self._format = fmt
        self._wanted = True
        try:
            stream.start_stream()
        except OSError as exc:
            self._close_stream()
            raise AudioDeviceError(f'cannot start microphone "{device.name}": {exc}') from None
        log.info('microphone "%s" open at %s', device.name, fmt.describe())
        return fmt

    def stop(self) -> None:
        """Stop and close the stream; after this returns on_frame is not called again. Idempotent."""
        with self._lifecycle:
            self._wanted = False
            self._close_stream()

    def close(self) -> None:
        """stop(), and terminate the PyAudio instance if this Capture created it."""
        with self._lifecycle:
            self.stop()
            self._forget_pa()

    def restart(self) -> InputFormat:
        """Reopen the stream from scratch (after an unplug); a PyAudio we own is recreated to rescan devices."""
        with self._lifecycle:
            self._close_stream()
            self._forget_pa()
            fmt = self._start()
            self.stats.restarts += 1
            return fmt

    def _after_close(self) -> None:
        self._queue.clear()

    async def watch(self, stall_s: float = 2.0) -> None:
        """Run forever: when no callback came for `stall_s` while the stream should run, reopen it with backoff.

        Reopening runs on a worker thread so the loop (network, playback) keeps going meanwhile.
        """
        delay = 1.0
        stalled = False
        while True:
            await asyncio.sleep(min(0.5, stall_s / 4))
            if not self._wanted or self.seconds_since_callback() < stall_s:
                if stalled and self._wanted:
                    log.info("microphone delivers audio again")
                stalled = False
                delay = 1.0
                continue
            if not stalled:
                log.warning(
                    "microphone delivered no audio for %.1f s (unplugged?); reopening it", self.seconds_since_callback()
                )
                stalled = True
            try:
                await asyncio.to_thread(self.restart)
            except AudioDeviceError as exc:  # e.g. still unplugged: keep trying, it may come back
                log.warning("could not reopen the microphone: %s; next try in %.0f s", exc, delay)
            except Exception:  # this task must outlive any surprise, or the microphone stays dead
                log.exception("could not reopen the microphone; next try in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY_S)

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
