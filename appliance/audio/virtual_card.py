"""The demo's sound card: the part of PyAudio's API the audio path uses, backed by memory and a clock.

`appliance demo` must run the real capture and playback code on a machine with no sound card and maybe
without PortAudio. `VirtualCard` is handed to `Capture` and `Player` as their `pa=`: it offers one
microphone ("virtual-mic") and one speaker ("virtual-speaker"), each accepting exactly one native format
(by default an I2S-like 48 kHz stereo int32 microphone and a 48 kHz stereo int16 speaker), so the real
format probing, channel mixing, 32->16-bit conversion and resampling all run.

This module holds what the card owns: the devices and their plugging, the microphone's queue and the
speaker's recording. PyAudio's enumeration and `open()` are in `virtual_listing`, the per-stream clock
threads in `virtual_stream`, PortAudio's numbers in `pa_constants`.

The microphone delivers what `queue_input()` queued, on top of quiet room noise (about -60 dBFS: a real
mic is never digitally silent, and the VAD and level meters must cope with that). The speaker records
everything its callback returns; `write_output_wav()` saves it for a person to listen to.

`unplug(name)` and `plug(name)` take a device away and bring it back, as a USB plug would: a stream on an
unplugged device stops calling back, and the device returns at a new index. Used directly as `pa=`, the card
lists what is plugged in right now; `portaudio()` gives views that list devices the way real PyAudio
instances do, frozen at PortAudio's initialisation and shared while any instance is alive, so code that
must rescan after a replug can be tested against the same constraint it meets on a Pi.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import threading
import time

import numpy as np

from appliance.audio.pa_constants import paDeviceUnavailable, paUnanticipatedHostError
from appliance.audio.resample import resample
from appliance.audio.virtual_device import SampleFormat, VirtualDevice, check_device_args
from appliance.audio.virtual_listing import DeviceListing
from appliance.audio.virtual_stream import StreamCallback, VirtualStream
from appliance.audio.wavio import write_wav

__all__ = ["MIC_NAME", "SPEAKER_NAME", "VirtualCard", "VirtualPortAudio"]

MIC_NAME = "virtual-mic"
SPEAKER_NAME = "virtual-speaker"

#: Blocks quieter than this (int16 LSBs, about -78 dBFS) count as silence when trimming the WAV.
SILENCE_PEAK = 4
#: Silence kept before the first and after the last sound in the trimmed WAV.
TRIM_MARGIN_S = 0.05


class VirtualCard(DeviceListing):
    """A PyAudio-like object with one virtual microphone and one virtual speaker (both the defaults).

    Used as `pa=` it lists what is plugged in right now: `unplug(name)` and `plug(name)` take a device away
    and bring it back (at a new index, as USB devices come back). `portaudio()` makes views that list
    devices the way a real PyAudio instance does, frozen when PortAudio was initialised.

    Thread-safe where PyAudio is: streams run their callbacks on their own threads; `queue_input`,
    `recorded`, `unplug`, `plug` and the counters may be used from any thread.
    """

    def __init__(
        self,
        *,
        speed: float = 1.0,
        mic_rate: int = 48000,
        mic_channels: int = 2,
        mic_format: SampleFormat = "int32",
        speaker_rate: int = 48000,
        speaker_channels: int = 2,
        speaker_format: SampleFormat = "int16",
        noise_dbfs: float | None = -60.0,
        seed: int = 0,
        record_limit_s: float = 120.0,
        max_queued_s: float = 300.0,
    ) -> None:
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed <= 100:
            raise ValueError(f"speed must be a number above 0 and at most 100 (1.0 is real time), got {speed!r}")
        check_device_args("mic", mic_rate, mic_channels, mic_format)
        check_device_args("speaker", speaker_rate, speaker_channels, speaker_format)
        if noise_dbfs is not None and not (-140.0 <= noise_dbfs <= 0.0):
            raise ValueError(f"noise_dbfs must be between -140 and 0 dBFS (or None for none), got {noise_dbfs!r}")
        if not record_limit_s > 0 or not max_queued_s > 0:
            raise ValueError("record_limit_s and max_queued_s must be positive numbers of seconds")
        self.speed = float(speed)
        # The devices as last plugged in (index and serial change when one is unplugged or plugged back).
        self._known: dict[str, VirtualDevice] = {
            MIC_NAME: VirtualDevice(0, MIC_NAME, "input", mic_rate, mic_channels, mic_format),
            SPEAKER_NAME: VirtualDevice(1, SPEAKER_NAME, "output", speaker_rate, speaker_channels, speaker_format),
        }
        self._plugged: list[VirtualDevice] = list(self._known.values())  # position == index
        self._noise_rms = None if noise_dbfs is None else self.mic.full_scale * 10.0 ** (noise_dbfs / 20.0)
        self._rng = np.random.default_rng(seed)
        self._clock0 = time.monotonic()
        self._lock = threading.Lock()
        self._streams: dict[str, VirtualStream] = {}  # device name -> its one open stream
        self._terminated = False
        # PortAudio's initialisation count, shared by the views: the listing they share while any is alive.
        self._views_alive = 0
        self._view_listing: tuple[VirtualDevice, ...] = ()

        # Microphone input waiting to be delivered (native dtype, shape (n, channels)).
        self._queued: collections.deque[np.ndarray] = collections.deque()
        self._queued_pos = 0  # frames of _queued[0] already delivered
        self._queued_frames = 0
        self._max_queued_frames = int(max_queued_s * mic_rate)
        self._input_drained = threading.Event()
        self._input_drained.set()

        # Everything the speaker played (native dtype, shape (n, channels)); the oldest goes past the limit.
        self._played: collections.deque[np.ndarray] = collections.deque()
        self._played_frames = 0
        self._played_changed = threading.Condition(self._lock)
        self._record_limit_frames = max(1, int(record_limit_s * speaker_rate))

        self.input_frames_delivered = 0
        self.output_frames_played = 0
        #: Frames of played audio forgotten because the recording exceeded record_limit_s.
        self.output_frames_forgotten = 0

    @property
    def mic(self) -> VirtualDevice:
        """The microphone as last plugged in (its index is stale while it is unplugged)."""
        return self._known[MIC_NAME]

    @property
    def speaker(self) -> VirtualDevice:
        """The speaker as last plugged in (its index is stale while it is unplugged)."""
        return self._known[SPEAKER_NAME]

    def _listed(self) -> tuple[VirtualDevice, ...]:
        with self._lock:
            return tuple(self._plugged)

    def _is_terminated(self) -> bool:
        return self._terminated

    def _current(self, device: VirtualDevice) -> VirtualDevice | None:
        """Lock held: the plugged-in device `device` was listed as, if it is still in the same plugging."""
        return next((d for d in self._plugged if d.name == device.name and d.serial == device.serial), None)

    # ------------------------------------------------------------------ plugging

    def unplug(self, name: str) -> None:
        """Take a device away, as pulling its USB plug would.

        It leaves the listing (the devices after it move down one index); a stream open on it stops calling
        back and turns inactive, as PortAudio's does when ALSA reports the device gone. Closing that stream
        is up to its owner. ValueError if `name` is not plugged in.
        """
        with self._lock:
            device = self._plugged_named(name)
            self._plugged.remove(device)
            self._reindex()
            stream = self._streams.get(name)
        if stream is not None:
            stream._lose()

    def plug(self, name: str) -> None:
        """Bring an unplugged device back, at the end of the listing (a new index, as a USB device gets).

        ValueError if there is no such device or it is plugged in already.
        """
        with self._lock:
            if name not in self._known:
                raise ValueError(f"the virtual card has no device {name!r}; it has {', '.join(self._known)}")
            if any(d.name == name for d in self._plugged):
                raise ValueError(f"{name} is plugged in already")
            known = self._known[name]
            device = dataclasses.replace(known, index=len(self._plugged), serial=known.serial + 1)
            self._known[name] = device
            self._plugged.append(device)

    def is_plugged(self, name: str) -> bool:
        with self._lock:
            return any(d.name == name for d in self._plugged)

    def cards(self) -> frozenset[str]:
        """What /proc/asound/cards would say: one line per plugged device, new for every plugging."""
        with self._lock:
            return frozenset(f"{d.name}: plugged in #{d.serial}" for d in self._plugged)

    def portaudio(self) -> VirtualPortAudio:
        """A PyAudio-like view of the card that lists devices as a fresh `pyaudio.PyAudio()` would.

        See `VirtualPortAudio`; hand `card.portaudio` to a `PortAudioHost` as its factory.
        """
        return VirtualPortAudio(self)

    def _plugged_named(self, name: str) -> VirtualDevice:
        device = next((d for d in self._plugged if d.name == name), None)
        if device is None:
            plugged = ", ".join(d.name for d in self._plugged) or "nothing"
            raise ValueError(f"{name!r} is not plugged in; plugged in: {plugged}")
        return device

    def _reindex(self) -> None:
        """Lock held: give the plugged devices consecutive indices again."""
        for position, device in enumerate(self._plugged):
            if device.index != position:
                moved = dataclasses.replace(device, index=position)
                self._plugged[position] = moved
                self._known[device.name] = moved
                stream = self._streams.get(device.name)
                if stream is not None:
                    stream.device = moved

    # ------------------------------------------------------------------ streams

    def terminate(self) -> None:
        """Close every open stream (their threads stop); the recording stays readable. Idempotent."""
        self._terminated = True
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            stream.close()

    def _open_stream(self, device: VirtualDevice, frames: int, callback: StreamCallback) -> VirtualStream:
        with self._lock:
            live = self._current(device)
            if live is None:
                raise OSError(paUnanticipatedHostError, "Unanticipated host error")
            if live.name in self._streams:
                raise OSError(paDeviceUnavailable, "Device unavailable")
            stream = VirtualStream(self, live, frames, callback)
            self._streams[live.name] = stream
        return stream

    def _release(self, stream: VirtualStream) -> None:
        with self._lock:
            if self._streams.get(stream.device.name) is stream:
                del self._streams[stream.device.name]

    def device_time(self) -> float:
        """Seconds on the card's clock (runs `speed` times faster than the wall clock)."""
        return (time.monotonic() - self._clock0) * self.speed

    # ------------------------------------------------------------------ the microphone's room

    def queue_input(self, samples: np.ndarray) -> float:
        """Queue audio for the mic to deliver after what is already queued; returns its length in seconds.

        `samples` is at the mic's rate: shape (n, channels), or 1-D for the same signal on every channel.
        Integer samples are taken as the mic's native values (they must fit its sample format); float
        samples are full scale at +-1.0 (clipped). Audio queued while no input stream runs waits for one.
        ValueError when more than `max_queued_s` would be waiting (nothing is queued then).
        """
        mic = self.mic
        arr = np.asarray(samples)
        if arr.ndim == 1:
            arr = np.repeat(arr[:, np.newaxis], mic.channels, axis=1)
        if arr.ndim != 2 or arr.shape[1] != mic.channels:
            raise ValueError(
                f"the virtual mic has {mic.channels} channel(s); queue an array of shape (n, {mic.channels}) "
                f"or a 1-D array for all channels, not shape {arr.shape}"
            )
        native = self._to_native(arr)
        if native.shape[0] == 0:
            return 0.0
        with self._lock:
            if self._queued_frames + native.shape[0] > self._max_queued_frames:
                raise ValueError(
                    f"the virtual mic can hold at most {self._max_queued_frames / mic.rate:.0f} s of queued audio; "
                    "wait for wait_input_drained() before queueing more"
                )
            self._queued.append(native)
            self._queued_frames += native.shape[0]
            self._input_drained.clear()
        return native.shape[0] / mic.rate

    def queue_pcm16(self, pcm16: bytes, rate: int) -> float:
        """Queue a mono 16-bit recording at any rate (e.g. generated speech), as the mic would pick it up."""
        if len(pcm16) % 2:
            raise ValueError(f"PCM16 audio must be an even number of bytes, got {len(pcm16)}")
        voice = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        return self.queue_input(resample(voice, int(rate), self.mic.rate))

    def _to_native(self, arr: np.ndarray) -> np.ndarray:
        mic = self.mic
        dtype = mic.dtype
        if arr.dtype.kind == "f":
            scaled = np.rint(np.clip(arr.astype(np.float64), -1.0, 1.0) * mic.full_scale)
            info = np.iinfo(dtype)
            return np.clip(scaled, info.min, info.max).astype(dtype)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"queue integer samples or floats in [-1, 1], not {arr.dtype}")
        info = np.iinfo(dtype)
        if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
            raise ValueError(
                f"samples exceed the virtual mic's {mic.sample_format} range; "
                f"queue {mic.sample_format} values or floats in [-1, 1]"
            )
        return np.ascontiguousarray(arr, dtype=dtype)

    def wait_input_drained(self, timeout: float | None = None) -> bool:
        """Block until all queued input has been delivered to an input callback; False on timeout."""
        return self._input_drained.wait(timeout)

    @property
    def queued_input_seconds(self) -> float:
        return self._queued_frames / self.mic.rate

    def _capture_block(self, frames: int) -> np.ndarray:
        """The next `frames` frames the mic hears: queued audio (or nothing) plus room noise, native dtype."""
        mic = self.mic
        block = np.zeros((frames, mic.channels), dtype=np.int64)
        filled = 0
        with self._lock:
            while filled < frames and self._queued:
                head = self._queued[0]
                take = min(frames - filled, head.shape[0] - self._queued_pos)
                block[filled : filled + take] = head[self._queued_pos : self._queued_pos + take]
                filled += take
                self._queued_pos += take
                if self._queued_pos == head.shape[0]:
                    self._queued.popleft()
                    self._queued_pos = 0
            self._queued_frames -= filled
        if self._noise_rms is not None:
            noise = self._rng.standard_normal((frames, mic.channels)) * self._noise_rms
            block += np.rint(noise).astype(np.int64)
        info = np.iinfo(mic.dtype)
        return np.clip(block, info.min, info.max).astype(mic.dtype)

    def _input_delivered(self, frames: int) -> None:
        self.input_frames_delivered += frames
        with self._lock:
            if self._queued_frames == 0:
                self._input_drained.set()

    # ------------------------------------------------------------------ the speaker's recording

    def _record(self, block: np.ndarray) -> None:
        with self._lock:
            self._played.append(block)
            self._played_frames += block.shape[0]
            while self._played_frames - self._played[0].shape[0] >= self._record_limit_frames:
                old = self._played.popleft()
                self._played_frames -= old.shape[0]
                self.output_frames_forgotten += old.shape[0]
            self.output_frames_played += block.shape[0]
            self._played_changed.notify_all()

    def wait_output_frames(self, total: int, timeout: float | None = None) -> bool:
        """Block until the speaker has played `total` frames since the card was made; False on timeout.

        E.g. after `on_drained`, wait for `output_frames_played + one period` so the reply's last block
        is recorded and a stretch of idle output follows it.
        """
        with self._played_changed:
            return self._played_changed.wait_for(lambda: self.output_frames_played >= total, timeout)

    def recorded(self) -> np.ndarray:
        """What the speaker played so far (up to record_limit_s), shape (n, channels), its native dtype."""
        with self._lock:
            blocks = list(self._played)
        if not blocks:
            return np.zeros((0, self.speaker.channels), dtype=self.speaker.dtype)
        return np.concatenate(blocks)

    def recorded_mono16(self) -> np.ndarray:
        """The recording mixed to mono int16 (the average of the channels), at the speaker's rate."""
        played = self.recorded().astype(np.float64)
        mono = played.mean(axis=1) * (32768.0 / self.speaker.full_scale)
        return np.clip(np.rint(mono), -32768, 32767).astype(np.int16)

    def write_output_wav(self, path: str | os.PathLike[str], trim_silence: bool = True) -> float:
        """Save what the speaker played as a mono 16-bit WAV at its rate; returns the seconds written.

        With `trim_silence`, the idle stretches before the first and after the last sound are cut,
        keeping `TRIM_MARGIN_S` of each; a recording with no sound at all gives an empty WAV.
        """
        mono = self.recorded_mono16()
        if trim_silence:
            loud = np.flatnonzero(np.abs(mono.astype(np.int32)) > SILENCE_PEAK)
            if loud.size == 0:
                mono = mono[:0]
            else:
                margin = round(TRIM_MARGIN_S * self.speaker.rate)
                mono = mono[max(0, int(loud[0]) - margin) : int(loud[-1]) + 1 + margin]
        write_wav(path, mono.astype("<i2").tobytes(), self.speaker.rate)
        return mono.size / self.speaker.rate


class VirtualPortAudio(DeviceListing):
    """The card as one `pyaudio.PyAudio()` instance sees it: the devices plugged in when PortAudio started.

    PortAudio lists devices in Pa_Initialize and counts initialisations: while any instance is alive, a new
    one gets the same list. The views of one card share that count. A listed device that was unplugged
    refuses to open ("Unanticipated host error", as PortAudio's ALSA host API says), even once plugged back,
    because it came back at a new address; only a view made after every other one was terminated lists it.
    """

    def __init__(self, card: VirtualCard) -> None:
        self._card = card
        with card._lock:
            if card._views_alive == 0:
                card._view_listing = tuple(card._plugged)
            card._views_alive += 1
            self._listing = card._view_listing
        self._streams: list[VirtualStream] = []
        self._terminated = False

    def _listed(self) -> tuple[VirtualDevice, ...]:
        return self._listing

    def _still_there(self, device: VirtualDevice) -> bool:
        with self._card._lock:
            return self._card._current(device) is not None

    def _is_terminated(self) -> bool:
        return self._terminated or self._card._terminated

    def _open_stream(self, device: VirtualDevice, frames: int, callback: StreamCallback) -> VirtualStream:
        stream = self._card._open_stream(device, frames, callback)
        self._streams.append(stream)
        return stream

    def terminate(self) -> None:
        """Close the streams opened through this view and end its initialisation, as PyAudio does. Idempotent."""
        if self._terminated:
            return
        self._terminated = True
        streams, self._streams = self._streams, []
        for stream in streams:
            stream.close()
        with self._card._lock:
            self._card._views_alive -= 1
