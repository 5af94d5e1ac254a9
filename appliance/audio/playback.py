"""The speaker: one PortAudio output stream, open (and playing silence) for as long as the daemon runs.

Keeping the stream open means the first reply after a quiet hour starts as fast as the tenth one, and an
amplifier never pops from being switched on and off. Reply audio (24 kHz s16le from the Live API) is
resampled to the device rate on the event loop and put into a `JitterBuffer`; PortAudio's thread pulls a
block every device period, mixes in any earcon, applies the software volume with a ramp and hands int16
(or int32 for S32-only I2S devices) to the card, duplicated to every channel if the device is not mono.

Threads: everything public runs on the event loop, except `_callback`, which runs on PortAudio's thread and
never blocks, logs or raises. Events go back to the loop through a bounded deque and at most one pending
`call_soon_threadsafe` (a flag), not one wake-up per block.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.audio.devices import (
    PA_CONTINUE,
    PA_OUTPUT_UNDERFLOW,
    AudioDeviceError,
    DeviceInfo,
    find_device,
    open_pyaudio,
    pa_sample_format,
)
from appliance.audio.earcons import earcon
from appliance.audio.stream import DeviceStream
from appliance.audio.jitter import JitterBuffer, JitterEvents
from appliance.audio.resample import StreamResampler
from appliance.audio.volume import GainRamp, VolumeStore, initial_level, validate_level

__all__ = ["REPLY_RATE", "OutputFormat", "Player", "PlayerEvents", "PlayerStats"]

log = logging.getLogger(__name__)

REPLY_RATE = 24000  # the Live API's output audio
PERIOD_MS = 20  # one device period: the flush-to-silence bound is this plus one 20 ms frame
FALLBACK_RATES = (48000, 44100)
EARCON_MIN_LEVEL = 25  # earcons stay audible at low volume (and at 0): a silent error is worse than a loud one
MAX_EARCON_VOICES = 4
_EVENT_QUEUE = 32


@dataclass(frozen=True)
class OutputFormat:
    """How the speaker stream is open."""

    device: DeviceInfo
    rate: int
    channels: int
    sample_format: str  # "int16", or "int32" for devices that take nothing else
    frames_per_buffer: int

    @property
    def period_ms(self) -> float:
        return 1000.0 * self.frames_per_buffer / self.rate

    def describe(self) -> str:
        return f"{self.rate} Hz, {self.channels} ch, {self.sample_format}, {self.period_ms:.0f} ms periods"


@dataclass
class PlayerEvents:
    """Callbacks the owner sets; each runs on the event loop with the time.monotonic() of the device callback.

    on_first_audio: the first sample of a reply was handed to the device (latency metrics).
    on_drained: a reply marked with end_of_reply() has been handed out to its last sample.
    on_silent_after_flush: after flush(), the fade-out has been handed out; only silence follows.
    """

    on_first_audio: Callable[[float], None] | None = None
    on_drained: Callable[[float], None] | None = None
    on_silent_after_flush: Callable[[float], None] | None = None


@dataclass
class PlayerStats:
    """Counters since the Player was created."""

    callbacks: int = 0
    device_underflows: int = 0  # callbacks PortAudio flagged paOutputUnderflow (the card ran dry)
    callback_errors: int = 0  # exceptions caught in the callback (silence was played instead)
    earcons_dropped: int = 0  # earcons skipped because too many were queued or playing
    events_dropped: int = 0  # event notifications lost because the loop did not drain in time
    restarts: int = 0  # successful reopenings (restart())
    output_latency_s: float = 0.0  # PortAudio's latest estimate: block handed over -> sound at the DAC


@dataclass
class _Voice:
    samples: np.ndarray
    pos: int = 0


@dataclass
class _EarconMixer:
    """Earcons queued from the loop, mixed by the audio thread (deque append/popleft are thread-safe)."""

    queued: collections.deque[np.ndarray] = field(default_factory=lambda: collections.deque(maxlen=MAX_EARCON_VOICES))
    voices: list[_Voice] = field(default_factory=list)

    def mix(self, n: int) -> np.ndarray | None:
        """The next `n` samples of all playing earcons summed, or None when none plays."""
        while self.queued:
            try:
                samples = self.queued.popleft()
            except IndexError:
                break
            self.voices.append(_Voice(samples))
        if not self.voices:
            return None
        del self.voices[:-MAX_EARCON_VOICES]
        out = np.zeros(n, dtype=np.float32)
        for voice in self.voices:
            k = min(n, voice.samples.size - voice.pos)
            out[:k] += voice.samples[voice.pos : voice.pos + k]
            voice.pos += k
        self.voices = [v for v in self.voices if v.pos < v.samples.size]
        return out


class Player(DeviceStream):
    """The always-open speaker. Public methods run on `loop`; see the module docstring for the threads."""

    def __init__(
        self,
        audio_cfg: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        state_dir: Path | None = None,
        pa: Any = None,
    ) -> None:
        super().__init__(pa)
        self._cfg = audio_cfg
        self._loop = loop
        self._store = VolumeStore(state_dir) if state_dir is not None else None
        self._level = initial_level(int(audio_cfg.volume), self._store)
        self._save_running = False
        self._save_again = False
        self.events = PlayerEvents()
        self.stats = PlayerStats()
        self._jitter: JitterBuffer | None = None
        self._resampler: StreamResampler | None = None
        self._speech_gain: GainRamp | None = None
        self._earcon_gain: GainRamp | None = None
        self._mixer = _EarconMixer()
        self._event_queue: collections.deque[tuple[int, float]] = collections.deque(maxlen=_EVENT_QUEUE)
        self._dispatch_pending = False
        self._continue = 0
        self._underflow_flag = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> OutputFormat:
        """Find the configured speaker, open it at a format it accepts and start playing (silence)."""
        if self._stream is not None and self._format is not None:
            return self._format
        if self._pa is None:
            self._pa = open_pyaudio()
        device = find_device(self._pa, self._cfg.output_device, direction="output")
        fmt = choose_output_format(self._pa, device, int(self._cfg.output_rate))
        self._continue = PA_CONTINUE
        self._underflow_flag = PA_OUTPUT_UNDERFLOW
        self._jitter = JitterBuffer(fmt.rate, start_ms=float(self._cfg.playback_start_ms))
        self._resampler = StreamResampler(REPLY_RATE, fmt.rate)
        self._speech_gain = GainRamp(fmt.rate, self._level)
        self._earcon_gain = GainRamp(fmt.rate, max(self._level, EARCON_MIN_LEVEL))
        self._mixer = _EarconMixer()
        self.last_callback_at = time.monotonic()
        stream = self._open_stream(device, fmt, output=True)
        self._stream = stream
        self._format = fmt
        try:
            stream.start_stream()
        except OSError as exc:
            self._close_stream()
            raise AudioDeviceError(f'cannot start speaker "{device.name}": {exc}') from None
        log.info('speaker "%s" open at %s, volume %d', device.name, fmt.describe(), self._level)
        return fmt

    def stop(self) -> None:
        """Stop and close the stream (the device is released). Idempotent."""
        self._close_stream()

    def close(self) -> None:
        """stop(), and terminate the PyAudio instance if this Player created it."""
        self.stop()
        self._forget_pa()

    def restart(self) -> OutputFormat:
        """Reopen the stream from scratch (after an unplug); a PyAudio we own is recreated to rescan devices.

        Audio still buffered is lost; the volume is kept.
        """
        self._close_stream()
        self._forget_pa()
        fmt = self.start()
        self.stats.restarts += 1
        return fmt

    # ------------------------------------------------------------------ replies (loop side)

    def _require_started(self) -> tuple[JitterBuffer, StreamResampler]:
        if self._jitter is None or self._resampler is None:
            raise RuntimeError("the speaker is not open; call Player.start() first")
        return self._jitter, self._resampler

    def feed(self, pcm24k: bytes) -> None:
        """Queue a chunk of reply audio (24 kHz mono s16le). Dropped while flushed (until new_reply())."""
        jitter, resampler = self._require_started()
        if len(pcm24k) % 2:
            raise ValueError(
                f"reply audio must be 16-bit samples (an even number of bytes), got {len(pcm24k)} bytes"
            )
        if jitter.discarding or not pcm24k:
            return  # late audio of an interrupted turn: not worth resampling
        jitter.push(resampler.process(np.frombuffer(pcm24k, dtype="<i2")))

    def end_of_reply(self) -> None:
        """The reply is complete: play the rest even if it is shorter than the start target."""
        jitter, resampler = self._require_started()
        if not jitter.discarding:
            jitter.push(resampler.flush())
        jitter.end_of_reply()

    def flush(self) -> None:
        """Barge-in or `interrupted`: fade out within 5 ms at the next period, drop the rest and late audio.

        Before start() nothing can be playing, so this is then a no-op (a barge-in path must not raise).
        """
        if self._jitter is None or self._resampler is None:
            return
        self._jitter.flush()
        self._resampler.reset()

    def new_reply(self) -> None:
        """A new reply starts: accept audio again (after a flush) and wait for the start target."""
        jitter, resampler = self._require_started()
        resampler.reset()
        jitter.new_reply()

    # ------------------------------------------------------------------ earcons and volume (loop side)

    def play_earcon(self, name: str) -> bool:
        """Mix an earcon into the output; False when earcons are off in the config ("alarm" always plays)."""
        if name != "alarm" and not self._cfg.earcons:
            return False
        if self._format is None:
            raise RuntimeError("the speaker is not open; call Player.start() first")
        samples = earcon(name, self._format.rate)
        if len(self._mixer.queued) == self._mixer.queued.maxlen:
            self.stats.earcons_dropped += 1
        self._mixer.queued.append(samples)
        return True

    @property
    def volume(self) -> int:
        return self._level

    def set_volume(self, level: int) -> None:
        """Set the volume (0-100): it ramps there within 50 ms and is remembered across restarts."""
        level = validate_level(level)
        self._level = level
        if self._speech_gain is not None and self._earcon_gain is not None:
            self._speech_gain.set_level(level)
            self._earcon_gain.set_level(max(level, EARCON_MIN_LEVEL))
        if self._store is not None:
            self._schedule_save()

    def _schedule_save(self) -> None:
        """Write the level on a worker thread (fsync can take long on an SD card); coalesce bursts of changes."""
        if self._save_running:
            self._save_again = True
            return
        self._save_running = True
        future = self._loop.run_in_executor(None, self._save_level, self._level)
        future.add_done_callback(self._save_done)

    def _save_level(self, level: int) -> None:
        assert self._store is not None
        try:
            self._store.save(level)
        except OSError as exc:
            log.warning("cannot remember the volume in %s: %s", self._store.path, exc.strerror or exc)

    def _save_done(self, _future: asyncio.Future[None]) -> None:
        self._save_running = False
        if self._save_again:
            self._save_again = False
            self._schedule_save()

    # ------------------------------------------------------------------ stats

    @property
    def underruns(self) -> int:
        return self._jitter.underruns if self._jitter is not None else 0

    @property
    def buffer_depth_ms(self) -> float:
        return self._jitter.depth_ms if self._jitter is not None else 0.0

    @property
    def jitter(self) -> JitterBuffer | None:
        """The jitter buffer (for its counters); None before start()."""
        return self._jitter

    # ------------------------------------------------------------------ PortAudio's thread

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[bytes, int]:
        """Pull, mix, apply volume, convert. Runs on PortAudio's thread: never blocks, logs or raises."""
        now = time.monotonic()
        self.last_callback_at = now
        self.stats.callbacks += 1
        fmt = self._format
        try:
            if status & self._underflow_flag:
                self.stats.device_underflows += 1
            if time_info:
                self.stats.output_latency_s = max(
                    0.0, time_info.get("output_buffer_dac_time", 0.0) - time_info.get("current_time", 0.0)
                )
            jitter, speech_gain, earcon_gain = self._jitter, self._speech_gain, self._earcon_gain
            if fmt is None or jitter is None or speech_gain is None or earcon_gain is None:
                return bytes(frame_count * 2), self._continue  # stream is closing
            block = jitter.pull(frame_count)
            speech_gain.apply(block)
            cue = self._mixer.mix(frame_count)
            if cue is not None:
                earcon_gain.apply(cue)
                block += cue
            events = jitter.take_events()
            if events:
                self._notify(events, now)
            return _encode(block, fmt), self._continue
        except Exception:  # noqa: BLE001 - an exception here would kill the stream; play silence instead
            self.stats.callback_errors += 1
            width = 4 if fmt is not None and fmt.sample_format == "int32" else 2
            channels = fmt.channels if fmt is not None else 1
            return bytes(frame_count * width * channels), self._continue

    def _notify(self, events: int, at: float) -> None:
        queue = self._event_queue
        if len(queue) == queue.maxlen:
            self.stats.events_dropped += 1
        queue.append((events, at))
        if not self._dispatch_pending:
            self._dispatch_pending = True
            try:
                self._loop.call_soon_threadsafe(self._dispatch)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                pass

    # ------------------------------------------------------------------ the loop's side of the handoff

    def _dispatch(self) -> None:
        # Clear the flag before emptying the queue: an event appended meanwhile schedules another dispatch.
        self._dispatch_pending = False
        queue = self._event_queue
        while queue:
            try:
                events, at = queue.popleft()
            except IndexError:
                break
            # Order within one block: a flush's silence, then a drained reply, then a new reply's first audio.
            if events & JitterEvents.SILENT_AFTER_FLUSH:
                self._fire(self.events.on_silent_after_flush, at)
            if events & JitterEvents.DRAINED:
                self._fire(self.events.on_drained, at)
            if events & JitterEvents.FIRST_AUDIO:
                self._fire(self.events.on_first_audio, at)

    @staticmethod
    def _fire(handler: Callable[[float], None] | None, at: float) -> None:
        if handler is None:
            return
        try:
            handler(at)
        except Exception:  # noqa: BLE001 - one faulty listener must not stop the speaker's events
            log.exception("a playback event handler failed")


def _encode(block: np.ndarray, fmt: OutputFormat) -> bytes:
    """float32 mono -> the device's sample format, clipped (never wrapped), on every channel."""
    if fmt.sample_format == "int32":
        scaled = np.clip(np.rint(block.astype(np.float64) * 2147483648.0), -2147483648.0, 2147483647.0)
        samples: np.ndarray = scaled.astype("<i4")
    else:
        np.multiply(block, np.float32(32768.0), out=block)
        np.rint(block, out=block)
        np.clip(block, -32768.0, 32767.0, out=block)
        samples = block.astype("<i2")
    if fmt.channels > 1:
        samples = np.repeat(samples, fmt.channels)
    return samples.tobytes()


def _output_supported(pa: Any, device: DeviceInfo, rate: int, channels: int, sample_format: str) -> bool:
    try:
        return bool(
            pa.is_format_supported(
                rate,
                output_device=device.index,
                output_channels=channels,
                output_format=pa_sample_format(sample_format),  # type: ignore[arg-type]
            )
        )
    except (ValueError, OSError):  # PyAudio's way of saying "no"
        return False


def choose_output_format(pa: Any, device: DeviceInfo, output_rate: int = 0) -> OutputFormat:
    """Pick rate, channels and sample format for the speaker.

    Rate: `output_rate` when set; else 24000 (the replies' own rate: no resampling) when the device takes it,
    else the device's default rate, else 48000 or 44100. Channels: 1 if possible, else 2, else all.
    Format: int16, else int32 (I2S devices such as the AIY Voice HAT accept only S32_LE).
    """
    max_channels = device.max_output_channels
    channel_counts = list(dict.fromkeys(c for c in (1, 2, max_channels) if 0 < c <= max_channels))
    if output_rate:
        rates = [int(output_rate)]
    else:
        rates = list(dict.fromkeys((REPLY_RATE, device.default_rate, *FALLBACK_RATES)))
    for rate in rates:
        for sample_format in ("int16", "int32"):
            for channels in channel_counts:
                if _output_supported(pa, device, rate, channels, sample_format):
                    return OutputFormat(device, rate, channels, sample_format, rate * PERIOD_MS // 1000)
    tried = f"{'/'.join(str(r) for r in rates)} Hz x {'/'.join(str(c) for c in channel_counts)} ch x int16/int32"
    hint = (
        "set audio.output_rate to a rate it supports (see \"aplay -D <device> --dump-hw-params\")"
        if output_rate
        else "choose another audio.output_device"
    )
    raise AudioDeviceError(f'speaker "{device.name}" accepts none of the formats tried ({tried}); {hint}')
