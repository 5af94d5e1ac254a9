"""One open stream of the virtual card: a clock thread that calls the stream callback once per buffer.

Each stream gets its own daemon thread, scheduled from `time.monotonic()` at start plus a whole number of
periods, so lateness never accumulates into drift. The card's `speed` shortens the periods (tests run at
4x). After a stall longer than a few periods the clock is re-based and the next callback carries
paInputOverflow / paOutputUnderflow, as a real card would report; the card's queued input is kept whole
rather than losing the stalled stretch. The audio itself comes from and goes to the card
(`_capture_block`, `_input_delivered`, `_record`): the stream only keeps time and speaks PyAudio.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.audio.pa_constants import (
    paAbort,
    paBadStreamPtr,
    paCanNotReadFromACallbackStream,
    paCanNotWriteToACallbackStream,
    paComplete,
    paContinue,
    paInputOverflow,
    paOutputUnderflow,
    paUnanticipatedHostError,
)

if TYPE_CHECKING:
    from appliance.audio.virtual_card import VirtualCard
    from appliance.audio.virtual_device import VirtualDevice

log = logging.getLogger(__name__)

#: PyAudio's stream callback: (in_data, frame_count, time_info, status) -> (out_data, paContinue/...).
StreamCallback = Callable[[bytes | None, int, dict[str, float], int], tuple[Any, int]]

#: A stall longer than this many periods re-bases the clock (a real card's ring buffer would overrun).
MAX_LAG_PERIODS = 5
#: stop_stream()/close()/terminate() wait at most this long for a callback in progress.
JOIN_TIMEOUT_S = 2.0


class VirtualStream:
    """One open stream of a VirtualCard; the PyAudio Stream methods the audio path needs."""

    def __init__(
        self,
        card: VirtualCard,
        device: VirtualDevice,
        frames_per_buffer: int,
        callback: StreamCallback,
    ) -> None:
        self._card = card
        self.device = device
        self.frames_per_buffer = frames_per_buffer
        self._callback = callback
        self._is_input = device.direction == "input"
        self._bytes_per_block = frames_per_buffer * device.channels * device.dtype.itemsize
        self._period_s = frames_per_buffer / device.rate  # on the card's clock
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._running = False  # started and not stopped (PyAudio's _is_running)
        self._active = False  # the thread is calling back (False once the callback completes or aborts)
        self._closed = False
        self._lost = False  # its device was unplugged: it never calls back again
        #: The exception a callback raised (the stream aborted then, as PyAudio's does).
        self.callback_error: BaseException | None = None

    # -- PyAudio's Stream API

    def start_stream(self) -> None:
        self._check_open()
        if self._lost:
            raise OSError(paUnanticipatedHostError, "Unanticipated host error")
        if self._running:
            return
        self._stop = threading.Event()
        self._running = True
        self._active = True
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name=f"{self.device.name}-clock", daemon=True
        )
        self._thread.start()

    def stop_stream(self) -> None:
        """Stop calling back; returns after the callback in progress (if any) has finished."""
        self._check_open()
        if not self._running:
            return
        self._halt()

    def is_active(self) -> bool:
        self._check_open()
        return self._active

    def is_stopped(self) -> bool:
        self._check_open()
        return not self._running

    def close(self) -> None:
        """Stop and release the device. Idempotent."""
        if self._closed:
            return
        self._halt()
        self._closed = True
        self._card._release(self)

    def get_input_latency(self) -> float:
        self._check_open()
        return self._period_s if self._is_input else 0.0

    def get_output_latency(self) -> float:
        self._check_open()
        return 0.0 if self._is_input else self._period_s

    def get_time(self) -> float:
        self._check_open()
        return self._card.device_time()

    def get_cpu_load(self) -> float:
        self._check_open()
        return 0.0

    def read(self, num_frames: int, exception_on_overflow: bool = True) -> bytes:
        raise OSError(paCanNotReadFromACallbackStream, "Can not read from a callback stream")

    def write(self, frames: bytes, num_frames: int | None = None, exception_on_underflow: bool = False) -> None:
        raise OSError(paCanNotWriteToACallbackStream, "Can not write to a callback stream")

    # -- internals

    def _lose(self) -> None:
        """The device was unplugged: stop calling back and turn inactive, but stay "running" and open.

        That is what PortAudio's stream does when ALSA reports the device gone; only closing it is left.
        """
        self._lost = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
        self._active = False

    def _check_open(self) -> None:
        if self._closed:
            raise OSError(paBadStreamPtr, "Stream closed")

    def _halt(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning(
                    "the %s stream callback did not return within %.0f s", self.device.name, JOIN_TIMEOUT_S
                )
        self._thread = None
        self._running = False
        self._active = False

    def _run(self, stop: threading.Event) -> None:
        """Call back once per period on the card's clock until stopped, completed or aborted."""
        period = self._period_s / self._card.speed
        lead = 1 if self._is_input else 0  # an input block is ready once it has been heard
        gap_flag = paInputOverflow if self._is_input else paOutputUnderflow
        started = time.monotonic()
        done = 0
        status = 0
        try:
            while not stop.is_set():
                due = started + (done + lead) * period
                now = time.monotonic()
                if now < due:
                    if stop.wait(due - now):
                        break
                elif now - due > MAX_LAG_PERIODS * period:
                    started = now - (done + lead) * period
                    status = gap_flag
                if not self._cycle(status):
                    break
                status = 0
                done += 1
        finally:
            self._active = False

    def _cycle(self, status: int) -> bool:
        """One callback; False when the stream ends (paComplete, paAbort, an exception or a malformed reply)."""
        card = self._card
        frames = self.frames_per_buffer
        now = card.device_time()
        if self._is_input:
            in_data: bytes | None = card._capture_block(frames).tobytes()
            time_info = {"input_buffer_adc_time": now - self._period_s, "current_time": now}
        else:
            in_data = None
            time_info = {"current_time": now, "output_buffer_dac_time": now + self._period_s}
        try:
            out_data, flag = self._callback(in_data, frames, time_info, status)
            data = b"" if self._is_input or out_data is None else memoryview(out_data).cast("B").tobytes()
        except Exception as exc:  # noqa: BLE001 - PyAudio aborts the stream on a raising callback; so do we
            self.callback_error = exc
            log.error("the %s stream callback failed; the stream stopped", self.device.name, exc_info=True)
            return False
        if self._is_input:
            card._input_delivered(frames)
            return flag == paContinue
        if flag == paAbort:
            return False
        if len(data) < self._bytes_per_block:
            # PyAudio pads a short block with silence and treats it as the last one.
            data += bytes(self._bytes_per_block - len(data))
            flag = paComplete
        block = np.frombuffer(data, dtype=self.device.dtype, count=self._bytes_per_block // self.device.dtype.itemsize)
        card._record(block.reshape(-1, self.device.channels).copy())
        return flag == paContinue
