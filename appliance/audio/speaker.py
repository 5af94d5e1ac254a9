"""The speaker: one PortAudio output stream, open (and playing silence) for as long as the daemon runs.

Keeping the stream open means the first reply after a quiet hour starts as fast as the tenth one, and an
amplifier never pops from being switched on and off. Reply audio (24 kHz s16le from the Live API) is
resampled to the device rate on the event loop and put into a `JitterBuffer`; PortAudio's thread pulls a
block every device period, applies the software volume with a ramp, mixes in any earcon (at the volume, but
never under EARCON_MIN_LEVEL) and any ring of a timer's alarm (at the alarm's own level, whatever the volume)
and hands int16 (or int32 for S32-only I2S devices) to the card, duplicated to every channel if the device
is not mono.

Threads: everything public runs on the event loop, except `_callback`, which runs on PortAudio's thread and
never blocks, logs or raises. Events go back to the loop through a bounded deque and at most one pending
`call_soon_threadsafe` (a flag), not one wake-up per block.

A speaker that is unplugged and plugged back is reopened by `watch()` (see `appliance.audio.stream`); while
it is absent the Player drops audio but keeps its event promises (see `Player`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.audio.devices import PA_CONTINUE, PA_OUTPUT_UNDERFLOW, DeviceInfo, find_device
from appliance.audio.earcons import earcon
from appliance.audio.output_format import REPLY_RATE, OutputFormat, choose_output_format, encode_block
from appliance.audio.portaudio_host import PortAudioHost
from appliance.audio.stream import DeviceStream, PresenceCallback
from appliance.audio.jitter import JitterBuffer, JitterEvents
from appliance.audio.resample import StreamResampler
from appliance.audio.volume import GainRamp, VolumeStore, alarm_gain, initial_level, validate_level

__all__ = ["Player", "PlayerEvents", "PlayerStats"]

log = logging.getLogger(__name__)

EARCON_MIN_LEVEL = 25  # earcons stay audible at low volume (and at 0): a silent error is worse than a loud one
MAX_EARCON_VOICES = 4
_EVENT_QUEUE = 32


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
    earcons_dropped: int = 0  # earcons or alarm rings skipped: too many queued or playing, or the speaker absent
    events_dropped: int = 0  # event notifications lost because the loop did not drain in time
    restarts: int = 0  # successful reopenings after the speaker was lost (or restart())
    reopen_failures: int = 0  # attempts to reopen a lost speaker that failed (it was still away)
    output_latency_s: float = 0.0  # PortAudio's latest estimate: block handed over -> sound at the DAC


@dataclass
class _Voice:
    samples: np.ndarray  # cached and read-only: shared by every play of the sound
    gain: float = 1.0  # fixed for the whole sound (an alarm ring's level), applied while mixing
    pos: int = 0


@dataclass
class _EarconMixer:
    """Sounds queued from the loop, mixed by the audio thread (deque append/popleft are thread-safe)."""

    queued: collections.deque[_Voice] = field(default_factory=lambda: collections.deque(maxlen=MAX_EARCON_VOICES))
    voices: list[_Voice] = field(default_factory=list)

    @property
    def silent(self) -> bool:
        return not self.voices and not self.queued

    def mix(self, n: int) -> np.ndarray | None:
        """The next `n` samples of all playing sounds summed, each at its gain, or None when none plays."""
        while self.queued:
            try:
                self.voices.append(self.queued.popleft())
            except IndexError:
                break
        if not self.voices:
            return None
        del self.voices[:-MAX_EARCON_VOICES]
        out = np.zeros(n, dtype=np.float32)
        for voice in self.voices:
            k = min(n, voice.samples.size - voice.pos)
            part = voice.samples[voice.pos : voice.pos + k]
            out[:k] += part if voice.gain == 1.0 else part * np.float32(voice.gain)
            voice.pos += k
        self.voices = [v for v in self.voices if v.pos < v.samples.size]
        return out


@dataclass
class _ReplyPath:
    """What turns reply audio into device samples at one device rate; kept across reopenings at that rate."""

    rate: int
    jitter: JitterBuffer
    resampler: StreamResampler
    speech_gain: GainRamp
    earcon_gain: GainRamp

    @classmethod
    def at(cls, rate: int, start_ms: float, level: int) -> _ReplyPath:
        return cls(
            rate,
            JitterBuffer(rate, start_ms=start_ms),
            StreamResampler(REPLY_RATE, rate),
            GainRamp(rate, level),
            GainRamp(rate, max(level, EARCON_MIN_LEVEL)),
        )

    def set_level(self, level: int) -> None:
        self.speech_gain.set_level(level)
        self.earcon_gain.set_level(max(level, EARCON_MIN_LEVEL))


class Player(DeviceStream):
    """The always-open speaker. Public methods run on `loop`; see the module docstring for the threads.

    While the speaker is absent (unplugged, or not there at start with allow_missing) nothing raises: reply
    audio and earcons are dropped, and the events still come (on_drained after end_of_reply(),
    on_silent_after_flush after flush()), so a turn ends as if it had played. A reply the speaker lost part
    of is dropped to its end even if the speaker comes back meanwhile. The volume, the `events` hooks and the
    jitter buffer object stay across a reopening (a new jitter buffer only if the device comes back at
    another rate).
    """

    kind = "speaker"
    _output = True
    _log = log

    def __init__(
        self,
        audio_cfg: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        state_dir: Path | None = None,
        pa: Any = None,
        host: PortAudioHost | None = None,
        on_presence: PresenceCallback | None = None,
    ) -> None:
        super().__init__(loop, pa=pa, host=host, on_presence=on_presence)
        self._cfg = audio_cfg
        self._store = VolumeStore(state_dir) if state_dir is not None else None
        self._level = initial_level(int(audio_cfg.volume), self._store)
        self._save_running = False
        self._save_again = False
        self.events = PlayerEvents()
        self.stats = PlayerStats()
        self._path: _ReplyPath | None = None
        self._mixer = _EarconMixer()  # earcons, at the volume (never under EARCON_MIN_LEVEL)
        self._bell = _EarconMixer()  # alarm rings, each at its own gain, apart from the volume
        self._zeros = b""  # the idle block, see _silence
        self._event_queue: collections.deque[tuple[int, float]] = collections.deque(maxlen=_EVENT_QUEUE)
        self._dispatch_pending = False
        self._continue = 0
        self._underflow_flag = 0
        # What the owner was promised, so the events still come while the audio cannot play (loop only):
        self._awaiting_drain = False  # end_of_reply() went into the jitter buffer; DRAINED not passed on yet
        self._silence_wanted = False  # flush() went into the jitter buffer; SILENT_AFTER_FLUSH not passed on yet
        self._flushed = False  # flush() since the last new_reply(): a late end_of_reply() promises nothing
        self._reply_lost = False  # the speaker went away during this reply: drop it to its end
        # Set by the loop (new_reply), cleared by the audio thread once no earcon plays: the reply waits
        # in the jitter buffer until the chime before it has ended. A bool store is atomic in CPython.
        self._reply_after_earcons = False

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, allow_missing: bool = False) -> OutputFormat | None:
        """Find the configured speaker, open it at a format it accepts and start playing (silence).

        See `DeviceStream.start` for `allow_missing`. Blocking: at startup, or via start_async().
        """
        return super().start(allow_missing=allow_missing)

    def _prepare(self, pa: Any) -> tuple[DeviceInfo, OutputFormat]:
        device = find_device(pa, self._cfg.output_device, direction="output")
        fmt = choose_output_format(pa, device, int(self._cfg.output_rate))
        self._continue = PA_CONTINUE
        self._underflow_flag = PA_OUTPUT_UNDERFLOW
        path = self._path
        if path is None or path.rate != fmt.rate:
            if path is not None:
                log.info("the speaker is back at %d Hz, not %d: its jitter buffer starts afresh", fmt.rate, path.rate)
            self._path = _ReplyPath.at(fmt.rate, float(self._cfg.playback_start_ms), self._level)
        self._path.set_level(self._level)  # a set_volume() while this ran on a worker thread
        return device, fmt

    def _describe_open(self, fmt: Any) -> str:
        return f"{super()._describe_open(fmt)}, volume {self._level}"

    def _went_absent(self) -> None:
        # The stream is closed: what is buffered cannot play. Drop it, and keep the promises made about it.
        for mixer in (self._mixer, self._bell):
            mixer.queued.clear()
            mixer.voices.clear()
        path = self._path
        if path is not None:
            path.jitter.flush()
            path.resampler.reset()
        self._reply_lost = True
        now = time.monotonic()
        if self._silence_wanted:
            self._silence_wanted = False
            self._fire(self.events.on_silent_after_flush, now)
        if self._awaiting_drain:
            self._awaiting_drain = False
            self._fire(self.events.on_drained, now)

    # ------------------------------------------------------------------ replies (loop side)

    def _accepting(self) -> _ReplyPath | None:
        path = self._path
        if path is None or not self._present or self._reply_lost:
            return None
        return path

    def feed(self, pcm24k: bytes) -> None:
        """Queue a chunk of reply audio (24 kHz mono s16le).

        Dropped while flushed (until new_reply()), while the speaker is absent, and for the rest of a reply
        the speaker lost part of.
        """
        if len(pcm24k) % 2:
            raise ValueError(
                f"reply audio must be 16-bit samples (an even number of bytes), got {len(pcm24k)} bytes"
            )
        path = self._accepting()
        if path is None or path.jitter.discarding or not pcm24k:
            return  # late audio of an interrupted turn, or nowhere to play it: not worth resampling
        path.jitter.push(path.resampler.process(np.frombuffer(pcm24k, dtype="<i2")))

    def end_of_reply(self) -> None:
        """The reply is complete: play the rest even if it is shorter than the start target.

        If the reply was dropped (the speaker is absent or lost part of it), on_drained follows at once.
        """
        path = self._accepting()
        if path is None:
            if not self._flushed:
                self._fire_soon(self.events.on_drained)
            return
        if not path.jitter.discarding:
            path.jitter.push(path.resampler.flush())
            self._awaiting_drain = True
        path.jitter.end_of_reply()

    def flush(self) -> None:
        """Barge-in or `interrupted`: fade out within 5 ms at the next period, drop the rest and late audio.

        Never raises (a barge-in path must not); while the speaker is absent on_silent_after_flush follows at once.
        """
        self._flushed = True
        self._reply_after_earcons = False  # a barge-in during a chime must not wait for it to end
        self._awaiting_drain = False
        path = self._path
        if path is not None:
            path.jitter.flush()
            path.resampler.reset()
        if path is not None and self._present:
            self._silence_wanted = True
        else:
            self._silence_wanted = False
            self._fire_soon(self.events.on_silent_after_flush)

    def new_reply(self, *, after_earcons: bool = False) -> None:
        """A new reply starts: accept audio again (after a flush or a lost speaker) and wait for the start target.

        With `after_earcons`, the reply also waits until the earcons queued before this call have played
        (an announcement's chime comes first, then the voice, not both at once); call it after play_earcon.
        """
        self._reply_after_earcons = after_earcons and not self._mixer.silent
        self._flushed = False
        self._awaiting_drain = False
        self._reply_lost = False
        path = self._path
        if path is not None:
            path.resampler.reset()
            path.jitter.new_reply()

    # ------------------------------------------------------------------ earcons and volume (loop side)

    def use_settings(self, audio_cfg: Any) -> None:
        """A reload: whether earcons play takes effect at once; devices, rates and buffering need a restart."""
        self._cfg = dataclasses.replace(self._cfg, earcons=audio_cfg.earcons)

    def play_earcon(self, name: str) -> bool:
        """Mix an earcon into the output at the volume; False when earcons are off in the config.

        Also False, with the earcon dropped, while the speaker is absent. The alarm is not an earcon here:
        it has its own level, see play_alarm().
        """
        if name == "alarm":
            raise ValueError("the alarm has its own level: ring it with play_alarm(level, since_s)")
        if not self._cfg.earcons:
            return False
        return self._queue(self._mixer, name)

    def play_alarm(self, level: int, since_s: float) -> bool:
        """Mix one ring of the alarm at `level` (0-100), whatever the volume, even with earcons off.

        `since_s` is how long ringing has gone on: the first seconds ring softer (volume.alarm_gain).
        False, with the ring dropped, while the speaker is absent.
        """
        return self._queue(self._bell, "alarm", alarm_gain(validate_level(level), since_s))

    def _queue(self, mixer: _EarconMixer, name: str, gain: float = 1.0) -> bool:
        """Hand the cached sound `name` to the audio thread with its gain (one float, no copy)."""
        path = self._path
        if path is None or not self._present:
            self.stats.earcons_dropped += 1
            return False
        if len(mixer.queued) == mixer.queued.maxlen:
            self.stats.earcons_dropped += 1
        mixer.queued.append(_Voice(earcon(name, path.rate), gain))
        return True

    @property
    def volume(self) -> int:
        return self._level

    def set_volume(self, level: int) -> None:
        """Set the volume (0-100): it ramps there within 50 ms and is remembered across restarts."""
        level = validate_level(level)
        self._level = level
        path = self._path
        if path is not None:
            path.set_level(level)
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
        return self._path.jitter.underruns if self._path is not None else 0

    @property
    def buffer_depth_ms(self) -> float:
        return self._path.jitter.depth_ms if self._path is not None else 0.0

    @property
    def jitter(self) -> JitterBuffer | None:
        """The jitter buffer (for its counters); None until the speaker first opened."""
        return self._path.jitter if self._path is not None else None

    # ------------------------------------------------------------------ PortAudio's thread

    def _callback(self, in_data: bytes | None, frame_count: int, time_info: Any, status: int) -> tuple[bytes, int]:
        """Pull, mix, apply volume, convert. Runs on PortAudio's thread: never blocks, logs or raises."""
        now = time.monotonic()
        self.last_callback_at = now
        self.stats.callbacks += 1
        fmt = self._format
        path = self._path
        try:
            if status & self._underflow_flag:
                self.stats.device_underflows += 1
            if time_info:
                self.stats.output_latency_s = max(
                    0.0, time_info.get("output_buffer_dac_time", 0.0) - time_info.get("current_time", 0.0)
                )
            if fmt is None or path is None:
                return bytes(frame_count * 2), self._continue  # stream is closing
            if path.jitter.quiet() and self._mixer.silent and self._bell.silent:
                # Idle: no reply, no earcon, no alarm. The same zero block every period, no array work.
                path.speech_gain.settle()
                path.earcon_gain.settle()
                return self._silence(frame_count, fmt), self._continue
            if self._reply_after_earcons and self._mixer.silent:
                self._reply_after_earcons = False  # the chime has ended: the reply may start
            if self._reply_after_earcons:
                block = np.zeros(frame_count, dtype=np.float32)  # the reply waits, buffered
            else:
                block = path.jitter.pull(frame_count)
                path.speech_gain.apply(block)
            cue = self._mixer.mix(frame_count)
            if cue is not None:
                path.earcon_gain.apply(cue)
                block += cue
            ring = self._bell.mix(frame_count)  # already at the alarm's level: the volume does not touch it
            if ring is not None:
                block += ring
            events = path.jitter.take_events()
            if events:
                self._notify(events, now)
            return encode_block(block, fmt), self._continue
        except Exception:  # noqa: BLE001 - an exception here would kill the stream; play silence instead
            self.stats.callback_errors += 1
            width = 4 if fmt is not None and fmt.sample_format == "int32" else 2
            channels = fmt.channels if fmt is not None else 1
            return bytes(frame_count * width * channels), self._continue

    def _silence(self, frame_count: int, fmt: OutputFormat) -> bytes:
        """A zero block of the device's size, made once per size (PortAudio copies it; it is never written)."""
        size = frame_count * (4 if fmt.sample_format == "int32" else 2) * fmt.channels
        if len(self._zeros) != size:
            self._zeros = bytes(size)
        return self._zeros

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
            # (A silence or drain nobody was promised, e.g. after the flush of a lost speaker, is not passed on.)
            if events & JitterEvents.SILENT_AFTER_FLUSH and self._silence_wanted:
                self._silence_wanted = False
                self._fire(self.events.on_silent_after_flush, at)
            if events & JitterEvents.DRAINED and self._awaiting_drain:
                self._awaiting_drain = False
                self._fire(self.events.on_drained, at)
            if events & JitterEvents.FIRST_AUDIO:
                self._fire(self.events.on_first_audio, at)

    def _fire_soon(self, handler: Callable[[float], None] | None) -> None:
        """An event the device will never raise (it is absent), from the loop's next turn, never re-entrantly."""
        if handler is not None:
            self._loop.call_soon(self._fire, handler, time.monotonic())

    @staticmethod
    def _fire(handler: Callable[[float], None] | None, at: float) -> None:
        if handler is None:
            return
        try:
            handler(at)
        except Exception:  # noqa: BLE001 - one faulty listener must not stop the speaker's events
            log.exception("a playback event handler failed")
