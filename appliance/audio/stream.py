"""What the microphone and the speaker share: a PortAudio stream kept open, and getting it back.

Both open their device once and keep it open for the life of the daemon (no open latency, no pops),
and both are watched through the time of their last callback. Devices go away (a USB microphone is
pulled, a USB speaker loses power) and come back; `watch()` notices a stream that stopped calling
back, closes it, reports the device absent, and reopens it by name once it is there again, all
without restarting the process.

Both streams borrow the process's one PortAudio from a `PortAudioHost` (`appliance.audio.portaudio_host`),
which rescans the device list when a stream that cannot reopen asks and the rescan is worth it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from appliance.audio.devices import AudioDeviceError, DeviceInfo, pa_sample_format, quiet_stderr
from appliance.audio.portaudio_host import PortAudioHost

log = logging.getLogger(__name__)

#: No callback for this long (once the stream has been open twice as long) means the device is gone.
STALL_S = 2.0
#: The first retry after a loss is immediate; then every RETRY_S, growing by RETRY_GROWTH up to MAX_RETRY_S.
RETRY_S = 2.0
RETRY_GROWTH = 1.5
MAX_RETRY_S = 5.0

PresenceCallback = Callable[[bool, str], None]


class DeviceStream:
    """One always-open stream: its PortAudio host, the liveness clock, and presence (lost, retried, back).

    Subclasses say which device to open (`_prepare`) and handle the callbacks. Everything public runs on
    the loop except `start`, `stop`, `close` and `restart`, which block (use them at startup, or through
    `start_async`/`close_async`, or `asyncio.to_thread`).
    """

    #: "microphone" or "speaker", for messages
    kind = "device"
    #: input or output stream
    _output = False
    #: the subclass module's logger (tests and owners filter on it)
    _log = log
    #: the subclass's counters; `restarts` counts reopenings after a loss
    stats: Any

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        pa: Any = None,
        host: PortAudioHost | None = None,
        on_presence: PresenceCallback | None = None,
    ) -> None:
        if pa is not None and host is not None:
            raise ValueError("pass either pa= (an instance the caller owns) or host= (a shared PortAudioHost)")
        self._loop = loop
        self._owns_host = pa is None and host is None
        self._host = host if host is not None else PortAudioHost.borrowing(pa) if pa is not None else PortAudioHost()
        self._host._attach(self)
        self._stream: Any = None
        self._format: Any = None
        #: time.monotonic() of the latest PortAudio callback; the daemon's watchdog reads it.
        self.last_callback_at = 0.0
        #: on_presence(present, reason) runs on the loop once per change (lost, back); start() that finds the
        #: device reports nothing, start(allow_missing=True) that does not reports False.
        self.on_presence = on_presence
        self._wanted = False  # the owner wants the stream running (watch() restores it if not)
        self._present = False
        self._reported = True  # what on_presence last said: the device counts as there until shown otherwise
        self._failures = 0  # failed reopen attempts since the device went absent
        self._opened_at = 0.0
        self._lost_at = float("-inf")
        self._watchers = 0

    # ------------------------------------------------------------------ state

    @property
    def format(self) -> Any:
        """The format the stream is open with, or None while closed."""
        return self._format

    @property
    def running(self) -> bool:
        return self._stream is not None

    @property
    def present(self) -> bool:
        """The device is open and streaming; False before start(), while it is absent and after stop()."""
        return self._present

    @property
    def watching(self) -> bool:
        """A watch() coroutine is running for this stream."""
        return self._watchers > 0

    @property
    def host(self) -> PortAudioHost:
        return self._host

    def seconds_since_callback(self) -> float:
        return time.monotonic() - self.last_callback_at

    def healthy(self, within_s: float = STALL_S) -> bool:
        """For the daemon's watchdog: the stream called back within `within_s`, or the device is away and a
        watch() is bringing it back (an unplugged microphone is not a hung process; a restart would not help).

        True after stop() too: a stream stopped on purpose is nobody's problem.
        """
        if not self._wanted:
            return True
        if self._present:
            return self.seconds_since_callback() < within_s
        return self.watching

    # ------------------------------------------------------------------ lifecycle (blocking)

    def start(self, *, allow_missing: bool = False) -> Any:
        """Find the configured device by name, open it at a format it accepts and start it; returns the format.

        A device that is missing or refuses to open raises AudioDeviceError (one line saying what to check),
        unless `allow_missing`: then the stream stays absent, on_presence(False, why) is reported, None is
        returned, and watch() opens the device once it appears. Blocking (enumeration and open take
        0.1-0.5 s): call it at startup, via start_async() or on a worker thread.
        """
        with self._host.lock:
            if self._stream is not None and self._format is not None:
                return self._format
            try:
                fmt = self._bring_up()
            except AudioDeviceError as exc:
                if not allow_missing:
                    raise
                self._wanted = True
                self._set_absent(str(exc))
                self._failures = 1  # the first retry's failure is not news
                self._log.warning("%s unavailable: %s; waiting for it to appear", self.kind, exc)
                return None
            self._wanted = True
            self._log.info("%s", self._describe_open(fmt))
            return fmt

    def stop(self) -> None:
        """Stop and close the stream (the device is released); no more callbacks after this. Idempotent."""
        with self._host.lock:
            self._wanted = False
            self._present = False
            self._close_stream()

    def close(self) -> None:
        """stop(), and terminate PortAudio if this stream made its own host. Idempotent."""
        with self._host.lock:
            self.stop()
            self._host._detach(self)
            if self._owns_host:
                self._host.close()

    def restart(self) -> Any:
        """Close and reopen the stream now, rescanning first when the host can; returns the format.

        The other stream on a shared host pauses for the rescan. AudioDeviceError leaves the stream absent
        (watch() keeps trying).
        """
        with self._host.lock:
            self._close_stream()
            self._wanted = True
            if self._host.can_rescan:
                self._host.rescan(self)
            try:
                fmt = self._bring_up()
            except AudioDeviceError as exc:
                if self._present:
                    self._set_absent(str(exc))
                raise
            self.stats.restarts += 1
            self._log.info("%s reopened: %s", self.kind, self._describe_open(fmt))
            return fmt

    async def start_async(self, *, allow_missing: bool = True) -> Any:
        """start() on a worker thread, so the loop keeps running; by default a missing device does not raise."""
        return await asyncio.to_thread(self.start, allow_missing=allow_missing)

    async def close_async(self) -> None:
        """close() on a worker thread (closing a stream waits for PortAudio's thread; terminating can take long)."""
        await asyncio.to_thread(self.close)

    # ------------------------------------------------------------------ the watch (loop side)

    async def watch(
        self, stall_s: float = STALL_S, *, retry_s: float = RETRY_S, max_retry_s: float = MAX_RETRY_S
    ) -> None:
        """Keep the device up for as long as this runs (cancel it to end; it never returns by itself).

        A stream that has not called back for `stall_s` (the device was unplugged, or its driver wedged) is
        closed and reported absent; reopening by name is then tried at once and after that every `retry_s`,
        growing to `max_retry_s`, until it works and is reported. Blocking steps run on worker threads.
        """
        tick = min(0.25, stall_s / 4)
        delay = retry_s
        next_try = 0.0
        surprised = False  # one traceback per loss; repeats get one line
        self._watchers += 1
        try:
            while True:
                await asyncio.sleep(tick)
                try:
                    if not self._wanted:
                        delay, next_try = retry_s, 0.0
                        continue
                    if self._present:
                        if self._ended():
                            why = f"the {self.kind} stream ended by itself (unplugged?)"
                            await asyncio.to_thread(self._drop, why, stall_s)
                            delay, next_try = retry_s, 0.0
                        elif self._stalled(stall_s):
                            why = f"the {self.kind} delivered no audio for {self.seconds_since_callback():.1f} s (unplugged?)"
                            await asyncio.to_thread(self._drop, why, stall_s)
                            delay, next_try = retry_s, 0.0
                        continue
                    if time.monotonic() < next_try:
                        continue
                    if await asyncio.to_thread(self._retry):
                        delay, next_try, surprised = retry_s, 0.0, False
                    else:
                        next_try = time.monotonic() + delay
                        delay = min(max_retry_s, delay * RETRY_GROWTH)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # this task must outlive any surprise, or the device stays dead
                    if surprised:
                        self._log.warning("the %s watch failed again (%r); it carries on", self.kind, exc)
                    else:
                        self._log.exception("the %s watch failed; it carries on", self.kind)
                    surprised = True
                    next_try = time.monotonic() + delay
                    delay = min(max_retry_s, delay * RETRY_GROWTH)
        finally:
            self._watchers -= 1

    def _stalled(self, stall_s: float) -> bool:
        # A new stream gets twice as long: the ALSA pulse plugin fills its buffer in one burst of callbacks
        # and then calls back nothing for up to 1.8 s.
        now = time.monotonic()
        return now - self.last_callback_at > stall_s and now - self._opened_at > 2 * stall_s

    def _ended(self) -> bool:
        """PortAudio stopped the stream by itself, as it does when ALSA reports the device gone.

        Seen within a tick, where the stall check needs `stall_s`: a microphone pulled for a second and
        pushed back would otherwise look present while its stream is dead, and the next question is lost.
        """
        stream = self._stream
        if stream is None:
            return False
        try:
            return not stream.is_active()
        except OSError:  # closed meanwhile by a worker thread: _drop and _retry decide under the lock
            return False

    # ------------------------------------------------------------------ losing and regaining (worker threads)

    def _drop(self, reason: str, stall_s: float) -> None:
        """Close a stalled stream and report the device absent."""
        with self._host.lock:
            if not (self._wanted and self._present and (self._stalled(stall_s) or self._ended())):
                return  # stopped, already dropped, or it came back meanwhile
            self._close_stream()
            self._set_absent(reason)
            self._log.warning("%s lost: %s; reopening it as soon as it is back", self.kind, reason)

    def _retry(self) -> bool:
        """One attempt to bring an absent device back (rescanning when worth it); True when it is open."""
        with self._host.lock:
            if not self._wanted or self._present:
                return True
            try:
                if self._host.rescan_due(self):
                    self._host.rescan(self)
                fmt = self._bring_up()
            except AudioDeviceError as exc:
                self._failures += 1
                self.stats.reopen_failures += 1
                if self._failures == 1:
                    self._log.warning(
                        "could not reopen the %s (still unplugged?): %s; trying again every few seconds", self.kind, exc
                    )
                else:
                    self._log.debug("could not reopen the %s: %s", self.kind, exc)
                return False
            self.stats.restarts += 1
            self._log.info("%s is back: %s", self.kind, self._describe_open(fmt))
            return True

    def _pause(self) -> None:
        """For a rescan by the other stream: close, but stay present (lock held)."""
        self._close_stream()

    def _resume(self) -> None:
        """After a rescan: reopen by name; failing that, go absent (lock held)."""
        if not (self._wanted and self._present):
            return
        try:
            self._bring_up()
        except Exception as exc:  # noqa: BLE001 - anything here means "absent"; the watch keeps trying
            self._set_absent(f"could not reopen after a device rescan: {exc}")
            self._log.warning("%s lost in a device rescan: %s", self.kind, exc)

    def _bring_up(self) -> Any:
        """Find the device on the host's current list, open and start it; lock held. AudioDeviceError if not."""
        pa = self._host.pa()
        with quiet_stderr():  # PortAudio prints lines for every format probe and open a missing device refuses
            device, fmt = self._prepare(pa)
            self.last_callback_at = self._opened_at = time.monotonic()
            stream = self._open_stream(pa, device, fmt)
        self._stream = stream
        self._format = fmt
        try:
            stream.start_stream()
        except OSError as exc:
            self._close_stream()
            raise AudioDeviceError(f'cannot start {self.kind} "{device.name}": {exc}') from None
        self.last_callback_at = self._opened_at = time.monotonic()
        self._present = True
        self._failures = 0
        self._schedule_report(True, self._describe_open(fmt))
        return fmt

    def _set_absent(self, reason: str) -> None:
        self._lost_at = time.monotonic()
        self._present = False
        self._failures = 0
        self._schedule_report(False, reason)

    # ------------------------------------------------------------------ reporting (to the loop)

    def _schedule_report(self, present: bool, reason: str) -> None:
        try:
            self._loop.call_soon_threadsafe(self._report, present, reason)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _report(self, present: bool, reason: str) -> None:
        if present == self._reported:
            return
        self._reported = present
        callback = self.on_presence
        if callback is not None:
            try:
                callback(present, reason)
            except Exception:  # noqa: BLE001 - a faulty listener must not stop the watch
                self._log.exception("the %s presence handler failed", self.kind)
        if not present:
            self._went_absent()

    def _went_absent(self) -> None:
        """On the loop, once per loss, after on_presence: drop what can no longer be delivered."""

    # ------------------------------------------------------------------ subclass hooks and PortAudio calls

    def _prepare(self, pa: Any) -> tuple[DeviceInfo, Any]:
        """Find the configured device on `pa` and choose its format (AudioDeviceError if impossible)."""
        raise NotImplementedError

    def _describe_open(self, fmt: Any) -> str:
        return f'{self.kind} "{fmt.device.name}" open at {fmt.describe()}'

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[Any, int]:
        raise NotImplementedError

    def _open_stream(self, pa: Any, device: DeviceInfo, fmt: Any) -> Any:
        """Open (not start) the device at `fmt`, calling the subclass's `_callback` on PortAudio's thread.

        AudioDeviceError says what to check.
        """
        output = self._output
        direction = (
            {"output": True, "output_device_index": device.index}
            if output
            else {"input": True, "input_device_index": device.index}
        )
        try:
            with quiet_stderr():
                return pa.open(
                    format=pa_sample_format(fmt.sample_format),
                    channels=fmt.channels,
                    rate=fmt.rate,
                    frames_per_buffer=fmt.frames_per_buffer,
                    stream_callback=self._callback,
                    start=False,
                    **direction,
                )
        except (OSError, ValueError) as exc:
            raise AudioDeviceError(
                f'cannot open {self.kind} "{device.name}" at {fmt.describe()}: {exc}; '
                "is another program using it, or was it unplugged? (check with: fuser -v /dev/snd/*)"
            ) from None

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                if stream.is_active():
                    stream.stop_stream()  # returns after the last callback: the format can go after this
            except OSError:
                pass  # already stopped, or the device is gone: closing is all that is left
            try:
                stream.close()
            except OSError:
                pass
        self._format = None
        self._after_close()

    def _after_close(self) -> None:
        """Drop whatever the closed stream left behind (a subclass's queues)."""
